"""Fit the confidence of ``kernelgan`` and ``meta`` by two-fold cross-validation on DIV2KRK dev images.

Each estimator runs once per image (results cached, so refits are instant) on the centre
``--crop`` × ``--crop`` pixels of the ×2 LR image: ``kernelgan`` with its ``fast`` preset (100
steps), ``meta`` with its 200 adaptation steps and no D-map. The cache keeps each estimate's
covariance, the reference estimates' covariances (``extras["reference_covariances"]``), the learned
network's own confidence, its kernel L1 to the true kernel and the fixed Gaussian's L1.

The confidence ``min(1, own / 0.5) · sigmoid(offset − slope · distance)`` (``estimators/_gan/confidence.py``,
``distance``: log-Euclidean, kernel to learned estimate) is fitted by maximum likelihood, on both
estimators' estimates together (one record, ``kernelgan``, used by both), as the probability that the
kernel's L1 is below the fixed Gaussian's mean L1 on the fitting images:

* fold A: fit on the odd-numbered images, measure on the even ones;
* fold B: the other way round.

Held out (every image scored by a fit that never saw it) it reports, per estimator, the Spearman
correlation of confidence with kernel L1 (negative: more confidence, smaller error), how well a
confidence under 0.3 flags the estimates worse than the fixed Gaussian on their own image, and the
same figures with the sharp-edge estimate as a second reference (not used: it ranks worse).

    python benchmarks/calibrate_kernelgan.py --limit 30 --out docs/calibration_kernelgan.txt
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import optimize, stats

from _report import emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
FLAG = 0.3
METHODS = {"kernelgan": {"preset": "fast"}, "meta": {"dmap": False}}


def load_case(data: Path, idx: int, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """(centre crop of the ×2 LR image in [0, 1], true ×2 kernel) of DIV2KRK image ``idx``."""
    from scipy.io import loadmat

    from napari_kernelgan.io import read_image

    lr = read_image(data / "lr_x2" / f"im_{idx}.png")[..., :3].astype(np.float32) / 255
    h, w = lr.shape[:2]
    top, left = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    return lr[top:top + crop, left:left + crop], loadmat(data / "gt_k_x2" / f"kernel_{idx}.mat")["Kernel"]


def run_cases(data: Path, ids: list[int], crop: int, cache: Path, threads: int, methods: list[str]) -> dict:
    """{method: {id: {l1, fixed_l1, spread, own, cov, refs, seconds}}}, cached per method beside ``cache``
    (keyed by the crop size), so two methods can run in two processes."""
    import napari_kernelgan as nk
    from napari_kernelgan.estimators._gan import confidence as conf_module
    from napari_kernelgan.physics import constant_gaussian, kernel_l1
    from napari_kernelgan.physics.metrics import second_moments

    try:
        conf_module.constants()
    except RuntimeError:  # the records are what this script writes: any constants do while collecting
        conf_module.constants = lambda: (0.0, 0.0)
    out = {}
    key = f"crop{crop}"
    for method in methods:
        path = cache.with_name(f"{cache.stem}_{method}.json")
        store = json.loads(path.read_text()) if path.exists() else {}
        done = out[method] = store.setdefault(key, {})
        for idx in ids:
            if str(idx) in done:
                continue
            lr, truth = load_case(data, idx, crop)
            t0 = time.perf_counter()
            est = nk.estimate_kernel(lr, 2, estimator=method, seed=0, threads=threads, **METHODS[method])
            row = done[str(idx)] = {
                "l1": kernel_l1(est.kernel, truth), "fixed_l1": kernel_l1(constant_gaussian(2), truth),
                "spread": float(est.extras["spread"]), "own": float(est.extras["reference_confidence"]),
                "cov": second_moments(est.kernel).tolist(), "refs": est.extras["reference_covariances"],
                "seconds": time.perf_counter() - t0}
            print(f"{method} {idx}: L1 {row['l1']:.3f} (fixed {row['fixed_l1']:.3f}), spread {row['spread']:.2f}, "
                  f"{row['seconds']:.1f} s", flush=True)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(store))
            os.replace(tmp, path)
    return out


def features(rows: dict, references: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per image (sorted ids): the inputs of the confidence and the errors it should predict."""
    from napari_kernelgan.estimators._gan.confidence import References, spread_from

    ids = sorted(int(i) for i in rows)
    out: dict[str, list] = {"id": [], "l1": [], "fixed_l1": [], "spread": [], "own": [], "seconds": []}
    for i in ids:
        row = rows[str(i)]
        refs = References({k: np.array(row["refs"][k]) for k in references if k in row["refs"]}, row["own"])
        out["id"].append(i)
        out["spread"].append(spread_from(np.array(row["cov"]), refs))
        for key in ("l1", "fixed_l1", "own", "seconds"):
            out[key].append(row[key])
    return {k: np.array(v) for k, v in out.items()}


