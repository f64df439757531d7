"""Toy-world rendering speed: images/s for each style x size (identity sampling included).

Times ``render_batch`` (``sample_identities`` + ``render``) on the CPU with torch's default thread count
unless ``--threads`` is given. Each cell is the best of ``--repeats`` timed runs after one warm-up (the
best run is the least disturbed by other processes); the median and the CPU time per image are also
recorded. The 1-minute load average before the run is printed: a load above the core count means other
processes shared the CPU and the numbers are pessimistic.

    python benchmarks/toyworld_speed.py [--sizes 64 128 256] [--batch 64] [--repeats 5] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from ddsutils.toy import toyworld


def measure(style: str, size: int, batch: int, repeats: int) -> dict:
    """Time ``repeats`` renders of ``batch`` images; returns a result row."""
    toyworld.render_batch(batch, style=style, size=size, seed=0)  # warm-up
    walls, cpus = [], []
    for r in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        toyworld.render_batch(batch, style=style, size=size, seed=r + 1)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    best, med = min(walls), statistics.median(walls)
    return {
        "style": style,
        "size": size,
        "batch": batch,
        "img_per_s": round(batch / best, 1),
        "img_per_s_median": round(batch / med, 1),
        "cpu_ms_per_img": round(min(cpus) / batch * 1e3, 3),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[64, 128, 256])
    p.add_argument("--styles", nargs="*", default=list(toyworld.STYLES))
    p.add_argument("--batch", type=int, default=64, help="images per render call at 64 px (scaled down as size^2)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="write the rows (and machine info) to this JSON file")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    info = {
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "loadavg_1min_before": round(load, 2),
    }
    rows = []
    for size in a.sizes:
        batch = max(4, a.batch * 64 * 64 // (size * size))
        for style in a.styles:
            rows.append(measure(style, size, batch, a.repeats))
    print(
        f"# toyworld_speed on {info['machine']} ({info['cpu_count']} cpus), torch {info['torch']}, "
        f"threads {info['threads']}, load avg before {info['loadavg_1min_before']}"
    )
    print("# images/s, best of repeats (median in brackets); identity sampling included")
    print(f"{'style':<12}" + "".join(f"{f'{s} px':>20}" for s in a.sizes))
    for style in a.styles:
        cells = []
        for size in a.sizes:
            r = next(x for x in rows if x["style"] == style and x["size"] == size)
            cells.append(f"{r['img_per_s']:>10.1f} ({r['img_per_s_median']:.1f})".rjust(20))
        print(f"{style:<12}" + "".join(cells))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"info": info, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
