"""Dual-Domain Synthesis (DDS): paper Algorithm 1 and the released code's variant.

Given paired images ``x_s = G_s(z*)``, ``x_t = G_t(z*)`` and part masks ``y_s``, ``y_t``, DDS searches a latent
``ẑ`` whose target-domain image ``x̂ = G_t(ẑ)`` shows the source domain inside the part and the target
domain elsewhere (paper §3.3):

- Eq. 1  crossover          ``x_c = x_s ⊗ y_s + x_t ⊗ ȳ_t``
- Eq. 2  ``L_s = L_p(G_s(ẑ), x_s, y_s) + ‖G_s(ẑ) ⊗ y_s − x_s ⊗ y_s‖²``;
         ``L_t = L_p(G_t(ẑ), x_t, ȳ_t) + ‖G_t(ẑ) ⊗ ȳ_t − x_t ⊗ ȳ_t‖²``
- Eq. 3  ``L_p(I1, I2, λ) = Σ_j (1/N_j) ‖F_j(I1) λ_j − F_j(I2) λ_j‖``
- Eq. 4–5 ``L_c = ‖s_c − x_c‖`` with ``s_c = G_s(ẑ) ⊗ y_s + G_t(ẑ) ⊗ ȳ_t``
- Eq. 6  ``Loss = α L_s + β L_t + γ L_c``; Adam on ẑ, ``x̂ = G_t(ẑ)``.

Where the paper is ambiguous the choice is a keyword (documented on :func:`optimise`): the norms
(``norm="mse"``: mean of squared errors everywhere, the paper's words "pixel-wise MSE"; ``norm="paper"``: the
literal Eq. 2–4 norms), ImageNet normalisation before the backbone, and how masks are resized to layers.

``mode="release"`` reproduces denabazazian/Dual-Domain-Synthesis ``DDS_main.py`` (see
``shared/research/anchors_repos.md`` §1.3): W+ initialised at the mean w, ONE generator in the loop
(``release_domain1``), weights 2 (perceptual) / 1 (pixel) / 3 (unmasked crossover MSE), VGG relu1_1, relu1_2,
relu3_2, relu4_2 on un-normalised [-1, 1] input, bilinear mask resizing, fixed random noise maps, and in the
D1 direction the target's part mask used for the source terms.

Shapes: images ``[N, 3, H, W]`` in [-1, 1]; masks ``[N, 1, H, W]`` in {0, 1}; ``z`` ``[N, D]``.

Used in: notebooks/03_dds_optimisation.ipynb, 04_ablations.ipynb, 05_metrics.ipynb, 06_unpaired_and_cross_domain.ipynb.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import cli
from .cli import UserError
from .stylegan2 import Generator

__all__ = [
    "crossover",
    "DDSInputs",
    "masked_feature_loss",
    "masked_pixel_loss",
    "crossover_loss",
    "make_feature_extractor",
    "DDSResult",
    "optimise",
    "paper_loss",
    "release_loss",
    "refine_loss",
    "default_blend_start",
    "MODES",
    "PAPER_WEIGHTS",
    "RELEASE_WEIGHTS",
    "RELEASE_TRUNCATION",
]

PAPER_WEIGHTS = {"alpha": 0.9, "beta": 1.0, "gamma": 0.5}
RELEASE_WEIGHTS = {"perceptual": 2.0, "pixel": 1.0, "crossover": 3.0}
_NORMS = ("mse", "paper")


# ----------------------------------------------------------------------------------------------------
# Eq. 1 and the loss terms (pure functions, per-sample results [N])


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


_MASK_RESIZES = ("bilinear", "chain", "area", "nearest")


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


def masked_feature_loss(feats_1: Mapping[str, torch.Tensor] | Sequence[torch.Tensor],
                        feats_2: Mapping[str, torch.Tensor] | Sequence[torch.Tensor], mask: torch.Tensor, *,
                        norm: str = "mse", mask_resize: str = "bilinear") -> torch.Tensor:
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
    f1 = list(feats_1.values()) if isinstance(feats_1, Mapping) else list(feats_1)
    f2 = list(feats_2.values()) if isinstance(feats_2, Mapping) else list(feats_2)
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
    """Crossover term (Eq. 4) per sample: ``"mse"`` mean squared error; ``"paper"`` the plain L2 norm ``‖s_c − x_c‖``."""
    sq = (s_c - x_c).pow(2).flatten(1)
    if norm == "mse":
        return sq.mean(dim=1)
    if norm == "paper":
        return torch.sqrt(sq.sum(dim=1) + 1e-12)
    raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")


# ----------------------------------------------------------------------------------------------------
# Feature extractors


def make_feature_extractor(backbone: str | nn.Module = "vgg16", *, layers: str | Sequence[str] | None = "paper",
                           normalize: str = "imagenet", resize: int | None = None, weights: str = "imagenet",
                           device: str | torch.device = "cpu") -> nn.Module | None:
    """A frozen module ``img [N, 3, H, W] in [-1, 1] -> {layer: [N, C, h, w]}`` for Eq. 3.

    Args:
        backbone: ``"vgg16"`` (paper), ``"alexnet"``, ``"squeezenet1_1"``, ``"resnet18"`` (appendix A,
            Tables 5–7), ``"lpips-alex"`` / ``"lpips-vgg"`` (LPIPS features, :class:`perceptual.LpipsFeatures`),
            ``"generator"`` (appendix D: the generators' own StyledConv activations; returns ``None`` and
            :func:`optimise` takes them from the synthesis pass), or any module returning a dict/list (used as
            is: ``layers``, ``normalize``, ``resize`` and ``weights`` are then ignored).
        layers: a named layer set of :mod:`ddsutils.perceptual` (``"paper"``, ``"release"``, ``"lpips"``) or names.
        normalize: ``"imagenet"`` (mean/std), ``"none"`` ([-1, 1] as the released code) or ``"lpips"``.
        resize: optional square size the image is resized to before the backbone.
        weights: ``"imagenet"`` (resolved through the manifest), ``"random"`` (tests) or a path.
    """
    from . import backbones as perceptual

    if isinstance(backbone, nn.Module):
        return backbone.to(device)
    if backbone == "generator":
        return None
    if backbone.startswith("lpips-"):
        return perceptual.LpipsFeatures(backbone.split("-", 1)[1], device=device)
    return perceptual.build_backbone(backbone, layers=layers, weights=weights, normalize=normalize,
                                     resize=resize, device=device)


# ----------------------------------------------------------------------------------------------------
# Result


@dataclasses.dataclass
class DDSResult:
    """What :func:`optimise` returns.

    Attributes:
        image: ``x̂ = G_t(ẑ)`` ``[N, 3, H, W]`` (release mode: the single generator's image), clamped to [-1, 1].
        image_source: ``G_s(ẑ)`` (paper mode) or ``None``.
        latent: the optimised ``ẑ`` (``[N, D]`` for z/w, ``[N, L, D]`` for w+).
        x_s, x_t, y_s, y_t, x_c: the inputs and the crossover (Eq. 1).
        history: per-term losses, ``{term: [num_steps, N]}`` (terms: ``total``, ``L_s``, ``L_t``, ``L_c`` in
            paper mode; ``total``, ``perceptual``, ``pixel``, ``crossover`` in release mode).
        snapshots: ``[(step, image [N, 3, H, W])]`` taken every ``snapshot_every`` steps (step 0 = init).
        config: every setting that produced the result (JSON-serialisable).
        timings: ``{"total_s", "per_step_s", "per_image_s", "per_image_iter_s"}``.
    """

    image: torch.Tensor
    image_source: torch.Tensor | None
    latent: torch.Tensor
    x_s: torch.Tensor
    x_t: torch.Tensor
    y_s: torch.Tensor
    y_t: torch.Tensor
    x_c: torch.Tensor
    history: dict[str, torch.Tensor]
    snapshots: list[tuple[int, torch.Tensor]]
    config: dict[str, Any]
    timings: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """Tensors and primitives only (saves with ``torch.save`` and loads with ``weights_only=True``)."""
        d = dataclasses.asdict(self)
        d["snapshots"] = [[s, img] for s, img in self.snapshots]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DDSResult:
        d = dict(d)
        d["snapshots"] = [(int(s), img) for s, img in d["snapshots"]]
        return cls(**d)


# ----------------------------------------------------------------------------------------------------
# Input checks: every argument of optimise is checked before any work (UserError naming the keyword)


#: Perceptual backbones :func:`optimise` takes by name (any ``nn.Module`` returning features is accepted too).
BACKBONE_NAMES = ("vgg16", "alexnet", "squeezenet1_1", "resnet18", "lpips-alex", "lpips-vgg", "generator")
_LATENT_SPACES = ("z", "w", "w+")
_INITS = ("random", "z_star", "mean")
_NORMALIZES = ("imagenet", "none", "lpips")
#: optimise's data arguments (checked by _prepare); every other keyword is a setting (checked by _check_settings).
_DATA_ARGS = ("G_s", "G_t", "z_star", "x_s", "x_t", "y_s", "y_t")


def _as_tensor(name: str, x: Any, what: str) -> torch.Tensor:
    """``x`` as a tensor (a numpy array is converted); a :class:`UserError` naming ``name`` for anything else.

    ``what`` describes the expected tensor in the message (e.g. ``"[N, 1, H, W] in {0, 1}"``).
    """
    if type(x).__module__ == "numpy" and hasattr(x, "__array__"):
        x = torch.as_tensor(x)
    if not isinstance(x, torch.Tensor):
        raise UserError(f"must be a tensor {what}, got {type(x).__name__}", argument=name)
    if x.device.type == "meta":
        raise UserError(f"is a tensor on the meta device (it holds no values); give a tensor {what}", argument=name)
    if x.dtype == torch.bool:
        x = x.float()
    if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
        raise UserError(f"must be a real-valued tensor {what}, got dtype {x.dtype}", argument=name)
    return x


def _check_mask(name: str, m: Any, n: int, size: int) -> torch.Tensor:
    """A part mask as float ``[n, 1, size, size]`` in {0, 1} (``[n, size, size]`` and numpy arrays accepted)."""
    m = _as_tensor(name, m, "[N, 1, H, W] in {0, 1}")
    if m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1:
        raise UserError(f"must be [N, 1, H, W] (or [N, H, W]), got shape {list(m.shape)}", argument=name)
    if tuple(m.shape[-2:]) != (size, size):
        raise UserError(f"is {m.shape[-2]}×{m.shape[-1]} but the generators make {size}×{size} images; resize it "
                        f"with F.interpolate(mask, size={size}, mode='nearest')", argument=name)
    if m.shape[0] != n:
        raise UserError(f"has batch {m.shape[0]}, expected {n} (one mask per image)", argument=name)
    m = m.float()
    if not torch.isfinite(m).all() or not ((m == 0) | (m == 1)).all():
        raise UserError("must be binary {0, 1}; threshold it first, e.g. (mask > 0.5).float()", argument=name)
    return m


def _check_image(name: str, x: Any, n: int | None, size: int) -> torch.Tensor:
    """An image batch as float ``[n, 3, size, size]`` in [-1, 1] (numpy arrays accepted)."""
    x = _as_tensor(name, x, f"[N, 3, {size}, {size}] in [-1, 1]")
    if x.ndim != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (size, size):
        raise UserError(f"must be [N, 3, {size}, {size}], got shape {list(x.shape)}", argument=name)
    if x.shape[0] == 0:
        raise UserError("is empty (N = 0); give at least one image", argument=name)
    if n is not None and x.shape[0] != n:
        raise UserError(f"has batch {x.shape[0]}, expected {n}", argument=name)
    x = x.float()
    if not torch.isfinite(x).all():
        raise UserError("contains NaN or inf", argument=name)
    if x.min() < -1 - 1e-4 or x.max() > 1 + 1e-4:
        raise UserError(f"has values in [{x.min():.3f}, {x.max():.3f}], outside [-1, 1]; images must be scaled to "
                        "[-1, 1] (e.g. img / 127.5 - 1, or G(z).clamp(-1, 1))", argument=name)
    return x


def _warn_degenerate_masks(y_s: torch.Tensor, y_t: torch.Tensor) -> None:
    empty_s = (y_s.flatten(1).sum(1) == 0).nonzero().flatten().tolist()
    full_t = (y_t.flatten(1).sum(1) == y_t[0].numel()).nonzero().flatten().tolist()
    if empty_s:
        warnings.warn(f"y_s is empty for samples {empty_s}: the source terms vanish and DDS only reproduces the "
                      "target image there (defined behaviour, probably not what you want)", stacklevel=3)
    if full_t:
        warnings.warn(f"y_t covers the whole image for samples {full_t}: the target terms vanish and DDS only "
                      "reproduces the source part there (defined behaviour)", stacklevel=3)


def _seed_items(seed: Any) -> list[Any] | None:
    """The items of a per-sample seed sequence (list, tuple, 1-d array or tensor); ``None`` for one seed."""
    if isinstance(seed, (str, bytes)):
        return None
    if isinstance(seed, Sequence) or (hasattr(seed, "ndim") and getattr(seed, "ndim", 0) >= 1):
        return list(seed)
    return None


def _per_sample_seeds(seed: int | Sequence[int], n: int) -> list[int]:
    """Sample i's seed: ``seed + i`` for one int, else the i-th of ``n`` given seeds (UserError naming ``seed``)."""
    items = _seed_items(seed)
    if items is None:
        first = cli.int_arg(seed, "seed")
        return [first + i for i in range(n)]
    seeds = [cli.int_arg(s, "seed") for s in items]
    if len(seeds) != n:
        raise UserError(f"has {len(seeds)} seeds for {n} samples; give one seed per sample, or one int (sample i "
                        "then uses seed + i)", argument="seed", value=seeds)
    return seeds


def _non_negative(value: Any, name: str, *, whole: bool) -> int | float:
    """A whole number (``whole``) or a finite number >= 0: how much the mask is changed (``dilation``,
    ``feather``, ``min_area``; 0 leaves it as it is)."""
    out = cli.int_arg(value, name) if whole else cli.float_arg(value, name)
    if out < 0:
        what = "dilation and feather must be >= 0" if name in ("dilation", "feather") else "must be >= 0"
        raise UserError(f"{what} (0 leaves the mask as it is)", argument=name, value=value)
    return out


def _check_settings(G_s: Any, G_t: Any, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Check :func:`optimise`'s settings before any work: everything but the data (``z_star``, images, masks).

    Args:
        G_s, G_t: the generators (must be :class:`Generator` s of one resolution and, where the latent is shared,
            one latent width).
        settings: keywords of :func:`optimise`; missing ones take its defaults.

    Returns:
        Every setting, with the whole numbers (``num_steps``, ``snapshot_every``, ``blend_start``, ``dilation``,
        ``n_mean_latent``, ``resize``) as ``int``, ``device`` as a ``torch.device`` and ``ref_truncation`` as the
        pair ``(ψ_s, ψ_t)``; other values as given.

    Raises:
        UserError: naming the keyword and the bad value (e.g. ``num_steps: -1: must be >= 0``).
    """
    s = {**_OPTIMISE_DEFAULTS, **settings}
    for name, G in (("G_s", G_s), ("G_t", G_t)):
        if not isinstance(G, Generator):
            given = f" {G!r}" if isinstance(G, (str, Path)) else ""
            raise UserError(f"must be a ddsutils Generator, got a {type(G).__name__}{given}; load one with "
                            "ddsutils.stylegan2.load_generator(name_or_path)", argument=name)
    mode = cli.choice(s["mode"], "mode", MODES, what="mode")
    if G_s.size != G_t.size:
        raise UserError(f"the generators make different resolutions (source {G_s.size} px, target {G_t.size} px); "
                        "DDS needs two generators of the same resolution", argument="G_t")
    for key, options in (("latent_space", _LATENT_SPACES), ("init", _INITS), ("normalize", _NORMALIZES)):
        if s[key] is not None:
            cli.choice(s[key], key, options)
    if G_s.style_dim != G_t.style_dim and (mode == "paper" or s["latent_space"] != "z"):
        raise UserError(f"the generators have different latent widths (source {G_s.style_dim}, target "
                        f"{G_t.style_dim}); DDS feeds one latent to both", argument="G_t")
    cli.choice(s["release_domain1"], "release_domain1", ("target", "source"))
    cli.choice(s["composite"], "composite", ("blend", "paste"))
    cli.choice(s["norm"], "norm", _NORMS)
    cli.choice(s["mask_resize"], "mask_resize", _MASK_RESIZES)
    backbone = s["backbone"]
    if backbone is not None and not isinstance(backbone, nn.Module):
        cli.choice(backbone, "backbone", BACKBONE_NAMES, what="backbone")
        if backbone == "generator" and mode != "paper":
            raise UserError(f"works in the paper mode only (its reference features come from G(z*)), not in the "
                            f"{mode} mode; choose another backbone or the paper mode", argument="backbone",
                            value=backbone)
    named = backbone if isinstance(backbone, str) else (None if backbone is not None else
                                                         ("lpips-alex" if mode == "refine" else "vgg16"))
    if named in ("vgg16", "alexnet", "squeezenet1_1", "resnet18") and s["backbone_weights"] not in ("imagenet",
                                                                                                     "random"):
        cli.existing_file(s["backbone_weights"], "backbone_weights", what="state-dict file")
    if s["resize"] is not None:
        s["resize"] = cli.positive_int(s["resize"], "resize")
    for key in ("alpha", "beta", "gamma", "inside_weight", "mse_weight"):
        cli.float_arg(s[key], key, min=0)
    if s["lr"] is not None:
        cli.float_arg(s["lr"], "lr", min=0, min_open=True)
    s["num_steps"] = cli.non_negative_int(s["num_steps"], "num_steps")
    if s["snapshot_every"] is not None:
        s["snapshot_every"] = cli.positive_int(s["snapshot_every"], "snapshot_every")
    s["n_mean_latent"] = cli.positive_int(s["n_mean_latent"], "n_mean_latent")
    if s["blend_start"] is not None:
        last = G_t.num_layers
        start = cli.int_arg(s["blend_start"], "blend_start")
        if not 0 <= start <= last:
            raise UserError(f"start must be a StyledConv index in 0..{last} ({last}: the paste; default "
                            f"{default_blend_start(G_t)}, the first layer at full resolution)",
                            argument="blend_start", value=s["blend_start"])
        s["blend_start"] = start
    s["dilation"] = _non_negative(s["dilation"], "dilation", whole=True)
    s["min_area"] = _non_negative(s["min_area"], "min_area", whole=True)
    _non_negative(s["feather"], "feather", whole=False)
    if s["callback"] is not None and not callable(s["callback"]):
        raise UserError(f"must be a function callback(step, losses, images) or None, got a "
                        f"{type(s['callback']).__name__}",
                        argument="callback")
    try:
        s["ref_truncation"] = _truncations(mode, s["ref_truncation"], s["release_domain1"])
    except (TypeError, ValueError):
        raise UserError("must be a truncation ψ in [0, 1] or a pair (ψ_s, ψ_t) (1: none)", argument="ref_truncation",
                        value=s["ref_truncation"]) from None
    s["device"] = cli.device(s["device"], "device")
    return s


def _backbone_weight_files(backbone: Any, weights: Any = "imagenet") -> list[Path]:
    """Resolve (and download, unless offline) the weight files a backbone will load; ``[]`` when it needs none.

    Used before any work, so that a missing file stops a run before segmenter training or optimisation.
    Raises :class:`ddsutils.weights.WeightsUnavailableError` (a UserError) when a file is missing.
    """
    from . import backbones as perceptual
    from . import weights as W

    if not isinstance(backbone, str) or backbone == "generator":
        return []
    if backbone.startswith("lpips-"):
        net = backbone.split("-", 1)[1]
        return [W.resolve(perceptual.BACKBONES[perceptual._LPIPS_TRUNK[net]]), W.resolve(f"lpips-{net}-v0.1")]
    if weights == "imagenet":
        return [W.resolve(perceptual.BACKBONES[backbone])]
    return []


# ----------------------------------------------------------------------------------------------------
# Algorithm 1


#: Offset of the random-init streams: sample i starts from ``randn(generator=manual_seed(INIT_STREAM + seed_i))``,
#: so a caller's ``z* = randn(n, D, generator=manual_seed(seed))`` is never also the starting point. (Below 2**32:
#: torch's CPU generator keeps only the low 32 bits of a seed.)
INIT_STREAM = 0x9E3779B9


def _initial_latent(G: Generator, *, latent_space: str, init: str, seeds: list[int], z_star: torch.Tensor | None,
                    n_mean_latent: int, device: torch.device) -> torch.Tensor:
    d = G.style_dim
    if init == "random":
        z = torch.cat([torch.randn(1, d, generator=torch.Generator().manual_seed(INIT_STREAM + s)) for s in seeds])
        z = z.to(device)
    elif init == "z_star":
        if z_star is None:
            raise ValueError("init='z_star' needs z_star")
        z = z_star.to(device)
    elif init == "mean":
        z = None
    else:
        raise ValueError(f"init must be 'random', 'z_star' or 'mean', got {init!r}")
    if latent_space == "z":
        if z is None:  # the mean of N(0, I)
            return torch.zeros(len(seeds), d, device=device)
        return z.clone()
    with torch.no_grad():
        w = G.mean_latent(n_mean_latent).expand(len(seeds), -1) if z is None else G.mapping(z)
    if latent_space == "w":
        return w.clone()
    if latent_space == "w+":
        return w[:, None].repeat(1, G.n_latent, 1).clone()
    raise ValueError(f"latent_space must be 'z', 'w' or 'w+', got {latent_space!r}")


#: The modes of :func:`optimise`.
MODES = ("paper", "release", "blend", "refine")
#: Release mode's reference truncation: ψ for the domain-1 image (the generator in the loop), ψ for the other.
RELEASE_TRUNCATION = (0.7, 1.0)


@dataclasses.dataclass
class DDSInputs:
    """The inputs the losses compare with: images ``x_s``, ``x_t`` ``[N, 3, H, W]`` in [-1, 1], masks ``y_s``,
    ``y_t`` ``[N, 1, H, W]`` in {0, 1} and the crossover ``x_c`` (Eq. 1); :func:`optimise` also keeps ``z_star``,
    the per-sample seeds and the references' truncation."""

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


def _truncations(mode: str, ref_truncation: float | Sequence[float] | None, release_domain1: str) -> tuple[float, float]:
    """``(ψ_s, ψ_t)`` of the references made from ``z_star``."""
    if ref_truncation is None:
        if mode != "release":
            return 1.0, 1.0
        d1, other = RELEASE_TRUNCATION
        return (other, d1) if release_domain1 == "target" else (d1, other)
    pair = (ref_truncation, ref_truncation) if isinstance(ref_truncation, (int, float)) else tuple(ref_truncation)
    if len(pair) != 2 or not all(isinstance(p, (int, float)) and 0 <= p <= 1 for p in pair):
        raise ValueError(f"ref_truncation must be a ψ in [0, 1] or a pair (ψ_s, ψ_t), got {ref_truncation!r}")
    return float(pair[0]), float(pair[1])


def _prepare(G_s: Generator, G_t: Generator, *, mode: str, z_star, x_s, x_t, y_s, y_t, seed,
             truncation: tuple[float, float], dev: torch.device) -> DDSInputs:
    """Check the inputs, make the references ``x_s = G_s(z*)``, ``x_t = G_t(z*)`` and the crossover ``x_c``.

    Numpy arrays are accepted for ``z_star``, images and masks; every problem is a :class:`UserError` naming
    the argument, raised before the references are made where the shapes alone tell.
    """
    size = G_t.size
    if z_star is not None:
        z_star = _as_tensor("z_star", z_star, f"[N, {G_s.style_dim}]")
        if z_star.ndim != 2 or z_star.shape[1] != G_s.style_dim:
            raise UserError(f"must be a tensor [N, {G_s.style_dim}], got shape {list(z_star.shape)}", argument="z_star")
        if z_star.shape[0] == 0:
            raise UserError("is empty (N = 0); give at least one latent", argument="z_star")
        if not torch.isfinite(z_star).all():
            raise UserError("contains NaN or inf", argument="z_star")
        z_star = z_star.to(dev).float()
        _per_sample_seeds(seed, z_star.shape[0])
    if mode == "blend" and z_star is None:
        raise UserError("mode='blend' runs the latent through both generators: give z_star", argument="z_star")
    if x_s is None or x_t is None:
        if z_star is None:
            raise UserError("give either z_star (paired images are generated) or both images x_s and x_t",
                            argument="z_star")
    for name, y in (("y_s", y_s), ("y_t", y_t)):
        if y is None:
            raise UserError("is missing: masks y_s and y_t are required (e.g. ddsutils.segmenter.predict_masks); "
                            "use torch.ones/zeros for a deliberate full/empty mask", argument=name)
    if x_s is None or x_t is None:
        with torch.no_grad():
            x_s = _reference(G_s.to(dev), z_star, truncation[0]) if x_s is None else x_s
            x_t = _reference(G_t.to(dev), z_star, truncation[1]) if x_t is None else x_t
    x_s = _check_image("x_s", x_s, None, size).to(dev)
    n = x_s.shape[0]
    x_t = _check_image("x_t", x_t, n, size).to(dev)
    if z_star is not None and z_star.shape[0] != n:
        raise UserError(f"has {z_star.shape[0]} latents but the images have batch {n}", argument="z_star")
    y_s, y_t = _check_mask("y_s", y_s, n, size).to(dev), _check_mask("y_t", y_t, n, size).to(dev)
    _warn_degenerate_masks(y_s, y_t)
    x_c = crossover(x_s, y_s, x_t, y_t)
    if mode == "release":  # the release clamps x_c in place while saving its PNG, before the loop
        x_c = x_c.clamp(-1, 1)
    return DDSInputs(x_s, x_t, y_s, y_t, x_c, z_star, _per_sample_seeds(seed, n), truncation)


def paper_loss(img_s: torch.Tensor, img_t: torch.Tensor, f_s, f_t, ref_s, ref_t, inp: DDSInputs, *, alpha: float,
               beta: float, gamma: float, norm: str = "mse", mask_resize: str = "bilinear") -> dict[str, torch.Tensor]:
    """Eq. 2–6 per sample for ``G_s(ẑ)`` = ``img_s`` and ``G_t(ẑ)`` = ``img_t``.

    Args:
        img_s, img_t: ``[N, 3, H, W]`` images of the two generators for the same latent.
        f_s, f_t: their backbone features; ref_s, ref_t: the features of ``x_s``, ``x_t``.
        inp: the checked inputs (``x_s``, ``x_t``, ``y_s``, ``y_t``, ``x_c``).
        alpha, beta, gamma: Eq. 6 weights. norm, mask_resize: see :func:`masked_feature_loss`.

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


def release_loss(img: torch.Tensor, f, ref_s, ref_t, inp: DDSInputs, *, domain1: str = "target") -> dict[str, torch.Tensor]:
    """The released ``DDS_main.py`` loss per sample, for the one generator's image ``img``.

    ``2·[P(img, x_t, 1 − y_t) + P(img, x_s, m)] + [pixel terms with the same masks] + 3·MSE(img, x_c)``, with
    ``P`` the masked VGG MSE (masks chain-resized) and ``m = y_t`` in the D1 loop (``domain1="target"``: the
    target's part mask also masks the source terms), ``m = y_s`` in the D2 loop.

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


def _lpips_from_features(f, ref) -> torch.Tensor:
    # Σ_k mean_hw ‖F_k(a) − F_k(b)‖²_channels: LPIPS for perceptual.LpipsFeatures, a plain feature distance otherwise
    fa = list(f.values()) if isinstance(f, Mapping) else list(f)
    fb = list(ref.values()) if isinstance(ref, Mapping) else list(ref)
    return sum((a - b).pow(2).sum(dim=1).flatten(1).mean(dim=1) for a, b in zip(fa, fb))


def refine_loss(img: torch.Tensor, f, ref, composite: torch.Tensor, weight: torch.Tensor, *,
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


def _blend_image(G_s: Generator, G_t: Generator, inp: DDSInputs, *, start: int, dilation: int, feather: float,
                 truncation: tuple[float, float], min_area: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend mode's image and ``G_t``'s w⁺ of ``z*`` (the layer blend of :mod:`ddsutils.layerblend`)."""
    from . import layerblend

    def w_plus(G: Generator, psi: float) -> torch.Tensor:
        centre = G.truncation_centre() if psi != 1.0 else None
        return G.to_w_plus(inp.z_star, truncation=psi, truncation_latent=centre)

    w_s, w_t = w_plus(G_s, truncation[0]), w_plus(G_t, truncation[1])
    mask = layerblend.prepare_mask(inp.y_s, min_area=min_area, dilation=dilation, feather=feather)
    img = layerblend.blend_synthesis(G_s, G_t, w_s, w_t, mask, start=start)
    return img.clamp(-1, 1), w_t


def default_blend_start(G: Generator) -> int:
    """Blend mode's default first blended layer: the first StyledConv at the output resolution."""
    return G.num_layers - 2


def optimise(
    G_s: Generator,
    G_t: Generator,
    *,
    z_star: torch.Tensor | None = None,
    x_s: torch.Tensor | None = None,
    x_t: torch.Tensor | None = None,
    y_s: torch.Tensor | None = None,
    y_t: torch.Tensor | None = None,
    mode: str = "paper",
    latent_space: str | None = None,
    init: str | None = None,
    alpha: float = 0.9,
    beta: float = 1.0,
    gamma: float = 0.5,
    backbone: str | nn.Module | None = None,
    layers: str | Sequence[str] | None = None,
    normalize: str | None = None,
    norm: str = "mse",
    mask_resize: str = "bilinear",
    backbone_weights: str = "imagenet",
    resize: int | None = None,
    lr: float | None = None,
    num_steps: int = 1000,
    snapshot_every: int | None = 100,
    ref_truncation: float | Sequence[float] | None = None,
    release_domain1: str = "target",
    n_mean_latent: int = 10000,
    blend_start: int | None = None,
    min_area: int = 0,
    dilation: int = 1,
    feather: float = 0.0,
    composite: str = "blend",
    inside_weight: float = 10.0,
    mse_weight: float = 1.0,
    seed: int | Sequence[int] = 0,
    callback: Callable[[int, dict[str, torch.Tensor], torch.Tensor], None] | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> DDSResult:
    """Run DDS for a batch of N pairs; each sample's result is independent of the others.

    Inputs are either latents (``z_star`` ``[N, D]``: ``x_s = G_s(z*)``, ``x_t = G_t(z*)``, clamped to
    [-1, 1]) or images ``x_s``, ``x_t`` ``[N, 3, H, W]`` in [-1, 1] (unpaired inputs, Fig. 11, or unrelated
    generators, Fig. 12). Masks ``y_s``, ``y_t`` ``[N, 1, H, W]`` in {0, 1} are always given (e.g. from
    :func:`ddsutils.segmenter.predict_masks`). An empty ``y_s`` or a full ``y_t`` warns (the respective terms
    vanish).

    Modes:

    - ``"paper"``: Algorithm 1, Eq. 6 over ẑ with both generators, ``x̂ = G_t(ẑ)``. Every term is zero at
      ẑ = z*, where ``x̂ = x_t``: the loss never asks ``G_t`` for the source style inside the part.
    - ``"release"``: the released ``DDS_main.py`` loop (one generator, w⁺ from the mean w, weights 2 / 1 / 3,
      VGG relu1_1, relu1_2, relu3_2, relu4_2 on [-1, 1] input, masks chain-resized, ``x_c`` clamped, fixed
      noise maps re-standardised after every step, references at ψ = 0.7 / 1).
    - ``"blend"``: no optimisation. ``z*`` goes through both generators; from StyledConv layer ``blend_start``
      on their activations are mixed under the (dilated, feathered) source mask ``y_s``
      (:func:`ddsutils.layerblend.blend_synthesis`).
    - ``"refine"``: ``G_t``'s w⁺, initialised at w(z*), optimised toward a composite (the blend, or the paste
      ``x_s ⊗ y_s + x_t ⊗ ȳ_s``) with LPIPS + a pixel MSE weighted ``inside_weight`` × inside the dilated
      mask; ``x̂ = G_t(ŵ)`` is one generator's image.

    Args:
        G_s, G_t: source and target generators of the same resolution and latent width.
        mode: one of :data:`MODES`.
        latent_space: ``"z"`` (paper default), ``"w"`` or ``"w+"`` (release and refine). In w/w+ the same code
            is fed to both synthesis networks; ``"random"``/``"z_star"`` inits are mapped with ``G_t``'s mapping.
        init: ``"random"`` (paper: ẑ ~ N(0, I), seeded per sample), ``"z_star"`` (footnote 3: "gets stuck";
            refine default) or ``"mean"`` (release: the mean w of ``n_mean_latent`` samples; in z: zeros).
        alpha, beta, gamma: Eq. 6 weights (paper 0.9, 1, 0.5). Release mode uses 2/1/3 instead.
        backbone: see :func:`make_feature_extractor` (default VGG-16; refine: ``"lpips-alex"``).
        layers: layer set; default ``"paper"`` (conv1_1, conv1_2, conv2_2, conv3_3 as printed) in paper mode and
            ``"release"`` (relu1_1, relu1_2, relu3_2, relu4_2 — the shapes of the paper's Table 4) in release mode.
        normalize: ImageNet mean/std before the backbone (paper default ``"imagenet"``; release ``"none"``).
        norm: ``"mse"`` (default; means of squared errors, the paper's "pixel-wise MSE") or ``"paper"`` (the
            literal norms of Eq. 2–4; the squared pixel sum then dominates). Paper mode only.
        mask_resize: how masks are resized to feature layers in paper mode (``"bilinear"``, ``"chain"``,
            ``"area"``, ``"nearest"``); release mode always chains.
        backbone_weights: ``"imagenet"`` or ``"random"`` (tests only).
        resize: resize images to this size before the backbone (e.g. 224 for AlexNet's Table 5 shapes).
        lr: Adam learning rate (constant); default 0.01 (paper, release), 0.05 (refine).
        num_steps: Adam steps (paper: 1000), >= 0 (0: the image of the initial latent); ignored by blend mode.
        snapshot_every: keep ``x̂`` every this many steps, >= 1 (``None``: only the final image).
        ref_truncation: truncation ψ of the references made from ``z_star`` (toward each generator's mean
            latent), one ψ or ``(ψ_s, ψ_t)``; default 1 (none), and in release mode ψ = 0.7 for the domain-1
            image and 1 for the other (:data:`RELEASE_TRUNCATION`). Masks must match the references: a
            caller who computed them on untruncated images passes ``ref_truncation=1`` or the images.
        release_domain1: release mode's single generator: ``"target"`` (the released D1 loop, whose output is the
            showcased image: the target's part mask also masks the source terms) or ``"source"`` (the D2 loop).
        n_mean_latent: samples for the mean w (release init, ``init="mean"``).
        blend_start: blend (and refine's blend composite): first blended StyledConv layer, ``0 …
            G.num_layers``; default :func:`default_blend_start` (the first layer at the output resolution).
        min_area: blend / refine: drop the mask's connected components smaller than this many pixels first
            (specks far from the part; :func:`ddsutils.layerblend.remove_small_components`); 0 keeps all.
        dilation, feather: grow ``y_s`` by this many pixels and blur it (σ in pixels) before blending; refine
            weights its pixel term inside the dilated mask.
        composite: refine's target image: ``"blend"`` (needs ``z_star``) or ``"paste"``.
        inside_weight, mse_weight: refine's pixel-term weights (inside the mask, overall).
        seed: int (sample i uses ``seed + i``) or one seed per sample; seeds the random init (stream
            ``INIT_STREAM + seed_i``, disjoint from ``manual_seed(seed)``) and release noise.
        callback: ``callback(step, losses, images)`` after every step (``losses``: term → ``[N]``).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: show a ``tqdm.auto`` bar with the mean loss.

    Returns:
        :class:`DDSResult`.

    Raises:
        ddsutils.cli.UserError (a ``ValueError``), before any work and naming the argument: a bad setting
            (``num_steps`` negative or not whole, ``lr`` not a finite number > 0, a weight NaN / inf / negative,
            an unknown ``backbone``, ``blend_start`` out of range, ``snapshot_every`` < 1, a wrong number of
            seeds...), mismatched generators, missing or malformed inputs (N = 0, non-binary or wrongly sized
            masks, NaN/inf latents, images outside [-1, 1]).
    """
    # every setting is checked before any work (UserError naming the keyword); the data in _prepare
    s = _check_settings(G_s, G_t, {k: v for k, v in locals().items() if k not in _DATA_ARGS})
    num_steps, snapshot_every, n_mean_latent = s["num_steps"], s["snapshot_every"], s["n_mean_latent"]
    resize = s["resize"]
    blend_start, dilation, dev, truncation = s["blend_start"], s["dilation"], s["device"], s["ref_truncation"]
    min_area = s["min_area"]
    from tqdm.auto import tqdm

    # -- settings ---------------------------------------------------------------------------------
    release, refine = mode == "release", mode == "refine"
    latent_space = latent_space or ("w+" if release or refine else "z")
    init = init or {"release": "mean", "refine": "z_star"}.get(mode, "random")
    layers = layers if layers is not None else ("release" if release else "paper")
    normalize = normalize or ("none" if release else "imagenet")
    backbone = backbone if backbone is not None else ("lpips-alex" if refine else "vgg16")
    lr = lr if lr is not None else (0.05 if refine else 0.01)
    if release:
        norm, mask_resize = "mse", "chain"
    start = default_blend_start(G_t) if blend_start is None else blend_start
    inp = _prepare(G_s, G_t, mode=mode, z_star=z_star, x_s=x_s, x_t=x_t, y_s=y_s, y_t=y_t, seed=seed,
                   truncation=truncation, dev=dev)
    if backbone == "generator" and inp.z_star is None:
        raise UserError("backbone='generator' works in paper mode with z_star (its reference features come from "
                        "G(z*)); give z_star or choose another backbone", argument="backbone", value=backbone)
    if refine and composite == "blend" and inp.z_star is None:
        raise UserError("refine with composite='blend' needs z_star; pass composite='paste' for images",
                        argument="composite", value=composite)
    n, seeds = inp.x_s.shape[0], inp.seeds
    G_s, G_t = G_s.to(dev).eval().requires_grad_(False), G_t.to(dev).eval().requires_grad_(False)
    config = {
        "mode": mode, "latent_space": latent_space, "init": init, "alpha": alpha, "beta": beta, "gamma": gamma,
        "backbone": backbone if isinstance(backbone, str) else type(backbone).__name__,
        "layers": layers if isinstance(layers, str) else list(layers), "normalize": normalize, "norm": norm,
        "mask_resize": mask_resize, "backbone_weights": backbone_weights, "resize": resize, "lr": lr,
        "num_steps": num_steps, "snapshot_every": snapshot_every, "ref_truncation": list(truncation),
        "release_domain1": release_domain1, "n_mean_latent": n_mean_latent, "seeds": seeds,
        "release_weights": dict(RELEASE_WEIGHTS) if release else None, "blend_start": start,
        "min_area": min_area, "dilation": dilation, "feather": feather, "composite": composite, "inside_weight": inside_weight,
        "mse_weight": mse_weight, "device": str(dev), "n": n, "size": G_t.size,
        "generators": {"source": G_s.config, "target": G_t.config},
    }

    # -- blend mode: one pass, nothing to optimise ---------------------------------------------------
    t0 = time.perf_counter()
    if mode == "blend":
        with torch.no_grad():
            image, w_t = _blend_image(G_s, G_t, inp, start=start, dilation=dilation, feather=feather,
                                      truncation=truncation, min_area=min_area)
        config.update(num_steps=0, latent_space="w+", init="z_star")
        return _result(inp, image.cpu(), None, w_t, {"total": torch.zeros(0, n)}, [], config,
                       time.perf_counter() - t0, 1)

    # -- the loss's fixed parts: references, noise, features -----------------------------------------
    extractor = make_feature_extractor(backbone, layers=layers, normalize=normalize, resize=resize,
                                       weights=backbone_weights, device=dev)
    use_gen_feats = extractor is None
    if use_gen_feats and (inp.z_star is None or mode != "paper"):
        raise ValueError("backbone='generator' works in paper mode with z_star (its reference features come "
                         "from G(z*))")
    G_opt = (G_t if release_domain1 == "target" else G_s) if release else G_t
    if release:  # one set of fixed random noise maps (not optimised), shared over the batch
        noise: list[torch.Tensor] | str = [t.to(dev) for t in G_opt.make_noise(1, seed=seeds[0])]
    else:
        noise = "const"

    def render(G: Generator, latent: torch.Tensor, feats: bool = False):
        space = "w+" if latent.ndim == 3 else latent_space
        return G(latent, input_space=space, noise=noise, return_features=feats)

    def features(G: Generator, latent: torch.Tensor):
        if use_gen_feats:
            return render(G, latent, feats=True)
        img = render(G, latent)
        return img, extractor(img)

    with torch.no_grad():
        if use_gen_feats:
            ref_s = _reference(G_s, inp.z_star, truncation[0], features=True)[1]
            ref_t = _reference(G_t, inp.z_star, truncation[1], features=True)[1]
        elif refine:
            mask = _dilated(inp.y_s, dilation, min_area)
            if composite == "blend":
                if inp.z_star is None:
                    raise ValueError("refine with composite='blend' needs z_star; pass composite='paste' for images")
                target_img = _blend_image(G_s, G_t, inp, start=start, dilation=dilation, feather=feather,
                                          truncation=truncation, min_area=min_area)[0]
            else:
                target_img = inp.x_s * inp.y_s + inp.x_t * (1 - inp.y_s)
            weight = 1 + (inside_weight - 1) * mask
            ref_c = extractor(target_img)
        else:
            ref_s, ref_t = extractor(inp.x_s), extractor(inp.x_t)

    # -- Algorithm 1: Adam on the latent -------------------------------------------------------------
    latent = _initial_latent(G_opt, latent_space=latent_space, init=init, seeds=seeds, z_star=inp.z_star,
                             n_mean_latent=n_mean_latent, device=dev).requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=lr)
    terms = {"paper": ("total", "L_s", "L_t", "L_c"), "release": ("total", "perceptual", "pixel", "crossover"),
             "refine": ("total", "lpips", "mse")}[mode]
    history = {k: torch.zeros(num_steps, n) for k in terms}
    snapshots: list[tuple[int, torch.Tensor]] = []
    if snapshot_every:
        with torch.no_grad():
            snapshots.append((0, render(G_opt, latent).clamp(-1, 1).cpu()))
    t0 = time.perf_counter()
    bar = tqdm(range(num_steps), desc=f"DDS {mode}", disable=cli.no_progress(progress), leave=False)
    for step in bar:
        opt.zero_grad(set_to_none=True)
        if mode == "paper":
            (img_s, f_s), (img_t, f_t) = features(G_s, latent), features(G_t, latent)
            losses = paper_loss(img_s, img_t, f_s, f_t, ref_s, ref_t, inp, alpha=alpha, beta=beta, gamma=gamma,
                                norm=norm, mask_resize=mask_resize)
        elif release:
            img, f = features(G_opt, latent)
            losses = release_loss(img, f, ref_s, ref_t, inp, domain1=release_domain1)
        else:
            img, f = features(G_t, latent)
            losses = refine_loss(img, f, ref_c, target_img, weight, mse_weight=mse_weight)
        losses["total"].sum().backward()  # a sum keeps every sample's gradient independent of the batch
        opt.step()
        if release:  # the release re-standardises its (never optimised) noise maps after every step
            with torch.no_grad():
                for nz in noise:
                    nz.sub_(nz.mean()).div_(nz.std())
        for k in terms:
            history[k][step] = losses[k].detach().cpu()
        if progress:
            bar.set_postfix(loss=f"{losses['total'].mean().item():.4g}")
        if callback is not None or (snapshot_every and (step + 1) % snapshot_every == 0):
            with torch.no_grad():
                now = render(G_opt, latent).clamp(-1, 1)
            if snapshot_every and (step + 1) % snapshot_every == 0:
                snapshots.append((step + 1, now.cpu()))
            if callback is not None:
                callback(step, {k: v.detach() for k, v in losses.items()}, now)
    elapsed = time.perf_counter() - t0

    with torch.no_grad():
        image = render(G_opt, latent).clamp(-1, 1).cpu()
        image_source = render(G_s, latent).clamp(-1, 1).cpu() if mode == "paper" else None
    return _result(inp, image, image_source, latent.detach(), history, snapshots, config, elapsed,
                   max(num_steps, 1))


def _optimise_defaults() -> dict[str, Any]:
    import inspect

    return {k: p.default for k, p in inspect.signature(optimise).parameters.items()
            if p.default is not inspect.Parameter.empty and k not in _DATA_ARGS}


#: :func:`optimise`'s settings and their defaults (what :func:`_check_settings` fills in).
_OPTIMISE_DEFAULTS = _optimise_defaults()


def _dilated(mask: torch.Tensor, dilation: int, min_area: int = 0) -> torch.Tensor:
    from .layerblend import prepare_mask

    return prepare_mask(mask, min_area=min_area, dilation=dilation)


def _result(inp: DDSInputs, image: torch.Tensor, image_source: torch.Tensor | None, latent: torch.Tensor,
            history: dict[str, torch.Tensor], snapshots: list, config: dict, elapsed: float, steps: int) -> DDSResult:
    n = inp.x_s.shape[0]
    timings = {"total_s": elapsed, "per_step_s": elapsed / steps, "per_image_s": elapsed / n,
               "per_image_iter_s": elapsed / (n * steps)}
    return DDSResult(image=image, image_source=image_source, latent=latent.cpu(), x_s=inp.x_s.cpu(),
                     x_t=inp.x_t.cpu(), y_s=inp.y_s.cpu(), y_t=inp.y_t.cpu(), x_c=inp.x_c.cpu(), history=history,
                     snapshots=snapshots, config=config, timings=timings)


def _reference(G: Generator, z: torch.Tensor, psi: float, *, features: bool = False):
    centre = G.truncation_centre() if psi != 1.0 else None
    out = G(z, truncation=psi, truncation_latent=centre, noise="const", return_features=features)
    if features:
        return out[0].clamp(-1, 1), out[1]
    return out.clamp(-1, 1)


# ----------------------------------------------------------------------------------------------------
# Figures


def iteration_strip(result: DDSResult) -> torch.Tensor:
    """Fig. 4-style strip: per sample one row ``x_s, x_t, x_c, snapshots..., x̂`` -> ``[N * K, 3, H, W]``."""
    cols = [result.x_s, result.x_t, result.x_c] + [img for _, img in result.snapshots] + [result.image]
    return torch.stack(cols, dim=1).flatten(0, 1)
