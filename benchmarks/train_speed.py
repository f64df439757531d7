"""Seconds per training step of the toy StyleGAN2 (``ddsutils.train``) and of few-shot adaptation.

Each configuration trains for ``--iters`` steps in a temporary folder (the first ``--warmup`` steps are
not timed: allocator warm-up, first R1 and path-length steps); lazy R1 (every 16) and path-length (every
4) steps are included at their usual rate. Times depend on what else runs on the machine.

    python benchmarks/train_speed.py [--threads 1] [--iters 20] [--configs toy64-b16 toy64-wide-b16]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

TOY128 = {4: 128, 8: 128, 16: 96, 32: 64, 64: 32, 128: 16}
CONFIGS = {
    # name: train_gan keyword arguments
    "toy64-b16": dict(preset="toy64", batch=16),
    "toy64-b8": dict(preset="toy64", batch=8),
    "toy64-wide-b16": dict(preset="toy64-wide", batch=16),
    "cmax64-b16": dict(preset=None, size=64, style_dim=128, n_mlp=4, channel_max=64, batch=16),
    "cmax128-sd256-b8": dict(preset=None, size=64, style_dim=256, n_mlp=8, channel_max=128, batch=8),
    # a 128 px toy: toy64's widths plus a 16-channel 128 px stage (what a zoo with larger parts would cost)
    "toy128-b8": dict(preset=None, size=128, style_dim=128, n_mlp=4, channels=TOY128, batch=8),
    # few-shot adaptation (CDC + patch D) of a toy64 source, batch 4 as in few-shot-gan-adaptation
    "adapt-toy64-b4": dict(adapt=True, preset="toy64", batch=4),
    "adapt-toy128-b4": dict(adapt=True, preset=None, size=128, style_dim=128, n_mlp=4, channels=TOY128, batch=4),
}


def _time_adapt(kw: dict, iters: int, warmup: int) -> float:
    from ddsutils.toy.fewshot import adapt
    from ddsutils.toy.train import train_gan

    common = dict(sample_every=10**9, ckpt_every=10**9, n_sample=4, progress=False, device="cpu")
    with tempfile.TemporaryDirectory() as d:
        arch = {k: v for k, v in kw.items() if k not in ("adapt", "batch")}
        src = train_gan(out_dir=f"{d}/src", iters=1, **arch, **common)
        adapt(src, target_style="sketch", out_dir=f"{d}/a", iters=warmup, batch=kw["batch"], **common)
        t = time.perf_counter()
        adapt(src, target_style="sketch", out_dir=f"{d}/a", iters=iters, batch=kw["batch"], **common)
        return (time.perf_counter() - t) / (iters - warmup)


def _time_train(kw: dict, iters: int, warmup: int) -> float:
    from ddsutils.toy.train import train_gan

    if kw.get("adapt"):
        return _time_adapt(kw, iters, warmup)
    with tempfile.TemporaryDirectory() as d:
        train_gan(out_dir=d, iters=warmup, sample_every=10**9, ckpt_every=10**9, n_sample=4, progress=False,
                  device="cpu", **kw)
        t = time.perf_counter()
        train_gan(out_dir=d, iters=iters, sample_every=10**9, ckpt_every=10**9, n_sample=4, progress=False,
                  device="cpu", **kw)
        return (time.perf_counter() - t) / (iters - warmup)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--configs", nargs="*", default=list(CONFIGS))
    p.add_argument("--json", default=None)
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    rows = []
    for name in a.configs:
        s = _time_train(CONFIGS[name], a.iters, a.warmup)
        rows.append({"config": name, "threads": a.threads, "sec_per_iter": round(s, 3)})
        print(f"{name:20s} threads {a.threads}  {s:6.3f} s/iter", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
