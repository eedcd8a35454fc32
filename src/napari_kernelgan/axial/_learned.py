"""The learned optics estimate of a z-stack given without optics (record ``axial_optics``).

Ridge models on the stack's spectral features (:mod:`._features`, expanded by :func:`expand_features`) predict
the log axial FWHM (as its ratio to the z step), the log lateral FWHM (on the data's pixel grid) and the modality;
they were fitted on generated development stacks by ``benchmarks/calibrate_axial_optics.py``, which chose their
inputs, targets and penalties by cross-validation grouped by object kind. The residual model fitted there (the
expected error of the axial width from the same inputs) gives the confidence.
The physical model (:func:`choose_optics`) is the objective whose PSF reproduces the predicted widths: for an
aberration-free objective the PSF scales with the wavelength, so for each immersion and NA of the record's table
the axial width fixes the wavelength and the lateral width on the pixel grid picks among them.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..physics.optics import Optics, psf_2d
from ..records import record_values
from ._features import feature_names

__all__ = ["Prediction", "predict", "choose_optics", "forward_agreement_width", "expand_features",
           "EXPANSION_BLOCKS", "WAVELENGTH_RANGE"]

WAVELENGTH_RANGE = (0.44, 0.70)
"""Emission wavelengths (µm) a chosen model may have."""
PREFERRED_WAVELENGTH = 0.55
"""Among models that fit equally, the one nearest this emission (green) is chosen."""


@functools.cache
def _model() -> dict[str, Any]:
    v = record_values("axial_optics")
    out: dict[str, Any] = {k: np.asarray(v[k]) for k in ("features_mean", "features_std", "expanded_mean",
                                                         "expanded_std")}
    out["models"] = {name: np.asarray(m["weights"]) for name, m in v["models"].items()}
    # A model fitted on a target relative to a raw feature (the axial width over the z step) adds it back.
    names = feature_names()
    out["offsets"] = {name: (names.index(m["offset_feature"]) if m.get("offset_feature") else None)
                      for name, m in v["models"].items()}
    out["confidence"] = {**v["confidence"], "weights": np.asarray(v["confidence"]["weights"])}
    out["table"] = v["optics_table"]
    out["forward_agreement"] = v["forward_agreement"]
    out["widefield_margin"] = v["widefield_margin"]
    return out


def forward_agreement_width() -> float:
    """``w`` of the confidence's factor ``exp(−(ln(forward / learned)/w)²)`` (record ``axial_optics``)."""
    return float(_model()["forward_agreement"]["width"])


@dataclass(frozen=True)
class Prediction:
    """The learned estimate: widths (µm), modality (and its score, positive for confocal), the expected relative
    error of the axial width and the confidence."""

    axial_fwhm_um: float
    lateral_fwhm_um: float
    modality: str
    confocal_score: float
    expected_error: float
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        """Plain values for ``qc``."""
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


EXPANSION_BLOCKS = ("x", "x^2", "x^3", "x*log_ratio", "x*log_pixel", "x*z_blur", "x*z_blur_band")
"""The blocks of :func:`expand_features`, in order (each as many columns as there are features)."""


def expand_features(x: np.ndarray) -> np.ndarray:
    """The models' inputs from standardised features ``x`` (one vector, or one row per stack): the features, their
    squares and cubes, and their products with the log z-step-to-pixel ratio and the log pixel size (the spectra's
    bins sit at frequencies relative to each axis's Nyquist; these products let a linear model read them in
    physical units) and with the spectral z-blur fit's width and band (how much axial blur, and how far above the
    noise it is seen)."""
    x = np.asarray(x, dtype=np.float64)
    names = feature_names()
    factors = [x[..., names.index(n):names.index(n) + 1] for n in ("log_ratio", "log_pixel", "z_blur", "z_blur_band")]
    return np.concatenate([x, x ** 2, x ** 3] + [x * f for f in factors], axis=-1)


def _inputs(features: np.ndarray) -> np.ndarray:
    m = _model()
    x = (np.asarray(features, dtype=np.float64) - m["features_mean"]) / m["features_std"]
    return (expand_features(x) - m["expanded_mean"]) / m["expanded_std"]


def widefield_margin() -> float:
    """How far below zero the confocal score must be for a widefield reading (record ``axial_optics``: the least
    expected cost of misreadings on development stacks). A widefield model sends ``auto`` down the 3-D path,
    which can lose many dB on a confocal stack; a confocal one sends it to the network, which on a widefield
    stack only gains less, so a doubtful score reads confocal."""
    return float(_model()["widefield_margin"]["margin"])


def predict(features: np.ndarray) -> Prediction:
    """The :class:`Prediction` for one stack's feature vector (:func:`._features.stack_features`)."""
    m = _model()
    z = _inputs(features)
    raw = np.asarray(features, dtype=np.float64)
    out = {name: float(w[:-1] @ z + w[-1]) + (0.0 if m["offsets"][name] is None else float(raw[m["offsets"][name]]))
           for name, w in m["models"].items()}
    c = m["confidence"]
    # The fitted residual model: the expected |log error| of the axial width for stacks like this one.
    expected = math.expm1(max(float(c["weights"][:-1] @ z + c["weights"][-1]), 0.0))
    confidence = float(np.clip(1.0 - expected / c["zero_at"], 0.05, 0.95))
    return Prediction(axial_fwhm_um=math.exp(out["log_axial"]), lateral_fwhm_um=math.exp(out["log_lateral"]),
                      modality="widefield" if out["confocal"] < -widefield_margin() else "confocal",
                      confocal_score=out["confocal"],
                      expected_error=expected, confidence=confidence)


def lateral_fwhm_on_grid(optics: Optics, pixel_um: float) -> float:
    """The FWHM (µm) of the line profile of ``optics``' in-focus PSF integrated over ``pixel_um`` pixels."""
    from ..physics.metrics import profile_fwhm
    from .psf import line_profile

    side = 2 * math.ceil(0.9 * optics.wavelength_um / optics.na / pixel_um) + 3
    return profile_fwhm(line_profile(psf_2d(optics, pixel_um, size=side)), pixel_um)


def choose_optics(axial_um: float, lateral_um: float, modality: str, pixel_um: float) -> Optics:
    """The aberration-free objective (record's table of immersions and NAs, any emission in
    :data:`WAVELENGTH_RANGE`) whose PSF has the axial FWHM ``axial_um`` and the lateral FWHM on the pixel grid
    nearest ``lateral_um``; where none can, the nearest in both (log distance)."""
    best: tuple[float, Optics] | None = None
    for row in _model()["table"]:
        if row["modality"] != modality:
            continue
        wl = axial_um / row["axial_per_wavelength"]
        miss = 0.0
        if not WAVELENGTH_RANGE[0] <= wl <= WAVELENGTH_RANGE[1]:
            clipped = float(np.clip(wl, *WAVELENGTH_RANGE))
            miss = math.log(wl / clipped) ** 2
            wl = clipped
        kw: dict[str, Any] = {"modality": modality, "na": row["na"], "wavelength_um": round(wl, 4),
                              "n_immersion": row["n_immersion"]}
        if modality == "confocal":
            kw["pinhole_au"] = 1.0
        o = Optics(**kw)
        d = miss + math.log(lateral_fwhm_on_grid(o, pixel_um) / lateral_um) ** 2
        d += 1e-3 * math.log(wl / PREFERRED_WAVELENGTH) ** 2
        if best is None or d < best[0]:
            best = (d, o)
    assert best is not None
    return best[1]
