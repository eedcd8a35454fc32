"""Throughput and memory of the batch engine: many small files, serial and on a local Dask cluster, and one
memory-mapped stack larger than its slices, processed slice by slice.

    python benchmarks/batch_benchmark.py --files 40 --workers 2          # a quick check
    python benchmarks/batch_benchmark.py --files 1000 --stack-slices 256 --stack-side 2048 \
        --stack-sr-method bicubic --out docs/benchmarks_batch.md

Files are ``--size``² uint8 PNGs (the camera image blurred by a random ×2 Gaussian kernel with noise,
fixed seed), run with a fast estimator (kernelnet) and closed-form SR. Each phase runs in a fresh
process, so its peak resident memory (``ru_maxrss``) is its own: the engine's process for the serial
run and the stack, the largest worker for the Dask run; the engine process's memory is also sampled
over the run (first against second half: does it stay flat?). The serial run's summary is checked
(a row per input, all ``ok``, every named output present), the Dask run's results are compared with
the serial run's, and a third serial run is killed with SIGKILL at a random point (seeded), rerun and
compared result by result with the uninterrupted one.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np

from _report import emit  # benchmarks/ is on sys.path when a script runs


def make_files(folder: Path, n: int, size: int, seed: int) -> list[Path]:
    """``n`` LR images of ``size``² pixels, each from its own crop, kernel and noise."""
    from skimage import data
    from skimage.transform import resize

    from napari_kernelgan.io import write_image
    from napari_kernelgan.physics import degrade, gaussian_kernel

    rng = np.random.default_rng(seed)
    hr_full = resize(data.camera().astype(float), (4 * size, 4 * size), order=3, preserve_range=True)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        y, x = rng.integers(0, 2 * size, 2)
        k = gaussian_kernel(13, rng.uniform(0.8, 2.2), rng.uniform(0.8, 2.2), rng.uniform(0, np.pi))
        lr = degrade(hr_full[y:y + 2 * size, x:x + 2 * size], k, 2) + rng.normal(0, 1.5, (size, size))
        paths.append(write_image(folder / f"img{i:05d}.png", np.clip(lr, 0, 255).astype(np.uint8)))
    return paths


def make_stack(path: Path, slices: int, side: int, seed: int) -> Path:
    """An uncompressed ImageJ ZYX uint16 stack, written slice by slice (never held whole)."""
    import tifffile
    from skimage import data
    from skimage.transform import resize

    from napari_kernelgan.physics import degrade, gaussian_kernel

    rng = np.random.default_rng(seed)
    hr = resize(data.camera().astype(float), (2 * side, 2 * side), order=3, preserve_range=True)
    base = degrade(hr, gaussian_kernel(13, 1.6, 1.1, 0.4), 2) * 200

    def pages():
        for _ in range(slices):
            yield np.clip(base + rng.normal(0, 300, base.shape), 0, 65535).astype(np.uint16)

    tifffile.imwrite(path, pages(), shape=(slices, side, side), dtype=np.uint16, imagej=True,
                     resolution=(1 / 0.325, 1 / 0.325), metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"})
    return path


def phase(inputs: list[str], out: str, workers: int | None, estimator: str, resume: bool = False,
          sr_method: str = "closed-form") -> dict:
    """One run of the engine in this process; its numbers and this process's (and its children's) peak RSS."""
    from napari_kernelgan.batch import BatchConfig, run_batch

    cfg = BatchConfig(out=Path(out), estimator=estimator, sr_method=sr_method, threads=1, resume=resume)
    start = time.perf_counter()
    batch = run_batch(inputs, cfg, workers=workers)
    seconds = time.perf_counter() - start
    to_mb = 1 / 1024  # ru_maxrss is in KiB on Linux
    return {"inputs": len(batch.results), "failed": len(batch.failed),
            "skipped": sum(r.status == "skipped" for r in batch.results), "seconds": round(seconds, 2),
            "files_per_s": round(len(batch.results) / seconds, 2),
            "s_per_file": round(seconds / max(1, len(batch.results)), 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * to_mb, 1),
            "peak_worker_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * to_mb, 1)}


def _rss_mb(pid: int) -> float:
    """Resident memory of a process (MiB), 0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((ln for ln in text.splitlines() if ln.startswith("VmRSS:")), "VmRSS: 0 kB")
    return int(line.split()[1]) / 1024


def _spawn(inputs: list[str], out: Path, workers: int | None, estimator: str, resume: bool,
           sr_method: str = "closed-form") -> subprocess.Popen:
    spec = json.dumps({"inputs": inputs, "out": str(out), "workers": workers, "estimator": estimator,
                       "resume": resume, "sr_method": sr_method})
    from napari_kernelgan.batch import SINGLE_THREAD_ENV

    # The serial run single-threaded as each Dask worker is, so the two rates compare processes, not threads.
    return subprocess.Popen([sys.executable, __file__, "--phase", spec], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **SINGLE_THREAD_ENV})


