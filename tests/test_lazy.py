"""Lazy inputs (Dask arrays, memory-mapped TIFFs): only the slices needed are read, with the results of the
same data in memory."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import napari_kernelgan as nk
from lazy_data import SIDE, TRUE_K, Counted, blurred_stack
from napari_kernelgan.errors import BadInputError
from napari_kernelgan.imaging import is_lazy, prepare_image, sample_indices

SRC = str(Path(nk.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return blurred_stack()


def test_detection_imports_nothing(stack: np.ndarray, tmp_path) -> None:
    mm = np.lib.format.open_memmap(tmp_path / "s.npy", mode="w+", dtype=stack.dtype, shape=stack.shape)
    assert is_lazy(mm) and not is_lazy(stack) and not is_lazy(stack.tolist())
    assert sample_indices(6) == list(range(6)) and sample_indices(40) == list(range(0, 40, 3))
    # Large slices: fewer of them, so the sample holds at most SAMPLE_PIXELS (16 Mpx) in all.
    assert sample_indices(256, frame_pixels=2048 * 2048) == list(range(0, 256, 64))
    assert sample_indices(256, frame_pixels=8192 * 8192) == [0]
    assert sample_indices(40, frame_pixels=256 * 256) == list(range(0, 40, 3))
    code = ("import sys, numpy as np; from napari_kernelgan.imaging import is_lazy, prepare_image; "
            "is_lazy(np.zeros(3)); prepare_image(np.random.rand(2, 64, 64), stack_axis=0); "
            "assert 'dask' not in sys.modules and 'zarr' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": SRC})


def test_dask_slice_and_stack_estimates(stack: np.ndarray) -> None:
    lazy = Counted(stack)
    one = nk.estimate_kernel(lazy.array[3], 2, estimator="edges")
    assert set(lazy.reads) == {3}
    assert np.allclose(one.kernel, nk.estimate_kernel(stack[3], 2, estimator="edges").kernel, atol=1e-6)

    lazy.reads.clear()
    whole = nk.estimate_kernel(lazy.array, 2, estimator="edges", stack_axis=0)
    assert sorted(lazy.reads) == list(range(6))  # each sampled slice computed once
    assert np.allclose(whole.kernel, nk.estimate_kernel(stack, 2, estimator="edges", stack_axis=0).kernel,
                       atol=1e-6)


def test_long_dask_stack_reads_only_the_sample(stack: np.ndarray) -> None:
    long = np.concatenate([stack] * 7)  # 42 slices: 14 sampled
    lazy = Counted(long)
    frames = prepare_image(lazy.array, stack_axis=0)
    assert frames.sampled == tuple(range(0, 42, 3)) and sorted(lazy.reads) == list(frames.sampled)
    assert frames.data.shape == (14, 1, SIDE, SIDE)
    assert np.allclose(frames.data, prepare_image(long[::3], stack_axis=0).data)
    lazy.reads.clear()
    est = nk.estimate_kernel(lazy.array, 2, estimator="edges", stack_axis=0)
    assert sorted(lazy.reads) == list(frames.sampled) and est.options["slices_read"] == "14 of 42"


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_dask_stack_sr_streams_slice_by_slice(stack: np.ndarray, dtype: type) -> None:
    data = stack if dtype == np.uint8 else (stack / 255).astype(dtype)
    lazy = Counted(data)
    res = nk.super_resolve(lazy.array, TRUE_K, 2, stack_axis=0, safe=False)  # the stream, not the safeguards
    # uint8: each slice read once, in order; otherwise the sample is read first, for the range
    assert lazy.reads == list(range(6)) * (1 if dtype == np.uint8 else 2)
    ref = nk.super_resolve(data, TRUE_K, 2, stack_axis=0, safe=False)
    assert res.image.shape == ref.image.shape == (6, 2 * SIDE, 2 * SIDE) and res.image.dtype == dtype
    assert np.abs(res.image.astype(float) - ref.image.astype(float)).max() <= (1 if dtype == np.uint8 else 1e-5)
    if dtype == np.uint8:  # on the dtype's range, a slice comes out as it would alone
        assert np.array_equal(res.image[2], nk.super_resolve(data[2], TRUE_K, 2, safe=False).image)


def test_large_streamed_output_is_memory_mapped(stack: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    import napari_kernelgan.slices as slices

    monkeypatch.setattr(slices, "SCAN_BYTES", 0)  # every output counts as large
    res = nk.super_resolve(Counted(stack).array, TRUE_K, 2, sr_method="bicubic", stack_axis=0)
    assert isinstance(res.image, np.memmap) and res.image.shape == (6, 2 * SIDE, 2 * SIDE)
    ref = nk.super_resolve(stack, TRUE_K, 2, sr_method="bicubic", stack_axis=0)
    assert np.array_equal(np.asarray(res.image), ref.image)


def test_kernel_map_of_a_dask_stack_reads_each_slice_once(stack: np.ndarray) -> None:
    lazy = Counted(stack)
    field = nk.estimate_kernel_map(lazy.array, 2, estimator="edges", stack_axis=0)
    assert sorted(lazy.reads) == list(range(6))
    ref = nk.estimate_kernel_map(stack, 2, estimator="edges", stack_axis=0)
    assert np.allclose(field.kernels, ref.kernels, atol=1e-6)


def test_nan_in_a_read_slice_is_reported() -> None:
    da = pytest.importorskip("dask.array", reason="dask is not installed (the 'dask' extra)")
    arr = np.random.default_rng(0).random((3, 64, 64)).astype(np.float32)
    arr[1, 5, 5] = np.nan
    lazy = da.from_array(arr, chunks=(1, 64, 64))
    nk.estimate_kernel(lazy[0], 2, estimator="edges")  # the clean slice is fine
    with pytest.raises(BadInputError, match="contains 1 NaN or infinite values"):
        nk.estimate_kernel(lazy, 2, estimator="edges", stack_axis=0)


def test_memory_mapped_tiff_stack(stack: np.ndarray, tmp_path) -> None:
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack)
    mapped = tifffile.memmap(path)
    assert isinstance(mapped, np.memmap) and is_lazy(mapped)
    est = nk.estimate_kernel(mapped, 2, estimator="edges", stack_axis=0)
    assert np.allclose(est.kernel, nk.estimate_kernel(stack, 2, estimator="edges", stack_axis=0).kernel, atol=1e-6)
    res = nk.super_resolve(mapped, est, 2, sr_method="bicubic", stack_axis=0)
    ref = nk.super_resolve(stack, est, 2, sr_method="bicubic", stack_axis=0)
    assert np.abs(res.image.astype(int) - ref.image.astype(int)).max() <= 1
    field = nk.estimate_kernel_map(mapped, 2, estimator="edges", stack_axis=0)
    assert field.image_shape == (SIDE, SIDE)


class Unshaped:
    """A lazy array-like that cannot reshape (as a Zarr array), recording the frames it reads."""

    def __init__(self, arr: np.ndarray) -> None:
        self.arr, self.shape, self.ndim, self.dtype, self.reads = arr, arr.shape, arr.ndim, arr.dtype, []

    def __getitem__(self, key):
        self.reads.append(key)
        return self.arr[key]

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole array was read")


def test_whole_4d_layer_is_flattened_without_reading(stack: np.ndarray) -> None:
    from types import SimpleNamespace

    from napari_kernelgan._qt.models import FrameStack, input_array

    data = Unshaped(stack.reshape(2, 3, SIDE, SIDE))
    flat = input_array(SimpleNamespace(data=data, rgb=False, multiscale=False), None, True)
    assert isinstance(flat, FrameStack) and flat.shape == (6, SIDE, SIDE) and not data.reads
    frames = prepare_image(flat, stack_axis=0)
    assert data.reads == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert np.allclose(frames.data, prepare_image(stack, stack_axis=0).data)


def test_centre_crop_is_a_centred_view_and_keeps_short_axes_whole():
    from napari_kernelgan.imaging import centre_crop

    x = np.arange(2 * 7 * 10).reshape(2, 7, 10)
    crop = centre_crop(x, 4)
    np.testing.assert_array_equal(crop, x[:, 1:5, 3:7])
    assert np.shares_memory(crop, x)
    np.testing.assert_array_equal(centre_crop(x, 8), x[:, :, 1:9])  # 7 rows: all of them


def test_a_compressed_page_cut_short_after_opening_is_named(stack: np.ndarray, tmp_path) -> None:
    tifffile = pytest.importorskip("tifffile")
    pytest.importorskip("dask.array", reason="dask is not installed (the 'dask' extra)")
    from napari_kernelgan.stacks import open_image

    path = tmp_path / "packed.tif"
    tifffile.imwrite(path, stack, compression="zlib")
    src = open_image(path, "ZYX", lazy=True)  # pages are read when shown
    assert np.array_equal(np.asarray(src.data[0]), stack[0])
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) * 2 // 3])  # still being written, or cut by a full disk
    with pytest.raises(BadInputError) as info:
        np.asarray(src.data[-1])
    assert str(info.value) == ("could not read image packed.tif: the file is shorter than its header says (truncated "
                               "or still being written?)")


def test_slice_stream_reads_each_slice_once_in_the_order_asked(stack: np.ndarray) -> None:
    from napari_kernelgan.slices import SliceDone, SliceStream, iter_slices
    from napari_kernelgan.types import Progress

    lazy = Counted(stack)  # uint8: the range is the dtype's, no slice is read for it
    stream = SliceStream(lazy.array, [0])
    assert lazy.reads == [] and len(stream) == 6 and stream.intensity.high == 255.0
    checked: list[int] = []

    def work(position: int, index: tuple[int, ...], frame: np.ndarray):
        yield Progress(1, 1, 0.0, message="half")
        return frame.sum()

    items = list(iter_slices(stream, work, check=lambda: checked.append(len(lazy.reads))))
    done = [item for item in items if isinstance(item, SliceDone)]
    assert lazy.reads == list(range(6)) and checked == list(range(6))  # checked before each read
    assert [d.index for d in done] == [(i,) for i in range(6)]
    assert [d.result for d in done] == [stack[i].sum() for i in range(6)]
    reports = [item for item in items if isinstance(item, Progress)]
    assert [r.message for r in reports[:2]] == ["slice 1/6: half", "slice 2/6: half"]
    assert [r.iteration for r in reports[:2]] == [1, 2] and reports[0].total == 6  # one bar over the stack
    # Channels first, whatever the file's order: a ZYXC stack read as (C, Y, X) slices, as the engine reads it.
    zyxc = np.stack([stack, 255 - stack], axis=-1)
    by_channel = SliceStream(zyxc, [0], order=[3, 1, 2])
    assert np.array_equal(by_channel.read((4,)), np.moveaxis(zyxc[4], -1, 0))
    assert by_channel.sample == [(i,) for i in range(6)]
    with pytest.raises(ValueError, match="must hold the axes"):
        SliceStream(zyxc, [0], order=[1, 2])
