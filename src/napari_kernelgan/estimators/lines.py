"""Thin-line kernel estimation: sub-resolution filaments carry the point-spread function's projections.

Principle (the line-spread function of optical testing): a filament much
thinner than the blur is a line delta in the HR scene, so across it the LR
image shows the kernel *integrated along the line*, i.e. the kernel's marginal
in the line's normal direction ``n``. For an anisotropic Gaussian kernel that
marginal is a Gaussian of variance ``nᵀΣn``. The same point-sampling argument
as for isolated spots (:mod:`~napari_kernelgan.estimators.spots`) gives
``nᵀΣ_LR n`` with ``Σ_LR = Σ_k / s²`` on the LR grid. One filament direction
fixes one projection; filaments in at least three directions (microtubules,
actin, neurites, vessels) fix the whole 2×2 covariance, which a robust linear
least-squares fit over all line samples recovers.

Steps (the frame of them shared with ``spots`` in :mod:`~napari_kernelgan.estimators._direct`):
noise model (Poisson–Gaussian); ridge candidates where the Hessian of
the Gaussian-smoothed image has one strongly negative eigenvalue and one near
zero (a bright line, not a blob or an edge), on the ridge's centre line,
thinned to a few pixels apart; each candidate gets a weighted fit of
``bg + g·d + A·exp(−½ (d − μ)² / v)`` on the pixels of a short strip across
the line (``d``: signed distance to the line, point-sampled), with the normal
angle free; fits not shaped as lines (one flank brighter than the other: the
rim of a nucleus; a ridge that does not go on along the line: a blob) and fits
the noise cannot explain (crossings, edges) are dropped; then ``v_i = n_iᵀ Σ_LR n_i`` is solved for ``Σ_LR`` with Huber
weights.

Images without enough usable line samples, or whose lines all run the same
way: the fixed broad Gaussian (``constant_gaussian(2)``) with
``confidence = 0`` and ``extras["fallback"] = True``, or with
``require_lines=True`` a :class:`~napari_kernelgan.errors.BadInputError`.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch
from scipy import ndimage, optimize

from ..constraints import Interval
from ..physics.kernels import gaussian_from_covariance
from ..registry import register, register_tiles
from ..types import KernelEstimate, Progress, TileResult
from ..vocabulary import KERNEL_SIZE, Stage
from ._direct import (
    MAX_VARIANCE_LR,
    MIN_VARIANCE_LR,
    PURITY_FULL,
    SamplePool,
    check_odd_size,
    chi2_screen,
    count_factor,
    gray_frames,
    local_noise_std,
    lr_to_x2_covariance,
    measure,
    measured_estimate,
    no_measurement,
    purity_factor,
    snr_weights,
    solve_tiles,
    white_noise_gain,
)

DETECT_SIGMA = 1.0     # Hessian scale in LR pixels
MIN_SNR = 6.0          # ridge response over its noise standard deviation
LINE_RATIO = 0.35      # |λ_along| / |λ_across| above this is a blob or a junction, not a line
HALF_WIDTH = 4         # LR pixels across the line in a fit strip
HALF_LENGTH = 2        # LR pixels along the line in a fit strip
# A line's profile has background on both sides at the same level and goes on along the line; a nucleus's
# rim or shoulder (one flank inside the bright object) and a short blob (an elongated nucleus) do not:
FLANK_FROM = 2.5       # LR pixels from the centre line where a flank begins (to HALF_WIDTH)
MAX_ASYMMETRY = 0.5    # |left flank − right flank| / (centre − lower flank) above this: an edge or rim
BEYOND = (2.5, 4.5)    # LR pixels along the line, both ways, where the ridge must go on ...
MIN_CONTINUATION = 0.5  # ... at this fraction of its height at the centre at least (on its weaker side)
SHAPE_FULL = 0.7       # share of line fits shaped as lines above which confidence is not reduced
SPACING = 4.0          # LR pixels between line samples
MAX_SAMPLES = 400
TILE_SAMPLES = 30      # line samples fitted per tile of a kernel map (at most)
MIN_SAMPLES = 12
MAX_CHI2 = 2.5
SPREAD_SCALE = 0.15    # median relative misfit of the line samples at which confidence falls to 1/e
CHI2_OK = 4.0          # median reduced χ² of the line fits up to which confidence is not reduced
DARK_LEVEL = 0.5       # lines whose background reaches this fraction of the image's range get confidence 0
COVERAGE_FULL = 0.5    # direction coverage of uniformly spread lines (1: every direction equally)
REPORT_EVERY = 50
EARLY_LOOK = 40        # after this many candidates in a frame, stop if fewer than
EARLY_FRACTION = 0.3   # this fraction fitted as lines (natural images: edges and texture, not filaments)
EARLY_CHI2 = 5.0       # ... counting only fits with χ² below this many times CHI2_OK, on a dark background

def _hessian(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = DETECT_SIGMA
    hyy = s * s * ndimage.gaussian_filter(gray, s, order=(2, 0), mode="reflect")
    hxx = s * s * ndimage.gaussian_filter(gray, s, order=(0, 2), mode="reflect")
    hyx = s * s * ndimage.gaussian_filter(gray, s, order=(1, 1), mode="reflect")
    return hyy, hyx, hxx


def _hessian_yy(gray: np.ndarray) -> np.ndarray:
    """One scale-normalised second derivative: its white-noise gain is the ridge response's."""
    return _hessian(gray)[0]


