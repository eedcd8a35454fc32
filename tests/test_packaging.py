"""Packaging and tooling: the wheel ships a valid manifest, importing is cheap, the tree is lint-clean."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "napari", "magicgui", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "vispy")


def _run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_wheel_ships_the_manifest_and_it_validates(tmp_path):
    pytest.importorskip("build")
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path),
                           str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    wheel = next(tmp_path.glob("napari_kernelgan-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "napari_kernelgan/napari.yaml" in names
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
        manifest = tmp_path / "napari.yaml"
        manifest.write_bytes(zf.read("napari_kernelgan/napari.yaml"))
    assert "napari_kernelgan:napari.yaml" in entry_points
    assert "napari-kernelgan = napari_kernelgan.cli:main" in entry_points
    # Every method module is in the wheel (they are found by scanning the package, not listed by hand).
    for module in ("estimators/kernelgan.py", "estimators/edges.py", "sr/closed_form.py", "sr/usrnet.py"):
        assert f"napari_kernelgan/{module}" in names
    # The weights the default estimators need travel inside the package (no download).
    for data in ("estimators/learned_weights.pt", "estimators/meta_init.pt"):
        assert f"napari_kernelgan/{data}" in names
    npe2 = shutil.which("npe2") or str(Path(sys.executable).with_name("npe2"))
    if not Path(npe2).exists():
        pytest.skip("npe2 is not installed (GUI extra)")
    check = subprocess.run([npe2, "validate", str(manifest)], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0 and "valid" in check.stdout.lower(), check.stdout + check.stderr


@pytest.mark.parametrize("code", [
    "import napari_kernelgan",
    "import napari_kernelgan.layers, napari_kernelgan._reader, napari_kernelgan._writer, napari_kernelgan._sample_data",
])
def test_import_is_cheap(code):
    proc = _run_python(f"{code}\nimport sys\nprint(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"importing pulled in: {proc.stdout}"


def test_opening_a_mat_kernel_imports_no_torch(tmp_path):
    from napari_kernelgan.io import write_kernel
    from napari_kernelgan.physics import gaussian_kernel

    path = tmp_path / "k_kernel.mat"
    write_kernel(path, gaussian_kernel(13, 1.5))
    code = ("import sys\nfrom napari_kernelgan._reader import get_reader\n"
            f"layers = get_reader({str(path)!r})({str(path)!r})\n"
            "assert layers[0][0].shape == (13, 13)\n"
            "print('torch' in sys.modules)")
    proc = _run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (test extra)")
    proc = subprocess.run([ruff, "check", "src", "tests", "benchmarks", "scripts"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:]
