"""Learned kernel estimation: a small network regresses the blur's covariance from many LR crops.

The network (:mod:`._learned_net`) looks at one 64×64 crop of the LR luminance, locally normalised,
and predicts the matrix logarithm of the ×2 SR kernel's 2×2 covariance Σ (HR px², log-Euclidean) and
a variance for each of its three numbers. The bundled network is :class:`._learned_net.SpectralNet`
(the crop's log power spectrum in radial × angular bands, then an MLP): the blur shows in how fast the
spectrum falls along each orientation, and it learns within a CPU training budget where the plain CNN
(:class:`._learned_net.CovarianceNet`, also loadable) stayed on the predict-the-mean plateau. Per image,
crops are drawn with probability rising with their gradient energy (seeded), predicted in batches and
combined by their predicted precisions; the kernel is the anisotropic Gaussian with the combined Σ. A
×4 input gives the same ×2 kernel: the network was trained on ×4 LR made with ``analytic_x4(k2)`` and
is told the scale.

Training (``scripts/train_learned.py``) uses only synthetic degradations of procedural dead leaves,
synthetic fluorescence scenes and openly licensed scikit-image photographs, with kernels drawn by the
DIV2KRK protocol; the DIV2KRK images are never used for training or tuning. ``confidence`` comes
from the predicted variances and the spread between crops, times a factor that falls when the crops'
contrast is within a few noise σ (``physics.noise.estimate_noise_sigma``): flat or noise-only images
get a low one.

The bundled weights (``learned_weights.pt`` beside this module) are loaded by default;
``weights=<path>`` loads another file written by the training script.

``family="optics"`` loads the microscope network instead (``learned_optics.pt``,
:class:`._learned_net.OpticsNet`, trained on widefield, confocal, defocused, aberrated and slightly
stretched ``psf_2d`` kernels, ``scripts/train_learned.py --family optics``). Besides the covariance of
the best-fitting Gaussian, each crop gives the kernel's radial profile (32 knots, dense in the core);
the crops' profiles, rendered with the combined covariance's anisotropy (:func:`._learned_net.render_profile`),
are averaged by the crops' precisions. The kernel keeps its Airy rings or defocus shoulder, is
positive, sums to 1, is centred, and its side is the smallest holding 99 % of its mass (at least
``size``, at most 41). ``options["learned_fit"]`` holds the readings: FWHM, covariance, defocus in
depths of field, widefield share, side.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..constraints import Interval
from ..errors import BadInputError, BadOptionError, WeightsMissingError
from ..physics.conventions import pad_to, support_side
from ..physics.kernels import gaussian_from_covariance
from ..physics.noise import estimate_noise_sigma
from ..registry import register, register_tiles
from ..types import KernelEstimate, Progress, TileResult
from ..vocabulary import KERNEL_SIZE, Stage
from ..weights import read_weight_file
from ._learned_net import (
    CROP,
    FORMAT,
    PROFILE_SIDE,
    build_net,
    combine,
    luminance,
    pick_crops,
    predict_crops,
    predict_log_covariance,
    predict_optics_crops,
    profile_radii,
    render_profile,
)

__all__ = ["BUNDLED_WEIGHTS", "OPTICS_WEIGHTS", "FAMILIES", "load_learned_net", "learned",
           "confidence_from_uncertainty", "UNCERTAINTY_SCALE", "optics_kernel"]

BUNDLED_WEIGHTS = Path(__file__).with_name("learned_weights.pt")
OPTICS_WEIGHTS = Path(__file__).with_name("learned_optics.pt")
FAMILIES = ("gaussian", "optics")
"""Kernel families: ``gaussian`` (DIV2KRK-protocol anisotropic Gaussians, :data:`BUNDLED_WEIGHTS`) and
``optics`` (microscope PSFs, :data:`OPTICS_WEIGHTS`)."""
OPTICS_MASS = 0.99     # the optics family's kernel side holds this share of its mass
CROPS = 48
TTA = 1
MIN_CROP = 32          # smallest crop the network's valid convolutions and pooling still work on
BATCH = 16             # crops per forward pass (a progress report between passes)
TILE_CROPS = 12        # crops per tile of a kernel map (a tile is a fraction of the image: fewer suffice)
TILE_BATCH = 128       # crops per forward pass over the tiles of a kernel map
UNCERTAINTY_SCALE = 0.5
"""Uncertainty (r.m.s. log-covariance std, see :class:`._learned_net.Prediction`) at which the network's
share of the confidence is exp(-1); set on synthetic validation images, not on DIV2KRK."""
SNR_SCALE = 3.0
"""Crop contrast over noise σ at which the signal's share of the confidence is 1 - exp(-1): below a few
noise σ a crop's spectrum is the noise's, whatever the network says."""
NOISE_FLOOR = 0.3 / 255  # 8-bit quantisation: no image is cleaner than this


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, metadata) of a weight file."""
    obj = read_weight_file(path, "the learned estimator's weights")
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or not isinstance(obj.get("state_dict"), dict):
        raise BadInputError(f"{path} is not a weight file of the learned estimator (expected one written by "
                            f"scripts/train_learned.py, format {FORMAT!r})")
    return obj["state_dict"], dict(obj.get("meta") or {})


