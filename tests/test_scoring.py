"""Toy-world scoring of DDS outputs (ddsutils.scoring) and the ``dds evaluate`` command."""
from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import make_tiny_generator
from ddsutils.core import dds
from ddsutils import dds as dds_cli
from ddsutils.toy import judges, scoring, toyworld

pytestmark = pytest.mark.usefixtures("one_thread")
S = 32


def test_regions_hand_computed():
    y_s = torch.zeros(1, 1, 4, 4)
    y_t = torch.zeros(1, 1, 4, 4)
    y_s[..., 0, :2] = 1
    y_t[..., 0, 1:3] = 1
    inside, outside = scoring.regions(y_s, y_t)
    assert inside[0, 0].tolist() == [True, True, False, False]
    assert outside[0, 0].tolist() == [False, False, False, True]
    assert outside[0, 1:].all() and not inside[0, 1:].any()
    with pytest.raises(ValueError, match=r"\[N, 1, H, W\]"):
        scoring.regions(y_s[:, 0], y_t[:, 0])


def test_style_fractions_hand_computed_and_empty_region():
    styles = torch.tensor([[[0, 2], [2, 2]], [[1, 1], [1, 1]]])
    inside = torch.tensor([[[True, True], [False, False]], [[False, False], [False, False]]])
    outside = ~inside
    fr = scoring.style_fractions(styles, inside, outside, source_style=2, target_style=0)
    assert fr["inside_source"][0].item() == pytest.approx(0.5)
    assert math.isnan(fr["inside_source"][1].item())  # empty region -> NaN, left out of means
    assert fr["outside_target"].tolist() == [0.0, 0.0]
    assert scoring._nanmean(fr["inside_source"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same"):
        scoring.style_fractions(styles[:1], inside, outside, source_style=2, target_style=0)


@pytest.fixture(scope="module")
def small_world():
    torch.manual_seed(0)
    parser = judges.PartParser(channels=(4, 8), size=S).eval()
    domain = judges.DomainSegmenter(channels=(4, 8), size=S).eval()
    gens = {"natural": make_tiny_generator(size=S, seed=0), "caricature": make_tiny_generator(size=S, seed=1)}
    vgg = dds.make_feature_extractor("vgg16", layers="paper", weights="random")
    return dict(generators=gens, parser=parser, domain=domain,
                fd_fn=lambda a, b: float((a.mean(0) - b.mean(0)).abs().mean()),
                optimise_kwargs={"backbone": vgg, "backbone_weights": "random"})


@pytest.mark.filterwarnings("ignore:y_[st] is")
def test_evaluate_rows_and_determinism(small_world):
    kw = dict(pairs=[("caricature", "natural")], masks=["hair"], modes=["paper", "release", "blend"], n=2,
              num_steps=2, fd_n=4, ceiling_n=2, progress=False, **small_world)
    res = scoring.evaluate(**kw)
    assert [r["method"] for r in res["rows"]] == ["crossover", "paste", "dds-paper", "dds-release", "dds-blend",
                                                  "render-composite"]
    for r in res["rows"]:
        for key in ("inside_source", "outside_target"):
            assert r[key] is None or math.isnan(r[key]) or 0.0 <= r[key] <= 1.0
        assert r["floor"] >= 0
        assert {"source", "target", "mask", "method", "relative_inside", "outside_lpips"} <= set(r)
    assert res["images"]["caricature->natural/hair/dds-paper"].shape == (2, 3, S, S)
    again = scoring.evaluate(**kw)
    assert torch.equal(res["images"]["caricature->natural/hair/dds-release"],
                       again["images"]["caricature->natural/hair/dds-release"])
    text = json.dumps(scoring.to_json({k: v for k, v in res.items() if k != "images"}), allow_nan=False)
    assert "dds-paper" in text
    assert "| caricature → natural | hair | crossover |" in scoring.format_table(res)


class _StubJudge(torch.nn.Module):
    """A domain judge that calls a pixel "source style" (2, caricature) when its red channel is above 0.2."""

    kind = judges.KIND_DOMAIN

    def forward(self, img):
        logits = torch.zeros(img.shape[0], len(toyworld.STYLES), *img.shape[-2:])
        logits[:, 2] = (img[:, 0] > 0.2).float() * 10
        logits[:, 0] = 5
        return logits


def test_paste_ceiling_relative_inside_and_outside_identity(small_world, monkeypatch):
    """The paste row is x_s pasted into x_t under the oracle y_s; relative_inside divides by its score;
    the outside LPIPS compares each image with x_t over 1 - max(y_s, y_t)."""
    seen = {}

    def lpips_fn(a, b, *, mask, region):
        seen.setdefault("calls", []).append((a.clone(), b.clone(), mask.clone(), region))
        return (a - b).abs().flatten(1).mean(1)

    monkeypatch.setattr(judges, "predict_styles", lambda judge, img: judge(img).argmax(1))
    # a stub parser: "hair" (part 2) where the red channel is above 0, skin elsewhere
    monkeypatch.setattr(judges, "predict_parts", lambda parser, img: torch.where(img[:, 0] > 0, 2, 1))
    world = {**small_world, "domain": _StubJudge()}
    res = scoring.evaluate(pairs=[("caricature", "natural")], masks=["hair"], modes=["blend"], n=3, num_steps=0,
                           fd_n=0, ceiling_n=0, lpips_fn=lpips_fn, progress=False, **world)
    rows = {r["method"]: r for r in res["rows"]}
    G_s, G_t = small_world["generators"]["caricature"], small_world["generators"]["natural"]
    z = torch.randn(3, G_s.style_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x_s, x_t = G_s(z).clamp(-1, 1), G_t(z).clamp(-1, 1)
    y_s, y_t = scoring._oracle_masks(small_world["parser"], x_s, x_t, "hair")
    paste = x_s * y_s + x_t * (1 - y_s)
    assert torch.equal(res["images"]["caricature->natural/hair/paste"], paste)
    inside = y_s[:, 0] > 0.5
    per_image = [((paste[i, 0] > 0.2) & inside[i]).sum() / inside[i].sum() for i in range(3) if inside[i].any()]
    assert rows["paste"]["inside_source"] == pytest.approx(float(torch.stack(per_image).mean()), abs=1e-6)
    assert rows["paste"]["relative_inside"] == pytest.approx(1.0)
    assert abs(rows["crossover"]["inside_source"] - rows["paste"]["inside_source"]) > 0.01  # the two differ
    for method in ("crossover", "dds-blend"):
        assert rows[method]["relative_inside"] == pytest.approx(
            rows[method]["inside_source"] / rows["paste"]["inside_source"])
    a, b, mask, region = seen["calls"][1]  # the paste's call
    assert torch.equal(a, paste) and torch.equal(b, x_t) and region == "outside"
    assert torch.equal(mask, torch.maximum(y_s, y_t))
    assert rows["paste"]["outside_lpips"] == pytest.approx(float((paste - x_t).abs().flatten(1).mean(1).mean()))


def test_evaluate_bad_arguments(small_world):
    with pytest.raises(ValueError, match="unknown mask"):
        scoring.evaluate(masks=["ears"], n=1, **small_world)
    with pytest.raises(ValueError, match="unknown style"):
        scoring.evaluate(pairs=[("anime", "natural")], n=1, **small_world)
    with pytest.raises(ValueError, match="mask_source"):
        scoring.evaluate(mask_source="oracle", n=1, **small_world)


@pytest.mark.parametrize("kwargs, text", [
    ({"n": 0}, "n: 0: must be >= 1"),
    ({"num_steps": -1}, "num_steps: -1: must be >= 0"),
    ({"num_steps": 2.5}, "num_steps: 2.5: must be a whole number"),
    ({"fd_n": -1}, "fd_n: -1: must be >= 0"),
    ({"ceiling_n": -1}, "ceiling_n: -1: must be >= 0"),
    ({"seed": -1}, "seed: -1: must be >= 0"),
    ({"modes": ["paper", "papr"]}, "modes: papr: unknown mode (did you mean paper?)"),
    ({"modes": []}, "modes: []: is empty"),
    ({"masks": []}, "masks: []: is empty"),
    ({"pairs": [("natural", "natural")]}, "names one style twice"),
    ({"pairs": ["caricature:natural"]}, "must be (source_style, target_style) pairs"),
    ({"pairs": [("caricature", "sketch")]}, "generators: ['caricature', 'natural']: has no generator for sketch"),
    ({"device": "tpu"}, "device: tpu: unknown device"),
    ({"optimise_kwargs": {"num_steps": 3}}, "optimise_kwargs: num_steps: evaluate sets 'num_steps' itself"),
    ({"optimise_kwargs": {"alpha": float("nan")}}, "optimise_kwargs['alpha']: nan: must be a finite number"),
    ({"optimise_kwargs": {"lr": 0}}, "optimise_kwargs['lr']: 0: must be > 0"),
    ({"optimise_kwargs": {"blend_start": 99}}, "optimise_kwargs['blend_start']: 99: start must be"),
    ({"optimise_kwargs": {"backbone": "vgg19"}}, "optimise_kwargs['backbone']: vgg19: unknown backbone"),
])
def test_evaluate_checks_every_argument_before_any_work(small_world, monkeypatch, kwargs, text):
    """Each bad argument is one UserError naming it, raised before any render, judge call or DDS run."""
    from ddsutils.core import cli

    def no_work(*a, **k):
        raise AssertionError("evaluate did work before checking its arguments")

    for mod, name in ((toyworld, "render_batch"), (dds, "optimise"), (judges, "predict_parts"),
                      (judges, "load_judge")):
        monkeypatch.setattr(mod, name, no_work)
    args = {"pairs": [("caricature", "natural")], "masks": ["hair"], "n": 2, "num_steps": 1, "progress": False,
            **kwargs}
    with pytest.raises(cli.UserError) as info:
        scoring.evaluate(**{**small_world, **args})
    assert text in str(info.value)


def test_evaluate_n_one_needs_no_frechet_distance(small_world, monkeypatch):
    from ddsutils.core import cli

    world = {k: v for k, v in small_world.items() if k != "fd_fn"}  # the default Fréchet distance: n >= 2
    with pytest.raises(cli.UserError, match="n: 1: the Fréchet distance needs at least 2 images"):
        scoring.evaluate(pairs=[("caricature", "natural")], masks=["hair"], n=1, **world)
    with pytest.raises(cli.UserError, match="fd_n: 1: must be 0 .* or >= 2"):
        scoring.evaluate(pairs=[("caricature", "natural")], masks=["hair"], n=2, fd_n=1, **world)


def test_evaluate_resolves_feature_weights_first(small_world, monkeypatch, tmp_path):
    """Offline with an empty weights cache: the mode's VGG-16 is reported before anything is rendered."""
    from ddsutils.core import cli

    monkeypatch.setenv("DDS_OFFLINE", "1")
    monkeypatch.setenv("DDS_WEIGHTS_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(toyworld, "render_batch", lambda *a, **k: pytest.fail("rendered before the weights check"))
    world = {**small_world, "optimise_kwargs": {}}
    with pytest.raises(cli.UserError, match="modes: paper: .*vgg16-imagenet.*Offline mode is on"):
        scoring.evaluate(pairs=[("caricature", "natural")], masks=["hair"], modes=["blend", "paper"], n=2,
                         lpips_fn=lambda *a, **k: None, progress=False, **world)


def test_cli_rejects_malformed_pairs(capsys):
    for bad, text in (("caricature-natural", "--pairs: caricature-natural: wants source:target items"),
                      ("anime:natural", "--pairs: anime: unknown toy style"),
                      ("natural:natural", "--pairs: natural:natural: names one style twice")):
        assert dds_cli.main(["evaluate", "--pairs", bad, "--n", "1"]) == 2
        assert text in capsys.readouterr().err


def test_cli_set_parses_optimise_keywords():
    from ddsutils.core import cli

    assert dds_cli._parse_settings(["alpha=5", "init=z_star", "backbone=lpips-alex", "dilation=2"]) == {
        "alpha": 5.0, "init": "z_star", "backbone": "lpips-alex", "dilation": 2}
    for items, text in ((["num_steps=3"], "--set: num_steps=3: num_steps is set with --steps"),
                        (["alpha"], "--set: alpha: wants KEY=VALUE"),
                        (["alhpa=1"], r"--set: alhpa: unknown optimise keyword \(did you mean alpha\?\)"),
                        (["alpha=abc"], "--set alpha: abc: must be a number"),
                        (["dilation=1.5"], "--set dilation: 1.5: must be a whole number")):
        with pytest.raises(cli.UserError, match=text):
            dds_cli._parse_settings(items)


def test_to_json_replaces_nan():
    assert scoring.to_json({"a": float("nan"), "b": (1.0, 2)}) == {"a": None, "b": [1.0, 2]}
    assert toyworld.STYLES.index("caricature") == 2  # the style ids the scores refer to


def test_format_scores_one_line_per_method():
    text = scoring.format_scores({"paste": {"inside_source": 0.5, "relative_inside": 1.0, "outside_target": 0.9,
                                            "outside_lpips": 0.01, "outside_l1": 0.0},
                                  "render-composite": {"inside_source": 0.95, "outside_target": 0.99}})
    lines = text.splitlines()
    assert lines[2] == "| paste | 0.500 | 1.00 | 0.900 | 0.010 | 0.000 |"
    assert lines[3] == "| render-composite | 0.950 | – | 0.990 | – | – |"


def test_outside_l1_leaves_out_a_margin_around_the_masks():
    x_t = torch.zeros(2, 3, 20, 20)
    y = torch.zeros(2, 1, 20, 20)
    y[:, :, 8:12, 8:12] = 1
    img = x_t.clone()
    img[:, :, 6:14, 6:14] = 1.0  # changed inside the masks and up to 2 px around them
    assert scoring.outside_l1(img, x_t, y, y, margin=2).tolist() == [0.0, 0.0]
    near = scoring.outside_l1(img, x_t, y, y, margin=1)  # the ring at distance 2 now counts
    assert torch.all(near > 0)
    assert torch.equal(scoring.outside_l1(img, x_t, y, y), near)  # default margin: 20 // 20 = 1 px
    img[1, :, 0, 0] = -1.0  # one far pixel of image 1 differs by 1
    far = (20 * 20 - 8 * 8)
    assert scoring.outside_l1(img, x_t, y, y, margin=2)[1].item() == pytest.approx(1 / far)
    assert torch.isnan(scoring.outside_l1(img, x_t, torch.ones_like(y), y)).all()  # nothing far from the masks
