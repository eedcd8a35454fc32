"""Kernel/image files and the command line."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import loadmat
from skimage import data

from napari_kernelgan import read_kernel, write_image, write_kernel
from napari_kernelgan.cli import main
from napari_kernelgan.physics import degrade, gaussian_kernel


@pytest.mark.parametrize("suffix", [".mat", ".npy", ".tif"])
def test_kernel_round_trip(tmp_path: Path, suffix: str) -> None:
    k = gaussian_kernel(13, 1.7, 0.8, 0.3)
    path = write_kernel(tmp_path / f"k{suffix}", k)
    back = read_kernel(path)
    assert np.allclose(back, k, atol=1e-6)
    assert not list(tmp_path.glob(".*"))  # no temporary left behind
    if suffix == ".mat":
        assert np.allclose(loadmat(path)["Kernel"], k)  # the key the KernelGAN/ZSSR/USRNet tools read


def test_corrupt_and_wrong_kernel_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file at all")
    with pytest.raises(ValueError, match="could not read kernel file bad.mat"):
        read_kernel(bad)
    np.save(tmp_path / "even.npy", np.ones((4, 4)) / 16)
    with pytest.raises(ValueError, match="odd size"):
        read_kernel(tmp_path / "even.npy")
    with pytest.raises(FileNotFoundError):
        read_kernel(tmp_path / "missing.mat")


def _sample(tmp_path: Path) -> Path:
    lr = np.clip(degrade(data.camera()[:256, :256].astype(float), gaussian_kernel(13, 1.6, 1.0, 0.3), 2), 0, 255)
    return write_image(tmp_path / "cam.png", lr.astype(np.uint8))


def test_cli_estimate_writes_outputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    img = _sample(tmp_path)
    out = tmp_path / "out"
    rc = main(["estimate", str(img), "--scale", "4", "--estimator", "kernelgan", "--preset", "fast",
               "--iterations", "10", "--threads", "1", "--out", str(out), "-q"])
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    for n in ("cam_kernel_x2.mat", "cam_kernel_x2.npy", "cam_kernel_x4.mat", "cam_kernel_x4.npy",
              "cam_kernel_x2.png", "cam_dmap.tif", "cam_kernel.json"):
        assert n in names
    assert "×4 kernel 37×37" in capsys.readouterr().out
    assert read_kernel(out / "cam_kernel_x2.mat").shape == (13, 13)
    meta = json.loads((out / "cam_kernel.json").read_text())
    assert meta["method"] == "kernelgan" and meta["preset"] == "fast" and meta["iterations"] == 10
    assert not list(out.glob(".*"))  # no temporary left behind


def test_cli_bad_input_one_line_nothing_written(tmp_path: Path) -> None:
    tiny = write_image(tmp_path / "tiny.png", np.zeros((10, 10), np.uint8))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "napari_kernelgan.cli", "estimate", str(tiny), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "at least 32×32" in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    missing = tmp_path / "nope.tif"
    assert main(["estimate", str(missing), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {missing}: image file not found")
    assert not (tmp_path / "out").exists()


def test_demo_reports_errors_beside_baselines_and_writes_outputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--out", str(tmp_path), "--device", "cpu", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "fixed Gaussian baseline" in out and "true kernel" in out and "confidence" in out
    # the default estimator wins on the bundled sample, and the demo says so in one line
    assert "verdict: the estimated kernel beats the fixed Gaussian" in out and "super-resolution beats bicubic" in out
    k = read_kernel(tmp_path / "ihc_lr_x2_kernel_x2.mat")
    assert k.shape == (13, 13) and np.isclose(k.sum(), 1.0)
    truth = read_kernel(tmp_path / "ihc_true_kernel_x2.mat")
    assert truth.shape == (13, 13) and (tmp_path / "ihc_sr_x2_closed-form.png").is_file()


def test_sr_of_an_estimate_file_and_of_a_psf_file_is_safe_unless_switched_off(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from napari_kernelgan.io import write_image
    from napari_kernelgan.samples import TISSUE

    img = tmp_path / "tissue.png"
    write_image(img, TISSUE.lr()[:96, :96])
    assert main(["estimate", str(img), "--out", str(tmp_path), "--threads", "1"]) == 0
    assert '"confidence"' in (tmp_path / "tissue_kernel.json").read_text()
    capsys.readouterr()
    assert main(["sr", str(img), "--kernel", str(tmp_path / "tissue_kernel_x2.mat"), "-o", str(tmp_path / "a.png"),
                 "--threads", "1", "--set", "iterations=1"]) == 0
    assert "measured" in capsys.readouterr().out  # the safeguards ran and said so
    psf = tmp_path / "psf.npy"
    np.save(psf, read_kernel(tmp_path / "tissue_kernel_x2.mat"))
    assert main(["sr", str(img), "--kernel", str(psf), "-o", str(tmp_path / "b.png"), "--threads", "1",
                 "--set", "iterations=1"]) == 0
    assert "measured" in capsys.readouterr().out  # a PSF file is trusted fully, its image's noise still measured
    assert main(["sr", str(img), "--kernel", str(psf), "-o", str(tmp_path / "b.png"), "--threads", "1",
                 "--set", "iterations=1", "--no-safeguards"]) == 0
    assert "measured" not in capsys.readouterr().out


def test_sr_with_a_measured_bead_stack_uses_the_pixel_sizes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import tifffile

    from napari_kernelgan.samples import TISSUE
    from test_measured_psf import bead_stack

    beads = tmp_path / "beads.tif"  # camera pixel 0.1 µm; the image's pixel 0.2 µm: at ×2 the same grid
    tifffile.imwrite(beads, bead_stack(pixel_um=0.1), imagej=True, resolution=(10.0, 10.0),
                     metadata={"axes": "ZYX", "unit": "micron"})
    lr = np.asarray(TISSUE.lr())[:48, :48]
    lr = lr.mean(-1).astype(lr.dtype) if lr.ndim == 3 else lr
    image = tmp_path / "cells.tif"
    tifffile.imwrite(image, lr, imagej=True, resolution=(5.0, 5.0), metadata={"axes": "YX", "unit": "micron"})
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, lr)
    assert main(["sr", str(image), "--kernel", str(beads), "--scale", "2", "-o", str(tmp_path / "a.tif"),
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out
    side = re.search(r"→ ×2 kernel (\d+)×\1 at 0\.1 µm/pixel, keeping (\d+\.\d) % of its light", out)
    assert side is not None and "in-focus plane 6" in out, out
    assert 13 < int(side.group(1)) <= 75 and float(side.group(2)) >= 99.0
    assert tifffile.imread(tmp_path / "a.tif").shape == (96, 96)
    # ×4: the same PSF on a grid of 0.05 µm pixels, so a kernel twice as wide.
    assert main(["sr", str(image), "--kernel", str(beads), "--scale", "4", "-o", str(tmp_path / "b.tif"),
                 "--threads", "1"]) == 0
    side4 = re.search(r"→ ×4 kernel (\d+)×\1 at 0\.05 µm/pixel", capsys.readouterr().out)
    assert side4 is not None and int(side4.group(1)) > int(side.group(1))
    # An image without a pixel size: the error names the flag; given, it runs.
    assert main(["sr", str(plain), "--kernel", str(beads), "-o", str(tmp_path / "c.tif"), "--threads", "1"]) == 1
    assert "--pixel-size" in capsys.readouterr().err
    assert main(["sr", str(plain), "--kernel", str(beads), "--pixel-size", "0.2", "-o", str(tmp_path / "c.tif"),
                 "--threads", "1"]) == 0
    # A PSF without a pixel size in its file: --kernel-pixel-size says it.
    bare = tmp_path / "bare_psf.npy"
    np.save(bare, bead_stack(pixel_um=0.1)[6].astype(np.float64))
    assert main(["sr", str(image), "--kernel", str(bare), "--kernel-pixel-size", "0.1", "-o",
                 str(tmp_path / "d.tif"), "--threads", "1"]) == 0
    assert "bare_psf.npy: measured PSF at 0.1 µm/pixel → ×2 kernel" in capsys.readouterr().out
