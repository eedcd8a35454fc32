"""Command line: ``napari-kernelgan estimate | sr | blind-sr | batch | demo``. A thin layer over :mod:`.api`.

The options of each method come from its spec in :mod:`.registry` (``--set KEY=VALUE``), so a new
method needs no change here. Only the subcommand named on the command line is built, and only then
are the registries (and PyTorch) loaded: ``napari-kernelgan --help`` and ``--version`` stay instant.
Errors a user can act on (:class:`~.errors.KernelGANError`, out of memory) print one
``error: <file>: <message>`` line and exit 1; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import BadOptionError, WeightsMissingError, user_message
from .options import parse_assignments

if TYPE_CHECKING:  # the heavy modules load inside the commands only
    import numpy as np

    from .registry import MethodSpec, Registry
    from .types import KernelEstimate, Progress

PROG = "napari-kernelgan"
INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)

# The library's hints name keyword arguments; on the command line they name flags.
_CLI_WORDS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(channel|stack)_axis=(?=-?\d)"), r"--\1-axis "),  # "channel_axis=5 is out of range"
    (re.compile(r"\b(channel|stack)_axis="), r"--\1-axis"),            # "needs channel_axis= and/or stack_axis="
    (re.compile(r"\bchannel_axis and stack_axis\b"), "--channel-axis and --stack-axis"),
    (re.compile(r"\baxes='(\w+)'"), r"--axes \1"),                     # "needs axes= (e.g. axes='ZYX')"
    (re.compile(r"\baxes="), "--axes"),
    (re.compile(r"\bdevice='(\w+)' or '(\w+)'"), r"--device \1 or \2"),
    (re.compile(r"\bdevice='(\w+)'"), r"--device \1"),
    (re.compile(r"\bweights='([^']*)'"), r"--set weights=\1"),
    (re.compile(r"\boutput= "), "--output "),                         # "output= names the result of one input"
)


def speak_cli(message: str) -> str:
    """Rewrite the API's keyword hints (``channel_axis=``...) as the CLI's flags (``--channel-axis``...)."""
    for pattern, replacement in _CLI_WORDS:
        message = pattern.sub(replacement, message)
    return message


# ----------------------------------------------------------------------------- errors


@contextlib.contextmanager
def about(path: str | Path | None) -> Iterator[None]:
    """Errors raised in the block are about ``path`` (the innermost ``about`` wins)."""
    try:
        yield
    except Exception as exc:
        if path is not None and not hasattr(exc, "_cli_path"):
            with contextlib.suppress(AttributeError):  # a few C-level exceptions take no attributes
                exc._cli_path = str(path)  # type: ignore[attr-defined]
        raise


def error_line(exc: BaseException) -> str | None:
    """``error: <file>: <message>`` for an error the user can act on; ``None`` for a bug."""
    message = user_message(exc)
    if message is None:
        return None
    # Missing weights are not about the input file; the message names the weight file itself.
    path = None if isinstance(exc, WeightsMissingError) else getattr(exc, "_cli_path", None)
    return f"error: {f'{path}: ' if path else ''}{speak_cli(message)}"


def report(exc: BaseException) -> bool:
    """Print the error line of a user error and return True; False for a bug (the caller re-raises it)."""
    line = error_line(exc)
    if line is not None:
        print(line, file=sys.stderr)
    return line is not None


# ----------------------------------------------------------------------------- output helpers


class ProgressBar:
    """A one-line progress bar on stderr: stage, steps and ETA (silent when stderr is not a
    terminal, unless ``always``)."""

    def __init__(self, label: str, always: bool = False, width: int = 28) -> None:
        from .types import EtaTracker

        self.label = label
        self.width = width
        self.enabled = always or sys.stderr.isatty()
        self.shown = False
        self.last = 0.0
        self.eta = EtaTracker()

    def __call__(self, p: Progress) -> None:
        now = time.perf_counter()
        eta_s = self.eta(p, now)  # fed every report, so the rate is measured even between redraws
        done = p.iteration >= p.total
        if not self.enabled or (now - self.last < 0.2 and not done):
            return
        self.last = now
        self.shown = True
        filled = int(min(1.0, p.fraction) * self.width)
        bar = "█" * filled + "·" * (self.width - filled)
        eta = "" if math.isnan(eta_s) else f" ETA {eta_s:4.0f}s"
        sys.stderr.write(f"\r{self.label} [{str(p.stage):>8}] {bar} {p.iteration}/{p.total}{eta}   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.shown = False


@contextlib.contextmanager
def progress_bar(label: str, always: bool = False) -> Iterator[ProgressBar]:
    """A :class:`ProgressBar` whose line is ended however the block ends (so errors start a fresh line)."""
    bar = ProgressBar(label, always)
    try:
        yield bar
    finally:
        bar.close()


def format_kernel(k: np.ndarray) -> str:
    return "\n".join(" ".join(f"{v:6.4f}" for v in row) for row in k)


def field_summary(field: Any) -> str:
    """One line about a kernel map: grid, time, trusted tiles and the range of blur widths."""
    maps = field.maps((min(field.image_shape[0], 64), min(field.image_shape[1], 64)))
    trusted = int((field.confidence >= 0.1).sum())
    return (f"kernel map {field.grid[0]}×{field.grid[1]} tiles in {field.elapsed:.1f} s ({field.method}; "
            f"{trusted} of {field.confidence.size} tiles trusted; blur σ {float(maps['width_major'].min()):.2f}–"
            f"{float(maps['width_major'].max()):.2f} input px along the long axis)")


def estimate_record(kernel_path: Path) -> dict[str, Any] | None:
    """The JSON record 'estimate' wrote beside a kernel file (``<stem>_kernel.json``), if the kernel is an
    estimate; ``None`` for any other kernel file (a measured PSF)."""
    from .vocabulary import LayerRole

    stem = kernel_path.stem
    for suffix in ("_kernel_x2", "_kernel_x4"):
        if stem.endswith(suffix):
            sidecar = kernel_path.with_name(stem[: -len(suffix)] + "_kernel.json")
            if sidecar.is_file():
                try:
                    record = json.loads(sidecar.read_text())
                except (OSError, ValueError):
                    return None
                return record if record.get("role") == str(LayerRole.KERNEL) else None
    return None


def safety_note(options: dict[str, Any]) -> str:
    """What the safeguards did (an SR result's ``options``), for the one-line summary (empty when they did
    not run)."""
    if not options.get("safe"):
        return ""
    if options.get("fallback"):
        return f"; WARNING: {options.get('fallback_reason')}: wrote {options['fallback']} interpolation"
    return f"; noise σ {float(options.get('noise_sigma', 0.0)):.1f}/255 measured"


def _method_label(est: KernelEstimate) -> str:
    label = f"{est.method}/{est.preset}" if est.preset else est.method
    return label if est.confidence is None else f"{label}, confidence {est.confidence:.2f}"


# ----------------------------------------------------------------------------- options


def estimator_options(args: argparse.Namespace, items: Sequence[str], flag: str) -> dict[str, Any]:
    """The estimator's options: ``KEY=VALUE`` items plus the ``--preset`` / ``--iterations`` shortcuts.

    Checked against the estimator's spec now, so a typo fails before any file is read or written.
    The shortcuts are passed only when given (not every estimator has them).
    """
    from .registry import ESTIMATORS

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
    from .registry import SR_METHODS

    opts = parse_assignments(items, flag=flag)
    SR_METHODS.get(args.sr_method).resolve(opts)
    return opts


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
    from .batch import BatchConfig

    out = getattr(args, "out", None)
    return BatchConfig(out=None if out is None else Path(out), scale=args.scale,
                       estimator=getattr(args, "estimator", "auto"),
                       estimator_options=est_opts, sr_method=sr_method, sr_options=sr_opts or {}, axes=args.axes,
                       per_slice=getattr(args, "per_slice", False),
                       per_channel=getattr(args, "per_channel", False), device=args.device, seed=args.seed,
                       threads=args.threads, **extra)


def _result_error(result: Any) -> None:
    path = f"{result.error_path}: " if result.error_path else ""
    print(f"error: {path}{speak_cli(result.error)}", file=sys.stderr)


def cmd_estimate(args: argparse.Namespace) -> int:
    from .batch import run_batch

    opts = estimator_options(args, args.set, "--set")
    cfg = _engine_config(args, opts, sr_method=None, channel_axis=args.channel_axis, stack_axis=args.stack_axis,
                         kernel_map=args.kernel_map, tile=args.tile, overlap=args.overlap, resume=False,
                         keep_results=True)

    def show(result: Any) -> None:
        if result.failed:
            _result_error(result)
            return
        for label, est in result.estimates:
            k = est.kernel_for(args.scale)
            print(f"{result.path}{f' {label}' if label else ''}: ×{args.scale} kernel {k.shape[0]}×{k.shape[1]} in "
                  f"{est.elapsed:.1f} s ({_method_label(est)}, {est.iterations} steps, {est.device}, seed {est.seed})")
            if not args.quiet:
                print(format_kernel(est.kernel))
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


def cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch

    est_opts = estimator_options(args, args.estimate_set, "--estimate-set")
    cfg = _engine_config(args, est_opts, sr_method=args.sr_method, sr_opts=sr_options(args, args.set),
                         resume=not args.redo)
    if args.workers is not None and args.scheduler is not None:
        raise BadOptionError("give --workers (a local cluster) or --scheduler (an existing one), not both")

    def show(result: Any) -> None:
        if result.failed:
            _result_error(result)
        elif not args.quiet:
            what = "finished before, outputs verified" if result.status == "skipped" else f"{result.seconds:.1f} s"
            out = result.output.name if result.output is not None else ""
            print(f"{result.path}: {result.status} → {out} ({what})")

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


def _sr_line(result: Any) -> tuple[str, dict[str, Any], float]:
    """``→ OUTPUT`` and, over the slices super-resolved, the SR options to report (a slice that fell back to
    interpolation, else the first) and the SR time."""
    runs = result.sr_runs
    shown = next((r for r in runs if r["options"].get("fallback")), runs[0])
    return f"{shown['sr_method']} → {result.output}", shown, sum(r["elapsed_s"] for r in runs)


def _sr_through_engine(args: argparse.Namespace, cfg: Any, show: Callable[[Any], None]) -> int:
    """Run ``sr`` / ``blind-sr`` on every input: a progress bar of the running input's steps, a line each."""
    from .batch import run_batch

    with progress_bar(Path(args.images[0]).name if len(args.images) == 1 else args.command) as bar:
        def done(result: Any) -> None:
            bar.close()  # the input's line starts on a fresh line
            if result.failed:
                _result_error(result)
            else:
                show(result)

        # Bugs keep their traceback, as in 'estimate'.
        batch = run_batch(args.images, cfg, callback=bar, on_result=done, summary=False, catch_bugs=False)
    return 1 if batch.failed else 0


