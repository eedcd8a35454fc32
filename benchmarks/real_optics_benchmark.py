"""SR of real fluorescence degraded ×2 with physical and measured bead PSFs, as a user runs it.

Cases (``benchmarks/_optics_cases.py``, whose docstring says how each is made): the REPORT images of
``shared/data/real_dev`` (``--dev``: the DEVELOPMENT ones), each blurred with every PSF family once (widefield in
focus, defocused, at depth in a mismatched medium, with spherical aberration, confocal, and a measured bead
stack, widefield and confocal), ×2 subsampled, Poisson–Gaussian noise at 50–2000 photons, uint16.

Each case is written as files in a temporary folder (the LR image and the bead stack as ImageJ TIFFs with their
pixel size, the true PSF as a kernel TIFF) and read back through the public API, every option at its default:
``io.read_image``; ``read_kernel`` (the true PSF) or, for a bead case, ``measured_psf.kernel_from_psf_file``
with the image's pixel size from its file (the measured kernel stands in for the true PSF there);
``super_resolve(image, kernel, 2)``; ``blind_super_resolve(image, 2)`` (whose ``estimate`` is
``estimate_kernel(image)``'s `auto` kernel). Baselines in the same run: bicubic (``physics.resize.imresize``),
the fixed Gaussian kernel and the best isotropic Gaussian (an oracle fitted to the true PSF).

Scores against the HR target (4 px shaved, PSNR's range the target's peak above the camera offset): PSNR,
SSIM and ``texture_excess`` (the fine texture an output adds beyond the truth's: ringing, grids, amplified noise;
0 = none). Kernel L1 on the common 41×41 support against the full PSF.

    python benchmarks/real_optics_benchmark.py --out docs/benchmarks_real_optics.md \\
        --json docs/benchmarks_real_optics.json
    python benchmarks/real_optics_benchmark.py --dev          # the DEVELOPMENT cases (for choosing constants)
    python benchmarks/real_optics_benchmark.py --quick        # two small cases: a smoke test
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from _optics_cases import (  # benchmarks/ is on sys.path when a script runs
    DATA,
    DEV_SEED,
    DEVELOPMENT,
    L1_SIDE,
    OFFSET,
    REPORT,
    REPORT_SEED,
    SCALE,
    Case,
    build,
    draw_cases,
    oracle_gaussian_l1,
    write_case,
)
from _report import emit, emit_json

SHAVE = 4
QUICK_FAMILIES = ("widefield", "bead_widefield")
QUICK_CROP = 128
# The targets every report checks, in the order they are listed (see the summary block).
TRUE_MARGIN_DB, BLIND_MARGIN_DB, AUTO_L1_TARGET = 0.5, 2.5, 0.30


def score(out: np.ndarray, case: Case) -> dict:
    """PSNR (dB), SSIM and texture excess of an output against the case's HR target."""
    from napari_kernelgan.physics import image_psnr, image_ssim
    from napari_kernelgan.physics.metrics import texture_excess

    est = np.asarray(out, dtype=np.float64)
    rng = float(case.hr.max() - OFFSET)
    return {"psnr": image_psnr(est, case.hr, shave=SHAVE, data_range=rng),
            "ssim": image_ssim(est, case.hr, shave=SHAVE, data_range=rng),
            "texture": texture_excess(est, case.hr, shave=SHAVE, data_range=rng)}


def _ours(caught: list[warnings.WarningMessage]) -> list[str]:
    """The package's own warnings among ``caught``, as 'Category: message' (first line)."""
    out = []
    for w in caught:
        if "napari_kernelgan" in (w.category.__module__ or "") or "napari_kernelgan" in str(w.filename):
            text = f"{w.category.__name__}: {str(w.message).splitlines()[0]}"
            if text not in out:
                out.append(text)
    return out


