"""*Axial PSF and isotropic voxels* driven in a real napari viewer (Xvfb), running the real axial tools on a
generated stack with a known 3-D PSF."""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_kernelgan._qt.axial_widget import AxialWidget
from napari_kernelgan._qt.models import RunState
from napari_kernelgan.physics.optics import Optics
from napari_kernelgan.vocabulary import LayerRole

pytestmark = pytest.mark.gui

NAME = "Axial PSF and isotropic voxels"
PIXEL, FACTOR = 0.1, 4


@pytest.fixture(scope="module")
def case():
    from napari_kernelgan.synthetic3d import axial_case

    optics = Optics(na=1.2, wavelength_um=0.52, n_immersion=1.333, modality="widefield")
    return axial_case(3, optics, pixel_um=PIXEL, factor=FACTOR, shape=(48, 48, 48), kind="mixed", photons=800)


def _on(label) -> bool:
    """Whether a label is set to show (``visible`` also needs its window on screen)."""
    return not label.native.isHidden()


def _stack_layer(viewer, case, name="cells"):
    return viewer.add_image(case.stack, name=name, scale=(case.z_step_um, PIXEL, PIXEL),
                            units=("µm", "µm", "µm"), colormap="magma", contrast_limits=(100, 600))


def _widget(dock, viewer, layer) -> AxialWidget:
    widget = dock(viewer, NAME)
    assert isinstance(widget, AxialWidget)
    widget.image.value = layer
    widget.device.value = "cpu"
    return widget


def test_a_2d_layer_is_refused_with_the_reason_under_the_buttons(make_napari_viewer, dock):
    viewer = make_napari_viewer()
    flat = viewer.add_image(np.random.default_rng(0).random((64, 64)), name="flat")
    widget = _widget(dock, viewer, flat)
    assert not widget.run_button.enabled and not widget.estimate_button.enabled
    assert _on(widget.blocked)
    assert "flat is a 2-D image" in widget.blocked.value and "z-stack" in widget.blocked.value


def test_sampling_prefilled_from_the_layer_scale_and_checked(make_napari_viewer, dock, case):
    viewer = make_napari_viewer()
    widget = _widget(dock, viewer, _stack_layer(viewer, case))
    assert widget.run_button.enabled and not _on(widget.blocked)
    assert float(widget.optics.widgets["pixel_um"].value) == pytest.approx(PIXEL)
    assert float(widget.z_step.value) == pytest.approx(case.z_step_um)
    assert widget.sampling() == pytest.approx((PIXEL, case.z_step_um))
    widget.z_step.value = "0.05"  # finer than the pixel: nothing to make isotropic
    widget.run_button.native.click()
    assert not widget.running
    assert "not larger than the pixel size" in widget.status.value


def test_an_uncalibrated_layer_asks_for_the_z_step(make_napari_viewer, dock, case):
    viewer = make_napari_viewer()
    layer = viewer.add_image(case.stack, name="raw")
    widget = _widget(dock, viewer, layer)
    assert widget.z_step.value == ""
    widget.optics.widgets["pixel_um"].value = "0.1"
    widget.run_button.native.click()
    assert not widget.running and "z step is unknown" in widget.status.value


def test_psf_layers_at_physical_scale_with_fwhm_readout(make_napari_viewer, dock, wait_idle, case):
    viewer = make_napari_viewer()
    layer = _stack_layer(viewer, case)
    before = layer.data.copy()
    widget = _widget(dock, viewer, layer)
    widget.estimate_button.native.click()
    assert widget.running
    wait_idle(widget, 300)
    assert widget.record.state == RunState.DONE, widget.status.value
    psf3d = viewer.layers["cells PSF 3-D"]
    assert psf3d.metadata["role"] == str(LayerRole.AXIAL_PSF)
    assert np.allclose(psf3d.scale, [case.z_step_um, PIXEL, PIXEL])
    for plane in ("XY", "XZ", "YZ"):
        section = viewer.layers[f"cells PSF {plane}"]
        assert section.data.ndim == 2 and np.allclose(section.scale, [PIXEL, PIXEL])
        assert section.metadata["role"] == str(LayerRole.AXIAL_PSF_SECTION)
    # Side by side, none over the stack, the XZ section taller than wide where the PSF is (axial elongation).
    xs = [viewer.layers[f"cells PSF {p}"].translate[1] for p in ("XY", "XZ", "YZ")]
    assert xs[0] > 48 * PIXEL and xs[0] < xs[1] < xs[2]
    fz = psf3d.metadata["fwhm_z_um"]
    assert fz > 1.5 * psf3d.metadata["fwhm_x_um"]  # elongated along z, as the truth
    # The API's PSF of the same stack and sampling: what the widget handed the estimator.
    from napari_kernelgan.api import estimate_psf3d

    psf = estimate_psf3d(case.stack, pixel_um=PIXEL, z_step_um=case.z_step_um)
    assert fz == pytest.approx(psf.axial_fwhm_um) and psf3d.metadata["confidence"] == pytest.approx(psf.confidence)
    assert f"z {fz:.3g} µm" in widget.readout.value and "confidence" in widget.readout.value
    np.testing.assert_array_equal(layer.data, before)  # the user's layer is only read