def _weights_path(weights: str | os.PathLike | None, family: str = "gaussian") -> Path:
    text = "" if weights is None else str(weights).strip()
    path = (OPTICS_WEIGHTS if family == "optics" else BUNDLED_WEIGHTS) if text == "" else Path(text).expanduser()
    if not path.is_file():
        where = ("the bundled weights of the learned estimator are missing from this installation "
                 "(reinstall the package, or train them with scripts/train_learned.py)" if text == ""
                 else "no such file")
        raise WeightsMissingError(f"learned estimator: weights file {path} not found: {where}")
    return path


def load_learned_net(weights: str | os.PathLike | None = "", device: torch.device | str = "cpu",
                     family: str = "gaussian") -> tuple[torch.nn.Module, dict[str, Any], Path]:
    """The trained network (eval mode, float32, on ``device``), its metadata and its file.

    ``weights``: ``""`` (the bundled file of ``family``) or a path. A missing file raises
    :class:`~napari_kernelgan.errors.WeightsMissingError`, an unreadable or foreign one
    :class:`~napari_kernelgan.errors.BadInputError`; both name the file. ``family="optics"`` needs a file
    of the optics network.
    """
    path = _weights_path(weights, family)
    state, meta = _read(path)
    if family == "optics" and meta.get("arch", {}).get("name") != "OpticsNet":
        raise BadInputError(f"{path} holds the learned estimator's Gaussian network, not the microscope one: "
                            "use family='gaussian' with it, or a file written by scripts/train_learned.py "
                            "--family optics")
    net = build_net(meta)
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except (RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0]
        raise BadInputError(f"{path} does not fit the learned estimator's network: {first}") from exc
    return net.eval().to(device), meta, path


def confidence_from_uncertainty(uncertainty: float, snr: float = math.inf) -> float:
    """Confidence in [0, 1] from the predicted uncertainty (log units, ≥ 0; decreasing) and the crops'
    median contrast-to-noise ratio ``snr`` (increasing)."""
    if not math.isfinite(uncertainty) or math.isnan(snr):
        return 0.0
    signal = 1.0 - math.exp(-(snr / SNR_SCALE) ** 2) if math.isfinite(snr) else 1.0
    return float(math.exp(-max(uncertainty, 0.0) / UNCERTAINTY_SCALE) * signal)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    arr = np.asarray(frames)
    if arr.ndim != 4:
        raise BadInputError(f"learned: expected frames (N, C, H, W), got shape {arr.shape}")
    if min(arr.shape[-2:]) < MIN_CROP:
        raise BadInputError(f"learned: the image is {arr.shape[-2]}×{arr.shape[-1]} pixels; at least "
                            f"{MIN_CROP}×{MIN_CROP} is needed")
    if not np.all(np.isfinite(arr)):
        raise BadInputError("learned: the image contains NaN or infinite values")
    if float(arr.max() - arr.min()) < 1e-6:
        raise BadInputError("learned: the image is constant: there is no structure to estimate a kernel from")
    return arr


