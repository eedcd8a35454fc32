"""Fit the axial SR safeguards' limits (record ``axial_safety``) by cross-validation on development stacks.

Input: the rows of ``benchmarks/axial_sr_study.py`` (DEVELOPMENT cases only: ``axial_cases.development_cases``
and generated stacks on seeds 500+; per case, the true optics perturbed as an estimate errs — NA ×0.85 … ×1.15,
wavelength ±10 %, mismatch depth, modality — each run through the 3-D path and, for some, the network, with
``safe=False``, scored against the isotropic truth).

What is fitted, each on a grid, to maximise the summed PSNR gain over cubic that the safeguard lets through
(a run the safeguard stops scores 0: cubic interpolation), ties going to the middle of the tied limits:

* the 3-D path (``auto`` with a widefield model, and ``deconvolve`` with a 3-D PSF): ``held_min_db``, the lowest
  held-out z gain (odd planes predicted from the even ones through the PSF) on the central block, and
  ``below_max``, the deepest dip of the block's solution below the background (over its contrast) — measured
  on the central block with the perturbed model, paired with that model's gain on the whole stack;
* ``prefer_db``: how much better an NA neighbour's held-out z gain must be for ``auto`` to leave the model's own
  NA — on the widefield cases, each NA-perturbed model's candidates (NA ×0.93/1/1.07 of it, their measured
  scores on the central block, each given the whole-stack gain of the study's run nearest in NA), ``auto``'s pick
  scored, the network's gain where none passes;
* the network: ``consistency_max`` (re-blur ratio against cubic) and ``psf_match_max`` (z lines against
  degraded lateral lines), among the runs its held-out lateral check passes (the study's original network runs:
  NA ×0.85/1/1.15 and the wrong modality);
* ``network_margin_db``: with a confocal model, how much better the network's held-out z gain must be than the
  chosen 3-D PSF's for ``auto`` to run the network — on the confocal cases' near-right models (the study's
  ``NEAR_RIGHT``), each run through ``auto``'s choice with the limits above: the 3-D candidates as for widefield
  (a candidate's gain is that of the study's run nearest in NA; for a wavelength or depth error only the model's
  own NA has a run), the network's gain where it is chosen or no candidate passes, 0 (cubic, with a warning)
  where the path taken fails its own checks. It is adopted (written) only if, leave one case out, it raises the
  mean gain over the network alone (``auto`` before) and lets no run below cubic without a warning; else the
  record holds ``null`` and ``auto`` keeps the network on confocal stacks.

Cross-validation: leave one case out (all its perturbations), fit on the rest, apply to it; the record's
inputs give the mean gain let through per case held out, the runs below cubic let through, and the gaining
runs stopped, next to the same figures without the safeguard. ``na_scales`` (the NA neighbours ``auto``
tries) is a design choice: ±7 % is what an axial FWHM within ±15 % allows.

    python benchmarks/axial_sr_study.py --out /tmp/study.json
    python benchmarks/calibrate_axial_safety.py /tmp/study.json   # writes records/axial_safety.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np

from axial_sr_study import NEAR_RIGHT
from axial_sr_study import SMORE_PERTURBATIONS as SMORE_LABELS  # the network runs the limits are fitted on
from napari_kernelgan.axial.isotropic import CHANGE_3D, MARGIN_DB  # design choices, not fitted
from napari_kernelgan.records import write_record

NA_SCALES = (0.93, 1.0, 1.07)
HELD_GRID = (-3.0, -2.5, -2.0, -1.75, -1.5, -1.25, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5)
BELOW_GRID = (0.02, 0.03, 0.05, 0.07, 0.1, 0.125, 0.15, 0.175, 0.2, 0.225, 0.25, 0.275, 0.3, 0.35, 0.4, 0.5, 0.7, 1.0)
CONSISTENCY_GRID = (1.5, 2.0, 2.5, 3.0, 4.0, 6.0, 10.0)
MATCH_GRID = (1.25, 1.5, 2.0, 2.5, 3.0, 4.0)
PREFER_GRID = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
NETWORK_GRID = (-1.0, -0.75, -0.5, -0.4, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
NA_FAMILY = {"na0.85": 0.85, "na0.93": 0.93, "true": 1.0, "na1.07": 1.07, "na1.15": 1.15}


def choices(rows: list[dict], held_min: float, below_max: float) -> list[tuple[str, list, float, dict]]:
    """Per widefield case and NA-perturbed model: the candidates ``auto`` tries (NA scale, held-out z gain,
    dip, accepted), the fallback's gain (the network's where measured, else 0: cubic) and the whole-stack gain of
    each effective NA the study ran (a candidate's gain is that of the perturbation of the nearest NA, within
    0.04; candidates with none are left out)."""
    from types import SimpleNamespace

    out = []
    for r in rows:
        if r.get("mode") != "widefield":
            continue
        gains = {f: r[k]["psf3d"]["gain"] for k, f in NA_FAMILY.items() if k in r and "psf3d" in r[k]}
        for k, f in NA_FAMILY.items():
            e = r.get(k)
            if not e or "scores" not in e:
                continue
            tried = []
            for key, sc in e["scores"].items():
                if not isinstance(sc, dict):
                    continue
                near = min(gains, key=lambda g: abs(g - f * float(key)))
                if abs(near - f * float(key)) <= 0.04:
                    tried.append(SimpleNamespace(scale=float(key), held_db=sc["held"], gain=gains[near],
                                                 accepted=sc["held"] >= held_min and sc["below"] <= below_max))
            out.append((r["case"], tried, e.get("smore", {}).get("gain", 0.0), {}))
    return out


def auto_gain(sample, prefer_db: float) -> float:
    from napari_kernelgan.axial._zsafety import pick

    _, tried, fallback, _ = sample
    chosen = pick(tried, prefer_db)
    return fallback if chosen is None else chosen.gain


def best_on_grid(grid: tuple[float, ...], total) -> float:
    """The value of ``grid`` with the highest ``total(value)`` (rounded to 1e-6); among values tied on it, the
    middle one."""
    totals = [round(total(v), 6) for v in grid]
    tied = [v for v, t in zip(grid, totals) if t == max(totals)]
    return tied[(len(tied) - 1) // 2]


def fit_prefer(samples) -> float:
    return best_on_grid(PREFER_GRID, lambda d: sum(auto_gain(s, d) for s in samples))


def cross_validate_prefer(samples) -> dict:
    cases = sorted({s[0] for s in samples})
    through = []
    for case in cases:
        d = fit_prefer([s for s in samples if s[0] != case])
        through += [auto_gain(s, d) for s in samples if s[0] == case]
    return {"cases": len(cases), "models": len(samples), "mean_gain_db": round(float(np.mean(through)), 3),
            "below_cubic": int(sum(g < 0 for g in through)),
            "best_held_always": round(float(np.mean([auto_gain(s, 0.0) for s in samples])), 3),
            "own_na_when_accepted": round(float(np.mean([auto_gain(s, 1e9) for s in samples])), 3)}


def samples_3d(rows: list[dict]) -> list[tuple[str, float, float, float]]:
    """(case, held-out z gain, below-background, whole-stack gain) of each perturbed model's 3-D path."""
    out = []
    for r in rows:
        for e in r.values():
            if isinstance(e, dict) and "scores" in e and "1" in e["scores"]:
                s = e["scores"]["1"]
                out.append((r["case"], s["held"], s["below"], e["psf3d"]["gain"]))
    return out


