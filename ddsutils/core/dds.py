"""Dual-Domain Synthesis (DDS, paper §3.3, Algorithm 1) and its variants: :func:`optimise`.

Given paired images ``x_s = G_s(z*)``, ``x_t = G_t(z*)`` (or unpaired images) and part masks ``y_s``, ``y_t``,
DDS searches a latent ``ẑ`` whose image ``x̂ = G_t(ẑ)`` shows the source domain inside the part and the target
domain elsewhere. The losses (Eq. 1–6, the released code's, refine's) are in :mod:`ddsutils.core.losses` and
are re-exported here (``dds.paper_loss``, ``dds.DDSInputs``, ...).

:func:`optimise` reads top to bottom:

1. ``_check_settings``: every keyword, before any work (a ``UserError`` naming it); ``_mode_defaults`` fills
   the defaults that depend on the mode;
2. ``_prepare``: the data (``z*``, images, masks) checked, the references ``G(z*)`` and the crossover made;
3. one function per mode: ``_paper`` (Algorithm 1, Eq. 6 through both generators), ``_release`` (the released
   ``DDS_main.py``: one generator, w⁺ from the mean w, fixed noise maps), ``_blend`` (no optimisation: the
   two generators' activations mixed under the mask) and ``_refine`` (``G_t``'s w⁺ toward a composite);
4. ``_descend``: the optimisation loop the three optimising modes share (Adam on the latent, history,
   snapshots, progress bar, callback).

Perceptual backbones come from the registry of :mod:`ddsutils.core.backbones` (``backbone="vgg16"``, any
registered name, or an ``nn.Module``). Shapes: images ``[N, 3, H, W]`` in [-1, 1]; masks ``[N, 1, H, W]`` in
{0, 1}; ``z`` ``[N, D]``; w⁺ ``[N, L, D]``. The modes and their measurements: ``docs/dds_modes.md``.

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
from torch import nn

from . import backbones, cli
from .cli import UserError
from .precision import check_compile, check_precision, compiled, precision_context
from .losses import (PAPER_WEIGHTS, RELEASE_WEIGHTS, _MASK_RESIZES, _NORMS, DDSInputs, crossover, crossover_loss,
                     masked_feature_loss, masked_pixel_loss, paper_loss, refine_loss, release_loss)
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


def __getattr__(name: str) -> Any:
    if name == "BACKBONE_NAMES":  # earlier constant: the registered backbone names
        return backbones.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_feature_extractor(backbone: str | nn.Module = "vgg16", *, layers: str | Sequence[str] | None = "paper",
                           normalize: str = "imagenet", resize: int | None = None, weights: str = "imagenet",
                           device: str | torch.device = "cpu") -> nn.Module | None:
    """A frozen module ``img [N, 3, H, W] in [-1, 1] -> {layer: [N, C, h, w]}`` for Eq. 3.

    Args:
        backbone: a name registered in :mod:`ddsutils.core.backbones` (:func:`~ddsutils.core.backbones.names`:
            ``"vgg16"`` (paper), ``"alexnet"``, ``"squeezenet1_1"``, ``"resnet18"`` (appendix A, Tables 5–7),
            ``"lpips-alex"`` / ``"lpips-vgg"``, ``"generator"`` (appendix D: the generators' own StyledConv
            activations; returns ``None`` and :func:`optimise` takes them from the synthesis pass), or one added
            with :func:`~ddsutils.core.backbones.register_backbone`), or any module returning a dict/list (used as
            is: ``layers``, ``normalize``, ``resize`` and ``weights`` are then ignored).
        layers: a named layer set of the backbone (``"paper"``, ``"release"``, ``"lpips"``) or layer names.
        normalize: ``"imagenet"`` (mean/std), ``"none"`` ([-1, 1] as the released code) or ``"lpips"``.
        resize: optional square size the image is resized to before the backbone.
        weights: ``"imagenet"`` (resolved through the manifest), ``"random"`` (tests) or a path.
        device: where the module lives.

    Raises:
        ddsutils.cli.UserError: an unknown name (the message lists the registered ones).
    """
    if isinstance(backbone, nn.Module):
        return backbone.to(device)
    return backbones.get_backbone(backbone).make(layers=layers, normalize=normalize, resize=resize, weights=weights,
                                                 device=device)


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
        if backbones.get_backbone(backbone).uses_generator_features and mode != "paper":
            raise UserError(f"works in the paper mode only (its reference features come from G(z*)), not in the "
                            f"{mode} mode; choose another backbone or the paper mode", argument="backbone",
                            value=backbone)
    named = backbone if isinstance(backbone, str) else (None if backbone is not None else
                                                         ("lpips-alex" if mode == "refine" else "vgg16"))
    if (named is not None and backbones.get_backbone(named).weights_option
            and s["backbone_weights"] not in ("imagenet", "random")):
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
    check_precision(s["precision"], s["device"])
    check_compile(s["compile"], s["device"])
    return s


def _backbone_weight_files(backbone: Any, weights: Any = "imagenet") -> list[Path]:
    """Resolve (and download, unless offline) the weight files a backbone will load; ``[]`` when it needs none.

    Used before any work, so that a missing file stops a run before segmenter training or optimisation.
    Raises :class:`ddsutils.weights.WeightsUnavailableError` (a UserError) when a file is missing.
    """
    return backbones.resolve_weights(backbone, weights) if isinstance(backbone, str) else []


def _truncations(mode: str, ref_truncation: float | Sequence[float] | None,
                 release_domain1: str) -> tuple[float, float]:
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


def _prepare(G_s: Generator, G_t: Generator, s: Mapping[str, Any], *, z_star, x_s, x_t, y_s, y_t) -> DDSInputs:
    """Check the data, make the references ``x_s = G_s(z*)``, ``x_t = G_t(z*)`` and the crossover ``x_c``.

    Numpy arrays are accepted for ``z_star``, images and masks; every problem is a :class:`UserError` naming
    the argument, raised before the references are made where the shapes alone tell.

    Args:
        G_s, G_t: the generators. s: the checked settings (``mode``, ``seed``, ``ref_truncation``, ``device``,
            ``backbone``, ``composite``). z_star, x_s, x_t, y_s, y_t: :func:`optimise`'s data arguments.

    Returns:
        :class:`DDSInputs` on the device, with the per-sample seeds and the references' truncation.
    """
    mode, seed, truncation, dev = s["mode"], s["seed"], s["ref_truncation"], s["device"]
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
    backbone = s["backbone"]
    if isinstance(backbone, str) and backbones.get_backbone(backbone).uses_generator_features and z_star is None:
        raise UserError(f"backbone={backbone!r} works in paper mode with z_star (its reference features come from "
                        "G(z*)); give z_star or choose another backbone", argument="backbone", value=backbone)
    if mode == "refine" and s["composite"] == "blend" and z_star is None:
        raise UserError("refine with composite='blend' needs z_star; pass composite='paste' for images",
                        argument="composite", value=s["composite"])
    return DDSInputs(x_s, x_t, y_s, y_t, x_c, z_star, _per_sample_seeds(seed, n), truncation)


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
    precision: str = "fp32",
    compile: bool = False,
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
        backbone: a registered name or a module, see :func:`make_feature_extractor` (default VGG-16; refine:
            ``"lpips-alex"``); :func:`ddsutils.core.backbones.register_backbone` adds one.
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
        precision: ``"fp32"`` (default), ``"bf16"`` (generators and backbone under bfloat16 autocast; the
            latent and Adam stay float32) or ``"tf32"`` (CUDA only); :mod:`ddsutils.core.precision`.
        compile: run each step's forward pass (generators, backbone, loss) through :func:`torch.compile`
            (paper, release and refine modes): the first step compiles (about a minute on CPU, more at 256 px),
            the others run faster (docs/speed.md); results equal the eager ones up to float rounding. Off by
            default.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        progress: show a ``tqdm.auto`` bar with the mean loss (read every 10 steps: no per-step host sync).

    Returns:
        :class:`DDSResult`.

    Raises:
        ddsutils.cli.UserError (a ``ValueError``), before any work and naming the argument: a bad setting
            (``num_steps`` negative or not whole, ``lr`` not a finite number > 0, a weight NaN / inf / negative,
            an unknown ``backbone``, ``blend_start`` out of range, ``snapshot_every`` < 1, a wrong number of
            seeds...), mismatched generators, missing or malformed inputs (N = 0, non-binary or wrongly sized
            masks, NaN/inf latents, images outside [-1, 1]).
    """
    s = _check_settings(G_s, G_t, {k: v for k, v in locals().items() if k not in _DATA_ARGS})  # before any work
    s = _mode_defaults(s, G_t)
    inp = _prepare(G_s, G_t, s, z_star=z_star, x_s=x_s, x_t=x_t, y_s=y_s, y_t=y_t)
    G_s, G_t = (G.to(s["device"]).eval().requires_grad_(False) for G in (G_s, G_t))
    run = {"paper": _paper, "release": _release, "blend": _blend, "refine": _refine}[s["mode"]]
    return run(G_s, G_t, inp, s, _config(s, inp, G_s, G_t))


