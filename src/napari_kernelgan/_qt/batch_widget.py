"""*Batch*: the batch engine on files and folders from disk, in napari's thread worker.

The widget only collects settings; :func:`napari_kernelgan.batch.iter_batch` does the work (the same
engine and outputs as ``napari-kernelgan batch``) and checks the runner's cancel flag between inputs
and slices. Its *Optics* group shows what the input files all say of the microscope; what is typed over
that is given for every input, each file's own metadata (per channel) filling the rest. The run's
``summary.csv`` is shown as a table; *Open results* adds the super-resolved files (those of the selected
rows, or all) as image layers, stacks with their physical scale.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, PushButton
from qtpy.QtCore import QTimer
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import QAbstractItemView, QFileDialog, QTableWidget, QTableWidgetItem

from .. import api
from ..batch import BatchConfig, iter_batch
from ..batch.engine import expand_inputs
from ..errors import KernelGANError
from ..layers import ensure_visible, sr_transform
from ..optics_hints import shared_hints
from ..registry import ESTIMATORS, SR_METHODS
from ..vocabulary import ESTIMATE_SCALES, Status
from .models import RunRecord, RunState, format_seconds
from .options_form import OptionsForm
from .task_widget import TaskWidget

__all__ = ["BatchWidget", "TABLE_COLUMNS"]

TABLE_COLUMNS = ("file", "slice", "channel", "status", "error", "estimator", "sigma_major", "sigma_minor",
                 "orientation_deg", "confidence", "seconds", "output")
"""The summary.csv columns the table shows (the settings columns are the same on every row)."""
TABLE_ROWS = 8
"""Rows the summary table shows before it scrolls; fewer rows, a shorter table."""
FAILED_BACKGROUND = QColor(150, 40, 40)
OPTICS_DELAY_MS = 400
"""The input files' optics are read once typing has paused this long."""


