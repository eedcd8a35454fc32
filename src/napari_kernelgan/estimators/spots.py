"""Point-source kernel estimation: isolated sub-resolution spots are the point-spread function.

Principle (as bead-based PSF measurement does it): a sub-resolution point in the
HR scene is a delta, so under ``LR = (HR ⋆ k)↓s`` its LR image is the kernel
itself, *point-sampled* on the coarse grid — LR pixel ``i`` takes the blurred
HR value at HR coordinate ``s·i + (s − 1)/2``. The kernel already contains the
HR pixel integration and the subsampling adds none, so a Gaussian fitted to
the LR samples (as samples, not integrated over LR pixels) has covariance
``Σ_LR = Σ_k / s²`` whatever the spot's sub-pixel phase: ``Σ_k = s²·Σ_LR``
(checked on synthetic beads in tests/test_spots.py). At ×4 the LR spot is
``k4 = k2 ⊛ dilate2(k2)``, whose covariance is ``5·Σ_k2``, so
``Σ_k2 = 16·Σ_LR / 5``.

Steps (the frame of them shared with ``lines`` in :mod:`~napari_kernelgan.estimators._direct`):
noise model (Poisson–Gaussian, :mod:`napari_kernelgan.physics.noise`);
candidates are local maxima of the scale-normalised Laplacian of Gaussian above
a noise-relative threshold; a candidate with another maximum nearby
(crowding), a flat top (saturation) or a fit that the noise cannot explain
(overlap, an edge or a ridge) is dropped; each survivor gets a weighted
least-squares fit of ``bg + A·exp(−½(x−μ)ᵀΣ⁻¹(x−μ))`` with sub-pixel ``μ``;
spots off the sharpest population's width (out of focus, resolved blobs, noise) or whose ``Σ``
disagrees with the median are dropped and the rest averaged, weighted by their signal-to-noise ratio.

The kernel's shape (at ×2) is the kept spots' registered average on the HR grid
(:mod:`~napari_kernelgan.estimators._spot_shape`, :func:`napari_kernelgan.physics.beads.register_average`)
where its two halves agree better than the Gaussian of ``Σ`` does, else that Gaussian. Spots the average
cannot explain (:func:`~._spot_shape.shape_agreement`: bright, isolated, point-sized, yet each shaped by chance,
as single-pixel spikes are) are declined like an image without spots. The bead QC
(:func:`napari_kernelgan.physics.beads.bead_qc`, the spots used and rejected by reason, the spread of
their widths) is in ``options["spots_qc"]``.

Images without usable spots (the rings of ``testing.contract_image``, most
natural photographs): by default the fixed broad Gaussian
(``constant_gaussian(2)``: isotropic σ = 1.6 HR px) is returned with
``confidence = 0`` and ``extras["fallback"] = True``; with
``require_spots=True`` a :class:`~napari_kernelgan.errors.BadInputError` is
raised instead.
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch
from scipy import ndimage, optimize

from ..constraints import Interval
from ..physics.beads import qc_line
from ..physics.kernels import gaussian_from_covariance
from ..registry import register, register_tiles
from ..types import KernelEstimate, Progress, TileResult
from ..vocabulary import KERNEL_SIZE, Stage
from ._direct import (
    MAX_VARIANCE_LR,
    MIN_VARIANCE_LR,
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
    noise_model,
    purity_factor,
    snr_weights,
    solve_tiles,
    white_noise_gain,
)
from ._spot_shape import MAX_SHAPE_CHI2, MAX_UNEXPLAINED, choose_shape, measured_shape, psf_kernel, spots_qc
from ._spot_shape import MAX_SIDE as MAX_SHAPE_SIDE

DETECT_SIGMA = 1.0     # LoG scale in LR pixels (spots of the DIV2KRK range have σ_LR ≈ 0.4–1.1 at ×2)
HALF_WINDOW = 4        # fit window: (2·4 + 1)² LR pixels
MIN_SNR = 8.0          # LoG response over its noise std to take a maximum as a spot
ISOLATION = 5.0        # LR pixels: no other significant maximum this close
TILE_SPOTS = 25        # spots fitted per tile of a kernel map (at most)
MAX_SPOTS = 300
MIN_SPOTS = 5
REPORT_EVERY = 40
EARLY_LOOK = 24        # after this many candidates in a frame, stop if fewer than
EARLY_FRACTION = 0.3   # this fraction were point-like (natural images: corners and texture, not spots)
SIZE_TOLERANCE = 0.2   # spots wider (or narrower) than the sharpest population by more than this share are not points
NEIGHBOUR_SNR = 5.0    # a maximum this far above the noise is an object whose light must not enter a spot's average

def _log_response(gray: np.ndarray) -> np.ndarray:
    """Scale-normalised, sign-flipped LoG: bright spots give positive peaks."""
    return -DETECT_SIGMA ** 2 * ndimage.gaussian_laplace(gray, DETECT_SIGMA, mode="reflect")


def significant_maxima(gray: np.ndarray, model: tuple[float, float], min_snr: float = NEIGHBOUR_SNR) -> np.ndarray:
    """(row, col) of every LoG maximum more than ``min_snr`` noise standard deviations high (objects, not noise)."""
    resp = _log_response(gray)
    snr = resp / (white_noise_gain(_log_response) * local_noise_std(gray, model))
    return np.argwhere((resp == ndimage.maximum_filter(resp, size=3)) & (snr > min_snr))


def detect_spots(gray: np.ndarray, model: tuple[float, float], *, min_snr: float = MIN_SNR,
                 isolation: float = ISOLATION, max_spots: int = MAX_SPOTS) -> tuple[np.ndarray, dict[str, int]]:
    """Isolated, unsaturated LoG maxima (row, col) of a gray image, brightest first, plus rejection counts."""
    resp = _log_response(gray)
    snr = resp / (white_noise_gain(_log_response) * local_noise_std(gray, model))
    peaks = (resp == ndimage.maximum_filter(resp, size=3)) & (snr > 3.0)
    margin = HALF_WINDOW + 1
    peaks[:margin] = peaks[-margin:] = False
    peaks[:, :margin] = peaks[:, -margin:] = False
    rr, cc = np.nonzero(peaks)
    counts = {"maxima": int(rr.size), "crowded": 0, "saturated": 0}
    strong = snr[rr, cc] > min_snr
    if not strong.any():
        return np.zeros((0, 2), dtype=int), counts
    # Crowding: another maximum above 3σ within the isolation radius with at least 15 % of the spot's
    # response (a weaker one is noise on its flank, not a neighbour).
    rad = int(math.ceil(isolation))
    yy, xx = np.mgrid[-rad:rad + 1, -rad:rad + 1]
    ring = (yy ** 2 + xx ** 2 <= isolation ** 2) & ((yy != 0) | (xx != 0))
    grid = np.zeros(gray.shape, dtype=np.float64)
    grid[rr, cc] = resp[rr, cc]
    nearest_rival = ndimage.maximum_filter(grid, footprint=ring, mode="constant")[rr, cc]
    crowded = nearest_rival > 0.15 * resp[rr, cc]
    counts["crowded"] = int((strong & crowded).sum())
    keep = strong & ~crowded
    # Saturation: a flat top at the image maximum.
    top = float(gray.max())
    at_top = ndimage.correlate((gray >= top - 1e-6 * max(abs(top), 1.0)).astype(np.int32), np.ones((3, 3), int),
                               mode="constant")[rr, cc]
    saturated = keep & (at_top >= 2)
    counts["saturated"] = int(saturated.sum())
    keep &= ~saturated
    idx = np.nonzero(keep)[0]
    idx = idx[np.argsort(-snr[rr[idx], cc[idx]], kind="stable")][:max_spots]
    return np.stack([rr[idx], cc[idx]], 1), counts


def _model(p: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    bg, amp, my, mx, q1, l2, q3 = p
    l1, l3 = math.exp(q1), math.exp(q3)
    # Σ = L Lᵀ with L = [[l1, 0], [l2, l3]] stays positive definite for any parameters.
    syy, syx, sxx = l1 * l1, l1 * l2, l2 * l2 + l3 * l3
    det = max(syy * sxx - syx * syx, 1e-300)
    y, x = dy - my, dx - mx
    q = (sxx * y * y - 2 * syx * y * x + syy * x * x) / det
    return bg + amp * np.exp(-0.5 * q)


def _moments_plausible(window: np.ndarray, bg: float) -> bool:
    """Cheap screen before the fit: background-subtracted second moments of a point source's size."""
    h = window.shape[0] // 2
    w = np.clip(window - bg, 0.0, None)
    total = float(w.sum())
    if total <= 0:
        return False
    dy, dx = np.mgrid[-h:h + 1, -h:h + 1]
    my, mx = float((w * dy).sum()) / total, float((w * dx).sum()) / total
    spread = float((w * ((dy - my) ** 2 + (dx - mx) ** 2)).sum()) / total
    # noise and the window's clipped tails inflate the raw moments: screen generously (3× the fit's bound)
    return abs(my) <= 1.5 and abs(mx) <= 1.5 and spread <= 3.0 * 2 * MAX_VARIANCE_LR


