"""A physically constrained kernel: a microscope PSF model whose few unknowns are fitted to the image's edges.

The kernel is :func:`~napari_kernelgan.physics.optics.psf_2d` of an :class:`~napari_kernelgan.physics.optics.Optics`
(Airy rings, defocus, confocal pinhole), never a free-form array, so its shape is physical and only its
width is read from the image. What an image reveals about a rotationally symmetric PSF is, before
anything else, one number: how wide its edge-spread function is. The metadata decides which physical
parameter explains that width (the path the fit searches):

* pixel size known, NA unknown: the NA (λ given, or a nominal 0.52 µm);
* pixel size and NA known: the defocus (µm, from 0: a 2-D image cannot tell above from below focus);
  the NA is also fitted freely, and an image sharper than the stated objective allows (a fitted NA
  above the stated one by more than :data:`NA_TOLERANCE`) contradicts the metadata: the image's
  own fit is returned, the confidence falls and ``options["optics_fit"]["contradiction"]`` says so;
* pixel size unknown: the HR pixel size at the given (or a nominal 1.2) NA, reported as the
  effective ``na_eff_pixel_per_wavelength`` = NA · HR pixel / λ, the only combination the image shows.

Each clean step edge (as the ``edges`` estimator finds them) is fitted with every kernel of the path
(:mod:`._optics_fit`); each edge's best kernel gives its width, and the :data:`QUANTILE` of the
widths is the kernel's own (scene edges are only ever blurrier than the optics make them, noise makes
some read sharper; the quantile is the one constant fitted, on development images only). Spherical
aberration is a model parameter (``spherical``, waves RMS) taken as given: from 2-D edges it cannot be
told from width.

Confidence multiplies: enough clean edges, the agreement of two independent halves of the edges,
how well the kernel explains the sharp edges, the metadata's consistency and whether the fit stayed
inside its search range.
"""
from __future__ import annotations

import math
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from ..constraints import Interval, Options
from ..errors import BadOptionError
from ..physics.metrics import second_moments
from ..physics.optics import Optics, axial_fwhm_um, psf_2d, support_for
from ..registry import register, register_tiles
from ..types import KernelEstimate, Progress, TileResult
from ..vocabulary import KERNEL_SIZE, Stage
from ._direct import measured_estimate, no_measurement
from ._optics_fit import EdgeSamples, collect_edges, edge_spread, misfit

__all__ = ["optics", "NOMINAL_WAVELENGTH_UM", "NOMINAL_NA", "NA_TOLERANCE", "QUANTILE", "MAX_SIDE", "FIT_SIDE"]

NOMINAL_WAVELENGTH_UM = 0.52   # green emission, the commonest fluorophores
NOMINAL_NA = 1.2               # where neither the NA nor the pixel size is known: only NA·pixel/λ matters
NA_TOLERANCE = 0.30            # a fitted NA this far above the stated one contradicts it: twice the
                               # development cases' mean NA error (see QUANTILE), beyond which noise rarely reaches
MAX_SIDE = 41                  # largest kernel chosen from the model's support
FIT_SIDE = 41                  # side of the model kernels the edges are compared with
SUPPORT_MASS = 0.95            # share of the PSF's light the chosen kernel side holds
PATH_POINTS = 16               # kernels along the fitted path (widths between them are interpolated)
MIN_EDGES = 12                 # fewer clean edges: nothing to fit
FULL_EDGES = 300               # clean edges at which their number no longer limits the confidence
MAX_POINTS = 3000              # edge points examined per frame
# The edge-width quantile taken as the PSF's own: chosen by ``benchmarks/optics_estimator_benchmark.py
# --calibrate`` on its development images only (cell_microtubules, golgi_confocal; mean |NA error| 15 % there,
# 25 % at the ``edges`` estimator's 0.25: the Airy tails make noisy edges read sharp more often than blurry).
QUANTILE = 0.4


def _optics(modality: str, na: float, wavelength: float, n_immersion: float, pinhole_au: float,
            defocus_um: float, spherical: float) -> Optics:
    return Optics(modality=modality, na=na, wavelength_um=wavelength, n_immersion=n_immersion,
                  pinhole_au=pinhole_au, defocus_um=defocus_um, spherical=spherical)


def _esf_width(u: np.ndarray, esf: np.ndarray) -> float:
    """Distance (LR pixels) between the 25 % and 75 % points of an edge-spread function."""
    return float(np.interp(0.75, esf, u) - np.interp(0.25, esf, u))


