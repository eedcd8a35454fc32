"""``auto``'s microscope mode: a physical PSF (:func:`~napari_kernelgan.physics.optics.psf_2d`) in place of a Gaussian.

It runs where the user gives any optics hint (``na``, ``wavelength_um``, ``pixel_um``, ``modality``,
``n_immersion``, ``pinhole_au``) or where the image is photon-limited fluorescence. The members' combined
covariance (no Gaussian bias correction, no pull towards the fixed Gaussian) is read as one width, ``σ``
(the geometric mean of its axes, HR px); the kernel is a PSF model of that width:

* **Width.** The reading's excess over a width ``F`` is ``e = log(gain · σ / F)`` (``gain`` separately for
  direct readings, ``spots`` and ``lines``, and indirect ones). With NA, emission and pixel size all given,
  the in-focus FWHM ``F`` is the optics' own and the image decides only the extra broadening, the defocus:
  a hedge ``defocus_known_um``, moved towards the ``optics`` estimator's defocus fit by ``defocus_trust``
  and by ``defocus_per_excess_um · e``, bounded to ``[0, 2 × axial FWHM]`` (beyond that the lateral PSF no
  longer looks like a PSF of this objective). Otherwise ``F = F₀ · exp(w · e₀)``, the reading shrunk
  towards the microscope prior ``F₀`` in the log domain (``e₀``: the excess over ``F₀``; ``w`` per kind of
  reading), and the rest of the excess, ``(1 - w) · e₀``, is read as defocus: ``defocus_nominal_um +
  defocus_per_excess_um · (1 - w) · e₀``; the kernel is drawn at nominal optics (:data:`NOMINAL_NA`,
  :data:`NOMINAL_WAVELENGTH_UM`, the given ones where given) on the pixel giving that in-focus FWHM.
* **Defocus hedge.** Where ``defocus_spread_um`` is above 0 the kernel is the mean of the PSFs at five
  planes evenly over the defocus ± that spread (within its bounds): an unknown defocus is hedged by the
  PSFs it may be, rather than staked on one of them.
* **Shape.** Widefield: the Airy pattern (defocused); confocal: the pinhole's. Modality unknown: the
  blend ``blend · widefield + (1 - blend) · confocal`` of the same width (the L1-optimal mixture on the
  development cases, which hold both).
* **Anisotropy** is kept where the members agree on it: the combined covariance's axis ratio beyond
  :data:`ISOTROPIC_RATIO` (what the members read on round PSFs, their 95th percentile on the development
  cases), weighted by their agreement, stretches the kernel.
* **The microscope network's shape** (``learned`` with ``family="optics"``, :data:`SHAPE_READER`; where
  ``learned`` is a member): the kernel becomes ``(1 - a) · template + a · network's kernel`` with
  ``a = clip(shape_share + shape_share_per_excess · log(σ_network / σ_template), 0, 1)`` (σ: the geometric
  mean of the second moments' axes): the more the network reads a wider blur than the template (a
  defocused or aberrated PSF, which the other members' widths barely follow), the more its kernel counts.
* **Support**: 99 % of the kernel's mass (:func:`~napari_kernelgan.physics.optics.support_for`), capped at
  :data:`MAX_SIDE`.

Every constant except the support rule and :data:`MAX_SIDE` is fitted by
``benchmarks/calibrate_auto_optics.py`` (two-fold cross-validation) and loaded from the record ``auto_optics``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..optics_hints import check_hints
from ..physics.conventions import pad_to
from ..physics.metrics import second_moments
from ..physics.optics import Optics, axial_fwhm_um, psf_2d, support_for
from ..records import record_values

__all__ = ["Hints", "microscope_kernel", "template", "fwhm_px", "MAX_SIDE", "NOMINAL_NA", "NOMINAL_WAVELENGTH_UM",
           "FITTED", "MICROSCOPE_MEMBER_OPTIONS",
           "SHAPE_READER", "shape_share"]

FITTED: dict[str, Any] = record_values("auto_optics")
NOMINAL_NA = 1.2               # where the NA is not given: only the shape at a given FWHM depends on it
NOMINAL_WAVELENGTH_UM = 0.52   # green emission, the commonest fluorophores (as the ``optics`` estimator)
NOMINAL_IMMERSION = 1.515      # oil
MAX_SIDE = 41
SUPPORT_MASS = 0.99
RENDER_SIDE = 41               # the kernel is drawn on this grid, then cut to its support
ISOTROPIC_RATIO = float(FITTED["isotropic_ratio"])
# The members of the microscope mode and their options: the one switch that turns on a member returning a
# physical kernel (e.g. {"learned": {"family": "optics"}}); the record's constants were fitted without it.
MICROSCOPE_MEMBER_OPTIONS: dict[str, dict[str, Any]] = {}
# The member (and its options) whose own physical kernel is blended in where the record gives it a share.
SHAPE_READER: tuple[str, dict[str, Any]] = ("learned", {"family": "optics"})
DIRECT = ("spots", "lines")


@dataclass(frozen=True)
class Hints:
    """The optics a user gave (``None``: not given); names, meanings and ranges as the ``optics`` estimator's."""

    na: float | None = None
    wavelength_um: float | None = None
    pixel_um: float | None = None
    modality: str | None = None
    n_immersion: float | None = None
    pinhole_au: float | None = None

    def __post_init__(self) -> None:
        # The check every entry point shares (ranges, NA below the immersion's index, a pinhole only on a
        # confocal); an unknown immersion is oil's, as NOMINAL_IMMERSION.
        check_hints({"na": self.na, "wavelength_um": self.wavelength_um, "pixel_um": self.pixel_um,
                     "modality": self.modality, "n_immersion": self.n_immersion, "pinhole_au": self.pinhole_au},
                    "auto")

    @property
    def given(self) -> bool:
        """Whether any hint is given."""
        return any(v is not None for v in (self.na, self.wavelength_um, self.pixel_um, self.modality,
                                           self.n_immersion, self.pinhole_au))

    @property
    def optics_known(self) -> bool:
        """Whether the in-focus PSF is known: NA, emission and pixel size all given."""
        return None not in (self.na, self.wavelength_um, self.pixel_um)

    def optics(self, modality: str, defocus_um: float = 0.0) -> Optics:
        """The optics, nominal where not given."""
        return Optics(modality=modality, na=NOMINAL_NA if self.na is None else float(self.na),
                      wavelength_um=NOMINAL_WAVELENGTH_UM if self.wavelength_um is None else float(self.wavelength_um),
                      n_immersion=NOMINAL_IMMERSION if self.n_immersion is None else float(self.n_immersion),
                      pinhole_au=1.0 if self.pinhole_au is None else float(self.pinhole_au), defocus_um=defocus_um)