def detect_ridges(gray: np.ndarray, model: tuple[float, float], *, min_snr: float = MIN_SNR,
                  spacing: float = SPACING, max_samples: int = MAX_SAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Centre-line samples of bright thin lines: (row, col) and the normal angle (radians, in (y, x)).

    Strongest first, at least ``spacing`` LR pixels apart.
    """
    hyy, hyx, hxx = _hessian(gray)
    half_trace = 0.5 * (hyy + hxx)
    root = np.sqrt(0.25 * (hyy - hxx) ** 2 + hyx ** 2)
    across, along = half_trace - root, half_trace + root   # across: the most negative eigenvalue
    # atan2(2b, a − c) / 2 is the direction of the larger eigenvalue (``along``); the normal is 90° from it
    angle = 0.5 * np.arctan2(2 * hyx, hyy - hxx) + 0.5 * np.pi
    ny, nx = np.cos(angle), np.sin(angle)
    snr = -across / (white_noise_gain(_hessian_yy) * local_noise_std(gray, model))
    line_like = (snr > min_snr) & (np.abs(along) < LINE_RATIO * np.abs(across))
    # Centre line: a maximum of the ridge strength along the normal.
    strength = -across
    rows, cols = np.mgrid[0:gray.shape[0], 0:gray.shape[1]].astype(np.float64)
    ahead = ndimage.map_coordinates(strength, [rows + ny, cols + nx], order=1, mode="nearest")
    behind = ndimage.map_coordinates(strength, [rows - ny, cols - nx], order=1, mode="nearest")
    centre = line_like & (strength >= ahead) & (strength >= behind)
    margin = HALF_WIDTH + 1
    centre[:margin] = centre[-margin:] = False
    centre[:, :margin] = centre[:, -margin:] = False
    rr, cc = np.nonzero(centre)
    order = np.argsort(-snr[rr, cc], kind="stable")
    taken = np.zeros(gray.shape, dtype=bool)
    rad = int(math.ceil(spacing))
    yy, xx = np.mgrid[-rad:rad + 1, -rad:rad + 1]
    disk = yy ** 2 + xx ** 2 < spacing ** 2
    picked: list[int] = []
    for j in order:
        r, c = rr[j], cc[j]
        if taken[r, c]:
            continue
        picked.append(j)
        r0, c0 = max(r - rad, 0), max(c - rad, 0)
        r1, c1 = min(r + rad + 1, gray.shape[0]), min(c + rad + 1, gray.shape[1])
        taken[r0:r1, c0:c1] |= disk[r0 - r + rad:r1 - r + rad, c0 - c + rad:c1 - c + rad]
        if len(picked) >= max_samples:
            break
    idx = np.asarray(picked, dtype=int)
    return np.stack([rr[idx], cc[idx]], 1), angle[rr[idx], cc[idx]]


def _line_model(p: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    bg, slope, amp, mu, phi, logv = p
    d = dy * math.cos(phi) + dx * math.sin(phi)
    # logv is clamped so that a diverging trial step cannot overflow (the fit is then rejected as too wide)
    return bg + slope * d + amp * np.exp(-0.5 * (d - mu) ** 2 / math.exp(min(max(logv, -20.0), 20.0)))


def fit_line(window: np.ndarray, variance: np.ndarray, phi0: float) -> dict[str, Any] | None:
    """Weighted fit of a line profile across a (2·HALF_WIDTH + 1)² window; ``None`` when it fails."""
    h = window.shape[0] // 2
    dy, dx = np.mgrid[-h:h + 1, -h:h + 1].astype(np.float64)
    # the strip: pixels within HALF_LENGTH of the centre along the line and HALF_WIDTH across it
    along = np.abs(-dy * math.sin(phi0) + dx * math.cos(phi0))
    across = np.abs(dy * math.cos(phi0) + dx * math.sin(phi0))
    strip = (along <= HALF_LENGTH + 0.5) & (across <= HALF_WIDTH)
    y, x, z = dy[strip], dx[strip], window[strip]
    weight = 1.0 / np.sqrt(variance[strip])
    outer = across[strip] >= HALF_WIDTH - 1.5
    bg0 = float(np.median(z[outer])) if outer.any() else float(z.min())
    amp0 = float(window[h, h] - bg0)
    if amp0 <= 0:
        return None
    p0 = np.array([bg0, 0.0, amp0, 0.0, phi0, math.log(0.5)])

    def residual(p: np.ndarray) -> np.ndarray:
        return (_line_model(p, y, x) - z) * weight

    try:
        sol = optimize.least_squares(residual, p0, method="lm", max_nfev=150, x_scale="jac")
    except (ValueError, OverflowError, np.linalg.LinAlgError):
        return None
    bg, slope, amp, mu, phi, logv = sol.x
    logv = min(max(float(logv), -20.0), 20.0)
    dof = z.size - sol.x.size
    turn = abs(math.remainder(phi - phi0, math.pi))
    asymmetry, continuation = _profile_shape(window, float(bg), float(mu), float(phi))
    return {"bg": float(bg), "amp": float(amp), "mu": float(mu), "phi": float(phi), "variance": float(math.exp(logv)),
            "asymmetry": asymmetry, "continuation": continuation,
            "chi2": float(2 * sol.cost / max(dof, 1)), "snr": float(amp) * float(weight.max()),
            "ok": bool(sol.success) and turn < 0.35}


def _profile_shape(window: np.ndarray, bg: float, mu: float, phi: float) -> tuple[float, float]:
    """(asymmetry, continuation) of a fitted line in its window, measured on the pixels themselves.

    ``asymmetry``: the difference of the mean levels on the two flanks (:data:`FLANK_FROM` to
    :data:`HALF_WIDTH` from the centre line, within :data:`HALF_LENGTH` along it) over the centre's
    height above the lower flank; about 0 for a line on a smooth background, near 1 where one flank is
    inside a bright object (a rim, a shoulder, an edge). ``continuation``: the ridge's height above
    ``bg`` in a band of ±1 px about the centre line at :data:`BEYOND` along it, on its weaker side, over
    its height in the same band at the centre; about 1 for a line, small for a blob or a short rim
    segment (a ridge no longer than it is wide).
    """
    h = window.shape[0] // 2
    dy, dx = np.mgrid[-h:h + 1, -h:h + 1].astype(np.float64)
    d = dy * math.cos(phi) + dx * math.sin(phi) - mu
    t = -dy * math.sin(phi) + dx * math.cos(phi)
    flank = (np.abs(d) >= FLANK_FROM) & (np.abs(d) <= HALF_WIDTH + 0.5) & (np.abs(t) <= HALF_LENGTH + 0.5)
    near = (np.abs(d) <= 0.75) & (np.abs(t) <= HALF_LENGTH + 0.5)
    left, right = window[flank & (d < 0)], window[flank & (d > 0)]
    if not (near.any() and left.size and right.size):
        return 1.0, 0.0
    low, high = sorted((float(left.mean()), float(right.mean())))
    asymmetry = (high - low) / max(float(window[near].mean()) - low, 1e-12)
    band = np.abs(d) <= 1.0
    centre = band & (np.abs(t) <= 1.5)
    height = float(window[centre].mean()) - bg if centre.any() else 0.0
    if height <= 0:
        return float(asymmetry), 0.0
    sides = []
    for sign in (-1.0, 1.0):
        beyond = band & (sign * t >= BEYOND[0]) & (sign * t <= BEYOND[1])
        sides.append((float(window[beyond].mean()) - bg) / height if beyond.any() else 0.0)
    return float(asymmetry), float(min(sides))


def _fits_as_line(fit: dict[str, Any]) -> bool:
    return bool(fit["ok"] and fit["amp"] > 0 and abs(fit["mu"]) <= 1.0
                and MIN_VARIANCE_LR <= fit["variance"] <= MAX_VARIANCE_LR)


def _shaped_as_line(fit: dict[str, Any]) -> bool:
    """Background at one level on both flanks, and the ridge goes on along the line (not a rim or a blob)."""
    return fit["asymmetry"] <= MAX_ASYMMETRY and fit["continuation"] >= MIN_CONTINUATION


def _line_like(fit: dict[str, Any]) -> bool:
    return _fits_as_line(fit) and _shaped_as_line(fit)


def _design(phis: np.ndarray) -> np.ndarray:
    """Rows ``(n_y², 2 n_y n_x, n_x²)``: ``v = row · (Σ_yy, Σ_yx, Σ_xx)``."""
    ny, nx = np.cos(phis), np.sin(phis)
    return np.stack([ny * ny, 2 * ny * nx, nx * nx], 1)


def direction_coverage(phis: np.ndarray, weights: np.ndarray) -> float:
    """How well the line directions determine a covariance: 1 for uniformly spread directions, 0 for one.

    The smallest over the largest eigenvalue of the weighted normal matrix of :func:`_design`, over that
    ratio for uniform directions (½).
    """
    a = _design(phis)
    m = (a * weights[:, None]).T @ a / weights.sum()
    ev = np.linalg.eigvalsh(m)
    return float(np.clip(ev[0] / max(ev[-1], 1e-12) / COVERAGE_FULL, 0.0, 1.0))


def solve_covariance(phis: np.ndarray, variances: np.ndarray, weights: np.ndarray,
                     iterations: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``Σ_LR`` from projected variances ``v_i = n_iᵀΣn_i`` (Huber-weighted least squares) and the
    relative residuals."""
    a = _design(phis)
    w = weights.astype(np.float64).copy()
    sol = np.zeros(3)
    rel = np.zeros_like(variances)
    for _ in range(iterations):
        sw = np.sqrt(w)
        sol, *_ = np.linalg.lstsq(a * sw[:, None], variances * sw, rcond=None)
        pred = np.maximum(a @ sol, 1e-6)
        rel = (variances - pred) / pred
        scale = max(1.4826 * float(np.median(np.abs(rel))), 0.05)
        u = np.abs(rel) / (1.5 * scale)
        w = weights * np.where(u <= 1, 1.0, 1.0 / np.maximum(u, 1e-12))
    cov = np.array([[sol[0], sol[1]], [sol[1], sol[2]]])
    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, MIN_VARIANCE_LR, MAX_VARIANCE_LR)
    return (vecs * vals) @ vecs.T, rel