def _stack_keywords(args: argparse.Namespace) -> dict[str, Any]:
    return {"channel_axis": args.channel_axis, "stack_axis": args.stack_axis, "output": args.output,
            "resume": False, "keep_results": True}


def cmd_sr(args: argparse.Namespace) -> int:
    from .io import read_kernel

    opts = sr_options(args, args.set)
    if (args.kernel is None) == (args.kernel_map is None):
        raise BadOptionError("give either --kernel (one kernel for the whole image) or --kernel-map (a kernel "
                             "map written by 'estimate --kernel-map')")
    if args.kernel_map is not None:
        from .fields import KernelField

        kernel = Path(args.kernel_map)
        with about(kernel):  # read once here, so a bad file is named before any input runs
            KernelField.load(kernel)
        if args.trust_kernel:
            opts.update(safe=False)
    else:
        kernel = Path(args.kernel)
        with about(kernel):
            read_kernel(kernel)
        record = None if args.trust_kernel else estimate_record(kernel)
        if record is not None:  # written by 'estimate': an estimate, used with super_resolve's safeguards
            opts.update(safe=True, confidence=record.get("confidence"))
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
        print(f"{result.path}: blind ×{args.scale} {what} (kernel {named}, {_method_label(est)}); estimate "
              f"{estimated:.1f} s, SR {seconds:.1f} s" + safety_note(run["options"]))

    return _sr_through_engine(args, cfg, show)


