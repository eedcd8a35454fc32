"""Photon-limited refinement: Richardson–Lucy from an SR result, stopped by cross-validation on thinned counts.

A Gaussian data term and a TV prior treat every pixel's noise alike. In a
photon-limited fluorescence image the noise grows with the signal, and the
objects are small, bright and positive on a dark background: a uniform
regulariser strong enough for the bright objects flattens the point sources
(puncta, filaments) that carry most of the detail. Richardson–Lucy (RL)
iterations maximise the Poisson likelihood of the LR counts under
``A x = (x ⋆ k)↓s`` (:class:`~napari_kernelgan.physics.Degradation`), keep
``x`` positive and restore point sources; run too long, they amplify the
noise. How many iterations help depends on the photon count and on the
content (none on dim nuclei, dozens on bright puncta), so the count is
measured on the image itself:

1. **Counts.** With the image's Poisson–Gaussian noise ``var(z) = a·E[z] + b``
   (:func:`~napari_kernelgan.physics.noise.photon_limited`), ``c = (z + b/a)/a``
   is, for a camera (``a`` the gain, read noise ``σ_r``, offset ``o``), the
   photo-electron count shifted by ``σ_r²``: Poisson to a good approximation
   (:func:`to_counts`, :func:`from_counts`).
2. **Binomial thinning.** Each LR count ``n`` is split into ``n₁ ~ Bin(n, ½)``
   and ``n₂ = n − n₁``: two *independent* Poisson images with half the mean
   (:func:`thin`). The SR method runs on ``2·n₁`` (its noise option × √2), RL
   continues from that on ``n₁``, and after every step the Poisson
   log-likelihood of ``n₂`` under the prediction ``A x`` is measured. The
   step that predicts the held-out counts best is the iteration count
   (:func:`choose_iterations`); data the fit never saw cannot be fitted by
   amplified noise.
3. **Refinement.** RL runs that many steps (times :data:`STEP_SCALE`: the
   full counts are twice the half's) on the full counts, from the SR method's
   own result (:func:`refine`).

It runs where the measured noise reaches :data:`MIN_SIGMA`, at every scale.

The count is chosen on a centre crop (:data:`CV_CROP` LR pixels) of the
middle frame; all frames and channels are then refined alike. Measured in
``benchmarks/microscopy_benchmark.py`` and ``benchmarks/samples_benchmark.py``.
:data:`STEP_SCALE` is fitted (the record ``safety``, written by
``benchmarks/calibrate_safety.py``); :data:`MAX_ITERATIONS`, :data:`MIN_SIGMA` and
:data:`CV_CROP` are design choices.
"""
from __future__ import annotations

import math
import time
from collections.abc import Generator, Mapping
from typing import Any

import numpy as np
import torch

from ..imaging import centre_crop
from ..physics.operators import Degradation
from ..records import record_values
from ..types import Progress
from ..vocabulary import Stage

__all__ = ["MAX_ITERATIONS", "STEP_SCALE", "MIN_SIGMA", "CV_CROP", "PEDESTAL", "to_counts", "from_counts", "thin",
           "richardson_lucy", "choose_iterations", "refine", "iter_refine"]

MAX_ITERATIONS = 40   # RL steps tried at most on the half counts
# The full counts are twice the half's, so RL can go further on them before the noise wins: the step count
# used is STEP_SCALE times the cross-validated one (fitted by benchmarks/calibrate_safety.py, loaded from its
# record, records/safety.json; the other constants here are design choices).
STEP_SCALE = float(record_values("safety")["step_scale"])
# Shot noise this strong ([0, 255] units of the image's range, the safeguards' measured σ) is where the
# refinement runs: below it, the signal-dependent part of the noise is no evidence of photon counting (clean
# 8-bit photographs whose texture mimics it measure up to 2.4 in calibrate_safety's natural cases, and RL
# there cost up to 1 dB); generated fluorescence with 20–1500 photons measures 4 and more.
MIN_SIGMA = 3.0
CV_CROP = 256         # LR side of the centre crop the iteration count is chosen on
_FLOOR = 1e-6         # counts: keeps the ratio y / A x finite where the prediction vanishes
PEDESTAL = 1.0        # counts of the flat pedestal above the lowest value, where start or data go below 0


