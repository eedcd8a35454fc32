"""Command line: ``napari-kernelgan estimate | sr | blind-sr | demo``. A thin layer over :mod:`.api`."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import __version__
from .types import EtaTracker


class ProgressBar:
    """A one-line progress bar on stderr (no dependency; silent when stderr is not a terminal
    unless ``always``)."""

    def __init__(self, label: str, always: bool = False, width: int = 28) -> None:
        self.label = label
        self.width = width
        self.enabled = always or sys.stderr.isatty()
        self.last = 0.0
        self.eta = EtaTracker()

    def __call__(self, p: Any) -> None:
        now = time.perf_counter()
        eta_s = self.eta(p, now)
        done = p.iteration >= p.total
        if not self.enabled or (now - self.last < 0.2 and not done):
            return
        self.last = now
        frac = min(1.0, p.fraction)
        bar = "█" * int(frac * self.width) + "·" * (self.width - int(frac * self.width))
        eta = "" if np.isnan(eta_s) else f" ETA {eta_s:4.0f}s"
        sys.stderr.write(f"\r{self.label} {bar} {p.iteration}/{p.total} {p.stage}{eta}   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")



# Failures a user can fix (bad file, bad option, missing weights): one line, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError, KeyError, TypeError)


def _error(exc: BaseException, path: Path | str | None = None) -> int:
    """Print one ``error:`` line for ``exc`` and return the exit code 1."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    print(f"error: {f'{path}: ' if path is not None else ''}{msg}", file=sys.stderr)
    return 1


