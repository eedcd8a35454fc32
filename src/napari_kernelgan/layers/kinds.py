"""What a layer is: a kernel, an input image or a result (by its role or its content)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..vocabulary import KERNEL_ROLES, RESULT_ROLES
from .names import MAX_KERNEL_SIDE


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

