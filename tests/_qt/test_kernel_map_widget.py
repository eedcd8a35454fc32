"""*Kernel map* driven in a real napari viewer (Xvfb), and SR with the map it makes."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qt_helpers import PLUGIN, world_extent

from napari_kernelgan._qt.kernel_map_widget import KernelMapWidget
from napari_kernelgan.fields import MAP_NAMES
from napari_kernelgan.layers import (
    FWHM_PER_SIGMA,
    add_kernel_map_layers,
    field_from_layer,
    kernel_map_layer_name,
    map_layer_name,
)
from napari_kernelgan.physics import kernel_l1
from napari_kernelgan.samples import TISSUE_VARYING
from napari_kernelgan.vocabulary import LayerRole

pytestmark = pytest.mark.gui
NAME = TISSUE_VARYING.name


def open_varying(viewer):
    viewer.open_sample(PLUGIN, "tissue-varying")
    return viewer.layers[NAME]


def run_map(widget, wait_idle, estimator="auto", tile=64):
    widget.estimator.value = estimator
    widget.tile.value = tile
    widget.device.value = "cpu"
    widget.run_button.native.click()
    assert widget.running
    wait_idle(widget)


def test_map_layers_overlay_the_input_and_rerun_replaces_them(make_napari_viewer, dock, wait_idle):
    viewer = make_napari_viewer()
    image = open_varying(viewer)
    before = image.data.copy()
    # the sample brings its true field, hidden, for comparison
    truth = viewer.layers[f"{NAME} true kernel map"]
    assert not truth.visible and field_from_layer(truth) is not None
    widget = dock(viewer, "Kernel map")
    assert isinstance(widget, KernelMapWidget) and widget.image.value == image
    # superqt's spin box shows "0", not a special-value text: the label says what 0 means
    assert widget.tile.value == 0 and widget.tile.native.text() == "0" and "0: automatic" in widget.tile.label
    run_map(widget, wait_idle)
    assert "done" in widget.status.value and "tiles" in widget.status.value
    mosaic = viewer.layers[kernel_map_layer_name(NAME)]
    assert mosaic.metadata["role"] == LayerRole.KERNEL_MOSAIC
    field = field_from_layer(mosaic)
    assert field.image_shape == image.data.shape[:2] and field.method == "auto"
    # the mosaic spans the image, cell centres on the tile centres
    ext, img_ext = world_extent(mosaic), world_extent(image)
    step = np.diff(field.centres_x).mean()
    assert np.all(np.abs(ext - img_ext) <= step)
    for quantity in MAP_NAMES:
        layer = viewer.layers[map_layer_name(NAME, quantity)]
        assert layer.data.shape == image.data.shape[:2]
        assert np.allclose(world_extent(layer), img_ext)
        meta = layer.metadata
        assert meta["role"] == LayerRole.KERNEL_FIELD_MAP and meta["quantity"] == quantity
        assert meta["geometry"]["grid"] == list(field.grid) and "unit" in meta and "description" in meta
        lo, hi = meta["value_range"]
        assert lo <= float(layer.data.min()) and float(layer.data.max()) <= hi + 1e-6
        # hovering: the status bar reads the value under the cursor (of a shown layer)
        layer.visible = True
        centre = np.asarray(layer.data.shape) // 2
        assert layer.get_value(centre.tolist(), world=False) == pytest.approx(float(layer.data[tuple(centre)]))
    orientation = viewer.layers[map_layer_name(NAME, "orientation")]
    assert orientation.colormap.name == "twilight_shifted" and list(orientation.contrast_limits) == [0.0, 180.0]
    # the map sees the blur grow towards the corners (field curvature)
    width = viewer.layers[map_layer_name(NAME, "width_major")].data
    h, w = width.shape
    assert width[:h // 6, :w // 6].mean() > width[h // 3:2 * h // 3, w // 3:2 * w // 3].mean()
    count = len(viewer.layers)
    run_map(widget, wait_idle, tile=96)
    assert len(viewer.layers) == count
    assert field_from_layer(viewer.layers[kernel_map_layer_name(NAME)]).options["tile"] == 96
    assert np.array_equal(image.data, before)


def test_first_view_is_the_image_under_the_mosaic_with_the_maps_hidden_below(make_napari_viewer):
    viewer = make_napari_viewer()
    image = open_varying(viewer)
    field = TISSUE_VARYING.field(image.data.shape[:2])
    added = add_kernel_map_layers(viewer, image, field)
    mosaic = viewer.layers[kernel_map_layer_name(NAME)]
    maps = [la for la in added if la.metadata["role"] == LayerRole.KERNEL_FIELD_MAP]
    assert len(maps) == 5
    order = [la.name for la in viewer.layers]
    at = order.index
    # bottom → top: the maps (long-axis width nearest the image), the image, the mosaic over it
    assert all(at(m.name) < at(image.name) for m in maps) and at(image.name) < at(mosaic.name)
    assert at(map_layer_name(NAME, "width_major")) == at(image.name) - 1
    assert image.visible and mosaic.visible and mosaic.blending == "additive"
    assert not any(m.visible for m in maps) and all(m.opacity < 1.0 for m in maps)
    width = viewer.layers[map_layer_name(NAME, "width_major")]
    lo, hi = width.contrast_limits
    assert lo <= float(width.data.min()) < float(width.data.max()) <= hi  # a varying map spans its colormap
    again = add_kernel_map_layers(viewer, image, field)
    assert len(again) == len(added) and [la.name for la in viewer.layers] == order  # a rerun keeps the order
    # A map that does not vary reads mid-colormap when shown, not as the colormap's top (a flat yellow).
    from napari_kernelgan.fields import KernelField
    from napari_kernelgan.physics import gaussian_kernel

    add_kernel_map_layers(viewer, image, KernelField.uniform(gaussian_kernel(13, 1.5, 1.5, 0.0),
                                                             image.data.shape[:2]))
    width = viewer.layers[map_layer_name(NAME, "width_major")]
    lo, hi = width.contrast_limits
    value = float(width.data.mean())
    assert np.ptp(width.data) < 1e-6 and lo < value < hi and abs((value - lo) / (hi - lo) - 0.5) < 0.01


def test_sr_with_a_kernel_map_layer(make_napari_viewer, dock, wait_idle):
    viewer = make_napari_viewer()
    image = open_varying(viewer)
    maps = dock(viewer, "Kernel map")
    run_map(maps, wait_idle)
    sr = dock(viewer, "Super-resolve")
    mosaic = viewer.layers[kernel_map_layer_name(NAME)]
    assert any(value == mosaic for value in sr.kernel.choices)
    sr.image.value = image
    sr.kernel.value = mosaic
    sr.device.value = "cpu"
    sr.run_button.native.click()
    wait_idle(sr)
    out = viewer.layers[f"{NAME} SR×2 (closed-form)"]
    assert out.data.shape[:2] == (2 * image.data.shape[0], 2 * image.data.shape[1])
    assert "regions of the kernel map" in sr.status.value
    assert out.metadata["options"]["kernel_map"] == "{}×{}".format(*mosaic.metadata["geometry"]["grid"])
    assert np.allclose(world_extent(out), world_extent(image))


def test_physical_pixel_size_gives_a_fwhm_map(make_napari_viewer):
    viewer = make_napari_viewer()
    lr = TISSUE_VARYING.lr()[..., 1]
    image = viewer.add_image(lr, name="cells", scale=(0.325, 0.325), units=("µm", "µm"))
    field = TISSUE_VARYING.field(lr.shape)
    added = add_kernel_map_layers(viewer, image, field)
    fwhm = viewer.layers["cells kernel map: FWHM, long axis (µm)"]
    width = viewer.layers[map_layer_name("cells", "width_major")]
    assert fwhm in added and fwhm.metadata["unit"] == "µm"
    np.testing.assert_allclose(fwhm.data, width.data * FWHM_PER_SIGMA * 0.325, rtol=1e-5)
    assert np.allclose(world_extent(fwhm), world_extent(image))
    # the console helper keeps the true field readable from the layer
    back = field_from_layer(viewer.layers[kernel_map_layer_name("cells")])
    assert kernel_l1(back.kernel_at(10, 10), field.kernel_at(10, 10)) < 1e-9


def test_cancel_adds_nothing_and_a_tiny_image_is_refused(make_napari_viewer, dock, wait_idle):
    viewer = make_napari_viewer()
    open_varying(viewer)
    widget = dock(viewer, "Kernel map")
    count = len(viewer.layers)
    widget.estimator.value = "auto"
    widget.run_button.native.click()
    widget.cancel_button.native.click()
    wait_idle(widget)
    assert len(viewer.layers) == count and "cancel" in widget.status.value
    viewer.add_image(np.random.default_rng(0).random((20, 20)), name="tiny")
    widget.image.value = viewer.layers["tiny"]
    widget.run_button.native.click()
    wait_idle(widget)
    assert "tiny" in widget.status.value and kernel_map_layer_name("tiny") not in viewer.layers


def test_a_saved_kernel_map_opens_over_its_image(make_napari_viewer, tmp_path):
    from napari_kernelgan._reader import get_reader, looks_like_field

    viewer = make_napari_viewer()
    image = open_varying(viewer)
    field = TISSUE_VARYING.field(image.data.shape[:2])
    path = field.save(tmp_path / "varying_kernel_map.npz")
    np.save(tmp_path / "other.npy", np.zeros(3))
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    assert looks_like_field(path) and not looks_like_field(tmp_path / "other.npz")
    assert get_reader(str(tmp_path / "other.npz")) is None
    viewer.open(str(path), plugin=PLUGIN)
    mosaic = viewer.layers["varying kernel map"]
    assert mosaic.metadata["source_file"] == str(path)
    back = field_from_layer(mosaic)
    np.testing.assert_array_equal(back.kernels, field.kernels)
    width = viewer.layers[map_layer_name("varying", "width_major")]
    assert np.allclose(world_extent(width), world_extent(image))


def test_stack_slice_and_whole_stack_maps(make_napari_viewer, dock, wait_idle):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "fluorescence")
    stack = viewer.layers["fluorescence LR"]
    viewer.dims.set_point(0, 3)
    widget = dock(viewer, "Kernel map")
    widget.image.value = stack
    widget.estimator.value = "kernelnet"
    widget.device.value = "cpu"
    widget.run_button.native.click()
    wait_idle(widget)
    width = viewer.layers[map_layer_name(stack.name, "width_major")]
    assert width.data.shape == (1,) + stack.data.shape[1:]       # the slice in view, placed on that slice
    assert width.metadata["slice"] == [3] and np.isclose(width.translate[0], 3.0)
    widget.whole_stack.value = True
    widget.run_button.native.click()
    wait_idle(widget)
    width = viewer.layers[map_layer_name(stack.name, "width_major")]
    assert width.data.shape == stack.data.shape[1:] and width.metadata["slice"] is None
    assert np.allclose(world_extent(width), world_extent(stack))
