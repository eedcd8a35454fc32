"""Kernel maps and spatially varying SR on synthetic spatially varying blur.

Every HR image (the DIV2KRK dev images that have one, ``hr/im_N.png``, and the
bundled samples' originals; luminance, BT.601) is degraded ×2 by
:func:`napari_kernelgan.physics.varying.degrade_varying` with a known kernel
field, one of:

* ``split``   two kernels, one per half (left / right), blended over 16 LR px;
* ``radial``  an isotropic width growing with the distance from the centre
              (σ from 0.8 to 2.2 HR px, quadratically; as field curvature does);
* ``focus``   a smooth random in-focus region (σ 0.75) in an out-of-focus
              field (σ 2.2), as a tilted or uneven sample gives;

and, as a control, the DIV2KRK dev LR images themselves (``uniform``: one
kernel everywhere). Kernels of ``split`` are drawn by the DIV2KRK protocol
(``physics.kernels.random_div2krk_kernel``) until their covariances differ by
a factor of two or more; all draws are seeded by image and case.

Reported per case: the per-pixel kernel L1 (on a 16-pixel grid) of the
``estimate_kernel_map`` field against the true field, beside the fixed
Gaussian, the whole-image ``estimate_kernel`` kernel used everywhere, and the
best uniform kernel (the pointwise median of the true field, the L1-optimal
constant); for ``split``, the share of confident tiles (own confidence ≥
``kernel_map.TRUST_HALF``) lying wholly on one side whose kernel is closer to
that side's true kernel than to the other's; PSNR (Y, 2 px shaved) of bicubic
interpolation, of SR with the whole-image estimate (uniform), with the map
(spatially varying), and with the true field; and the time of the map. The
time of a map of a 1-megapixel image (1000×1000, an LR image mirrored to size)
is measured on its own.

    python benchmarks/kernel_map_benchmark.py --out docs/benchmarks_kernel_map.md
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

from _report import emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DEV_IDS = (2, 3, 6, 13, 14, 23, 24, 27, 30)
CASES = ("split", "radial", "focus")
SAMPLES = ("tissue", "astronaut")
GRID_STEP = 16   # LR px between the points the kernel L1 is measured at


def luminance(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb, dtype=np.float64)
    if arr.ndim == 3:
        arr = arr[..., :3] @ np.array([0.299, 0.587, 0.114])
    return arr


def load_sources(args: argparse.Namespace) -> list[tuple[str, np.ndarray, str | None]]:
    """(name, HR luminance in [0, 1], DIV2KRK id or None)."""
    from napari_kernelgan.io import read_image
    from napari_kernelgan.samples import SAMPLES as BUNDLED

    out = []
    ids = [int(i) for i in args.ids.split(",") if i.strip()]
    for i in ids[:args.limit or None]:
        path = args.data / "hr" / f"im_{i}.png"
        if path.is_file():
            hr = luminance(read_image(path)) / 255.0
            if args.crop:
                hr = hr[:args.crop, :args.crop]
            out.append((f"div2krk {i}", hr, str(i)))
    for key in [s for s in args.samples.split(",") if s.strip()]:
        case = BUNDLED[key]
        hr = np.asarray(case.hr(), dtype=np.float64)
        if case.stacked:
            hr = hr[hr.shape[0] // 2]
        hr = luminance(hr) if (hr.ndim == 3 and case.rgb) else hr
        hr = (hr - hr.min()) / max(float(np.ptp(hr)), 1e-12)
        out.append((f"sample {key}", hr, None))
    return out


def _cov_ratio(a: np.ndarray, b: np.ndarray) -> float:
    from napari_kernelgan.physics.kernels import log_spd
    from napari_kernelgan.physics.metrics import second_moments

    return float(np.linalg.norm(log_spd(second_moments(a)) - log_spd(second_moments(b))))


def true_field(case: str, shape_lr: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(kernels (gy, gx, 13, 13), centres_y, centres_x, info) of a synthetic field over an LR image."""
    from scipy import ndimage

    from napari_kernelgan.physics.conventions import pad_to
    from napari_kernelgan.physics.kernels import gaussian_kernel, random_div2krk_kernel

    h, w = shape_lr
    rng = np.random.default_rng(seed)
    if case == "split":
        while True:
            ka, kb = (pad_to(random_div2krk_kernel(rng, 2), 13) for _ in range(2))
            if _cov_ratio(ka, kb) >= np.log(2.0):
                break
        cx = np.array([0.0, w / 2 - 8, w / 2 + 8, w - 1.0])
        kernels = np.stack([ka, ka, kb, kb])[None]
        return kernels, np.array([(h - 1) / 2]), cx, {"left": ka, "right": kb}
    if case == "radial":
        n = 7
        cy, cx = np.linspace(0, h - 1, n), np.linspace(0, w - 1, n)
        yy, xx = np.meshgrid(cy, cx, indexing="ij")
        r = np.hypot((yy - (h - 1) / 2) / (h / 2), (xx - (w - 1) / 2) / (w / 2)) / np.sqrt(2)
        sig = 0.8 + 1.4 * r ** 2
        kernels = np.array([[gaussian_kernel(13, s) for s in row] for row in sig])
        return kernels, cy, cx, {}
    if case == "focus":
        n = 9
        cy, cx = np.linspace(0, h - 1, n), np.linspace(0, w - 1, n)
        blob = ndimage.gaussian_filter(rng.standard_normal((n, n)), 1.5)
        m = (blob - blob.min()) / max(float(np.ptp(blob)), 1e-12)
        inf = 1.0 / (1.0 + np.exp(-(m - 0.5) * 12))          # in focus where the blob is high
        sig = 2.2 - 1.45 * inf
        kernels = np.array([[gaussian_kernel(13, s) for s in row] for row in sig])
        return kernels, cy, cx, {}
    raise ValueError(case)


