"""Perceptual backbones for the DDS losses, in a registry: VGG-16, AlexNet, SqueezeNet 1.1, ResNet-18, LPIPS.

:func:`register_backbone` adds a backbone with one call (name, builder, named layer sets, the manifest entries of
its weights); :mod:`ddsutils.core.dds` and the experiments read the registry (:func:`names`, :func:`get_backbone`,
:func:`resolve_weights`). A builder returns a frozen module ``img [N, 3, H, W] in [-1, 1] -> {layer: [N, C, h, w]}``.
Built-ins: ``vgg16`` (the paper's), ``alexnet``, ``squeezenet1_1``, ``resnet18`` (appendix A, Tables 5–7),
``lpips-alex`` / ``lpips-vgg`` (:class:`LpipsFeatures`) and ``generator`` (appendix D: no network, DDS takes
the generators' own StyledConv activations).

The torchvision trunks (:class:`Backbone`) are torchvision's model definitions built on the ``meta`` device and
materialised without any download; weights come from :func:`ddsutils.weights.resolve` (``weights="imagenet"``),
from a file, or from a seeded random init (``weights="random"``, tests). Their layer names (``taps``) follow
torchvision's module indices: VGG-16 ``features`` = 13 conv/ReLU pairs and 5 pools; AlexNet conv/ReLU at 0/1, 3/4,
6/7, 8/9, 10/11, pools at 2, 5, 12; SqueezeNet 1.1 conv/ReLU at 0/1, pools at 2, 5, 8, Fire modules at 3, 4,
6, 7, 9-12 (``relu<k>``: LPIPS' slice ends); ResNet ``relu1`` after bn1, ``conv2..conv5`` = layer1..layer4.

Layer sets: ``paper`` = the names the DDS appendix prints (Tables 4-7); ``release`` = the released DDS code's
VGG-16 relu1_1, relu1_2, relu3_2, relu4_2 (fed [-1, 1], no ImageNet normalisation); ``lpips`` = LPIPS' taps.
Table 4 prints conv1_1, conv1_2, conv2_2, conv3_3 with the shapes of the ``release`` layers (at 256 px conv2_2
is 128 x 128 x 128), so VGG-16 defaults to ``release``. AlexNet's Table 5 shapes are those at 224 px input.

:func:`lpips_model` / :func:`distance` give the official ``lpips`` metric, built download-free.

Used in: notebooks/00_setup_and_weights.ipynb
"""
from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import cli
from . import weights as W

