"""Physical PSF models (``physics.optics``) against closed-form optics, and OME optics metadata.

Tolerances are stated where they are used; distances are in units of ``λ/NA`` unless named in µm.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import tifffile
from scipy import special

from napari_kernelgan.errors import BadInputError, MissingFileError
from napari_kernelgan.physics import Optics, psf_2d, psf_3d, support_for
from napari_kernelgan.physics.conventions import centre_of_mass, validate_kernel
from napari_kernelgan.physics.metrics import profile_fwhm as fwhm
from napari_kernelgan.physics.optics import axial_fwhm_um, best_focus_um, pupil_energy, radial_intensity
from napari_kernelgan.stacks import OPTICS_KEYS, read_optics

LAM, NA = 0.5, 1.0
UNIT = LAM / NA
FINE = UNIT / 50  # pixel ≪ λ/NA
WIDEFIELD = Optics(na=NA, wavelength_um=LAM)




def confocal(pinhole_au: float) -> Optics:
    return Optics(modality="confocal", na=NA, wavelength_um=LAM, excitation_um=LAM, pinhole_au=pinhole_au)


def test_fwhm_helper_on_a_gaussian() -> None:
    x = np.arange(-200, 201) * 0.01
    sigma = 0.3
    assert fwhm(np.exp(-x**2 / (2 * sigma**2)), 0.01) == pytest.approx(2.3548 * sigma, rel=1e-3)


def test_in_focus_radial_profile_is_the_airy_pattern() -> None:
    # Born-Wolf in focus: 4π(NA/λ)² [J1(v)/v]²·... = π(NA/λ)² [2 J1(v)/v]², v = 2π NA r / λ (to 1e-9 of the peak).
    r = np.linspace(1e-6, 4 * UNIT, 801)
    v = 2 * np.pi * NA * r / LAM
    airy = np.pi * (NA / LAM) ** 2 * (2 * special.j1(v) / v) ** 2
    got = radial_intensity(WIDEFIELD, r)[0]
    assert np.abs(got - airy).max() < 1e-9 * airy.max()


def test_first_airy_zero_at_0_61_lambda_over_na() -> None:
    r = np.linspace(0.3 * UNIT, 0.9 * UNIT, 6001)
    zero = r[np.argmin(radial_intensity(WIDEFIELD, r)[0])]
    assert zero / UNIT == pytest.approx(0.61, rel=0.02)
    # On the pixel grid too: the darkest pixel of the central row's first ring (±2 %, pixel λ/NA/50).
    k = psf_2d(WIDEFIELD, FINE, 81)
    row = k[40, 40:]
    first_min = int(np.argmax(np.diff(row) > 0))
    assert first_min * FINE / UNIT == pytest.approx(0.61, rel=0.02)


def test_widefield_fwhm_is_0_51_lambda_over_na() -> None:
    k = psf_2d(WIDEFIELD, FINE, 101)
    assert fwhm(k[50], FINE) / UNIT == pytest.approx(0.51, rel=0.03)


def test_confocal_fwhm_closed_pinhole_and_one_airy_unit() -> None:
    closed = fwhm(psf_2d(confocal(0.05), FINE, 101)[50], FINE) / UNIT
    assert closed == pytest.approx(0.37, rel=0.04)  # the squared Airy pattern
    one_au = fwhm(psf_2d(confocal(1.0), FINE, 101)[50], FINE) / UNIT
    widefield = fwhm(psf_2d(WIDEFIELD, FINE, 101)[50], FINE) / UNIT
    assert closed < one_au < widefield
    assert one_au == pytest.approx(0.50, abs=0.01)  # the value docs/optics.md reports


def test_confocal_excitation_wavelength_matters() -> None:
    shorter = Optics(modality="confocal", na=NA, wavelength_um=LAM, excitation_um=0.4, pinhole_au=0.05)
    assert fwhm(psf_2d(shorter, FINE, 101)[50], FINE) < fwhm(psf_2d(confocal(0.05), FINE, 101)[50], FINE)


def test_widefield_energy_before_normalisation() -> None:
    # Parseval: the whole plane holds the light through the pupil, 1 for an unobstructed pupil at any defocus.
    assert pupil_energy(WIDEFIELD) == pytest.approx(1.0, abs=1e-12)
    assert pupil_energy(WIDEFIELD, z_um=1.3) == pytest.approx(1.0, abs=1e-12)
    # The pixel-integrated kernel over a large support (±8 µm = ±16 λ/NA) holds it to 1 %...
    size, pixel = 401, 0.04
    k = psf_2d(WIDEFIELD, pixel, size, normalise=False)
    assert k.sum() == pytest.approx(1.0, abs=0.01)
    # ...between the Airy encircled energies (1 - J0² - J1²) of its inscribed and circumscribed circles.
    def encircled(radius_um: float) -> float:
        v = 2 * np.pi * NA * radius_um / LAM
        return 1 - special.j0(v) ** 2 - special.j1(v) ** 2

    half = size * pixel / 2
    assert encircled(half) <= k.sum() <= encircled(half * np.sqrt(2))
    # Light evanescent in a sample of lower index than the NA is lost, not spread.
    water = Optics(na=1.4, wavelength_um=0.52, n_sample=1.33, depth_um=5.0)
    assert 0.5 < pupil_energy(water) < 0.95


def test_kernels_follow_the_conventions() -> None:
    for optics in (WIDEFIELD, confocal(1.0), Optics(na=1.2, wavelength_um=0.6, n_immersion=1.33, n_sample=1.4,
                                                    depth_um=20, defocus_um=0.3)):
        for pixel in (0.0437, 0.1, 0.33):  # any pixel size, round or not, above or below λ/NA
            k = psf_2d(optics, pixel, 15)
            assert k.shape == (15, 15)
            assert k.sum() == pytest.approx(1.0, abs=1e-12)
            assert k.min() >= 0
            np.testing.assert_allclose(centre_of_mass(k), [7, 7], atol=1e-9)
            np.testing.assert_allclose(validate_kernel(k), k, rtol=1e-12)  # accepted as it is


def test_rotational_symmetry() -> None:
    for optics in (WIDEFIELD, confocal(0.7), Optics(na=1.4, wavelength_um=0.52, spherical=0.3, defocus_um=0.4)):
        k = psf_2d(optics, 0.03, 41)
        np.testing.assert_allclose(k, k.T, atol=1e-14)
        np.testing.assert_allclose(k, k[::-1], atol=1e-14)
        np.testing.assert_allclose(k, k[:, ::-1], atol=1e-14)


def test_defocus_is_symmetric_without_spherical_aberration_and_not_with_it() -> None:
    plain = Optics(na=1.4, wavelength_um=0.52)
    for z in (0.2, 0.5):
        np.testing.assert_allclose(psf_2d(plain, 0.04, 41, z), psf_2d(plain, 0.04, 41, -z), atol=1e-12)
    for aberrated in (Optics(na=1.4, wavelength_um=0.52, spherical=0.2),
                      Optics(na=1.4, wavelength_um=0.52, n_sample=1.33, depth_um=10.0)):
        # Away from the shifted best focus: compare planes ±0.5 µm about the plane of peak intensity.
        zs = np.linspace(-4, 4, 801)
        best = zs[np.argmax(radial_intensity(aberrated, [0.0], zs)[:, 0])]
        above, below = psf_2d(aberrated, 0.04, 41, best - 0.5), psf_2d(aberrated, 0.04, 41, best + 0.5)
        assert np.abs(above - below).max() > 0.05 * above.max()


def test_index_mismatch_moves_the_focus_deeper_for_the_stage() -> None:
    # Oil objective into water: the focus lands shallower than nominal, so the stage must go deeper
    # (positive z) to reach a point 10 µm down: by 0.14·10 µm paraxially (n_oil/n_water - 1), more at NA 1.4.
    mismatch = Optics(na=1.4, wavelength_um=0.52, n_sample=1.33, depth_um=10.0)
    zs = np.linspace(-5, 5, 1001)
    axial = radial_intensity(mismatch, [0.0], zs)[:, 0]
    assert 1.4 <= zs[np.argmax(axial)] <= 3.5
    matched = radial_intensity(Optics(na=1.4, wavelength_um=0.52), [0.0], zs)[:, 0]
    assert axial.max() < 0.7 * matched.max()  # the spherical aberration costs peak intensity


def test_defocus_widens_the_psf_monotonically() -> None:
    optics = Optics(na=0.8, wavelength_um=0.52, n_immersion=1.0)
    yy, xx = np.mgrid[-100:101, -100:101] * 0.04
    peaks, spreads = [], []
    for z in (0.0, 0.15, 0.3, 0.5, 0.8, 1.2, 2.0):
        k = psf_2d(optics, 0.04, 201, z)
        peaks.append(k.max())
        spreads.append(float((k * (yy**2 + xx**2)).sum()))
    assert np.all(np.diff(peaks) < 0)
    assert np.all(np.diff(spreads) > 0)


def test_pixel_integration_equals_binning_a_finer_psf() -> None:
    coarse = psf_2d(WIDEFIELD, 0.06, 31)
    finer = psf_2d(WIDEFIELD, 0.02, 93).reshape(31, 3, 31, 3).sum(axis=(1, 3))
    assert np.abs(coarse - finer).max() < 2e-3 * coarse.max()
    # Integration matters: point samples at the pixel centres differ by far more than that.
    point = psf_2d(WIDEFIELD, 0.06, 31, oversample=1)
    assert np.abs(point - coarse).max() > 2e-2 * coarse.max()


def test_axial_fwhm_of_the_widefield_psf() -> None:
    for n, na in ((1.515, 1.4), (1.0, 0.8), (1.333, 1.2)):
        optics = Optics(na=na, wavelength_um=0.52, n_immersion=n)
        expected = axial_fwhm_um(optics)
        dz = expected / 40
        volume = psf_3d(optics, 0.52 / na / 20, dz, (241, 5, 5))
        assert fwhm(volume[:, 2, 2], dz) == pytest.approx(expected, rel=0.10)


def test_gibson_lanni_at_matched_index_and_depth_zero_is_born_wolf() -> None:
    # Non-trivial design layers that cancel: coverslip and working distance at design, sample matched.
    optics = Optics(na=1.4, wavelength_um=0.52, coverslip_um=170, design_coverslip_um=170, working_distance_um=150)
    r = np.linspace(0, 2.0, 301)
    zs = np.array([0.0, 0.3, -0.7])
    gl = radial_intensity(optics, r, zs, model="gibson_lanni")
    bw = radial_intensity(optics, r, zs, model="born_wolf")
    assert np.abs(gl - bw).max() <= 1e-3 * bw.max()
    # A thicker coverslip than designed is an aberration: Gibson-Lanni departs from Born-Wolf.
    thick = Optics(na=1.4, wavelength_um=0.52, coverslip_um=190, n_coverslip=1.52)
    assert np.abs(radial_intensity(thick, r) - bw[:1]).max() > 0.05 * bw.max()


def test_support_for_holds_the_mass() -> None:
    optics = Optics(na=1.4, wavelength_um=0.52)
    pixel = 0.065
    side = support_for(optics, pixel_um=pixel)
    assert side % 2 == 1
    big = psf_2d(optics, pixel, 2 * side + 1, normalise=False)  # absolute: counted against all the light

    def held(s: int) -> float:
        c, h = big.shape[0] // 2, s // 2
        return float(big[c - h:c + h + 1, c - h:c + h + 1].sum())

    assert held(side) >= 0.99 > held(side - 2)
    # The Airy rings hold 1 % of the light far out: about 20 λ/NA across, whatever the pixel.
    assert 14 * 0.52 / 1.4 < side * pixel < 24 * 0.52 / 1.4
    assert support_for(optics, pixel_um=2 * pixel) < side
    assert support_for(optics, 0.9, pixel_um=pixel) < support_for(optics, 0.95, pixel_um=pixel) < side
    # size=None takes it; an array is measured against its own sum.
    assert psf_2d(optics, pixel).shape == (side, side)
    k = psf_2d(confocal(1.0), 0.02, 61)
    s = support_for(k)
    c, h = 30, s // 2
    assert k[c - h:c + h + 1, c - h:c + h + 1].sum() >= 0.99 > k[c - h + 1:c + h, c - h + 1:c + h].sum()
    assert support_for(confocal(1.0), pixel_um=0.02) == s
    assert support_for(np.stack([k, k])) == s  # 3-D: summed over z


def test_psf_3d_shape_and_planes() -> None:
    optics = Optics(na=1.2, wavelength_um=0.6, n_immersion=1.333)
    v = psf_3d(optics, 0.1, 0.2, (11, 21, 21))
    assert v.shape == (11, 21, 21)
    assert v.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(v[5] / v[5].sum(), psf_2d(optics, 0.1, 21), atol=1e-12)
    np.testing.assert_allclose(v[7] / v[7].sum(), psf_2d(optics, 0.1, 21, z_um=0.4), atol=1e-12)
    np.testing.assert_allclose(v, v[::-1], atol=1e-14)  # no aberration: symmetric in z
    default = psf_3d(optics, 0.1, 0.2)
    assert default.shape[1] == default.shape[2] == support_for(optics, pixel_um=0.1)
    assert default.shape[0] * 0.2 >= 6 * axial_fwhm_um(optics)
    conf = psf_3d(confocal(1.0), 0.05, 0.1, (21, 31, 31))
    assert fwhm(conf[:, 15, 15], 0.1) < fwhm(psf_3d(WIDEFIELD, 0.05, 0.1, (21, 31, 31))[:, 15, 15], 0.1)


def _best_of(runs: int, fn) -> float:
    best = np.inf
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def test_speed() -> None:
    optics = Optics(na=1.4, wavelength_um=0.52)
    assert _best_of(3, lambda: psf_2d(optics, 0.05, 41)) < 0.2
    assert _best_of(3, lambda: psf_2d(Optics(modality="confocal", na=1.4, wavelength_um=0.52), 0.05, 41)) < 0.2
    assert _best_of(1, lambda: psf_3d(optics, 0.05, 0.1, (65, 65, 65))) < 5.0  # at least 64³


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"na": 1.4, "wavelength_um": 0.52, "n_immersion": 1.333}, ["na=1.4", "n_immersion=1.333", "cannot exceed"]),
    ({"na": 1.4, "wavelength_um": 520}, ["wavelength_um=520", "520 nm is 0.52 µm"]),
    ({"na": 0, "wavelength_um": 0.52}, ["na=0", "positive"]),
    ({"na": 1.4, "wavelength_um": 0.52, "modality": "sted"}, ["modality='sted'", "'widefield' or 'confocal'"]),
    ({"na": 1.4, "wavelength_um": 0.52, "n_sample": 0.5}, ["n_sample=0.5", "at least 1"]),
    ({"na": 1.4, "wavelength_um": 0.52, "depth_um": -3}, ["depth_um=-3", "negative"]),
    ({"na": 1.4, "wavelength_um": 0.52, "pinhole_au": -1}, ["pinhole_au=-1", "negative"]),
    ({"na": 1.4, "wavelength_um": float("nan")}, ["wavelength_um=nan", "finite"]),
])
def test_optics_refused_in_the_users_terms(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(BadInputError) as info:
        Optics(**kwargs)
    for word in words:
        assert word in str(info.value)


def test_kernel_sizes_refused() -> None:
    with pytest.raises(BadInputError, match="size=40 must be a positive odd number"):
        psf_2d(WIDEFIELD, 0.05, 40)
    with pytest.raises(BadInputError, match="shape=64 must be a positive odd number"):
        psf_3d(WIDEFIELD, 0.05, 0.1, (64, 65, 65))
    with pytest.raises(BadInputError, match="pixel_um=0.0 must be a positive length"):
        psf_2d(WIDEFIELD, 0.0, 41)
    with pytest.raises(BadInputError, match="give pixel_um"):
        support_for(WIDEFIELD)
    with pytest.raises(BadInputError, match="supersampled grid"):
        psf_2d(WIDEFIELD, 0.01, 1001)


OME = """<?xml version="1.0" encoding="UTF-8"?>
<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
  <Instrument ID="Instrument:0">
    <Objective ID="Objective:0" LensNA="1.2" Immersion="Water" NominalMagnification="60"/>
    <Objective ID="Objective:1" LensNA="1.4" Immersion="Oil" NominalMagnification="63"/>
  </Instrument>
  <Image ID="Image:0">
    <InstrumentRef ID="Instrument:0"/>
    <ObjectiveSettings ID="Objective:1" RefractiveIndex="1.518"/>
    <Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="8" SizeY="6" SizeC="2" SizeZ="1" SizeT="1"
            PhysicalSizeX="65" PhysicalSizeXUnit="nm" PhysicalSizeY="0.065" PhysicalSizeZ="0.2">
      <Channel ID="Channel:0:0" SamplesPerPixel="1" EmissionWavelength="520" ExcitationWavelength="0.488"
               ExcitationWavelengthUnit="µm" PinholeSize="50" AcquisitionMode="LaserScanningConfocalMicroscopy"/>
      <Channel ID="Channel:0:1" SamplesPerPixel="1" EmissionWavelength="610"/>
      <TiffData/>
    </Pixels>
  </Image>
