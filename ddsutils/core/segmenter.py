"""One-shot part segmenter on a StyleGAN2 generator's own features (DDS paper §3.2, after repurpose-gan).

DDS needs a binary part mask (e.g. eyes + nose + mouth, or hair) for every generated image of *both* domains.
:class:`FewShotCNN` is trained on the per-pixel generator features of **one** (or a few) labelled generated
images (:func:`train_segmenter`) and applied unchanged to any generator of the same architecture, e.g. one
few-shot adapted from it (:func:`predict_masks`).

- Features: every StyledConv output, nearest-upsampled to the image size and concatenated (5,376 channels at
  256 px, 1.31 GiB per image in float32; :func:`gather_features`). The first convolution is computed per layer
  at native resolution with "collapsed" kernels (:func:`first_conv_factorised`), exactly equal to the
  convolution of that stack, which is therefore never built at full size; training builds it when it is small.
- Additions to the recipe (defaults, each can be switched off): per-channel standardisation with statistics of
  the training generator (:func:`feature_stats`), square-root inverse-frequency class weights
  (``class_balance``), channel dropout on the features (``feature_dropout``); at prediction, optional
  statistics of the generator itself (``stats="generator"``) and a logit adjustment (``prior_correction``).
- Labels: :func:`load_mask_png` (a painted PNG), or any ``[N, 1, H, W]`` {0, 1} tensor.
- Files: :func:`save_segmenter` / :func:`load_segmenter` write atomically and load strictly
  (``weights_only=True``, file version 2); a segmenter used with another architecture is an error naming both.

The toy-world oracle labels and the evaluation are :mod:`ddsutils.toy.segeval`
(``python -m ddsutils.segmenter evaluate``). Measurements: ``docs/segmenter.md``.

Used in: notebooks/02_oneshot_segmenter.ipynb.
"""
from __future__ import annotations

import copy
import io
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import cli
from .cli import UserError
from .stylegan2 import Generator

__all__ = [
    "FEWSHOT_SIZES",
    "FewShotCNN",
    "Segmenter",
    "SegmenterError",
    "ArchitectureMismatchError",
    "architecture_signature",
    "feature_channels",
    "gather_features",
    "generator_features",
    "first_conv_factorised",
    "feature_stats",
    "train_segmenter",
    "predict_masks",
    "save_segmenter",
    "load_segmenter",
    "load_mask_png",
    "mask_iou",
]

#: FewShotCNN layouts: dilations of the 3x3 convs and hidden widths (repurpose-gan ``model.py``).
FEWSHOT_SIZES: dict[str, dict[str, tuple[int, ...]]] = {
    "S": {"dilations": (1, 2, 1, 2, 1), "hidden": (128, 64, 64, 32)},
    "M": {"dilations": (1, 2, 4, 1, 2, 4, 1), "hidden": (128, 64, 64, 64, 64, 32)},
    "L": {"dilations": (1, 2, 4, 8, 1, 2, 4, 8, 1), "hidden": (128, 64, 64, 64, 64, 64, 64, 32)},
}

_FORMAT = "ddsutils.segmenter"
_VERSION = 2  # 2: per-channel feature standardisation statistics (feature_mean / feature_std)


class SegmenterError(UserError):
    """Bad input to the segmenter functions (labels, latents, files); the message says what to do (a
    ``ValueError`` and a :class:`ddsutils.cli.UserError`)."""


class ArchitectureMismatchError(SegmenterError):
    """A segmenter is used with a generator whose architecture differs from the one it was trained on."""


# ----------------------------------------------------------------------------------------------------
# Network


