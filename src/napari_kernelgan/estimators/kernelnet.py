"""KernelNet-style closed-form kernel estimation (Yamac, Ataman, Nakamura, CVPRW 2021).

Two Fourier-domain steps, no iterations and no training:

* **FFT-1** - the least-squares kernel ``k_lr`` relating the image's gradients
  ``∇B`` to predicted sharp gradients ``∇S`` (their eq. 11)::

      K(ω) = Σ_{d∈{x,y}} conj(F(∂_d S)) F(∂_d B) / (Σ_d |F(∂_d S)|² + ε)

  transformed back, cropped to its support, negatives clipped, normalised.
  ``k_lr`` is the blur in *LR pixels*. The sharp gradients come from a shock
  filter with a noise-adaptive pre-smoothing, masked to strong, coherent edges
  (:mod:`._sharp`).
* **FFT-2** - their Algorithm 1: from the LR-scale kernel to the SR kernel by
  self-convolution in the Fourier domain. The ×s SR kernel ``k_s`` acts on HR
  pixels, so in LR pixels the blur is ``k_s`` squeezed by ``s`` (covariance
  ``Σ_s / s²``). A Gaussian's spectrum raised to the power ``p`` is the Gaussian
  of ``p`` times its covariance, so ``K_lr^{s²}`` sampled on the LR grid holds
  the values of ``k_s`` on the HR grid. Estimators here return the ×2 kernel; a
  ×4 input's blur is ``k4 = k2 ⊛ dilate2(k2)`` (covariance ``5 Σ_2``), seen in
  LR pixels as ``5 Σ_2 / 16``, so the power is ``16 / 5`` there.

A residual bias - scene edges are never perfect steps, and the shock filter
leaves some of the noise pre-smoothing in its steps - is removed by
deconvolving a small isotropic Gaussian (``bias`` option, HR px²) in the same
Fourier step. Its clean-image values (0.6 at ×2, 0.15 at ×4) were chosen on
synthetic data only (scikit-image photographs blurred with random
DIV2KRK-protocol kernels); the growth with noise (``NOISE_BIAS``) and the
pre-smoothing per unit of noise (``_sharp.NOISE_SMOOTH``) by 2-fold
cross-validation on DIV2KRK dev images 1-30 with σ = 10/255 noise (fitted on
the odd images and checked on the even ones and vice versa; both folds chose
the same pre-smoothing; the noise term is the one value per grey level that
gives the lowest mean L1 over ×2 and ×4). See ``benchmarks/calibrate_kernelnet.py``,
whose ``--record`` mode writes both to the record ``kernelnet``
(``napari_kernelgan/records/kernelnet.json``) that this module loads at import.
"""
from __future__ import annotations

import math
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch
from scipy import fft as sfft
from scipy import ndimage

from ..constraints import Interval
from ..errors import BadInputError, BadOptionError
from ..physics.conventions import centre_kernel, pad_to
from ..physics.metrics import second_moments
from ..records import record_values
from ..registry import register, register_tiles
from ..types import KernelEstimate, Progress, TileResult
from ..vocabulary import KERNEL_SIZE, Stage
from ._sharp import estimate_noise, forward_gradients, sharp_gradients

__all__ = ["lr_kernel", "self_convolve", "sr_power", "default_bias", "estimate_lr_kernel", "kernelnet"]

# Design choices (not fitted):
SUPPORT = 9          # side of the LR-scale kernel (LR px); DIV2KRK blurs reach σ ≈ 1.3 LR px
EPSILON = 1e-2       # Tikhonov weight of FFT-1, relative to the mean sharp-gradient power
FLOOR = 0.1          # LR-kernel taps below this fraction of the peak are noise
MIN_SIZE = 48        # smallest side (px) with enough edges away from the border
# Fitted by benchmarks/calibrate_kernelnet.py --record, loaded from its record (records/kernelnet.json):
_FITTED = record_values("kernelnet")
# isotropic variance (HR px² of the ×2 kernel) removed in FFT-2 on a clean image, per scale
BIAS: dict[int, float] = {int(k): float(v) for k, v in _FITTED["bias"].items()}
# added per unit of estimated luminance noise σ in [0, 1] (the record holds it per 8-bit grey level)
NOISE_BIAS = float(_FITTED["noise_bias_per_grey_level"]) * 255
FFT2_GRID = 64       # grid of the self-convolution (wide enough that nothing wraps around)


