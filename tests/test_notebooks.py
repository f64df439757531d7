"""The notebook contract: parameter profiles, the parameters cell, stripped files, short cells.

These tests only read the notebooks (and let papermill inject parameters without executing); running the
notebooks is the job of ``make test``'s second step (nbval over ci-parameterised copies in build/ci).
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ddsutils.lab import notebook as NB

NOTEBOOKS = sorted(NB.notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
RUN = [NB.notebook_path(name) for name in NB.RUN_LIST if NB.notebook_path(name).is_file()]
MAX_CELL_LINES = 15
MAX_DEF_LINES = 6  # a `def` in a notebook is a one-liner helper at most; anything longer goes to ddsutils


def _nb(path: Path) -> dict:
    return json.loads(path.read_text())


def _src(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _params_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_run_list_and_files_agree():
    assert NOTEBOOKS, "no notebooks found"
    for name in NB.RUN_LIST:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+", name), name
    assert list(NB.RUN_LIST) == sorted(NB.RUN_LIST), "the run list is in reading order (by number)"
    delivered = ["00_setup_and_weights", "01_load_generators", "02_oneshot_segmenter", "03_dds_optimisation",
                 "08_fewshot_adaptation"]
    for name in delivered:
        assert NB.notebook_path(name).is_file(), name
    orphans = [p.stem for p in NOTEBOOKS if p.stem not in NB.RUN_LIST and p.stem != NB.FIGURES_NOTEBOOK]
    assert not orphans, f"notebooks missing from ddsutils.notebook.RUN_LIST: {orphans}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_exactly_one_parameters_cell_of_literals(path):
    nb = _nb(path)
    cells = _params_cells(nb)
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters'"
    assert cells[0]["cell_type"] == "code"
    names = []
    for stmt in ast.parse(_src(cells[0])).body:
        assert isinstance(stmt, (ast.Assign, ast.AnnAssign)), f"{path.name}: only assignments, got {ast.dump(stmt)}"
        target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
        assert isinstance(target, ast.Name) and re.fullmatch(r"[a-z][a-z0-9_]*", target.id), ast.dump(target)
        ast.literal_eval(stmt.value)  # literals only: papermill cannot recompute derived values
        names.append(target.id)
    declared = NB.declared_parameters(path)
    # papermill skips lines it cannot parse (e.g. a help comment with '='): then an override would not apply
    assert list(declared) == names, f"{path.name}: papermill sees {list(declared)}, the cell assigns {names}"
    for name in NB.REQUIRED_PARAMETERS:
        assert name in declared, f"{path.name} does not declare {name!r}"


@pytest.mark.parametrize("profile", NB.PROFILES)
def test_profile_keys_are_declared_parameters(profile):
    prof = NB.load_profile(profile)
    assert prof["shared"].get("profile") == profile
    unknown = set(prof["notebooks"]) - set(NB.RUN_LIST) - {NB.FIGURES_NOTEBOOK}
    assert not unknown, f"{profile}.yaml has sections for unknown notebooks: {sorted(unknown)}"
    for path in RUN:
        declared = NB.declared_parameters(path)
        undeclared = sorted(set(NB.notebook_parameters(profile, path.stem)) - set(declared))
        assert not undeclared, f"{profile}.yaml gives {path.name} undeclared parameters {undeclared}"
    for name, section in prof["notebooks"].items():
        if NB.notebook_path(name).is_file():
            assert set(section) <= set(NB.declared_parameters(name)), (profile, name)


@pytest.mark.parametrize("path", RUN, ids=_ids(RUN))
def test_defaults_are_the_demo_profile(path):
    """The parameters cell holds the demo values, and demo.yaml spells out every knob ci / paper change."""
    declared = NB.declared_parameters(path)
    defaults = {k: ast.literal_eval(v["default"]) for k, v in declared.items()}
    demo = NB.notebook_parameters("demo", path.stem)
    differ = {k: (defaults[k], v) for k, v in demo.items() if defaults[k] != v}
    assert not differ, f"{path.name}: (notebook default, demo.yaml) differ: {differ}"
    for profile in ("ci", "paper"):
        extra = set(NB.load_profile(profile)["notebooks"].get(path.stem, {})) - set(demo)
        assert not extra, f"{profile}.yaml sets {sorted(extra)} for {path.name}; list them in demo.yaml too"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_notebook_is_stripped(path):
    nb = _nb(path)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name} has outputs"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "widgets" not in nb["metadata"] and "papermill" not in nb["metadata"]


def test_nbstripout_verify():
    """nbstripout's own check (what `make strip` / the git filter would change); tags are kept by it."""
    pytest.importorskip("nbstripout")
    r = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", *map(str, NOTEBOOKS)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"run `make strip`:\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_cells_are_short_and_thin(path):
    nb = _nb(path)
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and _src(first).startswith("# ")
    assert "Prerequisites" in _src(first) and "What you will learn" in _src(first)
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = _src(cell)
        assert len(src.splitlines()) <= MAX_CELL_LINES, f"{path.name} cell {i}: {len(src.splitlines())} lines"
        assert "sys.path" not in src and "import *" not in src, f"{path.name} cell {i}"
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                n = node.end_lineno - node.lineno + 1
                assert n <= MAX_DEF_LINES, f"{path.name} cell {i}: `{node.name}` is {n} lines; move it to ddsutils"
    assert "from ddsutils." in "".join(_src(c) for c in nb["cells"] if c["cell_type"] == "code")


