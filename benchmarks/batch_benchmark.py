"""Throughput and memory of the batch engine: many small files, serial and on a local Dask cluster, and one
memory-mapped stack larger than its slices, processed slice by slice.

    python benchmarks/batch_benchmark.py --files 40 --workers 2          # a quick check
    python benchmarks/batch_benchmark.py --files 1000 --stack-slices 200 --stack-side 2048 --report out.json

Files are ``--size``² uint8 PNGs (the camera image blurred by a random ×2 Gaussian kernel with noise,
fixed seed), run with a fast estimator (kernelnet) and closed-form SR. Each phase runs in a fresh
process, so its peak resident memory (``ru_maxrss``) is its own: the engine's process for the serial
run and the stack, the largest worker for the Dask run.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np


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


def phase(inputs: list[str], out: str, workers: int | None, estimator: str) -> dict:
    """One run of the engine in this process; its numbers and this process's (and its children's) peak RSS."""
    from napari_kernelgan.batch import BatchConfig, run_batch

    cfg = BatchConfig(out=Path(out), estimator=estimator, sr_method="closed-form", threads=1, resume=False)
    start = time.perf_counter()
    batch = run_batch(inputs, cfg, workers=workers)
    seconds = time.perf_counter() - start
    to_mb = 1 / 1024  # ru_maxrss is in KiB on Linux
    return {"inputs": len(batch.results), "failed": len(batch.failed), "seconds": round(seconds, 2),
            "files_per_s": round(len(batch.results) / seconds, 2),
            "s_per_file": round(seconds / max(1, len(batch.results)), 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * to_mb, 1),
            "peak_worker_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * to_mb, 1)}


def run_phase(inputs: list[str], out: Path, workers: int | None, estimator: str) -> dict:
    """:func:`phase` in a fresh interpreter, so its peak memory is its own."""
    spec = json.dumps({"inputs": inputs, "out": str(out), "workers": workers, "estimator": estimator})
    proc = subprocess.run([sys.executable, __file__, "--phase", spec], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=200, help="small files (default: %(default)s)")
    ap.add_argument("--size", type=int, default=256, help="their side in pixels (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=2, help="Dask workers; 0 skips the Dask run (default: 2)")
    ap.add_argument("--stack-slices", type=int, default=16, help="slices of the memory-mapped stack; 0 skips it")
    ap.add_argument("--stack-side", type=int, default=512, help="its side in pixels (default: %(default)s)")
    ap.add_argument("--estimator", default="kernelnet", help="(default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="folder for inputs and outputs (default: a temporary one)")
    ap.add_argument("--report", default=None, help="also write the numbers to this JSON file")
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase is not None:
        spec = json.loads(args.phase)
        print(json.dumps(phase(spec["inputs"], spec["out"], spec["workers"], spec["estimator"])))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        files = [str(p) for p in make_files(work / "files", args.files, args.size, args.seed)]
        report: dict = {"files": args.files, "size": args.size, "estimator": args.estimator, "sr_method": "closed-form"}
        report["serial"] = run_phase(files, work / "out_serial", None, args.estimator)
        print(f"serial: {report['serial']}", flush=True)
        if args.workers:
            report["dask"] = run_phase(files, work / "out_dask", args.workers, args.estimator)
            report["dask"]["workers"] = args.workers
            report["speed_ratio"] = round(report["dask"]["files_per_s"] / report["serial"]["files_per_s"], 2)
            print(f"dask ({args.workers} workers, start-up included): {report['dask']}; "
                  f"{report['speed_ratio']}× the serial rate", flush=True)
        if args.stack_slices:
            stack = make_stack(work / "stack.tif", args.stack_slices, args.stack_side, args.seed)
            report["stack"] = run_phase([str(stack)], work / "out_stack", None, args.estimator)
            report["stack"].update(slices=args.stack_slices, side=args.stack_side,
                                   input_mb=round(stack.stat().st_size / 2**20, 1),
                                   output_mb=round(next((work / "out_stack").glob("*_sr_*")).stat().st_size / 2**20, 1))
            print(f"memory-mapped stack: {report['stack']}", flush=True)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
