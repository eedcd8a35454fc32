"""Kernel fields: one SR kernel per tile of an image, and the kernel anywhere between tiles.

A :class:`KernelField` holds ×2 kernels (stored convention: correlation,
centred; :mod:`napari_kernelgan.physics.conventions`) on a grid of tile centres
in **input pixels** (the LR image the kernels were estimated from), the tile
boxes, each tile's own confidence, how much of each tile's kernel is its own
measurement (``trust``; the rest came from its neighbours and the global
kernel), the global kernel and the scale.

Between tile centres the kernel is interpolated bilinearly (the weights of
:func:`~napari_kernelgan.physics.varying.tent_weights`, the same partition of
unity as the spatially varying degradation). Where every tile kernel is a
Gaussian (the fast estimators' kernels are), the interpolation runs on the
covariances in the log-Euclidean metric, so the kernel between two Gaussians
is a Gaussian of intermediate width and orientation; otherwise the kernels
are blended as they are, a convex combination that stays non-negative and
sums to one. Either way every interpolated kernel is a valid kernel.

Files: ``.npz`` (:meth:`KernelField.save`, :meth:`KernelField.load`), written
atomically, with the geometry, the conventions and the provenance as JSON.
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadInputError, MissingFileError
from .physics.conventions import CENTRING, ORIENTATION, SUBSAMPLING, kernel_for_scale
from .physics.grid import tent_weights
from .physics.kernels import gaussian_from_covariance, log_spd
from .physics.metrics import covariance_axes, second_moments

__all__ = ["KernelField", "FIELD_FORMAT", "MAP_NAMES", "log_covariances", "from_log_covariances", "all_gaussian"]

FIELD_FORMAT = "napari-kernelgan kernel field v1"
MAP_NAMES = ("width_major", "width_minor", "orientation", "anisotropy", "confidence")
GAUSSIAN_TOLERANCE = 0.02  # L1 distance below which a kernel counts as the Gaussian of its covariance


def all_gaussian(kernels: np.ndarray) -> bool:
    """Whether every one of (..., k, k) kernels is the Gaussian of its own covariance (within
    :data:`GAUSSIAN_TOLERANCE` in L1): then they are blended and interpolated as covariances."""
    arr = np.asarray(kernels, dtype=np.float64)
    size = arr.shape[-1]
    return all(np.abs(k - gaussian_from_covariance(second_moments(k), size)).sum() < GAUSSIAN_TOLERANCE
               for k in arr.reshape(-1, size, size))


def log_covariances(kernels: np.ndarray) -> np.ndarray:
    """(..., 3) log-Euclidean coordinates (L00, L01, L11) of the covariances of (..., k, k) kernels."""
    flat = np.asarray(kernels, dtype=np.float64).reshape((-1,) + kernels.shape[-2:])
    logs = np.array([log_spd(second_moments(k)) for k in flat])
    return np.stack([logs[:, 0, 0], logs[:, 0, 1], logs[:, 1, 1]], -1).reshape(kernels.shape[:-2] + (3,))


def from_log_covariances(logs: np.ndarray) -> np.ndarray:
    """(..., 2, 2) covariances from (..., 3) log-Euclidean coordinates (the inverse of :func:`log_covariances`)."""
    a, b, c = logs[..., 0], logs[..., 1], logs[..., 2]
    # Closed-form exponential of the symmetric 2×2 [[a, b], [b, c]], vectorised over pixels.
    m = 0.5 * (a + c)
    d = np.sqrt(0.25 * (a - c) ** 2 + b ** 2)
    em = np.exp(m)
    ch = np.cosh(d)
    sh_d = np.where(d > 1e-12, np.sinh(d) / np.where(d > 1e-12, d, 1.0), 1.0)
    out = np.empty(logs.shape[:-1] + (2, 2))
    out[..., 0, 0] = em * (ch + 0.5 * (a - c) * sh_d)
    out[..., 1, 1] = em * (ch - 0.5 * (a - c) * sh_d)
    out[..., 0, 1] = out[..., 1, 0] = em * b * sh_d
    return out


@dataclass
class KernelField:
    """SR kernels on a grid of tiles of one image; see the module docstring.

    ``kernels`` (gy, gx, k, k): the ×2 kernel of each tile after the fallback
    for tiles that could not be trusted. ``centres_y`` (gy,), ``centres_x`` (gx,):
    tile centres in input pixels. ``boxes`` (gy, gx, 4): ``y0, x0, y1, x1`` of
    each tile in input pixels (end exclusive). ``confidence`` (gy, gx): each
    tile's own estimate's confidence in [0, 1]. ``trust`` (gy, gx): the share of
    the tile's kernel that is its own estimate. ``kernel_confidence`` (gy, gx):
    the confidence behind the tile's final kernel (its own, blended with that of
    what it borrowed; default: ``confidence``), which SR regularises by.
    ``image_shape``: (H, W) of the input.
    """

    kernels: np.ndarray
    centres_y: np.ndarray
    centres_x: np.ndarray
    boxes: np.ndarray
    confidence: np.ndarray
    trust: np.ndarray
    global_kernel: np.ndarray
    image_shape: tuple[int, int]
    scale: int = 2
    global_confidence: float | None = None
    method: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    elapsed: float = 0.0
    device: str = "cpu"
    seed: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    kernel_confidence: np.ndarray | None = None

    def __post_init__(self) -> None:
        self._cache: dict[str, Any] = {}
        self.kernels = np.asarray(self.kernels, dtype=np.float64)
        self.centres_y = np.asarray(self.centres_y, dtype=np.float64).ravel()
        self.centres_x = np.asarray(self.centres_x, dtype=np.float64).ravel()
        self.boxes = np.asarray(self.boxes, dtype=np.int64)
        self.confidence = np.asarray(self.confidence, dtype=np.float64)
        self.trust = np.asarray(self.trust, dtype=np.float64)
        self.kernel_confidence = (self.confidence.copy() if self.kernel_confidence is None
                                  else np.asarray(self.kernel_confidence, dtype=np.float64))
        self.global_kernel = np.asarray(self.global_kernel, dtype=np.float64)
        self.image_shape = (int(self.image_shape[0]), int(self.image_shape[1]))
        self.validate()

    # ------------------------------------------------------------------ checks and shape

    def validate(self) -> None:
        """Raise :class:`~napari_kernelgan.errors.BadInputError` unless the parts fit together."""
        k = self.kernels
        if k.ndim != 4 or k.shape[2] != k.shape[3] or k.shape[2] % 2 == 0:
            raise BadInputError(f"a kernel field holds (gy, gx, k, k) kernels with k odd, got shape {k.shape}")
        gy, gx = k.shape[:2]
        if gy < 1 or gx < 1:
            raise BadInputError("a kernel field needs at least one tile")
        if self.centres_y.shape != (gy,) or self.centres_x.shape != (gx,):
            raise BadInputError(f"tile centres {self.centres_y.shape} / {self.centres_x.shape} do not match the "
                                f"{gy}×{gx} grid")
        for name, arr, shape in (("boxes", self.boxes, (gy, gx, 4)), ("confidence", self.confidence, (gy, gx)),
                                 ("trust", self.trust, (gy, gx)),
                                 ("kernel_confidence", self.kernel_confidence, (gy, gx))):
            if arr.shape != shape:
                raise BadInputError(f"kernel field {name} has shape {arr.shape}, expected {shape}")
        if np.any(np.diff(self.centres_y) <= 0) or np.any(np.diff(self.centres_x) <= 0):
            raise BadInputError("kernel field tile centres must increase along each axis")
        if not np.all(np.isfinite(k)) or np.any(k < -1e-9) or not np.allclose(k.sum((-2, -1)), 1.0, atol=1e-4):
            raise BadInputError("kernel field kernels must be finite, non-negative and sum to 1")
        if self.global_kernel.shape != k.shape[2:]:
            raise BadInputError(f"the global kernel {self.global_kernel.shape} is not the tiles' size {k.shape[2:]}")
        if self.scale not in (2, 4):
            raise BadInputError(f"a kernel field is for scale 2 or 4, got {self.scale}")
        if min(self.image_shape) < 1:
            raise BadInputError(f"bad image shape {self.image_shape}")

    @property
    def grid(self) -> tuple[int, int]:
        """(gy, gx): tiles along the rows and the columns."""
        return int(self.kernels.shape[0]), int(self.kernels.shape[1])

    @property
    def is_uniform(self) -> bool:
        """Whether every tile holds the same kernel."""
        return bool(np.allclose(self.kernels, self.kernels[:1, :1], atol=1e-10))

    @property
    def covariances(self) -> np.ndarray:
        """(gy, gx, 2, 2) covariance of each tile's ×2 kernel (HR px², (row, col) order)."""
        return np.array([[second_moments(k) for k in row] for row in self.kernels])

    @property
    def gaussian(self) -> bool:
        """Whether every tile kernel is the Gaussian of its covariance (then interpolation is in covariance)."""
        key = ("gaussian", id(self.kernels))
        if self._cache.get("key_g") != key:
            self._cache.update(key_g=key, gaussian=all_gaussian(self.kernels))
        return self._cache["gaussian"]

    def _log_covariances(self) -> np.ndarray:
        key = ("logs", id(self.kernels))
        if self._cache.get("key_l") != key:
            self._cache.update(key_l=key, logs=log_covariances(self.kernels))
        return self._cache["logs"]

    @classmethod
    def uniform(cls, kernel: np.ndarray, image_shape: tuple[int, int], scale: int = 2,
                confidence: float | None = None, method: str = "") -> KernelField:
        """A one-tile field holding ``kernel`` everywhere."""
        k = np.asarray(kernel, dtype=np.float64)
        h, w = int(image_shape[0]), int(image_shape[1])
        c = 0.0 if confidence is None else float(confidence)
        return cls(kernels=k[None, None], centres_y=[(h - 1) / 2], centres_x=[(w - 1) / 2],
                   boxes=np.array([[[0, 0, h, w]]]), confidence=np.array([[c]]), trust=np.ones((1, 1)),
                   global_kernel=k, image_shape=(h, w), scale=scale, global_confidence=confidence, method=method)

    # ------------------------------------------------------------------ kernels anywhere

    def weights_at(self, y: float | np.ndarray, x: float | np.ndarray) -> np.ndarray:
        """(gy, gx, ...) interpolation weights of points ``(y, x)`` (input pixels); they sum to one."""
        yy, xx = np.broadcast_arrays(np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64))
        wy = tent_weights(self.centres_y, yy.ravel())
        wx = tent_weights(self.centres_x, xx.ravel())
        return (wy[:, None, :] * wx[None, :, :]).reshape(self.grid + yy.shape)

    def kernel_at(self, y: float, x: float, scale: int | None = None) -> np.ndarray:
        """The kernel at input pixel ``(y, x)``: ×2 (as stored) by default, or for SR at ``scale`` 4.

        Interpolated between the four nearest tile centres (see the module docstring); a valid kernel
        (non-negative, sum 1, centred).
        """
        w = self.weights_at(y, x).reshape(-1)
        size = self.kernels.shape[-1]
        flat = self.kernels.reshape(-1, size, size)
        used = np.nonzero(w > 1e-12)[0]
        if all(np.array_equal(flat[i], flat[used[0]]) for i in used[1:]):
            # On a tile centre, or between equal kernels: that kernel exactly (a Gaussian rebuilt from its
            # covariance would differ by the grid's truncation).
            k = flat[used[0]].copy()
        elif self.gaussian:
            logs = self._log_covariances().reshape(-1, 3)
            k = gaussian_from_covariance(from_log_covariances(w @ logs), size)
        else:
            k = np.tensordot(w, flat, axes=1)
            k = np.clip(k, 0.0, None)
            k = k / k.sum()
        return kernel_for_scale(k, int(scale or 2))

    def kernels_for(self, scale: int) -> np.ndarray:
        """(gy, gx, ...) tile kernels for SR at ``scale`` (×4: the analytic ``k2 ⊛ dilate2(k2)`` of each)."""
        if scale == 2:
            return self.kernels
        return np.array([[kernel_for_scale(k, scale) for k in row] for row in self.kernels])

    # ------------------------------------------------------------------ per-pixel maps

    def maps(self, shape: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """Per-pixel maps over the input (``shape`` defaults to :attr:`image_shape`):

        ``width_major`` / ``width_minor``: the blur's σ along its long and short axes in **input pixels**
        (the ×``scale`` kernel's σ in HR pixels divided by the scale); ``orientation``: the long axis' angle in degrees
        in [0, 180) from the x (column) axis towards +y (down the rows); ``anisotropy``:
        ``1 − minor / major`` (0: round); ``confidence``: the tiles' own confidence, interpolated.
        """
        h, w = self.image_shape if shape is None else (int(shape[0]), int(shape[1]))
        sy = self.image_shape[0] / h
        sx = self.image_shape[1] / w
        ys = (np.arange(h) + 0.5) * sy - 0.5
        xs = (np.arange(w) + 0.5) * sx - 0.5
        wy = tent_weights(self.centres_y, ys)          # (gy, h)
        wx = tent_weights(self.centres_x, xs)          # (gx, w)
        logs = self._log_covariances()                 # (gy, gx, 3)
        per_pixel = np.einsum("ih,jw,ijc->hwc", wy, wx, logs)
        cov = from_log_covariances(per_pixel)
        major, minor, theta = covariance_axes(cov)
        # The ×s kernel's covariance in input pixels: Σ₂/4 at ×2; at ×4, k4 = k2 ⊛ dilate2(k2) has 5Σ₂, /16.
        to_input = 0.5 if self.scale == 2 else float(np.sqrt(5.0 / 16.0))
        conf = np.einsum("ih,jw,ij->hw", wy, wx, self.confidence)
        return {"width_major": (major * to_input).astype(np.float32),
                "width_minor": (minor * to_input).astype(np.float32),
                "orientation": theta.astype(np.float32),
                "anisotropy": (1.0 - minor / np.maximum(major, 1e-12)).astype(np.float32),
                "confidence": conf.astype(np.float32)}

    def support(self, mass: float = 0.99) -> int:
        """The smallest odd side of a centred window holding ``mass`` of every tile kernel."""
        size = self.kernels.shape[-1]
        for side in range(1, size + 1, 2):
            o = (size - side) // 2
            if np.all(self.kernels[..., o:o + side, o:o + side].sum((-2, -1)) >= mass):
                return side
        return size

    def mosaic(self, cell: int | None = None, side: int | None = None) -> np.ndarray:
        """An image of the tile kernels at their places: each tile's kernel (its central ``side`` ×
        ``side`` window, default the whole kernel), normalised to its own peak, in a ``cell`` × ``cell``
        block (default: ``side``); (gy·cell, gx·cell)."""
        size = self.kernels.shape[-1]
        side = size if side is None else int(side)
        cell = side if cell is None else int(cell)
        if cell < side or side > size or side < 1 or side % 2 == 0:
            raise BadInputError(f"a mosaic cell of {cell} pixels cannot hold a {side}×{side} window of a "
                                f"{size}×{size} kernel")
        gy, gx = self.grid
        out = np.zeros((gy * cell, gx * cell), dtype=np.float32)
        o, c = (cell - side) // 2, (size - side) // 2
        for i in range(gy):
            for j in range(gx):
                k = self.kernels[i, j]
                out[i * cell + o:i * cell + o + side, j * cell + o:j * cell + o + side] = (
                    k[c:c + side, c:c + side] / max(k.max(), 1e-12))
        return out

    # ------------------------------------------------------------------ metadata and files

    def geometry(self) -> dict[str, Any]:
        """The grid's geometry and conventions as plain data (layer metadata, file headers)."""
        return {"format": FIELD_FORMAT, "image_shape": list(self.image_shape), "grid": list(self.grid),
                "centres_y": self.centres_y.tolist(), "centres_x": self.centres_x.tolist(),
                "scale": int(self.scale), "kernel_size": int(self.kernels.shape[-1]), "orientation": ORIENTATION,
                "centring": CENTRING, "subsampling": SUBSAMPLING, "units": "input pixels",
                "interpolation": "log-Euclidean covariance" if self.gaussian else "linear kernel blend"}

    def metadata(self) -> dict[str, Any]:
        """Geometry plus provenance: method, options, timing, confidences."""
        plain = {k: v for k, v in self.options.items() if isinstance(v, (int, float, str, bool, type(None)))}
        return {**self.geometry(), "method": self.method, "options": plain, "seed": int(self.seed),
                "elapsed_s": round(float(self.elapsed), 3), "device": self.device,
                "global_confidence": (None if self.global_confidence is None
                                      else round(float(self.global_confidence), 3)),
                "confidence_range": [float(self.confidence.min()), float(self.confidence.max())]}

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists and numbers) holding the whole field: for layer metadata; see :meth:`from_dict`."""
        return {**self.metadata(), "kernels": self.kernels.tolist(), "boxes": self.boxes.tolist(),
                "confidence": self.confidence.tolist(), "trust": self.trust.tolist(),
                "kernel_confidence": self.kernel_confidence.tolist(), "global_kernel": self.global_kernel.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KernelField:
        """The field :meth:`to_dict` described; a foreign or damaged record raises
        :class:`~napari_kernelgan.errors.BadInputError`."""
        if not isinstance(data, dict) or data.get("format") != FIELD_FORMAT:
            raise BadInputError("this is not a kernel field record")
        try:
            return cls(kernels=data["kernels"], centres_y=data["centres_y"], centres_x=data["centres_x"],
                       boxes=data["boxes"], confidence=data["confidence"], trust=data["trust"],
                       global_kernel=data["global_kernel"], image_shape=tuple(data["image_shape"]),
                       scale=int(data.get("scale", 2)), global_confidence=data.get("global_confidence"),
                       method=str(data.get("method", "")), options=dict(data.get("options") or {}),
                       elapsed=float(data.get("elapsed_s", 0.0)), device=str(data.get("device", "cpu")),
                       seed=int(data.get("seed", 0)), kernel_confidence=data.get("kernel_confidence"))
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"the kernel field record is damaged: {exc}") from exc

    def save(self, path: str | os.PathLike) -> Path:
        """Write the field to ``path`` (``.npz``), atomically; returns the path."""
        from .io import atomic_path

        path = Path(path)
        if path.suffix.lower() != ".npz":
            raise BadInputError(f"kernel fields are saved as .npz, not {path.suffix or 'no suffix'}: {path}")
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, kernels=self.kernels, centres_y=self.centres_y, centres_x=self.centres_x,
                                boxes=self.boxes, confidence=self.confidence, trust=self.trust,
                                kernel_confidence=self.kernel_confidence, global_kernel=self.global_kernel,
                                meta=np.array(json.dumps(self.metadata(), default=str)))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> KernelField:
        """Read a field written by :meth:`save`; a missing, foreign or damaged file gets a clear error."""
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"kernel field file not found: {path}")
        if not zipfile.is_zipfile(path):
            raise BadInputError(f"{path} is not a readable kernel field: expected the .npz file 'estimate "
                                f"--kernel-map' or KernelField.save writes")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise BadInputError(f"{path} is not a readable kernel field (.npz): {exc}") from exc
        missing = [k for k in ("kernels", "centres_y", "centres_x", "boxes", "confidence", "trust",
                               "global_kernel", "meta") if k not in arrays]
        if missing:
            raise BadInputError(f"{path} is not a kernel field file: it lacks {', '.join(missing)}")
        try:
            meta = json.loads(str(arrays["meta"]))
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{path}: the kernel field's header is damaged ({exc})") from exc
        if meta.get("format") != FIELD_FORMAT:
            raise BadInputError(f"{path} is not a kernel field of this format (found {meta.get('format')!r}, "
                                f"expected {FIELD_FORMAT!r})")
        return cls(kernels=arrays["kernels"], centres_y=arrays["centres_y"], centres_x=arrays["centres_x"],
                   boxes=arrays["boxes"], confidence=arrays["confidence"], trust=arrays["trust"],
                   global_kernel=arrays["global_kernel"], image_shape=tuple(meta["image_shape"]),
                   kernel_confidence=arrays.get("kernel_confidence"),
                   scale=int(meta.get("scale", 2)), global_confidence=meta.get("global_confidence"),
                   method=str(meta.get("method", "")), options=dict(meta.get("options") or {}),
                   elapsed=float(meta.get("elapsed_s", 0.0)), device=str(meta.get("device", "cpu")),
                   seed=int(meta.get("seed", 0)))
