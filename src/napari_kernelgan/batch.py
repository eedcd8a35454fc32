"""The batch engine: kernels and super-resolved images for many files, resumable, serial or on Dask.

One input (a TIFF stack, PNG or JPEG) is one task (:func:`process_input`): it is read with its axes
and pixel sizes (:mod:`.stacks`), gets one kernel per stack or one per slice, is super-resolved slice
by slice into a file of its own format, and ends with a manifest written last, atomically, that lists
every output with its size and SHA-256. A rerun skips an input whose manifest matches the run's
settings, the input's size and time, and outputs that still hash the same. Every file is written
through :func:`.io.atomic_path`, so a run killed at any point leaves no truncated output, and a file
that fails is recorded (with its error) while the others go on. :func:`run_batch` runs the tasks in
this process or on a Dask cluster (``napari-kernelgan[dask]``); each task is seeded, so both give
the same files; :func:`map_tasks` is that executor for any function (the benchmarks run on it). The run's
table goes to ``summary.csv`` and ``summary.json`` (:func:`write_summary`).
:func:`iter_batch` is the serial run as a generator of progress reports, for a GUI's worker thread; a
``cancel`` event stops a run between inputs and slices (and at the next progress report inside one),
removing the interrupted input's files. ``sr`` and ``blind-sr`` run through here too: a known kernel
(``BatchConfig.kernel``) instead of an estimate, results beside each input (``out=None``) or at one
``output`` path.
"""
from __future__ import annotations

import contextlib
import csv
import functools
import glob
import hashlib
import io
import json
import logging
import mmap
import os
import re
import time
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import (
    BadInputError,
    BadOptionError,
    Cancelled,
    KernelGANError,
    OutputError,
    WeightsMissingError,
    user_message,
)
from .imaging import MIN_SIZE, sample_indices, stack_intensity
from .stacks import CHANNEL_AXES, IMAGE_SUFFIXES, ImageSource, channel_index, open_image, output_suffix, stem_of

if TYPE_CHECKING:
    import threading

    from .types import KernelEstimate, Progress

__all__ = ["BatchConfig", "InputResult", "BatchResult", "SUMMARY_COLUMNS", "expand_inputs", "process_input",
           "run_batch", "iter_batch", "map_tasks", "dask_client", "write_summary", "write_estimate",
           "write_field", "save_kernel_plot", "all_or_nothing", "SINGLE_THREAD_ENV"]

MANIFEST_SUFFIX = "_manifest.json"
MANIFEST_FORMAT = 1
SUMMARY_COLUMNS = ("file", "slice", "channel", "status", "estimator", "sr_method", "scale", "kernel_size",
                   "sigma_major", "sigma_minor", "orientation_deg", "confidence", "seconds", "output", "error")


# ----------------------------------------------------------------------------- output files


@contextlib.contextmanager
def all_or_nothing() -> Iterator[list[Path]]:
    """Collect the paths written in the block; if the block fails or is interrupted, remove them.

    Each file is already written atomically (:func:`.io.atomic_path`); this makes the set of
    files for one input atomic too, so an interrupted run leaves no half set behind (a file
    this run had already replaced goes as well: a mixed old/new set would be worse).
    """
    written: list[Path] = []
    try:
        yield written
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                Path(path).unlink()
        raise


