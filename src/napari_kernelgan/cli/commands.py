"""The commands: ``estimate``, ``batch``, ``sr``, ``blind-sr``, ``axial`` (all five through the batch engine) and
``demo``, and the method options they take from the command line."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import BadOptionError
from ..options import parse_assignments
from ..vocabulary import Status
from .errors import INTERRUPTED, about, result_error
from .output import (
    estimate_record,
    field_summary,
    format_kernel,
    hint_lines,
    method_label,
    progress_bar,
    safety_note,
)

__all__ = ["estimator_options", "sr_options", "run_kwargs", "given_hints", "cmd_estimate", "cmd_batch", "cmd_sr",
           "cmd_blind_sr", "cmd_demo", "cmd_axial", "axial_lines"]


def estimator_options(args: argparse.Namespace, items: Sequence[str], flag: str) -> dict[str, Any]:
    """The estimator's options: ``KEY=VALUE`` items plus the ``--preset`` / ``--iterations`` shortcuts.

    Checked against the estimator's spec now, so a typo fails before any file is read or written.
    The shortcuts are passed only when given (not every estimator has them).
    """
    from ..registry import ESTIMATORS

    opts = parse_assignments(items, flag=flag)
    for key in ("preset", "iterations"):
        value = getattr(args, key, None)
        if value is None:
            continue
        if key in opts and opts[key] != value:
            raise BadOptionError(f"--{key} {value} and {flag} {key}={opts[key]} disagree; give one")
        opts[key] = value
    ESTIMATORS.get(args.estimator).resolve(opts)
    return opts


def sr_options(args: argparse.Namespace, items: Sequence[str], flag: str = "--set") -> dict[str, Any]:
    """The SR method's options from ``KEY=VALUE`` items, checked against its spec."""
    from ..api import noise_option, parse_noise_option
    from ..registry import SR_METHODS

    opts = parse_assignments(items, flag=flag)
    spec = SR_METHODS.get(args.sr_method)
    rest = dict(opts)
    parse_noise_option(noise_option(spec), rest)  # in the image's units or 'auto': checked apart from the rest
    spec.resolve(rest)
    return opts


def given_hints(args: argparse.Namespace) -> dict[str, Any]:
    """The optics given by ``--na``, ``--wavelength``, ``--immersion``, ``--modality``, ``--pinhole-au`` and
    ``--pixel-size``, checked together (:func:`~..optics_hints.check_hints`: a wavelength above 5 is refused as
    nanometres, an NA at or above the immersion's index, a pinhole with ``--modality widefield``)."""
    from ..optics_hints import HINT_KEYS, check_hints

    return check_hints({key: getattr(args, key) for key in HINT_KEYS if getattr(args, key, None) is not None})


def run_kwargs(args: argparse.Namespace, *, axes: bool = True) -> dict[str, Any]:
    """The keywords every API call shares: device, seed, threads (and the image's axes)."""
    kw: dict[str, Any] = {"device": args.device, "seed": args.seed, "threads": args.threads}
    if axes:
        kw.update(channel_axis=args.channel_axis, stack_axis=args.stack_axis)
    return kw


# ----------------------------------------------------------------------------- commands


def _engine_config(args: argparse.Namespace, est_opts: dict[str, Any], *, sr_method: str | None,
                   sr_opts: dict[str, Any] | None = None, **extra: Any) -> Any:
    """The batch engine's settings from the parsed command line (no ``--out``: results beside the inputs)."""
    from ..batch import BatchConfig

    out = getattr(args, "out", None)
    if (sr_method is None or "kernel" not in extra) and "hints" not in extra:  # the optics matter where a kernel
        extra.update(hints=given_hints(args), file_hints=getattr(args, "file_optics", True))  # is estimated
    return BatchConfig(out=None if out is None else Path(out), scale=args.scale,
                       estimator=getattr(args, "estimator", "auto"),
                       estimator_options=est_opts, sr_method=sr_method, sr_options=sr_opts or {}, axes=args.axes,
                       per_slice=getattr(args, "per_slice", False),
                       per_channel=getattr(args, "per_channel", False), device=args.device, seed=args.seed,
                       threads=args.threads, **extra)


