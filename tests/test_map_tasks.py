"""``batch.map_tasks``, the executor the engine and the benchmarks share: results by index, a failing task
yielding its exception while the others go on, in this process or on a local Dask cluster."""
from __future__ import annotations

import math
import os

import pytest

from napari_kernelgan.batch import map_tasks

ITEMS = [4.0, 9.0, -1.0, 16.0]  # math.sqrt(-1.0) raises ValueError


def _check(results: list[tuple[int, object]]) -> None:
    by_index = dict(results)
    assert sorted(by_index) == [0, 1, 2, 3]
    assert [by_index[i] for i in (0, 1, 3)] == [2.0, 3.0, 4.0]
    assert isinstance(by_index[2], ValueError)


def test_serial_runs_in_this_process_in_order_and_yields_exceptions() -> None:
    pids: list[int] = []

    def task(x: float) -> float:
        pids.append(os.getpid())
        return math.sqrt(x)

    results = list(map_tasks(task, iter(ITEMS)))
    assert [i for i, _ in results] == [0, 1, 2, 3]
    _check(results)
    assert pids == [os.getpid()] * 4


def test_dask_two_local_workers_give_every_result_by_index() -> None:
    pytest.importorskip("distributed", reason="Dask is not installed (pip install 'napari-kernelgan[dask]')")
    results = list(map_tasks(math.sqrt, ITEMS, workers=2))
    _check(results)
