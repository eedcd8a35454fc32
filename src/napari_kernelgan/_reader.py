"""Reading kernel files, kernel maps and TIFF stacks into napari.

Every ``.mat`` file is claimed (napari reads none itself): one holding a
``Kernel`` variable (or a single variable), as the DIV2KRK / KernelGAN files
do, becomes a kernel layer; any other (corrupt, 64×64, several variables...)
fails with the reason from :func:`napari_kernelgan.io.read_kernel`, shown as a
napari notification, instead of napari's generic "refused the file". A
``.npy`` or plain ``.tif`` whose name says it is a kernel (``kernel`` or
``psf`` in it) is read as one when its content is a kernel by
:func:`napari_kernelgan.layers.is_kernel`; when it is small but not a kernel
(even-sized, 3-D...) the reader fails with what is wrong and what to do
(``psf.npy is 12×12: an SR kernel must have an odd side; ...``), also shown as
a notification.

A kernel read while a viewer is open is drawn in a kernel panel beside the
largest image layer, with that layer's units, and the view widens to show it.

Kernel maps (``.npz`` files written by ``KernelField.save`` or ``estimate
--kernel-map``) open as the kernel-map layers of *Kernel map*: over an open
image layer of the map's size (its geometry and units), else at unit scale.

TIFFs: the manifest claims ``*.tif`` / ``*.tiff``, so napari offers this
plugin beside its own reader for every TIFF (and can remember the choice for
the suffix). OME-TIFF and ImageJ stacks open with their physical pixel sizes
as the layer's ``scale``, their ``units`` and ``axis_labels`` (read by
:func:`napari_kernelgan.stacks.open_image`, as the batch engine reads them), a
layer per channel, and lazily: memory-mapped, or page by page through Dask
when compressed. A unit napari does not know is named in a warning and the
axis left in pixels. Each layer's metadata also holds the microscope's optics as
the estimators take them (``"optics"``: :func:`napari_kernelgan.optics_hints.optics_hints`
of its channel; ``None`` for what the file does not say), which *Estimate
kernel* fills its *Optics* group from. A TIFF without OME or ImageJ metadata (and not a kernel)
opens plainly, memory-mapped where it can be, so remembering this plugin for
TIFFs never loses a file.
"""
from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadInputError
from .io import read_kernel
from .layers import (
    FILE_KERNEL_SLOT,
    KERNEL_COLORMAP,
    MAX_KERNEL_SIDE,
    LayerDataTuple,
    ensure_visible,
    is_kernel,
    kernel_panel_transform,
    kernel_problem,
    kernel_shape,
    largest_image_layer,
    layer_role,
    named_as_kernel,
    units_of,
)
from .types import kernel_metadata
from .vocabulary import LayerRole

ReaderFunction = Callable[[Any], list[LayerDataTuple]]

__all__ = ["get_reader", "read_kernels", "kernel_layer_data", "looks_like_kernel", "looks_like_field",
           "read_kernel_maps", "looks_like_stack", "read_stacks", "stack_layer_data", "read_plain_tiffs",
           "plain_tiff_layer_data", "misread_kernel"]


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1) if len(shape) > 2 else tuple(shape)


