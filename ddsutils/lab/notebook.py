"""Notebook infrastructure: parameter profiles, the run list, papermill runs, and small helpers for cells.

The notebooks in ``notebooks/`` are thin: every cell calls ``ddsutils``; this module is what they share and
what runs them in batch.

- Profiles: ``notebooks/params/<profile>.yaml`` (``ci``, ``demo``, ``paper``; :func:`load_profile`) with sections
  ``shared``, ``domains`` (name → generator and toy-world style: :func:`domains`, :class:`Domain`),
  ``experiments`` and ``notebooks``. A notebook gets ``shared`` updated by its own section
  (:func:`notebook_parameters`); every name must be a declared parameter of the notebook, with a value of the
  declared type (:func:`check_parameters`), checked before the first kernel starts (papermill would only log
  "Passed unknown parameter"). Each notebook's ``parameters`` cell holds the demo values.
- Run list: :data:`RUN_LIST` is the order of ``make demo`` / ``make paper`` / CI; :data:`FIGURES_NOTEBOOK`
  (``90_paper_figures``) is ``make figures``.
- Runs: ``runs/<profile>/`` is a cache the notebooks share (04, 05 and 07 reuse cached DDS runs, 90 reads what
  the others saved), so a run's unit is the notebook: its executed copy ``<name>.ipynb`` appears only when every
  cell succeeded (papermill writes a hidden partial file first); a failure leaves ``<name>.failed.ipynb`` and
  removes an older ``<name>.ipynb``.
- Helpers for cells: :func:`start`, :class:`Run` (figure and image saving), :func:`oracle_label` (a toy-world
  label from the judge parser), :func:`backbone_weights` (ImageNet weights when present, else random, never a
  surprise download), :func:`adaptable_checkpoint`.

    python -m ddsutils.notebook list | params ci 03_dds_optimisation | prepare --profile ci --into build/ci
    python -m ddsutils.notebook run --profile demo [--only NAME] [--out DIR] [--set NAME=VALUE]  # = make demo

Used in: every notebook; ``make demo``, ``make paper``, ``make figures``, ``make test`` (nbval).
"""
from __future__ import annotations

import dataclasses
import difflib
import io
import json
import os
import random
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..core import cli, paths
from ..core.cli import UserError

__all__ = [
    "RUN_LIST", "FIGURES_NOTEBOOK", "PROFILES", "REQUIRED_PARAMETERS", "notebooks_dir", "params_dir",
    "notebook_path", "Domain", "load_profile", "domains", "domain", "notebook_parameters", "declared_parameters",
    "parameter_spec", "check_parameters", "check_profile", "resolve_names", "prepare", "execute",
    "Run", "start", "oracle_label", "backbone_weights", "adaptable_checkpoint", "main",
]

#: Notebooks run by ``make demo`` / ``make paper`` / CI, in this order (file stems in ``notebooks/``).
RUN_LIST: tuple[str, ...] = (
    "00_setup_and_weights",
    "01_load_generators",
    "02_oneshot_segmenter",
    "03_dds_optimisation",
    "04_ablations",
    "05_metrics",
    "06_unpaired_and_cross_domain",
    "07_baselines",
    "08_fewshot_adaptation",
    "09_your_own_image",
    "10_neighbourhood",
)
#: Regenerates the paper figures from ``runs/<profile>/`` results (``make figures``); not in the run list.
FIGURES_NOTEBOOK = "90_paper_figures"
PROFILES: tuple[str, ...] = ("ci", "demo", "paper")
#: Top-level sections of a profile's YAML file (:func:`load_profile`).
PROFILE_SECTIONS: tuple[str, ...] = ("shared", "domains", "experiments", "notebooks")
#: Every notebook declares these (the runner may inject ``out_dir``).
REQUIRED_PARAMETERS: tuple[str, ...] = ("profile", "out_dir", "device", "seed")
#: Per-cell time limits (s) of batch runs; the whole run is bounded by an outer ``timeout`` in the Makefile.
CELL_TIMEOUT = {"ci": 300, "demo": 900, "paper": 7200}


