"""What a file says about its microscope, as the options the physical estimators take.

:func:`optics_hints` maps a file's metadata (OME-XML through :func:`~napari_kernelgan.stacks.read_optics`,
an ImageJ TIFF's pixel size) to the estimator options of :data:`HINT_KEYS`: ``na``, ``wavelength_um`` (the
channel's emission), ``n_immersion``, ``modality``, ``pinhole_au`` and ``pixel_um``. Nothing is guessed: a
value the file does not state, or states implausibly, stays ``None``. :func:`hinted_options` is the rule
every entry point applies: hints go only to an estimator that declares the option, below what the caller
set explicitly. :func:`hint_problems` is the one check of a set of hints (each value's range, and the
combinations no microscope has: an NA at or above the immersion's index, a pinhole on a widefield), which
the widgets, the command line, the reader and the estimators share. Qt-free; reads only the file's header
and metadata.
"""
from __future__ import annotations

import math
import os
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NO_VALUE, BadOptionError, Front, Param, Words, render

__all__ = ["HINT_KEYS", "HINT_LABELS", "FIELD_LABELS", "IMMERSION_INDEX", "ASSUMED_IMMERSION", "MAX_ANISOTROPY",
           "OpticsHintWarning", "HintParam", "HintProblem", "optics_hints", "hints_from_optics", "common_hints",
           "merge_hints", "shared_hints", "hinted_options", "check_hint", "hint_problems", "check_hints", "format_hint",
           "describe_hints"]

HINT_KEYS = ("na", "wavelength_um", "n_immersion", "modality", "pinhole_au", "pixel_um")
"""The estimator options a file's metadata can fill."""

HINT_LABELS = {"na": "NA", "wavelength_um": "emission λ", "n_immersion": "immersion index",
               "modality": "modality", "pinhole_au": "pinhole", "pixel_um": "pixel size"}
"""Each hint in words, as the command line's summaries say it (``"emission λ 0.52 µm"``)."""

FIELD_LABELS = {"na": "NA", "wavelength_um": "Emission wavelength (µm)", "n_immersion": "Immersion index",
                "modality": "Modality", "pinhole_au": "Pinhole (AU)", "pixel_um": "Pixel size (µm)"}
"""The label of each hint's field in the napari widgets."""

# A hint in a sentence of the napari widgets (the field's label in lower case, its unit after the value).
_GUI_WORDS = {"na": "NA", "wavelength_um": "emission wavelength", "n_immersion": "immersion index",
              "modality": "modality", "pinhole_au": "pinhole", "pixel_um": "pixel size"}
_UNITS = {"wavelength_um": " µm", "pixel_um": " µm", "pinhole_au": " AU"}

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
ASSUMED_IMMERSION = 1.515
"""The immersion index the estimators take where none is given (oil), which an NA must stay below."""
NM_THRESHOLD = 5.0  # a wavelength above this many µm is a number of nanometres (as physics.optics refuses it)


class OpticsHintWarning(UserWarning):
    """A value in a file's metadata that is not used as a hint, and why."""


class _Number(float):
    """A number said as briefly as it reads (``1`` for 1.0) in every front end's words."""

    def __str__(self) -> str:
        return f"{float(self):g}"

    __repr__ = __str__


@dataclass(frozen=True)
class HintParam(Param):
    """A hint named in a message: as :class:`~napari_kernelgan.errors.Param` for the API and the command line;
    the napari widgets say it as its field reads (``"emission wavelength 0.61 µm"``), or ``gui`` where given."""

    gui: str = ""

    def say(self, front: Front = "api", flags: Mapping[str, str] | None = None) -> str:
        if front != "gui":
            return super().say(front, flags)
        if self.gui:
            return self.gui
        words = _GUI_WORDS.get(self.name, self.name.replace("_", " "))
        if self.bare or self.value is NO_VALUE:
            return words
        value = self.value
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        return f"{words} {shown}{_UNITS.get(self.name, '') if isinstance(value, (int, float)) else ''}"


@dataclass(frozen=True)
class HintProblem:
    """Why a set of hints cannot be used: the fields at fault (``keys``) and the reason, as words that say
    what to change (:meth:`text` in a front end's terms, :meth:`error` as the error to raise)."""

    keys: tuple[str, ...]
    words: Words

    def text(self, front: Front = "gui", flags: Mapping[str, str] | None = None) -> str:
        """The reason in ``front``'s words."""
        return render(self.words, front, flags)

    def error(self, who: str = "") -> BadOptionError:
        """The :class:`BadOptionError` saying it (``who``, e.g. an estimator's name, before it)."""
        return BadOptionError(*((f"{who}: ",) if who else ()), *self.words)


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
    pair = {"na": na, "n_immersion": n_immersion}
    for problem in hint_problems(pair):
        # Before the pinhole, which is in Airy units of this NA.
        unused = [k for k in problem.keys if pair.get(k) is not None]
        warnings.warn(f"{name}: the metadata's {problem.text()}; its {' and '.join(HINT_LABELS[k] for k in unused)} "
                      f"{'are' if len(unused) > 1 else 'is'} not used", OpticsHintWarning, stacklevel=2)
        na, n_immersion = (None if "na" in unused else na), (None if "n_immersion" in unused else n_immersion)
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


