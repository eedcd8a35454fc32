"""Fit ``auto``'s microscope mode (``estimators/_auto_optics.py``) by two-fold cross-validation.

Development cases only (never the REPORT images of ``benchmarks/optics_estimator_benchmark.py``):

* ``real_dev``: the DEVELOPMENT images of that benchmark (cell_microtubules, golgi_confocal) through its
  own case generator (widefield, NA 0.8–1.4, emission 0.50–0.60 µm, defocus 0–0.6 µm, in-focus FWHM
  2.0–2.6 HR px, 300 photons), plus the same draws imaged confocally (pinhole 1 AU);
* ``generated``: ``synthetic.microscopy_scene`` (nuclei, puncta, filaments, mixed; 256² HR) blurred with
  ``psf_2d`` of drawn optics (widefield or confocal, the same ranges) and imaged by
  ``synthetic.degrade_microscopy`` (uint16, 50–2000 photons, read noise 1–3 e⁻), seeds 20–27;
* ``optics_cases``: the real-optics benchmark's own generator (``_optics_cases.draw_cases``) on the
  DEVELOPMENT images, 6 rounds of its 7 families (in focus, defocused 0.3–0.6 µm, depth and spherical
  aberration, confocal, bead widefield and confocal), each family as often as in that benchmark's world:
  the outer FWHM is 2.0–2.6 HR px, so a strongly defocused PSF's spread is up to about twice the in-focus one.

Every member of ``auto``, the microscope network (``learned`` with ``family="optics"``, whose kernel the
rule may blend in) and the ``optics`` estimator's defocus fit (NA, λ, pixel size given) run once per case
(cached). The constants of the microscope rule are then searched on a grid through
``_auto_optics.microscope_kernel`` (the rule ``auto`` itself runs), minimising the mean kernel L1 against
the true PSF on a 41×41 support, of the worse modality (widefield or confocal: the share of each among a
user's images is unknown, so the unknown-modality hedge must not sacrifice either), plus :data:`HINGE` times
the mean excess over the fixed Gaussian's L1 (a kernel worse than the fixed Gaussian must be rare), averaged
over two conditions (no hints; NA, emission and pixel size given):

* fold A: fit on cell_microtubules and the even seeds, measure on golgi_confocal and the odd seeds (the
  optics cases by image);
* fold B: the other way round.

The held-out figures go to ``docs/calibration_auto_optics.txt``; the fit on all cases is written to the
record ``auto_optics`` (``src/napari_kernelgan/records/auto_optics.json``). ``--without-network`` gives the
held-out figures of the same search without the microscope network's share (the baseline; no record).

    python benchmarks/calibrate_auto_optics.py --out docs/calibration_auto_optics.txt
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from _report import emit, save_cache  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
SIDE = 41
MEMBERS = ("learned", "kernelnet", "spots", "lines")
KINDS = ("nuclei", "puncta", "filaments", "mixed")
GEN_SEEDS = tuple(range(20, 28))
DEV_PER_IMAGE = 12
# The real-optics generator's families (in focus, defocused, aberrated, confocal, bead) on the DEVELOPMENT
# images, as often as the world of that benchmark has them: every family once per image and round.
OPTICS_ROUNDS, OPTICS_SEED = 6, 3030


def real_cases() -> list[dict]:
    """The optics benchmark's DEVELOPMENT cases (its own generator, widefield) and the same draws confocal."""
    import optics_estimator_benchmark as bench

    out = []
    for c in bench.cases(bench.DEVELOPMENT, DEV_PER_IMAGE, seed=101):
        fold = bench.DEVELOPMENT.index(c["image"])
        out.append({**c, "source": "real_dev", "modality": "widefield", "fold": fold})
        out.append({**c, "source": "real_dev", "modality": "confocal", "fold": fold, "seed": c["seed"] + 1})
    return out


