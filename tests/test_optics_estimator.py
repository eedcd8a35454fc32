"""The ``optics`` estimator: a physical PSF fitted to a blurred, subsampled, photon-noisy image's edges."""
from __future__ import annotations

import numpy as np
import pytest

from napari_kernelgan import estimate_kernel
from napari_kernelgan.physics import Optics, constant_gaussian, degrade, kernel_l1, pad_to, psf_2d
from napari_kernelgan.synthetic import dead_leaves

LAMBDA = 0.52


def _case(na: float, defocus: float, pixel_um: float, seed: int = 0, side: int = 256) -> tuple[np.ndarray, np.ndarray]:
    truth = psf_2d(Optics(na=na, wavelength_um=LAMBDA, defocus_um=defocus), pixel_um / 2, 41)
    lr = degrade(dead_leaves((side, side), seed), truth, 2)
    rng = np.random.default_rng(seed)
    noisy = rng.poisson(np.clip(lr, 0, None) * 300) / 300
    return np.clip(noisy, 0, 1).astype(np.float32), truth


@pytest.fixture(scope="module")
def sharp_case() -> tuple[np.ndarray, np.ndarray]:
    # NA 1.2 at 0.1 µm HR pixels: a 2.2-pixel FWHM Airy PSF
    return _case(1.2, 0.0, 0.2)


def test_kernel_is_the_physical_psf_of_the_fitted_optics(sharp_case):
    lr, _ = sharp_case
    est = estimate_kernel(lr, estimator="optics", pixel_um=0.2, wavelength_um=LAMBDA)
    fit = est.options["optics_fit"]
    k = est.kernel
    assert k.shape[0] % 2 == 1 and 13 <= k.shape[0] <= 41
    assert k.sum() == pytest.approx(1.0) and k.min() >= 0
    again = psf_2d(Optics(na=fit["na"], wavelength_um=LAMBDA, defocus_um=fit["defocus_um"]), 0.1, k.shape[0])
    np.testing.assert_allclose(k, again, atol=1e-12)
    assert 0 <= est.confidence <= 1


def test_recovers_na_and_beats_the_fixed_gaussian(sharp_case):
    lr, truth = sharp_case
    est = estimate_kernel(lr, estimator="optics", pixel_um=0.2, wavelength_um=LAMBDA)
    na = est.options["optics_fit"]["na"]
    # the sharpest quarter of edges (the ``edges`` quantile) reads slightly sharp under photon noise
    assert na == pytest.approx(1.2, rel=0.25)
    l1 = kernel_l1(pad_to(est.kernel, 41), truth)
    assert l1 < 0.6 * kernel_l1(pad_to(constant_gaussian(2), 41), truth)


@pytest.mark.parametrize("defocus", [0.0, 0.4, 0.6])
def test_defocus_is_recovered_when_the_objective_is_known(defocus):
    lr, _ = _case(1.2, defocus, 0.2, seed=4)
    fit = estimate_kernel(lr, estimator="optics", pixel_um=0.2, wavelength_um=LAMBDA, na=1.2).options["optics_fit"]
    assert fit["na"] == 1.2 and not fit["contradiction"]
    # a 2-D image tells defocus only through the width it adds: within 0.2 µm at NA 1.2 (axial FWHM 0.7 µm)
    assert fit["defocus_um"] == pytest.approx(defocus, abs=0.2)


@pytest.mark.parametrize("na, defocus, pixel_um, seed", [(1.2, 0.0, 0.2, 0), (0.8, 0.6, 0.26, 1)])
def test_with_the_objective_known_the_kernel_beats_auto_and_the_fixed_gaussian(na, defocus, pixel_um, seed):
    lr, truth = _case(na, defocus, pixel_um, seed=seed)
    est = estimate_kernel(lr, estimator="optics", pixel_um=pixel_um, wavelength_um=LAMBDA, na=na)
    auto = estimate_kernel(lr, estimator="auto")
    l1 = kernel_l1(pad_to(est.kernel, 41), truth)
    # auto's microscope mode returns a physical PSF too (its width mostly the microscope prior): with the
    # objective known the fit is at least about as good (within 10 %), and far better than the fixed Gaussian
    assert l1 < 1.1 * kernel_l1(pad_to(auto.kernel, 41), truth)
    assert l1 < 0.8 * kernel_l1(pad_to(constant_gaussian(2), 41), truth)


