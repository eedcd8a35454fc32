"""SR with a known PSF on real fluorescence: the true PSF against bicubic, blind SR and the raw method.

Each 2-D image of ``real_dev`` (a centre crop of at most 512 px, as the sharp HR object) is blurred
with realistic widefield PSFs made here from scalar Fourier optics (a circular pupil, its intensity
PSF ``|F⁻¹ P|²``): ``airy`` in focus (the Airy pattern, FWHM 2.09 HR px) and ``defocus``, the same
pupil with 0.6 waves of defocus at its rim (FWHM 2.50 px); subsampled ×2 by the package's own
degradation, scaled so that the brightest clean LR pixel holds 50, 300 or 2000 photons, Poisson
noise, offset 100 ADU, read noise 1.5 ADU, uint16. Columns (PSNR / SSIM against the scaled HR
object plus the offset, 4 px shaved):

* ``bicubic``: ``physics.resize.imresize``;
* ``true PSF``: ``super_resolve(lr, psf, 2)`` with every default (the safeguards on, confidence 1);
* ``blind``: ``blind_super_resolve(lr, 2)`` with every default;
* ``raw``: ``super_resolve(lr, psf, 2, safe=False)``, the method alone (the behaviour before the
  safeguards applied to arrays).

A result below bicubic is flagged when no ``UnsafeSRWarning`` told the user (for the true PSF and for
blind SR). Beside PSNR / SSIM, :func:`hf_error` measures the error's high-frequency part (grid-like
texture, ringing, amplified noise), which PSNR averages away.

    python benchmarks/known_kernel_benchmark.py --out docs/benchmarks_known_kernel.md
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from _report import emit  # benchmarks/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_kernelgan.physics.metrics import profile_fwhm

DATA = ROOT.parent / "shared" / "data" / "real_dev"
PHOTONS = (50.0, 300.0, 2000.0)
OFFSET, READ_NOISE = 100.0, 1.5
CROP = 512
PSF_SIZE = 21
# HR pixel in units of λ/NA: the Airy FWHM is 0.514 λ/NA, so 0.25 gives 2.09 px (sampled).
PIXEL = 0.25
PSFS = {"airy": 0.0, "defocus": 0.6}   # defocus in waves at the pupil's rim


def pupil_psf(pixel: float = PIXEL, defocus: float = 0.0, size: int = PSF_SIZE, grid: int = 512) -> np.ndarray:
    """Intensity PSF of a circular pupil (scalar, incoherent) sampled at ``pixel`` λ/NA, with ``defocus`` waves
    of quadratic phase at the rim; centred, ``size``×``size``, summing to 1."""
    f = np.fft.fftfreq(grid, d=pixel)               # spatial frequency in NA/λ
    fy, fx = np.meshgrid(f, f, indexing="ij")
    rho2 = fx ** 2 + fy ** 2                        # the pupil's edge is at ρ = 1 (the cutoff NA/λ)
    pupil = (rho2 <= 1.0) * np.exp(2j * np.pi * defocus * rho2)
    psf = np.fft.fftshift(np.abs(np.fft.ifft2(pupil)) ** 2)
    c, r = grid // 2, size // 2
    psf = psf[c - r:c + r + 1, c - r:c + r + 1]
    return psf / psf.sum()


def fwhm(psf: np.ndarray) -> float:
    """Full width at half maximum of the PSF's central row, in pixels."""
    return profile_fwhm(psf[psf.shape[0] // 2])


@dataclass
class Case:
    name: str
    psf_name: str
    photons: float
    lr: np.ndarray       # uint16
    hr: np.ndarray       # float, the target (photons per HR pixel scale, plus the offset)
    psf: np.ndarray


def images(data: Path = DATA) -> dict[str, np.ndarray]:
    """The 2-D real_dev images, centre-cropped to at most :data:`CROP` px (even sides), as float HR objects
    with their minimum at 0."""
    import tifffile

    out = {}
    for path in sorted(data.glob("*.tif")):
        arr = tifffile.imread(path)
        if arr.ndim != 2:
            continue
        h, w = (min(n, CROP) // 2 * 2 for n in arr.shape)
        r, c = (arr.shape[0] - h) // 2, (arr.shape[1] - w) // 2
        img = arr[r:r + h, c:c + w].astype(np.float64)
        out[path.stem] = img - img.min()
    return out


def make_case(name: str, hr: np.ndarray, psf_name: str, psf: np.ndarray, photons: float, seed: int) -> Case:
    """Blur, subsample ×2, scale to ``photons`` at the brightest clean LR pixel, Poisson + read noise, uint16."""
    from napari_kernelgan.physics import degrade

    clean = degrade(hr, psf, 2)
    factor = photons / float(clean.max())
    rng = np.random.default_rng(seed)
    lr = rng.poisson(np.clip(clean * factor, 0.0, None)) + OFFSET + rng.normal(0.0, READ_NOISE, clean.shape)
    lr = np.clip(np.round(lr), 0, 65535).astype(np.uint16)
    return Case(name, psf_name, photons, lr, hr * factor + OFFSET, psf)


def cases(data: Path = DATA, photons: tuple[float, ...] = PHOTONS, psfs: dict[str, float] = PSFS,
          limit: int | None = None) -> list[Case]:
    """Every image × PSF × photon level, seeded by position."""
    out = []
    for i, (name, hr) in enumerate(list(images(data).items())[:limit]):
        for j, (psf_name, defocus) in enumerate(psfs.items()):
            psf = pupil_psf(defocus=defocus)
            for q, p in enumerate(photons):
                out.append(make_case(name, hr, psf_name, psf, p, seed=1000 * i + 10 * j + q))
    return out


HF_SIGMA = 2.0   # HR px: the error's part finer than this Gaussian's pass band is the high-frequency part


def hf_error(est: np.ndarray, target: np.ndarray, data_range: float, shave: int = 4) -> float:
    """High-frequency artefact measure: the RMS of the error's high-pass part (the error minus its Gaussian
    blur of :data:`HF_SIGMA` HR px), in % of the data range, 4 px shaved. A grid-like texture, ringing and
    amplified noise count; a smooth bias (a slightly wrong brightness, a blurred edge) hardly does."""
    from scipy import ndimage

    err = np.asarray(est, np.float64) - np.asarray(target, np.float64)
    high = err - ndimage.gaussian_filter(err, HF_SIGMA, mode="reflect")
    high = high[shave:-shave, shave:-shave] if shave else high
    return float(100.0 * np.sqrt(np.mean(high ** 2)) / data_range)


def score(out: np.ndarray, case: Case) -> tuple[float, float, float]:
    """(PSNR, SSIM, :func:`hf_error`) of an SR output against the case's target, 4 px shaved, on the
    target's range."""
    from napari_kernelgan.physics import image_psnr, image_ssim

    est = np.asarray(out, dtype=np.float64)
    rng = float(case.hr.max() - OFFSET)
    return (image_psnr(est, case.hr, shave=4, data_range=rng), image_ssim(est, case.hr, shave=4, data_range=rng),
            hf_error(est, case.hr, rng))


def run_case(case: Case, threads: int, blind: bool = True) -> dict:
    """Every column for one case, with the safeguards' record of the true PSF's run."""
    from napari_kernelgan import blind_super_resolve, super_resolve
    from napari_kernelgan.physics.resize import imresize
    from napari_kernelgan.sr._safety import UnsafeSRWarning

    row: dict = {"image": case.name, "psf": case.psf_name, "photons": case.photons}
    row["bicubic"] = score(imresize(case.lr.astype(np.float64), 2), case)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = super_resolve(case.lr, case.psf, 2, seed=0, threads=threads)
    row["true_time"] = time.perf_counter() - t0
    row["warned"] = any(issubclass(w.category, UnsafeSRWarning) for w in caught)
    row["true"] = score(res.image, case)
    row["record"] = {k: res.options.get(k) for k in ("sigma", "noise_sigma", "safety_step", "poisson_refinement",
                                                      "fallback")}
    if blind:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            row["blind"] = score(blind_super_resolve(case.lr, 2, seed=0, threads=threads).image, case)
        row["blind_warned"] = any(issubclass(w.category, UnsafeSRWarning) for w in caught)
    row["raw"] = score(super_resolve(case.lr, case.psf, 2, seed=0, threads=threads, safe=False).image, case)
    return row


def report(rows: list[dict], command: str, elapsed: float, load: str = "") -> str:
    cols = ["bicubic", "true", "blind", "raw"]
    lines = ["# SR with a known PSF on real fluorescence (×2)", "",
             f"Command: `{command}`  ", f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, "
             f"load {os.getloadavg()[0]:.1f}{load}; {elapsed:.0f} s in all.", "",
             "Real `real_dev` 2-D images (centre crop ≤ 512 px) as HR objects, blurred with a pupil-model PSF "
             f"(`airy`: in focus, FWHM {fwhm(pupil_psf()):.2f} HR px; `defocus`: 0.6 waves, FWHM "
             f"{fwhm(pupil_psf(defocus=0.6)):.2f} px), ×2 subsampled, Poisson noise at the given peak photons, "
             f"offset {OFFSET:g} ADU, read noise {READ_NOISE:g} ADU, uint16. PSNR dB / SSIM against the HR object "
             "(4 px shaved). *true*: `super_resolve(lr, psf, 2)` with its defaults (safeguards on); *blind*: "
             "`blind_super_resolve(lr, 2)`; *raw*: `super_resolve(lr, psf, 2, safe=False)` (the method alone). "
             "Δ: true − bicubic. ⚠: the run warned and fell back to bicubic. *HF error*: the RMS of the error's "
             f"high-pass part (the error minus its Gaussian blur of {HF_SIGMA:g} HR px) in % of the range, for "
             "bicubic / true / blind: grid-like texture, ringing and amplified noise raise it. *RL steps*: "
             "the photon-limited refinement's count.", ""]
    head = ("| image | PSF | photons | " + " | ".join(cols) + " | Δ true−bicubic | Δ blind−bicubic | HF error (%) | "
            "σ used (ADU) | RL steps |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [f"{r[c][0]:.2f} / {r[c][1]:.3f}" if c in r else "–" for c in cols]
        rec = r["record"]
        sigma = "–" if rec.get("sigma") is None else f"{rec['sigma']:.2f}"
        steps = rec.get("poisson_refinement", "–")
        blind = (f"{r['blind'][0] - r['bicubic'][0]:+.2f}{' ⚠' if r.get('blind_warned') else ''}"
                 if "blind" in r else "–")
        hf = " / ".join(f"{r[c][2]:.2f}" if c in r else "–" for c in ("bicubic", "true", "blind"))
        lines.append(f"| {r['image']} | {r['psf']} | {r['photons']:g} | " + " | ".join(cells)
                     + f" | {r['true'][0] - r['bicubic'][0]:+.2f}{' ⚠' if r['warned'] else ''} | {blind} | {hf} | "
                       f"{sigma} | {steps} |")
    lines += ["", "## Means", "", "| photons | cases | " + " | ".join(cols) + " | Δ true−bicubic | Δ true−blind | "
              "Δ blind−bicubic | HF error (%) | true ≥ bicubic + 0.5 | below bicubic, no warning (true / blind) |",
              "|" + "---|" * 11]
    for p in sorted({r["photons"] for r in rows}) + [None]:
        sel = [r for r in rows if p is None or r["photons"] == p]
        has_blind = all("blind" in r for r in sel)
        means = [np.mean([r[c][0] for r in sel]) if all(c in r for r in sel) else np.nan for c in cols]
        ssims = [np.mean([r[c][1] for r in sel]) if all(c in r for r in sel) else np.nan for c in cols]
        hfs = [np.mean([r[c][2] for r in sel]) if all(c in r for r in sel) else np.nan
               for c in ("bicubic", "true", "blind")]
        d_bic = np.mean([r["true"][0] - r["bicubic"][0] for r in sel])
        d_blind = np.mean([r["true"][0] - r["blind"][0] for r in sel]) if has_blind else np.nan
        d_bb = np.mean([r["blind"][0] - r["bicubic"][0] for r in sel]) if has_blind else np.nan
        ok = sum(r["true"][0] >= r["bicubic"][0] + 0.5 for r in sel)
        silent = sum(r["true"][0] < r["bicubic"][0] and not r["warned"] for r in sel)
        silent_blind = (sum(r["blind"][0] < r["bicubic"][0] and not r.get("blind_warned") for r in sel)
                        if has_blind else "–")
        label = "all" if p is None else f"{p:g}"
        lines.append(f"| {label} | {len(sel)} | " + " | ".join(f"{m:.2f} / {s:.3f}" for m, s in zip(means, ssims))
                     + f" | {d_bic:+.2f} | {d_blind:+.2f} | {d_bb:+.2f} | " + " / ".join(f"{h:.2f}" for h in hfs)
                     + f" | {ok}/{len(sel)} | {silent} / {silent_blind} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--limit", type=int, default=None, help="first N images only")
    ap.add_argument("--no-blind", action="store_true", help="leave out blind SR (faster)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--load-note", default="", help="a note on the machine's load, appended to its line")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data folder {args.data}: nothing to measure")
        return 0
    start = time.perf_counter()
    rows = []
    for case in cases(args.data, limit=args.limit):
        rows.append(run_case(case, args.threads, blind=not args.no_blind))
        r = rows[-1]
        print(f"{case.name} {case.psf_name} {case.photons:g}: bicubic {r['bicubic'][0]:.2f} true {r['true'][0]:.2f} "
              f"raw {r['raw'][0]:.2f}" + (f" blind {r['blind'][0]:.2f}" if "blind" in r else "")
              + f" {r['record']}", file=sys.stderr, flush=True)
    command = "python benchmarks/known_kernel_benchmark.py " + " ".join(argv if argv is not None else sys.argv[1:])
    load = f" ({args.load_note})" if args.load_note else ""
    emit(report(rows, command.strip(), time.perf_counter() - start, load), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
