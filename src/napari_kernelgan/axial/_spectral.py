"""The spectral comparison behind the ``"spectral"`` axial estimate: lateral lines against z lines.

Under statistical isotropy of the object, a lateral line (along x or y, sampled every ``pixel_um``) blurred
along itself by the extra axial blur ``h`` and sampled every ``z_step_um`` has the statistics of a z line.
The comparison is made on second moments: the lateral lines' autocovariance ``R`` (at every pixel lag,
their white noise removed at lag 0) is blurred by ``h ⋆ h``, read at the z lags, and turned into the
expected periodogram of a z segment exactly as the z segments' periodogram is taken (each segment's mean
removed, Hann window), so windowing, mean removal and aliasing affect both sides alike. The z segments'
own white noise floor is removed from their periodogram.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

__all__ = ["iter_z_blur", "segments", "segment_design", "line_autocovariance", "z_periodogram",
           "expected_periodogram", "gaussian_g", "log_distance"]


MIN_PLANES = 8
"""Fewest planes a z segment has."""
MAX_SEGMENT = 32
"""Longest z segment (planes) of the spectral comparison."""
SIGMAS = np.exp(np.linspace(math.log(0.02), math.log(2.0), 51))
"""σ of the Gaussian effective blur tried, in z steps."""
SEGMENT_SHARE = 0.75
"""A z segment spans at most this share of a lateral line's length (lags beyond are estimated from few pairs)."""
BAND_SNR = 0.25
"""A z frequency enters the fit where its signal power is at least this share of the noise's: averaged over
every (y, x) column the periodogram is precise to a fraction of a per cent, so the limit is how well the noise
floor is known."""


