"""A run's settings (:class:`BatchConfig`) and what it made (:class:`InputResult`, :class:`BatchResult`)."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadOptionError, Param
from ..vocabulary import Status

if TYPE_CHECKING:
    from ..types import KernelEstimate

__all__ = ["BatchConfig", "InputResult", "BatchResult", "AXIAL_METHODS"]

from ..axial.psf import DEFAULT_SR_METHOD as DEFAULT_AXIAL_METHOD
from ..axial.psf import SR_METHODS as AXIAL_METHODS

"""The axial SR methods (:func:`napari_kernelgan.axial.isotropic.super_resolve_axial`'s ``sr_method``)."""


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
    ``hints``: the microscope's optics given by the user (:data:`~..optics_hints.HINT_KEYS`), over what
    each input's file says (read per channel unless ``file_hints`` is off); they reach only an estimator
    that declares them, and an estimator option set in ``estimator_options`` wins over both.

    ``axial``: each input is a z-stack whose 3-D PSF is estimated and whose voxels are made isotropic
    (:mod:`.axial`; the 2-D settings are then unused): ``axial_method`` (``auto``, ``smore``, ``deconvolve``,
    ``cubic``),
    ``z_step`` (µm, over what the file says), ``z_factor`` (default: z step / pixel size, rounded),
    ``psf_only`` (the PSF and its record, no isotropic stack), ``psf3d`` (a measured 3-D PSF TIFF used
    instead of an estimate), ``overwrite`` (off: an existing output is refused). The pixel size is
    ``hints["pixel_um"]`` over the file's.
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
    hints: dict[str, Any] = field(default_factory=dict)
    file_hints: bool = True
    axial: bool = False
    axial_method: str = DEFAULT_AXIAL_METHOD
    z_step: float | None = None
    z_factor: int | None = None
    psf_only: bool = False
    psf3d: Path | None = None
    overwrite: bool = True

    def __post_init__(self) -> None:
        self.out = None if self.out is None else Path(self.out)
        self.kernel = None if self.kernel is None else Path(self.kernel)
        self.output = None if self.output is None else Path(self.output)
        if self.kernel_map and self.per_slice:
            raise BadOptionError("a kernel map is made per image or per stack, not with per-slice kernels")
        if self.kernel_files not in ("all", "mat"):
            raise BadOptionError(f"kernel_files must be 'all' or 'mat', not {self.kernel_files!r}")
        from ..optics_hints import check_hint

        self.hints = {k: check_hint(k, v) for k, v in self.hints.items() if v is not None}
        if self.kernel is not None and self.sr_method is None:
            raise BadOptionError("a known kernel is for super-resolution: give an SR method")
        self.psf3d = None if self.psf3d is None else Path(self.psf3d)
        if self.axial:
            self._check_axial()

    def _check_axial(self) -> None:
        """Refuse the axial settings no run can use, before any file is read."""
        if self.axial_method not in AXIAL_METHODS:
            raise BadOptionError(Param("axial_method", self.axial_method), " must be one of: "
                                 f"{', '.join(AXIAL_METHODS)}")
        if self.z_step is not None:
            self.z_step = float(self.z_step)
            if not math.isfinite(self.z_step) or self.z_step <= 0:
                raise BadOptionError(Param("z_step", self.z_step), " must be a distance in µm above 0")
        if self.z_factor is not None:
            if int(self.z_factor) != self.z_factor or not 1 <= int(self.z_factor) <= 8:
                raise BadOptionError(Param("z_factor", self.z_factor), " must be a whole number from 1 to 8")
            self.z_factor = int(self.z_factor)
        if self.kernel is not None or self.kernel_map or self.per_slice:
            raise BadOptionError("an axial run estimates a 3-D PSF per stack: a 2-D kernel, a kernel map or "
                                 "per-slice kernels do not apply")
        if self.psf3d is not None and not self.psf3d.is_file():
            raise BadOptionError(f"PSF file not found: {self.psf3d}")

    def out_dir(self, path: Path) -> Path:
        """Where the results of input ``path`` go."""
        return path.parent if self.out is None else self.out

    def key(self) -> str:
        """A digest of every setting that changes an output (a manifest of other settings is not reused)."""
        from .manifest import sha256

        settings = {k: v for k, v in asdict(self).items() if k not in ("out", "resume", "keep_results")}
        if self.kernel is not None and self.kernel.is_file():  # the kernel's content, not only its name
            settings["kernel_sha256"] = sha256(self.kernel)
        if self.psf3d is not None and self.psf3d.is_file():
            settings["psf3d_sha256"] = sha256(self.psf3d)
        from .. import __version__

        text = json.dumps({**settings, "version": __version__}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def scales(self) -> list[int]:
        return [2] if self.scale == 2 else [2, self.scale]


@dataclass
class InputResult:
    """What became of one input: its summary ``rows``, the files written and, for a failure, the
    ``error`` (in the API's words; ``error_words`` for the other front ends, see
    :func:`~napari_kernelgan.errors.render`) and what it is about (``error_path``: the input, the output
    folder, or ``None``)."""

    path: Path
    stem: str
    status: Status
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
    hints: dict[str, dict[str, Any]] = field(default_factory=dict)  # per unit name: the optics hints and their use
    error_words: tuple[Any, ...] = ()
    axial: dict[str, Any] = field(default_factory=dict)  # an axial run's record (STEM_axial.json)

    @property
    def failed(self) -> bool:
        return self.status == Status.FAILED


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
        return {s.value: sum(r.status == s for r in self.results) for s in Status}

    def tally(self) -> str:
        """``"3 done, 1 skipped (finished before), 0 failed"``: the run in words, as the command and the
        widget end with."""
        c = self.counts
        ok, skipped, failed = (c[s.value] for s in (Status.OK, Status.SKIPPED, Status.FAILED))
        return f"{ok} done, {skipped} skipped (finished before), {failed} failed"
