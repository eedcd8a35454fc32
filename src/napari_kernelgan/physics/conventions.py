"""The one place that defines how a kernel is stored and applied.

Conventions (used by every estimator, SR method, metric and file format here):

* **Orientation - correlation.** A kernel ``k`` acts by cross-correlation:
  ``(x ⋆ k)[i, j] = Σ_uv x[i + u - c, j + v - c] · k[u, v]``. This is the
  orientation of the DIV2KRK ground truth and of the KernelGAN / ZSSR code.
  Methods written for true convolution (e.g. USRNet) receive ``flip(k)``
  through :func:`to_convolution`.
* **Centring.** A stored kernel has odd size and its centre of mass on the
  middle pixel ``k.shape // 2`` (the DIV2KRK ground truth is stored so).
* **Subsampling phase.** Degradation by scale ``s`` keeps pixels
  ``[::s, ::s]`` (top-left first). Before correlating, the kernel's centre of
  mass is moved to ``k.shape // 2 + 0.5 * (s - k.shape % 2)``, i.e. by half a
  pixel per odd ``s - 1``. With that shift an LR pixel ``i`` is the average of
  HR pixels centred at ``s * i + (s - 1) / 2``: LR and HR share the same field
  of view, corner to corner (the KernelGAN / DIV2KRK convention).
* **Size.** Any odd side. Estimated kernels are 13×13 at ×2 (DIV2KRK's size, the
  estimators' output) and their analytic ×4 kernels ``3·n − 2`` (37×37);
  a kernel given by the user may be as large as the optics need (a microscope
  PSF easily keeps 15 % of its light outside 13×13): :func:`support_side`
  says how large a kernel must be to hold a share of its light, and
  :func:`napari_kernelgan.physics.measured.psf_to_kernel` turns a measured PSF
  (a bead at the camera's pixel size) into a kernel on the SR grid.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

ORIENTATION = "correlation"
CENTRING = "centre of mass at k.shape // 2"
SUBSAMPLING = "top-left pixel, kernel shifted to k.shape // 2 + 0.5 * (s - k.shape % 2)"


def centre_of_mass(k: np.ndarray) -> np.ndarray:
    """Centre of mass (row, col) of a 2-D kernel, in pixel indices."""
    k = np.asarray(k, dtype=np.float64)
    total = k.sum()
    if not np.isfinite(total) or abs(total) < 1e-12:
        return (np.array(k.shape, dtype=np.float64) - 1) / 2
    rows = np.arange(k.shape[0])
    cols = np.arange(k.shape[1])
    return np.array([(k.sum(1) * rows).sum() / total, (k.sum(0) * cols).sum() / total])


def subsample_centre(shape: tuple[int, int], scale: int) -> np.ndarray:
    """Where the kernel's centre of mass must sit before correlating at ``scale``."""
    shape_arr = np.array(shape)
    return shape_arr // 2 + 0.5 * (scale - shape_arr % 2)


def shift_kernel(k: np.ndarray, shift: np.ndarray | tuple[float, float]) -> np.ndarray:
    """Shift a kernel by a (sub-)pixel vector, same size, sum kept.

    Cubic-spline interpolation (as the KernelGAN reference code): linear
    interpolation would blur by 0.25 px² per half-pixel shift, which piles up
    when ×2 degradations are chained. May leave tiny negative lobes.
    """
    k = np.asarray(k, dtype=np.float64)
    shifted = ndimage.shift(k, shift, order=3, mode="constant", cval=0.0)
    total = shifted.sum()
    return shifted * (k.sum() / total) if total > 0 else shifted


def centre_kernel(k: np.ndarray) -> np.ndarray:
    """Move the kernel's centre of mass onto its middle pixel (the stored, non-negative form)."""
    k = np.asarray(k, dtype=np.float64)
    out = k
    for _ in range(2):  # a second pass removes the small drift that clipping the spline's lobes causes
        shift = np.array(k.shape) // 2 - centre_of_mass(out)
        # A spline "shift" by round-off still resamples (and slightly blurs) the kernel: skip it.
        if np.abs(shift).max() < 1e-6:
            break
        out = np.clip(shift_kernel(out, shift), 0, None)
    return out * (k.sum() / out.sum()) if out.sum() > 0 else out


