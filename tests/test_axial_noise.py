"""The one noise measurement of a stack (``axial._zops.measure_stack_noise``): the SR's rule (the fit only where
shot noise dominates) and the PSF estimate's (the fit wherever it gives a positive variance), and an estimate
path free of NumPy deprecations."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from napari_kernelgan.axial._zops import measure_stack_noise
from napari_kernelgan.axial.estimate import estimate_psf3d
from napari_kernelgan.physics.noise import estimate_noise_sigma, estimate_poisson_gaussian
from napari_kernelgan.physics.optics import Optics
from napari_kernelgan.synthetic3d import axial_case


def _ramp(n: int = 256) -> np.ndarray:
    y, x = np.mgrid[:n, :n]
    return 50.0 + 450.0 * (x + y) / (2 * n - 2)  # a range of flat intensities for the level sets


def test_counts_read_as_photon_limited_under_both_rules() -> None:
    plane = np.random.default_rng(0).poisson(_ramp()).astype(np.float64)
    sr = measure_stack_noise(plane)
    est = measure_stack_noise(plane, crop=None, shot_only=False)
    assert sr.photon_limited and est.photon_limited
    assert sr.a == pytest.approx(1.0, rel=0.15)  # one count per unit
    assert (est.a, est.b) == (sr.a, sr.b)  # one fit, read alike where shot noise dominates


def test_weak_shot_noise_is_gaussian_for_the_sr_but_kept_as_fitted_for_the_estimate() -> None:
    rng = np.random.default_rng(1)
    plane = rng.poisson(_ramp() / 50.0) * 50.0 / 50.0 + rng.normal(0.0, 6.0, (256, 256))  # read noise dominates
    plane = plane + _ramp() * (1 - 1 / 50.0)
    sr = measure_stack_noise(plane)
    est = measure_stack_noise(plane, crop=None, shot_only=False)
    a, b = estimate_poisson_gaussian(plane)
    assert not sr.photon_limited
    assert (sr.a, sr.b) == (0.0, estimate_noise_sigma(plane) ** 2)
    assert sr.b == pytest.approx(36.0, rel=0.2)
    # The estimate keeps the Poisson–Gaussian fit (a clipped at 0) as it measured it before
    assert (est.a, est.b) == (max(a, 0.0), b)
    assert est.a * plane.mean() + est.b == pytest.approx(36.0 + plane.mean() / 50.0, rel=0.25)


def test_the_sr_rule_measures_a_centre_crop_and_the_estimate_the_whole_plane() -> None:
    rng = np.random.default_rng(2)
    plane = 200.0 + rng.normal(0.0, 2.0, (600, 600))
    plane[:, :40] += rng.normal(0.0, 40.0, (600, 40))  # a noisy border outside the centre 512²
    centre = measure_stack_noise(plane)
    assert not centre.photon_limited
    assert centre.b == estimate_noise_sigma(plane[44:556, 44:556]) ** 2 == pytest.approx(4.0, rel=0.2)
    whole = measure_stack_noise(plane, crop=None)
    assert (whole.a, whole.b) != (centre.a, centre.b)  # the noisy border is measured there


def test_the_estimate_without_optics_raises_no_numpy_deprecation() -> None:
    case = axial_case(101, Optics(na=1.2, wavelength_um=0.52, n_immersion=1.333), factor=4, shape=(48, 48, 48))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        psf = estimate_psf3d(case.stack, pixel_um=case.pixel_um, z_step_um=case.z_step_um, threads=1)
    assert psf.axial_fwhm_um > 0
