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
    data = case.stack.astype(np.float64) - case.offset
    whole = solver.solve_tiled(data)
    monkeypatch.setattr(zdeconv, "TILE", 16)
    tiled = solver.solve_tiled(data)
    assert np.abs(tiled - whole).max() < 0.005 * np.abs(whole).max()


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
