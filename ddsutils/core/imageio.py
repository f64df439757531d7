"""Images as files: tensor → uint8, grids, and byte-stable PNGs written atomically.

Images are ``[N, 3, H, W]`` float tensors in [-1, 1] (values outside are clamped); masks ``[N, 1, H, W]`` in
{0, 1} are saved as ``mask * 2 - 1``. PNGs carry no timestamp or software metadata, so the same tensor always
gives the same bytes.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from .files import atomic_write_bytes

__all__ = ["to_uint8", "image_grid", "save_png"]


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` (or ``[C, H, W]``) in [-1, 1] -> ``uint8`` ``[N, H, W, C]`` (or ``[H, W, C]``).

    One-channel inputs are repeated to RGB.
    """
    x = img.detach().float().cpu().clamp(-1, 1)
    x = ((x + 1) * 127.5).round().to(torch.uint8)
    if x.shape[-3] == 1:
        x = x.repeat_interleave(3, dim=-3)
    return x.movedim(-3, -1).numpy()


def image_grid(img: torch.Tensor, *, nrow: int = 8, pad: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile ``[N, C, H, W]`` images into one ``[C, H', W']`` image, ``nrow`` per row, with a ``pad``-pixel border
    of ``pad_value`` (``torchvision.utils.make_grid``; a single image is returned without a border)."""
    from torchvision.utils import make_grid

    return make_grid(img.detach().cpu(), nrow=nrow, padding=pad, pad_value=pad_value)


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
