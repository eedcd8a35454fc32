"""Result and progress records shared by the API, CLI and widgets, and the kernel-metadata builder."""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import Cancelled
from .physics.conventions import CENTRING, ORIENTATION, SUBSAMPLING, analytic_x4, kernel_for_scale
from .vocabulary import LayerRole, Stage

__all__ = ["NEUTRAL_CONFIDENCE", "Progress", "relay", "pulse", "EtaTracker", "KernelEstimate", "TileResult", "SRResult",
           "kernel_metadata", "Cancelled"]


NEUTRAL_CONFIDENCE = 0.5
"""What a kernel whose estimator gives no confidence counts as (SR's safeguards, ``auto``'s members,
the tiles of a kernel map)."""


@dataclass
class Progress:
    """One progress report from a running fit.

    ``kernel`` is the current ×2 kernel estimate (centred, correlation
    orientation) when the stage produces one, else ``None``.
    """

    iteration: int
    total: int
    elapsed: float
    stage: str = Stage.ESTIMATE
    kernel: np.ndarray | None = None
    loss: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.iteration / self.total if self.total else 1.0


def relay(gen: Generator[Progress, None, Any], *, offset: float, span: float, total: int, start: float,
          stage: str | None = None, prefix: str = "", with_kernel: bool = False) -> Generator[Progress, None, Any]:
    """Pass on the reports of a sub-task ``gen`` on a larger scale and return its value.

    A report's fraction is mapped onto ``offset .. offset + span`` of ``total``, so one bar and its ETA
    run over all sub-tasks; ``stage`` replaces the report's own (``None``: kept), ``prefix`` goes before
    its message, and its kernel is passed on only ``with_kernel``. ``gen`` is closed when the caller
    stops (cancel).
    """
    try:
        while True:
            try:
                p = next(gen)
            except StopIteration as stop:
                return stop.value
            done = round(offset + span * min(max(p.fraction, 0.0), 1.0))
            yield Progress(done, total, time.perf_counter() - start, stage=p.stage if stage is None else stage,
                           kernel=p.kernel if with_kernel else None, loss=p.loss, message=prefix + p.message)
    finally:
        gen.close()


def pulse(gen: Generator[Any, None, Any], report: Callable[[], Progress]) -> Generator[Progress, None, Any]:
    """Pass on a sub-task that yields bare steps (``None``) as one progress report each (``report()``) and
    return its value; ``gen`` is closed when the caller stops (cancel)."""
    try:
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value
            yield report()
    finally:
        gen.close()


