"""Isotropic voxels: super-resolution of a z-stack along z to (about) its lateral pixel size.

Methods (``sr_method``): ``"auto"`` (default: the full 3-D PSF path where the PSF carries a widefield physical
model, with the 3-D PSF of the model's NA or a neighbour chosen on a central block, else ``"smore"``;
:func:`auto_method`), ``"smore"`` (a network trained on the stack's own lateral planes,
:mod:`~napari_kernelgan.axial.smore`), ``"deconvolve"`` (closed form and Richardson–Lucy per column, or with a
full 3-D PSF, :mod:`~napari_kernelgan.axial.zdeconv`) and ``"cubic"`` (cubic interpolation in z,
:func:`cubic_z`: the baseline and the fallback). The output follows the conventions of
:mod:`napari_kernelgan.axial.psf`: ``(nz - 1) F + 1`` planes, input plane ``i`` is output plane ``i F``.

Safety (``safe=True``): the noise is measured on the stack; a separable PSF must explain the stack (its lateral
lines degraded with the relative axial blur must be about as sharp as its z lines, :data:`PSF_MATCH`); the
method must beat cubic interpolation by :data:`MARGIN_DB` on held-out lateral planes, or for the 3-D path
predict held-out planes within :data:`MARGIN_3D_DB` of cubic's prediction without dipping below the
background (:data:`BELOW_MAX`); and the separable methods' output, re-degraded along z with the PSF, must
reproduce the input planes about as well as cubic interpolation's does (:data:`CONSISTENCY`). The limits are
fitted on development stacks (record ``axial_safety``). Where a check fails, the result is cubic
interpolation with an :class:`~napari_kernelgan.sr._safety.UnsafeSRWarning` and the reason in
``AxialResult.warnings``.
"""
from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..devices import reproducible, resolve_device, torch_threads
from ..errors import BadInputError, BadOptionError, Param
from ..records import record_values
from ..sr._safety import UnsafeSRWarning
from ..types import Progress, pulse
from ..vocabulary import Stage
from . import _autochoice, _zsafety, smore, zdeconv
from ._zops import (
    NoiseModel,
    Normaliser,
    apply_along,
    cubic_matrix,
    degrade_matrix,
    lateral_pairs,
    measure_stack_noise,
    psnr,
)
from .psf import DEFAULT_SR_METHOD, SR_METHODS, AxialPSF, output_planes

__all__ = ["SR_METHODS", "AxialResult", "auto_method", "cubic_z", "iter_super_resolve_axial", "super_resolve_axial",
           "default_train_seconds", "MARGIN_DB", "MARGIN_3D_DB", "CHANGE_3D", "CONSISTENCY", "PSF_MATCH", "BELOW_MAX",
           "NA_SCALES", "PREFER_DB", "NETWORK_MARGIN_DB"]

MARGIN_DB = 0.1      # the held-out PSNR gain over cubic a method must show (design choice)
# The safeguards' limits, fitted by cross-validation on development stacks (benchmarks/calibrate_axial_safety.py).
_SAFETY = record_values("axial_safety")
# The 3-D PSF path's held-out check predicts the odd planes from the even ones, at twice the factor, through the
# PSF: the lowest accepted gain over cubic's prediction (dB). A harder problem than the stack's own, so it may be
# below zero where the stack itself gains.
MARGIN_3D_DB = float(_SAFETY["held_min_db"])
# Highest accepted depth of the 3-D path's result below the stack's background, over the block's contrast
# (:func:`~napari_kernelgan.axial._zsafety.below_background`): a PSF wider than the stack's blur rings there.
BELOW_MAX = float(_SAFETY["below_max"])
# The NA multipliers of a widefield model ``auto`` tries (a PSF a few % too wide in NA loses several dB).
NA_SCALES = tuple(float(v) for v in _SAFETY["na_scales"])
# How much better (dB, held-out z gain) an NA neighbour must predict for ``auto`` to leave the model's own NA.
PREFER_DB = float(_SAFETY["prefer_db"])
# With a confocal model, how much better (dB) the network's held-out z gain must be than the chosen 3-D PSF's for
# ``auto`` to run the network; ``None`` where the record holds none: the network runs, as without the check.
NETWORK_MARGIN_DB = None if _SAFETY.get("network_margin_db") is None else float(_SAFETY["network_margin_db"])
# Highest accepted RMS change the 3-D PSF path makes to cubic interpolation of a central block, over the block's
# own standard deviation (a guard against gross failure: a PSF with half the NA reads 2.8-89).
CHANGE_3D = 4.0
# Highest accepted ratio of re-degradation errors, method over cubic: cubic interpolation re-blurred and sampled
# nearly returns its own input planes and the separable model explains a stack only roughly, so this guards
# against gross failure only; the held-out check carries the fine one.
CONSISTENCY = float(_SAFETY["consistency_max"])
PSF_MATCH = float(_SAFETY["psf_match_max"])  # z lines vs degraded lateral lines: highest ratio either way
SLAB_VOXELS = 1 << 18  # output voxels per slab through the network (about a second on one CPU core)
CUBIC_SLAB_VOXELS = 1 << 22
TRAIN_SECONDS_MAX = 150.0


