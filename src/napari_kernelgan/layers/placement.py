"""Where result layers go in the world: the input's pixel grid, the ×s grid, kernel panels beside the image."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .kinds import is_input_layer
from .names import KERNEL_SLOTS


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

