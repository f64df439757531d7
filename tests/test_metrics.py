"""Tests for ddsutils.metrics: the Fréchet distance (known values) and VGG-16 features (fast, CPU only)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ddsutils.core import metrics as M


def _random_spd(rng: np.random.Generator, d: int, *, scale: float = 1.0) -> np.ndarray:
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def _closed_form_diag(mu_a, var_a, mu_b, var_b) -> float:
    """Commuting (diagonal) covariances: ||mu_a - mu_b||^2 + sum (sqrt(var_a) - sqrt(var_b))^2."""
    return float(np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2))


def test_identical_sets_give_zero() -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(size=(300, 16))
    assert M.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)
    # torch input, float32, and rank-deficient covariances (fewer samples than dimensions)
    t = torch.from_numpy(rng.normal(size=(20, 64))).float()
    assert M.frechet_distance(t, t) == pytest.approx(0.0, abs=1e-6)


def test_gaussian_closed_form_diagonal() -> None:
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    got = M.frechet_distance_gaussians(mu_a, np.diag(var_a), mu_b, np.diag(var_b))
    # 1 + 0 + 4 + (1 - 3)^2 + (2 - 1)^2 + 0 = 10
    assert got == pytest.approx(10.0, abs=1e-10)
    assert _closed_form_diag(mu_a, var_a, mu_b, var_b) == pytest.approx(10.0)
    # scalar case: (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2
    assert M.frechet_distance_gaussians([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9.0 + 1.0)


def test_gaussian_closed_form_general_matches_scipy() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    d = 12
    mu_a, mu_b = rng.normal(size=d), rng.normal(size=d)
    sa, sb = _random_spd(rng, d), _random_spd(rng, d, scale=2.0)
    covmean = scipy_linalg.sqrtm(sa @ sb).real
    ref = float(np.sum((mu_a - mu_b) ** 2) + np.trace(sa) + np.trace(sb) - 2 * np.trace(covmean))
    assert M.frechet_distance_gaussians(mu_a, sa, mu_b, sb) == pytest.approx(ref, rel=1e-9)
    # same Gaussian -> 0; a singular covariance stays finite and non-negative
    assert M.frechet_distance_gaussians(mu_a, sa, mu_a, sa) == pytest.approx(0.0, abs=1e-9)
    low = np.outer(mu_a, mu_a)
    assert M.frechet_distance_gaussians(mu_a, low, mu_b, sb) >= 0.0


def test_samples_approach_closed_form() -> None:
    rng = np.random.default_rng(2)
    n, d = 40_000, 4
    mu_a, mu_b = np.zeros(d), np.array([0.5, -0.5, 0.0, 1.0])
    var_a, var_b = np.array([1.0, 2.0, 0.5, 1.0]), np.array([1.5, 0.5, 0.5, 3.0])
    fa = mu_a + rng.normal(size=(n, d)) * np.sqrt(var_a)
    fb = mu_b + rng.normal(size=(n, d)) * np.sqrt(var_b)
    ref = _closed_form_diag(mu_a, var_a, mu_b, var_b)
    assert M.frechet_distance(fa, fb) == pytest.approx(ref, rel=0.03)


@pytest.mark.parametrize(("na", "nb", "d"), [(7, 9, 32), (40, 25, 30), (60, 80, 10)])
def test_sample_space_route_matches_covariance_route(na: int, nb: int, d: int) -> None:
    rng = np.random.default_rng(na)
    a = rng.normal(size=(na, d))
    b = rng.normal(size=(nb, d)) * np.linspace(0.2, 3.0, d) + 0.3
    ref = M.frechet_distance_gaussians(*M.gaussian_stats(a), *M.gaussian_stats(b))
    assert M.frechet_distance(a, b) == pytest.approx(ref, rel=1e-8, abs=1e-9)


def test_symmetric_and_monotone_in_mean_shift() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(500, 8))
    b = rng.normal(size=(400, 8)) @ np.diag(np.linspace(0.5, 2.0, 8))
    assert M.frechet_distance(a, b) == pytest.approx(M.frechet_distance(b, a), rel=1e-9)
    values = [M.frechet_distance(a, b + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert all(x < y for x, y in zip(values, values[1:], strict=False))
    # a pure mean shift adds exactly ||shift||^2
    assert M.frechet_distance(a, a + 1.5) == pytest.approx(8 * 1.5**2, rel=1e-9)


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="dimensions differ"):
        M.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        M.gaussian_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        M.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        M.frechet_distance(np.full((5, 3), np.nan), np.zeros((5, 3)))


def test_vgg_features_and_frechet_vgg() -> None:
    from ddsutils.toy import toyworld as tw
    from ddsutils.core import weights as W

    try:
        W.resolve("vgg16-imagenet", fetch=False)
    except W.WeightsError as exc:
        pytest.skip(f"VGG-16 ImageNet weights not cached: {exc}")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        nat, _ = tw.render_batch(6, style="natural", seed=5)
        sk, _ = tw.render_batch(6, style="sketch", seed=5)
        f = M.vgg_features(nat, batch_size=4)
        assert f.shape == (6, 1024) and f.dtype == torch.float32
        assert torch.isfinite(f).all() and (f >= 0).all()  # pooled ReLU outputs
        # chunking does not change the features
        assert torch.allclose(f, M.vgg_features(nat, batch_size=6), atol=1e-5)
        assert M.frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
        diff = M.frechet_vgg(nat, sk, batch_size=6)
        assert diff > 1.0  # natural vs sketch renders are far apart
    finally:
        torch.set_num_threads(before)
    assert M.FRECHET_VGG_LABEL == "Fréchet distance on VGG-16 features"


# ================================================================================== per-image metrics
def _imgs(n: int = 2, c: int = 3, h: int = 16, w: int = 16, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, h, w, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)


def _ssim_numpy(a: np.ndarray, b: np.ndarray, *, k: int = 11, sigma: float = 1.5, c1: float = 1e-4,
                c2: float = 9e-4) -> np.ndarray:
    """Brute-force SSIM per image: explicit zero-padded windows, loops over every pixel; a, b [N, C, H, W] in [0, 1]."""
    x = np.arange(k) - k // 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    win = np.outer(g, g)
    r = k // 2
    n, c, h, w = a.shape
    pa = np.pad(a, ((0, 0), (0, 0), (r, r), (r, r)))
    pb = np.pad(b, ((0, 0), (0, 0), (r, r), (r, r)))
    out = np.zeros(n)
    for i in range(n):
        total = 0.0
        for ch in range(c):
            for yy in range(h):
                for xx in range(w):
                    wa = pa[i, ch, yy:yy + k, xx:xx + k]
                    wb = pb[i, ch, yy:yy + k, xx:xx + k]
                    ma, mb = (win * wa).sum(), (win * wb).sum()
                    va = (win * wa * wa).sum() - ma**2
                    vb = (win * wb * wb).sum() - mb**2
                    cov = (win * wa * wb).sum() - ma * mb
                    total += ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
        out[i] = total / (c * h * w)
    return out


def test_ssim_identical_images_is_one() -> None:
    a = _imgs(3, h=20, w=17)
    np.testing.assert_allclose(M.ssim(a, a).numpy(), 1.0, atol=1e-6)
    mask = torch.zeros(3, 1, 20, 17)
    mask[:, :, 5:12, 3:9] = 1
    np.testing.assert_allclose(M.ssim(a, a, mask=mask).numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(M.ssim(a, a, mask=mask, region="outside").numpy(), 1.0, atol=1e-6)
    b = _imgs(3, h=20, w=17, seed=1)
    s = M.ssim(a, b)
    assert s.shape == (3,) and s.dtype == torch.float32 and bool((s < 0.5).all())
    torch.testing.assert_close(s, M.ssim(b, a))  # symmetric


def test_ssim_window_one_reduces_to_luminance_term() -> None:
    # A 1-pixel window has zero local variance: SSIM = mean over pixels of (2xy + c1) / (x^2 + y^2 + c1).
    a, b = _imgs(2, seed=2, dtype=torch.float64), _imgs(2, seed=3, dtype=torch.float64)
    x, y = (a + 1) / 2, (b + 1) / 2
    ref = ((2 * x * y + 1e-4) / (x**2 + y**2 + 1e-4)).flatten(1).mean(dim=1)
    torch.testing.assert_close(M.ssim(a, b, window_size=1), ref, rtol=1e-12, atol=1e-12)


def test_ssim_constant_images_hand_computed() -> None:
    # Constant images p, q (in [0, 1] units): away from the zero-padded border the local variances vanish and
    # SSIM = (2pq + c1) / (p^2 + q^2 + c1) exactly; e.g. p = 0.25, q = 0.75 -> (0.375 + 1e-4) / (0.625 + 1e-4).
    p, q = 0.25, 0.75
    a = torch.full((1, 3, 24, 24), 2 * p - 1, dtype=torch.float64)
    b = torch.full((1, 3, 24, 24), 2 * q - 1, dtype=torch.float64)
    expected = (2 * p * q + 1e-4) / (p**2 + q**2 + 1e-4)
    smap = M.ssim_map(a, b)
    interior = smap[..., 5:-5, 5:-5]
    torch.testing.assert_close(interior, torch.full_like(interior, expected), rtol=1e-12, atol=1e-12)
    mask = torch.zeros(1, 1, 24, 24, dtype=torch.float64)
    mask[..., 5:-5, 5:-5] = 1
    assert M.ssim(a, b, mask=mask).item() == pytest.approx(expected, rel=1e-12)
    # the border (zero padding, as pytorch-ssim) differs, so the outside region does too
    assert M.ssim(a, b, mask=mask, region="outside").item() != pytest.approx(expected, rel=1e-3)


def test_ssim_matches_bruteforce_numpy() -> None:
    a, b = _imgs(2, h=12, w=13, seed=4, dtype=torch.float64), _imgs(2, h=12, w=13, seed=5, dtype=torch.float64)
    b = (0.6 * a + 0.4 * b).clamp(-1, 1)  # correlated, so SSIM is far from 0
    ref = _ssim_numpy(((a + 1) / 2).numpy(), ((b + 1) / 2).numpy())
    np.testing.assert_allclose(M.ssim(a, b).numpy(), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(M.ssim(a.float(), b.float()).numpy(), ref, atol=2e-5)  # float32 path
    ref7 = _ssim_numpy(((a + 1) / 2).numpy(), ((b + 1) / 2).numpy(), k=7, sigma=1.0, c1=0.01, c2=0.02)
    got7 = M.ssim(a, b, window_size=7, sigma=1.0, c1=0.01, c2=0.02)
    np.testing.assert_allclose(got7.numpy(), ref7, rtol=1e-10, atol=1e-12)


def test_data_range_conventions_agree() -> None:
    a, b = _imgs(2, seed=6, dtype=torch.float64), _imgs(2, seed=7, dtype=torch.float64)
    for fn in (M.ssim, M.psnr):
        ref = fn(a, b)
        torch.testing.assert_close(fn((a + 1) / 2, (b + 1) / 2, data_range=(0, 1)), ref)
        torch.testing.assert_close(fn((a + 1) * 127.5, (b + 1) * 127.5, data_range=255), ref)


def test_psnr_known_values() -> None:
    a = _imgs(2, seed=8).clamp(-0.8, 0.8)
    for e in (0.1, 0.02):
        got = M.psnr(a, a + e)
        # [-1, 1] has peak-to-peak R = 2: PSNR = 10 log10(R^2 / e^2)
        np.testing.assert_allclose(got.numpy(), 10 * np.log10(4 / e**2), rtol=1e-5)
    assert M.psnr(a, a + 0.1)[0].item() == pytest.approx(26.0206, abs=1e-3)
    assert torch.isinf(M.psnr(a, a)).all()


def test_masked_psnr_ignores_pixels_outside_the_mask() -> None:
    g = torch.Generator().manual_seed(9)
    a = _imgs(2, seed=9).clamp(-0.8, 0.8)
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 2:9, 3:12] = 1
    mask[1, :, 8:, :5] = 1
    b = a + 0.05  # inside: uniform error 0.05
    noise = (torch.rand(a.shape, generator=g) - 0.5) * 0.3
    b = torch.where(mask.bool(), b, a + noise)  # outside: big random error
    inside = M.psnr(a, b, mask=mask)
    np.testing.assert_allclose(inside.numpy(), 10 * np.log10(4 / 0.05**2), rtol=1e-5)
    b2 = torch.where(mask.bool(), b, a - noise)  # changing only the outside leaves the inside score alone
    torch.testing.assert_close(M.psnr(a, b2, mask=mask), inside)
    # the outside region is its own MSE over (1 - mask) pixels
    w = 1 - mask
    mse_out = (((a - b) / 2) ** 2 * w).flatten(1).sum(1) / (3 * w.flatten(1).sum(1))
    torch.testing.assert_close(M.psnr(a, b, mask=mask, region="outside"), 10 * torch.log10(1 / mse_out))
    assert bool((M.psnr(a, b, mask=mask, region="outside") < inside).all())


def test_masked_mean_and_mask_resizing() -> None:
    v = torch.arange(2 * 2 * 4 * 4, dtype=torch.float64).reshape(2, 2, 4, 4)
    ones = torch.ones(2, 1, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(M.masked_mean(v, ones), v.flatten(1).mean(1))
    torch.testing.assert_close(M.masked_mean(v, 0 * ones, region="outside"), v.flatten(1).mean(1))
    m = torch.zeros(1, 1, 4, 4, dtype=torch.float64)  # broadcast over the batch
    m[..., 0, 0] = 1
    torch.testing.assert_close(M.masked_mean(v, m), v[:, :, 0, 0].mean(1))
    # soft weights act as weights; a 2x larger mask is area-averaged down, a 2x smaller one nearest-upsampled
    big = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    big[..., :2, :1] = 1  # covers half of pixel (0, 0)
    torch.testing.assert_close(M.masked_mean(v, big), v[:, :, 0, 0].mean(1))
    small = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    small[..., 0, 0] = 1
    torch.testing.assert_close(M.masked_mean(v, small), v[:, :, :2, :2].mean((1, 2, 3)))
    a, b = _imgs(2, h=16, w=16, seed=10), _imgs(2, h=16, w=16, seed=11)
    m16 = torch.nn.functional.interpolate(small.float(), size=(16, 16), mode="nearest")
    torch.testing.assert_close(M.ssim(a, b, mask=small.float()), M.ssim(a, b, mask=m16))


def test_bad_inputs_raise_clear_value_errors() -> None:
    a = _imgs(2)
    with pytest.raises(ValueError, match="differ in shape"):
        M.ssim(a, a[:, :, :8])
    with pytest.raises(ValueError, match="differ in shape"):
        M.psnr(a, a[:1])
    with pytest.raises(ValueError, match=r"outside data_range \[-1, 1\]"):
        M.ssim(a, a * 1.5)
    with pytest.raises(ValueError, match="outside data_range"):
        M.psnr((a + 1) / 2 * 255, a)
    with pytest.raises(ValueError, match="NaN"):
        M.psnr(a, torch.full_like(a, float("nan")))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        M.ssim(a[0], a[0])
    with pytest.raises(ValueError, match="window_size"):
        M.ssim(a, a, window_size=4)
    empty = torch.zeros(2, 1, 16, 16)
    empty[0, :, :4, :4] = 1  # image 1 has an empty mask
    with pytest.raises(ValueError, match=r"empty inside region .*\[1\]"):
        M.psnr(a, a, mask=empty)
    with pytest.raises(ValueError, match="empty outside region"):
        M.ssim(a, a, mask=torch.ones(2, 1, 16, 16), region="outside")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        M.ssim(a, a, mask=2 * torch.ones(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"mask must be \[N, 1, H, W\]"):
        M.psnr(a, a, mask=torch.ones(2, 3, 16, 16))
    with pytest.raises(ValueError, match="region"):
        M.psnr(a, a, mask=torch.ones(2, 1, 16, 16), region="border")
    with pytest.raises(ValueError, match="data_range"):
        M.psnr(a, a, data_range=(1, -1))
    with pytest.raises(ValueError, match="subset of"):
        M.score_images(a, a, metrics=("fid",))


# ------------------------------------------------------------------------------------------ LPIPS
@pytest.fixture(scope="module")
def random_lpips():
    """An lpips.LPIPS with a seeded random AlexNet trunk and random heads (no weights, no download)."""
    import warnings

    lpips = pytest.importorskip("lpips")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(pretrained=False, net="alex", pnet_rand=True, verbose=False)
    with torch.no_grad():
        for lin in model.lins:  # non-negative heads, as in the real metric
            lin.model[-1].weight.abs_()
    return model.eval().requires_grad_(False)


def test_lpips_distance_masked_logic(random_lpips, monkeypatch) -> None:
    monkeypatch.setattr(M, "_lpips_module", lambda net, version, device: random_lpips)
    a, b = _imgs(2, h=64, w=64, seed=12), _imgs(2, h=64, w=64, seed=13)
    full = M.lpips_distance(a, b)
    torch.testing.assert_close(full, random_lpips(a, b).reshape(2))
    assert full.shape == (2,) and bool((full > 0).all())
    ones = torch.ones(2, 1, 64, 64)
    torch.testing.assert_close(M.lpips_distance(a, b, mask=ones), full, rtol=1e-5, atol=1e-6)
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 16:40, 20:44] = 1
    assert torch.allclose(M.lpips_distance(a, a, mask=mask), torch.zeros(2), atol=1e-6)
    # inside and outside differ; a mask the size of a layer map is used at that layer as is (area-downsampled)
    ins, out = M.lpips_distance(a, b, mask=mask), M.lpips_distance(a, b, mask=mask, region="outside")
    assert not torch.allclose(ins, out)
    scores = M.score_images(a, b, mask=mask)
    assert set(scores) == {f"{m}{r}" for m in ("ssim", "psnr", "lpips") for r in ("", "_inside", "_outside")}
    torch.testing.assert_close(scores["lpips"], full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores["lpips_inside"], ins, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores["lpips_outside"], out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores["ssim_inside"], M.ssim(a, b, mask=mask))
    torch.testing.assert_close(scores["psnr_outside"], M.psnr(a, b, mask=mask, region="outside"))
    torch.testing.assert_close(scores["psnr"], M.psnr(a, b))
    named = M.score_images(a, b, regions={"part": mask}, metrics=("ssim",))
    assert set(named) == {"ssim", "ssim_part"}
    torch.testing.assert_close(named["ssim_part"], scores["ssim_inside"])
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        M.lpips_distance(a[:, :1], b[:, :1])


def test_lpips_distance_real_weights_matches_perceptual() -> None:
    from ddsutils.core import backbones as P
    from ddsutils.core import weights as W

    try:
        W.resolve("alexnet-imagenet", fetch=False)
        W.resolve("lpips-alex-v0.1", fetch=False)
    except W.WeightsError as exc:
        pytest.skip(f"LPIPS-alex weights not cached: {exc}")
    a, b = _imgs(2, h=64, w=64, seed=14), _imgs(2, h=64, w=64, seed=15)
    full = M.lpips_distance(a, b)
    torch.testing.assert_close(full, P.distance(a, b))
    torch.testing.assert_close(M.lpips_distance(a, b, mask=torch.ones(1, 1, 64, 64)), full, rtol=1e-5, atol=1e-6)
    assert bool((full > 0.1).all())  # two noise images are perceptually far apart


# ------------------------------------------------------------------------------------------ KID
def _mmd2_bruteforce(x: np.ndarray, y: np.ndarray, degree: int = 3) -> float:
    m, d = len(x), x.shape[1]
    k = lambda u, v: (u @ v / d + 1.0) ** degree  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_bruteforce_and_is_deterministic() -> None:
    rng = np.random.default_rng(20)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 5)) + 0.4
    mean, std = M.kid(x, y, subsets=3, subset_size=50)  # clipped to 12: every subset is the whole set
    assert mean == pytest.approx(_mmd2_bruteforce(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)
    xl, yl = rng.normal(size=(60, 5)), rng.normal(size=(50, 5)) + 0.4
    r1 = M.kid(xl, torch.from_numpy(yl), subsets=20, subset_size=10, seed=3)
    assert r1 == M.kid(xl, yl, subsets=20, subset_size=10, seed=3)  # deterministic given the seed
    assert r1 != M.kid(xl, yl, subsets=20, subset_size=10, seed=4)
    assert r1[1] > 0


def test_kid_zero_for_same_distribution_positive_for_shifted() -> None:
    rng = np.random.default_rng(21)
    d = 8
    a, b = rng.normal(size=(400, d)), rng.normal(size=(400, d))
    same_mean, same_std = M.kid(a, b, subsets=50, subset_size=100)
    small_shift, _ = M.kid(a, b + 0.2, subsets=50, subset_size=100)
    shifted_mean, _ = M.kid(a, b + 0.5, subsets=50, subset_size=100)
    # the subsets share the 400 points, so the mean keeps the noise of the whole sample (~ a subset's std)
    assert abs(same_mean) < same_std and abs(same_mean) < 0.05
    assert 0.05 < small_shift < shifted_mean and shifted_mean > 20 * abs(same_mean)
    assert M.kid(a, a, subsets=5, subset_size=400)[0] == pytest.approx(
        _mmd2_unbiased_identity(a), rel=1e-9)


def _mmd2_unbiased_identity(a: np.ndarray) -> float:
    # Both sets the same m points: off-diagonal terms cancel except the cross diagonal: -2 tr(K) / m^2 + ...
    m, d = a.shape
    k = (a @ a.T / d + 1.0) ** 3
    off = k.sum() - np.trace(k)
    return 2 * off / (m * (m - 1)) - 2 * k.sum() / m**2


def test_kid_is_unbiased() -> None:
    # Degree-1 kernel (x.y / D + 1): the population MMD^2 is ||mu_a - mu_b||^2 / D. The unbiased estimate
    # averages to it even on tiny subsets (m = 5), where the biased V-statistic is far off.
    rng = np.random.default_rng(22)
    d, delta = 4, 0.5
    a = rng.normal(size=(4000, d))
    b = rng.normal(size=(4000, d)) + delta
    mean, std = M.kid(a, b, subsets=2000, subset_size=5, degree=1)
    assert mean == pytest.approx(delta**2, abs=4 * std / np.sqrt(2000))
    same, std0 = M.kid(a, rng.normal(size=(4000, d)), subsets=2000, subset_size=5, degree=1)
    assert abs(same) < 4 * std0 / np.sqrt(2000)
    # the biased estimate (diagonal kernel terms included) would be ~ 2 E[x.x / D] / m = 2 / 5 here
    assert abs(same) < 0.1


def test_kid_validation() -> None:
    with pytest.raises(ValueError, match="dimensions differ"):
        M.kid(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        M.kid(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="subsets"):
        M.kid(np.zeros((5, 3)), np.zeros((5, 3)), subsets=0)
    with pytest.raises(ValueError, match="NaN"):
        M.kid(np.full((5, 3), np.nan), np.zeros((5, 3)))


# ------------------------------------------------------------------------------------------ Inception / FID
STAND_IN = b"stand-in weights"


@pytest.fixture
def no_inception_cache(tmp_path, monkeypatch):
    """Empty weights cache and torch.hub folder, the repository's manifest; any network access fails the test."""
    import urllib.request

    monkeypatch.setenv("DDS_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.delenv("DDS_WEIGHTS_MANIFEST", raising=False)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def no_network(*args, **kwargs):
        raise AssertionError("network touched")

    monkeypatch.setattr(M.socket, "create_connection", no_network)  # metrics' reachability probe
    monkeypatch.setattr(urllib.request, "urlopen", no_network)  # ddsutils.weights' downloads
    return tmp_path


def _manifest_pinning(tmp_path, monkeypatch, content: bytes):
    """A copy of the repository's manifest whose Inception entry expects ``content``'s sha256 prefix."""
    import hashlib
    import json

    from ddsutils.core import weights as W

    raw = json.loads(W.manifest_path().read_text())
    (entry,) = [e for e in raw["entries"] if e["name"] == M.INCEPTION_WEIGHTS]
    entry["sha256_prefix"] = hashlib.sha256(content).hexdigest()[:8]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(raw))
    monkeypatch.setenv("DDS_WEIGHTS_MANIFEST", str(path))