def cmd_demo(args: argparse.Namespace) -> int:
    from .api import estimate_kernel, super_resolve
    from .batch import all_or_nothing, write_estimate
    from .io import write_image, write_kernel
    from .physics import constant_gaussian, image_psnr, kernel_l1
    from .samples import TISSUE

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
    print(f"kernel estimated in {est.elapsed:.1f} s on {est.device} ({_method_label(est)}, seed {est.seed})")
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


# ----------------------------------------------------------------------------- parsers


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class DeprecatedAlias(argparse.Action):
    """An old flag that stores into the new flag's destination, with a warning on stderr."""

    def __init__(self, option_strings: list[str], dest: str, *, new_flag: str, **kwargs: Any) -> None:
        self.new_flag = new_flag
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"warning: {option_string} is deprecated; use {self.new_flag}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _plain(value: Any) -> str:
    return "None" if value is None else str(value)


def describe_methods(registry: Registry, flag: str, set_flag: str, default: str, *, blind: bool = False) -> str:
    """Help text for a registry: each method's summary, presets and options (``name=default``);
    with ``blind``, also the options an SR method gets for an estimated kernel."""
    width = max(60, min(120, shutil.get_terminal_size().columns) - 2)  # as argparse wraps

    def wrap(text: str, indent: int, hang: int = 0) -> list[str]:
        return textwrap.wrap(text, width, initial_indent=" " * indent, subsequent_indent=" " * (indent + hang),
                             break_on_hyphens=False) or [" " * indent]

    lines = [f"{registry.label}s ({flag} NAME; their options with {set_flag} KEY=VALUE):"]
    for spec in registry.specs():
        lines.append(f"  {spec.name}" + (" (default)" if spec.name == default else ""))
        lines += wrap(spec.summary, 6)
        if spec.presets:
            text = f"presets: {', '.join(spec.presets)} (default: {spec.defaults.get('preset')})"
            lines += wrap(text + (f"; {spec.help['preset']}" if spec.help.get("preset") else ""), 6, 9)
        lines += _option_lines(spec, wrap)
        if blind and spec.blind_defaults:
            given = ", ".join(f"{k}={_plain(v)}" for k, v in spec.blind_defaults.items())
            lines += wrap(f"for an estimated kernel (unless set): {given}", 6, 9)
    for name, reason in registry.unavailable.items():
        lines += wrap(f"{name}: unavailable ({reason})", 2, 4)
    lines.append("  (an option set to None is decided by the method or its preset)")
    return "\n".join(lines)


