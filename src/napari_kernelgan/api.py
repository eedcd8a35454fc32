"""The public Python API. The CLI, batch mode and napari widgets all call these.

Long work is written as generators that yield :class:`~napari_kernelgan.types.Progress`;
the ``iter_*`` functions expose them (napari's ``thread_worker`` takes them as
they are), the plain functions drain them with an optional callback and cancel.

Methods are looked up by name in :data:`~napari_kernelgan.registry.ESTIMATORS`
(``estimator=``) and :data:`~napari_kernelgan.registry.SR_METHODS`
(``sr_method=``); method options are passed as keyword arguments and checked
against what the method declares.
"""
from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Generator, Mapping
from typing import Any

import numpy as np

from .devices import reproducible, resolve_device, torch_threads
from .errors import BadInputError, BadOptionError, Cancelled
from .fields import KernelField
from .imaging import Frames, Intensity, frames_to_image, is_lazy, keep_in_range, prepare_image, sample_indices
from .optics_hints import hinted_options
from .physics.conventions import kernel_for_scale, validate_kernel
from .registry import ESTIMATORS, SR_METHODS
from .slices import SliceStream, iter_slices, output_array
from .types import KernelEstimate, Progress, SRResult
from .vocabulary import ESTIMATE_SCALES, SR_SCALES, Stage
from .vocabulary import check_scale as _check_scale

ProgressCallback = Callable[[Progress], Any]
DEFAULT_ESTIMATOR = "auto"
DEFAULT_SR_METHOD = "closed-form"

__all__ = ["drive", "estimate_kernel", "iter_estimate_kernel", "super_resolve", "iter_super_resolve",
           "output_image", "unit_noise_scale", "noise_option", "parse_noise_option",
           "blind_super_resolve", "iter_blind_super_resolve", "blind_defaults", "DEFAULT_ESTIMATOR",
           "DEFAULT_SR_METHOD"]

# The axial tools (z-stacks: 3-D PSF, isotropic voxels), here by name and loaded on first use, as the package's
# own names are: ``from napari_kernelgan.api import estimate_psf3d``.
_AXIAL = {"estimate_psf3d": "estimate", "iter_estimate_psf3d": "estimate", "super_resolve_axial": "isotropic",
          "iter_super_resolve_axial": "isotropic", "AxialResult": "isotropic", "AxialPSF": "psf",
          "write_psf3d": "export", "read_psf3d": "export"}
__all__ += list(_AXIAL)


def __getattr__(name: str) -> Any:
    module = _AXIAL.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".axial.{module}", __package__), name)
    globals()[name] = value
    return value


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


def _renamed(new: str, value: str, old_value: str | None) -> str:
    """Honour the deprecated ``method=`` keyword (renamed ``estimator=`` / ``sr_method=``)."""
    if old_value is None:
        return value
    warnings.warn(f"method= is deprecated here; use {new}=", DeprecationWarning, stacklevel=3)
    return old_value


def iter_estimate_kernel(image: np.ndarray | Frames, scale: int = 2, *, estimator: str = DEFAULT_ESTIMATOR,
                         device: str = "auto", seed: int = 0, threads: int | None = None,
                         rgb: bool | None = None, channel_axis: int | None = None, stack_axis: int | None = None,
                         report_every: int = 50, method: str | None = None,
                         hints: Mapping[str, Any] | None = None,
                         **options: Any) -> Generator[Progress, None, KernelEstimate]:
    """Generator form of :func:`estimate_kernel`: yields progress (with the current
    kernel every ``report_every`` iterations) and returns the :class:`KernelEstimate`."""
    estimator = _renamed("estimator", estimator, method)
    start = time.perf_counter()
    scale = _check_scale(scale, ESTIMATE_SCALES)
    spec = ESTIMATORS.get(estimator)
    opts = spec.resolve(hinted_options(spec.defaults, options, hints))
    if int(report_every) < 1:
        raise BadOptionError(f"report_every must be at least 1, got {report_every!r}")
    dev = resolve_device(device)
    yield Progress(0, 1, time.perf_counter() - start, stage=Stage.PREPARE, message="checking the image")
    frames = image if isinstance(image, Frames) else prepare_image(
        image, rgb=rgb, channel_axis=channel_axis, stack_axis=stack_axis)
    with torch_threads(threads), reproducible(dev):
        result: KernelEstimate = yield from spec.fn(frames.data, scale=scale, device=dev, seed=int(seed),
                                                    report_every=int(report_every), **opts)
    result.scale = scale
    result.method = spec.name
    result.options = {**opts, **result.options}
    result.elapsed = time.perf_counter() - start
    if result.dmap is not None and not frames.stacked:
        result.dmap = result.dmap[0]
    if frames.sampled is not None and not isinstance(image, Frames):
        total = int(image.shape[stack_axis])
        result.options["slices_read"] = f"{len(frames.sampled)} of {total}"
        if len(frames.sampled) < total:
            result.dmap = None  # a D-map of some slices would not line up with the stack
    return result


