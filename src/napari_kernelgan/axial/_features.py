"""Features of a z-stack for the learned optics estimate (numpy only): where its physics shows in its spectra.

* **Lateral spectrum** of the in-focus planes: the radially averaged power of Hann-windowed square tiles, in
  :data:`LATERAL_BINS` bins of the lateral frequency relative to the lateral Nyquist. The lateral PSF's cutoff
  and roll-off live here.
* **Lateral × axial spectrum** of the whole stack: the power of Hann-windowed (z, y, x) blocks of 16 planes
  (8 for stacks of fewer) and tiles, binned by the lateral frequency (:data:`BLOCK_BINS` bins relative to the
  lateral Nyquist) and read at :data:`KZ_POINTS` axial frequencies (0 to the z Nyquist). The axial blur, and a widefield
  PSF's missing cone (power at high lateral and low axial frequency), live here.

Every power is divided by the white noise floor the measured Poisson–Gaussian noise gives it, the floor
subtracted, and its logarithm taken (:func:`_snr`): so the features do not change with the intensity's scale
or offset.

* **The spectral z-blur fit** (:func:`._spectral.iter_z_blur`, what the estimate measures with the optics
  given): the Gaussian extra blur that makes lateral lines look like z lines, its fit quality, the share of z
  frequencies above the noise and the x/y agreement.
* The log pixel size, log z step and log of their ratio.

The stack is read in z blocks (np.memmap and dask stacks are read only there).
"""
from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np

from ._spectral import iter_z_blur
from ._zops import measure_stack_noise

__all__ = ["stack_features", "iter_stack_features", "iter_block_spectrum", "features_of_stack",
           "focus_planes", "feature_names", "z_blur_features", "LATERAL_BINS", "BLOCK_BINS", "KZ_POINTS", "TILE"]

TILE = 64
"""Side of the lateral tiles (pixels; 32 where the planes are smaller)."""
LATERAL_BINS = 16
"""Bins of the in-focus planes' radial spectrum, equal widths from 0 to the lateral Nyquist."""
BLOCK_BINS = 8
"""Lateral bins of the (lateral × axial) spectrum."""
KZ_POINTS = 9
"""Axial frequencies read: 0, ⅛, … 1 of the z Nyquist (blocks of 16 planes; 8 planes, interpolated, for
stacks of fewer than 16)."""
MAX_TILES = 64
"""Most lateral tiles per block (the central ones): enough for a precise average, bounded time."""
FLOOR = 0.03
"""Added to the signal-to-noise ratio before its log: bins drowned in noise read log(FLOOR), not −∞."""


def _snr(power: np.ndarray, noise: float) -> np.ndarray:
    return np.log(np.clip(power / max(noise, 1e-300) - 1.0, 0.0, None) + FLOOR)


def _tiles(n: int, tile: int) -> list[int]:
    """Starts of half-overlapping tiles along a side of ``n`` pixels, central first, at most what fits."""
    step = tile // 2
    starts = list(range(0, n - tile + 1, step))
    return starts or [0]


def _tile_side(ny: int, nx: int) -> int:
    return TILE if min(ny, nx) >= TILE else 32


def _radial_index(tile: int, bins: int) -> np.ndarray:
    """Bin of every (ky, kx) of an rfft2 tile by its radial frequency relative to the Nyquist (−1 beyond it)."""
    ky = np.fft.fftfreq(tile) * 2
    kx = np.fft.rfftfreq(tile) * 2
    r = np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    idx = np.minimum(np.floor(r * bins).astype(int), bins - 1)
    idx[(r > 1) | (r == 0)] = -1
    return idx


def _windows(tile: int) -> np.ndarray:
    w = np.hanning(tile + 2)[1:-1]
    return np.outer(w, w)


def _chosen(ny: int, nx: int, tile: int) -> list[tuple[int, int]]:
    ys, xs = _tiles(ny, tile), _tiles(nx, tile)
    pairs = [(y, x) for y in ys for x in xs]
    cy, cx = (ny - tile) / 2, (nx - tile) / 2
    pairs.sort(key=lambda p: (p[0] - cy) ** 2 + (p[1] - cx) ** 2)
    return pairs[:MAX_TILES]


