"""Axial PSF estimation and isotropic SR on generated z-stacks with a known physical 3-D PSF, as a user runs them.

Cases: ``benchmarks/axial_cases.py`` (its docstring says how each is made): procedural scenes, real 2-D images
made into statistically isotropic volumes and a real 3-D stack, blurred by physical 3-D PSFs (NA 0.8–1.4,
widefield and confocal, matched and mismatched immersion), every 3rd–5th plane kept, Poisson–Gaussian noise.

Per case, through the public API with every option at its default: ``estimate_psf3d(stack, pixel_um=,
z_step_um=)`` (no optics given: blind), scored by its axial FWHM against the true PSF's on-axis FWHM (error %),
its lateral FWHM and its confidence; ``super_resolve_axial`` with the estimate (the default ``sr_method="auto"``,
kept under the key ``smore`` in the JSON, and ``"deconvolve"``), with the product's ``"cubic"`` (the baseline
every gain is measured from), and with the TRUE PSF (``deconvolve`` with the full 3-D PSF,
``psf3d=(case.psf, pixel, fine z)``, and ``smore`` with the true ``AxialPSF``). Independent of the product, in
the same run: cubic-spline interpolation in z with scipy
(a check of the product's baseline) and two oracle references that say whether a case's gain is reachable:
*1-D reference*, per z line the regularised least-squares inverse of "blur with the true relative profile, keep
every F-th plane" (second differences as the prior, its weight the best of a grid against the truth: what a
separable z-only model can reach), and *3-D Wiener*, the linear minimum-mean-square-error estimate knowing the
true 3-D PSF, the sampling with its aliasing, the noise variance and the object's power spectrum averaged over
directions (what a linear method with the full PSF can reach).

Scores against the isotropic truth (the object seen with the lateral resolution in all three directions):
PSNR and SSIM (3-D, Gaussian window σ 1.5) after removing the camera offset, data range of the truth, 4 px
shaved laterally and F planes at each z end. Gains are dB over the product's cubic; the fraction of the true
PSF's gain compares the default SR with the better, per case, of ``smore`` given the true PSF and the 3-D
path given the true 3-D PSF. A run below cubic counts as warned only where an ``UnsafeSRWarning`` said so.
Times are ratios to the product's cubic in the same run. For the default SR the report records what ``auto``
ran (``auto_ran``: the 3-D PSF path, the network, or the network after the 3-D PSF was rejected) and the
sentence of any fallback to cubic.

With ``--with-optics`` every case is also run as a user who types the objective runs it: ``estimate_psf3d(...,
optics=...)`` with the NA, wavelength, immersion index, modality and (confocal) pinhole of the case (never the
sample's index or the depth: a mismatch is the estimate's to find; :func:`user_optics`), then
``super_resolve_axial`` with that estimate, all defaults (``auto``). Its targets, chosen methods and per-case
table come as their own section of the same markdown, and under ``optics_given`` in each case's JSON.

Nothing here is tuned: the product runs with its defaults (seed 0) and only the oracle references choose a weight
against the truth.

    python benchmarks/axial_benchmark.py --out docs/benchmarks_axial.md --json docs/benchmarks_axial.json
    python benchmarks/axial_benchmark.py --with-optics --out ...  # also every case with its optics given
    python benchmarks/axial_benchmark.py --quick          # three small cases: a smoke run
    python benchmarks/axial_benchmark.py --dev            # the DEVELOPMENT cases
    python benchmarks/axial_benchmark.py --timing ...  # also a 64×512×512 uint16 stack: times and peak memory
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from _report import emit, emit_json  # benchmarks/ is on sys.path when a script runs
from axial_cases import DATA, OFFSET, CaseSpec, build, describe, development_cases, quick_cases, report_cases

SHAVE_XY = 4
FWHM_MEAN_TARGET, FWHM_MAX_TARGET = 15.0, 30.0  # axial FWHM error, %
GAIN_TARGET_DB, TRUE_FRACTION_TARGET = 1.5, 0.8
EST_SECONDS, SR_SECONDS, PEAK_GB = 30.0, 300.0, 4.0
TIMING_SHAPE, TIMING_FACTOR, TIMING_PIXEL = (64, 512, 512), 4, 0.1
REF_LAMBDAS = tuple(10.0 ** e for e in np.arange(-4.0, 1.01, 0.5))
STEP_LABELS = {"smore": "default SR (auto)"}
"""How the timing table names a step (the default run keeps its historical key)."""
SR_KEYS = ("cubic", "smore", "deconvolve", "true_deconvolve", "true_smore")
USER_OPTICS = ("na", "wavelength_um", "n_immersion", "modality", "pinhole_au")  # what a user types


# --- scores -----------------------------------------------------------------------------------------------------

def _shaved(volume: np.ndarray, factor: int) -> np.ndarray:
    sl = (slice(factor, volume.shape[0] - factor), slice(SHAVE_XY, -SHAVE_XY), slice(SHAVE_XY, -SHAVE_XY))
    return np.asarray(volume, dtype=np.float64)[sl]


def psnr(volume: np.ndarray, truth: np.ndarray, factor: int) -> float:
    """PSNR (dB) of an output (offset removed) against the isotropic truth, data range of the truth, borders
    shaved (``SHAVE_XY`` px laterally, ``factor`` planes at each z end)."""
    est, ref = _shaved(volume, factor), _shaved(truth, factor)
    rng = float(truth.max() - truth.min())
    return float(10 * np.log10(rng ** 2 / max(float(np.mean((est - ref) ** 2)), 1e-12)))


def score(volume: np.ndarray, truth: np.ndarray, factor: int) -> dict:
    """PSNR (dB) and 3-D SSIM (Gaussian window σ 1.5) of an output against the truth, as :func:`psnr`."""
    from skimage.metrics import structural_similarity

    rng = float(truth.max() - truth.min())
    return {"psnr": psnr(volume, truth, factor),
            "ssim": float(structural_similarity(_shaved(volume, factor), _shaved(truth, factor), data_range=rng,
                                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False))}


def scipy_cubic(stack: np.ndarray, factor: int) -> np.ndarray:
    """Cubic-spline (not-a-knot) interpolation along z through every plane, offset removed: the independent
    check of the product's cubic."""
    from scipy.interpolate import make_interp_spline

    data = np.asarray(stack, dtype=np.float64) - OFFSET
    z_in = np.arange(data.shape[0]) * factor
    return make_interp_spline(z_in, data, k=3, axis=0)(np.arange(z_in[-1] + 1))