@functools.cache
def _fwhm_per_unit(modality: str, pinhole_au: float) -> float:
    """In-focus FWHM in units of λ/NA (widefield 0.51; confocal narrower, by its pinhole)."""
    optics = Optics(modality=modality, na=1.0, wavelength_um=1.0, pinhole_au=pinhole_au)
    k = psf_2d(optics, 1 / 40, 121)
    row = k[60, 60:] / k[60, 60]
    j = int(np.argmax(row < 0.5))
    return 2 * float(np.interp(0.5, row[j - 1:j + 1][::-1], [j, j - 1])) / 40


def fwhm_px(optics: Optics, pixel_um: float) -> float:
    """In-focus FWHM (kernel pixels) of ``optics`` on ``pixel_um`` pixels."""
    return _fwhm_per_unit(optics.modality, round(optics.pinhole_au, 3)) * optics.wavelength_um / optics.na / pixel_um


def _pixel_for(optics: Optics, fwhm: float) -> float:
    return _fwhm_per_unit(optics.modality, round(optics.pinhole_au, 3)) * optics.wavelength_um / optics.na / fwhm


@functools.lru_cache(maxsize=4096)
def _render(modality: str, na: float, wavelength_um: float, n_immersion: float, pinhole_au: float,
            defocus_um: float, pixel_um: float) -> np.ndarray:
    optics = Optics(modality=modality, na=na, wavelength_um=wavelength_um, n_immersion=n_immersion,
                    pinhole_au=pinhole_au, defocus_um=defocus_um)
    k = psf_2d(optics, pixel_um, RENDER_SIDE)
    k.setflags(write=False)
    return k


