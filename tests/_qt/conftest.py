"""Fixtures of the widget tests. Qt and napari are imported inside the fixtures only, so
test_models.py (Qt-free) runs without them."""
from __future__ import annotations

import pytest

PLUGIN = "napari-kernelgan"


@pytest.fixture
def wait_idle(qtbot):
    """Wait until a plugin dock widget (or a runner) has no running job."""

    def wait(widget, timeout_s: float = 90.0) -> None:
        qtbot.waitUntil(lambda: not widget.running, timeout=int(timeout_s * 1000))
        qtbot.wait(20)  # let queued layer events settle

    return wait


@pytest.fixture
def dock():
    """``dock(viewer, 'Estimate kernel')``: the plugin's dock widget, added through napari."""

    def add(viewer, name: str):
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
        return widget

    return add


@pytest.fixture
def notes():
    """Notifications napari recorded during the test (``notes.errors``, ``notes.since('info')``)."""
    from qt_helpers import Notifications

    return Notifications()
