"""Super-resolution quality and speed on a DIV2KRK-layout folder.

For every HR image that has an LR image and a ground-truth kernel at the
chosen scale: PSNR and SSIM (Y channel, BT.601, ``s`` pixels shaved) and the
wall time of each registered SR method with

* ``gt``        the ground-truth kernel (``gt_k_x{s}/kernel_N.mat``, key ``'Kernel'``; its few
                tiny negative taps clipped),
* ``estimated`` the kernel estimated from the LR image (``napari_kernelgan.estimate_kernel``),
* ``constant``  the fixed Gaussian ``physics.kernels.constant_gaussian(s)``,

beside bicubic interpolation, and the means. All numbers come from this run.

    python benchmarks/sr_benchmark.py --data ../shared/data/div2krk --scale 2 \\
        --methods bicubic,closed-form --kernels gt,estimated,constant --out docs/benchmarks_sr.md

Method options: ``--set closed-form:iterations=6`` (repeatable; values read by
``napari_kernelgan.options.parse_assignments``, as the CLI's ``--set``); estimator options:
``--estimate-set KEY=VALUE``; USRNet needs ``--usrnet-weights PATH``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from _report import emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DEV_IDS = (2, 3, 6, 13, 14, 23, 24, 27, 30)
KERNEL_SOURCES = ("gt", "estimated", "constant")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "div2krk",
                   help="DIV2KRK-layout folder (hr/, lr_x{s}/, gt_k_x{s}/)")
    p.add_argument("--scale", type=int, choices=(2, 4), default=2)
    p.add_argument("--methods", default="bicubic,closed-form",
                   help="comma-separated SR methods (registered names; 'all' for every one)")
    p.add_argument("--kernels", default="gt,estimated,constant",
                   help=f"comma-separated kernel sources: {', '.join(KERNEL_SOURCES)}")
    p.add_argument("--ids", default=",".join(map(str, DEV_IDS)), help="image numbers to try, comma-separated")
    p.add_argument("--limit", type=int, default=0, help="use at most this many images (0: all)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks_sr.md", help="markdown file to write")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda or mps")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (0: keep torch's default, i.e. OMP_NUM_THREADS or all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=1,
                   help="run each SR this many times and report the fastest (steadier on a busy machine)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="METHOD:KEY=VALUE",
                   help="an option for one SR method, e.g. closed-form:iterations=6 (repeatable)")
    p.add_argument("--usrnet-weights", default=None, help="USRNet state dict (file or folder)")
    p.add_argument("--estimator", default="auto", help="kernel estimator for the 'estimated' column")
    p.add_argument("--estimate-preset", default="default", help="preset of the estimator")
    p.add_argument("--estimate-set", action="append", default=[], metavar="KEY=VALUE",
                   help="an option for the estimator (repeatable)")
    p.add_argument("--unsafe", action="store_true",
                   help="super-resolve with the estimated kernel as with a measured one (no safeguards)")
    p.add_argument("--kernel-cache", type=Path, default=None,
                   help="folder to keep estimated kernels in and reuse them from (with their estimation time)")
    return p.parse_args(argv)


def method_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``['closed-form:sigma=2', ...]`` → ``{'closed-form': {'sigma': 2}}``; values by ``options.parse_assignments``."""
    from napari_kernelgan.errors import BadOptionError
    from napari_kernelgan.options import parse_assignments

    out: dict[str, dict[str, Any]] = {}
    for item in items:
        method, sep, rest = item.partition(":")
        if not sep or not method:
            raise BadOptionError(f"--set expects METHOD:KEY=VALUE, got {item!r}")
        out.setdefault(method, {}).update(parse_assignments([rest]))
    return out


def preset_options(estimator: str, preset: str) -> dict[str, Any]:
    """``{"preset": preset}`` for an estimator with presets; ``{}`` for ``default`` of one without."""
    from napari_kernelgan.errors import BadOptionError
    from napari_kernelgan.registry import ESTIMATORS

    if ESTIMATORS.get(estimator).presets:
        return {"preset": preset}
    if preset != "default":
        raise BadOptionError(f"estimator {estimator!r} has no presets; leave --estimate-preset out")
    return {}


