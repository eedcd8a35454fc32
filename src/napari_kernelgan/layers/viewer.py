"""Putting results into a viewer: add or replace layers in place, keep the selection, widen the view."""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..fields import KernelField
from ..physics.conventions import analytic_x4
from ..types import KernelEstimate, SRResult, kernel_metadata
from ..vocabulary import KERNEL_ROLES, LayerRole
from .data import _kernel_tuple, estimate_layer_data, kernel_map_layer_data, sr_layer_data
from .kinds import layer_role
from .names import LayerDataTuple, dmap_layer_name, kernel_layer_name, preview_layer_name


def remove_layer(viewer: Any, name: str) -> bool:
    """Remove the layer called ``name`` if present; return whether one was removed."""
    if name in viewer.layers:
        viewer.layers.remove(name)
        return True
    return False


def _put(viewer: Any, layer_tuple: LayerDataTuple) -> Any:
    """Add a layer, replacing (at the same list position) any layer of the same name.

    The layer selection is left as it was: napari selects every added layer,
    which would move the widgets' image choosers to a result.
    """
    data, kwargs, kind = layer_tuple
    name = kwargs["name"]
    selection = viewer.layers.selection
    selected, active = list(selection), selection.active
    index = viewer.layers.index(name) if name in viewer.layers else None
    if index is not None:
        viewer.layers.pop(index)
    layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
    if index is not None:
        viewer.layers.move(viewer.layers.index(layer), index)
    kept = [x for x in selected if x in viewer.layers]
    if kept:
        selection.clear()
        selection.update(kept)
        if active is not None and active in viewer.layers:
            selection.active = active
    return layer


def _place_below(viewer: Any, layer: Any, reference: Any) -> None:
    """Move ``layer`` just below ``reference`` in the layer list (index 0 is drawn first)."""
    if reference not in viewer.layers:
        return
    i, j = viewer.layers.index(layer), viewer.layers.index(reference)
    if i > j:
        viewer.layers.move(i, j)


def _select(viewer: Any, layer: Any) -> None:
    if layer in viewer.layers:
        viewer.layers.selection.active = layer


def _camera(viewer: Any) -> Any:
    scene = getattr(viewer, "scene", None)  # napari ≥ 0.9; viewer.camera before
    return scene.camera if scene is not None else viewer.camera


def _view_rect(viewer: Any) -> np.ndarray | None:
    """World min/max (2×2) of the two displayed axes the canvas shows, or ``None`` where that is not simple."""
    canvas = getattr(viewer, "canvas", None)
    size = getattr(canvas, "size", None) if canvas is not None else None
    size = size if size is not None else getattr(viewer, "_canvas_size", None)
    grid = getattr(canvas, "grid", None) if canvas is not None else getattr(viewer, "grid", None)
    if size is None or viewer.dims.ndisplay != 2 or (grid is not None and grid.enabled):
        return None
    camera = _camera(viewer)
    centre = np.asarray(camera.center, dtype=float)[-2:]
    half = np.asarray(size, dtype=float)[-2:] / (2.0 * float(camera.zoom))
    return np.stack([centre - half, centre + half])


def _displayed_extent(viewer: Any, layer: Any) -> np.ndarray | None:
    """World min/max (2×2) of ``layer`` along the two displayed axes."""
    world = np.asarray(layer.extent.world, dtype=float)
    offset = viewer.dims.ndim - world.shape[1]
    axes = [d - offset for d in list(viewer.dims.displayed)[-2:]]
    if any(a < 0 for a in axes):
        return None
    return world[:, axes]


def ensure_visible(viewer: Any, layers: Sequence[Any]) -> bool:
    """Reset the view when one of ``layers`` lies (partly) outside it; returns whether the view changed.

    Kernel panels sit beside the image, so a viewer zoomed on the image would
    not show them; a view that already shows them is left alone.
    """
    layers = [x for x in layers if x in viewer.layers]
    if not layers:
        return False
    rect = _view_rect(viewer)
    if rect is None:
        return False
    for layer in layers:
        ext = _displayed_extent(viewer, layer)
        if ext is None:
            continue
        tol = 1e-6 * float(np.abs(rect).max() + 1.0)
        if np.any(ext[0] < rect[0] - tol) or np.any(ext[1] > rect[1] + tol):
            viewer.reset_view()
            return True
    return False


def add_estimate_layers(viewer: Any, image_layer: Any, estimate: KernelEstimate, *,
                        slice_index: Sequence[int] | None = None) -> list[Any]:
    """Add (or replace) ``<name> kernel ×2``, ``<name> kernel ×4`` (×4 estimates) and
    ``<name> discriminator map (D-map)`` for ``image_layer``; returns the new layers.

    Result layers of an earlier estimate of the same image are replaced; a
    ``kernel ×4`` left from an earlier ×4 estimate is removed by a ×2 one. The
    D-map goes below the image; the image stays selected; the view widens if a
    kernel panel would be out of sight.
    """
    tuples = estimate_layer_data(image_layer, estimate, slice_index=slice_index)
    names = {t[1]["name"] for t in tuples}
    for stale in (kernel_layer_name(image_layer.name, 4), dmap_layer_name(image_layer.name)):
        if stale not in names:
            remove_layer(viewer, stale)
    remove_layer(viewer, preview_layer_name(image_layer.name))
    added = [_put(viewer, t) for t in tuples]
    for layer in added:
        if layer_role(layer) == LayerRole.DMAP:
            _place_below(viewer, layer, image_layer)
    _select(viewer, image_layer)
    ensure_visible(viewer, [x for x in added if layer_role(x) in KERNEL_ROLES])
    kernels = [x for x in added if layer_role(x) == LayerRole.KERNEL and "confidence_text" in x.metadata]
    if kernels:
        show_confidence(viewer, kernels[0])
    return added