def _draw(optics: Optics, pixel_um: float) -> np.ndarray:
    # rounded, so that the calibration's thousands of candidates share their renders
    return _render(optics.modality, round(optics.na, 4), round(optics.wavelength_um, 4), round(optics.n_immersion, 4),
                   round(optics.pinhole_au, 3), round(optics.defocus_um, 3), round(pixel_um, 5))


def template(hints: Hints, *, fwhm: float | None, defocus_um: float | list[float], blend: float) -> np.ndarray:
    """The isotropic kernel (``RENDER_SIDE``², sum 1): the optics of ``hints`` (nominal where not given) at
    ``defocus_um`` (several: their mean), on the given pixel (``hints.optics_known``) or on the pixel giving
    an in-focus FWHM of ``fwhm`` HR px; modality unknown: ``blend`` of widefield and ``1 - blend`` of confocal."""
    modalities = [hints.modality] if hints.modality else ["widefield", "confocal"]
    shares = [1.0] if hints.modality else [blend, 1 - blend]
    planes = [float(defocus_um)] if np.isscalar(defocus_um) else [float(z) for z in defocus_um]
    out = np.zeros((RENDER_SIDE, RENDER_SIDE))
    for modality, share in zip(modalities, shares):
        if share <= 0:
            continue
        optics = hints.optics(modality)
        pixel = float(hints.pixel_um) / 2 if hints.optics_known else _pixel_for(optics, float(fwhm))
        for z in planes:
            out += share / len(planes) * _draw(hints.optics(modality, z), pixel)
    return out / out.sum()


def _planes(z: float, spread: float, reach: float) -> list[float]:
    """Five defocus planes evenly over ``z ± spread`` within ``[0, reach]``, in 0.02 µm steps (renders are
    shared); one where ``spread`` is 0."""
    if spread <= 0:
        return [round(float(np.clip(z, 0.0, reach)) * 50) / 50]
    lo, hi = max(0.0, z - spread), min(reach, z + spread)
    return [round(float(v) * 50) / 50 for v in np.linspace(min(lo, hi), hi, 5)]


