"""Toy ground truth for inversion and translation (ddsutils.toy.inversion): tiny runs on the committed zoo."""
from __future__ import annotations

import json
import math

import pytest
import torch

from ddsutils.core import cli
from ddsutils.core.metrics import lpips_distance
from ddsutils.core.segmenter import mask_iou
from ddsutils.core.stylegan2 import load_generator
from ddsutils.toy import inversion, judges, toyworld

pytestmark = pytest.mark.usefixtures("one_thread")
STYLES = ("natural", "sketch")
N = 2
TINY = dict(styles=STYLES, n=N, num_steps=2, batch_size=2, progress=False)


@pytest.fixture(scope="module")
def zoo():
    return {"generators": {s: load_generator(f"toy-{s}-64") for s in STYLES},
            "parser": judges.load_judge("judge-parser-64")}


@pytest.fixture(scope="module")
def result(zoo, one_thread):
    return inversion.evaluate_inversion(**TINY, **zoo)


def _without_timings(res):
    out = json.loads(json.dumps({k: v for k, v in res.items() if k != "images"}))
    for r in out["reconstruction"].values():
        del r["s_per_image"], r["batch_seconds"]
    return out


def test_keys_shapes_and_ranges(result):
    cfg = result["config"]
    assert cfg["seed"] == inversion.DEFAULT_SEED and cfg["n"] == N and cfg["latent_space"] == "w+"
    assert set(result["reconstruction"]) == set(STYLES)
    for r in result["reconstruction"].values():
        assert 0 <= r["lpips"] < 1 and -1 <= r["ssim"] <= 1 and r["psnr"] > 0 and r["s_per_image"] > 0
        assert len(r["batch_seconds"]) == 1  # n = 2 in one batch of 2
        assert all(len(v) == N for v in r["per_image"].values())
        assert r["lpips"] == pytest.approx(sum(r["per_image"]["lpips"]) / N)
    rows = result["translation"]
    assert [(r["source"], r["target"], r["method"]) for r in rows] == [
        (s, t, m) for s in STYLES for t in STYLES if s != t for m in inversion.METHODS]
    for r in rows:
        assert 0 <= r["lpips"] < 2
        for m in inversion.PART_MASKS:
            assert 0 <= r[f"iou_{m}"] <= 1 and len(r["per_image"][f"iou_{m}"]) == N
    assert set(result["checks"]["beats_random_latent"]) == {"natural->sketch", "sketch->natural"}
    assert isinstance(result["checks"]["natural_lpips"], bool)
    imgs = result["images"]
    for key in ("truth/natural", "reconstruction/sketch", "translation/natural->sketch", "random-latent/natural"):
        assert imgs[key].shape == (N, 3, 64, 64) and imgs[key].abs().max() <= 1
    json.dumps(_without_timings(result), allow_nan=False)  # strict JSON apart from the images
    table = inversion.format_tables({k: v for k, v in result.items() if k != "images"})
    assert "| natural → sketch | random-latent |" in table and "| sketch |" in table
    assert "| sketch → natural | " in table.split("Inversion − random latent")[1]


def test_deterministic(result, zoo):
    again = inversion.evaluate_inversion(**TINY, **zoo)
    assert _without_timings(again) == _without_timings(result)
    for k, v in result["images"].items():
        assert torch.equal(v, again["images"][k]), k


def test_translation_is_scored_against_the_same_identity(result):
    """The inversion row is LPIPS / IoU against the TRUE target render of the same identity, recomputed here
    from scratch; pairing it with another identity (a mutated ground truth) gives other numbers."""
    ids = toyworld.sample_identities(N, seed=inversion.DEFAULT_SEED)
    truth = toyworld.render(ids, style="sketch")[0]
    assert torch.equal(result["images"]["truth/sketch"], truth)
    trans = result["images"]["translation/natural->sketch"]
    row = next(r for r in result["translation"] if (r["source"], r["target"], r["method"]) ==
               ("natural", "sketch", "inversion"))
    direct = lpips_distance(trans, truth).tolist()
    assert row["per_image"]["lpips"] == pytest.approx(direct, abs=1e-6)
    wrong = lpips_distance(trans, truth.flip(0)).tolist()  # the other identity as "truth"
    assert all(abs(a - b) > 1e-3 for a, b in zip(row["per_image"]["lpips"], wrong))
    # the other-identity baseline is exactly that wrong pairing, so it differs from the truth itself
    other = next(r for r in result["translation"] if (r["source"], r["target"], r["method"]) ==
                 ("natural", "sketch", "other-identity"))
    assert other["per_image"]["lpips"] == pytest.approx(lpips_distance(truth.flip(0), truth).tolist(), abs=1e-6)
    assert min(other["per_image"]["lpips"]) > 1e-3


