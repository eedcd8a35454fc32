"""Fit the safeguards of SR with an estimated kernel by two-fold cross-validation on generated data.

No DIV2KRK image is used: the constants of ``napari_kernelgan.sr._safety`` that
this script fits must hold on DIV2KRK (``benchmarks/sr_benchmark.py``,
``benchmarks/safety_benchmark.py``) without having seen it.

Two families of cases, each degraded with its own random DIV2KRK-protocol
kernel (``physics.kernels.random_div2krk_kernel``) and given to ``super_resolve``
with the kernel that ``auto`` estimates from the LR image (and its confidence),
so the safeguards meet the kernel errors they exist for:

* ``natural``: 256×256 HR crops of scikit-image's CC0 / public-domain photographs
  (the list of ``scripts/train_learned.py``) and dead-leaves images, ×2 and ×4,
  8-bit, each once with its own kernel and once half sharp (σ 0.7), half blurred
  (σ 2.2) — where no kernel is right and the check has to act; they fit, jointly,
  :data:`~napari_kernelgan.sr._safety.FLOOR_SCALE` (the confidence floor per
  scale, relative to the SR method's blind default) and
  :data:`~napari_kernelgan.sr._safety.RINGING_SCALE` (the ringing limit per scale);
* ``microscopy``: generated noisy uint16 fluorescence (``synthetic.microscopy_case``,
  20–1500 photons, seeds that ``benchmarks/microscopy_benchmark.py`` does not
  use by default: 10–15), ×2, together with the natural family's uniformly blurred
  ×2 cases with Gaussian noise (σ drawn in 5–15/255, 8-bit): the knobs act on every
  noisy image, so both kinds of noise judge them; it fits, jointly,
  :data:`~napari_kernelgan.sr._safety.NOISE_DOUBT` and
  :data:`~napari_kernelgan.sr._poisson.STEP_SCALE` (how much further than the
  cross-validated count Richardson–Lucy runs on the full counts).

Per knob and value: PSNR gain over bicubic interpolation of every case. The
rule: the value with the best mean gain among those whose worst case is no more
than 0.3 dB below bicubic (else the one with the best worst case). Fold A
fits on the even-numbered groups (natural: source images, each with its two
cases; microscopy: seeds, so that every fold holds every kind of scene) and reports the odd ones, fold B the
other way round; the held-out lines are the estimate for unseen images, and the fit on all
cases is the constant the script writes to the record ``safety``
(``src/napari_kernelgan/records/safety.json``, loaded by ``sr/_safety.py`` and
``sr/_poisson.py``) when it ran on both families, scales 2 and 4 and seed 0.
``--record-current docs/calibration_safety.txt`` writes the record from the
constants line of such a full run's report instead of refitting (the full run
takes about 4 minutes on an idle 2-core machine).

    python benchmarks/calibrate_safety.py --out docs/calibration_safety.txt
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from _report import emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

WORST = -0.3
FLOOR_VALUES = (0.125, 0.25, 0.5, 1.0)
RINGING_VALUES = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5)
NATURAL_VALUES = tuple((f, r) for f in FLOOR_VALUES for r in RINGING_VALUES)
DOUBT_VALUES = (0.0, 1.0, 2.0, 3.0, 4.0)
STEP_VALUES = (1.0, 1.5, 2.0)
MICRO_VALUES = tuple((d, r) for d in DOUBT_VALUES for r in STEP_VALUES)
MICRO_SEEDS = (10, 11, 12, 13, 14, 15)
N_LEAVES = 6
NOISY_NATURAL_SIGMA = (5.0, 15.0)   # Gaussian noise of the noisy natural cases, [0, 255]
MIXED_SIGMAS = (0.7, 2.2)   # ×2 kernel σ of the sharp and the blurred half of a mixed case


def natural_cases(scale: int, seed: int) -> list[dict]:
    """(name, LR uint8 gray, HR float in [0, 255]) per photograph and dead-leaves image."""
    import skimage.data

    from napari_kernelgan.physics import degrade, gaussian_kernel
    from napari_kernelgan.physics.conventions import analytic_x4
    from napari_kernelgan.physics.kernels import random_div2krk_kernel
    from napari_kernelgan.synthetic import dead_leaves
    from train_learned import SKIMAGE_IMAGES, _gray

    sources = [(f"skimage.{n}", _gray(getattr(skimage.data, n)())) for n in SKIMAGE_IMAGES]
    sources += [(f"leaves{i}", dead_leaves((256, 256), seed=5000 + i).astype(np.float32)) for i in range(N_LEAVES)]
    narrow, wide = gaussian_kernel(13, MIXED_SIGMAS[0]), gaussian_kernel(13, MIXED_SIGMAS[1])
    if scale == 4:
        narrow, wide = analytic_x4(narrow), analytic_x4(wide)
    cases = []
    for i, (name, img) in enumerate(sources):
        rng = np.random.default_rng([seed, scale, i])
        h, w = img.shape
        side = min(256, h, w) // (2 * scale) * (2 * scale)
        r0, c0 = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        hr = 255.0 * np.asarray(img[r0:r0 + side, c0:c0 + side], dtype=np.float64)
        kernel = random_div2krk_kernel(np.random.default_rng([seed, i]), scale)
        lr = np.clip(np.round(degrade(hr, kernel, scale)), 0, 255).astype(np.uint8)
        cases.append({"name": name, "lr": lr, "hr": hr, "scale": scale, "peak": 255.0, "offset": 0.0, "group": i})
        # The case the check exists for: no single kernel is right (left half sharp, right half blurred).
        half = side // scale // 2
        mixed = np.concatenate([degrade(hr, narrow, scale)[:, :half], degrade(hr, wide, scale)[:, half:]], axis=1)
        cases.append({"name": f"{name} mixed", "lr": np.clip(np.round(mixed), 0, 255).astype(np.uint8), "hr": hr,
                      "scale": scale, "peak": 255.0, "offset": 0.0, "group": i})
    return cases


def noisy_natural_cases(seed: int) -> list[dict]:
    """The natural family's uniformly blurred ×2 cases with Gaussian noise (σ in NOISY_NATURAL_SIGMA, /255)."""
    out = []
    for case in natural_cases(2, seed):
        if case["name"].endswith(" mixed"):
            continue
        rng = np.random.default_rng([seed, 77, case["group"]])
        sigma = float(rng.uniform(*NOISY_NATURAL_SIGMA))
        noisy = np.clip(np.round(case["lr"] + rng.normal(0.0, sigma, case["lr"].shape)), 0, 255).astype(np.uint8)
        out.append(dict(case, name=f"{case['name']} σ{sigma:.0f}", lr=noisy))
    return out


