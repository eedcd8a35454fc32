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
"""
from __future__ import annotations

import math
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch
from scipy import ndimage, special

from ..errors import BadInputError, BadOptionError
from ..physics.kernels import gaussian_from_covariance
from ..registry import register
from ..types import KernelEstimate, Progress
from ..vocabulary import KERNEL_SIZE, Stage

N_ORIENTATIONS = 8
SHARP_QUANTILE = 0.25  # per orientation, the width quantile taken as the kernel's own
#                        (chosen on synthetic data by benchmarks/calibrate_edges.py, not on the benchmark)
HALF_LENGTH = 4        # pixels sampled each side of an edge, along its normal
HALF_WIDTH = 1         # pixels each side along the edge (edges are straight over this)
WIDTHS = np.geomspace(0.2, 4.0, 48)   # candidate blur widths s in LR pixels


def _edge_points(gray: np.ndarray, max_points: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Strong gradient maxima along the gradient direction (non-maximum suppression)."""
    gy = ndimage.sobel(gray, 0) / 8
    gx = ndimage.sobel(gray, 1) / 8
    mag = np.hypot(gx, gy)
    margin = HALF_LENGTH + 3
    inner = np.zeros_like(mag, dtype=bool)
    inner[margin:-margin, margin:-margin] = True
    thresh = np.quantile(mag[inner], 0.9)
    cand = inner & (mag > max(thresh, 1e-3))
    rr, cc = np.nonzero(cand)
    ny, nx = gy[rr, cc] / mag[rr, cc], gx[rr, cc] / mag[rr, cc]
    ahead = ndimage.map_coordinates(mag, [rr + ny, cc + nx], order=1)
    behind = ndimage.map_coordinates(mag, [rr - ny, cc - nx], order=1)
    keep = (mag[rr, cc] >= ahead) & (mag[rr, cc] >= behind)
    # sub-pixel peak along the normal (parabola through behind / here / ahead)
    m0, ma, mb = mag[rr, cc][keep], ahead[keep], behind[keep]
    denom = mb - 2 * m0 + ma
    offset = np.where(np.abs(denom) > 1e-12, 0.5 * (mb - ma) / denom, 0.0).clip(-0.5, 0.5)
    rr, cc, ny, nx = rr[keep], cc[keep], ny[keep], nx[keep]
    if rr.size > max_points:
        pick = rng.choice(rr.size, max_points, replace=False)
        rr, cc, ny, nx, offset = rr[pick], cc[pick], ny[pick], nx[pick], offset[pick]
    return rr + offset * ny, cc + offset * nx, ny, nx


def edge_widths(gray: np.ndarray, max_points: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a blurred step to each strong edge. Returns (widths s in px, normal angles, fit quality)."""
    rng = np.random.default_rng(seed)
    r0, c0, ny, nx = _edge_points(gray, max_points, rng)
    if r0.size == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    # Integer pixels near each edge point, with their signed distance along the normal.
    off = np.arange(-HALF_LENGTH - 1, HALF_LENGTH + 2)
    dr, dc = np.meshgrid(off, off, indexing="ij")
    pr = np.round(r0)[:, None] + dr.ravel()[None]
    pc = np.round(c0)[:, None] + dc.ravel()[None]
    d = (pr - r0[:, None]) * ny[:, None] + (pc - c0[:, None]) * nx[:, None]
    t = -(pr - r0[:, None]) * nx[:, None] + (pc - c0[:, None]) * ny[:, None]
    use = (np.abs(d) <= HALF_LENGTH) & (np.abs(t) <= HALF_WIDTH + 0.5)
    vals = gray[pr.astype(int).clip(0, gray.shape[0] - 1), pc.astype(int).clip(0, gray.shape[1] - 1)]
    w = use.astype(np.float64)
    n = w.sum(1)
    # For each candidate width: least squares for (a, b) in a + b·Φ(d/s), residual per edge.
    best_res = np.full(r0.size, np.inf)
    best_s = np.zeros(r0.size)
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
    widths, angles, quality = [], [], []
    for i, frame in enumerate(frames):
        w, a, q = edge_widths(frame.mean(0).astype(np.float64), seed=seed + i)
        widths.append(w)
        angles.append(a)
        quality.append(q)
    w, a, q = np.concatenate(widths), np.concatenate(angles), np.concatenate(quality)
    good = q > 0.9
    if good.sum() < 50:
        good = q >= np.quantile(q, 0.5) if q.size else good
    cov_lr = covariance_from_widths(w[good], a[good], quantile)
    # LR pixels are ``scale`` HR pixels wide.
    return cov_lr * scale ** 2, {"edges": int(good.sum()), "cov_lr": cov_lr}


@register("edges", kind="estimator", summary="Sharp edges (closed form, under a second): the blur's covariance "
          "from the image's sharpest edges, as an anisotropic Gaussian",
          defaults={"quantile": SHARP_QUANTILE, "size": KERNEL_SIZE}, main=("quantile",),
          help={"quantile": "per orientation, the edge-width quantile taken as the kernel's own (lower: sharper)",
                "size": "side of the returned ×2 kernel (odd)"})
def edges(frames: np.ndarray, *, scale: int = 2, device: torch.device | None = None, seed: int = 0,
          report_every: int = 50, quantile: float = SHARP_QUANTILE,
          size: int = KERNEL_SIZE) -> Generator[Progress, None, KernelEstimate]:
    """Closed-form ×2 kernel from sharp edges (no training; runs on the CPU)."""
    if not 0 < quantile < 1:
        raise BadOptionError(f"edges: quantile must be between 0 and 1, got {quantile}")
    if int(size) != size or size < 3 or size % 2 == 0:
        raise BadOptionError(f"edges: size must be an odd integer of at least 3, got {size}")
    start = time.perf_counter()
    yield Progress(0, len(frames), 0.0, stage=Stage.ESTIMATE, message="measuring the sharpest edges")
    cov, info = estimate_covariance(frames, 2, seed, quantile)
    kernel = gaussian_from_covariance(cov, int(size))
    yield Progress(len(frames), len(frames), time.perf_counter() - start, stage=Stage.ESTIMATE, kernel=kernel,
                   message="edges fitted")
    return KernelEstimate(kernel=kernel, dmap=None, loss_history={}, iterations=0,
                          elapsed=time.perf_counter() - start, device="cpu", seed=seed,
                          extras={"covariance": cov.tolist(), **{k: (v.tolist() if isinstance(
                              v, np.ndarray) else v) for k, v in info.items()}})
