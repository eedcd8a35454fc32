"""Sharp-edge kernel estimation: the blur's covariance from the image's sharpest edges.

Principle (Joshi, Szeliski, Kriegman CVPR 2008; Cho, Paris, Horn, Freeman CVPR
2011): across a step edge in the scene, the image profile is the step blurred by
the kernel's projection on the edge normal ``n``, a 1-D spread of variance
``nᵀΣn``. We fit a blurred step ``a + b·Φ(d / s)`` to the pixels around many
strong, locally straight edges (each pixel at its exact signed distance ``d``
from the edge, so no interpolation blurs the measurement), keep the sharpest
edges of each orientation (scene edges can only be blurrier than the kernel
makes them), and solve ``s²(θ) = nᵀΣn`` for the 2×2 covariance by least squares.
The kernel is the anisotropic Gaussian with that covariance, in HR pixels.

Closed-form and fast (well under a second on a 1-megapixel image); used on its
own (``estimator="edges"``) and as the anchor of the default KernelGAN preset.

Each edge point is measured from its own pixel, so a crop measures an edge exactly
as the whole image does: a kernel map (:func:`edges_tiles`) computes the gradients
and the fits once for the image and gives every tile the kernel its crop would give.

One constant is fitted: :data:`SHARP_QUANTILE`, loaded from the record ``edges`` that
``benchmarks/calibrate_edges.py`` writes (synthetic data only). The others (orientation
bins, profile length, candidate widths, point budget) are design choices.
"""
from __future__ import annotations

import math
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch
from scipy import ndimage, special

from ..constraints import Interval
from ..errors import BadInputError, BadOptionError
from ..physics.kernels import gaussian_from_covariance
from ..physics.metrics import second_moments
from ..records import record_values
from ..registry import register, register_tiles
from ..types import KernelEstimate, Progress, TileResult
from ..vocabulary import KERNEL_SIZE, Stage

N_ORIENTATIONS = 8
# Per orientation, the width quantile taken as the kernel's own: fitted on synthetic data (not on the
# benchmark) by benchmarks/calibrate_edges.py and loaded from its record (records/edges.json). The other
# constants here are design choices.
SHARP_QUANTILE = float(record_values("edges")["sharp_quantile"])
HALF_LENGTH = 4        # pixels sampled each side of an edge, along its normal
HALF_WIDTH = 1         # pixels each side along the edge (edges are straight over this)
WIDTHS = np.geomspace(0.2, 4.0, 48)   # candidate blur widths s in LR pixels


MARGIN = HALF_LENGTH + 3   # edges this close to the border are not measured (their profile would leave it)
MAX_POINTS = 6000          # edge points measured per frame (a random choice beyond)
FIT_CHUNK = 4096           # edge points fitted per array operation in a kernel map's pass (bounds memory)


