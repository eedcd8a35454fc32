"""The method contract, as checks a test suite (this package's or a plugin's) can call.

``check_estimator(name)`` and ``check_sr_method(name)`` run a registered method
through the public API on a small synthetic image and assert what every method
owes its callers: the output's shape and dtype, progress reports often enough
to cancel, cancel honoured at the next report, the same seed giving the same
result, and an unknown option refused with a clear error.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from .errors import BadOptionError, Cancelled
from .types import Progress
from .vocabulary import Stage

__all__ = ["contract_image", "check_estimator", "check_sr_method", "MAX_REPORT_GAP_S"]

MAX_REPORT_GAP_S = 5.0
"""Longest silence allowed between two progress reports on the small contract image (cancel latency)."""


def contract_image(size: int = 64, seed: int = 0) -> np.ndarray:
    """A uint8 test image with edges of every orientation, blurred ×2 with a known anisotropic kernel."""
    from .physics import degrade, gaussian_kernel

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:2 * size, :2 * size] - size
    hr = 0.5 + 0.3 * np.sign(np.sin(np.hypot(yy, xx) / 5.0)) + 0.1 * rng.standard_normal((2 * size, 2 * size))
    hr = np.clip(hr, 0, 1)
    lr = degrade(hr, gaussian_kernel(13, 1.6, 0.9, 0.5), 2)
    return np.clip(np.round(lr * 255), 0, 255).astype(np.uint8)


def _collect(gen: Any) -> tuple[Any, list[tuple[float, Progress]]]:
    reports: list[tuple[float, Progress]] = []
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value, reports
        reports.append((time.perf_counter(), p))


def _check_reports(name: str, start: float, reports: list[tuple[float, Progress]]) -> None:
    assert reports, f"{name} yielded no progress"
    assert all(isinstance(p, Progress) for _, p in reports), f"{name} yielded something other than Progress"
    times = [start] + [t for t, _ in reports]
    gap = max(b - a for a, b in zip(times[:-1], times[1:]))
    assert gap < MAX_REPORT_GAP_S, f"{name} went {gap:.1f} s without a progress report (cancel would wait)"
    assert any(p.stage != "prepare" for _, p in reports), f"{name} reported no progress of its own"


def _check_cancel(run: Any) -> None:
    seen: list[Progress] = []

    def stop_at_own_report(p: Progress) -> bool:
        seen.append(p)
        return p.stage == Stage.PREPARE

    try:
        run(callback=stop_at_own_report)
    except Cancelled:
        pass
    else:
        raise AssertionError("a callback returning False did not cancel the run")
    own = [p for p in seen if p.stage != "prepare"]
    assert len(own) == 1, f"cancel was honoured only after {len(own)} reports"


def check_estimator(name: str, *, device: str = "cpu", image: np.ndarray | None = None, **options: Any) -> None:
    """Run the contract on the registered estimator ``name`` (``options``: to keep it short)."""
    from .api import estimate_kernel, iter_estimate_kernel
    from .types import KernelEstimate

    img = contract_image() if image is None else image
    if device != "cpu":
        # The first use of each GPU kernel loads it (seconds on a cold CUDA context): once per process,
        # not the method's silence, so one untimed run goes first.
        estimate_kernel(img, 2, estimator=name, device=device, seed=0, threads=1, **options)
    start = time.perf_counter()
    est, reports = _collect(iter_estimate_kernel(img, 2, estimator=name, device=device, seed=0, threads=1,
                                                 report_every=1, **options))
    _check_reports(name, start, reports)
    assert isinstance(est, KernelEstimate), f"{name} returned {type(est).__name__}, not KernelEstimate"
    k = np.asarray(est.kernel)
    assert k.ndim == 2 and k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1, f"{name}: kernel shape {k.shape}"
    assert np.isfinite(k).all() and k.min() >= 0 and abs(k.sum() - 1) < 1e-6, f"{name}: not a normalised kernel"
    assert est.method == name and est.scale == 2
    x4 = est.kernel_for(4)
    assert x4.shape == (3 * k.shape[0] - 2,) * 2 and abs(x4.sum() - 1) < 1e-6
    if est.dmap is not None:
        assert est.dmap.shape == img.shape[:2], f"{name}: D-map {est.dmap.shape} for an image {img.shape}"
    again = estimate_kernel(img, 2, estimator=name, device=device, seed=0, threads=1, **options)
    assert np.array_equal(again.kernel, est.kernel), f"{name}: the same seed gave another kernel"
    _check_cancel(lambda callback: estimate_kernel(img, 2, estimator=name, device=device, threads=1,
                                                   callback=callback, **options))
    try:
        estimate_kernel(img, 2, estimator=name, device=device, no_such_option=1, **options)
    except BadOptionError as exc:
        assert "no_such_option" in str(exc), f"{name}: the error does not name the option: {exc}"
    else:
        raise AssertionError(f"{name} accepted an unknown option")
    _check_tiles(name, img, device, options)


def _check_tiles(name: str, img: np.ndarray, device: str, options: dict[str, Any]) -> None:
    """A kernel map of the contract image: one valid kernel per tile, in one pass where the method has one."""
    from .kernel_map import estimate_kernel_map

    h, w = img.shape[:2]
    tile = max(48, min(h, w) // 2)
    field = estimate_kernel_map(img, 2, estimator=name, device=device, seed=0, threads=1, tile=tile, overlap=0,
                                **options)
    assert field.kernels.shape[:2] == field.grid and field.grid[0] * field.grid[1] >= 2, f"{name}: map {field.grid}"
    assert np.allclose(field.kernels.sum((-2, -1)), 1.0) and field.kernels.min() >= 0, f"{name}: map kernels"


def check_sr_method(name: str, *, device: str = "cpu", scale: int = 2, **options: Any) -> None:
    """Run the contract on the registered SR method ``name``."""
    from .api import iter_super_resolve, super_resolve
    from .physics import gaussian_kernel
    from .registry import SR_METHODS
    from .types import SRResult

    img = contract_image(32)
    kernel = gaussian_kernel(13, 1.4, 1.0, 0.3)
    if device != "cpu":  # as for estimators: the device's start-up is not the method's silence
        super_resolve(img, kernel, scale, sr_method=name, device=device, seed=0, threads=1, **options)
    start = time.perf_counter()
    res, reports = _collect(iter_super_resolve(img, kernel, scale, sr_method=name, device=device, seed=0,
                                               threads=1, **options))
    _check_reports(name, start, reports)
    assert isinstance(res, SRResult) and res.method == name
    assert res.image.shape == (img.shape[0] * scale, img.shape[1] * scale), f"{name}: shape {res.image.shape}"
    assert res.image.dtype == img.dtype, f"{name}: uint8 in, {res.image.dtype} out"
    as_float = super_resolve(img.astype(np.float32) / 255, kernel, scale, sr_method=name, device=device, seed=0,
                             threads=1, **options)
    assert as_float.image.dtype == np.float32 and np.isfinite(as_float.image).all()
    again = super_resolve(img, kernel, scale, sr_method=name, device=device, seed=0, threads=1, **options)
    assert np.array_equal(again.image, res.image), f"{name}: the same seed gave another image"
    _check_cancel(lambda callback: super_resolve(img, kernel, scale, sr_method=name, device=device, threads=1,
                                                 callback=callback, **options))
    try:
        super_resolve(img, kernel, scale, sr_method=name, device=device, no_such_option=1, **options)
    except BadOptionError as exc:
        assert "no_such_option" in str(exc), f"{name}: the error does not name the option: {exc}"
    else:
        raise AssertionError(f"{name} accepted an unknown option")
    if scale in (2, 4):
        # A kernel map: each half of the image with its own kernel, region by region.
        from .fields import KernelField

        h, w = img.shape[:2]
        field = KernelField(kernels=np.stack([gaussian_kernel(13, 0.8), kernel])[None], centres_y=[(h - 1) / 2],
                            centres_x=[w / 4, 3 * w / 4], boxes=np.zeros((1, 2, 4), dtype=int),
                            confidence=np.ones((1, 2)), trust=np.ones((1, 2)), global_kernel=kernel,
                            image_shape=(h, w))
        mapped = super_resolve(img, field, scale, sr_method=name, device=device, seed=0, threads=1, safe=False,
                               **options)
        assert mapped.image.shape == res.image.shape, f"{name}: SR with a map gave {mapped.image.shape}"
        # bicubic interpolation ignores kernels, a map as well
        assert not SR_METHODS.get(name).uses_kernel or mapped.options["regions"] > 1, f"{name}: a map was not followed"
