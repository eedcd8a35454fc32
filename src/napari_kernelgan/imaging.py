"""Turning user arrays into the engine's float frames, and back.

The engine works on ``float32`` frames of shape ``(N, C, H, W)`` in [0, 1]:
``N`` frames that share one kernel, ``C`` channels that pass through the
network as a batch. :func:`prepare_image` checks the input and remembers how
to map results back to the input's dtype and range.

Lazy inputs (Dask and Zarr arrays, memory-mapped files: see :func:`is_lazy`) are
never read whole here: a stack of them is represented by at most
:data:`SAMPLE_FRAMES` evenly spaced frames (:func:`sample_indices`), and only
what is read is checked for NaN and infinite values.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import BadInputError, Param

MIN_SIZE = 32
"""Smallest accepted height/width in pixels: one 7×7 discriminator window on a ×2 crop needs it."""
SAMPLE_FRAMES = 16
"""Frames read to set the intensity range of a stack too large to scan (and to estimate one kernel for it)."""
SAMPLE_PIXELS = 16 * 2**20
"""At most this many pixels in those frames together: a stack of 2048² slices is sampled by 4 of them, so
estimating one kernel from the sample stays well under a gigabyte of memory."""
SCAN_BYTES = 256 * 2**20
"""Arrays up to this size in memory get their exact range; larger or lazy ones a sampled one."""


def centre_crop(x: np.ndarray, side: int) -> np.ndarray:
    """The centre ``side``×``side`` crop of the last two axes of ``x`` (the whole axis where it is shorter),
    as a view."""
    h, w = x.shape[-2:]
    r, c = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return x[..., r:r + side, c:c + side]


def is_lazy(x: Any) -> bool:
    """Whether reading ``x`` whole would load or compute data not yet in memory: a memory-mapped array,
    or an array-like that is not a NumPy array (Dask, Zarr, h5py...). Imports neither Dask nor Zarr."""
    if isinstance(x, np.memmap):
        return True
    if isinstance(x, np.ndarray):
        return False
    return hasattr(x, "__array__") and hasattr(x, "shape") and hasattr(x, "dtype")


def sample_indices(n: int, most: int = SAMPLE_FRAMES, frame_pixels: int = 0) -> list[int]:
    """At most ``most`` evenly spaced indices of ``range(n)``, the first included; with ``frame_pixels``
    (pixels of one frame), no more than :data:`SAMPLE_PIXELS` pixels in all (at least one frame)."""
    if frame_pixels > 0:
        most = max(1, min(most, SAMPLE_PIXELS // int(frame_pixels)))
    step = max(1, -(-n // most))
    return list(range(0, n, step))


@dataclass(frozen=True)
class Intensity:
    """Affine map between the input's values and [0, 1]."""

    dtype: np.dtype
    low: float
    high: float

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) - self.low) / (self.high - self.low)).astype(np.float32)

    def from_unit(self, x: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
        """Back to the input's range; integer dtypes are rounded and clipped."""
        dtype = np.dtype(self.dtype if dtype is None else dtype)
        return cast_to(np.asarray(x, dtype=np.float64) * (self.high - self.low) + self.low, dtype)


def cast_to(values: np.ndarray, dtype: Any) -> np.ndarray:
    """Values in an image's own units as ``dtype``: integers rounded and clipped to the dtype's range."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.round(values), info.min, info.max).astype(dtype)
    return np.asarray(values).astype(dtype)


def keep_in_range(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """A float result limited only as its input's range ``low..high`` implies: [0, 1] for an input within it
    (the normalised convention), ≥ 0 for another non-negative input (counts), as it is otherwise. Restored
    detail peaks above the input's maximum, so nothing caps it there."""
    if low >= 0.0 and high <= 1.0:
        return np.clip(image, 0.0, 1.0)
    return np.maximum(image, 0) if low >= 0.0 else image


@dataclass
class Frames:
    """Prepared input: ``data`` is float32 (N, C, H, W) in [0, 1]."""

    data: np.ndarray
    intensity: Intensity
    layout: str  # "gray", "rgb" or "multichannel"
    stacked: bool
    perm: tuple[int, ...] = ()  # input axes in (stack?, channel?, H, W) order
    sampled: tuple[int, ...] | None = None  # the frames read of a lazy stack (None: all of it)


def check_values(arr: np.ndarray) -> None:
    """Refuse an empty array, one of an unsupported dtype, and NaN or infinite values."""
    if arr.size == 0:
        raise BadInputError(f"the image is empty (shape {arr.shape})")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise BadInputError(f"unsupported image dtype {arr.dtype}: use uint8, uint16 or float")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise BadInputError(f"the image contains {bad} NaN or infinite values; fill or crop them first")


def intensity_of(arr: np.ndarray) -> Intensity:
    """uint8 maps [0, 255]; other dtypes map their own min..max (kept for the round trip)."""
    lo, hi = float(arr.min()), float(arr.max())
    if hi - lo < 1e-12:
        raise BadInputError("the image is constant: there is no structure to estimate a kernel from")
    if arr.dtype == np.uint8:
        return Intensity(arr.dtype, 0.0, 255.0)
    if np.issubdtype(arr.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    return Intensity(arr.dtype, lo, hi)


def stack_intensity(data: Any, frames: Iterable[np.ndarray] | None = None) -> Intensity:
    """The map of ``data``'s values to [0, 1]: exact (as for one image) when it is small and in memory,
    else from the dtype (uint8) or the range of a few sampled ``frames``, never a pass over all of it."""
    if not is_lazy(data) and np.asarray(data).nbytes <= SCAN_BYTES:
        return intensity_of(np.asarray(data))
    if data.dtype == np.uint8:
        return Intensity(np.dtype(data.dtype), 0.0, 255.0)
    lo, hi = np.inf, -np.inf
    for frame in frames if frames is not None else [data[(0,) * (data.ndim - 2)]]:
        f = np.asarray(frame)
        lo, hi = min(lo, float(f.min())), max(hi, float(f.max()))
    if not hi - lo >= 1e-12:
        raise BadInputError("the sampled frames of the stack are constant: there is no structure to "
                            "estimate a kernel from")
    if np.issubdtype(data.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    return Intensity(np.dtype(data.dtype), lo, hi)


_MUST_DIFFER = (Param("channel_axis", bare=True), " and ", Param("stack_axis", bare=True), " must differ")


def _axis(name: str, ax: int | None, nd: int, shape: tuple[int, ...]) -> int | None:
    if ax is None:
        return None
    if not -nd <= ax < nd:
        raise BadInputError(Param(name, ax), f" is out of range for an image of {nd} dimensions {shape}")
    return ax % nd


def read_frame(image: Any, axis: int, index: int) -> np.ndarray:
    """Frame ``index`` along ``axis`` of an array (lazy or not) in memory, checked like a whole image."""
    frame = np.asarray(image[(slice(None),) * axis + (index,)])
    check_values(frame)
    return frame


def read_sample(image: Any, stack_axis: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """The :func:`sample_indices` frames of a lazy stack along ``stack_axis``, read one by one and stacked
    in memory (the stack axis kept), and their indices."""
    ax = _axis("stack_axis", stack_axis, len(image.shape), tuple(image.shape))
    n = int(image.shape[ax])
    picked = tuple(sample_indices(n, frame_pixels=int(np.prod(image.shape)) // max(n, 1)))
    return np.stack([read_frame(image, ax, i) for i in picked], axis=ax), picked


def prepare_image(image: Any, *, rgb: bool | None = None, channel_axis: int | None = None,
                  stack_axis: int | None = None, min_size: int = MIN_SIZE,
                  intensity: Intensity | None = None) -> Frames:
    """Validate an image and return engine frames.

    * 2-D ``(H, W)``: grayscale.
    * 3-D ``(H, W, 3|4)``: RGB(A) (alpha dropped) unless ``rgb=False``.
    * ``channel_axis``: that axis holds channels (multichannel, one kernel for all).
    * ``stack_axis``: that axis holds frames sharing one kernel (e.g. a Z or T stack).

    Anything else of more than two dimensions needs ``channel_axis`` or
    ``stack_axis`` (or a 2-D slice) and is refused with a message saying so.

    A lazy stack (:func:`is_lazy` with ``stack_axis``) is represented by its
    :func:`sample_indices` frames, read one by one (``Frames.sampled``); any
    other input is read whole. ``intensity``: map values with it instead of the
    input's own range (slices of one stack on the stack's scale).
    """
    sampled = None
    if is_lazy(image) and stack_axis is not None:
        arr, sampled = read_sample(image, stack_axis)
    else:
        arr = np.asarray(image)
        check_values(arr)
    nd = arr.ndim
    axes = {}
    for name, ax in (("channel_axis", channel_axis), ("stack_axis", stack_axis)):
        if ax is not None:
            axes[name] = _axis(name, ax, nd, arr.shape)
    if len(set(axes.values())) < len(axes):
        raise BadInputError(*_MUST_DIFFER)
    layout = "gray"
    if "channel_axis" in axes:
        layout = "multichannel"
    elif nd >= 3 and rgb is not False and arr.shape[-1] in (3, 4) and (rgb or "stack_axis" not in axes
                                                                          or axes["stack_axis"] != nd - 1):
        axes["channel_axis"] = nd - 1
        layout = "rgb"
    spatial = [a for a in range(nd) if a not in axes.values()]
    if len(spatial) != 2:
        raise BadInputError(
            f"cannot tell the two image axes in an array of shape {arr.shape}: a {nd}-D image needs ",
            Param("channel_axis"), " and/or ", Param("stack_axis"), " (or pass the 2-D slice you want)")
    order = [axes.get("stack_axis"), axes.get("channel_axis")]
    perm = [a for a in order if a is not None] + spatial
    data = np.transpose(arr, perm)
    if "stack_axis" not in axes:
        data = data[None]
    if "channel_axis" not in axes:
        data = data[:, None]
    if layout == "rgb" and data.shape[1] == 4:
        data = data[:, :3]
    h, w = data.shape[-2:]
    if min(h, w) < min_size:
        raise BadInputError(f"the image is {h}×{w} pixels; at least {min_size}×{min_size} is needed")
    if intensity is None:
        intensity = intensity_of(data)
    return Frames(np.ascontiguousarray(intensity.to_unit(data)), intensity, layout, "stack_axis" in axes,
                  tuple(perm) if layout != "gray" or "stack_axis" in axes else (0, 1), sampled)


def frames_to_image(frames: np.ndarray, like: Frames, dtype: np.dtype | None = None) -> np.ndarray:
    """Engine frames (N, C, H', W') in [0, 1] → the input's axis order, dtype and range."""
    out = like.intensity.from_unit(frames, dtype)
    if not like.stacked:
        out = out[0]
    if like.layout == "gray":
        out = out[:, 0] if like.stacked else out[0]
    # ``out`` is now in the order of ``like.perm``; undo that permutation.
    return np.transpose(out, np.argsort(like.perm))