def _serve(monkeypatch, content: bytes) -> list[str]:
    """A reachable host whose every download is ``content``; returns the URLs asked for."""
    import io
    import urllib.request

    asked: list[str] = []

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(content))}

    def urlopen(req, timeout=None):
        asked.append(req.full_url)
        return Response(content)

    monkeypatch.setattr(M.socket, "create_connection", lambda *a, **k: io.BytesIO())
    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return asked


def test_inception_weights_are_the_manifest_entry() -> None:
    from ddsutils.core import weights as W

    e = W.load_manifest()[M.INCEPTION_WEIGHTS]
    assert e.filename == M.INCEPTION_FILENAME and e.urls == (M.INCEPTION_URL,) and not e.manual
    assert e.sha256_prefix == "6726825d" and e.sha256_prefix in e.filename  # torch.hub's name carries the prefix


def test_inception_fid_offline_fails_fast_with_clear_error(no_inception_cache, monkeypatch) -> None:
    import time

    from ddsutils.core import weights as W

    monkeypatch.setenv("DDS_OFFLINE", "1")
    imgs = _imgs(2, h=32, w=32)
    t0 = time.perf_counter()
    with pytest.raises(W.WeightsUnavailableError) as info:
        M.inception_fid(imgs, imgs)
    assert time.perf_counter() - t0 < 2.0
    msg = str(info.value)
    assert M.INCEPTION_FILENAME in msg and "DDS_OFFLINE=1" in msg
    assert str(no_inception_cache / "weights" / M.INCEPTION_FILENAME) in msg  # where it was looked for
    assert f"python -m ddsutils.weights fetch {M.INCEPTION_WEIGHTS}" in msg  # the fix, through the manifest
    assert "sha256 prefix 6726825d" in msg
    assert M.INCEPTION_URL in msg
    assert "frechet_vgg" in msg and M.FRECHET_VGG_LABEL in msg and "not FID" in msg
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(W.WeightsUnavailableError, match="fetch=False"):
        monkeypatch.delenv("DDS_OFFLINE")
        M.inception_features(imgs, fetch=False)