def notebooks_dir() -> Path:
    """``<repo>/notebooks``."""
    return paths.repo_root() / "notebooks"


def params_dir() -> Path:
    """``<repo>/notebooks/params`` (one YAML file per profile)."""
    return notebooks_dir() / "params"


def notebook_path(name: str) -> Path:
    """``notebooks/<name>.ipynb`` for a stem such as ``"03_dds_optimisation"`` (a path is returned as is)."""
    p = Path(name)
    return p if p.suffix == ".ipynb" else notebooks_dir() / f"{name}.ipynb"


# ----------------------------------------------------------------------------------------------------
# Profiles and parameters


def _profile_path(profile: str) -> Path:
    """``notebooks/params/<profile>.yaml``, or ``profile`` itself when it is a path to a ``.yaml`` file."""
    p = Path(profile)
    return p if p.suffix in (".yaml", ".yml") and p.is_file() else params_dir() / f"{profile}.yaml"


@dataclasses.dataclass(frozen=True)
class Domain:
    """One image domain of a profile (an entry of its ``domains:`` section).

    Attributes:
        name: the domain's name in the profile (``"caricature"``), used in experiment pairs and notebooks.
        generator: its generator, a manifest name (``"toy-caricature-64"``) or a checkpoint path.
        style: the toy-world style it stands for (one of ``toyworld.STYLES``): the class the judges score.
    """

    name: str
    generator: str
    style: str


def _parse_domains(raw: Any, where: str, profile: str) -> dict[str, Domain]:
    """The ``domains:`` section as ``{name: Domain}``; a :class:`~ddsutils.cli.UserError` names the bad entry."""
    from ..toy.toyworld import STYLES

    example = "e.g. caricature: {generator: toy-caricature-64, style: caricature}"
    if not isinstance(raw, dict):
        raise UserError(f"{where}: 'domains' must map domain names to a generator and a style ({example})",
                        argument="--profile", value=profile)
    out = {}
    for name, d in raw.items():
        if not isinstance(d, dict):
            raise UserError(f"{where}: domain {name!r} must be a mapping with 'generator' and 'style' ({example})",
                            argument="--profile", value=profile)
        for key in ("generator", "style"):
            if not isinstance(d.get(key), str) or not d[key]:
                raise UserError(f"{where}: domain {name!r} has no {key} (a non-empty text; {example})",
                                argument="--profile", value=profile)
        if set(d) - {"generator", "style"}:
            raise UserError(f"{where}: domain {name!r} has unknown keys {sorted(set(d) - {'generator', 'style'})}; "
                            "a domain has only 'generator' and 'style'", argument="--profile", value=profile)
        cli.choice(d["style"], f"{where}: domain {name!r}: style", STYLES, what="toy-world style")
        out[str(name)] = Domain(str(name), d["generator"], d["style"])
    return out


def load_profile(profile: str) -> dict[str, Any]:
    """``notebooks/params/<profile>.yaml`` as ``{"shared": {...}, "domains": {name: Domain}, "experiments": {...},
    "notebooks": {stem: {...}}}`` (``profile`` may also be the path of a YAML file of the same structure; a
    missing section is empty).

    Checked here: the structure and every domain (a generator and a toy-world style each); the notebook
    sections by :func:`check_profile`, the experiment settings by :func:`ddsutils.lab.experiments.profile_settings`.
    """
    import yaml

    path = _profile_path(profile)
    if not path.is_file():
        known = sorted(p.stem for p in params_dir().glob("*.yaml"))
        cli.choice(profile, "--profile", known, what=f"parameter profile (no {path})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML ({cli.one_line(str(exc))})", argument="--profile",
                        value=profile) from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must be a mapping with 'shared' and 'notebooks'", argument="--profile", value=profile)
    unknown = set(raw) - set(PROFILE_SECTIONS)
    if unknown:
        raise UserError(f"{path}: top-level keys must be {', '.join(map(repr, PROFILE_SECTIONS))}, got also "
                        f"{sorted(unknown)}", argument="--profile", value=profile)
    sections = raw.get("notebooks") or {}
    bad = [k for k, v in [("shared", raw.get("shared")), ("experiments", raw.get("experiments")), *sections.items()]
           if not isinstance(v or {}, dict)] if isinstance(sections, dict) else []
    if not isinstance(sections, dict) or bad:
        raise UserError(f"{path}: 'shared', 'experiments' and each notebook's section must be mappings of "
                        f"name: value (not so: {bad or ['notebooks']})", argument="--profile", value=profile)
    return {"shared": dict(raw.get("shared") or {}),
            "domains": _parse_domains(raw.get("domains") or {}, str(path), profile),
            "experiments": dict(raw.get("experiments") or {}),
            "notebooks": {k: dict(v or {}) for k, v in sections.items()}}


