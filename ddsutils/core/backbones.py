"""Frozen ImageNet feature extractors (VGG-16, AlexNet, SqueezeNet 1.1, ResNet-18) and LPIPS.

The networks are torchvision's model definitions (``torchvision.models.vgg16(weights=None)`` ...), built
on the ``meta`` device and materialised without torchvision ever downloading anything; weights come
from :func:`ddsutils.weights.resolve` (``weights="imagenet"``), from a file, or from a seeded random
init (``weights="random"``, for tests and for the backbones that have no offline source).

Public facts the layer slicing follows (the code here is written from these facts, not copied):

- torchvision module indices: VGG-16 ``features`` = 13 convs (each followed by a ReLU) and 5 max-pools;
  AlexNet ``features`` = conv/ReLU at 0/1, 3/4, 6/7, 8/9, 10/11, pools at 2, 5, 12; SqueezeNet 1.1
  ``features`` = conv/ReLU at 0/1, pools at 2, 5, 8, Fire modules at 3, 4, 6, 7, 9-12.
- LPIPS ``pretrained_networks`` (richzhang/PerceptualSimilarity): VGG-16 taps relu1_2, relu2_2,
  relu3_3, relu4_3, relu5_3 (slices ending at features 4, 9, 16, 23, 30); AlexNet relu1..relu5 (slices
  ending at 2, 5, 8, 10, 12); SqueezeNet relu1..relu7 (slices ending at 2, 5, 8, 10, 11, 12, 13);
  ResNet relu1 (after bn1), conv2..conv5 (= layer1..layer4).
- DDS' released perceptual model (denabazazian/Dual-Domain-Synthesis): VGG-16 ``features`` cut at
  [2, 4, 14, 21], i.e. relu1_1, relu1_2, relu3_2, relu4_2, fed with images in [-1, 1] (no ImageNet
  normalisation).
- The DDS paper (appendix, Tables 4-7) lists the layer names and their shapes at 256 x 256 input. Its
  VGG-16 Table 4 prints conv1_1, conv1_2, conv2_2, conv3_3 but the printed shapes 256 x 64 x 64 and
  512 x 32 x 32 are those of relu3_2 and relu4_2 (conv2_2 is 128 x 128 x 128 and conv3_3 is
  256 x 64 x 64 at 256 px): the shapes match the released code's ``release`` set, not the names.
  AlexNet's 55/27/13 (Table 5) are the shapes at 224 x 224 input.

Used in: notebooks/00_setup_and_weights.ipynb
"""
from __future__ import annotations

import functools
import os
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import weights as W