def fit_spot(window: np.ndarray, variance: np.ndarray) -> dict[str, Any] | None:
    """Weighted Gaussian fit of one spot window (point-sampled model); ``None`` when it fails."""
    h = window.shape[0] // 2
    dy, dx = np.mgrid[-h:h + 1, -h:h + 1].astype(np.float64)
    border = np.concatenate([window[0], window[-1], window[1:-1, 0], window[1:-1, -1]])
    bg0 = float(np.median(border))
    amp0 = float(window[h, h] - bg0)
    if amp0 <= 0 or not _moments_plausible(window, bg0):
        return None
    weight = 1.0 / np.sqrt(variance)
    p0 = np.array([bg0, amp0, 0.0, 0.0, math.log(0.7), 0.0, math.log(0.7)])

    def residual(p: np.ndarray) -> np.ndarray:
        return ((_model(p, dy, dx) - window) * weight).ravel()

    try:
        sol = optimize.least_squares(residual, p0, method="lm", max_nfev=120, x_scale="jac")
    except (ValueError, OverflowError, np.linalg.LinAlgError):
        return None
    bg, amp, my, mx, q1, l2, q3 = sol.x
    l1, l3 = math.exp(q1), math.exp(q3)
    cov = np.array([[l1 * l1, l1 * l2], [l1 * l2, l2 * l2 + l3 * l3]])
    dof = window.size - sol.x.size
    peak_std = float(np.sqrt(variance[h, h]))
    return {"bg": float(bg), "amp": float(amp), "centre": (float(my), float(mx)), "cov": cov,
            "window": window, "variance": variance,
            "chi2": float(2 * sol.cost / dof), "snr": float(amp) / max(peak_std, 1e-12), "ok": bool(sol.success)}


