"""Photon-limited refinement (sr/_poisson.py): thinning, Richardson–Lucy, the cross-validated step count."""
from __future__ import annotations

import numpy as np
import pytest

from napari_kernelgan import super_resolve
from napari_kernelgan.physics import degrade, gaussian_kernel, image_psnr, imresize
from napari_kernelgan.sr import _poisson
from napari_kernelgan.types import KernelEstimate

KW = {"device": "cpu", "threads": 1}


def _estimate(kernel: np.ndarray, confidence: float) -> KernelEstimate:
    return KernelEstimate(kernel=kernel, dmap=None, loss_history={}, iterations=0, elapsed=0.0, device="cpu",
                          seed=0, method="test", confidence=confidence)


def _puncta(shape: tuple[int, int], rng: np.random.Generator, n: int = 60) -> np.ndarray:
    """Sparse point sources on a dim background (photo-electrons)."""
    hr = np.full(shape, 2.0)
    rows, cols = rng.integers(4, shape[0] - 4, n), rng.integers(4, shape[1] - 4, n)
    hr[rows, cols] += rng.uniform(400.0, 1500.0, n)
    return hr


def test_thinning_gives_two_independent_halves_of_half_the_mean():
    rng = np.random.default_rng(0)
    counts = rng.poisson(40.0, (256, 256)).astype(np.float64)
    first, second = _poisson.thin(counts, np.random.default_rng(1))
    np.testing.assert_array_equal(first + second, counts)
    assert abs(first.mean() - 20.0) < 0.2 and abs(second.mean() - 20.0) < 0.2
    # Poisson halves: variance equals the mean, and the halves do not correlate.
    assert abs(first.var() / first.mean() - 1.0) < 0.05
    assert abs(np.corrcoef(first.ravel(), second.ravel())[0, 1]) < 0.02


def test_counts_round_trip_and_shift():
    x = np.linspace(0.0, 1.0, 11)
    a, b = 0.004, -0.0003
    np.testing.assert_allclose(_poisson.from_counts(_poisson.to_counts(x, a, b), a, b), x)
    # A camera with gain g, read noise σ_r and offset o: var = g·(z − o) + g²σ_r², so a = g, b = g²σ_r² − g·o,
    # and the counts are the photo-electrons plus σ_r².
    g, read, offset = 2.0, 1.5, 100.0
    z = offset + g * np.array([0.0, 10.0, 250.0])
    np.testing.assert_allclose(_poisson.to_counts(z, g, g * g * read ** 2 - g * offset),
                               np.array([0.0, 10.0, 250.0]) + read ** 2)


def test_richardson_lucy_restores_point_sources_and_the_held_out_half_stops_it():
    rng = np.random.default_rng(3)
    hr = _puncta((128, 128), rng)
    k = gaussian_kernel(11, 1.6)
    counts = rng.poisson(degrade(hr, k, 2)).astype(np.float64)
    start = imresize(counts, 2)
    x, _ = _poisson.richardson_lucy(counts, start, k, 2, 30)
    psnr = lambda v: image_psnr(v, hr, data_range=float(hr.max()), shave=4)  # noqa: E731
    assert psnr(x) > psnr(start) + 1.5, (psnr(x), psnr(start))
    halves = _poisson.thin(counts, np.random.default_rng(0))
    steps = _poisson.choose_iterations(halves, imresize(2.0 * halves[0], 2) / 2.0, k, 2)
    assert steps >= 5  # bright, sparse and well sampled: many steps predict the held-out half better
    # On a flat image there is nothing to restore: the held-out half is best predicted at once.
    flat = rng.poisson(np.full((64, 64), 3.0)).astype(np.float64)
    halves = _poisson.thin(flat, np.random.default_rng(0))
    assert _poisson.choose_iterations(halves, np.full((128, 128), 0.75), k, 2) <= 1


def test_safe_sr_refines_photon_limited_images_and_gains_on_puncta():
    from napari_kernelgan.synthetic import microscopy_case

    mc = microscopy_case(2, shape=(192, 192), photons=1000.0, kind="puncta")
    res = super_resolve(mc.lr, _estimate(mc.kernel, 0.5), 2, seed=0, **KW)
    steps = res.options["poisson_refinement"]
    assert res.options["noise_model"] == "poisson-gaussian" and steps >= 5
    # The same SR without the refinement: the closed-form method with the options the safeguards chose.
    plain = super_resolve(mc.lr, mc.kernel, 2, sigma=res.options["sigma"], tv_scale=res.options["tv_scale"],
                          safe=False, **KW).image

    def psnr(v: np.ndarray) -> float:
        return image_psnr(v.astype(np.float64) - mc.offset, mc.hr, data_range=float(mc.hr.max()), shave=4)

    bicubic = psnr(imresize(mc.lr.astype(np.float64), 2))
    assert psnr(res.image) > psnr(plain) + 0.2 and psnr(res.image) > bicubic + 0.3, \
        (psnr(res.image), psnr(plain), bicubic)
    # Seeded: the same call gives the same image.
    np.testing.assert_array_equal(super_resolve(mc.lr, _estimate(mc.kernel, 0.5), 2, seed=0, **KW).image,
                                  res.image)


def test_clean_images_are_not_refined():
    from skimage import data

    k = gaussian_kernel(11, 1.2)
    for name, model in (("camera", "gaussian"), ("brick", "poisson-gaussian")):
        hr = getattr(data, name)()[:256, :256].astype(np.float64)
        lr = np.clip(np.round(degrade(hr, k, 2)), 0, 255).astype(np.uint8)
        res = super_resolve(lr, _estimate(k, 0.5), 2, **KW)
        # Brick's texture mimics signal-dependent noise, but far too weakly for photon counting.
        assert res.options["noise_model"] == model and res.options["noise_sigma"] < _poisson.MIN_SIGMA
        assert "poisson_refinement" not in res.options


def test_richardson_lucy_stays_bounded_where_the_zero_level_is_above_the_darkest_pixels() -> None:
    """A real confocal image (with saturated regions) whose fitted zero level lies above its dark background:
    its counts and the start are negative there, and RL without the pedestal ran up to 65535 in a few pixels
    (PSNR -0.2 dB where bicubic has 20.9). Where every count is non-negative RL runs as it is (no pedestal)."""
    from pathlib import Path

    import tifffile

    path = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real_dev" / "plant_tissue_confocal.tif"
    if not path.is_file():
        pytest.skip("real_dev data not present")
    hr = tifffile.imread(path).astype(np.float64)
    hr -= hr.min()
    f = np.fft.fftfreq(512, d=0.25)      # an in-focus pupil PSF at 0.25 λ/NA per pixel (FWHM 2.1 px)
    psf = np.fft.fftshift(np.abs(np.fft.ifft2((f[:, None] ** 2 + f[None, :] ** 2 <= 1.0) * 1.0)) ** 2)[246:267, 246:267]
    psf /= psf.sum()
    clean = degrade(hr, psf, 2)
    rng = np.random.default_rng(6001)
    lr = rng.poisson(np.clip(clean * 300.0 / clean.max(), 0, None)) + 100 + rng.normal(0, 1.5, clean.shape)
    lr = np.round(lr).astype(np.uint16)
    res = super_resolve(lr, psf, 2, **KW)
    target_peak = 300.0 / clean.max() * hr.max() + 100
    assert res.image.max() < 1.5 * target_peak, (res.image.max(), target_peak)
    assert _poisson._pedestal(np.zeros((4, 4)), np.full((8, 8), -1.0)) == 0.0
