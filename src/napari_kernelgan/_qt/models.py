"""The Qt-free part of the dock widgets.

Run states and records, the worker-side driver that throttles progress
reports, status text, input selection (slice in view or whole stack), the
kernel for a scale, error messages, the option form of a method spec and the
software-rendering check. Nothing here imports Qt, napari, magicgui or torch,
so ``tests/_qt/test_models.py`` runs it without a display.
"""
from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import numpy as np

from ..errors import BadInputError, BadOptionError, Cancelled, MethodUnavailableError, user_message
from ..imaging import is_lazy
from ..layers import image_data, layer_role, leading_shape
from ..optics_hints import FIELD_LABELS
from ..options import parse_value
from ..physics.conventions import analytic_x4, validate_kernel
from ..registry import MethodSpec, Registry
from ..types import EtaTracker, Progress
from ..vocabulary import ESTIMATE_SCALES, LayerRole, Stage

__all__ = [
    "RunState", "Report", "Outcome", "RunRecord", "run_job", "merge_reports", "format_seconds", "progress_text",
    "slice_in_view", "input_array", "FrameStack", "read_then", "input_notes", "where_text", "kernel_is_estimate",
    "kernels_for",
    "latest_kernels", "is_refusal", "error_line", "parse_threads", "FormField", "field_label", "form_fields",
    "form_values", "read_field",
    "option_values", "empty_placeholder", "unavailable_text", "software_rendering", "use_activity_progress",
    "LATEST", "MAX_SEED", "REPORT_INTERVAL", "ACTIVITY_ENV",
]

LATEST = "latest estimate for this image"
MAX_SEED = 2 ** 31 - 1
REPORT_INTERVAL = 0.2
"""Seconds between progress reports handed to the GUI; a job may report every millisecond."""

Job = Callable[[], Generator[Progress, None, Any]]


# --------------------------------------------------------------------------- runs

class RunState(str, Enum):
    """Where a task runner stands."""

    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Report:
    """A progress report as the GUI gets it: the job's ``Progress``, the seconds left (NaN: not known yet) and
    the bar's fraction in proportion to time (:attr:`~napari_kernelgan.types.EtaTracker.fraction`; NaN: the
    report's own)."""

    progress: Progress
    eta: float = math.nan
    fraction: float = math.nan

    @property
    def bar(self) -> float:
        """The fraction the progress bar shows, in [0, 1]."""
        value = self.progress.fraction if math.isnan(self.fraction) else self.fraction
        return min(1.0, max(0.0, value))


@dataclass(frozen=True)
class Outcome:
    """How a job ended, as the worker returns it (errors are values: see :func:`run_job`)."""

    state: RunState
    value: Any = None
    error: BaseException | None = None


@dataclass
class RunRecord:
    """One run: what it is, when it started and ended, its last report and its outcome."""

    description: str
    state: RunState = RunState.IDLE
    started: float = 0.0
    ended: float | None = None
    value: Any = None
    error: BaseException | None = None
    last: Report | None = None
    reports: int = 0
    cancel_requested: bool = False
    message: str = ""  # what the user was told about a failure

    def elapsed(self, now: float | None = None) -> float:
        end = self.ended if self.ended is not None else (time.perf_counter() if now is None else now)
        return max(0.0, end - self.started)


def run_job(job: Job, cancel: threading.Event, interval: float = REPORT_INTERVAL,
            clock: Callable[[], float] = time.perf_counter) -> Generator[Report, None, Outcome]:
    """Drive ``job()`` in the worker thread; yield throttled :class:`Report`\\ s and return an :class:`Outcome`.

    Every report of the job is seen here: ``cancel`` stops the job at the next
    one, and the ETA tracker (the current stage's recent rate) times each and
    sets the bar's fraction.
    The GUI gets each stage's first report and then at most one per
    ``interval``, carrying the latest kernel seen, so a flood of reports never
    queues up in the GUI. Errors are returned, not raised: napari's worker
    would turn them into a warning or a traceback dump.
    """
    eta = EtaTracker(start=clock())
    last_sent, last_stage = -math.inf, None
    kernel = None
    gen = None
    try:
        gen = job()
        while True:
            if cancel.is_set():
                return Outcome(RunState.CANCELLED)
            try:
                p = next(gen)
            except StopIteration as stop:
                return Outcome(RunState.DONE, value=stop.value)
            now = clock()
            left = eta(p, now)
            if p.kernel is not None:
                kernel = p.kernel
            if str(p.stage) != last_stage or now - last_sent >= interval:
                if p.kernel is None and kernel is not None:
                    p = replace(p, kernel=kernel)
                kernel = None
                last_sent, last_stage = now, str(p.stage)
                yield Report(p, left, eta.fraction)
    except Cancelled:
        return Outcome(RunState.CANCELLED)
    except Exception as exc:  # every failure reaches the GUI as a value
        return Outcome(RunState.FAILED, error=exc)
    finally:
        if gen is not None:
            gen.close()  # release what a cancelled job holds, in its own thread


