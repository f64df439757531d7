"""Train a tiny StyleGAN2 on toy-world renders (CPU-friendly), with resumable, safe checkpoints.

The recipe is StyleGAN2's as implemented by rosinality/stylegan2-pytorch, written from its description:

- non-saturating logistic loss; lazy R1 on real images (``r1`` every ``d_reg_every`` steps, scaled by
  ``d_reg_every``); optional lazy path-length regularisation (``path_reg`` every ``g_reg_every`` steps);
- Adam with betas ``(0, 0.99)``, corrected for lazy regularisation (``ratio = every / (every + 1)``: ``lr * ratio``,
  betas ``(0, 0.99 ** ratio)``);
- style mixing with probability ``mixing`` (one crossover index per batch, uniform in [1, n_latent - 1]);
- generator EMA ``g_ema`` with decay ``0.5 ** (batch / (ema_kimg * 1000))`` (optional StyleGAN2-ADA ramp-up);
- data: fresh :func:`ddsutils.toy.toyworld.render_batch` renders every step, optional horizontal flips.

Every random draw of step ``i`` comes from generators seeded by ``(seed, i, stream)``, so a resumed run
reproduces the uninterrupted one (same device and threads). Run layout (``out_dir``)::

    checkpoints/000500.pt   {"g", "d", "g_ema", "g_optim", "d_optim", "iter", "config", "d_config",
                             "train_args", "loss_log", "mean_path_length"}  (torch.load(weights_only=True))
    log.jsonl               one JSON object per logged step
    samples/000500.png      g_ema on fixed z (noise = the registered constant maps)
    train_args.json         the arguments, readable

Used in: notebooks/08_fewshot_adaptation.ipynb; ``python -m ddsutils.zoo train``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core import cli
from ..core import imageio as viz
from ..core.files import atomic_torch_save, atomic_write_bytes
from .discriminator import Discriminator
from ..core.stylegan2 import Generator, default_channels

__all__ = [
    "PRESETS",
    "resolve_arch",
    "build_generator",
    "build_discriminator",
    "d_logistic_loss",
    "g_nonsaturating_loss",
    "r1_penalty",
    "discriminator_step",
    "path_length_penalty",
    "ema_decay",
    "ema_update",
    "sample_w_plus",
    "real_batch",
    "train_gan",
    "latest_checkpoint",
    "load_training_checkpoint",
    "export_generator",
]

# ----------------------------------------------------------------------------------------------------
# Architectures

#: Named toy architectures. ``channels``/``d_channels`` map resolution -> width (G and D).
PRESETS: dict[str, dict[str, Any]] = {
    # the zoo model: 64 px, ~0.7 M G parameters; chosen from the CPU timings in the zoo report
    "toy64": {"size": 64, "style_dim": 128, "n_mlp": 4,
              "channels": {4: 128, 8: 128, 16: 96, 32: 64, 64: 32},
              "d_channels": {4: 128, 8: 128, 16: 96, 32: 64, 64: 32}},
    # a wider variant (about 2x the compute of toy64)
    "toy64-wide": {"size": 64, "style_dim": 256, "n_mlp": 4,
                   "channels": {4: 128, 8: 128, 16: 128, 32: 128, 64: 64},
                   "d_channels": {4: 128, 8: 128, 16: 128, 32: 128, 64: 64}},
    # micro models for tests
    "micro16": {"size": 16, "style_dim": 16, "n_mlp": 2,
                "channels": {4: 16, 8: 16, 16: 8}, "d_channels": {4: 16, 8: 16, 16: 8}},
    "micro32": {"size": 32, "style_dim": 16, "n_mlp": 2,
                "channels": {4: 16, 8: 16, 16: 8, 32: 8}, "d_channels": {4: 16, 8: 16, 16: 8, 32: 8}},
}


def resolve_arch(preset: str | None = "toy64", *, size: int | None = None, style_dim: int | None = None,
                 n_mlp: int | None = None, channel_max: int | None = None,
                 channels: Mapping[int, int] | None = None, d_channels: Mapping[int, int] | None = None,
                 lr_mlp: float = 0.01) -> dict[str, Any]:
    """Architecture dict from a preset plus overrides.

    Without a preset, channels default to rosinality's ``default_channels`` (``channel_multiplier`` 2);
    ``channel_max`` caps every width of G and D. ``d_channels`` defaults to ``channels``.

    Returns:
        ``{"size", "style_dim", "n_mlp", "lr_mlp", "channels": {str(res): int}, "d_channels": {...}}``
        (string keys so that it round-trips through JSON and ``weights_only`` checkpoints).
    """
    base: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
        base = copy.deepcopy(PRESETS[preset])
    size = int(size if size is not None else base.get("size", 64))
    if size < 8 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 8, got {size}")
    style_dim = int(style_dim if style_dim is not None else base.get("style_dim", 512))
    n_mlp = int(n_mlp if n_mlp is not None else base.get("n_mlp", 8))
    g_ch = {int(k): int(v) for k, v in (channels or base.get("channels") or default_channels()).items()}
    d_ch = {int(k): int(v) for k, v in (d_channels or (base.get("d_channels") if channels is None else None)
                                        or g_ch).items()}
    if channel_max is not None:
        g_ch = {r: min(c, int(channel_max)) for r, c in g_ch.items()}
        d_ch = {r: min(c, int(channel_max)) for r, c in d_ch.items()}
    res = [2 ** i for i in range(2, int(math.log2(size)) + 1)]
    for name, ch in (("channels", g_ch), ("d_channels", d_ch)):
        missing = [r for r in res if r not in ch]
        if missing:
            raise ValueError(f"{name} lacks resolutions {missing} for size {size}")
    return {"size": size, "style_dim": style_dim, "n_mlp": n_mlp, "lr_mlp": float(lr_mlp),
            "channels": {str(r): g_ch[r] for r in res}, "d_channels": {str(r): d_ch[r] for r in res}}


def build_generator(cfg: Mapping[str, Any]) -> Generator:
    """A :class:`Generator` from ``Generator.config`` (or :func:`resolve_arch`'s dict)."""
    return Generator(int(cfg["size"]), int(cfg["style_dim"]), int(cfg["n_mlp"]),
                     channels={int(k): int(v) for k, v in cfg["channels"].items()},
                     blur_kernel=tuple(cfg.get("blur_kernel", (1, 3, 3, 1))),
                     lr_mlp=float(cfg.get("lr_mlp", 0.01)))


def build_discriminator(cfg: Mapping[str, Any]) -> Discriminator:
    """A :class:`Discriminator` from ``Discriminator.config`` (``channels``) or an arch dict (``d_channels``)."""
    ch = cfg["d_channels"] if "d_channels" in cfg else cfg["channels"]
    return Discriminator(int(cfg["size"]), channels={int(k): int(v) for k, v in ch.items()},
                         blur_kernel=tuple(cfg.get("blur_kernel", (1, 3, 3, 1))),
                         stddev_group=int(cfg.get("stddev_group", 4)),
                         patch_res=cfg.get("patch_res"))


# ----------------------------------------------------------------------------------------------------
# Losses and updates


def d_logistic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """``mean softplus(-D(x)) + mean softplus(D(G(z)))`` over all logits (image- or patch-level)."""
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """``mean softplus(-D(G(z)))`` (non-saturating generator loss)."""
    return F.softplus(-fake_pred).mean()


def r1_penalty(real_pred: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """R1: ``E_x ||grad_x D(x)||^2`` (per-sample squared gradient norm, batch mean); needs ``real_img.requires_grad``.

    ``real_pred`` is ``[N, 1]`` (patch logits should be averaged per sample first).
    """
    (grad,) = torch.autograd.grad(real_pred.sum(), real_img, create_graph=True)
    return grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()


def discriminator_step(D: nn.Module, d_optim: torch.optim.Optimizer, real: torch.Tensor, fake: torch.Tensor, *,
                       step: int, r1: float, d_reg_every: int
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One image-level discriminator update: the logistic loss on ``real`` / ``fake``, then (every ``d_reg_every``
    steps, when ``r1 > 0``) the lazy R1 step on ``real``.

    Returns:
        ``(d_loss, real_pred, fake_pred, r1_loss)``; ``r1_loss`` is ``None`` on steps without the R1 update.
    """
    real_pred, fake_pred = D(real), D(fake)
    d_loss = d_logistic_loss(real_pred, fake_pred)
    D.zero_grad(set_to_none=True)
    d_loss.backward()
    d_optim.step()
    r1_loss = None
    if r1 > 0 and d_reg_every > 0 and step % d_reg_every == 0:
        real_r = real.detach().requires_grad_(True)
        pred = D(real_r)
        r1_loss = r1_penalty(pred, real_r)
        D.zero_grad(set_to_none=True)
        (r1 / 2 * r1_loss * d_reg_every + 0 * pred[0, 0]).backward()
        d_optim.step()
    return d_loss, real_pred, fake_pred, r1_loss


def path_length_penalty(img: torch.Tensor, w_plus: torch.Tensor, mean_path_length: float, *,
                        decay: float = 0.01, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, float, torch.Tensor]:
    """StyleGAN2 path-length regulariser.

    ``J^T y`` for ``y ~ N(0, 1/(H W))`` per pixel; ``L = sqrt(mean_layers ||J^T y||^2)`` per sample; penalty
    ``mean (L - a)^2`` with ``a`` the running mean of ``L`` (update rate ``decay``).

    Returns:
        ``(penalty, new_mean_path_length, path_lengths [N])``.
    """
    h, w = img.shape[2], img.shape[3]
    y = torch.randn(img.shape, generator=generator).to(img) / math.sqrt(h * w)
    (grad,) = torch.autograd.grad((img * y).sum(), w_plus, create_graph=True)
    lengths = torch.sqrt(grad.pow(2).sum(2).mean(1))
    new_mean = mean_path_length + decay * (lengths.mean().item() - mean_path_length)
    return (lengths - new_mean).pow(2).mean(), float(new_mean), lengths.detach()


def ema_decay(batch: int, *, ema_kimg: float, cur_nimg: int | None = None,
              ema_rampup: float | None = None) -> float:
    """Per-step EMA decay for a half-life of ``ema_kimg`` thousand images: ``0.5 ** (batch / (ema_kimg 1000))``.

    With ``ema_rampup`` (StyleGAN2-ADA) the half-life is capped at ``cur_nimg * ema_rampup`` images.
    """
    nimg = ema_kimg * 1000.0
    if ema_rampup is not None and cur_nimg is not None:
        nimg = min(nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(nimg, 1e-8))


@torch.no_grad()
def ema_update(g_ema: nn.Module, g: nn.Module, decay: float) -> None:
    """``p_ema <- decay p_ema + (1 - decay) p`` for every parameter (buffers are left alone)."""
    for p_ema, p in zip(g_ema.parameters(), g.parameters()):
        p_ema.lerp_(p.detach(), 1.0 - decay)


def sample_w_plus(G: Generator, n: int, *, mixing: float, generator: torch.Generator,
                  device: torch.device | str = "cpu", z: torch.Tensor | None = None) -> torch.Tensor:
    """Map z to ``w+ [n, L, D]``, with style mixing with probability ``mixing``.

    Mixing: a second z, one crossover index ``k`` uniform in [1, L - 1] for the batch; layers ``< k`` use the
    first w. Draws from ``generator`` (CPU); the result keeps the graph of ``G.mapping``.
    """
    d, L = G.style_dim, G.n_latent
    z1 = z if z is not None else torch.randn(n, d, generator=generator).to(device)
    mix = mixing > 0 and float(torch.rand((), generator=generator)) < mixing
    w1 = G.mapping(z1)
    if not mix:
        return w1[:, None, :].expand(-1, L, -1)
    z2 = torch.randn(n, d, generator=generator).to(device)
    k = int(torch.randint(1, L, (), generator=generator))
    w2 = G.mapping(z2)
    return torch.cat([w1[:, None, :].expand(-1, k, -1), w2[:, None, :].expand(-1, L - k, -1)], dim=1)


def real_batch(n: int, *, style: str, size: int, seed: int, flip: bool,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` fresh toy-world renders ``[n, 3, size, size]`` float32 in [-1, 1]; random h-flip (p = 0.5)."""
    from . import toyworld

    img, _ = toyworld.render_batch(n, style=style, size=size, seed=seed)
    if flip:
        m = torch.rand(n, generator=generator) < 0.5
        img = torch.where(m[:, None, None, None], img.flip(-1), img)
    return img


# ----------------------------------------------------------------------------------------------------
# Run bookkeeping shared with ddsutils.fewshot


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def stream_seed(seed: int, i: int, stream: str) -> int:
    """A 63-bit seed for random stream ``stream`` of step ``i`` of a run seeded ``seed`` (stable hash)."""
    h = hashlib.blake2b(f"{seed}:{stream}:{i}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


def rng(seed: int, i: int, stream: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for ``stream_seed(seed, i, stream)``."""
    return torch.Generator().manual_seed(stream_seed(seed, i, stream))


def _f(t: torch.Tensor) -> float:
    """A tensor's value as a Python float (detached)."""
    return float(t.detach().item())


def _atomic_write_text(text: str, dst: Path) -> None:
    atomic_write_bytes(text.encode(), dst)


def _cpu_state(module_or_optim: Any) -> dict:
    """A state dict with every tensor on the CPU (plain containers only)."""
    def move(x: Any) -> Any:
        if torch.is_tensor(x):
            return x.detach().cpu().clone()
        if isinstance(x, Mapping):
            return {k: move(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(move(v) for v in x)
        return x
    return move(module_or_optim.state_dict())


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest iteration in ``out_dir/checkpoints`` (``NNNNNN.pt``), or ``None``."""
    d = Path(out_dir) / "checkpoints"
    if not d.is_dir():
        return None
    found = [(int(p.stem), p) for p in d.glob("*.pt") if p.stem.isdigit()]
    return max(found)[1] if found else None


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` onto the CPU, with a clear error for non-training files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable weights-only torch checkpoint: {exc}") from exc
    need = {"g", "d", "g_ema", "iter", "config"}
    if not isinstance(ckpt, Mapping) or not need <= set(ckpt):
        have = sorted(ckpt) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ValueError(f"{path} is not a ddsutils training checkpoint (needs {sorted(need)}, has {have}); "
                         "exported generators ({'g_ema', 'config'}) cannot be resumed or adapted")
    return dict(ckpt)


class RunLog:
    """Loss log kept in memory (saved in checkpoints) and mirrored to ``log.jsonl``.

    On resume the file is rewritten from the checkpoint's entries, dropping steps logged after it.
    """

    def __init__(self, path: Path, entries: Sequence[Mapping[str, Any]] = ()):
        self.path = path
        self.entries: list[dict[str, Any]] = [dict(e) for e in entries]
        _atomic_write_text("".join(json.dumps(e) + "\n" for e in self.entries), path)

    def append(self, entry: Mapping[str, Any]) -> None:
        e = {k: (round(float(v), 6) if isinstance(v, float) else v) for k, v in entry.items()}
        self.entries.append(e)
        with open(self.path, "a") as f:
            f.write(json.dumps(e) + "\n")


def check_resume_args(saved: Mapping[str, Any], now: Mapping[str, Any], *, path: Path,
                      free: Sequence[str]) -> None:
    """Raise when a resumed run's arguments differ from the checkpoint's (except those in ``free``)."""
    diff = [f"{k}: checkpoint {saved.get(k)!r} vs now {now.get(k)!r}"
            for k in sorted(set(saved) | set(now)) if k not in free and saved.get(k) != now.get(k)]
    if diff:
        raise ValueError(f"cannot resume from {path}: arguments differ ({'; '.join(diff)}). Use a new out_dir, "
                         "pass resume=False to start over, or call with the original arguments.")


def prune_checkpoints(out_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest ``checkpoints/NNNNNN.pt`` (``keep <= 0``: keep all)."""
    if keep <= 0:
        return
    found = sorted((int(p.stem), p) for p in (out_dir / "checkpoints").glob("*.pt") if p.stem.isdigit())
    for _, p in found[:-keep]:
        p.unlink(missing_ok=True)


def progress_bar(start: int, total: int, *, enabled: bool, desc: str):
    """``tqdm.auto`` bar over ``range(start, total)``; refreshes every 30 s when stderr is not a terminal."""
    from tqdm.auto import tqdm

    tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return tqdm(range(start, total), initial=start, total=total, disable=cli.no_progress(enabled), desc=desc,
                dynamic_ncols=True, mininterval=0.5 if tty else 30.0, smoothing=0.05,
                file=None if tty else _LineWriter(sys.stderr))


class _LineWriter:
    """File wrapper for log files: tqdm's carriage-return refreshes become one line each."""

    def __init__(self, f):
        self.f = f

    def write(self, s: str) -> None:
        lines = [ln for ln in s.replace("\r", "\n").split("\n") if ln.strip()]
        if lines:
            self.f.write("\n".join(lines) + "\n")

    def flush(self) -> None:
        self.f.flush()


def adam_for(params, *, lr: float, reg_every: int) -> torch.optim.Adam:
    """Adam with betas ``(0, 0.99)``, lr and betas corrected for lazy regularisation every ``reg_every`` steps."""
    ratio = reg_every / (reg_every + 1) if reg_every > 0 else 1.0
    return torch.optim.Adam(params, lr=lr * ratio, betas=(0.0 ** ratio, 0.99 ** ratio))


@torch.no_grad()
def sample_grid(G: Generator, z: torch.Tensor, path: Path, *, nrow: int = 8,
                batch: int = 16) -> Path:
    """Render ``G(z)`` (constant noise) in chunks and save a PNG grid."""
    was = G.training
    G.eval()
    dev = next(G.parameters()).device
    imgs = [G(z[i:i + batch].to(dev), noise="const").cpu() for i in range(0, len(z), batch)]
    G.train(was)
    return viz.save_png(torch.cat(imgs), path, nrow=nrow)


# ----------------------------------------------------------------------------------------------------
# Training


def path_reg_step(G: Generator, g_optim: torch.optim.Optimizer, *, seed: int, i: int, batch: int,
                  path_batch_shrink: int, mixing: float, path_reg: float, g_reg_every: int,
                  mean_path_length: Any, device: torch.device) -> tuple[float, Any]:
    """One lazy path-length regularisation step of ``G`` (seeded by ``(seed, i, "path")``).

    Returns ``(penalty value, updated mean path length)``. Used by :func:`train_gan` and
    :func:`ddsutils.fewshot.adapt`.
    """
    gen = rng(seed, i, "path")
    pb = max(1, batch // path_batch_shrink)
    w = sample_w_plus(G, pb, mixing=mixing, generator=gen, device=device)
    if not w.requires_grad:  # mapping network frozen (fewshot.adapt(freeze=...)): J is still taken w.r.t. w
        w = w.detach().requires_grad_(True)
    img = G.synthesis(w, noise=G.make_noise(pb, generator=gen))
    pl, mean_path_length, _ = path_length_penalty(img, w, mean_path_length, generator=gen)
    G.zero_grad(set_to_none=True)
    (path_reg * g_reg_every * pl + 0 * img[0, 0, 0, 0]).backward()
    g_optim.step()
    return _f(pl), mean_path_length


def train_gan(*, out_dir: str | os.PathLike, style: str = "natural", preset: str | None = "toy64",
              size: int | None = None, style_dim: int | None = None, n_mlp: int | None = None,
              channel_max: int | None = None, channels: Mapping[int, int] | None = None,
              d_channels: Mapping[int, int] | None = None, lr_mlp: float = 0.01,
              batch: int = 16, iters: int = 6000, lr: float = 0.002, r1: float = 10.0, d_reg_every: int = 16,
              path_reg: float = 2.0, g_reg_every: int = 4, path_batch_shrink: int = 2, mixing: float = 0.9,
              ema_kimg: float = 10.0, ema_rampup: float | None = None, flip: bool = True, seed: int = 0,
              device: str | torch.device = "auto", resume: bool = True, sample_every: int = 250,
              ckpt_every: int = 500, log_every: int = 10, keep_ckpts: int = 3, n_sample: int = 32,
              threads: int | None = None, progress: bool = True,
              data_fn: Callable[..., torch.Tensor] | None = None) -> Path:
    """Train a StyleGAN2 from scratch on fresh toy-world renders of one style.

    Args:
        out_dir: run folder (checkpoints, ``log.jsonl``, ``samples/``); created if missing.
        style: toy-world style of the real images (``"natural"``, ``"sketch"``, ``"caricature"``).
        preset: architecture preset (:data:`PRESETS`); ``size``/``style_dim``/``n_mlp``/``channel_max``/
            ``channels``/``d_channels``/``lr_mlp`` override it (see :func:`resolve_arch`).
        batch: images per step (a multiple of 4 keeps the minibatch-stddev groups full).
        iters: total number of steps (a resumed run continues up to it).
        lr: Adam learning rate (before the lazy-regularisation correction).
        r1: R1 weight (gamma); ``d_reg_every``: R1 interval (0 disables R1).
        path_reg: path-length weight (0 disables); ``g_reg_every``: its interval; ``path_batch_shrink``:
            batch divisor for it.
        mixing: style-mixing probability.
        ema_kimg: EMA half-life in thousands of images; ``ema_rampup``: optional ADA-style ramp-up.
        flip: random horizontal flips of the real images.
        seed: seeds the initial weights, the data stream and every random draw (see :func:`stream_seed`).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        resume: continue from the latest checkpoint in ``out_dir`` (arguments must match except
            ``iters``, ``sample_every``, ``ckpt_every``, ``log_every``, ``keep_ckpts``, ``device``,
            ``threads``, ``progress``).
        sample_every / ckpt_every / log_every: intervals (steps); a checkpoint and a sample grid are always
            written at the last step.
        keep_ckpts: how many checkpoints to keep (<= 0 keeps all).
        n_sample: images in the sample grids (fixed z).
        threads: ``torch.set_num_threads`` for this process when given.
        progress: show a ``tqdm.auto`` bar with the losses.
        data_fn: replaces :func:`real_batch` (signature ``(n, *, style, size, seed, flip, generator)``),
            e.g. for tests.

    Returns:
        Path of the last checkpoint (``out_dir/checkpoints/{iters:06d}.pt``).

    Used in: notebooks/08_fewshot_adaptation.ipynb; ``python -m ddsutils.zoo train``.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    out = Path(out_dir)
    dev = resolve_device(device)
    arch = resolve_arch(preset, size=size, style_dim=style_dim, n_mlp=n_mlp, channel_max=channel_max,
                        channels=channels, d_channels=d_channels, lr_mlp=lr_mlp)
    if batch < 1 or iters < 0:
        raise ValueError(f"batch must be >= 1 and iters >= 0, got batch={batch}, iters={iters}")
    args: dict[str, Any] = {
        "kind": "train_gan", "style": style, "preset": preset, "arch": arch, "batch": batch, "iters": iters,
        "lr": lr, "r1": r1, "d_reg_every": d_reg_every, "path_reg": path_reg, "g_reg_every": g_reg_every,
        "path_batch_shrink": path_batch_shrink, "mixing": mixing, "ema_kimg": ema_kimg,
        "ema_rampup": ema_rampup, "flip": flip, "seed": seed, "sample_every": sample_every,
        "ckpt_every": ckpt_every, "log_every": log_every, "keep_ckpts": keep_ckpts, "n_sample": n_sample,
        "device": str(dev), "threads": threads,
    }
    free = ("iters", "sample_every", "ckpt_every", "log_every", "keep_ckpts", "device", "threads", "n_sample")
    data = data_fn or real_batch

    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(stream_seed(seed, 0, "init"))
        G = build_generator(arch).to(dev).train()
        D = build_discriminator(arch).to(dev).train()
    g_ema = copy.deepcopy(G).eval().requires_grad_(False)
    g_optim = adam_for(G.parameters(), lr=lr, reg_every=g_reg_every if path_reg > 0 else 0)
    d_optim = adam_for(D.parameters(), lr=lr, reg_every=d_reg_every if r1 > 0 else 0)
    start, mean_path_length, log_entries = 0, 0.0, []

    last = latest_checkpoint(out) if resume else None
    if last is not None:
        ck = load_training_checkpoint(last)
        check_resume_args(ck.get("train_args", {}), args, path=last, free=free)
        G.load_state_dict(ck["g"])
        D.load_state_dict(ck["d"])
        g_ema.load_state_dict(ck["g_ema"])
        g_optim.load_state_dict(ck["g_optim"])
        d_optim.load_state_dict(ck["d_optim"])
        start, mean_path_length = int(ck["iter"]), float(ck.get("mean_path_length", 0.0))
        log_entries = list(ck.get("loss_log", []))
        if start >= iters:
            return last
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(json.dumps(args, indent=2) + "\n", out / "train_args.json")
    log = RunLog(out / "log.jsonl", log_entries)
    z_sample = torch.randn(n_sample, G.style_dim, generator=torch.Generator().manual_seed(seed + 1_000_003))
    if start == 0:
        sample_grid(g_ema, z_sample, out / "samples" / f"{0:06d}.png")

    def save(i: int) -> Path:
        ck = {"g": _cpu_state(G), "d": _cpu_state(D), "g_ema": _cpu_state(g_ema),
              "g_optim": _cpu_state(g_optim), "d_optim": _cpu_state(d_optim), "iter": i,
              "config": dict(G.config), "d_config": dict(D.config), "train_args": args,
              "loss_log": log.entries, "mean_path_length": mean_path_length}
        p = atomic_torch_save(ck, out / "checkpoints" / f"{i:06d}.pt")
        prune_checkpoints(out, keep_ckpts)
        return p

    bar = progress_bar(start, iters, enabled=progress, desc=f"train {style}")
    r1_val = path_val = float("nan")
    t0, path = time.perf_counter(), last
    for i in bar:
        real = data(batch, style=style, size=arch["size"], seed=stream_seed(seed, i, "data"), flip=flip,
                    generator=rng(seed, i, "flip")).to(dev)

        # -- discriminator ------------------------------------------------------------------------
        G.requires_grad_(False)
        D.requires_grad_(True)
        gen = rng(seed, i, "d_fake")
        with torch.no_grad():
            fake = G.synthesis(sample_w_plus(G, batch, mixing=mixing, generator=gen, device=dev),
                               noise=G.make_noise(batch, generator=gen))
        d_loss, real_pred, fake_pred, r1_loss = discriminator_step(D, d_optim, real, fake, step=i, r1=r1,
                                                                   d_reg_every=d_reg_every)
        if r1_loss is not None:
            r1_val = _f(r1_loss)

        # -- generator -----------------------------------------------------------------------------
        G.requires_grad_(True)
        D.requires_grad_(False)
        gen = rng(seed, i, "g_fake")
        fake = G.synthesis(sample_w_plus(G, batch, mixing=mixing, generator=gen, device=dev),
                           noise=G.make_noise(batch, generator=gen))
        g_loss = g_nonsaturating_loss(D(fake))
        G.zero_grad(set_to_none=True)
        g_loss.backward()
        g_optim.step()
        if path_reg > 0 and g_reg_every > 0 and i % g_reg_every == 0:
            path_val, mean_path_length = path_reg_step(
                G, g_optim, seed=seed, i=i, batch=batch, path_batch_shrink=path_batch_shrink, mixing=mixing,
                path_reg=path_reg, g_reg_every=g_reg_every, mean_path_length=mean_path_length, device=dev)
        decay = ema_decay(batch, ema_kimg=ema_kimg, cur_nimg=(i + 1) * batch, ema_rampup=ema_rampup)
        ema_update(g_ema, G, decay)

        step = i + 1
        if step % log_every == 0 or step == iters:
            dt = time.perf_counter() - t0
            t0 = time.perf_counter()
            entry = {"iter": step, "d": _f(d_loss), "g": _f(g_loss), "r1": r1_val, "path": path_val,
                     "mean_path_length": mean_path_length, "real_score": _f(real_pred.mean()),
                     "fake_score": _f(fake_pred.mean()), "ema_decay": decay,
                     "sec_per_iter": dt / (step - (log.entries[-1]["iter"] if log.entries else start))}
            log.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                        for k, v in entry.items()})
            bar.set_postfix(d=f"{_f(d_loss):.3f}", g=f"{_f(g_loss):.3f}", r1=f"{r1_val:.3f}",
                            refresh=False)
        if step % sample_every == 0 or step == iters:
            sample_grid(g_ema, z_sample, out / "samples" / f"{step:06d}.png")
        if step % ckpt_every == 0 or step == iters:
            path = save(step)
    bar.close()
    if path is None:  # iters == 0
        path = save(0)
    return path


# ----------------------------------------------------------------------------------------------------
# Export


def export_generator(ckpt: str | os.PathLike | Mapping[str, Any], dst: str | os.PathLike, *,
                     n_mean: int = 4096, seed: int = 0, meta: Mapping[str, Any] | None = None) -> Path:
    """Write a training checkpoint's ``g_ema`` as ``{"g_ema", "config", "latent_avg", "meta"}`` (atomic).

    The file loads with :func:`ddsutils.stylegan2.load_generator` (strictly) and with
    ``torch.load(weights_only=True)``. ``latent_avg [1, D]`` is the mean of ``n_mean`` mapped seeded z
    (the truncation centre).

    Args:
        ckpt: training checkpoint path or dict (from :func:`train_gan` or :func:`ddsutils.fewshot.adapt`).
        dst: output file.
        n_mean: samples for ``latent_avg``; ``seed``: their seed.
        meta: extra primitives stored under ``"meta"`` (the checkpoint's ``train_args`` and ``iter`` are
            always included).

    Returns:
        ``dst`` as a ``Path``.
    """
    ck = load_training_checkpoint(ckpt) if not isinstance(ckpt, Mapping) else ckpt
    G = build_generator(ck["config"])
    G.load_state_dict(ck["g_ema"])
    G.eval()
    out: dict[str, Any] = {
        "g_ema": {k: v.detach().cpu().clone() for k, v in G.state_dict().items()},
        "config": dict(G.config),
        "latent_avg": G.mean_latent(n_mean, seed=seed),
        "meta": {"iter": int(ck["iter"]), "train_args": ck.get("train_args", {}), **dict(meta or {})},
    }
    return atomic_torch_save(out, dst)
