"""Safeguards for super-resolution with a kernel that may be wrong, on images that may be noisy.

A non-blind SR method trusts its kernel: given one that is too wide, its data
step sharpens edges that are already sharp and the result rings; given a noisy
image and no noise level, it amplifies the noise. Both can leave the output
far below plain bicubic interpolation. :func:`iter_safe_sr` wraps any
registered SR method so that this does not happen silently:

1. **Noise.** The noise level of the input is measured
   (:func:`~napari_kernelgan.physics.noise.estimate_noise_sigma`; where shot
   noise dominates, :func:`~napari_kernelgan.physics.noise.photon_limited`, the
   Poisson–Gaussian noise at the signal-weighted mean level, i.e. on the bright
   objects, see :func:`measure_noise`) and becomes the method's noise option
   (``sigma`` / ``noise_level``) unless the caller set it. Where that noise
   dominates, the closed-form TV prior's weight per unit of noise (``tv_scale``)
   is raised from 0.4 (tuned for clean 8-bit images) to 0.8: measured on noisy
   synthetic images (scikit-image samples, σ = 3 and 10, Gaussian and Poisson
   noise), 0.7–1.0 gain 1–2 dB over 0.4 there, while 0.4 stays best on clean
   images.
2. **Confidence.** The noise option grows as the kernel's confidence ``c``
   falls, in two ways. On a clean image it never goes below the floor
   ``s_b · FLOOR_SCALE[s] · (1 − c) / (1 − ½)`` (:func:`confidence_floor`), with
   ``s_b`` the method's blind default (2 for closed-form). On a noisy image
   (from a measured noise of 2/255) the measured noise is multiplied by
   ``1 + NOISE_DOUBT · (1 − c)`` (:func:`doubt_factor`): there a wrong kernel
   harms through the noise, and the harm grows with the noise. Whatever the
   confidence, a noisy image's measured noise is multiplied by at least
   :data:`NOISE_GAIN` (:func:`noise_gain`): even an exact kernel (a measured
   PSF, confidence 1) needs a prior level above the LR noise, which the data
   step's inverse filtering amplifies.
3. **Check and escalation.** Ringing and amplified noise raise the total
   variation; sharpening a monotone edge does not. The check compares the
   SR output's total variation with that of bicubic interpolation, block by
   block (48×48 HR pixels, blocks with structure only), and takes the 90th
   percentile of the ratios (:func:`ringing_score`), so that a region where the
   kernel is wrong (a spatially varying blur) is not averaged away. Above
   :func:`ringing_limit` (at ×2: 2.0 for a trusted kernel on a clean image, 1.4
   at confidence 0 or from a measured noise of 2/255; ``RINGING_SCALE[s]`` times
   that at other scales, since bicubic interpolation is smoother the larger the
   scale) the noise level is raised by :data:`LADDER_FACTOR` and the SR run
   again, up to :data:`LADDER_STEPS` times; if the last step still fails, the
   result is bicubic interpolation, with an :class:`UnsafeSRWarning` and
   ``"fallback": "bicubic"`` and the reason in the result's options.
   On large images the steps are tried on a few windows (a 3×3 grid of 96×96
   LR windows) and only the chosen one runs on the whole image.
4. **Photon-limited refinement.** Where the noise is Poisson–Gaussian and the
   method has a noise option, Richardson–Lucy steps refine the result, as many
   as cross-validation on binomially thinned counts says
   (:mod:`napari_kernelgan.sr._poisson`).
   Where that count reaches its limit, the kernel is wider than the image's
   blur (see :func:`~napari_kernelgan.sr._poisson.iter_refine`): the result is
   bicubic interpolation with an :class:`UnsafeSRWarning`; the total-variation
   check does not see this (over-sharpened bright nuclei score like sharp ones).

The ×2 limits and the ladder were chosen on synthetic data (scikit-image sample
images blurred with random DIV2KRK-protocol kernels, the true kernel against one
with twice its covariance), not on DIV2KRK: with the true kernel the score stays
at 1.3–1.6 at the blind noise floor (grass-like texture up to 2.0), with a
too-wide kernel it is 2.2–4.5, so a trusted kernel's limit sits at 2.0, between
the two; a kernel its estimator doubts gets a limit down to 1.4.
:data:`FLOOR_SCALE`, :data:`RINGING_SCALE`, :data:`NOISE_DOUBT` and the
refinement's :data:`~napari_kernelgan.sr._poisson.STEP_SCALE` are fitted by
``benchmarks/calibrate_safety.py`` (two-fold cross-validation on generated data
only: scikit-image photographs and dead leaves with the ``auto`` kernel, once
uniformly blurred and once half sharp, half blurred; for the noise knobs,
generated noisy fluorescence and the uniformly blurred photographs with
Gaussian noise; output in ``docs/calibration_safety.txt``) and loaded from
the record ``safety`` that script writes (``napari_kernelgan/records/safety.json``);
:data:`NOISE_GAIN` is fitted by ``benchmarks/calibrate_known_kernel.py`` (noisy fluorescence with
its true kernels; record ``known_kernel``); the ringing limits, :data:`NOISY_SIGMA` and the ladder are
design choices kept here;
``benchmarks/safety_benchmark.py`` and ``benchmarks/sr_benchmark.py`` report the
result on DIV2KRK.
"""
from __future__ import annotations