def to_counts(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """Shifted photon counts ``(x + b/a)/a`` of intensities ``x`` with noise ``var = a·E[x] + b``."""
    return (np.asarray(x, dtype=np.float64) + b / a) / a


def from_counts(c: np.ndarray, a: float, b: float) -> np.ndarray:
    """Inverse of :func:`to_counts`."""
    return a * np.asarray(c, dtype=np.float64) - b / a


def thin(counts: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split counts (rounded, negatives as 0) into two independent halves ``n₁ ~ Bin(n, ½)``, ``n − n₁``."""
    n = np.round(np.clip(counts, 0.0, None)).astype(np.int64)
    first = rng.binomial(n, 0.5)
    return first.astype(np.float64), (n - first).astype(np.float64)


def richardson_lucy(counts: np.ndarray, start: np.ndarray, kernel: np.ndarray, scale: int, iterations: int,
                    held: np.ndarray | None = None, device: torch.device | str = "cpu",
                    ) -> tuple[np.ndarray, list[float]]:
    """``iterations`` RL steps for LR ``counts`` (..., h, w) from the HR ``start`` (..., s·h, s·w).

    ``x ← x · Aᵀ(n / A x) / Aᵀ1`` (symmetric-reflection boundary). With ``held``
    (independent counts of the same mean as ``counts``), also returns the negative
    Poisson log-likelihood ``Σ A x − held·log A x`` before the first step and
    after each one. Runs in float32 on ``device`` (oneDNN convolutions on the CPU:
    float64 is many times slower), the likelihood summed in float64.
    """
    op = Degradation(kernel, scale, "reflect")
    # RL needs positive data and start: where the Poisson-Gaussian fit puts the zero level above the darkest
    # pixels, their counts and the start's are negative, and clipping the start to ~0 next to positive data
    # makes the ratio y / A x explode. A flat pedestal added to the data and the start alike keeps them
    # positive instead; the kernel sums to 1, so A keeps it flat, and it is removed at the end.
    pedestal = _pedestal(counts, start)
    y = torch.as_tensor(np.clip(counts, 0.0, None) + pedestal, dtype=torch.float32, device=device)
    x = torch.as_tensor(np.clip(np.asarray(start) + pedestal, _FLOOR, None), dtype=torch.float32, device=device)
    hr_shape = tuple(x.shape[-2:])
    norm = op.A_adjoint(torch.ones_like(y), hr_shape).clamp_min(_FLOOR)
    other = None if held is None else torch.as_tensor(held + pedestal, dtype=torch.float32, device=device)
    losses: list[float] = []

    def loss(pred: torch.Tensor) -> None:
        if other is not None:
            losses.append(float((pred - other * torch.log(pred)).sum(dtype=torch.float64)))

    pred = op.A(x).clamp_min(_FLOOR)
    loss(pred)
    for _ in range(int(iterations)):
        x = x * op.A_adjoint(y / pred, hr_shape) / norm
        pred = op.A(x).clamp_min(_FLOOR)
        loss(pred)
    return x.cpu().numpy() - pedestal, losses


def _pedestal(counts: np.ndarray, start: np.ndarray) -> float:
    """0 where the LR counts are non-negative (RL as it is); else the depth of the lowest count below 0 plus
    :data:`PEDESTAL` counts (the fitted offset lies above the darkest pixels: the start is below it there)."""
    low = float(np.min(counts))
    return 0.0 if low >= 0.0 else PEDESTAL - low


def choose_iterations(halves: tuple[np.ndarray, np.ndarray], start_of_half: np.ndarray, kernel: np.ndarray,
                      scale: int, max_iterations: int = MAX_ITERATIONS, device: torch.device | str = "cpu") -> int:
    """The RL step count (0 … ``max_iterations``) at which the fit to the first half best predicts
    the held-out half.

    ``halves``: :func:`thin` of the LR counts; ``start_of_half``: the SR method's result for the
    first half, in counts of that half (so ½ the full scale).
    """
    _, losses = richardson_lucy(halves[0], start_of_half, kernel, scale, max_iterations, held=halves[1],
                                device=device)
    return int(np.argmin(losses))


def refine(lr: np.ndarray, sr: np.ndarray, kernel: np.ndarray, scale: int, a: float, b: float,
           iterations: int, device: torch.device | str = "cpu") -> np.ndarray:
    """``iterations`` RL steps on the counts of the LR frames ``lr`` from the SR result ``sr``
    (intensities, any leading axes); returns intensities like ``sr``."""
    if iterations <= 0:
        return sr
    x, _ = richardson_lucy(to_counts(lr, a, b), to_counts(sr, a, b), kernel, scale, iterations, device=device)
    return from_counts(x, a, b).astype(sr.dtype)


def iter_refine(spec: Any, frames: np.ndarray, result: np.ndarray, kernel: np.ndarray, scale: int, *,
                device: Any, seed: int, options: Mapping[str, Any], key: str, a: float, b: float,
                ) -> Generator[Progress, None, tuple[np.ndarray, int, bool]]:
    """Refine SR method ``spec``'s ``result`` (N, C, s·h, s·w) of ``frames`` (N, C, h, w) as the module
    docstring says. ``options``: the options the result was made with; ``key``: the method's noise
    option (raised by √2 for the half counts). Returns the refined result, the RL step count and whether
    the cross-validated count reached :data:`MAX_ITERATIONS` (the held-out counts still better predicted
    by more sharpening: with the true PSF, measured at most 11 on the real-optics report and 38 on
    the known-kernel report; with a kernel wider than the blur, the cap). Where it did, ``result`` comes
    back unrefined: the caller does not use a refinement of that kernel."""
    counts = to_counts(centre_crop(frames[frames.shape[0] // 2], CV_CROP), a, b)
    halves = thin(counts, np.random.default_rng([int(seed), 0x5EED]))
    half = from_counts(2.0 * halves[0], a, b).astype(np.float32)[None]
    opts = {**options, key: float(options[key]) * math.sqrt(2.0)}
    start = yield from spec.fn(half, kernel, scale, device=device, seed=seed, **opts)
    chosen = choose_iterations(halves, to_counts(start[0], a, b) / 2.0, kernel, scale, device=device)
    capped = chosen >= MAX_ITERATIONS
    steps = int(round(STEP_SCALE * chosen))
    if steps == 0 or capped:
        return result, steps, capped
    out = np.empty_like(result)
    t0 = time.perf_counter()
    for i in range(frames.shape[0]):
        # Frame by frame: the RL state of a whole stack at once would not fit in memory.
        out[i] = refine(frames[i], result[i], kernel, scale, a, b, steps, device=device)
        yield Progress(i + 1, frames.shape[0], time.perf_counter() - t0, stage=Stage.SR,
                       message=f"photon-limited refinement ({steps} Richardson–Lucy steps)")
    return out, steps, capped
