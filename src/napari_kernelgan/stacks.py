"""Images with their axes and physical pixel sizes: OME-TIFF, ImageJ TIFF, plain TIFF, PNG, JPEG (and the other
formats scikit-image reads, written back as PNG).

:func:`open_image` reads an image's axes (``TZCYXS`` letters) from its OME-XML or ImageJ metadata,
else from the axes a user gives, and its pixel sizes and units; uncompressed TIFFs are memory-mapped
read-only, so a stack larger than memory is read slice by slice (``lazy=True`` makes compressed ones a
Dask array read page by page, for napari). :func:`tiff_kind` tells from the header alone whether a TIFF
names its axes. :func:`write_like` writes a result
in the input's format (OME-TIFF, ImageJ TIFF, plain TIFF or PNG) with its axes and metadata, the YX
pixel size divided by the SR scale so Fiji and napari show it at the input's physical size.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import struct
import uuid
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadInputError, MissingFileError, Param

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (*TIFF_SUFFIXES, ".png", ".jpg", ".jpeg")
"""What a folder is searched for; a file named explicitly may be any format scikit-image reads."""
CHANNEL_AXES = "CS"

__all__ = ["ImageMeta", "ImageSource", "open_image", "check_axes", "write_like", "output_suffix", "stem_of",
           "tiff_kind", "CHANNEL_AXES", "channel_index", "read_optics", "OPTICS_KEYS", "length_um"]


@dataclass(frozen=True)
class ImageMeta:
    """How an image's array maps onto the world: one axis letter per dimension, pixel sizes and units.

    ``kind`` is the file format written back (``ome``, ``imagej``, ``tiff``, ``png``); ``pixel_size`` and
    ``unit`` are keyed by axis letter (``X``, ``Y``, ``Z``...); ``extra`` keeps format-specific
    entries carried through unchanged (ImageJ ``finterval``, OME ``TimeIncrement``...).
    """

    axes: str
    kind: str
    pixel_size: dict[str, float] = field(default_factory=dict)
    unit: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def scaled(self, scale: int = 1, z_factor: int = 1) -> ImageMeta:
        """The metadata of the image upsampled ``scale`` times in Y and X and ``z_factor`` times in Z (the
        Z spacing divided by it; ImageJ ``spacing`` and OME ``PhysicalSizeZ`` are written from it)."""
        factors = {"Y": scale, "X": scale, "Z": z_factor}
        sizes = {a: v / factors.get(a, 1) for a, v in self.pixel_size.items()}
        return replace(self, pixel_size=sizes)

    def size_um(self, axis: str) -> float | None:
        """The pixel size along ``axis`` (``"X"``, ``"Z"``...) in µm; ``None`` where the file does not record
        it or records it in a unit that is not a length (ImageJ's ``pixel``)."""
        if axis not in self.pixel_size:
            return None
        return length_um(self.pixel_size[axis], self.unit.get(axis))

    def with_size_um(self, axis: str, size_um: float) -> ImageMeta:
        """The metadata with the pixel size along ``axis`` set to ``size_um`` µm, in the unit the file uses
        for it (or for X; µm where neither is a length): a size given for a file that did not record it,
        or over what it recorded, is written to its results."""
        unit = self.unit.get(axis) or self.unit.get("X")
        per = None if unit is None else length_um(1.0, unit)
        if not per:
            unit, per = "µm", 1.0
        return replace(self, pixel_size={**self.pixel_size, axis: float(size_um) / per},
                       unit={**self.unit, axis: unit})


@dataclass
class ImageSource:
    """An opened image: ``data`` in the file's axis order (a read-only ``np.memmap`` where the file allows)."""

    path: Path
    data: np.ndarray
    meta: ImageMeta

    @property
    def streamed(self) -> bool:
        return isinstance(self.data, np.memmap)


def stem_of(path: str | os.PathLike) -> str:
    """The file name without its image suffix (``cells.ome.tif`` → ``cells``)."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def output_suffix(path: str | os.PathLike, meta: ImageMeta) -> str:
    """Suffix of a result written like the input: OME and TIFF keep theirs, PNG stays PNG, JPEG becomes
    PNG (a result is not re-compressed lossily)."""
    if meta.kind == "ome":
        return ".ome.tiff" if Path(path).name.lower().endswith(".tiff") else ".ome.tif"
    if meta.kind == "png":
        return ".png"
    suffix = Path(path).suffix.lower()
    return suffix if suffix in TIFF_SUFFIXES else ".tif"


def channel_index(axes: str) -> int | None:
    """The position of the channel axis (``C``, or ``S`` for RGB samples) in ``axes``, ``None`` if there is none."""
    return next((i for i, a in enumerate(axes) if a in CHANNEL_AXES), None)


def check_axes(axes: str, ndim: int, where: str = "") -> str:
    """Upper-case ``axes`` and check it fits an array of ``ndim`` dimensions: one letter each, Y and X
    once, at most one channel axis (C or S), and the image plane last (``...YX`` or ``...YXS``)."""
    axes = str(axes).strip().upper()
    about = f" for {where}" if where else ""
    if not re.fullmatch(r"[A-Z]+", axes):
        raise BadInputError(f"axes {axes!r}{about} must be letters such as TZCYX")
    if len(axes) != ndim:
        raise BadInputError(f"axes {axes!r}{about} name {len(axes)} dimensions but the image has {ndim}")
    if len(set(axes)) != len(axes):
        raise BadInputError(f"axes {axes!r}{about} repeat a letter")
    if "Y" not in axes or "X" not in axes:
        raise BadInputError(f"axes {axes!r}{about} must contain Y and X")
    if sum(axes.count(c) for c in CHANNEL_AXES) > 1:
        raise BadInputError(f"axes {axes!r}{about} hold two channel axes (C and S); name one")
    if not (axes.endswith("YX") or axes.endswith("YXS") or axes.endswith("YXC")):
        raise BadInputError(f"axes {axes!r}{about} must end with YX (or YXS for RGB samples)")
    return axes[:-1] + "S" if axes.endswith("YXC") else axes


def _legacy_axes(shape: tuple[int, ...], channel_axis: int | None, stack_axis: int | None) -> str:
    """Axes from the API's ``channel_axis`` / ``stack_axis`` (or the shape alone), refused as
    :func:`~napari_kernelgan.imaging.prepare_image` refuses them."""
    nd = len(shape)
    letters = [""] * nd
    for name, ax, letter in (("channel_axis", channel_axis, "C"), ("stack_axis", stack_axis, "Z")):
        if ax is not None:
            if not -nd <= ax < nd:
                raise BadInputError(Param(name, ax), f" is out of range for an image of {nd} dimensions {shape}")
            if letters[ax % nd]:
                raise BadInputError(Param("channel_axis", bare=True), " and ", Param("stack_axis", bare=True),
                                    " must differ")
            letters[ax % nd] = letter
    free = [i for i, v in enumerate(letters) if not v]
    if channel_axis is None and stack_axis is None and nd == 3 and shape[-1] in (3, 4):
        return "YXS"
    if len(free) != 2:
        raise BadInputError(
            f"cannot tell the two image axes in an array of shape {shape}: a {nd}-D image without OME or "
            "ImageJ axes needs ", Param("channel_axis"), " and/or ", Param("stack_axis"), ", or ", Param("axes"),
            " naming them all (e.g. ", Param("axes", "ZYX"), "), or the 2-D slice you want")
    letters[free[0]], letters[free[1]] = "Y", "X"
    return "".join(letters)


def _ome_meta(xml: str) -> tuple[dict[str, float], dict[str, str], dict[str, Any]]:
    root = ET.fromstring(xml)
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    sizes: dict[str, float] = {}
    units: dict[str, str] = {}
    extra: dict[str, Any] = {}
    if pixels is None:
        return sizes, units, extra
    for ax in "XYZ":
        value = pixels.get(f"PhysicalSize{ax}")
        if value is not None:
            sizes[ax] = float(value)
            units[ax] = pixels.get(f"PhysicalSize{ax}Unit", "µm")  # the OME default unit
    if pixels.get("TimeIncrement") is not None:
        extra["TimeIncrement"] = float(pixels.get("TimeIncrement"))
        extra["TimeIncrementUnit"] = pixels.get("TimeIncrementUnit", "s")
    return sizes, units, extra


def _imagej_meta(tif: Any) -> tuple[dict[str, float], dict[str, str], dict[str, Any]]:
    ij = tif.imagej_metadata or {}
    tags = tif.pages[0].tags
    sizes: dict[str, float] = {}
    unit = ij.get("unit")
    for ax, tag in (("X", "XResolution"), ("Y", "YResolution")):
        if tag in tags:
            num, den = tags[tag].value
            if num and den and (num, den) != (1, 1):  # 1/1 is ImageJ's "uncalibrated"
                sizes[ax] = den / num
    if "spacing" in ij:
        sizes["Z"] = float(ij["spacing"])
    units = {ax: str(unit) for ax in sizes} if unit else {}
    extra = {k: ij[k] for k in ("finterval", "fps", "tunit") if k in ij}
    return sizes, units, extra


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """tifffile logs what it finds wrong in a file; the error raised says it, once."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def tiff_kind(path: str | os.PathLike) -> str | None:
    """``"ome"``, ``"imagej"`` or ``"tiff"`` for a TIFF (only its header and first page are read); ``None`` for
    anything that is not a readable TIFF with an image in it."""
    import tifffile

    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            if not tif.series:
                return None
            return "ome" if tif.is_ome else "imagej" if tif.is_imagej else "tiff"
    except Exception:  # not a TIFF, truncated, unreadable: the caller leaves it to other readers
        return None


TRUNCATED = "the file is shorter than its header says (truncated or still being written?)"


def read_error(path: Path, exc: Exception) -> BadInputError:
    """A corrupt or truncated file's low-level error (NumPy's memory map, ``struct``, tifffile, zlib) as the
    user's sentence about the file."""
    import tifffile

    text = str(exc)
    if isinstance(exc, ValueError) and ("mmap length is greater than file size" in text
                                        or "cannot mmap an empty file" in text):
        reason = TRUNCATED
    elif isinstance(exc, (struct.error, EOFError)):
        reason = "the file ends inside its header (truncated or still being written?)"
    elif isinstance(exc, tifffile.TiffFileError):
        reason = f"its TIFF structure is damaged ({text}): truncated, still being written, or not a TIFF?"
    elif isinstance(exc, zlib.error) or "truncated" in text.lower() or "incomplete" in text.lower():
        reason = f"its compressed data end early ({text}): truncated or still being written?"
    else:
        reason = text
    return BadInputError(f"could not read image {path.name}: {reason}")


def _planes(series: Any) -> int:
    """How many image planes (``YX`` or ``YXS``) a series holds."""
    plane = 3 if series.axes.endswith("S") else 2
    return int(np.prod(series.shape[: len(series.shape) - plane], dtype=np.int64))


def _paged(path: Path, series: Any) -> Any:
    """A compressed (or tiled, or byte-swapped) series as a Dask array with a chunk per TIFF page: only the
    pages of the slices shown are decoded."""
    import dask
    import dask.array as da
    import tifffile

    plane = series.shape[-3:] if series.axes.endswith("S") else series.shape[-2:]
    count = int(np.prod(series.shape[: len(series.shape) - len(plane)], dtype=np.int64))

    def page(i: int) -> np.ndarray:
        try:
            with _quiet_tifffile():
                return tifffile.imread(path, series=0, key=i).reshape(plane)
        except IndexError as exc:  # the page is gone: the file was cut short since it was opened
            raise BadInputError(f"could not read image {path.name}: {TRUNCATED}") from exc
        except Exception as exc:  # a page cut short (or changed) since the file was opened
            raise read_error(path, exc) from exc

    chunks = [da.from_delayed(dask.delayed(page)(i), plane, dtype=series.dtype) for i in range(count)]
    return da.stack(chunks).reshape(series.shape)


def _read_tiff(path: Path, lazy: bool = False
               ) -> tuple[Any, str | None, str, dict[str, float], dict[str, str], dict[str, Any]]:
    import tifffile

    with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise BadInputError(f"could not read image {path.name}: no image in it (corrupt or truncated?)")
        series = tif.series[0]
        sizes: dict[str, float] = {}
        units: dict[str, str] = {}
        extra: dict[str, Any] = {}
        if tif.is_ome:
            kind = "ome"
            sizes, units, extra = _ome_meta(tif.ome_metadata)
            axes: str | None = series.axes
        elif tif.is_imagej:
            kind = "imagej"
            sizes, units, extra = _imagej_meta(tif)
            axes = series.axes
            # A cut ImageJ stack reads as its first page alone: its metadata still counts them all.
            if int((tif.imagej_metadata or {}).get("images", 1)) > _planes(series):
                raise BadInputError(f"could not read image {path.name}: {TRUNCATED}")
        else:
            kind = "tiff"
            shaped = tif.shaped_metadata[0] if tif.is_shaped and tif.shaped_metadata else {}
            # Without metadata tifffile names unknown axes I, Q or S; only a plane or RGB is certain then.
            axes = shaped.get("axes") or (series.axes if series.axes in ("YX", "YXS") else None)
            if axes is not None and len(axes) != len(series.shape):
                axes = None
        contiguous = series.dataoffset is not None and series.dtype.isnative
        if contiguous and series.dataoffset + series.nbytes > tif.filehandle.size:
            raise BadInputError(f"could not read image {path.name}: {TRUNCATED}")
        if not contiguous:
            data = _paged(path, series) if lazy and len(series.pages) > 1 else series.asarray()
            return data, axes, kind, sizes, units, extra
    # A read-only map: nothing is read until a slice is used, and the file cannot be changed through it.
    with _quiet_tifffile():
        data = tifffile.memmap(path, mode="r")
    return data, axes, kind, sizes, units, extra


def open_image(path: str | os.PathLike, axes: str | None = None, *, channel_axis: int | None = None,
               stack_axis: int | None = None, lazy: bool = False) -> ImageSource:
    """Open an image with its axes, pixel sizes and units.

    Axes come from the file's OME or ImageJ metadata when it has them (a PNG, JPEG or 2-D TIFF is a
    plane or RGB), else from ``axes`` (e.g. ``"TZCYX"``), else from ``channel_axis`` / ``stack_axis``.
    With ``lazy``, a multi-page TIFF that cannot be memory-mapped is a Dask array (needs ``dask``).
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"image file not found: {path}")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            data, file_axes, kind, sizes, units, extra = _read_tiff(path, lazy=lazy)
        else:
            from .io import read_image

            data, kind, sizes, units, extra = read_image(path), "png", {}, {}, {}
            file_axes = "YX" if data.ndim == 2 else "YXS" if data.ndim == 3 else None
    except BadInputError:
        raise
    except Exception as exc:  # corrupt and truncated files raise many types; report them in the user's words
        raise read_error(path, exc) from exc
    if data.size == 0:
        raise BadInputError(f"the image is empty (shape {data.shape})")
    if data.dtype == bool or not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise BadInputError(f"unsupported image dtype {data.dtype}: use uint8, uint16 or float")
    if file_axes is not None:  # the file's own axes win: --axes is for the files that do not say
        chosen = file_axes
    elif axes is not None:
        chosen = axes
    else:
        chosen = _legacy_axes(tuple(data.shape), channel_axis, stack_axis)
        if not (chosen.endswith("YX") or chosen.endswith("YXS")):
            # The API takes the plane anywhere; the engine (and every file format) wants it last.
            data = np.moveaxis(data, [chosen.index("Y"), chosen.index("X")], [-2, -1])
            chosen = chosen.replace("Y", "").replace("X", "") + "YX"
    return ImageSource(path, data, ImageMeta(check_axes(chosen, data.ndim, path.name), kind, sizes, units, extra))


def _tiff_kwargs(name: str, meta: ImageMeta, shape: tuple[int, ...], dtype: np.dtype) -> dict[str, Any]:
    rgb = meta.axes.endswith("S") and shape[-1] in (3, 4)
    kw: dict[str, Any] = {"photometric": "rgb" if rgb else "minisblack"}
    sizes, units = meta.pixel_size, meta.unit
    if meta.kind == "ome":
        md: dict[str, Any] = {"axes": meta.axes}
        for ax in "XYZ":
            if ax in sizes:
                md[f"PhysicalSize{ax}"] = sizes[ax]
                md[f"PhysicalSize{ax}Unit"] = units.get(ax, "µm")
        md.update(meta.extra)
        # OME files carry a UUID; one derived from the file's name and description keeps reruns byte-identical.
        md["UUID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps([name, md, list(shape), str(dtype)], default=str)))
        kw.update(ome=True, metadata=md)
    elif meta.kind == "imagej":
        md = {"axes": meta.axes, **meta.extra}
        if "Z" in sizes:
            md["spacing"] = sizes["Z"]
        unit = units.get("X") or units.get("Y") or units.get("Z")
        if unit:
            md["unit"] = unit
        if "X" in sizes and "Y" in sizes:
            kw["resolution"] = (1.0 / sizes["X"], 1.0 / sizes["Y"])
        kw.update(imagej=True, metadata=md)
    else:
        kw["metadata"] = {"axes": meta.axes}
    return kw


def write_like(path: str | os.PathLike, pages: np.ndarray | Iterable[np.ndarray], meta: ImageMeta,
               shape: tuple[int, ...], dtype: np.dtype) -> Path:
    """Write an image of ``shape`` and ``dtype`` in ``meta``'s format and axes, atomically.

    ``pages`` is the whole array or an iterator over its TIFF pages in file order (each ``YX`` or
    ``YXS``), so a stack is written as it is computed, never held whole.
    """
    from .io import atomic_path, write_image

    path = Path(path)
    if meta.kind == "png":
        return write_image(path, pages if isinstance(pages, np.ndarray) else np.stack(list(pages)).reshape(shape))
    import tifffile

    with atomic_path(path) as tmp:
        if isinstance(pages, np.ndarray):
            tifffile.imwrite(tmp, pages, **_tiff_kwargs(path.name, meta, shape, dtype))
        else:
            tifffile.imwrite(tmp, pages, shape=shape, dtype=dtype, **_tiff_kwargs(path.name, meta, shape, dtype))
    return path


_LENGTH_UM = {"pm": 1e-6, "Å": 1e-4, "nm": 1e-3, "µm": 1.0, "μm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}
"""OME length units → micrometres (lengths in ``pixel`` or ``reference frame`` units are not physical)."""
_SPELLED_UM = {"micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0, "\\u00b5m": 1.0,
               "nanometer": 1e-3, "nanometre": 1e-3, "millimeter": 1e3, "millimetre": 1e3}
"""How ImageJ files and napari (pint) spell some of them."""


def length_um(value: float, unit: str | None) -> float | None:
    """``value`` in ``unit`` as µm; no unit is µm (OME's default, and a calibrated ImageJ file's without one);
    ``None`` for a unit that is not a length (ImageJ's ``pixel``)."""
    if not unit:
        return float(value)
    text = str(unit).strip()
    factor = _LENGTH_UM.get(text, _SPELLED_UM.get(text.lower(), _LENGTH_UM.get(text.lower())))
    return None if factor is None else float(value) * factor
_CONFOCAL_MODES = {"LaserScanningConfocalMicroscopy", "SpinningDiskConfocal", "SlitScanConfocal"}
OPTICS_KEYS = ("na", "immersion", "refractive_index", "magnification", "emission_um", "excitation_um",
               "pinhole_um", "acquisition_mode", "modality", "pixel_x_um", "pixel_y_um", "pixel_z_um")
"""What :func:`read_optics` returns, each ``None`` where the file does not say it."""


def _number(element: ET.Element | None, attr: str) -> float | None:
    if element is None or element.get(attr) is None:
        return None
    try:
        return float(element.get(attr))
    except ValueError:
        raise BadInputError(f"the OME-XML metadata gives {attr}={element.get(attr)!r}, not a number") from None


def _um(element: ET.Element | None, attr: str, default_unit: str) -> float | None:
    value = _number(element, attr)
    factor = None if element is None else _LENGTH_UM.get(element.get(f"{attr}Unit", default_unit))
    return None if value is None or factor is None else value * factor


def read_optics(source: str | os.PathLike, *, image: int = 0, channel: int = 0) -> dict[str, Any]:
    """The optics an OME-TIFF (or an OME-XML string) records for one image and channel, in µm.

    Keys (:data:`OPTICS_KEYS`), each ``None`` where the metadata does not say it (nothing is guessed):
    the objective's ``na`` (``LensNA``), ``immersion`` (``Oil``, ``Water``...), ``magnification``; the
    image's ``refractive_index`` (ObjectiveSettings, the medium's); the channel's ``emission_um`` and
    ``excitation_um`` (from any length unit, nm by default), ``pinhole_um`` (the physical pinhole, not
    in Airy units), ``acquisition_mode`` as written and ``modality`` (``"widefield"`` or
    ``"confocal"`` when the mode says so); the physical pixel sizes ``pixel_x_um``, ``pixel_y_um``,
    ``pixel_z_um``. A TIFF without OME-XML gives all ``None``.
    """
    out: dict[str, Any] = dict.fromkeys(OPTICS_KEYS)
    if isinstance(source, str) and source.lstrip().startswith("<"):
        xml: str | None = source
        name = "the OME-XML"
    else:
        import tifffile

        path = Path(source)
        name = path.name
        if not path.exists():
            raise MissingFileError(f"image {path} does not exist")
        try:
            with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
                xml = tif.ome_metadata
        except Exception as exc:  # not a TIFF, truncated: said in the user's terms
            raise read_error(path, exc) from exc
        if not xml:
            return out
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise BadInputError(f"the OME-XML metadata of {name} is not valid XML ({exc})") from None

    def children(el: ET.Element, tag: str) -> list[ET.Element]:
        return [c for c in el if c.tag.rsplit("}", 1)[-1] == tag]

    images = children(root, "Image")
    if not images:
        return out
    if not 0 <= image < len(images):
        raise BadInputError(Param("image", image), f" is out of range: {name} holds {len(images)} image(s)")
    img = images[image]
    objectives = {o.get("ID"): o for inst in children(root, "Instrument") for o in children(inst, "Objective")}
    settings = next(iter(children(img, "ObjectiveSettings")), None)
    # The objective the image names, or the only one described (then there is no other it could be).
    objective = objectives.get(settings.get("ID")) if settings is not None else None
    if objective is None and settings is None and len(objectives) == 1:
        objective = next(iter(objectives.values()))
    out["na"] = _number(objective, "LensNA")
    out["immersion"] = None if objective is None else objective.get("Immersion")
    out["magnification"] = _number(objective, "NominalMagnification")
    out["refractive_index"] = _number(settings, "RefractiveIndex")
    pixels = next(iter(children(img, "Pixels")), None)
    if pixels is not None:
        for ax in "xyz":
            out[f"pixel_{ax}_um"] = _um(pixels, f"PhysicalSize{ax.upper()}", "µm")
        chans = children(pixels, "Channel")
        if chans and not 0 <= channel < len(chans):
            raise BadInputError(Param("channel", channel), f" is out of range: the image has {len(chans)} "
                                "channel(s)")
        ch = chans[channel] if chans else None
        out["emission_um"] = _um(ch, "EmissionWavelength", "nm")
        out["excitation_um"] = _um(ch, "ExcitationWavelength", "nm")
        out["pinhole_um"] = _um(ch, "PinholeSize", "µm")
        mode = None if ch is None else ch.get("AcquisitionMode")
        out["acquisition_mode"] = mode
        out["modality"] = "confocal" if mode in _CONFOCAL_MODES else "widefield" if mode == "WideField" else None
    return out
