"""A physical 3-D forward model of a stack's spectra, for the axial estimate without optics.

For a statistically isotropic object of 3-D power spectrum ``S(|k|)`` imaged through a PSF of transfer
function ``OTF(k)``, the lines along x of one plane and the lines along z (sampled every ``z_step_um``) have the
spectra ``P_x(k_x) = ∬ S |OTF|² dk_y dk_z`` and ``P_z(k_z) = ∬ S |OTF|² dk_x dk_y``, aliased at their sampling.
Out-of-focus light (the widefield missing cone) is in ``OTF``, so the comparison holds for any object extent.
Each candidate objective (modality, immersion, NA) and object spectrum (a power law ``|k|^-β``) predicts
both; the lines' autocovariances are turned into expected periodograms exactly as the data's are taken
(:func:`._spectral.segment_design`: mean removed, Hann window), and the candidates are weighed by how well
they explain the lateral and the z spectra together.
"""
from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ..physics.metrics import profile_fwhm
from ..physics.optics import Optics, axial_fwhm_um, psf_3d
from ..records import record_values
from . import _spectral as sp

__all__ = ["Candidate", "candidates_for", "lateral_periodogram", "iter_fit_candidates", "BETAS", "IMMERSIONS", "score"]

BETAS = (2.0, 2.5, 3.0, 3.5, 4.0, 4.5)
"""Exponents tried for the object's power spectrum ``|k|^-β`` (2: sharp-edged objects; 4: smooth ones)."""
IMMERSIONS = (1.0, 1.333, 1.515)
"""Immersion indices tried (air, water, oil)."""
NAS = (0.55, 0.7, 0.85, 1.0, 1.15, 1.3, 1.4)
"""NAs tried (those below 0.97 of the immersion's index): the lateral kernel estimated without hints is too
unsure of its width to pin λ/NA, so the lateral lines' spectrum picks it with the rest."""
WAVELENGTH_UM = 0.52
"""Emission wavelength of the candidates: with λ/NA pinned by the lateral PSF, λ itself matters little."""
LATERAL_SIDE = 33
"""Lateral side of the candidates' 3-D PSFs (pixels)."""
MAX_HALF = 60
"""Most planes either side of focus in the candidates' PSFs (their fine z grid)."""
SEGMENT_X = 32
"""Length of the lateral segments (pixels) whose periodogram is compared."""


@dataclass(frozen=True)
class Candidate:
    """One candidate objective and object spectrum with its fit."""

    optics: Optics
    beta: float
    d_x: float
    d_z: float
    gain_ratio: float
    on_axis_fwhm_um: float


def candidates_for() -> list[Optics]:
    """Widefield and confocal objectives into air, water and oil over the NA grid."""
    return [Optics(modality=m, na=na, wavelength_um=WAVELENGTH_UM, n_immersion=n)
            for m in ("widefield", "confocal") for n in IMMERSIONS for na in NAS if na <= 0.97 * n]


