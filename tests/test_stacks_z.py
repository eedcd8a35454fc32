"""Z spacing in the metadata of stacks: read from ImageJ and OME files, divided by the axial SR factor in what
``write_like`` writes, and set where a file records none."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_kernelgan.stacks import ImageMeta, open_image, write_like


def _stack(nz: int = 5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 4000, (nz, 24, 32)).astype(np.uint16)


def _write(path, kind: str, data: np.ndarray, z: float, xy: float) -> None:
    if kind == "imagej":
        tifffile.imwrite(path, data, imagej=True, resolution=(1 / xy, 1 / xy),
                         metadata={"axes": "ZYX", "spacing": z, "unit": "micron"})
    else:
        tifffile.imwrite(path, data, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": xy, "PhysicalSizeY": xy,
                                                         "PhysicalSizeZ": z, "PhysicalSizeZUnit": "µm"})


@pytest.mark.parametrize("kind,suffix", [("imagej", ".tif"), ("ome", ".ome.tif")])
def test_z_spacing_read_and_divided_by_the_axial_factor(tmp_path, kind, suffix):
    data = _stack()
    src_path = tmp_path / f"in{suffix}"
    _write(src_path, kind, data, z=0.4, xy=0.1)
    src = open_image(src_path)
    assert src.meta.axes == "ZYX" and src.meta.kind == kind
    assert src.meta.size_um("Z") == pytest.approx(0.4)
    assert src.meta.size_um("X") == pytest.approx(0.1)

    factor = 4
    meta = src.meta.scaled(1, z_factor=factor)
    assert meta.pixel_size["Z"] == pytest.approx(0.1) and meta.pixel_size["X"] == pytest.approx(0.1)
    out_shape = ((data.shape[0] - 1) * factor + 1, *data.shape[1:])
    out = tmp_path / f"out{suffix}"
    pages = (np.full(data.shape[1:], i, np.uint16) for i in range(out_shape[0]))
    write_like(out, pages, meta, out_shape, np.dtype(np.uint16))

    back = open_image(out)
    assert back.data.shape == out_shape
    assert back.meta.size_um("Z") == pytest.approx(0.1)
    assert back.meta.size_um("X") == pytest.approx(0.1)
    with tifffile.TiffFile(out) as tif:  # what Fiji and other readers see
        if kind == "imagej":
            assert tif.imagej_metadata["spacing"] == pytest.approx(0.1)
        else:
            assert 'PhysicalSizeZ="0.1"' in tif.ome_metadata


def test_lateral_scale_keeps_z_and_z_factor_keeps_xy():
    meta = ImageMeta("ZYX", "imagej", {"X": 0.2, "Y": 0.2, "Z": 1.0}, {"X": "micron", "Y": "micron", "Z": "micron"})
    assert meta.scaled(2).pixel_size == {"X": 0.1, "Y": 0.1, "Z": 1.0}
    assert meta.scaled(1, z_factor=5).pixel_size == {"X": 0.2, "Y": 0.2, "Z": 0.2}


def test_size_um_converts_units_and_refuses_pixels():
    meta = ImageMeta("ZYX", "ome", {"X": 100.0, "Z": 0.5}, {"X": "nm", "Z": "µm"})
    assert meta.size_um("X") == pytest.approx(0.1)
    assert meta.size_um("Z") == pytest.approx(0.5)
    assert meta.size_um("Y") is None
    assert ImageMeta("ZYX", "imagej", {"Z": 3.0}, {"Z": "pixel"}).size_um("Z") is None


def test_z_step_set_where_the_file_records_none(tmp_path):
    data = _stack()
    path = tmp_path / "noz.tif"
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.1, 1 / 0.1), metadata={"axes": "ZYX", "unit": "um"})
    src = open_image(path)
    assert src.meta.size_um("Z") is None
    meta = src.meta.with_size_um("Z", 0.3).scaled(1, z_factor=3)
    out = tmp_path / "out.tif"
    write_like(out, data, meta, data.shape, data.dtype)
    assert open_image(out).meta.size_um("Z") == pytest.approx(0.1)
    # In the file's own unit: nanometres stay nanometres.
    nm = ImageMeta("ZYX", "ome", {"X": 100.0}, {"X": "nm"}).with_size_um("Z", 0.3)
    assert nm.pixel_size["Z"] == pytest.approx(300.0) and nm.unit["Z"] == "nm"
