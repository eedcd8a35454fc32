"""Isotropic voxels: axial SR (smore, deconvolve, cubic) on generated stacks with a known 3-D PSF."""
from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest

from napari_kernelgan.axial import AxialPSF, output_planes
from napari_kernelgan.axial._zops import cubic_matrix, degrade_matrix, psnr
from napari_kernelgan.axial.isotropic import cubic_z, iter_super_resolve_axial, super_resolve_axial
from napari_kernelgan.errors import BadInputError, BadOptionError, Cancelled
from napari_kernelgan.physics.optics import Optics
from napari_kernelgan.sr._safety import UnsafeSRWarning
from napari_kernelgan.synthetic3d import axial_case

CONFOCAL = Optics(modality="confocal", na=1.4, wavelength_um=0.52)


@pytest.fixture(scope="module")
def case():
    """A confocal stack every 4th plane, bright enough that the z blur, not the noise, limits it."""
    return axial_case(3, CONFOCAL, factor=4, shape=(64, 48, 48), photons=2000)


def _gain(case, result) -> float:
    n = output_planes(case.stack.shape[0], case.factor)
    truth = case.truth[:n]
    cubic = cubic_z(case.stack, case.factor) - case.offset
    return psnr(result.volume - case.offset, truth, truth.max()) - psnr(cubic, truth, truth.max())


def test_cubic_keeps_planes_and_count(case):
    out = cubic_z(case.stack, 4)
    nz = case.stack.shape[0]
    assert out.shape == ((nz - 1) * 4 + 1, 48, 48) and out.dtype == np.float32
    np.testing.assert_array_equal(out[::4], case.stack.astype(np.float32))
    r = super_resolve_axial(case.stack, case.true_psf, sr_method="cubic")
    np.testing.assert_array_equal(r.volume, out)
    assert r.z_step_um == pytest.approx(case.z_step_um / 4) and r.factor == 4 and not r.fell_back


def test_cubic_matrix_interpolates_cubics_exactly():
    # Keys' cubic convolution reproduces quadratics exactly away from the borders.
    m = cubic_matrix(10, 3)
    x = np.arange(10.0)
    fine = np.arange(28) / 3.0
    np.testing.assert_allclose((m @ x ** 2)[6:-6], fine[6:-6] ** 2, atol=1e-9)
    assert np.allclose(m.sum(axis=1), 1.0)


def test_degrade_matrix_keeps_every_factor_th_sample():
    d = degrade_matrix(13, np.array([0.0, 1.0, 0.0]), 4)
    np.testing.assert_array_equal(d @ np.arange(13.0), [0, 4, 8, 12])


def test_smore_beats_cubic_with_true_psf(case):
    r = super_resolve_axial(case.stack, case.true_psf, train_seconds=8, seed=1)
    assert r.sr_method == "smore" and not r.fell_back, r.warnings
    assert r.volume.dtype == np.float32
    assert _gain(case, r) > 1.0
    assert r.validation["psnr_method"] > r.validation["psnr_cubic"] + 0.5


def test_deconvolve_beats_cubic_with_true_psf(case):
    r = super_resolve_axial(case.stack, case.true_psf, sr_method="deconvolve")
    assert r.sr_method == "deconvolve" and not r.fell_back, r.warnings
    assert _gain(case, r) > 1.0
    assert r.validation["lambda_"] > 0


def test_deconvolve_with_full_3d_psf_beats_cubic(case):
    r = super_resolve_axial(case.stack, case.true_psf, sr_method="deconvolve",
                            psf3d=(case.psf, case.pixel_um, case.pixel_um))
    assert r.validation.get("psf3d") and _gain(case, r) > 1.0


def test_psf3d_with_other_pixel_size_is_refused(case):
    with pytest.raises(BadInputError, match="pixel size"):
        super_resolve_axial(case.stack, case.true_psf, sr_method="deconvolve",
                            psf3d=(case.psf, 2 * case.pixel_um, case.pixel_um))


