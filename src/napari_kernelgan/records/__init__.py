"""Fitted constants as records.

Every number that a calibration script chose on data lives in a small JSON file in this folder,
written by that script (``benchmarks/calibrate_*.py``) and loaded here by the code that uses it.
A record says where its numbers came from: the script, the exact command, the inputs (data
folders, seeds, images), the date and the machine. ``tests/test_records.py`` ties every record to
its script, so a constant cannot be edited by hand without the test noticing the record no longer
names the script that wrote it.

    from napari_kernelgan.records import record_values
    GAIN = record_values("auto")["gain"]

    # in a calibration script, after fitting:
    write_record("auto", {"gain": 1.2, ...}, script=__file__, inputs={"data": "div2krk 1-30"})
"""
from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORDS_DIR = Path(__file__).resolve().parent
FORMAT = "napari-kernelgan/record"
VERSION = 1


@dataclass(frozen=True)
class Record:
    """One calibration's output: the fitted ``values`` and how they were made."""

    name: str
    values: dict[str, Any]
    script: str                 # path relative to the repository root, e.g. "benchmarks/calibrate_auto.py"
    command: str                # the command line that wrote the record
    inputs: dict[str, Any] = field(default_factory=dict)
    date: str = ""              # ISO 8601, UTC
    machine: str = ""
    notes: str = ""


def record_path(name: str) -> Path:
    """Where the record ``name`` lives in the installed package."""
    return RECORDS_DIR / f"{name}.json"


def names() -> list[str]:
    """Every record the package ships."""
    return sorted(p.stem for p in RECORDS_DIR.glob("*.json"))


@functools.cache
def load_record(name: str) -> Record:
    """Read the record ``name``; a missing or malformed file is a packaging bug and says so."""
    path = record_path(name)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise RuntimeError(f"the fitted-constants record {path.name} is missing from the package "
                           f"(reinstall napari-kernelgan)") from exc
    if raw.get("format") != FORMAT:
        raise RuntimeError(f"{path} is not a napari-kernelgan record (format {raw.get('format')!r})")
    return Record(name=name, values=raw["values"], script=raw["script"], command=raw["command"],
                  inputs=raw.get("inputs", {}), date=raw.get("date", ""), machine=raw.get("machine", ""),
                  notes=raw.get("notes", ""))


def record_values(name: str) -> dict[str, Any]:
    """The fitted values of record ``name`` (a fresh copy: callers may not change the record)."""
    return json.loads(json.dumps(load_record(name).values))


def _repo_relative(script: str | os.PathLike) -> str:
    path = Path(script).resolve()
    for parent in path.parents:
        if (parent / "pyproject.toml").exists():
            return path.relative_to(parent).as_posix()
    return path.name


def write_record(name: str, values: dict[str, Any], *, script: str | os.PathLike,
                 inputs: dict[str, Any] | None = None, notes: str = "", command: str | None = None,
                 directory: str | os.PathLike | None = None) -> Path:
    """Write the record ``name`` atomically (called by the calibration script that fitted ``values``).

    ``script`` is the calling script's ``__file__``; ``command`` defaults to this process's command
    line. ``directory`` defaults to the package's own records folder, so rerunning a calibration
    updates the constants the package loads.
    """
    from ..io import atomic_path

    rel = _repo_relative(script)
    if command is None:
        command = shlex.join(["python", rel, *sys.argv[1:]])
    record = {
        "format": FORMAT, "version": VERSION, "name": name, "script": rel, "command": command,
        "inputs": inputs or {},
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "notes": notes, "values": values,
    }
    target = Path(directory) / f"{name}.json" if directory is not None else record_path(name)
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=False) + "\n")
    load_record.cache_clear()
    return target
