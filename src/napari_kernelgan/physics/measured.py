"""A measured PSF (a bead image at the camera's pixel size) as an SR kernel on the output grid.

:func:`psf_to_kernel` is the one way a PSF becomes a kernel here (:func:`measure_psf` also reports what it
chose). The steps, each for a reason:

1. **In-focus plane** of a 3-D (z, y, x) bead stack: the plane with the largest sum of squares after its
   background and hot pixels are removed. A bead's light per plane is about the same through focus, so the
   in-focus plane is the one that concentrates it most (a 3×3 median peak would prefer a slightly defocused
   plane: at the camera's pixel an in-focus bead is one or two pixels wide).
   Neighbouring planes are *not* averaged in: that would add defocus and widen the kernel.
2. **Background**: the mean of the plane's outer border (two pixels wide) within 4 noise σ of its median,
   robust to the bead's own wings and to hot pixels and, unlike the median of Poisson counts, not off by up
   to half a count; subtracted before anything is measured. A pixel ten times brighter than all eight of
   its neighbours (and than the noise) is a hot pixel and takes its neighbourhood's median: a PSF sampled
   finely enough to be worth measuring does not change that fast from one pixel to the next.
3. **Refusals**, in the user's terms: no bead above the noise, a mostly negative plane, a saturated (flat)
   peak, several bright objects, a bead off centre by more than a quarter of the field (its wings cut on
   one side), and a field too small to hold the bead (light still rising towards the edge).
4. **End of the wings**: beyond the radius where three one-pixel rings in a row average below twice their
   standard error, the field holds noise only and is set to zero (otherwise thousands of noise pixels, their
   negatives clipped, become a pedestal that takes much of the kernel's light and widens its support).
5. **Resampling** from the PSF's pixel to the SR grid's pixel ``lr_pixel_um / scale``, on a grid centred on
   the bead's centre of mass. Shrinking (PSF pixels smaller than the SR pixels) integrates the PSF, taken
   as constant over each camera pixel, over each output pixel: area-preserving and anti-aliased. Enlarging
   or keeping the size interpolates the samples with cubic splines, as
   :func:`~napari_kernelgan.physics.conventions.shift_kernel` does (linear interpolation would blur).
6. **Support**: the smallest odd centred square holding ``mass`` of the light, then negatives clipped,
   centred by :func:`~napari_kernelgan.physics.conventions.centre_kernel` and normalised to sum 1.
   **The cap**: a kernel is at most ``max_side`` pixels a side (:data:`~napari_kernelgan.vocabulary.MAX_KERNEL_SIDE`,
   75, what every SR method, file and layer takes). A PSF whose ``mass`` needs more (the Airy rings of a
   high-NA widefield PSF carry light far out: NA 1.4 at 520 nm holds 99 % only in about 20 λ/NA, 105 px at
   0.065 µm) is cut to the central ``max_side`` square: the light outside it is left out, not folded in,
   and the kernel is normalised to sum 1 over what it keeps (the SR forward model then lacks that share of
   far, faint halo, which shows as a slight loss of contrast of large structures, not of resolution). The
   cut is said in a :class:`KernelCutWarning` naming the side needed and the share of the light left out,
   and recorded on the result (``needed_side``, ``mass_kept``).
7. **Orientation**: a bead image is the PSF as the optics *convolve* with it; kernels are stored for
   correlation, so the kernel is the PSF flipped in both axes (which matters for coma and other asymmetric
   aberrations, not for a symmetric PSF).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import BadInputError
from ..vocabulary import MAX_KERNEL_SIDE
from .conventions import centre_kernel, centre_of_mass, support_side, to_convolution

__all__ = ["MeasuredKernel", "KernelCutWarning", "measure_psf", "psf_to_kernel", "in_focus_plane", "MASS"]

MASS = 0.99
"""Fraction of a measured PSF's light its kernel keeps by default."""
_BORDER = 2          # pixels of the field's edge taken as background
_OBJECT_LEVEL = 0.25  # a second object brighter than this fraction of the bead's peak is refused
_PLATEAU = 5         # this many pixels at the peak value (within 0.1 %) make a saturated, flat top
_SNR = 5.0           # the bead's peak must exceed this many noise σ of the background
_TAIL_SNR = 2.0      # a ring whose mean light is below this many of its standard errors holds no light
_LOST_RINGS = 3      # this many such rings in a row end the PSF


