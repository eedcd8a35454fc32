"""One z-stack through the axial tools (``axial`` and ``batch --axial``): its 3-D PSF estimated from the stack
(or a measured one), isotropic voxels by axial SR, and the files of both.

Per input: every channel gets its own 3-D PSF (the blur differs with the wavelength), estimated from its
first time point; every time point of every channel is super-resolved along z with its channel's PSF into a
float32 scratch file beside the output (a memory map the SR fills slab by slab, so a stack larger than memory
streams), then written page by page in the input's format, axes and dtype, the Z spacing divided by the
factor. Files: ``STEM_isotropic.EXT``, ``STEM_psf3d.tif`` (one channel) or ``STEM_cK_psf3d.tif`` (one per
channel), ``STEM_axial.json``.
"""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BadInputError, BadOptionError, Param
from ..imaging import cast_to, keep_in_range
from ..stacks import ImageMeta, ImageSource, open_image, output_suffix
from ..vocabulary import Status
from .config import AXIAL_METHODS
from .outputs import write_json
from .summary import AXIAL_COLUMNS, row

if TYPE_CHECKING:
    from .config import BatchConfig, InputResult
    from .work import Hooks

__all__ = ["AXIAL_METHODS", "AXIAL_COLUMNS", "axial_outputs", "run_axial_input", "open_stack", "stack_sampling",
           "cast_like",
           "value_range", "OPTICS_FOR_PSF"]

OPTICS_FOR_PSF = ("na", "wavelength_um", "n_immersion", "modality", "pinhole_au")
"""The optics hints the 3-D PSF estimate takes (the pixel size is its own argument)."""
_LEAD_AXES = "TCS"  # the axes besides Z, Y and X an input may have: time points and channels


def axial_outputs(cfg: BatchConfig, path: Path, stem: str, meta: ImageMeta, channels: int) -> dict[str, Any]:
    """The files an input writes: ``{"volume": path or None, "psf": [paths], "record": path}``."""
    out = cfg.out_dir(path)
    volume = None if cfg.psf_only else out / f"{stem}_isotropic{output_suffix(path, meta)}"
    psf = [out / f"{stem}_psf3d.tif"] if channels == 1 else [out / f"{stem}_c{c}_psf3d.tif" for c in range(channels)]
    return {"volume": volume, "psf": psf, "record": out / f"{stem}_axial.json"}


def open_stack(path: Path, axes: str | None) -> ImageSource:
    """Open a z-stack: OME and ImageJ files with their axes, others with ``axes``, else a plain 3-D TIFF as
    ZYX; a plain file of more dimensions is refused, asking for its axes."""
    from ..stacks import tiff_kind

    try:
        return open_image(path, axes, stack_axis=0 if axes is None else None)
    except BadInputError as exc:
        if axes is None and path.is_file() and tiff_kind(path) == "tiff":
            raise BadInputError(f"{path.name} does not name its axes (a plain TIFF of more than three dimensions); "
                                "give them with ", Param("axes"), ", e.g. TZYX or ZCYX") from exc
        raise


def stack_sampling(src: ImageSource, cfg: BatchConfig) -> tuple[float, float, list[str]]:
    """The lateral pixel size and z step of an opened stack in µm (the values given over the file's), and the
    notices about them; refused, with what to give, where neither says or the stack is not a z-stack."""
    name, axes, shape = src.path.name, src.meta.axes, tuple(src.data.shape)
    if "Z" not in axes:
        raise BadInputError(f"axial needs a z-stack: {name} has axes {axes} (shape {shape}), no Z axis; open a "
                            "stack of planes (ImageJ or OME TIFF, or a plain 3-D TIFF, read as ZYX)")
    other = [a for a in axes if a not in "ZYX" + _LEAD_AXES]
    if other:
        raise BadInputError(f"{name} has axes {axes}: the axial tools take Z, Y and X, with time points (T) and "
                            f"channels (C); the {', '.join(other)} axis is neither", Param("axes"), " may name them")
    nz = shape[axes.index("Z")]
    if nz < 3:
        raise BadInputError(f"{name} has {nz} z plane{'s' if nz != 1 else ''}; axial SR needs at least 3")
    notices: list[str] = []
    file_pixel = src.meta.size_um("X")
    pixel = cfg.hints.get("pixel_um") or file_pixel
    if pixel is None:
        raise BadInputError(f"{name} records no lateral pixel size in µm; give it with ", Param("pixel_um"))
    file_z = src.meta.size_um("Z")
    if cfg.z_step is not None:
        if file_z is not None and not math.isclose(file_z, cfg.z_step, rel_tol=1e-6):
            notices.append(f"z step {cfg.z_step:g} µm given, over the file's {file_z:g} µm")
        z_step = float(cfg.z_step)
    elif file_z is None:
        raise BadInputError(f"{name} records no z step (ImageJ 'spacing', OME 'PhysicalSizeZ'); give the distance "
                            "between its planes in µm with ", Param("z_step"))
    else:
        z_step = file_z
    if z_step <= pixel * (1 + 1e-6):
        raise BadInputError(f"{name}: the z step ({z_step:g} µm) is not larger than the pixel size ({pixel:g} µm); "
                            "the voxels are already isotropic or finer in z, and axial SR has nothing to add")
    return float(pixel), z_step, notices


