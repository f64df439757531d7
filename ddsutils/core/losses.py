"""The DDS losses: paper Eq. 1–6, the released code's loss and refine mode's loss, as pure per-sample functions.

Paper §3.3, for paired images ``x_s = G_s(z*)``, ``x_t = G_t(z*)`` with part masks ``y_s``, ``y_t``
(``ȳ = 1 − y``) and a candidate latent ``ẑ``:

- Eq. 1  crossover ``x_c = x_s ⊗ y_s + x_t ⊗ ȳ_t``                                  (:func:`crossover`)
- Eq. 2  ``L_s = L_p(G_s(ẑ), x_s, y_s) + ‖G_s(ẑ) ⊗ y_s − x_s ⊗ y_s‖²``, ``L_t`` likewise with ``G_t``, ``x_t``,
  ``ȳ_t``                                                              (:func:`masked_pixel_loss`)
- Eq. 3  ``L_p(I1, I2, λ) = Σ_j (1/N_j) ‖F_j(I1) λ_j − F_j(I2) λ_j‖``         (:func:`masked_feature_loss`)
- Eq. 4–5 ``L_c = ‖s_c − x_c‖``, ``s_c = G_s(ẑ) ⊗ y_s + G_t(ẑ) ⊗ ȳ_t``           (:func:`crossover_loss`)
- Eq. 6  ``Loss = α L_s + β L_t + γ L_c``                                            (:func:`paper_loss`)

Where the paper is ambiguous the choice is a keyword: ``norm="mse"`` (means of squared errors, the paper's
"pixel-wise MSE" and the released code) or ``norm="paper"`` (the norms as printed), and ``mask_resize`` (how a
mask is resized to each feature layer).

:func:`release_loss` is the loss of denabazazian/Dual-Domain-Synthesis ``DDS_main.py`` (one generator's image,
weights :data:`RELEASE_WEIGHTS`); :func:`refine_loss` is refine mode's LPIPS + weighted pixel MSE.

Shapes: images ``[N, 3, H, W]`` in [-1, 1]; masks ``[N, 1, H, W]`` in {0, 1}; features: per-layer
``[N, C_j, h_j, w_j]`` (a dict in layer order, or a list). Every loss returns per-sample values ``[N]``, so a
sample's gradient never depends on the rest of the batch.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "crossover",
    "masked_feature_loss",
    "masked_pixel_loss",
    "crossover_loss",
    "DDSInputs",
    "paper_loss",
    "release_loss",
    "refine_loss",
    "PAPER_WEIGHTS",
    "RELEASE_WEIGHTS",
]

#: Eq. 6's weights in the paper.
PAPER_WEIGHTS = {"alpha": 0.9, "beta": 1.0, "gamma": 0.5}
#: The released code's weights of its perceptual, pixel and (unmasked) crossover terms.
RELEASE_WEIGHTS = {"perceptual": 2.0, "pixel": 1.0, "crossover": 3.0}
_NORMS = ("mse", "paper")
_MASK_RESIZES = ("bilinear", "chain", "area", "nearest")

Features = Mapping[str, torch.Tensor] | Sequence[torch.Tensor]


def crossover(x_s: torch.Tensor, y_s: torch.Tensor, x_t: torch.Tensor, y_t: torch.Tensor) -> torch.Tensor:
    """Naive crossover (Eq. 1): ``x_s ⊗ y_s + x_t ⊗ (1 − y_t)``.

    Args:
        x_s, x_t: ``[N, 3, H, W]`` images in [-1, 1].
        y_s, y_t: ``[N, 1, H, W]`` part masks in {0, 1}.

    Returns:
        ``[N, 3, H, W]``. Where the source part and the target's part complement overlap the two add up, and
        where neither covers a pixel it is 0 (grey): that is the paper's definition.
    """
    return x_s * y_s + x_t * (1 - y_t)


def _resize_mask(mask: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    if mode == "nearest":
        return F.interpolate(mask, size=size, mode="nearest")
    if mode == "area":
        return F.adaptive_avg_pool2d(mask, size)
    if mode in ("bilinear", "chain"):
        return F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
    raise ValueError(f"mask_resize must be one of {_MASK_RESIZES}, got {mode!r}")


def _as_list(feats: Features) -> list[torch.Tensor]:
    return list(feats.values()) if isinstance(feats, Mapping) else list(feats)


def masked_feature_loss(feats_1: Features, feats_2: Features, mask: torch.Tensor, *, norm: str = "mse",
                        mask_resize: str = "bilinear") -> torch.Tensor:
    """Masked perceptual loss (Eq. 3) per sample.

    The mask is resized to each layer's ``h × w`` and broadcast over its channels (``λ_j``).

    Args:
        feats_1, feats_2: per-layer activations ``[N, C_j, h_j, w_j]`` (dicts in the same key order, or lists).
        mask: ``[N, 1, H, W]`` in [0, 1].
        norm: ``"mse"``: ``Σ_j mean((F_j(I1) λ_j − F_j(I2) λ_j)²)`` (= ``(1/N_j)‖·‖²``, the released code);
            ``"paper"``: ``Σ_j (1/N_j) ‖F_j(I1) λ_j − F_j(I2) λ_j‖`` (Eq. 3 as printed).
        mask_resize: ``"bilinear"`` (from the full-resolution mask to each layer), ``"chain"`` (the released
            code: bilinear, each layer's mask resized from the previous layer's, e.g. 256 → 64 → 32),
            ``"area"`` or ``"nearest"``.

    Returns:
        ``[N]`` float tensor.
    """
    f1, f2 = _as_list(feats_1), _as_list(feats_2)
    if len(f1) != len(f2):
        raise ValueError(f"feature lists differ in length: {len(f1)} vs {len(f2)}")
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    total = torch.zeros(mask.shape[0], device=mask.device, dtype=f1[0].dtype if f1 else torch.float32)
    m = mask
    for a, b in zip(f1, f2):
        m = _resize_mask((m if mask_resize == "chain" else mask).to(a.dtype), a.shape[-2:], mask_resize)
        d = (a - b) * m
        n_j = d[0].numel()
        sq = d.pow(2).flatten(1).sum(dim=1)
        total = total + (sq / n_j if norm == "mse" else torch.sqrt(sq + 1e-12) / n_j)
    return total


def masked_pixel_loss(img: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor, *, norm: str = "mse") -> torch.Tensor:
    """Masked pixel term of Eq. 2 per sample: ``‖img ⊗ m − ref ⊗ m‖²``.

    Args:
        img, ref: ``[N, 3, H, W]`` in [-1, 1]. mask: ``[N, 1, H, W]`` in {0, 1}.
        norm: ``"mse"``: mean over all ``3·H·W`` elements (masked-out zeros included, as the released code);
            ``"paper"``: the squared L2 norm (a sum; it dominates the other terms at 256 px).

    Returns:
        ``[N]``.
    """
    sq = ((img - ref) * mask).pow(2).flatten(1)
    if norm == "mse":
        return sq.mean(dim=1)
    if norm == "paper":
        return sq.sum(dim=1)
    raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")


def crossover_loss(s_c: torch.Tensor, x_c: torch.Tensor, *, norm: str = "mse") -> torch.Tensor:
    """Crossover term (Eq. 4) per sample: ``"mse"`` the mean squared error, ``"paper"`` the L2 norm ``‖s_c − x_c‖``.

    Args:
        s_c, x_c: ``[N, 3, H, W]``.

    Returns:
        ``[N]``.
    """
    sq = (s_c - x_c).pow(2).flatten(1)
    if norm == "mse":
        return sq.mean(dim=1)
    if norm == "paper":
        return torch.sqrt(sq.sum(dim=1) + 1e-12)
    raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")


@dataclasses.dataclass
class DDSInputs:
    """The inputs the losses compare with: images ``x_s``, ``x_t`` ``[N, 3, H, W]`` in [-1, 1], masks ``y_s``,
    ``y_t`` ``[N, 1, H, W]`` in {0, 1} and the crossover ``x_c`` (Eq. 1); :func:`ddsutils.core.dds.optimise`
    also keeps ``z_star`` ``[N, D]``, the per-sample seeds and the references' truncation ``(ψ_s, ψ_t)``."""

    x_s: torch.Tensor
    x_t: torch.Tensor
    y_s: torch.Tensor
    y_t: torch.Tensor
    x_c: torch.Tensor
    z_star: torch.Tensor | None = None
    seeds: list[int] = dataclasses.field(default_factory=list)
    truncation: tuple[float, float] = (1.0, 1.0)

    @classmethod
    def from_images(cls, x_s: torch.Tensor, x_t: torch.Tensor, y_s: torch.Tensor, y_t: torch.Tensor) -> DDSInputs:
        """Inputs of paired images and masks, with ``x_c = crossover(x_s, y_s, x_t, y_t)`` (paper mode's)."""
        return cls(x_s, x_t, y_s, y_t, crossover(x_s, y_s, x_t, y_t))