def test_inception_unreachable_host_fails_within_timeout(no_inception_cache, monkeypatch) -> None:
    import threading
    import time

    from ddsutils.core import weights as W

    monkeypatch.delenv("DDS_OFFLINE", raising=False)

    release = threading.Event()

    def hang(*args, **kwargs):
        release.wait(30)  # a black-holed connection / stuck name lookup, until the test ends
        raise TimeoutError("released by the test")

    monkeypatch.setattr(M.socket, "create_connection", hang)
    t0 = time.perf_counter()
    try:
        with pytest.raises(W.WeightsUnavailableError, match="unreachable .*within 0.3 s"):
            M.inception_weights_path(timeout=0.3)
        assert time.perf_counter() - t0 < 1.5
    finally:
        release.set()  # let the probe thread end here instead of failing in a later test

    def refused(*args, **kwargs):
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(M.socket, "create_connection", refused)
    with pytest.raises(W.WeightsUnavailableError, match="ConnectionRefusedError"):
        M.inception_fid(_imgs(2), _imgs(2))


def test_inception_cached_file_with_wrong_hash_is_rejected(no_inception_cache) -> None:
    from ddsutils.core import weights as W

    bad = no_inception_cache / "weights" / M.INCEPTION_FILENAME
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not the weights")
    with pytest.raises(W.ChecksumError, match=f"{M.INCEPTION_FILENAME}.*expected prefix 6726825d"):
        M.inception_weights_path()


