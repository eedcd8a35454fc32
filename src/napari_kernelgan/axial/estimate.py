"""The 3-D PSF of a z-stack from the stack itself: :func:`estimate_psf3d` (method ``"spectral"``).

* **Lateral.** With the optics given: the ×2 SR kernel of the sharpest planes (``api.estimate_kernel``, ``auto``
  with the optics as hints), integrated 2×2 onto the data's own pixel grid. Without: the estimated model's.
* **Effective z blur** (``relative``). Lateral lines against z lines (:mod:`._spectral`): the extra blur ``h``
  that makes lateral lines look like z lines, fitted as a Gaussian (x lines, y lines and both together).
* **On-axis profile** (``axial``). With the optics given: their physical 3-D PSFs (:mod:`._physical`: the
  given optics and its commonest mismatch), the one nearest the width the effective blur implies, stretched
  to it; an estimate far from what the given optics allow is said so and trusted less. Without optics: the
  learned estimate (:mod:`._features`, :mod:`._learned`: the stack's noise-normalised spectra → axial and
  lateral FWHM and modality, fitted on generated development stacks), and the objective whose physical PSF
  reproduces them, which becomes ``AxialPSF.model``; the physical forward model (:mod:`._forward`) is a
  cross-check in ``qc``.
* **3-D spots** (:mod:`.spots3d`) where isolated puncta exist: a cross-check in ``qc``.

See ``docs/axial.md``.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any

import numpy as np

from ..errors import BadInputError, Param
from ..physics.metrics import profile_fwhm
from ..physics.optics import Optics
from ..records import record_values
from ..types import Progress, relay
from ..vocabulary import Stage
from . import _features as ft
from . import _spectral as sp
from ._physical import candidate_optics, physical_shape, stretched
from ._spectral import BAND_SNR, MAX_SEGMENT, SEGMENT_SHARE, SIGMAS  # noqa: F401 - the estimate's constants
from ._zops import measure_stack_noise
from .psf import AxialPSF, centre_profile, line_profile, relative_profile

__all__ = ["iter_estimate_psf3d", "estimate_psf3d", "MIN_PLANES", "contradiction"]

MIN_PLANES = sp.MIN_PLANES
"""Fewest planes a stack needs: fewer give no z spectrum to compare."""
FOCUS_PLANES = 6
"""How many of the sharpest planes give the lateral lines and the lateral kernel."""
CHUNK = 8
"""Planes read at a time (memmap and dask stacks are read in such z-chunks)."""
PHYSICS_RANGE = (0.7, 1.6)
"""An axial FWHM outside this range of what the given optics allow (their models' span) contradicts them."""
PHYSICS_DOUBT = 0.3
"""The confidence is multiplied by this where the estimate contradicts the given optics."""
TRUST_DATA = 0.5
"""Below this measurement quality (0–1) an estimate that contradicts the given optics gives way to their model."""
LATERAL_CROP = 256
"""Side of the central crop of the sharpest planes' sum that the lateral kernel is estimated on."""
SPOTS_AGREE = 1.3
"""Spots and spectra agree where their axial FWHMs are within this factor."""
SPOTS_DOUBT = 0.5
"""The confidence is multiplied by this where the spots disagree with the spectral estimate."""
FORWARD_DOUBT = 1.5
"""Without optics, a forward-model width beyond this factor of the learned one is noted."""
SPOTS_PLANES = 16
"""The spots QC reads at most this many central planes."""
SCALE: dict[str, float] = record_values("axial")["scale"]
"""Effective → on-axis scale per modality (:func:`on_axis_fwhm`), fitted by ``benchmarks/calibrate_axial.py``."""


def _read(stack: Any, lo: int, hi: int) -> np.ndarray:
    """Planes ``lo … hi-1`` as float64 (np.memmap and dask arrays are read only there)."""
    part = stack[lo:hi]
    if hasattr(part, "compute"):
        part = part.compute()
    return np.asarray(part, dtype=np.float64)


def _length(value: Any) -> float | None:
    """``value`` as a positive finite length, else ``None``."""
    try:
        length = float(value)
    except (TypeError, ValueError):
        return None
    return length if math.isfinite(length) and length > 0 else None


def _check(stack: Any, pixel_um: Any, z_step_um: Any) -> tuple[tuple[int, int, int], float, float]:
    shape = tuple(int(n) for n in getattr(stack, "shape", np.shape(stack)))
    if len(shape) == 2:
        raise BadInputError(f"axial estimation needs a z-stack (z, y, x); this image is 2-D {shape}: "
                            "estimate its lateral kernel instead")
    if len(shape) != 3:
        raise BadInputError(f"axial estimation needs one z-stack (z, y, x); got an array of shape {shape} "
                            "(split channels and time points first)")
    dtype = np.dtype(getattr(stack, "dtype", np.float64))
    if dtype.kind not in "uif":
        raise BadInputError(f"axial estimation needs real intensities; the stack's type is {dtype}")
    if shape[0] < MIN_PLANES:
        raise BadInputError(f"the stack has {shape[0]} planes; axial estimation needs at least {MIN_PLANES} "
                            "to compare its z profile with its lateral planes")
    if min(shape[1:]) < 32:
        raise BadInputError(f"the planes are {shape[1]}×{shape[2]} pixels; axial estimation needs at least 32×32")
    dz = _length(z_step_um)
    if dz is None:
        raise BadInputError(Param("z_step_um", z_step_um), " is not a z step: give the distance between planes in µm "
                            "(z_step_um in Python, --z-step on the command line, e.g. 0.3); the file states none "
                            "or not a positive one")
    px = _length(pixel_um)
    if px is None:
        raise BadInputError(Param("pixel_um", pixel_um), " is not a pixel size: give the lateral pixel size in µm "
                            "(pixel_um in Python, --pixel-size on the command line)")
    if dz <= px:
        raise BadInputError(f"the z step ({dz:g} µm) is not larger than the pixel size ({px:g} µm): the stack is "
                            "already sampled as finely along z as laterally, so there is nothing to estimate along z")
    return shape, px, dz  # type: ignore[return-value]


def _optics(optics: Optics | Mapping[str, Any] | None) -> Optics | None:
    if optics is None or isinstance(optics, Optics):
        return optics
    given = {k: v for k, v in dict(optics).items() if v is not None}
    if "na" not in given or "wavelength_um" not in given:
        return None  # partial hints: too little for a physical model; the lateral estimate still takes them
    keys = ("na", "wavelength_um", "n_immersion", "modality", "pinhole_au", "n_sample", "depth_um", "excitation_um")
    return Optics(**{k: given[k] for k in keys if k in given})


def _lateral_psf(k2: np.ndarray) -> np.ndarray:
    """The ×2 SR kernel (HR grid, half the pixel) integrated 2×2 onto the data's grid: odd, centred, sum 1."""
    k = np.asarray(k2, dtype=np.float64)
    m = (k.shape[0] // 2 + 1) // 2 * 2  # an even half so the centre falls on an LR sample
    pad = np.zeros((2 * m + 3, 2 * m + 3))
    o = (pad.shape[0] - k.shape[0]) // 2
    pad[o:o + k.shape[0], o:o + k.shape[1]] = k
    w = np.array([0.5, 1.0, 0.5])
    box = np.convolve(np.ones(1), w)
    from scipy import ndimage

    smooth = ndimage.correlate1d(ndimage.correlate1d(pad, box, 0, mode="constant"), box, 1, mode="constant")
    c = pad.shape[0] // 2
    idx = np.arange(c % 2, pad.shape[0], 2)
    out = smooth[np.ix_(idx, idx)]
    out = np.clip(out, 0, None)
    return out / out.sum()


def _model_lateral(optics: Optics, pixel_um: float) -> np.ndarray:
    """The in-focus lateral PSF of ``optics`` on the data's grid, odd side holding its first rings, sum 1."""
    from ..physics.optics import psf_2d

    side = 2 * math.ceil(1.6 * optics.wavelength_um / optics.na / pixel_um) + 1
    return psf_2d(optics, pixel_um, size=max(side, 5))


def contradiction(fwhm_um: float, allowed: tuple[float, float], optics: Optics) -> str | None:
    """A sentence for the user where ``fwhm_um`` lies outside what ``optics`` allow (``allowed``: the span of
    its models' axial FWHMs), else ``None``."""
    lo, hi = allowed
    names = {1.515: "oil", 1.333: "water", 1.0: "air"}
    immersion = names.get(round(optics.n_immersion, 3), f"n={optics.n_immersion:g}")
    what = f"an NA {optics.na:g} {immersion} {optics.modality} objective gives ({lo:.2g}–{hi:.2g} µm)"
    if lo == hi or abs(hi - lo) < 0.01:
        what = f"an NA {optics.na:g} {immersion} {optics.modality} objective gives ({lo:.2g} µm)"
    if fwhm_um > PHYSICS_RANGE[1] * hi:
        return (f"the stack's z blur ({fwhm_um:.2g} µm) is {fwhm_um / hi:.1f}× what {what}: the NA or the z step "
                "may be wrong, or the sample is strongly aberrated; the estimate is trusted less")
    if fwhm_um < PHYSICS_RANGE[0] * lo:
        return (f"the stack's z blur ({fwhm_um:.2g} µm) is narrower than what {what} allows: the NA, wavelength or "
                "z step may be wrong, or the object is not isotropic; the estimate is trusted less")
    return None


def relay_shares(gen: Generator[Any, None, Any], tick: Callable[..., Progress], offset: float, span: float,
                 message: str = "") -> Generator[Progress, None, Any]:
    """Progress reports for a generator yielding ``(share done, message)`` or the share alone (then ``message``),
    mapped onto ``offset … offset+span``; returns what the generator returns."""
    try:
        while True:
            item = next(gen)
            share, said = item if isinstance(item, tuple) else (item, message)
            yield tick(offset + span * share, said, Stage.ESTIMATE)
    except StopIteration as stop:
        return stop.value


def iter_estimate_psf3d(stack: Any, *, pixel_um: float, z_step_um: float,
                        optics: Optics | Mapping[str, Any] | None = None, lateral_estimator: str = "auto",
                        seed: int = 0, device: str = "auto", threads: int | None = None
                        ) -> Generator[Progress, None, AxialPSF]:
    """Generator form of :func:`estimate_psf3d`: yields :class:`~napari_kernelgan.types.Progress` (often; the
    caller may stop between reports) and returns the :class:`~napari_kernelgan.axial.psf.AxialPSF`."""
    start = time.perf_counter()
    total = 100
    (nz, ny, nx), px, dz = _check(stack, pixel_um, z_step_um)
    model_optics = _optics(optics)
    hints = dict(optics) if isinstance(optics, Mapping) else {}
    if model_optics is not None:
        hints.update(na=model_optics.na, wavelength_um=model_optics.wavelength_um,
                     n_immersion=model_optics.n_immersion, modality=model_optics.modality)
        if model_optics.modality == "confocal":
            hints["pinhole_au"] = model_optics.pinhole_au
    hints = {k: v for k, v in hints.items() if k in ("na", "wavelength_um", "n_immersion", "modality", "pinhole_au")}
    hints["pixel_um"] = px

    def tick(done: float, message: str, stage: str = Stage.PREPARE) -> Progress:
        return Progress(int(done), total, time.perf_counter() - start, stage=stage, message=message)

    yield tick(0, "reading the stack")
    # Per-plane sharpness (high-frequency energy) and mean, in z-chunks.
    sharp, means = np.zeros(nz), np.zeros(nz)
    for lo in range(0, nz, CHUNK):
        block = _read(stack, lo, min(nz, lo + CHUNK))
        means[lo:lo + block.shape[0]] = block.mean(axis=(1, 2))
        sharp[lo:lo + block.shape[0]] = (np.diff(block, axis=2) ** 2).mean(axis=(1, 2)) + (
            np.diff(block, axis=1) ** 2).mean(axis=(1, 2))
        yield tick(10 * min(nz, lo + CHUNK) / nz, "finding the in-focus planes")
    focus = ft.focus_planes(sharp, FOCUS_PLANES)
    planes = np.stack([_read(stack, int(i), int(i) + 1)[0] for i in focus])
    noise = measure_stack_noise(planes[int(np.argmax(sharp[focus]))], crop=None, shot_only=False)
    a, b = noise.a, noise.b
    var_x = max(a * float(planes.mean()) + b, 0.0)
    var_z = max(a * float(means.mean()) + b, 0.0)
    yield tick(15, "measuring the noise")

    learned = est_optics = lateral = None
    lat_conf = 0.5
    # Without optics the learned model gives the lateral PSF, unless the user named a 2-D estimator for it.
    if model_optics is not None or lateral_estimator != "auto":
        # Lateral PSF from the sharpest planes' sum (the same kernel, more signal).
        from ..api import iter_estimate_kernel

        image = planes.sum(axis=0)
        # A central crop holds enough structure for the kernel and keeps each estimator step short.
        cy, cx = max(0, (ny - LATERAL_CROP) // 2), max(0, (nx - LATERAL_CROP) // 2)
        image = image[cy:cy + LATERAL_CROP, cx:cx + LATERAL_CROP]
        est = yield from relay(iter_estimate_kernel(image, 2, estimator=lateral_estimator, seed=seed,
                                                    device=device, threads=threads, hints=hints),
                               offset=15, span=35, total=total, start=start, stage=Stage.ESTIMATE,
                               prefix="lateral: ")
        lateral = _lateral_psf(est.kernel)
        lat_conf = 0.5 if est.confidence is None else float(est.confidence)

    # Spectra: lateral lines' autocovariance, z segments' periodogram, the Gaussian z blur between them.
    fit = yield from relay_shares(sp.iter_z_blur(lambda lo, hi: _read(stack, lo, hi), nz, planes, var_x, var_z,
                                                 px, dz), tick, 50, 28)
    nb, s_xy, s_x, s_y, d_xy = fit["band_bins"], fit["sigma"], fit["sigma_x"], fit["sigma_y"], fit["distance"]
    clean, band, u, norm = fit["clean"], fit["band"], fit["u"], fit["norm"]
    results: dict[str, Any] = {"band_bins": nb, "segment_planes": fit["segment_planes"], "noise_var_z": var_z}
    if model_optics is None:
        # No optics: the learned estimate of the widths and modality, and the objective that reproduces them.
        from . import _learned

        features = yield from relay_shares(
            ft.iter_stack_features(lambda lo, hi: _read(stack, lo, hi), (nz, ny, nx), planes, float(means.mean()),
                                   (a, b), px, dz, fit), tick, 78, 1, "learned optics estimate")
        learned = _learned.predict(features)
        est_optics = _learned.choose_optics(learned.axial_fwhm_um, learned.lateral_fwhm_um, learned.modality, px)
        if lateral is None:
            lateral = _model_lateral(est_optics, px)
            lat_conf = learned.confidence
        yield tick(79, "learned optics estimate", Stage.ESTIMATE)

    notes: list[str] = []
    if nb >= 2:
        sigma_um = s_xy * dz
        relative = centre_profile(sp.gaussian_g(sigma_um / px / math.sqrt(2.0), max(3, math.ceil(4 * sigma_um / px))))
        eff_fwhm = 2.0 * math.sqrt(2.0 * math.log(2.0)) * sigma_um
    else:
        sigma_um = eff_fwhm = math.nan
        relative = np.array([1.0])
        notes.append("the z lines hold too little signal above the noise to measure their blur; the axial profile "
                     + ("is the physical model's" if model_optics is not None else
                        "the learned estimate's (give the objective's NA and wavelength for theirs)"))
    # A best Gaussian at the end of the range is no fit: the z spectrum does not look like a blurred lateral one.
    at_edge = nb >= 2 and not SIGMAS[0] < s_xy < SIGMAS[-1]
    lat_fwhm = profile_fwhm(line_profile(lateral), px)
    kind = model_optics.modality if model_optics is not None else "unknown"
    data_fwhm = on_axis_fwhm(eff_fwhm, lat_fwhm, kind)
    if at_edge and model_optics is not None:
        data_fwhm = math.nan  # the optics' model, below
    forward = None
    if model_optics is None and nb >= 2:
        yield tick(79, "physical forward model", Stage.ESTIMATE)
        forward = yield from relay_shares(_iter_forward(planes, var_x, px, dz, (clean, band, u, norm)), tick, 79, 15,
                                          "physical forward model")
    if learned is not None:
        data_fwhm = learned.axial_fwhm_um
    # Physical models: the on-axis shape, and the span of widths the given optics allow.
    candidates = candidate_optics(model_optics) if est_optics is None else (est_optics,)
    shapes = []
    for j, o in enumerate(candidates):
        shapes.append(physical_shape(o, px))
        yield tick(78 + 17 * (j + 1) / len(candidates), "physical models", Stage.ESTIMATE)
    # How well the spectra measured the blur: band width, fit quality, x/y agreement.
    c_band = float(np.clip((nb - 1) / 4.0, 0.0, 1.0))
    c_fit = float(math.exp(-(d_xy / 0.25) ** 2)) if math.isfinite(d_xy) else 0.0
    if at_edge:
        c_fit = 0.0
        notes.append("the z lines' spectrum does not look like the lateral lines' blurred (the object may not be "
                     "isotropic, or the noise not as measured); the estimate is trusted less")
    xy = abs(math.log(s_x / s_y)) if nb >= 2 and s_x > 0 and s_y > 0 else math.inf
    c_xy = float(math.exp(-(xy / 0.3) ** 2)) if math.isfinite(xy) else 0.0
    quality = (c_band * c_fit * c_xy) ** (1 / 3)
    allowed = None
    c_phys = 1.0
    if model_optics is not None:
        widths = [s_.on_axis_fwhm_um for s_ in shapes]
        allowed = (min(widths), max(widths))
        fwhm = allowed[0]
        if math.isfinite(data_fwhm):
            note = contradiction(data_fwhm, allowed, model_optics)
            if note and quality < TRUST_DATA:
                # A poor measurement does not overrule the optics: the model's profile, said so.
                notes.append(f"the stack's own z blur could not be measured reliably ({data_fwhm:.2g} µm, outside "
                             f"what the optics allow); the axial profile is the optics' model")
                c_phys = PHYSICS_DOUBT
            elif note:
                notes.append(note)
                c_phys = PHYSICS_DOUBT
                fwhm = data_fwhm
            else:
                # Within what the optics allow: the data pick the width (e.g. the depth of a mismatch).
                fwhm = float(np.clip(data_fwhm, *allowed))
    else:
        fwhm = data_fwhm if math.isfinite(data_fwhm) else 3.0 * dz
    chosen = min(shapes, key=lambda s_: abs(math.log(s_.on_axis_fwhm_um / fwhm)))
    stretch = fwhm / chosen.on_axis_fwhm_um
    axial = stretched(chosen.on_axis, stretch)

    # Confidence: band width, fit quality, x/y agreement, plane count, physics.
    c_planes = float(np.clip((nz - MIN_PLANES) / 24.0, 0.2, 1.0))
    spots = _spots(stack, nz, px, dz)
    c_spots = 1.0
    if spots.get("ok"):
        ratio = fwhm / spots["fwhm_z_um"]
        spots["agrees"] = bool(1 / SPOTS_AGREE < ratio < SPOTS_AGREE)
        if not spots["agrees"]:
            c_spots = SPOTS_DOUBT
            notes.append(f"{spots['count']} isolated spots measure an axial FWHM of {spots['fwhm_z_um']:.2g} µm "
                         f"against {fwhm:.2g} µm from the spectra; the estimate is trusted less")
    yield tick(97, "3-D spots", Stage.ESTIMATE)
    if c_xy < 0.5 and nb >= 2:
        notes.append(f"lines along x and y disagree on the z blur (σ {s_x * dz:.2g} against {s_y * dz:.2g} µm): the "
                     "object is not isotropic, so the estimate is trusted less")
    if nz < 24:
        notes.append(f"only {nz} planes: the z spectrum is coarse and the estimate is trusted less")
    confidence = 0.95 * quality * c_planes * c_phys * c_spots
    c_forward = 1.0
    if learned is not None:
        # The learned estimate's own confidence (its residual model), fitted on stacks of 16 planes or more.
        confidence = learned.confidence * c_spots * (1.0 if nz >= 16 else 0.5)
        if at_edge:
            # z lines unlike blurred lateral ones: the object is not isotropic, which the learned estimate assumes.
            confidence *= PHYSICS_DOUBT
        if forward is not None:
            # The physical forward model as a cross-check: where it reads another width, trust less.
            ratio = forward["fwhm_um"] / learned.axial_fwhm_um
            c_forward = math.exp(-(math.log(ratio) / _learned.forward_agreement_width()) ** 2)
            confidence *= c_forward
            if not 1 / FORWARD_DOUBT < ratio < FORWARD_DOUBT:
                notes.append(f"the physical forward model reads an axial FWHM of {forward['fwhm_um']:.2g} µm against "
                             f"{learned.axial_fwhm_um:.2g} µm learned from the stack; the estimate is trusted less")
        relative = relative_profile(axial, line_profile(lateral), px, px)
        notes.append(f"the optics were not given: the 3-D PSF is that of a physical model estimated from the stack "
                     f"({_describe(est_optics)}, emission {est_optics.wavelength_um:.2g} µm); give the objective's "
                     "NA and wavelength for theirs")
    qc = dict(results, at_edge=at_edge, sigma_um=sigma_um, sigma_x_um=s_x * dz, sigma_y_um=s_y * dz, distance=d_xy,
              effective_fwhm_um=eff_fwhm,
              lateral_fwhm_um=lat_fwhm, data_fwhm_um=data_fwhm, stretch=stretch,
              model=_describe(chosen.optics), focus_planes=focus.tolist(),
              lateral_confidence=lat_conf, noise_a=a, noise_b=b, allowed_fwhm_um=allowed,
              forward=None if forward is None else {k: v for k, v in forward.items() if k != "optics"},
              learned=None if learned is None else {**learned.as_dict(), "model": _describe(est_optics),
                                                     "wavelength_um": est_optics.wavelength_um},
              confidence_parts={"band": c_band, "fit": c_fit, "xy": c_xy, "planes": c_planes, "physics": c_phys,
                                "spots": c_spots, "forward": c_forward}, spots=spots)
    yield tick(100, "done", Stage.DONE)
    # The given optics' own model, where the profile is theirs (not one the data contradict, nor a mismatch
    # candidate's): its full 3-D PSF lets axial SR undo a widefield PSF's out-of-focus light (sr_method "auto").
    if est_optics is not None:
        model = est_optics
    elif allowed is not None and chosen.optics == model_optics and allowed[0] <= fwhm <= allowed[1]:
        model = model_optics
    else:
        model = None
    return AxialPSF(lateral=lateral, axial=axial, relative=relative, pixel_um=px, z_step_um=dz, step_um=px,
                    confidence=confidence, method="spectral", notes=tuple(notes), qc=qc, model=model)


def _iter_forward(planes: np.ndarray, var_x: float, px: float, dz: float,
                  z_spec: tuple[np.ndarray, np.ndarray, np.ndarray, float]) -> Generator[float, None, dict[str, Any]]:
    """The physical forward model's best objective (:mod:`._forward`) for a stack without optics; yields the
    share done."""
    from . import _forward as fw

    cx, bx, _, ux, nxn = fw.lateral_periodogram(planes, var_x)
    cands = yield from fw.iter_fit_candidates(fw.candidates_for(), px, dz, (cx, bx, ux, nxn), z_spec)
    scores = np.array([fw.score(c) for c in cands])
    best = cands[int(np.argmin(scores))]
    return {"optics": best.optics, "fwhm_um": best.on_axis_fwhm_um, "model": _describe(best.optics),
            "beta": best.beta, "score": float(scores.min()), "lateral_bins": int(bx.sum()),
            "table": [(c.optics.modality, c.optics.n_immersion, c.optics.na, c.beta, round(c.d_x, 4),
                       round(c.d_z, 4), round(c.gain_ratio, 4), round(c.on_axis_fwhm_um, 4)) for c in cands]}


def on_axis_fwhm(effective_fwhm_um: float, lateral_fwhm_um: float, modality: str) -> float:
    """The on-axis axial FWHM from the effective extra z blur's FWHM: ``√(lateral² + (k·effective)²)`` with ``k``
    calibrated per modality (``"unknown"`` where it is not given) on generated development stacks
    (:data:`SCALE`, record ``axial``)."""
    k = float(SCALE.get(modality, SCALE["unknown"]))
    return math.sqrt(lateral_fwhm_um ** 2 + (k * effective_fwhm_um) ** 2)


def _spots(stack: Any, nz: int, px: float, dz: float) -> dict[str, Any]:
    """3-D spots QC on the stack (read whole only where it is small enough; else its central planes)."""
    from .spots3d import measure_spots3d

    lo = max(0, nz // 2 - SPOTS_PLANES // 2)
    return measure_spots3d(_read(stack, lo, min(nz, lo + SPOTS_PLANES)), pixel_um=px, z_step_um=dz)


def _describe(o: Optics) -> str:
    words = f"{o.modality} NA {o.na:g}, n {o.n_immersion:g}"
    if o.n_sample is not None:
        words += f" into n {o.n_sample:g} at {o.depth_um:g} µm"
    return words


def estimate_psf3d(stack: Any, *, callback: Callable[[Progress], Any] | None = None,
                   cancel: threading.Event | None = None, **kwargs: Any) -> AxialPSF:
    """The 3-D PSF of a z-stack ``(z, y, x)`` estimated from the stack itself (see the module's notes).

    Keywords as :func:`iter_estimate_psf3d`: ``pixel_um`` and ``z_step_um`` (µm, required), ``optics`` (an
    :class:`~napari_kernelgan.physics.optics.Optics` or hints ``na``, ``wavelength_um``, ``n_immersion``,
    ``modality``, ``pinhole_au``), ``lateral_estimator`` (the 2-D estimator of the lateral PSF; with the default
    ``"auto"`` and no optics the learned model's in-focus PSF is used instead), ``seed``, ``device``, ``threads``.
    ``callback`` returning
    ``False`` or ``cancel`` being set stops the work (:class:`~napari_kernelgan.errors.Cancelled`).
    """
    from ..api import drive

    return drive(iter_estimate_psf3d(stack, **kwargs), callback, cancel)
