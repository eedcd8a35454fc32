"""Shared fixtures. Qt and napari are imported only inside the GUI fixtures."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tissue_sample():
    """The 'tissue' sample: [(LR image, kwargs, 'image'), (true kernel, kwargs, 'image')]."""
    from napari_kernelgan._sample_data import tissue

    return tissue()


@pytest.fixture
def wait_idle(qtbot):
    """Wait until a plugin dock widget has no running job."""

    def wait(widget, timeout_s: float = 90.0) -> None:
        qtbot.waitUntil(lambda: not widget.running, timeout=int(timeout_s * 1000))
        qtbot.wait(20)  # let queued layer events settle

    return wait