def run_case(case: Case, folder: Path, threads: int) -> dict:
    """Every column for one case, the user's way (files, public API, defaults)."""
    from napari_kernelgan import blind_super_resolve, read_image, read_kernel, super_resolve
    from napari_kernelgan.measured_psf import image_pixel_size, kernel_from_psf_file
    from napari_kernelgan.physics import constant_gaussian, kernel_l1, pad_to
    from napari_kernelgan.physics.resize import imresize

    spec = case.spec
    files = write_case(case, folder)
    row: dict = {"case": spec.name, "image": spec.image, "family": spec.family, "photons": spec.photons,
                 "fwhm_px": case.fwhm_px, "psf_side": int(case.psf_full.shape[0]), "spec": dataclasses.asdict(spec)}
    lr = read_image(files.lr)
    row["bicubic"] = score(imresize(lr.astype(np.float64), SCALE), case)
    truth = case.truth_41
    row["kernel_given"] = "measured" if files.bead is not None else "model"
    try:
        if files.bead is not None:
            measured = kernel_from_psf_file(files.bead, SCALE, pixel_size=image_pixel_size(files.lr))
            kernel = measured.kernel
            row["measured"] = {"side": measured.side, "plane": measured.plane, "mass_kept": measured.mass_kept,
                               "l1": kernel_l1(pad_to(kernel, L1_SIDE), truth)}
        else:
            kernel = read_kernel(files.psf)
    except Exception as exc:  # a refused bead stack is what the user would see: reported, not hidden
        row["error"] = f"{type(exc).__name__}: {exc}"
        kernel = None
    if kernel is not None:
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = super_resolve(lr, kernel, SCALE, threads=threads)
        row["t_true"] = time.perf_counter() - t0
        row["true"] = score(res.image, case)
        row["true_warnings"] = _ours(caught)
        row["true_record"] = {k: res.options.get(k) for k in ("sigma", "noise_sigma", "safety_step",
                                                              "poisson_refinement", "fallback")}
    if files.bead is not None:
        # The model PSF on a bead case: what the measurement cost against knowing the PSF exactly.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row["model"] = score(super_resolve(lr, read_kernel(files.psf), SCALE, threads=threads).image, case)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        blind = blind_super_resolve(lr, SCALE, threads=threads)
    row["t_blind"] = time.perf_counter() - t0
    row["t_auto"] = blind.estimate.elapsed
    row["blind"] = score(blind.image, case)
    row["blind_warnings"] = _ours(caught)
    row["auto_confidence"] = blind.estimate.confidence
    row["l1_auto"] = kernel_l1(pad_to(blind.estimate.kernel, L1_SIDE), truth)
    row["l1_fixed"] = kernel_l1(pad_to(constant_gaussian(SCALE), L1_SIDE), truth)
    row["l1_oracle"], row["oracle_sigma"] = oracle_gaussian_l1(truth)
    return row


# --------------------------------------------------------------------------------------------- the report
def _mean(rows: list[dict], key: str, sub: str | None = None) -> float:
    vals = [r[key][sub] if sub else r[key] for r in rows if key in r]
    return float(np.mean(vals)) if vals else float("nan")


def checks(rows: list[dict]) -> list[dict]:
    """Each target of the real-optics brief, PASS or MISS, with the numbers behind it."""
    n = len(rows)
    with_true = [r for r in rows if "true" in r]
    d_true = [(r["true"]["psnr"] - r["bicubic"]["psnr"], r["case"]) for r in with_true]
    d_blind = [(r["blind"]["psnr"] - r["bicubic"]["psnr"], r["case"]) for r in rows]
    failed = [r["case"] for r in rows if "true" not in r]
    worst_true = min(d_true) if d_true else (float("nan"), "–")
    worst_blind = min(d_blind)
    silent = [r["case"] for r in with_true if r["true"]["psnr"] < r["bicubic"]["psnr"] and not r["true_warnings"]]
    below_blind = [c for d, c in d_blind if d < 0]
    worse_fixed = [r["case"] for r in rows if r["l1_auto"] > r["l1_fixed"]]
    ok_true = sum(d >= TRUE_MARGIN_DB for d, _ in d_true)
    beads = [r for r in rows if "model" in r]
    ok_model = sum(r["model"]["psnr"] - r["bicubic"]["psnr"] >= TRUE_MARGIN_DB for r in beads)
    out = [
        {"target": f"SR with the true PSF ≥ bicubic + {TRUE_MARGIN_DB} dB on every case",
         "pass": ok_true == n,
         "numbers": f"{ok_true}/{n} cases; worst {worst_true[0]:+.2f} dB ({worst_true[1]})"
                    + (f"; kernel refused on {', '.join(failed)}" if failed else "")
                    + (f"; the {len(beads)} bead cases SR'd with the model PSF instead of the measured kernel: "
                       f"{ok_model}/{len(beads)}" if beads else "")},
        {"target": "SR with the true PSF on average ≥ blind SR",
         "pass": _mean(with_true, "true", "psnr") >= _mean(with_true, "blind", "psnr"),
         "numbers": f"true {_mean(with_true, 'true', 'psnr'):.2f} dB, "
                    f"blind {_mean(with_true, 'blind', 'psnr'):.2f} dB"},
        {"target": "SR with the true PSF never below bicubic without a warning",
         "pass": not silent and not failed,
         "numbers": f"{len(silent)} silent" + (f" ({', '.join(silent)})" if silent else "")
                    + f"; {sum(bool(r['true_warnings']) for r in with_true)} warned"},
        {"target": f"blind SR ≥ bicubic + {BLIND_MARGIN_DB} dB on average",
         "pass": float(np.mean([d for d, _ in d_blind])) >= BLIND_MARGIN_DB,
         "numbers": f"mean {np.mean([d for d, _ in d_blind]):+.2f} dB (blind {_mean(rows, 'blind', 'psnr'):.2f}, "
                    f"bicubic {_mean(rows, 'bicubic', 'psnr'):.2f})"},
        {"target": "blind SR never below bicubic",
         "pass": not below_blind,
         "numbers": f"{len(below_blind)} below; worst {worst_blind[0]:+.2f} dB ({worst_blind[1]})"},
        {"target": f"`auto` kernel L1 (41×41) ≤ {AUTO_L1_TARGET:.2f} on average",
         "pass": _mean(rows, "l1_auto") <= AUTO_L1_TARGET,
         "numbers": f"auto {_mean(rows, 'l1_auto'):.3f}; fixed Gaussian {_mean(rows, 'l1_fixed'):.3f}; "
                    f"best isotropic Gaussian (oracle) {_mean(rows, 'l1_oracle'):.3f}"},
        {"target": "`auto` no worse than the fixed Gaussian on any case",
         "pass": not worse_fixed,
         "numbers": f"{len(worse_fixed)}/{n} worse" + (f" ({', '.join(worse_fixed)})" if worse_fixed else "")},
    ]
    return out


