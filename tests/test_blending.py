"""Tests for ddsutils.blending: Laplacian-pyramid, Poisson (OpenCV) and feathered alpha blending baselines."""
from __future__ import annotations

import importlib
import warnings

import pytest
import torch

from ddsutils.core import blending
from ddsutils.core.blending import (BASELINES, alpha_blend, blend, collapse_laplacian_pyramid, default_levels,
                               gaussian_pyramid, laplacian_blend, laplacian_pyramid, poisson_blend)

pytestmark = pytest.mark.usefixtures("one_thread")

U8 = 1.0 / 127.5  # one uint8 step in [-1, 1]


def _images(n: int = 2, size: int | tuple[int, int] = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g) * 2 - 1, torch.rand(n, 3, h, w, generator=g) * 2 - 1


def _half_mask(n: int, size: int) -> torch.Tensor:
    m = torch.zeros(n, 1, size, size)
    m[..., : size // 2] = 1
    return m


def _square_scene(size: int = 64, top: int = 10, left: int = 34, side: int = 12, margin: int = 6):
    """Dark target, source = dark with a bright square, mask = the square plus a margin."""
    x_t = torch.full((1, 3, size, size), -0.7)
    x_s = x_t.clone()
    x_s[..., top:top + side, left:left + side] = 0.8
    mask = torch.zeros(1, 1, size, size)
    mask[..., top - margin:top + side + margin, left - margin:left + side + margin] = 1
    return x_s, x_t, mask


def _has_cv2() -> bool:
    try:
        importlib.import_module("cv2")
    except ImportError:
        return False
    return True


def _bright_centroid(x: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.nonzero(x[0, 1] > 0.05, as_tuple=True)
    return torch.stack([ys.float().mean(), xs.float().mean()])


# ----------------------------------------------------------------------------------------------------
# Pyramid helpers


@pytest.mark.parametrize("size", [(32, 32), (37, 50), (64, 64)])
@pytest.mark.parametrize("blur_sigma", [None, 1.5])
def test_laplacian_pyramid_collapses_back_exactly(size, blur_sigma):
    x = _images(2, size)[0].double()
    pyr = laplacian_pyramid(x, None, blur_sigma=blur_sigma)
    assert len(pyr) == default_levels(*size) + 1
    assert torch.allclose(collapse_laplacian_pyramid(pyr, blur_sigma=blur_sigma), x, rtol=0, atol=1e-12)
    x32 = x.float()
    assert torch.allclose(collapse_laplacian_pyramid(laplacian_pyramid(x32, 4, blur_sigma=blur_sigma),
                                                     blur_sigma=blur_sigma), x32, rtol=0, atol=1e-5)


def test_pyramid_shapes_and_default_levels():
    assert [default_levels(s, s) for s in (32, 64, 256)] == [2, 3, 5]
    x = torch.zeros(1, 1, 37, 50)
    assert [tuple(g.shape[-2:]) for g in gaussian_pyramid(x, 3)] == [(37, 50), (19, 25), (10, 13), (5, 7)]
    # a constant image has an all-zero band-pass part and keeps its value at every Gaussian level
    c = torch.full((1, 3, 20, 20), 0.3, dtype=torch.float64)
    pyr = laplacian_pyramid(c, 3)
    assert all(b.abs().max() < 1e-12 for b in pyr[:-1])
    assert torch.allclose(pyr[-1], torch.full_like(pyr[-1], 0.3))


# ----------------------------------------------------------------------------------------------------
# Laplacian and alpha blending


@pytest.mark.parametrize("fn", [laplacian_blend, alpha_blend])
@pytest.mark.parametrize("size", [32, 64, 256])
def test_trivial_masks(fn, size):
    x_s, x_t = _images(1, size)
    ones = torch.ones(1, 1, size, size)
    zeros = torch.zeros(1, 1, size, size)
    assert torch.allclose(fn(x_s, x_t, ones), x_s, rtol=0, atol=1e-5)
    assert torch.equal(fn(x_s, x_t, zeros), x_t)
    assert torch.equal(fn(x_s, x_t, zeros.bool()), x_t)


def test_laplacian_half_mask_far_from_the_edge():
    size = 64
    # constant images: the hardest case for the low-pass band, which blends over the widest region
    x_s = torch.full((1, 3, size, size), 0.8)
    x_t = torch.full((1, 3, size, size), -0.8)
    out = laplacian_blend(x_s, x_t, _half_mask(1, size))
    q = size // 4
    assert (out[..., :q] - x_s[..., :q]).abs().max() < 0.03
    assert (out[..., -q:] - x_t[..., -q:]).abs().max() < 0.03
    # monotone transition across the edge, no ringing outside [x_t, x_s]
    row = out[0, 0, size // 2]
    assert bool((row[1:] <= row[:-1] + 1e-6).all())
    # textured images, all levels of detail
    x_s, x_t = _images(2, size)
    out = laplacian_blend(x_s, x_t, _half_mask(2, size))
    assert (out[..., :q] - x_s[..., :q]).abs().max() < 0.03
    assert (out[..., -q:] - x_t[..., -q:]).abs().max() < 0.03
    assert out.min() >= -1 and out.max() <= 1


def test_levels_zero_and_alpha_feather_zero_are_hard_composites():
    x_s, x_t = _images(2, 32)
    m = _half_mask(2, 32)
    hard = m * x_s + (1 - m) * x_t
    assert torch.allclose(laplacian_blend(x_s, x_t, m, levels=0), hard, atol=1e-6)
    assert torch.equal(alpha_blend(x_s, x_t, m, feather=0), hard)


def test_alpha_feather_is_centred_on_the_edge():
    x_s = torch.ones(1, 3, 32, 32)
    x_t = -torch.ones(1, 3, 32, 32)
    out = alpha_blend(x_s, x_t, _half_mask(1, 32), feather=2.0)
    row = out[0, 0, 16]
    assert abs(float(row[15] + row[16])) < 1e-5  # symmetric about the edge between columns 15 and 16
    assert float(row[0]) == pytest.approx(1.0, abs=1e-5) and float(row[-1]) == pytest.approx(-1.0, abs=1e-5)
    assert -1 < float(row[16]) < 0 < float(row[15]) < 1


@pytest.mark.parametrize("fn", [laplacian_blend, alpha_blend])
def test_deterministic_batch_independent_and_differentiable(fn):
    x_s, x_t = _images(3, 32, seed=1)
    m = torch.zeros(3, 1, 32, 32)
    m[0, :, 4:20, 4:20] = 1
    m[1, :, 10:, :] = 1
    m[2, :, 0:8, 20:32] = 1
    out = fn(x_s, x_t, m)
    assert torch.equal(out, fn(x_s, x_t, m))
    for i in range(3):
        assert torch.allclose(fn(x_s[i:i + 1], x_t[i:i + 1], m[i:i + 1]), out[i:i + 1], atol=1e-6)
    xs = x_s.clone().requires_grad_(True)
    fn(xs, x_t, m).sum().backward()
    assert xs.grad is not None and torch.isfinite(xs.grad).all()


def test_dtype_and_odd_sizes():
    x_s, x_t = _images(1, (33, 47))
    m = torch.zeros(1, 1, 33, 47, dtype=torch.uint8)
    m[..., 5:20, 10:30] = 1
    for fn in (laplacian_blend, alpha_blend):
        out = fn(x_s.double(), x_t.double(), m)
        assert out.dtype == torch.float64 and out.shape == (1, 3, 33, 47)


# ----------------------------------------------------------------------------------------------------
# Poisson (OpenCV)


@pytest.fixture
def cv2():
    return pytest.importorskip("cv2")


@pytest.mark.parametrize("mode", ["normal", "mixed"])
def test_poisson_empty_mask_returns_target_with_warning(cv2, mode):
    x_s, x_t = _images(2, 32)
    with pytest.warns(UserWarning, match="empty mask"):
        out = poisson_blend(x_s, x_t, torch.zeros(2, 1, 32, 32), mode=mode)
    assert torch.equal(out, x_t)


def test_poisson_keeps_the_part_in_place(cv2):
    # odd and even bounding-box extents, both placement parities
    for top, left, side, margin in [(10, 34, 12, 6), (9, 33, 11, 5), (20, 14, 9, 6)]:
        x_s, x_t, m = _square_scene(64, top, left, side, margin)
        out = poisson_blend(x_s, x_t, m, dilate=0)
        assert torch.allclose(_bright_centroid(out), _bright_centroid(x_s), atol=1.0)
        # the pasted square keeps its brightness (target is flat, so normal cloning reproduces it)
        inner = out[..., top + 1:top + side - 1, left + 1:left + side - 1]
        assert (inner - 0.8).abs().max() < 3 * U8
        # outside the mask's bounding box: the target, up to uint8 rounding
        outside = torch.ones(64, 64, dtype=torch.bool)
        outside[top - margin:top + side + margin, left - margin:left + side + margin] = False
        assert (out - x_t)[..., outside].abs().max() <= U8 / 2 + 1e-6


def test_poisson_outside_bbox_equals_target_textured(cv2):
    x_s, x_t = _images(2, 32, seed=3)
    m = torch.zeros(2, 1, 32, 32)
    m[0, :, 6:20, 8:24] = 1
    m[1, :, 12:30, 3:13] = 1
    for mode in ("normal", "mixed"):
        out = poisson_blend(x_s, x_t, m, mode=mode, dilate=0)
        for i, (y0, y1, x0, x1) in enumerate([(6, 20, 8, 24), (12, 30, 3, 13)]):
            outside = torch.ones(32, 32, dtype=torch.bool)
            outside[y0:y1, x0:x1] = False
            assert (out[i] - x_t[i])[:, outside].abs().max() <= U8 / 2 + 1e-6
            assert (out[i] - x_t[i])[:, ~outside].abs().max() > 2 * U8  # something was pasted


def test_poisson_dilation_keeps_thin_parts(cv2):
    x_s, x_t = _images(1, 64, seed=7)
    m = torch.zeros(1, 1, 64, 64)
    m[..., 30:32, 20:44] = 1  # a 2 px tall part, like a toy face's eyes at 64 px
    changed = lambda out: int(((out - x_t).abs().amax(1) > 4 * U8).sum())  # noqa: E731
    with pytest.warns(UserWarning, match="too thin"):  # OpenCV's own erosion removes the part at 64 px
        assert changed(poisson_blend(x_s, x_t, m, dilate=0, upscale=1)) == 0
    out = poisson_blend(x_s, x_t, m)  # default: cloned at 256 px with a 1 px band
    assert changed(out) >= int(m.sum())
    outside = torch.ones(64, 64, dtype=torch.bool)
    outside[28:34, 18:46] = False  # the bounding box of the mask dilated by 2 px
    assert (out - x_t)[..., outside].abs().max() <= U8 / 2 + 1e-6
    with pytest.raises(ValueError, match="dilate"):
        poisson_blend(x_s, x_t, m, dilate=-1)
    with pytest.raises(ValueError, match="upscale"):
        poisson_blend(x_s, x_t, m, upscale=0)


def test_poisson_mask_touching_the_border(cv2):
    size = 32
    x_s, x_t, _ = _square_scene(size, 2, 18, 12, 0)  # bright square 2 px from the top and right edges
    m = torch.zeros(1, 1, size, size)
    m[..., 0:18, 14:32] = 1  # touches the top and right borders
    out = poisson_blend(x_s, x_t, m)  # default pad=8: the part keeps its pixels at the edge
    assert torch.allclose(_bright_centroid(out), _bright_centroid(x_s), atol=0.1)
    assert (out - x_s)[..., 2:14, 18:30].abs().max() < 3 * U8
    for pad in (8, 1, 0):  # pad=0: the mask's outer ring is zeroed; it must still run and not shift outside
        out = poisson_blend(x_s, x_t, m, pad=pad)
        assert out.shape == x_t.shape and torch.isfinite(out).all()
        assert (out - x_t)[..., 20:, :].abs().max() <= U8 / 2 + 1e-6
        assert (out - x_t)[..., :, :12].abs().max() <= U8 / 2 + 1e-6
    # the whole image as mask (every side on the border)
    x_s, x_t = _images(1, size)
    for pad in (8, 0):
        out = poisson_blend(x_s, x_t, torch.ones(1, 1, size, size), pad=pad)
        assert torch.isfinite(out).all() and out.abs().max() <= 1


def test_poisson_full_mask_approximates_source(cv2):
    x_s, x_t, _ = _square_scene(32, 8, 8, 12, 0)
    out = poisson_blend(x_s, x_t, torch.ones(1, 1, 32, 32))
    # target and source agree outside the square, so the boundary values are consistent with x_s
    assert (out - x_s).abs().max() < 3 * U8


def test_poisson_deterministic_and_batch_independent(cv2):
    x_s, x_t = _images(3, 32, seed=5)
    m = torch.zeros(3, 1, 32, 32)
    m[0, :, 4:20, 4:20] = 1
    m[1, :, 10:28, 6:30] = 1  # sample 2 empty
    with pytest.warns(UserWarning, match=r"\[2\]"):
        out = poisson_blend(x_s, x_t, m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(out, poisson_blend(x_s, x_t, m))
    for i in range(2):
        assert torch.equal(poisson_blend(x_s[i:i + 1], x_t[i:i + 1], m[i:i + 1]), out[i:i + 1])
    assert torch.equal(out[2], x_t[2])
    assert out.dtype == x_t.dtype


def test_poisson_missing_cv2_message(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    x_s, x_t, m = _square_scene(32, 8, 8, 8, 4)
    with pytest.raises(ImportError, match="pip install opencv-python-headless"):
        poisson_blend(x_s, x_t, m)


# ----------------------------------------------------------------------------------------------------
# Dispatcher and bad inputs


def test_blend_dispatch():
    assert BASELINES == ("laplacian", "poisson", "poisson_mixed", "alpha")
    x_s, x_t = _images(1, 32)
    m = _half_mask(1, 32)
    assert torch.equal(blend("laplacian", x_s, x_t, m, levels=2), laplacian_blend(x_s, x_t, m, levels=2))
    assert torch.equal(blend("alpha", x_s, x_t, m, feather=1.0), alpha_blend(x_s, x_t, m, feather=1.0))
    if _has_cv2():
        assert torch.equal(blend("poisson", x_s, x_t, m), poisson_blend(x_s, x_t, m))
        assert torch.equal(blend("poisson_mixed", x_s, x_t, m), poisson_blend(x_s, x_t, m, mode="mixed"))
    with pytest.raises(ValueError, match="fixes mode"):
        blend("poisson", x_s, x_t, m, mode="mixed")
    with pytest.raises(ValueError, match="unknown blending baseline"):
        blend("crossover", x_s, x_t, m)
    with pytest.raises(TypeError):
        blend("alpha", x_s, x_t, m, levels=2)


def _bad_cases():
    x_s, x_t = _images(2, 16)
    m = torch.zeros(2, 1, 16, 16)
    m[..., 4:12, 4:12] = 1
    yield "shape", (x_s, x_t[:, :, :8], m)
    yield "3, H, W", (x_s[:, :2], x_t[:, :2], m)
    yield "3, H, W", (x_s[0], x_t[0], m[0])
    yield "mask must be", (x_s, x_t, m[:, :, :8])
    yield "mask must be", (x_s, x_t, m.expand(2, 3, 16, 16))
    yield "mask must be", (x_s, x_t, m[:1])
    yield r"\[-1, 1\]", (x_s * 2, x_t, m)
    yield r"\[-1, 1\]", (x_s, x_t + 1.5, m)
    yield "non-finite", (x_s, torch.where(m.bool().expand_as(x_t), float("nan"), x_t), m)
    yield "binary", (x_s, x_t, m * 0.5)
    yield "binary", (x_s, x_t, m * 2)
    yield "floating point", ((x_s * 100).to(torch.int64) * 0, x_t, m)
    yield "torch.Tensor", (x_s.numpy(), x_t, m)


@pytest.mark.parametrize("name", ["laplacian", "alpha", "poisson"])
def test_bad_inputs(name):
    for match, args in _bad_cases():
        with pytest.raises(ValueError, match=match):
            blend(name, *args)


def test_bad_hyper_parameters():
    x_s, x_t = _images(1, 32)
    m = _half_mask(1, 32)
    for kw in ({"levels": -1}, {"levels": 99}, {"levels": 1.5}, {"blur_sigma": -1.0}, {"blur_sigma": 0.0}):
        with pytest.raises(ValueError):
            laplacian_blend(x_s, x_t, m, **kw)
    for kw in ({"feather": -1.0}, {"feather": float("nan")}, {"feather": None}):
        with pytest.raises(ValueError):
            alpha_blend(x_s, x_t, m, **kw)
    for kw in ({"mode": "wide"}, {"pad": -1}):
        with pytest.raises(ValueError):
            poisson_blend(x_s, x_t, m, **kw)


def test_hyper_parameters_are_keyword_only():
    x_s, x_t = _images(1, 16)
    m = _half_mask(1, 16)
    with pytest.raises(TypeError):
        laplacian_blend(x_s, x_t, m, 2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        alpha_blend(x_s, x_t, m, 1.0)  # type: ignore[misc]
    assert blending.__doc__ and "notebooks/07_baselines.ipynb" in blending.__doc__
