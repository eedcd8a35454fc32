"""Device selection: one rule used everywhere."""
from __future__ import annotations

import torch


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
        name = available_devices()[1]
        return torch.device(name)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but PyTorch sees no CUDA GPU here; use device='auto' or 'cpu'")
    if dev.type == "mps" and "mps" not in available_devices():
        raise RuntimeError("device 'mps' was requested but Apple MPS is not available here; use device='auto' or 'cpu'")
    return dev
