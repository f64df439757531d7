"""Several processes, one result: the latents of a DDS run sharded over ``torchrun`` processes (CPUs or GPUs).

``torchrun --nproc_per_node=N -m ddsutils.dds -- evaluate ...`` (or ``run``, or ``-m ddsutils.experiments --
table1``) starts N copies of a command; each reads its place from torchrun's environment
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) with :func:`init`, optimises its contiguous block of the latents
(:func:`shard`) with the per-sample seeds those latents have in one process, and the blocks are gathered back in
order (:func:`gather`), so every process ends up with the result of the whole batch. Only rank 0 prints tables,
shows progress bars and writes files (:func:`is_main`).

:func:`optimise` is :func:`ddsutils.core.dds.optimise` sharded this way. Its samples are independent (sample
``i`` starts from seed ``seeds[i]`` and its loss is its own), so a sharded run equals the single-process run up to
float summation order: the generators' batched convolutions and matmuls may sum in another order for another
batch size, and Adam (whose first steps move every coordinate by about ``lr`` whatever the gradient's size) lets
such differences grow. Measured on the toy zoo (CPU, one thread, ``docs/speed.md``): bit-identical for tiny
generators; 2e-7 on ``dds evaluate``'s scores after 2 steps; after 100 paper-mode steps images differ by up to
0.17 (mean 0.006), about what one process with 2 threads instead of 1 differs by (0.14, mean 0.003). Release mode
shares one set of noise maps over the batch, seeded by the first sample's seed; every other process therefore runs
the batch's first latent in front of its own block and drops it (one extra sample per process).

A single process (no torchrun, ``WORLD_SIZE`` unset or 1) is the trivial case: :func:`init` resolves the device
and touches nothing else, :func:`gather` returns ``[obj]``, :func:`optimise` calls ``dds.optimise`` as is.

    torchrun --nproc_per_node=2 -m ddsutils.dds -- evaluate --n 32 --steps 200 --json runs/eval.json

(the ``--`` ends torchrun's own options, which would otherwise take ``--n`` for an abbreviation of theirs).

Backends: gloo for CPU (and MPS) processes, nccl for CUDA ones (each process on ``cuda:LOCAL_RANK``).
"""
from __future__ import annotations

import atexit
import dataclasses
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from . import cli
from .errors import UserError

__all__ = ["DistContext", "SINGLE", "init", "shard", "gather", "broadcast", "on_main", "is_main", "barrier",
           "cleanup", "optimise"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process stands among the processes of one command.

    Attributes:
        rank: this process's index, 0 … ``world_size - 1`` (rank 0 prints and writes).
        world_size: the number of processes (1: no torch.distributed at all).
        local_rank: the index on this machine (picks the GPU).
        device: where this process computes (``cuda:LOCAL_RANK`` for CUDA under torchrun).
        backend: ``"gloo"``, ``"nccl"``, or ``None`` for a single process.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


#: One process on the CPU: what the library functions use when they are given no context.
SINGLE = DistContext()
_created: list[bool] = []  # [True] once init() made the process group (cleanup() then destroys it)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise UserError("must be a whole number (torchrun sets it)", argument=name, value=text) from None


def init(device: Any = "auto", *, argument: str | None = "--device") -> DistContext:
    """This process's :class:`DistContext`, from torchrun's environment; the process group when there are several.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` (``"cuda:N"`` only for one process), or a ``torch.device``.
        argument: the argument ``device`` came from (named in errors).

    Returns:
        ``DistContext(rank, world_size, local_rank, device, backend)``. With ``WORLD_SIZE`` unset or 1: rank 0,
        ``cli.device(device)``, no backend, and torch.distributed is not touched. Otherwise the default process
        group is initialised (gloo for CPU / MPS, nccl for CUDA, ``env://`` rendezvous) unless it already is,
        and a CUDA process computes on ``cuda:LOCAL_RANK``; the group is destroyed at exit (or by
        :func:`cleanup`).

    Raises:
        UserError: ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` not whole numbers or out of range, torch built
            without torch.distributed, an explicit ``cuda:N`` under several processes, or fewer GPUs than
            processes on this machine; a bad ``device`` (:func:`ddsutils.core.cli.device`).
    """
    import torch.distributed as dist

    # 1. one process: the device only, no torch.distributed
    world_size = _env_int("WORLD_SIZE", 1)
    dev = cli.device(device, argument)
    if world_size <= 1 and not (dist.is_available() and dist.is_initialized()):
        if world_size < 1:
            raise UserError("must be >= 1 (torchrun sets it)", argument="WORLD_SIZE", value=world_size)
        return DistContext(device=dev)
    # 2. several processes: their ranks from torchrun's environment
    if not dist.is_available():
        raise UserError("is above 1 but this torch has no torch.distributed; run one process", argument="WORLD_SIZE",
                        value=world_size)
    rank, local_rank = _env_int("RANK", -1), _env_int("LOCAL_RANK", 0)
    if dist.is_initialized():  # a caller's own process group
        rank, world_size = dist.get_rank(), dist.get_world_size()
    if not 0 <= rank < world_size:
        raise UserError(f"must be in 0 … {world_size - 1} (WORLD_SIZE {world_size}); start the command with "
                        "torchrun --nproc_per_node=N", argument="RANK", value=os.environ.get("RANK"))
    # 3. the device: each CUDA process on the GPU of its local rank
    if dev.type == "cuda":
        if dev.index is not None:
            raise UserError("under torchrun every process takes the GPU of its LOCAL_RANK; pass cuda or auto (and "
                            "choose the GPUs with CUDA_VISIBLE_DEVICES)", argument=argument, value=device)
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"this machine has {torch.cuda.device_count()} GPU(s) for {local_rank + 1}+ processes; "
                            "start at most one process per GPU (torchrun --nproc_per_node)", argument="LOCAL_RANK",
                            value=local_rank)
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    # 4. the process group (torchrun's MASTER_ADDR / MASTER_PORT rendezvous), destroyed at exit
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
        _created.append(True)
        atexit.register(cleanup)
    else:
        backend = dist.get_backend()
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev, backend=backend)


