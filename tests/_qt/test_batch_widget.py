"""The *Batch* dock widget: the engine on a folder from disk in the worker thread, its summary as a table,
the results opened as layers, and Cancel."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import tifffile
from qt_helpers import in_view

from napari_kernelgan.io import write_image
from napari_kernelgan.physics import degrade, gaussian_kernel

pytestmark = pytest.mark.gui


def _frame(i: int) -> np.ndarray:
    from skimage import data

    hr = data.camera()[60 + 40 * i: 188 + 40 * i, 80:208].astype(float)
    return np.clip(degrade(hr, gaussian_kernel(13, 1.6, 1.0, 0.3), 2), 0, 255)


def _widget(make_napari_viewer, dock, folder, out):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Batch")
    widget.inputs.value = str(folder)
    widget.out.value = str(out)
    widget.estimator.value = "kernelnet"
    widget.sr_method.value = "closed-form"
    widget.threads.value = "1"
    return viewer, widget


def test_batch_runs_a_folder_shows_the_summary_and_opens_results(make_napari_viewer, dock, wait_idle, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    write_image(folder / "a.png", _frame(0).astype(np.uint8))
    tifffile.imwrite(folder / "b.tif", (_frame(1) * 100).astype(np.uint16)[None].repeat(2, 0), imagej=True,
                     resolution=(1 / 0.325, 1 / 0.325), metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"})
    viewer, widget = _widget(make_napari_viewer, dock, folder, out)
    widget.run_button.clicked.emit()
    wait_idle(widget)
    assert [r["status"] for r in widget.rows] == ["ok", "ok"]
    assert widget.table.rowCount() == 2 and widget.table.item(1, 0).text() == "b.tif"
    assert (out / "a_sr_x2_closed-form.png").is_file() and (out / "b_sr_x2_closed-form.tif").is_file()
    assert "Batch of 2 inputs: 2 done, 0 skipped" in widget.status.value  # the folder counted by its files
    layers = widget.open_results()
    assert [la.name for la in layers] == ["a_sr_x2_closed-form", "b_sr_x2_closed-form"]
    assert tuple(layers[1].scale) == pytest.approx((0.5, 0.1625, 0.1625))  # the stack at its physical size
    assert all(in_view(viewer, layer) for layer in layers)  # the view of the empty viewer was reset to them
    # Placed as Super-resolve places the SR of the same input (the −½ HR-pixel offset): each overlays its input.
    from napari_kernelgan.layers import sr_layer_data
    from napari_kernelgan.types import SRResult

    for name, reader in (("a.png", "napari"), ("b.tif", "napari-kernelgan")):
        [source] = viewer.open(str(folder / name), plugin=reader)
        result = next(la for la in layers if la.name.startswith(name[0] + "_sr"))
        shown = SRResult(np.asarray(result.data), 2, "closed-form", np.ones((1, 1)), 0.0, "cpu")
        _, expected, _ = sr_layer_data(source, shown)
        assert list(result.scale) == pytest.approx(expected["scale"])
        assert list(result.translate) == pytest.approx(expected["translate"])
    assert tuple(layers[0].translate) == pytest.approx((-0.25, -0.25))
    assert tuple(layers[1].translate) == pytest.approx((0.0, -0.08125, -0.08125))


def test_cancel_stops_the_batch_and_keeps_finished_inputs(make_napari_viewer, dock, wait_idle, tmp_path,
                                                          monkeypatch):
    import threading

    import napari_kernelgan.batch as batch

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"c{i}.png", _frame(i).astype(np.uint8))
    started = threading.Event()
    original = batch.process_input

    def slow(path, cfg, **kwargs):  # the second input waits until Cancel is clicked
        if path.name == "c1.png":
            started.set()
            kwargs["cancel"].wait(30)
        return original(path, cfg, **kwargs)

    monkeypatch.setattr(batch, "process_input", slow)
    viewer, widget = _widget(make_napari_viewer, dock, folder, out)
    widget.run_button.clicked.emit()
    assert started.wait(60)
    widget.cancel_button.clicked.emit()
    wait_idle(widget)
    assert "cancelled" in widget.status.value
    assert (out / "c0_manifest.json").is_file() and not list(out.glob("c1*")) and not list(out.glob("c2*"))
    assert widget.rows == []


def test_a_bad_file_is_named_with_its_reason(make_napari_viewer, dock, wait_idle, tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    write_image(folder / "good.png", _frame(0).astype(np.uint8))
    (folder / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
    viewer, widget = _widget(make_napari_viewer, dock, folder, out)
    widget.run_button.clicked.emit()
    wait_idle(widget)
    assert "1 done, 0 skipped (finished before), 1 failed" in widget.status.value
    assert "broken.tif: could not read image broken.tif" in widget.status.value
    assert widget.table.item(0, 0).text() == "broken.tif" and "could not read" in widget.table.item(0, 4).text()
    assert widget.table.item(0, 0).background().color().red() > widget.table.item(0, 0).background().color().green()
    assert "could not read image broken.tif" in widget.table.item(0, 0).toolTip()
    widget.table.selectRow(0)  # the failed row: nothing to open, and the widget says why
    assert widget.open_results() == [] and "failed" in widget.status.value


def test_the_table_fits_its_rows_and_failed_rows_come_first(make_napari_viewer, dock, qtbot):
    from napari_kernelgan._qt.batch_widget import TABLE_ROWS

    viewer = make_napari_viewer(show=True)
    widget = dock(viewer, "Batch")
    rows = [{"file": f"/in/f{i}.png", "status": "ok", "output": f"f{i}_sr.png"} for i in range(3)]
    rows.append({"file": "/in/broken.tif", "status": "failed", "error": "could not read image broken.tif"})
    widget._show_rows(rows)
    qtbot.wait(50)
    table = widget.table
    assert [table.item(i, 0).text() for i in range(4)] == ["broken.tif", "f0.png", "f1.png", "f2.png"]
    # Every row in sight: the last one's rectangle lies inside the table's viewport.
    assert table.visualItemRect(table.item(3, 0)).bottom() <= table.viewport().height()
    short = table.height()
    widget._show_rows(rows * 5)  # 20 rows: the table stops growing and scrolls
    qtbot.wait(50)
    assert short < table.height() and table.visualItemRect(table.item(TABLE_ROWS - 1, 0)).bottom() <= \
        table.viewport().height() < table.visualItemRect(table.item(19, 0)).bottom()
