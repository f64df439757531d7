"""The toy zoo's neighbourhood: model distances, the layer-swap curve and adaptation baselines, judged.

"I2I translation via pre-trained StyleGAN2" (seed 003) makes its target generator a near neighbour of the source:
fine-tuning with the mapping network frozen (FC-FT) and the layer swap ``S(G_t, l)``
(:mod:`ddsutils.core.neighbours`). This module measures those ideas in the toy world:

- ``distance``: the model distance (mean LPIPS of ``G_a(z)`` vs ``G_b(z)``) between every pair of the zoo and,
  optionally, the baseline generators below, with each generator's diversity ``LPIPS_d`` as the unpaired scale;
- ``swap``: ``S(G_t, l)`` for ``l = 0 … all`` (``G_s`` = ``toy-natural-64``) scored with the judges
  (:func:`score_generators`: own style, parts found, pairing IoU with ``G_s(z)``, ``LPIPS_s``, ``LPIPS_d``, Fréchet
  distance on VGG-16 features to renders of the target style) and a PNG grid (rows ``l``, columns ``z``);
- ``adapt-baselines``: a source training checkpoint from the committed ``toy-natural-64`` (``g = g_ema``) and a
  discriminator warm-started against it (:func:`warm_start_source`), then natural → target adaptations from the
  zoo's 10 shots: ``cdc`` (the zoo recipe), ``finetune`` (TransferGAN: plain fine-tuning of G and D) and
  ``fc-ft`` (plain fine-tuning, mapping network frozen), scored next to the committed generator.

    python -m ddsutils.toy.neighbourhood distance --n 2000 [--with-baselines]
    python -m ddsutils.toy.neighbourhood swap --target caricature --n 1000 --grid figures/swap_caricature.png
    python -m ddsutils.toy.neighbourhood adapt-baselines --target caricature --n 1000

Adapted checkpoints and exports live under ``runs/neighbourhood/`` (not committed). Measurements:
``docs/neighbourhood.md``; a walk-through at small sizes: ``notebooks/10_neighbourhood.ipynb``.
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..core import cli
from ..core import imageio as viz
from ..core.files import atomic_torch_save, atomic_write_bytes
from ..core.neighbours import (
    layer_swap,
    lpips_diversity,
    mean_lpips,
    model_distances,
    sample_images,
    swapped_resolutions,
)
from ..core.paths import runs_dir
from ..core.stylegan2 import Generator, load_generator

__all__ = ["BASELINES", "TARGETS", "baseline_settings", "distance_table", "score_generators", "swap_generators",
           "swap_curve", "swap_images", "swap_grid", "warm_start_source", "adapt_baselines", "baseline_generators",
           "format_distance_table", "format_scores", "format_baselines", "main"]

#: Target styles of the zoo (the source is always ``natural``).
TARGETS = ("sketch", "caricature")

#: The adaptation baselines: ``adapt`` keywords beyond the zoo recipe's common ones (``cdc``'s freeze list is the
#: zoo's per-style one, filled in by :func:`baseline_settings`).
BASELINES: dict[str, dict[str, Any]] = {
    "cdc": {"method": "cdc"},                              # the committed recipe, re-run from the same source
    "finetune": {"method": "finetune", "freeze": ()},       # TransferGAN: plain fine-tuning of G and D
    "fc-ft": {"method": "finetune", "freeze": ("style",)},  # seed 003's FC-FT: the mapping network frozen
}
_LABELS = {"cdc": "CDC (zoo recipe, re-run)", "finetune": "TransferGAN (plain FT)", "fc-ft": "FC-FT (mapping frozen)"}


def _say(progress: bool):
    return (lambda m: cli.say(m, prog="ddsutils.toy.neighbourhood")) if progress else (lambda m: None)


def baseline_settings(method: str, target: str) -> dict[str, Any]:
    """The :func:`ddsutils.toy.fewshot.adapt` keywords of one baseline: the zoo recipe plus :data:`BASELINES`.

    Returns:
        ``{"target_style", "n_shots", "shots_seed", "iters", "batch", "lr", "kl_wt", "source_weights", "method",
        "freeze"}`` (``kl_wt`` is unused by the fine-tuning baselines).
    """
    from .zoo import ZOO_DEFAULTS

    cli.choice(method, "methods", BASELINES, what="baseline")
    cli.choice(target, "target", TARGETS, what="target style")
    out = {"target_style": target, "n_shots": ZOO_DEFAULTS["n_shots"], "shots_seed": ZOO_DEFAULTS["shots_seed"],
           "iters": ZOO_DEFAULTS["iters_adapt"][target], "batch": ZOO_DEFAULTS["adapt_batch"],
           "lr": ZOO_DEFAULTS["adapt_lr"], "kl_wt": ZOO_DEFAULTS["kl_wt"],
           "source_weights": ZOO_DEFAULTS["source_weights"], "freeze": tuple(ZOO_DEFAULTS["freeze"][target])}
    out.update({k: tuple(v) if k == "freeze" else v for k, v in BASELINES[method].items()})
    return out


# ----------------------------------------------------------------------------------------------------
# Model distances


def distance_table(generators: Mapping[str, Generator], *, n: int = 2000, seed: int = 0, batch_size: int = 100,
                   progress: bool = True) -> dict[str, Any]:
    """Model distances between every pair of ``generators`` (:func:`ddsutils.core.neighbours.model_distances`).

    Args:
        generators: ``{name: Generator}`` (one architecture).
        n, seed, batch_size, progress: latents, their seed, images per pass, ``tqdm.auto`` bars.

    Returns:
        ``{"n", "seed", "net", "distance": {a: {b: d}}, "diversity": {name: LPIPS_d}, "seconds"}``.
    """
    t0 = time.perf_counter()
    res = model_distances(generators, n=n, seed=seed, batch_size=batch_size, net="alex", progress=progress)
    return {"n": n, "seed": seed, "net": "alex", **res, "seconds": round(time.perf_counter() - t0, 1)}


def format_distance_table(res: Mapping[str, Any]) -> str:
    """Markdown: the model-distance matrix and each generator's ``LPIPS_d`` (the last column)."""
    names = list(res["distance"])
    lines = [f"Model distance (mean LPIPS-alex of G_a(z) vs G_b(z), n={res['n']}, seed {res['seed']}); last column: "
             "LPIPS_d, the same generator's unpaired samples", "",
             "| | " + " | ".join(names) + " | LPIPS_d |", "|---|" + "---:|" * (len(names) + 1)]
    for a in names:
        cells = [f"{res['distance'][a][b]:.3f}" for b in names]
        lines.append(f"| {a} | " + " | ".join(cells) + f" | {res['diversity'][a]:.3f} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Scoring with the judges


def score_generators(generators: Mapping[str, Generator], *, source: Generator, target_style: str,
                     source_style: str = "natural", n: int = 1000, seed: int = 0, batch_size: int = 100,
                     parser: Any = None, domain: Any = None, fd_fn: Any = None, keep_images: int = 0,
                     progress: bool = True) -> dict[str, Any]:
    """Score generators that should draw ``target_style`` paired with ``source`` (the same ``z``).

    Over ``n`` seeded latents (one ``z`` for every generator, constant noise, ψ = 1):

    - ``own_style`` / ``source_style``: fraction of face pixels (parser: not background) the domain judge assigns
      to ``target_style`` / ``source_style``;
    - ``found``: fraction of images in which the parser finds each of eyes, nose, mouth, hair (at least
      :data:`ddsutils.toy.zoo.FOUND_MIN_PIXELS` pixels), and ``found_all``: all four at once;
    - ``pairing``: mean IoU of the parser's ``eyes_nose_mouth`` / ``hair`` masks of ``G(z)`` and ``source(z)``;
    - ``lpips_s``: mean LPIPS-alex of ``G(z)`` vs ``source(z)`` (the model distance to the source);
    - ``lpips_d``: mean LPIPS-alex between pairs of ``G``'s samples (diversity);
    - ``frechet_vgg``: Fréchet distance on VGG-16 features (not FID) of the ``n`` samples to ``n`` renders of
      ``target_style``; in the result ``floor``: ``n`` other renders of that style against the same ones, and
      ``source_renders``: ``n`` renders of ``source_style`` against them (the domain gap in this distance).

    Args:
        generators: ``{name: Generator}``, each of ``source``'s architecture.
        source: the source generator ``G_s``.
        target_style, source_style: toy-world styles.
        n, seed, batch_size: latents (``n >= 2``), their seed, images per pass.
        parser, domain: judges (default ``judge-parser-64`` / ``judge-domain-64``).
        fd_fn: ``fd_fn(img_a, img_b) -> float`` (default :func:`ddsutils.core.metrics.frechet_vgg`).
        keep_images: also return each generator's first ``keep_images`` samples (``"images"``, not JSON).
        progress: ``tqdm.auto`` bars and what is about to happen on stderr.

    Returns:
        ``{"n", "seed", "target_style", "source_style", "floor", "source_renders", "rows": {name: scores},
        "images"}``.
    """
    from tqdm.auto import tqdm

    from . import judges, toyworld
    from .zoo import FOUND_MIN_PIXELS, _pairing

    cli.int_arg(n, "n", min=2)
    cli.non_negative_int(seed, "seed")
    cli.positive_int(batch_size, "batch_size")
    cli.choice(target_style, "target_style", toyworld.STYLES, what="style")
    cli.choice(source_style, "source_style", toyworld.STYLES, what="style")
    cli.non_negative_int(keep_images, "keep_images")
    parser = parser if parser is not None else judges.load_judge("judge-parser-64")
    domain = domain if domain is not None else judges.load_judge("judge-domain-64")
    if fd_fn is None:
        from ..core.metrics import frechet_vgg as fd_fn
    say = _say(progress)
    z = torch.randn(n, source.style_dim, generator=torch.Generator().manual_seed(seed))
    # the source's images and parts, and the renders of the target style (reference and floor)
    say(f"sampling the source and rendering 2 x {n} {target_style} images")
    x_s = sample_images(source, z, batch_size=batch_size, progress=progress, desc="source")
    lab_s = judges.predict_parts(parser, x_s)
    k = toyworld.STYLES.index(target_style)
    refs = toyworld.render_batch(n, style=target_style, size=source.size, seed=seed + 100 + k)[0]
    floor = fd_fn(toyworld.render_batch(n, style=target_style, size=source.size, seed=seed + 200 + k)[0], refs)
    k_s = toyworld.STYLES.index(source_style)
    cross = fd_fn(toyworld.render_batch(n, style=source_style, size=source.size, seed=seed + 300 + k_s)[0], refs)
    parts = {p: toyworld.PARTS.index(p) for p in ("eyes", "nose", "mouth", "hair")}
    rows: dict[str, dict[str, Any]] = {}
    images: dict[str, torch.Tensor] = {}
    say(f"scoring {len(generators)} generator(s) on {n} latents (judges, LPIPS, Fréchet VGG)")
    for name, G in tqdm(list(generators.items()), desc="score", disable=cli.no_progress(progress)):
        t0 = time.perf_counter()
        x = sample_images(G, z, batch_size=batch_size, progress=progress, desc=name)
        # the judges: parts and per-pixel style inside the face
        lab = judges.predict_parts(parser, x)
        sty = judges.predict_styles(domain, x)
        face = lab != toyworld.PARTS.index("background")
        n_face = max(int(face.sum()), 1)
        found = {p: (lab == i).flatten(1).sum(1) >= FOUND_MIN_PIXELS for p, i in parts.items()}
        rows[name] = {
            "own_style": int(((sty == k) & face).sum()) / n_face,
            "source_style": int(((sty == toyworld.STYLES.index(source_style)) & face).sum()) / n_face,
            "found": {p: float(f.float().mean()) for p, f in found.items()},
            "found_all": float(torch.stack(list(found.values())).all(0).float().mean()),
            "pairing": _pairing(lab_s, lab),
            # LPIPS to the source's image of the same z, and between the generator's own samples
            "lpips_s": mean_lpips(x, x_s, batch_size=batch_size),
            "lpips_d": lpips_diversity(x, batch_size=batch_size),
            "frechet_vgg": fd_fn(x, refs),
        }
        rows[name]["seconds"] = round(time.perf_counter() - t0, 1)
        if keep_images:
            images[name] = x[:keep_images]
    return {"n": n, "seed": seed, "target_style": target_style, "source_style": source_style, "floor": floor,
            "source_renders": cross, "rows": rows, "images": images}


def format_scores(res: Mapping[str, Any], *, first: str = "generator", extra: Mapping[str, Mapping[str, str]] | None
                  = None, extra_head: Sequence[str] = ()) -> str:
    """Markdown table of :func:`score_generators` (one line per generator; ``extra`` adds columns per row)."""
    t, s = res["target_style"], res["source_style"]
    head = [first, *extra_head, f"own style ({t})", f"{s} style", "parts found (all 4)",
            "pairing eyes_nose_mouth / hair", "LPIPS_s ↓", "LPIPS_d ↑",
            f"Fréchet VGG to {t} renders (floor {res['floor']:.1f}; {s} renders {res['source_renders']:.1f})"]
    lines = [f"n={res['n']} latents (seed {res['seed']}), ψ = 1; pairing, LPIPS_s: against G_{s}(z)", "",
             "| " + " | ".join(head) + " |", "|---|" + "---|" * len(extra_head) + "---:|" * 7]
    for name, r in res["rows"].items():
        p = r["pairing"]
        cells = [name, *[(extra or {}).get(name, {}).get(h, "") for h in extra_head], f"{r['own_style']:.3f}",
                 f"{r['source_style']:.3f}", f"{r['found_all']:.3f}",
                 f"{p['eyes_nose_mouth']:.3f} / {p['hair']:.3f}", f"{r['lpips_s']:.3f}", f"{r['lpips_d']:.3f}",
                 f"{r['frechet_vgg']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# The layer-swap curve


def swap_generators(G_s: Generator, G_t: Generator, *, levels: Sequence[int] | None = None) -> dict[str, Generator]:
    """``{"l=0": S(G_t, 0), ...}``: the paper's layer swap at each level (default ``0 … log2(size) - 2``)."""
    top = G_t.log_size - 2
    levels = list(range(top + 1)) if levels is None else [cli.int_arg(v, "levels", min=0, max=top) for v in levels]
    return {f"l={v}": layer_swap(G_s, G_t, resolutions=swapped_resolutions(G_t, v)) for v in levels}


def swap_curve(G_s: Generator, G_t: Generator, *, target_style: str, levels: Sequence[int] | None = None,
               **score_kwargs: Any) -> dict[str, Any]:
    """Score ``S(G_t, l)`` for each level with :func:`score_generators` (``source = G_s``).

    Returns:
        :func:`score_generators`' result plus ``"resolutions": {"l=…": [swapped px]}``.
    """
    gens = swap_generators(G_s, G_t, levels=levels)
    res = score_generators(gens, source=G_s, target_style=target_style, **score_kwargs)
    res["resolutions"] = {k: list(swapped_resolutions(G_t, int(k[2:]))) for k in gens}
    return res


@torch.no_grad()
def swap_images(G_s: Generator, G_t: Generator, *, levels: Sequence[int] | None = None, n: int = 8,
                seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """The swap curve's images: ``G_s(z)``, then ``S(G_t, l)(z)`` for each level; ``n`` images per row.

    Args:
        G_s, G_t: source and adapted generator; levels: as in :func:`swap_generators` (default ``0 … all``).
        n: latents (columns), ``torch.randn(n, D)`` seeded by ``seed``; constant noise, ψ = 1.

    Returns:
        ``(images [(1 + len(levels)) * n, 3, H, W] in [-1, 1] on the CPU, labels)``: row by row (tile with
        ``nrow=n``); the labels name the rows (``"G_s"``, ``"l=0"``, ...).
    """
    cli.positive_int(n, "grid_n")
    z = torch.randn(n, G_s.style_dim, generator=torch.Generator().manual_seed(seed))
    gens = swap_generators(G_s, G_t, levels=levels)
    rows = [sample_images(G_s, z)] + [sample_images(G, z) for G in gens.values()]
    return torch.cat(rows), ["G_s", *gens]


def swap_grid(G_s: Generator, G_t: Generator, path: str | Path, *, levels: Sequence[int] | None = None, n: int = 8,
              seed: int = 0) -> Path:
    """PNG of :func:`swap_images`: first row ``G_s(z)``, then one row per level ``S(G_t, l)(z)``; columns ``z``.

    Args:
        G_s, G_t: source and adapted generator; path: output ``.png``; levels: as in :func:`swap_generators`.
        n: latents (columns), the first ``n`` of ``torch.randn(n, D)`` seeded by ``seed``.

    Returns:
        The written path (64 px images upscaled 2x).
    """
    return viz.save_png(swap_images(G_s, G_t, levels=levels, n=n, seed=seed)[0], path, nrow=n, scale=2)


# ----------------------------------------------------------------------------------------------------
# Adaptation baselines


def warm_start_source(generator: str | Path = "toy-natural-64", out: str | Path | None = None, *, steps: int = 500,
                      batch: int = 8, lr: float = 0.002, r1: float = 1.0, d_reg_every: int = 16, mixing: float = 0.9,
                      style: str = "natural", seed: int = 0, eval_n: int = 256, progress: bool = True) -> Path:
    """A training checkpoint for :func:`ddsutils.toy.fewshot.adapt` from an exported generator and a warm D.

    The exported generator becomes ``g`` and ``g_ema``; a new discriminator (seeded, the generator's channel widths)
    is trained ALONE against the frozen generator on fresh ``style`` renders: the natural zoo run's settings
    (logistic loss, lazy R1 ``r1`` every ``d_reg_every`` steps, Adam (0, 0.99) at ``lr``, style mixing, random
    noise, flips), ``steps`` steps of ``batch`` real and ``batch`` fake images.

    Args:
        generator: exported generator (manifest name or file).
        out: checkpoint path (default ``runs/neighbourhood/source/source.pt``).
        steps, batch, lr, r1, d_reg_every, mixing: the discriminator's training.
        style: style of the real renders; seed: seeds D's initial weights and every draw.
        eval_n: held-out real renders and fakes on which the finished D is checked (``"warm_start"`` in the file).
        progress: ``tqdm.auto`` bar.

    Returns:
        The checkpoint path: ``{"g", "g_ema", "d", "d_optim", "iter": 0, "config", "d_config", "train_args",
        "loss_log", "warm_start"}``; ``warm_start`` holds the held-out mean logits, D's accuracy and the seconds.
    """
    from .train import (
        _cpu_state,
        adam_for,
        build_discriminator,
        discriminator_step,
        progress_bar,
        real_batch,
        rng,
        sample_w_plus,
        stream_seed,
    )

    for v, nm in ((steps, "steps"), (batch, "batch"), (eval_n, "eval_n")):
        cli.positive_int(v, nm)
    cli.float_arg(lr, "lr", min=0, min_open=True)
    cli.float_arg(r1, "r1", min=0)
    cli.non_negative_int(seed, "seed")
    out = Path(out) if out is not None else runs_dir() / "neighbourhood" / "source" / "source.pt"
    G = cli.load("generator", generator, load_generator)
    t0 = time.perf_counter()
    # a seeded new discriminator with the generator's widths, without touching the global RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(stream_seed(seed, 0, "d_init"))
        D = build_discriminator({"size": G.size, "channels": G.config["channels"]}).train()
    d_optim = adam_for(D.parameters(), lr=lr, reg_every=d_reg_every if r1 > 0 else 0)
    log: list[dict[str, Any]] = []
    bar = progress_bar(0, steps, enabled=progress, desc="warm-start D")
    for i in bar:
        # fresh real renders and fakes of the frozen generator (random noise, style mixing)
        real = real_batch(batch, style=style, size=G.size, seed=stream_seed(seed, i, "data"), flip=True,
                          generator=rng(seed, i, "flip"))
        gen = rng(seed, i, "d_fake")
        with torch.no_grad():
            fake = G.synthesis(sample_w_plus(G, batch, mixing=mixing, generator=gen),
                               noise=G.make_noise(batch, generator=gen))
        # logistic loss, then the lazy R1 step
        loss, real_pred, fake_pred, _ = discriminator_step(D, d_optim, real, fake, step=i, r1=r1,
                                                           d_reg_every=d_reg_every)
        if (i + 1) % 10 == 0 or i + 1 == steps:
            log.append({"iter": i + 1, "d": round(float(loss.detach()), 6),
                        "real_score": round(float(real_pred.detach().mean()), 6),
                        "fake_score": round(float(fake_pred.detach().mean()), 6)})
            bar.set_postfix(d=f"{float(loss.detach()):.3f}", refresh=False)
    bar.close()
    seconds = time.perf_counter() - t0
    # held-out check: new renders and fakes the discriminator never saw
    D.eval()
    with torch.no_grad():
        real = real_batch(eval_n, style=style, size=G.size, seed=stream_seed(seed, 0, "eval_data"), flip=False)
        gen = rng(seed, 0, "eval_fake")
        fake = G.synthesis(sample_w_plus(G, eval_n, mixing=0.0, generator=gen), noise=G.make_noise(eval_n,
                                                                                                   generator=gen))
        rp, fp = D(real).flatten(), D(fake).flatten()
    check = {"steps": steps, "seconds": round(seconds, 1), "eval_n": eval_n, "real_logit": float(rp.mean()),
             "fake_logit": float(fp.mean()), "accuracy": float(((rp > 0).float().sum() + (fp < 0).float().sum())
                                                               / (2 * eval_n))}
    sd = {k: v.detach().clone() for k, v in G.state_dict().items()}
    ck = {"g": sd, "g_ema": sd, "d": _cpu_state(D), "d_optim": _cpu_state(d_optim), "iter": 0,
          "config": dict(G.config), "d_config": dict(D.config),
          "train_args": {"kind": "warm_start_source", "generator": str(generator), "steps": steps, "batch": batch,
                         "lr": lr, "r1": r1, "d_reg_every": d_reg_every, "mixing": mixing, "style": style,
                         "seed": seed, "threads": torch.get_num_threads()},
          "loss_log": log, "warm_start": check}
    return atomic_torch_save(ck, out)


def adapt_baselines(*, target: str = "caricature", methods: Sequence[str] = tuple(BASELINES),
                    runs: str | Path | None = None, d_steps: int = 500, iters: int | None = None,
                    ema_kimg: float | None = None, seed: int = 0, threads: int | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Warm-start the source checkpoint (once) and run (or resume) each baseline adaptation, then export it.

    Args:
        target: target style (:data:`TARGETS`).
        methods: keys of :data:`BASELINES`.
        runs: folder (default ``runs/neighbourhood``): ``source/source.pt``, ``<target>-<method>/`` (adapt's run
            folder, a checkpoint every 100 steps, all kept) and ``toy-<target>-64-<method>.pt`` (the export).
        d_steps: discriminator warm-up steps of :func:`warm_start_source` (an existing source must match).
        iters: adaptation steps (default the zoo recipe's for the target).
        ema_kimg: EMA half-life of the exported generator in thousands of images (default ``adapt``'s, few-shot's
            1.25, for runs of a thousand steps and more; a run of tens of steps needs a short one, e.g. 0.05, or
            the export still looks like the source).
        seed, threads, progress: passed to ``adapt``.

    Returns:
        ``{"source": {path, warm_start}, "runs": {method: {"file", "checkpoint", "iters", "seconds", "settings"}}}``.
    """
    from .fewshot import adapt
    from .train import export_generator, load_training_checkpoint
    from .zoo import logged_seconds

    cli.choice(target, "--target", TARGETS, what="target style")
    methods = [cli.choice(m, "--methods", BASELINES, what="baseline") for m in methods]
    cli.positive_int(d_steps, "--d-steps")
    if iters is not None:
        cli.positive_int(iters, "--iters")
    if ema_kimg is not None:
        cli.float_arg(ema_kimg, "ema_kimg", min=0, min_open=True)
    if threads is not None:
        cli.positive_int(threads, "--threads")
        torch.set_num_threads(int(threads))
    runs = Path(runs) if runs is not None else runs_dir() / "neighbourhood"
    say = _say(progress)
    src = runs / "source" / "source.pt"
    if src.is_file():
        have = load_training_checkpoint(src)
        if have["train_args"].get("steps") != d_steps:
            raise cli.UserError(f"{src} has a discriminator warmed for {have['train_args'].get('steps')} steps, not "
                                f"{d_steps}; pass that, or use another --runs folder", argument="--d-steps",
                                value=d_steps)
    else:
        say(f"warm-starting a discriminator against toy-natural-64: {d_steps} steps -> {src}")
        warm_start_source("toy-natural-64", src, steps=d_steps, seed=seed, progress=progress)
    warm = load_training_checkpoint(src)["warm_start"]
    out: dict[str, Any] = {"source": {"path": str(src), "warm_start": warm}, "runs": {}}
    for m in methods:
        kw = baseline_settings(m, target)
        if iters is not None:
            kw["iters"] = iters
        if ema_kimg is not None:
            kw["ema_kimg"] = ema_kimg
        run = runs / f"{target}-{m}"
        say(f"adapting natural -> {target} with {m}: {kw['iters']} steps (resumes from {run})")
        ck = adapt(src, out_dir=run, seed=seed, device="cpu", threads=threads, progress=progress, sample_every=100,
                   ckpt_every=100, keep_ckpts=0, **kw)
        dst = export_generator(ck, runs / f"toy-{target}-64-{m}.pt",
                               meta={"style": target, "source": str(src), "baseline": m})
        steps, secs = logged_seconds(run)
        out["runs"][m] = {"file": str(dst), "checkpoint": str(ck), "iters": steps, "seconds": round(secs, 1),
                          "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}}
    return out


def baseline_generators(trained: Mapping[str, Any], *, target: str = "caricature",
                        device: str | torch.device = "cpu") -> dict[str, Generator]:
    """The generators the adaptation baselines are scored with, labelled as in the tables.

    Args:
        trained: :func:`adapt_baselines`' result (its ``runs`` rows' ``file``).
        target: the target style of those runs.
        device: where the generators are loaded.

    Returns:
        ``{"natural (source, not adapted)": toy-natural-64, "toy-<target>-64 (committed CDC)": the committed
        generator, then one entry per run: "CDC (zoo recipe, re-run)", "TransferGAN (plain FT)", "FC-FT (mapping
        frozen)"}``, in ``trained``'s order.
    """
    cli.choice(target, "target", TARGETS, what="target style")
    gens = {"natural (source, not adapted)": load_generator("toy-natural-64", device=device),
            f"toy-{target}-64 (committed CDC)": load_generator(f"toy-{target}-64", device=device)}
    gens.update({_LABELS[m]: load_generator(r["file"], device=device) for m, r in trained["runs"].items()})
    return gens


def format_baselines(scores: Mapping[str, Any], trained: Mapping[str, Any]) -> str:
    """:func:`format_scores` of :func:`baseline_generators`' scores with each run's logged training seconds."""
    secs = {_LABELS[m]: {"training s": f"{r['seconds']:.0f}"} for m, r in trained["runs"].items()}
    return format_scores(scores, extra=secs, extra_head=["training s"])


# ----------------------------------------------------------------------------------------------------
# Command line


def _write_json(obj: Any, path: Path | None) -> None:
    from .scoring import to_json

    if path is not None:
        atomic_write_bytes((json.dumps(to_json(obj), indent=2) + "\n").encode(), path)


def _named(items: Sequence[str], arg: str) -> dict[str, str]:
    """``NAME=SPEC`` items (SPEC a manifest name or a file) -> ``{NAME: SPEC}``."""
    out = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise cli.UserError("wants NAME=SPEC (SPEC: a weights name like toy-sketch-64 or a generator file)",
                                argument=arg, value=item)
        out[name] = spec
    return out


def _baseline_files(runs: Path, target: str) -> dict[str, Path]:
    files = {m: runs / f"toy-{target}-64-{m}.pt" for m in BASELINES}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise cli.UserError(f"missing {', '.join(missing)}; make them with `python -m ddsutils.toy.neighbourhood "
                            f"adapt-baselines --target {target}`", argument="--with-baselines")
    return files


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ddsutils.toy.neighbourhood {distance,swap,adapt-baselines}``; Markdown tables on stdout."""
    pos, nonneg = cli.argtype(cli.positive_int), cli.argtype(cli.non_negative_int)
    p = cli.ArgumentParser(prog="python -m ddsutils.toy.neighbourhood", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(q: Any, n: int) -> None:
        q.add_argument("--n", type=pos, default=n, help=f"latents (default {n})")
        q.add_argument("--seed", type=nonneg, default=0)
        q.add_argument("--batch-size", type=pos, default=100, help="images per forward pass")
        q.add_argument("--json", default=None, help="also write the result as JSON")
        q.add_argument("--quiet", action="store_true", help="no progress bars or status lines")
        q.add_argument("--threads", type=pos, default=None, help="torch.set_num_threads")

    d = sub.add_parser("distance", help="model distances between the zoo's generators (and the baselines)")
    common(d, 2000)
    d.add_argument("--generator", action="append", default=[], metavar="NAME=SPEC",
                   help="add a generator (weights name or file); repeatable")
    d.add_argument("--with-baselines", action="store_true",
                   help="add the caricature baselines of adapt-baselines (runs/neighbourhood/toy-caricature-64-*.pt)")
    d.add_argument("--runs", default=None, help="adapt-baselines' folder (default runs/neighbourhood)")
    s = sub.add_parser("swap", help="the layer-swap curve S(G_t, l), l = 0 ... all, scored with the judges")
    common(s, 1000)
    s.add_argument("--target", default="caricature", choices=TARGETS)
    s.add_argument("--generator", default=None, help="G_t (default toy-<target>-64; a weights name or file)")
    s.add_argument("--source", default="toy-natural-64", help="G_s (default toy-natural-64)")
    s.add_argument("--grid", default=None, help="write the PNG grid here (rows: G_s, then l = 0 ... all)")
    s.add_argument("--grid-n", type=pos, default=8, help="columns of the grid")
    a = sub.add_parser("adapt-baselines", help="warm-start D, adapt natural -> target by CDC / FT / FC-FT, score")
    common(a, 1000)
    a.add_argument("--target", default="caricature", choices=TARGETS)
    a.add_argument("--methods", nargs="+", default=list(BASELINES), choices=list(BASELINES))
    a.add_argument("--runs", default=None, help="folder (default runs/neighbourhood)")
    a.add_argument("--d-steps", type=pos, default=500, help="discriminator warm-up steps")
    a.add_argument("--iters", type=pos, default=None, help="adaptation steps (default the zoo recipe's)")
    a.add_argument("--no-score", action="store_true", help="train and export only")
    args = p.parse_args(argv)
    progress = not args.quiet
    json_path = cli.output_file(args.json, "--json") if args.json else None
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    runs = Path(args.runs) if getattr(args, "runs", None) else runs_dir() / "neighbourhood"

    if args.cmd == "distance":
        specs = {"natural": "toy-natural-64", "sketch": "toy-sketch-64", "caricature": "toy-caricature-64"}
        if args.with_baselines:
            specs.update({f"caricature {m}": str(f) for m, f in _baseline_files(runs, "caricature").items()})
        specs.update(_named(args.generator, "--generator"))
        gens = {k: cli.load("--generator", v, load_generator) for k, v in specs.items()}
        res = distance_table(gens, n=args.n, seed=args.seed, batch_size=args.batch_size, progress=progress)
        res["generators"] = specs
        print(format_distance_table(res))
        print(f"\n{res['seconds']:.0f} s")
        _write_json(res, json_path)
        return 0

    if args.cmd == "swap":
        grid = cli.output_file(args.grid, "--grid") if args.grid else None
        G_s = cli.load("--source", args.source, load_generator)
        G_t = cli.load("--generator", args.generator or f"toy-{args.target}-64", load_generator)
        t0 = time.perf_counter()
        res = swap_curve(G_s, G_t, target_style=args.target, n=args.n, seed=args.seed, batch_size=args.batch_size,
                         progress=progress)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        res.update(source=args.source, generator=args.generator or f"toy-{args.target}-64")
        extra = {k: {"swapped px": ", ".join(map(str, v)) or "—"} for k, v in res["resolutions"].items()}
        print(format_scores(res, first="l", extra=extra, extra_head=["swapped px"]))
        print(f"\n{res['seconds']:.0f} s")
        if grid is not None:
            print("grid:", swap_grid(G_s, G_t, grid, n=args.grid_n, seed=args.seed))
        res.pop("images")
        _write_json(res, json_path)
        return 0

    trained = adapt_baselines(target=args.target, methods=args.methods, runs=runs, d_steps=args.d_steps,
                              iters=args.iters, seed=args.seed, threads=args.threads, progress=progress)
    w = trained["source"]["warm_start"]
    print(f"source: {trained['source']['path']} (D warmed {w['steps']} steps in {w['seconds']:.0f} s; held-out "
          f"accuracy {w['accuracy']:.3f}, logits real {w['real_logit']:.2f} / fake {w['fake_logit']:.2f})")
    for m, r in trained["runs"].items():
        print(f"{m}: {r['file']} ({r['iters']} steps, {r['seconds']:.0f} s logged)")
    if args.no_score:
        _write_json(trained, json_path)
        return 0
    gens = baseline_generators(trained, target=args.target)
    res = score_generators(gens, source=next(iter(gens.values())), target_style=args.target, n=args.n, seed=args.seed,
                           batch_size=args.batch_size, progress=progress)
    res.pop("images")
    print()
    print(format_baselines(res, trained))
    _write_json({"trained": trained, "scores": res}, json_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
