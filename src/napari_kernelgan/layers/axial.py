"""Layers of the axial tools: a z-stack's 3-D PSF with its central sections, and the isotropic stack.

World placement: napari maps data index ``i`` to ``translate + scale * i``. The PSF layers are drawn in
the input's world units at physical size (``world_per_um``: the input's X step over its pixel size in µm,
1 for a layer calibrated in µm), beside the stack so they never cover it: the central sections XY, XZ
and YZ side by side to the right of it (rows are z in XZ and YZ, so the axial elongation shows), the 3-D
PSF below them at the stack's middle depth. The isotropic stack keeps every input plane (plane ``i`` of
the input is plane ``i * F``, :mod:`napari_kernelgan.axial.psf`), so it overlays the input with the z step
divided by ``F`` and the same translate. Qt-free, as the rest of :mod:`napari_kernelgan.layers`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..vocabulary import LayerRole
from .names import KERNEL_COLORMAP, LayerDataTuple
from .placement import image_data, units_of

__all__ = ["SECTIONS", "psf_layer_names", "isotropic_layer_name", "axial_psf_layer_data", "isotropic_layer_data",
           "add_axial_psf_layers", "add_isotropic_layer", "world_per_um"]

SECTIONS = ("XY", "XZ", "YZ")
"""The central sections of a 3-D PSF shown as 2-D layers, in their order left to right."""


def psf_layer_names(name: str) -> list[str]:
    """``[<name> PSF 3-D, <name> PSF XY, <name> PSF XZ, <name> PSF YZ]``."""
    return [f"{name} PSF 3-D", *(f"{name} PSF {s}" for s in SECTIONS)]


def isotropic_layer_name(name: str, factor: int, method: str) -> str:
    return f"{name} isotropic ×{factor} ({method})"


def world_per_um(image_layer: Any, pixel_um: float) -> float:
    """World units per µm in ``image_layer``'s coordinates (its X step is ``pixel_um`` µm)."""
    return float(np.asarray(image_layer.scale, dtype=float)[-1]) / float(pixel_um)