def available_ids(data: Path, scale: int, ids: list[int]) -> list[int]:
    return [i for i in ids if (data / "hr" / f"im_{i}.png").is_file()
            and (data / f"lr_x{scale}" / f"im_{i}.png").is_file()
            and (data / f"gt_k_x{scale}" / f"kernel_{i}.mat").is_file()]


def load_case(data: Path, scale: int, idx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HR cropped to s × LR, LR, ground-truth kernel); images RGB uint8."""
    from scipy.io import loadmat

    from napari_kernelgan.io import read_image

    lr = read_image(data / f"lr_x{scale}" / f"im_{idx}.png")[..., :3]
    hr = read_image(data / "hr" / f"im_{idx}.png")[..., :3]
    hr = hr[:lr.shape[0] * scale, :lr.shape[1] * scale]
    gt = np.asarray(loadmat(data / f"gt_k_x{scale}" / f"kernel_{idx}.mat")["Kernel"], dtype=np.float64)
    # Some stored kernels carry tiny negative taps (down to -0.4 % of the peak);
    # a blur kernel is non-negative, so they are clipped.
    gt = np.clip(gt, 0, None)
    return hr, lr, gt / gt.sum()


def measure(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    from napari_kernelgan.physics import image_psnr, image_ssim

    return image_psnr(sr, hr, shave=scale), image_ssim(sr, hr, shave=scale)


def timed(fn: Any, repeat: int) -> tuple[Any, float]:
    """``fn()``'s result and its fastest wall time over ``repeat`` runs."""
    best, out = np.inf, None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def estimated_kernel(lr: np.ndarray, scale: int, idx: int, args: argparse.Namespace,
                     estimate_options: dict[str, Any], estimate_kernel: Any,
                     threads: int) -> tuple[np.ndarray, float, float | None]:
    """The estimated kernel for ``scale``, the estimation time and the estimate's confidence, from the
    cache when present."""
    cache = None
    if args.kernel_cache is not None:
        tag = json.dumps(estimate_options, sort_keys=True).encode().hex()[:16] if estimate_options else "plain"
        name = f"{args.estimator}_{args.estimate_preset}_{tag}_seed{args.seed}_x{scale}_im{idx}.npz"
        cache = args.kernel_cache / name
        if cache.is_file():
            with np.load(cache) as saved:
                conf = float(saved["confidence"]) if "confidence" in saved else float("nan")
                return saved["kernel"], float(saved["seconds"]), None if np.isnan(conf) else conf
    start = time.perf_counter()
    est = estimate_kernel(lr, scale, estimator=args.estimator, device=args.device, seed=args.seed, threads=threads,
                          **preset_options(args.estimator, args.estimate_preset), **estimate_options)
    seconds = time.perf_counter() - start
    kernel = est.kernel_for(scale)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, kernel=kernel, seconds=seconds,
                 confidence=np.nan if est.confidence is None else est.confidence)
    return kernel, seconds, est.confidence