def domains(profile: str) -> dict[str, Domain]:
    """The domains of a profile (its ``domains:`` section): ``{name: Domain(name, generator, style)}``.

    Used in: notebooks/06_unpaired_and_cross_domain.ipynb; :class:`ddsutils.lab.experiments.Context`.
    """
    return load_profile(profile)["domains"]


def domain(profile: str, name: str) -> Domain:
    """One domain of a profile by name; a :class:`~ddsutils.cli.UserError` lists the profile's domains."""
    known = domains(profile)
    return known[cli.choice(name, "domain", list(known), what=f"domain of profile {profile!r}")]


def notebook_parameters(profile: str, name: str, **overrides: Any) -> dict[str, Any]:
    """The parameters ``name`` gets at ``profile``: ``shared``, then its own section, then ``overrides``."""
    prof = load_profile(profile)
    return {**prof["shared"], **prof["notebooks"].get(Path(name).stem, {}), **overrides}


def declared_parameters(name: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Names declared in a notebook's ``parameters`` cell (``papermill.inspect_notebook``): name -> info."""
    import papermill

    return dict(papermill.inspect_notebook(str(notebook_path(str(name)))))


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
                                       "list": (list, tuple), "tuple": (list, tuple), "dict": (dict,)}


def parameter_spec(name: str | os.PathLike) -> dict[str, tuple[str | None, Any]]:
    """A notebook's parameters as ``{name: (type name, default)}``, read from its ``parameters`` cell.

    The type is the annotation (``n: int = 3``) or, without one, the default's type (``None`` for a ``None``
    default: any value). Only assignments of literals are read (the contract of ``tests/test_notebooks.py``).
    """
    import ast

    path = notebook_path(str(name))
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise UserError(f"{path} has {len(cells)} cells tagged 'parameters' (needs exactly one)")
    src = cells[0]["source"]
    spec: dict[str, tuple[str | None, Any]] = {}
    for stmt in ast.parse("".join(src) if isinstance(src, list) else src).body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            default = ast.literal_eval(stmt.value)
            ann = stmt.annotation
            typ = ann.id if isinstance(ann, ast.Name) else ann.value.id if isinstance(ann, ast.Subscript) and \
                isinstance(ann.value, ast.Name) else None
            spec[stmt.target.id] = (typ if typ in _TYPES else None, default)
        elif isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            default = ast.literal_eval(stmt.value)
            typ = None if default is None else type(default).__name__
            spec[stmt.targets[0].id] = (typ if typ in _TYPES else None, default)
    return spec


def _type_problem(value: Any, typ: str | None, default: Any) -> str | None:
    """Why ``value`` does not fit a parameter declared ``typ`` with ``default`` (None when it fits)."""
    if typ is None:
        return None
    ok = isinstance(value, _TYPES[typ]) and not (isinstance(value, bool) and typ in ("int", "float"))
    if not ok:
        return f"must be {typ} like the notebook's default {default!r}, got {type(value).__name__}"
    if typ in ("list", "tuple") and default:
        first = default[0]
        inner = type(first).__name__ if type(first).__name__ in _TYPES else None
        for i, item in enumerate(value):
            why = _type_problem(item, inner, first)
            if why:
                return f"item {i} ({item!r}) {why}"
    return None


