"""A measured PSF (bead image or bead stack at the camera's pixel size) as an SR kernel: width, centring,
orientation, the in-focus plane, the support, pixel sizes from file metadata, and the refusals."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from scipy.optimize import brentq
from scipy.special import j1

from napari_kernelgan.errors import BadInputError, user_message
from napari_kernelgan.measured_psf import image_pixel_size, is_psf_file, kernel_from_psf_file, read_psf, to_um
from napari_kernelgan.physics import Optics, psf_2d
from napari_kernelgan.physics.conventions import centre_of_mass, support_side
from napari_kernelgan.physics.measured import KernelCutWarning, in_focus_plane, measure_psf, psf_to_kernel

NA, WAVELENGTH = 0.8, 0.6  # µm; Airy FWHM ≈ 0.51 λ / NA ≈ 0.38 µm


def airy(r_um: np.ndarray, na: float = NA, wavelength: float = WAVELENGTH) -> np.ndarray:
    """The in-focus widefield PSF, 2·J1(v)/v squared (peak 1)."""
    v = 2 * np.pi * na / wavelength * np.asarray(r_um, dtype=np.float64)
    v = np.where(v == 0, 1e-12, v)
    return (2 * j1(v) / v) ** 2


def airy_fwhm_um(na: float = NA, wavelength: float = WAVELENGTH) -> float:
    return 2 * brentq(lambda r: airy(np.array(r), na, wavelength) - 0.5, 1e-6, 0.6 * wavelength / na)


def bead_plane(n: int, pixel_um: float, centre: tuple[float, float] = (0.0, 0.0), **kw: float) -> np.ndarray:
    """An Airy bead sampled at ``pixel_um``, centred ``centre`` pixels off the middle of an n×n field."""
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    return airy(np.hypot(y - centre[0], x - centre[1]) * pixel_um, **kw)


def bead_stack(n: int = 63, planes: int = 15, focus: int = 6, pixel_um: float = 0.1,
               centre: tuple[float, float] = (0.3, -0.4), photons: float = 2000.0, background: float = 100.0,
               seed: int = 0) -> np.ndarray:
    """A (z, y, x) bead stack: the in-focus Airy plane at ``focus``, planes away from it widened (defocus keeps
    each plane's light), a background and Poisson noise, as counts."""
    plane = bead_plane(n, pixel_um, centre)
    plane = plane / plane.sum()
    stack = np.stack([ndimage.gaussian_filter(plane, 0.9 * abs(z - focus), mode="constant") if z != focus else plane
                      for z in range(planes)])
    rng = np.random.default_rng(seed)
    return rng.poisson(stack * photons * 60 + background).astype(np.uint16)


def fwhm_px(k: np.ndarray) -> float:
    """Mean FWHM of the kernel's central row and column (cubic upsampling ×16), in kernel pixels."""
    up = 16
    widths = []
    for profile in (k[k.shape[0] // 2], k[:, k.shape[1] // 2]):
        fine = ndimage.zoom(profile, up, order=3)
        above = np.nonzero(fine >= fine.max() / 2)[0]
        widths.append((above[-1] - above[0] + 1) / up)
    return float(np.mean(widths))


@pytest.mark.parametrize("camera_um", [0.1, 0.05, 0.16])
def test_a_bead_stack_becomes_a_kernel_of_the_right_width_centred(camera_um):
    # LR pixel 0.2 µm at ×2: the SR grid's pixel is 0.1 µm, the camera's 0.1 (same), 0.05 (shrink) or 0.16.
    n = int(round(6.3 / camera_um)) | 1
    stack = bead_stack(n=n, pixel_um=camera_um)
    m = measure_psf(stack, camera_um, 0.2, 2)
    k = m.kernel
    assert m.plane == 6 and m.sr_pixel_um == pytest.approx(0.1)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert k.sum() == pytest.approx(1.0) and k.min() >= 0
    assert np.abs(centre_of_mass(k) - k.shape[0] // 2).max() < 0.05
    truth = airy_fwhm_um() / 0.1
    # Finer camera pixels are integrated over the SR pixel and the kernel is re-centred by interpolation: each
    # widens the profile by a few per cent (and the FWHM is read in steps of 1/16 px).
    assert fwhm_px(k) == pytest.approx(truth, rel=0.05 if camera_um >= 0.1 else 0.08)
    # The smallest support holding 99 % of the light, not the whole field.
    assert m.mass_kept >= 0.99 and m.side < 6.3 / 0.1 and support_side(k, 0.95) < m.side


def test_the_in_focus_plane_is_the_sharpest_not_the_middle():
    stack = bead_stack(planes=21, focus=14)
    assert in_focus_plane(stack) == 14
    stack[3, 5, 5] = 60000  # a hot pixel in a defocused plane does not choose it
    assert in_focus_plane(stack) == 14


def test_kernel_orientation_is_the_psf_flipped():
    # A bead with a tail towards +x (coma): its peak sits left of its centre of mass. The correlation kernel is
    # the PSF flipped: its peak sits right of the middle pixel (its centre of mass), its tail towards -x.
    plane = bead_plane(41, 0.1) + 0.3 * bead_plane(41, 0.1, (0.0, 3.0))
    k = psf_to_kernel(plane * 1000 + 10, 0.1, 0.2, 2)
    c = k.shape[0] // 2
    assert k[c, c + 1] > 1.1 * k[c, c - 1] and k[c + 1, c] == pytest.approx(k[c - 1, c], rel=0.02)
    assert k[c, c - 6:c - 3].sum() > 2 * k[c, c + 4:c + 7].sum()


def test_a_microscope_psf_needs_more_than_13x13_and_max_side_reports_what_is_lost():
    plane = bead_plane(121, 0.1, na=1.4, wavelength=0.52) * 5000 + 100
    m = measure_psf(plane, 0.1, 0.2, 2)
    assert m.side > 13 and m.mass_kept >= 0.99
    assert m.needed_side == m.side
    with pytest.warns(KernelCutWarning, match=r"needs more than a 27×27 kernel .* at most 13×13, so \d+\.\d % of "):
        cut = measure_psf(plane, 0.1, 0.2, 2, max_side=13)  # resampled to 27×27 (2·13 + 1) at most
    assert cut.side == 13 and 0.8 < cut.mass_kept < 0.97  # an in-focus NA 1.4 Airy PSF keeps 5-15 % outside
    assert cut.needed_side is None
    loose = measure_psf(plane, 0.1, 0.2, 2, mass=0.9)
    assert loose.side < m.side


def test_a_widefield_psf_wider_than_the_cap_is_cut_with_what_is_lost_said():
    """NA 1.4 widefield at 520 nm on the ×2 grid of 0.065 µm pixels: 99 % of the bead field's light needs
    about 121 px; the kernel is cut at 75 (the cap) and the 2.1 % outside is said and left out."""
    import warnings

    k = psf_2d(Optics(na=1.4, wavelength_um=0.52), 0.0325, size=401)
    plane = k / k.max() * 5000 + 100
    with pytest.warns(KernelCutWarning) as caught:
        m = measure_psf(plane, 0.0325, 0.065, 2)
    [message] = [str(w.message) for w in caught]
    # 121 px for the noise-free PSF; the border's faint wings taken as background widen it by a ring or two.
    assert m.side == 75 and 121 <= m.needed_side <= 125
    assert m.mass_kept == pytest.approx(0.979, abs=0.002)
    side = m.needed_side
    assert message == (f"the PSF: holding 99 % of its light needs a {side}×{side} kernel on the ×2 grid "
                       "(0.0325 µm pixels); "
                       "kernels are at most 75×75, so 2.1 % of the light, the faint outer halo, is left out and the "
                       "kernel normalised to sum 1 over the rest")
    assert m.kernel.sum() == pytest.approx(1.0) and m.kernel.shape == (75, 75)
    # coarser pixels: the same PSF fits under the cap and nothing is said
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fits = measure_psf(psf_2d(Optics(na=1.4, wavelength_um=0.52), 0.065, size=301), 0.065, 0.13, 2)
    assert fits.side == fits.needed_side <= 75 and fits.mass_kept >= 0.99


def _plane_with(n: int = 41, **changes: float) -> np.ndarray:
    return bead_plane(n, 0.1) * 1000 + 100


@pytest.mark.parametrize("make, reason", [
    (lambda: _plane_with() + np.roll(_plane_with(), (0, 12), (0, 1)), "2 bright objects"),
    (lambda: np.minimum(_plane_with(), 600.0), "saturated"),
    (lambda: np.random.default_rng(1).normal(100, 5, (41, 41)), "holds no bead"),
    (lambda: 200 - _plane_with(), "mostly negative"),
    (lambda: np.roll(_plane_with(), (14, 0), (0, 1)), "off the centre"),
    (lambda: bead_plane(13, 0.1, na=0.3) * 1000 + 100, "too small to hold the bead"),
    (lambda: _plane_with()[:5, :5], "too small to hold a bead"),
    (lambda: np.ones((2, 41, 41, 3)), "2-D image or a 3-D"),
])
def test_what_cannot_be_a_psf_is_refused_with_its_reason(make, reason):
    with pytest.raises(BadInputError, match=reason):
        psf_to_kernel(make(), 0.1, 0.2, 2)


def test_bad_pixel_sizes_and_settings_are_refused():
    plane = _plane_with()
    for args, reason in (((plane, 0.0, 0.2, 2), "PSF's pixel size"), ((plane, 0.1, -1, 2), "image's pixel size")):
        with pytest.raises(BadInputError, match=reason):
            psf_to_kernel(*args)
    with pytest.raises(BadInputError, match="odd"):
        psf_to_kernel(plane, 0.1, 0.2, 2, max_side=40)


def test_pixel_sizes_come_from_imagej_and_ome_metadata(tmp_path):
    stack = bead_stack(pixel_um=0.1)
    ij = tmp_path / "beads_ij.tif"
    tifffile.imwrite(ij, stack, imagej=True, resolution=(10.0, 10.0), metadata={"axes": "ZYX", "unit": "micron",
                                                                                "spacing": 0.2})
    ome = tmp_path / "beads_ome.ome.tif"
    tifffile.imwrite(ome, stack, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 100.0, "PhysicalSizeXUnit": "nm",
                                                     "PhysicalSizeY": 100.0, "PhysicalSizeYUnit": "nm"})
    plain = tmp_path / "beads_plain.tif"
    tifffile.imwrite(plain, stack)
    for path in (ij, ome):
        psf = read_psf(path)
        assert psf.data.shape == stack.shape and psf.pixel_um == pytest.approx(0.1)
        assert is_psf_file(path) and image_pixel_size(path) == pytest.approx(0.1)
        m = kernel_from_psf_file(path, 2, pixel_size=0.2)
        assert m.plane == 6 and fwhm_px(m.kernel) == pytest.approx(airy_fwhm_um() / 0.1, rel=0.05)
    assert read_psf(plain).pixel_um is None and image_pixel_size(plain) is None
    with pytest.raises(BadInputError) as info:
        kernel_from_psf_file(plain, 2, pixel_size=0.2)
    assert "does not say its pixel size" in str(info.value) and "kernel_pixel_size" in str(info.value)
    assert "--kernel-pixel-size" in user_message(info.value, "cli")
    with pytest.raises(BadInputError) as info:
        kernel_from_psf_file(ij, 2, pixel_size=None)
    assert "--pixel-size" in user_message(info.value, "cli")
    given = kernel_from_psf_file(plain, 2, pixel_size=0.4, kernel_pixel_size=0.1)  # ×2 of 0.4 µm: SR pixel 0.2
    # Integrating over the coarser SR pixel (box variance 1/12 px²) widens a 1.9 px FWHM by about 6 %.
    assert fwhm_px(given.kernel) == pytest.approx(airy_fwhm_um() / 0.2, rel=0.12)


def test_units_convert_to_micrometres():
    assert to_um(100, "nm") == pytest.approx(0.1) and to_um(0.1, "micron") == 0.1 and to_um(0.1, None) == 0.1
    assert to_um(1, "pixel") is None


def test_a_psf_file_with_channels_is_refused(tmp_path):
    path = tmp_path / "beads.tif"
    data = np.stack([bead_stack(), bead_stack(seed=1)], axis=1)  # Z C Y X
    tifffile.imwrite(path, data, imagej=True, resolution=(10.0, 10.0), metadata={"axes": "ZCYX", "unit": "um"})
    with pytest.raises(BadInputError, match="one channel"):
        read_psf(path)


def test_a_hot_pixel_is_not_a_second_bead():
    stack = bead_stack()
    stack[6, 5, 50] = 60000
    clean = measure_psf(bead_stack(), 0.1, 0.2, 2)
    hot = measure_psf(stack, 0.1, 0.2, 2)
    assert hot.plane == 6 and fwhm_px(hot.kernel) == pytest.approx(fwhm_px(clean.kernel), rel=0.05)


def test_a_psf_on_the_sr_grid_is_kept_as_it_is_flipped_and_centred():
    from napari_kernelgan.physics import gaussian_kernel
    from napari_kernelgan.physics.conventions import centre_kernel, pad_to

    # Noise-free, already on the SR grid (camera 0.1 µm = 0.2 µm / 2): only flipping and centring remain.
    psf = gaussian_kernel(45, 2.5, 1.5, 0.5) + 0.2 * np.roll(gaussian_kernel(45, 1.5), (2, 3), (0, 1))
    k = psf_to_kernel(psf * 1e4 + 50, 0.1, 0.2, 2, mass=0.999)
    expected = centre_kernel(pad_to(psf[::-1, ::-1] / psf.sum(), k.shape[0]))
    assert np.abs(k - expected / expected.sum()).sum() < 0.01


def test_an_undersampled_noisy_bead_stack_gives_the_in_focus_kernel_without_a_noise_pedestal():
    # A bead imaged at the camera's pixel (the LR pixel, twice the SR grid's), Poisson noise on a background: an
    # in-focus bead is one or two camera pixels wide, and its far wings are thousands of noise-only pixels.
    from napari_kernelgan.physics import Optics, kernel_l1, pad_to, psf_2d, psf_3d

    optics, hr_um, planes = Optics(na=1.2, wavelength_um=0.55, n_immersion=1.333), 0.095, 21
    # The focus three planes off the stack's middle.
    volume = psf_3d(Optics(na=1.2, wavelength_um=0.55, n_immersion=1.333, defocus_um=0.33), hr_um, 0.11,
                    (planes, 65, 65))
    focus = int(np.argmax(volume.max(axis=(1, 2))))
    camera = np.pad(volume, ((0, 0), (0, 1), (0, 1))).reshape(planes, 33, 2, 33, 2).sum((2, 4))
    rng = np.random.default_rng(3)
    stack = (2.0 * rng.poisson(camera / camera.max() * 1500 + 8) + 100).astype(np.uint16)
    m = measure_psf(stack, 2 * hr_um, 2 * hr_um, 2)
    truth = psf_2d(optics, hr_um, 41)
    assert m.plane == focus
    assert m.side < 41                      # the support holds the bead, not the noise around it
    # Kernel L1 on 41×41 (2 = disjoint): the remaining error is mostly the camera pixel's own integration.
    assert kernel_l1(pad_to(m.kernel, 41), truth) < 0.5
