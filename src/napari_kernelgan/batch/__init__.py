"""The batch engine: kernels and super-resolved images for many files, resumable, serial or on Dask.

One input (a TIFF stack, PNG or JPEG) is one task (:func:`process_input`): it is read with its axes
and pixel sizes (:mod:`.stacks`), gets one kernel per stack or one per slice, is super-resolved slice
by slice into a file of its own format, and ends with a manifest written last, atomically, that lists
every output with its size and SHA-256. A rerun skips an input whose manifest matches the run's
settings, the input's size and time, and outputs that still hash the same. Every file is written
through :func:`.io.atomic_path`, so a run killed at any point leaves no truncated output, and a file
that fails is recorded (with its error) while the others go on. :func:`run_batch` runs the tasks in
this process or on a Dask cluster (``napari-kernelgan[dask]``); each task is seeded, so both give
the same files; :func:`map_tasks` is that executor for any function (the benchmarks run on it). The run's
table goes to ``summary.csv`` and ``summary.json`` (:func:`write_summary`).
:func:`iter_batch` is the serial run as a generator of progress reports, for a GUI's worker thread; a
``cancel`` event stops a run between inputs and slices (and at the next progress report inside one),
removing the interrupted input's files. ``sr`` and ``blind-sr`` run through here too: a known kernel
(``BatchConfig.kernel``) instead of an estimate, results beside each input (``out=None``) or at one
``output`` path.

The package's modules: :mod:`.config` (settings and results), :mod:`.engine` (one input, start to end),
:mod:`.work` (its units: a slice, a channel), :mod:`.outputs` (the files written), :mod:`.manifest`
(resume and verify), :mod:`.summary` (the run's table), :mod:`.executors` (serial or Dask).
"""
from __future__ import annotations

import functools
import logging
import os
import time
import traceback
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadOptionError, Cancelled, OutputError, Param, WeightsMissingError, render, user_words
from ..stacks import stem_of
from ..vocabulary import Stage, Status
from .axial import run_axial_input
from .config import BatchConfig, BatchResult, InputResult
from .engine import expand_inputs, run_input
from .executors import SINGLE_THREAD_ENV, dask_client, map_tasks
from .manifest import finished_before, remove_stale_temporaries, write_manifest
from .outputs import all_or_nothing, save_kernel_plot, write_estimate, write_field
from .summary import SUMMARY_COLUMNS, row, write_summary
from .work import Hooks

if TYPE_CHECKING:
    import threading

    from ..types import Progress

__all__ = ["BatchConfig", "InputResult", "BatchResult", "SUMMARY_COLUMNS", "expand_inputs", "process_input",
           "run_batch", "iter_batch", "map_tasks", "dask_client", "write_summary", "write_estimate",
           "write_field", "save_kernel_plot", "all_or_nothing", "SINGLE_THREAD_ENV", "finished_before"]


def _fail(result: InputResult, cfg: BatchConfig, words: tuple[Any, ...], error_path: str | None) -> InputResult:
    message = render(words)
    result.status, result.error, result.error_words, result.error_path = Status.FAILED, message, words, error_path
    result.rows = [row(cfg, result.path, status=Status.FAILED, error=message)]
    return result


def process_input(path: str | os.PathLike, cfg: BatchConfig, *, catch_bugs: bool = True,
                  callback: Callable[[Progress], Any] | None = None,
                  cancel: threading.Event | None = None) -> InputResult:
    """Do one input: skip it if finished before (verified), else estimate, super-resolve and write its
    outputs, then its manifest. Errors are recorded on the result, never raised, except bugs when
    ``catch_bugs`` is off, interruptions and :class:`~..errors.Cancelled` (``cancel`` set; the input's files
    are removed). ``callback`` gets the estimator's and SR method's progress reports."""
    path = Path(path)
    stem = stem_of(path)
    start = time.perf_counter()
    result = InputResult(path, stem, Status.OK, [])
    hooks = Hooks(callback, cancel)
    hooks.check()
    if cfg.resume and path.is_file():
        record = finished_before(path, stem, cfg)
        if record is not None:
            out = cfg.out_dir(path)
            result.status = Status.SKIPPED
            result.rows = [{**r, "status": Status.SKIPPED} for r in record["rows"]]
            result.written = [out / name for name in record["outputs"]]
            result.hints = record.get("optics_hints") or {}
            output = next((r["output"] for r in record["rows"] if r.get("output")), None)
            result.output = None if output is None else out / output
            return result
    try:
        with all_or_nothing() as written:
            (run_axial_input if cfg.axial else run_input)(path, stem, cfg, result, written, hooks)
            if cfg.resume:
                write_manifest(path, stem, cfg, result, written)
        result.written = written
    except Cancelled:
        raise
    except Exception as exc:
        words = user_words(exc)
        if words is None:
            if not catch_bugs:
                raise
            words = (f"internal error: {type(exc).__name__}: {exc}",)
            logging.getLogger(__name__).error("%s: %s", path, "".join(traceback.format_exception(exc)))
        _fail(result, cfg, words, None if isinstance(exc, WeightsMissingError) else
              str(cfg.output or cfg.out_dir(path)) if isinstance(exc, OutputError) else str(path))
    result.seconds = time.perf_counter() - start
    if result.failed:
        result.rows[0]["seconds"] = round(result.seconds, 3)
    return result


