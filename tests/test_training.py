"""Discriminator layout, GAN training steps, few-shot adaptation (CDC), checkpoints, resume and export.

Everything runs on micro models (16 / 32 px, <= 16 channels) so the file stays well under a minute on a
2-core CPU.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from ddsutils.toy import train as tr
from ddsutils.toy.discriminator import Discriminator, Extra
from ddsutils.toy.fewshot import adapt, anchor_latents, cdc_loss, cdc_probabilities
from ddsutils.core.stylegan2 import Generator, load_generator
from ddsutils.toy.train import (
    build_discriminator,
    build_generator,
    d_logistic_loss,
    ema_decay,
    ema_update,
    export_generator,
    g_nonsaturating_loss,
    load_training_checkpoint,
    r1_penalty,
    resolve_arch,
    train_gan,
)

MICRO = dict(preset="micro16", batch=4, sample_every=10**6, ckpt_every=10**6, n_sample=4, progress=False,
             device="cpu", log_every=1)


def _params(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def natural_run(tmp_path_factory) -> Path:
    """A 4-step micro natural run (R1 and path-length steps included), shared by several tests."""
    d = tmp_path_factory.mktemp("natural")
    return train_gan(out_dir=d, iters=4, d_reg_every=2, g_reg_every=2, **MICRO)


# -- discriminator ---------------------------------------------------------------------------------

def test_discriminator_rosinality_256_layout():
    D = Discriminator(256)
    sd = D.state_dict()
    assert sum(p.numel() for p in D.parameters()) == 28_864_129
    shapes = {k: list(v.shape) for k, v in sd.items()}
    assert shapes["convs.0.0.weight"] == [128, 3, 1, 1] and shapes["convs.0.1.bias"] == [128]
    assert shapes["convs.1.conv1.0.weight"] == [128, 128, 3, 3]
    assert shapes["convs.1.conv2.0.kernel"] == [4, 4] and shapes["convs.1.conv2.1.weight"] == [256, 128, 3, 3]
    assert shapes["convs.1.skip.1.weight"] == [256, 128, 1, 1] and "convs.1.skip.1.bias" not in shapes
    assert shapes["final_conv.0.weight"] == [512, 513, 3, 3] and shapes["final_conv.1.bias"] == [512]
    assert shapes["final_linear.0.weight"] == [512, 8192] and shapes["final_linear.1.weight"] == [1, 512]
    assert max(int(k.split(".")[1]) for k in sd if k.startswith("convs.")) == 6
    # few-shot's patch features at 256 px: ResBlock 3 conv2 (32), 4 conv1 (32), 4 conv2 (16), 5 conv1 (16)
    assert [D.feature_info[j][:3] for j in D.patch_indices] == [
        (3, "conv2", 32), (4, "conv1", 32), (4, "conv2", 16), (5, "conv1", 16)]
    heads = Extra(D.patch_channels).state_dict()
    assert list(heads["new_conv.0.0.weight"].shape) == [1, 512, 3, 3] and list(heads["new_conv.3.1.bias"].shape) == [1]


def test_discriminator_forward_micro_32():
    torch.manual_seed(0)
    D = Discriminator(32, channels={4: 16, 8: 16, 16: 8, 32: 8})
    x = torch.randn(6, 3, 32, 32)  # 6 is not a multiple of the stddev group 4
    logits, feats = D(x, return_features=True)
    assert logits.shape == (6, 1) and torch.isfinite(logits).all()
    assert torch.equal(logits, D(x))
    assert [tuple(f.shape[1:]) for f in feats] == [(8, 32, 32), (8, 16, 16), (8, 16, 16), (16, 8, 8),
                                                   (16, 8, 8), (16, 4, 4)]
    pf = D.patch_features(x)
    assert [tuple(f.shape[2:]) for f in pf] == [(4, 4)]  # size/8 = 4, size/16 floored to 4: ResBlock 3 conv2
    assert all(torch.equal(a, feats[j]) for a, j in zip(pf, D.patch_indices))
    patch = Extra(D.patch_channels)(pf, 0)
    assert patch.shape == (6, 1, 4, 4)
    with pytest.raises(ValueError, match="expected images"):
        D(torch.randn(2, 3, 16, 16))


def test_minibatch_stddev_sees_the_batch():
    torch.manual_seed(0)
    D = Discriminator(16, channels={4: 8, 8: 8, 16: 8})
    x = torch.randn(4, 3, 16, 16)
    a = D(x)[0]
    x2 = x.clone()
    x2[1:] = x[0]  # same first image, different companions
    assert not torch.allclose(a, D(x2)[0])


# -- losses and updates ----------------------------------------------------------------------------

def test_losses_r1_and_ema():
    torch.manual_seed(0)
    arch = resolve_arch("micro16")
    D = build_discriminator(arch)
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    real.requires_grad_(True)
    pred = D(real)
    r1 = r1_penalty(pred, real)
    assert r1.item() >= 0 and torch.isfinite(r1)
    assert d_logistic_loss(pred, -pred).item() > 0 and g_nonsaturating_loss(pred).item() > 0
    G, g_ema = build_generator(arch), build_generator(arch)  # different random init

    def dist() -> float:
        return sum((a - b).pow(2).sum() for a, b in zip(g_ema.parameters(), G.parameters())).item()

    before = dist()
    ema_update(g_ema, G, 0.9)
    assert dist() == pytest.approx(before * 0.81, rel=1e-4)  # (decay)^2 of the squared distance
    assert ema_decay(32, ema_kimg=10.0) == pytest.approx(0.5 ** (32 / 10000))
    assert ema_decay(8, ema_kimg=10.0, cur_nimg=800, ema_rampup=0.05) == pytest.approx(0.5 ** (8 / 40))


# -- training ------------------------------------------------------------------------------------

def test_training_steps_change_parameters(natural_run: Path):
    ck = load_training_checkpoint(natural_run)  # weights_only=True inside
    assert ck["iter"] == 4 and set(ck) >= {"g", "d", "g_ema", "g_optim", "d_optim", "config", "train_args",
                                           "loss_log"}
    torch.manual_seed(tr.stream_seed(0, 0, "init"))
    arch = resolve_arch("micro16")
    G0, D0 = build_generator(arch), build_discriminator(arch)
    assert any(not torch.equal(ck["g"][k], v) for k, v in G0.state_dict().items())
    assert any(not torch.equal(ck["d"][k], v) for k, v in D0.state_dict().items())
    assert any(not torch.equal(ck["g_ema"][k], v) for k, v in G0.state_dict().items())
    log = [json.loads(line) for line in (natural_run.parent.parent / "log.jsonl").read_text().splitlines()]
    assert [e["iter"] for e in log] == [1, 2, 3, 4] == [e["iter"] for e in ck["loss_log"]]
    for e in log:
        assert all(isinstance(e[k], float) and abs(e[k]) < 1e6 for k in ("d", "g", "r1", "path"))
        assert e["r1"] >= 0
    assert (natural_run.parent.parent / "samples" / "000004.png").is_file()
    json.dumps(ck["train_args"])  # primitives only


def test_resume_reproduces_uninterrupted_run(tmp_path: Path, natural_run: Path):
    a = train_gan(out_dir=tmp_path / "b", iters=2, d_reg_every=2, g_reg_every=2, **MICRO)
    assert load_training_checkpoint(a)["iter"] == 2
    b = train_gan(out_dir=tmp_path / "b", iters=4, d_reg_every=2, g_reg_every=2, **MICRO)
    full, resumed = load_training_checkpoint(natural_run), load_training_checkpoint(b)
    assert resumed["iter"] == 4 and [e["iter"] for e in resumed["loss_log"]] == [1, 2, 3, 4]
    for key in ("g", "d", "g_ema"):
        for k, v in full[key].items():
            torch.testing.assert_close(resumed[key][k], v, rtol=1e-6, atol=1e-7, msg=f"{key}.{k}")
    assert resumed["mean_path_length"] == pytest.approx(full["mean_path_length"])
    # nothing to do once done; a changed hyper-parameter is refused
    assert train_gan(out_dir=tmp_path / "b", iters=4, d_reg_every=2, g_reg_every=2, **MICRO) == b
    with pytest.raises(ValueError, match="arguments differ"):
        train_gan(out_dir=tmp_path / "b", iters=6, d_reg_every=2, g_reg_every=2, **{**MICRO, "batch": 8})


def test_export_loads_and_matches_g_ema(tmp_path: Path, natural_run: Path):
    dst = export_generator(natural_run, tmp_path / "toy.pt", n_mean=64)
    raw = torch.load(dst, weights_only=True)
    assert set(raw) == {"g_ema", "config", "latent_avg", "meta"}
    G = load_generator(dst)
    ck = load_training_checkpoint(natural_run)
    ref = Generator(16, 16, 2, channels={int(k): v for k, v in ck["config"]["channels"].items()})
    ref.load_state_dict(ck["g_ema"])
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(G(z), ref.eval()(z))
    assert G.latent_avg.shape == (1, 16)
    with pytest.raises(ValueError, match="not a ddsutils training checkpoint"):
        export_generator(dst, tmp_path / "again.pt")


# -- few-shot adaptation -------------------------------------------------------------------------------

def test_cdc_loss_zero_positive_and_gradients():
    torch.manual_seed(0)
    arch = resolve_arch("micro16")
    src = build_generator(arch).requires_grad_(False)
    tgt = copy.deepcopy(src).requires_grad_(True)
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    noise = src.make_noise(4, seed=2)
    layers = [1, 2, 3, 4]
    assert cdc_loss(src, tgt, z, layers=layers, noise=noise).item() == 0.0
    with torch.no_grad():
        for p in tgt.parameters():
            p.add_(0.3 * torch.randn_like(p))
    loss = cdc_loss(src, tgt, z, layers=layers, noise=noise)
    assert loss.item() > 0
    loss.backward()
    assert all(p.grad is None for p in src.parameters())
    assert sum(p.grad.abs().sum().item() for p in tgt.parameters() if p.grad is not None) > 0
    # probabilities: rows over the other items, each summing to one; KL matches nn.KLDivLoss (mean)
    _, f = src(z, noise=noise, return_features=True)
    p = cdc_probabilities(f, layers)
    assert p.shape == (4, 3) and torch.allclose(p.sum(1), torch.ones(4))
    with torch.no_grad():
        q = cdc_probabilities(tgt(z, noise=noise, return_features=True)[1], layers)
    ref = 1000 * torch.nn.functional.kl_div(torch.log(q), p, reduction="sum") / p.numel()  # KLDivLoss() 'mean'
    assert loss.item() == pytest.approx(ref.item(), rel=1e-4)
    with pytest.raises(ValueError, match="layers must be in"):
        cdc_loss(src, tgt, z, layers=[0, 1, 2, 3])


def test_anchor_latents_stay_near_anchors():
    anchors = torch.randn(10, 16)
    z = anchor_latents(anchors, 64, std=0.1, generator=torch.Generator().manual_seed(0))
    d = torch.cdist(z, anchors).min(dim=1).values
    assert z.shape == (64, 16) and d.max() < 0.1 * 16 ** 0.5 * 2


def test_adapt_micro_runs_and_resumes(tmp_path: Path, natural_run: Path):
    kw = dict(target_style="sketch", n_shots=6, batch=4, subspace_freq=2, d_reg_every=2, g_reg_every=2,
              sample_every=10**6, ckpt_every=10**6, n_sample=4, log_every=1, progress=False, device="cpu")
    full = adapt(natural_run, out_dir=tmp_path / "a", iters=4, **kw)
    ck = load_training_checkpoint(full)
    assert ck["iter"] == 4 and ck["shots"].shape == (6, 3, 16, 16) and ck["shots_seed"] == 2022
    assert ck["anchors"].shape == (6, 16) and set(ck["extra"]) >= {"new_conv.0.0.weight", "new_conv.0.1.bias"}
    src = load_training_checkpoint(natural_run)
    assert any(not torch.equal(ck["g"][k], v) for k, v in src["g"].items())
    assert all(torch.equal(ck["g_source"][k], v) for k, v in src["g"].items())
    log = ck["loss_log"]
    assert [e["anchor_step"] for e in log] == [True, False, True, False]
    assert all(e["cdc"] >= 0 and abs(e["d"]) < 1e6 and abs(e["g"]) < 1e6 for e in log)
    assert log[0]["cdc"] == 0.0  # target == source at the first generator step
    # interrupted + resumed == uninterrupted
    adapt(natural_run, out_dir=tmp_path / "b", iters=2, **kw)
    res = load_training_checkpoint(adapt(natural_run, out_dir=tmp_path / "b", iters=4, **kw))
    for key in ("g", "d", "g_ema", "extra"):
        for k, v in ck[key].items():
            torch.testing.assert_close(res[key][k], v, rtol=1e-6, atol=1e-7, msg=f"{key}.{k}")
    # resuming against another source generator is refused
    other = train_gan(out_dir=tmp_path / "other", iters=1, **MICRO)
    with pytest.raises(ValueError, match="different source generator"):
        adapt(other, out_dir=tmp_path / "b", iters=6, **kw)
    # export in the load_generator layout, paired with the source at the same z
    G = load_generator(export_generator(full, tmp_path / "toy-sketch.pt", n_mean=64))
    assert G.size == 16 and (tmp_path / "a" / "shots.png").is_file()


@pytest.mark.parametrize("source_weights", ["g_ema", "g"])
def test_adapt_freeze_holds_named_layers(tmp_path: Path, natural_run: Path, source_weights: str):
    kw = dict(target_style="caricature", n_shots=4, batch=4, subspace_freq=2, d_reg_every=2, g_reg_every=2,
              sample_every=10**6, ckpt_every=10**6, n_sample=4, log_every=1, progress=False, device="cpu",
              source_weights=source_weights)
    freeze = ("style", "input", "conv1", "to_rgb1")  # mapping network and the 4 px block
    ck = load_training_checkpoint(adapt(natural_run, out_dir=tmp_path / "f", iters=4, freeze=freeze, **kw))
    start = ck["g_source_ema"] if source_weights == "g_ema" else ck["g_source"]  # where G started
    other = ck["g_source"] if source_weights == "g_ema" else ck["g_source_ema"]
    held = [k for k in ck["g"] if k.split(".")[0] in freeze]
    moved = [k for k in ck["g"] if k.startswith("convs.") and not torch.equal(ck["g"][k], start[k])]
    assert held and all(torch.equal(ck["g"][k], start[k]) for k in held)  # path reg step included
    assert not all(torch.equal(ck["g"][k], other[k]) for k in held)  # the two starts differ in this micro run
    assert moved and ck["train_args"]["freeze"] == list(freeze)
    assert ck["loss_log"][0]["cdc"] == 0.0  # the CDC reference is the same weights G starts from
    src = load_training_checkpoint(natural_run)
    assert all(torch.equal(ck["g_source"][k], v) for k, v in src["g"].items())  # checkpoints keep the raw g
    with pytest.raises(ValueError, match="match no generator parameter"):
        adapt(natural_run, out_dir=tmp_path / "g", iters=1, freeze=("convs.99",), **kw)
    with pytest.raises(TypeError, match="not the string"):
        adapt(natural_run, out_dir=tmp_path / "h", iters=1, freeze="style", **kw)
    with pytest.raises(ValueError, match="source_weights must be"):
        adapt(natural_run, out_dir=tmp_path / "i", iters=1, **{**kw, "source_weights": "d"})


def test_zoo_cli(tmp_path: Path):
    from ddsutils.toy import zoo

    with pytest.raises(ValueError, match=r"freeze prefixes \['convs.4', 'convs.5', 'convs.6'\] match no parameter"):
        zoo.train_zoo(out=tmp_path / "w", runs=tmp_path / "runs", preset="micro16", device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"freeze must name every target .*missing \['caricature'\]"):
        zoo.train_zoo(out=tmp_path / "w", runs=tmp_path / "runs", preset="micro16", freeze={"sketch": ()})
    with pytest.raises(TypeError, match="not one string"):
        zoo.train_zoo(out=tmp_path / "w", runs=tmp_path / "runs", preset="micro16", freeze="style")
    assert not (tmp_path / "runs").exists()  # refused before any training
    s = zoo.train_zoo(out=tmp_path / "w", figures=tmp_path / "fig", runs=tmp_path / "runs", iters_natural=2,
                      iters_adapt={"sketch": 2, "caricature": 1}, preset="micro16", batch=4, device="cpu",
                      progress=False, freeze={"sketch": ("style",), "caricature": ("style", "convs.0")})
    assert s["freeze"] == {"sketch": ["style"], "caricature": ["style", "convs.0"]} and s["source_weights"] == "g_ema"
    car_args = load_training_checkpoint(s["stages"]["caricature"]["checkpoint"])["train_args"]
    assert car_args["freeze"] == ["style", "convs.0"] and car_args["iters"] == 1
    assert s["iters_adapt"] == {"sketch": 2, "caricature": 1}
    assert [zoo.logged_seconds(tmp_path / "runs" / st)[0] for st in ("sketch", "caricature")] == [2, 1]
    for name in ("natural", "sketch", "caricature"):
        G = load_generator(tmp_path / "w" / f"toy-{name}-16.pt")
        assert G.size == 16 and (tmp_path / "fig" / f"zoo_{name}.png").is_file()
    assert (tmp_path / "fig" / "zoo_pairs.png").is_file() and set(s["stages"]) == {"natural", "sketch", "caricature"}
    with pytest.raises(ValueError, match="needs out inside the repository"):
        zoo.train_zoo(out=tmp_path / "w", runs=tmp_path / "runs", iters_natural=2, iters_adapt=2, preset="micro16",
                      batch=4, device="cpu", progress=False, update_manifest=True, freeze=())
    iters, secs = zoo.logged_seconds(tmp_path / "runs" / "natural")
    assert iters == 2 and secs > 0
    with pytest.raises(ValueError, match="not inside the repository"):
        zoo.zoo_manifest_entries(s, command="cmd")
    from ddsutils.core import paths

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(paths, "repo_root", lambda: tmp_path)
        entries = {e["name"]: e for e in zoo.zoo_manifest_entries(s, command="python -m ddsutils.zoo train")}
    assert set(entries) == {"toy-natural-16", "toy-sketch-16", "toy-caricature-16"}
    e = entries["toy-sketch-16"]
    assert e["path"] == "w/toy-sketch-16.pt" and e["kind"] == "stylegan2-generator" and len(e["sha256"]) == 64
    assert "2 adaptation iterations" in e["notes"] and "CDC kl_wt 10000," in e["notes"] and "`python -m" in e["notes"]
