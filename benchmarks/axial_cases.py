"""Generated z-stacks with a known physical 3-D PSF and an isotropic truth: the cases of the axial report.

Every case is an **isotropic object** on a grid whose voxel is the lateral pixel (0.08–0.15 µm), handed to
:func:`napari_kernelgan.synthetic3d.axial_case` (``object_volume=``), which blurs it with the physical 3-D PSF
of the case's optics (:func:`~napari_kernelgan.physics.optics.psf_3d`, centred on its brightest plane), keeps
every ``factor``-th plane (stack plane ``i`` is truth plane ``i * factor``) and adds Poisson and read noise in
uint16 ADU. The truth is the object seen with the lateral resolution in all three directions. Three kinds of
object:

* **procedural** — :func:`~napari_kernelgan.synthetic3d.microscopy_volume` (nuclei, filaments, puncta,
  membranes, mixed), one seed per case.
* **real texture** — a 2-D real image of ``shared/data/real_dev`` made into a volume whose z lines are real
  image lines, as its x lines are (the estimator assumes a statistically isotropic object; so do real
  specimens). Each XZ plane ``(z, x)`` of the volume is a crop of the image, image rows along z and columns
  along x; as y advances by one voxel the crop's origin moves one pixel along a smooth random path (its
  direction turns by a few degrees per step and it is reflected at the image's borders, so no mirrored
  content appears). So x lines are image rows, z lines image columns, and y lines the image read along that
  path: all three are real image lines at the image's own pixel, which is taken as the nominal voxel. The
  values are bicubic-spline samples of the image (the path's positions are not whole pixels), the background
  (1st percentile) is removed and the 99.9th percentile is scaled to 1 (saturated pixels clip there), with a
  floor of 1 % as the procedural volumes have.
* **real 3-D** — ``chromosomes_3d.tif`` (34 nm lateral, 150 nm z): binned 3×3 laterally (0.1017 µm; 4×4
  would leave planes of 38×31 pixels, below the 32×32 the axial estimate needs) and resampled in z onto the
  same 0.1017 µm grid (cubic spline), background removed and scaled as above. Its
  own z blur (unknown optics at 150 nm steps) is part of this object, so it is less isotropic than the others.

Optics span NA 0.8–1.4 (air, water and oil objectives), widefield and confocal (pinhole 0.5–1.5 AU), matched
and mismatched immersion (an oil objective focused 5–20 µm into a sample of index 1.33–1.38), emission
0.45–0.68 µm; z factor 3–5; 50–2000 photons at the brightest voxel; read noise 1–3 e⁻. The PSF's extent
(:func:`psf_shape`) covers its on-axis profile down to 1 % of the peak and the light cone out to that depth.

DEVELOPMENT cases (:func:`development_cases`: procedural seeds below 100, the images cell_microtubules and
golgi_confocal) are for looking at; REPORT cases (:func:`report_cases`: seeds from 1000, the other images and
the real 3-D chromosomes) are only measured. No object is shared between the two sets, nor with the stacks
the axial estimator's constants are fitted on (``benchmarks/calibrate_axial.py``: seeds 100–299, held out
300+).

    python benchmarks/axial_cases.py --write DIR            # the REPORT cases as files the CLI can read
    python benchmarks/axial_cases.py --write DIR --dev      # the DEVELOPMENT cases

``--write`` writes per case ``NAME.tif`` (the stack, uint16 ImageJ TIFF, axes ZYX, pixel size as resolution,
z step as ``spacing``, unit um), ``NAME_truth.npy`` (float32, stack units without offset), ``NAME_psf.npy``
(the true 3-D PSF on the truth's grid, float32) and ``cases.json`` (each case's optics and sampling).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real_dev"
DEV_IMAGES = ("cell_microtubules", "golgi_confocal")
REPORT_IMAGES = ("autophagosomes", "cell_actin", "h2ax_foci", "nuclei_dsb2018", "plant_tissue_confocal")
CHROMOSOMES = "chromosomes_3d"
CHROMOSOME_BIN = 3
OFFSET = 100.0
PROFILE_FLOOR = 0.01  # the PSF's z extent reaches down to this fraction of its on-axis peak
MAX_HALF_Z, MAX_HALF_XY = 60, 40  # PSF half-sides (voxels): bounds on the generation's cost


@dataclass(frozen=True)
class CaseSpec:
    """How one case is made: the object (``source``: ``"procedural:KIND"``, ``"real:IMAGE"`` or
    ``"real3d:chromosomes_3d"``), the optics (keyword arguments of ``Optics``), the sampling and the noise."""

    name: str
    source: str
    seed: int
    optics: dict
    pixel_um: float
    factor: int
    planes: int  # stack planes; the truth has (planes - 1) * factor + 1
    side: int = 96  # lateral side of the truth (a real 3-D object keeps its own)
    photons: float = 500.0
    read_noise: float = 1.5

    @property
    def truth_shape(self) -> tuple[int, int, int]:
        return ((self.planes - 1) * self.factor + 1, self.side, self.side)

    @property
    def modality(self) -> str:
        return self.optics.get("modality", "widefield")

    @property
    def immersion(self) -> str:
        """``matched`` or ``mismatched`` (the sample's index differs from the immersion's)."""
        n_s = self.optics.get("n_sample")
        return "matched" if n_s is None or n_s == self.optics.get("n_immersion", 1.515) else "mismatched"


def _oil(na: float, wl: float, **kw) -> dict:
    return {"na": na, "wavelength_um": wl, "n_immersion": 1.515, **kw}


def _water(na: float, wl: float, **kw) -> dict:
    return {"na": na, "wavelength_um": wl, "n_immersion": 1.333, **kw}


def _air(na: float, wl: float, **kw) -> dict:
    return {"na": na, "wavelength_um": wl, "n_immersion": 1.0, **kw}


CONF = {"modality": "confocal"}


def development_cases() -> list[CaseSpec]:
    """The DEVELOPMENT cases: procedural seeds below 100 and the images cell_microtubules and golgi_confocal."""
    return [
        CaseSpec("dev_nuclei_wf_oil", "procedural:nuclei", 11, _oil(1.4, 0.52), 0.1, 4, 21, photons=500),
        CaseSpec("dev_filaments_conf_water", "procedural:filaments", 12, _water(1.2, 0.58, **CONF, pinhole_au=1.0),
                 0.1, 4, 21, photons=200),
        CaseSpec("dev_puncta_wf_air", "procedural:puncta", 13, _air(0.9, 0.6), 0.14, 3, 25, photons=1000),
        CaseSpec("dev_membranes_conf_oil", "procedural:membranes", 14, _oil(1.3, 0.52, **CONF, pinhole_au=0.6),
                 0.09, 5, 17, photons=300, read_noise=2.0),
        CaseSpec("dev_mixed_wf_mismatch", "procedural:mixed", 15, _oil(1.4, 0.6, n_sample=1.36, depth_um=10),
                 0.1, 4, 21, photons=800),
        CaseSpec("dev_microtubules_wf_oil", "real:cell_microtubules", 16, _oil(1.4, 0.52), 0.13, 4, 21,
                 photons=400),
        CaseSpec("dev_microtubules_conf_mismatch", "real:cell_microtubules", 17,
                 _oil(1.4, 0.6, **CONF, pinhole_au=1.0, n_sample=1.33, depth_um=6), 0.1, 3, 25, photons=150),
        CaseSpec("dev_golgi_conf_water", "real:golgi_confocal", 18, _water(1.1, 0.55, **CONF, pinhole_au=1.2),
                 0.12, 4, 21, photons=600, read_noise=1.0),
        CaseSpec("dev_golgi_wf_air", "real:golgi_confocal", 19, _air(0.8, 0.65), 0.15, 3, 25, photons=80,
                 read_noise=2.5),
    ]


def report_cases() -> list[CaseSpec]:
    """The REPORT cases: seeds from 1000, the other real_dev images, and the real 3-D chromosomes."""
    return [
        CaseSpec("nuclei_wf_oil", "procedural:nuclei", 1001, _oil(1.4, 0.52), 0.1, 4, 21, photons=500),
        CaseSpec("filaments_conf_oil", "procedural:filaments", 1002, _oil(1.4, 0.58, **CONF, pinhole_au=1.0),
                 0.08, 5, 17, photons=200, read_noise=2.0),
        CaseSpec("puncta_wf_water", "procedural:puncta", 1003, _water(1.2, 0.61), 0.11, 3, 27, photons=1000),
        CaseSpec("membranes_conf_water", "procedural:membranes", 1004, _water(1.2, 0.52, **CONF, pinhole_au=0.5),
                 0.1, 4, 21, photons=100, read_noise=1.0),
        CaseSpec("mixed_wf_mismatch", "procedural:mixed", 1005, _oil(1.4, 0.6, n_sample=1.33, depth_um=8), 0.1, 4,
                 21, photons=2000),
        CaseSpec("autophagosomes_wf_air", "real:autophagosomes", 1006, _air(0.8, 0.52), 0.15, 3, 25, photons=300,
                 side=80),
        CaseSpec("autophagosomes_conf_oil", "real:autophagosomes", 1007, _oil(1.3, 0.45, **CONF, pinhole_au=0.8),
                 0.09, 5, 17, photons=600, side=80),
        CaseSpec("actin_conf_oil", "real:cell_actin", 1008, _oil(1.4, 0.68, **CONF, pinhole_au=1.5), 0.12, 4, 21,
                 photons=800),
        CaseSpec("actin_wf_water", "real:cell_actin", 1009, _water(1.0, 0.52), 0.12, 3, 25, photons=250,
                 read_noise=3.0),
        CaseSpec("h2ax_wf_mismatch", "real:h2ax_foci", 1010, _oil(1.3, 0.52, n_sample=1.36, depth_um=15), 0.1, 4,
                 21, photons=150, side=112),
        CaseSpec("h2ax_conf_air", "real:h2ax_foci", 1011, _air(0.95, 0.6, **CONF, pinhole_au=1.0), 0.13, 3, 25,
                 photons=1500),
        CaseSpec("nuclei2d_conf_air", "real:nuclei_dsb2018", 1012, _air(0.95, 0.45, **CONF, pinhole_au=1.0), 0.13,
                 3, 25, photons=50, read_noise=3.0),
        CaseSpec("nuclei2d_wf_oil", "real:nuclei_dsb2018", 1013, _oil(1.4, 0.65), 0.1, 5, 17, photons=400),
        CaseSpec("plant_conf_mismatch", "real:plant_tissue_confocal", 1014,
                 _oil(1.4, 0.52, **CONF, pinhole_au=1.0, n_sample=1.38, depth_um=20), 0.09, 5, 17, photons=400),
        CaseSpec("plant_wf_oil", "real:plant_tissue_confocal", 1015, _oil(1.2, 0.6), 0.11, 4, 21, photons=120,
                 read_noise=2.0, side=112),
        CaseSpec("chromosomes_conf_oil", "real3d:" + CHROMOSOMES, 1016, _oil(1.4, 0.6, **CONF, pinhole_au=1.0),
                 0.0339 * CHROMOSOME_BIN, 3, 20, photons=500),
    ]


def quick_cases() -> list[CaseSpec]:
    """Three small REPORT-set cases (procedural, real texture, real 3-D): a smoke run."""
    by_name = {c.name: c for c in report_cases()}
    return [dataclasses.replace(by_name["nuclei_wf_oil"], planes=13, side=64),
            dataclasses.replace(by_name["actin_conf_oil"], planes=13, side=64),
            by_name["chromosomes_conf_oil"]]


def _normalise(values: np.ndarray) -> np.ndarray:
    """Background (1st percentile) removed, 99.9th percentile at 1 (brighter values clip), floor 0.01."""
    lo, hi = np.percentile(values, [1.0, 99.9])
    out = np.clip((values - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return 0.01 + 0.99 * out


def _path(n: int, room: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``n`` positions (row, col) of unit steps in a slowly turning direction, reflected inside ``[0, room]``."""
    pos = np.array([rng.uniform(0, room[0]), rng.uniform(0, room[1])])
    angle = rng.uniform(0, 2 * np.pi)
    out = np.empty((n, 2))
    for i in range(n):
        out[i] = pos
        angle += rng.normal(0.0, 0.08)
        pos = pos + (math.sin(angle), math.cos(angle))
        for a in range(2):  # reflect at the border so no mirrored content is ever read
            if room[a] <= 0:
                pos[a] = 0.0
                continue
            if pos[a] < 0:
                pos[a] = -pos[a]
            if pos[a] > room[a]:
                pos[a] = 2 * room[a] - pos[a]
            pos[a] = min(max(pos[a], 0.0), room[a])
    return out


