"""Dock widgets: a form → API options, the API generator in napari's ``thread_worker``,
its progress in napari's progress bar and a status line, Cancel → ``worker.quit()``.

Results reach the viewer only through :mod:`napari_kernelgan.layers`, the same
functions console users call.
"""
import ast
import inspect
import math
from dataclasses import dataclass
from typing import Any, Generator

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, LineEdit, PushButton, SpinBox
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import notification_manager, show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget
from superqt import QCollapsible

from . import api
from .devices import available_devices
from .layers import (add_estimate_layers, add_sr_layer, image_data, layer_kernels, leading_shape, preview_layer_name,
                     remove_layer, update_preview)
from .physics.conventions import analytic_x4
from .registry import SR_METHODS
from .types import KernelEstimate, Progress, SRResult

LATEST = "latest estimate for this image"
MAX_SEED = 2 ** 31 - 1
RESULT_ROLES = ("kernel", "kernel preview", "true kernel", "d-map")
KERNEL_X2 = "kernel_x2"


# --------------------------------------------------------------------------- helpers

@dataclass
class Failure:
    """What a job returns instead of raising: errors reach the GUI thread as values, because
    the worker turns a ``RuntimeError`` raised in its thread into a bare warning."""

    error: BaseException


def guarded(job: Generator[Progress, None, Any]) -> Generator[Progress, None, Any]:
    """Run ``job``, returning a :class:`Failure` instead of raising."""
    try:
        return (yield from job)
    except Exception as exc:  # every failure is reported to the user, none is fatal
        return Failure(exc)


def estimator_presets() -> list[str]:
    """Preset names offered by the KernelGAN estimator."""
    try:
        from .estimators.kernelgan import PRESETS
    except ImportError:
        return ["default", "paper"]
    return list(PRESETS)


def sr_method_names() -> list[str]:
    """Registered SR methods; a method module that fails to import is reported, not fatal."""
    try:
        return SR_METHODS.names()
    except ImportError as exc:
        show_warning(f"Some SR methods could not be loaded: {exc}")
        return SR_METHODS.names()  # the registry keeps the methods imported before the failure