@dataclass
class AxialResult:
    """An axially super-resolved stack. ``sr_method`` is what produced ``volume`` (``"cubic"`` after a
    fallback); ``validation`` holds the held-out PSNRs of the method and of cubic on the stack's own lateral
    data, the measured noise and timings; ``warnings`` are sentences for the user where the result may be
    worse than asked (a fallback, a check that failed); ``notes`` say what ``auto`` chose and why (an NA
    neighbour's 3-D PSF, the network where no 3-D PSF passed its checks)."""

    volume: Any
    z_step_um: float
    factor: int
    sr_method: str
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    validation: dict[str, Any] = field(default_factory=dict)
    fell_back: bool = False


def cubic_z(stack: Any, factor: int) -> np.ndarray:
    """Cubic interpolation of ``(nz, ...)`` along z at the output positions: ``((nz-1)F+1, ...)`` float32,
    input plane ``i`` kept exactly as output plane ``i F``."""
    arr = np.asarray(stack)
    return apply_along(cubic_matrix(arr.shape[0], int(factor)), arr, 0)


def auto_method(psf: AxialPSF, psf3d: tuple[np.ndarray, float, float] | None, fine_um: float
                ) -> tuple[str, tuple[np.ndarray, float, float] | None]:
    """What ``sr_method="auto"`` runs before its checks: ``("deconvolve", psf3d)`` with a given full 3-D PSF;
    ``("deconvolve", None)`` where the PSF carries a widefield physical model (``psf.model``, given or estimated),
    or a confocal one while :data:`NETWORK_MARGIN_DB` is set: the 3-D PSF is then chosen among the model's and
    its NA neighbours on a central block (:func:`~napari_kernelgan.axial._autochoice.iter_choose_model_psf3d`),
    and with a confocal model the network runs instead where its held-out z check is better by that margin;
    else ``("smore", None)``.

    A widefield PSF's out-of-focus light is not separable, so lateral lines blurred by a 1-D profile do not look
    like its z lines and the network gains little there (+0.1 to +0.7 dB on development stacks), where the
    right 3-D PSF gains +1.4 to +5.8 dB. On confocal stacks neither always wins (development stacks: the 3-D
    path +0.7 to +6.2 dB, the network +0.7 to +4.0 dB, each ahead on some), and the network needs no model.
    """
    if psf3d is not None:
        return "deconvolve", psf3d
    if psf.model is not None and (psf.model.modality == "widefield" or NETWORK_MARGIN_DB is not None):
        return "deconvolve", None
    return "smore", None


def default_train_seconds(shape: tuple[int, int, int], factor: int) -> float:
    """Training budget (s) for a stack: 10 s plus 1 s per 2 million output voxels, at most
    :data:`TRAIN_SECONDS_MAX` (a 64×512×512 stack ×4: 43 s; applying the network to its XZ and YZ planes
    takes most of the rest of the 5 minutes it may take on 2 CPU cores)."""
    voxels = output_planes(shape[0], factor) * shape[1] * shape[2]
    return float(np.clip(10.0 + voxels / 2.0e6, 10.0, TRAIN_SECONDS_MAX))


