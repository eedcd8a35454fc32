"""The command line generated from the method specs: help, options, errors and interruption."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from napari_kernelgan import write_image, write_kernel
from napari_kernelgan.cli import main
from napari_kernelgan.errors import BadInputError
from napari_kernelgan.physics import degrade, gaussian_kernel

HEAVY = ("torch", "napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui")


@pytest.fixture(scope="module")
def lr_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64×64 LR crop of the camera image, blurred ×2 with a known kernel."""
    hr = data.camera()[100:228, 100:228].astype(float)
    lr = np.clip(degrade(hr, gaussian_kernel(13, 1.6, 1.0, 0.3), 2), 0, 255).astype(np.uint8)
    return write_image(tmp_path_factory.mktemp("cli") / "cam.png", lr)


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_top_level_help_is_fast_and_imports_no_torch(flag: str) -> None:
    code = (f"import json, sys\nfrom napari_kernelgan.cli import main\ntry:\n    main([{flag!r}])\n"
            "except SystemExit:\n    pass\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []
    best = np.inf
    for _ in range(3):  # the best of three: the machine is shared
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "napari_kernelgan.cli", flag], capture_output=True, text=True,
                              timeout=60)
        best = min(best, time.perf_counter() - start)
        assert proc.returncode == 0, proc.stderr
    assert best < 1.0
    assert ("estimate" in proc.stdout and "blind-sr" in proc.stdout) if flag == "--help" else "0." in proc.stdout