def test_inception_download_goes_through_the_manifest_check(no_inception_cache, monkeypatch) -> None:
    from ddsutils.core import weights as W

    monkeypatch.delenv("DDS_OFFLINE", raising=False)
    cache = no_inception_cache / "weights"
    _manifest_pinning(no_inception_cache, monkeypatch, STAND_IN)
    asked = _serve(monkeypatch, b"a corrupted download")
    with pytest.raises(W.ChecksumError, match="wrong sha256"):
        M.inception_weights_path()
    assert asked == [M.INCEPTION_URL]
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-written is left in the cache
    _serve(monkeypatch, STAND_IN)
    path = M.inception_weights_path()
    assert path == cache / M.INCEPTION_FILENAME and path.read_bytes() == STAND_IN
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")]


def test_inception_torch_hub_copy_is_verified_into_the_cache(no_inception_cache, monkeypatch) -> None:
    """torch-fidelity's own copy (torch.hub's checkpoints folder) is used offline, through the manifest's check."""
    from ddsutils.core import weights as W

    monkeypatch.setenv("DDS_OFFLINE", "1")
    _manifest_pinning(no_inception_cache, monkeypatch, STAND_IN)
    hub = no_inception_cache / "hub" / "checkpoints" / M.INCEPTION_FILENAME
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"a different file")
    with pytest.raises(W.ChecksumError, match="wrong sha256"):
        M.inception_weights_path()
    assert not (no_inception_cache / "weights" / M.INCEPTION_FILENAME).exists()
    hub.write_bytes(STAND_IN)
    path = M.inception_weights_path()
    assert path == no_inception_cache / "weights" / M.INCEPTION_FILENAME and path.read_bytes() == STAND_IN


