"""*Estimate kernel* driven in a real napari viewer (Xvfb), running the real estimators."""
from __future__ import annotations

import re
import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qt_helpers import PLUGIN, in_view, world_extent

from napari_kernelgan import api, estimate_kernel
from napari_kernelgan._qt.estimate_widget import EstimateKernelWidget
from napari_kernelgan._qt.models import RunState
from napari_kernelgan._sample_data import astronaut
from napari_kernelgan.devices import available_devices
from napari_kernelgan.layers import add_estimate_layers, dmap_layer_name, preview_layer_name
from napari_kernelgan.registry import ESTIMATORS
from napari_kernelgan.samples import fluorescence_volume
from napari_kernelgan.vocabulary import LayerRole

pytestmark = pytest.mark.gui
QUICK = {"preset": "fast", "iterations": "20", "prefit_steps": "5"}


def configure(widget, *, estimator="kernelgan", scale=2, whole_stack=False, report_every=5, **options):
    widget.estimator.value = estimator
    for name, value in ({**QUICK, **options} if estimator == "kernelgan" else options).items():
        widget.options[name].value = value
    widget.scale.value = scale
    widget.device.value = "cpu"
    widget.report_every.value = report_every
    widget.whole_stack.value = whole_stack


def open_tissue(viewer):
    viewer.open_sample(PLUGIN, "tissue")
    return viewer.layers["tissue LR"]


def test_full_run(make_napari_viewer, dock, wait_idle):
    viewer = make_napari_viewer()
    image = open_tissue(viewer)
    before, data_id = image.data.copy(), id(image.data)
    widget = dock(viewer, "Estimate kernel")
    assert isinstance(widget, EstimateKernelWidget)
    assert widget.image.value == image and widget.estimator.value == api.DEFAULT_ESTIMATOR == "auto"
    assert list(widget.estimator.choices) == ESTIMATORS.names()
    assert list(widget.device.choices) == available_devices()
    configure(widget)
    viewer.scene.camera.zoom *= 4  # zoomed on the image: the kernel panels are out of sight
    seen, statuses = [], []
    viewer.layers.events.inserted.connect(lambda e: seen.append(e.value.name))
    widget.runner.progressed.connect(lambda r: statuses.append(widget.status.value))
    widget.run_button.native.click()
    assert widget.running and not widget.run_button.enabled and widget.cancel_button.enabled
    wait_idle(widget)

    assert preview_layer_name("tissue LR") in seen  # live preview appeared during training
    # The status said what was going on from the start, with an ETA only once the loop has a rate.
    first = statuses[0]
    assert first.startswith(("Kernel of tissue LR: prepare", "Kernel of tissue LR: anchor")) and "ETA …" in first
    assert any(": anchor" in s for s in statuses) and any(": estimate" in s for s in statuses)
    assert not any("min" in s.split("ETA")[-1] for s in statuses)
    names = [layer.name for layer in viewer.layers]
    dmap_name = dmap_layer_name("tissue LR")
    assert dmap_name == "tissue LR discriminator map (D-map)"
    assert preview_layer_name("tissue LR") not in names and "tissue LR kernel ×4" not in names
    # The D-map sits below the image (it never tints it); the image stays selected.
    assert names.index(dmap_name) < names.index("tissue LR")
    assert viewer.layers.selection.active == image and list(viewer.layers.selection) == [image]
    dmap = viewer.layers[dmap_name]
    assert "discriminator" in dmap.metadata["description"] and dmap.metadata["role"] == LayerRole.DMAP
    assert dmap.data.shape == image.data.shape[:2]  # RGB input: one D-map value per pixel
    assert np.allclose(world_extent(dmap), world_extent(image))
    kernel = viewer.layers["tissue LR kernel ×2"]
    assert kernel.data.shape == (13, 13) and np.isclose(kernel.data.sum(), 1, atol=1e-4)
    meta = kernel.metadata
    assert meta["role"] == LayerRole.KERNEL and meta["method"] == "kernelgan" and meta["preset"] == "fast"
    assert meta["scale"] == 2 and meta["orientation"] == "correlation" and meta["seed"] == 0
    assert meta["iterations"] <= 20 and meta["elapsed_s"] > 0 and np.allclose(meta["kernel"], kernel.data, atol=1e-6)
    assert in_view(viewer, kernel)  # the view widened to show the kernel panel
    assert "done" in widget.status.value and widget.progress_bar.value() == widget.progress_bar.maximum()
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    assert id(image.data) == data_id and np.array_equal(image.data, before)  # the input is untouched

    # A ×4 rerun replaces the results and adds the ×4 kernel; a ×2 rerun removes it again.
    configure(widget, scale=4)
    widget.run_button.native.click()
    wait_idle(widget)
    names = [layer.name for layer in viewer.layers]
    assert names.count("tissue LR kernel ×2") == 1 and names.count(dmap_name) == 1
    assert viewer.layers["tissue LR kernel ×4"].data.shape == (37, 37)
    assert viewer.layers["tissue LR kernel ×4"].metadata["scale"] == 4
    configure(widget, scale=2)
    widget.run_button.native.click()
    wait_idle(widget)
    names = [layer.name for layer in viewer.layers]
    assert "tissue LR kernel ×4" not in names and names.count("tissue LR kernel ×2") == 1
    assert len(names) == 4  # image, true kernel, kernel ×2, D-map