def looks_like_kernel(path: str | os.PathLike) -> bool:
    """Whether a ``.npy`` file, or a ``.tif`` named as a kernel, holds a kernel
    (:func:`~napari_kernelgan.layers.is_kernel`).

    Only the header is read unless the shape fits. (``.mat`` files are always
    claimed, see :func:`get_reader`.)
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        return False
    try:
        if suffix == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            shape = _squeezed(arr.shape)
            return kernel_shape(shape) and is_kernel(np.asarray(arr).reshape(shape))
        if suffix in (".tif", ".tiff") and named_as_kernel(path.stem):
            # Every TIFF reaches this reader; a small plain image is a kernel only when its name says so.
            import tifffile

            with tifffile.TiffFile(path) as tif:
                if len(tif.series) != 1 or not kernel_shape(_squeezed(tuple(tif.series[0].shape))):
                    return False
                arr = tif.series[0].asarray()
                return is_kernel(arr.reshape(_squeezed(arr.shape)))
    except Exception:
        # Unreadable or foreign content: not ours to claim.
        return False
    return False


def _raw_shape(path: Path) -> tuple[tuple[int, ...], str | None]:
    """The array shape of a ``.npy`` or ``.tif`` file and, for a TIFF, its kind (``ome``, ``imagej``, ``tiff``);
    only the header is read."""
    if path.suffix.lower() == ".npy":
        return tuple(np.load(path, mmap_mode="r", allow_pickle=False).shape), None
    import tifffile

    with tifffile.TiffFile(path) as tif:
        kind = "ome" if tif.is_ome else "imagej" if tif.is_imagej else "tiff"
        return tuple(tif.series[0].shape), kind


def misread_kernel(path: str | os.PathLike) -> str | None:
    """What is wrong with a ``.npy`` / ``.tif`` file that is meant as a kernel but is not one, in the user's
    terms (``'psf.npy is 12×12: an SR kernel must have an odd side; crop it to 11×11 or pad it to 13×13'``);
    ``None`` for a kernel, and for files not meant as one: not named so, or too big to be one (an image)."""
    path = Path(path)
    if path.suffix.lower() not in (".npy", ".tif", ".tiff") or not path.is_file() or not named_as_kernel(path.stem):
        return None
    try:
        shape, kind = _raw_shape(path)
    except Exception:  # unreadable: napari's readers may know better
        return None
    shape = _squeezed(shape)
    if not shape or max(shape) > 2 * MAX_KERNEL_SIDE or len(shape) > 3 or (kind in ("ome", "imagej")
                                                                          and len(shape) > 2):
        return None  # an image or a calibrated stack (a 3-D PSF opens as one)
    try:
        arr = np.load(path, allow_pickle=False) if kind is None else _tiff_array(path)
    except Exception:
        return None
    problem = kernel_problem(np.asarray(arr).reshape(shape))
    return None if problem is None else problem.about(path.name, shape)


def _tiff_array(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(path)


def _viewer() -> Any | None:
    """The open napari viewer, if napari is already running (never imports napari)."""
    if "napari" not in sys.modules:
        return None
    try:
        import napari

        return napari.current_viewer()
    except Exception:  # no Qt, no viewer: read without placement
        return None


def _notify_error(message: str) -> None:
    if "napari" in sys.modules:
        from napari.utils.notifications import show_error

        show_error(message)


def kernel_layer_data(path: str | os.PathLike, viewer: Any | None = None, slot: int = FILE_KERNEL_SLOT
                      ) -> LayerDataTuple:
    """Read one kernel file (via :func:`napari_kernelgan.io.read_kernel`) as an image layer tuple.

    With a ``viewer``, the kernel is placed in panel ``slot`` beside its largest image layer.
    """
    path = Path(path)
    wrong = misread_kernel(path)
    if wrong is not None:
        raise BadInputError(wrong)
    k = read_kernel(path)
    meta = kernel_metadata(k, None, role=LayerRole.KERNEL_FILE, source_file=str(path))
    kwargs: dict[str, Any] = {"name": path.stem, "colormap": KERNEL_COLORMAP, "metadata": meta,
                              "interpolation2d": "nearest", "contrast_limits": [0.0, float(max(k.max(), 1e-12))]}
    image = largest_image_layer(viewer) if viewer is not None else None
    if image is not None:
        scale, translate = kernel_panel_transform(image, k.shape[0], slot)
        kwargs.update(scale=scale, translate=translate, **units_of(image, 2))
        meta["beside"] = image.name
    return (k.astype(np.float32), kwargs, "image")


def _show_when_added(viewer: Any, sources: set[str]) -> None:
    """Widen the view once napari has added the kernel layers read from ``sources``."""
    def on_inserted(event: Any) -> None:
        layer = event.value
        source = (getattr(layer, "metadata", None) or {}).get("source_file")
        if source in sources:
            sources.discard(source)
            if not sources:
                viewer.layers.events.inserted.disconnect(on_inserted)
            ensure_visible(viewer, [layer])

    viewer.layers.events.inserted.connect(on_inserted)


def looks_like_field(path: str | os.PathLike) -> bool:
    """Whether a file is a kernel map (``.npz`` with the arrays :class:`~napari_kernelgan.fields.KernelField`
    saves); only the archive's member names are read."""
    import zipfile

    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = {n.removesuffix(".npy") for n in z.namelist()}
    except (OSError, zipfile.BadZipFile):
        return False
    return {"kernels", "centres_y", "centres_x", "meta"} <= names


def _field_layers(path: Path, viewer: Any | None) -> list[LayerDataTuple]:
    from types import SimpleNamespace

    from .fields import KernelField
    from .layers import is_input_layer, kernel_map_layer_data
    from .layers.placement import _spatial

    field = KernelField.load(path)
    over = None
    if viewer is not None:
        for layer in viewer.layers:
            if is_input_layer(layer) and tuple(_spatial(layer)[2]) == field.image_shape:
                over = layer
                break
    if over is None:
        h, w = field.image_shape
        over = SimpleNamespace(name=path.stem, data=np.zeros((h, w), dtype=np.uint8), rgb=False, scale=[1.0, 1.0],
                               translate=[0.0, 0.0], multiscale=False)
    out = kernel_map_layer_data(over, field, name=path.stem.removesuffix("_kernel_map"))
    for _, kwargs, _ in out:
        kwargs["metadata"]["source_file"] = str(path)
    return out


