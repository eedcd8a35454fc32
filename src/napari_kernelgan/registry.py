"""Method specs and the registries of kernel estimators and SR methods.

A method is one module that calls :func:`register` on its generator function::

    @register("edges", kind="estimator", defaults={"quantile": 0.25}, summary="...")
    def edges(frames, *, scale, device, seed, report_every, quantile): ...

Every module in ``napari_kernelgan/estimators/`` and ``napari_kernelgan/sr/``
(except ``_private`` ones) is imported on its own the first time a registry is
asked for its methods, then every module or function named by the entry-point
groups :data:`ESTIMATOR_ENTRY_POINTS` and :data:`SR_ENTRY_POINTS` of installed
packages. A module that fails to import is listed, with its reason, in
:attr:`Registry.unavailable`, and the others still load. The API, the CLI and
the widgets list and call what is registered here, so a new method is one new
file (or one installed package) and nothing else.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .constraints import Constraint, check_values
from .errors import BadOptionError, MethodUnavailableError

if TYPE_CHECKING:  # the contracts' types; importing them here would pull in torch
    import numpy as np
    import torch

    from .types import KernelEstimate, Progress

__all__ = ["MethodSpec", "Registry", "Estimator", "SRMethod", "ESTIMATORS", "SR_METHODS", "register", "register_tiles",
           "ESTIMATOR_ENTRY_POINTS", "SR_ENTRY_POINTS", "KINDS"]

ESTIMATOR_ENTRY_POINTS = "napari_kernelgan.estimators"
SR_ENTRY_POINTS = "napari_kernelgan.sr_methods"


class Estimator(Protocol):
    """What the API calls for a kernel estimator.

    ``frames``: float32 ``(N, C, H, W)`` in [0, 1], frames that share one kernel.
    ``options``: the method's declared defaults updated with what the caller gave.
    Yields :class:`~napari_kernelgan.types.Progress` (at least every second or so,
    so a caller can cancel) and returns a :class:`~napari_kernelgan.types.KernelEstimate`
    whose ``kernel`` is the ×2 kernel (centred, correlation orientation).
    """

    def __call__(self, frames: np.ndarray, *, scale: int, device: torch.device, seed: int, report_every: int,
                 **options: Any) -> Generator[Progress, None, KernelEstimate]: ...


class SRMethod(Protocol):
    """What the API calls for a non-blind SR method.

    ``frames``: float32 ``(N, C, h, w)`` in [0, 1]; ``kernel``: the validated
    stored kernel for ``scale``. Yields progress and returns float32
    ``(N, C, s·h, s·w)``.
    """

    def __call__(self, frames: np.ndarray, kernel: np.ndarray, scale: int, *, device: torch.device, seed: int,
                 **options: Any) -> Generator[Progress, None, np.ndarray]: ...


@dataclass(frozen=True)
class MethodSpec:
    """Everything a method declares: its function, its options and how to show them.

    ``defaults``: every option the method takes and its default (``None``: the
    method or its preset decides). ``presets``: named option sets, offered as the
    ``preset`` option. ``main``: the options a form shows first (the rest go under
    *Advanced*). ``choices``: fixed choices of an option. ``hidden``: options that
    are not typed in a form (arrays, say). ``weights``: weight keys the method
    loads (see :mod:`napari_kernelgan.weights`). ``blind_defaults``: for SR methods,
    the options used when the kernel is an estimate rather than a measurement.
    ``seeded``: whether the result depends on the seed. ``tiles``: for estimators, an optional
    function estimating many tiles of one image in one pass (see :func:`register_tiles`).
    ``help``: a line per option; for an option whose default is ``None``, a clause
    ``"unset: <what decides>"`` is what forms show in the empty field. ``uses_kernel``: for SR
    methods, ``False`` where the method ignores the kernel (bicubic interpolation): it runs without
    one, and the kernel safeguards (which compare a kernel's result with interpolation) do not apply.
    ``ranges``: the values an option accepts (:class:`~napari_kernelgan.constraints.Interval`,
    :class:`~napari_kernelgan.constraints.Options`), checked by :meth:`resolve`.
    """

    name: str
    kind: str
    fn: Callable[..., Generator]
    summary: str = ""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    main: tuple[str, ...] = ()
    choices: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    help: Mapping[str, str] = field(default_factory=dict)
    hidden: tuple[str, ...] = ()
    weights: tuple[str, ...] = ()
    scales: tuple[int, ...] = (2, 4)
    blind_defaults: Mapping[str, Any] = field(default_factory=dict)
    seeded: bool = True
    module: str = ""
    tiles: Callable[..., Generator] | None = None
    uses_kernel: bool = True
    ranges: Mapping[str, Constraint] = field(default_factory=dict)

    @property
    def form_options(self) -> dict[str, Any]:
        """Options a form shows, with their defaults (plain values only)."""
        return {k: v for k, v in self.defaults.items()
                if k not in self.hidden and (v is None or isinstance(v, (bool, int, float, str)))}

    def resolve(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``defaults`` updated with ``options``.

        Unknown names raise :class:`BadOptionError` listing the accepted ones; ``None``
        for an option the method does not declare is dropped (``None`` means "default").
        A value given as text (from a form or the command line) is converted to the
        type of a typed default. A value outside its declared range (``ranges``) raises
        :class:`BadOptionError` ``"<kind> '<name>': <option> must be in <range>; got <value>"``.
        """
        given = {k: v for k, v in options.items() if not (v is None and k not in self.defaults)}
        unknown = sorted(set(given) - set(self.defaults))
        if unknown:
            accepted = ", ".join(sorted(self.defaults)) or "none"
            raise BadOptionError(f"{self.kind_label} {self.name!r} got unknown option(s) "
                                 f"{', '.join(map(repr, unknown))}; accepted options: {accepted}")
        merged = dict(self.defaults)
        for key, value in given.items():
            merged[key] = self._coerce(key, value)
            allowed = self.choices.get(key)
            if allowed and merged[key] not in allowed and merged[key] is not None:
                # the same words as a declared Options range; None (the default decides) goes unsaid
                raise BadOptionError(f"{self.kind_label} {self.name!r}: {key} must be one of "
                                     f"{', '.join(str(c) for c in allowed if c is not None)}; got {value!r}")
        check_values(f"{self.kind_label} {self.name!r}", merged, self.ranges)
        return merged

    def value_type(self, key: str) -> type | None:
        """The type an option's values have: its default's, else its presets', else its declared
        interval's (``None``: any)."""
        for value in (self.defaults.get(key), *(p.get(key) for p in self.presets.values())):
            if value is not None:
                return type(value)
        return getattr(self.ranges.get(key), "type", None)

    def _coerce(self, key: str, value: Any) -> Any:
        target = self.value_type(key)
        if value is None or target is None or target is str:
            return value
        if isinstance(value, str):
            from .options import parse_value

            value = parse_value(value)
            if value is None:
                return None
        ok = (isinstance(value, bool) if target is bool else
              isinstance(value, (int, float)) and not isinstance(value, bool) if target is float else
              isinstance(value, int) and not isinstance(value, bool) if target is int else
              isinstance(value, (tuple, list)) if target in (tuple, list) else True)
        if not ok:
            raise BadOptionError(f"{self.kind_label} {self.name!r}: {key} must be a {target.__name__}, got {value!r}")
        return float(value) if target is float else tuple(value) if target is tuple else value

    @property
    def kind_label(self) -> str:
        return KINDS[self.kind]


KINDS = {"estimator": "kernel estimator", "sr_method": "SR method"}


class Registry:
    """Method specs of one kind, discovered from the package's modules and entry points."""

    def __init__(self, kind: str, packages: tuple[str, ...], entry_point_group: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}")
        self.kind = kind
        self.label = KINDS[kind]
        self.packages = packages
        self.entry_point_group = entry_point_group
        self._specs: dict[str, MethodSpec] = {}
        self._unavailable: dict[str, str] = {}
        self._discovered = False
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- registration

    def add(self, spec: MethodSpec) -> MethodSpec:
        """Register ``spec``; a name taken by another module is an error."""
        if spec.kind != self.kind:
            raise ValueError(f"{spec.name!r} is a {spec.kind}, not a {self.kind}")
        old = self._specs.get(spec.name)
        if old is not None and old.module != spec.module:
            raise ValueError(f"{self.label} {spec.name!r} is already registered by {old.module}")
        self._specs[spec.name] = spec
        self._unavailable.pop(spec.name, None)
        return spec

    def remove(self, name: str) -> MethodSpec | None:
        """Unregister ``name`` (a plugin being unloaded, a test cleaning up); returns its spec."""
        with self._lock:
            return self._specs.pop(name, None)

    # ----------------------------------------------------------------- discovery

    def _import(self, label: str, load: Callable[[], Any]) -> None:
        try:
            load()
        except Exception as exc:  # a broken or incomplete method must not hide the others
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self._unavailable.setdefault(label, reason)

    def discover(self) -> None:
        """Import every method module once (thread-safe; later calls do nothing)."""
        with self._lock:
            if self._discovered:
                return
            self._discovered = True
            for package in self.packages:
                pkg = importlib.import_module(package)
                for info in pkgutil.iter_modules(pkg.__path__, package + "."):
                    short = info.name.rsplit(".", 1)[-1]
                    if not short.startswith("_"):
                        self._import(short, lambda name=info.name: importlib.import_module(name))
            for ep in importlib.metadata.entry_points(group=self.entry_point_group):
                self._import(ep.name, ep.load)

    def refresh(self) -> None:
        """Discover again (after installing a plugin package in a running session)."""
        with self._lock:
            importlib.invalidate_caches()
            self._discovered = False
            self.discover()

    # ----------------------------------------------------------------- lookup

    def names(self) -> list[str]:
        """Names of the available methods, in registration order."""
        self.discover()
        return list(self._specs)

    def specs(self) -> list[MethodSpec]:
        self.discover()
        return list(self._specs.values())

    @property
    def unavailable(self) -> dict[str, str]:
        """Modules (or entry points) that failed to load, with the reason."""
        self.discover()
        return {k: v for k, v in self._unavailable.items() if k not in self._specs}

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._specs

    def get(self, name: str) -> MethodSpec:
        """The spec of ``name``; an unknown or unavailable name raises a clear :class:`BadOptionError`."""
        self.discover()
        try:
            return self._specs[name]
        except KeyError:
            pass
        if name in self._unavailable:
            raise MethodUnavailableError(f"{self.label} {name!r} is unavailable: {self._unavailable[name]}")
        raise BadOptionError(f"unknown {self.label} {name!r}; choose one of: {self.describe_choices()}")

    def describe_choices(self) -> str:
        """``'kernelgan, edges'`` plus any unavailable ones with their reason."""
        text = ", ".join(self.names()) or "none"
        missing = self.unavailable
        if missing:
            text += "; unavailable: " + "; ".join(f"{k} ({v})" for k, v in missing.items())
        return text


ESTIMATORS = Registry("estimator", ("napari_kernelgan.estimators",), ESTIMATOR_ENTRY_POINTS)
SR_METHODS = Registry("sr_method", ("napari_kernelgan.sr",), SR_ENTRY_POINTS)
_REGISTRIES = {"estimator": ESTIMATORS, "sr_method": SR_METHODS}


def register(name: str, *, kind: str, summary: str = "", defaults: Mapping[str, Any] | None = None,
             presets: Mapping[str, Mapping[str, Any]] | None = None, main: tuple[str, ...] = (),
             choices: Mapping[str, tuple[Any, ...]] | None = None, help: Mapping[str, str] | None = None,
             hidden: tuple[str, ...] = (), weights: tuple[str, ...] = (), scales: tuple[int, ...] | None = None,
             blind_defaults: Mapping[str, Any] | None = None, seeded: bool = True,
             uses_kernel: bool = True, ranges: Mapping[str, Constraint] | None = None,
             ) -> Callable[[Callable[..., Generator]], Callable[..., Generator]]:
    """Decorator: register a generator function as an ``"estimator"`` or ``"sr_method"``.

    With ``presets``, a ``preset`` option is added (default: the first preset, unless
    ``defaults`` names one) whose choices are the preset names. ``summary`` defaults
    to the first line of the function's docstring. ``ranges`` names options declared in ``defaults``.
    """
    if kind not in _REGISTRIES:
        raise ValueError(f"kind must be one of {', '.join(_REGISTRIES)}, got {kind!r}")
    defaults = dict(defaults or {})
    choices = dict(choices or {})
    presets = {k: dict(v) for k, v in (presets or {}).items()}
    if presets:
        defaults.setdefault("preset", next(iter(presets)))
        choices.setdefault("preset", tuple(presets))
        main = ("preset",) + tuple(m for m in main if m != "preset")
    if scales is None:
        scales = (2, 4) if kind == "estimator" else (2, 3, 4)
    ranges = dict(ranges or {})
    if set(ranges) - set(defaults):
        raise ValueError(f"{name!r} declares ranges of options it does not take: "
                         f"{', '.join(sorted(set(ranges) - set(defaults)))}")

    def deco(fn: Callable[..., Generator]) -> Callable[..., Generator]:
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = MethodSpec(name=name, kind=kind, fn=fn, summary=summary or (doc[0] if doc else ""),
                          defaults=defaults, presets=presets, main=tuple(m for m in main if m in defaults),
                          choices=choices, help=dict(help or {}), hidden=tuple(hidden), weights=tuple(weights),
                          scales=tuple(scales), blind_defaults=dict(blind_defaults or {}), seeded=seeded,
                          module=fn.__module__, uses_kernel=uses_kernel, ranges=ranges)
        _REGISTRIES[kind].add(spec)
        return fn

    return deco


def register_tiles(name: str) -> Callable[[Callable[..., Generator]], Callable[..., Generator]]:
    """Decorator: give the registered estimator ``name`` a function that estimates many tiles at once.

    ``fn(frames, boxes, *, scale, device, seed, report_every, **options)`` gets the whole image's frames
    and ``boxes`` (T, 4) of ``y0, x0, y1, x1`` and returns a list of T
    :class:`~napari_kernelgan.types.TileResult`, sharing what the tiles have in common (a network pass
    over all their crops, one sharp-gradient prediction, one noise model). Estimators without one are
    run on each tile in turn by :mod:`napari_kernelgan.kernel_map`. Must follow the ``register`` call.
    """
    import dataclasses

    def deco(fn: Callable[..., Generator]) -> Callable[..., Generator]:
        registry = _REGISTRIES["estimator"]
        spec = registry._specs.get(name)
        if spec is None or spec.module != fn.__module__:
            raise ValueError(f"register_tiles({name!r}) must follow register({name!r}) in the same module")
        registry._specs[name] = dataclasses.replace(spec, tiles=fn)
        return fn

    return deco
