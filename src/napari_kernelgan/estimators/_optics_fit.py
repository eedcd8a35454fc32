"""Edge-spread measurements for the ``optics`` estimator, and the fit of a PSF model's edge spread to them.

Across a straight step in the scene the image is the step blurred by the PSF's line-spread function
(the PSF projected on the edge normal); a rotationally symmetric PSF has one line-spread function for
every orientation. Each strong, locally straight edge of the image (found as the ``edges`` estimator
finds them) gives its pixels' values at their exact signed distances from the edge, so pooling many
edges samples the edge-spread function far below the pixel pitch (the slanted-edge method of
ISO 12233). A candidate kernel predicts every one of those values up to each edge's own offset and
contrast, which are solved in closed form; the misfit left is what the fit minimises.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .edges import HALF_LENGTH, _edge_points, _fit_edges, edge_samples

__all__ = ["EdgeSamples", "collect_edges", "edge_spread", "misfit"]

MIN_QUALITY = 0.9   # R² of an edge's blurred-step fit below which it is not a clean step


@dataclass(frozen=True)
class EdgeSamples:
    """Pixels around clean step edges: distances ``d`` (LR pixels) along each edge's normal, values,
    a mask of the pixels used, and each edge's Gaussian-step width (LR pixels)."""

    d: np.ndarray       # (N, P)
    values: np.ndarray  # (N, P)
    mask: np.ndarray    # (N, P) float 0/1
    width: np.ndarray   # (N,)

    @property
    def count(self) -> int:
        """Number of edges."""
        return int(self.d.shape[0])

    def take(self, pick: np.ndarray) -> EdgeSamples:
        """The edges ``pick`` (indices or a boolean mask)."""
        return EdgeSamples(self.d[pick], self.values[pick], self.mask[pick], self.width[pick])




def collect_edges(frames: np.ndarray, seed: int, max_points: int) -> EdgeSamples:
    """The clean step edges of every frame ``(N, C, H, W)`` (channels averaged), at most ``max_points`` each."""
    parts = []
    for i, frame in enumerate(frames):
        gray = np.asarray(frame, dtype=np.float64).mean(0)
        if min(gray.shape) <= 2 * (HALF_LENGTH + 3) + 2:
            continue
        points = _edge_points(gray, max_points, np.random.default_rng(seed + i))
        if points[0].size == 0:
            continue
        width, _, quality = _fit_edges(gray, *points)
        clean = quality > MIN_QUALITY
        d, vals, mask = edge_samples(gray, *(p[clean] for p in points))
        parts.append((d, vals, mask, width[clean]))
    if not parts:
        empty = np.zeros((0, (2 * HALF_LENGTH + 3) ** 2))
        return EdgeSamples(empty, empty, empty, np.zeros(0))
    d, vals, mask, width = (np.concatenate(p) for p in zip(*parts))
    # Each edge uses about a quarter of its square's pixels: keep those (the fit runs once per candidate kernel).
    keep = int(mask.sum(1).max()) if len(mask) else 0
    order = np.argsort(-mask, axis=1, kind="stable")[:, :keep]
    pick = np.take_along_axis
    return EdgeSamples(pick(d, order, 1), pick(vals, order, 1), pick(mask, order, 1), width)


def edge_spread(kernel: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """``(u, esf)``: the edge-spread function of ``kernel`` (HR grid) at distances ``u`` in LR pixels.

    The kernel is projected on one axis (its line-spread function; the models are rotationally
    symmetric) and each HR pixel's share is spread over the pixel, as a step anywhere inside an HR
    pixel fills it in proportion: the edge-spread function is piecewise linear between pixel borders.
    """
    lsf = np.asarray(kernel, dtype=np.float64).sum(0)
    lsf = (lsf + lsf[::-1]) / 2
    half = lsf.size // 2
    borders = (np.arange(lsf.size + 1) - half - 0.5) / scale
    esf = np.concatenate([[0.0], np.cumsum(lsf)]) / lsf.sum()
    return borders, esf


def misfit(samples: EdgeSamples, u: np.ndarray, esf: np.ndarray) -> np.ndarray:
    """Per edge, the share of its variance that ``a + b·esf(d)`` leaves unexplained (best ``a``, ``b``)."""
    phi = np.interp(samples.d, u, esf)
    w = samples.mask
    n = w.sum(1)
    vm = (w * samples.values).sum(1) / n
    vc = samples.values - vm[:, None]
    vvar = (w * vc ** 2).sum(1)
    pc = phi - ((w * phi).sum(1) / n)[:, None]
    spp = (w * pc ** 2).sum(1)
    spv = (w * pc * vc).sum(1)
    res = vvar - spv ** 2 / np.maximum(spp, 1e-12)
    return res / np.maximum(vvar, 1e-12)
