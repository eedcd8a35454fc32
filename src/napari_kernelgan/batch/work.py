"""The work on one input, unit by unit: an input seen as slices (:class:`InputStack`), the unit a kernel is
made for (:class:`Unit`: a slice, a channel, both or neither), and estimating and super-resolving one."""
from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BadInputError, Cancelled, KernelGANError, reworded
from ..imaging import MIN_SIZE
from ..optics_hints import HINT_KEYS, common_hints, merge_hints, optics_hints
from ..slices import SliceStream
from ..stacks import CHANNEL_AXES, ImageSource, channel_index

if TYPE_CHECKING:
    import threading

    from ..types import KernelEstimate, Progress, SRResult
    from .config import BatchConfig

__all__ = ["Unit", "Hooks", "InputStack", "InputWork", "known_kernel", "estimate_stack", "estimate_unit",
           "super_resolve_unit", "unit_hints"]


@dataclass(frozen=True)
class Unit:
    """What one kernel is for: a slice of a stack (its label, ``z3``; ``""``: every slice) and a channel
    (``None``: every channel)."""

    slice: str = ""
    channel: int | None = None

    def name(self, sep: str = " ") -> str:
        """``z3 c1``, ``z3``, ``c1`` or ``""``: how files and messages name the unit."""
        return sep.join(part for part in (self.slice, "" if self.channel is None else f"c{self.channel}") if part)


@dataclass
class Hooks:
    """What a caller follows a run by: ``callback`` gets the estimators' and SR methods' progress, ``cancel``
    stops the run at the next report or between slices and inputs (raising :class:`~..errors.Cancelled`)."""

    callback: Callable[[Progress], Any] | None = None
    cancel: threading.Event | None = None

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled by the caller")


class InputStack:
    """An opened input seen as slices: one ``(C?, Y, X)`` frame per index of its stack axes, in file order
    (:class:`~..slices.SliceStream`), on the whole stack's intensity scale."""

    def __init__(self, src: ImageSource) -> None:
        axes = src.meta.axes
        self.src = src
        self.channel = channel_index(axes)
        self.stack_axes = [i for i, a in enumerate(axes) if a not in CHANNEL_AXES + "YX"]
        h, w = src.data.shape[axes.index("Y")], src.data.shape[axes.index("X")]
        if min(h, w) < MIN_SIZE:  # before the range: a tiny image is refused for its size, whatever it holds
            raise BadInputError(f"the image is {h}×{w} pixels; at least {MIN_SIZE}×{MIN_SIZE} is needed")
        order = [*([] if self.channel is None else [self.channel]), axes.index("Y"), axes.index("X")]
        self.stream = SliceStream(src.data, self.stack_axes, order)
        self.indices = self.stream.indices
        self.n_channels = 1 if self.channel is None else int(src.data.shape[self.channel])
        self.intensity = self.stream.intensity

    def label(self, index: tuple[int, ...]) -> str:
        axes = self.src.meta.axes
        return "_".join(f"{axes[a].lower()}{i}" for a, i in zip(self.stack_axes, index))

    def unit(self, index: tuple[int, ...]) -> np.ndarray:
        """The frame at ``index`` in [0, 1] on the whole stack's scale (float32)."""
        return self.stream.unit(index)

    def file_hints(self, channel: int | None) -> tuple[dict[str, Any], list[str]]:
        """What the file says of the optics of ``channel`` (``None``: what all its channels say alike), and
        the notes on metadata not used (:class:`~..optics_hints.OpticsHintWarning`)."""
        import warnings

        axes = self.src.meta.axes
        # OME describes a channel per C index; RGB samples (S) are one channel of the metadata.
        per_c = self.channel is not None and axes[self.channel] == "C"
        wanted = [0] if not per_c else list(range(self.n_channels)) if channel is None else [channel]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                found = [optics_hints(self.src.path, channel=c) for c in wanted]
            except BadInputError as exc:  # metadata that disagree with the pixels: no hints, said once
                warnings.warn(f"{self.src.path.name}: optics metadata not used ({exc})", UserWarning, stacklevel=1)
                found = [dict.fromkeys(HINT_KEYS)]
        notes = list(dict.fromkeys(str(w.message) for w in caught))
        return (found[0] if len(found) == 1 else common_hints(found)), notes

    def channels(self, per_channel: bool) -> list[int | None]:
        """The channels that get their own kernel: each one with ``per_channel`` where there are channels,
        else one kernel for all of them (``[None]``)."""
        return list(range(self.n_channels)) if per_channel and self.channel is not None else [None]


