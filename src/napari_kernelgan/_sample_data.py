"""napari sample data: each sample's LR image (true kernel in its metadata) and its true kernel as a
layer drawn beside the image, where the estimated kernels will appear."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from .layers import (
    KERNEL_COLORMAP,
    LayerDataTuple,
    kernel_map_layer_data,
    kernel_panel_transform,
    true_kernel_layer_name,
    units_of,
)
from .samples import ASTRONAUT, FLUORESCENCE, NOISY_FLUORESCENCE, SCALE, TISSUE, TISSUE_VARYING, SampleCase
from .types import kernel_metadata
from .vocabulary import LayerRole


def sample_layers(case: SampleCase) -> list[LayerDataTuple]:
    """Layer data tuples of one sample: the LR image and its true kernel. A sample with optics carries its
    pixel size as the layer's scale (µm) and its optics in ``metadata["optics"]``, as this package's reader
    gives a calibrated file, so the *Estimate kernel* widget fills its Optics group from them."""
    k = case.kernel()
    lr = case.lr()
    kernel_meta = kernel_metadata(k, SCALE, role=LayerRole.TRUE_KERNEL, method="ground truth", source=case.name,
                                  sigma=list(case.sigma), theta_deg=case.theta_deg)
    image_kwargs: dict[str, Any] = {"name": case.name, "rgb": case.rgb,
                                    "metadata": {"true_kernel": kernel_meta, "sample": case.source}}
    if not case.rgb:
        image_kwargs["colormap"] = "green"
    lead = lr.ndim - (3 if case.rgb else 2)
    step = [1.0] * lead + [1.0, 1.0]
    if case.pixel_um is not None:
        step[-2:] = [case.pixel_um, case.pixel_um]
        image_kwargs.update(scale=step, units=["pixel"] * lead + ["µm", "µm"])
        image_kwargs["metadata"]["optics"] = case.hints()
    # The panel placement needs the image layer's geometry; the kernel takes its units as every result layer
    # does (layers of mixed units make napari drop them all, with a warning).
    geometry = SimpleNamespace(data=lr, rgb=case.rgb, scale=step, translate=[0.0] * (lead + 2), multiscale=False,
                               units=image_kwargs.get("units"))
    k_scale, k_translate = kernel_panel_transform(geometry, k.shape[0], slot=2)
    kernel_kwargs = {"name": true_kernel_layer_name(case.name, SCALE), "scale": k_scale, "translate": k_translate,
                     "colormap": KERNEL_COLORMAP, "contrast_limits": [0.0, float(k.max())],
                     "interpolation2d": "nearest", "metadata": kernel_meta, **units_of(geometry, 2)}
    return [(lr, image_kwargs, "image"), (k.astype(np.float32), kernel_kwargs, "image")]


def tissue() -> list[LayerDataTuple]:
    """Brightfield immunohistochemistry micrograph (scikit-image), blurred with a known kernel and
    downscaled ×2, RGB uint8."""
    return sample_layers(TISSUE)


def astronaut() -> list[LayerDataTuple]:
    """The astronaut photograph (scikit-image), blurred with a known kernel and downscaled ×2, RGB uint8."""
    return sample_layers(ASTRONAUT)


def fluorescence_stack() -> list[LayerDataTuple]:
    """A synthetic fluorescence z-stack (8 slices), each slice blurred with one known kernel and
    downscaled ×2, uint16."""
    return sample_layers(FLUORESCENCE)


def fluorescence_noisy() -> list[LayerDataTuple]:
    """A synthetic widefield fluorescence image at about 200 photons (Poisson and read noise), blurred ×2
    by a physical PSF (NA 1.3 oil, 520 nm, slightly defocused), uint16 camera counts, with its pixel size
    (0.196 µm) as the layer's scale and its optics in the layer's metadata."""
    return sample_layers(NOISY_FLUORESCENCE)


def tissue_varying() -> list[LayerDataTuple]:
    """The tissue micrograph blurred ×2 by a kernel field (sharp in the middle, wider and astigmatic
    towards the corners, as field curvature makes), RGB uint8, with the true field's kernel map and
    width, orientation and anisotropy maps (named ``... true kernel map``), for comparison with a map
    estimated by the *Kernel map* widget."""
    lr = TISSUE_VARYING.lr()
    field = TISSUE_VARYING.field(lr.shape[:2])
    geometry = SimpleNamespace(name=TISSUE_VARYING.name, data=lr, rgb=True, scale=[1.0, 1.0], translate=[0.0, 0.0],
                               multiscale=False)
    truth = kernel_map_layer_data(geometry, field, name=f"{TISSUE_VARYING.name} true",
                                  quantities=("width_major", "orientation", "anisotropy"))
    for _, kwargs, _ in truth:
        kwargs["visible"] = False
    image_kwargs = {"name": TISSUE_VARYING.name, "rgb": True,
                    "metadata": {"sample": TISSUE_VARYING.source, "true_kernel_field": field.to_dict()}}
    return [(lr, image_kwargs, "image"), *truth]