class KernelCutWarning(UserWarning):
    """A measured PSF wider than the largest kernel: the light outside it is left out (how much is said)."""


@dataclass(frozen=True)
class MeasuredKernel:
    """An SR kernel made from a measured PSF, with what was chosen on the way.

    ``kernel``: odd, centred, sums to 1, on the SR grid; ``mass_kept``: fraction of the PSF's light inside the
    kernel's support (below ``mass`` when ``max_side`` cut it); ``plane``: the in-focus plane of a 3-D stack
    (``None`` for a 2-D PSF); ``sr_pixel_um``: the SR grid's pixel; ``background``: what was subtracted;
    ``needed_side``: the side that would hold ``mass`` of the light (larger than ``side`` when the kernel was
    cut at ``max_side``; ``None`` when even the resampled window, ``2·max_side + 1`` pixels, does not hold it).
    """

    kernel: np.ndarray
    mass_kept: float
    plane: int | None
    sr_pixel_um: float
    psf_pixel_um: float
    background: float
    needed_side: int | None = None

    @property
    def side(self) -> int:
        return int(self.kernel.shape[0])


def _border(plane: np.ndarray, width: int = _BORDER) -> np.ndarray:
    w = max(1, min(width, min(plane.shape) // 4))
    mask = np.ones(plane.shape, dtype=bool)
    mask[w:-w, w:-w] = False
    return plane[mask]


def _background(plane: np.ndarray) -> tuple[float, float]:
    """Median of the border, and the noise σ from differences of neighbouring pixels along the outer edge
    (1.4826 · MAD / √2), which a bead's wings reaching the edge do not inflate as a spread of values would."""
    border = _border(plane)
    ring = np.concatenate([plane[0, :], plane[1:, -1], plane[-1, -2::-1], plane[-2:0:-1, 0]])
    steps = np.diff(ring)
    noise = 1.4826 * float(np.median(np.abs(steps - np.median(steps)))) / np.sqrt(2)
    # The mean of the border values within 4 σ of their median: a median of Poisson counts is an integer and
    # biased by up to half a count, which over a thousand pixels is a tenth of a bead's light.
    med = float(np.median(border))
    near = border[np.abs(border - med) <= 4 * max(noise, 1e-12 * abs(med) + 1e-300)]
    return (float(near.mean()) if near.size else med), noise


def in_focus_plane(stack: np.ndarray) -> int:
    """Index of the in-focus plane of a (z, y, x) bead stack: the plane whose light is most concentrated, after
    its background and hot pixels are removed (see the module notes)."""
    stack = np.asarray(stack, dtype=np.float64)
    energy = []
    for p in stack:
        background, noise = _background(p)
        q = _without_hot_pixels(p - background, noise)
        # Σq² rises as the same light gathers into fewer pixels; a 3×3 median peak would not do: at the camera's
        # pixel an in-focus bead is one or two pixels wide and the median of its neighbourhood falls below that
        # of a defocused, wider one.
        energy.append(float(np.sum(np.clip(q, 0, None) ** 2)))
    return int(np.argmax(energy))


def _refuse_if_not_a_bead(raw: np.ndarray, plane: np.ndarray, noise: float, what: str) -> None:
    """Refusals on the background-subtracted ``plane`` (``raw`` is before subtraction)."""
    h, w = plane.shape
    if min(h, w) < 7:
        raise BadInputError(f"{what} is {h}×{w} pixels: too small to hold a bead and its background; crop a "
                            "field of at least 7×7 pixels (better 4 bead widths or more) around one bead")
    smooth = ndimage.median_filter(plane, 3, mode="nearest")  # a hot pixel is neither a bead nor a second object
    peak = float(smooth.max())
    if plane.sum() <= 0 or (plane < 0).sum() > 0.9 * plane.size or (peak <= 0):
        raise BadInputError(f"{what} is mostly negative or empty after subtracting its background: it holds no "
                            "bead (a background-subtracted or inverted image?)")
    if peak <= _SNR * max(noise, 1e-12 * abs(float(raw.max())) + 1e-300):
        raise BadInputError(f"{what} holds no bead: its brightest spot ({peak:.3g} above the background) is not "
                            f"{_SNR:g}× above the background noise ({noise:.3g})")
    top = float(plane.max())
    if int((plane >= top - 1e-3 * top).sum()) >= _PLATEAU:
        raise BadInputError(f"{what}: the bead's peak is flat ({int((plane >= top - 1e-3 * top).sum())} pixels at "
                            f"the maximum {float(raw.max()):.6g}): the camera saturated; measure it with a shorter "
                            "exposure or less light")
    labels, n = ndimage.label(smooth > max(_OBJECT_LEVEL * peak, _SNR * noise), structure=np.ones((3, 3)))
    if n > 1:
        sizes = ndimage.sum_labels(np.ones_like(plane), labels, range(1, n + 1))
        bright = int((sizes >= 2).sum())
        if bright > 1:
            raise BadInputError(f"{what} holds {bright} bright objects, not one bead: crop it around a single "
                                "isolated bead")
    cy, cx = np.unravel_index(int(np.argmax(smooth)), plane.shape)
    if abs(cy - (h - 1) / 2) > h / 4 or abs(cx - (w - 1) / 2) > w / 4:
        raise BadInputError(f"{what}: the bead is at pixel ({cy}, {cx}), off the centre of the {h}×{w} field by "
                            "more than a quarter of it, so its wings are cut on one side; crop the field around "
                            "the bead")
    # Light still rising from the corners to the middle of the edges: the field cuts the bead's wings.
    c = max(2, min(h, w) // 8)
    corners = np.concatenate([plane[:c, :c].ravel(), plane[:c, -c:].ravel(), plane[-c:, :c].ravel(),
                              plane[-c:, -c:].ravel()])
    mids = [plane[:c, w // 2 - c // 2:w // 2 + c // 2 + 1], plane[-c:, w // 2 - c // 2:w // 2 + c // 2 + 1],
            plane[h // 2 - c // 2:h // 2 + c // 2 + 1, :c], plane[h // 2 - c // 2:h // 2 + c // 2 + 1, -c:]]
    rise = min(float(np.median(m)) for m in mids) - float(np.median(corners))
    if rise > max(0.03 * peak, 3 * noise):
        raise BadInputError(f"{what} is {h}×{w} pixels: too small to hold the bead (its light is still "
                            f"{100 * rise / peak:.0f} % of the peak at the edges); crop a larger field around it")


def _without_hot_pixels(plane: np.ndarray, noise: float) -> np.ndarray:
    """``plane`` (background subtracted) with isolated hot pixels replaced by their 3×3 median."""
    ring = np.ones((3, 3), dtype=bool)
    ring[1, 1] = False
    neighbours = ndimage.maximum_filter(plane, footprint=ring, mode="nearest")
    hot = plane > 10 * np.maximum(neighbours, 3 * noise)
    if not hot.any():
        return plane
    return np.where(hot, ndimage.median_filter(plane, 3, mode="nearest"), plane)


def _quiet_tail(plane: np.ndarray, centre: np.ndarray, noise: float) -> np.ndarray:
    """``plane`` (background subtracted) set to zero beyond the radius where the bead's light is lost in the noise.

    A bead's far wings are thousands of pixels each within a noise σ of zero: kept (and their negatives clipped
    later) they add a pedestal holding much of the kernel's light, and the support chosen by mass grows to the
    whole field. Averaged over a one-pixel ring around the bead's centre (a PSF's wings vary slowly along a
    ring) their noise falls by √(ring's pixels); where :data:`_LOST_RINGS` rings in a row average below
    :data:`_TAIL_SNR` of their own standard error, the PSF has ended (a dark Airy ring is one or two rings
    wide, so it does not end it). Inside, every pixel is kept as measured.
    """
    if noise <= 0:
        return plane
    yy, xx = np.indices(plane.shape)
    ring = np.floor(np.hypot(yy - centre[0], xx - centre[1]) + 0.5).astype(int)
    counts = np.bincount(ring.ravel())
    means = np.bincount(ring.ravel(), plane.ravel()) / np.maximum(counts, 1)
    lost = (means < _TAIL_SNR * noise / np.sqrt(np.maximum(counts, 1))) & (counts > 0)  # a ring may hold no pixel
    run = np.convolve(lost.astype(int), np.ones(_LOST_RINGS, dtype=int), mode="valid")
    ends = np.nonzero(run == _LOST_RINGS)[0]
    if not ends.size:
        return plane
    return np.where(ring < int(ends[0]), plane, 0.0)


def _box_matrix(n_out: int, n_in: int, start: float, step: float) -> np.ndarray:
    """(n_out, n_in) overlaps of output pixels ``[start + i·step, start + (i+1)·step)`` with input pixels
    ``[j - 0.5, j + 0.5)``, in input pixels: integrating a piecewise-constant signal (area-preserving)."""
    lo = start + np.arange(n_out)[:, None] * step
    j = np.arange(n_in)[None, :]
    return np.clip(np.minimum(lo + step, j + 0.5) - np.maximum(lo, j - 0.5), 0, None)


def _resample(plane: np.ndarray, centre: np.ndarray, factor: float, max_half: int) -> np.ndarray:
    """``plane`` on a grid ``factor`` times finer (``< 1``: coarser) whose middle pixel is at ``centre``, at most
    ``2·max_half + 1`` pixels a side."""
    h, w = plane.shape
    reach = max(centre[0], h - 1 - centre[0], centre[1], w - 1 - centre[1]) + 0.5
    # Light farther out than a kernel may reach only adds noise and time (a large field enlarged many times).
    half = min(int(np.ceil(reach * factor)), max_half)
    n = 2 * half + 1
    step = 1.0 / factor  # output pixel in input pixels
    if factor < 1:
        ry = _box_matrix(n, h, centre[0] - (half + 0.5) * step, step)
        rx = _box_matrix(n, w, centre[1] - (half + 0.5) * step, step)
        return ry @ plane @ rx.T
    offs = (np.arange(n) - half) * step
    yy, xx = np.meshgrid(centre[0] + offs, centre[1] + offs, indexing="ij")
    return ndimage.map_coordinates(plane, [yy, xx], order=3, mode="constant", cval=0.0)


def measure_psf(psf: np.ndarray, psf_pixel_um: float, lr_pixel_um: float, scale: int, *, mass: float = MASS,
                max_side: int = MAX_KERNEL_SIDE, name: str = "the PSF") -> MeasuredKernel:
    """:func:`psf_to_kernel` with what it chose: the in-focus plane, the support's share of the light."""
    arr = np.asarray(psf)
    if arr.ndim == 3 and 1 in arr.shape:
        arr = np.squeeze(arr)
    if arr.ndim not in (2, 3):
        raise BadInputError(f"{name} must be a 2-D image or a 3-D (z, y, x) bead stack, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise BadInputError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise BadInputError(f"{name} contains NaN or infinite values")
    for label, value in (("the PSF's pixel size", psf_pixel_um), ("the image's pixel size", lr_pixel_um)):
        if not (np.isfinite(value) and value > 0):
            raise BadInputError(f"{label} must be a positive number of µm, got {value!r}")
    if int(scale) < 1:
        raise BadInputError(f"the SR scale must be a positive whole number, got {scale!r}")
    if not 0 < mass <= 1:
        raise BadInputError(f"the share of the PSF's light to keep must be in (0, 1], got {mass!r}")
    if max_side < 3 or max_side % 2 == 0:
        raise BadInputError(f"the largest kernel side must be odd and at least 3, got {max_side}")
    plane_index = in_focus_plane(arr) if arr.ndim == 3 else None
    raw = arr[plane_index] if plane_index is not None else arr
    what = name if plane_index is None else f"{name} (in-focus plane {plane_index})"
    background, noise = _background(raw)
    plane = _without_hot_pixels(raw - background, noise)
    _refuse_if_not_a_bead(raw, plane, noise, what)
    centre = centre_of_mass(np.clip(plane, 0, None))
    plane = _quiet_tail(plane, centre, noise)
    centre = centre_of_mass(np.clip(plane, 0, None))
    sr_pixel = float(lr_pixel_um) / int(scale)
    factor = float(psf_pixel_um) / sr_pixel
    k = _resample(plane, centre, factor, max_side)
    # All of the bead's light on the SR grid (box integration keeps the sum, interpolation scales it by factor²),
    # also what lies outside the resampled window.
    total = float(plane.sum()) * (factor ** 2 if factor >= 1 else 1.0)
    share = mass * total / float(k.sum())
    needed = support_side(k, share) if share <= 1 else None
    side = min(k.shape[0] if needed is None else needed, max_side)
    o = (k.shape[0] - side) // 2
    k = k[o:o + side, o:o + side]
    kept = min(1.0, float(k.sum()) / total)
    if needed is None or needed > max_side:
        window = k.shape[0] + 2 * o
        wanted = f"a {needed}×{needed}" if needed is not None else f"more than a {window}×{window}"
        warnings.warn(f"{what}: holding {100 * mass:g} % of its light needs {wanted} kernel on the ×{int(scale)} "
                      f"grid ({sr_pixel:.4g} µm pixels); kernels are at most {max_side}×{max_side}, so "
                      f"{100 * (1 - kept):.1f} % of the light, the faint outer halo, is left out and the kernel "
                      "normalised to sum 1 over the rest", KernelCutWarning, stacklevel=3)
    k = np.clip(k, 0, None)
    # to_convolution flips both axes, which also turns a convolution kernel into the correlation one.
    k = to_convolution(k / k.sum())
    for _ in range(3):  # each pass clips the spline's small lobes, which moves the centre a little
        k = centre_kernel(k)
    return MeasuredKernel(kernel=k / k.sum(), mass_kept=kept, plane=plane_index, sr_pixel_um=sr_pixel,
                          psf_pixel_um=float(psf_pixel_um), background=background, needed_side=needed)


def psf_to_kernel(psf: np.ndarray, psf_pixel_um: float, lr_pixel_um: float, scale: int, *, mass: float = MASS,
                  max_side: int = MAX_KERNEL_SIDE) -> np.ndarray:
    """The SR kernel for ×``scale`` of an image with pixels of ``lr_pixel_um`` µm, from a measured PSF.

    ``psf``: a 2-D bead image or a 3-D (z, y, x) bead stack, one bead near the middle, pixels of
    ``psf_pixel_um`` µm (any background, any units of light). Returns an odd, centred (correlation-oriented,
    as :mod:`~napari_kernelgan.physics.conventions` stores kernels), non-negative kernel summing to 1 on the
    SR grid (pixel ``lr_pixel_um / scale``), with the smallest support holding ``mass`` of the light, at most
    ``max_side`` pixels a side (a PSF that needs more is cut there, with a :class:`KernelCutWarning` saying
    how much of its light is left out). Raises :class:`~napari_kernelgan.errors.BadInputError` saying why when the
    input cannot be one bead's PSF. The steps and their reasons: :mod:`napari_kernelgan.physics.measured`.
    """
    return measure_psf(psf, psf_pixel_um, lr_pixel_um, scale, mass=mass, max_side=max_side).kernel
