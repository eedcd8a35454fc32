"""The work on one input, unit by unit: an input seen as slices (:class:`InputStack`), the unit a kernel is
made for (:class:`Unit`: a slice, a channel, both or neither), and estimating and super-resolving one."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BadInputError, Cancelled, KernelGANError, reworded
from ..imaging import MIN_SIZE
from ..slices import SliceStream
from ..stacks import CHANNEL_AXES, ImageSource, channel_index

if TYPE_CHECKING:
    import threading

    from ..types import KernelEstimate, Progress, SRResult
    from .config import BatchConfig

__all__ = ["Unit", "Hooks", "InputStack", "known_kernel", "estimate_stack", "estimate_unit", "super_resolve_unit"]


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

    def channels(self, per_channel: bool) -> list[int | None]:
        """The channels that get their own kernel: each one with ``per_channel`` where there are channels,
        else one kernel for all of them (``[None]``)."""
        return list(range(self.n_channels)) if per_channel and self.channel is not None else [None]


def _api_kwargs(cfg: BatchConfig, stack: InputStack, stacked: bool, hooks: Hooks,
                one_channel: bool = False) -> dict[str, Any]:
    channel = None if stack.channel is None or one_channel else (1 if stacked else 0)
    return {"device": cfg.device, "seed": cfg.seed, "threads": cfg.threads, "channel_axis": channel,
            "stack_axis": 0 if stacked else None, "callback": hooks.callback, "cancel": hooks.cancel}


def known_kernel(cfg: BatchConfig) -> Any:
    """The kernel (array) or kernel map (:class:`~..fields.KernelField`, from ``.npz``) of ``cfg.kernel``."""
    if cfg.kernel.suffix.lower() == ".npz":
        from ..fields import KernelField

        return KernelField.load(cfg.kernel)
    from ..io import read_kernel

    return read_kernel(cfg.kernel)


def estimate_stack(cfg: BatchConfig, stack: InputStack, hooks: Hooks,
                   channel: int | None = None) -> tuple[KernelEstimate, Any]:
    """One kernel for the whole input, or for one ``channel`` of it (from the frames imaging.sample_indices
    picks), and its kernel map."""
    from ..api import estimate_kernel

    stacked = len(stack.indices) > 1

    def unit(index: tuple[int, ...]) -> np.ndarray:
        frame = stack.unit(index)
        return frame if channel is None else frame[channel]

    data = np.stack([unit(i) for i in stack.stream.sample]) if stacked else unit(stack.indices[0])
    kw = _api_kwargs(cfg, stack, stacked, hooks, one_channel=channel is not None)
    est = estimate_kernel(data, cfg.scale, estimator=cfg.estimator, **kw, **cfg.estimator_options)
    field = None
    if cfg.kernel_map:
        from ..kernel_map import estimate_kernel_map

        field = estimate_kernel_map(data, cfg.scale, estimator=cfg.estimator, tile=cfg.tile, overlap=cfg.overlap,
                                    **kw, **cfg.estimator_options)
    return est, field


def estimate_unit(cfg: BatchConfig, stack: InputStack, unit: Unit, frame: np.ndarray,
                  hooks: Hooks) -> KernelEstimate:
    """The kernel of one slice's ``frame`` (in [0, 1], all its channels), or of its ``unit.channel``; an
    error names the unit."""
    from ..api import estimate_kernel

    try:
        return estimate_kernel(frame if unit.channel is None else frame[unit.channel], cfg.scale,
                               estimator=cfg.estimator,
                               **_api_kwargs(cfg, stack, False, hooks, one_channel=unit.channel is not None),
                               **cfg.estimator_options)
    except KernelGANError as exc:
        where = unit.name()
        if not where:
            raise
        raise reworded(exc, f"{where}: ") from exc


def super_resolve_unit(cfg: BatchConfig, stack: InputStack, frame: np.ndarray, kernel: Any, unit: Unit,
                       hooks: Hooks) -> SRResult:
    """One slice's ``frame`` (in [0, 1]; only ``unit.channel`` of it when that is set) super-resolved with
    ``kernel``."""
    from ..api import super_resolve

    return super_resolve(frame if unit.channel is None else frame[unit.channel], kernel, cfg.scale,
                         sr_method=cfg.sr_method,
                         **_api_kwargs(cfg, stack, False, hooks, one_channel=unit.channel is not None),
                         **cfg.sr_options)
