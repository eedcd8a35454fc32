"""Synthetic generators: deterministic for a seed, stated dtype and range, and the stated camera statistics."""
from __future__ import annotations

import numpy as np
import pytest

from napari_kernelgan.errors import BadInputError, BadOptionError
from napari_kernelgan.physics import degrade, gaussian_kernel
from napari_kernelgan.synthetic import (
    PHOTON_RANGE,
    SCENE_KINDS,
    dead_leaves,
    degrade_microscopy,
    microscopy_case,
    microscopy_scene,
)


def test_dead_leaves_deterministic_range_and_spectrum():
    a = dead_leaves((128, 160), 5, texture=0.3)
    assert a.dtype == np.float64 and a.shape == (128, 160)
    assert a.min() >= 0 and a.max() <= 1 and a.std() > 0.1
    assert np.array_equal(a, dead_leaves((128, 160), 5, texture=0.3))
    assert not np.array_equal(a, dead_leaves((128, 160), 6, texture=0.3))
    # Natural-image statistics: radially averaged power falls roughly as 1/f².
    d = dead_leaves((256, 256), 1)
    power = np.abs(np.fft.fftshift(np.fft.fft2(d - d.mean()))) ** 2
    ky, kx = np.mgrid[-128:128, -128:128]
    radius = np.hypot(ky, kx)
    ks = np.arange(4, 64)
    p = [power[(radius >= q) & (radius < q + 1)].mean() for q in ks]
    slope = np.polyfit(np.log(ks + 0.5), np.log(p), 1)[0]
    assert -3.0 < slope < -1.5, slope


@pytest.mark.parametrize("kind", SCENE_KINDS)
def test_microscopy_scene(kind):
    s = microscopy_scene((128, 128), 3, kind=kind)
    assert s.dtype == np.float64 and s.shape == (128, 128)
    assert s.min() >= 0 and s.max() == pytest.approx(1.0)
    assert np.array_equal(s, microscopy_scene((128, 128), 3, kind=kind))
    assert microscopy_scene((64, 64), 0, kind=kind, photons=300).max() == pytest.approx(300)


def test_beads_are_isolated_points():
    s = microscopy_scene((256, 256), 2, kind="beads")
    pts = np.argwhere(s > 0.2)
    assert len(pts) >= 40
    d = np.hypot(*(pts[:, None] - pts[None]).transpose(2, 0, 1))
    assert d[~np.eye(len(pts), dtype=bool)].min() >= 12


def test_unknown_kind_and_small_shape():
    with pytest.raises(BadOptionError, match="unknown scene kind"):
        microscopy_scene((64, 64), 0, kind="cells")
    with pytest.raises(BadInputError, match="too small"):
        microscopy_scene((8, 8), 0)


def test_camera_statistics():
    # A flat object: every LR pixel expects `photons` electrons; variance photons + read² (+1/12 rounding).
    hr = np.ones((256, 256))
    lr = degrade_microscopy(hr, gaussian_kernel(13, 1.2), 2, seed=0, photons=200, read_noise=2.0, offset=100)
    assert lr.dtype == np.uint16 and lr.shape == (128, 128)
    z = lr.astype(np.float64) - 100
    assert z.mean() == pytest.approx(200, rel=0.01)
    assert z.var() == pytest.approx(200 + 4 + 1 / 12, rel=0.05)
    assert np.array_equal(lr, degrade_microscopy(hr, gaussian_kernel(13, 1.2), 2, seed=0, photons=200,
                                                 read_noise=2.0, offset=100))


def test_microscopy_case_ground_truth():
    case = microscopy_case(4, shape=(128, 128))
    assert case.lr.dtype == np.uint16 and case.lr.shape == (64, 64)
    assert case.kernel.shape == (11, 11) and case.kernel.sum() == pytest.approx(1)
    assert PHOTON_RANGE[0] <= case.photons <= PHOTON_RANGE[1]
    # hr is in the camera's photon units: its degradation is the expected LR signal, peaking at `photons`.
    expected = degrade(case.hr, case.kernel, 2)
    assert expected.max() == pytest.approx(case.photons)
    residual = case.lr.astype(np.float64) - case.offset - expected
    assert abs(residual.mean()) < 0.1 * np.sqrt(case.photons)
    again = microscopy_case(4, shape=(128, 128))
    assert np.array_equal(again.lr, case.lr) and np.array_equal(again.kernel, case.kernel)
    x4 = microscopy_case(4, shape=(128, 128), scale=4)
    assert x4.kernel.shape == (31, 31) and np.array_equal(x4.kernel_x2, case.kernel_x2)
