"""``make paper-smoke`` — the paper profile end to end at 256 px with random weights and 2 steps.

The paper profile (``notebooks/params/paper.yaml``) needs a GPU and the public 256 px generators, which CI never
has; this path keeps it from rotting. :func:`smoke_profile` derives a profile from ``paper.yaml`` (loaded, not
copied): the 256 px generators become seeded random-weight files of the rosinality FFHQ-256 shape
(:func:`write_random_generators`), the sizes shrink (:data:`SMOKE_SETTINGS`: 2 DDS steps, 2 latents, ...), the
painted one-shot label becomes a synthetic mask written where the paper profile expects it (09 takes it as its
painted region: a 2-step segmenter of random features finds no part there), and what cannot work offline takes
the nearest available (Inception FID -> Fréchet VGG when its weights are not cached; downloads off).
Every other value, and every parameter name, is the paper profile's, so a renamed or removed notebook parameter
breaks this run. :func:`paper_smoke` writes all that into ``runs/paper-smoke/`` and executes the run list there
with the notebook runner (:func:`ddsutils.lab.notebook.execute`), after a run of 02 with ``mask=hair`` (04, 05 and
07 read ``segmenter_hair.pt`` too, which a paper user makes the same way), then prints the wall time of each run.

    python -m ddsutils.lab.smoke [--out runs/paper-smoke] [--device auto] [--only NAME ...]   # = make paper-smoke

Used in: ``make paper-smoke``, ``python -m ddsutils.lab.demo --profile paper-smoke``, tests/test_paper_smoke.py.
"""
from __future__ import annotations

import copy
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import cli, paths
from ..core.cli import UserError
from . import notebook

__all__ = ["SMOKE_SETTINGS", "SMOKE_OVERRIDES", "GENERATOR_SHAPE", "write_random_generators", "smoke_profile",
           "paper_smoke", "main"]

#: Sizes every notebook of the run list gets when it declares the parameter (paper values in brackets:
#: DDS / projection steps [1000], latents [100], reference samples [1000], segmenter / encoder / adaptation steps).
SMOKE_SETTINGS: dict[str, Any] = {
    "num_steps": 2, "snapshot_every": 1, "n": 2, "n_ref": 2, "steps": 2, "iters": 2, "d_steps": 2,
    "refine_steps": 2, "identities": 2, "batch_size": 2,
}
#: Lists cut to their first item so that the 256 px experiment notebooks stay minutes on a CPU (each pair x
#: mask x mode is one DDS run): 04's sweep keeps its ends, 05 / 07 one experiment each.
SMOKE_OVERRIDES: dict[str, dict[str, Any]] = {
    "04_ablations": {"sweep_values": "ends"},
    "05_metrics": {"pairs": "first", "masks": "first"},
    "07_baselines": {"pairs": "first", "masks": "first"},
}
#: The rosinality FFHQ-256 generator (and few-shot-gan-adaptation's, adapted from it).
GENERATOR_SHAPE: dict[str, int] = {"size": 256, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2}


def write_random_generators(names: Sequence[str], folder: str | os.PathLike, *, seed: int = 0) -> dict[str, Path]:
    """Write one seeded random-weight generator of :data:`GENERATOR_SHAPE` per name as ``<folder>/<name>.pt``.

    The files have the layout of :func:`ddsutils.core.stylegan2.convert_checkpoint` (``g_ema``, ``config``,
    ``latent_avg``), so :func:`~ddsutils.core.stylegan2.load_generator` reads them like the converted public
    checkpoints. Generator ``i`` is seeded ``seed + i``: the same call writes the same weights.

    Args:
        names: generator names (e.g. the paper profile's ``ffhq-256``), one file each.
        folder: created if missing.
        seed: seed of the first generator.

    Returns:
        ``{name: path}``.
    """
    import torch

    from ..core.files import atomic_torch_save
    from ..core.stylegan2 import Generator

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for i, name in enumerate(names):
        torch.manual_seed(seed + i)
        G = Generator(**GENERATOR_SHAPE)
        ck = {"g_ema": G.state_dict(), "config": G.config, "latent_avg": G.mean_latent(4096, seed=seed + i)}
        out[name] = atomic_torch_save(ck, folder / f"{name}.pt")
    return out


def _replace_strings(obj: Any, mapping: Mapping[str, str]) -> Any:
    """``obj`` with every string equal to a key of ``mapping`` replaced, in nested dicts and lists."""
    if isinstance(obj, str):
        return mapping.get(obj, obj)
    if isinstance(obj, dict):
        return {k: _replace_strings(v, mapping) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_replace_strings(v, mapping) for v in obj]
    return obj


def _inception_cached() -> bool:
    from ..core import metrics, weights

    try:
        metrics.inception_weights_path(fetch=False)
        return True
    except weights.WeightsError:
        return False


