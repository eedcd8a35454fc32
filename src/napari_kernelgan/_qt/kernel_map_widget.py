"""*Kernel map*: a kernel per tile of an image layer, shown as a kernel mosaic and per-pixel maps."""
from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from magicgui.widgets import ComboBox, SpinBox

from .. import api
from ..errors import KernelGANError
from ..fields import KernelField
from ..kernel_map import MAX_GRID, MIN_TILE, OVERLAP, TILE, TRUST_HALF, iter_estimate_kernel_map
from ..layers import add_kernel_map_layers
from ..registry import ESTIMATORS
from ..types import Progress
from ..vocabulary import ESTIMATE_SCALES, Stage
from .models import RunRecord, RunState, format_seconds, input_array, input_notes, parse_threads, where_text
from .task_widget import TaskWidget

__all__ = ["KernelMapWidget", "AUTO_TILE"]

AUTO_TILE = 0
"""Tile spin-box value meaning "the API's default" (:func:`~napari_kernelgan.kernel_map.default_tile`)."""


@dataclass
class _Run:
    layer: Any
    slice_index: tuple[int, ...] | None


class KernelMapWidget(TaskWidget):
    """Estimate a kernel per tile of an image layer (where the blur changes across the field)."""

    run_text = "Estimate kernel map"
    whole_stack_text = "One map for the whole stack"

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.estimator = self.method_chooser("Estimator", ESTIMATORS, api.DEFAULT_ESTIMATOR)
        self.scale = ComboBox(label="Scale", choices=[(f"×{s}", s) for s in ESTIMATE_SCALES], value=2)
        self.scale.tooltip = "The SR scale the kernels are for (the map stores ×2 kernels; ×4 ones are derived)."
        self.tile = SpinBox(label="Tile", value=AUTO_TILE, min=AUTO_TILE, max=4096, step=16)
        self.tile.native.setSpecialValueText("automatic")
        self.tile.tooltip = (f"Tile side in input pixels (at least {MIN_TILE}). Automatic: {TILE}, larger on big "
                             f"images so there are at most {MAX_GRID}×{MAX_GRID} tiles. Smaller tiles follow "
                             "faster changes but "
                             "see less of the blur each.")
        self.overlap = SpinBox(label="Overlap", value=OVERLAP, min=0, max=2048)
        self.overlap.tooltip = "Pixels neighbouring tiles share."
        self.form.extend([self.image, self.estimator, self.unavailable, self.options.main, self.scale, self.tile,
                          self.device, self.seed])
        self.whole_stack.tooltip = "For a 3-D/4-D layer: one map from all slices (otherwise the slice in view)."
        self.advanced.extend([self.overlap, self.threads, self.whole_stack])
        self._run: _Run | None = None
        self.estimator.changed.connect(self._estimator_changed)
        self._estimator_changed()
        self._follow_active(self.image)
        self._image_changed()

    def _estimator_changed(self, *_: Any) -> None:
        self.options.set_spec(ESTIMATORS.get(self.estimator.value) if self.estimator.value else None)

    def run(self) -> None:
        """Start a kernel map of the chosen layer with the form's options."""
        chosen = self.chosen_input()
        if chosen is None:
            return
        layer, slice_index, whole = chosen
        description = f"Kernel map of {layer.name}{where_text(slice_index, whole)}"
        try:
            threads = parse_threads(self.threads.value)
            options = self.options.values()
        except KernelGANError as exc:
            self.fail(exc, description)
            return
        tile = None if int(self.tile.value) == AUTO_TILE else int(self.tile.value)
        kwargs = dict(options, estimator=self.estimator.value, tile=tile, overlap=int(self.overlap.value),
                      device=self.device.value, seed=int(self.seed.value), threads=threads,
                      stack_axis=0 if whole else None, rgb=bool(layer.rgb))
        scale = int(self.scale.value)

        def job() -> Generator[Progress, None, KernelField]:
            # Reading the slice happens in the worker too, so lazy (dask, zarr) data never blocks the GUI.
            yield Progress(0, 1, 0.0, stage=Stage.PREPARE, message="reading the image")
            arr = input_array(layer, slice_index, whole)
            return (yield from iter_estimate_kernel_map(arr, scale, **kwargs))

        self._run = _Run(layer, slice_index)
        self.start(job, description, input_notes(layer))

    def on_finished(self, record: RunRecord) -> str:
        run, self._run = self._run, None
        if run is None or record.state != RunState.DONE:
            return ""
        if run.layer not in self.viewer.layers:
            return f"{record.description}: the input layer was removed; result discarded."
        field: KernelField = record.value
        add_kernel_map_layers(self.viewer, run.layer, field, slice_index=run.slice_index)
        trusted = int((field.confidence >= TRUST_HALF).sum())
        text = (f"{record.description}: done in {format_seconds(record.elapsed())} ({field.method}, "
                f"{field.grid[0]}×{field.grid[1]} tiles, {trusted} trusted")
        if trusted < field.confidence.size:
            text += "; the others took their neighbours' kernel"
        return text + "). Hover over the maps to read the blur's width, orientation and confidence."
