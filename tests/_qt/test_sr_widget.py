"""*Super-resolve* driven in a real napari viewer (Xvfb), running the real SR methods."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qt_helpers import PLUGIN, world_extent

from napari_kernelgan import estimate_kernel
from napari_kernelgan._qt.models import LATEST, RunState
from napari_kernelgan._qt.sr_widget import SAFEGUARDS_TEXT, SuperResolveWidget
from napari_kernelgan._sample_data import astronaut
from napari_kernelgan.layers import add_estimate_layers
from napari_kernelgan.physics import gaussian_kernel
from napari_kernelgan.registry import SR_METHODS
from napari_kernelgan.samples import fluorescence_volume
from napari_kernelgan.vocabulary import LayerRole

pytestmark = pytest.mark.gui


def sr_widget(dock, viewer, image, kernel_source, method, scale):
    widget = dock(viewer, "Super-resolve")
    assert isinstance(widget, SuperResolveWidget)
    assert list(widget.method.choices) == SR_METHODS.names()
    widget.image.value = image
    widget.kernel.value = kernel_source
    widget.method.value = method
    widget.scale.value = scale
    widget.device.value = "cpu"
    return widget


def open_tissue(viewer):
    viewer.open_sample(PLUGIN, "tissue")
    return viewer.layers["tissue LR"], viewer.layers["tissue LR true kernel ×2"]


@pytest.fixture
def bicubic():
    if "bicubic" not in SR_METHODS:
        pytest.skip("SR method 'bicubic' is not registered")
    return "bicubic"


def test_overlays_the_input_and_resets_its_status(make_napari_viewer, dock, wait_idle, notes, bicubic):
    viewer = make_napari_viewer()
    image, true_k = open_tissue(viewer)
    image.scale = (0.4, 0.4)
    image.translate = (10.0, 20.0)
    image.contrast_limits = (20, 200)
    widget = sr_widget(dock, viewer, image, true_k, bicubic, 2)
    widget.run_button.native.click()
    wait_idle(widget)
    sr = viewer.layers["tissue LR SR×2 (bicubic)"]
    assert sr.data.shape == (512, 512, 3) and sr.data.dtype == image.data.dtype
    assert np.allclose(sr.scale, [0.2, 0.2]) and np.allclose(sr.translate, [10.0 - 0.1, 20.0 - 0.1])
    assert np.allclose(world_extent(sr), world_extent(image))
    assert sr.colormap.name == image.colormap.name and np.allclose(sr.contrast_limits, (20, 200))
    assert sr.metadata["sr_method"] == "bicubic" and sr.metadata["role"] == LayerRole.SUPER_RESOLVED
    assert "done" in widget.status.value and viewer.layers.selection.active == image

    # No estimate exists yet for this image: a clear notification, no layer, and the old "done" is gone.
    widget.kernel.value = LATEST
    widget.method.value = "closed-form"
    widget.run_button.native.click()
    assert not widget.running
    [error] = notes.errors
    assert "Estimate kernel" in error.message and "done" not in widget.status.value
    assert "Estimate kernel" in widget.status.value


def test_every_kernel_gets_the_safeguards_and_the_checkbox_turns_them_off(make_napari_viewer, dock, wait_idle):
    """Estimates (by their confidence) and measured kernels (fully trusted) run with super_resolve's safeguards
    (measured noise, the check against bicubic); unticking "Safeguards" runs the method alone."""
    viewer = make_napari_viewer()
    image, true_k = open_tissue(viewer)
    est = estimate_kernel(image.data, estimator="edges")
    est.confidence = 0.8
    add_estimate_layers(viewer, image, est)
    for source, confidence, checked in ((LATEST, 0.8, True), (viewer.layers["tissue LR kernel ×2"], 0.8, True),
                                        (true_k, 1.0, True), (true_k, None, False)):
        widget = sr_widget(dock, viewer, image, source, "closed-form", 2)
        assert widget.safeguards.text == SAFEGUARDS_TEXT and widget.safeguards.value is True  # on by default
        widget.safeguards.value = checked
        assert widget.options["sigma"].value in (None, "")    # unset: auto, measured
        widget.options["iterations"].value = "1"
        widget.options["tile"].value = "0"
        widget.run_button.native.click()
        wait_idle(widget)
        options = viewer.layers["tissue LR SR×2 (closed-form)"].metadata["options"]
        assert bool(options.get("safe")) == checked, (source, options)
        if checked:
            assert options["confidence"] == confidence and options["noise_sigma"] >= 0
            assert "noise measured" in widget.status.value or "WARNING" in widget.status.value
        else:
            assert options["sigma"] is None and "noise_sigma" not in options
            assert "without safeguards" in widget.status.value
        widget.safeguards.value = True


def test_photon_limited_sample_is_refined_and_says_so(make_napari_viewer, dock, wait_idle):
    """The noisy fluorescence sample with an estimated kernel: the status line names the Richardson–Lucy
    steps, and the layer's options record them."""
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "fluorescence-noisy")
    image = viewer.layers["noisy fluorescence LR"]
    add_estimate_layers(viewer, image, estimate_kernel(image.data, estimator="kernelnet"))
    widget = sr_widget(dock, viewer, image, LATEST, "closed-form", 2)
    widget.run_button.native.click()
    wait_idle(widget)
    options = viewer.layers["noisy fluorescence LR SR×2 (closed-form)"].metadata["options"]
    assert options["noise_model"] == "poisson-gaussian"
    steps = options["poisson_refinement"]
    assert ("no Richardson–Lucy step helped" if steps == 0 else f"{steps} Richardson–Lucy step") \
        in widget.status.value, widget.status.value


