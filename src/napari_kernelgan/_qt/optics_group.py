"""The *Optics* group of the estimating widgets (*Estimate kernel*, *Kernel map*, *Batch*): one component.

The microscope's optics (:data:`~napari_kernelgan.optics_hints.HINT_KEYS`) as labelled text fields, filled
from the layer's or the files' metadata; empty is unknown. Everything typed is checked together by
:func:`~napari_kernelgan.optics_hints.hint_problems` (each value's range and the combinations, such as an NA
at or above the immersion's index): a field at fault is outlined, its tooltip and a line under it say what
to change, and :attr:`OpticsGroup.problem` holds the reason the widget's Run stays off. Only the fields the
chosen estimator takes are on, and only their problems count. *Restore defaults* shows the metadata again.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from magicgui.widgets import ComboBox, LineEdit, PushButton, Widget
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QFormLayout, QGroupBox, QLabel, QVBoxLayout

from ..optics_hints import FIELD_LABELS, HINT_KEYS, HintProblem, check_hints, hint_problems
from ..optics_hints import MODALITIES as _MODALITIES

__all__ = ["OpticsGroup", "INVALID_STYLE", "REASON_STYLE"]

_TOOLTIPS = {
    "na": "The objective's numerical aperture, e.g. 1.4; below the immersion index.",
    "wavelength_um": "The emission wavelength in µm: 0.52 for 520 nm.",
    "n_immersion": "The immersion medium: oil, water, glycerol, silicone, air, or its refractive index (oil "
                   "1.515, water 1.333).",
    "modality": "Widefield, or confocal (point scanning with a pinhole).",
    "pinhole_au": "The confocal pinhole's diameter in Airy units (AU); confocal only.",
    "pixel_um": "The image's pixel size in µm.",
}
INVALID_STYLE = "border: 1px solid #ff6060;"
REASON_STYLE = "color: #ff8080;"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


class OpticsGroup(QGroupBox):
    """The *Optics* group (see the module docstring). ``source`` names where its values come from in the
    note under the title ("the image's metadata")."""

    changed = Signal()
    """Emitted when what the fields hold, or whether they can be used, changes."""

    def __init__(self, source: str = "the image's metadata") -> None:
        # A short title: a group's title does not wrap, and a long one is cut in a narrow dock.
        super().__init__("Optics")
        self.note = QLabel(f"From {source}; empty: unknown.")
        self.note.setWordWrap(True)
        # One form layout: the fields line up, and in a narrow dock a long label goes above its field.
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.widgets: dict[str, Widget] = {}
        self.reasons: dict[str, QLabel] = {}  # the line under a field that says what is wrong with it
        self.errors: dict[str, str] = {}  # field → why it cannot be used (in the widgets' words)
        self.defaults: dict[str, Any] = {}  # what the metadata says: what Restore defaults shows
        self.declared: frozenset[str] = frozenset(HINT_KEYS)
        self.method = ""
        self._filling = False
        for key in HINT_KEYS:
            if key == "modality":
                widget: Widget = ComboBox(name=key, label=FIELD_LABELS[key], value="",
                                          choices=[("unknown", ""), *((m, m) for m in _MODALITIES)])
            else:
                widget = LineEdit(name=key, label=FIELD_LABELS[key], value="")
                widget.native.setPlaceholderText("unknown")
            widget.tooltip = _TOOLTIPS[key]
            widget.changed.connect(self._edited)
            reason = QLabel("")
            reason.setWordWrap(True)
            reason.setStyleSheet(REASON_STYLE)
            reason.setVisible(False)
            self.widgets[key], self.reasons[key] = widget, reason
            form.addRow(FIELD_LABELS[key], widget.native)
            form.addRow(reason)  # the whole row: a reason is a sentence or two
        self.restore_button = PushButton(text="Restore defaults")
        self.restore_button.tooltip = "Show what the metadata says again (empty where it says nothing)."
        self.restore_button.changed.connect(self.restore)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addLayout(form)
        layout.addWidget(self.restore_button.native)
        self._check()

    # ------------------------------------------------------------------ filling

    def fill(self, hints: Mapping[str, Any]) -> None:
        """Show ``hints`` (``None`` or missing: empty, unknown) and keep them as the defaults *Restore
        defaults* returns to."""
        self.defaults = {k: v for k, v in hints.items() if k in HINT_KEYS and v is not None}
        self.restore()

    def restore(self, *_: Any) -> None:
        """Show the defaults again: what the metadata says, else empty."""
        self._filling = True
        try:
            for key, widget in self.widgets.items():
                value = self.defaults.get(key)
                widget.value = "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)
        finally:
            self._filling = False
        self._edited()

    def set_declared(self, declared: Collection[str], method: str = "") -> None:
        """Turn on the fields ``method`` (the chosen estimator) takes; the others are off, say so, and their
        problems do not count."""
        self.declared, self.method = frozenset(k for k in declared if k in HINT_KEYS), method
        for key, widget in self.widgets.items():
            widget.enabled = key in self.declared
        self._edited()

    # ------------------------------------------------------------------ reading

    def raw(self) -> dict[str, Any]:
        """Each field as typed."""
        return {key: widget.value for key, widget in self.widgets.items()}

    def problems(self) -> list[HintProblem]:
        """What is wrong with the fields the estimator takes (the others are not passed on)."""
        return hint_problems({k: v for k, v in self.raw().items() if k in self.declared})

    @property
    def problem(self) -> str:
        """Why the optics cannot be used as they are (the first reason, in the widgets' words), or ``''``."""
        problems = self.problems()
        return _sentence(problems[0].text("gui")) if problems else ""

    @property
    def valid(self) -> bool:
        """Whether the fields the estimator takes can be used."""
        return not self.problems()

    def values(self) -> dict[str, Any]:
        """The hints given (empty fields, and those the estimator does not take, left out); the first problem,
        if any, as its :class:`~napari_kernelgan.errors.BadOptionError`."""
        read = check_hints({k: v for k, v in self.raw().items() if k in self.declared})
        return {k: v for k, v in read.items() if v is not None}

    def changed_values(self) -> dict[str, Any]:
        """The values typed over the defaults (:meth:`values` that differ from what the metadata says)."""
        return {k: v for k, v in self.values().items() if v != self.defaults.get(k)}

    # ------------------------------------------------------------------ checking

    def _edited(self, *_: Any) -> None:
        if self._filling:
            return
        self._check()
        self.changed.emit()

    def _check(self) -> None:
        self.errors = {}
        first: dict[str, str] = {}  # the field under which a reason is said (once, for two fields at fault)
        for problem in self.problems():
            text = _sentence(problem.text("gui"))
            for key in problem.keys:
                if key in self.declared:
                    self.errors.setdefault(key, text)
            said = next((k for k in problem.keys if k in self.declared), None)
            if said is not None and text not in first.values():
                first.setdefault(said, text)
        for key, widget in self.widgets.items():
            wrong = key in self.errors
            widget.native.setStyleSheet(INVALID_STYLE if wrong else "")
            if wrong:
                tip = self.errors[key]
            elif key not in self.declared and self.method:
                tip = f"{self.method} does not use this. {_TOOLTIPS[key]}"
            else:
                tip = f"{_TOOLTIPS[key]} Empty: unknown."
            widget.native.setToolTip(tip)
            self.reasons[key].setText(first.get(key, ""))
            self.reasons[key].setVisible(key in first)
