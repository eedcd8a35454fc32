"""Where the third-party test data lives: the ``shared`` folder beside the repository, or
``$NAPARI_KERNELGAN_SHARED``. Tests that need it skip, with a message, when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

SHARED = Path(os.environ.get("NAPARI_KERNELGAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
DIV2KRK = SHARED / "data" / "div2krk"
WEIGHTS = SHARED / "weights"
