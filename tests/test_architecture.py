"""The package's shape: no import cycle, no long module, methods below the API.

The import graph is read from the source with :mod:`ast` (nothing is imported): every ``import`` and
``from ... import`` of every module, relative ones resolved, those inside functions included (they
run too, only later); those under ``if TYPE_CHECKING:`` are left out (they never run).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "napari_kernelgan"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE
MAX_LINES = 600
# Methods sit below the API: they may not import what calls them or what shows their results.
ABOVE_METHODS = ("api", "kernel_map", "batch", "cli", "layers", "_qt")

# Known offenders (none): a cycle or a long module added to these sets is a choice made in review.
KNOWN_CYCLES: list[set[str]] = []
KNOWN_LONG: set[str] = set()


def _modules() -> dict[str, Path]:
    """Dotted name → file of every module of the package (a package by its ``__init__.py``)."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(inner) for branch in node.body for inner in ast.walk(branch))
    return skip


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (anywhere in its code)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # ``from .pkg import mod`` imports the module ``pkg.mod``; ``from .mod import name`` the module ``mod``
            targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # a name inside a module: the module
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan), each a set of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.add(w)
                if w == v:
                    break
            if len(part) > 1:
                found.append(part)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _cycle_path(graph: dict[str, set[str]], part: set[str]) -> list[str]:
    """One closed path through a strongly connected ``part``: ``[a, b, ..., a]``."""
    start = min(part)
    paths = {start: [start]}
    queue = [start]
    while queue:  # breadth first: the shortest way back to start
        v = queue.pop(0)
        for w in sorted(graph[v] & part):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    raise AssertionError(f"{sorted(part)} is not a cycle")


def test_the_graph_sees_the_imports_it_must(graph: dict[str, set[str]]) -> None:
    # a relative import, one inside a function, a module imported from its package
    assert "napari_kernelgan.tiling" in graph["napari_kernelgan.kernel_map"]
    assert "napari_kernelgan.sr._safety" in graph["napari_kernelgan.api"]  # imported inside a function
    assert "napari_kernelgan.physics.noise" in graph["napari_kernelgan.estimators.auto"]
    # registry imports the result types for type checking only
    assert "napari_kernelgan.types" not in graph["napari_kernelgan.registry"]
    assert _cycle_path({"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}, {"a", "b", "c"}) == ["a", "b", "c", "a"]


def test_no_import_cycle(graph: dict[str, set[str]]) -> None:
    new = [part for part in _cycles(graph) if part not in KNOWN_CYCLES]
    assert not new, "import cycles:\n" + "\n".join(" -> ".join(_cycle_path(graph, part)) for part in new)


def test_no_module_over_600_lines() -> None:
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES and name not in KNOWN_LONG}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_methods_import_nothing_above_them(graph: dict[str, set[str]]) -> None:
    above = tuple(f"{PACKAGE}.{name}" for name in ABOVE_METHODS)
    bad = {name: sorted(t for t in targets if t in above or t.startswith(tuple(a + "." for a in above)))
           for name, targets in graph.items() if name.startswith((f"{PACKAGE}.estimators", f"{PACKAGE}.sr"))}
    bad = {name: targets for name, targets in bad.items() if targets}
    assert not bad, f"methods importing the layers that call them: {bad}"
