"""``usrnet``: the deep unfolding SR network of Zhang, Van Gool and Timofte (CVPR 2020).

USRNet alternates, for ``n_iter`` steps,

* the data module ``z = argmin ‖(z ⊛ k)↓s − y‖² + α_i‖z − x‖²``, solved exactly
  in the Fourier domain (:meth:`napari_kernelgan.physics.Degradation.prox_l2`), and
* the prior module ``x = ResUNet([z, β_i])``, a denoiser conditioned on a
  constant map of ``β_i``,

with ``(α_i, β_i)`` produced by a small MLP (HyPaNet) from the noise level
σ and the scale. It is written here from the paper and loads the authors'
released state dicts (``usrnet_tiny.pth``: ResUNet 16-32-64-64, 6 steps;
``usrnet.pth``: 64-128-256-512, 8 steps) unchanged; the architecture is read
off the state dict.

Kernel orientation and phase. The released models were trained and are run
on ``y = (x ⊛ k_conv)[0::s, 0::s]`` with true convolution, a circular
boundary and the kernel's middle tap at the origin (the authors' ``p2o``),
i.e. LR pixel ``i`` is centred on HR pixel ``s·i`` unless the kernel itself
carries the shift. This package's degradation keeps pixels ``[::s, ::s]`` of
the *correlation* with the stored kernel shifted by ``(s − 1)/2`` (LR and HR
share their field of view). Both describe the same operator when

    ``k_conv = to_convolution(kernel_for_subsampling(k, s))``

(:func:`official_kernel`); the authors shift their test kernels the same way
(``shift_pixel``) for real images. :func:`psf2otf` is the authors' ``p2o``;
``psf2otf(official_kernel(k, s), shape)`` equals
:meth:`Degradation(k, s, "circular").otf(shape) <napari_kernelgan.physics.Degradation.otf>`.

Boundaries. The data module is periodic, so each tile is padded by symmetric
reflection (``pad`` LR pixels, more for wide kernels), the padding is blended
so the periodic extension has no jump (:func:`smooth_wrap`), and the padding
is cropped away afterwards. Without the blend, the jump where the period
closes is deconvolved into ringing that reaches far into the image for broad
kernels.

Noise level. ``noise_level`` (σ in [0, 255]) feeds HyPaNet; the default 2
suits clean 8-bit images: σ = 0 trusts the data term so fully that
quantisation and slight kernel mismatch are amplified (on DIV2KRK crops with
the true kernel: ×2 mean 31.8 dB at σ = 0, 32.0–32.1 dB at σ = 1–2; ×4 25.8
dB at σ = 0, 26.5 dB at σ = 2).

Channels: the released models are RGB; a grayscale image is repeated to
three channels and the output averaged; other channel counts run channel by
channel as grayscale.
"""
from __future__ import annotations

import os
import time
from collections.abc import Generator, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..constraints import Interval
from ..errors import BadInputError
from ..physics.conventions import kernel_for_subsampling, to_convolution
from ..physics.operators import Degradation
from ..registry import register
from ..types import Progress
from ..vocabulary import Stage
from ..weights import WeightSpec, declare_weights, resolve_weights
from .common import crop_hr, iter_tiled, reflect_pad_lr

__all__ = ["DEFAULTS", "ResUNet", "HyPaNet", "USRNet", "official_kernel", "psf2otf", "load_usrnet",
           "smooth_wrap", "usrnet_sr", "usrnet"]

DEFAULTS: dict[str, Any] = {
    "weights": None,       # weight file or folder; None: environment variable, config file, default folder
    "noise_level": 2.0,    # σ of the LR noise, [0, 255] units (the model's σ is this / 255)
    "pad": 16,             # LR pixels of reflection padding around each tile (wrap seam kept outside)
    "tile": 512,           # LR tile core size; 0 = whole image at once
    "overlap": 16,         # LR pixels of real context around each tile core
}


# --------------------------------------------------------------------------- network

