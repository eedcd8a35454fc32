"""Dask-backed layers in the widgets: the slice in view is the only slice computed; a whole stack is sampled
for an estimate and streamed through SR."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from lazy_data import TRUE_K, Counted, blurred_stack

pytestmark = pytest.mark.gui


@pytest.fixture
def lazy_layer(make_napari_viewer):
    """A viewer showing slice 4 of a counted Dask stack; the reads napari made to show it are forgotten."""
    viewer = make_napari_viewer()
    lazy = Counted(blurred_stack())
    layer = viewer.add_image(lazy.array, name="lazy", contrast_limits=(0, 255))
    viewer.dims.set_point(0, 4)
    lazy.reads.clear()
    return viewer, layer, lazy


def test_estimate_on_the_slice_in_view_computes_only_it(lazy_layer, dock, wait_idle):
    viewer, layer, lazy = lazy_layer
    widget = dock(viewer, "Estimate kernel")
    widget.image.value = layer
    widget.estimator.value = "edges"
    widget.device.value = "cpu"
    widget.run_button.native.click()
    wait_idle(widget)
    assert "done" in widget.status.value and "(slice 4)" in widget.status.value
    assert viewer.layers["lazy kernel ×2"].metadata["slice"] == [4]
    assert viewer.layers["lazy kernel ×2"].data.shape == (13, 13)
    assert set(lazy.reads) == {4}

    lazy.reads.clear()
    widget.whole_stack.value = True
    widget.run_button.native.click()
    wait_idle(widget)
    assert viewer.layers["lazy kernel ×2"].metadata["slice"] == "stack"
    assert "6 of 6 slices read" in widget.status.value
    assert sorted(lazy.reads) == list(range(6))  # six slices: all sampled, each computed once
    assert isinstance(layer.data, type(lazy.array))  # the layer's data is untouched


def test_whole_stack_sr_streams(lazy_layer, dock, wait_idle):
    viewer, layer, lazy = lazy_layer
    viewer.add_image(TRUE_K, name="psf")
    widget = dock(viewer, "Super-resolve")
    widget.image.value = layer
    widget.kernel.value = viewer.layers["psf"]
    widget.method.value = "bicubic"
    widget.device.value = "cpu"
    widget.whole_stack.value = True
    widget.run_button.native.click()
    wait_idle(widget)
    sr = viewer.layers["lazy SR×2 (bicubic)"]
    assert sr.data.shape == (6, 256, 256) and sr.data.dtype == np.uint8
    assert sorted(set(lazy.reads)) == list(range(6)) and len(lazy.reads) <= 12
