"""One way to stream a stack slice by slice, for the API (a lazy stack into one output array) and the batch
engine (a file's stack into the pages of its output file).

:class:`SliceStream` sees an array (in memory, memory-mapped, or lazy: Dask, Zarr) as slices along its
stack axes, each read into memory only when used, and gives the stack's shared intensity range from a
few sampled slices. :func:`iter_slices` reads the slices in order, has each super-resolved and yields
the results (:class:`SliceDone`) among the progress reports of the work; :func:`output_array` holds a
result too large for memory on a temporary file.
"""
from __future__ import annotations

import contextlib
import mmap
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .imaging import SCAN_BYTES, Intensity, check_values, sample_indices, stack_intensity
from .types import Progress, relay

__all__ = ["SliceStream", "SliceDone", "iter_slices", "output_array"]


class SliceStream:
    """``data`` as slices: one per index of its ``stack_axes`` (in file order), each the remaining axes in
    ``order`` (axis numbers of ``data``; default: their order in ``data``).

    Only :meth:`read` reads, one slice at a time: a lazy or memory-mapped stack is never read whole.
    ``intensity`` is the stack's map to [0, 1], from the dtype (uint8), the whole array (small, in
    memory) or the ``sample`` slices (by default :func:`~.imaging.sample_indices`, at most
    :data:`~.imaging.SAMPLE_PIXELS` pixels in all).
    """

    def __init__(self, data: Any, stack_axes: Sequence[int], order: Sequence[int] | None = None, *,
                 sample: Sequence[int] | None = None) -> None:
        self.data = data
        self.stack_axes = [int(a) for a in stack_axes]
        rest = [a for a in range(len(data.shape)) if a not in self.stack_axes]
        order = rest if order is None else [int(a) for a in order]
        if sorted(order) != rest:
            raise ValueError(f"order {order} must hold the axes {rest} that are not stack axes")
        self._order = [rest.index(a) for a in order]  # the frame's axes after indexing, as asked
        self.indices: list[tuple[int, ...]] = list(np.ndindex(*(int(data.shape[a]) for a in self.stack_axes)))
        self.frame_shape = tuple(int(data.shape[a]) for a in order)
        frame_pixels = int(np.prod(self.frame_shape))
        picked = sample_indices(len(self.indices), frame_pixels=frame_pixels) if sample is None else sample
        self.sample = [self.indices[i] for i in picked]
        self.intensity: Intensity = stack_intensity(data, (self.read(i) for i in self.sample))

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, index: tuple[int, ...]) -> np.ndarray:
        """The slice at ``index`` (one number per stack axis) in memory, its axes in ``order``, checked for
        NaN and infinite values."""
        key: list[Any] = [slice(None)] * len(self.data.shape)
        for axis, i in zip(self.stack_axes, index):
            key[axis] = i
        frame = np.asarray(self.data[tuple(key)])
        if self._order != sorted(self._order):
            frame = np.transpose(frame, self._order)
        # Pages of a mapped file read so far would count as this process's memory until unmapped: the slice
        # is copied out and they are dropped (they stay in the page cache; nothing else is lost). Only for a
        # read-only map: a copy-on-write one would lose the caller's changes.
        mapped = getattr(self.data, "_mmap", None) if getattr(self.data, "mode", None) == "r" else None
        if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
            frame = np.array(frame)
            with contextlib.suppress(OSError, ValueError):
                mapped.madvise(mmap.MADV_DONTNEED)
        check_values(frame)
        return frame

    def unit(self, index: tuple[int, ...]) -> np.ndarray:
        """The slice at ``index`` in [0, 1] on the whole stack's scale (float32)."""
        return self.intensity.to_unit(self.read(index))

    def widened(self, frame: np.ndarray) -> Intensity:
        """The stack's intensity map widened to hold ``frame``'s values (a sampled range may miss some):
        nothing is clipped, and a blank slice is no error."""
        shared = self.intensity
        return Intensity(shared.dtype, min(shared.low, float(frame.min())), max(shared.high, float(frame.max())))


@dataclass(frozen=True)
class SliceDone:
    """A slice's result, yielded by :func:`iter_slices` among the progress reports."""

    position: int  # 0 .. len(stream) - 1
    index: tuple[int, ...]  # along the stack axes
    result: Any  # what the work returned


SliceWork = Callable[[int, tuple[int, ...], np.ndarray], Generator[Progress, None, Any]]


def iter_slices(stream: SliceStream, work: SliceWork, *, start: float | None = None,
                check: Callable[[], None] | None = None) -> Generator[Progress | SliceDone, None, None]:
    """Read the slices of ``stream`` in order, one in memory at a time, and run ``work(position, index,
    slice)`` (a progress generator returning the slice's result) on each; yield its reports (on the scale
    of the whole stack, ``slice i/n:`` before their messages) and a :class:`SliceDone` per slice.
    ``check`` runs before each slice (it raises to stop, e.g. on cancel)."""
    start = time.perf_counter() if start is None else start
    n = len(stream)
    for position, index in enumerate(stream.indices):
        if check is not None:
            check()
        frame = stream.read(index)
        result = yield from relay(work(position, index, frame), offset=position, span=1, total=n, start=start,
                                  prefix=f"slice {position + 1}/{n}: ")
        yield SliceDone(position, index, result)


def output_array(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An array for a streamed result: in memory when small, else memory-mapped on an anonymous temporary
    file (in ``$TMPDIR``, gone when the array is), so a large result need not fit in memory."""
    if int(np.prod(shape)) * np.dtype(dtype).itemsize <= SCAN_BYTES:
        return np.empty(shape, dtype)
    return np.memmap(tempfile.TemporaryFile(prefix="napari-kernelgan-"), dtype=dtype, mode="w+", shape=shape)