def save_kernel_plot(path: Path, kernel: np.ndarray, title: str) -> Path:
    """PNG of the kernel with a colour bar, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_path

    fig, ax = plt.subplots(figsize=(3.6, 3.2), dpi=120)
    try:
        im = ax.imshow(kernel, cmap="magma", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


def _write_json(path: Path, record: Any) -> Path:
    from .io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return path


def write_estimate(out: Path, stem: str, est: KernelEstimate, scales: Sequence[int],
                   written: list[Path] | None = None) -> list[Path]:
    """Kernel .mat/.npy per scale, a kernel plot, the D-map TIFF (if any) and a JSON record.

    Paths are appended to ``written`` as each file lands (see :func:`all_or_nothing`); returns them.
    """
    from .io import write_image, write_kernel

    written = [] if written is None else written
    for s in scales:
        k = est.kernel_for(s)
        for suffix in (".mat", ".npy"):
            written.append(write_kernel(out / f"{stem}_kernel_x{s}{suffix}", k))
        written.append(save_kernel_plot(out / f"{stem}_kernel_x{s}.png", k, f"{stem} kernel ×{s}"))
    if est.dmap is not None:
        written.append(write_image(out / f"{stem}_dmap.tif", est.dmap.astype(np.float32)))
    record = {k: v for k, v in est.metadata(max(scales)).items() if k != "kernel"}
    written.append(_write_json(out / f"{stem}_kernel.json", record))
    return written


def write_field(out: Path, stem: str, field: Any, written: list[Path]) -> list[Path]:
    """A kernel map: the field (.npz), its per-pixel maps (one float32 TIFF, a page per map, names and
    units in the JSON record) and a plot of the tile kernels at their places."""
    from .fields import MAP_NAMES
    from .io import write_image

    written.append(field.save(out / f"{stem}_kernel_map.npz"))
    maps = field.maps()
    written.append(write_image(out / f"{stem}_kernel_map.tif", np.stack([maps[n] for n in MAP_NAMES]),
                               metadata={"axes": "QYX", "Labels": list(MAP_NAMES)}))
    written.append(save_kernel_plot(out / f"{stem}_kernel_map.png", field.mosaic(field.kernels.shape[-1] + 2),
                                    f"{stem} kernel map ({field.grid[0]}×{field.grid[1]} tiles)"))
    units = {"width_major": "input px (σ)", "width_minor": "input px (σ)", "orientation": "degrees from +x towards +y",
             "anisotropy": "1 - minor/major", "confidence": "0-1"}
    written.append(_write_json(out / f"{stem}_kernel_map.json",
                               {**field.metadata(), "maps": list(MAP_NAMES), "map_units": units}))
    return written


# ----------------------------------------------------------------------------- configuration and results


@dataclass
class BatchConfig:
    """What a run does to every input. ``sr_method=None``: kernels only (``estimate``).

    ``out=None`` writes each input's results beside it, and ``output`` names the super-resolved file
    of a run of one input (``sr`` and ``blind-sr``). ``kernel``: a kernel file (or a kernel map,
    ``.npz``) used for every input instead of estimating one (``sr``; ``estimator`` is then unused).
    ``kernel_files``: ``"all"`` writes each kernel as .mat, .npy, a plot and a JSON record;
    ``"mat"`` writes only ``<output stem>_kernel_xS.mat`` beside the super-resolved file (``blind-sr``).
    ``axes`` names the axes of files without OME or ImageJ metadata (``channel_axis`` /
    ``stack_axis`` are the API's older way to say it); ``per_slice`` gives every slice of a stack
    its own kernel instead of one per stack; ``per_channel`` gives every channel its own kernel
    (the blur differs with the wavelength) instead of one shared by all channels. ``threads`` is
    PyTorch's per task: 1 by default, so a result does not depend on how many tasks run at once.
    """

    out: Path | None
    scale: int = 2
    estimator: str = "auto"
    estimator_options: dict[str, Any] = field(default_factory=dict)
    sr_method: str | None = "closed-form"
    sr_options: dict[str, Any] = field(default_factory=dict)
    axes: str | None = None
    per_slice: bool = False
    per_channel: bool = False
    device: str = "auto"
    seed: int = 0
    threads: int | None = 1
    channel_axis: int | None = None
    stack_axis: int | None = None
    kernel_map: bool = False
    tile: int | None = None
    overlap: int = 32
    resume: bool = True
    keep_results: bool = False  # hand the estimates and kernel maps back (the estimate command prints them)
    kernel: Path | None = None
    output: Path | None = None
    kernel_files: str = "all"

    def __post_init__(self) -> None:
        self.out = None if self.out is None else Path(self.out)
        self.kernel = None if self.kernel is None else Path(self.kernel)
        self.output = None if self.output is None else Path(self.output)
        if self.kernel_map and self.per_slice:
            raise BadOptionError("a kernel map is made per image or per stack, not with per-slice kernels")
        if self.kernel_files not in ("all", "mat"):
            raise BadOptionError(f"kernel_files must be 'all' or 'mat', not {self.kernel_files!r}")
        if self.kernel is not None and self.sr_method is None:
            raise BadOptionError("a known kernel is for super-resolution: give an SR method")

    def out_dir(self, path: Path) -> Path:
        """Where the results of input ``path`` go."""
        return path.parent if self.out is None else self.out

    def key(self) -> str:
        """A digest of every setting that changes an output (a manifest of other settings is not reused)."""
        settings = {k: v for k, v in asdict(self).items() if k not in ("out", "resume", "keep_results")}
        if self.kernel is not None and self.kernel.is_file():  # the kernel's content, not only its name
            settings["kernel_sha256"] = _sha256(self.kernel)
        from . import __version__

        text = json.dumps({**settings, "version": __version__}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def scales(self) -> list[int]:
        return [2] if self.scale == 2 else [2, self.scale]


@dataclass
class InputResult:
    """What became of one input: its summary ``rows``, the files written and, for a failure, the
    ``error`` and what it is about (``error_path``: the input, the output folder, or ``None``)."""

    path: Path
    stem: str
    status: str  # "ok", "skipped" (finished before: outputs verified) or "failed"
    rows: list[dict[str, Any]]
    written: list[Path] = field(default_factory=list)
    error: str = ""
    error_path: str | None = None
    seconds: float = 0.0
    estimates: list[tuple[str, KernelEstimate]] = field(default_factory=list)
    kernel_map: Any = None
    output: Path | None = None
    output_shape: tuple[int, ...] = ()
    output_dtype: str = ""
    sr_runs: list[dict[str, Any]] = field(default_factory=list)  # per slice: SRResult.metadata() without the kernel

    @property
    def failed(self) -> bool:
        return self.status == "failed"


@dataclass
class BatchResult:
    """A run: one :class:`InputResult` per input, in input order, and the summary files (if written)."""

    results: list[InputResult]
    seconds: float
    summary: list[Path] = field(default_factory=list)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for r in self.results for row in r.rows]

    @property
    def failed(self) -> list[InputResult]:
        return [r for r in self.results if r.failed]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def counts(self) -> dict[str, int]:
        """How many inputs were done (``ok``), ``skipped`` (finished before) and ``failed``."""
        return {s: sum(r.status == s for r in self.results) for s in ("ok", "skipped", "failed")}

    def tally(self) -> str:
        """``"3 done, 1 skipped (finished before), 0 failed"``: the run in words, as the command and the
        widget end with."""
        c = self.counts
        return f"{c['ok']} done, {c['skipped']} skipped (finished before), {c['failed']} failed"


# ----------------------------------------------------------------------------- inputs


_RESULT_NAME = re.compile(r"_sr_x\d+_[^.]+\.")  # STEM_sr_x2_METHOD.EXT, as _output_path names results


def expand_inputs(inputs: Sequence[str | os.PathLike], out: Path | None = None) -> list[Path]:
    """Files, folders (their images, not recursing) and glob patterns → image paths, in order and once each.

    A name that is neither an existing folder nor a pattern is kept as it is (it fails on reading,
    with its own error); a pattern that matches nothing is an error. Folders and patterns leave out the
    files inside ``out``, so results are never taken as inputs; without ``out`` (results beside their
    inputs) they leave out earlier results by their names (``STEM_sr_xS_METHOD``).
    """
    out_dir = Path(out).resolve() if out is not None else None

    def wanted(p: Path) -> bool:
        if out_dir is None:
            return not _RESULT_NAME.search(p.name)
        return out_dir not in p.resolve().parents

    paths: list[Path] = []
    for item in inputs:
        text = str(item)
        if Path(text).is_dir():
            found = sorted(p for p in Path(text).iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise BadOptionError(f"no image file matches {text}")
        else:
            paths.append(Path(text))
            continue
        paths += [p for p in found if wanted(p)]
    unique = list(dict.fromkeys(paths))
    stems: dict[str, Path] = {}
    for p in unique:
        other = stems.setdefault(stem_of(p), p)
        if other != p:
            raise BadOptionError(f"{other} and {p} would write the same outputs; rename one or run them into "
                                 "separate output folders")
    return unique


# ----------------------------------------------------------------------------- one input


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest_path(cfg: BatchConfig, path: Path, stem: str) -> Path:
    return cfg.out_dir(path) / f"{stem}{MANIFEST_SUFFIX}"


def _input_identity(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def finished_before(path: Path, stem: str, cfg: BatchConfig) -> dict[str, Any] | None:
    """The manifest of ``path`` if this input was finished with these settings and every output it lists
    is still there, unchanged (size, then SHA-256); else ``None`` (the input is done again)."""
    manifest = _manifest_path(cfg, path, stem)
    out = cfg.out_dir(path)
    try:
        record = json.loads(manifest.read_text())
        if (record.get("format") != MANIFEST_FORMAT or record.get("config") != cfg.key()
                or record.get("input") != _input_identity(path)):
            return None
        for name, expected in record["outputs"].items():
            target = out / name
            if target.stat().st_size != expected["bytes"] or _sha256(target) != expected["sha256"]:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record


def _kernel_row(est: Any) -> dict[str, Any]:
    """The summary columns of a kernel: an estimate, a known kernel (array) or a kernel map (none)."""
    from .physics.metrics import covariance_axes, second_moments

    kernel = getattr(est, "kernel", est)
    if not isinstance(kernel, np.ndarray) or kernel.ndim != 2:
        return {"estimator": "kernel map"}
    major, minor, theta = covariance_axes(second_moments(kernel))
    confidence = getattr(est, "confidence", None)
    return {"estimator": getattr(est, "method", "known kernel"), "kernel_size": int(kernel.shape[0]),
            "sigma_major": round(float(major), 4), "sigma_minor": round(float(minor), 4),
            "orientation_deg": round(float(theta), 2),
            "confidence": None if confidence is None else round(float(confidence), 4)}


def _row(cfg: BatchConfig, path: Path, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(SUMMARY_COLUMNS, None)
    row.update(file=str(path), slice="", channel="", estimator=cfg.estimator, sr_method=cfg.sr_method, scale=cfg.scale,
               error="")
    row.update(values)
    return row


class _Stack:
    """An opened input seen as units: one (C?, Y, X) frame per index of its stack axes, in file order."""

    def __init__(self, src: ImageSource) -> None:
        axes = src.meta.axes
        self.src = src
        self.channel = channel_index(axes)
        self.stack_axes = [i for i, a in enumerate(axes) if a not in CHANNEL_AXES + "YX"]
        self.perm = [*self.stack_axes, *([] if self.channel is None else [self.channel]),
                     axes.index("Y"), axes.index("X")]
        self.canon = np.transpose(src.data, self.perm)  # a view: a memory-mapped file is not read here
        h, w = self.canon.shape[-2:]
        if min(h, w) < MIN_SIZE:  # before the range: a tiny image is refused for its size, whatever it holds
            raise BadInputError(f"the image is {h}×{w} pixels; at least {MIN_SIZE}×{MIN_SIZE} is needed")
        self.indices = list(np.ndindex(*self.canon.shape[: len(self.stack_axes)]))
        self.n_channels = 1 if self.channel is None else int(self.canon.shape[len(self.stack_axes)])
        frame_pixels = int(np.prod(self.canon.shape[len(self.stack_axes):]))
        self.sample = [self.indices[i] for i in sample_indices(len(self.indices), frame_pixels=frame_pixels)]
        self.intensity = stack_intensity(src.data, (self.canon[i] for i in self.sample))

    def label(self, index: tuple[int, ...]) -> str:
        axes = self.src.meta.axes
        return "_".join(f"{axes[a].lower()}{i}" for a, i in zip(self.stack_axes, index))

    def unit(self, index: tuple[int, ...]) -> np.ndarray:
        """The frame at ``index`` in [0, 1] on the whole stack's scale (float32)."""
        frame = self.intensity.to_unit(np.asarray(self.canon[index]))
        # Pages of a mapped file read so far would count as this process's memory until unmapped:
        # drop them (they stay in the page cache; nothing else is lost).
        mapped = getattr(self.src.data, "_mmap", None)
        if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
            with contextlib.suppress(OSError, ValueError):
                mapped.madvise(mmap.MADV_DONTNEED)
        return frame

    def streams_in_order(self) -> bool:
        """Whether the frames, processed in order, give the output's TIFF pages in file order (the channel
        axis, if any, is the last before the plane or the samples after it)."""
        axes = self.src.meta.axes
        return self.channel is None or axes.endswith("S") or self.channel == max(self.stack_axes + [self.channel])


@dataclass
class _Hooks:
    """What a caller follows a run by: ``callback`` gets the estimators' and SR methods' progress, ``cancel``
    stops the run at the next report or between slices and inputs (raising :class:`~.errors.Cancelled`)."""

    callback: Callable[[Progress], Any] | None = None
    cancel: threading.Event | None = None

    def check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("cancelled by the caller")


def _api_kwargs(cfg: BatchConfig, stack: _Stack, stacked: bool, hooks: _Hooks,
                one_channel: bool = False) -> dict[str, Any]:
    channel = None if stack.channel is None or one_channel else (1 if stacked else 0)
    return {"device": cfg.device, "seed": cfg.seed, "threads": cfg.threads, "channel_axis": channel,
            "stack_axis": 0 if stacked else None, "callback": hooks.callback, "cancel": hooks.cancel}


def _known_kernel(cfg: BatchConfig) -> Any:
    """The kernel (array) or kernel map (:class:`~.fields.KernelField`, from ``.npz``) of ``cfg.kernel``."""
    if cfg.kernel.suffix.lower() == ".npz":
        from .fields import KernelField

        return KernelField.load(cfg.kernel)
    from .io import read_kernel

    return read_kernel(cfg.kernel)


def _estimate_stack(cfg: BatchConfig, stack: _Stack, hooks: _Hooks,
                    channel: int | None = None) -> tuple[KernelEstimate, Any]:
    """One kernel for the whole input, or for one ``channel`` of it (from the frames imaging.sample_indices
    picks), and its kernel map."""
    from .api import estimate_kernel

    stacked = len(stack.indices) > 1

    def unit(index: tuple[int, ...]) -> np.ndarray:
        frame = stack.unit(index)
        return frame if channel is None else frame[channel]

    data = np.stack([unit(i) for i in stack.sample]) if stacked else unit(stack.indices[0])
    kw = _api_kwargs(cfg, stack, stacked, hooks, one_channel=channel is not None)
    est = estimate_kernel(data, cfg.scale, estimator=cfg.estimator, **kw, **cfg.estimator_options)
    field = None
    if cfg.kernel_map:
        from .kernel_map import estimate_kernel_map

        field = estimate_kernel_map(data, cfg.scale, estimator=cfg.estimator, tile=cfg.tile, overlap=cfg.overlap,
                                    **kw, **cfg.estimator_options)
    return est, field


def _output_path(cfg: BatchConfig, path: Path, stem: str, meta: Any) -> Path:
    if cfg.output is not None:
        return cfg.output
    return cfg.out_dir(path) / f"{stem}_sr_x{cfg.scale}_{cfg.sr_method}{output_suffix(path, meta)}"


def _unit_label(label: str, channel: int | None, sep: str = " ") -> str:
    """How one kernel's unit is named: its slice (``z3``) and channel (``c1``), either or both or none."""
    return sep.join(part for part in (label, "" if channel is None else f"c{channel}") if part)


def _run_input(path: Path, stem: str, cfg: BatchConfig, result: InputResult, written: list[Path],
               hooks: _Hooks) -> None:
    """Estimate (unless the kernel is known), super-resolve and write one input (the body of
    :func:`process_input`)."""
    from .api import estimate_kernel, super_resolve

    start = time.perf_counter()
    src = open_image(path, cfg.axes, channel_axis=cfg.channel_axis, stack_axis=cfg.stack_axis)
    stack = _Stack(src)
    # A kernel per channel only where there are channels; otherwise one for all of them (None).
    channels: list[int | None] = (list(range(stack.n_channels)) if cfg.per_channel and stack.channel is not None
                                  else [None])
    # (slice label, channel) -> (estimate, kernel map): the kernels of this input, in the order they are made.
    estimates: dict[tuple[str, int | None], tuple[Any, Any]] = {}
    if cfg.kernel is not None:
        known = (_known_kernel(cfg), None)  # nothing to write: the kernel is the user's file
    elif not cfg.per_slice:
        for c in channels:
            estimates[("", c)] = _estimate_stack(cfg, stack, hooks, channel=c)
    seconds: dict[tuple[str, int | None], float] = {}

    def estimate_for(index: tuple[int, ...], c: int | None) -> Any:
        if cfg.kernel is not None:
            return known[0]
        key = (stack.label(index) if cfg.per_slice else "", c)
        if key not in estimates:
            frame = stack.unit(index)
            try:
                est = estimate_kernel(frame if c is None else frame[c], cfg.scale, estimator=cfg.estimator,
                                      **_api_kwargs(cfg, stack, False, hooks, one_channel=c is not None),
                                      **cfg.estimator_options)
            except KernelGANError as exc:
                where = _unit_label(*key)
                if not where:
                    raise
                raise type(exc)(f"{where}: {exc}") from exc
            estimates[key] = (est, None)
        return estimates[key][0]

    def super_resolve_unit(frame: np.ndarray, est: Any, c: int | None) -> np.ndarray:
        res = super_resolve(frame, est, cfg.scale, sr_method=cfg.sr_method,
                            **_api_kwargs(cfg, stack, False, hooks, one_channel=c is not None), **cfg.sr_options)
        result.sr_runs.append({k: v for k, v in res.metadata().items() if k != "kernel"})
        return res.image

    def frames() -> Iterator[np.ndarray]:
        """The output, frame by frame in file order (C?, sY, sX), each slice timed."""
        for index in stack.indices:
            hooks.check()
            frame = stack.unit(index)
            parts = []
            for c in channels:
                t0 = time.perf_counter()
                est = estimate_for(index, c)
                parts.append(super_resolve_unit(frame if c is None else frame[c], est, c))
                seconds[(stack.label(index), c)] = time.perf_counter() - t0
            image = parts[0] if channels == [None] else np.stack(parts)
            yield stack.intensity.from_unit(image, src.data.dtype)

    out = cfg.out_dir(path)
    output = None
    if cfg.sr_method is None:
        for index in stack.indices if cfg.per_slice else []:
            for c in channels:
                hooks.check()
                t0 = time.perf_counter()
                estimate_for(index, c)
                seconds[(stack.label(index), c)] = time.perf_counter() - t0
    else:
        output = _output_path(cfg, path, stem, src.meta)
        written.append(_write_output(output, stack, frames(), cfg.scale))
        result.output_shape = tuple(n * cfg.scale if a in "YX" else n for a, n in zip(src.meta.axes, src.data.shape))
        result.output_dtype = str(src.data.dtype)
    for (label, c), (est, kmap) in estimates.items():
        suffix = _unit_label(label, c, sep="_")
        if cfg.kernel_files == "mat" and output is not None:
            from .io import write_kernel

            kpath = output.with_name(f"{stem_of(output)}{f'_{suffix}' if suffix else ''}_kernel_x{cfg.scale}.mat")
            written.append(write_kernel(kpath, est.kernel_for(cfg.scale)))
        else:
            write_estimate(out, f"{stem}_{suffix}" if suffix else stem, est, cfg.scales, written)
        if kmap is not None:
            write_field(out, f"{stem}_{suffix}" if suffix else stem, kmap, written)
    total = time.perf_counter() - start
    name = output.name if output is not None else ""
    kernels = {key: pair[0] for key, pair in estimates.items()} or {("", None): known[0]}
    result.rows = [_row(cfg, path, slice=label, channel="" if c is None else c, status="ok", **_kernel_row(est),
                        output=name, seconds=round(seconds.get((label, c), total) if cfg.per_slice else total, 3))
                   for (label, c), est in kernels.items()]
    result.output = output
    if cfg.keep_results:
        result.estimates = [(_unit_label(label, c, sep="_"), est) for (label, c), est in kernels.items()
                            if cfg.kernel is None]
        result.kernel_map = next((f for _, f in estimates.values() if f is not None), None)


def _write_output(path: Path, stack: _Stack, frames: Iterator[np.ndarray], scale: int) -> Path:
    """The super-resolved input in its own format, axes and metadata (YX pixel size / ``scale``); a name the
    user chose with another suffix (``-o out.png`` for a TIFF) sets the format."""
    from .stacks import write_like

    src = stack.src
    axes = src.meta.axes
    shape = tuple(n * scale if a in "YX" else n for a, n in zip(axes, src.data.shape))
    meta = src.meta.scaled(scale)
    is_tiff = path.suffix.lower() in (".tif", ".tiff")
    if is_tiff != (meta.kind != "png"):
        meta = replace(meta, kind="tiff" if is_tiff else "png")
    if stack.streams_in_order():
        def pages() -> Iterator[np.ndarray]:
            for frame in frames:
                if stack.channel is None:
                    yield frame
                elif axes.endswith("S"):
                    yield np.moveaxis(frame, 0, -1)
                else:
                    yield from frame
        return write_like(path, pages(), meta, shape, src.data.dtype)
    # The channel axis is outside the stack axes in the file (e.g. OME's CZYX): assemble, then write.
    canon = np.stack(list(frames)).reshape(tuple(shape[a] for a in stack.perm))
    return write_like(path, np.transpose(canon, np.argsort(stack.perm)), meta, shape, src.data.dtype)


def _write_manifest(path: Path, stem: str, cfg: BatchConfig, result: InputResult, written: list[Path]) -> Path:
    # Outputs are named relative to the input's output folder (the manifest's own folder).
    outputs = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in written}
    record = {"format": MANIFEST_FORMAT, "file": str(path), "input": _input_identity(path), "config": cfg.key(),
              "outputs": outputs, "rows": result.rows}
    return _write_json(_manifest_path(cfg, path, stem), record)


