"""One-shot segmenter cost on CPU: training time (toy 64 px generator) and prediction peak memory (256 px).

1. ``train_segmenter`` (FewShotCNN-S, the DDS recipe: 100 steps, one labelled image, plus ddsutils'
   defaults: standardised features, ``class_balance=0.5``, and at this size the materialised first layer,
   ``materialise=None``) on a toy-sized generator ``Generator(64, 128, 4, channel_max=64)`` (576 feature
   channels), random weights. ``--train-factorised`` times the factorised first layer instead.
2. ``predict_masks`` with a rosinality-shaped ``Generator(256, 512, 8)`` (5,376 feature channels) and a
   random FewShotCNN-S, batch 1 and 4: peak resident memory (``ru_maxrss``) of a fresh subprocess per
   configuration, next to the RSS after building the models, the generator forward alone (features
   kept), and the materialised reference path (the 1.31 GiB-per-image stack).

    python benchmarks/segmenter_speed.py [--threads N] [--steps 100] [--skip-materialised] [--train-factorised]
        [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child(mode: str, batch: int, threads: int, steps: int) -> dict:
    import torch

    from ddsutils.core import segmenter as S
    from ddsutils.core.stylegan2 import Generator

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    if mode in ("train", "train_factorised"):
        G = Generator(64, 128, 4, channel_max=64).eval()
        z = torch.randn(1, 128)
        yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
        label = (((yy - 24) ** 2 + (xx - 36) ** 2) < 200).long()[None]
        mat = None if mode == "train" else False
        S.train_segmenter(G, z, label, steps=2, progress=False, materialise=mat)  # warm-up (lazy imports, oneDNN)
        t = time.perf_counter()
        seg = S.train_segmenter(G, z, label, steps=steps, progress=False, materialise=mat)
        dt = time.perf_counter() - t
        iou = float(S.mask_iou(S.predict_masks(seg, G, z), label[:, None].float())[0])
        return {"seconds": dt, "ms_per_step": 1000 * dt / steps, "train_iou": iou,
                "feature_channels": sum(S.feature_channels(G)), "peak_rss_mb": _rss_mb()}
    G = Generator(256, 512, 8).eval().requires_grad_(False)
    seg = S.Segmenter(net=S.FewShotCNN(sum(S.feature_channels(G)), 2, "S").eval(), generator_config=G.config,
                      signature=S.architecture_signature(G), classes=("background", "part"), part="part",
                      resolution=256)
    z = torch.randn(batch, 512)
    base = _rss_mb()
    t = time.perf_counter()
    with torch.no_grad():
        if mode == "generator":
            G(z, return_features=True)
        else:
            S.predict_masks(seg, G, z, batch_size=batch, materialise=(mode == "materialised"))
    dt = time.perf_counter() - t
    return {"seconds": dt, "s_per_image": dt / batch, "rss_models_mb": base, "peak_rss_mb": _rss_mb()}


def _run(mode: str, batch: int, threads: int, steps: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--batch", str(batch), "--threads", str(threads),
                          "--steps", str(steps)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="torch threads in the children (0: torch default)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--skip-materialised", action="store_true", help="skip the 1.31 GiB/image reference path")
    p.add_argument("--json", default=None)
    p.add_argument("--train-factorised", action="store_true", help="time training with the factorised first layer")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child, a.batch, a.threads, a.steps)))
        return 0
    import torch

    threads = a.threads or torch.get_num_threads()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {threads} thread(s)")
    res: dict = {"threads": threads}
    r = _run("train_factorised" if a.train_factorised else "train", 1, a.threads, a.steps)
    res["train"] = r
    print(f"\ntraining FewShotCNN-S, 64 px toy generator ({r['feature_channels']} feature channels), {a.steps} steps:"
          f" {r['seconds']:.1f} s ({r['ms_per_step']:.0f} ms/step), IoU on the labelled image {r['train_iou']:.3f},"
          f" peak RSS {r['peak_rss_mb']:.0f} MB")
    print("\nprediction at 256 px, Generator(256, 512, 8) + FewShotCNN-S (random weights), CPU, float32")
    print(f"{'path':<30}{'batch':>6}{'s/image':>10}{'RSS models MB':>15}{'peak RSS MB':>13}{'extra MB':>10}")
    rows = [("generator", 1), ("generator", 4), ("factorised", 1), ("factorised", 4)]
    if not a.skip_materialised:
        rows.append(("materialised", 1))
    res["predict"] = []
    for mode, b in rows:
        r = _run(mode, b, a.threads, a.steps)
        r.update(path=mode, batch=b)
        res["predict"].append(r)
        label = {"generator": "generator forward only", "factorised": "predict_masks (default)",
                 "materialised": "predict_masks(materialise=True)"}[mode]
        print(f"{label:<30}{b:>6}{r['s_per_image']:>10.2f}{r['rss_models_mb']:>15.0f}{r['peak_rss_mb']:>13.0f}"
              f"{r['peak_rss_mb'] - r['rss_models_mb']:>10.0f}")
    if a.json:
        from pathlib import Path

        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
