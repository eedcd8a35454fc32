"""Choose the sharp-edge quantile on synthetic data, never on the benchmark.

Photographs shipped with scikit-image are blurred with random kernels drawn by
the DIV2KRK protocol (physics.kernels.random_div2krk_kernel) and degraded ×2
(physics.degrade); every candidate quantile turns the same edge fits into a
kernel the way the ``edges`` estimator does (``edges._covariance``), and the
quantile with the lowest mean kernel L1 is printed.

``--record`` writes that quantile to the record ``edges``
(``src/napari_kernelgan/records/edges.json``, loaded by ``estimators/edges.py``
as ``SHARP_QUANTILE``). ``--record-current Q`` writes ``Q`` instead, and only
where its mean L1 is within ``TIE`` of the best one's: the edge fits have changed
since 0.25 was chosen, and on today's fits 0.25 and 0.30 tie (0.2965 and 0.2964
mean L1 over the 40 cases), so the shipped value is kept rather than moved by a
difference far below the spread between images::

    python benchmarks/calibrate_edges.py --record-current 0.25
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
          "camera", "brick", "cell", "retina")
QUANTILES = tuple(float(q) for q in np.round(np.arange(0.1, 0.61, 0.05), 2))
DEFAULTS = {"kernels": 4, "seed": 0}
TIE = 0.001   # mean kernel L1: a quantile this close to the best is as good on these cases


def mean_errors(kernels: int, seed: int) -> tuple[dict[float, float], float, int]:
    """Mean kernel L1 per quantile, the fixed Gaussian's mean L1, and the number of cases."""
    from skimage import data

    from napari_kernelgan.estimators.edges import _covariance, edge_widths
    from napari_kernelgan.physics import constant_gaussian, degrade, kernel_l1, random_div2krk_kernel
    from napari_kernelgan.physics.kernels import gaussian_from_covariance

    rng = np.random.default_rng(seed)
    errs: dict[float, list[float]] = {q: [] for q in QUANTILES}
    const = []
    for name in IMAGES:
        img = getattr(data, name)().astype(np.float64) / 255.0
        gray = img.mean(-1) if img.ndim == 3 else img
        for _ in range(kernels):
            k = random_div2krk_kernel(rng, 2)
            fits = [edge_widths(degrade(gray, k, 2), seed=seed)]
            for q in QUANTILES:
                cov, _ = _covariance(fits, 2, q)
                errs[q].append(kernel_l1(gaussian_from_covariance(cov, 13), k))
            const.append(kernel_l1(constant_gaussian(2), k))
    return {q: float(np.mean(v)) for q, v in errs.items()}, float(np.mean(const)), len(const)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", type=int, default=DEFAULTS["kernels"], help="random kernels per image")
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--record", action="store_true", help="write the best quantile to the record 'edges'")
    mode.add_argument("--record-current", type=float, default=None, metavar="Q",
                      help=f"write Q to the record 'edges' if its mean L1 is within {TIE} of the best")
    args = ap.parse_args(argv)
    errs, const, n = mean_errors(args.kernels, args.seed)
    print(f"{n} synthetic cases; fixed Gaussian mean L1 {const:.3f}")
    for q, e in errs.items():
        print(f"quantile {q:.2f}: mean L1 {e:.3f}")
    best = min(QUANTILES, key=lambda q: errs[q])
    print(f"best quantile: {best:.2f}")
    if not (args.record or args.record_current is not None):
        return 0
    if {"kernels": args.kernels, "seed": args.seed} != DEFAULTS:
        print(f"no record written: the record is fitted with the default options {DEFAULTS}", file=sys.stderr)
        return 2
    value, notes = best, ""
    if args.record_current is not None:
        value = float(args.record_current)
        if value not in errs or errs[value] > errs[best] + TIE:
            print(f"no record written: quantile {value} is not within {TIE} mean L1 of the best ({best:.2f})",
                  file=sys.stderr)
            return 1
        notes = (f"The shipped quantile, kept: its mean L1 {errs[value]:.4f} is within {TIE} of the best "
                 f"({best:.2f}: {errs[best]:.4f}) on these cases.")
    from napari_kernelgan.records import write_record

    path = write_record("edges", {"sharp_quantile": value}, script=__file__, notes=notes, inputs={
        "images": [f"skimage.data.{n}" for n in IMAGES], "kernels_per_image": args.kernels,
        "seed": args.seed, "kernels": "physics.kernels.random_div2krk_kernel, x2 (physics.degrade)",
        "quantiles": list(QUANTILES), "mean_l1": {f"{q:.2f}": round(e, 4) for q, e in errs.items()}})
    print(f"record written: {path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