def cmd_estimate(args: argparse.Namespace) -> int:
    from ..batch import run_batch

    opts = estimator_options(args, args.set, "--set")
    cfg = _engine_config(args, opts, sr_method=None, channel_axis=args.channel_axis, stack_axis=args.stack_axis,
                         kernel_map=args.kernel_map, tile=args.tile, overlap=args.overlap, resume=False,
                         keep_results=True)

    def show(result: Any) -> None:
        if result.failed:
            result_error(result)
            return
        for label, est in result.estimates:
            k = est.kernel_for(args.scale)
            print(f"{result.path}{f' {label}' if label else ''}: ×{args.scale} kernel {k.shape[0]}×{k.shape[1]} in "
                  f"{est.elapsed:.1f} s ({method_label(est)}, {est.iterations} steps, {est.device}, seed {est.seed})")
            if not args.quiet:
                print(format_kernel(est.kernel))
        for line in hint_lines(result.hints, args.estimator):
            print(line)
        if result.kernel_map is not None:
            print("  " + field_summary(result.kernel_map))
        print("  wrote " + ", ".join(p.name for p in result.written) + f" in {cfg.out}")

    try:
        with progress_bar("estimate") as bar:
            # Bugs keep their traceback here; in 'batch' they are recorded and the run goes on.
            batch = run_batch(args.images, cfg, progress=bar, on_result=show, summary=False, catch_bugs=False)
    except KeyboardInterrupt:
        print("error: interrupted; nothing written for the image in progress", file=sys.stderr)
        return INTERRUPTED
    return 1 if batch.failed else 0


def _axial_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The batch engine's axial settings from ``axial`` (or ``batch --axial``)."""
    return {"axial": True, "axial_method": args.axial_method, "z_step": args.z_step, "z_factor": args.z_factor,
            "psf_only": args.psf_only, "psf3d": args.psf3d, "hints": given_hints(args),
            "file_hints": args.file_optics}


def cmd_batch(args: argparse.Namespace) -> int:
    from ..batch import run_batch

    est_opts = estimator_options(args, args.estimate_set, "--estimate-set")
    axial = _axial_settings(args) if args.axial else {}
    cfg = _engine_config(args, est_opts, sr_method=args.sr_method, sr_opts=sr_options(args, args.set),
                         resume=not args.redo, **axial)
    if args.workers is not None and args.scheduler is not None:
        raise BadOptionError("give --workers (a local cluster) or --scheduler (an existing one), not both")

    def show(result: Any) -> None:
        if result.failed:
            result_error(result)
        elif not args.quiet:
            what = "finished before, outputs verified" if result.status == Status.SKIPPED else f"{result.seconds:.1f} s"
            out = result.output.name if result.output is not None else ""
            print(f"{result.path}: {result.status} → {out} ({what})")
            for line in axial_lines(result) if result.axial else hint_lines(result.hints, args.estimator):
                print(line)

    try:
        with progress_bar("batch") as bar:
            batch = run_batch(args.inputs, cfg, workers=args.workers, scheduler=args.scheduler, progress=bar,
                              on_result=show)
    except KeyboardInterrupt:
        print("error: interrupted; finished inputs are kept and skipped when the run is repeated", file=sys.stderr)
        return INTERRUPTED
    n = len(batch.results)
    print(f"batch: {n} input{'s' if n != 1 else ''} in {batch.seconds:.1f} s: {batch.tally()}; summary in "
          f"{batch.summary[0]}")
    return 1 if batch.failed else 0