class _Path:
    """Kernels along one physical parameter, ordered from the sharpest to the widest."""

    def __init__(self, name: str, values: np.ndarray, make: Any, scale: int) -> None:
        self.name, self.make, self.scale = name, make, scale
        kernels = [make(float(v)) for v in values]
        spreads = [edge_spread(k, scale) for k in kernels]
        widths = np.array([_esf_width(*s) for s in spreads])
        order = np.argsort(widths, kind="stable")
        self.values, self.widths = values[order], widths[order]
        self.spreads = [spreads[i] for i in order]

    def per_edge(self, samples: EdgeSamples) -> tuple[np.ndarray, np.ndarray]:
        """Each edge's best kernel width (LR pixels) along the path, and its misfit there."""
        m = np.stack([misfit(samples, u, e) for u, e in self.spreads], axis=1)
        best = np.clip(np.argmin(m, axis=1), 1, len(self.widths) - 2)
        rows = np.arange(len(best))
        lo, mid, hi = m[rows, best - 1], m[rows, best], m[rows, best + 1]
        # a parabola through the best kernel and its neighbours: widths between the path's kernels
        denom = lo - 2 * mid + hi
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(denom > 1e-12, 0.5 * (lo - hi) / denom, 0.0).clip(-0.5, 0.5)
        w = np.log(self.widths)
        step = np.where(shift < 0, w[best] - w[best - 1], w[best + 1] - w[best])
        return np.exp(w[best] + shift * step), mid

    def at_width(self, width: float) -> tuple[float, bool]:
        """The parameter whose kernel has ``width``, and whether the width lies outside the path."""
        inside = bool(self.widths[0] <= width <= self.widths[-1])
        w = np.clip(width, self.widths[0], self.widths[-1])
        j = int(np.clip(np.searchsorted(self.widths, w), 1, len(self.widths) - 1))
        lo, hi = self.widths[j - 1], self.widths[j]
        t = 0.0 if hi <= lo else (w - lo) / (hi - lo)
        return float(self.values[j - 1] + t * (self.values[j] - self.values[j - 1])), not inside


def _sharp_width(widths: np.ndarray, quantile: float) -> float:
    return float(np.quantile(widths, quantile))


def _check(na: float | None, n_immersion: float, modality: str) -> None:
    if na is not None and na >= n_immersion:
        raise BadOptionError(f"optics: na={na:g} must be below the immersion's refractive index "
                             f"n_immersion={n_immersion:g} (NA = n sin θ); give n_immersion for this objective")
    if modality not in ("widefield", "confocal"):
        raise BadOptionError(f"optics: modality must be 'widefield' or 'confocal', got {modality!r}")


@register("optics", kind="estimator", summary="Microscope PSF model (Airy rings, defocus, pinhole) whose width is "
          "fitted to the image's sharpest edges; uses the optics metadata you give",
          defaults={"modality": "widefield", "na": None, "wavelength_um": None, "n_immersion": None,
                    "pinhole_au": None, "pixel_um": None, "spherical": 0.0, "size": None,
                    "quantile": QUANTILE, "require_edges": False},
          main=("modality", "na", "wavelength_um", "pixel_um"),
          ranges={"modality": Options("widefield", "confocal"), "na": Interval(float, 0.05, 1.7),
                  "wavelength_um": Interval(float, 0.2, 2.0), "n_immersion": Interval(float, 1.0, 2.0),
                  "pinhole_au": Interval(float, 0, 20), "pixel_um": Interval(float, 0, 10, closed="right"),
                  "spherical": Interval(float, -2, 2), "size": Interval(int, 3, 75),
                  "quantile": Interval(float, 0, 1, closed="neither")},
          help={"modality": "widefield or confocal (point scanning with a pinhole)",
                "na": "objective's numerical aperture (empty: fitted)",
                "wavelength_um": "emission wavelength in µm, 0.52 for 520 nm (empty: 0.52)",
                "n_immersion": "immersion medium's refractive index (empty: oil, 1.515)",
                "pinhole_au": "confocal pinhole diameter in Airy units (empty: 1)",
                "pixel_um": "the input image's pixel size in µm (the kernel's pixels are pixel_um / 2)",
                "spherical": "extra primary spherical aberration in waves RMS",
                "size": "side of the returned ×2 kernel (odd; empty: 13, or wider where the PSF needs it, "
                        f"up to {MAX_SIDE})",
                "quantile": "edge-width quantile taken as the PSF's own (lower: sharper)",
                "require_edges": "refuse an image without clean edges instead of returning a broad Gaussian "
                                 "with confidence 0"})
