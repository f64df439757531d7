"""StyleGAN2 generator: layout compatibility, maths of the ops, latents, noise, golden image, loading."""
from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ddsutils.core import stylegan2
from ddsutils.core.stylegan2 import CheckpointError, Generator, load_generator, upfirdn2d
from conftest import make_tiny_generator

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "golden_generator_32.pt"


# -- layout ----------------------------------------------------------------------------------------

def test_rosinality_256_layout_matches_fixture():
    fixture = json.loads((DATA / "rosinality_256_state_dict.json").read_text())
    G = Generator(256, 512, 8)
    ours = {k: list(v.shape) for k, v in G.state_dict().items()}
    theirs = {k: s for k, s in fixture["entries"]}
    assert len(ours) == fixture["n_entries"] == 135
    assert sorted(set(ours) - set(theirs)) == [] and sorted(set(theirs) - set(ours)) == []
    assert {k: ours[k] for k in theirs} == theirs
    assert sum(p.numel() for p in G.parameters()) == fixture["n_parameters"] == 30_034_338
    # top-level order of the public layout
    tops = list(dict.fromkeys(k.split(".")[0] for k in G.state_dict()))
    assert tops == ["style", "input", "conv1", "to_rgb1", "convs", "to_rgbs", "noises"]
    assert (G.num_layers, G.n_latent) == (13, 14)


def test_capacity_knobs_shrink_the_model():
    G = Generator(64, 64, 2, channel_max=32)
    assert set(G.channels.values()) == {32}
    assert sum(p.numel() for p in G.parameters()) < 200_000


def test_bad_size_rejected():
    with pytest.raises(ValueError, match="power of two"):
        Generator(100, 32, 2)


# -- ops against their definitions ------------------------------------------------------------------

def _upfirdn_reference(x, k, up, down, pad):
    """Brute-force definition: zero-stuff, pad, full convolution sum, decimate (single channel)."""
    h, w = x.shape
    u = torch.zeros(h * up, w * up, dtype=torch.float64)
    u[::up, ::up] = x
    p0, p1 = pad
    u = F.pad(u[None, None], (p0, p1, p0, p1))[0, 0]
    kh, kw = k.shape
    H, W = u.shape[0] - kh + 1, u.shape[1] - kw + 1
    out = torch.zeros(H, W, dtype=torch.float64)
    for i in range(H):
        for j in range(W):
            # true convolution: flip the kernel
            out[i, j] = (u[i:i + kh, j:j + kw] * torch.flip(k, [0, 1])).sum()
    return out[::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)), (1, 1, (1, 2)),
                                          (2, 1, (0, 0)), (2, 1, (1, 2)), (1, 2, (2, 2)), (2, 2, (2, 1))])
def test_upfirdn2d_matches_definition(up, down, pad):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 6, generator=g, dtype=torch.float64)
    k = torch.randn(4, 4, generator=g, dtype=torch.float64)  # asymmetric, so flipping matters
    ours = upfirdn2d(x[None, None], k, up=up, down=down, pad=pad)[0, 0]
    assert torch.allclose(ours, _upfirdn_reference(x, k, up, down, pad), atol=1e-12)
    h = (5 * up + pad[0] + pad[1] - 4 + down) // down
    assert ours.shape[0] == h