def _option_lines(spec: MethodSpec, wrap: Callable[..., list[str]]) -> list[str]:
    shown = [k for k in spec.defaults if k not in spec.hidden]
    if not shown:
        return wrap("options: none", 6)
    lines = wrap("options: " + ", ".join(f"{k}={_plain(spec.defaults[k])}" for k in shown), 6, 9)
    for key in spec.main:
        if key != "preset" and spec.help.get(key):
            lines += wrap(f"{key}: {spec.help[key]}", 8, 4)
    return lines


def _add_run_options(p: argparse.ArgumentParser, *, axes: bool = True, per_task: bool = False) -> None:
    from .devices import available_devices

    g = p.add_argument_group("run")
    g.add_argument("--device", default="auto", choices=available_devices(),
                   help="compute device (auto: the best present; default: %(default)s)")
    if per_task:  # one thread per input by default, so results do not depend on --workers
        g.add_argument("--threads", type=_positive_int, default=1, metavar="N",
                       help="PyTorch CPU threads per input (default: %(default)s; run inputs side by side with "
                            "--workers instead)")
    else:
        g.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                       help="PyTorch CPU threads (default: the free cores; $NAPARI_KERNELGAN_THREADS also sets it)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    if axes:
        g.add_argument("--channel-axis", type=int, default=None, metavar="AXIS",
                       help="axis holding channels (multichannel images)")
        g.add_argument("--stack-axis", type=int, default=None, metavar="AXIS",
                       help="axis of a Z/T stack whose frames share one kernel")


def _method_choices(registry: Registry) -> list[str]:
    # Unavailable methods are accepted here so that choosing one says why it is unavailable.
    return registry.names() + [n for n in registry.unavailable if n not in registry.names()]


def _add_method_flags(p: argparse.ArgumentParser, registry: Registry, flag: str, default: str, title: str, *,
                      set_flag: str, set_dest: str, example: str, alias: bool) -> argparse._ArgumentGroup:
    """The method selector ``flag``, its deprecated ``--method`` alias and the repeatable option flag."""
    choices = _method_choices(registry)
    dest = flag.lstrip("-").replace("-", "_")
    g = p.add_argument_group(title)
    g.add_argument(flag, default=default, choices=choices, metavar="NAME",
                   help=f"one of: {', '.join(choices)} (default: %(default)s; described below)")
    if alias:
        g.add_argument("--method", dest=dest, action=DeprecatedAlias, new_flag=flag,
                       choices=choices, metavar="NAME", help=f"deprecated alias of {flag}")
    g.add_argument(set_flag, dest=set_dest, action="append", default=[], metavar="KEY=VALUE",
                   help=f"an option of the {title} (repeatable), e.g. {example}")
    return g