def generated_cases() -> list[dict]:
    """Generated fluorescence with physical PSFs, one case per scene kind and seed."""
    out = []
    for seed in GEN_SEEDS:
        rng = np.random.default_rng([seed, 4242])
        for kind in KINDS:
            na = float(rng.choice([0.8, 1.0, 1.2, 1.4]))
            lam = float(rng.uniform(0.50, 0.60))
            fwhm = float(rng.uniform(2.0, 2.6))
            out.append({"source": "generated", "image": kind, "modality": str(rng.choice(["widefield", "confocal"])),
                        "na": na, "wavelength_um": round(lam, 3), "defocus_um": round(float(rng.uniform(0, 0.6)), 2),
                        "pixel_um": round(2 * 0.51 * lam / (na * fwhm), 4), "fwhm": fwhm,
                        "photons": float(np.exp(rng.uniform(np.log(50), np.log(2000)))),
                        "read_noise": float(rng.uniform(1, 3)), "seed": int(rng.integers(1 << 30)),
                        "fold": seed % 2})
    return out


def optics_cases() -> list[dict]:
    """``_optics_cases.draw_cases`` on the DEVELOPMENT images: widefield in focus, defocused 0.3–0.6 µm,
    aberrated (depth, spherical), confocal and bead cases, the outer FWHM 2.0–2.6 HR px (so up to about twice
    the in-focus one where defocused), uint16 with offset and gain."""
    import _optics_cases as oc

    out = []
    for spec in oc.draw_cases(oc.DEVELOPMENT, rounds=OPTICS_ROUNDS, seed=OPTICS_SEED):
        out.append({"source": "optics_cases", "image": spec.image, "family": spec.family,
                    "modality": spec.optics.get("modality", "widefield"), "na": spec.optics["na"],
                    "wavelength_um": spec.optics["wavelength_um"], "pixel_um": round(spec.lr_pixel_um, 5),
                    "seed": spec.seed, "fold": oc.DEVELOPMENT.index(spec.image), "spec": spec})
    return out


_BUILT: dict[int, object] = {}


def _built(case: dict):
    import _optics_cases as oc

    if case["seed"] not in _BUILT:
        _BUILT.clear()   # one at a time: a built case holds its PSFs and images
        _BUILT[case["seed"]] = oc.build(case["spec"])
    return _BUILT[case["seed"]]


def truth_of(case: dict) -> np.ndarray:
    from napari_kernelgan.physics import Optics, psf_2d

    if case["source"] == "optics_cases":
        return _built(case).truth_41
    return psf_2d(Optics(modality=case["modality"], na=case["na"], wavelength_um=case["wavelength_um"],
                         defocus_um=case["defocus_um"]), case["pixel_um"] / 2, SIDE)


def image_of(case: dict) -> np.ndarray:
    from napari_kernelgan.physics import degrade

    if case["source"] == "optics_cases":
        return _built(case).lr
    truth = truth_of(case)
    if case["source"] == "real_dev":
        import optics_estimator_benchmark as bench

        lr = degrade(bench.load(case["image"]), truth, 2)
        rng = np.random.default_rng(case["seed"])
        return np.clip(rng.poisson(np.clip(lr, 0, None) * bench.PHOTONS) / bench.PHOTONS, 0, 1).astype(np.float32)
    from napari_kernelgan.synthetic import degrade_microscopy, microscopy_scene

    hr = microscopy_scene((256, 256), case["seed"], kind=case["image"])
    return degrade_microscopy(hr, truth, 2, case["seed"] + 1, photons=case["photons"], read_noise=case["read_noise"])