__all__ = [
    "BackboneSpec",
    "register_backbone",
    "unregister_backbone",
    "get_backbone",
    "names",
    "resolve_weights",
    "Backbone",
    "build_backbone",
    "layer_names",
    "LpipsFeatures",
    "lpips_model",
    "distance",
    "read_image",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# LPIPS' ScalingLayer constants (inputs in [-1, 1]).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


# ----------------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class BackboneSpec:
    """One registered backbone (made by :func:`register_backbone`; the fields are its arguments).

    Attributes:
        name: the name :func:`ddsutils.core.dds.optimise` takes as ``backbone=``.
        build: ``build(*, layers, weights, normalize, resize, device) -> nn.Module`` returning
            ``{layer: [N, C, h, w]}`` for ``img [N, 3, H, W]`` in [-1, 1]; ``None`` for the generators' own features.
        layers: named layer sets (``{"paper": ("conv1_1", ...)}``); default_layers: the set used for ``layers=None``.
        weights: manifest entries its pretrained weights need (resolved before any work).
        weights_option: whether ``backbone_weights`` (``"imagenet"``, ``"random"`` or a state-dict file) picks its
            weights; ``False``: the manifest weights are always used.
        taps: torchvision trunks only: layer name -> index in the trunk's ``nn.Sequential``.
        trunk: torchvision trunks only: ``"features"`` (``model.features``) or ``model -> nn.Sequential``.
        ignore_keys: torchvision trunks only: state-dict key prefixes to skip when loading (the classifier).
        description: one line for listings.
    """

    name: str
    build: Callable[..., nn.Module] | None
    layers: Mapping[str, tuple[str, ...]]
    default_layers: str | None
    weights: tuple[str, ...]
    weights_option: bool
    taps: Mapping[str, int]
    trunk: str | Callable[[nn.Module], nn.Sequential] | None
    ignore_keys: tuple[str, ...]
    description: str

    @property
    def uses_generator_features(self) -> bool:
        """True for ``generator``: no network; DDS compares the generators' own activations (paper mode, z*)."""
        return self.build is None

    def make(self, *, layers: str | Sequence[str] | None, weights: str | os.PathLike[str], normalize: str,
             resize: int | None, device: str | torch.device) -> nn.Module | None:
        """The frozen feature extractor (``None`` for the generators' own features)."""
        if self.build is None:
            return None
        return self.build(layers=layers, weights=weights, normalize=normalize, resize=resize, device=device)


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(name: str, *, build: Callable[..., nn.Module] | None,
                      layers: Mapping[str, Sequence[str]] | None = None, default_layers: str | None = None,
                      weights: str | Sequence[str] = (), weights_option: bool = True,
                      taps: Mapping[str, int] | None = None,
                      trunk: str | Callable[[nn.Module], nn.Sequential] | None = None,
                      ignore_keys: Sequence[str] = (), description: str = "", replace: bool = False) -> BackboneSpec:
    """Add a perceptual backbone under ``name``: one call, and DDS, its checks and the experiments accept it.

    Example:
        >>> register_backbone("tiny", build=lambda **kw: TinyNet(), layers={"paper": ("a", "b")})  # doctest: +SKIP
        >>> dds.optimise(G_s, G_t, z_star=z, y_s=y_s, y_t=y_t, backbone="tiny")                     # doctest: +SKIP

    Args:
        name: the ``backbone=`` name.
        build: called as ``build(layers=..., weights=..., normalize=..., resize=..., device=...)`` (a builder may
            ignore what it does not use: ``lambda **kw: net``); returns a module mapping ``[N, 3, H, W]`` in
            [-1, 1] to ``{layer: [N, C, h, w]}`` (or a list). ``None``: the generators' own features.
        layers, default_layers, weights, weights_option, taps, trunk, ignore_keys, description: see
            :class:`BackboneSpec` (``weights`` may be one manifest name). A torchvision architecture is
            registered under its ``torchvision.models`` name with ``build=functools.partial(Backbone, name)``,
            ``taps`` and ``trunk``.
        replace: allow replacing a registered backbone.

    Returns:
        The :class:`BackboneSpec`.

    Raises:
        ValueError: an empty or taken name, a ``default_layers`` that is not one of ``layers``, an empty layer
            set, or a layer set naming a layer missing from ``taps``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a backbone name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"backbone {name!r} is already registered; pass replace=True to replace it")
    if build is not None and not callable(build):
        raise ValueError(f"build must be callable (or None for the generators' own features), got {build!r}")
    sets = {k: tuple(v) for k, v in (layers or {}).items()}
    if default_layers is not None and default_layers not in sets:
        raise ValueError(f"default_layers {default_layers!r} is not one of the layer sets {sorted(sets)}")
    for set_name, members in sets.items():
        missing = [m for m in members if taps is not None and m not in taps]
        if not members or missing:
            raise ValueError(f"{name}: layer set {set_name!r} is empty or names unknown layers {missing}")
    spec = BackboneSpec(name=name, build=build, layers=MappingProxyType(sets), default_layers=default_layers,
                        weights=(weights,) if isinstance(weights, str) else tuple(weights),
                        weights_option=bool(weights_option), taps=MappingProxyType(dict(taps or {})), trunk=trunk,
                        ignore_keys=tuple(ignore_keys), description=description)
    _REGISTRY[name] = spec
    return spec


def unregister_backbone(name: str) -> None:
    """Remove a registered backbone (tests); a ``UserError`` listing the registered names for an unknown one."""
    _REGISTRY.pop(get_backbone(name).name)


def names() -> tuple[str, ...]:
    """The registered backbone names, in registration order (the built-ins first)."""
    return tuple(_REGISTRY)


def get_backbone(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` registered as ``name``.

    Raises:
        ddsutils.cli.UserError (a ``ValueError``): ``backbone: NAME: unknown backbone (did you mean ...?); choose
            one of: <the registered names>``.
    """
    return _REGISTRY[cli.choice(name, "backbone", _REGISTRY, what="backbone")]


def resolve_weights(name: str, weights: Any = "imagenet", *, fetch: bool = True) -> list[Path]:
    """Resolve (and download, unless offline) the weight files backbone ``name`` will load; ``[]`` when none.

    Args:
        name: a registered backbone. weights: its ``backbone_weights`` (only ``"imagenet"`` needs the manifest
            files, unless the backbone has no weights option). fetch: allow downloads.

    Raises:
        ddsutils.weights.WeightsUnavailableError (a UserError): a file is missing and cannot be fetched.
    """
    spec = get_backbone(name)
    if spec.weights_option and weights != "imagenet":
        return []
    return [W.resolve(entry, fetch=fetch) for entry in spec.weights]


def __getattr__(attr: str) -> Any:
    """Earlier names, now views of the registry's torchvision trunks: ``BACKBONES`` (name -> manifest entry),
    ``LAYER_SETS`` (name -> layer sets) and ``DEFAULT_SET`` (name -> default layer set)."""
    trunks = [s for s in _REGISTRY.values() if s.taps]
    if attr == "BACKBONES":
        return {s.name: s.weights[0] for s in trunks}
    if attr == "LAYER_SETS":
        return {s.name: dict(s.layers) for s in trunks}
    if attr == "DEFAULT_SET":
        return {s.name: s.default_layers for s in trunks}
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


# ----------------------------------------------------------------------------------------------------
# torchvision trunks
# ----------------------------------------------------------------------------------------------------
def _trunk_spec(name: str) -> BackboneSpec:
    spec = get_backbone(name)
    if not spec.taps:
        raise ValueError(f"backbone {name!r} is not a torchvision trunk (no taps); trunks: "
                         f"{[s.name for s in _REGISTRY.values() if s.taps]}")
    return spec


def layer_names(backbone: str) -> list[str]:
    """All tap names of a torchvision trunk in network order (``conv3_3``, ``relu4_2``, ``pool2`` ...)."""
    taps = _trunk_spec(backbone).taps
    return sorted(taps, key=lambda n: (taps[n], n))


def _parse_layers(spec: BackboneSpec, layers: str | Sequence[str] | None) -> tuple[str, ...]:
    if layers is None:
        layers = spec.default_layers
    if isinstance(layers, str):
        names_: Sequence[str] = spec.layers[layers] if layers in spec.layers else (layers,)
    else:
        names_ = list(layers)
    if not names_:
        raise ValueError("layers must name at least one layer")
    bad = [n for n in names_ if n not in spec.taps]
    if bad:
        raise ValueError(
            f"unknown {spec.name} layer(s) {bad}; layer sets: {sorted(spec.layers)}; "
            f"layers: {layer_names(spec.name)}"
        )
    return tuple(dict.fromkeys(names_))


def _make_body(spec: BackboneSpec) -> nn.Sequential:
    """Torchvision architecture on the ``meta`` device (no allocation, no download) -> trunk."""
    import torchvision

    with torch.device("meta"):
        model = getattr(torchvision.models, spec.name)(weights=None)
    body = model.features if spec.trunk == "features" else spec.trunk(model)
    body = body.to_empty(device="cpu")
    for m in body.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False  # keep the pre-activation (conv) outputs intact
    return body


@torch.no_grad()
def _init_random(body: nn.Module, seed: int) -> None:
    """Seeded He-normal (fan-out) init of convs, zero biases, identity batch norms (global RNG untouched)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    for m in body.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
            m.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=g)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()


def _load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(sd, Mapping):
        raise W.WeightsError(f"{path} does not hold a state dict (got {type(sd).__name__})")
    return dict(sd)


def _load_into_body(spec: BackboneSpec, body: nn.Sequential, sd: Mapping[str, torch.Tensor], source: str) -> list[str]:
    """Strictly load ``sd`` into the trunk; returns the ignored (classifier / fc) keys."""
    ignored = [k for k in sd if spec.ignore_keys and k.startswith(spec.ignore_keys)]
    rest = {k: v for k, v in sd.items() if k not in ignored}
    if spec.trunk == "features":
        if rest and all(k.startswith("features.") for k in rest):
            rest = {k[len("features."):]: v for k, v in rest.items()}
        elif any(k.startswith("features.") for k in rest):
            odd = sorted(k for k in rest if not k.startswith("features."))[:5]
            raise W.WeightsError(f"{source}: unexpected keys {odd} next to the features.* keys")
    try:
        body.load_state_dict(rest, strict=True)
    except RuntimeError as exc:
        raise W.WeightsError(f"{source} does not fit torchvision {spec.name} (strict load): {exc}") from exc
    return ignored


class Backbone(nn.Module):
    """A frozen torchvision trunk that returns the activations of named layers.

    Args:
        name: a registered torchvision trunk (one with ``taps``): ``"vgg16"``, ``"alexnet"``,
            ``"squeezenet1_1"``, ``"resnet18"``.
        layers: a layer-set name (``"paper"``, ``"release"`` (VGG-16), ``"lpips"``), one layer name, or
            a list of names (``"conv3_3"``, ``"relu4_2"``, ``"pool2"``, ResNet ``"conv2"`` = ``"layer1"``);
            default: the backbone's ``default_layers``.
        weights: ``"imagenet"`` (via :func:`ddsutils.weights.resolve`; for VGG-16 / AlexNet only the
            ``features.*`` keys exist and are loaded strictly into ``model.features``; classifier keys of
            an official file are ignored), ``"random"`` (seeded init, for tests and offline SqueezeNet /
            ResNet-18), or a path to a state dict.
        normalize: ``"imagenet"`` maps [-1, 1] to [0, 1] then applies the ImageNet mean / std;
            ``"none"`` feeds [-1, 1] unchanged (as the released DDS code does); ``"lpips"`` applies
            LPIPS' shift / scale to [-1, 1].
        resize: if set, bilinear resize (``align_corners=False``) to ``resize x resize`` before the trunk.
        device: where the module lives.
        seed: seed of the ``"random"`` init.
        fetch: allow :func:`ddsutils.weights.resolve` to download missing ImageNet weights.

    Raises:
        ddsutils.weights.WeightsUnavailableError: ``weights="imagenet"`` but the file is missing and
            cannot be downloaded (offline / no route); the message says how to fix it.

    Used in: notebooks/00_setup_and_weights.ipynb
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        name: str,
        *,
        layers: str | Sequence[str] | None = None,
        weights: str | os.PathLike[str] = "imagenet",
        normalize: str = "imagenet",
        resize: int | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        fetch: bool = True,
    ) -> None:
        super().__init__()
        spec = _trunk_spec(name)
        if normalize not in ("imagenet", "none", "lpips"):
            raise ValueError(f"normalize must be 'imagenet', 'none' or 'lpips', got {normalize!r}")
        if resize is not None and (not isinstance(resize, int) or resize < 1):
            raise ValueError(f"resize must be a positive int or None, got {resize!r}")
        self.name = name
        self.layers = _parse_layers(spec, layers)
        self.normalize = normalize
        self.resize = resize
        self._taps = {n: spec.taps[n] for n in self.layers}
        self._last = max(self._taps.values())
        self.body = _make_body(spec)
        self.ignored_keys: list[str] = []
        if isinstance(weights, str) and weights == "random":
            _init_random(self.body, seed)
            self.weights_source = f"random (seed {seed})"
        else:
            if isinstance(weights, str) and weights == "imagenet":
                path = W.resolve(spec.weights[0], fetch=fetch)
            else:
                path = Path(weights)
                if not path.is_file():
                    raise W.WeightsUnavailableError(f"{name} weights file not found: {path}")
            self.ignored_keys = _load_into_body(spec, self.body, _load_state_dict_file(path), str(path))
            self.weights_source = str(path)
        if normalize == "imagenet":
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        elif normalize == "lpips":
            mean, std = LPIPS_SHIFT, LPIPS_SCALE
        else:
            mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.to(device)
        self.eval()

    def train(self, mode: bool = True) -> Backbone:
        """Always stays in eval mode (frozen batch-norm statistics); ``mode`` is ignored."""
        return super().train(False)

    def preprocess(self, img: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] in [-1, 1] -> the trunk's input (normalised, optionally resized), float32."""
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"expected an image batch [N, 3, H, W], got shape {tuple(img.shape)}")
        x = img.float()
        if self.normalize == "imagenet":
            x = ((x + 1.0) * 0.5 - self.mean) / self.std
        elif self.normalize == "lpips":
            x = (x - self.mean) / self.std
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        return x

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activations of the requested layers.

        Args:
            img: ``[N, 3, H, W]`` float in [-1, 1] (gradients flow to it; the weights are frozen).

        Returns:
            ``{layer name: Tensor[N, C, h, w]}`` in the order of :attr:`layers`; the trunk stops after
            the deepest requested layer.
        """
        x = self.preprocess(img)
        by_index: dict[int, torch.Tensor] = {}
        wanted = set(self._taps.values())
        for i, module in enumerate(self.body):
            x = module(x)
            if i in wanted:
                by_index[i] = x
            if i >= self._last:
                break
        return {n: by_index[i] for n, i in self._taps.items()}

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, layers={list(self.layers)}, normalize={self.normalize!r}, "
            f"resize={self.resize}, weights={self.weights_source!r}"
        )


def build_backbone(
    name: str,
    *,
    layers: str | Sequence[str] | None = None,
    weights: str | os.PathLike[str] = "imagenet",
    normalize: str = "imagenet",
    resize: int | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    fetch: bool = True,
) -> Backbone:
    """Build a frozen :class:`Backbone` (see its docstring for the arguments).

    Example:
        >>> net = build_backbone("vgg16", layers="release", weights="random")
        >>> {k: tuple(v.shape) for k, v in net(torch.zeros(1, 3, 256, 256)).items()}["relu4_2"]
        (1, 512, 32, 32)

    Used in: notebooks/00_setup_and_weights.ipynb
    """
    return Backbone(
        name, layers=layers, weights=weights, normalize=normalize, resize=resize, device=device, seed=seed,
        fetch=fetch,
    )


# ----------------------------------------------------------------------------------------------------
# LPIPS (the official lpips package, made download-free)
# ----------------------------------------------------------------------------------------------------
_LPIPS_TRUNK = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}


def lpips_model(net: str = "alex", *, version: str = "0.1", device: str | torch.device = "cpu") -> nn.Module:
    """The official ``lpips.LPIPS`` metric, built without any download.

    The trunk is created with ``pnet_rand=True`` (torchvision ``weights=None``), then the ImageNet
    conv weights from :func:`ddsutils.weights.resolve` are loaded strictly into its ``net.slice<k>.<idx>``
    modules, and the linear heads are re-loaded strictly from the sha256-checked files of the ``lpips``
    wheel (``lpips-<net>-v<version>`` manifest entries).

    Args:
        net: ``"alex"``, ``"vgg"`` or ``"squeeze"`` (squeeze needs SqueezeNet weights, no offline source).
        version: ``"0.1"`` (default, the published metric) or ``"0.0"``.
        device: where the module lives.

    Returns:
        The frozen, eval-mode ``lpips.LPIPS`` module; ``model(x, y)`` with ``x, y`` ``[N, 3, H, W]`` in
        [-1, 1] gives ``[N, 1, 1, 1]``.

    Raises:
        ddsutils.weights.WeightsUnavailableError: trunk weights missing and not downloadable.

    Used in: notebooks/00_setup_and_weights.ipynb
    """
    import lpips

    if net not in _LPIPS_TRUNK:
        raise ValueError(f"net must be one of {sorted(_LPIPS_TRUNK)}, got {net!r}")
    if version not in ("0.1", "0.0"):
        raise ValueError(f"version must be '0.1' or '0.0', got {version!r}")
    trunk_sd = _load_state_dict_file(W.resolve(get_backbone(_LPIPS_TRUNK[net]).weights[0]))
    head_path = W.resolve(f"lpips-{net}-v{version}")
    with warnings.catch_warnings(), torch.device("meta"):
        # torchvision's deprecation notes about lpips' `pretrained=False` call.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torchvision\..*")
        # Built on the meta device (no random init of the unused classifier); every tensor is set below.
        model = lpips.LPIPS(pretrained=False, net=net, version=version, pnet_rand=True, verbose=False)
    model = model.to_empty(device="cpu")
    covered: set[str] = set()
    mapped: dict[str, torch.Tensor] = {}
    for key in model.net.state_dict():
        _slice, idx, param = key.split(".")  # "slice2.3.weight" -> features.3.weight
        src = f"features.{idx}.{param}"
        if src not in trunk_sd:
            raise W.WeightsError(f"LPIPS-{net}: trunk weights lack {src!r} (needed for net.{key})")
        mapped[key] = trunk_sd[src]
    model.net.load_state_dict(mapped, strict=True)
    covered |= {f"net.{k}" for k in mapped}
    heads = _load_state_dict_file(head_path)
    model.lins.load_state_dict({k[len("lin"):]: v for k, v in heads.items()}, strict=True)
    covered |= {f"lins.{k[len('lin'):]}" for k in heads} | {k for k in heads}
    scaling = lpips.lpips.ScalingLayer()  # LPIPS' own shift / scale constants, built on the CPU
    model.scaling_layer.load_state_dict(scaling.state_dict(), strict=True)
    covered |= {f"scaling_layer.{k}" for k in scaling.state_dict()}
    unset = sorted(set(model.state_dict()) - covered)
    if unset:
        raise W.WeightsError(f"LPIPS-{net}: tensors left uninitialised: {unset}")
    model.requires_grad_(False)
    return model.to(device).eval()


class LpipsFeatures(nn.Module):
    """LPIPS as a feature extractor, so that masked losses can use it like any backbone.

    Layer ``k`` returns ``sqrt(w_k) * unit_normalise(trunk_k(scale(img)))``: the squared distance of two such
    features summed over channels is exactly LPIPS' per-pixel layer term ``lin_k((f0 - f1)^2)`` (the heads'
    weights are non-negative), so ``sum_k mean_hw ||F_k(x) - F_k(y)||^2`` is the LPIPS distance.

    Input ``img`` ``[N, 3, H, W]`` in [-1, 1]; returns ``{"lpips1": [N, C1, h1, w1], ...}``.

    Used in: notebooks/04_ablations.ipynb (Table 2 backbone ablation).
    """

    def __init__(self, net: str = "alex", *, version: str = "0.1", device: str | torch.device = "cpu"):
        super().__init__()
        self.model = lpips_model(net, version=version, device=device)
        self.net_name = net
        w = [lin.model[-1].weight.detach().clamp_min(0).sqrt() for lin in self.model.lins]
        for k, wk in enumerate(w):
            self.register_buffer(f"sqrt_w{k}", wk.reshape(1, -1, 1, 1))
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> LpipsFeatures:
        return super().train(False)

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.model.scaling_layer(img) if self.model.version == "0.1" else img
        outs = self.model.net(x)
        feats = {}
        for k, f in enumerate(outs):
            f = f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)
            feats[f"lpips{k + 1}"] = f * getattr(self, f"sqrt_w{k}")
        return feats


@functools.lru_cache(maxsize=8)
def _cached_lpips(net: str, version: str, device: str) -> nn.Module:
    return lpips_model(net, version=version, device=device)


def distance(img0: torch.Tensor, img1: torch.Tensor, *, net: str = "alex", version: str = "0.1") -> torch.Tensor:
    """LPIPS distance between two image batches (model cached per net / version / device).

    Args:
        img0: ``[N, 3, H, W]`` float in [-1, 1].
        img1: same shape as ``img0``.
        net: ``"alex"`` (default, the published metric), ``"vgg"`` or ``"squeeze"``.
        version: LPIPS version, ``"0.1"`` by default.

    Returns:
        ``[N]`` float32 distances (differentiable w.r.t. the inputs).
    """
    if img0.shape != img1.shape or img0.ndim != 4 or img0.shape[1] != 3:
        raise ValueError(f"expected two [N, 3, H, W] batches of equal shape, "
                         f"got {tuple(img0.shape)} and {tuple(img1.shape)}")
    model = _cached_lpips(net, version, str(img0.device))
    return model(img0.float(), img1.float()).reshape(img0.shape[0])


def read_image(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an RGB image as LPIPS does (``uint8 / 127.5 - 1``).

    Args:
        path: PNG / JPEG file.

    Returns:
        ``[1, 3, H, W]`` float32 in [-1, 1].
    """
    from PIL import Image

    with Image.open(path) as im:
        arr: Any = np.asarray(im.convert("RGB"), dtype=np.uint8)
    x = arr.astype(np.float64) / 127.5 - 1.0
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])).float()


