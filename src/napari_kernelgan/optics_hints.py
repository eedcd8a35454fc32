"""What a file says about its microscope, as the options the physical estimators take.

:func:`optics_hints` maps a file's metadata (OME-XML through :func:`~napari_kernelgan.stacks.read_optics`,
an ImageJ TIFF's pixel size) to the estimator options of :data:`HINT_KEYS`: ``na``, ``wavelength_um`` (the
channel's emission), ``n_immersion``, ``modality``, ``pinhole_au`` and ``pixel_um``. Nothing is guessed: a
value the file does not state, or states implausibly, stays ``None``. :func:`hinted_options` is the rule
every entry point applies: hints go only to an estimator that declares the option, below what the caller
set explicitly. Qt-free; reads only the file's header and metadata.
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import BadOptionError, Param

__all__ = ["HINT_KEYS", "HINT_LABELS", "IMMERSION_INDEX", "MAX_ANISOTROPY", "OpticsHintWarning", "optics_hints",
           "hints_from_optics", "common_hints", "merge_hints", "hinted_options", "check_hint", "format_hint",
           "describe_hints"]

HINT_KEYS = ("na", "wavelength_um", "n_immersion", "modality", "pinhole_au", "pixel_um")
"""The estimator options a file's metadata can fill."""

HINT_LABELS = {"na": "NA", "wavelength_um": "emission λ", "n_immersion": "immersion index",
               "modality": "modality", "pinhole_au": "pinhole", "pixel_um": "pixel size"}

IMMERSION_INDEX = {"oil": 1.515, "water": 1.333, "waterdipping": 1.333, "water dipping": 1.333, "air": 1.0,
                   "glycerol": 1.47, "glycerin": 1.47, "silicone": 1.406, "silicon": 1.406}
"""Refractive index of each immersion medium by its name (OME's ``Immersion`` values and common words), at
the visible wavelengths microscopes use; ``Multi`` and ``Other`` say nothing about the index."""

MAX_ANISOTROPY = 0.01
"""Pixels whose x and y sizes differ by more than this fraction give no pixel-size hint: the estimators
take one size for both axes."""

# What a stated value can be; outside it the metadata is taken as wrong and the hint left unset.
_PLAUSIBLE = {"na": (0.05, 1.7), "wavelength_um": (0.2, 2.0), "n_immersion": (1.0, 2.0), "pinhole_au": (0.0, 20.0),
              "pixel_um": (1e-4, 10.0)}
MODALITIES = ("widefield", "confocal")
NM_THRESHOLD = 5.0  # a wavelength above this many µm is a number of nanometres (as physics.optics refuses it)


class OpticsHintWarning(UserWarning):
    """A value in a file's metadata that is not used as a hint, and why."""


def _plausible(key: str, value: float | None, name: str) -> float | None:
    if value is None:
        return None
    lo, hi = _PLAUSIBLE[key]
    if not (math.isfinite(value) and lo <= value <= hi):
        warnings.warn(f"{name}: {HINT_LABELS[key]} {value:g} in the metadata is outside {lo:g}–{hi:g}; not used",
                      OpticsHintWarning, stacklevel=3)
        return None
    return float(value)


def _square_pixel(x: float | None, y: float | None, name: str) -> float | None:
    """The pixel size of square pixels (x where y is not stated); ``None``, with a warning, for rectangular
    ones."""
    if x is None or y is None:
        return x
    if abs(x - y) > MAX_ANISOTROPY * max(x, y):
        warnings.warn(f"{name}: the pixels are not square (x {x:.4g} µm, y {y:.4g} µm, "
                      f"{100 * abs(x - y) / max(x, y):.1f} % apart); the pixel size is not used as a hint: give it "
                      "for the axis you trust, or resample the image to square pixels", OpticsHintWarning,
                      stacklevel=3)
        return None
    return x


