"""KernelGAN's one engine: no import circle, one image as the one-tile fit, a confidence that means
something, progress that moves in every stage."""
from __future__ import annotations

import ast
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

import napari_kernelgan as nk
from napari_kernelgan.api import drive
from napari_kernelgan.devices import torch_threads
from napari_kernelgan.estimators._gan import progress as gan_progress
from napari_kernelgan.estimators._gan.confidence import References, confidence_from, kernel_confidence, spread_from
from napari_kernelgan.physics import degrade, gaussian_kernel, kernel_l1
from napari_kernelgan.physics.metrics import second_moments
from napari_kernelgan.registry import ESTIMATORS
from napari_kernelgan.vocabulary import Stage

ESTIMATORS_DIR = Path(nk.__file__).parent / "estimators"
TRUE_K = gaussian_kernel(13, 1.9, 0.9, 0.7)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def blurred() -> np.ndarray:
    hr = data.camera().astype(np.float64)
    return np.clip(np.round(degrade(hr, TRUE_K, 2)), 0, 255).astype(np.uint8)  # 256×256


def _imports(path: Path, package: list[str]) -> set[str]:
    """Every module of the package ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_estimators_import_graph_has_no_cycle_and_short_modules() -> None:
    root = ESTIMATORS_DIR.parent.parent
    modules: dict[str, tuple[Path, list[str]]] = {}
    for path in ESTIMATORS_DIR.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = (path, parts[:-1])
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 600, path
    graph = {name: {m for m in _imports(path, pkg) if m in modules and m != name}
             for name, (path, pkg) in modules.items()}
    assert "napari_kernelgan.estimators._gan.fit" in graph["napari_kernelgan.estimators.kernelgan"]
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, f"import circle: {' -> '.join(trail + [node, nxt])}"
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


@pytest.mark.parametrize("preset", ["paper", "fast"])
def test_one_image_is_the_one_tile_fit_to_the_bit(blurred: np.ndarray, preset: str) -> None:
    frames = (blurred[:96, :96].astype(np.float32) / 255)[None, None]
    spec = ESTIMATORS.get("kernelgan")
    opts = spec.resolve({"preset": preset, "iterations": 12})
    with torch_threads(1):
        whole = drive(spec.fn(frames, scale=2, device=CPU, seed=2, report_every=50, **opts))
        tile = drive(spec.tiles(frames, np.array([[0, 0, 96, 96]]), scale=2, device=CPU, seed=2, report_every=50,
                                **opts))[0]
    # paper's bicubic anchor lets the GAN magnify any last-bit difference within a few steps
    np.testing.assert_array_equal(tile.kernel, whole.kernel)


def test_confidence_formula_is_a_probability_that_falls_with_disagreement() -> None:
    kernel = gaussian_kernel(13, 1.2, 1.2, 0.0)
    close = References({"learned": second_moments(gaussian_kernel(13, 1.3, 1.2, 0.0))}, own=0.9)
    far = References({"learned": second_moments(gaussian_kernel(13, 2.6, 2.4, 0.0))}, own=0.9)
    assert spread_from(second_moments(kernel), close) < 0.2 < 1.0 < spread_from(second_moments(kernel), far)
    c_close, why = kernel_confidence(kernel, close)
    c_far, _ = kernel_confidence(kernel, far)
    assert 0 <= c_far < 0.3 < c_close <= 1 and why["references"] == "learned"
    assert confidence_from(50.0, 1.0, 1.0, 1.0) < 1e-20
    # the reference's own word lowers the confidence only below neutral (an image that hides its blur)
    assert confidence_from(0.1, 0.9, 3.0, 4.0) == confidence_from(0.1, 0.5, 3.0, 4.0)
    assert confidence_from(0.1, 0.1, 3.0, 4.0) == pytest.approx(0.2 * confidence_from(0.1, 0.5, 3.0, 4.0))
    # nothing to check the kernel against: half the reference's own word, never full trust
    assert kernel_confidence(kernel, References({}, own=0.5))[0] == pytest.approx(0.25)


def test_kernelgan_confidence_is_lower_where_its_kernel_is_wrong(blurred: np.ndarray) -> None:
    noise = np.random.default_rng(0).normal(128, 40, (128, 128)).clip(0, 255).astype(np.uint8)
    with torch_threads(1):
        good = nk.estimate_kernel(blurred[:128, :128], 2, estimator="kernelgan", preset="fast", iterations=10, seed=0)
        bad = nk.estimate_kernel(noise, 2, estimator="kernelgan", preset="paper", iterations=10, seed=0)
    assert kernel_l1(good.kernel, TRUE_K) < 0.6
    for est in (good, bad):
        assert 0.0 <= est.confidence <= 1.0 and np.isfinite(est.extras["spread"])
    # pure noise has no blur to measure: nothing agrees, and the learned network says so itself
    assert bad.confidence < 0.3 < good.confidence


def test_meta_gives_a_confidence(blurred: np.ndarray) -> None:
    est = nk.estimate_kernel(blurred[:128, :128], 2, estimator="meta", iterations=10, seed=0, threads=1, dmap=False)
    assert 0.0 <= est.confidence <= 1.0 and est.extras["references"] == "learned"


def _timed(reports: list[tuple[float, object]]):
    def callback(p) -> bool:
        reports.append((time.perf_counter(), p))
        return True
    return callback


def test_every_kernelgan_stage_moves_from_its_start(monkeypatch, blurred: np.ndarray) -> None:
    # the edge measurement takes a second on a large image; here a slow stand-in makes it one on any machine
    from napari_kernelgan.estimators import kernelgan as module

    measure = module.measure_anchor

    def slow(*args, **kwargs):
        time.sleep(1.0)
        return measure(*args, **kwargs)

    monkeypatch.setattr(module, "measure_anchor", slow)
    reports: list[tuple[float, object]] = []
    with torch_threads(1):
        nk.estimate_kernel(blurred[:128, :128], 2, estimator="kernelgan", preset="fast", iterations=20, seed=0,
                           callback=_timed(reports))
    fractions = [p.fraction for _, p in reports]
    assert all(b >= a for a, b in zip(fractions, fractions[1:])) and fractions[-1] == pytest.approx(1.0)
    anchor = [(t, p) for t, p in reports if p.stage == Stage.ANCHOR]
    start, end = anchor[0][0], anchor[-1][0]
    moving = [t for t, p in anchor if p.fraction > 0]
    # the bar leaves 0 within the first half second of the anchor stage, long before it ends
    assert moving and moving[0] - start < 0.6 and moving[0] < start + 0.5 * (end - start)
    measuring = [p.fraction for _, p in anchor if p.message == "measuring the sharpest edges"]
    assert len(measuring) >= 4 and measuring[-1] > measuring[1] > 0     # moves while the edges are measured
    for stage in (Stage.ESTIMATE, Stage.DMAP):
        own = [p.fraction for _, p in reports if p.stage == stage]
        assert own[-1] > own[0], stage


def test_kernelgan_tile_pass_and_meta_move_through_every_stage(blurred: np.ndarray) -> None:
    frames = (blurred[:128, :128].astype(np.float32) / 255)[None, None]
    spec = ESTIMATORS.get("kernelgan")
    tiles: list = []
    with torch_threads(1):
        drive(spec.tiles(frames, np.array([[0, 0, 64, 64], [64, 64, 128, 128]]), scale=2, device=CPU, seed=0,
                         report_every=50, **spec.resolve({"preset": "fast", "iterations": 6})), tiles.append)
        meta: list = []
        nk.estimate_kernel(blurred[:128, :128], 2, estimator="meta", iterations=6, seed=0, callback=meta.append)
    for reports in (tiles, meta):
        fractions = [p.fraction for p in reports]
        assert all(b >= a for a, b in zip(fractions, fractions[1:]))
    prefit = [p.fraction for p in tiles if p.stage == Stage.ANCHOR and "fitting" in p.message]
    assert len(prefit) > 10 and prefit[-1] > prefit[0] > 0
    steps = [p.fraction for p in meta if p.stage == Stage.ESTIMATE]
    assert steps[0] > 0 and [p.fraction for p in meta if p.stage == Stage.DMAP][-1] == pytest.approx(1.0)


def test_in_background_reports_while_it_waits_and_returns_or_raises() -> None:
    def slow() -> str:
        time.sleep(0.5)
        return "done"

    gen = gan_progress.in_background(slow, units=10, poll=0.05)
    seen = []
    while True:
        try:
            seen.append(next(gen))
        except StopIteration as stop:
            assert stop.value == "done"
            break
    assert len(seen) >= 5 and seen == sorted(seen) and 0 < seen[-1] < 10

    def fails() -> None:
        raise nk.BadInputError("no edges")

    with pytest.raises(nk.BadInputError, match="no edges"):
        list(gan_progress.in_background(fails, units=3))
