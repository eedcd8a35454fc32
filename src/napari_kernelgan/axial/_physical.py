"""Physical 3-D PSFs as the axial estimate uses them: the on-axis profile (its shape, and the span of widths the
given optics allow) on the data's lateral pixel grid.

With the optics given, the candidates are those optics and, for an oil objective whose sample index is not
stated, the same objective into water at a few depths; without optics, generic widefield and confocal shapes.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from ..physics.metrics import profile_fwhm
from ..physics.optics import Optics, axial_fwhm_um, psf_3d
from .psf import centre_profile

__all__ = ["PhysicalShape", "physical_shape", "candidate_optics", "GENERIC_OPTICS", "stretched"]

MAX_LATERAL = 3
"""Lateral side of the model PSFs (pixels): only the on-axis pixel is used."""

GENERIC_OPTICS = (
    Optics(modality="widefield", na=1.4, wavelength_um=0.52, n_immersion=1.515),
    Optics(modality="widefield", na=1.2, wavelength_um=0.52, n_immersion=1.333),
    Optics(modality="widefield", na=0.9, wavelength_um=0.52, n_immersion=1.0),
    Optics(modality="confocal", na=1.4, wavelength_um=0.52, n_immersion=1.515),
    Optics(modality="confocal", na=1.0, wavelength_um=0.52, n_immersion=1.333),
)
"""The shapes tried when the optics are unknown (the one nearest the measured width, stretched along z to it)."""

MISMATCH_DEPTHS_UM = (5.0, 10.0, 20.0)
"""Depths tried for an oil objective imaging into a watery sample when the sample's index is not given."""


@dataclass(frozen=True)
class PhysicalShape:
    """One model's on-axis profile (every pixel, centred) and its FWHM."""

    optics: Optics
    on_axis: np.ndarray
    on_axis_fwhm_um: float


def candidate_optics(optics: Optics | None) -> tuple[Optics, ...]:
    """The physical models the estimate compares: the given optics, and where an oil objective's sample index
    is not stated, the same objective into water at a few depths (the commonest mismatch); else the
    generic shapes."""
    if optics is None:
        return GENERIC_OPTICS
    out = [optics]
    if optics.n_sample is None and optics.n_immersion > 1.45 and optics.na > 1.0:
        out += [replace(optics, n_sample=1.33, depth_um=d) for d in MISMATCH_DEPTHS_UM]
    return tuple(out)


@functools.lru_cache(maxsize=32)
def physical_shape(optics: Optics, pixel_um: float) -> PhysicalShape:
    """The :class:`PhysicalShape` of ``optics`` on a ``pixel_um`` grid in all three directions (cached)."""
    fwhm = axial_fwhm_um(optics)
    mismatch = optics.n_sample is not None and abs(optics.n_sample - optics.n_immersion) > 1e-3
    half_z = math.ceil((4.0 if optics.modality == "widefield" else 3.0) * fwhm / pixel_um)
    # A mismatch moves the brightest plane (focal shift): model a wider range and keep the window about that plane.
    extra = math.ceil(optics.depth_um / 2 / pixel_um) if mismatch else 0
    half_z = min(150, half_z)
    extra = min(150, extra)
    psf = psf_3d(optics, pixel_um, pixel_um, shape=(2 * (half_z + extra) + 1, MAX_LATERAL, MAX_LATERAL))
    c = MAX_LATERAL // 2
    peak = int(np.argmax(psf[:, c, c]))
    lo = min(max(0, peak - half_z), psf.shape[0] - 2 * half_z - 1)
    on_axis = psf[lo:lo + 2 * half_z + 1, c, c]
    return PhysicalShape(optics=optics, on_axis=centre_profile(on_axis),
                         on_axis_fwhm_um=profile_fwhm(on_axis, pixel_um))


def stretched(profile: np.ndarray, factor: float, max_half: int | None = None) -> np.ndarray:
    """A centred profile stretched ``factor``× along its axis (linear interpolation, sum 1, odd, centred)."""
    p = np.asarray(profile, dtype=np.float64)
    half = p.size // 2
    new_half = max(1, math.ceil(half * factor))
    if max_half is not None:
        new_half = min(new_half, max_half)
    t = np.arange(-new_half, new_half + 1) / factor
    out = np.interp(t, np.arange(-half, half + 1), p, left=0.0, right=0.0)
    if out.sum() <= 0:
        out = np.zeros(3)
        out[1] = 1.0
    return out / out.sum()
