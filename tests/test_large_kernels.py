"""Kernels as large as the optics need (31×31, 41×41): checks, every SR method, kernel maps, files, the napari
reader, the analytic ×4 kernel and the size helpers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from napari_kernelgan import SR_METHODS, super_resolve
from napari_kernelgan._reader import kernel_layer_data, looks_like_kernel, misread_kernel
from napari_kernelgan.errors import BadInputError
from napari_kernelgan.fields import KernelField
from napari_kernelgan.io import read_kernel, write_kernel
from napari_kernelgan.layers import MAX_KERNEL_SIDE, is_kernel, kernel_panel_transform
from napari_kernelgan.physics import degrade, gaussian_kernel, image_psnr
from napari_kernelgan.physics.conventions import analytic_x4, centre_of_mass, support_side, validate_kernel
from napari_kernelgan.vocabulary import KERNEL_SIZE, kernel_size, x4_side
from shared_data import WEIGHTS

USRNET = WEIGHTS / "usrnet_tiny.pth"
FAST = {"zssr": {"iterations": 20, "min_iters": 10, "crop": 32, "width": 8, "depth": 3},
        "usrnet": {"weights": str(USRNET)}}


def wide_kernel(size: int) -> np.ndarray:
    """A broad anisotropic kernel whose tails need ``size`` pixels (σ 4.5 × 3 px)."""
    return gaussian_kernel(size, 4.5, 3.0, 0.4)


@pytest.fixture(scope="module")
def hr() -> np.ndarray:
    return data.camera()[96:224, 160:288].astype(np.float64) / 255


@pytest.mark.parametrize("size", [31, 41])
def test_large_kernels_are_valid_kernels(size):
    k = wide_kernel(size)
    assert support_side(k, 0.99) > KERNEL_SIZE  # 13×13 would lose light
    out = validate_kernel(k)
    assert out.shape == (size, size) and np.allclose(out, k)
    assert size <= MAX_KERNEL_SIDE and is_kernel(k)


@pytest.mark.parametrize("method", ["bicubic", "closed-form", "zssr", "usrnet"])
@pytest.mark.parametrize("size", [31, 41])
def test_every_sr_method_takes_a_large_kernel(method, size, hr):
    assert set(SR_METHODS.names()) <= {"bicubic", "closed-form", "zssr", "usrnet"}
    if method == "usrnet" and not USRNET.is_file():
        pytest.skip(f"USRNet-tiny weights not found at {USRNET}")
    k = wide_kernel(size)
    lr = degrade(hr, k, 2).astype(np.float32)
    res = super_resolve(lr, k, 2, sr_method=method, seed=0, threads=1, **FAST.get(method, {}))
    assert res.image.shape == hr.shape and np.isfinite(res.image).all()
    assert res.kernel.shape == (size, size) and np.allclose(res.kernel, k)
    if method in ("closed-form", "usrnet"):  # the true kernel undoes a blur bicubic interpolation cannot
        bicubic = super_resolve(lr, k, 2, sr_method="bicubic").image
        assert image_psnr(res.image, hr) > image_psnr(bicubic, hr) + 1.0


def test_a_large_kernel_goes_through_the_safeguards(hr):
    k = wide_kernel(31)
    lr = degrade(hr, k, 2).astype(np.float32)
    res = super_resolve(lr, k, 2, safe=True, seed=0, threads=1)
    assert res.image.shape == hr.shape and not res.options.get("fallback")


def test_a_kernel_map_of_large_kernels(hr):
    lr = degrade(hr, wide_kernel(31), 2).astype(np.float32)
    h, w = lr.shape
    kernels = np.stack([gaussian_kernel(31, 2.0), wide_kernel(31)])[None]
    field = KernelField(kernels=kernels, centres_y=[(h - 1) / 2], centres_x=[w / 4, 3 * w / 4],
                        boxes=np.zeros((1, 2, 4), dtype=int), confidence=np.ones((1, 2)), trust=np.ones((1, 2)),
                        global_kernel=wide_kernel(31), image_shape=(h, w))
    res = super_resolve(lr, field, 2, safe=False, seed=0, threads=1)
    assert res.image.shape == hr.shape and res.options["regions"] > 1
    assert field.kernel_at(h // 2, w - 1).shape == (31, 31)
    x4 = field.kernels_for(4)
    assert x4.shape[-2:] == (x4_side(31), x4_side(31))


@pytest.mark.parametrize("suffix", [".mat", ".npy", ".tif"])
@pytest.mark.parametrize("size", [31, 41])
def test_large_kernel_files_round_trip(tmp_path: Path, suffix, size):
    k = wide_kernel(size)
    path = write_kernel(tmp_path / f"psf{suffix}", k)
    back = read_kernel(path)
    assert back.shape == (size, size)
    assert np.allclose(back, k, atol=1e-7 if suffix == ".tif" else 1e-15)
    assert (suffix == ".mat" or looks_like_kernel(path)) and misread_kernel(path) is None  # .mat: always claimed
    data_, kwargs, kind = kernel_layer_data(path)
    assert kind == "image" and data_.shape == (size, size) and np.allclose(data_, k, atol=1e-7)


def test_a_kernel_file_over_the_largest_side_says_so(tmp_path: Path):
    path = tmp_path / "psf.npy"
    np.save(path, gaussian_kernel(MAX_KERNEL_SIDE + 2, 8.0))
    assert not looks_like_kernel(path)
    assert f"at most {MAX_KERNEL_SIDE}×{MAX_KERNEL_SIDE}" in misread_kernel(path)
    with pytest.raises(BadInputError, match="at most"):
        kernel_layer_data(path)


def test_kernel_panels_have_the_same_size_whatever_the_kernel_size():
    class Image:
        data = np.zeros((200, 300))
        scale = (0.5, 0.5)
        translate = (0.0, 0.0)
        rgb = False
        multiscale = False

    small = kernel_panel_transform(Image(), 13)
    large = kernel_panel_transform(Image(), 41)
    assert small[0][0] * 13 == pytest.approx(large[0][0] * 41)
    # Same panel: the kernels' first pixels sit half their pixel inside the same corner.
    assert np.allclose(np.array(small[1]) - small[0][0] / 2, np.array(large[1]) - large[0][0] / 2)


def test_the_analytic_x4_kernel_grows_with_the_x2_kernel(hr):
    assert kernel_size(2) == 13 and kernel_size(4) == x4_side(13) == 37  # the estimators' sizes are unchanged
    k2 = gaussian_kernel(21, 2.5, 1.8, 0.7)
    k4 = analytic_x4(k2)
    assert k4.shape == (x4_side(21), x4_side(21)) == (61, 61)
    assert np.abs(centre_of_mass(k4) - 30).max() < 1e-3
    # Degrading by ×2 twice with k2 equals degrading once by ×4 with k4.
    twice = degrade(degrade(hr, k2, 2), k2, 2)
    once = degrade(hr, k4, 4)
    assert np.abs(twice - once)[8:-8, 8:-8].max() < 2e-3