def samples_smore(rows: list[dict]) -> list[tuple[str, float, float, float]]:
    """(case, consistency, PSF match, gain) of each network run that passed its held-out lateral check."""
    out = []
    for r in rows:
        for label, e in r.items():
            if label in SMORE_LABELS and isinstance(e, dict) and "smore" in e:
                s = e["smore"]
                if s["psnr_method"] - s["psnr_cubic"] >= MARGIN_DB:
                    c = s.get("consistency", float("nan"))
                    out.append((r["case"], c if math.isfinite(c) else 0.0, s["psf_match"], s["gain"]))
    return out


def _fit(samples, grid_a, grid_b, accept) -> tuple[float, float]:
    """The grid pair letting through the most gain; among pairs tied on it, the middle one (the median tied
    value of the first limit, then of the second at it): as far from the runs on either side as the grid allows."""
    totals = {(a, b): round(sum(g for _, x, y, g in samples if accept(x, y, a, b)), 6)
              for a, b in itertools.product(grid_a, grid_b)}
    top = max(totals.values())
    tied = [k for k, v in totals.items() if v == top]
    firsts = sorted({a for a, _ in tied})
    a = firsts[(len(firsts) - 1) // 2]
    seconds = sorted(b for a2, b in tied if a2 == a)
    return a, seconds[(len(seconds) - 1) // 2]


def accept_3d(held: float, below: float, held_min: float, below_max: float) -> bool:
    return held >= held_min and below <= below_max


def accept_smore(cons: float, match: float, cons_max: float, match_max: float) -> bool:
    return cons <= cons_max and 1.0 / match_max <= match <= match_max


def cross_validate(samples, grid_a, grid_b, accept) -> dict:
    """Leave one case out: the gain let through on each held-out case, and the errors either way."""
    cases = sorted({c for c, *_ in samples})
    through, harm, lost = [], 0, 0
    for case in cases:
        a, b = _fit([s for s in samples if s[0] != case], grid_a, grid_b, accept)
        for c, x, y, g in samples:
            if c != case:
                continue
            ok = accept(x, y, a, b)
            through.append(g if ok else 0.0)
            harm += int(ok and g < 0)
            lost += int(not ok and g > 0)
    gains = [g for *_, g in samples]
    return {"cases": len(cases), "runs": len(samples), "mean_gain_db": round(float(np.mean(through)), 3),
            "below_cubic_let_through": harm, "gaining_stopped": lost,
            "without_safeguard": {"mean_gain_db": round(float(np.mean(gains)), 3),
                                  "below_cubic": int(sum(g < 0 for g in gains))}}


def _smore_through(s: dict, cons_max: float, match_max: float) -> tuple[float, bool]:
    """The network's gain as ``auto`` lets it through, and whether it warned: 0 (cubic) where a check fails."""
    c = s.get("consistency", float("nan"))
    ok = (s["psnr_method"] - s["psnr_cubic"] >= MARGIN_DB
          and accept_smore(c if math.isfinite(c) else 0.0, s["psf_match"], cons_max, match_max))
    return (s["gain"], False) if ok else (0.0, True)


def network_samples(rows: list[dict], values: dict) -> list[dict]:
    """Per confocal case and near-right model: the 3-D candidates (accepted under ``values``' limits, each with
    the whole-stack gain of the study's nearest-NA run and whether that run passes the change check), the
    network's held-out z gain and its gain as its checks let it through."""
    from types import SimpleNamespace

    out = []
    for r in rows:
        if r.get("mode") != "confocal":
            continue
        runs = {f: r[k]["psf3d"] for k, f in NA_FAMILY.items() if k in r and "psf3d" in r[k]}
        for label in NEAR_RIGHT:
            e = r.get(label)
            if not e or "smore" not in e or "net_check" not in e:
                continue
            f = NA_FAMILY.get(label)
            tried = []
            for key, sc in e["scores"].items():
                if not isinstance(sc, dict):
                    continue
                if f is None:  # a wavelength or depth error: only the model's own NA has a whole-stack run
                    run = e["psf3d"] if float(key) == 1.0 else None
                else:
                    near = min(runs, key=lambda g: abs(g - f * float(key)))
                    run = runs[near] if abs(near - f * float(key)) <= 0.04 else None
                if run is None:
                    continue
                tried.append(SimpleNamespace(
                    scale=float(key), held_db=sc["held"], gain=run["gain"],
                    change_ok=run.get("change_3d", 0.0) <= CHANGE_3D,
                    accepted=sc["held"] >= values["held_min_db"] and sc["below"] <= values["below_max"]))
            net_gain, net_warned = _smore_through(e["smore"], values["consistency_max"], values["psf_match_max"])
            out.append({"case": r["case"], "label": label, "tried": tried, "net_held": e["net_check"]["held"],
                        "net_gain": net_gain, "net_warned": net_warned, "net_raw": e["smore"]["gain"]})
    return out


def network_choice(sample: dict, margin: float | None, prefer_db: float) -> tuple[float, bool, str]:
    """(gain, warned, path) of ``auto`` with a confocal model and the choice's ``margin`` (``None``: the network
    always, as before the choice)."""
    from napari_kernelgan.axial._zsafety import pick

    net = (sample["net_gain"], sample["net_warned"], "network")
    if margin is None:
        return net
    best = pick(sample["tried"], prefer_db)
    if best is None or sample["net_held"] > best.held_db + margin:
        return net
    # The 3-D path's later check refused: the network gets its turn, as auto does.
    return (best.gain, False, "psf3d") if best.change_ok else net


def fit_network_margin(samples: list[dict], prefer_db: float) -> float:
    return best_on_grid(NETWORK_GRID, lambda m: sum(network_choice(s, m, prefer_db)[0] for s in samples))


def cross_validate_network(samples: list[dict], prefer_db: float) -> dict:
    """Leave one case out: ``auto``'s gain with the margin fitted on the other cases, against the network alone
    (before the choice) and the 3-D path wherever a candidate passes."""
    cases = sorted({s["case"] for s in samples})
    through, per_case = [], {}
    for case in cases:
        m = fit_network_margin([s for s in samples if s["case"] != case], prefer_db)
        mine = [(network_choice(s, m, prefer_db), m) for s in samples if s["case"] == case]
        through += mine
        per_case[case] = {"margin": m, "gains": [round(g, 2) for (g, _, _), _ in mine],
                          "paths": [p for (_, _, p), _ in mine]}

    def summary(results: list[tuple[float, bool, str]]) -> dict:
        gains = [g for g, _, _ in results]
        return {"mean_gain_db": round(float(np.mean(gains)), 3),
                "below_cubic_unwarned": int(sum(g < 0 and not w for g, w, _ in results)),
                "worst_db": round(float(min(gains)), 3),
                "network_runs": int(sum(p == "network" for _, _, p in results))}

    return {"cases": len(cases), "models": len(samples),
            "margins_fitted": sorted({m for _, m in through}),
            "choice": summary([r for r, _ in through]),
            "network_only": summary([network_choice(s, None, prefer_db) for s in samples]),
            "psf3d_when_accepted": summary([network_choice(s, float("inf"), prefer_db) for s in samples]),
            "per_case": per_case}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path, help="the JSON rows of benchmarks/axial_sr_study.py")
    ap.add_argument("--dry-run", action="store_true", help="print the fit, write nothing")
    args = ap.parse_args(argv)
    rows = json.loads(args.study.read_text())
    s3, sm = samples_3d(rows), samples_smore(rows)
    held_min, below_max = _fit(s3, HELD_GRID, BELOW_GRID, accept_3d)
    cons_max, match_max = _fit(sm, CONSISTENCY_GRID, MATCH_GRID, accept_smore)
    cv3 = cross_validate(s3, HELD_GRID, BELOW_GRID, accept_3d)
    cvs = cross_validate(sm, CONSISTENCY_GRID, MATCH_GRID, accept_smore)
    picks = choices(rows, held_min, below_max)
    prefer = fit_prefer(picks)
    cvp = cross_validate_prefer(picks)
    values = {"na_scales": list(NA_SCALES), "held_min_db": held_min, "below_max": below_max, "prefer_db": prefer,
              "consistency_max": cons_max, "psf_match_max": match_max}
    inputs = {}
    net = network_samples(rows, values)
    if net:
        cvn = cross_validate_network(net, prefer)
        adopt = (cvn["choice"]["mean_gain_db"] > cvn["network_only"]["mean_gain_db"]
                 and cvn["choice"]["below_cubic_unwarned"] == 0)
        values["network_margin_db"] = fit_network_margin(net, prefer) if adopt else None
        inputs["leave_one_case_out_network_choice"] = {**cvn, "adopted": adopt}
    print(json.dumps({"values": values, "cv_3d": cv3, "cv_smore": cvs, "cv_prefer": cvp, **inputs}, indent=1))
    if not args.dry_run:
        write_record("axial_safety", values, script=__file__,
                     inputs={"study": "benchmarks/axial_sr_study.py (development cases: "
                                      + ", ".join(r["case"] for r in rows) + ")",
                             "leave_one_case_out_3d": cv3, "leave_one_case_out_smore": cvs,
                             "leave_one_case_out_auto_choice": cvp, **inputs},
                     notes="3-D path: held-out z gain and below-background limits; network: re-blur and PSF-match "
                           "limits; each the grid pair letting the most gain through on development stacks; "
                           "network_margin_db: auto's choice between the 3-D path and the network with a confocal "
                           "model (null: the network, as before)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
