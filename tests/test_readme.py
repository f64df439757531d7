"""The README's API snippet runs as written (the ```python block after ``<!-- test: readme-api -->``).

The snippet loads the committed toy zoo, trains a one-shot segmenter on a label PNG, predicts masks in both
domains and runs DDS in blend mode. The user paints ``label.png``; here a fixed rectangle over the face stands in
for the painting. The snippet runs unchanged in a temporary folder (it writes its PNGs into the working folder).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- test: readme-api -->"

pytestmark = pytest.mark.usefixtures("one_thread")


def readme_snippet(text: str) -> str:
    """The code of the one ```python block right after the marker (blank lines between them allowed)."""
    assert text.count(MARKER) == 1, f"README.md must hold exactly one {MARKER!r} marker"
    after = text.split(MARKER, 1)[1]
    m = re.match(r"\s*```python\n(.*?)\n```", after, re.S)
    assert m, f"no ```python block right after {MARKER!r} in README.md"
    return m.group(1)


def test_snippet_extraction():
    text = f"intro\n{MARKER}\n\n```python\nx = 1\ny = 2\n```\n```python\nz = 3\n```\n"
    assert readme_snippet(text) == "x = 1\ny = 2"
    with pytest.raises(AssertionError):
        readme_snippet("```python\nx = 1\n```\n")
    with pytest.raises(AssertionError):
        readme_snippet(f"{MARKER}\ntext first\n```python\nx = 1\n```\n")


def test_readme_api_snippet_runs(tmp_path, monkeypatch):
    code = readme_snippet(README.read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    label = np.zeros((64, 64), np.uint8)
    label[30:46, 20:44] = 255  # the "painted" part: a block over eyes, nose and mouth of a 64 px toy face
    Image.fromarray(label).save(tmp_path / "label.png")

    ns: dict = {"__name__": "readme_snippet"}
    exec(compile(code, str(README), "exec"), ns)  # noqa: S102 - the point of the test

    G_t, z = ns["G_t"], ns["z"]
    assert G_t.size == 64 and z.shape == (4, G_t.style_dim)
    for y in (ns["y_s"], ns["y_t"]):
        assert y.shape == (4, 1, 64, 64) and set(y.unique().tolist()) <= {0.0, 1.0}
    r = ns["r"]
    assert r.image.shape == (4, 3, 64, 64) and torch.isfinite(r.image).all()
    assert float(r.image.min()) >= -1 and float(r.image.max()) <= 1
    # blend mode takes the target image outside the (dilated) masks
    outside = (ns["y_s"] + ns["y_t"] == 0).expand_as(r.image)
    assert (r.image - r.x_t.clamp(-1, 1)).abs()[outside].float().mean() < 0.1
    assert Image.open(tmp_path / "label_image.png").size == (64, 64)
    assert Image.open(tmp_path / "dds_blend.png").size[0] > 64  # the tiled batch of four
