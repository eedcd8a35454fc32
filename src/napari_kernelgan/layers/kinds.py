"""What a layer is: a kernel, an input image or a result (by its role or its content)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class KernelProblem:
    """Why an array is not a blur kernel: ``reason`` in a few words (``'even side 12'``) and ``advice``, what
    would make it one (``'an SR kernel must have an odd side; crop it to 11×11 or pad it to 13×13'``)."""

    reason: str
    advice: str

    def about(self, what: str, shape: Sequence[int]) -> str:
        """``'psf.npy is 12×12: an SR kernel must have an odd side; …'``."""
        return f"{what} is {_dims(shape)}: {self.advice}"


def _dims(shape: Sequence[int]) -> str:
    return "×".join(str(int(n)) for n in shape)


def _odd_sides(shape: Sequence[int]) -> tuple[str, str]:
    down = _dims([n - 1 if n % 2 == 0 else n for n in shape])
    up = _dims([n + 1 if n % 2 == 0 else n for n in shape])
    return down, up


def kernel_problem(data: Any) -> KernelProblem | None:
    """Why ``data`` is not a blur kernel by its content (``None`` when it is one): the rule of :func:`is_kernel`
    said in a user's terms: 2-D, odd sides of 3 to :data:`MAX_KERNEL_SIDE` pixels, numbers, finite,
    non-negative (bar interpolation ringing) and of positive sum."""
    shape = tuple(int(n) for n in getattr(data, "shape", ()))
    if len(shape) != 2:
        return KernelProblem(f"{len(shape)}-D ({_dims(shape)})",
                             "an SR kernel is a 2-D image; save one plane of it (the in-focus plane of a 3-D PSF), "
                             "or make the kernel from the bead stack with its pixel size ('sr --kernel' or "
                             "physics.measured.psf_to_kernel)")
    even = [n for n in shape if n % 2 == 0]
    if even:
        down, up = _odd_sides(shape)
        return KernelProblem(f"even side {even[0]}",
                             f"an SR kernel must have an odd side, so that it has a centre pixel; crop it to "
                             f"{down} or pad it to {up}")
    if min(shape) < 3:
        return KernelProblem(f"side {min(shape)}", "an SR kernel is at least 3×3 pixels")
    if max(shape) > MAX_KERNEL_SIDE:
        return KernelProblem(f"larger than {MAX_KERNEL_SIDE}×{MAX_KERNEL_SIDE}",
                             f"an SR kernel is at most {MAX_KERNEL_SIDE}×{MAX_KERNEL_SIDE} pixels; crop it to "
                             "where the blur is not zero")
    arr = np.asarray(data)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        return KernelProblem(f"{arr.dtype} values", "an SR kernel holds real numbers")
    a = arr.astype(np.float64)
    if not np.all(np.isfinite(a)):
        return KernelProblem("NaN or infinite values", "an SR kernel holds finite numbers; replace the NaNs")
    # The tolerance of physics.conventions.validate_kernel: ringing down to -2 % of the peak.
    if a.min() < -2e-2 * max(a.max(), 1e-12):
        return KernelProblem(f"negative values (min {a.min():.3g})",
                             "a blur kernel is non-negative; subtract the background and clip at zero")
    if not a.sum() > 0:
        return KernelProblem("sums to zero", "a blur kernel has a positive sum")
    return None


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
    return kernel_problem(data) is None


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



KERNEL_WORDS = ("kernel", "psf")
"""Words in a file or layer name that say it is meant as a kernel (``psf.npy``, ``tissue kernel ×2``)."""
MEANT_SIDE = 2 * MAX_KERNEL_SIDE
"""Layers named as kernels up to this size (every side) are explained when they are not one; an unnamed layer
only when it is 2-D and at most a side longer than a kernel may be (a 12×12 or 76×76 image)."""


def named_as_kernel(name: str) -> bool:
    """Whether a file or layer name says it holds a kernel (``kernel`` or ``psf`` in it, any case)."""
    low = str(name).lower()
    return any(w in low for w in KERNEL_WORDS)


def skipped_kernel(layer: Any) -> str | None:
    """Why an image layer that looks meant as a kernel (named so, or kernel-sized) is not offered as one:
    ``"layer 'psf' is not a kernel: even side 12"``; ``None`` for kernels, inputs of ordinary size and results."""
    if not _is_image_layer(layer) or layer_role(layer) in RESULT_ROLES or is_kernel_layer(layer):
        return None
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(n) for n in data.shape)
    named = named_as_kernel(layer.name) and max(shape, default=0) <= MEANT_SIDE
    if not (named or (len(shape) == 2 and max(shape) <= MAX_KERNEL_SIDE + 1)):
        return None
    if getattr(layer, "rgb", False):
        reason = "an RGB image"
    else:
        problem = kernel_problem(data)
        reason = problem.reason if problem is not None else "not a kernel"
    return f"layer {layer.name!r} is not a kernel: {reason}"