def joint_fit(fits: list[dict[str, Any]], cov0: np.ndarray) -> np.ndarray:
    """One covariance shared by all kept spots (each keeps its own background, amplitude and centre).

    Weighted by the noise model, with a Huber loss at 3 noise standard deviations so that a pixel of a
    neighbouring structure inside a window loses its pull. Much less noisy than averaging per-spot
    covariances when the spots are faint.
    """
    from scipy.sparse import lil_matrix

    n = len(fits)
    windows = np.stack([f["window"] for f in fits])
    weights = 1.0 / np.sqrt(np.stack([f["variance"] for f in fits]))
    h = windows.shape[1] // 2
    dy, dx = np.mgrid[-h:h + 1, -h:h + 1].astype(np.float64)
    npx = windows[0].size
    l1 = math.sqrt(max(cov0[0, 0], 1e-3))
    l2 = cov0[0, 1] / l1
    l3 = math.sqrt(max(cov0[1, 1] - l2 * l2, 1e-3))
    shared0 = np.array([math.log(l1), l2, math.log(l3)])
    own0 = np.array([[f["bg"], f["amp"], *f["centre"]] for f in fits])
    p0 = np.concatenate([shared0, own0.ravel()])

    def residual(p: np.ndarray) -> np.ndarray:
        q1, l2_, q3 = p[:3]
        own = p[3:].reshape(n, 4)
        a1, a3 = math.exp(q1), math.exp(q3)
        syy, syx, sxx = a1 * a1, a1 * l2_, l2_ * l2_ + a3 * a3
        det = syy * sxx - syx * syx
        y = dy[None] - own[:, 2, None, None]
        x = dx[None] - own[:, 3, None, None]
        quad = (sxx * y * y - 2 * syx * y * x + syy * x * x) / det
        model = own[:, 0, None, None] + own[:, 1, None, None] * np.exp(-0.5 * quad)
        return ((model - windows) * weights).ravel()

    sparsity = lil_matrix((n * npx, 3 + 4 * n), dtype=np.int8)
    sparsity[:, :3] = 1
    for i in range(n):
        sparsity[i * npx:(i + 1) * npx, 3 + 4 * i:7 + 4 * i] = 1
    sol = optimize.least_squares(residual, p0, jac_sparsity=sparsity, method="trf", loss="huber", f_scale=3.0,
                                 x_scale="jac", max_nfev=200)
    q1, l2_, q3 = sol.x[:3]
    a1, a3 = math.exp(q1), math.exp(q3)
    return np.array([[a1 * a1, a1 * l2_], [a1 * l2_, l2_ * l2_ + a3 * a3]])


