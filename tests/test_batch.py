"""The batch engine and ``napari-kernelgan batch``: stacks with their metadata, summaries, resume,
failures of single files, output errors, a run killed with SIGKILL, and Dask."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy.io import loadmat
from skimage import data

from napari_kernelgan.batch import BatchConfig, expand_inputs, run_batch
from napari_kernelgan.cli import main
from napari_kernelgan.errors import BadOptionError
from napari_kernelgan.io import write_image
from napari_kernelgan.physics import degrade, gaussian_kernel
from napari_kernelgan.stacks import open_image

FAST = ["--estimator", "kernelnet", "--sr-method", "closed-form"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _frame(i: int, size: int = 64) -> np.ndarray:
    """A ×2-blurred LR crop of the camera image in [0, 255], a different crop for each ``i``."""
    hr = data.camera().astype(float)
    y, x = 60 + 23 * (i % 7), 80 + 31 * (i // 7 % 7)
    return np.clip(degrade(hr[y:y + 2 * size, x:x + 2 * size], gaussian_kernel(13, 1.6, 1.0, 0.3), 2), 0, 255)


def _stack(n: int = 3) -> np.ndarray:
    return (np.stack([_frame(i) for i in range(n)]) * 180).astype(np.uint16)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: _digest(p) for p in sorted(folder.iterdir()) if p.is_file() and not p.is_symlink()}


def _cfg(out: Path, **kw) -> BatchConfig:
    return BatchConfig(out=out, estimator="kernelnet", sr_method="closed-form", **kw)


def _record(path: Path) -> str:
    """A JSON record without its timings (and a manifest without the digests of the files that hold them)."""
    rec = json.loads(path.read_text())
    for row in rec.get("rows", []):
        row.pop("seconds", None)
    for key in ("elapsed_s", "outputs"):
        rec.pop(key, None)
    return json.dumps(rec, sort_keys=True)


def _same_outputs(a: Path, b: Path) -> None:
    """Two output folders hold the same results: byte for byte, except the timings in JSON records, the
    creation date MATLAB files carry in their header and the run summaries."""
    names = sorted(p.name for p in a.iterdir() if not p.name.startswith("summary."))  # run records differ
    assert names == sorted(p.name for p in b.iterdir() if not p.name.startswith("summary."))
    for name in names:
        if name.endswith(".mat"):
            assert np.array_equal(loadmat(a / name)["Kernel"], loadmat(b / name)["Kernel"]), name
        elif name.endswith(".json"):
            assert _record(a / name) == _record(b / name), name
        else:
            assert _digest(a / name) == _digest(b / name), name


# ----------------------------------------------------------------------------- stacks and metadata


def test_imagej_stack_keeps_axes_pixel_size_unit_spacing_and_dtype(tmp_path: Path) -> None:
    src = tmp_path / "cells.tif"
    tifffile.imwrite(src, _stack(), imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"})
    before = _digest(src)
    out = tmp_path / "out"
    assert main(["batch", str(src), "--out", str(out), "-q", *FAST]) == 0
    with tifffile.TiffFile(out / "cells_sr_x2_closed-form.tif") as tif:
        assert tif.is_imagej and tif.series[0].axes == "ZYX" and tif.series[0].shape == (3, 128, 128)
        assert tif.series[0].dtype == np.uint16
        num, den = tif.pages[0].tags["XResolution"].value
        assert den / num == pytest.approx(0.325 / 2, rel=1e-6)
        num, den = tif.pages[0].tags["YResolution"].value
        assert den / num == pytest.approx(0.325 / 2, rel=1e-6)
        assert tif.imagej_metadata["unit"] == "um" and tif.imagej_metadata["spacing"] == pytest.approx(0.5)
    meta = open_image(out / "cells_sr_x2_closed-form.tif").meta
    assert meta.pixel_size == pytest.approx({"X": 0.1625, "Y": 0.1625, "Z": 0.5})
    assert _digest(src) == before  # the input is never modified


def test_ome_stack_keeps_axes_physical_sizes_and_dtype(tmp_path: Path) -> None:
    src = tmp_path / "cells.ome.tif"
    tifffile.imwrite(src, _stack(), ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.325, "PhysicalSizeXUnit": "µm", "PhysicalSizeY": 0.325,
        "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": 0.5, "PhysicalSizeZUnit": "µm"})
    out = tmp_path / "out"
    assert main(["batch", str(src), "--out", str(out), "-q", "--per-slice", *FAST]) == 0
    result = out / "cells_sr_x2_closed-form.ome.tif"
    with tifffile.TiffFile(result) as tif:
        assert tif.is_ome and tif.series[0].axes == "ZYX" and tif.series[0].shape == (3, 128, 128)
        assert tif.series[0].dtype == np.uint16
        pixels = next(el for el in ET.fromstring(tif.ome_metadata).iter() if el.tag.endswith("Pixels"))
    assert float(pixels.get("PhysicalSizeX")) == pytest.approx(0.1625)
    assert float(pixels.get("PhysicalSizeY")) == pytest.approx(0.1625)
    assert float(pixels.get("PhysicalSizeZ")) == pytest.approx(0.5)
    assert {pixels.get(f"PhysicalSize{a}Unit") for a in "XYZ"} == {"µm"}
    # per-slice kernels: one kernel file set and one summary row per slice
    assert {f"cells_z{i}_kernel_x2.npy" for i in range(3)} <= {p.name for p in out.iterdir()}
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [r["slice"] for r in rows] == ["z0", "z1", "z2"] and {r["status"] for r in rows} == {"ok"}
    assert all(r["sigma_major"] >= r["sigma_minor"] > 0 and 0 <= r["orientation_deg"] < 180 for r in rows)


def test_plain_tiff_stack_needs_axes_and_rgb_png_keeps_its_layout(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    stack = tmp_path / "plain.tif"
    tifffile.imwrite(stack, _stack(2))
    out = tmp_path / "out"
    assert main(["batch", str(stack), "--out", str(out), "-q", *FAST]) == 1
    assert "needs --channel-axis and/or --stack-axis, or --axes" in capsys.readouterr().err
    assert main(["batch", str(stack), "--axes", "zyx", "--out", str(out), "-q", *FAST]) == 0
    result = tifffile.imread(out / "plain_sr_x2_closed-form.tif")
    assert result.shape == (2, 128, 128) and result.dtype == np.uint16
    rgb = write_image(tmp_path / "rgb.png", np.stack([_frame(0), _frame(1), _frame(2)], -1).astype(np.uint8))
    assert main(["batch", str(rgb), "--axes", "ZYX", "--out", str(out), "-q", *FAST]) == 0  # the PNG says YXS
    sr = open_image(out / "rgb_sr_x2_closed-form.png")
    assert sr.data.shape == (128, 128, 3) and sr.data.dtype == np.uint8 and sr.meta.axes == "YXS"


def test_memory_mapped_stack_is_streamed_with_a_sampled_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import napari_kernelgan.imaging as imaging

    src = tmp_path / "big.tif"
    tifffile.imwrite(src, _stack(20), imagej=True, metadata={"axes": "ZYX"})
    image = open_image(src)
    assert image.streamed and not image.data.flags.writeable  # a read-only map: the input cannot change
    scanned: list[tuple[int, ...]] = []
    full = imaging.intensity_of

    def spy(arr):
        scanned.append(arr.shape)
        return full(arr)

    monkeypatch.setattr(imaging, "intensity_of", spy)
    out = tmp_path / "out"
    batch = run_batch([src], _cfg(out))
    # the range came from sampled frames, not a pass over the stack (each slice's own range is its SR's)
    assert batch.ok and scanned and all(shape[0] < 20 for shape in scanned)
    sr = tifffile.imread(out / "big_sr_x2_closed-form.tif")
    assert sr.shape == (20, 128, 128) and sr.dtype == np.uint16
    # each slice keeps its place: the output's slices follow the input's brightness order
    means_in, means_out = _stack(20).reshape(20, -1).mean(1), sr.reshape(20, -1).mean(1)
    assert np.corrcoef(means_in, means_out)[0, 1] > 0.99


# ----------------------------------------------------------------------------- inputs, failures, resume


def test_inputs_from_folders_and_globs_once_each_and_clashing_names_refused(tmp_path: Path) -> None:
    for name in ("a.png", "b.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a_sr_x2_closed-form.png").write_bytes(b"x")
    found = expand_inputs([tmp_path, str(tmp_path / "*.png")], tmp_path / "out")
    assert [p.name for p in found] == ["a.png", "b.tif"]
    with pytest.raises(BadOptionError, match="no image file matches"):
        expand_inputs([str(tmp_path / "*.jpg")])
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.tif").write_bytes(b"x")
    with pytest.raises(BadOptionError, match="would write the same outputs"):
        expand_inputs([tmp_path / "a.png", tmp_path / "sub" / "a.tif"])


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> Path:
    """Three good images and six bad files: corrupt, truncated, complex dtype, empty, a dangling link, and one
    the test makes unreadable."""
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"good{i}.png", _frame(i).astype(np.uint8))
    (folder / "corrupt.tif").write_bytes(b"II*\x00" + os.urandom(64))
    tifffile.imwrite(folder / "whole.tif", _stack(2), imagej=True, metadata={"axes": "ZYX"})
    blob = (folder / "whole.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(blob[: len(blob) // 2])
    (folder / "whole.tif").unlink()
    tifffile.imwrite(folder / "complex.tif", np.ones((64, 64), np.complex64))
    tifffile.imwrite(folder / "empty.tif", np.zeros((0, 64), np.uint8))
    (folder / "gone.png").symlink_to(folder / "moved-away.png")  # e.g. on a share no longer mounted
    tifffile.imwrite(folder / "denied.tif", _stack(1)[0])
    return folder


def test_bad_files_are_recorded_and_the_others_succeed(mixed_folder: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    import napari_kernelgan.stacks as stacks

    read = stacks._read_tiff

    def denied(path: Path, **kwargs):  # tests run as root, whom chmod does not stop: refuse the way the OS would
        if path.name == "denied.tif":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return read(path, **kwargs)

    monkeypatch.setattr(stacks, "_read_tiff", denied)
    before = _digests(mixed_folder)
    out = tmp_path / "out"
    assert main(["batch", str(mixed_folder), str(mixed_folder / "gone.png"), "--out", str(out), *FAST]) == 1
    err = capsys.readouterr().err
    rows = {Path(r["file"]).name: r for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert {n for n, r in rows.items() if r["status"] == "ok"} == {"good0.png", "good1.png", "good2.png"}
    assert "could not read image corrupt.tif" in rows["corrupt.tif"]["error"]
    assert rows["truncated.tif"]["error"] == ("could not read image truncated.tif: the file is shorter than its header "
                                              "says (truncated or still being written?)")
    assert "unsupported image dtype complex64" in rows["complex.tif"]["error"]
    assert "empty" in rows["empty.tif"]["error"]
    assert "image file not found" in rows["gone.png"]["error"]
    assert "could not read image denied.tif" in rows["denied.tif"]["error"] and "Permission denied" in rows[
        "denied.tif"]["error"]
    assert all(f"error: {mixed_folder / n}:" in err for n in ("corrupt.tif", "truncated.tif", "complex.tif"))
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("file,slice,channel,status,estimator") and len(csv_lines) == 1 + 9
    for i in range(3):
        assert open_image(out / f"good{i}_sr_x2_closed-form.png").data.shape == (128, 128)
    assert _digests(mixed_folder) == before  # inputs never modified


TRUNCATED = "the file is shorter than its header says (truncated or still being written?)"


def _truncated_tiff(path: Path, keep: float = 0.5, **kwargs) -> Path:
    tifffile.imwrite(path, _stack(4), **kwargs)
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * keep)])
    return path


@pytest.mark.parametrize("kwargs", [{}, {"imagej": True, "metadata": {"axes": "ZYX"}}])
def test_truncated_uint16_tiff_is_refused_in_the_users_words(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              kwargs: dict) -> None:
    from napari_kernelgan.errors import BadInputError

    path = _truncated_tiff(tmp_path / "cut.tif", **kwargs)
    with pytest.raises(BadInputError) as info:  # the API's reader
        open_image(path, "ZYX")
    assert str(info.value) == f"could not read image cut.tif: {TRUNCATED}"
    batch = run_batch([path], _cfg(tmp_path / "out", axes="ZYX"))  # the engine, as the Batch widget runs it
    (result,) = batch.results
    assert result.failed and result.error == f"could not read image cut.tif: {TRUNCATED}"
    assert result.error_path == str(path) and not any((tmp_path / "out").glob("cut_*"))
    assert main(["batch", str(path), "--axes", "ZYX", "--out", str(tmp_path / "cli"), "-q", *FAST]) == 1
    assert f"error: {path}: could not read image cut.tif: {TRUNCATED}" in capsys.readouterr().err


def test_low_level_read_errors_become_sentences_about_the_file(tmp_path: Path) -> None:
    from napari_kernelgan.errors import BadInputError
    from napari_kernelgan.stacks import read_error

    short = tmp_path / "short.raw"
    short.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="mmap length is greater than file size") as info:
        np.memmap(short, dtype=np.uint16, mode="r", shape=(100,))
    assert str(read_error(short, info.value)) == f"could not read image short.raw: {TRUNCATED}"
    (tmp_path / "four.tif").write_bytes(b"II*\x00")  # a header cut inside (struct.error)
    with pytest.raises(BadInputError, match=r"^could not read image four.tif: the file ends inside its header "
                                            r"\(truncated or still being written\?\)$"):
        open_image(tmp_path / "four.tif")
    cut = _truncated_tiff(tmp_path / "ifd.tif", keep=0.005)  # inside the first IFD (tifffile's TiffFileError)
    with pytest.raises(BadInputError, match=r"^could not read image ifd.tif: its TIFF structure is damaged \("):
        open_image(cut)
    packed = _truncated_tiff(tmp_path / "zlib.tif", compression="zlib")  # compressed pages cut short
    with pytest.raises(BadInputError, match=r"^could not read image zlib.tif: its compressed data end early"):
        open_image(packed, "ZYX")


def test_rerun_skips_verified_inputs_and_redoes_changed_outputs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"im{i}.png", _frame(i).astype(np.uint8))
    out = tmp_path / "out"
    assert main(["batch", str(folder), "--out", str(out), "-q", *FAST]) == 0
    first = _digests(out)
    capsys.readouterr()
    assert main(["batch", str(folder), "--out", str(out), *FAST]) == 0
    assert capsys.readouterr().out.count("skipped →") == 3
    # a damaged output (same size) and a missing one are caught by the manifest's checksums
    sr = out / "im1_sr_x2_closed-form.png"
    sr.write_bytes(bytes(b ^ 0xFF for b in sr.read_bytes()))
    (out / "im2_kernel_x2.npy").unlink()
    assert main(["batch", str(folder), "--out", str(out), "-q", *FAST]) == 0
    statuses = {Path(r["file"]).name: r["status"] for r in json.loads((out / "summary.json").read_text())["rows"]}
    assert statuses == {"im0.png": "skipped", "im1.png": "ok", "im2.png": "ok"}
    assert _digest(sr) == first[sr.name]
    # other settings are another run: nothing is skipped
    assert main(["batch", str(folder), "--out", str(out), "-q", "--seed", "3", *FAST]) == 0
    assert {r["status"] for r in json.loads((out / "summary.json").read_text())["rows"]} == {"ok"}


def test_a_damaged_or_old_manifest_means_redo_and_a_bug_in_the_check_is_raised(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import napari_kernelgan.batch.manifest as manifest
    from napari_kernelgan.batch import finished_before
    from napari_kernelgan.vocabulary import Status

    image = write_image(tmp_path / "im.png", _frame(0).astype(np.uint8))
    out = tmp_path / "out"
    cfg = _cfg(out)
    assert run_batch([image], cfg).counts == {"ok": 1, "skipped": 0, "failed": 0}
    record = finished_before(image, "im", cfg)
    assert record is not None
    path = out / "im_manifest.json"
    one = next(iter(record["outputs"]))
    damaged = ["{not json", "[1, 2]", json.dumps({**record, "outputs": ["im.png"]}), json.dumps({**record, "rows": 3}),
               json.dumps({**record, "outputs": {one: {"bytes": "12", "sha256": "x"}}}),
               json.dumps({k: v for k, v in record.items() if k != "outputs"})]
    for text in damaged:
        path.write_text(text)
        assert finished_before(image, "im", cfg) is None, text
    path.write_bytes(b"\xff\xfe{")  # not even text
    assert finished_before(image, "im", cfg) is None
    redone = run_batch([image], cfg)
    assert [r.status for r in redone.results] == [Status.OK] and finished_before(image, "im", cfg) is not None
    assert run_batch([image], cfg).results[0].status is Status.SKIPPED
    assert (out / "summary.csv").read_text().splitlines()[1].split(",")[3] == "skipped"  # the enum's word

    def broken(target: Path) -> str:
        raise TypeError("a bug in the check")

    monkeypatch.setattr(manifest, "sha256", broken)  # a bug is not taken for a stale manifest
    with pytest.raises(TypeError, match="a bug in the check"):
        finished_before(image, "im", cfg)
    with pytest.raises(TypeError, match="a bug in the check"):
        run_batch([image], cfg)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_output_that_cannot_be_written_fails_each_input_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, code: int) -> None:
    import napari_kernelgan.io as nio

    for i in range(2):
        write_image(tmp_path / f"im{i}.png", _frame(i).astype(np.uint8))
    out = tmp_path / "out"
    out.mkdir()

    def refuse(src, dst):  # tests run as root, so a read-only folder would not stop them: simulate it
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(nio.os, "replace", refuse)
    batch = run_batch([tmp_path / "im0.png", tmp_path / "im1.png"], _cfg(out), summary=False)
    assert [r.status for r in batch.results] == ["failed", "failed"]
    assert all(os.strerror(code) in r.error and r.error_path == str(out) for r in batch.results)
    assert list(out.iterdir()) == []  # no output, no temporary file
    monkeypatch.undo()
    assert run_batch([tmp_path / "im0.png"], _cfg(out)).ok


def test_run_killed_midway_then_rerun_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        tifffile.imwrite(folder / f"s{i}.tif", _stack(2) + i, imagej=True, resolution=(2.0, 2.0),
                         metadata={"axes": "ZYX", "unit": "um"})
    before = _digests(folder)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "napari_kernelgan.cli", "batch", str(folder), "-q", *FAST, "--out"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(killed.glob("*_manifest.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(killed.glob("*_manifest.json")))
    assert done_before >= 1  # it was killed once the first input was finished
    subprocess.run([*cmd, str(killed)], env=env, check=True, capture_output=True)
    clean = tmp_path / "clean"
    subprocess.run([*cmd, str(clean)], env=env, check=True, capture_output=True)
    assert not list(killed.glob(".*"))  # the rerun removed the temporaries the killed run left
    _same_outputs(killed, clean)
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["skipped"] == done_before and summary["ok"] == 6 - done_before and summary["failed"] == 0
    assert _digests(folder) == before


# ----------------------------------------------------------------------------- Dask


def test_dask_local_cluster_gives_the_serial_results(tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="Dask is not installed (pip install 'napari-kernelgan[dask]')")
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write_image(folder / f"im{i}.png", _frame(i).astype(np.uint8))
    tifffile.imwrite(folder / "stack.ome.tif", _stack(2), ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.2})
    (folder / "bad.tif").write_bytes(b"not a tiff")
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert main(["batch", str(folder), "--out", str(serial), "-q", "--per-slice", *FAST]) == 1
    assert main(["batch", str(folder), "--out", str(parallel), "-q", "--per-slice", "--workers", "2", *FAST]) == 1
    _same_outputs(serial, parallel)
    rows = json.loads((parallel / "summary.json").read_text())["rows"]
    assert [Path(r["file"]).name for r in rows] == ["bad.tif", "im0.png", "im1.png", "im2.png", "stack.ome.tif",
                                                    "stack.ome.tif"]  # in input order, whatever finished first


# ----------------------------------------------------------------------------- sr and blind-sr through the engine


def test_sr_and_blind_sr_take_folders_and_write_beside_each_input(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        write_image(folder / f"cell{i}.png", _frame(i).astype(np.uint8))
    tifffile.imwrite(folder / "stack.tif", _stack(2), imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"})
    kernel = write_image(tmp_path / "psf.tif", gaussian_kernel(13, 1.6, 1.0, 0.3).astype(np.float32))
    assert main(["sr", str(folder), "--kernel", str(kernel), "--sr-method", "closed-form"]) == 0
    out = capsys.readouterr().out
    assert f"{folder / 'cell0.png'}: ×2 closed-form → {folder / 'cell0_sr_x2_closed-form.png'} (128, 128) uint8" in out
    assert f"→ {folder / 'stack_sr_x2_closed-form.tif'} (2, 128, 128) uint16" in out
    assert open_image(folder / "stack_sr_x2_closed-form.tif").meta.pixel_size == pytest.approx(
        {"X": 0.1625, "Y": 0.1625, "Z": 0.5})  # the stack keeps its calibration, YX at the new pixel size
    assert main(["blind-sr", str(folder / "cell*.png"), *FAST]) == 0
    out = capsys.readouterr().out
    assert "blind ×2 closed-form" in out and "kernel cell1_sr_x2_closed-form_kernel_x2.mat, kernelnet" in out
    assert (folder / "cell0_sr_x2_closed-form_kernel_x2.mat").is_file()
    assert not list(folder.glob("summary.*")) and not list(folder.glob("*_manifest.json"))
    assert "_sr_x2_closed-form_sr_x2" not in out  # earlier results beside the inputs are not taken as inputs


def test_output_names_one_input_only(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder, res = tmp_path / "in", tmp_path / "res"
    folder.mkdir()
    for i in range(2):
        write_image(folder / f"cell{i}.png", _frame(i).astype(np.uint8))
    assert main(["blind-sr", str(folder / "cell0.png"), "-o", str(res / "one.tif"), *FAST]) == 0
    assert tifffile.imread(res / "one.tif").shape == (128, 128) and (res / "one_kernel_x2.mat").is_file()
    assert main(["blind-sr", str(folder), "-o", str(res / "x.png"), *FAST]) == 1
    err = capsys.readouterr().err
    assert "error: --output names the result of one input, and 2 inputs were given" in err
    assert not (res / "x.png").exists()


def test_cancel_stops_between_inputs_and_keeps_finished_ones(tmp_path: Path) -> None:
    import threading

    from napari_kernelgan.batch import iter_batch
    from napari_kernelgan.errors import Cancelled

    for i in range(3):
        write_image(tmp_path / f"cell{i}.png", _frame(i).astype(np.uint8))
    cancel = threading.Event()
    out = tmp_path / "out"
    gen = iter_batch([tmp_path], _cfg(out), cancel=cancel)
    reports = [next(gen), next(gen)]  # before the first input, then after it
    assert [r.iteration for r in reports] == [0, 1]
    cancel.set()
    with pytest.raises(Cancelled):
        next(gen)
    assert sorted(p.name for p in out.glob("*_manifest.json")) == ["cell0_manifest.json"]
    assert not list(out.glob("cell1*"))


def test_per_channel_kernels_follow_each_channels_blur(tmp_path: Path) -> None:
    # Two channels of the same scene, the second blurred twice as wide: one kernel each with --per-channel.
    hr = data.camera().astype(float)[40:296, 60:316]
    narrow, wide = (degrade(hr, gaussian_kernel(13, s), 2) for s in (0.9, 2.0))
    stack = (np.stack([np.stack([narrow, wide])] * 2) * 180).astype(np.uint16)  # ZCYX
    src = tmp_path / "two.tif"
    tifffile.imwrite(src, stack, imagej=True, metadata={"axes": "ZCYX"})
    before = _digest(src)
    out = tmp_path / "out"
    assert main(["batch", str(src), "--out", str(out), "-q", "--per-channel", *FAST]) == 0
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [r["channel"] for r in rows] == [0, 1] and {r["status"] for r in rows} == {"ok"}
    assert rows[1]["sigma_major"] > rows[0]["sigma_major"] + 0.4, rows
    assert {"two_c0_kernel_x2.npy", "two_c1_kernel_x2.npy"} <= {p.name for p in out.iterdir()}
    with tifffile.TiffFile(out / "two_sr_x2_closed-form.tif") as tif:
        assert tif.series[0].axes == "ZCYX" and tif.series[0].shape == (2, 2, 256, 256)
        result = tif.asarray()
    # Shared (the default): one kernel, one row.
    assert main(["batch", str(src), "--out", str(tmp_path / "shared"), "-q", *FAST]) == 0
    assert len(json.loads((tmp_path / "shared" / "summary.json").read_text())["rows"]) == 1
    shared = tifffile.imread(tmp_path / "shared" / "two_sr_x2_closed-form.tif")
    # Each channel was super-resolved with its own kernel: the wide channel comes out as it does alone,
    # closer than with the shared kernel.
    alone = tmp_path / "c1.tif"
    tifffile.imwrite(alone, stack[:, 1], imagej=True, metadata={"axes": "ZYX"})
    assert main(["batch", str(alone), "--out", str(tmp_path / "alone"), "-q", *FAST]) == 0
    ref = tifffile.imread(tmp_path / "alone" / "c1_sr_x2_closed-form.tif").astype(float)
    own, common = (np.abs(x[:, 1].astype(float) - ref).mean() for x in (result, shared))
    assert own < 0.5 * common, (own, common)
    assert _digest(src) == before


def test_sr_result_metadata_is_the_kernel_record_with_the_sr_method() -> None:
    from napari_kernelgan.api import super_resolve
    from napari_kernelgan.types import kernel_metadata
    from napari_kernelgan.vocabulary import LayerRole

    res = super_resolve(_frame(0).astype(np.uint8), gaussian_kernel(13, 1.6, 1.0, 0.3), 2, sr_method="bicubic")
    meta = res.metadata()
    record = kernel_metadata(res.kernel, 2, role=LayerRole.SUPER_RESOLVED)
    assert {k: meta[k] for k in record} == record and meta["role"] == "super-resolved"
    assert meta["sr_method"] == "bicubic" and meta["device"] == res.device and meta["options"]["seed"] == 0
    assert meta["elapsed_s"] == round(res.elapsed, 3)
