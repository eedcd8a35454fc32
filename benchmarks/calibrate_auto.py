"""Fit the ``auto`` estimator's combination by two-fold cross-validation on DIV2KRK dev 1–30.

Runs every member estimator once per image (×2 and ×4 LR, clean and with
Gaussian noise σ = 10/255; results cached, so refits are instant), then fits
the member prior weights, the bias correction ``Σ ← gain·Σ + offset·I`` and
the shrinkage towards the fixed Gaussian:

* fold A: fit on the odd-numbered images, measure on the even ones;
* fold B: fit on the even-numbered images, measure on the odd ones.

The held-out figures (every image measured by a fit that never saw it) are
what this script reports as the estimate of accuracy on unseen images; the
constants it prints last are the fit on all 30, to be copied into
``src/napari_kernelgan/estimators/auto.py``. The objective is the mean kernel
L1 at ×2 and ×4, clean and noisy, all weighted equally.

    python benchmarks/calibrate_auto.py --members learned,kernelnet,edges,spots
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
CONDITIONS = (("x2", 2, False), ("x4", 4, False), ("x2 noisy", 2, True))
NOISE = 10 / 255


def load(data: Path, scale: int, idx: int, noisy: bool) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    from napari_kernelgan.io import read_image

    lr = read_image(data / f"lr_x{scale}" / f"im_{idx}.png")[..., :3].astype(np.float32) / 255
    if noisy:  # the noise of each image is fixed by its number, so every run sees the same pixels
        lr = np.clip(lr + np.random.default_rng(1000 + idx).normal(0, NOISE, lr.shape), 0, 1).astype(np.float32)
    return lr, loadmat(data / f"gt_k_x{scale}" / f"kernel_{idx}.mat")["Kernel"]


def run_members(data: Path, members: list[str], ids: list[int], cache: Path, threads: int) -> dict:
    """{condition: {member: {idx: (k2 list, confidence, seconds)}}}, cached in ``cache``."""
    from napari_kernelgan import estimate_kernel
    from napari_kernelgan.errors import BadInputError

    store = json.loads(cache.read_text()) if cache.exists() else {}
    for (label, scale, noisy), m, i in itertools.product(CONDITIONS, members, ids):
        slot = store.setdefault(label, {}).setdefault(m, {})
        if str(i) in slot:
            continue
        lr, _ = load(data, scale, i, noisy)
        t = time.perf_counter()
        try:
            est = estimate_kernel(lr, scale, estimator=m, seed=0, threads=threads)
            slot[str(i)] = [est.kernel.tolist(), est.confidence, time.perf_counter() - t]
        except BadInputError as exc:
            slot[str(i)] = [None, None, time.perf_counter() - t, str(exc)]
        print(f"{label} {m} {i}: {slot[str(i)][2]:.2f} s", file=sys.stderr, flush=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(store))
        os.replace(tmp, cache)
    return store


class Problem:
    """Member covariances, confidences and truths for one condition, for fast refitting."""

    def __init__(self, store: dict, data: Path, label: str, scale: int, noisy: bool,
                 members: list[str], ids: list[int]) -> None:
        from napari_kernelgan.physics.metrics import second_moments

        self.scale, self.ids = scale, ids
        self.truth = {i: load(data, scale, i, noisy)[1] for i in ids}
        self.members = {i: [] for i in ids}
        for m in members:
            for i in ids:
                k, conf, *_ = store[label][m][str(i)]
                if k is not None:
                    self.members[i].append((m, second_moments(np.asarray(k)), 0.5 if conf is None else conf))

    def combine(self, i: int, weights: dict[str, float], gain: float, offset: float,
                scale_agree: float, shrink: float = 1.0) -> tuple[np.ndarray, float]:
        from napari_kernelgan.estimators import auto
        from napari_kernelgan.physics.kernels import constant_gaussian, gaussian_from_covariance

        mem = [(m, c, conf) for m, c, conf in self.members[i]
               if weights.get(m, 0) > 0 and conf >= auto.MIN_CONFIDENCE.get(m, 0.0)]
        if not mem:
            return constant_gaussian(2), 0.0
        w = [weights[m] * (auto.EPS + conf) for m, _, conf in mem]
        cov, spread = auto.combine_covariances([c for _, c, _ in mem], w)
        k = gaussian_from_covariance(auto.shrink_towards_prior(gain * cov + offset * np.eye(2), shrink), 13)
        return k, auto.confidence_from(spread, [conf for *_, conf in mem], w, len(mem), scale_agree)

    def errors(self, ids: list[int], weights: dict[str, float], gain: float, offset: float,
               shrink: float = 1.0, scale_agree: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
        from napari_kernelgan.physics.conventions import analytic_x4
        from napari_kernelgan.physics.metrics import kernel_l1

        errs, confs = [], []
        for i in ids:
            k, c = self.combine(i, weights, gain, offset, scale_agree, shrink)
            errs.append(kernel_l1(k if self.scale == 2 else analytic_x4(k), self.truth[i]))
            confs.append(c)
        return np.asarray(errs), np.asarray(confs)


def fit(problems: list[Problem], ids: list[int], members: list[str]) -> dict:
    """Coordinate search for member weights, then gain / offset, then shrinkage, minimising the mean L1
    over the conditions."""
    def cost(w: dict, g: float, o: float, sh: float) -> float:
        return float(np.mean([p.errors(ids, w, g, o, sh)[0].mean() for p in problems]))

    weights = dict.fromkeys(members, 1.0)
    gain, offset, shrink = 1.0, 0.0, 1.0
    best = cost(weights, gain, offset, shrink)
    for _ in range(2):
        for m in members:
            for v in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0):
                trial = {**weights, m: v}
                if not any(trial.values()):
                    continue
                c = cost(trial, gain, offset, shrink)
                if c < best - 1e-6:
                    best, weights = c, trial
        for g, o in itertools.product(np.arange(0.8, 1.41, 0.05), np.arange(-0.6, 1.21, 0.15)):
            c = cost(weights, float(g), float(o), shrink)
            if c < best - 1e-6:
                best, gain, offset = c, float(g), float(o)
        for sh in np.arange(0.5, 1.01, 0.05):
            c = cost(weights, gain, offset, float(sh))
            if c < best - 1e-6:
                best, shrink = c, float(sh)
    return {"weights": weights, "gain": round(gain, 3), "offset": round(offset, 3), "shrink": round(shrink, 3),
            "train_cost": best}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "div2krk")
    ap.add_argument("--members", default="learned,kernelnet,edges,spots")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "napari-kernelgan" / "calibrate_auto.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=30)
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"DIV2KRK not found at {args.data}", file=sys.stderr)
        return 2
    from napari_kernelgan.physics.conventions import analytic_x4
    from napari_kernelgan.physics.kernels import constant_gaussian
    from napari_kernelgan.physics.metrics import kernel_l1

    members = [m.strip() for m in args.members.split(",") if m.strip()]
    ids = list(range(1, args.limit + 1))
    store = run_members(args.data, members, ids, args.cache, args.threads)
    problems = [Problem(store, args.data, label, s, n, members, ids) for label, s, n in CONDITIONS]
    folds = {"A (fit odd, test even)": ([i for i in ids if i % 2], [i for i in ids if not i % 2]),
             "B (fit even, test odd)": ([i for i in ids if not i % 2], [i for i in ids if i % 2])}
    held: dict[str, dict[int, tuple[float, float]]] = {p_label: {} for p_label, *_ in CONDITIONS}
    for name, (train, test) in folds.items():
        f = fit(problems, train, members)
        print(f"fold {name}: {f}")
        for (label, *_), p in zip(CONDITIONS, problems):
            e, c = p.errors(test, f["weights"], f["gain"], f["offset"], f["shrink"])
            held[label].update({i: (float(ei), float(ci)) for i, ei, ci in zip(test, e, c)})
    print("\nheld-out (each image measured by the fold that did not fit on it):")
    for (label, scale, _), p in zip(CONDITIONS, problems):
        e = np.array([held[label][i][0] for i in ids])
        c = np.array([held[label][i][1] for i in ids])
        fixed = np.array([kernel_l1(constant_gaussian(scale), p.truth[i]) for i in ids])
        alone = {m: np.mean([kernel_l1(np.asarray(store[label][m][str(i)][0]) if scale == 2 else
                                       analytic_x4(np.asarray(store[label][m][str(i)][0])), p.truth[i])
                             for i in ids if store[label][m][str(i)][0] is not None]) for m in members}
        print(f"  {label}: auto L1 {e.mean():.3f} (fixed Gaussian {fixed.mean():.3f}; no worse on "
              f"{int((e <= fixed + 1e-9).sum())}/{len(ids)}); members alone "
              + ", ".join(f"{m} {v:.3f}" for m, v in alone.items())
              + f"; Spearman(confidence, L1) {spearman(c, e):+.2f}")
    full = fit(problems, ids, members)
    print(f"\nfit on all {len(ids)} (constants for auto.py): {full}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