def _cell(s: dict | None) -> str:
    return "–" if s is None else f"{s['psnr']:.2f} / {s['ssim']:.3f} / {s['texture']:.3f}"


def _warn_names(items: list[str]) -> str:
    return ", ".join(sorted({i.split(":")[0] for i in items})) or "–"


def report(rows: list[dict], meta: dict) -> str:
    lines = [f"# Real optics: SR of real fluorescence degraded with physical and measured PSFs ({meta['set']})", "",
             f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}, {meta['cpus']} CPUs shared with other work, {meta['threads']} torch "
             f"thread(s); load average {meta['load_start']:.1f} at the start, {meta['load_end']:.1f} at the end: "
             f"timings were measured under that load. {meta['elapsed']:.0f} s in all.", "",
             f"Images: {', '.join(meta['images'])} (seed {meta['seed']}, {len(rows)} cases). "
             "How the cases are made: `benchmarks/_optics_cases.py`. Scores are PSNR dB / SSIM / texture excess "
             "(`physics.metrics.texture_excess`: fine texture added beyond the truth's, 0 = none) against the HR "
             f"target, {SHAVE} px shaved; kernel L1 on 41×41 against the full PSF (0 = identical, 2 = disjoint). "
             "*true PSF*: `super_resolve(image, kernel, 2)` with the model PSF read from its file, or for bead cases "
             "the kernel measured from the bead stack file (`kernel_from_psf_file`); *blind*: "
             "`blind_super_resolve(image, 2)`, whose estimate is the `auto` kernel. All defaults. Δ: minus bicubic "
             "(dB). *measured L1*: the kernel measured from the bead stack against the full PSF (its side); "
             "*Δ model PSF*: bead cases SR'd with the model PSF instead, minus bicubic (what the measurement "
             "costs). *conf*: the `auto` estimate's confidence. Warnings: the package's own, by category.", "",
             "## Targets", "", "| target | result | numbers |", "|---|---|---|"]
    for c in meta["checks"]:
        lines.append(f"| {c['target']} | {'PASS' if c['pass'] else '**MISS**'} | {c['numbers']} |")
    lines += ["| DIV2KRK figures unchanged; `auto` ≤ 2 s per DIV2KRK image | not measured here | see "
              "[benchmarks_kernel_x2.md](benchmarks_kernel_x2.md), "
              "[benchmarks_kernel_x4.md](benchmarks_kernel_x4.md) |",
              "", "## Means by PSF family", ""]
    lines += _group_table(rows, "family")
    lines += ["", "## Means by photons", ""]
    lines += _group_table(rows, "photons")
    lines += ["", "## Per image", "",
              "| case | photons | FWHM px | PSF side | bicubic | true PSF | blind | Δ true | Δ blind | auto L1 | "
              "fixed L1 | best Gaussian L1 (σ) | measured L1 | Δ model PSF | conf | warnings (true; blind) | "
              "t true s | t blind s (auto) |", "|" + "---|" * 18]
    for r in rows:
        d_true = f"{r['true']['psnr'] - r['bicubic']['psnr']:+.2f}" if "true" in r else "refused"
        meas = f"{r['measured']['l1']:.3f} ({r['measured']['side']} px)" if "measured" in r else "–"
        d_model = f"{r['model']['psnr'] - r['bicubic']['psnr']:+.2f}" if "model" in r else "–"
        lines.append(
            f"| {r['case']} | {r['photons']:g} | {r['fwhm_px']:.2f} | {r['psf_side']} | {_cell(r['bicubic'])} | "
            f"{_cell(r.get('true'))} | {_cell(r['blind'])} | {d_true} | "
            f"{r['blind']['psnr'] - r['bicubic']['psnr']:+.2f} | {r['l1_auto']:.3f} | {r['l1_fixed']:.3f} | "
            f"{r['l1_oracle']:.3f} ({r['oracle_sigma']:.2f}) | {meas} | {d_model} | {r['auto_confidence']:.2f} | "
            f"{_warn_names(r.get('true_warnings', []))}; {_warn_names(r['blind_warnings'])} | "
            f"{r.get('t_true', float('nan')):.1f} | {r['t_blind']:.1f} ({r['t_auto']:.1f}) |")
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "Refused kernels: " + "; ".join(f"{r['case']}: {r['error']}" for r in errors)]
    lines += ["", "Optics per case (NA, immersion, sample index and depth, defocus or stage plane, aberration, "
              "pinhole, HR pixel) are in the JSON beside this report."]
    return "\n".join(lines) + "\n"


