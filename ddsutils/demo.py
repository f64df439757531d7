"""``make demo`` — what works today, end to end, offline on a CPU.

Today (foundation stage) it: reports the environment and the weights manifest, builds a generator in the
public rosinality 256 px layout (random weights: no pretrained StyleGAN2 is reachable offline), shows a
paired sample (the same z through two generators), and renders the toy world when it is available. Later
stages replace it with the full DDS demo on the trained toy zoo.

    python -m ddsutils.demo --out runs/demo
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from . import viz
from .stylegan2 import Generator


def _weights_table() -> None:
    try:
        from . import weights
    except ImportError:
        return
    print("\nweights manifest (python -m ddsutils.weights list):")
    weights.main(["list"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ddsutils.demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = Path(a.out)
    print(f"torch {torch.__version__}  cuda available: {torch.cuda.is_available()}  "
          f"cpu threads: {torch.get_num_threads()}")
    _weights_table()

    torch.manual_seed(a.seed)
    G = Generator(256, 512, 8)
    n = sum(p.numel() for p in G.parameters())
    z = torch.randn(2, 512, generator=torch.Generator().manual_seed(a.seed))
    t = time.perf_counter()
    with torch.no_grad():
        img, feats = G(z, return_features=True)
    dt = time.perf_counter() - t
    print(f"\nrosinality-layout Generator(256, 512, 8): {n:,} parameters, {len(G.state_dict())} state_dict "
          f"entries; 2 images in {dt:.2f} s; {len(feats)} feature maps, {sum(f.shape[1] for f in feats)} channels")
    path = viz.save_png(img, out / "generator_random_256.png")
    print(f"  random-weight samples -> {path}")

    try:
        from . import toyworld
    except ImportError:
        print("\n(toy world not available yet)")
    else:
        ident = toyworld.sample_identities(8, seed=a.seed)
        rows = [toyworld.render(ident, style=s, size=64)[0] for s in toyworld.STYLES]
        path = viz.save_png(torch.cat(rows), out / "toyworld_renders.png", nrow=8)
        print(f"\ntoy world: 8 identities x {len(toyworld.STYLES)} styles {toyworld.STYLES} -> {path}")
    print(f"\ndone: look in {out}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
