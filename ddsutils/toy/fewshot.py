"""Few-shot domain adaptation by cross-domain correspondence (Ojha et al., CVPR 2021), as DDS uses it.

A generator trained on one domain (here toy-world ``natural``) is fine-tuned on ``n_shots`` images of a target
domain (``sketch`` or ``caricature``) so that ``G_source(z)`` and ``G_target(z)`` show the same face layout: DDS
needs this shared latent space. The recipe is few-shot-gan-adaptation's ``train.py``, written from its paper
and published description:

- **CDC loss**, every generator step: for each anchor ``i`` of a ``feat_const_batch`` a random StyledConv
  feature ``l_i`` in [1, num_layers - 1]; softmax over the cosine similarities of its flattened feature to the
  other batch items', for the frozen source and the target; ``kl_wt * KL(p_source || p_target)``
  (``nn.KLDivLoss``, ``'mean'`` reduction).
- **Anchors / patch discriminator**: every ``subspace_freq``-th step samples z ~ N(anchor, ``subspace_std``²)
  around one of ``n_anchors`` fixed anchors (no mixing) and uses the image-level discriminator; the other steps
  sample z normally and use patch head ``p ~ U{0..highp-1}`` of :class:`~ddsutils.toy.discriminator.Extra` on
  ``Discriminator.patch_features`` (logistic loss over all patch logits, R1 on per-sample averages).
- StyleGAN2 losses otherwise (non-saturating, lazy R1, path length), Adam (0, 0.99) with lazy-regularisation
  correction, EMA decay ``0.5 ** (32 / 10000)`` per step.

The adapted ``G`` and the frozen CDC reference start from the source checkpoint's ``g_ema`` (the default) or its
raw ``g`` (``source_weights="g"``, few-shot-gan-adaptation's choice; why: ``docs/zoo.md``); ``D`` from its ``d``,
new patch heads, fresh optimisers. Deliberate differences from the released code: one noise draw shared by the
source and target CDC passes (the loss is exactly zero at initialisation), one patch head per D/G step for real
and fake alike, a vectorised anchor perturbation, per-step seeded random draws (exact resume), no ADA.
``method="finetune"`` drops CDC, anchors and patch heads: plain fine-tuning of G and D (TransferGAN; with
``freeze=("style",)`` the FC-FT of "I2I translation via pre-trained StyleGAN2").

Used in: notebooks/08_fewshot_adaptation.ipynb; ``python -m ddsutils.zoo train``.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..core import imageio as viz
from ..core.errors import UserError
from .discriminator import Extra
from ..core.stylegan2 import Generator
from .train import (
    RunLog,
    _atomic_write_text,
    _cpu_state,
    _f,
    adam_for,
    atomic_torch_save,
    build_discriminator,
    build_generator,
    check_resume_args,
    d_logistic_loss,
    ema_decay,
    ema_update,
    g_nonsaturating_loss,
    latest_checkpoint,
    load_training_checkpoint,
    path_reg_step,
    progress_bar,
    prune_checkpoints,
    r1_penalty,
    resolve_device,
    rng,
    sample_w_plus,
    stream_seed,
)

__all__ = ["cdc_probabilities", "cdc_loss", "frozen_parameters", "anchor_latents", "render_shots", "adapt"]


def cdc_probabilities(feats: Sequence[torch.Tensor], layers: Sequence[int]) -> torch.Tensor:
    """Per-anchor softmax over cosine similarities to the other batch items.

    Args:
        feats: generator features (``G(z, return_features=True)[1]``), each ``[n, C_l, r_l, r_l]``.
        layers: ``n`` feature indices, one per anchor.

    Returns:
        ``[n, n - 1]`` float, each row a probability vector (row ``i`` over ``j != i`` in order).
    """
    n = len(layers)
    rows = []
    for i, layer in enumerate(layers):
        f = feats[int(layer)].reshape(n, -1)
        sim = F.cosine_similarity(f[i:i + 1], f, dim=1, eps=1e-8)     # [n]
        rows.append(torch.cat([sim[:i], sim[i + 1:]]))
    return F.softmax(torch.stack(rows), dim=1)


def cdc_loss(g_source: Generator, g_target: Generator, z: torch.Tensor, *, layers: Sequence[int] | torch.Tensor,
             noise: str | Sequence[torch.Tensor] = "const", kl_wt: float = 1000.0) -> torch.Tensor:
    """Cross-domain distance-consistency loss ``kl_wt * KL(p_source || p_target)`` (mean over all entries).

    Args:
        g_source: frozen source generator (run under ``no_grad``).
        g_target: generator being adapted (gradients flow into it).
        z: ``[n, D]`` latents, ``n >= 3`` (each anchor needs two others for a non-trivial softmax).
        layers: ``n`` feature indices in [1, num_layers - 1].
        noise: noise for both generators (``"const"``, or one list of per-layer maps shared by both).
        kl_wt: weight (1000 in few-shot-gan-adaptation).

    Returns:
        Scalar tensor >= 0 (0 when both generators are identical).
    """
    layers = [int(x) for x in (layers.tolist() if torch.is_tensor(layers) else layers)]
    if z.shape[0] != len(layers) or z.shape[0] < 2:
        raise ValueError(f"need one layer per latent and >= 2 latents, got z {list(z.shape)} and {len(layers)} layers")
    bad = [x for x in layers if not 1 <= x < g_target.num_layers]
    if bad:
        raise ValueError(f"layers must be in [1, {g_target.num_layers - 1}], got {bad}")
    with torch.no_grad():
        _, f_src = g_source(z, noise=noise, return_features=True)
        p_src = cdc_probabilities(f_src, layers)
    _, f_tgt = g_target(z, noise=noise, return_features=True)
    p_tgt = cdc_probabilities(f_tgt, layers)
    # nn.KLDivLoss()(log q, p) with reduction 'mean': mean over all elements of p (log p - log q)
    # (softmax entries of cosine similarities are never 0, so no 0 log 0 case arises)
    kl = p_src * (torch.log(p_src) - torch.log(p_tgt))
    return kl_wt * kl.mean()


def frozen_parameters(G: Generator, freeze: Sequence[str]) -> tuple[set[str], list[str]]:
    """Names of ``G``'s parameters under the ``freeze`` prefixes, and the prefixes that match none.

    A prefix covers the parameter of that name and everything below it: ``"convs.1"`` covers
    ``convs.1.*`` but not ``convs.10.*``.
    """
    def under(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    names = [n for n, _ in G.named_parameters()]
    frozen = {n for n in names if any(under(n, f) for f in freeze)}
    return frozen, [f for f in freeze if not any(under(n, f) for n in frozen)]


def anchor_latents(anchors: torch.Tensor, n: int, *, std: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` latents near random anchors (with replacement): ``anchor + std * N(0, 1)`` element-wise.

    Args:
        anchors: ``[A, D]`` fixed z.
        n: how many latents.
        std: ``subspace_std``.
        generator: CPU random generator.

    Returns:
        ``[n, D]`` on ``anchors.device``.
    """
    idx = torch.randint(0, anchors.shape[0], (n,), generator=generator)
    eps = torch.randn(n, anchors.shape[1], generator=generator)
    return anchors[idx.to(anchors.device)] + std * eps.to(anchors)