def axial_lines(result: Any) -> list[str]:
    """An axial run's input in words: the PSF of each channel, the isotropic stack, then warnings and notes."""
    rec = result.axial
    lines = []
    for ch in rec["channels"]:
        where = "" if ch["channel"] is None else f" c{ch['channel']}"
        lat = " × ".join(f"{v:.3g}" for v in ch["lateral_fwhm_um"])
        lines.append(f"{result.path}{where}: 3-D PSF FWHM z {ch['axial_fwhm_um']:.3g} µm, y × x {lat} µm, "
                     f"confidence {ch['confidence']:.2f} ({ch['method']}) → {ch['psf_file']}")
    if rec["outputs"]["volume"] is not None:
        shape = tuple(int(n) for n in result.output_shape)
        lines.append(f"  isotropic ×{rec['z_factor']} in z ({rec['sr_method']}): z step {rec['z_step_um']:.4g} → "
                     f"{rec['z_step_out_um']:.4g} µm, {shape} {result.output_dtype} → {rec['outputs']['volume']}")
    timings = rec["timings"]
    lines.append(f"  estimate {timings['estimate_s']:.1f} s, SR {timings['sr_s']:.1f} s, write "
                 f"{timings['write_s']:.1f} s; record {result.stem}_axial.json")
    lines += [f"  WARNING: {w}" for w in rec["warnings"]]
    lines += [f"  note: {n}" for n in [*rec["notices"], *rec["notes"]]]
    lines += [f"  note: {n}" for ch in rec["channels"] for n in ch["optics_notes"]]
    return list(dict.fromkeys(lines))


def cmd_axial(args: argparse.Namespace) -> int:
    from ..batch import BatchConfig, run_batch

    cfg = BatchConfig(out=None if args.out is None else Path(args.out), axes=args.axes, device=args.device,
                      seed=args.seed, threads=args.threads, resume=False, overwrite=args.overwrite,
                      **_axial_settings(args))

    with progress_bar(Path(args.stacks[0]).name if len(args.stacks) == 1 else "axial") as bar:
        def done(result: Any) -> None:
            bar.close()  # the input's lines start on a fresh line
            if result.failed:
                result_error(result)
                return
            for line in axial_lines(result):
                print(line)

        try:
            # Bugs keep their traceback, as in 'estimate'.
            batch = run_batch(args.stacks, cfg, callback=bar, on_result=done, summary=False, catch_bugs=False)
        except KeyboardInterrupt:
            bar.close()
            print("error: interrupted; nothing written for the stack in progress", file=sys.stderr)
            return INTERRUPTED
    return 1 if batch.failed else 0


def _sr_line(result: Any) -> tuple[str, dict[str, Any], float]:
    """``→ OUTPUT`` and, over the slices super-resolved, the SR options to report (a slice that fell back to
    interpolation, else the first) and the SR time."""
    runs = result.sr_runs
    shown = next((r for r in runs if r["options"].get("fallback")), runs[0])
    return f"{shown['sr_method']} → {result.output}", shown, sum(r["elapsed_s"] for r in runs)


def _sr_through_engine(args: argparse.Namespace, cfg: Any, show: Callable[[Any], None]) -> int:
    """Run ``sr`` / ``blind-sr`` on every input: a progress bar of the running input's steps, a line each."""
    from ..batch import run_batch

    with progress_bar(Path(args.images[0]).name if len(args.images) == 1 else args.command) as bar:
        def done(result: Any) -> None:
            bar.close()  # the input's line starts on a fresh line
            if result.failed:
                result_error(result)
            else:
                show(result)

        # Bugs keep their traceback, as in 'estimate'.
        batch = run_batch(args.images, cfg, callback=bar, on_result=done, summary=False, catch_bugs=False)
    return 1 if batch.failed else 0


def _stack_keywords(args: argparse.Namespace) -> dict[str, Any]:
    return {"channel_axis": args.channel_axis, "stack_axis": args.stack_axis, "output": args.output,
            "resume": False, "keep_results": True}


