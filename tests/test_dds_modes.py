"""DDS modes checked independently: release mode against a re-implementation of the released D1 loop, the
paper loss's step-0 terms recomputed by hand with y_s ≠ y_t, and the blend / refine modes' defining cases."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import make_tiny_generator
from ddsutils.core import dds, layerblend

pytestmark = pytest.mark.usefixtures("one_thread")
S = 32


@pytest.fixture(scope="module")
def gens():
    return make_tiny_generator(size=S, seed=0), make_tiny_generator(size=S, seed=1)


def _two_masks(n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """y_s ≠ y_t: overlapping rectangles, so every place a mask could be swapped shows."""
    y_s = torch.zeros(n, 1, S, S)
    y_t = torch.zeros(n, 1, S, S)
    y_s[:, :, 6:20, 8:22] = 1
    y_t[:, :, 10:26, 4:18] = 1
    return y_s, y_t


class _TinyNet(nn.Module):
    """A seeded two-layer feature extractor (paper-mode loss terms do not depend on which backbone)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.requires_grad_(False)

    def forward(self, x):
        a = F.relu(self.c1(x))
        return [a, F.relu(self.c2(a))]


# -- paper mode: the step-0 terms of Eq. 2-6, recomputed ---------------------------------------------


def test_paper_step0_terms_recomputed_by_hand(gens):
    G_s, G_t = gens
    net = _TinyNet()
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(5))
    y_s, y_t = _two_masks(2)
    r = dds.optimise(G_s, G_t, z_star=z, y_s=y_s, y_t=y_t, mode="paper", backbone=net, num_steps=1,
                     snapshot_every=None, seed=7, device="cpu", progress=False)
    # the paper's random init: one seeded stream per sample, disjoint from z*
    z0 = torch.cat([torch.randn(1, 32, generator=torch.Generator().manual_seed(dds.INIT_STREAM + 7 + i))
                    for i in range(2)])
    with torch.no_grad():
        x_s, x_t = G_s(z).clamp(-1, 1), G_t(z).clamp(-1, 1)
        i_s, i_t = G_s(z0), G_t(z0)
        x_c = x_s * y_s + x_t * (1 - y_t)

        def perceptual(a, b, m):  # Σ_j mean over C·h·w of ((F_j(a) − F_j(b)) · m_j)², m_j bilinear-resized
            out = 0
            for fa, fb in zip(net(a), net(b)):
                mj = F.interpolate(m, size=fa.shape[-2:], mode="bilinear", align_corners=False)
                out = out + ((fa - fb) * mj).pow(2).flatten(1).mean(1)
            return out

        def pixel(a, b, m):
            return ((a - b) * m).pow(2).flatten(1).mean(1)

        L_s = perceptual(i_s, x_s, y_s) + pixel(i_s, x_s, y_s)
        L_t = perceptual(i_t, x_t, 1 - y_t) + pixel(i_t, x_t, 1 - y_t)
        L_c = (i_s * y_s + i_t * (1 - y_t) - x_c).pow(2).flatten(1).mean(1)
    h = r.history
    torch.testing.assert_close(h["L_s"][0], L_s, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(h["L_t"][0], L_t, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(h["L_c"][0], L_c, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(h["total"][0], 0.9 * L_s + L_t + 0.5 * L_c, rtol=1e-5, atol=1e-7)


def _in_range(G):
    """A copy of ``G`` whose images stay inside [-1, 1] (toRGB weights scaled down), so clamping is a no-op."""
    import copy

    G = copy.deepcopy(G)
    with torch.no_grad():
        for m in [G.to_rgb1, *G.to_rgbs]:
            m.conv.weight.mul_(0.05)
            m.bias.mul_(0.05)
    return G


def test_paper_loss_is_zero_at_z_star(gens):
    """The reason paper mode cannot put the source style in: at ẑ = z* every term of Eq. 6 vanishes."""
    G_s, G_t = (_in_range(G) for G in gens)
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(1))
    y_s, y_t = _two_masks(2)
    r = dds.optimise(G_s, G_t, z_star=z, y_s=y_s, y_t=y_t, mode="paper", init="z_star", backbone=_TinyNet(),
                     num_steps=3, snapshot_every=None, device="cpu", progress=False)
    with torch.no_grad():
        assert G_s(z).abs().max() < 1 and G_t(z).abs().max() < 1  # no clamp residue in the references
        assert r.history["total"].max() < 1e-10
        assert torch.equal(r.image, G_t(z))  # x̂ = x_t: the gradient is zero, so Adam never moves


# -- release mode: an independent re-implementation of DDS_main.py's D1 loop --------------------------


def _d1_reference(G1, z, x2, y1, y2, slices, *, steps: int, n_mean_latent: int, noise):
    """DDS_main.py loop D1 written from a description of the released code (not from ddsutils.dds).

    G1 is domain 1 (the only generator in the loop, DDS's target); x1 = G1(z*, ψ = 0.7) with its registered
    noise, clamped; x2 the domain-2 image; y1, y2 the domain masks. Returns (loss at step 0, latent after
    ``steps`` Adam steps).
    """
    with torch.no_grad():
        mean_w = G1.mean_latent(4096)
        x1 = G1(z, truncation=0.7, truncation_latent=mean_w, noise="const").clamp(-1, 1)
        xc = (x1 * (1 - y1) + x2 * y2).clamp(-1, 1)  # naive_crossover_source, clamped in place when saved
        zs = torch.randn(n_mean_latent, G1.style_dim, generator=torch.Generator().manual_seed(0))
        latent_mean = G1.style(zs).mean(0)
    latent = latent_mean.view(1, 1, -1).repeat(1, G1.n_latent, 1).requires_grad_(True)
    noises = [t.clone() for t in noise]
    opt = torch.optim.Adam([latent], lr=0.01)

    def vgg(img):
        out, h = [], img  # [-1, 1] straight in, no ImageNet normalisation
        for s in slices:
            h = s(h)
            out.append(h)
        return out

    ref1, ref2 = vgg(x1), vgg(x2)

    def perceptual(feats, refs, mask):
        loss, m = 0, mask
        for f, r in zip(feats, refs):  # the mask is resized 256 -> 64 -> 32: each from the previous
            m = F.interpolate(m, size=f.shape[-2:], mode="bilinear", align_corners=False)
            loss = loss + F.mse_loss(f * m, r * m)
        return loss

    first = None
    for _ in range(steps):
        img = G1(latent, input_space="w+", noise=noises)
        feats = vgg(img)
        loss = 2 * (perceptual(feats, ref1, 1 - y1) + perceptual(feats, ref2, y1)) \
            + F.mse_loss(img * (1 - y1), x1 * (1 - y1)) + F.mse_loss(img * y1, x2 * y1) + 3 * F.mse_loss(img, xc)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():  # noise_normalize_
            for nz in noises:
                nz.sub_(nz.mean()).div_(nz.std())
    return first, latent.detach()


def test_release_mode_matches_the_released_d1_loop(gens, tmp_path):
    torchvision = pytest.importorskip("torchvision")
    G_s, G_t = gens
    torch.manual_seed(11)
    vgg = torchvision.models.vgg16(weights=None).features.eval().requires_grad_(False)
    path = tmp_path / "vgg16_random.pt"
    torch.save({f"features.{k}": v for k, v in vgg.state_dict().items()}, path)
    slices = [vgg[0:2], vgg[2:4], vgg[4:14], vgg[14:21]]  # VGG16_for_Perceptual, n_layers = [2, 4, 14, 21]

    z = torch.randn(1, 32, generator=torch.Generator().manual_seed(2))
    y_s, y_t = _two_masks(1)
    with torch.no_grad():
        x2 = G_s(z, noise="const").clamp(-1, 1)  # domain 2 at ψ = 1
    noise = G_t.make_noise(1, seed=0)
    first, latent = _d1_reference(G_t, z, x2, y1=y_t, y2=y_s, slices=slices, steps=20, n_mean_latent=512,
                                  noise=noise)
    r = dds.optimise(G_s, G_t, z_star=z, y_s=y_s, y_t=y_t, mode="release", backbone="vgg16",
                     backbone_weights=str(path), num_steps=20, n_mean_latent=512, snapshot_every=None, seed=0,
                     device="cpu", progress=False)
    assert r.config["ref_truncation"] == [1.0, 0.7]
    assert abs(r.history["total"][0, 0].item() - first) / first <= 1e-5
    assert (r.latent - latent).abs().max().item() <= 1e-3


# -- blend mode ----------------------------------------------------------------------------------------


def _blend(gens, y, **kw):
    G_s, G_t = gens
    z = kw.pop("z", torch.randn(y.shape[0], 32, generator=torch.Generator().manual_seed(4)))
    return dds.optimise(G_s, G_t, z_star=z, y_s=y, y_t=y, mode="blend", device="cpu", progress=False, **kw), z


@pytest.mark.filterwarnings("ignore:y_[st] (is empty|covers)")
@pytest.mark.parametrize("start", [0, 3, 5, 7])
def test_blend_full_mask_is_source_and_empty_mask_is_target(gens, start):
    G_s, G_t = gens
    full, z = _blend(gens, torch.ones(2, 1, S, S), blend_start=start, dilation=0)
    empty, _ = _blend(gens, torch.zeros(2, 1, S, S), blend_start=start, dilation=3, feather=1.0)
    with torch.no_grad():
        assert torch.equal(full.image, G_s(z).clamp(-1, 1))
        assert torch.equal(empty.image, G_t(z).clamp(-1, 1))


def test_blend_start_at_the_end_is_the_paste(gens):
    G_s, G_t = gens
    y, _ = _two_masks(2)
    r, z = _blend(gens, y, blend_start=G_t.num_layers, dilation=0)
    with torch.no_grad():
        paste = G_s(z) * y + G_t(z) * (1 - y)
    torch.testing.assert_close(r.image, paste.clamp(-1, 1))
    inner, _ = _blend(gens, y, blend_start=3, dilation=0, z=z)
    assert (inner.image - r.image).abs().max() > 1e-3  # earlier layers mix the two generators' activations


def test_blend_batch_independence_and_determinism(gens):
    y, _ = _two_masks(3)
    y[1] = torch.flip(y[1], dims=[-1])
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(8))
    whole, _ = _blend(gens, y, z=z)
    again, _ = _blend(gens, y, z=z)
    assert torch.equal(whole.image, again.image)
    for i in range(3):
        alone, _ = _blend(gens, y[i:i + 1], z=z[i:i + 1])
        torch.testing.assert_close(alone.image, whole.image[i:i + 1], atol=1e-5, rtol=0)  # batched conv rounding


def test_small_components_are_dropped_and_parts_kept():
    m = torch.zeros(2, 1, 10, 12)
    m[0, 0, 1:4, 1:4] = 1      # 9 px
    m[0, 0, 6, 6] = m[0, 0, 7, 7] = 1  # two diagonal neighbours: one 8-connected component of 2 px
    m[0, 0, 2:9, 10] = 1       # a 7 px line
    m[1, 0, 0, 0] = 1          # 1 px
    kept = layerblend.remove_small_components(m, 3)
    assert kept[0, 0, 1:4, 1:4].all() and kept[0, 0, 2:9, 10].all() and kept[0].sum() == 16 and kept[1].sum() == 0
    assert layerblend.remove_small_components(m, 2)[0].sum() == 18  # the diagonal pair survives at 2
    assert torch.equal(layerblend.remove_small_components(m, 0), m)
    assert layerblend.prepare_mask(m, min_area=8, dilation=1)[0].sum() == 25  # 9 px square, then dilated


@pytest.mark.filterwarnings("ignore:y_t covers")
def test_blend_mask_preparation_and_bad_settings(gens):
    y = torch.zeros(1, 1, 9, 9)
    y[..., 4, 4] = 1
    assert layerblend.prepare_mask(y, dilation=1).sum() == 9
    soft = layerblend.prepare_mask(y, feather=1.0)
    assert 0 < soft[..., 4, 4] < 1 and soft[..., 0, 0] < 1e-3 and abs(soft.sum() - 1) < 0.05
    with pytest.raises(ValueError, match="start must be"):
        _blend(gens, torch.ones(1, 1, S, S), blend_start=99)
    with pytest.raises(ValueError, match="dilation and feather"):
        _blend(gens, torch.ones(1, 1, S, S), dilation=-1)
    G_s, G_t = gens
    with pytest.raises(ValueError, match="needs z_star|give z_star"):
        dds.optimise(G_s, G_t, x_s=torch.zeros(1, 3, S, S), x_t=torch.zeros(1, 3, S, S),
                     y_s=torch.ones(1, 1, S, S), y_t=torch.ones(1, 1, S, S), mode="blend", device="cpu")
    other = make_tiny_generator(size=S, seed=2, channel_max=8)
    with pytest.raises(ValueError, match="same architecture"):
        layerblend.blend_synthesis(G_s, other, G_s.to_w_plus(torch.zeros(1, 32)), other.to_w_plus(torch.zeros(1, 32)),
                                   torch.ones(1, 1, S, S), start=0)


# -- refine mode ---------------------------------------------------------------------------------------


def _refine(gens, y, **kw):
    G_s, G_t = gens
    z = kw.pop("z", torch.randn(y.shape[0], 32, generator=torch.Generator().manual_seed(4)))
    kw.setdefault("num_steps", 6)
    return dds.optimise(G_s, G_t, z_star=z, y_s=y, y_t=y, mode="refine", backbone=_TinyNet(), snapshot_every=None,
                        device="cpu", progress=False, **kw), z


@pytest.mark.filterwarnings("ignore:y_[st] (is empty|covers)")
def test_refine_empty_mask_keeps_x_t_and_full_mask_moves_toward_x_s(gens):
    gens = G_s, G_t = tuple(_in_range(G) for G in gens)
    empty, z = _refine(gens, torch.zeros(2, 1, S, S))
    with torch.no_grad():
        x_s, x_t = G_s(z), G_t(z)
    assert x_t.abs().max() < 1 and empty.history["total"].abs().max() < 1e-10  # composite = x_t = G_t(w(z*))
    assert torch.equal(empty.image, x_t)
    full, _ = _refine(gens, torch.ones(2, 1, S, S), num_steps=20)
    assert (full.history["total"][-1] < full.history["total"][0]).all()
    assert ((full.image - x_s).pow(2).mean() < (x_t - x_s).pow(2).mean())
    assert full.latent.shape == (2, G_t.n_latent, 32) and full.config["init"] == "z_star"


def test_refine_batch_independence_and_determinism(gens):
    y, _ = _two_masks(2)
    y[1] = torch.flip(y[1], dims=[-2])
    whole, z = _refine(gens, y)
    again, _ = _refine(gens, y, z=z)
    assert torch.equal(whole.image, again.image) and torch.equal(whole.latent, again.latent)
    alone, _ = _refine(gens, y[1:], z=z[1:])
    torch.testing.assert_close(alone.latent, whole.latent[1:], atol=1e-5, rtol=0)


def test_refine_paste_composite_works_from_images(gens):
    G_s, G_t = gens
    y, _ = _two_masks(1)
    with torch.no_grad():
        x_s, x_t = G_s(torch.randn(1, 32)).clamp(-1, 1), G_t(torch.randn(1, 32)).clamp(-1, 1)
    r = dds.optimise(G_s, G_t, x_s=x_s, x_t=x_t, y_s=y, y_t=y, mode="refine", composite="paste", init="mean",
                     backbone=_TinyNet(), num_steps=3, n_mean_latent=64, snapshot_every=None, device="cpu",
                     progress=False)
    assert r.image.shape == (1, 3, S, S)
    with pytest.raises(ValueError, match="composite='blend' needs z_star"):
        dds.optimise(G_s, G_t, x_s=x_s, x_t=x_t, y_s=y, y_t=y, mode="refine", init="mean", backbone=_TinyNet(),
                     num_steps=1, n_mean_latent=64, device="cpu", progress=False)
