"""``python -m ddsutils.dds run|evaluate|photo|evaluate-inversion``: the DDS CLI (API: :mod:`ddsutils.core.dds`).

``run`` optimises N pairs of two generators and writes a run folder (PNGs, tensors, ``record.json``), with masks
from a saved one-shot segmenter (``--segmenter``) or, in the toy world, one trained on one judge-parser label.
``evaluate`` scores every DDS mode on the toy zoo against its cells' ceilings (:func:`ddsutils.toy.scoring.evaluate`).
Under ``torchrun --nproc_per_node=N`` both shard their latents over the N processes and gather the results, which
rank 0 alone prints and writes (:mod:`ddsutils.core.distributed`).
``photo`` puts your own image through DDS (:mod:`ddsutils.core.photo`); ``evaluate-inversion`` scores inversion and
translation against the toy world's true renders (:mod:`ddsutils.toy.inversion`).
``from ddsutils import dds`` gives the same names as :mod:`ddsutils.core.dds` (``dds.optimise``, ...).
"""
from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .core import backbones, cli, distributed
from .core.cli import UserError
from .core.dds import *  # noqa: F401,F403 - the API under the module's old name
from .core.dds import (MODES, PAPER_WEIGHTS, _INITS, _LATENT_SPACES, _backbone_weight_files,
                       _check_settings, _truncations, iteration_strip)
from .core.dds import __all__  # noqa: F401
from .core.precision import PRECISIONS
from .core.stylegan2 import Generator
from .toy.oracle import masks_for as _masks_for


def __getattr__(name: str) -> Any:
    if name == "BACKBONE_NAMES":  # earlier constant: the registered backbone names
        return backbones.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: ``dds run``'s arguments for optimise's keywords: errors found after parsing name the argument as typed.
_RUN_FLAGS = {"G_s": ("--source", "source"), "G_t": ("--target", "target"), "mode": ("--mode", "mode"),
              "latent_space": ("--latent-space", "latent_space"), "init": ("--init", "init"),
              "backbone": ("--backbone", "backbone"), "alpha": ("--alpha", "alpha"), "beta": ("--beta", "beta"),
              "gamma": ("--gamma", "gamma"), "lr": ("--lr", "lr"), "num_steps": ("--steps", "steps"),
              "snapshot_every": ("--snapshot-every", "snapshot_every"), "seed": ("--seed", "seed"),
              "blend_start": ("--blend-start", "blend_start"), "min_area": ("--min-area", "min_area"),
              "dilation": ("--dilation", "dilation"),
              "feather": ("--feather", "feather"), "composite": ("--composite", "composite"),
              "precision": ("--precision", "precision"), "compile": ("--compile", "compile"),
              "device": ("--device", "device")}


def _cli_names(exc: UserError, flags: Mapping[str, tuple[str, Any]]) -> UserError:
    """Name the command-line argument (and its value as typed) instead of the API keyword; ``exc`` itself."""
    if exc.argument in flags:
        exc.argument, value = flags[exc.argument]
        if value is not None:  # None: keep the value the error names (e.g. one mode of --modes)
            exc.value = value
    return exc


