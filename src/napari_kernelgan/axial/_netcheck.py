"""The network's held-out z check: how well the axial network predicts planes of the stack it never saw.

On the same footing as the 3-D PSF path's check (:meth:`~napari_kernelgan.axial.zdeconv.Psf3dSolver.held_out_errors`):
on the central block (:func:`~napari_kernelgan.axial._zsafety.central_block`) the even planes are kept, a network
trained for twice the factor on the stack's even lateral planes (degraded with the relative axial blur at that
factor, as :mod:`~napari_kernelgan.axial.smore` trains) super-resolves them along z, its output is re-blurred
along z with the relative blur (back to the raw stack's z blur, as the network's re-blur consistency check
does) and sampled at the odd planes; cubic interpolation of the even planes predicts the same planes. The gain
is the ratio of the two mean squared errors, in dB.
"""
from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..devices import torch_threads
from ..imaging import centre_crop
from . import smore
from ._zops import NoiseModel, Normaliser, cubic_matrix, degrade_matrix
from ._zsafety import central_block
from .psf import AxialPSF

__all__ = ["CHECK_SECONDS", "NetCheck", "iter_net_held_out", "net_held_out"]

# The check's training budget (s, through smore.steps_for: a fixed step count, so the same seed gives the same
# gain whatever the load). Short: the check ranks the network against the 3-D path, it does not have to win.
CHECK_SECONDS = 6.0
TRAIN_SIDE = 256      # lateral planes are cropped about their centre to at most this side for the pairs
APPLY_VOXELS = 1 << 17  # voxels through the network between yields (well under a second on one core)


@dataclass
class NetCheck:
    """The network's held-out z check: mean squared errors (raw units) of the odd planes of the central block
    predicted by the network from the even ones and by cubic interpolation, the gain (dB) and the steps trained."""

    mse_net: float
    mse_cubic: float
    steps: int

    @property
    def held_db(self) -> float:
        """The network's held-out z gain: dB over cubic interpolation's prediction of the same planes."""
        return float(10.0 * math.log10(max(self.mse_cubic, 1e-30) / max(self.mse_net, 1e-30)))


def iter_net_held_out(stack: Any, psf: AxialPSF, factor: int, noise: NoiseModel, *, seed: int = 0,
                      device: torch.device | None = None, seconds: float = CHECK_SECONDS,
                      kernel: np.ndarray | None = None) -> Generator[None, None, NetCheck]:
    """The network's held-out z check of a raw ``(nz, ny, nx)`` stack (at least 5 planes) super-resolved
    ``factor``× with ``psf`` (``kernel``: the relative axial blur on the fine grid, default
    ``psf.relative_on(z_step / factor)``). Yields between pieces of work (each well under a second), so that
    a caller can report progress and stop."""
    nz = int(stack.shape[0])
    if nz < 5:
        raise ValueError(f"the held-out z check needs 5 or more planes; the stack has {nz}")
    dev = torch.device("cpu") if device is None else device
    fine = psf.z_step_um / factor
    kernel = psf.relative_on(fine) if kernel is None else np.asarray(kernel, dtype=np.float64)
    ratio = psf.pixel_um / fine
    f2 = 2 * int(factor)
    block = central_block(stack)
    even, odd = block[0::2], block[1::2]
    norm = Normaliser.of(block)
    rng = np.random.default_rng([int(seed), 0xC4E])
    idx = np.arange(0, nz, 2)
    pick = idx[np.unique(np.linspace(0, idx.size - 1, min(idx.size, smore.MAX_TRAIN_PLANES)).round().astype(int))]
    planes = []
    for i in pick:
        planes.append(centre_crop(np.asarray(stack[int(i)], dtype=np.float64), TRAIN_SIDE))
        yield None
    pairs = smore.make_pairs(planes, kernel, f2, noise, ratio, norm, rng)
    yield None
    # One intra-op thread, whatever the caller's: on patches this small a second thread gains little, and on a
    # busy machine two threads waiting on each other took 6× as long (a 64×512×512 stack: 49 s against 9 s);
    # it also makes the check's gain one number whatever the thread count. Set around each piece of work only,
    # so the caller's own work between yields keeps its threads.
    gen = smore.iter_train(pairs, seconds=seconds, device=dev, seed=seed)
    while True:
        try:
            with torch_threads(1):
                next(gen)
        except StopIteration as stop:
            net, steps = stop.value
            break
        yield None
    # The even planes super-resolved 2F× along z, both lateral orientations averaged (as the SR applies it).
    up = norm.forward(np.tensordot(cubic_matrix(even.shape[0], f2), even, axes=(1, 0)))  # (z, y, x)
    n_fine = up.shape[0]
    out = np.zeros(up.shape, dtype=np.float64)
    rows = max(1, APPLY_VOXELS // max(1, n_fine * up.shape[2]))
    for other in (2, 1):
        planes_z = np.moveaxis(up, (3 - other, 0), (0, 2))  # (slab axis, other lateral axis, z)
        for a in range(0, planes_z.shape[0], rows):
            with torch_threads(1):
                res = smore.apply_planes(net, planes_z[a:a + rows], dev)
            out_view = np.moveaxis(out, (3 - other, 0), (0, 2))
            out_view[a:a + rows] += 0.5 * res
            yield None
    fine_vol = norm.back(out.astype(np.float32)).astype(np.float64)
    # Back to the raw stack's z blur, sampled every F: the even planes' fine grid holds the odd planes at F, 3F ...
    blur = degrade_matrix(n_fine, kernel, int(factor))[1::2]
    pred = np.tensordot(blur, fine_vol, axes=(1, 0))
    cubic = np.tensordot(cubic_matrix(even.shape[0], 2), even, axes=(1, 0))[1::2]
    n = min(pred.shape[0], cubic.shape[0], odd.shape[0])
    target = odd[:n]
    return NetCheck(float(np.mean((pred[:n] - target) ** 2)), float(np.mean((cubic[:n] - target) ** 2)), int(steps))


def net_held_out(stack: Any, psf: AxialPSF, factor: int, noise: NoiseModel, **options: Any) -> NetCheck:
    """:func:`iter_net_held_out` run to the end."""
    from ..api import drive

    return drive(iter_net_held_out(stack, psf, factor, noise, **options))