def test_whole_stack(make_napari_viewer, dock, wait_idle, bicubic):
    viewer = make_napari_viewer()
    stack = viewer.add_image(fluorescence_volume((4, 64, 64)), name="fluorescence LR")
    kernel = viewer.add_image(gaussian_kernel(13, 1.5), name="psf")
    widget = sr_widget(dock, viewer, stack, kernel, bicubic, 4)
    widget.whole_stack.value = True
    widget.run_button.native.click()
    wait_idle(widget)
    sr = viewer.layers["fluorescence LR SR×4 (bicubic)"]
    assert sr.data.shape == (4, 256, 256) and sr.data.dtype == stack.data.dtype
    assert np.allclose(sr.scale, [1.0, 0.25, 0.25]) and np.allclose(sr.translate, [0.0, -0.375, -0.375])


def test_options_follow_the_method(make_napari_viewer, dock, notes):
    viewer = make_napari_viewer()
    image, true_k = open_tissue(viewer)
    widget = dock(viewer, "Super-resolve")
    widget.image.value = image
    widget.kernel.value = true_k
    for method in SR_METHODS.names():
        widget.method.value = method
        names = [w.name for w in [*widget.options.main, *widget.options.advanced]]
        assert names == list(widget.options.widgets) and "kernel_x2" not in names
        assert set(names) == set(SR_METHODS.get(method).form_options)
        assert list(widget.scale.choices) == list(SR_METHODS.get(method).scales)
    kernels = widget.kernels_for(image, 4)
    assert kernels[4].shape == (37, 37) and np.allclose(kernels[2], true_k.data)
    # A kernel layer marked ×4 cannot serve ×2.
    viewer.add_image(kernels[4].astype(np.float32), name="k4",
                     metadata={"role": str(LayerRole.KERNEL_FILE), "scale": 4})
    widget.kernel.value = viewer.layers["k4"]
    widget.scale.value = 2
    widget.run_button.native.click()
    assert not widget.running and "×4 kernel" in notes.errors[-1].message


def test_any_kernel_image_serves_and_a_bad_one_is_named(make_napari_viewer, dock, wait_idle, notes, bicubic):
    viewer = make_napari_viewer()
    image, true_k = open_tissue(viewer)
    # What napari's own reader makes of a kernel .npy: a plain image layer, unnormalised here.
    plain = viewer.add_image((5.0 * true_k.data).astype(np.float32), name="psf")
    bad = viewer.add_image(np.ones((12, 12), np.float32), name="even", metadata={"role": str(LayerRole.KERNEL_FILE)})
    widget = dock(viewer, "Super-resolve")
    choices = [name for name, _ in widget._kernel_choices()]
    assert choices[0] == LATEST and {"psf", "even", "tissue LR true kernel ×2"} <= set(choices)
    assert "psf" not in [name for name, _ in widget._image_choices()]
    widget.image.value = image
    widget.method.value = "closed-form"
    widget.options["iterations"].value = "1"
    widget.kernel.value = plain
    assert widget.options["sigma"].value == ""  # unset: measured (auto), a measured kernel as any other
    widget.run_button.native.click()
    wait_idle(widget)
    result = viewer.layers["tissue LR SR×2 (closed-form)"]
    assert np.allclose(result.metadata["kernel"], true_k.data / true_k.data.sum(), atol=1e-6)
    widget.kernel.value = bad
    widget.run_button.native.click()
    assert not widget.running
    assert "kernel layer 'even' must have odd size" in notes.errors[-1].message


