"""``closed-form``: kernel-aware SR by half-quadratic splitting, no learned weights.

The method minimises ``1/(2σ²) ‖(x ⋆ k)↓s − y‖² + λ·TV(x)`` by alternating

(a) the data step ``z = argmin ‖(z ⋆ k)↓s − y‖² + α_i ‖z − x‖²``, solved exactly
    per frequency (:meth:`Degradation.prox_l2 <napari_kernelgan.physics.Degradation.prox_l2>`,
    USRNet's data module, Zhang et al. CVPR 2020 eq. 7) on a periodic grid; every
    tile carries ``overlap`` LR pixels of context (symmetric reflection at
    the image border), so the wrap seam falls outside the kept pixels; and
(b) the prior step ``x = argmin ½‖x − z‖² + w_i·TV(x)`` (isotropic total
    variation, Chambolle's projection, warm-started across steps).

Schedule (the plug-and-play rule of Zhang et al., as in DPIR and USRNet's
HyPaNet): the prior's noise level ``β_i`` falls log-spaced from
``beta_start`` to ``floor = max(sigma, beta_end)`` over ``iterations``
steps, ``α_i = lam · floor² / β_i²`` and ``w_i = tv_scale · β_i / 255``
(noise levels in [0, 255] units, images in [0, 1]). The iterate starts from
bicubic interpolation. The defaults were tuned on DIV2KRK images 2 and 13
(ground-truth kernels); ``iterations`` defaults to ``4·(s − 1)`` because the
part of the HR spectrum the data cannot see grows with the scale. Everything
runs in float32 torch on the given device, all channels of a tile at once.
"""
from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from ..constraints import Interval
from ..errors import BadOptionError
from ..physics.operators import Degradation
from ..physics.resize import imresize
from ..registry import register
from ..types import Progress
from .common import crop_hr, iter_tiled, reflect_pad_lr

__all__ = ["DEFAULTS", "resolve_options", "hqs_schedule", "tv_denoise", "closed_form_sr", "closed_form"]

DEFAULTS: dict[str, Any] = {
    "sigma": None,         # noise std of the LR image, [0, 255] here; None: 0 (the API measures it: "auto")
    "iterations": None,    # HQS steps; None: 4·(scale − 1)
    "beta_start": 49.0,    # prior noise level of the first step, [0, 255]
    "beta_end": 0.5,       # floor of the prior noise level (8-bit quantisation, model error)
    "lam": 0.1,            # α_i = lam · floor² / β_i²
    "tv_scale": 0.4,       # TV weight per unit of β
    "tv_iterations": 4,    # Chambolle steps per prior step
    "tile": None,          # LR tile core size; None: 512 // scale (cache-sized); 0: whole image
    "overlap": None,       # LR context pixels around each tile; None: max(24, 8·scale)
}

RANGES = {"sigma": Interval(float, 0, 255), "iterations": Interval(int, 1, None),
          "beta_start": Interval(float, 0, None, closed="neither"), "beta_end": Interval(float, 0, None),
          "lam": Interval(float, 0, None, closed="neither"), "tv_scale": Interval(float, 0, None),
          "tv_iterations": Interval(int, 0, None), "tile": Interval(int, 0, None), "overlap": Interval(int, 0, None)}


def resolve_options(options: dict[str, Any], scale: int) -> dict[str, Any]:
    """Fill the scale-dependent defaults (``iterations``, ``tile``, ``overlap``) and check values."""
    opts = dict(options)
    if opts["sigma"] is None:
        opts["sigma"] = 0.0
    if opts["iterations"] is None:
        opts["iterations"] = 4 * (scale - 1)
    if opts["tile"] is None:
        opts["tile"] = 512 // scale
    if opts["overlap"] is None:
        # Measured on DIV2KRK: with less context the tiles' seams show (up to several grey levels).
        opts["overlap"] = max(24, 8 * scale)
    # the values' ranges (RANGES) are checked by the registry; what is left is how they combine
    for name in ("iterations", "tv_iterations", "tile", "overlap"):
        opts[name] = int(opts[name])
    for name in ("sigma", "beta_start", "beta_end", "lam", "tv_scale"):
        opts[name] = float(opts[name])
    hqs_schedule(opts["iterations"], opts["sigma"], opts["beta_start"], opts["beta_end"], opts["lam"],
                 opts["tv_scale"])
    return opts


def hqs_schedule(iterations: int, sigma: float, beta_start: float, beta_end: float, lam: float,
                 tv_scale: float) -> list[tuple[float, float]]:
    """``(α_i, w_i)`` for each HQS step; see the module docstring. Noise levels in [0, 255]."""
    if iterations < 1:
        raise BadOptionError(f"closed-form needs at least 1 iteration, got {iterations}")
    floor = max(float(sigma), float(beta_end))
    if floor <= 0 or beta_start <= 0 or lam <= 0:
        raise BadOptionError("closed-form needs beta_start > 0, lam > 0 and max(sigma, beta_end) > 0")
    start = max(float(beta_start), floor)
    betas = np.logspace(np.log10(start), np.log10(floor), iterations)
    return [(float(lam * floor ** 2 / b ** 2), float(tv_scale * b / 255.0)) for b in betas]


