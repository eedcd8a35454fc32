"""The ``auto`` estimator: recovery of a known kernel, a confidence that means something, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from skimage import data

import napari_kernelgan as nk
from napari_kernelgan.errors import BadInputError, BadOptionError
from napari_kernelgan.estimators import auto
from napari_kernelgan.physics import constant_gaussian, degrade, gaussian_kernel, kernel_l1
from napari_kernelgan.physics.metrics import second_moments

TRUE_K = gaussian_kernel(13, 2.0, 1.0, 0.6)


@pytest.fixture(scope="module")
def blurred() -> np.ndarray:
    hr = data.astronaut().astype(np.float64)
    return np.clip(np.round(degrade(hr, TRUE_K, 2)), 0, 255).astype(np.uint8)  # 256×256 RGB


@pytest.fixture(scope="module")
def estimate(blurred: np.ndarray) -> nk.KernelEstimate:
    return nk.estimate_kernel(blurred, 2, estimator="auto", seed=0, threads=1)


def test_recovers_a_known_anisotropic_kernel(estimate: nk.KernelEstimate) -> None:
    err = kernel_l1(estimate.kernel, TRUE_K)
    assert err < 0.25, f"auto L1 {err:.3f}"
    assert err < 0.6 * kernel_l1(constant_gaussian(2), TRUE_K)
    # the long axis points the right way
    vals, vecs = np.linalg.eigh(second_moments(estimate.kernel))
    true_vals, true_vecs = np.linalg.eigh(second_moments(TRUE_K))
    assert abs(float(vecs[:, 1] @ true_vecs[:, 1])) > 0.9


def test_confidence_recorded_everywhere(estimate: nk.KernelEstimate) -> None:
    assert estimate.method == "auto"
    assert 0.0 <= estimate.confidence <= 1.0
    assert estimate.metadata()["confidence"] == round(estimate.confidence, 3)
    assert estimate.extras["members"], "no member estimate was combined"


def test_confidence_lower_on_flat_and_noise_than_on_texture(estimate: nk.KernelEstimate) -> None:
    rng = np.random.default_rng(0)
    flat = np.full((128, 128), 0.5) + rng.normal(0, 0.002, (128, 128))
    noise = rng.uniform(0, 1, (128, 128))
    for name, img in (("flat", flat), ("noise", noise)):
        est = nk.estimate_kernel(img, 2, estimator="auto", seed=0, threads=1)
        assert est.confidence < estimate.confidence, f"{name}: {est.confidence:.2f} ≥ textured " \
                                                     f"{estimate.confidence:.2f}"
        assert np.isclose(est.kernel.sum(), 1.0)
        # a flat field with a little noise passes the shot-noise test (a dim fluorescence background looks so):
        # its kernel is then the microscope prior's, on its own support
        assert est.options["mode"] == ("microscope" if name == "flat" else "natural")
        if name == "noise":
            assert est.kernel.shape == (13, 13)


def test_combination_is_a_log_euclidean_mean() -> None:
    a, b = np.diag([1.0, 4.0]), np.diag([4.0, 1.0])
    mean, spread = auto.combine_covariances([a, b], [1.0, 1.0])
    assert np.allclose(mean, np.diag([2.0, 2.0]))   # geometric, not arithmetic (2.5)
    assert spread > 0
    same, zero = auto.combine_covariances([a, a], [1.0, 3.0])
    assert np.allclose(same, a) and zero == pytest.approx(0.0)
    assert auto.confidence_from(0.0, [0.8, 0.8], [1, 1], 2) > auto.confidence_from(1.0, [0.8, 0.8], [1, 1], 2)


def test_bad_options_and_inputs(blurred: np.ndarray) -> None:
    with pytest.raises(BadOptionError, match="no_such_estimator"):
        nk.estimate_kernel(blurred, 2, estimator="auto", members="edges,no_such_estimator")
    with pytest.raises(BadOptionError, match="own member"):
        nk.estimate_kernel(blurred, 2, estimator="auto", members="auto")
    with pytest.raises(BadInputError):
        nk.estimate_kernel(np.full((64, 64), np.nan), 2, estimator="auto")
    with pytest.raises(BadInputError):
        nk.estimate_kernel(np.zeros((8, 8)), 2, estimator="auto")


def test_is_the_default_estimator() -> None:
    from napari_kernelgan.api import DEFAULT_ESTIMATOR

    assert DEFAULT_ESTIMATOR == "auto"


def test_direct_measurements_decide_and_fluorescence_without_them_is_doubted() -> None:
    learned, lines = np.diag([3.0, 3.0]), np.diag([1.0, 2.0])
    members = [("learned", learned, 0.9), ("lines", lines, 0.4)]
    cov, conf, info = auto.combine_members(members)
    # a passing point or line measurement decides alone, without the indirect members' bias correction
    np.testing.assert_allclose(cov, lines)
    assert info["used"] == ["lines"] and info["overruled"] == ["learned"] and conf == pytest.approx(0.4)
    # below its gate it is left out and the others decide
    cov, _, info = auto.combine_members([("learned", learned, 0.9), ("lines", lines, 0.01)])
    assert "lines" in info["skipped"] and info["used"] == ["learned"]
    # the same indirect estimate on a photon-limited image is trusted less
    _, plain, _ = auto.combine_members([("learned", learned, 0.9)])
    _, doubted, _ = auto.combine_members([("learned", learned, 0.9)], photon_limited=True)
    assert doubted == pytest.approx(auto.UNIDENTIFIABLE * plain)
    assert auto.combine_members([])[0] is None


def test_filaments_in_a_fluorescence_image_are_used(blurred: np.ndarray) -> None:
    from napari_kernelgan.synthetic import degrade_microscopy, microscopy_scene

    scene = microscopy_scene((256, 256), 3, kind="filaments")
    lr = degrade_microscopy(scene, TRUE_K, 2, seed=0, photons=500, read_noise=1.5)
    est = nk.estimate_kernel(lr, 2, estimator="auto", seed=0, threads=1)
    # lines decides, so the fluorescence doubt (and its shot-noise test) does not apply
    assert est.extras["used"] == ["lines"] and not est.extras["photon_limited"]
    # a photon-limited image: the microscope mode's physical kernel, its width and long axis the lines' own
    assert est.options["mode"] == "microscope" and est.options["microscope"]["axis_ratio"] > 1.1
    vecs = np.linalg.eigh(second_moments(est.kernel))[1]
    true_vecs = np.linalg.eigh(second_moments(TRUE_K))[1]
    assert abs(float(vecs[:, 1] @ true_vecs[:, 1])) > 0.9
    # a photograph is never read as filaments or spots
    photo = nk.estimate_kernel(blurred, 2, estimator="auto", seed=0, threads=1)
    assert not set(photo.extras["used"]) & set(auto.DECISIVE)


def test_members_that_could_not_measure_are_recorded_with_their_reason(estimate: nk.KernelEstimate) -> None:
    # a photograph has no point sources: spots falls back, and says so; the members that read it are not listed
    failed = estimate.options["failed_members"]
    assert failed["spots"].startswith("no isolated point-like spots found (")
    assert not {"learned", "kernelnet"} & set(failed)
    # a member that refuses the image outright (too small for kernelnet's edge search)
    small = np.random.default_rng(0).uniform(0, 1, (40, 40))
    est = nk.estimate_kernel(small, 2, estimator="auto", members="learned,kernelnet", threads=1)
    assert est.options["failed_members"] == {
        "kernelnet": "the image is 40×40 pixels; at least 48×48 is needed to find edges away from the border"}
    assert est.extras["used"] == ["learned"]


def test_a_tile_no_member_reads_says_why_for_each(blurred: np.ndarray) -> None:
    gray = blurred.mean(-1)
    gray[:96, :96] = 128.0  # one flat tile
    field = nk.estimate_kernel_map(gray, 2, estimator="auto", members="kernelnet,spots", tile=96, overlap=16,
                                   threads=1)
    assert field.extras["unreadable_tiles"] == {0: "auto: no member could read the tile (kernelnet: no strong, "
                                                   "coherent edges were found; spots: no isolated point-like spots "
                                                   "found (0 usable of 4 candidates, 5 needed))"}


def test_reports_the_device_its_members_ran_on(blurred: np.ndarray, device, monkeypatch) -> None:
    import dataclasses

    from napari_kernelgan.registry import ESTIMATORS

    # learned runs its network on the device; kernelnet is numpy and says "cpu" wherever it is asked to run
    est = nk.estimate_kernel(blurred, 2, estimator="auto", members="learned,kernelnet", device=device, threads=1)
    ran = {"learned": nk.estimate_kernel(blurred, 2, estimator="learned", device=device, threads=1).device,
           "kernelnet": "cpu"}
    assert ran["learned"] == str(device)
    assert est.device == (ran["learned"] if device.type == "cpu" else f"{device} (learned), cpu (kernelnet)")
    assert auto._where({}) == "cpu" and auto._where({"spots": "cpu", "lines": "cpu"}) == "cpu"
    # a member that reports another device is named with it
    spec = ESTIMATORS.get("kernelnet")

    def elsewhere(*args, **kwargs):
        result = yield from spec.fn(*args, **kwargs)
        result.device = "mps"
        return result

    monkeypatch.setitem(ESTIMATORS._specs, "kernelnet", dataclasses.replace(spec, fn=elsewhere))
    moved = nk.estimate_kernel(blurred, 2, estimator="auto", members="learned,kernelnet", device=device, threads=1)
    assert moved.device == f"{device} (learned), mps (kernelnet)"
