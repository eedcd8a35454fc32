"""The public Python API. The CLI, batch mode and napari widgets all call these.

Long work is written as generators that yield :class:`~napari_kernelgan.types.Progress`;
the ``iter_*`` functions expose them (napari's ``thread_worker`` takes them as
they are), the plain functions drain them with an optional callback and cancel.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Generator

import numpy as np

from .devices import resolve_device
from .imaging import Frames, frames_to_image, prepare_image
from .physics.conventions import validate_kernel
from .registry import ESTIMATORS, SR_METHODS
from .types import Cancelled, KernelEstimate, Progress, SRResult

ProgressCallback = Callable[[Progress], Any]
SR_SCALES = (2, 3, 4)


def drive(gen: Generator[Progress, None, Any], callback: ProgressCallback | None = None,
          cancel: threading.Event | None = None) -> Any:
    """Run a progress generator to completion and return its value.

    ``callback(progress)`` returning ``False``, or ``cancel`` being set, stops
    the work at the next report and raises :class:`Cancelled`.
    """
    while True:
        try:
            progress = next(gen)
        except StopIteration as stop:
            return stop.value
        if (cancel is not None and cancel.is_set()) or (callback is not None and callback(progress) is False):
            gen.close()
            raise Cancelled("cancelled by the caller")


def _check_scale(scale: int, allowed: tuple[int, ...]) -> int:
    if isinstance(scale, bool) or int(scale) != scale or int(scale) not in allowed:
        raise ValueError(f"scale must be one of {', '.join(map(str, allowed))}; got {scale!r}")
    return int(scale)


def iter_estimate_kernel(image: np.ndarray | Frames, scale: int = 2, *, method: str = "kernelgan",
                         preset: str = "default", iterations: int | None = None, device: str = "auto",
                         seed: int = 0, rgb: bool | None = None, channel_axis: int | None = None,
                         stack_axis: int | None = None, report_every: int = 50,
                         **options: Any) -> Generator[Progress, None, KernelEstimate]:
    """Generator form of :func:`estimate_kernel`: yields progress (with the current
    kernel every ``report_every`` iterations) and returns the :class:`KernelEstimate`."""
    scale = _check_scale(scale, (2, 4))
    frames = image if isinstance(image, Frames) else prepare_image(
        image, rgb=rgb, channel_axis=channel_axis, stack_axis=stack_axis)
    fn = ESTIMATORS.get(method)
    dev = resolve_device(device)
    result: KernelEstimate = yield from fn(frames.data, preset=preset, iterations=iterations, device=dev,
                                           seed=int(seed), report_every=report_every, **options)
    result.scale = scale
    if result.dmap is not None and not frames.stacked:
        result.dmap = result.dmap[0]
    return result


def estimate_kernel(image: np.ndarray, scale: int = 2, *, callback: ProgressCallback | None = None,
                    cancel: threading.Event | None = None, **kwargs: Any) -> KernelEstimate:
    """Estimate the SR kernel of one image (or of a stack sharing one kernel).

    ``image``: 2-D grayscale, ``(H, W, 3|4)`` RGB(A), or nD with
    ``channel_axis=`` / ``stack_axis=``; uint8, uint16 or float.
    Returns the ×2 kernel (``.kernel``), ``.kernel_x4`` (analytic), the
    discriminator map over the whole input (``.dmap``), loss history, timing,
    device and seed. See :func:`iter_estimate_kernel` for the options.

    >>> est = estimate_kernel(image, scale=2, seed=0)   # doctest: +SKIP
    >>> est.kernel.shape                                  # doctest: +SKIP
    (13, 13)
    """
    return drive(iter_estimate_kernel(image, scale, **kwargs), callback, cancel)


def _resolve_kernel(kernel: np.ndarray | KernelEstimate, scale: int) -> np.ndarray:
    if isinstance(kernel, KernelEstimate):
        kernel = kernel.kernel_for(scale)
    return validate_kernel(kernel)


def iter_super_resolve(image: np.ndarray, kernel: np.ndarray | KernelEstimate, scale: int, *,
                       method: str = "closed-form", device: str = "auto", seed: int = 0,
                       rgb: bool | None = None, channel_axis: int | None = None,
                       stack_axis: int | None = None, output_dtype: Any = None,
                       **options: Any) -> Generator[Progress, None, SRResult]:
    """Generator form of :func:`super_resolve`."""
    scale = _check_scale(scale, SR_SCALES)
    k = _resolve_kernel(kernel, scale)
    frames = prepare_image(image, rgb=rgb, channel_axis=channel_axis, stack_axis=stack_axis, min_size=8)
    fn = SR_METHODS.get(method)
    dev = resolve_device(device)
    start = time.perf_counter()
    out = yield from fn(frames.data, k, scale, device=dev, seed=int(seed), **options)
    sr = frames_to_image(np.clip(out, 0.0, 1.0), frames, output_dtype)
    return SRResult(image=sr, scale=scale, method=method, kernel=k, elapsed=time.perf_counter() - start,
                    device=str(dev), options=dict(options, seed=int(seed)))


def super_resolve(image: np.ndarray, kernel: np.ndarray | KernelEstimate, scale: int, *,
                  method: str = "closed-form", callback: ProgressCallback | None = None,
                  cancel: threading.Event | None = None, **kwargs: Any) -> SRResult:
    """Upscale ``image`` by ``scale`` with a non-blind method that knows the blur ``kernel``.

    ``kernel`` is centred, in correlation orientation (as estimated here and as
    in DIV2KRK ``.mat`` files), or a :class:`KernelEstimate`. The output keeps
    the input's layout, dtype and range.
    """
    return drive(iter_super_resolve(image, kernel, scale, method=method, **kwargs), callback, cancel)


# Options a method gets by default when its kernel is an estimate, not a measurement: closed-form's
# noise floor keeps the data step from over-sharpening where the estimate is too wide
# (measured in the blind sections of docs/benchmarks.md).
BLIND_DEFAULTS: dict[str, dict[str, Any]] = {"closed-form": {"sigma": 2.0}}


def iter_blind_super_resolve(image: np.ndarray, scale: int, *, method: str = "closed-form",
                             estimate_options: dict[str, Any] | None = None,
                             **sr_options: Any) -> Generator[Progress, None, SRResult]:
    """Estimate the kernel, then super-resolve with it (generator form).

    Method options not given default to :data:`BLIND_DEFAULTS` for that method.
    """
    sr_options = {**BLIND_DEFAULTS.get(method, {}), **sr_options}
    shared = {k: sr_options[k] for k in ("device", "seed", "rgb", "channel_axis", "stack_axis") if k in sr_options}
    estimate = yield from iter_estimate_kernel(image, scale, **shared, **(estimate_options or {}))
    result = yield from iter_super_resolve(image, estimate, scale, method=method, **sr_options)
    result.estimate = estimate
    return result


def blind_super_resolve(image: np.ndarray, scale: int, *, callback: ProgressCallback | None = None,
                        cancel: threading.Event | None = None, **kwargs: Any) -> SRResult:
    """:func:`estimate_kernel` then :func:`super_resolve`; the estimate is on ``result.estimate``."""
    return drive(iter_blind_super_resolve(image, scale, **kwargs), callback, cancel)
