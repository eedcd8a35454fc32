"""Kernel maps: a kernel per tile of one image, from any registered estimator.

:func:`estimate_kernel_map` cuts the input into overlapping tiles (``tile``
input pixels a side, ``overlap`` shared with each neighbour), estimates the
global kernel of the whole image and a kernel with a confidence for every tile,
and returns a :class:`~napari_kernelgan.fields.KernelField`. The tiles themselves (their layout and
running an estimator over them) are :mod:`napari_kernelgan.tiling`, which estimators use too.

**Tiles in one pass.** An estimator registered with
:func:`~napari_kernelgan.registry.register_tiles` estimates all tiles at once,
sharing what they have in common (``learned``: one network pass over every
tile's crops; ``kernelnet``: one sharp-gradient prediction and one batched
Fourier solve; ``auto``: its members' tile passes and one noise model;
``spots`` and ``lines``: one detection, each sample fitted once; ``edges``: one
gradient image, each edge point fitted once, each tile's own threshold, sampling
and solve; ``meta`` and ``kernelgan``: one G and D per tile as grouped
convolutions, trained together). Estimators without one run tile after tile; one
that gives no confidence counts as :data:`~napari_kernelgan.types.NEUTRAL_CONFIDENCE`.

**Fallback.** A tile whose own estimate is not trusted (flat background,
noise, saturation: a low confidence, or an estimator that could not read it)
must not put noise into the map. Each tile keeps the share
``trust = c / (c + TRUST_HALF)`` of its own estimate (``c`` its confidence) and
takes the rest from its neighbours, weighted by their confidence and by a
Gaussian of their distance (``NEIGHBOUR_SIGMA`` tile spacings), with the global
kernel as a weak prior (weight ``GLOBAL_PRIOR``), so an unreadable region
takes the kernel of the readable ones around it and, far from any, the global
kernel. Gaussian kernels are blended in the log-Euclidean covariance metric,
others as a convex combination of the kernels.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Generator, Mapping
from typing import Any

import numpy as np

from .api import DEFAULT_ESTIMATOR, ProgressCallback, drive
from .devices import reproducible, resolve_device, torch_threads
from .errors import BadInputError
from .fields import KernelField, all_gaussian, from_log_covariances, log_covariances
from .imaging import Frames, prepare_image
from .physics.kernels import gaussian_from_covariance
from .registry import ESTIMATORS
from .tiling import MAX_GRID, MIN_TILE, OVERLAP, TILE, default_tile, iter_tile_estimates, tile_boxes
from .tiling import result_from_estimate as _result_from_estimate  # noqa: F401 (older name, benchmarks use it)
from .types import NEUTRAL_CONFIDENCE, KernelEstimate, Progress, TileResult, relay
from .vocabulary import ESTIMATE_SCALES, Stage, check_scale

__all__ = ["TILE", "MAX_GRID", "default_tile", "OVERLAP", "MIN_TILE", "TRUST_HALF", "NEIGHBOUR_SIGMA", "GLOBAL_PRIOR",
           "tile_boxes",
           "iter_tile_estimates", "fallback_blend", "iter_estimate_kernel_map", "estimate_kernel_map"]

TRUST_HALF = 0.1      # confidence at which a tile keeps half its own estimate (auto's full-trust level)
NEIGHBOUR_SIGMA = 1.0  # tile spacings: the reach of the neighbours a doubtful tile borrows from
GLOBAL_PRIOR = 0.05   # weight of the global kernel beside the neighbours' confidences


def fallback_blend(results: list[TileResult], grid: tuple[int, int], global_kernel: np.ndarray,
                   trust_half: float | None = None, neighbour_sigma: float | None = None,
                   global_prior: float | None = None,
                   global_confidence: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(kernels (gy, gx, k, k), confidence (gy, gx), trust (gy, gx), kernel_confidence (gy, gx))`` from
    raw tile results; see the module docstring for the rule. ``kernel_confidence`` blends the
    confidences the same way as the kernels (the global kernel's is ``global_confidence``, 0 if unknown)."""
    trust_half = TRUST_HALF if trust_half is None else trust_half
    neighbour_sigma = NEIGHBOUR_SIGMA if neighbour_sigma is None else neighbour_sigma
    global_prior = GLOBAL_PRIOR if global_prior is None else global_prior
    gy, gx = grid
    size = global_kernel.shape[-1]
    conf = np.array([0.0 if r.kernel is None else NEUTRAL_CONFIDENCE if r.confidence is None
                     else max(0.0, float(r.confidence)) for r in results])
    own = [r.kernel if r.kernel is not None else global_kernel for r in results]
    own = [np.asarray(k, dtype=np.float64) for k in own]
    if any(k.shape != global_kernel.shape for k in own):
        raise BadInputError("kernel map: the tile kernels and the global kernel differ in size")
    trust = conf / (conf + trust_half) if trust_half > 0 else (conf > 0).astype(np.float64)
    yy, xx = np.meshgrid(np.arange(gy), np.arange(gx), indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1).astype(np.float64)
    d2 = ((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)
    near = np.exp(-0.5 * d2 / neighbour_sigma ** 2)
    np.fill_diagonal(near, 0.0)
    w_n = near * conf[None, :]                                   # (T, T) neighbour weights
    denom = w_n.sum(1) + global_prior                            # (T,)
    g_conf = 0.0 if global_confidence is None else float(global_confidence)
    kernel_conf = trust * conf + (1 - trust) * (w_n @ conf + global_prior * g_conf) / denom
    gaussian = all_gaussian(np.stack(own + [global_kernel]))
    if gaussian:
        logs = log_covariances(np.stack(own))                   # (T, 3)
        g_log = log_covariances(global_kernel[None])[0]
        borrowed = (w_n @ logs + global_prior * g_log[None]) / denom[:, None]
        blended = trust[:, None] * logs + (1 - trust[:, None]) * borrowed
        covs = from_log_covariances(blended)
        kernels = np.stack([gaussian_from_covariance(c, size) for c in covs])
    else:
        stack = np.stack(own)                                   # (T, k, k)
        borrowed = (np.tensordot(w_n, stack, axes=1) + global_prior * global_kernel[None]) / denom[:, None, None]
        kernels = trust[:, None, None] * stack + (1 - trust[:, None, None]) * borrowed
        kernels = np.clip(kernels, 0.0, None)
        kernels /= kernels.sum((-2, -1), keepdims=True)
    return (kernels.reshape(gy, gx, size, size), conf.reshape(gy, gx), trust.reshape(gy, gx),
            kernel_conf.reshape(gy, gx))


def iter_estimate_kernel_map(image: np.ndarray | Frames, scale: int = 2, *, estimator: str = DEFAULT_ESTIMATOR,
                             tile: int | None = None, overlap: int = OVERLAP, device: str = "auto", seed: int = 0,
                             threads: int | None = None, rgb: bool | None = None, channel_axis: int | None = None,
                             stack_axis: int | None = None, report_every: int = 50,
                             hints: Mapping[str, Any] | None = None,
                             **options: Any) -> Generator[Progress, None, KernelField]:
    """Generator form of :func:`estimate_kernel_map`: yields progress, returns the field. ``hints``: the
    microscope's optics, passed as :func:`~napari_kernelgan.api.estimate_kernel` passes them."""
    from .optics_hints import hinted_options

    start = time.perf_counter()
    scale = check_scale(scale, ESTIMATE_SCALES)
    spec = ESTIMATORS.get(estimator)
    opts = spec.resolve(hinted_options(spec.defaults, options, hints))
    dev = resolve_device(device)
    yield Progress(0, 1, 0.0, stage=Stage.PREPARE, message="checking the image")
    frames = image if isinstance(image, Frames) else prepare_image(
        image, rgb=rgb, channel_axis=channel_axis, stack_axis=stack_axis)
    data = frames.data
    tile = default_tile(data.shape[-2:], overlap) if tile is None else tile
    boxes, cy, cx = tile_boxes(data.shape[-2:], tile, overlap)
    grid = boxes.shape[:2]
    n_tiles = grid[0] * grid[1]
    total = 100 * (1 + n_tiles)  # the global estimate counts as one tile

    with torch_threads(threads), reproducible(dev):
        whole: KernelEstimate = yield from relay(
            spec.fn(data, scale=scale, device=dev, seed=int(seed), report_every=int(report_every), **opts),
            offset=0, span=100, total=total, start=start, stage=Stage.MAP, prefix="whole image: ", with_kernel=True)
        results: list[TileResult] = yield from relay(
            iter_tile_estimates(spec, data, boxes, scale=scale, device=dev, seed=int(seed),
                                report_every=int(report_every), options=opts),
            offset=100, span=100 * n_tiles, total=total, start=start, stage=Stage.MAP, with_kernel=True)
    kernels, conf, trust, kernel_conf = fallback_blend(results, grid, np.asarray(whole.kernel, dtype=np.float64),
                                                       global_confidence=whole.confidence)
    failed = {i: r.message for i, r in enumerate(results) if r.kernel is None and r.message}
    field = KernelField(kernels=kernels, centres_y=cy, centres_x=cx, boxes=boxes, confidence=conf, trust=trust,
                        global_kernel=whole.kernel, image_shape=tuple(data.shape[-2:]), scale=scale,
                        global_confidence=whole.confidence, method=spec.name,
                        options={**opts, "tile": int(tile), "overlap": int(overlap)},
                        elapsed=time.perf_counter() - start, device=str(dev), seed=int(seed),
                        extras={"unreadable_tiles": failed, "global_extras": whole.extras},
                        kernel_confidence=kernel_conf)
    yield Progress(total, total, field.elapsed, stage=Stage.MAP,
                   message=f"kernel map of {grid[0]}×{grid[1]} tiles ({int((conf >= TRUST_HALF).sum())} trusted)")
    return field


def estimate_kernel_map(image: np.ndarray, scale: int = 2, *, callback: ProgressCallback | None = None,
                        cancel: threading.Event | None = None, **kwargs: Any) -> KernelField:
    """A kernel per tile of ``image`` (and the global kernel) as a :class:`~napari_kernelgan.fields.KernelField`.

    ``estimator`` (default ``auto``) and its options as for
    :func:`~napari_kernelgan.api.estimate_kernel`; ``tile`` (input pixels a side; default
    :func:`default_tile`: 96, larger where the grid would exceed 10×10) and ``overlap`` (default 32) set the
    grid. Tiles the estimator cannot trust fall back to their neighbours and the global kernel (module
    docstring). ``callback`` / ``cancel`` as for
    :func:`~napari_kernelgan.api.drive`.

    >>> field = estimate_kernel_map(image, 2)          # doctest: +SKIP
    >>> field.kernel_at(100, 250).shape                 # doctest: +SKIP
    (13, 13)
    """
    return drive(iter_estimate_kernel_map(image, scale, **kwargs), callback, cancel)