def kernel_for_subsampling(k: np.ndarray, scale: int) -> np.ndarray:
    """The stored (centred) kernel as it is applied before ``[::s, ::s]`` subsampling.

    Padded first so the shift of up to ``(s - 1) / 2`` pixels loses no mass.
    """
    k = np.asarray(k, dtype=np.float64)
    k = np.pad(k, scale // 2 + 2)
    return shift_kernel(k, subsample_centre(k.shape, scale) - centre_of_mass(k))


def support_side(k: np.ndarray, mass: float = 0.99) -> int:
    """Smallest odd side of a square centred on the middle pixel of ``k`` (odd, square) that holds ``mass`` of
    its sum; ``k``'s side when none smaller does."""
    k = np.asarray(k, dtype=np.float64)
    n = k.shape[0]
    if k.ndim != 2 or k.shape[1] != n or n % 2 == 0:
        raise ValueError(f"support_side needs an odd square kernel, got shape {k.shape}")
    total = k.sum()
    c = n // 2
    for side in range(1, n + 1, 2):
        r = side // 2
        if k[c - r:c + r + 1, c - r:c + r + 1].sum() >= mass * total:
            return side
    return n


def to_convolution(k: np.ndarray) -> np.ndarray:
    """Correlation kernel -> true-convolution kernel (flip both axes)."""
    return np.ascontiguousarray(np.asarray(k)[::-1, ::-1])


def pad_to(k: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad (or centre-crop) an odd square kernel to ``size`` x ``size``."""
    k = np.asarray(k, dtype=np.float64)
    out = np.zeros((size, size))
    h, w = k.shape
    # Work with centres so odd sizes stay aligned on the middle pixel.
    for axis_len, dst_len in ((h, size), (w, size)):
        if (axis_len - dst_len) % 2:
            raise ValueError(f"cannot centre a size-{axis_len} kernel in size {dst_len}: parity differs")
    src_r0 = max(0, (h - size) // 2)
    src_c0 = max(0, (w - size) // 2)
    dst_r0 = max(0, (size - h) // 2)
    dst_c0 = max(0, (size - w) // 2)
    rh = min(h, size)
    rw = min(w, size)
    out[dst_r0:dst_r0 + rh, dst_c0:dst_c0 + rw] = k[src_r0:src_r0 + rh, src_c0:src_c0 + rw]
    return out


def dilate(k: np.ndarray, factor: int = 2) -> np.ndarray:
    """Insert ``factor - 1`` zeros between taps (à trous dilation) of an odd kernel."""
    k = np.asarray(k, dtype=np.float64)
    h, w = k.shape
    out = np.zeros(((h - 1) * factor + 1, (w - 1) * factor + 1))
    out[::factor, ::factor] = k
    return out


def analytic_x4(k2: np.ndarray, size: int | None = None) -> np.ndarray:
    """×4 kernel from a ×2 kernel: ``k4 = k2 ⊛ dilate2(k2)`` (Bell-Kligler et al. 2019).

    Degrading by ×2 with ``k2`` twice equals degrading once by ×4 with ``k4``.
    The full support of a ``n``×``n`` ``k2`` is ``3n - 2``; ``size`` crops or
    pads it (DIV2KRK stores 31×31 from 11×11).
    """
    k2 = np.asarray(k2, dtype=np.float64)
    full = ndimage.convolve(np.pad(dilate(k2, 2), k2.shape[0] // 2), k2, mode="constant")
    if full.shape[0] % 2 == 0:
        raise ValueError("analytic_x4 needs an odd-sized kernel")
    full = centre_kernel(full)
    out = full if size is None else pad_to(full, size)
    return out / out.sum()


def kernel_for_scale(k2: np.ndarray, scale: int) -> np.ndarray:
    """The kernel for SR at ``scale`` from an estimated ×2 kernel: itself at ×2, :func:`analytic_x4` at ×4."""
    if scale == 2:
        return k2
    if scale == 4:
        return analytic_x4(k2)
    from ..errors import BadInputError

    raise BadInputError(f"kernels exist for scale 2 and 4, not {scale}")


def validate_kernel(k: np.ndarray, *, name: str = "kernel", normalise: bool = False) -> np.ndarray:
    """Check a user kernel and return it as float64, normalised to sum 1.

    A kernel whose sum is off by more than 1 % is refused unless ``normalise``
    (kernel files and layers are often stored unnormalised). Raises
    :class:`~napari_kernelgan.errors.BadInputError` (a ``ValueError``) with a
    specific message for the usual mistakes.
    """
    from ..errors import BadInputError

    arr = np.asarray(k)
    if arr.ndim != 2:
        raise BadInputError(f"{name} must be 2-D, got shape {arr.shape}")
    if arr.size == 0:
        raise BadInputError(f"{name} is empty")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise BadInputError(f"{name} must be real-valued numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise BadInputError(f"{name} contains NaN or infinite values")
    if arr.shape[0] % 2 == 0 or arr.shape[1] % 2 == 0:
        raise BadInputError(f"{name} must have odd size so it has a middle pixel, got {arr.shape[0]}×{arr.shape[1]}")
    # Kernels resampled with a cubic/sinc interpolator (DIV2KRK's ground truth among them) carry ringing down to
    # about -1% of the peak; those taps are clipped below. Anything deeper is not a blur kernel.
    if arr.min() < -2e-2 * max(arr.max(), 1e-12):
        raise BadInputError(f"{name} has negative values (min {arr.min():.3g}); a blur kernel is non-negative")
    total = arr.sum()
    if total <= 0:
        raise BadInputError(f"{name} sums to {total:.3g}; a blur kernel must sum to 1")
    if abs(total - 1.0) > 1e-2 and not normalise:
        raise BadInputError(f"{name} sums to {total:.4g}, not 1: normalise it (k / k.sum()) if that is intended")
    return np.clip(arr, 0, None) / np.clip(arr, 0, None).sum()
