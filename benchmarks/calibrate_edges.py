"""Choose the sharp-edge quantile on synthetic data, never on the benchmark.

Photographs shipped with scikit-image are blurred with random kernels drawn by
the DIV2KRK protocol (physics.kernels.random_div2krk_kernel) and degraded ×2
(physics.degrade); the quantile with the lowest mean kernel L1 is printed.

    python benchmarks/calibrate_edges.py --kernels 4 --seed 0
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field",
          "camera", "brick", "cell", "retina")


def main(argv: list[str] | None = None) -> int:
    from skimage import data

    from napari_kernelgan.estimators.edges import covariance_from_widths, edge_widths, kernel_from_covariance
    from napari_kernelgan.physics import constant_gaussian, degrade, kernel_l1, random_div2krk_kernel

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", type=int, default=4, help="random kernels per image")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    quantiles = np.round(np.arange(0.1, 0.61, 0.05), 2)
    errs = {q: [] for q in quantiles}
    const = []
    for name in IMAGES:
        img = getattr(data, name)().astype(np.float64) / 255.0
        gray = img.mean(-1) if img.ndim == 3 else img
        for _ in range(args.kernels):
            k = random_div2krk_kernel(rng, 2)
            lr = degrade(gray, k, 2)
            w, a, q = edge_widths(lr, seed=args.seed)
            good = q > 0.9
            for qq in quantiles:
                est = kernel_from_covariance(covariance_from_widths(w[good], a[good], qq) * 4)
                errs[qq].append(kernel_l1(est, k))
            const.append(kernel_l1(constant_gaussian(2), k))
    print(f"{len(const)} synthetic cases; fixed Gaussian mean L1 {np.mean(const):.3f}")
    for qq in quantiles:
        print(f"quantile {qq:.2f}: mean L1 {np.mean(errs[qq]):.3f}")
    best = min(quantiles, key=lambda q: np.mean(errs[q]))
    print(f"best quantile: {best:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
