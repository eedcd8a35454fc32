"""Fit the confidence of ``kernelgan`` and ``meta`` by two-fold cross-validation on DIV2KRK dev images.

Each estimator runs once per image (results cached, so refits are instant) on the centre
``--crop`` × ``--crop`` pixels of the ×2 LR image: ``kernelgan`` with its ``fast`` preset (100
steps), ``meta`` with its 200 adaptation steps and no D-map. Every estimate keeps what its
confidence is computed from (``extras["spread"]``: the log-Euclidean distance of its covariance to
the learned and sharp-edge estimates; ``extras["reference_confidence"]``: the learned network's own
word), its kernel L1 to the true kernel and the fixed Gaussian's L1.

The confidence ``own · sigmoid(offset − slope · spread)`` (``estimators/_gan/confidence.py``) is
fitted by maximum likelihood as the probability that the estimate beats the fixed Gaussian:

* fold A: fit on the odd-numbered images, measure on the even ones;
* fold B: the other way round.

Held out (every image scored by a fit that never saw it) it reports the Spearman correlation of
confidence with kernel L1 (negative: more confidence, smaller error), and how well a confidence
under 0.3 flags the estimates worse than the fixed Gaussian. The constants fitted on every image
are written to the records ``kernelgan`` and ``meta``, which the estimators load.

    python benchmarks/calibrate_kernelgan.py --limit 40 --out docs/calibration_kernelgan.txt
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
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


def run_cases(data: Path, ids: list[int], crop: int, cache: Path, threads: int) -> dict:
    """{method: {id: {l1, fixed_l1, spread, own, seconds}}}, cached in ``cache`` (keyed by the crop size)."""
    import napari_kernelgan as nk
    from napari_kernelgan.estimators._gan import confidence as conf_module
    from napari_kernelgan.physics import constant_gaussian, kernel_l1

    try:
        conf_module.constants("kernelgan")
        conf_module.constants("meta")
    except RuntimeError:  # the records are what this script writes: any constants do while collecting
        conf_module.constants = lambda name: (0.0, 0.0)
    store = json.loads(cache.read_text()) if cache.exists() else {}
    key = f"crop{crop}"
    for method, options in METHODS.items():
        done = store.setdefault(key, {}).setdefault(method, {})
        for idx in ids:
            if str(idx) in done:
                continue
            lr, truth = load_case(data, idx, crop)
            t0 = time.perf_counter()
            est = nk.estimate_kernel(lr, 2, estimator=method, seed=0, threads=threads, **options)
            done[str(idx)] = {"l1": kernel_l1(est.kernel, truth), "fixed_l1": kernel_l1(constant_gaussian(2), truth),
                              "spread": float(est.extras["spread"]), "own": float(est.extras["reference_confidence"]),
                              "seconds": time.perf_counter() - t0}
            print(f"{method} {idx}: L1 {done[str(idx)]['l1']:.3f} (fixed {done[str(idx)]['fixed_l1']:.3f}), "
                  f"spread {done[str(idx)]['spread']:.2f}, {done[str(idx)]['seconds']:.1f} s", flush=True)
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(".tmp")
            tmp.write_text(json.dumps(store))
            os.replace(tmp, cache)
    return store[key]


def predict(params: np.ndarray, spread: np.ndarray, own: np.ndarray) -> np.ndarray:
    from napari_kernelgan.estimators._gan.confidence import confidence_from

    return np.array([confidence_from(s, o, float(params[0]), float(params[1])) for s, o in zip(spread, own)])


def fit(spread: np.ndarray, own: np.ndarray, better: np.ndarray) -> np.ndarray:
    """(offset, slope ≥ 0) maximising the likelihood of ``better`` under ``own · sigmoid(offset − slope · spread)``."""
    def nll(params: np.ndarray) -> float:
        p = np.clip(predict(params, spread, own), 1e-6, 1 - 1e-6)
        return -float(np.sum(better * np.log(p) + (1 - better) * np.log(1 - p)))

    best = None
    for start in ([2.0, 2.0], [0.0, 0.5], [4.0, 8.0]):
        res = optimize.minimize(nll, np.array(start), bounds=[(-10, 20), (0, 50)], method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    return best.x


def report_method(method: str, rows: dict) -> tuple[list[str], np.ndarray]:
    ids = np.array(sorted(int(i) for i in rows))
    col = lambda name: np.array([rows[str(i)][name] for i in ids])  # noqa: E731
    l1, fixed, spread, own = col("l1"), col("fixed_l1"), col("spread"), col("own")
    better = (l1 < fixed).astype(np.float64)
    held_out = np.zeros(len(ids))
    folds = []
    for fold in (1, 0):        # fit on odd ids, test on even; then the other way round
        train, test = ids % 2 == fold, ids % 2 != fold
        params = fit(spread[train], own[train], better[train])
        held_out[test] = predict(params, spread[test], own[test])
        folds.append(params)
    final = fit(spread, own, better)
    rho = stats.spearmanr(held_out, l1).statistic
    worse = better == 0
    flagged = held_out < FLAG
    lines = [
        f"## {method} ({len(ids)} images, mean {np.mean(col('seconds')):.1f} s each)",
        "",
        f"kernel L1 {l1.mean():.3f} (fixed Gaussian {fixed.mean():.3f}); worse than the fixed Gaussian on "
        f"{int(worse.sum())} of {len(ids)}",
        f"held-out Spearman(confidence, L1): {rho:+.2f}",
        f"held-out confidence < {FLAG}: {int(flagged.sum())} estimates, of which {int((flagged & worse).sum())} worse "
        f"than the fixed Gaussian; it flags {int((flagged & worse).sum())} of the {int(worse.sum())} worse ones",
        f"held-out mean confidence: {held_out[~worse].mean():.2f} where better, "
        f"{held_out[worse].mean() if worse.any() else math.nan:.2f} where worse",
        "fold constants (offset, slope): " + "; ".join(f"{p[0]:.3f}, {p[1]:.3f}" for p in folds),
        f"fitted on every image: offset {final[0]:.3f}, slope {final[1]:.3f}",
        "",
    ]
    return lines, final


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "div2krk")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "napari-kernelgan" / "calibrate_kernelgan.json")
    ap.add_argument("--limit", type=int, default=40, help="DIV2KRK images 1..limit")
    ap.add_argument("--crop", type=int, default=192, help="side of the centre crop of each LR image")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="text file for the report (also printed)")
    ap.add_argument("--no-write", action="store_true", help="report only; leave the records as they are")
    args = ap.parse_args()

    from napari_kernelgan.records import write_record

    ids = list(range(1, args.limit + 1))
    store = run_cases(args.data, ids, args.crop, args.cache, args.threads)
    report = [f"# Confidence of kernelgan and meta: DIV2KRK ×2 images 1–{args.limit}, centre {args.crop} px crops, "
              f"two-fold cross-validation (odd / even ids)", ""]
    for method, options in METHODS.items():
        lines, final = report_method(method, store[method])
        report += lines
        if not args.no_write:
            write_record(method, {"offset": round(float(final[0]), 4), "slope": round(float(final[1]), 4)},
                         script=__file__, inputs={"data": f"DIV2KRK lr_x2 images 1-{args.limit}",
                                                  "crop": f"centre {args.crop} px", "options": options, "seed": 0},
                         notes=f"confidence = own * sigmoid(offset - slope * spread); fitted as P(L1 < fixed "
                               f"Gaussian's L1); held out: {lines[4]}")
    emit("\n".join(report) + "\n", args.out)


if __name__ == "__main__":
    main()