def test_upfirdn2d_negative_pad_crops():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    k = torch.ones(1, 1)
    assert torch.equal(upfirdn2d(x, k, pad=(-1, -2)), x[:, :, 1:4, 1:4])


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_equals_per_sample_weights(upsample):
    """Our input-scaling form must equal the textbook per-sample modulated/demodulated weights."""
    torch.manual_seed(0)
    conv = stylegan2.ModulatedConv2d(6, 5, 3, 8, upsample=upsample).double()
    x = torch.randn(3, 6, 8, 8, dtype=torch.float64)
    w = torch.randn(3, 8, dtype=torch.float64)
    ours = conv(x, w)
    outs = []
    for i in range(3):
        s = conv.modulation(w[i:i + 1])[0]                                   # [in]
        wt = conv.scale * conv.weight[0] * s[None, :, None, None]             # [out, in, k, k]
        wt = wt * torch.rsqrt(wt.pow(2).sum(dim=(1, 2, 3)) + 1e-8)[:, None, None, None]
        if upsample:
            y = F.conv_transpose2d(x[i:i + 1], wt.transpose(0, 1), stride=2)
            y = upfirdn2d(y, stylegan2._fir_kernel([1, 3, 3, 1]).double() * 4, pad=(1, 1))
        else:
            y = F.conv2d(x[i:i + 1], wt, padding=1)
        outs.append(y)
    ref = torch.cat(outs)
    assert ours.shape == ref.shape == (3, 5, 16 if upsample else 8, 16 if upsample else 8)
    assert torch.allclose(ours, ref, atol=1e-10)


def test_upsample_doubles_and_preserves_constants():
    up = stylegan2.Upsample([1, 3, 3, 1])
    x = torch.ones(1, 1, 8, 8)
    y = up(x)
    assert y.shape == (1, 1, 16, 16)
    assert torch.allclose(y[:, :, 2:-2, 2:-2], torch.ones(1, 1, 12, 12))


# -- latents, truncation, noise, features -----------------------------------------------------------

def test_feature_shapes_256():
    G = Generator(256, 512, 8)
    with torch.no_grad():
        img, feats = G(torch.randn(1, 512), return_features=True)
    assert img.shape == (1, 3, 256, 256)
    assert [f.shape[-1] for f in feats] == [4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256, 256]
    assert sum(f.shape[1] for f in feats) == 5376


def test_z_w_wplus_agree(tiny_g):
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = tiny_g(z)
        w = tiny_g.mapping(z)
        b = tiny_g(w, input_space="w")
        c = tiny_g(w[:, None].repeat(1, tiny_g.n_latent, 1), input_space="w+")
    assert torch.equal(a, b) and torch.equal(b, c)


def test_truncation(tiny_g):
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(2))
    mean = tiny_g.mean_latent(512)
    assert mean.shape == (1, 32)
    with torch.no_grad():
        at_mean = tiny_g(mean, input_space="w")
        psi0 = tiny_g(z, truncation=0.0, truncation_latent=mean)
        psi1 = tiny_g(z, truncation=1.0)
        half = tiny_g(z, truncation=0.5, truncation_latent=mean)
    assert torch.allclose(psi0, at_mean.expand_as(psi0), atol=1e-6)
    assert not torch.allclose(half, psi1)
    with pytest.raises(ValueError, match="truncation_latent"):
        tiny_g(z, truncation=0.7)
    assert torch.equal(tiny_g.mean_latent(512), mean)  # seeded


def test_noise_modes(tiny_g):
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        c1, c2 = tiny_g(z), tiny_g(z)
        r1 = tiny_g(z, noise="random")
        explicit = tiny_g(z, noise=tiny_g.noise_buffers())
        fresh = tiny_g(z, noise=tiny_g.make_noise(2, seed=0))
    assert torch.equal(c1, c2) and torch.equal(c1, explicit)
    assert not torch.allclose(c1, r1) and not torch.allclose(c1, fresh)
    assert torch.equal(fresh, tiny_g(z, noise=tiny_g.make_noise(2, seed=0)))
    with pytest.raises(ValueError, match="noise maps"):
        tiny_g(z, noise=tiny_g.noise_buffers()[:-1])


def test_bad_latents(tiny_g):
    with pytest.raises(ValueError, match="NaN"):
        tiny_g(torch.full((1, 32), float("nan")))
    with pytest.raises(ValueError, match=r"z must be \[N, 32\]"):
        tiny_g(torch.randn(1, 31))
    with pytest.raises(ValueError, match="w\\+ must be"):
        tiny_g(torch.randn(1, 3, 32), input_space="w+")
    with pytest.raises(ValueError, match="input_space"):
        tiny_g(torch.randn(1, 32), input_space="s")


