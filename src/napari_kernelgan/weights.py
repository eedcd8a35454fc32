"""Where pretrained network weights are found.

The package ships no weights. A weight file is looked up, in this order:

1. an explicit path given by the caller (``weights=`` option, CLI flag, widget field);
2. an environment variable (``NAPARI_KERNELGAN_USRNET_WEIGHTS`` for USRNet);
3. the user configuration file, ``[weights]`` table, e.g.::

       # ~/.config/napari-kernelgan/config.toml
       [weights]
       usrnet = "/data/models/usrnet_tiny.pth"

   (the file's location follows ``$XDG_CONFIG_HOME``; ``NAPARI_KERNELGAN_CONFIG``
   names another file);
4. the default folder ``~/.cache/napari-kernelgan/weights/`` (``$XDG_CACHE_HOME``
   is honoured), holding one of the usual file names.

A path that names a folder is searched for the usual file names. When nothing
is found, :class:`~napari_kernelgan.errors.WeightsMissingError` says which file to get and where to put it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import BadInputError, BadOptionError, Param, WeightsMissingError, Words

CONFIG_ENV = "NAPARI_KERNELGAN_CONFIG"
APP_NAME = "napari-kernelgan"


WeightsNotFoundError = WeightsMissingError
"""A weight file could not be found; the message says how to provide it (the older name)."""


@dataclass(frozen=True)
class WeightSpec:
    """How to find and where to get one network's weights."""

    key: str
    title: str
    env_var: str
    filenames: tuple[str, ...]
    source: str


WEIGHTS: dict[str, WeightSpec] = {}
"""Known weight files by key; each method module that loads weights declares its :class:`WeightSpec`
with :func:`declare_weights`."""


def declare_weights(spec: WeightSpec) -> WeightSpec:
    """Make ``spec`` known to :func:`resolve_weights` (called by the method module that needs it)."""
    WEIGHTS[spec.key] = spec
    return spec


def config_path() -> Path:
    """The user configuration file (it need not exist)."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base).expanduser() / APP_NAME / "config.toml"


def default_weights_dir() -> Path:
    """The folder searched last, ``~/.cache/napari-kernelgan/weights``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / APP_NAME / "weights"


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            return {}
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BadInputError(f"cannot read the configuration file {path}: {exc}") from exc


def _in_folder(folder: Path, spec: WeightSpec) -> Path | None:
    for name in spec.filenames:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _missing_message(spec: WeightSpec, tried: list[str]) -> Words:
    cfg = config_path()
    return (
        f"{spec.title} weights were not found.\n"
        + "Looked at: " + ("; ".join(tried) if tried else "nothing") + "\n"
        + f"Get {' or '.join(spec.filenames)} from {spec.source}, then either:\n"
        + "  * pass its path (",
        Param("weights", f"/path/to/{spec.filenames[0]}", option=True),
        "),\n"
        f"  * set the environment variable {spec.env_var}=/path/to/{spec.filenames[0]},\n"
        f"  * add  [weights] {spec.key} = \"/path/to/{spec.filenames[0]}\"  to {cfg},\n"
        f"  * or put the file in {default_weights_dir()}.",
    )


def resolve_weights(key: str, path: str | os.PathLike | None = None) -> Path:
    """Return the weight file for network ``key`` (e.g. ``"usrnet"``).

    ``path`` (a file or a folder) wins; then the environment variable, the
    configuration file and the default folder. Raises
    :class:`~napari_kernelgan.errors.WeightsMissingError` naming the file to get and the places to put it.
    """
    try:
        spec = WEIGHTS[key]
    except KeyError:
        raise BadOptionError(f"no weights are known for {key!r}; known: {', '.join(WEIGHTS) or 'none'}") from None
    tried: list[str] = []
    candidates: list[tuple[str, str]] = []
    if path is not None:
        candidates.append(("given path", str(path)))
    env = os.environ.get(spec.env_var)
    if env:
        candidates.append((f"${spec.env_var}", env))
    cfg_file = config_path()
    cfg_value = _read_config(cfg_file).get("weights", {}).get(spec.key)
    if cfg_value:
        candidates.append((f"{cfg_file} [weights] {spec.key}", str(cfg_value)))
    for origin, raw in candidates:
        candidate = Path(raw).expanduser()
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            found = _in_folder(candidate, spec)
            if found is not None:
                return found
        tried.append(f"{candidate} ({origin})")
        if origin == "given path":
            # An explicit path that is wrong is an error, not a cue to look elsewhere.
            raise WeightsNotFoundError(*_missing_message(spec, tried))
    found = _in_folder(default_weights_dir(), spec)
    if found is not None:
        return found
    tried.append(f"{default_weights_dir()} (default folder)")
    raise WeightsNotFoundError(*_missing_message(spec, tried))


@lru_cache(maxsize=8)
def _load(path: str, mtime_ns: int, size: int) -> Any:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def read_weight_file(path: Path, what: str) -> Any:
    """The plain tensors and containers stored in ``path`` (``torch.load``, weights only, on the CPU),
    read once per version of the file (cached by path, modification time and size).

    A truncated, foreign or code-carrying file raises :class:`BadInputError`
    ("cannot read ``what`` from ``path``: ...").
    """
    stat = path.stat()
    try:
        return _load(str(path), stat.st_mtime_ns, stat.st_size)
    except Exception as exc:  # truncated, foreign, or a pickle that is not plain tensors and containers
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInputError(f"cannot read {what} from {path}: {first}") from exc
