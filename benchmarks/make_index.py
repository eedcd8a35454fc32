"""Assemble ``docs/benchmarks.md`` from the reports the benchmark scripts wrote.

Each ``docs/benchmarks_*.md`` is a full report (command, machine, per-image rows); the index
keeps every report's summary (everything before its per-image section) and links to the rest,
so no figure is typed by hand.

    python benchmarks/make_index.py            # after benchmarks/run_all.sh
"""
from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Report file -> heading in the index, in reading order.
SECTIONS = [
    ("benchmarks_kernel_x2.md", "Kernel estimation ×2: every estimator, one run"),
    ("benchmarks_kernel_meta_official_x2.md", "Kernel estimation ×2: MetaKernelGAN with the official weights"),
    ("benchmarks_kernel_paper_x2.md", "Kernel estimation ×2: KernelGAN as published (`paper` preset)"),
    ("benchmarks_kernel_x2_noisy.md", "Kernel estimation ×2 with Gaussian noise σ = 10/255"),
    ("benchmarks_kernel_x4.md", "Kernel estimation ×4"),
    ("benchmarks_kernel_x2_gpu.md", "Kernel estimation ×2 on a GPU"),
    ("calibration_auto.txt", "How `auto` was fitted: two-fold cross-validation inside images 1–30 and on "
                             "generated fluorescence"),
    ("calibration_safety.txt", "How the safeguards of SR with an estimated kernel were fitted: two-fold "
                               "cross-validation on generated data only"),
    ("benchmarks_sr_x2.md", "Super-resolution ×2 (estimated kernel: `auto`, with the API's safeguards)"),
    ("benchmarks_sr_x4.md", "Super-resolution ×4 (estimated kernel: `auto`, with the API's safeguards)"),
    ("benchmarks_safety.md", "Super-resolution with a wrong kernel or noise: the safeguards"),
    ("benchmarks_microscopy.md", "Generated fluorescence microscopy (noisy uint16)"),
    ("benchmarks_microscopy_unseen.md", "Generated fluorescence microscopy from a seed no constant was chosen on"),
    ("benchmarks_microscopy_x4.md", "Generated fluorescence microscopy ×4"),
    ("benchmarks_samples.md", "The bundled samples"),
    ("benchmarks_real_optics.md", "Real optics: real fluorescence degraded with physical and measured bead PSFs"),
    ("benchmarks_known_kernel.md", "Super-resolution with a known PSF (the safeguarded known-kernel path)"),
    ("calibration_known_kernel.txt", "How the known-kernel noise gain was fitted: two-fold cross-validation on "
                                     "development images and generated data"),
    ("benchmarks_optics_estimator.md", "The `optics` estimator and `auto`'s microscope mode on microscope PSFs"),
    ("calibration_auto_optics.txt", "How `auto`'s microscope mode was fitted: two-fold cross-validation on "
                                    "development images and generated fluorescence"),
    ("benchmarks_psf_models.md", "Physical PSF models against closed-form facts"),
    ("benchmarks_axial.md", "Axial: 3-D PSF estimation and isotropic SR on generated z-stacks"),
    ("benchmarks_axial_timing.md", "Axial: time and memory on a 64×512×512 stack"),
    ("benchmarks_kernel_map.md", "Kernel maps and spatially varying SR"),
    ("benchmarks_tile_pass.md", "Kernel-map tiles in one pass against tile after tile"),
    ("benchmarks_batch.md", "Batch processing: 1,000 files serially and on Dask, a kill and a rerun, a "
                            "memory-mapped stack"),
    ("benchmarks_sr_neural_x2.md", "Super-resolution ×2, neural methods"),
    ("benchmarks_threads.md", "CPU threads under load"),
    ("benchmarks_adjoint.md", "The strided adjoint on the CPU"),
    ("benchmarks_activity.md", "napari's activity progress under software OpenGL"),
    ("benchmarks_reproduction.md", "Reproduction of the figures after a code change"),
]
# Reports shown whole (per-image rows included), not only their summary.
WHOLE = {"benchmarks_kernel_x2.md"}