def read_kernel_maps(path: str | list[str]) -> list[LayerDataTuple]:
    """Read kernel-map files as the kernel mosaic and per-pixel map layers (see the module docstring)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    viewer = _viewer()
    out = []
    for p in paths:
        try:
            out.extend(_field_layers(Path(p), viewer))
        except BadInputError as exc:
            _notify_error(f"Cannot open {Path(p).name} as a kernel map: {exc}")
            raise
    return out


def looks_like_stack(path: str | os.PathLike) -> bool:
    """Whether a file is a TIFF whose OME or ImageJ metadata name its axes (only its header is read)."""
    from .stacks import TIFF_SUFFIXES, tiff_kind

    path = Path(path)
    return path.suffix.lower() in TIFF_SUFFIXES and path.is_file() and tiff_kind(path) in ("ome", "imagej")


# ImageJ writes the micro sign escaped; pint reads the rest ("micron", "um", "µm", "nm", "sec"...).
_UNIT_SPELLINGS = {"\\u00b5m": "µm", "μm": "µm", "micron": "µm", "microns": "µm", "pixels": "pixel"}


def _napari_unit(text: str | None, where: str = "") -> str:
    """A unit napari (pint) understands; ``"pixel"`` for none, and for one it does not know, with a warning
    naming that unit (the image still opens, that axis uncalibrated)."""
    if not text or text.strip().lower() in ("pixel", "pixels", "px"):
        return "pixel"
    unit = _UNIT_SPELLINGS.get(text.strip().lower(), text.strip())
    try:
        import pint

        pint.get_application_registry().Unit(unit)
    except Exception:  # an unknown unit must not stop the image from opening
        about = f" in {where}" if where else ""
        warnings.warn(f"unit {text.strip()!r}{about} is not one napari knows: that axis is shown in pixels; "
                      "write the unit as µm, nm, mm or s in the file's metadata", UserWarning, stacklevel=2)
        return "pixel"
    return unit


def _axis_calibration(meta: Any, axis: str, where: str = "") -> tuple[float, str]:
    """Physical step and unit of one axis: pixel sizes for X, Y, Z; the frame interval for T."""
    if axis in meta.pixel_size:
        return float(meta.pixel_size[axis]), _napari_unit(meta.unit.get(axis), where)
    extra = meta.extra
    if axis == "T" and extra.get("TimeIncrement"):
        return float(extra["TimeIncrement"]), _napari_unit(extra.get("TimeIncrementUnit", "s"), where)
    if axis == "T" and extra.get("finterval"):
        return float(extra["finterval"]), _napari_unit(extra.get("tunit", "s"), where)
    return 1.0, "pixel"


def _optics_of(path: Path, channel: int) -> dict[str, Any]:
    """The optics hints of one channel (:func:`~napari_kernelgan.optics_hints.optics_hints`) for the layer's
    metadata; a channel the OME-XML does not describe has none."""
    from .optics_hints import HINT_KEYS, optics_hints

    try:
        return optics_hints(path, channel=channel)
    except BadInputError:
        return dict.fromkeys(HINT_KEYS)


def stack_layer_data(path: str | os.PathLike) -> LayerDataTuple:
    """One OME or ImageJ TIFF as an image layer tuple: ``scale``, ``units`` and ``axis_labels`` from the file,
    ``channel_axis`` when it has channels (napari then makes a layer per channel), the data unread."""
    from .stacks import channel_index, open_image, stem_of

    path = Path(path)
    src = open_image(path, lazy=True)
    axes, shape = src.meta.axes, src.data.shape
    rgb = axes.endswith("S") and shape[-1] in (3, 4)
    channel = None if rgb else channel_index(axes)
    spatial = [a for i, a in enumerate(axes) if i != channel and not (rgb and a == "S")]
    # One warning per unknown unit, not one per axis that uses it.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        steps, units = zip(*(_axis_calibration(src.meta, a, path.name) for a in spatial))
    for text in dict.fromkeys(str(w.message) for w in caught):
        warnings.warn(text, UserWarning, stacklevel=2)
    name = stem_of(path)
    meta = {"source_file": str(path), "axes": axes, "format": src.meta.kind}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optics = [_optics_of(path, i) for i in range(1 if channel is None else shape[channel])]
    for text in dict.fromkeys(str(w.message) for w in caught):
        warnings.warn(text, UserWarning, stacklevel=2)
    kwargs: dict[str, Any] = {
        "name": name if channel is None else [f"{name} c{i}" for i in range(shape[channel])],
        "scale": list(steps), "units": list(units), "axis_labels": [a.lower() for a in spatial], "rgb": rgb,
        # napari gives each channel's layer its own entry of a list
        "metadata": ({**meta, "optics": optics[0]} if channel is None else
                     [{**meta, "channel": i, "optics": optics[i]} for i in range(shape[channel])])}
    if channel is not None:
        kwargs["channel_axis"] = channel
    return (src.data, kwargs, "image")


def _read_each(path: str | list[str], read: Callable[[Any], LayerDataTuple]) -> list[LayerDataTuple]:
    """``read(p)`` for every path; a file that cannot be read raises
    :class:`~napari_kernelgan.errors.BadInputError` with the reason, also shown as a notification."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    out = []
    for p in paths:
        try:
            out.append(read(p))
        except BadInputError as exc:
            _notify_error(f"Cannot open {Path(p).name}: {exc}")
            raise
    return out