def _psf_kernel(args: argparse.Namespace, path: Path) -> Path:
    """``path`` itself, or for a measured PSF (a bead image or stack with a pixel size in its metadata or given by
    ``--kernel-pixel-size``) the kernel made from it for the inputs' pixel size at ``--scale``, written to a
    scratch ``.npy`` removed at exit; the kernel's size and the share of the light it keeps are printed."""
    from ..io import write_kernel
    from ..measured_psf import image_pixel_size, is_psf_file, kernel_from_psf_file

    if not is_psf_file(path, args.kernel_pixel_size):
        return path
    pixel = args.pixel_size
    if pixel is None:
        from ..batch.engine import expand_inputs

        sizes = {image_pixel_size(p) for p in expand_inputs(args.images)}
        if len(sizes) > 1:
            raise BadOptionError("the inputs have different pixel sizes (" + ", ".join(
                "none" if v is None else f"{v:.4g} µm" for v in sorted(sizes, key=lambda v: v or 0)) + "); a measured "
                "PSF is made into a kernel for one: run them separately or give --pixel-size")
        pixel = sizes.pop() if sizes else None
    measured = kernel_from_psf_file(path, args.scale, pixel_size=pixel, kernel_pixel_size=args.kernel_pixel_size)
    plane = "" if measured.plane is None else f", in-focus plane {measured.plane}"
    print(f"{path.name}: measured PSF at {measured.psf_pixel_um:.4g} µm/pixel{plane} → ×{args.scale} kernel "
          f"{measured.side}×{measured.side} at {measured.sr_pixel_um:.4g} µm/pixel, keeping "
          f"{100 * measured.mass_kept:.1f} % of its light")
    import atexit
    import shutil
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="napari-kernelgan-psf-"))
    atexit.register(shutil.rmtree, scratch, True)
    return write_kernel(scratch / f"{path.stem}_kernel_x{args.scale}.npy", measured.kernel)


def cmd_sr(args: argparse.Namespace) -> int:
    from ..io import read_kernel

    opts = sr_options(args, args.set)
    if (args.kernel is None) == (args.kernel_map is None):
        raise BadOptionError("give either --kernel (one kernel for the whole image) or --kernel-map (a kernel "
                             "map written by 'estimate --kernel-map')")
    if args.kernel_map is not None:
        from ..fields import KernelField

        kernel = Path(args.kernel_map)
        with about(kernel):  # read once here, so a bad file is named before any input runs
            KernelField.load(kernel)
        if args.trust_kernel:
            opts.update(confidence=1.0)
    else:
        kernel = Path(args.kernel)
        with about(kernel):
            kernel = _psf_kernel(args, kernel)  # a measured PSF: its kernel on the ×s grid, in a scratch file
            read_kernel(kernel)
        record = None if args.trust_kernel else estimate_record(kernel)
        if record is not None:  # written by 'estimate': an estimate, trusted as far as its confidence says
            opts.update(confidence=record.get("confidence"))
    # Every kernel gets super_resolve's safeguards (a measured PSF at full confidence) unless switched off.
    opts.update(safe=not args.no_safeguards)
    if args.no_safeguards:
        opts.pop("confidence", None)
    cfg = _engine_config(args, {}, sr_method=args.sr_method, sr_opts=opts, kernel=kernel, **_stack_keywords(args))

    def show(result: Any) -> None:
        what, run, seconds = _sr_line(result)
        regions = f", {run['options']['regions']} regions of the kernel map" if "regions" in run["options"] else ""
        shape = tuple(int(n) for n in result.output_shape)
        print(f"{result.path}: ×{args.scale} {what} {shape} {result.output_dtype} in {seconds:.1f} s "
              f"({run['device']}{regions})" + safety_note(run["options"]))

    return _sr_through_engine(args, cfg, show)


