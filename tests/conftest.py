"""Shared fixtures. Qt and napari are imported only by the GUI tests (tests/_qt/conftest.py has theirs)."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tissue_sample():
    """The 'tissue' sample: [(LR image, kwargs, 'image'), (true kernel, kwargs, 'image')]."""
    from napari_kernelgan._sample_data import tissue

    return tissue()
