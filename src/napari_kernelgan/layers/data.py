"""Layer data tuples of results: estimates (kernels, D-map), super-resolved images and kernel maps."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..fields import KernelField
from ..types import KernelEstimate, SRResult
from ..vocabulary import LayerRole
from .names import (
    DMAP_COLORMAP,
    DMAP_DESCRIPTION,
    FWHM_PER_SIGMA,
    KERNEL_COLORMAP,
    KERNEL_MAP_QUANTITIES,
    LayerDataTuple,
    dmap_layer_name,
    kernel_layer_name,
    kernel_map_layer_name,
    sr_layer_name,
)
from .placement import (
    _as_slice_stack,
    _slice_placement,
    _spatial,
    kernel_panel_transform,
    leading_shape,
    sr_transform,
    units_of,
)


def _kernel_tuple(kernel: np.ndarray, name: str, image_layer: Any, slot: int,
                  metadata: dict[str, Any]) -> LayerDataTuple:
    k = np.asarray(kernel, dtype=np.float32)
    scale, translate = kernel_panel_transform(image_layer, k.shape[0], slot)
    return (k, {"name": name, "scale": scale, "translate": translate, "colormap": KERNEL_COLORMAP,
                "contrast_limits": [0.0, float(max(k.max(), 1e-12))], "interpolation2d": "nearest",
                "metadata": metadata, **units_of(image_layer, 2)}, "image")


def confidence_metadata(confidence: float | None, scale: int) -> dict[str, Any]:
    """What a kernel layer's metadata says about its confidence in the user's terms
    (:func:`~napari_kernelgan.confidence.read_confidence`): ``confidence_text``, ``confidence_level``,
    ``trusted`` and ``advice``; ``{}`` for an estimator that gives no confidence."""
    from ..confidence import read_confidence  # loads the calibration record: only when an estimate is shown

    reading = read_confidence(confidence, scale=scale)
    if reading is None:
        return {}
    return {"confidence_text": reading.text, "confidence_level": reading.level, "trusted": reading.trusted,
            "advice": reading.advice}


def estimate_layer_data(image_layer: Any, estimate: KernelEstimate, *,
                        slice_index: Sequence[int] | None = None) -> list[LayerDataTuple]:
    """Layer data tuples for an estimate of ``image_layer``: kernel ×2, kernel ×4 (for a ×4
    estimate) and the D-map (for estimators that make one). The kernels' metadata reads their confidence
    (:func:`confidence_metadata`).

    ``slice_index``: the leading (stack) indices when the estimate was made on one
    slice of an nD layer; the D-map is then placed on that slice only.
    """
    name = image_layer.name
    where = list(slice_index) if slice_index else ("stack" if leading_shape(image_layer) else None)
    common = {"source": name, "slice": where}
    scales = [2, 4] if estimate.scale == 4 else [2]
    out = [_kernel_tuple(estimate.kernel_for(s), kernel_layer_name(name, s), image_layer, slot,
                         {**estimate.metadata(s), **common, **confidence_metadata(estimate.confidence, s)})
           for slot, s in enumerate(scales)]
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


MAP_OPACITY = 0.7
"""Quantity maps are drawn translucent, so one shown over the image still lets the image through."""


def _map_limits(data: np.ndarray) -> tuple[float, float]:
    """Contrast limits of a width map: its own range, widened to at least ±10 % around its middle, so a map
    that hardly varies reads as the colormap's middle, not as its top (a flat yellow)."""
    lo, hi = float(data.min()), float(data.max())
    mid = 0.5 * (lo + hi)
    half = max(0.5 * (hi - lo), 0.1 * abs(mid), 1e-6)
    return max(0.0, mid - half), mid + half


def kernel_map_layer_data(image_layer: Any, field: KernelField, *, slice_index: Sequence[int] | None = None,
                          name: str | None = None,
                          quantities: Sequence[str] | None = None) -> list[LayerDataTuple]:
    """Layer data tuples of a kernel map of ``image_layer``, all overlaying it in world coordinates:

    the tile kernels drawn at their places (each normalised to its own peak; the field itself is in the
    metadata, so the layer is a kernel choice for SR), and per-pixel maps of the blur's width along
    its long and short axes (input pixels), orientation, anisotropy and confidence, plus the long
    axis' FWHM in physical units where the layer has a pixel size. The maps come hidden and translucent (the
    first view is the image and the mosaic; a map is one click away). ``name`` replaces the layer's name
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
        lo, hi = _map_limits(data) if limits is None else limits
        out.append((_as_slice_stack(data, slice_index),
                    {"name": f"{name} kernel map: {label}", "scale": p_scale, "translate": p_translate,
                     "colormap": cmap, "contrast_limits": [lo, hi], "visible": False, "opacity": MAP_OPACITY,
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

