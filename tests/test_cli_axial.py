"""``napari-kernelgan axial``: a z-stack's 3-D PSF and isotropic voxels from the command line, end to end on a
generated stack with a known 3-D PSF, and the refusals (a 2-D image, no z step, a z step not above the pixel)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_kernelgan.cli import main
from napari_kernelgan.physics.optics import Optics
from napari_kernelgan.stacks import open_image

PIXEL, FACTOR = 0.1, 4


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def case():
    from napari_kernelgan.synthetic3d import axial_case

    optics = Optics(na=1.2, wavelength_um=0.52, n_immersion=1.333, modality="widefield")
    return axial_case(5, optics, pixel_um=PIXEL, factor=FACTOR, shape=(48, 48, 48), kind="mixed", photons=800)


def write_stack(path: Path, stack: np.ndarray, *, z_step: float | None, pixel: float = PIXEL,
                axes: str = "ZYX") -> Path:
    """``stack`` as an ImageJ TIFF with its pixel size and (unless ``None``) its z spacing."""
    md: dict = {"axes": axes, "unit": "um"}
    if z_step is not None:
        md["spacing"] = z_step
    tifffile.imwrite(path, stack, imagej=True, resolution=(1 / pixel, 1 / pixel), metadata=md)
    return path


def test_end_to_end_writes_the_stack_the_psf_and_the_record(case, tmp_path: Path, capsys) -> None:
    src = write_stack(tmp_path / "cells.tif", case.stack, z_step=case.z_step_um)
    out = tmp_path / "out"
    assert main(["axial", str(src), "--out", str(out), "--sr-method", "cubic", "--threads", "1",
                 "--na", "1.2", "--wavelength", "0.52", "--immersion", "water"]) == 0
    text = capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"cells_isotropic.tif", "cells_psf3d.tif", "cells_axial.json"}
    assert "3-D PSF FWHM z" in text and "cells_isotropic.tif" in text

    record = json.loads((out / "cells_axial.json").read_text())
    for key in ("axial_fwhm_um", "lateral_fwhm_um", "confidence", "method", "notes", "z_step_um", "z_step_out_um",
                "z_factor", "sr_method", "warnings", "validation", "timings", "settings"):
        assert key in record, key
    assert record["z_factor"] == FACTOR and record["sr_method"] == "cubic"
    assert record["z_step_um"] == pytest.approx(case.z_step_um)
    assert record["z_step_out_um"] == pytest.approx(case.z_step_um / FACTOR)
    # The command's PSF is the API's on the same stack, sampling and optics (what reached the estimator).
    from napari_kernelgan.api import estimate_psf3d

    psf = estimate_psf3d(case.stack, pixel_um=PIXEL, z_step_um=case.z_step_um, threads=1,
                         optics={"na": 1.2, "wavelength_um": 0.52, "n_immersion": 1.333})
    assert record["axial_fwhm_um"] == pytest.approx(psf.axial_fwhm_um, abs=1e-4)
    assert record["confidence"] == pytest.approx(psf.confidence, abs=1e-4) and record["method"] == psf.method
    assert record["lateral_fwhm_um"] == pytest.approx(list(psf.lateral_fwhm_um), abs=1e-4)
    assert record["axial_fwhm_um"] > 1.5 * max(record["lateral_fwhm_um"])  # elongated along z, as the truth
    assert record["settings"]["hints"]["na"] == 1.2

    iso = open_image(out / "cells_isotropic.tif")
    nz = case.stack.shape[0]
    assert iso.meta.axes == "ZYX" and iso.data.shape == ((nz - 1) * FACTOR + 1, 48, 48)
    assert iso.data.dtype == np.uint16
    assert iso.meta.size_um("Z") == pytest.approx(case.z_step_um / FACTOR)
    assert iso.meta.size_um("X") == pytest.approx(PIXEL)
    with tifffile.TiffFile(out / "cells_isotropic.tif") as tif:
        assert tif.imagej_metadata["spacing"] == pytest.approx(case.z_step_um / FACTOR)
    # Every input plane is kept: input plane i is output plane i * F.
    np.testing.assert_allclose(np.asarray(iso.data)[::FACTOR].astype(float), case.stack.astype(float), atol=1)

    from napari_kernelgan.api import read_psf3d

    psf, pixel, z_step = read_psf3d(out / "cells_psf3d.tif")
    assert psf.ndim == 3 and psf.dtype == np.float32 and pixel == pytest.approx(PIXEL)
    assert z_step is not None and z_step > 0
    # Not replaced without --overwrite; replaced with it.
    assert main(["axial", str(src), "--out", str(out), "--sr-method", "cubic", "--psf-only"]) == 1
    assert "--overwrite" in capsys.readouterr().err


def test_channels_get_a_psf_each_and_the_output_keeps_them(case, tmp_path: Path, capsys) -> None:
    two = np.stack([case.stack, case.stack], axis=1)  # ZCYX
    src = write_stack(tmp_path / "two.tif", two, z_step=case.z_step_um, axes="ZCYX")
    assert main(["axial", str(src), "--sr-method", "cubic", "--z-factor", "2", "--threads", "1"]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"two_c0_psf3d.tif", "two_c1_psf3d.tif", "two_isotropic.tif", "two_axial.json"} <= names
    iso = open_image(tmp_path / "two_isotropic.tif")
    assert iso.meta.axes == "ZCYX" and iso.data.shape == ((case.stack.shape[0] - 1) * 2 + 1, 2, 48, 48)
    np.testing.assert_array_equal(np.asarray(iso.data[:, 0]), np.asarray(iso.data[:, 1]))
    record = json.loads((tmp_path / "two_axial.json").read_text())
    assert len(record["channels"]) == 2 and len(record["axial_fwhm_um"]) == 2


def test_psf_only_writes_no_stack(case, tmp_path: Path) -> None:
    src = write_stack(tmp_path / "cells.tif", case.stack, z_step=case.z_step_um)
    assert main(["axial", str(src), "--psf-only", "--threads", "1"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"cells.tif", "cells_psf3d.tif", "cells_axial.json"}
    assert json.loads((tmp_path / "cells_axial.json").read_text())["z_step_out_um"] is None


def test_a_2d_image_is_refused(tmp_path: Path, capsys) -> None:
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.random.default_rng(0).integers(0, 999, (64, 64)).astype(np.uint16))
    assert main(["axial", str(flat)]) == 1
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "axial needs a z-stack" in err[0] and "flat.tif" in err[0]
    assert [p.name for p in tmp_path.iterdir()] == ["flat.tif"]


def test_plain_tiffs_read_as_zyx_or_asked_for_their_axes(case, tmp_path: Path, capsys) -> None:
    tifffile.imwrite(tmp_path / "plain.tif", case.stack)  # no axes, no sizes
    assert main(["axial", str(tmp_path / "plain.tif"), "--pixel-size", "0.1", "--z-step", "0.4", "--psf-only"]) == 0
    assert json.loads((tmp_path / "plain_axial.json").read_text())["axes"] == "ZYX"
    tifffile.imwrite(tmp_path / "four.tif", np.stack([case.stack] * 2))
    assert main(["axial", str(tmp_path / "four.tif"), "--z-step", "0.4"]) == 1
    err = capsys.readouterr().err
    assert "does not name its axes" in err and "--axes" in err
    assert main(["axial", str(tmp_path / "four.tif"), "--axes", "TZYX", "--z-step", "0.4", "--pixel-size", "0.1",
                 "--psf-only"]) == 0


def test_no_z_step_is_refused_naming_the_flag_and_z_step_is_then_used(case, tmp_path: Path, capsys) -> None:
    src = write_stack(tmp_path / "noz.tif", case.stack, z_step=None)
    assert main(["axial", str(src), "--sr-method", "cubic"]) == 1
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and "records no z step" in err[0] and "--z-step" in err[0]
    assert main(["axial", str(src), "--sr-method", "cubic", "--z-step", str(case.z_step_um), "--psf-only"]) == 0
    record = json.loads((tmp_path / "noz_axial.json").read_text())
    assert record["z_step_um"] == pytest.approx(case.z_step_um) and record["notices"] == []


def test_z_step_given_over_the_file_is_said(case, tmp_path: Path, capsys) -> None:
    src = write_stack(tmp_path / "cells.tif", case.stack, z_step=0.5)
    assert main(["axial", str(src), "--z-step", str(case.z_step_um), "--sr-method", "cubic", "--z-factor", "2"]) == 0
    assert "given, over the file's 0.5 µm" in capsys.readouterr().out
    iso = open_image(tmp_path / "cells_isotropic.tif")
    assert iso.meta.size_um("Z") == pytest.approx(case.z_step_um / 2)


def test_z_step_not_above_the_pixel_is_refused(case, tmp_path: Path, capsys) -> None:
    src = write_stack(tmp_path / "fine.tif", case.stack, z_step=0.08)
    assert main(["axial", str(src)]) == 1
    err = capsys.readouterr().err
    assert "not larger than the pixel size" in err and "0.08" in err


def test_bad_flags_are_refused_before_reading(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["axial", "x.tif", "--z-step", "-1"])
    with pytest.raises(SystemExit):
        main(["axial", "x.tif", "--z-factor", "9"])
    assert main(["axial", "missing.tif", "--psf", str(tmp_path / "none.tif")]) == 1
    assert "PSF file not found" in capsys.readouterr().err


def test_api_exports_the_axial_tools() -> None:
    import napari_kernelgan
    from napari_kernelgan import api
    from napari_kernelgan.axial import estimate, export, isotropic, psf

    for name, module in (("estimate_psf3d", estimate), ("iter_estimate_psf3d", estimate), ("write_psf3d", export),
                         ("super_resolve_axial", isotropic), ("iter_super_resolve_axial", isotropic),
                         ("AxialResult", isotropic), ("AxialPSF", psf)):
        assert getattr(api, name) is getattr(module, name) is getattr(napari_kernelgan, name)
        assert name in api.__all__ and name in napari_kernelgan.__all__


def test_time_points_each_made_isotropic_ome_keeps_its_format(case, tmp_path: Path) -> None:
    both = np.stack([case.stack, case.stack[:, ::-1]])  # TZYX
    src = tmp_path / "movie.ome.tif"
    tifffile.imwrite(src, both, ome=True, metadata={"axes": "TZYX", "PhysicalSizeX": PIXEL, "PhysicalSizeY": PIXEL,
                                                    "PhysicalSizeZ": case.z_step_um})
    assert main(["axial", str(src), "--sr-method", "cubic", "--threads", "1"]) == 0
    iso = open_image(tmp_path / "movie_isotropic.ome.tif")
    nz = (case.stack.shape[0] - 1) * FACTOR + 1
    assert iso.meta.kind == "ome" and iso.meta.axes == "TZYX" and iso.data.shape == (2, nz, 48, 48)
    assert iso.meta.size_um("Z") == pytest.approx(case.z_step_um / FACTOR)
    np.testing.assert_array_equal(np.asarray(iso.data[1]), np.asarray(iso.data[0])[:, ::-1])
    record = json.loads((tmp_path / "movie_axial.json").read_text())
    assert [s["time"] for s in record["channels"][0]["sr"]] == [0, 1]
    assert (tmp_path / "movie_psf3d.tif").is_file()


def test_streams_from_and_to_memory_maps_and_leaves_no_scratch(case, tmp_path: Path, monkeypatch) -> None:
    import napari_kernelgan.axial.isotropic as isotropic

    seen: list[tuple[type, type]] = []
    original = isotropic.super_resolve_axial

    def spy(stack, psf, **kw):
        seen.append((type(stack), type(kw["out"])))
        return original(stack, psf, **kw)

    monkeypatch.setattr(isotropic, "super_resolve_axial", spy)
    src = write_stack(tmp_path / "cells.tif", case.stack, z_step=case.z_step_um)
    out = tmp_path / "out"
    assert main(["axial", str(src), "--out", str(out), "--sr-method", "cubic"]) == 0
    assert seen == [(np.memmap, np.memmap)]  # the input read as it is used, the output filled on disk
    assert sorted(p.name for p in out.iterdir()) == ["cells_axial.json", "cells_isotropic.tif", "cells_psf3d.tif"]


def test_ctrl_c_leaves_no_partial_output(case, tmp_path: Path, monkeypatch, capsys) -> None:
    import napari_kernelgan.axial.isotropic as isotropic

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(isotropic, "super_resolve_axial", interrupted)
    src = write_stack(tmp_path / "cells.tif", case.stack, z_step=case.z_step_um)
    out = tmp_path / "out"
    assert main(["axial", str(src), "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(out.iterdir()) == []  # the PSF written before is removed too, and the scratch file


@pytest.fixture
def sr_calls(monkeypatch) -> list:
    """The (PSF, psf3d) each call of ``super_resolve_axial`` got; the calls themselves run as usual."""
    import napari_kernelgan.axial.isotropic as isotropic

    given: list = []
    original = isotropic.super_resolve_axial

    def spy(stack, psf, **kw):
        given.append((psf, kw.get("psf3d")))
        return original(stack, psf, **kw)

    monkeypatch.setattr(isotropic, "super_resolve_axial", spy)
    return given


def test_a_measured_psf_is_used_instead_of_an_estimate(case, tmp_path: Path, sr_calls: list) -> None:
    from napari_kernelgan.api import write_psf3d

    given = sr_calls
    true = case.true_psf
    beads = write_psf3d(tmp_path / "beads.tif", true, z_step_um=true.step_um)  # a bead stack every 0.1 µm
    src = write_stack(tmp_path / "cells.tif", case.stack, z_step=case.z_step_um)
    out = tmp_path / "out"
    assert main(["axial", str(src), "--out", str(out), "--psf", str(beads), "--sr-method", "deconvolve"]) == 0
    record = json.loads((out / "cells_axial.json").read_text())
    assert record["method"] == "given" and record["confidence"] == 1.0
    assert record["axial_fwhm_um"] == pytest.approx(true.axial_fwhm_um, rel=0.02)
    assert record["lateral_fwhm_um"] == pytest.approx(list(true.lateral_fwhm_um), rel=0.02)
    psf, psf3d = given[0]
    assert psf.pixel_um == PIXEL and psf.z_step_um == pytest.approx(case.z_step_um)  # on the stack's grid
    assert psf3d[0].ndim == 3 and psf3d[1:] == pytest.approx((PIXEL, true.step_um))  # the beads, for deconvolve


def test_a_measured_psf_at_another_pixel_is_resampled_to_the_stack(case, tmp_path: Path, sr_calls: list) -> None:
    given = sr_calls
    true = case.true_psf
    beads = tmp_path / "beads.tif"  # the same beads said to be at twice the pixel: twice as wide in µm
    tifffile.imwrite(beads, true.volume(true.step_um), imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "ZYX", "spacing": true.step_um, "unit": "um"})
    src = write_stack(tmp_path / "cells.tif", case.stack, z_step=case.z_step_um)
    assert main(["axial", str(src), "--psf", str(beads), "--sr-method", "deconvolve"]) == 0
    record = json.loads((tmp_path / "cells_axial.json").read_text())
    assert record["lateral_fwhm_um"] == pytest.approx([v * 2 for v in true.lateral_fwhm_um], rel=0.1)
    assert any("not the stack's" in n for n in record["notices"])
    psf, psf3d = given[0]
    assert psf.pixel_um == PIXEL and psf3d is None  # its separable form on the stack's grid, not the raw array
