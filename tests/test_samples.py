"""The bundled samples: the noisy fluorescence sample is a widefield camera image of a physical PSF, with its
optics; the others keep their known Gaussian kernels (Qt-free)."""
from __future__ import annotations

import numpy as np
import pytest

from napari_kernelgan._sample_data import fluorescence_noisy, tissue
from napari_kernelgan.optics_hints import HINT_KEYS
from napari_kernelgan.physics import Optics, degrade, psf_2d, support_for
from napari_kernelgan.physics.beads import bead_qc
from napari_kernelgan.physics.noise import estimate_poisson_gaussian
from napari_kernelgan.samples import NOISY_FLUORESCENCE, SCALE, TISSUE


def test_noisy_sample_is_a_widefield_psf_on_its_support():
    case = NOISY_FLUORESCENCE
    k = case.kernel()
    optics = Optics(na=1.3, wavelength_um=0.52, n_immersion=1.515, defocus_um=0.25)
    hr_px = case.pixel_um / SCALE
    assert k.shape == (support_for(optics, pixel_um=hr_px),) * 2 == (75, 75)
    np.testing.assert_allclose(k, psf_2d(optics, hr_px, 75), rtol=1e-12)
    assert np.isclose(k.sum(), 1.0) and k.min() >= 0
    fwhm = bead_qc(k)["fwhm_x"]
    assert 2.2 <= fwhm <= 2.4 and case.sigma[0] == pytest.approx(fwhm / 2.3548, abs=2e-3)
    # Airy rings, not a Gaussian: a Gaussian of this FWHM holds all but 1e-5 of its light within two FWHMs
    yy, xx = np.mgrid[-37:38, -37:38]
    assert k[np.hypot(yy, xx) > 2 * fwhm].sum() > 0.05


def test_noisy_sample_is_a_camera_image_of_its_object():
    case = NOISY_FLUORESCENCE
    lr, hr = case.lr(), case.hr()
    assert lr.dtype == np.uint16 and lr.shape == (256, 256) and hr.shape == (512, 512)
    expected = degrade(hr, case.kernel(), SCALE)  # photo-electrons, noise-free
    assert expected.max() == pytest.approx(case.photons, rel=1e-5)
    residual = lr.astype(np.float64) - case.offset - expected
    # Poisson (variance = signal, 1 ADU per electron) plus read noise, rounded: unit variance once normalised
    z = residual / np.sqrt(expected + case.read_noise ** 2 + 1 / 12)
    assert abs(z.mean()) < 0.02 and 0.95 < z.std() < 1.05
    a, _ = estimate_poisson_gaussian(lr)
    assert 0.8 < a < 1.2  # the gain the noise model reads off the image
    np.testing.assert_array_equal(lr, case.lr())  # the same image every time


def test_noisy_sample_layer_carries_its_pixel_size_and_optics():
    (lr, kw, kind), (k, kkw, _) = fluorescence_noisy()
    assert kind == "image" and kw["scale"] == [0.196, 0.196] and kw["units"] == ["µm", "µm"]
    optics = kw["metadata"]["optics"]
    assert set(optics) == set(HINT_KEYS)
    assert optics == {"na": 1.3, "wavelength_um": 0.52, "n_immersion": 1.515, "modality": "widefield",
                      "pinhole_au": None, "pixel_um": 0.196}
    assert k.shape == (75, 75) and kkw["metadata"]["role"] == "true kernel"
    # the kernel panel sits right of the image in world units (µm), a third of its height
    assert kkw["translate"][1] > 256 * 0.196 and kkw["scale"][0] * 75 < 256 * 0.196 / 2


def test_samples_without_optics_are_unchanged():
    (lr, kw, _), _ = tissue()
    assert "scale" not in kw and "optics" not in kw["metadata"] and TISSUE.hints() == {}
    assert TISSUE.pixel_um is None and lr.shape == (256, 256, 3)