def sr_power(scale: int) -> float:
    """Self-convolution power taking the LR-scale kernel of a ×``scale`` image to the ×2 SR kernel."""
    if scale == 2:
        return 4.0
    if scale == 4:
        # Σ_lr = Σ_4 / 16 and Σ_4 = 5 Σ_2 for k4 = k2 ⊛ dilate2(k2).
        return 16.0 / 5.0
    raise BadOptionError(f"kernelnet: scale must be 2 or 4, got {scale}")


def _clean(k: np.ndarray, floor: float) -> np.ndarray:
    """Clip negatives, zero taps below ``floor`` × the peak, keep the blob holding the peak.

    Least-squares noise spreads small positive taps over the whole support; far
    from the centre they weigh heavily in the second moments (Cho & Lee clip
    below 1/20 of the peak for the same reason).
    """
    k = np.clip(k, 0, None)
    if k.max() <= 0:
        return k
    k = np.where(k >= floor * k.max(), k, 0.0)
    labels, _ = ndimage.label(k > 0)
    peak = labels[np.unravel_index(np.argmax(k), k.shape)]
    return np.where(labels == peak, k, 0.0)


_CROSS = ndimage.generate_binary_structure(2, 1)[None]  # 4-connected in each image, none across the stack
NO_EDGES = ("kernelnet: no strong, coherent edges were found; the image has too little structure (or too much "
            "noise) to estimate a blur")
EMPTY = ("kernelnet: the least-squares kernel is empty; the image has too little usable edge structure to estimate "
         "a blur")


def lr_kernels(sharp: tuple[np.ndarray, np.ndarray], blurred: tuple[np.ndarray, np.ndarray],
               support: int = SUPPORT, epsilon: float = EPSILON,
               floor: float = FLOOR) -> list[tuple[np.ndarray, float] | str]:
    """FFT-1 for a stack of images at once: for each of (T, h, w) sharp and blurred gradient pairs, the
    least-squares correlation kernel ``k`` with ``∇B ≈ ∇S ⋆ k`` (LR pixels) and the R² it reaches, or the
    reason there is none. All T solves share one batched FFT."""
    sx, sy = (np.asarray(a)[None] if np.ndim(a) == 2 else np.asarray(a) for a in sharp)
    bx, by = (np.asarray(a)[None] if np.ndim(a) == 2 else np.asarray(a) for a in blurred)
    shape = sx.shape[-2:]
    # Zero-pad to sizes with small prime factors (678 = 2·3·113 is slow); nothing wraps into the
    # masked edges, which stay ``margin`` pixels inside the image.
    fast = (sfft.next_fast_len(shape[0], real=True), sfft.next_fast_len(shape[1], real=True))
    specs = [(sfft.rfft2(s, fast, workers=-1), sfft.rfft2(b, fast, workers=-1)) for s, b in ((sx, bx), (sy, by))]
    num = sum(np.conj(fs) * fb for fs, fb in specs)
    den = sum(fs.real ** 2 + fs.imag ** 2 for fs, _ in specs)
    power = den.mean(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):  # a tile without edges: 0 / 0, reported below
        kern = sfft.irfft2(num / (den + epsilon * power[:, None, None]), s=fast, workers=-1)
    # The convolution kernel sits around index 0; ∇B = ∇S * k (convolution) is ∇S ⋆ flip(k).
    r = support // 2
    rows = np.arange(-r, r + 1) % fast[0]
    cols = np.arange(-r, r + 1) % fast[1]
    out: list[tuple[np.ndarray, float] | str] = []
    cleaned = np.zeros((len(sx),) + fast)
    kernels: list[np.ndarray | None] = []
    for t in range(len(sx)):
        if not power[t] > 0:
            kernels.append(None)
            continue
        k = _clean(kern[t][np.ix_(rows, cols)][::-1, ::-1], floor)
        total = k.sum()
        if not np.isfinite(total) or total <= 0:
            kernels.append(None)
            continue
        kernels.append(k / total)
        cleaned[t][np.ix_(rows, cols)] = kernels[-1][::-1, ::-1]
    # R² of each cleaned kernel's prediction, over the pixels the sharp edges reach through it.
    fk = sfft.rfft2(cleaned, workers=-1)
    res = np.zeros(len(sx))
    tot = np.zeros(len(sx))
    region = ndimage.binary_dilation((sx != 0) | (sy != 0), structure=_CROSS, iterations=r)
    for (fs, _), b in zip(specs, (bx, by)):
        pred = sfft.irfft2(fs * fk, s=fast, workers=-1)[..., :shape[0], :shape[1]]
        res += ((b - pred) ** 2 * region).sum(axis=(-2, -1))
        tot += (b ** 2 * region).sum(axis=(-2, -1))
    for t, k in enumerate(kernels):
        if k is None:
            out.append(NO_EDGES if not power[t] > 0 else EMPTY)
        else:
            out.append((k, float(np.clip(1.0 - res[t] / max(tot[t], 1e-30), 0.0, 1.0))))
    return out


