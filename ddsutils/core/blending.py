"""Image-blending baselines: paste the source part into the target image (paper appendix B, Fig. 16).

DDS is compared with image blending in appendix B: blending only moves pixels of ``x_s`` into ``x_t``
along a mask, it never re-synthesises the rest of the image. These are the classic, training-free
blending baselines for that comparison (the paper used the public codes of learned blending methods
[30, 37], which are not reproduced here):

- :func:`laplacian_blend` — multi-band blending (Burt & Adelson 1983): Gaussian pyramid of the mask,
  Laplacian pyramids of the images, per-level composite, collapse. Pure PyTorch, batched, differentiable.
- :func:`poisson_blend` — Poisson image editing (Pérez et al. 2003) through OpenCV ``cv2.seamlessClone``,
  ``"normal"`` (source gradients) or ``"mixed"`` (the stronger of source / target gradient).
  Needs ``opencv-python-headless`` (imported lazily).
- :func:`alpha_blend` — alpha composite with a Gaussian-feathered mask.
- :func:`blend` — dispatch by name, one of :data:`BASELINES`.

The naive crossover of Eq. 1 (two masks) is :func:`ddsutils.core.dds.crossover`, not a name here.

Shapes: images ``[N, 3, H, W]`` floating point in [-1, 1] (RGB); masks ``[N, 1, H, W]`` in {0, 1}
(bool, integer or floating point), 1 where the source part goes. Every function returns
``[N, 3, H, W]`` of ``x_t``'s dtype and device, clamped to [-1, 1]. Inputs are never modified.

Used in: notebooks/07_baselines.ipynb
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["BASELINES", "alpha_blend", "blend", "gaussian_pyramid", "laplacian_blend", "laplacian_pyramid",
           "collapse_laplacian_pyramid", "pyramid_kernel", "poisson_blend", "default_levels"]

#: Names accepted by :func:`blend`.
BASELINES: tuple[str, ...] = ("laplacian", "poisson", "poisson_mixed", "alpha")

_RANGE_TOL = 1e-5  # images may exceed [-1, 1] by this much (float round-off of a generator's output)
_MIN_COARSE = 8  # default pyramid depth stops when the short side would drop below this many pixels

_CV2_HINT = ("poisson_blend needs OpenCV: pip install opencv-python-headless "
             "(or the ddsutils dependency line 'opencv-python-headless>=4.8')")


# ----------------------------------------------------------------------------------------------------
# Input checks


def _check_inputs(x_s: torch.Tensor, x_t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Validate the common ``(x_s, x_t, mask)`` triple; return the mask as ``x_t``'s dtype (values 0./1.)."""
    for name, t in (("x_s", x_s), ("x_t", x_t), ("mask", mask)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if x_s.ndim != 4 or x_s.shape[1] != 3:
        raise ValueError(f"x_s must be [N, 3, H, W], got shape {tuple(x_s.shape)}")
    if x_t.shape != x_s.shape:
        raise ValueError(f"x_t must have the shape of x_s {tuple(x_s.shape)}, got {tuple(x_t.shape)}")
    n, _, h, w = x_s.shape
    if n == 0 or h == 0 or w == 0:
        raise ValueError(f"empty images: shape {tuple(x_s.shape)}")
    if tuple(mask.shape) != (n, 1, h, w):
        raise ValueError(f"mask must be [N, 1, H, W] = {(n, 1, h, w)}, got {tuple(mask.shape)}")
    for name, t in (("x_s", x_s), ("x_t", x_t)):
        if not t.is_floating_point():
            raise ValueError(f"{name} must be floating point in [-1, 1], got dtype {t.dtype}")
    if x_s.device != x_t.device or mask.device != x_t.device:
        raise ValueError(f"x_s, x_t and mask must be on one device, got {x_s.device}, {x_t.device}, {mask.device}")
    for name, t in (("x_s", x_s), ("x_t", x_t)):
        t = t.detach()
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} has non-finite values")
        lo, hi = float(t.min()), float(t.max())
        if lo < -1 - _RANGE_TOL or hi > 1 + _RANGE_TOL:
            raise ValueError(f"{name} must be in [-1, 1], got values in [{lo:.4g}, {hi:.4g}]")
    m = mask.to(x_t.dtype)
    if not bool(((m == 0) | (m == 1)).all()):
        raise ValueError("mask must be binary (values in {0, 1}); threshold a soft mask first, e.g. mask > 0.5")
    return m


