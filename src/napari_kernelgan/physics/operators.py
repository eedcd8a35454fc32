"""The degradation as one torch operator: forward ``A``, adjoint ``A_adjoint`` and the L2 proximal map.

``A x = (x ⋆ k)[::s, ::s]``, with the kernel orientation, centring and
subsampling phase of :mod:`napari_kernelgan.physics.conventions`. Every
forward model in the package (the numpy :func:`~napari_kernelgan.physics.degrade`,
ZSSR's sons and back-projection, the closed-form and USRNet data steps,
KernelGAN's generator) is an instance of :class:`Degradation`.

Boundaries (``padding``): ``"reflect"`` (symmetric extension, the edge sample
repeats: scipy's ``'reflect'``), ``"mirror"`` (about the edge sample: scipy's
``'mirror'``), ``"nearest"``, ``"circular"`` (periodic, scipy's ``'wrap'``),
``"constant"`` (zeros) and ``"valid"`` (no padding: ``(H − kh) // s + 1``
outputs, as KernelGAN's generator). Only the periodic grid has the exact
:meth:`Degradation.prox_l2`.

Tensors are (..., H, W); leading axes (frames, channels) are batched. The
input's dtype (float32 or float64) and device set those of the computation.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadInputError, BadOptionError
from .conventions import kernel_for_subsampling

__all__ = ["PADDINGS", "Degradation", "ProxL2"]

PADDINGS = ("reflect", "mirror", "nearest", "circular", "constant", "valid")
_ALIASES = {"wrap": "circular", "grid-wrap": "circular", "symmetric": "reflect", "grid-mirror": "reflect",
            "zeros": "constant", "grid-constant": "constant"}


def _padding_name(padding: str) -> str:
    name = _ALIASES.get(padding, padding)
    if name not in PADDINGS:
        raise BadOptionError(f"unknown padding {padding!r}; choose one of: {', '.join(PADDINGS)} "
                             f"(or the aliases {', '.join(_ALIASES)})")
    return name


def _scale_value(scale: int) -> int:
    if isinstance(scale, bool) or int(scale) != scale or scale < 1:
        raise BadOptionError(f"scale must be a positive integer, got {scale!r}")
    return int(scale)


def _extension_index(n: int, before: int, after: int, padding: str, device: torch.device) -> torch.Tensor:
    """Source index of each sample of a length-``n`` axis extended by ``before`` / ``after`` samples.

    Periodic in every case, so an extension longer than the axis keeps reflecting (or wrapping),
    as scipy.ndimage does.
    """
    p = torch.arange(-before, n + after, device=device)
    if padding == "reflect":
        p = p % (2 * n)
        return torch.where(p >= n, 2 * n - 1 - p, p)
    if padding == "mirror":
        if n == 1:
            return torch.zeros_like(p)
        p = p % (2 * n - 2)
        return torch.where(p >= n, 2 * n - 2 - p, p)
    if padding == "nearest":
        return p.clamp(0, n - 1)
    return p % n


FFT_MIN_TAPS = 41 * 41 + 1  # from this many kernel taps on, correlate by FFT (measured PSFs, physical models)


def _by_fft(weight: torch.Tensor) -> bool:
    """Whether to correlate through the FFT instead of tap by tap or with ``conv2d``.

    A microscope PSF on the SR grid can be 75×75: ``conv2d`` then costs 9× an FFT on a
    512² image (and Richardson–Lucy applies ``A`` and its adjoint at every step), while
    the FFT's cost does not grow with the kernel. Kernels up to 41×41 (DIV2KRK's, the
    ``auto`` estimates) keep the direct paths, whose outputs stay bit for bit as they were.
    The FFT path carries no gradient to the kernel (KernelGAN's generator keeps ``conv2d``).
    """
    return weight.numel() >= FFT_MIN_TAPS and not (weight.requires_grad and torch.is_grad_enabled())


def _fft_grid(shape: tuple[int, int]) -> tuple[int, int]:
    from scipy.fft import next_fast_len

    return next_fast_len(int(shape[0]), real=True), next_fast_len(int(shape[1]), real=True)


def _correlate_fft(xp: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """:func:`_correlate` through the FFT: circular correlation on a grid at least as large as ``xp``,
    whose kept ('valid') outputs never wrap."""
    kh, kw = weight.shape
    grid = _fft_grid(xp.shape[-2:])
    spec = torch.fft.rfft2(xp, s=grid) * torch.fft.rfft2(weight.to(xp.dtype), s=grid).conj()
    full = torch.fft.irfft2(spec, s=grid)
    h, w = _out_length(xp.shape[-2], kh, stride), _out_length(xp.shape[-1], kw, stride)
    return full[..., :stride * (h - 1) + 1:stride, :stride * (w - 1) + 1:stride].contiguous()


def _correlate_adjoint_fft(y: torch.Tensor, weight: torch.Tensor, stride: int,
                           padded: tuple[int, int]) -> torch.Tensor:
    """:func:`_correlate_adjoint` through the FFT: the zero-filled upsampling of ``y`` convolved with the
    kernel on a grid at least as large as ``padded`` (nothing wraps: every footprint ends inside it)."""
    h, w = y.shape[-2:]
    grid = _fft_grid(padded)
    up = y.new_zeros(y.shape[:-2] + grid)
    up[..., :stride * (h - 1) + 1:stride, :stride * (w - 1) + 1:stride] = y
    full = torch.fft.irfft2(torch.fft.rfft2(up) * torch.fft.rfft2(weight.to(y.dtype), s=grid), s=grid)
    return full[..., :padded[0], :padded[1]].contiguous()


def _direct(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether to correlate tap by tap instead of with ``conv2d``.

    PyTorch has no oneDNN float64 convolution on the CPU; its fallback unfolds the
    image ``kh·kw`` times (gigabytes for a megapixel image) and runs 30× slower than
    summing shifted views. That sum cannot carry a gradient to the kernel.
    """
    return (x.dtype == torch.float64 and x.device.type == "cpu"
            and not (weight.requires_grad and torch.is_grad_enabled()))


def _out_length(n: int, k: int, stride: int) -> int:
    return (n - k) // stride + 1


def _correlate(xp: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """'valid' correlation of (..., Hp, Wp) with a 2-D ``weight``, keeping every ``stride``-th output."""
    kh, kw = weight.shape
    if _by_fft(weight):
        return _correlate_fft(xp, weight, stride)
    if _direct(xp, weight):
        h, w = _out_length(xp.shape[-2], kh, stride), _out_length(xp.shape[-1], kw, stride)
        acc = xp.new_zeros(xp.shape[:-2] + (h, w))
        taps = weight.tolist()
        for u in range(kh):
            rows = xp[..., u:u + stride * (h - 1) + 1:stride, :]
            for v in range(kw):
                if taps[u][v] != 0.0:  # the subsampling shift pads the kernel with zeros
                    acc.add_(rows[..., v:v + stride * (w - 1) + 1:stride], alpha=taps[u][v])
        return acc
    out = F.conv2d(xp.reshape((-1, 1) + xp.shape[-2:]), weight[None, None], stride=stride)
    return out.reshape(xp.shape[:-2] + out.shape[-2:])


def _transpose_polyphase(y: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """``conv_transpose2d(y, weight, stride)`` of (B, 1, h, w) as ``stride²`` plain convolutions, one per
    output phase with its sub-kernel ``weight[p::s, q::s]``.

    On the CPU this is faster than oneDNN's strided transposed convolution for the applied kernels of this
    package (17×17 at ×2, 39×39 at ×4; ``benchmarks/adjoint_benchmark.py``), and Richardson–Lucy applies
    the adjoint at every step.
    """
    kh, kw = weight.shape
    h, w = y.shape[-2:]
    out = y.new_zeros(y.shape[:2] + ((h - 1) * stride + kh, (w - 1) * stride + kw))
    for p in range(stride):
        for q in range(stride):
            sub = torch.flip(weight[p::stride, q::stride], (0, 1))
            sh, sw = sub.shape
            out[..., p::stride, q::stride] = F.conv2d(F.pad(y, (sw - 1, sw - 1, sh - 1, sh - 1)), sub[None, None])
    return out


def _correlate_adjoint(y: torch.Tensor, weight: torch.Tensor, stride: int,
                       padded: tuple[int, int]) -> torch.Tensor:
    """Adjoint of :func:`_correlate` onto a (..., ``padded``) input."""
    kh, kw = weight.shape
    h, w = y.shape[-2:]
    if _out_length(padded[0], kh, stride) != h or _out_length(padded[1], kw, stride) != w:
        raise BadInputError(f"an LR image of {h}×{w} is not the degradation of a {padded[0]}×{padded[1]} "
                            f"(padded) image at ×{stride} with a {kh}×{kw} kernel")
    if _by_fft(weight):
        return _correlate_adjoint_fft(y, weight, stride, padded)
    if _direct(y, weight):
        out = y.new_zeros(y.shape[:-2] + tuple(padded))
        taps = weight.tolist()
        for u in range(kh):
            for v in range(kw):
                if taps[u][v] != 0.0:
                    out[..., u:u + stride * (h - 1) + 1:stride, v:v + stride * (w - 1) + 1:stride].add_(
                        y, alpha=taps[u][v])
        return out
    flat = y.reshape((-1, 1) + y.shape[-2:])
    if y.device.type == "cpu" and 1 < stride <= min(kh, kw):
        g = _transpose_polyphase(flat, weight, stride)
    else:
        g = F.conv_transpose2d(flat, weight[None, None], stride=stride)
    g = g.reshape(y.shape[:-2] + g.shape[-2:])
    # Padded pixels past the last kept output's footprint get nothing back.
    return F.pad(g, (0, padded[1] - g.shape[-1], 0, padded[0] - g.shape[-2]))


def _check_image(x: torch.Tensor, name: str = "image") -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise BadInputError(f"{name} must be a torch tensor (..., H, W), got {type(x).__name__}")
    if x.dim() < 2 or not x.is_floating_point():
        raise BadInputError(f"{name} must be a floating-point tensor (..., H, W), got {x.dtype} {tuple(x.shape)}")
    return x


class Degradation:
    """``A x = (x ⋆ k)[::s, ::s]`` with a ``padding`` boundary; see the module docstring.

    ``kernel`` is a stored kernel (numpy, centred, correlation orientation); it is
    shifted for ``scale`` with
    :func:`~napari_kernelgan.physics.conventions.kernel_for_subsampling` (left as
    it is at ``scale == 1``). :meth:`from_applied` takes a tensor already in the
    applied phase (KernelGAN's differentiable kernel), :meth:`from_otf` an
    operator known only by its transfer function on a periodic grid.
    """

    def __init__(self, kernel: np.ndarray, scale: int, padding: str = "reflect") -> None:
        k = np.asarray(kernel, dtype=np.float64)
        if k.ndim != 2 or k.size == 0:
            raise BadInputError(f"a kernel must be a non-empty 2-D array, got shape {k.shape}")
        self._setup(scale, padding)
        self._kernel: np.ndarray | torch.Tensor | None = kernel_for_subsampling(k, self.scale) if self.scale > 1 else k

    def _setup(self, scale: int, padding: str) -> None:
        self.scale = _scale_value(scale)
        self.padding = _padding_name(padding)
        self._fixed_otf: torch.Tensor | None = None
        self._weights: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        self._otfs: dict[tuple[tuple[int, int], torch.dtype, torch.device], torch.Tensor] = {}
        self._prox: tuple[torch.Tensor, int, ProxL2] | None = None

    @classmethod
    def from_applied(cls, kernel: torch.Tensor, scale: int, padding: str = "valid") -> Degradation:
        """Operator for a (kh, kw) tensor already in the applied phase; gradients flow to it."""
        if not isinstance(kernel, torch.Tensor) or kernel.dim() != 2:
            raise BadInputError(f"from_applied takes a 2-D kernel tensor, got {getattr(kernel, 'shape', kernel)!r}")
        op = cls.__new__(cls)
        op._setup(scale, padding)
        op._kernel = kernel
        return op

    @classmethod
    def from_otf(cls, otf: torch.Tensor, scale: int) -> Degradation:
        """Periodic operator given by its half-spectrum transfer function (``torch.fft.rfft2`` layout).

        It acts on the one grid ``otf`` belongs to, (H, W) with ``W // 2 + 1 == otf.shape[-1]``.
        """
        op = cls.__new__(cls)
        op._setup(scale, "circular")
        op._kernel = None
        op._fixed_otf = otf
        return op

    # ------------------------------------------------------------------ shapes and kernel

    @property
    def kernel(self) -> np.ndarray | torch.Tensor | None:
        """The applied kernel (shifted for the scale); ``None`` for :meth:`from_otf` operators."""
        return self._kernel

    def output_shape(self, hr_shape: tuple[int, int]) -> tuple[int, int]:
        """LR shape ``A`` gives for an HR image of ``hr_shape``."""
        s = self.scale
        if self.padding == "valid":
            kh, kw = self._kernel.shape
            return _out_length(hr_shape[0], kh, s), _out_length(hr_shape[1], kw, s)
        return -(-hr_shape[0] // s), -(-hr_shape[1] // s)

    def _default_hr_shape(self, lr_shape: tuple[int, int]) -> tuple[int, int]:
        s = self.scale
        if self.padding == "valid":
            kh, kw = self._kernel.shape
            return (lr_shape[0] - 1) * s + kh, (lr_shape[1] - 1) * s + kw
        return lr_shape[0] * s, lr_shape[1] * s

    def _weight(self, like: torch.Tensor) -> torch.Tensor:
        if isinstance(self._kernel, torch.Tensor):
            return self._kernel.to(dtype=like.dtype, device=like.device)
        key = (like.dtype, like.device)
        if key not in self._weights:
            self._weights[key] = torch.as_tensor(self._kernel, dtype=like.dtype, device=like.device)
        return self._weights[key]

    def _margins(self, kh: int, kw: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) extension; scipy's origin for even sizes (centre tap ``k // 2``)."""
        if self.padding == "valid":
            return 0, 0, 0, 0
        return kh // 2, kh - 1 - kh // 2, kw // 2, kw - 1 - kw // 2

    def _pad(self, x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
        top, bottom, left, right = self._margins(kh, kw)
        if self.padding == "valid":
            if x.shape[-2] < kh or x.shape[-1] < kw:
                raise BadInputError(f"a {x.shape[-2]}×{x.shape[-1]} image is smaller than the {kh}×{kw} kernel")
            return x
        if self.padding == "constant":
            return F.pad(x, (left, right, top, bottom))
        h, w = x.shape[-2:]
        rows = _extension_index(h, top, bottom, self.padding, x.device)
        cols = _extension_index(w, left, right, self.padding, x.device)
        return x.index_select(-2, rows).index_select(-1, cols)

    def _pad_adjoint(self, g: torch.Tensor, hr_shape: tuple[int, int], kh: int, kw: int) -> torch.Tensor:
        top, bottom, left, right = self._margins(kh, kw)
        h, w = hr_shape
        if self.padding == "valid":
            return g
        if self.padding == "constant":
            return g[..., top:top + h, left:left + w]
        rows = _extension_index(h, top, bottom, self.padding, g.device)
        cols = _extension_index(w, left, right, self.padding, g.device)
        g = g.new_zeros(g.shape[:-2] + (h, g.shape[-1])).index_add(-2, rows, g)
        return g.new_zeros(g.shape[:-2] + (h, w)).index_add(-1, cols, g)

    # ------------------------------------------------------------------ the operator

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """``x ⋆ k`` at full resolution (``A`` before the subsampling)."""
        return self._apply(_check_image(x), 1)

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 - the operator's usual name
        """``(x ⋆ k)[::s, ::s]``; only the kept pixels are computed."""
        return self._apply(_check_image(x), self.scale)

    def _apply(self, x: torch.Tensor, stride: int) -> torch.Tensor:
        if self._kernel is None:
            blurred = torch.fft.irfft2(torch.fft.rfft2(x) * self.otf(tuple(x.shape[-2:])), s=x.shape[-2:])
            return blurred[..., ::stride, ::stride]
        weight = self._weight(x)
        return _correlate(self._pad(x, *weight.shape), weight, stride)

    def A_adjoint(self, y: torch.Tensor, hr_shape: tuple[int, int] | None = None) -> torch.Tensor:  # noqa: N802
        """Adjoint of :meth:`A` onto an HR image of ``hr_shape``.

        Default ``hr_shape``: ``(s·h, s·w)``; with ``padding="valid"`` the smallest
        image giving ``y``, ``((h − 1)·s + kh, …)``.
        """
        _check_image(y, "LR image")
        s = self.scale
        hr = tuple(int(v) for v in (hr_shape[-2:] if hr_shape is not None
                                    else self._default_hr_shape(tuple(y.shape[-2:]))))
        if self.output_shape(hr) != tuple(y.shape[-2:]):
            raise BadInputError(f"an LR image of {tuple(y.shape[-2:])} is not the ×{s} degradation of an "
                                f"HR image of {hr} (that gives {self.output_shape(hr)})")
        if self._kernel is None:
            up = torch.zeros(y.shape[:-2] + hr, dtype=y.dtype, device=y.device)
            up[..., ::s, ::s] = y
            return torch.fft.irfft2(torch.fft.rfft2(up) * self.otf(hr).conj(), s=hr)
        weight = self._weight(y)
        kh, kw = weight.shape
        top, bottom, left, right = self._margins(kh, kw)
        g = _correlate_adjoint(y, weight, s, (hr[0] + top + bottom, hr[1] + left + right))
        return self._pad_adjoint(g, hr, kh, kw)

    def adjointness_test(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> float:
        """Relative gap ``|<A x, y> − <x, A* y>| / |<A x, y>|`` for a random ``y`` (≈ round-off when adjoint)."""
        ax = self.A(x)
        y = torch.rand(ax.shape, dtype=ax.dtype, generator=generator).to(ax.device)
        lhs = float((ax * y).sum())
        rhs = float((x * self.A_adjoint(y, tuple(x.shape[-2:]))).sum())
        return abs(lhs - rhs) / max(abs(lhs), 1e-30)

    # ------------------------------------------------------------------ periodic grid

    def otf(self, shape: tuple[int, int], *, dtype: torch.dtype = torch.float32,
            device: torch.device | str = "cpu") -> torch.Tensor:
        """Transfer function of the applied kernel on a periodic ``shape`` grid.

        The half spectrum (``torch.fft.rfft2`` layout, ``(H, W // 2 + 1)``) of the
        point-spread function that makes circular convolution equal correlation with
        the kernel (a kernel larger than the grid is folded, as periodic correlation
        does). ``dtype`` is the real precision. :meth:`from_otf` operators return
        their own transfer function (its grid must be ``shape``).
        """
        h, w = int(shape[0]), int(shape[1])
        if self._kernel is None:
            otf = self._fixed_otf
            if otf.shape[-2:] != (h, w // 2 + 1):
                raise BadInputError(f"this operator's transfer function {tuple(otf.shape[-2:])} is not the half "
                                    f"spectrum of a {h}×{w} grid")
            return otf
        dev = torch.device(device)
        key = ((h, w), dtype, dev)
        cached = not isinstance(self._kernel, torch.Tensor)
        if cached and key in self._otfs:
            return self._otfs[key]
        k = (self._kernel.to(dtype=torch.float64, device=dev) if isinstance(self._kernel, torch.Tensor)
             else torch.as_tensor(self._kernel, dtype=torch.float64, device=dev))
        kh, kw = k.shape
        # Correlation with k is circular convolution with flip(k): tap (u, v) of the flipped
        # kernel goes to (u - kh//2, v - kw//2) modulo the grid.
        rows = (torch.arange(kh, device=dev) - kh // 2) % h
        cols = (torch.arange(kw, device=dev) - kw // 2) % w
        psf = torch.zeros((h, w), dtype=torch.float64, device=dev).index_put(
            (rows[:, None], cols[None, :]), k.flip(-2, -1), accumulate=True)
        otf = torch.fft.rfft2(psf.to(dtype))
        if cached:
            self._otfs[key] = otf
        return otf

    def _require_periodic(self) -> None:
        if self.padding != "circular":
            raise BadOptionError(f"prox_l2 is exact only on the periodic grid (padding='circular'), not with "
                                 f"padding={self.padding!r}")

    def prox_l2_solver(self, y: torch.Tensor) -> ProxL2:
        """The cached solver of :meth:`prox_l2` for one LR image ``y`` (..., h, w): call it as ``solver(z, gamma)``."""
        self._require_periodic()
        _check_image(y, "LR image")
        s = self.scale
        real = torch.float64 if y.dtype == torch.float64 else torch.float32
        otf = self.otf((y.shape[-2] * s, y.shape[-1] * s), dtype=real, device=y.device)
        return ProxL2(y, otf, s)

    def prox_l2(self, z: torch.Tensor, y: torch.Tensor, gamma: float | torch.Tensor) -> torch.Tensor:
        """``argmin_x ‖A x − y‖² + gamma‖x − z‖²``, exact, on the periodic grid (``padding="circular"``).

        The set-up for ``y`` is kept, so a loop over ``z`` and ``gamma`` with one ``y`` pays it once.
        """
        self._require_periodic()
        cached = self._prox
        if cached is None or cached[0] is not y or cached[1] != y._version:
            self._prox = cached = (y, y._version, self.prox_l2_solver(y))
        solver = cached[2]
        if tuple(z.shape[-2:]) != solver.hr_shape:
            raise BadInputError(f"z of {tuple(z.shape[-2:])} is not on the ×{self.scale} grid {solver.hr_shape} "
                                f"of y")
        return solver(z, gamma)

    def __repr__(self) -> str:
        kernel = "otf" if self._kernel is None else "×".join(map(str, self._kernel.shape))
        return f"Degradation(kernel={kernel}, scale={self.scale}, padding={self.padding!r})"


def _neg_index(n: int, device: torch.device) -> torch.Tensor:
    return (-torch.arange(n, device=device)) % n


class ProxL2:
    """Exact solver of ``z = argmin_z ‖(z ⋆ k)↓s − y‖² + α‖z − x‖²`` on a periodic grid.

    With ``A = S·H`` (blur, then ``[::s, ::s]``), the minimiser is
    ``z = x + Aᵀ (A Aᵀ + α)⁻¹ (y − A x)``, and ``A Aᵀ`` is diagonal in the LR
    Fourier domain: the mean of the ``s × s`` aliased copies of ``|K|²``. This
    is the same solution as USRNet's data module (Zhang et al., CVPR 2020,
    eq. 7), written with real FFTs: one forward and one inverse HR transform
    per call.

    ``y``: (..., h, w) LR tensor; ``otf`` from :meth:`Degradation.otf` on the
    (s·h, s·w) grid. ``alpha`` (> 0) may be a float or a tensor broadcastable
    to (..., 1, 1), e.g. one weight per batch item.
    """

    def __init__(self, y: torch.Tensor, otf: torch.Tensor, scale: int) -> None:
        s = self.scale = int(scale)
        h, w = y.shape[-2:]
        self.lr_shape = (h, w)
        self.hr_shape = (h * s, w * s)
        if otf.shape[-2:] != (h * s, w * s // 2 + 1):
            raise BadInputError(f"OTF of shape {tuple(otf.shape[-2:])} is not the half spectrum of the "
                             f"{s}× grid {self.hr_shape} of an LR image of {(h, w)}")
        dev = otf.device
        self.otf = otf
        self._neg_rows = _neg_index(h, dev)
        big_w, half_w, small_half_w = w * s, w * s // 2 + 1, w // 2 + 1
        # Columns of the HR half spectrum that alias onto LR column c' (< w//2+1):
        # c' + j·w, taken directly when in the half spectrum, else by Hermitian symmetry.
        self._alias_cols = []
        for j in range(s):
            cols = np.arange(small_half_w) + j * w
            direct = cols < half_w
            self._alias_cols.append((
                torch.as_tensor(np.nonzero(direct)[0], device=dev), torch.as_tensor(cols[direct], device=dev),
                torch.as_tensor(np.nonzero(~direct)[0], device=dev),
                torch.as_tensor(big_w - cols[~direct], device=dev)))
        # HR half-spectrum column c takes LR column c mod w of the full LR spectrum.
        self._expand_cols = torch.as_tensor(np.arange(half_w) % w, device=dev)
        self.power = self.alias(otf.real ** 2 + otf.imag ** 2).real
        self.y_hat = torch.fft.rfft2(y)

    def alias(self, a: torch.Tensor) -> torch.Tensor:
        """HR half spectrum (..., H, W//2+1) of a real image → LR half spectrum (..., h, w//2+1)
        of its ``[::s, ::s]`` subsampling (the mean of the aliased copies)."""
        s = self.scale
        h, w = self.lr_shape
        rows = a.reshape(a.shape[:-2] + (s, h, a.shape[-1])).sum(dim=-3)
        out = torch.zeros(a.shape[:-2] + (h, w // 2 + 1), dtype=a.dtype, device=a.device)
        mirrored = None
        for dst, src, dst_m, src_m in self._alias_cols:
            out[..., dst] += rows.index_select(-1, src)
            if dst_m.numel():
                if mirrored is None:
                    mirrored = rows.index_select(-2, self._neg_rows).conj()
                out[..., dst_m] += mirrored.index_select(-1, src_m)
        return out / (s * s)

    def expand(self, g: torch.Tensor) -> torch.Tensor:
        """LR half spectrum (..., h, w//2+1) → HR half spectrum of its zero-filled upsampling
        (the LR spectrum tiled ``s × s`` times), (..., H, W//2+1)."""
        h, w = self.lr_shape
        tail = g[..., 1:w - w // 2].index_select(-2, self._neg_rows).conj().flip(-1)
        full = torch.cat([g, tail], dim=-1)
        cols = full.index_select(-1, self._expand_cols)
        return cols.repeat((1,) * (cols.dim() - 2) + (self.scale, 1))

    def __call__(self, x: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
        """The minimiser ``z`` for the proximal centre ``x`` (..., s·h, s·w) and weight ``alpha > 0``."""
        if isinstance(alpha, torch.Tensor):
            alpha = alpha.to(device=x.device)
        xh = torch.fft.rfft2(x)
        resid = (self.y_hat - self.alias(self.otf * xh)) / (self.power + alpha)
        return torch.fft.irfft2(xh + self.otf.conj() * self.expand(resid), s=self.hr_shape)