def merge_reports(older: Report | None, newer: Report) -> Report:
    """``newer``, keeping ``older``'s kernel when ``newer`` has none (reports coalesced in the GUI)."""
    if older is not None and newer.progress.kernel is None and older.progress.kernel is not None:
        return Report(replace(newer.progress, kernel=older.progress.kernel), newer.eta, newer.fraction)
    return newer


def format_seconds(seconds: float) -> str:
    """``'0.4 s'``, ``'42 s'`` or ``'3 min 05 s'``; ``'…'`` when not yet known."""
    if seconds is None or not math.isfinite(seconds):
        return "…"
    if seconds < 0.95:
        return f"{max(0.0, seconds):.1f} s"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


_UNCOUNTED = {str(Stage.PREPARE), str(Stage.ANCHOR), str(Stage.DMAP), str(Stage.DONE)}


def progress_text(report: Report, elapsed: float) -> str:
    """``'estimate 40/100: run 1/1, step 40 · 5 s elapsed · ETA 8 s'``: stage, message, time, ETA."""
    p = report.progress
    stage = str(p.stage)
    text = stage if stage in _UNCOUNTED or p.total <= 0 else f"{stage} {p.iteration}/{p.total}"
    if p.message:
        text += f": {p.message}"
    eta = "finishing" if stage == str(Stage.DMAP) or (p.total > 0 and p.iteration >= p.total
                                                       and stage not in _UNCOUNTED) else format_seconds(report.eta)
    return f"{text} · {format_seconds(elapsed)} elapsed · ETA {eta}"


# --------------------------------------------------------------------------- inputs

def slice_in_view(viewer: Any, layer: Any) -> tuple[int, ...]:
    """Indices of the layer's leading axes at the viewer's current position."""
    lead = leading_shape(layer)
    pos = layer.world_to_data(viewer.dims.point)
    return tuple(int(np.clip(round(float(pos[i])), 0, n - 1)) for i, n in enumerate(lead))


class FrameStack:
    """The leading axes of a lazy array seen as one stack axis, without reading it: a frame is read from
    the array only when indexed (``stack[i]``). For a Zarr array, which cannot reshape lazily."""

    def __init__(self, data: Any, lead: int) -> None:
        self.data = data
        self.lead = tuple(int(n) for n in data.shape[:lead])
        self.shape = (math.prod(self.lead), *(int(n) for n in data.shape[lead:]))
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> Any:
        key = key if isinstance(key, tuple) else (key,)
        if not isinstance(key[0], (int, np.integer)):
            raise TypeError("a FrameStack is indexed by frame number first")
        return self.data[tuple(int(i) for i in np.unravel_index(int(key[0]), self.lead)) + key[1:]]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.asarray(self.data, dtype=dtype).reshape(self.shape)


def input_array(layer: Any, slice_index: tuple[int, ...] | None, whole_stack: bool) -> Any:
    """The array handed to the API: the slice (only it is read), the stack with its leading axes as one
    (``(N, H, W[, C])``; a lazy stack stays lazy, for the API reads only the frames it needs), or the image."""
    data = image_data(layer)
    if slice_index:
        return np.asarray(data[slice_index])
    lead = leading_shape(layer)
    if lead and whole_stack:
        if not is_lazy(data):
            arr = np.asarray(data)
            return arr.reshape((-1,) + arr.shape[len(lead):])
        if len(lead) == 1:
            return data
        # Dask arrays and memory maps reshape without reading; others are indexed frame by frame.
        return data.reshape((-1,) + tuple(data.shape[len(lead):])) if hasattr(data, "reshape") \
            else FrameStack(data, len(lead))
    return np.asarray(data)


def read_then(layer: Any, slice_index: tuple[int, ...] | None, whole_stack: bool,
              work: Callable[[np.ndarray], Generator[Progress, None, Any]]) -> Job:
    """A job that reads the input (:func:`input_array`) and then runs ``work(array)``.

    Reading happens in the worker too, so lazy (dask, zarr) data never blocks the GUI; of a lazy layer only
    the slice in view, or the frames the API samples or streams, are read.
    """
    def job() -> Generator[Progress, None, Any]:
        yield Progress(0, 1, 0.0, stage=Stage.PREPARE, message="reading the image")
        return (yield from work(input_array(layer, slice_index, whole_stack)))

    return job


