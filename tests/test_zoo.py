"""zoo evaluate: the metrics it reports, on tiny generators with stub judges."""
from __future__ import annotations

import math

import torch

from conftest import make_tiny_generator
from ddsutils.toy import judges, toyworld, zoo


def _labels(img: torch.Tensor) -> torch.Tensor:
    """Stub parser: face everywhere, eyes/nose/mouth/hair blocks; the nose only where the image is bright."""
    n, _, h, w = img.shape
    lab = torch.full((n, h, w), toyworld.PARTS.index("skin"))
    lab[:, :4] = toyworld.PARTS.index("hair")
    lab[:, 10:12, 8:12] = toyworld.PARTS.index("eyes")
    lab[:, 20:24, 12:16] = toyworld.PARTS.index("mouth")
    bright = img.mean(dim=(1, 2, 3)) > img.mean()
    lab[bright, 14:18, 14:16] = toyworld.PARTS.index("nose")
    return lab


def test_evaluate_zoo_metrics(monkeypatch):
    gens = {"natural": make_tiny_generator(size=32, seed=0), "sketch": make_tiny_generator(size=32, seed=1)}
    monkeypatch.setattr(judges, "predict_parts", lambda parser, img: _labels(img))
    # stub domain judge: every pixel "natural"
    monkeypatch.setattr(judges, "predict_styles", lambda seg, img: torch.zeros(img.shape[0], *img.shape[2:],
                                                                                dtype=torch.int64))
    calls = []
    res = zoo.evaluate_zoo(generators=gens, n=16, truncations=(1.0, 0.5), fd_n=4, parser=object(), domain=object(),
                           fd_fn=lambda a, b: calls.append((a.shape, b.shape)) or 1.5, progress=False)
    r1 = res["results"]["psi=1"]
    assert r1["natural"]["own_style"] == 1.0 and r1["sketch"]["own_style"] == 0.0
    assert r1["natural"]["found"]["eyes"] == 1.0 and r1["natural"]["found"]["hair"] == 1.0
    assert 0.0 < r1["natural"]["found"]["nose"] < 1.0
    assert "pairing" not in r1["natural"] and r1["sketch"]["pairing"]["hair"] == 1.0
    assert 0.0 < r1["sketch"]["pairing"]["eyes_nose_mouth"] <= 1.0
    assert set(res["results"]) == {"psi=1", "psi=0.5"}
    assert res["frechet_vgg"]["natural"] == {"samples_vs_renders": 1.5, "floor_renders_vs_renders": 1.5}
    assert calls[0] == ((4, 3, 32, 32), (4, 3, 64, 64))
    text = zoo.format_zoo_report(res)
    assert "| natural | 1.000 | " in text and "not FID" in text
    assert not any(isinstance(v, float) and math.isnan(v) for v in r1["sketch"]["pairing"].values())
    ceiling = res["pairing_ceiling"]["sketch"]  # sketch renders share the natural geometry exactly
    assert ceiling["true_labels"] == {"eyes_nose_mouth": 1.0, "hair": 1.0} and ceiling["parser"]["hair"] == 1.0
    assert "Pairing ceiling" in text


def test_evaluate_cli_generator_override(monkeypatch, tmp_path, capsys):
    import json

    import pytest

    loaded, seen = [], {}
    monkeypatch.setattr(zoo, "load_generator", lambda src: loaded.append(src) or src)
    monkeypatch.setattr(zoo, "evaluate_zoo", lambda **kw: seen.update(kw) or {"results": {}})
    monkeypatch.setattr(zoo, "format_zoo_report", lambda res: "report")
    out = tmp_path / "z.json"
    assert zoo.main(["evaluate", "--fd-n", "0", "--json", str(out), "--generator", "sketch=runs/x/001000.pt"]) == 0
    assert seen["generators"] == {"natural": "toy-natural-64", "sketch": "runs/x/001000.pt",
                                  "caricature": "toy-caricature-64"} and seen["fd_n"] == 0
    assert json.loads(out.read_text())["generators"]["sketch"] == "runs/x/001000.pt"
    for bad in ("sketch", "cartoon=x.pt", "sketch="):
        with pytest.raises(SystemExit):
            zoo.main(["evaluate", "--generator", bad])
        assert "--generator wants STYLE=PATH" in capsys.readouterr().err


def test_adapt_steps_per_style():
    import pytest

    assert zoo.adapt_steps(7, ("sketch", "caricature")) == {"sketch": 7, "caricature": 7}
    assert zoo.adapt_steps({"caricature": 3, "sketch": 2}, ("sketch", "caricature")) == {"sketch": 2, "caricature": 3}
    with pytest.raises(ValueError, match=r"missing \['caricature'\] \(has \['cartoon', 'sketch'\]\)"):
        zoo.adapt_steps({"sketch": 2, "cartoon": 1}, ("sketch", "caricature"))
    defaults = zoo.ZOO_DEFAULTS["iters_adapt"]
    assert zoo.adapt_steps(defaults, ("caricature",)) == {"caricature": defaults["caricature"]}
    with pytest.raises(ValueError, match="must be >= 1"):
        zoo.adapt_steps({"sketch": 0, "caricature": 1}, ("sketch", "caricature"))
    assert set(zoo.ZOO_DEFAULTS["iters_adapt"]) == set(zoo.ZOO_DEFAULTS["targets"])


def test_train_cli_iters_adapt(monkeypatch, capsys):
    import pytest

    seen = []
    monkeypatch.setattr(zoo, "train_zoo", lambda **kw: seen.append(kw["iters_adapt"]) or {"stages": {}, "figures": {}})
    defaults = dict(zoo.ZOO_DEFAULTS["iters_adapt"])
    for args, want in [([], defaults), (["--iters-adapt", "5"], {"sketch": 5, "caricature": 5}),
                       (["--iters-adapt", "sketch=3"], {**defaults, "sketch": 3}),
                       (["--iters-adapt", "5", "--iters-adapt", "caricature=2"], {"sketch": 5, "caricature": 2})]:
        assert zoo.main(["train", *args]) == 0 and seen[-1] == want
    monkeypatch.setattr(zoo, "train_zoo", lambda **kw: seen.append(kw["freeze"]) or {"stages": {}, "figures": {}})
    for args, want in [([], zoo.ZOO_DEFAULTS["freeze"]), (["--freeze"], []), (["--freeze", "style"], ["style"])]:
        assert zoo.main(["train", *args]) == 0 and seen[-1] == want
    for bad in ("cartoon=3", "sketch=x", "-1"):
        with pytest.raises(SystemExit):
            zoo.main(["train", f"--iters-adapt={bad}"])
        assert "--iters-adapt wants N or STYLE=N" in capsys.readouterr().err