class FewShotCNN(nn.Module):
    """Stack of 3x3 dilated convolutions (padding = dilation) with LeakyReLU(0.2) between them.

    No normalisation, pooling or resampling: the output has the input's resolution. State-dict keys are
    ``layers.{0,2,4,...}.weight/bias`` (odd indices are the parameter-free activations), as in
    repurpose-gan. Parameters at ``in_ch=5376, n_class=2``: S 6,323,042, M 6,396,898, L 6,470,754;
    receptive fields 15 / 31 / 63 px.

    Args:
        in_ch: feature channels (5,376 for a rosinality 256 px generator; :func:`feature_channels`).
        n_class: number of classes (2 for DDS: background and the part).
        size: ``"S"``, ``"M"`` or ``"L"``.

    Input ``[N, in_ch, H, W]`` float; output logits ``[N, n_class, H, W]``.

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """

    def __init__(self, in_ch: int, n_class: int, size: str = "S"):
        super().__init__()
        if size not in FEWSHOT_SIZES:
            raise SegmenterError(f"size must be one of {tuple(FEWSHOT_SIZES)}, got {size!r}")
        if in_ch < 1 or n_class < 2:
            raise SegmenterError(f"need in_ch >= 1 and n_class >= 2, got in_ch={in_ch}, n_class={n_class}")
        spec = FEWSHOT_SIZES[size]
        widths = (in_ch, *spec["hidden"], n_class)
        mods: list[nn.Module] = []
        for i, d in enumerate(spec["dilations"]):
            mods.append(nn.Conv2d(widths[i], widths[i + 1], 3, padding=d, dilation=d))
            if i < len(spec["dilations"]) - 1:
                mods.append(nn.LeakyReLU(0.2))
        self.layers = nn.Sequential(*mods)
        self.in_ch, self.n_class, self.size = in_ch, n_class, size

    @property
    def halo(self) -> int:
        """Pixels of context on each side an output pixel depends on (7 / 15 / 31 for S / M / L)."""
        return sum(FEWSHOT_SIZES[self.size]["dilations"])

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``[N, n_class, H, W]`` of a materialised feature stack ``x [N, in_ch, H, W]``."""
        return self.layers(x)

    def forward_features(self, feats: Sequence[Tensor], size: int) -> Tensor:
        """Logits ``[N, n_class, size, size]`` from the per-layer generator features at native resolution.

        Equals ``forward(concat(nearest_upsample(f, size) for f in feats))`` without materialising the
        concatenation (see :func:`first_conv_factorised`).
        """
        first = self.layers[0]
        y = first_conv_factorised(feats, first.weight, first.bias, size)
        return self.layers[1:](y)


def _phase_of(s: int) -> Tensor:
    """Phase of each row of an ``s``-row upsampling block: 0 first, 1 inner, 2 (or 1 when s = 2) last.

    Returns int64 ``[s]``, e.g. ``[0, 1, 1, 2]`` for s = 4 and ``[0, 1]`` for s = 2.
    """
    if s == 2:
        return torch.tensor([0, 1])
    out = torch.ones(s, dtype=torch.long)
    out[0], out[-1] = 0, 2
    return out


def _collapse(w: Tensor, dim: int, p: int) -> Tensor:
    """Collapsed 3-tap kernels along ``dim`` for the ``p`` (2 or 3) row phases of an upsampling block.

    Derivation: output row ``i = k s + q`` of ``conv3(upsample_s(f))`` (taps ``w0, w1, w2``, padding 1)
    reads the upsampled rows ``i - 1, i, i + 1``, i.e. ``f[k-1], f[k], f[k]`` in the first row of a block
    (``q = 0``), ``f[k], f[k], f[k+1]`` in the last (``q = s - 1``) and ``f[k]`` three times in between;
    zero padding of the upsampled map is zero padding of ``f``. So it is a 3-tap filter of ``f`` at
    ``(k-1, k, k+1)`` with taps ``(w0, w1 + w2, 0)``, ``(0, w0 + w1 + w2, 0)`` (inner rows, only when
    ``s >= 3``) or ``(0, w0 + w1, w2)``. In 2-D the rows and columns collapse independently.

    Returns ``w`` with a phase axis of size ``p`` inserted at ``dim`` (the taps move to ``dim + 1``).
    """
    t0, t1, t2 = w.unbind(dim)
    z = torch.zeros_like(t0)
    phases = [(t0, t1 + t2, z)] + ([(z, t0 + t1 + t2, z)] if p == 3 else []) + [(z, t0 + t1, t2)]
    return torch.stack([torch.stack(ph, dim) for ph in phases], dim)


def _merge_resolutions(feats: Sequence[Tensor]) -> list[Tensor]:
    """Concatenate consecutive feature maps of equal resolution (channel order kept): one conv each."""
    out: list[list[Tensor]] = []
    for f in feats:
        if out and out[-1][0].shape[-2:] == f.shape[-2:]:
            out[-1].append(f)
        else:
            out.append([f])
    return [g[0] if len(g) == 1 else torch.cat(g, dim=1) for g in out]


#: Largest full-resolution feature stack (bytes) :func:`train_segmenter` builds by default (``materialise=None``).
_MATERIALISE_BYTES = 256 * 2 ** 20


def _upsample_cat(feats: Sequence[Tensor], size: int) -> Tensor:
    """Nearest-upsample per-layer maps ``[N, C_l, r_l, r_l]`` by integer factors to ``size`` and concatenate."""
    n = int(feats[0].shape[0])
    total = sum(int(f.shape[1]) for f in feats)
    out = torch.empty(n, total, size, size, dtype=feats[0].dtype, device=feats[0].device)
    offset = 0
    for f in feats:
        c, r = int(f.shape[1]), int(f.shape[-1])
        if size % r:
            raise SegmenterError(f"feature map {list(f.shape)} does not divide the output size {size}")
        s = size // r
        # nearest upsampling by an integer factor: out[.., k s + p, l s + q] = f[.., k, l]
        out[:, offset:offset + c].view(n, c, r, s, r, s).copy_(f[:, :, :, None, :, None])
        offset += c
    return out


def first_conv_factorised(feats: Sequence[Tensor], weight: Tensor, bias: Tensor | None, size: int) -> Tensor:
    """``conv2d(cat([upsample_nearest(f, size) for f in feats]), weight, bias, padding=1)``, factorised.

    For a feature map at resolution ``r`` (upsampling factor ``s = size / r``) and an output pixel at
    phase ``(py, px)`` inside its ``s x s`` block, the 3x3 conv of the upsampled map equals a 3x3 conv of
    the native map with a kernel whose taps are sums of ``W``'s taps (:func:`_collapse`). Consecutive layers
    of the same resolution are concatenated (at native resolution) and one convolution computes all
    ``P^2`` phases (``P <= 3``) of their contribution; each phase is added into its block positions of
    the output. Memory: the output ``[N, O, size, size]`` plus one transient of that size per resolution;
    the ``sum(C_l)``-channel full-resolution stack is never built. Exact up to float summation order.

    Args:
        feats: per-layer features ``[N, C_l, r_l, r_l]`` (``size % r_l == 0``), any float dtype.
        weight: ``[O, sum(C_l), 3, 3]`` of a conv with dilation 1 and padding 1; ``bias``: ``[O]`` or None.
        size: output resolution.

    Returns:
        ``[N, O, size, size]`` in the dtype of ``weight``; differentiable w.r.t. ``weight`` and ``bias``.
    """
    total = sum(int(f.shape[1]) for f in feats)
    if weight.ndim != 4 or weight.shape[1] != total or tuple(weight.shape[2:]) != (3, 3):
        raise SegmenterError(f"weight {list(weight.shape)} does not fit {total} feature channels with a 3x3 kernel")
    n, o = int(feats[0].shape[0]), int(weight.shape[0])
    out = torch.zeros(n, o, size, size, dtype=weight.dtype, device=weight.device)
    start = 0
    for f in _merge_resolutions(feats):
        c, r = int(f.shape[1]), int(f.shape[-1])
        if f.ndim != 4 or f.shape[-2] != r or size % r or f.shape[0] != n:
            raise SegmenterError(f"feature map {list(f.shape)} is not [N={n}, C, r, r] with r dividing {size}")
        f = f.to(weight.dtype)
        s = size // r
        w = weight[:, start:start + c]
        start += c
        if s == 1:
            out.add_(F.conv2d(f, w, padding=1))
            continue
        p = 2 if s == 2 else 3
        k = _collapse(_collapse(w, 3, p), 2, p)                                 # [o, c, py, a, px, b]
        k = k.permute(0, 2, 4, 1, 3, 5).reshape(o * p * p, c, 3, 3)             # out channel (o, py, px)
        res = F.conv2d(f, k, padding=1).view(n, o, p, p, r, r)
        idx = _phase_of(s).to(weight.device)
        res = res.index_select(2, idx).index_select(3, idx)                    # [n, o, s, s, r, r]
        out.view(n, o, r, s, r, s).add_(res.permute(0, 1, 4, 2, 5, 3))        # pixel (k s + q, l s + t)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


# ----------------------------------------------------------------------------------------------------
# Features


def feature_channels(G: Generator) -> list[int]:
    """Channels of the ``G.num_layers`` StyledConv outputs in order (their sum is the segmenter ``in_ch``).

    Example: ``Generator(256, 512, 8)`` -> ``[512]*9 + [256, 256, 128, 128]`` (sum 5,376).

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """
    out = [G.channels[4]]
    for i in range(3, G.log_size + 1):
        out += [G.channels[2 ** i]] * 2
    return out


def architecture_signature(G: Generator) -> dict[str, Any]:
    """What must match between the generator a segmenter was trained on and the one it is applied to.

    ``G.config`` without ``lr_mlp`` (a learning-rate multiplier, not part of the architecture) plus the
    derived per-layer ``feature_channels``. Plain JSON-able types.
    """
    cfg = {k: copy.deepcopy(v) for k, v in G.config.items() if k != "lr_mlp"}
    cfg["feature_channels"] = feature_channels(G)
    return cfg


def _describe(sig: Mapping[str, Any]) -> str:
    ch = sig.get("feature_channels", [])
    return (f"{sig.get('size')} px, style_dim {sig.get('style_dim')}, n_mlp {sig.get('n_mlp')}, "
            f"feature channels {list(ch)} ({sum(ch)} total)")


def _g_device(G: nn.Module) -> torch.device:
    return next(G.parameters()).device


@torch.no_grad()
def generator_features(G: Generator, latents: Tensor, *, input_space: str = "z", truncation: float = 1.0,
                       truncation_latent: Tensor | None = None,
                       noise: str | Sequence[Tensor] = "const") -> tuple[Tensor, list[Tensor]]:
    """Image and the per-layer StyledConv features at their native resolutions (no upsampling).

    Args:
        G: the generator (frozen; no gradients are recorded).
        latents: ``z``/``w`` ``[N, D]`` or ``w+`` ``[N, L, D]`` as ``input_space`` says (moved to G's device).
        truncation, truncation_latent, noise: as in :meth:`Generator.forward`.

    Returns:
        ``(img [N, 3, S, S] roughly in [-1, 1], [f_l [N, C_l, r_l, r_l] for each of G.num_layers layers])``.

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """
    latents = torch.as_tensor(latents).to(_g_device(G))
    img, feats = G(latents, input_space=input_space, truncation=truncation,
                   truncation_latent=truncation_latent, noise=noise, return_features=True)
    return img, list(feats)


@torch.no_grad()
def gather_features(G: Generator, latents: Tensor, *, input_space: str = "z", truncation: float = 1.0,
                    truncation_latent: Tensor | None = None, noise: str | Sequence[Tensor] = "const",
                    dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """All StyledConv features nearest-upsampled to the output size and concatenated (repurpose-gan).

    The stack is large: ``sum(C_l) * S^2 * 4`` bytes per image in float32, 1.31 GiB at 256 px for the
    rosinality layout (5,376 channels). :func:`train_segmenter` and :func:`predict_masks` never build it;
    this function is for inspection, small generators and tests.

    Args:
        G: the generator.
        latents: ``z``/``w`` ``[N, D]`` or ``w+`` ``[N, L, D]``.
        input_space, truncation, truncation_latent, noise: as in :meth:`Generator.forward`.
        dtype: dtype of the returned stack.

    Returns:
        ``(img, feats)``: ``img`` ``[N, 3, S, S]`` float32 roughly in [-1, 1]; ``feats``
        ``[N, sum(C_l), S, S]`` in ``dtype``, channels in layer order (:func:`feature_channels`).

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """
    img, feats = generator_features(G, latents, input_space=input_space, truncation=truncation,
                                    truncation_latent=truncation_latent, noise=noise)
    return img, _upsample_cat([f.to(dtype) for f in feats], img.shape[-1])


@torch.no_grad()
def feature_stats(G: Generator, *, n: int = 64, seed: int = 0, truncation: float = 1.0,
                  truncation_latent: Tensor | None = None, noise: str | Sequence[Tensor] = "const",
                  batch_size: int = 16, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation of ``G``'s StyledConv features over ``n`` random samples.

    The generator's layers have very different scales (the coarse 4-8 px maps are several times larger
    than the 64 px ones at the toy size), so :func:`train_segmenter` standardises every channel with
    these statistics. They are taken over all pixels at each layer's native resolution, which equals the
    statistics of the nearest-upsampled stack (every native pixel is repeated the same number of times).

    Args:
        G: the generator (the one the segmenter is trained on).
        n: samples, ``z ~ N(0, I)`` drawn from ``torch.Generator().manual_seed(seed)`` (the global RNG is
            not touched).
        truncation, truncation_latent, noise: as in :meth:`Generator.forward`.
        batch_size: samples per forward pass.
        eps: added to the standard deviation (a constant channel gets ``eps``, not 0).

    Returns:
        ``(mean, std)`` float32 ``[sum(C_l)]`` on the CPU, channels in layer order (:func:`feature_channels`).
    """
    if n < 1 or batch_size < 1:
        raise SegmenterError(f"need n >= 1 and batch_size >= 1, got {n}, {batch_size}")
    z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed))
    s1 = s2 = None
    count = 0.0
    for i in range(0, n, batch_size):
        _, feats = generator_features(G, z[i:i + batch_size], truncation=truncation,
                                      truncation_latent=truncation_latent, noise=noise)
        a = torch.cat([f.double().mean((2, 3)).sum(0) for f in feats]).cpu()         # sum of per-image means
        b = torch.cat([f.double().pow(2).mean((2, 3)).sum(0) for f in feats]).cpu()  # ... of mean squares
        s1 = a if s1 is None else s1 + a
        s2 = b if s2 is None else s2 + b
        count += feats[0].shape[0]
    mean = s1 / count
    var = (s2 / count - mean ** 2).clamp_min(0)
    return mean.float(), (var.sqrt() + eps).float()