def microscopy_cases(seeds: tuple[int, ...]) -> list[dict]:
    from napari_kernelgan.synthetic import microscopy_case

    kinds = ("nuclei", "puncta", "filaments", "mixed")
    cases = []
    for s in seeds:
        for i in range(12):
            c = microscopy_case(s * 1000 + i, shape=(256, 256), scale=2, kind=kinds[i % 4])
            cases.append({"name": f"{s}/{i} {c.kind} {c.photons:.0f} ph", "lr": c.lr, "hr": c.hr, "scale": 2,
                          "peak": float(c.hr.max()), "offset": c.offset, "group": s})
    return cases


def gains(cases: list[dict], knob: str, values: tuple, threads: int) -> np.ndarray:
    """(cases, values) PSNR gains over bicubic of SR with the auto estimate, the knob set to each value."""
    from napari_kernelgan import estimate_kernel, super_resolve
    from napari_kernelgan.physics import image_psnr, imresize
    from napari_kernelgan.sr import _poisson, _safety

    saved = (dict(_safety.FLOOR_SCALE), _safety.NOISE_DOUBT, dict(_safety.RINGING_SCALE), _poisson.STEP_SCALE)
    out = np.zeros((len(cases), len(values)))
    try:
        for ci, case in enumerate(cases):
            s = case["scale"]
            lr = case["lr"]
            estimate = estimate_kernel(lr, s, threads=threads)

            def psnr(img: np.ndarray, case: dict = case) -> float:
                return image_psnr(np.asarray(img, np.float64) - case["offset"], case["hr"], shave=case["scale"],
                                  data_range=case["peak"])

            bicubic = psnr(imresize(lr.astype(np.float64), s))
            for vi, value in enumerate(values):
                if knob == "floor,ringing":
                    _safety.FLOOR_SCALE[s], _safety.RINGING_SCALE[s] = value
                else:
                    _safety.NOISE_DOUBT, _poisson.STEP_SCALE = value
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a fallback shows in the gain itself
                    out[ci, vi] = psnr(super_resolve(lr, estimate, s, threads=threads).image) - bicubic
            best = int(np.argmax(out[ci]))
            print(f"  {case['name']:<28} c={estimate.confidence:.2f}  "
                  + (" ".join(f"{g:+.2f}" for g in out[ci]) if len(values) <= 8 else
                     f"min {out[ci].min():+.2f}, max {out[ci].max():+.2f} at {values[best]}"), flush=True)
    finally:
        _safety.FLOOR_SCALE.clear()
        _safety.FLOOR_SCALE.update(saved[0])
        _safety.NOISE_DOUBT = saved[1]
        _safety.RINGING_SCALE.clear()
        _safety.RINGING_SCALE.update(saved[2])
        _poisson.STEP_SCALE = saved[3]
    return out


