"""The widgets' Qt-free models, without a display: run driving and throttling, ETA, status text,
input selection, kernels for a scale, error messages, option forms, the rendering check."""
from __future__ import annotations

import math
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from napari_kernelgan._qt import models
from napari_kernelgan._qt.models import (
    LATEST,
    FormField,
    Report,
    RunRecord,
    RunState,
    error_line,
    field_label,
    form_fields,
    form_values,
    format_seconds,
    input_array,
    input_notes,
    kernel_is_estimate,
    kernels_for,
    latest_kernels,
    merge_reports,
    option_values,
    parse_threads,
    progress_text,
    run_job,
    slice_in_view,
    software_rendering,
    unavailable_text,
    use_activity_progress,
    where_text,
)
from napari_kernelgan.errors import (
    BadInputError,
    BadOptionError,
    Cancelled,
    MethodUnavailableError,
    WeightsMissingError,
)
from napari_kernelgan.optics_hints import HintParam
from napari_kernelgan.physics import gaussian_kernel
from napari_kernelgan.registry import ESTIMATORS, SR_METHODS
from napari_kernelgan.types import EtaTracker, Progress
from napari_kernelgan.vocabulary import LayerRole, Stage


class Clock:
    """A clock the test advances by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def drain(gen):
    """All reports of a run_job generator and its outcome."""
    out = []
    while True:
        try:
            out.append(next(gen))
        except StopIteration as stop:
            return out, stop.value


def test_import_loads_no_gui_or_torch():
    code = ("import sys, napari_kernelgan._qt, napari_kernelgan._qt.models\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'magicgui', 'qtpy', 'PyQt5', "
            "'PyQt6', 'PySide2', 'PySide6', 'superqt', 'vispy', 'torch'))\nprint(bad)\nsys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_run_job_throttles_a_flood_and_keeps_each_stage_and_the_latest_kernel():
    clock = Clock()
    k = gaussian_kernel(13, 1.5)

    def job():
        yield Progress(0, 1, 0.0, stage=Stage.PREPARE, message="checking")
        for i in range(1, 10001):
            clock.t += 0.0001  # 10 000 reports a second
            yield Progress(i, 10000, clock.t, stage=Stage.ESTIMATE, kernel=k if i == 4990 else None)
        clock.t += 0.01
        yield Progress(10000, 10000, clock.t, stage=Stage.DMAP)
        return "result"

    reports, outcome = drain(run_job(job, threading.Event(), interval=0.2, clock=clock))
    assert outcome.state == RunState.DONE and outcome.value == "result"
    stages = [str(r.progress.stage) for r in reports]
    assert stages[0] == "prepare" and stages[1] == "estimate" and stages[-1] == "d-map"
    assert len(reports) <= 1 + 1 + 1 / 0.2 + 1 + 1  # each stage's first + one per interval
    # The kernel seen between two sent reports rides on the next one.
    assert sum(r.progress.kernel is not None for r in reports) == 1


def test_run_job_cancels_at_the_next_report_and_closes_the_job():
    cancel = threading.Event()
    closed = []

    def job():
        try:
            for i in range(1000):
                if i == 3:
                    cancel.set()
                yield Progress(i, 1000, 0.0, stage=Stage.ANCHOR)
        finally:
            closed.append(i)

    reports, outcome = drain(run_job(job, cancel, interval=0.0))
    assert outcome.state == RunState.CANCELLED and closed == [3] and len(reports) == 4


@pytest.mark.parametrize("exc, state", [(BadInputError("too small"), RunState.FAILED),
                                        (KeyError("bug"), RunState.FAILED),
                                        (Cancelled("stop"), RunState.CANCELLED)])
def test_run_job_returns_errors(exc, state):
    def job():
        yield Progress(0, 1, 0.0, stage=Stage.PREPARE)
        raise exc

    reports, outcome = drain(run_job(job, threading.Event()))
    assert outcome.state == state and len(reports) == 1
    if state == RunState.FAILED:
        assert outcome.error is exc


def test_eta_comes_from_the_stage_loop_rate_not_the_setup():
    """30 s of anchoring, then 0.1 s steps: once the loop has run long enough to have a rate, the ETA is the
    loop's (~8 s), never ~50 min."""
    clock = Clock()

    def job():
        for i in range(30):
            clock.t += 1.0
            yield Progress(0, 100, clock.t, stage=Stage.ANCHOR, message=f"fitting {i}")
        for i in range(1, 101):
            clock.t += 0.1
            yield Progress(i, 100, clock.t, stage=Stage.ESTIMATE)

    reports, _ = drain(run_job(job, threading.Event(), interval=0.0, clock=clock))
    anchor = [r for r in reports if r.progress.stage == Stage.ANCHOR]
    estimate = [r for r in reports if r.progress.stage == Stage.ESTIMATE]
    assert all(math.isnan(r.eta) for r in anchor)
    settle = int(round(EtaTracker.SETTLE_S / 0.1))
    assert all(math.isnan(r.eta) for r in estimate[:settle])  # unknown until the loop has a rate
    first = estimate[settle]
    assert first.eta == pytest.approx(0.1 * (100 - first.progress.iteration), rel=1e-6)
    assert "ETA …" in progress_text(estimate[0], 30.1) and "ETA 8 s" in progress_text(first, 32.1)
    # The bar follows time: 30 s of the 40 s run were anchoring, so it is far past the loop's 21 %.
    assert first.bar == pytest.approx(32.1 / (32.1 + first.eta), rel=1e-6)


