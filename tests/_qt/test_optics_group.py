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
    field.value = "610"  # nanometres: refused in place, and the run does not start
    assert "nanometres" in widget.optics.errors["wavelength_um"] and "border" in field.native.styleSheet()
    widget.device.value = "cpu"
    widget.run_button.native.click()
    assert not widget.running and "nanometres" in widget.status.value
    field.value = "0.6"  # the user's value wins over the file's
    assert "wavelength_um" not in widget.optics.errors and field.native.styleSheet() == ""
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
