"""Optimisation-based inversion of images into a generator's latent space (``project``).

``project(G, target)`` finds per-image styles ``w`` (or ``w+``) whose synthesis matches ``target`` under
LPIPS + a pixel MSE, in the shape of NVlabs' ``projector.py``: Adam on the latent from the mean ``w`` (or the
best of a few random samples), the generator's noise maps fixed (or optimised with NVlabs' noise
regularisation). A mask restricts the loss to a region. Every image of a batch is inverted independently of
the others; seeded runs are bit-identical on the CPU.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .errors import UserError
from .precision import check_precision, precision_context
from .stylegan2 import Generator

__all__ = ["LATENT_SPACES", "INITS", "ProjectionResult", "project", "noise_regularisation"]

#: Latent spaces :func:`project` optimises in.
LATENT_SPACES = ("w", "w+")
#: Starting points: the mean w, or per image the best of ``init_samples`` random w (a tensor also works).
INITS = ("mean", "best_of")


@dataclass
class ProjectionResult:
    """What :func:`project` returns.

    Attributes:
        latent: ``[N, D]`` (``"w"``) or ``[N, L, D]`` (``"w+"``) float32, detached, on the CPU.
        w_plus: ``[N, L, D]``, the latent as per-layer styles (``G.synthesis(w_plus, noise=noise)``).
        image: ``[N, 3, H, W]`` float32 in [-1, 1], the reconstruction (CPU).
        noise: the noise maps used (``num_layers`` tensors ``[N, 1, r, r]``), or ``"const"``.
        history: ``{"total" | "lpips" | "mse" | "noise_reg": [num_steps, N]}`` per-step, per-image losses.
        config: the settings of the run. timings: ``total_s`` and ``per_image_s``.
    """

    latent: torch.Tensor
    w_plus: torch.Tensor
    image: torch.Tensor
    noise: list[torch.Tensor] | str
    history: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def loss(self) -> torch.Tensor:
        """``[N]`` final total loss per image (the last step's; empty history: NaN)."""
        h = self.history["total"]
        return h[-1] if len(h) else torch.full((self.image.shape[0],), float("nan"))


def _check_target(target: Any, G: Generator) -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise UserError(f"must be a torch.Tensor [N, 3, {G.size}, {G.size}] in [-1, 1], got {type(target).__name__}",
                        argument="target")
    if target.ndim == 3:
        target = target[None]
    if target.ndim != 4 or target.shape[1] != 3 or target.shape[0] == 0:
        raise UserError(f"must be [N, 3, {G.size}, {G.size}], got shape {list(target.shape)}", argument="target")
    if tuple(target.shape[-2:]) != (G.size, G.size):
        raise UserError(f"is {target.shape[-1]}x{target.shape[-2]} px but the generator makes {G.size} px images; "
                        "resize it first (ddsutils.core.photo.load_photo does)", argument="target")
    target = target.float()
    if not torch.isfinite(target).all():
        raise UserError("contains NaN or inf", argument="target")
    lo, hi = float(target.min()), float(target.max())
    if lo < -1.05 or hi > 1.05:
        hint = " (it looks like 0..255: use img / 127.5 - 1)" if hi > 2 else ""
        raise UserError(f"values span [{lo:.3g}, {hi:.3g}]; images must be in [-1, 1]{hint}", argument="target")
    return target


def _check_mask(mask: Any, target: torch.Tensor) -> torch.Tensor | None:
    if mask is None:
        return None
    n, _, h, w = target.shape
    if not isinstance(mask, torch.Tensor) or mask.ndim != 4 or mask.shape[1] != 1 or tuple(mask.shape[-2:]) != (h, w):
        got = list(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise UserError(f"must be a tensor [N or 1, 1, {h}, {w}] in [0, 1], got {got}", argument="mask")
    if mask.shape[0] not in (1, n):
        raise UserError(f"has batch {mask.shape[0]} but target has {n}", argument="mask")
    mask = mask.float()
    if not torch.isfinite(mask).all() or float(mask.min()) < 0 or float(mask.max()) > 1:
        raise UserError("must be finite and in [0, 1]", argument="mask")
    if (mask.flatten(1).sum(1) == 0).any():
        raise UserError("is empty for at least one image: nothing to match; give a region or mask=None",
                        argument="mask")
    return mask.expand(n, -1, -1, -1)


def _check_settings(G: Generator, n: int, *, num_steps: Any, lr: Any, latent_space: Any, init: Any,
                    init_samples: Any, mse_weight: Any, noise_weight: Any) -> None:
    if latent_space not in LATENT_SPACES:
        raise UserError(f"must be one of {LATENT_SPACES}", argument="latent_space", value=latent_space)
    if isinstance(init, torch.Tensor):
        shapes = ([n, G.style_dim], [n, G.n_latent, G.style_dim])
        if list(init.shape) not in shapes or not torch.isfinite(init).all():
            raise UserError(f"a starting latent must be a finite w {shapes[0]} or w+ {shapes[1]}, got "
                            f"{list(init.shape)}", argument="init")
        if latent_space == "w" and init.ndim == 3:
            raise UserError("is a w+ latent but latent_space='w'; use latent_space='w+'", argument="init")
    elif init not in INITS:
        raise UserError(f"must be one of {INITS} or a latent tensor", argument="init", value=init)
    for name, value, whole, positive in (("num_steps", num_steps, True, False), ("init_samples", init_samples, True,
                                         True), ("lr", lr, False, True), ("mse_weight", mse_weight, False, False),
                                         ("noise_weight", noise_weight, False, False)):
        ok = isinstance(value, int) if whole else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or not value == value or value < 0 or (positive and value == 0):
            kind = "an integer" if whole else "a number"
            raise UserError(f"must be {kind} {'> 0' if positive else '>= 0'}", argument=name, value=value)


def _best_of(G: Generator, target: torch.Tensor, mask: torch.Tensor | None, lpips: Callable[..., torch.Tensor],
             k: int, seed: int, noise: list[torch.Tensor] | str) -> torch.Tensor:
    """Per image, the w (of ``k`` seeded random samples, the same pool for every image) with the lowest loss."""
    z = torch.randn(k, G.style_dim, generator=torch.Generator().manual_seed(seed)).to(target.device)
    with torch.no_grad():
        w = G.mapping(z)
        best = torch.full((target.shape[0],), float("inf"), device=target.device)
        pick = torch.zeros(target.shape[0], dtype=torch.long, device=target.device)
        for j in range(k):
            img = G.synthesis(w[j:j + 1].expand(target.shape[0], G.n_latent, -1).contiguous(), noise=noise)
            d = _losses(img, target, mask, lpips, mse_weight=0.0)["lpips"]
            better = d < best
            best, pick = torch.where(better, d, best), torch.where(better, j, pick)
    return w[pick]


def _losses(img: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, lpips: Callable[..., torch.Tensor],
            *, mse_weight: float) -> dict[str, torch.Tensor]:
    """Per-image LPIPS and MSE (inside ``mask`` only, when given): ``{"lpips": [N], "mse": [N]}``."""
    if mask is not None:  # the outside is the same grey in both images, so only the region counts
        img, target = img * mask, target * mask
        mse = ((img - target) ** 2).flatten(1).sum(1) / (mask.flatten(1).sum(1) * 3)
    else:
        mse = ((img - target) ** 2).flatten(1).mean(1)
    d = lpips(img, target).reshape(-1)
    return {"lpips": d, "mse": mse, "total": d + mse_weight * mse}


def noise_regularisation(noise: Sequence[torch.Tensor]) -> torch.Tensor:
    """NVlabs' noise regulariser, per image: squared autocorrelation of every map at every scale ``[N]``."""
    reg = torch.zeros(noise[0].shape[0], device=noise[0].device)
    for v in noise:
        while True:
            reg = reg + (v * torch.roll(v, 1, dims=3)).mean(dim=(1, 2, 3)) ** 2
            reg = reg + (v * torch.roll(v, 1, dims=2)).mean(dim=(1, 2, 3)) ** 2
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, kernel_size=2)
    return reg


def project(
    G: Generator,
    target: torch.Tensor,
    *,
    num_steps: int = 300,
    latent_space: str = "w+",
    init: str | torch.Tensor = "mean",
    init_samples: int = 16,
    lr: float = 0.05,
    mse_weight: float = 1.0,
    mask: torch.Tensor | None = None,
    optimise_noise: bool = False,
    noise_weight: float = 1e5,
    lpips_net: str | torch.nn.Module = "alex",
    n_mean_latent: int = 10000,
    seed: int = 0,
    precision: str = "fp32",
    device: str | torch.device | None = None,
    progress: bool = True,
    progress_every: int = 10,
) -> ProjectionResult:
    """Invert images into ``G``: Adam on ``w`` / ``w+`` so that ``G(w)`` matches ``target``.

    Args:
        G: the generator (its weights are not changed).
        target: ``[N, 3, H, W]`` (or ``[3, H, W]``) float in [-1, 1], ``H = W = G.size``.
        num_steps: Adam steps (0: the starting latent's image).
        latent_space: ``"w+"`` (one style per layer, default) or ``"w"`` (one style for all layers).
        init: ``"mean"`` (the mean w of ``n_mean_latent`` samples), ``"best_of"`` (per image, the best of
            ``init_samples`` random w drawn with ``seed``), or a latent ``[N, D]`` / ``[N, L, D]`` to start from.
        init_samples: candidates for ``init="best_of"``.
        lr: Adam learning rate.
        mse_weight: weight of the pixel MSE next to LPIPS (0: LPIPS alone).
        mask: optional ``[N or 1, 1, H, W]`` in [0, 1]: match only this region.
        optimise_noise: also optimise the noise maps (started from fresh N(0, 1) maps drawn with ``seed``),
            with ``noise_weight`` × :func:`noise_regularisation` and re-standardised after every step.
        noise_weight: weight of the noise regulariser (only with ``optimise_noise``).
        lpips_net: LPIPS trunk, ``"alex"`` (default) or ``"vgg"``, or a module ``(img, ref) -> [N, ...]`` distances.
        n_mean_latent: samples for the mean w.
        seed: seeds ``init="best_of"`` and the noise maps; seeded CPU runs are bit-identical.
        precision: ``"fp32"``, ``"bf16"`` (autocast forward passes; latent and Adam float32) or ``"tf32"`` (CUDA).
        device: where to run (default: ``G``'s device).
        progress: ``tqdm.auto`` bar with the mean losses, read every ``progress_every`` steps.

    Returns:
        :class:`ProjectionResult` (latent, ``w_plus``, reconstruction, noise, per-step history).

    Raises:
        UserError: a bad target, mask or setting (before anything runs).
    """
    from tqdm.auto import tqdm

    from .backbones import lpips_model

    # 1. check every input before any work
    target = _check_target(target, G)
    n = target.shape[0]
    mask = _check_mask(mask, target)
    _check_settings(G, n, num_steps=num_steps, lr=lr, latent_space=latent_space, init=init,
                    init_samples=init_samples, mse_weight=mse_weight, noise_weight=noise_weight)
    dev = torch.device(device) if device is not None else G.input.input.device
    check_precision(precision, dev)
    G = G.to(dev).eval().requires_grad_(False)
    target = target.to(dev)
    mask = mask.to(dev) if mask is not None else None
    lpips = lpips_model(lpips_net, device=dev) if isinstance(lpips_net, str) else lpips_net.to(dev)
    t0 = time.perf_counter()

    # 2. noise: the generator's fixed maps, or fresh maps to optimise
    noise: list[torch.Tensor] | str = "const"
    if optimise_noise:
        noise = [m.expand(n, -1, -1, -1).clone() for m in G.make_noise(1, seed=seed)]
        for m in noise:
            m.requires_grad_(True)

    # 3. the starting latent: given, the mean w, or the best of a few samples
    if isinstance(init, torch.Tensor):
        start = init.detach().to(dev).float()
    elif init == "mean":
        start = G.mean_latent(n_mean_latent).to(dev).expand(n, -1)
    else:
        start = _best_of(G, target, mask, lpips, init_samples, seed, noise if isinstance(noise, str) else
                         [m.detach() for m in noise])
    if latent_space == "w+" and start.ndim == 2:
        start = start[:, None].repeat(1, G.n_latent, 1)
    latent = start.clone().contiguous().requires_grad_(True)

    # 4. Adam on the latent (and the noise); each image's loss is summed, so images do not interact
    params = [latent, *(noise if isinstance(noise, list) else [])]
    opt = torch.optim.Adam(params, lr=lr)
    keys = ("total", "lpips", "mse") + (("noise_reg",) if optimise_noise else ())
    history = {k: torch.zeros(num_steps, n, device=dev) for k in keys}
    bar = tqdm(range(num_steps), desc="project", disable=not progress, leave=False)
    for step in bar:
        w_plus = latent if latent.ndim == 3 else latent[:, None].expand(-1, G.n_latent, -1)
        with precision_context(precision, dev):
            terms = _losses(G.synthesis(w_plus, noise=noise), target, mask, lpips, mse_weight=mse_weight)
        terms = {k: v.float() for k, v in terms.items()}
        if optimise_noise:
            terms["noise_reg"] = noise_regularisation(noise)
            terms["total"] = terms["total"] + noise_weight * terms["noise_reg"]
        opt.zero_grad(set_to_none=True)
        terms["total"].sum().backward()
        opt.step()
        if optimise_noise:  # NVlabs: keep every map zero-mean, unit-variance
            with torch.no_grad():
                for m in noise:
                    m -= m.mean(dim=(1, 2, 3), keepdim=True)
                    m /= m.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
        for k in keys:
            history[k][step] = terms[k].detach()
        if progress and (step % progress_every == 0 or step == num_steps - 1):
            bar.set_postfix(lpips=f"{float(history['lpips'][step].mean()):.4f}",
                            mse=f"{float(history['mse'][step].mean()):.4f}")

    # 5. the result on the CPU
    with torch.no_grad():
        w_plus = latent if latent.ndim == 3 else latent[:, None].expand(-1, G.n_latent, -1)
        image = G.synthesis(w_plus, noise=noise).clamp(-1, 1)
    total = time.perf_counter() - t0
    noise_out = [m.detach().cpu() for m in noise] if isinstance(noise, list) else noise
    config = dict(num_steps=num_steps, latent_space=latent_space, init=init if isinstance(init, str) else "latent",
                  init_samples=init_samples, lr=lr, mse_weight=mse_weight, masked=mask is not None,
                  optimise_noise=optimise_noise, noise_weight=noise_weight, seed=seed, precision=precision,
                  lpips_net=lpips_net if isinstance(lpips_net, str) else type(lpips_net).__name__,
                  device=str(dev))
    return ProjectionResult(latent.detach().cpu(), w_plus.detach().cpu().contiguous(), image.cpu(), noise_out,
                            {k: v.cpu() for k, v in history.items()}, config,
                            {"total_s": total, "per_image_s": total / n})
