"""The base of the dock widgets: image chooser, *Advanced* section, Run/Cancel, status line, progress bar,
and for the estimating widgets the *Optics* group (:class:`~.optics_group.OpticsGroup`), whose problems
keep Run off with the reason said under it.

Subclasses fill ``form`` and ``advanced``, build a job in :meth:`TaskWidget.run`
and hand it to :meth:`TaskWidget.start`; the :class:`~.runner.TaskRunner`
runs it and calls back :meth:`TaskWidget.on_report` (throttled) and
:meth:`TaskWidget.on_finished`. The progress bar is a plain ``QProgressBar``
(no animation), so a run costs the GUI next to nothing even with software
OpenGL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, Label, LineEdit, PushButton, SpinBox
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QFrame, QProgressBar, QScrollArea, QVBoxLayout, QWidget
from superqt import QCollapsible

from .. import api
from ..devices import available_devices
from ..errors import KernelGANError
from ..layers import is_input_layer, leading_shape
from ..optics_hints import HINT_KEYS, optics_hints
from ..registry import ESTIMATORS, Registry
from .models import (
    MAX_SEED,
    Job,
    Report,
    RunRecord,
    RunState,
    parse_threads,
    progress_text,
    slice_in_view,
    unavailable_text,
    where_text,
)
from .optics_group import REASON_STYLE, OpticsGroup
from .options_form import OptionsForm
from .runner import TaskRunner, report_error

__all__ = ["TaskWidget", "EstimatorTaskWidget", "RunTarget"]

BAR_STEPS = 1000


@dataclass
class RunTarget:
    """Where a running job's result goes: the input layer and the slice it was taken from."""

    layer: Any
    slice_index: tuple[int, ...] | None


