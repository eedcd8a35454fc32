"""Results as napari layers: one code path for the widgets, the reader and console scripting.

Nothing here imports Qt or napari; the functions take a viewer and layers and
use only their public attributes, so they work from the napari console::

    from napari_kernelgan import estimate_kernel
    from napari_kernelgan.layers import add_estimate_layers
    est = estimate_kernel(viewer.layers['tissue LR'].data)
    add_estimate_layers(viewer, viewer.layers['tissue LR'], est)

World placement (napari maps data index ``i`` to ``translate + scale * i``,
the centre of pixel ``i``):

* the D-map has the input's pixel grid, so it takes the input's scale and
  translate and covers exactly the same world extent; it is placed *below*
  the input in the layer list so it never tints it;
* a ×s super-resolved image has pixel size ``scale / s``; an input pixel ``i``
  covers data coordinates ``[i - 0.5, i + 0.5]`` and output pixel ``j`` is
  centred at ``(j + 0.5) / s - 0.5`` in those coordinates, so
  ``translate_sr = translate + scale * (0.5 / s - 0.5)`` and both images cover
  the same world extent;
* kernels have no place in the image, so they are drawn magnified in panels
  to the right of it (their data is the kernel itself, unscaled), and the view
  is widened when a panel would be out of sight.

Every result layer carries the input's ``units`` so napari never finds the
layers' units inconsistent.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .fields import KernelField
from .physics.conventions import analytic_x4
from .types import KernelEstimate, SRResult, kernel_metadata
from .vocabulary import KERNEL_ROLES, RESULT_ROLES, LayerRole

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]

KERNEL_COLORMAP = "inferno"
DMAP_COLORMAP = "viridis"
KERNEL_SLOTS = 3  # panels in a column beside the image: ×2 estimate, ×4 estimate, true kernel of a sample
FILE_KERNEL_SLOT = KERNEL_SLOTS  # kernels opened from files start a second column
MAX_KERNEL_SIDE = 75
"""Largest side taken for a kernel (×4 analytic kernels from 13×13 ×2 kernels are 37×37)."""
DMAP_DESCRIPTION = ("Discriminator map (D-map): KernelGAN's discriminator verdict for every pixel. High values: "
                    "patches that look like the image's own patches at the coarser scale. Placed below the "
                    "image; hide the image to see it.")

__all__ = [
    "add_kernel_map_layers", "kernel_map_layer_data", "kernel_map_layer_name", "map_layer_name",
    "field_from_layer", "KERNEL_MAP_QUANTITIES", "add_estimate_layers", "add_sr_layer", "estimate_layer_data",
    "sr_layer_data", "sr_transform",
    "kernel_layer_name", "dmap_layer_name", "sr_layer_name", "preview_layer_name", "true_kernel_layer_name",
    "kernel_panel_transform", "update_preview", "remove_layer", "image_data", "leading_shape", "layer_kernels",
    "is_kernel", "is_kernel_layer", "is_input_layer", "layer_role", "largest_image_layer", "ensure_visible",
    "units_of", "kernel_shape", "MAX_KERNEL_SIDE",
]


# --------------------------------------------------------------------------- names

def kernel_layer_name(name: str, scale: int) -> str:
    """``'<name> kernel ×2'``."""
    return f"{name} kernel ×{scale}"


def dmap_layer_name(name: str) -> str:
    """``'<name> discriminator map (D-map)'``."""
    return f"{name} discriminator map (D-map)"


def preview_layer_name(name: str) -> str:
    """The kernel layer updated while an estimate is running."""
    return f"{name} kernel ×2 (running)"


def true_kernel_layer_name(name: str, scale: int = 2) -> str:
    """The known kernel that made a sample image."""
    return f"{name} true kernel ×{scale}"


def sr_layer_name(name: str, scale: int, method: str) -> str:
    """``'<name> SR×2 (bicubic)'``."""
    return f"{name} SR×{scale} ({method})"


def kernel_map_layer_name(name: str) -> str:
    """``'<name> kernel map'``: the tile kernels drawn at their places."""
    return f"{name} kernel map"


def map_layer_name(name: str, quantity: str) -> str:
    """``'<name> kernel map: <label>'`` for one of :data:`KERNEL_MAP_QUANTITIES` (or ``fwhm``)."""
    label = KERNEL_MAP_QUANTITIES[quantity][0] if quantity in KERNEL_MAP_QUANTITIES else quantity
    return f"{name} kernel map: {label}"


# quantity -> (layer label, colormap, fixed contrast limits or None, unit, description)
KERNEL_MAP_QUANTITIES: dict[str, tuple[str, str, tuple[float, float] | None, str, str]] = {
    "width_major": ("width, long axis", "viridis", None, "input px",
                    "σ of the blur along its long axis, in input pixels"),
    "width_minor": ("width, short axis", "viridis", None, "input px",
                    "σ of the blur along its short axis, in input pixels"),
    "orientation": ("orientation", "twilight_shifted", (0.0, 180.0), "degrees",
                    "angle of the blur's long axis, from +x towards +y (cyclic: 0° and 180° are the same)"),
    "anisotropy": ("anisotropy", "plasma", (0.0, 1.0), "",
                   "1 − short/long width: 0 round, towards 1 elongated (motion, astigmatism)"),
    "confidence": ("confidence", "gray", (0.0, 1.0), "",
                   "how far each tile's own estimate can be trusted; low tiles took their neighbours' kernel"),
}
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


# --------------------------------------------------------------------------- what a layer is

def layer_role(layer: Any) -> str | None:
    """The ``metadata['role']`` of a layer (a :class:`~napari_kernelgan.vocabulary.LayerRole` value), if any."""
    return (getattr(layer, "metadata", None) or {}).get("role")


def kernel_shape(shape: Sequence[int]) -> bool:
    """Whether ``shape`` is a kernel's: 2-D, odd sides of 3 to :data:`MAX_KERNEL_SIDE` pixels."""
    return len(shape) == 2 and all(int(n) % 2 == 1 and 3 <= int(n) <= MAX_KERNEL_SIDE for n in shape)