def segments(nz: int, n: int) -> list[int]:
    """Starts of z segments of ``n`` planes, half overlapping, the last ending on the last plane."""
    step = max(1, n // 2)
    starts = list(range(0, nz - n + 1, step))
    if starts[-1] != nz - n:
        starts.append(nz - n)
    return starts


def iter_z_blur(read: Callable[[int, int], np.ndarray], nz: int, planes: np.ndarray, var_x: float, var_z: float,
                pixel_um: float, z_step_um: float) -> Generator[tuple[float, str], None, dict[str, Any]]:
    """The Gaussian extra z blur that makes the lateral lines of ``planes`` (in-focus, white noise ``var_x``)
    look like the stack's z lines (``read(lo, hi)``: planes ``lo … hi-1``; white noise ``var_z``): yields
    ``(share done, message)``, returns σ in z steps (``sigma`` for x and y lines together, ``sigma_x``,
    ``sigma_y``; NaN where fewer than 2 z frequencies stand above the noise), the fit's log-spectral
    ``distance``, ``band_bins``, ``segment_planes`` and the z segments' ``clean`` periodogram, ``band``, ``u``
    and ``norm`` (:func:`segment_design`)."""
    ny, nx = planes.shape[-2:]
    lag_px = z_step_um / pixel_um
    n = int(np.clip(math.floor(SEGMENT_SHARE * min(ny, nx) / lag_px) + 1, MIN_PLANES, min(MAX_SEGMENT, nz)))
    u, norm = segment_design(n)
    max_lag = min(nx, ny) - 1
    r_x = line_autocovariance(planes, -1, max_lag)
    r_y = line_autocovariance(planes, -2, max_lag)
    for r in (r_x, r_y):
        r[0] -= var_x
    starts = segments(nz, n)
    total_p = np.zeros(u.shape[1])
    count = 0
    for i, s0 in enumerate(starts):
        p, c = z_periodogram([read(s0, s0 + n)], u, norm)
        total_p += p * c
        count += c
        yield 0.7 * (i + 1) / len(starts), "z spectrum"
    p_z = total_p / max(count, 1)
    noise_z = var_z * (np.abs(u) ** 2).sum(axis=0) / norm
    clean = p_z - noise_z
    band = np.zeros(p_z.size, bool)
    band[1:] = clean[1:] > BAND_SNR * noise_z[1:]
    # Above the first bin that noise wins, higher bins are not trusted either.
    first_bad = np.nonzero(~band[1:])[0]
    if first_bad.size:
        band[1 + first_bad[0]:] = False
    clean = np.clip(clean, 1e-300, None)
    half = int(min(max_lag, math.ceil((n + 4) * lag_px)))

    def gauss_fit(r: np.ndarray) -> tuple[float, float]:
        best = (math.inf, math.nan)
        for s in SIGMAS:
            m = expected_periodogram(r, gaussian_g(s * lag_px, half), lag_px, u, norm)
            d, _ = log_distance(clean, m, band)
            if d < best[0]:
                best = (d, s)
        return best

    nb = int(band.sum())
    if nb >= 2:
        d_xy, s_xy = gauss_fit(0.5 * (r_x + r_y))
        yield 0.8, "fitting the z blur"
        s_x = gauss_fit(r_x)[1]
        yield 0.9, "fitting the z blur"
        s_y = gauss_fit(r_y)[1]
    else:
        d_xy = math.inf
        s_xy = s_x = s_y = math.nan
    yield 1.0, "fitting the z blur"
    return {"sigma": s_xy, "sigma_x": s_x, "sigma_y": s_y, "distance": d_xy, "band_bins": nb,
            "segment_planes": n, "clean": clean, "band": band, "u": u, "norm": norm}


def segment_design(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(U, norm)``: column ``f`` of ``U`` is the mean-removed, Hann-windowed Fourier vector of bin ``f``
    (``0 … n//2``) of an ``n``-sample segment; ``norm`` = Σw². A segment's periodogram is
    ``|Uᴴ x|² / norm`` and its expectation under covariance ``C`` is ``diag(Uᴴ C U) / norm``."""
    w = np.hanning(n + 2)[1:-1]
    m = np.eye(n) - 1.0 / n
    f = np.arange(n // 2 + 1)
    e = np.exp(-2j * np.pi * np.outer(np.arange(n), f) / n)
    u = m @ (w[:, None] * e)
    return u, float((w ** 2).sum())


def line_autocovariance(planes: np.ndarray, axis: int, max_lag: int) -> np.ndarray:
    """Autocovariance of the mean-removed lines of ``planes`` (…, y, x) along ``axis`` (-1: x, -2: y), at lags
    ``0 … max_lag`` pixels, averaged over lines (unbiased: each lag over the pairs it has)."""
    a = np.moveaxis(np.asarray(planes, dtype=np.float64), axis, -1)
    a = a.reshape(-1, a.shape[-1])
    a = a - a.mean(axis=1, keepdims=True)
    n = a.shape[1]
    size = 1 << math.ceil(math.log2(2 * n))
    spec = np.fft.rfft(a, size, axis=1)
    acf = np.fft.irfft((spec * spec.conj()).real.mean(axis=0), size)[:n]
    acf /= np.arange(n, 0, -1)
    out = np.zeros(max_lag + 1)
    k = min(max_lag + 1, n)
    out[:k] = acf[:k]
    return out


def z_periodogram(chunks, u: np.ndarray, norm: float) -> tuple[np.ndarray, int]:
    """Mean periodogram of z segments: ``chunks`` yields arrays ``(n, y, x)`` (``n`` consecutive planes);
    every (y, x) column of each is one segment. Returns ``(P over bins 0 … n//2, segment count)``."""
    total = np.zeros(u.shape[1])
    count = 0
    for chunk in chunks:
        c = np.asarray(chunk, dtype=np.float64).reshape(chunk.shape[0], -1)
        proj = u.conj().T @ c
        total += (np.abs(proj) ** 2).sum(axis=1)
        count += c.shape[1]
    return total / max(count * norm, 1e-300), count


def gaussian_g(sigma_px: float, half: int) -> np.ndarray:
    """``h ⋆ h`` for a Gaussian ``h`` of σ ``sigma_px`` (pixels), at lags ``-half … half`` (sum 1)."""
    t = np.arange(-half, half + 1, dtype=np.float64)
    s = max(float(sigma_px), 1e-3) * math.sqrt(2.0)
    g = np.exp(-0.5 * (t / s) ** 2)
    return g / g.sum()


def expected_periodogram(r_clean: np.ndarray, g: np.ndarray, lag_px: float, u: np.ndarray, norm: float
                         ) -> np.ndarray:
    """Expected periodogram of a z segment whose samples are ``lag_px`` lateral pixels apart, for lateral lines of
    noise-free autocovariance ``r_clean`` (lags ``0 …``) blurred by ``h`` with ``g = h ⋆ h`` (odd, centred)."""
    n = u.shape[0]
    r_sym = np.concatenate([r_clean[:0:-1], r_clean])
    blurred = np.convolve(r_sym, g, mode="same")[r_clean.size - 1:]
    lags = np.arange(n) * lag_px
    rz = np.interp(lags, np.arange(blurred.size), blurred, right=0.0)
    idx = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    cov = rz[idx]
    return np.einsum("if,ij,jf->f", u.conj(), cov, u).real / norm


def log_distance(observed: np.ndarray, model: np.ndarray, band: np.ndarray) -> tuple[float, float]:
    """``(rms, gain)``: the RMS log-spectral distance over ``band`` after the best common gain (the lateral
    planes and the z lines need not hold the same amount of light), and that gain."""
    o, m = observed[band], model[band]
    if o.size == 0 or (m <= 0).any():
        return math.inf, 1.0
    d = np.log(o) - np.log(m)
    gain = float(d.mean())
    return float(np.sqrt(np.mean((d - gain) ** 2))), math.exp(gain)
