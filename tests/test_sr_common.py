"""The shared SR helpers: padding and tiling."""
from __future__ import annotations

import numpy as np
import pytest

from napari_kernelgan.api import drive
from napari_kernelgan.physics import centre_kernel, gaussian_kernel
from napari_kernelgan.sr.common import (
    crop_hr,
    fast_lr_length,
    iter_tiled,
    reflect_pad_lr,
    tile_windows,
)
from napari_kernelgan.types import Progress


def _asymmetric_kernel(size: int = 11, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = gaussian_kernel(size, 2.0, 0.9, 0.7) * (1 + 0.4 * rng.random((size, size)))
    k[size // 2 + 2, size // 2 - 3] += 0.05
    return centre_kernel(k / k.sum())


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
