"""Named constants shared by the engine, the front ends and the files they write.

Scales, kernel sizes, layer roles, progress stages and the batch engine's input statuses are spelled once here;
everything else refers to these names.
"""
from __future__ import annotations

import numbers
from enum import Enum

from .errors import BadOptionError

ESTIMATE_SCALES: tuple[int, ...] = (2, 4)
"""Scales a kernel estimate serves: the ×2 kernel is estimated, the ×4 one derived analytically."""

SR_SCALES: tuple[int, ...] = (2, 3, 4)
"""Scales the SR methods accept (×3 needs a kernel given for ×3)."""


def check_scale(scale: int, allowed: tuple[int, ...]) -> int:
    """``scale`` as an ``int`` where it is one of ``allowed`` (a bool or a float is refused), else a
    :class:`~napari_kernelgan.errors.BadOptionError` naming the allowed scales."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Integral) or int(scale) not in allowed:
        raise BadOptionError(f"scale must be one of {', '.join(map(str, allowed))}; got {scale!r}")
    return int(scale)

KERNEL_SIZE = 13
"""Side of an estimated ×2 kernel: the receptive field of KernelGAN's generator."""


MAX_KERNEL_SIDE = 75
"""Largest side an image may have to be taken for a kernel by its content alone (a file or layer without a
kernel role): larger odd images are pictures. Measured PSFs become kernels at most this large by default, and
×2 kernels up to 25×25 keep their full analytic ×4 kernel (:func:`x4_side`) within it; kernels the package
makes (a role in their metadata) may be larger."""


def x4_side(side: int) -> int:
    """Side of the full analytic ×4 kernel of an ``side``×``side`` ×2 kernel: ``3·side − 2`` (41 → 121)."""
    return 3 * int(side) - 2


def kernel_size(scale: int) -> int:
    """Side of an estimated kernel at ``scale``: 13 at ×2, ``3·13 − 2 = 37`` at ×4 (full analytic support)."""
    if scale == 2:
        return KERNEL_SIZE
    if scale == 4:
        return x4_side(KERNEL_SIZE)
    raise ValueError(f"estimated kernels exist for scales {ESTIMATE_SCALES}, not {scale}")


class LayerRole(str, Enum):
    """What a layer made by this package holds (``layer.metadata['role']``)."""

    KERNEL = "kernel"                  # an estimated kernel
    KERNEL_PREVIEW = "kernel preview"  # the kernel of a running estimate
    TRUE_KERNEL = "true kernel"        # the known kernel of a sample
    KERNEL_FILE = "kernel file"        # a kernel read from a file
    DMAP = "d-map"                     # the discriminator map
    KERNEL_MOSAIC = "kernel mosaic"    # a kernel field's tile kernels drawn at their places
    KERNEL_FIELD_MAP = "kernel field map"  # a per-pixel quantity of a kernel field (width, orientation...)
    SUPER_RESOLVED = "super-resolved"
    AXIAL_PSF = "3-d psf"              # a z-stack's estimated 3-D PSF
    AXIAL_PSF_SECTION = "3-d psf section"  # a central section (XY, XZ, YZ) of a 3-D PSF
    ISOTROPIC = "isotropic"            # a z-stack super-resolved along z

    def __str__(self) -> str:
        return self.value


KERNEL_ROLES = frozenset({LayerRole.KERNEL, LayerRole.KERNEL_PREVIEW, LayerRole.TRUE_KERNEL, LayerRole.KERNEL_FILE})
RESULT_ROLES = frozenset(LayerRole)


class Stage(str, Enum):
    """The stage a progress report belongs to (``Progress.stage``)."""

    PREPARE = "prepare"    # reading and checking the input, loading weights
    ANCHOR = "anchor"      # measuring the edge anchor and fitting G to it
    ESTIMATE = "estimate"  # the estimator's main loop
    DMAP = "d-map"         # the discriminator's verdict over the whole input
    MAP = "kernel map"     # estimating the kernels of the tiles of a kernel map
    SR = "sr"              # super-resolution
    DONE = "done"
    BATCH = "batch"        # the inputs of a batch run, one step each

    def __str__(self) -> str:
        return self.value


class Status(str, Enum):
    """What became of one input of a batch run (``InputResult.status``, the summary's ``status`` column)."""

    OK = "ok"              # done in this run
    SKIPPED = "skipped"    # finished before with the same settings, its outputs verified
    FAILED = "failed"      # an error, recorded with the input; the run went on

    def __str__(self) -> str:
        return self.value
