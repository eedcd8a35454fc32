"""``auto``: several fast estimators, combined per image, with a confidence.

Each member estimator (by default ``learned``, ``kernelnet``, ``spots`` and
``lines``; all fast) returns a ×2 kernel and, where it can, its own confidence.
Every kernel is reduced to its 2×2 covariance Σᵢ (HR pixels²,
:func:`~napari_kernelgan.physics.metrics.second_moments`). The rule, in
:func:`combine_members`:

* **Direct measurements** (:data:`DECISIVE`: ``spots``, ``lines``): a point
  source is the kernel, a thin line its projection. Where one passes its gate
  (:data:`MIN_CONFIDENCE`), the passing ones alone give the kernel (their
  log-Euclidean mean, no bias correction) and the confidence.
* **Indirect readings** (``learned``, ``kernelnet``, others): the covariances are
  averaged in the log-Euclidean metric (``log Σ = Σ wᵢ log Σᵢ``, which keeps the
  result positive definite and treats "twice as wide" and "half as wide"
  symmetrically) with weights ``wᵢ = priorᵢ · (ε + confidenceᵢ)``, then corrected
  for the members' common bias, ``Σ ← gain · Σ + offset · I``, and pulled towards
  the fixed Gaussian's covariance as the confidence falls below
  :data:`FULL_TRUST`. The **confidence** combines how much the members agree (the
  weighted spread of their log-covariances around the combination; independent
  methods that fail tend to fail differently) and how sure each says it is; in a
  photon-limited (fluorescence) image it is scaled by :data:`UNIDENTIFIABLE`,
  because there the objects' own softness (a nucleus rim) reads as blur.

The kernel is the anisotropic Gaussian of the combined covariance. Where no
member can work (a flat or pure-noise image), the fixed Gaussian is returned
with confidence 0.

On a microscope image (any optics option given, or photon-limited
fluorescence) the combination is read before the bias correction and turned
into a physical PSF instead (the microscope mode, :mod:`._auto_optics`, with
its own record ``auto_optics``; where ``learned`` is a member, the microscope
network's kernel, ``learned`` with ``family="optics"``, is blended in by how
much wider it reads the blur); ``options["mode"]`` says which mode ran.

The prior weights of the indirect members, the bias correction, the shrinkage
and the gates are fitted by ``benchmarks/calibrate_auto.py`` with two-fold
cross-validation on the DIV2KRK development images (fit on the odd-numbered
images, measure on the even ones and the other way round) and on generated
fluorescence (by seed). The script writes the fit on all of them to the record
``auto`` (``napari_kernelgan/records/auto.json``), which this module loads once
at import; the held-out figures are in ``docs/calibration_auto.txt``. DIV2KRK
has no point or line sources, so the weight of ``spots`` and ``lines``
(:data:`DECISIVE_WEIGHT`) is a design choice kept high (a direct measurement)
and only their gates are fitted, on the fluorescence cases. The other design
choices (not fitted) stay in this module: :data:`UNIDENTIFIABLE`,
:data:`AGREEMENT_SCALE`, :data:`EPS`, :data:`MIN_VARIANCE` and
:data:`TILE_FULL_TRUST`.
"""
from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import torch

from ..constraints import Interval
from ..errors import BadInputError, BadOptionError
from ..physics.kernels import constant_gaussian, exp_sym, gaussian_from_covariance, log_spd
from ..physics.metrics import second_moments
from ..records import record_values
from ..registry import ESTIMATORS, register, register_tiles
from ..tiling import iter_tile_estimates
from ..types import NEUTRAL_CONFIDENCE, KernelEstimate, Progress, TileResult, relay
from ..vocabulary import KERNEL_SIZE, Stage
from . import optics as _optics_estimator  # noqa: F401 - registers ``optics``, whose option ranges auto shares
from ._auto_optics import FITTED as OPTICS_FITTED
from ._auto_optics import MICROSCOPE_MEMBER_OPTIONS, SHAPE_READER, Hints, microscope_kernel, on_support