def _point_like(fit: dict[str, Any]) -> bool:
    """A converged fit, centred within a pixel, of a plausible point-source width."""
    if not (fit["ok"] and fit["amp"] > 0 and max(abs(c) for c in fit["centre"]) <= 1.0):
        return False
    lo, hi = np.linalg.eigvalsh(fit["cov"])
    return bool(lo >= MIN_VARIANCE_LR and hi <= MAX_VARIANCE_LR)


def _population(good: list[dict[str, Any]]) -> tuple[np.ndarray, dict[str, int]]:
    """Which fits belong to the point-like population: sub-resolution points all image as the PSF, so the
    sharpest population is the PSF's width; wider spots are out of focus or resolved objects (``wide``),
    narrower ones noise or hot pixels (``narrow``). Returns the mask and the counts."""
    width = np.array([math.sqrt(float(np.trace(f["cov"]))) for f in good])
    # the sharp half locates the population; its spread is measured on all spots near it (noise widens it both
    # ways, a second population of blobs only upwards)
    first = float(np.median(width[width <= np.median(width)]))
    near = width[(width >= 0.6 * first) & (width <= 1.5 * first)]
    ref = float(np.median(near))
    tol = max(3.0 * 1.4826 * float(np.median(np.abs(near - ref))), SIZE_TOLERANCE * ref)
    wide, narrow = width > ref + tol, width < ref - tol
    return ~(wide | narrow), {"wide": int(wide.sum()), "narrow": int(narrow.sum())}


def _consensus(fits: list[dict[str, Any]],
               max_chi2: float) -> tuple[np.ndarray, list[dict[str, Any]], float, dict[str, int]]:
    """Robust mean LR covariance over fitted spots: (Σ_LR, spots kept, spread, rejections by reason)."""
    point = [f for f in fits if _point_like(f)]
    good = chi2_screen(point, max_chi2)
    reasons = {"not point-like": len(fits) - len(point), "poor fit": len(point) - len(good)}
    if not good:
        return np.full((2, 2), np.nan), [], math.inf, reasons
    member, sizes = _population(good)
    reasons.update(sizes)
    good = [f for f, m in zip(good, member) if m]
    vec = np.array([[f["cov"][0, 0], f["cov"][0, 1], f["cov"][1, 1]] for f in good])
    med = np.median(vec, 0)
    dist = np.sqrt(((vec - med) ** 2 * [1, 2, 1]).sum(1))
    scale = 1.4826 * float(np.median(dist))
    tol = max(3.0 * scale, 0.1 * (med[0] + med[2]))
    keep = dist <= tol
    reasons["shape"] = int((~keep).sum())
    w = snr_weights(good)[keep]
    mean = (vec[keep] * w[:, None]).sum(0) / w.sum()
    kept = [f for f, k in zip(good, keep) if k]
    spread = float(np.median(dist[keep])) / max(mean[0] + mean[2], 1e-12)
    cov = np.array([[mean[0], mean[1]], [mean[1], mean[2]]])
    return cov, kept, spread, reasons