class BatchWidget(TaskWidget):
    """Kernels and super-resolved images for files and folders on disk (see the module docstring)."""

    run_text = "Run batch"

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.inputs = LineEdit(label="Inputs", value="")
        self.inputs.native.setPlaceholderText("files, folders or patterns, separated by ;")
        self.inputs.tooltip = "TIFF stacks (OME, ImageJ), PNG or JPEG files, folders of them, or glob patterns."
        self.pick_folder = PushButton(text="Folder…")
        self.pick_files = PushButton(text="Files…")
        pickers = Container(widgets=[self.pick_folder, self.pick_files], layout="horizontal", labels=False)
        pickers.margins = (0, 0, 0, 0)
        self.out = FileEdit(label="Output folder", mode="d")
        self.scale = ComboBox(label="Scale", choices=[(f"×{s}", s) for s in ESTIMATE_SCALES], value=2)
        self.estimator = self.method_chooser("Estimator", ESTIMATORS, api.DEFAULT_ESTIMATOR)
        self.optics = self.add_optics("what the input files all say")
        self.file_optics = CheckBox(text="Each file's optics", value=True)
        self.file_optics.tooltip = ("Read each input's optics from its file (per channel) where the Optics group "
                                    "does not change them; off: the Optics group alone.")
        self.sr_method = ComboBox(label="SR method", choices=SR_METHODS.names(), value=api.DEFAULT_SR_METHOD)
        self.sr_options = OptionsForm()
        self.collapsible.addWidget(self.sr_options.more)
        self.per_slice = CheckBox(text="A kernel per slice", value=False)
        self.per_slice.tooltip = "Stacks: estimate a kernel for every slice instead of one for the whole stack."
        self.per_channel = CheckBox(text="A kernel per channel", value=False)
        self.per_channel.tooltip = ("Multichannel images: estimate a kernel for every channel (the blur differs "
                                    "with the wavelength) instead of one shared by all channels.")
        self.form.extend([self.inputs, pickers, self.out, self.scale, self.estimator, self.unavailable,
                          self.options.main, self.sr_method, self.sr_options.main, self.per_slice, self.per_channel,
                          self.device, self.seed])
        self.advanced.extend([self.file_optics, self.threads])
        self.table = QTableWidget(0, len(TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(TABLE_COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.open_button = PushButton(text="Open results", enabled=False)
        self.open_button.tooltip = "Add the super-resolved files of the selected rows (or of all) as image layers."
        layout = self.body
        layout.insertWidget(layout.count() - 1, self.table, 1)
        layout.insertWidget(layout.count() - 1, self.open_button.native)
        self.rows: list[dict[str, str]] = []
        self.results_dir: Path | None = None
        self.pick_folder.changed.connect(self._choose_folder)
        self.pick_files.changed.connect(self._choose_files)
        self.open_button.changed.connect(self.open_results)
        self._optics_timer = QTimer(self)
        self._optics_timer.setSingleShot(True)
        self._optics_timer.setInterval(OPTICS_DELAY_MS)
        self._optics_timer.timeout.connect(self.read_input_optics)
        self.inputs.changed.connect(lambda *_: self._optics_timer.start())
        self.estimator.changed.connect(self._estimator_changed)
        self.sr_method.changed.connect(lambda *_: self.sr_options.set_spec(SR_METHODS.get(self.sr_method.value)))
        self._estimator_changed()
        self.sr_options.set_spec(SR_METHODS.get(self.sr_method.value))
        self._update_buttons()

    def ready(self) -> bool:
        """A batch needs no image layer: inputs and the output folder are checked when Run is clicked."""
        return True

    def _estimator_changed(self, *_: Any) -> None:
        spec = ESTIMATORS.get(self.estimator.value)
        self.options.set_spec(spec)
        self.optics.set_declared(spec.defaults, self.estimator.value)

    def read_input_optics(self) -> dict[str, Any]:
        """Fill the *Optics* group with what the inputs' files all say (the first files of a folder); returns
        it. Inputs that cannot be listed yet (a path being typed) say nothing."""
        self._optics_timer.stop()
        try:
            paths = expand_inputs(self.input_list())
        except (KernelGANError, OSError):
            paths = []
        hints = shared_hints([p for p in paths if p.is_file()])
        self.optics.fill(hints)
        return hints

    def _active_changed(self, event: Any = None) -> None:
        """A batch reads from disk: the layer selected in the viewer does not matter."""

    # ------------------------------------------------------------------ choosing inputs

    def _choose_folder(self, *_: Any) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of images")
        if folder:
            self.inputs.value = folder

    def _choose_files(self, *_: Any) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Images", "", "Images (*.tif *.tiff *.png *.jpg *.jpeg)")
        if files:
            self.inputs.value = "; ".join(files)

    def input_list(self) -> list[str]:
        """The inputs typed or chosen, in order."""
        return [item.strip() for item in str(self.inputs.value).split(";") if item.strip()]

    # ------------------------------------------------------------------ running

    def config(self, description: str) -> BatchConfig | None:
        """The run's settings from the form; ``None``, with the reason said, when one is missing or invalid."""
        out = str(self.out.value or "").strip()
        if not self.input_list():
            self.say("Choose input files or a folder first.")
            return None
        if out in ("", "."):
            self.say("Choose an output folder first.")
            return None
        settings = self.form_settings(description)
        if settings is None:
            return None
        threads, estimator_options = settings
        read_files = bool(self.file_optics.value)
        try:
            # Over each file's own metadata, only what was typed over what they all say is given.
            hints = self.optics.changed_values() if read_files else self.optics.values()
            return BatchConfig(out=Path(out), scale=int(self.scale.value), estimator=self.estimator.value,
                               estimator_options=estimator_options, sr_method=self.sr_method.value,
                               sr_options=self.sr_options.values(), per_slice=bool(self.per_slice.value),
                               per_channel=bool(self.per_channel.value), device=self.device.value,
                               seed=int(self.seed.value), threads=threads, hints=hints, file_hints=read_files)
        except KernelGANError as exc:
            self.fail(exc, description)
            return None

    def run(self) -> None:
        """Start the batch in the worker thread."""
        self.begin_attempt()
        inputs = self.input_list()
        # What the inputs hold (a folder, a glob) is known only once the engine has expanded them.
        description = "Batch"
        cfg = self.config(description)
        if cfg is None:
            return
        runner = self.runner

        def job() -> Any:
            # The flag is read here, in the worker, once start() has made this run's.
            return (yield from iter_batch(inputs, cfg, cancel=runner.cancel_event))

        self._show_rows([])
        self.results_dir = cfg.out
        self.start(job, description)

    def on_finished(self, record: RunRecord) -> str:
        if record.state == RunState.CANCELLED:
            return (f"{record.description}: cancelled; finished inputs are kept in {self.results_dir} and skipped "
                    "when the batch is run again.")
        if record.state != RunState.DONE:
            return ""
        batch = record.value
        with open(batch.summary[0], newline="") as fh:
            self._show_rows(list(csv.DictReader(fh)))
        n = len(batch.results)
        text = (f"{record.description} of {n} input{'s' if n != 1 else ''}: {batch.tally()} in "
                f"{format_seconds(batch.seconds)}; summary in {batch.summary[0]}")
        if batch.failed:
            first = batch.failed[0]
            text += f". {first.path.name}: {first.error}" + (" (the others in the table)" if len(batch.failed) > 1
                                                              else "")
        return text

    # ------------------------------------------------------------------ results

    def _show_rows(self, rows: list[dict[str, str]]) -> None:
        """Fill the table: failed rows first, on a red background with the error as their tooltip."""
        rows = sorted(rows, key=lambda row: row.get("status") != Status.FAILED)  # stable: the run's order otherwise
        self.rows = rows
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            failed = row.get("status") == Status.FAILED
            for j, column in enumerate(TABLE_COLUMNS):
                value = row.get(column) or ""
                item = QTableWidgetItem(Path(value).name if column == "file" else value)
                if failed:
                    item.setBackground(QBrush(FAILED_BACKGROUND))
                    item.setToolTip(f"{Path(row.get('file') or '').name}: {row.get('error') or 'failed'}")
                self.table.setItem(i, j, item)
        self.table.resizeColumnsToContents()
        self._fit_table()
        self.open_button.enabled = any(row.get("output") for row in rows)

    def _fit_table(self) -> None:
        """Make the table as tall as its rows (up to :data:`TABLE_ROWS`, then it scrolls), so no row hides
        below the fold of a table sized for something else."""
        table = self.table
        shown = max(1, min(table.rowCount(), TABLE_ROWS))
        rows = sum(table.rowHeight(i) for i in range(min(table.rowCount(), shown))) or \
            table.verticalHeader().defaultSectionSize()
        height = (table.horizontalHeader().sizeHint().height() + rows + 2 * table.frameWidth()
                  + table.horizontalScrollBar().sizeHint().height())
        table.setFixedHeight(height)

    def result_rows(self) -> list[tuple[dict[str, str], Path]]:
        """The selected rows (all rows when none is selected) that have a super-resolved file, with its path,
        once per file."""
        chosen = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        rows = [self.rows[i] for i in chosen] if chosen else self.rows
        out: dict[str, dict[str, str]] = {}
        for row in rows:
            if row.get("output") and row.get("status") != Status.FAILED and self.results_dir is not None:
                out.setdefault(row["output"], row)
        return [(row, self.results_dir / name) for name, row in out.items()]

    def result_paths(self) -> list[Path]:
        """The super-resolved files of the selected rows (all rows when none is selected), once each."""
        return [path for _, path in self.result_rows()]

    def _input_scale(self, row: dict[str, str], out_kwargs: dict[str, Any]) -> list[float]:
        """The scale the input of ``row`` opens at (this plugin's reader); from its result's calibration when
        the input is gone (the result's Y and X pixel sizes are the input's divided by the SR scale)."""
        from .._reader import looks_like_stack, stack_layer_data

        source = Path(row.get("file") or "")
        if looks_like_stack(source):
            return [float(v) for v in stack_layer_data(source)[1]["scale"]]
        ndim = len(out_kwargs.get("scale") or ())
        if not ndim or source.is_file():
            return [1.0] * ndim
        factor = int(row.get("scale") or 1)
        units = list(out_kwargs.get("units") or ["pixel"] * ndim)
        return [v * factor if i >= ndim - 2 and units[i] != "pixel" else v
                for i, v in enumerate(float(x) for x in out_kwargs["scale"])]

    def open_results(self, *_: Any) -> list[Any]:
        """Add the result files as image layers: OME / ImageJ stacks with their units (this plugin's reader),
        other images with napari's; each placed as *Super-resolve* places the SR of its input
        (:func:`~napari_kernelgan.layers.sr_transform`), so it overlays the input opened beside it."""
        from .._reader import looks_like_stack, read_stacks

        layers: list[Any] = []
        empty = len(self.viewer.layers) == 0
        rows = self.result_rows()
        if not rows:
            self.say("The chosen rows have no super-resolved file (they failed): choose rows with status ok.")
        for row, path in rows:
            factor = int(row.get("scale") or 1)
            if looks_like_stack(path):
                for data, kwargs, _ in read_stacks(str(path)):
                    kwargs["scale"], kwargs["translate"] = sr_transform(
                        self._input_scale(row, kwargs), [0.0] * len(kwargs["scale"]), factor)
                    added = self.viewer.add_image(data, **kwargs)
                    layers += added if isinstance(added, list) else [added]
            else:
                for layer in self.viewer.open(str(path), plugin="napari"):
                    nd = layer.ndim
                    layer.scale, layer.translate = sr_transform([1.0] * nd, [0.0] * nd, factor)
                    layers.append(layer)
        if layers and empty:
            self.viewer.reset_view()  # the view of an empty viewer shows none of them
        elif layers:
            ensure_visible(self.viewer, layers)
        return layers
