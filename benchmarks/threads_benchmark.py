"""How PyTorch's CPU thread count affects a run when other work keeps cores busy.

Runs the same KernelGAN estimate (``fast`` preset) and one closed-form ×2 SR with
``threads=1``, ``threads=<all cores>`` and automatic threads (``devices.choose_threads``),
first on a quiet machine, then with ``--busy`` processes spinning on the CPU, and
reports each time beside the 1-thread time of the same condition.

    python benchmarks/threads_benchmark.py --busy 1 --out docs/benchmarks_threads.md
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from _report import emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _spin(stop: mp.Event) -> None:  # type: ignore[valid-type]
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def _case() -> tuple[np.ndarray, np.ndarray]:
    from napari_kernelgan.samples import TISSUE

    return TISSUE.lr(), TISSUE.kernel()


def _time_runs(lr: np.ndarray, k: np.ndarray, threads: int | None, iterations: int) -> tuple[float, float, int]:
    from napari_kernelgan import estimate_kernel, super_resolve
    from napari_kernelgan.devices import choose_threads

    used = choose_threads(threads)
    t0 = time.perf_counter()
    estimate_kernel(lr, 2, preset="fast", iterations=iterations, device="cpu", seed=0, threads=threads)
    t1 = time.perf_counter()
    super_resolve(lr, k, 2, device="cpu", threads=threads)
    return t1 - t0, time.perf_counter() - t1, used


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy", type=int, default=1, help="processes spinning on the CPU in the busy condition")
    ap.add_argument("--iterations", type=int, default=60, help="KernelGAN steps (fast preset)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from napari_kernelgan.devices import usable_cores

    cores = usable_cores()
    lr, k = _case()
    _time_runs(lr, k, 1, 5)  # warm-up: imports, allocator
    rows = []
    for busy in (0, args.busy):
        stop = mp.Event()
        spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
        for p in spinners:
            p.start()
        time.sleep(2.0 if busy else 0.0)  # let the load average see the spinners
        try:
            results = {label: _time_runs(lr, k, t, args.iterations)
                       for label, t in (("1 thread", 1), (f"{cores} threads", cores), ("automatic", None))}
        finally:
            stop.set()
            for p in spinners:
                p.join()
        base_e, base_s, _ = results["1 thread"]
        for label, (e, s, used) in results.items():
            rows.append(f"| {busy} | {label} ({used}) | {e:.1f} | {e / base_e:.2f}× | {s:.2f} | {s / base_s:.2f}× |")
    lines = [
        "# CPU threads under load",
        "",
        f"Command: `python benchmarks/threads_benchmark.py --busy {args.busy} --iterations {args.iterations}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {cores} usable cores, Python "
        f"{platform.python_version()}; load average before the run {os.getloadavg()[0]:.2f}.",
        "",
        "KernelGAN `fast` preset on the tissue sample (256×256 RGB) and closed-form ×2 SR of it; times in "
        "seconds, ratios against 1 thread in the same condition (lower is better).",
        "",
        "| busy processes | threads (used) | estimate s | vs 1 thread | SR s | vs 1 thread |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
        *rows,
    ]
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
