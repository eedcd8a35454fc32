"""The lines estimator: thin filaments give the kernel's projections (v = nᵀΣn, Σ_k = s²·Σ_LR)."""
from __future__ import annotations

import numpy as np
import pytest

import napari_kernelgan as nk
from napari_kernelgan.errors import BadInputError, BadOptionError
from napari_kernelgan.estimators.lines import direction_coverage, solve_covariance
from napari_kernelgan.physics import constant_gaussian, degrade, gaussian_kernel, kernel_l1
from napari_kernelgan.physics.metrics import second_moments
from napari_kernelgan.synthetic import degrade_microscopy, microscopy_scene
from napari_kernelgan.testing import contract_image

TRUE_K = gaussian_kernel(13, 1.7, 1.0, 0.5)


@pytest.fixture(scope="module")
def filaments() -> np.ndarray:
    return microscopy_scene((256, 256), 3, kind="filaments")


def test_projected_variances_give_the_covariance() -> None:
    # Exact projections of a known covariance in several directions are solved back exactly.
    cov = np.array([[1.2, 0.3], [0.3, 0.5]])
    phis = np.linspace(0, np.pi, 12, endpoint=False)
    n = np.stack([np.cos(phis), np.sin(phis)], 1)
    v = np.einsum("ni,ij,nj->n", n, cov, n)
    est, rel = solve_covariance(phis, v, np.ones_like(v))
    np.testing.assert_allclose(est, cov, atol=1e-6)
    assert np.abs(rel).max() < 1e-6
    assert direction_coverage(phis, np.ones_like(v)) == pytest.approx(1.0)
    assert direction_coverage(np.zeros(12), np.ones(12)) == 0.0  # one direction fixes one projection only


def test_recovers_anisotropic_kernel_from_noisy_filaments(filaments: np.ndarray) -> None:
    lr = degrade_microscopy(filaments, TRUE_K, 2, seed=0, photons=500, read_noise=1.5)
    est = nk.estimate_kernel(lr, 2, estimator="lines")
    err = kernel_l1(est.kernel, TRUE_K)
    # Stated tolerance: within 0.12 L1 of the truth, far better than the fixed Gaussian.
    assert err < 0.12, err
    assert err < kernel_l1(constant_gaussian(2), TRUE_K) - 0.1
    assert est.kernel.shape == (13, 13) and np.isclose(est.kernel.sum(), 1)
    assert est.confidence > 0.15 and not est.extras["fallback"]
    cov = np.array(est.extras["covariance"])
    np.testing.assert_allclose(cov, second_moments(TRUE_K), atol=0.2 * np.trace(second_moments(TRUE_K)))


def test_low_confidence_on_photographs_nuclei_and_flat_images() -> None:
    photo = contract_image()
    est = nk.estimate_kernel(photo, 2, estimator="lines")
    assert est.confidence < 0.05
    nuclei = degrade_microscopy(microscopy_scene((256, 256), 2, kind="nuclei"), TRUE_K, 2, seed=1, photons=300,
                                read_noise=1.5)
    assert nk.estimate_kernel(nuclei, 2, estimator="lines").confidence < 0.1
    flat = np.random.default_rng(0).normal(0.5, 0.02, (96, 96)).astype(np.float32)
    est = nk.estimate_kernel(flat, 2, estimator="lines")
    assert est.confidence == 0.0 and est.extras["fallback"]
    np.testing.assert_allclose(est.kernel, constant_gaussian(2))


def test_require_lines_and_bad_options(filaments: np.ndarray) -> None:
    flat = np.random.default_rng(0).normal(0.5, 0.02, (96, 96)).astype(np.float32)
    with pytest.raises(BadInputError, match="no usable thin lines"):
        nk.estimate_kernel(flat, 2, estimator="lines", require_lines=True)
    lr = degrade(filaments, TRUE_K, 2)
    with pytest.raises(BadOptionError, match="min_snr"):
        nk.estimate_kernel(lr, 2, estimator="lines", min_snr=0)
    with pytest.raises(BadOptionError, match="size"):
        nk.estimate_kernel(lr, 2, estimator="lines", size=4)


def test_same_kernel_and_cpu_reported_on_every_device(filaments: np.ndarray, device) -> None:
    # numpy and scipy only: whatever device is asked for, it runs (and says it ran) on the CPU
    lr = degrade_microscopy(filaments, TRUE_K, 2, seed=0, photons=300, read_noise=1.5)
    est = nk.estimate_kernel(lr, 2, estimator="lines", device=device)
    assert est.device == "cpu" and not est.extras["fallback"]
    np.testing.assert_array_equal(est.kernel, nk.estimate_kernel(lr, 2, estimator="lines", device="cpu").kernel)