def test_absurd_psf_falls_back_to_cubic_with_warning(case):
    p = case.true_psf
    absurd = AxialPSF(lateral=p.lateral, axial=p.axial, relative=p.relative, pixel_um=p.pixel_um,
                      z_step_um=p.z_step_um, step_um=p.step_um * 6, confidence=1.0, method="given")
    for method in ("smore", "deconvolve"):
        with pytest.warns(UnsafeSRWarning):
            r = super_resolve_axial(case.stack, absurd, sr_method=method, train_seconds=2)
        assert r.fell_back and r.sr_method == "cubic" and r.warnings
        np.testing.assert_array_equal(r.volume, cubic_z(case.stack, 4))


def test_cancel_stops_within_a_second(case):
    cancel = threading.Event()
    stamps: list[float] = []

    def callback(progress):
        stamps.append(time.perf_counter())
        if len(stamps) == 3:
            cancel.set()

    start = time.perf_counter()
    with pytest.raises(Cancelled):
        super_resolve_axial(case.stack, case.true_psf, train_seconds=30, callback=callback, cancel=cancel)
    assert time.perf_counter() - stamps[2] < 1.0
    assert time.perf_counter() - start < 10.0


def test_out_memmap_equals_in_memory_and_same_seed_same_output(case, tmp_path):
    n = output_planes(case.stack.shape[0], 4)
    out = np.lib.format.open_memmap(tmp_path / "iso.npy", mode="w+", dtype=np.float32, shape=(n, 48, 48))
    stack = np.lib.format.open_memmap(tmp_path / "stack.npy", mode="w+", dtype=case.stack.dtype,
                                      shape=case.stack.shape)
    stack[:] = case.stack
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsafeSRWarning)
        a = super_resolve_axial(stack, case.true_psf, train_seconds=1, seed=5, out=out)
        b = super_resolve_axial(case.stack, case.true_psf, train_seconds=1, seed=5)
    assert a.volume is out
    np.testing.assert_array_equal(np.asarray(out), b.volume)
    assert a.validation["train_steps"] == b.validation["train_steps"]


def test_progress_starts_at_once(case):
    gen = iter_super_resolve_axial(case.stack, case.true_psf, sr_method="deconvolve")
    t0 = time.perf_counter()
    first = next(gen)
    assert time.perf_counter() - t0 < 1.0 and first.total > 0
    gen.close()


@pytest.mark.parametrize("bad, match", [
    ({"stack": np.zeros((32, 32))}, "2-D image"),
    ({"z_factor": 9}, "z_factor"),
    ({"z_factor": 2.5}, "z_factor"),
    ({"sr_method": "nearest"}, "unknown axial SR method"),
    ({"out": np.zeros((3, 3, 3), np.float32)}, "out"),
    ({"psf": "gaussian"}, "AxialPSF"),
    ({"sigma": -1.0}, "sigma"),
])
def test_bad_input_is_refused_in_user_terms(case, bad, match):
    args = {"stack": case.stack, "psf": case.true_psf, **bad}
    with pytest.raises((BadInputError, BadOptionError), match=match):
        super_resolve_axial(args.pop("stack"), args.pop("psf"), **args)


def test_eight_bit_input_and_factor_from_psf(case):
    img = np.clip((case.stack.astype(np.float64) - case.offset) / case.stack.max() * 255, 0, 255).astype(np.uint8)
    r = super_resolve_axial(img, case.true_psf, sr_method="deconvolve")
    assert r.factor == 4 and r.volume.shape[0] == output_planes(img.shape[0], 4)
    assert np.isfinite(r.volume).all() and r.volume.max() > 50


def test_psf3d_tiles_agree_with_one_tile(case, monkeypatch):
    from napari_kernelgan.axial import zdeconv

    solver = zdeconv.Psf3dSolver((case.psf, case.pixel_um, case.pixel_um), case.pixel_um, case.pixel_um, 4, 0.05)
    data = case.stack.astype(np.float32) - case.offset
    n = output_planes(data.shape[0], 4)
    whole = np.full((n,) + data.shape[1:], np.nan, np.float32)
    shares = list(solver.iter_solve_volume(data, whole))
    np.testing.assert_allclose(whole, solver.solve(data), rtol=0, atol=1e-5 * np.abs(whole).max())
    monkeypatch.setattr(zdeconv, "TILE", 16 + 2 * solver.halo)   # 3×3 tiles of 16 pixels and their overlap
    tiled = np.full_like(whole, np.nan)
    shares_tiled = list(solver.iter_solve_volume(data, tiled))
    assert len(shares_tiled) > 3 * len(shares) and shares_tiled[-1] == 1.0 and np.diff(shares_tiled).min() >= 0
    assert np.abs(tiled - whole).max() < 0.005 * np.abs(whole).max()


