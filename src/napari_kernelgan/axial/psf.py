"""The 3-D PSF of one stack as the axial tools use it, and the one place that states the z conventions.

Conventions (every axial estimator, SR method, file and layer follows them):

* **Axes.** A stack is ``(z, y, x)``; ``pixel_um`` is its lateral pixel size (Y = X), ``z_step_um`` the
  distance between planes. Positive ``z`` is deeper into the sample (as :mod:`~napari_kernelgan.physics.optics`).
* **Planes are point samples.** Plane ``i`` sits at ``z0 + i * z_step_um``. Super-resolving ``F`` times
  in z keeps every input plane: output plane ``j`` sits at ``z0 + j * z_step_um / F``, input plane ``i``
  is output plane ``i * F``, and ``nz_out = (nz - 1) * F + 1`` (:func:`z_positions`). The field of view
  in z is the same before and after; the origin does not move.
* **Separable model.** The PSF is ``lateral(y, x) * axial(z)``: ``lateral`` is the in-focus 2-D PSF on the
  data's own lateral grid (sum 1, odd, centred, correlation orientation as
  :mod:`~napari_kernelgan.physics.conventions`), ``axial`` the on-axis profile through the PSF's centre
  (what a bead's z-profile shows, the profile whose FWHM is the axial resolution), sampled every
  ``step_um`` (sum 1, odd, centred). ``relative`` is the blur z lines have beyond the lateral one, as the
  stack's content shows it: degrading a lateral line (already blurred by the lateral PSF) with ``relative``
  and sampling it every ``z_step_um`` makes it look like a z line, which is what the axial SR undoes.
  For a PSF that is close to separable (confocal) ``axial ≈ lateral_profile ⊛ relative``
  (:func:`relative_profile`); a widefield PSF's out-of-focus light makes the effective ``relative``
  wider than the on-axis profile alone implies.
* **Isotropic truth.** The target of axial SR is the object seen with the lateral resolution in all
  three directions: the lateral PSF times its own line profile along z.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import BadInputError, Param
from ..physics.metrics import profile_fwhm
from ..physics.optics import Optics, focused_psf_3d

SR_METHODS = ("auto", "smore", "deconvolve", "cubic")
"""The axial SR methods by name (``sr_method=`` of :func:`~napari_kernelgan.axial.isotropic.super_resolve_axial`);
``auto`` (the default) picks the full 3-D PSF path for a widefield model and the self-supervised network otherwise."""
DEFAULT_SR_METHOD = "auto"

__all__ = ["SR_METHODS", "DEFAULT_SR_METHOD", "AxialPSF", "z_positions", "output_planes", "line_profile",
           "resample_profile", "centre_profile", "relative_profile"]


def output_planes(nz: int, factor: int) -> int:
    """How many planes a stack of ``nz`` planes has after ``factor``× axial SR (every input plane kept)."""
    return (int(nz) - 1) * int(factor) + 1


def z_positions(nz: int, z_step_um: float, factor: int = 1, z0_um: float = 0.0) -> np.ndarray:
    """The z positions (µm) of the planes of a stack of ``nz`` planes super-resolved ``factor``× in z."""
    return z0_um + np.arange(output_planes(nz, factor)) * (float(z_step_um) / int(factor))


def centre_profile(profile: np.ndarray) -> np.ndarray:
    """A 1-D profile with odd length, non-negative, sum 1 and its centre of mass on the middle sample."""
    p = np.clip(np.asarray(profile, dtype=np.float64).ravel(), 0, None)
    if p.size == 0 or not np.isfinite(p).all() or p.sum() <= 0:
        raise BadInputError("an axial profile must be a finite 1-D array with positive sum")
    n = p.size + (1 - p.size % 2)
    pad = np.zeros(n + 2 * (n // 2))
    pad[n // 2:n // 2 + p.size] = p
    com = float((np.arange(pad.size) * pad).sum() / pad.sum())
    pad = ndimage.shift(pad, pad.size // 2 - com, order=1, mode="constant")
    pad = np.clip(pad, 0, None)
    # Trim the empty tails symmetrically so the support is no wider than needed.
    nz = np.nonzero(pad > pad.max() * 1e-6)[0]
    half = max(pad.size // 2 - nz[0], nz[-1] - pad.size // 2)
    out = pad[pad.size // 2 - half: pad.size // 2 + half + 1]
    return out / out.sum()


def resample_profile(profile: np.ndarray, step_um: float, new_step_um: float) -> np.ndarray:
    """A centred 1-D profile sampled every ``step_um`` resampled every ``new_step_um`` (linear, sum 1)."""
    p = centre_profile(profile)
    half_um = (p.size // 2) * step_um
    half = max(1, math.ceil(half_um / new_step_um))
    x_new = np.arange(-half, half + 1) * new_step_um
    x_old = (np.arange(p.size) - p.size // 2) * step_um
    out = np.interp(x_new, x_old, p, left=0.0, right=0.0)
    if out.sum() <= 0:  # a profile narrower than the new step is a delta there
        out = np.zeros(3)
        out[1] = 1.0
    return out / out.sum()


def line_profile(lateral: np.ndarray) -> np.ndarray:
    """The line profile along x of a 2-D lateral PSF (its sum over y), sum 1."""
    k = np.asarray(lateral, dtype=np.float64)
    if k.ndim != 2:
        raise BadInputError(f"a lateral PSF must be 2-D, got shape {k.shape}")
    return centre_profile(k.sum(axis=0))


def relative_profile(axial: np.ndarray, lateral_profile: np.ndarray, step_um: float, pixel_um: float) -> np.ndarray:
    """The non-negative ``h`` (sum 1, every ``step_um``) with ``lateral_profile ⊛ h`` closest to ``axial``.

    ``axial`` is sampled every ``step_um``, ``lateral_profile`` every ``pixel_um``; least squares with
    ``h ≥ 0`` (the blur z adds cannot sharpen).
    """
    from scipy.optimize import nnls

    a = centre_profile(axial)
    lz = resample_profile(lateral_profile, pixel_um, step_um)
    n_h = a.size  # h never needs to be wider than the profile it explains
    half_h, half_l = n_h // 2, lz.size // 2
    # Column j of the matrix is lz placed at offset j - half_h, on the axial profile's samples.
    rows = np.arange(a.size) - a.size // 2
    matrix = np.zeros((a.size, n_h))
    for j in range(n_h):
        idx = rows - (j - half_h) + half_l
        ok = (idx >= 0) & (idx < lz.size)
        matrix[ok, j] = lz[idx[ok]]
    h, _ = nnls(matrix, a)
    if h.sum() <= 0:
        h = np.zeros(3)
        h[1] = 1.0
    return centre_profile(h)


@dataclass(frozen=True)
class AxialPSF:
    """The 3-D PSF of one stack: a lateral 2-D PSF and an axial profile (see the module's conventions).

    ``confidence`` (0–1) means what a lateral estimate's confidence means: how far to trust the kernel
    over a fixed guess. ``method`` says where the axial profile came from (``"spectral"``: the stack's
    lateral planes against its z lines; ``"spots"``: beads/puncta in 3-D; ``"model"``: a physical PSF
    model; ``"given"``: the user). ``notes`` are sentences for the user (e.g. a contradiction with the
    objective's NA); ``qc`` holds measurements (bead FWHM x/y/z, spot count, fit residuals). ``model`` is the
    physical optics the axial profile was taken from, where it was (given, or chosen among candidates): its
    full, non-separable 3-D PSF (:meth:`model_volume`) holds what the separable form cannot, such as a widefield
    PSF's out-of-focus light.
    """

    lateral: np.ndarray
    axial: np.ndarray
    relative: np.ndarray
    pixel_um: float
    z_step_um: float
    step_um: float
    confidence: float
    method: str
    notes: tuple[str, ...] = ()
    qc: dict[str, Any] = field(default_factory=dict)
    model: Optics | None = None

    def __post_init__(self) -> None:
        for name in ("pixel_um", "z_step_um", "step_um"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value <= 0:
                raise BadInputError(Param(name, value), " must be a positive size in µm")
            object.__setattr__(self, name, value)
        lateral = np.asarray(self.lateral, dtype=np.float64)
        if lateral.ndim != 2 or lateral.shape[0] % 2 == 0 or lateral.shape[1] % 2 == 0 or lateral.sum() <= 0:
            raise BadInputError(f"the lateral PSF must be a 2-D array of odd sides with positive sum, "
                                f"got shape {lateral.shape}")
        object.__setattr__(self, "lateral", lateral / lateral.sum())
        object.__setattr__(self, "axial", centre_profile(self.axial))
        object.__setattr__(self, "relative", centre_profile(self.relative))
        object.__setattr__(self, "confidence", float(np.clip(self.confidence, 0.0, 1.0)))

    @property
    def axial_fwhm_um(self) -> float:
        """FWHM of the axial profile, µm."""
        return profile_fwhm(self.axial, self.step_um)

    @property
    def lateral_fwhm_um(self) -> tuple[float, float]:
        """FWHM of the lateral PSF along y and x (profiles through its centre), µm."""
        cy, cx = self.lateral.shape[0] // 2, self.lateral.shape[1] // 2
        return (profile_fwhm(self.lateral[:, cx], self.pixel_um), profile_fwhm(self.lateral[cy, :], self.pixel_um))

    def axial_on(self, step_um: float) -> np.ndarray:
        """The axial profile resampled every ``step_um`` (e.g. the stack's z step), sum 1."""
        return resample_profile(self.axial, self.step_um, step_um)

    def relative_on(self, step_um: float) -> np.ndarray:
        """The relative axial blur resampled every ``step_um``, sum 1."""
        return resample_profile(self.relative, self.step_um, step_um)

    def volume(self, z_step_um: float | None = None) -> np.ndarray:
        """The separable 3-D PSF ``(z, y, x)`` at the lateral pixel size and ``z_step_um`` (default: the
        stack's), sum 1, float32: what deconvolution tools take."""
        az = self.axial_on(self.z_step_um if z_step_um is None else float(z_step_um))
        return (az[:, None, None] * self.lateral[None]).astype(np.float32)

    def model_volume(self, z_step_um: float | None = None) -> np.ndarray | None:
        """The physical model's own 3-D PSF ``(z, y, x)`` at the lateral pixel size and ``z_step_um`` (default: the
        stack's), sum 1, float32; ``None`` where the profile did not come from a model."""
        if self.model is None:
            return None
        return focused_psf_3d(self.model, self.pixel_um, self.z_step_um if z_step_um is None else float(z_step_um)
                              ).astype(np.float32)