import warnings
from collections.abc import Generator, Mapping
from typing import Any

import numpy as np
from scipy import ndimage

from ..imaging import centre_crop
from ..physics.resize import imresize
from ..records import record_values
from ..types import NEUTRAL_CONFIDENCE, Progress
from . import _poisson

__all__ = ["UnsafeSRWarning", "NEUTRAL_CONFIDENCE", "RINGING_LIMIT", "RINGING_SCALE", "FLOOR_SCALE", "NOISE_DOUBT",
           "LADDER_FACTOR", "LADDER_STEPS", "NOISE_KEYS", "NOISE_GAIN", "measure_noise", "confidence_floor",
           "doubt_factor", "noise_gain",
           "ringing_limit", "noise_tv_scale", "ringing_score", "base_noise_level", "noise_ladder", "iter_safe_sr",
           "bicubic_frames"]

RINGING_LIMIT = 2.0        # highest accepted 90th-percentile block TV ratio of SR over bicubic, for a trusted kernel
RINGING_LIMIT_UNSURE = 1.4  # the same for a kernel of confidence 0 (in between: linear in the confidence)
NOISY_SIGMA = 2.0          # [0, 255]; from this measured noise on, the strict limit holds whatever the confidence
# Fitted by benchmarks/calibrate_safety.py, loaded from its record (records/safety.json); the other constants
# here are design choices (chosen by hand on synthetic data, see the module docstring).
_FITTED = record_values("safety")
NOISE_DOUBT = float(_FITTED["noise_doubt"])  # see doubt_factor
# the ringing limit per SR scale, relative to ×2
RINGING_SCALE: dict[int, float] = {int(k): float(v) for k, v in _FITTED["ringing_scale"].items()}
# the confidence floor per SR scale, relative to the blind default
FLOOR_SCALE: dict[int, float] = {int(k): float(v) for k, v in _FITTED["floor_scale"].items()}
# The noise level a fully trusted kernel needs on a noisy image, relative to the measured noise (see noise_gain);
# fitted by benchmarks/calibrate_known_kernel.py, loaded from its record (records/known_kernel.json).
NOISE_GAIN = float(record_values("known_kernel")["noise_gain"])
LADDER_FACTOR = 2.5        # noise level multiplier per escalation step
LADDER_STEPS = 2           # escalation steps before falling back to bicubic
NOISE_KEYS = ("sigma", "noise_level")   # the noise option of closed-form, USRNet
DEFAULT_BLIND_SIGMA = 2.0  # [0, 255]; the floor at neutral confidence for a method without blind defaults
PROBE_PIXELS = 320 * 320   # up to this many LR pixels the steps run on the whole input
PROBE_WINDOW = 96          # LR side of a probe window on larger inputs
NOISE_CROP = 512           # LR side of the centre crop the noise is measured on
BLOCK = 48                 # HR side of a block of the ringing score
TV_SCALE_CLEAN, TV_SCALE_NOISY = 0.4, 0.8


class UnsafeSRWarning(UserWarning):
    """SR with the given kernel would have been worse than bicubic interpolation: bicubic was returned."""