def test_estimate_help_lists_estimators_with_presets_and_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["estimate", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "auto (default)" in out and "\n  kernelgan\n" in out and "\n  edges" in out and "confidence" in out
    assert "presets: paper, default, fast (default: default)" in out
    assert "quantile=0.25" in out and "iterations=None" in out
    assert "--set KEY=VALUE" in out and "--device" in out and "--threads N" in out


def test_sr_help_lists_sr_methods_and_blind_sr_both_kinds(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["sr", "--help"])
    out = capsys.readouterr().out
    assert all(m in out for m in ("bicubic", "closed-form", "zssr", "usrnet")) and "sigma" in out
    assert "--no-safeguards" in out and "image's own units" in out and "auto" in out
    with pytest.raises(SystemExit):
        main(["blind-sr", "--help"])
    out = capsys.readouterr().out
    assert "--estimate-set KEY=VALUE" in out and "kernel estimators" in out and "SR methods" in out


def test_estimator_edges_on_a_file(lr_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "k"
    assert main(["estimate", str(lr_file), "--estimator", "edges", "--set", "quantile=0.3", "--threads", "1",
                 "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "×2 kernel 13×13" in text and "(edges," in text
    names = {p.name for p in out.iterdir()}
    assert {"cam_kernel_x2.mat", "cam_kernel_x2.npy", "cam_kernel_x2.png", "cam_kernel.json"} <= names
    meta = json.loads((out / "cam_kernel.json").read_text())
    assert meta["method"] == "edges" and meta["options"]["quantile"] == 0.3


@pytest.mark.parametrize("argv", [["--set", "bogus=1"], ["--preset", "fast"], ["--set", "quantile"]])
def test_bad_option_one_line_nothing_written(lr_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                             argv: list[str]) -> None:
    out = tmp_path / "k"
    assert main(["estimate", str(lr_file), "--estimator", "edges", "--out", str(out), *argv]) == 1
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("error: ")
    assert ("accepted options: quantile, size" in err[0]) or "KEY=VALUE" in err[0]
    assert not out.exists()


def test_set_sigma_reaches_closed_form(lr_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import napari_kernelgan.sr.closed_form as cf

    seen: list[float] = []
    original = cf.closed_form_sr

    def spy(*args, **kwargs):
        seen.append(kwargs["sigma"])
        return original(*args, **kwargs)

    monkeypatch.setattr(cf, "closed_form_sr", spy)
    kernel = write_kernel(tmp_path / "k.mat", gaussian_kernel(13, 1.6, 1.0, 0.3))
    out = tmp_path / "sr.tif"
    assert main(["sr", str(lr_file), "--kernel", str(kernel), "--sr-method", "closed-form", "--set", "sigma=2",
                 "-o", str(out)]) == 0
    assert seen and set(seen) == {2.0} and out.is_file()


def test_sr_safeguards_by_default_and_no_safeguards_runs_the_method_alone(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    import warnings

    import tifffile

    from napari_kernelgan import super_resolve

    # A measured PSF on a noisy uint16 fluorescence image: safeguarded by default, the raw method on request.
    from napari_kernelgan.synthetic import microscopy_scene

    psf = gaussian_kernel(13, 1.2)
    clean = np.clip(degrade(microscopy_scene((128, 128), 1, kind="puncta"), psf, 2), 0.0, None)
    rng = np.random.default_rng(0)
    lr = np.round(rng.poisson(clean / clean.max() * 300.0) + 100 + rng.normal(0, 1.5, clean.shape))
    image = tmp_path / "beads.tif"
    tifffile.imwrite(image, lr.astype(np.uint16))
    kernel = write_kernel(tmp_path / "psf.npy", psf)
    safe_out, raw_out = tmp_path / "safe.tif", tmp_path / "raw.tif"
    assert main(["sr", str(image), "--kernel", str(kernel), "-o", str(safe_out)]) == 0
    assert "noise σ" in capsys.readouterr().out
    assert main(["sr", str(image), "--kernel", str(kernel), "--no-safeguards", "-o", str(raw_out)]) == 0
    assert "noise σ" not in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        safe = super_resolve(lr.astype(np.uint16), psf, 2, threads=1).image
    raw = super_resolve(lr.astype(np.uint16), psf, 2, threads=1, safe=False).image
    assert np.array_equal(tifffile.imread(safe_out), safe) and np.array_equal(tifffile.imread(raw_out), raw)
    assert not np.array_equal(safe, raw)
    # sigma in ADU and 'auto' pass the command line's check; a negative one is refused in its words.
    assert main(["sr", str(image), "--kernel", str(kernel), "--set", "sigma=auto", "-o", str(safe_out)]) == 0
    assert main(["sr", str(image), "--kernel", str(kernel), "--set", "sigma=30", "--no-safeguards", "-o",
                 str(raw_out)]) == 0
    assert main(["sr", str(image), "--kernel", str(kernel), "--set", "sigma=-2", "-o", str(raw_out)]) != 0
    assert "sigma must be 'auto' or a noise level" in capsys.readouterr().err


def test_deprecated_method_still_works_and_warns(lr_file: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    assert main(["estimate", str(lr_file), "--method", "edges", "--out", str(tmp_path / "k"), "-q"]) == 0
    captured = capsys.readouterr()
    assert "(edges," in captured.out
    assert "warning: --method is deprecated; use --estimator" in captured.err
    kernel = tmp_path / "k" / "cam_kernel_x2.mat"
    out = tmp_path / "sr.png"
    assert main(["sr", str(lr_file), "--kernel", str(kernel), "--method", "bicubic", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "bicubic" in captured.out and "use --sr-method" in captured.err and out.is_file()


def test_bug_keeps_its_traceback_user_error_is_one_line(lr_file: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    import napari_kernelgan.estimators.edges as edges

    def bug(*args, **kwargs):
        raise RuntimeError("a bug in the estimator")

    monkeypatch.setattr(edges, "estimate_covariance", bug)
    with pytest.raises(RuntimeError, match="a bug in the estimator"):
        main(["estimate", str(lr_file), "--estimator", "edges", "--out", str(tmp_path / "a")])

    def refused(*args, **kwargs):
        raise BadInputError("no sharp edges found")

    monkeypatch.setattr(edges, "estimate_covariance", refused)
    capsys.readouterr()
    assert main(["estimate", str(lr_file), "--estimator", "edges", "--out", str(tmp_path / "b")]) == 1
    assert _lines(capsys.readouterr().err) == [f"error: {lr_file}: no sharp edges found"]
    assert not (tmp_path / "b").exists()


def test_corrupt_kernel_file_is_named(lr_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "kernels"
    folder.mkdir()
    k = gaussian_kernel(13, 1.5)
    k[0, 0] = -0.05
    np.save(folder / "neg.npy", k)
    (folder / "k.mat").write_bytes(b"not a mat file")
    for name, words in (("neg.npy", "kernel in neg.npy has negative values"), ("k.mat", "could not read kernel file")):
        path = folder / name
        out = tmp_path / f"sr_{name}.tif"
        assert main(["sr", str(lr_file), "--kernel", str(path), "-o", str(out)]) == 1
        err = _lines(capsys.readouterr().err)
        assert len(err) == 1 and err[0].startswith(f"error: {path}: {words}")
        assert not out.exists()


def test_stack_axis_hint_speaks_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    stack = write_image(tmp_path / "stack.tif", np.tile(np.arange(64, dtype=np.uint8), (3, 2, 64, 1)))
    assert main(["estimate", str(stack), "--estimator", "edges", "--out", str(tmp_path / "k")]) == 1
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"error: {stack}: cannot tell the two image axes")
    message = err[0].removeprefix(f"error: {stack}: ")
    assert message == ("cannot tell the two image axes in an array of shape (3, 2, 64, 64): a 4-D image without OME "
                       "or ImageJ axes needs --channel-axis and/or --stack-axis, or --axes naming them all (e.g. "
                       "--axes ZYX), or the 2-D slice you want")


@pytest.mark.parametrize("flags, words", [
    (["--channel-axis", "5"], "--channel-axis 5 is out of range for an image of 3 dimensions (3, 64, 64)"),
    (["--stack-axis", "-4"], "--stack-axis -4 is out of range for an image of 3 dimensions (3, 64, 64)"),
    (["--channel-axis", "0", "--stack-axis", "0"], "--channel-axis and --stack-axis must differ"),
])
def test_axis_errors_name_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str],
                                    words: str) -> None:
    stack = write_image(tmp_path / "stack.tif", np.tile(np.arange(64, dtype=np.uint8), (3, 64, 1)))
    kernel = write_kernel(tmp_path / "k.mat", gaussian_kernel(13, 1.2, 1.2, 0.0))
    assert main(["sr", str(stack), "--kernel", str(kernel), *flags]) == 1
    assert _lines(capsys.readouterr().err) == [f"error: {stack}: {words}"]


def test_output_for_many_inputs_names_the_flag(lr_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    kernel = write_kernel(tmp_path / "k.mat", gaussian_kernel(13, 1.2, 1.2, 0.0))
    other = write_image(tmp_path / "other.png", np.tile(np.arange(64, dtype=np.uint8), (64, 1)))
    assert main(["sr", str(lr_file), str(other), "--kernel", str(kernel), "-o", str(tmp_path / "out.png")]) == 1
    assert _lines(capsys.readouterr().err) == [
        "error: --output names the result of one input, and 2 inputs were given; leave it out to write each result "
        "beside its input"]


def test_missing_weights_name_the_set_flag(lr_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    kernel = write_kernel(tmp_path / "k.mat", gaussian_kernel(13, 1.2, 1.2, 0.0))
    missing = tmp_path / "nowhere" / "usrnet.pth"
    code = main(["sr", str(lr_file), "--kernel", str(kernel), "--sr-method", "usrnet", "--set", f"weights={missing}",
                 "-o", str(tmp_path / "out.png")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: USRNet weights were not found.\n")
    assert "  * pass its path (--set weights=/path/to/usrnet_tiny.pth),\n" in err and "weights='" not in err


def test_library_errors_in_each_front_ends_words() -> None:
    import pickle

    from napari_kernelgan.devices import resolve_device
    from napari_kernelgan.errors import BadOptionError, Param, reworded, user_message
    from napari_kernelgan.stacks import open_image

    try:
        resolve_device("mps")
    except BadOptionError as exc:  # no Apple GPU on a test machine
        assert str(exc) == user_message(exc) == ("device 'mps' was requested but Apple MPS is not available here; "
                                                 "use device='auto' or 'cpu'")
        assert user_message(exc, "cli").endswith("; use --device auto or cpu")
        assert user_message(exc, "gui").endswith("; use device auto or cpu") and exc.param == "device"
    stack = write_image(Path(tempfile.mkdtemp()) / "s.tif", np.tile(np.arange(64, dtype=np.uint8), (3, 64, 1)))
    with pytest.raises(BadInputError) as info:
        open_image(stack, channel_axis=np.int64(5))
    exc = info.value
    assert str(exc).startswith("channel_axis=5 is out of range") and exc.param == "channel_axis"
    assert user_message(exc, "gui").startswith("channel axis 5 is out of range")
    # The words survive pickling (an error recorded on a Dask worker) and a prefix naming the slice.
    back = pickle.loads(pickle.dumps(reworded(exc, "z3: ")))
    assert type(back) is BadInputError and back.params == (Param("channel_axis", 5),)
    assert user_message(back, "cli").startswith("z3: --channel-axis 5 is out of range")
    assert user_message(RuntimeError("a bug")) is None


def test_interrupt_exits_130_and_leaves_no_partial_set(lr_file: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    import napari_kernelgan.batch as batch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # Interrupted after the .mat and .npy kernels were written: they must go too.
    monkeypatch.setattr(batch.outputs, "save_kernel_plot", interrupted)
    out = tmp_path / "k"
    assert main(["estimate", str(lr_file), "--estimator", "edges", "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_threads_must_be_positive(lr_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["estimate", str(lr_file), "--estimator", "edges", "--threads", "0", "--out", str(tmp_path)])
    assert stop.value.code == 2 and "positive integer" in capsys.readouterr().err


def test_every_user_error_keeps_its_words_through_pickling_and_a_prefix() -> None:
    import pickle

    from napari_kernelgan import errors

    for cls in (errors.BadInputError, errors.MissingFileError, errors.BadOptionError, errors.MethodUnavailableError,
                errors.WeightsMissingError, errors.OutputError, errors.Cancelled):
        exc = cls("use ", errors.Param("device", "auto", ("cpu",)), " instead")
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is cls and str(back) == "use device='auto' or 'cpu' instead", cls
        assert errors.user_message(back, "cli") == "use --device auto or cpu instead"
        prefixed = errors.reworded(exc, "z3: ")
        assert type(prefixed) is cls and prefixed.__cause__ is exc
        assert errors.user_message(prefixed, "gui") == "z3: use device auto or cpu instead"


def test_method_label_reads_the_confidence_and_names_unused_members():
    """The one-line estimate label gives the confidence's level and says which members could not measure the
    image, and why (the reason a user sees that e.g. spots played no part)."""
    import numpy as np

    from napari_kernelgan.cli.output import method_label
    from napari_kernelgan.confidence import read_confidence
    from napari_kernelgan.types import KernelEstimate

    def estimate(confidence, failed):
        return KernelEstimate(kernel=np.full((13, 13), 1 / 169), scale=2, method="auto", confidence=confidence,
                              options={"failed_members": failed} if failed else {}, dmap=None, loss_history=[],
                              iterations=0, elapsed=1.0, device="cpu", seed=0)

    low = method_label(estimate(0.05, {"spots": "no isolated spots found"}))
    assert low == f"auto, confidence 0.05 ({read_confidence(0.05).level}); not used: spots (no isolated spots found)"
    assert read_confidence(0.05).level == "low" and read_confidence(0.95).level == "high"
    assert method_label(estimate(0.95, None)) == "auto, confidence 0.95 (high)"
    assert method_label(estimate(None, None)) == "auto"