def _sections(psf: Any) -> dict[str, np.ndarray]:
    """The central sections of the PSF sampled every lateral pixel in z too (a smooth, true-shape picture)."""
    vol = psf.volume(psf.pixel_um)
    cz, cy, cx = (n // 2 for n in vol.shape)
    return {"XY": vol[cz], "XZ": vol[:, cy, :], "YZ": vol[:, :, cx]}


def _psf_meta(psf: Any, image_layer: Any, **extra: Any) -> dict[str, Any]:
    fy, fx = psf.lateral_fwhm_um
    return {"source": image_layer.name, "fwhm_x_um": float(fx), "fwhm_y_um": float(fy),
            "fwhm_z_um": float(psf.axial_fwhm_um), "confidence": float(psf.confidence), "method": psf.method,
            "notes": list(psf.notes), "pixel_um": float(psf.pixel_um), "z_step_um": float(psf.z_step_um), **extra}


def axial_psf_layer_data(image_layer: Any, psf: Any) -> list[LayerDataTuple]:
    """Layer data tuples of ``psf`` (an :class:`~napari_kernelgan.axial.psf.AxialPSF` of ``image_layer``): the
    3-D PSF at ``(z_step, pixel, pixel)`` and its XY, XZ and YZ central sections (2-D), placed as the module
    says, at physical size in the layer's world units."""
    k = world_per_um(image_layer, psf.pixel_um)
    scale = np.asarray(image_layer.scale, dtype=float)
    translate = np.asarray(image_layer.translate, dtype=float)
    data = image_data(image_layer)
    top, left = translate[-2:] - 0.5 * scale[-2:]
    height, width = data.shape[-2] * scale[-2], data.shape[-1] * scale[-1]
    pixel = psf.pixel_um * k
    gap = 0.04 * height
    x = left + width + gap
    names = psf_layer_names(image_layer.name)
    units = units_of(image_layer, 2)
    out: list[LayerDataTuple] = []
    row_height = 0.0
    for name, (plane, section) in zip(names[1:], _sections(psf).items()):
        sec = np.asarray(section, dtype=np.float32)
        kw = {"name": name, "scale": [pixel, pixel], "translate": [top + 0.5 * pixel, x + 0.5 * pixel],
              "colormap": KERNEL_COLORMAP, "contrast_limits": [0.0, float(max(sec.max(), 1e-12))],
              "metadata": _psf_meta(psf, image_layer, role=str(LayerRole.AXIAL_PSF_SECTION), section=plane), **units}
        out.append((sec, kw, "image"))
        x += sec.shape[1] * pixel + gap
        row_height = max(row_height, sec.shape[0] * pixel)
    vol = psf.volume()
    dz = psf.z_step_um * k
    lead = data.ndim - 3  # leading axes (time) of a 4-D layer: the PSF sits at the first index
    z_mid = translate[-3] + scale[-3] * (data.shape[-3] - 1) / 2 if data.ndim >= 3 else 0.0
    vol_scale = [*scale[:lead], dz, pixel, pixel]
    vol_translate = [*translate[:lead], z_mid - dz * (vol.shape[0] // 2), top + row_height + gap + 0.5 * pixel,
                     left + width + gap + 0.5 * pixel]
    kw3 = {"name": names[0], "scale": vol_scale, "translate": vol_translate, "colormap": KERNEL_COLORMAP,
           "contrast_limits": [0.0, float(max(vol.max(), 1e-12))], "rendering": "mip",
           "metadata": _psf_meta(psf, image_layer, role=str(LayerRole.AXIAL_PSF)), **units_of(image_layer)}
    out.insert(0, (vol.reshape((1,) * lead + vol.shape), kw3, "image"))
    return out


def isotropic_layer_data(image_layer: Any, volume: np.ndarray, factor: int, method: str, *,
                         lead_index: Sequence[int] = (), metadata: dict[str, Any] | None = None) -> LayerDataTuple:
    """Layer data tuple of the isotropic ``volume`` (z, y, x) of ``image_layer`` (of its leading index
    ``lead_index`` for a 4-D layer): the z step divided by ``factor``, the input's translate, colormap and
    contrast, so it overlays the input."""
    scale = np.asarray(image_layer.scale, dtype=float).copy()
    translate = np.asarray(image_layer.translate, dtype=float).copy()
    scale[-3] = scale[-3] / factor
    lead = len(lead_index)
    translate[:lead] = translate[:lead] + scale[:lead] * np.asarray(lead_index, dtype=float)
    data = np.asarray(volume).reshape((1,) * lead + tuple(volume.shape))
    kw = {"name": isotropic_layer_name(image_layer.name, factor, method), "scale": scale.tolist(),
          "translate": translate.tolist(), "colormap": image_layer.colormap.name,
          "contrast_limits": list(image_layer.contrast_limits), "gamma": float(getattr(image_layer, "gamma", 1.0)),
          "metadata": {**(metadata or {}), "source": image_layer.name, "role": str(LayerRole.ISOTROPIC),
                       "z_factor": int(factor), "sr_method": method}, **units_of(image_layer)}
    return (data, kw, "image")


def add_axial_psf_layers(viewer: Any, image_layer: Any, psf: Any) -> list[Any]:
    """Add (or replace) the 3-D PSF layer and its central sections beside ``image_layer``; returns them."""
    from .viewer import _put, _select, ensure_visible

    layers = [_put(viewer, t) for t in axial_psf_layer_data(image_layer, psf)]
    _select(viewer, image_layer)
    ensure_visible(viewer, layers[1:])
    return layers


def add_isotropic_layer(viewer: Any, image_layer: Any, volume: np.ndarray, factor: int, method: str, *,
                        lead_index: Sequence[int] = (), metadata: dict[str, Any] | None = None) -> Any:
    """Add (or replace) ``<name> isotropic ×F (<method>)`` overlaying ``image_layer``; returns it."""
    from .viewer import _put, _select

    layer = _put(viewer, isotropic_layer_data(image_layer, volume, factor, method, lead_index=lead_index,
                                              metadata=metadata))
    _select(viewer, image_layer)
    return layer