def estimate_kernel(image: np.ndarray, scale: int = 2, *, callback: ProgressCallback | None = None,
                    cancel: threading.Event | None = None, **kwargs: Any) -> KernelEstimate:
    """Estimate the SR kernel of one image (or of a stack sharing one kernel).

    ``image``: 2-D grayscale, ``(H, W, 3|4)`` RGB(A), or nD with
    ``channel_axis=`` / ``stack_axis=``; uint8, uint16 or float.
    ``estimator``: a name from :data:`~napari_kernelgan.registry.ESTIMATORS`
    (:data:`DEFAULT_ESTIMATOR`, ``auto``, by default); its options as keywords
    (``members=`` for ``auto``, ``preset=``, ``iterations=``... for ``kernelgan``),
    checked against the ranges it declares. ``threads``: PyTorch CPU threads
    (default: the free cores). ``device``: ``auto`` (CUDA, then MPS, then CPU) or a
    device name; the result's ``.device`` says where the estimator ran.
    Returns the ×2 kernel (``.kernel``), ``.kernel_x4`` (analytic), ``.confidence``
    (for estimators that give one), the discriminator map over the whole input
    (``.dmap``, for estimators that have one), loss history, timing, device and seed.

    The microscope's optics (:data:`~napari_kernelgan.optics_hints.HINT_KEYS`: ``na``, ``wavelength_um``,
    ``n_immersion``, ``modality``, ``pinhole_au``, ``pixel_um``) reach only an estimator that declares them,
    whether given as options or as ``hints`` (a mapping, e.g. what
    :func:`~napari_kernelgan.optics_hints.optics_hints` reads from the image's file); an option given
    explicitly wins over the same hint.

    >>> est = estimate_kernel(image, scale=2, seed=0)   # doctest: +SKIP
    >>> est.kernel.shape                                  # doctest: +SKIP
    (13, 13)
    """
    return drive(iter_estimate_kernel(image, scale, **kwargs), callback, cancel)


def _resolve_field(field: KernelField, scale: int) -> np.ndarray:
    """The kernel of a uniform field, else the field's global kernel, for ``scale`` (what the result
    records; the regions of a varying field use their own)."""
    if scale not in ESTIMATE_SCALES:
        raise BadOptionError(f"a kernel map serves scales {ESTIMATE_SCALES}, not ×{scale}")
    return validate_kernel(kernel_for_scale(field.kernels[0, 0] if field.is_uniform else field.global_kernel, scale))


def _resolve_kernel(kernel: np.ndarray | KernelEstimate, scale: int) -> np.ndarray:
    if isinstance(kernel, KernelEstimate):
        if scale not in ESTIMATE_SCALES:
            raise BadOptionError(f"a kernel estimate serves scales {ESTIMATE_SCALES}; for ×{scale} give a "
                                 f"×{scale} kernel")
        kernel = kernel.kernel_for(scale)
    return validate_kernel(kernel)