def _gradients(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(gy, gx, magnitude)``: Sobel gradients, exact wherever the 3×3 stencil stays inside ``gray``."""
    gy = ndimage.sobel(gray, 0) / 8
    gx = ndimage.sobel(gray, 1) / 8
    return gy, gx, np.hypot(gx, gy)


def _threshold(mag_inner: np.ndarray) -> float:
    """Gradient magnitude above which a pixel may be an edge: the top decile of the inner pixels."""
    return max(float(np.quantile(mag_inner, 0.9)), 1e-3)


def _bilinear(a: np.ndarray, rr: np.ndarray, cc: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """``a`` at ``(rr + dy, cc + dx)`` (integer pixels, offsets within ±1). Weighted from the offsets alone,
    so a value does not depend on where ``a`` starts: a crop and the whole image agree to the bit."""
    fy, fx = np.floor(dy), np.floor(dx)
    ty, tx = dy - fy, dx - fx
    r, c = rr + fy.astype(np.intp), cc + fx.astype(np.intp)
    return ((1 - ty) * ((1 - tx) * a[r, c] + tx * a[r, c + 1])
            + ty * ((1 - tx) * a[r + 1, c] + tx * a[r + 1, c + 1]))


def _peaks(gy: np.ndarray, gx: np.ndarray, mag: np.ndarray, rr: np.ndarray,
           cc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(keep, ny, nx, offset)`` of pixels ``(rr, cc)``: whether each is a gradient maximum along its
    normal ``(ny, nx)`` (non-maximum suppression), and its sub-pixel peak along the normal."""
    m0 = mag[rr, cc]
    ny, nx = gy[rr, cc] / m0, gx[rr, cc] / m0
    ahead = _bilinear(mag, rr, cc, ny, nx)
    behind = _bilinear(mag, rr, cc, -ny, -nx)
    keep = (m0 >= ahead) & (m0 >= behind)
    # parabola through behind / here / ahead
    denom = behind - 2 * m0 + ahead
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(np.abs(denom) > 1e-12, 0.5 * (behind - ahead) / denom, 0.0).clip(-0.5, 0.5)
    return keep, ny, nx, offset


def _edge_points(gray: np.ndarray, max_points: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """``(rows, cols, ny, nx, offset)`` of strong gradient maxima along the gradient direction, at most
    ``max_points`` (a random choice where there are more)."""
    gy, gx, mag = _gradients(gray)
    inner = mag[MARGIN:-MARGIN, MARGIN:-MARGIN]
    rr, cc = np.nonzero(inner > _threshold(inner))
    rr, cc = rr + MARGIN, cc + MARGIN
    keep, ny, nx, offset = _peaks(gy, gx, mag, rr, cc)
    return _sample((rr[keep], cc[keep], ny[keep], nx[keep], offset[keep]), max_points, rng)


def _sample(points: tuple[np.ndarray, ...], max_points: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    if points[0].size <= max_points:
        return points
    pick = rng.choice(points[0].size, max_points, replace=False)
    return tuple(p[pick] for p in points)


def edge_samples(gray: np.ndarray, rr: np.ndarray, cc: np.ndarray, ny: np.ndarray, nx: np.ndarray,
                 offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(distances, values, weights)`` of the pixels near each edge point (one row per point).

    Distances are signed, along the edge normal, measured from the point's own pixel so that a crop
    measures an edge exactly as the whole image does; weights are 1 within ``HALF_LENGTH`` along the
    normal and ``HALF_WIDTH`` along the edge, 0 elsewhere.
    """
    off = np.arange(-HALF_LENGTH - 1, HALF_LENGTH + 2)
    dr, dc = np.meshgrid(off, off, indexing="ij")
    sr = dr.ravel()[None] - (offset * ny)[:, None]
    sc = dc.ravel()[None] - (offset * nx)[:, None]
    d = sr * ny[:, None] + sc * nx[:, None]
    t = -sr * nx[:, None] + sc * ny[:, None]
    use = (np.abs(d) <= HALF_LENGTH) & (np.abs(t) <= HALF_WIDTH + 0.5)
    vals = gray[(rr[:, None] + dr.ravel()[None]).clip(0, gray.shape[0] - 1),
                (cc[:, None] + dc.ravel()[None]).clip(0, gray.shape[1] - 1)]
    return d, vals, use.astype(np.float64)


def _fit_edges(gray: np.ndarray, rr: np.ndarray, cc: np.ndarray, ny: np.ndarray, nx: np.ndarray,
               offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(widths, angles, quality)`` of the blurred steps fitted at edge points (rows independent)."""
    d, vals, w = edge_samples(gray, rr, cc, ny, nx, offset)
    n = w.sum(1)
    # For each candidate width: least squares for (a, b) in a + b·Φ(d/s), residual per edge.
    best_res = np.full(rr.size, np.inf)
    best_s = np.zeros(rr.size)
    vmean = (w * vals).sum(1) / n
    vvar = (w * (vals - vmean[:, None]) ** 2).sum(1)
    for s in WIDTHS:
        phi = special.ndtr(d / s)
        pm = (w * phi).sum(1) / n
        pc_ = phi - pm[:, None]
        spp = (w * pc_ ** 2).sum(1)
        spv = (w * pc_ * (vals - vmean[:, None])).sum(1)
        res = vvar - spv ** 2 / np.maximum(spp, 1e-12)
        better = res < best_res
        best_res[better] = res[better]
        best_s[better] = s
    quality = 1 - best_res / np.maximum(vvar, 1e-12)   # R² of the step fit
    angle = np.arctan2(ny, nx) % np.pi
    return best_s, angle, quality


def edge_widths(gray: np.ndarray, max_points: int | None = None,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a blurred step to each strong edge (at most ``max_points``, default :data:`MAX_POINTS`).
    Returns (widths s in px, normal angles, fit quality)."""
    points = _edge_points(gray, MAX_POINTS if max_points is None else max_points, np.random.default_rng(seed))
    if points[0].size == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    return _fit_edges(gray, *points)


def covariance_from_widths(widths: np.ndarray, angles: np.ndarray, quantile: float = SHARP_QUANTILE,
                           n_orient: int = N_ORIENTATIONS, min_edges: int = 15) -> np.ndarray:
    """Least-squares Σ (2×2, (row, col) order) with s²(θ) = nᵀΣn over orientation bins."""
    bins = np.floor(angles / np.pi * n_orient).astype(int) % n_orient
    rows, target, weight = [], [], []
    for b in range(n_orient):
        sel = widths[bins == b]
        if sel.size < min_edges:
            continue
        theta = (b + 0.5) * np.pi / n_orient
        ny, nx = math.sin(theta), math.cos(theta)
        rows.append([ny * ny, 2 * ny * nx, nx * nx])
        target.append(np.quantile(sel, quantile) ** 2)
        weight.append(math.sqrt(sel.size))
    if len(rows) < 3:
        if widths.size == 0:
            raise BadInputError("no usable edges found: the image has too little structure to estimate a kernel")
        v = np.quantile(widths, quantile) ** 2
        return np.eye(2) * v
    a = np.asarray(rows) * np.asarray(weight)[:, None]
    y = np.asarray(target) * np.asarray(weight)
    syy, syx, sxx = np.linalg.lstsq(a, y, rcond=None)[0]
    cov = np.array([[syy, syx], [syx, sxx]])
    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, 0.01, None)
    return vecs @ np.diag(vals) @ vecs.T


def estimate_covariance(frames: np.ndarray, scale: int = 2, seed: int = 0,
                        quantile: float = SHARP_QUANTILE) -> tuple[np.ndarray, dict[str, Any]]:
    """HR-pixel covariance of the SR kernel at ×``scale`` from frames (N, C, H, W) in [0, 1]."""
    return _covariance([edge_widths(_gray(frame), seed=seed + i) for i, frame in enumerate(frames)], scale, quantile)


def _gray(frame: np.ndarray) -> np.ndarray:
    return frame.mean(0).astype(np.float64)


def _covariance(fits: list[tuple[np.ndarray, np.ndarray, np.ndarray]], scale: int,
                quantile: float) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`estimate_covariance` from the ``(widths, angles, quality)`` of each frame's edges."""
    w, a, q = (np.concatenate(part) for part in zip(*fits))
    good = q > 0.9
    if good.sum() < 50:
        good = q >= np.quantile(q, 0.5) if q.size else good
    cov_lr = covariance_from_widths(w[good], a[good], quantile)
    # LR pixels are ``scale`` HR pixels wide.
    return cov_lr * scale ** 2, {"edges": int(good.sum()), "cov_lr": cov_lr}


def _check_options(quantile: float, size: int) -> None:
    # the declared ranges (quantile in (0, 1), size ≥ 3) are checked by the registry; oddness is not a range
    if int(size) % 2 == 0:
        raise BadOptionError(f"edges: size must be odd, got {size}")


@register("edges", kind="estimator", summary="Sharp edges (closed form, under a second): the blur's covariance "
          "from the image's sharpest edges, as an anisotropic Gaussian",
          defaults={"quantile": SHARP_QUANTILE, "size": KERNEL_SIZE}, main=("quantile",),
          ranges={"quantile": Interval(float, 0, 1, closed="neither"), "size": Interval(int, 3, None)},
          help={"quantile": "per orientation, the edge-width quantile taken as the kernel's own (lower: sharper)",
                "size": "side of the returned ×2 kernel (odd)"})
def edges(frames: np.ndarray, *, scale: int = 2, device: torch.device | None = None, seed: int = 0,
          report_every: int = 50, quantile: float = SHARP_QUANTILE,
          size: int = KERNEL_SIZE) -> Generator[Progress, None, KernelEstimate]:
    """Closed-form ×2 kernel from sharp edges (no training; runs on the CPU)."""
    _check_options(quantile, size)
    start = time.perf_counter()
    yield Progress(0, len(frames), 0.0, stage=Stage.ESTIMATE, message="measuring the sharpest edges")
    cov, info = estimate_covariance(frames, 2, seed, quantile)
    kernel = gaussian_from_covariance(cov, int(size))
    yield Progress(len(frames), len(frames), time.perf_counter() - start, stage=Stage.ESTIMATE, kernel=kernel,
                   message="edges fitted")
    # numpy and scipy only, whatever device was asked for: "cpu" is where it ran
    return KernelEstimate(kernel=kernel, dmap=None, loss_history={}, iterations=0,
                          elapsed=time.perf_counter() - start, device="cpu", seed=seed,
                          extras={"covariance": cov.tolist(), **{k: (v.tolist() if isinstance(
                              v, np.ndarray) else v) for k, v in info.items()}})


@register_tiles("edges")
def edges_tiles(frames: np.ndarray, boxes: np.ndarray, *, scale: int = 2, device: torch.device | None = None,
                seed: int = 0, report_every: int = 50, quantile: float = SHARP_QUANTILE,
                size: int = KERNEL_SIZE) -> Generator[Progress, None, list[TileResult]]:
    """All tiles of a kernel map at once, each as :func:`edges` measures its crop: the gradients, the
    non-maximum suppression and the step fits are computed once per frame on the whole image (an edge
    point inside several tiles is fitted once), while each tile keeps its own threshold (the top decile
    of its own inner pixels), its own random choice of points and its own covariance solve."""
    _check_options(quantile, size)
    start = time.perf_counter()
    boxes = np.asarray(boxes).reshape(-1, 4)
    fits: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in boxes]
    for fi, frame in enumerate(frames):
        gray = _gray(np.asarray(frame))
        gy, gx, mag = _gradients(gray)
        # A tile's edges lie MARGIN inside its box; there its crop's gradients equal the image's,
        # since Sobel's stencil and the suppression's ±1 pixel stay inside the crop.
        inner = [(slice(y0 + MARGIN, y1 - MARGIN), slice(x0 + MARGIN, x1 - MARGIN)) for y0, x0, y1, x1 in boxes]
        cuts = np.array([_threshold(mag[box]) for box in inner])
        cand = np.zeros(mag.shape, dtype=bool)
        for box in inner:
            cand[box] = True
        rr, cc = np.nonzero(cand & (mag > cuts.min()))
        keep, ny, nx, offset = _peaks(gy, gx, mag, rr, cc)
        index = np.full(mag.shape, -1, dtype=np.intp)
        index[rr[keep], cc[keep]] = np.arange(int(keep.sum()))
        points = (rr[keep], cc[keep], ny[keep], nx[keep], offset[keep])
        chosen = []
        for box, cut in zip(inner, cuts):
            ids = index[box][(index[box] >= 0) & (mag[box] > cut)]   # row-major, as the crop lists them
            chosen.append(_sample((ids,), MAX_POINTS, np.random.default_rng(seed + fi))[0])
        used = np.unique(np.concatenate(chosen))
        measured = [np.zeros(used.size) for _ in range(3)]
        for lo in range(0, used.size, FIT_CHUNK):
            yield Progress(fi * FIT_CHUNK + lo * FIT_CHUNK // used.size, len(frames) * FIT_CHUNK,
                           time.perf_counter() - start, stage=Stage.MAP,
                           message=f"edges: fitted {lo} of {used.size} edges in frame {fi + 1}")
            part = used[lo:lo + FIT_CHUNK]
            for store, value in zip(measured, _fit_edges(gray, *(p[part] for p in points))):
                store[lo:lo + part.size] = value
        for t, ids in enumerate(chosen):
            at = np.searchsorted(used, ids)
            fits[t].append(tuple(m[at] for m in measured))
    out: list[TileResult] = []
    for tile_fits in fits:
        try:
            cov, _ = _covariance(tile_fits, 2, quantile)
        except BadInputError as exc:
            out.append(TileResult(kernel=None, confidence=0.0, message=str(exc).splitlines()[0]))
            continue
        kernel = gaussian_from_covariance(cov, int(size))
        out.append(TileResult(kernel=kernel, confidence=None, covariance=second_moments(kernel)))
    yield Progress(len(frames), len(frames), time.perf_counter() - start, stage=Stage.MAP, message="edges: tiles done")
    return out