# ----------------------------------------------------------------------------------------------------
# The built-in backbones
# ----------------------------------------------------------------------------------------------------
def _vgg16_taps() -> dict[str, int]:
    taps: dict[str, int] = {}
    idx = 0
    for block, n_convs in enumerate((2, 2, 3, 3, 3), start=1):
        for k in range(1, n_convs + 1):
            taps[f"conv{block}_{k}"] = idx
            taps[f"relu{block}_{k}"] = idx + 1
            idx += 2
        taps[f"pool{block}"] = idx
        idx += 1
    return taps


def _resnet_trunk(model: nn.Module) -> nn.Sequential:
    """ResNet without its head: conv1, bn1, relu, maxpool, layer1..layer4."""
    return nn.Sequential(OrderedDict(conv1=model.conv1, bn1=model.bn1, relu=model.relu, maxpool=model.maxpool,
                                     layer1=model.layer1, layer2=model.layer2, layer3=model.layer3,
                                     layer4=model.layer4))


def _lpips_features(net: str) -> Callable[..., nn.Module]:
    def build(*, device: str | torch.device, **_: Any) -> nn.Module:  # LPIPS' own layers, weights and scaling
        return LpipsFeatures(net, device=device)
    return build


_SQUEEZE_RELUS = ("relu1", "relu2", "relu3", "relu4", "relu5", "relu6", "relu7")
register_backbone(
    "vgg16", build=functools.partial(Backbone, "vgg16"), weights="vgg16-imagenet", taps=_vgg16_taps(),
    trunk="features", ignore_keys=("classifier.",), default_layers="release",
    layers={"paper": ("conv1_1", "conv1_2", "conv2_2", "conv3_3"),
            "release": ("relu1_1", "relu1_2", "relu3_2", "relu4_2"),
            "lpips": ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")},
    description="VGG-16 (the paper's perceptual network, Table 4)")
register_backbone(
    "alexnet", build=functools.partial(Backbone, "alexnet"), weights="alexnet-imagenet", trunk="features",
    taps={"conv1": 0, "relu1": 1, "pool1": 2, "conv2": 3, "relu2": 4, "pool2": 5, "conv3": 6, "relu3": 7,
          "conv4": 8, "relu4": 9, "conv5": 10, "relu5": 11, "pool5": 12},
    ignore_keys=("classifier.",), default_layers="paper",
    layers={"paper": ("relu1", "relu2", "relu3", "relu4", "relu5"),
            "lpips": ("relu1", "relu2", "relu3", "relu4", "relu5")},
    description="AlexNet (Table 5)")
register_backbone(
    "squeezenet1_1", build=functools.partial(Backbone, "squeezenet1_1"), weights="squeezenet1_1-imagenet",
    trunk="features", ignore_keys=("classifier.",), default_layers="paper",
    taps={"conv1": 0, "relu1": 1, "pool1": 2, "fire2": 3, "fire3": 4, "relu2": 4, "pool3": 5, "fire4": 6,
          "fire5": 7, "relu3": 7, "pool5": 8, "fire6": 9, "relu4": 9, "fire7": 10, "relu5": 10, "fire8": 11,
          "relu6": 11, "fire9": 12, "relu7": 12},
    layers={"paper": _SQUEEZE_RELUS, "lpips": _SQUEEZE_RELUS},
    description="SqueezeNet 1.1 (Table 6)")
register_backbone(
    "resnet18", build=functools.partial(Backbone, "resnet18"), weights="resnet18-imagenet", trunk=_resnet_trunk,
    ignore_keys=("fc.",), default_layers="paper",
    taps={"conv1": 0, "bn1": 1, "relu1": 2, "pool1": 3, "conv2": 4, "layer1": 4, "conv3": 5, "layer2": 5,
          "conv4": 6, "layer3": 6, "conv5": 7, "layer4": 7},
    layers={"paper": ("relu1", "conv2", "conv3", "conv4", "conv5"),
            "lpips": ("relu1", "conv2", "conv3", "conv4", "conv5")},
    description="ResNet-18 (Table 7)")
for _net, _trunk in (("alex", "alexnet"), ("vgg", "vgg16")):
    register_backbone(f"lpips-{_net}", build=_lpips_features(_net),
                      weights=(f"{_trunk}-imagenet", f"lpips-{_net}-v0.1"), weights_option=False,
                      description=f"LPIPS-{_net} features (layers, weights and scaling fixed)")
register_backbone("generator", build=None, weights_option=False,
                  description="the generators' own StyledConv activations (appendix D; paper mode with z*)")
