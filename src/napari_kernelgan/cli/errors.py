"""How the command line reports errors: one ``error: <file>: <message>`` line for an error a user can act on,
in the command line's words (its flags, not the API's keywords), and exit status 1; a bug keeps its
traceback. The flags come from the parsers as they are built (:data:`FLAGS`)."""
from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import WeightsMissingError, render, user_message

__all__ = ["INTERRUPTED", "FLAGS", "flags_of", "about", "error_line", "report", "result_error"]

INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)

FLAGS: dict[str, str] = {}
"""Parameter name (an argparse ``dest``, as the API names it) → the command line's flag, from the parsers
built (:func:`flags_of`); a name not there is spelled ``--name-with-dashes``."""


def flags_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each destination of ``parser``'s options (and its subcommands' options) → its long flag; where two
    flags share one (an alias), the first defined."""
    flags: dict[str, str] = {}
    for action in parser._actions:
        longs = [s for s in action.option_strings if s.startswith("--")]
        if longs and action.dest not in (argparse.SUPPRESS, "help"):
            flags.setdefault(action.dest, longs[0])
        for sub in getattr(action, "choices", None) or {}:
            if isinstance(action.choices, dict) and isinstance(action.choices[sub], argparse.ArgumentParser):
                for dest, flag in flags_of(action.choices[sub]).items():
                    flags.setdefault(dest, flag)
    return flags


@contextlib.contextmanager
def about(path: str | Path | None) -> Iterator[None]:
    """Errors raised in the block are about ``path`` (the innermost ``about`` wins)."""
    try:
        yield
    except Exception as exc:
        if path is not None and not hasattr(exc, "_cli_path"):
            with contextlib.suppress(AttributeError):  # a few C-level exceptions take no attributes
                exc._cli_path = str(path)  # type: ignore[attr-defined]
        raise


def error_line(exc: BaseException) -> str | None:
    """``error: <file>: <message>`` for an error the user can act on; ``None`` for a bug."""
    message = user_message(exc, "cli", FLAGS)
    if message is None:
        return None
    # Missing weights are not about the input file; the message names the weight file itself.
    path = None if isinstance(exc, WeightsMissingError) else getattr(exc, "_cli_path", None)
    return f"error: {f'{path}: ' if path else ''}{message}"


def report(exc: BaseException) -> bool:
    """Print the error line of a user error and return True; False for a bug (the caller re-raises it)."""
    line = error_line(exc)
    if line is not None:
        print(line, file=sys.stderr)
    return line is not None


def result_error(result: Any) -> None:
    """Print the error line of a batch engine's failed input (:class:`~..batch.InputResult`)."""
    path = f"{result.error_path}: " if result.error_path else ""
    print(f"error: {path}{render(result.error_words or (result.error,), 'cli', FLAGS)}", file=sys.stderr)