def input_notes(layer: Any) -> list[str]:
    """What the user should know about how the input is read (an RGBA layer loses its alpha channel)."""
    data = image_data(layer)
    if getattr(layer, "rgb", False) and data.shape[-1] == 4:
        return ["alpha channel dropped"]
    return []


def where_text(slice_index: tuple[int, ...] | None, whole_stack: bool) -> str:
    """``' (slice 5)'``, ``' (whole stack)'`` or ``''``."""
    if slice_index:
        return f" (slice {', '.join(map(str, slice_index))})"
    return " (whole stack)" if whole_stack else ""


# --------------------------------------------------------------------------- kernels

def kernel_is_estimate(source: Any) -> bool:
    """Whether a kernel source is an estimate (the latest one, or an estimated kernel layer), not a measurement."""
    if isinstance(source, str):
        return source == LATEST
    return source is not None and layer_role(source) == LayerRole.KERNEL


def kernels_for(kernel: Any, kernel_scale: int | None, scale: int, *, name: str) -> dict[int, np.ndarray]:
    """The kernels a layer ``name`` gives SR at ``scale``: ``{scale: k}``, plus ``{2: k2}`` when a ×4
    kernel is derived from a ×2 one. Any 2-D, odd-sized, non-negative image will do (normalised)."""
    k = validate_kernel(np.asarray(kernel), name=f"kernel layer {name!r}", normalise=True)
    if kernel_scale in ESTIMATE_SCALES and kernel_scale != scale:
        if (kernel_scale, scale) == (2, 4):
            return {4: analytic_x4(k), 2: k}
        raise BadInputError(f"{name!r} is a ×{kernel_scale} kernel; choose a ×{scale} kernel or scale "
                            f"×{kernel_scale}")
    return {scale: k}


def latest_kernels(kernels: Mapping[int, np.ndarray], scale: int, image_name: str) -> dict[int, np.ndarray]:
    """The latest estimate's kernels (``layers.layer_kernels``) for SR at ``scale``."""
    if not kernels:
        raise BadInputError(f"there is no kernel estimate for {image_name!r} yet: run 'Estimate kernel' first "
                            "or choose a kernel layer")
    if scale not in kernels:
        raise BadInputError(f"kernel estimates are for ×2 and ×4; choose a ×{scale} kernel layer for ×{scale}")
    return {s: validate_kernel(k, name=f"the estimated ×{s} kernel of {image_name!r}", normalise=True)
            for s, k in kernels.items() if s in (scale, 2)}


# --------------------------------------------------------------------------- messages

