"""A run's table: a row per input (or per slice and channel with their own kernels), written as
``summary.csv`` and ``summary.json``."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .outputs import write_json

if TYPE_CHECKING:
    from .config import BatchConfig, BatchResult

__all__ = ["SUMMARY_COLUMNS", "AXIAL_COLUMNS", "row", "kernel_row", "write_summary"]

SUMMARY_COLUMNS = ("file", "slice", "channel", "status", "estimator", "sr_method", "scale", "kernel_size",
                   "sigma_major", "sigma_minor", "orientation_deg", "confidence", "seconds", "output", "error")


AXIAL_COLUMNS = ("axial_fwhm_um", "lateral_fwhm_um", "z_step_um", "z_step_out_um", "psf_method")
"""The summary columns an axial run adds after the usual ones."""


def kernel_row(est: Any) -> dict[str, Any]:
    """The summary columns of a kernel: an estimate, a known kernel (array) or a kernel map (none)."""
    from ..physics.metrics import covariance_axes, second_moments

    kernel = getattr(est, "kernel", est)
    if not isinstance(kernel, np.ndarray) or kernel.ndim != 2:
        return {"estimator": "kernel map"}
    major, minor, theta = covariance_axes(second_moments(kernel))
    confidence = getattr(est, "confidence", None)
    return {"estimator": getattr(est, "method", "known kernel"), "kernel_size": int(kernel.shape[0]),
            "sigma_major": round(float(major), 4), "sigma_minor": round(float(minor), 4),
            "orientation_deg": round(float(theta), 2),
            "confidence": None if confidence is None else round(float(confidence), 4)}


def row(cfg: BatchConfig, path: Path, **values: Any) -> dict[str, Any]:
    """A summary row of input ``path``: the run's settings, then ``values``."""
    new: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS, None)
    new.update(file=str(path), slice="", channel="", estimator=cfg.estimator, sr_method=cfg.sr_method, scale=cfg.scale,
               error="")
    new.update(values)
    return new


def write_summary(cfg: BatchConfig, batch: BatchResult) -> list[Path]:
    """``summary.csv`` (a row per input, or per slice with per-slice kernels, or per channel of an axial run, which
    adds the columns of :data:`AXIAL_COLUMNS`) and ``summary.json`` (the
    same rows, the settings and the totals) in ``cfg.out``, atomically."""
    from ..io import atomic_path
    rows = batch.rows
    buffer = io.StringIO()
    columns = SUMMARY_COLUMNS + AXIAL_COLUMNS if cfg.axial else SUMMARY_COLUMNS
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    csv_path = cfg.out / "summary.csv"
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buffer.getvalue())
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("keep_results",)}
    record = {"settings": settings, "inputs": len(batch.results), **batch.counts, "seconds": round(batch.seconds, 3),
              "rows": rows}
    json_path = write_json(cfg.out / "summary.json", json.loads(json.dumps(record, default=str)))
    return [csv_path, json_path]
