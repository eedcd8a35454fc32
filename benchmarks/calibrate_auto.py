"""Fit the ``auto`` estimator's combination by two-fold cross-validation on DIV2KRK dev 1–30 and on
generated microscopy.

Runs every member estimator once per case (results cached, so refits are
instant) on four conditions:

* DIV2KRK dev images ×2 and ×4 LR, and ×2 with Gaussian noise σ = 10/255 (fixed per image);
* ``microscopy x2``: generated noisy uint16 fluorescence (``synthetic.microscopy_case``: nuclei,
  puncta, filaments, mixed; 20–1500 photons) from seeds 10–13, which
  ``benchmarks/microscopy_benchmark.py`` does not use by default (it reports seed 0, and 1–2 as
  unseen stacks).

Then it fits the prior weights of the members that read the blur indirectly
(``learned``, ``kernelnet``, ``edges``), the bias correction ``Σ ← gain·Σ + offset·I``,
the shrinkage towards the fixed Gaussian, the confidence below which that
shrinkage grows (``full_trust``) and the confidence gates of ``spots`` and ``lines``
(direct measurements, which only the microscopy condition triggers), all through ``auto.combine_members`` (the rule
``auto`` itself runs):

* fold A: fit on the odd-numbered DIV2KRK images and odd seeds, measure on the others;
* fold B: the other way round.

The held-out figures (every case measured by a fit that never saw it) are the
estimate of accuracy on unseen images; the constants printed last are the fit
on everything, which the script writes to the record ``auto``
(``src/napari_kernelgan/records/auto.json``, loaded by ``estimators/auto.py``)
when it ran on the full inputs (the default members, ``--limit 30``).
The objective is the mean kernel L1 of the four conditions, weighted equally.

    python benchmarks/calibrate_auto.py --members learned,kernelnet,edges,spots,lines
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from _report import emit, save_cache  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
NOISE = 10 / 255
MICRO_SEEDS = (10, 11, 12, 13)
MICRO_KINDS = ("nuclei", "puncta", "filaments", "mixed")
DEFAULT_MEMBERS = "learned,kernelnet,edges,spots,lines"
# Where the coordinate search starts the gates of the direct measurements (the grid below is searched from here).
START_GATES = {"spots": 0.3, "lines": 0.1}


@dataclass
class Condition:
    label: str
    scale: int
    ids: list[int]
    load: Callable[[int], tuple[np.ndarray, np.ndarray]]   # id -> (LR image, true ×scale kernel)
    fold_of: Callable[[int], int]                           # id -> 0 or 1


def div2krk_condition(data: Path, label: str, scale: int, noisy: bool, limit: int) -> Condition:
    def load(idx: int) -> tuple[np.ndarray, np.ndarray]:
        from scipy.io import loadmat

        from napari_kernelgan.io import read_image

        lr = read_image(data / f"lr_x{scale}" / f"im_{idx}.png")[..., :3].astype(np.float32) / 255
        if noisy:  # the noise of each image is fixed by its number, so every run sees the same pixels
            lr = np.clip(lr + np.random.default_rng(1000 + idx).normal(0, NOISE, lr.shape), 0, 1).astype(np.float32)
        return lr, loadmat(data / f"gt_k_x{scale}" / f"kernel_{idx}.mat")["Kernel"]

    return Condition(label, scale, list(range(1, limit + 1)), load, lambda i: i % 2)


def microscopy_condition() -> Condition:
    def load(idx: int) -> tuple[np.ndarray, np.ndarray]:
        from napari_kernelgan.synthetic import microscopy_case

        seed, i = divmod(idx, 100)
        case = microscopy_case(seed * 1000 + i, shape=(256, 256), scale=2, kind=MICRO_KINDS[i % 4])
        return case.lr, case.kernel_x2

    ids = [s * 100 + i for s in MICRO_SEEDS for i in range(12)]
    return Condition("microscopy x2", 2, ids, load, lambda idx: (idx // 100) % 2)


def run_members(conditions: list[Condition], members: list[str], cache: Path, threads: int) -> dict:
    """{condition: {member: {id: (k2 list, confidence, seconds)}}}, cached in ``cache``."""
    from napari_kernelgan import estimate_kernel
    from napari_kernelgan.errors import BadInputError

    store = json.loads(cache.read_text()) if cache.exists() else {}
    for cond in conditions:
        for m, i in itertools.product(members, cond.ids):
            slot = store.setdefault(cond.label, {}).setdefault(m, {})
            if str(i) in slot:
                continue
            lr, _ = cond.load(i)
            t = time.perf_counter()
            try:
                est = estimate_kernel(lr, cond.scale, estimator=m, seed=0, threads=threads)
                slot[str(i)] = [est.kernel.tolist(), est.confidence, time.perf_counter() - t]
            except BadInputError as exc:
                slot[str(i)] = [None, None, time.perf_counter() - t, str(exc)]
            print(f"{cond.label} {m} {i}: {slot[str(i)][2]:.2f} s", file=sys.stderr, flush=True)
            save_cache(cache, store)
    return store


class Problem:
    """Member covariances, confidences and truths for one condition, for fast refitting."""

    def __init__(self, store: dict, cond: Condition, members: list[str]) -> None:
        from napari_kernelgan.estimators.auto import _photon_limited
        from napari_kernelgan.imaging import prepare_image
        from napari_kernelgan.physics.metrics import second_moments

        self.cond, self.scale, self.ids = cond, cond.scale, cond.ids
        self.truth, self.photon_limited = {}, {}
        for i in self.ids:
            lr, self.truth[i] = cond.load(i)
            self.photon_limited[i] = _photon_limited(prepare_image(lr).data)  # as auto sees the image
        self.members = {i: [] for i in self.ids}
        for m in members:
            for i in self.ids:
                k, conf, *_ = store[cond.label][m][str(i)]
                if k is not None:
                    self.members[i].append((m, second_moments(np.asarray(k)), 0.5 if conf is None else conf))

    def fold(self, which: int | None, fit: bool) -> list[int]:
        """The ids fold ``which`` fits on (``fit``) or measures; ``None``: all."""
        if which is None:
            return self.ids
        return [i for i in self.ids if (self.cond.fold_of(i) == which) == fit]

    def combine(self, i: int, params: dict) -> tuple[np.ndarray, float]:
        from napari_kernelgan.estimators import auto
        from napari_kernelgan.physics.kernels import constant_gaussian, gaussian_from_covariance

        cov, conf, _ = auto.combine_members(self.members[i], photon_limited=self.photon_limited[i], **params)
        return (constant_gaussian(2) if cov is None else gaussian_from_covariance(cov, 13)), conf

    def errors(self, ids: list[int], params: dict) -> tuple[np.ndarray, np.ndarray]:
        from napari_kernelgan.physics.conventions import analytic_x4
        from napari_kernelgan.physics.metrics import kernel_l1

        errs, confs = [], []
        for i in ids:
            k, c = self.combine(i, params)
            errs.append(kernel_l1(k if self.scale == 2 else analytic_x4(k), self.truth[i]))
            confs.append(c)
        return np.asarray(errs), np.asarray(confs)


GRIDS = {"gain_offset": list(itertools.product(np.arange(0.8, 1.41, 0.05), np.arange(-0.6, 1.21, 0.15))),
         "shrink": list(np.arange(0.5, 1.01, 0.05)),
         "full_trust": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
         # Below 0.1 ``lines`` would decide on several noisy photographs (dev images 16, 21 and 22 with
         # σ = 10/255 reach 0.08): a margin the objective alone does not ask for.
         "gate": [0.1, 0.15, 0.2, 0.3, 0.4]}


def fit(problems: list[Problem], which: int | None, members: list[str]) -> dict:
    """Coordinate search for member weights, then gain / offset, then shrinkage and the confidence below
    which it grows, minimising the mean L1 over the conditions. Returns ``combine_members`` keywords."""
    from napari_kernelgan.estimators import auto

    ids = [p.fold(which, fit=True) for p in problems]

    def cost(params: dict) -> float:
        return float(np.mean([p.errors(i, params)[0].mean() for p, i in zip(problems, ids)]))

    searched = [m for m in members if m not in auto.DECISIVE]
    weights = {m: (auto.DECISIVE_WEIGHT if m in auto.DECISIVE else 1.0) for m in members}
    params = {"weights": weights, "gates": dict(START_GATES), "gain": 1.0, "offset": 0.0, "shrink": 1.0,
              "full_trust": 0.0}
    best = cost(params)

    def consider(trial: dict) -> None:
        nonlocal best, params
        c = cost(trial)
        if c < best - 1e-6:
            best, params = c, trial

    for _ in range(2):
        for m in searched:
            for v in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0):
                trial = {**params, "weights": {**params["weights"], m: v}}
                if any(trial["weights"].values()):
                    consider(trial)
        for g, o in GRIDS["gain_offset"]:
            consider({**params, "gain": float(g), "offset": float(o)})
        for sh in GRIDS["shrink"]:
            consider({**params, "shrink": float(sh)})
        for ft in GRIDS["full_trust"]:
            consider({**params, "full_trust": float(ft)})
        for m in params["gates"]:
            for v in GRIDS["gate"]:
                consider({**params, "gates": {**params["gates"], m: v}})
    return {**{k: (round(v, 3) if isinstance(v, float) else v) for k, v in params.items()}, "train_cost": best}


def record_of(full: dict) -> dict:
    """The record ``auto`` from a fit: the fitted weights of the indirect members, the gates, the bias
    correction and the shrinkage (the direct measurements' weight is a design choice in auto.py)."""
    from napari_kernelgan.estimators import auto

    return {"weights": {m: float(v) for m, v in full["weights"].items() if m not in auto.DECISIVE},
            "gates": {m: float(v) for m, v in full["gates"].items()},
            **{k: float(full[k]) for k in ("gain", "offset", "shrink", "full_trust")}}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "div2krk")
    ap.add_argument("--members", default=DEFAULT_MEMBERS)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "napari-kernelgan" / "calibrate_auto.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--out", type=Path, default=None, help="text file for the report (also printed)")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"DIV2KRK not found at {args.data}", file=sys.stderr)
        return 2
    from napari_kernelgan.physics.conventions import analytic_x4
    from napari_kernelgan.physics.kernels import constant_gaussian
    from napari_kernelgan.physics.metrics import kernel_l1
    from napari_kernelgan.records import write_record

    members = [m.strip() for m in args.members.split(",") if m.strip()]
    conditions = [div2krk_condition(args.data, "x2", 2, False, args.limit),
                  div2krk_condition(args.data, "x4", 4, False, args.limit),
                  div2krk_condition(args.data, "x2 noisy", 2, True, args.limit),
                  microscopy_condition()]
    store = run_members(conditions, members, args.cache, args.threads)
    problems = [Problem(store, c, members) for c in conditions]
    held: dict[str, dict[int, tuple[float, float]]] = {c.label: {} for c in conditions}
    import platform

    import torch

    report = [f"Command: python benchmarks/calibrate_auto.py {' '.join(argv if argv is not None else sys.argv[1:])}",
              f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}", ""]

    def say(line: str) -> None:
        report.append(line)

    for which, name in ((1, "A (fit odd, test even)"), (0, "B (fit even, test odd)")):
        f = fit(problems, which, members)
        say(f"fold {name}: {f}")
        params = {k: v for k, v in f.items() if k != "train_cost"}
        for p in problems:
            test = p.fold(which, fit=False)
            e, c = p.errors(test, params)
            held[p.cond.label].update({i: (float(ei), float(ci)) for i, ei, ci in zip(test, e, c)})
    say("\nheld-out (each case measured by the fold that did not fit on it):")
    for p in problems:
        label, scale, ids = p.cond.label, p.scale, p.ids
        e = np.array([held[label][i][0] for i in ids])
        c = np.array([held[label][i][1] for i in ids])
        fixed = np.array([kernel_l1(constant_gaussian(scale), p.truth[i]) for i in ids])
        alone = {m: np.mean([kernel_l1(np.asarray(store[label][m][str(i)][0]) if scale == 2 else
                                       analytic_x4(np.asarray(store[label][m][str(i)][0])), p.truth[i])
                             for i in ids if store[label][m][str(i)][0] is not None]) for m in members}
        say(f"  {label}: auto L1 {e.mean():.3f} (fixed Gaussian {fixed.mean():.3f}, ratio "
              f"{e.mean() / fixed.mean():.2f}; no worse on {int((e <= fixed + 1e-9).sum())}/{len(ids)}); "
              "members alone " + ", ".join(f"{m} {v:.3f}" for m, v in alone.items())
              + f"; Spearman(confidence, L1) {spearman(c, e):+.2f}")
    full = fit(problems, None, members)
    say(f"\nfit on all (constants for auto.py): {full}")
    if members == DEFAULT_MEMBERS.split(",") and args.limit == 30:
        path = write_record("auto", record_of(full), script=__file__, inputs={
            "div2krk": f"{args.data.name}: lr_x2, lr_x4 and gt_k_x2, gt_k_x4 of dev images 1-{args.limit}",
            "conditions": [c.label for c in conditions],
            "noise": f"x2 noisy: Gaussian sigma {NOISE * 255:.0f}/255, numpy seed 1000 + image number",
            "microscopy": {"generator": "synthetic.microscopy_case(seed * 1000 + i, shape=(256, 256), scale=2)",
                           "seeds": list(MICRO_SEEDS), "cases_per_seed": 12, "kinds": list(MICRO_KINDS)},
            "members": members, "estimator_seed": 0,
            "folds": "A: fit odd images / odd seeds; B: even; record: fit on all"},
            notes="Member weights of spots and lines are auto.DECISIVE_WEIGHT (a design choice, not fitted).")
        say(f"record written: {path.name}")
    else:
        say("record not written (only a run on the default members and --limit 30 writes it)")
    emit("\n".join(report) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
