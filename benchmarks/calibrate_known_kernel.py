"""Fit the noise gain of SR with a trusted kernel (a measured PSF) on noisy fluorescence, by two-fold cross-validation.

``super_resolve(lr, psf, 2)`` gives an array kernel confidence 1: no doubt factor, no floor. The
method's noise option is then the measured noise times :func:`~napari_kernelgan.sr._safety.noise_gain`,
``max(1, σ / NOISE_REF · w^KERNEL_POWER)`` (``σ`` the measured noise in [0, 255], ``w`` the kernel's
noise width from ``Σk²``, :func:`~napari_kernelgan.sr._safety.kernel_noise_width`): the level the prior
must denoise at is the LR noise after the data step's inverse filtering. This script fits the pair
``(NOISE_REF, KERNEL_POWER)`` with every case super-resolved with its *true* kernel and the safeguards'
defaults. Two families:

* ``microscopy``: generated noisy uint16 fluorescence (``synthetic.microscopy_case(seed * 1000 + i)``,
  seeds 10–15, four scenes each: nuclei, puncta, filaments, mixed; 20–1500 photons; DIV2KRK-protocol kernels);
* ``real``: the *development* ``real_dev`` images (:data:`DEV_IMAGES`; the others are kept for reports)
  blurred with pupil-model PSFs of their own here (in focus at 0.27 λ/NA per HR pixel, FWHM 1.9 px;
  0.45 waves of defocus at 0.25 λ/NA, FWHM 2.3 px), ×2, at 30, 300 and 3000 photons (a 512 px centre crop), noise seeds
  apart from ``benchmarks/known_kernel_benchmark.py``'s (which uses other PSFs, 50/300/2000 photons and
  other noise).

Each case runs once per gain of :data:`GRID` (1 to 8 in steps of √2); a pair's result for it is
interpolated linearly in log-gain between the two nearest (a gain beyond the grid takes its end).
The rule (as ``calibrate_safety.py``): the pair with the best mean PSNR gain over
bicubic among those whose worst case is no more than 0.3 dB below bicubic, else the one with the best
worst case. Fold A fits on the even groups (microscopy seeds, real images by index) and reports the odd
ones, fold B the other way round; the fit on all cases is written to the record ``known_kernel``
(``src/napari_kernelgan/records/known_kernel.json``, loaded by ``sr/_safety.py``).

    python benchmarks/calibrate_known_kernel.py --out docs/calibration_known_kernel.txt
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from _report import emit  # benchmarks/ is on sys.path when a script runs
from calibrate_safety import WORST, cross_validate  # the same rule: best mean whose worst case holds
from known_kernel_benchmark import DATA, OFFSET, images, make_case, pupil_psf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

NOISE_REFS = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
KERNEL_POWERS = (0.0, 0.5, 1.0, 1.5)
PAIRS = tuple((r, p) for r in NOISE_REFS for p in KERNEL_POWERS)
GRID = tuple(round(2.0 ** (i / 2), 3) for i in range(7))   # gains run per case: 1 … 8 in steps of √2
DEV_IMAGES = ("cell_microtubules", "golgi_confocal")
MICRO_SEEDS = (10, 11, 12, 13, 14, 15)
KINDS = ("nuclei", "puncta", "filaments", "mixed")
REAL_PSFS = {"focus": (0.27, 0.0), "defocus": (0.25, 0.45)}   # (HR pixel in λ/NA, defocus in waves)
REAL_PHOTONS = (30.0, 300.0, 3000.0)
REAL_CROP = 512   # HR side of the centre crop of each image


def microscopy_cases(seeds: tuple[int, ...] = MICRO_SEEDS) -> list[dict]:
    from napari_kernelgan.synthetic import microscopy_case

    out = []
    for s in seeds:
        for i, kind in enumerate(KINDS):
            c = microscopy_case(s * 1000 + i, shape=(256, 256), scale=2, kind=kind)
            out.append({"name": f"{s}/{i} {kind} {c.photons:.0f} ph", "lr": c.lr, "kernel": c.kernel,
                        "target": c.hr + c.offset, "range": float(c.hr.max()), "group": s})
    return out


def real_cases(data: Path = DATA) -> list[dict]:
    out = []
    for i, (name, whole) in enumerate((n, im) for n, im in images(data).items() if n in DEV_IMAGES):
        top, left = (max(n - REAL_CROP, 0) // 2 for n in whole.shape)
        hr = whole[top:top + REAL_CROP, left:left + REAL_CROP]
        for j, (psf_name, (pixel, defocus)) in enumerate(REAL_PSFS.items()):
            psf = pupil_psf(pixel=pixel, defocus=defocus)
            for q, photons in enumerate(REAL_PHOTONS):
                c = make_case(name, hr, psf_name, psf, photons, seed=90000 + 1000 * i + 10 * j + q)
                out.append({"name": f"{name} {psf_name} {photons:g} ph", "lr": c.lr, "kernel": psf, "target": c.hr,
                            "range": float(c.hr.max() - OFFSET), "group": 100 + i})
    return out


def gains(cases: list[dict], pairs: tuple[tuple[float, float], ...], threads: int) -> np.ndarray:
    """(cases, pairs) PSNR gains over bicubic of SR with the true kernel, the noise gain set by each pair."""
    from napari_kernelgan import super_resolve
    from napari_kernelgan.imaging import prepare_image
    from napari_kernelgan.physics import image_psnr, imresize
    from napari_kernelgan.sr import _safety

    saved = _safety.noise_gain
    out = np.zeros((len(cases), len(pairs)))
    try:
        for ci, case in enumerate(cases):
            def psnr(img: np.ndarray, case: dict = case) -> float:
                return image_psnr(np.asarray(img, np.float64), case["target"], shave=4, data_range=case["range"])

            bicubic = psnr(imresize(case["lr"].astype(np.float64), 2))
            sigma = _safety.measure_noise(prepare_image(case["lr"], min_size=8).data)["noise_sigma"]
            on_grid = np.zeros(len(GRID))
            for gi, g in enumerate(GRID):
                _safety.noise_gain = lambda *_, g=g, **__: g
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a fallback shows in the gain itself
                    on_grid[gi] = psnr(super_resolve(case["lr"], case["kernel"], 2, threads=threads).image) - bicubic
            for vi, (ref, power) in enumerate(pairs):
                g = saved(sigma, case["kernel"], 2, noise_ref=ref, kernel_power=power)
                out[ci, vi] = float(np.interp(np.log(g), np.log(GRID), on_grid))
            print(f"  {case['name']:<36} σ {sigma:5.2f} w {_safety.kernel_noise_width(case['kernel'], 2):.2f} grid "
                  + " ".join(f"{g:+.2f}" for g in on_grid), flush=True)
    finally:
        _safety.noise_gain = saved
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-record", action="store_true", help="report only; leave the record as it is")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    start = time.perf_counter()
    cases = microscopy_cases() + (real_cases(args.data) if args.data.is_dir() else [])
    command = "python benchmarks/calibrate_known_kernel.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"Command: {command.strip()}", "", f"(NOISE_REF, KERNEL_POWER) pairs {list(PAIRS)}; PSNR gain over "
             "bicubic per case:"]
    print("\n".join(lines), flush=True)
    g = gains(cases, PAIRS, args.threads)
    lines += [f"  {c['name']:<36} " + " ".join(f"{x:+.2f}" for x in row) for c, row in zip(cases, g)]
    lines.append("")
    ref, power = cross_validate(g, PAIRS, "(NOISE_REF, KERNEL_POWER)", lines, np.array([c["group"] for c in cases]))
    lines.append(f"Constants: {{\"(NOISE_REF, KERNEL_POWER)\": [{ref}, {power}]}}  "
                 f"({time.perf_counter() - start:.0f} s)")
    if not args.no_record:
        from napari_kernelgan.records import write_record

        path = write_record("known_kernel", {"noise_ref": float(ref), "kernel_power": float(power)},
                            script=__file__, inputs={
            "microscopy": {"generator": "synthetic.microscopy_case(seed * 1000 + i, shape=(256, 256), scale=2)",
                           "seeds": list(MICRO_SEEDS), "cases_per_seed": len(KINDS), "kernel": "the true kernel"},
            "real": {"images": f"real_dev 2-D images {list(DEV_IMAGES)}, centre crop {REAL_CROP} px", "psfs": REAL_PSFS,
                     "photons": list(REAL_PHOTONS), "noise_seeds": "90000 + 1000*image + 10*psf + photons index"},
            "noise_refs": list(NOISE_REFS), "kernel_powers": list(KERNEL_POWERS),
            "gain_grid": [round(g, 3) for g in GRID], "between_grid_gains": "linear in log-gain",
            "rule": f"best mean PSNR gain over bicubic among values whose worst case is >= {WORST} dB"})
        lines.append(f"record written: {path.name}")
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
