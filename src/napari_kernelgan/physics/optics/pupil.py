"""The pupil and the radial diffraction integral (scalar Debye theory, circular pupil).

With the pupil radius normalised to 1 and ``s = NA ρ`` the sine of a ray's angle times its index, a
point's image is the field ``h(r, z) = ∫₀¹ P(ρ, z) J0(k NA r ρ) ρ dρ`` (``k = 2π / λ``), the
Kirchhoff/Debye integral reduced to one dimension by the pupil's rotational symmetry (Born & Wolf,
*Principles of Optics*, §8.8). The intensity ``4π (NA/λ)² |h|²`` is per µm² and integrates to
``∫ |P|² 2ρ dρ`` over the plane (Parseval): 1 for an unobstructed pupil, whatever the defocus.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import special

from .params import Optics

MAX_NODES = 4096
"""The most quadrature nodes one radial integral takes (a cap on the cost; far above what focus needs)."""

__all__ = ["optical_path_difference", "pupil_function", "radial_intensity", "pupil_energy", "ZERNIKE_SPHERICAL"]


def ZERNIKE_SPHERICAL(rho: np.ndarray) -> np.ndarray:  # noqa: N802 - a named polynomial
    """Primary spherical aberration, Noll-normalised (unit RMS over the pupil): √5 (6ρ⁴ - 6ρ² + 1)."""
    return np.sqrt(5.0) * (6 * rho**4 - 6 * rho**2 + 1)


def _root(n: float, s: np.ndarray) -> np.ndarray:
    # n cos θ of a ray with n sin θ = s; imaginary past the critical angle (an evanescent wave decays).
    return np.sqrt(n**2 - s.astype(np.complex128) ** 2)


def optical_path_difference(optics: Optics, rho: np.ndarray, z_um: np.ndarray | float) -> np.ndarray:
    """Gibson-Lanni optical path difference (µm) across the pupil, shape ``(len(z_um), len(rho))``.

    Gibson & Lanni (JOSA A 8, 1601, 1991): the path through the actual layers (sample to ``depth_um``,
    coverslip, immersion) minus the path through the objective's design (no sample layer, design
    coverslip and immersion), each layer adding ``t √(n² - s²)`` for a ray with ``s = NA ρ``. The
    stage is at the nominal focus on ``depth_um`` (it moved the immersion's thickness by that much)
    plus ``z_um + defocus_um``, positive deeper. Matched indices and the design layers leave only the
    defocus term ``-(z) √(n² - s²)``: the non-paraxial Debye defocus of the Born-Wolf model.
    Complex where a ray is evanescent in the sample (``s > n_sample``).
    """
    rho = np.asarray(rho, dtype=np.float64)
    z = np.atleast_1d(np.asarray(z_um, dtype=np.float64))[:, None] + optics.defocus_um
    s = optics.na * rho[None, :]
    n_i = optics.n_immersion
    n_i_design = n_i if optics.design_n_immersion is None else optics.design_n_immersion
    opd = (optics.depth_um * (_root(optics.sample_index, s) - _root(n_i, s))
           + optics.working_distance_um * (_root(n_i, s) - _root(n_i_design, s))
           + optics.coverslip_um * _root(optics.n_coverslip, s)
           - optics.design_coverslip_um * _root(optics.design_n_coverslip, s)
           - z * _root(n_i, s))
    return opd


def pupil_function(optics: Optics, rho: np.ndarray, z_um: np.ndarray | float, wavelength_um: float,
          model: str = "gibson_lanni") -> np.ndarray:
    """The complex pupil function ``P(ρ, z)`` (shape ``(len(z_um), len(rho))``) at ``wavelength_um``.

    ``model="gibson_lanni"`` takes the phase from :func:`optical_path_difference`; ``"born_wolf"``
    ignores the layers and the depth (an aberration-free objective in a medium of ``n_immersion``)
    and keeps only the defocus ``-k z √(n² - s²)``. Both add the ``spherical`` term.
    """
    rho = np.asarray(rho, dtype=np.float64)
    k = 2 * np.pi / wavelength_um
    if model == "gibson_lanni":
        opd = optical_path_difference(optics, rho, z_um)
    elif model == "born_wolf":
        z = np.atleast_1d(np.asarray(z_um, dtype=np.float64))[:, None] + optics.defocus_um
        opd = -z * _root(optics.n_immersion, optics.na * rho[None, :])
    else:
        raise ValueError(f"unknown PSF model {model!r}: 'gibson_lanni' or 'born_wolf'")
    phase = k * opd + 2 * np.pi * optics.spherical * ZERNIKE_SPHERICAL(rho)[None, :]
    return np.exp(1j * phase)


@functools.lru_cache(maxsize=32)
def _legendre(count: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(count)
    return (x + 1) / 2, w / 2


def _breaks(optics: Optics) -> list[float]:
    """Pupil radii where a layer's ``√(n² - s²)`` has its square-root kink (``s = n``): the segment ends."""
    indices = (optics.sample_index, optics.n_immersion, optics.n_coverslip, optics.design_n_coverslip,
               optics.design_n_immersion or optics.n_immersion)
    inner = sorted({n / optics.na for n in indices if n / optics.na < 1})
    return [0.0, *inner, 1.0]


def _nodes(optics: Optics, r_max: float, z_um: np.ndarray, wavelength_um: float, model: str
           ) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes and weights on [0, 1] for the radial integral, segment by segment.

    Each segment between kinks (:func:`_breaks`) is mapped by ``ρ = a + (b - a)(1 - cos πu) / 2``, which
    makes a square-root kink at either end smooth in ``u``; Gauss-Legendre nodes in ``u`` are counted
    from the integrand's oscillations there (J0's ``k NA r`` and the pupil phase's total variation).
    """
    v_max = 2 * np.pi / wavelength_um * optics.na * r_max
    probe = np.linspace(0.0, 1.0, 1025)
    z_ends = np.array([z_um.min(), z_um.max(), 0.0])
    edges = _breaks(optics) if model == "gibson_lanni" else [0.0, 1.0]
    rhos, weights = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        warp = a + (b - a) * (1 - np.cos(np.pi * probe)) / 2
        field = pupil_function(optics, warp, z_ends, wavelength_um, model)
        steps = np.abs(np.diff(np.unwrap(np.angle(field), axis=1), axis=1))
        lit = (np.abs(field[:, 1:]) > 1e-6) & (np.abs(field[:, :-1]) > 1e-6)
        variation = float((steps * lit).sum(axis=1).max())
        count = min(int(0.75 * (v_max * (b - a) + variation)) + 48, MAX_NODES)
        u, w = _legendre(count)
        rhos.append(a + (b - a) * (1 - np.cos(np.pi * u)) / 2)
        weights.append(w * (b - a) * np.pi / 2 * np.sin(np.pi * u))
    return np.concatenate(rhos), np.concatenate(weights)


def radial_intensity(optics: Optics, r_um: np.ndarray, z_um: np.ndarray | float = 0.0,
                     wavelength_um: float | None = None, model: str = "gibson_lanni") -> np.ndarray:
    """Intensity PSF (per µm², energy-normalised) at radii ``r_um`` and planes ``z_um``: ``(nz, nr)``.

    ``wavelength_um`` defaults to the emission wavelength. The integral is done by Gauss-Legendre
    quadrature with enough nodes for the fastest oscillation (``k NA r`` plus the pupil phase's), split
    where a ray turns evanescent in a layer.
    """
    lam = optics.wavelength_um if wavelength_um is None else wavelength_um
    r = np.asarray(r_um, dtype=np.float64)
    z = np.atleast_1d(np.asarray(z_um, dtype=np.float64))
    rho, w = _nodes(optics, float(r.max(initial=0.0)), z, lam, model)
    bessel = special.j0(np.outer(r, rho) * (2 * np.pi / lam * optics.na)) * (w * rho)[None, :]
    field = pupil_function(optics, rho, z, lam, model) @ bessel.T
    return 4 * np.pi * (optics.na / lam) ** 2 * np.abs(field) ** 2


def pupil_energy(optics: Optics, z_um: float = 0.0, wavelength_um: float | None = None,
                 model: str = "gibson_lanni") -> float:
    """``∫ |P|² 2ρ dρ``: the fraction of the emitted light that reaches the image plane (1 unless evanescent)."""
    lam = optics.wavelength_um if wavelength_um is None else wavelength_um
    rho, w = _nodes(optics, 0.0, np.atleast_1d(np.asarray(z_um, dtype=np.float64)), lam, model)
    amp = np.abs(pupil_function(optics, rho, z_um, lam, model)[0]) ** 2
    return float((amp * 2 * rho * w).sum())
