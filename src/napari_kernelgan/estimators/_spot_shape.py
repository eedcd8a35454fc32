"""The measured shape of the kernel from the spots ``spots`` kept: their registered average, and its QC.

Each kept spot's wide window (``2·SHAPE_HALF + 1`` LR pixels a side, the ×2 kernel's 41×41 HR pixels) is
taken around it; other maxima inside the window are masked; a background plane is fitted to the window's
outer ring (a spot whose ring the plane cannot explain, a haze gradient that bends or another object, is
left out); what remains, divided by the spot's brightness, samples the point image at offsets
``s·(i − μ)`` HR pixels (``μ`` the spot's sub-pixel centre). :func:`~napari_kernelgan.physics.beads.
register_average` puts all of them on the HR grid at once; the brightness and background of each spot are
then refitted against that average and the average solved again. The point image is the PSF as the optics
convolve with it, so the kernel (stored for correlation) is it flipped, centred, its far wings replaced by
their azimuthal mean, and cut to the side holding 99 % of its light (at most :data:`MAX_SIDE`).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from ..physics.beads import FWHM_PER_SIGMA, bead_qc, point_image_at, radial_wings, register_average
from ..physics.conventions import centre_kernel, pad_to, to_convolution
from ..physics.optics import support_for
from ..vocabulary import KERNEL_SIZE
from ._direct import lr_to_x2_covariance, noise_floor, noise_model, window_variance

SHAPE_HALF = 10        # LR px: half side of the window averaged (the ×2 kernel's 41×41)
MAX_SIDE = 41          # the measured kernel's largest side
SUPPORT_MASS = 0.99    # its side holds this share of its light
MAX_HALF_L1 = 0.5      # kernels of the even and the odd spots further apart: too noisy, the Gaussian instead
MIN_SHAPE_SPOTS = 8    # fewer usable spots: the Gaussian of their covariance instead
BG_INNER = 7.0         # LR px from the spot's centre: the background ring starts here
NEIGHBOUR_MASK = 3.0   # LR px around another maximum left out of a spot's window
REFINE_ROUNDS = 2      # centre refinements against the average
GN_STEPS = 3           # Gauss-Newton steps of each refinement
MAX_RING_CHI2 = 2.0    # reduced χ² of the background ring about its plane: above it, the background is not flat
MAX_SHAPE_CHI2 = 5.0   # median reduced χ² of the spots' cores about their average: above it (and above
MAX_UNEXPLAINED = 0.25  # this median share of their cores' light left unexplained), the spots share no shape
CORE_RADIUS = 3.0      # LR px: a spot's core, where its own light is (its centre and the χ² are read there)


def _plane(yy: np.ndarray, xx: np.ndarray, z: np.ndarray, var: np.ndarray,
           basis: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Weighted least-squares fit of ``z`` by ``[basis,] 1, y, x`` (two passes, 3σ outliers dropped in the
    second): the coefficients and the reduced χ² of the kept points."""
    cols = [np.ones_like(z), yy, xx] if basis is None else [basis, np.ones_like(z), yy, xx]
    a = np.stack(cols, 1)
    w = 1.0 / np.sqrt(var)
    keep = np.ones(z.size, dtype=bool)
    coef = np.zeros(a.shape[1])
    for _ in range(2):
        coef = np.linalg.lstsq(a[keep] * w[keep, None], z[keep] * w[keep], rcond=None)[0]
        res = (z - a @ coef) * w
        keep = np.abs(res) <= 3.0
        if keep.sum() <= a.shape[1] + 2:
            keep[:] = True
            break
    chi2 = float((((z - a @ coef) * w)[keep] ** 2).sum() / max(int(keep.sum()) - a.shape[1], 1))
    return coef, chi2


