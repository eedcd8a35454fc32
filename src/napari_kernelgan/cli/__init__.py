"""Command line: ``napari-kernelgan estimate | sr | blind-sr | batch | demo``. A thin layer over :mod:`..api`.

The options of each method come from its spec in :mod:`..registry` (``--set KEY=VALUE``), so a new
method needs no change here. Only the subcommand named on the command line is built, and only then
are the registries (and PyTorch) loaded: ``napari-kernelgan --help`` and ``--version`` stay instant.
Errors a user can act on (:class:`~..errors.KernelGANError`, out of memory) print one
``error: <file>: <message>`` line, in the command line's words, and exit 1; anything else is a bug and keeps
its traceback.

Modules: :mod:`.parsers` (the parsers and method help), :mod:`.commands` (what each command does),
:mod:`.output` (progress bar and printed results), :mod:`.errors` (error lines).
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from .errors import INTERRUPTED, about, error_line, report
from .output import ProgressBar, progress_bar
from .parsers import COMMANDS, PROG, build_parser, command_in

__all__ = ["main", "build_parser", "COMMANDS", "PROG", "INTERRUPTED", "about", "error_line", "report",
           "ProgressBar", "progress_bar", "command_in"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 1 for a user error, 130 when interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(command_in(argv)).parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("error: interrupted; no partial output was left", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:
        if not report(exc):
            raise  # a bug: keep its traceback
        return 1