# ----------------------------------------------------------------------------------------------------
# The segmenter bundle


@dataclass
class Segmenter:
    """A trained FewShotCNN plus what it was trained for.

    Attributes:
        net: the network (``eval()`` mode).
        generator_config: ``G.config`` of the generator whose features it was trained on.
        signature: :func:`architecture_signature` of that generator (checked before every use).
        classes: class names, index = class id (e.g. ``("background", "hair")``).
        part: name of the part the masks show (e.g. ``"hair"``).
        resolution: image / mask size in pixels.
        train_info: hyper-parameters, seed, losses and wall time of the training run (plain types).
        feature_mean, feature_std: float32 ``[in_ch]`` per-channel statistics of the training generator's
            features (:func:`feature_stats`); every feature map is standardised with them,
            ``(f - mean) / std``, before the network sees it, in training and in prediction (also on an
            adapted generator). ``None`` (both) means raw features.

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """

    net: FewShotCNN
    generator_config: dict[str, Any]
    signature: dict[str, Any]
    classes: tuple[str, ...]
    part: str
    resolution: int
    train_info: dict[str, Any] = field(default_factory=dict)
    feature_mean: Tensor | None = None
    feature_std: Tensor | None = None

    def __post_init__(self) -> None:
        if (self.feature_mean is None) != (self.feature_std is None):
            raise SegmenterError("feature_mean and feature_std must both be given or both be None")
        if self.feature_mean is not None:
            mean = torch.as_tensor(self.feature_mean, dtype=torch.float32).detach().cpu()
            std = torch.as_tensor(self.feature_std, dtype=torch.float32).detach().cpu()
            if mean.shape != (self.net.in_ch,) or std.shape != (self.net.in_ch,):
                raise SegmenterError(f"feature_mean / feature_std must be [{self.net.in_ch}] (the network's in_ch), "
                                     f"got {list(mean.shape)} / {list(std.shape)}")
            if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
                raise SegmenterError("feature_mean / feature_std must be finite and feature_std > 0")
            self.feature_mean, self.feature_std = mean, std

    @property
    def standardised(self) -> bool:
        """Whether features are standardised with stored statistics before the network."""
        return self.feature_mean is not None

    def standardise(self, feats: Sequence[Tensor], stats: tuple[Tensor, Tensor] | None = None) -> list[Tensor]:
        """Per-layer features (native resolution, layer order) standardised per channel with the stored stats.

        A per-channel affine map commutes with nearest upsampling, so standardising the native maps equals
        standardising the upsampled stack. Returns the inputs unchanged (as a list) if no stats are stored.
        ``stats`` = ``(mean, std)`` replaces the stored statistics (see ``predict_masks(stats="generator")``).
        """
        feats = list(feats)
        if self.feature_mean is None:
            return feats
        mean, std = stats if stats is not None else (self.feature_mean, self.feature_std)
        out, start = [], 0
        for f in feats:
            c = int(f.shape[1])
            m = mean[start:start + c].to(device=f.device, dtype=f.dtype).view(1, c, 1, 1)
            sd = std[start:start + c].to(device=f.device, dtype=f.dtype).view(1, c, 1, 1)
            out.append((f - m) / sd)
            start += c
        if start != self.net.in_ch:
            raise SegmenterError(f"features have {start} channels, the segmenter expects {self.net.in_ch}")
        return out

    @property
    def n_class(self) -> int:
        return self.net.n_class

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def to(self, device: str | torch.device) -> Segmenter:
        """Move the network (in place) and return ``self``."""
        self.net.to(device)
        return self

    def check_compatible(self, G: Generator) -> None:
        """Raise :class:`ArchitectureMismatchError` naming both architectures unless ``G`` matches."""
        theirs = architecture_signature(G)
        if theirs != self.signature:
            diff = sorted(k for k in set(theirs) | set(self.signature) if theirs.get(k) != self.signature.get(k))
            raise ArchitectureMismatchError(
                f"segmenter for part {self.part!r} was trained on a generator with {_describe(self.signature)}, "
                f"but this generator has {_describe(theirs)} (differs in: {', '.join(diff)}). A segmenter only "
                "applies to generators of the architecture it was trained on (e.g. the source generator and "
                "its few-shot adapted copies); train one on this generator's features instead.")

    def __repr__(self) -> str:
        return (f"Segmenter(part={self.part!r}, classes={self.classes}, size={self.net.size!r}, "
                f"resolution={self.resolution}, in_ch={self.net.in_ch})")


