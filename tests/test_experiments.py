"""Experiments (Table 1, Fig. 7, Fig. 8, Table 2, modes, baselines) at a micro scale on the committed toy zoo."""
from __future__ import annotations

import json

import pytest
import torch

from ddsutils.core import dds
from ddsutils.core.cli import UserError
from ddsutils.lab import experiments
from ddsutils.lab import notebook as NB

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.filterwarnings("ignore:y_[st] is")]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    return experiments.Context("ci", n=2, num_steps=2, snapshot_every=1, n_ref=8, out=out)


def test_context_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown profile"):
        experiments.Context("huge")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['steps'\]"):
        experiments.Context("ci", steps=3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            experiments.Context("paper")


def test_table1_saves_rows_claims_and_images(ctx):
    res = experiments.table1(ctx, progress=False)
    methods = ["dds-paper", "dds-release", "dds-blend", "dds-refine", "paste"]
    assert [(r["method"], r["reference"]) for r in res["rows"]] == [(m, ref) for m in methods
                                                                   for ref in ("D_s", "x_c", "D_t")]
    for r in res["rows"]:
        assert r["fd"] >= 0 and -1 <= r["ssim"] <= 1 and 0 <= r["inside_source"] <= 1
    paste = [r for r in res["rows"] if r["method"] == "paste"]
    assert all(r["relative_inside"] == pytest.approx(1.0) for r in paste if r["inside_source"] > 0)
    exp = "caricature->natural/eyes_nose_mouth"
    assert set(res["claims"][f"{exp}/dds-blend"]) == {"fd", "kid", "ssim", "psnr", "all"}
    assert isinstance(res["claims"]["closer_to_D_t_on_every_metric/dds-refine"], bool)
    saved = json.loads((ctx.out / "table1.json").read_text())
    assert saved["rows"] == res["rows"] and "not FID" in saved["distance_label"]
    imgs = torch.load(ctx.out / "table1.pt", weights_only=True)
    assert imgs[f"{exp}/dds"].shape == (2, 3, 64, 64) and imgs[f"{exp}/x_c"].abs().max() <= 1
    assert set(imgs) >= {f"{exp}/{m}" for m in ("dds-release", "dds-blend", "dds-refine", "paste")}
    assert len(list((ctx.out / "dds").glob("*.pt"))) == 4  # one cached run per mode


def test_fig7_reuses_the_cached_run(ctx, monkeypatch):
    experiments.table1(ctx, progress=False)

    def boom(*a, **k):
        raise AssertionError("the cached DDS run should have been reused")

    monkeypatch.setattr(dds, "optimise", boom)
    res = experiments.fid_during_optimisation(ctx, progress=False)
    assert [r["step"] for r in res["rows"]] == [0, 1, 2]  # snapshots 0, 1 and the final step, no duplicate
    assert isinstance(res["claims"]["caricature->natural/eyes_nose_mouth"]["D_t_falls_faster"], bool)


def test_sweep_modes_and_markdown(ctx):
    sweep = experiments.loss_weight_sweep(ctx, progress=False)
    assert [(r["weight"], r["value"]) for r in sweep["rows"]] == [
        ("alpha", 0.0), ("alpha", 0.9), ("alpha", 1.0), ("beta", 0.0), ("beta", 1.0),
        ("gamma", 0.0), ("gamma", 0.5), ("gamma", 1.0)]  # sweep_values [0, 1] plus the paper's value
    assert sweep["claims"]["most_sensitive"] in ("alpha", "beta", "gamma")
    modes = experiments.mode_comparison(ctx, progress=False)
    assert [r["variant"] for r in modes["rows"]] == list(experiments.MODE_VARIANTS)
    text = experiments.format_markdown(modes)
    assert text.count("\n| ") == len(experiments.MODE_VARIANTS) + 1 and "z_star_worse_than_random" in text


def test_backbone_ablation_reports_unavailable_weights(ctx, monkeypatch, tmp_path):
    monkeypatch.setenv("DDS_WEIGHTS_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("DDS_OFFLINE", "1")
    monkeypatch.setitem(ctx.cfg, "backbones", ["resnet18"])
    res = experiments.backbone_ablation(ctx, progress=False)
    assert res["rows"] == [{"backbone": "resnet18", "skipped": res["claims"]["skipped"]["resnet18"]}]
    assert res["rows"][0]["skipped"] == "WeightsUnavailableError: weights 'resnet18-imagenet' are not available"


def test_random_init_does_not_start_at_z_star(ctx):
    p = ctx.pair("caricature", "natural", "eyes_nose_mouth")
    r = ctx.dds("caricature", "natural", "eyes_nose_mouth", progress=False)
    step0, img0 = r["snapshots"][0]
    assert int(step0) == 0
    assert (img0 - p["x_t"]).abs().mean(dim=(1, 2, 3)).min() > 0.05  # G_t(ẑ_0) is another face than x_t


def test_sweep_varies_one_weight_and_reuses_the_base_run(ctx, monkeypatch):
    calls = []
    real = ctx.dds

    def spy(*a, **kw):
        calls.append({k: v for k, v in kw.items() if k != "progress"})
        return real(*a, **kw)

    monkeypatch.setattr(ctx, "dds", spy)
    experiments.loss_weight_sweep(ctx, progress=False)
    assert all(len(c) <= 1 for c in calls)
    assert {"beta": 0.0} in calls and {} in calls and {"beta": 1.0} not in calls


def test_segmenter_mask_source_needs_a_segmenter(tmp_path):
    c = experiments.Context("ci", mask_source="segmenter", out=tmp_path)
    with pytest.raises(ValueError, match="needs a trained segmenter for 'eyes_nose_mouth'.*02_oneshot_segmenter"):
        c.pair("caricature", "natural", "eyes_nose_mouth")


def test_table1_in_the_papers_layout():
    rows = [{"experiment": f"{p}/{m}", "reference": ref, "fd": 10.0 * i, "kid": 0.0, "ssim": 0.5, "psnr": 20.0}
            for i, (p, m, ref) in enumerate((p, m, ref) for m in ("eyes_nose_mouth", "hair")
                                            for p in ("caricature->natural", "natural->caricature")
                                            for ref in ("D_s", "x_c", "D_t"))]
    rows += [{**r, "method": "dds-blend", "fd": r["fd"] + 1} for r in rows]  # a second method's block
    text = experiments.format_table1({"name": "table1", "rows": rows, "distance_label": "Fréchet ... (not FID)"})
    lines = text.splitlines()
    assert lines[0].startswith("| method | mask | reference | caricature→natural FD-VGG ↓ | caricature→natural SSIM ↑")
    assert len(lines) == 2 + 12  # header, rule, (D_s, {x_c}, D_t) per mask and method
    assert lines[3] == "| dds-paper | eyes_nose_mouth | {x_c} | 10.000 | 0.500 | 20.000 | 40.000 | 0.500 | 20.000 |"
    assert lines[7].startswith("| dds-paper | hair | D_t | 80.000 |")
    assert lines[9] == "| dds-blend | eyes_nose_mouth | {x_c} | 11.000 | 0.500 | 20.000 | 41.000 | 0.500 | 20.000 |"


def test_dds_cache_key_follows_the_generator_weights(ctx, monkeypatch):
    import copy

    ctx.dds("caricature", "natural", "eyes_nose_mouth", progress=False)  # cached (or already cached)

    class Ran(Exception):
        pass

    def ran(*a, **k):
        raise Ran

    monkeypatch.setattr(dds, "optimise", ran)
    same = experiments.Context("ci", n=2, num_steps=2, snapshot_every=1, n_ref=8, out=ctx.out)
    same.dds("caricature", "natural", "eyes_nose_mouth", progress=False)  # a fresh context hits the cache
    retrained = experiments.Context("ci", n=2, num_steps=2, snapshot_every=1, n_ref=8, out=ctx.out)
    G = copy.deepcopy(ctx.generator("natural"))
    with torch.no_grad():
        G.to_rgbs[-1].bias.add_(1e-7)  # same name, (almost) same images and masks, other weights
    retrained._gens["natural"] = G
    assert retrained.generator_digest("natural") != same.generator_digest("natural")
    with pytest.raises(Ran):
        retrained.dds("caricature", "natural", "eyes_nose_mouth", progress=False)


# ----------------------------------------------------------------------------------------------------
# Profiles: the domains: and experiments: sections of notebooks/params/<profile>.yaml


def _yaml_profile(tmp_path, edit):
    """A copy of ci.yaml, parsed, changed by ``edit(dict)`` and written to ``tmp_path/p.yaml``."""
    import yaml

    data = yaml.safe_load((NB.params_dir() / "ci.yaml").read_text())
    edit(data)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("profile", NB.PROFILES)
def test_every_profiles_experiments_section_validates(profile):
    settings = experiments.profile_settings(profile)
    assert list(settings) == list(experiments.SETTINGS)
    domains = NB.domains(profile)
    assert settings["generators"] == {name: d.generator for name, d in domains.items()}
    assert {d for pair in settings["pairs"] for d in pair} <= set(domains)
    assert dict(experiments.PROFILES[profile]) == settings  # the read-only view reads the same file


def test_profiles_is_a_read_only_view_of_the_yaml_files():
    assert list(experiments.PROFILES) == list(NB.PROFILES) and len(experiments.PROFILES) == 3
    with pytest.raises(TypeError):
        experiments.PROFILES["ci"]["n"] = 3  # type: ignore[index]
    with pytest.raises(KeyError):
        experiments.PROFILES["huge"]
    assert experiments.PROFILES["demo"]["num_steps"] == 50 and experiments.PROFILES["paper"]["fd"] == "inception"


def test_settings_and_generators_come_from_the_yaml_file(tmp_path):
    def edit(d):
        d["experiments"]["n"] = 3
        d["domains"]["natural"]["generator"] = "runs/my-natural.pt"

    settings = experiments.profile_settings(_yaml_profile(tmp_path, edit))
    assert settings["n"] == 3 and settings["generators"]["natural"] == "runs/my-natural.pt"
    assert settings["generators"]["caricature"] == "toy-caricature-64"


@pytest.mark.parametrize("edit, text", [
    (lambda d: d["domains"]["caricature"].pop("style"), "domain 'caricature' has no style"),
    (lambda d: d["domains"]["caricature"].update(style="cartoon"), "unknown toy-world style"),
    (lambda d: d["domains"]["sketch"].pop("generator"), "domain 'sketch' has no generator"),
    (lambda d: d["domains"].update(toon="toy-caricature-64"), "domain 'toon' must be a mapping"),
    (lambda d: d["domains"]["sketch"].update(size=64), r"domain 'sketch' has unknown keys \['size'\]"),
    (lambda d: d["experiments"].pop("lr"), r"experiments: missing setting\(s\) \['lr'\]"),
    (lambda d: d["experiments"].update(num_step=3), r"unknown setting\(s\) \['num_step'\] \(did you mean num_steps"),
    (lambda d: d["experiments"].update(generators={"x": "y"}), "generators come from the profile's domains"),
    (lambda d: d["experiments"].update(n=1), r"experiments.n: 1: must be >= 2"),
    (lambda d: d["experiments"].update(pairs=[["caricature", "cartoon"]]),
     "experiments.pairs: cartoon: unknown domain"),
    (lambda d: d["domains"].clear(), "p.yaml: domains: .*must map domains to generator names"),
    (lambda d: d.update(experiment={}), "top-level keys must be"),
])
def test_bad_profiles_are_refused_with_a_clear_error(tmp_path, edit, text):
    with pytest.raises(UserError, match=text):
        experiments.profile_settings(_yaml_profile(tmp_path, edit))


def test_judges_score_the_domains_style_not_its_name(ctx, monkeypatch):
    s, t, m = "caricature", "natural", "eyes_nose_mouth"
    img = ctx.paste(s, t, m)
    real = ctx.judge(img, s, t, m)
    assert real["inside_source"] > 0.2  # the pasted caricature part is judged caricature
    sketch = NB.Domain("caricature", "toy-caricature-64", "sketch")
    monkeypatch.setattr(ctx, "domains", {**ctx.domains, "caricature": sketch})
    assert ctx.judge(img, s, t, m)["inside_source"] < real["inside_source"] / 2
    monkeypatch.setattr(ctx, "domains", {k: v for k, v in ctx.domains.items() if k != "caricature"})
    assert ctx.judge(img, s, t, m) == {}  # a domain without a style: no judge scores
