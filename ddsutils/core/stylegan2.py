"""StyleGAN2 generator in pure PyTorch (no CUDA extension, no compile step), CPU and CUDA.

The module layout and parameter names follow rosinality/stylegan2-pytorch's ``Generator`` so that its
checkpoints, and the few-shot-gan-adaptation checkpoints built on it, load unchanged: with the defaults
``Generator(256, 512, 8)`` has the same 135 ``state_dict`` entries and 30,034,338 parameters. The code is
written from the architecture description (Karras et al. 2020, "Analyzing and Improving the Image Quality
of StyleGAN") and the published layout facts; the custom CUDA ops are replaced by their plain-PyTorch
meaning (FIR filtering with ``upfirdn2d``, leaky ReLU with bias and gain sqrt(2)).

Shapes (``D`` = ``style_dim``, ``L`` = ``n_latent`` = 2 log2(size) - 2):

- ``z``: ``[N, D]`` standard normal; ``w``: ``[N, D]``; ``w_plus``: ``[N, L, D]``;
- images ``[N, 3, size, size]`` float32, roughly in [-1, 1] (not clamped);
- features: the ``num_layers`` = 2 log2(size) - 3 StyledConv outputs (13 at 256 px), post-activation.

Used in: notebooks/01_load_generators.ipynb and every notebook after it.
"""
from __future__ import annotations

import argparse
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .cli import UserError
from .cli import command as cli_command
from .files import atomic_torch_save

__all__ = [
    "Generator",
    "CheckpointError",
    "CheckpointNotFoundError",
    "check_finite",
    "load_generator",
    "load_checkpoint",
    "generator_state_dict",
    "infer_config",
    "check_generator_file",
    "convert_checkpoint",
    "upfirdn2d",
    "default_channels",
]

_SQRT2 = math.sqrt(2.0)


# ----------------------------------------------------------------------------------------------------
# Low-level ops


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, *, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, FIR-filter each channel, then decimate.

    Args:
        x: ``[N, C, H, W]`` float tensor.
        kernel: ``[kh, kw]`` FIR filter (true convolution, i.e. the kernel is flipped).
        up: upsampling factor (``up - 1`` zeros are inserted after every sample).
        down: decimation factor (every ``down``-th sample is kept).
        pad: ``(p0, p1)`` padding applied to both axes before filtering; negative values crop.

    Returns:
        ``[N, C, H', W']`` with ``H' = (H * up + p0 + p1 - kh + down) // down``.
    """
    n, c, h, w = x.shape
    kh, kw = kernel.shape
    p0, p1 = pad
    k = kernel.to(device=x.device, dtype=x.dtype)
    if up > 1:
        # Zero-stuffing followed by convolution is a strided transposed convolution: y[m] = sum_n x[n] k[m - up n].
        # The defined output index i sits at y index i + kh - 1 - p0; F.pad crops (negative) or zero-fills.
        y = F.conv_transpose2d(x, k[None, None].repeat(c, 1, 1, 1), stride=up, groups=c)
        oh, ow = h * up + p0 + p1 - kh + 1, w * up + p0 + p1 - kw + 1
        offh, offw = kh - 1 - p0, kw - 1 - p0
        y = F.pad(y, (-offw, ow - (y.shape[3] - offw), -offh, oh - (y.shape[2] - offh)))
        return y[:, :, ::down, ::down] if down > 1 else y
    # True convolution = correlation with the flipped kernel; one depthwise (grouped) conv over all channels.
    weight = torch.flip(k, [0, 1])[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(F.pad(x, (p0, p1, p0, p1)), weight, stride=down, groups=c)


def _fir_kernel(taps: Sequence[float]) -> torch.Tensor:
    """Separable 2-D FIR kernel normalised to sum 1, e.g. ``[1, 3, 3, 1]`` -> ``[4, 4]``."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None] if k.ndim == 1 else k
    return k / k.sum()


