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
noise is measured once on the whole input and every region gets the
safeguards of :mod:`~napari_kernelgan.sr._safety` with its tile's kernel
confidence, so a region whose kernel is doubtful is regularised more or falls
back to bicubic on its own, without pulling the others with it.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Generator, Mapping
from typing import Any

import numpy as np

from ..fields import KernelField
from ..physics.varying import hr_coordinates
from ..types import Progress
from ..vocabulary import Stage

__all__ = ["BLEND", "CONTEXT", "region_weights", "iter_field_sr"]

BLEND = 16     # LR pixels over which neighbouring regions are blended
CONTEXT = 24   # LR pixels of real image around each region (the closed-form tiles' own context)


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


def _extent(weights: np.ndarray, coords: np.ndarray) -> tuple[float, float]:
    nz = np.nonzero(weights > 0)[0]
    return float(coords[nz[0]]), float(coords[nz[-1]])


def iter_field_sr(spec: Any, frames: np.ndarray, field: KernelField, scale: int, *, device: Any, seed: int,
                  options: Mapping[str, Any], given: set[str], safe: bool,
                  ) -> Generator[Progress, None, tuple[np.ndarray, dict[str, Any]]]:
    """Run SR method ``spec`` on ``frames`` (N, C, h, w) region by region with ``field``'s kernels.

    Returns the (N, C, s·h, s·w) result and a record for the result's options (regions, how many
    fell back to bicubic, the noise measured once for all).
    """
    from ._safety import UnsafeSRWarning, iter_safe_sr, measure_noise

    n, c, h, w = frames.shape
    start = time.perf_counter()
    kernels = field.kernels_for(scale)
    confidence = field.kernel_confidence
    gy, gx = field.grid
    hr_y, hr_x = hr_coordinates(h * scale, scale), hr_coordinates(w * scale, scale)
    wy, wx = region_weights(field.centres_y, hr_y), region_weights(field.centres_x, hr_x)
    noise = measure_noise(frames) if safe else None
    out = np.zeros((n, c, h * scale, w * scale), dtype=np.float32)
    record: dict[str, Any] = {"kernel_map": f"{gy}×{gx}", "regions": gy * gx}
    if noise is not None:
        record.update(noise_sigma=round(noise["noise_sigma"], 3), noise_model=noise["noise_model"])
    fallbacks, levels = 0, []
    for i in range(gy):
        y_lo, y_hi = _extent(wy[i], hr_y)
        r0, r1 = max(0, int(np.floor(y_lo)) - CONTEXT), min(h, int(np.ceil(y_hi)) + 1 + CONTEXT)
        for j in range(gx):
            yield Progress(i * gx + j, gy * gx, time.perf_counter() - start, stage=Stage.SR,
                           message=f"region {i * gx + j + 1} of {gy * gx}")
            x_lo, x_hi = _extent(wx[j], hr_x)
            c0, c1 = max(0, int(np.floor(x_lo)) - CONTEXT), min(w, int(np.ceil(x_hi)) + 1 + CONTEXT)
            part = np.ascontiguousarray(frames[..., r0:r1, c0:c1])
            if safe:
                with warnings.catch_warnings(record=True):
                    warnings.simplefilter("always")
                    sr, rec = yield from iter_safe_sr(spec, part, kernels[i, j], scale, device=device, seed=seed,
                                                      options=options, given=given,
                                                      confidence=float(confidence[i, j]), noise=noise)
                fallbacks += rec.get("fallback") == "bicubic"
                level = next((rec[k] for k in ("sigma", "noise_level") if k in rec), None)
                if level is not None:
                    levels.append(float(level))
            else:
                sr = yield from spec.fn(part, kernels[i, j], scale, device=device, seed=seed, **options)
            weight = (wy[i, r0 * scale:r1 * scale, None] * wx[j, None, c0 * scale:c1 * scale]).astype(np.float32)
            out[..., r0 * scale:r1 * scale, c0 * scale:c1 * scale] += np.asarray(sr, dtype=np.float32) * weight
    if safe:
        record["fallback_regions"] = int(fallbacks)
        if levels:
            record["noise_level_range"] = [round(min(levels), 3), round(max(levels), 3)]
        if fallbacks:
            warnings.warn(f"{spec.name}: {fallbacks} of {gy * gx} regions fell back to bicubic interpolation "
                          f"(their kernels looked wrong for them)", UnsafeSRWarning, stacklevel=4)
    return out, record
