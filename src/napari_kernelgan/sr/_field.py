"""Super-resolution that follows a kernel field: each region with its own kernel, blended without seams.

The input is split into one region per tile of the
:class:`~napari_kernelgan.fields.KernelField`: region boundaries lie halfway
between tile centres, and across each boundary two neighbours are blended
linearly over ``BLEND`` LR pixels (a partition of unity: the weights sum to one
at every HR pixel, so a field with one kernel everywhere gives back the
uniform result). Each region is super-resolved by the chosen SR method with
its tile's kernel, with ``CONTEXT`` LR pixels of real image around it so the
method's own border handling falls outside what is kept. Any registered SR
method works this way (closed-form, USRNet, ZSSR...); methods that fit a
network per image (ZSSR) pay that fit per region.

With the safeguards on (the default for a field, which is an estimate), the
noise is measured once on the whole input, each region's noise level starts
from the level :mod:`~napari_kernelgan.sr._safety` gives its kernel's
confidence (a doubtful region is regularised more), and the check against
bicubic interpolation runs on the whole result, escalating all regions
together: checked region by region, a textured region (grass, fur) reads as
ringing where, within the whole image, it does not, and on uniformly blurred
DIV2KRK images that cost 0.3 dB.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Generator, Mapping
from typing import Any

import numpy as np

from ..fields import KernelField
from ..physics.grid import hr_coordinates
from ..types import Progress
from ..vocabulary import Stage

__all__ = ["BLEND", "CONTEXT", "REFINE", "region_weights", "regions", "iter_field_sr"]

BLEND = 16     # LR pixels over which neighbouring regions are blended
CONTEXT = 24   # LR pixels of real image around each region (the closed-form tiles' own context)
REFINE = 2     # regions per tile spacing along each axis (their kernels interpolated between tiles)


def region_weights(centres: np.ndarray, coords: np.ndarray, blend: float = BLEND) -> np.ndarray:
    """(n, len(coords)) weights of the regions around ``centres`` at LR coordinates ``coords``.

    Region ``i`` owns the coordinates between the midpoints to its neighbours; the weights ramp
    linearly over ``blend`` pixels across each midpoint (narrowed where tiles are closer) and sum to one.
    """
    c = np.asarray(centres, dtype=np.float64).ravel()
    x = np.asarray(coords, dtype=np.float64).ravel()
    n = c.size
    out = np.ones((n, x.size))
    if n == 1:
        return out
    mids = 0.5 * (c[:-1] + c[1:])
    half = 0.5 * min(float(blend), float(np.min(np.diff(c))))
    for i, m in enumerate(mids):
        rise = np.clip((x - (m - half)) / (2 * half), 0.0, 1.0) if half > 0 else (x >= m).astype(np.float64)
        out[i] *= 1.0 - rise          # region i fades out across its right boundary
        out[i + 1] *= rise            # region i + 1 fades in
    return out


def _refined(centres: np.ndarray, refine: int) -> np.ndarray:
    c = np.asarray(centres, dtype=np.float64)
    if c.size < 2 or refine <= 1:
        return c
    return np.interp(np.arange((c.size - 1) * refine + 1) / refine, np.arange(c.size), c)


def regions(field: KernelField, scale: int, refine: int = REFINE) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                           np.ndarray]:
    """``(centres_y, centres_x, kernels (ry, rx, k, k) for scale, kernel confidence (ry, rx))`` of the SR
    regions: the tile centres and ``refine − 1`` points between each two, with the field's kernel
    (:meth:`~napari_kernelgan.fields.KernelField.kernel_at`) and confidence interpolated there, so the
    kernel follows a smoothly varying blur more closely than tile by tile."""
    cy, cx = _refined(field.centres_y, refine), _refined(field.centres_x, refine)
    kernels = np.array([[field.kernel_at(y, x, scale=scale) for x in cx] for y in cy])
    conf = np.einsum("ijyx,ij->yx", field.weights_at(cy[:, None], cx[None, :]), field.kernel_confidence)
    return cy, cx, kernels, conf


def _extent(weights: np.ndarray, coords: np.ndarray) -> tuple[float, float]:
    nz = np.nonzero(weights > 0)[0]
    return float(coords[nz[0]]), float(coords[nz[-1]])


def _blend(spec: Any, frames: np.ndarray, kernels: np.ndarray, wy: np.ndarray, wx: np.ndarray,
           hr_y: np.ndarray, hr_x: np.ndarray, scale: int, *, device: Any, seed: int,
           options: list[list[dict[str, Any]]], start: float, step: str,
           ) -> Generator[Progress, None, np.ndarray]:
    """Every region super-resolved with its kernel and options, blended by the region weights."""
    n, c, h, w = frames.shape
    gy, gx = kernels.shape[:2]
    out = np.zeros((n, c, h * scale, w * scale), dtype=np.float32)
    for i in range(gy):
        y_lo, y_hi = _extent(wy[i], hr_y)
        r0, r1 = max(0, int(np.floor(y_lo)) - CONTEXT), min(h, int(np.ceil(y_hi)) + 1 + CONTEXT)
        for j in range(gx):
            yield Progress(i * gx + j, gy * gx, time.perf_counter() - start, stage=Stage.SR,
                           message=f"region {i * gx + j + 1} of {gy * gx}{step}")
            x_lo, x_hi = _extent(wx[j], hr_x)
            c0, c1 = max(0, int(np.floor(x_lo)) - CONTEXT), min(w, int(np.ceil(x_hi)) + 1 + CONTEXT)
            part = np.ascontiguousarray(frames[..., r0:r1, c0:c1])
            sr = yield from spec.fn(part, kernels[i, j], scale, device=device, seed=seed, **options[i][j])
            weight = (wy[i, r0 * scale:r1 * scale, None] * wx[j, None, c0 * scale:c1 * scale]).astype(np.float32)
            out[..., r0 * scale:r1 * scale, c0 * scale:c1 * scale] += np.asarray(sr, dtype=np.float32) * weight
    return out


def iter_field_sr(spec: Any, frames: np.ndarray, field: KernelField, scale: int, *, device: Any, seed: int,
                  options: Mapping[str, Any], given: set[str], safe: bool,
                  ) -> Generator[Progress, None, tuple[np.ndarray, dict[str, Any]]]:
    """Run SR method ``spec`` on ``frames`` (N, C, h, w) region by region with ``field``'s kernels.

    With ``safe``: the noise is measured once; each region's noise option starts from
    :func:`~._safety.base_noise_level` with its kernel's confidence; the check against bicubic
    interpolation (:func:`~._safety.ringing_score`) runs on the whole blended result, and every
    escalation step raises all regions' levels together (the same ladder as uniform SR), so a
    textured region is judged within the whole image as it would be without a map. Returns the
    (N, C, s·h, s·w) result and a record for the result's options.
    """
    from ._safety import (
        LADDER_FACTOR,
        LADDER_STEPS,
        NOISE_KEYS,
        UnsafeSRWarning,
        base_noise_level,
        bicubic_frames,
        measure_noise,
        noise_tv_scale,
        ringing_limit,
        ringing_score,
    )

    n, c, h, w = frames.shape
    start = time.perf_counter()
    centres_y, centres_x, kernels, confidence = regions(field, scale)
    gy, gx = kernels.shape[:2]
    hr_y, hr_x = hr_coordinates(h * scale, scale), hr_coordinates(w * scale, scale)
    wy, wx = region_weights(centres_y, hr_y), region_weights(centres_x, hr_x)
    record: dict[str, Any] = {"kernel_map": f"{field.grid[0]}×{field.grid[1]}", "regions": gy * gx}
    if not safe:
        plain = [[dict(options) for _ in range(gx)] for _ in range(gy)]
        out = yield from _blend(spec, frames, kernels, wy, wx, hr_y, hr_x, scale, device=device, seed=seed,
                                options=plain, start=start, step="")
        return out, record
    noise = measure_noise(frames)
    record.update(safe=True, noise_sigma=round(noise["noise_sigma"], 3), noise_model=noise["noise_model"],
                  confidence=round(float(confidence.mean()), 3))
    base_opts = dict(options)
    if "tv_scale" in spec.defaults and "tv_scale" not in given:
        base_opts["tv_scale"] = noise_tv_scale(noise["noise_sigma"])
    key = next((k for k in NOISE_KEYS if k in spec.defaults), None)
    free = key is not None and key not in given
    base = np.array([[base_noise_level(spec, noise["noise_sigma"], float(confidence[i, j]), scale)
                      for j in range(gx)] for i in range(gy)])
    limit = ringing_limit(float(confidence.mean()), noise["noise_sigma"], scale)
    bicubic = bicubic_frames(frames, scale)
    steps = LADDER_STEPS + 1 if free else 1
    out, score = None, np.inf
    for step in range(steps):
        levels = base if step == 0 else np.maximum(base, 1.0) * LADDER_FACTOR ** step
        opts = [[{**base_opts, key: float(levels[i, j])} if free else dict(base_opts) for j in range(gx)]
                for i in range(gy)]
        out = yield from _blend(spec, frames, kernels, wy, wx, hr_y, hr_x, scale, device=device, seed=seed,
                                options=opts, start=start, step=f" (safety step {step})" if step else "")
        score = ringing_score(np.clip(out, 0.0, 1.0), bicubic)
        if score <= limit:
            record.update(safety_step=step, ringing=round(float(score), 3))
            if free:
                record["noise_level_range"] = [round(float(levels.min()), 3), round(float(levels.max()), 3)]
            if "tv_scale" in base_opts:
                record["tv_scale"] = round(float(base_opts["tv_scale"]), 3)
            return out, record
    reason = (f"SR output rings or amplifies noise (TV ratio to bicubic {score:.2f} > {limit:.2f}): the kernel map "
              f"is probably wrong for (part of) this image")
    warnings.warn(f"{spec.name}: {reason}; returning bicubic interpolation instead", UnsafeSRWarning, stacklevel=4)
    record.update(fallback="bicubic", fallback_reason=reason, ringing=round(float(score), 3))
    return bicubic, record