def _iter_stream(image: Any, sr_frames: Callable[[Frames], Generator[Progress, None, tuple[np.ndarray, dict]]],
                 layout: dict[str, Any], output_dtype: Any,
                 start: float) -> Generator[Progress, None, tuple[np.ndarray, dict[str, Any]]]:
    """SR of a lazy stack slice by slice into one output (:func:`~.slices.output_array`); only one input slice
    is in memory at a time. The slices share the stack's sampled intensity range, widened where a slice goes
    beyond it (so nothing is clipped and a blank slice is no error)."""
    ax = int(layout["stack_axis"]) % len(image.shape)
    n = int(image.shape[ax])
    # The sampled slices are read for the range (not for uint8, whose range is its dtype's) and again below.
    stream = SliceStream(image, [ax], sample=sample_indices(n))

    def work(position: int, index: tuple[int, ...],
             frame: np.ndarray) -> Generator[Progress, None, tuple[np.ndarray, dict[str, Any]]]:
        frames = prepare_image(np.expand_dims(frame, ax), **layout, intensity=stream.widened(frame))
        res, rec = yield from sr_frames(frames)
        return output_image(res, frames, output_dtype), rec

    out, record, fallbacks = None, {}, []
    for item in iter_slices(stream, work, start=start):
        if isinstance(item, Progress):
            yield item
            continue
        i, (sr, rec) = item.position, item.result
        if out is None:
            out = output_array(sr.shape[:ax] + (n,) + sr.shape[ax + 1:], sr.dtype)
            record = rec
        out[(slice(None),) * ax + (slice(i, i + 1),)] = sr
        if rec.get("fallback"):
            fallbacks.append((i, rec))
    if fallbacks:
        first = fallbacks[0][1]
        record = dict(record, fallback=first["fallback"],
                      fallback_reason=f"{len(fallbacks)} of {n} slices (first: slice {fallbacks[0][0]}): "
                                      f"{first.get('fallback_reason', 'the result was unsafe')}")
    return out, record


def noise_option(spec: Any) -> str | None:
    """The name of ``spec``'s noise option (``sigma``, ``noise_level``), or ``None``."""
    from .sr._safety import NOISE_KEYS

    return next((k for k in NOISE_KEYS if k in spec.defaults), None)


def parse_noise_option(key: str | None, options: dict[str, Any]) -> float | str | None:
    """Take the noise option out of ``options``: ``None`` (not given), ``"auto"`` (measured) or a number in
    the image's units (checked here, since the method's declared range is in its [0, 255] convention)."""
    if key is None or key not in options:
        return None
    value = options.pop(key)
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None if value is None else "auto"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadOptionError(f"{key} must be 'auto' or a noise level in the image's units (a number); "
                             f"got {value!r}") from None
    if not np.isfinite(number) or number < 0:
        raise BadOptionError(f"{key} must be 'auto' or a noise level of 0 or more in the image's units; "
                             f"got {value!r}")
    return number


def unit_noise_scale(frames: Frames) -> float:
    """Factor from a noise level in the image's own units (ADU for uint16, the values for float) to the SR
    methods' convention, [0, 255] for the image's mapped range (uint8: 1)."""
    return 255.0 / (frames.intensity.high - frames.intensity.low)


def output_image(out: np.ndarray, frames: Frames, dtype: Any = None) -> np.ndarray:
    """SR frames in the input's [0, 1] mapping → the output image, with room above the input's range.

    Restored point sources peak above the blurred input's maximum, so the values are limited only by
    the output dtype (integers: its range; :meth:`~.imaging.Intensity.from_unit` clips) and, for a
    float image, by the range its values imply: [0, 1] for an image within [0, 1] (the usual
    normalised convention), ≥ 0 for any other non-negative image (counts, intensities), nothing for
    one with negative values.
    """
    kind = np.dtype(frames.intensity.dtype if dtype is None else dtype)
    low, high = frames.intensity.low, frames.intensity.high
    if low == 0.0 and high == 1.0:
        out = np.clip(out, 0.0, 1.0)  # an image within [0, 1] (float, or integer 0/1) is mapped as it is, kept there
    img = frames_to_image(out, frames, dtype)  # integers: rounded and clipped to the dtype by the conversion
    return img if np.issubdtype(kind, np.integer) else keep_in_range(img, low, high)