def save_kernel_plot(path: Path, kernel: np.ndarray, title: str) -> None:
    """PNG of the kernel with a colour bar, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=120)
    im = ax.imshow(kernel, cmap="magma", interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def format_kernel(k: np.ndarray) -> str:
    return "\n".join(" ".join(f"{v:6.4f}" for v in row) for row in k)


def _estimate_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kw = dict(estimator=args.method, preset=args.preset, iterations=args.iterations, device=args.device, seed=args.seed,
              channel_axis=args.channel_axis, stack_axis=args.stack_axis)
    return {k: v for k, v in kw.items() if v is not None}


def write_estimate(out: Path, stem: str, est: Any, scales: Sequence[int]) -> list[Path]:
    """Kernel .mat/.npy per scale, a kernel plot and the D-map TIFF; returns the paths."""
    from .io import write_image, write_kernel

    written = []
    for s in scales:
        k = est.kernel_for(s)
        for suffix in (".mat", ".npy"):
            written.append(write_kernel(out / f"{stem}_kernel_x{s}{suffix}", k))
        plot = out / f"{stem}_kernel_x{s}.png"
        save_kernel_plot(plot, k, f"{stem} kernel ×{s}")
        written.append(plot)
    if est.dmap is not None:
        written.append(write_image(out / f"{stem}_dmap.tif", est.dmap.astype(np.float32)))
    meta = out / f"{stem}_kernel.json"
    from .io import atomic_path

    with atomic_path(meta) as tmp:
        tmp.write_text(json.dumps({k: v for k, v in est.metadata(max(scales)).items() if k != "kernel"}, indent=1))
    written.append(meta)
    return written


def cmd_estimate(args: argparse.Namespace) -> int:
    from .api import estimate_kernel
    from .io import read_image

    out = Path(args.out)
    scales = [2] if args.scale == 2 else [2, 4]
    failures = 0
    for path in args.images:
        path = Path(path)
        bar = ProgressBar(path.name)
        try:
            image = read_image(path)
            est = estimate_kernel(image, args.scale, callback=bar, **_estimate_kwargs(args))
            bar.close()
            written = write_estimate(out, path.stem, est, scales)
        except KeyboardInterrupt:
            bar.close()
            print(f"error: {path}: interrupted; nothing written for it", file=sys.stderr)
            return 130
        except USER_ERRORS as exc:
            bar.close()
            failures += 1
            _error(exc, path)
            continue
        k = est.kernel_for(args.scale)
        print(f"{path}: ×{args.scale} kernel {k.shape[0]}×{k.shape[1]} in {est.elapsed:.1f} s "
              f"({est.method}/{est.preset}, {est.iterations} steps, {est.device}, seed {est.seed})")
        if not args.quiet:
            print(format_kernel(est.kernel))
        print("  wrote " + ", ".join(p.name for p in written) + f" in {out}")
    return 1 if failures else 0


def _sr_output(args: argparse.Namespace, src: Path, scale: int, method: str) -> Path:
    if args.output:
        return Path(args.output)
    suffix = src.suffix if src.suffix.lower() in (".tif", ".tiff", ".png") else ".tif"
    return src.with_name(f"{src.stem}_sr_x{scale}_{method}{suffix}")


def cmd_sr(args: argparse.Namespace) -> int:
    from .api import super_resolve
    from .io import read_image, read_kernel, write_image

    try:
        image = read_image(args.image)
        kernel = read_kernel(args.kernel)
        bar = ProgressBar(Path(args.image).name)
        res = super_resolve(image, kernel, args.scale, sr_method=args.method, device=args.device, seed=args.seed,
                            callback=bar, channel_axis=args.channel_axis, stack_axis=args.stack_axis)
        bar.close()
        out = write_image(_sr_output(args, Path(args.image), args.scale, args.method), res.image)
    except USER_ERRORS as exc:
        return _error(exc)
    print(f"{args.image}: ×{args.scale} {args.method} → {out} {res.image.shape} {res.image.dtype} "
          f"in {res.elapsed:.1f} s ({res.device})")
    return 0


def cmd_blind_sr(args: argparse.Namespace) -> int:
    from .api import blind_super_resolve
    from .io import read_image, write_image, write_kernel

    try:
        image = read_image(args.image)
        bar = ProgressBar(Path(args.image).name)
        est_opts = {k: v for k, v in dict(preset=args.preset, iterations=args.iterations).items() if v is not None}
        res = blind_super_resolve(image, args.scale, sr_method=args.method, device=args.device, seed=args.seed,
                                  callback=bar, estimate_options=est_opts, channel_axis=args.channel_axis,
                                  stack_axis=args.stack_axis)
        bar.close()
        out = _sr_output(args, Path(args.image), args.scale, args.method)
        kpath = write_kernel(out.with_name(f"{out.stem}_kernel_x{args.scale}.mat"), res.kernel)
        write_image(out, res.image)
    except USER_ERRORS as exc:
        return _error(exc)
    print(f"{args.image}: blind ×{args.scale} {args.method} → {out} (kernel {kpath.name}); "
          f"estimate {res.estimate.elapsed:.1f} s, SR {res.elapsed:.1f} s")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .api import blind_defaults, estimate_kernel, super_resolve
    from .io import write_image, write_kernel
    from .physics import constant_gaussian, image_psnr, kernel_l1
    from .samples import TISSUE

    out = Path(args.out)
    hr = TISSUE.hr()
    lr, k_true = TISSUE.lr(hr), TISSUE.kernel()
    print(f"sample: {TISSUE.source}, HR {hr.shape}, blurred with a known anisotropic Gaussian "
          f"(σ {TISSUE.sigma[0]}, {TISSUE.sigma[1]} px, θ {TISSUE.theta_deg}°) and subsampled ×2 → LR {lr.shape}")
    bar = ProgressBar("estimate", always=True)
    est = estimate_kernel(lr, 2, preset=args.preset, iterations=args.iterations, device=args.device, seed=args.seed,
                          callback=bar)
    bar.close()
    err, err_const = kernel_l1(est.kernel, k_true), kernel_l1(constant_gaussian(2), k_true)
    print(f"kernel estimated in {est.elapsed:.1f} s on {est.device} ({est.method}/{est.preset}, seed {est.seed})")
    print(f"kernel L1 error vs the true kernel: {err:.3f} (fixed Gaussian baseline: {err_const:.3f})")
    print(format_kernel(est.kernel))
    edges = estimate_kernel(lr, 2, estimator="edges", device=args.device, seed=args.seed)
    print(f"sharp-edge estimator (estimator='edges'): L1 {kernel_l1(edges.kernel, k_true):.3f} in {edges.elapsed:.1f} s")
    write_image(out / "ihc_lr_x2.png", lr)
    write_kernel(out / "ihc_true_kernel_x2.mat", k_true)
    written = write_estimate(out, "ihc_lr_x2", est, [2])
    bar = ProgressBar("super-resolve", always=True)
    # The kernel is an estimate: the method gets the defaults blind_super_resolve gives it.
    blind = blind_defaults(args.sr_method)
    sr = super_resolve(lr, est, 2, sr_method=args.sr_method, device=args.device, seed=args.seed, callback=bar, **blind)
    bar.close()
    write_image(out / f"ihc_sr_x2_{args.sr_method}.png", sr.image)
    shave = 2
    psnr = {name: image_psnr(super_resolve(lr, k, 2, sr_method=m, device=args.device, seed=args.seed, **o).image,
                             hr, shave)
            for name, k, m, o in (("bicubic", est, "bicubic", {}), ("true kernel", k_true, args.sr_method, {}),
                                  ("fixed Gaussian", constant_gaussian(2), args.sr_method, blind))}
    print(f"×2 super-resolution ({args.sr_method}, {sr.elapsed:.1f} s), PSNR on Y: estimated kernel "
          f"{image_psnr(sr.image, hr, shave):.2f} dB; " + ", ".join(f"{n} {v:.2f} dB" for n, v in psnr.items()))
    print(f"outputs in {out}/: " + ", ".join(p.name for p in written) + f", ihc_sr_x2_{args.sr_method}.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .devices import available_devices

    ap = argparse.ArgumentParser(prog="napari-kernelgan", description="Blind SR-kernel estimation and "
                                 "kernel-aware super-resolution.")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                       help=f"compute device (here: {', '.join(available_devices())})")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--channel-axis", type=int, default=None, help="axis holding channels (multichannel images)")
        p.add_argument("--stack-axis", type=int, default=None,
                       help="axis of a Z/T stack whose frames share one kernel")

    e = sub.add_parser("estimate", help="estimate the SR kernel of one or many images")
    e.add_argument("images", nargs="+")
    e.add_argument("--scale", type=int, default=2, choices=(2, 4))
    e.add_argument("--iterations", type=int, default=None)
    e.add_argument("--preset", default=None)
    e.add_argument("--method", default="kernelgan", help="kernel estimator (kernelgan, edges)")
    e.add_argument("--out", default="kernels", help="output folder (default: ./kernels)")
    e.add_argument("-q", "--quiet", action="store_true", help="do not print kernel values")
    common(e)
    e.set_defaults(func=cmd_estimate, channel_axis=None)

    s = sub.add_parser("sr", help="super-resolve an image with a known kernel")
    s.add_argument("image")
    s.add_argument("--kernel", required=True, help=".mat ('Kernel'), .npy or .tif, correlation orientation")
    s.add_argument("--scale", type=int, default=2)
    s.add_argument("--method", default="closed-form")
    s.add_argument("-o", "--output", default=None)
    common(s)
    s.set_defaults(func=cmd_sr)

    b = sub.add_parser("blind-sr", help="estimate the kernel, then super-resolve (kernel written beside)")
    b.add_argument("image")
    b.add_argument("--scale", type=int, default=2, choices=(2, 4))
    b.add_argument("--method", default="closed-form")
    b.add_argument("--preset", default=None)
    b.add_argument("--iterations", type=int, default=None)
    b.add_argument("-o", "--output", default=None)
    common(b)
    b.set_defaults(func=cmd_blind_sr)

    d = sub.add_parser("demo", help="estimate the kernel of a bundled sample blurred with a known kernel")
    d.add_argument("--out", default="demo_output")
    d.add_argument("--preset", default="default")
    d.add_argument("--iterations", type=int, default=None)
    d.add_argument("--sr-method", default="closed-form")
    d.add_argument("--device", default="auto")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