def _bias_lrelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU (slope 0.2) of ``x + bias`` (bias broadcast on dim 1), times sqrt(2)."""
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), 0.2) * _SQRT2


# ----------------------------------------------------------------------------------------------------
# Layers (names and parameter shapes match the rosinality layout)


class PixelNorm(nn.Module):
    """Normalise each latent vector to unit root-mean-square."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate (weights scaled at run time).

    Parameters ``weight [out, in]`` and ``bias [out]``; ``lr_mul`` scales both at run time.
    """

    def __init__(self, in_dim: int, out_dim: int, *, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return _bias_lrelu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class Blur(nn.Module):
    """FIR low-pass filter (buffer ``kernel [4, 4]``), scaled by ``factor**2`` after upsampling."""

    def __init__(self, taps: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", _fir_kernel(taps) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling used on the RGB skip path (buffer ``kernel [4, 4]``)."""

    def __init__(self, taps: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", _fir_kernel(taps) * factor ** 2)
        p = len(taps) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution with optional demodulation and 2x upsampling.

    Parameters: ``weight [1, out, in, k, k]`` and ``modulation`` (EqualLinear ``style_dim -> in``, bias 1).
    The style scales the input channels, one shared convolution runs over the batch, and demodulation
    rescales the output channels; this equals convolving with per-sample modulated weights.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, *,
                 demodulate: bool = True, upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.modulation(w)                                   # [N, in]
        weight = self.weight[0] * self.scale                     # [out, in, k, k]
        x = x * s[:, :, None, None]
        if self.upsample:
            x = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
        else:
            x = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            wsq = weight.pow(2).sum(dim=(2, 3))                  # [out, in]
            demod = torch.rsqrt(s.pow(2) @ wsq.t() + 1e-8)       # [N, out]
            x = x * demod[:, :, None, None]
        if self.upsample:
            x = self.blur(x)
        return x


class NoiseInjection(nn.Module):
    """Adds ``weight * noise`` (learned scalar ``weight [1]``, initialised to 0)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    """Per-channel ``bias`` then leaky ReLU (0.2) times sqrt(2)."""

    def __init__(self, channel: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _bias_lrelu(x, self.bias)


class StyledConv(nn.Module):
    """ModulatedConv2d -> NoiseInjection -> FusedLeakyReLU (keys ``conv.*``, ``noise.*``, ``activate.*``)."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, *,
                 upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + ``bias [1, 3, 1, 1]`` + upsampled skip."""

    def __init__(self, in_channel: int, style_dim: int, *, upsample: bool = True,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    """Learned constant ``input [1, C, 4, 4]`` repeated over the batch."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


# ----------------------------------------------------------------------------------------------------
# Generator


def default_channels(*, channel_multiplier: int = 2, channel_max: int = 512) -> dict[int, int]:
    """Channels per resolution in the rosinality layout, capped at ``channel_max``.

    ``{4..32: 512, 64: 256 cm, 128: 128 cm, 256: 64 cm, 512: 32 cm, 1024: 16 cm}``.
    """
    cm = channel_multiplier
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm,
            512: 32 * cm, 1024: 16 * cm}
    return {r: min(c, channel_max) for r, c in base.items()}


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network ``style`` + synthesis network (rosinality layout).

    Args:
        size: output resolution (power of two, >= 8).
        style_dim: latent width ``D`` (512 for the public checkpoints).
        n_mlp: number of mapping layers (8 for the public checkpoints).
        channel_multiplier: rosinality's width knob for resolutions >= 64 (2 for the public checkpoints).
        channel_max: caps every resolution's channels (capacity knob for tiny models; 512 = no cap).
        channels: explicit ``{resolution: channels}`` (overrides the two knobs above; used when loading).
        blur_kernel: FIR taps for up-sampling.
        lr_mlp: learning-rate multiplier of the mapping network (0.01 for the public checkpoints).

    Example::

        G = Generator(256, 512, 8)                       # rosinality FFHQ-256 shape, 30,034,338 params
        img = G(torch.randn(4, 512))                     # [4, 3, 256, 256], roughly in [-1, 1]
        img, feats = G(z, return_features=True)          # feats: 13 tensors, [4, C_i, r_i, r_i]

    Used in: notebooks/01_load_generators.ipynb.
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2, *,
                 channel_max: int = 512, channels: Mapping[int, int] | None = None,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), lr_mlp: float = 0.01):
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        chans = dict(channels) if channels is not None else default_channels(
            channel_multiplier=channel_multiplier, channel_max=channel_max)
        missing = [2 ** i for i in range(2, self.log_size + 1) if 2 ** i not in chans]
        if missing:
            raise ValueError(f"channels is missing resolutions {missing}")
        self.channels = {2 ** i: int(chans[2 ** i]) for i in range(2, self.log_size + 1)}
        self.config: dict[str, Any] = {
            "size": size, "style_dim": style_dim, "n_mlp": n_mlp,
            "channels": {str(r): c for r, c in self.channels.items()},
            "blur_kernel": list(blur_kernel), "lr_mlp": lr_mlp,
        }

        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True) for _ in range(n_mlp)])
        c4 = self.channels[4]
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(c4, style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()  # empty; kept so the module tree mirrors the public layout
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r))
        in_ch = c4
        for i in range(3, self.log_size + 1):
            out_ch = self.channels[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel))
            in_ch = out_ch
        self.latent_avg: torch.Tensor | None = None  # [1, D] when a checkpoint provides it

    # -- latents ---------------------------------------------------------------------------------

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """Mapping network: ``z [N, D]`` (standard normal) -> ``w [N, D]``."""
        if z.ndim != 2 or z.shape[1] != self.style_dim:
            raise ValueError(f"z must be [N, {self.style_dim}], got {list(z.shape)}")
        return self.style(z)

    get_latent = mapping  # rosinality name

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, *, seed: int = 0, batch_size: int = 4096) -> torch.Tensor:
        """Mean of ``mapping(z)`` over ``n`` seeded samples -> ``[1, D]`` (the truncation centre)."""
        gen = torch.Generator().manual_seed(seed)
        device = self.input.input.device
        total = torch.zeros(1, self.style_dim, dtype=torch.float64, device=device)
        done = 0
        while done < n:
            b = min(batch_size, n - done)
            z = torch.randn(b, self.style_dim, generator=gen).to(device)
            total += self.mapping(z).double().sum(dim=0, keepdim=True)
            done += b
        return (total / n).float()

    def truncation_centre(self, n: int = 4096) -> torch.Tensor:
        """The truncation centre ``[1, D]``: the checkpoint's ``latent_avg`` when it has one, else
        :meth:`mean_latent` of ``n`` samples (seed 0), on the generator's device. ``truncation=0`` draws the
        generator's mean face."""
        if self.latent_avg is not None:
            return self.latent_avg.to(self.input.input.device)
        return self.mean_latent(n)

    def make_noise(self, batch: int = 1, *, seed: int | None = None,
                   generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh standard-normal noise maps, one per StyledConv: ``[batch, 1, r, r]``."""
        if generator is None:
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
        device = self.input.input.device
        out = []
        for i in range(self.num_layers):
            r = 2 ** ((i + 5) // 2)
            out.append(torch.randn(batch, 1, r, r, generator=generator).to(device))
        return out

    def noise_buffers(self) -> list[torch.Tensor]:
        """The registered constant noise maps ``noises.noise_i`` (``[1, 1, r, r]`` each)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def to_w_plus(self, latent: torch.Tensor, *, input_space: str = "z", truncation: float = 1.0,
                  truncation_latent: torch.Tensor | None = None, check_finite: bool = True) -> torch.Tensor:
        """Turn ``z``/``w`` ``[N, D]`` or ``w+`` ``[N, L, D]`` into ``w+`` ``[N, L, D]``, with truncation.

        Truncation moves w toward ``truncation_latent`` (default ``self.latent_avg``; required when
        ``truncation < 1`` and no average is known): ``w' = w_avg + psi (w - w_avg)``. ``check_finite``
        refuses NaN / inf latents (a host sync: optimisation loops that checked their start pass ``False``).
        """
        if input_space not in ("z", "w", "w+"):
            raise ValueError(f"input_space must be 'z', 'w' or 'w+', got {input_space!r}")
        if check_finite and not torch.isfinite(latent).all():
            raise ValueError("latent contains NaN or inf")
        if input_space == "z":
            w = self.mapping(latent)[:, None, :].expand(-1, self.n_latent, -1)
        elif input_space == "w":
            if latent.ndim != 2 or latent.shape[1] != self.style_dim:
                raise ValueError(f"w must be [N, {self.style_dim}], got {list(latent.shape)}")
            w = latent[:, None, :].expand(-1, self.n_latent, -1)
        else:
            if latent.ndim != 3 or latent.shape[1:] != (self.n_latent, self.style_dim):
                raise ValueError(f"w+ must be [N, {self.n_latent}, {self.style_dim}], got {list(latent.shape)}")
            w = latent
        if truncation != 1.0:
            centre = truncation_latent if truncation_latent is not None else self.latent_avg
            if centre is None:
                raise ValueError("truncation < 1 needs truncation_latent (e.g. G.mean_latent(4096)) "
                                 "or a checkpoint with latent_avg")
            centre = centre.reshape(1, 1, self.style_dim).to(w)
            w = centre + truncation * (w - centre)
        return w

    # -- synthesis -------------------------------------------------------------------------------

    def synthesis(self, w_plus: torch.Tensor, *, noise: str | Sequence[torch.Tensor] = "const",
                  return_features: bool = False):
        """Synthesis network: ``w_plus [N, L, D]`` -> image ``[N, 3, size, size]``.

        Args:
            w_plus: per-layer styles. Layer use: conv1 <- w[0], to_rgb1 <- w[1]; for block k:
                convs[2k] <- w[2k+1], convs[2k+1] <- w[2k+2], to_rgbs[k] <- w[2k+3].
            noise: ``"const"`` (the registered buffers, deterministic), ``"random"`` (fresh N(0, 1) every
                call) or a list of ``num_layers`` tensors broadcastable to ``[N, 1, r, r]``.
            return_features: also return the ``num_layers`` StyledConv outputs.

        Returns:
            ``img`` or ``(img, features)``.
        """
        n = w_plus.shape[0]
        if isinstance(noise, str):
            if noise == "const":
                noises: list[torch.Tensor | None] = list(self.noise_buffers())
            elif noise == "random":
                noises = [None] * self.num_layers
            else:
                raise ValueError(f"noise must be 'const', 'random' or a list of tensors, got {noise!r}")
        else:
            noises = list(noise)
            if len(noises) != self.num_layers:
                raise ValueError(f"expected {self.num_layers} noise maps, got {len(noises)}")
        feats = []
        x = self.conv1(self.input(n), w_plus[:, 0], noises[0])
        feats.append(x)
        skip = self.to_rgb1(x, w_plus[:, 1])
        for k, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * k](x, w_plus[:, 2 * k + 1], noises[2 * k + 1])
            feats.append(x)
            x = self.convs[2 * k + 1](x, w_plus[:, 2 * k + 2], noises[2 * k + 2])
            feats.append(x)
            skip = to_rgb(x, w_plus[:, 2 * k + 3], skip)
        return (skip, feats) if return_features else skip

    def forward(self, latent: torch.Tensor, *, input_space: str = "z", truncation: float = 1.0,
                truncation_latent: torch.Tensor | None = None, noise: str | Sequence[torch.Tensor] = "const",
                return_features: bool = False, check_finite: bool = True):
        """Generate images from ``z``/``w`` ``[N, D]`` or ``w+`` ``[N, L, D]``.

        Returns ``img [N, 3, size, size]`` (roughly in [-1, 1]) or ``(img, features)``; see
        :meth:`to_w_plus` and :meth:`synthesis` for the keywords.
        """
        w_plus = self.to_w_plus(latent, input_space=input_space, truncation=truncation,
                                truncation_latent=truncation_latent, check_finite=check_finite)
        return self.synthesis(w_plus, noise=noise, return_features=return_features)