def process_input(path: str | os.PathLike, cfg: BatchConfig, *, catch_bugs: bool = True,
                  callback: Callable[[Progress], Any] | None = None,
                  cancel: threading.Event | None = None) -> InputResult:
    """Do one input: skip it if finished before (verified), else estimate, super-resolve and write its
    outputs, then its manifest. Errors are recorded on the result, never raised, except bugs when
    ``catch_bugs`` is off, interruptions and :class:`~.errors.Cancelled` (``cancel`` set; the input's files
    are removed). ``callback`` gets the estimator's and SR method's progress reports."""
    path = Path(path)
    stem = stem_of(path)
    start = time.perf_counter()
    result = InputResult(path, stem, "ok", [])
    hooks = _Hooks(callback, cancel)
    hooks.check()
    if cfg.resume and path.is_file():
        record = finished_before(path, stem, cfg)
        if record is not None:
            out = cfg.out_dir(path)
            result.status = "skipped"
            result.rows = [{**row, "status": "skipped"} for row in record["rows"]]
            result.written = [out / name for name in record["outputs"]]
            output = next((row["output"] for row in record["rows"] if row.get("output")), None)
            result.output = None if output is None else out / output
            return result
    try:
        with all_or_nothing() as written:
            _run_input(path, stem, cfg, result, written, hooks)
            if cfg.resume:
                _write_manifest(path, stem, cfg, result, written)
        result.written = written
    except Cancelled:
        raise
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            if not catch_bugs:
                raise
            message = f"internal error: {type(exc).__name__}: {exc}"
            logging.getLogger(__name__).error("%s: %s", path, "".join(traceback.format_exception(exc)))
        result.status, result.error = "failed", message
        result.error_path = (None if isinstance(exc, WeightsMissingError) else
                             str(cfg.output or cfg.out_dir(path)) if isinstance(exc, OutputError) else str(path))
        result.rows = [_row(cfg, path, status="failed", error=message)]
    result.seconds = time.perf_counter() - start
    if result.failed:
        result.rows[0]["seconds"] = round(result.seconds, 3)
    return result