def _operator(nz: int, factor: int, relative: np.ndarray) -> np.ndarray:
    """The matrix taking a fine z line (``(nz-1)*factor+1`` samples) to the stack's line: blur with
    ``relative`` (mirror borders, as the generator), keep every ``factor``-th sample."""
    n = (nz - 1) * factor + 1
    half = relative.size // 2
    blur = np.zeros((n, n))
    for i in range(n):
        for k, w in enumerate(relative):
            j = i + k - half
            j = -j if j < 0 else (2 * (n - 1) - j if j > n - 1 else j)  # reflect without repeating the edge
            blur[i, min(max(j, 0), n - 1)] += w
    return blur[::factor]


def reference_true_relative(stack: np.ndarray, case, truth: np.ndarray) -> tuple[np.ndarray, float]:
    """The oracle linear reference: per z line, ``argmin |A u - s|² + λ |D² u|²`` with ``A`` the true relative
    blur then sampling (``A``'s rows sum to 1); λ the best of :data:`REF_LAMBDAS` against the truth."""
    nz, ny, nx = stack.shape
    f = case.factor
    a = _operator(nz, f, case.true_psf.relative_on(case.pixel_um))
    n = a.shape[1]
    d2 = np.diff(np.eye(n), 2, axis=0)
    lines = (np.asarray(stack, dtype=np.float64) - OFFSET).reshape(nz, -1)
    ata, atb = a.T @ a, a.T @ lines
    best, best_lam, best_psnr = None, 0.0, -np.inf
    for lam in REF_LAMBDAS:
        u = np.linalg.solve(ata + lam * d2.T @ d2, atb).reshape(n, ny, nx)
        p = psnr(u, truth, f)
        if p > best_psnr:
            best, best_lam, best_psnr = u, lam, p
    return best, best_lam


def _mirror(v: np.ndarray) -> np.ndarray:
    """``v`` extended evenly about its first and last sample on every axis (period ``2 (n - 1)``)."""
    for axis in range(v.ndim):
        inner = np.flip(np.take(v, np.arange(1, v.shape[axis] - 1), axis=axis), axis=axis)
        v = np.concatenate([v, inner], axis=axis)
    return v