# ----------------------------------------------------------------------------------------------------
# Checkpoints


class CheckpointError(UserError):
    """A file is not a usable generator checkpoint; the message says why and what to do (a ``ValueError``)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """Neither a checkpoint file nor a weights manifest name (also a ``FileNotFoundError``)."""


_GEN_MARKERS = ("style.1.weight", "input.input", "conv1.conv.weight")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load`` a checkpoint safely onto the CPU.

    Uses ``weights_only=True`` with ``argparse.Namespace`` on the allow-list (rosinality training
    checkpoints pickle their ``args``); nothing else outside plain tensors/containers is unpickled.

    Raises:
        CheckpointNotFoundError: no file at ``path`` (a ``FileNotFoundError``).
        CheckpointError: not a torch checkpoint (random bytes, text, truncated), or a pickle of other objects
            (then the message explains ``convert --trust``, which is only for files you trust).
    """
    from .files import NotACheckpointError, UnsafeCheckpointError, torch_load

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"no checkpoint at {path}" + (" (a folder)" if path.is_dir() else ""))
    try:
        obj = torch_load(path, safe_globals=[argparse.Namespace])
    except UnsafeCheckpointError as exc:
        raise CheckpointError(
            f"{path} pickles objects outside the safe allow-list ({', '.join(exc.globals) or 'see --debug'}). "
            f"If you trust the file, convert it once with `python -m ddsutils.stylegan2 convert {path} OUT.pt "
            "--trust` and load OUT.pt.") from exc
    except NotACheckpointError as exc:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({exc.detail}): it may "
            "be truncated or not a checkpoint at all. Download it again and check its sha256 "
            "(python -m ddsutils.weights verify).") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    return dict(obj)