DEFAULT_MEMBERS = "learned,kernelnet,spots,lines"
# Scales at which a photon-limited image without optics hints gets the microscope rule: its prior and gains
# were fitted on ×2 cases only (benchmarks/calibrate_auto_optics.py); elsewhere the Gaussian rule stands.
BLIND_MICROSCOPE_SCALES = (2,)
# Fitted on data by benchmarks/calibrate_auto.py and loaded from its record (records/auto.json): the prior
# weights of the members that read the blur indirectly, the gates, the bias correction and the shrinkage.
_FITTED = record_values("auto")
# Design choice, not fitted: a direct measurement outweighs the indirect readings (DIV2KRK has no point or
# line sources to fit this on; the script keeps it and fits only their gates).
DECISIVE_WEIGHT = 8.0
PRIOR_WEIGHTS: dict[str, float] = {**{k: float(v) for k, v in _FITTED["weights"].items()},
                                   "spots": DECISIVE_WEIGHT, "lines": DECISIVE_WEIGHT}
# A member below its gate is left out: point sources are decisive where there are many consistent ones
# (beads, puncta) and meaningless elsewhere (natural images give spots a confidence of 0–0.2). Fitted.
MIN_CONFIDENCE: dict[str, float] = {k: float(v) for k, v in _FITTED["gates"].items()}
# Members that measure the blur directly (a point source is the PSF, a thin line its projection): where one
# passes its gate, the kernel comes from those alone; the others read the objects' own softness as blur.
DECISIVE = ("spots", "lines")
# In a photon-limited (fluorescence) image with no point or line sources the blur cannot be told from the
# objects' own smoothness (a nucleus rim is soft): the confidence is scaled by this (design choice).
UNIDENTIFIABLE = 0.5
GAIN = float(_FITTED["gain"])        # Σ ← GAIN·Σ + OFFSET·I, the members' common bias (HR px²); fitted
OFFSET = float(_FITTED["offset"])
SHRINK = float(_FITTED["shrink"])    # log Σ ← log Σ₀ + SHRINK·(log Σ − log Σ₀), towards the fixed Gaussian's Σ₀
FULL_TRUST = float(_FITTED["full_trust"])  # below this confidence the shrinkage grows: SHRINK·c / FULL_TRUST; fitted
# Design choices (not fitted):
TILE_FULL_TRUST = 0.0  # FULL_TRUST for the tiles of a kernel map (see auto_tiles)
MIN_VARIANCE = 0.05 # HR px²: the narrowest axis a corrected covariance may have
AGREEMENT_SCALE = 0.35   # log-covariance spread at which agreement falls to 1/e
EPS = 0.05
STEPS_PER_MEMBER = 100   # progress units per member
# The microscope mode reads the members' combination before the Gaussian rule's bias correction and pull
# towards the fixed Gaussian (those were fitted for Gaussian kernels; _auto_optics maps the reading itself).
MICROSCOPE_READING: dict[str, float] = {"gain": 1.0, "offset": 0.0, "shrink": 1.0}


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


def combine_members(results: list[tuple[str, np.ndarray, float]], *,
                    photon_limited: bool | Callable[[], bool] = False,
                    weights: dict[str, float] | None = None, gates: dict[str, float] | None = None,
                    gain: float = GAIN, offset: float = OFFSET,
                    shrink: float = SHRINK, agreement_scale: float = AGREEMENT_SCALE,
                    full_trust: float = FULL_TRUST) -> tuple[np.ndarray | None, float, dict[str, Any]]:
    """The combined ×2 covariance (``None``: no member usable, use the fixed Gaussian) and confidence from
    the members' ``(name, covariance, confidence)``, and what was used, skipped or overruled.

    The one place the combination rule lives: :func:`auto` and ``benchmarks/calibrate_auto.py`` call it.
    ``photon_limited`` may be a callable: it is then asked only where no direct measurement decides
    (``info["photon_limited"]`` says what applied).
    """
    prior = PRIOR_WEIGHTS if weights is None else weights
    gate = MIN_CONFIDENCE if gates is None else gates
    kept: list[tuple[str, np.ndarray, float]] = []
    skipped: dict[str, str] = {}
    for name, cov, conf in results:
        if conf < gate.get(name, 0.0):
            skipped[name] = f"confidence {conf:.2f} below its gate"
        elif prior.get(name, 1.0) <= 0:
            skipped[name] = "weight 0"
        else:
            kept.append((name, cov, conf))
    decisive = [m for m in kept if m[0] in DECISIVE]
    overruled = [m[0] for m in kept if m[0] not in DECISIVE] if decisive else []
    members = decisive or kept
    if not decisive and callable(photon_limited):
        photon_limited = photon_limited()
    info: dict[str, Any] = {"used": [m[0] for m in members], "skipped": skipped, "overruled": overruled,
                            "photon_limited": bool(photon_limited) and not decisive}
    if not members:
        info["spread"] = float("nan")
        return None, 0.0, info
    w = [prior.get(name, 1.0) * (EPS + conf) for name, _, conf in members]
    confs = [conf for *_, conf in members]
    cov, spread = combine_covariances([c for _, c, _ in members], w)
    info["spread"] = spread
    if decisive:
        # A direct measurement: no bias correction (that is the other members' bias), and its own
        # confidence already says how well its many point or line samples agree.
        wn = np.asarray(w) / np.sum(w)
        confidence = float(np.dot(wn, confs)) * (math.exp(-spread / agreement_scale) if len(members) > 1 else 1.0)
        return cov, float(np.clip(confidence, 0.0, 1.0)), info
    confidence = confidence_from(spread, confs, w, len(members), agreement_scale)
    if photon_limited:
        confidence *= UNIDENTIFIABLE
    # A negative offset must not leave a non-positive variance on a very narrow estimate.
    vals, vecs = np.linalg.eigh(gain * cov + offset * np.eye(2))
    cov = (vecs * np.maximum(vals, MIN_VARIANCE)) @ vecs.T
    # The less the estimate can be trusted, the closer to the typical kernel (the prior's mean).
    amount = shrink * (min(1.0, confidence / full_trust) if full_trust > 0 else 1.0)
    return shrink_towards_prior(cov, amount), confidence, info


