"""Calibrate what ``auto``'s confidence means: levels, width-error bands and how often it beats the fixed Gaussian.

Runs ``auto`` (the API's default estimator, default options, seed 0) on

* DIV2KRK dev images ×2 and ×4 LR, and ×2 with Gaussian noise σ = 10/255 (fixed per image, as in
  ``benchmarks/calibrate_auto.py`` and the kernel benchmark's noisy case);
* generated noisy uint16 fluorescence, ``microscopy_benchmark.make_case`` at ×2 and ×4, 256×256 HR, seeds
  10–15 (12 cases each: nuclei, puncta, filaments, mixed; 20–1500 photons; ×4 compares the ×4 kernels).
  Seed 5 is never used: it is the unseen check.

Per case it keeps the confidence, the kernel L1, the fixed Gaussian's L1 (``constant_gaussian(scale)``) and the
relative error of the kernel's width, ``|w_est / w_true − 1|`` with ``w = √trace Σ`` from the second moments
(``physics.metrics.second_moments``; ×4 compares the ×4 kernels), cached in ``--cache`` so that refitting is
instant.

The levels (:func:`fit_levels`): ``medium`` starts at the lowest threshold at and above which the estimate is
closer to the truth than the fixed Gaussian on at least :data:`TRUSTED_RATE` of the cases (below it: ``low``,
not reliably better than the generic kernel); ``high`` at the lowest threshold at and above which it is so on at
least :data:`HIGH_RATE` of the cases and the upper quartile of the width error is at most :data:`HIGH_WIDTH`
(a threshold needs :data:`MIN_CASES` cases at or above it). Each level's band is the lower and upper quartile
of the width error of its cases (or of the :data:`MIN_CASES` cases nearest to its range, where it has fewer),
with the fraction of those cases that beat the fixed Gaussian.
Scales: ×2 pools DIV2KRK ×2, ×2 noisy and the ×2 fluorescence; ×4 pools DIV2KRK ×4 and the ×4 fluorescence.

Two-fold cross-validation (odd DIV2KRK images and odd seeds against even ones) fits the levels on one half and
reports, on the other, how many cases fall inside the band their level predicts (an interquartile band: about
half is right), below its upper quartile (about three in four) and how often they beat the fixed Gaussian.
The fit on all cases is written to the record ``confidence`` (``src/napari_kernelgan/records/confidence.json``,
read by ``napari_kernelgan.confidence``)::

    python benchmarks/calibrate_confidence.py --out docs/calibration_confidence.txt
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

from _report import emit, save_cache  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
NOISE = 10 / 255
MICRO_SEEDS = (10, 11, 12, 13, 14, 15)
MICRO_CASES = 12
MICRO_SIZE = 256
THRESHOLDS = tuple(round(0.01 * i, 2) for i in range(2, 81))   # candidate level boundaries
# The criteria (design choices); the thresholds that meet them are fitted on the cases.
TRUSTED_RATE = 0.9   # medium and up: the estimate beats the fixed Gaussian on at least this fraction
HIGH_RATE = 0.97     # high: it beats the fixed Gaussian on at least this fraction
HIGH_WIDTH = 0.05    # high: and the upper quartile of its width error is at most this
MIN_CASES = 10       # a threshold needs this many cases at or above it; a level's band at least this many
LEVELS = ("low", "medium", "high")


def cases(data: Path, limit: int) -> list[dict]:
    """Every calibration case as ``{"key", "condition", "scale", "fold", "load"}`` (``load`` gives LR, truth)."""
    out = []

    def div2krk(label: str, scale: int, noisy: bool, idx: int):
        def load() -> tuple[np.ndarray, np.ndarray]:
            from scipy.io import loadmat

            from napari_kernelgan.io import read_image

            lr = read_image(data / f"lr_x{scale}" / f"im_{idx}.png")[..., :3].astype(np.float32) / 255
            if noisy:  # the noise of each image is fixed by its number, as in calibrate_auto.py
                lr = np.clip(lr + np.random.default_rng(1000 + idx).normal(0, NOISE, lr.shape), 0, 1)
            return lr.astype(np.float32), loadmat(data / f"gt_k_x{scale}" / f"kernel_{idx}.mat")["Kernel"]
        return load

    for label, scale, noisy in (("x2", 2, False), ("x4", 4, False), ("x2 noisy", 2, True)):
        for idx in range(1, limit + 1):
            out.append({"key": f"{label}/{idx}", "condition": label, "scale": scale, "fold": idx % 2,
                        "load": div2krk(label, scale, noisy, idx)})

    def micro(seed: int, i: int, scale: int):
        def load() -> tuple[np.ndarray, np.ndarray]:
            from microscopy_benchmark import make_case

            case = make_case(i, seed, (MICRO_SIZE, MICRO_SIZE), scale)
            return case.lr, (case.kernel_x2 if scale == 2 else case.kernel)
        return load

    for scale in (2, 4):
        for seed in MICRO_SEEDS:
            for i in range(MICRO_CASES):
                key = f"microscopy/{seed}/{i}" + ("" if scale == 2 else f"/x{scale}")
                out.append({"key": key, "condition": f"microscopy x{scale}", "scale": scale, "fold": seed % 2,
                            "load": micro(seed, i, scale)})
    return out


def measure(case: dict, threads: int) -> dict:
    """Run ``auto`` on one case: confidence, L1, fixed Gaussian L1 and relative width error."""
    from napari_kernelgan import estimate_kernel
    from napari_kernelgan.physics.kernels import constant_gaussian
    from napari_kernelgan.physics.metrics import kernel_l1, second_moments

    lr, truth = case["load"]()
    start = time.perf_counter()
    est = estimate_kernel(lr, case["scale"], seed=0, threads=threads)
    seconds = time.perf_counter() - start
    k = est.kernel_for(case["scale"])

    def width(kernel: np.ndarray) -> float:
        return float(np.sqrt(np.trace(second_moments(np.asarray(kernel, dtype=np.float64)))))

    return {"condition": case["condition"], "scale": case["scale"], "fold": case["fold"],
            "confidence": float(est.confidence), "l1": float(kernel_l1(k, truth)),
            "fixed_l1": float(kernel_l1(constant_gaussian(case["scale"]), truth)),
            "width_error": width(k) / width(truth) - 1.0, "seconds": seconds}


def run_all(all_cases: list[dict], cache: Path, threads: int) -> dict[str, dict]:
    """Per-case results, from ``cache`` where present (written after every case)."""
    store = json.loads(cache.read_text()) if cache.exists() else {}
    for case in all_cases:
        if case["key"] in store:
            continue
        store[case["key"]] = measure(case, threads)
        print(f"{case['key']}: confidence {store[case['key']]['confidence']:.2f}, "
              f"L1 {store[case['key']]['l1']:.3f} ({store[case['key']]['seconds']:.1f} s)", file=sys.stderr, flush=True)
        save_cache(cache, store)
    return {c["key"]: store[c["key"]] for c in all_cases}


def _arrays(rows: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = np.array([r["confidence"] for r in rows])
    err = np.abs(np.array([r["width_error"] for r in rows]))
    beats = np.array([r["l1"] < r["fixed_l1"] for r in rows])
    return c, err, beats


def _nearest(c: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The cases in [lo, hi), or, where fewer than MIN_CASES are, the MIN_CASES nearest to that range."""
    inside = (c >= lo) & (c < hi)
    if inside.sum() >= MIN_CASES:
        return inside
    distance = np.maximum(lo - c, 0.0) + np.maximum(c - hi, 0.0)
    return np.isin(np.arange(c.size), np.argsort(distance, kind="stable")[:MIN_CASES])


