"""KernelGAN blind SR-kernel estimation (Bell-Kligler, Shocher, Irani, NeurIPS 2019).

A deep linear generator G learns to downscale the image ×2 so that a patch
discriminator D cannot tell its output patches from the image's own patches;
the kernel G applies is the image's SR kernel.

Presets:

``paper``
    As published: one 64×64 crop per step, 3000 steps, Adam (0.5, 0.999) at
    2e-4 decayed ×0.1 every 750 steps, the initial phase that holds G near
    bicubic downscaling and is then relaxed, L1 GAN loss and the kernel
    regularisers ``0.5·sum2one + 0.5·boundaries + 5·sparse + 1·centre``.
``default``
    The same networks and losses with an informative anchor: G is held near the
    kernel measured from the image's sharpest edges (:mod:`.edges`) instead of
    bicubic, batches of 4 crops per step, early stop once the kernel settles, and
    the result pulled halfway to its best-fitting anisotropic Gaussian, then mixed
    3 : 1 with the edge estimate (the two fail on different images). Measured
    on DIV2KRK, releasing the anchor (as the paper releases bicubic) made the
    kernels worse, so the default keeps it. See ``docs/engine.md``.
``fast``
    ``default`` with 100 steps, for previews.

Every preset returns a confidence: the probability that its error is below the fixed Gaussian's typical error, from
its agreement with the learned estimate (:mod:`._gan.confidence`).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import fields
from typing import Any

import numpy as np
import torch

from ..constraints import Interval
from ..errors import BadInputError
from ..physics.conventions import centre_kernel
from ..physics.metrics import second_moments
from ..registry import register, register_tiles
from ..types import KernelEstimate, Progress, TileResult, relay
from ..vocabulary import Stage
from ._gan.confidence import kernel_confidence, measure_references
from ._gan.config import PRESETS, Config, resolve_config
from ._gan.config import preset_values as _preset_values
from ._gan.fit import KernelGANFit
from ._gan.kernels import bicubic_kernel, combine_runs, finalize_kernel, measure_anchor
from ._gan.progress import (
    CHECK_UNITS,
    PREFIT_STEPS_PER_UNIT,
    dmap_units,
    edge_units,
    in_background,
    report_dmap,
)
from ._gan.schedule import AnchorPhase, EarlyStop

CPU = torch.device("cpu")

OPTION_HELP = {
    "preset": "paper: as published (3000 steps); default: anchored on the sharp-edge estimate; fast: a preview",
    "iterations": "GAN steps per run; unset: the preset's own number (the schedule is stretched to fit)",
}


# D's crop, (crop − 13) // 2 + 1 (crop_sizes), must cover its 7×7 receptive field: crop ≥ 26.
RANGES = {
    "iterations": Interval(int, 1, None), "crop": Interval(int, 26, None), "batch": Interval(int, 1, None),
    "lr_g": Interval(float, 0, None, closed="neither"), "lr_d": Interval(float, 0, None, closed="neither"),
    "lr_step": Interval(int, 1, None), "lr_gamma": Interval(float, 0, 1, closed="right"),
    "w_sum2one": Interval(float, 0, None), "w_boundaries": Interval(float, 0, None),
    "w_sparse": Interval(float, 0, None), "w_centre": Interval(float, 0, None),
    "edge_quantile": Interval(float, 0, 1, closed="neither"), "w_anchor": Interval(float, 0, None),
    "anchor_threshold": Interval(float, 0, None), "anchor_patience": Interval(int, 1, None),
    "anchor_decay_every": Interval(int, 1, None), "anchor_decay": Interval(float, 1, None),
    "anchor_floor": Interval(float, 0, None), "prefit_steps": Interval(int, 0, None),
    "constraints_below": Interval(float, 0, None), "d_noise": Interval(float, 0, None),
    "restarts": Interval(int, 1, None), "gaussian_prior": Interval(float, 0, 1),
    "verdict_crops": Interval(int, 1, None), "negligible_n": Interval(int, 1, None),
    "early_stop_tol": Interval(float, 0, None), "early_stop_every": Interval(int, 1, None),
    "anchor_blend": Interval(float, 0, 1),
}


@register("kernelgan", kind="estimator", summary="KernelGAN (Bell-Kligler et al. 2019): deep linear G against a "
          "patch D; ×2 kernel, ×4 analytic, D-map",
          presets={name: _preset_values(cfg) for name, cfg in PRESETS.items()},
          defaults={"preset": "default", **{f.name: None for f in fields(Config)}},
          main=("preset", "iterations"), help=OPTION_HELP, choices={"anchor": ("bicubic", "edges")},
          ranges=RANGES)
def kernelgan(frames: np.ndarray, *, scale: int = 2, device: torch.device = CPU, seed: int = 0,
              report_every: int = 50, preset: str = "default", iterations: int | None = None,
              g_factory: Callable[[], torch.nn.Module] | None = None,
              d_factory: Callable[[int], torch.nn.Module] | None = None,
              **overrides: Any) -> Generator[Progress, None, KernelEstimate]:
    """Estimate the ×2 SR kernel of ``frames`` (N, C, H, W) float32 in [0, 1].

    Yields :class:`Progress` from the first second (anchor, then every GAN
    step, with the current kernel every ``report_every`` steps); returns a
    :class:`KernelEstimate` with the D-map of the best run. ``overrides``: any
    :class:`Config` field (``None`` keeps the preset's value). ``g_factory`` /
    ``d_factory`` build other networks for the same fit loop (see :class:`KernelGANFit`).
    """
    cfg = resolve_config(preset, iterations, **{k: v for k, v in overrides.items() if v is not None})
    start = time.perf_counter()
    pixels = int(np.prod(frames.shape[-2:])) * len(frames)
    # One scale for every stage (unit: one GAN step), so the bar moves from the first second.
    edges = edge_units(pixels) if cfg.anchor == "edges" else 0
    prefit = -(-cfg.prefit_steps // PREFIT_STEPS_PER_UNIT)
    anchor_share = edges + prefit * cfg.restarts
    check, dmap_share = CHECK_UNITS, dmap_units(pixels)
    total = anchor_share + cfg.iterations * cfg.restarts + check + dmap_share
    elapsed = lambda: time.perf_counter() - start  # noqa: E731
    kernels: list[np.ndarray] = []
    scores: list[float] = []
    fits: list[KernelGANFit] = []
    history: dict[str, list[float]] = {}
    done = 0
    if cfg.anchor == "edges":
        yield Progress(0, total, elapsed(), stage=Stage.ANCHOR, message="measuring the sharpest edges")
        measuring = in_background(lambda: measure_anchor(frames, cfg, seed), edges)
        while True:
            try:
                part = next(measuring)
            except StopIteration as stop:
                anchor = stop.value
                break
            yield Progress(part, total, elapsed(), stage=Stage.ANCHOR, message="measuring the sharpest edges")
        yield Progress(edges, total, elapsed(), stage=Stage.ANCHOR, kernel=anchor, message="edge anchor measured")
    else:
        anchor = measure_anchor(frames, cfg, seed)
    for run in range(cfg.restarts):
        # One image is the one-picture case of the fit a kernel map runs on all its tiles at once.
        fit = KernelGANFit([frames], [anchor], cfg, device, seed + 1000 * run, g_factory=g_factory,
                           d_factory=d_factory)
        base = edges + run * prefit + done
        for step in fit.prefit(cfg.prefit_steps, every=PREFIT_STEPS_PER_UNIT):
            yield Progress(base + step // PREFIT_STEPS_PER_UNIT, total, elapsed(), stage=Stage.ANCHOR,
                           message=f"run {run + 1}/{cfg.restarts}: fitting G to the anchor, {step}/{cfg.prefit_steps}")
        base = edges + (run + 1) * prefit
        for s in fit.run(seed + 7919):
            done += 1
            stop = s.finished and s.it + 1 < cfg.iterations
            if (s.it + 1) % report_every == 0 or s.it + 1 == cfg.iterations or stop:
                current = finalize_kernel(fit.current()[0], cfg, anchor)
                loss = {k: v[-1] for k, v in fit.history.items() if v}
                yield Progress(base + done, total, elapsed(), stage=Stage.ESTIMATE, kernel=current,
                               loss=loss, message=f"run {run + 1}/{cfg.restarts}, step {s.it + 1}")
            else:
                # A report every step (without the kernel) lets a caller cancel at once.
                yield Progress(base + done, total, elapsed(), stage=Stage.ESTIMATE)
            if stop:
                total -= cfg.iterations - s.it - 1
        kernels.append(fit.raw[0])
        scores.append(float(fit.scores[0]) if cfg.restarts > 1 else 1.0)
        fits.append(fit)
        for key, vals in fit.history.items():
            history.setdefault(key, []).extend(vals)
    kernel, processed = combine_runs(kernels, scores, cfg, anchor)
    best = int(np.argmax(scores))
    at = total - check - dmap_share
    yield Progress(at, total, elapsed(), stage=Stage.DMAP, kernel=kernel,
                   message="checking the kernel against the learned estimate")
    refs = yield from relay(measure_references(frames, device, seed), offset=at, span=check, total=total,
                            start=start, stage=Stage.DMAP, prefix="checking the kernel: ")
    confidence, why = kernel_confidence(kernel, refs)
    dmap = yield from report_dmap(fits[best].dmap(frames), at + check, dmap_share, total, start)
    return KernelEstimate(kernel=kernel, dmap=dmap, loss_history=history, iterations=done,
                          elapsed=elapsed(), device=str(device), seed=seed,
                          options={"preset": preset}, confidence=confidence,
                          extras={"anchor_kernel": anchor, "run_kernels": [centre_kernel(k) for k in processed],
                                  "verdicts": scores, "config": _preset_values(cfg), **why})


@register_tiles("kernelgan")
def kernelgan_tiles(frames: np.ndarray, boxes: np.ndarray, *, scale: int = 2, device: torch.device = CPU,
                    seed: int = 0, report_every: int = 50, preset: str = "default", iterations: int | None = None,
                    **overrides: Any) -> Generator[Progress, None, list[TileResult]]:
    """Every tile of a kernel map fitted at once (:class:`._gan.fit.KernelGANFit`: one G and D per
    tile as grouped convolutions), each exactly as :func:`kernelgan` fits that tile alone with ``seed``:
    its own edge anchor, crops, anchor schedule, early stop, restarts and post-processing. A tile
    without usable edges for its anchor gets no kernel. The tiles get no confidence (only the whole-image
    estimate is checked against the learned estimate)."""
    cfg = resolve_config(preset, iterations, **{k: v for k, v in overrides.items() if v is not None})
    boxes = np.asarray(boxes).reshape(-1, 4)
    start = time.perf_counter()
    parts = [np.ascontiguousarray(frames[..., y0:y1, x0:x1]) for y0, x0, y1, x1 in boxes]
    groups: dict[tuple[int, ...], list[int]] = {}   # tiles of one size share one network
    results: list[TileResult | None] = [None] * len(parts)
    anchors: list[np.ndarray | None] = []
    # One scale for every stage (unit: one GAN step), as kernelgan's: the anchors, then each group's runs.
    shares = [edge_units(int(np.prod(part.shape[-2:])) * len(part)) if cfg.anchor == "edges" else 0 for part in parts]
    anchor_share = sum(shares)
    prefit = -(-cfg.prefit_steps // PREFIT_STEPS_PER_UNIT)
    per_run = prefit + cfg.iterations
    total = anchor_share + per_run * cfg.restarts * len({part.shape for part in parts})
    elapsed = lambda: time.perf_counter() - start  # noqa: E731
    for i, part in enumerate(parts):
        yield Progress(sum(shares[:i]), total, elapsed(), stage=Stage.ANCHOR,
                       message=f"kernelgan: anchor of tile {i + 1} of {len(parts)}")
        try:
            anchors.append(measure_anchor(part, cfg, seed))
        except BadInputError as exc:
            anchors.append(None)
            results[i] = TileResult(kernel=None, confidence=0.0, message=str(exc).splitlines()[0])
            continue
        groups.setdefault(part.shape, []).append(i)
    raw: dict[int, list[np.ndarray]] = {}
    scores: dict[int, list[float]] = {}
    for g, tiles in enumerate(groups.values()):
        for run in range(cfg.restarts):
            offset = anchor_share + (g * cfg.restarts + run) * per_run
            fit = KernelGANFit([parts[i] for i in tiles], [anchors[i] for i in tiles], cfg, device, seed + 1000 * run)
            for step in fit.prefit(cfg.prefit_steps, every=PREFIT_STEPS_PER_UNIT):
                yield Progress(offset + step // PREFIT_STEPS_PER_UNIT, total, elapsed(), stage=Stage.ANCHOR,
                               message=f"kernelgan: fitting {len(tiles)} tiles' G to their anchors, "
                                       f"{step}/{cfg.prefit_steps}")
            for s in fit.run(seed + 7919):
                yield Progress(offset + prefit + s.it + 1, total, elapsed(), stage=Stage.MAP,
                               loss={k: float(v.mean()) for k, v in s.losses.items()},
                               message=f"kernelgan: step {s.it + 1}/{cfg.iterations} of {len(tiles)} tiles at once "
                                       f"({s.settled_before} settled)")
            for i, k, v in zip(tiles, fit.raw, fit.scores):
                raw.setdefault(i, []).append(k)
                scores.setdefault(i, []).append(float(v))
    for i in raw:
        kernel, _ = combine_runs(raw[i], scores[i], cfg, anchors[i])
        results[i] = TileResult(kernel=kernel, confidence=None, covariance=second_moments(kernel))
    return results


__all__ = ["PRESETS", "Config", "resolve_config", "kernelgan", "kernelgan_tiles", "KernelGANFit", "finalize_kernel",
           "bicubic_kernel", "AnchorPhase", "EarlyStop"]
