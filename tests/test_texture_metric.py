"""``physics.metrics.texture_excess``: ringing and grids score worse than smooth outputs of the same PSNR."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_kernelgan.physics.metrics import image_psnr, texture_excess


def _scene(n: int = 192, seed: int = 0) -> np.ndarray:
    """Discs of several sizes and brightnesses over a faint ramp and a soft stripe pattern (8-bit range)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    img = 20.0 + 0.05 * yy + 10.0 * np.sin(2 * np.pi * xx / 23.0)
    for _ in range(25):
        cy, cx = rng.uniform(0, n, 2)
        r = rng.uniform(4, 18)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] += rng.uniform(40, 150)
    return ndimage.gaussian_filter(img, 0.7)


def _ideal_low_pass(img: np.ndarray, cutoff: float) -> np.ndarray:
    """A brick-wall low-pass: the Gibbs ringing of a sharp cut in frequency (as a truncated inverse filter gives)."""
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.fftfreq(img.shape[1])[None, :]
    return np.real(np.fft.ifft2(np.fft.fft2(img) * (np.hypot(fy, fx) <= cutoff)))


def _smooth_at_psnr(truth: np.ndarray, psnr: float) -> np.ndarray:
    """The Gaussian blur of ``truth`` whose PSNR against it is ``psnr`` (bisection on σ)."""
    lo, hi = 0.01, 8.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if image_psnr(ndimage.gaussian_filter(truth, mid), truth) > psnr else (lo, mid)
    return ndimage.gaussian_filter(truth, 0.5 * (lo + hi))


@pytest.mark.parametrize("cutoff", [0.3, 0.35])
def test_gibbs_ringing_scores_worse_than_a_smooth_output_of_equal_psnr(cutoff: float) -> None:
    truth = _scene()
    ringing = _ideal_low_pass(truth, cutoff)
    smooth = _smooth_at_psnr(truth, image_psnr(ringing, truth))
    assert image_psnr(smooth, truth) == pytest.approx(image_psnr(ringing, truth), abs=0.01)
    # Measured: ringing 0.20 (either cutoff), smooth 0.0000: the Gaussian adds no energy anywhere.
    assert texture_excess(smooth, truth) < 0.005
    assert texture_excess(ringing, truth) > 0.1


def test_a_grid_pattern_scores_worse_than_a_smooth_output_of_equal_psnr() -> None:
    truth = _scene()
    smooth = ndimage.gaussian_filter(truth, 1.0)
    rms = np.sqrt(np.mean((smooth - truth) ** 2))
    checker = (-1.0) ** np.add.outer(np.arange(truth.shape[0]), np.arange(truth.shape[1]))
    gridded = truth + rms * checker   # every pixel right but for a ×2 upsampler's checkerboard
    assert image_psnr(gridded, truth) == pytest.approx(image_psnr(smooth, truth), abs=1e-6)
    assert texture_excess(gridded, truth) > 1.0 > 100 * texture_excess(smooth, truth)


def test_texture_excess_is_zero_for_the_truth_grows_with_noise_and_ignores_scale() -> None:
    truth = _scene()
    noise = np.random.default_rng(3).normal(0.0, 1.0, truth.shape)
    assert texture_excess(truth, truth) == 0.0
    scores = [texture_excess(truth + a * noise, truth) for a in (1.0, 3.0, 9.0)]
    assert 0 < scores[0] < scores[1] < scores[2]
    # A ratio of energies: the same images in other units (ADU, photons, an offset) score the same.
    assert texture_excess(7.0 * (truth + 3.0 * noise) + 100.0, 7.0 * truth + 100.0, data_range=2000.0) == \
        pytest.approx(scores[1], rel=1e-9)
    # The shave crops before filtering: a ring of artefacts along the border is shaved away.
    framed = truth.copy()
    framed[:4] += 30.0 * (-1.0) ** np.arange(framed.shape[1])
    assert texture_excess(framed, truth, shave=6) == pytest.approx(0.0, abs=1e-12)
    assert texture_excess(framed, truth) > 0.01


def test_texture_excess_refuses_a_flat_truth_and_bad_parameters() -> None:
    flat = np.full((32, 32), 5.0)
    with pytest.raises(ValueError, match="flat image"):
        texture_excess(flat + np.random.default_rng(0).normal(size=flat.shape), flat)
    with pytest.raises(ValueError, match="cutoff"):
        texture_excess(_scene(64), _scene(64), cutoff=0.7)
    with pytest.raises(ValueError, match="differ in shape"):
        texture_excess(_scene(64), _scene(66))
