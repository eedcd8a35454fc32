"""Declared value ranges of method options (after scikit-learn's ``Interval`` / ``StrOptions``).

A method declares ``ranges={"quantile": Interval(float, 0, 1, closed="neither")}`` in its
:func:`~napari_kernelgan.registry.register` call; :meth:`~napari_kernelgan.registry.MethodSpec.resolve`
then refuses a value outside with one message for every method and option::

    kernel estimator 'edges': quantile must be in (0, 1); got 1.5
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import BadOptionError

__all__ = ["Constraint", "Interval", "Options", "check_value", "check_values"]

_CLOSED = ("both", "left", "right", "neither")


class Constraint(Protocol):
    """What :func:`check_value` needs of a declared range."""

    def __contains__(self, value: object) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Interval:
    """Numbers of ``type`` (``int`` or ``float``) between ``low`` and ``high`` (``None``: unbounded).

    ``closed``: which ends belong to it, ``"both"`` (default), ``"left"``, ``"right"`` or ``"neither"``.
    An ``int`` interval takes integers only; a ``float`` one any finite real number (not a bool).
    """

    type: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def __post_init__(self) -> None:
        if self.type not in (int, float):
            raise ValueError(f"an Interval holds int or float values, not {self.type!r}")
        if self.closed not in _CLOSED:
            raise ValueError(f"closed must be one of {', '.join(_CLOSED)}, got {self.closed!r}")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"an empty interval: {self.low} > {self.high}")

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.type is int and not isinstance(value, numbers.Integral):
            return False
        v = float(value)
        if not math.isfinite(v):  # no option takes an infinite or undefined value
            return False
        if self.low is not None and (v < self.low or (v == self.low and self.closed in ("right", "neither"))):
            return False
        return not (self.high is not None
                    and (v > self.high or (v == self.high and self.closed in ("left", "neither"))))

    def __str__(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        low = "-∞" if self.low is None else _number(self.low)
        high = "∞" if self.high is None else _number(self.high)
        return f"{left}{low}, {high}{right}"

    def describe(self) -> str:
        """``"in (0, 1)"``, ``"an integer in [1, ∞)"``: what follows "must be" in a message."""
        return f"{'an integer ' if self.type is int else ''}in {self}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values (strings, usually)."""

    values: tuple[Any, ...]

    def __init__(self, *values: Any) -> None:
        object.__setattr__(self, "values", tuple(values))

    def __contains__(self, value: object) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.values))


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def check_value(owner: str, key: str, value: Any, constraint: Constraint) -> None:
    """Raise :class:`BadOptionError` ``"<owner>: <key> must be <range>; got <value>"`` unless ``value`` (not
    ``None``, which means "the default decides") lies in ``constraint``."""
    if value is not None and value not in constraint:
        raise BadOptionError(f"{owner}: {key} must be {constraint.describe()}; got {value!r}")


def check_values(owner: str, values: Mapping[str, Any], ranges: Mapping[str, Constraint]) -> None:
    """:func:`check_value` for every option of ``values`` that has a declared range."""
    for key, constraint in ranges.items():
        if key in values:
            check_value(owner, key, values[key], constraint)
