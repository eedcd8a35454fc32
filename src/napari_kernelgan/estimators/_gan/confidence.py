"""How far a KernelGAN (or MetaKernelGAN) kernel can be trusted: its agreement with an independent estimate.

The GAN's own losses say little about whether its kernel is right: a kernel twice too wide fools D as
well as the true one on an image without sharp detail. What does tell is whether an estimator that
fails differently agrees with it: the learned network (:mod:`..learned`, trained on synthetic
degradations only, about 0.2 s). The confidence is

    confidence = min(1, own / 0.5) · 1 / (1 + exp(−(offset − slope · distance)))

with ``distance`` the log-Euclidean distance between the kernel's covariance and the learned one
(the metric ``auto`` uses for its members) and ``own`` the learned network's own confidence, which
counts only where it falls below neutral (flat or noise-only images, where nothing can be checked).
``offset`` and ``slope`` are fitted by ``benchmarks/calibrate_kernelgan.py`` (record ``kernelgan``,
used by ``kernelgan`` and ``meta`` alike) as the probability that the kernel's error is below the
fixed Gaussian's typical error. On DIV2KRK the sharp-edge estimate, the default presets' anchor,
ranked the errors less well as a second reference (see that script's report), so it is not used.
"""
from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np
import torch

from ...errors import BadInputError
from ...physics.kernels import log_spd
from ...physics.metrics import second_moments
from ...records import record_values
from ...types import NEUTRAL_CONFIDENCE, Progress
from ..learned import learned

__all__ = ["RECORD", "References", "measure_references", "spread_from", "confidence_from", "kernel_confidence",
           "constants"]

RECORD = "kernelgan"


@dataclass
class References:
    """Independent estimates of one image's kernel: HR-pixel covariances by name, and the learned
    network's own confidence (``NEUTRAL_CONFIDENCE`` where it could not run)."""

    covariances: dict[str, np.ndarray] = field(default_factory=dict)
    own: float = NEUTRAL_CONFIDENCE


def measure_references(frames: np.ndarray, device: torch.device,
                       seed: int) -> Generator[Progress, None, References]:
    """The learned estimate of ``frames`` (N, C, H, W) in [0, 1], passing on its reports; none where the
    image is too small or constant for it."""
    refs = References()
    try:
        est = yield from learned(frames, scale=2, device=device, seed=seed)
    except BadInputError:
        return refs
    refs.covariances["learned"] = np.asarray(est.extras["covariance"], dtype=np.float64)
    refs.own = float(est.confidence)
    return refs


def spread_from(covariance: np.ndarray, refs: References) -> float:
    """R.m.s. log-Euclidean distance between ``covariance`` and the references' covariances (0: none)."""
    if not refs.covariances:
        return 0.0
    mine = log_spd(covariance)
    return math.sqrt(float(np.mean([np.sum((mine - log_spd(c)) ** 2) for c in refs.covariances.values()])))


def confidence_from(spread: float, own: float, offset: float, slope: float) -> float:
    """``min(1, own / 0.5) · sigmoid(offset − slope · spread)``, in [0, 1]."""
    z = offset - slope * spread
    agreement = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
    return float(np.clip(min(1.0, own / NEUTRAL_CONFIDENCE) * agreement, 0.0, 1.0))


def constants() -> tuple[float, float]:
    """(offset, slope) of the fitted record."""
    values = record_values(RECORD)
    return float(values["offset"]), float(values["slope"])


def kernel_confidence(kernel: np.ndarray, refs: References) -> tuple[float, dict[str, object]]:
    """The confidence of ``kernel`` given ``refs``, and what it came from (for a result's extras)."""
    offset, slope = constants()
    why: dict[str, object] = {"reference_confidence": refs.own, "references": ", ".join(refs.covariances),
                              "reference_covariances": {k: c.tolist() for k, c in refs.covariances.items()}}
    if not refs.covariances:   # nothing could check the kernel: half its own word (auto's rule for one member)
        return 0.5 * refs.own, {**why, "spread": math.nan}
    spread = spread_from(second_moments(kernel), refs)
    return confidence_from(spread, refs.own, offset, slope), {**why, "spread": spread}
