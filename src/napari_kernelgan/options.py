"""Typed option values from text: one parser for the CLI's ``--set``, the widgets and the benchmarks."""
from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any

from .errors import BadOptionError

__all__ = ["parse_value", "parse_assignments"]


def parse_value(text: Any) -> Any:
    """``'3'`` → 3, ``'0.5'`` → 0.5, ``'true'``/``'false'`` → bool, ``'None'`` or empty → None, ``'(1, 2)'`` → tuple;
    anything else stays text. Non-text values pass through."""
    if not isinstance(text, str):
        return text
    s = text.strip()
    low = s.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if s in ("None", ""):
        return None
    try:
        value = ast.literal_eval(s)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return s
    return value if isinstance(value, (int, float, bool, tuple, list)) else s


def parse_assignments(items: Iterable[str], *, flag: str = "--set") -> dict[str, Any]:
    """``['sigma=2', 'preset=fast']`` → ``{'sigma': 2, 'preset': 'fast'}`` (values via :func:`parse_value`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise BadOptionError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key] = parse_value(value)
    return out