def _group_table(rows: list[dict], key: str) -> list[str]:
    out = ["| " + key + " | cases | bicubic | true PSF | blind | Δ true | Δ blind | auto L1 | fixed L1 | "
           "best Gaussian L1 |", "|" + "---|" * 10]
    groups = sorted({r[key] for r in rows}, key=lambda v: (isinstance(v, str), v))
    for g in groups + [None]:
        sel = [r for r in rows if g is None or r[key] == g]
        tsel = [r for r in sel if "true" in r]
        cells = []
        for col, pool in (("bicubic", sel), ("true", tsel), ("blind", sel)):
            cells.append(f"{_mean(pool, col, 'psnr'):.2f} / {_mean(pool, col, 'ssim'):.3f} / "
                         f"{_mean(pool, col, 'texture'):.3f}")
        d_true = np.mean([r["true"]["psnr"] - r["bicubic"]["psnr"] for r in tsel]) if tsel else float("nan")
        d_blind = np.mean([r["blind"]["psnr"] - r["bicubic"]["psnr"] for r in sel])
        label = "**all**" if g is None else (f"{g:g}" if isinstance(g, float) else g)
        out.append(f"| {label} | {len(sel)} | " + " | ".join(cells) + f" | {d_true:+.2f} | {d_blind:+.2f} | "
                   f"{_mean(sel, 'l1_auto'):.3f} | {_mean(sel, 'l1_fixed'):.3f} | {_mean(sel, 'l1_oracle'):.3f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", action="store_true", help="the DEVELOPMENT images (for choosing constants)")
    ap.add_argument("--quick", action="store_true", help="two small cases (a smoke test)")
    ap.add_argument("--rounds", type=int, default=1, help="every image × PSF family this many times")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: best on a shared machine)")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    ap.add_argument("--json", type=Path, default=None, help="write the per-case numbers here")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data folder {args.data}: nothing to measure")
        return 0
    names, seed = (DEVELOPMENT, DEV_SEED) if args.dev else (REPORT, REPORT_SEED)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    if args.quick:
        specs = draw_cases(names[:1], 1, seed, crop=QUICK_CROP, families=QUICK_FAMILIES, data=args.data)
    else:
        specs = draw_cases(names, args.rounds, seed, data=args.data)
    rows = []
    with tempfile.TemporaryDirectory(prefix="real-optics-") as tmp:
        for spec in specs:
            rows.append(run_case(build(spec, args.data), Path(tmp), args.threads))
            r = rows[-1]
            print(f"{spec.name} {spec.photons:g}: bicubic {r['bicubic']['psnr']:.2f} "
                  f"true {r.get('true', {}).get('psnr', float('nan')):.2f} blind {r['blind']['psnr']:.2f} "
                  f"auto L1 {r['l1_auto']:.3f} fixed {r['l1_fixed']:.3f} oracle {r['l1_oracle']:.3f} "
                  f"{r.get('true_warnings', [])} {r['blind_warnings']} {r.get('error', '')}",
                  file=sys.stderr, flush=True)
    command = "python benchmarks/real_optics_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"command": command.strip(), "set": ("DEVELOPMENT" if args.dev else "REPORT") + (", quick" if args.quick
                                                                                           else ""),
            "machine": f"{platform.machine()}, Python {platform.python_version()}", "cpus": os.cpu_count(),
            "threads": args.threads, "load_start": load_start, "load_end": os.getloadavg()[0],
            "elapsed": time.perf_counter() - start, "images": list(names[:1] if args.quick else names), "seed": seed}
    meta["checks"] = checks(rows)
    emit(report(rows, meta), args.out)
    emit_json({**meta, "cases": rows}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
