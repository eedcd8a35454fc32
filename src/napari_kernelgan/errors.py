"""The errors a user can act on.

Everything the CLI and the widgets turn into one clear line (or notification)
derives from :class:`KernelGANError`; any other exception is a bug and keeps
its traceback. Each class also derives from the built-in type that older code
caught (``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError``
keeps working.
"""
from __future__ import annotations

__all__ = ["KernelGANError", "BadInputError", "BadOptionError", "MissingFileError", "WeightsMissingError",
           "OutputError", "Cancelled", "MethodUnavailableError", "user_message"]


class KernelGANError(Exception):
    """Base of the errors whose message is meant for the user."""


class BadInputError(KernelGANError, ValueError):
    """The image, kernel or file given cannot be used (wrong shape, dtype, NaNs, corrupt file...)."""


class MissingFileError(BadInputError, FileNotFoundError):
    """An input file (image, kernel) does not exist."""


class BadOptionError(KernelGANError, ValueError, TypeError):
    """An unknown method, an unknown option or an option value out of range."""


class MethodUnavailableError(BadOptionError):
    """A method whose module failed to import (a dependency is missing); the message says why."""


class WeightsMissingError(KernelGANError, FileNotFoundError):
    """Pretrained weights could not be found; the message says which file to get and where to put it."""


class OutputError(KernelGANError, OSError):
    """An output could not be written (permission denied, disk full...); nothing half-written is left."""


class Cancelled(KernelGANError, RuntimeError):
    """Raised when a running estimate or super-resolution is cancelled by the caller."""


def user_message(exc: BaseException) -> str | None:
    """The one-line (or short) message for a user-facing error, or ``None`` for a bug.

    Out-of-memory errors are user-facing too: they get advice instead of a traceback.
    """
    text = str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        first = text.splitlines()[0] if text else type(exc).__name__
        return f"Out of memory: {first}. Try a smaller image or slice, or another device."
    if isinstance(exc, KernelGANError):
        return text or type(exc).__name__
    return None
