"""The 3-D PSF of a stack from the stack itself: spectral axial estimate, physics check, refusals, cancel, spots."""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest

from napari_kernelgan.axial.estimate import estimate_psf3d, iter_estimate_psf3d
from napari_kernelgan.axial.spots3d import measure_spots3d
from napari_kernelgan.errors import BadInputError, Cancelled
from napari_kernelgan.physics.optics import Optics
from napari_kernelgan.synthetic3d import axial_case

CONFOCAL = Optics(modality="confocal", na=1.2, wavelength_um=0.52, n_immersion=1.333)
WIDEFIELD = Optics(na=1.0, wavelength_um=0.52, n_immersion=1.333)


@pytest.fixture(scope="module")
def confocal_case():
    return axial_case(3, CONFOCAL, factor=4, kind="puncta", shape=(96, 64, 64), photons=500)


def test_a_confocal_stack_recovers_its_axial_fwhm_without_optics(confocal_case):
    c = confocal_case
    psf = estimate_psf3d(c.stack, pixel_um=c.pixel_um, z_step_um=c.z_step_um)
    assert psf.method == "spectral"
    assert psf.axial_fwhm_um == pytest.approx(c.axial_fwhm_um, rel=0.2)
    # the lateral PSF is on the data's grid and near the truth's width
    assert psf.lateral_fwhm_um[1] == pytest.approx(c.true_psf.lateral_fwhm_um[1], rel=0.5)
    assert 0.3 < psf.confidence <= 1


def test_a_widefield_stack_with_its_optics_recovers_its_axial_fwhm():
    c = axial_case(4, WIDEFIELD, factor=3, kind="filaments", shape=(96, 64, 64), photons=2000)
    psf = estimate_psf3d(c.stack, pixel_um=c.pixel_um, z_step_um=c.z_step_um, optics=WIDEFIELD)
    assert psf.axial_fwhm_um == pytest.approx(c.axial_fwhm_um, rel=0.15)
    # the effective blur of extended objects is wider than the on-axis profile (out-of-focus light) or near it
    assert psf.qc["effective_fwhm_um"] > 0.5 * c.axial_fwhm_um


def test_a_widefield_stack_without_optics_recovers_its_axial_fwhm_through_the_learned_estimate():
    # (NA 1.0 widefield stacks of mixed objects score within the modality's widefield margin and read confocal)
    c = axial_case(8, WIDEFIELD, factor=4, kind="nuclei", shape=(96, 64, 64), photons=2000)
    psf = estimate_psf3d(c.stack, pixel_um=c.pixel_um, z_step_um=c.z_step_um)
    assert psf.axial_fwhm_um == pytest.approx(c.axial_fwhm_um, rel=0.15)
    assert psf.qc["learned"]["axial_fwhm_um"] == pytest.approx(psf.axial_fwhm_um, rel=0.02)
    assert psf.model is not None and psf.model.modality == "widefield"
    # the physical forward model still runs as a cross-check in the QC
    assert psf.qc["forward"]["model"].startswith(("widefield", "confocal"))
    # the former reading (effective width through one scale) misses this stack's missing-cone light by 30 %
    from napari_kernelgan.axial.estimate import on_axis_fwhm

    former = on_axis_fwhm(psf.qc["effective_fwhm_um"], psf.qc["lateral_fwhm_um"], "unknown")
    assert abs(former / c.axial_fwhm_um - 1) > 0.2


def test_the_forward_models_score_prefers_the_candidate_that_explains_both_line_sets():
    from napari_kernelgan.axial._forward import Candidate, score

    o = WIDEFIELD
    good = Candidate(o, 3.0, d_x=0.05, d_z=0.05, gain_ratio=1.0, on_axis_fwhm_um=1.0)
    z_only = Candidate(o, 3.0, d_x=0.5, d_z=0.01, gain_ratio=1.0, on_axis_fwhm_um=1.0)
    unequal = Candidate(o, 3.0, d_x=0.05, d_z=0.05, gain_ratio=20.0, on_axis_fwhm_um=1.0)
    assert score(good) < score(z_only) and score(good) < score(unequal)
    assert score(unequal, gain_weight=0.0) == pytest.approx(score(good))