def iter_super_resolve(image: np.ndarray, kernel: np.ndarray | KernelEstimate | KernelField | None, scale: int, *,
                       sr_method: str = DEFAULT_SR_METHOD, device: str = "auto", seed: int = 0,
                       threads: int | None = None, rgb: bool | None = None, channel_axis: int | None = None,
                       stack_axis: int | None = None, output_dtype: Any = None, method: str | None = None,
                       safe: bool | None = None, confidence: float | None = None, intensity: Intensity | None = None,
                       **options: Any) -> Generator[Progress, None, SRResult]:
    """Generator form of :func:`super_resolve`. ``intensity``: map the image's values to the engine's [0, 1]
    with it instead of the image's own range (a slice of a stack on the stack's scale, as batch work does)."""
    return (yield from _iter_super_resolve(image, kernel, scale, sr_method=_renamed("sr_method", sr_method, method),
                                           device=device, seed=seed, threads=threads, rgb=rgb,
                                           channel_axis=channel_axis, stack_axis=stack_axis,
                                           output_dtype=output_dtype, safe=safe, confidence=confidence,
                                           options=options, intensity=intensity))


def _iter_super_resolve(image: Any, kernel: np.ndarray | KernelEstimate | KernelField | None, scale: int, *,
                        sr_method: str, device: str, seed: int, threads: int | None, rgb: bool | None,
                        channel_axis: int | None, stack_axis: int | None, output_dtype: Any, safe: bool | None,
                        confidence: float | None, options: dict[str, Any],
                        method_units: dict[str, Any] | None = None, intensity: Intensity | None = None,
                        ) -> Generator[Progress, None, SRResult]:
    """:func:`iter_super_resolve`; ``method_units``: options already in the method's own convention
    (the blind defaults), applied below the caller's."""
    start = time.perf_counter()
    scale = _check_scale(scale, SR_SCALES)
    spec = SR_METHODS.get(sr_method)
    if scale not in spec.scales:
        raise BadOptionError(f"SR method {spec.name!r} supports scales {spec.scales}, not {scale}")
    if safe is not None and not isinstance(safe, (bool, np.bool_)):
        raise BadOptionError(f"safe must be True, False or None (on), got {safe!r}")
    is_field = isinstance(kernel, KernelField)
    is_estimate = isinstance(kernel, KernelEstimate) or is_field
    # Every kernel gets the safeguards unless switched off: a measured PSF is trusted, not noise-free.
    use_safety = True if safe is None else bool(safe)
    options = dict(options)
    key = noise_option(spec)
    noise = parse_noise_option(key, options)
    opts = spec.resolve({**(method_units or {}), **options})
    if kernel is None and spec.uses_kernel:
        raise BadOptionError(f"SR method {spec.name!r} needs a kernel (an estimate, a PSF or a kernel file); only "
                             "methods that ignore it (bicubic) run without one")
    k = None if kernel is None else _resolve_field(kernel, scale) if is_field else _resolve_kernel(kernel, scale)
    dev = resolve_device(device)
    yield Progress(0, 1, time.perf_counter() - start, stage=Stage.PREPARE, message="checking the image")
    layout = {"rgb": rgb, "channel_axis": channel_axis, "stack_axis": stack_axis, "min_size": 8}
    given = {name for name, v in {**(method_units or {}), **options}.items() if v is not None}
    if isinstance(noise, float):
        given.add(str(key))
    if confidence is None and use_safety and not is_field:
        # A kernel given as an array (a measured PSF, a model) is trusted fully; an estimate by its confidence.
        confidence = kernel.confidence if is_estimate else 1.0

    def sr_frames(frames: Frames) -> Generator[Progress, None, tuple[np.ndarray, dict[str, Any]]]:
        """The method (by a kernel map's regions, or with the safeguards) on prepared frames."""
        if is_field and tuple(frames.data.shape[-2:]) != kernel.image_shape:
            raise BadInputError(f"the kernel map was made for an image of {kernel.image_shape[0]}×"
                                f"{kernel.image_shape[1]} pixels; this one is {frames.data.shape[-2]}×"
                                f"{frames.data.shape[-1]}")
        units = unit_noise_scale(frames)
        run_opts = dict(opts)
        if isinstance(noise, float):
            run_opts[key] = noise * units
            if run_opts[key] > 255.0:
                raise BadOptionError(f"{key}={noise:g} is more than the image's whole range "
                                     f"({frames.intensity.high - frames.intensity.low:g}): give the noise's "
                                     f"standard deviation in the image's units, or 'auto'")
        elif noise == "auto" and not use_safety and spec.uses_kernel:
            from .sr._safety import measure_noise

            run_opts[key] = measure_noise(frames.data)["noise_sigma"]
        out, rec = yield from _run_method(frames, run_opts)
        if key is not None and (key in rec or noise is not None or key in (method_units or {})):
            # reported in the image's units, so that passing it back reproduces the run
            rec = dict(rec, **{key: float(rec.get(key, run_opts[key])) / units})
        return out, rec

    def _run_method(frames: Frames, run_opts: dict[str, Any]
                    ) -> Generator[Progress, None, tuple[np.ndarray, dict[str, Any]]]:
        if is_field and not kernel.is_uniform and spec.uses_kernel:
            from .sr._field import iter_field_sr

            return (yield from iter_field_sr(spec, frames.data, kernel, scale, device=dev, seed=int(seed),
                                             options=run_opts, given=given, safe=use_safety))
        if use_safety and spec.uses_kernel:
            from .sr._safety import iter_safe_sr

            conf = float(kernel.kernel_confidence[0, 0]) if is_field and confidence is None else confidence
            return (yield from iter_safe_sr(spec, frames.data, k, scale, device=dev, seed=int(seed),
                                            options=run_opts, given=given, confidence=conf))
        return (yield from spec.fn(frames.data, k, scale, device=dev, seed=int(seed), **run_opts)), {}

    with torch_threads(threads), reproducible(dev):
        if is_lazy(image) and stack_axis is not None:
            sr, record = yield from _iter_stream(image, sr_frames, layout, output_dtype, start)
        else:
            frames = prepare_image(image, **layout, intensity=intensity)
            out, record = yield from sr_frames(frames)
            sr = output_image(out, frames, output_dtype)
    shown = {name: v for name, v in opts.items() if name not in spec.hidden}
    shown.update({name: v for name, v in record.items() if name not in spec.hidden})
    # A method run without a kernel assumed no blur: its record holds the identity.
    used = np.ones((1, 1)) if k is None else k
    return SRResult(image=sr, scale=scale, method=spec.name, kernel=used, elapsed=time.perf_counter() - start,
                    device=str(dev), options=dict(shown, seed=int(seed)))