def optics(frames: np.ndarray, *, scale: int = 2, device: torch.device | None = None, seed: int = 0,
           report_every: int = 50, modality: str = "widefield", na: float | None = None,
           wavelength_um: float | None = None, n_immersion: float | None = None, pinhole_au: float | None = None,
           pixel_um: float | None = None, spherical: float = 0.0, size: int | None = None,
           quantile: float | None = None, require_edges: bool = False) -> Generator[Progress, None, KernelEstimate]:
    """×2 kernel from a physical PSF model fitted to the image's clean step edges (CPU, about a second)."""
    start = time.perf_counter()
    if size is not None and int(size) % 2 == 0:
        raise BadOptionError(f"optics: size must be odd (a kernel has a middle pixel), got {size}")
    n_imm = 1.515 if n_immersion is None else float(n_immersion)
    _check(na, n_imm, modality)
    lam = NOMINAL_WAVELENGTH_UM if wavelength_um is None else float(wavelength_um)
    pin = 1.0 if pinhole_au is None else float(pinhole_au)
    spherical = float(spherical or 0.0)
    quantile = QUANTILE if quantile is None else float(quantile)
    yield Progress(0, 3, 0.0, stage=Stage.ESTIMATE, message="optics: measuring clean edges")
    samples = collect_edges(np.asarray(frames), seed, MAX_POINTS)
    extras: dict[str, Any] = {"edges": samples.count}
    if samples.count < MIN_EDGES:
        kernel, conf, cov = no_measurement(
            f"optics: only {samples.count} clean step edges found (at least {MIN_EDGES} are needed): the image "
            "shows too little sharp structure to fit a PSF", require_edges, KERNEL_SIZE if size is None
            else int(size), extras)
        est = measured_estimate(kernel, cov, conf, extras, start, seed)
        est.options["optics_fit"] = {"fallback": True, "edges": samples.count, "na": na, "defocus_um": None}
        return est
    yield Progress(1, 3, time.perf_counter() - start, stage=Stage.ESTIMATE,
                   message=f"optics: fitting the PSF model to {samples.count} edges")

    def model(na_: float, pixel_hr: float, z: float) -> np.ndarray:
        return psf_2d(_optics(modality, na_, lam, n_imm, pin, z, spherical), pixel_hr, FIT_SIDE)

    na_high = 0.98 * n_imm
    fit: dict[str, Any] = {"modality": modality, "wavelength_um": lam, "n_immersion": n_imm, "spherical": spherical}
    rng = np.random.default_rng(seed)
    halves = rng.permutation(samples.count) % 2 == 0
    if pixel_um is not None:
        p_hr = float(pixel_um) / scale
        free = _Path("na", np.geomspace(0.15, na_high, PATH_POINTS), lambda v: model(v, p_hr, 0.0), scale)
        widths, res = free.per_edge(samples)
        w_all = _sharp_width(widths, quantile)
        na_fit, na_out = free.at_width(w_all)
        fit.update(na_eff=na_fit, pixel_um_hr=p_hr)
        path, bound = free, na_out
        contradiction = 0.0
        if na is not None:
            fit["na_given"] = float(na)
            contradiction = max(0.0, na_fit / float(na) - 1 - NA_TOLERANCE)
            if contradiction == 0.0:
                reach = 2 * axial_fwhm_um(_optics(modality, float(na), lam, n_imm, pin, 0.0, 0.0))
                path = _Path("defocus_um", np.linspace(0.0, reach, PATH_POINTS),
                             lambda v: model(float(na), p_hr, v), scale)
                widths, res = path.per_edge(samples)
        value, bound = path.at_width(_sharp_width(widths, quantile))
        if path.name == "defocus_um":
            na_final, z_final = float(na), value
            bound = bound and value > 0   # an image sharper than in focus at the stated NA is the contradiction case
        else:
            na_final, z_final = value, 0.0
        fit.update(na=na_final, defocus_um=z_final, contradiction=contradiction > 0,
                   na_relative_excess=contradiction)
        optics_final = _optics(modality, na_final, lam, n_imm, pin, z_final, spherical)
        pixel_final = p_hr
    else:
        na_use = min(NOMINAL_NA, 0.9 * n_imm) if na is None else float(na)
        # HR pixels from a tenth to twice the Airy FWHM (0.51 λ / NA): kernels from very wide to under a pixel
        fwhm = 0.51 * lam / na_use
        path = _Path("pixel_um_hr", np.geomspace(fwhm / 12, fwhm * 2, PATH_POINTS),
                     lambda v: model(na_use, v, 0.0), scale)
        widths, res = path.per_edge(samples)
        pixel_final, bound = path.at_width(_sharp_width(widths, quantile))
        contradiction = 0.0
        optics_final = _optics(modality, na_use, lam, n_imm, pin, 0.0, spherical)
        fit.update(na=na_use, defocus_um=0.0, pixel_um_hr=pixel_final, contradiction=False)
    fit["na_eff_pixel_per_wavelength"] = fit["na"] * pixel_final / lam
    # Independent halves of the edges measure the width twice; their disagreement is the measurement's spread.
    w_a, w_b = _sharp_width(widths[halves], quantile), _sharp_width(widths[~halves], quantile)
    spread = abs(w_a - w_b) / max(_sharp_width(widths, quantile), 1e-6)
    sharp = widths <= _sharp_width(widths, quantile)
    residual = float(np.mean(res[sharp]))
    fit.update(residual=residual, halves_spread=spread, at_search_bound=bool(bound),
               fwhm_px_hr=0.51 * lam / fit["na"] / pixel_final)
    confidence = (min(1.0, samples.count / FULL_EDGES) * math.exp(-((spread / 0.15) ** 2))
                  * float(np.clip(1 - 4 * residual, 0, 1)) * math.exp(-((contradiction / NA_TOLERANCE) ** 2))
                  * (0.3 if bound else 1.0))
    # The returned kernel is the ×2 one whatever grid was fitted: the same PSF on the ×2 grid's pixels.
    pixel_x2 = pixel_final * scale / 2
    fit["pixel_um_x2"] = pixel_x2
    side = _side(size, optics_final, pixel_x2)
    kernel = psf_2d(optics_final, pixel_x2, side)
    yield Progress(3, 3, time.perf_counter() - start, stage=Stage.ESTIMATE, kernel=kernel,
                   message="optics: PSF fitted")
    extras["optics_fit"] = fit
    est = measured_estimate(kernel, np.eye(2), float(np.clip(confidence, 0, 1)), extras, start, seed)
    est.extras.pop("covariance", None)
    est.options["optics_fit"] = fit
    return est


