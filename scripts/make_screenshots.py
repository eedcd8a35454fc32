"""Screenshots of the plugin for docs/user_guide.md, taken from a real napari window after real runs.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/make_screenshots.py

Writes PNGs to docs/images/ and prints how close the estimate is to the sample's true kernel.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_kernelgan.io import write_image
from napari_kernelgan.layers import preview_layer_name
from napari_kernelgan.physics.metrics import kernel_l1, kernel_psnr
from napari_kernelgan.vocabulary import LayerRole

PLUGIN = "napari-kernelgan"
OUT = Path(__file__).resolve().parents[1] / "docs" / "images"


def pump(seconds: float = 0.0) -> None:
    """Run the Qt event loop for a while (the worker reports through it)."""
    end = time.perf_counter() + seconds
    while True:
        QApplication.processEvents()
        if time.perf_counter() >= end:
            return
        time.sleep(0.02)


def wait(widget, timeout: float = 1800.0) -> None:
    end = time.perf_counter() + timeout
    while widget.running:
        if time.perf_counter() > end:
            raise TimeoutError("the run did not finish in time")
        pump(0.05)
    pump(0.3)


def shot(viewer: napari.Viewer, name: str) -> Path:
    pump(0.5)
    path = OUT / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")
    return path


def camera(viewer: napari.Viewer):
    """The camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def grid(viewer: napari.Viewer):
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None else viewer.grid


def text_overlay(viewer: napari.Viewer):
    canvas = getattr(viewer, "canvas", None)
    return canvas.overlays.text if canvas is not None else viewer.text_overlay


def compare(viewer: napari.Viewer, layers: list, centre: tuple[float, float], zoom: float, name: str) -> Path:
    """Canvas views of ``layers`` one at a time at the same camera, side by side in one PNG."""
    grid(viewer).enabled = False
    label = text_overlay(viewer)
    label.visible = True
    label.font_size = 14
    label.color = "white"
    label.position = "top_left"
    crops = []
    for layer in layers:
        for other in viewer.layers:
            other.visible = other is layer
        label.text = layer.name
        cam = camera(viewer)
        cam.center = centre
        cam.zoom = zoom
        pump(0.5)
        crops.append(viewer.screenshot(canvas_only=True, flash=False))
    label.visible = False
    height = min(c.shape[0] for c in crops)
    gap = np.full((height, 6, crops[0].shape[2]), 255, np.uint8)
    parts = []
    for crop in crops:
        parts += [crop[:height], gap]
    path = OUT / name
    write_image(path, np.hstack(parts[:-1]))
    print(f"wrote {path}")
    return path


def set_options(widget, args: argparse.Namespace) -> None:
    """The preset and iterations, for estimators that have them (the default, auto, has neither)."""
    for name, value in (("preset", args.preset), ("iterations", args.iterations)):
        if name in widget.options:
            widget.options[name].value = value