def _check_learned_options(crops: int, size: int, scale: int, family: str = "gaussian") -> None:
    # crops ≥ 1 and size ≥ 3 are declared ranges, checked by the registry
    if family not in FAMILIES:
        raise BadOptionError(f"learned: family must be one of {', '.join(FAMILIES)}; got {family!r}")
    if int(size) % 2 == 0:
        raise BadOptionError(f"learned: size must be odd, got {size!r}")
    if scale not in (2, 4):
        raise BadOptionError(f"learned: scale must be 2 or 4, got {scale!r}")


def _confidence(pred_uncertainty: float, patches: np.ndarray, sigma: float) -> tuple[float, float]:
    """(confidence, snr) of a set of crops given the image's noise σ."""
    snr = float(np.median(patches.reshape(len(patches), -1).std(axis=1))) / sigma
    return confidence_from_uncertainty(pred_uncertainty, snr), snr


@register("learned", kind="estimator",
          summary="Learned (about a second): the blur's covariance regressed from many LR crops by a "
                  "small network trained on synthetic degradations, as an anisotropic Gaussian (family optics: "
                  "a microscope PSF with its rings and defocus)",
          defaults={"weights": "", "crops": CROPS, "tta": TTA, "size": KERNEL_SIZE, "family": "gaussian"},
          main=("crops",), choices={"tta": (1, 2, 4, 8), "family": FAMILIES},
          ranges={"crops": Interval(int, 1, None), "size": Interval(int, 3, None)},
          help={"weights": "weight file; unset: the bundled weights (scripts/train_learned.py writes others)",
                "family": "gaussian: an anisotropic Gaussian (DIV2KRK-like blur); optics: a microscope PSF "
                          "(Airy rings, defocus, confocal), with a support holding 99 % of it (up to 41)",
                "crops": "LR crops of 64×64 drawn per image, weighted toward textured regions (more: steadier)",
                "tta": "views of each crop (flips, transposes) whose predictions are averaged",
                "size": "side of the returned ×2 kernel (odd; optics family: the smallest side)"})
def learned(frames: np.ndarray, *, scale: int = 2, device: torch.device | None = None, seed: int = 0,
            report_every: int = 50, weights: str | None = "", crops: int = CROPS,
            tta: int = TTA, size: int = KERNEL_SIZE,
            family: str = "gaussian") -> Generator[Progress, None, KernelEstimate]:
    """×2 kernel as the Gaussian of the covariance a small network predicts from LR crops (``family="optics"``:
    a microscope PSF, see the module's docstring)."""
    _check_learned_options(crops, size, scale, family)
    if family == "optics":
        return (yield from _learned_optics(frames, scale=scale, device=device, seed=seed, weights=weights,
                                           crops=crops, tta=tta, size=size))
    start = time.perf_counter()
    dev = torch.device("cpu") if device is None else torch.device(device)
    arr = _check_frames(frames)
    yield Progress(0, 1, 0.0, stage=Stage.PREPARE, message="loading the learned estimator")
    net, meta, path = load_learned_net(weights, dev)
    gray = luminance(arr)
    crop = min(int(meta.get("arch", {}).get("crop", CROP)), *gray.shape[-2:])
    patches = pick_crops(gray, int(crops), seed=seed, crop=crop)
    total = len(patches)
    mus, logvars = [], []
    for i in range(0, total, BATCH):
        yield Progress(i, total, time.perf_counter() - start, stage=Stage.ESTIMATE,
                       message=f"predicting the covariance from crop {i + 1} of {total}")
        part = predict_log_covariance(net, patches[i:i + BATCH], scale, device=dev, tta=int(tta))
        mus.append(part.crop_mu)
        logvars.append(part.crop_logvar)
    pred = combine(np.concatenate(mus), np.concatenate(logvars))
    cov = pred.covariance
    kernel = gaussian_from_covariance(cov, int(size))
    sigma = max(float(estimate_noise_sigma(gray)), NOISE_FLOOR)
    confidence, snr = _confidence(pred.uncertainty, patches, sigma)
    yield Progress(total, total, time.perf_counter() - start, stage=Stage.ESTIMATE, kernel=kernel,
                   message=f"covariance predicted (confidence {confidence:.2f})")
    return KernelEstimate(kernel=kernel, dmap=None, loss_history={}, iterations=0,
                          elapsed=time.perf_counter() - start, device=str(dev), seed=seed, confidence=confidence,
                          extras={"covariance": cov.tolist(), "log_covariance": pred.log_cov.tolist(),
                                  "uncertainty": pred.uncertainty, "snr": snr, "noise_sigma": sigma, "crops": total,
                                  "crop_size": crop, "weights_file": str(path), "training_steps": meta.get("steps")})