def measure(case: dict) -> dict:
    """What ``auto``'s microscope mode reads from one case: each member's covariance and confidence, the
    shot-noise test, and the ``optics`` estimator's defocus fit with the optics given."""
    from napari_kernelgan import estimate_kernel
    from napari_kernelgan.errors import BadInputError
    from napari_kernelgan.estimators.auto import _photon_limited
    from napari_kernelgan.imaging import prepare_image
    from napari_kernelgan.physics.metrics import second_moments

    lr = image_of(case)
    out: dict = {"members": {}, "photon_limited": _photon_limited(prepare_image(lr).data)}
    for m in MEMBERS:
        t = time.perf_counter()
        try:
            est = estimate_kernel(lr, 2, estimator=m, seed=0, threads=1)
        except BadInputError:
            continue
        out["members"][m] = [second_moments(est.kernel).tolist(), est.confidence, time.perf_counter() - t]
    out["learned_optics"] = learned_optics(lr)
    est = estimate_kernel(lr, 2, estimator="optics", modality=case["modality"], na=case["na"],
                          wavelength_um=case["wavelength_um"], pixel_um=case["pixel_um"], seed=0, threads=1)
    fit = est.options["optics_fit"]
    out["optics"] = {"defocus_um": fit.get("defocus_um"), "confidence": est.confidence,
                     "fallback": bool(fit.get("fallback", False)), "contradiction": bool(fit.get("contradiction"))}
    return out


def learned_optics(lr: np.ndarray) -> list:
    """``learned`` with ``family="optics"`` (the microscope network): its best-Gaussian covariance, confidence
    and kernel (41×41, so that rules using its shape can be scored)."""
    from napari_kernelgan import estimate_kernel
    from napari_kernelgan.physics import pad_to

    est = estimate_kernel(lr, 2, estimator="learned", family="optics", seed=0, threads=1)
    k = pad_to(est.kernel, SIDE)
    return [np.asarray(est.extras["covariance"]).tolist(), est.confidence, np.round(k / k.sum(), 7).tolist()]


def key(case: dict) -> str:
    return f"{case['source']}/{case['image']}/{case['modality']}/{case['seed']}"