def test_prepare_injects_after_the_parameters_cell(tmp_path):
    """papermill (prepare only) puts the ci values in an `injected-parameters` cell right after ours."""
    pytest.importorskip("papermill")
    name = NB.RUN_LIST[0]
    out = NB.prepare("ci", tmp_path, [name])[0]
    nb = _nb(out)
    tags = [c.get("metadata", {}).get("tags", []) for c in nb["cells"]]
    i = next(k for k, t in enumerate(tags) if "parameters" in t)
    assert "injected-parameters" in tags[i + 1]
    assert 'profile = "ci"' in _src(nb["cells"][i + 1])


def test_oracle_label_truncation_zero_labels_the_mean_face(monkeypatch):
    import torch

    from conftest import make_tiny_generator
    from ddsutils.toy import judges

    def stub_parts(parser, img):  # skin, with hair in the top third
        lab = torch.ones(img.shape[0], *img.shape[-2:], dtype=torch.long)
        lab[:, : img.shape[-1] // 3] = 2
        return lab

    monkeypatch.setattr(judges, "load_judge", lambda name: "stub")
    monkeypatch.setattr(judges, "predict_parts", stub_parts)
    G = make_tiny_generator(size=32)
    with torch.no_grad():
        mean_face = G(G.truncation_centre(), input_space="w").clamp(-1, 1)
        z, label, img = NB.oracle_label(G, "hair", seed=0, truncation=0.0)
        assert torch.allclose(img, mean_face, atol=1e-5) and label.shape == (1, 1, 32, 32) and label.sum() > 0
        assert torch.allclose(G(z, truncation=0.0, truncation_latent=G.truncation_centre()).clamp(-1, 1), img,
                              atol=1e-5)
        _, _, untruncated = NB.oracle_label(G, "hair", seed=0)
        assert not torch.allclose(untruncated, mean_face, atol=1e-2)
    monkeypatch.setattr(judges, "predict_parts", lambda parser, img: torch.ones(img.shape[0], 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="usable 'hair' mask.*mean face: try truncation=1"):
        NB.oracle_label(G, "hair", truncation=0.0)


@pytest.mark.parametrize("profile", sorted(p.stem for p in NB.params_dir().glob("*.yaml")))
def test_every_profile_passes_the_runners_parameter_check(profile):
    """The check `notebook run` does before starting a kernel (names and types against each parameters cell)."""
    NB.check_profile(profile)


def test_parameter_spec_reads_types_and_defaults():
    spec = NB.parameter_spec("04_ablations")
    assert spec["n"] == ("int", 4) and spec["pairs"][0] == "list" and spec["profile"] == ("str", "demo")
    NB.check_parameters("04_ablations", {"n": 2, "pairs": [["sketch", "natural"]], "lr": 1} if "lr" in spec else
                        {"n": 2, "pairs": [["sketch", "natural"]]})


def test_every_profile_names_its_domains():
    """Domains are data (name, generator, toy-world style), not guessed from a generator's name."""
    from ddsutils.toy import toyworld

    for profile in NB.PROFILES:
        doms = NB.domains(profile)
        assert {"natural", "caricature", "sketch"} <= set(doms), profile
        assert all(d.name == name and d.generator and d.style in toyworld.STYLES for name, d in doms.items())
    assert NB.domain("ci", "sketch") == NB.Domain("sketch", "toy-sketch-64", "sketch")
    assert NB.domain("paper", "natural").generator == "ffhq-256"
    with pytest.raises(ValueError, match=r"unknown domain of profile 'ci' \(did you mean sketch\?\)"):
        NB.domain("ci", "sketchy")


def test_the_runner_refuses_a_domain_without_a_style(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("shared: {profile: ci, device: cpu, seed: 0}\n"
                    "domains:\n  toon: {generator: toy-caricature-64}\n")
    with pytest.raises(ValueError, match=r"p.yaml: domain 'toon' has no style \(a non-empty text"):
        NB.check_profile(str(path), ["01_load_generators"])
    path.write_text("shared: {profile: ci, device: cpu, seed: 0}\nexperiments: [n, 2]\n")
    with pytest.raises(ValueError, match="'experiments' and each notebook's section must be mappings"):
        NB.load_profile(str(path))


def test_notebook_06_domain_names_resolve_at_every_profile():
    """06 takes domain names; at every profile each is a toy-world domain of the profile it reads them from."""
    name = "06_unpaired_and_cross_domain"
    defaults = {k: default for k, (_, default) in NB.parameter_spec(name).items()}
    for profile in NB.PROFILES:
        params = {**defaults, **NB.notebook_parameters(profile, name)}
        doms = NB.domains(params["domains_from"] or params["profile"])
        for key in ("source", "target", "cross_target"):
            assert params[key] in doms, (profile, key, params[key])
            assert doms[params[key]].generator.startswith("toy-"), (profile, key)  # oracle label, renderer: 64 px
    src = "".join("".join(c["source"]) for c in _nb(NB.notebook_path(name))["cells"])
    assert "toyworld.STYLES if" not in src and ".style" in src  # styles come from the domains, not from names


def test_notebook_09_domains_and_mask_source_fit_every_profile():
    """09 takes domain names: at every profile two different domains of that profile; the toy-world parser (and
    the renderer's ground truth) only where the photo's generator is a 64 px toy one."""
    name = "09_your_own_image"
    defaults = {k: default for k, (_, default) in NB.parameter_spec(name).items()}
    for profile in NB.PROFILES:
        params = {**defaults, **NB.notebook_parameters(profile, name)}
        doms = NB.domains(params["profile"])
        assert params["domain"] in doms and params["other"] in doms and params["domain"] != params["other"]
        toy = doms[params["domain"]].generator.startswith("toy-")
        assert params["mask_source"] in (("parser", "segmenter", "painted") if toy else ("segmenter", "painted"))
    assert NB.domain("paper", NB.notebook_parameters("paper", name)["domain"]).generator == "ffhq-256"