def choose(g: np.ndarray) -> int:
    """Best mean among values whose worst case is at least WORST; otherwise the best worst case."""
    ok = g.min(0) >= WORST
    if ok.any():
        return int(np.argmax(np.where(ok, g.mean(0), -np.inf)))
    return int(np.argmax(g.min(0)))


def cross_validate(g: np.ndarray, values: tuple, label: str, lines: list[str], groups: np.ndarray) -> object:
    idx = np.asarray(groups)
    held = np.zeros(g.shape[0])
    for fold, (fit, test) in enumerate(((idx % 2 == 0, idx % 2 == 1), (idx % 2 == 1, idx % 2 == 0))):
        j = choose(g[fit])
        held[test] = g[test, j]
        lines.append(f"  fold {'AB'[fold]}: fit on {int(fit.sum())} cases -> {values[j]}; held out "
                     f"{int(test.sum())}: mean {g[test, j].mean():+.2f} dB, worst {g[test, j].min():+.2f} dB")
    j = choose(g)
    lines.append(f"  held out, all cases: mean {held.mean():+.2f} dB over bicubic, worst {held.min():+.2f} dB")
    lines.append("  per value (all cases): " + ", ".join(
        f"{v}: mean {m:+.2f} / worst {w:+.2f}" for v, m, w in zip(values, g.mean(0), g.min(0))))
    lines.append(f"  fit on all {g.shape[0]} cases: {label} = {values[j]}")
    return values[j]


FULL_RUN = {"families": "natural,microscopy", "scales": "2,4", "seed": 0}


def write_safety_record(fitted: dict, notes: str = "") -> Path:
    """Write the record ``safety`` from a full run's fitted constants (keyed as the report prints them)."""
    from napari_kernelgan.records import write_record

    natural = {s: fitted[f"(FLOOR_SCALE[{s}], RINGING_SCALE[{s}])"] for s in (2, 4)}
    micro = fitted["(NOISE_DOUBT, STEP_SCALE)"]
    values = {"floor_scale": {str(s): float(v[0]) for s, v in natural.items()},
              "ringing_scale": {str(s): float(v[1]) for s, v in natural.items()},
              "noise_doubt": float(micro[0]), "step_scale": float(micro[1])}
    return write_record("safety", values, script=__file__, inputs={
        "natural": {"images": "scikit-image photographs (scripts/train_learned.SKIMAGE_IMAGES) and "
                              f"{N_LEAVES} dead-leaves images (seeds 5000-{5000 + N_LEAVES - 1})",
                    "scales": [2, 4], "seed": FULL_RUN["seed"], "kernels": "physics.kernels.random_div2krk_kernel",
                    "mixed_sigmas": list(MIXED_SIGMAS)},
        "microscopy": {"generator": "synthetic.microscopy_case(seed * 1000 + i, shape=(256, 256), scale=2)",
                       "seeds": list(MICRO_SEEDS), "cases_per_seed": 12},
        "noisy_natural": {"sigma_range_255": list(NOISY_NATURAL_SIGMA), "seed": FULL_RUN["seed"]},
        "rule": f"best mean PSNR gain over bicubic among values whose worst case is >= {WORST} dB"},
        notes=notes or "The knobs not being fitted in a stage keep the values the package loads while it runs.")