def _check_sigma(name: str, value: float | None, *, allow_none: bool) -> None:
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{name} must be a number >= 0, got None")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


# ----------------------------------------------------------------------------------------------------
# Separable blurs (zero padding + normalisation, so borders of any size are handled without bias)


def _gaussian_taps(sigma: float) -> torch.Tensor:
    """Sampled, normalised 1-D Gaussian, radius ``ceil(3 sigma)`` (float64)."""
    radius = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def pyramid_kernel(blur_sigma: float | None = None) -> torch.Tensor:
    """The 1-D pyramid kernel (applied separably: rows, then columns).

    Args:
        blur_sigma: ``None`` for Burt & Adelson's 5-tap generating kernel with ``a = 0.375``, i.e. the
            binomial ``[1, 4, 6, 4, 1] / 16`` (close to a Gaussian with sigma = 1 px); a number > 0 for a
            sampled Gaussian with that sigma in pixels, radius ``ceil(3 sigma)``, normalised to sum 1.

    Returns:
        ``[K]`` float64 taps, odd ``K``, symmetric, summing to 1.
    """
    if blur_sigma is None:
        return torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=torch.float64) / 16.0
    _check_sigma("blur_sigma", blur_sigma, allow_none=True)
    if blur_sigma == 0:
        raise ValueError("blur_sigma must be > 0 (or None for the 5-tap binomial kernel)")
    return _gaussian_taps(float(blur_sigma))


