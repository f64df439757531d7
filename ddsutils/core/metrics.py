"""Image-quality and distribution metrics: SSIM, PSNR, LPIPS (optionally masked), KID, FID and the Fréchet
distance on VGG-16 features.

Per-image metrics (the DDS paper, §5) compare an image with its reference and return ``[N]``:

- :func:`ssim` / :func:`ssim_map`: SSIM as the ``pytorch-ssim`` package the paper cites computes it (normalised
  Gaussian window, 11 taps, σ = 1.5, grouped convolution with zero padding, images scaled to [0, 1],
  ``c1 = 1e-4``, ``c2 = 9e-4``); the value is the mean of the map. :func:`psnr`: ``10 log10(1 / MSE)`` on [0, 1].
- :func:`lpips_distance`: LPIPS (AlexNet by default) through :mod:`ddsutils.core.backbones`.

Each takes ``mask=`` (``[N, 1, H, W]`` in {0, 1}) and ``region="inside"`` / ``"outside"`` (:func:`masked_mean`);
:func:`score_images` runs several metrics over the full image and the inside / outside of a mask in one call.

Distribution metrics compare two image sets through features: :func:`frechet_distance` (the Fréchet distance of
Gaussians fitted to each set, float64, symmetric eigendecompositions only, exact in sample space when N < D),
:func:`kid` (unbiased MMD², cubic polynomial kernel, seeded subsets), :func:`inception_features` /
:func:`inception_fid` (FID proper: torch-fidelity's Inception-v3 pool3, an optional dependency; its weights are
the manifest entry :data:`INCEPTION_WEIGHTS`, and offline a ``WeightsUnavailableError`` names the file, the fix
and the fallback) and :func:`vgg_features` / :func:`frechet_vgg` (ImageNet VGG-16 relu4_3 and relu5_3,
average-pooled, D = 1024). Label the latter :data:`FRECHET_VGG_LABEL`, never FID (:data:`FID_LABEL`); both are
biased by N, so compare numbers of the same N, resolution and ``resize``.

Inputs are float ``[N, C, H, W]`` in [-1, 1] (``data_range`` names another range); values outside it, shape
mismatches, non-finite values, masks outside [0, 1] and empty masks raise ``ValueError``.

Used in: notebooks/02_oneshot_segmenter.ipynb, notebooks/05_metrics.ipynb
"""
from __future__ import annotations

import functools
import math
import os
import socket
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FRECHET_VGG_LABEL",
    "VGG_LAYERS",
    "gaussian_stats",
    "frechet_distance_gaussians",
    "frechet_distance",
    "vgg_features",
    "frechet_vgg",
    "masked_mean",
    "ssim_map",
    "ssim",
    "psnr",
    "lpips_distance",
    "score_images",
    "kid",
    "FID_LABEL",
    "INCEPTION_WEIGHTS",
    "INCEPTION_FILENAME",
    "INCEPTION_URL",
    "inception_weights_path",
    "inception_features",
    "inception_fid",
]

#: How to label the output of :func:`frechet_vgg` in tables and plots (it is not FID).
FRECHET_VGG_LABEL = "Fréchet distance on VGG-16 features"
#: The VGG-16 layers whose global-average-pooled activations form the features (512 channels each).
VGG_LAYERS: tuple[str, ...] = ("relu4_3", "relu5_3")


def _as_float64(x: Tensor | np.ndarray, what: str, ndim: int) -> np.ndarray:
    arr = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return arr


