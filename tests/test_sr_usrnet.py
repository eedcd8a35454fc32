"""USRNet: architecture, kernel convention, weight lookup and a real-image sanity figure.

Tests that need the released weights or DIV2KRK read them from the shared
folder beside the repository (``../shared``, or ``$NAPARI_KERNELGAN_SHARED``)
and are skipped when it is absent.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_kernelgan.api import drive, super_resolve
from napari_kernelgan.errors import BadOptionError
from napari_kernelgan.physics import (
    Degradation,
    degrade,
    gaussian_kernel,
    image_psnr,
    imresize,
    kernel_for_subsampling,
    to_convolution,
)
from napari_kernelgan.registry import SR_METHODS
from napari_kernelgan.sr.common import crop_hr, reflect_pad_lr
from napari_kernelgan.sr.usrnet import USRNet, load_usrnet, official_kernel, psf2otf, smooth_wrap, usrnet_sr
from napari_kernelgan.weights import WeightsNotFoundError, resolve_weights
from shared_data import DIV2KRK
from shared_data import WEIGHTS as SHARED_WEIGHTS

WEIGHTS = SHARED_WEIGHTS / "usrnet_tiny.pth"
ENV = "NAPARI_KERNELGAN_USRNET_WEIGHTS"

needs_weights = pytest.mark.skipif(not WEIGHTS.is_file(), reason=f"USRNet-tiny weights not found at {WEIGHTS}")
needs_div2krk = pytest.mark.skipif(not (DIV2KRK / "hr" / "im_2.png").is_file(),
                                   reason=f"DIV2KRK development data not found under {DIV2KRK}")


@pytest.fixture
def isolated_lookup(tmp_path, monkeypatch):
    """No environment variable, no config file, an empty default folder."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("NAPARI_KERNELGAN_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture(scope="module")
def model():
    if not WEIGHTS.is_file():
        pytest.skip(f"USRNet-tiny weights not found at {WEIGHTS}")
    return load_usrnet(WEIGHTS)


def _div2krk_crop(index: int = 2, size: int = 64):
    from scipy.io import loadmat
    from skimage.io import imread

    hr = imread(DIV2KRK / "hr" / f"im_{index}.png")[..., :3].astype(np.float32) / 255
    lr = imread(DIV2KRK / "lr_x2" / f"im_{index}.png")[..., :3].astype(np.float32) / 255
    k = np.clip(loadmat(DIV2KRK / "gt_k_x2" / f"kernel_{index}.mat")["Kernel"], 0, None)
    r0, c0 = lr.shape[0] // 2 - size // 2, lr.shape[1] // 2 - size // 2
    lrc = np.ascontiguousarray(lr[r0:r0 + size, c0:c0 + size].transpose(2, 0, 1))
    hrc = hr[2 * r0:2 * (r0 + size), 2 * c0:2 * (c0 + size)]
    return lrc, hrc, k / k.sum()


def _psnr(chw: np.ndarray, hr: np.ndarray) -> float:
    return image_psnr(np.clip(chw.transpose(1, 2, 0), 0, 1) * 255, hr * 255, shave=2)


# --------------------------------------------------------------------------- convention

@pytest.mark.parametrize("scale", [2, 3, 4])
def test_official_kernel_gives_the_package_operator(scale):
    k = gaussian_kernel(11, 1.2, 2.5, 0.6) * (1 + 0.2 * np.random.default_rng(0).random((11, 11)))
    k /= k.sum()
    shape = (48 * scale, 40 * scale)
    ours = Degradation(k, scale, "circular").otf(shape, dtype=torch.float64)
    theirs = psf2otf(official_kernel(k, scale), shape, dtype=torch.float64)
    assert torch.allclose(ours, theirs, atol=1e-12)


def test_official_kernel_is_shifted_convolution_kernel():
    k = gaussian_kernel(11, 1.0, 2.0, 0.3)
    expected = to_convolution(kernel_for_subsampling(k, 2))
    assert np.allclose(official_kernel(k, 2), expected)
    assert official_kernel(k, 2).shape[0] % 2 == 1 and official_kernel(k, 2).sum() == pytest.approx(1.0)


def test_smooth_wrap_closes_the_period():
    rng = np.random.default_rng(1)
    img = rng.random((3, 20, 30)).astype(np.float32)
    padded, pads = reflect_pad_lr(img, 6, 2)
    out = smooth_wrap(smooth_wrap(padded, pads[0], pads[1], -2), pads[2], pads[3], -1)
    # The image itself is untouched and the jump across the wrap is no larger than inside.
    assert np.array_equal(crop_hr(out, pads, 1), img)
    wrap_jump = np.abs(out[:, 0] - out[:, -1]).max()
    assert wrap_jump <= np.abs(np.diff(out, axis=1)).max() + 1e-6
    plain_jump = np.abs(padded[:, 0] - padded[:, -1]).max()
    assert wrap_jump < plain_jump


# --------------------------------------------------------------------------- weights

def test_weights_lookup_order(isolated_lookup, monkeypatch):
    tmp = isolated_lookup
    explicit, env_file, cfg_file, default = (tmp / name for name in ("a.pth", "b.pth", "c.pth", "usrnet_tiny.pth"))
    for f in (explicit, env_file, cfg_file):
        f.write_bytes(b"x")
    default_dir = tmp / "cache" / "napari-kernelgan" / "weights"
    default_dir.mkdir(parents=True)
    (default_dir / default.name).write_bytes(b"x")
    assert resolve_weights("usrnet") == default_dir / "usrnet_tiny.pth"
    config = tmp / "config" / "napari-kernelgan" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[weights]\nusrnet = "{cfg_file.as_posix()}"\n')
    assert resolve_weights("usrnet") == cfg_file
    monkeypatch.setenv(ENV, str(env_file))
    assert resolve_weights("usrnet") == env_file
    assert resolve_weights("usrnet", explicit) == explicit
    # A folder is searched for the usual file names.
    assert resolve_weights("usrnet", default_dir) == default_dir / "usrnet_tiny.pth"


