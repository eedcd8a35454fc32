"""Axial SR with near-right PSF models: what each method gains over cubic and what each safeguard says.

DEVELOPMENT data only: :func:`axial_cases.development_cases` (procedural seeds below 100, the images
cell_microtubules and golgi_confocal) and generated stacks of :func:`napari_kernelgan.synthetic3d.axial_case`
on seeds 500–599 (:func:`synthetic_specs`; photons cycle 100, 500, 2000 and 50 at the brightest voxel). For
each case the TRUE optics are perturbed the way an estimate errs (:data:`PERTURBATIONS`: NA ×0.85/0.93/1.07/1.15,
emission wavelength ±10 %, the immersion mismatch's depth off, the wrong modality, alone and with the NA ×1.15)
and each perturbed ``Optics`` becomes an ``AxialPSF`` with ``model=`` it (its own 3-D PSF
on the stack's fine grid, described as :func:`~napari_kernelgan.synthetic3d.true_axial_psf` describes the true
one). Per case and perturbation, with ``safe=False`` so every method runs to the end:

* ``psf3d``: the 3-D path with the model's 3-D PSF (``sr_method="deconvolve"``, ``psf3d=``), its PSNR gain
  over cubic against the isotropic truth, its held-out z check (odd planes predicted from the even ones through
  the PSF), its change to cubic, and the candidate choice's score on the central crop
  (:func:`napari_kernelgan.axial._zsafety.candidate_scores`);
* ``smore`` (NA ×0.85/1/1.15 and the wrong modality, and on confocal stacks every near-right model: it trains):
  the gain, the held-out lateral check, the PSF-match ratio and the re-blur consistency ratio;
* ``net_check``: the network's held-out z gain on the central crop (odd planes predicted from the even ones by a
  network trained at twice the factor, :mod:`napari_kernelgan.axial._netcheck`), beside the 3-D candidates'
  ``scores``: what ``auto`` compares with a confocal model;
* ``auto``: what ``sr_method="auto"`` chose and its gain.

    python benchmarks/axial_sr_study.py --out /tmp/study.json          # every case
    python benchmarks/axial_sr_study.py --out /tmp/study.json --quick  # three cases
    python benchmarks/axial_sr_study.py --table /tmp/study.json        # the table of a finished run
    python benchmarks/axial_sr_study.py --out /tmp/new.json --reuse /tmp/study.json  # only what the old rows lack
    python benchmarks/axial_sr_study.py --out /tmp/study.json --start 7  # resume after 7 cases

``--reuse`` takes each run an earlier study's rows hold for the same case and model (every run is seeded, so it
would give the same numbers) and runs only the rest.

``benchmarks/calibrate_axial_safety.py`` fits the safeguards' thresholds on these rows.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from axial_cases import OFFSET, CaseSpec, build, development_cases
from napari_kernelgan.axial import output_planes
from napari_kernelgan.axial._zsafety import model_kernel
from napari_kernelgan.errors import BadInputError
from napari_kernelgan.physics.optics import Optics, psf_3d

SHAVE_XY = 4
KINDS = ("mixed", "nuclei", "filaments", "membranes", "puncta")
OBJECTIVES = [(1.4, 1.515, 0.52), (1.2, 1.333, 0.58), (1.0, 1.333, 0.6), (0.9, 1.0, 0.52), (1.3, 1.515, 0.6)]


def _scale(field: str, k: float) -> Callable[[Optics], Optics]:
    from napari_kernelgan.axial._zsafety import scaled_na

    if field == "na":
        return lambda o: scaled_na(o, k)
    return lambda o: dataclasses.replace(o, **{field: getattr(o, field) * k})


def _depth(o: Optics) -> Optics:
    if o.n_sample is not None and o.n_sample != o.n_immersion:
        return dataclasses.replace(o, depth_um=o.depth_um * 0.5)
    return o


def _modality(o: Optics) -> Optics:
    return dataclasses.replace(o, modality="widefield" if o.modality == "confocal" else "confocal")


def _modality_wide(o: Optics) -> Optics:
    """The wrong modality with a higher NA: a blind estimate that reads a confocal stack as widefield matches its
    narrower axial blur with a higher NA, and the 3-D path then passes its checks most easily."""
    return _scale("na", 1.15)(_modality(o))


PERTURBATIONS: dict[str, Callable[[Optics], Optics]] = {
    "true": lambda o: o,
    "na0.85": _scale("na", 0.85), "na0.93": _scale("na", 0.93), "na1.07": _scale("na", 1.07),
    "na1.15": _scale("na", 1.15), "wl0.9": _scale("wavelength_um", 0.9), "wl1.1": _scale("wavelength_um", 1.1),
    "depth": _depth, "modality": _modality, "modality_na1.15": _modality_wide,
}
SMORE_PERTURBATIONS = ("true", "na0.85", "na1.15", "modality")
# An estimate "near the truth": axial FWHM within about ±15 %, NA and wavelength a little off, the modality right.
NEAR_RIGHT = ("true", "na0.93", "na1.07", "wl0.9", "wl1.1", "depth")


def synthetic_specs(count: int) -> list[tuple[str, Callable]]:
    """Generated stacks on seeds 500 …: objectives, modality, factor, photons and kind cycle."""
    from napari_kernelgan.synthetic3d import axial_case

    out = []
    for i in range(count):
        seed = 500 + i
        na, n, lam = OBJECTIVES[i % len(OBJECTIVES)]
        modality = "widefield" if (i // len(OBJECTIVES)) % 2 == 0 else "confocal"
        if i % 2:
            modality = "confocal" if modality == "widefield" else "widefield"
        optics = Optics(modality=modality, na=min(na, n * 0.95), n_immersion=n, wavelength_um=lam)
        factor, photons, kind = (3, 4, 5)[i % 3], (100, 500, 2000, 50)[(i // 3) % 4], KINDS[i % len(KINDS)]

        def make(seed=seed, optics=optics, factor=factor, photons=photons, kind=kind):
            return axial_case(seed, optics, factor=factor, photons=photons, kind=kind, shape=(96, 64, 64),
                              offset=OFFSET)

        out.append((f"syn{seed}_{modality[:4]}_na{na}_x{factor}_{kind}", make))
    return out


LOW_LIGHT = [(600, Optics(modality="confocal", na=0.95, n_immersion=1.0, wavelength_um=0.45, pinhole_au=1.0), 3,
              "nuclei", 0.13),
             (601, Optics(modality="confocal", na=1.1, n_immersion=1.333, wavelength_um=0.55, pinhole_au=1.0), 4,
              "mixed", 0.1),
             (602, Optics(modality="confocal", na=1.3, n_immersion=1.515, wavelength_um=0.6, pinhole_au=0.8), 3,
              "membranes", 0.08),
             (603, Optics(modality="widefield", na=1.2, n_immersion=1.333, wavelength_um=0.52), 4, "nuclei", 0.1)]
"""Stacks at 50 photons (seeds 600 …), where a PSF too wide and the right one predict the noisy held-out planes
alike: three confocal, whose misreading as widefield the 3-D path must not take, and a widefield one."""


def low_light_specs() -> list[tuple[str, Callable]]:
    from napari_kernelgan.synthetic3d import axial_case

    out = []
    for seed, optics, factor, kind, pixel in LOW_LIGHT:
        def make(seed=seed, optics=optics, factor=factor, kind=kind, pixel=pixel):
            return axial_case(seed, optics, pixel_um=pixel, factor=factor, photons=50, kind=kind,
                              shape=(96, 64, 64), offset=OFFSET)

        out.append((f"low{seed}_{optics.modality[:4]}_na{optics.na}_x{factor}_{kind}", make))
    return out


def all_cases(quick: bool, synthetic: int, which: str = "all") -> list[tuple[str, Callable]]:
    dev: list[CaseSpec] = development_cases()
    named = [(s.name, lambda s=s: build(s)) for s in dev]
    generated = synthetic_specs(synthetic) + low_light_specs()
    cases = {"all": named + generated, "dev": named, "synthetic": generated}[which]
    return cases[:3] if quick else cases


def psnr(volume: np.ndarray, truth: np.ndarray, factor: int) -> float:
    """PSNR against the truth as the axial report scores it (offset removed, borders shaved)."""
    sl = (slice(factor, volume.shape[0] - factor), slice(SHAVE_XY, -SHAVE_XY), slice(SHAVE_XY, -SHAVE_XY))
    est = np.asarray(volume, np.float64)[sl] - OFFSET
    ref = np.asarray(truth, np.float64)[sl]
    rng = float(truth.max() - truth.min())
    return float(10 * np.log10(rng ** 2 / max(float(np.mean((est - ref) ** 2)), 1e-12)))


def model_psf(case, optics: Optics):
    """The AxialPSF a model ``optics`` gives on the case's sampling, with ``model=`` it."""
    from napari_kernelgan.synthetic3d import true_axial_psf

    fine = case.z_step_um / case.factor
    vol = model_kernel(optics, case.pixel_um, fine, output_planes(case.stack.shape[0], case.factor))
    p = true_axial_psf(vol, case.pixel_um, fine)
    from napari_kernelgan.axial.psf import AxialPSF

    return AxialPSF(lateral=p.lateral, axial=p.axial, relative=p.relative, pixel_um=case.pixel_um,
                    z_step_um=case.z_step_um, step_um=fine, confidence=1.0, method="model", model=optics)


