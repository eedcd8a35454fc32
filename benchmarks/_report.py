"""What every benchmark script does with its finished Markdown report."""
from __future__ import annotations

from pathlib import Path


def emit(text: str, out: Path | None) -> None:
    """Print the report and, with ``out``, write it there atomically (no half-written report)."""
    print(text)
    if out is not None:
        from napari_kernelgan.io import atomic_path

        with atomic_path(out) as tmp:
            tmp.write_text(text)
