"""*Kernel map*: a kernel per tile of an image layer, shown as a kernel mosaic and per-pixel maps."""
from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox, SpinBox

from ..fields import KernelField
from ..kernel_map import MAX_GRID, MIN_TILE, OVERLAP, TILE, TRUST_HALF, iter_estimate_kernel_map
from ..layers import add_kernel_map_layers
from ..vocabulary import ESTIMATE_SCALES
from .models import RunRecord, format_seconds, input_notes, read_then
from .task_widget import EstimatorTaskWidget, RunTarget

__all__ = ["KernelMapWidget", "AUTO_TILE"]

AUTO_TILE = 0
"""Tile spin-box value meaning "the API's default" (:func:`~napari_kernelgan.kernel_map.default_tile`)."""


class KernelMapWidget(EstimatorTaskWidget):
    """Estimate a kernel per tile of an image layer (where the blur changes across the field)."""

    run_text = "Estimate kernel map"
    whole_stack_text = "One map for the whole stack"

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.scale = ComboBox(label="Scale", choices=[(f"×{s}", s) for s in ESTIMATE_SCALES], value=2)
        self.scale.tooltip = "The SR scale the kernels are for (the map stores ×2 kernels; ×4 ones are derived)."
        # The spin box (superqt's) shows no special-value text, so the label says what 0 means.
        self.tile = SpinBox(label="Tile (0: automatic)", value=AUTO_TILE, min=AUTO_TILE, max=4096, step=16)
        self.tile.tooltip = (f"Tile side in input pixels (at least {MIN_TILE}). 0, automatic: {TILE}, larger on big "
                             f"images so there are at most {MAX_GRID}×{MAX_GRID} tiles. Smaller tiles follow "
                             "faster changes but "
                             "see less of the blur each.")
        self.overlap = SpinBox(label="Overlap", value=OVERLAP, min=0, max=2048)
        self.overlap.tooltip = "Pixels neighbouring tiles share."
        self.form.extend([self.image, self.estimator, self.unavailable, self.options.main, self.scale, self.tile,
                          self.device, self.seed])
        self.whole_stack.tooltip = "For a 3-D/4-D layer: one map from all slices (otherwise the slice in view)."
        self.advanced.extend([self.overlap, self.threads, self.whole_stack])
        self._run: RunTarget | None = None
        self.finish_setup()

    def run(self) -> None:
        """Start a kernel map of the chosen layer with the form's options."""
        begun = self.begin_run("Kernel map")
        if begun is None:
            return
        layer, slice_index, whole, description, threads, options = begun
        hints = self.optics_values(description)
        if hints is None:
            return
        tile = None if int(self.tile.value) == AUTO_TILE else int(self.tile.value)
        kwargs = dict(options, hints=hints, estimator=self.estimator.value, tile=tile, overlap=int(self.overlap.value),
                      device=self.device.value, seed=int(self.seed.value), threads=threads,
                      stack_axis=0 if whole else None, rgb=bool(layer.rgb))
        scale = int(self.scale.value)

        self._run = RunTarget(layer, slice_index)
        self.start(read_then(layer, slice_index, whole, lambda arr: iter_estimate_kernel_map(arr, scale, **kwargs)),
                   description, input_notes(layer))

    def on_finished(self, record: RunRecord) -> str:
        run = self.done_target(record)
        if not isinstance(run, RunTarget):
            return run
        field: KernelField = record.value
        add_kernel_map_layers(self.viewer, run.layer, field, slice_index=run.slice_index)
        trusted = int((field.confidence >= TRUST_HALF).sum())
        text = (f"{record.description}: done in {format_seconds(record.elapsed())} ({field.method}, "
                f"{field.grid[0]}×{field.grid[1]} tiles, {trusted} trusted")
        if trusted < field.confidence.size:
            text += "; the others took their neighbours' kernel"
        return text + "). Hover over the maps to read the blur's width, orientation and confidence."