def lr_kernel(sharp: tuple[np.ndarray, np.ndarray], blurred: tuple[np.ndarray, np.ndarray],
              support: int = SUPPORT, epsilon: float = EPSILON, floor: float = FLOOR) -> tuple[np.ndarray, float]:
    """FFT-1: least-squares correlation kernel ``k`` with ``∇B ≈ ∇S ⋆ k`` (LR pixels).

    ``sharp`` holds the (masked) sharp gradients, ``blurred`` the image's own.
    Returns the kernel (``support`` × ``support``, non-negative, sum 1) and the
    fraction of the blurred gradients' energy it explains around the sharp edges
    (R², 0 when it explains nothing).
    """
    result = lr_kernels(sharp, blurred, support, epsilon, floor)[0]
    if isinstance(result, str):
        raise BadInputError(result)
    return result


def self_convolve(k_lr: np.ndarray, power: float, size: int = KERNEL_SIZE, bias: float = 0.0,
                  grid: int = FFT2_GRID) -> np.ndarray:
    """FFT-2: the SR kernel (``size`` × ``size``, centred, sum 1) from the LR-scale kernel.

    ``K_lr(ω)^power`` on the LR grid, optionally divided by the spectrum of an
    isotropic Gaussian of variance ``bias`` (px², floor so nothing is amplified
    past the DC value), back to space, cropped, clipped and centred.
    """
    k = centre_kernel(np.asarray(k_lr, dtype=np.float64))
    padded = pad_to(k, grid + 1)[:grid, :grid]                 # middle pixel lands on index grid // 2
    spec = sfft.fft2(sfft.ifftshift(padded))
    # Principal-branch power: the spectrum of a centred, compact kernel is near the positive real axis
    # wherever it is not negligible, so the branch cut only touches values that vanish after ``power``.
    out_spec = np.exp(power * np.log(spec + 1e-300))
    if bias > 0:
        w = 2 * np.pi * sfft.fftfreq(grid)
        wy, wx = np.meshgrid(w, w, indexing="ij")
        out_spec = out_spec * np.exp(0.5 * bias * (wy ** 2 + wx ** 2))
        out_spec = np.where(np.abs(out_spec) > 1.0, out_spec / np.abs(out_spec), out_spec)
    out = sfft.fftshift(sfft.ifft2(out_spec).real)
    out = np.clip(out, 0, None)
    out = pad_to(np.pad(out, ((0, 1), (0, 1))), size)         # grid // 2 back to the middle of an odd grid
    out = centre_kernel(out / out.sum())
    return out / out.sum()


def default_bias(scale: int, noise: float) -> float:
    """The ``bias`` used when none is given: the clean-image value for ``scale`` plus a noise term."""
    return BIAS[scale] + NOISE_BIAS * float(noise)


def _luminance(frame: np.ndarray) -> np.ndarray:
    if frame.shape[0] >= 3:
        return (0.299 * frame[0] + 0.587 * frame[1] + 0.114 * frame[2]).astype(np.float32)
    return frame.mean(0).astype(np.float32)


def _check_gray(gray: np.ndarray) -> None:
    if gray.ndim != 2:
        raise BadInputError(f"kernelnet: expected a 2-D image, got shape {gray.shape}")
    if not np.all(np.isfinite(gray)):
        raise BadInputError("kernelnet: the image contains NaN or infinite values")
    if min(gray.shape) < MIN_SIZE:
        raise BadInputError(f"kernelnet: the image is {gray.shape[0]}×{gray.shape[1]} pixels; at least "
                            f"{MIN_SIZE}×{MIN_SIZE} is needed to find edges away from the border")
    if float(gray.max() - gray.min()) < 1e-6:
        raise BadInputError("kernelnet: the image is constant; a blur cannot be estimated without edges")


