"""The KernelGAN engine: equivalence, recovery of a known kernel, reproducibility, streaming, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data

import napari_kernelgan as nk
from napari_kernelgan.errors import BadOptionError
from napari_kernelgan.estimators.kernelgan import PRESETS, resolve_config
from napari_kernelgan.estimators.networks import DeepLinearG, PatchD
from napari_kernelgan.physics import constant_gaussian, degrade, gaussian_kernel, kernel_l1

TRUE_K = gaussian_kernel(13, 1.9, 0.9, 0.7)


@pytest.fixture(scope="module")
def blurred() -> np.ndarray:
    hr = data.camera().astype(np.float64)
    return np.clip(np.round(degrade(hr, TRUE_K, 2)), 0, 255).astype(np.uint8)  # 256×256


def test_deep_equals_collapsed() -> None:
    torch.manual_seed(0)
    g = DeepLinearG()
    x = torch.rand(4, 1, 64, 64)
    with torch.no_grad():
        assert (g(x) - g.forward_deep(x)).abs().max().item() < 1e-5
    assert g.kernel().shape == (13, 13)
    # gradients reach every layer through the collapse
    g(x).sum().backward()
    assert all(layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0 for layer in g.layers)


def test_discriminator_shapes() -> None:
    d = PatchD(3)
    assert d(torch.rand(2, 3, 26, 26)).shape == (2, 1, 20, 20)


def test_recovers_known_anisotropic_kernel(blurred: np.ndarray) -> None:
    est = nk.estimate_kernel(blurred, 2, estimator="kernelgan", preset="fast", iterations=40, seed=0)
    err = kernel_l1(est.kernel, TRUE_K)
    # Stated tolerance: within 0.35 L1 of the truth and clearly better than the fixed Gaussian.
    assert err < 0.35, err
    assert err < kernel_l1(constant_gaussian(2), TRUE_K) - 0.1
    assert est.kernel.shape == (13, 13) and np.isclose(est.kernel.sum(), 1)
    assert est.dmap.shape == blurred.shape and np.all((est.dmap >= 0) & (est.dmap <= 1))
    # the estimate is elongated along the true kernel's long axis
    from napari_kernelgan.physics.metrics import second_moments
    w_true, v_true = np.linalg.eigh(second_moments(TRUE_K))
    w_est, v_est = np.linalg.eigh(second_moments(est.kernel))
    assert abs(np.dot(v_true[:, 1], v_est[:, 1])) > 0.9 and w_est[1] / w_est[0] > 1.5


def test_edges_estimator_recovers_kernel(blurred: np.ndarray) -> None:
    est = nk.estimate_kernel(blurred, 2, estimator="edges")
    assert kernel_l1(est.kernel, TRUE_K) < 0.3


def test_seeded_reproducible_and_streaming(blurred: np.ndarray) -> None:
    crop = blurred[:128, :128]
    seen = []
    a = nk.estimate_kernel(crop, 2, estimator="kernelgan", preset="paper", iterations=20, seed=3, report_every=5,
                           callback=seen.append)
    b = nk.estimate_kernel(crop, 2, estimator="kernelgan", preset="paper", iterations=20, seed=3, report_every=5)
    c = nk.estimate_kernel(crop, 2, estimator="kernelgan", preset="paper", iterations=20, seed=4, report_every=5)
    assert np.array_equal(a.kernel, b.kernel)
    assert not np.array_equal(a.kernel, c.kernel)
    with_kernel = [p for p in seen if p.kernel is not None]
    assert [p.iteration for p in with_kernel if p.stage == "estimate"] == [5, 10, 15, 20]
    assert all(p.kernel.shape == (13, 13) for p in with_kernel)
    assert [p.iteration for p in seen if p.stage == "estimate"] == list(range(1, 21))  # cancellable every step
    assert a.iterations == 20 and a.seed == 3 and a.preset == "paper" and len(a.loss_history["d"]) == 20


def test_cancel_stops_early(blurred: np.ndarray) -> None:
    calls = []

    def stop_at_second_step(p: nk.Progress) -> bool:
        calls.append((p.stage, p.iteration))
        return p.iteration < 2

    with pytest.raises(nk.Cancelled):
        nk.estimate_kernel(blurred[:96, :96], 2, estimator="kernelgan", preset="paper", iterations=200, report_every=5,
                           callback=stop_at_second_step)
    assert calls == [("prepare", 0), ("estimate", 1), ("estimate", 2)]  # stopped at the very next step


def test_x4_and_multichannel_and_stack(blurred: np.ndarray) -> None:
    rgb = np.stack([blurred[:96, :96]] * 3, -1)
    est = nk.estimate_kernel(rgb, 4, estimator="kernelgan", preset="paper", iterations=5)
    assert est.kernel_for(4).shape == (37, 37) and np.isclose(est.kernel_x4.sum(), 1)
    stack = np.stack([blurred[:96, :96], blurred[100:196, 100:196]])
    est = nk.estimate_kernel(stack, 2, estimator="kernelgan", preset="paper", iterations=5, stack_axis=0)
    assert est.dmap.shape == (2, 96, 96)


def test_paper_preset_is_as_published() -> None:
    p = PRESETS["paper"]
    assert (p.iterations, p.crop, p.batch, p.lr_g, p.lr_d, p.betas, p.lr_step, p.lr_gamma) == \
        (3000, 64, 1, 2e-4, 2e-4, (0.5, 0.999), 750, 0.1)
    assert (p.w_sum2one, p.w_boundaries, p.w_sparse, p.w_centre) == (0.5, 0.5, 5.0, 1.0)
    assert p.anchor == "bicubic" and p.restarts == 1 and p.gaussian_prior == 0
    assert resolve_config("paper", 300).lr_step == 75
    with pytest.raises(BadOptionError, match="unknown KernelGAN option"):
        resolve_config("paper", bogus=1)
    with pytest.raises(BadOptionError, match="unknown preset"):
        resolve_config("nope")


@pytest.mark.parametrize("image, msg", [
    (np.zeros((20, 20), np.uint8), "at least 32"),
    (np.full((64, 64), np.nan), "NaN"),
    (np.full((64, 64), np.inf), "NaN or infinite"),
    (np.zeros((2, 3, 64, 64)), "channel_axis"),
    (np.zeros((0, 64)), "empty"),
    (np.zeros((64, 64), dtype=bool), "dtype"),
    (np.zeros((64, 64), dtype=complex), "dtype"),
    (np.full((64, 64), 7, np.uint8), "constant"),
])
def test_bad_inputs_raise_clear_errors(image: np.ndarray, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        nk.estimate_kernel(image, 2, estimator="kernelgan", preset="paper", iterations=2)


def test_bad_options() -> None:
    img = data.camera()[:64, :64]
    with pytest.raises(ValueError, match="scale"):
        nk.estimate_kernel(img, 3)
    with pytest.raises(BadOptionError, match="unknown kernel estimator"):
        nk.estimate_kernel(img, 2, estimator="nope")
    with pytest.raises(BadOptionError, match="edges' got unknown option.*'iterations'"):
        nk.estimate_kernel(img, 2, estimator="edges", iterations=5)
    with pytest.warns(DeprecationWarning, match="estimator="):
        nk.estimate_kernel(img, 2, method="edges")
    if not torch.cuda.is_available():
        with pytest.raises(BadOptionError, match="no CUDA"):
            nk.estimate_kernel(img, 2, device="cuda")


def test_anchor_blend_mixes_in_the_anchor() -> None:
    """The final kernel moves toward the edge anchor by exactly the configured fraction."""
    from napari_kernelgan.estimators.kernelgan import finalize_kernel

    raw = gaussian_kernel(13, 1.0)
    anchor = gaussian_kernel(13, 2.5)
    plain = finalize_kernel(raw, resolve_config("default", anchor_blend=0.0, gaussian_prior=0.0), anchor)
    mixed = finalize_kernel(raw, resolve_config("default", anchor_blend=0.25, gaussian_prior=0.0), anchor)
    assert np.allclose(mixed, 0.75 * plain + 0.25 * anchor, atol=1e-9)
    assert PRESETS["paper"].anchor_blend == 0.0


def test_custom_generator_runs_through_the_fit_loop(blurred: np.ndarray) -> None:
    """A loaded or meta-learned G reuses the fit loop: here a narrower DeepLinearG from a factory."""
    from napari_kernelgan.api import drive
    from napari_kernelgan.registry import ESTIMATORS

    made: list[DeepLinearG] = []

    def g_factory() -> DeepLinearG:
        made.append(DeepLinearG(channels=16))
        return made[-1]

    frames = np.ascontiguousarray(blurred[:96, :96], dtype=np.float32)[None, None] / 255
    gen = ESTIMATORS.get("kernelgan").fn(frames, scale=2, device=torch.device("cpu"), seed=0, report_every=5,
                                         preset="fast", iterations=3, prefit_steps=20,
                                         g_factory=g_factory)
    est = drive(gen)
    assert len(made) == 1 and made[0].layers[0].weight.shape == (16, 1, 7, 7)
    assert est.iterations == 3 and est.kernel.shape == (13, 13) and np.isclose(est.kernel.sum(), 1)
    assert len(est.loss_history["g_gan"]) == 3


def test_estimators_do_not_import_sr() -> None:
    """Estimators share the physics package with the SR methods, never the SR modules themselves."""
    from pathlib import Path

    for path in (Path(nk.__file__).parent / "estimators").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "from ..sr" not in text and "napari_kernelgan.sr" not in text, path.name