def _optimise_defaults() -> dict[str, Any]:
    import inspect

    return {k: p.default for k, p in inspect.signature(optimise).parameters.items()
            if p.default is not inspect.Parameter.empty and k not in _DATA_ARGS}


#: :func:`optimise`'s settings and their defaults (what :func:`_check_settings` fills in).
_OPTIMISE_DEFAULTS = _optimise_defaults()


def _mode_defaults(s: Mapping[str, Any], G_t: Generator) -> dict[str, Any]:
    """The checked settings with the defaults that depend on the mode filled in (``None`` in the signature)."""
    mode = s["mode"]
    release, refine = mode == "release", mode == "refine"
    s = dict(s)
    s["latent_space"] = s["latent_space"] or ("w+" if release or refine else "z")
    s["init"] = s["init"] or {"release": "mean", "refine": "z_star"}.get(mode, "random")
    s["layers"] = s["layers"] if s["layers"] is not None else ("release" if release else "paper")
    s["normalize"] = s["normalize"] or ("none" if release else "imagenet")
    s["backbone"] = s["backbone"] if s["backbone"] is not None else ("lpips-alex" if refine else "vgg16")
    s["lr"] = s["lr"] if s["lr"] is not None else (0.05 if refine else 0.01)
    if release:  # the released loss: means of squared errors, masks chain-resized
        s["norm"], s["mask_resize"] = "mse", "chain"
    s["blend_start"] = default_blend_start(G_t) if s["blend_start"] is None else s["blend_start"]
    return s


