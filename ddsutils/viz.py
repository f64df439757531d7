"""Images and figures: tensor -> uint8, grids, and byte-stable PNG files.

Images are ``[N, 3, H, W]`` float tensors in [-1, 1] (values outside are clamped); masks ``[N, 1, H, W]``
in {0, 1}. Files are written atomically (temp file + ``os.replace``) with no timestamp or software
metadata, so regenerating a figure from the same data gives the same bytes.

:func:`labelled_grid` and :func:`save_figure` make titled matplotlib figures of image grids and save them with
fixed PNG metadata (no ``Software`` entry; matplotlib writes no date into PNGs), so they are byte-stable too.

Used in: every notebook that shows or saves images; ``make demo``; ``notebooks/90_paper_figures.ipynb``.
"""
from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any
from pathlib import Path

import numpy as np
import torch

from .files import atomic_write_bytes

__all__ = ["to_uint8", "image_grid", "save_png", "labelled_grid", "save_figure", "mode_strips", "atomic_write_bytes"]


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` (or ``[C, H, W]``) in [-1, 1] -> ``uint8`` ``[N, H, W, C]`` (or ``[H, W, C]``).

    One-channel inputs are repeated to RGB; {0, 1} masks should be passed as ``mask * 2 - 1``.
    """
    x = img.detach().float().cpu().clamp(-1, 1)
    x = ((x + 1) * 127.5).round().to(torch.uint8)
    if x.shape[-3] == 1:
        x = x.repeat_interleave(3, dim=-3)
    return x.movedim(-3, -1).numpy()


def image_grid(img: torch.Tensor, *, nrow: int = 8, pad: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile ``[N, C, H, W]`` images (in [-1, 1]) into one ``[C, H', W']`` image, ``nrow`` per row."""
    n, c, h, w = img.shape
    ncol = min(nrow, n)
    nrows = (n + ncol - 1) // ncol
    out = torch.full((c, nrows * (h + pad) + pad, ncol * (w + pad) + pad), pad_value, dtype=img.dtype)
    for i in range(n):
        r, q = divmod(i, ncol)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = img[i].cpu()
    return out


def save_png(img: torch.Tensor, path: str | os.PathLike, *, nrow: int = 8, pad: int = 2, scale: int = 1) -> Path:
    """Save an image ``[C, H, W]`` or a batch ``[N, C, H, W]`` (tiled, ``nrow`` per row, white ``pad``) in
    [-1, 1] as a metadata-free PNG; ``scale`` > 1 upsamples the result (nearest neighbour)."""
    from PIL import Image

    if img.ndim == 4:
        img = image_grid(img, nrow=nrow, pad=pad)
    arr = to_uint8(img)
    if scale > 1:
        arr = arr.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False)
    return atomic_write_bytes(buf.getvalue(), path)


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