def line_confidence(n_samples: int, spread: float, coverage: float, purity: float, chi2: float,
                    background: float, shape: float = 1.0) -> float:
    """Grows with the number of samples and the spread of line directions, falls with their disagreement
    and with the share of candidates that were not lines, and with how badly the line model fits.

    ``chi2`` is the line samples' median reduced χ² against the noise model. A sub-resolution line is
    the model plus noise (χ² near 1, a few at high photon counts where the model's small mismatches show);
    lines of a textured photograph or the rims of blobs leave structure the noise cannot explain (χ² of
    tens to thousands) and are widths of objects, not of the blur. ``background`` is the lines' median
    local background as a fraction of the image's range (1st–99th percentile): fluorescent filaments
    are bright on a dark background, while the thin bright structures of a photograph (hair, twigs,
    specular streaks) sit anywhere in its range and have widths of their own, which noise can hide
    from χ².

    ``spread`` is the samples' median relative misfit to the fitted covariance. It is not divided by √n:
    where it is large the samples are not line-spread functions (nucleus rims, texture ridges) and are
    wrong the same way, so more of them do not help.

    ``shape`` is the share of the fits of the line model that are also shaped as lines
    (:func:`_profile_shape`: the same background on both flanks, a ridge that goes on along the line).
    Where many are not, the image is of blobs (nuclei), and those of its ridges that pass are their
    longest or straightest rims, with the objects' widths.
    """
    if n_samples < MIN_SAMPLES or not math.isfinite(spread):
        return 0.0
    return float(count_factor(n_samples, 30.0) * math.exp(-spread / SPREAD_SCALE)
                 * min(1.0, coverage) * min(1.0, purity / PURITY_FULL) * min(1.0, CHI2_OK / max(chi2, 1e-12))
                 * float(np.clip(1.0 - background / DARK_LEVEL, 0.0, 1.0)) * min(1.0, shape / SHAPE_FULL))


