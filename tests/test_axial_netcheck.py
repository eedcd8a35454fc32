"""The network's held-out z check and ``auto``'s choice between the 3-D PSF path and the network on confocal
stacks."""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from napari_kernelgan import records
from napari_kernelgan.axial import _netcheck, isotropic
from napari_kernelgan.axial._zops import measure_stack_noise
from napari_kernelgan.axial.isotropic import super_resolve_axial
from napari_kernelgan.errors import Cancelled
from napari_kernelgan.physics.optics import Optics
from napari_kernelgan.synthetic3d import axial_case

CONFOCAL = Optics(modality="confocal", na=1.2, wavelength_um=0.52, n_immersion=1.333, pinhole_au=1.0)


@pytest.fixture(scope="module")
def conf():
    """A confocal water-objective stack every 3rd plane (development seed 151)."""
    return axial_case(151, CONFOCAL, factor=3, shape=(48, 48, 48), photons=1000, kind="filaments")


def _noise(case):
    return measure_stack_noise(case.stack[case.stack.shape[0] // 2].astype(np.float64))


def test_network_predicts_held_out_planes_better_than_cubic_with_the_right_profile(conf):
    c = _netcheck.net_held_out(conf.stack, conf.true_psf, conf.factor, _noise(conf), seed=0, seconds=3)
    assert c.steps == 54 and c.held_db > 0.5, c
    again = _netcheck.net_held_out(conf.stack, conf.true_psf, conf.factor, _noise(conf), seed=0, seconds=3)
    assert again.held_db == c.held_db  # a fixed step count: the same seed gives the same gain


def test_network_loses_to_cubic_with_a_grossly_wrong_profile(conf):
    # A relative axial blur 4× as wide as the stack's: the network sharpens far too much, and its output,
    # re-blurred with that profile, predicts the held-out planes worse than cubic interpolation does.
    rel = conf.true_psf.relative
    n = 4 * rel.size - 3  # the same centre, every sample spread over 4
    wide = np.interp((np.arange(n) - (n - 1) / 2) / 4.0 + (rel.size - 1) / 2, np.arange(rel.size), rel)
    assert np.argmax(wide) == np.argmax(rel) * 4
    psf = dataclasses.replace(conf.true_psf, relative=wide / wide.sum())
    c = _netcheck.net_held_out(conf.stack, psf, conf.factor, _noise(conf), seed=0, seconds=3)
    assert c.held_db < 0.0, c


def test_the_record_holds_the_networks_margin_or_none():
    v = records.record_values("axial_safety")
    assert v.get("network_margin_db") == isotropic.NETWORK_MARGIN_DB


@pytest.mark.parametrize("margin", [-50.0, 50.0])
def test_auto_with_a_confocal_model_records_both_gains_and_its_choice(conf, monkeypatch, margin):
    monkeypatch.setattr(isotropic, "NETWORK_MARGIN_DB", margin)
    psf = dataclasses.replace(conf.true_psf, model=conf.optics)
    r = super_resolve_axial(conf.stack, psf, train_seconds=1, threads=1)
    v = r.validation
    held = v["auto_held_db"]
    assert set(held) == {"psf3d", "network"} and all(np.isfinite(x) for x in held.values())
    assert v["auto_candidates"] and not r.fell_back, r.warnings
    if margin < 0:  # the network wins whatever the gains
        assert v["auto_choice"] == "smore" and r.sr_method == "smore"
        assert "The network (smore) super-resolved the stack rather than" in r.notes[0]
    else:
        assert v["auto_choice"] == "psf3d" and r.sr_method == "deconvolve"
        assert "3-D PSF super-resolved the stack rather than the network" in r.notes[0]
    assert f"{held['network']:+.2f} dB" in r.notes[0] and f"{held['psf3d']:+.2f} dB" in r.notes[0]


def test_auto_with_a_confocal_model_and_no_margin_runs_the_network_unchecked(conf, monkeypatch):
    monkeypatch.setattr(isotropic, "NETWORK_MARGIN_DB", None)
    psf = dataclasses.replace(conf.true_psf, model=conf.optics)
    r = super_resolve_axial(conf.stack, psf, train_seconds=1, threads=1)
    assert r.validation["auto_choice"] == "smore" and "auto_held_db" not in r.validation
    assert "auto_candidates" not in r.validation


def test_cancel_during_the_networks_check_stops_within_a_second(conf, monkeypatch):
    monkeypatch.setattr(isotropic, "NETWORK_MARGIN_DB", 0.0)
    psf = dataclasses.replace(conf.true_psf, model=conf.optics)
    cancel = threading.Event()
    set_at: list[float] = []

    def callback(progress):
        if progress.message == "checking the network on held-out planes" and not cancel.is_set():
            cancel.set()
            set_at.append(time.perf_counter())

    with pytest.raises(Cancelled):
        super_resolve_axial(conf.stack, psf, callback=callback, cancel=cancel, threads=1)
    assert set_at and time.perf_counter() - set_at[0] < 1.0
