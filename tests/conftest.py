"""Shared fixtures. Qt and napari are imported only by the GUI tests (tests/_qt/conftest.py has theirs)."""
from __future__ import annotations

import pytest


def _devices() -> list[str]:
    """The CPU and every GPU PyTorch sees here (CUDA, Apple MPS)."""
    from napari_kernelgan.devices import available_devices

    return ["cpu", *(d for d in available_devices() if d not in ("auto", "cpu"))]


@pytest.fixture(params=_devices())
def device(request):
    """Every device present, one test run each: the one fixture method and operator tests take."""
    import torch

    return torch.device(request.param)


@pytest.fixture(scope="session")
def tissue_sample():
    """The 'tissue' sample: [(LR image, kwargs, 'image'), (true kernel, kwargs, 'image')]."""
    from napari_kernelgan._sample_data import tissue

    return tissue()
