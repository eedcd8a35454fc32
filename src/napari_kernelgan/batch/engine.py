"""One input, start to end: the image files a run takes (:func:`expand_inputs`), and estimating,
super-resolving slice by slice and writing the outputs of one of them (:func:`run_input`)."""
from __future__ import annotations

import glob
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadOptionError
from ..slices import SliceDone, iter_slices
from ..stacks import IMAGE_SUFFIXES, open_image, output_suffix, stem_of
from ..vocabulary import Status
from .outputs import write_estimate, write_field, write_output
from .summary import kernel_row, row
from .work import Hooks, InputStack, InputWork

if TYPE_CHECKING:
    from .config import BatchConfig, InputResult

__all__ = ["expand_inputs", "run_input"]

_RESULT_NAME = re.compile(r"_sr_x\d+_[^.]+\.")  # STEM_sr_x2_METHOD.EXT, as output_path names results
_AXIAL_RESULT = re.compile(r"_(isotropic|psf3d)\.")  # STEM_isotropic.EXT and STEM[_cK]_psf3d.tif of axial runs


def expand_inputs(inputs: Sequence[str | os.PathLike], out: Path | None = None, *, axial: bool = False) -> list[Path]:
    """Files, folders (their images, not recursing) and glob patterns → image paths, in order and once each.

    A name that is neither an existing folder nor a pattern is kept as it is (it fails on reading,
    with its own error); a pattern that matches nothing is an error. Folders and patterns leave out the
    files inside ``out``, so results are never taken as inputs; without ``out`` (results beside their
    inputs) they leave out earlier results by their names (``STEM_sr_xS_METHOD``; with ``axial`` also
    ``STEM_isotropic`` and ``STEM_psf3d``).
    """
    out_dir = Path(out).resolve() if out is not None else None

    def wanted(p: Path) -> bool:
        if out_dir is None:
            return not _RESULT_NAME.search(p.name) and not (axial and _AXIAL_RESULT.search(p.name))
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


def output_path(cfg: BatchConfig, path: Path, stem: str, meta: Any) -> Path:
    """Where the super-resolved ``path`` goes: ``cfg.output``, else ``STEM_sr_xS_METHOD.EXT``."""
    if cfg.output is not None:
        return cfg.output
    return cfg.out_dir(path) / f"{stem}_sr_x{cfg.scale}_{cfg.sr_method}{output_suffix(path, meta)}"


def run_input(path: Path, stem: str, cfg: BatchConfig, result: InputResult, written: list[Path],
              hooks: Hooks) -> None:
    """Estimate (unless the kernel is known), super-resolve and write one input (the body of
    :func:`~napari_kernelgan.batch.process_input`); the result's rows, output and kernels are set on
    ``result``."""
    start = time.perf_counter()
    src = open_image(path, cfg.axes, channel_axis=cfg.channel_axis, stack_axis=cfg.stack_axis)
    stack = InputStack(src)
    work = InputWork(cfg, stack, hooks)
    result.sr_runs = work.sr_runs
    out = cfg.out_dir(path)
    output = None
    if cfg.sr_method is None:
        for index in stack.indices if cfg.per_slice else []:
            work.estimate_slice(index)
    else:
        output = output_path(cfg, path, stem, src.meta)
        slices = (item.result for item in iter_slices(stack.stream, work.super_resolve_slice, check=hooks.check)
                  if isinstance(item, SliceDone))
        written.append(write_output(output, src, stack.channel, stack.stack_axes, slices, cfg.scale))
        result.output_shape = tuple(n * cfg.scale if a in "YX" else n for a, n in zip(src.meta.axes, src.data.shape))
        result.output_dtype = str(src.data.dtype)
    for unit, (est, kmap) in work.estimates.items():
        suffix = unit.name(sep="_")
        if cfg.kernel_files == "mat" and output is not None:
            from ..io import write_kernel

            kpath = output.with_name(f"{stem_of(output)}{f'_{suffix}' if suffix else ''}_kernel_x{cfg.scale}.mat")
            written.append(write_kernel(kpath, est.kernel_for(cfg.scale)))
        else:
            write_estimate(out, f"{stem}_{suffix}" if suffix else stem, est, cfg.scales, written,
                           hints=work.hints[unit.channel][1])
        if kmap is not None:
            write_field(out, f"{stem}_{suffix}" if suffix else stem, kmap, written)
    total = time.perf_counter() - start
    name = output.name if output is not None else ""
    kernels = work.kernels
    result.rows = [row(cfg, path, slice=unit.slice, channel="" if unit.channel is None else unit.channel,
                       status=Status.OK, **kernel_row(est), output=name,
                       seconds=round(work.seconds.get(unit, total) if cfg.per_slice else total, 3))
                   for unit, est in kernels.items()]
    result.output = output
    result.hints = {unit.name(sep="_"): work.hints[unit.channel][1] for unit in work.estimates}
    if cfg.keep_results:
        result.estimates = [(unit.name(sep="_"), est) for unit, est in kernels.items() if cfg.kernel is None]
        result.kernel_map = next((f for _, f in work.estimates.values() if f is not None), None)
