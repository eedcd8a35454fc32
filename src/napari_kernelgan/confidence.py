"""What an estimate's confidence means, in the terms of the person who has to decide whether to use it.

The ``auto`` estimator's confidence is a number in [0, 1]; on its own it says little (a fluorescence image's
kernel can be accurate at 0.2). :func:`read_confidence` turns it into a level (``high``, ``medium``, ``low``),
the typical relative error of the kernel's width at that level (its lower and upper quartile), how often an
estimate at that level was closer to the truth than the generic (fixed) Gaussian, a one-sentence text and advice.

All of these numbers are measured, not chosen: ``benchmarks/calibrate_confidence.py`` runs ``auto`` on DIV2KRK
development images (×2, ×4, ×2 with noise) and on generated noisy fluorescence, fits the level thresholds and
bands with two-fold cross-validation (``docs/calibration_confidence.txt``) and writes them to the record
``confidence`` (``napari_kernelgan/records/confidence.json``), loaded here once at import. The wording and the
advice are the only design choices in this module.

    reading = read_confidence(estimate.confidence, scale=2)
    if reading is not None and not reading.trusted:
        warnings.warn(reading.text + "; " + reading.advice)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .records import record_values

__all__ = ["ConfidenceReading", "LEVELS", "read_confidence", "calibrated_scales"]

LEVELS = ("low", "medium", "high")
_CALIBRATION = record_values("confidence")
_SCALES: dict[int, dict] = {int(s): v for s, v in _CALIBRATION["scales"].items()}

_ADVICE = {
    "high": "the kernel can be used as it is",
    "medium": "usable; super-resolution regularises a little more at this confidence, and a bead measurement "
              "gives the exact PSF",
    "low": "use a bead measurement (the 'spots' estimator on beads) or a larger crop with sharp edges or small "
           "bright spots; super-resolution will regularise strongly",
}


@dataclass(frozen=True)
class ConfidenceReading:
    """A confidence as a level, an error band and advice (see :func:`read_confidence`)."""

    confidence: float
    level: str                        # "high" | "medium" | "low"
    width_error: tuple[float, float]  # typical relative error of the kernel's width (lower, upper quartile)
    beats_fixed: float                # fraction of calibration cases at this level closer to the truth than the
    #                                   fixed Gaussian
    trusted: bool                     # False: the estimate is likely no better than a generic Gaussian
    text: str                         # one sentence for a status line or a layer tooltip
    advice: str                       # what to do about it


def calibrated_scales() -> list[int]:
    """The SR scales the record holds a calibration for (other scales use the nearest)."""
    return sorted(_SCALES)


def _calibration(scale: int) -> dict:
    # The nearest calibrated scale; a tie goes to the smaller one (the milder blur).
    return _SCALES[min(_SCALES, key=lambda s: (abs(s - int(scale)), s))]


def _percent(lo: float, hi: float) -> str:
    return f"{round(100 * lo)}–{round(100 * hi)} %"


def read_confidence(confidence: float | None, *, scale: int = 2) -> ConfidenceReading | None:
    """The level, width-error band, record against the fixed Gaussian, text and advice for ``confidence``.

    ``None`` (or NaN: an estimator that gives no confidence) gives ``None``. ``scale`` picks the calibration
    (×2 or ×4; other scales use the nearest).
    """
    if confidence is None or not math.isfinite(float(confidence)):
        return None
    c = min(1.0, max(0.0, float(confidence)))
    cal = _calibration(scale)
    low, high = cal["thresholds"]
    level = "low" if c < low else "medium" if c < high else "high"
    band = cal["bands"][level]
    lo, hi = (float(v) for v in band["width_error"])
    beats = float(band["beats_fixed"])
    trusted = level != "low"
    tenths = math.floor(10 * beats + 0.5)   # half up: 85 % reads "9 of 10"
    if trusted:
        text = (f"confidence {c:.2f} ({level}): kernel width typically within {_percent(lo, hi)}; "
                f"better than a generic Gaussian on {tenths} of 10 similar images")
    else:
        text = (f"confidence {c:.2f} (low): kernel width typically off by {_percent(lo, hi)}; "
                f"better than a generic Gaussian on only {tenths} of 10 similar images")
    return ConfidenceReading(confidence=c, level=level, width_error=(lo, hi), beats_fixed=beats, trusted=trusted,
                             text=text, advice=_ADVICE[level])