def check_parameters(name: str, params: Mapping[str, Any], *, source: str = "parameters") -> None:
    """Raise :class:`~ddsutils.cli.UserError` unless every name in ``params`` is a parameter of notebook
    ``name`` with a value of its declared type (``source`` says where the values came from, e.g. a profile)."""
    spec = parameter_spec(name)
    stem = Path(name).stem
    for key, value in params.items():
        if key not in spec:
            near = difflib.get_close_matches(key, list(spec), n=1)
            raise UserError(f"{stem} has no parameter {key!r}{f' (did you mean {near[0]}?)' if near else ''}; "
                            f"its parameters: {', '.join(spec)}", argument=source, value=f"{key}: {value!r}")
        typ, default = spec[key]
        why = _type_problem(value, typ, default)
        if why:
            raise UserError(f"{stem} parameter {key!r} {why}", argument=source, value=f"{key}: {value!r}")


def resolve_names(names: Sequence[str] | None, *, default: Sequence[str] = RUN_LIST,
                  argument: str = "--only") -> list[str]:
    """Notebook stems to run: ``default`` for ``None``; each name must be in the run list, be
    :data:`FIGURES_NOTEBOOK` or be a path to an ``.ipynb`` file (else a :class:`~ddsutils.cli.UserError`
    listing the valid names)."""
    if names is None:
        return list(default)
    valid = [*RUN_LIST, FIGURES_NOTEBOOK]
    out = []
    for name in names:
        if name.endswith(".ipynb") and Path(name).is_file():
            out.append(name)
            continue
        cli.choice(name, argument, valid, what="notebook")
        out.append(name)
    if not out:
        raise UserError("give at least one notebook name", argument=argument, value="")
    return out


def check_profile(profile: str, names: Sequence[str] | None = None, **overrides: Any) -> None:
    """:func:`check_parameters` for every notebook of ``names`` (default: the run list and
    :data:`FIGURES_NOTEBOOK`) at ``profile`` with ``overrides``; also refuses profile sections for unknown
    notebooks. Raises :class:`~ddsutils.cli.UserError` at the first problem."""
    prof = load_profile(profile)
    stray = sorted(set(prof["notebooks"]) - set(RUN_LIST) - {FIGURES_NOTEBOOK})
    if stray:
        cli.choice(stray[0], f"{profile}.yaml", [*RUN_LIST, FIGURES_NOTEBOOK], what="notebook section")
    where = _profile_path(profile)
    where = where.relative_to(paths.repo_root()) if where.is_relative_to(paths.repo_root()) else where
    for name in names or (*RUN_LIST, FIGURES_NOTEBOOK):
        if notebook_path(name).is_file():
            check_parameters(name, notebook_parameters(profile, name), source=str(where))
            check_parameters(name, overrides, source="--set")


# ----------------------------------------------------------------------------------------------------
# Batch runs (papermill)


def _kernel_env(profile: str, threads: int | None) -> None:
    """Environment the kernels inherit: no tqdm bars, the inline plot backend, offline at the ci profile."""
    os.environ["TQDM_DISABLE"] = "1"
    os.environ.pop("MPLBACKEND", None)  # an inherited MPLBACKEND=Agg would hide every figure in the outputs
    if profile == "ci":
        os.environ.setdefault("DDS_OFFLINE", "1")
    if threads:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