def test_metadata_contradicting_the_image_lowers_the_confidence(sharp_case):
    lr, _ = sharp_case
    plain = estimate_kernel(lr, estimator="optics", pixel_um=0.2, wavelength_um=LAMBDA)
    wrong = estimate_kernel(lr, estimator="optics", pixel_um=0.2, wavelength_um=LAMBDA, na=0.6)
    assert wrong.options["optics_fit"]["contradiction"]
    assert wrong.confidence < 0.5 * plain.confidence


def test_unknown_pixel_size_gives_the_effective_aperture(sharp_case):
    lr, _ = sharp_case
    known = estimate_kernel(lr, estimator="optics", pixel_um=0.2, wavelength_um=LAMBDA).options["optics_fit"]
    blind = estimate_kernel(lr, estimator="optics").options["optics_fit"]
    # only NA · pixel / λ shows in the image; the nominal NA's aperture angle shapes the rings differently,
    # so the two fits agree on it within 35 %
    assert blind["na_eff_pixel_per_wavelength"] == pytest.approx(known["na_eff_pixel_per_wavelength"], rel=0.35)


@pytest.mark.parametrize("kind", ["flat", "noise"])
def test_flat_or_noise_images_give_low_confidence(kind):
    rng = np.random.default_rng(3)
    # "flat": an even field with photon-like grain (a constant image is refused before any estimator runs)
    img = 0.4 + 0.01 * rng.standard_normal((96, 96)) if kind == "flat" else rng.random((96, 96))
    est = estimate_kernel(img.astype(np.float32), estimator="optics", pixel_um=0.2)
    assert est.confidence < 0.2
    assert est.kernel.sum() == pytest.approx(1.0)


def test_refuses_an_na_above_the_immersion_index():
    lr = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    with pytest.raises(Exception, match="n_immersion"):
        estimate_kernel(lr, estimator="optics", na=1.4, n_immersion=1.33)


def test_kernel_map_tiles_share_the_whole_images_kernel_side(sharp_case):
    from napari_kernelgan.estimators.optics import optics, optics_tiles

    lr, _ = sharp_case
    frames = lr[None, None]
    opts = {"pixel_um": 0.2, "wavelength_um": LAMBDA}

    def drain(gen):
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value

    whole = drain(optics(frames, **opts))
    boxes = np.array([[0, 0, 64, 64], [0, 64, 128, 128]])   # a featureless-small tile and a real one
    tiles = drain(optics_tiles(frames, boxes, **opts))
    assert len(tiles) == 2
    for tile in tiles:
        if tile.kernel is not None:
            assert tile.kernel.shape == whole.kernel.shape
    assert tiles[1].kernel is not None and 0 < tiles[1].confidence <= 1


def test_a_x4_input_returns_the_psf_on_the_x2_grid():
    truth4 = psf_2d(Optics(na=1.2, wavelength_um=LAMBDA), 0.1, 41)
    lr = degrade(dead_leaves((384, 384), 6), truth4, 4)
    noisy = np.clip(np.random.default_rng(6).poisson(np.clip(lr, 0, None) * 300) / 300, 0, 1).astype(np.float32)
    est = estimate_kernel(noisy, estimator="optics", scale=4, pixel_um=0.4, wavelength_um=LAMBDA)
    fit = est.options["optics_fit"]
    assert fit["pixel_um_hr"] == pytest.approx(0.1) and fit["pixel_um_x2"] == pytest.approx(0.2)
    again = psf_2d(Optics(na=fit["na"], wavelength_um=LAMBDA), 0.2, est.kernel.shape[0])
    np.testing.assert_allclose(est.kernel, again, atol=1e-12)
    assert fit["na"] == pytest.approx(1.2, rel=0.3)
