"""Conventions, degradation and metrics: one test per convention, on real numbers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from napari_kernelgan.physics import (analytic_x4, centre_of_mass, constant_gaussian, degrade, degrade_adjoint,
                                      gaussian_kernel, kernel_kcov, kernel_l1, kernel_psnr, random_div2krk_kernel)
from napari_kernelgan.physics.conventions import kernel_for_subsampling, validate_kernel

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "div2krk"


def asym_kernel() -> np.ndarray:
    k = gaussian_kernel(13, 2.2, 0.8, 0.5)
    k[4:6, 8:10] += 0.02  # a lobe off one side: its flip is a different kernel
    return k / k.sum()


def test_adjoint_identity() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((40, 36))
    y = rng.random((20, 18))
    k = asym_kernel()
    ax = degrade(x, k, 2, mode="constant")
    assert np.isclose(np.vdot(ax, y), np.vdot(x, degrade_adjoint(y, k, 2, x.shape)), rtol=1e-10)


def test_subsampling_phase_keeps_field_of_view() -> None:
    """A symmetric kernel at ×2: LR pixel i sits at HR position 2i + 0.5 (corner-to-corner alignment)."""
    ramp = np.tile(np.arange(64, dtype=float), (64, 1))
    lr = degrade(ramp, gaussian_kernel(13, 1.5), 2)
    assert np.allclose(lr[10, 5:25], 2 * np.arange(5, 25) + 0.5, atol=1e-6)
    assert np.allclose(centre_of_mass(kernel_for_subsampling(gaussian_kernel(13, 1.5), 2)), [9.5, 9.5])


def test_x4_from_x2_equals_degrading_twice() -> None:
    img = data.camera()[100:356, 100:356].astype(float)
    k2 = gaussian_kernel(13, 1.4, 0.9, 0.3)
    twice = degrade(degrade(img, k2, 2, mode="wrap"), k2, 2, mode="wrap")
    once = degrade(img, analytic_x4(k2), 4, mode="wrap")
    # 8-bit scale: about one grey level at worst, from the sub-pixel interpolation of a sharp kernel
    diff = np.abs(twice - once)[4:-4, 4:-4]
    assert diff.max() < 1.5 and diff.mean() < 0.1
    # covariances add: Σ4 = Σ2 + 4·Σ2
    from napari_kernelgan.physics.metrics import second_moments
    assert np.allclose(second_moments(analytic_x4(k2)), 5 * second_moments(k2), atol=1e-3)


def test_flipped_kernel_measurably_loses() -> None:
    """Orientation: the correlation kernel reproduces the degradation, its flip does not."""
    hr = data.camera()[:256, :256].astype(float)
    k = asym_kernel()
    lr = np.round(degrade(hr, k, 2))  # stored as 8-bit data would be
    err_right = np.abs(degrade(hr, k, 2) - lr).mean()
    err_flip = np.abs(degrade(hr, k[::-1, ::-1], 2) - lr).mean()
    assert err_right < 0.26  # the rounding floor
    assert err_flip > 1.3 * err_right
    assert kernel_l1(k[::-1, ::-1], k) > 0.1


@pytest.mark.skipif(not SHARED.is_dir(), reason="DIV2KRK data not found beside the repository (../shared)")
def test_matches_div2krk_generation() -> None:
    from scipy.io import loadmat

    from napari_kernelgan.io import read_image

    hr = read_image(SHARED / "hr" / "im_2.png")[:300, :300].astype(float)
    lr = read_image(SHARED / "lr_x2" / "im_2.png")[:150, :150].astype(float)
    k = loadmat(SHARED / "gt_k_x2" / "kernel_2.mat")["Kernel"]
    rmse = lambda a: np.sqrt(np.mean((np.round(a) - lr)[8:-8, 8:-8] ** 2))  # noqa: E731
    assert rmse(degrade(hr, k, 2)) < 1.0
    assert rmse(degrade(hr, k[::-1, ::-1], 2)) > rmse(degrade(hr, k, 2))
    assert rmse(degrade(hr, k, 1)[::2, ::2]) > 2.0  # without the half-pixel shift


def test_metrics_behave() -> None:
    k = gaussian_kernel(11, 1.5, 1.0, 0.4)
    assert kernel_l1(k, k) < 1e-9
    from napari_kernelgan.physics import pad_to
    shifted = np.roll(pad_to(k, 15), 2, axis=1)  # padded first: the roll must not wrap mass around
    assert kernel_l1(shifted, k) < 1e-6  # alignment removes integer shifts
    assert kernel_l1(gaussian_kernel(13, 2.5), k) > kernel_l1(gaussian_kernel(13, 1.25), k)
    assert kernel_psnr(k, k) > 100 and kernel_psnr(gaussian_kernel(11, 3.0), k) < 50
    assert kernel_kcov(gaussian_kernel(11, 1.5, 1.0, 0.4), k) < 1e-9
    assert kernel_kcov(gaussian_kernel(11, 2.0), k) > 1.0


def test_constant_baseline_and_random_kernels() -> None:
    rng = np.random.default_rng(1)
    ks = [random_div2krk_kernel(rng) for _ in range(20)]
    for k in ks:
        assert k.shape == (11, 11) and np.isclose(k.sum(), 1) and k.min() >= 0
        # wide kernels are truncated by the 11×11 support, so centring is good to a tenth of a pixel
        # (the DIV2KRK ground truth itself is off by up to 0.034 px)
        assert np.allclose(centre_of_mass(k), [5, 5], atol=0.1)
    assert random_div2krk_kernel(rng, 4).shape == (31, 31)
    assert constant_gaussian(2).shape == (13, 13) and constant_gaussian(4).shape == (31, 31)


@pytest.mark.parametrize("bad, msg", [
    (np.ones((4, 4)) / 16, "odd size"),
    (np.ones((3, 3)), "sums to"),
    (np.array([[0, 0, 0], [0, 2, 0], [0, 0, -1.0]]), "negative"),
    (np.full((3, 3), np.nan), "NaN"),
    (np.ones(9) / 9, "2-D"),
])
def test_validate_kernel_errors(bad: np.ndarray, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        validate_kernel(bad)


def test_validate_kernel_accepts_div2krk_ringing_and_clips_it():
    """Interpolated kernels (as DIV2KRK's ground truth) have taps of about -1% of the peak: accepted, clipped."""
    k = gaussian_kernel(13, 1.5)
    k[0, 6] = -0.008 * k.max()
    out = validate_kernel(k / k.sum())
    assert out.min() == 0.0 and np.isclose(out.sum(), 1.0)
