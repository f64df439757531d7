"""Numeric precision of the optimisers' forward passes: ``"fp32"``, ``"bf16"`` (autocast) or ``"tf32"`` (CUDA).

The latent and Adam's state stay float32 in every mode; only the generators' and backbones' forward (and so
backward) passes change: ``"bf16"`` runs them under :func:`torch.autocast` with bfloat16 (CPUs with AVX-512
BF16 / AMX, and CUDA), ``"tf32"`` lets CUDA matmuls and convolutions use TensorFloat-32 (Ampere and newer), and
``"fp32"`` turns TF32 off so that float32 means float32 on every device.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from .errors import UserError

__all__ = ["PRECISIONS", "check_precision", "precision_context"]

#: The precisions the optimisers accept.
PRECISIONS = ("fp32", "bf16", "tf32")


def check_precision(precision: Any, device: torch.device) -> str:
    """``precision`` if valid on ``device``; else a :class:`UserError` naming the fix."""
    if precision not in PRECISIONS:
        raise UserError(f"must be one of {', '.join(PRECISIONS)}", argument="precision", value=precision)
    if precision == "tf32" and device.type != "cuda":
        raise UserError(f"TF32 is a CUDA math mode; on {device.type} use 'fp32' or 'bf16'", argument="precision",
                        value=precision)
    return precision


@contextlib.contextmanager
def precision_context(precision: str, device: torch.device) -> Iterator[None]:
    """Run the enclosed forward passes at ``precision`` on ``device`` (TF32 flags restored on exit)."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
        return
    if device.type != "cuda":
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