def is_kernel(data: Any, metadata: dict[str, Any] | None = None, *, rgb: bool = False,
              multiscale: bool = False) -> bool:
    """Whether an image is a blur kernel: the one rule for the reader, the writer and the widgets.

    A layer whose role is a kernel role is one (if 2-D); one with another result
    role (D-map, super-resolved) is not. Anything else is judged by content: 2-D,
    odd-sized, at most :data:`MAX_KERNEL_SIDE` a side, finite, non-negative
    (bar interpolation ringing) and of positive sum.
    """
    if rgb or multiscale:
        return False
    shape = tuple(getattr(data, "shape", ()))
    if len(shape) != 2:
        return False
    role = (metadata or {}).get("role")
    if role in KERNEL_ROLES:
        return True
    if role in RESULT_ROLES:
        return False
    if not kernel_shape(shape):
        return False
    arr = np.asarray(data)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        return False
    a = arr.astype(np.float64)
    if not np.all(np.isfinite(a)):
        return False
    # The tolerance of physics.conventions.validate_kernel: ringing down to -2 % of the peak.
    return bool(a.sum() > 0 and a.min() >= -2e-2 * max(a.max(), 1e-12))


def _is_image_layer(layer: Any) -> bool:
    # By class name: this module imports no napari (``__class__`` also sees through napari's plugin proxies).
    return any(c.__name__ == "Image" for c in layer.__class__.__mro__)


def is_kernel_layer(layer: Any) -> bool:
    """:func:`is_kernel` for a napari layer (image layers only)."""
    if not _is_image_layer(layer):
        return False
    return is_kernel(layer.data, getattr(layer, "metadata", None), rgb=bool(getattr(layer, "rgb", False)),
                     multiscale=bool(getattr(layer, "multiscale", False)))