def _auto_stack_job(clock, members):
    """What a whole-stack ``auto`` estimate reports: reading the stack, then each member estimator over 24
    slices, each member one equal share of the bar (as ``auto`` relays them) but very unequal in time."""
    def job():
        clock.t += 0.35
        yield Progress(0, 1, clock.t, stage=Stage.PREPARE, message="reading the image")
        total = 100 * len(members)
        for m, seconds in enumerate(members):
            yield Progress(100 * m, total, clock.t, stage=Stage.ESTIMATE, message=f"auto: running member {m}")
            for frame in range(1, 25):
                clock.t += seconds / 24
                yield Progress(100 * m + round(100 * frame / 24), total, clock.t, stage=Stage.ESTIMATE,
                               message=f"auto: member {m}: frame {frame}")
        return "done"

    return job


@pytest.mark.parametrize("members", [
    (0.2, 0.4, 4.0, 6.0),          # learned, kernelnet, spots, lines on a 24-slice stack (measured)
    (0.3, 0.5, 8.0, 5.0, 6.0),      # the five default members of a 20 s run
    (0.3, 0.6, 6.0, 9.0),          # the same on a 36-slice stack
])
def test_a_whole_stack_estimate_has_an_honest_eta_and_a_bar_in_proportion_to_time(members):
    clock = Clock()
    reports, outcome = drain(run_job(_auto_stack_job(clock, members), threading.Event(), clock=clock))
    assert outcome.value == "done"
    end = clock.t
    times = np.array([r.progress.elapsed for r in reports])
    # Nothing is extrapolated from the first instant members: "…" for the first second or more.
    early = [r for r, t in zip(reports, times) if t < 1.0]
    assert early and all(math.isnan(r.eta) for r in early) and all(r.bar <= 0.1 for r in early)
    for share in (0.25, 0.5, 0.75):
        r = reports[int(np.argmin(np.abs(times - share * end)))]
        truth = end - r.progress.elapsed
        assert truth / 2 <= r.eta <= 2 * truth, (share, r.eta, truth)
        assert abs(r.bar - r.progress.elapsed / end) <= 0.25, (share, r.bar)
    bars = [r.bar for r in reports]
    assert bars == sorted(bars)  # never goes back
    # Smooth: between two reports 0.2 s apart the ETA never jumps by more than a few seconds.
    known = [(t, r.eta) for t, r in zip(times, reports) if not math.isnan(r.eta)]
    assert max(abs(b - a) - (tb - ta) for (ta, a), (tb, b) in zip(known, known[1:])) < 0.35 * end


def test_progress_text_and_format_seconds():
    assert format_seconds(math.nan) == "…" and format_seconds(0.42) == "0.4 s"
    assert format_seconds(42.4) == "42 s" and format_seconds(185) == "3 min 05 s"
    prep = Report(Progress(0, 1, 0.0, stage=Stage.PREPARE, message="checking the image"))
    assert progress_text(prep, 0.2) == "prepare: checking the image · 0.2 s elapsed · ETA …"
    anchor = Report(Progress(0, 300, 2.0, stage=Stage.ANCHOR, message="fitting G to the anchor, 25/300"))
    assert progress_text(anchor, 2.0).startswith("anchor: fitting G to the anchor, 25/300 · 2 s elapsed")
    step = Report(Progress(40, 100, 5.0, stage=Stage.ESTIMATE), eta=8.0)
    assert progress_text(step, 5.0) == "estimate 40/100 · 5 s elapsed · ETA 8 s"
    dmap = Report(Progress(100, 100, 9.0, stage=Stage.DMAP, message="computing the discriminator map"))
    assert progress_text(dmap, 9.0).endswith("ETA finishing")


