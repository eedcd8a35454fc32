"""Cost of napari's activity-dock progress (its animated spinner) to a running estimate.

Opens a shown napari window with the tissue sample, clicks *Estimate kernel* (KernelGAN,
``fast`` preset, CPU) ``--repeats`` times with and without napari's activity progress
(``NAPARI_KERNELGAN_ACTIVITY_PROGRESS=1`` / ``0``, alternating), and compares the estimate's own
time (``KernelEstimate.elapsed``, the worker's). Needs a display: under Xvfb,

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/activity_benchmark.py --out docs/benchmarks_activity.md
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from _report import emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", default="100", help="KernelGAN steps (fast preset)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_kernelgan._qt import models
    from napari_kernelgan._qt.runner import gl_renderer

    def pump(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.005)

    viewer = napari.Viewer(title="activity benchmark")
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-kernelgan", "tissue")
    _, widget = viewer.window.add_plugin_dock_widget("napari-kernelgan", "Estimate kernel")
    widget.options["preset"].value = "fast"
    widget.options["iterations"].value = args.iterations
    widget.device.value = "cpu"
    widget.threads.value = args.threads
    pump(1.0)
    renderer = gl_renderer()
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(args.repeats):
        for mode in times:
            os.environ[models.ACTIVITY_ENV] = "1" if mode == "with" else "0"
            widget.run_button.native.click()
            while widget.running:
                QApplication.processEvents()
                time.sleep(0.002)
            pump(0.5)
            record = widget.runner.record
            if record.state != models.RunState.DONE:
                raise SystemExit(f"the estimate did not finish: {record.message}")
            times[mode].append(record.value.elapsed)
    viewer.close()
    med = {mode: statistics.median(t) for mode, t in times.items()}
    lines = [
        "# napari's activity progress and a running estimate", "",
        f"Command: `python benchmarks/activity_benchmark.py --iterations {args.iterations} --repeats {args.repeats} "
        f"--threads {args.threads}` (under `xvfb-run`)  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, OpenGL renderer: {renderer or 'unknown'}; "
        f"napari {napari.__version__}; load average {load_before:.2f} before the runs.", "",
        f"KernelGAN `fast` preset, {args.iterations} steps, on the tissue sample in a shown 1500×950 window; the "
        f"estimate's own time in seconds, median (range) of {args.repeats} runs each.", "",
        "| napari activity progress | estimate s | vs without |",
        "| --- | ---: | ---: |",
        *(f"| {mode} | {med[mode]:.1f} ({min(t):.1f}–{max(t):.1f}) | {med[mode] / med['without']:.2f}× |"
          for mode, t in times.items()),
    ]
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
