"""environment.yml, pyproject.toml, requirements/constraints.txt and LICENSE agree with each other."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def _pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)\s*", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def _load():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    constraints = _pins((REPO / "requirements" / "constraints.txt").read_text().splitlines())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return env, py, constraints, conda, pip


def test_environment_yml_follows_pyproject_and_constraints():
    env, py, constraints, conda, pip = _load()
    assert env["channels"] == ["conda-forge"], "conda-forge only (no defaults / pytorch channel)"
    assert "pip" in conda
    python = next(d for d in conda if d.startswith("python"))
    version = tuple(int(x) for x in re.search(r"(\d+)\.(\d+)", python).groups())
    minimum = tuple(int(x) for x in re.search(r">=\s*(\d+)\.(\d+)", py["project"]["requires-python"]).groups())
    assert version >= minimum, (python, py["project"]["requires-python"])
    assert "-c requirements/constraints.txt" in pip and (REPO / "requirements" / "constraints.txt").is_file()
    editable = [x for x in pip if x.startswith("-e ")]
    assert len(editable) == 1
    extras = set(re.fullmatch(r"-e \.\[([a-z,]+)\]", editable[0]).group(1).split(","))
    assert extras == {"notebooks", "test"} and extras <= set(py["project"]["optional-dependencies"])
    pinned = _pins(pip)
    assert pinned, "environment.yml pins torch and friends"
    for name, version in pinned.items():
        assert constraints.get(name) == version, (f"{name}=={version} in environment.yml, "
                                                  f"constraints say {constraints.get(name)}")
    for name in ("torch", "torchvision"):  # the pair that must match (see the constraints file's comment)
        assert name in pinned
    deps = {re.split(r"[<>=!\[ ;]", d)[0].lower() for d in py["project"]["dependencies"]}
    assert set(pinned) <= deps | {re.split(r"[<>=!\[ ;]", d)[0].lower()
                                  for x in py["project"]["optional-dependencies"].values() for d in x}
    assert not [d for d in conda if re.match(r"(pytorch|torch|torchvision)\b", d)], "torch comes from pip only"


def test_makefile_installs_the_same_extras():
    _, _, _, _, pip = _load()
    make = (REPO / "Makefile").read_text()
    m = re.search(r'-c requirements/constraints.txt -e "\.\[([a-z,]+)\]"', make)
    assert m and set(m.group(1).split(",")) == set(re.search(r"\[([a-z,]+)\]", " ".join(pip)).group(1).split(","))


def test_license_file_matches_pyproject():
    py = tomllib.loads((REPO / "pyproject.toml").read_text())
    licence = py["project"]["license"]
    name = licence["text"] if isinstance(licence, dict) else licence
    text = (REPO / "LICENSE").read_text()
    assert name == "MIT" and text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text and "WITHOUT WARRANTY OF ANY KIND" in text