def _run_cli(a: Any) -> int:
    """``dds run``: check every argument and load generators, segmenter, judge and feature weights; then, inside a
    run folder (renamed to ``--out`` only when complete), train the segmenter if needed, run DDS and write the files."""
    from .toy import judges
    from .core import imageio as viz
    from .core.files import atomic_write_bytes, run_folder
    from .core.stylegan2 import load_generator
    from .toy.toyworld import MASKS

    prog = "ddsutils.dds run"
    out = cli.output_folder(a.out, "--out", overwrite=a.overwrite)
    dist = distributed.init(a.device, argument="--device")  # torchrun: this process's rank and device
    dev, say = dist.device, cli.say if dist.is_main else _silent
    if a.segmenter is not None:
        cli.existing_file(a.segmenter, "--segmenter", what="segmenter file")
    elif a.mask is not None:
        cli.choice(a.mask, "--mask", MASKS, what="toy-world mask")
    truncation = _truncations(a.mode, None, "target")  # the masks are drawn on the references themselves
    settings = dict(mode=a.mode, latent_space=a.latent_space, init=a.init, alpha=a.alpha, beta=a.beta, gamma=a.gamma,
                    backbone=a.backbone, lr=a.lr, num_steps=a.steps, snapshot_every=a.snapshot_every, seed=a.seed,
                    blend_start=a.blend_start, min_area=a.min_area, dilation=a.dilation, feather=a.feather,
                    composite=a.composite, precision=a.precision, compile=a.compile,
                    ref_truncation=truncation, device=dev)
    flags = {k: (flag, getattr(a, attr)) for k, (flag, attr) in _RUN_FLAGS.items()}
    backbone = a.backbone or ("lpips-alex" if a.mode == "refine" else "vgg16")
    needs_weights = a.mode != "blend" and backbone != "generator"
    say(f"loading the generators {a.source} and {a.target}" + (f" and the {backbone} weights" if needs_weights
                                                                 else ""), prog=prog)
    G_s = cli.load("--source", a.source, lambda v: load_generator(v, device=dev))
    G_t = cli.load("--target", a.target, lambda v: load_generator(v, device=dev))
    try:
        _check_settings(G_s, G_t, settings)
    except UserError as exc:
        raise _cli_names(exc, flags)
    if needs_weights:
        cli.load("--backbone", backbone, _backbone_weight_files)
    G_seg, seg_flag = (G_s, "--source") if a.segmenter_on == "source" else (G_t, "--target")
    seg = parser = None
    if a.segmenter is not None:
        seg = cli.load("--segmenter", a.segmenter, lambda p: _load_segmenter(p, G_seg))
        if a.mask is not None and a.mask != seg.part:
            raise UserError(f"the segmenter {a.segmenter} shows the part {seg.part!r}; leave --mask out (the segmenter "
                            f"decides the part) or give a segmenter for {a.mask!r}", argument="--mask", value=a.mask)
        mask = seg.part
    else:
        mask = a.mask or "eyes_nose_mouth"
        parser = cli.load(None, "judge-parser-64", judges.load_judge)
        if parser.size != G_seg.size:
            raise UserError(f"makes {G_seg.size} px images, but without --segmenter the part masks come from a "
                            f"segmenter trained on one label of the toy-world judge parser, which reads "
                            f"{parser.size} px images; pass --segmenter FILE (a segmenter saved for this generator)",
                            argument=seg_flag, value=flags["G_s" if seg_flag == "--source" else "G_t"][1])
    a.mask = mask
    z = torch.randn(a.n, G_s.style_dim, generator=torch.Generator().manual_seed(a.seed))

    def masks() -> tuple[torch.Tensor, torch.Tensor, dict]:
        y_s, y_t, info = _masks_for(G_s, G_t, z, mask=mask, segmenter_path=a.segmenter, segmenter=seg,
                                    parser=parser, segmenter_on=a.segmenter_on, seed=a.seed, device=dev,
                                    label_truncation=a.label_truncation, truncation=truncation,
                                    progress=not a.quiet)
        return y_s.cpu(), y_t.cpu(), info

    # only rank 0 writes (the run folder); the other processes optimise their block of the latents
    with run_folder(out, overwrite=a.overwrite) if dist.is_main else contextlib.nullcontext() as tmp:
        if seg is None:
            say(f"training a one-shot segmenter for {mask!r} on the {a.segmenter_on} generator from one "
                "judge-parser label", prog=prog)
        y_s, y_t, seg_info = distributed.on_main(masks, dist)  # one segmenter's masks on every process
        what = "one layer-blend pass, no optimisation" if a.mode == "blend" else f"{a.steps} Adam steps"
        procs = f" ({dist.world_size} processes, {dist.backend})" if dist.world_size > 1 else ""
        say(f"DDS {a.mode} on {a.n} pair(s): {what}, on {dev}{procs}", prog=prog)
        r = distributed.optimise(G_s, G_t, dist, z_star=z, y_s=y_s, y_t=y_t, progress=not a.quiet, **settings)
        if not dist.is_main:
            return 0
        say(f"writing {out}", prog=prog)
        images = {"source.png": r.x_s, "target.png": r.x_t, "mask_source.png": r.y_s * 2 - 1,
                  "mask_target.png": r.y_t * 2 - 1, "crossover.png": r.x_c, "dds.png": r.image}
        if r.image_source is not None:
            images["dds_source_domain.png"] = r.image_source
        for name, img in images.items():
            viz.save_png(img, tmp / name, nrow=min(a.n, 8))
        viz.save_png(iteration_strip(r), tmp / "iterations.png", nrow=len(r.snapshots) + 4)
        blob = io.BytesIO()
        torch.save({**r.to_dict(), "z_star": z}, blob)
        atomic_write_bytes(blob.getvalue(), tmp / "result.pt")
        record = {"args": {k: v for k, v in vars(a).items() if k != "func"}, "config": r.config,
                  "timings": r.timings, "segmenter": seg_info,
                  "final_losses": {k: v[-1].tolist() for k, v in r.history.items() if len(v)},
                  "files": sorted([*images, "iterations.png", "result.pt"])}
        atomic_write_bytes(json.dumps(record, indent=1, default=str).encode(), tmp / "record.json")
    steps = "no steps (blend)" if a.mode == "blend" else f"{a.steps} steps"
    print(f"DDS {a.mode}: {a.source} -> {a.target}, mask {mask}, n={a.n}, {steps} in {r.timings['total_s']:.1f} s "
          f"({r.timings['per_image_iter_s']:.4f} s per image-iteration)\n"
          f"wrote {out}/: {', '.join(record['files'])}, record.json")
    return 0


