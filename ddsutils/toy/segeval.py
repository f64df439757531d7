"""The one-shot segmenter in the toy world: oracle labels from the judge parser, and its evaluation.

The toy world's judge parser labels any image, so the paper's one-shot label can be drawn without a person:
:func:`choose_candidates` picks the labelled image by a fixed rule (all parts present, mask area nearest the
median), :func:`train_from_oracle` trains a :class:`ddsutils.core.segmenter.Segmenter` on it, and
:func:`evaluate` scores the segmenter's masks on the source and the adapted generators against the parser's
(mIoU), next to the parser's agreement with itself when the generators' noise is redrawn.

    python -m ddsutils.segmenter evaluate --n 200 --json runs/segmenter_eval.json \\
        [--generator toy-natural-64] [--targets toy-sketch-64 toy-caricature-64]

Measurements: ``docs/segmenter.md``.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..core import cli
from ..core.cli import UserError
from ..core.cli import command as cli_command
from ..core.segmenter import (FEWSHOT_SIZES, ArchitectureMismatchError, Segmenter, SegmenterError, _describe, _g_device,
                              architecture_signature, mask_iou, predict_masks, train_segmenter)
from ..core.stylegan2 import Generator

__all__ = ["choose_candidate", "choose_candidates", "train_from_oracle", "evaluate", "format_table", "main"]


def _style_name(name: str) -> str:
    from .toyworld import STYLES

    for s in STYLES:
        if s in name:
            return s
    return name


def choose_candidates(cand_parts: Tensor, mask: str, *, k: int = 1, rule: str = "median",
                      min_foreground: float = 0.005) -> list[int]:
    """Indices of the ``k`` candidate images whose oracle labels train a segmenter for ``mask``.

    Usable candidates have a mask covering between ``min_foreground`` and ``1 - min_foreground`` of the
    image and, if any usable candidate has them, every part of ``mask`` present (at least one pixel of each
    of ``toyworld.MASKS[mask]``; candidates without them are then not used). ``rule="median"`` (default)
    takes the usable candidates whose mask areas are closest to the median area of the usable candidates
    (typical images rather than extreme ones; ties: lowest index first); ``rule="first"`` the first usable
    ones. Deterministic for given part maps.

    Args:
        cand_parts: ``[K, S, S]`` int64 part ids over :data:`ddsutils.toyworld.PARTS`.
        mask: a name of :data:`ddsutils.toyworld.MASKS` (or a single part name).
        k: how many candidates (``>= 1``).

    Raises:
        SegmenterError: unknown rule, bad ``k``, or fewer than ``k`` usable candidates.
    """
    from .toyworld import MASKS, PARTS, part_mask

    if rule not in ("median", "first"):
        raise SegmenterError(f"rule must be 'median' or 'first', got {rule!r}")
    if k < 1:
        raise SegmenterError(f"k must be >= 1, got {k}")
    cand_parts = torch.as_tensor(cand_parts).to(torch.int64).cpu()
    fg = part_mask(cand_parts, mask).flatten(1).double().mean(1)
    flat = cand_parts.flatten(1)
    present = torch.stack([(flat == PARTS.index(p)).any(1) for p in MASKS.get(mask, (mask,))], 1).all(1)
    usable = (fg >= min_foreground) & (fg <= 1 - min_foreground)
    if not usable.any():
        raise SegmenterError(f"none of {len(cand_parts)} candidate images has a usable {mask!r} oracle mask "
                             f"(>= {min_foreground:.1%} of the image); check the parser")
    ok = (usable & present).nonzero().flatten() if (usable & present).any() else usable.nonzero().flatten()
    if len(ok) < k:
        raise SegmenterError(f"only {len(ok)} of {len(cand_parts)} candidate images have a usable {mask!r} "
                             f"oracle mask, {k} were asked for; draw more candidates")
    if rule == "first":
        return [int(i) for i in ok[:k]]
    area = fg[ok]
    med = area.median()  # lower median for an even count: an actual candidate's area
    order = sorted(range(len(ok)), key=lambda j: (float((area[j] - med).abs()), int(ok[j])))
    return [int(ok[j]) for j in order[:k]]


def choose_candidate(cand_parts: Tensor, mask: str, *, rule: str = "median",
                     min_foreground: float = 0.005) -> int:
    """Index of the candidate image whose oracle label trains a one-shot segmenter for ``mask``:
    :func:`choose_candidates` with ``k=1``."""
    return choose_candidates(cand_parts, mask, k=1, rule=rule, min_foreground=min_foreground)[0]


def train_from_oracle(G: Generator, mask: str, *, cand_z: Tensor, cand_parts: Tensor, size: str = "S",
                      steps: int = 100, seed: int = 0, min_foreground: float = 0.005, rule: str = "median",
                      n_labels: int = 1, device: str | torch.device = "cpu", progress: bool = True,
                      prior_correction: float = 0.0, truncation: float = 1.0, truncation_latent: Tensor | None = None,
                      **train_kwargs: Any) -> tuple[Segmenter, dict[str, Any]]:
    """Train a one-shot segmenter for ``mask`` from ONE oracle label (toy world: the judge parser's).

    The label is the ``mask`` part of the candidate :func:`choose_candidate` picks (default: all parts
    present, mask area closest to the candidates' median). ``n_labels > 1`` trains on the labels of the
    ``n_labels`` candidates :func:`choose_candidates` picks instead (a few-shot comparison, not the paper's
    one-shot setting).

    Args:
        G: generator the candidates were drawn from. mask: a name of :data:`ddsutils.toyworld.MASKS`.
        cand_z: ``[K, D]`` candidate latents; cand_parts: ``[K, S, S]`` int64 part ids of ``G(cand_z)``.
        rule, min_foreground: see :func:`choose_candidates`. n_labels: labelled images (default 1).
        prior_correction: of the masks behind ``train_iou`` (:func:`predict_masks`).
        truncation, truncation_latent: how the candidate images ``cand_parts`` were generated
            (``G(cand_z, truncation=..., truncation_latent=...)``, as in :meth:`Generator.forward`; default
            untruncated); the segmenter is trained on the features of those images.
        size, steps, seed, device, progress, train_kwargs: passed to :func:`train_segmenter`.

    Returns:
        ``(segmenter, info)`` with ``info`` = candidate index (the first one), all ``candidates``, rule,
        foreground fraction and IoU on the labelled images (means), final loss and seconds.

    Used in: notebooks/02_oneshot_segmenter.ipynb, ``python -m ddsutils.dds run``.
    """
    from .toyworld import part_mask

    idx = choose_candidates(cand_parts, mask, k=n_labels, rule=rule, min_foreground=min_foreground)
    label = part_mask(torch.as_tensor(cand_parts[idx]).cpu(), mask)
    trunc = {"truncation": truncation, "truncation_latent": truncation_latent}
    seg = train_segmenter(G, cand_z[idx], label, part=mask, size=size, steps=steps, seed=seed,
                          device=device, progress=progress, **trunc, **train_kwargs)
    train_iou = mask_iou(predict_masks(seg, G, cand_z[idx], prior_correction=prior_correction, **trunc).cpu(),
                         label)
    return seg, {"candidate": idx[0], "candidates": idx, "rule": rule, "foreground_fraction": float(label.mean()),
                 "truncation": float(truncation), "train_iou": float(train_iou.nanmean()),
                 "final_loss": seg.train_info["losses"][-1],
                 "seconds": seg.train_info["seconds"]}


def evaluate(source: Generator, targets: Mapping[str, Generator], *, parser: Any,
             predict_parts: Callable[[Any, Tensor], Tensor], n: int = 200, masks: Sequence[str] | None = None,
             source_name: str = "natural", size: str = "S", steps: int = 100, seed: int = 0,
             batch_size: int = 16, min_foreground: float = 0.005, max_candidates: int = 64, rule: str = "median",
             n_labels: int = 1, stats: str = "training", prior_correction: float = 0.0, label_truncation: float = 0.0,
             judge_noise: bool = True, device: str | torch.device = "cpu", progress: bool = True,
             log: Callable[[str], None] | None = None, **train_kwargs: Any) -> dict[str, Any]:
    """One-shot segmenters from oracle labels, scored against the oracle on every domain.

    For each mask of :data:`ddsutils.toyworld.MASKS`: the judge parser labels one source image (chosen among
    ``max_candidates`` seeded z by :func:`choose_candidate` with ``rule``), a segmenter is trained on it
    (:func:`train_segmenter` defaults, i.e. standardised features and square-root class balancing, unless
    ``train_kwargs`` say otherwise), and its masks for ``n`` other seeded z are compared with the parser's
    masks of the same images, for the source and every target generator (the same z through each). The
    evaluation images are untruncated (``truncation=1``); the labelled one follows ``label_truncation``.

    Args:
        source: the generator the segmenters are trained on (e.g. ``toy-natural-64``).
        targets: ``{name: generator}`` of the same architecture (e.g. the adapted sketch/caricature).
        parser: the judge parser; ``predict_parts(parser, img [N, 3, S, S] in [-1, 1])`` must return
            int64 part ids ``[N, S, S]`` over :data:`ddsutils.toyworld.PARTS`.
        n: evaluation images per domain; ``masks``: names in ``MASKS`` (default all).
        source_name: row name of the source domain.
        size, steps: segmenter size and training steps.
        rule, min_foreground, max_candidates: choice of the labelled image (:func:`choose_candidate`).
        n_labels: labelled images per mask (default 1, the paper's one-shot setting; more: a few-shot
            comparison, the ``n_labels`` candidates :func:`choose_candidates` picks).
        stats: feature statistics at prediction (``predict_masks(stats=...)``): ``"training"`` (default,
            the source generator's) or ``"generator"`` (each domain's own).
        prior_correction: logit adjustment of the masks (``predict_masks(prior_correction=...)``; default 0,
            the plain argmax).
        label_truncation: truncation ``psi`` in [0, 1] of the candidate (labelled) images, toward the
            source's mean w (``latent_avg``, else ``mean_latent(4096)``). 0 (default): every candidate is the
            mean face, so the one label is drawn on the generator's most typical image; 1: untruncated samples,
            like the evaluation images (the default before; on the toy zoo 0 scores higher in all six cells at
            ``seed`` 0 and 1, see the README's segmenter section). The evaluation images stay untruncated.
        judge_noise: also score the judge against itself: the parser's masks of the same ``n`` images with the
            generator's per-layer noise redrawn (seeded by ``seed + 2``, the same draws for every domain)
            against its masks with the constant noise (``judge_noise_miou``). The layout is meant to come from
            the latent, the noise only adds stochastic detail, so this says how much of the oracle's mask is
            set by the noise alone, a reference for the segmenter's IoU (not a bound: both score the same
            constant-noise images). Costs ``n`` more images and parses per domain.
        train_kwargs: more :func:`train_segmenter` options (e.g. ``standardise=False``, ``class_balance=0``).
        seed: seeds the training-candidate z (``seed``), the evaluation z (``seed + 1``) and training.
        batch_size: images per prediction chunk.
        log: called with one line before each long phase (the command line prints it to stderr).

    Returns:
        JSON-able dict: ``results[mask][domain] = {"miou", "pooled_iou", "area_ratio", "n", "n_both_empty"}``
        (mIoU over images where either mask is non-empty; pooled = total intersection / total union; area ratio =
        predicted / oracle mask pixels, > 1 when the masks are inflated; plus ``"judge_noise_miou"`` with
        ``judge_noise``), and
        ``train[mask]`` (candidate index, foreground fraction, IoU on the labelled image itself, final
        loss, seconds).

    Used in: ``python -m ddsutils.segmenter evaluate`` (the README's segmenter section);
    notebooks/02_oneshot_segmenter.ipynb runs the same check inline for one mask.
    """
    from .toyworld import MASKS, part_mask

    say = log or (lambda message: None)
    masks = list(masks) if masks is not None else list(MASKS)
    for m in masks:
        if m not in MASKS:
            raise SegmenterError(f"unknown mask {m!r}; known: {tuple(MASKS)}")
    try:
        for key, value in (("n", n), ("steps", steps), ("batch_size", batch_size), ("max_candidates", max_candidates),
                           ("n_labels", n_labels)):
            cli.positive_int(value, key)
        cli.non_negative_int(seed, "seed")
        cli.float_arg(min_foreground, "min_foreground", min=0, max=0.5, max_open=True)
        cli.choice(rule, "rule", ("median", "first"))
        cli.choice(stats, "stats", ("training", "generator"))
        cli.choice(size, "size", tuple(FEWSHOT_SIZES))
        cli.float_arg(prior_correction, "prior_correction", min=0)
    except UserError as exc:
        raise SegmenterError(str(exc)) from None
    if n_labels > max_candidates:
        raise SegmenterError(f"n_labels={n_labels} is more than max_candidates={max_candidates}")
    sig = architecture_signature(source)
    for name, G in targets.items():
        if architecture_signature(G) != sig:
            raise ArchitectureMismatchError(f"target {name!r} is a {_describe(architecture_signature(G))}, the "
                                            f"source a {_describe(sig)}: a segmenter trained on the source's features "
                                            "only applies to generators of its architecture (few-shot adaptations)")
    if not (math.isfinite(label_truncation) and 0 <= label_truncation <= 1):
        raise SegmenterError(f"label_truncation must be in [0, 1] (1: untruncated, 0: the mean face), "
                             f"got {label_truncation}")
    if label_truncation == 0 and n_labels > 1:
        raise SegmenterError(f"n_labels={n_labels} needs label_truncation > 0: at 0 every candidate is the same mean "
                             f"face; pass label_truncation=1 (CLI: --label-truncation 1) for different images")
    gens = {source_name: source, **dict(targets)}
    seg_dev = torch.device(device)
    gdev = _g_device(source)
    trunc = {"truncation": float(label_truncation),
             "truncation_latent": source.truncation_centre() if label_truncation != 1 else None}
    cand_z = torch.randn(max_candidates, source.style_dim, generator=torch.Generator().manual_seed(seed))
    say(f"labelling {max_candidates} candidate images of {source_name} with the judge parser")
    with torch.no_grad():
        cand_img = torch.cat([source(cand_z[i:i + batch_size].to(gdev), **trunc)
                              for i in range(0, max_candidates, batch_size)])
        cand_parts = torch.as_tensor(predict_parts(parser, cand_img)).to(torch.int64).cpu()
    eval_z = torch.randn(n, source.style_dim, generator=torch.Generator().manual_seed(seed + 1))
    oracle: dict[str, Tensor] = {}
    redrawn: dict[str, Tensor] = {}
    say(f"generating and parsing {n} evaluation images per domain ({', '.join(gens)})"
        + (" and again with redrawn noise" if judge_noise else ""))
    from tqdm.auto import tqdm

    with torch.no_grad():
        for name, G in tqdm(list(gens.items()), desc="oracle masks", disable=cli.no_progress(progress), leave=False):
            imgs = torch.cat([G(eval_z[i:i + batch_size].to(_g_device(G))) for i in range(0, n, batch_size)])
            oracle[name] = torch.as_tensor(predict_parts(parser, imgs)).to(torch.int64).cpu()
            if judge_noise:
                imgs = _redrawn_noise_images(G, eval_z, seed=seed + 2, batch_size=batch_size)
                redrawn[name] = torch.as_tensor(predict_parts(parser, imgs)).to(torch.int64).cpu()
    out: dict[str, Any] = {"n": n, "seed": seed, "segmenter_size": size, "steps": steps, "truncation": 1.0,
                           "rule": rule, "n_labels": n_labels, "stats": stats, "prior_correction": prior_correction,
                           "label_truncation": float(label_truncation), "judge_noise": bool(judge_noise),
                           "train_options": dict(train_kwargs),
                           "domains": list(gens), "train": {}, "results": {}}
    for m in masks:
        say(f"training the one-shot segmenter for {m!r} ({steps} steps), then predicting {n} masks per domain")
        try:
            seg, info = train_from_oracle(source, m, cand_z=cand_z, cand_parts=cand_parts, size=size, steps=steps,
                                          seed=seed, min_foreground=min_foreground, rule=rule, n_labels=n_labels,
                                          device=seg_dev, progress=progress, prior_correction=prior_correction,
                                          **trunc, **train_kwargs)
        except SegmenterError as exc:
            if label_truncation == 0 and "usable" in str(exc):
                raise SegmenterError(f"{exc}; with label_truncation=0 every candidate is the mean face, so try "
                                     f"label_truncation=1 (CLI: --label-truncation 1)") from exc
            raise
        out["train"][m] = info
        out["results"][m] = {}
        for name, G in gens.items():
            pred = predict_masks(seg, G, eval_z, batch_size=batch_size, stats=stats,
                                 prior_correction=prior_correction).cpu()
            gt = part_mask(oracle[name], m)
            iou = mask_iou(pred, gt)
            valid = ~torch.isnan(iou)
            p, t = pred > 0.5, gt > 0.5
            union = int((p | t).sum())
            out["results"][m][name] = {
                "miou": float(iou[valid].mean()) if valid.any() else float("nan"),
                "pooled_iou": int((p & t).sum()) / union if union else float("nan"),
                "area_ratio": int(p.sum()) / int(t.sum()) if t.any() else float("nan"),
                "n": n, "n_both_empty": int((~valid).sum())}
            if judge_noise:
                out["results"][m][name]["judge_noise_miou"] = float(
                    mask_iou(part_mask(redrawn[name], m), gt).nanmean())
    return out


@torch.no_grad()
def _redrawn_noise_images(G: Generator, z: Tensor, *, seed: int, batch_size: int) -> Tensor:
    """``G(z)`` with every per-layer noise map redrawn from N(0, 1) (CPU generator seeded with ``seed``, so
    each generator gets the same draws) instead of the constant buffers: ``[N, 3, S, S]`` in about [-1, 1]."""
    g, dev, out = torch.Generator().manual_seed(seed), _g_device(G), []
    for i in range(0, z.shape[0], batch_size):
        chunk = z[i:i + batch_size]
        out.append(G(chunk.to(dev), noise=G.make_noise(chunk.shape[0], generator=g)))
    return torch.cat(out)


def format_table(result: Mapping[str, Any]) -> str:
    """Plain-text table of :func:`evaluate`'s results: one row per mask, mIoU / pooled IoU per domain (and the
    judge's agreement with itself under redrawn noise, when measured)."""
    domains = list(result["domains"])
    head = f"{'mask':<18}" + "".join(f"{d:>24}" for d in domains)
    lines = [f"one-shot segmenter vs judge parser, n={result['n']} per domain (mIoU / pooled IoU)", head,
             "-" * len(head)]
    for m, per in result["results"].items():
        lines.append(f"{m:<18}" + "".join(f"{per[d]['miou']:>14.3f} / {per[d]['pooled_iou']:.3f}" for d in domains))
    noisy = [(m, per) for m, per in result["results"].items() if all("judge_noise_miou" in per[d] for d in domains)]
    if noisy:
        lines += ["", "judge parser vs itself with the generator's noise redrawn (mIoU)", head, "-" * len(head)]
        lines += [f"{m:<18}" + "".join(f"{per[d]['judge_noise_miou']:>24.3f}" for d in domains) for m, per in noisy]
    return "\n".join(lines)


def _nan_to_none(obj: Any) -> Any:
    """Strict JSON: NaN (an undefined IoU) becomes null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, Mapping):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def _load_named_generator(name: str) -> Generator:
    """A generator from a path, ``weights/<name>.pt`` (the toy zoo) or a manifest name."""
    from ..core.paths import committed_weights_dir
    from ..core.stylegan2 import load_generator

    p = Path(name)
    if p.is_file():
        return load_generator(p)
    local = committed_weights_dir() / f"{name}.pt"
    if local.is_file():
        return load_generator(local)
    try:
        return load_generator(name)
    except (UserError, FileNotFoundError) as exc:
        raise SegmenterError(f"cannot load generator {name!r} ({exc}); toy zoo generators are made by "
                             "`python -m ddsutils.zoo train` into weights/<name>.pt") from exc


def _default_judge(name: str) -> tuple[Any, Callable[[Any, Tensor], Tensor]]:
    from . import judges  # written separately; imported only when the real judge is used

    return judges.load_judge(name, kind=judges.KIND_PARSER), judges.predict_parts


@cli_command
def main(argv: Sequence[str] | None = None, *, load_generator_fn: Callable[[str], Generator] | None = None,
         load_judge_fn: Callable[[str], tuple[Any, Callable[[Any, Tensor], Tensor]]] | None = None) -> int:
    """``python -m ddsutils.segmenter evaluate ...`` (loaders are injectable for tests).

    Every argument is checked, and the generators and the judge are loaded, before anything is trained; a
    user error is one line on stderr and exit status 2 (:mod:`ddsutils.cli`).
    """
    from .toyworld import MASKS

    p = cli.ArgumentParser(prog="python -m ddsutils.segmenter", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("evaluate", help="one-shot segmenters from oracle labels, IoU vs the judge parser per domain")
    pos, nonneg = cli.argtype(cli.positive_int), cli.argtype(cli.non_negative_int)
    e.add_argument("--n", type=pos, default=200, help="evaluation images per domain")
    e.add_argument("--json", required=True, help="write the results here (atomic)")
    e.add_argument("--generator", default="toy-natural-64", help="source generator (name or path)")
    e.add_argument("--targets", nargs="*", default=["toy-sketch-64", "toy-caricature-64"])
    e.add_argument("--judge", default="judge-parser-64")
    e.add_argument("--masks", nargs="*", default=None,
                   help=f"names in toyworld.MASKS (default all: {', '.join(MASKS)})")
    e.add_argument("--size", default="S", choices=sorted(FEWSHOT_SIZES))
    e.add_argument("--steps", type=pos, default=100)
    e.add_argument("--step-size", type=pos, default=50,
                   help="StepLR step of the segmenter's learning rate (x0.1 every step-size steps; recipe: 50)")
    e.add_argument("--rule", default="median", choices=("median", "first"),
                   help="which candidate is labelled (see choose_candidate)")
    e.add_argument("--n-labels", type=pos, default=1,
                   help="labelled images per mask (default 1, one-shot; more for a few-shot comparison)")
    e.add_argument("--no-standardise", action="store_true", help="raw features (the plain repurpose-gan recipe)")
    e.add_argument("--class-balance", type=cli.argtype(cli.float_arg, min=0, max=1), default=0.5,
                   help="cross-entropy class weights freq**-b (0: unweighted, as repurpose-gan)")
    e.add_argument("--stats", default="training", choices=("training", "generator"),
                   help="feature statistics at prediction: the source generator's (default) or each domain's own")
    e.add_argument("--prior-correction", type=cli.argtype(cli.float_arg, min=0), default=0.0,
                   help="logit adjustment of the masks for the class weights (1: full, 0: plain argmax)")
    e.add_argument("--label-truncation", type=cli.argtype(cli.float_arg, min=0, max=1), default=0.0,
                   help="truncation psi of the labelled image toward the mean w (0: the mean face, 1: untruncated)")
    e.add_argument("--feature-dropout", type=cli.argtype(cli.float_arg, min=0, max=1, max_open=True), default=0.5,
                   help="channel dropout on the features while training (0: none, as repurpose-gan)")
    e.add_argument("--no-judge-noise", action="store_true",
                   help="skip scoring the judge against itself with the generator's noise redrawn")
    e.add_argument("--seed", type=nonneg, default=0)
    e.add_argument("--batch-size", type=pos, default=16)
    e.add_argument("--device", default="cpu")
    e.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    prog = "ddsutils.segmenter"
    json_path = cli.output_file(a.json, "--json")
    for m in a.masks or []:
        cli.choice(m, "--masks", MASKS, what="mask")
    if a.masks is not None and not a.masks:
        raise UserError(f"give at least one mask ({', '.join(MASKS)})", argument="--masks", value="")
    if a.n_labels > 1 and a.label_truncation == 0:
        raise UserError("needs --label-truncation > 0: at 0 every candidate is the same mean face; pass "
                        "--label-truncation 1 for different images", argument="--n-labels", value=a.n_labels)
    if a.n_labels > 64:
        raise UserError("must be <= 64 (the number of candidate images)", argument="--n-labels", value=a.n_labels)
    dev = cli.device(a.device, "--device")
    load_g = load_generator_fn or _load_named_generator
    load_j = load_judge_fn or _default_judge
    names = [_style_name(x) for x in [a.generator, *a.targets]]
    if len(set(names)) != len(names):  # two files of one style: keep the given names
        names = [a.generator, *a.targets]
    if len(set(names)) != len(names):
        raise UserError("names the same generator twice; give each domain once", argument="--targets",
                        value=" ".join(a.targets))
    cli.say(f"loading {len(names)} generators and the judge {a.judge}", prog=prog)
    source = cli.load("--generator", a.generator, load_g).to(dev)
    targets = {nm: cli.load("--targets", t, load_g).to(dev) for nm, t in zip(names[1:], a.targets)}
    parser, predict_parts = cli.load("--judge", a.judge, load_j)
    sig = architecture_signature(source)
    for t, G in zip(a.targets, targets.values()):
        if architecture_signature(G) != sig:
            raise UserError(f"is a {_describe(architecture_signature(G))} but --generator is a {_describe(sig)}; "
                            "the segmenter only transfers to generators of the source's architecture",
                            argument="--targets", value=t)
    t0 = time.perf_counter()
    res = evaluate(source, targets, parser=parser, predict_parts=predict_parts, n=a.n, masks=a.masks,
                   source_name=names[0], size=a.size, steps=a.steps, seed=a.seed, rule=a.rule, stats=a.stats,
                   n_labels=a.n_labels, batch_size=a.batch_size, device=dev, progress=not a.no_progress,
                   prior_correction=a.prior_correction, label_truncation=a.label_truncation,
                   judge_noise=not a.no_judge_noise, standardise=not a.no_standardise, class_balance=a.class_balance,
                   step_size=a.step_size, feature_dropout=a.feature_dropout,
                   log=None if a.no_progress else (lambda m: cli.say(m, prog=prog)))
    res.update({"generator": a.generator, "targets": list(a.targets), "judge": a.judge,
                "seconds": round(time.perf_counter() - t0, 2)})
    print(format_table(res))
    from ..core.files import atomic_write_bytes

    text = json.dumps(_nan_to_none(res), indent=2, allow_nan=False)
    print(f"wrote {atomic_write_bytes((text + chr(10)).encode(), json_path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
