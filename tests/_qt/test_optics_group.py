"""The optics a file records reach *Estimate kernel*: read into the layers' metadata, shown in its *Optics*
group (empty: unknown), checked as typed, and passed to the estimators that take them (real viewer, Xvfb)."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qt_helpers import PLUGIN
from skimage import data

from napari_kernelgan.optics_hints import HINT_KEYS
from napari_kernelgan.physics import degrade, gaussian_kernel

pytestmark = pytest.mark.gui

OME = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
  <Instrument ID="Instrument:0"><Objective ID="Objective:0" LensNA="1.4" Immersion="Oil" NominalMagnification="63"/>
  </Instrument>
  <Image ID="Image:0">
    <InstrumentRef ID="Instrument:0"/>
    <Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="{w}" SizeY="{h}" SizeC="2" SizeZ="1" SizeT="1"
            PhysicalSizeX="0.065" PhysicalSizeY="0.065">
      <Channel ID="Channel:0:0" SamplesPerPixel="1" EmissionWavelength="520" PinholeSize="50"
               AcquisitionMode="LaserScanningConfocalMicroscopy"/>
      <Channel ID="Channel:0:1" SamplesPerPixel="1" EmissionWavelength="610"/>
      <TiffData/>
    </Pixels>
  </Image>
</OME>"""


@pytest.fixture
def ome_file(tmp_path):
    hr = data.camera()[100:292, 100:292].astype(float)
    lr = np.clip(degrade(hr, gaussian_kernel(13, 1.2, 1.2, 0.0), 2), 0, 255).astype(np.uint8)
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(path, np.stack([lr, lr]), description=OME.format(h=lr.shape[0], w=lr.shape[1]).encode(),
                     metadata=None)
    return path


def on(label) -> bool:
    """Whether a label is set to show (``visible`` also needs its window on screen)."""
    return not getattr(label, "native", label).isHidden()


def shown(widget) -> dict[str, str]:
    return {k: w.value for k, w in widget.optics.widgets.items()}


def test_optics_group_is_filled_checked_and_passed(make_napari_viewer, dock, wait_idle, ome_file):
    viewer = make_napari_viewer()
    c0, c1 = viewer.open(str(ome_file), plugin=PLUGIN)
    assert c0.metadata["optics"]["wavelength_um"] == pytest.approx(0.52)
    assert c1.metadata["optics"]["wavelength_um"] == pytest.approx(0.61) and c1.metadata["channel"] == 1
    assert set(c0.metadata["optics"]) == set(HINT_KEYS)
    widget = dock(viewer, "Estimate kernel")
    assert not set(HINT_KEYS) & set(widget.options.widgets)  # not twice: the group holds them
    widget.image.value = c0
    assert shown(widget) == {"na": "1.4", "wavelength_um": "0.52", "n_immersion": "1.515", "modality": "confocal",
                             "pinhole_au": "1.75144", "pixel_um": "0.065"}
    widget.image.value = c1
    assert shown(widget) == {"na": "1.4", "wavelength_um": "0.61", "n_immersion": "1.515", "modality": "",
                             "pinhole_au": "", "pixel_um": "0.065"}  # empty: the file does not say

    widget.estimator.value = "edges"  # takes none of them: the fields are off
    assert not any(w.enabled for w in widget.optics.widgets.values())
    widget.estimator.value = "optics"
    assert all(w.enabled for w in widget.optics.widgets.values())
    assert [w.name for w in widget.options.main] == []  # its optics options are in the group, not the form

    field = widget.optics.widgets["wavelength_um"]
    field.value = "610"  # nanometres: refused in place, and Run is off with the reason under it
    assert "nanometres" in widget.optics.errors["wavelength_um"] and "border" in field.native.styleSheet()
    assert not widget.run_button.enabled and "nanometres" in widget.blocked.value and on(widget.blocked)
    field.value = "0.6"  # the user's value wins over the file's
    assert "wavelength_um" not in widget.optics.errors and field.native.styleSheet() == ""
    assert widget.run_button.enabled and not on(widget.blocked)
    widget.device.value = "cpu"
    widget.optics.widgets["pixel_um"].value = ""  # unknown
    widget.run_button.native.click()
    wait_idle(widget)
    meta = viewer.layers["cells c1 kernel ×2"].metadata
    assert meta["method"] == "optics"
    assert meta["options"]["na"] == 1.4 and meta["options"]["wavelength_um"] == 0.6
    assert meta["options"]["n_immersion"] == 1.515 and meta["options"]["pixel_um"] is None
    # the result layers added do not reset what was typed for this image; choosing another layer fills it anew
    assert field.value == "0.6" and widget.optics.widgets["pixel_um"].value == ""
    widget.image.value = c0
    assert shown(widget)["wavelength_um"] == "0.52"


