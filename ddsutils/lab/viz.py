"""Figures: titled matplotlib grids of images, saved byte-stable, and the Fig. 4 strips of the DDS modes.

:func:`labelled_grid` and :func:`save_figure` make titled figures of image grids and save them with fixed PNG
metadata (no ``Software`` entry; matplotlib writes no date into PNGs), so the same data gives the same bytes.
The image helpers (:func:`to_uint8`, :func:`image_grid`, :func:`save_png`) live in :mod:`ddsutils.core.imageio`
and are re-exported here. :func:`overlay` draws a part mask over images (notebooks 02 and 06);
:func:`photo_strip` lays out the steps of :func:`ddsutils.core.photo.translate_photo` (notebook 09).
"""
from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any
from pathlib import Path

import torch

from ..core.files import atomic_write_bytes
from ..core.imageio import image_grid, save_png, to_uint8

__all__ = ["to_uint8", "image_grid", "save_png", "labelled_grid", "save_figure", "mode_strips", "overlay",
           "photo_strip", "atomic_write_bytes"]


def labelled_grid(img: torch.Tensor, *, ncol: int, title: str, col_labels: Sequence[str] = (),
                  row_labels: Sequence[str] = (), pad: int = 2, inches: float = 1.0):
    """A matplotlib figure of images ``[N, C, H, W]`` in [-1, 1] tiled ``ncol`` per row (as :func:`image_grid`),
    with ``title`` above, ``col_labels`` over the columns and ``row_labels`` left of the rows (``""`` for none).

    Returns the ``Figure`` (each image about ``inches`` wide; save it with :func:`save_figure`).
    """
    import matplotlib.pyplot as plt

    grid = to_uint8(image_grid(img, nrow=ncol, pad=pad))
    ncol = min(ncol, len(img))
    nrows = (len(img) + ncol - 1) // ncol
    h, w = img.shape[-2] + pad, img.shape[-1] + pad
    fig, ax = plt.subplots(figsize=(ncol * inches, nrows * inches * h / w))
    ax.imshow(grid, interpolation="nearest")
    ax.set_xticks([pad / 2 + w * (i + 0.5) for i in range(len(col_labels))], list(col_labels), fontsize=8)
    ax.set_yticks([pad / 2 + h * (i + 0.5) for i in range(len(row_labels))], list(row_labels), fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=9)
    return fig


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Save a matplotlib figure as a PNG with fixed metadata (``Software`` removed; matplotlib adds no time to
    PNGs), cropped to its content (``bbox_inches="tight"``), atomically: the same figure gives the same bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return atomic_write_bytes(buf.getvalue(), path)


def mode_strips(results: Mapping[str, Any], *, sample: int = 0) -> tuple[torch.Tensor, list[str], list[str]]:
    """Fig. 4 for several DDS modes: one row per mode for one sample, ``x_s, x_t, x_c``, the snapshots, ``x̂``.

    Args:
        results: ``{mode: DDSResult}`` of the same inputs (snapshots at the same steps; a mode with fewer
            snapshots, e.g. blend with none, gets blank cells).
        sample: which sample of the batch.

    Returns:
        ``(images [len(results) * K, 3, H, W], row_labels, col_labels)`` for :func:`labelled_grid`.
    """
    steps = sorted({int(s) for r in results.values() for s, _ in r.snapshots})
    rows = []
    for r in results.values():
        snaps = {int(s): img[sample] for s, img in r.snapshots}
        blank = torch.ones_like(r.image[sample])
        rows += [r.x_s[sample], r.x_t[sample], r.x_c[sample].clamp(-1, 1),
                 *[snaps.get(s, blank) for s in steps], r.image[sample]]
    cols = ["x_s", "x_t", "x_c"] + [f"step {s}" for s in steps] + ["x̂"]
    return torch.stack(rows), list(results), cols


def overlay(x: torch.Tensor, y: torch.Tensor, *, color: Sequence[float] = (1.0, -1.0, -1.0),
            alpha: float = 0.5) -> torch.Tensor:
    """Images with a part mask drawn over them: ``x * (1 - alpha * y) + alpha * y * color``, on the CPU.

    Args:
        x: images ``[N, 3, H, W]`` in [-1, 1].
        y: masks ``[N, 1, H, W]`` in [0, 1] (broadcast over the channels).
        color: RGB in [-1, 1] that the part is tinted with (default red).
        alpha: how much of the colour replaces the image inside the part.

    Returns:
        ``[N, 3, H, W]`` on the CPU: ``x`` outside the part, ``x`` mixed with ``color`` inside it.
    """
    x, y = x.detach().cpu(), y.detach().cpu()
    c = torch.tensor(list(color), dtype=x.dtype).view(1, 3, 1, 1)
    return x * (1 - alpha * y) + alpha * y * c


def photo_strip(result: Any, *, truth: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str]]:
    """The steps of :func:`ddsutils.core.photo.translate_photo` side by side, at the generator's resolution.

    Columns: the photo (as the generator sees it), the reconstruction, the pair in the other domain, ``truth``
    when given (e.g. a toy render's identity in the other style), the part in the reconstruction and in the pair
    (:func:`overlay`, red), the DDS blend, and the result pasted back into the photo (resized, antialiased, from
    the photo's resolution to the generator's).

    Args:
        result: a :class:`~ddsutils.core.photo.PhotoResult`.
        truth: optional ``[1, 3, s, s]`` in [-1, 1], what the pair should be.

    Returns:
        ``(images [K, 3, s, s] on the CPU, column labels)`` for ``labelled_grid(images, ncol=K, col_labels=...)``.

    Used in: notebooks/09_your_own_image.ipynb.
    """
    import torch.nn.functional as F

    s = result.reconstruction.shape[-1]
    pasted = result.result.detach().cpu().float()
    if pasted.shape[-1] != s:
        pasted = F.interpolate(pasted, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
    cols = {"photo": result.photo.image, "reconstruction": result.reconstruction, "pair": result.pair}
    if truth is not None:
        cols["truth"] = truth
    cols |= {"part (photo)": overlay(result.reconstruction, result.mask_photo),
             "part (pair)": overlay(result.pair, result.mask_pair), "DDS": result.dds, "result": pasted.clamp(-1, 1)}
    return torch.cat([x.detach().cpu().float().reshape(1, 3, s, s) for x in cols.values()]), list(cols)