# ----------------------------------------------------------------------------- a run


# One BLAS/OpenMP thread per local worker too: the workers share the cores among themselves.
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}(\.[^.]+)?$")  # io.atomic_path's names: .STEM.XXXXXXXX.SUFFIX


def remove_stale_temporaries(out: Path | None) -> None:
    """Remove the temporary files a killed run left in ``out`` (a process killed with SIGKILL cannot); at the
    start of a run, when none of its own exist yet. Two runs must not share an output folder at once."""
    if out is None or not out.is_dir():  # beside the inputs: their folders are not the run's to clean
        return
    for path in out.glob(".*"):
        if _TEMPORARY.match(path.name) and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client: on the cluster at ``scheduler``, or on ``workers`` local processes of one thread
    each, on the loopback interface only and without a dashboard."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise BadOptionError("--workers and --scheduler need Dask: pip install 'napari-kernelgan[dask]'") from exc
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise BadOptionError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        with client:
            yield client
        return
    # The scheduler's HTTP routes (health, metrics) listen anyway: on a free port, not 8787, which another
    # cluster on this machine may hold.
    http = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
    import dask

    # Dask starts its workers with MALLOC_TRIM_THRESHOLD_=65536, so that memory goes back to the system
    # at once; every large numpy or torch buffer then costs page faults, and two such workers on two
    # cores processed files no faster than one plain process (benchmarks/batch_benchmark.py). The
    # workers start with glibc's own allocator settings, as the serial run has, and one BLAS/OpenMP
    # thread each.
    defaults = dask.config.get("distributed.nanny.pre-spawn-environ", {})
    spawn_env = {**{k: v for k, v in defaults.items() if k != "MALLOC_TRIM_THRESHOLD_"}, **SINGLE_THREAD_ENV}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env}), \
            LocalCluster(n_workers=int(workers or 1), threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=None, scheduler_kwargs=http, silence_logs=logging.ERROR,
                         env=dict(SINGLE_THREAD_ENV)) as cluster, \
            Client(cluster) as client:
        yield client