def error_message(exc: BaseException) -> str:
    """A one-line message for the user; out-of-memory errors get advice."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        return (f"Out of memory: {text.splitlines()[0] if text else type(exc).__name__}. "
                "Try a smaller image or slice, or another device.")
    return text or type(exc).__name__


def slice_in_view(viewer: Any, layer: Any) -> tuple[int, ...]:
    """Indices of the layer's leading axes at the viewer's current position."""
    lead = leading_shape(layer)
    pos = layer.world_to_data(viewer.dims.point)
    return tuple(int(np.clip(round(float(pos[i])), 0, n - 1)) for i, n in enumerate(lead))


def input_array(layer: Any, slice_index: tuple[int, ...] | None, whole_stack: bool) -> np.ndarray:
    """The array handed to the API: the slice, the stack flattened to (N, H, W[, C]), or the image."""
    data = image_data(layer)
    if slice_index:
        return np.asarray(data[slice_index])
    lead = leading_shape(layer)
    if lead and whole_stack:
        arr = np.asarray(data)
        return arr.reshape((-1,) + arr.shape[len(lead):])
    return np.asarray(data)


def format_seconds(seconds: float) -> str:
    """``'42 s'`` or ``'3 min 05 s'``; ``'…'`` when not yet known."""
    if not math.isfinite(seconds):
        return "…"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


@dataclass
class MethodOptions:
    """What the form shows for an SR method, read from its module."""

    defaults: dict[str, Any]
    main: list[str]
    choices: dict[str, list[Any]]
    takes_kernel_x2: bool


def method_options(method: str) -> MethodOptions:
    """A registered SR method's options (its module's ``DEFAULTS``), which to show first (its
    ``MAIN_OPTIONS``, else the first two) and fixed choices (``OPTION_CHOICES``; a ``preset``
    option offers the module's ``PRESETS``).

    ``kernel_x2`` (the ×2 kernel behind a ×4 one, for methods that can run ×4 as two ×2 steps)
    is not typed in the form: the widget takes it from the kernel source.
    """
    module = inspect.getmodule(SR_METHODS.get(method))
    defaults = dict(getattr(module, "DEFAULTS", {}) or {})
    main = list(getattr(module, "MAIN_OPTIONS", list(defaults)[:2]))
    choices = {k: list(v) for k, v in dict(getattr(module, "OPTION_CHOICES", {}) or {}).items()}
    presets = getattr(module, "PRESETS", None)
    if "preset" in defaults and isinstance(presets, dict):
        choices.setdefault("preset", list(presets))
    takes_kernel_x2 = KERNEL_X2 in defaults
    shown = {k: v for k, v in defaults.items()
             if k != KERNEL_X2 and (v is None or isinstance(v, (bool, int, float, str)))}
    return MethodOptions(shown, [k for k in main if k in shown], choices, takes_kernel_x2)


def option_widget(name: str, default: Any, choices: list[Any] | None = None) -> Any:
    """A magicgui widget for one SR option; an option whose default is ``None`` is a text
    field left empty for the method's own default."""
    label = name.replace("_", " ")
    if choices:
        return ComboBox(name=name, label=label, choices=choices, value=default if default in choices else choices[0])
    if isinstance(default, bool):
        return CheckBox(name=name, text=label, value=default)
    if isinstance(default, int):
        return SpinBox(name=name, label=label, value=default, min=0, max=max(100000, default))
    if isinstance(default, float):
        widget = FloatSpinBox(name=name, label=label, min=0.0, max=max(1e6, default), step=0.1)
        # Enough decimals to show the default (e.g. 5e-6) before Qt rounds it.
        digits = 2 if default == 0 else int(max(2, min(8, 2 - math.floor(math.log10(abs(default))))))
        widget.native.setDecimals(digits)
        widget.value = default
        return widget
    widget = LineEdit(name=name, label=label, value="" if default is None else str(default))
    if default is None:
        widget.tooltip = "Leave empty for the method's default."
    return widget


def parse_option(value: Any) -> Any:
    """Text typed for an option without a typed default: a number if it reads as one, else the text."""
    if not isinstance(value, str):
        return value
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        return value
    return parsed if isinstance(parsed, (int, float, bool)) else value


# --------------------------------------------------------------------------- shared runner

@dataclass
class RunState:
    """One run: its input, its job and progress bar, and how it ended."""

    layer: Any
    slice_index: tuple[int, ...] | None
    job: Generator[Progress, None, Any]
    pbar: Any
    description: str
    outcome: Any = None
    finished: bool = False
    preview_name: str = ""
    preview_existed: bool = False


class TaskWidget(QWidget):
    """Run/Cancel buttons, a status line and the worker plumbing shared by the dock widgets."""

    run_text = "Run"
    whole_stack_text = "Whole stack"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self.state: RunState | None = None
        self._reporting = False  # napari's progress bar and layer controls re-enter the event loop
        self.form = Container(labels=True)
        # Every task works on one input image layer, optionally on its whole stack; subclasses place these.
        self.image = ComboBox(label="Image", choices=self._image_choices, nullable=False)
        self.whole_stack = CheckBox(text=self.whole_stack_text, value=False)
        self.image.changed.connect(self._image_changed)
        self.advanced = Container(labels=True)
        self.collapsible = QCollapsible("Advanced")
        self.collapsible.addWidget(self.advanced.native)
        self.run_button = PushButton(text=self.run_text)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.collapsible)
        buttons = Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        layout.addWidget(buttons.native)
        layout.addWidget(self.status.native)
        layout.addStretch(1)
        self.viewer.layers.events.inserted.connect(self._layers_changed)
        self.viewer.layers.events.removed.connect(self._layers_changed)
        self.viewer.layers.events.reordered.connect(self._layers_changed)
        self.viewer.layers.selection.events.active.connect(self._active_changed)

    def _layers_changed(self, event: Any = None) -> None:
        self.form.reset_choices()
        self._image_changed()

    def _active_changed(self, event: Any = None) -> None:
        self._follow_active(self.image)

    def _image_changed(self, *_: Any) -> None:
        layer = self.image.value
        self.whole_stack.enabled = layer is not None and bool(leading_shape(layer))

    # subclasses provide these

    def run(self) -> None:
        raise NotImplementedError

    def _on_result(self, state: RunState, value: Any) -> None:
        raise NotImplementedError

    def _on_progress(self, state: RunState, p: Progress) -> None:
        pass

    def _cleanup(self, state: RunState) -> None:
        """Remove whatever a run that did not succeed left in the viewer."""

    # worker plumbing
    @property
    def running(self) -> bool:
        """Whether a job is in progress."""
        return self.worker is not None

    def _start(self, state: RunState) -> None:
        self.state = state
        self.worker = create_worker(guarded, state.job)
        self.worker.yielded.connect(self._yielded)
        self.worker.returned.connect(self._returned)
        self.worker.finished.connect(self._finished)
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        self.status.value = f"{state.description}: starting…"
        self.worker.start()

    def cancel(self) -> None:
        """Stop the running job at its next progress report."""
        if self.worker is not None:
            self.worker.quit()
            self.cancel_button.enabled = False
            self.status.value = "Cancelling…"

    def _yielded(self, p: Progress) -> None:
        state = self.state
        if state is None or self.worker is None or self.worker.abort_requested or self._reporting:
            return  # a report arriving while the previous one is drawn is skipped; the next catches up
        self._reporting = True
        try:
            eta = format_seconds(p.eta) if p.iteration < p.total else "finishing"
            self.status.value = (f"{state.description}: {p.stage} {p.iteration}/{p.total} · "
                                 f"{format_seconds(p.elapsed)} elapsed · ETA {eta}")
            self._on_progress(state, p)
            if state.pbar.total != p.total:
                state.pbar.total = p.total
            state.pbar.set_description(f"{state.description} ({p.stage})")
            state.pbar.update(max(0, p.iteration - state.pbar.n))
        finally:
            self._reporting = False

    def _returned(self, value: Any) -> None:
        if self.state is not None:
            self.state.outcome = value
            self.state.finished = True

    def _finished(self) -> None:
        if self._reporting:  # reached from inside a progress report: finish once it is drawn
            QTimer.singleShot(0, self._finished)
            return
        state, self.state, self.worker = self.state, None, None
        self.run_button.enabled = True
        self.cancel_button.enabled = False
        if state is None:
            return
        state.pbar.close()
        state.job.close()  # the worker leaves a cancelled job suspended; release what it holds
        outcome = state.outcome
        if not state.finished:
            self._cleanup(state)
            self.status.value = f"{state.description}: cancelled."
        elif isinstance(outcome, Failure):
            self._cleanup(state)
            self.status.value = f"{state.description}: failed."
            self._report(outcome.error, state.description)
        elif state.layer not in self.viewer.layers:
            self._cleanup(state)
            self.status.value = f"{state.description}: the input layer was removed; result discarded."
        else:
            self._on_result(state, outcome)

    def _report(self, exc: BaseException, what: str) -> None:
        if isinstance(exc, (ValueError, RuntimeError, KeyError, TypeError, MemoryError)):
            show_error(f"{what} failed: {error_message(exc)}")
        else:  # unexpected: keep the traceback reachable from the notification
            notification_manager.receive_error(type(exc), exc, exc.__traceback__)

    def _image_choices(self, widget: Any = None) -> list[tuple[str, Any]]:
        """Image layers that are inputs (not kernels or D-maps), top of the list first."""
        out = []
        for layer in reversed(self.viewer.layers):
            if isinstance(layer, napari.layers.Image) and layer.metadata.get("role") not in RESULT_ROLES \
                    and "orientation" not in layer.metadata:
                out.append((layer.name, layer))
        return out

    def _follow_active(self, combo: ComboBox) -> None:
        # napari hands plugins proxies of its objects, so layers are compared with ==, not `is`.
        active = self.viewer.layers.selection.active
        if not self.running and active is not None and any(active == v for _, v in self._image_choices()):
            combo.value = active

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt name)
        if self.worker is not None:
            self.worker.quit()
        super().closeEvent(event)


