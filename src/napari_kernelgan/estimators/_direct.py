"""Direct measurement of the kernel from structures in the image: what ``spots`` and ``lines`` share.

Both read the blur off sub-resolution objects (a point is the kernel, a thin line its projection) in
the same steps, each with its own detector and its own sample fit:

* **noise**: a Poisson–Gaussian model ``var = a·z + b`` per frame (:func:`noise_model`), a floor
  (:func:`noise_floor`), the local noise of a detector's response (:func:`local_noise_std` with the
  detector's white-noise gain, :func:`white_noise_gain`) and of a fit window (:func:`window_variance`);
* **candidates**: the detector's strongest candidates, or the strongest of every tile
  (:func:`strongest_per_box`), each fitted once in a window around it; fitting stops early where few
  of the first candidates fit as the structure sought (texture, corners, edges) (:func:`measure`);
* **screening**: fits the noise model cannot explain are dropped (:func:`chi2_screen`), the rest are
  weighted by their capped SNR² (:func:`snr_weights`);
* **covariance**: a Gaussian of the LR-sample covariance, ``Σ_k2 = s²·Σ_LR`` at ×2 (:func:`lr_to_x2_covariance`);
* **confidence**: grows with the number of samples (:func:`count_factor`) and with the share of the
  candidates that were the structure sought (:func:`purity_factor`);
* **nothing to measure**: the fixed broad Gaussian with confidence 0, or an error (:func:`no_measurement`).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import BadInputError, BadOptionError
from ..physics.kernels import gaussian_kernel
from ..physics.noise import estimate_noise_sigma, estimate_poisson_gaussian
from ..types import KernelEstimate, Progress, TileResult
from ..vocabulary import Stage

__all__ = ["FALLBACK_SIGMA", "MAX_VARIANCE_LR", "MIN_VARIANCE_LR", "PURITY_FULL", "SNR_CAP", "noise_floor",
           "noise_model", "variance_map", "local_noise_std", "window_variance", "white_noise_gain", "gray_frames",
           "SamplePool", "measure", "strongest_per_box", "solve_tiles", "chi2_screen", "snr_weights",
           "lr_to_x2_covariance", "count_factor", "purity_factor", "check_odd_size", "no_measurement",
           "measured_estimate"]

FALLBACK_SIGMA = 1.6   # the fixed baseline kernel's σ (constant_gaussian(2))
MAX_VARIANCE_LR = 4.0  # LR px²: anything wider is a nucleus or a blob, not a point or a thin line
MIN_VARIANCE_LR = 0.02
PURITY_FULL = 0.3      # share of candidates kept as samples above which confidence is not reduced
SNR_CAP = 30.0         # a sample's weight is its SNR² up to this SNR: a few very bright ones cannot decide alone

_GAINS: dict[Callable[[np.ndarray], np.ndarray], float] = {}


def noise_floor(gray: np.ndarray) -> float:
    """The smallest noise standard deviation any model may give: 10⁻⁴ of the image's range (never 0)."""
    return 1e-4 * max(float(np.ptp(gray)), 1e-12)