def _stretch(kernel: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """``kernel`` with its coordinates stretched by ``shape`` (a 2×2 SPD of determinant 1), sum 1."""
    vals, vecs = np.linalg.eigh(shape)
    inv_sqrt = (vecs / np.sqrt(vals)) @ vecs.T
    c = (np.asarray(kernel.shape) - 1) / 2
    # output pixel x samples the kernel at S^(-1/2) x
    out = ndimage.affine_transform(kernel, inv_sqrt, offset=c - inv_sqrt @ c, order=1, mode="constant")
    return out / out.sum()


def on_support(kernel: np.ndarray, size: int | None) -> np.ndarray:
    """``kernel`` cut or zero-padded (centred) to ``size``, or to the side holding :data:`SUPPORT_MASS` of it (at
    most :data:`MAX_SIDE`) where ``size`` is ``None``; sum 1."""
    side = min(MAX_SIDE, support_for(kernel, SUPPORT_MASS)) if size is None else int(size)
    k = pad_to(kernel, side)
    return k / k.sum()


def _sigma(kernel: np.ndarray) -> float:
    return float(np.prod(np.linalg.eigvalsh(second_moments(kernel))) ** 0.25)


def shape_share(template_kernel: np.ndarray, shape: np.ndarray, params: dict[str, Any] | None = None) -> float:
    """The share of the microscope network's kernel ``shape`` against ``template_kernel``: grows with how much
    wider the network reads the blur (log ratio of their widths); in [0, 1]."""
    p = FITTED if params is None else params
    a0, a1 = float(p.get("shape_share", 0.0)), float(p.get("shape_share_per_excess", 0.0))
    if a0 <= 0 and a1 <= 0:
        return 0.0
    return float(np.clip(a0 + a1 * math.log(_sigma(shape) / _sigma(template_kernel)), 0.0, 1.0))


def microscope_kernel(cov: np.ndarray | None, hints: Hints, *, direct: bool = False, agreement: float = 0.0,
                      defocus_fit: float | None = None, size: int | None = None, shape: np.ndarray | None = None,
                      params: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The physical kernel from the members' combined (uncorrected) ×2 covariance ``cov`` (``None``: no
    reading, the prior alone), the user's ``hints`` and, optics known, the ``optics`` estimator's
    ``defocus_fit`` (µm; ``None``: none). ``direct``: the reading is a point or line measurement.
    ``agreement``: how far the members agree, in [0, 1]. ``shape``: the microscope network's kernel
    (:data:`SHAPE_READER`; ``None``: not run), blended in by :func:`shape_share`. Returns the kernel and what
    was chosen.
    """
    p = FITTED if params is None else params
    blend = float(p["blend"])
    info: dict[str, Any] = {"modality": hints.modality or f"unknown (blend {blend:g} widefield)"}
    sigma = None if cov is None else float(np.prod(np.linalg.eigvalsh(cov)) ** 0.25)
    kind = "direct" if direct else "indirect"
    if hints.optics_known:
        focus = fwhm_px(hints.optics(hints.modality or "widefield"), float(hints.pixel_um) / 2)
        reach = 2 * axial_fwhm_um(hints.optics(hints.modality or "widefield"))
        z = float(p["defocus_known_um"])
        if defocus_fit is not None:
            z += float(p["defocus_trust"]) * (float(defocus_fit) - z)
        if sigma is not None:   # a reading wider than the in-focus PSF: broadening, i.e. defocus
            z += float(p["defocus_per_excess_um"]) * math.log(float(p[f"gain_{kind}"]) * sigma / focus)
        planes = _planes(z, float(p["defocus_spread_um"]), reach)
        kernel = template(hints, fwhm=None, defocus_um=planes, blend=blend)
        info.update(width="optics", defocus_um=planes if len(planes) > 1 else planes[0], fwhm_px=round(focus, 3))
    else:
        f0 = float(p["prior_fwhm"])
        z = float(p["defocus_nominal_um"])
        if sigma is None:
            fwhm = f0
        else:
            w = float(p[f"weight_{kind}"])
            excess = math.log(float(p[f"gain_{kind}"]) * sigma / f0)
            fwhm = f0 * math.exp(w * excess)
            # the part of the excess the width does not take is read as defocus
            z += float(p["defocus_per_excess_um"]) * (1 - w) * excess
        # rounded to 0.05 px (2 %, far below its error) so that renders are shared (cached)
        fwhm = round(float(np.clip(fwhm, 0.8, 12.0)) * 20) / 20
        reach = 2 * axial_fwhm_um(hints.optics("widefield"))
        planes = _planes(z, float(p["defocus_spread_um"]), reach)
        kernel = template(hints, fwhm=fwhm, defocus_um=planes, blend=blend)
        info.update(width="members and prior" if sigma is not None else "prior", fwhm_px=round(fwhm, 3),
                    defocus_um=planes if len(planes) > 1 else planes[0],
                    reading_sigma_px=None if sigma is None else round(sigma, 3))
    if cov is not None:
        vals, vecs = np.linalg.eigh(cov)
        excess = max(0.0, 0.5 * math.log(vals[1] / vals[0]) - math.log(ISOTROPIC_RATIO))
        if excess * agreement > 1e-3:
            # stretch the long axis by the agreed excess ratio, keep the area
            ratio = math.exp(excess * agreement)
            stretch = (vecs * np.array([1 / ratio, ratio])) @ vecs.T
            kernel = _stretch(kernel, stretch)
            info["axis_ratio"] = round(ratio, 3)
    if shape is not None:
        network = pad_to(np.asarray(shape, dtype=np.float64), RENDER_SIDE)
        network = network / network.sum()
        share = shape_share(kernel, network, p)
        if share > 0:
            kernel = (1 - share) * kernel + share * network
        info["network_share"] = round(share, 3)
    return on_support(kernel, size), info
