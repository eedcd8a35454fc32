"""Axial SR by deconvolution: a closed-form regularised solve per (y, x) column, then Richardson–Lucy.

**Separable PSF** (an :class:`~napari_kernelgan.axial.psf.AxialPSF`). Every column ``y`` (``nz`` samples)
is explained by the fine column ``x`` (``(nz-1)F+1`` samples) through ``A x = S_F(h ⋆ x)`` with
``h = psf.relative_on(z_step / F)``: minimise ``‖A x − y‖² + λ‖∇_z x‖²``. ``A`` is the same for every
column, so the minimiser ``W y`` with ``W = (AᵀA + λDᵀD)⁻¹Aᵀ`` is one small matrix (fine planes × planes)
built once and applied to all columns (:func:`column_solver`). This is the Fourier closed form with the
F-fold aliasing of ``S_F`` (:func:`fourier_solve`), solved exactly on the column's own length with the
mirror boundary folded into ``A`` instead of a mirror-padded period. ``λ`` is the Wiener choice
``σ² / E[(∇x)²]``: the noise variance at the stack's mean level over the signal's gradient power along
a lateral line at the fine step (:func:`noise_lambda`), times the multiplier of :data:`LAMBDA_LADDER`
that restores the stack's lateral lines (degraded as its z lines are) best; it is never zero, even for a
known PSF. Then positivity, and for photon-limited stacks Poisson Richardson–Lucy steps on the
photo-electron counts, as many as cross-validation on binomially thinned counts says (as
:mod:`napari_kernelgan.sr._poisson` does in 2-D), capped at :data:`MAX_RL`; where the count reaches the
cap the PSF is wider than the data's blur and the solve is kept unrefined.

**Full 3-D PSF** (``psf3d=(array, pixel_um, z_step_um)``). The target is the isotropic truth of the
conventions (the lateral PSF times its own line profile in z, ``I``); the data are ``S_F(G ⋆ t)`` with
the relative 3-D blur ``Ĝ = P̂ Î* / (|Î|² + ε)``. Each lateral frequency is a z problem with its own
kernel: :func:`fourier_solve` solves all at once (FFT in z, y, x; the aliasing sum in z). :class:`Psf3dSolver`
does it in its closed form for zero-filled data, float32, on square lateral tiles whose overlap is their only
padding (mirror in z, and laterally only at the stack's borders), yielding often enough for progress and cancel.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
from scipy import fft, ndimage

from ..errors import BadInputError, Param
from ..sr._poisson import STEP_SCALE, from_counts, thin, to_counts
from ._zops import NoiseModel, degrade_matrix
from .psf import line_profile, output_planes, resample_profile

__all__ = ["LAMBDA_LADDER", "LAMBDA_LADDER_3D", "MAX_RL", "noise_lambda", "column_solver", "richardson_lucy_z",
           "rl_steps", "fourier_solve", "Psf3dSolver"]

# Multipliers of the Wiener λ tried; the one that restores held-out lateral lines best is used. The Wiener
# weight over-smooths (measured on generated stacks: 0.01–0.05 of it gained 1–2 dB over 1 at 100–500 photons).
LAMBDA_LADDER = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
# The same for a full 3-D PSF, chosen by predicting held-out planes (Psf3dSolver.choose_lambda).
LAMBDA_LADDER_3D = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
MAX_HALO = 24        # pixels of overlap of the 3-D PSF path's tiles, at most
TILE = 320           # lateral side of those tiles (overlap included), about: FFTs of (2nz-2)F × TILE × TILE
_CHUNK = 1 << 22     # complex values per step of a tile's solve: a fraction of a second, so progress is frequent
MAX_RL = 40          # Richardson–Lucy steps tried at most on the half counts
_FLOOR = 1e-6
_EPS_ISO = 1e-3      # relative regularisation of the division by the isotropic target's transfer function


def noise_lambda(plane: np.ndarray, noise: NoiseModel, pixel_um: float, fine_um: float) -> float:
    """The Wiener weight ``σ² / E[(∇x)²]`` of the gradient prior, from one lateral plane (raw units).

    The gradient power is that of the plane's lines along x less the noise's share (``2σ²``), rescaled from
    the pixel to the fine z step; σ² is the noise at the plane's mean level.
    """
    p = np.asarray(plane, dtype=np.float64)
    var = float(noise.variance(p.mean()))
    grad = float(np.mean(np.diff(p, axis=-1) ** 2)) - 2.0 * var
    grad = max(grad, 0.05 * float(np.mean(np.diff(p, axis=-1) ** 2)), 1e-12)
    grad *= (fine_um / pixel_um) ** 2
    return max(var, 1e-12 * grad) / grad


def column_solver(nz: int, factor: int, kernel: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """``(W, A)``: the minimiser ``W = (AᵀA + λDᵀD)⁻¹Aᵀ`` (fine × nz) and the forward operator ``A``
    (nz × fine) of a column of ``nz`` planes super-resolved ``factor``×."""
    n_fine = (nz - 1) * factor + 1
    a = degrade_matrix(n_fine, kernel, factor)
    d = np.diff(np.eye(n_fine), axis=0)
    system = a.T @ a + lam * (d.T @ d) + 1e-9 * np.eye(n_fine)
    return np.linalg.solve(system, a.T), a


def richardson_lucy_z(counts: np.ndarray, start: np.ndarray, a: np.ndarray, iterations: int,
                      held: np.ndarray | None = None) -> tuple[np.ndarray, list[float]]:
    """RL steps on columns: ``counts`` (nz, n), ``start`` (fine, n), forward matrix ``a``; with ``held``
    (independent counts of the same mean), also the negative Poisson log-likelihood after each step."""
    low = float(min(counts.min(), start.min()))
    pedestal = 0.0 if low >= 0 else 1.0 - low
    y = np.clip(counts, 0.0, None) + pedestal
    x = np.clip(start + pedestal, _FLOOR, None)
    norm = np.maximum(a.sum(axis=0), _FLOOR)[:, None]
    other = None if held is None else held + pedestal
    losses: list[float] = []
    pred = np.maximum(a @ x, _FLOOR)
    if other is not None:
        losses.append(float((pred - other * np.log(pred)).sum()))
    for _ in range(int(iterations)):
        x = x * (a.T @ (y / pred)) / norm
        pred = np.maximum(a @ x, _FLOOR)
        if other is not None:
            losses.append(float((pred - other * np.log(pred)).sum()))
    return x - pedestal, losses


def rl_steps(columns: np.ndarray, noise: NoiseModel, w: np.ndarray, a: np.ndarray, seed: int) -> tuple[int, bool]:
    """Cross-validated RL step count for raw columns ``(nz, n)``: the closed form runs on one binomial half
    (twice its counts), RL continues on that half and the step that best predicts the other half wins;
    scaled by the fitted ``STEP_SCALE`` (the full counts are twice the half's). Also whether the cap was hit."""
    counts = to_counts(columns, noise.a, noise.b)
    first, second = thin(counts, np.random.default_rng([int(seed), 0xA71]))
    start = to_counts(np.clip(w @ from_counts(2.0 * first, noise.a, noise.b), 0, None), noise.a, noise.b) / 2.0
    _, losses = richardson_lucy_z(first, start, a, MAX_RL, held=second)
    chosen = int(np.argmin(losses))
    return int(round(STEP_SCALE * chosen)), chosen >= MAX_RL


def fourier_solve(y_up: np.ndarray, h_hat: np.ndarray, l_hat: np.ndarray, factor: int) -> np.ndarray:
    """Minimiser of ``‖S_F(H x) − y‖² + xᴴ L x`` in Fourier along axis 0 (period ``N = F·M``).

    ``y_up``: the FFT along all axes of the zero-filled data (samples at 0, F, 2F...); ``h_hat``, ``l_hat``:
    the blur's transfer function and the (positive) regulariser, broadcastable. ``S_FᴴS_F`` sums the F
    aliases ``k + mM``, which Woodbury's identity inverts per alias set.
    """
    n = y_up.shape[0]
    m = n // factor
    r = np.conj(h_hat) * y_up
    hl = np.broadcast_to(h_hat / l_hat, r.shape)
    num = (hl * r).reshape((factor, m) + r.shape[1:]).mean(axis=0)
    den = 1.0 + np.broadcast_to(np.abs(h_hat) ** 2 / l_hat, r.shape).reshape((factor, m) + r.shape[1:]).mean(axis=0)
    z = np.tile(num / den, (factor,) + (1,) * (r.ndim - 1))
    return (r - np.conj(h_hat) * z) / l_hat


class Psf3dSolver:
    """Axial SR with a full 3-D PSF (see the module docstring).

    :meth:`iter_solve_volume` fills a whole output volume tile by tile; :meth:`solve` solves one small raw
    block (the held-out checks). Tiles are square-ish lateral windows of at most :data:`TILE` pixels whose
    overlap with their neighbours is their only padding (mirror only at the stack's borders); every tile of a
    volume has one FFT shape (``scipy.fft.next_fast_len``), whose transfer functions are computed once.
    """

    def __init__(self, psf3d: tuple[np.ndarray, float, float], pixel_um: float, fine_um: float, factor: int,
                 lam: float, workers: int | None = None) -> None:
        array, p_um, z_um = psf3d
        p = np.asarray(array, dtype=np.float64)
        if p.ndim != 3 or min(p.shape) < 1 or not np.isfinite(p).all() or p.sum() <= 0:
            raise BadInputError(f"psf3d must be a (z, y, x) array with positive sum, got shape {p.shape}")
        p_um, z_um = float(p_um), float(z_um)
        if not (p_um > 0 and z_um > 0):
            raise BadInputError(Param("psf3d", "(array, pixel_um, z_step_um)"), " needs positive voxel sizes")
        if abs(p_um / pixel_um - 1.0) > 0.02:
            raise BadInputError(f"the 3-D PSF's pixel size ({p_um:g} µm) differs from the stack's "
                                f"({pixel_um:g} µm); resample the PSF to the stack's pixel size first")
        if abs(z_um / fine_um - 1.0) > 1e-3:
            p = ndimage.zoom(p, (z_um / fine_um, 1.0, 1.0), order=1, grid_mode=False)
        p = np.clip(p, 0.0, None)
        cz = int(np.argmax((p ** 2).sum(axis=(1, 2))))
        half = max(cz, p.shape[0] - 1 - cz)
        p = np.pad(p, ((half - cz, half - (p.shape[0] - 1 - cz)), (0, 0), (0, 0)))
        self.psf = p / p.sum()
        lateral = self.psf[half] / self.psf[half].sum()
        self.iso_z = resample_profile(line_profile(lateral), pixel_um, fine_um)
        self.iso_yx = lateral
        self.factor, self.lam = int(factor), float(lam)
        self.workers = -1 if workers is None else max(1, int(workers))
        # Overlap of the tiles (and mirror padding at the borders); bounded so a widefield PSF's faint wide
        # tails do not make every tile huge (the part beyond wraps around within the tile).
        self.halo = int(np.clip(self.psf.shape[1] // 2 + 4, 12, MAX_HALO))
        self._cache: dict[tuple[int, ...], tuple[np.ndarray, tuple[np.ndarray, ...]]] = {}

    def _transfer(self, shape: tuple[int, int, int]) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """The relative blur ``G`` (rfft layout, complex64) of a period ``shape`` and the 3-D gradient
        prior's separable parts ``(|Dz|², |Dy|², |Dx|²)`` (float32, broadcastable); computed once per shape."""
        for _ in self._iter_transfer(shape):
            pass
        return self._cache[shape]

    def _iter_transfer(self, shape: tuple[int, int, int]) -> Generator[None, None, None]:
        """Compute :meth:`_transfer`'s arrays into the cache in row groups, yielding between them (a widefield
        PSF's transfer function on a whole tile is seconds of work)."""
        if shape in self._cache:
            return
        n, py, px = shape
        k = _crop(self.psf.astype(np.float32), shape)
        ramp_z, ramp_y, ramp_x = _ramps(shape, k.shape)
        lateral = fft.rfft2(k, s=(py, px), axes=(1, 2), workers=self.workers) * ramp_y[:, None] * ramp_x
        yield None
        iso_yx = _crop(self.iso_yx.astype(np.float32)[None], shape)[0]
        i_yx = fft.rfft2(iso_yx, s=(py, px), workers=self.workers) * _ramps(shape, (1,) + iso_yx.shape)[1][:, None]
        i_yx *= _ramps(shape, (1,) + iso_yx.shape)[2]
        iso_z = _crop(self.iso_z.astype(np.float32)[:, None, None], shape)[:, 0, 0]
        i_z = fft.fft(iso_z, n=n) * _ramps(shape, (iso_z.size, 1, 1))[0]
        i2_max = np.float32(float(np.max(np.abs(i_z)) ** 2 * np.max(np.abs(i_yx)) ** 2))
        g = np.empty((n, py, lateral.shape[2]), dtype=np.complex64)
        rows = max(1, _CHUNK // max(1, n * lateral.shape[2]))
        for r0 in range(0, py, rows):
            r1 = min(py, r0 + rows)
            p_hat = fft.fft(lateral[:, r0:r1], n=n, axis=0, workers=self.workers) * ramp_z[:, None, None]
            i_hat = i_z[:, None, None].astype(np.complex64) * i_yx[None, r0:r1]
            i2 = i_hat.real ** 2 + i_hat.imag ** 2
            g[:, r0:r1] = p_hat * np.conj(i_hat) / (i2 + np.float32(_EPS_ISO) * i2_max)
            yield None
        # A 3-D gradient prior: where the relative blur G vanishes laterally, only it holds the solution.
        freq = [fft.fftfreq(n), fft.fftfreq(py), fft.rfftfreq(px)]
        lap = tuple((2 - 2 * np.cos(2 * np.pi * f)).astype(np.float32).reshape(
            [-1 if i == j else 1 for j in range(3)]) for i, f in enumerate(freq))
        self._cache[shape] = (g, lap)

    def _iter_tile(self, window: np.ndarray, factor: int, lam: float, n_keep: int, crop: tuple[slice, slice],
                   sink: Callable[[int, int, np.ndarray], None]) -> Generator[None, None, None]:
        """Solve one raw ``(nz, Py, Px)`` window (already padded laterally) and hand the fine planes
        ``[:n_keep]``, cropped to ``crop``, to ``sink(z0, z1, planes)`` in groups; yields between stages so
        that a caller can report progress (and stop) well within a second.

        The closed form of :func:`fourier_solve` for zero-filled data: the FFT of the F-fold upsampled
        planes is the FFT of the planes repeated F times in z, so ``x̂ = Ĝ* / L · tile(Ŷ / (1 + Q))`` with
        ``Q`` the mean of ``|Ĝ|² / L`` over each alias set (``L = λ·|D̂|²``).
        """
        nz, py, px = window.shape
        ext = np.concatenate([window, window[-2:0:-1]], axis=0)  # whole-sample mirror in z: period 2nz - 2
        m = ext.shape[0]
        n = m * factor
        yield from self._iter_transfer((n, py, px))
        g, (lz, ly, lx) = self._cache[(n, py, px)]
        y_hat = fft.rfftn(ext.astype(np.float32), workers=self.workers)
        del ext
        yield None
        kx = y_hat.shape[2]
        spec = np.empty((n_keep, py, kx), dtype=np.complex64)
        lam32 = np.float32(lam)
        rows = max(1, _CHUNK // max(1, n * kx))
        for r0 in range(0, py, rows):
            r1 = min(py, r0 + rows)
            gc = g[:, r0:r1]
            inv_l = 1.0 / (lam32 * (lz + ly[:, r0:r1] + lx + np.float32(1e-6)))
            q = ((gc.real ** 2 + gc.imag ** 2) * inv_l).reshape((factor, m, r1 - r0, kx)).mean(axis=0)
            yq = y_hat[:, r0:r1] / (1.0 + q)
            xk = np.conj(gc) * inv_l * np.tile(yq, (factor, 1, 1))
            spec[:, r0:r1] = fft.ifft(xk, axis=0, workers=self.workers)[:n_keep]
            yield None
        del y_hat
        planes = max(1, _CHUNK // max(1, py * px))
        for z0 in range(0, n_keep, planes):
            z1 = min(n_keep, z0 + planes)
            x = fft.irfft2(spec[z0:z1], s=(py, px), axes=(1, 2), workers=self.workers)
            sink(z0, z1, x[:, crop[0], crop[1]])
            yield None

    def iter_solve_volume(self, stack: Any, out: Any) -> Generator[float, None, None]:
        """Fill ``out`` (``((nz-1)F+1, ny, nx)``) with the solution of a raw ``(nz, ny, nx)`` stack (any array
        that slices: ndarray, memmap, dask), tile by tile; yields the fraction done, at most about every
        half second of work."""
        nz, ny, nx = (int(v) for v in stack.shape)
        n_out = output_planes(nz, self.factor)
        if nz == 1:
            out[:] = np.asarray(stack, dtype=np.float32)
            yield 1.0
            return
        (py, ys), (px, xs) = _tiles(ny, self.halo, TILE), _tiles(nx, self.halo, TILE)
        tiles = [(y, x) for y in ys for x in xs]
        for i, ((y0, y1, wy), (x0, x1, wx)) in enumerate(tiles):
            window = _window(stack, (wy, wy + py), (wx, wx + px))
            yield i / len(tiles)

            def sink(z0: int, z1: int, planes: np.ndarray, y0: int = y0, y1: int = y1, x0: int = x0,
                     x1: int = x1) -> None:
                out[z0:z1, y0:y1, x0:x1] = planes

            crop = (slice(y0 - wy, y1 - wy), slice(x0 - wx, x1 - wx))
            for _ in self._iter_tile(window, self.factor, self.lam, n_out, crop, sink):
                yield i / len(tiles)
            yield (i + 1) / len(tiles)

    def solve(self, slab: np.ndarray, factor: int | None = None, lam: float | None = None) -> np.ndarray:
        """Fine ``((nz-1)F+1, sy, sx)`` float32 solution of a small raw ``(nz, sy, sx)`` block as one tile
        (``factor``, ``lam``: this solver's unless given)."""
        f = self.factor if factor is None else int(factor)
        lam = self.lam if lam is None else float(lam)
        nz, sy, sx = slab.shape
        if nz == 1:
            return np.asarray(slab, dtype=np.float32)
        (py, ((_, _, wy),)), (px, ((_, _, wx),)) = _tiles(sy, self.halo, 1 << 30), _tiles(sx, self.halo, 1 << 30)
        n_out = output_planes(nz, f)
        out = np.empty((n_out, sy, sx), dtype=np.float32)

        def sink(z0: int, z1: int, planes: np.ndarray) -> None:
            out[z0:z1] = planes

        window = _window(slab, (wy, wy + py), (wx, wx + px))
        for _ in self._iter_tile(window, f, lam, n_out, (slice(-wy, sy - wy), slice(-wx, sx - wx)), sink):
            pass
        return out

    def _predict(self, fine: np.ndarray) -> np.ndarray:
        """The data a fine volume makes: ``G ⋆ fine`` on the fine grid (mirror in z, by the halo laterally)."""
        nz, sy, sx = fine.shape
        (py, ((_, _, wy),)), (px, ((_, _, wx),)) = _tiles(sy, self.halo, 1 << 30), _tiles(sx, self.halo, 1 << 30)
        win = _window(fine, (wy, wy + py), (wx, wx + px))
        ext = np.concatenate([win, win[-2:0:-1]], axis=0) if nz > 1 else win
        g, _ = self._transfer(ext.shape)
        out = fft.irfftn(fft.rfftn(ext.astype(np.float32), workers=self.workers) * g, s=ext.shape,
                         workers=self.workers)
        return out[:nz, -wy:sy - wy, -wx:sx - wx]

    def choose_lambda(self, block: np.ndarray, wiener: float) -> tuple[float, list[float]]:
        """λ (from ``wiener`` times :data:`LAMBDA_LADDER_3D`) that best predicts held-out planes: the even
        planes of a raw ``(nz, sy, sx)`` block are solved at twice the factor and the odd ones predicted.
        Also the prediction errors (mean squares) per λ."""
        gen = self.iter_choose_lambda(block, wiener)
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value

    def iter_choose_lambda(self, block: np.ndarray, wiener: float
                           ) -> Generator[None, None, tuple[float, list[float]]]:
        """:meth:`choose_lambda`, yielding after each λ tried."""
        block = np.asarray(block, dtype=np.float64)
        even = block[0::2]
        n_odd = (block.shape[0] - 1) // 2 + (block.shape[0] - 1) % 2
        errors = []
        for scale in LAMBDA_LADDER_3D:
            fine = self.solve(even, 2 * self.factor, scale * wiener)
            pred = self._predict(fine)[self.factor::2 * self.factor][:n_odd]
            errors.append(float(np.mean((pred - block[1::2][:pred.shape[0]]) ** 2)))
            yield None
        best = int(np.argmin(errors))
        self.lam = LAMBDA_LADDER_3D[best] * wiener
        return self.lam, errors

    def held_out_errors(self, block: np.ndarray) -> tuple[float, float]:
        """Mean squared errors of the odd planes of a raw block predicted from its even ones: by this solver
        (solve at twice the factor, blur with G) and by cubic interpolation."""
        from ._zops import cubic_matrix

        block = np.asarray(block, dtype=np.float64)
        even, odd = block[0::2], block[1::2]
        pred = self._predict(self.solve(even, 2 * self.factor))[self.factor::2 * self.factor][:odd.shape[0]]
        cubic = np.tensordot(cubic_matrix(even.shape[0], 2), even, axes=(1, 0))[1::2][:pred.shape[0]]
        odd = odd[:pred.shape[0]]
        return float(np.mean((pred - odd) ** 2)), float(np.mean((cubic - odd) ** 2))


def _crop(kernel: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A centred kernel cropped about its centre to at most ``shape`` (a kernel larger than the period)."""
    k = kernel
    for ax, n in enumerate(shape):
        if k.shape[ax] > n:
            lo = k.shape[ax] // 2 - n // 2
            k = np.take(k, range(lo, lo + n), axis=ax)
    return k


def _ramps(shape: tuple[int, int, int], size: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """Phase ramps (complex64, per axis; the last in rfft layout) that move a kernel of ``size`` placed at the
    corner of a period of ``shape`` to its centre at index 0: its FFT times them is the centred kernel's."""
    freqs = (fft.fftfreq(shape[0]), fft.fftfreq(shape[1]), fft.rfftfreq(shape[2]))
    return tuple(np.exp(2j * np.pi * f * (s // 2)).astype(np.complex64) for f, s in zip(freqs, size))


def _tiles(n: int, halo: int, target: int) -> tuple[int, list[tuple[int, int, int]]]:
    """Lateral tiling of ``n`` pixels: the window size ``P`` (a fast FFT length, at most about ``target``)
    and, per tile, its core ``[c0, c1)`` and window start ``w0`` (the window may reach past the borders,
    where it is mirrored). Cores split ``n`` evenly; each window is its core plus at least ``halo`` each side."""
    count = max(1, math.ceil(n / max(16, target - 2 * halo)))
    bounds = [round(i * n / count) for i in range(count + 1)]
    core = max(b - a for a, b in zip(bounds[:-1], bounds[1:]))
    size = fft.next_fast_len(core + 2 * halo, real=True)
    return size, [(a, b, a - (size - (b - a)) // 2) for a, b in zip(bounds[:-1], bounds[1:])]


def _window(arr: Any, ys: tuple[int, int], xs: tuple[int, int]) -> np.ndarray:
    """``arr[:, y0:y1, x0:x1]`` as float32, mirrored (whole-sample) where the window passes the borders."""
    ny, nx = int(arr.shape[1]), int(arr.shape[2])
    (y0, y1), (x0, x1) = ys, xs
    block = np.asarray(arr[:, max(0, y0):min(ny, y1), max(0, x0):min(nx, x1)], dtype=np.float32)
    pad = ((0, 0), (max(0, -y0), max(0, y1 - ny)), (max(0, -x0), max(0, x1 - nx)))
    return np.pad(block, pad, mode="reflect") if any(p != (0, 0) for p in pad) else block