def gaussian_stats(feats: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of a feature set, in float64.

    Args:
        feats: ``[N, D]`` features (torch or numpy, any float dtype), ``N >= 2``.

    Returns:
        ``(mu, sigma)``: float64 ``[D]`` and ``[D, D]`` (``np.cov`` with ``N - 1`` normalisation).
    """
    f = _as_float64(feats, "feats", 2)
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 samples to estimate a covariance, got {f.shape[0]}")
    mu = f.mean(axis=0)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - 1)
    return mu, sigma


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((m + m.T) * 0.5)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_gaussians(
    mu_a: np.ndarray | Tensor, sigma_a: np.ndarray | Tensor, mu_b: np.ndarray | Tensor, sigma_b: np.ndarray | Tensor
) -> float:
    """Fréchet distance between ``N(mu_a, sigma_a)`` and ``N(mu_b, sigma_b)`` (squared 2-Wasserstein).

    Args:
        mu_a, mu_b: ``[D]`` means.
        sigma_a, sigma_b: ``[D, D]`` symmetric PSD covariances.

    Returns:
        ``||mu_a - mu_b||^2 + tr(sigma_a) + tr(sigma_b) - 2 tr((sigma_a^1/2 sigma_b sigma_a^1/2)^1/2)`` as a
        Python float (float64 arithmetic, clipped at 0 against round-off).
    """
    ma, mb = _as_float64(mu_a, "mu_a", 1), _as_float64(mu_b, "mu_b", 1)
    sa, sb = _as_float64(sigma_a, "sigma_a", 2), _as_float64(sigma_b, "sigma_b", 2)
    d = ma.shape[0]
    if mb.shape != (d,) or sa.shape != (d, d) or sb.shape != (d, d):
        raise ValueError(f"shape mismatch: mu_a {ma.shape}, mu_b {mb.shape}, sigma_a {sa.shape}, sigma_b {sb.shape}")
    root_a = _sqrt_psd(sa)
    inner = root_a @ sb @ root_a
    eig = np.linalg.eigvalsh((inner + inner.T) * 0.5)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = ma - mb
    value = float(diff @ diff + np.trace(sa) + np.trace(sb) - 2.0 * tr_covmean)
    return max(value, 0.0)


def frechet_distance(feats_a: Tensor | np.ndarray, feats_b: Tensor | np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets.

    Two exact routes, chosen by cost: with at least as many samples as dimensions, the ``D x D``
    covariances go through :func:`frechet_distance_gaussians`; with fewer (``min(N_a, N_b) < D``, e.g. a
    few hundred images and 1024 VGG features) the trace term is computed in sample space as the nuclear
    norm of ``X_a X_b^T / sqrt((N_a - 1)(N_b - 1))`` (centred features), whose singular values are the
    square roots of the non-zero eigenvalues of ``S_a S_b``. Both give the same number (float64).

    Args:
        feats_a: ``[N_a, D]`` features (torch or numpy), ``N_a >= 2``.
        feats_b: ``[N_b, D]`` features with the same ``D``.

    Returns:
        A float ``>= 0`` (float64 arithmetic); 0 for identical sets (up to round-off), symmetric in its
        arguments. For VGG-16 features label it :data:`FRECHET_VGG_LABEL`, never "FID".

    Used in: notebooks/02_oneshot_segmenter.ipynb, notebooks/05_metrics.ipynb
    """
    fa = _as_float64(feats_a, "feats_a", 2)
    fb = _as_float64(feats_b, "feats_b", 2)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feature dimensions differ: {fa.shape[1]} vs {fb.shape[1]}")
    na, nb, d = fa.shape[0], fb.shape[0], fa.shape[1]
    if min(na, nb) < 2:
        raise ValueError(f"need at least 2 samples per set to estimate a covariance, got {na} and {nb}")
    if min(na, nb) >= d:
        return frechet_distance_gaussians(*gaussian_stats(fa), *gaussian_stats(fb))
    mu_a, mu_b = fa.mean(axis=0), fb.mean(axis=0)
    xa, xb = fa - mu_a, fb - mu_b
    cross = (xa @ xb.T) / np.sqrt((na - 1) * (nb - 1))
    tr_covmean = float(np.linalg.svd(cross, compute_uv=False).sum())
    tr_a = float(np.einsum("ij,ij->", xa, xa)) / (na - 1)
    tr_b = float(np.einsum("ij,ij->", xb, xb)) / (nb - 1)
    diff = mu_a - mu_b
    return max(float(diff @ diff) + tr_a + tr_b - 2.0 * tr_covmean, 0.0)


@functools.lru_cache(maxsize=4)
def _vgg(device: str, layers: tuple[str, ...], resize: int | None) -> torch.nn.Module:
    from .backbones import build_backbone

    return build_backbone(
        "vgg16", layers=layers, weights="imagenet", normalize="imagenet", resize=resize, device=device
    )


@torch.no_grad()
def vgg_features(
    img: Tensor,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    layers: Sequence[str] = VGG_LAYERS,
    resize: int | None = None,
) -> Tensor:
    """Global-average-pooled ImageNet VGG-16 features of images.

    The frozen torchvision VGG-16 with the real ImageNet weights (:func:`ddsutils.perceptual.build_backbone`,
    ImageNet mean / std normalisation) is run on the images; each requested layer's activation map is
    averaged over space and the results are concatenated. Default: ``relu4_3`` + ``relu5_3`` -> 1024
    features. At 64 px input the two maps are 8 x 8 and 4 x 4.

    Args:
        img: float ``[N, 3, H, W]`` in [-1, 1] (any device; processed in chunks of ``batch_size``).
        batch_size: images per forward pass.
        device: where VGG-16 runs (the model is built once per device / layers / resize and cached).
        layers: VGG-16 tap names (see :func:`ddsutils.perceptual.layer_names`).
        resize: if set, images are resized (bilinear) to ``resize x resize`` first; ``None`` keeps them.
            Only compare numbers computed with the same input size.

    Returns:
        float32 ``[N, 512 * len(layers)]`` on the CPU.

    Raises:
        ddsutils.weights.WeightsUnavailableError: VGG-16 weights missing and not downloadable.

    Used in: notebooks/02_oneshot_segmenter.ipynb, notebooks/05_metrics.ipynb
    """
    if img.ndim != 4 or img.shape[1] != 3:
        raise ValueError(f"expected an image batch [N, 3, H, W] in [-1, 1], got {tuple(img.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    net = _vgg(str(torch.device(device)), tuple(layers), resize)
    out = []
    for chunk in img.split(batch_size):
        acts = net(chunk.to(device, torch.float32))
        out.append(torch.cat([acts[name].mean(dim=(2, 3)) for name in layers], dim=1).float().cpu())
    if not out:
        return torch.empty(0, 512 * len(layers))
    return torch.cat(out)


def frechet_vgg(
    img_a: Tensor,
    img_b: Tensor,
    *,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    resize: int | None = None,
) -> float:
    """Fréchet distance on VGG-16 features between two image sets (:func:`vgg_features` + :func:`frechet_distance`).

    Args:
        img_a: float ``[N_a, 3, H, W]`` in [-1, 1], ``N_a >= 2``.
        img_b: float ``[N_b, 3, H', W']`` in [-1, 1], ``N_b >= 2`` (same resolution recommended).
        batch_size, device, resize: passed to :func:`vgg_features`.

    Returns:
        The distance (a float >= 0). Report it as :data:`FRECHET_VGG_LABEL` ("Fréchet distance on VGG-16
        features"), never as FID; compare only numbers computed with equal sample sizes.

    Used in: notebooks/02_oneshot_segmenter.ipynb, notebooks/05_metrics.ipynb
    """
    fa = vgg_features(img_a, batch_size=batch_size, device=device, resize=resize)
    fb = vgg_features(img_b, batch_size=batch_size, device=device, resize=resize)
    return frechet_distance(fa, fb)


# ----------------------------------------------------------------------------------------------------
# input checks and masks
# ----------------------------------------------------------------------------------------------------
#: Relative slack on the value-range check (float round-off of a clamped image, not real overshoot).
_RANGE_SLACK = 1e-5
_REGIONS = ("inside", "outside")


def _range_of(data_range: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(data_range, (int, float)):
        lo, hi = 0.0, float(data_range)
    else:
        lo, hi = (float(v) for v in data_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"data_range must be (min, max) with max > min (or a positive max), got {data_range!r}")
    return lo, hi


def _check_images(a: Tensor, b: Tensor, data_range: float | tuple[float, float], *, channels: int | None = None
                  ) -> tuple[Tensor, Tensor]:
    """Validate two image batches and map them linearly from ``data_range`` to [0, 1] (float32 or float64)."""
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
            want = f"[N, {channels}, H, W]" if channels is not None else "[N, C, H, W]"
            raise ValueError(f"{name} must be an image batch {want}, got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a float tensor in the data range, got dtype {x.dtype}")
    if a.shape != b.shape:
        raise ValueError(f"image batches differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.shape[0] == 0:
        raise ValueError("empty image batch (N = 0)")
    lo, hi = _range_of(data_range)
    slack = _RANGE_SLACK * (hi - lo)
    for name, x in (("a", a), ("b", b)):
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        xmin, xmax = float(x.min()), float(x.max())
        if xmin < lo - slack or xmax > hi + slack:
            raise ValueError(
                f"{name} has values in [{xmin:.4g}, {xmax:.4g}], outside data_range [{lo:g}, {hi:g}]; clamp first "
                f"(e.g. x.clamp({lo:g}, {hi:g})) or pass the right data_range"
            )
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    scale = 1.0 / (hi - lo)
    return ((a.to(dtype) - lo) * scale).clamp(0, 1), ((b.to(dtype) - lo) * scale).clamp(0, 1)


def _resize_weights(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """Mask -> ``size``: area averaging when shrinking (no part vanishes), nearest when growing (stays binary)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    if mask.shape[-2] >= size[0] and mask.shape[-1] >= size[1]:
        return F.adaptive_avg_pool2d(mask, size)
    return F.interpolate(mask, size=size, mode="nearest")


def _region_weights(mask: Tensor, n: int, size: tuple[int, int], *, region: str, dtype: torch.dtype,
                    device: torch.device) -> Tensor:
    """Validated ``[n, 1, h, w]`` weights of ``region`` (``mask`` or ``1 - mask``) at ``size``; none empty."""
    if region not in _REGIONS:
        raise ValueError(f"region must be one of {_REGIONS}, got {region!r}")
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, n):
        raise ValueError(f"mask must be [N, 1, H, W] or [1, 1, H, W] with N = {n}, got shape {tuple(mask.shape)}")
    m = mask.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(m).all()) or float(m.min()) < 0.0 or float(m.max()) > 1.0:
        raise ValueError("mask values must be finite and in [0, 1] (a binary {0, 1} mask)")
    if region == "outside":
        m = 1.0 - m
    m = _resize_weights(m, size).expand(n, 1, *size)
    total = m.flatten(1).sum(dim=1)
    empty = torch.nonzero(total <= 0).flatten().tolist()
    if empty:
        raise ValueError(f"empty {region} region (the mask selects no pixel) for image(s) {empty[:10]}")
    return m


def masked_mean(values: Tensor, mask: Tensor, *, region: str = "inside") -> Tensor:
    """Per-image mean of a map over the pixels of a mask region.

    ``sum(w * v) / (C * sum(w))`` over channels and pixels, with ``w = mask`` (``region="inside"``) or
    ``w = 1 - mask`` (``region="outside"``). A mask of another resolution is resized first: area averaging
    when it shrinks in both dimensions (soft weights = the covered fraction of each pixel, so a small part
    never vanishes), nearest otherwise (e.g. when it grows). Soft masks in [0, 1] act as weights.

    Args:
        values: ``[N, C, h, w]`` float map (e.g. an SSIM map or an LPIPS layer distance map).
        mask: ``[N, 1, H, W]`` (or ``[1, 1, H, W]``, broadcast) in {0, 1}.
        region: ``"inside"`` (mask = 1) or ``"outside"`` (mask = 0).

    Returns:
        ``[N]`` tensor in ``values``' dtype (differentiable w.r.t. ``values``).

    Raises:
        ValueError: bad shapes, mask values outside [0, 1], or a region that selects no pixel of some image.
    """
    if not isinstance(values, Tensor) or values.ndim != 4:
        raise ValueError(f"values must be a [N, C, h, w] tensor, got {getattr(values, 'shape', type(values))}")
    n, c, h, w = values.shape
    m = _region_weights(mask, n, (h, w), region=region, dtype=values.dtype, device=values.device)
    return (values * m).flatten(1).sum(dim=1) / (c * m.flatten(1).sum(dim=1))


# ----------------------------------------------------------------------------------------------------
# SSIM / PSNR
# ----------------------------------------------------------------------------------------------------
def _gaussian_window(window_size: int, sigma: float, channels: int, dtype: torch.dtype, device: torch.device
                     ) -> Tensor:
    """``[C, 1, k, k]`` normalised 2-D Gaussian (outer product of the normalised 1-D one), one per channel."""
    x = torch.arange(window_size, dtype=torch.float64) - window_size // 2
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    g = g / g.sum()
    w2 = torch.outer(g, g)
    return w2.expand(channels, 1, window_size, window_size).contiguous().to(device=device, dtype=dtype)


def ssim_map(
    a: Tensor,
    b: Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    c1: float = 1e-4,
    c2: float = 9e-4,
    data_range: float | tuple[float, float] = (-1.0, 1.0),
) -> Tensor:
    """Local SSIM at every pixel and channel (see :func:`ssim`).

    Args:
        a, b: float ``[N, C, H, W]`` images in ``data_range`` (default [-1, 1]), same shape.
        window_size: odd Gaussian window width (11 in the paper / ``pytorch-ssim``).
        sigma: Gaussian standard deviation in pixels (1.5).
        c1, c2: stabilising constants for images scaled to [0, 1] (paper: 1e-4, 9e-4).
        data_range: ``(min, max)`` of the inputs (a number ``M`` means ``(0, M)``); the images are mapped
            linearly to [0, 1] before SSIM.

    Returns:
        ``[N, C, H, W]`` SSIM map (float32, or float64 for float64 inputs), 1 where the images agree;
        differentiable.

    Raises:
        ValueError: shapes differ / are not 4-D, values outside ``data_range`` or non-finite, even or
            non-positive ``window_size``, non-positive ``sigma``.
    """
    if not isinstance(window_size, int) or window_size < 1 or window_size % 2 == 0:
        raise ValueError(f"window_size must be a positive odd int, got {window_size!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    x, y = _check_images(a, b, data_range)
    ch = x.shape[1]
    win = _gaussian_window(window_size, float(sigma), ch, x.dtype, x.device)
    pad = window_size // 2

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, win, padding=pad, groups=ch)

    mu_x, mu_y = blur(x), blur(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = blur(x * x) - mu_xx
    var_y = blur(y * y) - mu_yy
    cov = blur(x * y) - mu_xy
    return ((2 * mu_xy + c1) * (2 * cov + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))


def ssim(
    a: Tensor,
    b: Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    c1: float = 1e-4,
    c2: float = 9e-4,
    mask: Tensor | None = None,
    region: str = "inside",
    data_range: float | tuple[float, float] = (-1.0, 1.0),
) -> Tensor:
    """Structural similarity per image, as in the DDS paper (§5) and ``pytorch-ssim``.

    ``SSIM = (2 mu_a mu_b + c1)(2 s_ab + c2) / ((mu_a^2 + mu_b^2 + c1)(s_a^2 + s_b^2 + c2))`` with local means,
    variances and covariance from a normalised Gaussian window (``window_size`` x ``window_size``, ``sigma``)
    applied per channel (grouped convolution, zero padding ``window_size // 2``, so border pixels see the
    zeros exactly as in ``pytorch-ssim``). Inputs in [-1, 1] are mapped to [0, 1] by ``(x + 1) / 2`` first
    (generally: linearly from ``data_range``), which is the range the constants ``c1 = (0.01)^2`` and
    ``c2 = (0.03)^2`` assume.

    Args:
        a, b: float ``[N, C, H, W]`` images in ``data_range`` (default [-1, 1]), same shape.
        window_size, sigma, c1, c2: see :func:`ssim_map`.
        mask: optional ``[N, 1, H, W]`` (or ``[1, 1, H, W]``) mask in {0, 1}; the SSIM map is averaged over
            the region only (:func:`masked_mean`; a mask of another size is resized). The local windows still
            see the pixels around the region: this is the mean of the full-image SSIM map inside the region.
        region: with a mask, ``"inside"`` (mask = 1) or ``"outside"`` (mask = 0, i.e. ``1 - mask``).
        data_range: ``(min, max)`` of the inputs (a number ``M`` means ``(0, M)``).

    Returns:
        ``[N]`` SSIM per image (mean over channels and pixels, or over the region), at most 1 (identical
        images give 1); float32 (float64 for float64 inputs); differentiable.

    Raises:
        ValueError: shape mismatch, values outside ``data_range``, bad mask, empty region.

    Used in: notebooks/05_metrics.ipynb
    """
    smap = ssim_map(a, b, window_size=window_size, sigma=sigma, c1=c1, c2=c2, data_range=data_range)
    if mask is None:
        return smap.flatten(1).mean(dim=1)
    return masked_mean(smap, mask, region=region)


def psnr(
    a: Tensor,
    b: Tensor,
    *,
    mask: Tensor | None = None,
    region: str = "inside",
    data_range: float | tuple[float, float] = (-1.0, 1.0),
) -> Tensor:
    """Peak signal-to-noise ratio per image, ``10 log10(R^2 / MSE)`` (DDS paper §5).

    The paper's ``R`` is "the maximal in the image data": the peak of the data range. Images are mapped to
    [0, 1] (from ``data_range``, default [-1, 1]) and ``R = 1``, which equals ``R = 2`` on the [-1, 1] values
    or ``R = 255`` on uint8 (PSNR does not depend on the range convention, only on the range width). A
    uniform error ``e`` on [-1, 1] images gives ``10 log10(2^2 / e^2)``.

    Args:
        a, b: float ``[N, C, H, W]`` images in ``data_range``, same shape.
        mask: optional ``[N, 1, H, W]`` (or ``[1, 1, H, W]``) mask in {0, 1}: the MSE is taken over the
            region's pixels only (all channels); pixels outside it are ignored. Resized if needed.
        region: with a mask, ``"inside"`` (mask = 1) or ``"outside"`` (mask = 0).
        data_range: ``(min, max)`` of the inputs (a number ``M`` means ``(0, M)``).

    Returns:
        ``[N]`` PSNR in dB (float32, or float64 for float64 inputs); ``+inf`` where the images (region) are
        identical.

    Raises:
        ValueError: shape mismatch, values outside ``data_range``, bad mask, empty region.

    Used in: notebooks/05_metrics.ipynb
    """
    x, y = _check_images(a, b, data_range)
    err = (x - y) ** 2
    mse = err.flatten(1).mean(dim=1) if mask is None else masked_mean(err, mask, region=region)
    return 10.0 * torch.log10(1.0 / mse)


# ----------------------------------------------------------------------------------------------------
# LPIPS
# ----------------------------------------------------------------------------------------------------
def _lpips_module(net: str, version: str, device: torch.device) -> torch.nn.Module:
    """The cached, frozen ``lpips.LPIPS`` of :mod:`ddsutils.perceptual` (real weights; tests monkeypatch this)."""
    from .backbones import _cached_lpips

    return _cached_lpips(net, version, str(device))


def _lpips_layer_maps(model: Any, x: Tensor, y: Tensor) -> list[Tensor]:
    """LPIPS' per-layer distance maps ``lin_k((f_k(x) - f_k(y))^2)``, each ``[N, 1, h_k, w_k]`` (x, y in [-1, 1])."""
    import lpips

    if getattr(model, "version", "0.1") == "0.1":
        x, y = model.scaling_layer(x), model.scaling_layer(y)
    outs_x, outs_y = model.net(x), model.net(y)
    maps = []
    for k, (fx, fy) in enumerate(zip(outs_x, outs_y, strict=True)):
        diff = (lpips.normalize_tensor(fx) - lpips.normalize_tensor(fy)) ** 2
        maps.append(model.lins[k](diff))
    return maps


def lpips_distance(
    a: Tensor,
    b: Tensor,
    *,
    net: str = "alex",
    version: str = "0.1",
    mask: Tensor | None = None,
    region: str = "inside",
    data_range: float | tuple[float, float] = (-1.0, 1.0),
) -> Tensor:
    """LPIPS distance per image (Zhang et al. 2018), optionally restricted to a mask region.

    Without a mask this is :func:`ddsutils.perceptual.distance` (the official ``lpips`` package with the
    project's verified weights): ``sum_k mean_hw lin_k((f_k(a) - f_k(b))^2)`` over the trunk's layers ``k``.
    With a mask, each layer's distance map is averaged only over the region, the mask being resized to that
    layer's resolution (area averaging, as the paper downsamples masks per layer for its masked perceptual
    loss): ``sum_k masked_mean(d_k, mask_k)``. A mask of ones gives exactly the unmasked LPIPS. Deep layers
    have receptive fields far larger than a part, so the masked value still "sees" context around it.

    Args:
        a, b: float ``[N, 3, H, W]`` images in ``data_range`` (default [-1, 1]), same shape.
        net: LPIPS trunk, ``"alex"`` (default, the published metric), ``"vgg"`` or ``"squeeze"``.
        version: LPIPS version, ``"0.1"``.
        mask: optional ``[N, 1, H, W]`` (or ``[1, 1, H, W]``) mask in {0, 1}.
        region: with a mask, ``"inside"`` (mask = 1) or ``"outside"`` (mask = 0).
        data_range: ``(min, max)`` of the inputs (mapped to LPIPS' [-1, 1]).

    Returns:
        ``[N]`` float32 distances >= 0 (0 for identical images), on the inputs' device; differentiable.

    Raises:
        ValueError: shape mismatch / not RGB, values outside ``data_range``, bad mask, empty region.
        ddsutils.weights.WeightsUnavailableError: LPIPS trunk or head weights missing and not downloadable.

    Used in: notebooks/05_metrics.ipynb
    """
    x, y = _check_images(a, b, data_range, channels=3)
    x, y = (2.0 * x - 1.0).float(), (2.0 * y - 1.0).float()
    model = _lpips_module(net, version, x.device)
    if mask is None:
        return model(x, y).reshape(x.shape[0])
    maps = _lpips_layer_maps(model, x, y)
    return torch.stack([masked_mean(d, mask, region=region) for d in maps]).sum(dim=0)


# ----------------------------------------------------------------------------------------------------
# one call for the experiments
# ----------------------------------------------------------------------------------------------------
_PER_IMAGE = ("ssim", "psnr", "lpips")


@torch.no_grad()
def score_images(
    images: Tensor,
    refs: Tensor,
    *,
    mask: Tensor | None = None,
    regions: Mapping[str, Tensor] | None = None,
    metrics: Sequence[str] = ("ssim", "psnr", "lpips"),
    lpips_net: str = "alex",
    data_range: float | tuple[float, float] = (-1.0, 1.0),
) -> dict[str, Tensor]:
    """Several per-image metrics over the full image and over mask regions, in one call.

    Args:
        images: float ``[N, 3, H, W]`` in ``data_range`` (default [-1, 1]), e.g. DDS outputs.
        refs: same shape, the references (e.g. the target-domain images).
        mask: optional ``[N, 1, H, W]`` mask in {0, 1}; adds the regions ``"inside"`` (mask) and ``"outside"``
            (``1 - mask``).
        regions: optional named masks ``{name: [N, 1, H, W] in {0, 1}}`` scored as "inside" each (e.g. the
            ``inside`` / ``outside`` masks of :func:`ddsutils.scoring.regions`); combined with ``mask``.
        metrics: any of ``"ssim"``, ``"psnr"``, ``"lpips"`` (the default is all three; LPIPS needs its weights).
        lpips_net: LPIPS trunk (``"alex"``), version 0.1.
        data_range: ``(min, max)`` of the inputs.

    Each metric's map (SSIM map, squared error, LPIPS layer maps) is computed once and reduced over the full
    image and every region, so the values equal those of :func:`ssim`, :func:`psnr` and
    :func:`lpips_distance` called with the same ``mask`` / ``region`` (LPIPS up to float round-off).

    Returns:
        ``{metric: [N], f"{metric}_{region}": [N], ...}``: detached per-image CPU tensors (float32, or float64
        for float64 inputs; LPIPS float32), full-image scores under the bare metric name, e.g. ``"ssim"``,
        ``"ssim_inside"``, ``"ssim_outside"``.

    Raises:
        ValueError: unknown metric, a region name clash, or any error of :func:`ssim` / :func:`psnr` /
            :func:`lpips_distance` (bad shapes or ranges, empty regions).

    Used in: notebooks/05_metrics.ipynb
    """
    unknown = [m for m in metrics if m not in _PER_IMAGE]
    if unknown or not metrics:
        raise ValueError(f"metrics must be a non-empty subset of {_PER_IMAGE}, got {list(metrics)}")
    named: dict[str, tuple[Tensor, str]] = {}
    if mask is not None:
        named["inside"] = (mask, "inside")
        named["outside"] = (mask, "outside")
    for name, m in (regions or {}).items():
        if name in named:
            raise ValueError(f"region name {name!r} clashes with the regions of mask=")
        named[name] = (m, "inside")
    # Each metric's map is computed once and reduced over the full image and every region.
    maps: dict[str, list[Tensor]] = {}
    if "ssim" in metrics:
        maps["ssim"] = [ssim_map(images, refs, data_range=data_range)]
    if "psnr" in metrics:
        x, y = _check_images(images, refs, data_range)
        maps["psnr"] = [(x - y) ** 2]
    if "lpips" in metrics:
        x, y = _check_images(images, refs, data_range, channels=3)
        model = _lpips_module(lpips_net, "0.1", x.device)
        maps["lpips"] = _lpips_layer_maps(model, (2.0 * x - 1.0).float(), (2.0 * y - 1.0).float())

    def reduce(metric: str, mask_: Tensor | None, region: str) -> Tensor:
        parts = [
            d.flatten(1).mean(dim=1) if mask_ is None else masked_mean(d, mask_, region=region)
            for d in maps[metric]
        ]
        value = torch.stack(parts).sum(dim=0)
        return 10.0 * torch.log10(1.0 / value) if metric == "psnr" else value

    out: dict[str, Tensor] = {}
    for metric in dict.fromkeys(metrics):
        out[metric] = reduce(metric, None, "inside").detach().cpu()
        for name, (m, region) in named.items():
            out[f"{metric}_{name}"] = reduce(metric, m, region).detach().cpu()
    return out


# ----------------------------------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------------------------------
def _mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> float:
    """Unbiased MMD^2 between two equal-size samples with ``k(u, v) = (gamma u.v + coef0)^degree``."""
    m = x.shape[0]
    k_xx = (x @ x.T * gamma + coef0) ** degree
    k_yy = (y @ y.T * gamma + coef0) ** degree
    k_xy = (x @ y.T * gamma + coef0) ** degree
    off_xx = k_xx.sum() - np.trace(k_xx)
    off_yy = k_yy.sum() - np.trace(k_yy)
    return float((off_xx + off_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid(
    feats_a: Tensor | np.ndarray,
    feats_b: Tensor | np.ndarray,
    *,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al., 2018): unbiased polynomial-kernel MMD^2 over subsets.

    For each of ``subsets`` rounds, ``m = min(subset_size, N_a, N_b)`` rows are drawn without replacement
    from each set (``numpy.random.default_rng(seed)``, so the result is deterministic given ``seed``) and the
    unbiased estimate

        MMD^2_u = sum_{i != j} k(a_i, a_j) / (m (m - 1)) + sum_{i != j} k(b_i, b_j) / (m (m - 1))
                  - 2 sum_{i, j} k(a_i, b_j) / m^2,   k(u, v) = (gamma u.v + coef0)^degree,

    is computed in float64 (``gamma = 1 / D`` by default: the cubic kernel ``(u.v / D + 1)^3`` of the KID
    paper). Its expectation is the population MMD^2, so it is ~0 (and may be negative) for two samples of
    one distribution, and unlike FID it has no sample-size bias. With ``degree=1`` the expectation is
    ``gamma * ||mu_a - mu_b||^2``.

    Args:
        feats_a: ``[N_a, D]`` features (torch or numpy), e.g. :func:`inception_features` (KID proper) or
            :func:`vgg_features`; ``N_a >= 2``.
        feats_b: ``[N_b, D]`` features, same ``D``, ``N_b >= 2``.
        subsets: number of random subsets (>= 1).
        subset_size: rows per subset; clipped to ``min(N_a, N_b)`` (then every subset is a permutation of the
            smaller set and, if both sets have that size, all rounds agree and ``std = 0``).
        degree: polynomial degree (3).
        gamma: kernel scale; ``None`` means ``1 / D``.
        coef0: kernel offset (1).
        seed: seed of the subset sampling.

    Returns:
        ``(mean, std)`` over the subsets, as Python floats (``std`` is the population standard deviation of
        the per-subset estimates, as torch-fidelity reports it; not a standard error).

    Raises:
        ValueError: bad shapes, feature dimensions differ, fewer than 2 samples, non-finite values, bad
            hyper-parameters.

    Used in: notebooks/05_metrics.ipynb
    """
    fa = _as_float64(feats_a, "feats_a", 2)
    fb = _as_float64(feats_b, "feats_b", 2)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"feature dimensions differ: {fa.shape[1]} vs {fb.shape[1]}")
    na, nb, d = fa.shape[0], fb.shape[0], fa.shape[1]
    if min(na, nb) < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {na} and {nb}")
    if not isinstance(subsets, int) or subsets < 1:
        raise ValueError(f"subsets must be an int >= 1, got {subsets!r}")
    if not isinstance(subset_size, int) or subset_size < 2:
        raise ValueError(f"subset_size must be an int >= 2, got {subset_size!r}")
    if not isinstance(degree, int) or degree < 1:
        raise ValueError(f"degree must be an int >= 1, got {degree!r}")
    g = 1.0 / d if gamma is None else float(gamma)
    m = min(subset_size, na, nb)
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for s in range(subsets):
        xa = fa[rng.choice(na, m, replace=False)]
        xb = fb[rng.choice(nb, m, replace=False)]
        values[s] = _mmd2_unbiased(xa, xb, degree, g, float(coef0))
    return float(values.mean()), float(values.std())


# ----------------------------------------------------------------------------------------------------
# FID through torch-fidelity's Inception-v3 (optional dependency; weights through the weights manifest)
# ----------------------------------------------------------------------------------------------------
#: How to label :func:`inception_fid` (Inception-v3 pool3 features, 2048-d, the TF-FID network).
FID_LABEL = "FID (Inception-v3 pool3, torch-fidelity)"
#: The weights manifest entry (``weights/manifest.json``) of torch-fidelity's TF-compatible Inception-v3 weights
#: (converted from TensorFlow's 2015-12-05 graph, Apache-2.0), resolved by :func:`ddsutils.weights.resolve`.
INCEPTION_WEIGHTS = "inception-v3-fid"
#: The entry's file name and URL; the name carries the first 8 hex digits of its sha256 (torch.hub convention).
INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILENAME
#: Seconds allowed to reach the download host (name lookup + TCP connect) before a download is tried.
INCEPTION_TIMEOUT_S = 10.0
_FIDELITY_PIN = "torch-fidelity==0.4.0"


def _torch_hub_copy() -> Path | None:
    """torch-fidelity's own cached copy (torch.hub's checkpoints folder), if there is one."""
    try:
        p = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILENAME
    except Exception:  # pragma: no cover - torch.hub without a home folder
        return None
    return p if p.is_file() else None


def _inception_unavailable(message: str) -> Exception:
    """``message`` plus where the file comes from and the fallback, as a ``WeightsUnavailableError``."""
    from . import weights as W

    return W.WeightsUnavailableError(
        f"{message} The file: {INCEPTION_URL} (manifest entry {INCEPTION_WEIGHTS!r}; a copy in torch.hub's "
        f"checkpoints folder is used too). Fallback without it: ddsutils.metrics.frechet_vgg, reported as "
        f"{FRECHET_VGG_LABEL!r} (not FID)."
    )


def _reachable(url: str, timeout: float) -> str | None:
    """``None`` if a TCP connection to ``url``'s host opens within ``timeout`` s (name lookup included),
    else why not."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    result: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as exc:
            result.append(f"{type(exc).__name__}: {exc}")

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    t.start()
    t.join(timeout)
    if not result:
        return f"no connection to {host}:{port} within {timeout:g} s"
    return result[0]


def inception_weights_path(*, fetch: bool = True, timeout: float | None = None) -> Path:
    """Path of the verified Inception-v3 FID weights (manifest entry :data:`INCEPTION_WEIGHTS`).

    In order: the weights cache (:func:`ddsutils.weights.resolve`, sha256-prefix checked); torch-fidelity's
    copy in torch.hub's checkpoints folder, copied into the cache through the same check
    (:func:`ddsutils.weights.fetch` with ``src=``); a download by :func:`ddsutils.weights.fetch` (verified before it
    is moved into place) when allowed (``fetch=True``, no ``DDS_OFFLINE=1``) and the host answers within
    ``timeout`` seconds (probed in a daemon thread, so a stuck name lookup cannot hang the call).

    Args:
        fetch: allow a download (ignored when ``DDS_OFFLINE=1``: no network is touched at all).
        timeout: seconds for the reachability probe (``None``: :data:`INCEPTION_TIMEOUT_S`, read at call time).

    Returns:
        Path of the file in the weights cache.

    Raises:
        ddsutils.weights.WeightsUnavailableError: missing and not downloadable (offline, ``fetch=False``, host
            unreachable, download failed); the message names the file, where it was looked for, the fix
            (``python -m ddsutils.weights fetch inception-v3-fid``) and the :func:`frechet_vgg` fallback. Offline
            it is raised without any network access, in well under a second.
        ddsutils.weights.ChecksumError: a cached, torch.hub or downloaded file has the wrong sha256.

    Used in: notebooks/05_metrics.ipynb
    """
    from . import weights as W

    try:
        return W.resolve(INCEPTION_WEIGHTS, fetch=False)
    except W.WeightsUnavailableError as exc:
        missing = exc
    hub = _torch_hub_copy()
    if hub is not None:
        return W.fetch(INCEPTION_WEIGHTS, src=hub, progress=False)
    if W.is_offline() or not fetch:
        raise _inception_unavailable(str(missing)) from None
    timeout = INCEPTION_TIMEOUT_S if timeout is None else float(timeout)
    why = _reachable(INCEPTION_URL, timeout)
    if why is not None:
        raise _inception_unavailable(
            f"Inception-v3 weights for FID are not available: {INCEPTION_FILENAME!r} is not in the weights cache "
            f"and the download host is unreachable ({why}). Fix: run `python -m ddsutils.weights fetch "
            f"{INCEPTION_WEIGHTS}` with network access, or download the file elsewhere and run `python -m "
            f"ddsutils.weights fetch {INCEPTION_WEIGHTS} --from PATH`.") from None
    try:
        return W.fetch(INCEPTION_WEIGHTS)
    except W.WeightsUnavailableError as exc:  # every route failed (a wrong download is a ChecksumError)
        raise _inception_unavailable(str(exc)) from exc


@functools.lru_cache(maxsize=2)
def _inception(path: str, device: str) -> torch.nn.Module:
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as exc:
        raise ImportError(
            f"inception_features / inception_fid need the optional package torch-fidelity: pip install "
            f"{_FIDELITY_PIN!r}. Fallback without it: ddsutils.metrics.frechet_vgg ({FRECHET_VGG_LABEL!r}, not FID)."
        ) from exc
    from . import weights as W

    try:  # torch-fidelity loads with weights_only=False: accept only a plain tensor state dict
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise W.WeightsError(f"{path} is not a plain state dict loadable with weights_only=True: {exc}") from exc
    model = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path)
    return model.to(device).eval()


@torch.no_grad()
def inception_features(
    img: Tensor,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    weights_path: str | os.PathLike[str] | None = None,
    fetch: bool = True,
    data_range: float | tuple[float, float] = (-1.0, 1.0),
) -> Tensor:
    """Inception-v3 pool3 features (2048-d) of images, as FID uses them (torch-fidelity's TF-compatible net).

    Images are mapped from ``data_range`` to uint8 (``round((x + 1) * 127.5)`` for [-1, 1]) and handed to
    torch-fidelity's ``FeatureExtractorInceptionV3``, which resizes them to 299 x 299 with TensorFlow-1.x
    bilinear interpolation and normalises them as the original TF graph did. The weights are resolved by
    :func:`inception_weights_path` before torch-fidelity is imported (it is imported lazily).

    Args:
        img: float ``[N, 3, H, W]`` in ``data_range`` (default [-1, 1]), ``N >= 1``.
        batch_size: images per forward pass.
        device: where the network runs (built once per weights file / device and cached).
        weights_path: an explicit weights file (used as is, no hash check); ``None`` resolves
            :data:`INCEPTION_FILENAME` (cache, torch.hub folder, then download if allowed).
        fetch: allow downloading missing weights (never when ``DDS_OFFLINE=1``).
        data_range: ``(min, max)`` of the inputs.

    Returns:
        float32 ``[N, 2048]`` on the CPU.

    Raises:
        ddsutils.weights.WeightsUnavailableError: weights missing and not downloadable (fast, no hang); use
            :func:`frechet_vgg` (:data:`FRECHET_VGG_LABEL`) as the documented fallback.
        ImportError: torch-fidelity is not installed (``pip install torch-fidelity==0.4.0``).
        ValueError: not an RGB batch, or values outside ``data_range``.

    Used in: notebooks/05_metrics.ipynb
    """
    x, _ = _check_images(img, img, data_range, channels=3)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if weights_path is None:
        path = inception_weights_path(fetch=fetch)
    else:
        path = Path(weights_path)
        if not path.is_file():
            raise _inception_unavailable(f"Inception-v3 weights for FID: weights_path={str(path)!r} is not a file.")
    dev = torch.device(device)
    net = _inception(str(path), str(dev))
    out = []
    for chunk in x.split(batch_size):
        u8 = (chunk * 255.0).round().clamp(0, 255).to(torch.uint8)
        out.append(net(u8.to(dev))[0].float().cpu())
    return torch.cat(out)


def inception_fid(
    imgs_a: Tensor,
    imgs_b: Tensor,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    weights_path: str | os.PathLike[str] | None = None,
    fetch: bool = True,
    data_range: float | tuple[float, float] = (-1.0, 1.0),
) -> float:
    """FID: :func:`frechet_distance` between :func:`inception_features` of two image sets.

    Label it :data:`FID_LABEL`. FID is biased by the sample size (it grows as N shrinks): compare only numbers
    computed with the same N (the DDS paper averages 100 images per setting), and compare with published FIDs
    only at their N and resolution.

    Args:
        imgs_a: float ``[N_a, 3, H, W]`` in ``data_range``, ``N_a >= 2``.
        imgs_b: float ``[N_b, 3, H', W']`` in ``data_range``, ``N_b >= 2``.
        batch_size, device, weights_path, fetch, data_range: see :func:`inception_features`.

    Returns:
        The FID (a float >= 0).

    Raises:
        ddsutils.weights.WeightsUnavailableError: offline / no weights (raised within seconds); fall back to
            :func:`frechet_vgg`, reported as :data:`FRECHET_VGG_LABEL` ("Fréchet distance on VGG-16 features",
            not FID).
        ImportError: torch-fidelity is not installed.

    Used in: notebooks/05_metrics.ipynb
    """
    kw: dict[str, Any] = dict(batch_size=batch_size, device=device, weights_path=weights_path, fetch=fetch,
                              data_range=data_range)
    return frechet_distance(inception_features(imgs_a, **kw), inception_features(imgs_b, **kw))