def test_estimator_selector_and_its_options(make_napari_viewer, dock, wait_idle, monkeypatch):
    monkeypatch.setitem(ESTIMATORS._unavailable, "broken", "ImportError: No module named 'nothing'")
    viewer = make_napari_viewer()
    image = open_tissue(viewer)
    widget = dock(viewer, "Estimate kernel")
    assert not widget.unavailable.native.isHidden() and "broken (ImportError" in widget.unavailable.value
    assert "broken" not in widget.estimator.choices
    assert "members" in widget.options  # the default estimator's form
    widget.estimator.value = "kernelgan"
    assert widget.options["iterations"].value == "" and "preset" in widget.options
    widget.estimator.value = "edges"
    assert [w.name for w in widget.options.main] == ["quantile"] and "preset" not in widget.options
    configure(widget, estimator="edges")
    widget.run_button.native.click()
    wait_idle(widget)
    kernel = viewer.layers["tissue LR kernel ×2"]
    assert kernel.metadata["method"] == "edges" and kernel.metadata["options"]["quantile"] == 0.25
    assert dmap_layer_name(image.name) not in viewer.layers  # edges makes no D-map
    assert "(edges, cpu)" in widget.status.value


def test_threads_go_to_the_api(make_napari_viewer, dock, wait_idle, monkeypatch, notes):
    import torch

    calls = []
    real = api.iter_estimate_kernel

    def spy(image, scale, **kwargs):
        calls.append(kwargs)
        return (yield from real(image, scale, **kwargs))

    monkeypatch.setattr(api, "iter_estimate_kernel", spy)
    viewer = make_napari_viewer()
    open_tissue(viewer)
    widget = dock(viewer, "Estimate kernel")
    configure(widget, estimator="edges")
    threads_before = torch.get_num_threads()
    for text, expected in (("", None), ("1", 1)):
        widget.threads.value = text
        widget.run_button.native.click()
        wait_idle(widget)
        assert calls[-1]["threads"] == expected and calls[-1]["estimator"] == "edges"
    assert torch.get_num_threads() == threads_before  # the widget never touches torch's threads
    widget.threads.value = "two"
    widget.run_button.native.click()
    assert not widget.running and len(calls) == 2
    assert "threads must be a positive whole number" in notes.errors[-1].message


def test_cancel_stops_quickly_in_every_stage_and_leaves_nothing(make_napari_viewer, dock, qtbot, wait_idle):
    viewer = make_napari_viewer()
    open_tissue(viewer)
    widget = dock(viewer, "Estimate kernel")
    for stage in ("anchor", "estimate"):
        configure(widget, iterations="3000", prefit_steps="3000", report_every=2)
        if stage == "estimate":
            widget.options["prefit_steps"].value = "5"
        widget.run_button.native.click()
        qtbot.waitUntil(lambda s=stage: f": {s}" in widget.status.value, timeout=60000)
        start = time.perf_counter()
        widget.cancel_button.native.click()
        assert "cancelling" in widget.status.value and not widget.cancel_button.enabled
        wait_idle(widget, timeout_s=10)
        # Within a report or two (the old widget ignored Cancel for 17 s during the anchor); the margin is for
        # a loaded 2-core CI machine, where a report can wait seconds for the CPU.
        assert time.perf_counter() - start < 5.0
        assert widget.runner.state == RunState.CANCELLED and "cancelled" in widget.status.value
        assert [layer.name for layer in viewer.layers] == ["tissue LR", "tissue LR true kernel ×2"]


