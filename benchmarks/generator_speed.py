"""Generator speed and memory: forward and forward+backward ms/image, peak memory.

Each configuration runs in a fresh subprocess so the CPU peak resident memory (ru_maxrss) belongs to
it alone; on CUDA the peak is torch.cuda.max_memory_allocated. Random weights (speed does not depend
on them).

    python benchmarks/generator_speed.py [--device cpu|cuda|auto] [--json PATH] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

CONFIGS = {
    # name: (Generator kwargs, batch sizes)
    "toy-64": (dict(size=64, style_dim=128, n_mlp=4, channel_max=64), [1, 8, 32]),
    "rosinality-256": (dict(size=256, style_dim=512, n_mlp=8, channel_multiplier=2), [1, 4]),
}


def _measure(name: str, batch: int, device: str, repeats: int, threads: int = 0) -> dict:
    import torch

    from ddsutils.core.stylegan2 import Generator

    kwargs, _ = CONFIGS[name]
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    G = Generator(**kwargs).to(dev)
    z = torch.randn(batch, kwargs["style_dim"], device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with torch.no_grad():
        G(z)  # warm-up
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    with torch.no_grad():
        for _ in range(repeats):
            G(z)
    sync()
    fwd = (time.perf_counter() - t) / repeats / batch * 1e3
    w = G.mapping(z).detach()[:, None].repeat(1, G.n_latent, 1).requires_grad_(True)
    G(w, input_space="w+").square().mean().backward()  # warm-up
    sync()
    t = time.perf_counter()
    for _ in range(repeats):
        G(w, input_space="w+").square().mean().backward()
    sync()
    fb = (time.perf_counter() - t) / repeats / batch * 1e3
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"config": name, "batch": batch, "device": str(dev), "fwd_ms_per_img": round(fwd, 2),
            "fwd_bwd_ms_per_img": round(fb, 2), "peak_mib": round(peak, 1),
            "peak_over_baseline_mib": round(peak - (0 if dev.type == "cuda" else base_rss), 1),
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--configs", nargs="*", default=list(CONFIGS))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._child:
        print(json.dumps(_measure(a._child[0], int(a._child[1]), a.device, a.repeats, a.threads)))
        return
    rows = []
    for name in a.configs:
        for batch in CONFIGS[name][1]:
            out = subprocess.run([sys.executable, __file__, "--device", a.device, "--repeats", str(a.repeats),
                                  "--threads", str(a.threads), "--_child", name, str(batch)],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    hdr = f"{'config':<16}{'batch':>6}{'device':>8}{'fwd ms/img':>12}{'fwd+bwd ms/img':>16}{'peak MiB':>10}{'+MiB':>8}"
    print(f"# generator_speed on {platform.machine()}, {os.cpu_count()} CPUs, torch threads {rows[0]['threads']}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(hdr)
    for r in rows:
        print(f"{r['config']:<16}{r['batch']:>6}{r['device']:>8}{r['fwd_ms_per_img']:>12}"
              f"{r['fwd_bwd_ms_per_img']:>16}{r['peak_mib']:>10}{r['peak_over_baseline_mib']:>8}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
