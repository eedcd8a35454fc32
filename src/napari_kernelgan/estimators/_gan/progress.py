"""Progress of a KernelGAN or MetaKernelGAN run on one scale, so a bar moves from the first second.

Every stage has a share of one scale whose unit is a GAN step: the anchor (edge measurement and G's
prefit), the GAN, the check against the reference estimates and the D-map. A stage's reports move
within its share, so the fraction rises through the whole run and an ETA from the current stage's own
rate is right. The shares are rough costs measured on a 2-core CPU (a GAN step of 4 crops of 64 px).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor, TimeoutError
from typing import TypeVar

import numpy as np

from ...types import Progress
from ...vocabulary import Stage

__all__ = ["EDGE_UNITS_PER_MPX", "PREFIT_STEPS_PER_UNIT", "CHECK_UNITS", "DMAP_UNITS_PER_MPX", "POLL_S",
           "edge_units", "dmap_units", "in_background", "report_dmap"]

T = TypeVar("T")

EDGE_UNITS_PER_MPX = 30      # the sharp-edge measurement: about 30 GAN steps per megapixel
PREFIT_STEPS_PER_UNIT = 8    # G's prefit onto its anchor: about 8 prefit steps per GAN step
CHECK_UNITS = 5              # the learned and sharp-edge reference estimates (a fixed number of crops)
DMAP_UNITS_PER_MPX = 60      # the D-map: about 60 GAN steps per megapixel
POLL_S = 0.2                 # how often a stage that runs in the background reports
SECONDS_PER_UNIT = 0.1       # what a unit is expected to take, for the fraction of a stage that cannot report


MIN_UNITS = 5                # the least share of a stage, so that it can show movement


def edge_units(pixels: int) -> int:
    """The share of the sharp-edge measurement of ``pixels`` pixels (all frames)."""
    return max(MIN_UNITS, round(EDGE_UNITS_PER_MPX * pixels / 1e6))


def dmap_units(pixels: int) -> int:
    """The share of the D-map of ``pixels`` pixels (all frames)."""
    return max(MIN_UNITS, round(DMAP_UNITS_PER_MPX * pixels / 1e6))


def in_background(fn: Callable[[], T], units: int, poll: float = POLL_S) -> Generator[int, None, T]:
    """Run ``fn()`` in a worker thread and return its value (or raise its error); meanwhile yield, every
    ``poll`` seconds, how many of its ``units`` it has probably done (from the time it is expected to take,
    approaching ``units`` without reaching it), so a stage with no loop of its own still shows progress.
    If the caller stops, ``fn`` is left to finish on its own (it holds no resources of the caller's)."""
    expected = max(units * SECONDS_PER_UNIT, poll)
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(fn)
        start = time.perf_counter()
        while True:
            try:
                return future.result(timeout=poll)
            except TimeoutError:
                yield min(units - 1, math.floor(units * (1 - math.exp(-(time.perf_counter() - start) / expected))))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def report_dmap(mapping: Generator[tuple[int, int], None, np.ndarray], offset: int, share: int, total: int,
                start: float) -> Generator[Progress, None, np.ndarray]:
    """Pass on the strips of a D-map (:func:`.dmap.iter_discriminator_map`) as reports within ``offset`` ..
    ``offset + share`` of ``total``; returns the map."""
    while True:
        try:
            done, of = next(mapping)
        except StopIteration as stop:
            return stop.value
        yield Progress(offset + share * done // of, total, time.perf_counter() - start, stage=Stage.DMAP,
                       message=f"computing the discriminator map, strip {done} of {of}")
