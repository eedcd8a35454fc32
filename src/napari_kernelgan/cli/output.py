"""What the command line shows: a progress bar on stderr, kernels, kernel maps and the safeguards' verdict
in words."""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ..types import KernelEstimate, Progress

__all__ = ["ProgressBar", "progress_bar", "format_kernel", "field_summary", "estimate_record", "safety_note",
           "method_label", "hint_lines"]


class ProgressBar:
    """A one-line progress bar on stderr: stage, steps and ETA (silent when stderr is not a
    terminal, unless ``always``)."""

    def __init__(self, label: str, always: bool = False, width: int = 28) -> None:
        from ..types import EtaTracker

        self.label = label
        self.width = width
        self.enabled = always or sys.stderr.isatty()
        self.shown = False
        self.last = 0.0
        self.eta = EtaTracker()

    def __call__(self, p: Progress) -> None:
        now = time.perf_counter()
        eta_s = self.eta(p, now)  # fed every report, so the rate is measured even between redraws
        done = p.iteration >= p.total
        if not self.enabled or (now - self.last < 0.2 and not done):
            return
        self.last = now
        self.shown = True
        filled = int(min(1.0, p.fraction) * self.width)
        bar = "█" * filled + "·" * (self.width - filled)
        eta = "" if math.isnan(eta_s) else f" ETA {eta_s:4.0f}s"
        sys.stderr.write(f"\r{self.label} [{str(p.stage):>8}] {bar} {p.iteration}/{p.total}{eta}   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.shown = False


@contextlib.contextmanager
def progress_bar(label: str, always: bool = False) -> Iterator[ProgressBar]:
    """A :class:`ProgressBar` whose line is ended however the block ends (so errors start a fresh line)."""
    bar = ProgressBar(label, always)
    try:
        yield bar
    finally:
        bar.close()


def format_kernel(k: np.ndarray) -> str:
    return "\n".join(" ".join(f"{v:6.4f}" for v in row) for row in k)


def field_summary(field: Any) -> str:
    """One line about a kernel map: grid, time, trusted tiles and the range of blur widths."""
    maps = field.maps((min(field.image_shape[0], 64), min(field.image_shape[1], 64)))
    trusted = int((field.confidence >= 0.1).sum())
    return (f"kernel map {field.grid[0]}×{field.grid[1]} tiles in {field.elapsed:.1f} s ({field.method}; "
            f"{trusted} of {field.confidence.size} tiles trusted; blur σ {float(maps['width_major'].min()):.2f}–"
            f"{float(maps['width_major'].max()):.2f} input px along the long axis)")


def estimate_record(kernel_path: Path) -> dict[str, Any] | None:
    """The JSON record 'estimate' wrote beside a kernel file (``<stem>_kernel.json``), if the kernel is an
    estimate; ``None`` for any other kernel file (a measured PSF)."""
    from ..vocabulary import LayerRole

    stem = kernel_path.stem
    for suffix in ("_kernel_x2", "_kernel_x4"):
        if stem.endswith(suffix):
            sidecar = kernel_path.with_name(stem[: -len(suffix)] + "_kernel.json")
            if sidecar.is_file():
                try:
                    record = json.loads(sidecar.read_text())
                except (OSError, ValueError):
                    return None
                return record if record.get("role") == str(LayerRole.KERNEL) else None
    return None


def safety_note(options: dict[str, Any]) -> str:
    """What the safeguards did (an SR result's ``options``), for the one-line summary (empty when they did
    not run)."""
    if not options.get("safe"):
        return ""
    if options.get("fallback"):
        return f"; WARNING: {options.get('fallback_reason')}: wrote {options['fallback']} interpolation"
    return f"; noise σ {float(options.get('noise_sigma', 0.0)):.1f}/255 measured"


def method_label(est: KernelEstimate) -> str:
    """``'auto, confidence 0.56 (medium)'``, and the members of a combined estimate that could not
    measure the image, with why (a user wonders why e.g. spots played no part)."""
    from ..confidence import read_confidence

    label = f"{est.method}/{est.preset}" if est.preset else est.method
    reading = read_confidence(est.confidence, scale=est.scale)
    if reading is not None:
        label += f", confidence {est.confidence:.2f} ({reading.level})"
    failed = (est.options or {}).get("failed_members") or {}
    if failed:
        label += "; not used: " + "; ".join(f"{name} ({why})" for name, why in failed.items())
    return label


def hint_lines(hints: dict[str, dict[str, Any]], estimator: str) -> list[str]:
    """The optics hints of an input's kernels in words, a line per kernel that has any (``"optics: NA 1.4 from
    the file, pixel size 0.1 µm given"``), hints the estimator does not take marked, then the notes on
    metadata left unused."""
    from ..optics_hints import HINT_KEYS, format_hint

    lines: list[str] = []
    for unit, record in hints.items():
        said = []
        for key in HINT_KEYS:
            entry = record.get(key)
            if entry is None:
                continue
            origin = "from the file" if entry["source"] == "file" else "given"
            said.append(f"{format_hint(key, entry['value'])} {origin}{'' if entry['used'] else ' (not used)'}")
        if said:
            unused = "" if any(record[k]["used"] for k in HINT_KEYS if k in record) else \
                f"; {estimator} takes none of them"
            lines.append(f"  optics{f' {unit}' if unit else ''}: {', '.join(said)}{unused}")
        lines += [f"  note: {note}" for note in record.get("notes", [])]
    return list(dict.fromkeys(lines))