def test_random_latent_baseline_equals_a_direct_computation(result, zoo):
    G, parser = zoo["generators"]["natural"], zoo["parser"]
    z = torch.randn(N, G.style_dim, generator=torch.Generator().manual_seed(inversion.DEFAULT_SEED + 1))[:1]
    with torch.no_grad():
        img = G.synthesis(G.mapping(z)[:, None].repeat(1, G.n_latent, 1), noise="const").clamp(-1, 1)
    truth = toyworld.render(toyworld.sample_identities(N, seed=inversion.DEFAULT_SEED)[:1], style="natural")[0]
    row = next(r for r in result["translation"] if (r["source"], r["target"], r["method"]) ==
               ("sketch", "natural", "random-latent"))
    assert row["per_image"]["lpips"][0] == pytest.approx(float(lpips_distance(img, truth)[0]), abs=1e-6)
    for m in inversion.PART_MASKS:
        iou = mask_iou(toyworld.part_mask(judges.predict_parts(parser, img), m),
                       toyworld.part_mask(judges.predict_parts(parser, truth), m))
        got = row["per_image"][f"iou_{m}"][0]
        assert (math.isnan(got) and math.isnan(float(iou[0]))) or got == pytest.approx(float(iou[0]))


def test_paired_differences_hand_computed():
    def row(method, lpips, iou):
        return {"source": "natural", "target": "sketch", "method": method, "per_image": {
            "lpips": lpips, "iou_eyes_nose_mouth": iou, "iou_hair": [0.5, 0.5, 0.5]}}

    res = {"translation": [row("inversion", [0.1, 0.2, 0.3], [0.5, None, 0.7]),
                           row("random-latent", [0.3, 0.3, 0.3], [0.4, 0.9, 0.4])]}
    cell = inversion.paired_differences(res)["natural->sketch"]
    mu, se, k = cell["lpips"]
    assert (mu, k) == (pytest.approx(-0.1), 3) and se == pytest.approx(0.1 / math.sqrt(3))
    mu, se, k = cell["iou_eyes_nose_mouth"]  # the null image is left out
    assert (mu, k) == (pytest.approx(0.2), 2) and se == pytest.approx(0.1)
    assert cell["iou_hair"][:2] == (0.0, 0.0)


@pytest.mark.parametrize("kw, argument", [
    (dict(styles=("natural", "anime")), "styles"),
    (dict(styles=("natural",)), "styles"),
    (dict(styles=("sketch", "sketch")), "styles"),
    (dict(n=1), "n"),
    (dict(n=0), "n"),
    (dict(num_steps=-1), "num_steps"),
    (dict(batch_size=0), "batch_size"),
    (dict(latent_space="z"), "latent_space"),
    (dict(seed=-3), "seed"),
    (dict(device="tpu"), "device"),
])
def test_bad_arguments_fail_before_any_work(monkeypatch, kw, argument):
    def boom(*a, **k):
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(toyworld, "render", boom)
    monkeypatch.setattr("ddsutils.core.stylegan2.load_generator", boom)
    monkeypatch.setattr("ddsutils.core.projector.project", boom)
    with pytest.raises(cli.UserError) as err:
        inversion.evaluate_inversion(**{**dict(styles=STYLES, n=2, progress=False), **kw})
    assert err.value.argument == argument


def test_cli_tables_json_and_one_line_errors(tmp_path, capsys):
    out = tmp_path / "sub" / "inv.json"
    assert inversion.main(["--styles", "sketch", "natural", "--n", "2", "--steps", "1", "--batch-size", "2",
                           "--quiet", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| sketch → natural | inversion |" in printed and f"wrote {out}" in printed
    data = json.loads(out.read_text())
    assert data["config"]["styles"] == ["sketch", "natural"] and "images" not in data
    assert list(tmp_path.joinpath("sub").iterdir()) == [out]  # atomic: no temp file left
    assert inversion.main(["--styles", "natral", "sketch", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --styles: natral: unknown style (did you mean natural?)") and "\n" not in err
    assert inversion.main(["--n", "1", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: --n: 1: must be >= 2")
