"""DDS speed and memory per mode: seconds per image-iteration, per image for a full run, peak memory, vs batch.

Generators: the toy 64 px shape (the committed zoo when present, else random weights of the same shape) and
rosinality-shaped 256 px generators with random weights (speed does not depend on the weights). Backbone:
VGG-16 with ImageNet weights when cached, else random weights of the same shape. Each row runs in its own
subprocess (CPU peak = ru_maxrss of that process; CUDA peak = max_memory_allocated). ``--steps`` iterations
are timed after one warm-up step; "s/image (full run)" extrapolates to ``--full-steps`` iterations. Blend mode
has no iterations: its row times one blended synthesis of the batch ("s/img full" is then seconds per image).
Refine mode uses its default LPIPS-alex (AlexNet weights from the cache).

    python benchmarks/dds_speed.py [--device cpu|cuda|auto] [--json PATH] [--configs toy-64 rosinality-256]
        [--modes reference paper release blend refine] [--precisions fp32 bf16 tf32] [--batches 1 8] [--compile]

``--compile`` adds a row with ``compile=True`` (:func:`torch.compile` of each step's forward pass) after each
eager row of the paper / release / refine modes; its warm-up step (the compilation) is reported as "warm-up s".

With ``reference`` among the modes, each row also prints its time per image-iteration ÷ the reference loop's
(same config and batch, measured in the same run).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CONFIGS = {
    "toy-64": (dict(size=64, style_dim=128, n_mlp=4, channel_max=64), [8, 1]),
    "rosinality-256": (dict(size=256, style_dim=512, n_mlp=8, channel_multiplier=2), [1, 2]),
}


def _generators(name: str):
    import torch

    from ddsutils.core import weights
    from ddsutils.core.stylegan2 import Generator, load_generator

    if name == "toy-64" and weights.is_known("toy-natural-64"):
        try:
            return load_generator("toy-natural-64"), load_generator("toy-caricature-64"), "trained"
        except Exception:  # noqa: BLE001 - fall back to the same shape with random weights
            pass
    kw = CONFIGS[name][0]
    torch.manual_seed(0)
    G_s = Generator(**kw)
    torch.manual_seed(1)
    return G_s, Generator(**kw), "random"


def _reference_loop(G, z, y, *, steps: int, bw: str, dev):
    """The cost shape of the released ``DDS_main.py`` loop D1, re-implemented from its description (not run for
    results): one generator on w+, fresh noise maps that require grad (so backward also computes their
    gradients), masks as float64 (the release builds them with ToTensor from float64 arrays, which promotes the
    masked features to float64), and ``caluclate_loss`` called twice per step, each call running VGG-16 on the
    synthesis *and* on its reference image. Returns the loop's wall time."""
    import torch
    import torch.nn.functional as F

    from ddsutils.core.backbones import build_backbone

    vgg = build_backbone("vgg16", layers="release", weights=bw, normalize="none").to(dev)
    with torch.no_grad():
        x1 = G(z.to(dev), noise="const").clamp(-1, 1)
        x2 = x1.flip(-1)
        latent = G.mean_latent(1000).to(dev)[:, None].repeat(z.shape[0], G.n_latent, 1)
    y1 = y.to(dev).double()
    xc = x1 * (1 - y1) + x2 * y1
    latent.requires_grad_(True)
    noises = [t.to(dev).requires_grad_(True) for t in G.make_noise(1, seed=0)]
    opt = torch.optim.Adam([latent], lr=0.01)

    def caluclate_loss(synth, ref, mask):  # VGG on both images, every call
        loss, m = 0.0, mask
        for f, r in zip(vgg(synth).values(), vgg(ref).values()):
            m = F.interpolate(m, size=f.shape[-2:], mode="bilinear", align_corners=False)
            loss = loss + F.mse_loss(f * m, r * m)
        return loss

    t = time.perf_counter()
    for _ in range(steps):
        img = G(latent, input_space="w+", noise=noises)
        loss = 2 * (caluclate_loss(img, x1, 1 - y1) + caluclate_loss(img, x2, y1)) \
            + F.mse_loss(img * (1 - y1), x1 * (1 - y1)) + F.mse_loss(img * y1, x2 * y1) + 3 * F.mse_loss(img, xc)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for nz in noises:
                nz.sub_(nz.mean()).div_(nz.std())
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def _measure(name: str, batch: int, mode: str, device: str, steps: int, full_steps: int,
             precision: str = "fp32", compile: bool = False) -> dict:
    import torch

    from ddsutils.core import dds, weights

    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    G_s, G_t, kind = _generators(name)
    size = G_s.size
    bw = "imagenet"
    try:
        weights.resolve("vgg16-imagenet", fetch=False)
    except weights.WeightsError:
        bw = "random"
    z = torch.randn(batch, G_s.style_dim, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(batch, 1, size, size)
    y[:, :, size // 4: size // 2, size // 4: 3 * size // 4] = 1
    if mode == "reference":
        G_t = G_t.to(dev).requires_grad_(False)
        _reference_loop(G_t, z, y, steps=1, bw=bw, dev=dev)  # warm-up
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        wall = _reference_loop(G_t, z, y, steps=steps, bw=bw, dev=dev)
        per_iter, precision, warm = wall / (steps * batch), "fp32", None
        per_image = per_iter * full_steps
    else:
        common = dict(z_star=z, y_s=y, y_t=y, mode=mode, backbone_weights=bw, snapshot_every=None, device=dev,
                      progress=False, n_mean_latent=1000, precision=precision, compile=compile)
        t = time.perf_counter()
        dds.optimise(G_s, G_t, num_steps=1, **common)  # warm-up (backbone / weights load, compilation)
        warm = time.perf_counter() - t
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        r = dds.optimise(G_s, G_t, num_steps=steps, **common)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t
        per_iter = r.timings["per_image_iter_s"]
        per_image = r.timings["per_image_s"] if mode == "blend" else per_iter * full_steps
    peak = (torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {"config": name, "weights": kind, "backbone_weights": bw, "mode": mode, "precision": precision,
            "compile": compile, "warmup_s": None if warm is None else round(warm, 1), "batch": batch,
            "device": str(dev), "steps_timed": steps, "wall_s": round(wall, 2),
            "s_per_image_iter": None if mode == "blend" else round(per_iter, 4),
            "s_per_image_full_run": round(per_image, 4 if mode == "blend" else 1),
            "full_steps": 0 if mode == "blend" else full_steps, "peak_mib": round(peak, 1),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--json", default=None)
    p.add_argument("--configs", nargs="*", default=list(CONFIGS))
    p.add_argument("--modes", nargs="*", default=["paper", "release", "blend", "refine"],
                   help="DDS modes, and 'reference': the released DDS_main.py loop's cost shape (for the ratios)")
    p.add_argument("--precisions", nargs="*", default=["fp32"], help="fp32 bf16 tf32 (modes other than reference)")
    p.add_argument("--batches", nargs="*", type=int, default=None, help="default: 8 1 at 64 px, 1 2 at 256 px")
    p.add_argument("--steps", type=int, default=None, help="timed iterations (default 20 at 64 px, 2 at 256 px on CPU)")
    p.add_argument("--full-steps", type=int, default=None, help="iterations of a full run (default 200 / 1000)")
    p.add_argument("--compile", action="store_true", help="also rows with torch.compile (paper / release / refine)")
    p.add_argument("--_child", nargs=5, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._child:
        name, batch, mode, precision, comp = a._child
        big = name != "toy-64"
        steps = a.steps or (2 if big else 20)
        full = a.full_steps or (1000 if big else 200)
        print(json.dumps(_measure(name, int(batch), mode, a.device, steps, full, precision, comp == "1")))
        return
    print(f"{'config':<15}{'weights':>8}{'mode':>10}{'prec':>6}{'compile':>8}{'batch':>6}{'device':>7}"
          f"{'s/img-iter':>12}{'s/img full':>12}{'':>10}{'warm-up s':>10}{'peak MiB':>10}{'÷ reference':>13}")
    rows = []
    for name in a.configs:
        for batch in a.batches or CONFIGS[name][1]:
            reference = None  # the reference loop's row of this config and batch, when measured (run it first)
            for mode in sorted(a.modes, key=lambda m: m != "reference"):
                compiles = [False, True] if a.compile and mode in ("paper", "release", "refine") else [False]
                for precision, comp in [(pr, c) for pr in (["fp32"] if mode == "reference" else a.precisions)
                                        for c in compiles]:
                    cmd = [sys.executable, __file__, "--device", a.device, "--_child", name, str(batch), mode,
                           precision, str(int(comp))]
                    if a.steps:
                        cmd += ["--steps", str(a.steps)]
                    if a.full_steps:
                        cmd += ["--full-steps", str(a.full_steps)]
                    out = subprocess.run(cmd, capture_output=True, text=True)
                    if out.returncode != 0:
                        print(out.stderr[-2000:], file=sys.stderr)
                        raise SystemExit(f"benchmark row {name}/{mode}/{precision}/{batch}/compile={comp} failed")
                    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                    r = rows[-1]
                    if mode == "reference":
                        reference = r["s_per_image_iter"]
                    ratio = (f"{r['s_per_image_iter'] / reference:.2f}" if reference and r["s_per_image_iter"]
                             else "-")
                    r["ratio_to_reference"] = None if ratio == "-" else float(ratio)
                    print(f"{r['config']:<15}{r['weights']:>8}{r['mode']:>10}{r['precision']:>6}"
                          f"{'yes' if r['compile'] else 'no':>8}{r['batch']:>6}{r['device']:>7}"
                          f"{str(r['s_per_image_iter'] or '-'):>12}{r['s_per_image_full_run']:>12}"
                          f" ({r['full_steps']} it){str(r['warmup_s'] or '-'):>10}{r['peak_mib']:>10}{ratio:>13}",
                          flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