def estimate_lr_kernel(gray: np.ndarray, *, support: int = SUPPORT, epsilon: float = EPSILON,
                       noise: float | None = None, **sharp_options: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """LR-scale blur of a grayscale image in [0, 1] (FFT-1 on predicted sharp gradients)."""
    gray = np.asarray(gray, dtype=np.float32)
    _check_gray(gray)
    sigma_n = estimate_noise(gray) if noise is None else float(noise)
    sg = sharp_gradients(gray, sigma_n, **sharp_options)
    if sg.mask.sum() < 50:
        raise BadInputError("kernelnet: fewer than 50 strong, coherent edge pixels; the image has too little "
                            "structure (or too much noise) to estimate a blur")
    k, explained = lr_kernel((sg.gx, sg.gy), forward_gradients(gray), support, epsilon)
    return k, {"noise": sigma_n, "support": sg.support, "explained": explained, "edge_pixels": int(sg.mask.sum())}


def _confidence(infos: list[dict[str, Any]]) -> float:
    """Heuristic trust in [0, 1]: enough strong edges, and a kernel that explains their blurred gradients."""
    support = sum(i["edge_pixels"] for i in infos)
    amount = 1.0 - math.exp(-support / 2000.0)
    explained = float(np.mean([i["explained"] for i in infos]))
    return float(np.clip(amount * explained, 0.0, 1.0))


def _check_options(support: int, size: int, epsilon: float, bias: float | None) -> float | None:
    """What the declared ranges cannot say (odd sides); returns ``bias`` as a float (or ``None``)."""
    for name, value in (("support", support), ("size", size)):
        if int(value) % 2 == 0:
            raise BadOptionError(f"kernelnet: {name} must be odd, got {value}")
    return None if bias is None else float(bias)


@register("kernelnet", kind="estimator",
          summary="KernelNet (closed form, well under a second): least-squares blur between the image's "
                  "gradients and shock-filtered sharp ones, then Fourier self-convolution to the SR kernel",
          defaults={"support": SUPPORT, "epsilon": EPSILON, "bias": None, "size": KERNEL_SIZE},
          main=("epsilon",),
          ranges={"support": Interval(int, 3, None), "epsilon": Interval(float, 0, None, closed="neither"),
                  "bias": Interval(float, 0, None), "size": Interval(int, 3, None)},
          help={"support": "side of the LR-scale kernel in LR pixels (odd)",
                "epsilon": "regularisation of the least-squares kernel, relative to the sharp-gradient power",
                "bias": "isotropic variance (HR px²) removed from the SR kernel (scene edges are not steps); "
                        "unset: 0.6 at ×2, 0.15 at ×4, plus 0.06 per grey level of estimated noise",
                "size": "side of the returned ×2 kernel (odd)"}, seeded=False)
def kernelnet(frames: np.ndarray, *, scale: int = 2, device: torch.device | None = None, seed: int = 0,
              report_every: int = 50, support: int = SUPPORT, epsilon: float = EPSILON, bias: float | None = None,
              size: int = KERNEL_SIZE) -> Generator[Progress, None, KernelEstimate]:
    """Closed-form ×2 kernel by KernelNet's FFT-1 / FFT-2 (deterministic; CPU; ``seed`` unused)."""
    bias = _check_options(support, size, epsilon, bias)
    power = sr_power(scale)
    start = time.perf_counter()
    n = len(frames)
    yield Progress(0, n + 1, 0.0, stage=Stage.ESTIMATE, message="predicting sharp gradients")
    kernels, infos = [], []
    for i, frame in enumerate(frames):
        k, info = estimate_lr_kernel(_luminance(np.asarray(frame)), support=int(support), epsilon=float(epsilon))
        kernels.append(k * info["edge_pixels"])
        infos.append(info)
        yield Progress(i + 1, n + 1, time.perf_counter() - start, stage=Stage.ESTIMATE,
                       message=f"frame {i + 1}/{n}: least-squares kernel")
    k_lr = np.sum(kernels, axis=0)
    k_lr = k_lr / k_lr.sum()
    noise = float(np.mean([i["noise"] for i in infos]))
    applied_bias = default_bias(scale, noise) if bias is None else float(bias)
    kernel = self_convolve(k_lr, power, int(size), applied_bias)
    cov = second_moments(kernel)
    yield Progress(n + 1, n + 1, time.perf_counter() - start, stage=Stage.ESTIMATE, kernel=kernel,
                   message="self-convolved to the SR kernel")
    # numpy and scipy only, whatever device was asked for: "cpu" is where it ran
    return KernelEstimate(kernel=kernel, dmap=None, loss_history={}, iterations=0,
                          elapsed=time.perf_counter() - start, device="cpu", seed=seed,
                          confidence=_confidence(infos),
                          extras={"covariance": cov.tolist(), "kernel_lr": k_lr.tolist(), "power": power,
                                  "noise": noise, "bias": applied_bias,
                                  "edge_pixels": int(sum(i["edge_pixels"] for i in infos)),
                                  "explained": float(np.mean([i["explained"] for i in infos]))})


@register_tiles("kernelnet")
def kernelnet_tiles(frames: np.ndarray, boxes: np.ndarray, *, scale: int = 2, device: torch.device | None = None,
                    seed: int = 0, report_every: int = 50, support: int = SUPPORT, epsilon: float = EPSILON,
                    bias: float | None = None, size: int = KERNEL_SIZE) -> Generator[Progress, None, list[TileResult]]:
    """All tiles of a kernel map at once: the sharp gradients and the noise are predicted once per frame
    on the whole image, then FFT-1 solves every tile in one batched FFT (edges within the kernel's reach
    of a tile's border are left out, as at the image's border) and FFT-2 takes each to the SR kernel."""
    bias = _check_options(support, size, epsilon, bias)
    power = sr_power(scale)
    start = time.perf_counter()
    boxes = np.asarray(boxes).reshape(-1, 4)
    th, tw = int(boxes[0, 2] - boxes[0, 0]), int(boxes[0, 3] - boxes[0, 1])
    if np.any(boxes[:, 2] - boxes[:, 0] != th) or np.any(boxes[:, 3] - boxes[:, 1] != tw):
        raise BadOptionError("kernelnet: the tiles of a kernel map must share one size")
    margin = int(support) // 2 + 2
    inner = np.zeros((th, tw), dtype=bool)
    inner[margin:th - margin, margin:tw - margin] = True
    sums = [np.zeros((int(support), int(support))) for _ in boxes]
    edges = np.zeros(len(boxes))
    explained = [[] for _ in boxes]
    noises = []
    messages: dict[int, str] = {}
    for fi, frame in enumerate(frames):
        yield Progress(fi, len(frames), time.perf_counter() - start, stage=Stage.MAP,
                       message=f"kernelnet: sharp gradients of frame {fi + 1}")
        gray = _luminance(np.asarray(frame))
        _check_gray(gray)
        noise = estimate_noise(gray)
        noises.append(noise)
        sg = sharp_gradients(gray, noise)
        bx, by = forward_gradients(gray)

        def windows(a: np.ndarray, mask: bool = False) -> np.ndarray:
            out = np.stack([a[y0:y1, x0:x1] for y0, x0, y1, x1 in boxes])
            return out * inner if mask else out

        sx, sy = windows(sg.gx, True), windows(sg.gy, True)
        counts = ((sx != 0) | (sy != 0)).sum(axis=(-2, -1))
        results = lr_kernels((sx, sy), (windows(bx), windows(by)), int(support), float(epsilon))
        for t, (res, count) in enumerate(zip(results, counts)):
            if count < 50 or isinstance(res, str):
                messages.setdefault(t, res if isinstance(res, str) else
                                    f"kernelnet: {int(count)} strong, coherent edge pixels in the tile (50 needed)")
                continue
            k, r2 = res
            sums[t] += k * count
            edges[t] += count
            explained[t].append(r2)
    noise = float(np.mean(noises))
    applied_bias = default_bias(scale, noise) if bias is None else float(bias)
    out: list[TileResult] = []
    for t in range(len(boxes)):
        if edges[t] <= 0:
            out.append(TileResult(kernel=None, confidence=0.0, message=messages.get(t, NO_EDGES)))
            continue
        kernel = self_convolve(sums[t] / sums[t].sum(), power, int(size), applied_bias)
        conf = _confidence([{"edge_pixels": edges[t], "explained": float(np.mean(explained[t]))}])
        out.append(TileResult(kernel=kernel, confidence=conf, covariance=second_moments(kernel)))
    yield Progress(len(frames), len(frames), time.perf_counter() - start, stage=Stage.MAP,
                   message="kernelnet: tiles done")
    return out