def value_range(data: Any, axis: int) -> tuple[float, float]:
    """The minimum and maximum of ``data`` read a plane at a time along ``axis`` (a memory map stays on disk)."""
    lo, hi = math.inf, -math.inf
    for i in range(data.shape[axis]):
        plane = np.asarray(np.take(data, i, axis=axis))
        lo, hi = min(lo, float(plane.min())), max(hi, float(plane.max()))
    return lo, hi


def cast_like(values: np.ndarray, dtype: np.dtype, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Float results in the input's ``dtype``, as the 2-D SR output is written (:func:`~..api.output_image`):
    integers rounded and clipped to the dtype's range only (restored detail peaks above the input's maximum);
    floats kept in [0, 1] for an input within it, non-negative for a non-negative input."""
    out = cast_to(values, dtype)
    if np.issubdtype(out.dtype, np.integer) or value_range is None:
        return out
    return keep_in_range(out, *value_range)


def _channel_optics(cfg: BatchConfig, src: ImageSource, channel: int | None) -> tuple[dict[str, Any], list[str]]:
    """The optics hints of one channel (the file's, ``cfg.hints`` over them) for the PSF estimate, and notes."""
    from ..optics_hints import merge_hints, optics_hints

    file: dict[str, Any] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cfg.file_hints:
            try:
                file = optics_hints(src.path, channel=channel or 0)
            except BadInputError as exc:
                warnings.warn(f"{src.path.name}: optics metadata not used ({exc})", UserWarning, stacklevel=1)
    values, _ = merge_hints(file, cfg.hints)
    optics = {k: v for k, v in values.items() if k in OPTICS_FOR_PSF and v is not None}
    return optics, list(dict.fromkeys(str(w.message) for w in caught))


def _measured_psf(cfg: BatchConfig, pixel: float, z_step: float) -> tuple[Any, tuple[np.ndarray, float, float]]:
    """``cfg.psf3d`` read: the :class:`~..axial.psf.AxialPSF` it gives on the stack's grid and the raw PSF with
    its voxel size (for the deconvolution)."""
    from ..axial.export import read_psf3d
    from ..axial.psf import AxialPSF, line_profile, relative_profile
    from ..physics.measured import in_focus_plane

    array, psf_pixel, psf_z = read_psf3d(cfg.psf3d)
    if psf_pixel is None or psf_z is None:
        raise BadInputError(f"the PSF {cfg.psf3d.name} records no voxel size; save it as an ImageJ or OME TIFF with "
                            "its pixel size and z spacing")
    vol = np.clip(np.asarray(array, dtype=np.float64), 0, None)
    vol = vol - np.median(vol[[0, -1]])  # the background of the planes far from focus
    vol = np.clip(vol, 0, None)
    plane = in_focus_plane(vol)
    lateral = vol[plane]
    cy, cx = np.unravel_index(int(np.argmax(lateral)), lateral.shape)
    if not math.isclose(psf_pixel, pixel, rel_tol=0.02):
        from scipy import ndimage

        lateral = ndimage.zoom(lateral, psf_pixel / pixel, order=1)
        cy, cx = np.unravel_index(int(np.argmax(lateral)), lateral.shape)
    half = max(1, min(cy, cx, lateral.shape[0] - 1 - cy, lateral.shape[1] - 1 - cx))
    lateral = lateral[cy - half:cy + half + 1, cx - half:cx + half + 1]
    py, px = np.unravel_index(int(np.argmax(vol[plane])), vol[plane].shape)
    axial = vol[:, py, px]
    psf = AxialPSF(lateral=lateral, axial=axial, relative=relative_profile(axial, line_profile(lateral), psf_z, pixel),
                   pixel_um=pixel, z_step_um=z_step, step_um=psf_z, confidence=1.0, method="given",
                   notes=(f"measured PSF {cfg.psf3d.name}",))
    return psf, (np.asarray(array, dtype=np.float32), float(psf_pixel), float(psf_z))


@contextlib.contextmanager
def _scratch(out: Path, stem: str, shape: tuple[int, ...]) -> Any:
    """A float32 memory map of ``shape`` in a hidden file beside the output, removed however the block ends (a
    run killed outright leaves it for :func:`~.manifest.remove_stale_temporaries`)."""
    out.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{stem}_isotropic.", suffix=".f32", dir=out)
    os.close(fd)
    try:
        yield np.memmap(name, dtype=np.float32, mode="w+", shape=shape)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _fwhm_list(psf: Any) -> list[float]:
    return [round(float(v), 4) for v in psf.lateral_fwhm_um]


def run_axial_input(path: Path, stem: str, cfg: BatchConfig, result: InputResult, written: list[Path],
                    hooks: Hooks) -> None:
    """Estimate the 3-D PSF of one z-stack (per channel), make its voxels isotropic and write its files (the
    body of :func:`~napari_kernelgan.batch.process_input` for an axial run); rows and record set on ``result``."""
    start = time.perf_counter()
    src = open_stack(path, cfg.axes)
    pixel, z_step, notices = stack_sampling(src, cfg)
    from ..axial import estimate as axial_estimate
    from ..axial import isotropic
    from ..axial.export import write_psf3d
    from ..axial.psf import output_planes
    from ..sr._safety import UnsafeSRWarning

    axes, shape = src.meta.axes, tuple(int(n) for n in src.data.shape)
    ch_axis = next((i for i, a in enumerate(axes) if a in "CS"), None)
    n_channels = 1 if ch_axis is None else shape[ch_axis]
    files = axial_outputs(cfg, path, stem, src.meta, n_channels)
    if not cfg.overwrite:
        there = [p for p in [files["volume"], *files["psf"], files["record"]] if p is not None and p.exists()]
        if there:
            raise BadOptionError(f"{there[0]} exists; give ", Param("overwrite", bare=True),
                                 " to replace it, or another output folder")
    factor = int(cfg.z_factor) if cfg.z_factor is not None else max(1, round(z_step / pixel))
    t_axis = axes.index("T") if "T" in axes else None
    n_times = 1 if t_axis is None else shape[t_axis]

    def unit_index(t: int, c: int | None, *, z: Any = slice(None)) -> tuple[Any, ...]:
        idx: list[Any] = [slice(None)] * len(shape)
        idx[axes.index("Z")] = z
        if t_axis is not None:
            idx[t_axis] = t
        if ch_axis is not None:
            idx[ch_axis] = c
        return tuple(idx)

    channels: list[int | None] = [None] if ch_axis is None else list(range(n_channels))
    record_channels: list[dict[str, Any]] = []
    psfs: dict[int | None, Any] = {}
    measured = None
    timings = {"estimate_s": 0.0, "sr_s": 0.0, "write_s": 0.0}
    for c in channels:  # the PSF of each channel, from its first time point
        hooks.check()
        optics, notes = _channel_optics(cfg, src, c)
        t0 = time.perf_counter()
        if cfg.psf3d is not None:
            psf, measured = _measured_psf(cfg, pixel, z_step)
        else:
            psf = axial_estimate.estimate_psf3d(src.data[unit_index(0, c)], pixel_um=pixel, z_step_um=z_step,
                                                optics=optics or None, seed=cfg.seed, device=cfg.device,
                                                threads=cfg.threads, callback=hooks.callback, cancel=hooks.cancel)
        timings["estimate_s"] += time.perf_counter() - t0
        psfs[c] = psf
        psf_path = files["psf"][0 if c is None else c]
        written.append(write_psf3d(psf_path, psf))
        record_channels.append({"channel": c, "axial_fwhm_um": round(float(psf.axial_fwhm_um), 4),
                                "lateral_fwhm_um": _fwhm_list(psf), "confidence": round(float(psf.confidence), 4),
                                "method": psf.method, "notes": list(psf.notes), "qc": psf.qc, "optics": optics,
                                "optics_notes": notes, "psf_file": psf_path.name, "sr": []})
    warnings_all: list[str] = []
    # The deconvolution takes a whole measured PSF on the stack's own pixel only; elsewhere its separable form,
    # resampled to the stack's pixel, serves.
    same_grid = measured is not None and math.isclose(measured[1], pixel, rel_tol=0.02)
    if measured is not None and not same_grid and cfg.axial_method == "deconvolve":
        notices.append(f"the measured PSF's pixel ({measured[1]:g} µm) is not the stack's ({pixel:g} µm): "
                       "deconvolved with its separable form resampled to the stack's pixel")
    output = files["volume"]
    if output is not None:
        nz = shape[axes.index("Z")]
        nz_out = output_planes(nz, factor)
        out_shape = tuple(nz_out if a == "Z" else n for a, n in zip(axes, shape))
        dtype = np.dtype(src.data.dtype)
        value_span = None if np.issubdtype(dtype, np.integer) else value_range(src.data, axes.index("Z"))
        with _scratch(output.parent, stem, out_shape) as canvas:
            for c, entry in zip(channels, record_channels):
                for t in range(n_times):
                    hooks.check()
                    t0 = time.perf_counter()
                    kw: dict[str, Any] = {}
                    if measured is not None and cfg.axial_method == "deconvolve" and same_grid:
                        kw["psf3d"] = measured
                    with warnings.catch_warnings():  # said once, in the record and the command's lines
                        warnings.simplefilter("ignore", UnsafeSRWarning)
                        res = isotropic.super_resolve_axial(
                            src.data[unit_index(t, c)], psfs[c], z_factor=factor, sr_method=cfg.axial_method,
                            seed=cfg.seed, device=cfg.device, threads=cfg.threads, out=canvas[unit_index(t, c)],
                            callback=hooks.callback, cancel=hooks.cancel, **kw)
                    timings["sr_s"] += time.perf_counter() - t0
                    warnings_all += [w for w in res.warnings if w not in warnings_all]
                    entry["sr"].append({"time": t if t_axis is not None else None, "sr_method": res.sr_method,
                                        "fell_back": bool(res.fell_back), "warnings": list(res.warnings),
                                        "notes": list(res.notes),
                                        "validation": res.validation})
            t0 = time.perf_counter()
            meta = src.meta.with_size_um("Z", z_step) if cfg.z_step is not None else src.meta
            meta = meta.with_size_um("X", pixel).with_size_um("Y", pixel) if cfg.hints.get("pixel_um") else meta
            plane = 3 if axes.endswith("S") else 2
            lead = out_shape[: len(out_shape) - plane]

            def pages() -> Any:
                for index in np.ndindex(*lead):
                    yield cast_like(np.asarray(canvas[index]), dtype, value_span)

            from ..stacks import write_like

            written.append(write_like(output, pages(), meta.scaled(1, z_factor=factor), out_shape, dtype))
            timings["write_s"] = time.perf_counter() - t0
        result.output, result.output_shape, result.output_dtype = output, out_shape, str(dtype)
    sr_used = sorted({s["sr_method"] for e in record_channels for s in e["sr"]})
    first = record_channels[0]
    one = len(record_channels) == 1
    record = {
        "input": str(path), "axes": axes, "shape": list(shape),
        "axial_fwhm_um": first["axial_fwhm_um"] if one else [e["axial_fwhm_um"] for e in record_channels],
        "lateral_fwhm_um": first["lateral_fwhm_um"] if one else [e["lateral_fwhm_um"] for e in record_channels],
        "confidence": first["confidence"] if one else [e["confidence"] for e in record_channels],
        "method": first["method"] if one else [e["method"] for e in record_channels],
        "notes": list(dict.fromkeys([*(n for e in record_channels for n in e["notes"]),
                                     *(n for e in record_channels for s in e["sr"] for n in s["notes"])])),
        "pixel_um": pixel, "z_step_um": z_step, "z_step_out_um": z_step / factor if output is not None else None,
        "z_factor": factor if output is not None else None, "sr_method_requested": cfg.axial_method,
        "sr_method": (sr_used[0] if len(sr_used) == 1 else sr_used) if output is not None else None,
        "warnings": warnings_all, "notices": notices,
        "validation": [s["validation"] for e in record_channels for s in e["sr"]],
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "outputs": {"volume": None if output is None else output.name, "psf": [p.name for p in files["psf"]]},
        "channels": record_channels, "settings": _settings(cfg),
    }
    written.append(write_json(files["record"], _plain(record)))
    total = round(time.perf_counter() - start, 3)
    result.axial = record
    result.rows = [row(cfg, path, channel="" if e["channel"] is None else e["channel"], status=Status.OK,
                       estimator=f"axial {e['method']}", sr_method=record["sr_method"] if output is not None else None,
                       scale=record["z_factor"], confidence=e["confidence"], seconds=total,
                       output="" if output is None else output.name, axial_fwhm_um=e["axial_fwhm_um"],
                       lateral_fwhm_um="×".join(f"{v:g}" for v in e["lateral_fwhm_um"]), z_step_um=z_step,
                       z_step_out_um=record["z_step_out_um"], psf_method=e["method"])
                   for e in record_channels]


def _settings(cfg: BatchConfig) -> dict[str, Any]:
    """The run's inputs as the record keeps them (what reruns it)."""
    keep = ("axial_method", "z_step", "z_factor", "psf3d", "hints", "file_hints", "axes", "device", "seed", "threads",
            "overwrite")
    settings = asdict(cfg)
    return {k: settings[k] for k in keep}


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays, paths and tuples made JSON's own types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value