def _api_kwargs(cfg: BatchConfig, stack: InputStack, stacked: bool, hooks: Hooks,
                one_channel: bool = False) -> dict[str, Any]:
    channel = None if stack.channel is None or one_channel else (1 if stacked else 0)
    return {"device": cfg.device, "seed": cfg.seed, "threads": cfg.threads, "channel_axis": channel,
            "stack_axis": 0 if stacked else None, "callback": hooks.callback, "cancel": hooks.cancel}


def unit_hints(cfg: BatchConfig, stack: InputStack, channel: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The optics hints of one unit's kernel (the values for the estimator) and their record for the files
    written: ``{KEY: {"value", "source" ("file" or "given"), "used"}, "notes": [...]}``, ``used`` when the
    estimator declares the option and no explicit option of it overrides the hint."""
    from ..registry import ESTIMATORS

    file, notes = stack.file_hints(channel) if cfg.file_hints else ({}, [])
    values, sources = merge_hints(file, cfg.hints)
    declared = ESTIMATORS.get(cfg.estimator).defaults
    explicit = {k for k, v in cfg.estimator_options.items() if v is not None}
    record: dict[str, Any] = {k: {"value": v, "source": sources[k], "used": k in declared and k not in explicit}
                              for k, v in values.items()}
    record["notes"] = notes
    return values, record


def known_kernel(cfg: BatchConfig) -> Any:
    """The kernel (array) or kernel map (:class:`~..fields.KernelField`, from ``.npz``) of ``cfg.kernel``."""
    if cfg.kernel.suffix.lower() == ".npz":
        from ..fields import KernelField

        return KernelField.load(cfg.kernel)
    from ..io import read_kernel

    return read_kernel(cfg.kernel)


def estimate_stack(cfg: BatchConfig, stack: InputStack, hooks: Hooks, channel: int | None = None,
                   hints: dict[str, Any] | None = None) -> tuple[KernelEstimate, Any]:
    """One kernel for the whole input, or for one ``channel`` of it (from the frames imaging.sample_indices
    picks), and its kernel map; ``hints``: the optics hints (values) for the estimator."""
    from ..api import estimate_kernel

    stacked = len(stack.indices) > 1

    def unit(index: tuple[int, ...]) -> np.ndarray:
        frame = stack.unit(index)
        return frame if channel is None else frame[channel]

    data = np.stack([unit(i) for i in stack.stream.sample]) if stacked else unit(stack.indices[0])
    kw = _api_kwargs(cfg, stack, stacked, hooks, one_channel=channel is not None)
    est = estimate_kernel(data, cfg.scale, estimator=cfg.estimator, hints=hints, **kw, **cfg.estimator_options)
    field = None
    if cfg.kernel_map:
        from ..kernel_map import estimate_kernel_map

        field = estimate_kernel_map(data, cfg.scale, estimator=cfg.estimator, tile=cfg.tile, overlap=cfg.overlap,
                                    hints=hints, **kw, **cfg.estimator_options)
    return est, field


def estimate_unit(cfg: BatchConfig, stack: InputStack, unit: Unit, frame: np.ndarray, hooks: Hooks,
                  hints: dict[str, Any] | None = None) -> KernelEstimate:
    """The kernel of one slice's ``frame`` (in [0, 1], all its channels), or of its ``unit.channel``; an
    error names the unit."""
    from ..api import estimate_kernel

    try:
        return estimate_kernel(frame if unit.channel is None else frame[unit.channel], cfg.scale,
                               estimator=cfg.estimator, hints=hints,
                               **_api_kwargs(cfg, stack, False, hooks, one_channel=unit.channel is not None),
                               **cfg.estimator_options)
    except KernelGANError as exc:
        where = unit.name()
        if not where:
            raise
        raise reworded(exc, f"{where}: ") from exc


def super_resolve_unit(cfg: BatchConfig, stack: InputStack, frame: np.ndarray, kernel: Any, unit: Unit,
                       hooks: Hooks) -> SRResult:
    """One slice ``frame`` as read (only ``unit.channel`` of it when that is set) super-resolved with ``kernel``
    on the stack's intensity scale, in the input's dtype (a noise level given in the image's units means
    what it says, and the output keeps the dtype's room above the input's range)."""
    from ..api import super_resolve

    return super_resolve(frame if unit.channel is None else frame[unit.channel], kernel, cfg.scale,
                         sr_method=cfg.sr_method, intensity=stack.intensity,
                         **_api_kwargs(cfg, stack, False, hooks, one_channel=unit.channel is not None),
                         **cfg.sr_options)


class InputWork:
    """The work on one opened input: its kernels by :class:`Unit` (estimated per stack up front, per slice
    on first use, or the known one), the time of each unit and its slices super-resolved."""

    def __init__(self, cfg: BatchConfig, stack: InputStack, hooks: Hooks) -> None:
        self.cfg, self.stack, self.hooks = cfg, stack, hooks
        self.channels = stack.channels(cfg.per_channel)
        self.known = known_kernel(cfg) if cfg.kernel is not None else None  # nothing to write: the user's file
        self.estimates: dict[Unit, tuple[Any, Any]] = {}  # (estimate, kernel map), in the order they are made
        self.seconds: dict[Unit, float] = {}
        self.sr_runs: list[dict[str, Any]] = []  # per unit super-resolved: SRResult.metadata() without the kernel
        # The optics hints of each channel's kernels (read once per channel; none for a known kernel).
        self.hints: dict[int | None, tuple[dict[str, Any], dict[str, Any]]] = {}
        if cfg.kernel is None:
            self.hints = {c: unit_hints(cfg, stack, c) for c in self.channels}
        if cfg.kernel is None and not cfg.per_slice:
            for c in self.channels:
                self.estimates[Unit("", c)] = estimate_stack(cfg, stack, hooks, channel=c,
                                                             hints=self.hints[c][0])

    @property
    def kernels(self) -> dict[Unit, Any]:
        """Every unit's kernel: the estimates, else the known kernel for the whole input."""
        return {unit: pair[0] for unit, pair in self.estimates.items()} or {Unit(): self.known}

    def kernel(self, index: tuple[int, ...], channel: int | None, frame: np.ndarray) -> Any:
        """The kernel of ``channel`` of the slice at ``index`` (``frame``, in [0, 1]), estimated if needed."""
        if self.cfg.kernel is not None:
            return self.known
        unit = Unit(self.stack.label(index) if self.cfg.per_slice else "", channel)
        if unit not in self.estimates:
            self.estimates[unit] = (estimate_unit(self.cfg, self.stack, unit, frame, self.hooks,
                                                  hints=self.hints[channel][0]), None)
        return self.estimates[unit][0]

    def estimate_slice(self, index: tuple[int, ...]) -> None:
        """The kernels of the slice at ``index`` (per-slice kernels, no super-resolution), each unit timed."""
        frame = None
        for c in self.channels:
            self.hooks.check()
            t0 = time.perf_counter()
            frame = self.stack.unit(index) if frame is None else frame
            self.kernel(index, c, frame)
            self.seconds[Unit(self.stack.label(index), c)] = time.perf_counter() - t0

    def super_resolve_slice(self, position: int, index: tuple[int, ...],
                            raw: np.ndarray) -> Generator[Progress, None, np.ndarray]:
        """The slice ``raw`` read at ``index`` super-resolved (C?, sY, sX), in the input's dtype, each unit
        timed: the work :func:`~..slices.iter_slices` runs (its progress goes to ``hooks.callback``)."""
        yield from ()  # a progress generator without reports of its own
        stack = self.stack
        frame = stack.intensity.to_unit(raw)
        parts = []
        for c in self.channels:
            t0 = time.perf_counter()
            kernel = self.kernel(index, c, frame)
            res = super_resolve_unit(self.cfg, stack, raw, kernel, Unit("", c), self.hooks)
            self.sr_runs.append({k: v for k, v in res.metadata().items() if k != "kernel"})
            parts.append(res.image)
            self.seconds[Unit(stack.label(index), c)] = time.perf_counter() - t0
        image = parts[0] if self.channels == [None] else np.stack(parts)
        return np.asarray(image).astype(stack.src.data.dtype, copy=False)