def map_tasks(fn: Callable[[Any], Any], items: Iterable[Any], *, workers: int | None = None,
              scheduler: str | None = None) -> Iterator[tuple[int, Any | BaseException]]:
    """``(index, fn(item))`` for every item: in this process, in order, when neither ``workers`` nor
    ``scheduler`` is given; else one task per item on :func:`dask_client`, yielded as they complete.

    A task that raises (or is lost with its worker) yields its exception instead of a result, and the
    others go on. ``fn`` and the items must pickle for Dask; a function of a script's ``__main__`` is
    sent by value. Leaving the loop early stops the local cluster with the tasks still running.
    """
    if workers is None and scheduler is None:
        for i, item in enumerate(items):
            try:
                yield i, fn(item)
            except Exception as exc:
                yield i, exc
        return
    with dask_client(workers, scheduler) as client:
        from distributed import as_completed

        # pure=False: equal items are still separate tasks (seeded runs, files written as a side effect)
        futures = {client.submit(fn, item, pure=False): i for i, item in enumerate(items)}
        for future in as_completed(futures):
            try:
                value = future.result()
            except Exception as exc:
                value = exc
            yield futures[future], value


def _failed(path: Path, cfg: BatchConfig, message: str) -> InputResult:
    result = InputResult(path, stem_of(path), "failed", [_row(cfg, path, status="failed", error=message)],
                         error=message, error_path=str(path))
    return result