def tv_denoise(image: torch.Tensor, weight: float, iterations: int,
               dual: tuple[torch.Tensor, torch.Tensor] | None = None,
               ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Approximate ``argmin_x ½‖x − image‖² + weight·TV(x)`` per channel (Chambolle 2004).

    Isotropic TV with forward differences and Neumann boundary, step 1/4.
    ``image``: (..., H, W). ``dual`` warm-starts the dual field (two tensors
    shaped like ``image``, in the units of ``weight``). Returns ``(x, dual)``.
    """
    if dual is None:
        p0, p1 = torch.zeros_like(image), torch.zeros_like(image)
    else:
        p0, p1 = dual
    x = torch.empty_like(image)
    gx, gy, nrm = torch.zeros_like(image), torch.zeros_like(image), torch.empty_like(image)

    def primal() -> None:
        # x = image − div p, with div the negative adjoint of the forward difference.
        torch.sub(image, p0, out=x)
        x.sub_(p1)
        x[..., 1:, :].add_(p0[..., :-1, :])
        x[..., :, 1:].add_(p1[..., :, :-1])

    primal()
    if weight <= 0:
        return x, (p0, p1)
    tau = 0.25
    # In-place updates on preallocated buffers: the loop is memory-bound.
    for _ in range(iterations):
        torch.sub(x[..., 1:, :], x[..., :-1, :], out=gx[..., :-1, :])
        torch.sub(x[..., :, 1:], x[..., :, :-1], out=gy[..., :, :-1])
        torch.mul(gx, gx, out=nrm)
        nrm.addcmul_(gy, gy).sqrt_().mul_(tau / weight).add_(1.0)
        p0.sub_(gx, alpha=tau).div_(nrm)
        p1.sub_(gy, alpha=tau).div_(nrm)
        primal()
    return x, (p0, p1)


@torch.no_grad()
def closed_form_sr(lr: np.ndarray, kernel: np.ndarray, scale: int, *, device: torch.device | str = "cpu",
                   sigma: float = 0.0, iterations: int | None = None, beta_start: float = 49.0,
                   beta_end: float = 0.5, lam: float = 0.1, tv_scale: float = 0.4, tv_iterations: int = 4,
                   pad: int = 12) -> np.ndarray:
    """Super-resolve one LR array (C, h, w) in [0, 1] with a stored kernel; returns float32 (C, s·h, s·w).

    The whole array is one FFT grid, padded by ``pad`` LR pixels of symmetric
    reflection (and up to FFT-friendly sizes). The registered method
    :func:`closed_form` calls this per tile.
    """
    if iterations is None:
        iterations = 4 * (scale - 1)
    schedule = hqs_schedule(iterations, sigma, beta_start, beta_end, lam, tv_scale)
    padded, pads = reflect_pad_lr(np.asarray(lr, dtype=np.float32), max(int(pad), 0), scale)
    dev = torch.device(device)
    y = torch.as_tensor(padded, device=dev)
    x = torch.as_tensor(np.ascontiguousarray(imresize(padded, scale, axes=(-2, -1)), dtype=np.float32),
                        device=dev)
    data = Degradation(kernel, scale, "circular").prox_l2_solver(y)
    dual = None
    prev_w = 0.0
    for alpha, weight in schedule:
        z = data(x, alpha)
        if dual is not None and prev_w > 0:
            # The dual field lives in units of the TV weight; carry it over to the new weight.
            dual = (dual[0].mul_(weight / prev_w), dual[1].mul_(weight / prev_w))
        x, dual = tv_denoise(z, weight, int(tv_iterations), dual)
        prev_w = weight
    return crop_hr(x, pads, scale).cpu().numpy()


# When the kernel is an estimate, a noise floor keeps the data step from over-sharpening where the estimate is
# too wide (measured in the blind sections of docs/benchmarks.md). Safe SR (sr/_safety.py) uses it as the floor
# at neutral confidence and scales it with the estimate's confidence.
BLIND_DEFAULTS: dict[str, Any] = {"sigma": 2.0}

OPTION_HELP = {
    "sigma": "noise std of the LR image in the image's own units (ADU for uint16, its values for float); "
             "unset: auto, measured from the image (0 with the safeguards off)",
    "iterations": "half-quadratic splitting steps; unset: 4·(scale − 1)",
    "tile": "LR tile side; unset: 512 // scale; 0: the whole image at once",
}


@register("closed-form", kind="sr_method", summary="Closed-form kernel-aware SR (exact FFT data step + TV prior), "
          "no weights", defaults=DEFAULTS, main=("sigma", "iterations"), help=OPTION_HELP,
          blind_defaults=BLIND_DEFAULTS, seeded=False, ranges=RANGES)
def closed_form(frames: np.ndarray, kernel: np.ndarray, scale: int, *, device: torch.device, seed: int = 0,
                **options: Any) -> Generator[Progress, None, np.ndarray]:
    """Kernel-aware SR by HQS (exact FFT data step + TV prior); deterministic (``seed`` unused).

    Options (see :data:`DEFAULTS`): ``sigma``, ``iterations``, ``beta_start``,
    ``beta_end``, ``lam``, ``tv_scale``, ``tv_iterations``, ``tile``,
    ``overlap``. Yields progress once per tile.
    """
    opts = resolve_options({**DEFAULTS, **options}, scale)
    tile, overlap = opts.pop("tile"), opts.pop("overlap")
    start = time.perf_counter()
    k = np.asarray(kernel, dtype=np.float64)

    def process(lr_tile: np.ndarray) -> np.ndarray:
        # The tiler already gives every tile ``overlap`` pixels of context: no extra padding.
        return closed_form_sr(lr_tile, k, scale, device=device, pad=0, **opts)

    return (yield from iter_tiled(frames, scale, process, tile=tile, overlap=overlap, start=start))
