"""The toy generator zoo: one command that trains the natural StyleGAN2 and adapts it to sketch and caricature.

``python -m ddsutils.zoo train`` reproduces the whole zoo from nothing (toy-world renders are the data):

1. :func:`ddsutils.toy.train.train_gan` on ``natural`` renders (``RUNS/natural``), exported as
   ``OUT/toy-natural-64.pt``;
2. :func:`ddsutils.toy.fewshot.adapt` of that training checkpoint to ``sketch`` and ``caricature`` from 10
   rendered images each (``RUNS/sketch``, ``RUNS/caricature``), exported as ``OUT/toy-sketch-64.pt`` and
   ``OUT/toy-caricature-64.pt``;
3. sample grids ``FIGURES/zoo_<name>.png`` (the same z through the three generators) and
   ``FIGURES/zoo_pairs.png`` (rows: natural / sketch / caricature for the same z), and
   ``RUNS/zoo_summary.json`` (files, sha256, iterations, wall time).

Exports hold ``{"g_ema", "config", "latent_avg", "meta"}`` and load with
:func:`ddsutils.core.stylegan2.load_generator`. Every stage resumes from its latest checkpoint, so an
interrupted command can simply be run again. ``evaluate`` scores the zoo with the judges. The recipe
(:data:`ZOO_DEFAULTS`) and why: ``docs/zoo.md``.

    python -m ddsutils.zoo train [--device auto] [--out weights] [--iters-natural N] [--iters-adapt N]
    python -m ddsutils.zoo evaluate --n 256 [--json PATH] [--generator STYLE=PATH]

Used in: notebooks/08_fewshot_adaptation.ipynb.
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..core import cli
from ..core import imageio as viz
from ..core import weights as W
from ..core.files import atomic_write_bytes
from ..core.cli import UserError
from .fewshot import adapt, frozen_parameters
from ..core.paths import fig_dir, runs_dir
from ..core.stylegan2 import load_generator
from .train import PRESETS, build_generator, export_generator, resolve_arch, resolve_device, train_gan

__all__ = ["FREEZE_TO_32PX", "ZOO_DEFAULTS", "per_target", "adapt_steps", "check_train_args", "train_zoo",
           "zoo_figures", "logged_seconds", "zoo_manifest_entries", "main"]

#: Layers every adaptation of the zoo holds at the source's values: the mapping network and the 4-32 px layers.
FREEZE_TO_32PX = ("style", "input", "conv1", "to_rgb1",
                  "convs.0", "convs.1", "convs.2", "convs.3", "convs.4", "convs.5")

#: The recipe of the committed zoo (``make zoo`` reproduces it). Three changes from few-shot-gan-adaptation, each
#: measured on caricature and sketch (README, "The toy world"): the adaptation starts from the natural generator's
#: ``g_ema``, not its raw ``g`` (whose layouts differ from ``g_ema``'s: parser IoU 0.45 / 0.56); the mapping network
#: and the 4-32 px layers are held at the source's values (``freeze``), which keeps the layout, and for caricature
#: also the 64 px upsampling convolution ``convs.6``; and ``kl_wt`` is 10x few-shot's 1000. Pairing falls while the
#: target style comes in; caricature, with more frozen, needs 1,400 steps for an own-style score over 0.9, sketch
#: 1,100. Freezing ``convs.6`` for sketch too kept its pairing over 0.6 only until about step 1,000, at a worse
#: Fréchet distance (1,096.9 at step 900 vs 612.9).
ZOO_DEFAULTS: dict[str, Any] = {
    "preset": "toy64",
    "batch": 8,
    "iters_natural": 10000,
    "iters_adapt": {"sketch": 1100, "caricature": 1400},
    "r1": 1.0,
    "ema_kimg": 10.0,
    "ema_rampup": 0.05,
    "adapt_batch": 4,
    "kl_wt": 10000.0,
    "adapt_lr": 0.002,
    "freeze": {"sketch": FREEZE_TO_32PX, "caricature": (*FREEZE_TO_32PX, "convs.6")},
    "source_weights": "g_ema",
    "shots_seed": 2022,
    "n_shots": 10,
    "targets": ("sketch", "caricature"),
}


@torch.no_grad()
def zoo_figures(files: dict[str, Path], figures: Path, *, n: int = 16, seed: int = 0) -> dict[str, Path]:
    """Sample grids with the same z (and the generators' constant noise) for every zoo generator.

    Args:
        files: ``{name: exported generator file}``.
        figures: output folder (``zoo_<name>.png`` and ``zoo_pairs.png``).
        n: images per grid; ``seed``: seed of z.

    Returns:
        ``{name: png path}`` plus ``"pairs"``.
    """
    gens = {name: load_generator(p) for name, p in files.items()}
    dims = {G.style_dim for G in gens.values()}
    if len(dims) != 1:
        raise ValueError(f"zoo generators disagree on style_dim: {dims}")
    z = torch.randn(n, dims.pop(), generator=torch.Generator().manual_seed(seed))
    imgs = {name: G(z, noise="const") for name, G in gens.items()}
    out = {name: viz.save_png(img, figures / f"zoo_{name}.png", nrow=8) for name, img in imgs.items()}
    rows = []
    for s in range(0, n, 8):
        rows += [img[s:s + 8] for img in imgs.values()]
    out["pairs"] = viz.save_png(torch.cat(rows), figures / "zoo_pairs.png", nrow=8)
    return out


def logged_seconds(run_dir: str | Path) -> tuple[int, float]:
    """``(last iteration, seconds)`` of a training run from its ``log.jsonl``, summed over every resume.

    Each log entry holds the wall time per iteration since the previous entry (``sec_per_iter``), so the sum
    counts the training steps, sample grids and checkpoints of all sessions, but not the time between them.
    """
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no training log at {path}; was {run_dir} made by ddsutils.train / fewshot?")
    last, total = 0, 0.0
    for line in path.read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        total += float(e["sec_per_iter"]) * (int(e["iter"]) - last)
        last = int(e["iter"])
    return last, total


def zoo_manifest_entries(summary: dict[str, Any], *, command: str) -> list[dict[str, Any]]:
    """``weights/manifest.json`` entries of a :func:`train_zoo` summary (files must lie inside the repository)."""
    out = []
    for style, st in summary["stages"].items():
        G = load_generator(st["file"])
        iters, secs = logged_seconds(Path(st["checkpoint"]).parent.parent)
        what = (f"{iters} iterations (batch {summary['batch']}, preset {summary['preset']}, r1 {ZOO_DEFAULTS['r1']})"
                if style == "natural" else
                f"{iters} adaptation iterations from toy-natural-{summary['size']} ({ZOO_DEFAULTS['n_shots']} shots, "
                f"CDC kl_wt {summary['kl_wt']:g}, patch D, lr {summary['adapt_lr']:g}, "
                f"started from the source's {summary.get('source_weights', 'g')}"
                + (f", frozen {', '.join(summary['freeze'][style])}" if summary["freeze"][style] else "") + ")")
        notes = (f"Toy-world StyleGAN2 generator, {G.size} px, style_dim {G.style_dim}, n_mlp {G.n_mlp}, "
                 f"{sum(p.numel() for p in G.parameters()) / 1e6:.1f} M params ({{g_ema, config, latent_avg, meta}}). "
                 f"Trained by `{command}`: {what}; {secs:.0f} s of logged training time (all resumes) on "
                 f"{summary['device']} ({W.hardware_description()}), {summary['threads']} torch thread(s).")
        out.append(W.local_entry(st["file"], name=Path(st["file"]).stem, kind="stylegan2-generator", notes=notes,
                                 source="this repository: ddsutils.zoo (trained on ddsutils.toyworld renders)"))
    return out


def per_target(value: Any, targets: Sequence[str], *, name: str) -> dict[str, Any]:
    """``{style: value}`` for each target from one value for all or a mapping that names every target (other
    keys are ignored, so the default per-style recipe also serves a subset of the targets).

    Raises:
        ValueError: a mapping that misses a target.
    """
    if not isinstance(value, Mapping):
        return {t: value for t in targets}
    missing = [t for t in targets if t not in value]
    if missing:
        raise UserError(f"{name} must name every target {list(targets)}: missing {missing} (has {sorted(value)}); "
                         "or pass one value for all")
    return {t: value[t] for t in targets}


def adapt_steps(iters_adapt: int | Mapping[str, int], targets: Sequence[str]) -> dict[str, int]:
    """``{style: steps}`` from one step count or a mapping (:func:`per_target`); refuses counts below 1."""
    steps = {t: int(v) for t, v in per_target(iters_adapt, targets, name="iters_adapt").items()}
    bad = {t: v for t, v in steps.items() if v < 1}
    if bad:
        raise UserError(f"adaptation steps must be >= 1, got {bad}", argument="iters_adapt")
    return steps


def check_train_args(*, out: str | Path, figures: str | Path | None, runs: str | Path | None, iters_natural: int,
                     iters_adapt: int | Mapping[str, int], preset: str, batch: int, targets: Sequence[str],
                     kl_wt: float, adapt_lr: float, freeze: Sequence[str] | Mapping[str, Sequence[str]],
                     source_weights: str, seed: int, device: str, threads: int | None, update_manifest: bool,
                     names: Mapping[str, str] | None = None) -> tuple[dict[str, tuple[str, ...]], dict[str, int]]:
    """Check :func:`train_zoo`'s arguments without training; returns ``(freeze per target, steps per target)``.

    ``names`` maps argument names to what the user typed (the CLI passes ``{"out": "--out", ...}``) for the
    messages. Raises :class:`~ddsutils.cli.UserError`.
    """
    from .toyworld import STYLES

    nm = {k: k for k in ("out", "figures", "runs", "iters_natural", "iters_adapt", "preset", "batch", "targets",
                         "kl_wt", "adapt_lr", "freeze", "source_weights", "seed", "device", "threads")}
    nm.update(names or {})
    cli.positive_int(iters_natural, nm["iters_natural"])
    cli.positive_int(batch, nm["batch"])
    cli.float_arg(kl_wt, nm["kl_wt"], min=0)
    cli.float_arg(adapt_lr, nm["adapt_lr"], min=0, min_open=True)
    cli.non_negative_int(seed, nm["seed"])
    if threads is not None:
        cli.positive_int(threads, nm["threads"])
    cli.choice(preset, nm["preset"], sorted(PRESETS), what="preset")
    cli.choice(source_weights, nm["source_weights"], ("g_ema", "g"))
    for t in targets:
        cli.choice(t, nm["targets"], [s for s in STYLES if s != "natural"], what="target style")
    cli.device(device, nm["device"])
    folders = {"out": Path(out), "figures": Path(figures) if figures is not None else fig_dir(),
               "runs": Path(runs) if runs is not None else runs_dir() / "zoo"}
    for key, folder in folders.items():
        if folder.exists() and not folder.is_dir():
            raise UserError("is an existing file, not a folder", argument=nm[key], value=str(folder))
    if update_manifest:  # fail before hours of training, not after
        try:
            W.repo_relative(folders["out"])
        except ValueError as exc:
            raise UserError(f"update_manifest needs out inside the repository ({exc})", argument=nm["out"],
                            value=str(out)) from exc
    freezes = per_target(freeze, targets, name="freeze")
    if any(isinstance(f, str) for f in freezes.values()):
        raise TypeError("freeze takes a sequence of prefixes (or {style: prefixes}), not one string")
    freezes = {t: tuple(f) for t, f in freezes.items()}
    arch = build_generator(resolve_arch(preset))
    bad = sorted({b for f in freezes.values() for b in frozen_parameters(arch, f)[1]})
    if bad:  # likewise: adapt would refuse them after the natural training
        raise UserError(f"freeze prefixes {bad} match no parameter of the {preset!r} generator "
                        "(the default freeze names the toy64 layers); pass no names (CLI: --freeze alone) "
                        "or its own prefixes",
                        argument=nm["freeze"], value=" ".join(bad))
    return freezes, adapt_steps(iters_adapt, targets)


def train_zoo(*, out: str | Path = "weights", figures: str | Path | None = None, runs: str | Path | None = None,
              iters_natural: int = ZOO_DEFAULTS["iters_natural"],
              iters_adapt: int | Mapping[str, int] = ZOO_DEFAULTS["iters_adapt"],
              preset: str = ZOO_DEFAULTS["preset"], batch: int = ZOO_DEFAULTS["batch"],
              targets: Sequence[str] = ZOO_DEFAULTS["targets"], kl_wt: float = ZOO_DEFAULTS["kl_wt"],
              adapt_lr: float = ZOO_DEFAULTS["adapt_lr"],
              freeze: Sequence[str] | Mapping[str, Sequence[str]] = ZOO_DEFAULTS["freeze"],
              source_weights: str = ZOO_DEFAULTS["source_weights"], seed: int = 0, device: str = "auto",
              threads: int | None = None, progress: bool = True, update_manifest: bool = False,
              command: str = "python -m ddsutils.zoo train") -> dict[str, Any]:
    """Train the natural generator, adapt it to each target style, export all, draw the figures.

    Args:
        out: folder for the exported generators ``toy-<style>-<size>.pt``.
        figures: folder for ``zoo_*.png`` (default :func:`ddsutils.paths.fig_dir`).
        runs: folder for the training runs (default ``runs_dir()/"zoo"``).
        iters_natural: steps of natural training; ``iters_adapt``: steps of each adaptation, one number for
            all targets or ``{style: steps}`` naming every target.
        preset: architecture (:data:`ddsutils.train.PRESETS`); ``batch``: natural batch size.
        targets: styles to adapt to.
        kl_wt, adapt_lr, freeze, source_weights: CDC weight, learning rate, frozen layers and starting
            weights of the adaptation (:func:`ddsutils.fewshot.adapt`); ``freeze`` is one prefix list for all
            targets or ``{style: prefixes}`` naming every target.
        seed, device, threads, progress: passed to the trainers.
        update_manifest: write the exported files' entries into ``weights/manifest.json`` (``out`` must be
            inside the repository); ``command``: the command line recorded in their notes.

    Returns:
        The summary also written to ``runs/zoo_summary.json``.

    Raises:
        UserError: a bad argument (checked before any training): non-positive step counts or batch, a learning
            rate or CDC weight that is not finite, an unknown target style or preset, a folder argument that
            is a file, ``update_manifest`` with ``out`` outside the repository.

    Every output is written atomically file by file; ``runs`` holds resumable training checkpoints, so it is
    not a run folder that appears whole (an interrupted command continues from it when run again).
    """
    freezes, steps = check_train_args(out=out, figures=figures, runs=runs, iters_natural=iters_natural,
                                      iters_adapt=iters_adapt, preset=preset, batch=batch, targets=targets,
                                      kl_wt=kl_wt, adapt_lr=adapt_lr, freeze=freeze, source_weights=source_weights,
                                      seed=seed, device=device, threads=threads, update_manifest=update_manifest)
    out = Path(out)
    figures = Path(figures) if figures is not None else fig_dir()
    runs = Path(runs) if runs is not None else runs_dir() / "zoo"
    size = PRESETS[preset]["size"]
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"preset": preset, "size": size, "batch": batch, "kl_wt": kl_wt, "adapt_lr": adapt_lr,
                               "iters_adapt": steps,
                               "freeze": {t: list(f) for t, f in freezes.items()}, "source_weights": source_weights,
                               "device": str(resolve_device(device)),
                               "threads": threads or torch.get_num_threads(), "seed": seed, "stages": {}}

    def record(name: str, ckpt: Path, dst: Path, t_start: float) -> None:
        summary["stages"][name] = {"checkpoint": str(ckpt), "file": str(dst), "sha256": W.sha256_file(dst),
                                   "bytes": dst.stat().st_size, "wall_s": round(time.perf_counter() - t_start, 1)}

    say = (lambda m: cli.say(m, prog="ddsutils.zoo")) if progress else (lambda m: None)
    t = time.perf_counter()
    say(f"training the natural generator: {iters_natural} iterations of batch {batch} "
        f"(resumes from {runs / 'natural'})")
    nat = train_gan(out_dir=runs / "natural", style="natural", preset=preset, batch=batch, iters=iters_natural,
                    r1=ZOO_DEFAULTS["r1"], ema_kimg=ZOO_DEFAULTS["ema_kimg"], ema_rampup=ZOO_DEFAULTS["ema_rampup"],
                    seed=seed, device=device, threads=threads, progress=progress)
    files = {"natural": export_generator(nat, out / f"toy-natural-{size}.pt", meta={"style": "natural"})}
    record("natural", nat, files["natural"], t)
    for style in targets:
        t = time.perf_counter()
        say(f"adapting it to {style}: {steps[style]} iterations from {ZOO_DEFAULTS['n_shots']} renders")
        ck = adapt(nat, target_style=style, out_dir=runs / style, n_shots=ZOO_DEFAULTS["n_shots"],
                   shots_seed=ZOO_DEFAULTS["shots_seed"], iters=steps[style], batch=ZOO_DEFAULTS["adapt_batch"],
                   kl_wt=kl_wt, lr=adapt_lr, freeze=freezes[style], source_weights=source_weights, seed=seed,
                   device=device, threads=threads, progress=progress)
        files[style] = export_generator(ck, out / f"toy-{style}-{size}.pt",
                                        meta={"style": style, "source": f"toy-natural-{size}.pt"})
        record(style, ck, files[style], t)
    say(f"drawing the sample grids into {figures}")
    summary["figures"] = {k: str(v) for k, v in zoo_figures(files, figures, seed=seed).items()}
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    runs.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes((json.dumps(summary, indent=2) + "\n").encode(), runs / "zoo_summary.json")
    if update_manifest:
        W.update_manifest(zoo_manifest_entries(summary, command=command))
    return summary


ZOO_NAMES = {"natural": "toy-natural-64", "sketch": "toy-sketch-64", "caricature": "toy-caricature-64"}
FOUND_MIN_PIXELS = 4  # a part counts as found in a 64 px sample when the parser labels at least this many pixels


def _sample(G, z: torch.Tensor, psi: float, batch: int = 64) -> torch.Tensor:
    centre = G.mean_latent(4096) if psi != 1.0 else None
    with torch.no_grad():
        return torch.cat([G(z[i:i + batch], truncation=psi, truncation_latent=centre).clamp(-1, 1)
                          for i in range(0, len(z), batch)])


def _pairing(labels_a: torch.Tensor, labels_b: torch.Tensor) -> dict[str, float]:
    """Mean IoU over images of each paper mask (:data:`ddsutils.toyworld.MASKS`) between two label maps ``[N, H, W]``
    (images where both masks are empty are skipped; NaN when all are)."""
    from . import toyworld

    out = {}
    for m in toyworld.MASKS:
        a, b = toyworld.part_mask(labels_a, m) > 0.5, toyworld.part_mask(labels_b, m) > 0.5
        inter, union = (a & b).flatten(1).sum(1).float(), (a | b).flatten(1).sum(1).float()
        ok = union > 0
        out[m] = float((inter[ok] / union[ok]).mean()) if ok.any() else float("nan")
    return out


def evaluate_zoo(*, generators: dict[str, Any] | None = None, n: int = 256, truncations: Sequence[float] = (1.0, 0.7),
                 fd_n: int = 1000, seed: int = 0, parser: Any = None, domain: Any = None,
                 fd_fn: Any = None, progress: bool = True) -> dict[str, Any]:
    """Check the toy zoo against the judges (issue bars in brackets).

    For each generator and truncation ψ, over ``n`` seeded samples (the same z for every generator):

    - ``found``: fraction of samples in which the parser finds each of eyes, nose, mouth, hair
      (>= :data:`FOUND_MIN_PIXELS` pixels) [natural: >= 0.9 each];
    - ``own_style``: fraction of face pixels (parser: not background) that the domain segmenter assigns to the
      generator's own style [>= 0.9];
    - ``pairing`` (targets): mean IoU of the parser's ``eyes_nose_mouth`` / ``hair`` masks of G_natural(z) and
      G_target(z) [>= 0.6];
    - ``pairing_ceiling`` (targets): the same IoU between ``n`` seeded identities rendered in natural and in the
      target style, from the true label maps and through the parser (caricature parts are drawn larger, so
      its ceiling is below 1);
    - ``frechet_vgg`` (ψ = 1 only): Fréchet distance on VGG-16 features between ``fd_n`` samples and ``fd_n``
      renders of the same style, with ``floor`` = the distance between two independent sets of renders.

    Args:
        generators: ``{style: Generator}``; default the committed ``toy-*-64`` zoo.
        parser, domain: judges (default the committed ``judge-parser-64`` / ``judge-domain-64``).
        fd_fn: ``fd_fn(img_a, img_b) -> float`` (default :func:`ddsutils.metrics.frechet_vgg`).

    Returns:
        A JSON-serialisable dict (see :func:`format_zoo_report`).

    Used in: notebooks/01_load_generators.ipynb, notebooks/08_fewshot_adaptation.ipynb.
    """
    from tqdm.auto import tqdm

    from . import judges, toyworld

    cli.positive_int(n, "n")
    cli.non_negative_int(fd_n, "fd_n")
    cli.non_negative_int(seed, "seed")
    for psi in truncations:
        cli.float_arg(psi, "truncations", min=0, max=1)
    say = (lambda m: cli.say(m, prog="ddsutils.zoo")) if progress else (lambda m: None)
    gens = generators if generators is not None else {s: load_generator(nm) for s, nm in ZOO_NAMES.items()}
    parser = parser if parser is not None else judges.load_judge("judge-parser-64")
    domain = domain if domain is not None else judges.load_judge("judge-domain-64")
    if fd_fn is None:
        from ..core.metrics import frechet_vgg as fd_fn
    dim = next(iter(gens.values())).style_dim
    z = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    parts = {p: toyworld.PARTS.index(p) for p in ("eyes", "nose", "mouth", "hair")}
    out: dict[str, Any] = {"n": n, "fd_n": fd_n, "seed": seed, "truncations": list(truncations), "results": {}}
    say(f"sampling and judging {n} images per generator at truncation {', '.join(f'{p:g}' for p in truncations)}")
    bar = tqdm(total=len(gens) * len(truncations), desc="zoo evaluate", disable=cli.no_progress(progress))
    for psi in truncations:
        labels, row = {}, {}
        for style, G in gens.items():
            img = _sample(G, z, psi)
            lab = judges.predict_parts(parser, img)
            labels[style] = lab
            sty = judges.predict_styles(domain, img)
            face = lab != toyworld.PARTS.index("background")
            own = ((sty == toyworld.STYLES.index(style)) & face).sum().item() / max(face.sum().item(), 1)
            found = {p: float(((lab == k).flatten(1).sum(1) >= FOUND_MIN_PIXELS).float().mean())
                     for p, k in parts.items()}
            row[style] = {"found": found, "own_style": own}
            bar.update()
        for style in gens:
            if style != "natural" and "natural" in labels:
                row[style]["pairing"] = _pairing(labels["natural"], labels[style])
        out["results"][f"psi={psi:g}"] = row
    bar.close()
    if "natural" in gens:  # the renderer's own limit: the same identities rendered in both styles
        size = gens["natural"].size
        idt = toyworld.sample_identities(n, seed=seed + 300)
        nat_img, nat_lab = toyworld.render(idt, style="natural", size=size)
        nat_parsed = judges.predict_parts(parser, nat_img)
        out["pairing_ceiling"] = {}
        for style in gens:
            if style != "natural":
                img, lab = toyworld.render(idt, style=style, size=size)
                out["pairing_ceiling"][style] = {"true_labels": _pairing(nat_lab, lab),
                                                 "parser": _pairing(nat_parsed, judges.predict_parts(parser, img))}
    if fd_n:
        zf = torch.randn(fd_n, dim, generator=torch.Generator().manual_seed(seed + 1))
        fd: dict[str, Any] = {}
        say(f"Fréchet distances on VGG-16 features: {fd_n} samples and 2 x {fd_n} renders per generator")
        for i, (style, G) in enumerate(tqdm(list(gens.items()), desc="zoo Fréchet", disable=cli.no_progress(progress))):
            renders_a = toyworld.render_batch(fd_n, style=style, seed=seed + 100 + i)[0]
            renders_b = toyworld.render_batch(fd_n, style=style, seed=seed + 200 + i)[0]
            fd[style] = {"samples_vs_renders": fd_fn(_sample(G, zf, 1.0), renders_a),
                         "floor_renders_vs_renders": fd_fn(renders_b, renders_a)}
        out["frechet_vgg"] = fd
    return out


def format_zoo_report(res: dict[str, Any]) -> str:
    """Markdown tables of :func:`evaluate_zoo`'s result."""
    lines = [f"toy zoo vs judges: n={res['n']} samples per generator (same z for all)", ""]
    for key, row in res["results"].items():
        lines += [f"**{key}**", "",
                  "| generator | eyes | nose | mouth | hair | own style | pairing eyes_nose_mouth | pairing hair |",
                  "|---|---|---|---|---|---|---|---|"]
        for style, r in row.items():
            f, p = r["found"], r.get("pairing", {})
            pe = f"{p['eyes_nose_mouth']:.3f}" if p else "—"
            ph = f"{p['hair']:.3f}" if p else "—"
            lines.append(f"| {style} | {f['eyes']:.3f} | {f['nose']:.3f} | {f['mouth']:.3f} | {f['hair']:.3f} | "
                         f"{r['own_style']:.3f} | {pe} | {ph} |")
        lines.append("")
    if "pairing_ceiling" in res:
        lines += ["Pairing ceiling: the same identities rendered in natural and in the target style "
                  "(true labels / through the parser):", "", "| generator | eyes_nose_mouth | hair |", "|---|---|---|"]
        for style, c in res["pairing_ceiling"].items():
            t, q = c["true_labels"], c["parser"]
            lines.append(f"| {style} | {t['eyes_nose_mouth']:.3f} / {q['eyes_nose_mouth']:.3f} | "
                         f"{t['hair']:.3f} / {q['hair']:.3f} |")
        lines.append("")
    if "frechet_vgg" in res:
        lines += [f"Fréchet distance on VGG-16 features (not FID), {res['fd_n']} vs {res['fd_n']} images:", "",
                  "| generator | samples vs renders | floor: renders vs renders |", "|---|---|---|"]
        for style, r in res["frechet_vgg"].items():
            lines.append(f"| {style} | {r['samples_vs_renders']:.2f} | {r['floor_renders_vs_renders']:.2f} |")
    return "\n".join(lines)


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ddsutils.zoo {train,evaluate}``; every argument is checked before training or sampling, and a
    user error is one line on stderr with exit status 2 (:mod:`ddsutils.cli`)."""
    pos, nonneg = cli.argtype(cli.positive_int), cli.argtype(cli.non_negative_int)
    p = cli.ArgumentParser(prog="python -m ddsutils.zoo", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train natural, adapt to sketch and caricature, export, draw figures")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    t.add_argument("--out", default="weights", help="folder for toy-<style>-64.pt (default weights)")
    t.add_argument("--figures", default=None, help="folder for zoo_*.png (default $DDS_FIG_DIR or figures/)")
    t.add_argument("--runs", default=None, help="training runs folder (default $DDS_RUNS_DIR/zoo or runs/zoo)")
    t.add_argument("--iters-natural", type=pos, default=ZOO_DEFAULTS["iters_natural"])
    t.add_argument("--iters-adapt", action="append", default=[], metavar="N | STYLE=N",
                   help="adaptation steps: one number for all targets, or STYLE=N per target (repeatable; default "
                        + ", ".join(f"{k}={v}" for k, v in ZOO_DEFAULTS["iters_adapt"].items()) + ")")
    t.add_argument("--preset", default=ZOO_DEFAULTS["preset"], choices=sorted(PRESETS))
    t.add_argument("--batch", type=pos, default=ZOO_DEFAULTS["batch"], help="natural batch size")
    t.add_argument("--kl-wt", type=cli.argtype(cli.float_arg, min=0), default=ZOO_DEFAULTS["kl_wt"],
                   help="CDC loss weight of the adaptation")
    t.add_argument("--adapt-lr", type=cli.argtype(cli.float_arg, min=0, min_open=True),
                   default=ZOO_DEFAULTS["adapt_lr"],
                   help="adaptation learning rate")
    t.add_argument("--freeze", nargs="*", default=None,
                   help="generator parameter-name prefixes held at the source's values while adapting, for every "
                        "target (default: the recipe's per-style lists, see ZOO_DEFAULTS; --freeze alone: none)")
    t.add_argument("--source-weights", default=ZOO_DEFAULTS["source_weights"], choices=("g_ema", "g"),
                   help="source weights the adaptation starts from (default g_ema; few-shot-gan-adaptation uses g)")
    t.add_argument("--update-manifest", action="store_true",
                   help="write the exported files' entries (sha256, size, logged training time) into the manifest")
    t.add_argument("--seed", type=nonneg, default=0)
    t.add_argument("--threads", type=pos, default=None, help="torch.set_num_threads (default: torch's)")
    t.add_argument("--no-progress", action="store_true")
    e = sub.add_parser("evaluate", help="check the zoo against the judges (parser, domain segmenter, VGG Fréchet)")
    e.add_argument("--n", type=pos, default=256)
    e.add_argument("--fd-n", type=nonneg, default=1000, help="images per side for the Fréchet distance (0 = skip)")
    e.add_argument("--seed", type=nonneg, default=0)
    e.add_argument("--json", default=None)
    e.add_argument("--generator", action="append", default=[], metavar="STYLE=PATH",
                   help="score this generator (exported file or training checkpoint) in place of the committed "
                        "toy-STYLE-64, e.g. sketch=runs/zoo/sketch/checkpoints/001000.pt; repeatable")
    e.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.cmd == "evaluate":
        chosen: dict[str, str] = dict(ZOO_NAMES)
        for item in a.generator:
            style, sep, path = item.partition("=")
            if not sep or style not in ZOO_NAMES or not path:
                p.error(f"--generator wants STYLE=PATH with STYLE one of {', '.join(ZOO_NAMES)}, got {item!r}")
            chosen[style] = path
        json_path = cli.output_file(a.json, "--json") if a.json else None
        gens = {st: cli.load("--generator", src, lambda v: load_generator(v)) for st, src in chosen.items()}
        res = evaluate_zoo(generators=gens, n=a.n, fd_n=a.fd_n, seed=a.seed, progress=not a.no_progress)
        res["generators"] = chosen
        print(format_zoo_report(res))
        if json_path is not None:
            atomic_write_bytes((json.dumps(res, indent=2) + "\n").encode(), json_path)
        return 0
    iters_adapt = dict(ZOO_DEFAULTS["iters_adapt"])
    for item in a.iters_adapt:  # N sets every target, STYLE=N one of them; later items win
        style, sep, num = item.rpartition("=")
        if not num.isdigit() or int(num) < 1 or (sep and style not in iters_adapt):
            p.error(f"--iters-adapt wants N or STYLE=N with STYLE one of {', '.join(iters_adapt)} and N >= 1, "
                    f"got {item!r}")
        iters_adapt = {**iters_adapt, style: int(num)} if sep else dict.fromkeys(iters_adapt, int(num))
    argv = list(argv) if argv is not None else sys.argv[1:]
    freeze = ZOO_DEFAULTS["freeze"] if a.freeze is None else a.freeze
    check_train_args(out=a.out, figures=a.figures, runs=a.runs, iters_natural=a.iters_natural, iters_adapt=iters_adapt,
                     preset=a.preset, batch=a.batch, targets=ZOO_DEFAULTS["targets"], kl_wt=a.kl_wt,
                     adapt_lr=a.adapt_lr, freeze=freeze, source_weights=a.source_weights, seed=a.seed,
                     device=a.device, threads=a.threads, update_manifest=a.update_manifest,
                     names={k: "--" + k.replace("_", "-") for k in ("out", "figures", "runs", "iters_natural",
                                                                   "iters_adapt", "device", "freeze")})
    s = train_zoo(out=a.out, figures=a.figures, runs=a.runs, iters_natural=a.iters_natural,
                  iters_adapt=iters_adapt, preset=a.preset, batch=a.batch, kl_wt=a.kl_wt, adapt_lr=a.adapt_lr,
                  freeze=freeze, source_weights=a.source_weights,
                  seed=a.seed, device=a.device, threads=a.threads,
                  progress=not a.no_progress, update_manifest=a.update_manifest,
                  command="python -m ddsutils.zoo " + shlex.join(x for x in argv if x != "--debug"))
    for name, st in s["stages"].items():
        print(f"{name:11s} {st['file']}  sha256 {st['sha256'][:16]}…  {st['wall_s']} s")
    print("figures:", ", ".join(s["figures"].values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