@pytest.mark.parametrize("bad, message", [
    (np.random.default_rng(0).random((20, 20)), "32×32"),
    (np.where(np.eye(64) > 0, np.nan, 0.5), "NaN"),
])
def test_bad_input_becomes_a_notification(make_napari_viewer, dock, wait_idle, notes, bad, message):
    viewer = make_napari_viewer()
    layer = viewer.add_image(bad, name="bad")
    before = layer.data.copy()
    widget = dock(viewer, "Estimate kernel")
    configure(widget, estimator="edges")
    widget.run_button.native.click()
    wait_idle(widget)
    [error] = notes.errors  # one line that says what to change, no traceback
    assert message in error.message and error.message.startswith("Kernel of bad was not run:")
    assert message in widget.status.value and widget.runner.state == RunState.FAILED
    assert [x.name for x in viewer.layers] == ["bad"]
    assert np.array_equal(layer.data, before, equal_nan=True)


def test_rgb_multiscale_layer_uses_level_zero(make_napari_viewer, dock, wait_idle):
    viewer = make_napari_viewer()
    [(lr, _, _), _] = astronaut()
    layer = viewer.add_image([lr, lr[::2, ::2]], name="astro", rgb=True, multiscale=True, scale=(2.0, 2.0))
    widget = dock(viewer, "Estimate kernel")
    assert not widget.whole_stack.enabled
    configure(widget, iterations="5")
    widget.run_button.native.click()
    wait_idle(widget)
    dmap = viewer.layers[dmap_layer_name("astro")]
    assert dmap.data.shape == lr.shape[:2] and np.allclose(dmap.extent.world, layer.extent.world)


