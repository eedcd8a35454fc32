"""The spots estimator: point sources give the kernel's covariance (Σ_k = s²·Σ_LR), isolated spots only."""
from __future__ import annotations

import numpy as np
import pytest

import napari_kernelgan as nk
from napari_kernelgan.errors import BadInputError
from napari_kernelgan.physics import analytic_x4, constant_gaussian, degrade, gaussian_kernel, kernel_l1
from napari_kernelgan.physics.metrics import second_moments
from napari_kernelgan.synthetic import degrade_microscopy, microscopy_scene
from napari_kernelgan.testing import contract_image

TRUE_K = gaussian_kernel(13, 1.8, 0.95, 0.6)


@pytest.fixture(scope="module")
def beads() -> np.ndarray:
    return microscopy_scene((256, 256), 1, kind="beads")


def test_point_sampling_relation_on_noise_free_beads(beads):
    # Noise-free: the fitted covariance times s² is the kernel's own, to 5 % (no pixel-integration term).
    lr = degrade(beads, TRUE_K, 2)
    est = nk.estimate_kernel(lr, 2, estimator="spots")
    cov = np.array(est.extras["covariance"])
    np.testing.assert_allclose(cov, second_moments(TRUE_K), atol=0.05 * np.trace(second_moments(TRUE_K)))
    assert est.extras["spots_used"] >= 30


def test_recovers_anisotropic_kernel_from_noisy_beads(beads):
    lr = degrade_microscopy(beads, TRUE_K, 2, seed=0, photons=300, read_noise=1.5)
    est = nk.estimate_kernel(lr, 2, estimator="spots")
    err = kernel_l1(est.kernel, TRUE_K)
    # Stated tolerance: within 0.05 L1 of the truth, far better than the fixed Gaussian.
    assert err < 0.05, err
    assert err < kernel_l1(constant_gaussian(2), TRUE_K) - 0.15
    assert est.kernel.shape == (13, 13) and np.isclose(est.kernel.sum(), 1)
    assert 0.3 < est.confidence <= 1 and not est.extras["fallback"]


def test_x4_input_gives_the_x2_kernel(beads):
    lr = degrade_microscopy(beads, analytic_x4(TRUE_K), 4, seed=1, photons=800, read_noise=1.5)
    est = nk.estimate_kernel(lr, 4, estimator="spots")
    assert kernel_l1(est.kernel, TRUE_K) < 0.15


def test_confidence_falls_with_fewer_fainter_spots(beads):
    bright = nk.estimate_kernel(degrade_microscopy(beads, TRUE_K, 2, seed=0, photons=1000, read_noise=1.5), 2,
                                estimator="spots")
    faint = nk.estimate_kernel(degrade_microscopy(beads, TRUE_K, 2, seed=0, photons=40, read_noise=1.5), 2,
                               estimator="spots")
    assert faint.confidence < bright.confidence


def test_no_spots_falls_back_or_raises():
    img = contract_image()
    est = nk.estimate_kernel(img, 2, estimator="spots")
    assert est.confidence == 0.0 and est.extras["fallback"]
    np.testing.assert_allclose(est.kernel, constant_gaussian(2))
    with pytest.raises(BadInputError, match="no isolated point-like spots"):
        nk.estimate_kernel(img, 2, estimator="spots", require_spots=True)


def test_crowded_spots_are_rejected():
    # Pairs of points 3 LR pixels apart: every spot has a neighbour, none is usable.
    hr = np.zeros((256, 256))
    for r in range(24, 232, 24):
        for c in range(24, 232, 24):
            hr[r, c] = hr[r + 6, c + 2] = 1.0
    lr = degrade_microscopy(hr, TRUE_K, 2, seed=0, photons=500, read_noise=1.0)
    est = nk.estimate_kernel(lr, 2, estimator="spots")
    assert est.extras["fallback"] and est.extras["rejected_crowded"] > 50
