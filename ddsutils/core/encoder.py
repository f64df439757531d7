"""A small CNN encoder ``E: image -> w+`` for one StyleGAN2 generator: fast inversion and a starting point.

:class:`Encoder` is a ResNet-style downsampling trunk (size -> 4 px) and a two-layer head that predicts w+ as an
offset from the generator's mean w, in units of w's per-dimension spread (both stored as buffers, so
:func:`encode` needs no generator). :func:`train_encoder` trains it on the generator's own samples: styles drawn
from the mapping network (with style mixing and per-layer jitter so that W+ around the samples is covered), their
images synthesised with the constant noise maps; the loss is the latent MSE to the true w+ plus LPIPS and pixel
MSE between ``G(E(x))`` and ``x``. Optional extra images (e.g. renders, whose w+ is unknown) add the image loss
alone. Seeded and deterministic on the CPU (the caller's global RNG is left alone).

- :func:`encode`: ``[N, 3, H, W]`` in [-1, 1] -> w+ ``[N, L, D]`` (no gradient, in batches); use it as a fast
  inversion, or as ``project(G, x, init=encode(E, x))``.
- :func:`save_encoder` / :func:`load_encoder`: one ``.pt`` file (``{"format", "state_dict", "config",
  "train_args"}``), written atomically and read with ``torch.load(weights_only=True)`` into a strict state dict.
- :func:`check_compatible`: an encoder and a generator that disagree on size, layers or width are refused.

The seed-002 use (latent space anchoring): an encoder of one domain's generator maps an image into the latent
space the few-shot generators share, and another domain's generator decodes it. Toy evaluation:
:mod:`ddsutils.toy.anchoring`, docs/anchoring.md.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import UserError
from .stylegan2 import Generator

__all__ = ["Encoder", "EncoderError", "FORMAT", "DEFAULT_CHANNELS", "train_encoder", "encode", "check_compatible",
           "save_encoder", "load_encoder", "parameter_count"]

#: The ``format`` tag of an encoder file.
FORMAT = "ddsutils-encoder-v1"
#: Trunk widths: the stem at full resolution, then one entry per halving down to 4 px (the last one repeats).
DEFAULT_CHANNELS: tuple[int, ...] = (16, 32, 48, 64, 96)


class EncoderError(UserError):
    """An encoder file that cannot be used (missing, not an encoder, damaged, or for another generator)."""


class _Down(nn.Module):
    """Residual block that halves the resolution: ``[N, c_in, r, r] -> [N, c_out, r / 2, r / 2]``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
        self.norm1 = nn.GroupNorm(min(8, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        # main path: conv with stride 2, conv at the half resolution; skip path: average pool, 1 x 1 projection
        h = F.leaky_relu(self.norm1(self.conv1(x)), 0.2)
        h = self.norm2(self.conv2(h))
        s = self.skip(F.avg_pool2d(x, 2))
        return F.leaky_relu((h + s) / math.sqrt(2.0), 0.2)


class Encoder(nn.Module):
    """Image -> w+ for a generator with ``n_latent`` styles of width ``style_dim`` at ``size`` px.

    ``E(x) = w_mean + w_scale * head(trunk(x))`` reshaped to ``[N, n_latent, style_dim]``; the head's last layer
    starts at zero, so an untrained encoder returns the mean w for every image. Batch-independent (GroupNorm).

    Args:
        size: image resolution (a power of two >= 8).
        n_latent: styles per image (``G.n_latent``).
        style_dim: width of a style (``G.style_dim``).
        channels: trunk widths (see :data:`DEFAULT_CHANNELS`).
        head_channels: channels of the 4 x 4 map the head flattens.
        hidden: width of the head's hidden layer.

    Example::

        E = train_encoder(G, steps=1500)              # or load_encoder("runs/anchoring/encoder.pt")
        w_plus = encode(E, img)                        # [N, G.n_latent, G.style_dim]
        recon = G.synthesis(w_plus, noise="const")
    """

    def __init__(self, size: int, n_latent: int, style_dim: int, *, channels: Sequence[int] = DEFAULT_CHANNELS,
                 head_channels: int = 32, hidden: int = 256) -> None:
        super().__init__()
        _check_shape_args(size=size, n_latent=n_latent, style_dim=style_dim, channels=channels,
                          head_channels=head_channels, hidden=hidden)
        self.size, self.n_latent, self.style_dim = int(size), int(n_latent), int(style_dim)
        stages = int(math.log2(size)) - 2
        widths = [int(c) for c in channels] + [int(channels[-1])] * max(0, stages + 1 - len(channels))
        self.config: dict[str, Any] = {"size": self.size, "n_latent": self.n_latent, "style_dim": self.style_dim,
                                       "channels": list(channels), "head_channels": int(head_channels),
                                       "hidden": int(hidden)}
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1)
        self.blocks = nn.Sequential(*[_Down(widths[i], widths[i + 1]) for i in range(stages)])
        self.reduce = nn.Conv2d(widths[stages], head_channels, 1)
        self.fc1 = nn.Linear(head_channels * 16, hidden)
        self.fc2 = nn.Linear(hidden, n_latent * style_dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)
        self.register_buffer("w_mean", torch.zeros(style_dim))
        self.register_buffer("w_scale", torch.ones(style_dim))

    def forward(self, img: Tensor) -> Tensor:
        """``img [N, 3, size, size]`` float in [-1, 1] -> w+ ``[N, n_latent, style_dim]`` float32."""
        # trunk: stem, residual halvings down to 4 x 4
        h = F.leaky_relu(self.stem(img), 0.2)
        h = self.blocks(h)
        # head: 1 x 1 reduction, flatten (keeps where things are), two linear layers
        h = F.leaky_relu(self.reduce(h), 0.2).flatten(1)
        offset = self.fc2(F.leaky_relu(self.fc1(h), 0.2)).view(-1, self.n_latent, self.style_dim)
        # the offset is in units of w's spread around its mean
        return self.w_mean + self.w_scale * offset


def _check_shape_args(*, size: Any, n_latent: Any, style_dim: Any, channels: Any, head_channels: Any,
                      hidden: Any) -> None:
    """UserError for an encoder shape that cannot be built."""
    for name, value in (("n_latent", n_latent), ("style_dim", style_dim), ("head_channels", head_channels),
                        ("hidden", hidden)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError("must be a whole number >= 1", argument=name, value=value)
    if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size & (size - 1):
        raise UserError("must be a power of two >= 8 (the generator's resolution)", argument="size", value=size)
    if (isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or not channels
            or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels)):
        raise UserError("must be a non-empty list of whole numbers >= 1", argument="channels", value=channels)


def parameter_count(E: nn.Module) -> int:
    """Trainable parameters of ``E`` (its file is about 4 bytes each, plus the two ``style_dim`` buffers)."""
    return sum(p.numel() for p in E.parameters())


def check_compatible(E: Encoder, G: Generator, *, argument: str = "E") -> None:
    """Raise :class:`EncoderError` (naming ``argument``) unless ``E`` makes w+ for ``G`` (same size, ``n_latent``
    and ``style_dim``)."""
    if not isinstance(E, Encoder):
        raise UserError(f"must be a ddsutils.core.encoder.Encoder, got {type(E).__name__}", argument=argument)
    want = (G.size, G.n_latent, G.style_dim)
    got = (E.size, E.n_latent, E.style_dim)
    if got != want:
        raise EncoderError(f"the encoder is for {got[0]} px generators with {got[1]} styles of {got[2]} dims, but "
                           f"the generator is {want[0]} px with {want[1]} x {want[2]}: train an encoder for it",
                           argument=argument)


def _check_images(img: Any, size: int, argument: str) -> Tensor:
    """``img`` as a float tensor ``[N, 3, size, size]`` in [-1, 1] (a single ``[3, size, size]`` gains N = 1)."""
    if not isinstance(img, Tensor):
        raise UserError(f"must be a torch.Tensor [N, 3, {size}, {size}] in [-1, 1], got {type(img).__name__}",
                        argument=argument)
    if img.ndim == 3:
        img = img[None]
    if img.ndim != 4 or img.shape[1] != 3 or img.shape[0] == 0 or tuple(img.shape[-2:]) != (size, size):
        raise UserError(f"must be [N, 3, {size}, {size}] (N >= 1), got shape {list(img.shape)}", argument=argument)
    img = img.float()
    if not torch.isfinite(img).all():
        raise UserError("contains NaN or inf", argument=argument)
    lo, hi = float(img.min()), float(img.max())
    if lo < -1.05 or hi > 1.05:
        hint = " (it looks like 0..255: use img / 127.5 - 1)" if hi > 2 else ""
        raise UserError(f"values span [{lo:.3g}, {hi:.3g}]; images must be in [-1, 1]{hint}", argument=argument)
    return img


@torch.no_grad()
def encode(E: Encoder, img: Tensor, *, batch_size: int = 64, device: str | torch.device | None = None) -> Tensor:
    """Encode images into w+ (no gradient; the encoder's weights are not changed).

    Args:
        E: the encoder.
        img: ``[N, 3, E.size, E.size]`` (or ``[3, E.size, E.size]``) float in [-1, 1].
        batch_size: images per forward pass (the result does not depend on it).
        device: where to run (default: the encoder's device).

    Returns:
        w+ ``[N, E.n_latent, E.style_dim]`` float32 on the CPU; ``G.synthesis(w_plus, noise="const")`` decodes it.

    Raises:
        UserError: not an encoder, a bad image batch or ``batch_size`` (before any work).
    """
    if not isinstance(E, Encoder):
        raise UserError(f"must be a ddsutils.core.encoder.Encoder, got {type(E).__name__}", argument="E")
    img = _check_images(img, E.size, "img")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError("must be a whole number >= 1", argument="batch_size", value=batch_size)
    dev = torch.device(device) if device is not None else E.w_mean.device
    was_training = E.training
    E.eval()
    try:
        # one forward pass per chunk; GroupNorm makes every image independent of its batch
        out = [E.to(dev)(img[i:i + batch_size].to(dev)).float().cpu() for i in range(0, img.shape[0], batch_size)]
    finally:
        E.train(was_training)
    return torch.cat(out)


def _check_train_args(G: Any, *, steps: Any, batch_size: Any, lr: Any, seed: Any, latent_weight: Any,
                      lpips_weight: Any, mse_weight: Any, extra_weight: Any, extra_batch_size: Any, mix_prob: Any,
                      w_noise: Any, grey_prob: Any, n_mean_latent: Any) -> None:
    """Every check of :func:`train_encoder` that needs no work; a :class:`UserError` naming the argument."""
    if not isinstance(G, Generator):
        raise UserError(f"must be a ddsutils.core.stylegan2.Generator, got {type(G).__name__}", argument="G")
    for name, value, lo in (("steps", steps, 1), ("batch_size", batch_size, 1), ("seed", seed, 0),
                            ("extra_batch_size", extra_batch_size, 1), ("n_mean_latent", n_mean_latent, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise UserError(f"must be a whole number >= {lo}", argument=name, value=value)
    for name, value, hi in (("lr", lr, None), ("latent_weight", latent_weight, None),
                            ("lpips_weight", lpips_weight, None), ("mse_weight", mse_weight, None),
                            ("extra_weight", extra_weight, None), ("mix_prob", mix_prob, 1.0),
                            ("w_noise", w_noise, None), ("grey_prob", grey_prob, 1.0)):
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
                or (hi is not None and value > hi)):
            raise UserError(f"must be a finite number >= 0{f' and <= {hi}' if hi is not None else ''}",
                            argument=name, value=value)
    if lr == 0:
        raise UserError("must be > 0", argument="lr", value=lr)
    if latent_weight == 0 and lpips_weight == 0 and mse_weight == 0:
        raise UserError("latent_weight, lpips_weight and mse_weight are all 0: nothing to train on",
                        argument="latent_weight", value=latent_weight)


def _sample_styles(G: Generator, n: int, gen: torch.Generator, *, mix_prob: float, w_noise: float,
                   w_scale: Tensor) -> Tensor:
    """``n`` training styles ``[n, L, D]``: mapped z, mixed at a random layer with probability ``mix_prob``, plus
    per-layer Gaussian jitter of ``w_noise`` x w's spread."""
    dev = w_scale.device
    # two mapped samples per image; the second takes over from a random crossover layer
    z = torch.randn(2 * n, G.style_dim, generator=gen).to(dev)
    w = G.mapping(z).view(2, n, 1, G.style_dim).expand(-1, -1, G.n_latent, -1)
    cross = torch.randint(1, G.n_latent, (n,), generator=gen).to(dev)
    mixed = torch.rand(n, generator=gen).to(dev) < mix_prob
    take2 = (torch.arange(G.n_latent, device=dev)[None] >= cross[:, None]) & mixed[:, None]
    w_plus = torch.where(take2[..., None], w[1], w[0])
    # jitter every layer independently, so the encoder also sees w+ off the mapping network's image
    jitter = torch.randn(n, G.n_latent, G.style_dim, generator=gen).to(dev)
    return w_plus + w_noise * w_scale * jitter


def _grey(img: Tensor, pick: Tensor) -> Tensor:
    """Replace the images where ``pick [N]`` is true by their luminance (3 equal channels)."""
    lum = (0.299 * img[:, 0:1] + 0.587 * img[:, 1:2] + 0.114 * img[:, 2:3]).expand(-1, 3, -1, -1)
    return torch.where(pick[:, None, None, None], lum, img)


def train_encoder(
    G: Generator,
    *,
    steps: int = 1500,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    extra_images: Tensor | None = None,
    extra_batch_size: int = 8,
    latent_weight: float = 1.0,
    lpips_weight: float = 1.0,
    mse_weight: float = 1.0,
    extra_weight: float = 1.0,
    mix_prob: float = 0.5,
    w_noise: float = 0.1,
    grey_prob: float = 0.0,
    channels: Sequence[int] = DEFAULT_CHANNELS,
    head_channels: int = 32,
    hidden: int = 256,
    n_mean_latent: int = 10000,
    lpips_net: str | nn.Module = "alex",
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Encoder:
    """Train an :class:`Encoder` for ``G`` on ``G``'s own samples (and optionally on extra images).

    Each step draws ``batch_size`` styles w+ (:func:`_sample_styles`: mapped z, style mixing, jitter) and their
    images ``x = G.synthesis(w+, noise="const").clamp(-1, 1)``; the loss is
    ``latent_weight * mean(((E(x) - w+) / w_scale)^2) + lpips_weight * LPIPS(G(E(x)), x) + mse_weight * MSE``.
    With ``extra_images``, ``extra_batch_size`` of them (drawn with replacement) add ``extra_weight`` x the image
    loss alone (their w+ is unknown). Adam with a cosine decay to lr / 10. ``G`` is not changed.

    Args:
        G: the generator (any size; ``noise="const"``).
        steps: optimiser steps (>= 1).
        batch_size: generator samples per step.
        lr: Adam's learning rate.
        seed: seeds the encoder's initial weights, the samples, the mixing and the extra-image draws.
        extra_images: optional ``[M, 3, G.size, G.size]`` in [-1, 1] (e.g. renders of the generator's domain).
        extra_batch_size: extra images per step.
        latent_weight, lpips_weight, mse_weight: weights of the latent MSE (in units of w's spread), the image
            LPIPS and the image MSE; the image terms need a generator forward and backward pass per step.
        extra_weight: weight of the extra images' image loss (LPIPS x ``lpips_weight`` + MSE x ``mse_weight``).
        mix_prob: probability that a sample's styles switch to a second w at a random layer.
        w_noise: per-layer Gaussian jitter of the sampled styles, in units of w's spread (0: none).
        grey_prob: probability that the encoder sees a sample as greyscale (the targets stay the colour ones).
        channels, head_channels, hidden: the encoder's shape (:class:`Encoder`).
        n_mean_latent: samples for w's mean and spread (seed ``seed``).
        lpips_net: ``"alex"`` / ``"vgg"`` or an LPIPS module ``(img, ref) -> [N, ...]``.
        device: where to train (default: ``G``'s device).
        progress: ``tqdm.auto`` bar with the running losses.

    Returns:
        The trained encoder in eval mode, on the CPU, with ``train_args`` (the settings, the parameter count,
        ``seconds`` and the last step's losses; saved with it) and ``history`` (``{"total", "latent", "lpips",
        "mse", "extra": [steps] float32}``; not saved).

    Raises:
        UserError: a bad argument or extra-image batch (before any work).
    """
    from tqdm.auto import tqdm

    from .backbones import lpips_model
    from .cli import no_progress

    # 1. check every argument before any work
    _check_train_args(G, steps=steps, batch_size=batch_size, lr=lr, seed=seed, latent_weight=latent_weight,
                      lpips_weight=lpips_weight, mse_weight=mse_weight, extra_weight=extra_weight,
                      extra_batch_size=extra_batch_size, mix_prob=mix_prob, w_noise=w_noise, grey_prob=grey_prob,
                      n_mean_latent=n_mean_latent)
    _check_shape_args(size=G.size, n_latent=G.n_latent, style_dim=G.style_dim, channels=channels,
                      head_channels=head_channels, hidden=hidden)
    extra = None
    if extra_images is not None:
        extra = _check_images(extra_images, G.size, "extra_images")
        if (lpips_weight == 0 and mse_weight == 0) or extra_weight == 0:
            raise UserError("extra images only add an image loss, but lpips_weight and mse_weight (or extra_weight) "
                            "are 0; give image-loss weights or leave extra_images out", argument="extra_images",
                            value=f"{extra.shape[0]} image(s)")
    dev = torch.device(device) if device is not None else G.input.input.device
    G = G.to(dev).eval().requires_grad_(False)
    image_loss = lpips_weight > 0 or mse_weight > 0
    lpips = None
    if lpips_weight > 0:
        lpips = lpips_model(lpips_net, device=dev) if isinstance(lpips_net, str) else lpips_net.to(dev)
    t0 = time.perf_counter()

    # 2. w's mean and per-dimension spread: the encoder predicts offsets in these units
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = torch.randn(n_mean_latent, G.style_dim, generator=gen).to(dev)
        w = torch.cat([G.mapping(z[i:i + 4096]) for i in range(0, n_mean_latent, 4096)]).double()
        w_mean, w_scale = w.mean(0).float(), w.std(0).float().clamp_min(1e-6)

    # 3. the encoder, initialised from the seed without touching the caller's global RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        E = Encoder(G.size, G.n_latent, G.style_dim, channels=channels, head_channels=head_channels, hidden=hidden)
    with torch.no_grad():
        E.w_mean.copy_(w_mean.cpu())
        E.w_scale.copy_(w_scale.cpu())
    E = E.to(dev).train()
    opt = torch.optim.Adam(E.parameters(), lr=lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.1 + 0.45 * (1 + math.cos(math.pi * s / steps)))

    def image_terms(w_hat: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean LPIPS and pixel MSE between ``G(w_hat)`` and ``x`` (zeros when their weight is 0)."""
        y = G.synthesis(w_hat, noise="const")
        d = lpips(y, x).mean() if lpips is not None else y.new_zeros(())
        m = F.mse_loss(y, x) if mse_weight > 0 else y.new_zeros(())
        return d, m

    # 4. the training loop
    keys = ("total", "latent", "lpips", "mse", "extra")
    history = {k: torch.zeros(steps) for k in keys}
    bar = tqdm(range(steps), desc="train encoder", disable=no_progress(progress), leave=False)
    for step in bar:
        # 4a. a batch of styles and their images (no gradient through the generator here)
        with torch.no_grad():
            w_true = _sample_styles(G, batch_size, gen, mix_prob=mix_prob, w_noise=w_noise, w_scale=w_scale)
            x = G.synthesis(w_true, noise="const").clamp(-1, 1)
            seen = _grey(x, torch.rand(batch_size, generator=gen).to(dev) < grey_prob) if grey_prob > 0 else x
        # 4b. latent loss to the true styles, image loss after synthesis
        w_hat = E(seen)
        latent = (((w_hat - w_true) / w_scale) ** 2).mean()
        d, m = image_terms(w_hat, x) if image_loss else (latent.new_zeros(()), latent.new_zeros(()))
        total = latent_weight * latent + lpips_weight * d + mse_weight * m
        # 4c. extra images: only the image loss is possible
        ex = latent.new_zeros(())
        if extra is not None:
            idx = torch.randint(0, extra.shape[0], (extra_batch_size,), generator=gen)
            xe = extra[idx].to(dev)
            de, me = image_terms(E(xe), xe)
            ex = lpips_weight * de + mse_weight * me
            total = total + extra_weight * ex
        # 4d. one Adam step
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        for k, v in zip(keys, (total, latent, d, m, ex)):
            history[k][step] = float(v.detach())
        if step % 10 == 0 or step == steps - 1:
            bar.set_postfix(latent=f"{float(history['latent'][step]):.3f}",
                            lpips=f"{float(history['lpips'][step]):.3f}")

    # 5. the result: eval mode, on the CPU, with its settings
    E = E.eval().cpu()
    last = max(1, steps // 20)  # the mean over the last 5 % of the steps
    E.train_args = {  # type: ignore[attr-defined]
        "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
        "extra_images": 0 if extra is None else int(extra.shape[0]), "extra_batch_size": extra_batch_size,
        "latent_weight": latent_weight, "lpips_weight": lpips_weight, "mse_weight": mse_weight,
        "extra_weight": extra_weight, "mix_prob": mix_prob, "w_noise": w_noise, "grey_prob": grey_prob,
        "n_mean_latent": n_mean_latent, "noise": "const",
        "lpips_net": lpips_net if isinstance(lpips_net, str) else type(lpips_net).__name__,
        "parameters": parameter_count(E), "seconds": round(time.perf_counter() - t0, 1), "device": str(dev),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "final_losses": {k: float(history[k][-last:].mean()) for k in keys},
    }
    E.history = history  # type: ignore[attr-defined]
    return E


def save_encoder(E: Encoder, path: str | os.PathLike, *, train_args: Mapping[str, Any] | None = None) -> Path:
    """Save ``E`` atomically as ``{"format", "state_dict", "config", "train_args"}`` (float32, CPU).

    Args:
        E: the encoder.
        path: the ``.pt`` file (parent folders are created).
        train_args: JSON-like metadata to store (default: ``E.train_args`` when present, else ``{}``).

    Returns:
        The written path.

    Raises:
        UserError: not an encoder, or ``train_args`` that are not JSON-like.
    """
    from .files import atomic_torch_save

    if not isinstance(E, Encoder):
        raise UserError(f"must be a ddsutils.core.encoder.Encoder, got {type(E).__name__}", argument="E")
    args = dict(train_args if train_args is not None else getattr(E, "train_args", {}))
    try:  # plain JSON types only, so that torch.load(weights_only=True) reads the file
        args = json.loads(json.dumps(args))
    except (TypeError, ValueError) as exc:
        raise UserError(f"must hold JSON-like values only: {exc}", argument="train_args") from exc
    payload = {"format": FORMAT,
               "state_dict": {k: v.detach().float().cpu().contiguous().clone() for k, v in E.state_dict().items()},
               "config": json.loads(json.dumps(E.config)), "train_args": args}
    return atomic_torch_save(payload, path)


def load_encoder(path: str | os.PathLike, *, generator: Generator | None = None,
                 device: str | torch.device = "cpu") -> Encoder:
    """Load an encoder saved by :func:`save_encoder` (``torch.load(weights_only=True)``, strict state dict).

    Args:
        path: the ``.pt`` file.
        generator: when given, the encoder must fit it (:func:`check_compatible`).
        device: where the encoder goes.

    Returns:
        The encoder in eval mode, with its ``train_args``.

    Raises:
        EncoderError: no such file, not a PyTorch file, a checkpoint that is not an encoder (another format, missing
            or unexpected keys, other shapes), NaN / infinite weights, or an encoder for another generator.
    """
    from .files import NotACheckpointError, UnsafeCheckpointError, nonfinite_tensors, torch_load

    p = Path(path)
    if not p.is_file():
        raise EncoderError("no such file; train one first (python -m ddsutils.toy.anchoring train --out FILE)",
                           value=str(p))
    # 1. the container: a weights-only torch file
    try:
        data = torch_load(p)
    except NotACheckpointError as exc:
        raise EncoderError(f"is not a PyTorch file or is damaged ({exc.detail}); train or copy it again",
                           value=str(p)) from exc
    except UnsafeCheckpointError as exc:
        raise EncoderError(f"pickles code outside the weights-only allow-list ({', '.join(exc.globals)}); it was "
                           "not loaded", value=str(p)) from exc
    # 2. the layout: an encoder file of this format
    if not isinstance(data, Mapping) or data.get("format") != FORMAT or not isinstance(data.get("config"), Mapping) \
            or not isinstance(data.get("state_dict"), Mapping):
        what = (f"format {data.get('format')!r}, keys {sorted(map(str, data))[:6]}" if isinstance(data, Mapping)
                else type(data).__name__)
        raise EncoderError(f"is not a ddsutils encoder file (expected format {FORMAT!r} with state_dict and config; "
                           f"got {what})", value=str(p))
    cfg = dict(data["config"])
    try:
        E = Encoder(cfg["size"], cfg["n_latent"], cfg["style_dim"], channels=cfg["channels"],
                    head_channels=cfg["head_channels"], hidden=cfg["hidden"])
    except (KeyError, TypeError, UserError) as exc:
        raise EncoderError(f"has an unusable config {cfg}: {exc}", value=str(p)) from exc
    # 3. the weights: finite, and exactly the keys and shapes of that encoder
    sd = data["state_dict"]
    bad = nonfinite_tensors(sd)
    if bad:
        raise EncoderError(f"has NaN or infinite values in {len(bad)} weight(s) ({', '.join(bad[:5])}); train it "
                           "again", value=str(p))
    try:
        E.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise EncoderError(f"does not fit the encoder of its config (strict load): {' '.join(str(exc).split())}",
                           value=str(p)) from exc
    E.train_args = dict(data.get("train_args", {}))  # type: ignore[attr-defined]
    if generator is not None:
        check_compatible(E, generator)
    return E.to(device).eval()
