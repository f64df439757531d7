"""Gradient of each release-mode term at the start of the optimisation (docs/dds_modes.md).

Release mode starts at the mean w (tiled over w+) with G_t = the natural generator, as DDS_main.py's D1 loop.
For each toy-world cell this prints the norm of the gradient w.r.t. the latent of the masked VGG target term
P(img, x_t, 1 - y_t) and of the masked VGG source term P(img, x_s, y_t) (the D1 loop masks it with the target's
part mask), with the judge parser's masks of n seeded pairs.

    python docs/scripts/release_gradients.py [--n 16] [--seed 0]
"""
from __future__ import annotations

import argparse

import torch

from ddsutils.core import dds
from ddsutils.toy import scoring
from ddsutils.core.stylegan2 import load_generator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(1)
    vgg = dds.make_feature_extractor("vgg16", layers="release", normalize="none")
    print("| cell | target term ‖∂/∂w‖ | source term ‖∂/∂w‖ | ratio |\n|---|---:|---:|---:|")
    for src, tgt in (("caricature", "natural"), ("sketch", "natural")):
        G_s, G_t = load_generator(f"toy-{src}-64"), load_generator(f"toy-{tgt}-64")
        z = torch.randn(a.n, G_s.style_dim, generator=torch.Generator().manual_seed(a.seed))
        for mask in ("eyes_nose_mouth", "hair"):
            pair = scoring.oracle_pair(G_s, G_t, z, mask)
            w = G_t.mean_latent(10000)[:, None].repeat(a.n, G_t.n_latent, 1)
            norms = []
            for ref, m in ((pair["x_t"], 1 - pair["y_t"]), (pair["x_s"], pair["y_t"])):
                lat = w.clone().requires_grad_(True)
                feats = vgg(G_t(lat, input_space="w+"))
                loss = dds.masked_feature_loss(feats, vgg(ref), m, mask_resize="chain").sum()
                (grad,) = torch.autograd.grad(loss, lat)
                norms.append(float(grad.flatten(1).norm(dim=1).mean()))
            print(f"| {src} → {tgt}, {mask} | {norms[0]:.3g} | {norms[1]:.3g} | {norms[0] / norms[1]:.1f} |")


if __name__ == "__main__":
    main()
