"""viz: byte-stable PNGs and atomic writes; the demo command runs end to end."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ddsutils.lab import demo, viz


def test_to_uint8_range_and_layout():
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 5).repeat(1, 3, 1, 1)
    u = viz.to_uint8(x)
    assert u.dtype == np.uint8 and u.shape == (1, 1, 5, 3)
    assert u[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_png_is_byte_stable_and_metadata_free(tmp_path):
    img = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a = viz.save_png(img, tmp_path / "a.png", nrow=2)
    b = viz.save_png(img, tmp_path / "b.png", nrow=2)
    assert a.read_bytes() == b.read_bytes()
    im = Image.open(a)
    assert im.size == (2 * 8 + 3 * 2, 2 * 8 + 3 * 2)
    assert not {k for k in im.info if k.lower() in {"software", "creation time", "date"}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temp files left


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    from ddsutils.core import files

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError):
        viz.atomic_write_bytes(b"new", target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


def test_demo_runs(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "30,034,338 parameters" in out
    assert (tmp_path / "generator_random_256.png").is_file()


def test_mode_strips_rows_columns_and_blanks():
    from ddsutils.core.dds import DDSResult

    def result(value, steps):
        img = torch.full((2, 3, 4, 4), value)
        return DDSResult(image=img, image_source=None, latent=torch.zeros(2, 1), x_s=img - 0.1, x_t=img - 0.2,
                         y_s=torch.zeros(2, 1, 4, 4), y_t=torch.zeros(2, 1, 4, 4), x_c=img * 3, history={},
                         snapshots=[(s, img + s / 100) for s in steps], config={}, timings={})

    img, rows, cols = viz.mode_strips({"paper": result(0.5, [0, 10, 20]), "blend": result(-0.5, [])}, sample=1)
    assert rows == ["paper", "blend"] and cols == ["x_s", "x_t", "x_c", "step 0", "step 10", "step 20", "x̂"]
    assert img.shape == (14, 3, 4, 4)
    assert torch.allclose(img[4], torch.full((3, 4, 4), 0.6)) and img[2].max() == 1  # snapshot; x_c clamped
    assert torch.equal(img[10], torch.ones(3, 4, 4)) and torch.equal(img[13], torch.full((3, 4, 4), -0.5))


def test_photo_strip_columns_truth_and_resized_result():
    from ddsutils.core.photo import Photo, PhotoResult

    def img(value, size=8):
        return torch.full((1, 3, size, size), value)

    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:4, 2:4] = 1
    r = PhotoResult(photo=Photo(img(0.1), img(0.1, 32)), reconstruction=img(0.2), pair=img(0.3), mask_photo=mask,
                    mask_pair=mask.flip(-1), dds=img(0.4), result=img(0.5, 32), projection=None)
    images, cols = viz.photo_strip(r)
    assert cols == ["photo", "reconstruction", "pair", "part (photo)", "part (pair)", "DDS", "result"]
    assert images.shape == (7, 3, 8, 8)
    assert torch.equal(images[2], img(0.3)[0]) and torch.allclose(images[6], img(0.5)[0])  # 32 px -> 8 px
    assert torch.equal(images[3], viz.overlay(r.reconstruction, mask)[0])
    assert torch.equal(images[4], viz.overlay(r.pair, r.mask_pair)[0]) and not torch.equal(images[3], images[4])
    images, cols = viz.photo_strip(r, truth=img(-0.7))
    assert cols[3] == "truth" and torch.equal(images[3], img(-0.7)[0]) and images.shape == (8, 3, 8, 8)