def _silent(*args: Any, **kwargs: Any) -> None:
    """``cli.say`` on the processes other than rank 0 (one voice under torchrun)."""


def _load_segmenter(path: str, G: Generator) -> Any:
    """:func:`ddsutils.segmenter.load_segmenter` for ``G``; its errors without the leading ``"<path>: "`` (the
    command line names the file already)."""
    from .core import segmenter as seglib

    try:
        return seglib.load_segmenter(path, G=G)
    except UserError as exc:
        for prefix in (f"{path}: ", f"{Path(path)}: "):
            if exc.message.startswith(prefix):
                exc.message = exc.message[len(prefix):]
        raise


def _default_pairs() -> tuple[tuple[str, str], ...]:
    from .toy.scoring import DEFAULT_PAIRS

    return DEFAULT_PAIRS


#: Keywords of :func:`optimise` that ``dds evaluate --set`` may change, and the type of their value.
_SETTABLE: dict[str, type] = {
    "latent_space": str, "init": str, "alpha": float, "beta": float, "gamma": float, "backbone": str, "layers": str,
    "normalize": str, "norm": str, "mask_resize": str, "backbone_weights": str, "lr": float, "release_domain1": str,
    "blend_start": int, "min_area": int, "dilation": int, "feather": float, "composite": str, "inside_weight": float,
    "mse_weight": float, "precision": str, "compile": bool}
#: Keywords ``dds evaluate`` sets from its own arguments.
_NOT_SETTABLE = {"num_steps": "--steps", "steps": "--steps", "seed": "--seed", "mode": "--modes", "modes": "--modes",
                 "n": "--n", "device": "--device"}


