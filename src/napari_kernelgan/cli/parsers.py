"""The command line's parsers, built per subcommand (only the one named on the command line, so ``--help``
and ``--version`` stay instant), and the help that lists each method with its presets and options."""
from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import __version__
from .commands import cmd_axial, cmd_batch, cmd_blind_sr, cmd_demo, cmd_estimate, cmd_sr
from .errors import FLAGS, flags_of

if TYPE_CHECKING:
    from ..registry import MethodSpec, Registry

__all__ = ["PROG", "COMMANDS", "command_in", "build_parser", "describe_methods", "DeprecatedAlias"]

PROG = "napari-kernelgan"


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
    from ..devices import available_devices

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
    from ..api import DEFAULT_ESTIMATOR
    from ..registry import ESTIMATORS

    g = _add_method_flags(p, ESTIMATORS, "--estimator", DEFAULT_ESTIMATOR, "kernel estimator", set_flag=set_flag,
                          set_dest="set" if set_flag == "--set" else "estimate_set", example="anchor=bicubic",
                          alias=alias)
    g.add_argument("--preset", default=None, help=f"shortcut for {set_flag} preset=NAME (estimators with presets)")
    g.add_argument("--iterations", type=_positive_int, default=None, metavar="N",
                   help=f"shortcut for {set_flag} iterations=N")


def _add_sr_method(p: argparse.ArgumentParser, *, alias: bool) -> None:
    from ..api import DEFAULT_SR_METHOD
    from ..registry import SR_METHODS

    _add_method_flags(p, SR_METHODS, "--sr-method", DEFAULT_SR_METHOD, "SR method", set_flag="--set",
                      set_dest="set", example="sigma=2", alias=alias)


def _estimators_help(set_flag: str) -> str:
    from ..api import DEFAULT_ESTIMATOR
    from ..registry import ESTIMATORS

    return describe_methods(ESTIMATORS, "--estimator", set_flag, DEFAULT_ESTIMATOR)


def _sr_methods_help(blind: bool = False) -> str:
    from ..api import DEFAULT_SR_METHOD
    from ..registry import SR_METHODS

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


def _add_optics_flags(p: argparse.ArgumentParser) -> None:
    """The microscope's optics, over what each input's file says (for the estimators that take them)."""
    g = p.add_argument_group("optics (read from each file's OME or ImageJ metadata, per channel; these flags "
                             "override it; used by the estimators that take them, e.g. optics)")
    g.add_argument("--na", dest="na", default=None, metavar="NA",
                   help="the objective's numerical aperture (below the immersion's index; oil's 1.515 without "
                        "--immersion)")
    g.add_argument("--wavelength", dest="wavelength_um", default=None, metavar="UM",
                   help="emission wavelength in µm (0.52 for 520 nm)")
    g.add_argument("--immersion", dest="n_immersion", default=None, metavar="MEDIUM",
                   help="immersion: oil, water, glycerol, silicone, air or its refractive index")
    g.add_argument("--modality", dest="modality", default=None, choices=("widefield", "confocal"))
    g.add_argument("--pinhole-au", dest="pinhole_au", default=None, metavar="AU",
                   help="confocal pinhole diameter in Airy units (not with --modality widefield)")
    g.add_argument("--pixel-size", dest="pixel_um", default=None, metavar="UM",
                   help="the input images' pixel size in µm")
    g.add_argument("--no-file-optics", dest="file_optics", action="store_false",
                   help="do not read the optics from the files (only these flags)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_axial_options(g: argparse._ArgumentGroup, method_flag: str) -> None:
    """The z sampling, factor and method of an axial run (``axial``, and ``batch --axial``)."""
    from ..batch.config import AXIAL_METHODS, DEFAULT_AXIAL_METHOD

    g.add_argument("--z-step", dest="z_step", type=_positive_float, default=None, metavar="UM",
                   help="distance between z planes in µm, for stacks whose file does not record it (over the file's "
                        "value, with a notice, where it does)")
    g.add_argument("--z-factor", dest="z_factor", type=int, default=None, choices=range(1, 9), metavar="F",
                   help="planes made per z step, 1-8 (default: z step / pixel size, rounded: isotropic voxels)")
    g.add_argument(method_flag, dest="axial_method", default=DEFAULT_AXIAL_METHOD, choices=AXIAL_METHODS,
                   help="auto (default): the full 3-D PSF of a widefield optics model where the PSF has one, "
                        "else smore; "
                        "smore: a network trained on the stack's own lateral detail; deconvolve: "
                        "closed-form / Richardson-Lucy with the 3-D PSF; cubic: interpolation (the baseline)")
    g.add_argument("--psf-only", action="store_true",
                   help="estimate and write the 3-D PSF and its record, no isotropic stack")
    g.add_argument("--psf", dest="psf3d", default=None, metavar="TIFF",
                   help="a measured 3-D bead PSF (ImageJ or OME TIFF with its voxel size) used instead of an estimate")


def build_axial(p: argparse.ArgumentParser) -> None:
    p.add_argument("stacks", nargs="+", metavar="STACK",
                   help="z-stacks (ImageJ / OME TIFF with their pixel size and z spacing, or plain 3-D TIFFs read as "
                        "ZYX), folders or glob patterns; a channel axis gets a PSF per channel, a T axis each time "
                        "point made isotropic")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: beside each input): STEM_isotropic.EXT, STEM_psf3d.tif (one per "
                        "channel: STEM_cK_psf3d.tif) and STEM_axial.json")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist (by default they are refused)")
    g = p.add_argument_group("axial")
    _add_axial_options(g, "--sr-method")
    _add_optics_flags(p)
    _add_axes_option(p)
    _add_run_options(p, axes=False)
    p.set_defaults(func=cmd_axial)


