"""The w+ encoder (ddsutils.core.encoder) and its toy evaluation (ddsutils.toy.anchoring): tiny generators, a few
training steps, files, refusals and a small end-to-end run."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import make_tiny_generator
from torch import nn

from ddsutils.core.encoder import (Encoder, EncoderError, check_compatible, encode, load_encoder, parameter_count,
                                   save_encoder, train_encoder)
from ddsutils.core.errors import UserError
from ddsutils.core.files import atomic_torch_save
from ddsutils.toy import anchoring

pytestmark = pytest.mark.usefixtures("one_thread")


class _L1(nn.Module):
    """A cheap stand-in for LPIPS: per-image mean absolute difference ``[N]``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).abs().flatten(1).mean(1)


FAST = dict(batch_size=8, lr=1e-2, n_mean_latent=256, lpips_net=_L1(), channels=(8, 8, 16, 16), head_channels=8,
            hidden=32, progress=False)
STEPS = 60


@pytest.fixture(scope="module")
def G():
    return make_tiny_generator(size=32, seed=0)


@pytest.fixture(scope="module")
def trained(G, one_thread):
    return train_encoder(G, steps=STEPS, seed=3, mix_prob=0.0, w_noise=0.0, **FAST)


def _images(G, n, seed=0):
    z = torch.randn(n, G.style_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G(z, noise="const").clamp(-1, 1)


def test_training_reduces_the_loss(G, trained):
    # held-out samples: G(E(x)) is closer to x than the untrained encoder's mean w is
    z = torch.randn(64, G.style_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        x = G(z, noise="const").clamp(-1, 1)
        before = (G.synthesis(trained.w_mean.expand(64, G.n_latent, -1)).clamp(-1, 1) - x).abs().mean()
        after = (G.synthesis(encode(trained, x)).clamp(-1, 1) - x).abs().mean()
    assert float(after) < 0.85 * float(before)
    h = trained.history
    assert set(h) == {"total", "latent", "lpips", "mse", "extra"} and h["total"].shape == (STEPS,)
    assert float(h["total"][-10:].mean()) < float(h["total"][:5].mean())
    assert not trained.training and trained.w_mean.device.type == "cpu"
    ta = trained.train_args
    assert ta["steps"] == STEPS and ta["seed"] == 3 and ta["seconds"] > 0
    assert ta["parameters"] == parameter_count(trained)
    json.dumps(ta)  # stored in the file: JSON-like only


def test_untrained_encoder_gives_the_mean_w(G):
    E = Encoder(G.size, G.n_latent, G.style_dim, channels=(8, 8, 16, 16))
    with torch.no_grad():
        E.w_mean.normal_()
    w = encode(E, _images(G, 3))
    assert torch.equal(w, E.w_mean.expand(3, G.n_latent, -1))


def test_encode_shapes_and_batch_independence(G, trained):
    x = _images(G, 5, seed=1)
    w = encode(trained, x)
    assert w.shape == (5, G.n_latent, G.style_dim) and w.dtype == torch.float32
    assert torch.allclose(encode(trained, x, batch_size=2), w, atol=1e-6)
    assert torch.allclose(encode(trained, x[2]), w[2:3], atol=1e-6)  # a single [3, H, W] image
    G.synthesis(w, noise="const")  # decodes
    assert not trained.training


def test_save_load_round_trip_is_bit_identical(G, trained, tmp_path):
    path = save_encoder(trained, tmp_path / "e.pt")
    E2 = load_encoder(path, generator=G)
    sd1, sd2 = trained.state_dict(), E2.state_dict()
    assert sd1.keys() == sd2.keys() and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert E2.config == trained.config and E2.train_args == json.loads(json.dumps(trained.train_args))
    x = _images(G, 4, seed=2)
    assert torch.equal(encode(E2, x), encode(trained, x))
    raw = torch.load(path, weights_only=True)  # a plain weights-only file
    assert raw["format"] == "ddsutils-encoder-v1"


def test_files_that_are_not_encoders_are_refused(G, trained, tmp_path):
    # a generator checkpoint, random bytes, a missing file
    gen_file = atomic_torch_save({"g_ema": G.state_dict()}, tmp_path / "g.pt")
    with pytest.raises(EncoderError, match="not a ddsutils encoder file"):
        load_encoder(gen_file)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint" * 20)
    with pytest.raises(EncoderError, match="not a PyTorch file"):
        load_encoder(junk)
    with pytest.raises(EncoderError, match="no such file"):
        load_encoder(tmp_path / "missing.pt")
    # an encoder file whose weights do not fit (an extra key), or are NaN
    good = torch.load(save_encoder(trained, tmp_path / "e.pt"), weights_only=True)
    extra = {**good, "state_dict": {**good["state_dict"], "extra.weight": torch.zeros(1)}}
    atomic_torch_save(extra, tmp_path / "extra.pt")
    with pytest.raises(EncoderError, match="strict load.*extra.weight"):
        load_encoder(tmp_path / "extra.pt")
    nan = {**good, "state_dict": {**good["state_dict"], "fc1.bias": torch.full_like(good["state_dict"]["fc1.bias"],
                                                                                     float("nan"))}}
    atomic_torch_save(nan, tmp_path / "nan.pt")
    with pytest.raises(EncoderError, match="NaN"):
        load_encoder(tmp_path / "nan.pt")
    # an encoder for another generator
    other = make_tiny_generator(size=16, seed=0)
    with pytest.raises(EncoderError, match="16 px"):
        load_encoder(tmp_path / "e.pt", generator=other)
    with pytest.raises(EncoderError):
        check_compatible(trained, other)


def test_training_is_seeded_and_leaves_the_global_rng_alone(G, trained):
    torch.manual_seed(12345)  # a global state that no seed-3 training would leave behind
    state = torch.random.get_rng_state()
    again = train_encoder(G, steps=STEPS, seed=3, mix_prob=0.0, w_noise=0.0, **FAST)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in trained.state_dict().items())
    assert torch.equal(again.history["total"], trained.history["total"])
    other = train_encoder(G, steps=2, seed=4, **FAST)
    assert not torch.equal(other.fc1.weight, train_encoder(G, steps=2, seed=3, **FAST).fc1.weight)


def test_extra_images_add_an_image_loss(G):
    E = train_encoder(G, steps=3, seed=0, extra_images=_images(G, 6, seed=9), extra_batch_size=4, grey_prob=0.5,
                      **FAST)
    assert (E.history["extra"] > 0).all() and E.train_args["extra_images"] == 6


@pytest.mark.parametrize("kwargs, argument", [
    (dict(steps=0), "steps"), (dict(batch_size=0), "batch_size"), (dict(lr=0.0), "lr"), (dict(seed=-1), "seed"),
    (dict(mix_prob=1.5), "mix_prob"), (dict(w_noise=float("nan")), "w_noise"), (dict(grey_prob=True), "grey_prob"),
    (dict(latent_weight=0, lpips_weight=0, mse_weight=0), "latent_weight"),
    (dict(extra_images=torch.zeros(2, 3, 16, 16)), "extra_images"),
    (dict(extra_images=torch.full((2, 3, 32, 32), 200.0)), "extra_images"),
    (dict(extra_images=torch.zeros(2, 3, 32, 32), lpips_weight=0, mse_weight=0), "extra_images"),
    (dict(channels=()), "channels"),
])
def test_bad_training_arguments_are_refused_before_work(G, kwargs, argument, monkeypatch):
    import ddsutils.core.backbones as backbones

    monkeypatch.setattr(backbones, "lpips_model", lambda *a, **k: pytest.fail("work started"))
    args = {**FAST, "lpips_net": "alex", "steps": 1, **kwargs}
    with pytest.raises(UserError) as exc:
        train_encoder(G, **args)
    assert exc.value.argument == argument


def test_bad_encode_arguments(G, trained):
    with pytest.raises(UserError, match=r"\[N, 3, 32, 32\]"):
        encode(trained, torch.zeros(2, 3, 16, 16))
    with pytest.raises(UserError, match="NaN"):
        encode(trained, torch.full((1, 3, 32, 32), float("nan")))
    with pytest.raises(UserError, match="0..255"):
        encode(trained, torch.full((1, 3, 32, 32), 255.0))
    with pytest.raises(UserError) as exc:
        encode(G, torch.zeros(1, 3, 32, 32))
    assert exc.value.argument == "E"


# ----------------------------------------------------------------------------------------------------
# ddsutils.toy.anchoring on 64 px tiny generators (an untrained encoder): the plumbing, not the numbers


@pytest.fixture(scope="module")
def toy_result(one_thread):
    from ddsutils.toy import judges

    gens = {s: make_tiny_generator(size=64, seed=i, style_dim=32) for i, s in enumerate(("natural", "sketch",
                                                                                          "caricature"))}
    E = Encoder(64, gens["natural"].n_latent, 32, channels=(8, 8, 8, 16, 16), hidden=16)
    return anchoring.evaluate_anchoring(E, n=3, num_steps=2, refine_steps=1, batch_size=2, generators=gens,
                                        style_encoders={"sketch": E}, parser=judges.load_judge("judge-parser-64"),
                                        progress=False)


def test_anchoring_rows_and_checks(toy_result):
    res = toy_result
    got = [(r["source"], r["method"]) for r in res["translation"]]
    assert got == ([("sketch", m) for m in (*anchoring.METHODS, "anchored encoder", *anchoring.BASELINES)]
                   + [("caricature", m) for m in (*anchoring.METHODS, *anchoring.BASELINES)])
    assert [(r["target"], r["method"]) for r in res["pairs"]] == [
        (t, m) for t in ("caricature", "sketch") for m in (*anchoring.METHODS, *anchoring.BASELINES)]
    assert [r["method"] for r in res["reconstruction"]] == list(anchoring.METHODS)
    for r in res["translation"] + res["pairs"]:
        assert 0 <= r["lpips"] < 2 and (r["s_per_image"] is None) == (r["method"] in anchoring.BASELINES)
        assert 0 <= r["in_target"] <= 1 and all(len(v) == 3 for v in r["per_image"].values())
    # the true render of the target style is (almost) all of that style for the domain judge
    assert next(r for r in res["translation"] if r["method"] == "random-identity")["in_target"] > 0.9
    assert set(res["checks"]) == {"sketch->natural", "caricature->natural"}
    assert set(res["differences"]) == {"sketch->natural", "caricature->natural", "natural->caricature",
                                       "natural->sketch"}
    # the random identity is the true natural render of identity i - 1
    truth = res["images"]["truth/natural"]
    rid = next(r for r in res["translation"] if r["method"] == "random-identity")
    from ddsutils.core.metrics import lpips_distance
    assert rid["per_image"]["lpips"] == pytest.approx(
        lpips_distance(truth.roll(1, 0), truth, net="alex").double().tolist())
    text = anchoring.format_tables(json.loads(json.dumps(
        {k: v for k, v in res.items() if k != "images"})))
    assert "| sketch → natural | encoder |" in text and "faster than project" in text


def test_translation_images_rows(toy_result, tmp_path):
    im = toy_result["images"]
    images, labels = anchoring.translation_images(toy_result, k=2)
    assert labels == ["sketch input", "natural truth", *anchoring.METHODS, "anchored encoder",
                      "caricature input", "natural truth", *anchoring.METHODS]
    assert images.shape == (2 * len(labels), 3, 64, 64)
    rows = images.reshape(len(labels), 2, 3, 64, 64)
    assert torch.equal(rows[0], im["truth/sketch"][:2]) and torch.equal(rows[1], im["truth/natural"][:2])
    assert torch.equal(rows[2], im["encoder/sketch->natural"][:2])
    assert torch.equal(rows[5], im["anchored encoder/sketch->natural"][:2])
    assert torch.equal(rows[-1], im["project/caricature->natural"][:2])
    assert anchoring.translation_images(toy_result, k=50)[0].shape[0] == 3 * len(labels)  # at most n
    assert anchoring._grid(toy_result, tmp_path / "g.png", k=2).stat().st_size > 100


def test_anchoring_cli_refuses_before_work(tmp_path, capsys):
    assert anchoring.main(["evaluate", "--encoder", str(tmp_path / "none.pt")]) == 2
    assert "--encoder" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_text("hello")
    assert anchoring.main(["evaluate", "--encoder", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--encoder" in err and "not a PyTorch file" in err
    assert anchoring.main(["evaluate", "--encoder", str(bad), "--n", "1"]) == 2
    assert "--n" in capsys.readouterr().err
    assert anchoring.main(["evaluate", "--encoder", str(bad), "--style-encoder", "natural=x.pt"]) == 2
    out = tmp_path / "e.pt"
    out.write_bytes(b"")
    assert anchoring.main(["train", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
