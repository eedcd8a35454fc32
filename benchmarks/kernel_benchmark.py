"""Kernel-estimation accuracy and speed on a DIV2KRK-layout folder.

For every image: kernel L1 (aligned, see physics.metrics), kernel PSNR, K-COV
and time of the chosen preset(s), beside the fixed-Gaussian baseline and the
per-image best isotropic Gaussian (an oracle, for context), all in one run.
It also times KernelGAN's deep (layer-by-layer) G against the collapsed G on
the same crops and reports the speed ratio.

    python benchmarks/kernel_benchmark.py --data ../shared/data/div2krk --scale 2 \
        --presets default,paper --out docs/benchmarks.md

``--workers N`` (N > 1) runs images in parallel on a local Dask cluster of N
single-threaded worker processes (``batch.map_tasks``, the engine's executor;
``--threads`` still sets PyTorch's threads inside each image's run); use 1
worker for timings that mean "one image on this machine".
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


def preset_options(estimator: str, preset: str) -> dict:
    """``{"preset": preset}`` for an estimator with presets; ``{}`` for ``default`` of one without
    (``edges:default`` names the estimator's only configuration, and labels its rows)."""
    from napari_kernelgan.errors import BadOptionError
    from napari_kernelgan.registry import ESTIMATORS

    if ESTIMATORS.get(estimator).presets:
        return {"preset": preset}
    if preset != "default":
        raise BadOptionError(f"estimator {estimator!r} has no presets; name it {estimator}:default")
    return {}


def estimator_overrides(items: list[str], labels: list[str]) -> dict[str, dict]:
    """``--set`` items → options per estimator, checked against each estimator's spec now
    (a typo fails at once, not an hour into the run).

    ``KEY=VALUE`` goes to every estimator benchmarked; ``ESTIMATOR:KEY=VALUE`` to that one only.
    """
    from napari_kernelgan.errors import BadOptionError
    from napari_kernelgan.options import parse_assignments
    from napari_kernelgan.registry import ESTIMATORS

    chosen = {label.rpartition(":")[0] or "kernelgan": label.rpartition(":")[2] for label in labels}
    out: dict[str, dict] = {name: {} for name in chosen}
    for item in items:
        head, eq, value = item.partition("=")
        name, colon, key = head.rpartition(":")
        if colon and name not in chosen:
            raise BadOptionError(f"--set {item!r}: {name!r} is not among the estimators benchmarked "
                                 f"({', '.join(chosen)})")
        for target in ([name] if colon else chosen):
            out[target].update(parse_assignments([key + eq + value]))
    for name, preset in chosen.items():
        try:
            ESTIMATORS.get(name).resolve({**preset_options(name, preset), **out[name]})
        except BadOptionError as exc:
            scoped = len(chosen) > 1 and any(":" not in item.partition("=")[0] for item in items)
            raise BadOptionError(f"{exc}" + ("; give an option of one estimator as --set ESTIMATOR:KEY=VALUE"
                                             if scoped else "")) from None
    return out


def load_case(data: Path, scale: int, idx: int) -> tuple[np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    from napari_kernelgan.io import read_image

    lr = read_image(data / f"lr_x{scale}" / f"im_{idx}.png")
    gt = loadmat(data / f"gt_k_x{scale}" / f"kernel_{idx}.mat")["Kernel"]
    return lr, gt


def best_isotropic(gt: np.ndarray, scale: int) -> tuple[float, float]:
    from napari_kernelgan.physics import gaussian_kernel, kernel_l1

    size = 13 if scale == 2 else 31
    sigmas = np.arange(0.4, 6.01 if scale == 2 else 12.01, 0.05)
    errs = [kernel_l1(gaussian_kernel(size, s), gt) for s in sigmas]
    i = int(np.argmin(errs))
    return float(errs[i]), float(sigmas[i])


def add_noise(lr: np.ndarray, sigma: float, idx: int) -> np.ndarray:
    """``lr`` in [0, 1] float32 with white Gaussian noise of std ``sigma``/255, the same pixels every run
    (the noise is seeded by the image number)."""
    if sigma <= 0:
        return lr
    x = lr[..., :3].astype(np.float32) / 255
    return np.clip(x + np.random.default_rng(1000 + idx).normal(0, sigma / 255, x.shape), 0, 1).astype(np.float32)


def run_one(args: tuple) -> dict:
    data, scale, idx, preset, overrides, seed, threads, device, noise = args
    method, _, preset = preset.rpartition(":")  # "edges:default" selects another estimator
    from napari_kernelgan import estimate_kernel
    from napari_kernelgan.physics import analytic_x4, constant_gaussian, kernel_kcov, kernel_l1, kernel_psnr
    from napari_kernelgan.physics.metrics import second_moments

    lr, gt = load_case(Path(data), scale, idx)
    lr = add_noise(lr, noise, idx)
    if device.startswith("cuda"):  # one untimed run first: CUDA's start-up is not the estimator's time
        import torch

        estimate_kernel(lr[:64, :64], scale, estimator=method or "kernelgan", seed=seed, device=device,
                        threads=threads, **{**preset_options(method or "kernelgan", preset), **overrides})
        torch.cuda.synchronize()
    start = time.perf_counter()
    estimator = method or "kernelgan"
    opts = {**preset_options(estimator, preset), **overrides}
    est = estimate_kernel(lr, scale, estimator=estimator, seed=seed, device=device, threads=threads, **opts)
    elapsed = time.perf_counter() - start
    k = est.kernel_for(scale)
    const = constant_gaussian(scale)
    oracle_l1, oracle_sigma = best_isotropic(gt, scale)
    return {
        "image": idx, "preset": f"{method}:{preset}" if method else preset, "time_s": elapsed,
        "iterations": est.iterations,
        "l1": kernel_l1(k, gt), "psnr": kernel_psnr(k, gt), "kcov": kernel_kcov(k, gt),
        "const_l1": kernel_l1(const, gt), "const_psnr": kernel_psnr(const, gt), "const_kcov": kernel_kcov(const, gt),
        "oracle_iso_l1": oracle_l1, "oracle_sigma": oracle_sigma,
        "run_l1": [kernel_l1(rk if scale == 2 else analytic_x4(rk), gt) for rk in est.extras.get("run_kernels", [])],
        "verdicts": est.extras.get("verdicts", []), "confidence": est.confidence,
        "anchor_l1": (kernel_l1(est.extras["anchor_kernel"] if scale == 2 else analytic_x4(est.extras["anchor_kernel"]),
                                gt) if est.extras.get("anchor_kernel") is not None else None),
        # size = sqrt(trace of the second-moment matrix), in pixels of the kernel's own grid
        "size": float(np.sqrt(np.trace(second_moments(k)))), "gt_size": float(np.sqrt(np.trace(second_moments(gt)))),
        "kernel": np.asarray(k).tolist(),
    }


def time_deep_vs_collapsed(steps: int, threads: int, device: str) -> dict:
    """Time one G forward+backward on a batch of 64×64 crops, deep vs collapsed, same weights."""
    import torch

    from napari_kernelgan.devices import resolve_device
    from napari_kernelgan.estimators.networks import DeepLinearG

    torch.set_num_threads(threads)
    dev = resolve_device(device)
    g = DeepLinearG().to(dev)
    x = torch.randn(8, 1, 64, 64, device=dev)
    out = {}
    for name, fn in (("deep", g.forward_deep), ("collapsed", g.forward)):
        for _ in range(3):
            fn(x).sum().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(steps):
            g.zero_grad(set_to_none=True)
            fn(x).sum().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        out[name] = (time.perf_counter() - t) / steps
    out["ratio"] = out["deep"] / out["collapsed"]
    with torch.no_grad():
        out["max_abs_diff"] = float((g.forward_deep(x) - g.forward(x)).abs().max())
    return out


def summarise(rows: list[dict], preset: str) -> dict:
    r = [x for x in rows if x["preset"] == preset]
    l1 = np.array([x["l1"] for x in r])
    const = np.array([x["const_l1"] for x in r])
    return {
        "preset": preset, "n": len(r), "mean_l1": float(l1.mean()), "mean_const_l1": float(const.mean()),
        "mean_psnr": float(np.mean([x["psnr"] for x in r])), "mean_kcov": float(np.mean([x["kcov"] for x in r])),
        "not_worse_than_const": int((l1 <= const).sum()), "mean_time_s": float(np.mean([x["time_s"] for x in r])),
        "max_time_s": float(np.max([x["time_s"] for x in r])),
        "mean_oracle_iso_l1": float(np.mean([x["oracle_iso_l1"] for x in r])),
        "mean_const_psnr": float(np.mean([x["const_psnr"] for x in r])),
        "mean_const_kcov": float(np.mean([x["const_kcov"] for x in r])),
    }


def spearman_confidence(rows: list[dict], preset: str) -> float | None:
    """Rank correlation between the estimator's confidence and its true L1 error (negative is good)."""
    from scipy.stats import spearmanr

    r = [x for x in rows if x["preset"] == preset and x.get("confidence") is not None]
    if len(r) < 3 or len({x["confidence"] for x in r}) < 2:
        return None
    return float(spearmanr([x["confidence"] for x in r], [x["l1"] for x in r]).statistic)


def plot(summaries: list[dict], path: Path, title: str) -> None:
    """Mean L1 against mean seconds per image (log axis), one point per estimator, the fixed Gaussian as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for s in summaries:
        ax.scatter(s["mean_time_s"], s["mean_l1"], s=36)
        ax.annotate(s["preset"], (s["mean_time_s"], s["mean_l1"]), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    ax.axhline(summaries[0]["mean_const_l1"], color="grey", ls="--", lw=1, label="fixed Gaussian")
    ax.axhline(summaries[0]["mean_oracle_iso_l1"], color="grey", ls=":", lw=1, label="best isotropic (oracle)")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per image (log)")
    ax.set_ylabel("mean kernel L1 (lower is better)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def markdown(rows: list[dict], summaries: list[dict], speed: dict | None, cmd: str, env: str, scale: int,
             noise: float = 0.0, plot_path: str | None = None, included: list[str] | None = None) -> str:
    title = f"## Kernel estimation, DIV2KRK ×{scale}" + (f", Gaussian noise σ = {noise:g}/255" if noise else "")
    lines = [title, "", f"Command: `{cmd}`", "", f"Machine: {env}", ""]
    if included:
        lines += ["Rows from separate runs of this script on the same machine (their times are as good as this "
                  "run's only as far as the machine was equally quiet):", ""]
        lines += [f"- {x}" for x in included] + [""]
    lines += [
              "| preset | images | mean L1 ↓ | fixed Gaussian L1 | not worse than fixed | best isotropic (oracle) L1 "
              "| mean kernel PSNR ↑ (fixed) | mean K-COV ↓ (fixed) | mean time s | max time s |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for s in summaries:
        # Bold marks a mean that beats the fixed Gaussian.
        l1 = f"**{s['mean_l1']:.3f}**" if s["mean_l1"] < s["mean_const_l1"] else f"{s['mean_l1']:.3f}"
        lines.append(f"| {s['preset']} | {s['n']} | {l1} | {s['mean_const_l1']:.3f} | "
                     f"{s['not_worse_than_const']}/{s['n']} | {s['mean_oracle_iso_l1']:.3f} | "
                     f"{s['mean_psnr']:.2f} ({s['mean_const_psnr']:.2f}) | {s['mean_kcov']:.2f} "
                     f"({s['mean_const_kcov']:.2f}) | {s['mean_time_s']:.2f} | {s['max_time_s']:.2f} |")
    rho = {s["preset"]: spearman_confidence(rows, s["preset"]) for s in summaries}
    if any(v is not None for v in rho.values()):
        lines += ["", "Confidence against the true error (Spearman rank correlation over the images; "
                  "negative means a lower confidence goes with a larger error): "
                  + ", ".join(f"{p} {v:+.2f}" for p, v in rho.items() if v is not None) + "."]
    if plot_path:
        lines += ["", f"![mean kernel L1 against seconds per image]({plot_path})"]
    if speed:
        lines += ["", f"Collapsed vs deep G (forward+backward, batch 8 of 64×64, {speed['device']}): deep "
                  f"{speed['deep'] * 1e3:.2f} ms, collapsed {speed['collapsed'] * 1e3:.3f} ms, "
                  f"**{speed['ratio']:.0f}× faster**, max |difference| {speed['max_abs_diff']:.1e}."]
    presets = [s["preset"] for s in summaries]
    lines += ["", "Per image (kernel L1; fixed Gaussian in the last columns):", "",
              "| image | " + " | ".join(presets) + " | fixed | best isotropic σ |",
              "|---|" + "---|" * (len(presets) + 2)]
    for idx in sorted({x["image"] for x in rows}):
        vals = {x["preset"]: x for x in rows if x["image"] == idx}
        any_row = next(iter(vals.values()))
        lines.append(f"| {idx} | " + " | ".join(f"{vals[p]['l1']:.3f}" if p in vals else "" for p in presets)
                     + f" | {any_row['const_l1']:.3f} | {any_row['oracle_sigma']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "div2krk")
    ap.add_argument("--scale", type=int, default=2, choices=(2, 4))
    ap.add_argument("--presets", default="default")
    ap.add_argument("--limit", type=int, default=30)
    ap.add_argument("--ids", default="", help="comma-separated image numbers (overrides --limit)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", action="append", default=[], metavar="[ESTIMATOR:]KEY=VALUE",
                    help="an estimator option, e.g. --set restarts=5 (every estimator run) or "
                         "--set kernelgan:restarts=5 (that one only); repeatable")
    ap.add_argument("--speed-steps", type=int, default=20, help="0 skips the deep-vs-collapsed timing")
    ap.add_argument("--out", type=Path, default=None, help="markdown file to write (e.g. docs/benchmarks.md)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--noise", type=float, default=0.0, help="Gaussian noise std added to the LR images, 8-bit units")
    ap.add_argument("--plot", type=Path, default=None, help="PNG of L1 against time (relative links from --out)")
    ap.add_argument("--include", action="append", default=[], metavar="LABEL=RUN.json",
                    help="add the rows of another run of this script (its --json, same data and scale) to the "
                         "tables and the plot under LABEL, e.g. an estimator too slow to run on every image or "
                         "one with other weights; repeatable")
    args = ap.parse_args(argv)
    if not (args.data / f"lr_x{args.scale}").is_dir():
        print(f"no DIV2KRK data at {args.data} (need lr_x{args.scale}/ and gt_k_x{args.scale}/); nothing to do")
        return 0
    ids = [int(i) for i in args.ids.split(",")] if args.ids else list(range(1, args.limit + 1))
    overrides = estimator_overrides(args.set, args.presets.split(","))
    jobs = [(str(args.data), args.scale, i, p, overrides.get(p.rpartition(":")[0] or "kernelgan", {}), args.seed,
             args.threads, args.device, args.noise)
            for p in args.presets.split(",") for i in ids]
    from napari_kernelgan.batch import map_tasks

    done: dict[int, dict] = {}
    for i, row in map_tasks(run_one, jobs, workers=args.workers if args.workers > 1 else None):
        if isinstance(row, BaseException):  # a failed image fails the benchmark, as a serial run would
            raise row
        done[i] = row
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                          if k not in ("run_l1", "verdicts", "kernel")}), flush=True)
    rows = [done[i] for i in range(len(jobs))]  # in job order, whichever finished first
    labels = args.presets.split(",")
    included = []
    for item in args.include:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise SystemExit(f"--include {item!r}: expected LABEL=RUN.json")
        other = json.loads(Path(path).read_text())
        if other.get("scale", args.scale) != args.scale or other.get("noise", args.noise) != args.noise:
            raise SystemExit(f"--include {item!r}: that run has another scale or noise level")
        rows += [{**r, "preset": label} for r in other["rows"] if r["image"] in ids]
        labels.append(label)
        included.append(f"{label}: {other.get('command', path)}")
    summaries = [summarise(rows, p) for p in labels]
    speed = None
    if args.speed_steps:
        speed = time_deep_vs_collapsed(args.speed_steps, args.threads, args.device)
        speed["device"] = args.device
    import torch

    gpu = f"{torch.cuda.get_device_name()}, " if args.device.startswith("cuda") and torch.cuda.is_available() else ""
    env = (f"{gpu}{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
           f"{args.threads} thread(s) per image, {args.workers} image(s) in parallel, device {args.device}"
           + (f", overrides {args.set}" if args.set else ""))
    cmd = "python benchmarks/kernel_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    plot_link = None
    if args.plot:
        plot(summaries, args.plot, f"DIV2KRK ×{args.scale}" + (f", noise σ {args.noise:g}/255" if args.noise else "")
             + f", {args.device}")
        plot_link = os.path.relpath(args.plot, args.out.parent) if args.out else str(args.plot)
    emit(markdown(rows, summaries, speed, cmd, env, args.scale, args.noise, plot_link, included), args.out)
    for s in summaries:
        print(json.dumps(s))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summaries": summaries, "speed": speed, "command": cmd,
                                         "scale": args.scale, "noise": args.noise}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
