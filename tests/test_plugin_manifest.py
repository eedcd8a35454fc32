"""The npe2 manifest is the one the installed package ships, and napari finds every contribution.

The npe2 checks need the GUI extra and are marked ``gui``; the import check runs everywhere."""
from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "napari-kernelgan"


def test_manifest_is_package_data_and_root_links_to_it():
    shipped = resources.files("napari_kernelgan") / "napari.yaml"
    assert shipped.is_file()
    root = ROOT / "napari.yaml"
    assert root.is_symlink()
    assert root.resolve() == (ROOT / "src" / "napari_kernelgan" / "napari.yaml").resolve()


@pytest.mark.gui
def test_manifest_validates_with_imports():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution(PLUGIN)
    assert manifest.name == PLUGIN
    manifest.validate_imports()  # every python_name resolves


@pytest.mark.gui
def test_plugin_manager_discovers_every_contribution():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManager()
    pm.discover()
    contrib = pm.get_manifest(PLUGIN).contributions
    commands = {c.id for c in contrib.commands}
    assert {f"{PLUGIN}.estimate_kernel_widget", f"{PLUGIN}.super_resolve_widget",
            f"{PLUGIN}.get_reader"} <= commands
    assert {w.display_name for w in contrib.widgets} >= {"Estimate kernel", "Super-resolve", "Batch"}
    assert {s.key for s in contrib.sample_data} >= {"tissue", "astronaut", "fluorescence"}
    assert [r.command for r in contrib.readers] == [f"{PLUGIN}.get_reader"]
    exts = {e for w in contrib.writers for e in w.filename_extensions}
    assert {".mat", ".npy", ".tif"} <= exts
    # What napari asks the plugin manager for when it builds its menus and dialogs.
    assert any(r.command.startswith(PLUGIN) for r in pm.iter_compatible_readers(["/x/k_kernel.npy"]))
    assert any(r.command.startswith(PLUGIN) for r in pm.iter_compatible_readers(["/x/kernel.mat"]))
    assert any(r.command.startswith(PLUGIN) for r in pm.iter_compatible_readers(["/x/cells.ome.tif"]))
    # Every TIFF, so napari offers this reader (calibrated stacks) beside its own; .npy only for kernels.
    assert any(r.command.startswith(PLUGIN) for r in pm.iter_compatible_readers(["/x/image.tif"]))
    assert any(r.command.startswith(PLUGIN) for r in pm.iter_compatible_readers(["/x/psf.npy"]))
    assert not any(r.command.startswith(PLUGIN) for r in pm.iter_compatible_readers(["/x/image.npy"]))
    writer, _ = pm.get_writer("/x/k.mat", ["image"])
    assert writer is not None and writer.command.startswith(PLUGIN)
    assert {w.display_name for w in pm.iter_widgets()} >= {"Estimate kernel", "Super-resolve"}


def test_import_loads_no_gui_modules():
    code = ("import sys, napari_kernelgan, napari_kernelgan.layers, napari_kernelgan._reader, "
            "napari_kernelgan._writer, napari_kernelgan._sample_data\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('napari', 'magicgui', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'superqt', 'vispy'))\n"
            "print(bad)\nsys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