def texture_volume(image: np.ndarray, shape: tuple[int, int, int], seed: int) -> np.ndarray:
    """A volume ``(z, y, x)`` whose XZ planes are crops of the 2-D ``image`` sliding along a smooth path in y
    (see the module's docstring), normalised; float64."""
    from scipy import ndimage

    img = np.asarray(image, dtype=np.float64)
    nz, ny, nx = shape
    room = (img.shape[0] - nz, img.shape[1] - nx)
    if min(room) < 0:
        raise ValueError(f"an image of {img.shape} cannot give {nz}×{nx} planes")
    coeffs = ndimage.spline_filter(img, order=3)
    path = _path(ny, room, np.random.default_rng(seed))
    zz, xx = np.meshgrid(np.arange(nz, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij")
    vol = np.empty(shape)
    for y, (r, c) in enumerate(path):
        vol[:, y, :] = ndimage.map_coordinates(coeffs, [zz + r, xx + c], order=3, prefilter=False, mode="nearest")
    return _normalise(vol)


def chromosome_volume(data: Path = DATA) -> np.ndarray:
    """``chromosomes_3d.tif`` binned laterally and resampled in z onto the same grid, normalised; float64."""
    import tifffile
    from scipy import ndimage

    raw = tifffile.imread(data / f"{CHROMOSOMES}.tif").astype(np.float64)
    b = CHROMOSOME_BIN
    nz, ny, nx = raw.shape[0], raw.shape[1] // b * b, raw.shape[2] // b * b
    binned = raw[:, :ny, :nx].reshape(nz, ny // b, b, nx // b, b).mean(axis=(2, 4))
    z_zoom = 0.15 / (0.0339 * b)  # 150 nm planes onto the binned pixel
    return _normalise(ndimage.zoom(binned, (z_zoom, 1, 1), order=3, mode="nearest"))


def object_for(spec: CaseSpec, data: Path = DATA) -> np.ndarray:
    """The isotropic object of a case (its truth's grid), float64, brightest voxel about 1."""
    from napari_kernelgan.synthetic3d import microscopy_volume

    kind, _, what = spec.source.partition(":")
    if kind == "procedural":
        return microscopy_volume(spec.truth_shape, spec.seed, kind=what)
    if kind == "real":
        import tifffile

        return texture_volume(tifffile.imread(data / f"{what}.tif"), spec.truth_shape, spec.seed)
    if kind == "real3d":
        vol = chromosome_volume(data)
        nz = spec.truth_shape[0]
        if vol.shape[0] < nz:
            raise ValueError(f"{what} has {vol.shape[0]} planes on the isotropic grid, the case needs {nz}")
        start = (vol.shape[0] - nz) // 2
        return vol[start:start + nz]
    raise ValueError(f"unknown case source {spec.source!r}")


def psf_shape(optics, pixel_um: float, volume_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The odd ``(z, y, x)`` extent of a case's PSF: the on-axis profile down to 1 % of its peak, and laterally
    the light cone at that depth plus an Airy unit, bounded by the volume (the blur's mirror padding) and by
    the generation's cost."""
    from napari_kernelgan.physics.optics import on_axis_reach_um

    half_z_um = on_axis_reach_um(optics, PROFILE_FLOOR, step_um=pixel_um / 2)
    half_z = min(math.ceil(half_z_um / pixel_um), MAX_HALF_Z, volume_shape[0] - 1)
    sin_a = min(optics.na / optics.sample_index, 0.95)
    cone_um = half_z * pixel_um * sin_a / math.sqrt(1 - sin_a ** 2) + optics.airy_unit_um
    half_xy = min(math.ceil(cone_um / pixel_um), MAX_HALF_XY, min(volume_shape[1:]) - 1)
    return (2 * half_z + 1, 2 * half_xy + 1, 2 * half_xy + 1)


def build(spec: CaseSpec, data: Path = DATA):
    """The :class:`~napari_kernelgan.synthetic3d.AxialCase` of ``spec`` (same spec, same arrays)."""
    from napari_kernelgan.physics.optics import Optics
    from napari_kernelgan.synthetic3d import axial_case

    optics = Optics(**spec.optics)
    obj = object_for(spec, data)
    return axial_case(spec.seed, optics, pixel_um=spec.pixel_um, factor=spec.factor, photons=spec.photons,
                      read_noise=spec.read_noise, offset=OFFSET, object_volume=obj,
                      psf_shape=psf_shape(optics, spec.pixel_um, obj.shape))


def describe(spec: CaseSpec) -> dict:
    """The case's parameters as plain JSON values."""
    return {**dataclasses.asdict(spec), "modality": spec.modality, "immersion": spec.immersion,
            "truth_shape": list(spec.truth_shape), "z_step_um": spec.pixel_um * spec.factor}


def write_case(spec: CaseSpec, case, folder: Path) -> Path:
    """Write ``case`` as ``NAME.tif`` (ImageJ, ZYX, pixel size, z spacing, µm), ``NAME_truth.npy`` and
    ``NAME_psf.npy`` in ``folder``; returns the stack's path."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}.tif"
    res = 1.0 / case.pixel_um
    tifffile.imwrite(path, case.stack, imagej=True, resolution=(res, res),
                     metadata={"axes": "ZYX", "spacing": case.z_step_um, "unit": "um"})
    np.save(folder / f"{spec.name}_truth.npy", case.truth.astype(np.float32))
    np.save(folder / f"{spec.name}_psf.npy", case.psf.astype(np.float32))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", type=Path, required=True, help="folder for the stacks, truths and PSFs")
    ap.add_argument("--dev", action="store_true", help="the DEVELOPMENT cases")
    ap.add_argument("--data", type=Path, default=DATA, help="the real_dev folder")
    args = ap.parse_args(argv)
    specs = development_cases() if args.dev else report_cases()
    rows = []
    for spec in specs:
        case = build(spec, args.data)
        path = write_case(spec, case, args.write)
        rows.append({**describe(spec), "stack": path.name, "axial_fwhm_um": case.axial_fwhm_um,
                     "psf_shape": list(case.psf.shape), "truth_shape": list(case.truth.shape)})
        print(f"{path} {case.stack.shape} axial FWHM {case.axial_fwhm_um:.3f} µm", file=sys.stderr, flush=True)
    (args.write / "cases.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
