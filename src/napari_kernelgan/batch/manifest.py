"""What makes a batch run resumable: a manifest per input, written last, listing every output with its size
and SHA-256, and the check that skips an input finished before (:func:`finished_before`)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .outputs import write_json

if TYPE_CHECKING:
    from .config import BatchConfig, InputResult

__all__ = ["MANIFEST_SUFFIX", "MANIFEST_FORMAT", "sha256", "manifest_path", "finished_before", "write_manifest",
           "remove_stale_temporaries"]

MANIFEST_SUFFIX = "_manifest.json"
MANIFEST_FORMAT = 1
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}(\.[^.]+)?$")  # io.atomic_path's names: .STEM.XXXXXXXX.SUFFIX


def sha256(path: Path) -> str:
    """The SHA-256 of a file's content, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_path(cfg: BatchConfig, path: Path, stem: str) -> Path:
    return cfg.out_dir(path) / f"{stem}{MANIFEST_SUFFIX}"


def _input_identity(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _well_formed(record: Any) -> bool:
    """Whether a manifest read back has the shape this version writes (an old or damaged one may not)."""
    if not isinstance(record, dict) or not isinstance(record.get("outputs"), dict):
        return False
    rows = record.get("rows")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        return False
    return all(isinstance(e, dict) and isinstance(e.get("bytes"), int) and isinstance(e.get("sha256"), str)
               for e in record["outputs"].values())


def finished_before(path: Path, stem: str, cfg: BatchConfig) -> dict[str, Any] | None:
    """The manifest of ``path`` if this input was finished with these settings and every output it lists
    is still there, unchanged (size, then SHA-256); else ``None`` (the input is done again).

    A missing, unreadable, undecodable or malformed manifest means "do it again"; anything else raised
    here is a bug and is not taken for one."""
    manifest = manifest_path(cfg, path, stem)
    out = cfg.out_dir(path)
    try:
        record = json.loads(manifest.read_text())
        if not _well_formed(record):
            return None
        if (record.get("format") != MANIFEST_FORMAT or record.get("config") != cfg.key()
                or record.get("input") != _input_identity(path)):
            return None
        for name, expected in record["outputs"].items():
            target = out / name
            if target.stat().st_size != expected["bytes"] or sha256(target) != expected["sha256"]:
                return None
    except (OSError, ValueError):  # missing or unreadable files, text that is not JSON (ValueError)
        return None
    return record


def write_manifest(path: Path, stem: str, cfg: BatchConfig, result: InputResult, written: list[Path]) -> Path:
    """The input's manifest, written last: the run's settings, the input's size and time, every output."""
    # Outputs are named relative to the input's output folder (the manifest's own folder).
    outputs = {p.name: {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in written}
    record = {"format": MANIFEST_FORMAT, "file": str(path), "input": _input_identity(path), "config": cfg.key(),
              "outputs": outputs, "rows": result.rows, "optics_hints": result.hints}
    return write_json(manifest_path(cfg, path, stem), record)


def remove_stale_temporaries(out: Path | None) -> None:
    """Remove the temporary files a killed run left in ``out`` (a process killed with SIGKILL cannot); at the
    start of a run, when none of its own exist yet. Two runs must not share an output folder at once."""
    if out is None or not out.is_dir():  # beside the inputs: their folders are not the run's to clean
        return
    for path in out.glob(".*"):
        if _TEMPORARY.match(path.name) and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
