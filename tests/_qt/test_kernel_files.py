"""Kernel files through napari's File → Open / Save: round trip, placement, and the reason for a refusal."""
from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from qt_helpers import PLUGIN, in_view, world_extent

from napari_kernelgan.errors import BadInputError
from napari_kernelgan.io import write_kernel
from napari_kernelgan.vocabulary import LayerRole

pytestmark = pytest.mark.gui


def test_kernel_files_round_trip_and_land_beside_the_image(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "tissue")
    image = viewer.layers["tissue LR"]
    image.scale = (0.5, 0.5)
    true_k = viewer.layers["tissue LR true kernel ×2"]
    viewer.reset_view()
    viewer.scene.camera.zoom *= 3  # zoomed on the image
    opened = []
    for suffix in (".mat", ".npy", ".tif"):
        path = tmp_path / f"true_kernel{suffix}"
        assert true_k.save(str(path), plugin=PLUGIN) == [str(path)]
        [layer] = viewer.open(str(path), plugin=PLUGIN)
        opened.append(layer)
        assert layer.name.startswith("true_kernel") and layer.metadata["orientation"] == "correlation"
        assert layer.metadata["role"] == LayerRole.KERNEL_FILE and layer.metadata["source_file"] == str(path)
        assert np.allclose(layer.data, true_k.data, atol=1e-6)
        # Beside the image (a second column of kernel panels), not a 13-pixel square under its corner.
        ext, img = world_extent(layer), world_extent(image)
        assert ext[0, 1] > img[1, 1] and img[0, 0] <= ext[0, 0] and ext[1, 0] <= img[1, 0]
        assert (ext[1, 0] - ext[0, 0]) > 0.2 * (img[1, 0] - img[0, 0])
        assert in_view(viewer, layer)
    # Each file gets its own panel.
    assert len({tuple(np.round(x.translate, 6)) for x in opened}) == 3


@pytest.mark.parametrize("content, reason", [
    (b"MATLAB 5.0 MAT-file, this is not really one", "could not read kernel file"),
    (np.ones((64, 64)) / 4096, "odd size"),
])
def test_a_bad_mat_file_says_why(make_napari_viewer, tmp_path, notes, content, reason):
    viewer = make_napari_viewer()
    path = tmp_path / "measured.mat"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        write_kernel(path, content)
    with pytest.raises(BadInputError, match=reason):
        viewer.open(str(path), plugin=PLUGIN)
    [error] = notes.errors
    assert error.message.startswith("Cannot open measured.mat as a kernel:") and reason in error.message
    assert len(viewer.layers) == 0


@pytest.mark.parametrize("name, array, message", [
    ("psf.npy", np.ones((12, 12)), "psf.npy is 12×12: an SR kernel must have an odd side, so that it has a centre "
                                   "pixel; crop it to 11×11 or pad it to 13×13"),
    ("bead_psf.npy", np.ones((9, 15, 15)), "bead_psf.npy is 9×15×15: an SR kernel is a 2-D image; save one plane "
                                           "of it (the in-focus plane of a 3-D PSF), or make the kernel from the bead "
                                           "stack with its pixel size ('sr --kernel' or "
                                           "physics.measured.psf_to_kernel)"),
    ("psf_kernel.tif", np.ones((14, 15), np.float32), "psf_kernel.tif is 14×15: an SR kernel must have an odd side"),
    ("kernel_x2.npy", -np.ones((13, 13)), "kernel_x2.npy is 13×13: a blur kernel is non-negative"),
])
def test_a_file_meant_as_a_kernel_says_what_is_wrong(make_napari_viewer, tmp_path, notes, name, array, message):
    import tifffile

    from napari_kernelgan._reader import get_reader

    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, array)
    else:
        tifffile.imwrite(path, array)
    assert get_reader(str(path)) is not None  # claimed, to say why, not napari's generic refusal
    viewer = make_napari_viewer()
    with pytest.raises(BadInputError, match=re.escape(message)):
        viewer.open(str(path), plugin=PLUGIN)
    [error] = notes.errors
    assert error.message.startswith(message)
    assert len(viewer.layers) == 0


@pytest.mark.parametrize("size", [31, 41])
def test_a_large_kernel_goes_to_files_and_back_through_napari(make_napari_viewer, tmp_path, size):
    from napari_kernelgan.physics import gaussian_kernel

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "tissue")
    image = viewer.layers["tissue LR"]
    true_k = viewer.layers["tissue LR true kernel ×2"]
    k = gaussian_kernel(size, 4.5, 3.0, 0.4)  # a PSF that 13×13 cannot hold
    source = viewer.add_image(k.astype(np.float32), name=f"psf {size}")
    opened = []
    for suffix in (".mat", ".npy", ".tif"):
        path = tmp_path / f"psf_{size}{suffix}"
        assert source.save(str(path), plugin=PLUGIN) == [str(path)]
        [layer] = viewer.open(str(path), plugin=PLUGIN)
        opened.append(layer)
        assert layer.data.shape == (size, size) and layer.metadata["role"] == LayerRole.KERNEL_FILE
        assert np.allclose(layer.data, k, atol=1e-6)
        # Drawn in a panel beside the image, as large as the 13×13 true kernel's panel.
        ext, img, small = world_extent(layer), world_extent(image), world_extent(true_k)
        assert ext[0, 1] > img[1, 1] and img[0, 0] <= ext[0, 0] + 1e-9 and ext[1, 0] <= img[1, 0] + 1e-9
        assert ext[1, 0] - ext[0, 0] == pytest.approx(small[1, 0] - small[0, 0], rel=1e-6)
        assert in_view(viewer, layer)
    # Saved again from the opened layer, the kernel is the same.
    again = tmp_path / f"again_{size}.npy"
    opened[0].save(str(again), plugin=PLUGIN)
    assert np.allclose(np.load(again), k, atol=1e-6)