def test_a_contradiction_with_the_given_na_lowers_the_confidence_and_says_so(confocal_case):
    c = confocal_case
    right = estimate_psf3d(c.stack, pixel_um=c.pixel_um, z_step_um=c.z_step_um, optics=CONFOCAL)
    # An NA 1.45 oil objective cannot blur this much along z: the stack's blur contradicts it.
    wrong_optics = Optics(modality="confocal", na=1.45, wavelength_um=0.4, n_immersion=1.515, n_sample=1.515)
    wrong = estimate_psf3d(c.stack, pixel_um=c.pixel_um, z_step_um=c.z_step_um, optics=wrong_optics)
    assert not any("objective" in n for n in right.notes)
    assert any("NA 1.45 oil" in n and "µm" in n for n in wrong.notes), wrong.notes
    assert wrong.confidence < 0.5 * right.confidence
    # the given optics' model is carried where the profile is theirs, not where the stack contradicts them
    assert right.model == CONFOCAL and wrong.model is None


def test_a_widefield_stack_with_its_optics_is_made_isotropic_with_their_3d_psf():
    from napari_kernelgan.axial import output_planes
    from napari_kernelgan.axial._zops import psnr
    from napari_kernelgan.axial.isotropic import cubic_z, super_resolve_axial

    optics = Optics(na=1.2, wavelength_um=0.52, n_immersion=1.333)
    c = axial_case(7, optics, factor=4, kind="filaments", shape=(80, 64, 64), photons=500)
    given = estimate_psf3d(c.stack, pixel_um=c.pixel_um, z_step_um=c.z_step_um, optics=optics)
    unknown = estimate_psf3d(c.stack, pixel_um=c.pixel_um, z_step_um=c.z_step_um)
    # without optics the model is the one estimated from the stack, of about the same axial width
    assert given.model == optics and unknown.model is not None and unknown.qc["learned"]["model"]
    assert unknown.axial_fwhm_um == pytest.approx(given.axial_fwhm_um, rel=0.25)
    truth = c.truth[:output_planes(c.stack.shape[0], 4)]

    def gain(volume: np.ndarray) -> float:
        cubic = cubic_z(c.stack, 4) - c.offset
        return psnr(volume - c.offset, truth, truth.max()) - psnr(cubic, truth, truth.max())

    r = super_resolve_axial(c.stack, given)
    assert r.validation["auto_choice"] == "psf3d" and r.sr_method == "deconvolve" and not r.fell_back, r.warnings
    assert gain(r.volume) > 1.0


def test_bad_input_is_refused_in_the_users_terms():
    stack = np.zeros((16, 64, 64), np.uint16)
    with pytest.raises(BadInputError, match="needs a z-stack.*2-D"):
        estimate_psf3d(stack[0], pixel_um=0.1, z_step_um=0.4)
    with pytest.raises(BadInputError, match="z_step_um.*--z-step"):
        estimate_psf3d(stack, pixel_um=0.1, z_step_um=None)
    with pytest.raises(BadInputError, match="z_step_um"):
        estimate_psf3d(stack, pixel_um=0.1, z_step_um=-1)
    with pytest.raises(BadInputError, match="at least 8"):
        estimate_psf3d(stack[:5], pixel_um=0.1, z_step_um=0.4)
    with pytest.raises(BadInputError, match="nothing to estimate along z"):
        estimate_psf3d(stack, pixel_um=0.1, z_step_um=0.1)


def test_progress_comes_early_and_cancel_stops_within_a_second(confocal_case):
    c = confocal_case
    gen = iter_estimate_psf3d(c.stack, pixel_um=c.pixel_um, z_step_um=c.z_step_um)
    t0 = time.perf_counter()
    first = next(gen)
    assert time.perf_counter() - t0 < 1.0 and first.total > 0
    gen.close()
    cancel = threading.Event()
    seen: list[float] = []

    def callback(p):
        seen.append(time.perf_counter())
        if len(seen) == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        estimate_psf3d(c.stack, pixel_um=c.pixel_um, z_step_um=c.z_step_um, callback=callback, cancel=cancel)
    assert time.perf_counter() - seen[2] < 1.0