def _otf(kernel: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The DFT of a centred odd ``kernel`` applied by convolution on a periodic grid of ``shape``."""
    grid = np.zeros(shape)
    grid[tuple(slice(0, n) for n in kernel.shape)] = kernel
    return np.fft.fftn(np.roll(grid, [-(n // 2) for n in kernel.shape], axis=tuple(range(kernel.ndim))))


def _radial_mean(power: np.ndarray, bins: int = 96) -> np.ndarray:
    """``power`` replaced by its mean over shells of equal spatial frequency (an isotropic spectrum)."""
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in power.shape], indexing="ij")
    radius = np.sqrt(sum(f ** 2 for f in freqs))
    idx = np.minimum((radius / radius.max() * (bins - 1)).round().astype(int), bins - 1)
    means = np.bincount(idx.ravel(), power.ravel(), bins) / np.maximum(np.bincount(idx.ravel(), None, bins), 1)
    return means[idx]


def reference_wiener_3d(stack: np.ndarray, case, obj: np.ndarray, read_noise: float) -> np.ndarray:
    """The oracle 3-D reference: the linear minimum-mean-square-error estimate of the isotropic truth from the
    stack knowing the true 3-D PSF, the sampling (every F-th plane, its aliasing included), the noise variance
    and the object's spatial power spectrum averaged over directions (mirror-extended, periodic)."""
    from napari_kernelgan.axial.psf import line_profile

    f = case.factor
    nz_out, ny, nx = case.truth.shape
    obj_ext = _mirror(np.asarray(obj, dtype=np.float64))
    shape = obj_ext.shape
    nzp = shape[0] // f
    psf = np.asarray(case.psf, dtype=np.float64)
    lateral = psf[psf.shape[0] // 2] / psf[psf.shape[0] // 2].sum()
    iso = line_profile(lateral)[:, None, None] * lateral[None]
    p_hat = _otf(psf[::-1, ::-1, ::-1], shape)  # the generator correlates with the PSF
    i_hat = _otf(iso[::-1, ::-1, ::-1], shape)
    o_hat = np.fft.fftn(obj_ext)
    plain = np.fft.ifftn(i_hat * o_hat).real[:nz_out, :ny, :nx]
    gain = float((plain * case.truth).sum() / (plain ** 2).sum())  # photons per unit of the object
    prior = _radial_mean(np.abs(gain * o_hat) ** 2)
    data = _mirror(np.asarray(stack, dtype=np.float64) - OFFSET)
    variance = float(np.clip(data, 0, None).mean()) + read_noise ** 2  # Poisson (1 e⁻ per ADU) + read noise
    # Fine frequency m * nzp + k aliases onto the stack's frequency k.
    p_m, i_m, s_m = (a.reshape(f, nzp, *shape[1:]) for a in (p_hat, i_hat, prior))
    denom = (np.abs(p_m) ** 2 * s_m).sum(axis=0) / f ** 2 + data.size * variance
    t_m = i_m * s_m * np.conj(p_m) / f * (np.fft.fftn(data) / denom)[None]
    return np.fft.ifftn(t_m.reshape(shape)).real[:nz_out, :ny, :nx]


# --- the product ----------------------------------------------------------------------------------------------

def product_api() -> dict:
    """The axial API's functions, or an empty dict where this checkout does not have them yet."""
    try:
        from napari_kernelgan.axial.estimate import estimate_psf3d
        from napari_kernelgan.axial.isotropic import super_resolve_axial
    except ImportError:
        return {}
    return {"estimate": estimate_psf3d, "sr": super_resolve_axial}


def _ours(caught: list[warnings.WarningMessage]) -> list[str]:
    """The package's own warnings among ``caught``, as 'Category: message' (first line)."""
    return [f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught
            if "napari_kernelgan" in (w.category.__module__ or "") or "napari_kernelgan" in str(w.filename)]


def user_optics(spec: CaseSpec) -> dict:
    """The optics a user types for the case's objective (:data:`USER_OPTICS`): NA, wavelength, immersion index,
    modality and, for a confocal, the pinhole; never the sample's index or the depth of a mismatch."""
    hints = {"modality": spec.modality, **{k: spec.optics[k] for k in USER_OPTICS if k in spec.optics}}
    if hints["modality"] != "confocal":
        hints.pop("pinhole_au", None)
    return hints


def auto_ran(res) -> str | None:
    """What ``sr_method="auto"`` ran before any fallback to cubic: ``"3-D PSF"`` (deconvolve with the optics'
    3-D PSF), ``"smore"``, or ``"smore (3-D PSF rejected)"``; ``None`` for another method."""
    choice = res.validation.get("auto_choice")
    if choice == "psf3d":
        return "smore (3-D PSF rejected)" if res.validation.get("psf3d_rejected") else "3-D PSF"
    return choice


def _run_sr(api: dict, stack: np.ndarray, psf, case, threads: int, **kw) -> dict:
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = api["sr"](stack, psf, z_factor=case.factor, seed=0, threads=threads, **kw)
    seconds = time.perf_counter() - start
    vol = np.asarray(res.volume, dtype=np.float64) - OFFSET
    out = {**score(vol, case.truth, case.factor), "seconds": seconds, "method": res.sr_method,
           "fell_back": bool(res.fell_back), "z_step_um": float(res.z_step_um),
           "warnings": sorted(set(list(res.warnings) + _ours(caught))), "notes": list(res.notes),
           "fallback": next((w for w in res.warnings if "returned cubic interpolation" in w), None)}
    if "auto_choice" in res.validation:
        out["auto_ran"] = auto_ran(res)
    if "train_steps" in res.validation:
        out["train_steps"] = int(res.validation["train_steps"])
    return out


def _estimate(api: dict, case, threads: int, optics: dict | None = None) -> dict:
    """``estimate_psf3d`` on the case (seed 0, defaults), scored; the ``AxialPSF`` under ``"psf"``."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = api["estimate"](case.stack, pixel_um=case.pixel_um, z_step_um=case.z_step_um, optics=optics, seed=0,
                              threads=threads)
    lateral = float(np.mean(est.lateral_fwhm_um))
    truth_lateral = float(np.mean(case.true_psf.lateral_fwhm_um))
    return {"psf": est, "t_estimate": time.perf_counter() - start,
            "estimate": {"axial_fwhm_um": est.axial_fwhm_um, "lateral_fwhm_um": lateral,
                         "confidence": est.confidence, "method": est.method, "notes": list(est.notes),
                         "model": est.model is not None, "warnings": _ours(caught)},
            "fwhm_error_pct": 100 * abs(est.axial_fwhm_um - case.axial_fwhm_um) / case.axial_fwhm_um,
            "lateral_error_pct": 100 * abs(lateral - truth_lateral) / truth_lateral}


def run_with_optics(spec: CaseSpec, case, threads: int, api: dict) -> dict:
    """The case as a user who types the objective runs it: the estimate with :func:`user_optics`, then the
    default SR (``auto``) with that estimate."""
    from napari_kernelgan.errors import KernelGANError

    out: dict = {"optics": user_optics(spec)}
    try:
        got = _estimate(api, case, threads, out["optics"])
    except KernelGANError as exc:
        out["error"] = f"estimate: {exc}"
        return out
    psf = got.pop("psf")
    out.update(got)
    try:
        out["auto"] = _run_sr(api, case.stack, psf, case, threads)
    except KernelGANError as exc:
        out["error"] = f"auto: {exc}"
    return out


def run_case(spec: CaseSpec, threads: int, api: dict, data: Path = DATA, with_optics: bool = False) -> dict:
    """Every measurement of one case (``with_optics``: also :func:`run_with_optics`)."""
    t0 = time.perf_counter()
    case = build(spec, data)
    row = {**describe(spec), "case": spec.name, "kind": spec.source.split(":")[0], "axial_fwhm_um": case.axial_fwhm_um,
           "lateral_fwhm_um": float(np.mean(case.true_psf.lateral_fwhm_um)), "psf_shape": list(case.psf.shape),
           "truth_shape": list(case.truth.shape),
           "t_generate": time.perf_counter() - t0}
    start = time.perf_counter()
    row["scipy_cubic"] = score(scipy_cubic(case.stack, case.factor), case.truth, case.factor)
    row["t_scipy_cubic"] = time.perf_counter() - start
    start = time.perf_counter()
    ref, lam = reference_true_relative(case.stack, case, case.truth)
    row["reference"] = {**score(ref, case.truth, case.factor), "lambda": lam}
    row["t_reference"] = time.perf_counter() - start
    start = time.perf_counter()
    from axial_cases import object_for

    row["wiener3d"] = score(reference_wiener_3d(case.stack, case, object_for(spec, data), spec.read_noise),
                            case.truth, case.factor)
    row["t_wiener3d"] = time.perf_counter() - start
    if not api:
        return row
    from napari_kernelgan.errors import KernelGANError

    fine = case.z_step_um / case.factor
    try:
        got = _estimate(api, case, threads)
    except KernelGANError as exc:  # a refusal is a result: the report shows it
        row["error"] = f"estimate: {exc}"
        return row
    est = got.pop("psf")
    row.update(got)
    runs = {"cubic": (est, {"sr_method": "cubic"}), "smore": (est, {}),
            "deconvolve": (est, {"sr_method": "deconvolve"}),
            "true_deconvolve": (case.true_psf, {"sr_method": "deconvolve", "psf3d": (case.psf, case.pixel_um, fine)}),
            "true_smore": (case.true_psf, {})}
    for key, (psf, kw) in runs.items():
        try:
            row[key] = _run_sr(api, case.stack, psf, case, threads, **kw)
        except KernelGANError as exc:
            row["error"] = f"{key}: {exc}"
            break
    if with_optics:
        row["optics_given"] = run_with_optics(spec, case, threads, api)
    return row


# --- summary ----------------------------------------------------------------------------------------------------

def _gain(r: dict, key: str) -> float:
    base = r["cubic"] if "cubic" in r else r["scipy_cubic"]
    return r[key]["psnr"] - base["psnr"]


def checks(rows: list[dict]) -> list[dict]:
    """The round's targets, each PASS or MISS with its numbers (only those this run measured)."""
    out = []
    est = [r for r in rows if "fwhm_error_pct" in r]
    if est:
        errs = [r["fwhm_error_pct"] for r in est]
        worst = max(est, key=lambda r: r["fwhm_error_pct"])
        out.append({"target": f"axial FWHM within {FWHM_MEAN_TARGET:g} % on average", "pass":
                    float(np.mean(errs)) <= FWHM_MEAN_TARGET, "numbers": f"mean {np.mean(errs):.1f} %"})
        out.append({"target": f"no axial FWHM worse than {FWHM_MAX_TARGET:g} %", "pass": max(errs) <= FWHM_MAX_TARGET,
                    "numbers": f"worst {worst['fwhm_error_pct']:.1f} % ({worst['case']}); "
                               f"{sum(e > FWHM_MAX_TARGET for e in errs)} of {len(errs)} over"})
    sr = [r for r in rows if all(k in r for k in SR_KEYS)]
    if sr:
        gains = [_gain(r, "smore") for r in sr]
        below = [r for r in sr if _gain(r, "smore") < 0]
        silent = [r["case"] for r in below if not r["smore"]["fell_back"]
                  and not any("UnsafeSRWarning" in w for w in r["smore"]["warnings"])]
        true_gain = float(np.mean([max(_gain(r, "true_smore"), _gain(r, "true_deconvolve")) for r in sr]))
        frac = float(np.mean(gains)) / true_gain if true_gain > 0 else float("nan")
        out.append({"target": f"isotropic SR ≥ cubic + {GAIN_TARGET_DB:g} dB on average", "pass":
                    float(np.mean(gains)) >= GAIN_TARGET_DB, "numbers": f"mean {np.mean(gains):+.2f} dB"})
        out.append({"target": "isotropic SR never below cubic (without a warning)", "pass": not below,
                    "numbers": f"{len(below)} of {len(sr)} below cubic"
                               + (f" ({', '.join(r['case'] for r in below)}); silent: {', '.join(silent) or 'none'}"
                                  if below else "")})
        out.append({"target": f"≥ {TRUE_FRACTION_TARGET:.0%} of the true 3-D PSF's gain", "pass":
                    bool(frac >= TRUE_FRACTION_TARGET),
                    "numbers": f"{frac:.0%} (estimate {np.mean(gains):+.2f} dB; the true PSF, the better of smore and "
                               f"the 3-D path per case, {true_gain:+.2f} dB)"})
    return out


def optics_rows(rows: list[dict]) -> list[dict]:
    """The cases run with their optics given, as rows :func:`checks` reads: the estimate and the default SR
    (``smore`` key) are the optics-given ones; cubic and the true PSF's runs are the case's own."""
    out = []
    for r in rows:
        og = r.get("optics_given", {})
        if "fwhm_error_pct" not in og:
            continue
        view = {**r, **{k: og[k] for k in ("estimate", "fwhm_error_pct", "lateral_error_pct")}}
        view.pop("smore", None)
        if "auto" in og:
            view["smore"] = og["auto"]
        out.append(view)
    return out


def ran_summary(results: list[dict]) -> str:
    """How often ``auto`` ran each method, and fell back to cubic, over SR results."""
    ran = [x.get("auto_ran") or x["method"] for x in results]
    parts = [f"{name} {ran.count(name)}" for name in sorted(set(ran), key=str)]
    fell = sum(bool(x["fell_back"]) for x in results)
    return f"auto ran {', '.join(parts) or 'nothing'} of {len(results)}; fell back to cubic on {fell}"


def optics_section(rows: list[dict]) -> list[str]:
    """The ``--with-optics`` section: its targets, what ``auto`` chose, and a table per case."""
    view = optics_rows(rows)
    lines = ["", "## With the optics given (`--with-optics`)", "",
             "Each case again as a user who types the objective runs it: `estimate_psf3d(..., optics=...)` with the "
             "NA, wavelength, immersion index, modality and (confocal) pinhole, never the sample's index or the "
             "depth of a mismatch; then `super_resolve_axial` with that estimate, all defaults (`auto`). Cubic and "
             "the true PSF's runs are the case's own (above).", "",
             "| target (optics given) | result | numbers |", "|---|---|---|"]
    for c in checks(view):
        lines.append(f"| {c['target']} | {'PASS' if c['pass'] else '**MISS**'} | {c['numbers']} |")
    done = [v["smore"] for v in view if "smore" in v]
    lines += ["", f"Chosen method (optics given): {ran_summary(done)}."]
    blind = [r["smore"] for r in rows if "smore" in r]
    if blind:
        lines.append(f"Chosen method (blind, the default run above): {ran_summary(blind)}.")
    lines += ["", "| case | optics given | true axial FWHM µm | estimate µm | error % | conf | model kept | auto ran | "
              "PSNR / SSIM | Δ over cubic | Δ blind default | warnings |", "|" + "---|" * 12]
    for r in rows:
        og = r.get("optics_given")
        if og is None:
            continue
        o = og["optics"]
        given = (f"{o['modality'][:4]} NA {o['na']:g} n {o.get('n_immersion', 1.515):g}"
                 + (f" {o['pinhole_au']:g} AU" if "pinhole_au" in o else "") + f" λ {o['wavelength_um']:g}")
        est, auto = og.get("estimate"), og.get("auto")
        cells = [r["case"], given, f"{r['axial_fwhm_um']:.3f}"]
        cells += ([f"{est['axial_fwhm_um']:.3f}", f"{og['fwhm_error_pct']:.1f}", f"{est['confidence']:.2f}",
                   "yes" if est["model"] else "no"] if est else ["–"] * 4)
        if auto and "cubic" in r:
            cells += [f"{auto.get('auto_ran') or auto['method']}" + (" → cubic" if auto["fell_back"] else ""),
                      _sr_cell(og, "auto"), f"{auto['psnr'] - r['cubic']['psnr']:+.2f}",
                      f"{auto['psnr'] - r['smore']['psnr']:+.2f}" if "smore" in r else "–",
                      _warn_names(auto["warnings"])]
        else:
            cells += ["–"] * 4 + [og.get("error", "–")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def difficulty(r: dict) -> str:
    """How hard a case is for a method that knows the blur: the 3-D Wiener oracle's gain over cubic."""
    g = r["wiener3d"]["psnr"] - r["scipy_cubic"]["psnr"]
    return "easy" if g >= 3 else "moderate" if g >= GAIN_TARGET_DB else "hard"


def _mean(rows: list[dict], key: str, sub: str = "psnr") -> float:
    vals = [r[key][sub] for r in rows if key in r]
    return float(np.mean(vals)) if vals else float("nan")


def _sr_cell(r: dict, key: str) -> str:
    if key not in r:
        return "–"
    s = r[key]
    mark = " (cubic)" if s.get("fell_back") else ""
    return f"{s['psnr']:.2f} / {s['ssim']:.3f}{mark}"


def _warn_names(items: list[str]) -> str:
    return ", ".join(sorted({i.split(":")[0] for i in items})) or "–"


def group_table(rows: list[dict], key: str) -> list[str]:
    """Means by ``key`` (and over all): PSNR of every method, the estimate's FWHM error."""
    out = [f"| {key} | cases | cubic | default SR | deconvolve | true PSF smore | true PSF deconvolve | "
           "scipy cubic | 1-D reference | 3-D Wiener | Δ default | Δ true smore | Δ 1-D ref. | Δ 3-D Wiener | "
           "FWHM error % |", "|" + "---|" * 15]
    groups = sorted({r[key] for r in rows}, key=str)
    for g in groups + [None]:
        sel = [r for r in rows if g is None or r[key] == g]
        has = [r for r in sel if all(k in r for k in SR_KEYS)]
        errs = [r["fwhm_error_pct"] for r in sel if "fwhm_error_pct" in r]
        cells = [f"{_mean(sel, k):.2f}" if any(k in r for r in sel) else "–"
                 for k in ("cubic", "smore", "deconvolve", "true_smore", "true_deconvolve", "scipy_cubic", "reference",
                           "wiener3d")]
        d_def = f"{np.mean([_gain(r, 'smore') for r in has]):+.2f}" if has else "–"
        d_true = f"{np.mean([_gain(r, 'true_smore') for r in has]):+.2f}" if has else "–"
        d_ref = " | ".join(f"{np.mean([r[k]['psnr'] - r['scipy_cubic']['psnr'] for r in sel]):+.2f}"
                           for k in ("reference", "wiener3d"))
        label = "**all**" if g is None else str(g)
        out.append(f"| {label} | {len(sel)} | " + " | ".join(cells) + f" | {d_def} | {d_true} | {d_ref} | "
                   + (f"{np.mean(errs):.1f}" if errs else "–") + " |")
    return out


def report(rows: list[dict], meta: dict) -> str:
    lines = [f"# Axial: 3-D PSF estimation and isotropic SR on generated z-stacks ({meta['set']})", "",
             f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}, {meta['cpus']} CPUs shared with other work, {meta['threads']} thread(s); "
             f"load average {meta['load_start']:.1f} at the start, {meta['load_end']:.1f} at the end: timings "
             f"were measured under that load. {meta['elapsed']:.0f} s in all.", "",
             f"{len(rows)} cases, made by `benchmarks/axial_cases.py` (its docstring says how). Scores: PSNR dB / "
             "SSIM (3-D) against the isotropic truth, offset removed, data range of the truth, "
             f"{SHAVE_XY} px shaved laterally and F planes at each z end. *cubic*: the product's "
             "`sr_method=\"cubic\"`, the baseline of every Δ (dB); *default SR*: `super_resolve_axial` with the "
             "blind estimate, all defaults (`auto`); *deconvolve*: the same estimate, `sr_method=\"deconvolve\"`; "
             "*true PSF*: smore with the true `AxialPSF`, and deconvolve with the full 3-D PSF (`psf3d`). "
             "Independent of the product (its Δ are over *scipy cubic*, cubic spline in z): *1-D reference*, "
             "per z line the regularised inverse of the true relative axial blur and the sampling, its weight "
             "chosen against the truth (what a separable z-only model reaches); *3-D Wiener*, the linear MMSE "
             "estimate knowing the true 3-D PSF, the sampling and its aliasing, the noise and the object's "
             "direction-averaged power spectrum (what a linear method with the full PSF reaches). Both are "
             "oracles: they say whether a gain is reachable. Times: seconds, and ratios to the product's cubic "
             "in the same run.", ""]
    if not meta["api"]:
        lines += ["**The axial API (`axial.estimate`, `axial.isotropic`) is not in this checkout**: only the "
                  "baselines and the reference were measured.", ""]
    lines += ["## Targets", "", "| target | result | numbers |", "|---|---|---|"]
    for c in meta["checks"]:
        lines.append(f"| {c['target']} | {'PASS' if c['pass'] else '**MISS**'} | {c['numbers']} |")
    timing = meta.get("timing")
    if timing:
        for c in timing["checks"]:
            lines.append(f"| {c['target']} | {'PASS' if c['pass'] else '**MISS**'} | {c['numbers']} |")
    else:
        lines.append("| 64×512×512 stack: estimate ≤ 30 s, isotropic SR ≤ 5 min, peak ≤ 4 GB | not measured "
                     "here | [benchmarks_axial_timing.md](benchmarks_axial_timing.md) (`--timing-only`) |")
    est = [r for r in rows if "fwhm_error_pct" in r]
    if est:
        good = [r["estimate"]["confidence"] for r in est if r["fwhm_error_pct"] <= FWHM_MEAN_TARGET]
        bad = [r["estimate"]["confidence"] for r in est if r["fwhm_error_pct"] > FWHM_MAX_TARGET]
        lines += ["", f"Confidence: {f'{np.mean(good):.2f}' if good else '–'} on average where the axial FWHM "
                  f"is within {FWHM_MEAN_TARGET:g} % ({len(good)} cases), "
                  f"{f'{np.mean(bad):.2f}' if bad else '–'} where it is off by more than "
                  f"{FWHM_MAX_TARGET:g} % ({len(bad)} cases). Lateral FWHM error "
                  f"{np.mean([r['lateral_error_pct'] for r in est]):.1f} % on average."]
    if any("smore" in r for r in rows):
        lines += ["", f"Default SR: {ran_summary([r['smore'] for r in rows if 'smore' in r])} (per case: the "
                  "*auto ran* column; every fallback's sentence is in the JSON, `smore.fallback`)."]
    lines += ["", "## Means by modality", ""] + group_table(rows, "modality")
    lines += ["", "## Means by immersion", ""] + group_table(rows, "immersion")
    lines += ["", "## Means by object", ""] + group_table(rows, "kind")
    if any("t_estimate" in r for r in rows):
        lines += ["", "## Times (mean seconds; ratio to the product's cubic)", "",
                  "| estimate | cubic | default SR | deconvolve | true PSF smore | true PSF deconvolve |",
                  "|---|---|---|---|---|---|"]
        t_cubic = float(np.mean([r["cubic"]["seconds"] for r in rows if "cubic" in r]))
        cells = [f"{np.mean([r['t_estimate'] for r in rows if 't_estimate' in r]):.1f} "
                 f"(×{np.mean([r['t_estimate'] / r['cubic']['seconds'] for r in rows if 'cubic' in r]):.0f})"]
        for k in ("cubic", "smore", "deconvolve", "true_smore", "true_deconvolve"):
            sel = [r for r in rows if k in r]
            cells.append(f"{np.mean([r[k]['seconds'] for r in sel]):.2f} "
                         f"(×{np.mean([r[k]['seconds'] / r['cubic']['seconds'] for r in sel]):.0f})")
        lines.append("| " + " | ".join(cells) + " |")
        lines.append(f"\nThe product's cubic took {t_cubic:.2f} s per case on average.")
    lines += ["", "## Per case", "",
              "| case | object | optics | F | photons | true axial FWHM µm (× lateral) | estimate µm | error % | "
              "lateral est / true µm | conf | cubic | default SR | deconvolve | true PSF smore | true PSF "
              "deconvolve | scipy cubic | 1-D reference | 3-D Wiener | Δ default | Δ true smore | difficulty | "
              "warnings (default SR) | auto ran |", "|" + "---|" * 23]
    for r in rows:
        o = r["optics"]
        optics = (f"{r['modality'][:4]} NA {o['na']:g} n {o.get('n_immersion', 1.515):g}"
                  + (f"→{o['n_sample']:g} at {o['depth_um']:g} µm" if r["immersion"] == "mismatched" else "")
                  + (f" {o['pinhole_au']:g} AU" if r["modality"] == "confocal" else "")
                  + f" λ {o['wavelength_um']:g}")
        est = r.get("estimate")
        lines.append(
            f"| {r['case']} | {r['source']} | {optics} | {r['factor']} | {r['photons']:g} | "
            f"{r['axial_fwhm_um']:.3f} (×{r['axial_fwhm_um'] / r['lateral_fwhm_um']:.1f}) | "
            + (f"{est['axial_fwhm_um']:.3f} | {r['fwhm_error_pct']:.1f} | {est['lateral_fwhm_um']:.3f} / "
               f"{r['lateral_fwhm_um']:.3f} | {est['confidence']:.2f} | " if est else
               f"– | – | – / {r['lateral_fwhm_um']:.3f} | – | ")
            + " | ".join(_sr_cell(r, k) for k in ("cubic", "smore", "deconvolve", "true_smore", "true_deconvolve",
                                                  "scipy_cubic", "reference", "wiener3d"))
            + (f" | {_gain(r, 'smore'):+.2f} | {_gain(r, 'true_smore'):+.2f} | " if all(k in r for k in SR_KEYS)
               else " | – | – | ")
            + f"{difficulty(r)} | {_warn_names(r['smore']['warnings']) if 'smore' in r else '–'} | "
            + (f"{r['smore'].get('auto_ran') or r['smore']['method']}{' → cubic' if r['smore']['fell_back'] else ''}"
               if "smore" in r else "–") + " |")
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "Refused: " + "; ".join(f"{r['case']}: {r['error']}" for r in errors)]
    if any("optics_given" in r for r in rows):
        lines += optics_section(rows)
    lines += ["", "*difficulty*: the 3-D Wiener oracle's gain over scipy cubic (easy ≥ 3 dB, moderate ≥ 1.5 dB, "
              "hard below: a linear method knowing the true PSF cannot reach the +1.5 dB target there). Notes of "
              "the estimates and every warning's text are in the JSON beside this report."]
    return "\n".join(lines) + "\n"


# --- timing -----------------------------------------------------------------------------------------------------

def timing_report(meta: dict) -> str:
    """The ``--timing-only`` report: the targets, then each step's time and peak memory."""
    timing = meta.get("timing") or {"checks": [], "steps": {}}
    lines = ["# Axial: time and memory on a 64×512×512 uint16 stack", "",
             f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}, {meta['cpus']} CPUs shared with other work, {meta['threads']} thread(s); "
             f"load average {meta['load_start']:.1f} at the start, {meta['load_end']:.1f} at the end: timings "
             f"were measured under that load. {meta['elapsed']:.0f} s in all.", "",
             "The stack: real texture (h2ax_foci) under a widefield NA 1.4 PSF, every 4th plane of a 0.1 µm grid, "
             "1000 photons, read from a memory-mapped `.npy`. Each step runs in its own process "
             "(`estimate_psf3d`, then `super_resolve_axial` with the estimate: `sr_method=\"cubic\"` and the "
             "default), all defaults; peak memory is the process's own high-water mark (`VmHWM`), and "
             "`ru_maxrss` of the children as the benchmark saw it.", ""]
    if not meta["api"]:
        lines += ["**The axial API is not in this checkout**: nothing was measured.", ""]
    lines += ["## Targets", "", "| target | result | numbers |", "|---|---|---|"]
    for c in timing["checks"]:
        lines.append(f"| {c['target']} | {'PASS' if c['pass'] else '**MISS**'} | {c['numbers']} |")
    lines += ["", "## Steps", "", "| step | seconds | peak GB (VmHWM) | children ru_maxrss GB | result |",
              "|---|---|---|---|---|"]
    gb = 1024 ** 3
    for mode, st in timing["steps"].items():
        if "error" in st:
            lines.append(f"| {STEP_LABELS.get(mode, mode)} | – | – | – | {st['error']} |")
            continue
        what = (f"axial FWHM {st['axial_fwhm_um']:.3f} µm, confidence {st['confidence']:.2f}" if mode == "estimate"
                else f"{st['method']}{' (fell back)' if st['fell_back'] else ''}, output {st['shape']}")
        lines.append(f"| {STEP_LABELS.get(mode, mode)} | {st['seconds']:.1f} | {st['peak_bytes'] / gb:.2f} | "
                     f"{st['children_maxrss_bytes'] / gb:.2f} | {what} |")
    return "\n".join(lines) + "\n"


