"""The effect of ``precision`` / ``compile`` on DDS results (docs/speed.md#precision-and-compile).

Two parts:

- ``table``: ``dds evaluate`` JSON files of the same cells, the first one the reference (fp32): per cell and DDS
  mode, the judges' in-mask source style and outside target style of each file, their difference to the
  reference and the largest ``|Δ|``; also the DDS seconds of each file.
- ``lpips``: one cell (``--pair``, ``--mask``, ``--n`` latents, ``--steps``) optimised at each setting from the same
  inputs; prints the mean LPIPS-alex of each setting's images to the fp32 images, next to the mean LPIPS of the
  fp32 images to ``x_t`` (how far the optimisation moves the image: the scale to read the first against).

    python docs/scripts/precision_check.py table runs/prec/paper_fp32.json runs/prec/paper_bf16.json ...
    python docs/scripts/precision_check.py lpips --mode paper --settings fp32 bf16 bf16+compile
"""
from __future__ import annotations

import argparse
import json
import time


def _cells(path: str) -> dict[tuple[str, str, str], dict]:
    return {(f"{r['source']} → {r['target']}", r["mask"], r["method"]): r
            for r in json.load(open(path))["rows"] if r["method"].startswith("dds-")}


def table(paths: list[str]) -> None:
    ref, others = _cells(paths[0]), [_cells(p) for p in paths[1:]]
    names = [p.rsplit("/", 1)[-1].removesuffix(".json") for p in paths]
    head = " | ".join(f"{n} in / out" for n in names)
    print(f"| cell | mask | method | {head} | " + " | ".join(f"Δ {n} in / out" for n in names[1:]) + " |")
    print("|---|---|---|" + "---:|" * (2 * len(paths) - 1))
    worst = [0.0] * len(others)
    for key, r in ref.items():
        vals = [r] + [o[key] for o in others]
        cols = " | ".join(f"{v['inside_source']:.3f} / {v['outside_target']:.3f}" for v in vals)
        deltas = []
        for i, v in enumerate(vals[1:]):
            d_in, d_out = v["inside_source"] - r["inside_source"], v["outside_target"] - r["outside_target"]
            worst[i] = max(worst[i], abs(d_in), abs(d_out))
            deltas.append(f"{d_in:+.3f} / {d_out:+.3f}")
        print(f"| {key[0]} | {key[1]} | {key[2]} | {cols} | " + " | ".join(deltas) + " |")
    for n, w in zip(names[1:], worst):
        print(f"largest |Δ| of {n} vs {names[0]}: {w:.3f}")
    for n, cells in zip(names, [ref, *others]):
        print(f"DDS seconds in {n}: {sum(v['seconds'] for v in cells.values()):.0f}")


def lpips_check(*, mode: str, settings: list[str], pair: str, mask: str, n: int, steps: int, seed: int) -> None:
    import torch

    from ddsutils.core import dds, metrics
    from ddsutils.core.stylegan2 import load_generator
    from ddsutils.toy.scoring import oracle_pair

    torch.set_num_threads(1)
    src, tgt = pair.split(":")
    G_s, G_t = load_generator(f"toy-{src}-64"), load_generator(f"toy-{tgt}-64")
    z = torch.randn(n, G_s.style_dim, generator=torch.Generator().manual_seed(seed))
    inp = oracle_pair(G_s, G_t, z, mask)
    images = {}
    for setting in settings:
        precision, _, comp = setting.partition("+")
        t = time.perf_counter()
        r = dds.optimise(G_s, G_t, z_star=z, x_s=inp["x_s"], x_t=inp["x_t"], y_s=inp["y_s"], y_t=inp["y_t"],
                         mode=mode, num_steps=steps, seed=seed, snapshot_every=None, device="cpu", progress=True,
                         precision=precision, compile=comp == "compile")
        images[setting] = r.image
        print(f"{setting}: {time.perf_counter() - t:.0f} s for {n} images x {steps} steps", flush=True)
    lp = metrics.lpips_distance
    with torch.no_grad():
        ref = images[settings[0]]
        print(f"LPIPS-alex, {settings[0]} image to x_t: {lp(ref, inp['x_t']).mean():.4f}")
        for setting in settings[1:]:
            d = lp(images[setting], ref)
            print(f"LPIPS-alex, {setting} to {settings[0]}: mean {d.mean():.4f}, max {d.max():.4f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table")
    t.add_argument("json", nargs="+")
    q = sub.add_parser("lpips")
    q.add_argument("--mode", default="paper")
    q.add_argument("--settings", nargs="+", default=["fp32", "bf16", "bf16+compile"])
    q.add_argument("--pair", default="caricature:natural")
    q.add_argument("--mask", default="eyes_nose_mouth")
    q.add_argument("--n", type=int, default=8)
    q.add_argument("--steps", type=int, default=200)
    q.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.cmd == "table":
        table(a.json)
    else:
        lpips_check(mode=a.mode, settings=a.settings, pair=a.pair, mask=a.mask, n=a.n, steps=a.steps, seed=a.seed)


if __name__ == "__main__":
    main()
