"""The paper's figures and tables from saved results (notebook 90): load, grid, caption, save byte-stable.

:class:`FigureWriter` loads a saved result (or notes it missing) and writes figures and Markdown files into one
folder, keeping the lists of what it wrote and skipped. :func:`grid_of` turns an image dict
``{"<experiment>/<column>": [N, C, H, W]}`` (the format of ``table1.pt``, ``blending_baselines.pt``,
``06_images.pt``) into a grid for :func:`ddsutils.lab.viz.labelled_grid`. :func:`mean_scores` and
:func:`judge_title` put the toy-world judges' scores into a title; :func:`unpaired_table` is the Markdown
table of ``06_unpaired.json``. The same results give the same bytes.

Used in: notebooks/90_paper_figures.ipynb.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..core.files import atomic_write_bytes
from . import viz

__all__ = ["FigureWriter", "rgb", "grid_of", "mean_scores", "judge_title", "unpaired_table"]

#: The second line of a title with judge scores (:func:`judge_title`).
JUDGE_CAPTION = "in-mask source ÷ paste / outside target"


class FigureWriter:
    """Reads saved results and writes figures / Markdown files into ``out``, remembering both.

    Args:
        out: folder the files go to (created).
        dpi: resolution of the PNGs.

    Attributes:
        written: paths written so far, in order.
        skipped: file names of inputs that :meth:`load` did not find.
    """

    def __init__(self, out: str | os.PathLike, *, dpi: int = 128) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.dpi = dpi
        self.written: list[Path] = []
        self.skipped: list[str] = []

    def load(self, path: str | os.PathLike) -> Any:
        """A saved result: ``.json`` parsed, anything else ``torch.load``-ed (``weights_only``).

        Returns:
            The content, or ``None`` when the file does not exist (its name goes to :attr:`skipped` with a
            printed note: a figure whose input is missing is skipped, not an error).
        """
        path = Path(path)
        if path.is_file():
            return json.loads(path.read_text()) if path.suffix == ".json" else torch.load(path, weights_only=True)
        self.skipped.append(path.name)
        print(f"[skip] {path} not found: run the notebook or experiment that writes it (see the table above)")
        return None

    def save(self, fig: Any, name: str) -> Path:
        """Write a matplotlib figure as ``out/<name>`` (PNG, fixed metadata: :func:`ddsutils.lab.viz.save_figure`)."""
        return self._wrote(viz.save_figure(fig, self.out / name, dpi=self.dpi))

    def save_md(self, text: str, name: str) -> Path:
        """Write ``text`` (UTF-8) as ``out/<name>``, atomically."""
        return self._wrote(atomic_write_bytes(text.encode(), self.out / name))

    def _wrote(self, path: Path) -> Path:
        self.written.append(path)
        print("wrote", path)
        return path


def rgb(x: torch.Tensor) -> torch.Tensor:
    """Images ``[N, 3, H, W]`` as float; masks ``[N, 1, H, W]`` in {0, 1} as RGB in [-1, 1] (the part white)."""
    return x.float() if x.shape[1] == 3 else x.float().expand(-1, 3, -1, -1) * 2 - 1


def grid_of(images: Mapping[str, torch.Tensor], cols: Sequence[str], n: int) -> tuple[torch.Tensor, list[str]]:
    """Images of several experiments as one grid: a row per sample, a column per entry of ``cols``.

    Args:
        images: ``{"<experiment>/<column>": [N, C, H, W]}``; an experiment is drawn when it has ``cols[0]``
            (then it must have every column). Masks are drawn white (:func:`rgb`).
        cols: the columns, left to right.
        n: at most this many samples (rows) per experiment.

    Returns:
        ``(images [rows * len(cols), 3, H, W], row_labels)`` for :func:`ddsutils.lab.viz.labelled_grid` with
        ``ncol=len(cols)``; an experiment's first row is labelled ``"source → target/mask"``, its others ``""``.
    """
    exps = list(dict.fromkeys(k.rsplit("/", 1)[0] for k in images if k.rsplit("/", 1)[1] == cols[0]))
    img = torch.cat([torch.stack([rgb(images[f"{e}/{c}"][:n]) for c in cols], 1).flatten(0, 1) for e in exps])
    labels = [e.replace("->", " → ") if i == 0 else "" for e in exps for i in range(len(images[f"{e}/{cols[0]}"][:n]))]
    return img, labels


def mean_scores(rows: Sequence[Mapping[str, Any]], *, reference: str = "D_t",
                keys: Sequence[str] = ("relative_inside", "outside_target")) -> dict[str, dict[str, float]]:
    """Each method's mean judge scores over the rows of one reference set (the rows of ``table1.json``).

    Args:
        rows: dicts with ``method``, ``reference`` and the ``keys``; rows without every key (no judges) are
            left out.
        reference: ``"D_s"``, ``"x_c"`` or ``"D_t"`` (each experiment has one row per reference).
        keys: the scores to average.

    Returns:
        ``{method: {key: mean over its experiments}}`` in the rows' order of methods.
    """
    sel = [r for r in rows if r["reference"] == reference and all(k in r for k in keys)]
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r["method"] for r in sel):
        mine = [r for r in sel if r["method"] == method]
        out[method] = {k: sum(r[k] for r in mine) / len(mine) for k in keys}
    return out


def judge_title(title: str, scores: Mapping[str, Mapping[str, float]], modes: Sequence[str]) -> str:
    """``title`` with a second line of judge scores per DDS mode, when there are any.

    Args:
        title: the figure's title.
        scores: ``{"dds-<mode>": {"relative_inside", "outside_target", ...}}`` (``scoring.score_cell``'s result
            in ``03_dds_results.pt``, or :func:`mean_scores`).
        modes: the modes to list, in this order; a mode without scores is left out.

    Returns:
        ``"<title>\\nin-mask source ÷ paste / outside target: paper 0.43 / 1.00; blend 1.89 / 0.99"``, or
        ``title`` alone when no mode has scores.
    """
    parts = [f"{m} {scores[f'dds-{m}']['relative_inside']:.2f} / {scores[f'dds-{m}']['outside_target']:.2f}"
             for m in modes if f"dds-{m}" in scores]
    return title + (f"\n{JUDGE_CAPTION}: {'; '.join(parts)}" if parts else "")


def unpaired_table(result: Mapping[str, Any]) -> str:
    """The Markdown file of ``06_unpaired.json``: a heading, where the numbers come from, one row per experiment.

    Args:
        result: ``{"mask", "n", "num_steps", "experiments": {name: {"source", "target", "backbone",
            "final_losses": {"L_s", "L_t", "L_c", "total"}, "judge": {"x_c" | "dds": {"inside_source",
            "outside_target"}}}}}`` as notebook 06 saves it.

    Returns:
        The text, ending with a newline.
    """
    lines = ["# Unpaired latents, unrelated target, caricature × sketch, appendix D (toy world)", "",
             f"From `06_unpaired.json`: mask {result['mask']}, {result['n']} pairs, {result['num_steps']} DDS steps. "
             "L_s and L_t hold the backbone's perceptual term (compare within a row); L_c and the judge "
             "(judge-domain-64: share of the part in the source style / of the rest in the target style) compare "
             "across rows.", "",
             "| experiment | source | target | backbone | L_s | L_t | L_c | total | judge x_c | judge DDS |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, e in result["experiments"].items():
        L, j = e["final_losses"], e["judge"]
        losses = " | ".join(f"{L[k]:.4g}" for k in ("L_s", "L_t", "L_c", "total"))
        judged = "".join(f" | {j[x]['inside_source']:.2f} / {j[x]['outside_target']:.2f}" for x in ("x_c", "dds"))
        lines.append(f"| {name} | {e['source']} | {e['target']} | {e['backbone']} | {losses}{judged} |")
    return "\n".join(lines) + "\n"