# ----------------------------------------------------------------------------------------------------
# Labels


def _labels_to_ids(labels: Any, *, n: int, size: int, n_class: int) -> Tensor:
    """Validate labels and return int64 class ids ``[n, size, size]``."""
    if isinstance(labels, (str, os.PathLike)):
        raise SegmenterError("labels is a path; load it with load_mask_png(path, size=...) first")
    try:
        lab = torch.as_tensor(labels)
    except Exception as exc:  # numpy object arrays, lists of mixed types, ...
        raise SegmenterError(f"labels must be a tensor or array, got {type(labels).__name__}") from exc
    lab = lab.detach().cpu()
    if lab.ndim == 2:
        lab = lab[None]
    if lab.ndim == 4:
        if lab.shape[1] != 1:
            raise SegmenterError(f"4-D labels must be {{0, 1}} masks [N, 1, H, W], got {list(lab.shape)}")
        kind = "mask"
        lab = lab[:, 0]
    elif lab.ndim == 3:
        kind = "class-id map"
    else:
        raise SegmenterError(f"labels must be [N, H, W] class ids or [N, 1, H, W] masks, got {list(lab.shape)}")
    if tuple(lab.shape[-2:]) != (size, size):
        raise SegmenterError(
            f"label is {lab.shape[-2]}x{lab.shape[-1]} but the generator makes {size}x{size} images; the label "
            f"must be drawn on the generated image at its resolution (resize a mask with nearest neighbour, "
            f"or load it with load_mask_png(path, size={size}, resize=True))")
    if lab.shape[0] != n:
        raise SegmenterError(f"got {lab.shape[0]} labels for {n} latents; pass one label per latent")
    if lab.dtype == torch.bool:
        lab = lab.to(torch.int64)
    if lab.is_floating_point():
        if not torch.isfinite(lab).all():
            raise SegmenterError("labels contain NaN or inf")
        if not torch.equal(lab, lab.round()):
            bad = lab[lab != lab.round()].unique()[:5].tolist()
            raise SegmenterError(f"labels must be whole numbers; found values such as {bad} (soft or anti-aliased "
                                 "mask? threshold it, e.g. (mask > 0.5))")
    elif lab.is_complex():
        raise SegmenterError("labels must be real")
    lab = lab.to(torch.int64)
    values = lab.unique().tolist()
    if kind == "mask":
        if n_class != 2:
            raise SegmenterError(f"{{0, 1}} masks define 2 classes but {n_class} classes were asked for; pass "
                                 "[N, H, W] class ids instead")
        bad = [v for v in values if v not in (0, 1)]
        if bad:
            hint = " (an 8-bit 0/255 mask? divide by 255 or use load_mask_png)" if 255 in bad else ""
            raise SegmenterError(f"mask values must be 0 or 1, found {bad[:8]}{hint}")
    else:
        bad = [v for v in values if not 0 <= v < n_class]
        if bad:
            raise SegmenterError(f"class ids must be in [0, {n_class - 1}] for {n_class} classes, found {bad[:8]}")
    if not (lab > 0).any():
        raise SegmenterError("the label is empty: no foreground pixel (class id > 0) in any labelled image; "
                             "paint the part before training")
    if (lab > 0).all():
        raise SegmenterError("the label has no background pixel (class 0) in any image; a segmenter cannot "
                             "learn a part from an all-foreground label")
    return lab


