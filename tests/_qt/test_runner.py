"""The task runner in a Qt event loop: states, throttled reports, cancel in every stage, the error path."""
from __future__ import annotations

import time

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_kernelgan._qt.models import RunState
from napari_kernelgan._qt.runner import TaskRunner, activity_progress_wanted, gl_renderer
from napari_kernelgan.errors import BadInputError
from napari_kernelgan.types import Progress
from napari_kernelgan.vocabulary import Stage

pytestmark = pytest.mark.gui


def _collect(runner):
    seen = {"states": [], "reports": [], "finished": []}
    runner.state_changed.connect(seen["states"].append)
    runner.progressed.connect(seen["reports"].append)
    runner.finished.connect(seen["finished"].append)
    return seen


def test_a_flood_of_reports_reaches_the_gui_throttled(qtbot, wait_idle):
    def job():
        # Report as fast as possible for long enough that the GUI timer's tick count means something.
        start = time.perf_counter()
        i = 0
        while time.perf_counter() - start < 1.5:
            i += 1
            yield Progress(i, 10 ** 9, time.perf_counter() - start, stage=Stage.ESTIMATE)
        return 42

    runner = TaskRunner(interval=0.1)
    seen = _collect(runner)
    ticks = []
    timer_start = time.perf_counter()
    from qtpy.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    runner.start(job, "flood", activity=False)
    assert runner.state == RunState.RUNNING
    wait_idle(runner, timeout_s=60)
    timer.stop()
    took = time.perf_counter() - timer_start
    record = seen["finished"][0]
    assert record.state == RunState.DONE and record.value == 42 and runner.state == RunState.DONE
    assert seen["states"][0] == RunState.RUNNING and seen["states"][-1] == RunState.DONE
    # At most one report per interval (plus the first), however fast the job reports.
    assert 1 <= len(seen["reports"]) <= took / 0.1 + 2
    # The GUI kept its own timer going: the reports did not swamp the event loop.
    assert len(ticks) >= 0.25 * took / 0.02


@pytest.mark.parametrize("stage", [Stage.PREPARE, Stage.ANCHOR, Stage.ESTIMATE, Stage.DMAP])
def test_cancel_works_in_every_stage(qtbot, wait_idle, stage):
    reached = []
    closed = []

    def job():
        try:
            for s in (Stage.PREPARE, Stage.ANCHOR, Stage.ESTIMATE, Stage.DMAP):
                n = 100000 if s == stage else 5  # the stage under test runs until cancelled
                for i in range(n):
                    if s == stage:
                        reached.append(s)
                    time.sleep(0.005)  # a slow step
                    yield Progress(i, n, 0.0, stage=s)
            return "never"
        finally:
            closed.append(True)

    runner = TaskRunner(interval=0.05)
    seen = _collect(runner)
    runner.start(job, "slow", activity=False)
    qtbot.waitUntil(lambda: bool(reached) and bool(seen["reports"]), timeout=20000)
    start = time.perf_counter()
    runner.cancel()
    assert runner.record.cancel_requested
    wait_idle(runner, timeout_s=10)
    assert time.perf_counter() - start < 1.0
    assert seen["finished"][0].state == RunState.CANCELLED and closed == [True]


def test_user_error_is_one_line_and_a_bug_keeps_its_traceback(qtbot, wait_idle, notes):
    def failing(exc):
        def job():
            yield Progress(0, 1, 0.0, stage=Stage.PREPARE)
            raise exc
        return job

    runner = TaskRunner()
    runner.start(failing(BadInputError("the image is 20×20 pixels")), "Kernel of x", activity=False)
    wait_idle(runner)
    assert runner.state == RunState.FAILED
    [error] = notes.errors
    assert error.message == "Kernel of x was not run: the image is 20×20 pixels"
    assert runner.record.message == error.message
    assert getattr(error, "exception", None) is None  # no traceback for a user error

    notes.mark()
    bug = KeyError("a bug")
    runner.start(failing(bug), "Kernel of x", activity=False)
    wait_idle(runner)
    [error] = notes.errors
    assert error.exception is bug  # napari's error notification, with the traceback
    assert "unexpected error KeyError" in runner.record.message


def test_activity_progress_only_with_hardware_rendering(qtbot, wait_idle, make_napari_viewer):
    make_napari_viewer()  # a canvas, so the renderer can be read
    renderer = gl_renderer()
    if renderer and not any(s in renderer.lower() for s in ("llvmpipe", "softpipe", "software", "swiftshader")):
        pytest.skip(f"hardware renderer {renderer!r}")
    assert activity_progress_wanted() is False

    def job():
        for i in range(5):
            time.sleep(0.05)
            yield Progress(i, 5, 0.0)

    runner = TaskRunner(interval=0.0)
    runner.start(job, "plain")
    assert runner._activity is None
    wait_idle(runner)
    runner.start(job, "with activity", activity=True)
    assert runner._activity is not None
    wait_idle(runner)
    assert runner._activity is None and runner.state == RunState.DONE