def test_na_above_the_immersion_index_is_refused_in_place(make_napari_viewer, dock, ome_file):
    viewer = make_napari_viewer()
    c0, _ = viewer.open(str(ome_file), plugin=PLUGIN)
    widget = dock(viewer, "Estimate kernel")
    widget.estimator.value = "optics"
    widget.image.value = c0
    group = widget.optics
    assert group.title() == "Optics" and widget.run_button.enabled
    group.widgets["n_immersion"].value = "water"
    group.widgets["na"].value = "1.6"
    assert not widget.run_button.enabled
    for key in ("na", "n_immersion"):  # both fields at fault are marked, their tooltips name both numbers
        tip = group.widgets[key].native.toolTip()
        assert "1.6" in tip and "1.333" in tip and "border" in group.widgets[key].native.styleSheet()
    assert tip == ("NA 1.6 must be below the immersion's refractive index 1.333 (NA = n sin θ): lower the NA, or "
                   "give the immersion index for this objective.")
    assert on(group.reasons["na"]) and group.reasons["na"].text() == tip  # said once, under the NA
    assert not on(group.reasons["n_immersion"])
    assert widget.blocked.value == f"Estimate kernel is off until the optics are fixed: {tip}"
    assert widget.run_button.tooltip == widget.blocked.value
    # no immersion given: the estimators take oil's 1.515, which 1.6 exceeds too
    group.widgets["n_immersion"].value = ""
    assert not widget.run_button.enabled and "oil's 1.515" in group.widgets["na"].native.toolTip()
    # a pinhole with a widefield is refused as a pair
    group.widgets["na"].value = "1.2"
    group.widgets["modality"].value = "widefield"
    assert not widget.run_button.enabled
    assert group.errors["pinhole_au"] == group.errors["modality"] == (
        "A pinhole (1.75144 AU) is for a confocal, but the modality is widefield: clear the pinhole, or make the "
        "modality confocal.")
    # Restore defaults: back to what the file says, and Run is on again
    group.restore_button.native.click()
    assert shown(widget) == {"na": "1.4", "wavelength_um": "0.52", "n_immersion": "1.515", "modality": "confocal",
                             "pinhole_au": "1.75144", "pixel_um": "0.065"}
    assert widget.run_button.enabled and not group.errors and not on(widget.blocked)
    # an estimator that takes no optics is not held back by them
    group.widgets["na"].value = "1.6"
    assert not widget.run_button.enabled
    widget.estimator.value = "edges"
    assert widget.run_button.enabled and group.widgets["na"].native.styleSheet() == ""
    # a layer without metadata: Restore defaults empties the fields
    layer = viewer.add_image(np.zeros((64, 64), np.float32), name="plain")
    widget.image.value = layer
    widget.estimator.value = "optics"
    group.widgets["na"].value = "1.3"
    group.restore_button.native.click()
    assert set(shown(widget).values()) == {""}


def test_a_refusal_says_what_to_change_not_failed(make_napari_viewer, dock, wait_idle, notes):
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((20, 20)), name="tiny")
    widget = dock(viewer, "Estimate kernel")
    widget.estimator.value = "edges"
    widget.device.value = "cpu"
    widget.threads.value = "many"  # refused before starting
    widget.run_button.native.click()
    assert widget.status.value.startswith("Kernel of tiny was not run: threads must be a positive whole number")
    widget.threads.value = ""
    widget.run_button.native.click()  # refused by the estimator, in the worker
    wait_idle(widget)
    status = widget.status.value
    assert status.startswith("Kernel of tiny was not run: the image is 20×20 pixels") and "failed" not in status
    assert "32×32" in status  # what it needs
    [refusal] = notes.since("error")[-1:]
    assert refusal.message == status and getattr(refusal, "exception", None) is None  # no traceback


def test_kernel_map_takes_the_optics_of_the_layer(make_napari_viewer, dock, wait_idle, ome_file):
    viewer = make_napari_viewer()
    c0, _ = viewer.open(str(ome_file), plugin=PLUGIN)
    widget = dock(viewer, "Kernel map")
    widget.image.value = c0
    widget.estimator.value = "optics"
    assert not set(HINT_KEYS) & set(widget.options.widgets)  # the group holds them, not the options form
    assert shown(widget)["na"] == "1.4" and shown(widget)["pixel_um"] == "0.065"
    widget.optics.widgets["na"].value = "1.7"  # above oil's index: refused as in Estimate kernel
    assert not widget.run_button.enabled and "1.515" in widget.blocked.value
    widget.optics.widgets["na"].value = "1.3"
    widget.tile.value, widget.overlap.value, widget.device.value = 48, 8, "cpu"
    widget.run_button.native.click()
    wait_idle(widget, 180)
    field = widget.record.value
    assert field.method == "optics" and field.options["na"] == 1.3 and field.options["pixel_um"] == 0.065
    assert field.options["wavelength_um"] == pytest.approx(0.52) and field.options["modality"] == "confocal"


def test_batch_shows_what_the_files_share_and_gives_what_is_typed(make_napari_viewer, dock, wait_idle, ome_file,
                                                                  tmp_path):
    import json

    viewer = make_napari_viewer()
    widget = dock(viewer, "Batch")
    widget.inputs.value = str(ome_file)
    widget.out.value = str(tmp_path / "out")
    widget.estimator.value = "optics"
    widget.sr_method.value = "closed-form"
    widget.per_channel.value = True
    widget.threads.value = "1"
    hints = widget.read_input_optics()
    # the channels differ in emission and modality: those are left to each file's channel
    assert shown(widget) == {"na": "1.4", "wavelength_um": "", "n_immersion": "1.515", "modality": "",
                             "pinhole_au": "", "pixel_um": "0.065"}
    assert hints["na"] == 1.4 and hints["wavelength_um"] is None
    widget.optics.widgets["na"].value = "1.6"
    assert not widget.run_button.enabled and "1.6" in widget.blocked.value
    widget.optics.widgets["na"].value = "1.3"
    assert widget.run_button.enabled and widget.optics.changed_values() == {"na": 1.3}
    widget.run_button.clicked.emit()
    wait_idle(widget, 180)
    assert [r["status"] for r in widget.rows] == ["ok", "ok"], widget.status.value
    for channel, emission in ((0, 0.52), (1, 0.61)):
        record = json.loads((tmp_path / "out" / f"cells_c{channel}_kernel.json").read_text())
        said = record["optics_hints"]
        assert said["na"] == {"value": 1.3, "source": "given", "used": True}
        assert said["wavelength_um"]["value"] == pytest.approx(emission) and said["wavelength_um"]["source"] == "file"
        assert record["options"]["na"] == 1.3