def _relative(path: Path) -> str:
    """``path`` relative to the repository root when inside it (how the paper profile writes paths), else absolute."""
    path = path.resolve()
    root = paths.repo_root().resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def smoke_profile(generators: Mapping[str, str | os.PathLike], *, device: str, profile_file: str | os.PathLike,
                  label_folder: str | os.PathLike, base: str = "paper") -> dict[str, Any]:
    """The paper-smoke profile: ``notebooks/params/<base>.yaml`` with random generators and smoke sizes.

    Changed from the base profile, nothing else: ``shared.profile`` (``profile_file``, so that
    ``experiments.Context`` and ``notebook.domain`` read this profile), every ``device`` that is ``cuda``
    (``device``), every string naming one of ``generators`` (domains and notebook sections: the file instead),
    the experiments' sizes and every declared parameter of :data:`SMOKE_SETTINGS` (also where the base profile
    leaves the notebook default), the lists of :data:`SMOKE_OVERRIDES`, a non-empty ``label_png`` (a
    synthetic mask file in ``label_folder``, named like the base's) and ``fd: inception`` (``vgg`` unless the
    Inception weights are cached).

    Args:
        generators: ``{generator name in the base profile: random-weight file}``.
        device: ``"cpu"`` or ``"cuda"``.
        profile_file: where the caller writes the returned profile (absolute path).
        label_folder: folder of the synthetic one-shot labels (written by :func:`paper_smoke`).
        base: the profile to derive from.

    Returns:
        The profile as plain YAML data (``shared``, ``domains``, ``experiments``, ``notebooks``).
    """
    import yaml

    raw = yaml.safe_load(notebook._profile_path(base).read_text())
    files = {name: str(Path(p).resolve()) for name, p in generators.items()}
    prof = _replace_strings(copy.deepcopy(raw), files)
    prof["shared"]["profile"] = str(Path(profile_file).resolve())
    for section in (prof["shared"], prof["experiments"], *prof["notebooks"].values()):
        if section.get("device") == "cuda":
            section["device"] = device
    exp = prof["experiments"]
    exp.update({k: v for k, v in SMOKE_SETTINGS.items() if k in exp})
    if exp.get("fd") == "inception" and not _inception_cached():
        exp["fd"] = "vgg"
    for stem in notebook.RUN_LIST:
        section = prof["notebooks"].setdefault(stem, {})
        spec = notebook.parameter_spec(stem)
        section.update({k: v for k, v in SMOKE_SETTINGS.items() if k in spec})
        for key, how in SMOKE_OVERRIDES.get(stem, {}).items():
            values = section[key]
            section[key] = values[:1] if how == "first" else [values[0], values[-1]]
        if section.get("label_png"):
            section["label_png"] = _relative(Path(label_folder) / Path(section["label_png"]).name)
    own = prof["notebooks"].get("09_your_own_image", {})
    if own.get("mask_source") == "segmenter":  # a 2-step segmenter of random features finds no part in the pair
        own["mask_source"], own["mask_png"] = "painted", str((Path(label_folder) / f"{own['mask']}.png").resolve())
    return prof