def lateral_spectrum(planes: np.ndarray, offset: float, noise_var: float) -> np.ndarray:
    """Noise-normalised log radial power of ``planes`` (…, y, x) (:data:`LATERAL_BINS` values)."""
    planes = np.asarray(planes, dtype=np.float64)
    ny, nx = planes.shape[-2:]
    tile = _tile_side(ny, nx)
    w2 = _windows(tile)
    idx = _radial_index(tile, LATERAL_BINS)
    total = np.zeros(LATERAL_BINS)
    counts = np.bincount(idx[idx >= 0], minlength=LATERAL_BINS).astype(float)
    n = 0
    for y, x in _chosen(ny, nx, tile):
        block = (planes[..., y:y + tile, x:x + tile] - offset) * w2
        p = (np.abs(np.fft.rfft2(block)) ** 2).reshape(-1, *idx.shape).sum(axis=0)
        total += np.bincount(idx[idx >= 0], weights=p[idx >= 0], minlength=LATERAL_BINS)
        n += block.reshape(-1, tile, tile).shape[0]
    power = total / np.maximum(counts, 1) / max(n, 1)
    return _snr(power, noise_var * float((w2 ** 2).sum()))


def iter_block_spectrum(read: Any, nz: int, ny: int, nx: int, offset: float, noise_var: float
                        ) -> Generator[float, None, np.ndarray]:
    """Noise-normalised log power of (z, y, x) blocks, lateral bins × axial points (``BLOCK_BINS·KZ_POINTS``);
    yields the share done after each block.

    ``read(lo, hi)`` returns planes ``lo … hi-1`` as float64."""
    lz = 16 if nz >= 16 else 8
    tile = _tile_side(ny, nx)
    wz = np.hanning(lz + 2)[1:-1]
    w3 = wz[:, None, None] * _windows(tile)[None]
    idx = _radial_index(tile, BLOCK_BINS)
    ok = idx >= 0
    counts = np.bincount(idx[ok], minlength=BLOCK_BINS).astype(float)
    total = np.zeros((lz // 2 + 1, BLOCK_BINS))
    n = 0
    starts = list(range(0, nz - lz + 1, lz // 2))
    if starts[-1] != nz - lz:
        starts.append(nz - lz)
    pairs = _chosen(ny, nx, tile)
    for i, s0 in enumerate(starts):
        yield i / len(starts)
        chunk = read(s0, s0 + lz) - offset
        for y, x in pairs:
            spec = np.abs(np.fft.rfftn(chunk[:, y:y + tile, x:x + tile] * w3)) ** 2
            # |kz| and −|kz| fold together: rows 1 … lz/2−1 and their mirrors.
            folded = spec[:lz // 2 + 1].copy()
            folded[1:lz // 2] += spec[lz - 1:lz // 2:-1]
            folded[1:lz // 2] *= 0.5
            for k in range(lz // 2 + 1):
                total[k] += np.bincount(idx[ok], weights=folded[k][ok], minlength=BLOCK_BINS)
            n += 1
    power = total / np.maximum(counts, 1)[None] / max(n, 1)
    if power.shape[0] != KZ_POINTS:
        at = np.linspace(0, power.shape[0] - 1, KZ_POINTS)
        power = np.stack([np.interp(at, np.arange(power.shape[0]), col) for col in power.T], axis=1)
    return _snr(power, noise_var * float((w3 ** 2).sum())).ravel()


def feature_names() -> list[str]:
    """Names of :func:`stack_features`' values, in order."""
    names = [f"lat{i}" for i in range(LATERAL_BINS)]
    names += [f"kz{j}_k{i}" for j in range(KZ_POINTS) for i in range(BLOCK_BINS)]
    names += ["z_blur", "z_blur_missing", "z_blur_distance", "z_blur_band", "z_blur_xy", "z_blur_at_edge"]
    return names + ["log_pixel", "log_z_step", "log_ratio"]


def z_blur_features(fit: dict[str, Any], pixel_um: float, z_step_um: float) -> np.ndarray:
    """The spectral z-blur fit (:func:`._spectral.iter_z_blur`) as features: log σ in lateral pixels (the
    smallest tried where there is none), whether it is missing, the fit's distance, the share of z frequencies
    above the noise, the x/y disagreement and whether the fit sits at the end of its range."""
    from ._spectral import SIGMAS

    lag = z_step_um / pixel_um
    s = fit["sigma"]
    missing = not math.isfinite(s)
    sigma = math.log((SIGMAS[0] if missing else s) * lag)
    dist = min(float(fit["distance"]), 2.0) if math.isfinite(fit["distance"]) else 2.0
    band = fit["band_bins"] / (fit["segment_planes"] // 2)
    sx, sy = fit["sigma_x"], fit["sigma_y"]
    xy = min(abs(math.log(sx / sy)), 1.0) if math.isfinite(sx) and math.isfinite(sy) and sx > 0 and sy > 0 else 1.0
    edge = (not missing) and not SIGMAS[0] < s < SIGMAS[-1]
    return np.array([sigma, float(missing), dist, band, xy, float(edge)])


def stack_features(*args: Any) -> np.ndarray:
    """:func:`iter_stack_features` run to its end."""
    from ..api import drive

    return drive(iter_stack_features(*args))


def iter_stack_features(read: Any, shape: tuple[int, int, int], planes: np.ndarray, offset: float,
                        noise: tuple[float, float], pixel_um: float, z_step_um: float, z_blur: dict[str, Any]
                        ) -> Generator[float, None, np.ndarray]:
    """The feature vector of a stack (:func:`feature_names`); yields the share done (often: a caller may stop
    between reports).

    ``read(lo, hi)``: planes ``lo … hi-1`` as float64; ``planes``: the in-focus planes; ``offset``: a constant
    taken from every value before the windows (the stack's mean, so a camera offset changes nothing);
    ``noise``: ``(a, b)`` of the Poisson–Gaussian variance ``a·I + b`` of the raw intensities ``I``;
    ``z_blur``: the spectral z-blur fit (:func:`._spectral.iter_z_blur`)."""
    nz, ny, nx = shape
    a, b = noise
    mean_focus = float(np.mean(planes))
    lat = lateral_spectrum(planes, offset, max(a * mean_focus + b, 1e-12))
    mean_all = float(np.mean([read(i, i + 1).mean() for i in range(0, nz, max(1, nz // 8))]))
    blk = yield from iter_block_spectrum(read, nz, ny, nx, offset, max(a * mean_all + b, 1e-12))
    px, dz = math.log(pixel_um), math.log(z_step_um)
    zb = z_blur_features(z_blur, pixel_um, z_step_um)
    return np.concatenate([lat, blk, zb, [px, dz, dz - px]]).astype(np.float64)


def focus_planes(sharp: np.ndarray, count: int) -> np.ndarray:
    """Indices (ascending) of the ``count`` sharpest planes, at most a quarter of them (at least 2)."""
    nz = sharp.size
    return np.sort(np.argsort(sharp)[::-1][:min(count, max(2, nz // 4))])


def features_of_stack(stack: Any, pixel_um: float, z_step_um: float, focus_count: int = 6) -> np.ndarray:
    """:func:`stack_features` of a whole stack in memory, its in-focus planes and noise found as the axial
    estimate finds them."""
    from ..api import drive

    arr = np.asarray(stack)

    def read(lo: int, hi: int) -> np.ndarray:
        return np.asarray(arr[lo:hi], dtype=np.float64)

    full = read(0, arr.shape[0])
    sharp = (np.diff(full, axis=2) ** 2).mean(axis=(1, 2)) + (np.diff(full, axis=1) ** 2).mean(axis=(1, 2))
    focus = focus_planes(sharp, focus_count)
    planes = full[focus]
    noise = measure_stack_noise(planes[int(np.argmax(sharp[focus]))], crop=None, shot_only=False)
    a, b = noise.a, noise.b
    means = full.mean(axis=(1, 2))
    var_x = max(a * float(planes.mean()) + b, 0.0)
    var_z = max(a * float(means.mean()) + b, 0.0)
    fit = drive(iter_z_blur(read, full.shape[0], planes, var_x, var_z, pixel_um, z_step_um))
    return stack_features(read, full.shape, planes, float(means.mean()), (a, b), pixel_um, z_step_um, fit)