# --------------------------------------------------------------------------- estimate kernel

class EstimateKernelWidget(TaskWidget):
    """Blind estimation of the SR kernel of an image layer (KernelGAN)."""

    run_text = "Estimate kernel"
    whole_stack_text = "One kernel for the whole stack"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        presets = estimator_presets()
        self.scale = ComboBox(label="Scale", choices=[("×2", 2), ("×4", 4)], value=2)
        self.preset = ComboBox(label="Preset", choices=presets,
                               value="default" if "default" in presets else presets[0])
        self.iterations = SpinBox(label="Iterations", value=0, min=0, max=100000, step=50)
        self.iterations.native.setSpecialValueText("preset default")
        self.iterations.tooltip = "Training steps per run; 0 uses the preset's own number."
        self.device = ComboBox(label="Device", choices=available_devices(), value="auto")
        self.seed = SpinBox(label="Seed", value=0, min=0, max=MAX_SEED)
        self.form.extend([self.image, self.scale, self.preset, self.iterations, self.device, self.seed])
        self.report_every = SpinBox(label="Preview every", value=10, min=1, max=10000)
        self.report_every.tooltip = "Update the running kernel preview every this many iterations."
        self.whole_stack.tooltip = ("For a 3-D/4-D layer: estimate one kernel from all slices "
                                    "(otherwise the slice in view).")
        self.advanced.extend([self.report_every, self.whole_stack])
        self._follow_active(self.image)
        self._image_changed()

    def run(self) -> None:
        """Start an estimate on the chosen layer with the form's options."""
        layer = self.image.value
        if layer is None:
            show_info("Add or choose an image layer first.")
            return
        whole = bool(self.whole_stack.value and leading_shape(layer))
        slice_index = slice_in_view(self.viewer, layer) if leading_shape(layer) and not whole else None
        options = dict(scale=int(self.scale.value), preset=self.preset.value,
                       iterations=int(self.iterations.value) or None, device=self.device.value,
                       seed=int(self.seed.value), report_every=int(self.report_every.value),
                       stack_axis=0 if whole else None, rgb=bool(layer.rgb))
        job = self._job(layer, slice_index, whole, options)
        where = f" (slice {', '.join(map(str, slice_index))})" if slice_index else (" (whole stack)" if whole else "")
        pbar = progress(total=0, desc=f"Kernel of {layer.name}")
        preview = preview_layer_name(layer.name)
        self._start(RunState(layer, slice_index, job, pbar, f"Kernel of {layer.name}{where}",
                             preview_name=preview, preview_existed=preview in self.viewer.layers))

    @staticmethod
    def _job(layer: Any, slice_index: tuple[int, ...] | None, whole: bool,
             options: dict[str, Any]) -> Generator[Progress, None, KernelEstimate]:
        # Reading the slice happens in the worker too, so lazy (dask, zarr) data never blocks the GUI.
        scale = options.pop("scale")
        arr = input_array(layer, slice_index, whole)
        return (yield from api.iter_estimate_kernel(arr, scale, **options))

    def _on_progress(self, state: RunState, p: Progress) -> None:
        if p.kernel is not None and state.layer in self.viewer.layers:
            update_preview(self.viewer, state.layer, p.kernel)

    def _cleanup(self, state: RunState) -> None:
        if not state.preview_existed:
            remove_layer(self.viewer, state.preview_name)

    def _on_result(self, state: RunState, value: KernelEstimate) -> None:
        add_estimate_layers(self.viewer, state.layer, value, slice_index=state.slice_index)
        self._cleanup(state)  # a preview left under an old name if the input was renamed meanwhile
        self.status.value = (f"{state.description}: done in {format_seconds(value.elapsed)} "
                             f"({value.iterations} iterations, {value.device}).")


