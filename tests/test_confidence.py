"""The confidence read in the user's terms: levels, bands and advice, all from the calibration record."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from napari_kernelgan import confidence as conf
from napari_kernelgan.confidence import ConfidenceReading, read_confidence
from napari_kernelgan.records import record_values

RECORD = record_values("confidence")
RANK = {"low": 0, "medium": 1, "high": 2}


@pytest.mark.parametrize("scale", [2, 4])
def test_levels_never_fall_as_the_confidence_rises(scale):
    readings = [read_confidence(c, scale=scale) for c in np.linspace(0.0, 1.0, 201)]
    ranks = [RANK[r.level] for r in readings]
    assert ranks == sorted(ranks)
    # every level is reachable and the thresholds of the record are where the level changes
    low, high = RECORD["scales"][str(scale)]["thresholds"]
    assert read_confidence(0.0, scale=scale).level == "low"
    assert read_confidence(1.0, scale=scale).level == "high"
    assert read_confidence(low - 1e-6, scale=scale).level == "low"
    assert read_confidence(low, scale=scale).level == ("medium" if high > low else "high")
    assert read_confidence(high, scale=scale).level == "high"


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("value", [0.0, 0.15, 0.3, 0.5, 0.8, 1.0])
def test_the_bands_come_from_the_record(scale, value):
    r = read_confidence(value, scale=scale)
    band = RECORD["scales"][str(scale)]["bands"][r.level]
    assert r.width_error == tuple(band["width_error"])
    assert r.beats_fixed == band["beats_fixed"]
    assert 0.0 <= r.width_error[0] <= r.width_error[1]
    assert 0.0 <= r.beats_fixed <= 1.0


def test_none_and_nan_give_no_reading():
    assert read_confidence(None) is None
    assert read_confidence(float("nan"), scale=4) is None


def test_low_confidence_is_not_trusted_and_says_what_to_do():
    r = read_confidence(0.0)
    assert isinstance(r, ConfidenceReading)
    assert r.level == "low" and r.trusted is False
    assert "bead" in r.advice and "regularise" in r.advice
    assert read_confidence(1.0).trusted is True


@pytest.mark.parametrize("value", [0.02, 0.2, 0.45, 0.7, 0.95])
def test_the_text_states_the_level_and_the_band_numbers(value):
    r = read_confidence(value)
    lo, hi = (round(100 * v) for v in r.width_error)
    assert r.text.startswith(f"confidence {value:.2f} ({r.level})")
    assert f"{lo}–{hi} %" in r.text
    assert f"{math.floor(10 * r.beats_fixed + 0.5)} of 10" in r.text


def test_other_scales_use_the_nearest_calibration_and_values_are_clipped():
    assert conf.calibrated_scales() == [2, 4]
    assert read_confidence(0.5, scale=8).width_error == read_confidence(0.5, scale=4).width_error
    assert read_confidence(0.5, scale=3).width_error == read_confidence(0.5, scale=2).width_error
    r = read_confidence(1.7)
    assert r.confidence == 1.0 and r.level == "high"
    assert re.match(r"confidence 1\.00 \(high\)", r.text)


def test_the_calibration_is_worth_reading():
    # The levels the record ships separate what they promise: a higher level, a smaller typical width error,
    # and the estimate at medium or high beats the generic Gaussian more often than at low.
    for scale in ("2", "4"):
        bands = RECORD["scales"][scale]["bands"]
        assert bands["high"]["width_error"][1] <= bands["low"]["width_error"][1]
        assert bands["medium"]["beats_fixed"] >= bands["low"]["beats_fixed"]