WARNING_COLOUR = "#ffa040"
OVERLAY_LINE = 64
"""Characters per line of the canvas text."""


def _text_overlay(viewer: Any) -> Any | None:
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)  # napari ≥ 0.9
    overlay = getattr(overlays, "text", None) if overlays is not None else None
    return overlay if overlay is not None else getattr(viewer, "text_overlay", None)


def show_confidence(viewer: Any, kernel_layer: Any) -> str:
    """Write a kernel layer's confidence (its ``confidence_text``, and ``advice`` when not trusted) on the
    canvas, top left, orange when the kernel is not to be trusted; it goes when that layer does. Returns the
    text shown."""
    meta = kernel_layer.metadata
    said = f"{kernel_layer.name}: {meta['confidence_text']}."
    if not meta.get("trusted", True):
        said += f" {meta['advice'][:1].upper()}{meta['advice'][1:]}."
    # Short lines: the canvas text does not wrap, and a long line runs off a narrow canvas.
    text = "\n".join(textwrap.wrap(said, OVERLAY_LINE))
    overlay = _text_overlay(viewer)
    if overlay is None:
        return text
    overlay.text, overlay.position, overlay.font_size = text, "top_left", 10
    overlay.color = WARNING_COLOUR if not meta.get("trusted", True) else "white"
    overlay.visible = True
    name = kernel_layer.name

    def on_removed(event: Any) -> None:
        if getattr(event.value, "name", None) == name:
            viewer.layers.events.removed.disconnect(on_removed)
            if overlay.text == text:
                overlay.visible = False

    viewer.layers.events.removed.connect(on_removed)
    return text


def add_kernel_map_layers(viewer: Any, image_layer: Any, field: KernelField, *,
                          slice_index: Sequence[int] | None = None) -> list[Any]:
    """Add (or replace) the kernel-map layers of ``image_layer`` (see :func:`kernel_map_layer_data`);
    the maps of an earlier run on the same image are replaced or removed. The mosaic goes over the image,
    the quantity maps (hidden) below it. Returns the new layers.

    From the napari console::

        from napari_kernelgan import estimate_kernel_map
        from napari_kernelgan.layers import add_kernel_map_layers
        layer = viewer.layers['tissue LR']
        add_kernel_map_layers(viewer, layer, estimate_kernel_map(layer.data, 2))
    """
    tuples = kernel_map_layer_data(image_layer, field, slice_index=slice_index)
    names = {t[1]["name"] for t in tuples}
    prefix = f"{image_layer.name} kernel map"
    for layer in list(viewer.layers):
        if layer.name.startswith(prefix) and layer.name not in names and layer_role(layer) in (
                LayerRole.KERNEL_MOSAIC, LayerRole.KERNEL_FIELD_MAP):
            viewer.layers.remove(layer)
    added = [_put(viewer, t) for t in tuples]
    # First view: the image with the mosaic over it; the quantity maps wait below it, the long-axis width
    # nearest, for a click on their eye to show them.
    for layer in reversed(added):
        if layer_role(layer) == LayerRole.KERNEL_FIELD_MAP:
            _place_below(viewer, layer, image_layer)
    _select(viewer, image_layer)
    return added


def add_sr_layer(viewer: Any, image_layer: Any, result: SRResult, *,
                 slice_index: Sequence[int] | None = None) -> Any:
    """Add (or replace) ``<name> SR×s (<method>)`` overlaying ``image_layer``; returns it."""
    layer = _put(viewer, sr_layer_data(image_layer, result, slice_index=slice_index))
    _select(viewer, image_layer)
    return layer


def update_preview(viewer: Any, image_layer: Any, kernel: np.ndarray) -> tuple[Any, bool]:
    """Show the running ×2 estimate; updates the preview layer in place.

    Returns the layer and whether this call created it (a new preview widens
    the view if it would be out of sight).
    """
    name = preview_layer_name(image_layer.name)
    k = np.asarray(kernel, dtype=np.float32)
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.data.shape == k.shape:
            layer.data = k
            layer.contrast_limits = [0.0, float(max(k.max(), 1e-12))]
            return layer, False
        viewer.layers.remove(name)
    meta = kernel_metadata(k, 2, role=LayerRole.KERNEL_PREVIEW, source=image_layer.name)
    layer = _put(viewer, _kernel_tuple(k, name, image_layer, 0, meta))
    ensure_visible(viewer, [layer])
    return layer, True


def layer_confidence(viewer: Any, image_name: str) -> float | None:
    """The confidence recorded with the latest kernel estimate of ``image_name`` (``None`` if none)."""
    for s in (2, 4):
        name = kernel_layer_name(image_name, s)
        if name in viewer.layers and viewer.layers[name].metadata.get("confidence") is not None:
            return float(viewer.layers[name].metadata["confidence"])
    return None


def layer_kernels(viewer: Any, image_name: str) -> dict[int, np.ndarray]:
    """Kernels from the estimate layers of ``image_name`` present in the viewer, by SR scale.

    A ×4 kernel is derived from the ×2 one when no ×4 layer is there.
    """
    out: dict[int, np.ndarray] = {}
    for s in (2, 4):
        name = kernel_layer_name(image_name, s)
        if name in viewer.layers:
            out[s] = np.asarray(viewer.layers[name].data, dtype=np.float64)
    if 2 in out and 4 not in out:
        out[4] = analytic_x4(out[2])
    return out
