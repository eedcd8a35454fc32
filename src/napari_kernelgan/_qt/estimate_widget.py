"""*Estimate kernel*: blind estimation of an image layer's SR kernel with any registered estimator."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from magicgui.widgets import ComboBox, SpinBox
from napari.utils.notifications import show_warning

from .. import api
from ..layers import add_estimate_layers, preview_layer_name, remove_layer, update_preview
from ..types import KernelEstimate
from ..vocabulary import ESTIMATE_SCALES
from .models import (
    Report,
    RunRecord,
    RunState,
    format_seconds,
    input_notes,
    read_then,
)
from .task_widget import EstimatorTaskWidget

__all__ = ["EstimateKernelWidget"]


@dataclass
class _Run:
    """What a running estimate needs to put its result in place (or clean up)."""

    layer: Any
    slice_index: tuple[int, ...] | None
    preview: str
    preview_existed: bool


class EstimateKernelWidget(EstimatorTaskWidget):
    """Blind estimation of the SR kernel of an image layer."""

    run_text = "Estimate kernel"
    whole_stack_text = "One kernel for the whole stack"

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.scale = ComboBox(label="Scale", choices=[(f"×{s}", s) for s in ESTIMATE_SCALES], value=2)
        self.scale.tooltip = "×2: the estimated kernel; ×4: the ×4 kernel derived from it analytically, too."
        self.form.extend([self.image, self.estimator, self.unavailable, self.options.main, self.scale, self.device,
                          self.seed])
        self.report_every = SpinBox(label="Preview every", value=10, min=1, max=10000)
        self.report_every.tooltip = "Update the running kernel preview every this many iterations."
        self.whole_stack.tooltip = ("For a 3-D/4-D layer: estimate one kernel from all slices "
                                    "(otherwise the slice in view).")
        self.advanced.extend([self.threads, self.report_every, self.whole_stack])
        self._run: _Run | None = None
        self.finish_setup()

    def run(self) -> None:
        """Start an estimate on the chosen layer with the form's options."""
        begun = self.begin_run("Kernel")
        if begun is None:
            return
        layer, slice_index, whole, description, threads, options = begun
        hints = self.optics_values(description)
        if hints is None:
            return
        scale = int(self.scale.value)
        kwargs = dict(options, hints=hints, estimator=self.estimator.value, device=self.device.value,
                      seed=int(self.seed.value), threads=threads, report_every=int(self.report_every.value),
                      stack_axis=0 if whole else None, rgb=bool(layer.rgb))

        job = read_then(layer, slice_index, whole, lambda arr: api.iter_estimate_kernel(arr, scale, **kwargs))
        preview = preview_layer_name(layer.name)
        self._run = _Run(layer, slice_index, preview, preview in self.viewer.layers)
        self.start(job, description, input_notes(layer))

    def on_report(self, report: Report) -> None:
        run = self._run
        if run is not None and report.progress.kernel is not None and run.layer in self.viewer.layers:
            update_preview(self.viewer, run.layer, report.progress.kernel)

    def _cleanup(self, run: _Run) -> None:
        if not run.preview_existed:
            remove_layer(self.viewer, run.preview)

    def on_finished(self, record: RunRecord) -> str:
        run, self._run = self._run, None
        if run is None:
            return ""
        if record.state != RunState.DONE:
            self._cleanup(run)
            return ""
        if run.layer not in self.viewer.layers:
            self._cleanup(run)
            return f"{record.description}: the input layer was removed; result discarded."
        est: KernelEstimate = record.value
        add_estimate_layers(self.viewer, run.layer, est, slice_index=run.slice_index)
        self._cleanup(run)  # a preview left under an old name if the input was renamed meanwhile
        steps = f"{est.iterations} iterations, " if est.iterations else ""
        read = f", {est.options['slices_read']} slices read" if "slices_read" in est.options else ""
        text = (f"{record.description}: done in {format_seconds(record.elapsed())} ({est.method}, {steps}"
                f"{est.device}{read})")
        from ..confidence import read_confidence

        reading = read_confidence(est.confidence, scale=est.scale)
        if reading is None:
            return text + "."
        if not reading.trusted:
            # Said where it cannot be missed: a notification and the status line styled as a warning.
            show_warning(f"{record.description}: {reading.text}. {reading.advice[:1].upper()}{reading.advice[1:]}.")
            self.warn_status()
            return f"{text}; {reading.text}. {reading.advice[:1].upper()}{reading.advice[1:]}."
        return f"{text}; {reading.text}."