@register("lines", kind="estimator", summary="Thin lines (closed form, a second): the blur's covariance from "
          "sub-resolution filaments (microtubules, actin, neurites) in several directions, as an anisotropic "
          "Gaussian",
          defaults={"min_snr": MIN_SNR, "spacing": SPACING, "max_samples": MAX_SAMPLES, "require_lines": False,
                    "size": KERNEL_SIZE},
          main=("min_snr", "require_lines"),
          ranges={"min_snr": Interval(float, 0, None, closed="neither"), "spacing": Interval(float, 1, None),
                  "max_samples": Interval(int, MIN_SAMPLES, None), "size": Interval(int, 3, None)},
          help={"min_snr": "detection threshold: a ridge's Hessian response over its noise standard deviation",
                "spacing": "LR pixels between line samples",
                "max_samples": "at most this many line samples (the strongest) are fitted per frame",
                "require_lines": "raise an error when no usable lines are found, instead of returning the fixed "
                                 "broad Gaussian with confidence 0",
                "size": "side of the returned ×2 kernel (odd)"})
def lines(frames: np.ndarray, *, scale: int = 2, device: torch.device | None = None, seed: int = 0,
          report_every: int = REPORT_EVERY, min_snr: float = MIN_SNR, spacing: float = SPACING,
          max_samples: int = MAX_SAMPLES, require_lines: bool = False,
          size: int = KERNEL_SIZE) -> Generator[Progress, None, KernelEstimate]:
    """×2 kernel from thin bright lines in several directions; deterministic, runs on the CPU."""
    check_odd_size("lines", size)
    every = max(1, int(report_every))
    start = time.perf_counter()
    grays = gray_frames(frames)
    pool = yield from _measure(grays, min_snr=min_snr, spacing=spacing, max_samples=int(max_samples), every=every,
                               start=start)
    kernel, confidence, cov, extras = _solve(pool.fits, len(pool.candidates), len(pool.examined), pool.early,
                                             require_lines, int(size), int(scale))
    yield Progress(len(grays), len(grays), time.perf_counter() - start, stage=Stage.ESTIMATE, kernel=kernel,
                   message=f"kernel from {extras['lines_used']} line samples" if not extras["fallback"]
                   else "no usable lines")
    return measured_estimate(kernel, cov, confidence, extras, start, seed)