#: :attr:`DDSResult.config`'s keys, in order.
_CONFIG_KEYS = ("mode", "latent_space", "init", "alpha", "beta", "gamma", "backbone", "layers", "normalize", "norm",
                "mask_resize", "backbone_weights", "resize", "lr", "num_steps", "snapshot_every", "ref_truncation",
                "release_domain1", "n_mean_latent", "seeds", "release_weights", "blend_start", "min_area", "dilation",
                "feather", "composite", "inside_weight", "mse_weight", "precision", "compile", "device", "n", "size",
                "generators")


def _config(s: Mapping[str, Any], inp: DDSInputs, G_s: Generator, G_t: Generator) -> dict[str, Any]:
    """Every setting that produces the result, JSON-serialisable (:attr:`DDSResult.config`)."""
    backbone, layers = s["backbone"], s["layers"]
    derived = {"backbone": backbone if isinstance(backbone, str) else type(backbone).__name__,
               "layers": layers if isinstance(layers, str) else list(layers),
               "ref_truncation": list(s["ref_truncation"]), "seeds": inp.seeds,
               "release_weights": dict(RELEASE_WEIGHTS) if s["mode"] == "release" else None,
               "device": str(s["device"]), "n": inp.x_s.shape[0], "size": G_t.size,
               "generators": {"source": G_s.config, "target": G_t.config}}
    return {k: derived[k] if k in derived else s[k] for k in _CONFIG_KEYS}


def _extractor(s: Mapping[str, Any]) -> nn.Module | None:
    return make_feature_extractor(s["backbone"], layers=s["layers"], normalize=s["normalize"], resize=s["resize"],
                                  weights=s["backbone_weights"], device=s["device"])


def _start_latent(G: Generator, inp: DDSInputs, s: Mapping[str, Any]) -> torch.Tensor:
    return _initial_latent(G, latent_space=s["latent_space"], init=s["init"], seeds=inp.seeds, z_star=inp.z_star,
                           n_mean_latent=s["n_mean_latent"], device=s["device"])


def _synthesis(latent_space: str, noise: list[torch.Tensor] | str) -> Callable[..., Any]:
    """``render(G, latent, feats=False)``: ``G``'s image (and StyledConv activations) of a latent (w⁺ if 3-d)."""
    def render(G: Generator, latent: torch.Tensor, feats: bool = False):
        return G(latent, input_space="w+" if latent.ndim == 3 else latent_space, noise=noise, return_features=feats,
                 check_finite=False)  # the start was checked: no host sync per step
    return render


