"""3-D PSF export: an ImageJ hyperstack TIFF that keeps its voxel size, and refusals of files without one."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_kernelgan.axial.export import read_psf3d, write_psf3d
from napari_kernelgan.axial.psf import AxialPSF
from napari_kernelgan.errors import BadInputError


def _psf() -> AxialPSF:
    g = np.exp(-0.5 * (np.arange(-3, 4) / 1.2) ** 2)
    return AxialPSF(lateral=np.outer(g, g), axial=np.exp(-0.5 * (np.arange(-12, 13) / 4.0) ** 2),
                    relative=[1, 2, 1], pixel_um=0.065, z_step_um=0.3, step_um=0.065, confidence=0.7,
                    method="spectral")


def test_the_round_trip_keeps_the_volume_and_the_voxel_size(tmp_path):
    psf = _psf()
    path = write_psf3d(tmp_path / "psf.tif", psf)
    array, pixel, step = read_psf3d(path)
    assert pixel == pytest.approx(0.065, rel=1e-6) and step == pytest.approx(0.3)
    assert array.dtype == np.float32 and np.allclose(array, psf.volume(), atol=1e-7)
    assert array.sum() == pytest.approx(1.0, abs=1e-5)
    # another z step: the axial profile is resampled, the spacing written is that step
    array, _, step = read_psf3d(write_psf3d(tmp_path / "fine.tif", psf, z_step_um=0.1))
    assert step == pytest.approx(0.1) and array.shape[0] > psf.volume().shape[0]


def test_fiji_sees_a_zyx_hyperstack_in_micrometres(tmp_path):
    path = write_psf3d(tmp_path / "psf.tif", _psf())
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX"
        meta = tif.imagej_metadata
        assert meta["unit"] == "um" and meta["spacing"] == pytest.approx(0.3)
        assert meta["slices"] == tif.series[0].shape[0]


def test_a_file_without_voxel_size_is_refused_with_the_reason(tmp_path):
    tifffile.imwrite(tmp_path / "bare.tif", np.ones((5, 7, 7), np.float32))
    with pytest.raises(BadInputError, match="does not state its voxel size"):
        read_psf3d(tmp_path / "bare.tif")
    tifffile.imwrite(tmp_path / "flat.tif", np.ones((7, 7), np.float32), imagej=True, resolution=(10, 10),
                     metadata={"unit": "um"})
    with pytest.raises(BadInputError, match="3-D PSF is \\(z, y, x\\)"):
        read_psf3d(tmp_path / "flat.tif")


def test_a_failed_write_leaves_no_file(tmp_path):
    psf = _psf()
    with pytest.raises(BadInputError, match="z_step_um"):
        write_psf3d(tmp_path / "psf.tif", psf, z_step_um=0)
    assert not list(tmp_path.iterdir())
