"""``auto``: several fast estimators, combined per image, with a confidence.

Each member estimator (by default ``learned``, ``kernelnet`` and, on images
with many isolated point sources, ``spots``; all fast) returns a ×2 kernel and,
where it can, its own confidence. Every kernel is reduced to its
2×2 covariance Σᵢ (HR pixels², :func:`~napari_kernelgan.physics.metrics.second_moments`);
the covariances are averaged in the log-Euclidean metric (``log Σ = Σ wᵢ log Σᵢ``,
which keeps the result positive definite and treats "twice as wide" and "half as
wide" symmetrically) with weights ``wᵢ = priorᵢ · (ε + confidenceᵢ)``, then
corrected for the members' common bias, ``Σ ← gain · Σ + offset · I``, and
pulled a little towards the fixed Gaussian's covariance (``SHRINK``). The kernel
is the anisotropic Gaussian of that covariance.

The **confidence** (in [0, 1]) combines two things one can see without the
truth: how much the members agree (the weighted spread of their log-covariances
around the combination; independent methods that fail tend to fail
differently) and how sure each member says it is. Where no member can work
(a flat or pure-noise image), the fixed Gaussian is returned with confidence 0.

The prior weights and the bias correction are fitted by
``benchmarks/calibrate_auto.py`` with two-fold cross-validation on the DIV2KRK
development images (fit on the odd-numbered images, measure on the even ones
and the other way round); the constants below are the fit on all of them,
which that script prints together with the held-out figures. DIV2KRK has no
point sources, so the weight and gate of ``spots`` come from the generated
microscopy of ``benchmarks/microscopy_benchmark.py`` instead.
"""
from __future__ import annotations

import math
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from ..errors import BadInputError, BadOptionError
from ..physics.kernels import constant_gaussian, exp_sym, gaussian_from_covariance, log_spd
from ..physics.metrics import second_moments
from ..registry import ESTIMATORS, register
from ..types import KernelEstimate, Progress
from ..vocabulary import KERNEL_SIZE, Stage

DEFAULT_MEMBERS = "learned,kernelnet,spots"
PRIOR_WEIGHTS: dict[str, float] = {"learned": 2.0, "kernelnet": 0.5, "edges": 0.0, "spots": 8.0}
# A member below its gate is left out: point sources are decisive where there are many consistent ones
# (beads, puncta) and meaningless elsewhere (natural images give spots a confidence of 0–0.2).
MIN_CONFIDENCE: dict[str, float] = {"spots": 0.3}
GAIN = 1.2          # Σ ← GAIN·Σ + OFFSET·I, the members' common bias (HR px²)
OFFSET = -0.3
SHRINK = 1.0        # log Σ ← log Σ₀ + SHRINK·(log Σ − log Σ₀), towards the fixed Gaussian's Σ₀ (1: none)
AGREEMENT_SCALE = 0.35   # log-covariance spread at which agreement falls to 1/e
MEMBER_CONFIDENCE = 0.5  # assumed for a member that reports none
EPS = 0.05
STEPS_PER_MEMBER = 100   # progress units per member


def combine_covariances(covs: list[np.ndarray], weights: list[float]) -> tuple[np.ndarray, float]:
    """Weighted log-Euclidean mean of covariances and the weighted RMS spread around it."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    logs = [log_spd(c) for c in covs]
    mean = sum(wi * li for wi, li in zip(w, logs))
    spread = math.sqrt(sum(wi * float(np.sum((li - mean) ** 2)) for wi, li in zip(w, logs)))
    return exp_sym(mean), spread


def shrink_towards_prior(cov: np.ndarray, amount: float = SHRINK) -> np.ndarray:
    """Pull ``cov`` towards the fixed Gaussian's covariance in the log-Euclidean metric (``amount`` 1: not at all).

    Where the estimate is noisy, a little shrinkage to the typical kernel lowers the error on average
    (the James–Stein effect); the amount is chosen by cross-validation with the other constants.
    """
    if amount >= 1.0:
        return cov
    prior = log_spd(second_moments(constant_gaussian(2)))
    return exp_sym(prior + float(amount) * (log_spd(cov) - prior))


def confidence_from(spread: float, member_confidences: list[float], weights: list[float],
                    n_members: int, agreement_scale: float = AGREEMENT_SCALE) -> float:
    """Confidence in [0, 1]: members' agreement times their weighted own confidence."""
    w = np.asarray(weights, dtype=np.float64)
    own = float(np.dot(w, member_confidences) / w.sum())
    # a single surviving member cannot be cross-checked: its own word counts half
    agreement = math.exp(-spread / agreement_scale) if n_members > 1 else 0.5
    return float(np.clip(own * agreement, 0.0, 1.0))