def record_current(report: Path) -> int:
    """Write the record from the constants of this script's own full run, as its report (``--out``) holds them."""
    text = report.read_text()
    command = text.splitlines()[0] if text else ""
    constants = [line for line in text.splitlines() if line.startswith("Constants: ")]
    run_args = shlex.split(command.removeprefix("Command: python benchmarks/calibrate_safety.py"))
    full = command.startswith("Command: python benchmarks/calibrate_safety.py") and not any(
        a.split("=")[0] in ("--families", "--scales", "--seed") for a in run_args)
    if not full or len(constants) != 1:
        print(f"{report} is not the report of a full run of this script (both families, scales 2,4, seed 0)",
              file=sys.stderr)
        return 1
    fitted = json.loads(constants[0].removeprefix("Constants: ").rsplit("  (", 1)[0])
    path = write_safety_record(fitted, notes=(
        f"Written with --record-current from this script's full run reported in {report.as_posix()} "
        f"({command.removeprefix('Command: ')}; its line '{constants[0]}'), not refitted for this record."))
    print(f"record written: {path.name} from {report}: {json.dumps(fitted)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", default=FULL_RUN["families"])
    p.add_argument("--scales", default=FULL_RUN["scales"], help="scales of the natural family")
    p.add_argument("--seed", type=int, default=FULL_RUN["seed"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--record-current", type=Path, default=None, metavar="REPORT",
                   help="write the record 'safety' from the constants of this script's full run in REPORT "
                        "(its --out file, e.g. docs/calibration_safety.txt) instead of refitting")
    args = p.parse_args(argv)
    if args.record_current is not None:
        return record_current(args.record_current)
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    lines = [f"Command: python benchmarks/calibrate_safety.py {shlex.join(argv if argv is not None else sys.argv[1:])}",
             f"Rule: best mean gain over bicubic among values whose worst case is >= {WORST} dB; "
             "two-fold CV (natural: even/odd source images; microscopy: even/odd seeds)."]
    fitted: dict[str, object] = {}
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    if "natural" in families:
        for s in (int(x) for x in args.scales.split(",")):
            label = f"(FLOOR_SCALE[{s}], RINGING_SCALE[{s}])"
            print(f"natural x{s}: {label} over {FLOOR_VALUES} x {RINGING_VALUES}", flush=True)
            cases = natural_cases(s, args.seed)
            g = gains(cases, "floor,ringing", NATURAL_VALUES, args.threads)
            lines.append(f"natural x{s} ({g.shape[0]} cases), {label} in {FLOOR_VALUES} x {RINGING_VALUES}:")
            fitted[label] = cross_validate(g, NATURAL_VALUES, label, lines, np.array([c["group"] for c in cases]))
    if "microscopy" in families:
        label = "(NOISE_DOUBT, STEP_SCALE)"
        print(f"microscopy x2: {label} over {DOUBT_VALUES} x {STEP_VALUES}", flush=True)
        fluo, natural = microscopy_cases(MICRO_SEEDS), noisy_natural_cases(args.seed)
        cases = fluo + natural
        g = gains(cases, "doubt,steps", MICRO_VALUES, args.threads)
        lines.append(f"microscopy x2 ({len(fluo)} fluorescence cases, seeds {MICRO_SEEDS}, and {len(natural)} "
                     f"natural ones with Gaussian noise σ {NOISY_NATURAL_SIGMA[0]:.0f}–{NOISY_NATURAL_SIGMA[1]:.0f}"
                     f"/255), {label} in {DOUBT_VALUES} x {STEP_VALUES}:")
        fitted[label] = cross_validate(g, MICRO_VALUES, label, lines, np.array([c["group"] for c in cases]))
    lines.append(f"Constants: {json.dumps(fitted)}  ({time.perf_counter() - start:.0f} s)")
    if args.families == FULL_RUN["families"] and args.scales == FULL_RUN["scales"] and args.seed == FULL_RUN["seed"]:
        lines.append(f"record written: {write_safety_record(fitted).name}")
    else:
        lines.append("record not written (only a run on both families, scales 2,4 and seed 0 writes it)")
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
