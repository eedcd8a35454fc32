"""Kernel fields: the spatially varying operator, KernelField, estimate_kernel_map and SR that follows a map."""
from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

import napari_kernelgan as nk
from napari_kernelgan.devices import torch_threads
from napari_kernelgan.errors import BadInputError, BadOptionError, Cancelled
from napari_kernelgan.fields import KernelField
from napari_kernelgan.kernel_map import TRUST_HALF, tile_boxes
from napari_kernelgan.physics import degrade, gaussian_kernel, image_psnr, kernel_l1
from napari_kernelgan.physics.grid import tent_weights
from napari_kernelgan.physics.metrics import second_moments
from napari_kernelgan.physics.varying import degrade_varying
from napari_kernelgan.synthetic import dead_leaves
from napari_kernelgan.vocabulary import Stage

NARROW = gaussian_kernel(13, 0.8)
WIDE = gaussian_kernel(13, 2.2, 1.5, 0.7)


def split_lr(hr: np.ndarray) -> np.ndarray:
    """×2 LR of ``hr`` with NARROW on the left half and WIDE on the right (blended over 8 LR px)."""
    h, w = hr.shape[0] // 2, hr.shape[1] // 2
    kernels = np.stack([NARROW, NARROW, WIDE, WIDE])[None]
    return degrade_varying(hr, kernels, [h / 2], [0.0, w / 2 - 4, w / 2 + 4, w - 1.0], 2)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    return dead_leaves((512, 512), seed=3).astype(np.float64)