def _paper(G_s: Generator, G_t: Generator, inp: DDSInputs, s: Mapping[str, Any], config: dict) -> DDSResult:
    """Paper mode, Algorithm 1: Eq. 6 on ẑ through both generators (constant noise), ``x̂ = G_t(ẑ)``."""
    extractor = _extractor(s)  # None: the generators' own features (appendix D)
    render = _synthesis(s["latent_space"], "const")

    def features(G: Generator, latent: torch.Tensor):
        if extractor is None:
            return render(G, latent, feats=True)
        img = render(G, latent)
        return img, extractor(img)

    with torch.no_grad():
        if extractor is None:
            ref_s = _reference(G_s, inp.z_star, inp.truncation[0], features=True)[1]
            ref_t = _reference(G_t, inp.z_star, inp.truncation[1], features=True)[1]
        else:
            ref_s, ref_t = extractor(inp.x_s), extractor(inp.x_t)

    def loss(latent: torch.Tensor) -> dict[str, torch.Tensor]:
        (img_s, f_s), (img_t, f_t) = features(G_s, latent), features(G_t, latent)
        return paper_loss(img_s, img_t, f_s, f_t, ref_s, ref_t, inp, alpha=s["alpha"], beta=s["beta"],
                          gamma=s["gamma"], norm=s["norm"], mask_resize=s["mask_resize"])

    return _descend(G_t, render, _start_latent(G_t, inp, s), loss, inp, s, config,
                    terms=("total", "L_s", "L_t", "L_c"), G_source=G_s)


def _release(G_s: Generator, G_t: Generator, inp: DDSInputs, s: Mapping[str, Any], config: dict) -> DDSResult:
    """Release mode, the released ``DDS_main.py`` loop: ONE generator (``release_domain1``) on w⁺ from the mean w,
    :func:`release_loss`, one set of fixed random noise maps (shared over the batch, re-standardised every step)."""
    extractor = _extractor(s)
    G = G_t if s["release_domain1"] == "target" else G_s
    noise = [t.to(s["device"]) for t in G.make_noise(1, seed=inp.seeds[0])]
    render = _synthesis(s["latent_space"], noise)
    with torch.no_grad():
        ref_s, ref_t = extractor(inp.x_s), extractor(inp.x_t)

    def loss(latent: torch.Tensor) -> dict[str, torch.Tensor]:
        img = render(G, latent)
        return release_loss(img, extractor(img), ref_s, ref_t, inp, domain1=s["release_domain1"])

    @torch.no_grad()
    def restandardise_noise() -> None:  # as the release does after every step (the maps are never optimised)
        for nz in noise:
            nz.sub_(nz.mean()).div_(nz.std())

    return _descend(G, render, _start_latent(G, inp, s), loss, inp, s, config,
                    terms=("total", "perceptual", "pixel", "crossover"), after_step=restandardise_noise)


def _refine(G_s: Generator, G_t: Generator, inp: DDSInputs, s: Mapping[str, Any], config: dict) -> DDSResult:
    """Refine mode: ``G_t``'s w⁺ from w(z*) toward a composite (the blend, or the paste ``x_s ⊗ y_s + x_t ⊗ ȳ_s``)
    with :func:`refine_loss` (LPIPS + a pixel MSE weighted ``inside_weight`` × inside the dilated mask)."""
    extractor = _extractor(s)
    render = _synthesis(s["latent_space"], "const")
    with torch.no_grad():
        mask = _dilated(inp.y_s, s["dilation"], s["min_area"])
        if s["composite"] == "blend":
            composite = _blend_image(G_s, G_t, inp, start=s["blend_start"], dilation=s["dilation"],
                                     feather=s["feather"], truncation=inp.truncation, min_area=s["min_area"])[0]
        else:
            composite = inp.x_s * inp.y_s + inp.x_t * (1 - inp.y_s)
        weight = 1 + (s["inside_weight"] - 1) * mask
        ref = extractor(composite)

    def loss(latent: torch.Tensor) -> dict[str, torch.Tensor]:
        img = render(G_t, latent)
        return refine_loss(img, extractor(img), ref, composite, weight, mse_weight=s["mse_weight"])

    return _descend(G_t, render, _start_latent(G_t, inp, s), loss, inp, s, config, terms=("total", "lpips", "mse"))


