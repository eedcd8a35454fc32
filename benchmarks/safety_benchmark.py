"""SR that survives a wrong kernel and noise: the safeguards of ``super_resolve`` measured.

Per case, PSNR (Y, BT.601, ``s`` pixels shaved; fluorescence: the one channel, range of the HR object)
of

* ``bicubic``     bicubic interpolation (``physics.resize.imresize``),
* ``true``        SR with the true kernel given as an array (API defaults: kept as they were, no safeguards),
* ``true·safe``   the same with ``safe=True`` (measured noise, the check against bicubic),
* ``est·before``  the two-line path ``super_resolve(lr, estimate_kernel(lr, 2), 2)`` without the
                  safeguards (``safe=False``: σ = 0, what that path did before),
* ``est·σ2``      the estimate with the former blind default (``safe=False, sigma=2``),
* ``est·after``   the two-line path as it is now (API defaults: safe for an estimate),

and the noise level the safeguards chose (and whether they fell back to bicubic). Cases:

1. ``mixed``  a 256×256 crop of DIV2KRK HR images whose left half is blurred with a narrow Gaussian
   (σ 0.7) and right half with a wide one (σ 2.2), each ×2 subsampled (``physics.degrade``), 8-bit;
2. ``fluo``   generated noisy uint16 fluorescence (``synthetic.microscopy_case``, Poisson + read noise);
3. ``div2krk`` the nine DIV2KRK dev HR images, ×2, a 160×160 LR crop of the official LR with the gt kernel;
4. ``noisy``  DIV2KRK LR crops with Gaussian noise σ = 10/255 added (8-bit).

Nothing here tunes anything: the safeguards' constants were chosen on synthetic data
(see ``napari_kernelgan.sr._safety``).

    python benchmarks/safety_benchmark.py --out docs/benchmarks_safety.md
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from _report import emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DEV_IDS = (2, 3, 6, 13, 14, 23, 24, 27, 30)
MIXED_IDS = (2, 13, 27)
NOISY_IDS = (2, 13, 27)
FLUO_PHOTONS = (30.0, 100.0, 300.0, 1000.0)
COLUMNS = ("bicubic", "true", "true·safe", "est·before", "est·σ2", "est·after")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "div2krk")
    p.add_argument("--estimator", default="auto", help="kernel estimator of the two-line path (the API default)")
    p.add_argument("--cases", default="mixed,fluo,div2krk,noisy", help="comma-separated cases to run")
    p.add_argument("--crop", type=int, default=160, help="LR crop side of the DIV2KRK cases")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="markdown report (a .json beside it)")
    return p.parse_args(argv)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def _load(data: Path, idx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.io import loadmat

    from napari_kernelgan.io import read_image

    lr = read_image(data / "lr_x2" / f"im_{idx}.png")[..., :3]
    hr = read_image(data / "hr" / f"im_{idx}.png")[..., :3]
    k = np.clip(np.asarray(loadmat(data / "gt_k_x2" / f"kernel_{idx}.mat")["Kernel"], dtype=np.float64), 0, None)
    return hr, lr, k / k.sum()


def _crop(hr: np.ndarray, lr: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = lr.shape[:2]
    r, c = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return hr[2 * r:2 * (r + side), 2 * c:2 * (c + side)], lr[r:r + side, c:c + side]


def cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    """(name, LR, HR reference, true kernel, psnr function) for every case asked for."""
    from napari_kernelgan.physics import degrade, gaussian_kernel, image_psnr

    wanted = {c.strip() for c in args.cases.split(",") if c.strip()}
    out: list[dict[str, Any]] = []
    have_data = (args.data / "hr").is_dir()

    def rgb_psnr(hr: np.ndarray) -> Any:
        return lambda sr: image_psnr(sr, hr, shave=2)

    if "mixed" in wanted and have_data:
        narrow, wide = gaussian_kernel(13, 0.7), gaussian_kernel(13, 2.2)
        for idx in MIXED_IDS:
            hr = _load(args.data, idx)[0][400:656, 600:856].astype(np.float64) / 255.0
            lr = np.concatenate([degrade(hr, narrow, 2)[:, :64], degrade(hr, wide, 2)[:, 64:]], axis=1)
            # No single kernel is right: the "true" column uses the narrow one.
            out.append({"case": "mixed", "name": f"im_{idx}", "lr": _u8(lr), "kernel": narrow,
                        "psnr": rgb_psnr(_u8(hr))})
    if "fluo" in wanted:
        from napari_kernelgan.synthetic import microscopy_case

        for seed, photons in enumerate(FLUO_PHOTONS):
            mc = microscopy_case(seed, shape=(256, 256), photons=photons)

            def fluo_psnr(sr: np.ndarray, mc: Any = mc) -> float:
                ref = mc.hr
                return image_psnr(np.asarray(sr, dtype=np.float64) - mc.offset, ref, shave=2,
                                  data_range=float(ref.max()))
            out.append({"case": "fluo", "name": f"seed {seed}, {photons:g} photons", "lr": mc.lr,
                        "kernel": mc.kernel, "psnr": fluo_psnr})
    if "div2krk" in wanted and have_data:
        for idx in DEV_IDS:
            hr, lr, k = _load(args.data, idx)
            hr, lr = _crop(hr, lr, args.crop)
            out.append({"case": "div2krk", "name": f"im_{idx}", "lr": lr, "kernel": k, "psnr": rgb_psnr(hr)})
    if "noisy" in wanted and have_data:
        rng = np.random.default_rng(0)
        for idx in NOISY_IDS:
            hr, lr, k = _load(args.data, idx)
            hr, lr = _crop(hr, lr, args.crop)
            noisy = _u8(lr / 255.0 + rng.normal(0.0, 10.0 / 255.0, lr.shape))
            out.append({"case": "noisy", "name": f"im_{idx}", "lr": noisy, "kernel": k, "psnr": rgb_psnr(hr)})
    return out


def run_case(case: dict[str, Any], estimator: str, threads: int) -> dict[str, Any]:
    from napari_kernelgan import estimate_kernel, super_resolve
    from napari_kernelgan.physics import imresize

    lr, k, psnr = case["lr"], case["kernel"], case["psnr"]
    kw = {"device": "cpu", "threads": threads}
    est = estimate_kernel(lr, 2, estimator=estimator, **kw)
    row: dict[str, Any] = {"case": case["case"], "name": case["name"]}
    bic = imresize(lr.astype(np.float64), 2)
    row["bicubic"] = psnr(bic)
    row["true"] = psnr(super_resolve(lr, k, 2, **kw).image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        safe_true = super_resolve(lr, k, 2, safe=True, **kw)
        row["true·safe"] = psnr(safe_true.image)
        row["est·before"] = psnr(super_resolve(lr, est, 2, safe=False, **kw).image)
        row["est·σ2"] = psnr(super_resolve(lr, est, 2, safe=False, sigma=2.0, **kw).image)
        start = time.perf_counter()
        after = super_resolve(lr, est, 2, **kw)
        row["seconds_after"] = time.perf_counter() - start
    row["est·after"] = psnr(after.image)
    row["sigma_after"] = after.options.get("sigma")
    row["noise_sigma"] = after.options.get("noise_sigma")
    row["fallback"] = after.options.get("fallback")
    row["confidence"] = est.confidence
    return row


def render(args: argparse.Namespace, rows: list[dict[str, Any]], elapsed: float) -> str:
    command = "python benchmarks/safety_benchmark.py " + shlex.join(sys.argv[1:])
    lines = ["# Safe SR with an estimated kernel", "", "Produced by:", "", "```", command.strip(), "```", "",
             f"Estimator `{args.estimator}`, ×2, CPU, {args.threads} torch thread(s), {elapsed:.0f} s in all. "
             "PSNR in dB; Δ = against bicubic.", "",
             "## Means per case (Δ vs bicubic, dB)", "",
             "| case | n | bicubic | " + " | ".join(c for c in COLUMNS[1:]) + " | worst est·after Δ | fallbacks |",
             "| --- | ---: | ---: |" + " ---: |" * (len(COLUMNS) - 1) + " ---: | ---: |"]
    for case in dict.fromkeys(r["case"] for r in rows):
        sub = [r for r in rows if r["case"] == case]
        bic = np.mean([r["bicubic"] for r in sub])
        gains = [np.mean([r[c] - r["bicubic"] for r in sub]) for c in COLUMNS[1:]]
        worst = min(r["est·after"] - r["bicubic"] for r in sub)
        falls = sum(1 for r in sub if r["fallback"])
        lines.append(f"| {case} | {len(sub)} | {bic:.2f} | " + " | ".join(f"{g:+.2f}" for g in gains)
                     + f" | {worst:+.2f} | {falls} |")
    lines += ["", "## Per image (PSNR, dB)", "",
              "| case | image | " + " | ".join(COLUMNS) + " | σ chosen | noise σ | fallback |",
              "| --- | --- |" + " ---: |" * len(COLUMNS) + " ---: | ---: | --- |"]
    for r in rows:
        sigma = "—" if r["sigma_after"] is None else f"{r['sigma_after']:.3g}"
        lines.append(f"| {r['case']} | {r['name']} | " + " | ".join(f"{r[c]:.2f}" for c in COLUMNS)
                     + f" | {sigma} | {r['noise_sigma']:.2f} | {r['fallback'] or '—'} |")
    if "mixed" in {r["case"] for r in rows}:
        lines += ["", "In the mixed case no single kernel is right; the `true` column there uses the narrow one."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    start = time.perf_counter()
    rows = []
    for case in cases(args):
        row = run_case(case, args.estimator, args.threads)
        rows.append(row)
        print(f"{row['case']} {row['name']}: " + ", ".join(f"{c} {row[c]:.2f}" for c in COLUMNS)
              + f" (σ {row['sigma_after']}, fallback {row['fallback']})", flush=True)
    if not rows:
        print(f"nothing to run (no data under {args.data}?)")
        return 0
    emit(render(args, rows, time.perf_counter() - start), args.out)
    if args.out is not None:
        from napari_kernelgan.io import atomic_path

        with atomic_path(args.out.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps({"estimator": args.estimator, "rows": rows}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
