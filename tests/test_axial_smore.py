"""The axial network trains a step count set by its budget, never by the clock: the same seed gives the same
output however busy the machine is; the clock stops training only far past its budget, and says so."""
from __future__ import annotations

import hashlib
import threading
import warnings

import numpy as np
import pytest

from napari_kernelgan.axial import smore
from napari_kernelgan.axial.isotropic import default_train_seconds, super_resolve_axial
from napari_kernelgan.physics.optics import Optics
from napari_kernelgan.sr._safety import UnsafeSRWarning
from napari_kernelgan.synthetic3d import axial_case

BUDGET = 1.5  # seconds of training budget: 27 steps


@pytest.fixture(scope="module")
def case():
    return axial_case(5, Optics(modality="confocal", na=1.2, wavelength_um=0.52, n_immersion=1.333), factor=3,
                      shape=(48, 40, 40), photons=1000)


def _run(case, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsafeSRWarning)
        return super_resolve_axial(case.stack, case.true_psf, sr_method="smore", safe=False, seed=3, threads=1,
                                   train_seconds=BUDGET, **kw)


@pytest.fixture(scope="module")
def quiet(case):
    return _run(case)


class _FakeClock:
    """``time`` for :mod:`smore` whose every reading advances ``tick`` seconds (a slow machine, simulated)."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


def test_step_count_is_a_function_of_the_budget_only():
    assert smore.steps_for(BUDGET) == 27
    # The default budget is the stack's size and factor's: 64×512×512 ×4 trains 777 steps wherever it runs
    assert smore.steps_for(default_train_seconds((64, 512, 512), 4)) == 777
    assert smore.steps_for(0.01) == smore.MIN_ITERATIONS and smore.steps_for(1e6) == smore.MAX_ITERATIONS
    assert smore.guard_seconds(BUDGET) == pytest.approx(smore.SAFETY_CAP * 27 / smore.STEPS_PER_SECOND)
    assert smore.SAFETY_CAP >= 10  # far above the budget


def test_same_seed_same_output_while_another_thread_burns_cpu(case, quiet):
    stop = threading.Event()

    def burn() -> None:  # hashing large buffers runs without the GIL: a second core's worth of load
        block = bytes(1 << 22)
        while not stop.is_set():
            hashlib.sha256(block).digest()

    burners = [threading.Thread(target=burn, daemon=True) for _ in range(2)]
    for t in burners:
        t.start()
    try:
        busy = _run(case)
    finally:
        stop.set()
        for t in burners:
            t.join()
    assert quiet.validation["train_steps"] == busy.validation["train_steps"] == 27
    np.testing.assert_array_equal(busy.volume, quiet.volume)
    assert "training_cut" not in busy.validation and not busy.warnings


def test_a_machine_three_times_slower_still_trains_every_step(case, quiet, monkeypatch):
    # Each step reads the clock twice: 1.5/18 s a reading makes every step take 3× its planned time, which the
    # former cap (twice the budget) stopped at two thirds of the steps.
    monkeypatch.setattr(smore, "time", _FakeClock(1.5 / smore.STEPS_PER_SECOND))
    slow = _run(case)
    assert slow.validation["train_steps"] == 27
    np.testing.assert_array_equal(slow.volume, quiet.volume)
    assert not slow.warnings


def test_the_clock_stops_training_only_past_its_safety_and_says_so(case, quiet, monkeypatch):
    # 40× slower than planned: the guard (20× the planned time) stops training at about half its steps.
    monkeypatch.setattr(smore, "time", _FakeClock(20.0 / smore.STEPS_PER_SECOND))
    cut = _run(case)
    steps = cut.validation["train_steps"]
    assert 10 <= steps < 27
    assert cut.validation["training_cut"] in cut.warnings
    assert f"trained {steps} of its 27 steps" in cut.validation["training_cut"]
    assert not np.array_equal(cut.volume, quiet.volume)
    assert smore.training_cut(27, BUDGET) is None