def _blend(G_s: Generator, G_t: Generator, inp: DDSInputs, s: Mapping[str, Any], config: dict) -> DDSResult:
    """Blend mode: no optimisation; ``z*`` through both generators, their activations mixed under the (dilated,
    feathered) source mask from StyledConv ``blend_start`` on (:func:`ddsutils.core.layerblend.blend_synthesis`)."""
    t0 = time.perf_counter()
    with torch.no_grad():
        image, w_t = _blend_image(G_s, G_t, inp, start=s["blend_start"], dilation=s["dilation"], feather=s["feather"],
                                  truncation=inp.truncation, min_area=s["min_area"])
    config.update(num_steps=0, latent_space="w+", init="z_star")
    return _result(inp, image.cpu(), None, w_t, {"total": torch.zeros(0, len(inp.seeds))}, [], config,
                   time.perf_counter() - t0, 1)


def _descend(G: Generator, render: Callable[..., Any], latent: torch.Tensor,
             loss_fn: Callable[[torch.Tensor], dict[str, torch.Tensor]], inp: DDSInputs, s: Mapping[str, Any],
             config: dict, *, terms: tuple[str, ...], G_source: Generator | None = None,
             after_step: Callable[[], None] | None = None) -> DDSResult:
    """The optimisation loop of Algorithm 1 (paper, release and refine modes): Adam on the latent.

    Args:
        G: the generator whose image is ``x̂`` (snapshots, callback, result); render: ``render(G, latent)``.
        latent: the initial latent ``[N, D]`` or ``[N, L, D]`` (optimised in place).
        loss_fn: ``latent -> {term: [N]}``, with ``"total"`` the loss to minimise.
        inp, s, config: the inputs, the settings (``lr``, ``num_steps``, ``snapshot_every``, ``callback``,
            ``progress``) and the result's config.
        terms: the loss terms kept in the history. G_source: also return ``G_source``'s image (paper mode).
        after_step: run after every Adam step (release mode re-standardises its noise maps).

    Returns:
        :class:`DDSResult`: ``history`` ``{term: [num_steps, N]}``, snapshots every ``snapshot_every`` steps.
    """
    from tqdm.auto import tqdm

    num_steps, every, callback = s["num_steps"], s["snapshot_every"], s["callback"]
    loss_fn = compiled(loss_fn, s["compile"])  # the step's forward pass, compiled on the first call when asked

    def image(gen: Generator = G) -> torch.Tensor:
        with torch.no_grad():
            return render(gen, latent).clamp(-1, 1)

    # the latent is the only thing optimised (float32, as Adam's state): the generators and the backbone are frozen
    latent.requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=s["lr"])
    history = {k: torch.zeros(num_steps, latent.shape[0], device=latent.device) for k in terms}  # stays on device
    snapshots = [(0, image().cpu())] if every else []  # step 0: the initial latent's image
    show = not cli.no_progress(s["progress"])
    t0 = time.perf_counter()
    bar = tqdm(range(num_steps), desc=f"DDS {s['mode']}", disable=not show, leave=False)
    if s["compile"]:
        bar.set_postfix_str("compiling the step (first call: about a minute on CPU)")
    for step in bar:
        # 1. the per-sample losses of the current latent, the forward passes at the chosen precision
        opt.zero_grad(set_to_none=True)
        with precision_context(s["precision"], latent.device):
            losses = {k: v.float() for k, v in loss_fn(latent).items()}
        # 2. their sum's gradient (each sample's gradient stays independent of the batch) and one Adam step
        losses["total"].sum().backward()
        opt.step()
        if after_step is not None:
            after_step()
        # 3. the history of every term, per sample, kept on the device; the bar reads it every 10 steps only
        for k in terms:
            history[k][step] = losses[k].detach()
        if show and (step % 10 == 0 or step == num_steps - 1):
            bar.set_postfix(loss=f"{history['total'][step].mean().item():.4g}")
        # 4. a snapshot every `snapshot_every` steps, and the caller's callback
        snap = bool(every) and (step + 1) % every == 0
        if callback is not None or snap:
            now = image()
            if snap:
                snapshots.append((step + 1, now.cpu()))
            if callback is not None:
                callback(step, {k: v.detach() for k, v in losses.items()}, now)
    history = {k: v.cpu() for k, v in history.items()}
    elapsed = time.perf_counter() - t0
    # x̂ (and in paper mode G_s's image of the same latent)
    final = image().cpu()
    return _result(inp, final, image(G_source).cpu() if G_source is not None else None, latent.detach(), history,
                   snapshots, config, elapsed, max(num_steps, 1))


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