def check_finite(sd: Mapping[str, Any], *, source: str) -> None:
    """Raise :class:`CheckpointError` when a weight of ``sd`` (or ``latent_avg``) holds a NaN or an infinity."""
    from .files import nonfinite_tensors

    bad = nonfinite_tensors(sd)
    if bad:
        raise CheckpointError(f"{source} has NaN or infinite values in {len(bad)} weight(s) ({', '.join(bad[:5])}"
                              f"{', ...' if len(bad) > 5 else ''}): the file is damaged or its training diverged; "
                              "use another checkpoint (an earlier iteration, or download it again)")


def generator_state_dict(ckpt: Mapping[str, Any], *, source: str = "checkpoint") -> tuple[dict, torch.Tensor | None]:
    """Pick the generator weights out of any supported layout, strip ``module.``.

    Layouts: rosinality training checkpoints (``g_ema`` among ``g``, ``d``, optimisers, ``args``),
    converted official checkpoints (``g_ema`` + ``latent_avg``), few-shot-gan-adaptation checkpoints
    (``g_ema`` with every key prefixed ``module.``), plain generator state dicts.

    Returns:
        ``(state_dict, latent_avg)`` with ``latent_avg`` ``[1, D]`` or ``None``.
    """
    latent_avg = ckpt.get("latent_avg")
    if "g_ema" in ckpt:
        sd = ckpt["g_ema"]
    elif any(k.removeprefix("module.") in _GEN_MARKERS for k in ckpt):
        sd = ckpt
    elif "g" in ckpt and isinstance(ckpt["g"], Mapping):
        raise CheckpointError(f"{source} has 'g' but no 'g_ema'; pass the EMA generator (what every public "
                              "checkpoint stores as g_ema) or save your generator's state_dict as g_ema")
    else:
        keys = sorted(ckpt)[:8]
        what = "a discriminator-only checkpoint" if ("d" in ckpt or any("final_linear" in k for k in ckpt)) \
            else "not a StyleGAN2 generator checkpoint"
        raise CheckpointError(f"{source} is {what}: no 'g_ema' entry and no generator keys "
                              f"(first keys: {keys}). Expected a rosinality or few-shot-gan-adaptation "
                              "checkpoint with 'g_ema', or a plain Generator state_dict.")
    if not isinstance(sd, Mapping) or not sd:
        raise CheckpointError(f"{source}: the generator entry is empty or not a state dict")
    sd = dict(sd)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    if latent_avg is not None:
        latent_avg = torch.as_tensor(latent_avg).float().reshape(1, -1)
    return sd, latent_avg