def _paths(inputs: Sequence[str | os.PathLike], cfg: BatchConfig) -> list[Path]:
    paths = expand_inputs(inputs, cfg.out)
    if cfg.output is not None and len(paths) != 1:
        raise BadOptionError(f"output= names the result of one input, and {len(paths)} inputs were given; leave "
                             "it out to write each result beside its input")
    remove_stale_temporaries(cfg.out)
    return paths


def _finish(cfg: BatchConfig, results: list[InputResult], start: float, summary: bool) -> BatchResult:
    batch = BatchResult(results, time.perf_counter() - start)
    if summary and cfg.out is not None:
        batch.summary = write_summary(cfg, batch)
    return batch


def iter_batch(inputs: Sequence[str | os.PathLike], cfg: BatchConfig, *,
               on_result: Callable[[InputResult], Any] | None = None, summary: bool = True,
               catch_bugs: bool = True, callback: Callable[[Progress], Any] | None = None,
               cancel: threading.Event | None = None) -> Generator[Progress, None, BatchResult]:
    """:func:`run_batch` in this process as a generator: a progress report before the first input and after
    each; returns the :class:`BatchResult`. ``cancel`` stops the run (raising :class:`~.errors.Cancelled`)
    between inputs and slices and at the estimators' next report; finished inputs keep their files."""
    from .types import Progress

    start = time.perf_counter()
    paths = _paths(inputs, cfg)
    hooks = _Hooks(callback, cancel)
    results: list[InputResult] = []
    for i, path in enumerate(paths):
        hooks.check()
        yield Progress(i, len(paths), time.perf_counter() - start, stage="batch", message=path.name)
        result = process_input(path, cfg, catch_bugs=catch_bugs, callback=callback, cancel=cancel)
        results.append(result)
        if on_result is not None:
            on_result(result)
    yield Progress(len(paths), len(paths), time.perf_counter() - start, stage="batch", message="")
    return _finish(cfg, results, start, summary)


