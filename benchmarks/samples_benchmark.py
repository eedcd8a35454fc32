"""Every bundled sample: the default estimator's kernel against the fixed Gaussian, and SR with it
(API defaults) against bicubic interpolation.

For each sample of :data:`napari_kernelgan.samples.SAMPLES` (its HR original, its known kernel and
the degraded LR image, as the napari sample menu and the demo give them): kernel L1 of the estimate
and of the fixed Gaussian ``constant_gaussian(2)``; PSNR on Y (8-bit range, shave 2) of
``super_resolve(lr, estimate, 2)`` — the two-line path with its defaults — of bicubic interpolation
and of SR with the true kernel. Stacks use their middle slice. A sample with optics (its pixel size, NA,
emission and immersion, which the napari sample's metadata carries into the Optics group) is estimated
with them, as ``estimate_kernel(lr, 2, hints=case.hints())``, and once more without them (a note under the
table).

    python benchmarks/samples_benchmark.py --out docs/benchmarks_samples.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from _report import emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def to_8bit(image: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``image`` on an 8-bit scale set by the reference's range (so PSNRs of uint16 samples compare)."""
    lo, hi = float(ref.min()), float(ref.max())
    return (np.asarray(image, dtype=np.float64) - lo) / max(hi - lo, 1e-12) * 255.0


def run_case(case, estimator: str, threads: int, seed: int) -> dict:
    from napari_kernelgan import estimate_kernel, super_resolve
    from napari_kernelgan.physics import constant_gaussian, image_psnr, kernel_l1

    hr, lr, k_true = case.hr(), case.lr(), case.kernel()
    if case.stacked:
        mid = hr.shape[0] // 2
        hr, lr = hr[mid], lr[mid]
    hints = case.hints()
    start = time.perf_counter()
    est = estimate_kernel(lr, 2, estimator=estimator, seed=seed, threads=threads, hints=hints or None)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    sr = super_resolve(lr, est, 2, seed=seed, threads=threads)
    sr_seconds = time.perf_counter() - start
    start = time.perf_counter()
    bicubic = super_resolve(lr, k_true, 2, sr_method="bicubic", threads=threads)
    bicubic_seconds = time.perf_counter() - start
    true_sr = super_resolve(lr, k_true, 2, threads=threads)

    offset = getattr(case, "offset", 0.0)  # a camera image's offset, absent from its noise-free original

    def psnr(x: np.ndarray) -> float:
        return image_psnr(to_8bit(np.asarray(x, dtype=np.float64) - offset, hr), to_8bit(hr, hr), shave=2)

    row = {"sample": case.key, "l1": kernel_l1(est.kernel, k_true), "fixed_l1": kernel_l1(constant_gaussian(2), k_true),
           "confidence": est.confidence, "seconds": seconds, "psnr": psnr(sr.image), "bicubic": psnr(bicubic.image),
           "true_kernel": psnr(true_sr.image), "fallback": sr.options.get("fallback"), "sr_seconds": sr_seconds,
           "bicubic_seconds": bicubic_seconds, "refinement": sr.options.get("poisson_refinement"),
           "optics": _optics_label(hints)}
    if hints:
        blind = estimate_kernel(lr, 2, estimator=estimator, seed=seed, threads=threads)
        row["without_optics"] = {"l1": kernel_l1(blind.kernel, k_true), "confidence": blind.confidence,
                                 "psnr": psnr(super_resolve(lr, blind, 2, seed=seed, threads=threads).image)}
    return row


def _optics_label(hints: dict) -> str:
    """The optics given, in a microscopist's words ("–" for none)."""
    parts = []
    if hints.get("na") is not None:
        parts.append(f"NA {hints['na']:g}")
    if hints.get("wavelength_um") is not None:
        parts.append(f"{hints['wavelength_um'] * 1000:.0f} nm")
    if hints.get("pixel_um") is not None:
        parts.append(f"{hints['pixel_um']:g} µm px")
    return ", ".join(parts) or "–"


def markdown(rows: list[dict], cmd: str, env: str, estimator: str) -> str:
    lines = [f"## Bundled samples: `{estimator}` kernel and SR with it (API defaults)", "", f"Command: `{cmd}`", "",
             f"Machine: {env}", "",
             "| sample | optics given | kernel L1 ↓ | fixed Gaussian L1 | confidence | SR PSNR (dB) | bicubic | "
             "Δ vs bicubic | true-kernel SR | estimate s | SR s (bicubic s) | RL steps | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ok = r["l1"] < r["fixed_l1"] and r["psnr"] > r["bicubic"]
        conf = "–" if r["confidence"] is None else f"{r['confidence']:.2f}"
        lines.append(f"| {r['sample']} | {r.get('optics', '–')} | {r['l1']:.3f} | {r['fixed_l1']:.3f} | {conf} | "
                     f"{r['psnr']:.2f} | "
                     f"{r['bicubic']:.2f} | {r['psnr'] - r['bicubic']:+.2f} | {r['true_kernel']:.2f} | "
                     f"{r['seconds']:.2f} | {r['sr_seconds']:.2f} ({r['bicubic_seconds']:.2f}) | "
                     f"{'–' if r['refinement'] is None else r['refinement']} | "
                     f"{'beats both' if ok else 'does NOT beat both'}"
                     + (f" (fell back to {r['fallback']})" if r["fallback"] else "") + " |")
    lines += ["", "PSNR on the sample's own range mapped to 0–255 (uint16 samples included), Y channel for RGB, "
              "2 pixels shaved. Stacks: the middle slice. SR s: `super_resolve` with the estimate (safeguards "
              "included), beside bicubic interpolation in the same run. RL steps: the photon-limited refinement's "
              "Richardson–Lucy steps (– where the noise is not photon-limited). Optics given: what the sample's "
              "metadata states (the napari sample carries it into the Estimate widget's Optics group), passed as "
              "`hints`; the kernel L1 compares the whole kernels (the widefield PSF's 75×75 included)."]
    for r in rows:
        if "without_optics" in r:
            w = r["without_optics"]
            lines += ["", f"{r['sample']} without its optics (`estimate_kernel(lr, 2)` alone): kernel L1 "
                      f"{w['l1']:.3f} (fixed Gaussian {r['fixed_l1']:.3f}), confidence {w['confidence']:.2f}, SR PSNR "
                      f"{w['psnr']:.2f} dB ({w['psnr'] - r['bicubic']:+.2f} dB vs bicubic)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--estimator", default=None, help="default: the API's default estimator")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--note", default="", help="a word on the machine (e.g. 'loaded') for the report")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    from napari_kernelgan.api import DEFAULT_ESTIMATOR
    from napari_kernelgan.samples import SAMPLES

    estimator = args.estimator or DEFAULT_ESTIMATOR
    rows = []
    for case in SAMPLES.values():
        row = run_case(case, estimator, args.threads, args.seed)
        rows.append(row)
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    env = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
           f"{args.threads} thread(s)" + (f"; {args.note}" if args.note else ""))
    cmd = "python benchmarks/samples_benchmark.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    emit(markdown(rows, cmd, env, estimator), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