def hints_from_optics(optics: Mapping[str, Any], name: str = "the file") -> dict[str, Any]:
    """The hints of :data:`HINT_KEYS` from :func:`~napari_kernelgan.stacks.read_optics`'s dictionary (``name``
    says where it came from in warnings).

    ``n_immersion``: the stated refractive index, else the immersion's by its name (:data:`IMMERSION_INDEX`).
    ``pinhole_au``: for a confocal (or unstated) modality, ``pinhole_um / (1.22 λ_em / NA · M)`` with ``M`` the
    objective's nominal magnification; ``None`` where any of them is not stated.
    """
    out: dict[str, Any] = dict.fromkeys(HINT_KEYS)
    na = _plausible("na", optics.get("na"), name)
    wavelength = _plausible("wavelength_um", optics.get("emission_um"), name)
    index = optics.get("refractive_index")
    if index is None and optics.get("immersion"):
        index = IMMERSION_INDEX.get(str(optics["immersion"]).strip().lower())
    n_immersion = _plausible("n_immersion", index, name)
    if na is not None and n_immersion is not None and na > n_immersion:
        warnings.warn(f"{name}: NA {na:g} exceeds the immersion's refractive index {n_immersion:g} (NA = n sin θ "
                      "cannot); neither is used", OpticsHintWarning, stacklevel=2)
        na = n_immersion = None
    modality = optics.get("modality") if optics.get("modality") in MODALITIES else None
    pinhole, magnification = optics.get("pinhole_um"), optics.get("magnification")
    pinhole_au = None
    if modality != "widefield" and None not in (pinhole, magnification, na, wavelength) and magnification > 0:
        pinhole_au = _plausible("pinhole_au", pinhole / (1.22 * wavelength / na * magnification), name)
    pixel = _square_pixel(optics.get("pixel_x_um"), optics.get("pixel_y_um"), name)
    out.update(na=na, wavelength_um=wavelength, n_immersion=n_immersion, modality=modality, pinhole_au=pinhole_au,
               pixel_um=_plausible("pixel_um", pixel, name))
    return out


def _imagej_pixel(path: Path) -> tuple[float | None, float | None]:
    """An ImageJ TIFF's x and y pixel sizes in µm (``None`` where it is uncalibrated or not in a length unit)."""
    import tifffile

    from .measured_psf import to_um
    from .stacks import _imagej_meta, _quiet_tifffile

    with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
        if not tif.is_imagej:
            return None, None
        sizes, units, _ = _imagej_meta(tif)
    x = to_um(sizes["X"], units.get("X")) if "X" in sizes else None
    y = to_um(sizes["Y"], units.get("Y")) if "Y" in sizes else None
    return x, y


def optics_hints(source: str | os.PathLike | Mapping[str, Any], *, channel: int = 0,
                 image: int = 0) -> dict[str, Any]:
    """The optics hints (:data:`HINT_KEYS` → value or ``None``) of one channel of an image.

    ``source``: an image file (OME-TIFF: objective, channel and pixel metadata; ImageJ TIFF: the pixel size;
    other files: nothing), an OME-XML string, or a napari layer's ``metadata`` as this package's reader
    writes it (its ``"optics"`` entry). Values in the metadata that cannot be right (an NA of 3, rectangular
    pixels) are left ``None`` with an :class:`OpticsHintWarning`.
    """
    if isinstance(source, Mapping):
        stored = source.get("optics") if "optics" in source else source
        out = dict.fromkeys(HINT_KEYS)
        out.update({k: v for k, v in (stored or {}).items() if k in HINT_KEYS})
        return out
    from .stacks import TIFF_SUFFIXES, read_optics, tiff_kind

    if isinstance(source, str) and source.lstrip().startswith("<"):
        return hints_from_optics(read_optics(source, image=image, channel=channel), "the OME-XML")
    path = Path(source)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return dict.fromkeys(HINT_KEYS)  # PNG, JPEG: no optics metadata
    kind = tiff_kind(path)
    if kind == "ome":
        return hints_from_optics(read_optics(path, image=image, channel=channel), path.name)
    if kind == "imagej":
        x, y = _imagej_pixel(path)
        return hints_from_optics({"pixel_x_um": x, "pixel_y_um": y}, path.name)
    return dict.fromkeys(HINT_KEYS)