def test_missing_weights_message(isolated_lookup):
    frames = np.random.default_rng(0).random((1, 3, 16, 16)).astype(np.float32)
    gen = SR_METHODS.get("usrnet").fn(frames, gaussian_kernel(7, 1.0), 2, device=torch.device("cpu"), seed=0)
    with pytest.raises(FileNotFoundError) as info:
        next(gen)
    message = str(info.value)
    assert isinstance(info.value, WeightsNotFoundError)
    assert "usrnet_tiny.pth" in message and ENV in message and "cszn/USRNet" in message


def test_wrong_explicit_path_is_an_error(isolated_lookup):
    with pytest.raises(WeightsNotFoundError, match="nope.pth"):
        resolve_weights("usrnet", isolated_lookup / "nope.pth")


def test_unknown_option_is_a_type_error():
    frames = np.zeros((1, 1, 16, 16), dtype=np.float32)
    gen = SR_METHODS.get("usrnet")
    with pytest.raises(TypeError, match="sigma"):
        gen.resolve({"sigma": 3})
    with pytest.raises(BadOptionError, match="usrnet.*unknown option.*'sigma'"):
        super_resolve(frames[0, 0], gaussian_kernel(7, 1.0), 2, sr_method="usrnet", sigma=3)


# --------------------------------------------------------------------------- released weights

@needs_weights
def test_state_dict_matches_architecture():
    state = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    net = USRNet(n_iter=6, h_nc=32, nc=(16, 32, 64, 64), nb=2)
    assert set(net.state_dict()) == set(state)
    net.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in net.parameters()) == pytest.approx(0.59e6, rel=0.02)


def _run(frames: np.ndarray, kernel: np.ndarray, scale: int = 2, **options) -> np.ndarray:
    gen = SR_METHODS.get("usrnet").fn(frames, kernel, scale, device=torch.device("cpu"), seed=0, weights=WEIGHTS,
                                   **options)
    return drive(gen)


@needs_weights
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_gray_and_multichannel_shapes(model, channels):
    frames = np.random.default_rng(0).random((2, channels, 12, 16)).astype(np.float32)
    out = _run(frames, gaussian_kernel(9, 1.2))
    assert out.shape == (2, channels, 24, 32) and out.dtype == np.float32


@needs_weights
def test_synthetic_beats_bicubic_and_tiles_agree(model):
    from skimage import data

    hr = data.astronaut()[100:228, 150:278].astype(np.float32) / 255
    k = gaussian_kernel(11, 1.6, 2.6, 0.5)
    lr = np.clip(degrade(hr, k, 2), 0, 1).astype(np.float32).transpose(2, 0, 1)
    whole = _run(lr[None], k, tile=0)[0]
    psnr = image_psnr(np.clip(whole.transpose(1, 2, 0), 0, 1) * 255, hr * 255, shave=2)
    bic = image_psnr(np.clip(imresize(lr, 2, axes=(-2, -1)).transpose(1, 2, 0), 0, 1) * 255, hr * 255, shave=2)
    assert psnr > bic + 3.0, (psnr, bic)
    # The kernel's orientation matters: its transpose (a mirrored anisotropic blur) loses clearly.
    transposed = _run(lr[None], np.ascontiguousarray(k.T), tile=0)[0]
    assert psnr > image_psnr(np.clip(transposed.transpose(1, 2, 0), 0, 1) * 255, hr * 255, shave=2) + 2.0
    tiled = _run(lr[None], k, tile=32, overlap=12)[0]
    agreement = image_psnr(np.clip(tiled.transpose(1, 2, 0), 0, 1) * 255,
                           np.clip(whole.transpose(1, 2, 0), 0, 1) * 255)
    assert agreement > 35.0, agreement


@needs_weights
@needs_div2krk
def test_div2krk_true_kernel_beats_bicubic_and_wrong_phase_loses(model):
    lr, hr, k = _div2krk_crop(2, 64)
    bicubic = _psnr(imresize(lr, 2, axes=(-2, -1)), hr)
    right = _psnr(usrnet_sr(lr, k, 2, model), hr)
    assert right > bicubic + 2.5, (right, bicubic)

    def with_psf(psf: np.ndarray) -> float:
        padded, pads = reflect_pad_lr(lr, 16, 2)
        padded = smooth_wrap(smooth_wrap(padded, pads[0], pads[1], -2), pads[2], pads[3], -1)
        y = torch.as_tensor(np.ascontiguousarray(padded))[None]
        otf = psf2otf(psf, (y.shape[-2] * 2, y.shape[-1] * 2))
        with torch.no_grad():
            x = model(y, otf, 2, 2.0 / 255)
        return _psnr(crop_hr(x[0], pads, 2).numpy(), hr)

    assert with_psf(official_kernel(k, 2)) == pytest.approx(right, abs=1e-6)
    shifted = kernel_for_subsampling(k, 2)                 # correlation orientation: one pixel off
    unshifted = to_convolution(np.pad(k, 1))               # no subsampling shift: half a pixel off
    assert right > with_psf(shifted) + 3.0
    assert right > with_psf(unshifted) + 1.0