def axial(viewer: napari.Viewer) -> None:
    """*Axial PSF and isotropic voxels* on a generated widefield z-stack (z step 4× the pixel): the PSF's
    sections beside the stack, then the isotropic stack in the 3-D view."""
    from napari_kernelgan.physics.optics import Optics
    from napari_kernelgan.synthetic3d import axial_case

    case = axial_case(5, Optics(na=1.2, wavelength_um=0.52, n_immersion=1.333, modality="widefield"), pixel_um=0.1,
                      factor=4, shape=(96, 128, 128), kind="mixed", photons=800)
    stack = viewer.add_image(case.stack, name="cells", scale=(case.z_step_um, 0.1, 0.1), units=("µm",) * 3,
                             colormap="gray")
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Axial PSF and isotropic voxels")
    widget.image.value = stack
    widget.run_button.native.click()
    wait(widget)
    print(f"axial: {widget.status.value} | {widget.readout.value} | true axial FWHM {case.axial_fwhm_um:.3g} µm")
    viewer.layers[f"cells isotropic ×4 ({widget.record.value[1].sr_method})"].visible = False
    viewer.dims.set_point(0, case.z_step_um * case.stack.shape[0] / 2)
    viewer.reset_view()
    shot(viewer, "axial_psf.png")
    stack.visible = False
    viewer.layers[f"cells isotropic ×4 ({widget.record.value[1].sr_method})"].visible = True
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    camera(viewer).angles = (0, -50, 60)
    shot(viewer, "axial_isotropic_3d.png")
    viewer.dims.ndisplay = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--iterations", default="", help="empty: the preset's own number")
    parser.add_argument("--sr-method", default="closed-form")
    parser.add_argument("--only-axial", action="store_true", help="only the z-stack screenshots")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.only_axial:
        viewer = napari.Viewer(title="napari-kernelgan")
        viewer.window.resize(1500, 950)
        axial(viewer)
        viewer.close()
        return

    viewer = napari.Viewer(title="napari-kernelgan")
    viewer.window.resize(1500, 950)
    viewer.open_sample(PLUGIN, "tissue")
    image = viewer.layers["tissue LR"]
    _, est = viewer.window.add_plugin_dock_widget(PLUGIN, "Estimate kernel")
    set_options(est, args)
    est.report_every.value = 10
    est.collapsible.expand(animate=False)
    pump(0.5)

    # No reset_view() here: the widget itself widens the view when a kernel panel would be out of sight.
    est.run_button.native.click()
    preview = preview_layer_name(image.name)
    # Estimators that show their kernel as it sharpens get a preview layer; the fast ones finish first.
    while est.running and (preview not in viewer.layers
                           or viewer.layers[preview].metadata.get("role") != LayerRole.KERNEL_PREVIEW):
        pump(0.1)
    pump(4.0)
    shot(viewer, "estimate_running.png")
    wait(est)
    shot(viewer, "estimate_result.png")

    estimate = viewer.layers[f"{image.name} kernel ×2"].data
    truth = viewer.layers[f"{image.name} true kernel ×2"].data
    print(f"kernel vs truth: PSNR {kernel_psnr(estimate, truth):.2f} dB, L1 {kernel_l1(estimate, truth):.4f}")

    _, sr = viewer.window.add_plugin_dock_widget(PLUGIN, "Super-resolve")
    results = []
    for method in ("bicubic", args.sr_method):
        sr.image.value = image
        sr.method.value = method
        sr.scale.value = 2
        pump(0.5)
        sr.run_button.native.click()
        wait(sr)
        results.append(viewer.layers[f"{image.name} SR×2 ({method})"])
    for layer in viewer.layers:
        layer.visible = layer is image or layer is results[-1]
    grid(viewer).enabled = True
    grid(viewer).shape = (1, 2)
    viewer.reset_view()
    shot(viewer, "super_resolve.png")
    # Around a detail: the input as napari shows it, bicubic, and kernel-aware SR with the estimate.
    compare(viewer, [image, *results], centre=(185.0, 212.0), zoom=5.0, name="super_resolve_detail.png")

    viewer.layers.clear()
    viewer.window.remove_dock_widget("all")
    viewer.open_sample(PLUGIN, "fluorescence")
    stack = viewer.layers["fluorescence LR"]
    viewer.dims.set_point(0, 4)
    _, est = viewer.window.add_plugin_dock_widget(PLUGIN, "Estimate kernel")
    est.image.value = stack
    set_options(est, args)
    est.collapsible.expand(animate=False)
    est.whole_stack.value = True
    est.run_button.native.click()
    wait(est)
    shot(viewer, "estimate_stack.png")
    estimate = viewer.layers["fluorescence LR kernel ×2"].data
    truth = viewer.layers["fluorescence LR true kernel ×2"].data
    print(f"stack kernel vs truth: PSNR {kernel_psnr(estimate, truth):.2f} dB, L1 {kernel_l1(estimate, truth):.4f}")

    # A kernel map of the sample blurred by a varying field: the mosaic over the image, then the width map.
    viewer.layers.clear()
    viewer.window.remove_dock_widget("all")
    viewer.open_sample(PLUGIN, "tissue-varying")
    varying = viewer.layers["tissue (varying blur) LR"]
    _, maps = viewer.window.add_plugin_dock_widget(PLUGIN, "Kernel map")
    maps.image.value = varying
    maps.tile.value = 64
    maps.run_button.native.click()
    wait(maps)
    for layer in viewer.layers:
        layer.visible = layer is varying or layer.name == f"{varying.name} kernel map"
    viewer.reset_view()
    shot(viewer, "kernel_map.png")
    truth = viewer.layers[f"{varying.name} true kernel map: width, long axis"]
    mapped = viewer.layers[f"{varying.name} kernel map: width, long axis"]
    mapped.contrast_limits = truth.contrast_limits  # one scale for both
    for layer in viewer.layers:
        layer.visible = layer is truth or layer is mapped
    grid(viewer).enabled = True
    grid(viewer).shape = (1, 2)
    viewer.reset_view()
    shot(viewer, "kernel_map_width.png")
    viewer.layers.clear()
    viewer.window.remove_dock_widget("all")
    grid(viewer).enabled = False
    axial(viewer)
    viewer.close()


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