def _parse_settings(items: Sequence[str] | None) -> dict[str, Any]:
    """``--set KEY=VALUE`` items as :func:`optimise` keywords: ``["alpha=5", "dilation=2", "init=z_star"]`` →
    ``{"alpha": 5.0, "dilation": 2, "init": "z_star"}`` (the type of each key's value: :data:`_SETTABLE`).

    Raises:
        UserError: not ``KEY=VALUE``, a key that is not settable (or one ``dds evaluate`` sets from its own
            argument), or a value that is not a number / whole number where one is needed. Ranges and choices
            are checked later, with the generators (:func:`_check_settings`).
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError("wants KEY=VALUE (e.g. --set alpha=5)", argument="--set", value=item)
        if key in _NOT_SETTABLE:
            raise UserError(f"{key} is set with {_NOT_SETTABLE[key]}, not with --set", argument="--set", value=item)
        cli.choice(key, "--set", _SETTABLE, what="optimise keyword")
        kind, name = _SETTABLE[key], f"--set {key}"
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise UserError("wants true or false", argument=name, value=value)
            out[key] = value.lower() in ("true", "1")
            continue
        out[key] = cli.float_arg(value, name) if kind is float else cli.int_arg(value, name) if kind is int else value
    return out


def _parse_pair(item: str) -> tuple[str, str]:
    """``"caricature:natural"`` → ``("caricature", "natural")``: two different toy styles (else a UserError)."""
    from .toy.toyworld import STYLES

    parts = item.split(":")
    if len(parts) != 2 or not all(x.strip() for x in parts):
        raise UserError("wants source:target items of toy styles, e.g. caricature:natural", argument="--pairs",
                        value=item)
    for style in parts:
        cli.choice(style, "--pairs", STYLES, what="toy style")
    if parts[0] == parts[1]:
        raise UserError("names one style twice; DDS needs two different domains (e.g. caricature:natural)",
                        argument="--pairs", value=item)
    return parts[0], parts[1]


def _output_dir(value: str, name: str) -> Path:
    """A folder that files can be added to (made when missing): not a file, no file on its path, writable."""
    import os

    p = Path(value).expanduser()
    if not str(value).strip():
        raise UserError("is empty; give a folder", argument=name, value=value)
    if p.exists() and not p.is_dir():
        raise UserError("is an existing file, not a folder; give a folder for the PNG grids", argument=name,
                        value=value)
    for parent in (p, *p.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{parent} is a file, so the folder cannot be made; choose another path",
                                argument=name, value=value)
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"cannot write into {parent} (permission denied); choose another path",
                                argument=name, value=value)
            break
    return p


def _evaluate_cli(a: Any) -> int:
    """``dds evaluate``: check every argument, load the generators (and, inside :func:`scoring.evaluate`, the
    judges and feature weights) before any DDS run; print the table, write the JSON and figures."""
    from .toy import scoring
    from .core import imageio as viz
    from .core.files import atomic_write_bytes
    from .core.stylegan2 import load_generator
    from .toy.toyworld import MASKS

    prog = "ddsutils.dds evaluate"
    pairs = [_parse_pair(item) for item in a.pairs]
    for m in a.masks:
        cli.choice(m, "--masks", MASKS, what="toy-world mask")
    settings = _parse_settings(a.set)
    typed = {item.partition("=")[0].strip(): item.partition("=")[2] for item in a.set or []}
    flags = {"n": ("--n", a.n), "num_steps": ("--steps", a.steps), "seed": ("--seed", a.seed),
             "pairs": ("--pairs", None), "masks": ("--masks", None), "modes": ("--modes", None),
             "fd_n": ("--fd-n", a.fd_n), "ceiling_n": ("--ceiling-n", a.ceiling_n), "device": ("--device", a.device),
             **{f"optimise_kwargs[{k!r}]": (f"--set {k}", typed[k]) for k in settings}}
    if a.lr is not None:
        if "lr" in settings:
            raise UserError("is given twice (--lr and --set lr); keep one", argument="--set lr", value=typed["lr"])
        settings["lr"] = a.lr
        flags["optimise_kwargs['lr']"] = ("--lr", a.lr)
    dist = distributed.init(a.device, argument="--device")  # torchrun: this process's rank and device
    dev, say = dist.device, cli.say if dist.is_main else _silent
    json_path = cli.output_file(a.json, "--json") if a.json else None
    figures = _output_dir(a.figures, "--figures") if a.figures else None
    args = dict(pairs=pairs, masks=a.masks, modes=a.modes, n=a.n, num_steps=a.steps, seed=a.seed,
                mask_source=a.mask_source, fd_n=a.fd_n, ceiling_n=a.ceiling_n, optimise_kwargs=settings, device=dev)
    try:
        scoring._check_evaluate_args(generators=None, fd_fn=None, **args)
        styles = sorted({s for pair in pairs for s in pair})
        say(f"loading the generators {', '.join(f'toy-{s}-64' for s in styles)} and checking the feature "
            "weights", prog=prog)
        gens = {s: cli.load("--pairs", f"toy-{s}-64", lambda v: load_generator(v, device=dev)) for s in styles}
        say(f"scoring {len(pairs) * len(a.masks)} pair x mask cell(s) with {', '.join(a.modes)}: n={a.n}, "
            f"{a.steps} DDS steps (first: every run's settings, the judges and the feature weights)", prog=prog)
        res = scoring.evaluate(generators=gens, progress=not a.quiet, dist=dist, **args)
    except UserError as exc:
        raise _cli_names(exc, flags)
    if not dist.is_main:  # every process holds the whole result; rank 0 prints and writes it
        return 0
    images = res.pop("images")
    print(scoring.format_table(res))
    if figures is not None:
        for key in sorted({k.rsplit("/", 1)[0] for k in images}):
            rows = [images[f"{key}/{m}"][:8] for m in ["crossover", "paste", *[f"dds-{x}" for x in a.modes]]]
            name = key.replace("->", "_to_").replace("/", "_")
            viz.save_png(torch.cat(rows), figures / f"dds_eval_{name}.png", nrow=len(rows[0]))
        print(f"wrote {figures}/dds_eval_*.png")
    if json_path is not None:
        atomic_write_bytes(json.dumps(scoring.to_json(res), indent=1, allow_nan=False).encode(), json_path)
        print(f"wrote {json_path}")
    return 0


def _domain_generator(value: str) -> tuple[str, str | None]:
    """``--domain`` / ``--other``: a toy style (``natural`` …) → its zoo generator; else a name or path as given.
    Returns ``(generator, toy style or None)``."""
    from .toy.zoo import ZOO_NAMES

    if value in ZOO_NAMES:
        return ZOO_NAMES[value], value
    return value, {g: s for s, g in ZOO_NAMES.items()}.get(value)


def _photo_cli(a: Any) -> int:
    """``dds photo``: check every argument, load the photo (or render it), the generators and the mask source;
    then, inside a run folder, invert, pair, blend, paste back and write the files."""
    from .core import imageio as viz
    from .core import photo as photolib
    from .core.files import atomic_write_bytes, run_folder
    from .core.segmenter import load_mask_png
    from .core.stylegan2 import load_generator
    from .toy.oracle import parser_masks
    from .toy.toyworld import MASKS

    prog = "ddsutils.dds photo"
    out = cli.output_folder(a.out, "--out", overwrite=a.overwrite)
    dev = cli.device(a.device, "--device")
    sources = [f for f, v in (("--mask", a.mask), ("--mask-png", a.mask_png), ("--segmenter", a.segmenter)) if v]
    if len(sources) != 1:
        raise UserError("give exactly one mask source: --mask PART (toy-world parser), --mask-png FILE (a region "
                        f"painted on the photo) or --segmenter FILE; got {' and '.join(sources) or 'none'}",
                        argument="--mask")
    g_photo, style = _domain_generator(a.domain)
    g_other, other_style = _domain_generator(a.other)
    if g_photo == g_other:
        raise UserError("is the photo's own domain; name the other domain (e.g. --domain natural --other "
                        "caricature)", argument="--other", value=a.other)
    if a.render is not None and style is None:
        raise UserError("--render draws a toy-world face, so --domain must be a toy style (natural, sketch, "
                        "caricature); give --image for other generators", argument="--domain", value=a.domain)
    if a.mask is not None:
        cli.choice(a.mask, "--mask", MASKS, what="toy-world mask")
    if a.mask_png is not None:
        cli.existing_file(a.mask_png, "--mask-png", what="mask image")
    if a.segmenter is not None:
        cli.existing_file(a.segmenter, "--segmenter", what="segmenter file")
    cli.say(f"loading the generators {g_photo} and {g_other}", prog=prog)
    G_photo = cli.load("--domain", g_photo, lambda v: load_generator(v, device=dev))
    G_other = cli.load("--other", g_other, lambda v: load_generator(v, device=dev))
    if (G_other.size, G_other.style_dim) != (G_photo.size, G_photo.style_dim):
        raise UserError(f"makes {G_other.size} px images from a {G_other.style_dim}-d latent but {g_photo} "
                        f"{G_photo.size} px from {G_photo.style_dim}-d; the two domains need one latent space",
                        argument="--other", value=a.other)
    truth = None
    if a.render is not None:  # a toy render plays the photo; the same identity in the other style is the truth
        from .toy import toyworld as tw

        ident = tw.sample_identities(1, seed=a.render)
        image = tw.render(ident, style=style, size=G_photo.size)[0]
        photo = photolib.load_photo(image, size=G_photo.size)
        photo.source = f"toy render: identity seed {a.render}, style {style}"
        if other_style is not None:
            truth = tw.render(ident, style=other_style, size=G_photo.size)[0]
    else:
        photo = cli.load("--image", a.image, lambda v: photolib.load_photo(v, size=G_photo.size))
    for note in photo.notes:
        cli.say(f"{a.image}: {note}", prog=prog)
    if a.mask is not None:
        masks: Any = parser_masks(a.mask)
    elif a.mask_png is not None:
        masks = cli.load("--mask-png", a.mask_png, lambda p: load_mask_png(p, size=G_photo.size, resize=True))
        if float(masks.sum()) == 0:
            raise UserError("is empty (no foreground pixel); paint the part to translate", argument="--mask-png",
                            value=a.mask_png)
    else:
        seg = cli.load("--segmenter", a.segmenter, lambda p: _load_segmenter(p, G_photo))
        masks = photolib.segmenter_masks(seg)
    with run_folder(out, overwrite=a.overwrite) as tmp:
        cli.say(f"inverting the photo into {g_photo} ({a.steps} steps), pairing it with {g_other}, DDS blend",
                prog=prog)
        r = photolib.translate_photo(photo, G_photo, G_other, masks=masks, num_steps=a.steps, lr=a.lr,
                                     blend_start=a.blend_start, dilation=a.dilation, feather=a.feather,
                                     min_area=a.min_area, paste_dilation=a.paste_dilation, seed=a.seed,
                                     device=dev, progress=not a.quiet)
        cli.say(f"writing {out}", prog=prog)
        images = {"input.png": r.photo.original, "photo.png": r.photo.image, "reconstruction.png": r.reconstruction,
                  "pair.png": r.pair, "mask_photo.png": r.mask_photo * 2 - 1, "mask_pair.png": r.mask_pair * 2 - 1,
                  "dds.png": r.dds, "result.png": r.result}
        strip = [r.photo.image, r.reconstruction, r.pair, r.dds]
        if truth is not None:
            images["truth.png"] = truth
            strip.append(truth)
        for name, img in images.items():
            viz.save_png(img, tmp / name, nrow=1)
        viz.save_png(torch.cat(strip), tmp / "strip.png", nrow=len(strip))
        blob = io.BytesIO()
        torch.save({"latent": r.projection.latent, "w_plus": r.projection.w_plus,
                    "history": r.projection.history}, blob)
        atomic_write_bytes(blob.getvalue(), tmp / "result.pt")
        rec = float(r.projection.history["lpips"][-1, 0]) if a.steps else None
        record = {"args": {k: v for k, v in vars(a).items() if k != "func"}, "generators": [g_photo, g_other],
                  "photo": {"source": r.photo.source, "notes": r.photo.notes,
                            "size": list(r.photo.original.shape[-2:])},
                  "config": r.config, "timings": r.projection.timings, "inversion_lpips": rec,
                  "files": sorted([*images, "strip.png", "result.pt"])}
        atomic_write_bytes(json.dumps(record, indent=1, default=str).encode(), tmp / "record.json")
    lp = f", inversion LPIPS {rec:.4f}" if rec is not None else ""
    print(f"DDS photo: {r.photo.source} in {g_photo}, part from {g_other}{lp}, "
          f"{r.projection.timings['total_s']:.1f} s\nwrote {out}/: {', '.join(record['files'])}, record.json")
    return 0


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ddsutils.dds run|evaluate``; see ``--help``.

    Every argument is checked, and the generators, segmenter, judge and feature weights are loaded, before any
    segmenter training or optimisation; a user error is one line ``error: <argument>: <value>: <fix>`` on stderr
    and exit status 2 (``--debug`` or ``DDS_DEBUG=1`` adds the traceback). ``run`` writes ``--out`` whole or not
    at all (:func:`ddsutils.files.run_folder`) and says on stderr what it does before each long phase.
    """
    pos, nonneg = cli.argtype(cli.positive_int), cli.argtype(cli.non_negative_int)
    weight, rate = cli.argtype(cli.float_arg, min=0), cli.argtype(cli.float_arg, min=0, min_open=True)
    p = cli.ArgumentParser(prog="python -m ddsutils.dds", description="Dual-Domain Synthesis (Algorithm 1).")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="optimise N pairs and write PNGs, tensors and a JSON record into --out")
    r.add_argument("--source", required=True, help="generator name (weights manifest) or checkpoint path")
    r.add_argument("--target", required=True, help="generator name or checkpoint path (same resolution)")
    r.add_argument("--mask", default=None, help="toy-world part to train the segmenter for: eyes_nose_mouth "
                                                "(default) | hair; with --segmenter the segmenter's part")
    r.add_argument("--segmenter", default=None, help="saved segmenter file; default: train one from one toy-world "
                                                      "oracle label (judge parser)")
    r.add_argument("--segmenter-on", choices=("source", "target"), default="source",
                   help="generator whose features the segmenter reads (default source)")
    r.add_argument("--label-truncation", type=cli.argtype(cli.float_arg, min=0, max=1), default=0.0,
                   help="truncation psi of the oracle-labelled image (0: the mean face, 1: an untruncated sample)")
    r.add_argument("--n", type=pos, default=8, help="pairs (latents z*)")
    r.add_argument("--steps", type=nonneg, default=1000, help="Adam steps (0: the initial latent's image)")
    r.add_argument("--seed", type=nonneg, default=0)
    r.add_argument("--out", required=True, help="results folder, written whole (an existing one needs --overwrite)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing --out whole")
    r.add_argument("--mode", choices=MODES, default="paper",
                   help="paper (Eq. 6), release (DDS_main.py), blend (layer blend, no optimisation), refine "
                        "(G_t's w+ toward the blend)")
    r.add_argument("--latent-space", choices=_LATENT_SPACES, default=None)
    r.add_argument("--init", choices=_INITS, default=None)
    r.add_argument("--backbone", type=cli.argtype(cli.choice, choices=backbones.names(), what="backbone"),
                   default=None, help=f"perceptual backbone: {', '.join(backbones.names())} (default: vgg16; refine "
                                      "lpips-alex)")
    r.add_argument("--alpha", type=weight, default=PAPER_WEIGHTS["alpha"])
    r.add_argument("--beta", type=weight, default=PAPER_WEIGHTS["beta"])
    r.add_argument("--gamma", type=weight, default=PAPER_WEIGHTS["gamma"])
    r.add_argument("--lr", type=rate, default=None, help="Adam learning rate (default: 0.01; refine 0.05)")
    r.add_argument("--blend-start", type=nonneg, default=None,
                   help="blend/refine: first blended StyledConv layer (default: the first at full resolution)")
    r.add_argument("--min-area", type=nonneg, default=0,
                   help="blend/refine: drop mask components smaller than this many px (0: keep all)")
    r.add_argument("--dilation", type=nonneg, default=1, help="blend/refine: grow the source mask by this many px")
    r.add_argument("--feather", type=weight, default=0.0, help="blend/refine: Gaussian blur of the mask (sigma, px)")
    r.add_argument("--composite", choices=("blend", "paste"), default="blend", help="refine: the target image")
    r.add_argument("--snapshot-every", type=pos, default=100, help="keep the image every this many steps")
    r.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="forward passes in fp32, bf16 (autocast; latent and Adam stay fp32) or tf32 (CUDA)")
    r.add_argument("--compile", action="store_true",
                   help="torch.compile each step's forward pass (the first step compiles: about a minute on CPU)")
    r.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    e = sub.add_parser("evaluate", help="score the crossover and DDS on the toy zoo with the judges (table + JSON)")
    e.add_argument("--n", type=pos, default=32, help="latents per source/target pair")
    e.add_argument("--steps", type=nonneg, default=200, help="DDS iterations per run")
    e.add_argument("--pairs", nargs="+", default=[f"{s}:{t}" for s, t in _default_pairs()],
                   help="source:target toy styles (default caricature:natural natural:caricature sketch:natural "
                        "natural:sketch)")
    e.add_argument("--masks", nargs="+", default=["eyes_nose_mouth", "hair"])
    e.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="DDS modes (default: all)")
    e.add_argument("--mask-source", choices=("parser", "segmenter"), default="parser",
                   help="parser: judge-parser masks (an oracle); segmenter: one-shot segmenter from one label")
    e.add_argument("--fd-n", type=nonneg, default=500, help="target-style renders for the Fréchet distance (0: skip)")
    e.add_argument("--ceiling-n", type=nonneg, default=64,
                   help="identities for the render-composite ceiling row (0: skip)")
    e.add_argument("--lr", type=rate, default=None, help="Adam learning rate (default: each mode's own)")
    e.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                   help="another dds.optimise keyword, repeatable: --set init=z_star --set alpha=5 "
                        f"--set backbone=alexnet (KEY: {', '.join(_SETTABLE)})")
    e.add_argument("--seed", type=nonneg, default=0)
    e.add_argument("--json", default=None, help="write the result JSON here")
    e.add_argument("--figures", default=None, help="folder for one PNG grid per pair x mask (rows: x_c, DDS modes)")
    e.add_argument("--device", default="cpu")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    o = sub.add_parser("photo", help="your own image: invert it, pair it with the other domain, DDS blend, paste back")
    src = o.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", default=None, help="the photo (PNG, JPEG, ...; cropped to a square and resized)")
    src.add_argument("--render", type=nonneg, default=None, metavar="SEED",
                     help="toy world: render identity SEED in the --domain style as the photo (its --other render "
                          "is written as truth.png)")
    o.add_argument("--domain", required=True, help="the photo's domain: a toy style (natural, sketch, caricature), "
                                                   "a generator name or a checkpoint path")
    o.add_argument("--other", required=True, help="the domain whose part goes in (same forms as --domain)")
    o.add_argument("--mask", default=None, help="toy-world part found by the judge parser: eyes_nose_mouth | hair")
    o.add_argument("--mask-png", default=None, help="a region painted on the (square) photo, white on black")
    o.add_argument("--segmenter", default=None, help="a saved one-shot segmenter for the --domain generator")
    o.add_argument("--steps", type=nonneg, default=300, help="inversion steps (Adam on w+, LPIPS-alex + MSE)")
    o.add_argument("--lr", type=rate, default=0.05, help="inversion learning rate")
    o.add_argument("--blend-start", type=nonneg, default=None,
                   help="first blended StyledConv layer (default: the first at full resolution)")
    o.add_argument("--dilation", type=nonneg, default=1, help="grow the other domain's part mask by this many px")
    o.add_argument("--feather", type=weight, default=0.0, help="Gaussian blur of the blend mask (sigma, px)")
    o.add_argument("--min-area", type=nonneg, default=0, help="drop mask components smaller than this many px")
    o.add_argument("--paste-dilation", type=nonneg, default=1,
                   help="grow the pasted-back region by this many px (generator resolution)")
    o.add_argument("--seed", type=nonneg, default=0)
    o.add_argument("--out", required=True, help="results folder, written whole (an existing one needs --overwrite)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --out whole")
    o.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    o.add_argument("--quiet", action="store_true", help="no progress bars")
    from .toy import inversion

    inversion.add_arguments(sub.add_parser("evaluate-inversion", help="toy world: invert held-out renders and score "
                                           "the reconstruction and the translation against the true renders"))
    a = p.parse_args(argv)
    return {"run": _run_cli, "evaluate": _evaluate_cli, "photo": _photo_cli,
            "evaluate-inversion": inversion.run_cli}[a.cmd](a)


if __name__ == "__main__":
    raise SystemExit(main())
