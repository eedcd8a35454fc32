"""Registries of kernel estimators and SR methods.

A method registers itself with a decorator in its own module; the API, CLI and
widgets list and call whatever is registered, so a new method is one new file.
"""
from __future__ import annotations

import importlib
from typing import Callable, Generic, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    def __init__(self, kind: str, modules: tuple[str, ...]) -> None:
        self.kind = kind
        self._modules = modules
        self._items: dict[str, F] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            self._items[name] = fn
            return fn
        return deco

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for mod in self._modules:
                try:
                    importlib.import_module(mod)
                except ModuleNotFoundError as exc:
                    if exc.name != mod:  # a missing dependency inside the module is a real error
                        raise

    def names(self) -> list[str]:
        self._load()
        return list(self._items)

    def get(self, name: str) -> F:
        self._load()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self._items)}") from None


# Generator functions: fn(frames, scale, *, device, seed, **options) -> Generator[Progress, None, result]
ESTIMATORS: Registry = Registry("kernel estimator", ("napari_kernelgan.estimators.kernelgan",
                                                       "napari_kernelgan.estimators.edges"))
SR_METHODS: Registry = Registry("SR method", (
    "napari_kernelgan.sr.bicubic",
    "napari_kernelgan.sr.closed_form",
    "napari_kernelgan.sr.zssr",
    "napari_kernelgan.sr.usrnet",
))