def _tile_inputs(frames: np.ndarray, boxes: np.ndarray, device: torch.device | None, weights: str | None,
                 crops: int, family: str) -> tuple[Any, torch.device, np.ndarray, float, int, np.ndarray, int]:
    """What every kernel map of ``learned`` starts from: the network, its device, the luminance, the image's
    noise σ (one measurement for all tiles), crops per tile, the boxes and one crop side for every tile."""
    dev = torch.device("cpu") if device is None else torch.device(device)
    arr = _check_frames(frames)
    net, meta, _ = load_learned_net(weights, dev, family=family)
    gray = luminance(arr)
    sigma = max(float(estimate_noise_sigma(gray)), NOISE_FLOOR)
    boxes = np.asarray(boxes).reshape(-1, 4)
    # One crop side for every tile (the network's, or the smallest tile's), so all crops share the batches.
    side = min(int(meta.get("arch", {}).get("crop", CROP)), int((boxes[:, 2] - boxes[:, 0]).min()),
               int((boxes[:, 3] - boxes[:, 1]).min()))
    return net, dev, gray, sigma, min(int(crops), TILE_CROPS), boxes, side


@register_tiles("learned")
def learned_tiles(frames: np.ndarray, boxes: np.ndarray, *, scale: int = 2, device: torch.device | None = None,
                  seed: int = 0, report_every: int = 50, weights: str | None = "", crops: int = CROPS,
                  tta: int = TTA, size: int = KERNEL_SIZE,
                  family: str = "gaussian") -> Generator[Progress, None, list[TileResult]]:
    """All tiles of a kernel map in one network pass: :data:`TILE_CROPS` crops per tile (at most
    ``crops``), one noise measurement for the image; each tile's crops combined as for a whole image
    (``family="optics"``: every tile's PSF on the side of the whole image's)."""
    _check_learned_options(crops, size, scale, family)
    if family == "optics":
        return (yield from _learned_optics_tiles(frames, boxes, scale=scale, device=device, seed=seed,
                                                 weights=weights, crops=crops, tta=tta, size=size))
    start = time.perf_counter()
    net, dev, gray, sigma, per_tile, boxes, side = _tile_inputs(frames, boxes, device, weights, crops, "gaussian")
    tiles: list[np.ndarray | None] = []
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        part = gray[:, y0:y1, x0:x1]
        flat = min(part.shape[-2:]) < MIN_CROP or float(np.ptp(part)) < 1e-6
        tiles.append(None if flat else pick_crops(part, per_tile, seed=int(seed) * 1_000_003 + i, crop=side))
    readable = [i for i, t in enumerate(tiles) if t is not None]
    stack = np.concatenate([tiles[i] for i in readable]) if readable else np.zeros((0, side, side))
    owner = np.concatenate([np.full(len(tiles[i]), i) for i in readable]) if readable else np.zeros(0, int)
    total = len(stack)
    mus, logvars = [np.zeros((0, int(tta), 3))], [np.zeros((0, int(tta), 3))]
    for b in range(0, total, TILE_BATCH):
        yield Progress(b, total, time.perf_counter() - start, stage=Stage.MAP,
                       message=f"learned: crops {b + 1}-{min(b + TILE_BATCH, total)} of {total}")
        mu, logvar = predict_crops(net, stack[b:b + TILE_BATCH], scale, batch=TILE_BATCH, device=dev, tta=int(tta))
        mus.append(mu)
        logvars.append(logvar)
    mu, logvar = np.concatenate(mus), np.concatenate(logvars)
    out: list[TileResult] = []
    for i, patches in enumerate(tiles):
        if patches is None:
            out.append(TileResult(kernel=None, confidence=0.0, message="learned: the tile is flat or too small"))
            continue
        pred = combine(mu[owner == i].reshape(-1, 3), logvar[owner == i].reshape(-1, 3))
        cov = pred.covariance
        confidence, _ = _confidence(pred.uncertainty, patches, sigma)
        out.append(TileResult(kernel=gaussian_from_covariance(cov, int(size)), confidence=confidence, covariance=cov))
    yield Progress(total, total, time.perf_counter() - start, stage=Stage.MAP, message="learned: tiles done")
    return out


