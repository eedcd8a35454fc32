"""Conventions, the degradation operator and metrics: one test per property, on real numbers.

The operator tests follow deepinv's ``tests/test_physics.py``: every operator
(one per boundary, the Fourier-domain one and the spatially varying one per
boundary) on every device (the ``device`` fixture) goes through the same
adjointness test.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import data

from napari_kernelgan.errors import BadInputError, BadOptionError
from napari_kernelgan.physics import (
    PADDINGS,
    Degradation,
    analytic_x4,
    centre_of_mass,
    constant_gaussian,
    degrade,
    degrade_adjoint,
    dihedral,
    gaussian_kernel,
    imresize,
    kernel_kcov,
    kernel_l1,
    kernel_psnr,
    random_div2krk_kernel,
    resize_tensor,
    undo_dihedral,
)
from napari_kernelgan.physics.conventions import kernel_for_subsampling, validate_kernel
from napari_kernelgan.physics.varying import SpaceVaryingDegradation
from shared_data import DIV2KRK

SHARED = DIV2KRK
# The spatially varying operator keeps the image's LR grid, so it has no "valid" boundary.
OPERATORS = PADDINGS + ("fourier",) + tuple(f"varying-{p}" for p in PADDINGS if p != "valid")


def asym_kernel(size: int = 13) -> np.ndarray:
    k = gaussian_kernel(size, 2.2, 0.8, 0.5)
    k[size // 2 - 2:size // 2, size // 2 + 2:size // 2 + 4] += 0.02  # a lobe off one side: its flip differs
    return k / k.sum()


def make_operator(name: str, scale: int, hr_shape: tuple[int, int],
                  device: torch.device) -> Degradation | SpaceVaryingDegradation:
    """The operator called ``name``: a boundary of :data:`PADDINGS`, ``"fourier"`` (known by its OTF only),
    or ``"varying-<boundary>"`` (a 2×3 grid of different kernels blended across the image)."""
    if name.startswith("varying-"):
        k = asym_kernel()
        kernels = np.stack([np.stack([k, k.T, gaussian_kernel(13, 1.2)]),
                            np.stack([gaussian_kernel(13, 2.0, 0.9, 0.3), k[::-1], k[:, ::-1]])])
        lr = (-(-hr_shape[0] // scale), -(-hr_shape[1] // scale))
        return SpaceVaryingDegradation(kernels, [1.0, lr[0] - 2.0], [0.0, lr[1] / 2, lr[1] - 1.0], scale,
                                       name.removeprefix("varying-"))
    if name == "fourier":
        otf = Degradation(asym_kernel(), scale, "circular").otf(hr_shape, dtype=torch.float64, device=device)
        return Degradation.from_otf(otf, scale)
    return Degradation(asym_kernel(), scale, name)


# --------------------------------------------------------------------------- the operator

@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", OPERATORS)
def test_adjointness(name: str, scale: int, device: torch.device) -> None:
    """<A x, y> == <x, A* y> for every boundary and scale, batched over leading axes."""
    gen = torch.Generator().manual_seed(scale)
    hr_shape = (12 * scale + 1, 10 * scale)  # one side not a multiple of the scale
    x = torch.rand((2, 3, *hr_shape), dtype=torch.float64, generator=gen).to(device)
    op = make_operator(name, scale, hr_shape, device)
    assert adjointness_gap(op, x, gen) < 1e-12
    if name not in ("valid", "fourier"):
        # An image smaller than the kernel: the extension wraps or reflects more than once.
        assert adjointness_gap(op, x[0, 0, :7, :9], gen) < 1e-12


def adjointness_gap(op: Degradation | SpaceVaryingDegradation, x: torch.Tensor, gen: torch.Generator) -> float:
    """Relative gap ``|<A x, y> − <x, A* y>| / |<A x, y>|`` for a random ``y`` (round-off when adjoint)."""
    ax = op.A(x)
    y = torch.rand(ax.shape, dtype=ax.dtype, generator=gen).to(ax.device)
    lhs = float((ax * y).sum())
    return abs(lhs - float((x * op.A_adjoint(y, tuple(x.shape[-2:]))).sum())) / max(abs(lhs), 1e-30)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("name", PADDINGS)
def test_float32_adjoint_matches_float64(name: str, scale: int) -> None:
    """The float32 CPU adjoint (per-phase convolutions) equals the float64 one (tap by tap)."""
    gen = torch.Generator().manual_seed(scale)
    hr_shape = (12 * scale + 1, 10 * scale)
    op = make_operator(name, scale, hr_shape, torch.device("cpu"))
    y = torch.rand((2, 3, *op.output_shape(hr_shape)), dtype=torch.float64, generator=gen)
    ref = op.A_adjoint(y, hr_shape)
    torch.testing.assert_close(op.A_adjoint(y.float(), hr_shape).double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("mode", ["reflect", "mirror", "nearest", "wrap", "constant"])
def test_operator_equals_scipy_correlation(mode: str, scale: int) -> None:
    """The stored kernel shifted for the scale, correlated as scipy.ndimage does, then ``[::s, ::s]``;
    in float64 and float32, through the numpy wrappers, and through the Fourier domain for ``wrap``."""
    rng = np.random.default_rng(scale)
    k = asym_kernel()
    kk = kernel_for_subsampling(k, scale) if scale > 1 else k
    for shape in ((37, 30, 2), (6, 9, 1)):  # the second is smaller than the kernel
        x = rng.random(shape)
        expected = np.stack([ndimage.correlate(x[..., c], kk, mode=mode)[::scale, ::scale]
                             for c in range(shape[-1])], axis=-1)
        np.testing.assert_allclose(degrade(x, k, scale, mode=mode), expected, atol=1e-12)
        np.testing.assert_allclose(degrade(x[..., 0], k, scale, mode=mode), expected[..., 0], atol=1e-12)
        chw = torch.as_tensor(np.moveaxis(x, -1, 0), dtype=torch.float32)
        got32 = Degradation(k, scale, mode).A(chw).numpy()
        np.testing.assert_allclose(np.moveaxis(got32, 0, -1), expected, atol=1e-6)
        if mode == "wrap":
            otf = Degradation(k, scale, "circular").otf(shape[:2], dtype=torch.float64)
            fourier = Degradation.from_otf(otf, scale).A(torch.as_tensor(np.moveaxis(x, -1, 0))).numpy()
            np.testing.assert_allclose(np.moveaxis(fourier, 0, -1), expected, atol=1e-12)
    # The numpy adjoint keeps the channel axis last too.
    y = rng.random(expected.shape)
    np.testing.assert_allclose(np.vdot(degrade(x, k, scale, mode=mode), y),
                               np.vdot(x, degrade_adjoint(y, k, scale, x.shape, mode=mode)), rtol=1e-12)


def test_valid_padding_is_kernelgans_strided_convolution() -> None:
    k = torch.rand(13, 13)
    x = torch.rand(4, 3, 64, 64)
    op = Degradation.from_applied(k, 2)
    got = op.A(x)
    assert got.shape == (4, 3, 26, 26) == (4, 3) + op.output_shape((64, 64))
    assert torch.equal(got, torch.nn.functional.conv2d(x.reshape(12, 1, 64, 64), k[None, None], stride=2)
                       .reshape(4, 3, 26, 26))
    with pytest.raises(BadInputError, match="smaller than"):
        op.A(torch.rand(1, 10, 20))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_from_applied_keeps_gradients(dtype: torch.dtype) -> None:
    """KernelGAN trains through the operator: the gradient reaches the kernel tensor (and the image)."""
    k = torch.rand(5, 5, dtype=dtype, requires_grad=True)
    x = torch.rand(2, 16, 17, dtype=dtype, requires_grad=True)
    for padding in ("valid", "reflect"):
        k.grad = x.grad = None
        op = Degradation.from_applied(k, 2, padding)
        y = op.A(x)
        w = torch.rand(y.shape, dtype=dtype)
        (y * w).sum().backward()
        # d<A x, w>/dk[u, v] = <the padded x shifted by (u, v) and subsampled, w>.
        xp = x.detach()
        if padding == "reflect":
            xp = torch.from_numpy(np.pad(xp.numpy(), ((0, 0), (2, 2), (2, 2)), mode="symmetric"))
        expected = torch.stack([torch.stack([(xp[..., u:u + 2 * y.shape[-2] - 1:2, v:v + 2 * y.shape[-1] - 1:2] * w)
                                             .sum() for v in range(5)]) for u in range(5)])
        torch.testing.assert_close(k.grad, expected)
        torch.testing.assert_close(x.grad, op.A_adjoint(w, (16, 17)).detach())


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("lr_shape", [(10, 14), (9, 7)])
def test_prox_l2_solves_its_normal_equations(scale: int, lr_shape: tuple[int, int], device: torch.device) -> None:
    """x = prox(z) satisfies A*(A x − y) + γ (x − z) = 0; the FFT solver against the spatial A and A*."""
    gen = torch.Generator().manual_seed(4)
    y = torch.rand((3,) + lr_shape, dtype=torch.float64, generator=gen).to(device)
    z = torch.rand((3, lr_shape[0] * scale, lr_shape[1] * scale), dtype=torch.float64, generator=gen).to(device)
    op = Degradation(asym_kernel(), scale, "circular")
    for gamma in (1e-3, 0.5):
        x = op.prox_l2(z, y, gamma)
        residual = op.A_adjoint(op.A(x) - y) + gamma * (x - z)
        assert residual.abs().max() < 1e-10
    # One weight per batch item; the limits keep z (large γ) or fit y (small γ).
    gammas = torch.tensor([1e-2, 1.0], dtype=torch.float64).view(2, 1, 1, 1)
    batched = op.prox_l2(z.expand(2, -1, -1, -1), y.expand(2, -1, -1, -1), gammas)
    torch.testing.assert_close(batched[1], op.prox_l2(z, y, 1.0), atol=1e-12, rtol=0)
    torch.testing.assert_close(op.prox_l2(z, y, 1e9), z, atol=1e-6, rtol=0)
    torch.testing.assert_close(op.A(op.prox_l2(z, y, 1e-9)), y, atol=1e-5, rtol=0)


def test_prox_l2_needs_the_periodic_grid() -> None:
    y, z = torch.zeros(16, 16), torch.zeros(32, 32)
    with pytest.raises(BadOptionError, match="periodic"):
        Degradation(gaussian_kernel(7, 1.0), 2, "reflect").prox_l2(z, y, 0.1)
    with pytest.raises(BadInputError, match="grid"):
        Degradation(gaussian_kernel(7, 1.0), 2, "circular").prox_l2(torch.zeros(30, 30), y, 0.1)
    otf = Degradation(gaussian_kernel(7, 1.0), 2, "circular").otf((30, 30))
    with pytest.raises(BadInputError, match="half spectrum"):
        Degradation.from_otf(otf, 2).prox_l2(z, y, 0.1)
    with pytest.raises(BadOptionError, match="unknown padding"):
        Degradation(gaussian_kernel(7, 1.0), 2, "periodic")


@pytest.mark.parametrize("shape", [(40, 34), (9, 13), (11, 5)])
def test_resize_tensor_equals_imresize(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    img = rng.random((3, 20, 17))
    expected = imresize(img, output_shape=shape, axes=(-2, -1))
    np.testing.assert_allclose(resize_tensor(torch.as_tensor(img), shape).numpy(), expected, atol=1e-12)
    got32 = resize_tensor(torch.as_tensor(img, dtype=torch.float32), shape)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), expected, atol=1e-5)


def test_dihedral_round_trip_and_commutes_with_degradation() -> None:
    x = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    for t in range(8):
        assert np.array_equal(undo_dihedral(dihedral(x, t), t), x)
        assert torch.equal(undo_dihedral(dihedral(torch.from_numpy(x), t), t), torch.from_numpy(x))
        assert np.array_equal(dihedral(torch.from_numpy(x), t).numpy(), dihedral(x, t))
    assert len({dihedral(x, t).tobytes() + bytes(dihedral(x, t).shape) for t in range(8)}) == 8
    # T(degrade(x, k)) == degrade(T(x), T(k)): the basis of a kernel-aware self-ensemble.
    img = np.random.default_rng(0).random((24, 24))
    k = gaussian_kernel(7, 0.8, 1.8, 0.7)
    for t in range(8):
        lhs = dihedral(degrade(img, k, 2), t)
        rhs = degrade(np.ascontiguousarray(dihedral(img, t)), np.ascontiguousarray(dihedral(k, t)), 2)
        assert np.allclose(lhs, rhs, atol=1e-12), t


def test_importing_physics_loads_no_torch() -> None:
    code = ("import sys, numpy as np, napari_kernelgan.physics as p\n"
            "p.imresize(np.ones((4, 4)), 2); p.dihedral(np.ones((2, 2)), 3)\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stdout + proc.stderr


# --------------------------------------------------------------------------- conventions and metrics

def test_subsampling_phase_keeps_field_of_view() -> None:
    """A symmetric kernel at ×2: LR pixel i sits at HR position 2i + 0.5 (corner-to-corner alignment)."""
    ramp = np.tile(np.arange(64, dtype=float), (64, 1))
    lr = degrade(ramp, gaussian_kernel(13, 1.5), 2)
    assert np.allclose(lr[10, 5:25], 2 * np.arange(5, 25) + 0.5, atol=1e-6)
    assert np.allclose(centre_of_mass(kernel_for_subsampling(gaussian_kernel(13, 1.5), 2)), [9.5, 9.5])


def test_x4_from_x2_equals_degrading_twice() -> None:
    img = data.camera()[100:356, 100:356].astype(float)
    k2 = gaussian_kernel(13, 1.4, 0.9, 0.3)
    twice = degrade(degrade(img, k2, 2, mode="wrap"), k2, 2, mode="wrap")
    once = degrade(img, analytic_x4(k2), 4, mode="wrap")
    # 8-bit scale: about one grey level at worst, from the sub-pixel interpolation of a sharp kernel
    diff = np.abs(twice - once)[4:-4, 4:-4]
    assert diff.max() < 1.5 and diff.mean() < 0.1
    # covariances add: Σ4 = Σ2 + 4·Σ2
    from napari_kernelgan.physics.metrics import second_moments
    assert np.allclose(second_moments(analytic_x4(k2)), 5 * second_moments(k2), atol=1e-3)


def test_flipped_kernel_measurably_loses() -> None:
    """Orientation: the correlation kernel reproduces the degradation, its flip does not."""
    hr = data.camera()[:256, :256].astype(float)
    k = asym_kernel()
    lr = np.round(degrade(hr, k, 2))  # stored as 8-bit data would be
    err_right = np.abs(degrade(hr, k, 2) - lr).mean()
    err_flip = np.abs(degrade(hr, k[::-1, ::-1], 2) - lr).mean()
    assert err_right < 0.26  # the rounding floor
    assert err_flip > 1.3 * err_right
    assert kernel_l1(k[::-1, ::-1], k) > 0.1


@pytest.mark.skipif(not SHARED.is_dir(), reason="DIV2KRK data not found beside the repository (../shared)")
def test_matches_div2krk_generation() -> None:
    from scipy.io import loadmat

    from napari_kernelgan.io import read_image

    hr = read_image(SHARED / "hr" / "im_2.png")[:300, :300].astype(float)
    lr = read_image(SHARED / "lr_x2" / "im_2.png")[:150, :150].astype(float)
    k = loadmat(SHARED / "gt_k_x2" / "kernel_2.mat")["Kernel"]
    rmse = lambda a: np.sqrt(np.mean((np.round(a) - lr)[8:-8, 8:-8] ** 2))  # noqa: E731
    assert rmse(degrade(hr, k, 2)) < 1.0
    assert rmse(degrade(hr, k[::-1, ::-1], 2)) > rmse(degrade(hr, k, 2))
    assert rmse(degrade(hr, k, 1)[::2, ::2]) > 2.0  # without the half-pixel shift


def test_metrics_behave() -> None:
    k = gaussian_kernel(11, 1.5, 1.0, 0.4)
    assert kernel_l1(k, k) < 1e-9
    from napari_kernelgan.physics import pad_to
    shifted = np.roll(pad_to(k, 15), 2, axis=1)  # padded first: the roll must not wrap mass around
    assert kernel_l1(shifted, k) < 1e-6  # alignment removes integer shifts
    assert kernel_l1(gaussian_kernel(13, 2.5), k) > kernel_l1(gaussian_kernel(13, 1.25), k)
    assert kernel_psnr(k, k) > 100 and kernel_psnr(gaussian_kernel(11, 3.0), k) < 50
    assert kernel_kcov(gaussian_kernel(11, 1.5, 1.0, 0.4), k) < 1e-9
    assert kernel_kcov(gaussian_kernel(11, 2.0), k) > 1.0


def test_constant_baseline_and_random_kernels() -> None:
    rng = np.random.default_rng(1)
    ks = [random_div2krk_kernel(rng) for _ in range(20)]
    for k in ks:
        assert k.shape == (11, 11) and np.isclose(k.sum(), 1) and k.min() >= 0
        # wide kernels are truncated by the 11×11 support, so centring is good to a tenth of a pixel
        # (the DIV2KRK ground truth itself is off by up to 0.034 px)
        assert np.allclose(centre_of_mass(k), [5, 5], atol=0.1)
    assert random_div2krk_kernel(rng, 4).shape == (31, 31)
    assert constant_gaussian(2).shape == (13, 13) and constant_gaussian(4).shape == (31, 31)


@pytest.mark.parametrize("bad, msg", [
    (np.ones((4, 4)) / 16, "odd size"),
    (np.ones((3, 3)), "sums to"),
    (np.array([[0, 0, 0], [0, 2, 0], [0, 0, -1.0]]), "negative"),
    (np.full((3, 3), np.nan), "NaN"),
    (np.ones(9) / 9, "2-D"),
])
def test_validate_kernel_errors(bad: np.ndarray, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        validate_kernel(bad)


def test_validate_kernel_accepts_div2krk_ringing_and_clips_it():
    """Interpolated kernels (as DIV2KRK's ground truth) have taps of about -1% of the peak: accepted, clipped."""
    k = gaussian_kernel(13, 1.5)
    k[0, 6] = -0.008 * k.max()
    out = validate_kernel(k / k.sum())
    assert out.min() == 0.0 and np.isclose(out.sum(), 1.0)


@pytest.mark.parametrize("scale", [1, 2, 3])
@pytest.mark.parametrize("name", ["reflect", "constant", "valid"])
def test_large_kernel_fft_path_matches_taps(name: str, scale: int) -> None:
    """A kernel beyond 41×41 (a microscope PSF) runs through the FFT; forward and adjoint equal the
    tap-by-tap correlation, and stay adjoint, on an image smaller than the kernel's reach too."""
    from napari_kernelgan.physics import operators

    rng = np.random.default_rng(scale)
    kernel = rng.random((45, 43))
    kernel /= kernel.sum()
    op = Degradation(kernel, scale, name)
    assert op.kernel.size >= operators.FFT_MIN_TAPS
    gen = torch.Generator().manual_seed(scale)
    hr_shape = (60 * scale + 1, 50 * scale)
    x = torch.rand((2, *hr_shape), dtype=torch.float64, generator=gen)
    y = torch.rand((2, *op.output_shape(hr_shape)), dtype=torch.float64, generator=gen)
    # The tap-by-tap reference (float64 on the CPU) with the FFT switched off.
    taps = operators.FFT_MIN_TAPS
    try:
        operators.FFT_MIN_TAPS = 10 ** 9
        ref_a, ref_adj = op.A(x), op.A_adjoint(y, hr_shape)
    finally:
        operators.FFT_MIN_TAPS = taps
    torch.testing.assert_close(op.A(x), ref_a, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(op.A_adjoint(y, hr_shape), ref_adj, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(op.A(x.float()).double(), ref_a, rtol=1e-4, atol=1e-5)
    assert adjointness_gap(op, x, gen) < 1e-12
