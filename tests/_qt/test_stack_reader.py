"""OME and ImageJ TIFF stacks open in napari with their physical pixel sizes, units and axis names."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import tifffile
from qt_helpers import PLUGIN

from napari_kernelgan._reader import get_reader

pytestmark = pytest.mark.gui

ZYX = (np.arange(3 * 48 * 40) % 3000).astype(np.uint16).reshape(3, 48, 40)


def _check_calibrated(layer, name: str) -> None:
    assert layer.name == name
    assert tuple(layer.scale) == pytest.approx((0.5, 0.325, 0.325))
    assert [str(u) for u in layer.units] == ["micrometer"] * 3
    assert tuple(layer.axis_labels) == ("z", "y", "x")
    assert layer.data.shape == ZYX.shape and layer.data.dtype == np.uint16


def test_imagej_stack_opens_with_scale_and_units(make_napari_viewer, tmp_path):
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, ZYX, imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "\\u00B5m"})
    viewer = make_napari_viewer()
    reader = get_reader(str(path))
    assert reader is not None
    for layer_data in reader(str(path)):
        viewer._add_layer_from_data(*layer_data)
    layer = viewer.layers["cells"]
    _check_calibrated(layer, "cells")
    assert isinstance(layer.data, np.memmap)  # mapped, not read


def test_ome_tiff_opens_through_napari_with_a_layer_per_channel(make_napari_viewer, tmp_path):
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(path, np.stack([ZYX, ZYX // 2]), ome=True, compression="zlib",
                     metadata={"axes": "CZYX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325, "PhysicalSizeZ": 0.5})
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert [la.name for la in layers] == ["cells c0", "cells c1"]
    for layer in layers:
        _check_calibrated(layer, layer.name)
    assert type(layers[0].data).__module__.startswith("dask")  # compressed: read page by page
    assert np.array_equal(np.asarray(layers[1].data), ZYX // 2)


def test_plain_tiff_is_left_to_napari(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, ZYX, photometric="minisblack")
    assert get_reader(str(path)) is None
    (tmp_path / "not_a.ome.tif").write_bytes(b"not a tiff")
    assert get_reader(str(tmp_path / "not_a.ome.tif")) is None