def is_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` refuses what the user gave (an image, a file, an option that cannot be used): nothing
    went wrong, something is to be changed (a method that failed to load is not the user's input)."""
    return isinstance(exc, (BadInputError, BadOptionError)) and not isinstance(exc, MethodUnavailableError)


def error_line(exc: BaseException, what: str) -> str | None:
    """The status line of a run that ended in a user error (:func:`~napari_kernelgan.errors.user_message`):
    ``'<what> was not run: <what to change>'`` for a :func:`is_refusal`, ``'<what> failed: <reason>'`` for
    the others (missing weights, out of memory); ``None`` for a bug, which keeps its traceback."""
    message = user_message(exc, "gui")
    if message is None:
        return None
    return f"{what} was not run: {message}" if is_refusal(exc) else f"{what} failed: {message}"


def parse_threads(text: Any) -> int | None:
    """The *Threads* field: empty → ``None`` (automatic), else a positive whole number."""
    value = parse_value(text)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadOptionError(f"threads must be a positive whole number, or empty for automatic; got {text!r}")
    return value


def unavailable_text(registry: Registry) -> str:
    """``'Unavailable: zssr (ImportError: ...)'`` for methods whose module failed to load, or ``''``."""
    missing = registry.unavailable
    return ("Unavailable: " + "; ".join(f"{k} ({v})" for k, v in missing.items())) if missing else ""


# --------------------------------------------------------------------------- option forms

@dataclass(frozen=True)
class FormField:
    """One option of a method as a form shows it.

    ``kind``: ``'choice'``, ``'bool'``, ``'int'``, ``'float'`` or ``'text'``; ``choices`` are
    (label, value) pairs; an option whose default is ``None`` is an empty text
    field (or a choice) whose ``placeholder`` says what decides instead.
    """

    name: str
    label: str
    kind: str
    default: Any
    choices: tuple[tuple[str, Any], ...] = ()
    tooltip: str = ""
    placeholder: str = ""
    advanced: bool = False


def empty_placeholder(spec: MethodSpec, name: str) -> str:
    """What an empty field means: ``'preset default'``, the help's ``'unset: …'`` clause, or ``'method default'``."""
    found = re.search(r"\bunset\s*:\s*([^;]+)", spec.help.get(name, ""), re.IGNORECASE)
    said = found.group(1).split(" (")[0].strip().rstrip(".") if found else ""
    if spec.presets and name != "preset" and (not said or "preset" in said):
        return "preset default"
    return said if said and len(said) <= 32 else "method default"


def field_label(name: str) -> str:
    """An option's label: the *Optics* group's for the optics (``"Pixel size (µm)"``), else its name in
    words, a unit suffix as the unit (``psf_fwhm_um`` → ``"psf fwhm (µm)"``)."""
    if name in FIELD_LABELS:
        return FIELD_LABELS[name]
    for suffix, unit in (("_um", "µm"), ("_nm", "nm"), ("_au", "AU")):
        if name.endswith(suffix):
            return f"{name[:-len(suffix)].replace('_', ' ')} ({unit})"
    return name.replace("_", " ")


def form_fields(spec: MethodSpec) -> list[FormField]:
    """The form of ``spec``: one field per ``spec.form_options``, ``spec.main`` first, the rest advanced."""
    options = spec.form_options
    order = [n for n in spec.main if n in options] + [n for n in options if n not in spec.main]
    out = []
    for name in order:
        default = options[name]
        placeholder = empty_placeholder(spec, name) if default is None else ""
        tooltip = spec.help.get(name, "")
        if default is None:
            tooltip = f"{tooltip}\nEmpty: {placeholder}." if tooltip else f"Empty: {placeholder}."
        choices: tuple[tuple[str, Any], ...] = ()
        if spec.choices.get(name):
            values = list(spec.choices[name])
            if default is None and None not in values:
                values.insert(0, None)
            choices = tuple(((placeholder or "default") if v is None else str(v), v) for v in values)
            kind = "choice"
        elif isinstance(default, bool):
            kind = "bool"
        elif isinstance(default, int):
            kind = "int"
        elif isinstance(default, float):
            kind = "float"
        else:
            kind = "text"
        out.append(FormField(name, field_label(name), kind, default, choices, tooltip, placeholder,
                             advanced=name not in spec.main))
    return out


def form_values(spec: MethodSpec) -> dict[str, Any]:
    """The values a form of ``spec`` starts from: its defaults."""
    return dict(spec.form_options)


def read_field(field: FormField, raw: Any) -> Any:
    """A field's value as an option: text through :func:`~napari_kernelgan.options.parse_value`
    (empty → ``None``), other widgets as they are."""
    if field.kind == "text":
        return parse_value(raw if isinstance(raw, str) else str(raw))
    return raw


def option_values(fields: list[FormField], raw: Mapping[str, Any]) -> dict[str, Any]:
    """The method options a form holds; ``None`` (the method decides) is left out."""
    out = {}
    for field in fields:
        if field.name in raw:
            value = read_field(field, raw[field.name])
            if value is not None:
                out[field.name] = value
    return out


# --------------------------------------------------------------------------- rendering

SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "software", "swiftshader")
ACTIVITY_ENV = "NAPARI_KERNELGAN_ACTIVITY_PROGRESS"
"""``1``: always show runs in napari's activity dock; ``0``: never; unset: only with hardware rendering."""


def software_rendering(renderer: str | None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether OpenGL is rendered in software: a Mesa/Swift software renderer string, or the
    environment asking for it (``LIBGL_ALWAYS_SOFTWARE=1``, ``QT_QUICK_BACKEND=software``)."""
    env = os.environ if environ is None else environ
    if env.get("LIBGL_ALWAYS_SOFTWARE", "").strip().lower() in ("1", "true", "yes"):
        return True
    if env.get("QT_QUICK_BACKEND", "").strip().lower() == "software":
        return True
    name = (renderer or "").lower()
    return any(s in name for s in SOFTWARE_RENDERERS)


def use_activity_progress(renderer: str | None, environ: Mapping[str, str] | None = None) -> bool:
    """Whether to show a run in napari's activity dock too.

    Its animated spinner makes the whole window recompose; with software
    OpenGL that took the CPU the worker needed (docs/user_guide.md has the
    figures). So: only with a known hardware renderer, unless :data:`ACTIVITY_ENV` says otherwise.
    """
    env = os.environ if environ is None else environ
    forced = env.get(ACTIVITY_ENV, "").strip().lower()
    if forced in ("1", "true", "yes"):
        return True
    if forced in ("0", "false", "no"):
        return False
    return bool(renderer) and not software_rendering(renderer, env)