def super_resolve(image: np.ndarray, kernel: np.ndarray | KernelEstimate | None, scale: int, *,
                  callback: ProgressCallback | None = None, cancel: threading.Event | None = None,
                  **kwargs: Any) -> SRResult:
    """Upscale ``image`` by ``scale`` with a non-blind SR method that knows the blur ``kernel``.

    ``kernel`` is centred, in correlation orientation (as estimated here and as
    in DIV2KRK ``.mat`` files), or a :class:`KernelEstimate`. ``sr_method``: a
    name from :data:`~napari_kernelgan.registry.SR_METHODS` (``closed-form`` by
    default); its options as keywords. The output keeps the input's layout and
    dtype. ``kernel`` may be ``None`` for a method that ignores it
    (``MethodSpec.uses_kernel`` False: ``sr_method="bicubic"``); the result then
    records the identity kernel.

    ``safe`` (``None``, the default, means on, for every kernel): measure the input's
    noise (Poisson–Gaussian where shot noise dominates) and use it as the method's noise
    level unless given, regularise more as the kernel's ``confidence`` falls, refine
    photon-limited images by Richardson–Lucy, and check the output against bicubic
    interpolation, raising the noise level in steps and, as a last resort, returning
    bicubic interpolation with a :class:`~napari_kernelgan.sr._safety.UnsafeSRWarning`
    (``result.options["fallback"] == "bicubic"``, reason in
    ``result.options["fallback_reason"]``). See :mod:`napari_kernelgan.sr._safety`.
    A kernel given as an array (a measured PSF, a file, a model) is trusted fully
    (confidence 1), an estimate as far as its confidence says; ``confidence`` (in [0, 1])
    overrides either. ``safe=False`` runs the method as it is (no noise unless given).

    The noise option (``sigma`` for closed-form, ``noise_level`` for USRNet) is ``"auto"``
    (measured; the default) or the noise's standard deviation **in the image's own units**:
    ADU (grey levels) for an integer image, the image's values for a float one; it is
    converted to the method's [0, 255] convention for the image's range, and
    ``result.options`` reports it in the image's units again. ``"auto"`` with
    ``safe=False`` measures the noise and runs the method with it, nothing else.

    The output keeps room above the input's range (restored point sources peak above the
    blurred maximum): integer images are limited by their dtype only, float images to
    [0, 1] when their values lie in [0, 1], else to ≥ 0 when they hold no negative value.

    ``kernel`` may also be a :class:`~napari_kernelgan.fields.KernelField` (from
    :func:`~napari_kernelgan.kernel_map.estimate_kernel_map`, made for this image): every region is
    then super-resolved with its own kernel and the regions blended without seams
    (:mod:`napari_kernelgan.sr._field`; safe by default, each region by its kernel's confidence).
    """
    return drive(iter_super_resolve(image, kernel, scale, **kwargs), callback, cancel)