def test_merge_reports_keeps_the_kernel():
    k = np.ones((3, 3)) / 9
    older = Report(Progress(1, 10, 0.0, kernel=k))
    newer = Report(Progress(2, 10, 0.1), eta=3.0)
    merged = merge_reports(older, newer)
    assert merged.progress.iteration == 2 and merged.eta == 3.0 and merged.progress.kernel is k
    assert merge_reports(None, newer) is newer


def test_run_record_elapsed():
    record = RunRecord("x", RunState.RUNNING, started=10.0)
    assert record.elapsed(now=12.5) == 2.5
    record.ended = 11.0
    assert record.elapsed(now=99.0) == 1.0


def _layer(data, *, rgb=False, scale=None, translate=None, metadata=None):
    nd = data.ndim - (1 if rgb else 0)
    scale = np.asarray(scale or [1.0] * nd, float)
    translate = np.asarray(translate or [0.0] * nd, float)
    return SimpleNamespace(data=data, rgb=rgb, multiscale=False, scale=scale, translate=translate, name="img",
                           metadata=metadata or {},
                           world_to_data=lambda p: (np.asarray(p)[-nd:] - translate) / scale)


def test_inputs_slice_in_view_whole_stack_and_notes():
    stack = _layer(np.arange(4 * 3 * 40 * 50).reshape(4, 3, 40, 50), scale=[2.0, 1.0, 0.5, 0.5])
    viewer = SimpleNamespace(dims=SimpleNamespace(point=(6.2, 1.0, 0.0, 0.0)))
    assert slice_in_view(viewer, stack) == (3, 1)
    assert input_array(stack, (3, 1), False).shape == (40, 50)
    assert input_array(stack, None, True).shape == (12, 40, 50)
    assert where_text((3, 1), False) == " (slice 3, 1)" and where_text(None, True) == " (whole stack)"
    rgba = _layer(np.zeros((40, 40, 4), np.uint8), rgb=True)
    assert input_notes(rgba) == ["alpha channel dropped"]
    assert input_notes(_layer(np.zeros((40, 40, 3), np.uint8), rgb=True)) == []


def test_kernels_for_any_kernel_image():
    k = gaussian_kernel(13, 1.5)
    plain = kernels_for(7.0 * k.astype(np.float32), None, 2, name="k.npy")  # unnormalised plain image
    assert np.isclose(plain[2].sum(), 1.0) and np.allclose(plain[2], k, atol=1e-6)
    both = kernels_for(k, 2, 4, name="k2")
    assert both[4].shape == (37, 37) and np.allclose(both[2], k)
    with pytest.raises(BadInputError, match="'k4' is a ×4 kernel"):
        kernels_for(both[4], 4, 2, name="k4")
    with pytest.raises(BadInputError, match="kernel layer 'bad'.*odd size"):
        kernels_for(np.ones((12, 12)), None, 2, name="bad")
    with pytest.raises(BadInputError, match="Estimate kernel"):
        latest_kernels({}, 2, "img")
    with pytest.raises(BadInputError, match="×3 kernel layer"):
        latest_kernels({2: k, 4: both[4]}, 3, "img")
    assert set(latest_kernels({2: k, 4: both[4]}, 4, "img")) == {2, 4}


def test_kernel_is_estimate():
    assert kernel_is_estimate(LATEST)
    assert kernel_is_estimate(SimpleNamespace(metadata={"role": str(LayerRole.KERNEL)}))
    for role in (LayerRole.TRUE_KERNEL, LayerRole.KERNEL_FILE, None):
        assert not kernel_is_estimate(SimpleNamespace(metadata={"role": role} if role else {}))