def agreement_of(info: dict[str, Any], agreement_scale: float = AGREEMENT_SCALE) -> float:
    """How far the members that :func:`combine_members` used agree, in [0, 1]: one indirect member 0.5
    (uncheckable); one direct measurement 1 (its many point or line samples are its own cross-check, as in
    :func:`combine_members`)."""
    used = info.get("used", ())
    if len(used) < 2:
        return (1.0 if used[0] in DECISIVE else 0.5) if used else 0.0
    return math.exp(-float(info["spread"]) / agreement_scale)


def _check_size(size: int) -> None:
    # size ≥ 3 is a declared range, checked by the registry; oddness is not a range
    if int(size) % 2 == 0:
        raise BadOptionError(f"auto: size must be odd, got {size}")


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


def _reason(name: str, reason: object, short: bool = False) -> str:
    """Why member ``name`` could not measure: the first line of its message without its own name (and,
    ``short``, without the advice after the first ``"; "``)."""
    text = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
    text = text.removeprefix(f"{name}: ")
    return text.split("; ")[0] if short else text


def _where(devices: dict[str, str]) -> str:
    """Where the members ran: one device, or each device with its members (``"cuda:0 (learned), cpu
    (kernelnet, spots)"``); the combination itself is numpy on the CPU ("cpu" where no member ran)."""
    by_device: dict[str, list[str]] = {}
    for name, device in devices.items():
        by_device.setdefault(device, []).append(name)
    if len(by_device) <= 1:
        return next(iter(by_device), "cpu")
    return ", ".join(f"{device} ({', '.join(names)})" for device, names in by_device.items())