PREFACE = """# Benchmarks

Every figure below was written by a script in `benchmarks/`; each section names the command
that produced it, the machine and the thread count. `bash benchmarks/run_all.sh` reruns all of
them (about an hour on 2 CPU cores) and rebuilds this page with `benchmarks/make_index.py`.

Data: the DIV2KRK development split (images 1–30; `--data` points at a folder with `lr_x2/`,
`lr_x4/`, `gt_k_x2/`, `gt_k_x4/` and, for super-resolution, `hr/`). Kernel L1 compares kernels
zero-padded to a common odd size, centred, the estimate moved by the integer shift in [−3, 3]²
that minimises the L1 sum. Every table carries its trivial baseline from the same run: the
fixed isotropic Gaussian (σ = 1.6 on 13×13 at ×2, σ = 3.5 on 31×31 at ×4) for kernels, bicubic
interpolation for super-resolution.
"""


def summary(text: str) -> str:
    """The report without its title and per-image section."""
    lines = text.splitlines()
    out = []
    for line in lines[1:] if lines and lines[0].startswith("#") else lines:
        if line.lstrip("# ").startswith("Per image"):
            break
        # The report's own sections sit one level below the index's.
        out.append("#" + line if line.startswith("##") else line)
    return "\n".join(out).strip()


# Reports whose first table goes into the README, between these markers.
README_TABLES = [("benchmarks_kernel_x2.md", "Kernel estimation ×2"),
                 ("benchmarks_kernel_x4.md", "Kernel estimation ×4"),
                 ("benchmarks_kernel_x2_noisy.md", "Kernel estimation ×2, noise σ = 10/255"),
                 ("benchmarks_sr_x2.md", "Super-resolution ×2, nine images with HR"),
                 ("benchmarks_sr_x4.md", "Super-resolution ×4, nine images with HR"),
                 ("benchmarks_microscopy.md", "Generated fluorescence microscopy"),
                 ("benchmarks_samples.md", "Bundled samples"),
                 ("benchmarks_real_optics.md", "Real optics: real fluorescence, physical and measured bead PSFs"),
                 ("benchmarks_kernel_map.md", "Kernel maps on spatially varying blur")]
BEGIN, END = "<!-- figures: written by benchmarks/make_index.py -->", "<!-- /figures -->"


def first_table(text: str) -> str:
    """The first markdown table in ``text``."""
    rows, started = [], False
    for line in text.splitlines():
        if line.startswith("|"):
            rows.append(line)
            started = True
        elif started:
            break
    return "\n".join(rows)


def update_readme(readme: Path, docs: Path) -> None:
    """Replace the block between the README's figure markers with the reports' headline tables."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        return
    blocks = [f"**{title}** ([report](docs/{name}))\n\n{first_table((docs / name).read_text())}"
              for name, title in README_TABLES if (docs / name).is_file()]
    head, rest = text.split(BEGIN, 1)
    readme.write_text(head + BEGIN + "\n\n" + "\n\n".join(blocks) + "\n\n" + END + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = ap.parse_args(argv)
    parts = [PREFACE]
    for name, title in SECTIONS:
        path = args.docs / name
        if not path.is_file():
            parts.append(f"## {title}\n\nNot run yet: `{name}` is missing.\n")
            continue
        text = path.read_text()
        if path.suffix == ".txt":
            body = f"```\n{text.strip()}\n```"
        elif name in WHOLE:
            body = "\n".join("#" + line if line.startswith("##") else line for line in text.splitlines()[1:]).strip()
        else:
            body = summary(text)
        parts.append(f"## {title}\n\n{body}\n\nFull report: [{name}]({name}).\n")
    out = args.docs / "benchmarks.md"
    out.write_text("\n".join(parts))
    print(f"wrote {out}")
    update_readme(ROOT / "README.md", args.docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