</OME>"""


def test_read_optics_from_an_ome_tiff(tmp_path) -> None:
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(path, np.zeros((2, 6, 8), np.uint8), description=OME.encode(), metadata=None)  # UTF-8, as written
    assert tifffile.TiffFile(path).is_ome
    got = read_optics(path)
    assert set(got) == set(OPTICS_KEYS)
    assert got["na"] == 1.4 and got["immersion"] == "Oil" and got["magnification"] == 63  # the one referenced
    assert got["refractive_index"] == 1.518
    assert got["emission_um"] == pytest.approx(0.52) and got["excitation_um"] == pytest.approx(0.488)
    assert got["pinhole_um"] == 50.0
    assert got["modality"] == "confocal"
    assert got["pixel_x_um"] == pytest.approx(0.065) and got["pixel_y_um"] == 0.065 and got["pixel_z_um"] == 0.2
    second = read_optics(path, channel=1)
    assert second["emission_um"] == pytest.approx(0.61)
    assert second["excitation_um"] is None and second["pinhole_um"] is None and second["modality"] is None
    with pytest.raises(BadInputError, match="channel=2 is out of range"):
        read_optics(path, channel=2)


def test_read_optics_says_only_what_is_there(tmp_path) -> None:
    bare = OME.replace('<ObjectiveSettings ID="Objective:1" RefractiveIndex="1.518"/>', "")
    got = read_optics(bare)  # the XML string itself; two objectives and none named: no objective is assumed
    assert got["na"] is None and got["immersion"] is None and got["refractive_index"] is None
    assert got["emission_um"] == pytest.approx(0.52)
    one = bare.replace('<Objective ID="Objective:0" LensNA="1.2" Immersion="Water" NominalMagnification="60"/>', "")
    assert read_optics(one)["na"] == 1.4  # the only objective described
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((6, 8), np.uint8))
    assert read_optics(plain) == dict.fromkeys(OPTICS_KEYS)
    with pytest.raises(MissingFileError):
        read_optics(tmp_path / "absent.ome.tif")
    with pytest.raises(BadInputError, match="not valid XML"):
        read_optics("<OME><Image></OME>")


@pytest.mark.parametrize("optics", [
    Optics(na=1.4, wavelength_um=0.52, n_sample=1.33, depth_um=50.0),  # kink at the critical angle, deep
    Optics(na=1.2, wavelength_um=0.6, n_immersion=1.333, n_sample=1.45, depth_um=30.0),
    Optics(na=1.4, wavelength_um=0.52, spherical=0.5, defocus_um=1.0),
])
def test_radial_integral_has_converged(optics: Optics, monkeypatch) -> None:
    # Three times the quadrature nodes change nothing (1e-9 of the peak) over ±4 µm of focus and 3 µm of radius.
    import importlib

    pupil_module = importlib.import_module("napari_kernelgan.physics.optics.pupil")
    r, zs = np.linspace(0, 3, 120), np.linspace(-4, 4, 9)
    default = radial_intensity(optics, r, zs)
    legendre = pupil_module._legendre
    monkeypatch.setattr(pupil_module, "_legendre", lambda count: legendre(3 * count))
    assert np.abs(radial_intensity(optics, r, zs) - default).max() < 1e-9 * default.max()


def test_best_focus() -> None:
    plain = Optics(na=1.4, wavelength_um=0.52)
    assert best_focus_um(plain) == pytest.approx(0.0, abs=0.01)
    assert best_focus_um(Optics(na=1.4, wavelength_um=0.52, defocus_um=0.6)) == pytest.approx(-0.6, abs=0.01)
    water = Optics(na=1.4, wavelength_um=0.52, n_sample=1.33, depth_um=10.0)
    best = best_focus_um(water)
    assert 1.4 <= best <= 3.5  # as in test_index_mismatch_moves_the_focus_deeper_for_the_stage
    at_best, nominal = psf_2d(water, 0.05, 41, best), psf_2d(water, 0.05, 41)
    assert at_best.max() > nominal.max()
    assert at_best.max() >= max(psf_2d(water, 0.05, 41, best + d).max() for d in (-0.2, 0.2))


def test_on_axis_reach_covers_the_side_lobes_and_stretches_with_a_mismatch() -> None:
    from napari_kernelgan.physics.optics import on_axis_reach_um

    plain = Optics(na=1.4, wavelength_um=0.52)
    fwhm = axial_fwhm_um(plain)
    z = np.linspace(-8 * fwhm, 8 * fwhm, 801)
    on_axis = radial_intensity(plain, [0.0], z)[:, 0]
    reach = on_axis_reach_um(plain)
    assert 2 * fwhm < reach < 5 * fwhm
    outside = np.abs(z) > reach + fwhm / 10
    assert on_axis[outside].max() < 0.0101 * on_axis.max()  # nothing above 1 % beyond it
    assert on_axis[np.abs(z) < reach - fwhm / 10].min() < on_axis.max()
    deep = Optics(na=1.4, wavelength_um=0.52, n_sample=1.36, depth_um=10.0)
    assert on_axis_reach_um(deep) > 1.5 * reach
    assert on_axis_reach_um(Optics(na=1.4, wavelength_um=0.52, modality="confocal")) < reach  # intensity^1.5


def test_read_optics_refuses_a_malformed_number_and_skips_non_physical_units() -> None:
    with pytest.raises(BadInputError, match="LensNA='one point four', not a number"):
        read_optics(OME.replace('LensNA="1.4"', 'LensNA="one point four"'))
    assert read_optics(OME.replace('PhysicalSizeZ="0.2"', 'PhysicalSizeZ="0.2" PhysicalSizeZUnit="pixel"'))[
        "pixel_z_um"] is None  # a size in pixels is not a length


def test_a_long_stack_is_computed_in_passes_with_the_same_result(monkeypatch) -> None:
    import importlib

    models = importlib.import_module("napari_kernelgan.physics.optics.models")
    optics = Optics(modality="confocal", na=1.2, wavelength_um=0.6, n_immersion=1.333, pinhole_au=0.8)
    whole = psf_3d(optics, 0.08, 0.2, (9, 15, 15))
    monkeypatch.setattr(models, "PLANE_BUDGET", 1)  # one plane per pass
    np.testing.assert_array_equal(psf_3d(optics, 0.08, 0.2, (9, 15, 15)), whole)