def spot_confidence(n_spots: int, spread: float) -> float:
    """Grows with the number of agreeing spots and falls with the standard error of their mean.

    ``spread`` is the spots' median relative disagreement with the consensus; the mean of ``n`` of
    them is uncertain by about ``spread / √n`` (relative), and 5 % of that halves the confidence.
    """
    if n_spots < MIN_SPOTS or not math.isfinite(spread):
        return 0.0
    return float(count_factor(n_spots, 10.0) * math.exp(-spread / math.sqrt(n_spots) / 0.07))


@register("spots", kind="estimator", summary="Isolated spots (closed form, a second): the PSF measured from "
          "sub-resolution point sources such as beads or puncta (their registered average), with bead QC",
          defaults={"min_snr": MIN_SNR, "isolation": ISOLATION, "max_spots": MAX_SPOTS, "require_spots": False,
                    "size": None, "pixel_um": None},
          main=("min_snr", "require_spots"),
          ranges={"min_snr": Interval(float, 0, None, closed="neither"), "isolation": Interval(float, 1, None),
                  "max_spots": Interval(int, MIN_SPOTS, None), "size": Interval(int, 3, None),
                  "pixel_um": Interval(float, 0, None, closed="neither")},
          help={"min_snr": "detection threshold: a spot's LoG response over its noise standard deviation",
                "isolation": "LR pixels around a spot that must hold no other significant maximum",
                "max_spots": "at most this many spots (the brightest) are fitted per frame",
                "require_spots": "raise an error when no usable spots are found, instead of returning the fixed "
                                 "broad Gaussian with confidence 0",
                "size": "side of the returned ×2 kernel (odd; empty: 13, or the side holding 99 % of the measured "
                        "PSF's light where it needs more, at most 41)",
                "pixel_um": "the input image's pixel size in µm: the QC gives FWHMs in µm too (the kernel's pixels "
                            "are pixel_um / 2)"})
def spots(frames: np.ndarray, *, scale: int = 2, device: torch.device | None = None, seed: int = 0,
          report_every: int = REPORT_EVERY, min_snr: float = MIN_SNR, isolation: float = ISOLATION,
          max_spots: int = MAX_SPOTS, require_spots: bool = False, size: int | None = None,
          pixel_um: float | None = None) -> Generator[Progress, None, KernelEstimate]:
    """×2 kernel from isolated point-like spots (beads, puncta); deterministic, runs on the CPU.

    The kernel is the spots' registered average where at least ``MIN_SHAPE_SPOTS`` are usable (at ×2),
    else the Gaussian of their covariance; ``options["spots_qc"]`` holds the bead QC of the result."""
    if size is not None:
        check_odd_size("spots", size)
    every = max(1, int(report_every))
    start = time.perf_counter()
    grays = gray_frames(frames)
    pool = yield from _measure(grays, min_snr=min_snr, isolation=isolation, max_spots=int(max_spots), every=every,
                               start=start)
    if len(pool.fits) >= MIN_SPOTS:
        yield Progress(len(grays), len(grays), time.perf_counter() - start, stage=Stage.ESTIMATE,
                       message=f"joint fit of up to {len(pool.fits)} spots")
    kernel, confidence, cov, extras = _solve(pool.fits, len(pool.candidates), pool.counts, require_spots,
                                             None if size is None else int(size), int(scale), grays=grays,
                                             pixel_um=pixel_um)
    yield Progress(len(grays), len(grays), time.perf_counter() - start, stage=Stage.ESTIMATE, kernel=kernel,
                   message=f"kernel from {extras['spots_used']} spots" if not extras["fallback"] else "no usable spots")
    est = measured_estimate(kernel, cov, confidence, extras, start, seed)
    if "spots_qc" in extras:
        est.options["spots_qc"] = extras["spots_qc"]
    return est


