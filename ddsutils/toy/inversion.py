"""Toy-world ground truth for inversion and for translation through the shared latent space.

In the toy world every identity can be rendered in every style, so an inversion can be checked where real
photographs cannot: the render of an identity in style ``S`` is a held-out "photo", and the render of the SAME
identity in another style ``T`` is the true translation. :func:`evaluate_inversion`

1. renders ``n`` held-out identities in each style ``S`` and inverts them into ``toy-S-64`` with
   :func:`ddsutils.core.projector.project` (batches of ``batch_size``): reconstruction LPIPS-alex, SSIM and PSNR
   against the render, and seconds per image;
2. for every ordered pair ``S → T`` sends the same latent through ``toy-T-64`` (``G_T(w_inv)``; the few-shot
   generators share natural's latent space) and compares it with the true ``T`` render of the identity:
   LPIPS-alex, and the IoU of the judge parser's ``eyes_nose_mouth`` and ``hair`` masks of the two images. Rows:

   - ``inversion``: ``G_T(w_inv)``, the method;
   - ``random-latent``: ``G_T(w(z))`` for seeded random ``z`` (a pair that knows nothing of the photo);
   - ``other-identity``: the true ``T`` render of another identity of the set (rolled by one): a perfect
     translation of the wrong person;
   - ``input``: the ``S`` photo itself, unchanged (a reference, not a baseline: the parts' geometry is the
     identity's in every style, so copying the input scores well on IoU but not on LPIPS).

Each ``S`` render is inverted once and reused for every ``T``.

    python -m ddsutils.toy.inversion --n 32 --steps 300 --batch-size 8 --json runs/inversion/wplus.json

Used in: docs/inversion.md.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["DEFAULT_STYLES", "DEFAULT_SEED", "PART_MASKS", "METHODS", "evaluate_inversion", "paired_differences",
           "format_tables", "add_arguments", "run_cli", "main"]

#: Styles :func:`evaluate_inversion` inverts by default (every ordered pair of them is translated).
DEFAULT_STYLES: tuple[str, ...] = ("natural", "caricature", "sketch")
#: Identity seed of the held-out "photos". Far from every seed the zoo and the judges were made from: the judges
#: trained on identity seeds ``0 * 2**24 + 4 * step + stream`` (0 … 8003; 2000 parser / 1600 domain steps), the
#: few-shot generators on 10 renders of seed 2022, the natural generator on renders of 63-bit hashed stream
#: seeds (:func:`ddsutils.toy.train.stream_seed`), ``zoo evaluate`` on seeds 0 … 302 and the judges' evaluation
#: and tests on ``2**40 + 1`` and ``2**40 + 2``.
DEFAULT_SEED = 910_000
#: Parser masks whose IoU the translation is scored on.
PART_MASKS: tuple[str, ...] = ("eyes_nose_mouth", "hair")
#: Translation rows, in table order.
METHODS: tuple[str, ...] = ("inversion", "random-latent", "other-identity", "input")
#: The acceptance bar: mean reconstruction LPIPS-alex of natural renders into toy-natural-64.
NATURAL_LPIPS_BAR = 0.03
_PROG = "ddsutils.toy.inversion"


def _check_args(*, styles: Any, n: Any, seed: Any, num_steps: Any, batch_size: Any, latent_space: Any,
                lr: Any, device: Any, generators: Mapping[str, Any] | None) -> tuple[list[str], torch.device]:
    """Every check that needs nothing loaded; a :class:`ddsutils.core.cli.UserError` naming the argument."""
    from ..core import cli
    from ..core.projector import LATENT_SPACES
    from . import toyworld

    styles = [styles] if isinstance(styles, str) else list(styles)
    if len(styles) < 2:
        raise cli.UserError(f"needs at least two styles to translate between (of {', '.join(toyworld.STYLES)})",
                            argument="styles", value=styles)
    for s in styles:
        cli.choice(s, "styles", toyworld.STYLES, what="style")
    if len(set(styles)) != len(styles):
        raise cli.UserError("names a style twice; give each style once", argument="styles", value=styles)
    n = cli.positive_int(n, "n")
    if n < 2:
        raise cli.UserError("must be >= 2: the other-identity baseline pairs each identity with another one",
                            argument="n", value=n)
    cli.non_negative_int(seed, "seed")
    cli.non_negative_int(num_steps, "num_steps")
    cli.positive_int(batch_size, "batch_size")
    cli.choice(latent_space, "latent_space", LATENT_SPACES, what="latent space")
    cli.float_arg(lr, "lr", min=0, min_open=True)
    if generators is not None:
        missing = [s for s in styles if s not in generators]
        if missing:
            raise cli.UserError(f"has no generator for {', '.join(missing)}", argument="generators",
                                value=sorted(generators))
    return styles, cli.device(device, "device")


def _mean(x: Tensor) -> float:
    """Mean of the finite-or-inf entries (NaN left out; NaN when none)."""
    x = x.double()
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float("nan")


def _floats(x: Tensor) -> list[float]:
    return [float(v) for v in x.double()]


def _summaries(per_image: Mapping[str, Tensor]) -> dict[str, Any]:
    """``{name: mean}`` of per-image scores ``[N]`` (NaN left out), plus ``"per_image": {name: [N floats]}``."""
    return {**{k: _mean(v) for k, v in per_image.items()}, "per_image": {k: _floats(v) for k, v in per_image.items()}}


def _lpips(a: Tensor, b: Tensor) -> Tensor:
    """Per-image LPIPS-alex ``[N]`` (float64, on the CPU) of images in [-1, 1]."""
    from ..core.metrics import lpips_distance

    return lpips_distance(a.cpu(), b.cpu(), net="alex").detach().double()


def _reconstruction_scores(img: Tensor, truth: Tensor) -> dict[str, Tensor]:
    """LPIPS-alex, SSIM and PSNR of ``img`` against ``truth`` per image (float64 ``[N]`` each)."""
    from ..core.metrics import psnr, ssim

    return {"lpips": _lpips(img, truth), "ssim": ssim(img, truth).double(), "psnr": psnr(img, truth).double()}


def _part_masks(parser: Any, img: Tensor) -> dict[str, Tensor]:
    """The parser's :data:`PART_MASKS` of ``img`` ``[N, 3, H, W]``: ``{mask: [N, 1, H, W]}``."""
    from . import judges, toyworld

    labels = judges.predict_parts(parser, img.cpu())
    return {m: toyworld.part_mask(labels, m) for m in PART_MASKS}