def build_estimate(p: argparse.ArgumentParser) -> None:
    from ..kernel_map import MAX_GRID, TILE
    from ..vocabulary import ESTIMATE_SCALES

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
    _add_optics_flags(p)
    _add_stack_options(p)
    _add_run_options(p)
    p.epilog = _estimators_help("--set")
    p.set_defaults(func=cmd_estimate)


def build_batch(p: argparse.ArgumentParser) -> None:
    from ..vocabulary import ESTIMATE_SCALES

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
    g = p.add_argument_group("axial (z-stacks: 3-D PSF and isotropic voxels instead of 2-D kernels and SR)")
    g.add_argument("--axial", action="store_true",
                   help="estimate each z-stack's 3-D PSF and make its voxels isotropic, as the 'axial' command")
    _add_axial_options(g, "--axial-method")
    _add_optics_flags(p)
    _add_stack_options(p)
    _add_run_options(p, axes=False, per_task=True)
    p.epilog = _sr_methods_help(blind=True) + "\n\n" + _estimators_help("--estimate-set")
    p.set_defaults(func=cmd_batch)


def _add_images(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image files (TIFF stacks, PNG, JPEG), folders or glob patterns; each result is written "
                        "beside its input")


def build_sr(p: argparse.ArgumentParser) -> None:
    from ..vocabulary import SR_SCALES

    _add_images(p)
    p.add_argument("--kernel", default=None, help=".mat ('Kernel'), .npy or .tif, correlation orientation; or a "
                   "measured PSF (bead image or z-stack TIFF) at its own pixel size")
    p.add_argument("--kernel-pixel-size", "--psf-pixel-size", type=float, default=None, metavar="UM",
                   help="pixel size of the --kernel PSF in µm, when its file does not say it: the PSF is then "
                        "resampled to the super-resolved pixel (the image's / --scale)")
    p.add_argument("--pixel-size", type=float, default=None, metavar="UM",
                   help="pixel size of the input images in µm, when their files do not say it (for a measured PSF)")
    p.add_argument("--kernel-map", default=None, metavar="NPZ",
                   help="a kernel map written by 'estimate --kernel-map' for this image, instead of --kernel: "
                        "each region is super-resolved with its own kernel")
    p.add_argument("--scale", type=int, default=2, choices=SR_SCALES, help="(default: %(default)s)")
    p.add_argument("--trust-kernel", action="store_true",
                   help="trust a kernel written by 'estimate' fully, as a measured PSF is (confidence 1): the "
                        "noise is still measured and the result checked against bicubic")
    p.add_argument("--no-safeguards", action="store_true",
                   help="run the SR method alone (experts): no measured noise (sigma 0 unless given with --set), "
                        "no Richardson-Lucy refinement, no check against bicubic. By default every kernel, "
                        "measured or estimated, gets them")
    p.add_argument("-o", "--output", default=None,
                   help="output image, for one input (default: IMAGE_sr_xS_METHOD.EXT beside each input)")
    _add_sr_method(p, alias=True)
    _add_axes_option(p)
    _add_run_options(p)
    p.epilog = _sr_methods_help()
    p.set_defaults(func=cmd_sr)


def build_blind_sr(p: argparse.ArgumentParser) -> None:
    from ..vocabulary import ESTIMATE_SCALES

    _add_images(p)
    p.add_argument("--scale", type=int, default=2, choices=ESTIMATE_SCALES, help="(default: %(default)s)")
    p.add_argument("-o", "--output", default=None,
                   help="output image, for one input (default: IMAGE_sr_xS_METHOD.EXT beside each input); the "
                        "kernel goes beside it")
    _add_sr_method(p, alias=True)
    _add_estimator(p, "--estimate-set", alias=False)
    _add_optics_flags(p)
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
    "axial": ("estimate a z-stack's 3-D PSF from the stack itself and make its voxels isotropic", build_axial),
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
    FLAGS.update(flags_of(ap))  # error messages name the flags of the parser built
    return ap