def test_inception_features_plumbing_with_a_stub_network(no_inception_cache, monkeypatch) -> None:
    from ddsutils.core import weights as W

    seen: list[torch.Tensor] = []

    class Stub(torch.nn.Module):  # stands in for torch-fidelity's Inception-v3: uint8 in, ([N, 2048],) out
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
            seen.append(x)
            return (x.float().mean(dim=(2, 3)).repeat(1, 683)[:, :2048],)

    monkeypatch.setattr(M, "_inception", lambda path, device: Stub())
    # a cached file whose sha256 prefix matches is found without any network access
    cached = no_inception_cache / "weights" / M.INCEPTION_FILENAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(STAND_IN)
    _manifest_pinning(no_inception_cache, monkeypatch, STAND_IN)
    assert M.inception_weights_path() == cached
    img = torch.tensor([-1.0, 0.0, 1.0, 0.5]).reshape(1, 1, 2, 2).expand(3, 3, 2, 2).clone()
    f = M.inception_features(img, batch_size=2)
    assert f.shape == (3, 2048) and f.dtype == torch.float32 and f.device.type == "cpu"
    assert [tuple(x.shape) for x in seen] == [(2, 3, 2, 2), (1, 3, 2, 2)]  # chunks of batch_size
    assert seen[0].dtype == torch.uint8 and seen[0][0, 0].flatten().tolist() == [0, 128, 255, 191]
    a, b = _imgs(4, h=8, w=8, seed=30), _imgs(5, h=8, w=8, seed=31)
    assert M.inception_fid(a, a) == pytest.approx(0.0, abs=1e-6)
    assert M.inception_fid(a, b) == pytest.approx(M.frechet_distance(M.inception_features(a), M.inception_features(b)))
    with pytest.raises(W.WeightsUnavailableError, match="is not a file"):
        M.inception_features(a, weights_path=no_inception_cache / "missing.pth")
    with pytest.raises(ValueError, match="outside data_range"):
        M.inception_features(a * 2)