def _check(stack: Any, psf: Any, z_factor: Any, sr_method: str, sigma: Any, out: Any
           ) -> tuple[tuple[int, int, int], int]:
    shape = tuple(int(n) for n in getattr(stack, "shape", ()))
    if len(shape) != 3:
        raise BadInputError(f"axial SR needs a (z, y, x) stack; got an array of shape {shape}"
                            + (": a single 2-D image has no z to super-resolve" if len(shape) == 2 else ""))
    if shape[0] < 2:
        raise BadInputError(f"axial SR needs at least 2 planes; the stack has {shape[0]}")
    if min(shape[1:]) < 8:
        raise BadInputError(f"each plane must be at least 8×8 pixels; got {shape[1]}×{shape[2]}")
    if np.iscomplexobj(np.empty(0, dtype=getattr(stack, "dtype", np.float32))):
        raise BadInputError("the stack must hold real numbers, not complex ones")
    if not isinstance(psf, AxialPSF):
        raise BadInputError(Param("psf", type(psf).__name__), " must be an AxialPSF (from estimate_psf3d, or "
                            "made from a measured PSF)")
    if sr_method not in SR_METHODS:
        raise BadOptionError(f"unknown axial SR method {sr_method!r}; choose one of: {', '.join(SR_METHODS)}")
    if z_factor is None:
        factor = max(1, round(psf.z_step_um / psf.pixel_um))
        if factor > 8:
            raise BadInputError(f"the z step ({psf.z_step_um:g} µm) is {psf.z_step_um / psf.pixel_um:.1f}× the "
                                "pixel size: more than 8× in z cannot be super-resolved; give ",
                                Param("z_factor", 8), " or less")
    else:
        if not _whole_in(z_factor, 1, 8):
            raise BadOptionError(Param("z_factor", z_factor), " must be a whole number from 1 to 8")
        factor = int(z_factor)
    auto = isinstance(sigma, str) and sigma == "auto"
    if not auto and (isinstance(sigma, (bool, str)) or not isinstance(sigma, (int, float)) or not sigma >= 0
                     or not math.isfinite(sigma)):
        raise BadOptionError(Param("sigma", sigma), " must be 'auto' or a noise level ≥ 0 in the stack's units")
    n_out = output_planes(shape[0], factor)
    if out is not None and tuple(getattr(out, "shape", ())) != (n_out, shape[1], shape[2]):
        raise BadInputError(Param("out"), f" must have the output's shape ({n_out}, {shape[1]}, {shape[2]}), "
                            f"got {tuple(getattr(out, 'shape', ()))}")
    return shape, factor  # type: ignore[return-value]


def _whole_in(value: Any, low: int, high: int) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool) and number.is_integer() and low <= number <= high


def _sample_planes(stack: Any, indices: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(stack[int(i)], dtype=np.float64) for i in indices]


def _slabs(n: int, rows: int) -> list[tuple[int, int]]:
    rows = max(1, int(rows))
    return [(a, min(n, a + rows)) for a in range(0, n, rows)]


