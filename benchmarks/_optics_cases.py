"""Real-optics SR cases: real fluorescence images blurred ×2 with physical and measured bead PSFs.

The generator behind ``benchmarks/real_optics_benchmark.py``, importable so that other scripts (calibrations)
build the DEVELOPMENT cases exactly the same way::

    from _optics_cases import DEVELOPMENT, build, draw_cases, write_case   # benchmarks/ on sys.path
    for spec in draw_cases(DEVELOPMENT, seed=DEV_SEED):
        case = build(spec)                   # arrays: HR target, uint16 LR, true PSF, bead stack
        files = write_case(case, folder)     # ImageJ TIFFs with their pixel size, as a user has them

**HR objects.** The 2-D images of ``shared/data/real_dev`` scaled to [0, 1] between their 0.5 and 99.8
percentiles (clipped: the plant image has saturated pixels); those over 300 pixels on their short side are
area-averaged 2×2 first, so that their own blur (about two pixels at their native sampling) is about one HR
pixel; then a crop of at most ``crop`` pixels a side (even sides) at a position drawn from the case's seed.

**Optics** (``physics.optics``), one family per case, every image gets every family once per round:

* ``widefield``: in focus, matched immersion: air NA 0.8, water NA 1.0 or 1.2, oil NA 1.4;
* ``defocus``: widefield NA 1.0–1.4, 0.3–0.6 µm out of focus (either side);
* ``depth``: oil NA 1.3 or 1.4 into water, glycerol-like (1.38) or mounting medium (1.45) at 2–12 µm depth,
  the stage at the brightest plane (``best_focus_um``): spherical aberration from the index mismatch;
* ``spherical``: 0.05–0.15 waves RMS of primary spherical aberration (sign drawn), at the brightest plane;
  widefield on even images, confocal on odd ones;
* ``confocal``: NA 0.8, 1.2 or 1.4, excitation 405/488/561 nm, emission 20–60 nm longer, pinhole 0.6–1.5 AU;
* ``bead_widefield`` / ``bead_confocal``: in-focus widefield or confocal (NA 1.2 or 1.4), whose SR kernel
  is *measured*: a noisy 3-D bead stack at the camera's pixel (the LR pixel), 21 planes 0.1–0.25 µm apart, the
  bead a point at a random sub-pixel position and up to half a plane off the stack's planes, 800–8000 photons
  at its peak, and turned into the kernel by ``kernel_from_psf_file`` (``physics.measured.measure_psf``).

Emission 0.50–0.62 µm (widefield). The HR pixel is chosen so that the PSF's full width at half maximum on the HR
grid (the outer half-maximum diameter of the pixel-integrated PSF, so also for a defocused ring) is 2.0–2.6 px.
The image is degraded with the full PSF (the side holding 99.5 % of the light that falls on 151×151 px) by
``physics.degrade`` (×2); the true PSF a user would give is the same PSF on at most 75×75 (the largest kernel
the SR methods take).

**Camera.** Peak photons at the brightest clean LR pixel 50, 100, 300, 1000 or 2000 (rotated over images and
families), a background of 1–5 % of the peak, Poisson noise, gain 0.8–2.2 ADU per photon, read noise 1.5 e⁻,
offset 100 ADU, rounded to uint16. The HR target is the object on the same scale (gain × photons + offset).
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

DATA = ROOT.parent / "shared" / "data" / "real_dev"
DEVELOPMENT = ("cell_microtubules", "golgi_confocal")
REPORT = ("autophagosomes", "cell_actin", "h2ax_foci", "nuclei_dsb2018", "plant_tissue_confocal")
REPORT_SEED, DEV_SEED = 2020, 1010
FAMILIES = ("widefield", "defocus", "depth", "spherical", "confocal", "bead_widefield", "bead_confocal")
PHOTONS = (50.0, 100.0, 300.0, 1000.0, 2000.0)
OFFSET, READ_NOISE_E = 100.0, 1.5
SCALE = 2
CROP = 256
FWHM_RANGE = (2.0, 2.6)      # HR pixels
L1_SIDE = 41                 # the common support of kernel comparisons
KERNEL_SIDE = 75             # the true PSF as a user gives it (the SR methods' largest kernel)
FULL_SIDE, FULL_MASS = 151, 0.995   # the degradation's PSF: the side holding 99.5 % of the light on 151×151
BEAD_PLANES, BEAD_FIELD_HR = 21, 65   # bead stack: planes; lateral field in HR pixels before binning to the camera

# Objectives (NA, immersion index) per family.
_WIDEFIELD = ((0.8, 1.0), (1.0, 1.333), (1.2, 1.333), (1.4, 1.515))
_DEFOCUS = ((1.0, 1.333), (1.2, 1.333), (1.3, 1.515), (1.4, 1.515))
_CONFOCAL = ((0.8, 1.0), (1.2, 1.333), (1.4, 1.515))
_BEAD = ((1.2, 1.333), (1.4, 1.515))
_EXCITATION = (0.405, 0.488, 0.561)


@dataclass(frozen=True)
class CaseSpec:
    """Everything that makes one case, JSON-friendly (``dataclasses.asdict``)."""

    name: str                      # e.g. "cell_actin/defocus"
    image: str
    family: str
    optics: dict                   # keyword arguments of physics.Optics
    z_um: float                    # the image's plane, from the focus (µm)
    pixel_um: float                # HR pixel
    photons: float                 # at the brightest clean LR pixel
    background: float              # photons per LR pixel
    gain: float                    # ADU per photon
    crop: tuple[int, int, int, int]  # y0, x0, height, width on the prepared image
    seed: int
    bead: dict | None = None       # z_step_um, focus_offset_um, photons, background, shift (HR px)

    @property
    def lr_pixel_um(self) -> float:
        return SCALE * self.pixel_um


@dataclass
class Case:
    """A built case: ``hr`` (float, ADU: the target), ``lr`` (uint16), ``psf_full`` (the degradation's PSF),
    ``kernel`` (the true PSF at most 75×75, sum 1), ``bead`` (uint16 (z, y, x) stack or ``None``), ``fwhm_px``."""

    spec: CaseSpec
    hr: np.ndarray
    lr: np.ndarray
    psf_full: np.ndarray
    kernel: np.ndarray
    fwhm_px: float
    bead: np.ndarray | None = None
    extras: dict = field(default_factory=dict)

    @property
    def truth_41(self) -> np.ndarray:
        """The full PSF on the common 41×41 support (sum 1)."""
        from napari_kernelgan.physics import pad_to

        k = pad_to(self.psf_full, L1_SIDE)
        return k / k.sum()


@dataclass(frozen=True)
class CaseFiles:
    """Where :func:`write_case` put a case: the LR image, the true PSF (a kernel file), the bead stack (or None)."""

    lr: Path
    psf: Path
    bead: Path | None


# --------------------------------------------------------------------------------------------- HR objects
def load_object(name: str, data: Path = DATA) -> np.ndarray:
    """The prepared HR object (float in [0, 1]; images over 300 px on the short side averaged 2×2)."""
    import tifffile

    img = tifffile.imread(data / f"{name}.tif").astype(np.float64)
    if img.ndim != 2:
        raise ValueError(f"{name} is not a 2-D image (shape {img.shape})")
    lo, hi = np.percentile(img, [0.5, 99.8])
    img = np.clip((img - lo) / (hi - lo), 0.0, 1.0)
    if min(img.shape) > 300:
        h, w = img.shape[0] // 2 * 2, img.shape[1] // 2 * 2
        img = img[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    return img


# --------------------------------------------------------------------------------------------- optics
def _optics(spec: CaseSpec):
    from napari_kernelgan.physics import Optics

    return Optics(**spec.optics)


def outer_fwhm_px(kernel: np.ndarray) -> float:
    """The outer half-maximum diameter (pixels) of a rotationally symmetric kernel: twice the largest radius at
    which its central row, interpolated by cubic splines, is at least half its maximum. The FWHM for a peaked
    PSF; for a defocused ring, the ring's outer half-maximum diameter."""
    from scipy import ndimage

    c = kernel.shape[0] // 2
    t = np.arange(0.0, c, 0.01)
    row = ndimage.map_coordinates(kernel, [np.full_like(t, c), c + t], order=3)
    above = np.flatnonzero(row >= 0.5 * row.max())
    return float(2 * t[above[-1]]) if len(above) else 0.0


def _psf(optics, pixel_um: float, size: int, z_um: float) -> np.ndarray:
    from napari_kernelgan.physics import psf_2d

    return psf_2d(optics, pixel_um, size, z_um=z_um)


def _pixel_for_fwhm(optics, z_um: float, target_px: float) -> float:
    """The HR pixel (µm) at which the PSF's outer FWHM is ``target_px`` (fixed point: the width in µm barely
    depends on the pixel, except through pixel integration)."""
    pixel = 0.51 * optics.wavelength_um / (optics.na * target_px)
    for _ in range(3):
        width = outer_fwhm_px(_psf(optics, pixel, 41, z_um))
        pixel *= width / target_px
    return round(pixel, 5)


# --------------------------------------------------------------------------------------------- drawing
def draw_cases(names: tuple[str, ...] = REPORT, rounds: int = 1, seed: int = REPORT_SEED, crop: int = CROP,
               families: tuple[str, ...] = FAMILIES, data: Path = DATA) -> list[CaseSpec]:
    """Every image × family, ``rounds`` times, with optics, pixel, camera and crop drawn from ``seed``."""
    from napari_kernelgan.physics import Optics
    from napari_kernelgan.physics.optics import best_focus_um

    rng = np.random.default_rng(seed)
    out = []
    for r in range(rounds):
        for i, name in enumerate(names):
            shape = load_object(name, data).shape
            for j, fam in enumerate(families):
                opt, z, bead = _draw_optics(fam, i, rng)
                optics = Optics(**opt)
                if fam in ("depth", "spherical"):
                    z = round(best_focus_um(optics), 4)
                fwhm = float(rng.uniform(*FWHM_RANGE))
                pixel = _pixel_for_fwhm(optics, z, fwhm)
                h, w = (min(n, crop) // 2 * 2 for n in shape)
                y0, x0 = int(rng.integers(0, shape[0] - h + 1)), int(rng.integers(0, shape[1] - w + 1))
                photons = PHOTONS[(i + j + r) % len(PHOTONS)]
                if bead is not None:
                    bead["shift"] = [int(v) for v in rng.integers(0, SCALE, 2)]
                out.append(CaseSpec(
                    name=f"{name}/{fam}", image=name, family=fam, optics=opt, z_um=z, pixel_um=pixel,
                    photons=photons, background=round(float(rng.uniform(0.01, 0.05)) * photons, 3),
                    gain=round(float(rng.uniform(0.8, 2.2)), 3), crop=(y0, x0, h, w),
                    seed=int(rng.integers(1 << 31)), bead=bead))
    return out


def _draw_optics(family: str, image_index: int, rng: np.random.Generator) -> tuple[dict, float, dict | None]:
    """(Optics keywords, z_um, bead parameters or None) for one case of ``family``."""
    lam = round(float(rng.uniform(0.50, 0.62)), 3)
    bead = None
    z = 0.0
    if family == "widefield":
        na, n = _WIDEFIELD[int(rng.integers(len(_WIDEFIELD)))]
        opt = {"na": na, "wavelength_um": lam, "n_immersion": n}
    elif family == "defocus":
        na, n = _DEFOCUS[int(rng.integers(len(_DEFOCUS)))]
        opt = {"na": na, "wavelength_um": lam, "n_immersion": n}
        z = round(float(rng.uniform(0.3, 0.6) * rng.choice([-1, 1])), 3)
    elif family == "depth":
        opt = {"na": float(rng.choice([1.3, 1.4])), "wavelength_um": lam, "n_immersion": 1.515,
               "n_sample": float(rng.choice([1.333, 1.38, 1.45])), "depth_um": round(float(rng.uniform(2, 12)), 2)}
    elif family == "spherical":
        na, n = _DEFOCUS[int(rng.integers(len(_DEFOCUS)))]
        opt = {"na": na, "wavelength_um": lam, "n_immersion": n,
               "spherical": round(float(rng.uniform(0.05, 0.15) * rng.choice([-1, 1])), 3)}
        if image_index % 2:
            opt.update(_confocal_light(rng))
    elif family == "confocal":
        na, n = _CONFOCAL[int(rng.integers(len(_CONFOCAL)))]
        opt = {"na": na, "n_immersion": n, **_confocal_light(rng)}
    elif family in ("bead_widefield", "bead_confocal"):
        na, n = _BEAD[int(rng.integers(len(_BEAD)))]
        opt = {"na": na, "wavelength_um": lam, "n_immersion": n}
        if family == "bead_confocal":
            opt.update(_confocal_light(rng))
        step = round(float(rng.uniform(0.1, 0.25)), 3)
        bead = {"z_step_um": step, "focus_offset_um": round(float(rng.uniform(-0.5, 0.5)) * step, 4),
                "photons": round(float(np.exp(rng.uniform(np.log(800), np.log(8000)))), 1),
                "background": round(float(rng.uniform(5, 20)), 2)}
    else:
        raise ValueError(f"unknown family {family!r}; one of {', '.join(FAMILIES)}")
    return opt, z, bead


def _confocal_light(rng: np.random.Generator) -> dict:
    ex = float(rng.choice(_EXCITATION))
    return {"modality": "confocal", "excitation_um": ex, "wavelength_um": round(ex + float(rng.uniform(0.02, 0.06)), 3),
            "pinhole_au": round(float(rng.uniform(0.6, 1.5)), 2)}


# --------------------------------------------------------------------------------------------- building
def build(spec: CaseSpec, data: Path = DATA) -> Case:
    """The case's arrays: the degraded uint16 LR image, its HR target, the PSFs and (bead cases) the bead stack."""
    from napari_kernelgan.physics import degrade, pad_to, support_side

    optics = _optics(spec)
    rng = np.random.default_rng(spec.seed)
    y0, x0, h, w = spec.crop
    obj = load_object(spec.image, data)[y0:y0 + h, x0:x0 + w]
    # support_for() counts the rings out to where 99 % of all the light is (over 1000 px at depth, and slow);
    # the degradation takes the side holding FULL_MASS of what falls on FULL_SIDE² pixels.
    psf_full = _psf(optics, spec.pixel_um, FULL_SIDE, spec.z_um)
    psf_full = pad_to(psf_full, support_side(psf_full, FULL_MASS))
    psf_full /= psf_full.sum()
    kernel = pad_to(psf_full, KERNEL_SIDE) if len(psf_full) > KERNEL_SIDE else psf_full
    kernel = kernel / kernel.sum()
    clean = degrade(obj, psf_full, SCALE)
    amp = spec.photons / float(clean.max())
    counts = rng.poisson(np.clip(clean * amp + spec.background, 0.0, None))
    adu = spec.gain * counts + OFFSET + rng.normal(0.0, READ_NOISE_E * spec.gain, clean.shape)
    lr = np.clip(np.round(adu), 0, 65535).astype(np.uint16)
    hr = spec.gain * (obj * amp + spec.background) + OFFSET
    bead = _bead_stack(spec, optics, rng) if spec.bead is not None else None
    return Case(spec, hr, lr, psf_full, kernel, outer_fwhm_px(pad_to(psf_full, max(L1_SIDE, len(psf_full)))), bead)


def _bead_stack(spec: CaseSpec, optics, rng: np.random.Generator) -> np.ndarray:
    """A noisy (z, y, x) uint16 bead stack at the camera's (LR) pixel: the 3-D PSF on the HR grid, moved by
    ``shift`` HR pixels and binned ``SCALE``×``SCALE``, planes offset from the focus by ``focus_offset_um``."""
    from napari_kernelgan.physics import psf_3d

    b = spec.bead
    bead_optics = dataclasses.replace(optics, defocus_um=optics.defocus_um + b["focus_offset_um"])
    v = psf_3d(bead_optics, spec.pixel_um, b["z_step_um"], (BEAD_PLANES, BEAD_FIELD_HR, BEAD_FIELD_HR))
    n = (BEAD_FIELD_HR + SCALE - 1) // SCALE * SCALE
    big = np.zeros((BEAD_PLANES, n, n))
    sy, sx = b["shift"]
    big[:, sy:sy + BEAD_FIELD_HR, sx:sx + BEAD_FIELD_HR] = v
    cam = big.reshape(BEAD_PLANES, n // SCALE, SCALE, n // SCALE, SCALE).sum((2, 4))
    counts = rng.poisson(cam / cam.max() * b["photons"] + b["background"])
    adu = spec.gain * counts + OFFSET + rng.normal(0.0, READ_NOISE_E * spec.gain, cam.shape)
    return np.clip(np.round(adu), 0, 65535).astype(np.uint16)


def write_case(case: Case, folder: Path) -> CaseFiles:
    """The case as a user has it: the LR image and the bead stack as uint16 ImageJ TIFFs with their pixel size
    (µm; z spacing for the stack), the true PSF as a float TIFF kernel on the SR grid."""
    import tifffile

    from napari_kernelgan.io import write_kernel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = case.spec.name.replace("/", "__")
    px = case.spec.lr_pixel_um
    lr_path = folder / f"{stem}.tif"
    tifffile.imwrite(lr_path, case.lr, imagej=True, resolution=(1 / px, 1 / px), metadata={"unit": "um"})
    psf_path = write_kernel(folder / f"{stem}_psf.tif", case.kernel)
    bead_path = None
    if case.bead is not None:
        bead_path = folder / f"{stem}_beads.tif"
        tifffile.imwrite(bead_path, case.bead, imagej=True, resolution=(1 / px, 1 / px),
                         metadata={"unit": "um", "spacing": case.spec.bead["z_step_um"], "axes": "ZYX"})
    return CaseFiles(lr_path, psf_path, bead_path)


def oracle_gaussian_l1(truth: np.ndarray) -> tuple[float, float]:
    """(L1, σ) of the best isotropic Gaussian against ``truth`` on its support (σ from 0.3 to 8 px in 0.05 steps):
    an oracle, fitted to the true PSF."""
    from napari_kernelgan.physics import gaussian_kernel, kernel_l1

    side = truth.shape[0]
    scores = [(kernel_l1(gaussian_kernel(side, s), truth), float(s)) for s in np.arange(0.3, 8.0001, 0.05)]
    return min(scores)