def prepare(profile: str, into: str | os.PathLike, names: Sequence[str] | None = None,
            overrides: Mapping[str, Any] | None = None) -> list[Path]:
    """Write parameterised copies of the notebooks (papermill ``prepare_only``: injected, not executed).

    ``names`` defaults to :data:`RUN_LIST` followed by :data:`FIGURES_NOTEBOOK` (every notebook; nbval runs
    the copies in file-name order, so ``90_paper_figures`` reads what the others wrote). The parameters of
    every notebook are checked (:func:`check_parameters`) before the first copy is written.
    Used by ``make test`` (``into=build/ci``, then ``pytest --nbval-lax`` on the copies).
    """
    import papermill

    names = resolve_names(names, default=(*RUN_LIST, FIGURES_NOTEBOOK))
    overrides = dict(overrides or {})
    check_profile(profile, names, **overrides)
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        dst = into / f"{Path(name).stem}.ipynb"
        papermill.execute_notebook(str(notebook_path(name)), str(dst),
                                   parameters=notebook_parameters(profile, name, **overrides),
                                   prepare_only=True, kernel_name="python3", progress_bar=False)
        out.append(dst)
    return out


def _sweep_partials(out: Path, stem: str) -> None:
    """Remove ``.<stem>.partial-<pid>.ipynb`` files whose process is gone (left by a killed run)."""
    for f in out.glob(f".{stem}.partial-*.ipynb"):
        try:
            pid = int(f.name.rsplit("-", 1)[1].removesuffix(".ipynb"))
            os.kill(pid, 0)  # alive (ours or another run's): keep
        except (ValueError, ProcessLookupError):
            f.unlink(missing_ok=True)
        except PermissionError:
            pass