# ----------------------------------------------------------------------------- a run


def _lost(path: Path, cfg: BatchConfig, message: str) -> InputResult:
    return _fail(InputResult(path, stem_of(path), Status.FAILED, []), cfg, (message,), str(path))


def _paths(inputs: Sequence[str | os.PathLike], cfg: BatchConfig) -> list[Path]:
    paths = expand_inputs(inputs, cfg.out, axial=cfg.axial)
    if cfg.output is not None and len(paths) != 1:
        raise BadOptionError(Param("output"), f" names the result of one input, and {len(paths)} inputs were "
                             "given; leave it out to write each result beside its input")
    remove_stale_temporaries(cfg.out)
    return paths


def _finish(cfg: BatchConfig, results: list[InputResult], start: float, summary: bool) -> BatchResult:
    batch = BatchResult(results, time.perf_counter() - start)
    if summary and cfg.out is not None:
        batch.summary = write_summary(cfg, batch)
    return batch


def iter_batch(inputs: Sequence[str | os.PathLike], cfg: BatchConfig, *,
               on_result: Callable[[InputResult], Any] | None = None, summary: bool = True,
               catch_bugs: bool = True, callback: Callable[[Progress], Any] | None = None,
               cancel: threading.Event | None = None) -> Generator[Progress, None, BatchResult]:
    """:func:`run_batch` in this process as a generator: a progress report before the first input and after
    each; returns the :class:`BatchResult`. ``cancel`` stops the run (raising :class:`~..errors.Cancelled`)
    between inputs and slices and at the estimators' next report; finished inputs keep their files."""
    from ..types import Progress

    start = time.perf_counter()
    paths = _paths(inputs, cfg)
    hooks = Hooks(callback, cancel)
    results: list[InputResult] = []
    for i, path in enumerate(paths):
        hooks.check()
        yield Progress(i, len(paths), time.perf_counter() - start, stage=Stage.BATCH, message=path.name)
        result = process_input(path, cfg, catch_bugs=catch_bugs, callback=callback, cancel=cancel)
        results.append(result)
        if on_result is not None:
            on_result(result)
    yield Progress(len(paths), len(paths), time.perf_counter() - start, stage=Stage.BATCH, message="")
    return _finish(cfg, results, start, summary)


def run_batch(inputs: Sequence[str | os.PathLike], cfg: BatchConfig, *, workers: int | None = None,
              scheduler: str | None = None, progress: Callable[[Progress], Any] | None = None,
              on_result: Callable[[InputResult], Any] | None = None, summary: bool = True,
              catch_bugs: bool = True, callback: Callable[[Progress], Any] | None = None) -> BatchResult:
    """Process every input (files, folders, glob patterns) with ``cfg``; one failing input does not stop the
    others. ``workers`` / ``scheduler``: run on Dask (a local cluster, or the one at that address).
    ``progress`` gets a report per input done, ``on_result`` each input's result as it completes,
    ``callback`` (in this process only) the estimators' and SR methods' own reports. With ``summary``,
    ``summary.csv`` and ``summary.json`` are written to ``cfg.out`` at the end."""
    if workers is None and scheduler is None:
        gen = iter_batch(inputs, cfg, on_result=on_result, summary=summary, catch_bugs=catch_bugs,
                         callback=callback)
        while True:
            try:
                report = next(gen)
            except StopIteration as stop:
                return stop.value
            if progress is not None and report.iteration > 0:  # per input done, as on Dask
                progress(report)
    from ..types import Progress

    start = time.perf_counter()
    paths = _paths(inputs, cfg)
    results: list[InputResult | None] = [None] * len(paths)
    task = functools.partial(process_input, cfg=cfg)
    for i, value in map_tasks(task, paths, workers=workers, scheduler=scheduler):
        if isinstance(value, BaseException):  # process_input records its own errors: the task itself was lost
            result = _lost(paths[i], cfg, f"the task was lost on the cluster: {type(value).__name__}: {value}")
        else:
            result = value
        results[i] = result
        if on_result is not None:
            on_result(result)
        if progress is not None:
            finished = sum(r is not None for r in results)
            progress(Progress(finished, len(paths), time.perf_counter() - start, stage=Stage.BATCH,
                              message=result.path.name))
    return _finish(cfg, [r for r in results if r is not None], start, summary)