class TaskWidget(QWidget):
    """Shared plumbing of *Estimate kernel* and *Super-resolve*."""

    run_text = "Run"
    whole_stack_text = "Whole stack"

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.runner = TaskRunner(self)
        self.record: RunRecord | None = None
        self.notes: list[str] = []
        self.form = Container(labels=True)
        self.image = ComboBox(label="Image", choices=self._image_choices, nullable=False)
        self.image.tooltip = "The input image layer; follows the layer selected in the layer list."
        self.whole_stack = CheckBox(text=self.whole_stack_text, value=False)
        self.device = ComboBox(label="Device", choices=available_devices(), value="auto")
        self.seed = SpinBox(label="Seed", value=0, min=0, max=MAX_SEED)
        self.seed.tooltip = "Methods without randomness ignore it."
        self.threads = LineEdit(label="Threads", value="")
        self.threads.native.setPlaceholderText("automatic")
        self.threads.tooltip = ("PyTorch CPU threads for this run. Empty: the cores not busy with other work "
                                "(or $NAPARI_KERNELGAN_THREADS).")
        self.options = OptionsForm()
        self.unavailable = Label(value="")
        self.unavailable.native.setWordWrap(True)
        self.advanced = Container(labels=True)
        self.collapsible = QCollapsible("Advanced")
        self.collapsible.addWidget(self.advanced.native)
        self.run_button = PushButton(text=self.run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, BAR_STEPS)
        self.progress_bar.setValue(0)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.optics: OpticsGroup | None = None
        self.blocked = Label(value="")  # why Run is off (a field that cannot be used)
        self.blocked.native.setWordWrap(True)
        self.blocked.native.setStyleSheet(REASON_STYLE)
        self.blocked.visible = False
        # The content scrolls: a dock is as tall as the window, and a form squeezed into less than it needs
        # overlaps its own rows. ``body`` is the content's layout.
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        content = QWidget()
        self.scroll.setWidget(content)
        outer.addWidget(self.scroll)
        self.body = layout = QVBoxLayout(content)
        layout.addWidget(self.form.native)
        layout.addWidget(self.collapsible)
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        layout.addWidget(buttons.native)
        layout.addWidget(self.blocked.native)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status.native)
        layout.addStretch(1)
        self.image.changed.connect(self._image_changed)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.runner.progressed.connect(self._progressed)
        self.runner.finished.connect(self._finished)
        self.runner.state_changed.connect(self._update_buttons)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self.viewer.layers.events.reordered.connect(self._layers_changed)
        self.viewer.layers.selection.events.active.connect(self._active_changed)

    def method_chooser(self, label: str, registry: Registry, default: str) -> ComboBox:
        """A selector of ``registry``'s methods (``default`` first chosen); methods that failed to load are
        named, with the reason, in :attr:`unavailable`. The chosen method's options go in :attr:`options`."""
        names = registry.names()
        combo = ComboBox(label=label, choices=names, value=default if default in names else (names or [None])[0])
        combo.tooltip = "\n".join(f"{s.name}: {s.summary}" for s in registry.specs())
        self.unavailable.value = unavailable_text(registry)
        self.unavailable.visible = bool(self.unavailable.value)
        self.collapsible.addWidget(self.options.more)
        return combo

    def add_optics(self, source: str) -> OpticsGroup:
        """Add the *Optics* group (values from ``source``, e.g. "the image's metadata") under the form; the
        method options it holds leave the options form (call before the form shows a method)."""
        self.options.exclude = frozenset(HINT_KEYS)
        self.optics = OpticsGroup(source)
        self.body.insertWidget(1, self.optics)
        self.optics.changed.connect(self._update_buttons)
        return self.optics

    def optics_values(self, description: str) -> dict[str, Any] | None:
        """The optics hints given (``{}`` without an *Optics* group); ``None``, with the reason said, when
        they cannot be used."""
        try:
            return {} if self.optics is None else self.optics.values()
        except KernelGANError as exc:
            self.fail(exc, description)
            return None

    def chosen_input(self) -> tuple[Any, tuple[int, ...] | None, bool] | None:
        """Begin an attempt: the chosen layer, the slice in view (``None`` for a 2-D layer or the whole
        stack) and whether the whole stack is used; ``None``, with a message, when no image is chosen."""
        self.begin_attempt()
        layer = self.image.value
        if layer is None:
            self.say("Add or choose an image layer first.")
            return None
        whole = bool(self.whole_stack.value and leading_shape(layer))
        slice_index = slice_in_view(self.viewer, layer) if leading_shape(layer) and not whole else None
        return layer, slice_index, whole

    def begin_run(self, what: str) -> tuple[Any, tuple[int, ...] | None, bool, str, int | None,
                                            dict[str, Any]] | None:
        """Start an attempt from the form: ``(layer, slice_index, whole, description, threads, options)``,
        the description being ``'<what> of <layer><where>'``; ``None`` (with the reason said) when there
        is nothing to run on or an option is invalid."""
        chosen = self.chosen_input()
        if chosen is None:
            return None
        layer, slice_index, whole = chosen
        description = f"{what} of {layer.name}{where_text(slice_index, whole)}"
        settings = self.form_settings(description)
        if settings is None:
            return None
        return (layer, slice_index, whole, description, *settings)

    def done_target(self, record: RunRecord) -> RunTarget | str:
        """The finished run's :class:`RunTarget` where its result can be placed; otherwise the status text
        (empty for a run that did not complete, a note when the input layer was removed meanwhile)."""
        run, self._run = getattr(self, "_run", None), None
        if run is None or record.state != RunState.DONE:
            return ""
        if run.layer not in self.viewer.layers:
            return f"{record.description}: the input layer was removed; result discarded."
        return run

    def form_settings(self, description: str) -> tuple[int | None, dict[str, Any]] | None:
        """The form's threads and method options; ``None``, with the error said, when one is invalid."""
        try:
            return parse_threads(self.threads.value), self.options.values()
        except KernelGANError as exc:
            self.fail(exc, description)
            return None

    # ------------------------------------------------------------------ subclasses provide these

    def run(self) -> None:
        """Build a job from the form and :meth:`start` it."""
        raise NotImplementedError

    def on_report(self, report: Report) -> None:
        """A (throttled) progress report of the running job."""

    def on_finished(self, record: RunRecord) -> str:
        """The job ended (``record.state``): add its layers or clean up; returns the status text."""
        return ""

    # ------------------------------------------------------------------ state

    @property
    def running(self) -> bool:
        """Whether a job is in progress."""
        return self.runner.running

    def ready(self) -> bool:
        """Whether the form has what a run needs (an image layer, here)."""
        return self.image.value is not None

    def blocked_reason(self) -> str:
        """Why Run is off though the form is :meth:`ready` (the optics cannot be used as typed), or ``''``."""
        return self.optics.problem if self.optics is not None else ""

    def _update_buttons(self, *_: Any) -> None:
        running = self.runner.running
        reason = self.blocked_reason()
        self.run_button.enabled = not running and self.ready() and not reason
        self.blocked.value = f"{self.run_text} is off until the optics are fixed: {reason}" if reason else ""
        self.blocked.visible = bool(reason)
        self.run_button.tooltip = self.blocked.value
        self.cancel_button.enabled = running and not self.runner.record.cancel_requested
        if running and self.runner.record.cancel_requested:
            self.status.value = f"{self.runner.record.description}: cancelling (at the next progress report)…"

    def _layers_changed(self, event: Any = None) -> None:
        self.form.reset_choices()
        self._image_changed()

    def _active_changed(self, event: Any = None) -> None:
        self._follow_active(self.image)

    def _image_changed(self, *_: Any) -> None:
        layer = self.image.value
        self.whole_stack.enabled = layer is not None and bool(leading_shape(layer))
        self._update_buttons()

    def _image_choices(self, widget: Any = None) -> list[tuple[str, Any]]:
        """Image layers that are inputs (not kernels, D-maps or results), top of the list first."""
        return [(layer.name, layer) for layer in reversed(self.viewer.layers) if is_input_layer(layer)]

    def _follow_active(self, combo: ComboBox) -> None:
        # napari hands plugins proxies of its objects, so layers are compared with ==, not `is`.
        active = self.viewer.layers.selection.active
        if not self.running and active is not None and any(active == v for _, v in self._image_choices()):
            combo.value = active

    # ------------------------------------------------------------------ running

    WARNING_STYLE = "color: #ffa040; font-weight: bold;"

    def warn_status(self) -> None:
        """Style the status line as a warning (until the next attempt)."""
        self.status.native.setStyleSheet(self.WARNING_STYLE)

    @property
    def status_is_warning(self) -> bool:
        """Whether the status line is styled as a warning."""
        return self.status.native.styleSheet() == self.WARNING_STYLE

    def begin_attempt(self) -> None:
        """Clear what the previous run left in the status line and bar (every Run click starts here)."""
        self.status.native.setStyleSheet("")
        self.status.value = ""
        self.progress_bar.setValue(0)
        self.notes = []

    def say(self, message: str) -> None:
        """A message that stops a run before it starts (nothing to run on)."""
        self.status.value = message
        show_info(message)

    def fail(self, exc: BaseException, what: str) -> None:
        """A run that failed before starting: notify (see :func:`.runner.report_error`) and say so."""
        self.status.value = report_error(exc, what)

    def start(self, job: Job, description: str, notes: list[str] | None = None) -> RunRecord:
        """Run ``job`` in the background; ``notes`` (e.g. "alpha channel dropped") are shown with its status."""
        self.notes = list(notes or [])
        if self.notes:
            show_info(f"{description}: {'; '.join(self.notes)}")
        self.record = self.runner.start(job, description)
        self.status.value = f"{description}: starting…{self._notes_text()}"
        self._update_buttons()
        return self.record

    def cancel(self) -> None:
        """Stop the running job at its next progress report."""
        self.runner.cancel()

    def _notes_text(self) -> str:
        return f" ({'; '.join(self.notes)})" if self.notes else ""

    def _progressed(self, report: Report) -> None:
        record = self.runner.record
        self.status.value = f"{record.description}: {progress_text(report, record.elapsed())}{self._notes_text()}"
        self.progress_bar.setValue(int(BAR_STEPS * report.bar))
        self.on_report(report)

    def _finished(self, record: RunRecord) -> None:
        text = self.on_finished(record)
        if record.state == RunState.DONE:
            self.progress_bar.setValue(BAR_STEPS)
        else:
            self.progress_bar.setValue(0)
        if record.state == RunState.CANCELLED:
            text = text or f"{record.description}: cancelled."
        elif record.state == RunState.FAILED:
            text = text or record.message or f"{record.description}: failed."
        self.status.value = text + (self._notes_text() if record.state == RunState.DONE else "")
        self._update_buttons()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        self.runner.shutdown()
        super().closeEvent(event)