def execute(profile: str, *, names: Sequence[str] | None = None, out_dir: str | os.PathLike | None = None,
            threads: int | None = None, cell_timeout: int | None = None,
            overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run notebooks with papermill at ``profile``; executed copies go to ``<out_dir>/<name>.ipynb``.

    Every name and every parameter is checked before the first kernel starts (:func:`resolve_names`,
    :func:`check_profile`). The executed copy is renamed into place only when the whole notebook succeeded
    (see the module docstring: a failure gives ``<name>.failed.ipynb``).

    Args:
        profile: a YAML profile (``ci``, ``demo``, ``paper``).
        names: notebook stems (default :data:`RUN_LIST`); a missing file is reported and skipped.
        out_dir: default ``runs/<profile>`` (given to the notebooks as ``out_dir`` too).
        threads: ``OMP_NUM_THREADS`` for the kernels.
        cell_timeout: per-cell limit in seconds (default :data:`CELL_TIMEOUT` of the profile).
        overrides: parameters given to every notebook that runs (checked like the profile's).

    Returns:
        ``[{"name", "status", "seconds", "output"}]``; stops at the first failing notebook (status "failed").

    Raises:
        UserError: unknown notebook or profile, a parameter a notebook does not declare or of the wrong type,
            ``out_dir`` a file, or a bad ``threads`` / ``cell_timeout``.
    """
    names = resolve_names(names)
    overrides = dict(overrides or {})
    if threads is not None:
        cli.positive_int(threads, "--threads")
    if cell_timeout is not None:
        cli.positive_int(cell_timeout, "--cell-timeout")
    check_profile(profile, names, **overrides)
    devices = {notebook_parameters(profile, n, **overrides).get("device") for n in names} - {None}
    for dev in sorted(devices):  # e.g. the paper profile's cuda on a machine without a GPU
        cli.device(dev, "device")
    out = Path(out_dir) if out_dir else paths.runs_dir() / profile
    if out.exists() and not out.is_dir():
        raise UserError("is an existing file, not a folder; choose a folder for the executed notebooks",
                        argument="--out", value=str(out_dir or out))
    out.mkdir(parents=True, exist_ok=True)
    import papermill

    _kernel_env(profile, threads)
    extra = {"out_dir": str(out)} if out_dir else {}
    rows = []
    for name in names:
        stem = Path(name).stem
        src, dst = notebook_path(name), out / f"{stem}.ipynb"
        if not src.is_file():
            print(f"[skip] {src} does not exist yet (nothing to run)")
            rows.append({"name": stem, "status": "missing", "seconds": 0.0, "output": None})
            continue
        _sweep_partials(out, stem)
        part, failed = out / f".{stem}.partial-{os.getpid()}.ipynb", out / f"{stem}.failed.ipynb"
        print(f"[run ] {stem} ({profile}) ...", flush=True)
        t = time.perf_counter()
        try:
            papermill.execute_notebook(str(src), str(part),
                                       parameters=notebook_parameters(profile, name, **{**extra, **overrides}),
                                       kernel_name="python3", progress_bar=False, cwd=str(src.parent),
                                       execution_timeout=cell_timeout or CELL_TIMEOUT.get(profile, 900))
        except BaseException as exc:  # papermill wrote the notebook with the error marked; keep it as .failed
            dt = time.perf_counter() - t
            dst.unlink(missing_ok=True)  # a previous success must not sit beside this failure
            if part.is_file():
                os.replace(part, failed)
            if not isinstance(exc, Exception):
                raise
            print(f"[FAIL] {stem} after {dt:.0f} s: {type(exc).__name__}: {str(exc).strip().splitlines()[-1:]}\n"
                  f"       see {failed}")
            rows.append({"name": stem, "status": "failed", "seconds": dt, "output": str(failed)})
            break
        os.replace(part, dst)
        failed.unlink(missing_ok=True)
        dt = time.perf_counter() - t
        print(f"[ ok ] {stem}: {dt:.1f} s -> {dst}", flush=True)
        rows.append({"name": stem, "status": "ok", "seconds": dt, "output": str(dst)})
    return rows


def _summary(rows: list[dict[str, Any]], out: Path) -> str:
    lines = ["", f"{'notebook':<34}{'status':>8}{'seconds':>10}"]
    lines += [f"{r['name']:<34}{r['status']:>8}{r['seconds']:>10.1f}" for r in rows]
    lines.append(f"{'total':<34}{'':>8}{sum(r['seconds'] for r in rows):>10.1f}")
    lines.append(f"\nexecuted notebooks: {out}/<name>.ipynb   (open them in JupyterLab)")
    figs = sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []
    lines.append(f"figures ({len(figs)}) in {out / 'figures'}/:")
    lines += [f"  {f.name}" for f in figs]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Helpers for notebook cells


@dataclasses.dataclass
class Run:
    """Where a notebook writes (``out``: ``runs/<profile>``, ``figures``: ``out/figures``) and on what device."""

    profile: str
    out: Path
    figures: Path
    device: Any
    seed: int

    def savefig(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``figures/<name>.png`` (no timestamp metadata: byte-stable)."""
        from ..core.files import atomic_write_bytes

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
        return atomic_write_bytes(buf.getvalue(), self.figures / f"{name}.png")

    def show(self, img: Any, name: str, *, nrow: int = 8, scale: int = 2) -> Path:
        """Save images ``[N, 3, H, W]`` in [-1, 1] (tiled, ``nrow`` per row) as ``figures/<name>.png`` and
        display the file inline."""
        from . import viz

        path = viz.save_png(img.detach().cpu(), self.figures / f"{name}.png", nrow=nrow, scale=scale)
        try:
            from IPython.display import Image, display

            display(Image(filename=str(path)))
        except ImportError:  # plain Python: the file is the result
            pass
        return path

    def save_json(self, obj: Any, name: str) -> Path:
        """Write ``out/<name>.json`` (results for later notebooks, e.g. 90_paper_figures)."""
        from ..core.files import atomic_write_bytes

        return atomic_write_bytes((json.dumps(obj, indent=1, default=str) + "\n").encode(), self.out / f"{name}.json")


def start(*, profile: str = "demo", out_dir: str = "", device: str = "auto", seed: int = 0) -> Run:
    """First call of every notebook: seed Python and torch, resolve the device, create the output folders.

    Args:
        profile: names the output folder ``runs/<profile>`` when ``out_dir`` is empty.
        out_dir: output folder (relative paths are relative to the repository root, whatever the cwd).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        seed: seeds ``random`` and ``torch``.
    """
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise UserError("CUDA is not available here; use device='cpu' or 'auto'", argument="device", value=device)
    random.seed(seed)
    torch.manual_seed(seed)
    out = Path(out_dir) if out_dir else paths.runs_dir() / profile
    out = out if out.is_absolute() else paths.repo_root() / out
    (out / "figures").mkdir(parents=True, exist_ok=True)
    print(f"profile {profile!r}: outputs in {out}, device {device}, seed {seed}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    return Run(profile=profile, out=out, figures=out / "figures", device=torch.device(device), seed=seed)


def oracle_label(G: Any, mask: str, *, seed: int = 0, truncation: float = 1.0, n_candidates: int = 64,
                 min_foreground: float = 0.005):
    """A one-shot label in the toy world: the judge parser's ``mask`` on one generated image.

    Draws ``n_candidates`` seeded z, parses ``G(z, truncation=truncation)`` (toward
    ``G.truncation_centre()``) with ``judge-parser-64`` and returns the first whose mask covers between
    ``min_foreground`` and ``1 - min_foreground`` of the image. ``truncation=0``: every candidate is the
    mean face, so that is the labelled image.

    Returns:
        ``(z [1, D], label [1, 1, S, S] float {0, 1}, image [1, 3, S, S])`` on the CPU; the image is
        ``G(z, truncation=truncation, truncation_latent=G.truncation_centre())``.

    Used in: notebooks/02_oneshot_segmenter.ipynb.
    """
    import torch

    from ..toy import judges, toyworld

    parser = judges.load_judge("judge-parser-64")
    z = torch.randn(n_candidates, G.style_dim, generator=torch.Generator().manual_seed(seed))
    dev = next(G.parameters()).device
    centre = G.truncation_centre() if truncation != 1 else None
    with torch.no_grad():
        img = G(z.to(dev), truncation=truncation, truncation_latent=centre).clamp(-1, 1).cpu()
    labels = toyworld.part_mask(judges.predict_parts(parser, img), mask).float()
    fg = labels.flatten(1).mean(1)
    ok = ((fg >= min_foreground) & (fg <= 1 - min_foreground)).nonzero().flatten()
    if len(ok) == 0:
        hint = "; at truncation 0 every sample is the mean face: try truncation=1" if truncation == 0 else ""
        raise UserError(f"none of {n_candidates} samples has a usable {mask!r} mask according to the parser{hint}")
    k = int(ok[0])
    return z[k:k + 1], labels[k:k + 1].reshape(1, 1, *labels.shape[-2:]), img[k:k + 1]


def backbone_weights(requested: str = "auto", backbone: str = "vgg16") -> str:
    """``backbone_weights`` for :func:`ddsutils.dds.optimise` without surprise downloads.

    ``"auto"``: ``"imagenet"`` when ``<backbone>-imagenet`` is already in the weights cache, otherwise
    ``"random"`` (with a note on how to fetch it). Any other value is returned unchanged.
    """
    if requested != "auto":
        return requested
    from ..core import weights

    try:
        weights.resolve(f"{backbone}-imagenet", fetch=False, progress=False)
        return "imagenet"
    except weights.WeightsError as exc:
        print(f"{backbone}-imagenet is not in the weights cache ({type(exc).__name__}); using RANDOM backbone "
              f"weights, so the perceptual terms are not meaningful. Fix: python -m ddsutils.weights fetch "
              f"{backbone}-imagenet")
        return "random"


def adaptable_checkpoint(source: str | os.PathLike, out: str | os.PathLike, *, seed: int = 0) -> Path:
    """A training checkpoint that :func:`ddsutils.fewshot.adapt` accepts.

    ``source`` is either such a checkpoint already (returned unchanged, e.g.
    ``runs/zoo/natural/checkpoints/010000.pt`` from ``make zoo``, whose discriminator is trained) or an
    exported generator (a manifest name like ``"toy-natural-64"`` or a file with ``g_ema`` only): then
    ``g = g_ema =`` that generator and the discriminator is NEW (seeded, with the generator's channel
    widths), written to ``out``. Adaptation then starts with an untrained discriminator, which costs
    iterations.
    """
    import torch

    from ..core.files import atomic_torch_save
    from ..core.stylegan2 import load_generator
    from ..toy.train import build_discriminator

    p = Path(source)
    if p.is_file():
        ck = torch.load(p, map_location="cpu", weights_only=True)
        if isinstance(ck, Mapping) and {"g", "d", "g_ema", "iter", "config"} <= set(ck):
            return p
    G = load_generator(source)
    torch.manual_seed(seed)
    D = build_discriminator({"size": G.size, "channels": G.config["channels"]})
    sd = {k: v.clone() for k, v in G.state_dict().items()}
    ck = {"g": sd, "g_ema": sd, "d": D.state_dict(), "iter": 0, "config": dict(G.config),
          "d_config": dict(D.config), "train_args": {"from_export": str(source)}}
    return atomic_torch_save(ck, Path(out))


# ----------------------------------------------------------------------------------------------------
# Command line


def _parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``--set NAME=VALUE`` (VALUE read as YAML: ``3``, ``0.5``, ``true``, ``[a, b]``, text) -> dict."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError("wants NAME=VALUE (e.g. fig_dir=figures)", argument="--set", value=item)
        try:
            out[key.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            raise UserError("VALUE is not a YAML value (quote text with spaces or colons)", argument="--set",
                            value=item) from None
    return out


@cli.command
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ddsutils.notebook {list,params,run,prepare}``; see the module docstring."""
    p = cli.ArgumentParser(prog="python -m ddsutils.notebook", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the run list and which notebooks exist")
    q = sub.add_parser("params", help="print the parameters a notebook gets at a profile (YAML)")
    q.add_argument("profile")
    q.add_argument("name")
    r = sub.add_parser("run", help="execute notebooks with papermill")
    r.add_argument("--profile", default="demo")
    r.add_argument("--only", nargs="+", default=None, help="notebook stems (default: the run list)")
    r.add_argument("--out", default=None, help="output folder (default runs/<profile>)")
    r.add_argument("--threads", type=cli.argtype(cli.positive_int), default=None,
                   help="OMP_NUM_THREADS for the kernels")
    r.add_argument("--cell-timeout", type=cli.argtype(cli.positive_int), default=None, help="seconds per cell")
    r.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter of every notebook that runs (e.g. fig_dir=figures)")
    s = sub.add_parser("prepare", help="inject a profile's parameters without executing (for nbval)")
    s.add_argument("--profile", default="ci")
    s.add_argument("--into", default="build/ci")
    s.add_argument("--only", nargs="+", default=None)
    s.add_argument("--set", dest="sets", action="append", default=[], metavar="NAME=VALUE")
    a = p.parse_args(argv)
    if a.cmd == "list":
        for name in (*RUN_LIST, FIGURES_NOTEBOOK):
            print(f"{name:<34}{'present' if notebook_path(name).is_file() else 'not yet written'}")
        return 0
    if a.cmd == "params":
        import yaml

        stem = resolve_names([a.name], argument="name")[0]
        params = notebook_parameters(a.profile, stem)
        check_parameters(stem, params, source=f"{a.profile}.yaml")
        print(yaml.safe_dump(params, sort_keys=False), end="")
        return 0
    if a.cmd == "prepare":
        into = Path(a.into)
        if into.exists() and not into.is_dir():
            raise UserError("is an existing file, not a folder", argument="--into", value=a.into)
        for path in prepare(a.profile, into, a.only, overrides=_parse_sets(a.sets)):
            print(path)
        return 0
    out = Path(a.out) if a.out else paths.runs_dir() / a.profile
    rows = execute(a.profile, names=a.only, out_dir=a.out, threads=a.threads, cell_timeout=a.cell_timeout,
                   overrides=_parse_sets(a.sets))
    print(_summary(rows, out))
    if all(r["status"] == "missing" for r in rows):
        raise UserError(f"nothing ran: {', '.join(r['name'] for r in rows)} not written yet", argument="--only",
                        value=" ".join(a.only or RUN_LIST))
    return 1 if any(r["status"] == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
