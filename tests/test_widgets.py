"""Mask painter: stroke rasterisation, erase, undo, clear, PNG save (MaskEditor, no browser), and the
ipycanvas MaskPainter driven by simulated mouse callbacks (no browser; tests/test_browser.py uses one)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from ddsutils.core.segmenter import load_mask_png
from ddsutils.lab.widgets import MaskEditor, image_to_uint8


def _disk_reference(h, w, pts, r):
    """Brute force: pixel centres within r of the polyline."""
    out = np.zeros((h, w), np.uint8)
    for i in range(h):
        for j in range(w):
            cx, cy = j + 0.5, i + 0.5
            for (x0, y0), (x1, y1) in zip(pts[:-1] or pts, pts[1:] or pts):
                dx, dy = x1 - x0, y1 - y0
                t = 0.0 if dx == dy == 0 else min(1, max(0, ((cx - x0) * dx + (cy - y0) * dy) / (dx * dx + dy * dy)))
                if (cx - x0 - t * dx) ** 2 + (cy - y0 - t * dy) ** 2 <= r * r:
                    out[i, j] = 1
    return out


@pytest.mark.parametrize("brush", [1, 3, 6.5])
def test_strokes_match_brute_force(brush):
    pts = [(2.2, 3.1), (10.7, 4.9), (11.0, 13.5), (3.3, 14.2)]
    e = MaskEditor(16, 18, brush=brush)
    e.stroke(pts)
    ref = _disk_reference(16, 18, pts, max(brush / 2, math.sqrt(0.5)))
    assert np.array_equal(e.mask, ref) and e.painted == ref.sum() > 0


def test_one_pixel_brush_paints_the_pixel_under_the_pointer():
    e = MaskEditor(8, 8, brush=1)
    e.stroke([(3.5, 5.5)])
    assert e.painted == 1 and e.mask[5, 3] == 1
    e.stroke([(0.0, 0.0)])  # a pixel corner: the pixel (and the out-of-image neighbours) within reach
    assert e.mask[0, 0] == 1


def test_strokes_outside_the_image_are_clipped():
    e = MaskEditor(8, 8, brush=4)
    e.stroke([(-20, -20), (-10, -10)])
    assert e.painted == 0
    e.stroke([(-5, 4), (20, 4)])
    assert e.mask[3:5].all() and e.painted == 32


def test_erase_undo_clear():
    e = MaskEditor(10, 10, brush=3, max_undo=3)
    assert not e.can_undo and e.undo() is False
    e.stroke([(1, 5), (9, 5)])
    painted = e.mask.copy()
    e.stroke([(5, 0), (5, 10)], erase=True)
    assert e.painted < painted.sum() and e.mask[5, 5] == 0
    assert e.undo() and np.array_equal(e.mask, painted)          # one undo step per stroke
    e.clear()
    assert e.painted == 0
    assert e.undo() and np.array_equal(e.mask, painted)          # clear is undoable
    assert e.undo() and e.painted == 0 and not e.undo()
    for k in range(5):
        e.stroke([(k, k)])
    assert len(e._undo) == 3                                     # bounded stack
    e.clear()
    e.clear()                                                    # clearing an empty mask adds no step
    assert len(e._undo) == 3


def test_begin_extend_end_protocol():
    e = MaskEditor(10, 10, brush=1)
    assert e.extend_stroke(3, 3) is None and e.painted == 0      # no stroke started
    bbox = e.begin_stroke(1.5, 1.5)
    assert e.stroking and bbox is not None
    y0, y1, x0, x1 = e.extend_stroke(8.5, 1.5)
    assert (y0, x0) <= (1, 1) and y1 >= 2 and x1 >= 9
    e.end_stroke()
    assert not e.stroking and e.mask[1, 1:9].all() and e.painted == 8


def test_save_png_roundtrip_and_overlay(tmp_path):
    e = MaskEditor(12, 12, brush=4)
    e.stroke([(2, 6), (10, 6)])
    path = e.save(tmp_path / "masks" / "m.png")
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.png"]
    im = Image.open(path)
    assert im.mode == "L" and im.size == (12, 12)
    assert set(np.unique(np.asarray(im)).tolist()) == {0, 255}
    assert torch.equal(load_mask_png(path, size=12), e.to_tensor())
    with pytest.raises(ValueError, match="no save path"):
        e.save("")
    img = np.full((12, 12, 3), 100, np.uint8)
    ov = e.overlay(img, colour=(200, 0, 0), alpha=0.5)
    assert tuple(ov[6, 6]) == (150, 50, 50) and tuple(ov[0, 0]) == (100, 100, 100)
    assert e.overlay(img, bbox=(5, 7, 2, 4)).shape == (2, 2, 3)


def test_initial_mask_and_bad_arguments():
    init = torch.zeros(1, 1, 6, 6)
    init[..., 2, 3] = 1
    e = MaskEditor(6, 6, mask=init)
    assert e.painted == 1 and e.mask[2, 3] == 1
    with pytest.raises(ValueError, match="initial mask"):
        MaskEditor(6, 6, mask=np.zeros((5, 5)))
    with pytest.raises(ValueError, match="brush"):
        MaskEditor(6, 6, brush=0)


def test_image_to_uint8_inputs():
    t = torch.tensor([-1.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    assert image_to_uint8(t).shape == (2, 2, 3) and image_to_uint8(t)[0, 0].tolist() == [0, 128, 255]
    assert image_to_uint8(np.zeros((4, 4))).shape == (4, 4, 3)
    assert image_to_uint8(np.ones((4, 4, 3)))[0, 0].tolist() == [255, 255, 255]
    assert image_to_uint8(Image.new("RGB", (5, 4))).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="one image"):
        image_to_uint8(torch.zeros(2, 3, 4, 4))


def test_mask_painter_callbacks_without_browser(tmp_path):
    pytest.importorskip("ipycanvas")
    from ddsutils.lab.widgets import MaskPainter

    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    p = MaskPainter(img, brush=2, save_path=tmp_path / "m.png", scale=10)
    assert p.canvas.width == p.canvas.height == 160
    p._on_down(15, 55)                  # canvas pixels: image (1.5, 5.5)
    p._on_move(85, 55)
    p._on_up(145, 55)
    assert p.mask[0, 0, 5, 1:15].all() and p.mask[0, 0, :4].sum() == 0
    p.mode.value = "erase"
    p._on_down(75, 55)
    p._on_up(75, 55)
    assert p.mask[0, 0, 5, 7] == 0
    p.undo()
    assert p.mask[0, 0, 5, 7] == 1
    p.brush_slider.value = 5
    assert p.editor.brush == 5
    p.save_button.click()
    assert p.last_saved == tmp_path / "m.png" and "saved to" in p.status.value
    assert torch.equal(load_mask_png(tmp_path / "m.png", size=16), p.mask)
    p.path.value = ""
    p.save_button.click()               # errors are shown, not raised into the widget callback
    assert "not saved" in p.status.value
    p.clear()
    assert p.mask.sum() == 0
    assert "application/vnd.jupyter.widget-view+json" in p._repr_mimebundle_()


def test_dds_panel_runs_headless_and_builds_its_widgets(monkeypatch):
    from conftest import make_tiny_generator
    from ddsutils.toy import judges, scoring
    from ddsutils.lab.widgets import DDSPanel

    G_s, G_t = make_tiny_generator(size=32, seed=0), make_tiny_generator(size=32, seed=1)
    # stub judges: hair where the red channel is above 0; "caricature" style where green is above 0
    monkeypatch.setattr(judges, "load_judge", lambda name: name)
    monkeypatch.setattr(judges, "predict_parts", lambda parser, img: torch.where(img[:, 0] > 0, 2, 1))
    monkeypatch.setattr(judges, "predict_styles", lambda judge, img: torch.where(img[:, 1] > 0, 2, 0))
    monkeypatch.setattr(scoring, "_outside_lpips", lambda img, x_t, y_s, y_t, fn: float((img - x_t).abs().mean()))
    panel = DDSPanel(G_s, G_t, source="caricature", target="natural", num_steps=2, backbone_weights="random")
    out = panel.run(mode="blend", mask="hair", seed=3)
    x_s, x_t, paste, result = out["images"]
    with torch.no_grad():
        z = torch.randn(1, 32, generator=torch.Generator().manual_seed(3))
        assert torch.equal(x_s, G_s(z).clamp(-1, 1)[0]) and torch.equal(x_t, G_t(z).clamp(-1, 1)[0])
    assert set(out["scores"]) == {"paste", "blend"} and out["scores"]["paste"]["relative_inside"] == 1.0
    again = panel.run(mode="blend", mask="hair", seed=3)
    assert torch.equal(again["images"], out["images"])
    other = panel.run(mode="blend", mask="hair", seed=3, dilation=3)
    assert not torch.equal(other["images"][3], result)  # the control reaches dds.optimise
    assert panel.run(mode="paper", mask="hair", seed=3)["images"].shape == (4, 3, 32, 32)
    pytest.importorskip("ipywidgets")
    ui = panel._build()
    assert len(ui.children) == 3 and ui.children[1].value[:4] == b"\x89PNG"


def test_photo_upload_receives_checks_and_saves(tmp_path):
    import io

    from ddsutils.core.photo import load_photo
    from ddsutils.lab.widgets import PhotoUpload

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(buf, format="PNG")
    up = PhotoUpload(tmp_path / "uploads")
    assert up.path is None  # nothing uploaded: the notebook falls back to image_path
    path = up.receive("../my face (1).png", memoryview(buf.getvalue()))
    assert path == up.path == tmp_path / "uploads" / "my_face_1_.png" and path.read_bytes() == buf.getvalue()
    assert load_photo(path, size=16).image.shape == (1, 3, 16, 16)
    for name, data, why in (("a.txt", b"hello", "not an image"), ("e.png", b"", "0 bytes"),
                            ("big.png", buf.getvalue(), "bytes; upload")):
        small = PhotoUpload(tmp_path / "u2", max_bytes=len(buf.getvalue()) - 1 if name == "big.png" else 10**6)
        with pytest.raises(ValueError, match=why):
            small.receive(name, data)
        assert small.path is None and not (tmp_path / "u2").exists()
    pytest.importorskip("ipywidgets")
    from datetime import datetime, timezone

    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ui = PhotoUpload(tmp_path / "u3")._build()
    button, status, preview = ui.children
    button.value = ({"name": "x.png", "type": "image/png", "size": len(buf.getvalue()),
                     "content": memoryview(buf.getvalue()), "last_modified": t},)
    assert "saved to" in status.value and preview.value == buf.getvalue()
    button.value = ({"name": "x.txt", "type": "text/plain", "size": 2, "content": memoryview(b"hi"),
                     "last_modified": t},)
    assert "not used" in status.value  # shown, not raised into the widget callback