def common_hints(per_channel: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The hints of a kernel shared by several channels: each value all channels state alike, else ``None``
    (channels with different emission wavelengths share no wavelength)."""
    out = dict.fromkeys(HINT_KEYS)
    for key in HINT_KEYS:
        values = {c.get(key) for c in per_channel}
        if len(values) == 1:
            out[key] = values.pop()
    return out


def merge_hints(file: Mapping[str, Any] | None, given: Mapping[str, Any] | None
                ) -> tuple[dict[str, Any], dict[str, str]]:
    """The hints to use and where each came from (``"file"`` or ``"given"``): a value given wins over the
    file's; ``None`` is "not said"."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for origin, hints in (("file", file or {}), ("given", given or {})):
        for key, value in hints.items():
            if value is not None:
                values[key], sources[key] = value, origin
    return values, sources


def hinted_options(declared: Collection[str], options: Mapping[str, Any],
                   hints: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options an estimator that declares ``declared`` gets, from the caller's ``options`` and ``hints``.

    The rule: a hint (an option of :data:`HINT_KEYS`, whether in ``hints`` or among ``options``) reaches only
    an estimator that declares it (the others are not refused for it: the microscope's description is not
    a mistake for an estimator that has no use for it); a value the caller set in ``options`` wins over the
    one in ``hints``; ``None`` is "not said". An unknown name in ``hints`` is a :class:`BadOptionError`.
    """
    out = {k: v for k, v in options.items() if k in declared or k not in HINT_KEYS}
    for key, value in (hints or {}).items():
        if key not in HINT_KEYS:
            raise BadOptionError(f"unknown optics hint {key!r}; the hints are: {', '.join(HINT_KEYS)}")
        if value is not None and key in declared and out.get(key) is None:
            out[key] = value
    return out


def check_hint(key: str, value: Any) -> Any:
    """A hint typed by a user (text or a number) as its value, or a :class:`BadOptionError` in the user's
    terms. ``wavelength_um`` is in µm (above 5 is refused as nanometres), ``n_immersion`` a refractive
    index or an immersion's name (``oil``, ``water``...), ``modality`` ``widefield`` or ``confocal``;
    empty text is ``None`` (unknown)."""
    if key not in HINT_KEYS:
        raise BadOptionError(f"unknown optics hint {key!r}; the hints are: {', '.join(HINT_KEYS)}")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    if key == "modality":
        if text.lower() not in MODALITIES:
            raise BadOptionError(Param(key, text), f" is not a modality: give {' or '.join(MODALITIES)}")
        return text.lower()
    if key == "n_immersion" and text.lower() in IMMERSION_INDEX:
        return IMMERSION_INDEX[text.lower()]
    try:
        number = float(text)
    except ValueError:
        extra = f" or an immersion ({', '.join(('oil', 'water', 'glycerol', 'silicone', 'air'))})" \
            if key == "n_immersion" else ""
        raise BadOptionError(Param(key, text), f" must be a number{extra}") from None
    if key == "wavelength_um" and number > NM_THRESHOLD:
        raise BadOptionError(Param(key, text), f" looks like nanometres: give micrometres ({number / 1000:g} for "
                                               f"{number:g} nm)")
    lo, hi = _PLAUSIBLE[key]
    if not (math.isfinite(number) and lo <= number <= hi) or (key == "pixel_um" and number <= 0):
        unit = {"wavelength_um": " µm", "pixel_um": " µm", "pinhole_au": " AU"}.get(key, "")
        raise BadOptionError(Param(key, text), f" is outside {lo:g}–{hi:g}{unit}, what a {HINT_LABELS[key]} can be")
    return number


def format_hint(key: str, value: Any) -> str:
    """``"NA 1.4"``, ``"emission λ 0.52 µm"``, ``"pinhole 1 AU"``: one hint in words."""
    unit = {"wavelength_um": " µm", "pixel_um": " µm", "pinhole_au": " AU"}.get(key, "")
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{HINT_LABELS.get(key, key)} {shown}{unit}"


def describe_hints(values: Mapping[str, Any], sources: Mapping[str, str],
                   declared: Collection[str] | None = None) -> list[str]:
    """Each hint in words with where it came from: ``"NA 1.4 from the file"``, ``"pixel size 0.1 µm given"``;
    with ``declared`` (the estimator's options), ``" (not used)"`` after those it does not take."""
    out = []
    for key in HINT_KEYS:
        if values.get(key) is None:
            continue
        origin = "from the file" if sources.get(key) == "file" else "given"
        unused = declared is not None and key not in declared
        out.append(f"{format_hint(key, values[key])} {origin}{' (not used)' if unused else ''}")
    return out
