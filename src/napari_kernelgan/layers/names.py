"""Layer names, display constants and the kernel-map quantities: what every result layer is called and how
it is drawn."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..vocabulary import MAX_KERNEL_SIDE as MAX_KERNEL_SIDE  # spelled in vocabulary, re-exported for the layers

LayerDataTuple = tuple[np.ndarray, dict[str, Any], str]

KERNEL_COLORMAP = "inferno"
DMAP_COLORMAP = "viridis"
KERNEL_SLOTS = 3  # panels in a column beside the image: ×2 estimate, ×4 estimate, true kernel of a sample
FILE_KERNEL_SLOT = KERNEL_SLOTS  # kernels opened from files start a second column
DMAP_DESCRIPTION = ("Discriminator map (D-map): KernelGAN's discriminator verdict for every pixel. High values: "
                    "patches that look like the image's own patches at the coarser scale. Placed below the "
                    "image; hide the image to see it.")



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