class _ResBlock(nn.Module):
    """conv-ReLU-conv with identity skip, no biases (the released layout ``res.0`` / ``res.2``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.res = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                                 nn.Conv2d(channels, channels, 3, padding=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res(x)


class ResUNet(nn.Module):
    """The prior module: a 4-level U-Net of residual blocks, strided-conv down, transposed-conv up.

    Input: image channels plus one noise-level map; additive skips between levels.
    """

    def __init__(self, in_nc: int = 4, out_nc: int = 3, nc: Sequence[int] = (64, 128, 256, 512), nb: int = 2) -> None:
        super().__init__()
        if len(nc) != 4:
            raise ValueError(f"ResUNet needs four channel widths, got {nc}")
        self.m_head = nn.Conv2d(in_nc, nc[0], 3, padding=1, bias=False)

        def down(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(*[_ResBlock(cin) for _ in range(nb)], nn.Conv2d(cin, cout, 2, stride=2, bias=False))

        def up(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=False),
                                 *[_ResBlock(cout) for _ in range(nb)])

        self.m_down1 = down(nc[0], nc[1])
        self.m_down2 = down(nc[1], nc[2])
        self.m_down3 = down(nc[2], nc[3])
        self.m_body = nn.Sequential(*[_ResBlock(nc[3]) for _ in range(nb)])
        self.m_up3 = up(nc[3], nc[2])
        self.m_up2 = up(nc[2], nc[1])
        self.m_up1 = up(nc[1], nc[0])
        self.m_tail = nn.Conv2d(nc[0], out_nc, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        # Three stride-2 levels need sides divisible by 8; replicate-pad bottom/right, crop after.
        x = F.pad(x, (0, -w % 8, 0, -h % 8), mode="replicate")
        x1 = self.m_head(x)
        x2 = self.m_down1(x1)
        x3 = self.m_down2(x2)
        x4 = self.m_down3(x3)
        x = self.m_body(x4)
        x = self.m_up3(x + x4)
        x = self.m_up2(x + x3)
        x = self.m_up1(x + x2)
        x = self.m_tail(x + x1)
        return x[..., :h, :w]


class HyPaNet(nn.Module):
    """Maps (σ, s) to the per-step weights ``α_1..α_n, β_1..β_n`` (all positive)."""

    def __init__(self, in_nc: int = 2, out_nc: int = 16, channel: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(in_nc, channel, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channel, channel, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channel, out_nc, 1), nn.Softplus())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x) + 1e-6


class USRNet(nn.Module):
    """Data module + ResUNet prior unfolded ``n_iter`` times, steered by HyPaNet.

    Parameter names match the released state dicts (``p.*``, ``h.mlp.*``).
    """

    def __init__(self, n_iter: int = 8, h_nc: int = 64, in_nc: int = 4, out_nc: int = 3,
                 nc: Sequence[int] = (64, 128, 256, 512), nb: int = 2) -> None:
        super().__init__()
        self.p = ResUNet(in_nc=in_nc, out_nc=out_nc, nc=nc, nb=nb)
        self.h = HyPaNet(in_nc=2, out_nc=2 * n_iter, channel=h_nc)
        self.n = n_iter

    def hyper(self, sigma: float, scale: int, batch: int, device: torch.device) -> torch.Tensor:
        """``(batch, 2n, 1, 1)``: α for each step, then β for each step."""
        inp = torch.tensor([[float(sigma), float(scale)]], dtype=torch.float32, device=device)
        return self.h(inp.view(1, 2, 1, 1)).expand(batch, -1, -1, -1)

    def forward(self, y: torch.Tensor, otf: torch.Tensor, scale: int, sigma: float) -> torch.Tensor:
        """Super-resolve ``y`` (B, 3, h, w) on the periodic grid of ``otf`` (s·h, s·w); σ in [0, 1] units."""
        data = Degradation.from_otf(otf, scale).prox_l2_solver(y)
        x = F.interpolate(y, scale_factor=scale, mode="nearest")
        ab = self.hyper(sigma, scale, y.shape[0], y.device)
        for i in range(self.n):
            x = data(x, ab[:, i:i + 1])
            beta = ab[:, self.n + i:self.n + i + 1].expand(-1, -1, x.shape[-2], x.shape[-1])
            x = self.p(torch.cat((x, beta), dim=1))
        return x


# --------------------------------------------------------------------------- kernel convention

def official_kernel(kernel: np.ndarray, scale: int) -> np.ndarray:
    """The kernel the released USRNet code expects for a stored (centred, correlation) ``kernel``.

    True-convolution orientation, with the subsampling phase built in:
    ``to_convolution(kernel_for_subsampling(kernel, scale))``.
    """
    return to_convolution(kernel_for_subsampling(kernel, scale))


def psf2otf(psf: np.ndarray | torch.Tensor, shape: tuple[int, int], *, device: torch.device | str = "cpu",
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Transfer function of a convolution kernel on a periodic ``shape`` grid (the authors' ``p2o``).

    The kernel is zero-padded at the top-left and rolled so its middle tap
    ``psf.shape // 2`` sits at the origin. Returned as the half spectrum
    (``torch.fft.rfft2`` layout, ``(H, W // 2 + 1)``) that
    :meth:`napari_kernelgan.physics.Degradation.from_otf` takes.
    """
    k = torch.as_tensor(np.asarray(psf, dtype=np.float64), dtype=dtype, device=device)
    kh, kw = k.shape
    if kh > shape[0] or kw > shape[1]:
        raise ValueError(f"a {kh}×{kw} kernel does not fit a {shape[0]}×{shape[1]} grid")
    grid = torch.zeros(shape, dtype=dtype, device=device)
    grid[:kh, :kw] = k
    grid = torch.roll(grid, (-(kh // 2), -(kw // 2)), dims=(0, 1))
    return torch.fft.rfft2(grid)


# --------------------------------------------------------------------------- loading

def _architecture(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Read the constructor arguments off a released state dict."""
    try:
        nc = [int(state["p.m_head.weight"].shape[0])] + [int(state[f"p.m_down{i}.0.res.0.weight"].shape[0])
                                                          for i in (2, 3)]
        nb = len({k.split(".")[2] for k in state if k.startswith("p.m_body.")})
        nc.append(int(state["p.m_body.0.res.0.weight"].shape[0]))
        return {
            "nc": nc, "nb": nb,
            "in_nc": int(state["p.m_head.weight"].shape[1]),
            "out_nc": int(state["p.m_tail.weight"].shape[0]),
            "h_nc": int(state["h.mlp.0.weight"].shape[0]),
            "n_iter": int(state["h.mlp.4.weight"].shape[0]) // 2,
        }
    except KeyError as exc:
        raise BadInputError(f"not a USRNet state dict: key {exc} is missing") from None


@lru_cache(maxsize=2)
def _load_cached(path: str, mtime: float, device: str) -> USRNet:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and not any(k.startswith("p.") for k in state):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadInputError(f"{path} does not hold a state dict")
    model = USRNet(**_architecture(state))
    model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    return model.to(device)


def load_usrnet(weights: str | os.PathLike | None = None, device: torch.device | str = "cpu") -> USRNet:
    """Load released USRNet weights (tiny or full, read off the file) in eval mode.

    ``weights`` is resolved by :func:`napari_kernelgan.weights.resolve_weights`;
    a missing file raises :class:`~napari_kernelgan.errors.WeightsMissingError`
    saying which file to get and where to put it.
    """
    path = resolve_weights("usrnet", weights)
    return _load_cached(str(path.resolve()), path.stat().st_mtime, str(torch.device(device)))


# --------------------------------------------------------------------------- SR

def _symmetric_index(p: np.ndarray, n: int) -> np.ndarray:
    q = np.mod(p, 2 * n)
    return np.where(q >= n, 2 * n - 1 - q, q)


def smooth_wrap(padded: np.ndarray, before: int, after: int, axis: int) -> np.ndarray:
    """Make a reflection-padded array continuous across its periodic wrap along ``axis``.

    The ``before + after`` padded samples, read in wrap order (the ``after``
    block, then the ``before`` block), are a raised-cosine blend from the
    symmetric continuation of the image's far end to that of its near end. The
    plain reflection jumps where the period closes; deconvolving that jump with
    a broad kernel rings far into the image.
    """
    total = before + after
    if total == 0:
        return padded
    a = np.moveaxis(np.array(padded, copy=True), axis, -1)
    n = a.shape[-1] - total
    inner = a[..., before:before + n]
    t = np.arange(total)
    far = inner[..., _symmetric_index(n + t, n)]
    near = inner[..., _symmetric_index(t - total, n)]
    w = (0.5 - 0.5 * np.cos(np.pi * (t + 0.5) / total)).astype(a.dtype)
    region = (1 - w) * far + w * near
    a[..., before + n:] = region[..., :after]
    a[..., :before] = region[..., after:]
    return np.moveaxis(a, -1, axis)


@torch.no_grad()
def usrnet_sr(lr: np.ndarray, kernel: np.ndarray, scale: int, model: USRNet, *,
              device: torch.device | str = "cpu", noise_level: float = 2.0, pad: int = 16) -> np.ndarray:
    """Super-resolve one LR array (C, h, w) in [0, 1] with a stored kernel; float32 (C, s·h, s·w).

    No tiling here; see :func:`usrnet` for the registered method.
    """
    dev = torch.device(device)
    channels = lr.shape[0]
    radius = -(-(max(kernel.shape) // 2 + 1) // scale)
    padded, pads = reflect_pad_lr(np.asarray(lr, dtype=np.float32), max(int(pad), radius), scale)
    padded = smooth_wrap(smooth_wrap(padded, pads[0], pads[1], -2), pads[2], pads[3], -1)
    y = torch.as_tensor(np.ascontiguousarray(padded), device=dev)
    if channels == 3:
        y = y[None]
    else:
        y = y[:, None].expand(-1, 3, -1, -1)
    # The package's operator; psf2otf(official_kernel(...)) is the same transfer function (see the module docstring).
    otf = Degradation(kernel, scale, "circular").otf((y.shape[-2] * scale, y.shape[-1] * scale), device=dev)
    x = model(y, otf, scale, float(noise_level) / 255.0)
    out = x[0] if channels == 3 else x.mean(dim=1)
    return crop_hr(out, pads, scale).float().cpu().numpy()


WEIGHTS = declare_weights(WeightSpec(
    key="usrnet",
    title="USRNet",
    env_var="NAPARI_KERNELGAN_USRNET_WEIGHTS",
    filenames=("usrnet_tiny.pth", "usrnet.pth"),
    source=("the official USRNet release by the authors (https://github.com/cszn/USRNet, "
            "model_zoo: usrnet_tiny.pth or usrnet.pth)"),
))


@register("usrnet", kind="sr_method", summary="USRNet (Zhang et al. 2020), the unfolded network; needs the "
          "authors' released weights", defaults=DEFAULTS, main=("weights", "noise_level"), weights=(WEIGHTS.key,),
          help={"weights": "usrnet_tiny.pth / usrnet.pth, or a folder holding one; unset: "
                           f"${WEIGHTS.env_var}, the config file, the default folder",
                "noise_level": "σ of the LR noise in the image's own units (ADU for uint16); measured unless "
                               "given, the safeguards on"}, seeded=False,
          ranges={"noise_level": Interval(float, 0, 255), "pad": Interval(int, 0, None), "tile": Interval(int, 0, None),
                  "overlap": Interval(int, 0, None)})
def usrnet(frames: np.ndarray, kernel: np.ndarray, scale: int, *, device: torch.device, seed: int = 0,
           **options: Any) -> Generator[Progress, None, np.ndarray]:
    """USRNet with released weights; deterministic (``seed`` unused).

    Options (see :data:`DEFAULTS`): ``weights`` (file or folder),
    ``noise_level`` (σ in [0, 255]), ``pad``, ``tile``, ``overlap``.
    """
    opts = {**DEFAULTS, **options}
    tile, overlap, pad = int(opts["tile"]), int(opts["overlap"]), int(opts["pad"])
    noise = float(opts["noise_level"])
    start = time.perf_counter()
    model = load_usrnet(opts["weights"], device)
    yield Progress(0, 1, time.perf_counter() - start, stage=Stage.PREPARE, message=f"USRNet loaded ({model.n} steps)")
    k = np.asarray(kernel, dtype=np.float64)

    def process(lr_tile: np.ndarray) -> np.ndarray:
        return usrnet_sr(lr_tile, k, scale, model, device=device, noise_level=noise, pad=pad)

    return (yield from iter_tiled(frames, scale, process, tile=tile, overlap=overlap, start=start))
