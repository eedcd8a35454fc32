"""Where a run's tasks run: in this process, in order, or on a Dask cluster (a local one, or one at an
address); :func:`map_tasks` is that executor for any function (the benchmarks run on it too)."""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..errors import BadOptionError

__all__ = ["SINGLE_THREAD_ENV", "dask_client", "map_tasks"]

# One BLAS/OpenMP thread per local worker too: the workers share the cores among themselves.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client: on the cluster at ``scheduler``, or on ``workers`` local processes of one thread
    each, on the loopback interface only and without a dashboard."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise BadOptionError("--workers and --scheduler need Dask: pip install 'napari-kernelgan[dask]'") from exc
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise BadOptionError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        with client:
            yield client
        return
    # The scheduler's HTTP routes (health, metrics) listen anyway: on a free port, not 8787, which another
    # cluster on this machine may hold.
    http = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
    import dask

    # Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536, so that memory goes back to the system
    # at once; every large numpy or torch buffer then costs page faults, and two such workers on two
    # cores processed files no faster than one plain process (benchmarks/batch_benchmark.py). The
    # workers start with glibc's own allocator settings, as the serial run has, and one BLAS/OpenMP
    # thread each.
    defaults = dask.config.get("distributed.nanny.pre-spawn-environ", {})
    spawn_env = {**{k: v for k, v in defaults.items() if k != "MALLOC_TRIM_THRESHOLD_"}, **SINGLE_THREAD_ENV}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}), \
            LocalCluster(n_workers=int(workers or 1), threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None, scheduler_kwargs=http, silence_logs=logging.ERROR,
                         env=dict(SINGLE_THREAD_ENV)) as cluster, \
            Client(cluster) as client:
        yield client


def map_tasks(fn: Callable[[Any], Any], items: Iterable[Any], *, workers: int | None = None,
              scheduler: str | None = None) -> Iterator[tuple[int, Any | BaseException]]:
    """``(index, fn(item))`` for every item: in this process, in order, when neither ``workers`` nor
    ``scheduler`` is given; else one task per item on :func:`dask_client`, yielded as they complete.

    A task that raises (or is lost with its worker) yields its exception instead of a result, and the
    others go on. ``fn`` and the items must pickle for Dask; a function of a script's ``__main__`` is
    sent by value. Leaving the loop early stops the local cluster with the tasks still running.
    """
    if workers is None and scheduler is None:
        for i, item in enumerate(items):
            try:
                yield i, fn(item)
            except Exception as exc:
                yield i, exc
        return
    with dask_client(workers, scheduler) as client:
        from distributed import as_completed

        # pure=False: equal items are still separate tasks (seeded runs, files written as a side effect)
        futures = {client.submit(fn, item, pure=False): i for i, item in enumerate(items)}
        for future in as_completed(futures):
            try:
                value = future.result()
            except Exception as exc:
                value = exc
            yield futures[future], value