def measure_noise(frames: np.ndarray) -> dict[str, Any]:
    """Noise of (N, C, H, W) frames in [0, 1], as ``{"noise_sigma": σ in [0, 255], "noise_model": ...}``.

    Measured on the middle frame (a centre crop of at most 512×512). Where the
    Poisson–Gaussian fit says the noise grows with the signal (its signal
    part dominates at the mean intensity), σ is the noise at the
    signal-weighted mean level, ``√(a·E[z²]/E[z] + b)``: the noise on the
    bright objects, which the flat-region Gaussian estimate (dark background
    in fluorescence) and the RMS over the crop would underrate; the record
    then also holds the fit's ``poisson_a`` and ``poisson_b`` (``var = a·E[z] + b``).
    """
    from ..physics.noise import estimate_noise_sigma, photon_limited

    crop = centre_crop(np.asarray(frames[frames.shape[0] // 2], dtype=np.float64), NOISE_CROP)
    sigma = float(estimate_noise_sigma(crop))
    model = "gaussian"
    shot = photon_limited(crop)
    if shot is not None:
        # The noise that matters is where the structure is: the bright objects of a fluorescence image,
        # not its dark background. The signal-weighted mean level E[z²]/E[z] stands for them.
        a, b = shot
        smooth = np.clip(ndimage.uniform_filter(crop, size=(1, 3, 3)), 0.0, None)
        level = float((smooth ** 2).sum() / max(float(smooth.sum()), 1e-12))
        structured = float(np.sqrt(max(a * level + b, 0.0)))
        if structured > sigma:
            return {"noise_sigma": 255.0 * structured, "noise_model": "poisson-gaussian",
                    "poisson_a": float(a), "poisson_b": float(b)}
    return {"noise_sigma": 255.0 * sigma, "noise_model": model}


def confidence_floor(confidence: float | None, blind_sigma: float = DEFAULT_BLIND_SIGMA, scale: int = 2) -> float:
    """Lowest noise level ([0, 255]) SR may use with a kernel of this confidence (``None``: neutral) at
    this scale (:data:`FLOOR_SCALE`)."""
    c = NEUTRAL_CONFIDENCE if confidence is None else float(np.clip(confidence, 0.0, 1.0))
    return float(blind_sigma) * FLOOR_SCALE.get(int(scale), 1.0) * (1.0 - c) / (1.0 - NEUTRAL_CONFIDENCE)


def doubt_factor(confidence: float | None, noise_sigma: float) -> float:
    """Multiplier of the measured noise level for a kernel of this confidence on a noisy image.

    On a noisy image a wrong kernel does its harm through the noise: the data term trusts a blur that
    is not there and the sharpened noise and over-sharpened smooth objects look like structure, which
    the TV-ratio check cannot tell from real detail. Where the noise reaches :data:`NOISY_SIGMA` the
    noise level is raised by ``1 + NOISE_DOUBT·(1 − c)``; on clean images the additive
    :func:`confidence_floor` does this job.
    """
    c = NEUTRAL_CONFIDENCE if confidence is None else float(np.clip(confidence, 0.0, 1.0))
    noisy = float(np.clip(noise_sigma / NOISY_SIGMA, 0.0, 1.0))
    return 1.0 + NOISE_DOUBT * (1.0 - c) * noisy


def noise_gain(noise_sigma: float) -> float:
    """Lowest multiplier of the measured noise level ([0, 255]) on a noisy image, whatever the confidence.

    The method's noise option sets the prior's last noise level, the one it denoises the deconvolved
    iterate at; the data step's inverse filtering amplifies the LR noise at the frequencies the kernel
    damps, so that level must exceed the LR noise the image shows, even with an exact kernel (a
    measured PSF). :data:`NOISE_GAIN` is that ratio, fitted on noisy fluorescence with its true PSF;
    it grows in as :func:`doubt_factor` does (full from :data:`NOISY_SIGMA`), and a doubted kernel's
    larger doubt factor takes over from it (:func:`base_noise_level`).
    """
    noisy = float(np.clip(noise_sigma / NOISY_SIGMA, 0.0, 1.0))
    return 1.0 + (NOISE_GAIN - 1.0) * noisy


def ringing_limit(confidence: float | None, noise_sigma: float = 0.0, scale: int = 2) -> float:
    """The highest accepted :func:`ringing_score` for a kernel of this confidence (``None``: neutral) on
    an image with this measured noise ([0, 255]) at this SR scale.

    The confidence speaks for the kernel only: it relaxes the limit on clean images, where a high
    score means ringing, and not where the noise reaches :data:`NOISY_SIGMA`, where a high score
    means amplified noise whatever the kernel. Bicubic interpolation is smoother the larger the
    scale, so a correct deconvolution's TV ratio to it grows with the scale: :data:`RINGING_SCALE`.
    """
    c = NEUTRAL_CONFIDENCE if confidence is None else float(np.clip(confidence, 0.0, 1.0))
    clean = float(np.clip(1.0 - noise_sigma / NOISY_SIGMA, 0.0, 1.0))
    limit = RINGING_LIMIT_UNSURE + (RINGING_LIMIT - RINGING_LIMIT_UNSURE) * c * clean
    return limit * RINGING_SCALE.get(int(scale), 1.0)


def noise_tv_scale(noise_sigma: float) -> float:
    """TV weight per unit of noise for a measured noise level ([0, 255]): 0.4 up to σ = 1, 0.8 from σ = 3."""
    t = float(np.clip((noise_sigma - 1.0) / 2.0, 0.0, 1.0))
    return TV_SCALE_CLEAN + (TV_SCALE_NOISY - TV_SCALE_CLEAN) * t


def base_noise_level(spec: Any, noise_sigma: float, confidence: float | None, scale: int) -> float:
    """The noise option ([0, 255]) SR starts from: the measured noise raised by :func:`doubt_factor`
    or :func:`noise_gain`, whichever is larger, at least :func:`confidence_floor` (with the method's
    blind default)."""
    key = next((k for k in NOISE_KEYS if k in spec.defaults), None)
    blind_sigma = float(spec.blind_defaults.get(key, DEFAULT_BLIND_SIGMA)) if key else DEFAULT_BLIND_SIGMA
    factor = max(doubt_factor(confidence, noise_sigma), noise_gain(noise_sigma))
    return max(noise_sigma * factor, confidence_floor(confidence, blind_sigma, scale))


def noise_ladder(base: float) -> list[float]:
    """The noise levels tried in turn: ``base``, then ``max(base, 1)`` times :data:`LADDER_FACTOR` per step."""
    start = max(base, 1.0)
    return [base] + [start * LADDER_FACTOR ** i for i in range(1, LADDER_STEPS + 1)]


def _tv_map(x: np.ndarray) -> np.ndarray:
    """Per-pixel anisotropic total variation (forward differences) of (..., H, W)."""
    out = np.zeros_like(x)
    out[..., :, :-1] += np.abs(np.diff(x, axis=-1))
    out[..., :-1, :] += np.abs(np.diff(x, axis=-2))
    return out


def ringing_score(sr: np.ndarray, bicubic: np.ndarray, block: int = BLOCK) -> float:
    """90th percentile over blocks of TV(SR) / TV(bicubic), on (N, C, H, W) frames (channel mean).

    Blocks (``block`` HR pixels, half overlapping) whose bicubic TV is below half
    the median block's carry no structure to ring and are left out. Images with
    fewer than four blocks get the whole-image ratio.
    """
    s = _tv_map(np.asarray(sr, dtype=np.float64).mean(axis=1))
    c = _tv_map(np.asarray(bicubic, dtype=np.float64).mean(axis=1))
    n, h, w = s.shape
    step = max(1, block // 2)
    ratios, weights = [], []
    for i in range(n):
        for r in range(0, max(h - block, 0) + 1, step):
            for q in range(0, max(w - block, 0) + 1, step):
                ratios.append(s[i, r:r + block, q:q + block].mean())
                weights.append(c[i, r:r + block, q:q + block].mean())
    num, den = np.array(ratios), np.array(weights)
    structured = den >= max(0.5 * float(np.median(den)) if den.size else 0.0, 1e-5)
    if np.count_nonzero(structured) < 4:
        return float(s.mean() / max(c.mean(), 1e-12))
    return float(np.quantile(num[structured] / den[structured], 0.9))


def _probe(frames: np.ndarray) -> tuple[np.ndarray, bool]:
    """The frames the ladder is tried on, and whether that is the whole input."""
    n, c, h, w = frames.shape
    if n * h * w <= PROBE_PIXELS:
        return frames, True
    frame = frames[n // 2]
    side_h, side_w = min(PROBE_WINDOW, h), min(PROBE_WINDOW, w)
    rows = np.linspace(0, h - side_h, 3).round().astype(int)
    cols = np.linspace(0, w - side_w, 3).round().astype(int)
    windows = [frame[:, r:r + side_h, q:q + side_w] for r in rows for q in cols]
    return np.ascontiguousarray(np.stack(windows)), False


def bicubic_frames(frames: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic interpolation of (N, C, h, w) frames (what the check compares with and falls back to)."""
    return np.stack([imresize(np.asarray(f, dtype=np.float32), scale, axes=(-2, -1)) for f in frames])


def iter_safe_sr(spec: Any, frames: np.ndarray, kernel: np.ndarray, scale: int, *, device: Any, seed: int,
                 options: Mapping[str, Any], given: set[str], confidence: float | None,
                 noise: Mapping[str, Any] | None = None,
                 ) -> Generator[Progress, None, tuple[np.ndarray, dict[str, Any]]]:
    """Run SR method ``spec`` on ``frames`` (N, C, h, w) with the safeguards of this module.

    ``options``: the method's resolved options; ``given``: the names the caller
    set (those are kept as they are, so a given noise level is not escalated). ``noise``: a
    :func:`measure_noise` record made beforehand (on the whole image, when ``frames`` is one region of it).
    Returns the (N, C, s·h, s·w) result and the record for the result's options
    (the noise level used, the measured noise, the confidence, the score, and
    ``fallback`` / ``fallback_reason`` when bicubic was returned).
    """
    opts = dict(options)
    record: dict[str, Any] = {"safe": True,
                              "confidence": None if confidence is None else round(float(confidence), 3)}
    noise = measure_noise(frames) if noise is None else dict(noise)
    record.update(noise_sigma=round(noise["noise_sigma"], 3), noise_model=noise["noise_model"])
    key = next((k for k in NOISE_KEYS if k in spec.defaults), None)
    if "tv_scale" in spec.defaults and "tv_scale" not in given:
        opts["tv_scale"] = noise_tv_scale(noise["noise_sigma"])
    levels: list[float | None] = [None]
    if key is not None and key not in given:
        levels = noise_ladder(base_noise_level(spec, noise["noise_sigma"], confidence, scale))
    limit = ringing_limit(confidence, noise["noise_sigma"], scale)
    probe, whole = _probe(frames)
    bic_probe = bicubic_frames(probe, scale)
    chosen: dict[str, Any] | None = None
    out = None
    score = np.inf
    for step, level in enumerate(levels):
        trial = dict(opts) if level is None else {**opts, key: float(level)}
        out = yield from spec.fn(probe, kernel, scale, device=device, seed=seed, **trial)
        score = ringing_score(np.clip(out, 0.0, 1.0), bic_probe)
        if score <= limit:
            chosen = trial
            record.update(safety_step=step)
            break
    record["ringing"] = round(float(score), 3)
    if chosen is None:
        reason = (f"SR output rings or amplifies noise (TV ratio to bicubic {score:.2f} > {limit:.2f}"
                  + (f" even with {key}={levels[-1]:.3g}" if key is not None and levels[-1] is not None else "")
                  + "): the kernel is probably wrong for (part of) this image")
        warnings.warn(f"{spec.name}: {reason}; returning bicubic interpolation instead", UnsafeSRWarning,
                      stacklevel=4)
        record.update(fallback="bicubic", fallback_reason=reason)
        if key is not None and key not in given:
            record[key] = float(levels[-1])
        return bicubic_frames(frames, scale), record
    if key is not None:
        record[key] = float(chosen[key])
    if "tv_scale" in chosen:
        record["tv_scale"] = round(float(chosen["tv_scale"]), 3)
    result = out if whole else (yield from spec.fn(frames, kernel, scale, device=device, seed=seed, **chosen))
    if (noise["noise_model"] == "poisson-gaussian" and key is not None and "poisson_a" in noise
            and noise["noise_sigma"] >= _poisson.MIN_SIGMA):
        result, steps, capped = yield from _poisson.iter_refine(spec, frames, result, kernel, scale, device=device,
                                                                seed=seed, options=chosen, key=key,
                                                                a=noise["poisson_a"], b=noise["poisson_b"])
        record["poisson_refinement"] = steps
        if capped:
            # Richardson–Lucy still predicting held-out counts better after MAX_ITERATIONS steps means the data
            # want more sharpening than the kernel gives: the kernel is wider than the image's blur, and both the
            # method's result and its refinement overshoot (tens of dB below bicubic on bright nuclei).
            reason = (f"the photon-limited refinement kept sharpening up to its limit ({_poisson.MAX_ITERATIONS} "
                      "Richardson–Lucy steps): the kernel is probably wider than this image's blur")
            warnings.warn(f"{spec.name}: {reason}; returning bicubic interpolation instead", UnsafeSRWarning,
                          stacklevel=4)
            record.update(fallback="bicubic", fallback_reason=reason)
            return bicubic_frames(frames, scale), record
    return result, record