def _psf_match(stack: Any, kernel: np.ndarray, factor: int, noise: NoiseModel, ratio: float,
               rng: np.random.Generator) -> float:
    """Gradient power of the stack's z lines over that of its lateral lines degraded with the PSF (1: they
    look alike, as a right PSF makes them). Both from the same block of rows through every plane, so that
    content varying with depth counts alike on both sides."""
    nz, ny = int(stack.shape[0]), int(stack.shape[1])
    block = np.asarray(stack[:, max(0, ny // 2 - 32):ny // 2 + 32, :], dtype=np.float64)
    dz = float(np.mean(np.diff(block, axis=0) ** 2))
    planes = np.unique(np.linspace(0, nz - 1, min(nz, 16)).round().astype(int))
    dl = [float(np.mean(np.diff(lateral_pairs(block[i], kernel, factor, noise, ratio, rng)[0], axis=-1) ** 2))
          for i in planes]
    return dz / max(float(np.mean(dl)), 1e-30)


def _noise(plane: np.ndarray, sigma: Any) -> NoiseModel:
    if isinstance(sigma, str):
        return measure_stack_noise(plane)
    return NoiseModel(0.0, float(sigma) ** 2, False)


def iter_super_resolve_axial(stack: Any, psf: AxialPSF, *, z_factor: int | None = None,
                             sr_method: str = DEFAULT_SR_METHOD,
                             sigma: float | str = "auto", safe: bool = True, seed: int = 0, device: str = "auto",
                             threads: int | None = None, out: Any = None, train_seconds: float | None = None,
                             psf3d: tuple[np.ndarray, float, float] | None = None,
                             ) -> Generator[Progress, None, AxialResult]:
    """Generator form of :func:`super_resolve_axial`: yields progress, returns the :class:`AxialResult`."""
    t_start = time.perf_counter()
    shape, factor = _check(stack, psf, z_factor, sr_method, sigma, out)
    nz, ny, nx = shape
    n_out = output_planes(nz, factor)
    fine = psf.z_step_um / factor
    dev = resolve_device(device)
    yield Progress(0, 1000, 0.0, stage=Stage.PREPARE, message="measuring the stack's noise")
    volume = out if out is not None else np.empty((n_out, ny, nx), dtype=np.float32)
    requested = sr_method
    if sr_method == "auto" and factor > 1:
        sr_method, psf3d = auto_method(psf, psf3d, fine)
    result = AxialResult(volume=volume, z_step_um=fine, factor=factor, sr_method=sr_method)
    if factor == 1 or sr_method == "cubic":
        yield from _cubic_pass(stack, volume, factor, t_start)
        result.sr_method = "cubic"
        result.validation["seconds"] = time.perf_counter() - t_start
        return result
    with torch_threads(threads), reproducible(dev):
        rng = np.random.default_rng([int(seed), 0xA1A])
        probe = _sample_planes(stack, np.unique(np.linspace(0, nz - 1, min(nz, 5)).round().astype(int)))
        norm = Normaliser.of(np.stack(probe))
        noise = _noise(probe[len(probe) // 2], sigma)
        kernel = psf.relative_on(fine)
        ratio = psf.pixel_um / fine
        val = result.validation
        val.update(noise_a=noise.a, noise_b=noise.b, photon_limited=noise.photon_limited,
                   noise_sigma=noise.sigma_at(float(probe[len(probe) // 2].mean())))
        yield Progress(10, 1000, time.perf_counter() - t_start, stage=Stage.PREPARE, message="checking the PSF")
        match = _psf_match(stack, kernel, factor, noise, ratio, rng)
        val["psf_match"] = match
        yield Progress(20, 1000, time.perf_counter() - t_start, stage=Stage.PREPARE, message="PSF checked")
        if requested == "auto" and sr_method == "deconvolve" and psf3d is None:
            psf3d = yield from _autochoice.iter_choose_model_psf3d(
                stack, psf, probe, noise, factor, threads, result, t_start, scales=NA_SCALES,
                held_min_db=MARGIN_3D_DB, below_max=BELOW_MAX, prefer_db=PREFER_DB,
                network_margin_db=NETWORK_MARGIN_DB, seed=seed, device=dev)
            if psf3d is None:
                sr_method = result.sr_method = "smore"
        if requested == "auto":
            val["auto_choice"] = "psf3d" if psf3d is not None else sr_method
        reasons: list[str] = []
        # The separable PSF's match is a check of the separable methods; the 3-D path has its own.
        if psf3d is None and not 1.0 / PSF_MATCH <= match <= PSF_MATCH:
            what = "wider" if match > 1 else "narrower"
            reasons.append(f"the axial PSF does not match the stack: its z lines are {match:.2g}× as sharp as "
                           f"its lateral lines blurred with that PSF (the PSF looks {what} than the stack's blur)")
        train_idx, held_idx = smore.held_out(nz)
        solver: Any = None
        if sr_method == "deconvolve" and not (safe and reasons):
            solver = yield from _prepare_deconvolve(stack, probe, held_idx, psf, kernel, factor, noise, ratio,
                                                    norm, rng, seed, psf3d, nz, val, t_start, threads)
            reasons += _held_out_reasons(val)
            if requested == "auto" and psf3d is not None and safe and reasons:
                # The 3-D path's checks failed: the network needs no 3-D PSF, so it gets its turn.
                val["psf3d_rejected"] = "; ".join(reasons)
                val["psf3d_check"] = {k: val.pop(k) for k in ("psnr_method", "psnr_cubic", "change_3d") if k in val}
                val.pop("psf3d", None)
                result.notes[:] = [n for n in result.notes if not n.startswith(_autochoice.CHOSE_PSF3D)]
                result.notes.append(f"The PSF model's 3-D PSF was not used: {val['psf3d_rejected']}; the network "
                                       f"(smore) super-resolved the stack instead.")
                reasons, solver, sr_method = [], None, "smore"
                result.sr_method = sr_method
        if sr_method == "smore" and not (safe and reasons):
            solver = yield from _prepare_smore(stack, train_idx, held_idx, kernel, factor, noise, ratio, norm, rng,
                                               dev, seed, train_seconds, shape, val, t_start)
            result.warnings += [val["training_cut"]] if "training_cut" in val else []
            reasons += _held_out_reasons(val)
        if solver is not None and not (safe and reasons):
            ratio_err = yield from _apply(stack, volume, solver, factor, psf, kernel, t_start, val)
            val["consistency"] = ratio_err
            if math.isfinite(ratio_err) and not ratio_err <= CONSISTENCY:
                reasons.append(f"re-blurred along z with the PSF, its result explains the input planes "
                               f"{ratio_err:.2f}× worse than cubic interpolation's does")
        if reasons and (safe or solver is None):
            message = (f"Axial SR ({sr_method}) returned cubic interpolation in z: " + "; ".join(reasons) + ".")
            warnings.warn(message, UnsafeSRWarning, stacklevel=3)
            result.warnings.append(message)
            result.fell_back, result.sr_method = True, "cubic"
            yield from _cubic_pass(stack, volume, factor, t_start)
        elif reasons:
            message = "Axial SR without safeguards (safe=False): " + "; ".join(reasons) + "."
            warnings.warn(message, UnsafeSRWarning, stacklevel=3)
            result.warnings.append(message)
    val["seconds"] = time.perf_counter() - t_start
    yield Progress(1000, 1000, val["seconds"], stage=Stage.SR, message="done")
    return result


def _held_out_reasons(val: dict[str, Any]) -> list[str]:
    """Why the held-out checks reject the method just prepared (``val``: its validation), in the user's terms."""
    gain = val["psnr_method"] - val["psnr_cubic"]
    if not val.get("psf3d"):
        return [] if gain >= MARGIN_DB else [
            f"on held-out lateral planes it is not better than cubic interpolation "
            f"({val['psnr_method']:.2f} dB against {val['psnr_cubic']:.2f} dB)"]
    out = []
    if not gain >= MARGIN_3D_DB:
        out.append(f"with the 3-D PSF, the odd planes predicted from the even ones are {-gain:.2f} dB worse than "
                   f"cubic interpolation's prediction")
    below = val.get("below_background", 0.0)
    if not below <= BELOW_MAX:
        out.append(f"with the 3-D PSF, the result dips below the stack's background by {below:.2f}× its contrast "
                   f"(a PSF wider than the stack's blur rings)")
    change = val.get("change_3d", 0.0)
    if not change <= CHANGE_3D:
        out.append(f"the 3-D PSF changes the stack by {change:.1f}× its own contrast (a PSF far wider than the "
                   f"stack's blur amplifies noise and structure alike)")
    return out


def _cubic_pass(stack: Any, volume: Any, factor: int, t0: float) -> Generator[Progress, None, None]:
    nz, ny, nx = stack.shape
    m = cubic_matrix(nz, factor)
    slabs = _slabs(ny, CUBIC_SLAB_VOXELS // max(1, m.shape[0] * nx))
    for i, (a, b) in enumerate(slabs):
        volume[:, a:b, :] = apply_along(m, np.asarray(stack[:, a:b, :]), 0)
        yield Progress(600 + 400 * (i + 1) // len(slabs), 1000, time.perf_counter() - t0, stage=Stage.SR,
                       message="cubic interpolation in z")


@dataclass
class _Solver:
    """What turns raw slabs into fine ones: ``fine(raw, axis_other) -> float32``, with its slab size and
    whether a second pass over the other lateral axis is averaged in (the network's YZ planes)."""

    fine: Callable[[np.ndarray, int], np.ndarray]
    voxels: int
    two_pass: bool
    # Fills the whole output itself, yielding the fraction done (the 3-D PSF path's lateral tiles).
    whole: Callable[[Any, Any], Generator[float, None, None]] | None = None


def _prepare_smore(stack: Any, train_idx: np.ndarray, held_idx: np.ndarray, kernel: np.ndarray, factor: int,
                   noise: NoiseModel, ratio: float, norm: Normaliser, rng: np.random.Generator, dev: Any, seed: int,
                   train_seconds: float | None, shape: tuple[int, int, int], val: dict[str, Any], t0: float,
                   ) -> Generator[Progress, None, _Solver]:
    from ..types import relay

    pick = train_idx[np.unique(np.linspace(0, train_idx.size - 1, min(train_idx.size, smore.MAX_TRAIN_PLANES))
                               .round().astype(int))]
    train = smore.make_pairs(_sample_planes(stack, pick), kernel, factor, noise, ratio, norm, rng)
    held = smore.make_pairs(_sample_planes(stack, held_idx[:4]), kernel, factor, noise, ratio, norm, rng)
    yield Progress(40, 1000, time.perf_counter() - t0, stage=Stage.PREPARE, message="training pairs ready")
    seconds = default_train_seconds(shape, factor) if train_seconds is None else float(train_seconds)
    if not seconds > 0:
        raise BadOptionError(Param("train_seconds", train_seconds), " must be a positive number of seconds")
    t_train = time.perf_counter()
    net, steps = yield from relay(smore.iter_train(train, seconds=seconds, device=dev, seed=seed), offset=40,
                                  span=560, total=1000, start=t0, stage=Stage.SR)
    val.update(train_seconds=time.perf_counter() - t_train, train_steps=steps)
    cut = smore.training_cut(steps, seconds)
    if cut:  # the clock's safety stopped training early: the user is told
        val["training_cut"] = cut
    val["psnr_method"], val["psnr_cubic"] = smore.validate(net, held, dev)
    cubic_m = cubic_matrix(shape[0], factor)

    def fine(raw: np.ndarray, other: int) -> np.ndarray:
        up = norm.forward(apply_along(cubic_m, raw, 0))       # (z, ...) with the other lateral axis at `other`
        planes = np.moveaxis(up, (other, 0), (1, 2))          # (slab, other, z): z last, as trained
        res = smore.apply_planes(net, planes, dev)
        return norm.back(np.moveaxis(res, (1, 2), (other, 0)))

    return _Solver(fine, SLAB_VOXELS, True)


def _prepare_deconvolve(stack: Any, probe: list[np.ndarray], held_idx: np.ndarray, psf: AxialPSF,
                        kernel: np.ndarray, factor: int, noise: NoiseModel, ratio: float, norm: Normaliser,
                        rng: np.random.Generator, seed: int, psf3d: Any, nz: int, val: dict[str, Any], t0: float,
                        threads: int | None = None) -> Generator[Progress, None, _Solver]:
    wiener = zdeconv.noise_lambda(probe[len(probe) // 2], noise, psf.pixel_um, psf.z_step_um / factor)
    if psf3d is not None and nz >= 5:
        # The 3-D path chooses its own λ and runs its own held-out check: the column solve's are not needed.
        val["lambda_wiener"] = wiener
        return (yield from _prepare_psf3d(stack, psf, factor, norm, psf3d, nz, wiener, wiener, val, t0,
                                          threads))
    # Validation: the column solve on lateral lines (64 samples) degraded as z lines are; it also picks λ.
    # Nothing is trained here, so every plane may validate: up to 8, evenly spaced.
    held = _sample_planes(stack, np.unique(np.linspace(0, nz - 1, min(nz, 8)).round().astype(int)))
    pairs = []
    for plane in held:
        for o in (plane, plane.T):
            n_fine = min(o.shape[1], int(63 * factor * ratio) + 1)
            pairs.append(lateral_pairs(o[:, :max(n_fine, 2)], kernel, factor, noise, ratio, rng))
    t = norm.forward(np.concatenate([p[2].ravel() for p in pairs]))
    val["psnr_cubic"] = psnr(norm.forward(np.concatenate([p[1].ravel() for p in pairs])), t, 1.0)
    scores = []
    for scale in zdeconv.LAMBDA_LADDER:
        outs = [np.clip(lr @ zdeconv.column_solver(lr.shape[1], factor, kernel, scale * wiener)[0].T, 0.0, None)
                for lr, _, _ in pairs]
        scores.append(psnr(norm.forward(np.concatenate([x.ravel() for x in outs])), t, 1.0))
    best = int(np.argmax(scores))
    lam = zdeconv.LAMBDA_LADDER[best] * wiener
    # The strongest smoothing winning means there is nothing to restore: report no gain, so cubic is kept.
    gain = scores[best] if best < len(scores) - 1 else min(scores[best], val["psnr_cubic"])
    val.update(lambda_wiener=wiener, lambda_=lam, psnr_method=gain)
    yield Progress(300, 1000, time.perf_counter() - t0, stage=Stage.PREPARE, message="deconvolution checked")
    if psf3d is not None:
        return (yield from _prepare_psf3d(stack, psf, factor, norm, psf3d, nz, lam, wiener, val, t0, threads))
    w, a = zdeconv.column_solver(nz, factor, kernel, lam)
    steps = 0
    if noise.photon_limited:
        ny = np.asarray(stack[0]).shape[0]
        cols = np.asarray(stack[:, ny // 2 - min(ny // 2, 32): ny // 2 + 32, :], dtype=np.float64)
        steps, capped = zdeconv.rl_steps(cols.reshape(nz, -1), noise, w, a, seed)
        if capped:
            steps = 0
        val["rl_capped"] = capped
    val["rl_steps"] = steps

    def fine(raw: np.ndarray, other: int) -> np.ndarray:
        cols = np.asarray(raw, dtype=np.float64).reshape(nz, -1)
        x = np.clip(w @ cols, 0.0, None)
        if steps:
            c, _ = zdeconv.richardson_lucy_z(_counts(cols, noise), _counts(x, noise), a, steps)
            x = noise.a * c - noise.b / noise.a
        return x.reshape((-1,) + raw.shape[1:]).astype(np.float32)

    return _Solver(fine, 1 << 21, False)


def _prepare_psf3d(stack: Any, psf: AxialPSF, factor: int, norm: Normaliser, psf3d: Any, nz: int, lam: float,
                   wiener: float, val: dict[str, Any], t0: float, threads: int | None = None
                   ) -> Generator[Progress, None, _Solver]:
    """The full 3-D PSF path: λ and the held-out check on a central 64×64 block, then tiles."""
    solver3 = zdeconv.Psf3dSolver(psf3d, psf.pixel_um, psf.z_step_um / factor, factor, lam, workers=threads)
    yield Progress(300, 1000, time.perf_counter() - t0, stage=Stage.PREPARE, message="checking the 3-D PSF")
    block = _zsafety.central_block(stack)
    if nz >= 5:
        val["lambda_3d"], _ = yield from pulse(solver3.iter_choose_lambda(block, wiener), lambda: Progress(
            300, 1000, time.perf_counter() - t0, stage=Stage.PREPARE, message="choosing λ"))
        # Its own held-out check: the odd planes predicted from the even ones, against cubic's prediction.
        mine, base = solver3.held_out_errors(block)
        yield Progress(300, 1000, time.perf_counter() - t0, stage=Stage.PREPARE, message="3-D PSF checked")
        val["psnr_method"] = _psnr_of_mse(mine / norm.scale ** 2)
        val["psnr_cubic"] = _psnr_of_mse(base / norm.scale ** 2)
    # How far the solve moves the block from cubic interpolation, in the block's own contrast: a PSF far
    # wider than the stack's blur blows structure and noise up, which predicting held-out planes (re-blurred
    # with that same PSF) does not see.
    up = cubic_z(block, factor).astype(np.float64)
    solved = solver3.solve(block.astype(np.float64))
    val["change_3d"] = float(np.sqrt(np.mean((solved - up) ** 2)) / max(float(np.std(up)), 1e-12))
    val["below_background"] = _zsafety.below_background(solved, block, float(np.std(up)))
    val["psf3d"] = True
    yield Progress(400, 1000, time.perf_counter() - t0, stage=Stage.PREPARE, message="3-D PSF checked")

    def fine3(raw: np.ndarray, other: int) -> np.ndarray:
        return solver3.solve(raw)

    return _Solver(fine3, 1 << 20, False, whole=solver3.iter_solve_volume)


def _psnr_of_mse(mse: float) -> float:
    """PSNR (dB) of a mean squared error on the normalised range (1)."""
    return float(10.0 * math.log10(1.0 / max(mse, 1e-30)))


def _counts(x: np.ndarray, noise: NoiseModel) -> np.ndarray:
    return (x + noise.b / noise.a) / noise.a


def _apply(stack: Any, volume: Any, solver: _Solver, factor: int, psf: AxialPSF, kernel: np.ndarray, t0: float,
           val: dict[str, Any]) -> Generator[Progress, None, float]:
    """Fill ``volume`` slab by slab (y-slabs; then x-slabs averaged in, for two-pass solvers), or through the
    solver's own ``whole`` pass (the 3-D PSF's tiles); returns the re-degradation error of the result over cubic
    interpolation's (the consistency ratio; NaN for the 3-D PSF, which is not the separable model it uses)."""
    nz, ny, nx = stack.shape
    n_out = output_planes(nz, factor)
    t_apply = time.perf_counter()
    if solver.whole is not None:
        last = 0.0
        for share in solver.whole(stack, volume):
            now = time.perf_counter()
            if now - last >= 0.2 or share >= 1.0:  # each piece of work is short; report no more often than this
                last = now
                yield Progress(600 + int(400 * share), 1000, now - t0, stage=Stage.SR, message="super-resolving in z")
        if hasattr(volume, "flush"):
            volume.flush()
        val["apply_seconds"] = time.perf_counter() - t_apply
        return float("nan")  # a 3-D PSF is not the separable model the re-degradation uses: no ratio
    a = degrade_matrix(n_out, kernel, factor)
    cubic_m = cubic_matrix(nz, factor)
    y_slabs = _slabs(ny, solver.voxels // max(1, n_out * nx))
    x_slabs = _slabs(nx, solver.voxels // max(1, n_out * ny)) if solver.two_pass else []
    total, done = len(y_slabs) + len(x_slabs), 0
    err = np.zeros(2)
    for y0, y1 in y_slabs:
        raw = np.asarray(stack[:, y0:y1, :], dtype=np.float64)
        res = solver.fine(raw, 2)
        volume[:, y0:y1, :] = res
        if not solver.two_pass:
            err += _errors(raw, res, a, cubic_m)
        done += 1
        yield Progress(600 + 400 * done // total, 1000, time.perf_counter() - t0, stage=Stage.SR,
                       message="super-resolving in z")
    for x0, x1 in x_slabs:
        raw = np.asarray(stack[:, :, x0:x1], dtype=np.float64)
        res = 0.5 * (np.asarray(volume[:, :, x0:x1]) + solver.fine(raw, 1))
        volume[:, :, x0:x1] = res
        err += _errors(raw, res, a, cubic_m)
        done += 1
        yield Progress(600 + 400 * done // total, 1000, time.perf_counter() - t0, stage=Stage.SR,
                       message="super-resolving in z (second orientation)")
    if hasattr(volume, "flush"):
        volume.flush()
    val["apply_seconds"] = time.perf_counter() - t_apply
    return float(np.sqrt(err[0] / err[1])) if err[1] > 0 else float("nan")


def _errors(raw: np.ndarray, res: np.ndarray, a: np.ndarray, cubic_m: np.ndarray) -> np.ndarray:
    """Squared errors of the input planes against the result and cubic interpolation, re-degraded along z."""
    cols = raw.reshape(raw.shape[0], -1)
    mine = a @ np.asarray(res, dtype=np.float64).reshape(res.shape[0], -1)
    base = a @ (cubic_m @ cols)
    return np.array([float(np.sum((mine - cols) ** 2)), float(np.sum((base - cols) ** 2))])


def super_resolve_axial(stack: Any, psf: AxialPSF, *, callback: Callable[[Progress], Any] | None = None,
                        cancel: threading.Event | None = None, **options: Any) -> AxialResult:
    """Super-resolve a (z, y, x) stack along z to (about) its lateral pixel size (see the module docstring).

    ``z_factor`` (default ``round(z_step / pixel)``, 1–8), ``sr_method`` (``"auto"``: :func:`auto_method`;
    ``"smore"``, ``"deconvolve"``, ``"cubic"``), ``sigma`` (``"auto"``: measured; else the noise σ in the stack's
    units), ``safe``, ``seed``, ``device``, ``threads``, ``out`` (a writable array of the output shape, filled
    slab by slab), ``train_seconds`` (smore), ``psf3d=(array, pixel_um, z_step_um)`` (deconvolve with a full 3-D PSF).
    ``callback(progress)`` returning ``False`` or ``cancel`` set stops the work (:class:`Cancelled`).
    """
    from ..api import drive  # here: the api module re-exports this one by name

    return drive(iter_super_resolve_axial(stack, psf, **options), callback, cancel)