def _add_estimator(p: argparse.ArgumentParser, set_flag: str, *, alias: bool) -> None:
    from .api import DEFAULT_ESTIMATOR
    from .registry import ESTIMATORS

    g = _add_method_flags(p, ESTIMATORS, "--estimator", DEFAULT_ESTIMATOR, "kernel estimator", set_flag=set_flag,
                          set_dest="set" if set_flag == "--set" else "estimate_set", example="anchor=bicubic",
                          alias=alias)
    g.add_argument("--preset", default=None, help=f"shortcut for {set_flag} preset=NAME (estimators with presets)")
    g.add_argument("--iterations", type=_positive_int, default=None, metavar="N",
                   help=f"shortcut for {set_flag} iterations=N")


def _add_sr_method(p: argparse.ArgumentParser, *, alias: bool) -> None:
    from .api import DEFAULT_SR_METHOD
    from .registry import SR_METHODS

    _add_method_flags(p, SR_METHODS, "--sr-method", DEFAULT_SR_METHOD, "SR method", set_flag="--set",
                      set_dest="set", example="sigma=2", alias=alias)


def _estimators_help(set_flag: str) -> str:
    from .api import DEFAULT_ESTIMATOR
    from .registry import ESTIMATORS

    return describe_methods(ESTIMATORS, "--estimator", set_flag, DEFAULT_ESTIMATOR)


def _sr_methods_help(blind: bool = False) -> str:
    from .api import DEFAULT_SR_METHOD
    from .registry import SR_METHODS

    return describe_methods(SR_METHODS, "--sr-method", "--set", DEFAULT_SR_METHOD, blind=blind)


def _add_axes_option(p: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    g = p.add_argument_group("stacks")
    g.add_argument("--axes", default=None, metavar="AXES",
                   help="axes of files without OME or ImageJ metadata, one letter per dimension, the image plane "
                        "last, e.g. ZYX, TZCYX or YXS (RGB); OME and ImageJ files name their own")
    return g


def _add_stack_options(p: argparse.ArgumentParser) -> None:
    g = _add_axes_option(p)
    how = g.add_mutually_exclusive_group()
    how.add_argument("--per-stack", dest="per_slice", action="store_false",
                     help="one kernel for all slices of a stack (the default)")
    how.add_argument("--per-slice", dest="per_slice", action="store_true", help="a kernel for every slice")
    p.set_defaults(per_slice=False)
    g.add_argument("--per-channel", action="store_true",
                   help="a kernel for every channel (the blur differs with the wavelength) instead of one shared by "
                        "all channels; with --per-slice, for every channel of every slice")


def build_estimate(p: argparse.ArgumentParser) -> None:
    from .kernel_map import MAX_GRID, TILE
    from .vocabulary import ESTIMATE_SCALES

    p.add_argument("images", nargs="+",
                   help="image files (TIFF, PNG, JPEG), folders or glob patterns; each image gets its own kernel")
    p.add_argument("--scale", type=int, default=2, choices=ESTIMATE_SCALES,
                   help="2: the ×2 kernel; 4: also the analytic ×4 one (default: %(default)s)")
    p.add_argument("--out", default="kernels", help="output folder (default: ./kernels)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print kernel values")
    p.add_argument("--kernel-map", action="store_true",
                   help="also estimate a kernel per tile: STEM_kernel_map.npz (for 'sr --kernel-map'), the "
                        "per-pixel width, orientation, anisotropy and confidence maps (STEM_kernel_map.tif) "
                        "and a plot of the tile kernels")
    p.add_argument("--tile", type=_positive_int, default=None,
                   help=f"kernel map tile side in pixels (default: {TILE}, larger on big images: at most "
                        f"{MAX_GRID}×{MAX_GRID} tiles)")
    p.add_argument("--overlap", type=int, default=32, help="pixels neighbouring tiles share (default: %(default)s)")
    _add_estimator(p, "--set", alias=True)
    _add_stack_options(p)
    _add_run_options(p)
    p.epilog = _estimators_help("--set")
    p.set_defaults(func=cmd_estimate)


def build_batch(p: argparse.ArgumentParser) -> None:
    from .vocabulary import ESTIMATE_SCALES

    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files (TIFF stacks, PNG, JPEG), folders or "
                   "glob patterns (quoted, e.g. 'data/*.tif')")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: kernels, super-resolved images, a manifest per input, summary.csv/.json")
    p.add_argument("--scale", type=int, default=2, choices=ESTIMATE_SCALES, help="(default: %(default)s)")
    p.add_argument("--redo", action="store_true",
                   help="process every input again (by default inputs finished before, with the same settings and "
                        "outputs unchanged, are skipped)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors and the closing line")
    g = p.add_argument_group("parallel (needs napari-kernelgan[dask])")
    g.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="run on a local Dask cluster of N single-threaded worker processes (loopback only)")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (its workers need this package "
                        "and must see the input and output folders)")
    _add_sr_method(p, alias=False)
    _add_estimator(p, "--estimate-set", alias=False)
    _add_stack_options(p)
    _add_run_options(p, axes=False, per_task=True)
    p.epilog = _sr_methods_help(blind=True) + "\n\n" + _estimators_help("--estimate-set")
    p.set_defaults(func=cmd_batch)


