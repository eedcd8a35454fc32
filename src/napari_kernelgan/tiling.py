"""Tiles of one image and an estimator run over them: the layer under kernel maps and ``auto``'s tile pass.

:func:`tile_boxes` lays out overlapping tiles; :func:`iter_tile_estimates` gives one
:class:`~napari_kernelgan.types.TileResult` per tile, in one pass where the estimator registered one
(:func:`~napari_kernelgan.registry.register_tiles`), else tile after tile. Each tile's own progress is
passed on within the overall fraction, so a bar moves inside a tile and closing the generator (a cancel)
stops the tile being estimated, not only the next one.

Estimators import this module (never :mod:`napari_kernelgan.api` or :mod:`napari_kernelgan.kernel_map`),
so it depends only on the registry, the result types, the vocabulary, the errors and the physics.
"""
from __future__ import annotations

import math
import time
from collections.abc import Generator
from typing import Any

import numpy as np

from .errors import BadInputError, BadOptionError
from .physics.metrics import second_moments
from .registry import MethodSpec
from .types import KernelEstimate, Progress, TileResult, relay
from .vocabulary import Stage

__all__ = ["TILE", "MAX_GRID", "OVERLAP", "MIN_TILE", "TILE_STEPS", "default_tile", "tile_boxes",
           "result_from_estimate", "iter_tile_estimates"]

TILE = 96             # input pixels a tile side (at least MIN_TILE); larger images get larger tiles (MAX_GRID)
MAX_GRID = 10         # tiles along an axis when the tile size is left to the default
OVERLAP = 32          # input pixels each tile shares with its neighbour
MIN_TILE = 48         # the fast estimators need about this much to find edges away from a tile's border
TILE_STEPS = 100      # progress units per tile when tiles are estimated one after another


def _positions(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    n = math.ceil((length - tile) / (tile - overlap)) + 1
    return [int(round(p)) for p in np.linspace(0, length - tile, n)]


def default_tile(shape: tuple[int, int], overlap: int = OVERLAP) -> int:
    """:data:`TILE`, or larger where that would put more than :data:`MAX_GRID` tiles along an axis."""
    longest = max(int(shape[0]), int(shape[1]))
    return max(TILE, math.ceil((longest + (MAX_GRID - 1) * int(overlap)) / MAX_GRID))


def tile_boxes(shape: tuple[int, int], tile: int | None = None,
               overlap: int = OVERLAP) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes (gy, gx, 4), centres_y, centres_x)`` of tiles covering an image of ``shape``.

    Tiles are ``tile`` pixels a side (default :func:`default_tile`; the image's side where it is
    smaller), spread evenly from edge to edge so that neighbours share at least ``overlap`` pixels.
    """
    tile = default_tile(shape, overlap) if tile is None else int(tile)
    overlap = int(overlap)
    if tile < MIN_TILE:
        raise BadOptionError(f"kernel map: tile must be at least {MIN_TILE} pixels, got {tile}")
    if not 0 <= overlap < tile:
        raise BadOptionError(f"kernel map: overlap must be at least 0 and below the tile size {tile}, got {overlap}")
    h, w = int(shape[0]), int(shape[1])
    th, tw = min(tile, h), min(tile, w)
    ys, xs = _positions(h, tile, overlap), _positions(w, tile, overlap)
    boxes = np.array([[[y, x, y + th, x + tw] for x in xs] for y in ys], dtype=np.int64)
    return boxes, np.array(ys, dtype=np.float64) + (th - 1) / 2, np.array(xs, dtype=np.float64) + (tw - 1) / 2


def result_from_estimate(est: KernelEstimate) -> TileResult:
    """A tile's :class:`TileResult` from an estimator's whole-image result: an estimator's fallback (nothing
    it could measure) is an unreadable tile (confidence 0, its message kept)."""
    failed = bool(est.extras.get("fallback"))
    conf = 0.0 if failed else None if est.confidence is None else float(est.confidence)
    return TileResult(kernel=est.kernel, confidence=conf, covariance=second_moments(est.kernel),
                      message=str(est.extras.get("message", "")) if failed else "")


def iter_tile_estimates(spec: MethodSpec, frames: np.ndarray, boxes: np.ndarray, *, scale: int, device: Any,
                        seed: int, report_every: int, options: dict[str, Any],
                        ) -> Generator[Progress, None, list[TileResult]]:
    """One :class:`~napari_kernelgan.types.TileResult` per box (T, 4), in one pass where ``spec`` has one.

    Tile after tile, each tile's reports are relayed onto its share of the whole (:data:`TILE_STEPS`
    units per tile), so closing this generator closes the running tile's. A tile the estimator cannot
    read (:class:`~napari_kernelgan.errors.BadInputError`) gets no kernel and the reason as its message.
    """
    boxes = np.asarray(boxes).reshape(-1, 4)
    if spec.tiles is not None:
        return (yield from spec.tiles(frames, boxes, scale=scale, device=device, seed=seed,
                                      report_every=report_every, **options))
    start = time.perf_counter()
    n = len(boxes)
    total = TILE_STEPS * n
    out: list[TileResult] = []
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        label = f"{spec.name}: tile {i + 1} of {n}"
        yield Progress(TILE_STEPS * i, total, time.perf_counter() - start, stage=Stage.MAP, message=label)
        gen = spec.fn(np.ascontiguousarray(frames[..., y0:y1, x0:x1]), scale=scale, device=device, seed=seed,
                      report_every=report_every, **options)
        try:
            est: KernelEstimate = yield from relay(gen, offset=TILE_STEPS * i, span=TILE_STEPS, total=total,
                                                   start=start, stage=Stage.MAP, prefix=f"{label}: ")
        except BadInputError as exc:
            out.append(TileResult(kernel=None, confidence=0.0, message=str(exc).splitlines()[0]))
        else:
            out.append(result_from_estimate(est))
    return out