def test_memmap_input_gives_the_same_estimate(confocal_case, tmp_path):
    c = confocal_case
    mm = np.lib.format.open_memmap(tmp_path / "s.npy", mode="w+", dtype=np.uint16, shape=c.stack.shape)
    mm[:] = c.stack
    a = estimate_psf3d(c.stack, pixel_um=c.pixel_um, z_step_um=c.z_step_um, optics=CONFOCAL)
    b = estimate_psf3d(mm, pixel_um=c.pixel_um, z_step_um=c.z_step_um, optics=CONFOCAL)
    assert np.array_equal(a.axial, b.axial) and np.array_equal(a.lateral, b.lateral)


def _beads(count: int, seed: int, min_gap: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    obj = np.zeros((96, 96, 96))
    for _ in range(count):
        z, y, x = rng.integers(8, 88, 3)
        obj[z, y, x] = 1.0
    return obj


def test_spots3d_measures_a_bead_stack_and_declines_a_crowded_one():
    beads = axial_case(1, CONFOCAL, factor=4, shape=(96, 96, 96), object_volume=_beads(25, 5), photons=1000)
    qc = measure_spots3d(beads.stack, pixel_um=0.1, z_step_um=0.4)
    assert qc["ok"], qc["reason"]
    assert qc["fwhm_z_um"] == pytest.approx(beads.axial_fwhm_um, rel=0.15)
    lat = beads.true_psf.lateral_fwhm_um
    assert qc["fwhm_x_um"] == pytest.approx(lat[1], rel=0.15) and qc["fwhm_y_um"] == pytest.approx(lat[0], rel=0.15)
    crowded = axial_case(2, CONFOCAL, factor=4, shape=(96, 96, 96), object_volume=_beads(1500, 6), photons=1000)
    qc = measure_spots3d(crowded.stack, pixel_um=0.1, z_step_um=0.4)
    assert not qc["ok"] and "crowded" in qc["reason"]


def test_dask_input_is_read_in_chunks_and_gives_the_same_estimate(confocal_case):
    da = pytest.importorskip("dask.array")
    c = confocal_case
    lazy = da.from_array(c.stack, chunks=(4, 64, 64))
    a = estimate_psf3d(c.stack, pixel_um=c.pixel_um, z_step_um=c.z_step_um, optics=CONFOCAL)
    b = estimate_psf3d(lazy, pixel_um=c.pixel_um, z_step_um=c.z_step_um, optics=CONFOCAL)
    assert np.array_equal(a.axial, b.axial) and a.confidence == b.confidence


def test_the_effective_to_on_axis_scale_is_its_records():
    from napari_kernelgan.axial import estimate
    from napari_kernelgan.records import record_values

    scale = record_values("axial")["scale"]
    assert scale == estimate.SCALE and set(scale) == {"widefield", "confocal", "unknown"}
    # where it acts: no lateral width, an effective width of 1 µm reads as k µm on axis
    assert estimate.on_axis_fwhm(1.0, 0.0, "widefield") == pytest.approx(scale["widefield"])
    assert estimate.on_axis_fwhm(1.0, 0.0, "two-photon") == pytest.approx(scale["unknown"])


def test_the_forward_models_weights_are_its_records():
    from napari_kernelgan.axial import _forward
    from napari_kernelgan.records import record_values

    weights = record_values("axial")["forward"]
    assert weights == _forward.WEIGHTS and set(weights) == {"gain_weight", "lateral_weight"}
    c = _forward.Candidate(WIDEFIELD, 3.0, d_x=0.2, d_z=0.1, gain_ratio=math.e, on_axis_fwhm_um=1.0)
    assert _forward.score(c) == pytest.approx(weights["lateral_weight"] * 0.04 + 0.01 + weights["gain_weight"])