def _line_like_early(fit: dict[str, Any]) -> bool:
    """For stopping early only: a line that could pass all of :func:`line_confidence`'s tests."""
    return _line_like(fit) and fit["chi2"] <= EARLY_CHI2 * CHI2_OK and fit["bg_level"] < DARK_LEVEL


def _frame_fit(gray: np.ndarray) -> Callable[[np.ndarray, np.ndarray, float], dict[str, Any] | None]:
    """:func:`fit_line` in a frame, each fit's background as a fraction of the frame's range (1st–99th
    percentile) added as ``bg_level``."""
    lo, hi = np.percentile(gray, [1, 99])

    def fit(window: np.ndarray, variance: np.ndarray, phi0: float) -> dict[str, Any] | None:
        sample = fit_line(window, variance, float(phi0))
        if sample is not None:
            sample["bg_level"] = (sample["bg"] - lo) / max(hi - lo, 1e-12)
        return sample

    return fit


def _measure(grays: list[np.ndarray], *, min_snr: float, spacing: float, max_samples: int, every: int,
             start: float, boxes: np.ndarray | None = None,
             per_tile: int = 0) -> Generator[Progress, None, SamplePool]:
    """Detect and fit line samples in every frame (strongest first). With ``boxes`` (T, 4), the
    strongest ``per_tile`` candidates of every box are fitted (each once) instead of the strongest
    ``max_samples`` of the frame."""

    def detect(gray: np.ndarray, model: tuple[float, float], limit: int | None) -> tuple[np.ndarray, np.ndarray, dict]:
        centres, phis = detect_ridges(gray, model, min_snr=min_snr, spacing=spacing,
                                      max_samples=max_samples if limit is None else limit)
        return centres, phis, {}

    return (yield from measure(grays, detect=detect, frame_fit=_frame_fit, usable=_line_like_early, half=HALF_WIDTH,
                               early_look=EARLY_LOOK, early_fraction=EARLY_FRACTION, every=every, start=start,
                               noun="line samples", found="line samples", boxes=boxes, per_tile=per_tile))