def timing_stack(path: Path, data: Path = DATA) -> dict:
    """A 64×512×512 uint16 stack (real texture from h2ax_foci under a widefield NA 1.4 PSF, every 4th plane of a
    0.1 µm grid, 1000 photons), saved as ``.npy``: the size a user's stack has, not a scored case. It is blurred on
    its own grid (separable: the true lateral PSF, then the on-axis profile at the z step) to keep its making
    cheap."""
    import tifffile
    from scipy import ndimage, signal

    from axial_cases import texture_volume
    from napari_kernelgan.physics.optics import Optics, psf_3d
    from napari_kernelgan.synthetic3d import true_axial_psf

    optics = Optics(na=1.4, wavelength_um=0.52)
    z_step = TIMING_PIXEL * TIMING_FACTOR
    psf = true_axial_psf(psf_3d(optics, TIMING_PIXEL, z_step), TIMING_PIXEL, z_step)
    obj = texture_volume(tifffile.imread(data / "h2ax_foci.tif"), TIMING_SHAPE, 7)
    blurred = signal.fftconvolve(obj, psf.lateral[None], mode="same", axes=(1, 2))
    blurred = ndimage.convolve1d(blurred, psf.axial, axis=0, mode="reflect")
    rng = np.random.default_rng(7)
    electrons = rng.poisson(np.clip(blurred * 1000 / blurred.max(), 0, None))
    stack = np.clip(np.round(electrons + rng.normal(0, 1.5, blurred.shape) + OFFSET), 0, 65535).astype(np.uint16)
    np.save(path, stack)
    return {"shape": list(stack.shape), "pixel_um": TIMING_PIXEL, "z_step_um": z_step}


