"""Measurements that let axial SR choose among candidate methods and PSFs on a central crop of the stack."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import BadInputError
from ._zops import Normaliser, cubic_matrix, measure_stack_noise
from .psf import AxialPSF, output_planes

__all__ = ["isotropy", "central_block", "study_scores", "scaled_na", "below_background", "Psf3dCandidate",
           "iter_choose_psf3d", "model_kernel", "pick"]

MAX_NA_OVER_N = 0.98  # an NA scaled up stays below the immersion's index (NA = n sin θ)
# Lateral side of a model's 3-D PSF at most (pixels): the 3-D path's tiles hold no more than 24 pixels of halo, so
# wider tails only wrap around; an oil objective focused deep into water asks for sides of over a thousand.
MAX_MODEL_SIDE = 129


def model_kernel(optics: Any, pixel_um: float, fine_um: float, max_planes: int | None = None) -> np.ndarray:
    """The 3-D PSF of ``optics`` centred on its focus (:func:`~napari_kernelgan.physics.optics.focused_psf_3d`)
    at the lateral pixel and the fine z step (float32, sum 1), planes over ±3 closed-form axial FWHMs — or, into
    a sample of another index, as far as the on-axis intensity stays above 1 % of its peak
    (:func:`~napari_kernelgan.physics.optics.on_axis_reach_um`), which the mismatch stretches well beyond, but
    then no longer than the stack's ``max_planes`` output planes (the 3-D path mirrors the stack along z; a PSF
    longer than it meets the stack's mirror images, and on the development stack below lost what it gained:
    +0.9 dB at the stack's length, −0.2 dB at twice it) — and at most :data:`MAX_MODEL_SIDE` pixels across."""
    from ..physics.optics import axial_fwhm_um, focused_psf_3d, on_axis_reach_um, support_for

    side = min(int(support_for(optics, pixel_um=pixel_um)), MAX_MODEL_SIDE)
    half = math.ceil(3 * axial_fwhm_um(optics) / fine_um)
    if abs(optics.sample_index - optics.n_immersion) > 1e-3:
        # A development stack 10 µm into index 1.36 (NA 1.4 oil): +0.4 dB with ±3 FWHMs, +0.9 with this.
        reach = math.ceil(on_axis_reach_um(optics) / fine_um)
        half = max(half, min(reach, (int(max_planes) - 1) // 2) if max_planes is not None else reach)
    return focused_psf_3d(optics, pixel_um, fine_um, (2 * half + 1, side, side)).astype(np.float32)


def scaled_na(optics: Any, k: float) -> Any:
    """``optics`` with its NA times ``k``, kept below :data:`MAX_NA_OVER_N` of the immersion's index."""
    return dataclasses.replace(optics, na=min(optics.na * k, max(optics.na, MAX_NA_OVER_N * optics.n_immersion)))


def central_block(stack: Any, side: int = 64) -> np.ndarray:
    """The central ``side``×``side`` block of a ``(z, y, x)`` stack through every plane, float64."""
    ny, nx = int(stack.shape[1]), int(stack.shape[2])
    y0, x0 = max(0, ny // 2 - side // 2), max(0, nx // 2 - side // 2)
    return np.asarray(stack[:, y0:y0 + side, x0:x0 + side], dtype=np.float64)


def isotropy(volume: np.ndarray, pixel_um: float, fine_um: float, factor: int, sigma_px: float = 1.0) -> float:
    """Gradient power along z over that along y and x (both per µm²) of a fine ``(z, y, x)`` volume smoothed
    by ``sigma_px`` lateral pixels in every direction; 1 for an isotropic object seen isotropically."""
    v = np.asarray(volume, dtype=np.float64)
    sz = sigma_px * pixel_um / fine_um
    s = ndimage.gaussian_filter(v, (sz, sigma_px, sigma_px), mode="mirror")
    m = max(2, int(round(2 * sigma_px)) + 1)
    core = s[factor:s.shape[0] - factor, m:-m, m:-m] if s.shape[0] > 2 * factor + 2 else s[:, m:-m, m:-m]
    gz = float(np.mean(np.diff(core, axis=0) ** 2)) / fine_um ** 2
    gl = 0.5 * (float(np.mean(np.diff(core, axis=1) ** 2)) + float(np.mean(np.diff(core, axis=2) ** 2))) / pixel_um ** 2
    return gz / max(gl, 1e-30)


def below_background(solution: np.ndarray, block: np.ndarray, contrast: float) -> float:
    """Mean depth of a solution below the raw block's background (its 1st percentile), over ``contrast``: light
    cannot be negative, so a PSF wider than the stack's blur shows as dark rings below the background."""
    bg = float(np.percentile(block, 1.0))
    return float(np.mean(np.clip(bg - np.asarray(solution, dtype=np.float64), 0.0, None))) / max(contrast, 1e-12)


def study_scores(stack: Any, psf: AxialPSF, factor: int, scales: tuple[float, ...] = (0.93, 1.0, 1.07)
                 ) -> dict[str, Any]:
    """For the model's 3-D PSF with its NA scaled by each of ``scales``: the held-out z gain (dB over cubic,
    odd planes from even ones through the PSF), the isotropy of the crop's solution, and cubic's isotropy."""
    from . import zdeconv

    block = central_block(stack)
    fine = psf.z_step_um / factor
    noise = measure_stack_noise(np.asarray(stack[stack.shape[0] // 2], dtype=np.float64))
    norm = Normaliser.of(block)
    wiener = zdeconv.noise_lambda(block[block.shape[0] // 2], noise, psf.pixel_um, fine)
    up = np.tensordot(cubic_matrix(block.shape[0], factor), block, axes=(1, 0))
    out: dict[str, Any] = {"iso_cubic": isotropy(up, psf.pixel_um, fine, factor)}
    for s in scales:
        model = scaled_na(psf.model, s)
        try:
            kernel = model_kernel(model, psf.pixel_um, fine, output_planes(int(stack.shape[0]), factor))
        except BadInputError:
            continue
        solver = zdeconv.Psf3dSolver((kernel, psf.pixel_um, fine), psf.pixel_um, fine,
                                     factor, wiener, workers=1)
        solver.choose_lambda(block, wiener)
        mine, base = solver.held_out_errors(block)
        sol = solver.solve(block)
        out[f"{s:g}"] = {"held": float(10 * np.log10(base / max(mine, 1e-30))),
                         "iso": isotropy(sol, psf.pixel_um, fine, factor),
                         "change": float(np.sqrt(np.mean((sol - up) ** 2)) / max(float(np.std(up)), 1e-12)),
                         "below": below_background(sol, block, float(np.std(up))),
                         "lambda": solver.lam / wiener, "scale": norm.scale}
    return out


@dataclass
class Psf3dCandidate:
    """One 3-D PSF tried on the central block: the model's NA times ``scale``, its held-out z gain over cubic
    (dB: odd planes predicted from the even ones through it), how far its solution dips below the background,
    and whether both stay within the fitted limits."""

    scale: float
    kernel: np.ndarray
    held_db: float
    below: float
    accepted: bool

    def summary(self) -> dict[str, float | bool]:
        return {"na_scale": self.scale, "held_db": self.held_db, "below": self.below, "accepted": self.accepted}


def iter_choose_psf3d(stack: Any, psf: AxialPSF, factor: int, wiener: float, *, scales: tuple[float, ...],
                      held_min_db: float, below_max: float, prefer_db: float = 0.0, workers: int | None = None
                      ) -> Generator[None, None, tuple[Psf3dCandidate | None, list[Psf3dCandidate]]]:
    """Try the 3-D PSF of ``psf.model`` with its NA scaled by each of ``scales`` on the stack's central block;
    the accepted candidate with the best held-out z gain wins (``None`` where none is accepted). Yields between
    the pieces of work (progress and cancel). The model's own NA (scale 1) is kept where it is accepted and no
    accepted neighbour predicts better by more than ``prefer_db``: the held-out gain grows a little with the NA
    even past the right one, and a PSF a little too narrow costs some of the gain."""
    from . import zdeconv

    block = central_block(stack)
    fine = psf.z_step_um / factor
    up = np.tensordot(cubic_matrix(block.shape[0], factor), block, axes=(1, 0))
    contrast = float(np.std(up))
    tried: list[Psf3dCandidate] = []
    seen: list[float] = []
    for s in scales:
        model = scaled_na(psf.model, s)
        if any(abs(model.na - na) < 1e-9 for na in seen):  # the NA was capped: the same PSF again
            continue
        seen.append(model.na)
        try:
            kernel = model_kernel(model, psf.pixel_um, fine, output_planes(int(stack.shape[0]), factor))
        except BadInputError:
            continue
        yield None
        solver = zdeconv.Psf3dSolver((kernel, psf.pixel_um, fine), psf.pixel_um, fine, factor, wiener,
                                     workers=workers)
        yield from solver.iter_choose_lambda(block, wiener)
        mine, base = solver.held_out_errors(block)
        held = float(10 * np.log10(max(base, 1e-30) / max(mine, 1e-30)))
        below = below_background(solver.solve(block), block, contrast)
        tried.append(Psf3dCandidate(float(s), kernel, held, below, held >= held_min_db and below <= below_max))
        yield None
    return pick(tried, prefer_db), tried


def pick(tried: list[Any], prefer_db: float) -> Any:
    """The candidate :func:`iter_choose_psf3d` runs (anything with ``scale``, ``held_db``, ``accepted``)."""
    accepted = [c for c in tried if c.accepted]
    if not accepted:
        return None
    best = max(accepted, key=lambda c: c.held_db)
    own = next((c for c in accepted if c.scale == 1.0), None)
    return own if own is not None and best.held_db - own.held_db <= prefer_db else best
