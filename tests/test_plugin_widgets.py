"""The dock widgets driven in a real napari viewer (Xvfb), running the real estimator and SR methods."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_kernelgan import estimate_kernel  # noqa: E402
from napari_kernelgan._sample_data import astronaut  # noqa: E402
from napari_kernelgan._widgets import (LATEST, EstimateKernelWidget, Failure, SuperResolveWidget,  # noqa: E402
                                       error_message, guarded, sr_method_names)
from napari_kernelgan.devices import available_devices  # noqa: E402
from napari_kernelgan.layers import add_estimate_layers, preview_layer_name  # noqa: E402

pytestmark = pytest.mark.gui
PLUGIN = "napari-kernelgan"
FAST = dict(preset="fast", iterations=30, report_every=10, device="cpu")


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def _configure(widget, preset="fast", iterations=30, report_every=10, scale=2, whole_stack=False):
    widget.preset.value = preset
    widget.iterations.value = iterations
    widget.report_every.value = report_every
    widget.scale.value = scale
    widget.device.value = "cpu"
    widget.whole_stack.value = whole_stack


def _errors_since(n):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    return [r for r in notification_manager.records[n:] if r.severity == NotificationSeverity.ERROR]


def _n_records():
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


def _world_extent(layer):
    """Outer pixel edges of the last two axes in world coordinates."""
    shape = np.asarray(layer.data.shape[-3:-1] if layer.rgb else layer.data.shape[-2:])
    scale, translate = np.asarray(layer.scale[-2:]), np.asarray(layer.translate[-2:])
    return np.stack([translate - 0.5 * scale, translate + (shape - 0.5) * scale])


def _open_tissue(viewer):
    layers = viewer.open_sample(PLUGIN, "tissue")
    return viewer.layers["tissue LR"], layers


def test_estimate_widget_full_run(make_napari_viewer, wait_idle):
    viewer = make_napari_viewer()
    image, _ = _open_tissue(viewer)
    before = image.data.copy()
    data_id = id(image.data)
    widget = _dock(viewer, "Estimate kernel")
    assert isinstance(widget, EstimateKernelWidget)
    assert widget.image.value == image
    assert list(widget.device.choices) == available_devices()
    _configure(widget)
    seen = []
    viewer.layers.events.inserted.connect(lambda e: seen.append(e.value.name))
    widget.run_button.native.click()
    assert widget.running
    wait_idle(widget)

    assert preview_layer_name("tissue LR") in seen  # live preview appeared during training
    names = [layer.name for layer in viewer.layers]
    assert preview_layer_name("tissue LR") not in names
    assert "tissue LR kernel ×2" in names and "tissue LR D-map" in names and "tissue LR kernel ×4" not in names
    kernel = viewer.layers["tissue LR kernel ×2"]
    assert kernel.data.shape == (13, 13) and np.isclose(kernel.data.sum(), 1, atol=1e-4)
    meta = kernel.metadata
    assert meta["scale"] == 2 and meta["orientation"] == "correlation" and meta["preset"] == "fast"
    assert meta["seed"] == 0 and meta["iterations"] == 30 and meta["elapsed_s"] > 0
    assert np.allclose(meta["kernel"], kernel.data, atol=1e-6)
    dmap = viewer.layers["tissue LR D-map"]
    assert dmap.data.shape == image.data.shape[:2]  # RGB input: one D-map value per pixel
    assert np.allclose(_world_extent(dmap), _world_extent(image))
    assert np.allclose(dmap.extent.world, image.extent.world)
    assert "done" in widget.status.value
    # The input is untouched.
    assert id(image.data) == data_id and np.array_equal(image.data, before)

    # A ×4 rerun replaces the results and adds the ×4 kernel; a ×2 rerun removes it again.
    _configure(widget, scale=4)
    widget.run_button.native.click()
    wait_idle(widget)
    names = [layer.name for layer in viewer.layers]
    assert names.count("tissue LR kernel ×2") == 1 and names.count("tissue LR D-map") == 1
    assert viewer.layers["tissue LR kernel ×4"].data.shape == (37, 37)
    assert viewer.layers["tissue LR kernel ×4"].metadata["scale"] == 4
    _configure(widget, scale=2)
    widget.run_button.native.click()
    wait_idle(widget)
    names = [layer.name for layer in viewer.layers]
    assert "tissue LR kernel ×4" not in names and names.count("tissue LR kernel ×2") == 1
    assert len(names) == 4  # image, true kernel, kernel ×2, D-map

    # Super-resolving with that estimate applies the blind defaults (closed-form's noise floor);
    # with the measured true kernel it does not.
    for source, sigma in ((LATEST, 2.0), (viewer.layers["tissue LR true kernel ×2"], 0.0)):
        sr_widget = _sr_widget(viewer, image, source, "closed-form", 2)
        assert {w.name: w.value for w in sr_widget.options}["sigma"] == sigma  # the form shows what runs
        sr_widget.run_button.native.click()
        wait_idle(sr_widget)
        assert viewer.layers["tissue LR SR×2 (closed-form)"].metadata["options"].get("sigma") == sigma


def test_cancel_stops_quickly_and_leaves_nothing(make_napari_viewer, qtbot, wait_idle):
    viewer = make_napari_viewer()
    _open_tissue(viewer)
    widget = _dock(viewer, "Estimate kernel")
    _configure(widget, preset="default", iterations=3000, report_every=2)
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: preview_layer_name("tissue LR") in viewer.layers, timeout=60000)
    start = time.perf_counter()
    widget.cancel_button.native.click()
    wait_idle(widget, timeout_s=10)
    assert time.perf_counter() - start < 1.5
    assert [layer.name for layer in viewer.layers] == ["tissue LR", "tissue LR true kernel ×2"]
    assert "cancelled" in widget.status.value


@pytest.mark.parametrize("bad, message", [
    (np.random.default_rng(0).random((20, 20)), "32×32"),
    (np.where(np.eye(64) > 0, np.nan, 0.5), "NaN"),
])
def test_bad_input_becomes_a_notification(make_napari_viewer, wait_idle, bad, message):
    viewer = make_napari_viewer()
    layer = viewer.add_image(bad, name="bad")
    before = layer.data.copy()
    widget = _dock(viewer, "Estimate kernel")
    _configure(widget)
    n = _n_records()
    widget.run_button.native.click()
    wait_idle(widget)
    errors = _errors_since(n)
    assert len(errors) == 1 and message in errors[0].message
    assert [x.name for x in viewer.layers] == ["bad"]
    assert np.array_equal(layer.data, before, equal_nan=True)


def test_rgb_multiscale_layer_uses_level_zero(make_napari_viewer, wait_idle):
    viewer = make_napari_viewer()
    [(lr, kwargs, _), _] = astronaut()
    layer = viewer.add_image([lr, lr[::2, ::2]], name="astro", rgb=True, multiscale=True, scale=(2.0, 2.0))
    widget = _dock(viewer, "Estimate kernel")
    assert not widget.whole_stack.enabled
    _configure(widget, iterations=20)
    widget.run_button.native.click()
    wait_idle(widget)
    dmap = viewer.layers["astro D-map"]
    assert dmap.data.shape == lr.shape[:2]
    assert np.allclose(dmap.extent.world, layer.extent.world)


def test_failures_are_returned_not_raised():
    def failing():
        yield from ()
        raise RuntimeError("device 'cuda' was requested but PyTorch sees no CUDA GPU here")

    gen = guarded(failing())
    with pytest.raises(StopIteration) as stop:
        next(gen)
    assert isinstance(stop.value.value, Failure) and "CUDA" in str(stop.value.value.error)
    assert error_message(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")).startswith("Out of memory")
    assert error_message(KeyError("unknown SR method 'x'")) == "unknown SR method 'x'"


def test_stack_slice_in_view_and_whole_stack(make_napari_viewer, wait_idle):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "fluorescence")
    stack = viewer.layers["fluorescence LR"]
    stack.scale = (3.0, 0.5, 0.5)
    viewer.dims.set_point(0, 5 * 3.0)
    widget = _dock(viewer, "Estimate kernel")
    assert widget.whole_stack.enabled
    _configure(widget, iterations=20)
    widget.run_button.native.click()
    wait_idle(widget)
    dmap = viewer.layers["fluorescence LR D-map"]
    assert dmap.data.shape == (1, 256, 256)
    assert np.isclose(dmap.translate[0], 15.0) and np.allclose(dmap.scale, stack.scale)
    assert viewer.layers["fluorescence LR kernel ×2"].metadata["slice"] == [5]

    _configure(widget, iterations=20, whole_stack=True)
    widget.run_button.native.click()
    wait_idle(widget)
    dmap = viewer.layers["fluorescence LR D-map"]
    assert dmap.data.shape == stack.data.shape and np.allclose(dmap.scale, stack.scale)
    assert viewer.layers["fluorescence LR kernel ×2"].metadata["slice"] == "stack"


def test_layer_chooser_follows_active_image_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    first = viewer.add_image(np.zeros((64, 64)), name="first")
    viewer.add_points(np.zeros((1, 2)), name="points")
    second = viewer.add_image(np.zeros((64, 64)), name="second")
    viewer.add_image(np.full((13, 13), 1 / 169), name="k", metadata={"orientation": "correlation"})
    widget = _dock(viewer, "Estimate kernel")
    assert [name for name, _ in widget._image_choices()] == ["second", "first"]
    viewer.layers.selection.active = first
    assert widget.image.value == first
    viewer.layers.selection.active = second
    assert widget.image.value == second


def test_console_two_liner(make_napari_viewer):
    viewer = make_napari_viewer()
    image, _ = _open_tissue(viewer)
    est = estimate_kernel(viewer.layers["tissue LR"].data, preset="fast", iterations=20, device="cpu")
    add_estimate_layers(viewer, viewer.layers["tissue LR"], est)
    assert viewer.layers["tissue LR kernel ×2"].metadata["iterations"] == 20
    assert np.allclose(_world_extent(viewer.layers["tissue LR D-map"]), _world_extent(image))


def test_kernel_files_through_napari(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _open_tissue(viewer)
    true_k = viewer.layers["tissue LR true kernel ×2"]
    for suffix in (".mat", ".npy", ".tif"):
        path = tmp_path / f"true_kernel{suffix}"
        written = true_k.save(str(path), plugin=PLUGIN)
        assert written == [str(path)]
        [layer] = viewer.open(str(path), plugin=PLUGIN)
        assert layer.name == "true_kernel" and layer.metadata["orientation"] == "correlation"
        assert np.allclose(layer.data, true_k.data, atol=1e-6)
        viewer.layers.remove(layer)


def _sr_widget(viewer, image, kernel_source, method, scale):
    widget = _dock(viewer, "Super-resolve")
    assert isinstance(widget, SuperResolveWidget)
    assert list(widget.method.choices) == sr_method_names()
    widget.image.value = image
    widget.kernel.value = kernel_source
    widget.method.value = method
    widget.scale.value = scale
    widget.device.value = "cpu"
    return widget


@pytest.fixture
def bicubic():
    if "bicubic" not in sr_method_names():
        pytest.skip("SR method 'bicubic' is not registered (src/napari_kernelgan/sr/bicubic.py is missing)")
    return "bicubic"


def test_super_resolve_widget_overlays_input(make_napari_viewer, wait_idle, bicubic):
    viewer = make_napari_viewer()
    image, _ = _open_tissue(viewer)
    image.scale = (0.4, 0.4)
    image.translate = (10.0, 20.0)
    image.contrast_limits = (20, 200)
    widget = _sr_widget(viewer, image, viewer.layers["tissue LR true kernel ×2"], bicubic, 2)
    widget.run_button.native.click()
    wait_idle(widget)
    sr = viewer.layers["tissue LR SR×2 (bicubic)"]
    assert sr.data.shape == (512, 512, 3) and sr.data.dtype == image.data.dtype
    assert np.allclose(sr.scale, [0.2, 0.2]) and np.allclose(sr.translate, [10.0 - 0.1, 20.0 - 0.1])
    assert np.allclose(_world_extent(sr), _world_extent(image))
    assert sr.colormap.name == image.colormap.name and np.allclose(sr.contrast_limits, (20, 200))
    assert sr.metadata["sr_method"] == "bicubic" and sr.metadata["scale"] == 2

    # No estimate exists yet for this image: a clear notification, no layer.
    widget.kernel.value = LATEST
    n = _n_records()
    widget.run_button.native.click()
    wait_idle(widget)
    assert "Estimate kernel" in _errors_since(n)[0].message


def test_super_resolve_whole_stack(make_napari_viewer, wait_idle, bicubic):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "fluorescence")
    stack = viewer.layers["fluorescence LR"]
    widget = _sr_widget(viewer, stack, viewer.layers["fluorescence LR true kernel ×2"], bicubic, 4)
    widget.whole_stack.value = True
    widget.run_button.native.click()
    wait_idle(widget)
    sr = viewer.layers["fluorescence LR SR×4 (bicubic)"]
    assert sr.data.shape == (8, 1024, 1024)
    assert np.allclose(sr.scale, [1.0, 0.25, 0.25]) and np.allclose(sr.translate, [0.0, -0.375, -0.375])


def test_super_resolve_options_follow_the_method(make_napari_viewer):
    viewer = make_napari_viewer()
    image, _ = _open_tissue(viewer)
    true_k = viewer.layers["tissue LR true kernel ×2"]
    widget = _dock(viewer, "Super-resolve")
    widget.image.value = image
    widget.kernel.value = true_k
    for method in sr_method_names():
        widget.method.value = method
        names = [w.name for w in [*widget.options, *widget.more_options]]
        assert "kernel_x2" not in names and len(set(names)) == len(names)
    kernels = widget.kernels_for(image, 4)
    assert kernels[4].shape == (37, 37) and np.allclose(kernels[2], true_k.data)
    if "zssr" in sr_method_names():
        widget.method.value = "zssr"
        preset = next(w for w in widget.options if w.name == "preset")
        assert "fast" in preset.choices
    # A kernel layer marked ×4 cannot serve ×2.
    viewer.add_image(kernels[4].astype(np.float32), name="k4", metadata={"orientation": "correlation", "scale": 4})
    widget.kernel.value = viewer.layers["k4"]
    widget.scale.value = 2
    n = _n_records()
    widget.run_button.native.click()
    assert not widget.running and "×4 kernel" in _errors_since(n)[0].message