def shard(n: int, ctx: DistContext) -> slice:
    """This process's contiguous block of ``n`` items: ranks in order cover ``0 … n - 1`` once each.

    The first ``n % world_size`` ranks take one item more, so concatenating the blocks in rank order (what
    :func:`gather` returns) restores the order. A rank beyond ``n`` gets an empty slice.

    Args:
        n: the number of items (latents). ctx: :func:`init`'s context.

    Returns:
        ``slice(start, stop)``; ``slice(0, n)`` for one process.
    """
    base, extra = divmod(int(n), ctx.world_size)
    start = ctx.rank * base + min(ctx.rank, extra)
    return slice(start, start + base + (ctx.rank < extra))


def gather(obj: T, ctx: DistContext, *, dst: int | None = None) -> list[T] | None:
    """Every process's ``obj`` (any picklable object: tensors, dicts, results), in rank order.

    Args:
        obj: this process's part. ctx: :func:`init`'s context.
        dst: ``None``: every process gets the list (``all_gather_object``); a rank: only it does (``gather_object``),
            the others get ``None``.

    Returns:
        ``[obj_rank0, obj_rank1, ...]`` (``[obj]`` for one process), or ``None`` on a rank other than ``dst``.
    """
    import torch.distributed as dist

    if ctx.world_size == 1:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    if dst is None:
        dist.all_gather_object(out, obj)
        return out
    dist.gather_object(obj, out if ctx.rank == dst else None, dst=dst)
    return out if ctx.rank == dst else None


