"""Axial SR ``auto`` with a physical model (given or estimated) and the safeguards' fitted limits."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_kernelgan import records
from napari_kernelgan.axial import _zsafety, isotropic, output_planes
from napari_kernelgan.axial._zops import measure_stack_noise, psnr
from napari_kernelgan.axial.isotropic import cubic_z, super_resolve_axial
from napari_kernelgan.axial.zdeconv import noise_lambda
from napari_kernelgan.physics.optics import Optics, psf_3d
from napari_kernelgan.sr._safety import UnsafeSRWarning
from napari_kernelgan.synthetic3d import axial_case

WATER = Optics(modality="widefield", na=1.2, wavelength_um=0.52, n_immersion=1.333)


@pytest.fixture(scope="module")
def wide():
    """A widefield water-objective stack every 3rd plane (development seed 150)."""
    return axial_case(150, WATER, factor=3, shape=(48, 48, 48), photons=1000)


def _gain(case, volume) -> float:
    n = output_planes(case.stack.shape[0], case.factor)
    truth = case.truth[:n]
    cubic = cubic_z(case.stack, case.factor) - case.offset
    return psnr(volume - case.offset, truth, truth.max()) - psnr(cubic, truth, truth.max())


def _with_model(case, na_scale: float):
    return dataclasses.replace(case.true_psf, model=dataclasses.replace(case.optics, na=case.optics.na * na_scale))


def test_safeguards_run_on_the_values_of_their_record():
    v = records.record_values("axial_safety")
    assert (v["held_min_db"], v["below_max"]) == (isotropic.MARGIN_3D_DB, isotropic.BELOW_MAX)
    assert (v["consistency_max"], v["psf_match_max"]) == (isotropic.CONSISTENCY, isotropic.PSF_MATCH)
    assert tuple(v["na_scales"]) == isotropic.NA_SCALES and 1.0 in isotropic.NA_SCALES
    assert v["prefer_db"] == isotropic.PREFER_DB


def test_auto_keeps_the_models_own_na_unless_a_neighbour_predicts_clearly_better():
    from types import SimpleNamespace as C

    own, up = C(scale=1.0, held_db=1.80, accepted=True), C(scale=1.07, held_db=1.90, accepted=True)
    assert _zsafety.pick([own, up], prefer_db=0.05) is up and _zsafety.pick([own, up], prefer_db=0.2) is own
    assert _zsafety.pick([C(scale=1.0, held_db=1.9, accepted=False), up], prefer_db=1.0) is up
    assert _zsafety.pick([C(scale=1.0, held_db=1.9, accepted=False)], prefer_db=0.0) is None


def test_auto_takes_a_near_right_widefield_model_and_finds_the_na(wide):
    # The model's NA 7 % low (a PSF too wide, which alone loses dB): its neighbour 7 % up is chosen.
    r = super_resolve_axial(wide.stack, _with_model(wide, 0.93), train_seconds=1, threads=1)
    assert r.validation["auto_choice"] == "psf3d" and r.sr_method == "deconvolve" and not r.fell_back
    assert r.validation["psf3d_na_scale"] == 1.07 and "rather than the PSF model's" in r.notes[0] and not r.warnings
    assert _gain(wide, r.volume) > 3.0


def test_auto_does_not_take_a_model_15_percent_low_in_na(wide):
    psf = _with_model(wide, 0.85)
    r = super_resolve_axial(wide.stack, psf, train_seconds=1, threads=1)
    assert r.validation["auto_choice"] == "smore" and "3-D PSF was not used" in r.notes[0]
    assert all(not c["accepted"] for c in r.validation["auto_candidates"])
    assert _gain(wide, r.volume) > -0.1
    # what was refused: the model's own 3-D PSF loses to cubic interpolation on this stack
    fine = wide.z_step_um / wide.factor
    with pytest.warns(UnsafeSRWarning):
        bad = super_resolve_axial(wide.stack, psf, sr_method="deconvolve", safe=False, threads=1,
                                  psf3d=(psf.model_volume(fine), wide.pixel_um, fine))
    assert _gain(wide, bad.volume) < 0


def _candidate(case, na_scale):
    fine = case.z_step_um / case.factor
    noise = measure_stack_noise(case.stack[case.stack.shape[0] // 2].astype(float))
    wiener = noise_lambda(case.stack[case.stack.shape[0] // 2], noise, case.pixel_um, fine)
    gen = _zsafety.iter_choose_psf3d(case.stack, _with_model(case, na_scale), case.factor, wiener, scales=(1.0,),
                                     held_min_db=isotropic.MARGIN_3D_DB, below_max=isotropic.BELOW_MAX, workers=1)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value[1][0]


def test_below_background_check_fires_on_a_too_wide_psf_and_not_on_the_true_one(wide):
    right, too_wide = _candidate(wide, 1.0), _candidate(wide, 0.85)
    assert right.below <= isotropic.BELOW_MAX and right.accepted
    assert too_wide.below > isotropic.BELOW_MAX and not too_wide.accepted


def test_held_out_z_check_fires_on_a_far_too_wide_psf_and_not_on_the_true_one(wide):
    assert _candidate(wide, 1.0).held_db >= isotropic.MARGIN_3D_DB
    assert _candidate(wide, 0.79).held_db < isotropic.MARGIN_3D_DB


def test_3d_path_with_a_too_wide_psf_falls_back_by_the_below_background_check(wide):
    fine = wide.z_step_um / wide.factor
    wrong = psf_3d(dataclasses.replace(wide.optics, na=wide.optics.na * 0.85), wide.pixel_um, fine)
    with pytest.warns(UnsafeSRWarning, match="below the stack's background"):
        r = super_resolve_axial(wide.stack, wide.true_psf, sr_method="deconvolve", psf3d=(wrong, wide.pixel_um, fine))
    assert r.fell_back and r.validation["below_background"] > isotropic.BELOW_MAX
    np.testing.assert_array_equal(r.volume, cubic_z(wide.stack, wide.factor))


def test_network_checks_pass_a_near_right_confocal_psf():
    conf = Optics(modality="confocal", na=1.2, wavelength_um=0.58, n_immersion=1.333)
    c = axial_case(151, conf, factor=4, shape=(48, 48, 48), photons=500)
    r = super_resolve_axial(c.stack, _with_model(c, 0.93), train_seconds=2, threads=1, seed=0)
    v = r.validation
    assert v["auto_choice"] == "smore" and not r.fell_back, r.warnings
    assert 1 / isotropic.PSF_MATCH <= v["psf_match"] <= isotropic.PSF_MATCH
    assert v["consistency"] <= isotropic.CONSISTENCY
    assert _gain(c, r.volume) > 0


def test_a_mismatched_models_3d_psf_reaches_as_far_as_its_light_but_no_longer_than_the_stack():
    import math

    from napari_kernelgan.physics.optics import axial_fwhm_um

    deep = Optics(modality="confocal", na=1.4, wavelength_um=0.6, n_immersion=1.515, n_sample=1.33, depth_um=6.0,
                  pinhole_au=1.0)
    three_fwhm = 2 * math.ceil(3 * axial_fwhm_um(deep) / 0.1) + 1
    long = _zsafety.model_kernel(deep, 0.1, 0.1, max_planes=400)
    assert long.shape[0] > three_fwhm + 10 and abs(float(long.sum()) - 1) < 1e-4
    assert _zsafety.model_kernel(deep, 0.1, 0.1, max_planes=three_fwhm + 6).shape[0] == three_fwhm + 6
    matched = dataclasses.replace(deep, n_sample=None, depth_um=0.0)
    assert _zsafety.model_kernel(matched, 0.1, 0.1, max_planes=11).shape[0] == three_fwhm  # as before: ±3 FWHMs