def collect(cases: list[dict], cache: Path) -> dict:
    store = json.loads(cache.read_text()) if cache.exists() else {}
    for c in cases:
        if key(c) in store:
            if "learned_optics" not in store[key(c)]:   # caches made before the microscope network was read
                store[key(c)]["learned_optics"] = learned_optics(image_of(c))
                save_cache(cache, store)
            continue
        t = time.perf_counter()
        store[key(c)] = measure(c)
        print(f"{key(c)}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        save_cache(cache, store)
    return store


class Case:
    """One case's readings, ready for fast refitting."""

    def __init__(self, case: dict, measured: dict) -> None:
        from napari_kernelgan.estimators import _auto_optics, auto
        from napari_kernelgan.physics import constant_gaussian, kernel_l1, pad_to

        self.case, self.truth, self.fold = case, truth_of(case), case["fold"]
        results = [(m, np.asarray(v[0]), 0.5 if v[1] is None else float(v[1])) for m, v in measured["members"].items()]
        self.photon_limited = bool(measured["photon_limited"])
        # the reading: the members' combination as auto makes it, before any Gaussian correction
        self.cov, self.confidence, info = auto.combine_members(results, photon_limited=self.photon_limited,
                                                               **auto.MICROSCOPE_READING)
        self.direct = bool(set(info["used"]) & set(auto.DECISIVE))
        self.agreement = auto.agreement_of(info)
        self.today = auto.combine_members(results, photon_limited=self.photon_limited)[0]
        self.fixed = kernel_l1(pad_to(constant_gaussian(2), SIDE), self.truth)
        self.memo: dict[tuple, float] = {}
        fit = measured["optics"]
        self.defocus_fit = None if fit["fallback"] or fit["contradiction"] else fit["defocus_um"]
        # the microscope network's kernel (auto runs it where its member is one of the members)
        self.shape = np.asarray(measured["learned_optics"][2]) if "learned" in measured["members"] else None
        self.hints = {"none": _auto_optics.Hints(),
                      "optics": _auto_optics.Hints(na=case["na"], wavelength_um=case["wavelength_um"],
                                                   pixel_um=case["pixel_um"])}

    def ratio(self) -> float:
        vals = np.linalg.eigvalsh(self.cov)
        return float(np.sqrt(vals[1] / vals[0]))

    def l1(self, condition: str, params: dict) -> float:
        """Kernel L1 of the rule with ``params`` under ``condition``, memoised on the constants it reads."""
        kind = "direct" if self.direct else "indirect"
        used = (*SHARED, f"gain_{kind}", *(NO_HINTS + (f"weight_{kind}",) if condition == "none" else WITH_OPTICS))
        k = (condition, *(params.get(name) for name in used))
        if k not in self.memo:
            self.memo[k] = self._l1(condition, params)
        return self.memo[k]

    def _l1(self, condition: str, params: dict) -> float:
        from napari_kernelgan.estimators import _auto_optics
        from napari_kernelgan.physics import kernel_l1, pad_to

        k, _ = _auto_optics.microscope_kernel(self.cov, self.hints[condition], direct=self.direct,
                                              agreement=self.agreement, defocus_fit=self.defocus_fit,
                                              shape=self.shape, params=params)
        return kernel_l1(pad_to(k, SIDE), self.truth)


# The sources the record's constants are fitted on. ``--optics-cases`` adds the real-optics generator's cases
# to the fit (held-out figures only): see docs/calibration_auto_optics.txt.
FIT_SOURCES = ("real_dev", "generated")
# The constants each condition's rule reads (besides its kind's gain and, without hints, its kind's weight).
SHARED = ("blend", "defocus_per_excess_um", "defocus_spread_um", "isotropic_ratio", "shape_share",
          "shape_share_per_excess")
NO_HINTS = ("prior_fwhm", "defocus_nominal_um")
WITH_OPTICS = ("defocus_known_um", "defocus_trust")
# Weight of the mean excess over the fixed Gaussian's L1 in the objective (a kernel worse than the fixed
# Gaussian is what a user notices): 0 for the record; ``--hinge`` sets it for a held-out comparison.
HINGE = 0.0
CONDITIONS = ("none", "optics")   # no hints; NA, emission and pixel size given (modality not)
GRIDS = {"blend": [0.0, 0.25, 0.5, 0.75, 1.0],
         "prior_fwhm": [round(v, 2) for v in np.arange(1.8, 3.01, 0.1)],
         "weight_direct": [0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0],
         "weight_indirect": [0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0],
         "gain_direct": [round(v, 2) for v in np.arange(1.6, 3.01, 0.2)],
         "gain_indirect": [round(v, 2) for v in np.arange(1.6, 3.01, 0.2)],
         "defocus_nominal_um": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
         "defocus_known_um": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
         "defocus_trust": [0.0, 0.25, 0.5, 0.75, 1.0],
         "defocus_per_excess_um": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
         "defocus_spread_um": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
         "shape_share_per_excess": [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0]}
# The microscope network's share grows with its excess width (shape_share_per_excess, searched only with
# --with-network; 0 in the record: see docs/estimators.md for why); no constant share (shape_share 0), which
# would stake the kernel on the network wherever it runs.
START = {"blend": 0.5, "prior_fwhm": 2.3, "weight_direct": 0.5, "weight_indirect": 0.2, "gain_direct": 2.4,
         "gain_indirect": 2.4, "defocus_nominal_um": 0.2, "defocus_known_um": 0.3, "defocus_trust": 0.0,
         "defocus_per_excess_um": 0.0, "defocus_spread_um": 0.0, "shape_share": 0.0, "shape_share_per_excess": 0.0}


def fit(cases: list[Case], which: int | None, network: bool = False, sources: tuple[str, ...] = FIT_SOURCES,
        hinge: float = HINGE) -> dict:
    """Coordinate search (two rounds) of the microscope rule's constants on the cases of fold ``which``
    (``None``: all), minimising the mean over the two conditions of the worse modality's mean L1 (the share of
    widefield and confocal images a user has is unknown: the hedge must not sacrifice either); the isotropic
    ratio is the 95th percentile
    of the members' axis ratio on those (round) PSFs."""
    train = [c for c in cases if (which is None or c.fold == which) and c.case["source"] in sources]
    params = {**START, "isotropic_ratio": round(float(np.percentile([c.ratio() for c in train], 95)), 3)}
    memo: dict[tuple, float] = {}

    by_modality = [[c for c in train if c.case["modality"] == m] for m in ("widefield", "confocal")]

    def cost(p: dict) -> float:
        k = tuple(sorted(p.items()))
        if k not in memo:
            per = []
            for cond in CONDITIONS:
                errs = [[c.l1(cond, p) for c in group] for group in by_modality]
                excess = [max(0.0, e - c.fixed) for group, es in zip(by_modality, errs) for c, e in zip(group, es)]
                per.append(max(np.mean(es) for es in errs) + hinge * float(np.mean(excess)))
            memo[k] = float(np.mean(per))
        return memo[k]

    best = cost(params)
    for _ in range(2):
        for name, grid in GRIDS.items():
            if not network and name.startswith("shape_"):
                continue
            for v in grid:
                trial = {**params, name: v}
                c = cost(trial)
                if c < best - 1e-6:
                    best, params = c, trial
    return {**{k: float(v) for k, v in params.items()}, "train_cost": round(best, 4)}


def summary(label: str, cases: list[Case], errs: dict[str, list[float]]) -> str:
    from napari_kernelgan.physics import constant_gaussian, gaussian_from_covariance, kernel_l1, pad_to

    fixed = np.array([kernel_l1(pad_to(constant_gaussian(2), SIDE), c.truth) for c in cases])
    today = np.array([kernel_l1(pad_to(constant_gaussian(2) if c.today is None else
                                       gaussian_from_covariance(c.today, 13), SIDE), c.truth) for c in cases])
    parts = [f"  {label} ({len(cases)} cases): fixed Gaussian {fixed.mean():.3f}, Gaussian rule {today.mean():.3f}"]
    for cond, e in errs.items():
        e = np.asarray(e)
        parts.append(f"microscope rule, {cond} given {e.mean():.3f} (no worse than the fixed Gaussian on "
                     f"{int((e <= fixed + 1e-9).sum())}/{len(cases)}, worst excess {np.max(e - fixed):+.3f})")
    if len(cases) > 2:
        from scipy.stats import spearmanr

        conf = [c.confidence for c in cases]
        parts.append(f"Spearman(confidence, L1 without hints) {spearmanr(conf, errs['none']).statistic:+.2f}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                    / "napari-kernelgan" / "calibrate_auto_optics.json")
    ap.add_argument("--out", type=Path, default=None, help="text file for the report (also printed)")
    ap.add_argument("--with-network", action="store_true",
                    help="also search the microscope network's share (shape_share_per_excess)")
    ap.add_argument("--optics-cases", action="store_true", help="fit on the optics cases too")
    ap.add_argument("--hinge", type=float, default=HINGE, help="weight of the mean excess over the fixed Gaussian")
    args = ap.parse_args(argv)
    if not (ROOT.parent / "shared" / "data" / "real_dev").is_dir():
        print("real_dev images not found next to the repository (../shared/data/real_dev)", file=sys.stderr)
        return 2
    import torch

    from napari_kernelgan.records import write_record

    raw = real_cases() + generated_cases() + optics_cases()
    store = collect(raw, args.cache)
    cases = [Case(c, store[key(c)]) for c in raw]
    command = " ".join(argv if argv is not None else sys.argv[1:])
    report = [f"Command: python benchmarks/calibrate_auto_optics.py {command}",
              f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
              f"Cases: {len(cases)} ({sum(c.case['source'] == 'real_dev' for c in cases)} real_dev DEVELOPMENT, "
              f"{sum(c.case['source'] == 'generated' for c in cases)} generated, "
              f"{sum(c.case['source'] == 'optics_cases' for c in cases)} optics cases); photon-limited by the "
              f"shot-noise test: {sum(c.photon_limited for c in cases)}/{len(cases)}", ""]
    sources = FIT_SOURCES + (("optics_cases",) if args.optics_cases else ())
    held: dict[str, dict[int, float]] = {cond: {} for cond in CONDITIONS}
    for which, name in ((0, "A (fit cell_microtubules and even seeds, measure the rest)"),
                        (1, "B (fit golgi_confocal and odd seeds, measure the rest)")):
        f = fit(cases, which, network=args.with_network, sources=sources, hinge=args.hinge)
        report.append(f"fold {name}: {f}")
        params = {k: v for k, v in f.items() if k != "train_cost"}
        for i, c in enumerate(cases):
            if c.fold != which:
                for cond in CONDITIONS:
                    held[cond][i] = c.l1(cond, params)
    report.append("\nheld-out kernel L1 on a 41×41 support (each case measured by the fold that did not fit on it):")
    groups = {"all": lambda c: True, "real_dev widefield": lambda c: c.case["source"] == "real_dev"
              and c.case["modality"] == "widefield", "real_dev confocal": lambda c: c.case["source"] == "real_dev"
              and c.case["modality"] == "confocal", "generated": lambda c: c.case["source"] == "generated",
              **{f"optics cases {f}": (lambda c, f=f: c.case["source"] == "optics_cases" and
                                       (f == "all" or c.case["family"] == f)) for f in ("all", *OPTICS_FAMILIES())}}
    for label, pick in groups.items():
        idx = [i for i, c in enumerate(cases) if pick(c)]
        report.append(summary(label, [cases[i] for i in idx], {cond: [held[cond][i] for i in idx]
                                                               for cond in CONDITIONS}))
    if args.with_network or args.optics_cases or args.hinge != HINGE:
        # a comparison, not the record's fit: held-out figures only
        emit("\n".join(report) + "\n", args.out)
        return 0
    full = fit(cases, None)
    values = {k: float(v) for k, v in full.items() if k != "train_cost"}
    report.append(f"\nfit on all (the record auto_optics): {full}")
    path = write_record("auto_optics", values, script=__file__, inputs={
        "real_dev": f"optics_estimator_benchmark.cases({list(DEVELOPMENT_IMAGES())}, {DEV_PER_IMAGE}, seed=101), "
                    "widefield as drawn and the same draws confocal (pinhole 1 AU, noise seed + 1)",
        "generated": {"scene": "synthetic.microscopy_scene((256, 256), seed, kind)", "kinds": list(KINDS),
                      "seeds": list(GEN_SEEDS), "psf": "psf_2d of drawn optics, widefield or confocal"},
        "optics_cases": f"_optics_cases.draw_cases({list(DEVELOPMENT_IMAGES())}, rounds={OPTICS_ROUNDS}, "
                        f"seed={OPTICS_SEED}): every family of the real-optics benchmark equally often; measured, "
                        "not fitted on (fit sources: " + ", ".join(FIT_SOURCES) + ")",
        "members": list(MEMBERS), "shape_reader": "learned family=optics", "conditions": list(CONDITIONS),
        "folds": "A: fit cell_microtubules + even seeds; B: golgi_confocal + odd seeds; record: fit on all"},
        notes="Objective: mean over the two conditions of the worse modality's mean kernel L1 (41x41) plus "
              f"{HINGE:g} x the mean excess over the fixed Gaussian's L1. MICROSCOPE_MEMBER_OPTIONS empty.")
    report.append(f"record written: {path.name}")
    emit("\n".join(report) + "\n", args.out)
    return 0


def OPTICS_FAMILIES() -> tuple[str, ...]:  # noqa: N802 - the case generator's constant, read lazily
    import _optics_cases as oc

    return oc.FAMILIES


def DEVELOPMENT_IMAGES() -> tuple[str, ...]:  # noqa: N802 - the benchmark's constant, read lazily
    import optics_estimator_benchmark as bench

    return bench.DEVELOPMENT


if __name__ == "__main__":
    raise SystemExit(main())
