"""What every benchmark script does with its finished Markdown report, and with its cache of readings."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def emit(text: str, out: Path | None) -> None:
    """Print the report and, with ``out``, write it there atomically (no half-written report)."""
    print(text)
    if out is not None:
        from napari_kernelgan.io import atomic_path

        with atomic_path(out) as tmp:
            tmp.write_text(text)


def emit_json(data: dict, out: Path | None) -> None:
    """With ``out``, write a report's readings as JSON there atomically (numpy numbers as floats)."""
    if out is None:
        return
    import json

    from napari_kernelgan.io import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")


def save_cache(cache: Path, store: dict) -> None:
    """Write a calibration script's cache of readings (JSON) atomically: a killed run leaves the last whole one."""
    import json

    from napari_kernelgan.io import atomic_path

    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        tmp.write_text(json.dumps(store))


def best_of(fn: Callable[[], object], repeat: int = 3, *, warm_up: bool = False) -> float:
    """The fastest of ``repeat`` timed calls of ``fn`` in seconds (``warm_up``: one untimed call first, e.g. for
    oneDNN's primitive creation)."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
