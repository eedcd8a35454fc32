"""3-D spots QC: FWHM x/y/z of isolated, unsaturated, in-focus puncta or beads in a z-stack.

Spots are 3-D maxima well above the noise with no other maximum near them, not at the border, not
saturated, and wider than one voxel (a hot pixel is one voxel). Each spot's width along x, y and z comes
from the Gaussian through its peak and its two neighbours on each axis (exact for a Gaussian at any
sub-voxel offset, so a z step coarser than the spot still gives its width). Where enough spots agree (their
z widths within :data:`MAX_SPREAD`), the median widths are the measurement; crowded fields, too few spots or
disagreeing ones are declined with the reason.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from ..physics.noise import estimate_noise_sigma

__all__ = ["measure_spots3d", "MIN_SPOTS", "MAX_SPREAD", "MAX_CROWDED"]

MIN_SPOTS = 5
"""Fewest isolated spots whose widths are reported."""
MAX_SPREAD = 0.25
"""Largest relative spread (MAD / median) of the spots' z widths that counts as agreement."""
MAX_CROWDED = 0.5
"""Above this share of spots with a neighbour nearby the field is crowded and declined."""
CORE_UM = 0.3
"""Lateral radius (µm) within which a spot is the highest point."""
NEIGHBOUR_SHARE = 0.3
"""A neighbour at least this bright (relative to the spot, above background) makes the spot crowded."""
SNR = 8.0
"""A spot's peak must stand this many noise σ above the background."""
FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _width(lo: float, mid: float, hi: float) -> float:
    """σ (in samples) of the Gaussian through three equally spaced samples around its peak; NaN if not peaked."""
    if min(lo, mid, hi) <= 0:
        return math.nan
    curv = 2.0 * math.log(mid) - math.log(lo) - math.log(hi)
    return 1.0 / math.sqrt(curv) if curv > 0 else math.nan


def measure_spots3d(stack: np.ndarray, *, pixel_um: float, z_step_um: float, isolation_um: float | None = None,
                    saturation: float | None = None) -> dict[str, Any]:
    """Measure isolated spots in a ``(z, y, x)`` stack: a dict with ``ok`` (enough agreeing spots), ``reason``
    (why not, in words), ``count``, ``candidates``, and where measured ``fwhm_x_um``, ``fwhm_y_um``, ``fwhm_z_um``
    (medians), ``asymmetry`` (``fwhm_y / fwhm_x``), ``spread_z`` (MAD / median of the z widths).

    ``isolation_um``: no other spot within this distance (default 6 lateral pixels, at least 1 µm);
    ``saturation``: the value counted as saturated (default: the dtype's maximum for integers, else none)."""
    arr = np.asarray(stack)
    if saturation is None and arr.dtype.kind in "ui":
        saturation = float(np.iinfo(arr.dtype).max)
    vol = arr.astype(np.float32)
    background = float(np.median(vol))
    noise = float(np.median([estimate_noise_sigma(p) for p in vol[:: max(1, vol.shape[0] // 3)]]))
    iso = isolation_um if isolation_um is not None else max(1.0, 6 * pixel_um)
    rz, ry = max(1, math.ceil(iso / z_step_um)), max(2, math.ceil(iso / pixel_um))
    smooth = ndimage.gaussian_filter(vol, (0.5, 0.7, 0.7))
    # A spot is the highest point within about a diffraction-limited radius (noise on one spot's shoulders makes
    # no second spot); other spots count as neighbours only when bright enough to add to its light.
    side = 2 * max(2, math.ceil(CORE_UM / pixel_um)) + 1
    peaks = (smooth == ndimage.maximum_filter(smooth, size=(3, side, side))) & (vol > background + SNR * noise)
    zz, yy, xx = np.nonzero(peaks)
    out: dict[str, Any] = {"ok": False, "count": 0, "candidates": int(zz.size)}
    if zz.size == 0:
        out["reason"] = "no bright spots stand out of the noise"
        return out
    pts = np.stack([zz * z_step_um, yy * pixel_um, xx * pixel_um], axis=1)
    height = smooth[zz, yy, xx] - background
    from scipy.spatial import cKDTree

    tree = cKDTree(pts)
    crowd = np.array([any(j != i and height[j] >= NEIGHBOUR_SHARE * height[i] for j in tree.query_ball_point(p, iso))
                      for i, p in enumerate(pts)])
    nz, ny, nx = vol.shape
    widths = []
    hot = 0
    for (z, y, x), crowded in zip(zip(zz, yy, xx), crowd):
        if crowded or not (1 <= z < nz - 1 and ry <= y < ny - ry and ry <= x < nx - ry):
            continue
        if saturation is not None and arr[z, y, x] >= saturation:
            continue
        local = vol[max(0, z - rz):z + rz + 1, y - ry:y + ry + 1, x - ry:x + ry + 1]
        bg = float(np.percentile(local, 20))
        v = vol[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2] - bg  # the peak and its six neighbours, background removed
        sx = _width(v[1, 1, 0], v[1, 1, 1], v[1, 1, 2])
        sy = _width(v[1, 0, 1], v[1, 1, 1], v[1, 2, 1])
        sz = _width(v[0, 1, 1], v[1, 1, 1], v[2, 1, 1])
        if not (math.isfinite(sx) and math.isfinite(sy) and math.isfinite(sz)):
            continue
        if sx < 0.45 and sy < 0.45:  # one bright voxel: a hot pixel, not a spot
            hot += 1
            continue
        widths.append((FWHM * sx * pixel_um, FWHM * sy * pixel_um, FWHM * sz * z_step_um))
    out["count"] = len(widths)
    out["crowded_share"] = float(crowd.mean())
    out["hot_pixels"] = hot
    if crowd.mean() > MAX_CROWDED:
        out["reason"] = (f"the spots are crowded ({crowd.mean():.0%} have a neighbour within {iso:.2g} µm): their "
                         "light overlaps, so their widths are not the PSF's")
        return out
    if len(widths) < MIN_SPOTS:
        out["reason"] = f"too few isolated spots ({len(widths)} measurable, {MIN_SPOTS} needed)"
        return out
    w = np.asarray(widths)
    med = np.median(w, axis=0)
    spread = float(np.median(np.abs(w[:, 2] - med[2])) / med[2])
    out.update(fwhm_x_um=float(med[0]), fwhm_y_um=float(med[1]), fwhm_z_um=float(med[2]),
               asymmetry=float(med[1] / med[0]), spread_z=spread)
    if spread > MAX_SPREAD:
        out["reason"] = f"the spots' z widths disagree (spread {spread:.0%}): they are not all point-like or in focus"
        return out
    out["ok"] = True
    out["reason"] = ""
    return out