def _members(text: str) -> list[str]:
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if not names:
        raise BadOptionError("auto: members must name at least one estimator, e.g. 'kernelnet,edges'")
    if "auto" in names:
        raise BadOptionError("auto: 'auto' cannot be its own member")
    for n in names:
        if n not in ESTIMATORS.unavailable:
            ESTIMATORS.get(n)  # a misspelt member fails here, before any work
    return names


@register("auto", kind="estimator", summary="Automatic (a few seconds): combines the fast estimators per image "
          "and says how far the kernel can be trusted (confidence)",
          defaults={"members": DEFAULT_MEMBERS, "size": KERNEL_SIZE},
          main=("members",),
          help={"members": "comma-separated estimators to combine (those unavailable or unable to read the "
                           "image are skipped)",
                "size": "side of the returned ×2 kernel (odd)"})
def auto(frames: np.ndarray, *, scale: int = 2, device: torch.device | None = None, seed: int = 0,
         report_every: int = 50, members: str = DEFAULT_MEMBERS,
         size: int = KERNEL_SIZE) -> Generator[Progress, None, KernelEstimate]:
    """Combine the member estimators' kernels; the result carries a confidence in [0, 1]."""
    if int(size) != size or size < 3 or size % 2 == 0:
        raise BadOptionError(f"auto: size must be an odd integer of at least 3, got {size}")
    names = _members(members)
    start = time.perf_counter()
    covs: list[np.ndarray] = []
    confs: list[float] = []
    weights: list[float] = []
    used: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for i, name in enumerate(names):
        yield Progress(i * STEPS_PER_MEMBER, STEPS_PER_MEMBER * len(names), time.perf_counter() - start,
                       stage=Stage.ESTIMATE, message=f"auto: running {name}")
        if name in ESTIMATORS.unavailable:  # installed but failed to import: the others still run
            skipped[name] = ESTIMATORS.unavailable[name]
            continue
        spec = ESTIMATORS.get(name)
        member = spec.fn(frames, scale=scale, device=device, seed=seed, report_every=report_every,
                         **spec.resolve({}))
        try:
            while True:
                p = next(member)
                # One progress scale for the whole run, so a bar and its ETA do not restart per member.
                done = round((i + min(max(p.fraction, 0.0), 1.0)) * STEPS_PER_MEMBER)
                yield Progress(done, STEPS_PER_MEMBER * len(names), time.perf_counter() - start,
                               stage=Stage.ESTIMATE, loss=p.loss, message=f"auto: {name}: {p.message}")
        except StopIteration as stop:
            est: KernelEstimate = stop.value
        except BadInputError as exc:
            skipped[name] = str(exc)
            continue
        finally:
            member.close()
        conf = MEMBER_CONFIDENCE if est.confidence is None else float(est.confidence)
        if conf < MIN_CONFIDENCE.get(name, 0.0) or PRIOR_WEIGHTS.get(name, 1.0) <= 0:
            skipped[name] = f"confidence {conf:.2f} below its gate" if conf < MIN_CONFIDENCE.get(name, 0.0) \
                else "weight 0"
            continue
        cov = second_moments(est.kernel)
        covs.append(cov)
        confs.append(conf)
        weights.append(PRIOR_WEIGHTS.get(name, 1.0) * (EPS + conf))
        used[name] = {"covariance": cov.round(4).tolist(), "confidence": round(conf, 3),
                      "elapsed_s": round(time.perf_counter() - start, 3)}
    if not covs:
        kernel = constant_gaussian(2) if size == KERNEL_SIZE else gaussian_from_covariance(
            second_moments(constant_gaussian(2)), int(size))
        confidence, spread, cov = 0.0, float("nan"), second_moments(kernel)
    else:
        cov, spread = combine_covariances(covs, weights)
        cov = shrink_towards_prior(GAIN * cov + OFFSET * np.eye(2))
        kernel = gaussian_from_covariance(cov, int(size))
        confidence = confidence_from(spread, confs, weights, len(covs))
    yield Progress(STEPS_PER_MEMBER * len(names), STEPS_PER_MEMBER * len(names), time.perf_counter() - start,
                   stage=Stage.ESTIMATE, kernel=kernel,
                   message=f"auto: combined {', '.join(used) or 'nothing (fixed Gaussian)'}")
    return KernelEstimate(kernel=kernel, dmap=None, loss_history={}, iterations=0,
                          elapsed=time.perf_counter() - start, device="cpu", seed=seed, confidence=confidence,
                          extras={"covariance": np.asarray(cov).round(4).tolist(), "members": used,
                                  "skipped": skipped, "spread": spread})