def test_error_lines_and_threads():
    assert error_line(BadInputError("the image is 20×20"), "Kernel of x") == \
        "Kernel of x was not run: the image is 20×20"
    assert error_line(BadOptionError(HintParam("na", 1.6), " is too high"), "Kernel of x") == \
        "Kernel of x was not run: NA 1.6 is too high"
    assert error_line(MethodUnavailableError("zssr is unavailable"), "SR") == "SR failed: zssr is unavailable"
    assert field_label("wavelength_um") == "Emission wavelength (µm)" and field_label("pinhole_au") == "Pinhole (AU)"
    assert field_label("psf_fwhm_um") == "psf fwhm (µm)" and field_label("max_iters") == "max iters"
    assert error_line(WeightsMissingError("USRNet weights were not found."), "SR").endswith("were not found.")
    assert error_line(RuntimeError("CUDA out of memory. Tried"), "SR").startswith("SR failed: Out of memory")
    assert error_line(KeyError("bug"), "SR") is None
    assert parse_threads("") is None and parse_threads(" 3 ") == 3
    for bad in ("0", "two", "1.5", "true"):
        with pytest.raises(BadOptionError, match="threads"):
            parse_threads(bad)


def test_form_of_kernelgan_shows_preset_defaults_not_zero():
    spec = ESTIMATORS.get("kernelgan")
    fields = {f.name: f for f in form_fields(spec)}
    order = [f.name for f in form_fields(spec)]
    assert order[:2] == ["preset", "iterations"] and set(order) == set(spec.form_options)
    assert fields["preset"].kind == "choice" and not fields["preset"].advanced
    it = fields["iterations"]
    assert it.kind == "text" and it.default is None and it.placeholder == "preset default" and not it.advanced
    assert "preset" in it.tooltip.lower()
    anchor = fields["anchor"]
    assert anchor.advanced and anchor.choices[0] == ("preset default", None)
    assert [v for _, v in anchor.choices[1:]] == ["bicubic", "edges"]
    values = option_values(list(fields.values()), {"preset": "fast", "iterations": "20", "crop": "",
                                                   "lr_g": "2e-4", "anchor": None})
    assert values == {"preset": "fast", "iterations": 20, "lr_g": 2e-4}


def test_form_of_closed_form():
    spec = SR_METHODS.get("closed-form")
    fields = {f.name: f for f in form_fields(spec)}
    # sigma: empty means auto (measured); a number is in the image's units, 'auto' may be typed too
    assert fields["sigma"].kind == "text" and not fields["sigma"].advanced
    assert fields["sigma"].placeholder.startswith("auto")
    assert fields["iterations"].placeholder == "4·(scale − 1)"
    assert fields["tile"].placeholder == "512 // scale" and fields["tile"].advanced
    assert form_values(spec)["sigma"] is None
    usrnet = {f.name: f for f in form_fields(SR_METHODS.get("usrnet"))}
    assert usrnet["weights"].placeholder == "method default" and "NAPARI_KERNELGAN" in usrnet["weights"].tooltip


def test_form_field_reads_text_through_parse_value():
    text = FormField("x", "x", "text", None)
    assert models.read_field(text, "") is None and models.read_field(text, "0.5") == 0.5
    assert models.read_field(text, "(1, 2)") == (1, 2) and models.read_field(text, "auto") == "auto"
    assert models.read_field(FormField("n", "n", "int", 3), 4) == 4


def test_unavailable_text():
    assert unavailable_text(SimpleNamespace(unavailable={})) == ""
    text = unavailable_text(SimpleNamespace(unavailable={"zssr": "ImportError: no module named foo"}))
    assert text == "Unavailable: zssr (ImportError: no module named foo)"


@pytest.mark.parametrize("renderer, env, software", [
    ("llvmpipe (LLVM 15.0.6, 256 bits)", {}, True),
    ("Google SwiftShader", {}, True),
    ("Mesa softpipe", {}, True),
    ("Microsoft Basic Render Driver (Software)", {}, True),
    ("NVIDIA GeForce RTX 3080/PCIe/SSE2", {}, False),
    ("NVIDIA GeForce RTX 3080/PCIe/SSE2", {"LIBGL_ALWAYS_SOFTWARE": "1"}, True),
    ("Apple M2", {"QT_QUICK_BACKEND": "software"}, True),
])
def test_software_rendering(renderer, env, software):
    assert software_rendering(renderer, env) is software
    assert use_activity_progress(renderer, env) is (not software)


def test_activity_progress_needs_a_known_hardware_renderer_unless_forced():
    assert use_activity_progress("", {}) is False  # unknown: the widget's own bar is enough
    assert use_activity_progress("llvmpipe", {models.ACTIVITY_ENV: "1"}) is True
    assert use_activity_progress("NVIDIA", {models.ACTIVITY_ENV: "0"}) is False
