"""The example in docs/extending.md, installed as a package, appears everywhere with no other file touched."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from napari_kernelgan.registry import ESTIMATOR_ENTRY_POINTS, ESTIMATORS
from napari_kernelgan.testing import check_estimator

ROOT = Path(__file__).resolve().parents[1]
NAME = "isotropic-edges"


def example_code() -> str:
    text = (ROOT / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    code = next(b for b in blocks if "@register(" in b)
    assert 20 <= len(code.strip().splitlines()) <= 40, "the documented example should stay about 30 lines"
    return code


@pytest.fixture
def example_package(tmp_path, monkeypatch):
    """The example as an installed distribution: a module plus a dist-info naming it in the entry-point group."""
    pkg = tmp_path / "my_kernels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "isotropic.py").write_text(example_code())
    info = tmp_path / "my_kernels-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-kernels\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{ESTIMATOR_ENTRY_POINTS}]\n{NAME} = my_kernels.isotropic\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ESTIMATORS.refresh()
    yield tmp_path
    ESTIMATORS.remove(NAME)
    for mod in [m for m in sys.modules if m.startswith("my_kernels")]:
        del sys.modules[mod]  # so the next test imports (and registers) it afresh


def test_example_registers_and_keeps_the_contract(example_package):
    assert NAME in ESTIMATORS.names()
    spec = ESTIMATORS.get(NAME)
    assert spec.summary.startswith("Isotropic Gaussian") and spec.main == ("quantile",)
    check_estimator(NAME)


def test_example_is_listed_by_the_cli(example_package):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(example_package), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "napari_kernelgan.cli", "estimate", "--help"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert NAME in proc.stdout


@pytest.mark.gui
def test_example_is_offered_by_the_widget(example_package, make_napari_viewer):
    from napari_kernelgan._qt.estimate_widget import EstimateKernelWidget

    widget = EstimateKernelWidget(make_napari_viewer())
    assert NAME in widget.estimator.choices
    widget.estimator.value = NAME
    assert "quantile" in widget.options and "size" in widget.options


def test_example_declares_its_ranges_and_stays_below_the_api(example_package):
    import ast

    from napari_kernelgan.errors import BadOptionError

    with pytest.raises(BadOptionError) as info:
        ESTIMATORS.get(NAME).resolve({"quantile": 1.5})
    assert str(info.value) == "kernel estimator 'isotropic-edges': quantile must be in (0, 1); got 1.5"
    # one file, importing only what a method may (the rule tests/test_architecture.py applies to this package)
    imported = {node.module for node in ast.walk(ast.parse(example_code())) if isinstance(node, ast.ImportFrom)}
    above = ("api", "kernel_map", "batch", "cli", "layers", "_qt")
    assert not {m for m in imported if m.split(".")[1:2] and m.split(".")[1] in above}