def _write_label(path: Path, size: int, mask: str) -> Path:
    """A white shape on a black ``size`` px PNG, the stand-in for a painted part: an ellipse in the middle of the
    face for ``eyes_nose_mouth``, the top quarter for ``hair``."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (size, size), 0)
    face = [size * 3 // 8, size * 3 // 8, size * 5 // 8, size * 3 // 4]
    box = [0, 0, size - 1, size // 4] if mask == "hair" else face
    ImageDraw.Draw(img).ellipse(box, fill=255)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def paper_smoke(out: str | os.PathLike | None = None, *, device: str = "auto", names: Sequence[str] | None = None,
                seed: int = 0, cell_timeout: int = 1800) -> list[dict[str, Any]]:
    """Run the run list at the paper-smoke profile (:func:`smoke_profile`) and print a table of wall times.

    Writes ``<out>/generators/<name>.pt`` (:func:`write_random_generators`), ``<out>/masks/<mask>.png`` and
    ``<out>/paper-smoke.yaml``, checks every notebook's parameters against it, then executes the notebooks into
    ``<out>/<name>.ipynb`` offline (``DDS_OFFLINE=1``: nothing is downloaded).

    Args:
        out: output folder (default ``runs/paper-smoke``; a relative path starts at the current folder).
        device: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"`` or ``"cuda"``.
        names: notebook stems (default: the whole run list; later notebooks read earlier ones' outputs).
        seed: seed of the random generators.
        cell_timeout: seconds per cell.

    Returns:
        The runner's rows ``[{"name", "status", "seconds", "output"}]``; it stops at the first failure.

    Raises:
        UserError: a bad device, notebook name, seed or timeout, ``out`` a file, or a profile the notebooks
            refuse (the derived profile names the notebook and the parameter).
    """
    import torch
    import yaml

    dev = str(cli.device(device, "--device"))
    if dev not in ("cpu", "cuda"):
        raise UserError("the paper-smoke profile runs on cpu or cuda", argument="--device", value=device)
    names = notebook.resolve_names(names)
    cli.non_negative_int(seed, "--seed")
    cli.positive_int(cell_timeout, "--cell-timeout")
    out = Path(out) if out is not None else paths.runs_dir() / "paper-smoke"
    if out.exists() and not out.is_dir():
        raise UserError("is an existing file, not a folder; choose a folder for the executed notebooks",
                        argument="--out", value=str(out))
    out = out.resolve()
    base = notebook.load_profile("paper")
    gen_names = sorted({d.generator for d in base["domains"].values()})
    print(f"paper-smoke: {len(gen_names)} random {GENERATOR_SHAPE['size']} px generators {gen_names} "
          f"-> {out / 'generators'}", flush=True)
    files = write_random_generators(gen_names, out / "generators", seed=seed)
    prof_file = out / "paper-smoke.yaml"
    prof = smoke_profile(files, device=dev, profile_file=prof_file, label_folder=out / "masks")
    prof_file.write_text("# derived from notebooks/params/paper.yaml by ddsutils.lab.smoke (make paper-smoke)\n"
                         + yaml.safe_dump(prof, sort_keys=False))
    print(f"paper-smoke: profile {prof_file} (device {dev}, {SMOKE_SETTINGS['num_steps']} DDS steps, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads)", flush=True)
    os.environ["DDS_OFFLINE"] = "1"
    rows = _other_segmenters(prof, prof_file, out, names, cell_timeout)
    if all(r["status"] == "ok" for r in rows):
        rows += notebook.execute(str(prof_file), names=names, out_dir=out, cell_timeout=cell_timeout)
    print(notebook._summary(rows, out))
    return rows


def _other_segmenters(prof: Mapping[str, Any], prof_file: Path, out: Path, names: Sequence[str],
                      cell_timeout: int) -> list[dict[str, Any]]:
    """Run 02 once per mask other than its own that the profile's segmenter masks need (the paper profile's
    04 / 05 / 07 read ``segmenter_hair.pt`` too: a paper user runs 02 with ``mask=hair`` and a painted hair label
    first); the executed copy is kept as ``02_oneshot_segmenter_<mask>.ipynb``. Writes every label PNG."""
    seg = prof["notebooks"]["02_oneshot_segmenter"]
    label = paths.repo_root() / seg["label_png"] if seg.get("label_png") else None
    exp = prof["experiments"]
    needed = set(exp["masks"]) if exp.get("mask_source") == "segmenter" else set()
    needed |= {m for s in prof["notebooks"].values() for m in s.get("masks", [])} & set(exp["masks"])
    rows: list[dict[str, Any]] = []
    for mask in ("eyes_nose_mouth", "hair"):
        _write_label(out / "masks" / f"{mask}.png", GENERATOR_SHAPE["size"], mask)
    for mask in [seg["mask"], *sorted(needed - {seg["mask"]})]:
        if mask == seg["mask"] or ("02_oneshot_segmenter" not in names and (out / f"segmenter_{mask}.pt").is_file()):
            continue
        print(f"paper-smoke: 02_oneshot_segmenter with mask={mask} first (its segmenter_{mask}.pt)", flush=True)
        over = {"mask": mask, **({"label_png": _relative(label.with_name(f"{mask}.png"))} if label else {})}
        rows += notebook.execute(str(prof_file), names=["02_oneshot_segmenter"], out_dir=out,
                                 cell_timeout=cell_timeout, overrides=over)
        rows[-1]["name"] += f" ({mask})"
        if rows[-1]["status"] == "ok":
            os.replace(rows[-1]["output"], out / f"02_oneshot_segmenter_{mask}.ipynb")
    return rows


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ddsutils.lab.smoke``; see the module docstring. Exit 1 when a notebook failed."""
    p = cli.ArgumentParser(prog="python -m ddsutils.lab.smoke", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="output folder (default runs/paper-smoke)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto: CUDA when available)")
    p.add_argument("--only", nargs="+", default=None, help="notebook stems (default: the run list)")
    p.add_argument("--seed", type=cli.argtype(cli.non_negative_int), default=0, help="seed of the random generators")
    p.add_argument("--cell-timeout", type=cli.argtype(cli.positive_int), default=1800, help="seconds per cell")
    a = p.parse_args(argv)
    rows = paper_smoke(a.out, device=a.device, names=a.only, seed=a.seed, cell_timeout=a.cell_timeout)
    return 1 if any(r["status"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
