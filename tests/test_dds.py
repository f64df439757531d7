"""DDS engine: Eq. 1–5 on hand-computed tensors, Algorithm 1 behaviour, batching, determinism, bad inputs."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import make_tiny_generator
from ddsutils.core import cli, dds
from ddsutils import dds as dds_cli
from ddsutils.toy import oracle

S = 32
_VGG: list = []


@pytest.fixture(scope="module", autouse=True)
def _shared_vgg(vgg):
    _VGG.append(vgg)
    yield
    _VGG.clear()


@pytest.fixture(scope="module")
def gens():
    return make_tiny_generator(size=S, seed=0), make_tiny_generator(size=S, seed=1)


@pytest.fixture(scope="module")
def vgg():
    """One random-weight VGG-16 (paper layers) for the module: building it costs ~2 s."""
    return dds.make_feature_extractor("vgg16", layers="paper", weights="random")


def _masks(n=2):
    y = torch.zeros(n, 1, S, S)
    y[:, :, 8:20, 8:24] = 1
    return y, y.clone()


def _run(gens, **kw):
    G_s, G_t = gens
    kw.setdefault("backbone", _VGG[0] if _VGG else "vgg16")
    n = kw.pop("n", 2)
    z = kw.pop("z", torch.randn(n, 32, generator=torch.Generator().manual_seed(0)))
    y_s, y_t = _masks(z.shape[0])
    base = dict(z_star=z, y_s=y_s, y_t=y_t, backbone_weights="random", num_steps=8, snapshot_every=4,
                device="cpu", progress=False)
    base.update(kw)
    return dds.optimise(G_s, G_t, **base)


# -- Eq. 1–5 on hand-computed tensors ---------------------------------------------------------------

def test_crossover_eq1():
    x_s = torch.full((1, 3, 2, 2), 0.5)
    x_t = torch.full((1, 3, 2, 2), -0.25)
    y_s = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    y_t = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    x_c = dds.crossover(x_s, y_s, x_t, y_t)
    # pixel (0,0): source part, target part -> 0.5 ; (0,1): neither -> 0 ; (1,0): both -> 0.25 ; (1,1): target -> -0.25
    assert x_c[0, 0].tolist() == [[0.5, 0.0], [0.25, -0.25]]


def test_masked_feature_loss_hand_computed():
    a = [torch.zeros(1, 2, 2, 2), torch.zeros(1, 1, 1, 1)]
    b = [torch.ones(1, 2, 2, 2) * 2.0, torch.ones(1, 1, 1, 1) * 3.0]
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    # layer 1: masked diff is 2 at one pixel in both channels -> squares sum 8, N_1 = 8
    # layer 2: mask resized (area) to 1x1 = 0.25 -> diff 0.75, square 0.5625, N_2 = 1
    mse = dds.masked_feature_loss(a, b, mask, norm="mse", mask_resize="area")
    assert mse.item() == pytest.approx(8 / 8 + 0.5625)
    l2 = dds.masked_feature_loss(a, b, mask, norm="paper", mask_resize="area")
    assert l2.item() == pytest.approx(math.sqrt(8) / 8 + 0.75, rel=1e-5)
    near = dds.masked_feature_loss(a, b, mask, norm="mse", mask_resize="nearest")
    assert near.item() == pytest.approx(1.0 + 9.0)  # nearest picks the top-left (masked) pixel


def test_feature_loss_accepts_dicts_and_checks_norm():
    f = {"a": torch.randn(2, 3, 4, 4)}
    assert torch.equal(dds.masked_feature_loss(f, f, torch.ones(2, 1, 8, 8)), torch.zeros(2))
    with pytest.raises(ValueError, match="norm"):
        dds.masked_feature_loss(f, f, torch.ones(2, 1, 8, 8), norm="l1")


def test_pixel_and_crossover_losses_hand_computed():
    img = torch.zeros(1, 3, 2, 2)
    ref = torch.ones(1, 3, 2, 2)
    m = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    assert dds.masked_pixel_loss(img, ref, m, norm="mse").item() == pytest.approx(6 / 12)
    assert dds.masked_pixel_loss(img, ref, m, norm="paper").item() == pytest.approx(6.0)
    assert dds.crossover_loss(img, ref, norm="mse").item() == pytest.approx(1.0)
    assert dds.crossover_loss(img, ref, norm="paper").item() == pytest.approx(math.sqrt(12), rel=1e-5)


# -- Algorithm 1 ------------------------------------------------------------------------------------

def test_paper_mode_runs_and_reduces_loss(gens):
    r = _run(gens, num_steps=25, snapshot_every=5)
    assert r.image.shape == r.image_source.shape == (2, 3, S, S)
    assert r.latent.shape == (2, 32)
    assert (r.history["total"][-1] < r.history["total"][0]).all()
    assert [s for s, _ in r.snapshots] == [0, 5, 10, 15, 20, 25]
    assert set(r.history) == {"total", "L_s", "L_t", "L_c"}
    assert r.history["total"].shape == (25, 2)
    assert r.image.min() >= -1 and r.image.max() <= 1
    assert r.config["mode"] == "paper" and r.config["latent_space"] == "z" and r.config["init"] == "random"
    assert torch.equal(r.x_c, dds.crossover(r.x_s, r.y_s, r.x_t, r.y_t))


def test_total_is_weighted_sum(gens):
    r = _run(gens, alpha=0.3, beta=2.0, gamma=0.7)
    h = r.history
    assert torch.allclose(h["total"], 0.3 * h["L_s"] + 2.0 * h["L_t"] + 0.7 * h["L_c"], atol=1e-5)


def test_release_mode_uses_one_generator_in_w_plus(gens):
    G_s, G_t = gens
    r = _run(gens, mode="release", backbone="vgg16", num_steps=10)
    assert r.image_source is None and r.latent.shape == (2, G_t.n_latent, 32)
    assert r.config["layers"] == "release" and r.config["normalize"] == "none" and r.config["init"] == "mean"
    assert torch.allclose(r.history["total"], 2 * r.history["perceptual"] + r.history["pixel"]
                          + 3 * r.history["crossover"], atol=1e-5)
    # the output is the domain-1 (target) generator's image of the final latent with the fixed noise maps,
    # re-standardised after every step as the release does
    noise = [(m - m.mean()) / m.std() for m in G_t.make_noise(1, seed=0)]
    with torch.no_grad():
        again = G_t(r.latent, input_space="w+", noise=noise).clamp(-1, 1)
    assert torch.allclose(again, r.image, atol=1e-6)
    # mean-w init: step 0 snapshot is the mean image for every sample
    assert torch.allclose(r.snapshots[0][1][0], r.snapshots[0][1][1], atol=1e-6)


def test_latent_spaces_and_inits(gens):
    G_s, G_t = gens
    for space, shape in (("w", (2, 32)), ("w+", (2, G_t.n_latent, 32))):
        assert _run(gens, latent_space=space, num_steps=2).latent.shape == shape
    z = torch.randn(2, 32, generator=torch.Generator().manual_seed(3))
    r = _run(gens, z=z, init="z_star", num_steps=0)  # no step: the initial latent
    assert torch.allclose(r.latent, z)
    r = _run(gens, init="mean", num_steps=0)
    assert torch.equal(r.latent, torch.zeros(2, 32))
    with pytest.raises(ValueError, match="init"):
        _run(gens, init="best")


def test_generator_feature_backbone(gens):
    r = _run(gens, backbone="generator", num_steps=3)
    assert torch.isfinite(r.history["total"]).all()


def test_batch_independence(gens):
    z = torch.randn(3, 32, generator=torch.Generator().manual_seed(7))
    full = _run(gens, z=z, seed=[5, 6, 7], num_steps=10)
    one = _run(gens, z=z[1:2], seed=[6], num_steps=10)
    assert torch.allclose(full.latent[1:2], one.latent, atol=1e-4)
    assert torch.allclose(full.image[1:2], one.image, atol=1e-4)


def test_seeded_runs_are_bit_identical(gens):
    a, b = _run(gens, num_steps=6), _run(gens, num_steps=6)
    assert torch.equal(a.latent, b.latent) and torch.equal(a.image, b.image)
    c = _run(gens, num_steps=6, seed=1)
    assert not torch.equal(a.latent, c.latent)


def test_callback_and_result_roundtrip(gens, tmp_path):
    calls = []
    r = _run(gens, num_steps=4, callback=lambda step, losses, img: calls.append((step, img.shape)))
    assert [c[0] for c in calls] == [0, 1, 2, 3] and calls[0][1] == (2, 3, S, S)
    torch.save(r.to_dict(), tmp_path / "r.pt")
    back = dds.DDSResult.from_dict(torch.load(tmp_path / "r.pt", weights_only=True))
    assert torch.equal(back.image, r.image) and back.config == r.config and back.snapshots[0][0] == 0


def test_images_directly_unpaired(gens):
    G_s, G_t = gens
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x_s = G_s(torch.randn(2, 32, generator=g)).clamp(-1, 1)
        x_t = G_t(torch.randn(2, 32, generator=g)).clamp(-1, 1)
    y_s, y_t = _masks()
    r = dds.optimise(G_s, G_t, x_s=x_s, x_t=x_t, y_s=y_s, y_t=y_t, backbone_weights="random", num_steps=3,
                     device="cpu", progress=False)
    assert torch.equal(r.x_s, x_s) and r.image.shape == x_t.shape


# -- bad input ---------------------------------------------------------------------------------------

def test_bad_masks(gens):
    y_s, y_t = _masks()
    with pytest.raises(ValueError, match="binary"):
        _run(gens, y_s=y_s * 0.5)
    with pytest.raises(ValueError, match="16×16 but the generators make 32×32"):
        _run(gens, y_s=torch.ones(2, 1, 16, 16))
    with pytest.raises(ValueError, match="batch"):
        _run(gens, y_t=torch.ones(3, 1, S, S))
    with pytest.raises(ValueError, match="required"):
        _run(gens, y_s=None)


def test_degenerate_masks_warn(gens):
    with pytest.warns(UserWarning, match="y_s is empty"):
        r = _run(gens, y_s=torch.zeros(2, 1, S, S), num_steps=2)
    assert (r.history["L_s"] == 0).all()
    with pytest.warns(UserWarning, match="y_t covers the whole image"):
        _run(gens, y_t=torch.ones(2, 1, S, S), num_steps=2)


def test_bad_latents_and_images(gens):
    with pytest.raises(ValueError, match="NaN"):
        _run(gens, z=torch.full((2, 32), float("nan")))
    y_s, y_t = _masks()
    G_s, G_t = gens
    with pytest.raises(ValueError, match=r"outside \[-1, 1\]"):
        dds.optimise(G_s, G_t, x_s=torch.full((2, 3, S, S), 2.0), x_t=torch.zeros(2, 3, S, S), y_s=y_s, y_t=y_t,
                     device="cpu", progress=False)
    with pytest.raises(ValueError, match="either z_star"):
        dds.optimise(G_s, G_t, y_s=y_s, y_t=y_t, device="cpu", progress=False)


def test_generators_of_different_resolution(gens):
    G_s, _ = gens
    with pytest.raises(ValueError, match="different resolutions"):
        dds.optimise(G_s, make_tiny_generator(size=16), z_star=torch.randn(1, 32), y_s=torch.ones(1, 1, 32, 32),
                     y_t=torch.zeros(1, 1, 32, 32), device="cpu", progress=False)


@pytest.mark.filterwarnings("ignore:y_s is empty")
def test_cli_run_writes_everything(tmp_path, gens):
    import json

    from ddsutils.core import segmenter

    G_s, G_t = gens
    for name, G in (("gs", G_s), ("gt", G_t)):
        torch.save({"g_ema": G.state_dict()}, tmp_path / f"{name}.pt")
    z = torch.randn(1, 32, generator=torch.Generator().manual_seed(0))
    label = torch.zeros(1, 1, S, S)
    label[:, :, 8:20, 8:24] = 1
    seg = segmenter.train_segmenter(G_s, z, label, part="box", steps=5, progress=False)
    segmenter.save_segmenter(seg, tmp_path / "seg.pt")
    out = tmp_path / "run"
    rc = dds_cli.main(["run", "--source", str(tmp_path / "gs.pt"), "--target", str(tmp_path / "gt.pt"),
                   "--segmenter", str(tmp_path / "seg.pt"), "--n", "2", "--steps", "4", "--snapshot-every", "2",
                   "--mode", "release", "--out", str(out), "--device", "cpu", "--quiet"])
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    assert {"source.png", "target.png", "mask_source.png", "mask_target.png", "crossover.png", "dds.png",
            "iterations.png", "result.pt", "record.json"} <= names
    rec = json.loads((out / "record.json").read_text())
    assert rec["config"]["mode"] == "release" and rec["config"]["num_steps"] == 4
    res = torch.load(out / "result.pt", weights_only=True)
    assert res["image"].shape == (2, 3, S, S) and res["z_star"].shape == (2, 32)



# -- the command line: complete folders, --overwrite, --steps 0, byte-identical reruns ------------------


@pytest.fixture(scope="module")
def cli_files(gens, tmp_path_factory):
    """The two tiny generators as checkpoint files and a segmenter saved for the source one (part 'box')."""
    from ddsutils.core import segmenter

    d = tmp_path_factory.mktemp("cli_files")
    for name, G in zip(("gs", "gt"), gens):
        torch.save({"g_ema": G.state_dict()}, d / f"{name}.pt")
    label = torch.zeros(1, 1, S, S)
    label[:, :, 8:20, 8:24] = 1
    seg = segmenter.train_segmenter(gens[0], torch.randn(1, 32, generator=torch.Generator().manual_seed(0)), label,
                                    part="box", steps=5, progress=False)
    segmenter.save_segmenter(seg, d / "seg.pt")
    return d


def _cli_run(d, out, *extra: str) -> int:
    return dds_cli.main(["run", "--source", str(d / "gs.pt"), "--target", str(d / "gt.pt"), "--segmenter",
                     str(d / "seg.pt"), "--n", "2", "--out", str(out), "--device", "cpu", "--quiet", *extra])


def _complete_folder(out) -> dict:
    """The run's record; asserts that the folder holds exactly the files it lists (and record.json)."""
    import json
    import os

    rec = json.loads((out / "record.json").read_text())
    assert sorted(os.listdir(out)) == sorted([*rec["files"], "record.json"])
    return rec