def read_stacks(path: str | list[str]) -> list[LayerDataTuple]:
    """Read OME / ImageJ TIFF stacks (see the module docstring)."""
    return _read_each(path, stack_layer_data)


def plain_tiff_layer_data(path: str | os.PathLike) -> LayerDataTuple:
    """A TIFF without OME or ImageJ metadata as an image layer tuple, uncalibrated, memory-mapped where the file
    allows (RGB when tifffile finds samples of 3 or 4)."""
    import tifffile

    from .stacks import stem_of

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            mappable = series.dataoffset is not None and series.dtype.isnative
            axes, shape = series.axes, tuple(series.shape)
        data = tifffile.memmap(path, mode="r") if mappable else tifffile.imread(path)
    except Exception as exc:  # corrupt and truncated files raise many types; report them one way
        raise BadInputError(f"could not read image {path.name}: {exc}") from exc
    rgb = axes.endswith("S") and shape[-1] in (3, 4)
    return (data, {"name": stem_of(path), "rgb": rgb, "metadata": {"source_file": str(path), "format": "tiff"}},
            "image")


def read_plain_tiffs(path: str | list[str]) -> list[LayerDataTuple]:
    """Read TIFFs without OME or ImageJ metadata plainly (see the module docstring)."""
    return _read_each(path, plain_tiff_layer_data)


def _is_tiff(path: str | os.PathLike) -> bool:
    from .stacks import TIFF_SUFFIXES, tiff_kind

    path = Path(path)
    return path.suffix.lower() in TIFF_SUFFIXES and path.is_file() and tiff_kind(path) is not None


def get_reader(path: str | list[str]) -> ReaderFunction | None:
    """npe2 reader hook (see the module docstring): a reader for ``.mat`` files, kernel ``.npy``/``.tif`` files
    (and files named as kernels that are not, to say why), kernel-map ``.npz`` files, OME / ImageJ TIFF stacks
    and plain TIFFs; ``None`` for anything else (napari's)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths:
        return None
    if all(looks_like_field(p) for p in paths):
        return read_kernel_maps
    if all(Path(p).is_file() and (Path(p).suffix.lower() == ".mat" or looks_like_kernel(p)
                                  or misread_kernel(p) is not None) for p in paths):
        return read_kernels
    if all(looks_like_stack(p) for p in paths):
        return read_stacks
    if all(_is_tiff(p) for p in paths):
        return read_plain_tiffs
    return None


def read_kernels(path: str | list[str]) -> list[LayerDataTuple]:
    """Read one or several kernel files, one layer each.

    A file that is not a usable kernel raises :class:`~napari_kernelgan.errors.BadInputError`
    with the reason, which is also shown as a napari notification (napari's own
    message for a failing reader does not give it).
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    viewer = _viewer()
    first = FILE_KERNEL_SLOT
    if viewer is not None:
        first += sum(1 for layer in viewer.layers if layer_role(layer) == LayerRole.KERNEL_FILE)
    out = []
    for i, p in enumerate(paths):
        try:
            out.append(kernel_layer_data(p, viewer, slot=first + i))
        except BadInputError as exc:
            said = str(exc)  # the file's own problem names it already
            _notify_error(said if said.startswith(Path(p).name) else f"Cannot open {Path(p).name} as a kernel: {said}")
            raise
    if viewer is not None:
        _show_when_added(viewer, {t[1]["metadata"]["source_file"] for t in out})
    return out
