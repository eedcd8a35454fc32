"""Result → layer geometry and metadata (no Qt), sample data, and kernel file reading/writing."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_kernelgan import io
from napari_kernelgan._reader import get_reader, looks_like_kernel, read_kernels
from napari_kernelgan._sample_data import astronaut, fluorescence_stack
from napari_kernelgan._writer import is_kernel_layer, write_kernel_layer
from napari_kernelgan.errors import BadInputError
from napari_kernelgan.layers import (
    KERNEL_SLOTS,
    dmap_layer_name,
    estimate_layer_data,
    is_kernel,
    kernel_panel_transform,
    sr_layer_data,
    sr_transform,
)
from napari_kernelgan.physics import degrade, gaussian_kernel
from napari_kernelgan.physics.kernels import gaussian_kernel as _gaussian
from napari_kernelgan.samples import TISSUE
from napari_kernelgan.types import KernelEstimate, SRResult
from napari_kernelgan.vocabulary import LayerRole


def _layer(data, *, scale=None, translate=None, rgb=False, name="img", units=None):
    nd = data.ndim - (1 if rgb else 0)
    layer = SimpleNamespace(name=name, data=data, rgb=rgb, multiscale=False,
                            scale=list(scale or [1.0] * nd), translate=list(translate or [0.0] * nd),
                            colormap=SimpleNamespace(name="gray"), contrast_limits=[0.0, 255.0], gamma=1.0)
    if units is not None:
        layer.units = units
    return layer


def _extent(shape, scale, translate):
    """World coordinates of the outer pixel edges along each axis."""
    s, t = np.asarray(scale, float), np.asarray(translate, float)
    return np.stack([t - 0.5 * s, t + (np.asarray(shape) - 0.5) * s])


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_sr_transform_maps_pixel_centres(factor):
    scale, translate = [0.5, 2.0], [10.0, -3.0]
    new_scale, new_translate = sr_transform(scale, translate, factor)
    # HR pixel j is centred at (j + 0.5)/s - 0.5 in LR data coordinates.
    for j in range(3 * factor):
        lr_coord = (j + 0.5) / factor - 0.5
        expected = np.asarray(translate) + np.asarray(scale) * lr_coord
        assert np.allclose(np.asarray(new_translate) + np.asarray(new_scale) * j, expected)
    assert np.allclose(_extent((5 * factor, 7 * factor), new_scale, new_translate),
                       _extent((5, 7), scale, translate))


def _estimate(h, w, n=None, scale=2):
    k = gaussian_kernel(13, 2.0, 1.0, 0.3)
    dmap = np.random.default_rng(0).random((n, h, w) if n else (h, w)).astype(np.float32)
    return KernelEstimate(kernel=k, dmap=dmap, loss_history={}, iterations=10, elapsed=1.0, device="cpu",
                          seed=3, method="kernelgan", options={"preset": "fast"}, scale=scale)


def test_estimate_layers_overlay_the_image():
    layer = _layer(np.zeros((40, 60), np.uint8), scale=[0.2, 0.3], translate=[5.0, 7.0])
    tuples = estimate_layer_data(layer, _estimate(40, 60, scale=4))
    names = [t[1]["name"] for t in tuples]
    assert names == ["img kernel ×2", "img kernel ×4", "img discriminator map (D-map)"]
    assert names[2] == dmap_layer_name("img")
    dmap, kw, _ = tuples[2]
    assert kw["metadata"]["role"] == LayerRole.DMAP and "discriminator" in kw["metadata"]["description"]
    assert np.allclose(_extent(dmap.shape, kw["scale"], kw["translate"]),
                       _extent((40, 60), layer.scale, layer.translate))
    k2, k2kw, _ = tuples[0]
    assert k2kw["metadata"]["orientation"] == "correlation" and k2kw["metadata"]["scale"] == 2
    assert k2kw["metadata"]["role"] == LayerRole.KERNEL and k2kw["metadata"]["source"] == "img"
    assert np.allclose(k2kw["metadata"]["kernel"], k2)
    assert tuples[1][0].shape == (37, 37) and tuples[1][1]["metadata"]["scale"] == 4
    # The kernels are drawn beside the image, not over it.
    for k, kkw, _ in tuples[:2]:
        ext = _extent(k.shape, kkw["scale"], kkw["translate"])
        assert ext[0, 1] > _extent((40, 60), layer.scale, layer.translate)[1, 1]


def test_estimate_layers_for_slices_and_stacks():
    stack = _layer(np.zeros((3, 4, 40, 50), np.uint16), scale=[2.0, 1.5, 0.1, 0.1], translate=[1, 2, 3, 4])
    one = estimate_layer_data(stack, _estimate(40, 50), slice_index=(1, 2))
    dmap, kw, _ = one[-1]
    assert dmap.shape == (1, 1, 40, 50)
    assert np.allclose(kw["translate"], [1 + 2.0 * 1, 2 + 1.5 * 2, 3, 4])
    whole = estimate_layer_data(stack, _estimate(40, 50, n=12))
    dmap, kw, _ = whole[-1]
    assert dmap.shape == (3, 4, 40, 50) and kw["scale"] == stack.scale
    assert whole[0][1]["metadata"]["slice"] == "stack"


def test_sr_layer_rgb_and_slice():
    rgb = _layer(np.zeros((20, 30, 3), np.uint8), rgb=True, scale=[2.0, 2.0])
    result = SRResult(image=np.zeros((40, 60, 3), np.uint8), scale=2, method="bicubic",
                      kernel=gaussian_kernel(13, 1.0), elapsed=0.1, device="cpu")
    data, kw, _ = sr_layer_data(rgb, result)
    assert kw["name"] == "img SR×2 (bicubic)" and kw["rgb"] is True
    assert np.allclose(kw["scale"], [1.0, 1.0]) and np.allclose(kw["translate"], [-0.5, -0.5])
    stack = _layer(np.zeros((5, 20, 30), np.float32))
    result = SRResult(image=np.zeros((60, 90), np.float32), scale=3, method="closed-form",
                      kernel=gaussian_kernel(13, 1.0), elapsed=0.1, device="cpu")
    data, kw, _ = sr_layer_data(stack, result, slice_index=(4,))
    assert data.shape == (1, 60, 90) and np.isclose(kw["translate"][0], 4.0)
    assert kw["colormap"] == "gray" and kw["metadata"]["sr_method"] == "closed-form"


def test_samples_are_the_documented_degradation(tissue_sample):
    (lr, kw, kind), (k, kkw, _) = tissue_sample
    from skimage import data

    assert kind == "image" and lr.dtype == np.uint8 and lr.shape == (256, 256, 3)
    # The documented kernel: σ 2.2 and 0.9 px along axes rotated by 30°.
    truth = _gaussian(13, 2.2, 0.9, np.deg2rad(30.0))
    assert TISSUE.sigma == (2.2, 0.9) and TISSUE.theta_deg == 30.0
    assert np.allclose(k, truth, atol=1e-7)
    hr = data.immunohistochemistry().astype(float)
    expected = np.clip(np.round(degrade(hr, truth, 2)), 0, 255)
    assert np.array_equal(lr, expected.astype(np.uint8))
    assert np.allclose(kw["metadata"]["true_kernel"]["kernel"], k, atol=1e-7)
    assert kkw["name"] == "tissue LR true kernel ×2" and kkw["metadata"]["orientation"] == "correlation"
    rgb = astronaut()
    assert rgb[0][0].shape == (256, 256, 3) and rgb[0][1]["rgb"] is True
    stack = fluorescence_stack()
    assert stack[0][0].shape == (8, 256, 256) and stack[0][0].dtype == np.uint16


@pytest.mark.parametrize("suffix", [".mat", ".npy", ".tif"])
def test_kernel_writer_reader_round_trip(tmp_path, suffix):
    k = gaussian_kernel(13, 2.0, 1.0, 0.5)
    path = tmp_path / f"estimate_kernel{suffix}"
    meta = {"name": "k", "metadata": {"orientation": "correlation"}}
    written = write_kernel_layer(str(path), k.astype(np.float32), meta)
    assert written == [str(path)] and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    reader = get_reader(str(path))
    assert reader is not None
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image" and kwargs["name"] == "estimate_kernel"
    assert np.allclose(data, k, atol=1e-6) and kwargs["metadata"]["orientation"] == "correlation"


def test_reader_leaves_images_alone_and_says_why_a_small_file_is_no_kernel(tmp_path):
    from napari_kernelgan._reader import misread_kernel, read_kernels, read_plain_tiffs
    from napari_kernelgan.errors import BadInputError

    big = np.random.default_rng(0).random((256, 256)).astype(np.float32)
    np.save(tmp_path / "big_kernel.npy", big)
    io.write_image(tmp_path / "big_kernel.tif", big)
    assert get_reader(str(tmp_path / "big_kernel.npy")) is None  # an image: napari's
    assert get_reader(str(tmp_path / "big_kernel.tif")) is read_plain_tiffs  # a TIFF, read plainly
    assert get_reader(str(tmp_path / "missing_kernel.npy")) is None
    # Small files named as kernels are claimed, to say what is wrong with them.
    np.save(tmp_path / "image_kernel.npy", big[:64, :64])
    np.save(tmp_path / "signed_kernel.npy", np.full((5, 5), -1.0))
    for name, said in (("image_kernel.npy", "image_kernel.npy is 64×64: an SR kernel must have an odd side"),
                       ("signed_kernel.npy", "signed_kernel.npy is 5×5: a blur kernel is non-negative")):
        path = tmp_path / name
        assert not looks_like_kernel(path) and misread_kernel(path).startswith(said)
        assert get_reader(str(path)) is read_kernels
        with pytest.raises(BadInputError, match=said):
            read_kernels(str(path))
    # Not named as a kernel: never claimed as one.
    np.save(tmp_path / "crop.npy", np.ones((12, 12)))
    assert misread_kernel(tmp_path / "crop.npy") is None and get_reader(str(tmp_path / "crop.npy")) is None


def test_writer_keeps_plain_images_plain(tmp_path):
    img = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    [out] = write_kernel_layer(str(tmp_path / "plain.npy"), img, {"name": "plain", "metadata": {}})
    assert np.array_equal(np.load(out), img)
    with pytest.raises(ValueError, match="not a 2-D kernel"):
        write_kernel_layer(str(tmp_path / "plain.mat"), img, {"name": "plain", "metadata": {}})


def test_result_layers_carry_the_input_units():
    stack = _layer(np.zeros((3, 40, 50), np.uint16), scale=[2.0, 0.1, 0.1], units=("um", "nm", "nm"))
    tuples = estimate_layer_data(stack, _estimate(40, 50), slice_index=(1,))
    assert tuples[0][1]["units"] == ["nm", "nm"]  # a 2-D kernel panel: the image axes' units
    assert tuples[-1][1]["units"] == ["um", "nm", "nm"]  # the D-map on its slice
    result = SRResult(image=np.zeros((80, 100), np.uint16), scale=2, method="bicubic",
                      kernel=gaussian_kernel(13, 1.0), elapsed=0.1, device="cpu")
    assert sr_layer_data(stack, result, slice_index=(1,))[1]["units"] == ["um", "nm", "nm"]
    assert "units" not in estimate_layer_data(_layer(np.zeros((40, 50))), _estimate(40, 50))[0][1]


def test_kernel_panels_fill_a_column_then_start_another():
    image = _layer(np.zeros((90, 60)), scale=[1.0, 1.0])
    (s0, t0), (s3, t3) = kernel_panel_transform(image, 13, 0), kernel_panel_transform(image, 13, KERNEL_SLOTS)
    assert np.allclose(s0, s3) and np.isclose(t0[0], t3[0])  # same row
    assert t3[1] - t0[1] == pytest.approx(13 * s0[1] + 0.04 * 90)  # one panel and a gap further right


def test_is_kernel_is_one_rule():
    k = gaussian_kernel(13, 1.5)
    assert is_kernel(k) and is_kernel((100 * k).astype(np.uint16))  # content alone: small, odd, non-negative
    assert not is_kernel(np.ones((12, 12))) and not is_kernel(np.ones((77, 77))) and not is_kernel(-k)
    assert not is_kernel(np.full((13, 13), np.nan)) and not is_kernel(np.zeros((13, 13)))
    assert not is_kernel(np.ones((13, 13, 3)), rgb=True) and not is_kernel(np.ones((5, 13, 13)))
    # A role decides before content: a kernel role is one, another result role is not.
    assert is_kernel(np.ones((12, 12)), {"role": str(LayerRole.KERNEL_FILE)})
    assert not is_kernel(k, {"role": str(LayerRole.DMAP)})
    assert is_kernel_layer(k, {"metadata": {}}) and not is_kernel_layer(k, {"metadata": {}, "rgb": True})


def test_reader_claims_every_mat_file_and_says_why_it_cannot_read_one(tmp_path):
    corrupt = tmp_path / "corrupt.mat"
    corrupt.write_bytes(b"not a MAT file at all")
    big = tmp_path / "big.mat"
    io.write_kernel(big, np.ones((64, 64)))
    for path, reason in ((corrupt, "could not read kernel file corrupt.mat"), (big, "odd size")):
        reader = get_reader(str(path))
        assert reader is read_kernels  # claimed, so napari does not answer "refused the file"
        with pytest.raises(BadInputError, match=reason):
            reader(str(path))
    assert get_reader(str(tmp_path / "missing.mat")) is None


def test_kernel_files_read_without_a_viewer(tmp_path):
    path = tmp_path / "k.npy"
    np.save(path, 3.0 * gaussian_kernel(13, 1.5))
    [(data, kwargs, _)] = read_kernels(str(path))
    meta = kwargs["metadata"]
    assert meta["role"] == LayerRole.KERNEL_FILE and meta["scale"] is None and np.isclose(data.sum(), 1.0)
    assert "scale" not in kwargs and "units" not in kwargs  # placement needs a viewer