def _translation_scores(parser: Any, img: Tensor, truth: Tensor, truth_parts: Mapping[str, Tensor]
                        ) -> dict[str, Tensor]:
    """LPIPS-alex to the true renders ``truth`` and the IoU of the parser's part masks with ``truth_parts`` (the
    parts of ``truth``), per image: ``{"lpips", "iou_<mask>"}``."""
    from ..core.segmenter import mask_iou

    parts = _part_masks(parser, img)
    return {"lpips": _lpips(img, truth), **{f"iou_{m}": mask_iou(parts[m], truth_parts[m]) for m in PART_MASKS}}


def evaluate_inversion(
    *,
    styles: Sequence[str] = DEFAULT_STYLES,
    n: int = 32,
    seed: int = DEFAULT_SEED,
    num_steps: int = 300,
    batch_size: int = 8,
    latent_space: str = "w+",
    lr: float = 0.05,
    device: str | torch.device = "cpu",
    generators: Mapping[str, Any] | None = None,
    parser: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Invert held-out toy renders into their style's generator and translate them through the shared latent.

    The identities are ``toyworld.sample_identities(n, seed=seed)`` (the default :data:`DEFAULT_SEED`, 910 000, is
    held out: far from every seed the zoo generators and the judges were trained or evaluated on), rendered in
    every style of ``styles``; the render of identity ``i`` in style ``T`` is the ground-truth translation of its
    render in ``S``. The random-latent baseline draws ``z ~ N(0, I)`` with ``torch.Generator().manual_seed(seed
    + 1)`` (one ``z`` per identity, the same for every pair). Seeded and deterministic on the CPU (except the
    timings).

    Args:
        styles: toy styles (at least two, :data:`ddsutils.toy.toyworld.STYLES`); each is inverted into
            ``toy-<style>-64`` and every ordered pair is translated.
        n: identities (>= 2: the other-identity baseline pairs identity ``i`` with ``i - 1``).
        seed: identity seed (see above).
        num_steps, latent_space, lr: :func:`ddsutils.core.projector.project` settings (init: the mean w, LPIPS-alex
            + MSE, noise fixed).
        batch_size: images per :func:`project` call (the images of a batch are inverted independently).
        device: where the generators and the inversion run (scores are computed on the CPU).
        generators: ``{style: Generator}`` (default: the committed ``toy-<style>-64`` zoo).
        parser: the part parser (default the committed ``judge-parser-64``).
        progress: ``tqdm.auto`` bars (per style, and :func:`project`'s own).

    Returns:
        ``{"config", "reconstruction", "translation", "checks", "images"}``; all but ``images`` is
        JSON-serialisable (:func:`ddsutils.toy.scoring.to_json` turns NaN into null).

        - ``reconstruction[S]``: ``lpips``, ``ssim``, ``psnr`` (means), ``s_per_image`` (the inversion's wall
          time over ``n``), ``batch_seconds`` and ``per_image`` lists of the three metrics;
        - ``translation``: a list of rows ``{"source", "target", "method", "lpips", "iou_eyes_nose_mouth",
          "iou_hair", "per_image": {...}}`` for every pair and each of :data:`METHODS` (IoU means leave out
          images where both masks are empty);
        - ``checks``: ``natural_lpips`` (natural's reconstruction LPIPS ≤ :data:`NATURAL_LPIPS_BAR`, or null
          without natural) and, per pair ``"S->T"``, whether the inversion beats the random latent on LPIPS and
          on each IoU;
        - ``images`` (tensors ``[n, 3, H, W]`` in [-1, 1], CPU): ``truth/<S>``, ``reconstruction/<S>``,
          ``translation/<S>-><T>``, ``random-latent/<T>``.

    Raises:
        ddsutils.core.cli.UserError: before any rendering or inversion, an unknown or repeated style, fewer than
            two styles, ``n`` < 2, a negative seed or step count, ``batch_size`` < 1, an unknown latent space, a
            bad ``lr`` or device; then (still before any work) missing generator, judge or LPIPS weights.
    """
    from tqdm.auto import tqdm

    from ..core import cli
    from ..core import dds as core_dds
    from ..core.backbones import _cached_lpips
    from ..core.projector import project
    from ..core.stylegan2 import load_generator
    from . import judges, toyworld

    styles, dev = _check_args(styles=styles, n=n, seed=seed, num_steps=num_steps, batch_size=batch_size,
                              latent_space=latent_space, lr=lr, device=device, generators=generators)
    gens = dict(generators) if generators is not None else {
        s: cli.load("styles", f"toy-{s}-64", lambda name: load_generator(name, device=dev)) for s in styles}
    gens = {s: gens[s].to(dev).eval().requires_grad_(False) for s in styles}
    sizes = {g.size for g in gens.values()}
    if len(sizes) != 1:
        raise cli.UserError(f"make images of different sizes ({sorted(sizes)} px); give generators of one size",
                            argument="generators", value=sorted(gens))
    size = sizes.pop()
    parser_name = "judge-parser-64" if parser is None else "given"
    parser = parser if parser is not None else cli.load(None, None, lambda _: judges.load_judge("judge-parser-64"))
    cli.load(None, None, lambda _: core_dds._backbone_weight_files("lpips-alex"))
    lpips_module = _cached_lpips("alex", "0.1", str(dev))

    ids = toyworld.sample_identities(n, seed=seed)
    other = torch.roll(torch.arange(n), 1)  # identity i's baseline is identity i - 1 (a different person)
    truth = {s: toyworld.render(ids, style=s, size=size)[0] for s in styles}

    true_parts = {t: _part_masks(parser, truth[t]) for t in styles}

    def translation_row(src: str, tgt: str, method: str, img: Tensor) -> dict[str, Any]:
        return {"source": src, "target": tgt, "method": method,
                **_summaries(_translation_scores(parser, img, truth[tgt], true_parts[tgt]))}

    # 1. invert every style's renders once (batches of batch_size)
    reconstruction: dict[str, Any] = {}
    w_inv: dict[str, Tensor] = {}
    images: dict[str, Tensor] = {}
    for s in tqdm(styles, desc="invert styles", disable=cli.no_progress(progress), leave=False):
        if progress:
            cli.say(f"inverting {n} {s} render(s) into toy-{s}-64: {num_steps} steps, {latent_space}, batches of "
                    f"{batch_size}", prog=_PROG)
        w, rec, secs = [], [], []
        for i in range(0, n, batch_size):
            r = project(gens[s], truth[s][i:i + batch_size].to(dev), num_steps=num_steps, latent_space=latent_space,
                        init="mean", lr=lr, lpips_net=lpips_module, seed=seed, device=dev, progress=progress)
            w.append(r.w_plus)
            rec.append(r.image)
            secs.append(r.timings["total_s"])
        w_inv[s], images[f"reconstruction/{s}"], images[f"truth/{s}"] = torch.cat(w), torch.cat(rec), truth[s]
        reconstruction[s] = {**_summaries(_reconstruction_scores(images[f"reconstruction/{s}"], truth[s])),
                             "s_per_image": sum(secs) / n, "batch_seconds": [round(t, 3) for t in secs]}

    # 2. translation: the same w+ through every other style's generator, against the true render
    z = torch.randn(n, next(iter(gens.values())).style_dim, generator=torch.Generator().manual_seed(seed + 1))
    rows: list[dict[str, Any]] = []
    checks: dict[str, Any] = {}
    with torch.no_grad():
        rand = {t: gens[t](z.to(dev), noise="const").clamp(-1, 1).cpu() for t in styles}
        for src in styles:
            for tgt in styles:
                if src == tgt:
                    continue
                trans = gens[tgt].synthesis(w_inv[src].to(dev), noise="const").clamp(-1, 1).cpu()
                images[f"translation/{src}->{tgt}"] = trans
                images[f"random-latent/{tgt}"] = rand[tgt]
                cell = {"inversion": translation_row(src, tgt, "inversion", trans),
                        "random-latent": translation_row(src, tgt, "random-latent", rand[tgt]),
                        "other-identity": translation_row(src, tgt, "other-identity", truth[tgt][other]),
                        "input": translation_row(src, tgt, "input", truth[src])}
                rows.extend(cell[m] for m in METHODS)
                inv, rnd = cell["inversion"], cell["random-latent"]
                checks[f"{src}->{tgt}"] = {"lpips": inv["lpips"] < rnd["lpips"],
                                           **{f"iou_{m}": inv[f"iou_{m}"] > rnd[f"iou_{m}"] for m in PART_MASKS}}
    nat = reconstruction.get("natural", {}).get("lpips")
    config = {"styles": styles, "n": n, "seed": seed, "random_latent_seed": seed + 1, "num_steps": num_steps,
              "batch_size": batch_size, "latent_space": latent_space, "init": "mean", "lr": lr, "mse_weight": 1.0,
              "lpips": "alex", "parser": parser_name,
              "part_masks": list(PART_MASKS), "device": str(dev), "torch_threads": torch.get_num_threads(),
              "torch": torch.__version__}
    return {"config": config, "reconstruction": reconstruction, "translation": rows,
            "checks": {"natural_lpips_bar": NATURAL_LPIPS_BAR,
                       "natural_lpips": None if nat is None else nat <= NATURAL_LPIPS_BAR,
                       "beats_random_latent": checks},
            "images": images}


def paired_differences(result: Mapping[str, Any], *, baseline: str = "random-latent", method: str = "inversion"
                       ) -> dict[str, dict[str, tuple[float, float, int]]]:
    """Per pair ``"S->T"`` and score, the paired per-image difference ``method`` − ``baseline``: ``(mean, standard
    error, images)``; images where either value is NaN / null are left out (fewer than two: NaN error).
    Rows come from ``result["translation"]`` and, when present, ``result["pairs"]``.

    Works on :func:`evaluate_inversion`'s result or its JSON (it reads the rows' ``per_image`` lists).
    """
    rows = {(r["source"], r["target"], r["method"]): r
            for key in ("translation", "pairs") for r in result.get(key, [])}
    out: dict[str, dict[str, tuple[float, float, int]]] = {}
    for (src, tgt, m), row in rows.items():
        if m != method or (src, tgt, baseline) not in rows:
            continue
        cell = {}
        for key in ("lpips", *(f"iou_{m}" for m in PART_MASKS)):
            pairs = [(a, b) for a, b in zip(row["per_image"][key], rows[(src, tgt, baseline)]["per_image"][key])
                     if a is not None and b is not None and a == a and b == b]
            d = [a - b for a, b in pairs]
            k = len(d)
            mu = sum(d) / k if k else float("nan")
            se = (sum((x - mu) ** 2 for x in d) / (k - 1) / k) ** 0.5 if k > 1 else float("nan")
            cell[key] = (mu, se, k)
        out[f"{src}->{tgt}"] = cell
    return out


def format_tables(result: Mapping[str, Any]) -> str:
    """Markdown tables of :func:`evaluate_inversion`: reconstruction per style, translation per pair × method,
    and a line per acceptance check."""
    def f(x: Any, fmt: str) -> str:
        return "–" if x is None or x != x else format(x, fmt)

    cfg = result["config"]
    out = [f"Reconstruction ({cfg['n']} held-out renders per style, seed {cfg['seed']}, {cfg['num_steps']} steps, "
           f"{cfg['latent_space']}, batch {cfg['batch_size']}, {cfg['device']}, {cfg['torch_threads']} thread(s)):",
           "", "| style | LPIPS-alex ↓ | SSIM ↑ | PSNR (dB) ↑ | s / image |", "|---|---:|---:|---:|---:|"]
    for s, r in result["reconstruction"].items():
        out.append(f"| {s} | {f(r['lpips'], '.4f')} | {f(r['ssim'], '.3f')} | {f(r['psnr'], '.2f')} "
                   f"| {f(r['s_per_image'], '.2f')} |")
    out += ["", "Translation S → T against the true T render of the same identity (IoU: judge parser masks):", "",
            "| S → T | method | LPIPS-alex ↓ | IoU eyes/nose/mouth ↑ | IoU hair ↑ |", "|---|---|---:|---:|---:|"]
    for r in result["translation"]:
        out.append(f"| {r['source']} → {r['target']} | {r['method']} | {f(r['lpips'], '.3f')} "
                   f"| {f(r['iou_eyes_nose_mouth'], '.3f')} | {f(r['iou_hair'], '.3f')} |")
    out += ["", "Inversion − random latent, paired per image (mean ± standard error; LPIPS < 0 and IoU > 0 favour "
            "the inversion):", "", "| S → T | Δ LPIPS-alex | Δ IoU eyes/nose/mouth | Δ IoU hair |",
            "|---|---:|---:|---:|"]
    for pair, cell in paired_differences(result).items():
        out.append(f"| {pair.replace('->', ' → ')} | "
                   + " | ".join(f"{f(mu, '+.3f')} ± {f(se, '.3f')}" for mu, se, _ in cell.values()) + " |")
    checks = result["checks"]
    nat = checks["natural_lpips"]
    lines = [f"natural reconstruction LPIPS-alex ≤ {checks['natural_lpips_bar']}: "
             + ("not measured" if nat is None else ("yes" if nat else "NO"))]
    for pair, c in checks["beats_random_latent"].items():
        missed = [k for k, ok in c.items() if not ok]
        lines.append(f"{pair.replace('->', ' → ')} beats the random latent: "
                     + ("yes (LPIPS and both IoUs)" if not missed else f"NO on {', '.join(missed)}"))
    return "\n".join(out + [""] + [f"- {x}" for x in lines])


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``evaluate-inversion`` options (``--styles --n --steps --batch-size --latent-space --seed --json
    --device --quiet``) on ``parser``; returns it."""
    from ..core import cli
    from ..core.projector import LATENT_SPACES

    pos, nonneg = cli.argtype(cli.positive_int), cli.argtype(cli.non_negative_int)
    parser.add_argument("--styles", nargs="+", default=list(DEFAULT_STYLES),
                        help="toy styles to invert; every ordered pair is translated (default: natural caricature "
                             "sketch)")
    parser.add_argument("--n", type=pos, default=32, help="held-out identities per style (>= 2)")
    parser.add_argument("--steps", type=nonneg, default=300, help="inversion steps (Adam, LPIPS-alex + MSE)")
    parser.add_argument("--batch-size", type=pos, default=8, help="images per inversion call")
    parser.add_argument("--latent-space", choices=LATENT_SPACES, default="w+", help="w+ (default) or w")
    parser.add_argument("--seed", type=nonneg, default=DEFAULT_SEED,
                        help=f"identity seed (default {DEFAULT_SEED}, held out from the zoo's and judges' training)")
    parser.add_argument("--json", default=None, help="write the result JSON here (atomically)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


_FLAGS = {"styles": "--styles", "n": "--n", "num_steps": "--steps", "batch_size": "--batch-size",
          "latent_space": "--latent-space", "seed": "--seed", "device": "--device"}


def run_cli(args: argparse.Namespace) -> int:
    """Run :func:`evaluate_inversion` from parsed :func:`add_arguments` options: print the tables, write the JSON.

    Every argument (and ``--json``'s path) is checked before any work; a :class:`UserError` names the flag.
    """
    from ..core import cli
    from ..core.files import atomic_write_bytes
    from .scoring import to_json

    kw = dict(styles=args.styles, n=args.n, seed=args.seed, num_steps=args.steps, batch_size=args.batch_size,
              latent_space=args.latent_space, device=args.device)
    try:
        _check_args(lr=0.05, generators=None, **kw)
        json_path = cli.output_file(args.json, "--json") if args.json else None
        res = evaluate_inversion(progress=not args.quiet, **kw)
    except cli.UserError as exc:
        if exc.argument in _FLAGS:
            exc.argument = _FLAGS[exc.argument]
        raise
    res.pop("images")
    print(format_tables(res))
    if json_path is not None:
        atomic_write_bytes(json.dumps(to_json(res), indent=1, allow_nan=False).encode(), json_path)
        print(f"wrote {json_path}")
    return 0


def _main(argv: Sequence[str] | None = None) -> int:
    from ..core import cli

    p = cli.ArgumentParser(prog=f"python -m {_PROG}",
                           description="Invert held-out toy renders and translate them through the shared latent "
                                       "space; score against the ground-truth renders (tables + JSON).")
    return run_cli(add_arguments(p).parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ddsutils.toy.inversion``: one-line errors via :func:`ddsutils.core.cli.command`."""
    from ..core import cli

    return cli.command(_main)(argv)


if __name__ == "__main__":
    raise SystemExit(main())
