"""StyleGAN2 residual discriminator (rosinality layout) and the few-shot patch heads, pure PyTorch.

Parameter names and shapes follow rosinality/stylegan2-pytorch's ``Discriminator`` (so ``Discriminator(256)``
has 28,864,129 parameters and keys ``convs.0.0.weight``, ``convs.k.conv1.0.weight``, ``convs.k.conv2.1.weight``,
``convs.k.skip.1.weight``, ``final_conv.0.weight``, ``final_linear.{0,1}.*``), written from the architecture
description of Karras et al. 2020 and that repository's published layout. The few-shot patch-level
discriminator of Ojha et al. 2021 ("Few-shot Image Generation via Cross-domain Correspondence") is
:meth:`Discriminator.patch_features` plus the :class:`Extra` heads (``new_conv.{k}.0.weight [1, C, 3, 3]``,
``new_conv.{k}.1.bias [1]``).

Shapes: images ``[N, 3, size, size]`` float32 in [-1, 1]; logits ``[N, 1]``; patch logits ``[N, 1, r, r]``.

Used in: notebooks/08_fewshot_adaptation.ipynb.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.stylegan2 import Blur, EqualLinear, FusedLeakyReLU, default_channels

__all__ = ["EqualConv2d", "ConvLayer", "ResBlock", "Discriminator", "Extra"]


class EqualConv2d(nn.Module):
    """Convolution with equalised learning rate: ``weight [out, in, k, k]`` scaled by 1/sqrt(in k^2) at run time.

    ``bias [out]`` exists only when ``bias=True`` (rosinality drops it when an activation with its own bias
    follows).
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class ConvLayer(nn.Sequential):
    """``[Blur] -> EqualConv2d -> [FusedLeakyReLU]`` as an ``nn.Sequential`` (indices give the key names).

    With ``downsample`` a FIR blur precedes a stride-2 convolution without padding (output ``H/2``);
    otherwise the convolution keeps the size (padding ``k // 2``). With ``activate`` the convolution has no
    bias and the activation carries a per-channel ``bias`` (leaky ReLU 0.2, gain sqrt(2)).
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, *, downsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), bias: bool = True, activate: bool = True):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            if not bias:
                raise ValueError("activate=True without bias is not used by this layout")
            layers.append(FusedLeakyReLU(out_channel))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual down-sampling block: ``conv1`` (3x3, same size) -> ``conv2`` (3x3, /2), plus a 1x1 /2 skip.

    Output ``(conv2(conv1(x)) + skip(x)) / sqrt(2)``, ``[N, out, H/2, W/2]``.
    """

    def __init__(self, in_channel: int, out_channel: int, *, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, blur_kernel=blur_kernel,
                              activate=False, bias=False)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(out, conv1 output [N, in, H, W], conv2 output [N, out, H/2, W/2])``."""
        h1 = self.conv1(x)
        h2 = self.conv2(h1)
        return (h2 + self.skip(x)) / math.sqrt(2.0), h1, h2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with minibatch standard deviation (rosinality layout).

    Layout: ``convs.0`` = 1x1 ``ConvLayer(3 -> C[size])`` ("fromRGB"), ``convs.1 .. convs.{log2(size)-2}`` =
    :class:`ResBlock` halving the resolution down to 4x4 (channels ``C[r] -> C[r/2]``), then minibatch stddev
    (one extra channel), ``final_conv`` (3x3, ``C[4]+1 -> C[4]``) and ``final_linear`` (EqualLinear
    ``16 C[4] -> C[4]`` with leaky ReLU, then ``C[4] -> 1``).

    Args:
        size: input resolution (power of two, >= 8).
        channel_multiplier: rosinality's width knob for resolutions >= 64.
        channel_max: caps every resolution's channels (capacity knob for tiny models).
        channels: explicit ``{resolution: channels}`` for 4..size (overrides the two knobs above).
        blur_kernel: FIR taps of the down-sampling blur.
        stddev_group: minibatch-stddev group size (4). When the batch is not divisible by it the largest
            divisor of the batch below it is used (rosinality would fail with a reshape error).
        patch_res: resolutions whose ResBlock intermediates feed the few-shot patch heads, default
            ``(size // 8, size // 16)``; at 256 px this selects exactly the four 32x32 / 16x16 features of
            few-shot-gan-adaptation, at 64 px the three 8x8 / 4x4 ones.

    Example::

        D = Discriminator(64, channels={4: 64, 8: 64, 16: 64, 32: 32, 64: 32})
        logits = D(img)                           # [N, 1]
        feats = D.patch_features(img)             # list of [N, C_k, r_k, r_k]
        patch = Extra(D.patch_channels)(feats, 0) # [N, 1, 8, 8] patch logits

    Used in: notebooks/08_fewshot_adaptation.ipynb.
    """

    def __init__(self, size: int, channel_multiplier: int = 2, *, channel_max: int = 512,
                 channels: Mapping[int | str, int] | None = None, blur_kernel: Sequence[float] = (1, 3, 3, 1),
                 stddev_group: int = 4, patch_res: Sequence[int] | None = None):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.size = size
        self.log_size = int(math.log2(size))
        chans = {int(k): int(v) for k, v in channels.items()} if channels is not None else default_channels(
            channel_multiplier=channel_multiplier, channel_max=channel_max)
        missing = [2 ** i for i in range(2, self.log_size + 1) if 2 ** i not in chans]
        if missing:
            raise ValueError(f"channels is missing resolutions {missing}")
        self.channels = {2 ** i: chans[2 ** i] for i in range(2, self.log_size + 1)}
        self.stddev_group, self.stddev_feat = int(stddev_group), 1
        self.patch_res = tuple(int(r) for r in (patch_res if patch_res is not None
                                                else (max(size // 8, 4), max(size // 16, 4))))
        self.config: dict[str, Any] = {
            "size": size, "channels": {str(r): c for r, c in self.channels.items()},
            "blur_kernel": list(blur_kernel), "stddev_group": self.stddev_group,
            "patch_res": list(self.patch_res),
        }

        convs: list[nn.Module] = [ConvLayer(3, self.channels[size], 1)]
        in_ch = self.channels[size]
        # intermediate features in forward order: (block index, "conv1"/"conv2", resolution, channels)
        self.feature_info: list[tuple[int, str, int, int]] = []
        for k, i in enumerate(range(self.log_size, 2, -1), start=1):
            out_ch = self.channels[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch, blur_kernel=blur_kernel))
            self.feature_info.append((k, "conv1", 2 ** i, in_ch))
            self.feature_info.append((k, "conv2", 2 ** (i - 1), out_ch))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.final_conv = ConvLayer(in_ch + 1, self.channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(self.channels[4] * 4 * 4, self.channels[4], activate=True),
            EqualLinear(self.channels[4], 1),
        )
        self.patch_indices = [j for j, (_, _, r, _) in enumerate(self.feature_info) if r in self.patch_res]
        if not self.patch_indices:
            raise ValueError(f"no ResBlock feature at patch_res {self.patch_res} (size {size})")

    @property
    def patch_channels(self) -> list[int]:
        """Channels of the features returned by :meth:`patch_features` (for :class:`Extra`)."""
        return [self.feature_info[j][3] for j in self.patch_indices]

    @property
    def patch_shapes(self) -> list[int]:
        """Spatial side of each patch feature."""
        return [self.feature_info[j][2] for j in self.patch_indices]

    def _minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = min(n, self.stddev_group)
        while n % group:
            group -= 1
        f = self.stddev_feat
        y = x.reshape(group, n // group, f, c // f, h, w)
        y = torch.sqrt(y.var(dim=0, unbiased=False) + 1e-8)      # [n/g, f, c/f, h, w]
        y = y.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)       # [n/g, f, 1, 1]
        y = y.repeat(group, 1, h, w)                              # [n, f, h, w]
        return torch.cat([x, y], dim=1)

    def forward(self, img: torch.Tensor, *, return_features: bool = False):
        """Image-level logits.

        Args:
            img: ``[N, 3, size, size]`` float in [-1, 1].
            return_features: also return every ResBlock's ``conv1`` and ``conv2`` outputs (post-activation,
                before the skip sum), in forward order (see ``feature_info``).

        Returns:
            ``logits [N, 1]`` or ``(logits, features)``.
        """
        if img.ndim != 4 or img.shape[1] != 3 or img.shape[2] != self.size or img.shape[3] != self.size:
            raise ValueError(f"expected images [N, 3, {self.size}, {self.size}], got {list(img.shape)}")
        x = self.convs[0](img)
        feats: list[torch.Tensor] = []
        for block in list(self.convs)[1:]:
            if return_features:
                x, h1, h2 = block.forward_features(x)
                feats += [h1, h2]
            else:
                x = block(x)
        x = self.final_conv(self._minibatch_stddev(x))
        logits = self.final_linear(x.flatten(1))
        return (logits, feats) if return_features else logits

    def patch_features(self, img: torch.Tensor) -> list[torch.Tensor]:
        """The ResBlock intermediates at ``patch_res`` (few-shot's patch-level path), stopping early.

        Returns a list of ``[N, C_k, r_k, r_k]`` tensors in forward order (``patch_channels``,
        ``patch_shapes``); the layers after the last one are not run.
        """
        if img.ndim != 4 or img.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"expected images [N, 3, {self.size}, {self.size}], got {list(img.shape)}")
        wanted = set(self.patch_indices)
        last = max(wanted)
        out: list[torch.Tensor] = []
        x = self.convs[0](img)
        j = 0
        for block in list(self.convs)[1:]:
            x, h1, h2 = block.forward_features(x)
            for h in (h1, h2):
                if j in wanted:
                    out.append(h)
                if j == last:
                    return out
                j += 1
        return out  # pragma: no cover - last is always reached


class Extra(nn.Module):
    """Few-shot patch heads: one ``ConvLayer(C_k -> 1, 3x3)`` per patch feature (``new_conv.{k}``).

    Keys ``new_conv.{k}.0.weight [1, C_k, 3, 3]`` and ``new_conv.{k}.1.bias [1]``: as in
    few-shot-gan-adaptation the head ends in the layout's activated ConvLayer, so the patch "logits" pass
    through leaky ReLU (slope 0.2, gain sqrt(2)) — they stay unbounded in both directions.

    Args:
        channels: input channels per head, e.g. ``Discriminator.patch_channels``.

    Used in: notebooks/08_fewshot_adaptation.ipynb.
    """

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.channels = [int(c) for c in channels]
        self.new_conv = nn.ModuleList([ConvLayer(c, 1, 3) for c in self.channels])

    def forward(self, feats: Sequence[torch.Tensor], index: int = 0) -> torch.Tensor:
        """Patch logits ``[N, 1, r, r]`` of head ``index`` applied to ``feats[index]``."""
        if not 0 <= index < len(self.new_conv):
            raise IndexError(f"patch head {index} out of range (0..{len(self.new_conv) - 1})")
        return self.new_conv[index](feats[index])
