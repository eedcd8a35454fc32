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


def test_imagej_stack_opens_calibrated_by_name_and_by_the_remembered_choice(make_napari_viewer, tmp_path):
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, ZYX, imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "\\u00B5m"})
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    _check_calibrated(layer, "cells")
    # File → Open and drag and drop (plugin=None): two readers claim *.tif, so napari asks the user, and once
    # this plugin has been picked and remembered for .tif it is used.
    from napari.errors import MultipleReaderError
    from napari.settings import get_settings

    with pytest.raises(MultipleReaderError):
        viewer.open(str(path), plugin=None)
    get_settings().plugins.extension2reader = {"*.tif": PLUGIN}
    try:
        [again] = viewer.open(str(path), plugin=None)
    finally:
        get_settings().plugins.extension2reader = {}
    assert tuple(again.scale) == pytest.approx((0.5, 0.325, 0.325))
    assert tuple(again.axis_labels) == ("z", "y", "x")


def test_an_unknown_unit_is_named_not_silently_dropped(make_napari_viewer, tmp_path):
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, ZYX, imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "furlongs-ish"})
    with pytest.warns(UserWarning, match="unit 'furlongs-ish' in odd.tif is not one napari knows") as caught:
        [(data, kwargs, _)] = get_reader(str(path))(str(path))
    assert len([w for w in caught if "furlongs" in str(w.message)]) == 1  # once, not once per axis
    assert kwargs["units"] == ["pixel"] * 3 and kwargs["scale"] == pytest.approx([0.5, 0.325, 0.325])
    # Units napari knows stay as they are written.
    nm = tmp_path / "nm.tif"
    tifffile.imwrite(nm, ZYX, imagej=True, resolution=(1 / 65.0, 1 / 65.0),
                     metadata={"axes": "ZYX", "spacing": 200.0, "unit": "nm"})
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(nm), plugin=PLUGIN)
    assert [str(u) for u in layer.units] == ["nanometer"] * 3
    assert tuple(layer.scale) == pytest.approx((200.0, 65.0, 65.0))


def test_plain_tiff_opens_plainly_and_other_files_are_napari_s(make_napari_viewer, tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, ZYX, photometric="minisblack")
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin=PLUGIN)
    assert layer.name == "plain" and tuple(layer.scale) == (1.0, 1.0, 1.0)
    assert isinstance(layer.data, np.memmap) and np.array_equal(np.asarray(layer.data), ZYX)
    rgb = tmp_path / "photo.tif"
    tifffile.imwrite(rgb, np.zeros((32, 40, 3), np.uint8), photometric="rgb")
    [layer] = viewer.open(str(rgb), plugin=PLUGIN)
    assert layer.rgb and layer.data.shape == (32, 40, 3)
    # A small image is a kernel only when its name says so.
    small = tmp_path / "crop.tif"
    tifffile.imwrite(small, np.ones((15, 15), np.float32))
    [layer] = viewer.open(str(small), plugin=PLUGIN)
    assert layer.metadata.get("role") is None and layer.metadata["format"] == "tiff"
    (tmp_path / "not_a.ome.tif").write_bytes(b"not a tiff")
    assert get_reader(str(tmp_path / "not_a.ome.tif")) is None
    np.save(tmp_path / "image.npy", ZYX)
    assert get_reader(str(tmp_path / "image.npy")) is None