@pytest.mark.filterwarnings("ignore:y_[st] (is empty|covers)")
@pytest.mark.parametrize("mode", ["paper", "blend"])
def test_cli_run_with_zero_steps_writes_a_complete_folder(cli_files, tmp_path, mode):
    """--steps 0 (blend mode has no steps at all): every file, empty histories, no final losses."""
    assert _cli_run(cli_files, tmp_path / "run", "--steps", "0", "--mode", mode, "--backbone", "generator"
                    if mode == "paper" else "vgg16") == 0
    rec = _complete_folder(tmp_path / "run")
    assert rec["config"]["num_steps"] == 0 and rec["final_losses"] == {}
    res = torch.load(tmp_path / "run" / "result.pt", weights_only=True)
    assert all(v.shape[0] == 0 for v in res["history"].values()) and res["image"].shape == (2, 3, S, S)


@pytest.mark.filterwarnings("ignore:y_[st] (is empty|covers)")
def test_cli_run_overwrite_replaces_the_folder_whole(cli_files, tmp_path, capsys):
    """paper then release into one --out: refused without --overwrite (folder untouched); with it, nothing of
    the paper run (dds_source_domain.png) survives."""
    out = tmp_path / "run"
    assert _cli_run(cli_files, out, "--steps", "1", "--mode", "paper", "--backbone", "generator") == 0
    assert "dds_source_domain.png" in _complete_folder(out)["files"]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert _cli_run(cli_files, out, "--steps", "1", "--mode", "release") == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _cli_run(cli_files, out, "--steps", "1", "--mode", "release", "--overwrite") == 0
    rec = _complete_folder(out)
    assert rec["config"]["mode"] == "release" and not (out / "dds_source_domain.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary sibling left


@pytest.mark.filterwarnings("ignore:y_[st] (is empty|covers)")
@pytest.mark.parametrize("mode", ["paper", "release", "blend", "refine"])
def test_cli_seeded_reruns_are_byte_identical(cli_files, tmp_path, mode):
    """Two seeded runs into two folders: the same PNG bytes, the same result.pt tensors, the same record.json
    apart from the timings and the --out path."""
    import json

    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert _cli_run(cli_files, out, "--mode", mode, "--steps", "3", "--snapshot-every", "2", "--seed", "5") == 0
    rec_a, rec_b = _complete_folder(a), _complete_folder(b)
    assert rec_a["files"] == rec_b["files"]
    for name in rec_a["files"]:
        if name.endswith(".png"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for rec in (rec_a, rec_b):
        rec.pop("timings"), rec["args"].pop("out")
    assert json.dumps(rec_a, sort_keys=True) == json.dumps(rec_b, sort_keys=True)
    ra, rb = (torch.load(out / "result.pt", weights_only=True) for out in (a, b))
    assert set(ra) == set(rb) and ra["timings"].keys() == rb["timings"].keys()

    def same(x, y, where):
        if isinstance(x, torch.Tensor):
            assert isinstance(y, torch.Tensor) and x.dtype == y.dtype and torch.equal(x, y), where
        elif isinstance(x, dict):
            assert x.keys() == y.keys(), where
            for k in x:
                same(x[k], y[k], f"{where}.{k}")
        elif isinstance(x, (list, tuple)):
            assert len(x) == len(y), where
            for i, (u, v) in enumerate(zip(x, y)):
                same(u, v, f"{where}[{i}]")
        else:
            assert x == y, where

    for key in ra:
        if key != "timings":
            same(ra[key], rb[key], key)
    assert len(ra["snapshots"]) == (0 if mode == "blend" else 2)  # steps 0 and 2 (snapshot every 2 of 3)



def test_random_init_is_not_the_callers_z_star(gens):
    """z* drawn with the same seed as DDS must not also be the random starting point (pair 0 would start solved)."""
    G = gens[0]
    z_star = torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(0))
    z0 = dds._initial_latent(G, latent_space="z", init="random", seeds=[0, 1], z_star=z_star, n_mean_latent=8,
                             device=torch.device("cpu"))
    assert z0.shape == z_star.shape
    assert not torch.equal(z0[0], z_star[0]) and not torch.equal(z0[1], z_star[1])


def test_oracle_masks_refuse_a_bad_label_truncation(gens):
    G_s, G_t = gens
    z = torch.randn(1, G_s.style_dim, generator=torch.Generator().manual_seed(0))
    for bad in (-0.5, 1.5, float("nan")):
        with pytest.raises(cli.UserError, match=r"label_truncation: .*must be .*>= 0 and <= 1"):
            oracle.masks_for(G_s, G_t, z, mask="hair", segmenter_path=None, segmenter_on="source", seed=0,
                           device=torch.device("cpu"), label_truncation=bad)