class EtaTracker:
    """Seconds left from the recent rate of the current stage's loop, and a bar fraction in proportion to time.

    A stage's units are not equal work: ``auto`` gives each member estimator the same share of its bar, and on
    a stack its first members finish half the bar in a second while the last ones take ten. So the rate is
    measured over a recent window (:data:`WINDOW_SHARE` of the stage's time, at least
    :data:`MIN_WINDOW_S`), not from the stage's start; nothing is said (NaN) until the stage has run
    :data:`SETTLE_S` (set-up and instant first steps are not extrapolated), and the estimate is smoothed
    over :data:`SMOOTH_S` so it counts down instead of jumping. :attr:`fraction` is
    ``elapsed / (elapsed + left)`` since the first report, never going back, so the bar moves with time,
    not with units; until a rate is known it moves no further than :data:`EARLY_FRACTION`.
    """

    SETTLE_S = 2.0
    MIN_WINDOW_S = 1.0
    WINDOW_SHARE = 0.3
    SMOOTH_S = 1.0
    SAMPLE_S = 0.05
    EARLY_FRACTION = 0.1

    def __init__(self, start: float | None = None) -> None:
        """``start``: when the run began (default: its first report), the origin of :attr:`fraction`'s time."""
        self._key: tuple[str, int] | None = None
        self._t0 = 0.0
        self._start = start
        self._samples: deque[tuple[float, int]] = deque()
        self._eta = math.nan
        self._eta_at = 0.0
        self.fraction = 0.0

    def __call__(self, p: Progress, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        if self._start is None:
            self._start = now
        key = (str(p.stage), p.total)
        if key != self._key:
            self._key, self._t0, self._eta = key, now, math.nan
            self._samples.clear()
        if not self._samples or now - self._samples[-1][0] >= self.SAMPLE_S:
            self._samples.append((now, p.iteration))
        raw = self._raw(p, now)
        if math.isnan(raw):
            self._eta = math.nan
        elif math.isnan(self._eta):
            self._eta = raw
        else:
            countdown = max(0.0, self._eta - (now - self._eta_at))
            self._eta = countdown + min(1.0, (now - self._eta_at) / self.SMOOTH_S) * (raw - countdown)
        self._eta_at = now
        self._update_fraction(p, now)
        return self._eta

    def _raw(self, p: Progress, now: float) -> float:
        ran = now - self._t0
        if p.total <= 0 or ran < self.SETTLE_S:
            return math.nan
        if p.iteration >= p.total:
            return 0.0
        window = max(self.MIN_WINDOW_S, self.WINDOW_SHARE * ran)
        while len(self._samples) > 2 and self._samples[1][0] <= now - window:
            self._samples.popleft()
        t_old, i_old = self._samples[0]
        done = p.iteration - i_old
        if done <= 0 or now - t_old <= 0:
            return math.nan
        return (now - t_old) * (p.total - p.iteration) / done

    def _update_fraction(self, p: Progress, now: float) -> None:
        elapsed = now - (self._start if self._start is not None else now)
        if math.isnan(self._eta):
            target = min(self.EARLY_FRACTION, max(0.0, p.fraction)) if p.total > 0 else 0.0
        else:
            target = elapsed / (elapsed + self._eta) if elapsed + self._eta > 0 else 1.0
        self.fraction = max(self.fraction, min(1.0, target))


def kernel_metadata(kernel: np.ndarray, scale: int, *, role: LayerRole | str, method: str | None = None,
                    source: str | None = None, **extra: Any) -> dict[str, Any]:
    """The one metadata record of a kernel: in results, layers, kernel files and samples.

    Holds the kernel itself (as a list), its scale, the conventions it follows
    and its ``role`` (:class:`~napari_kernelgan.vocabulary.LayerRole`), plus any
    ``extra`` entries (preset, seed, timing...).
    """
    meta: dict[str, Any] = {
        "kernel": np.asarray(kernel, dtype=np.float64).tolist(),
        "scale": int(scale) if scale is not None else None,
        "orientation": ORIENTATION,
        "centring": CENTRING,
        "subsampling": SUBSAMPLING,
        "role": str(LayerRole(role)),
    }
    if method is not None:
        meta["method"] = method
    if source is not None:
        meta["source"] = source
    meta.update(extra)
    return meta


@dataclass
class KernelEstimate:
    """A blind kernel estimate of one image (or one stack sharing a kernel).

    ``kernel`` is the ×2 SR kernel, odd-sized, centred, in correlation
    orientation (see :mod:`napari_kernelgan.physics.conventions`).
    ``method`` is the estimator's name and ``options`` the options it ran with.
    ``confidence`` in [0, 1] (``None`` where the estimator gives none): how far
    the kernel can be trusted; SR regularises more as it falls.
    """

    kernel: np.ndarray
    dmap: np.ndarray | None
    loss_history: dict[str, list[float]]
    iterations: int
    elapsed: float
    device: str
    seed: int
    method: str = ""
    scale: int = 2
    options: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    confidence: float | None = None

    @property
    def preset(self) -> str | None:
        """The preset the estimator ran with, if it has presets."""
        return self.options.get("preset")

    @property
    def kernel_x4(self) -> np.ndarray:
        """Analytic ×4 kernel ``k2 ⊛ dilate2(k2)`` (full support, 3n − 2)."""
        return analytic_x4(self.kernel)

    def kernel_for(self, scale: int) -> np.ndarray:
        """The kernel for SR at ``scale`` (2 or 4)."""
        return kernel_for_scale(self.kernel, scale)

    def metadata(self, scale: int | None = None) -> dict[str, Any]:
        """Plain-data description for layer metadata and sidecar files."""
        scale = self.scale if scale is None else scale
        plain = {k: v for k, v in self.options.items() if isinstance(v, (int, float, str, bool, type(None)))}
        return kernel_metadata(self.kernel_for(scale), scale, role=LayerRole.KERNEL, method=self.method,
                               preset=self.preset, options=plain, seed=self.seed, iterations=self.iterations,
                               elapsed_s=round(self.elapsed, 3), device=self.device,
                               confidence=None if self.confidence is None else round(float(self.confidence), 3))


@dataclass
class TileResult:
    """One tile's estimate inside a kernel map: the ×2 kernel (``None`` where the tile could not be
    read, with the reason in ``message``), its confidence (``None`` from estimators that give none)
    and the 2×2 covariance where the estimator has one."""

    kernel: np.ndarray | None
    confidence: float | None
    covariance: np.ndarray | None = None
    message: str = ""


@dataclass
class SRResult:
    """A super-resolved image and how it was made (``method`` is the SR method's name)."""

    image: np.ndarray
    scale: int
    method: str
    kernel: np.ndarray
    elapsed: float
    device: str
    options: dict[str, Any] = field(default_factory=dict)
    estimate: KernelEstimate | None = None  # set by blind super-resolution

    def metadata(self) -> dict[str, Any]:
        """Plain-data description for layer metadata: the record of the kernel used (:func:`kernel_metadata`,
        role super-resolved) with the SR method, its plain options, time and device."""
        plain = {k: v for k, v in self.options.items() if isinstance(v, (int, float, str, bool, type(None)))}
        return kernel_metadata(self.kernel, self.scale, role=LayerRole.SUPER_RESOLVED, sr_method=self.method,
                               options=plain, elapsed_s=round(self.elapsed, 3), device=self.device)
