"""Results as napari layers: one code path for the widgets and for console scripting.

Nothing here imports Qt or napari; the functions take a viewer and layers and
use only their public attributes, so they work from the napari console::

    from napari_kernelgan import estimate_kernel
    from napari_kernelgan.layers import add_estimate_layers
    est = estimate_kernel(viewer.layers['tissue LR'].data)
    add_estimate_layers(viewer, viewer.layers['tissue LR'], est)

World placement (napari maps data index ``i`` to ``translate + scale * i``,
the centre of pixel ``i``):

* the D-map has the input's pixel grid, so it takes the input's scale and
  translate and covers exactly the same world extent;
* a ×s super-resolved image has pixel size ``scale / s``; an input pixel ``i``
  covers data coordinates ``[i - 0.5, i + 0.5]`` and output pixel ``j`` is
  centred at ``(j + 0.5) / s - 0.5`` in those coordinates, so
  ``translate_sr = translate + scale * (0.5 / s - 0.5)`` and both images cover
  the same world extent;
* kernels have no place in the image, so they are drawn magnified in panels
  to the right of it (their data is the kernel itself, unscaled).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .physics.conventions import CENTRING, ORIENTATION, analytic_x4
from .types import KernelEstimate, SRResult

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]

KERNEL_COLORMAP = "inferno"
DMAP_COLORMAP = "viridis"
KERNEL_SLOTS = 3  # panels beside the image: ×2 estimate, ×4 estimate, true kernel of a sample

__all__ = [
    "add_estimate_layers", "add_sr_layer", "estimate_layer_data", "sr_layer_data", "sr_transform",
    "kernel_layer_name", "dmap_layer_name", "sr_layer_name", "preview_layer_name", "true_kernel_layer_name",
    "kernel_panel_transform", "update_preview", "remove_layer", "image_data", "leading_shape", "layer_kernels",
]


# --------------------------------------------------------------------------- names

def kernel_layer_name(name: str, scale: int) -> str:
    """``'<name> kernel ×2'``."""
    return f"{name} kernel ×{scale}"


def dmap_layer_name(name: str) -> str:
    """``'<name> D-map'``."""
    return f"{name} D-map"


def preview_layer_name(name: str) -> str:
    """The kernel layer updated while an estimate is running."""
    return f"{name} kernel ×2 (running)"


def true_kernel_layer_name(name: str, scale: int = 2) -> str:
    """The known kernel that made a sample image."""
    return f"{name} true kernel ×{scale}"


def sr_layer_name(name: str, scale: int, method: str) -> str:
    """``'<name> SR×2 (bicubic)'``."""
    return f"{name} SR×{scale} ({method})"


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


def sr_transform(scale: Sequence[float], translate: Sequence[float], factor: int) -> tuple[list[float], list[float]]:
    """Scale and translate of a ×``factor`` upsampling of the last two axes (see the module notes)."""
    scale = np.asarray(scale, dtype=float).copy()
    translate = np.asarray(translate, dtype=float).copy()
    translate[-2:] = translate[-2:] + scale[-2:] * (0.5 / factor - 0.5)
    scale[-2:] = scale[-2:] / factor
    return scale.tolist(), translate.tolist()


def kernel_panel_transform(image_layer: Any, kernel_size: int, slot: int = 0) -> tuple[list[float], list[float]]:
    """Scale and translate that draw a kernel in panel ``slot`` to the right of the image.

    Panels are a third of the image's height, stacked top to bottom, so a
    13×13 and a 37×37 kernel are drawn the same size whatever the image size.
    """
    scale, translate, (h, w) = _spatial(image_layer)
    top, left = translate - 0.5 * scale
    height, width = h * scale[0], w * scale[1]
    gap = 0.04 * height
    side = (height - (KERNEL_SLOTS - 1) * gap) / KERNEL_SLOTS
    pixel = side / kernel_size
    panel_top = top + slot * (side + gap)
    panel_left = left + width + gap
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


# --------------------------------------------------------------------------- layer data

def _kernel_tuple(kernel: np.ndarray, name: str, image_layer: Any, slot: int,
                  metadata: dict[str, Any]) -> LayerDataTuple:
    k = np.asarray(kernel, dtype=np.float32)
    scale, translate = kernel_panel_transform(image_layer, k.shape[0], slot)
    return (k, {"name": name, "scale": scale, "translate": translate, "colormap": KERNEL_COLORMAP,
                "contrast_limits": [0.0, float(max(k.max(), 1e-12))], "interpolation2d": "nearest",
                "metadata": metadata}, "image")


def estimate_layer_data(image_layer: Any, estimate: KernelEstimate, *,
                        slice_index: Sequence[int] | None = None) -> list[LayerDataTuple]:
    """Layer data tuples for an estimate of ``image_layer``: kernel ×2, kernel ×4 (for a ×4
    estimate) and the D-map.

    ``slice_index``: the leading (stack) indices when the estimate was made on one
    slice of an nD layer; the D-map is then placed on that slice only.
    """
    name = image_layer.name
    where = list(slice_index) if slice_index else ("stack" if leading_shape(image_layer) else None)
    common = {"source": name, "slice": where, "role": "kernel"}
    scales = [2, 4] if estimate.scale == 4 else [2]
    out = [_kernel_tuple(estimate.kernel_for(s), kernel_layer_name(name, s), image_layer, slot,
                         {**estimate.metadata(s), **common}) for slot, s in enumerate(scales)]
    if estimate.dmap is not None:
        out.append(_dmap_tuple(image_layer, np.asarray(estimate.dmap), slice_index,
                               {**common, "role": "d-map", "method": estimate.method, "scale": estimate.scale}))
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
    meta = {**metadata, "description": "discriminator verdict per pixel (high: patch looks like the image's "
                                       "own patches at the coarser scale)"}
    return (data.astype(np.float32), {"name": dmap_layer_name(image_layer.name), "scale": scale_out,
                                      "translate": translate_out, "colormap": DMAP_COLORMAP, "opacity": 0.5,
                                      "contrast_limits": [lo, hi if hi > lo else lo + 1.0],
                                      "blending": "translucent", "metadata": meta}, "image")


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
                              "metadata": {**result.metadata(), "source": image_layer.name, "role": "super-resolved",
                                           "slice": list(slice_index) if slice_index else None}}
    # Same display as the input so the two can be blinked against each other (RGB layers have no colormap).
    if not rgb:
        kwargs["colormap"] = image_layer.colormap.name
    kwargs["contrast_limits"] = list(image_layer.contrast_limits)
    kwargs["gamma"] = float(getattr(image_layer, "gamma", 1.0))
    return (data, kwargs, "image")


# --------------------------------------------------------------------------- viewer

def remove_layer(viewer: Any, name: str) -> bool:
    """Remove the layer called ``name`` if present; return whether one was removed."""
    if name in viewer.layers:
        viewer.layers.remove(name)
        return True
    return False


def _put(viewer: Any, layer_tuple: LayerDataTuple) -> Any:
    """Add a layer, replacing (at the same list position) any layer of the same name."""
    data, kwargs, kind = layer_tuple
    name = kwargs["name"]
    index = viewer.layers.index(name) if name in viewer.layers else None
    if index is not None:
        viewer.layers.pop(index)
    layer = getattr(viewer, f"add_{kind}")(data, **kwargs)
    if index is not None:
        viewer.layers.move(viewer.layers.index(layer), index)
    return layer


def add_estimate_layers(viewer: Any, image_layer: Any, estimate: KernelEstimate, *,
                        slice_index: Sequence[int] | None = None) -> list[Any]:
    """Add (or replace) ``<name> kernel ×2``, ``<name> kernel ×4`` (×4 estimates) and
    ``<name> D-map`` for ``image_layer``; returns the new layers.

    Result layers of an earlier estimate of the same image are replaced; a
    ``kernel ×4`` left from an earlier ×4 estimate is removed by a ×2 one.
    """
    tuples = estimate_layer_data(image_layer, estimate, slice_index=slice_index)
    names = {t[1]["name"] for t in tuples}
    for stale in (kernel_layer_name(image_layer.name, 4), dmap_layer_name(image_layer.name)):
        if stale not in names:
            remove_layer(viewer, stale)
    remove_layer(viewer, preview_layer_name(image_layer.name))
    return [_put(viewer, t) for t in tuples]


def add_sr_layer(viewer: Any, image_layer: Any, result: SRResult, *,
                 slice_index: Sequence[int] | None = None) -> Any:
    """Add (or replace) ``<name> SR×s (<method>)`` overlaying ``image_layer``; returns it."""
    return _put(viewer, sr_layer_data(image_layer, result, slice_index=slice_index))


def update_preview(viewer: Any, image_layer: Any, kernel: np.ndarray) -> tuple[Any, bool]:
    """Show the running ×2 estimate; updates the preview layer in place.

    Returns the layer and whether this call created it.
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
    meta = {"source": image_layer.name, "orientation": ORIENTATION, "centring": CENTRING, "scale": 2,
            "role": "kernel preview"}
    layer = _put(viewer, _kernel_tuple(k, name, image_layer, 0, meta))
    return layer, True


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
