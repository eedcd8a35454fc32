"""Synthetic z-stacks with known 3-D PSF and isotropic truth, for tests and benchmarks of the axial tools.

* :func:`microscopy_volume` — a clean fluorescence object on an isotropic grid (nuclei as textured
  ellipsoids, filaments as 3-D curves, puncta, membranes as thin shells).
* :func:`axial_case` — one case: the object blurred by a physical 3-D PSF
  (:func:`napari_kernelgan.physics.optics.psf_3d`), every ``factor``-th plane kept (the conventions of
  :mod:`napari_kernelgan.axial.psf`: plane ``i`` of the stack is plane ``i * factor`` of the truth),
  Poisson and read noise in integer ADU; its truth is the object seen with the lateral resolution in all
  three directions (the in-focus lateral PSF, and its line profile along z).

Every generator takes a ``seed``; the same seed gives the same array.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

from .axial.psf import AxialPSF, line_profile, relative_profile
from .errors import BadOptionError
from .physics.metrics import profile_fwhm
from .physics.optics import Optics, focused_psf_3d

__all__ = ["VOLUME_KINDS", "microscopy_volume", "AxialCase", "axial_case", "blur3d", "true_axial_psf"]

VOLUME_KINDS = ("mixed", "nuclei", "filaments", "puncta", "membranes")


def _smooth(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return n / (n.std() + 1e-12)


def _ellipsoids(shape: tuple[int, int, int], rng: np.random.Generator, count: int, shell: bool) -> np.ndarray:
    out = np.zeros(shape)
    texture = _smooth(shape, 2.0, rng)
    grid = np.indices(shape, dtype=np.float64)
    size = min(shape)
    for _ in range(count):
        radii = rng.uniform(0.12, 0.25) * size * rng.uniform(0.6, 1.0, 3)
        centre = [rng.uniform(0, n) for n in shape]
        rot = np.linalg.qr(rng.standard_normal((3, 3)))[0]
        d = np.tensordot(rot, grid - np.asarray(centre)[:, None, None, None], axes=1) / radii[:, None, None, None]
        rho = np.sqrt((d ** 2).sum(0))
        edge = (rho - 1.0) * radii.min()
        if shell:  # a membrane about one voxel thick
            part = rng.uniform(0.5, 1.0) * np.exp(-0.5 * (edge / 0.7) ** 2)
        else:
            part = rng.uniform(0.05, 0.11) / (1 + np.exp(np.clip(edge / 0.8, -50, 50)))
            part *= np.clip(1 + 0.25 * texture, 0.3, None)
        out = np.maximum(out, part)
    return out


def _curves(shape: tuple[int, int, int], rng: np.random.Generator, count: int) -> np.ndarray:
    out = np.zeros(tuple(n + 2 for n in shape))
    for _ in range(count):
        n = int(rng.uniform(0.5, 1.5) * max(shape) * 4)
        direction = rng.standard_normal(3)
        steps = []
        for _ in range(n):
            direction = direction + rng.normal(0, 0.05, 3)
            direction /= np.linalg.norm(direction)
            steps.append(direction.copy())
        pos = np.asarray([rng.uniform(0, s) for s in shape]) + 0.25 * np.cumsum(steps, axis=0)
        keep = np.all((pos >= 0) & (pos < np.asarray(shape) - 1), axis=1)
        pos = pos[keep]
        base = np.floor(pos).astype(int)
        frac = pos - base
        level = rng.uniform(0.3, 0.6) * 0.25
        for corner in np.ndindex(2, 2, 2):
            w = np.prod(np.where(np.asarray(corner) == 1, frac, 1 - frac), axis=1)
            np.add.at(out, tuple((base + corner).T), level * w)
    return out[:shape[0], :shape[1], :shape[2]]


def _points(shape: tuple[int, int, int], rng: np.random.Generator, count: int) -> np.ndarray:
    out = np.zeros(shape)
    idx = tuple(rng.integers(0, n, count) for n in shape)
    np.add.at(out, idx, rng.uniform(0.5, 1.0, count))
    return out


def microscopy_volume(shape: tuple[int, int, int], seed: int, *, kind: str = "mixed") -> np.ndarray:
    """A clean fluorescence object ``(z, y, x)`` on an isotropic grid, float64, brightest voxel 1.

    ``kind``: ``"nuclei"`` (textured ellipsoids), ``"filaments"`` (thin 3-D curves), ``"puncta"``
    (single-voxel points), ``"membranes"`` (thin ellipsoidal shells), ``"mixed"`` (all four). Counts
    scale with the volume (given per 64³ voxels).
    """
    if kind not in VOLUME_KINDS:
        raise BadOptionError(f"unknown volume kind {kind!r}; choose one of: {', '.join(VOLUME_KINDS)}")
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise BadOptionError(f"a volume is (z, y, x) with every side at least 8, got {shape}")
    rng = np.random.default_rng(seed)
    per = max(1.0, np.prod(shape) / 64 ** 3)
    vol = np.full(shape, 0.01)
    if kind in ("nuclei", "mixed"):
        vol += _ellipsoids(shape, rng, max(1, round((4 if kind == "nuclei" else 2) * per)), shell=False)
    if kind in ("membranes", "mixed"):
        vol += _ellipsoids(shape, rng, max(1, round((4 if kind == "membranes" else 1) * per)), shell=True)
    if kind in ("filaments", "mixed"):
        vol += _curves(shape, rng, max(1, round((10 if kind == "filaments" else 4) * per)))
    if kind in ("puncta", "mixed"):
        vol += _points(shape, rng, max(1, round((120 if kind == "puncta" else 30) * per)))
    return vol / vol.max()


def blur3d(volume: np.ndarray, psf: np.ndarray) -> np.ndarray:
    """``volume`` correlated with a centred 3-D ``psf`` (odd sides), mirror-extended at the borders."""
    pad = [(n // 2, n // 2) for n in psf.shape]
    padded = np.pad(np.asarray(volume, dtype=np.float64), pad, mode="reflect")
    return signal.fftconvolve(padded, np.asarray(psf, dtype=np.float64)[::-1, ::-1, ::-1], mode="valid")


def _focal_plane(psf: np.ndarray) -> int:
    """The plane where a 3-D PSF's on-axis intensity peaks (the central one for a symmetric PSF)."""
    return int(np.argmax(psf[:, psf.shape[1] // 2, psf.shape[2] // 2]))


def true_axial_psf(psf: np.ndarray, pixel_um: float, z_step_um: float) -> AxialPSF:
    """The :class:`~napari_kernelgan.axial.psf.AxialPSF` of a known 3-D PSF sampled at (``z_step_um``,
    ``pixel_um``, ``pixel_um``): its in-focus plane (the brightest on axis), its on-axis profile, and the
    relative blur from them."""
    psf = np.asarray(psf, dtype=np.float64)
    cy, cx = psf.shape[1] // 2, psf.shape[2] // 2
    axial = psf[:, cy, cx]
    cz = _focal_plane(psf)
    lateral = psf[cz] / psf[cz].sum()
    return AxialPSF(lateral=lateral, axial=axial, pixel_um=pixel_um, z_step_um=z_step_um, step_um=z_step_um,
                    relative=relative_profile(axial, line_profile(lateral), z_step_um, pixel_um),
                    confidence=1.0, method="given")


@dataclass
class AxialCase:
    """One generated z-stack: ``stack`` (uint16, every ``factor``-th plane of the truth's grid), ``truth``
    (float64 isotropic, in the stack's units without offset), ``psf`` (the true 3-D PSF on the truth's grid),
    and the sampling."""

    stack: np.ndarray
    truth: np.ndarray
    psf: np.ndarray
    pixel_um: float
    z_step_um: float
    factor: int
    optics: Optics
    offset: float
    photons: float

    @property
    def true_psf(self) -> AxialPSF:
        """The true PSF as the axial tools describe it (sampled on the truth's isotropic grid)."""
        fine = self.z_step_um / self.factor
        psf = true_axial_psf(self.psf, self.pixel_um, fine)
        return AxialPSF(lateral=psf.lateral, axial=psf.axial, relative=psf.relative, pixel_um=self.pixel_um,
                        z_step_um=self.z_step_um, step_um=fine, confidence=1.0, method="given")

    @property
    def axial_fwhm_um(self) -> float:
        """The true PSF's axial FWHM (its on-axis profile), µm."""
        cz, cy, cx = (n // 2 for n in self.psf.shape)
        return profile_fwhm(self.psf[:, cy, cx], self.z_step_um / self.factor)


def axial_case(seed: int, optics: Optics, *, pixel_um: float = 0.1, factor: int = 4,
               shape: tuple[int, int, int] = (96, 64, 64), kind: str = "mixed", photons: float = 500.0,
               read_noise: float = 1.5, offset: float = 100.0, object_volume: np.ndarray | None = None,
               psf_shape: tuple[int, int, int] | None = None) -> AxialCase:
    """One generated stack: an object (``kind``, or ``object_volume`` on the isotropic grid) blurred by the
    physical 3-D PSF of ``optics`` at ``pixel_um`` in all three directions, every ``factor``-th plane kept,
    ``photons`` at the brightest voxel, Poisson and Gaussian read noise (electrons), ``offset`` ADU.

    Index mismatch at depth moves the focus and makes the PSF asymmetric along z: it is then centred as the
    axial tools centre a profile (:func:`~napari_kernelgan.axial.psf.centre_profile`: the on-axis profile's
    centre of mass on the middle plane), so the true :class:`~napari_kernelgan.axial.psf.AxialPSF` is
    registered with the truth, and the truth's lateral PSF is the plane where a point is brightest (where a
    microscopist focuses, :func:`~napari_kernelgan.physics.optics.best_focus_um`). ``psf_shape`` (odd sides)
    sets the PSF's extent (default :func:`~napari_kernelgan.physics.optics.psf_3d`'s, which is sized for
    matched immersion: give it for a mismatched case)."""
    if int(factor) != factor or factor < 1:
        raise BadOptionError(f"factor must be a whole number of planes ≥ 1, got {factor}")
    factor = int(factor)
    rng = np.random.default_rng(seed)
    obj = microscopy_volume(shape, seed, kind=kind) if object_volume is None else np.asarray(object_volume, float)
    psf = focused_psf_3d(optics, pixel_um, pixel_um, psf_shape)
    blurred = blur3d(obj, psf)
    lateral = psf[_focal_plane(psf)]
    lateral = lateral / lateral.sum()
    lz = line_profile(lateral)
    iso = lz[:, None, None] * lateral[None]
    truth = blur3d(obj, iso)
    sampled = blurred[::factor]
    gain = photons / max(float(sampled.max()), 1e-12)
    electrons = rng.poisson(np.clip(sampled * gain, 0, None)).astype(np.float64)
    adu = np.round(electrons + rng.normal(0.0, read_noise, sampled.shape) + offset)
    stack = np.clip(adu, 0, 65535).astype(np.uint16)
    return AxialCase(stack=stack, truth=truth * gain, psf=psf, pixel_um=float(pixel_um),
                     z_step_um=float(pixel_um) * factor, factor=int(factor), optics=optics, offset=float(offset),
                     photons=float(photons))
