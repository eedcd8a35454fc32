"""The physical PSF models (``physics.optics``) measured against closed-form optics.

Each row is a fact with a closed form (Airy zero and FWHM, confocal FWHM, axial FWHM, energy, the
side holding 99 % of the light) beside what the model gives, and the trivial baseline: the Gaussian
approximation of the widefield PSF (σ = 0.21 λ/NA). Timings are the best of three on this machine.

    python benchmarks/psf_models_report.py --out docs/benchmarks_psf_models.md
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

from _report import best_of, emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_kernelgan.physics.metrics import profile_fwhm

GAUSS_SIGMA = 0.21  # λ/NA: the Gaussian approximation of the widefield PSF
FWHM_PER_SIGMA = 2 * np.sqrt(2 * np.log(2))




def rows() -> list[tuple[str, str, str, str]]:
    """(fact, closed form, model, Gaussian approximation) rows, lengths in λ/NA unless named."""
    from scipy import special, stats

    from napari_kernelgan.physics.optics import (
        Optics,
        axial_fwhm_um,
        best_focus_um,
        psf_2d,
        psf_3d,
        radial_intensity,
        support_for,
    )

    lam, na = 0.5, 1.0
    unit = lam / na
    fine = unit / 50
    wide = Optics(na=na, wavelength_um=lam)
    out = []
    r = np.linspace(0.3 * unit, 0.9 * unit, 6001)
    zero = r[np.argmin(radial_intensity(wide, r)[0])] / unit
    out.append(("widefield: first zero of the Airy pattern", "0.610", f"{zero:.3f}", "none (no zero)"))
    w_fwhm = profile_fwhm(psf_2d(wide, fine, 101)[50], fine) / unit
    out.append(("widefield: lateral FWHM", "0.51 (exact Airy 0.5145)", f"{w_fwhm:.4f}",
                f"{GAUSS_SIGMA * FWHM_PER_SIGMA:.4f}"))
    for au in (0.05, 0.25, 0.5, 1.0, 2.0):
        conf = Optics(modality="confocal", na=na, wavelength_um=lam, excitation_um=lam, pinhole_au=au)
        c_fwhm = profile_fwhm(psf_2d(conf, fine, 101)[50], fine) / unit
        closed = "0.37 (Airy²)" if au == 0.05 else "between 0.37 and 0.51"
        out.append((f"confocal, λ_ex = λ_em, pinhole {au:g} AU: lateral FWHM", closed, f"{c_fwhm:.4f}", ""))
    for n, a in ((1.515, 1.4), (1.333, 1.2), (1.0, 0.8), (1.515, 0.5)):
        optics = Optics(na=a, wavelength_um=0.52, n_immersion=n)
        expected = axial_fwhm_um(optics)
        dz = expected / 40
        model = profile_fwhm(psf_3d(optics, 0.52 / a / 20, dz, (241, 5, 5))[:, 2, 2], dz)
        out.append((f"widefield NA {a:g}, n {n:g}, λ 0.52 µm: axial FWHM (µm)",
                    f"{expected:.3f} (0.88 λ/(n - √(n² - NA²)))", f"{model:.3f} ({model / expected - 1:+.1%})", ""))
    size, pixel = 401, 0.04
    energy = psf_2d(wide, pixel, size, normalise=False).sum()
    v = 2 * np.pi * na * size * pixel / 2 / lam
    inner = 1 - special.j0(v) ** 2 - special.j1(v) ** 2
    outer = 1 - special.j0(v * np.sqrt(2)) ** 2 - special.j1(v * np.sqrt(2)) ** 2
    out.append(("widefield: light inside ±16 λ/NA (401² pixels of λ/(12.5 NA)), before normalising",
                f"{inner:.4f} to {outer:.4f} (Airy encircled energy, inscribed to circumscribed circle)",
                f"{energy:.4f}", "1 (all of it)"))
    coarse = psf_2d(wide, 0.06, 31)
    binned = psf_2d(wide, 0.02, 93).reshape(31, 3, 31, 3).sum(axis=(1, 3))
    out.append(("pixel integration: 0.06 µm pixels against 0.02 µm binned 3×3 (max difference / peak)", "0",
                f"{np.abs(coarse - binned).max() / coarse.max():.1e}", ""))
    oil = Optics(na=1.4, wavelength_um=0.52)
    for mass in (0.95, 0.99):
        side = support_for(oil, mass, pixel_um=0.065)
        # A Gaussian's centred square holds its mass per axis squared: each axis √mass.
        half = stats.norm.ppf((1 + np.sqrt(mass)) / 2) * GAUSS_SIGMA * 0.52 / 1.4 / 0.065
        gauss_side = 2 * int(np.ceil(half - 0.5)) + 1
        out.append((f"widefield NA 1.4, λ 0.52 µm, 0.065 µm pixels: side holding {mass:.0%}",
                    "99 %: ≈ 20 λ/NA (Airy rings: 1 - EE(r) ≈ 2/(π k NA r))" if mass == 0.99 else "",
                    f"{side} px ({side * 0.065:.2f} µm)", f"{gauss_side} px"))
    zs = np.linspace(-6, 6, 1201)
    matched_peak = radial_intensity(oil, [0.0], zs)[:, 0].max()
    for depth in (10.0, 30.0):
        water = Optics(na=1.4, wavelength_um=0.52, n_sample=1.333, depth_um=depth)
        axial = radial_intensity(water, [0.0], zs)[:, 0]
        paraxial = depth * (1.515 / 1.333 - 1)
        out.append((f"oil NA 1.4 into water at {depth:g} µm: stage shift to the brightest plane (µm); peak",
                    f"≥ {paraxial:.2f} (paraxial n_oil/n_water - 1)",
                    f"{best_focus_um(water):+.2f}; peak {axial.max() / matched_peak:.2f} of matched", ""))
    conf = Optics(modality="confocal", na=1.4, wavelength_um=0.52, excitation_um=0.488)
    for label, fn in (("41×41 widefield", lambda: psf_2d(oil, 0.05, 41)),
                      ("41×41 confocal 1 AU", lambda: psf_2d(conf, 0.05, 41)),
                      ("65×65×65 widefield", lambda: psf_3d(oil, 0.05, 0.1, (65, 65, 65))),
                      ("65×65×65 confocal 1 AU", lambda: psf_3d(conf, 0.05, 0.1, (65, 65, 65)))):
        out.append((f"time: {label} (s)", "< 0.2" if "41" in label else "< 5", f"{best_of(fn):.3f}", ""))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    table = rows()
    lines = ["## Physical PSF models against closed-form optics", "",
             "Command: `python benchmarks/psf_models_report.py --out docs/benchmarks_psf_models.md`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} CPUs. Lengths in λ/NA unless named "
             "(λ = 0.5 µm, NA 1.0, pixels λ/(50 NA) for the lateral rows).", "",
             "| fact | closed form | model | Gaussian approximation (σ = 0.21 λ/NA) |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table]
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