def render_shots(target_style: str, n_shots: int, *, size: int, seed: int) -> torch.Tensor:
    """The few-shot training set: ``toyworld.render_batch(n_shots, style=target_style, size, seed)`` images.

    Returns:
        ``[n_shots, 3, size, size]`` float32 in [-1, 1].
    """
    from . import toyworld

    return toyworld.render_batch(n_shots, style=target_style, size=size, seed=seed)[0]


@torch.no_grad()
def _paired_grid(g_src: Generator, g_tgt: Generator, z: torch.Tensor, path: Path, *, nrow: int = 8) -> Path:
    """Rows alternate ``g_src(z)`` and ``g_tgt(z)`` (same z, constant noise), ``nrow`` per row."""
    dev = next(g_tgt.parameters()).device
    a = g_src(z.to(dev), noise="const").cpu()
    b = g_tgt(z.to(dev), noise="const").cpu()
    rows = []
    for s in range(0, len(z), nrow):
        rows += [a[s:s + nrow], b[s:s + nrow]]
    return viz.save_png(torch.cat(rows), path, nrow=nrow)


def adapt(source_ckpt: str | os.PathLike, *, target_style: str, out_dir: str | os.PathLike,
          n_shots: int = 10, shots_seed: int = 2022, shots: torch.Tensor | None = None,
          iters: int = 1000, batch: int = 4, lr: float = 0.002, kl_wt: float = 1000.0,
          feat_const_batch: int = 4, subspace_freq: int = 4, subspace_std: float = 0.1,
          n_anchors: int | None = None, highp: int = 1, mixing: float = 0.9, r1: float = 10.0,
          d_reg_every: int = 16, path_reg: float = 2.0, g_reg_every: int = 4, path_batch_shrink: int = 2,
          ema_kimg: float | None = None, flip: bool = True, seed: int = 0,
          device: str | torch.device = "auto", resume: bool = True, sample_every: int = 100,
          ckpt_every: int = 250, log_every: int = 10, keep_ckpts: int = 3, n_sample: int = 16,
          threads: int | None = None, progress: bool = True, freeze: Sequence[str] = (),
          source_weights: str = "g_ema", method: str = "cdc") -> Path:
    """Adapt a trained generator to a target style from ``n_shots`` images (cross-domain correspondence).

    Args:
        source_ckpt: training checkpoint of the source GAN (from :func:`ddsutils.train.train_gan`; needs
            ``g``, ``d``, ``g_ema``).
        target_style: toy-world style of the few-shot images.
        out_dir: run folder (checkpoints, ``log.jsonl``, ``samples/``, ``shots.png``).
        n_shots: number of target images (10 in the paper), rendered with ``shots_seed``.
        shots: use these images ``[n, 3, size, size]`` in [-1, 1] instead of rendering (``shots_seed`` is
            then ignored and recorded as ``None``).
        iters: adaptation steps (few-shot: 4-5k for artistic domains at 256 px).
        batch: images per step (4 in few-shot).
        lr: Adam learning rate before the lazy-regularisation correction.
        kl_wt: CDC weight (1000). ``feat_const_batch``: latents per CDC term (4).
        subspace_freq: every ``subspace_freq``-th step is an anchor step (image-level D); the others use the
            patch-level D. ``subspace_std``: anchor neighbourhood std. ``n_anchors``: number of fixed anchor z
            (default ``n_shots``, as in few-shot). ``highp``: number of patch heads drawn from.
        mixing, r1, d_reg_every, path_reg, g_reg_every, path_batch_shrink: as in :func:`ddsutils.train.train_gan`.
        ema_kimg: EMA half-life in thousand images; default ``10 * batch / 32``, i.e. decay
            ``0.5 ** (32 / 10000)`` per step as in few-shot.
        flip: random horizontal flips of the shots.
        seed, device, resume, sample_every, ckpt_every, log_every, keep_ckpts, n_sample, threads, progress:
            as in :func:`ddsutils.train.train_gan`.
        freeze: prefixes of ``G.named_parameters()`` names held at the source values (not in few-shot,
            which trains every layer; e.g. ``("style", "input", "conv1", "to_rgb1", "convs.0", "convs.1")``
            keeps the mapping network and the 4-8 px layers, which set the layout). Default: train all.
        source_weights: which source weights the adapted ``G`` starts from and the frozen CDC reference is:
            ``"g_ema"`` (default: the generator that is published and paired with, so ``G_target(z)`` starts
            with exactly ``G_source(z)``'s layout) or ``"g"`` (few-shot-gan-adaptation's choice, the raw
            generator; on the toy zoo its layouts differ from ``g_ema``'s, pairing IoU 0.45 / 0.56). The
            adapted ``g_ema`` always starts from the source's ``g_ema``.
        method: ``"cdc"`` (default: the few-shot recipe above) or ``"finetune"``: every step is an image-level D
            step on ordinary (style-mixed) latents and the generator loss is the adversarial loss alone, i.e. plain
            StyleGAN2 fine-tuning of G and D from the source (TransferGAN). ``kl_wt=0`` alone is not that: it keeps
            the anchor steps and the patch discriminator. Under ``"finetune"`` ``kl_wt``, ``feat_const_batch``,
            ``subspace_freq``, ``subspace_std``, ``n_anchors`` and ``highp`` are unused (the patch heads are built
            and saved untrained).

    Returns:
        Path of the last checkpoint. It has the train-checkpoint keys plus ``extra``, ``extra_optim``,
        ``anchors [A, D]``, ``shots [n, 3, H, W]``, ``shots_seed``, ``g_source``, ``g_source_ema`` and
        ``source`` (path and iteration of the source checkpoint).

    Used in: notebooks/08_fewshot_adaptation.ipynb; ``python -m ddsutils.zoo train``.
    """
    if threads is not None:
        torch.set_num_threads(int(threads))
    out = Path(out_dir)
    dev = resolve_device(device)
    if feat_const_batch < 3:
        raise ValueError(f"feat_const_batch must be >= 3, got {feat_const_batch}")
    if subspace_freq < 1 or highp < 1:
        raise ValueError("subspace_freq and highp must be >= 1")
    if isinstance(freeze, str):
        raise TypeError(f"freeze must be a sequence of parameter-name prefixes, not the string {freeze!r}")
    freeze = tuple(str(f) for f in freeze)
    if source_weights not in ("g", "g_ema"):
        raise ValueError(f"source_weights must be 'g' or 'g_ema', got {source_weights!r}")
    if method not in ("cdc", "finetune"):
        raise UserError("must be 'cdc' (cross-domain correspondence) or 'finetune' (plain fine-tuning, TransferGAN)",
                        argument="method", value=method)
    cdc_on = method == "cdc"
    src_path = Path(source_ckpt)
    last = latest_checkpoint(out) if resume else None
    if last is not None:
        ck = load_training_checkpoint(last)
        src = {"g": ck["g_source"], "g_ema": ck["g_source_ema"], "d": None, "config": ck["config"],
               "iter": ck["source"]["iter"]}
        if src_path.is_file():  # the run must continue from the same source generator
            given = load_training_checkpoint(src_path)
            same = set(given["g"]) == set(src["g"]) and all(
                torch.equal(given["g"][k], v) for k, v in src["g"].items())
            if not same:
                raise ValueError(
                    f"cannot resume {last}: it adapts a different source generator (iteration "
                    f"{src['iter']} of {ck['source']['path']}) than {src_path} (iteration {given['iter']}). "
                    "Use a new out_dir or resume=False.")
    else:
        ck = None
        src = load_training_checkpoint(src_path)
    cfg = src["config"]
    size = int(cfg["size"])
    if shots is None:
        shots_t = render_shots(target_style, n_shots, size=size, seed=shots_seed)
    else:
        shots_t = shots.detach().float().cpu()
        if shots_t.ndim != 4 or shots_t.shape[1:] != (3, size, size):
            raise ValueError(f"shots must be [n, 3, {size}, {size}], got {list(shots_t.shape)}")
        n_shots, shots_seed = shots_t.shape[0], None
    n_anchors = int(n_anchors if n_anchors is not None else n_shots)
    ema_kimg = float(ema_kimg if ema_kimg is not None else 10.0 * batch / 32.0)
    args: dict[str, Any] = {
        "kind": "adapt", "target_style": target_style, "source_ckpt": str(src_path), "n_shots": n_shots,
        "shots_seed": shots_seed, "iters": iters, "batch": batch, "lr": lr, "kl_wt": kl_wt,
        "feat_const_batch": feat_const_batch, "subspace_freq": subspace_freq, "subspace_std": subspace_std,
        "n_anchors": n_anchors, "highp": highp, "mixing": mixing, "r1": r1, "d_reg_every": d_reg_every,
        "path_reg": path_reg, "g_reg_every": g_reg_every, "path_batch_shrink": path_batch_shrink,
        "ema_kimg": ema_kimg, "flip": flip, "seed": seed, "sample_every": sample_every,
        "ckpt_every": ckpt_every, "log_every": log_every, "keep_ckpts": keep_ckpts, "n_sample": n_sample,
        "device": str(dev), "threads": threads,
    }
    if freeze:  # only recorded when used, so runs from before the option still resume
        args["freeze"] = list(freeze)
    if source_weights != "g":  # likewise: runs from before the option started from "g"
        args["source_weights"] = source_weights
    if not cdc_on:  # likewise: runs from before the option are CDC runs
        args["method"] = method
    free = ("iters", "sample_every", "ckpt_every", "log_every", "keep_ckpts", "device", "threads", "n_sample",
            "source_ckpt")

    g_source = build_generator(cfg)  # the frozen CDC reference, and where G starts
    g_source.load_state_dict(src[source_weights])
    g_source = g_source.to(dev).eval().requires_grad_(False)
    g_source_ema = build_generator(cfg)
    g_source_ema.load_state_dict(src["g_ema"])
    g_source_ema = g_source_ema.to(dev).eval().requires_grad_(False)
    G = copy.deepcopy(g_source).train().requires_grad_(True)

    frozen, unused = frozen_parameters(G, freeze)
    if unused:
        names = sorted({n.split(".")[0] for n, _ in G.named_parameters()})
        raise ValueError(f"freeze prefixes {unused} match no generator parameter (top-level names: {names})")
    trainable = [p for n, p in G.named_parameters() if n not in frozen]
    if not trainable:
        raise ValueError("freeze covers every generator parameter; nothing would be adapted")

    def g_trainable() -> None:
        for n, prm in G.named_parameters():
            prm.requires_grad_(n not in frozen)

    g_ema = copy.deepcopy(g_source_ema)
    d_cfg = (ck or src).get("d_config")
    if d_cfg is None:
        raise ValueError(f"{last or src_path} has no 'd_config'; adapt needs a ddsutils.train checkpoint")
    D = build_discriminator(d_cfg).to(dev).train()
    if ck is None:
        D.load_state_dict(src["d"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, 0, "extra_init"))
        extra = Extra(D.patch_channels).to(dev).train()
    if highp > len(extra.new_conv):
        raise ValueError(f"highp={highp} but the discriminator has {len(extra.new_conv)} patch features")
    g_optim = adam_for(trainable, lr=lr, reg_every=g_reg_every if path_reg > 0 else 0)
    d_reg = d_reg_every if r1 > 0 else 0
    d_optim = adam_for(D.parameters(), lr=lr, reg_every=d_reg)
    e_optim = adam_for(extra.parameters(), lr=lr, reg_every=d_reg)
    anchors = torch.randn(n_anchors, G.style_dim, generator=torch.Generator().manual_seed(
        stream_seed(seed, 0, "anchors"))).to(dev)
    start, mean_path_length, log_entries = 0, 0.0, []
    source_info = {"path": str(src_path), "iter": int(src["iter"])}

    if ck is not None:
        check_resume_args(ck.get("train_args", {}), args, path=last, free=free)
        if not torch.equal(ck["shots"], shots_t):
            raise ValueError(f"cannot resume from {last}: the few-shot images differ from the checkpoint's")
        G.load_state_dict(ck["g"])
        g_ema.load_state_dict(ck["g_ema"])
        D.load_state_dict(ck["d"])
        extra.load_state_dict(ck["extra"])
        g_optim.load_state_dict(ck["g_optim"])
        d_optim.load_state_dict(ck["d_optim"])
        e_optim.load_state_dict(ck["extra_optim"])
        anchors = ck["anchors"].to(dev)
        start, mean_path_length = int(ck["iter"]), float(ck.get("mean_path_length", 0.0))
        log_entries = list(ck.get("loss_log", []))
        source_info = dict(ck["source"])
        if start >= iters:
            return last
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(json.dumps(args, indent=2) + "\n", out / "train_args.json")
    viz.save_png(shots_t, out / "shots.png", nrow=min(n_shots, 10))
    log = RunLog(out / "log.jsonl", log_entries)
    z_sample = torch.randn(n_sample, G.style_dim, generator=torch.Generator().manual_seed(seed + 1_000_003))
    if start == 0:
        _paired_grid(g_source_ema, g_ema, z_sample, out / "samples" / f"{0:06d}.png")
    shots_dev = shots_t.to(dev)

    def save(i: int) -> Path:
        c = {"g": _cpu_state(G), "d": _cpu_state(D), "g_ema": _cpu_state(g_ema), "extra": _cpu_state(extra),
             "g_optim": _cpu_state(g_optim), "d_optim": _cpu_state(d_optim), "extra_optim": _cpu_state(e_optim),
             "iter": i, "config": dict(G.config), "d_config": dict(D.config), "train_args": args,
             "loss_log": log.entries, "mean_path_length": mean_path_length, "anchors": anchors.cpu(),
             "shots": shots_t, "shots_seed": shots_seed, "g_source": src["g"],  # the raw g (CPU)
             "g_source_ema": _cpu_state(g_source_ema), "source": source_info}
        p = atomic_torch_save(c, out / "checkpoints" / f"{i:06d}.pt")
        prune_checkpoints(out, keep_ckpts)
        return p

    def fake_latents(n: int, anchor_step: bool, gen: torch.Generator) -> torch.Tensor:
        if anchor_step:
            z = anchor_latents(anchors, n, std=subspace_std, generator=gen)
            return G.mapping(z)[:, None, :].expand(-1, G.n_latent, -1)
        return sample_w_plus(G, n, mixing=mixing, generator=gen, device=dev)

    def disc(img: torch.Tensor, anchor_step: bool, p: int) -> torch.Tensor:
        """Image logits [N, 1] on anchor steps, patch logits [N, 1, r, r] otherwise."""
        return D(img) if anchor_step else extra(D.patch_features(img), p)

    bar = progress_bar(start, iters, enabled=progress, desc=f"adapt {target_style}")
    r1_val = path_val = float("nan")
    t0, path = time.perf_counter(), last
    for i in bar:
        # CDC: every subspace_freq-th step an anchor step (image-level D), patch D otherwise; finetune: image-level
        anchor_step = cdc_on and i % subspace_freq == 0
        image_level = anchor_step or not cdc_on
        gen = rng(seed, i, "shots")
        if batch <= n_shots:
            idx = torch.randperm(n_shots, generator=gen)[:batch]
        else:
            idx = torch.randint(0, n_shots, (batch,), generator=gen)
        real = shots_dev[idx.to(dev)]
        if flip:
            m = (torch.rand(batch, generator=gen) < 0.5).to(dev)
            real = torch.where(m[:, None, None, None], real.flip(-1), real)

        # -- discriminator (+ patch heads) --------------------------------------------------------
        G.requires_grad_(False)
        D.requires_grad_(True)
        extra.requires_grad_(True)
        gen = rng(seed, i, "d_fake")
        p = int(torch.randint(0, highp, (), generator=gen))
        with torch.no_grad():
            fake = G.synthesis(fake_latents(batch, anchor_step, gen), noise=G.make_noise(batch, generator=gen))
        real_pred, fake_pred = disc(real, image_level, p), disc(fake, image_level, p)
        d_loss = d_logistic_loss(real_pred, fake_pred)
        D.zero_grad(set_to_none=True)
        extra.zero_grad(set_to_none=True)
        d_loss.backward()
        d_optim.step()
        e_optim.step()
        if r1 > 0 and d_reg_every > 0 and i % d_reg_every == 0:
            real_r = real.detach().requires_grad_(True)
            pred = disc(real_r, image_level, p).reshape(batch, -1).mean(dim=1, keepdim=True)
            r1_loss = r1_penalty(pred, real_r)
            D.zero_grad(set_to_none=True)
            extra.zero_grad(set_to_none=True)
            (r1 / 2 * r1_loss * d_reg_every + 0 * pred[0, 0]).backward()
            d_optim.step()
            e_optim.step()
            r1_val = _f(r1_loss)

        # -- generator: adversarial + CDC ---------------------------------------------------------
        g_trainable()
        D.requires_grad_(False)
        extra.requires_grad_(False)
        gen = rng(seed, i, "g_fake")
        p = int(torch.randint(0, highp, (), generator=gen))
        fake = G.synthesis(fake_latents(batch, anchor_step, gen), noise=G.make_noise(batch, generator=gen))
        g_adv = g_nonsaturating_loss(disc(fake, image_level, p))
        if cdc_on:
            gen = rng(seed, i, "cdc")
            z = torch.randn(feat_const_batch, G.style_dim, generator=gen).to(dev)
            layers = torch.randint(1, G.num_layers, (feat_const_batch,), generator=gen).tolist()
            cdc = cdc_loss(g_source, G, z, layers=layers, noise=G.make_noise(feat_const_batch, generator=gen),
                           kl_wt=kl_wt)
        else:  # plain fine-tuning: the adversarial loss alone
            cdc = torch.zeros((), device=dev)
        G.zero_grad(set_to_none=True)
        (g_adv + cdc).backward()
        g_optim.step()
        if path_reg > 0 and g_reg_every > 0 and i % g_reg_every == 0:
            path_val, mean_path_length = path_reg_step(
                G, g_optim, seed=seed, i=i, batch=batch, path_batch_shrink=path_batch_shrink, mixing=mixing,
                path_reg=path_reg, g_reg_every=g_reg_every, mean_path_length=mean_path_length, device=dev)
        decay = ema_decay(batch, ema_kimg=ema_kimg)
        ema_update(g_ema, G, decay)

        step = i + 1
        if step % log_every == 0 or step == iters:
            dt = time.perf_counter() - t0
            t0 = time.perf_counter()
            entry = {"iter": step, "anchor_step": anchor_step, "d": _f(d_loss), "g": _f(g_adv), "cdc": _f(cdc),
                     "r1": r1_val, "path": path_val, "mean_path_length": mean_path_length,
                     "real_score": _f(real_pred.mean()), "fake_score": _f(fake_pred.mean()), "ema_decay": decay,
                     "sec_per_iter": dt / (step - (log.entries[-1]["iter"] if log.entries else start))}
            log.append({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                        for k, v in entry.items()})
            bar.set_postfix(d=f"{_f(d_loss):.3f}", g=f"{_f(g_adv):.3f}", cdc=f"{_f(cdc):.4f}", refresh=False)
        if step % sample_every == 0 or step == iters:
            _paired_grid(g_source_ema, g_ema, z_sample, out / "samples" / f"{step:06d}.png")
        if step % ckpt_every == 0 or step == iters:
            path = save(step)
    bar.close()
    if path is None:
        path = save(0)
    return path