def infer_config(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Generator constructor arguments implied by a state dict's shapes.

    Returns ``{"size", "style_dim", "n_mlp", "channels"}``; ``lr_mlp``/``blur_kernel`` cannot be seen in
    the weights and keep their defaults unless a checkpoint ``config`` says otherwise.
    """
    try:
        style_dim = int(sd["style.1.weight"].shape[0])
        n_mlp = sum(1 for k in sd if k.startswith("style.") and k.endswith(".weight"))
        n_rgbs = len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.")})
        log_size = n_rgbs + 2
        channels = {4: int(sd["conv1.conv.weight"].shape[1])}
        for i in range(3, log_size + 1):
            channels[2 ** i] = int(sd[f"convs.{2 * (i - 3)}.conv.weight"].shape[1])
    except KeyError as exc:
        raise CheckpointError(f"cannot infer the generator shape: key {exc} is missing") from None
    return {"size": 2 ** log_size, "style_dim": style_dim, "n_mlp": n_mlp, "channels": channels}


def _strict_load(G: Generator, sd: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Load ``sd`` into ``G`` and fail with the full list of missing / unexpected / mis-shaped keys."""
    own = G.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    legacy_noise = missing and all(k.startswith("noises.") for k in missing)
    if legacy_noise and not unexpected:
        # Checkpoints written before rosinality added the noise buffers (2020-01-15) have none; keep the
        # seeded buffers of the freshly built generator and say so loudly.
        warnings.warn(f"{source} has no registered noise buffers ({len(missing)} 'noises.*' keys); using "
                      "seeded random constant noise. Images with noise='const' will differ from the "
                      "original code's.", stacklevel=3)
        missing = []
    wrong = [f"{k}: checkpoint {list(sd[k].shape)} vs model {list(own[k].shape)}"
             for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {missing}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
        if wrong:
            parts.append(f"shape mismatches ({len(wrong)}): {wrong}")
        raise CheckpointError(f"{source} does not match the generator architecture; " + "; ".join(parts))
    with torch.no_grad():
        for k, v in own.items():
            if k in sd:
                v.copy_(sd[k].to(v.dtype))


def load_generator(path_or_name: str | os.PathLike, *, device: str | torch.device = "cpu",
                   size: int | None = None, lr_mlp: float | None = None) -> Generator:
    """Load a StyleGAN2 generator from a checkpoint file or a ``weights/manifest.json`` name.

    Accepts the public layouts (see :func:`generator_state_dict`), infers the architecture from the
    weight shapes, and loads **strictly**: any missing, unexpected or mis-shaped key is an error listing
    them (the released DDS code's ``strict=False`` silently runs with random weights).

    Args:
        path_or_name: checkpoint path, or a manifest name (e.g. ``"ffhq-256"``).
        device: where the generator lives (``"cpu"``, ``"cuda"``, ``"auto"``).
        size: if given, the checkpoint must be of this resolution.
        lr_mlp: mapping learning-rate multiplier (not stored in public checkpoints; default 0.01).

    Returns:
        The generator in ``eval()`` mode with ``requires_grad`` off and ``latent_avg`` set when the
        checkpoint has one.

    Raises:
        CheckpointNotFoundError / ddsutils.weights.WeightsUnavailableError: no such file or name, or unavailable
            weights (both are ``FileNotFoundError``).
        CheckpointError: unreadable file, wrong layout, wrong resolution, keys that do not match, or weights
            that are NaN or infinite.

    Used in: notebooks/01_load_generators.ipynb.
    """
    from . import cli

    if size is not None:
        cli.positive_int(size, "size")
    if lr_mlp is not None:
        cli.float_arg(lr_mlp, "lr_mlp", min=0, min_open=True)
    dev = cli.device(device, "device")
    path = Path(path_or_name)
    if not path.exists() and not str(path_or_name).endswith((".pt", ".pth", ".pkl")):
        from . import weights  # local import: weights is optional for plain paths

        if weights.is_known(str(path_or_name)):
            path = weights.resolve(str(path_or_name))
        else:
            raise CheckpointNotFoundError(
                f"{path_or_name!r} is neither a checkpoint file nor a weights name; names: "
                f"{', '.join(n for n, e in weights.load_manifest().items() if e.kind == 'stylegan2-generator')}")
    ckpt = load_checkpoint(path)
    sd, latent_avg = generator_state_dict(ckpt, source=str(path))
    check_finite({**sd, **({"latent_avg": latent_avg} if latent_avg is not None else {})}, source=str(path))
    cfg = infer_config(sd)
    stored = ckpt.get("config") if isinstance(ckpt.get("config"), Mapping) else {}
    if size is not None and cfg["size"] != size:
        raise CheckpointError(f"{path} is a {cfg['size']} px generator but size={size} was requested")
    G = Generator(cfg["size"], cfg["style_dim"], cfg["n_mlp"], channels=cfg["channels"],
                  blur_kernel=tuple(stored.get("blur_kernel", (1, 3, 3, 1))),
                  lr_mlp=lr_mlp if lr_mlp is not None else float(stored.get("lr_mlp", 0.01)))
    _strict_load(G, sd, source=str(path))
    if latent_avg is not None:
        if latent_avg.shape[1] != G.style_dim:
            raise CheckpointError(f"{path}: latent_avg has {latent_avg.shape[1]} dims, style_dim is {G.style_dim}")
        G.latent_avg = latent_avg
    G.requires_grad_(False).eval()
    return G.to(dev)


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_generator_file(e: Any, path: Path, *, what: str) -> dict[str, Any]:
    """Load ``path`` as a StyleGAN2 generator (strictly, weights finite) and compare it with the weights-manifest
    entry ``e``'s ``architecture``; returns the inferred architecture. ``weights.fetch``'s ``check`` for generators.

    Raises:
        NotAGeneratorError: not a checkpoint, not a generator, NaN / inf weights, or another architecture.
    """
    from .files import NotACheckpointError
    from .weights import NotAGeneratorError

    try:
        G = load_generator(path)
    except CheckpointError as exc:
        cause = exc.__cause__
        reason = (f"not a PyTorch checkpoint: {cause.detail}" if isinstance(cause, NotACheckpointError)
                  else exc.message.removeprefix(f"{path} "))
        raise NotAGeneratorError(f"{what} is not a StyleGAN2 generator checkpoint for {e.name} ({reason}); "
                                 "nothing was cached") from exc
    got = {"size": G.size, "style_dim": G.style_dim, "n_mlp": G.n_mlp, "channels": dict(G.channels)}
    arch = dict(e.architecture or {})
    if arch:
        want = {k: arch[k] for k in ("size", "style_dim", "n_mlp")}
        if "channels" in arch:
            want["channels"] = {int(k): int(v) for k, v in arch["channels"].items()}
        elif "channel_multiplier" in arch:
            full = default_channels(channel_multiplier=int(arch["channel_multiplier"]))
            want["channels"] = {r: c for r, c in full.items() if r <= int(arch["size"])}
        diff = {k: (got[k], v) for k, v in want.items() if got[k] != v}
        if diff:
            text = ", ".join(f"{k} {g} (expected {v})" for k, (g, v) in diff.items())
            raise NotAGeneratorError(f"{what} is a generator of another architecture than {e.name}: {text}. Is it "
                                     f"the file for {e.name}? Nothing was cached")
    return got


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, trust: bool = False) -> Path:
    """Rewrite any supported checkpoint as ``{"g_ema": state_dict[, "latent_avg"], "config"}``.

    The output holds tensors and plain containers only (loads with ``weights_only=True``) and drops
    the discriminator, optimiser states and ``args``. With ``trust=True`` the source is unpickled
    without the allow-list (only for files you trust). Written atomically.
    """
    src, dst = Path(src), Path(dst)
    if trust:
        if not src.is_file():
            raise CheckpointNotFoundError(f"no checkpoint at {src}")
        try:
            ckpt = torch.load(src, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - whatever the unpickler says, the file is not a checkpoint
            raise CheckpointError(f"{src} is not a readable PyTorch checkpoint even without the allow-list "
                                  f"({type(exc).__name__}: {str(exc).strip()[:120]}); it is damaged or another "
                                  "format: download it again") from exc
        if not isinstance(ckpt, Mapping):
            raise CheckpointError(f"{src} holds a {type(ckpt).__name__}, not a checkpoint dict")
    else:
        ckpt = load_checkpoint(src)
    sd, latent_avg = generator_state_dict(ckpt, source=str(src))
    check_finite(sd, source=str(src))
    cfg = infer_config(sd)
    G = Generator(cfg["size"], cfg["style_dim"], cfg["n_mlp"], channels=cfg["channels"])
    _strict_load(G, sd, source=str(src))  # validate before writing anything
    out: dict[str, Any] = {"g_ema": {k: v.detach().clone() for k, v in sd.items()},
                           "config": G.config}
    if latent_avg is not None:
        out["latent_avg"] = latent_avg
    atomic_torch_save(out, dst)
    return dst


@cli_command
def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m ddsutils.stylegan2 {convert,info}``; user errors are one line and exit status 2."""
    from . import cli

    p = cli.ArgumentParser(prog="python -m ddsutils.stylegan2", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert", help="rewrite a checkpoint as a safe {'g_ema', 'latent_avg'} file")
    c.add_argument("src")
    c.add_argument("dst")
    c.add_argument("--trust", action="store_true", help="unpickle the source without the allow-list")
    i = sub.add_parser("info", help="print the architecture a checkpoint implies")
    i.add_argument("src", help="checkpoint file or weights manifest name")
    args = p.parse_args(argv)
    if args.cmd == "convert":
        src = cli.existing_file(args.src, "src", what="checkpoint")
        dst = cli.output_file(args.dst, "dst")
        if dst.exists() and dst.resolve() == src.resolve():
            raise UserError("is the source file; write the converted checkpoint to another file", argument="dst",
                            value=args.dst)
        print(cli.load("src", args.src, lambda s: convert_checkpoint(s, dst, trust=args.trust)))
    else:
        G = cli.load("src", args.src, load_generator)
        n = sum(p.numel() for p in G.parameters())
        print(f"size {G.size}  style_dim {G.style_dim}  n_mlp {G.n_mlp}  n_latent {G.n_latent}  "
              f"params {n:,}  channels {G.channels}  latent_avg {'yes' if G.latent_avg is not None else 'no'}")
    return 0


main = _main


if __name__ == "__main__":
    raise SystemExit(_main())
