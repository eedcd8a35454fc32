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
kernel: :func:`fourier_solve` solves all at once (FFT in z, y, x; the aliasing sum in z), on y-tiles with
overlap and a mirror-padded x and z.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import BadInputError, Param
from ..sr._poisson import STEP_SCALE, from_counts, thin, to_counts
from ._zops import NoiseModel, degrade_matrix

__all__ = ["LAMBDA_LADDER", "LAMBDA_LADDER_3D", "MAX_RL", "noise_lambda", "column_solver", "richardson_lucy_z",
           "rl_steps", "fourier_solve", "Psf3dSolver"]

# Multipliers of the Wiener λ tried; the one that restores held-out lateral lines best is used. The Wiener
# weight over-smooths (measured on generated stacks: 0.01–0.05 of it gained 1–2 dB over 1 at 100–500 photons).
LAMBDA_LADDER = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
# The same for a full 3-D PSF, chosen by predicting held-out planes (Psf3dSolver.choose_lambda).
LAMBDA_LADDER_3D = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
MAX_HALO = 24        # pixels of overlap of the 3-D PSF path's tiles, at most
TILE = 128           # lateral side of those tiles (x); y-slabs are set by the caller
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
    """Axial SR of y-slabs with a full 3-D PSF (see the module docstring): ``solve(slab, halo)``."""

    def __init__(self, psf3d: tuple[np.ndarray, float, float], pixel_um: float, fine_um: float, factor: int,
                 lam: float) -> None:
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
        from .psf import line_profile, resample_profile
        lz = resample_profile(line_profile(lateral), pixel_um, fine_um)
        self.iso = lz[:, None, None] * lateral[None]
        self.factor, self.lam = int(factor), float(lam)
        # Overlap of the tiles (and mirror padding at the borders); bounded so a widefield PSF's faint wide
        # tails do not make every tile huge (the part beyond wraps around within the tile).
        self.halo = int(np.clip(self.psf.shape[1] // 2 + 4, 12, MAX_HALO))
        self._cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}

    def _transfer(self, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        if shape not in self._cache:
            p_hat, i_hat = (np.fft.fftn(_centred_in(k, shape)) for k in (self.psf, self.iso))
            i2 = np.abs(i_hat) ** 2
            g = p_hat * np.conj(i_hat) / (i2 + _EPS_ISO * i2.max())
            # A 3-D gradient prior: where the relative blur G vanishes laterally, only it holds the solution.
            freq = [np.fft.fftfreq(n) for n in shape]
            lap = sum((2 - 2 * np.cos(2 * np.pi * f)).reshape([-1 if i == j else 1 for j in range(3)])
                      for i, f in enumerate(freq))
            self._cache[shape] = (g, lap + 1e-6)
        return self._cache[shape]

    def _padded(self, vol: np.ndarray) -> np.ndarray:
        """Whole-sample mirror in z (a period of 2n-2 planes), reflection by the halo in y and x."""
        ext = np.concatenate([vol, vol[-2:0:-1]], axis=0) if vol.shape[0] > 1 else vol
        return np.pad(ext, ((0, 0), (self.halo, self.halo), (self.halo, self.halo)), mode="reflect")

    def solve_tiled(self, slab: np.ndarray) -> np.ndarray:
        """:meth:`solve` on x-tiles of :data:`TILE` columns with :attr:`halo` columns of overlap each side."""
        nx = slab.shape[2]
        out = np.empty(((slab.shape[0] - 1) * self.factor + 1, slab.shape[1], nx), dtype=np.float32)
        for x0 in range(0, nx, TILE):
            x1 = min(nx, x0 + TILE)
            lo, hi = max(0, x0 - self.halo), min(nx, x1 + self.halo)
            out[:, :, x0:x1] = self.solve(slab[:, :, lo:hi])[:, :, x0 - lo:x0 - lo + (x1 - x0)]
        return out

    def solve(self, slab: np.ndarray, factor: int | None = None, lam: float | None = None) -> np.ndarray:
        """Fine ``((nz-1)F+1, sy, sx)`` solution of a raw ``(nz, sy, sx)`` slab (``factor``, ``lam``: this
        solver's unless given)."""
        f = self.factor if factor is None else int(factor)
        lam = self.lam if lam is None else float(lam)
        nz, sy, sx = slab.shape
        if nz == 1:
            return np.asarray(slab, dtype=np.float32)
        ext = self._padded(np.asarray(slab, dtype=np.float64))
        up = np.zeros((ext.shape[0] * f,) + ext.shape[1:])
        up[::f] = ext
        g, lap = self._transfer(up.shape)
        x = np.fft.ifftn(fourier_solve(np.fft.fftn(up), g, lam * lap, f)).real
        h = self.halo
        return x[:(nz - 1) * f + 1, h:h + sy, h:h + sx].astype(np.float32)

    def _predict(self, fine: np.ndarray) -> np.ndarray:
        """The data a fine volume makes: ``G ⋆ fine`` on the fine grid."""
        ext = self._padded(fine.astype(np.float64))
        g, _ = self._transfer(ext.shape)
        out = np.fft.ifftn(np.fft.fftn(ext) * g).real
        h = self.halo
        return out[:fine.shape[0], h:-h, h:-h]

    def choose_lambda(self, block: np.ndarray, wiener: float) -> tuple[float, list[float]]:
        """λ (from ``wiener`` times :data:`LAMBDA_LADDER_3D`) that best predicts held-out planes: the even
        planes of a raw ``(nz, sy, sx)`` block are solved at twice the factor and the odd ones predicted.
        Also the prediction errors (mean squares) per λ."""
        block = np.asarray(block, dtype=np.float64)
        even = block[0::2]
        n_odd = (block.shape[0] - 1) // 2 + (block.shape[0] - 1) % 2
        errors = []
        for scale in LAMBDA_LADDER_3D:
            fine = self.solve(even, 2 * self.factor, scale * wiener)
            pred = self._predict(fine)[self.factor::2 * self.factor][:n_odd]
            errors.append(float(np.mean((pred - block[1::2][:pred.shape[0]]) ** 2)))
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


def _centred_in(kernel: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A centred kernel placed for circular convolution in an array of ``shape`` (its centre at index 0)."""
    out = np.zeros(shape)
    k = kernel
    for ax, n in enumerate(shape):  # a kernel larger than the period is cropped about its centre
        if k.shape[ax] > n:
            lo = k.shape[ax] // 2 - n // 2
            k = np.take(k, range(lo, lo + n), axis=ax)
    slices = tuple(slice(0, s) for s in k.shape)
    out[slices] = k
    return np.roll(out, [-(s // 2) for s in k.shape], axis=(0, 1, 2))