def kernel_errors(field, true_k: np.ndarray, cy: np.ndarray, cx: np.ndarray, whole: np.ndarray,
                  shape: tuple[int, int]) -> dict[str, float]:
    from napari_kernelgan.physics import constant_gaussian, kernel_l1
    from napari_kernelgan.physics.grid import tent_weights

    ys = np.arange(GRID_STEP // 2, shape[0], GRID_STEP)
    xs = np.arange(GRID_STEP // 2, shape[1], GRID_STEP)
    wy, wx = tent_weights(cy, ys), tent_weights(cx, xs)
    truth = np.einsum("iy,jx,ijab->yxab", wy, wx, true_k)          # the blend the operator applies
    median = np.median(truth.reshape(-1, *truth.shape[-2:]), axis=0)
    median /= median.sum()
    fixed = constant_gaussian(2)
    est, whole_l1, med_l1, fixed_l1 = [], [], [], []
    for a, y in enumerate(ys):
        for b, x in enumerate(xs):
            t = truth[a, b]
            est.append(kernel_l1(field.kernel_at(y, x), t))
            whole_l1.append(kernel_l1(whole, t))
            med_l1.append(kernel_l1(median, t))
            fixed_l1.append(kernel_l1(fixed, t))
    return {"map_l1": float(np.mean(est)), "whole_l1": float(np.mean(whole_l1)),
            "best_uniform_l1": float(np.mean(med_l1)), "fixed_l1": float(np.mean(fixed_l1))}


def split_sides(field, info: dict, width: int) -> float | None:
    from napari_kernelgan.kernel_map import TRUST_HALF
    from napari_kernelgan.physics import kernel_l1

    good = total = 0
    for i in range(field.grid[0]):
        for j in range(field.grid[1]):
            y0, x0, y1, x1 = field.boxes[i, j]
            if field.confidence[i, j] < TRUST_HALF or (x0 < width / 2 + 8 and x1 > width / 2 - 8):
                continue
            own, other = (info["left"], info["right"]) if x1 <= width / 2 else (info["right"], info["left"])
            k = field.kernels[i, j]
            total += 1
            good += kernel_l1(k, own) < kernel_l1(k, other)
    return good / total if total else None


def run_case(name: str, hr: np.ndarray, case: str, args: argparse.Namespace, lr_uniform=None) -> dict:
    from napari_kernelgan import KernelField, estimate_kernel, estimate_kernel_map, super_resolve
    from napari_kernelgan.physics import image_psnr
    from napari_kernelgan.physics.varying import degrade_varying

    seed = zlib.crc32(f"{name}/{case}/{args.seed}".encode())  # stable across runs and machines
    if case == "uniform":
        lr, true_k, cy, cx, info = lr_uniform
    else:
        h, w = hr.shape[0] // 2, hr.shape[1] // 2
        hr = hr[:2 * h, :2 * w]
        true_k, cy, cx, info = true_field(case, (h, w), seed)
        lr = degrade_varying(hr, true_k, cy, cx, 2).astype(np.float32)
    lr = np.clip(lr, 0.0, 1.0).astype(np.float32)
    est = estimate_kernel(lr, 2, threads=args.threads, seed=args.seed)
    start = time.perf_counter()
    field = estimate_kernel_map(lr, 2, threads=args.threads, seed=args.seed, tile=args.tile)
    map_s = time.perf_counter() - start
    row = {"image": name, "case": case, "grid": f"{field.grid[0]}×{field.grid[1]}", "map_s": map_s,
           **kernel_errors(field, true_k, cy, cx, est.kernel, lr.shape)}
    if case == "split":
        row["sides_ok"] = split_sides(field, info, lr.shape[1])
    truth_field = KernelField(kernels=true_k, centres_y=cy, centres_x=cx,
                              boxes=np.zeros(true_k.shape[:2] + (4,), dtype=int),
                              confidence=np.ones(true_k.shape[:2]), trust=np.ones(true_k.shape[:2]),
                              global_kernel=true_k[0, 0], image_shape=lr.shape)

    def psnr(img: np.ndarray) -> float:
        return image_psnr(np.clip(img, 0, 1) * 255.0, hr * 255.0, shave=2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fallbacks show in the PSNR
        row["bicubic"] = psnr(super_resolve(lr, est.kernel, 2, sr_method="bicubic").image)
        row["uniform_sr"] = psnr(super_resolve(lr, est, 2, threads=args.threads).image)
        start = time.perf_counter()
        row["map_sr"] = psnr(super_resolve(lr, field, 2, threads=args.threads).image)
        row["map_sr_s"] = time.perf_counter() - start
        row["true_field_sr"] = psnr(super_resolve(lr, truth_field, 2, threads=args.threads, safe=False).image)
    print(f"  {name:<16} {case:<8} map L1 {row['map_l1']:.3f} (whole {row['whole_l1']:.3f}, best uniform "
          f"{row['best_uniform_l1']:.3f}, fixed {row['fixed_l1']:.3f})  SR map {row['map_sr'] - row['bicubic']:+.2f} "
          f"uniform {row['uniform_sr'] - row['bicubic']:+.2f} true {row['true_field_sr'] - row['bicubic']:+.2f} dB  "
          f"sides {row.get('sides_ok')}  {map_s:.1f} s", flush=True)
    return row


def megapixel_time(args: argparse.Namespace) -> list[dict]:
    """Time of a map of a 1000×1000 image: a DIV2KRK LR image mirrored to size, and a generated noisy
    fluorescence image (nuclei, puncta, filaments; 500 photons) of that size."""
    from napari_kernelgan import estimate_kernel_map
    from napari_kernelgan.io import read_image
    from napari_kernelgan.synthetic import microscopy_case

    images = []
    ids = [int(i) for i in args.ids.split(",") if i.strip()]
    path = args.data / "lr_x2" / f"im_{ids[0]}.png"
    if path.is_file():
        lr = luminance(read_image(path)) / 255.0
        lr = np.pad(lr, ((0, max(0, 1000 - lr.shape[0])), (0, max(0, 1000 - lr.shape[1]))), mode="symmetric")
        images.append((f"{path.name} mirrored to size", np.ascontiguousarray(lr[:1000, :1000], dtype=np.float32)))
    fluo = microscopy_case(args.seed, shape=(2000, 2000), scale=2, kind="mixed", photons=500.0).lr
    images.append(("generated fluorescence, 500 photons, uint16", fluo))
    estimate_kernel_map(images[-1][1][:256, :256], 2, threads=args.threads)  # load weights and warm up once
    out = []
    for label, img in images:
        start = time.perf_counter()
        field = estimate_kernel_map(img, 2, threads=args.threads, seed=args.seed, tile=args.tile)
        out.append({"seconds": time.perf_counter() - start, "grid": f"{field.grid[0]}×{field.grid[1]}",
                    "source": label})
    return out


def markdown(rows: list[dict], mp: list[dict], cmd: str, env: str) -> str:
    def mean(key: str, sel: list[dict]) -> float:
        vals = [r[key] for r in sel if r.get(key) is not None]
        return float(np.mean(vals)) if vals else float("nan")

    lines = ["## Kernel maps and spatially varying SR", "", f"Command: `{cmd}`", "", f"Machine: {env}", "",
             "Per case: kernel L1 on a 16-pixel grid against the true field (↓), and PSNR gain over bicubic "
             "interpolation (Y, 2 px shaved) of SR with the whole-image kernel (uniform), with the map, and with "
             "the true field. Estimator `auto`, SR `closed-form` with the API's defaults (safeguards on).", "",
             "| case | images | map L1 | whole-image L1 | best uniform L1 | fixed L1 | uniform SR Δ | map SR Δ | "
             "map − uniform | true-field SR Δ | sides right | map s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for case in (*CASES, "uniform"):
        sel = [r for r in rows if r["case"] == case]
        if not sel:
            continue
        sides = [r["sides_ok"] for r in sel if r.get("sides_ok") is not None]
        lines.append(
            f"| {case} | {len(sel)} | {mean('map_l1', sel):.3f} | {mean('whole_l1', sel):.3f} | "
            f"{mean('best_uniform_l1', sel):.3f} | {mean('fixed_l1', sel):.3f} | "
            f"{mean('uniform_sr', sel) - mean('bicubic', sel):+.2f} | "
            f"{mean('map_sr', sel) - mean('bicubic', sel):+.2f} | "
            f"{mean('map_sr', sel) - mean('uniform_sr', sel):+.2f} | "
            f"{mean('true_field_sr', sel) - mean('bicubic', sel):+.2f} | "
            + (f"{100 * np.mean(sides):.0f} %" if sides else "—") + f" | {mean('map_s', sel):.1f} |")
    varying = [r for r in rows if r["case"] in CASES]
    if varying:
        gain = mean("map_sr", varying) - mean("uniform_sr", varying)
        lines += ["", f"Spatially varying cases together ({len(varying)}): map SR − uniform SR **{gain:+.2f} dB**; "
                      f"map L1 {mean('map_l1', varying):.3f} against {mean('whole_l1', varying):.3f} for the "
                      f"whole-image kernel and {mean('best_uniform_l1', varying):.3f} for the best uniform one."]
    for m in mp:
        lines += ["", f"Map of a 1000×1000 image ({m['source']}; {m['grid']} tiles): **{m['seconds']:.1f} s**."]
    lines += ["", "Per image:", "", "| image | case | grid | map L1 | whole L1 | best uniform L1 | bicubic dB | "
              "uniform SR | map SR | true-field SR | sides right | map s |", "|---" * 12 + "|"]
    for r in rows:
        sides = "—" if r.get("sides_ok") is None else f"{100 * r['sides_ok']:.0f} %"
        lines.append(f"| {r['image']} | {r['case']} | {r['grid']} | {r['map_l1']:.3f} | {r['whole_l1']:.3f} | "
                     f"{r['best_uniform_l1']:.3f} | {r['bicubic']:.2f} | {r['uniform_sr']:.2f} | {r['map_sr']:.2f} | "
                     f"{r['true_field_sr']:.2f} | {sides} | {r['map_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "div2krk")
    p.add_argument("--ids", default=",".join(map(str, DEV_IDS)))
    p.add_argument("--limit", type=int, default=0, help="at most this many DIV2KRK images (0: all)")
    p.add_argument("--samples", default=",".join(SAMPLES), help="bundled samples to degrade too ('' for none)")
    p.add_argument("--cases", default=",".join((*CASES, "uniform")))
    p.add_argument("--crop", type=int, default=0, help="HR crop side (0: whole images)")
    p.add_argument("--tile", type=int, default=None, help="tile side (default: the API default)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-megapixel", action="store_true", help="skip the 1-megapixel timing")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    import torch

    from napari_kernelgan.io import read_image, read_kernel

    torch.set_num_threads(args.threads)
    cases = [c for c in args.cases.split(",") if c.strip()]
    rows = []
    for name, hr, did in load_sources(args):
        for case in cases:
            if case == "uniform":
                if did is None:
                    continue
                lr = luminance(read_image(args.data / "lr_x2" / f"im_{did}.png")) / 255.0
                if args.crop:
                    lr = lr[:args.crop // 2, :args.crop // 2]
                k = read_kernel(args.data / "gt_k_x2" / f"kernel_{did}.mat")
                from napari_kernelgan.physics.conventions import pad_to

                true_k = pad_to(np.clip(k, 0, None) / np.clip(k, 0, None).sum(), 13)[None, None]
                rows.append(run_case(name, hr[:2 * lr.shape[0], :2 * lr.shape[1]], case, args,
                                     (lr, true_k, np.array([0.0]), np.array([0.0]), {})))
            else:
                rows.append(run_case(name, hr, case, args))
    mp = [] if args.no_megapixel else megapixel_time(args)
    env = (f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} thread(s)")
    cmd = "python benchmarks/kernel_map_benchmark.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "megapixel": mp, "command": cmd}, indent=1, default=float))
    emit(markdown(rows, mp, cmd, env), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