def run_batch(inputs: Sequence[str | os.PathLike], cfg: BatchConfig, *, workers: int | None = None,
              scheduler: str | None = None, progress: Callable[[Progress], Any] | None = None,
              on_result: Callable[[InputResult], Any] | None = None, summary: bool = True,
              catch_bugs: bool = True, callback: Callable[[Progress], Any] | None = None) -> BatchResult:
    """Process every input (files, folders, glob patterns) with ``cfg``; one failing input does not stop the
    others. ``workers`` / ``scheduler``: run on Dask (a local cluster, or the one at that address).
    ``progress`` gets a report per input done, ``on_result`` each input's result as it completes,
    ``callback`` (in this process only) the estimators' and SR methods' own reports. With ``summary``,
    ``summary.csv`` and ``summary.json`` are written to ``cfg.out`` at the end."""
    if workers is None and scheduler is None:
        gen = iter_batch(inputs, cfg, on_result=on_result, summary=summary, catch_bugs=catch_bugs,
                         callback=callback)
        while True:
            try:
                report = next(gen)
            except StopIteration as stop:
                return stop.value
            if progress is not None and report.iteration > 0:  # per input done, as on Dask
                progress(report)
    from .types import Progress

    start = time.perf_counter()
    paths = _paths(inputs, cfg)
    results: list[InputResult | None] = [None] * len(paths)
    task = functools.partial(process_input, cfg=cfg)
    for i, value in map_tasks(task, paths, workers=workers, scheduler=scheduler):
        if isinstance(value, BaseException):  # process_input records its own errors: the task itself was lost
            result = _failed(paths[i], cfg, f"the task was lost on the cluster: {type(value).__name__}: {value}")
        else:
            result = value
        results[i] = result
        if on_result is not None:
            on_result(result)
        if progress is not None:
            finished = sum(r is not None for r in results)
            progress(Progress(finished, len(paths), time.perf_counter() - start, stage="batch",
                              message=result.path.name))
    return _finish(cfg, [r for r in results if r is not None], start, summary)


def write_summary(cfg: BatchConfig, batch: BatchResult) -> list[Path]:
    """``summary.csv`` (a row per input, or per slice with per-slice kernels) and ``summary.json`` (the
    same rows, the settings and the totals) in ``cfg.out``, atomically."""
    from .io import atomic_path

    rows = batch.rows
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    csv_path = cfg.out / "summary.csv"
    with atomic_path(csv_path) as tmp:
        tmp.write_text(buffer.getvalue())
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("keep_results",)}
    record = {"settings": settings, "inputs": len(batch.results), **batch.counts, "seconds": round(batch.seconds, 3),
              "rows": rows}
    json_path = _write_json(cfg.out / "summary.json", json.loads(json.dumps(record, default=str)))
    return [csv_path, json_path]