def _otsu_threshold(values: Any) -> int:
    """Otsu's threshold of a uint8 array: ``t`` in [1, 255] such that ``values >= t`` splits it best (the middle
    of the best plateau, so two levels ``a < b`` give about ``(a + b) / 2``)."""
    import numpy as np

    hist = np.bincount(np.asarray(values, dtype=np.uint8).ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    total, total_sum = hist.sum(), (hist * levels).sum()
    w0 = np.cumsum(hist)[:-1]  # pixels below t = 1..255
    s0 = np.cumsum(hist * levels)[:-1]
    w1 = total - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = np.where((w0 > 0) & (w1 > 0), w0 * w1 * (s0 / w0 - (total_sum - s0) / w1) ** 2, -1.0)
    best = np.flatnonzero(between >= between.max() * (1 - 1e-12))
    return int(best[len(best) // 2]) + 1


def load_mask_png(path: str | os.PathLike, *, size: int, resize: bool = False,
                  threshold: int | None = None) -> Tensor:
    """Load a binary part mask from an image file (e.g. saved by :class:`ddsutils.widgets.MaskPainter`).

    Each pixel's value is its brightest channel (grey images: the grey level), so white and a pure colour
    (e.g. a red overlay on black) are foreground. Transparency counts: when the image has an alpha channel
    (RGBA, grey + alpha, palette with transparency) that is not fully opaque, a transparent pixel is
    background. If the colour is the same everywhere, the alpha channel alone is the mask (a mask held only in
    alpha); otherwise the value is multiplied by alpha (a colour mask on a transparent background).
    Accepted values: {0, 255} or {0, 1} (1-bit PNGs and palette images convert to these); anything else needs
    ``threshold``, and the error suggests one that splits the image's levels (Otsu's method) with the share of
    pixels it makes foreground.

    Args:
        path: PNG (or any format Pillow reads).
        size: expected height = width (the generator's resolution).
        resize: nearest-neighbour resize a square mask of another size instead of raising.
        threshold: if given (1-255), foreground = value >= ``threshold`` (for anti-aliased masks).

    Returns:
        float32 ``[1, 1, size, size]`` with values in {0, 1}.

    Raises:
        FileNotFoundError: no such file.
        SegmenterError: not an image, not square, wrong size, or levels other than 0/1/255 without
            ``threshold``; a bad ``size`` or ``threshold``.

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from . import cli

    cli.positive_int(size, "size")
    if threshold is not None:
        threshold = cli.int_arg(threshold, "threshold", min=1, max=255)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no mask file at {path}" + (" (a folder)" if path.is_dir() else ""))
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode in ("L", "RGB") and "transparency" in im.info:
                im = im.convert("LA" if im.mode == "L" else "RGBA")
            elif im.mode not in ("L", "LA", "RGB", "RGBA"):
                im = im.convert("L")
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SegmenterError(f"{path} is not a readable image ({exc})") from exc
    h, w = arr.shape[:2]
    if w != h:
        raise SegmenterError(f"{path} is {w}x{h}; masks must be square ({size}x{size})")
    alpha = arr[..., -1] if arr.ndim == 3 and arr.shape[-1] in (2, 4) else None
    colour = arr if arr.ndim == 2 else arr[..., : (1 if arr.shape[-1] <= 2 else 3)]
    value = colour if colour.ndim == 2 else colour.max(axis=-1)
    if alpha is not None and (alpha < 255).any():
        if value.min() == value.max():  # one colour everywhere: the shape is in the alpha channel
            value = alpha
        else:  # transparent is background: composite onto black
            value = ((value.astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
    if w != size:
        if not resize:
            raise SegmenterError(f"{path} is {w}x{h} but the generator makes {size}x{size} images; pass "
                                 f"resize=True to resize it (nearest neighbour) or paint it on a {size} px image")
        value = np.asarray(Image.fromarray(value).resize((size, size), Image.Resampling.NEAREST))
    arr_t = torch.from_numpy(np.array(value, dtype=np.uint8))  # a writable copy
    if threshold is not None:
        mask = arr_t >= threshold
    else:
        values = set(arr_t.unique().tolist())
        if values <= {0, 255}:
            mask = arr_t == 255
        elif values <= {0, 1}:
            mask = arr_t == 1
        else:
            others = sorted(values - {0, 1, 255})
            t = _otsu_threshold(value)
            share = float((arr_t >= t).float().mean())
            raise SegmenterError(f"{path} has {len(values)} levels (e.g. {others[:5]}), not a hard 0/255 mask "
                                 f"(anti-aliased, or drawn over the image?); pass threshold={t} to binarise it "
                                 f"(foreground = brightest channel >= {t}: {share:.1%} of the pixels)")
    return mask.to(torch.float32)[None, None]


# ----------------------------------------------------------------------------------------------------
# Training and prediction


def train_segmenter(G: Generator, latents: Tensor, labels: Any, *, part: str = "part",
                    classes: Sequence[str] | None = None, size: str = "S", steps: int = 100, lr: float = 1e-3,
                    weight_decay: float = 1e-3, step_size: int = 50, gamma: float = 0.1,
                    input_space: str = "z", truncation: float = 1.0, truncation_latent: Tensor | None = None,
                    noise: str | Sequence[Tensor] = "const", seed: int = 0, device: str | torch.device = "cpu",
                    standardise: bool = True, stats_samples: int = 64, class_balance: float = 0.5,
                    feature_dropout: float = 0.5, materialise: bool | None = None,
                    progress: bool = True) -> Segmenter:
    """Train a FewShotCNN on ``G``'s features of one (or a few) labelled generated images.

    Recipe of repurpose-gan / DDS: Adam (``lr`` 1e-3, ``weight_decay`` 1e-3), StepLR(``step_size`` 50,
    ``gamma`` 0.1), 100 steps, mean pixel-wise cross-entropy, no augmentation. Every step uses all
    labelled images as one batch (with one image this is exactly the recipe's 100 epochs). The generator
    features are computed once.

    One addition to the recipe (``standardise=True``, the default): every feature channel is standardised
    with its mean and standard deviation over ``stats_samples`` random samples of ``G``
    (:func:`feature_stats`, z seeded by ``seed``, same ``truncation`` and ``noise``). The statistics are
    stored in the segmenter and :func:`predict_masks` applies the same (source) statistics to any
    generator. What each addition does to the IoU: ``docs/segmenter.md``.

    The first layer runs factorised (:func:`first_conv_factorised`, the full-resolution stack is never
    built) unless the stack is small: ``materialise=None`` builds it when it takes at most 256 MiB
    (e.g. 64 px generators), which is faster there; the two are equal up to float summation order.

    Args:
        G: the generator whose features are used (frozen; not modified).
        latents: ``[N, D]`` z or w, or ``[N, L, D]`` w+ (``input_space``), of the labelled images.
        labels: int class ids ``[N, H, W]`` (or ``[H, W]``) in ``[0, len(classes))``, or {0, 1} masks
            ``[N, 1, H, W]`` (float, int or bool); ``H = W = G.size``. They must be drawn on the images
            ``G(latents, input_space=..., truncation=..., noise=...)``. An image without the part is a valid
            negative example, but the labels as a whole need foreground and background pixels.
        part: name of the part (stored; e.g. ``"eyes_nose_mouth"``).
        classes: class names (index = id); default ``("background", part)``.
        size: FewShotCNN size ``"S"`` (DDS), ``"M"`` or ``"L"``.
        steps, lr, weight_decay, step_size, gamma: optimisation (see above).
        input_space, truncation, truncation_latent, noise: how the labelled images were generated
            (as in :meth:`Generator.forward`; ``noise="const"`` makes them reproducible).
        seed: seeds the network initialisation, the statistics samples (and ``noise="random"`` draws).
        device: where the segmenter trains (features are moved there).
        standardise: standardise the features per channel (see above); ``False`` is the plain recipe.
        stats_samples: random samples for the statistics.
        class_balance: class weights of the cross-entropy ``w_c = freq_c ** -class_balance`` (``freq_c``:
            pixel frequency of class ``c`` in the labels; classes absent from the labels get weight 0).
            0 is the plain recipe's unweighted loss, 1 full inverse-frequency balancing; the default 0.5
            (square root) counters the small parts (eyes+nose+mouth are about 1 % of the pixels).
        feature_dropout: probability of zeroing each feature channel (of each image, independently at
            every step; the kept ones are scaled by ``1 / (1 - p)``), as a regulariser of the one-shot fit:
            the network cannot rely on a few channels. Masks are drawn from a CPU generator seeded with
            ``seed``. 0 switches it off (the plain recipe); not used at prediction.
        materialise: ``True`` / ``False`` force the materialised / factorised first layer; ``None`` decides
            by the stack size (see above).
        progress: show a ``tqdm.auto`` bar.

    Returns:
        A :class:`Segmenter` in ``eval()`` mode on ``device``.

    Raises:
        SegmenterError: bad labels (wrong size or count, empty, values other than 0/1 or out-of-range
            ids, NaN) or bad hyper-parameters.

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """
    from tqdm.auto import tqdm

    from . import cli

    if not isinstance(G, Generator):
        raise SegmenterError(f"G must be a ddsutils Generator (stylegan2.load_generator), got {type(G).__name__}")
    if not (isinstance(feature_dropout, (int, float)) and 0 <= feature_dropout < 1):
        raise SegmenterError(f"feature_dropout must be in [0, 1), got {feature_dropout}")
    if not (isinstance(class_balance, (int, float)) and 0 <= class_balance <= 1):
        raise SegmenterError(f"class_balance must be in [0, 1], got {class_balance}")
    try:
        steps, step_size, stats_samples = (
            cli.positive_int(v, k)
            for k, v in (("steps", steps), ("step_size", step_size), ("stats_samples", stats_samples)))
        lr = cli.float_arg(lr, "lr", min=0, min_open=True)
        weight_decay = cli.float_arg(weight_decay, "weight_decay", min=0)
        gamma = cli.float_arg(gamma, "gamma", min=0, min_open=True)
        truncation = cli.float_arg(truncation, "truncation")
    except UserError as exc:
        raise SegmenterError(str(exc)) from None
    if size not in FEWSHOT_SIZES:
        raise SegmenterError(f"size must be one of {tuple(FEWSHOT_SIZES)}, got {size!r}")
    classes = tuple(classes) if classes is not None else ("background", part)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise SegmenterError(f"classes must be >= 2 distinct names, got {classes}")
    latents = _check_latents(latents, G)
    ids = _labels_to_ids(labels, n=latents.shape[0], size=G.size, n_class=len(classes))
    device = torch.device(device)
    t0 = time.perf_counter()
    gdev = _g_device(G)
    with torch.random.fork_rng(devices=[gdev] if gdev.type == "cuda" else []):
        torch.manual_seed(seed)  # network init and noise="random" draws
        _, feats = generator_features(G, latents, input_space=input_space, truncation=truncation,
                                      truncation_latent=truncation_latent, noise=noise)
        stats = (feature_stats(G, n=stats_samples, seed=seed, truncation=truncation,
                               truncation_latent=truncation_latent, noise=noise) if standardise else (None, None))
        net = FewShotCNN(sum(int(f.shape[1]) for f in feats), len(classes), size).to(device)
    seg = Segmenter(net=net, generator_config=copy.deepcopy(G.config), signature=architecture_signature(G),
                    classes=classes, part=part, resolution=G.size, feature_mean=stats[0], feature_std=stats[1])
    feats = seg.standardise([f.to(device=device, dtype=torch.float32) for f in feats])
    if materialise is None:
        materialise = ids.shape[0] * net.in_ch * G.size ** 2 * 4 <= _MATERIALISE_BYTES
    n_img, bounds = int(ids.shape[0]), [0]
    for f in feats:
        bounds.append(bounds[-1] + int(f.shape[1]))
    drop_rng = torch.Generator().manual_seed(seed)  # feature-dropout masks (CPU, independent of the global RNG)

    def keep_scale() -> Tensor | None:
        """Per-image channel mask of feature dropout, scaled by 1 / (1 - p); None without dropout."""
        if feature_dropout == 0:
            return None
        keep = torch.rand(n_img, net.in_ch, generator=drop_rng) >= feature_dropout
        return (keep.float() / (1 - feature_dropout)).to(device)[:, :, None, None]

    if materialise:
        stack = _upsample_cat(feats, G.size)

        def forward() -> Tensor:
            k = keep_scale()
            return net(stack if k is None else stack * k)
    else:
        merged = _merge_resolutions(feats)

        def forward() -> Tensor:
            k = keep_scale()  # a channel mask commutes with nearest upsampling: apply it at native resolution
            fs = merged if k is None else _merge_resolutions([f * k[:, a:b] for f, a, b in
                                                              zip(feats, bounds[:-1], bounds[1:])])
            return net.forward_features(fs, G.size)
    target = ids.to(device)
    freq = torch.bincount(ids.flatten(), minlength=len(classes)).double() / ids.numel()
    weight = None
    if class_balance > 0:
        weight = torch.where(freq > 0, freq.clamp_min(1e-12) ** -class_balance, torch.zeros_like(freq))
        weight = (weight / weight[freq > 0].min()).float().to(device)  # the most frequent class has weight 1
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    losses: list[float] = []
    net.train()
    bar = tqdm(range(steps), desc=f"segmenter {part}", disable=cli.no_progress(progress), leave=False)
    for _ in bar:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(), target, weight=weight)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    net.eval()
    info = {"size": size, "steps": steps, "lr": lr, "weight_decay": weight_decay, "step_size": step_size,
            "gamma": gamma, "input_space": input_space, "truncation": float(truncation),
            "noise": noise if isinstance(noise, str) else "custom", "seed": seed, "n_images": int(ids.shape[0]),
            "foreground_fraction": float((ids > 0).double().mean()), "standardise": bool(standardise),
            "class_balance": float(class_balance), "feature_dropout": float(feature_dropout),
            "class_weights": None if weight is None else [round(float(w), 6) for w in weight],
            "stats_samples": int(stats_samples) if standardise else 0, "materialise": bool(materialise),
            "losses": losses, "seconds": round(time.perf_counter() - t0, 3)}
    seg.train_info = info
    return seg


def _check_latents(latents: Any, G: Generator, *, min_n: int = 1) -> Tensor:
    """``latents`` as a float tensor ``[N, D]`` or ``[N, L, D]`` with ``D = G.style_dim``, N >= min_n, all finite."""
    if isinstance(latents, (str, os.PathLike)):
        raise SegmenterError("latents is a path; load the tensor first (torch.load) or draw it with torch.randn")
    try:
        lat = torch.as_tensor(latents)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise SegmenterError(f"latents must be a tensor or array [N, {G.style_dim}], got {type(latents).__name__}") \
            from exc
    if lat.ndim not in (2, 3) or lat.shape[0] < min_n or lat.shape[-1] != G.style_dim:
        raise SegmenterError(f"latents must be [N, D] or [N, L, D] with N >= {min_n} and D = style_dim {G.style_dim}, "
                             f"got {list(lat.shape)}")
    if not lat.is_floating_point():
        lat = lat.float()
    if not bool(torch.isfinite(lat).all()):
        raise SegmenterError("latents contain NaN or inf")
    return lat


def _class_ids(segmenter: Segmenter, part_class: int | str | Sequence[int | str]) -> list[int]:
    items = [part_class] if isinstance(part_class, (int, str)) else list(part_class)
    ids = []
    for c in items:
        if isinstance(c, str):
            if c not in segmenter.classes:
                raise SegmenterError(f"unknown class {c!r}; the segmenter's classes are {segmenter.classes}")
            ids.append(segmenter.classes.index(c))
        elif not 0 <= int(c) < segmenter.n_class:
            raise SegmenterError(f"part_class {c} out of range for classes {segmenter.classes}")
        else:
            ids.append(int(c))
    return ids


@torch.no_grad()
def predict_masks(segmenter: Segmenter, G: Generator, latents: Tensor, *,
                  part_class: int | str | Sequence[int | str] = 1, batch_size: int = 4, input_space: str = "z",
                  truncation: float = 1.0, truncation_latent: Tensor | None = None,
                  noise: str | Sequence[Tensor] = "const", return_images: bool = False, progress: bool = False,
                  materialise: bool = False, stats: str = "training",
                  prior_correction: float = 0.0) -> Tensor | tuple[Tensor, Tensor]:
    """Binary part masks of ``G``'s images, from ``G``'s own features (any generator of the same architecture).

    Features are standardised with the segmenter's stored statistics (those of the training generator,
    also on an adapted generator). Images are processed in chunks of ``batch_size``; the first layer
    runs factorised, so the peak memory
    is about the generator's forward pass plus a few ``[b, 128, S, S]`` float32 maps per chunk, never the
    materialised feature stack (1.31 GiB per image at 256 px); measured: ``docs/segmenter.md``.

    Args:
        segmenter: from :func:`train_segmenter` or :func:`load_segmenter`.
        G: a generator with the architecture the segmenter was trained on (the source generator or a
            few-shot adapted copy).
        latents: ``[N, D]`` z or w, or ``[N, L, D]`` w+ (``input_space``).
        part_class: class id(s) or name(s) that count as the part (default 1, the part of a 2-class model).
        batch_size: images per chunk.
        input_space, truncation, truncation_latent, noise: as in :meth:`Generator.forward`.
        return_images: also return the images.
        progress: ``tqdm.auto`` bar over chunks.
        materialise: build the concatenated feature stack and run the plain network (reference path;
            1.31 GiB per image at 256 px).
        stats: ``"training"`` (default): standardise with the stored statistics of the training
            generator. ``"generator"``: with statistics of ``G`` itself (:func:`feature_stats` with the
            training run's ``stats_samples`` and ``seed``), a test-time re-normalisation for adapted
            generators whose feature scales drifted; costs ``stats_samples`` extra forward passes per call.
            Ignored for a segmenter without statistics.
        prior_correction: ``lambda >= 0``; the decision is ``argmax_c(logit_c - lambda * log w_c)`` with the
            cross-entropy class weights ``w_c`` of training (``train_info["class_weights"]``; classes absent
            from the labels keep their logit). 1 is the full logit adjustment, which undoes the prior shift of
            the class-weighted loss (Menon et al. 2021) so that the masks are no longer inflated; 0 (default)
            is the plain argmax. No effect on a segmenter trained with ``class_balance=0``. Its effect on
            the toy world's IoU: ``docs/segmenter.md``.

    Returns:
        ``masks`` float32 ``[N, 1, S, S]`` in {0, 1} on G's device, or ``(images [N, 3, S, S], masks)``.

    Raises:
        ArchitectureMismatchError: ``G``'s architecture differs from the training generator's.
        SegmenterError: bad ``part_class``, ``batch_size`` or ``prior_correction``.

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """
    from tqdm.auto import tqdm

    segmenter.check_compatible(G)
    if not (math.isfinite(prior_correction) and prior_correction >= 0):
        raise SegmenterError(f"prior_correction must be a finite number >= 0 (1: full logit adjustment), "
                             f"got {prior_correction}")
    ids = _class_ids(segmenter, part_class)
    if stats not in ("training", "generator"):
        raise SegmenterError(f"stats must be 'training' or 'generator', got {stats!r}")
    own = None
    if stats == "generator" and segmenter.standardised:
        ti = segmenter.train_info
        own = feature_stats(G, n=int(ti.get("stats_samples") or 64), seed=int(ti.get("seed", 0)),
                            truncation=truncation, truncation_latent=truncation_latent, noise=noise)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SegmenterError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    latents = _check_latents(latents, G, min_n=0)
    gdev = _g_device(G)
    net = segmenter.net if segmenter.device == gdev else copy.deepcopy(segmenter.net).to(gdev)
    was_training = net.training
    net.eval()
    id_t = torch.tensor(ids, device=gdev)
    shift, cw = None, segmenter.train_info.get("class_weights")
    if prior_correction and cw is not None:  # log w_c per class; weight 0 (class absent from the labels) is left alone
        w = torch.tensor(cw, dtype=torch.float64)
        shift = (prior_correction * torch.where(w > 0, w.clamp_min(1e-300).log(), torch.zeros_like(w)))
        shift = shift.to(device=gdev, dtype=torch.float32)[None, :, None, None]
    masks, images = [], []
    try:
        starts = range(0, latents.shape[0], batch_size)
        for i in tqdm(starts, desc=f"masks {segmenter.part}", disable=cli.no_progress(progress), leave=False):
            chunk = latents[i:i + batch_size]
            img, feats = generator_features(G, chunk, input_space=input_space, truncation=truncation,
                                            truncation_latent=truncation_latent, noise=noise)
            feats = segmenter.standardise(feats, own)  # the training generator's statistics (if stored)
            if materialise:
                stack = _upsample_cat([f.float() for f in feats], G.size)
                logits = net(stack)
                del stack
            else:
                logits = net.forward_features(feats, G.size)
            del feats
            if shift is not None:
                logits = logits - shift
            masks.append(torch.isin(logits.argmax(dim=1, keepdim=True), id_t).to(torch.float32))
            if return_images:
                images.append(img)
    finally:
        net.train(was_training)
    out = torch.cat(masks) if masks else torch.zeros(0, 1, G.size, G.size, device=gdev)
    if return_images:
        return (torch.cat(images) if images else torch.zeros(0, 3, G.size, G.size, device=gdev)), out
    return out


def mask_iou(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image IoU of binary masks ``[N, 1, H, W]`` (> 0.5 is foreground) -> float64 ``[N]``; NaN where both
    are empty.

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """
    p, t = pred.flatten(1) > 0.5, target.flatten(1) > 0.5
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, float("nan")))


# ----------------------------------------------------------------------------------------------------
# Files


def save_segmenter(seg: Segmenter, path: str | os.PathLike) -> Path:
    """Write a segmenter atomically as ``{"format", "version", "state_dict", "feature_stats", "meta"}``.

    ``feature_stats`` is ``{"mean", "std"}`` (float32 ``[in_ch]``) or ``None``; everything is tensors and
    plain types (file version 2; version 1 files, without statistics, are refused by :func:`load_segmenter`).

    Loads with ``torch.load(..., weights_only=True)``. Returns the path.

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """
    from .files import atomic_write_bytes

    meta = {"in_ch": seg.net.in_ch, "n_class": seg.net.n_class, "size": seg.net.size,
            "classes": list(seg.classes), "part": seg.part, "resolution": seg.resolution,
            "generator_config": copy.deepcopy(seg.generator_config), "signature": copy.deepcopy(seg.signature),
            "train_info": copy.deepcopy(seg.train_info)}
    stats = None if seg.feature_mean is None else {"mean": seg.feature_mean.detach().cpu().clone(),
                                                    "std": seg.feature_std.detach().cpu().clone()}
    obj = {"format": _FORMAT, "version": _VERSION,
           "state_dict": {k: v.detach().cpu().clone() for k, v in seg.net.state_dict().items()},
           "feature_stats": stats, "meta": meta}
    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(buf.getvalue(), path)


def load_segmenter(path: str | os.PathLike, *, G: Generator | None = None,
                   device: str | torch.device = "cpu") -> Segmenter:
    """Load a segmenter file strictly (``weights_only=True``); optionally check it fits generator ``G``.

    Args:
        path: a file written by :func:`save_segmenter`.
        G: if given, raise :class:`ArchitectureMismatchError` (naming both architectures) unless the
            segmenter was trained on a generator of ``G``'s architecture.
        device: where the network is placed.

    Raises:
        FileNotFoundError: no file.
        SegmenterError: not a segmenter file, unreadable, or its weights do not match its metadata.
        ArchitectureMismatchError: see ``G``.

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """
    from .files import NotACheckpointError, UnsafeCheckpointError, nonfinite_tensors, torch_load

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no segmenter file at {path}")
    try:
        obj = torch_load(path)
    except NotACheckpointError as exc:
        raise SegmenterError(f"{path} is not a readable segmenter file (not a PyTorch file or corrupt: {exc.detail}); "
                             "train and save it again with train_segmenter / save_segmenter") from exc
    except UnsafeCheckpointError as exc:
        raise SegmenterError(f"{path} is not a segmenter file: it pickles code outside the weights-only allow-list "
                             f"({', '.join(exc.globals)}) and was not loaded") from exc
    if not isinstance(obj, Mapping) or obj.get("format") != _FORMAT:
        raise SegmenterError(f"{path} is not a ddsutils segmenter file (no format={_FORMAT!r} entry); "
                             "write it with save_segmenter")
    if obj.get("version") == 1:
        raise SegmenterError(f"{path} is a version 1 segmenter file (written before feature standardisation was "
                             f"added; it has no feature statistics); this code reads version {_VERSION}. Retrain "
                             "it with train_segmenter and save it again")
    if obj.get("version") != _VERSION:
        raise SegmenterError(f"{path} has segmenter file version {obj.get('version')}, this code reads {_VERSION}")
    if "feature_stats" not in obj:
        raise SegmenterError(f"{path}: no feature_stats entry (None or {{'mean', 'std'}}); "
                             "write it with save_segmenter")
    try:
        meta, sd = dict(obj["meta"]), dict(obj["state_dict"])
        net = FewShotCNN(int(meta["in_ch"]), int(meta["n_class"]), str(meta["size"]))
        sig = dict(meta["signature"])
        fs = obj["feature_stats"]
        if fs is not None and (not isinstance(fs, Mapping) or set(fs) != {"mean", "std"}
                               or not all(isinstance(v, Tensor) for v in fs.values())):
            raise SegmenterError(f"{path}: feature_stats must be None or {{'mean': tensor, 'std': tensor}}")
        seg = Segmenter(net=net, generator_config=dict(meta["generator_config"]), signature=sig,
                        classes=tuple(meta["classes"]), part=str(meta["part"]), resolution=int(meta["resolution"]),
                        train_info=dict(meta.get("train_info", {})),
                        feature_mean=None if fs is None else fs["mean"], feature_std=None if fs is None else fs["std"])
    except SegmenterError as exc:
        raise SegmenterError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise SegmenterError(f"{path}: incomplete segmenter metadata ({exc})") from exc
    own = net.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    wrong = [f"{k}: file {list(sd[k].shape)} vs model {list(own[k].shape)}"
             for k in own if k in sd and sd[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise SegmenterError(f"{path}: weights do not match a FewShotCNN-{meta['size']}({meta['in_ch']}, "
                             f"{meta['n_class']}): missing {missing}, unexpected {unexpected}, shapes {wrong}")
    if sum(sig.get("feature_channels", [])) != net.in_ch or len(seg.classes) != net.n_class \
            or seg.resolution != sig.get("size"):
        raise SegmenterError(f"{path}: inconsistent metadata (in_ch {net.in_ch}, classes {seg.classes}, "
                             f"resolution {seg.resolution}, generator {_describe(sig)})")
    bad = nonfinite_tensors({**sd, **({"feature_mean": fs["mean"], "feature_std": fs["std"]} if fs else {})})
    if bad:
        raise SegmenterError(f"{path} has NaN or infinite values in {', '.join(bad[:5])}: the file is damaged or "
                             "its training diverged; train the segmenter again")
    net.load_state_dict(sd, strict=True)
    net.eval().to(device)
    if G is not None:
        try:
            seg.check_compatible(G)
        except ArchitectureMismatchError as exc:
            raise ArchitectureMismatchError(f"{path}: {exc}") from None
    return seg
