"""Every registered method, on every device present (the ``device`` fixture), keeps the contract of
napari_kernelgan.testing."""
from __future__ import annotations

import pytest

from napari_kernelgan.registry import ESTIMATORS, SR_METHODS
from napari_kernelgan.testing import check_estimator, check_sr_method
from shared_data import WEIGHTS

USRNET_WEIGHTS = WEIGHTS / "usrnet_tiny.pth"

# Short settings so the contract runs in seconds; methods not listed run with their defaults.
SHORT = {
    "kernelgan": {"preset": "fast", "iterations": 4},
    "zssr": {"iterations": 6},
    "meta": {"iterations": 20},
    "usrnet": {"weights": str(USRNET_WEIGHTS)},
}


@pytest.mark.parametrize("name", ESTIMATORS.names())
def test_estimator_contract(name, device):
    check_estimator(name, device=device, **SHORT.get(name, {}))


@pytest.mark.parametrize("name", SR_METHODS.names())
def test_sr_method_contract(name, device):
    if name == "usrnet" and not USRNET_WEIGHTS.is_file():
        pytest.skip(f"USRNet weights not found at {USRNET_WEIGHTS} (../shared absent)")
    check_sr_method(name, device=device, **SHORT.get(name, {}))


def test_nothing_builtin_is_unavailable():
    assert ESTIMATORS.unavailable == {} and SR_METHODS.unavailable == {}
