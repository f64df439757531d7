"""Model distance, layer swap, the neighbourhood scores and the plain fine-tuning options of ``adapt``.

Tiny generators (``conftest.make_tiny_generator``), stub judges and micro adaptation runs of two steps keep the file
well under 30 s on a 2-core CPU.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_generator
from ddsutils.core import neighbours as nb
from ddsutils.core.errors import UserError
from ddsutils.toy import judges, neighbourhood, toyworld
from ddsutils.toy.fewshot import adapt
from ddsutils.toy.train import load_training_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def _z(n: int = 4, dim: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _perturbed_synthesis(G, seed: int = 1):
    """A copy of ``G`` with every synthesis weight moved (the mapping network and noise maps kept)."""
    H = copy.deepcopy(G)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in H.named_parameters():
            if not name.startswith("style."):
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return H


# -- layer swap ---------------------------------------------------------------------------------------

def test_layer_swap_all_and_none_are_the_two_generators():
    G_s, G_t = make_tiny_generator(seed=0), make_tiny_generator(seed=1)
    z = _z()
    with torch.no_grad():
        x_s, x_t = G_s(z), G_t(z)
        assert not torch.equal(x_s, x_t)
        every = nb.layer_swap(G_s, G_t, resolutions=nb.synthesis_resolutions(G_t), mapping=True)
        assert torch.equal(every(z), x_s)  # bit-identical
        assert torch.equal(nb.layer_swap(G_s, G_t, resolutions=())(z), x_t)
        # without the mapping network the images are not G_s's (the two mappings differ)
        assert not torch.equal(nb.layer_swap(G_s, G_t, resolutions=nb.synthesis_resolutions(G_t))(z), x_s)
        assert torch.equal(G_t(z), x_t)  # G_t itself untouched


def test_layer_swap_copies_only_the_named_layers():
    G_s, G_t = make_tiny_generator(seed=0), make_tiny_generator(seed=1)
    S = nb.layer_swap(G_s, G_t, resolutions=(16,))
    sd, sd_s, sd_t = S.state_dict(), G_s.state_dict(), G_t.state_dict()
    swapped = {k for k in sd if k.split(".")[0] + "." + k.split(".")[1] in
               ("convs.2", "convs.3", "to_rgbs.1", "noises.noise_3", "noises.noise_4")}
    assert len(swapped) > 5
    for k, v in sd.items():
        want = sd_s[k] if k in swapped else sd_t[k]
        assert torch.equal(v, want), k
    # StyledConvs only: the 16 px ToRGB stays G_t's
    S2 = nb.layer_swap(G_s, G_t, resolutions=(16,), to_rgb=False)
    assert torch.equal(S2.to_rgbs[1].conv.weight, G_t.to_rgbs[1].conv.weight)
    assert torch.equal(S2.convs[3].conv.weight, G_s.convs[3].conv.weight)
    assert torch.equal(S.style[1].weight, G_t.style[1].weight)  # the mapping network stays G_t's


def test_swapped_resolutions_follow_the_paper():
    G = make_tiny_generator(size=32)
    assert nb.synthesis_resolutions(G) == [4, 8, 16, 32]
    assert [nb.swapped_resolutions(G, v) for v in range(4)] == [(), (8,), (8, 16), (8, 16, 32)]
    with pytest.raises(UserError, match="l: 4"):
        nb.swapped_resolutions(G, 4)
    with pytest.raises(UserError, match="resolutions: 64"):
        nb.layer_swap(G, G, resolutions=(64,))
    with pytest.raises(UserError, match="one architecture"):
        nb.layer_swap(G, make_tiny_generator(size=16), resolutions=(8,))


# -- model distance -----------------------------------------------------------------------------------

def test_model_distance_zero_symmetric_seeded():
    G_a, G_b = make_tiny_generator(seed=0), make_tiny_generator(seed=1)
    kw = dict(n=6, batch_size=4, progress=False)
    assert nb.model_distance(G_a, G_a, **kw) == 0.0
    d_ab = nb.model_distance(G_a, G_b, **kw)
    assert d_ab > 0.01 and d_ab == nb.model_distance(G_b, G_a, **kw) == nb.model_distance(G_a, G_b, **kw)
    assert nb.model_distance(G_a, G_b, seed=1, **kw) != d_ab
    # the table: the same numbers, symmetric, zero diagonal, diversity of each generator
    res = nb.model_distances({"a": G_a, "b": G_b}, **kw)
    assert res["distance"]["a"] == {"a": 0.0, "b": d_ab} and res["distance"]["b"]["a"] == d_ab
    assert res["diversity"]["a"] > 0
    imgs = nb.sample_images(G_a, _z(4))
    assert nb.lpips_diversity(torch.cat([imgs[:1]] * 4)) == 0.0
    for bad, arg in (({"n": 0}, "n"), ({"net": "resnet"}, "net"), ({"seed": -1}, "seed")):
        with pytest.raises(UserError, match=f"^{arg}:"):
            nb.model_distance(G_a, G_b, **{**kw, **bad})
    with pytest.raises(UserError, match="G_b"):
        nb.model_distance(G_a, make_tiny_generator(size=16), **kw)


# -- toy-world scores ---------------------------------------------------------------------------------

def _stub_judges(monkeypatch):
    def parts(parser, img):
        lab = torch.full((img.shape[0], *img.shape[2:]), toyworld.PARTS.index("skin"))
        lab[:, :4] = toyworld.PARTS.index("hair")
        lab[:, 10:12, 8:12] = toyworld.PARTS.index("eyes")
        lab[img[:, 0] > 0.3] = toyworld.PARTS.index("mouth")  # depends on the image
        return lab

    monkeypatch.setattr(judges, "predict_parts", parts)
    monkeypatch.setattr(judges, "predict_styles", lambda seg, img: torch.full(
        (img.shape[0], *img.shape[2:]), toyworld.STYLES.index("caricature")))


def test_swap_curve_ends_at_the_source(monkeypatch, tmp_path: Path):
    _stub_judges(monkeypatch)
    G_s = make_tiny_generator(seed=0)
    G_t = _perturbed_synthesis(G_s)  # a neighbour: same mapping, 4 px block moved too
    res = neighbourhood.swap_curve(G_s, G_t, target_style="caricature", n=6, parser=object(), domain=object(),
                                   fd_fn=lambda a, b: 1.0, progress=False)
    rows = res["rows"]
    assert list(rows) == ["l=0", "l=1", "l=2", "l=3"] and res["resolutions"]["l=3"] == [8, 16, 32]
    assert rows["l=0"]["lpips_s"] > rows["l=3"]["lpips_s"] > 0  # the 4 px block is never swapped
    assert rows["l=0"]["own_style"] == 1.0 and rows["l=0"]["frechet_vgg"] == 1.0 and res["floor"] == 1.0
    # with the 4 px block also G_s's, l = all is G_s itself
    G_t4 = nb.layer_swap(G_s, G_t, resolutions=(4,))
    top = neighbourhood.score_generators({"all": nb.layer_swap(G_s, G_t4, resolutions=(8, 16, 32))}, source=G_s,
                                         target_style="caricature", n=6, parser=object(), domain=object(),
                                         fd_fn=lambda a, b: 1.0, progress=False)["rows"]["all"]
    assert top["lpips_s"] == 0.0 and top["pairing"]["eyes_nose_mouth"] == 1.0 and top["found_all"] == 0.0
    table = neighbourhood.format_scores(res, first="l")
    assert table.count("\n| l=") == 4 and "LPIPS_s" in table
    png = neighbourhood.swap_grid(G_s, G_t, tmp_path / "grid.png", n=3)
    assert png.stat().st_size > 100


def test_swap_images_are_the_source_then_each_level():
    G_s = make_tiny_generator(seed=0)
    G_t = _perturbed_synthesis(G_s)
    images, labels = neighbourhood.swap_images(G_s, G_t, n=3, seed=5)
    assert labels == ["G_s", "l=0", "l=1", "l=2", "l=3"] and images.shape == (15, 3, 32, 32)
    z = _z(3, seed=5)
    assert torch.equal(images[:3], nb.sample_images(G_s, z))  # row 0: the source
    assert torch.equal(images[3:6], nb.sample_images(G_t, z))  # l = 0: G_t itself
    S2 = nb.layer_swap(G_s, G_t, resolutions=(8, 16))
    assert torch.equal(images[9:12], nb.sample_images(S2, z))  # l = 2: 8 and 16 px from G_s
    images, labels = neighbourhood.swap_images(G_s, G_t, levels=[3], n=2)
    assert labels == ["G_s", "l=3"] and images.shape[0] == 4


# -- adaptation baselines -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def micro_source(tmp_path_factory) -> Path:
    """A warm-started source checkpoint from a 16 px tiny generator (two D steps)."""
    d = tmp_path_factory.mktemp("source")
    G = make_tiny_generator(size=16, style_dim=16, channel_max=8)
    torch.save({"g_ema": G.state_dict(), "config": G.config}, d / "g.pt")
    return neighbourhood.warm_start_source(d / "g.pt", d / "source.pt", steps=2, batch=4, d_reg_every=2, eval_n=4,
                                           progress=False)


MICRO_ADAPT = dict(target_style="caricature", n_shots=4, batch=4, subspace_freq=4, d_reg_every=2, g_reg_every=2,
                   sample_every=10**6, ckpt_every=10**6, n_sample=4, log_every=1, progress=False, device="cpu",
                   iters=2)


def test_warm_start_source_is_adaptable(micro_source: Path):
    ck = load_training_checkpoint(micro_source)
    assert all(torch.equal(ck["g"][k], v) for k, v in ck["g_ema"].items())
    assert ck["train_args"]["steps"] == 2 and 0 <= ck["warm_start"]["accuracy"] <= 1
    assert [e["iter"] for e in ck["loss_log"]] == [2]


def test_adapt_finetune_is_plain_finetuning(tmp_path: Path, micro_source: Path):
    cdc = load_training_checkpoint(adapt(micro_source, out_dir=tmp_path / "cdc", **MICRO_ADAPT))
    ft = load_training_checkpoint(adapt(micro_source, out_dir=tmp_path / "ft", method="finetune", **MICRO_ADAPT))
    # CDC: step 1 is a patch step, so the patch head trains and the CDC term is computed
    assert [e["anchor_step"] for e in cdc["loss_log"]] == [True, False] and cdc["extra_optim"]["state"]
    assert "method" not in cdc["train_args"]
    # finetune: no anchors, the patch heads never trained, no CDC term; G and D move
    assert [e["anchor_step"] for e in ft["loss_log"]] == [False, False] and not ft["extra_optim"]["state"]
    assert all(e["cdc"] == 0.0 for e in ft["loss_log"]) and ft["train_args"]["method"] == "finetune"
    src = load_training_checkpoint(micro_source)
    assert any(not torch.equal(ft["g"][k], v) for k, v in src["g"].items())
    assert any(not torch.equal(ft["d"][k], v) for k, v in src["d"].items())
    with pytest.raises(UserError, match="^method: bogus: must be 'cdc'"):
        adapt(micro_source, out_dir=tmp_path / "bad", method="bogus", **MICRO_ADAPT)
    assert not (tmp_path / "bad").exists()


def test_adapt_fc_ft_holds_the_mapping_network(tmp_path: Path, micro_source: Path):
    kw = neighbourhood.baseline_settings("fc-ft", "caricature")
    assert kw["method"] == "finetune" and kw["freeze"] == ("style",)
    assert neighbourhood.baseline_settings("finetune", "sketch")["freeze"] == ()
    assert "convs.5" in neighbourhood.baseline_settings("cdc", "caricature")["freeze"]
    ck = load_training_checkpoint(adapt(micro_source, out_dir=tmp_path / "fc", method=kw["method"],
                                        freeze=kw["freeze"], **MICRO_ADAPT))
    src = load_training_checkpoint(micro_source)["g_ema"]
    style = [k for k in ck["g"] if k.startswith("style.")]
    assert style and all(torch.equal(ck["g"][k], src[k]) for k in style)
    assert any(not torch.equal(ck["g"][k], src[k]) for k in ck["g"] if k.startswith("convs."))


def test_adapt_baselines_passes_ema_kimg(tmp_path: Path, micro_source: Path, monkeypatch):
    seen = []

    def fake_adapt(src, *, out_dir, **kw):  # record the settings; a checkpoint of the source is the "result"
        seen.append(kw)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "log.jsonl").write_text('{"iter": %d, "sec_per_iter": 0.5}\n' % kw["iters"])
        return micro_source

    import ddsutils.toy.fewshot as fewshot
    monkeypatch.setattr(fewshot, "adapt", fake_adapt)
    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "source.pt").write_bytes(micro_source.read_bytes())
    out = neighbourhood.adapt_baselines(methods=["finetune", "cdc"], runs=tmp_path, d_steps=2, iters=3,
                                       ema_kimg=0.05, progress=False)
    assert [kw["ema_kimg"] for kw in seen] == [0.05, 0.05] and [kw["iters"] for kw in seen] == [3, 3]
    assert [kw["method"] for kw in seen] == ["finetune", "cdc"] and list(out["runs"]) == ["finetune", "cdc"]
    assert out["runs"]["cdc"]["settings"]["ema_kimg"] == 0.05 and Path(out["runs"]["cdc"]["file"]).is_file()
    seen.clear()
    neighbourhood.adapt_baselines(methods=["cdc"], runs=tmp_path, d_steps=2, progress=False)
    assert "ema_kimg" not in seen[0]  # adapt's own default (few-shot's half-life)
    with pytest.raises(UserError, match="^ema_kimg:"):
        neighbourhood.adapt_baselines(runs=tmp_path, d_steps=2, ema_kimg=0.0, progress=False)


def test_baseline_generators_and_their_table(monkeypatch):
    _stub_judges(monkeypatch)
    loaded = []

    def fake_load(spec, device="cpu"):
        loaded.append(spec)
        return make_tiny_generator(seed=len(loaded))

    monkeypatch.setattr(neighbourhood, "load_generator", fake_load)
    trained = {"runs": {"finetune": {"file": "ft.pt", "seconds": 12.3}, "fc-ft": {"file": "fc.pt", "seconds": 7.0}}}
    gens = neighbourhood.baseline_generators(trained, target="sketch")
    assert list(gens) == ["natural (source, not adapted)", "toy-sketch-64 (committed CDC)", "TransferGAN (plain FT)",
                          "FC-FT (mapping frozen)"]
    assert loaded == ["toy-natural-64", "toy-sketch-64", "ft.pt", "fc.pt"]
    with pytest.raises(UserError, match="^target:"):
        neighbourhood.baseline_generators(trained, target="anime")
    scores = neighbourhood.score_generators(gens, source=gens["natural (source, not adapted)"], target_style="sketch",
                                            n=4, parser=object(), domain=object(), fd_fn=lambda a, b: 1.0,
                                            progress=False)
    table = neighbourhood.format_baselines(scores, trained)
    assert "| generator | training s |" in table and "| TransferGAN (plain FT) | 12 |" in table
    assert "| FC-FT (mapping frozen) | 7 |" in table and "| toy-sketch-64 (committed CDC) |  |" in table


def test_cli_refuses_bad_arguments_before_work(capsys):
    assert neighbourhood.main(["distance", "--generator", "nonsense"]) == 2
    assert "--generator: nonsense: wants NAME=SPEC" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        neighbourhood.main(["swap", "--n", "0"])
    assert neighbourhood.main(["distance", "--with-baselines", "--runs", "/nonexistent/x"]) == 2
    assert "adapt-baselines --target caricature" in capsys.readouterr().err