def shared_hints(paths: Sequence[str | os.PathLike], *, max_files: int = 16, max_channels: int = 16
                 ) -> dict[str, Any]:
    """The hints every channel of every file in ``paths`` states alike (:func:`common_hints`; the first
    ``max_files``), what a batch of them shares; a file that cannot be read, or states nothing usable, says
    nothing. Quiet: a batch run reports each file's own notes."""
    from .errors import KernelGANError
    from .stacks import TIFF_SUFFIXES, tiff_kind

    found: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OpticsHintWarning)
        for path in list(paths)[:max_files]:
            for channel in range(max_channels):
                try:
                    hints = optics_hints(path, channel=channel)
                except KernelGANError:  # past the last channel (or unreadable: then nothing from it)
                    if channel == 0:
                        found.append(dict.fromkeys(HINT_KEYS))
                    break
                found.append(hints)
                if Path(path).suffix.lower() not in TIFF_SUFFIXES or tiff_kind(Path(path)) != "ome":
                    break  # only OME describes each channel
    return common_hints(found) if found else dict.fromkeys(HINT_KEYS)


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
    given = text if isinstance(value, str) else value  # as the caller gave it: '610' typed, 610.0 passed
    if key == "modality":
        if text.lower() not in MODALITIES:
            raise BadOptionError(HintParam(key, given), f" is not a modality: give {' or '.join(MODALITIES)}")
        return text.lower()
    if key == "n_immersion" and text.lower() in IMMERSION_INDEX:
        return IMMERSION_INDEX[text.lower()]
    try:
        number = float(text)
    except ValueError:
        extra = f" or an immersion ({', '.join(('oil', 'water', 'glycerol', 'silicone', 'air'))})" \
            if key == "n_immersion" else ""
        raise BadOptionError(HintParam(key, given, gui=f"{_GUI_WORDS[key]} {text!r}"), f" must be a number{extra}"
                             ) from None
    if key == "wavelength_um" and number > NM_THRESHOLD:
        raise BadOptionError(HintParam(key, given, gui=f"{_GUI_WORDS[key]} {text}"),
                             f" looks like nanometres: give micrometres ({number / 1000:g} for {number:g} nm)")
    lo, hi = _PLAUSIBLE[key]
    if not (math.isfinite(number) and lo <= number <= hi) or (key == "pixel_um" and number <= 0):
        unit = _UNITS.get(key, "")
        raise BadOptionError(HintParam(key, given, gui=f"{_GUI_WORDS[key]} {text}{unit}"),
                             f" is outside {lo:g}–{hi:g}{unit}, the range of a microscope's {_GUI_WORDS[key]}")
    return number


def hint_problems(hints: Mapping[str, Any]) -> list[HintProblem]:
    """Everything wrong with ``hints`` (:data:`HINT_KEYS` → a value, typed text or ``None`` for unknown), each
    with the fields at fault and what to change; empty where they can be used together.

    Each value as :func:`check_hint` reads it (a number in its range, an immersion's name, a modality), then
    the combinations: the NA must stay below the immersion's index (:data:`ASSUMED_IMMERSION`, oil's, where
    none is given, as the estimators take it: NA = n sin θ), and a pinhole goes with a confocal, not a
    widefield.
    """
    return _read_hints(hints)[1]


def _read_hints(hints: Mapping[str, Any]) -> tuple[dict[str, Any], list[HintProblem]]:
    """Each hint as :func:`check_hint` reads it (those it refuses left out) and :func:`hint_problems`'s list."""
    problems: list[HintProblem] = []
    read: dict[str, Any] = {}
    for key, value in hints.items():
        try:
            read[key] = check_hint(key, value)
        except BadOptionError as exc:
            problems.append(HintProblem((key,), exc.words))
    values = {k: _Number(v) if isinstance(v, float) else v for k, v in read.items()}
    na, n = values.get("na"), values.get("n_immersion")
    if na is not None and na >= (ASSUMED_IMMERSION if n is None else n):
        if n is None:
            problems.append(HintProblem(("na", "n_immersion"), (
                HintParam("na", na), f" must be below the immersion's refractive index, taken as oil's "
                f"{ASSUMED_IMMERSION:g} where no ", HintParam("n_immersion", bare=True),
                " is given (NA = n sin θ): give ", HintParam("n_immersion", bare=True, gui="the immersion index"),
                " for this objective")))
        else:
            problems.append(HintProblem(("na", "n_immersion"), (
                HintParam("na", na), " must be below the immersion's refractive index ",
                HintParam("n_immersion", n, gui=f"{n:g}"), " (NA = n sin θ): lower ",
                HintParam("na", bare=True, gui="the NA"), ", or give ",
                HintParam("n_immersion", bare=True, gui="the immersion index"), " for this objective")))
    if values.get("pinhole_au") is not None and values.get("modality") == "widefield":
        problems.append(HintProblem(("pinhole_au", "modality"), (
            HintParam("pinhole_au", values["pinhole_au"], gui=f"a pinhole ({values['pinhole_au']:g} AU)"),
            " is for a confocal, but ", HintParam("modality", "widefield", gui="the modality is widefield"),
            ": clear the pinhole, or make the modality confocal")))
    return read, problems


def check_hints(hints: Mapping[str, Any], who: str = "") -> dict[str, Any]:
    """``hints`` read as :func:`check_hint` reads each (``None`` kept), or the :class:`BadOptionError` of the
    first of :func:`hint_problems` (``who``, e.g. an estimator's name, before its words)."""
    values, problems = _read_hints(hints)
    if problems:
        raise problems[0].error(who)
    return values


def format_hint(key: str, value: Any) -> str:
    """``"NA 1.4"``, ``"emission λ 0.52 µm"``, ``"pinhole 1 AU"``: one hint in words."""
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    return f"{HINT_LABELS.get(key, key)} {shown}{_UNITS.get(key, '')}"


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
