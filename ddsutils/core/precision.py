"""How the optimisers' forward passes run: numeric precision (``"fp32"``, ``"bf16"``, ``"tf32"``) and compilation.

The latent and Adam's state stay float32 in every mode; only the generators' and backbones' forward (and so
backward) passes change: ``"bf16"`` runs them under :func:`torch.autocast` with bfloat16 (CPUs with AVX-512
BF16 / AMX, and CUDA), ``"tf32"`` lets CUDA matmuls and convolutions use TensorFloat-32 (Ampere and newer), and
``"fp32"`` turns TF32 off so that float32 means float32 on every device. :func:`compiled` wraps a step's forward
function in :func:`torch.compile` (Inductor: fused elementwise kernels; it needs a C++ compiler on CPU).
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import torch

from .errors import UserError

__all__ = ["PRECISIONS", "check_precision", "precision_context", "check_compile", "compiled"]

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


def check_compile(compile: Any, device: torch.device) -> bool:
    """``compile`` if it is a bool and :func:`torch.compile` can build kernels for ``device``; else a
    :class:`UserError` naming the fix (checked before any work: Inductor would fail only at the first step)."""
    if not isinstance(compile, bool):
        raise UserError("must be True or False", argument="compile", value=compile)
    if compile and device.type == "cpu":
        cxx = os.environ.get("CXX", "g++")
        if shutil.which(cxx) is None:
            raise UserError(f"torch.compile on CPU needs a C++ compiler and {cxx!r} was not found; install one "
                            "(e.g. apt install g++, or set CXX) or leave compile off", argument="compile",
                            value=compile)
    return compile


def compiled(fn: Callable[..., Any], compile: bool) -> Callable[..., Any]:
    """``fn`` itself, or ``torch.compile(fn)`` when ``compile``: the first calls trace and build kernels (tens of
    seconds on CPU at 64 px, minutes at 256 px); later calls with the same shapes reuse them."""
    if not compile:
        return fn
    import torch._dynamo

    # every optimise() call makes new closures over new modules: allow a recompilation for each instead of
    # falling back to eager after the default 8
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(fn, dynamic=False)
