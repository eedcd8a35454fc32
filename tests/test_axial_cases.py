"""The axial report's generated z-stacks (``benchmarks/axial_cases.py``) are built as documented, written as files
the CLI reads, kept apart between DEVELOPMENT and REPORT, and the report's own references (``axial_benchmark.py``)
model the generator exactly."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared_data import SHARED

ROOT = Path(__file__).resolve().parents[1]
REAL_DEV = SHARED / "data" / "real_dev"
pytestmark = pytest.mark.skipif(not REAL_DEV.is_dir(), reason=f"real_dev images not found at {REAL_DEV}")


@pytest.fixture
def cases(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import axial_cases

    return axial_cases


@pytest.fixture
def bench(cases):
    import axial_benchmark

    return axial_benchmark


def _small(cases, name: str, **kw):
    spec = {s.name: s for s in cases.report_cases() + cases.development_cases()}[name]
    return dataclasses.replace(spec, **kw)


@pytest.mark.parametrize("name", ["dev_microtubules_wf_oil", "dev_mixed_wf_mismatch"])
def test_stack_plane_i_is_the_blurred_object_plane_i_times_factor(cases, name: str) -> None:
    from napari_kernelgan.synthetic3d import blur3d

    # A real-texture object, in focus with matched oil and at depth in a mismatched medium.
    spec = _small(cases, name, source="real:cell_microtubules", planes=9, side=48, photons=2000, read_noise=2.0)
    case = cases.build(spec, REAL_DEV)
    obj = cases.object_for(spec, REAL_DEV)
    assert case.stack.shape == (9, 48, 48) and case.truth.shape == (33, 48, 48) == obj.shape
    blurred = blur3d(obj, case.psf)
    gain = spec.photons / blurred[::spec.factor].max()
    expected = blurred[::spec.factor] * gain
    resid = case.stack.astype(np.float64) - cases.OFFSET - expected
    # Poisson (1 e⁻ per ADU) plus read noise and rounding: mean zero, variance the expected signal plus rn².
    variance = expected + spec.read_noise ** 2 + 1 / 12
    assert abs(resid.mean()) < 4 * np.sqrt(variance.mean() / resid.size)
    assert (resid ** 2 / variance).mean() == pytest.approx(1.0, abs=0.03)
    if case.optics.n_sample is None:  # sharp in z: the planes in between are a different signal
        for shift, least in ((1, 1.2), (2, 2.0)):
            other = blurred[shift::spec.factor][:8] * gain
            assert ((case.stack[:8] - cases.OFFSET - other) ** 2 / variance[:8]).mean() > least


def test_mismatched_psf_is_centred_as_the_axial_tools_centre_it(cases) -> None:
    from napari_kernelgan.axial.psf import line_profile
    from napari_kernelgan.physics.optics import axial_fwhm_um

    spec = _small(cases, "h2ax_wf_mismatch", source="procedural:puncta", planes=9, side=48)
    case = cases.build(spec, REAL_DEV)
    on_axis = case.psf[:, case.psf.shape[1] // 2, case.psf.shape[2] // 2]
    z = np.arange(on_axis.size) - on_axis.size // 2
    # The on-axis centre of mass on the middle plane (as axial.psf.centre_profile), though the profile is skewed:
    # its peak, where the truth's lateral PSF is taken, lies planes away.
    assert abs(z @ on_axis / on_axis.sum()) < 0.1
    peak = int(np.argmax(on_axis))
    assert abs(peak - on_axis.size // 2) >= 2
    true = case.true_psf
    assert np.allclose(true.lateral, case.psf[peak] / case.psf[peak].sum())
    # centre_profile leaves it where it is: the true AxialPSF is registered with the stack and the truth.
    assert abs((np.argmax(true.axial) - true.axial.size // 2) - (peak - on_axis.size // 2)) <= 1
    # The truth is the object under that lateral PSF and its own line profile along z.
    lz = line_profile(true.lateral)
    assert true.lateral_fwhm_um[0] == pytest.approx(true.lateral_fwhm_um[1], rel=0.02) and lz.size % 2 == 1
    # Oil into water at 15 µm: the axial FWHM is far beyond the matched closed form, and the PSF covers it.
    assert case.axial_fwhm_um > 1.8 * axial_fwhm_um(case.optics)
    assert on_axis[0] < 0.02 * on_axis.max()


def test_texture_volume_is_statistically_isotropic_and_made_of_image_lines(cases) -> None:
    import tifffile

    # Foci over nuclear haze fill the whole image evenly (small crops of a cell image see local structure).
    image = tifffile.imread(REAL_DEV / "h2ax_foci.tif").astype(np.float64)
    vol = cases.texture_volume(image, (40, 64, 48), seed=3)
    assert vol.shape == (40, 64, 48) and vol.min() >= 0.01 - 1e-12 and vol.max() <= 1.0 + 1e-12
    # Mean absolute differences along z, y and x agree within 15 %: the object is the same in every direction.
    steps = [np.abs(np.diff(vol, axis=a)).mean() for a in range(3)]
    assert max(steps) / min(steps) < 1.15, steps
    # Each XZ plane is the image crop at the path's position (rows along z, columns along x); the path moves
    # one pixel per y step.
    path = cases._path(64, (image.shape[0] - 40, image.shape[1] - 48), np.random.default_rng(3))
    assert np.allclose(np.linalg.norm(np.diff(path, axis=0), axis=1)[np.all(
        (path[1:] > 0) & (path[1:] < (image.shape[0] - 40, image.shape[1] - 48)), axis=1)], 1.0)
    from scipy import ndimage

    zz, xx = np.mgrid[0:40, 0:48].astype(np.float64)
    for y in (0, 31, 63):
        crop = ndimage.map_coordinates(image, [zz + path[y][0], xx + path[y][1]], order=3)
        assert np.corrcoef(crop.ravel(), vol[:, y, :].ravel())[0, 1] > 0.99
        assert np.corrcoef(crop.ravel(), vol[:, (y + 20) % 64, :].ravel())[0, 1] < 0.7


def test_chromosomes_are_binned_and_resampled_to_an_isotropic_grid(cases) -> None:
    vol = cases.chromosome_volume(REAL_DEV)
    # 40 planes of 150 nm onto 101.7 nm: 59; 152×126 binned 3×3: 50×42.
    assert vol.shape == (59, 50, 42)
    spec = {s.name: s for s in cases.report_cases()}["chromosomes_conf_oil"]
    assert spec.pixel_um == pytest.approx(0.1017) and spec.truth_shape[0] <= vol.shape[0]


def test_development_and_report_share_no_object_and_fit_the_budget(cases) -> None:
    dev, rep = cases.development_cases(), cases.report_cases()
    assert 12 <= len(rep) <= 20
    objects = {s.source for s in dev} | {(s.source, s.seed) for s in dev}
    for s in rep:
        assert (s.source, s.seed) not in objects
        if s.source.startswith("real"):
            assert s.source not in objects
    assert all(s.seed < 100 for s in dev if s.source.startswith("procedural"))
    # Nor any seed the estimator's constants were fitted on (calibrate_axial.py: 100–299, held out 300+).
    assert all(s.seed >= 1000 for s in rep)
    assert {s.source.split(":")[1] for s in rep if s.source.startswith("real:")} == set(cases.REPORT_IMAGES)
    for s in dev + rep:
        z, y, x = s.truth_shape
        assert z <= 96 and y <= 128 and x <= 128 and 3 <= s.factor <= 5
        assert 0.08 <= s.pixel_um <= 0.15 and 50 <= s.photons <= 2000 and 1 <= s.read_noise <= 3
    kinds = {(s.modality, s.immersion) for s in rep}
    assert kinds == {("widefield", "matched"), ("widefield", "mismatched"), ("confocal", "matched"),
                     ("confocal", "mismatched")}


def test_written_stack_carries_pixel_size_and_z_step(cases, tmp_path: Path) -> None:
    from napari_kernelgan.stacks import open_image

    spec = _small(cases, "chromosomes_conf_oil")
    case = cases.build(spec, REAL_DEV)
    path = cases.write_case(spec, case, tmp_path)
    src = open_image(path)
    assert src.meta.axes == "ZYX"
    assert src.meta.pixel_size["X"] == pytest.approx(spec.pixel_um, rel=1e-5)
    assert src.meta.pixel_size["Z"] == pytest.approx(spec.pixel_um * spec.factor, rel=1e-6)
    assert np.array_equal(np.asarray(src.data), case.stack)
    assert np.allclose(np.load(tmp_path / f"{spec.name}_truth.npy"), case.truth, rtol=1e-6)
    assert np.load(tmp_path / f"{spec.name}_psf.npy").shape == case.psf.shape


def test_references_model_the_generator(cases, bench) -> None:
    from napari_kernelgan.synthetic3d import blur3d

    spec = _small(cases, "actin_conf_oil", planes=9, side=48)
    case = cases.build(spec, REAL_DEV)
    obj = cases.object_for(spec, REAL_DEV)
    # The Wiener reference's forward model: convolution on the mirror-extended periodic grid is the generator's blur.
    ext = bench._mirror(obj)
    periodic = np.fft.ifftn(bench._otf(case.psf[::-1, ::-1, ::-1], ext.shape) * np.fft.fftn(ext)).real
    assert np.allclose(periodic[:obj.shape[0], :obj.shape[1], :obj.shape[2]], blur3d(obj, case.psf), atol=1e-9)
    # scipy cubic passes through every plane; the oracles beat it on a case with real axial blur.
    cubic = bench.scipy_cubic(case.stack, spec.factor)
    assert np.allclose(cubic[::spec.factor], case.stack - cases.OFFSET)
    wiener = bench.reference_wiener_3d(case.stack, case, obj, spec.read_noise)
    ref1d, _ = bench.reference_true_relative(case.stack, case, case.truth)
    p_cubic = bench.psnr(cubic, case.truth, spec.factor)
    assert bench.psnr(ref1d, case.truth, spec.factor) >= p_cubic - 0.05
    assert bench.psnr(wiener, case.truth, spec.factor) > p_cubic + 2.0


def test_user_optics_are_what_a_user_types_never_the_mismatch(cases, bench) -> None:
    by_name = {s.name: s for s in cases.report_cases()}
    mismatch = by_name["mixed_wf_mismatch"]
    assert "depth_um" in mismatch.optics and "n_sample" in mismatch.optics
    assert bench.user_optics(mismatch) == {"modality": "widefield", "na": 1.4, "wavelength_um": 0.6,
                                           "n_immersion": 1.515}
    assert bench.user_optics(by_name["membranes_conf_water"]) == {
        "modality": "confocal", "na": 1.2, "wavelength_um": 0.52, "n_immersion": 1.333, "pinhole_au": 0.5}


def test_auto_ran_names_what_auto_ran_before_any_fallback(bench) -> None:
    from types import SimpleNamespace

    def res(**validation):
        return SimpleNamespace(validation=validation)

    assert bench.auto_ran(res(auto_choice="psf3d")) == "3-D PSF"
    assert bench.auto_ran(res(auto_choice="psf3d", psf3d_rejected="too wide")) == "smore (3-D PSF rejected)"
    assert bench.auto_ran(res(auto_choice="smore")) == "smore"
    assert bench.auto_ran(res()) is None  # a method named by the caller
    done = [{"auto_ran": "3-D PSF", "method": "deconvolve", "fell_back": False},
            {"auto_ran": "smore", "method": "cubic", "fell_back": True},
            {"auto_ran": "smore", "method": "smore", "fell_back": False}]
    assert bench.ran_summary(done) == "auto ran 3-D PSF 1, smore 2 of 3; fell back to cubic on 1"


def test_optics_rows_score_the_optics_given_runs_against_the_cases_own_cubic(bench) -> None:
    sr = {"psnr": 30.0, "ssim": 0.9, "fell_back": False, "warnings": [], "method": "smore"}
    row = {"case": "c", "fwhm_error_pct": 40.0, "estimate": {"confidence": 0.1}, "lateral_error_pct": 5.0,
           "cubic": {**sr, "psnr": 28.0}, "smore": {**sr, "psnr": 28.5}, "deconvolve": sr, "true_deconvolve": sr,
           "true_smore": {**sr, "psnr": 31.0},
           "optics_given": {"fwhm_error_pct": 10.0, "estimate": {"confidence": 0.8}, "lateral_error_pct": 5.0,
                            "auto": {**sr, "psnr": 30.5, "auto_ran": "3-D PSF"}}}
    (view,) = bench.optics_rows([row, {"case": "refused", "optics_given": {"error": "estimate: no"}}])
    assert view["fwhm_error_pct"] == 10.0 and view["smore"]["psnr"] == 30.5 and view["cubic"]["psnr"] == 28.0
    numbers = {c["target"]: c["numbers"] for c in bench.checks([view])}
    assert numbers["isotropic SR ≥ cubic + 1.5 dB on average"] == "mean +2.50 dB"
    assert numbers["axial FWHM within 15 % on average"] == "mean 10.0 %"
    assert row["smore"]["psnr"] == 28.5  # the case's own row is left as it was


def test_quick_report_runs_end_to_end(tmp_path: Path) -> None:
    out, js = tmp_path / "report.md", tmp_path / "cases.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "axial_benchmark.py"), "--quick",
                           "--cases", "chromosomes_conf_oil", "--data", str(REAL_DEV), "--out", str(out),
                           "--json", str(js), "--with-optics"], capture_output=True, text=True, timeout=900, env=env,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(js.read_text())
    (row,) = data["cases"]
    assert row["case"] == "chromosomes_conf_oil" and row["truth_shape"] == [58, 50, 42]
    assert 0.3 < row["axial_fwhm_um"] < 0.7 and 15 < row["scipy_cubic"]["psnr"] < 60
    assert row["wiener3d"]["psnr"] > row["scipy_cubic"]["psnr"]
    text = out.read_text()
    assert "## Per case" in text and "chromosomes_conf_oil" in text and "Command: `python benchmarks/axial" in text
    if data["api"]:  # the product's rows, where this checkout has the axial API
        assert 15 < row["cubic"]["psnr"] < 60 and 0 <= row["estimate"]["confidence"] <= 1
        assert row["fwhm_error_pct"] >= 0 and row["smore"]["z_step_um"] == pytest.approx(row["pixel_um"], rel=1e-6)
        # what auto ran, and the sentence of a fallback where there is one
        assert row["smore"]["auto_ran"] in ("3-D PSF", "smore", "smore (3-D PSF rejected)")
        assert (row["smore"]["fallback"] is not None) == row["smore"]["fell_back"]
        given = row["optics_given"]
        assert given["optics"] == {"modality": "confocal", "na": 1.4, "wavelength_um": 0.6, "n_immersion": 1.515,
                                   "pinhole_au": 1.0}
        assert given["fwhm_error_pct"] >= 0 and 15 < given["auto"]["psnr"] < 60
        assert given["auto"]["psnr"] >= row["cubic"]["psnr"] or given["auto"]["warnings"]
        assert "## With the optics given" in text and [c["target"] for c in data["checks_optics_given"]] == [
            c["target"] for c in data["checks"]]
