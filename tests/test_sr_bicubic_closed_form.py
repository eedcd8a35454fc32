"""The ``bicubic`` and ``closed-form`` SR methods, and input checks of ``super_resolve``."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

from napari_kernelgan import drive, iter_super_resolve, super_resolve
from napari_kernelgan.errors import BadOptionError
from napari_kernelgan.physics import blur, centre_kernel, degrade, gaussian_kernel, image_psnr
from napari_kernelgan.physics.resize import imresize, resize_weights
from napari_kernelgan.registry import SR_METHODS
from napari_kernelgan.sr.closed_form import hqs_schedule
from napari_kernelgan.types import Progress

CPU = torch.device("cpu")


def _hr() -> np.ndarray:
    return data.camera()[120:264, 180:324].astype(np.float64) / 255.0


def _asymmetric_kernel() -> np.ndarray:
    """An elongated Gaussian plus an off-axis lobe: flipping it changes it, centring keeps it centred."""
    k = gaussian_kernel(15, 2.2, 0.8, 0.5) + 0.6 * np.roll(gaussian_kernel(15, 1.0), (3, 3), (0, 1))
    return centre_kernel(k / k.sum())


def _sr(method: str, lr: np.ndarray, kernel: np.ndarray, scale: int, **options) -> np.ndarray:
    frames = np.asarray(lr, dtype=np.float32)[None, None]
    out = drive(SR_METHODS.get(method).fn(frames, kernel, scale, device=CPU, seed=0, **options))
    return np.clip(out[0, 0].astype(np.float64), 0, 1)


def _psnr(sr: np.ndarray, hr: np.ndarray, scale: int) -> float:
    return image_psnr(sr * 255, hr * 255, shave=scale)


# --------------------------------------------------------------------------- imresize

def test_imresize_matches_matlab_values():
    # MATLAB: imresize([1 2 3 4], 2)  and  imresize([1 2 3 4], [1 8])
    expected = [0.90625, 1.1796875, 1.7265625, 2.25, 2.75, 3.2734375, 3.8203125, 4.09375]
    row = np.array([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_allclose(imresize(row, 2)[0], expected, atol=1e-12)
    np.testing.assert_allclose(imresize(row, output_shape=(1, 8))[0], expected, atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_imresize_keeps_a_ramp_linear_in_the_interior(scale):
    ramp = np.tile(0.1 * np.arange(20.0) + 0.3, (6, 1))
    up = imresize(ramp, scale)
    assert up.shape == (6 * scale, 20 * scale)
    # Output pixel x (0-based) samples input position (x + 0.5) / s - 0.5 (shared field of view).
    pos = (np.arange(20 * scale) + 0.5) / scale - 0.5
    inner = slice(2 * scale, -2 * scale)
    np.testing.assert_allclose(up[:, inner], np.broadcast_to((0.1 * pos + 0.3)[inner], up[:, inner].shape),
                               atol=1e-12)


def test_imresize_weights_and_round_trip():
    w, idx = resize_weights(10, 5, 0.5)
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert idx.min() >= 0 and idx.max() <= 9
    smooth = blur(data.camera()[:96, :96].astype(np.float64) / 255, gaussian_kernel(9, 1.5))
    for scale in (2, 4):
        back = imresize(imresize(smooth, scale), 1 / scale)
        assert back.shape == smooth.shape
        assert np.abs(back - smooth)[8:-8, 8:-8].mean() < 2e-3


def test_imresize_axes_and_channels():
    rng = np.random.default_rng(0)
    img = rng.random((20, 24, 3))
    hwc = imresize(img, 2)
    chw = imresize(img.transpose(2, 0, 1), 2, axes=(-2, -1))
    assert hwc.shape == (40, 48, 3)
    np.testing.assert_allclose(chw.transpose(1, 2, 0), hwc, atol=1e-12)
    with pytest.raises(ValueError, match="positive scale"):
        imresize(img, 0)


def test_bicubic_method_is_imresize():
    rng = np.random.default_rng(1)
    lr = rng.random((40, 36))
    np.testing.assert_allclose(_sr("bicubic", lr, gaussian_kernel(13, 1.6), 2), np.clip(imresize(lr, 2), 0, 1),
                               atol=1e-6)


def test_bicubic_runs_without_a_kernel():
    rng = np.random.default_rng(1)
    lr = (rng.random((40, 36)) * 255).astype(np.uint8)
    res = super_resolve(lr, None, 2, sr_method="bicubic", device="cpu")
    np.testing.assert_array_equal(res.image, super_resolve(lr, gaussian_kernel(13, 1.6), 2, sr_method="bicubic",
                                                           device="cpu").image)
    assert res.image.shape == (80, 72) and res.kernel.shape == (1, 1)
    assert res.metadata()["kernel"] == [[1.0]]


def test_a_method_that_uses_the_kernel_refuses_none():
    with pytest.raises(BadOptionError, match="closed-form.*needs a kernel"):
        super_resolve(np.zeros((32, 32), np.uint8), None, 2, device="cpu")


# --------------------------------------------------------------------------- closed-form quality and conventions

@pytest.mark.parametrize("scale", [2, 3, 4])
def test_closed_form_beats_bicubic_with_true_kernel(scale):
    hr = _hr()
    k = gaussian_kernel(13 if scale < 4 else 21, 1.2 * scale, 0.5 * scale, 0.6)
    lr = degrade(hr, k, scale)
    gain = _psnr(_sr("closed-form", lr, k, scale), hr, scale) - _psnr(_sr("bicubic", lr, k, scale), hr, scale)
    assert gain >= 1.5, f"closed-form gains only {gain:.2f} dB over bicubic at ×{scale}"


def test_closed_form_output_is_consistent_with_the_degradation():
    hr = _hr()
    k = _asymmetric_kernel()
    lr = degrade(hr, k, 2)
    def residual(sr: np.ndarray) -> float:
        return float(np.sqrt(np.mean((degrade(sr, k, 2) - lr)[4:-4, 4:-4] ** 2)))

    ours, baseline = residual(_sr("closed-form", lr, k, 2)), residual(_sr("bicubic", lr, k, 2))
    assert ours < 6e-3 and ours < baseline / 4, f"re-degraded SR misses the LR input by RMSE {ours:.4f}"


@pytest.mark.parametrize("scale", [2, 3])
def test_flipped_kernel_loses(scale):
    """Correlation, not convolution: passing flip(k) for an asymmetric k must hurt."""
    hr = _hr()
    k = _asymmetric_kernel()
    lr = degrade(hr, k, scale)
    right = _psnr(_sr("closed-form", lr, k, scale), hr, scale)
    flipped = _psnr(_sr("closed-form", lr, np.ascontiguousarray(k[::-1, ::-1]), scale), hr, scale)
    assert right - flipped > 1.0, f"flipped kernel: {flipped:.2f} dB vs {right:.2f} dB"


@pytest.mark.parametrize("scale", [2, 4])
def test_subsampling_phase_mistake_loses(scale):
    """The half-pixel phase: the method must match ``physics.degrade``, not the unshifted
    ``blur(hr, k)[::s, ::s]``. A method that forgot the shift would do better on the latter."""
    hr = _hr()
    k = gaussian_kernel(13, 1.0 * scale, 0.6 * scale, 0.3)
    right_lr = degrade(hr, k, scale)
    wrong_lr = blur(hr, k)[::scale, ::scale]
    right = _psnr(_sr("closed-form", right_lr, k, scale), hr, scale)
    wrong = _psnr(_sr("closed-form", wrong_lr, k, scale), hr, scale)
    assert right - wrong > 1.0, f"phase: correct LR {right:.2f} dB vs unshifted LR {wrong:.2f} dB"


def test_one_pixel_shifted_kernel_loses_against_fixed_reference():
    """A kernel moved by one pixel is re-centred by its centre of mass (the stored-kernel
    convention), so it gives the same result; the same shift applied to the image instead
    (a real one-pixel misregistration) must lose."""
    hr = _hr()
    k = _asymmetric_kernel()
    lr = degrade(hr, k, 2)
    right = _sr("closed-form", lr, k, 2)
    shifted_kernel = np.roll(np.pad(k, 1), 1, axis=1)
    np.testing.assert_allclose(_sr("closed-form", lr, shifted_kernel, 2), right, atol=1e-4)
    misregistered_lr = degrade(np.roll(hr, 1, axis=1), k, 2)
    loss = _psnr(right, hr, 2) - _psnr(_sr("closed-form", misregistered_lr, k, 2), hr, 2)
    assert loss > 1.0, f"a one-pixel misregistration costs only {loss:.2f} dB"


def test_closed_form_tiles_agree_with_whole_image():
    hr = _hr()
    k = gaussian_kernel(13, 2.0, 1.0, 0.4)
    lr = degrade(hr, k, 2)
    whole = _sr("closed-form", lr, k, 2, tile=0)
    tiled = _sr("closed-form", lr, k, 2, tile=24)
    assert abs(_psnr(whole, hr, 2) - _psnr(tiled, hr, 2)) < 0.1
    assert np.abs(whole - tiled)[8:-8, 8:-8].mean() < 3e-3


def test_closed_form_noise_level_helps_on_noisy_input():
    hr = _hr()
    k = gaussian_kernel(13, 2.0, 1.0, 0.4)
    rng = np.random.default_rng(2)
    lr = np.clip(degrade(hr, k, 2) + rng.normal(0, 8 / 255, (hr.shape[0] // 2, hr.shape[1] // 2)), 0, 1)
    plain = _psnr(_sr("closed-form", lr, k, 2), hr, 2)
    aware = _psnr(_sr("closed-form", lr, k, 2, sigma=8.0), hr, 2)
    assert aware > plain + 3.0


def test_schedule_is_log_spaced_and_documented_endpoints():
    sched = hqs_schedule(4, 0.0, 49.0, 0.5, 0.1, 0.4)
    alphas, weights = np.array(sched).T
    np.testing.assert_allclose(weights[[0, -1]], [0.4 * 49 / 255, 0.4 * 0.5 / 255])
    assert alphas[-1] == pytest.approx(0.1) and np.all(np.diff(alphas) > 0)
    np.testing.assert_allclose(np.diff(np.log(weights)), np.log(weights[1] / weights[0]))


# --------------------------------------------------------------------------- API: layouts, dtypes, errors

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("method", ["bicubic", "closed-form"])
def test_output_dtype_and_shape(dtype, method):
    rng = np.random.default_rng(3)
    k = gaussian_kernel(11, 1.5)
    hi = {np.uint8: 255, np.uint16: 4000, np.float32: 1.0}[dtype]
    gray = (degrade(_hr()[:80, :72], k, 2) * hi).astype(dtype)
    out = super_resolve(gray, k, 2, method=method, device="cpu").image
    assert out.dtype == np.dtype(dtype) and out.shape == (80, 72)
    rgb = (rng.random((40, 34, 3)) * hi).astype(dtype)
    out = super_resolve(rgb, k, 2, method=method, device="cpu").image
    assert out.dtype == np.dtype(dtype) and out.shape == (80, 68, 3)


def test_multichannel_and_stack_layouts():
    rng = np.random.default_rng(4)
    k = gaussian_kernel(11, 1.5)
    multi = rng.random((5, 36, 40)).astype(np.float32)
    out = super_resolve(multi, k, 3, channel_axis=0, device="cpu").image
    assert out.shape == (5, 108, 120)
    stack = rng.random((2, 36, 40, 3)).astype(np.float32)
    result = super_resolve(stack, k, 2, stack_axis=0, device="cpu")
    assert result.image.shape == (2, 72, 80, 3) and result.method == "closed-form"
    # Each frame alone gives the same as in the stack.
    single = super_resolve(stack[1], k, 2, device="cpu").image
    np.testing.assert_allclose(result.image[1], single, atol=1e-6)


def test_progress_is_reported_and_cancellable():
    rng = np.random.default_rng(5)
    img = rng.random((96, 96)).astype(np.float32)
    gen = iter_super_resolve(img, gaussian_kernel(11, 1.5), 2, device="cpu", tile=32)
    assert next(gen).stage == "prepare"
    first = next(gen)
    assert isinstance(first, Progress) and first.stage == "sr" and first.total == 9
    gen.close()
    from napari_kernelgan import Cancelled

    with pytest.raises(Cancelled):
        super_resolve(img, gaussian_kernel(11, 1.5), 2, device="cpu", tile=32, callback=lambda p: False)


@pytest.mark.parametrize("kernel, message", [
    (np.full((11, 11), 2.0 / 121), "not 1"),
    (np.pad(np.array([[-0.5]]), 5) + gaussian_kernel(11, 1.5), "negative"),
    (np.where(np.eye(11) > 0, np.nan, 1 / 121), "NaN"),
    (np.full((10, 10), 0.01), "odd size"),
    (np.ones(11) / 11, "2-D"),
])
def test_bad_kernels_are_refused(kernel, message):
    img = np.zeros((40, 40), np.float32)
    img[10:30, 10:30] = 1
    with pytest.raises(ValueError, match=message):
        super_resolve(img, kernel, 2, method="closed-form", device="cpu")


def test_bad_scale_and_options_are_refused():
    img = np.random.default_rng(6).random((40, 40)).astype(np.float32)
    k = gaussian_kernel(11, 1.5)
    for scale in (5, 1, 2.5, True):
        with pytest.raises(ValueError, match="scale must be one of"):
            super_resolve(img, k, scale, device="cpu")
    with pytest.raises(TypeError, match="unknown option.*'iteratons'.*accepted options"):
        super_resolve(img, k, 2, method="closed-form", device="cpu", iteratons=3)
    with pytest.raises(TypeError, match="bicubic.*unknown option"):
        super_resolve(img, k, 2, method="bicubic", device="cpu", sigma=1.0)
    with pytest.raises(ValueError, match=r"closed-form': iterations must be an integer in \[1, ∞\); got 0"):
        super_resolve(img, k, 2, method="closed-form", device="cpu", iterations=0)
    with pytest.raises(ValueError, match=r"tile must be an integer in \[0, ∞\); got -1"):
        super_resolve(img, k, 2, method="closed-form", device="cpu", tile=-1)


def test_blind_super_resolve_beats_bicubic_with_its_own_kernel():
    """Estimate, then super-resolve: the estimate rides along and its confidence sets the noise floor."""
    from napari_kernelgan import blind_super_resolve
    from napari_kernelgan.sr._safety import confidence_floor

    hr = data.camera()[96:352, 128:384].astype(np.float64) / 255.0
    lr = degrade(hr, gaussian_kernel(13, 1.8, 1.1, 0.4), 2)
    res = blind_super_resolve(lr.astype(np.float32), 2, device="cpu", seed=0)
    assert res.image.shape == hr.shape and res.estimate is not None and res.estimate.kernel.shape == (13, 13)
    assert res.options["safe"] and res.options["confidence"] == round(res.estimate.confidence, 3)
    # sigma is reported in the image's units (here [0, 1]); the floor is in the method's [0, 255]
    assert res.options["sigma"] * 255.0 >= confidence_floor(res.estimate.confidence) - 1e-9
    gain = _psnr(res.image, hr, 2) - _psnr(imresize(lr, 2.0), hr, 2)
    assert gain > 1.0, gain