def test_missing_usrnet_weights_is_one_clear_notification(make_napari_viewer, dock, wait_idle, notes, capfd,
                                                          monkeypatch, tmp_path):
    if "usrnet" not in SR_METHODS:
        pytest.skip("SR method 'usrnet' is not registered")
    monkeypatch.delenv("NAPARI_KERNELGAN_USRNET_WEIGHTS", raising=False)
    viewer = make_napari_viewer()
    image, true_k = open_tissue(viewer)
    widget = sr_widget(dock, viewer, image, true_k, "usrnet", 2)
    widget.options["weights"].value = str(tmp_path / "usrnet.pth")
    capfd.readouterr()
    widget.run_button.native.click()
    wait_idle(widget)
    assert widget.runner.state == RunState.FAILED
    [error] = notes.errors
    assert "USRNet weights were not found" in error.message and "usrnet.pth" in error.message
    assert getattr(error, "exception", None) is None
    err = capfd.readouterr().err
    assert "Traceback" not in err and "array(" not in err
    assert "USRNet weights were not found" in widget.status.value


def test_rgba_in_rgb_out(make_napari_viewer, dock, wait_idle, bicubic):
    viewer = make_napari_viewer()
    [(lr, _, _), (k, _, _)] = astronaut()
    rgba = np.concatenate([lr, np.full(lr.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    image = viewer.add_image(rgba, name="rgba", rgb=True)
    kernel = viewer.add_image(k, name="k")
    widget = sr_widget(dock, viewer, image, kernel, bicubic, 2)
    widget.run_button.native.click()
    wait_idle(widget)
    assert viewer.layers["rgba SR×2 (bicubic)"].data.shape == (512, 512, 3)
    assert "alpha channel dropped" in widget.status.value


def test_bicubic_needs_no_kernel_and_a_bad_image_is_named_before_the_kernel(make_napari_viewer, dock, wait_idle,
                                                                           notes, bicubic):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((40, 48)).astype(np.float32), name="cells")
    widget = sr_widget(dock, viewer, image, LATEST, bicubic, 2)
    assert not SR_METHODS.get(bicubic).uses_kernel
    widget.run_button.native.click()  # no estimate of 'cells' exists: bicubic does not need one
    wait_idle(widget)
    sr = viewer.layers["cells SR×2 (bicubic)"]
    assert sr.data.shape == (80, 96) and "done" in widget.status.value and not notes.errors
    assert sr.metadata["kernel"] == [[1.0]]  # run without a kernel (no stand-in delta): the identity is recorded

    nan = np.random.default_rng(1).random((40, 48)).astype(np.float32)
    nan[3, :5] = np.nan
    holes = viewer.add_image(nan, name="holes")
    widget.image.value = holes
    widget.method.value = "closed-form"
    widget.run_button.native.click()  # a kernel is needed and missing, but the NaNs are what to fix first
    assert not widget.running
    assert "the image contains 5 NaN or infinite values" in notes.errors[-1].message
    assert "Estimate kernel" not in widget.status.value and "5 NaN" in widget.status.value
    widget.method.value = bicubic
    notes.mark()
    widget.run_button.native.click()  # the API's own check, in the run
    wait_idle(widget)
    assert "the image contains 5 NaN or infinite values" in notes.errors[-1].message


def test_layers_meant_as_kernels_that_are_not_say_why(make_napari_viewer, dock):
    viewer = make_napari_viewer()
    image, _ = open_tissue(viewer)
    widget = dock(viewer, "Super-resolve")
    assert not widget.skipped.native.isVisibleTo(widget)
    # What napari's own reader makes of an even-sized psf.npy and of a 3-D PSF stack.
    viewer.add_image(np.ones((12, 12), np.float32), name="psf")
    viewer.add_image(np.ones((9, 15, 15), np.float32), name="bead PSF")
    choices = [name for name, _ in widget._kernel_choices()]
    assert "psf" not in choices and "bead PSF" not in choices
    assert widget.skipped_kernels() == ["layer 'bead PSF' is not a kernel: 3-D (9×15×15)",
                                        "layer 'psf' is not a kernel: even side 12"]
    assert widget.skipped.native.isVisibleTo(widget) and "'psf' is not a kernel: even side 12" in widget.skipped.value
    # Input images are not explained away as kernels, small stacks included.
    viewer.add_image(np.ones((12, 128, 128), np.float32), name="cells")
    assert image.name not in widget.skipped.value and "cells" not in widget.skipped.value
    viewer.layers.remove("cells")
    viewer.layers.remove("psf")
    viewer.layers.remove("bead PSF")
    assert not widget.skipped.native.isVisibleTo(widget)