def test_batch_independence(tiny_g):
    z = torch.randn(4, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = tiny_g(z)
        single = torch.cat([tiny_g(z[i:i + 1]) for i in range(4)])
    assert torch.allclose(full, single, atol=1e-5)


def test_gradients_flow_to_latent(tiny_g):
    w = tiny_g.mean_latent(64)[:, None].repeat(1, tiny_g.n_latent, 1).requires_grad_(True)
    tiny_g(w, input_space="w+").square().mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


# -- golden image ------------------------------------------------------------------------------------

def _golden_image() -> torch.Tensor:
    G = make_tiny_generator(size=32, seed=0)
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        return G(z)


def test_golden_image():
    """Fixed seed -> weights -> image. Regenerate only on purpose: `python tests/test_stylegan2.py --regen`."""
    img = _golden_image()
    ref = torch.load(GOLDEN, map_location="cpu", weights_only=True)
    assert img.shape == ref.shape == (2, 3, 32, 32)
    assert torch.allclose(img, ref, atol=1e-5), f"max diff {(img - ref).abs().max():.3g}"


def test_seeded_runs_are_bit_identical():
    assert torch.equal(_golden_image(), _golden_image())


# -- checkpoints -------------------------------------------------------------------------------------

def _images(G):
    z = torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        return G(z)


def _layouts(G):
    sd = G.state_dict()
    fake_d = {"convs.0.0.weight": torch.zeros(4, 3, 1, 1), "final_linear.1.bias": torch.zeros(1)}
    return {
        "rosinality_train": {"g": sd, "d": fake_d, "g_ema": sd, "g_optim": {"state": {}, "param_groups": []},
                             "d_optim": {"state": {}, "param_groups": []},
                             "args": argparse.Namespace(size=G.size, batch=16, r1=10.0), "ada_aug_p": 0.0},
        "converted_official": {"g_ema": sd, "latent_avg": torch.randn(G.style_dim)},
        "fewshot": {"g_ema": {f"module.{k}": v for k, v in sd.items()}},
        "plain": sd,
    }


def test_all_public_layouts_load_identically(tmp_path, tiny_g):
    ref = _images(tiny_g)
    for name, ckpt in _layouts(tiny_g).items():
        path = tmp_path / f"{name}.pt"
        torch.save(ckpt, path)
        G = load_generator(path)
        assert torch.equal(_images(G), ref), name
        assert (G.latent_avg is not None) == (name == "converted_official")
        assert not any(p.requires_grad for p in G.parameters())


def test_extra_key_fails_loudly(tmp_path, tiny_g):
    sd = dict(tiny_g.state_dict())
    sd["style.9.weight"] = torch.zeros(3)
    del sd["to_rgb1.bias"]
    torch.save({"g_ema": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        load_generator(tmp_path / "bad.pt")
    msg = str(err.value)
    assert "missing keys" in msg and "to_rgb1.bias" in msg


def test_wrong_shape_fails_loudly(tmp_path, tiny_g):
    sd = dict(tiny_g.state_dict())
    sd["conv1.activate.bias"] = torch.zeros(7)
    torch.save({"g_ema": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="shape mismatches.*conv1.activate.bias"):
        load_generator(tmp_path / "bad.pt")


def test_half_prefixed_keys_fail(tmp_path, tiny_g):
    sd = {(f"module.{k}" if i % 2 else k): v for i, (k, v) in enumerate(tiny_g.state_dict().items())}
    torch.save({"g_ema": sd}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError):
        load_generator(tmp_path / "mixed.pt")


def test_non_checkpoint_file(tmp_path):
    p = tmp_path / "notes.pt"
    p.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_generator(p)


def test_truncated_file(tmp_path, tiny_g):
    good = tmp_path / "good.pt"
    torch.save({"g_ema": tiny_g.state_dict()}, good)
    data = good.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_generator(bad)


def test_other_resolution(tmp_path, tiny_g):
    torch.save({"g_ema": tiny_g.state_dict()}, tmp_path / "g32.pt")
    with pytest.raises(CheckpointError, match="32 px generator but size=256"):
        load_generator(tmp_path / "g32.pt", size=256)


def test_discriminator_only(tmp_path):
    torch.save({"d": {"convs.0.0.weight": torch.zeros(4, 3, 1, 1)}}, tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match="discriminator-only"):
        load_generator(tmp_path / "d.pt")


def test_g_without_g_ema(tmp_path, tiny_g):
    torch.save({"g": tiny_g.state_dict()}, tmp_path / "g.pt")
    with pytest.raises(CheckpointError, match="no 'g_ema'"):
        load_generator(tmp_path / "g.pt")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_generator(tmp_path / "nope.pt")


def test_unsafe_pickle_refused_then_convertible(tmp_path, tiny_g):
    """A pickled object outside the allow-list is refused; `convert --trust` makes a safe file."""
    p = tmp_path / "odd.pt"
    torch.save({"g_ema": tiny_g.state_dict(), "extra": math.pi, "obj": Path("x")}, p)
    with pytest.raises(CheckpointError, match="convert"):
        load_generator(p)
    out = stylegan2.convert_checkpoint(p, tmp_path / "safe.pt", trust=True)
    assert torch.equal(_images(load_generator(out)), _images(tiny_g))


def test_convert_cli_roundtrip(tmp_path, tiny_g):
    src = tmp_path / "train.pt"
    torch.save(_layouts(tiny_g)["rosinality_train"], src)
    assert stylegan2._main(["convert", str(src), str(tmp_path / "slim.pt")]) == 0
    slim = torch.load(tmp_path / "slim.pt", weights_only=True)
    assert set(slim) == {"g_ema", "config"}
    assert torch.equal(_images(load_generator(tmp_path / "slim.pt")), _images(tiny_g))


def test_legacy_checkpoint_without_noise_buffers_warns(tmp_path, tiny_g):
    sd = {k: v for k, v in tiny_g.state_dict().items() if not k.startswith("noises.")}
    torch.save({"g_ema": sd}, tmp_path / "legacy.pt")
    with pytest.warns(UserWarning, match="no registered noise buffers"):
        G = load_generator(tmp_path / "legacy.pt")
    with torch.no_grad():  # everything but the noise buffers came from the file
        z = torch.randn(1, 32)
        zero = [torch.zeros_like(n) for n in G.noise_buffers()]
        assert torch.equal(G(z, noise=zero), tiny_g(z, noise=zero))


def test_rosinality_shape_roundtrip(tmp_path):
    """A full-size 256 px checkpoint (few-shot layout) infers size/channels and loads."""
    torch.manual_seed(0)
    G = Generator(256, 512, 8)
    torch.save({"g_ema": {f"module.{k}": v for k, v in G.state_dict().items()}}, tmp_path / "fs.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        H = load_generator(tmp_path / "fs.pt", size=256)
    assert H.channels == G.channels and H.n_mlp == 8
    for (k, a), (_, b) in zip(G.state_dict().items(), H.state_dict().items()):
        assert torch.equal(a, b), k


if __name__ == "__main__":
    import sys

    if "--regen" in sys.argv:
        torch.save(_golden_image(), GOLDEN)
        print(f"wrote {GOLDEN}")


def test_truncation_centre_prefers_the_checkpoints_latent_avg():
    G = make_tiny_generator()
    assert G.latent_avg is None and torch.equal(G.truncation_centre(), G.mean_latent(4096))
    assert G.truncation_centre(64).shape == (1, G.style_dim)
    G.latent_avg = torch.randn(1, G.style_dim)
    assert torch.equal(G.truncation_centre(), G.latent_avg)
