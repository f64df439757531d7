"""Toy-world scoring of dual-domain images with the judges, and the DDS evaluation behind ``dds evaluate``.

In the toy world a per-pixel domain segmenter (:mod:`ddsutils.toy.judges`, trained on renders only) tells which
style each pixel of an image is in, so a DDS output can be checked against what DDS promises: the part is in
the source style and the rest in the target style. :func:`style_fractions` computes the two fractions for
any images and masks; :func:`evaluate` runs every DDS mode over source→target pairs and masks of the toy zoo
and scores each result next to its cell's ceilings: the paste of ``x_s`` into ``x_t`` (``relative_inside``)
and true dual-domain renders (:func:`render_composite_ceiling`), with an identity score outside the part and
the Fréchet distance on VGG-16 features to renders of the target style.

    python -m ddsutils.dds evaluate --n 32 --steps 200 --json runs/dds_eval.json

Regions: ``inside`` is the source part mask ``y_s`` (where the crossover pastes the source part) and
``outside`` is everything in neither mask, ``1 - max(y_s, y_t)`` (target style in both the crossover and the
goal). The band ``y_t \\ y_s`` is left out: the crossover leaves it black there.

Used in: notebooks/03_dds_optimisation.ipynb, notebooks/05_metrics.ipynb.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DEFAULT_PAIRS", "regions", "style_fractions", "outside_l1", "oracle_pair", "score_cell",
           "render_composite_ceiling", "evaluate", "format_scores", "format_table", "to_json"]

#: Source → target pairs of the toy zoo scored by ``dds evaluate``.
DEFAULT_PAIRS: tuple[tuple[str, str], ...] = (
    ("caricature", "natural"),
    ("natural", "caricature"),
    ("sketch", "natural"),
    ("natural", "sketch"),
)


def regions(y_s: Tensor, y_t: Tensor) -> tuple[Tensor, Tensor]:
    """The scored regions of a pair: ``inside = y_s`` and ``outside = 1 - max(y_s, y_t)``.

    Args:
        y_s, y_t: source / target part masks ``[N, 1, H, W]`` in {0, 1}.

    Returns:
        ``(inside, outside)``, bool ``[N, H, W]``.
    """
    if y_s.shape != y_t.shape or y_s.ndim != 4 or y_s.shape[1] != 1:
        raise ValueError(f"masks must both be [N, 1, H, W]; got {tuple(y_s.shape)} and {tuple(y_t.shape)}")
    inside = y_s[:, 0] > 0.5
    outside = ~(inside | (y_t[:, 0] > 0.5))
    return inside, outside


def style_fractions(styles: Tensor, inside: Tensor, outside: Tensor, *, source_style: int,
                    target_style: int) -> dict[str, Tensor]:
    """Per-image fraction of inside pixels judged source style and of outside pixels judged target style.

    Args:
        styles: int64 ``[N, H, W]`` per-pixel style ids (:func:`ddsutils.judges.predict_styles`).
        inside, outside: bool ``[N, H, W]`` regions (:func:`regions`).
        source_style, target_style: ids in :data:`ddsutils.toyworld.STYLES`.

    Returns:
        ``{"inside_source": [N], "outside_target": [N]}`` float32 in [0, 1]; NaN for an image whose region is
        empty (left out of means by :func:`evaluate`).
    """
    if styles.shape != inside.shape or inside.shape != outside.shape:
        raise ValueError(f"styles {tuple(styles.shape)} and regions {tuple(inside.shape)} / "
                         f"{tuple(outside.shape)} must have the same [N, H, W] shape")

    def frac(hit: Tensor, region: Tensor) -> Tensor:
        den = region.flatten(1).sum(1).float()
        num = (hit & region).flatten(1).sum(1).float()
        return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(den, float("nan")))

    return {"inside_source": frac(styles == source_style, inside),
            "outside_target": frac(styles == target_style, outside)}


def _nanmean(x: Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float("nan")


def _oracle_masks(parser: Any, x_s: Tensor, x_t: Tensor, mask: str) -> tuple[Tensor, Tensor]:
    from . import judges, toyworld

    y_s = toyworld.part_mask(judges.predict_parts(parser, x_s), mask).float()
    y_t = toyworld.part_mask(judges.predict_parts(parser, x_t), mask).float()
    return y_s.reshape(len(x_s), 1, *x_s.shape[-2:]), y_t.reshape(len(x_t), 1, *x_t.shape[-2:])


def render_composite_ceiling(source: str, target: str, mask: str, *, n: int = 64, seed: int = 0,
                             domain: Any = None, size: int = 64) -> dict[str, float]:
    """The judge's score of true dual-domain renders (:func:`ddsutils.toyworld.composite`) of one cell.

    ``n`` identities are drawn in the source style inside the part and the target style elsewhere; the regions
    come from the renders' own part masks (``y_s`` of the source render, ``y_t`` of the target render).

    Returns:
        ``{"inside_source", "outside_target"}``: what a perfect dual-domain image scores with this judge.
    """
    from . import judges, toyworld

    domain = domain if domain is not None else judges.load_judge("judge-domain-64")
    ids = toyworld.sample_identities(n, seed=seed)
    img, _, _ = toyworld.composite(ids, inside_style=source, outside_style=target, mask=mask, size=size)
    y_s = toyworld.part_mask(toyworld.render(ids, style=source, size=size)[1], mask).float()
    y_t = toyworld.part_mask(toyworld.render(ids, style=target, size=size)[1], mask).float()
    inside, outside = regions(y_s.reshape(n, 1, size, size), y_t.reshape(n, 1, size, size))
    fr = style_fractions(judges.predict_styles(domain, img), inside, outside,
                         source_style=toyworld.STYLES.index(source), target_style=toyworld.STYLES.index(target))
    return {k: _nanmean(v) for k, v in fr.items()}


def outside_l1(img: Tensor, x_t: Tensor, y_s: Tensor, y_t: Tensor, *, margin: int | None = None) -> Tensor:
    """Identity away from the parts: mean ``|img − x_t|`` over the pixels farther than ``margin`` from both masks.

    Args:
        img, x_t: ``[N, 3, H, W]`` in [-1, 1]; y_s, y_t: ``[N, 1, H, W]`` in {0, 1}.
        margin: pixels around the masks left out (where a method may blend the part in); default ``H // 20``.

    Returns:
        ``[N]`` float (0: the face away from the part is kept exactly; NaN when no pixel is that far).
    """
    margin = max(1, img.shape[-1] // 20) if margin is None else margin
    near = torch.maximum(y_s, y_t).float()
    if margin:
        near = F.max_pool2d(near, 2 * margin + 1, stride=1, padding=margin)
    far = 1 - near
    den = far.flatten(1).sum(1)
    num = ((img - x_t).abs().mean(1, keepdim=True) * far).flatten(1).sum(1)
    return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(den, float("nan")))


def _outside_lpips(img: Tensor, x_t: Tensor, y_s: Tensor, y_t: Tensor, lpips_fn: Callable | None) -> float:
    # identity outside the parts: LPIPS-alex between the result and x_t over 1 − max(y_s, y_t)
    if lpips_fn is None:
        from ..core.metrics import lpips_distance as lpips_fn
    d = lpips_fn(img, x_t, mask=torch.maximum(y_s, y_t), region="outside")
    return _nanmean(d.detach().float())


def oracle_pair(G_s: Any, G_t: Any, z: Tensor, mask: str, *, parser: Any = None) -> dict[str, Tensor]:
    """A toy-world pair with the judge parser's masks: ``x_s = G_s(z)``, ``x_t = G_t(z)``, ``y_s``, ``y_t``.

    Args:
        G_s, G_t: generators; z: ``[N, D]`` latents.
        mask: a toy-world mask name (:data:`ddsutils.toyworld.MASKS`).
        parser: the part parser (default the committed ``judge-parser-64``).

    Returns:
        ``{"z", "x_s", "x_t", "y_s", "y_t"}``: images ``[N, 3, H, W]`` in [-1, 1], masks ``[N, 1, H, W]``.
    """
    from . import judges

    parser = parser if parser is not None else judges.load_judge("judge-parser-64")
    with torch.no_grad():
        x_s = G_s(z, noise="const").clamp(-1, 1)
        x_t = G_t(z, noise="const").clamp(-1, 1)
    y_s, y_t = _oracle_masks(parser, x_s, x_t, mask)
    return {"z": z, "x_s": x_s, "x_t": x_t, "y_s": y_s.to(x_s.device), "y_t": y_t.to(x_s.device)}


def score_cell(images: Mapping[str, Tensor], *, x_t: Tensor, y_s: Tensor, y_t: Tensor, source: str, target: str,
               domain: Any = None, lpips_fn: Callable | None = None) -> dict[str, dict[str, float]]:
    """Judge scores of several methods' images for one cell (pair × mask), against the paste.

    Args:
        images: ``{method: [N, 3, H, W]}`` in [-1, 1]; a ``"paste"`` entry (``x_s ⊗ y_s + x_t ⊗ ȳ_s``)
            is the ceiling ``relative_inside`` divides by.
        x_t: the target images ``[N, 3, H, W]``; y_s, y_t: the oracle masks ``[N, 1, H, W]`` that define the
            regions (:func:`regions`).
        source, target: toy-world styles.
        domain: the domain judge (default the committed ``judge-domain-64``).
        lpips_fn: ``lpips_fn(a, b, mask=, region=) -> [N]`` (default :func:`ddsutils.metrics.lpips_distance`).

    Returns:
        ``{method: {"inside_source", "relative_inside", "outside_target", "outside_lpips", "outside_l1"}}``
        (means over images; ``relative_inside`` is NaN without a paste or when the paste scores 0;
        ``outside_l1``: :func:`outside_l1`).
    """
    from . import judges, toyworld

    domain = domain if domain is not None else judges.load_judge("judge-domain-64")
    y_s, y_t, x_t = y_s.cpu(), y_t.cpu(), x_t.cpu()
    inside, outside = regions(y_s, y_t)
    kw = dict(source_style=toyworld.STYLES.index(source), target_style=toyworld.STYLES.index(target))
    out: dict[str, dict[str, float]] = {}
    for method, img in images.items():
        img = img.detach().cpu()
        fr = style_fractions(judges.predict_styles(domain, img), inside, outside, **kw)
        out[method] = {"inside_source": _nanmean(fr["inside_source"]),
                       "outside_target": _nanmean(fr["outside_target"]),
                       "outside_lpips": _outside_lpips(img, x_t, y_s, y_t, lpips_fn),
                       "outside_l1": _nanmean(outside_l1(img, x_t, y_s, y_t))}
    paste = out.get("paste", {}).get("inside_source", float("nan"))
    for row in out.values():
        row["relative_inside"] = row["inside_source"] / paste if paste > 0 else float("nan")
    return out


def evaluate(*, generators: Mapping[str, Any] | None = None, pairs: Sequence[tuple[str, str]] = DEFAULT_PAIRS,
             masks: Sequence[str] = ("eyes_nose_mouth", "hair"), modes: Sequence[str] | None = None,
             n: int = 32, num_steps: int = 200, seed: int = 0, mask_source: str = "parser",
             fd_n: int = 500, ceiling_n: int = 64, parser: Any = None, domain: Any = None,
             fd_fn: Callable[[Tensor, Tensor], float] | None = None, lpips_fn: Callable | None = None,
             optimise_kwargs: Mapping[str, Any] | None = None, device: str | torch.device = "cpu",
             progress: bool = True, dist: Any = None) -> dict[str, Any]:
    """Run DDS on the toy zoo and score every method against its cell's ceilings with the judges.

    For every ``(source, target)`` in ``pairs`` and every mask (a *cell*), ``n`` seeded latents ``z*`` give
    ``x_s = G_s(z*)``, ``x_t = G_t(z*)``; the judge parser's masks of them (an oracle) define the scored
    regions. Each mode in ``modes`` runs :func:`ddsutils.dds.optimise` on the batch with masks from the parser
    (``mask_source="parser"``) or from a one-shot segmenter trained on one parser label of the source generator
    (``"segmenter"``, the paper's pipeline end to end, still scored on the oracle regions).

    Rows (``method``): ``crossover`` (Eq. 1), ``paste`` (``x_s`` pasted into ``x_t`` under the oracle ``y_s``:
    the ceiling of a method that puts the source part in pixel for pixel), ``dds-<mode>``, and
    ``render-composite`` (true dual-domain renders of ``ceiling_n`` identities: the judge's own ceiling).
    Scores (means over images):

    - ``inside_source``: fraction of ``y_s`` pixels the domain judge assigns to the source style;
    - ``relative_inside``: ``inside_source`` ÷ the paste's (≥ 1: as much source style as the paste);
    - ``outside_target``: fraction of pixels outside both masks assigned to the target style;
    - ``outside_lpips``: LPIPS-alex between the image and ``x_t`` over that outside region (identity kept: 0;
      its deep layers also see the part, so a method that changes the part scores above 0);
    - ``outside_l1``: mean absolute difference to ``x_t`` over the pixels farther than ``H // 20`` from both masks
      (:func:`outside_l1`; a method that changes the face away from the part scores high);
    - ``frechet_vgg``: Fréchet distance on VGG-16 features (not FID) of the ``n`` images to ``fd_n`` renders of
      the target style; ``floor``: ``n`` other renders against them; ``target_samples``: the images ``x_t``.

    Args:
        generators: ``{style: Generator}``; default the committed ``toy-<style>-64`` zoo.
        pairs: ``(source_style, target_style)`` pairs.
        masks: toy-world mask names (:data:`ddsutils.toyworld.MASKS`).
        modes: DDS modes (default every mode of :data:`ddsutils.dds.MODES`).
        n, num_steps, seed: latents per pair, DDS iterations, seed of ``z*`` and of DDS.
        mask_source: ``"parser"`` or ``"segmenter"``.
        fd_n: renders of the target style for the Fréchet distance (0 skips it).
        ceiling_n: identities for the ``render-composite`` row (0 skips it).
        parser, domain: judges (default the committed ``judge-parser-64`` / ``judge-domain-64``).
        fd_fn: ``fd_fn(img_a, img_b) -> float`` (default :func:`ddsutils.metrics.frechet_vgg`).
        lpips_fn: ``lpips_fn(a, b, mask=, region=) -> [N]`` (default :func:`ddsutils.metrics.lpips_distance`).
        optimise_kwargs: extra keywords for :func:`ddsutils.dds.optimise` (e.g. ``lr``, ``dilation``).
        device: where generators and DDS run.
        progress: per-run ``tqdm.auto`` bars (rank 0's only under several processes).
        dist: :func:`ddsutils.core.distributed.init`'s context: each process optimises its block of the ``n``
            latents of every cell and the blocks are gathered before scoring, so every process returns the
            single-process result (up to float summation order); ``None``: this process alone.

    Returns:
        JSON-serialisable ``{"config": ..., "rows": [...], "images": {...}}``; ``rows`` is a flat list of dicts
        (``source``, ``target``, ``mask``, ``method``, the scores above, ``seconds``). ``images`` (not JSON)
        maps ``"<source>-><target>/<mask>/<method>"`` to ``[n, 3, H, W]`` tensors in [-1, 1] for figures.

    Raises:
        ddsutils.cli.UserError (a ``ValueError``) naming the argument, before any rendering or DDS run: an unknown
        mode / mask / style, a pair of one style, ``n`` < 1 (< 2 with the default Fréchet distance), a negative
        count, a keyword ``evaluate`` sets itself in ``optimise_kwargs``, a bad DDS setting
        (``optimise_kwargs['<key>']``, checked with every pair's generators), or feature weights that are missing.
    """
    from ..core import cli, dds, distributed
    from . import judges, toyworld
    from ..core.stylegan2 import load_generator

    dist = dist if dist is not None else distributed.SINGLE
    modes, masks, pairs, dev, okw = _check_evaluate_args(
        generators=generators, pairs=pairs, masks=masks, modes=modes, n=n, num_steps=num_steps, seed=seed,
        mask_source=mask_source, fd_n=fd_n, ceiling_n=ceiling_n, fd_fn=fd_fn, optimise_kwargs=optimise_kwargs,
        device=device)
    styles_needed = sorted({s for pair in pairs for s in pair})
    gens = dict(generators) if generators is not None else {
        s: cli.load("pairs", f"toy-{s}-64", lambda name: load_generator(name, device=dev)) for s in styles_needed}
    parser = parser if parser is not None else judges.load_judge("judge-parser-64")
    domain = domain if domain is not None else judges.load_judge("judge-domain-64")
    _check_dds_settings(gens, pairs, modes, okw, num_steps=num_steps, seed=seed, device=dev)
    _resolve_weights(modes, okw, fd_n=fd_n if fd_fn is None else 0, lpips=lpips_fn is None)
    if fd_fn is None:
        from ..core.metrics import frechet_vgg as fd_fn
    dim = next(iter(gens.values())).style_dim
    z = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    rows: list[dict[str, Any]] = []
    images: dict[str, Tensor] = {}
    refs: dict[str, Tensor] = {}
    floors: dict[str, float] = {}
    for src, tgt in pairs:
        G_s, G_t = gens[src], gens[tgt]
        if fd_n and tgt not in refs:
            k = toyworld.STYLES.index(tgt)
            refs[tgt] = toyworld.render_batch(fd_n, style=tgt, size=G_t.size, seed=seed + 1000 + k)[0]
            other = toyworld.render_batch(n, style=tgt, size=G_t.size, seed=seed + 2000 + k)[0]
            floors[tgt] = fd_fn(other, refs[tgt])
        with torch.no_grad():
            x_s = G_s(z.to(dev), noise="const").clamp(-1, 1)
            x_t = G_t(z.to(dev), noise="const").clamp(-1, 1)
        target_fd = fd_fn(x_t.cpu(), refs[tgt]) if fd_n else float("nan")
        for m in masks:
            # the scored regions always come from the oracle; the methods get the chosen masks
            o_s, o_t = (y.to(dev) for y in _oracle_masks(parser, x_s, x_t, m))
            if mask_source == "parser":
                y_s, y_t = o_s, o_t
            else:
                from .oracle import masks_for

                # one segmenter for every process: trained on rank 0, its masks (on the CPU) sent to the others
                y_s, y_t = (y.to(dev) for y in distributed.on_main(
                    lambda: [y.cpu() for y in masks_for(G_s, G_t, z, mask=m, segmenter_path=None,
                                                        segmenter_on="source", seed=seed, device=dev)[:2]], dist))
            methods: dict[str, tuple[Tensor, float]] = {
                "crossover": (dds.crossover(x_s, y_s, x_t, y_t).clamp(-1, 1), 0.0),
                "paste": (x_s * o_s + x_t * (1 - o_s), 0.0)}
            for mode in modes:
                t0 = time.perf_counter()
                # this process's block of the n latents; the whole batch's result gathered back on every process
                r = distributed.optimise(G_s, G_t, dist, z_star=z, x_s=x_s, x_t=x_t, y_s=y_s, y_t=y_t, mode=mode,
                                         num_steps=num_steps, seed=seed, snapshot_every=None, device=dev,
                                         progress=progress, **dict(optimise_kwargs or {}))
                methods[f"dds-{mode}"] = (r.image.detach().cpu(), time.perf_counter() - t0)
            scores = score_cell({k: img for k, (img, _) in methods.items()}, x_t=x_t, y_s=o_s, y_t=o_t,
                                source=src, target=tgt, domain=domain, lpips_fn=lpips_fn)
            cell: list[dict[str, Any]] = []
            for method, (img, secs) in methods.items():
                img = img.cpu()
                cell.append({"source": src, "target": tgt, "mask": m, "method": method, **scores[method],
                             "frechet_vgg": fd_fn(img, refs[tgt]) if fd_n else float("nan"),
                             "floor": floors.get(tgt, float("nan")), "target_samples": target_fd,
                             "seconds": round(secs, 2)})
                images[f"{src}->{tgt}/{m}/{method}"] = img
            if ceiling_n:
                ceiling = render_composite_ceiling(src, tgt, m, n=ceiling_n, seed=seed + 3000, domain=domain,
                                                   size=G_t.size)
                paste_inside = scores["paste"]["inside_source"]
                cell.append({"source": src, "target": tgt, "mask": m, "method": "render-composite", **ceiling,
                             "relative_inside": ceiling["inside_source"] / paste_inside if paste_inside > 0
                             else float("nan"), "outside_lpips": float("nan"), "outside_l1": float("nan"),
                             "frechet_vgg": float("nan"),
                             "floor": floors.get(tgt, float("nan")), "target_samples": target_fd, "seconds": 0.0})
            rows.extend(cell)
    config = {"pairs": [list(p) for p in pairs], "masks": list(masks), "modes": modes, "n": n,
              "num_steps": num_steps, "seed": seed, "mask_source": mask_source, "fd_n": fd_n,
              "ceiling_n": ceiling_n,
              "optimise_kwargs": {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
                                  for k, v in (optimise_kwargs or {}).items()}, "device": str(dev)}
    return {"config": config, "rows": rows, "images": images}


def format_scores(scores: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table of :func:`score_cell`'s ``{method: scores}`` (one line per method)."""
    def f(x: Any, fmt: str) -> str:
        return "–" if x is None or x != x else format(x, fmt)

    lines = ["| method | in-mask source style | ÷ paste | outside target style | outside LPIPS to x_t "
             "| L1 to x_t away from the parts |",
             "|---|---:|---:|---:|---:|---:|"]
    for method, r in scores.items():
        lines.append(f"| {method} | {f(r.get('inside_source'), '.3f')} | {f(r.get('relative_inside'), '.2f')} "
                     f"| {f(r.get('outside_target'), '.3f')} | {f(r.get('outside_lpips'), '.3f')} "
                     f"| {f(r.get('outside_l1'), '.3f')} |")
    return "\n".join(lines)


#: Keywords of :func:`ddsutils.dds.optimise` that :func:`evaluate` sets itself (not in ``optimise_kwargs``).
_EVALUATE_SETS = {"z_star": "n and seed", "x_s": "n and seed", "x_t": "n and seed", "y_s": "mask_source",
                  "y_t": "mask_source", "mode": "modes", "num_steps": "num_steps", "seed": "seed",
                  "snapshot_every": "(no snapshots are kept)", "device": "device", "progress": "progress"}


def _check_evaluate_args(*, generators: Mapping[str, Any] | None, pairs: Sequence[Any], masks: Sequence[str],
                         modes: Sequence[str] | None, n: Any, num_steps: Any, seed: Any, mask_source: str, fd_n: Any,
                         ceiling_n: Any, fd_fn: Callable | None, optimise_kwargs: Mapping[str, Any] | None,
                         device: Any) -> tuple[list[str], list[str], list[tuple[str, str]], torch.device, dict]:
    """:func:`evaluate`'s checks that need nothing loaded; a :class:`ddsutils.cli.UserError` naming the argument.

    Returns ``(modes, masks, pairs, device, optimise_kwargs)`` as lists / a ``torch.device`` / a dict.
    """
    from ..core import cli, dds
    from . import toyworld

    modes = list(dds.MODES if modes is None else modes)
    if not modes:
        raise cli.UserError(f"is empty; give at least one of {', '.join(dds.MODES)}", argument="modes", value=modes)
    for mode in modes:
        cli.choice(mode, "modes", dds.MODES, what="mode")
    cli.choice(mask_source, "mask_source", ("parser", "segmenter"))
    masks = [masks] if isinstance(masks, str) else list(masks)
    if not masks:
        raise cli.UserError(f"is empty; give at least one of {', '.join(toyworld.MASKS)}", argument="masks",
                            value=masks)
    for m in masks:
        cli.choice(m, "masks", toyworld.MASKS, what="mask")
    checked = []
    for pair in pairs:
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise cli.UserError("must be (source_style, target_style) pairs, e.g. [('caricature', 'natural')]",
                                argument="pairs", value=pair)
        for style in pair:
            cli.choice(style, "pairs", toyworld.STYLES, what="style")
        if pair[0] == pair[1]:
            raise cli.UserError("names one style twice; DDS needs two different domains", argument="pairs",
                                value=pair)
        checked.append((pair[0], pair[1]))
    if not checked:
        raise cli.UserError("is empty; give at least one (source, target) pair", argument="pairs", value=pairs)
    if generators is not None:
        missing = sorted({s for p in checked for s in p} - set(generators))
        if missing:
            raise cli.UserError(f"has no generator for {', '.join(missing)} (pairs need it)", argument="generators",
                                value=sorted(generators))
    n = cli.positive_int(n, "n")  # num_steps: with every run's settings (_check_dds_settings)
    cli.int_arg(seed, "seed", min=0)
    fd_n, ceiling_n = cli.non_negative_int(fd_n, "fd_n"), cli.non_negative_int(ceiling_n, "ceiling_n")
    if fd_n and fd_fn is None:
        if fd_n < 2:
            raise cli.UserError("must be 0 (no Fréchet distance) or >= 2: a covariance needs two samples",
                                argument="fd_n", value=fd_n)
        if n < 2:
            raise cli.UserError("the Fréchet distance needs at least 2 images per set; use 2 or more, or skip it "
                                "with fd_n=0 (--fd-n 0)", argument="n", value=n)
    okw = dict(optimise_kwargs or {})
    for key in okw:
        if key in _EVALUATE_SETS:
            raise cli.UserError(f"evaluate sets {key!r} itself (from its argument {_EVALUATE_SETS[key]}); leave it "
                                "out of optimise_kwargs", argument="optimise_kwargs", value=key)
    return modes, masks, checked, cli.device(device, "device"), okw


def _check_dds_settings(gens: Mapping[str, Any], pairs: Sequence[tuple[str, str]], modes: Sequence[str],
                        okw: Mapping[str, Any], *, num_steps: int, seed: int, device: torch.device) -> None:
    """Every DDS run's settings (:func:`ddsutils.dds._check_settings`) before the first one; an error in
    ``optimise_kwargs`` names it as ``optimise_kwargs['<key>']``."""
    from ..core import cli, dds

    for src, tgt in pairs:
        for mode in modes:
            try:
                dds._check_settings(gens[src], gens[tgt], {**okw, "mode": mode, "num_steps": num_steps, "seed": seed,
                                                           "snapshot_every": None, "device": device})
            except cli.UserError as exc:
                if exc.argument in okw:
                    exc.argument = f"optimise_kwargs[{exc.argument!r}]"
                elif exc.argument in ("G_s", "G_t"):
                    exc.argument, exc.value = "pairs", f"{src}:{tgt}"
                raise


def _resolve_weights(modes: Sequence[str], okw: Mapping[str, Any], *, fd_n: int, lpips: bool) -> None:
    """Resolve the feature weights the runs will load (each mode's backbone, VGG-16 for the Fréchet distance,
    LPIPS-alex for the outside score) so that a missing file stops :func:`evaluate` before any work."""
    from ..core import cli, dds

    for mode in modes:
        if mode == "blend":
            continue
        backbone = okw.get("backbone") or ("lpips-alex" if mode == "refine" else "vgg16")
        name = "optimise_kwargs['backbone']" if okw.get("backbone") else "modes"
        cli.load(name, backbone if name != "modes" else mode,
                 lambda _: dds._backbone_weight_files(backbone, okw.get("backbone_weights", "imagenet")))
    if fd_n:
        cli.load("fd_n", fd_n, lambda _: dds._backbone_weight_files("vgg16"))
    if lpips:
        cli.load(None, None, lambda _: dds._backbone_weight_files("lpips-alex"))


def format_table(result: Mapping[str, Any]) -> str:
    """Markdown table of :func:`evaluate` rows (one line per pair × mask × method)."""
    head = ("| source → target | mask | method | in-mask source style (÷ paste) | outside target style "
            "| outside LPIPS to x_t | L1 away from the parts | Fréchet VGG to target renders (floor / x_t) | s |")
    lines = [head, "|" + "---|" * 9]

    def f(x: Any, fmt: str) -> str:
        return "–" if x is None or x != x else format(x, fmt)

    for r in result["rows"]:
        lines.append(f"| {r['source']} → {r['target']} | {r['mask']} | {r['method']} | {f(r['inside_source'], '.3f')} "
                     f"({f(r['relative_inside'], '.2f')}) | {f(r['outside_target'], '.3f')} "
                     f"| {f(r['outside_lpips'], '.3f')} | {f(r.get('outside_l1'), '.3f')} "
                     f"| {f(r['frechet_vgg'], '.1f')} ({f(r['floor'], '.1f')} / "
                     f"{f(r['target_samples'], '.1f')}) | {r['seconds']:.0f} |")
    return "\n".join(lines)


def to_json(obj: Any) -> Any:
    """``obj`` with NaN floats replaced by ``None`` (strict JSON), tuples as lists."""
    if isinstance(obj, float):
        return None if obj != obj else obj
    if isinstance(obj, Mapping):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    return obj
