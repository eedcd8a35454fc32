"""How far a KernelGAN (or MetaKernelGAN) kernel can be trusted: agreement with independent fast estimates.

The GAN's own losses say little about whether its kernel is right: a kernel twice too wide fools D as
well as the true one on an image without sharp detail. What does tell is whether estimators that fail
differently agree with it: the learned network (:mod:`..learned`, trained on synthetic degradations) and
the sharp-edge measurement (:mod:`..edges`, the default presets' anchor). The confidence is

    confidence = own · 1 / (1 + exp(−(offset − slope · spread)))

with ``spread`` the r.m.s. log-Euclidean distance between the kernel's covariance and theirs (the
metric ``auto`` uses for its members) and ``own`` the learned network's own confidence (low on flat or
noise-only images, where no estimate can be checked). ``offset`` and ``slope`` are fitted by
``benchmarks/calibrate_kernelgan.py`` (records ``kernelgan`` and ``meta``) as the probability that the
kernel beats the fixed Gaussian, so a confidence under 0.3 flags a kernel likely worse than it.
"""
from __future__ import annotations

import contextlib
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
from ..edges import estimate_covariance
from ..learned import learned

__all__ = ["References", "measure_references", "spread_from", "confidence_from", "kernel_confidence",
           "constants"]


@dataclass
class References:
    """Independent estimates of one image's kernel: HR-pixel covariances by name, and the learned
    network's own confidence (``NEUTRAL_CONFIDENCE`` where it could not run)."""

    covariances: dict[str, np.ndarray] = field(default_factory=dict)
    own: float = NEUTRAL_CONFIDENCE


def measure_references(frames: np.ndarray, device: torch.device, seed: int,
                       edges_kernel: np.ndarray | None = None) -> Generator[Progress, None, References]:
    """The learned estimate and the sharp-edge covariance of ``frames`` (N, C, H, W) in [0, 1].

    ``edges_kernel``: the edge anchor when the fit measured one already. Yields the learned estimator's
    reports (a few, a second or so in all). An estimate that cannot run on the image is left out.
    """
    refs = References()
    try:
        est = yield from learned(frames, scale=2, device=device, seed=seed)
        refs.covariances["learned"] = np.asarray(est.extras["covariance"], dtype=np.float64)
        refs.own = float(est.confidence)
    except BadInputError:
        pass
    if edges_kernel is not None:
        refs.covariances["edges"] = second_moments(edges_kernel)
    else:
        with contextlib.suppress(BadInputError):   # no usable edges: the learned estimate alone
            refs.covariances["edges"] = estimate_covariance(frames, 2, seed)[0]
    return refs


def spread_from(kernel: np.ndarray, refs: References) -> float:
    """R.m.s. log-Euclidean distance between the covariance of ``kernel`` and the references' (0: none)."""
    if not refs.covariances:
        return 0.0
    mine = log_spd(second_moments(kernel))
    return math.sqrt(float(np.mean([np.sum((mine - log_spd(c)) ** 2) for c in refs.covariances.values()])))


def confidence_from(spread: float, own: float, offset: float, slope: float) -> float:
    """``own · sigmoid(offset − slope · spread)``, in [0, 1]."""
    z = offset - slope * spread
    agreement = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
    return float(np.clip(own * agreement, 0.0, 1.0))


def constants(name: str) -> tuple[float, float]:
    """(offset, slope) of the record ``name`` ("kernelgan" or "meta")."""
    values = record_values(name)
    return float(values["offset"]), float(values["slope"])


def kernel_confidence(kernel: np.ndarray, refs: References, name: str) -> tuple[float, dict[str, float]]:
    """The confidence of ``kernel`` given ``refs``, with the constants of record ``name``; and what it came
    from (for a result's extras)."""
    offset, slope = constants(name)
    if not refs.covariances:   # nothing could check the kernel: half its own word (auto's rule for one member)
        return 0.5 * refs.own, {"spread": math.nan, "reference_confidence": refs.own, "references": ""}
    spread = spread_from(kernel, refs)
    return confidence_from(spread, refs.own, offset, slope), {"spread": spread, "reference_confidence": refs.own,
                                                              "references": ", ".join(refs.covariances)}
