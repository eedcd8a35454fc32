"""``types.pulse``: a sub-task of bare steps passed on as progress reports."""
from __future__ import annotations

from napari_kernelgan.types import Progress, pulse


def _steps(n: int, closed: list[bool]):
    try:
        for _ in range(n):
            yield None
        return "done"
    finally:
        closed.append(True)


def test_pulse_reports_once_per_step_and_returns_the_value():
    closed: list[bool] = []
    reports = []
    gen = pulse(_steps(3, closed), lambda: Progress(len(reports), 10, 0.0, message="step"))
    while True:
        try:
            reports.append(next(gen))
        except StopIteration as stop:
            value = stop.value
            break
    assert value == "done" and [p.iteration for p in reports] == [0, 1, 2] and closed == [True]


def test_pulse_closes_the_sub_task_when_the_caller_stops():
    closed: list[bool] = []
    gen = pulse(_steps(5, closed), lambda: Progress(0, 1, 0.0))
    next(gen)
    gen.close()  # a cancel: the caller stops at a report
    assert closed == [True]