SHARED_KEYS = ("device", "seed", "threads", "rgb", "channel_axis", "stack_axis")


def iter_blind_super_resolve(image: np.ndarray, scale: int, *, estimator: str = DEFAULT_ESTIMATOR,
                             sr_method: str = DEFAULT_SR_METHOD, estimate_options: dict[str, Any] | None = None,
                             method: str | None = None, safe: bool = True,
                             **sr_options: Any) -> Generator[Progress, None, SRResult]:
    """Estimate the kernel, then super-resolve with it (generator form).

    With ``safe`` (the default) the SR runs with the safeguards of
    :func:`super_resolve` for an estimate (measured noise, a noise floor from
    the estimate's confidence that equals the method's ``blind_defaults`` at
    neutral confidence, the check against bicubic). With ``safe=False``, SR
    options not given default to the SR method's ``blind_defaults``.
    """
    sr_method = _renamed("sr_method", sr_method, method)
    # The blind defaults are in the method's own convention ([0, 255] noise levels), not the image's units.
    method_units = {} if safe else blind_defaults(sr_method)
    shared = {k: sr_options[k] for k in SHARED_KEYS if k in sr_options}
    estimate = yield from iter_estimate_kernel(image, scale, estimator=estimator,
                                               **{**shared, **(estimate_options or {})})
    run = {k: sr_options.pop(k) for k in ("device", "seed", "threads", "rgb", "channel_axis", "stack_axis",
                                          "output_dtype", "confidence") if k in sr_options}
    result = yield from _iter_super_resolve(
        image, estimate, scale, sr_method=sr_method, device=run.get("device", "auto"), seed=run.get("seed", 0),
        threads=run.get("threads"), rgb=run.get("rgb"), channel_axis=run.get("channel_axis"),
        stack_axis=run.get("stack_axis"), output_dtype=run.get("output_dtype"), safe=bool(safe),
        confidence=run.get("confidence"), options=sr_options, method_units=method_units)
    result.estimate = estimate
    return result


def blind_super_resolve(image: np.ndarray, scale: int, *, callback: ProgressCallback | None = None,
                        cancel: threading.Event | None = None, **kwargs: Any) -> SRResult:
    """:func:`estimate_kernel` then :func:`super_resolve` (safe by default); the estimate is on
    ``result.estimate``."""
    return drive(iter_blind_super_resolve(image, scale, **kwargs), callback, cancel)


def blind_defaults(sr_method: str) -> dict[str, Any]:
    """Options ``sr_method`` gets by default when its kernel is an estimate (see ``blind_super_resolve``)."""
    return dict(SR_METHODS.get(sr_method).blind_defaults)