def test_isotropic_layer_overlays_the_stack(make_napari_viewer, dock, wait_idle, case):
    viewer = make_napari_viewer()
    layer = _stack_layer(viewer, case)
    layer.translate = (1.0, 2.0, 3.0)
    widget = _widget(dock, viewer, layer)
    widget.method.value = "cubic"
    widget.run_button.native.click()  # estimates the PSF first
    wait_idle(widget, 300)
    assert widget.record.state == RunState.DONE, widget.status.value
    iso = viewer.layers[f"cells isotropic ×{FACTOR} (cubic)"]
    nz = case.stack.shape[0]
    assert iso.data.shape == ((nz - 1) * FACTOR + 1, *case.stack.shape[1:])
    assert np.allclose(iso.scale, [case.z_step_um / FACTOR, PIXEL, PIXEL])
    assert np.allclose(iso.translate, layer.translate)
    assert iso.colormap.name == "magma" and tuple(iso.contrast_limits) == (100, 600)
    assert iso.metadata["role"] == str(LayerRole.ISOTROPIC) and iso.data.dtype == np.uint16  # the input's dtype
    # Every input plane is kept: input plane i is output plane i * F.
    np.testing.assert_allclose(np.asarray(iso.data)[::FACTOR], case.stack, atol=1.0)
    assert "cells PSF 3-D" in viewer.layers
    viewer.dims.ndisplay = 3  # fine in the 3-D view
    viewer.dims.ndisplay = 2


def test_cancel_stops_within_a_second(make_napari_viewer, dock, wait_idle, qtbot, case):
    viewer = make_napari_viewer()
    widget = _widget(dock, viewer, _stack_layer(viewer, case))
    widget.method.value = "smore"
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: widget.progress_bar.value() > 0 or widget.runner.record.reports > 0, timeout=5000)
    asked = time.perf_counter()
    widget.cancel_button.native.click()
    wait_idle(widget, 30)
    assert time.perf_counter() - asked < 1.5
    assert widget.record.state == RunState.CANCELLED
    assert not any("isotropic" in x.name for x in viewer.layers)


def test_a_time_series_layer_gives_the_time_point_in_view(make_napari_viewer, dock, wait_idle, case):
    viewer = make_napari_viewer()
    movie = np.stack([case.stack, case.stack[:, ::-1]])
    layer = viewer.add_image(movie, name="movie", scale=(5.0, case.z_step_um, PIXEL, PIXEL))
    widget = _widget(dock, viewer, layer)
    widget.optics.widgets["pixel_um"].value = str(PIXEL)  # no units: the sampling is typed
    widget.z_step.value = str(case.z_step_um)
    widget.method.value = "cubic"
    viewer.dims.set_point(0, 5.0)  # the second time point
    widget.run_button.native.click()
    wait_idle(widget, 300)
    assert widget.record.state == RunState.DONE, widget.status.value
    iso = viewer.layers[f"movie isotropic ×{FACTOR} (cubic)"]
    nz = (case.stack.shape[0] - 1) * FACTOR + 1
    assert iso.data.shape == (1, nz, 48, 48) and np.allclose(iso.translate[0], 5.0)
    np.testing.assert_allclose(np.asarray(iso.data[0])[::FACTOR], movie[1], atol=1.0)
    assert viewer.layers["movie PSF 3-D"].data.ndim == 4