def fit_levels(rows: list[dict]) -> dict:
    """Thresholds ``[low→medium, medium→high]`` and per-level bands from ``rows`` (see the module docstring)."""
    c, err, beats = _arrays(rows)
    usable = [t for t in THRESHOLDS if (c >= t).sum() >= MIN_CASES] or [THRESHOLDS[0]]

    def rate(t: float) -> float:
        return float(beats[c >= t].mean()) if (c >= t).any() else 1.0

    def upper(t: float) -> float:
        return float(np.quantile(err[c >= t], 0.75)) if (c >= t).any() else 0.0

    t_low = next((t for t in usable if rate(t) >= TRUSTED_RATE), usable[-1])
    t_high = next((t for t in usable if t >= t_low and rate(t) >= HIGH_RATE and upper(t) <= HIGH_WIDTH), usable[-1])
    t_high = max(t_high, t_low)
    bands = {}
    for name, lo, hi in (("low", -np.inf, t_low), ("medium", t_low, t_high), ("high", t_high, np.inf)):
        sel = _nearest(c, lo, hi)
        bands[name] = {"width_error": [round(float(np.quantile(err[sel], 0.25)), 3),
                                       round(float(np.quantile(err[sel], 0.75)), 3)],
                       "beats_fixed": round(float(beats[sel].mean()), 3),
                       "cases": int(((c >= lo) & (c < hi)).sum())}
    return {"thresholds": [t_low, t_high], "bands": bands}


def level_of(confidence: float, thresholds: list[float]) -> str:
    return LEVELS[0] if confidence < thresholds[0] else LEVELS[1] if confidence < thresholds[1] else LEVELS[2]


def by_scale(rows: list[dict]) -> dict[str, list[dict]]:
    return {"2": [r for r in rows if r["scale"] == 2], "4": [r for r in rows if r["scale"] == 4]}