def _windows(kept: list[dict[str, Any]], grays: list[np.ndarray], maxima: list[np.ndarray],
             scale: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every kept spot's wide window with its mask, offsets, noise and a first background and brightness."""
    h = SHAPE_HALF
    yy, xx = (g.astype(np.float64) for g in np.mgrid[-h:h + 1, -h:h + 1])
    models = {fi: (noise_model(g), noise_floor(g)) for fi, g in enumerate(grays)}
    out: list[dict[str, Any]] = []
    reasons = {"at the border": 0, "background": 0}
    for f in kept:
        fi, (r, c) = f["frame"], f["pixel"]
        gray = grays[fi]
        if r < h or c < h or r + h >= gray.shape[0] or c + h >= gray.shape[1]:
            reasons["at the border"] += 1
            continue
        win = gray[r - h:r + h + 1, c - h:c + h + 1]
        var = window_variance(win, *models[fi])
        my, mx = f["centre"]
        valid = np.ones(win.shape, dtype=bool)
        for rn, cn in maxima[fi]:
            if (rn, cn) != (r, c) and abs(rn - r) <= h + NEIGHBOUR_MASK and abs(cn - c) <= h + NEIGHBOUR_MASK:
                valid &= np.hypot(yy + r - rn, xx + c - cn) > NEIGHBOUR_MASK
        ring = valid & (np.hypot(yy - my, xx - mx) >= BG_INNER)
        if ring.sum() < 20:
            reasons["background"] += 1
            continue
        coef, chi2 = _plane(yy[ring], xx[ring], win[ring], var[ring])
        if chi2 > MAX_RING_CHI2:
            reasons["background"] += 1
            continue
        # the Gaussian's volume on the LR samples: the spot's light, up to a factor common to all spots
        flux = f["amp"] * 2 * math.pi * math.sqrt(max(float(np.linalg.det(f["cov"])), 1e-12))
        out.append({"win": win, "var": var, "valid": valid, "centre": (my, mx), "bg": coef, "flux": flux,
                    "dy": scale * (yy - my), "dx": scale * (xx - mx), "yy": yy, "xx": xx})
    return out, reasons


def _samples(spots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in spots:
        bg = s["bg"][0] + s["bg"][1] * s["yy"] + s["bg"][2] * s["xx"]
        out.append({"values": ((s["win"] - bg) / s["flux"])[s["valid"]], "dy": s["dy"][s["valid"]],
                    "dx": s["dx"][s["valid"]], "weight": (s["flux"] ** 2 / s["var"])[s["valid"]]})
    return out


def _core(spot: dict[str, Any]) -> np.ndarray:
    """The window's pixels within :data:`CORE_RADIUS` of the spot's centre, other objects masked."""
    return spot["valid"] & (np.hypot(spot["yy"] - spot["centre"][0], spot["xx"] - spot["centre"][1]) <= CORE_RADIUS)


def shape_agreement(spots: list[dict[str, Any]], psf: np.ndarray) -> tuple[float, float]:
    """How well the common point image explains each spot's core (its background plane plus its brightness
    times ``psf`` at its sub-pixel centre): the median over spots of the reduced χ² in the noise model's units,
    and the median share of the core's light (its energy above the background) the model leaves unexplained.

    Copies of one PSF leave noise: χ² about 1 and a share under 0.1 (measured χ² 0.5–1.3, share 0.004–0.09 on
    generated bead fields, 100–1000 photons, widefield, confocal and DIV2KRK kernels). Where the noise model
    misses the beads' shot noise (a dark field) or there is no noise, the χ² is large but the share stays
    small (0.001–0.006). Spots that share no shape leave much of both: single-pixel spikes (hot pixels, cosmic
    rays, clock-induced charge) are as bright as beads but each is shaped by its own chance (χ² 8, share 0.35 on
    the spikes of ``real_dev/spots_3d``)."""
    coef = ndimage.spline_filter(np.asarray(psf, dtype=np.float64), order=3, mode="constant")
    chi2, unexplained = [], []
    for s in spots:
        v = _core(s)
        bg = s["bg"][0] + s["bg"][1] * s["yy"][v] + s["bg"][2] * s["xx"][v]
        residual = s["win"][v] - (bg + s["flux"] * point_image_at(coef, s["dy"][v], s["dx"][v], prefiltered=True))
        chi2.append(float(np.mean(residual ** 2 / s["var"][v])))
        unexplained.append(float(np.sum(residual ** 2)) / max(float(np.sum((s["win"][v] - bg) ** 2)), 1e-300))
    return float(np.median(chi2)), float(np.median(unexplained))


def measured_shape(kept: list[dict[str, Any]], grays: list[np.ndarray], maxima: list[np.ndarray], scale: int,
                   reasons: dict[str, int]) -> tuple[np.ndarray, int, list[np.ndarray], tuple[float, float]] | None:
    """The point image on the ×2 HR grid (``(4·SHAPE_HALF + 1)²``, sum 1) averaged over the kept spots, how
    many went in, the kernels (:data:`MAX_SIDE` a side) of two halves of them (even and odd) and how well the
    average explains the spots (:func:`shape_agreement`); ``None`` where fewer than :data:`MIN_SHAPE_SPOTS` are
    usable. ``reasons`` gets the rejections of this step added."""
    spots, lost = _windows(kept, grays, maxima, scale)
    for key, val in lost.items():
        reasons[key] = reasons.get(key, 0) + val
    if len(spots) < MIN_SHAPE_SPOTS:
        return None
    half = scale * SHAPE_HALF
    psf = register_average(_samples(spots), half)
    # Against the average, each spot's centre, brightness and background are refitted and the average solved
    # again: a Gaussian's centre on an undersampled PSF is pulled towards the pixel's middle, which narrows it.
    for _ in range(REFINE_ROUNDS):
        coefs = tuple(ndimage.spline_filter(g, order=3, mode="constant") for g in (psf, *np.gradient(psf)))
        for s in spots:
            _refit(s, coefs, scale)
        psf = register_average(_samples(spots), half)
    # Reproducibility: the kernels of the even and of the odd spots (see choose_shape).
    halves = [psf_kernel(register_average(_samples(spots[i::2]), half), MAX_SIDE) for i in (0, 1)]
    return psf, len(spots), halves, shape_agreement(spots, psf)


def _refit(spot: dict[str, Any], coefs: tuple[np.ndarray, np.ndarray, np.ndarray], scale: int) -> None:
    """Spot centre, brightness and background level against the point image (Gauss-Newton steps, weighted by
    the noise); ``coefs``: the B-spline coefficients of the point image and of its y and x derivatives."""
    # the centre is read in the core (the background plane's tilt is kept)
    v = _core(spot)
    yy, xx, z = spot["yy"][v], spot["xx"][v], spot["win"][v]
    w = 1.0 / np.sqrt(spot["var"][v])
    z = z - (spot["bg"][0] + spot["bg"][1] * yy + spot["bg"][2] * xx)
    p = np.array([*spot["centre"], spot["flux"], 0.0])
    for _ in range(GN_STEPS):
        dy, dx = scale * (yy - p[0]), scale * (xx - p[1])
        val, gy, gx = (point_image_at(c, dy, dx, prefiltered=True) for c in coefs)
        jac = np.stack([-scale * p[2] * gy, -scale * p[2] * gx, val, np.ones_like(val)], 1) * w[:, None]
        res = (p[2] * val + p[3] - z) * w
        step = np.linalg.lstsq(jac, -res, rcond=None)[0]
        p = p + np.clip(step, [-0.25, -0.25, -np.inf, -np.inf], [0.25, 0.25, np.inf, np.inf])
    my, mx, flux = p[:3]
    if not (flux > 0 and np.all(np.isfinite(p))) or max(abs(my - spot["centre"][0]), abs(mx - spot["centre"][1])) > 0.5:
        return
    spot.update(centre=(float(my), float(mx)), flux=float(flux), bg=spot["bg"] + [p[3], 0.0, 0.0],
                dy=scale * (spot["yy"] - my), dx=scale * (spot["xx"] - mx))


def choose_shape(halves: list[np.ndarray], gaussian: np.ndarray) -> tuple[bool, float, float]:
    """Whether the measured shape is worth more than the Gaussian: the two halves' kernels must agree with each
    other better than the Gaussian agrees with them (where the PSF is a Gaussian, the halves differ by twice
    their noise and the Gaussian by once), and within :data:`MAX_HALF_L1`. Returns (choice, the halves' L1
    distance, the Gaussian's mean L1 distance to them), all on a :data:`MAX_SIDE` square."""
    g = pad_to(gaussian, MAX_SIDE) if gaussian.shape[0] <= MAX_SIDE else gaussian
    d_half = float(np.abs(halves[0] - halves[1]).sum())
    d_gauss = 0.5 * sum(float(np.abs(g - h).sum()) for h in halves)
    return d_half <= min(MAX_HALF_L1, d_gauss), d_half, d_gauss


def psf_kernel(psf: np.ndarray, size: int | None) -> np.ndarray:
    """The stored kernel of a point image: wings averaged, flipped (correlation), centred, cut to ``size`` or to
    the side holding :data:`SUPPORT_MASS` of its light (at least the estimators' 13, at most :data:`MAX_SIDE`)."""
    k = centre_kernel(to_convolution(radial_wings(psf)))
    k = k / k.sum()
    side = int(size) if size is not None else max(KERNEL_SIZE, min(MAX_SIDE, support_for(k, SUPPORT_MASS)))
    if side > k.shape[0]:
        k = pad_to(k, side)
    elif side < k.shape[0]:
        k = centre_kernel(np.clip(pad_to(k, side), 0, None))
    return k / k.sum()


def spots_qc(kernel: np.ndarray, kept: list[dict[str, Any]], reasons: dict[str, int], counts: dict[str, int],
             scale: int, pixel_um: float | None) -> dict[str, Any]:
    """Bead-style QC of the spots' kernel: :func:`~napari_kernelgan.physics.beads.bead_qc` of it (the ×2 kernel's
    pixels are ``pixel_um / 2``), the spots used and rejected by reason, and the spread of their own FWHMs."""
    qc: dict[str, Any] = bead_qc(kernel, pixel_um=None if pixel_um is None else float(pixel_um) / 2)
    rejected = {"crowded": int(counts.get("crowded", 0)), "saturated": int(counts.get("saturated", 0)),
                **{k: int(v) for k, v in reasons.items()}}
    qc.update(used=len(kept), rejected=rejected)
    if kept:
        covs = np.array([lr_to_x2_covariance(f["cov"], scale) for f in kept])
        fx = FWHM_PER_SIGMA * np.sqrt(covs[:, 1, 1])
        fy = FWHM_PER_SIGMA * np.sqrt(covs[:, 0, 0])
        mean = 0.5 * (fx + fy)
        med = float(np.median(mean))
        qc.update(spot_fwhm_x=float(np.median(fx)), spot_fwhm_y=float(np.median(fy)),
                  fwhm_spread=1.4826 * float(np.median(np.abs(mean - med))) / max(med, 1e-12))
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in qc.items()}