def cmd_blind_sr(args: argparse.Namespace) -> int:
    est_opts = estimator_options(args, args.estimate_set, "--estimate-set")
    cfg = _engine_config(args, est_opts, sr_method=args.sr_method, sr_opts=sr_options(args, args.set),
                         kernel_files="mat", **_stack_keywords(args))

    def show(result: Any) -> None:
        what, run, seconds = _sr_line(result)
        kernels = [p.name for p in result.written if p.suffix == ".mat"]
        named = kernels[0] if len(kernels) == 1 else f"{len(kernels)} kernels, {kernels[0]}…"
        est = result.estimates[0][1]
        estimated = sum(e.elapsed for _, e in result.estimates)
        print(f"{result.path}: blind ×{args.scale} {what} (kernel {named}, {method_label(est)}); estimate "
              f"{estimated:.1f} s, SR {seconds:.1f} s" + safety_note(run["options"]))
        for line in hint_lines(result.hints, args.estimator):
            print(line)

    return _sr_through_engine(args, cfg, show)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..api import estimate_kernel, super_resolve
    from ..batch import all_or_nothing, write_estimate
    from ..io import write_image, write_kernel
    from ..physics import constant_gaussian, image_psnr, kernel_l1
    from ..samples import TISSUE

    est_opts = estimator_options(args, args.estimate_set, "--estimate-set")
    sr_opts = sr_options(args, args.set)
    run = run_kwargs(args, axes=False)
    out = Path(args.out)
    hr = TISSUE.hr()
    lr, k_true = TISSUE.lr(hr), TISSUE.kernel()
    print(f"sample: {TISSUE.source}, HR {hr.shape}, blurred with a known anisotropic Gaussian "
          f"(σ {TISSUE.sigma[0]}, {TISSUE.sigma[1]} px, θ {TISSUE.theta_deg}°) and subsampled ×2 → LR {lr.shape}")
    with progress_bar("estimate", always=True) as bar:
        est = estimate_kernel(lr, 2, estimator=args.estimator, callback=bar, **run, **est_opts)
    err, err_const = kernel_l1(est.kernel, k_true), kernel_l1(constant_gaussian(2), k_true)
    print(f"kernel estimated in {est.elapsed:.1f} s on {est.device} ({method_label(est)}, seed {est.seed})")
    print(f"kernel L1 error vs the true kernel: {err:.3f} (fixed Gaussian baseline: {err_const:.3f})")
    print(format_kernel(est.kernel))
    # The kernel is an estimate: super_resolve applies its safeguards (measured noise, confidence, check).
    with progress_bar("super-resolve", always=True) as bar:
        sr = super_resolve(lr, est, 2, sr_method=args.sr_method, callback=bar, **run, **sr_opts)
    shave = 2
    psnr_sr = image_psnr(sr.image, hr, shave)
    psnr = {name: image_psnr(super_resolve(lr, k, 2, sr_method=m, **run, **o).image, hr, shave)
            for name, k, m, o in (("bicubic", est, "bicubic", {}), ("true kernel", k_true, args.sr_method, sr_opts))}
    with about(out), all_or_nothing() as written:
        written.append(write_image(out / "ihc_lr_x2.png", lr))
        written.append(write_kernel(out / "ihc_true_kernel_x2.mat", k_true))
        write_estimate(out, "ihc_lr_x2", est, [2], written)
        written.append(write_image(out / f"ihc_sr_x2_{args.sr_method}.png", sr.image))
    print(f"×2 super-resolution ({args.sr_method}, {sr.elapsed:.1f} s), PSNR on Y: estimated kernel "
          f"{psnr_sr:.2f} dB; " + ", ".join(f"{n} {v:.2f} dB" for n, v in psnr.items()))
    kernel_verdict = "beats" if err < err_const else "does NOT beat"
    sr_verdict = "beats" if psnr_sr > psnr["bicubic"] else "does NOT beat"
    print(f"verdict: the estimated kernel {kernel_verdict} the fixed Gaussian (L1 {err:.3f} vs {err_const:.3f}) "
          f"and its super-resolution {sr_verdict} bicubic ({psnr_sr - psnr['bicubic']:+.2f} dB)")
    print(f"outputs in {out}/: " + ", ".join(p.name for p in written))
    return 0