def predict(params: np.ndarray, f: dict[str, np.ndarray]) -> np.ndarray:
    from napari_kernelgan.estimators._gan.confidence import confidence_from

    return np.array([confidence_from(s, o, float(params[0]), float(params[1])) for s, o in zip(f["spread"], f["own"])])


def fit(f: dict[str, np.ndarray]) -> np.ndarray:
    """(offset, slope ≥ 0) maximising the likelihood of ``L1 < mean fixed-Gaussian L1`` over ``f``."""
    good = (f["l1"] < f["fixed_l1"].mean()).astype(np.float64)

    def nll(params: np.ndarray) -> float:
        p = np.clip(predict(params, f), 1e-6, 1 - 1e-6)
        return -float(np.sum(good * np.log(p) + (1 - good) * np.log(1 - p)))

    starts = ([2.0, 2.0], [0.0, 0.5], [4.0, 8.0])
    results = [optimize.minimize(nll, np.array(s), bounds=[(-10, 20), (0, 50)], method="L-BFGS-B") for s in starts]
    return min(results, key=lambda r: r.fun).x


def take(f: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in f.items()}


def evaluate(store: dict, methods: list[str], references: tuple[str, ...]) -> tuple[list[str], np.ndarray]:
    """Report lines of the cross-validation with ``references``, and the constants fitted on everything."""
    per = {m: features(store[m], references) for m in methods}
    both = {k: np.concatenate([per[m][k] for m in methods]) for k in per[methods[0]]}
    method_of = np.concatenate([[m] * len(per[m]["id"]) for m in methods])
    held_out = np.zeros(len(both["id"]))
    folds = []
    for fold in (1, 0):        # fit on odd ids, test on even; then the other way round
        train, test = both["id"] % 2 == fold, both["id"] % 2 != fold
        params = fit(take(both, train))
        held_out[test] = predict(params, take(both, test))
        folds.append(params)
    lines = [f"reference estimates: {', '.join(references)}; fold constants (offset, slope): "
             + "; ".join(f"{p[0]:.3f}, {p[1]:.3f}" for p in folds), ""]
    for m in methods:
        k = method_of == m
        l1, fixed, conf = both["l1"][k], both["fixed_l1"][k], held_out[k]
        worse, flagged = l1 >= fixed, conf < FLAG
        lines += [
            f"* {m} ({int(k.sum())} images, {both['seconds'][k].mean():.1f} s each): kernel L1 {l1.mean():.3f} "
            f"(fixed Gaussian {fixed.mean():.3f}), worse than the fixed Gaussian on {int(worse.sum())}",
            f"  held-out Spearman(confidence, L1) {stats.spearmanr(conf, l1).statistic:+.2f}; "
            f"confidence < {FLAG} on {int(flagged.sum())}, {int((flagged & worse).sum())} of them worse than the "
            f"fixed Gaussian (of {int(worse.sum())} worse); mean confidence {conf[~worse].mean():.2f} where better, "
            f"{conf[worse].mean() if worse.any() else math.nan:.2f} where worse",
        ]
    return lines + [""], fit(both)