class EstimatorTaskWidget(TaskWidget):
    """A task on one image with a chosen kernel estimator (*Estimate kernel*, *Kernel map*): the
    estimator selector whose options fill the form."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.estimator = self.method_chooser("Estimator", ESTIMATORS, api.DEFAULT_ESTIMATOR)
        self.optics = self.add_optics("the image's metadata")
        self._optics_layer: Any = None

    def finish_setup(self) -> None:
        """Call once the form is built: follow the estimator choice and the active layer."""
        self.estimator.changed.connect(self._estimator_changed)
        self._estimator_changed()
        self._follow_active(self.image)
        self._image_changed()

    def _estimator_changed(self, *_: Any) -> None:
        name = self.estimator.value
        spec = ESTIMATORS.get(name) if name else None
        self.options.set_spec(spec)
        self.optics.set_declared(spec.defaults if spec is not None else (), name or "")

    def _image_changed(self, *_: Any) -> None:
        super()._image_changed()
        optics, layer = self.optics, self.image.value
        # Filled when another layer is chosen, not when layers come and go (results added): what the user
        # typed for this image stays. Layer events may come before the group is built.
        if optics is not None and layer is not None and layer != getattr(self, "_optics_layer", None):
            self._optics_layer = layer
            optics.fill(optics_hints(getattr(layer, "metadata", None) or {}))
