"""The magicgui form generated from a method spec."""
from __future__ import annotations

import pytest

pytest.importorskip("magicgui")
pytest.importorskip("pytestqt")

from magicgui.widgets import CheckBox, ComboBox, LineEdit

from napari_kernelgan._qt.options_form import OptionsForm
from napari_kernelgan.registry import ESTIMATORS, SR_METHODS

pytestmark = pytest.mark.gui


def test_kernelgan_form(qtbot):
    form = OptionsForm()
    form.set_spec(ESTIMATORS.get("kernelgan"))
    assert [w.name for w in form.main] == ["preset", "iterations"]
    assert {w.name for w in form.advanced} == set(ESTIMATORS.get("kernelgan").form_options) - {"preset", "iterations"}
    iterations = form["iterations"]
    assert isinstance(iterations, LineEdit) and iterations.value == ""  # never a misleading 0
    assert iterations.native.placeholderText() == "preset default"
    assert "preset" in iterations.tooltip
    assert isinstance(form["preset"], ComboBox) and form["preset"].value == "default"
    anchor = form["anchor"]
    assert isinstance(anchor, ComboBox) and anchor.value is None and "edges" in anchor.choices
    assert form.values() == {"preset": "default"}
    form["preset"].value = "fast"
    iterations.value = "20"
    form["lr_g"].value = "2e-4"
    anchor.value = "edges"
    assert form.values() == {"preset": "fast", "iterations": 20, "lr_g": 2e-4, "anchor": "edges"}
    assert form.more.text() == f"More kernelgan options ({len(form.advanced)})" and not form.more.isExpanded()


def test_sr_forms(qtbot):
    form = OptionsForm()
    form.set_spec(SR_METHODS.get("closed-form"))
    sigma = form["sigma"]
    # empty: auto (measured); a number in the image's units, or 'auto', typed in
    assert sigma.value == "" and sigma.native.placeholderText().startswith("auto")
    sigma.value = "12.5"
    assert form.values()["sigma"] == 12.5
    assert form["iterations"].native.placeholderText() == "4·(scale − 1)"
    if "zssr" in SR_METHODS:
        form.set_spec(SR_METHODS.get("zssr"))
        assert "kernel_x2" not in form  # hidden: the widget passes it
        assert isinstance(form["gradual"], CheckBox) and "fast" in form["preset"].choices
    form.set_spec(SR_METHODS.get("bicubic"))
    assert len(form.main) == 0 and len(form.advanced) == 0 and form.values() == {}
    assert form.more.isHidden()