def lateral_periodogram(planes: np.ndarray, var: float, n: int = SEGMENT_X
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """``(clean, band, noise, u, norm)``: mean periodogram of ``n``-pixel segments of the x and y lines of
    ``planes`` with the white noise ``var`` removed, and the band where the signal stands above the noise."""
    u, norm = sp.segment_design(n)
    total = np.zeros(u.shape[1])
    count = 0
    for axis in (-1, -2):
        a = np.moveaxis(np.asarray(planes, dtype=np.float64), axis, 0)
        for s0 in range(0, a.shape[0] - n + 1, n // 2):
            p, c = sp.z_periodogram([a[s0:s0 + n]], u, norm)
            total += p * c
            count += c
    p = total / max(count, 1)
    noise = var * (np.abs(u) ** 2).sum(axis=0) / norm
    clean = p - noise
    band = np.zeros(p.size, bool)
    band[1:] = clean[1:] > 0.25 * noise[1:]
    bad = np.nonzero(~band[1:])[0]
    if bad.size:
        band[1 + bad[0]:] = False
    return np.clip(clean, 1e-300, None), band, noise, u, norm


def _expected(r: np.ndarray, u: np.ndarray, norm: float) -> np.ndarray:
    n = u.shape[0]
    idx = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    return np.einsum("if,ij,jf->f", u.conj(), r[idx], u).real / norm


def iter_fit_candidates(optics_list: list[Optics], pixel_um: float, z_step_um: float,
                        x_spec: tuple[np.ndarray, np.ndarray, np.ndarray, float],
                        z_spec: tuple[np.ndarray, np.ndarray, np.ndarray, float]
                        ) -> Generator[float, None, list[Candidate]]:
    """Every candidate objective × object exponent with its log-spectral distances on the lateral
    (``x_spec`` = clean periodogram, band, U, norm) and z (``z_spec``) segments; yields the share done after
    each objective."""
    cx, bx, ux, nx_norm = x_spec
    cz, bz, uz, nz_norm = z_spec
    lx, lz = ux.shape[0], uz.shape[0]
    f = max(1, round(z_step_um / pixel_um))
    dzf = z_step_um / f
    out = []
    grids: dict[int, np.ndarray] = {}
    nlat = 1 << math.ceil(math.log2(max(2 * LATERAL_SIDE, 2 * lx)))
    for j, o in enumerate(optics_list):
        half = min(MAX_HALF, math.ceil(3.0 * axial_fwhm_um(o) / dzf))
        psf = psf_3d(o, pixel_um, dzf, shape=(2 * half + 1, LATERAL_SIDE, LATERAL_SIDE), oversample=1)
        nzp = 1 << math.ceil(math.log2(max(2 * psf.shape[0], 2 * lz * f)))
        otf2 = (np.abs(np.fft.rfftn(psf, (nzp, nlat, nlat), axes=(0, 1, 2))) ** 2).astype(np.float32)
        otf2[..., 1:-1] *= 2  # the half spectrum stands for both halves along x
        if nzp not in grids:
            kz = np.fft.fftfreq(nzp, dzf)
            ky = np.fft.fftfreq(nlat, pixel_um)
            kx = np.fft.rfftfreq(nlat, pixel_um)
            k2 = kz[:, None, None] ** 2 + ky[None, :, None] ** 2 + kx[None, None, :] ** 2
            k2[0, 0, 0] = (0.5 * min(abs(kz[1]), abs(kx[1]))) ** 2
            grids[nzp] = (-0.5 * np.log(k2)).astype(np.float32)
        logk = grids[nzp]
        c = LATERAL_SIDE // 2
        fw = profile_fwhm(psf[:, c, c], dzf)
        for beta in BETAS:
            power = np.exp(beta * logk) * otf2
            r_z = np.fft.ifft(power.sum(axis=(1, 2), dtype=np.float64)).real[::f][:lz]
            p_x = power.sum(axis=(0, 1), dtype=np.float64)
            r_x = np.fft.irfft(p_x, nlat)[:lx]
            m_z, m_x = _expected(r_z, uz, nz_norm), _expected(r_x, ux, nx_norm)
            d_z, g_z = sp.log_distance(cz, np.clip(m_z, 1e-300, None), bz)
            d_x, g_x = sp.log_distance(cx, np.clip(m_x, 1e-300, None), bx)
            # Per sample, the z and lateral lines hold the same variance; their gains would agree.
            ratio = g_z / g_x if g_x > 0 else math.inf
            out.append(Candidate(o, beta, d_x, d_z, ratio, fw))
        yield (j + 1) / len(optics_list)
    return out


WEIGHTS: dict[str, float] = record_values("axial")["forward"]
"""Weights of :func:`score`, fitted by ``benchmarks/calibrate_axial.py`` (record ``axial``): ``lateral_weight``
on the lateral lines' squared log-spectral distance (the z lines' weighs 1), ``gain_weight`` on the squared log
of the z-to-lateral gain ratio (both line sets sample one object, so a candidate that explains their shapes
only with unequal powers is less likely)."""


def score(c: Candidate, gain_weight: float | None = None, lateral_weight: float | None = None) -> float:
    """How badly a candidate explains the spectra (lower is better); the weights default to :data:`WEIGHTS`."""
    gain_weight = WEIGHTS["gain_weight"] if gain_weight is None else gain_weight
    lateral_weight = WEIGHTS["lateral_weight"] if lateral_weight is None else lateral_weight
    return lateral_weight * c.d_x ** 2 + c.d_z ** 2 + gain_weight * math.log(max(c.gain_ratio, 1e-12)) ** 2
