"""The shared SR helpers: FFT forward model against physics.degrade, the exact data step, padding, tiling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_kernelgan.api import drive
from napari_kernelgan.physics import centre_kernel, degrade, gaussian_kernel
from napari_kernelgan.sr.common import (DataStep, crop_hr, fast_lr_length, fft_degrade,
                                        fft_degrade_adjoint, iter_tiled, kernel_otf, reflect_pad_lr, tile_windows)
from napari_kernelgan.types import Progress


def _asymmetric_kernel(size: int = 11, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = gaussian_kernel(size, 2.0, 0.9, 0.7) * (1 + 0.4 * rng.random((size, size)))
    k[size // 2 + 2, size // 2 - 3] += 0.05
    return centre_kernel(k / k.sum())


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("lr_shape", [(12, 16), (11, 7)])
def test_fft_degrade_equals_physics_degrade_wrap(scale, lr_shape):
    rng = np.random.default_rng(1)
    x = rng.random((lr_shape[0] * scale, lr_shape[1] * scale))
    k = _asymmetric_kernel()
    expected = degrade(x, k, scale, mode="wrap")
    otf64 = kernel_otf(k, scale, x.shape, dtype=torch.float64)
    got64 = fft_degrade(torch.as_tensor(x), otf64, scale).numpy()
    assert got64.shape == expected.shape
    np.testing.assert_allclose(got64, expected, atol=1e-12)
    otf32 = kernel_otf(k, scale, x.shape)
    got32 = fft_degrade(torch.as_tensor(x, dtype=torch.float32), otf32, scale).numpy()
    np.testing.assert_allclose(got32, expected, atol=1e-6)


def test_fft_degrade_interior_matches_reflect_boundary():
    rng = np.random.default_rng(2)
    x = rng.random((64, 64))
    k = _asymmetric_kernel()
    got = fft_degrade(torch.as_tensor(x), kernel_otf(k, 2, x.shape, dtype=torch.float64), 2).numpy()
    expected = degrade(x, k, 2)  # default reflect boundary: equal away from the border
    np.testing.assert_allclose(got[4:-4, 4:-4], expected[4:-4, 4:-4], atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3])
def test_adjoint(scale):
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.random((2, 9 * scale, 10 * scale)))
    y = torch.as_tensor(rng.random((2, 9, 10)))
    otf = kernel_otf(_asymmetric_kernel(), scale, x.shape[-2:], dtype=torch.float64)
    lhs = float((fft_degrade(x, otf, scale) * y).sum())
    rhs = float((x * fft_degrade_adjoint(y, otf, scale)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("lr_shape", [(10, 14), (9, 7)])
def test_data_step_solves_normal_equations(scale, lr_shape):
    rng = np.random.default_rng(4)
    y = torch.as_tensor(rng.random((3,) + lr_shape))
    x = torch.as_tensor(rng.random((3, lr_shape[0] * scale, lr_shape[1] * scale)))
    otf = kernel_otf(_asymmetric_kernel(), scale, x.shape[-2:], dtype=torch.float64)
    step = DataStep(y, otf, scale)
    for alpha in (1e-3, 0.5):
        z = step(x, alpha)
        lhs = fft_degrade_adjoint(fft_degrade(z, otf, scale), otf, scale) + alpha * z
        rhs = fft_degrade_adjoint(y, otf, scale) + alpha * x
        np.testing.assert_allclose(lhs.numpy(), rhs.numpy(), atol=1e-10)


def test_data_step_limits_and_batched_alpha():
    rng = np.random.default_rng(5)
    y = torch.as_tensor(rng.random((2, 1, 16, 16)))
    x = torch.as_tensor(rng.random((2, 1, 32, 32)))
    otf = kernel_otf(gaussian_kernel(7, 1.0), 2, (32, 32), dtype=torch.float64)
    step = DataStep(y, otf, 2)
    # A huge alpha keeps x; a tiny one makes the result consistent with y.
    np.testing.assert_allclose(step(x, 1e9).numpy(), x.numpy(), atol=1e-6)
    np.testing.assert_allclose(fft_degrade(step(x, 1e-9), otf, 2).numpy(), y.numpy(), atol=1e-5)
    alphas = torch.tensor([1e-2, 1.0], dtype=torch.float64).view(2, 1, 1, 1)
    batched = step(x, alphas)
    np.testing.assert_allclose(batched[0].numpy(), step(x, 1e-2)[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(batched[1].numpy(), step(x, 1.0)[1].numpy(), atol=1e-12)


def test_data_step_rejects_wrong_grid():
    otf = kernel_otf(gaussian_kernel(7, 1.0), 2, (30, 30))
    with pytest.raises(ValueError, match="half spectrum"):
        DataStep(torch.zeros(16, 16), otf, 2)


def test_kernel_larger_than_grid_wraps_like_physics():
    rng = np.random.default_rng(8)
    x = rng.random((12, 10))
    k = _asymmetric_kernel(23)
    got = fft_degrade(torch.as_tensor(x), kernel_otf(k, 2, x.shape, dtype=torch.float64), 2).numpy()
    np.testing.assert_allclose(got, degrade(x, k, 2, mode="wrap"), atol=1e-12)


def test_reflect_pad_and_crop_round_trip():
    rng = np.random.default_rng(6)
    lr = rng.random((2, 5, 37, 41)).astype(np.float32)
    padded, pads = reflect_pad_lr(lr, 50, 3)  # wider than the image: reflected repeatedly
    assert pads[0] >= 50 and pads[2] >= 50
    h, w = padded.shape[-2:]
    assert fast_lr_length(h, 3) == h and fast_lr_length(w, 3) == w
    np.testing.assert_array_equal(padded[..., pads[0]:h - pads[1], pads[2]:w - pads[3]], lr)
    hr = np.kron(padded, np.ones((3, 3), dtype=np.float32))
    np.testing.assert_array_equal(crop_hr(hr, pads, 3), np.kron(lr, np.ones((3, 3), dtype=np.float32)))


def test_tile_windows_cover_once():
    for length, tile in ((100, 32), (64, 64), (65, 64), (7, 0), (10, 3)):
        cores = tile_windows(length, tile)
        covered = np.zeros(length, int)
        for a, b in cores:
            covered[a:b] += 1
            assert tile <= 0 or b - a <= tile
        assert np.all(covered == 1)


def _upsample(scale: int):
    def process(lr: np.ndarray) -> np.ndarray:
        # A local (3-tap) operator: the tiled result must equal the whole-image one.
        smooth = lr.copy()
        smooth[:, 1:-1, :] = (lr[:, :-2, :] + 2 * lr[:, 1:-1, :] + lr[:, 2:, :]) / 4
        return np.kron(smooth, np.ones((scale, scale), dtype=np.float32))
    return process


def test_iter_tiled_matches_whole_image_and_reports_progress():
    rng = np.random.default_rng(7)
    frames = rng.random((2, 3, 50, 70)).astype(np.float32)
    whole = iter_tiled(frames, 2, _upsample(2), tile=0, overlap=4)
    reports = []
    reference = drive(whole, reports.append)
    assert len(reports) == 2 and reports[-1].iteration == reports[-1].total == 2

    seen_shapes = []

    def recording(lr: np.ndarray) -> np.ndarray:
        seen_shapes.append(lr.shape)
        return _upsample(2)(lr)

    tiled = iter_tiled(frames, 2, recording, tile=16, overlap=4)
    reports = []
    result = drive(tiled, reports.append)
    assert result.shape == (2, 3, 100, 140) and result.dtype == np.float32
    np.testing.assert_allclose(result, reference, atol=1e-6)
    assert all(isinstance(p, Progress) and p.stage == "sr" for p in reports)
    assert [p.iteration for p in reports] == list(range(1, len(reports) + 1))
    assert reports[-1].total == len(reports) == 2 * 4 * 5
    assert max(s[1] for s in seen_shapes) <= 16 + 8 and max(s[2] for s in seen_shapes) <= 16 + 8


def test_iter_tiled_checks_tile_output_shape():
    gen = iter_tiled(np.zeros((1, 1, 8, 8), np.float32), 2, lambda lr: lr, tile=0, overlap=0)
    with pytest.raises(RuntimeError, match="expected"):
        next(gen)
