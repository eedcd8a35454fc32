"""SR with a known kernel (a measured PSF, a model): safe by default, sigma in the image's units, room above the
input's range."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import j1

from napari_kernelgan import super_resolve
from napari_kernelgan.api import drive
from napari_kernelgan.errors import BadOptionError
from napari_kernelgan.imaging import prepare_image
from napari_kernelgan.physics import degrade, image_psnr
from napari_kernelgan.physics.resize import imresize
from napari_kernelgan.registry import SR_METHODS
from napari_kernelgan.sr import _safety
from napari_kernelgan.synthetic import microscopy_scene

KW = {"device": "cpu", "threads": 1, "seed": 0}
OFFSET = 100.0


def airy_psf(pixel: float, size: int = 15) -> np.ndarray:
    """The Airy pattern (2·J1(v)/v)², v = 2π·r·NA/λ, with pixels of ``pixel`` λ/NA, summing to 1."""
    c = size // 2
    y, x = np.mgrid[-c:c + 1, -c:c + 1].astype(np.float64)
    # Supersample each pixel 5×5 so the central peak is integrated, not point-sampled.
    sub = (np.arange(5) - 2) / 5.0
    psf = np.zeros((size, size))
    for dy in sub:
        for dx in sub:
            v = 2.0 * np.pi * np.hypot(y + dy, x + dx) * pixel
            v = np.where(v == 0, 1e-12, v)
            psf += (2.0 * j1(v) / v) ** 2
    return psf / psf.sum()


IN_FOCUS = airy_psf(0.35)     # FWHM 1.5 HR px
WIDER = airy_psf(0.25)        # FWHM 2.1 HR px (a defocused or lower-NA objective)


def noisy_case(psf: np.ndarray, photons: float, seed: int = 3, kind: str = "puncta", side: int = 160):
    """(uint16 LR, HR target in ADU) of a generated fluorescence scene blurred by ``psf``, ×2, Poisson noise."""
    hr = microscopy_scene((side, side), seed, kind=kind)
    clean = degrade(hr, psf, 2)
    factor = photons / float(clean.max())
    rng = np.random.default_rng(seed)
    lr = rng.poisson(clean * factor) + OFFSET + rng.normal(0.0, 1.5, clean.shape)
    return np.clip(np.round(lr), 0, 65535).astype(np.uint16), hr * factor + OFFSET


def psnr(img: np.ndarray, target: np.ndarray) -> float:
    return image_psnr(np.asarray(img, np.float64), target, shave=4, data_range=float(target.max() - OFFSET))


@pytest.mark.parametrize("psf", [IN_FOCUS, WIDER], ids=["in-focus", "wider"])
def test_a_measured_psf_on_a_noisy_uint16_image_beats_bicubic_by_default(psf: np.ndarray) -> None:
    lr, target = noisy_case(psf, 300.0, kind="nuclei")
    bicubic = psnr(imresize(lr.astype(np.float64), 2), target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback: the true PSF must not need one here
        res = super_resolve(lr, psf, 2, **KW)
    assert res.options["safe"] is True and res.options["confidence"] == 1.0
    assert res.options["noise_model"] == "poisson-gaussian"
    assert psnr(res.image, target) > bicubic + 0.5, (psnr(res.image, target), bicubic)
    # The method alone, as an array kernel ran before: the photon noise deconvolved into ringing.
    raw = super_resolve(lr, psf, 2, safe=False, **KW)
    assert psnr(raw.image, target) < bicubic - 1.0


def test_safe_false_is_the_raw_method_bit_for_bit() -> None:
    lr, _ = noisy_case(IN_FOCUS, 300.0, side=96)
    spec = SR_METHODS.get("closed-form")
    frames = prepare_image(lr)
    out = drive(spec.fn(frames.data, IN_FOCUS, 2, device="cpu", seed=0, **spec.resolve({})))
    expected = frames.intensity.from_unit(out[0, 0])
    got = super_resolve(lr, IN_FOCUS, 2, safe=False, **KW)
    assert np.array_equal(got.image, expected)
    assert "safe" not in got.options and got.options["sigma"] is None


def test_sigma_in_adu_equals_the_same_noise_in_the_methods_units() -> None:
    lr, _ = noisy_case(IN_FOCUS, 300.0, side=96)
    spec = SR_METHODS.get("closed-form")
    frames = prepare_image(lr)
    span = frames.intensity.high - frames.intensity.low
    sigma_adu = 4.0
    out = drive(spec.fn(frames.data, IN_FOCUS, 2, device="cpu", seed=0,
                        **spec.resolve({"sigma": sigma_adu * 255.0 / span})))
    got = super_resolve(lr, IN_FOCUS, 2, safe=False, sigma=sigma_adu, **KW)
    assert np.array_equal(got.image, frames.intensity.from_unit(out[0, 0]))
    assert got.options["sigma"] == pytest.approx(sigma_adu)
    # The same image scaled ×10 in ADU with σ ×10 is the same problem: the same result, ×10.
    big = super_resolve(lr.astype(np.float64) * 10.0, IN_FOCUS, 2, safe=False, sigma=10 * sigma_adu, **KW)
    assert np.allclose(big.image, got.image.astype(np.float64) * 10.0, atol=10.0)
    # Text from a form or the command line, and 'auto' (measured) with the safeguards off.
    assert np.array_equal(super_resolve(lr, IN_FOCUS, 2, safe=False, sigma="4", **KW).image, got.image)
    auto = super_resolve(lr, IN_FOCUS, 2, safe=False, sigma="auto", **KW)
    measured = _safety.measure_noise(frames.data)["noise_sigma"] * span / 255.0
    assert auto.options["sigma"] == pytest.approx(measured) and measured > 1.0


def test_uint8_sigma_keeps_its_meaning() -> None:
    lr, _ = noisy_case(IN_FOCUS, 300.0, side=96)
    lr8 = np.clip(lr.astype(np.float64) - OFFSET, 0, 255).astype(np.uint8)
    spec = SR_METHODS.get("closed-form")
    frames = prepare_image(lr8)
    out = drive(spec.fn(frames.data, IN_FOCUS, 2, device="cpu", seed=0, **spec.resolve({"sigma": 3.0})))
    got = super_resolve(lr8, IN_FOCUS, 2, safe=False, sigma=3.0, **KW)
    assert np.array_equal(got.image, frames.intensity.from_unit(out[0, 0]))


@pytest.mark.parametrize("bad", [-1.0, "much", float("nan")])
def test_a_bad_sigma_says_what_it_must_be(bad: object) -> None:
    lr, _ = noisy_case(IN_FOCUS, 300.0, side=64)
    with pytest.raises(BadOptionError, match="sigma must be 'auto' or a noise level"):
        super_resolve(lr, IN_FOCUS, 2, sigma=bad, **KW)


def test_a_sigma_larger_than_the_image_range_is_refused_in_its_units() -> None:
    lr, _ = noisy_case(IN_FOCUS, 300.0, side=64)
    with pytest.raises(BadOptionError, match="more than the image's whole range"):
        super_resolve(lr, IN_FOCUS, 2, safe=False, sigma=1e6, **KW)


def test_a_uint16_result_can_exceed_the_input_maximum() -> None:
    lr, target = noisy_case(IN_FOCUS, 2000.0, kind="puncta")
    res = super_resolve(lr, IN_FOCUS, 2, **KW)
    assert res.image.dtype == np.uint16
    # Restored puncta peak above the blurred input's maximum (the target's peaks are higher still).
    assert res.image.max() > lr.max() + 50 and target.max() > lr.max()


def test_float_outputs_keep_their_conventions() -> None:
    lr, _ = noisy_case(IN_FOCUS, 2000.0, kind="puncta", side=96)
    unit = (lr.astype(np.float32) - lr.min()) / float(lr.max() - lr.min())
    out = super_resolve(unit, IN_FOCUS, 2, safe=False, **KW).image
    assert out.min() >= 0.0 and out.max() <= 1.0            # a [0, 1] image stays in [0, 1]
    counts = lr.astype(np.float32)
    out = super_resolve(counts, IN_FOCUS, 2, safe=False, **KW).image
    assert out.min() >= 0.0 and out.max() > counts.max()     # counts: ≥ 0, no ceiling
    signed = counts - 1000.0
    out = super_resolve(signed, IN_FOCUS, 2, safe=False, **KW).image
    assert out.max() > signed.max()


def test_the_noise_gain_lifts_a_trusted_kernel_on_noisy_images_only() -> None:
    spec = SR_METHODS.get("closed-form")
    assert _safety.NOISE_GAIN > 1.0
    noisy = 10.0
    assert _safety.base_noise_level(spec, noisy, 1.0, 2) == pytest.approx(noisy * _safety.NOISE_GAIN)
    # A doubted kernel's doubt factor takes over where it is the larger one.
    assert _safety.base_noise_level(spec, noisy, 0.0, 2) == pytest.approx(
        noisy * max(1.0 + _safety.NOISE_DOUBT, _safety.NOISE_GAIN))
    # Clean images: no gain (the floor and the check work there).
    assert _safety.base_noise_level(spec, 0.0, 1.0, 2) == 0.0
    assert _safety.noise_gain(0.5) == pytest.approx(1.0 + (_safety.NOISE_GAIN - 1.0) * 0.25)


def test_confidence_still_overrides_for_an_array() -> None:
    lr, _ = noisy_case(IN_FOCUS, 300.0, side=96)
    res = super_resolve(lr, IN_FOCUS, 2, confidence=0.2, **KW)
    assert res.options["confidence"] == 0.2
    trusted = super_resolve(lr, IN_FOCUS, 2, **KW)
    assert res.options["sigma"] >= trusted.options["sigma"]


def test_blind_sr_without_safeguards_reports_its_noise_in_the_images_units() -> None:
    from napari_kernelgan import blind_super_resolve
    from napari_kernelgan.api import blind_defaults, unit_noise_scale

    lr, _ = noisy_case(WIDER, 300.0, side=96)
    res = blind_super_resolve(lr, 2, safe=False, **KW)
    # The blind default (2 in the method's [0, 255] units) reported in ADU; given back, the same image.
    units = unit_noise_scale(prepare_image(lr))
    assert res.options["sigma"] == pytest.approx(blind_defaults("closed-form")["sigma"] / units)
    again = super_resolve(lr, res.estimate, 2, safe=False, sigma=res.options["sigma"], **KW)
    assert np.array_equal(again.image, res.image)


def test_a_clean_div2krk_crop_gives_the_same_output_as_before() -> None:
    import hashlib

    import imageio.v3 as iio
    from scipy.io import loadmat

    from shared_data import DIV2KRK

    if not DIV2KRK.is_dir():
        pytest.skip(f"DIV2KRK not found at {DIV2KRK}")
    lr = iio.imread(DIV2KRK / "lr_x2" / "im_2.png")[200:296, 300:396, :3]
    k = loadmat(str(DIV2KRK / "gt_k_x2" / "kernel_2.mat"))["Kernel"].astype(np.float64)
    res = super_resolve(lr, k, 2, **KW)
    assert res.options["noise_sigma"] < _safety.NOISY_SIGMA and "poisson_refinement" not in res.options
    # The output of the code before the Richardson–Lucy limit check, on this machine's torch.
    digest = hashlib.sha256(np.ascontiguousarray(res.image).tobytes()).hexdigest()
    assert digest == "6970175a75ed63148dd6b5ccebd6a2fb39b1c3b08909ae4fe70f2a36060fdb07"


def test_a_kernel_wider_than_the_blur_on_bright_nuclei_warns_and_returns_bicubic() -> None:
    lr, target = noisy_case(IN_FOCUS, 2000.0, kind="nuclei")
    y, x = np.mgrid[-12:13, -12:13]
    wide = np.exp(-(x ** 2 + y ** 2) / (2 * 3.5 ** 2))
    wide /= wide.sum()
    bicubic = imresize(lr.astype(np.float64), 2)
    with pytest.warns(_safety.UnsafeSRWarning, match="wider than"):
        res = super_resolve(lr, wide, 2, **KW)
    assert res.options["fallback"] == "bicubic"
    assert res.options["poisson_refinement"] == _safety._poisson.MAX_ITERATIONS
    np.testing.assert_allclose(res.image.astype(np.float64), bicubic, atol=1.0)
    # Built to be worse than bicubic: the method with the noise level the safeguards chose loses over 5 dB, and
    # its total-variation score passes the check (no warning came from it).
    raw = super_resolve(lr, wide, 2, safe=False, sigma=res.options["sigma"], **KW).image
    assert psnr(raw, target) < psnr(bicubic, target) - 5.0
    assert res.options["ringing"] <= _safety.ringing_limit(1.0, res.options["noise_sigma"], 2)


def test_a_correct_psf_on_bright_puncta_is_refined_without_reaching_the_limit() -> None:
    lr, target = noisy_case(IN_FOCUS, 2000.0, kind="puncta")
    with warnings.catch_warnings():
        warnings.simplefilter("error", _safety.UnsafeSRWarning)
        res = super_resolve(lr, IN_FOCUS, 2, **KW)
    assert "fallback" not in res.options
    assert res.options.get("poisson_refinement", 0) < _safety._poisson.MAX_ITERATIONS