def _side(size: int | None, optics_: Optics, pixel_hr: float) -> int:
    """The given side, else 13 where the PSF's 95 % fits in it, else its 95 % side up to :data:`MAX_SIDE`."""
    if size is not None:
        return int(size)
    need = support_for(optics_, SUPPORT_MASS, pixel_um=pixel_hr)
    return int(min(MAX_SIDE, max(KERNEL_SIZE, need)))


@register_tiles("optics")
def optics_tiles(frames: np.ndarray, boxes: np.ndarray, *, scale: int = 2, device: torch.device | None = None,
                 seed: int = 0, report_every: int = 50, size: int | None = None,
                 **options: Any) -> Generator[Progress, None, list[TileResult]]:
    """Each tile fitted on its own crop, all at one kernel side: the given ``size``, else the side the whole
    image's fit chooses (a map's kernels share one support, and the whole image's estimate has it)."""
    if size is None:
        whole = yield from optics(frames, scale=scale, device=device, seed=seed, report_every=report_every,
                                  **options)
        size = int(whole.kernel.shape[0])
    out: list[TileResult] = []
    boxes = np.asarray(boxes).reshape(-1, 4)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        est = yield from optics(np.asarray(frames)[..., y0:y1, x0:x1], scale=scale, device=device, seed=seed,
                                report_every=report_every, size=size, **options)
        if est.extras.get("fallback"):
            out.append(TileResult(kernel=None, confidence=0.0, message=str(est.extras.get("message", ""))))
        else:
            out.append(TileResult(kernel=est.kernel, confidence=est.confidence,
                                  covariance=second_moments(est.kernel)))
        yield Progress(i + 1, len(boxes), est.elapsed, stage=Stage.MAP, message=f"optics: tile {i + 1} of {len(boxes)}")
    return out
