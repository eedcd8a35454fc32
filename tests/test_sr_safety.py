"""Safe SR with an estimated kernel: noise measured, regularisation from confidence, fallback to bicubic."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from skimage import data

from napari_kernelgan import super_resolve
from napari_kernelgan.errors import BadOptionError
from napari_kernelgan.physics import degrade, gaussian_kernel, image_psnr, imresize
from napari_kernelgan.registry import SR_METHODS
from napari_kernelgan.sr import _safety
from napari_kernelgan.sr._safety import UnsafeSRWarning, confidence_floor, ringing_score
from napari_kernelgan.types import KernelEstimate

KW = {"device": "cpu", "threads": 1}


def _estimate(kernel: np.ndarray, confidence: float | None = None) -> KernelEstimate:
    return KernelEstimate(kernel=kernel, dmap=None, loss_history={}, iterations=0, elapsed=0.0, device="cpu",
                          seed=0, method="test", confidence=confidence)


def _hr() -> np.ndarray:
    return data.astronaut()[100:292, 140:332].astype(np.float64) / 255.0


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def _gain(sr: np.ndarray, lr: np.ndarray, hr: np.ndarray) -> float:
    ref = _u8(hr)
    return image_psnr(sr, ref, shave=2) - image_psnr(imresize(lr.astype(np.float64), 2), ref, shave=2)


def test_mixed_kernels_stay_near_bicubic_without_a_fallback():
    # Left half blurred narrowly, right half widely: the wide kernel, trusted everywhere, rings on the left.
    hr = _hr()
    narrow, wide = gaussian_kernel(13, 0.7), gaussian_kernel(13, 2.2)
    lr = _u8(np.concatenate([degrade(hr, narrow, 2)[:, :48], degrade(hr, wide, 2)[:, 48:]], axis=1))
    unsafe = super_resolve(lr, _estimate(wide), 2, safe=False, **KW)
    assert _gain(unsafe.image, lr, hr) < -2.0  # what the plain path returned before
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = super_resolve(lr, _estimate(wide), 2, **KW)
    assert _gain(res.image, lr, hr) > -0.5
    assert res.options["safe"] is True
    fell_back = res.options.get("fallback") == "bicubic"
    # The warning comes exactly when bicubic is returned; otherwise the noise level was escalated.
    assert fell_back == any(issubclass(w.category, UnsafeSRWarning) for w in caught)
    assert fell_back or res.options["sigma"] > 2.0


def test_fallback_warns_and_is_recorded(monkeypatch):
    hr = _hr()
    lr = _u8(degrade(hr, gaussian_kernel(13, 0.7), 2))
    monkeypatch.setattr(_safety, "RINGING_LIMIT", 0.05)  # nothing passes: every step fails the check
    with pytest.warns(UnsafeSRWarning, match="bicubic"):
        res = super_resolve(lr, _estimate(gaussian_kernel(13, 2.5)), 2, **KW)
    assert res.options["fallback"] == "bicubic" and "TV ratio" in res.options["fallback_reason"]
    bic = super_resolve(lr, gaussian_kernel(13, 1.0), 2, sr_method="bicubic", **KW).image
    np.testing.assert_array_equal(res.image, bic)


def test_a_correct_confident_estimate_still_gains():
    hr = _hr()
    k = gaussian_kernel(13, 1.6, 1.0, 0.5)
    lr = _u8(degrade(hr, k, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsafeSRWarning)
        res = super_resolve(lr, _estimate(k, confidence=1.0), 2, **KW)
    assert _gain(res.image, lr, hr) > 2.0
    assert res.options["noise_sigma"] < 1.0  # a clean 8-bit image


def test_noisy_fluorescence_is_not_worse_than_bicubic():
    from napari_kernelgan.synthetic import microscopy_case

    mc = microscopy_case(1, shape=(128, 128), photons=100.0)

    def psnr(x: np.ndarray) -> float:
        return image_psnr(np.asarray(x, np.float64) - mc.offset, mc.hr, shave=2, data_range=float(mc.hr.max()))

    bic = psnr(imresize(mc.lr.astype(np.float64), 2))
    res = super_resolve(mc.lr, _estimate(mc.kernel), 2, **KW)
    assert res.image.dtype == np.uint16
    assert psnr(res.image) >= bic, (psnr(res.image), bic)
    assert res.options["noise_sigma"] > 3.0  # in [0, 255] units of the image's range
    # Without the safeguards the same call amplifies the noise.
    assert psnr(super_resolve(mc.lr, _estimate(mc.kernel), 2, safe=False, **KW).image) < bic - 1.0


def test_explicit_arrays_get_the_safeguards_unless_switched_off():
    hr = _hr()[:96, :96]
    k = gaussian_kernel(13, 1.4)
    lr = _u8(degrade(hr, k, 2))
    spec = SR_METHODS.get("closed-form")
    frames = (lr.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    gen = spec.fn(frames, k, 2, device="cpu", seed=0, **spec.resolve({}))
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        direct = stop.value
    expected = _u8(np.clip(direct[0], 0, 1).transpose(1, 2, 0))
    # safe=False is the method alone, to the bit (uint8 results as before: the dtype's range is the input's).
    plain = super_resolve(lr, k, 2, safe=False, **KW)
    np.testing.assert_array_equal(plain.image, expected)
    assert "safe" not in plain.options and plain.options["sigma"] is None
    # By default an array is a fully trusted kernel, still with the measured noise and the check.
    for safe in (None, True):
        res = super_resolve(lr, k, 2, safe=safe, **KW)
        assert res.options["safe"] is True and res.options["confidence"] == 1.0 and "noise_sigma" in res.options
    # A user-given noise level is kept as it is (no escalation), also for estimates.
    given = super_resolve(lr, _estimate(k), 2, sigma=3.0, **KW)
    assert given.options["sigma"] == 3.0


def test_confidence_floor_and_score():
    f2 = _safety.FLOOR_SCALE[2]
    assert confidence_floor(None) == pytest.approx(2.0 * f2)
    assert confidence_floor(1.0) == 0.0 and confidence_floor(0.0) == pytest.approx(4.0 * f2)
    assert confidence_floor(0.2) > confidence_floor(0.8)
    assert confidence_floor(0.5, scale=4) == pytest.approx(2.0 * _safety.FLOOR_SCALE[4])
    # on a noisy image a doubted kernel raises the noise level itself; on a clean one the floor does it
    assert _safety.doubt_factor(0.0, 10.0) == pytest.approx(1 + _safety.NOISE_DOUBT)
    assert _safety.doubt_factor(1.0, 10.0) == 1.0 and _safety.doubt_factor(0.0, 0.0) == 1.0
    rng = np.random.default_rng(0)
    smooth = imresize(rng.random((1, 1, 40, 40)), 2, axes=(-2, -1))
    assert ringing_score(smooth, smooth) == pytest.approx(1.0)
    ringing = smooth + 0.4 * np.cos(np.pi * np.arange(80))[None, None, None, :]
    assert ringing_score(ringing, smooth) > _safety.RINGING_LIMIT
    # a doubted kernel is checked more strictly than a trusted one
    assert _safety.ringing_limit(0.0) < _safety.ringing_limit(None) < _safety.ringing_limit(1.0)
    # bicubic is smoother at ×4, so a correct deconvolution's ratio to it is higher there
    assert _safety.ringing_limit(0.5, scale=4) == pytest.approx(_safety.RINGING_SCALE[4] * _safety.ringing_limit(0.5))
    with pytest.raises(BadOptionError, match="safe"):
        super_resolve(_u8(_hr()[:64, :64]), gaussian_kernel(13, 1.0), 2, safe="yes", **KW)