# ------------------------------------------------------------------------------------- optics family


def optics_kernel(parts: dict[str, np.ndarray], size: int = KERNEL_SIZE) -> tuple[np.ndarray, Any, dict[str, Any]]:
    """(kernel, combined :class:`._learned_net.Prediction`, readings) from :func:`predict_optics_crops` output.

    The covariance is combined as for the Gaussian family; each crop's profile is rendered with its
    anisotropy and the kernels are averaged by the crops' precisions (a hedge where crops disagree).
    The side is the smallest holding :data:`OPTICS_MASS` of the kernel, at least ``size``, at most 41.
    """
    mu, logvar = parts["mu"].reshape(-1, 3), parts["logvar"].reshape(-1, 3)
    pred = combine(mu, logvar)
    weight = np.exp(-parts["logvar"]).mean(axis=(1, 2))
    weight = weight / weight.sum()
    profile = np.exp(parts["profile"] - parts["profile"].max(axis=1, keepdims=True))
    prof_t = torch.from_numpy(profile)
    log_cov = torch.from_numpy(np.repeat(pred.log_cov[None], len(profile), 0))
    full = np.tensordot(weight, render_profile(prof_t, log_cov).numpy(), axes=1)
    iso = np.tensordot(weight, render_profile(prof_t, torch.zeros_like(log_cov)).numpy(), axes=1)
    side = int(min(PROFILE_SIDE, max(int(size), support_side(full, OPTICS_MASS))))
    kernel = pad_to(full, side)
    kernel = kernel / kernel.sum()
    aux = parts["aux"]
    shown = np.tensordot(weight, profile / profile[:, :1], axes=1)
    fit = {"family": "optics", "fwhm_px": round(_fwhm(iso), 3), "covariance": pred.covariance.round(4).tolist(),
           "defocus_dof": round(float(np.clip(weight @ aux[:, 0], 0, None)), 3),
           "widefield": round(float(weight @ (1 / (1 + np.exp(-aux[:, 1])))), 3), "side": side,
           "profile_radii_px": profile_radii(profile.shape[1]).round(3).tolist(),
           "profile": shown.round(5).tolist()}
    return kernel, pred, fit


def _fwhm(k: np.ndarray) -> float:
    """FWHM (HR px) along the middle row of a centred isotropic kernel, linear between pixels."""
    c = k.shape[0] // 2
    row, half = k[c], k[c, c] / 2
    for i in range(c, len(row) - 1):
        if row[i + 1] < half:
            return 2 * ((i - c) + (row[i] - half) / (row[i] - row[i + 1]))
    return float(len(row))


