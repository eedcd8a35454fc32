"""PSF kernels on a pixel grid: widefield and confocal, 2-D lateral and 3-D, integrated over each pixel.

Every kernel follows :mod:`napari_kernelgan.physics.conventions`: odd sizes, the point's image centred
on the middle pixel (the grid is laid symmetrically about it, so no resampling is needed), correlation
orientation (a rotationally symmetric PSF is its own flip), normalised to sum 1.

The radial intensity (:func:`~.pupil.radial_intensity`) is evaluated once on a fine set of radii and
interpolated onto a grid ``oversample`` times finer than the pixels, which is then summed over each
pixel: what a camera pixel (or a scanned confocal pixel) integrates.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from scipy import signal

from ...errors import BadInputError, Param
from .params import Optics
from .pupil import pupil_energy, radial_intensity

__all__ = ["psf_2d", "psf_3d", "support_for", "axial_fwhm_um", "best_focus_um"]

MAX_FINE = 4096
"""The largest side of the supersampled grid (memory: 4096² float64 is 128 MiB per plane)."""
PLANE_BUDGET = 1 << 23
"""Supersampled values computed at once in a stack (64 MiB of float64); more planes go in several passes."""


def _odd(name: str, value: int) -> int:
    if int(value) != value or value < 1 or int(value) % 2 == 0:
        raise BadInputError(Param(name, value), " must be a positive odd number (a kernel has a middle pixel)")
    return int(value)


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise BadInputError(Param(name, value), " must be a positive length in µm")
    return value


def _oversample(optics: Optics, pixel_um: float, oversample: int | None) -> int:
    if oversample is not None:
        return _odd("oversample", oversample)
    # At least 5 sub-pixels, and sub-pixels no larger than λ/(10 NA) (a tenth of the Airy radius's scale).
    need = math.ceil(pixel_um * 10 * optics.na / min(optics.wavelength_um, optics.excitation_wavelength_um))
    return max(5, need + 1 - need % 2)


def _radii(n_fine: int, sub: float) -> np.ndarray:
    return (np.arange(n_fine) - (n_fine - 1) / 2) * sub


class _Radial:
    """Radial profiles at one wavelength for planes ``z``, sampled finely enough to interpolate linearly."""

    def __init__(self, optics: Optics, r_max: float, z: np.ndarray, wavelength_um: float) -> None:
        self.step = min(wavelength_um / (optics.na * 128), max(r_max, 1e-9) / 8)
        r = np.arange(0.0, r_max + 2 * self.step, self.step)
        self.profiles = radial_intensity(optics, r, z, wavelength_um)

    def on(self, radius: np.ndarray, planes: slice) -> np.ndarray:
        """The profiles of ``planes`` at the radii ``radius``: ``(n_planes, *radius.shape)``."""
        prof = self.profiles[planes]
        pos = radius.ravel() / self.step
        i0 = np.minimum(pos.astype(np.intp), prof.shape[1] - 2)
        frac = pos - i0
        return (prof[:, i0] * (1 - frac) + prof[:, i0 + 1] * frac).reshape((len(prof), *radius.shape))


def _disk(radius_um: float, sub: float) -> np.ndarray:
    """A uniform disk (the pinhole) on the fine grid, each sub-pixel weighted by its covered area, sum 1."""
    half = int(math.ceil(radius_um / sub - 0.5)) if radius_um > sub / 2 else 0
    taps = 8
    offs = (np.arange(taps) + 0.5) / taps - 0.5
    c = np.arange(-half, half + 1)
    fx = (c[:, None] + offs[None, :]).ravel() * sub
    inside = (fx[:, None] ** 2 + fx[None, :] ** 2) <= radius_um**2
    area = inside.reshape(2 * half + 1, taps, 2 * half + 1, taps).mean(axis=(1, 3))
    if area.sum() == 0:  # a pinhole smaller than a sub-pixel: a point detector
        area[half, half] = 1.0
    return area / area.sum()


def _planes(optics: Optics, pixel_um: float, shape_yx: tuple[int, int], z: np.ndarray, oversample: int
            ) -> np.ndarray:
    """Pixel-integrated PSF planes ``(nz, ny, nx)``; widefield in energy per pixel (sums to ≤ 1)."""
    sub = pixel_um / oversample
    ny, nx = (n * oversample for n in shape_yx)
    if max(ny, nx) > MAX_FINE:
        raise BadInputError(f"a {shape_yx[0]}×{shape_yx[1]} kernel at pixel_um={pixel_um:g} needs a "
                            f"{ny}×{nx} supersampled grid (at most {MAX_FINE}): ask for a smaller size or "
                            "larger pixels")
    pad = 0
    disk = None
    if optics.modality == "confocal":
        radius = optics.pinhole_au * optics.airy_unit_um / 2
        disk = _disk(radius, sub)
        pad = disk.shape[0] // 2
    y, x = _radii(ny + 2 * pad, sub), _radii(nx + 2 * pad, sub)
    radius = np.hypot(y[:, None], x[None, :])
    emission = _Radial(optics, float(radius.max()), z, optics.wavelength_um)
    if disk is not None:
        inner = radius[pad:radius.shape[0] - pad, pad:radius.shape[1] - pad]
        excitation = _Radial(optics, float(inner.max()), z, optics.excitation_wavelength_um)
    out = np.empty((len(z), *shape_yx))
    chunk = max(1, PLANE_BUDGET // radius.size)  # planes per pass: memory stays bounded for any stack
    for start in range(0, len(z), chunk):
        planes = slice(start, start + chunk)
        fine = emission.on(radius, planes)
        if disk is not None:
            detected = signal.fftconvolve(fine, disk[None], mode="valid", axes=(1, 2)) if pad else fine
            fine = excitation.on(inner, planes) * np.clip(detected, 0, None)
        out[planes] = fine.reshape(len(fine), shape_yx[0], oversample, shape_yx[1], oversample).sum(axis=(2, 4))
    return out * sub**2


def psf_2d(optics: Optics, pixel_um: float, size: int | None = None, z_um: float = 0.0, *,
           oversample: int | None = None, normalise: bool = True) -> np.ndarray:
    """The lateral PSF at ``z_um`` from the focal plane, integrated over ``pixel_um`` pixels, sum 1.

    ``size`` (odd) defaults to :func:`support_for` (99 % of the mass). ``oversample``: sub-pixels per
    pixel side for the integration (odd, default at least 5 and fine enough for the wavelength).
    ``normalise=False`` keeps the widefield kernel in absolute units, the fraction of the point's light
    each pixel receives (its sum is the light falling inside the kernel); a confocal one is then in
    arbitrary units.
    Measured here (2 shared cores, best of 3): a 41×41 widefield kernel in 0.003 s, confocal (1 AU) in 0.012 s.
    """
    pixel_um = _positive("pixel_um", pixel_um)
    if size is None:
        size = support_for(optics, pixel_um=pixel_um, z_um=z_um)
    size = _odd("size", size)
    planes = _planes(optics, pixel_um, (size, size), np.array([float(z_um)]), _oversample(optics, pixel_um,
                                                                                            oversample))
    return planes[0] / planes[0].sum() if normalise else planes[0]


def axial_fwhm_um(optics: Optics) -> float:
    """Closed-form axial FWHM of the widefield PSF: 0.88 λ / (n - √(n² - NA²)).

    The on-axis intensity of a uniform spherical wave converging in a medium of index ``n`` is
    ``sinc²(k z n (1 - cos α) / 2)``, whose FWHM is 0.886 λ / (n (1 - cos α)) with ``n sin α = NA``
    (Born & Wolf, *Principles of Optics*, §8.8; the rule of thumb of Booth et al., "Microscope
    resolution estimation and normalised coordinates", aomicroscopy.org/resolution-notes). The
    Born-Wolf pupil (uniform in ρ) weights the rim less, so the model's axial FWHM is a few per cent longer.
    """
    n = optics.n_immersion
    return 0.88 * optics.wavelength_um / (n - math.sqrt(n**2 - optics.na**2))


def best_focus_um(optics: Optics, search_um: float | None = None) -> float:
    """The ``z_um`` (stage position from the focus, µm, positive deeper) that images the point brightest.

    Index mismatch at depth shifts the focus (oil into water: the stage must go deeper than the
    point) and spherical aberration makes the shift depend on the aperture; a microscopist focuses
    on the brightest plane, so ``psf_2d(optics, pixel_um, z_um=best_focus_um(optics))`` is the PSF of
    an image taken in focus. Searched over ±``search_um`` (default: 4 axial FWHMs plus a third of the
    depth) in steps of a hundredth of the axial FWHM.
    """
    step = axial_fwhm_um(optics) / 100
    reach = 4 * axial_fwhm_um(optics) + optics.depth_um / 3 if search_um is None else float(search_um)
    z = np.arange(-math.ceil(reach / step), math.ceil(reach / step) + 1) * step - optics.defocus_um
    on_axis = radial_intensity(optics, [0.0], z)[:, 0]
    return float(z[int(np.argmax(on_axis))])


def on_axis_reach_um(optics: Optics, floor: float = 0.01, step_um: float | None = None) -> float:
    """How far (µm) from the best focus (:func:`best_focus_um`) the on-axis intensity stays above ``floor`` of its
    peak, on either side: the z extent a 3-D PSF needs. Index mismatch at depth stretches it well beyond the
    closed-form FWHM (:func:`axial_fwhm_um`): an NA 1.4 oil objective 10 µm into index 1.36 reaches 2.3× as
    far as matched. The confocal on-axis profile is taken as the widefield one to the power 1.5 (excitation times
    a detection wider than it). Sampled every ``step_um`` (default a twentieth of the closed-form FWHM)."""
    focus = best_focus_um(optics)
    reach = 8 * axial_fwhm_um(optics) + 0.5 * optics.depth_um
    step = axial_fwhm_um(optics) / 20 if step_um is None else _positive("step_um", step_um)
    z = np.arange(-reach, reach + step, step)
    on_axis = radial_intensity(optics, [0.0], z + focus)[:, 0]
    if optics.modality == "confocal":
        on_axis = on_axis ** 1.5
    above = np.nonzero(on_axis >= floor * on_axis.max())[0]
    return float(max(abs(z[above[0]]), abs(z[above[-1]])))


def psf_3d(optics: Optics, pixel_um: float, z_step_um: float, shape: tuple[int, int, int] | None = None, *,
           oversample: int | None = None) -> np.ndarray:
    """The 3-D PSF ``(z, y, x)``, planes ``z_step_um`` apart centred on the focal plane, sum 1.

    Positive ``z`` is deeper into the sample. ``shape`` (all odd) defaults to the in-focus lateral
    support (:func:`support_for`) and planes over ±3 closed-form axial FWHMs (:func:`axial_fwhm_um`).
    Each plane is integrated over the pixel area (not along z). Measured here (2 shared cores): a
    65×65×65 widefield PSF in 0.18 s, confocal (1 AU) in 0.93 s.
    """
    pixel_um = _positive("pixel_um", pixel_um)
    z_step_um = _positive("z_step_um", z_step_um)
    if shape is None:
        lateral = support_for(optics, pixel_um=pixel_um)
        half = math.ceil(3 * axial_fwhm_um(optics) / z_step_um)
        shape = (2 * half + 1, lateral, lateral)
    if len(shape) != 3:
        raise BadInputError(Param("shape", tuple(shape)), " must be (z, y, x)")
    nz, ny, nx = (_odd("shape", n) for n in shape)
    z = (np.arange(nz) - nz // 2) * z_step_um
    planes = _planes(optics, pixel_um, (ny, nx), z, _oversample(optics, pixel_um, oversample))
    return planes / planes.sum()


def focused_psf_3d(optics: Optics, pixel_um: float, z_step_um: float,
                   shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """:func:`psf_3d` centred where a microscopist focuses: its plane 0 at :func:`best_focus_um`, then its on-axis
    centre of mass moved onto the middle plane (to a twentieth of a plane).

    Index mismatch moves and skews a PSF along z; a stack is registered to what it shows, so the PSF that
    blurs (the generator's) and the PSF that deconvolves (the axial SR's) are both centred this way, or the
    result shifts in z against its input planes. A matched objective is symmetric about its nominal focus and is
    returned exactly as :func:`psf_3d` gives it.
    """
    focus = best_focus_um(optics)
    if focus == 0:
        return psf_3d(optics, pixel_um, z_step_um, shape)
    centred = replace(optics, defocus_um=optics.defocus_um + focus)
    full = psf_3d(centred, pixel_um, z_step_um, shape)
    # The centring looks only at the on-axis column, which a pixel-integrated model computes the same on any
    # lateral grid (the pinhole's padding included): iterate on that column alone, then make the PSF once.
    nz = full.shape[0]
    column = full[:, full.shape[1] // 2, full.shape[2] // 2]
    moved = False
    for _ in range(6):
        com = float((np.arange(nz) - nz // 2) @ column / column.sum())
        if abs(com) < 0.05:
            break
        centred = replace(centred, defocus_um=centred.defocus_um + com * z_step_um)
        column = psf_3d(centred, pixel_um, z_step_um, (nz, 1, 1))[:, 0, 0]
        moved = True
    return psf_3d(centred, pixel_um, z_step_um, full.shape) if moved else full


def _smallest_side(k: np.ndarray, total: float, mass: float) -> int | None:
    """Smallest odd side whose centred square holds ``mass`` of ``total``, else ``None``."""
    n = min(k.shape)
    c0, c1 = k.shape[0] // 2, k.shape[1] // 2
    integral = np.pad(k, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    for side in range(1, n + 1, 2):
        h = side // 2
        r0, r1, q0, q1 = c0 - h, c0 + h + 1, c1 - h, c1 + h + 1
        held = integral[r1, q1] - integral[r0, q1] - integral[r1, q0] + integral[r0, q0]
        if held >= mass * total:
            return side
    return None


def support_for(psf_or_optics: np.ndarray | Optics, mass: float = 0.99, *, pixel_um: float | None = None,
                z_um: float = 0.0) -> int:
    """The smallest odd side of a centred square holding at least ``mass`` of the PSF.

    For an array (2-D, or 3-D summed over z) the mass is its own sum. For :class:`Optics` (needs
    ``pixel_um``) the widefield mass is counted against the light reaching the image plane (the pupil's
    energy, known exactly), so the slowly decaying Airy rings outside any grid are counted; a confocal
    PSF decays fast and is counted against a grid four times wider than the answer.
    """
    if not 0 < mass < 1:
        raise BadInputError(Param("mass", mass), " must be a fraction between 0 and 1")
    if not isinstance(psf_or_optics, Optics):
        k = np.asarray(psf_or_optics, dtype=np.float64)
        if k.ndim == 3:
            k = k.sum(axis=0)
        if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
            raise BadInputError(f"a PSF must be a 2-D or 3-D array of odd lateral sizes, got shape {k.shape}")
        side = _smallest_side(k, float(k.sum()), mass)
        return min(k.shape) if side is None else side
    optics = psf_or_optics
    if pixel_um is None:
        raise BadInputError("the support of a PSF model depends on the pixel size: give ", Param("pixel_um",
                            bare=True))
    pixel_um = _positive("pixel_um", pixel_um)
    z = np.array([float(z_um)])
    # Outside a radius r the Airy pattern holds about 2/(π k NA r) of the light; defocus spreads it by |z| tan α.
    k_na = 2 * np.pi / optics.wavelength_um * optics.na
    reach = 2 / (np.pi * (1 - mass) * k_na) if optics.modality == "widefield" else 2 * optics.airy_unit_um
    reach += abs(z_um + optics.defocus_um) * optics.na / math.sqrt(optics.n_immersion**2 - min(
        optics.na, 0.999 * optics.n_immersion) ** 2) + optics.depth_um * 0.05
    while True:
        half = max(3, math.ceil(reach / pixel_um))
        size = 2 * half + 1
        oversample = _oversample(optics, pixel_um, None)
        oversample = max(1, min(oversample, (MAX_FINE // size) - (MAX_FINE // size + 1) % 2))
        if size > MAX_FINE:
            raise BadInputError(f"{mass:.0%} of this PSF spreads over more than {MAX_FINE} pixels of "
                                f"{pixel_um:g} µm: use larger pixels or a smaller ", Param("mass", mass))
        k = _planes(optics, pixel_um, (size, size), z, oversample)[0]
        if optics.modality == "widefield":
            total = pupil_energy(optics, z_um)
        else:
            total = float(k.sum())
        side = _smallest_side(k, total, mass)
        if side is not None and (optics.modality == "widefield" or 4 * side <= size):
            return side
        reach *= 2