def paper_loss(img_s: torch.Tensor, img_t: torch.Tensor, f_s: Features, f_t: Features, ref_s: Features,
               ref_t: Features, inp: DDSInputs, *, alpha: float, beta: float, gamma: float, norm: str = "mse",
               mask_resize: str = "bilinear") -> dict[str, torch.Tensor]:
    """Eq. 2–6 per sample for ``G_s(ẑ)`` = ``img_s`` and ``G_t(ẑ)`` = ``img_t``.

    Args:
        img_s, img_t: ``[N, 3, H, W]`` images of the two generators for the same latent.
        f_s, f_t: their backbone features; ref_s, ref_t: the features of ``x_s``, ``x_t``.
        inp: the inputs (``x_s``, ``x_t``, ``y_s``, ``y_t``, ``x_c``), e.g. :meth:`DDSInputs.from_images`.
        alpha, beta, gamma: Eq. 6 weights (:data:`PAPER_WEIGHTS`). norm, mask_resize: see
            :func:`masked_feature_loss`.

    Returns:
        ``{"total", "L_s", "L_t", "L_c"}``, each ``[N]``.
    """
    y_s, not_t = inp.y_s, 1 - inp.y_t
    L_s = masked_feature_loss(f_s, ref_s, y_s, norm=norm, mask_resize=mask_resize) \
        + masked_pixel_loss(img_s, inp.x_s, y_s, norm=norm)                               # Eq. 2, source
    L_t = masked_feature_loss(f_t, ref_t, not_t, norm=norm, mask_resize=mask_resize) \
        + masked_pixel_loss(img_t, inp.x_t, not_t, norm=norm)                             # Eq. 2, target
    L_c = crossover_loss(img_s * y_s + img_t * not_t, inp.x_c, norm=norm)                 # Eq. 4–5
    return {"total": alpha * L_s + beta * L_t + gamma * L_c, "L_s": L_s, "L_t": L_t, "L_c": L_c}  # Eq. 6


