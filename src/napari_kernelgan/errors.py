"""The errors a user can act on.

Everything the CLI and the widgets turn into one clear line (or notification)
derives from :class:`KernelGANError`; any other exception is a bug and keeps
its traceback. Each class also derives from the built-in type that older code
caught (``ValueError``, ``FileNotFoundError``, ...), so ``except ValueError``
keeps working.

A message that names a parameter holds it as a :class:`Param` among its words
(``BadInputError(Param("channel_axis", 5), " is out of range ...")``), and each
front end says it its own way (:func:`user_message`): the API ``channel_axis=5``,
the command line ``--channel-axis 5``, the napari widgets ``channel axis 5``.
``str(exc)`` is the API's wording.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["KernelGANError", "BadInputError", "BadOptionError", "MissingFileError", "WeightsMissingError",
           "OutputError", "Cancelled", "MethodUnavailableError", "Param", "Words", "Front", "render",
           "reworded", "user_message", "user_words", "cli_flag", "GUI_LABELS"]

Front = Literal["api", "cli", "gui"]


class _NoValue:
    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Any = _NoValue()


@dataclass(frozen=True)
class Param:
    """A parameter named in a message: ``name`` as the API spells it, optionally the ``value`` given
    (``alternatives``: more values offered, joined with "or"). ``bare``: the name alone, as a noun
    ("channel_axis and stack_axis must differ"); ``option``: a method option (``--set KEY=VALUE``)."""

    name: str
    value: Any = NO_VALUE
    alternatives: tuple[Any, ...] = ()
    bare: bool = False
    option: bool = False

    def say(self, front: Front = "api", flags: Mapping[str, str] | None = None) -> str:
        """The parameter in ``front``'s words; ``flags`` maps names to command-line flags (see
        :func:`cli_flag`)."""
        values = () if self.value is NO_VALUE else (self.value, *self.alternatives)
        if front == "cli":
            if self.option:
                return f"--set {self.name}=" + " or ".join(map(str, values))
            flag = cli_flag(self.name, flags or {})
            return flag if self.bare or not values else f"{flag} " + " or ".join(map(str, values))
        if front == "gui":
            label = GUI_LABELS.get(self.name, self.name.replace("_", " "))
            return label if self.bare or not values else f"{label} " + " or ".join(map(str, values))
        if self.bare:
            return self.name
        return f"{self.name}=" + " or ".join(repr(v) if isinstance(v, str) else str(v) for v in values)


Words = tuple["str | Param", ...]
"""A message as words: text and the parameters it names."""

GUI_LABELS: dict[str, str] = {"channel_axis": "channel axis", "stack_axis": "stack axis", "axes": "axes",
                              "device": "device", "output": "output file"}
"""Parameter name → the label of the napari widgets' field for it."""


def cli_flag(name: str, flags: Mapping[str, str]) -> str:
    """The command-line flag of parameter ``name``: from ``flags`` (the command line's table, taken from its
    parsers: :data:`napari_kernelgan.cli.errors.FLAGS`), else ``--name-with-dashes``."""
    return flags.get(name) or "--" + name.replace("_", "-")


def render(words: Words | str, front: Front = "api", flags: Mapping[str, str] | None = None) -> str:
    """A message's words as one front end says them."""
    if isinstance(words, str):
        return words
    return "".join(w.say(front, flags) if isinstance(w, Param) else str(w) for w in words)


class KernelGANError(Exception):
    """Base of the errors whose message is meant for the user.

    Takes the message as words: text and :class:`Param` (the parameters it is about), rendered per
    front end by :func:`user_message`; ``str(exc)`` is the API's wording.
    """

    def __init__(self, *words: str | Param) -> None:
        self.words: Words = tuple(words)
        super().__init__(render(self.words))

    def __reduce__(self) -> Any:  # keep the words across pickling (errors recorded on a Dask worker)
        return (_rebuild, (type(self), self.words, self.__dict__))

    @property
    def params(self) -> tuple[Param, ...]:
        """The parameters the message names, in order."""
        return tuple(w for w in self.words if isinstance(w, Param))

    @property
    def param(self) -> str | None:
        """The name of the first parameter the message names (a widget can point at its field)."""
        return self.params[0].name if self.params else None


def _rebuild(cls: type[KernelGANError], words: Words, state: dict[str, Any]) -> KernelGANError:
    exc = cls(*words)
    exc.__dict__.update(state)
    return exc


def reworded(exc: KernelGANError, *before: str | Param) -> KernelGANError:
    """An error of ``exc``'s type whose message is ``before`` followed by ``exc``'s words (its cause ``exc``)."""
    new = _rebuild(type(exc), (*before, *exc.words), {k: v for k, v in exc.__dict__.items() if k != "words"})
    new.__cause__ = exc
    return new


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


def user_words(exc: BaseException) -> Words | None:
    """The words of the message for a user-facing error (:func:`render` them), or ``None`` for a bug."""
    text = str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in text.lower():
        first = text.splitlines()[0] if text else type(exc).__name__
        return (f"Out of memory: {first}. Try a smaller image or slice, or another device.",)
    if isinstance(exc, KernelGANError):
        return exc.words if text else (type(exc).__name__,)
    return None


def user_message(exc: BaseException, front: Front = "api", flags: Mapping[str, str] | None = None) -> str | None:
    """The one-line (or short) message for a user-facing error in ``front``'s words, or ``None`` for a bug.

    Out-of-memory errors are user-facing too: they get advice instead of a traceback.
    """
    words = user_words(exc)
    return None if words is None else render(words, front, flags)
