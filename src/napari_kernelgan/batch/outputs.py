"""The files a run writes for one input: kernels (.mat, .npy, a plot, a JSON record), kernel maps and the
super-resolved image, each atomically (:func:`~napari_kernelgan.io.atomic_path`); :func:`all_or_nothing`
makes the set of them atomic too. The ``estimate`` and ``demo`` commands write through here as well."""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..types import KernelEstimate

__all__ = ["all_or_nothing", "save_kernel_plot", "write_json", "write_estimate", "write_field", "write_output"]


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

    from ..io import atomic_path

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


def write_json(path: Path, record: Any) -> Path:
    """``record`` as indented JSON, atomically."""
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return path


def write_estimate(out: Path, stem: str, est: KernelEstimate, scales: Sequence[int],
                   written: list[Path] | None = None, hints: dict[str, Any] | None = None) -> list[Path]:
    """Kernel .mat/.npy per scale, a kernel plot, the D-map TIFF (if any) and a JSON record (with
    ``hints``, the optics hints of the estimate and their sources, as ``"optics_hints"``).

    Paths are appended to ``written`` as each file lands (see :func:`all_or_nothing`); returns them.
    """
    from ..io import write_image, write_kernel

    written = [] if written is None else written
    for s in scales:
        k = est.kernel_for(s)
        for suffix in (".mat", ".npy"):
            written.append(write_kernel(out / f"{stem}_kernel_x{s}{suffix}", k))
        written.append(save_kernel_plot(out / f"{stem}_kernel_x{s}.png", k, f"{stem} kernel ×{s}"))
    if est.dmap is not None:
        written.append(write_image(out / f"{stem}_dmap.tif", est.dmap.astype(np.float32)))
    record = {k: v for k, v in est.metadata(max(scales)).items() if k != "kernel"}
    if hints is not None:
        record["optics_hints"] = hints
    written.append(write_json(out / f"{stem}_kernel.json", record))
    return written


def write_field(out: Path, stem: str, field: Any, written: list[Path]) -> list[Path]:
    """A kernel map: the field (.npz), its per-pixel maps (one float32 TIFF, a page per map, names and
    units in the JSON record) and a plot of the tile kernels at their places."""
    from ..fields import MAP_NAMES
    from ..io import write_image

    written.append(field.save(out / f"{stem}_kernel_map.npz"))
    maps = field.maps()
    written.append(write_image(out / f"{stem}_kernel_map.tif", np.stack([maps[n] for n in MAP_NAMES]),
                               metadata={"axes": "QYX", "Labels": list(MAP_NAMES)}))
    written.append(save_kernel_plot(out / f"{stem}_kernel_map.png", field.mosaic(field.kernels.shape[-1] + 2),
                                    f"{stem} kernel map ({field.grid[0]}×{field.grid[1]} tiles)"))
    units = {"width_major": "input px (σ)", "width_minor": "input px (σ)", "orientation": "degrees from +x towards +y",
             "anisotropy": "1 - minor/major", "confidence": "0-1"}
    written.append(write_json(out / f"{stem}_kernel_map.json",
                              {**field.metadata(), "maps": list(MAP_NAMES), "map_units": units}))
    return written


def write_output(path: Path, src: Any, channel: int | None, stack_axes: Sequence[int],
                 frames: Iterator[np.ndarray], scale: int) -> Path:
    """The super-resolved input ``src`` (:class:`~..stacks.ImageSource`) in its own format, axes and metadata
    (YX pixel size / ``scale``), from its super-resolved ``frames`` (one per index of its ``stack_axes``, in
    file order, each ``(C?, sY, sX)`` with ``channel`` the file's channel axis); a name the user chose with
    another suffix (``-o out.png`` for a TIFF) sets the format."""
    from ..stacks import write_like

    axes = src.meta.axes
    shape = tuple(n * scale if a in "YX" else n for a, n in zip(axes, src.data.shape))
    meta = src.meta.scaled(scale)
    is_tiff = path.suffix.lower() in (".tif", ".tiff")
    if is_tiff != (meta.kind != "png"):
        meta = replace(meta, kind="tiff" if is_tiff else "png")
    # The frames, in order, are the output's TIFF pages in file order when the channel axis, if any, is the
    # last before the plane or the samples after it.
    if channel is None or axes.endswith("S") or channel == max([*stack_axes, channel]):
        def pages() -> Iterator[np.ndarray]:
            for frame in frames:
                if channel is None:
                    yield frame
                elif axes.endswith("S"):
                    yield np.moveaxis(frame, 0, -1)
                else:
                    yield from frame
        return write_like(path, pages(), meta, shape, src.data.dtype)
    # The channel axis is outside the stack axes in the file (e.g. OME's CZYX): assemble, then write.
    perm = [*stack_axes, channel, axes.index("Y"), axes.index("X")]
    canon = np.stack(list(frames)).reshape(tuple(shape[a] for a in perm))
    return write_like(path, np.transpose(canon, np.argsort(perm)), meta, shape, src.data.dtype)
