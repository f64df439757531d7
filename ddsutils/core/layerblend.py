"""Mask-guided layer blending: one image from two generators of the same architecture.

The same latent goes through the synthesis networks of ``G_s`` and ``G_t``. Up to a chosen StyledConv layer
the two run side by side; there their activations (and toRGB skips) are mixed under the mask, and from then
on every layer is computed by both generators on the mixed input and mixed again:

    x ← m_r ⊙ layer_s(x) + (1 − m_r) ⊙ layer_t(x)        (m_r: the mask resized to the layer's r × r)

so the part is drawn by ``G_s`` and the rest by ``G_t``, each seeing the other's surroundings from the start
layer on. ``start`` = ``G.num_layers`` mixes only the finished images (the paste ``x_s ⊙ m + x_t ⊙ (1 − m)``);
``start`` = 0 mixes every layer. A full mask gives ``G_s``'s image, an empty mask ``G_t``'s.

Shapes: ``w_plus`` ``[N, L, D]``; ``mask`` ``[N, 1, H, W]`` in [0, 1] at the output resolution; images
``[N, 3, H, W]``.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from .stylegan2 import Generator

__all__ = ["prepare_mask", "remove_small_components", "blend_synthesis", "layer_resolutions"]


def layer_resolutions(G: Generator) -> list[int]:
    """Output resolution of each StyledConv layer ``i`` (``0 … G.num_layers − 1``); ``start`` counts these."""
    return [2 ** ((i + 5) // 2) for i in range(G.num_layers)]


def remove_small_components(mask: torch.Tensor, min_area: int) -> torch.Tensor:
    """Drop the 8-connected components of a binary mask with fewer than ``min_area`` pixels.

    Args:
        mask: ``[N, 1, H, W]``; pixels > 0.5 are in the mask.
        min_area: smallest component kept, in pixels (0 or 1: the mask is returned unchanged).

    Returns:
        ``[N, 1, H, W]`` float in {0, 1}.
    """
    on = mask > 0.5
    if min_area <= 1 or not on.any():
        return on.to(mask.dtype if mask.is_floating_point() else torch.float32)
    n, _, h, w = on.shape
    # label propagation: every pixel starts with its own id; each step takes the 3 × 3 maximum inside the mask
    ids = torch.arange(1, h * w + 1, dtype=torch.float32, device=mask.device).view(1, 1, h, w).expand(n, 1, h, w)
    label = torch.where(on, ids, torch.zeros_like(ids))
    while True:
        grown = torch.where(on, F.max_pool2d(label, 3, stride=1, padding=1), label)
        if torch.equal(grown, label):
            break
        label = grown
    flat = label.long().flatten(1)
    areas = torch.zeros(n, h * w + 1, dtype=torch.long, device=mask.device).scatter_add_(
        1, flat, torch.ones_like(flat))
    keep = areas.gather(1, flat) >= min_area
    return (on.flatten(1) & keep).view(n, 1, h, w).float()


def prepare_mask(mask: torch.Tensor, *, min_area: int = 0, dilation: int = 0, feather: float = 0.0) -> torch.Tensor:
    """Clean, dilate and feather a binary mask at full resolution.

    Args:
        mask: ``[N, 1, H, W]`` in {0, 1} (soft values are kept when ``min_area`` is 0).
        min_area: first drop connected components smaller than this many pixels (specks a segmenter or parser
            leaves far from the part; :func:`remove_small_components`); 0: keep everything.
        dilation: grow the mask by this many pixels (square structuring element); 0: unchanged.
        feather: standard deviation in pixels of a Gaussian blur applied after the dilation; 0: hard edges.

    Returns:
        ``[N, 1, H, W]`` float in [0, 1].
    """
    m = mask.float()
    if dilation < 0 or feather < 0 or min_area < 0:
        raise ValueError(f"min_area, dilation and feather must be >= 0, got {min_area}, {dilation} and {feather}")
    if min_area:
        m = remove_small_components(m, min_area)
    if dilation:
        m = F.max_pool2d(m, kernel_size=2 * dilation + 1, stride=1, padding=dilation)
    if feather:
        radius = max(1, int(3 * feather + 0.5))
        x = torch.arange(-radius, radius + 1, dtype=m.dtype, device=m.device)
        k = torch.exp(-0.5 * (x / feather) ** 2)
        k = k / k.sum()
        m = F.pad(m, (radius, radius, radius, radius), mode="replicate")
        m = F.conv2d(m, k.view(1, 1, 1, -1))
        m = F.conv2d(m, k.view(1, 1, -1, 1))
    return m.clamp(0, 1)


def _resized(mask: torch.Tensor, r: int) -> torch.Tensor:
    # area averaging: each r × r cell gets the fraction of its pixels inside the mask
    if mask.shape[-1] == r:
        return mask
    if mask.shape[-1] > r:
        return F.adaptive_avg_pool2d(mask, r)
    return F.interpolate(mask, size=(r, r), mode="bilinear", align_corners=False)


def _noises(G: Generator, noise: str | Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
    if isinstance(noise, str):
        if noise == "const":
            return list(G.noise_buffers())
        if noise == "random":
            return [None] * G.num_layers
        raise ValueError(f"noise must be 'const', 'random' or a list of tensors, got {noise!r}")
    noises = list(noise)
    if len(noises) != G.num_layers:
        raise ValueError(f"expected {G.num_layers} noise maps, got {len(noises)}")
    return noises


def _ops(G: Generator) -> Iterator[tuple[str, int, torch.nn.Module, int]]:
    """The synthesis network as a flat list: (kind, StyledConv index it belongs to, module, w+ index)."""
    yield "conv", 0, G.conv1, 0
    yield "rgb", 0, G.to_rgb1, 1
    for k, to_rgb in enumerate(G.to_rgbs):
        yield "conv", 2 * k + 1, G.convs[2 * k], 2 * k + 1
        yield "conv", 2 * k + 2, G.convs[2 * k + 1], 2 * k + 2
        yield "rgb", 2 * k + 2, to_rgb, 2 * k + 3


def blend_synthesis(G_s: Generator, G_t: Generator, w_s: torch.Tensor, w_t: torch.Tensor, mask: torch.Tensor, *,
                    start: int, noise_s: str | Sequence[torch.Tensor] = "const",
                    noise_t: str | Sequence[torch.Tensor] = "const") -> torch.Tensor:
    """Synthesise one image from two generators, blended under ``mask`` from StyledConv layer ``start`` on.

    Args:
        G_s, G_t: generators of the same architecture (same resolution, channels and latent width).
        w_s, w_t: ``[N, L, D]`` per-layer styles for each generator (e.g. ``G.to_w_plus(z)`` of one ``z``).
        mask: ``[N, 1, H, W]`` in [0, 1] at the output resolution: 1 where ``G_s`` draws (see
            :func:`prepare_mask`). Each layer uses it area-resized to its own resolution.
        start: first blended StyledConv layer, ``0 … G.num_layers`` (``G.num_layers``: only the output images
            are mixed, i.e. the paste). See :func:`layer_resolutions`.
        noise_s, noise_t: each generator's noise (``"const"``: its registered buffers, ``"random"``, or maps).

    Returns:
        ``[N, 3, H, W]`` image (not clamped).
    """
    if G_s.size != G_t.size or G_s.channels != G_t.channels or G_s.style_dim != G_t.style_dim:
        raise ValueError("layer blending needs two generators of the same architecture; got "
                         f"{G_s.size} px / {G_s.channels} and {G_t.size} px / {G_t.channels}")
    if not 0 <= start <= G_t.num_layers:
        raise ValueError(f"start must be a StyledConv index in 0..{G_t.num_layers} (the last: the paste), got {start}")
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[-1] != G_t.size or mask.shape[0] != w_t.shape[0]:
        raise ValueError(f"mask must be [{w_t.shape[0]}, 1, {G_t.size}, {G_t.size}], got {list(mask.shape)}")
    n = w_t.shape[0]
    nz_s, nz_t = _noises(G_s, noise_s), _noises(G_t, noise_t)
    mask = mask.to(w_t.dtype)

    def mix(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
        if a is None:
            return None
        m = _resized(mask, a.shape[-1])
        return a * m + b * (1 - m)

    # two streams until the start layer, one mixed stream after it
    x_s, x_t = G_s.input(n), G_t.input(n)
    skip_s: torch.Tensor | None = None
    skip_t: torch.Tensor | None = None
    merged = False
    for (kind, i, op_s, wi), (_, _, op_t, _) in zip(_ops(G_s), _ops(G_t)):
        if i >= start and not merged:
            x_s = x_t = mix(x_s, x_t)
            skip_s = skip_t = mix(skip_s, skip_t)
            merged = True
        if kind == "conv":
            y_s = op_s(x_s, w_s[:, wi], nz_s[i])
            y_t = op_t(x_t, w_t[:, wi], nz_t[i])
            if merged:
                x_s = x_t = mix(y_s, y_t)
            else:
                x_s, x_t = y_s, y_t
        else:
            y_s = op_s(x_s, w_s[:, wi], skip_s)
            y_t = op_t(x_t, w_t[:, wi], skip_t)
            if merged:
                skip_s = skip_t = mix(y_s, y_t)
            else:
                skip_s, skip_t = y_s, y_t
    if not merged:  # start == num_layers: mix the finished images
        return mix(skip_s, skip_t)
    return skip_t