def _add_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (TIFF stacks, PNG, JPEG), folders or glob patterns; each result is written "
                        "beside its input")


def build_sr(p: argparse.ArgumentParser) -> None:
    from .vocabulary import SR_SCALES

    _add_images(p)
    p.add_argument("--kernel", default=None, help=".mat ('Kernel'), .npy or .tif, correlation orientation")
    p.add_argument("--kernel-map", default=None, metavar="NPZ",
                   help="a kernel map written by 'estimate --kernel-map' for this image, instead of --kernel: "
                        "each region is super-resolved with its own kernel")
    p.add_argument("--scale", type=int, default=2, choices=SR_SCALES, help="(default: %(default)s)")
    p.add_argument("--trust-kernel", action="store_true",
                   help="use a kernel written by 'estimate' as if measured: no safeguards (by default an "
                        "estimate gets the measured noise, its confidence and the check against bicubic)")
    p.add_argument("-o", "--output", default=None,
                   help="output image, for one input (default: IMAGE_sr_xS_METHOD.EXT beside each input)")
    _add_sr_method(p, alias=True)
    _add_axes_option(p)
    _add_run_options(p)
    p.epilog = _sr_methods_help()
    p.set_defaults(func=cmd_sr)


def build_blind_sr(p: argparse.ArgumentParser) -> None:
    from .vocabulary import ESTIMATE_SCALES

    _add_images(p)
    p.add_argument("--scale", type=int, default=2, choices=ESTIMATE_SCALES, help="(default: %(default)s)")
    p.add_argument("-o", "--output", default=None,
                   help="output image, for one input (default: IMAGE_sr_xS_METHOD.EXT beside each input); the "
                        "kernel goes beside it")
    _add_sr_method(p, alias=True)
    _add_estimator(p, "--estimate-set", alias=False)
    _add_stack_options(p)
    _add_run_options(p)
    p.epilog = _sr_methods_help(blind=True) + "\n\n" + _estimators_help("--estimate-set")
    p.set_defaults(func=cmd_blind_sr)


def build_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    _add_estimator(p, "--estimate-set", alias=False)
    _add_sr_method(p, alias=False)
    _add_run_options(p, axes=False)
    p.epilog = _estimators_help("--estimate-set") + "\n\n" + _sr_methods_help(blind=True)
    p.set_defaults(func=cmd_demo)


# name -> (one-line help, builder); a builder runs only for the subcommand being used
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "estimate": ("estimate the SR kernel of one or many images", build_estimate),
    "sr": ("super-resolve an image with a known kernel", build_sr),
    "batch": ("kernels and super-resolved images for many files and stacks, resumable, optionally on Dask",
              build_batch),
    "blind-sr": ("estimate the kernel, then super-resolve (kernel written beside)", build_blind_sr),
    "demo": ("estimate the kernel of a bundled sample blurred with a known kernel, then super-resolve",
             build_demo),
}


def command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the top level has no option that takes a value)."""
    for token in argv:
        if token == "--":
            continue
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s subparser gets its arguments (the others stay empty, and cheap)."""
    ap = argparse.ArgumentParser(prog=PROG, description="Blind SR-kernel estimation and kernel-aware "
                                 "super-resolution.", epilog=f"'{PROG} COMMAND --help' lists a command's "
                                 "options and the methods it can use.")
    ap.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (text, build) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text, formatter_class=argparse.RawDescriptionHelpFormatter)
        if name == command:
            build(p)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 1 for a user error, 130 when interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(command_in(argv)).parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("error: interrupted; no partial output was left", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:
        if not report(exc):
            raise  # a bug: keep its traceback
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
