"""The *Batch* dock widget: the engine on a folder from disk in the worker thread, its summary as a table,
the results opened as layers, and Cancel."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

import tifffile

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
    widget.table.selectRow(0)  # the failed row: nothing to open, and the widget says why
    assert widget.open_results() == [] and "failed" in widget.status.value
