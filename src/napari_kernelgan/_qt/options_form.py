"""A magicgui form generated from a method's :class:`~napari_kernelgan.registry.MethodSpec`.

One field per ``spec.form_options`` (:func:`.models.form_fields`): ``main``
holds ``spec.main`` (shown first), ``advanced`` the rest, inside the
collapsible ``more`` (collapsed: KernelGAN has some thirty such options),
which the task widget puts under its own *Advanced*. Choices become combo boxes,
booleans check boxes, numbers spin boxes; an option whose default is ``None``
is an empty text field whose placeholder says who decides ("preset default").
Tooltips come from ``spec.help``; text is read back with
:func:`napari_kernelgan.options.parse_value`.

An options form made with ``exclude=HINT_KEYS`` leaves the optics to the *Optics* group
(:class:`~.optics_group.OpticsGroup`).
"""
from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit, SpinBox, Widget
from superqt import QCollapsible

from ..registry import MethodSpec
from .models import FormField, form_fields, form_values, option_values

__all__ = ["OptionsForm", "field_widget"]


def field_widget(field: FormField, value: Any) -> Widget:
    """The magicgui widget of one field, showing ``value``."""
    if field.kind == "choice":
        values = [v for _, v in field.choices]
        widget = ComboBox(name=field.name, label=field.label, choices=list(field.choices),
                          value=value if value in values else values[0])
    elif field.kind == "bool":
        widget = CheckBox(name=field.name, text=field.label, value=bool(value))
    elif field.kind == "int":
        widget = SpinBox(name=field.name, label=field.label, min=min(0, value), max=max(100000, 10 * value),
                         value=value)
    elif field.kind == "float":
        widget = FloatSpinBox(name=field.name, label=field.label, min=min(0.0, value), max=max(1e6, 10 * value),
                              step=0.1)
        # Enough decimals to show the default (e.g. 5e-6) before Qt rounds it.
        digits = 2 if value == 0 else int(max(2, min(8, 2 - math.floor(math.log10(abs(value))))))
        widget.native.setDecimals(digits)
        widget.value = value
    else:
        widget = LineEdit(name=field.name, label=field.label, value="" if value is None else str(value))
        if field.placeholder:
            widget.native.setPlaceholderText(field.placeholder)
    if field.tooltip:
        widget.tooltip = field.tooltip
    return widget


class OptionsForm:
    """The options of one method: ``main`` and ``advanced`` magicgui containers (``advanced`` inside the
    collapsible ``more``), rebuilt by :meth:`set_spec`."""

    def __init__(self, exclude: Collection[str] = ()) -> None:
        self.exclude = frozenset(exclude)  # options another part of the widget sets
        self.main = Container(labels=True)
        self.advanced = Container(labels=True)
        for box in (self.main, self.advanced):
            box.margins = (0, 0, 0, 0)
        self.more = QCollapsible("")
        self.more.addWidget(self.advanced.native)
        self.spec: MethodSpec | None = None
        self.fields: list[FormField] = []
        self.widgets: dict[str, Widget] = {}

    def set_spec(self, spec: MethodSpec | None) -> None:
        """Show the options of ``spec`` (``None``: none), starting from its defaults."""
        self.main.clear()
        self.advanced.clear()
        self.spec, self.fields, self.widgets = spec, [], {}
        if spec is None:
            self.more.setVisible(False)
            return
        values = form_values(spec)
        self.fields = [f for f in form_fields(spec) if f.name not in self.exclude]
        for field in self.fields:
            widget = field_widget(field, values[field.name])
            self.widgets[field.name] = widget
            (self.advanced if field.advanced else self.main).append(widget)
        n = sum(f.advanced for f in self.fields)
        self.more.setText(f"More {spec.name} options ({n})")
        self.more.setVisible(n > 0)

    def raw(self) -> dict[str, Any]:
        """Each field's widget value as shown."""
        return {name: w.value for name, w in self.widgets.items()}

    def values(self) -> dict[str, Any]:
        """The options to pass to the API (empty fields, meaning "the method decides", left out)."""
        return option_values(self.fields, self.raw())

    def __getitem__(self, name: str) -> Widget:
        return self.widgets[name]

    def __contains__(self, name: object) -> bool:
        return name in self.widgets
