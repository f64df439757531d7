"""Tests for ddsutils.metrics: the Fréchet distance (known values) and VGG-16 features (fast, CPU only)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ddsutils import metrics as M


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
    from ddsutils import toyworld as tw
    from ddsutils import weights as W

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
