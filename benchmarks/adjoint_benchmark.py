"""The strided adjoint of the degradation on the CPU: one convolution per output phase against
PyTorch's transposed convolution, for this package's applied kernels.

``Degradation.A_adjoint`` (float32, CPU) runs ``physics.operators._transpose_polyphase``; this
script times it beside ``torch.nn.functional.conv_transpose2d`` on the same input in the same
run, and checks that both give the same map. Richardson–Lucy (the photon-limited refinement)
applies the adjoint once per step. A second table times a microscope PSF's kernel (beyond
``operators.FFT_MIN_TAPS`` taps), whose forward operator and adjoint run through the FFT, beside
the convolution paths they replace, on the same input.

    python benchmarks/adjoint_benchmark.py --threads 2 --out docs/benchmarks_adjoint.md
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

from _report import best_of, emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CASES = ((2, 17), (4, 39))  # (scale, side of the applied kernel: kernel_for_subsampling of 13×13 / analytic ×4)
LARGE = (45, 75)            # stored kernel sides of microscope PSFs on the ×2 grid (the 99 %-mass support, its cap)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sides", default="256,1024", help="LR sides, comma-separated")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    import numpy as np
    import torch
    import torch.nn.functional as F

    from napari_kernelgan.physics import operators
    from napari_kernelgan.physics.operators import Degradation, _transpose_polyphase

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for side in (int(s) for s in args.sides.split(",")):
        y = torch.rand((1, 1, side, side), generator=gen)
        for scale, k in CASES:
            w = torch.rand((k, k), generator=gen)
            ref = F.conv_transpose2d(y, w[None, None], stride=scale)
            err = float((_transpose_polyphase(y, w, scale) - ref).abs().max() / ref.abs().max())
            t_ct = best_of(lambda y=y, w=w, s=scale: F.conv_transpose2d(y, w[None, None], stride=s), args.repeat,
                           warm_up=True)
            t_pp = best_of(lambda y=y, w=w, s=scale: _transpose_polyphase(y, w, s), args.repeat,
                           warm_up=True)
            rows.append((side, scale, k, t_ct, t_pp, err))
            print(f"{side}² ×{scale} {k}×{k}: conv_transpose2d {t_ct:.4f} s, per phase {t_pp:.4f} s, "
                  f"relative difference {err:.1e}", flush=True)
    large = []
    for side in (int(s) for s in args.sides.split(",")):
        x = torch.rand((1, 2 * side, 2 * side), generator=gen)
        for k in LARGE:
            op = Degradation(np.random.default_rng(k).random((k, k)), 2, "reflect")
            y = op.A(x)

            def both(op=op, x=x, y=y):
                return op.A(x), op.A_adjoint(y, tuple(x.shape[-2:]))
            fft_a, fft_adj = both()
            t_fft = best_of(both, args.repeat, warm_up=True)
            taps, operators.FFT_MIN_TAPS = operators.FFT_MIN_TAPS, 10 ** 9
            try:
                conv_a, conv_adj = both()
                t_conv = best_of(both, args.repeat, warm_up=True)
            finally:
                operators.FFT_MIN_TAPS = taps
            err = max(float((fft_a - conv_a).abs().max() / conv_a.abs().max()),
                      float((fft_adj - conv_adj).abs().max() / conv_adj.abs().max()))
            large.append((side, k, t_conv, t_fft, err))
            print(f"{side}² ×2 {k}×{k}: convolutions {t_conv:.4f} s, FFT {t_fft:.4f} s, relative difference "
                  f"{err:.1e}", flush=True)
    cmd = "python benchmarks/adjoint_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = ["## The strided adjoint on the CPU: per-phase convolutions against conv_transpose2d", "",
             f"Command: `{cmd}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"torch {torch.__version__}, {args.threads} thread(s); float32; best of {args.repeat}.", "",
             "| LR side | scale | applied kernel | conv_transpose2d s | per phase s | speed-up | "
             "max relative difference |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {side} | ×{scale} | {k}×{k} | {a:.4f} | {b:.4f} | {a / b:.1f}× | {e:.1e} |"
              for side, scale, k, a, b, e in rows]
    lines += ["", "Microscope PSFs (×2, `reflect` boundary): the forward operator and its adjoint together, "
              "convolutions (as above) against the FFT path used from `operators.FFT_MIN_TAPS` taps on.", "",
              "| LR side | stored kernel | convolutions s | FFT s | speed-up | max relative difference |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {side} | {k}×{k} | {a:.4f} | {b:.4f} | {a / b:.1f}× | {e:.1e} |" for side, k, a, b, e in large]
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