# --------------------------------------------------------------------------- super-resolve

class SuperResolveWidget(TaskWidget):
    """Kernel-aware super-resolution of an image layer with a registered SR method."""

    run_text = "Super-resolve"
    whole_stack_text = "Whole stack (one kernel for all slices)"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        methods = sr_method_names()
        self.kernel = ComboBox(label="Kernel", choices=self._kernel_choices, nullable=False)
        self.method = ComboBox(label="Method", choices=methods,
                               value="closed-form" if "closed-form" in methods else (methods[0] if methods else None))
        self.scale = ComboBox(label="Scale", choices=[(f"×{s}", s) for s in api.SR_SCALES], value=2)
        self.options = Container(labels=True)
        self.options.margins = (0, 0, 0, 0)
        self.device = ComboBox(label="Device", choices=available_devices(), value="auto")
        self.seed = SpinBox(label="Seed", value=0, min=0, max=MAX_SEED)
        self.form.extend([self.image, self.kernel, self.method, self.scale, self.options, self.device, self.seed,
                          self.whole_stack])
        self.more_options = Container(labels=True)
        self.advanced.append(self.more_options)
        self.method_options: MethodOptions | None = None
        self.method.changed.connect(self._method_changed)
        self.kernel.changed.connect(self._kernel_changed)
        self._follow_active(self.image)
        self._method_changed()
        self._image_changed()

    def _kernel_choices(self, widget: Any = None) -> list[tuple[str, Any]]:
        kernels = [(layer.name, layer) for layer in reversed(self.viewer.layers)
                   if isinstance(layer, napari.layers.Image) and "orientation" in layer.metadata
                   and layer.metadata.get("role") != "kernel preview"]
        return [(LATEST, LATEST)] + kernels

    def _method_changed(self, *_: Any) -> None:
        self.options.clear()
        self.more_options.clear()
        self.method_options = method_options(self.method.value) if self.method.value else None
        if self.method_options is None:
            return
        opts = self.method_options
        for name, value in opts.defaults.items():
            widget = option_widget(name, value, opts.choices.get(name))
            (self.options if name in opts.main else self.more_options).append(widget)
        self._kernel_changed()

    def _kernel_changed(self, *_: Any) -> None:
        """An estimated kernel gets the method defaults ``blind_super_resolve`` uses (shown in the form);
        a measured one the method's own."""
        if self.method_options is None:
            return
        chosen = self.kernel.value
        estimated = chosen == LATEST or (chosen is not None and chosen.metadata.get("role") == "kernel")
        blind = api.BLIND_DEFAULTS.get(self.method.value, {})
        for widget in [*self.options, *self.more_options]:
            if widget.name in blind:
                widget.value = blind[widget.name] if estimated else self.method_options.defaults[widget.name]

    def option_values(self) -> dict[str, Any]:
        """The chosen method's options as set in the form (empty text fields left out)."""
        return {w.name: parse_option(w.value) for w in [*self.options, *self.more_options] if w.value != ""}

    def kernels_for(self, layer: Any, scale: int) -> dict[int, np.ndarray]:
        """The kernel source's kernels for SR of ``layer`` at ``scale``: ``{scale: k}``, plus
        ``{2: k2}`` when a ×4 kernel comes from a known ×2 one."""
        source = self.kernel.value
        if source == LATEST or source is None:
            kernels = layer_kernels(self.viewer, layer.name)
            if not kernels:
                raise ValueError(f"there is no kernel estimate for {layer.name!r} yet: run 'Estimate kernel' "
                                 "first or choose a kernel layer")
            if scale not in kernels:
                raise ValueError(f"kernel estimates are for ×2 and ×4; choose a ×{scale} kernel layer for ×{scale}")
            return {s: k for s, k in kernels.items() if s in (scale, 2)}
        k = np.asarray(source.data, dtype=np.float64)
        k_scale = source.metadata.get("scale")
        if k_scale in (2, 4) and k_scale != scale:
            if (k_scale, scale) == (2, 4):
                return {4: analytic_x4(k), 2: k}
            raise ValueError(f"{source.name!r} is a ×{k_scale} kernel; choose a ×{scale} kernel or scale ×{k_scale}")
        return {scale: k}

    def run(self) -> None:
        """Start super-resolution of the chosen layer with the form's options."""
        layer = self.image.value
        if layer is None:
            show_info("Add or choose an image layer first.")
            return
        if not self.method.value:
            show_warning("No SR method is registered.")
            return
        scale = int(self.scale.value)
        method_opts = self.option_values()
        try:
            kernels = self.kernels_for(layer, scale)
            if self.method_options.takes_kernel_x2 and method_opts.get("gradual") and scale == 4:
                # ×4 as two ×2 steps needs the ×2 kernel behind the ×4 one.
                if 2 not in kernels:
                    raise ValueError("gradual ×4 needs a ×2 kernel: choose the latest estimate or a ×2 kernel layer")
                method_opts[KERNEL_X2] = kernels[2]
        except ValueError as exc:
            show_error(f"Super-resolution failed: {exc}")
            return
        whole = bool(self.whole_stack.value and leading_shape(layer))
        slice_index = slice_in_view(self.viewer, layer) if leading_shape(layer) and not whole else None
        options = dict(method=self.method.value, device=self.device.value, seed=int(self.seed.value),
                       rgb=bool(layer.rgb), stack_axis=0 if whole else None, **method_opts)
        job = self._job(layer, slice_index, whole, kernels[scale], scale, options)
        description = f"SR×{scale} of {layer.name} ({self.method.value})"
        pbar = progress(total=0, desc=description)
        self._start(RunState(layer, slice_index, job, pbar, description))

    @staticmethod
    def _job(layer: Any, slice_index: tuple[int, ...] | None, whole: bool, kernel: np.ndarray, scale: int,
             options: dict[str, Any]) -> Generator[Progress, None, SRResult]:
        arr = input_array(layer, slice_index, whole)
        return (yield from api.iter_super_resolve(arr, kernel, scale, **options))

    def _on_result(self, state: RunState, value: SRResult) -> None:
        add_sr_layer(self.viewer, state.layer, value, slice_index=state.slice_index)
        self.status.value = f"{state.description}: done in {format_seconds(value.elapsed)} ({value.device})."


__all__ = ["EstimateKernelWidget", "SuperResolveWidget", "guarded", "Failure"]