def _photon_limited(frames: np.ndarray) -> bool:
    """Whether shot noise dominates the middle frame (:func:`~napari_kernelgan.physics.noise.photon_limited`)."""
    from ..physics.noise import photon_limited

    frame = np.asarray(frames[len(frames) // 2], dtype=np.float64).mean(0)
    return photon_limited(frame) is not None


_OPTICS_SPEC = ESTIMATORS.get("optics")   # the optics hints share its names, meanings and ranges
HINTS = ("na", "wavelength_um", "pixel_um", "modality", "n_immersion", "pinhole_au")


@register("auto", kind="estimator", summary="Automatic (a few seconds): combines the fast estimators per image "
          "and says how far the kernel can be trusted (confidence); on microscope images a physical PSF",
          defaults={"members": DEFAULT_MEMBERS, "size": None, **dict.fromkeys(HINTS)},
          main=("members",), ranges={"size": Interval(int, 3, None), **{h: _OPTICS_SPEC.ranges[h] for h in HINTS}},
          help={"members": "comma-separated estimators to combine (those unavailable or unable to read the "
                           "image are skipped)",
                "size": "side of the returned ×2 kernel (odd; empty: 13, or on a microscope image the side "
                        "holding 99 % of the PSF, up to 41)",
                **{h: _OPTICS_SPEC.help[h] for h in HINTS if h != "modality"},
                "modality": "widefield or confocal (point scanning with a pinhole; empty: unknown, a blend of both)"})
def auto(frames: np.ndarray, *, scale: int = 2, device: torch.device | None = None, seed: int = 0,
         report_every: int = 50, members: str = DEFAULT_MEMBERS, size: int | None = None,
         na: float | None = None, wavelength_um: float | None = None, pixel_um: float | None = None,
         modality: str | None = None, n_immersion: float | None = None,
         pinhole_au: float | None = None) -> Generator[Progress, None, KernelEstimate]:
    """Combine the member estimators' kernels; the result carries a confidence in [0, 1].

    Natural images: the anisotropic Gaussian of the members' combination. Microscope images (any optics
    hint given, or photon-limited fluorescence): a physical PSF (:mod:`._auto_optics`); ``options["mode"]``
    says which ran and why.
    """
    if size is not None:
        _check_size(size)
    names = _members(members)
    hints = Hints(na=na, wavelength_um=wavelength_um, pixel_um=pixel_um, modality=modality,
                  n_immersion=n_immersion, pinhole_au=pinhole_au)
    start = time.perf_counter()
    # The shot-noise test (0.2 s) decides the mode where no hint does; with hints it runs only where needed.
    photon_limited = functools.cache(functools.partial(_photon_limited, frames))
    shot = not hints.given and photon_limited()
    microscope = hints.given or (shot and int(scale) in BLIND_MICROSCOPE_SCALES)
    mode_reason = "optics given" if hints.given else "photon-limited fluorescence" if microscope else \
        ("photon-limited, but the microscope rule without optics is fitted at ×2 only" if shot else
         "natural image (no optics given, not photon-limited)")
    results: list[tuple[str, np.ndarray, float]] = []
    elapsed: dict[str, float] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}  # members that could not measure this image, and why
    devices: dict[str, str] = {}
    measured_shapes: dict[str, np.ndarray | None] = {}  # kernels a member measured as a whole (spots' average)
    network: np.ndarray | None = None  # the microscope network's kernel (_auto_optics.SHAPE_READER)
    for i, name in enumerate(names):
        yield Progress(i * STEPS_PER_MEMBER, STEPS_PER_MEMBER * len(names), time.perf_counter() - start,
                       stage=Stage.ESTIMATE, message=f"auto: running {name}")
        if name in ESTIMATORS.unavailable:  # installed but failed to import: the others still run
            skipped[name] = ESTIMATORS.unavailable[name]
            failed[name] = f"unavailable: {ESTIMATORS.unavailable[name]}"
            continue
        spec = ESTIMATORS.get(name)
        member_options = MICROSCOPE_MEMBER_OPTIONS.get(name, {}) if microscope else {}
        try:
            # One progress scale for the whole run, so a bar and its ETA do not restart per member.
            est: KernelEstimate = yield from relay(
                spec.fn(frames, scale=scale, device=device, seed=seed, report_every=report_every,
                        **spec.resolve(member_options)),
                offset=i * STEPS_PER_MEMBER, span=STEPS_PER_MEMBER, total=STEPS_PER_MEMBER * len(names), start=start,
                stage=Stage.ESTIMATE, prefix=f"auto: {name}: ")
        except BadInputError as exc:
            skipped[name] = str(exc)
            failed[name] = _reason(name, exc)
            continue
        devices[name] = est.device
        if est.extras.get("fallback"):  # its fixed fallback kernel (confidence 0) is left out by its gate
            failed[name] = _reason(name, est.extras.get("message", "nothing to measure"))
        conf = NEUTRAL_CONFIDENCE if est.confidence is None else float(est.confidence)
        results.append((name, second_moments(est.kernel), conf))
        measured_shapes[name] = est.kernel if est.extras.get("shape") in ("measured", "gaussian") else None
        if microscope and int(scale) == 2 and (name, member_options) == SHAPE_READER and not est.extras.get("fallback"):
            network = np.asarray(est.kernel, dtype=np.float64)   # the member is the microscope network itself
        elapsed[name] = round(time.perf_counter() - start, 3)
    # The shot-noise test runs only where no direct measurement decides (or, natural, it has run).
    cov, confidence, info = combine_members(results, photon_limited=photon_limited,
                                            **(MICROSCOPE_READING if microscope else {}))
    skipped.update(info.pop("skipped"))
    used = {name: {"covariance": c.round(4).tolist(), "confidence": round(conf, 3), "elapsed_s": elapsed[name]}
            for name, c, conf in results if name in info["used"]}
    if cov is None and microscope and not hints.given:
        # Nothing was read and nothing was said about the optics: the shot-noise test alone (which a flat
        # image with a little noise passes) is no evidence of a microscope; the fixed Gaussian, as ever.
        microscope, mode_reason = False, "no member could read the image and no optics were given"
    options: dict[str, Any] = {"failed_members": failed, "mode": "microscope" if microscope else "natural",
                               "mode_reason": mode_reason}
    if microscope:
        defocus = None
        if hints.optics_known:
            total = STEPS_PER_MEMBER * len(names)
            defocus = yield from relay(_defocus_fit(frames, hints, scale, seed), offset=total, span=0, total=total,
                                       start=start, stage=Stage.ESTIMATE, prefix="auto: optics: ")
        if network is None:
            total = STEPS_PER_MEMBER * len(names)
            network = yield from relay(_shape_reading(frames, names, scale, device, seed), offset=total, span=0,
                                       total=total, start=start, stage=Stage.ESTIMATE, prefix="auto: ")
        kernel, options["microscope"] = microscope_kernel(
            cov, hints, direct=bool(set(info["used"]) & set(DECISIVE)), agreement=agreement_of(info),
            defocus_fit=defocus, size=size, shape=network)
        if defocus is not None:
            options["microscope"]["defocus_fit_um"] = round(defocus, 3)
    elif cov is None:
        kernel = constant_gaussian(2) if size in (None, KERNEL_SIZE) else gaussian_from_covariance(
            second_moments(constant_gaussian(2)), int(size))
    else:
        kernel = gaussian_from_covariance(cov, KERNEL_SIZE if size is None else int(size))
    direct = [n for n in info["used"] if measured_shapes.get(n) is not None]
    if direct and not hints.optics_known:
        # Point sources measured the PSF itself, and their own split-half test chose between their average and
        # a Gaussian: that is the kernel, not a template (or a Gaussian) of the same width.
        shape = measured_shapes[direct[0]]
        kernel = on_support(shape, shape.shape[0] if size is None else int(size))
        options["measured_by"] = direct[0]
    if cov is None:
        cov = second_moments(constant_gaussian(2))
    yield Progress(STEPS_PER_MEMBER * len(names), STEPS_PER_MEMBER * len(names), time.perf_counter() - start,
                   stage=Stage.ESTIMATE, kernel=kernel,
                   message=f"auto: combined {', '.join(used) or 'nothing (fixed Gaussian)'}")
    return KernelEstimate(kernel=kernel, dmap=None, loss_history={}, iterations=0,
                          elapsed=time.perf_counter() - start, device=_where(devices), seed=seed,
                          confidence=confidence, options=options,
                          extras={"covariance": np.asarray(cov).round(4).tolist(), "members": used,
                                  "skipped": skipped, **info,
                                  **({"network_kernel": network} if network is not None else {})})


def _shape_reading(frames: np.ndarray, names: list[str], scale: int, device: torch.device | None,
                   seed: int) -> Generator[Progress, None, np.ndarray | None]:
    """The microscope network's ×2 kernel (:data:`._auto_optics.SHAPE_READER`) where the record gives it a share
    and its member is among ``names`` (the share was fitted at ×2); else (or where it cannot read the image)
    ``None``."""
    name, options = SHAPE_READER
    if int(scale) != 2 or name not in names or name in ESTIMATORS.unavailable or (
            float(OPTICS_FITTED.get("shape_share", 0.0)) <= 0 and float(OPTICS_FITTED.get("shape_share_per_excess",
                                                                                           0.0)) <= 0):
        return None
    spec = ESTIMATORS.get(name)
    try:
        est: KernelEstimate = yield from spec.fn(frames, scale=scale, device=device, seed=seed,
                                                 **spec.resolve(options))
    except BadInputError:
        return None
    return None if est.extras.get("fallback") else np.asarray(est.kernel, dtype=np.float64)


def _defocus_fit(frames: np.ndarray, hints: Hints, scale: int,
                 seed: int) -> Generator[Progress, None, float | None]:
    """The ``optics`` estimator's defocus (µm) with the given optics, where the rule uses it and the fit
    neither fell back (too few clean edges) nor contradicted the stated NA; else ``None``."""
    if float(OPTICS_FITTED["defocus_trust"]) <= 0:
        return None
    spec = ESTIMATORS.get("optics")
    options = {h: getattr(hints, h) for h in HINTS}
    options["modality"] = hints.modality or "widefield"
    est: KernelEstimate = yield from spec.fn(frames, scale=scale, seed=seed, **spec.resolve(options))
    fit = est.options.get("optics_fit", {})
    if fit.get("fallback") or fit.get("contradiction") or fit.get("defocus_um") is None:
        return None
    return float(fit["defocus_um"])


@register_tiles("auto")
def auto_tiles(frames: np.ndarray, boxes: np.ndarray, *, scale: int = 2, device: torch.device | None = None,
               seed: int = 0, report_every: int = 50, members: str = DEFAULT_MEMBERS,
               size: int | None = None, **hints: Any) -> Generator[Progress, None, list[TileResult]]:
    """All tiles of a kernel map: each member's tile pass (one pass where the member has one), then
    :func:`combine_members` per tile; the shot-noise test is made once, on the whole image. On a microscope
    image each tile's kernel is the microscope rule's (with the whole image's microscope-network kernel), on
    the side of the whole image's kernel (a map's kernels share one support), unless ``size`` is given."""
    optics_hints = Hints(**hints)
    if size is not None:
        _check_size(size)
    names = _members(members)
    start = time.perf_counter()
    photon_limited = functools.cache(functools.partial(_photon_limited, frames))
    microscope = optics_hints.given or (int(scale) in BLIND_MICROSCOPE_SCALES and photon_limited())
    defocus = network = None
    if microscope:
        whole: KernelEstimate = yield from auto(frames, scale=scale, device=device, seed=seed,
                                                report_every=report_every, members=members, size=size, **hints)
        size = int(whole.kernel.shape[0])
        defocus = whole.options["microscope"].get("defocus_fit_um")
        network = whole.extras.get("network_kernel")   # the whole image's: the network reads many crops
    size = KERNEL_SIZE if size is None else size
    n_tiles = len(np.asarray(boxes).reshape(-1, 4))
    per_tile: list[list[tuple[str, np.ndarray, float]]] = [[] for _ in range(n_tiles)]
    reasons: list[dict[str, str]] = [{} for _ in range(n_tiles)]  # per tile, the members that could not read it
    for i, name in enumerate(names):
        if name in ESTIMATORS.unavailable:
            for why in reasons:
                why[name] = "unavailable"
            continue
        spec = ESTIMATORS.get(name)
        member_options = MICROSCOPE_MEMBER_OPTIONS.get(name, {}) if microscope else {}
        try:
            results: list[TileResult] = yield from relay(
                iter_tile_estimates(spec, frames, boxes, scale=scale, device=device, seed=seed,
                                    report_every=report_every, options=spec.resolve(member_options)),
                offset=i * STEPS_PER_MEMBER, span=STEPS_PER_MEMBER, total=STEPS_PER_MEMBER * len(names), start=start,
                prefix="auto: ")
        except BadInputError as exc:  # the member cannot read this image at all: the others still decide
            for why in reasons:
                why[name] = _reason(name, exc, short=True)
            continue
        for t, r in enumerate(results):
            if r.message:
                reasons[t][name] = _reason(name, r.message, short=True)
            if r.kernel is not None:
                conf = NEUTRAL_CONFIDENCE if r.confidence is None else float(r.confidence)
                cov = r.covariance if r.covariance is not None else second_moments(r.kernel)
                per_tile[t].append((name, np.asarray(cov, dtype=np.float64), conf))
    out: list[TileResult] = []
    for results, why in zip(per_tile, reasons):
        # No shrinkage towards the fixed Gaussian: the map's fallback takes a doubtful tile towards its
        # neighbours and the global kernel instead, which know this image.
        cov, confidence, info = combine_members(results, photon_limited=photon_limited, full_trust=TILE_FULL_TRUST,
                                                **(MICROSCOPE_READING if microscope else {}))
        if cov is not None and microscope:
            kernel, _ = microscope_kernel(cov, optics_hints, direct=bool(set(info["used"]) & set(DECISIVE)),
                                          agreement=agreement_of(info), defocus_fit=defocus, size=size,
                                          shape=network)
            out.append(TileResult(kernel=kernel, confidence=confidence, covariance=second_moments(kernel)))
        elif cov is None:
            detail = "; ".join(f"{name}: {reason}" for name, reason in why.items())
            out.append(TileResult(kernel=None, confidence=0.0, message="auto: no member could read the tile"
                                  + (f" ({detail})" if detail else "")))
        else:
            out.append(TileResult(kernel=gaussian_from_covariance(cov, int(size)), confidence=confidence,
                                  covariance=cov))
    yield Progress(STEPS_PER_MEMBER * len(names), STEPS_PER_MEMBER * len(names), time.perf_counter() - start,
                   stage=Stage.MAP, message="auto: tiles combined")
    return out