def _learned_optics(frames: np.ndarray, *, scale: int, device: torch.device | None, seed: int,
                    weights: str | None, crops: int, tta: int, size: int) -> Generator[Progress, None, KernelEstimate]:
    """The ``family="optics"`` estimate of :func:`learned`."""
    start = time.perf_counter()
    dev = torch.device("cpu") if device is None else torch.device(device)
    arr = _check_frames(frames)
    yield Progress(0, 1, 0.0, stage=Stage.PREPARE, message="loading the learned estimator (microscope PSFs)")
    net, meta, path = load_learned_net(weights, dev, family="optics")
    gray = luminance(arr)
    crop = min(int(meta.get("arch", {}).get("crop", CROP)), *gray.shape[-2:])
    patches = pick_crops(gray, int(crops), seed=seed, crop=crop)
    total = len(patches)
    parts: dict[str, list[np.ndarray]] = {"mu": [], "logvar": [], "profile": [], "aux": []}
    for i in range(0, total, BATCH):
        yield Progress(i, total, time.perf_counter() - start, stage=Stage.ESTIMATE,
                       message=f"predicting the PSF from crop {i + 1} of {total}")
        out = predict_optics_crops(net, patches[i:i + BATCH], scale, device=dev, tta=int(tta))
        for key, value in out.items():
            parts[key].append(value)
    kernel, pred, fit = optics_kernel({k: np.concatenate(v) for k, v in parts.items()}, int(size))
    sigma = max(float(estimate_noise_sigma(gray)), NOISE_FLOOR)
    confidence, snr = _confidence(pred.uncertainty, patches, sigma)
    yield Progress(total, total, time.perf_counter() - start, stage=Stage.ESTIMATE, kernel=kernel,
                   message=f"PSF predicted: FWHM {fit['fwhm_px']:.2f} px (confidence {confidence:.2f})")
    est = KernelEstimate(kernel=kernel, dmap=None, loss_history={}, iterations=0,
                         elapsed=time.perf_counter() - start, device=str(dev), seed=seed, confidence=confidence,
                         extras={"covariance": pred.covariance.tolist(), "log_covariance": pred.log_cov.tolist(),
                                 "uncertainty": pred.uncertainty, "snr": snr, "noise_sigma": sigma, "crops": total,
                                 "crop_size": crop, "weights_file": str(path), "training_steps": meta.get("steps"),
                                 "learned_fit": fit})
    est.options["learned_fit"] = fit
    return est


def _learned_optics_tiles(frames: np.ndarray, boxes: np.ndarray, *, scale: int, device: torch.device | None,
                          seed: int, weights: str | None, crops: int, tta: int,
                          size: int) -> Generator[Progress, None, list[TileResult]]:
    """The ``family="optics"`` kernel map of :func:`learned_tiles`: every tile's PSF cut to the side the whole
    image's estimate chooses (a map's kernels share one support)."""
    whole = yield from _learned_optics(frames, scale=scale, device=device, seed=seed, weights=weights, crops=crops,
                                       tta=tta, size=size)
    start = time.perf_counter()
    net, dev, gray, sigma, per_tile, boxes, side = _tile_inputs(frames, boxes, device, weights, crops, "optics")
    results: list[tuple[np.ndarray, Any, float] | None] = []
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        yield Progress(i, len(boxes), time.perf_counter() - start, stage=Stage.MAP,
                       message=f"learned: tile {i + 1} of {len(boxes)}")
        part = gray[:, y0:y1, x0:x1]
        if min(part.shape[-2:]) < MIN_CROP or float(np.ptp(part)) < 1e-6:
            results.append(None)
            continue
        patches = pick_crops(part, per_tile, seed=int(seed) * 1_000_003 + i, crop=side)
        out = predict_optics_crops(net, patches, scale, batch=TILE_BATCH, device=dev, tta=int(tta))
        kernel, pred, _ = optics_kernel(out, PROFILE_SIDE)
        results.append((kernel, pred, _confidence(pred.uncertainty, patches, sigma)[0]))
    side = int(whole.kernel.shape[0])
    tiles: list[TileResult] = []
    for r in results:
        if r is None:
            tiles.append(TileResult(kernel=None, confidence=0.0, message="learned: the tile is flat or too small"))
        else:
            cut = pad_to(r[0], side)
            tiles.append(TileResult(kernel=cut / cut.sum(), confidence=r[2], covariance=r[1].covariance))
    yield Progress(len(boxes), len(boxes), time.perf_counter() - start, stage=Stage.MAP, message="learned: tiles done")
    return tiles