def _sep_conv(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable 'same' convolution with zero padding, per channel. ``x`` ``[N, C, H, W]``."""
    c = x.shape[1]
    k = taps.to(dtype=x.dtype, device=x.device)
    r = (k.numel() - 1) // 2
    kh = k.view(1, 1, 1, -1).expand(c, 1, 1, k.numel())
    kv = k.view(1, 1, -1, 1).expand(c, 1, k.numel(), 1)
    x = F.conv2d(x, kh, padding=(0, r), groups=c)
    return F.conv2d(x, kv, padding=(r, 0), groups=c)


def _normalised_blur(x: torch.Tensor, taps: torch.Tensor, support: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised convolution ``conv(x * s) / conv(s)`` with ``s`` the support (all ones by default).

    With zero padding this is an unbiased blur at the borders (weights renormalised to the pixels that
    exist) and, with a sparse support, the interpolation step of the pyramid's EXPAND.
    """
    if support is None:
        support = torch.ones((1, 1) + tuple(x.shape[-2:]), dtype=x.dtype, device=x.device)
    num = _sep_conv(x * support, taps)
    den = _sep_conv(support, taps)
    return num / den


def _reduce(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """REDUCE: blur, keep every second row and column (``H -> ceil(H / 2)``)."""
    return _normalised_blur(x, taps)[..., ::2, ::2]


def _expand(x: torch.Tensor, size: tuple[int, int], taps: torch.Tensor) -> torch.Tensor:
    """EXPAND to ``size``: put ``x`` on the even grid points, fill the rest by normalised convolution."""
    n, c, h, w = x.shape
    up = x.new_zeros((n, c) + tuple(size))
    up[..., ::2, ::2] = x
    support = x.new_zeros((1, 1) + tuple(size))
    support[..., ::2, ::2] = 1
    return _normalised_blur(up, taps, support)


# ----------------------------------------------------------------------------------------------------
# Pyramids


def default_levels(height: int, width: int) -> int:
    """Default pyramid depth: halve until the short side would fall below 8 px.

    ``floor(log2(min(H, W) / 8))``, at least 1: 32 px -> 2, 64 px -> 3, 256 px -> 5 band-pass levels
    (the low-pass residual is then 8-15 px on its short side). The colour (low-pass) transition across
    the mask edge is then about ``2^(levels + 1)`` px, a quarter of the image: a quarter of the image
    away from a straight edge the result is within ~1% of the source's / target's own value. Deeper
    pyramids spread the low frequencies over the whole image (with the half-pixel asymmetry of
    subsampling at even pixels), which is rarely what a part paste wants.
    """
    return max(1, int(math.floor(math.log2(max(1, min(height, width)) / _MIN_COARSE))))


def _max_levels(height: int, width: int) -> int:
    """Most REDUCE steps before the short side reaches 1 px."""
    return max(0, math.ceil(math.log2(max(1, min(height, width)))))


def _resolve_levels(levels: int | None, height: int, width: int) -> int:
    if levels is None:
        return default_levels(height, width)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 0:
        raise ValueError(f"levels must be an int >= 0 or None, got {levels!r}")
    cap = _max_levels(height, width)
    if levels > cap:
        raise ValueError(f"levels={levels} is too deep for {height}x{width} images (at most {cap})")
    return int(levels)


def gaussian_pyramid(x: torch.Tensor, levels: int | None, *, blur_sigma: float | None = None) -> list[torch.Tensor]:
    """Gaussian pyramid ``[G_0 = x, G_1, ..., G_levels]``, ``G_{i+1} = REDUCE(G_i)``.

    Args:
        x: ``[N, C, H, W]`` floating point.
        levels: number of REDUCE steps (>= 0, or ``None`` for :func:`default_levels`); level ``i`` is
            ``ceil(H / 2^i) x ceil(W / 2^i)``.
        blur_sigma: the kernel, see :func:`pyramid_kernel`.

    Returns:
        ``levels + 1`` tensors ``[N, C, h_i, w_i]``, finest first.
    """
    taps = pyramid_kernel(blur_sigma)
    levels = _resolve_levels(levels, *x.shape[-2:])
    pyr = [x]
    for _ in range(levels):
        pyr.append(_reduce(pyr[-1], taps))
    return pyr


def laplacian_pyramid(x: torch.Tensor, levels: int | None, *, blur_sigma: float | None = None) -> list[torch.Tensor]:
    """Laplacian pyramid ``[L_0, ..., L_{levels-1}, G_levels]``, ``L_i = G_i - EXPAND(G_{i+1})``.

    Args:
        x: ``[N, C, H, W]`` floating point.
        levels: number of band-pass levels (>= 0, or ``None`` for :func:`default_levels`); the last entry
            is the low-pass residual.
        blur_sigma: the kernel, see :func:`pyramid_kernel`.

    Returns:
        ``levels + 1`` tensors, finest first; :func:`collapse_laplacian_pyramid` inverts it (up to float
        round-off) for any kernel, since it adds back exactly the EXPAND that was subtracted.
    """
    taps = pyramid_kernel(blur_sigma)
    gauss = gaussian_pyramid(x, levels, blur_sigma=blur_sigma)
    bands = [g - _expand(g_next, tuple(g.shape[-2:]), taps) for g, g_next in zip(gauss[:-1], gauss[1:])]
    return bands + [gauss[-1]]


def collapse_laplacian_pyramid(pyr: list[torch.Tensor], *, blur_sigma: float | None = None) -> torch.Tensor:
    """Invert :func:`laplacian_pyramid`: ``G_i = L_i + EXPAND(G_{i+1})`` from the coarsest level up.

    Args:
        pyr: ``[L_0, ..., L_{k-1}, G_k]`` as returned by :func:`laplacian_pyramid` (same ``blur_sigma``).
        blur_sigma: the kernel, see :func:`pyramid_kernel`.

    Returns:
        ``[N, C, H, W]`` at the size of ``pyr[0]``.
    """
    if not pyr:
        raise ValueError("empty pyramid")
    taps = pyramid_kernel(blur_sigma)
    out = pyr[-1]
    for band in reversed(pyr[:-1]):
        out = band + _expand(out, tuple(band.shape[-2:]), taps)
    return out


# ----------------------------------------------------------------------------------------------------
# Baselines


def laplacian_blend(x_s: torch.Tensor, x_t: torch.Tensor, mask: torch.Tensor, *, levels: int | None = None,
                    blur_sigma: float | None = None) -> torch.Tensor:
    """Laplacian-pyramid (multi-band) blending of the source into the target (Burt & Adelson 1983).

    Per level ``i``: ``L_i(out) = G_i(m) L_i(x_s) + (1 - G_i(m)) L_i(x_t)`` with ``G(m)`` the Gaussian
    pyramid of the mask and ``L`` the Laplacian pyramids (low-pass residual included), then collapse.
    Fine detail is thus switched sharply at the mask edge and coarse content over a wide band. Because
    the pyramids are linear this is computed as ``x_t + collapse(G(m) ⊙ L(x_s − x_t))``, which is the
    same number and makes an all-zero mask return ``x_t`` bit-exactly.

    Kernel: separable, zero-padded *normalised* convolution (weights renormalised over the pixels inside
    the image, so borders are not darkened and any size works); REDUCE = blur then keep every second
    row / column; EXPAND = place on the even grid and interpolate by the same normalised convolution.
    The taps are Burt & Adelson's 5-tap ``[1, 4, 6, 4, 1] / 16`` (``blur_sigma=None``) or a sampled
    Gaussian (:func:`pyramid_kernel`).

    Args:
        x_s: ``[N, 3, H, W]`` source images, float in [-1, 1].
        x_t: ``[N, 3, H, W]`` target images, float in [-1, 1].
        mask: ``[N, 1, H, W]`` in {0, 1}; 1 where ``x_s`` is pasted. Any H, W (odd sizes included).
        levels: band-pass levels; ``None`` -> :func:`default_levels` (32 px: 2, 64 px: 3, 256 px: 5);
            ``0`` is the hard composite ``m x_s + (1 - m) x_t``. At most ``ceil(log2(min(H, W)))``.
        blur_sigma: ``None`` (5-tap binomial) or the Gaussian sigma in pixels of the pyramid kernel.

    Returns:
        ``[N, 3, H, W]`` in [-1, 1], dtype and device of ``x_t``. Differentiable w.r.t. ``x_s``, ``x_t``.

    Raises:
        ValueError: bad shapes, values outside [-1, 1], non-binary mask, bad ``levels`` / ``blur_sigma``.
    """
    m = _check_inputs(x_s, x_t, mask)
    _check_sigma("blur_sigma", blur_sigma, allow_none=True)
    h, w = x_t.shape[-2:]
    k = _resolve_levels(levels, h, w)
    diff = x_s.to(x_t.dtype) - x_t
    bands = laplacian_pyramid(diff, k, blur_sigma=blur_sigma)
    weights = gaussian_pyramid(m, k, blur_sigma=blur_sigma)
    mixed = [g * b for g, b in zip(weights, bands)]
    return (x_t + collapse_laplacian_pyramid(mixed, blur_sigma=blur_sigma)).clamp(-1.0, 1.0)


def alpha_blend(x_s: torch.Tensor, x_t: torch.Tensor, mask: torch.Tensor, *, feather: float = 2.0) -> torch.Tensor:
    """Alpha composite with a feathered mask: ``a x_s + (1 − a) x_t``, ``a = blur(mask)``.

    The blur is a sampled Gaussian (sigma ``feather`` px, radius ``ceil(3 feather)``), separable, with
    zero padding renormalised at the borders, so an all-ones mask stays exactly 1 and an all-zero mask
    exactly 0. The feather is centred on the mask edge (``a ≈ 0.5`` there): it spreads the source about
    ``2 feather`` px outwards and lets the target in as far inwards.

    Args:
        x_s: ``[N, 3, H, W]`` source images, float in [-1, 1].
        x_t: ``[N, 3, H, W]`` target images, float in [-1, 1].
        mask: ``[N, 1, H, W]`` in {0, 1}; 1 where ``x_s`` is pasted.
        feather: Gaussian sigma in pixels (>= 0); 0 is the hard composite.

    Returns:
        ``[N, 3, H, W]`` in [-1, 1], dtype and device of ``x_t``. Differentiable w.r.t. ``x_s``, ``x_t``.

    Raises:
        ValueError: bad shapes, values outside [-1, 1], non-binary mask, negative ``feather``.
    """
    m = _check_inputs(x_s, x_t, mask)
    _check_sigma("feather", feather, allow_none=False)
    a = m if feather == 0 else _normalised_blur(m, _gaussian_taps(float(feather))).clamp(0.0, 1.0)
    return (a * x_s.to(x_t.dtype) + (1 - a) * x_t).clamp(-1.0, 1.0)


# ----------------------------------------------------------------------------------------------------
# Poisson (OpenCV seamlessClone)


def _import_cv2() -> Any:
    try:
        import cv2  # noqa: PLC0415 — optional dependency, imported lazily
    except ImportError as err:  # pragma: no cover - exercised only without OpenCV
        raise ImportError(_CV2_HINT) from err
    return cv2


def _to_uint8_bgr(x: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` RGB in [-1, 1] -> ``[H, W, 3]`` uint8 BGR, ``round((x + 1) * 127.5)``."""
    u8 = ((x.detach().to("cpu", torch.float64) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return np.ascontiguousarray(u8.permute(1, 2, 0).numpy()[..., ::-1])


def _from_uint8_bgr(img: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """``[H, W, 3]`` uint8 BGR -> ``[3, H, W]`` RGB in [-1, 1] with ``like``'s dtype and device."""
    rgb = torch.from_numpy(np.ascontiguousarray(img[..., ::-1])).permute(2, 0, 1)
    return (rgb.to(torch.float64) / 127.5 - 1.0).to(dtype=like.dtype, device=like.device)


def _bbox(mask_u8: np.ndarray) -> tuple[int, int, int, int]:
    """Inclusive bounding box ``(x0, x1, y0, y1)`` of the non-zero pixels."""
    ys = np.flatnonzero(mask_u8.any(axis=1))
    xs = np.flatnonzero(mask_u8.any(axis=0))
    return int(xs[0]), int(xs[-1]), int(ys[0]), int(ys[-1])


def _centre_point(mask_u8: np.ndarray, rounding: int) -> tuple[int, int]:
    """The ``p`` that makes ``seamlessClone`` put the mask's bounding box back where it is."""
    x0, x1, y0, y1 = _bbox(mask_u8)
    # plain Python ints: cv2 silently mis-reads a tuple of numpy integers as the point
    return int(x0 + (x1 - x0 + rounding) // 2), int(y0 + (y1 - y0 + rounding) // 2)


@functools.lru_cache(maxsize=None)
def _seamless_rounding(cv2_version: str) -> int:
    """How this OpenCV centres the mask's bounding box on ``p`` (0 or 1), measured once per version.

    ``seamlessClone`` copies the source inside the mask's bounding box ``[x0, x1]`` to a box of the same
    size whose centre is ``p``. Whether that centre is ``x0 + (x1 - x0) // 2`` or
    ``x0 + (x1 - x0 + 1) // 2`` differs between OpenCV releases (4.x vs 5.x) when ``x1 - x0`` is odd,
    which would shift the pasted part by one pixel. A small probe clone (bright block, odd-extent mask)
    tells which convention is in use. Each call gets fresh copies of its arrays, since some releases
    (5.0.0 seen) modify the mask argument in place.
    """
    cv2 = _import_cv2()
    dst = np.full((48, 48, 3), 40, np.uint8)
    src = dst.copy()
    src[14:22, 16:26] = 220
    mask = np.zeros((48, 48), np.uint8)
    mask[7:29, 9:33] = 255  # rows 7..28, cols 9..32: max - min = 21 and 23 (odd), 7 px around the block
    true_centroid = np.array([17.5, 20.5])
    for rounding in (0, 1):
        out = cv2.seamlessClone(src.copy(), dst.copy(), mask.copy(), _centre_point(mask, rounding),
                                cv2.NORMAL_CLONE)
        bright = out[..., 1] > 130
        if bright.any():
            centroid = np.array([c.mean() for c in np.nonzero(bright)])
            if np.abs(centroid - true_centroid).max() < 0.25:
                return rounding
    raise RuntimeError(f"cannot determine how OpenCV {cv2_version} places seamlessClone's patch; "
                       "poisson_blend would shift the part")


def poisson_blend(x_s: torch.Tensor, x_t: torch.Tensor, mask: torch.Tensor, *, mode: str = "normal",
                  pad: int = 8, dilate: int = 1, upscale: int | None = None) -> torch.Tensor:
    """Poisson image editing (Pérez et al. 2003): OpenCV ``cv2.seamlessClone`` of ``x_s`` into ``x_t``.

    Per sample: both images are quantised to uint8 BGR (``round((x + 1) * 127.5)``), cloned with
    ``NORMAL_CLONE`` (``mode="normal"``: the source's gradients inside the mask, the target's values on
    its boundary) or ``MIXED_CLONE`` (``mode="mixed"``: per pixel the stronger of the two gradients, so
    target texture shows through), and mapped back to [-1, 1] (so values carry uint8 rounding, ±1/255).

    Placement: ``seamlessClone`` cuts the mask's bounding box out of ``x_s`` and centres it on ``p`` in
    ``x_t``; ``p`` is computed from the bounding box (with the rounding convention of the installed
    OpenCV, see ``_seamless_rounding``) so the part stays exactly where it is in ``x_s``.

    Borders: ``seamlessClone`` fails or shifts the patch when the mask touches the image border. Here
    the images and the mask are first edge-replicated by ``pad`` pixels and the outermost 1-pixel ring of
    the padded mask is set to 0, so the mask never touches the (padded) border; the mask continues into
    the padding, so the part keeps its pixels up to the image edge, and the result is cropped back. Its
    Poisson boundary values there come from the replicated target, as on any other mask edge (a part that
    differs from the target right at the edge is pulled towards the target there). With ``pad=0`` this is
    the plain fallback: the outermost 1-pixel ring of the mask is zeroed, and as OpenCV also erodes the
    mask by a few pixels internally (eroded pixels keep the target's values), the part then loses a
    few pixels along the image edge.

    Small images: OpenCV erodes the mask internally by about 3 pixels on each side (measured with 5.0.0: a
    6 px tall mask pastes nothing), so the toy world's 2-4 px eyes would vanish at 64 px. The clone therefore
    runs at ``upscale`` times the size (default: the smallest factor reaching 256 px; images and mask
    upsampled by pixel replication, the result averaged back over each block, so untouched pixels keep their
    values exactly), and the mask is dilated by ``dilate`` pixels (a square ``2 * dilate + 1`` max filter at
    the input size), the usual band around a part that Poisson editing needs.

    Empty masks: a sample whose mask (after the ring is zeroed) is empty returns its ``x_t`` unchanged
    (bit-exact, not quantised) and a ``UserWarning`` names the samples.

    Args:
        x_s: ``[N, 3, H, W]`` source images, RGB float in [-1, 1].
        x_t: ``[N, 3, H, W]`` target images, RGB float in [-1, 1].
        mask: ``[N, 1, H, W]`` in {0, 1}; 1 where ``x_s`` is pasted.
        mode: ``"normal"`` or ``"mixed"``.
        pad: edge-replication in pixels around the images (>= 0), see Borders.
        dilate: mask dilation in input pixels (>= 0), see Small images.
        upscale: working scale factor (>= 1); ``None``: ``ceil(256 / max(H, W))``.

    Returns:
        ``[N, 3, H, W]`` in [-1, 1], dtype and device of ``x_t`` (computed on the CPU, not differentiable).
        Outside the mask's bounding box it equals ``x_t`` up to the uint8 rounding.

    Raises:
        ValueError: bad shapes, values outside [-1, 1], non-binary mask, bad ``mode`` / ``pad``.
        ImportError: OpenCV missing (``pip install opencv-python-headless``).
    """
    m = _check_inputs(x_s, x_t, mask)
    if mode not in ("normal", "mixed"):
        raise ValueError(f"mode must be 'normal' or 'mixed', got {mode!r}")
    if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
        raise ValueError(f"pad must be an int >= 0, got {pad!r}")
    pad = int(pad)
    if isinstance(dilate, bool) or not isinstance(dilate, (int, np.integer)) or dilate < 0:
        raise ValueError(f"dilate must be an int >= 0, got {dilate!r}")
    if dilate:
        k = 2 * int(dilate) + 1
        m = (torch.nn.functional.max_pool2d(m.float(), k, stride=1, padding=int(dilate)) > 0.5).to(m.dtype)
    if upscale is None:
        upscale = max(1, -(-256 // max(x_t.shape[-2:])))
    if isinstance(upscale, bool) or not isinstance(upscale, (int, np.integer)) or upscale < 1:
        raise ValueError(f"upscale must be an int >= 1 or None, got {upscale!r}")
    up = int(upscale)
    cv2 = _import_cv2()
    flag = cv2.NORMAL_CLONE if mode == "normal" else cv2.MIXED_CLONE
    h, w = x_t.shape[-2:]
    out = x_t.detach().clone()
    empty: list[int] = []
    thin: list[int] = []
    for i in range(x_t.shape[0]):
        mask_u8 = m[i, 0].detach().to("cpu").numpy().astype(np.uint8) * 255
        src = _to_uint8_bgr(x_s[i])
        dst = _to_uint8_bgr(x_t[i])
        if up > 1:
            mask_u8, src, dst = (np.repeat(np.repeat(a, up, axis=0), up, axis=1) for a in (mask_u8, src, dst))
        if pad:
            mask_u8 = np.pad(mask_u8, pad, mode="edge")
            src = np.pad(src, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
            dst = np.pad(dst, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        mask_u8[[0, -1], :] = 0
        mask_u8[:, [0, -1]] = 0
        if not mask_u8.any():
            empty.append(i)
            continue
        p = _centre_point(mask_u8, _seamless_rounding(cv2.__version__))
        # fresh copies: some OpenCV releases (5.0.0 seen) write into the mask argument in place
        try:
            cloned = cv2.seamlessClone(src.copy(), dst.copy(), mask_u8.copy(), p, flag)
        except cv2.error:  # the mask vanished in OpenCV's internal erosion (too thin)
            thin.append(i)
            continue
        cloned = cloned[pad:pad + h * up, pad:pad + w * up]
        if up > 1:  # average each up x up block (exact where the clone left the replicated target alone)
            cloned = cloned.reshape(h, up, w, up, 3).astype(np.float64).mean(axis=(1, 3))
        out[i] = _from_uint8_bgr(cloned, x_t)
    if empty:
        warnings.warn(f"poisson_blend: empty mask for sample(s) {empty}; returning x_t unchanged for them",
                      UserWarning, stacklevel=2)
    if thin:
        warnings.warn(f"poisson_blend: OpenCV rejected the mask of sample(s) {thin} (too thin after its internal "
                      f"erosion); returning x_t unchanged for them. Use dilate >= 1.", UserWarning, stacklevel=2)
    return out.clamp(-1.0, 1.0)


# ----------------------------------------------------------------------------------------------------
# Dispatcher


def blend(name: str, x_s: torch.Tensor, x_t: torch.Tensor, mask: torch.Tensor, **kw: Any) -> torch.Tensor:
    """Run the blending baseline ``name`` (one of :data:`BASELINES`).

    ``"laplacian"`` -> :func:`laplacian_blend`; ``"poisson"`` / ``"poisson_mixed"`` -> :func:`poisson_blend`
    with ``mode="normal"`` / ``"mixed"``; ``"alpha"`` -> :func:`alpha_blend`. Keywords go to the function.

    Args:
        name: the baseline.
        x_s, x_t: ``[N, 3, H, W]`` float in [-1, 1].
        mask: ``[N, 1, H, W]`` in {0, 1}.
        **kw: the function's keyword hyper-parameters (``mode`` is fixed by the Poisson names).

    Returns:
        ``[N, 3, H, W]`` in [-1, 1].

    Raises:
        ValueError: unknown name, ``mode`` given with a Poisson name, or the function's own errors.
    """
    if name == "laplacian":
        return laplacian_blend(x_s, x_t, mask, **kw)
    if name == "alpha":
        return alpha_blend(x_s, x_t, mask, **kw)
    if name in ("poisson", "poisson_mixed"):
        if "mode" in kw:
            raise ValueError(f"blend({name!r}) fixes mode; use 'poisson' or 'poisson_mixed' instead of mode=")
        return poisson_blend(x_s, x_t, mask, mode="normal" if name == "poisson" else "mixed", **kw)
    raise ValueError(f"unknown blending baseline {name!r}; choose one of {BASELINES}")