@pytest.fixture(scope="module")
def split(scene: np.ndarray) -> np.ndarray:
    return np.clip(split_lr(scene), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def split_field(split: np.ndarray) -> KernelField:
    return nk.estimate_kernel_map(split, 2, tile=96, overlap=24, threads=1, seed=0)


# ----------------------------------------------------------------------------- the operator


def test_tent_weights_are_a_partition_of_unity() -> None:
    w = tent_weights([3.0, 10.0, 30.0], np.linspace(-5, 40, 200))
    np.testing.assert_allclose(w.sum(0), 1.0)
    assert np.all(w >= 0) and w[0, 0] == 1.0 and w[-1, -1] == 1.0
    with pytest.raises(BadInputError, match="increasing"):
        tent_weights([3.0, 3.0], [1.0])


def test_constant_field_operator_equals_the_uniform_degradation(scene: np.ndarray) -> None:
    crop = scene[:96, :128]
    kernels = np.broadcast_to(WIDE, (3, 4, 13, 13))
    np.testing.assert_allclose(degrade_varying(crop, kernels, [5, 20, 40], [0, 15, 30, 60], 2),
                               degrade(crop, WIDE, 2), atol=1e-5)


def test_varying_operator_blurs_each_side_with_its_kernel(scene: np.ndarray) -> None:
    lr = split_lr(scene)
    left, right = degrade(scene, NARROW, 2), degrade(scene, WIDE, 2)
    # Away from the blend band each side is exactly the uniform degradation with its kernel.
    np.testing.assert_allclose(lr[:, :100], left[:, :100], atol=1e-5)
    np.testing.assert_allclose(lr[:, 160:], right[:, 160:], atol=1e-5)


# ----------------------------------------------------------------------------- KernelField


def two_tile_field(image_shape=(64, 128)) -> KernelField:
    h, w = image_shape
    return KernelField(kernels=np.stack([NARROW, WIDE])[None], centres_y=[h / 2], centres_x=[w / 4, 3 * w / 4],
                       boxes=np.array([[[0, 0, h, w // 2], [0, w // 2, h, w]]]), confidence=np.array([[0.6, 0.4]]),
                       trust=np.ones((1, 2)), global_kernel=WIDE, image_shape=image_shape, method="test")


def test_kernel_at_interpolates_valid_kernels_between_tiles() -> None:
    field = two_tile_field()
    assert field.gaussian
    np.testing.assert_allclose(field.kernel_at(32, 32), NARROW, atol=1e-3)
    np.testing.assert_allclose(field.kernel_at(32, 96), WIDE, atol=1e-3)
    mid = field.kernel_at(32, 64)
    assert mid.min() >= 0 and mid.sum() == pytest.approx(1.0)
    det = [np.linalg.det(second_moments(k)) for k in (NARROW, mid, WIDE)]
    assert det[0] < det[1] < det[2]
    assert field.kernel_at(32, 64, scale=4).shape == (37, 37)


def test_maps_give_widths_in_input_pixels_and_orientation() -> None:
    field = KernelField.uniform(gaussian_kernel(13, 2.0, 1.0, np.pi / 6), (40, 50), confidence=0.7)
    maps = field.maps()
    assert set(maps) == {"width_major", "width_minor", "orientation", "anisotropy", "confidence"}
    assert maps["width_major"].shape == (40, 50)
    # σ 2 and 1 HR px of the ×2 kernel are 1 and 0.5 input pixels
    assert float(maps["width_major"].mean()) == pytest.approx(1.0, abs=0.03)
    assert float(maps["width_minor"].mean()) == pytest.approx(0.5, abs=0.03)
    assert float(maps["anisotropy"].mean()) == pytest.approx(0.5, abs=0.03)
    assert float(maps["confidence"].max()) == pytest.approx(0.7)
    assert float(maps["orientation"].mean()) == pytest.approx(30.0, abs=2.0)
    assert field.mosaic().shape == (13, 13) and field.support() < 13
    side = field.support()
    assert field.mosaic(side + 2, side).shape == (side + 2, side + 2)


def test_field_save_load_round_trip(tmp_path) -> None:
    field = two_tile_field()
    path = field.save(tmp_path / "field.npz")
    back = KernelField.load(path)
    for name in ("kernels", "centres_y", "centres_x", "boxes", "confidence", "trust", "kernel_confidence",
                 "global_kernel"):
        np.testing.assert_array_equal(getattr(back, name), getattr(field, name))
    assert back.image_shape == field.image_shape and back.method == "test" and back.scale == 2
    assert not list(tmp_path.glob(".*")), "a temporary file was left behind"


def test_bad_field_files_get_clear_errors(tmp_path) -> None:
    with pytest.raises(nk.KernelGANError, match="not found"):
        KernelField.load(tmp_path / "missing.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(BadInputError, match="not a readable kernel field"):
        KernelField.load(broken)
    other = tmp_path / "other.npz"
    np.savez(other, something=np.zeros(3))
    with pytest.raises(BadInputError, match="lacks"):
        KernelField.load(other)
    with pytest.raises(BadInputError, match=".npz"):
        two_tile_field().save(tmp_path / "field.tif")
    with pytest.raises(BadInputError, match="sum to 1"):
        KernelField.uniform(np.full((13, 13), 0.5), (32, 32))


# ----------------------------------------------------------------------------- estimating a map


def test_tile_boxes_cover_the_image() -> None:
    boxes, cy, cx = tile_boxes((300, 500), 128, 32)
    assert boxes[0, 0, 0] == 0 and boxes[-1, -1, 2] == 300 and boxes[-1, -1, 3] == 500
    assert np.all(boxes[..., 2] - boxes[..., 0] == 128)
    assert np.all(np.diff(cx) <= 96) and np.all(np.diff(cy) <= 96)
    with pytest.raises(BadOptionError, match="tile"):
        tile_boxes((300, 500), 16, 4)


def test_two_kernel_image_gives_each_side_its_kernel(split_field: KernelField, split: np.ndarray) -> None:
    w = split.shape[1]
    checked = 0
    for i in range(split_field.grid[0]):
        for j in range(split_field.grid[1]):
            y0, x0, y1, x1 = split_field.boxes[i, j]
            if split_field.confidence[i, j] < TRUST_HALF or (x0 < w / 2 + 4 and x1 > w / 2 - 4):
                continue
            k = split_field.kernels[i, j]
            own, other = (NARROW, WIDE) if x1 <= w / 2 else (WIDE, NARROW)
            assert kernel_l1(k, own) < kernel_l1(k, other), f"tile {(i, j)} took the other side's kernel"
            checked += 1
    assert checked >= 6
    left = split_field.maps()["width_major"][:, : w // 4].mean()
    right = split_field.maps()["width_major"][:, 3 * w // 4:].mean()
    assert right > 1.5 * left


def test_flat_image_has_low_confidence_and_falls_back_to_the_global_kernel() -> None:
    rng = np.random.default_rng(0)
    flat = (0.5 + 0.01 * rng.standard_normal((200, 200))).astype(np.float32)
    field = nk.estimate_kernel_map(flat, 2, tile=96, overlap=24, threads=1)
    assert field.confidence.max() < TRUST_HALF
    for k in field.kernels.reshape(-1, 13, 13):
        assert kernel_l1(k, field.global_kernel) < 0.05


def test_flat_half_borrows_from_the_textured_half(scene: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    lr = degrade(scene, WIDE, 2)
    lr[:, 128:] = 0.5 + 0.005 * rng.standard_normal((256, 128))
    field = nk.estimate_kernel_map(lr.astype(np.float32), 2, estimator="kernelnet", tile=64, overlap=16, threads=1)
    flat_tiles = field.boxes[..., 1] >= 136
    textured = field.boxes[..., 3] <= 120
    assert field.trust[flat_tiles].max() == 0.0 < field.trust[textured].min()
    assert field.confidence[flat_tiles].max() == 0.0
    # what the flat tiles hold is what their textured neighbours measured, not noise
    nearest = field.kernels[:, 2].mean(0)
    for k in field.kernels[flat_tiles]:
        assert kernel_l1(k, nearest) < 0.1


def test_progress_and_cancel(split: np.ndarray) -> None:
    reports = []
    nk.estimate_kernel_map(split[:128, :128], 2, estimator="kernelnet", tile=64, overlap=16,
                           callback=reports.append)
    assert reports and reports[-1].fraction == pytest.approx(1.0)
    assert all(b.iteration >= a.iteration for a, b in zip(reports, reports[1:]))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        nk.estimate_kernel_map(split, 2, cancel=cancel)


def test_every_estimator_kind_runs_on_tiles(split: np.ndarray) -> None:
    part = split[:160, :160]
    for name in ("learned", "spots", "lines", "edges"):
        field = nk.estimate_kernel_map(part, 2, estimator=name, tile=80, overlap=16, threads=1)
        assert field.kernels.shape[:2] == field.grid == (3, 3)
        assert np.allclose(field.kernels.sum((-2, -1)), 1.0)
        assert field.method == name
        if name in ("learned", "edges"):  # they read this textured image (edges gives no confidence: neutral)
            assert field.trust.min() > 0


# ----------------------------------------------------------------------------- SR with a map


def test_constant_field_sr_equals_uniform_sr(split: np.ndarray) -> None:
    lr = split[:96, :96]
    field = KernelField.uniform(WIDE, lr.shape, confidence=0.5)
    a = nk.super_resolve(lr, field, 2, threads=1).image
    b = nk.super_resolve(lr, WIDE, 2, threads=1, safe=True, confidence=0.5).image
    np.testing.assert_array_equal(a, b)


def test_region_blending_reproduces_uniform_sr_without_seams(split: np.ndarray) -> None:
    from napari_kernelgan.api import drive
    from napari_kernelgan.registry import SR_METHODS
    from napari_kernelgan.sr._field import iter_field_sr

    lr = split[:128, :160]
    same = np.broadcast_to(WIDE, (2, 3, 13, 13))
    field = KernelField(kernels=same, centres_y=[32, 96], centres_x=[27, 80, 133],
                        boxes=np.zeros((2, 3, 4), int), confidence=np.ones((2, 3)), trust=np.ones((2, 3)),
                        global_kernel=WIDE, image_shape=lr.shape)
    spec = SR_METHODS.get("closed-form")
    out, record = drive(iter_field_sr(spec, lr[None, None], field, 2, device=torch.device("cpu"), seed=0,
                                      options=spec.resolve({}), given=set(), safe=False))
    uniform = nk.super_resolve(lr, WIDE, 2, threads=1, safe=False).image
    assert record["regions"] == 15  # the 2×3 tiles and a region between each two
    assert image_psnr(np.clip(out[0, 0], 0, 1) * 255, uniform * 255, shave=4) > 45.0


def test_map_sr_beats_uniform_sr_on_a_two_kernel_image(scene: np.ndarray, split: np.ndarray,
                                                       split_field: KernelField) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uniform = nk.super_resolve(split, nk.estimate_kernel(split, 2, threads=1), 2, threads=1).image
        varying = nk.super_resolve(split, split_field, 2, threads=1)
    gain = image_psnr(varying.image * 255, scene * 255, shave=2) - image_psnr(uniform * 255, scene * 255, shave=2)
    assert gain > 0.3, f"map SR gains only {gain:+.2f} dB over uniform SR"
    assert varying.options["kernel_map"] == f"{split_field.grid[0]}×{split_field.grid[1]}"


def test_a_map_for_another_image_is_refused(split: np.ndarray, split_field: KernelField) -> None:
    with pytest.raises(BadInputError, match="kernel map was made for an image of 256×256"):
        nk.super_resolve(split[:100], split_field, 2)


# ----------------------------------------------------------------------------- command line


def test_cli_writes_a_kernel_map_and_super_resolves_with_it(split: np.ndarray, tmp_path, capsys) -> None:
    import tifffile

    from napari_kernelgan.cli import main
    from napari_kernelgan.io import write_image

    image = tmp_path / "split.tif"
    write_image(image, (split[:160, :160] * 65535).astype(np.uint16))
    before = image.read_bytes()
    out = tmp_path / "k"
    assert main(["estimate", str(image), "--kernel-map", "--tile", "64", "-q", "--out", str(out),
                 "--estimator", "kernelnet"]) == 0
    text = capsys.readouterr().out
    assert "kernel map 4×4 tiles" in text  # 64-pixel tiles sharing 32 with each neighbour
    field = KernelField.load(out / "split_kernel_map.npz")
    assert field.grid == (4, 4) and field.options["tile"] == 64
    pages = tifffile.imread(out / "split_kernel_map.tif")
    assert pages.shape == (5, 160, 160)
    np.testing.assert_allclose(pages[0], field.maps()["width_major"], rtol=1e-6)
    sr = tmp_path / "sr.tif"
    assert main(["sr", str(image), "--kernel-map", str(out / "split_kernel_map.npz"), "-o", str(sr)]) == 0
    assert "regions of the kernel map" in capsys.readouterr().out
    result = tifffile.imread(sr)
    assert result.shape == (320, 320) and result.dtype == np.uint16
    assert image.read_bytes() == before
    # a map and a kernel, or neither: one clear line each
    assert main(["sr", str(image), "-o", str(sr)]) == 1
    assert "give either --kernel" in capsys.readouterr().err
    assert main(["sr", str(image), "--kernel-map", str(out / "split_kernel.json"), "-o", str(sr)]) == 1
    assert "not a readable kernel field" in capsys.readouterr().err


def test_usrnet_follows_a_map(scene: np.ndarray, split: np.ndarray) -> None:
    from pathlib import Path

    weights = Path(__file__).resolve().parents[2] / "shared" / "weights" / "usrnet_tiny.pth"
    if not weights.is_file():
        pytest.skip(f"USRNet weights not found at {weights} (third-party file, not shipped)")
    lr, hr = split[64:192, 64:192], scene[128:384, 128:384]
    field = KernelField(kernels=np.stack([NARROW, WIDE])[None], centres_y=[63.5], centres_x=[32.0, 96.0],
                        boxes=np.zeros((1, 2, 4), int), confidence=np.ones((1, 2)), trust=np.ones((1, 2)),
                        global_kernel=WIDE, image_shape=lr.shape)
    varying = nk.super_resolve(lr, field, 2, sr_method="usrnet", weights=str(weights), threads=2, safe=False)
    bicubic = nk.super_resolve(lr, WIDE, 2, sr_method="bicubic")
    assert varying.options["regions"] == 3 and varying.image.shape == (256, 256)
    assert image_psnr(varying.image * 255, hr * 255, shave=2) > image_psnr(bicubic.image * 255, hr * 255, shave=2) + 1


def test_meta_adapts_all_tiles_at_once_as_it_adapts_one_image(scene: np.ndarray) -> None:
    from napari_kernelgan.api import drive
    from napari_kernelgan.registry import ESTIMATORS

    lr = degrade(scene[:256, :256], WIDE, 2).astype(np.float32)
    spec = ESTIMATORS.get("meta")
    assert spec.tiles is not None
    opts = spec.resolve({"iterations": 6, "dmap": False})
    cpu = torch.device("cpu")
    whole = drive(spec.fn(lr[None, None], scale=2, device=cpu, seed=3, report_every=50, **opts))
    one = drive(spec.tiles(lr[None, None], np.array([[0, 0, 128, 128]]), scale=2, device=cpu, seed=3,
                           report_every=50, **opts))
    # one tile covering the image: the same crops, noise and steps as the whole-image adaptation
    np.testing.assert_allclose(one[0].kernel, whole.kernel, atol=1e-4)
    field = nk.estimate_kernel_map(lr, 2, estimator="meta", tile=64, overlap=0, iterations=4, dmap=False)
    assert field.grid == (2, 2) and field.method == "meta"
    assert np.all(field.confidence == 0.5)  # no confidence from MetaKernelGAN: neutral


def _kernelgan_tiles(frames: np.ndarray, boxes: list[list[int]], seed: int = 3, callback=None,
                     **options) -> list:
    from napari_kernelgan.api import drive
    from napari_kernelgan.registry import ESTIMATORS

    spec = ESTIMATORS.get("kernelgan")
    assert spec.tiles is not None
    return drive(spec.tiles(frames[None, None], np.array(boxes), scale=2, device=torch.device("cpu"), seed=seed,
                            report_every=50, **spec.resolve({"preset": "fast", **options})), callback)


def _kernelgan_whole(frames: np.ndarray, seed: int = 3, **options) -> np.ndarray:
    est = nk.estimate_kernel(frames, 2, estimator="kernelgan", preset="fast", seed=seed, threads=1, **options)
    return est.kernel


def test_kernelgan_fits_all_tiles_at_once_as_it_fits_each_alone(scene: np.ndarray) -> None:
    lr = degrade(scene[:256, :256], WIDE, 2).astype(np.float32)
    with torch_threads(1):
        # one tile covering the image: the same anchor, networks, crops, noise, steps and early stop
        one = _kernelgan_tiles(lr, [[0, 0, 128, 128]], iterations=6)
        np.testing.assert_allclose(one[0].kernel, _kernelgan_whole(lr, iterations=6), atol=1e-5)
        # several tiles: each with its own anchor and crops, as its own fit of the tile's pixels. G's
        # prefit onto the anchor is left out here: its Adam steps near the optimum turn the rounding of
        # grouped against single convolutions into differences of 1e-3, as they would any rounding.
        boxes = [[0, 0, 64, 64], [0, 64, 64, 128], [64, 32, 128, 96]]
        tiles = _kernelgan_tiles(lr, boxes, iterations=6, prefit_steps=0)
        for (y0, x0, y1, x1), tile in zip(boxes, tiles):
            alone = _kernelgan_whole(lr[y0:y1, x0:x1], iterations=6, prefit_steps=0)
            np.testing.assert_allclose(tile.kernel, alone, atol=3e-4)
            assert tile.confidence is None  # KernelGAN gives none: neutral in the map


def test_kernelgan_tile_that_settles_keeps_its_kernel_while_the_others_train(monkeypatch, scene: np.ndarray) -> None:
    from napari_kernelgan.estimators._gan import fit as tiles_module

    lr = degrade(scene[:256, :256], WIDE, 2).astype(np.float32)
    boxes = [[0, 0, 64, 64], [64, 64, 128, 128]]
    fixed = {"prefit_steps": 0, "lr_step": 100, "anchor_decay_every": 100}  # one schedule for every length

    class FirstSettlesAtStep3(tiles_module.EarlyStop):
        def due(self, it: int) -> bool:
            return it == 2

        def settled(self, raw: np.ndarray) -> np.ndarray:
            return np.arange(len(raw)) == 0

    reports = []
    with torch_threads(1):
        stopped_at_3 = _kernelgan_tiles(lr, boxes, iterations=3, early_stop=False, **fixed)
        full = _kernelgan_tiles(lr, boxes, iterations=8, early_stop=False, **fixed)
        monkeypatch.setattr(tiles_module, "EarlyStop", FirstSettlesAtStep3)
        frozen = _kernelgan_tiles(lr, boxes, iterations=8, callback=reports.append, **fixed)
    # the settled tile holds the kernel it had when it stopped, untouched by the steps after it (no
    # optimiser momentum); the other kept training to the end, as in the run where none stops
    np.testing.assert_array_equal(frozen[0].kernel, stopped_at_3[0].kernel)
    assert np.abs(frozen[0].kernel - full[0].kernel).sum() > 1e-3
    assert np.abs(frozen[1].kernel - stopped_at_3[1].kernel).sum() > 1e-3
    np.testing.assert_allclose(frozen[1].kernel, full[1].kernel, atol=1e-4)
    steps = [p.iteration for p in reports if p.stage == Stage.MAP]
    assert np.array_equal(np.diff(steps), np.ones(7)) and reports[-1].message.endswith("(1 settled)")
    with pytest.raises(Cancelled):  # a report every step: a caller stops it at the next one
        _kernelgan_tiles(lr, boxes, iterations=8, callback=lambda p: p.iteration < 2, **fixed)


def test_kernelgan_tiles_of_a_two_kernel_image_take_their_own_side(split: np.ndarray) -> None:
    with torch_threads(1):
        left, right = _kernelgan_tiles(split, [[64, 0, 160, 96], [64, 160, 160, 256]], iterations=20)
    assert kernel_l1(left.kernel, NARROW) < kernel_l1(left.kernel, WIDE)
    assert kernel_l1(right.kernel, WIDE) < kernel_l1(right.kernel, NARROW)


def test_tile_passes_refuse_the_options_their_estimators_refuse(split: np.ndarray) -> None:
    from napari_kernelgan.api import drive
    from napari_kernelgan.registry import ESTIMATORS

    boxes = np.array([[0, 0, 128, 128], [0, 128, 128, 256]])
    for name, bad in (("spots", {"isolation": 0.5}), ("lines", {"spacing": 0.5}), ("auto", {"size": 12})):
        spec = ESTIMATORS.get(name)
        with pytest.raises(BadOptionError, match=next(iter(bad))):
            drive(spec.tiles(split[None, None], boxes, scale=2, device=torch.device("cpu"), seed=0, report_every=50,
                             **spec.resolve(bad)))


def _tile_by_tile(monkeypatch, name: str) -> None:
    """Make kernel maps of estimator ``name`` run it on each tile in turn, as if it had no tile pass."""
    import dataclasses

    from napari_kernelgan.registry import ESTIMATORS

    spec = ESTIMATORS.get(name)
    assert spec.tiles is not None
    monkeypatch.setitem(ESTIMATORS._specs, name, dataclasses.replace(spec, tiles=None))


def test_edges_measures_all_tiles_at_once_as_it_measures_each_crop(monkeypatch, split: np.ndarray) -> None:
    image = split.copy()
    image[:100, 156:] = 0.5  # a flat corner: a tile there finds no edge, both ways
    kwargs = {"estimator": "edges", "tile": 96, "overlap": 24, "threads": 1, "seed": 4}
    one = nk.estimate_kernel_map(image, 2, **kwargs)
    _tile_by_tile(monkeypatch, "edges")
    alone = nk.estimate_kernel_map(image, 2, **kwargs)
    # the same points, thresholds and fits per tile: the maps agree to the bit
    for name in ("kernels", "confidence", "trust", "kernel_confidence"):
        np.testing.assert_array_equal(getattr(one, name), getattr(alone, name))
    assert one.extras["unreadable_tiles"] == alone.extras["unreadable_tiles"] != {}
    w = image.shape[1]
    for i, j in zip(*np.nonzero(one.confidence > 0)):
        y0, x0, y1, x1 = one.boxes[i, j]
        if x1 <= w / 2 - 4 or x0 >= w / 2 + 4:
            own, other = (NARROW, WIDE) if x1 <= w / 2 else (WIDE, NARROW)
            assert kernel_l1(one.kernels[i, j], own) < kernel_l1(one.kernels[i, j], other)


def test_edges_tiles_of_a_stack_sample_their_points_as_each_crop_does(monkeypatch, split: np.ndarray) -> None:
    from napari_kernelgan.api import drive
    from napari_kernelgan.estimators import edges as edges_module
    from napari_kernelgan.registry import ESTIMATORS
    from napari_kernelgan.tiling import iter_tile_estimates

    # three colour frames, and few enough points allowed that every tile draws a random choice
    part = split[:160, :160]
    frames = np.stack([np.stack([part, part ** 2, 1 - part]), np.stack([part.T] * 3),
                       np.stack([part[::-1], part, part[:, ::-1]])]).astype(np.float32)
    monkeypatch.setattr(edges_module, "MAX_POINTS", 40)
    boxes = tile_boxes(part.shape, 80, 16)[0].reshape(-1, 4)
    spec = ESTIMATORS.get("edges")
    opts = spec.resolve({"quantile": 0.3})
    run = {"scale": 2, "device": torch.device("cpu"), "seed": 7, "report_every": 50, "options": opts}
    one = drive(iter_tile_estimates(spec, frames, boxes, **run))
    _tile_by_tile(monkeypatch, "edges")
    alone = drive(iter_tile_estimates(ESTIMATORS.get("edges"), frames, boxes, **run))
    assert len(one) == len(boxes) == 9
    for a, b in zip(one, alone):
        np.testing.assert_array_equal(a.kernel, b.kernel)
        np.testing.assert_array_equal(a.covariance, b.covariance)
        assert a.confidence is b.confidence is None


def _slow_spec(log: list[str], steps: int = 10):
    """A spec whose estimator takes ``steps`` reports per tile, logging each step and its own close."""
    import time

    from napari_kernelgan.registry import MethodSpec
    from napari_kernelgan.types import KernelEstimate, Progress

    def slow(frames, *, scale, device, seed, report_every):
        try:
            for i in range(steps):
                time.sleep(0.005)
                log.append("step")
                yield Progress(i + 1, steps, 0.0, message=f"step {i + 1}")
            return KernelEstimate(kernel=NARROW, dmap=None, loss_history={}, iterations=steps, elapsed=0.0,
                                  device="cpu", seed=seed)
        finally:
            log.append("closed")

    return MethodSpec(name="slow", kind="estimator", fn=slow)


def test_tile_by_tile_progress_moves_inside_each_tile() -> None:
    from napari_kernelgan.tiling import iter_tile_estimates

    log: list[str] = []
    gen = iter_tile_estimates(_slow_spec(log), np.zeros((1, 1, 96, 192), np.float32),
                              tile_boxes((96, 192), 96, 0)[0], scale=2, device="cpu", seed=0, report_every=1,
                              options={})
    fractions = []
    try:
        while True:
            fractions.append(next(gen).fraction)
    except StopIteration as stop:
        results = stop.value
    assert len(results) == 2 and all(r.kernel is not None for r in results)
    # 10 steps per tile, each a tenth of the tile's half of the bar, never going back
    inside_first = [f for f in fractions if 0 < f < 0.5]
    assert inside_first == pytest.approx([0.05 * i for i in range(1, 10)])
    assert all(b >= a for a, b in zip(fractions, fractions[1:])) and fractions[-1] == 1.0
    assert log.count("step") == 20


def test_closing_a_tile_by_tile_run_stops_inside_the_tile() -> None:
    from napari_kernelgan.api import drive
    from napari_kernelgan.tiling import iter_tile_estimates

    log: list[str] = []
    boxes = tile_boxes((96, 288), 96, 0)[0]
    run = {"scale": 2, "device": "cpu", "seed": 0, "report_every": 1, "options": {}}
    gen = iter_tile_estimates(_slow_spec(log, steps=1000), np.zeros((1, 1, 96, 288), np.float32), boxes, **run)
    for p in gen:
        if p.fraction > 0.1:  # well inside the first of three tiles
            break
    gen.close()
    # the tile's own generator was closed at once, after a few of its 1000 steps, and no other tile started
    assert log[-1] == "closed" and log.count("closed") == 1
    assert 300 < log.count("step") < 310
    # the same through drive's cancel
    log.clear()
    with pytest.raises(Cancelled):
        drive(iter_tile_estimates(_slow_spec(log, steps=1000), np.zeros((1, 1, 96, 288), np.float32), boxes, **run),
              callback=lambda p: p.fraction < 0.2)
    assert log[-1] == "closed" and log.count("closed") == 1 and log.count("step") < 1000