def sample_lines(threads: int) -> list[str]:
    """The confidence on the bundled samples (known kernels), with each estimator's default options."""
    import napari_kernelgan as nk
    from napari_kernelgan.physics import constant_gaussian, kernel_l1
    from napari_kernelgan.physics.metrics import second_moments
    from napari_kernelgan.samples import SAMPLES

    lines = ["## The bundled samples (default options, seed 0)", "",
             "| sample | true σ (px) | estimator | σ (px) | kernel L1 | fixed Gaussian L1 | confidence |",
             "|---|---|---|---|---|---|---|"]
    for key in ("tissue", "astronaut", "fluorescence-noisy"):
        case = SAMPLES[key]
        lr, truth = case.lr(), case.kernel()
        rgb = {"rgb": True} if lr.ndim == 3 and lr.shape[-1] == 3 else {}
        for method, options in (("kernelgan", {}), ("meta", {"dmap": False})):
            est = nk.estimate_kernel(lr, 2, estimator=method, seed=0, threads=threads, **rgb, **options)
            sigma = np.sqrt(np.linalg.eigvalsh(second_moments(est.kernel)))[::-1]
            true_sigma = np.sqrt(np.linalg.eigvalsh(second_moments(truth)))[::-1]
            lines.append(f"| {key} | {true_sigma[0]:.2f} / {true_sigma[1]:.2f} | {method} | {sigma[0]:.2f} / "
                         f"{sigma[1]:.2f} | {kernel_l1(est.kernel, truth):.2f} | "
                         f"{kernel_l1(constant_gaussian(2), truth):.2f} | {est.confidence:.2f} |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "div2krk")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "napari-kernelgan" / "calibrate_kernelgan.json")
    ap.add_argument("--limit", type=int, default=30, help="DIV2KRK images 1..limit (the dev images)")
    ap.add_argument("--crop", type=int, default=192, help="side of the centre crop of each LR image")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="text file for the report (also printed)")
    ap.add_argument("--methods", default="kernelgan,meta", help="which estimators to run and fit")
    ap.add_argument("--no-write", action="store_true", help="report only; leave the records as they are")
    ap.add_argument("--no-samples", action="store_true", help="leave out the bundled samples' confidences")
    args = ap.parse_args()

    from napari_kernelgan.records import write_record

    ids = list(range(1, args.limit + 1))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    store = run_cases(args.data, ids, args.crop, args.cache, args.threads, methods)
    report = [f"# Confidence of kernelgan and meta: DIV2KRK ×2 images 1–{args.limit}, centre {args.crop} px crops, "
              f"two-fold cross-validation (odd / even ids), both estimators fitted together", "",
              f"Command: python benchmarks/calibrate_kernelgan.py {' '.join(sys.argv[1:])}",
              f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; estimates cached "
              f"in {args.cache.name.replace('.json', '_<estimator>.json')} (instant refits)", ""]
    lines, final = evaluate(store, methods, ("learned",))
    report += ["## Used: the learned estimate as the reference", ""] + lines
    report += [f"fitted on every image: offset {final[0]:.3f}, slope {final[1]:.3f}", ""]
    lines, _ = evaluate(store, methods, ("learned", "edges"))
    report += ["## Compared: the learned and sharp-edge estimates as references", ""] + lines
    if not args.no_write:
        write_record("kernelgan", {"offset": round(float(final[0]), 4), "slope": round(float(final[1]), 4)},
                     script=__file__, inputs={"data": f"DIV2KRK lr_x2 images 1-{args.limit}",
                                              "crop": f"centre {args.crop} px", "estimates": METHODS, "seed": 0},
                     notes="confidence = min(1, own / 0.5) * sigmoid(offset - slope * distance to the learned "
                           "estimate); fitted as P(L1 < mean fixed-Gaussian L1) on kernelgan and meta together")
    if not args.no_samples:   # with the constants just written
        report += sample_lines(args.threads)
    emit("\n".join(report) + "\n", args.out)


if __name__ == "__main__":
    main()
