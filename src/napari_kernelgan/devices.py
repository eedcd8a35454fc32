"""Device and CPU-thread selection: one rule each, used everywhere."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from .errors import BadOptionError, Param

THREADS_ENV = "NAPARI_KERNELGAN_THREADS"

__all__ = ["available_devices", "resolve_device", "usable_cores", "choose_threads", "torch_threads", "THREADS_ENV"]


def available_devices() -> list[str]:
    """Devices usable on this machine, best first, plus ``auto``."""
    out = ["auto"]
    if torch.cuda.is_available():
        out.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    out.append("cpu")
    return out


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` → CUDA, then MPS, then CPU. An explicit device that is absent is an error."""
    if device is None or str(device) == "auto":
        return torch.device(available_devices()[1])
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BadOptionError(f"unknown device {device!r}; choose one of: {', '.join(available_devices())}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadOptionError("device 'cuda' was requested but PyTorch sees no CUDA GPU here; use ",
                             Param("device", "auto", ("cpu",)))
    if dev.type == "mps" and "mps" not in available_devices():
        raise BadOptionError("device 'mps' was requested but Apple MPS is not available here; use ",
                             Param("device", "auto", ("cpu",)))
    return dev


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def choose_threads(requested: int | None = None) -> int:
    """PyTorch's CPU threads for one run.

    ``requested`` (API ``threads=``, CLI ``--threads``, the widget's advanced
    option) wins, then ``$NAPARI_KERNELGAN_THREADS``. Otherwise the cores this
    process may use, less the ones other work keeps busy (the 1-minute load
    average), at least one. Why: OpenMP threads spin-wait for each other, so
    asking for more threads than there are free cores made a 2-core machine
    with one busy core run 6-7× slower than with a single thread.
    """
    for value, origin in ((requested, "threads"), (os.environ.get(THREADS_ENV) or None, THREADS_ENV)):
        if value is None:
            continue
        try:
            n = int(value)
        except (TypeError, ValueError):
            n = 0
        if isinstance(value, bool) or n < 1:
            raise BadOptionError(f"{origin} must be a positive integer, got {value!r}")
        return n
    cores = usable_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


@contextlib.contextmanager
def torch_threads(requested: int | None = None) -> Iterator[int]:
    """Run a block with :func:`choose_threads` intra-op threads; the previous count is restored after."""
    n = choose_threads(requested)
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def reproducible(device: torch.device) -> Iterator[None]:
    """Run a block with cuDNN's deterministic algorithms on a CUDA device (so the same seed gives the
    same result there too); the previous settings are restored after. Nothing changes on other devices."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    old = (cudnn.deterministic, cudnn.benchmark)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = old
