"""``batch --axial``: z-stacks through the batch engine (records, summary, resume), on two small generated stacks."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_kernelgan.batch import BatchConfig, expand_inputs, run_batch
from napari_kernelgan.cli import main
from napari_kernelgan.errors import BadOptionError
from napari_kernelgan.physics.optics import Optics
from napari_kernelgan.stacks import open_image
from napari_kernelgan.vocabulary import Status

PIXEL, FACTOR = 0.1, 3


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    from napari_kernelgan.synthetic3d import axial_case

    folder = tmp_path_factory.mktemp("stacks")
    optics = Optics(na=1.1, wavelength_um=0.6, n_immersion=1.333, modality="widefield")
    cases = [axial_case(seed, optics, pixel_um=PIXEL, factor=FACTOR, shape=(36, 40, 40), kind=kind, photons=600)
             for seed, kind in ((1, "puncta"), (2, "nuclei"))]
    for i, case in enumerate(cases):
        tifffile.imwrite(folder / f"s{i}.tif", case.stack, imagej=True, resolution=(1 / PIXEL, 1 / PIXEL),
                         metadata={"axes": "ZYX", "spacing": case.z_step_um, "unit": "um"})
    return folder, cases


def test_batch_axial_two_stacks_summary_and_resume(stacks, tmp_path: Path, capsys) -> None:
    folder, cases = stacks
    out = tmp_path / "out"
    argv = ["batch", str(folder), "--out", str(out), "--axial", "--axial-method", "cubic", "-q"]
    assert main(argv) == 0
    assert "2 done, 0 skipped" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    for stem in ("s0", "s1"):
        assert {f"{stem}_isotropic.tif", f"{stem}_psf3d.tif", f"{stem}_axial.json", f"{stem}_manifest.json"} <= names
        iso = open_image(out / f"{stem}_isotropic.tif")
        assert iso.data.shape[0] == (cases[0].stack.shape[0] - 1) * FACTOR + 1
        assert iso.meta.size_um("Z") == pytest.approx(PIXEL)
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [Path(r["file"]).name for r in rows] == ["s0.tif", "s1.tif"]
    for row in rows:
        assert row["status"] == "ok" and row["sr_method"] == "cubic" and row["scale"] == str(FACTOR)
        lateral = max(float(v) for v in row["lateral_fwhm_um"].split("×"))
        assert float(row["axial_fwhm_um"]) > 1.5 * lateral  # elongated along z, as the truth
        assert float(row["z_step_out_um"]) == pytest.approx(PIXEL)
        assert row["output"].endswith("_isotropic.tif")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["axial"] is True and summary["ok"] == 2

    # A rerun skips both (outputs verified); other settings redo them.
    assert main(argv) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out
    assert main([*argv, "--z-factor", "2"]) == 0
    assert "2 done, 0 skipped" in capsys.readouterr().out
    assert open_image(out / "s0_isotropic.tif").data.shape[0] == (cases[0].stack.shape[0] - 1) * 2 + 1


def test_one_bad_stack_does_not_stop_the_others(stacks, tmp_path: Path) -> None:
    folder, _ = stacks
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((40, 40), np.uint16))
    cfg = BatchConfig(out=tmp_path / "out", axial=True, axial_method="cubic", psf_only=True)
    batch = run_batch([folder / "s0.tif", flat], cfg)
    assert [r.status for r in batch.results] == [Status.OK, Status.FAILED]
    assert "axial needs a z-stack" in batch.results[1].error
    assert batch.results[0].axial["outputs"]["volume"] is None


def test_axial_results_beside_the_inputs_are_not_taken_as_inputs(tmp_path: Path) -> None:
    for name in ("a.tif", "a_isotropic.tif", "a_psf3d.tif", "b_c1_psf3d.tif"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in expand_inputs([tmp_path], axial=True)] == ["a.tif"]
    assert len(expand_inputs([tmp_path])) == 4  # 2-D runs take every image, as before


@pytest.mark.parametrize("settings,words", [({"axial_method": "bogus"}, "must be one of"),
                                            ({"z_step": 0}, "above 0"), ({"z_factor": 9}, "from 1 to 8"),
                                            ({"per_slice": True}, "do not apply")])
def test_axial_settings_refused_before_any_file(settings, words) -> None:
    with pytest.raises(BadOptionError, match=words):
        BatchConfig(out=None, axial=True, **settings)
