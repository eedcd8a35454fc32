"""The samples as napari's sample menu opens them: a sample with optics comes calibrated (scale in µm, optics in the
metadata) and fills *Estimate kernel*'s Optics group (real viewer, Xvfb)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qt_helpers import PLUGIN

pytestmark = pytest.mark.gui


def test_noisy_fluorescence_opens_with_its_pixel_size_and_optics(make_napari_viewer, dock):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "fluorescence-noisy")
    image = viewer.layers["noisy fluorescence LR"]
    kernel = viewer.layers["noisy fluorescence LR true kernel ×2"]
    np.testing.assert_allclose(image.scale, [0.196, 0.196])
    assert [str(u) for u in image.units] == ["micrometer", "micrometer"]
    assert image.metadata["optics"]["na"] == 1.3 and image.metadata["optics"]["pixel_um"] == 0.196
    assert kernel.data.shape == (75, 75)
    # the true kernel is drawn beside the image in the same world units
    assert kernel.translate[1] > image.data.shape[1] * image.scale[1]
    # and in the image's units: layers of mixed units make napari drop them all, with a warning
    assert [str(u) for u in kernel.units] == ["micrometer", "micrometer"]
    widget = dock(viewer, "Estimate kernel")
    widget.image.value = image
    shown = {k: w.value for k, w in widget.optics.widgets.items()}
    assert shown == {"na": "1.3", "wavelength_um": "0.52", "n_immersion": "1.515", "modality": "widefield",
                     "pinhole_au": "", "pixel_um": "0.196"}


def test_tissue_opens_uncalibrated(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "tissue")
    image = viewer.layers["tissue LR"]
    np.testing.assert_allclose(image.scale, [1.0, 1.0])
    assert "optics" not in image.metadata