def _peak_bytes() -> int:
    """This process's peak resident memory: ``VmHWM`` (its own pages only; ``ru_maxrss`` also keeps the peak of
    the process it was forked from, here the benchmark itself), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def worker(mode: str, stack_path: Path, psf_path: Path, threads: int) -> int:
    """One timed step in its own process (``--worker``): prints its seconds and its own peak RSS as JSON."""
    import pickle

    stack = np.load(stack_path, mmap_mode="r")
    api = product_api()
    start = time.perf_counter()
    if mode == "estimate":
        psf = api["estimate"](stack, pixel_um=TIMING_PIXEL, z_step_um=TIMING_PIXEL * TIMING_FACTOR, seed=0,
                              threads=threads)
        seconds = time.perf_counter() - start
        psf_path.write_bytes(pickle.dumps(psf))
        extra = {"axial_fwhm_um": psf.axial_fwhm_um, "confidence": psf.confidence}
    else:
        psf = pickle.loads(psf_path.read_bytes())
        start = time.perf_counter()
        res = api["sr"](stack, psf, z_factor=TIMING_FACTOR, seed=0, threads=threads,
                        **({} if mode == "smore" else {"sr_method": mode}))
        seconds = time.perf_counter() - start
        extra = {"method": res.sr_method, "fell_back": bool(res.fell_back), "shape": list(res.volume.shape)}
    print(json.dumps({"seconds": seconds, "peak_bytes": _peak_bytes(), **extra}))
    return 0


def run_timing(threads: int, data: Path = DATA) -> dict:
    """Estimate and isotropic SR (default, and cubic for the ratio) of the 64×512×512 stack, each in a subprocess."""
    out: dict = {"steps": {}}
    with tempfile.TemporaryDirectory(prefix="axial-timing-") as tmp:
        stack_path, psf_path = Path(tmp) / "stack.npy", Path(tmp) / "psf.pickle"
        out["stack"] = timing_stack(stack_path, data)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        for mode in ("estimate", "cubic", "smore"):
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            proc = subprocess.run([sys.executable, __file__, "--worker", mode, str(stack_path), str(psf_path),
                                   "--threads", str(threads)], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                out["steps"][mode] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
                break
            step = json.loads(proc.stdout.strip().splitlines()[-1])
            # Every child's ru_maxrss starts from this process's size at the fork: measured before any case.
            step["children_maxrss_bytes"] = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024
            out["steps"][mode] = step
            print(f"timing {mode}: {step}", file=sys.stderr, flush=True)
    steps = out["steps"]
    gb = 1024 ** 3
    size = "×".join(str(n) for n in TIMING_SHAPE)
    checks = []
    if "seconds" in steps.get("estimate", {}):
        checks.append({"target": f"{size}: estimate ≤ {EST_SECONDS:g} s", "pass":
                       steps["estimate"]["seconds"] <= EST_SECONDS, "numbers": f"{steps['estimate']['seconds']:.1f} s"})
    if "seconds" in steps.get("smore", {}):
        ratio = steps["smore"]["seconds"] / steps["cubic"]["seconds"]
        # A fallback to cubic is no isotropic SR, however fast: it does not count as meeting the target.
        checks.append({"target": f"{size}: isotropic SR ≤ {SR_SECONDS / 60:g} min", "pass":
                       steps["smore"]["seconds"] <= SR_SECONDS and not steps["smore"]["fell_back"],
                       "numbers": f"{steps['smore']['seconds']:.0f} s (×{ratio:.0f} the cubic's "
                                  f"{steps['cubic']['seconds']:.2f} s; returned {steps['smore']['method']}"
                                  f"{', fell back' if steps['smore']['fell_back'] else ''})"})
    peaks = [s["peak_bytes"] for s in steps.values() if "peak_bytes" in s]
    if peaks:
        checks.append({"target": f"{size}: peak memory ≤ {PEAK_GB:g} GB", "pass": max(peaks) <= PEAK_GB * gb,
                       "numbers": ", ".join(f"{k} {s['peak_bytes'] / gb:.2f} GB" for k, s in steps.items()
                                            if "peak_bytes" in s)})
    for mode, s in steps.items():
        if "error" in s:
            checks.append({"target": f"{size}: {mode}", "pass": False, "numbers": s["error"]})
    out["checks"] = checks
    return out


# --- main -------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dev", action="store_true", help="the DEVELOPMENT cases")
    ap.add_argument("--quick", action="store_true", help="three small cases (a smoke run)")
    ap.add_argument("--timing", action="store_true", help="also time a 64×512×512 uint16 stack (first)")
    ap.add_argument("--timing-only", action="store_true", help="only the 64×512×512 timing")
    ap.add_argument("--with-optics", action="store_true",
                    help="also run every case with its optics given (NA, wavelength, immersion, modality, pinhole)")
    ap.add_argument("--cases", default="", help="only these cases (comma-separated names)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for the product's calls")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    ap.add_argument("--json", type=Path, default=None, help="write the per-case numbers here")
    ap.add_argument("--worker", nargs=3, metavar=("MODE", "STACK", "PSF"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker[0], Path(args.worker[1]), Path(args.worker[2]), args.threads)
    if not args.data.is_dir():
        print(f"no data folder {args.data}: nothing to measure")
        return 0
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    specs = quick_cases() if args.quick else development_cases() if args.dev else report_cases()
    if args.cases:
        wanted = args.cases.split(",")
        specs = [s for s in specs if s.name in wanted]
    if args.timing_only:
        specs = []
    api = product_api()
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    # Before any case, while this process is small: each step's peak memory is its own.
    timing = run_timing(args.threads, args.data) if (args.timing or args.timing_only) and api else None
    rows = []
    for spec in specs:
        rows.append(run_case(spec, args.threads, api, args.data, with_optics=args.with_optics))
        r = rows[-1]
        print(f"{spec.name}: scipy cubic {r['scipy_cubic']['psnr']:.2f} 1-D reference {r['reference']['psnr']:.2f} "
              f"3-D Wiener {r['wiener3d']['psnr']:.2f} "
              + (f"cubic {r['cubic']['psnr']:.2f} default {r['smore']['psnr']:.2f} true {r['true_smore']['psnr']:.2f} "
                 f"FWHM {r['estimate']['axial_fwhm_um']:.3f}/{r['axial_fwhm_um']:.3f}" if "smore" in r else "")
              + (f" | optics given: auto {r['optics_given']['auto']['psnr']:.2f} "
                 f"FWHM {r['optics_given']['estimate']['axial_fwhm_um']:.3f}"
                 if "auto" in r.get("optics_given", {}) else ""), file=sys.stderr, flush=True)
    command = "python benchmarks/axial_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"command": command.strip(),
            "set": ("DEVELOPMENT" if args.dev else "REPORT") + (", quick" if args.quick else "")
                   + (", with optics given" if args.with_optics else ""),
            "machine": f"{platform.machine()}, Python {platform.python_version()}", "cpus": os.cpu_count(),
            "threads": args.threads, "load_start": load_start, "api": bool(api), "with_optics": args.with_optics}
    meta["checks"] = checks(rows)
    if args.with_optics:
        meta["checks_optics_given"] = checks(optics_rows(rows))
    if timing is not None:
        meta["timing"] = timing
    meta["load_end"] = os.getloadavg()[0]
    meta["elapsed"] = time.perf_counter() - start
    emit(timing_report(meta) if args.timing_only else report(rows, meta), args.out)
    emit_json({**meta, "cases": rows}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
