"""Distribution metrics: the Fréchet distance and Fréchet distance on VGG-16 features.

:func:`frechet_distance` fits a Gaussian (mean and covariance) to each of two feature sets and returns the
Fréchet (2-Wasserstein) distance between the two Gaussians,

    d^2 = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2),

computed in float64. The matrix square root uses symmetric eigendecompositions only: ``S_a^1/2`` from
``eigh(S_a)``, then the trace term as the sum of the square roots of the (clipped at zero) eigenvalues of
the symmetric PSD matrix ``S_a^1/2 S_b S_a^1/2``. That is exactly ``tr((S_a S_b)^1/2)`` (the two matrices are
similar), needs no complex arithmetic (unlike a general ``sqrtm``) and stays stable for singular,
rank-deficient covariances. With fewer samples than dimensions :func:`frechet_distance` computes the same
trace exactly in sample space (the nuclear norm of the centred cross-Gram matrix), which is much cheaper.

:func:`vgg_features` embeds images with the real ImageNet VGG-16 of :mod:`ddsutils.perceptual` (weights
through :func:`ddsutils.weights.resolve`): the ``relu4_3`` and ``relu5_3`` activations, each global-average
pooled over space, concatenated into ``D = 1024`` features per image. :func:`frechet_vgg` chains the two.

Naming: the number is the **"Fréchet distance on VGG-16 features"** (:data:`FRECHET_VGG_LABEL`). It is
*not* FID (which uses Inception-v3 pool3 features at 299 px); never report it as FID and never compare it
with published FIDs. Like FID it is biased by the sample size: compare numbers computed with the same
number of images, the same resolution and the same ``resize``.

Used in: notebooks/02_oneshot_segmenter.ipynb, notebooks/05_metrics.ipynb
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "FRECHET_VGG_LABEL",
    "VGG_LAYERS",
    "gaussian_stats",
    "frechet_distance_gaussians",
    "frechet_distance",
    "vgg_features",
    "frechet_vgg",
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
    from .perceptual import build_backbone

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