def run_phase(inputs: list[str], out: Path, workers: int | None, estimator: str, resume: bool = False,
              sr_method: str = "closed-form") -> dict:
    """:func:`phase` in a fresh interpreter, so its peak memory is its own. The engine process's resident
    memory is sampled twice a second: the largest sample in the first and in the second half of the run
    show whether memory stays flat over a long run."""
    proc = _spawn(inputs, out, workers, estimator, resume, sr_method)
    samples: list[tuple[float, float]] = []
    start = time.perf_counter()
    while proc.poll() is None:
        samples.append((time.perf_counter() - start, _rss_mb(proc.pid)))
        time.sleep(0.5)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark phase failed ({proc.returncode}):\n{stderr[-2000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    total = time.perf_counter() - start
    first = [m for t, m in samples if t <= 0.5 * total]
    second = [m for t, m in samples if t > 0.5 * total]
    if first and second:
        result.update(rss_first_half_mb=round(max(first), 1), rss_second_half_mb=round(max(second), 1))
    return result


def outputs_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every result a run leaves (kernels as arrays, SR images), by name. ``.mat`` files carry
    their writing date in the header and the summary and manifests carry timings, so they are left out."""
    import hashlib

    keep = (".npy", ".png", ".tif", ".tiff")
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())
            if p.suffix.lower() in keep and not p.name.startswith(".")}


def check_summary(folder: Path, n: int) -> dict:
    """Whether ``summary.csv`` has one ``ok`` row per input, each naming an output that exists."""
    import csv

    with open(folder / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ok = [r for r in rows if r["status"] == "ok"]
    missing = [r["output"] for r in ok if not (folder / r["output"]).is_file()]
    return {"rows": len(rows), "ok_rows": len(ok), "missing_outputs": len(missing),
            "correct": len(rows) == n and len(ok) == n and not missing}


def kill_and_resume(inputs: list[str], out: Path, estimator: str, reference: Path, serial_seconds: float,
                    seed: int) -> dict:
    """Kill a serial run with SIGKILL at a random point, rerun it, and compare its results with ``reference``
    (an uninterrupted run)."""
    import signal

    rng = np.random.default_rng(seed)
    at = float(rng.uniform(0.2, 0.8)) * serial_seconds
    proc = _spawn(inputs, out, None, estimator, resume=True)
    time.sleep(at)
    done_before = len(list(out.glob("*_manifest.json"))) if out.is_dir() else 0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rerun = run_phase(inputs, out, None, estimator, resume=True)
    ours, ref = outputs_digest(out), outputs_digest(reference)
    differ = sorted(name for name in set(ours) | set(ref) if ours.get(name) != ref.get(name))
    return {"killed_after_s": round(at, 1), "finished_before_kill": done_before, "rerun_skipped": rerun["skipped"],
            "rerun_failed": rerun["failed"], "rerun_seconds": rerun["seconds"], "outputs": len(ref),
            "differing_outputs": len(differ), "identical": not differ and len(ours) == len(ref)}


def markdown(report: dict, cmd: str, env: str) -> str:
    s, lines = report["serial"], []
    lines += ["## Batch engine: many small files, a Dask cluster, a memory-mapped stack", "",
              f"Command: `{cmd}`", "", f"Machine: {env}", "",
              f"{report['files']} files of {report['size']}×{report['size']} px, `{report['estimator']}` estimator, "
              f"closed-form SR, one thread per process (serial run and each Dask worker).", "",
              "| run | inputs | failed | seconds | files/s | s per file | peak RSS MB | RSS first / second half MB |",
              "|---|---|---|---|---|---|---|---|"]

    def row(name: str, r: dict, rss: float) -> str:
        flat = f"{r.get('rss_first_half_mb', '–')} / {r.get('rss_second_half_mb', '–')}"
        return (f"| {name} | {r['inputs']} | {r['failed']} | {r['seconds']} | {r['files_per_s']} | {r['s_per_file']} "
                f"| {rss} | {flat} |")

    lines.append(row("serial", s, s["peak_rss_mb"]))
    if "dask" in report:
        d = report["dask"]
        lines.append(row(f"Dask, {d['workers']} workers (start-up included)", d, d["peak_worker_rss_mb"]))
        same = "identical to" if d.get("identical_to_serial") else "DIFFERENT from"
        lines += ["", f"Dask against serial: **{report['speed_ratio']}×** the serial rate (peak RSS column: the "
                  f"largest worker; first / second half: the client process); its results are {same} the serial "
                  "run's."]
    summary = report["summary"]
    verdict = "correct" if summary["correct"] else "WRONG"
    lines += ["", f"Summary of the serial run: {summary['rows']} rows, {summary['ok_rows']} ok, "
              f"{summary['missing_outputs']} named outputs missing: **{verdict}**."]
    if "kill" in report:
        k = report["kill"]
        lines += ["", f"Killed with SIGKILL after {k['killed_after_s']} s "
                  f"({k['finished_before_kill']} inputs finished), "
                  f"then rerun: {k['rerun_skipped']} inputs skipped as verified, {k['rerun_failed']} failed, "
                  f"{k['rerun_seconds']} s; {k['outputs']} results compared with the uninterrupted run, "
                  f"{k['differing_outputs']} differ: **{'identical' if k['identical'] else 'DIFFERENT'}**."]
    if "stack" in report:
        st = report["stack"]
        lines += ["", f"Memory-mapped ImageJ stack: {st['slices']} slices of {st['side']}×{st['side']} uint16 "
                  f"({st['input_mb']} MB in, {st['output_mb']} MB out), per-stack kernel, {st['sr_method']} SR "
                  "slice by slice: "
                  f"{st['seconds']} s, peak RSS **{st['peak_rss_mb']} MB**."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200, help="small files (default: %(default)s)")
    ap.add_argument("--size", type=int, default=256, help="their side in pixels (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=2, help="Dask workers; 0 skips the Dask run (default: 2)")
    ap.add_argument("--kill", action=argparse.BooleanOptionalAction, default=True,
                    help="kill a serial run at a random point, rerun it and compare (default: on)")
    ap.add_argument("--stack-slices", type=int, default=16, help="slices of the memory-mapped stack; 0 skips it")
    ap.add_argument("--stack-side", type=int, default=512, help="its side in pixels (default: %(default)s)")
    ap.add_argument("--stack-sr-method", default="closed-form",
                    help="SR method for the stack (bicubic keeps a multi-GB run short; default: %(default)s)")
    ap.add_argument("--estimator", default="kernelnet", help="(default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="folder for inputs and outputs (default: a temporary one)")
    ap.add_argument("--report", default=None, help="also write the numbers to this JSON file")
    ap.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase is not None:
        spec = json.loads(args.phase)
        print(json.dumps(phase(spec["inputs"], spec["out"], spec["workers"], spec["estimator"],
                               spec.get("resume", False), spec.get("sr_method", "closed-form"))))
        return
    import platform
    import shlex

    import torch

    env = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    cmd = "python benchmarks/batch_benchmark.py " + shlex.join(sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        files = [str(p) for p in make_files(work / "files", args.files, args.size, args.seed)]
        report: dict = {"files": args.files, "size": args.size, "estimator": args.estimator, "sr_method": "closed-form"}
        report["serial"] = run_phase(files, work / "out_serial", None, args.estimator)
        report["summary"] = check_summary(work / "out_serial", args.files)
        print(f"serial: {report['serial']}; summary {report['summary']}", flush=True)
        if args.workers:
            report["dask"] = run_phase(files, work / "out_dask", args.workers, args.estimator)
            report["dask"]["workers"] = args.workers
            report["speed_ratio"] = round(report["dask"]["files_per_s"] / report["serial"]["files_per_s"], 2)
            report["dask"]["identical_to_serial"] = outputs_digest(work / "out_dask") == outputs_digest(
                work / "out_serial")
            print(f"dask ({args.workers} workers, start-up included): {report['dask']}; "
                  f"{report['speed_ratio']}× the serial rate", flush=True)
        if args.kill:
            report["kill"] = kill_and_resume(files, work / "out_kill", args.estimator, work / "out_serial",
                                             report["serial"]["seconds"], args.seed)
            print(f"kill and rerun: {report['kill']}", flush=True)
        if args.stack_slices:
            stack = make_stack(work / "stack.tif", args.stack_slices, args.stack_side, args.seed)
            report["stack"] = run_phase([str(stack)], work / "out_stack", None, args.estimator,
                                        sr_method=args.stack_sr_method)
            report["stack"].update(slices=args.stack_slices, side=args.stack_side, sr_method=args.stack_sr_method,
                                   input_mb=round(stack.stat().st_size / 2**20, 1),
                                   output_mb=round(next((work / "out_stack").glob("*_sr_*")).stat().st_size / 2**20, 1))
            print(f"memory-mapped stack: {report['stack']}", flush=True)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))
    emit(markdown(report, cmd, env), args.out)


if __name__ == "__main__":
    main()