def _run(case, psf, **kw) -> tuple[float, dict, object]:
    from napari_kernelgan.axial.isotropic import super_resolve_axial

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = super_resolve_axial(case.stack, psf, z_factor=case.factor, seed=0, threads=1, **kw)
    val = {k: v for k, v in r.validation.items() if isinstance(v, (int, float, str, bool, dict))}
    val["seconds"] = time.perf_counter() - t0
    val["sr_method"] = r.sr_method
    val["fell_back"] = bool(r.fell_back)
    val["warnings"] = list(r.warnings) + [str(w.message) for w in caught if "napari_kernelgan" in w.filename]
    return psnr(r.volume, case.truth, case.factor), val, r


def net_check(case, psf) -> dict:
    """The network's held-out z check on the case's central crop with ``psf`` (one thread)."""
    from napari_kernelgan.axial._netcheck import net_held_out
    from napari_kernelgan.axial._zops import measure_stack_noise
    from napari_kernelgan.devices import torch_threads

    noise = measure_stack_noise(np.asarray(case.stack[case.stack.shape[0] // 2], dtype=np.float64))
    t0 = time.perf_counter()
    with torch_threads(1):
        c = net_held_out(case.stack, psf, case.factor, noise, seed=0)
    return {"held": c.held_db, "mse_net": c.mse_net, "mse_cubic": c.mse_cubic, "steps": c.steps,
            "seconds": time.perf_counter() - t0}


def runs_smore(mode: str, label: str) -> bool:
    """Whether the study trains the network with this perturbation (:data:`SMORE_PERTURBATIONS`, and on confocal
    stacks every near-right model: ``auto`` may choose it there)."""
    return label in SMORE_PERTURBATIONS or (mode == "confocal" and label in NEAR_RIGHT)


def study_case(name: str, make: Callable, train_seconds: float, auto: bool, old: dict | None = None) -> dict:
    from napari_kernelgan.axial import _zsafety

    old = old or {}
    case = make()
    row: dict = {"case": name, "mode": case.optics.modality, "factor": case.factor,
                 "stack_shape": list(case.stack.shape)}
    base = old["cubic"] if "cubic" in old else _run(case, case.true_psf, sr_method="cubic")[0]
    row["cubic"] = base
    fine = case.z_step_um / case.factor
    planes = output_planes(case.stack.shape[0], case.factor)
    if "true_psf3d" in old:
        row["true_psf3d"] = old["true_psf3d"]
    else:
        p, val, _ = _run(case, case.true_psf, sr_method="deconvolve", psf3d=(case.psf, case.pixel_um, fine),
                         safe=False)
        row["true_psf3d"] = {"gain": p - base, **val}
    for label, perturb in PERTURBATIONS.items():
        optics = perturb(case.optics)
        if label != "true" and optics == case.optics:
            continue
        try:
            psf = model_psf(case, optics)
        except BadInputError:  # the model's PSF would not fit a kernel of any reasonable size
            continue
        entry: dict = {k: v for k, v in old.get(label, {}).items() if k in ("psf3d", "smore", "scores", "net_check")}
        if "psf3d" not in entry:
            p, val, _ = _run(case, psf, sr_method="deconvolve", safe=False,
                             psf3d=(model_kernel(optics, case.pixel_um, fine, planes), case.pixel_um, fine))
            entry["psf3d"] = {"gain": p - base, **val}
        if runs_smore(row["mode"], label) and "smore" not in entry:
            p, val, _ = _run(case, psf, sr_method="smore", safe=False, train_seconds=train_seconds)
            entry["smore"] = {"gain": p - base, **val}
        if "scores" not in entry:
            entry["scores"] = _zsafety.study_scores(case.stack, psf, case.factor)
        if "net_check" not in entry:
            entry["net_check"] = net_check(case, psf)
        if auto:
            p, val, _ = _run(case, psf, sr_method="auto", train_seconds=train_seconds)
            entry["auto"] = {"gain": p - base, **val}
        row[label] = entry
        _print(name, label, entry, auto)
    row["estimated_wide"] = old["estimated_wide"] if "estimated_wide" in old else estimated_wide(case, base)
    _print(name, "estimated_wide", row["estimated_wide"], False)
    return row


def _print(name: str, label: str, entry: dict, auto: bool) -> None:
    held = entry["scores"].get("1", {}).get("held")
    print(f"  {name} {label}: 3-D {entry['psf3d']['gain']:+.2f} held {held}"
          + (f" smore {entry['smore']['gain']:+.2f}" if "smore" in entry else "")
          + (f" net held {entry['net_check']['held']:+.2f}" if "net_check" in entry else "")
          + (f" auto {entry['auto']['gain']:+.2f} ({entry['auto'].get('auto_choice')})" if auto else ""),
          flush=True)


def estimated_wide(case, base: float) -> dict:
    """The widefield reading a blind estimate would give the case (the objective reproducing its true axial and
    lateral FWHM, :func:`~napari_kernelgan.axial._learned.choose_optics`): the 3-D path's gain with it over cubic
    interpolation's PSNR ``base`` and its candidate scores — right for a widefield case, the modality misread
    for a confocal one."""
    from napari_kernelgan.axial import _zsafety
    from napari_kernelgan.axial._learned import choose_optics

    fine = case.z_step_um / case.factor
    optics = choose_optics(case.axial_fwhm_um, float(np.mean(case.true_psf.lateral_fwhm_um)), "widefield",
                           case.pixel_um)
    psf = model_psf(case, optics)
    planes = output_planes(case.stack.shape[0], case.factor)
    p, val, _ = _run(case, psf, sr_method="deconvolve", safe=False,
                     psf3d=(model_kernel(optics, case.pixel_um, fine, planes), case.pixel_um, fine))
    return {"optics": dataclasses.asdict(optics), "psf3d": {"gain": p - base, **val},
            "scores": _zsafety.study_scores(case.stack, psf, case.factor)}


def auto_case(name: str, make: Callable, train_seconds: float, modality: str | None = None) -> dict | None:
    """``auto`` with each near-right model (:data:`NEAR_RIGHT`) against cubic and the true 3-D PSF's path; where
    ``auto`` took the 3-D path with a confocal model, also the network alone (what ``auto`` ran there before it
    chose between the two: ``network_only``). ``None`` for a case of another ``modality`` than asked."""
    case = make()
    if modality is not None and case.optics.modality != modality:
        return None
    row: dict = {"case": name, "mode": case.optics.modality, "factor": case.factor}
    base, _, _ = _run(case, case.true_psf, sr_method="cubic")
    fine = case.z_step_um / case.factor
    p, val, _ = _run(case, case.true_psf, sr_method="deconvolve", psf3d=(case.psf, case.pixel_um, fine), safe=False)
    row["true_psf3d"] = {"gain": p - base}
    for label in NEAR_RIGHT:
        optics = PERTURBATIONS[label](case.optics)
        if label != "true" and optics == case.optics:
            continue
        try:
            psf = model_psf(case, optics)
        except BadInputError:
            continue
        p, val, _ = _run(case, psf, sr_method="auto", train_seconds=train_seconds or None)
        row[label] = {"auto": {"gain": p - base, **val}}
        if row["mode"] == "confocal" and val.get("auto_choice") == "psf3d":
            q, val2, _ = _run(case, psf, sr_method="smore", train_seconds=train_seconds or None)
            row[label]["network_only"] = {"gain": q - base, **val2}
        print(f"  {name} {label}: auto {p - base:+.2f} ({val.get('auto_choice')}, {val['sr_method']}, NA ×"
              f"{val.get('psf3d_na_scale', '-')}) true 3-D {row['true_psf3d']['gain']:+.2f}", flush=True)
    return row


def auto_summary(rows: list[dict]) -> str:
    """Mean gain of ``auto`` with near-right models, its share of the true 3-D PSF's gain, runs below cubic; on
    confocal stacks also the network alone (``auto`` before it chose between the network and the 3-D path)."""
    lines = []
    net = [(r[label]["network_only"] if "network_only" in r[label] else r[label]["auto"])
           for r in rows if r["mode"] == "confocal" for label in NEAR_RIGHT if "auto" in r.get(label, {})]
    if net and any("network_only" in r.get(label, {}) for r in rows for label in NEAR_RIGHT):
        gains = [n["gain"] for n in net]
        lines.append(f"confocal, the network alone: {len(gains)} runs, mean gain {np.mean(gains):+.2f} dB, "
                     f"{sum(g < 0 and not n['fell_back'] and not n['warnings'] for g, n in zip(gains, net))} below "
                     f"cubic without a warning, worst {min(gains):+.2f} dB")
    for mode in ("widefield", "confocal", None):
        gains, true, below = [], [], 0
        for r in rows:
            for label in NEAR_RIGHT:
                a = r.get(label, {}).get("auto")
                if a and mode in (None, r["mode"]):
                    gains.append(a["gain"])
                    true.append(r["true_psf3d"]["gain"])
                    below += int(a["gain"] < 0 and not a["fell_back"] and not a["warnings"])
        if gains:
            lines.append(f"{mode or 'all'}: " + _auto_line(gains, true, below))
    return "\n".join(lines)


def _auto_line(gains: list[float], true: list[float], below: int) -> str:
    return (f"auto with near-right models: {len(gains)} runs, mean gain {np.mean(gains):+.2f} dB over cubic, "
            f"true 3-D PSF {np.mean(true):+.2f} dB ({np.mean(gains) / max(np.mean(true), 1e-9):.0%}), "
            f"{below} below cubic without a warning, worst {min(gains):+.2f} dB")


def timing(threads: int) -> dict:
    """``auto`` with a widefield model (NA 1.4 oil, the stack's own optics) on the report's 64×512×512 uint16 timing
    stack (:func:`axial_benchmark.timing_stack`), and with the model's NA halved (no 3-D PSF passes: the
    network runs after the candidates, the longest way through)."""
    import tempfile

    from axial_benchmark import TIMING_FACTOR, TIMING_PIXEL, timing_stack
    from napari_kernelgan.axial.isotropic import super_resolve_axial
    from napari_kernelgan.axial.psf import AxialPSF
    from napari_kernelgan.synthetic3d import true_axial_psf

    out = {}
    with tempfile.TemporaryDirectory(prefix="axial-sr-timing-") as tmp:
        path = Path(tmp) / "stack.npy"
        timing_stack(path)
        stack = np.load(path, mmap_mode="r")
        fine = TIMING_PIXEL
        for label, na in (("model", 1.4), ("model_na0.5", 0.7)):
            optics = Optics(na=na, wavelength_um=0.52)
            p = true_axial_psf(psf_3d(optics, TIMING_PIXEL, fine), TIMING_PIXEL, fine)
            psf = AxialPSF(lateral=p.lateral, axial=p.axial, relative=p.relative, pixel_um=TIMING_PIXEL,
                           z_step_um=TIMING_PIXEL * TIMING_FACTOR, step_um=fine, confidence=1.0, method="model",
                           model=optics)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = super_resolve_axial(stack, psf, z_factor=TIMING_FACTOR, seed=0, threads=threads)
            out[label] = {"seconds": time.perf_counter() - start, "method": r.sr_method,
                          "choice": r.validation.get("auto_choice"), "na_scale": r.validation.get("psf3d_na_scale"),
                          "load_average": list(__import__("os").getloadavg())}
            print(f"timing {label}: {out[label]}", flush=True)
        out["confocal_choice"] = choice_timing(stack, threads)
        print(f"timing confocal_choice: {out['confocal_choice']}", flush=True)
    return out


def choice_timing(stack, threads: int) -> dict:
    """What a confocal model adds to ``auto`` on the timing stack before it runs either path: the three 3-D
    candidates on the central block and the network's held-out z check (NA 1.4 oil confocal model)."""
    from axial_benchmark import TIMING_FACTOR, TIMING_PIXEL
    from napari_kernelgan.axial import _zsafety, isotropic, zdeconv
    from napari_kernelgan.axial._netcheck import net_held_out
    from napari_kernelgan.axial._zops import measure_stack_noise
    from napari_kernelgan.axial.psf import AxialPSF
    from napari_kernelgan.devices import torch_threads
    from napari_kernelgan.synthetic3d import true_axial_psf

    optics = Optics(modality="confocal", na=1.4, wavelength_um=0.52, pinhole_au=1.0)
    fine = TIMING_PIXEL
    p = true_axial_psf(psf_3d(optics, TIMING_PIXEL, fine), TIMING_PIXEL, fine)
    psf = AxialPSF(lateral=p.lateral, axial=p.axial, relative=p.relative, pixel_um=TIMING_PIXEL,
                   z_step_um=TIMING_PIXEL * TIMING_FACTOR, step_um=fine, confidence=1.0, method="model", model=optics)
    mid = np.asarray(stack[stack.shape[0] // 2], dtype=np.float64)
    noise = measure_stack_noise(mid)
    start, cpu0 = time.perf_counter(), time.process_time()
    gen = _zsafety.iter_choose_psf3d(stack, psf, TIMING_FACTOR, zdeconv.noise_lambda(mid, noise, TIMING_PIXEL, fine),
                                     scales=isotropic.NA_SCALES, held_min_db=isotropic.MARGIN_3D_DB,
                                     below_max=isotropic.BELOW_MAX, prefer_db=isotropic.PREFER_DB, workers=threads)
    for _ in gen:
        pass
    mid_t, cpu1 = time.perf_counter(), time.process_time()
    with torch_threads(threads):
        check = net_held_out(stack, psf, TIMING_FACTOR, noise, seed=0)
    end, cpu2 = time.perf_counter(), time.process_time()
    # CPU seconds as well: on a shared machine the wall clock mostly measures the other work.
    return {"candidates_seconds": mid_t - start, "network_check_seconds": end - mid_t,
            "candidates_cpu_seconds": cpu1 - cpu0, "network_check_cpu_seconds": cpu2 - cpu1, "check_steps": check.steps,
            "network_held_db": check.held_db, "load_average": list(__import__("os").getloadavg())}


def table(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        lines.append(f"{r['case']} ({r['mode']}, ×{r['factor']}): true 3-D PSF {r['true_psf3d']['gain']:+.2f}")
        for label in PERTURBATIONS:
            e = r.get(label)
            if not e:
                continue
            s = e.get("smore", {})
            a = e.get("auto", {})
            lines.append(f"  {label:9s}" + (f" 3-D {e['psf3d']['gain']:+6.2f}" if "psf3d" in e else "")
                         + (f" smore {s['gain']:+6.2f} held {s['psnr_method'] - s['psnr_cubic']:+5.2f} "
                            f"match {s['psf_match']:.2f} cons {s.get('consistency', float('nan')):.2f}" if s else "")
                         + (f" auto {a['gain']:+6.2f} {a.get('auto_choice')}" if a else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="JSON rows, written after each case")
    ap.add_argument("--table", type=Path, help="print the table of a finished run and stop")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--synthetic", type=int, default=12)
    ap.add_argument("--train-seconds", type=float, default=6.0, help="the network's budget (0: its default)")
    ap.add_argument("--auto", action="store_true", help="also run sr_method='auto' per perturbation")
    ap.add_argument("--auto-only", action="store_true", help="only auto with near-right models (and the truth)")
    ap.add_argument("--cases", choices=("all", "dev", "synthetic"), default="all")
    ap.add_argument("--timing", action="store_true", help="only time auto on a 64×512×512 stack")
    ap.add_argument("--choice-timing", action="store_true",
                    help="only time what a confocal model adds to auto on the 64×512×512 stack")
    ap.add_argument("--modality", choices=("widefield", "confocal"), help="with --auto-only: only these cases")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--start", type=int, default=0,
                    help="skip the first N cases (a run resumed: the --out file's first N rows are kept)")
    ap.add_argument("--reuse", type=Path, help="an earlier study's rows: its runs are taken, not rerun")
    args = ap.parse_args(argv)
    if args.table:
        rows = json.loads(args.table.read_text())
        print(table(rows) + "\n" + auto_summary(rows))
        return 0
    if args.timing:
        print(json.dumps(timing(args.threads)))
        return 0
    if args.choice_timing:
        import tempfile

        from axial_benchmark import timing_stack

        with tempfile.TemporaryDirectory(prefix="axial-choice-timing-") as tmp:
            timing_stack(Path(tmp) / "stack.npy")
            print(json.dumps(choice_timing(np.load(Path(tmp) / "stack.npy", mmap_mode="r"), args.threads)))
        return 0
    rows = json.loads(args.out.read_text())[:args.start] if args.start and args.out and args.out.exists() else []
    old = {r["case"]: r for r in json.loads(args.reuse.read_text())} if args.reuse else {}
    for name, make in all_cases(args.quick, args.synthetic, args.cases)[args.start:]:
        if args.auto_only:
            row = auto_case(name, make, args.train_seconds, args.modality)
            if row is not None:
                rows.append(row)
        else:
            rows.append(study_case(name, make, args.train_seconds, args.auto, old.get(name)))
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1, default=float))
    print(table(rows) + "\n" + auto_summary(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
