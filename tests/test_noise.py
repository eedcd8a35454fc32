"""Noise estimators recover known parameters; the generalised Anscombe pair stabilises and inverts without bias."""
from __future__ import annotations

import numpy as np
import pytest

from napari_kernelgan.errors import BadInputError
from napari_kernelgan.physics import degrade, gaussian_kernel
from napari_kernelgan.physics.noise import anscombe, estimate_noise_sigma, estimate_poisson_gaussian, inverse_anscombe
from napari_kernelgan.synthetic import dead_leaves, microscopy_case


@pytest.fixture(scope="module")
def scenes() -> dict[str, np.ndarray]:
    return {"dead leaves": dead_leaves((256, 256), 4),
            "blurred dead leaves": degrade(dead_leaves((256, 256), 3), gaussian_kernel(13, 1.5), 2)}


@pytest.mark.parametrize("sigma", [0.01, 0.03])
@pytest.mark.parametrize("scene", ["dead leaves", "blurred dead leaves"])
def test_sigma_of_white_noise_within_15_percent(scenes, scene, sigma):
    clean = scenes[scene]
    for seed in range(2):
        noisy = clean + np.random.default_rng(seed).normal(0, sigma, clean.shape)
        assert estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.15)


def test_sigma_per_channel_median():
    rng = np.random.default_rng(0)
    clean = dead_leaves((128, 128), 1)
    stack = np.stack([clean + rng.normal(0, s, clean.shape) for s in (0.01, 0.02, 0.2)])
    assert estimate_noise_sigma(stack) == pytest.approx(0.02, rel=0.15)


@pytest.mark.parametrize(("a", "b"), [(2.0, 9.0), (0.5, 1.0)])
def test_poisson_gaussian_parameters(a, b):
    yy, xx = np.mgrid[:256, :256]
    y = 10 + 190 * (0.5 + 0.5 * np.sin(xx / 40.0) * np.cos(yy / 55.0))
    rng = np.random.default_rng(1)
    z = a * rng.poisson(y / a) + rng.normal(0, np.sqrt(b), y.shape)
    a_hat, b_hat = estimate_poisson_gaussian(z)
    # Stated tolerance: the gain within 8 %, the predicted variance within 10 % over the range.
    assert a_hat == pytest.approx(a, rel=0.08)
    for level in (30.0, 100.0, 190.0):
        assert a_hat * level + b_hat == pytest.approx(a * level + b, rel=0.10)


def test_poisson_gaussian_on_a_camera_image():
    case = microscopy_case(3, shape=(512, 512), kind="nuclei", photons=500)
    a_hat, b_hat = estimate_poisson_gaussian(case.lr)
    # 1 ADU per electron; b = read_noise² − offset (plus 1/12 of rounding).
    assert a_hat == pytest.approx(1.0, rel=0.10)
    true_var = (case.offset + 50 - case.offset) + case.read_noise ** 2
    assert a_hat * (case.offset + 50) + b_hat == pytest.approx(true_var, rel=0.2)


def test_photon_limited_tells_shot_noise_from_additive_noise():
    from napari_kernelgan.physics.noise import photon_limited

    case = microscopy_case(3, shape=(256, 256), kind="nuclei", photons=300)
    assert photon_limited(case.lr.astype(np.float64)) is not None
    clean = case.hr / case.hr.max()
    gaussian = clean + np.random.default_rng(0).normal(0, 0.03, clean.shape)
    assert photon_limited(gaussian) is None
    assert photon_limited(np.full((64, 64), 3.0)) is None  # nothing to fit: not a claim of shot noise


def test_anscombe_stabilises_and_inverts_without_bias():
    a, b = 1.5, 4.0
    rng = np.random.default_rng(0)
    for lam in (1.0, 2.0, 5.0, 20.0, 100.0):
        z = a * rng.poisson(lam, 200_000) + rng.normal(0, 2.0, 200_000)
        d = anscombe(z, a, b)
        if lam >= 2:
            assert d.std() == pytest.approx(1.0, abs=0.07)
        # The exact-unbiased inverse maps E[f(z)] back to E[z] (not the algebraic inverse's biased value).
        assert float(inverse_anscombe(d.mean(), a, b)) == pytest.approx(a * lam, rel=0.05 if lam < 2 else 0.02)
    algebraic = (a / 4) * 2.0 ** 2 - 0.375 * a - b / a  # f(z) = 2 → z, algebraically
    assert float(inverse_anscombe(np.array(2.0), a, b)) != pytest.approx(algebraic, rel=0.01)


def test_inverse_anscombe_floor_is_zero_counts():
    assert float(inverse_anscombe(np.array(0.1), 1.0, 0.0)) == 0.0
    # A negative b is an offset: zero counts sit at −b/a.
    assert float(inverse_anscombe(np.array(0.1), 1.0, -100.0)) == pytest.approx(100.0)


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(BadInputError, match="too small"):
        estimate_noise_sigma(np.zeros((4, 4)))
    with pytest.raises(BadInputError, match="NaN"):
        estimate_noise_sigma(np.full((32, 32), np.nan))
    with pytest.raises(BadInputError, match="constant"):
        estimate_poisson_gaussian(np.ones((64, 64)))
    with pytest.raises(BadInputError, match="a > 0"):
        anscombe(np.ones(3), 0.0, 1.0)
    assert estimate_noise_sigma(np.ones((32, 32))) == 0.0