def noise_model(gray: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` with ``var = a·z + b`` for a gray LR image; white-Gaussian fallback, never zero."""
    floor = noise_floor(gray)
    try:
        a, b = estimate_poisson_gaussian(gray)
    except BadInputError:
        a, b = 0.0, estimate_noise_sigma(gray) ** 2
    # A model that predicts negative variance somewhere inside the image's range is unreliable: go Gaussian.
    if a < 0 or a * float(gray.min()) + b < 0.25 * floor ** 2 or not (math.isfinite(a) and math.isfinite(b)):
        a, b = 0.0, max(estimate_noise_sigma(gray), floor) ** 2
    return float(a), float(b)


def variance_map(z: np.ndarray, model: tuple[float, float], floor: float) -> np.ndarray:
    """The noise variance the model predicts at intensities ``z``, at least ``floor²``."""
    return np.maximum(model[0] * z + model[1], floor ** 2)


def local_noise_std(gray: np.ndarray, model: tuple[float, float]) -> np.ndarray:
    """The noise standard deviation at every pixel, from the model at the 3×3 mean intensity."""
    return np.sqrt(variance_map(ndimage.uniform_filter(gray, 3), model, noise_floor(gray)))


def window_variance(window: np.ndarray, model: tuple[float, float], floor: float) -> np.ndarray:
    """The noise variance of every pixel of a fit window (the model at the 3×3 mean, edges repeated)."""
    return variance_map(ndimage.uniform_filter(window, 3, mode="nearest"), model, floor)


def white_noise_gain(response: Callable[[np.ndarray], np.ndarray]) -> float:
    """Standard deviation of a detector's ``response`` to unit white noise (measured once, fixed seed):
    a response divided by this and by the local noise is a signal-to-noise ratio."""
    if response not in _GAINS:
        _GAINS[response] = float(response(np.random.default_rng(0).standard_normal((256, 256)))[8:-8, 8:-8].std())
    return _GAINS[response]


def gray_frames(frames: np.ndarray) -> list[np.ndarray]:
    """Each frame (C, H, W) as one float64 gray image (the mean over channels)."""
    return [np.asarray(f, dtype=np.float64).mean(0) for f in frames]


@dataclass
class SamplePool:
    """Point or line samples measured over a whole image: the fits, where candidates were found and
    examined (frame, row, col), and how often fitting stopped early."""

    fits: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[tuple[int, int, int]] = field(default_factory=list)
    examined: list[tuple[int, int, int]] = field(default_factory=list)
    early: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def inside(self, box: np.ndarray) -> tuple[list[dict[str, Any]], int, int]:
        """(fits, candidates, examined) whose pixel lies in ``box`` (y0, x0, y1, x1)."""
        y0, x0, y1, x1 = (int(v) for v in box)

        def within(r: int, c: int) -> bool:
            return y0 <= r < y1 and x0 <= c < x1

        return ([f for f in self.fits if within(*f["pixel"])], sum(within(r, c) for _, r, c in self.candidates),
                sum(within(r, c) for _, r, c in self.examined))


Detect = Callable[[np.ndarray, tuple[float, float], int | None],
                  tuple[np.ndarray, Sequence[Any] | None, dict[str, int]]]
"""``detect(gray, model, limit)`` → ``(centres (M, 2), hints (one per centre, or None), counts)``, strongest
first, at most ``limit`` (``None``: the detector's own limit)."""

FrameFit = Callable[[np.ndarray], Callable[[np.ndarray, np.ndarray, Any], dict[str, Any] | None]]
"""``frame_fit(gray)`` → ``fit(window, variance, hint)``: a sample's fit (``None`` where it fails)."""


def measure(grays: list[np.ndarray], *, detect: Detect, frame_fit: FrameFit, usable: Callable[[dict[str, Any]], bool],
            half: int, early_look: int, early_fraction: float, every: int, start: float, noun: str, found: str,
            boxes: np.ndarray | None = None, per_tile: int = 0,
            counts: dict[str, int] | None = None) -> Generator[Progress, None, SamplePool]:
    """Detect and fit samples in every frame, strongest first, into a :class:`SamplePool`.

    Each candidate's ``(2·half + 1)²`` window is fitted with its noise variance; a frame stops early
    where fewer than ``early_fraction`` of its first ``early_look`` candidates or more are ``usable``.
    With ``boxes`` (T, 4), the strongest ``per_tile`` candidates of every box are fitted (each once)
    instead of the detector's strongest of the frame. ``counts``: the detector's counts to add up.
    Reports every ``every`` fits (``noun``: what is fitted; ``found``: what a frame's candidates are).
    """
    pool = SamplePool(counts=dict(counts or {}))
    for fi, gray in enumerate(grays):
        model = noise_model(gray)
        floor = noise_floor(gray)
        centres, hints, found_counts = detect(gray, model, None if boxes is None else gray.size)
        if boxes is not None:
            keep = strongest_per_box(centres, boxes, per_tile)
            centres = centres[keep]
            hints = None if hints is None else hints[keep]
        for key, val in found_counts.items():
            pool.counts[key] = pool.counts.get(key, 0) + val
        pool.candidates.extend((fi, int(r), int(c)) for r, c in centres)
        fit = frame_fit(gray)
        good = 0
        for j, (r, c) in enumerate(centres):
            window = gray[r - half:r + half + 1, c - half:c + half + 1]
            sample = fit(window, window_variance(window, model, floor), None if hints is None else hints[j])
            pool.examined.append((fi, int(r), int(c)))
            if sample is not None:
                sample["frame"], sample["pixel"] = fi, (int(r), int(c))
                pool.fits.append(sample)
                good += usable(sample)
            if j + 1 >= early_look and good < early_fraction * (j + 1):
                # Mostly texture, corners, edges and blobs, not what is sought: stop paying for fits.
                pool.early += 1
                pool.counts["stopped_early"] = pool.counts.get("stopped_early", 0) + 1
                break
            if (j + 1) % every == 0:
                yield Progress(fi, len(grays), time.perf_counter() - start, stage=Stage.ESTIMATE,
                               message=f"fitted {j + 1} of {len(centres)} {noun} in frame {fi + 1}")
        yield Progress(fi + 1, len(grays), time.perf_counter() - start, stage=Stage.ESTIMATE,
                       message=f"frame {fi + 1}: {len(centres)} {found}")
    return pool


def strongest_per_box(centres: np.ndarray, boxes: np.ndarray, per_box: int) -> np.ndarray:
    """Indices (in their order, strongest first) of the first ``per_box`` of ``centres`` (M, 2) in each box."""
    keep = np.zeros(len(centres), dtype=bool)
    if len(centres) == 0:
        return np.zeros(0, dtype=int)
    r, c = centres[:, 0], centres[:, 1]
    for y0, x0, y1, x1 in np.asarray(boxes).reshape(-1, 4):
        idx = np.nonzero((r >= y0) & (r < y1) & (c >= x0) & (c < x1))[0][:per_box]
        keep[idx] = True
    return np.nonzero(keep)[0]


def solve_tiles(pool: SamplePool, boxes: np.ndarray,
                solve: Callable[[list[dict[str, Any]], int, int], tuple[np.ndarray, float, np.ndarray, dict[str, Any]]],
                ) -> list[TileResult]:
    """One :class:`~napari_kernelgan.types.TileResult` per box from the samples inside it; ``solve(fits,
    candidates, examined)`` is the estimator's own solve (``None`` kernel where it found too little)."""
    out = []
    for box in boxes:
        kernel, confidence, cov, extras = solve(*pool.inside(box))
        out.append(TileResult(kernel=None, confidence=0.0, message=extras["message"]) if extras["fallback"] else
                   TileResult(kernel=kernel, confidence=confidence, covariance=cov))
    return out


def chi2_screen(fits: list[dict[str, Any]], max_chi2: float) -> list[dict[str, Any]]:
    """The fits whose reduced χ² is at most ``max_chi2`` or twice the median, whichever is larger:
    overlapping objects, crossings and edges leave structure the noise model cannot explain."""
    if not fits:
        return fits
    limit = max(max_chi2, 2.0 * float(np.median(np.array([f["chi2"] for f in fits]))))
    return [f for f in fits if f["chi2"] <= limit]


def snr_weights(fits: list[dict[str, Any]]) -> np.ndarray:
    """Each fit's weight: its SNR² (the inverse variance of a fitted width), the SNR capped at :data:`SNR_CAP`."""
    return np.array([min(f["snr"], SNR_CAP) ** 2 for f in fits])


def lr_to_x2_covariance(cov_lr: np.ndarray, scale: int) -> np.ndarray:
    """Covariance of the ×2 kernel in HR pixels from an LR sample covariance at ``scale``.

    ×2: ``Σ_k2 = 4·Σ_LR``. ×4: the LR image of a point is ``k4 = k2 ⊛ dilate2(k2)`` with
    ``Σ_k4 = 5·Σ_k2`` and ``Σ_k4 = 16·Σ_LR``, so ``Σ_k2 = 16·Σ_LR / 5``.
    """
    if scale == 2:
        return 4.0 * cov_lr
    if scale == 4:
        return 16.0 * cov_lr / 5.0
    raise BadOptionError(f"direct measurement: scale must be 2 or 4, got {scale}")


def count_factor(n: int, scale: float) -> float:
    """``1 − exp(−n / scale)``: how far ``n`` samples are from too few to many enough."""
    return 1 - math.exp(-n / scale)


def purity_factor(used: int, candidates: int) -> tuple[float, float]:
    """``(purity, factor)``: the share of ``candidates`` used as samples and the confidence factor it gives
    (1 from :data:`PURITY_FULL` on). Texture has candidates too, but few of them survive as samples."""
    purity = used / max(candidates, 1)
    return purity, min(1.0, purity / PURITY_FULL)


def check_odd_size(name: str, value: int, option: str = "size") -> None:
    """A kernel side must be odd (a centre pixel); the range ``≥ 3`` is declared to the registry."""
    if int(value) % 2 == 0:
        raise BadOptionError(f"{name}: {option} must be odd, got {value}")


def no_measurement(message: str, require: bool, size: int,
                   extras: dict[str, Any]) -> tuple[np.ndarray, float, np.ndarray]:
    """Nothing to measure: raise with ``message`` where ``require``, else the fixed broad Gaussian
    (kernel, confidence 0, covariance), recorded in ``extras``."""
    if require:
        raise BadInputError(message)
    extras.update(fallback=True, message=message)
    return gaussian_kernel(int(size), FALLBACK_SIGMA), 0.0, np.eye(2) * FALLBACK_SIGMA ** 2


def measured_estimate(kernel: np.ndarray, cov: np.ndarray, confidence: float, extras: dict[str, Any],
                      start: float, seed: int) -> KernelEstimate:
    """The :class:`KernelEstimate` of a direct measurement (no training, no D-map)."""
    extras["covariance"] = np.asarray(cov).tolist()
    # numpy and scipy only, whatever device was asked for: "cpu" is where it ran
    return KernelEstimate(kernel=kernel, dmap=None, loss_history={}, iterations=0,
                          elapsed=time.perf_counter() - start, device="cpu", seed=seed, extras=extras,
                          confidence=confidence)
