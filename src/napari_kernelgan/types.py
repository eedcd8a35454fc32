"""Result and progress records shared by the API, CLI and widgets."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .physics.conventions import CENTRING, ORIENTATION, SUBSAMPLING, analytic_x4


class Cancelled(RuntimeError):
    """Raised when a running estimate or super-resolution is cancelled by the caller."""


@dataclass
class Progress:
    """One progress report from a running fit.

    ``kernel`` is the current ×2 kernel estimate (centred, correlation
    orientation) when the stage produces one, else ``None``.
    """

    iteration: int
    total: int
    elapsed: float
    stage: str = "estimate"
    kernel: np.ndarray | None = None
    loss: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.iteration / self.total if self.total else 1.0

    @property
    def eta(self) -> float:
        """Seconds left, extrapolated from the rate so far."""
        if self.iteration <= 0 or self.total <= 0:
            return math.nan
        return self.elapsed * (self.total - self.iteration) / self.iteration


@dataclass
class KernelEstimate:
    """A blind kernel estimate of one image (or one stack sharing a kernel).

    ``kernel`` is the ×2 SR kernel, odd-sized, centred, in correlation
    orientation (see :mod:`napari_kernelgan.physics.conventions`).
    """

    kernel: np.ndarray
    dmap: np.ndarray | None
    loss_history: dict[str, list[float]]
    iterations: int
    elapsed: float
    device: str
    seed: int
    preset: str
    method: str = "kernelgan"
    scale: int = 2
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def kernel_x2(self) -> np.ndarray:
        return self.kernel

    @property
    def kernel_x4(self) -> np.ndarray:
        """Analytic ×4 kernel ``k2 ⊛ dilate2(k2)`` (full support, 3n − 2)."""
        return analytic_x4(self.kernel)

    def kernel_for(self, scale: int) -> np.ndarray:
        """The kernel for SR at ``scale`` (2 or 4)."""
        if scale == 2:
            return self.kernel
        if scale == 4:
            return self.kernel_x4
        raise ValueError(f"kernels exist for scale 2 and 4, not {scale}")

    def metadata(self, scale: int | None = None) -> dict[str, Any]:
        """Plain-data description for layer metadata and sidecar files."""
        scale = self.scale if scale is None else scale
        return {
            "kernel": self.kernel_for(scale).tolist(),
            "scale": scale,
            "orientation": ORIENTATION,
            "centring": CENTRING,
            "subsampling": SUBSAMPLING,
            "method": self.method,
            "preset": self.preset,
            "seed": self.seed,
            "iterations": self.iterations,
            "elapsed_s": round(self.elapsed, 3),
            "device": self.device,
        }


@dataclass
class SRResult:
    """A super-resolved image and how it was made."""

    image: np.ndarray
    scale: int
    method: str
    kernel: np.ndarray
    elapsed: float
    device: str
    options: dict[str, Any] = field(default_factory=dict)
    estimate: KernelEstimate | None = None  # set by blind super-resolution

    def metadata(self) -> dict[str, Any]:
        return {
            "sr_method": self.method,
            "scale": self.scale,
            "kernel": np.asarray(self.kernel).tolist(),
            "orientation": ORIENTATION,
            "options": {k: v for k, v in self.options.items() if isinstance(v, (int, float, str, bool, type(None)))},
            "elapsed_s": round(self.elapsed, 3),
            "device": self.device,
        }