def is_input_layer(layer: Any) -> bool:
    """An image layer a task can take as input: not a result (kernel, D-map, SR) and not a kernel."""
    return _is_image_layer(layer) and layer_role(layer) not in RESULT_ROLES and not is_kernel_layer(layer)


# --------------------------------------------------------------------------- geometry

def _spatial(layer: Any) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Scale, translate and (H, W) of the last two (image) axes of a layer."""
    data = image_data(layer)
    shape = data.shape[:-1] if getattr(layer, "rgb", False) else data.shape
    return (np.asarray(layer.scale, dtype=float)[-2:], np.asarray(layer.translate, dtype=float)[-2:],
            (int(shape[-2]), int(shape[-1])))


def image_data(layer: Any) -> Any:
    """The full-resolution array of an image layer (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def units_of(layer: Any, last: int | None = None) -> dict[str, Any]:
    """``{'units': [...]}`` with the layer's units (its last ``last`` axes), or ``{}`` where napari has none."""
    units = getattr(layer, "units", None)
    if units is None:
        return {}
    names = [str(u) for u in units]
    return {"units": names[-last:] if last else names}


def sr_transform(scale: Sequence[float], translate: Sequence[float], factor: int) -> tuple[list[float], list[float]]:
    """Scale and translate of a ×``factor`` upsampling of the last two axes (see the module notes)."""
    scale = np.asarray(scale, dtype=float).copy()
    translate = np.asarray(translate, dtype=float).copy()
    translate[-2:] = translate[-2:] + scale[-2:] * (0.5 / factor - 0.5)
    scale[-2:] = scale[-2:] / factor
    return scale.tolist(), translate.tolist()


def kernel_panel_transform(image_layer: Any, kernel_size: int, slot: int = 0) -> tuple[list[float], list[float]]:
    """Scale and translate that draw a kernel in panel ``slot`` to the right of the image.

    Panels are a third of the image's height, :data:`KERNEL_SLOTS` to a column
    (slot 3 starts a second column), so a 13×13 and a 37×37 kernel are drawn
    the same size whatever the image size.
    """
    scale, translate, (h, w) = _spatial(image_layer)
    top, left = translate - 0.5 * scale
    height, width = h * scale[0], w * scale[1]
    gap = 0.04 * height
    side = (height - (KERNEL_SLOTS - 1) * gap) / KERNEL_SLOTS
    pixel = side / kernel_size
    column, row = divmod(int(slot), KERNEL_SLOTS)
    panel_top = top + row * (side + gap)
    panel_left = left + width + gap + column * (side + gap)
    return [pixel, pixel], [panel_top + 0.5 * pixel, panel_left + 0.5 * pixel]


def _slice_placement(image_layer: Any, slice_index: Sequence[int] | None,
                     scale: Sequence[float], translate: Sequence[float]) -> tuple[list[float], list[float]]:
    """Prepend the leading axes so a single-slice result sits at ``slice_index`` of the stack."""
    if not slice_index:
        return list(scale), list(translate)
    lead = len(slice_index)
    lead_scale = np.asarray(image_layer.scale, dtype=float)[:lead]
    lead_translate = np.asarray(image_layer.translate, dtype=float)[:lead] + lead_scale * np.asarray(slice_index)
    return lead_scale.tolist() + list(scale), lead_translate.tolist() + list(translate)


def _as_slice_stack(arr: np.ndarray, slice_index: Sequence[int] | None) -> np.ndarray:
    return arr.reshape((1,) * len(slice_index) + arr.shape) if slice_index else arr


def leading_shape(image_layer: Any) -> tuple[int, ...]:
    """Shape of a layer's axes before its two image axes (and its RGB axis): ``()`` for a 2-D image."""
    data = image_data(image_layer)
    nd = data.ndim - (1 if getattr(image_layer, "rgb", False) else 0)
    return tuple(int(n) for n in data.shape[:nd - 2])


def largest_image_layer(viewer: Any) -> Any | None:
    """The input image layer covering the largest world area, or ``None`` (kernel files are placed beside it)."""
    best, best_area = None, 0.0
    for layer in viewer.layers:
        if is_input_layer(layer):
            scale, _, (h, w) = _spatial(layer)
            area = abs(h * scale[0] * w * scale[1])
            if area > best_area:
                best, best_area = layer, area
    return best


# --------------------------------------------------------------------------- layer data

def _kernel_tuple(kernel: np.ndarray, name: str, image_layer: Any, slot: int,
                  metadata: dict[str, Any]) -> LayerDataTuple:
    k = np.asarray(kernel, dtype=np.float32)
    scale, translate = kernel_panel_transform(image_layer, k.shape[0], slot)
    return (k, {"name": name, "scale": scale, "translate": translate, "colormap": KERNEL_COLORMAP,
                "contrast_limits": [0.0, float(max(k.max(), 1e-12))], "interpolation2d": "nearest",
                "metadata": metadata, **units_of(image_layer, 2)}, "image")


def estimate_layer_data(image_layer: Any, estimate: KernelEstimate, *,
                        slice_index: Sequence[int] | None = None) -> list[LayerDataTuple]:
    """Layer data tuples for an estimate of ``image_layer``: kernel ×2, kernel ×4 (for a ×4
    estimate) and the D-map (for estimators that make one).

    ``slice_index``: the leading (stack) indices when the estimate was made on one
    slice of an nD layer; the D-map is then placed on that slice only.
    """
    name = image_layer.name
    where = list(slice_index) if slice_index else ("stack" if leading_shape(image_layer) else None)
    common = {"source": name, "slice": where}
    scales = [2, 4] if estimate.scale == 4 else [2]
    out = [_kernel_tuple(estimate.kernel_for(s), kernel_layer_name(name, s), image_layer, slot,
                         {**estimate.metadata(s), **common}) for slot, s in enumerate(scales)]
    if estimate.dmap is not None:
        out.append(_dmap_tuple(image_layer, np.asarray(estimate.dmap), slice_index,
                               {**common, "role": str(LayerRole.DMAP), "method": estimate.method,
                                "scale": estimate.scale}))
    return out


def _dmap_tuple(image_layer: Any, dmap: np.ndarray, slice_index: Sequence[int] | None,
                metadata: dict[str, Any]) -> LayerDataTuple:
    scale, translate, hw = _spatial(image_layer)
    lead = leading_shape(image_layer)
    if dmap.shape[-2:] != hw:
        raise ValueError(f"the D-map is {dmap.shape[-2]}×{dmap.shape[-1]} but the image is {hw[0]}×{hw[1]}")
    if dmap.ndim == 3 and lead and dmap.shape[0] == int(np.prod(lead)):
        # A whole-stack estimate: the frames are the layer's leading axes, flattened.
        data = dmap.reshape(lead + hw)
        scale_out, translate_out = list(image_layer.scale), list(image_layer.translate)
    else:
        data = _as_slice_stack(dmap.reshape(hw), slice_index)
        scale_out, translate_out = _slice_placement(image_layer, slice_index, scale, translate)
    lo, hi = float(np.min(data)), float(np.max(data))
    meta = {**metadata, "description": DMAP_DESCRIPTION}
    return (data.astype(np.float32), {"name": dmap_layer_name(image_layer.name), "scale": scale_out,
                                      "translate": translate_out, "colormap": DMAP_COLORMAP, "opacity": 0.5,
                                      "contrast_limits": [lo, hi if hi > lo else lo + 1.0],
                                      "blending": "translucent", "metadata": meta,
                                      **units_of(image_layer)}, "image")


def sr_layer_data(image_layer: Any, result: SRResult, *,
                  slice_index: Sequence[int] | None = None) -> LayerDataTuple:
    """Layer data tuple of a super-resolved ``image_layer``, overlaying it in world coordinates.

    ``result.image`` is the upscaled slice (with ``slice_index``) or the upscaled
    whole layer, its leading axes either as in the layer or flattened into one.
    """
    rgb = bool(getattr(image_layer, "rgb", False))
    lead = leading_shape(image_layer)
    img = np.asarray(result.image)
    spatial_nd = 3 if rgb else 2
    s = result.scale
    if slice_index:
        data = _as_slice_stack(img, slice_index)
        sc, tr = sr_transform(np.asarray(image_layer.scale)[-2:], np.asarray(image_layer.translate)[-2:], s)
        scale, translate = _slice_placement(image_layer, slice_index, sc, tr)
    else:
        if lead and img.ndim == spatial_nd + 1:
            img = img.reshape(lead + img.shape[1:])
        data = img
        scale, translate = sr_transform(image_layer.scale, image_layer.translate, s)
    kwargs: dict[str, Any] = {"name": sr_layer_name(image_layer.name, s, result.method), "scale": scale,
                              "translate": translate, "rgb": rgb,
                              "metadata": {**result.metadata(), "source": image_layer.name,
                                           "role": str(LayerRole.SUPER_RESOLVED),
                                           "slice": list(slice_index) if slice_index else None},
                              **units_of(image_layer)}
    # Same display as the input so the two can be blinked against each other (RGB layers have no colormap).
    if not rgb:
        kwargs["colormap"] = image_layer.colormap.name
    kwargs["contrast_limits"] = list(image_layer.contrast_limits)
    kwargs["gamma"] = float(getattr(image_layer, "gamma", 1.0))
    return (data, kwargs, "image")


def _physical_pixel(image_layer: Any) -> tuple[float, str] | None:
    """(pixel size, unit) of an image layer with an isotropic physical scale, else ``None``."""
    scale = np.asarray(image_layer.scale, dtype=float)[-2:]
    raw = getattr(image_layer, "units", None)
    unit = None
    if raw:
        try:
            unit = format(raw[-1], "~P")      # a pint unit: the symbol (µm), as a label wants it
        except (TypeError, ValueError):
            unit = str(raw[-1])
    if not np.isclose(scale[0], scale[1]) or (np.isclose(scale[0], 1.0) and unit in (None, "pixel", "")):
        return None
    return float(scale[0]), (unit if unit not in (None, "pixel", "") else "world units")


def kernel_map_layer_data(image_layer: Any, field: KernelField, *, slice_index: Sequence[int] | None = None,
                          name: str | None = None,
                          quantities: Sequence[str] | None = None) -> list[LayerDataTuple]:
    """Layer data tuples of a kernel map of ``image_layer``, all overlaying it in world coordinates:

    the tile kernels drawn at their places (each normalised to its own peak; the field itself is in the
    metadata, so the layer is a kernel choice for SR), and per-pixel maps of the blur's width along
    its long and short axes (input pixels), orientation, anisotropy and confidence, plus the long
    axis' FWHM in physical units where the layer has a pixel size. ``name`` replaces the layer's name
    in the layer names (a sample's true field); ``quantities`` picks the maps (default: all).
    """
    scale, translate, hw = _spatial(image_layer)
    name = image_layer.name if name is None else name
    if tuple(hw) != tuple(field.image_shape):
        raise ValueError(f"the kernel map is for a {field.image_shape[0]}×{field.image_shape[1]} image, the layer "
                         f"is {hw[0]}×{hw[1]}")
    common = {"source": image_layer.name, "slice": list(slice_index) if slice_index else None,
              "geometry": field.geometry(), "method": field.method}
    out: list[LayerDataTuple] = []
    # Mosaic: cell (i, j) centred on tile centre (i, j); one cell spans the mean spacing between centres.
    gy, gx = field.grid
    side = field.support()          # the kernels' 99 % support fills the cells, not their zero margins
    cell = side + 2
    mosaic = field.mosaic(cell, side)
    spacing = np.array([
        (field.centres_y[-1] - field.centres_y[0]) / (gy - 1) if gy > 1 else hw[0],
        (field.centres_x[-1] - field.centres_x[0]) / (gx - 1) if gx > 1 else hw[1]])
    pixel = scale * spacing / cell
    first_centre = translate + scale * np.array([field.centres_y[0], field.centres_x[0]])
    m_translate = first_centre - pixel * (cell - 1) / 2.0
    m_scale, m_translate = _slice_placement(image_layer, slice_index, pixel.tolist(), m_translate.tolist())
    out.append((_as_slice_stack(mosaic, slice_index),
                {"name": kernel_map_layer_name(name), "scale": m_scale, "translate": m_translate,
                 "colormap": KERNEL_COLORMAP, "contrast_limits": [0.0, 1.0], "interpolation2d": "nearest",
                 "opacity": 0.8, "blending": "additive",
                 "metadata": {**common, "role": str(LayerRole.KERNEL_MOSAIC), "kernel_field": field.to_dict(),
                              "description": "The kernel of every tile, drawn at its place, each normalised to "
                                             "its own peak."},
                 **units_of(image_layer, len(m_scale))}, "image"))
    maps = field.maps()
    physical = _physical_pixel(image_layer)
    quantities = list(KERNEL_MAP_QUANTITIES if quantities is None else quantities)
    if physical is not None and "width_major" in quantities:
        maps["fwhm"] = maps["width_major"] * FWHM_PER_SIGMA * physical[0]
        quantities.insert(quantities.index("width_major") + 1, "fwhm")
    p_scale, p_translate = _slice_placement(image_layer, slice_index, scale.tolist(), translate.tolist())
    for q in quantities:
        data = np.asarray(maps[q], dtype=np.float32)
        if q == "fwhm":
            label, cmap, limits, unit, text = (f"FWHM, long axis ({physical[1]})", "viridis", None, physical[1],
                                               f"full width at half maximum of the blur along its long axis, in "
                                               f"{physical[1]} (pixel size {physical[0]:g})")
        else:
            label, cmap, limits, unit, text = KERNEL_MAP_QUANTITIES[q]
        lo, hi = (float(data.min()), float(data.max())) if limits is None else limits
        if limits is None:
            lo, hi = 0.0, max(hi, lo + 1e-6)
        out.append((_as_slice_stack(data, slice_index),
                    {"name": f"{name} kernel map: {label}", "scale": p_scale, "translate": p_translate,
                     "colormap": cmap, "contrast_limits": [lo, hi], "visible": q == "width_major",
                     "metadata": {**common, "role": str(LayerRole.KERNEL_FIELD_MAP), "quantity": q, "unit": unit,
                                  "description": text,
                                  "value_range": [float(data.min()), float(data.max())]},
                     **units_of(image_layer, len(p_scale))}, "image"))
    return out


def field_from_layer(layer: Any) -> KernelField | None:
    """The kernel field a kernel-map layer carries (``None`` for any other layer)."""
    meta = getattr(layer, "metadata", None) or {}
    if meta.get("role") != str(LayerRole.KERNEL_MOSAIC) or "kernel_field" not in meta:
        return None
    return KernelField.from_dict(meta["kernel_field"])


# --------------------------------------------------------------------------- viewer

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
    return added


def add_kernel_map_layers(viewer: Any, image_layer: Any, field: KernelField, *,
                          slice_index: Sequence[int] | None = None) -> list[Any]:
    """Add (or replace) the kernel-map layers of ``image_layer`` (see :func:`kernel_map_layer_data`);
    the maps of an earlier run on the same image are replaced or removed. Returns the new layers.

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
