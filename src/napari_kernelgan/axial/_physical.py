"""Physical 3-D PSFs as the spectral axial estimate sees them: the effective extra z blur each one gives an
isotropic object, and its on-axis profile, both on the data's lateral pixel grid.

For a 3-D PSF with transfer function ``OTF``, lines along x of an isotropic object have the power transfer
``T_x(f) = Σ_{fy, fz} |OTF(f, fy, fz)|²`` and lines along z ``T_z(f) = Σ_{fx, fy} |OTF(fx, fy, f)|²``; the
effective extra blur along z has ``|h(f)|² = T_z(f) / T_x(f)``. For a separable (confocal-like) PSF this is the
axial profile over the lateral one; a widefield PSF's out-of-focus light makes it wider than its on-axis
profile alone implies, which is why the on-axis profile is taken from the model that matches, not from ``h``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from ..physics.optics import Optics, axial_fwhm_um, psf_3d
from .psf import centre_profile

__all__ = ["PhysicalShape", "physical_shape", "candidate_optics", "GENERIC_OPTICS", "stretched"]

MAX_LATERAL = 31
"""Lateral side of the model PSFs (pixels): enough for the transfer ratios, bounded for speed."""

GENERIC_OPTICS = (
    Optics(modality="widefield", na=1.4, wavelength_um=0.52, n_immersion=1.515),
    Optics(modality="widefield", na=1.2, wavelength_um=0.52, n_immersion=1.333),
    Optics(modality="widefield", na=0.9, wavelength_um=0.52, n_immersion=1.0),
    Optics(modality="confocal", na=1.4, wavelength_um=0.52, n_immersion=1.515),
    Optics(modality="confocal", na=1.0, wavelength_um=0.52, n_immersion=1.333),
)
"""The shapes tried when the optics are unknown (each stretched along z to fit: the shape matters, not the
wavelength or NA)."""

MISMATCH_DEPTHS_UM = (5.0, 10.0, 20.0)
"""Depths tried for an oil objective imaging into a watery sample when the sample's index is not given."""


@dataclass(frozen=True)
class PhysicalShape:
    """One model's effective z blur ``g = h ⋆ h`` (lags in pixels, centred) and on-axis profile (every pixel)."""

    optics: Optics
    g: np.ndarray
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
    psf = psf[lo:lo + 2 * half_z + 1]
    c = MAX_LATERAL // 2
    on_axis = psf[:, c, c]
    n = 1 << math.ceil(math.log2(4 * (2 * half_z + 1)))
    tz = (np.abs(np.fft.rfft(psf.reshape(psf.shape[0], -1), n, axis=0)) ** 2).sum(axis=1)
    tx = (np.abs(np.fft.rfft(np.moveaxis(psf, 2, 0).reshape(MAX_LATERAL, -1), n, axis=0)) ** 2).sum(axis=1)
    ratio = np.where(tx > tx[0] * 1e-8, tz / np.maximum(tx, 1e-300), 0.0)
    ratio /= ratio[0]
    g = np.fft.fftshift(np.fft.irfft(ratio, n))
    keep = min(n // 2 - 1, 2 * half_z)
    g = np.clip(g[n // 2 - keep:n // 2 + keep + 1], 0.0, None)
    from ..physics.metrics import profile_fwhm

    return PhysicalShape(optics=optics, g=g / g.sum(), on_axis=centre_profile(on_axis),
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
