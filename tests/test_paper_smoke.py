"""The paper-smoke path (ddsutils.lab.smoke): the derived profile (fast) and the whole run list at 256 px (slow)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from ddsutils.core import paths
from ddsutils.core.cli import UserError
from ddsutils.core.stylegan2 import default_channels, load_generator
from ddsutils.lab import experiments, notebook, smoke

PAPER_GENERATORS = ("ffhq-256", "fewshot-caricature-256", "fewshot-sketch-256")


@pytest.fixture(scope="module")
def derived(tmp_path_factory):
    """``(paper profile as YAML data, derived profile, its file, {name: random file})`` (files not written)."""
    out = tmp_path_factory.mktemp("smoke")
    files = {name: out / "generators" / f"{name}.pt" for name in PAPER_GENERATORS}
    prof_file = out / "paper-smoke.yaml"
    prof = smoke.smoke_profile(files, device="cpu", profile_file=prof_file, label_folder=out / "masks")
    prof_file.write_text(yaml.safe_dump(prof, sort_keys=False))
    paper = yaml.safe_load((notebook.params_dir() / "paper.yaml").read_text())
    return paper, prof, prof_file, {k: str(v.resolve()) for k, v in files.items()}


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def test_every_generator_is_a_random_file(derived):
    paper, prof, _, files = derived
    assert {d["generator"] for d in paper["domains"].values()} == set(files)  # the paper's 256 px generators
    assert {name: d["generator"] for name, d in prof["domains"].items()} == \
        {name: files[d["generator"]] for name, d in paper["domains"].items()}
    assert not set(_strings(prof)) & set(files), "a paper generator name is left in the derived profile"
    nbs = prof["notebooks"]
    assert nbs["01_load_generators"]["generators"] == [files[g] for g in paper["notebooks"]["01_load_generators"]
                                                       ["generators"]]
    for stem in ("02_oneshot_segmenter", "03_dds_optimisation"):
        assert {nbs[stem]["source"], nbs[stem]["target"]} <= set(files.values())


def test_sizes_devices_and_profile(derived):
    _, prof, prof_file, _ = derived
    assert prof["shared"]["profile"] == str(prof_file.resolve()) and prof["shared"]["device"] == "cpu"
    assert prof["experiments"]["device"] == "cpu" and "cuda" not in set(_strings(prof))
    for section in (prof["experiments"], *(prof["notebooks"][s] for s in notebook.RUN_LIST)):
        for key in ("num_steps", "n", "n_ref", "steps", "iters", "d_steps", "refine_steps"):
            if key in section:
                assert section[key] == smoke.SMOKE_SETTINGS[key], (key, section)
    for stem in notebook.RUN_LIST:  # also where the paper profile leaves a notebook's default (06's steps)
        spec = notebook.parameter_spec(stem)
        for key, value in smoke.SMOKE_SETTINGS.items():
            if key in spec:
                assert prof["notebooks"][stem][key] == value, (stem, key)
    assert prof["notebooks"]["09_your_own_image"]["num_steps"] == 2


def test_everything_else_is_the_paper_profile(derived):
    paper, prof, _, files = derived
    changed = set(smoke.SMOKE_SETTINGS) | {"device", "label_png", "pairs", "masks", "sweep_values", "fd", "mask_source"}
    for key, value in paper["experiments"].items():
        if key not in changed:
            assert prof["experiments"][key] == value, key
    for stem, section in paper["notebooks"].items():
        assert set(section) <= set(prof["notebooks"][stem]), stem  # no parameter dropped
        for key, value in section.items():
            if key not in changed and not (set(_strings(value)) & set(files)):
                assert prof["notebooks"][stem][key] == value, (stem, key)
    exp = prof["experiments"]
    assert exp["fd"] == paper["experiments"]["fd"] or exp["fd"] == "vgg"
    assert prof["notebooks"]["04_ablations"]["sweep_values"] == [0.0, 2.0]
    assert prof["notebooks"]["09_your_own_image"]["mask_png"].endswith("masks/eyes_nose_mouth.png")
    assert prof["notebooks"]["05_metrics"]["pairs"] == paper["notebooks"]["05_metrics"]["pairs"][:1]


def test_derived_profile_is_accepted_by_notebooks_and_experiments(derived):
    _, prof, prof_file, files = derived
    notebook.check_profile(str(prof_file))  # every key a declared parameter of the right type
    assert notebook.domain(str(prof_file), "natural").generator == files["ffhq-256"]
    ctx = experiments.Context(str(prof_file), device="cpu")  # what 04 / 05 / 07 do with `profile`
    assert ctx.cfg["num_steps"] == 2 and ctx.cfg["generators"]["caricature"] == files["fewshot-caricature-256"]
    assert ctx.out == paths.runs_dir() / "paper-smoke" / "results"


def test_label_png_is_written_where_the_profile_says(derived, tmp_path):
    _, prof, _, _ = derived
    label = Path(prof["notebooks"]["02_oneshot_segmenter"]["label_png"])
    assert label.name == "eyes_nose_mouth.png" and label.parent.name == "masks"
    inside = smoke.smoke_profile({}, device="cpu", profile_file=tmp_path / "p.yaml",
                                 label_folder=paths.runs_dir() / "paper-smoke" / "masks")
    assert inside["notebooks"]["02_oneshot_segmenter"]["label_png"] == "runs/paper-smoke/masks/eyes_nose_mouth.png"


def test_random_generators_are_deterministic_and_load(tmp_path):
    a = smoke.write_random_generators(["g"], tmp_path / "a", seed=3)["g"]
    b = smoke.write_random_generators(["g"], tmp_path / "b", seed=3)["g"]
    G = load_generator(a)
    assert (G.size, G.style_dim, G.n_mlp, G.latent_avg.shape) == (256, 512, 8, (1, 512))
    assert G.channels == {r: c for r, c in default_channels(channel_multiplier=2).items() if r <= 256}
    assert sum(p.numel() for p in G.parameters()) == 30_034_338  # rosinality's FFHQ-256 generator
    sa, sb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert all(torch.equal(sa["g_ema"][k], sb["g_ema"][k]) for k in sa["g_ema"])


@pytest.mark.parametrize("kwargs, match", [({"device": "tpu"}, "unknown device"),
                                           ({"names": ["03_dds"]}, "unknown notebook"),
                                           ({"cell_timeout": 0}, "--cell-timeout")])
def test_bad_input_fails_before_any_work(tmp_path, kwargs, match):
    with pytest.raises(UserError, match=match):
        smoke.paper_smoke(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        smoke.paper_smoke(tmp_path / "file", device="cpu")


@pytest.mark.slow
def test_paper_smoke_end_to_end(tmp_path):
    """The run list at the derived profile on the CPU (about 20 min on one core)."""
    rows = smoke.paper_smoke(tmp_path / "smoke", device="cpu")
    names = ["02_oneshot_segmenter (hair)", *notebook.RUN_LIST]  # 04 / 05 / 07 need segmenter_hair.pt too
    assert [(r["name"], r["status"]) for r in rows] == [(n, "ok") for n in names]
    for name in [*notebook.RUN_LIST, "02_oneshot_segmenter_hair"]:
        assert (tmp_path / "smoke" / f"{name}.ipynb").is_file(), name
    res = torch.load(tmp_path / "smoke" / "03_dds_results.pt", weights_only=False)
    assert tuple(res["paper"]["image"].shape) == (2, 3, 256, 256)
    assert (tmp_path / "smoke" / "segmenter_hair.pt").is_file()
    assert json.loads((tmp_path / "smoke" / "03_dds.json").read_text())["modes"]["paper"]["config"]["num_steps"] == 2