def _measure(grays: list[np.ndarray], *, min_snr: float, isolation: float, max_spots: int, every: int, start: float,
             boxes: np.ndarray | None = None, per_tile: int = 0) -> Generator[Progress, None, SamplePool]:
    """Detect and fit isolated spots in every frame (brightest first). With ``boxes`` (T, 4), the
    brightest ``per_tile`` spots of every box are fitted (each once) instead of the brightest
    ``max_spots`` of the frame."""

    def detect(gray: np.ndarray, model: tuple[float, float], limit: int | None) -> tuple[np.ndarray, None, dict]:
        centres, counts = detect_spots(gray, model, min_snr=min_snr, isolation=isolation,
                                       max_spots=max_spots if limit is None else limit)
        return centres, None, counts

    def frame_fit(gray: np.ndarray) -> Callable[[np.ndarray, np.ndarray, None], dict[str, Any] | None]:
        return lambda window, variance, _: fit_spot(window, variance)

    return (yield from measure(grays, detect=detect, frame_fit=frame_fit, usable=_point_like,
                               half=HALF_WINDOW, early_look=EARLY_LOOK,
                               early_fraction=EARLY_FRACTION, every=every, start=start, noun="spots",
                               found="isolated spots", boxes=boxes, per_tile=per_tile,
                               counts={"maxima": 0, "crowded": 0, "saturated": 0}))


def _solve(fits: list[dict[str, Any]], candidates: int, counts: dict[str, int], require: bool, size: int | None,
           scale: int, grays: list[np.ndarray] | None = None,
           pixel_um: float | None = None) -> tuple[np.ndarray, float, np.ndarray, dict[str, Any]]:
    """(kernel, confidence, ×2 covariance, extras) from fitted spots; with ``grays`` (a whole image at ×2), the
    kernel is the spots' registered average where enough of them are usable, else their Gaussian."""
    cov_lr, kept, spread, reasons = _consensus(fits, max_chi2=3.0)
    extras: dict[str, Any] = {"spots_found": candidates, "spots_fitted": len(fits), "spots_used": len(kept),
                              "rejected_crowded": counts["crowded"], "rejected_saturated": counts["saturated"]}
    side = KERNEL_SIZE if size is None else int(size)
    if len(kept) < MIN_SPOTS:
        message = (f"no isolated point-like spots found ({len(kept)} usable of {candidates} candidates, "
                   f"{MIN_SPOTS} needed); use an image of sub-resolution beads or puncta, lower min_snr, or another "
                   f"estimator such as 'edges' or 'kernelgan'")
        kernel, confidence, cov = no_measurement(message, require, side, extras)
        extras["shape"] = "fallback"
        extras["spots_qc"] = {"used": len(kept), "shape": "fallback", "rejected": {
            "crowded": int(counts.get("crowded", 0)), "saturated": int(counts.get("saturated", 0)), **reasons}}
        return kernel, confidence, cov, extras
    # A failed joint fit keeps the robust average of the per-spot fits.
    with contextlib.suppress(ValueError, OverflowError, np.linalg.LinAlgError):
        cov_lr = joint_fit(kept, cov_lr)
    cov = lr_to_x2_covariance(cov_lr, scale)
    # Texture also has isolated maxima, but few of its many candidates survive as points: the
    # share that does (purity) tells a field of point sources from a textured scene.
    purity, pure = purity_factor(len(kept), candidates)
    confidence = spot_confidence(len(kept), spread) * pure
    extras["purity"] = round(purity, 3)
    extras.update(fallback=False, cov_lr=cov_lr.tolist(), spread=spread)
    kernel = measured = None
    if grays is not None and scale == 2:
        maxima = [significant_maxima(g, noise_model(g)) for g in grays]
        shaped = measured_shape(kept, grays, maxima, scale, reasons)
        if shaped is not None:
            psf, extras["spots_averaged"], halves, (extras["shape_chi2"], extras["shape_unexplained"]) = shaped
            if extras["shape_chi2"] > MAX_SHAPE_CHI2 and extras["shape_unexplained"] > MAX_UNEXPLAINED:
                # Bright, isolated and point-sized, yet no two alike: impulses (hot pixels, cosmic rays, noise
                # spikes), not images of one PSF. Their count must not buy confidence: nothing was measured.
                return _unlike(extras, kept, counts, reasons, require, side)
            better, extras["split_half_l1"], extras["gaussian_l1"] = choose_shape(
                halves, gaussian_from_covariance(cov, MAX_SHAPE_SIDE))
            measured = psf_kernel(psf, None)
            if better:
                kernel = measured if size is None else psf_kernel(psf, size)
    extras["shape"] = "measured" if kernel is not None else "gaussian"
    if kernel is None:
        kernel = gaussian_from_covariance(cov, side)
    # The widths are read off the registered average where there is one, also where the Gaussian is returned: a
    # Gaussian fitted to undersampled spots reads them narrower than their FWHM.
    extras["spots_qc"] = spots_qc(kernel if measured is None else measured, kept, reasons, counts, scale, pixel_um)
    extras["spots_qc"].update(shape=extras["shape"], **{k: round(extras[k], 3) for k in ("split_half_l1", "gaussian_l1")
                                                        if k in extras})
    extras["message"] = f"spots: {qc_line(extras['spots_qc'])}"
    return kernel, confidence, cov, extras