def run(args: argparse.Namespace) -> int:
    import torch

    from napari_kernelgan import estimate_kernel, super_resolve
    from napari_kernelgan.errors import KernelGANError
    from napari_kernelgan.options import parse_assignments
    from napari_kernelgan.physics import constant_gaussian
    from napari_kernelgan.registry import ESTIMATORS, SR_METHODS

    if args.threads > 0:
        torch.set_num_threads(args.threads)  # for the process; the API gets the same count as threads=
    threads = torch.get_num_threads()
    scale = args.scale
    data = args.data
    ids = available_ids(data, scale, [int(v) for v in args.ids.split(",") if v.strip()])
    if not ids:
        print(f"no DIV2KRK images with hr/, lr_x{scale}/ and gt_k_x{scale}/ under {data}: nothing to benchmark")
        return 0
    if args.limit > 0:
        ids = ids[:args.limit]

    registered = SR_METHODS.names()
    wanted = registered if args.methods.strip() == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in registered]
    if unknown:
        raise SystemExit(f"unknown SR method(s) {', '.join(unknown)}; registered: {', '.join(registered)}")
    methods = [m for m in registered if m in wanted and m != "bicubic"]
    sources = [s.strip() for s in args.kernels.split(",") if s.strip()]
    bad = [s for s in sources if s not in KERNEL_SOURCES]
    if bad:
        raise SystemExit(f"unknown kernel source(s) {', '.join(bad)}; choose from {', '.join(KERNEL_SOURCES)}")
    options = method_options(args.sets)
    notes: list[str] = []
    if "usrnet" in methods:
        if args.usrnet_weights:
            options.setdefault("usrnet", {})["weights"] = args.usrnet_weights
        elif "weights" not in options.get("usrnet", {}):
            methods.remove("usrnet")
            notes.append("usrnet skipped: no `--usrnet-weights PATH` given.")
    estimate_options = parse_assignments(args.estimate_set, flag="--estimate-set")
    # Typos fail now, not an hour into the run.
    for method, opts in options.items():
        SR_METHODS.get(method).resolve(opts)
    if "estimated" in sources:
        ESTIMATORS.get(args.estimator).resolve({**preset_options(args.estimator, args.estimate_preset),
                                                **estimate_options})

    load_start = _load()
    # results[(method, source)][idx] = (psnr, ssim, seconds); bicubic under source "-".
    results: dict[tuple[str, str], dict[int, tuple[float, float, float]]] = {}
    estimate_times: dict[int, float] = {}
    failed: set[str] = set()
    print(f"SR benchmark ×{scale}: images {ids}, methods {['bicubic'] + methods}, kernels {sources}, "
          f"device {args.device}, {threads} torch thread(s)", flush=True)
    # One untimed call per method first, so imports and one-off set-up stay out of the timings.
    _, lr0, gt0 = load_case(data, scale, ids[0])
    for method in ["bicubic"] + methods:
        with contextlib.suppress(Exception):  # reported by the timed run below
            super_resolve(lr0[:48, :48], gt0, scale, sr_method=method, device=args.device, seed=args.seed,
                          threads=threads, **options.get(method, {}))
    for idx in ids:
        hr, lr, gt = load_case(data, scale, idx)
        run_kw = {"device": args.device, "seed": args.seed, "threads": threads}
        bic, elapsed = timed(partial(super_resolve, lr, gt, scale, sr_method="bicubic", **run_kw), args.repeat)
        bic = bic.image
        results.setdefault(("bicubic", "-"), {})[idx] = (*measure(bic, hr, scale), elapsed)
        kernels: dict[str, np.ndarray] = {}
        confidence: float | None = None
        for source in sources:
            if source == "gt":
                kernels[source] = gt
            elif source == "constant":
                kernels[source] = constant_gaussian(scale)
            elif source == "estimated" and "estimated" not in failed:
                try:
                    kernels[source], estimate_times[idx], confidence = estimated_kernel(
                        lr, scale, idx, args, estimate_options, estimate_kernel, threads)
                except KernelGANError as exc:  # an estimator that cannot run here (weights, say)
                    failed.add("estimated")
                    notes.append(f"estimated-kernel column skipped: {exc}")
        line = [f"im_{idx}: bicubic {results[('bicubic', '-')][idx][0]:.2f}"]
        for method in methods:
            if method in failed:
                continue
            for source, k in kernels.items():
                # An estimated kernel gets what super_resolve gives an estimate (the safeguards) unless --unsafe.
                guard = {"safe": True, "confidence": confidence} if source == "estimated" and not args.unsafe else {}
                try:
                    res, elapsed = timed(partial(super_resolve, lr, k, scale, sr_method=method, **run_kw,
                                                 **guard, **options.get(method, {})), args.repeat)
                    sr = res.image
                except Exception as exc:  # a method that cannot run here (weights, memory) is reported, not fatal
                    failed.add(method)
                    notes.append(f"{method} skipped after an error on im_{idx}: {type(exc).__name__}: {exc}")
                    break
                psnr, ssim = measure(sr, hr, scale)
                results.setdefault((method, source), {})[idx] = (psnr, ssim, elapsed)
                line.append(f"{method}/{source} {psnr:.2f} ({elapsed:.1f} s)")
        print(", ".join(line), flush=True)

    load = f"{load_start} at the start and {_load()} at the end"
    emit(render(args, ids, results, estimate_times, notes, threads, load), args.out)
    return 0