__all__ = [
    "BACKBONES",
    "LAYER_SETS",
    "Backbone",
    "build_backbone",
    "layer_names",
    "lpips_model",
    "distance",
    "read_image",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# LPIPS' ScalingLayer constants (inputs in [-1, 1]).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


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


_TAPS: dict[str, dict[str, int]] = {
    "vgg16": _vgg16_taps(),
    "alexnet": {
        "conv1": 0, "relu1": 1, "pool1": 2, "conv2": 3, "relu2": 4, "pool2": 5, "conv3": 6, "relu3": 7,
        "conv4": 8, "relu4": 9, "conv5": 10, "relu5": 11, "pool5": 12,
    },
    # relu<k> follow LPIPS' names: outputs of the ReLU / Fire module that ends each LPIPS slice.
    "squeezenet1_1": {
        "conv1": 0, "relu1": 1, "pool1": 2, "fire2": 3, "fire3": 4, "relu2": 4, "pool3": 5, "fire4": 6,
        "fire5": 7, "relu3": 7, "pool5": 8, "fire6": 9, "relu4": 9, "fire7": 10, "relu5": 10, "fire8": 11,
        "relu6": 11, "fire9": 12, "relu7": 12,
    },
    # body = Sequential(conv1, bn1, relu, maxpool, layer1..layer4); conv<k> = LPIPS' names for layer<k-1>.
    "resnet18": {
        "conv1": 0, "bn1": 1, "relu1": 2, "pool1": 3, "conv2": 4, "layer1": 4, "conv3": 5, "layer2": 5,
        "conv4": 6, "layer3": 6, "conv5": 7, "layer4": 7,
    },
}

#: Named layer sets per backbone. ``paper`` = the names printed in the DDS appendix (Tables 4-7).
LAYER_SETS: dict[str, dict[str, tuple[str, ...]]] = {
    "vgg16": {
        "paper": ("conv1_1", "conv1_2", "conv2_2", "conv3_3"),
        "release": ("relu1_1", "relu1_2", "relu3_2", "relu4_2"),
        "lpips": ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
    },
    "alexnet": {
        "paper": ("relu1", "relu2", "relu3", "relu4", "relu5"),
        "lpips": ("relu1", "relu2", "relu3", "relu4", "relu5"),
    },
    "squeezenet1_1": {
        "paper": ("relu1", "relu2", "relu3", "relu4", "relu5", "relu6", "relu7"),
        "lpips": ("relu1", "relu2", "relu3", "relu4", "relu5", "relu6", "relu7"),
    },
    "resnet18": {
        "paper": ("relu1", "conv2", "conv3", "conv4", "conv5"),
        "lpips": ("relu1", "conv2", "conv3", "conv4", "conv5"),
    },
}
#: Default layer set when ``layers=None``. VGG-16 defaults to ``release`` (the released DDS code, whose
#: shapes are the ones Table 4 prints).
DEFAULT_SET = {"vgg16": "release", "alexnet": "paper", "squeezenet1_1": "paper", "resnet18": "paper"}
#: backbone name -> weights manifest entry.
BACKBONES: dict[str, str] = {
    "vgg16": "vgg16-imagenet",
    "alexnet": "alexnet-imagenet",
    "squeezenet1_1": "squeezenet1_1-imagenet",
    "resnet18": "resnet18-imagenet",
}
_FEATURES_ARCHS = ("vgg16", "alexnet", "squeezenet1_1")
_IGNORED_PREFIXES = {
    "vgg16": ("classifier.",), "alexnet": ("classifier.",), "squeezenet1_1": ("classifier.",), "resnet18": ("fc.",),
}


def layer_names(backbone: str) -> list[str]:
    """All tap names of ``backbone`` in network order (``conv3_3``, ``relu4_2``, ``pool2`` ...)."""
    if backbone not in _TAPS:
        raise ValueError(f"unknown backbone {backbone!r}; known: {sorted(_TAPS)}")
    return sorted(_TAPS[backbone], key=lambda n: (_TAPS[backbone][n], n))


def _parse_layers(backbone: str, layers: str | Sequence[str] | None) -> tuple[str, ...]:
    if layers is None:
        layers = DEFAULT_SET[backbone]
    if isinstance(layers, str):
        sets = LAYER_SETS[backbone]
        names: Sequence[str] = sets[layers] if layers in sets else (layers,)
    else:
        names = list(layers)
    if not names:
        raise ValueError("layers must name at least one layer")
    bad = [n for n in names if n not in _TAPS[backbone]]
    if bad:
        raise ValueError(
            f"unknown {backbone} layer(s) {bad}; layer sets: {sorted(LAYER_SETS[backbone])}; "
            f"layers: {layer_names(backbone)}"
        )
    return tuple(dict.fromkeys(names))


def _make_body(name: str) -> nn.Sequential:
    """Torchvision architecture on the ``meta`` device (no allocation, no download) -> trunk."""
    import torchvision

    with torch.device("meta"):
        model = getattr(torchvision.models, name)(weights=None)
    if name in _FEATURES_ARCHS:
        body = model.features
    else:
        body = nn.Sequential(
            OrderedDict(
                conv1=model.conv1, bn1=model.bn1, relu=model.relu, maxpool=model.maxpool,
                layer1=model.layer1, layer2=model.layer2, layer3=model.layer3, layer4=model.layer4,
            )
        )
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


def _load_into_body(name: str, body: nn.Sequential, sd: Mapping[str, torch.Tensor], source: str) -> list[str]:
    """Strictly load ``sd`` into the trunk; returns the ignored (classifier / fc) keys."""
    ignored = [k for k in sd if k.startswith(_IGNORED_PREFIXES[name])]
    rest = {k: v for k, v in sd.items() if k not in ignored}
    if name in _FEATURES_ARCHS:
        if rest and all(k.startswith("features.") for k in rest):
            rest = {k[len("features."):]: v for k, v in rest.items()}
        elif any(k.startswith("features.") for k in rest):
            odd = sorted(k for k in rest if not k.startswith("features."))[:5]
            raise W.WeightsError(f"{source}: unexpected keys {odd} next to the features.* keys")
    try:
        body.load_state_dict(rest, strict=True)
    except RuntimeError as exc:
        raise W.WeightsError(f"{source} does not fit torchvision {name} (strict load): {exc}") from exc
    return ignored


class Backbone(nn.Module):
    """A frozen torchvision trunk that returns the activations of named layers.

    Args:
        name: ``"vgg16"``, ``"alexnet"``, ``"squeezenet1_1"`` or ``"resnet18"``.
        layers: a layer-set name (``"paper"``, ``"release"`` (VGG-16), ``"lpips"``), one layer name, or
            a list of names (``"conv3_3"``, ``"relu4_2"``, ``"pool2"``, ResNet ``"conv2"`` = ``"layer1"``);
            default :data:`DEFAULT_SET`.
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
        if name not in _TAPS:
            raise ValueError(f"unknown backbone {name!r}; known: {sorted(_TAPS)}")
        if normalize not in ("imagenet", "none", "lpips"):
            raise ValueError(f"normalize must be 'imagenet', 'none' or 'lpips', got {normalize!r}")
        if resize is not None and (not isinstance(resize, int) or resize < 1):
            raise ValueError(f"resize must be a positive int or None, got {resize!r}")
        self.name = name
        self.layers = _parse_layers(name, layers)
        self.normalize = normalize
        self.resize = resize
        self._taps = {n: _TAPS[name][n] for n in self.layers}
        self._last = max(self._taps.values())
        self.body = _make_body(name)
        self.ignored_keys: list[str] = []
        if isinstance(weights, str) and weights == "random":
            _init_random(self.body, seed)
            self.weights_source = f"random (seed {seed})"
        else:
            if isinstance(weights, str) and weights == "imagenet":
                path = W.resolve(BACKBONES[name], fetch=fetch)
            else:
                path = Path(weights)
                if not path.is_file():
                    raise W.WeightsUnavailableError(f"{name} weights file not found: {path}")
            self.ignored_keys = _load_into_body(name, self.body, _load_state_dict_file(path), str(path))
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
    trunk_sd = _load_state_dict_file(W.resolve(BACKBONES[_LPIPS_TRUNK[net]]))
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
        raise ValueError(f"expected two [N, 3, H, W] batches of equal shape, got {tuple(img0.shape)} and {tuple(img1.shape)}")
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