def _unlike(extras: dict[str, Any], kept: list[dict[str, Any]], counts: dict[str, int], reasons: dict[str, int],
            require: bool, side: int) -> tuple[np.ndarray, float, np.ndarray, dict[str, Any]]:
    """The fallback where the spots share no shape (:data:`~._spot_shape.MAX_SHAPE_CHI2`,
    :data:`~._spot_shape.MAX_UNEXPLAINED`), with the reason."""
    chi2, share = extras["shape_chi2"], extras["shape_unexplained"]
    message = (f"the {len(kept)} isolated spots found share no shape (their average leaves {100 * share:.0f} % of "
               f"their light unexplained, χ² {chi2:.1f}; copies of one PSF leave noise, χ² about 1): hot pixels or "
               f"noise spikes, not beads or puncta; use an image of sub-resolution beads, or another estimator such "
               f"as 'edges' or 'kernelgan'")
    extras.pop("purity", None)
    extras.pop("cov_lr", None)
    extras.pop("spread", None)
    kernel, confidence, cov = no_measurement(message, require, side, extras)
    extras["shape"] = "fallback"
    extras["spots_qc"] = {"used": 0, "shape": "fallback", "shape_chi2": round(chi2, 2),
                          "shape_unexplained": round(share, 3), "rejected": {
        "crowded": int(counts.get("crowded", 0)), "saturated": int(counts.get("saturated", 0)), **reasons,
        "no shared shape": len(kept)}}
    extras["spots_used"] = 0
    return kernel, confidence, cov, extras


@register_tiles("spots")
def spots_tiles(frames: np.ndarray, boxes: np.ndarray, *, scale: int = 2, device: torch.device | None = None,
                seed: int = 0, report_every: int = REPORT_EVERY, min_snr: float = MIN_SNR,
                isolation: float = ISOLATION, max_spots: int = MAX_SPOTS, require_spots: bool = False,
                size: int | None = None, pixel_um: float | None = None) -> Generator[Progress, None, list[TileResult]]:
    """All tiles of a kernel map from one detection per frame: the brightest :data:`TILE_SPOTS` spots
    of every tile are fitted once (stopping early, as for a whole image, where they are not points),
    then each tile's covariance is solved from the spots inside it (a tile's kernel is their Gaussian:
    a tile rarely holds enough spots for a measured shape)."""
    size = KERNEL_SIZE if size is None else int(size)
    check_odd_size("spots", size)
    boxes = np.asarray(boxes).reshape(-1, 4)
    start = time.perf_counter()
    pool = yield from _measure(gray_frames(frames), min_snr=min_snr, isolation=isolation, max_spots=int(max_spots),
                               every=max(1, int(report_every)), start=start, boxes=boxes,
                               per_tile=min(int(max_spots), TILE_SPOTS))
    return solve_tiles(pool, boxes, lambda fits, candidates, _: _solve(fits, candidates, pool.counts, False,
                                                                        int(size), int(scale)))
