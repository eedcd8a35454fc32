"""Runs one job at a time in napari's thread worker; widgets subscribe to its signals.

The job (a generator of :class:`~napari_kernelgan.types.Progress`) is driven
in the worker by :func:`.models.run_job`, which checks for *Cancel* at every
report and hands the GUI at most one report per
:data:`.models.REPORT_INTERVAL`. In the GUI, reports that arrive while the
event loop is busy are coalesced to the latest. napari's own ``progress`` (the
activity dock and its spinner) is used only with hardware OpenGL, see
:func:`.models.use_activity_progress`.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import notification_manager, show_error
from qtpy.QtCore import QObject, QTimer, Signal

from .models import (
    REPORT_INTERVAL,
    Job,
    Outcome,
    Report,
    RunRecord,
    RunState,
    error_line,
    merge_reports,
    run_job,
    use_activity_progress,
)

__all__ = ["TaskRunner", "report_error", "gl_renderer", "activity_progress_wanted"]

_RENDERER: str | None = None


def gl_renderer() -> str:
    """The OpenGL renderer string of vispy's current canvas (napari's), ``''`` if none can be read.

    Read once per process: every canvas of a process uses the same driver.
    """
    global _RENDERER
    if _RENDERER:
        return _RENDERER
    try:
        from vispy.gloo import gl
        from vispy.gloo.context import get_current_canvas

        canvas = get_current_canvas()
        if canvas is None:
            return ""
        canvas.set_current()
        _RENDERER = str(gl.glGetParameter(gl.GL_RENDERER) or "")
    except Exception:  # no context yet, or a backend without the query: treat as unknown
        return ""
    return _RENDERER


def activity_progress_wanted() -> bool:
    """Whether runs also show in napari's activity dock (hardware rendering only)."""
    return use_activity_progress(gl_renderer())


def report_error(exc: BaseException, what: str) -> str:
    """Tell the user about ``exc``: one line for a user error (a refusal of what they gave says what to
    change), napari's notification with the traceback for a bug. Returns the status text."""
    line = error_line(exc, what)
    if line is not None:
        show_error(line)
        return line
    notification_manager.receive_error(type(exc), exc, exc.__traceback__)
    return f"{what} failed: unexpected error {type(exc).__name__} (see the notification)"


class TaskRunner(QObject):
    """One job at a time, with an explicit :class:`~.models.RunState`.

    Signals: ``state_changed(RunState)``, ``progressed(Report)`` (throttled,
    GUI thread) and ``finished(RunRecord)`` once the job is done, cancelled or
    failed; a failure has already been reported (:func:`report_error`) then.
    """

    state_changed = Signal(object)
    progressed = Signal(object)
    finished = Signal(object)

    def __init__(self, parent: QObject | None = None, *, interval: float = REPORT_INTERVAL) -> None:
        super().__init__(parent)
        self.interval = interval
        self.record = RunRecord("", RunState.IDLE)
        self._worker: Any = None
        self._cancel = threading.Event()
        self._pending: Report | None = None
        self._delivering = False
        self._outcome: Outcome | None = None
        self._activity: Any = None

    @property
    def state(self) -> RunState:
        return self.record.state

    @property
    def running(self) -> bool:
        return self.record.state == RunState.RUNNING

    @property
    def cancel_event(self) -> threading.Event:
        """The current job's cancel flag, for work that checks it itself between its own steps (read it when
        the job starts: each run gets a new one)."""
        return self._cancel

    def start(self, job: Job, description: str, *, activity: bool | None = None) -> RunRecord:
        """Run ``job()`` in a worker thread. ``activity``: also show it in napari's activity dock
        (default: :func:`activity_progress_wanted`)."""
        if self.running:
            raise RuntimeError("a job is already running")
        self._cancel = threading.Event()
        self._pending, self._outcome = None, None
        self.record = RunRecord(description, RunState.RUNNING, started=time.perf_counter())
        if activity is None:
            activity = activity_progress_wanted()
        if activity:
            self._activity = napari_progress(total=0, desc=description)
        worker = create_worker(run_job, job, self._cancel, self.interval, _start_thread=False)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self.state_changed.emit(RunState.RUNNING)
        worker.start()
        return self.record

    def cancel(self) -> None:
        """Stop the job at its next progress report (the worker checks at each)."""
        if self.running and not self.record.cancel_requested:
            self.record.cancel_requested = True
            self._cancel.set()
            self.state_changed.emit(RunState.RUNNING)

    # worker → GUI

    def _on_yielded(self, report: Report) -> None:
        if not self.running:
            return
        first = self._pending is None
        self._pending = merge_reports(self._pending, report)
        if first:
            # Deliver once the event loop is free: reports queued meanwhile collapse into the latest.
            QTimer.singleShot(0, self._deliver)

    def _deliver(self) -> None:
        report, self._pending = self._pending, None
        if report is None or not self.running or self._cancel.is_set():
            return
        self.record.last = report
        self.record.reports += 1
        self._delivering = True
        try:
            if self._activity is not None:
                p = report.progress
                if self._activity.total != p.total:
                    self._activity.total = p.total
                self._activity.set_description(f"{self.record.description} ({p.stage})")
                self._activity.update(max(0, p.iteration - self._activity.n))
            self.progressed.emit(report)
        finally:
            self._delivering = False

    def _on_returned(self, outcome: Outcome) -> None:
        self._outcome = outcome

    def _on_errored(self, exc: BaseException) -> None:
        # run_job returns errors; this is a failure of the plumbing itself.
        self._outcome = Outcome(RunState.FAILED, error=exc)

    def _on_finished(self) -> None:
        if self._delivering:  # reached from inside a report handler: finish once it returns
            QTimer.singleShot(0, self._on_finished)
            return
        if self._worker is None:
            return
        self._worker, self._pending = None, None
        if self._activity is not None:
            self._activity.close()
            self._activity = None
        outcome = self._outcome or Outcome(RunState.CANCELLED)  # a worker quit from outside returns nothing
        record = self.record
        record.ended = time.perf_counter()
        record.state, record.value, record.error = outcome.state, outcome.value, outcome.error
        if outcome.state == RunState.FAILED and outcome.error is not None:
            record.message = report_error(outcome.error, record.description)
        self.state_changed.emit(record.state)
        self.finished.emit(record)

    def shutdown(self) -> None:
        """Cancel and detach (the widget is closing)."""
        self.cancel()