def release_loss(img: torch.Tensor, f: Features, ref_s: Features, ref_t: Features, inp: DDSInputs, *,
                 domain1: str = "target") -> dict[str, torch.Tensor]:
    """The released ``DDS_main.py`` loss per sample, for the one generator's image ``img``.

    ``2·[P(img, x_t, 1 − y_t) + P(img, x_s, m)] + [pixel terms with the same masks] + 3·MSE(img, x_c)``, with
    ``P`` the masked feature MSE (masks chain-resized) and ``m = y_t`` in the D1 loop (``domain1="target"``: the
    target's part mask also masks the source terms), ``m = y_s`` in the D2 loop (``"source"``).

    Args:
        img: ``[N, 3, H, W]``; f: its features; ref_s, ref_t: the features of ``x_s``, ``x_t``.
        inp: the inputs (release mode clamps ``x_c`` to [-1, 1]).
        domain1: ``"target"`` or ``"source"``: which generator is in the loop.

    Returns:
        ``{"total", "perceptual", "pixel", "crossover"}``, each ``[N]``.
    """
    m_src = inp.y_t if domain1 == "target" else inp.y_s
    not_t = 1 - inp.y_t
    perc = masked_feature_loss(f, ref_t, not_t, mask_resize="chain") \
        + masked_feature_loss(f, ref_s, m_src, mask_resize="chain")
    pix = masked_pixel_loss(img, inp.x_t, not_t) + masked_pixel_loss(img, inp.x_s, m_src)
    cross = crossover_loss(img, inp.x_c)
    w = RELEASE_WEIGHTS
    total = w["perceptual"] * perc + w["pixel"] * pix + w["crossover"] * cross
    return {"total": total, "perceptual": perc, "pixel": pix, "crossover": cross}


def _lpips_from_features(f: Features, ref: Features) -> torch.Tensor:
    # Σ_k mean_hw ‖F_k(a) − F_k(b)‖²_channels: LPIPS for backbones.LpipsFeatures, else a plain feature distance
    return sum((a - b).pow(2).sum(dim=1).flatten(1).mean(dim=1) for a, b in zip(_as_list(f), _as_list(ref)))


def refine_loss(img: torch.Tensor, f: Features, ref: Features, composite: torch.Tensor, weight: torch.Tensor, *,
                mse_weight: float) -> dict[str, torch.Tensor]:
    """Refine mode's loss per sample: LPIPS to the composite plus a pixel MSE weighted up inside the part.

    Args:
        img: ``G_t(ŵ)`` ``[N, 3, H, W]``; f, ref: its features and the composite's (LPIPS features).
        composite: ``[N, 3, H, W]`` target image. weight: ``[N, 1, H, W]`` per-pixel MSE weight.
        mse_weight: factor of the pixel term.

    Returns:
        ``{"total", "lpips", "mse"}``, each ``[N]``.
    """
    lp = _lpips_from_features(f, ref)
    mse = ((img - composite).pow(2) * weight).flatten(1).mean(dim=1)
    return {"total": lp + mse_weight * mse, "lpips": lp, "mse": mse}