def test_rgba_says_the_alpha_channel_is_dropped(make_napari_viewer, dock, wait_idle, notes):
    viewer = make_napari_viewer()
    [(lr, _, _), _] = astronaut()
    rgba = np.concatenate([lr, np.full(lr.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    viewer.add_image(rgba, name="rgba", rgb=True)
    widget = dock(viewer, "Estimate kernel")
    configure(widget, estimator="edges")
    widget.run_button.native.click()
    assert "alpha channel dropped" in widget.status.value
    wait_idle(widget)
    assert "done" in widget.status.value and "alpha channel dropped" in widget.status.value
    assert any("alpha channel dropped" in r.message for r in notes.since("info"))


def test_stack_slice_in_view_and_whole_stack(make_napari_viewer, dock, wait_idle):
    viewer = make_napari_viewer()
    stack = viewer.add_image(fluorescence_volume((6, 96, 96)), name="fluorescence LR", scale=(3.0, 0.5, 0.5))
    viewer.dims.set_point(0, 5 * 3.0)
    widget = dock(viewer, "Estimate kernel")
    assert widget.whole_stack.enabled
    configure(widget, iterations="5")
    widget.run_button.native.click()
    wait_idle(widget)
    dmap = viewer.layers[dmap_layer_name("fluorescence LR")]
    assert dmap.data.shape == (1, 96, 96)
    assert np.isclose(dmap.translate[0], 15.0) and np.allclose(dmap.scale, stack.scale)
    assert viewer.layers["fluorescence LR kernel ×2"].metadata["slice"] == [5]
    assert "(slice 5)" in widget.status.value

    configure(widget, iterations="5", whole_stack=True)
    widget.run_button.native.click()
    wait_idle(widget)
    dmap = viewer.layers[dmap_layer_name("fluorescence LR")]
    assert dmap.data.shape == stack.data.shape and np.allclose(dmap.scale, stack.scale)
    assert viewer.layers["fluorescence LR kernel ×2"].metadata["slice"] == "stack"


def test_results_carry_the_input_units(make_napari_viewer, dock, wait_idle, notes):
    viewer = make_napari_viewer()
    image = open_tissue(viewer)
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    image = viewer.add_image(image.data, name="tissue LR", rgb=True, scale=(0.2, 0.2), units=("um", "um"))
    widget = dock(viewer, "Estimate kernel")
    configure(widget, iterations="5")
    widget.run_button.native.click()
    wait_idle(widget)
    assert len(viewer.layers) == 3
    for layer in viewer.layers:
        assert [str(u) for u in layer.units] == ["micrometer", "micrometer"], layer.name
    assert viewer.layers.extent.units is not None  # napari warns "Inconsistent units" when this is None
    assert not [r for r in notes.since() if "units" in r.message.lower()]


def test_image_chooser_follows_the_active_image_layer(make_napari_viewer, dock):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Estimate kernel")
    assert widget.image.value is None and not widget.run_button.enabled  # nothing to run on
    first = viewer.add_image(np.zeros((64, 64)), name="first")
    assert widget.run_button.enabled
    viewer.add_points(np.zeros((1, 2)), name="points")
    second = viewer.add_image(np.zeros((64, 64)), name="second")
    viewer.add_image(np.full((13, 13), 1 / 169), name="k", metadata={"role": str(LayerRole.KERNEL_FILE)})
    viewer.add_image(np.full((15, 15), 1.0), name="plain kernel")  # a kernel by its content
    assert [name for name, _ in widget._image_choices()] == ["second", "first"]
    viewer.layers.selection.active = first
    assert widget.image.value == first
    viewer.layers.selection.active = second
    assert widget.image.value == second
    viewer.layers.remove(first)
    viewer.layers.remove(second)
    assert widget.image.value is None and not widget.run_button.enabled


def test_console_two_liner(make_napari_viewer):
    viewer = make_napari_viewer()
    image = open_tissue(viewer)
    est = estimate_kernel(viewer.layers["tissue LR"].data)  # the default estimator, as a newcomer types it
    add_estimate_layers(viewer, viewer.layers["tissue LR"], est)
    meta = viewer.layers["tissue LR kernel ×2"].metadata
    assert meta["method"] == "auto" and 0 <= meta["confidence"] <= 1
    assert viewer.layers.selection.active == image
    est = estimate_kernel(viewer.layers["tissue LR"].data, estimator="kernelgan", preset="fast", iterations=5,
                          prefit_steps=5, device="cpu")
    add_estimate_layers(viewer, viewer.layers["tissue LR"], est)
    assert viewer.layers["tissue LR kernel ×2"].metadata["iterations"] <= 5
    assert np.allclose(world_extent(viewer.layers[dmap_layer_name("tissue LR")]), world_extent(image))


def test_a_stack_estimate_reads_its_confidence_in_the_user_s_terms(make_napari_viewer, dock, wait_idle, notes,
                                                                   monkeypatch):
    from napari_kernelgan.confidence import read_confidence

    viewer = make_napari_viewer()
    viewer.add_image(fluorescence_volume((6, 96, 96)), name="fluorescence LR")
    widget = dock(viewer, "Estimate kernel")
    configure(widget, estimator="auto", whole_stack=True)
    widget.run_button.native.click()
    wait_idle(widget)
    kernel = viewer.layers["fluorescence LR kernel ×2"]
    reading = read_confidence(kernel.metadata["confidence"], scale=2)
    assert kernel.metadata["confidence_text"] == reading.text and kernel.metadata["trusted"] == reading.trusted
    assert reading.text in widget.status.value and "(whole stack)" in widget.status.value
    # Never a bare number: the level and the width error come with it.
    assert re.search(r"confidence \d\.\d\d \((high|medium|low)\): kernel width typically", widget.status.value)
    overlay = viewer.canvas.overlays.text
    said = " ".join(overlay.text.split("\n"))
    assert overlay.visible and said.startswith("fluorescence LR kernel ×2: " + reading.text)
    assert all(len(line) <= 64 for line in overlay.text.split("\n"))  # lines that fit a narrow canvas

    # An estimate not to be trusted: a warning notification with the advice, the status styled as a warning,
    # the canvas text in orange.
    real = api.iter_estimate_kernel

    def doubtful(image, scale, **kwargs):
        est = yield from real(image, scale, **kwargs)
        est.confidence = 0.05
        return est

    monkeypatch.setattr(api, "iter_estimate_kernel", doubtful)
    notes.mark()
    widget.run_button.native.click()
    wait_idle(widget)
    low = read_confidence(0.05, scale=2)
    assert not low.trusted
    [warning] = notes.since("warning")
    assert low.text in warning.message and low.advice[1:] in warning.message
    assert widget.status_is_warning and low.advice[1:] in widget.status.value
    assert overlay.color is not None and tuple(np.round(overlay.color[:3], 2)) != (1.0, 1.0, 1.0)
    assert low.advice[1:] in " ".join(overlay.text.split("\n"))
    viewer.layers.remove("fluorescence LR kernel ×2")  # the text goes with its layer
    assert not overlay.visible
    # The next run starts from a plain status line.
    monkeypatch.setattr(api, "iter_estimate_kernel", real)
    widget.run_button.native.click()
    assert not widget.status_is_warning
    wait_idle(widget)
