"""Kernel estimation and blind SR on generated noisy fluorescence images.

Cases come from :func:`napari_kernelgan.synthetic.microscopy_case` with a fixed
seed: scenes cycling through nuclei, puncta, filaments and mixed, photons at
the brightest LR pixel drawn log-uniformly in 20–1500, Poisson shot noise,
Gaussian read noise, offset 100 ADU, uint16, kernels drawn from the DIV2KRK
distribution (``physics.kernels.random_div2krk_kernel``). No DIV2KRK image is
used, so nothing here is fitted to the benchmark.

For each estimator: kernel L1 against the truth beside the fixed Gaussian
``constant_gaussian(2)``, the ratio of the means (target ≤ 0.6), and SR PSNR
(the default SR method, ``super_resolve`` with the estimate, so its
confidence-dependent safeguards apply) on the noise-free HR object against
bicubic interpolation (``physics.resize.imresize``) and against the
ground-truth kernel. An estimator that raises ``BadInputError`` or returns its
fallback (``extras["fallback"]``) counts as a failure; its SR uses the fixed
Gaussian, and the table says how often.

    python benchmarks/microscopy_benchmark.py --limit 6 --estimators spots,edges --out docs/benchmarks_microscopy.md
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

from _report import emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

KINDS = ("nuclei", "puncta", "filaments", "mixed")
FIXED = "fixed Gaussian"


def make_case(i: int, seed: int, shape: tuple[int, int], scale: int):  # -> synthetic.MicroscopyCase
    from napari_kernelgan.synthetic import microscopy_case

    return microscopy_case(seed * 1000 + i, shape=shape, scale=scale, kind=KINDS[i % len(KINDS)])


def sr_psnr(lr: np.ndarray, kernel, case, threads: int) -> tuple[float, float]:
    """(PSNR against the noise-free HR, seconds) of the default SR method with ``kernel``."""
    import warnings

    from napari_kernelgan import super_resolve
    from napari_kernelgan.physics import image_psnr

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fallback to bicubic is recorded in the PSNR itself
        out = super_resolve(lr, kernel, case.scale, seed=0, threads=threads, safe=True)
    sr = out.image.astype(np.float64) - case.offset
    return image_psnr(sr, case.hr, shave=case.scale, data_range=float(case.hr.max())), time.perf_counter() - start


def run_case(i: int, args: argparse.Namespace, estimators: list[str]) -> list[dict]:
    from napari_kernelgan import estimate_kernel
    from napari_kernelgan.errors import BadInputError
    from napari_kernelgan.physics import constant_gaussian, image_psnr, imresize, kernel_l1

    case = make_case(i, args.seed, (args.size, args.size), args.scale)
    truth = case.kernel_x2
    fixed = constant_gaussian(2)
    fixed_l1 = kernel_l1(fixed, truth)
    lr = case.lr
    bicubic = imresize(lr.astype(np.float64) - case.offset, case.scale)
    peak = float(case.hr.max())
    base = {"image": i, "kind": case.kind, "photons": round(case.photons, 1), "read_noise": round(case.read_noise, 2),
            "fixed_l1": fixed_l1,
            "bicubic_psnr": image_psnr(bicubic, case.hr, shave=case.scale, data_range=peak)}
    base["fixed_psnr"], _ = sr_psnr(lr, fixed if case.scale == 2 else constant_gaussian(4), case, args.threads)
    base["gt_psnr"], _ = sr_psnr(lr, case.kernel, case, args.threads)
    rows = [dict(base, estimator=FIXED, l1=fixed_l1, psnr=base["fixed_psnr"], time_s=0.0, confidence=None,
                 failed=False)]
    for name in estimators:
        start = time.perf_counter()
        failed, reason, confidence = False, "", None
        try:
            est = estimate_kernel(lr, case.scale, estimator=name, seed=args.seed, threads=args.threads)
            elapsed = time.perf_counter() - start
            kernel = est.kernel
            confidence = est.confidence
            if est.extras.get("fallback"):
                failed, reason = True, "fallback"
        except BadInputError as exc:
            elapsed = time.perf_counter() - start
            est, kernel, failed, reason = None, fixed, True, str(exc).splitlines()[0]
        # A failure super-resolves exactly as the fixed-Gaussian row does (not with a confidence-0 estimate).
        psnr = base["fixed_psnr"] if failed else sr_psnr(lr, est, case, args.threads)[0]
        rows.append(dict(base, estimator=name, l1=kernel_l1(kernel, truth), psnr=psnr, time_s=elapsed,
                         confidence=confidence, failed=failed, reason=reason))
    return rows


def summarise(rows: list[dict], name: str) -> dict:
    r = [x for x in rows if x["estimator"] == name]
    l1 = np.array([x["l1"] for x in r])
    fixed = np.array([x["fixed_l1"] for x in r])
    ran = np.array([not x["failed"] for x in r])
    return {"estimator": name, "n": len(r), "mean_l1": float(l1.mean()), "mean_fixed_l1": float(fixed.mean()),
            "ran_l1": float(l1[ran].mean()) if ran.any() else None,
            "ran_fixed_l1": float(fixed[ran].mean()) if ran.any() else None,
            "ratio": float(l1.mean() / fixed.mean()), "not_worse": int((l1 <= fixed + 1e-12).sum()),
            "failures": int(sum(x["failed"] for x in r)),
            "mean_psnr": float(np.mean([x["psnr"] for x in r])),
            "mean_bicubic_psnr": float(np.mean([x["bicubic_psnr"] for x in r])),
            "mean_gt_psnr": float(np.mean([x["gt_psnr"] for x in r])),
            "mean_time_s": float(np.mean([x["time_s"] for x in r]))}


def markdown(rows: list[dict], summaries: list[dict], cmd: str, env: str, scale: int) -> str:
    lines = [f"## Kernel estimation and blind SR, generated noisy fluorescence ×{scale}", "",
             f"Command: `{cmd}`", "", f"Machine: {env}", "",
             "Photons at the brightest LR pixel 20–1500 (log-uniform), Poisson + read noise, uint16, "
             "DIV2KRK-distribution kernels. L1 on the ×2 kernel; PSNR on the noise-free HR object "
             "(peak = its maximum, shave = scale); SR with the default method and the estimate's safeguards.", "",
             "| estimator | images | mean L1 ↓ | fixed Gaussian L1 | ratio (target ≤ 0.6) | not worse than fixed "
             "| failures | L1 where it ran (fixed) | SR PSNR ↑ | bicubic PSNR | true-kernel PSNR | mean time s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        l1 = f"**{s['mean_l1']:.3f}**" if s["mean_l1"] < s["mean_fixed_l1"] else f"{s['mean_l1']:.3f}"
        ran = "–" if s["ran_l1"] is None else f"{s['ran_l1']:.3f} ({s['ran_fixed_l1']:.3f})"
        lines.append(f"| {s['estimator']} | {s['n']} | {l1} | {s['mean_fixed_l1']:.3f} | {s['ratio']:.2f} | "
                     f"{s['not_worse']}/{s['n']} | {s['failures']} | {ran} | {s['mean_psnr']:.2f} | "
                     f"{s['mean_bicubic_psnr']:.2f} | {s['mean_gt_psnr']:.2f} | {s['mean_time_s']:.2f} |")
    if any(s["failures"] for s in summaries):
        lines += ["", "A failure (no usable structure: a `BadInputError` or the estimator's fallback) keeps the "
                  "fixed Gaussian's L1 where the estimator returned it, and its SR uses the fixed Gaussian."]
    names = [s["estimator"] for s in summaries]
    lines += ["", "Per image (kernel L1 / SR PSNR dB; † failure):", "",
              "| image | scene | photons | " + " | ".join(names) + " | bicubic PSNR | true-kernel PSNR |",
              "|---|---|---|" + "---|" * (len(names) + 2)]
    for idx in sorted({x["image"] for x in rows}):
        vals = {x["estimator"]: x for x in rows if x["image"] == idx}
        first = next(iter(vals.values()))
        cells = [f"{vals[n]['l1']:.3f} / {vals[n]['psnr']:.2f}" + (" †" if vals[n]["failed"] else "")
                 if n in vals else "" for n in names]
        lines.append(f"| {idx} | {first['kind']} | {first['photons']:.0f} | " + " | ".join(cells)
                     + f" | {first['bicubic_psnr']:.2f} | {first['gt_psnr']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=12, help="number of generated cases")
    ap.add_argument("--limit", type=int, default=None, help="run only the first LIMIT cases")
    ap.add_argument("--estimators", default="spots,edges,kernelgan", help="comma-separated registered names")
    ap.add_argument("--scale", type=int, default=2, choices=(2, 4))
    ap.add_argument("--size", type=int, default=256, help="HR side of each case (LR is size / scale)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="markdown file to write")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from napari_kernelgan.registry import ESTIMATORS

    estimators = [e for e in args.estimators.split(",") if e]
    for name in estimators:
        ESTIMATORS.get(name)  # an unknown name fails now, with the list of choices
    count = args.n if args.limit is None else min(args.n, args.limit)
    rows: list[dict] = []
    for i in range(count):
        for row in run_case(i, args, estimators):
            rows.append(row)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), flush=True)
    summaries = [summarise(rows, name) for name in [FIXED, *estimators]]
    import torch

    env = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
           f"{args.threads} thread(s)")
    cmd = "python benchmarks/microscopy_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    emit(markdown(rows, summaries, cmd, env, args.scale), args.out)
    for s in summaries:
        print(json.dumps(s))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summaries": summaries}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