def _load() -> str:
    """1-minute load average: other work on the machine slows the timings down."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "unknown"


def render(args: argparse.Namespace, ids: list[int], results: dict, estimate_times: dict[int, float],
           notes: list[str], threads: int, load: str) -> str:
    import torch

    scale = args.scale
    command = "python benchmarks/sr_benchmark.py " + shlex.join(sys.argv[1:]) if sys.argv[1:] else \
        "python benchmarks/sr_benchmark.py"
    env_threads = os.environ.get("OMP_NUM_THREADS")
    cpu = platform.processor() or platform.machine()
    lines = [f"# SR benchmark, DIV2KRK ×{scale}", "",
             "Produced by:", "", "```", (f"OMP_NUM_THREADS={env_threads} " if env_threads else "") + command, "```",
             "",
             f"Images: {', '.join(f'im_{i}' for i in ids)} ({len(ids)}). PSNR / SSIM on Y (BT.601) of the 8-bit "
             f"output, {scale} pixels shaved; time is wall time of `super_resolve` on one image "
             f"({'fastest of ' + str(args.repeat) + ' runs, ' if args.repeat > 1 else ''}"
             f"device `{args.device}`, {threads} torch thread(s), {os.cpu_count()} CPU core(s) visible, "
             f"{cpu}, torch {torch.__version__}; 1-minute load average {load}).", ""]
    bic = results[("bicubic", "-")]
    lines += ["## Means", "", "| method | kernel | PSNR (dB) | SSIM | ΔPSNR vs bicubic (dB) | time (s) |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for (method, source), per in results.items():
        common = [i for i in ids if i in per]
        if not common:
            continue
        psnr = np.mean([per[i][0] for i in common])
        ssim = np.mean([per[i][1] for i in common])
        gain = np.mean([per[i][0] - bic[i][0] for i in common])
        secs = np.mean([per[i][2] for i in common])
        partial = "" if len(common) == len(ids) else f" ({len(common)} images)"
        lines.append(f"| {method} | {source}{partial} | {psnr:.2f} | {ssim:.4f} | {gain:+.2f} | {secs:.2f} |")
    if estimate_times:
        cached = " (times as recorded when the kernels were first estimated into the cache)" \
            if args.kernel_cache is not None else ""
        lines += ["", f"Kernel estimation (`{args.estimator}`, preset `{args.estimate_preset}`, seed {args.seed}) "
                      f"took {np.mean(list(estimate_times.values())):.1f} s per image on average{cached}; "
                      "it is not included in the SR times."]
    keys = list(results)
    # results[key][image] = (psnr, ssim, seconds)
    for title, cell in (("PSNR (dB) / SSIM", lambda r: f"{r[0]:.2f} / {r[1]:.4f}"),
                        ("time (s)", lambda r: f"{r[2]:.2f}")):
        lines += ["", f"## Per image: {title}", "",
                  "| image | " + " | ".join(f"{m} · {s}" if s != "-" else m for m, s in keys) + " |",
                  "| --- |" + " ---: |" * len(keys)]
        for i in ids:
            lines.append(f"| im_{i} | " + " | ".join(cell(results[k][i]) if i in results[k] else "—"
                                                     for k in keys) + " |")
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in dict.fromkeys(notes)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