def test_psf3d_fast_closed_form_equals_fourier_solve():
    from napari_kernelgan.axial import zdeconv

    rng = np.random.default_rng(1)
    psf = rng.random((5, 7, 7)) + 1.0
    solver = zdeconv.Psf3dSolver((psf, 0.1, 0.1), 0.1, 0.1, 3, 0.02)
    raw = rng.random((6, 20, 20)).astype(np.float32)
    fine = solver.solve(raw)
    # The same problem through the general solve on the zero-filled, mirrored and padded data.
    py, ((_, _, wy),) = zdeconv._tiles(20, solver.halo, 1 << 30)
    window = zdeconv._window(raw, (wy, wy + py), (wy, wy + py))
    ext = np.concatenate([window, window[-2:0:-1]], axis=0).astype(np.float64)
    up = np.zeros((ext.shape[0] * 3,) + ext.shape[1:])
    up[::3] = ext
    g, lap = solver._transfer(up.shape)
    full = np.fft.fftn(up)[..., :g.shape[2]]
    x_hat = zdeconv.fourier_solve(full, g.astype(np.complex128), 0.02 * (sum(lap) + 1e-6), 3)
    ref = np.fft.irfftn(x_hat, s=up.shape, axes=(0, 1, 2))[:fine.shape[0], -wy:20 - wy, -wy:20 - wy]
    np.testing.assert_allclose(fine, ref, atol=2e-4 * np.abs(ref).max())