def coverage(fitted: dict, rows: list[dict]) -> list[str]:
    """How the bands of ``fitted`` describe ``rows`` (cases they were not fitted on), per level."""
    lines = []
    for name in LEVELS:
        sel = [r for r in rows if level_of(r["confidence"], fitted["thresholds"]) == name]
        band = fitted["bands"][name]
        if not sel:
            lines.append(f"    {name}: no held-out cases")
            continue
        _, err, beats = _arrays(sel)
        lo, hi = band["width_error"]
        lines.append(f"    {name}: {len(sel)} held-out cases; width error in the band {lo:.0%}–{hi:.0%}: "
                     f"{int(((err >= lo) & (err <= hi)).sum())}/{len(sel)} (expect ~1/2), below {hi:.0%}: "
                     f"{int((err <= hi).sum())}/{len(sel)} (expect ~3/4); beat the fixed Gaussian "
                     f"{int(beats.sum())}/{len(sel)} (band says {band['beats_fixed']:.0%})")
    inside = below = 0
    for r in rows:
        lo, hi = fitted["bands"][level_of(r["confidence"], fitted["thresholds"])]["width_error"]
        inside += lo <= abs(r["width_error"]) <= hi
        below += abs(r["width_error"]) <= hi
    lines.append(f"    all levels: in the band {inside}/{len(rows)} (expect ~1/2), below its upper end "
                 f"{below}/{len(rows)} (expect ~3/4)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "div2krk")
    ap.add_argument("--limit", type=int, default=30, help="DIV2KRK dev images 1..LIMIT per condition")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "napari-kernelgan" / "calibrate_confidence.json")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="text file for the report (also printed)")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"DIV2KRK not found at {args.data}", file=sys.stderr)
        return 2
    import torch

    start = time.perf_counter()
    results = run_all(cases(args.data, args.limit), args.cache, args.threads)
    rows = list(results.values())
    command = shlex.join(argv if argv is not None else sys.argv[1:])
    report = [f"Command: python benchmarks/calibrate_confidence.py {command}",
              f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
              f"Cases: DIV2KRK dev 1-{args.limit} (x2, x4, x2 with noise 10/255), generated fluorescence x2 and x4 "
              f"({MICRO_SIZE}x{MICRO_SIZE} HR, seeds {MICRO_SEEDS[0]}-{MICRO_SEEDS[-1]}, {MICRO_CASES} each); "
              f"auto with its defaults, seed 0; {sum(r['seconds'] for r in rows):.0f} s of estimation.",
              f"Rule: medium from the lowest confidence at and above which auto beats the fixed Gaussian on >= "
              f"{TRUSTED_RATE:.0%} of the cases; high from the lowest at and above which it does on >= "
              f"{HIGH_RATE:.0%} and the width error's upper quartile is <= {HIGH_WIDTH:.0%} (>= {MIN_CASES} cases "
              "at or above a threshold).", "",
              "Per condition (confidence quartiles; median width error; beats the fixed Gaussian):"]
    for cond in dict.fromkeys(r["condition"] for r in rows):
        c, err, beats = _arrays([r for r in rows if r["condition"] == cond])
        q = np.quantile(c, [0.25, 0.5, 0.75])
        report.append(f"  {cond}: {len(c)} cases, confidence {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f}; width error "
                      f"{np.median(err):.0%}; {int(beats.sum())}/{len(c)}")
    report += ["", "Two-fold cross-validation (fit on one half, bands checked on the other):"]
    for fit_fold, name in ((1, "A (fit odd images / odd seeds, check even)"), (0, "B (fit even, check odd)")):
        report.append(f"  fold {name}:")
        for scale, srows in by_scale(rows).items():
            fitted = fit_levels([r for r in srows if r["fold"] == fit_fold])
            report.append(f"   x{scale}: thresholds {fitted['thresholds']}; bands "
                          + json.dumps(fitted["bands"]))
            report += coverage(fitted, [r for r in srows if r["fold"] != fit_fold])
    values = {"levels": list(LEVELS), "scales": {s: fit_levels(srows) for s, srows in by_scale(rows).items()}}
    report += ["", "Fit on all cases (the record 'confidence'):"]
    for s, v in values["scales"].items():
        report.append(f"  x{s}: thresholds {v['thresholds']}; " + "; ".join(
            f"{n}: width error {b['width_error'][0]:.0%}–{b['width_error'][1]:.0%}, beats the fixed Gaussian "
            f"{b['beats_fixed']:.0%} ({b['cases']} cases)" for n, b in v["bands"].items()))
    if args.limit == 30:
        from napari_kernelgan.records import write_record

        path = write_record("confidence", values, script=__file__, inputs={
            "div2krk": f"{args.data.name}: lr_x2, lr_x4, gt_k_x2, gt_k_x4 of dev images 1-{args.limit}",
            "conditions": ["x2", "x4", "x2 noisy"],
            "noise": f"x2 noisy: Gaussian sigma {NOISE * 255:.0f}/255, numpy seed 1000 + image number",
            "microscopy": {"generator": "microscopy_benchmark.make_case(i, seed, (256, 256), scale), scale 2 and 4",
                           "seeds": list(MICRO_SEEDS), "cases_per_seed": MICRO_CASES},
            "estimator": "auto (defaults), seed 0", "folds": "odd / even image numbers and seeds"})
        report.append(f"record written: {path.name}")
    report.append(f"({time.perf_counter() - start:.0f} s)")
    emit("\n".join(report) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