def _solve(fits: list[dict[str, Any]], candidates: int, examined: int, early: int, require: bool, size: int,
           scale: int) -> tuple[np.ndarray, float, np.ndarray, dict[str, Any]]:
    """(kernel, confidence, ×2 covariance, extras) from fitted line samples."""
    fitted = [f for f in fits if _fits_as_line(f)]
    shaped = [f for f in fitted if _shaped_as_line(f)]
    shape = len(shaped) / max(len(fitted), 1)
    good = chi2_screen(shaped, MAX_CHI2)
    extras: dict[str, Any] = {"line_candidates": candidates, "lines_examined": examined, "lines_fitted": len(fits),
                              "lines_used": len(good), "shape": round(shape, 3)}
    if early:
        extras["stopped_early"] = early
    coverage = 0.0
    if len(good) >= MIN_SAMPLES:
        phis = np.array([f["phi"] for f in good])
        w = snr_weights(good)
        coverage = direction_coverage(phis, w)
        extras["coverage"] = round(coverage, 3)
    if len(good) < MIN_SAMPLES or coverage < 0.1:
        message = (f"no usable thin lines in several directions ({len(good)} line samples of {candidates} "
                   f"candidates, {MIN_SAMPLES} needed; direction coverage {coverage:.2f}); use an image of "
                   f"filaments, lower min_snr, or another estimator such as 'spots' or 'auto'")
        kernel, confidence, cov = no_measurement(message, require, size, extras)
        return kernel, confidence, cov, extras
    variances = np.array([f["variance"] for f in good])
    cov_lr, rel = solve_covariance(phis, variances, w)
    spread = float(np.median(np.abs(rel)))
    purity, _ = purity_factor(len(good), examined)
    chi2 = float(np.median([f["chi2"] for f in good]))
    background = float(np.median([f["bg_level"] for f in good]))
    cov = lr_to_x2_covariance(cov_lr, scale)
    kernel = gaussian_from_covariance(cov, size)
    confidence = line_confidence(len(good), spread, coverage, purity, chi2, background, shape)
    extras.update(fallback=False, cov_lr=cov_lr.tolist(), spread=round(spread, 4), purity=round(purity, 3),
                  chi2=round(chi2, 3), background=round(background, 3))
    return kernel, confidence, cov, extras


@register_tiles("lines")
def lines_tiles(frames: np.ndarray, boxes: np.ndarray, *, scale: int = 2, device: torch.device | None = None,
                seed: int = 0, report_every: int = REPORT_EVERY, min_snr: float = MIN_SNR, spacing: float = SPACING,
                max_samples: int = MAX_SAMPLES, require_lines: bool = False,
                size: int = KERNEL_SIZE) -> Generator[Progress, None, list[TileResult]]:
    """All tiles of a kernel map from one detection per frame: the strongest :data:`TILE_SAMPLES`
    candidates of every tile are fitted once (stopping early, as for a whole image, where they are not
    lines), then each tile's covariance is solved from the samples inside it."""
    check_odd_size("lines", size)
    boxes = np.asarray(boxes).reshape(-1, 4)
    start = time.perf_counter()
    pool = yield from _measure(gray_frames(frames), min_snr=min_snr, spacing=spacing, max_samples=int(max_samples),
                               every=max(1, int(report_every)), start=start, boxes=boxes,
                               per_tile=min(int(max_samples), TILE_SAMPLES))
    return solve_tiles(pool, boxes, lambda fits, candidates, examined: _solve(
        fits, candidates, examined, pool.early, False, int(size), int(scale)))