def test_fourier_solve_equals_the_dense_normal_equations():
    from napari_kernelgan.axial.zdeconv import fourier_solve

    rng = np.random.default_rng(0)
    n, f, lam, ridge = 24, 3, 0.3, 1e-3
    hk = np.zeros(n)
    hk[[0, 1, n - 1, 2]] = [0.5, 0.2, 0.2, 0.1]
    circ = np.array([[hk[(i - j) % n] for j in range(n)] for i in range(n)])
    diff = np.roll(np.eye(n), 1, axis=1) - np.eye(n)
    sample = np.eye(n)[::f]
    y = rng.random(n // f)
    a = sample @ circ
    dense = np.linalg.solve(a.T @ a + lam * (diff.T @ diff) + lam * ridge * np.eye(n), a.T @ y)
    up = np.zeros(n)
    up[::f] = y
    d_hat = np.fft.fft(diff[:, 0][::-1].copy())  # any ordering: only |D|² enters
    x = np.fft.ifft(fourier_solve(np.fft.fft(up), np.fft.fft(hk), lam * (np.abs(d_hat) ** 2 + ridge), f)).real
    np.testing.assert_allclose(x, dense, atol=1e-9)


def test_unsafe_run_keeps_the_method_and_says_why(case):
    p = case.true_psf
    absurd = AxialPSF(lateral=p.lateral, axial=p.axial, relative=p.relative, pixel_um=p.pixel_um,
                      z_step_um=p.z_step_um, step_um=p.step_um * 6, confidence=1.0, method="given")
    with pytest.warns(UnsafeSRWarning, match="safe=False"):
        r = super_resolve_axial(case.stack, absurd, sr_method="deconvolve", safe=False)
    assert r.sr_method == "deconvolve" and not r.fell_back and "does not match" in r.warnings[0]
    assert not np.array_equal(r.volume, cubic_z(case.stack, 4))


def test_dask_stack_is_read_in_slabs_and_gives_the_same_result(case):
    da = pytest.importorskip("dask.array")
    lazy = da.from_array(case.stack, chunks=(4, 16, 48))
    a = super_resolve_axial(lazy, case.true_psf, sr_method="deconvolve")
    b = super_resolve_axial(case.stack, case.true_psf, sr_method="deconvolve")
    np.testing.assert_array_equal(a.volume, b.volume)


def test_given_noise_level_is_used(case):
    r = super_resolve_axial(case.stack, case.true_psf, sr_method="deconvolve", sigma=7.0)
    assert r.validation["noise_b"] == pytest.approx(49.0) and not r.validation["photon_limited"]


WIDEFIELD = Optics(modality="widefield", na=1.4, wavelength_um=0.52)


@pytest.fixture(scope="module")
def wide():
    """A widefield stack every 3rd plane: its out-of-focus light is what the separable model misses."""
    return axial_case(7, WIDEFIELD, factor=3, shape=(48, 48, 48), photons=1000)


def test_auto_takes_the_widefield_models_3d_psf_and_beats_cubic(wide):
    import dataclasses

    psf = dataclasses.replace(wide.true_psf, model=wide.optics)
    r = super_resolve_axial(wide.stack, psf)
    assert r.validation["auto_choice"] == "psf3d" and r.validation["psf3d"], r.warnings
    assert r.sr_method == "deconvolve" and not r.fell_back
    assert _gain(wide, r) > 1.5


def test_auto_without_a_model_is_smore(case):
    a = super_resolve_axial(case.stack, case.true_psf, train_seconds=1, seed=2)
    b = super_resolve_axial(case.stack, case.true_psf, sr_method="smore", train_seconds=1, seed=2)
    assert a.validation["auto_choice"] == "smore" and a.sr_method == b.sr_method
    np.testing.assert_array_equal(a.volume, b.volume)


def test_auto_with_a_confocal_model_is_smore(case):
    import dataclasses

    psf = dataclasses.replace(case.true_psf, model=case.optics)
    r = super_resolve_axial(case.stack, psf, train_seconds=1, seed=2)
    assert r.validation["auto_choice"] == "smore" and "psf3d" not in r.validation


def test_3d_psf_far_too_wide_falls_back_with_a_warning(wide):
    import dataclasses

    from napari_kernelgan.physics.optics import psf_3d

    wrong = psf_3d(dataclasses.replace(wide.optics, na=0.7), wide.pixel_um, wide.pixel_um)
    with pytest.warns(UnsafeSRWarning, match="3-D PSF"):
        r = super_resolve_axial(wide.stack, wide.true_psf, sr_method="deconvolve",
                                psf3d=(wrong, wide.pixel_um, wide.pixel_um))
    assert r.fell_back and r.sr_method == "cubic" and r.validation["change_3d"] > 4
    np.testing.assert_array_equal(r.volume, cubic_z(wide.stack, 3))


def test_auto_turns_to_smore_when_the_models_3d_psf_fails_its_check(wide):
    import dataclasses

    psf = dataclasses.replace(wide.true_psf, model=dataclasses.replace(wide.optics, na=0.7))
    r = super_resolve_axial(wide.stack, psf, train_seconds=1, seed=0, safe=True)
    assert r.validation["auto_choice"] == "smore" and not any(c["accepted"] for c in r.validation["auto_candidates"])
    assert r.sr_method in ("smore", "cubic") and "3-D PSF was not used" in r.notes[0]
    assert "psf3d" not in r.validation


def test_3d_check_keeps_the_true_psfs_gain_on_a_sharp_confocal_stack():
    # Confocal NA 1.4 every 4th plane: predicting odd planes from even ones (×8) loses a little to cubic, while
    # the stack itself (×4) gains; the check must not throw that gain away.
    c = axial_case(7, CONFOCAL, factor=4, shape=(80, 64, 64), photons=500)
    r = super_resolve_axial(c.stack, c.true_psf, sr_method="deconvolve", psf3d=(c.psf, c.pixel_um, c.pixel_um))
    assert not r.fell_back, r.warnings
    assert _gain(c, r) > 1.0


def test_3d_psf_path_stops_within_a_second_of_cancel_inside_a_tile(wide):
    import dataclasses

    stack = np.tile(wide.stack, (1, 6, 6))          # 288×288 planes: one tile of several seconds' work
    psf = dataclasses.replace(wide.true_psf, model=wide.optics)
    cancel = threading.Event()
    stamps: list[float] = []

    def callback(progress):
        stamps.append(time.perf_counter())
        if progress.message == "super-resolving in z" and not cancel.is_set():
            cancel.set()
            stamps.append(-1.0)

    with pytest.raises(Cancelled):
        super_resolve_axial(stack, psf, callback=callback, cancel=cancel)
    set_at = stamps[stamps.index(-1.0) - 1]
    assert time.perf_counter() - set_at < 1.0