def broadcast(obj: T, ctx: DistContext, *, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every process (the others' ``obj`` is ignored); ``obj`` itself for one process."""
    import torch.distributed as dist

    if ctx.world_size == 1:
        return obj
    box = [obj if ctx.rank == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def on_main(fn: Callable[[], T], ctx: DistContext) -> T:
    """``fn()`` computed on rank 0 only and sent to every process: one answer for work that must not differ
    between processes (a segmenter trained for the masks, a cache read)."""
    return broadcast(fn() if ctx.is_main else None, ctx)


def is_main(ctx: DistContext) -> bool:
    """True on rank 0 (the process that prints, shows progress bars and writes)."""
    return ctx.rank == 0


def barrier(ctx: DistContext) -> None:
    """Wait until every process gets here (nothing for one process)."""
    import torch.distributed as dist

    if ctx.world_size > 1:
        dist.barrier()


def cleanup(ctx: DistContext | None = None) -> None:
    """Destroy the process group :func:`init` made (idempotent; also run at exit). A group the caller made is
    left alone."""
    import torch.distributed as dist

    if _created and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _created.clear()


# ----------------------------------------------------------------------------------------------------
# DDS sharded over the processes


#: DDSResult's per-sample tensors (batch first).
_PER_SAMPLE = ("image", "image_source", "latent", "x_s", "x_t", "y_s", "y_t", "x_c")
#: The degenerate-mask warnings of dds.optimise: warned once for the whole batch, not per block.
_MASK_WARNINGS = r"y_s is empty for samples|y_t covers the whole image for samples"


def _select(r: Any, idx: slice) -> Any:
    """The samples ``idx`` of a DDSResult (its config and timings unchanged)."""
    d = {k: (None if getattr(r, k) is None else getattr(r, k)[idx]) for k in _PER_SAMPLE}
    return dataclasses.replace(r, **d, history={k: v[:, idx] for k, v in r.history.items()},
                               snapshots=[(s, img[idx]) for s, img in r.snapshots])


def _concat(parts: Sequence[Any], seeds: list[int]) -> Any:
    """One DDSResult from the blocks, in order: per-sample tensors along the batch, histories along samples,
    rank 0's config with the batch's seeds and size, timings from the slowest block."""
    first = parts[0]
    d = {k: (None if getattr(first, k) is None else torch.cat([getattr(p, k) for p in parts])) for k in _PER_SAMPLE}
    history = {k: torch.cat([p.history[k] for p in parts], dim=1) for k in first.history}
    snapshots = [(s, torch.cat([p.snapshots[i][1] for p in parts])) for i, (s, _) in enumerate(first.snapshots)]
    n, steps = len(seeds), max(int(first.config.get("num_steps") or 0), 1)
    elapsed = max(p.timings["total_s"] for p in parts)
    timings = {"total_s": elapsed, "per_step_s": elapsed / steps, "per_image_s": elapsed / n,
               "per_image_iter_s": elapsed / (n * steps)}
    config = {**first.config, "seeds": list(seeds), "n": n}
    return dataclasses.replace(first, **d, history=history, snapshots=snapshots, config=config, timings=timings)


def optimise(G_s: Any, G_t: Any, ctx: DistContext, *, z_star: Any = None, x_s: Any = None, x_t: Any = None,
             y_s: Any = None, y_t: Any = None, seed: int | Sequence[int] = 0, progress: bool = True,
             **settings: Any) -> Any:
    """:func:`ddsutils.core.dds.optimise` with the batch sharded over ``ctx``'s processes; the whole result on
    every process.

    Each process optimises its block (:func:`shard`) of ``z_star`` / ``x_s`` / ``x_t`` / ``y_s`` / ``y_t``
    (``[N, ...]`` each, those given) with the seeds those samples have in one process (``seed + i``, or
    ``seed[i]``); the blocks are gathered in order into one :class:`~ddsutils.core.dds.DDSResult` whose config
    lists every seed and ``n = N`` and whose timings are the slowest block's. Every process must call it with
    the same arguments (collective). ``callback`` sees this process's block.

    Args:
        G_s, G_t: the generators (on ``ctx.device``). ctx: :func:`init`'s context.
        z_star, x_s, x_t, y_s, y_t, seed: as :func:`ddsutils.core.dds.optimise`; batch ``N`` each.
        progress: the progress bar, on rank 0 only.
        **settings: any other keyword of :func:`ddsutils.core.dds.optimise` (``mode``, ``num_steps``,
            ``device``, ...).

    Returns:
        :class:`~ddsutils.core.dds.DDSResult` of all ``N`` samples.

    Raises:
        UserError: inputs of different batch sizes or a wrong number of seeds (before any work), and whatever
            :func:`ddsutils.core.dds.optimise` raises.
    """
    from . import dds

    data = {"z_star": z_star, "x_s": x_s, "x_t": x_t, "y_s": y_s, "y_t": y_t}
    given = {k: v for k, v in data.items() if v is not None}
    # 1. one process (or nothing to shard): dds.optimise as is
    if ctx.world_size == 1 or not given:
        return dds.optimise(G_s, G_t, seed=seed, progress=progress, **data, **settings)
    # 2. one batch size over the inputs, one seed per sample, checked before any work
    first = next(iter(given))
    n = len(given[first])
    for k, v in given.items():
        if len(v) != n:
            raise UserError(f"has batch {len(v)} but {first} has {n}; give one item per sample", argument=k)
    seeds = dds._per_sample_seeds(seed, n)
    # 3. this process's block; release mode's shared noise maps come from the batch's first seed, so a block
    #    that does not start there runs the first sample in front (and drops it)
    block = shard(n, ctx)
    lead = settings.get("mode", "paper") == "release" and block.start > 0 and block.stop > block.start
    idx = ([0] if lead else []) + list(range(block.start, block.stop))
    if ctx.is_main and y_s is not None and y_t is not None:
        dds._warn_degenerate_masks(_float_masks(y_s), _float_masks(y_t))  # sample numbers of the whole batch
    part = None
    if idx:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_MASK_WARNINGS)
            part = dds.optimise(G_s, G_t, seed=[seeds[i] for i in idx], progress=progress and ctx.is_main,
                                **{k: _rows(v, idx) for k, v in given.items()}, **settings)
        if lead:
            part = _select(part, slice(1, None))
    # 4. the blocks in rank order (every process), as one result of the whole batch
    parts = [p for p in gather(part, ctx) if p is not None]
    return _concat(parts, seeds)


def _rows(x: Any, idx: list[int]) -> Any:
    """Rows ``idx`` of a tensor or numpy array (a contiguous block as a view)."""
    if idx == list(range(idx[0], idx[-1] + 1)):
        return x[idx[0]:idx[-1] + 1]
    return x[torch.as_tensor(idx)] if isinstance(x, torch.Tensor) else x[idx]


def _float_masks(y: Any) -> torch.Tensor:
    """A mask batch as a float ``[N, 1, H, W]`` tensor, for the degenerate-mask warning only."""
    y = torch.as_tensor(y).float()
    return y[:, None] if y.ndim == 3 else y
