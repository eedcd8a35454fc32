"""Sample images degraded ×2 with a known kernel.

One definition per sample, used by the demo, the napari sample menu and the
tests: the high-resolution original, the true ×2 kernel and the degraded
low-resolution image (``physics.degrade``, rounded to the original's dtype).
:data:`NOISY_FLUORESCENCE` is a widefield camera image instead: a generated fluorescence
object (:func:`napari_kernelgan.synthetic.microscopy_scene`) blurred by a physical PSF
(:func:`napari_kernelgan.physics.optics.psf_2d`: NA 1.3 oil, 520 nm, slightly defocused), Poisson
shot noise and read noise, with its optics (:meth:`SampleCase.hints`) for the estimators.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from .physics.degrade import degrade
from .physics.kernels import gaussian_kernel
from .vocabulary import KERNEL_SIZE

SCALE = 2

__all__ = ["SampleCase", "NoisySampleCase", "VaryingSampleCase", "SAMPLES", "VARYING_SAMPLES", "TISSUE", "ASTRONAUT",
           "FLUORESCENCE", "NOISY_FLUORESCENCE", "TISSUE_VARYING", "fluorescence_volume", "SCALE"]


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return getattr(data, name)()
    return load


def fluorescence_volume(shape: tuple[int, int, int] = (8, 512, 512), seed: int = 0) -> np.ndarray:
    """A synthetic fluorescence z-stack (uint16): nuclei, puncta and filaments on a dim background."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    z, h, w = shape
    vol = np.zeros((z + 8, h, w), dtype=np.float32)  # margin in z so the blur has neighbours
    for count, sigma, level in ((40, (3.0, 14.0, 14.0), 60.0), (400, (1.0, 1.2, 1.2), 8.0)):
        idx = (rng.integers(0, z + 8, count), rng.integers(0, h, count), rng.integers(0, w, count))
        spots = np.zeros_like(vol)
        np.add.at(spots, idx, rng.uniform(0.5, 1.0, count).astype(np.float32))
        blob = ndimage.gaussian_filter(spots, sigma)
        vol += level * blob / max(float(blob.max()), 1e-12)
    lines = np.zeros_like(vol)
    for _ in range(25):
        # Filaments: smooth random walks drawn one pixel wide, then blurred.
        angle = rng.uniform(0, 2 * np.pi) + rng.normal(0, 0.15, 600).cumsum()
        r = np.clip(rng.uniform(0, h) + np.cumsum(np.sin(angle)), 0, h - 1).astype(int)
        c = np.clip(rng.uniform(0, w) + np.cumsum(np.cos(angle)), 0, w - 1).astype(int)
        lines[rng.integers(0, z + 8), r, c] = 1.0
    lines = ndimage.gaussian_filter(lines, (2.0, 1.0, 1.0))
    vol += 30.0 * lines / max(float(lines.max()), 1e-12)
    vol = vol[4:4 + z]
    vol = vol / float(vol.max())
    return np.round(200 + 3800 * vol).astype(np.uint16)


@dataclass(frozen=True)
class SampleCase:
    """A sample: ``load()`` gives the HR original; the true kernel is the anisotropic Gaussian
    with standard deviations ``sigma`` (pixels, along the rotated axes) rotated by ``theta_deg`` degrees."""

    key: str
    name: str                       # the napari layer name of the LR image
    title: str
    sigma: tuple[float, float]
    theta_deg: float
    source: str
    load: Callable[[], np.ndarray]
    rgb: bool
    stacked: bool = False           # the first axis holds slices, each degraded on its own
    pixel_um: float | None = None   # the LR image's pixel size in µm, where the sample has one

    def hints(self) -> dict[str, Any]:
        """The optics the sample's metadata states (:func:`~napari_kernelgan.optics_hints.optics_hints`'s keys);
        empty for a sample that is no microscope image."""
        return {}

    def kernel(self) -> np.ndarray:
        """The true ×2 kernel (13×13, centred, correlation orientation)."""
        return gaussian_kernel(KERNEL_SIZE, self.sigma[0], self.sigma[1], np.deg2rad(self.theta_deg))

    def hr(self) -> np.ndarray:
        return self.load()

    def lr(self, hr: np.ndarray | None = None) -> np.ndarray:
        """The degraded ×2 image in the original's dtype (rounded and clipped)."""
        hr = self.hr() if hr is None else hr
        k = self.kernel()
        high = float(np.iinfo(hr.dtype).max)

        def one(plane: np.ndarray) -> np.ndarray:
            lr = degrade(plane.astype(np.float64), k, SCALE)
            return np.clip(np.round(lr), 0, high).astype(hr.dtype)

        return np.stack([one(p) for p in hr]) if self.stacked else one(hr)


TISSUE = SampleCase("tissue", "tissue LR", "Tissue micrograph, blurred ×2 with a known kernel (microscopy)",
                    (2.2, 0.9), 30.0, "skimage.data.immunohistochemistry", _skimage("immunohistochemistry"), rgb=True)
ASTRONAUT = SampleCase("astronaut", "astronaut LR", "Astronaut, blurred ×2 with a known kernel (natural RGB)",
                       (2.4, 1.1), -50.0, "skimage.data.astronaut", _skimage("astronaut"), rgb=True)
FLUORESCENCE = SampleCase("fluorescence", "fluorescence LR",
                          "Fluorescence z-stack, blurred ×2 with a known kernel (synthetic)", (1.9, 1.0), 75.0,
                          "synthetic", fluorescence_volume, rgb=False, stacked=True)


NOISY_SEED = 9
NOISY_SHAPE = (512, 512)
NOISY_PHOTONS = 200.0
NOISY_READ_NOISE = 1.6
NOISY_OFFSET = 100.0
# A widefield oil objective, NA 1.3, GFP-like emission, a quarter micrometre out of focus; the camera pixel
# is chosen so that the PSF's FWHM is about 2.3 pixels on the ×2 grid (0.098 µm, the Nyquist range of SR).
NOISY_NA = 1.3
NOISY_WAVELENGTH_UM = 0.52
NOISY_IMMERSION = 1.515
NOISY_DEFOCUS_UM = 0.25
NOISY_PIXEL_UM = 0.196


def _noisy_optics():  # -> physics.optics.Optics (imported lazily)
    from .physics.optics import Optics

    return Optics(na=NOISY_NA, wavelength_um=NOISY_WAVELENGTH_UM, n_immersion=NOISY_IMMERSION,
                  defocus_um=NOISY_DEFOCUS_UM)


@lru_cache(maxsize=1)
def _noisy_kernel() -> np.ndarray:
    """The widefield PSF on the ×2 grid, on the support holding 99 % of its light (75×75), sum 1."""
    from .physics.optics import psf_2d, support_for

    optics, pixel = _noisy_optics(), NOISY_PIXEL_UM / SCALE
    return psf_2d(optics, pixel, support_for(optics, pixel_um=pixel))


@lru_cache(maxsize=1)
def _noisy_case() -> tuple[np.ndarray, np.ndarray]:
    """(HR object in photo-electrons, uint16 LR camera image)."""
    import torch

    from .physics.operators import Degradation
    from .synthetic import microscopy_scene

    hr = microscopy_scene(NOISY_SHAPE, NOISY_SEED, kind="mixed")
    # In float32, as the sample was first drawn (the same Poisson draws since): its rounding, ~1e-7 of the
    # signal, is nothing beside the shot noise added next.
    clean = Degradation(_noisy_kernel(), SCALE).A(torch.from_numpy(hr.astype(np.float32))).double().numpy()
    factor = NOISY_PHOTONS / float(clean.max())
    rng = np.random.default_rng([NOISY_SEED, 1])
    electrons = rng.poisson(np.clip(clean * factor, 0, None)).astype(np.float64)
    adu = np.round(electrons + rng.normal(0.0, NOISY_READ_NOISE, clean.shape) + NOISY_OFFSET)
    return hr * factor, np.clip(adu, 0, np.iinfo(np.uint16).max).astype(np.uint16)


@dataclass(frozen=True)
class NoisySampleCase(SampleCase):
    """A generated widefield camera image (uint16) of a fluorescence object blurred by a physical PSF.

    The true kernel is the PSF of :attr:`na`, :attr:`wavelength_um`, :attr:`n_immersion` and
    :attr:`defocus_um` (:func:`napari_kernelgan.physics.optics.psf_2d`) on the ×2 grid of
    :attr:`pixel_um` / 2 µm pixels, on the side holding 99 % of its light. ``sigma`` is the σ of the
    Gaussian of the same FWHM (an Airy pattern is not a Gaussian), ``theta_deg`` 0. ``hr()`` is the
    noise-free object in photo-electrons, ``lr()`` the ×2 camera image: Poisson shot noise at
    :attr:`photons` in the brightest pixel, :attr:`read_noise` electrons of read noise, 1 ADU per electron
    and :attr:`offset` ADU.
    """

    photons: float = NOISY_PHOTONS
    read_noise: float = NOISY_READ_NOISE
    offset: float = NOISY_OFFSET
    na: float = NOISY_NA
    wavelength_um: float = NOISY_WAVELENGTH_UM
    n_immersion: float = NOISY_IMMERSION
    defocus_um: float = NOISY_DEFOCUS_UM
    pixel_um: float | None = NOISY_PIXEL_UM

    def optics(self):  # -> physics.optics.Optics
        """The microscope's optics (the defocus included: a user does not know it)."""
        return _noisy_optics()

    def hints(self) -> dict[str, Any]:
        """What the microscope's metadata says (:data:`~napari_kernelgan.optics_hints.HINT_KEYS`): NA,
        emission, immersion, modality and the camera pixel; not the defocus."""
        from .optics_hints import HINT_KEYS

        return {**dict.fromkeys(HINT_KEYS), "na": self.na, "wavelength_um": self.wavelength_um,
                "n_immersion": self.n_immersion, "modality": "widefield", "pixel_um": self.pixel_um}

    def kernel(self) -> np.ndarray:
        """The true ×2 kernel (75×75, centred, correlation orientation, sum 1)."""
        return _noisy_kernel().copy()

    def hr(self) -> np.ndarray:
        return _noisy_case()[0].copy()

    def lr(self, hr: np.ndarray | None = None) -> np.ndarray:
        """The noisy uint16 camera image; ``hr`` is ignored."""
        return _noisy_case()[1].copy()


def _noisy_sample() -> NoisySampleCase:
    from .physics.beads import FWHM_PER_SIGMA, bead_qc
    from .physics.optics import psf_2d

    # The FWHM on a 41×41 crop is the full kernel's (the core decides it), and quicker to draw at import.
    qc = bead_qc(psf_2d(_noisy_optics(), NOISY_PIXEL_UM / SCALE, 41))
    sigma = (round(qc["fwhm_x"] / FWHM_PER_SIGMA, 3), round(qc["fwhm_y"] / FWHM_PER_SIGMA, 3))
    return NoisySampleCase("fluorescence-noisy", "noisy fluorescence LR",
                           f"Noisy widefield fluorescence (~{NOISY_PHOTONS:.0f} photons), blurred ×2 by a physical "
                           f"PSF (NA {NOISY_NA}, {NOISY_WAVELENGTH_UM * 1000:.0f} nm, slightly defocused)",
                           sigma, 0.0, "napari_kernelgan.synthetic.microscopy_scene, physics.optics.psf_2d",
                           lambda: _noisy_case()[0].copy(), rgb=False)


NOISY_FLUORESCENCE = _noisy_sample()
SAMPLES = {case.key: case for case in (TISSUE, FLUORESCENCE, ASTRONAUT, NOISY_FLUORESCENCE)}


@dataclass(frozen=True)
class VaryingSampleCase:
    """A sample blurred by a spatially varying kernel field: field curvature with astigmatism, as at the
    edges of a microscope's field of view. Sharp in the middle (σ ``sharp``), the blur grows with the
    squared distance from the centre, more along the radius (to σ ``edge_radial`` in the corners) than
    across it (``edge_tangential``). Kernels on a ``grid`` × ``grid`` lattice of tile centres, blended
    between them (:func:`~napari_kernelgan.physics.varying.degrade_varying`)."""

    key: str
    name: str
    title: str
    source: str
    load: Callable[[], np.ndarray]
    rgb: bool
    sharp: float = 0.7
    edge_radial: float = 2.6
    edge_tangential: float = 1.3
    grid: int = 7

    def hr(self) -> np.ndarray:
        return self.load()

    def field(self, lr_shape: tuple[int, int]):  # -> fields.KernelField (imported lazily)
        """The true kernel field over an LR image of ``lr_shape``."""
        from .fields import KernelField

        h, w = int(lr_shape[0]), int(lr_shape[1])
        cy, cx = np.linspace(0, h - 1, self.grid), np.linspace(0, w - 1, self.grid)
        kernels = np.zeros((self.grid, self.grid, KERNEL_SIZE, KERNEL_SIZE))
        for i, y in enumerate(cy):
            for j, x in enumerate(cx):
                dy, dx = (y - (h - 1) / 2) / (h / 2), (x - (w - 1) / 2) / (w / 2)
                r2 = (dy * dy + dx * dx) / 2.0                       # 0 in the middle, 1 in the corners
                radial = self.sharp + (self.edge_radial - self.sharp) * r2
                tangential = self.sharp + (self.edge_tangential - self.sharp) * r2
                # gaussian_kernel's first axis is rotated by θ from the column axis: along the radius
                theta = float(np.arctan2(dy * h, dx * w)) if r2 > 0 else 0.0
                kernels[i, j] = gaussian_kernel(KERNEL_SIZE, radial, tangential, theta)
        ones = np.ones((self.grid, self.grid))
        boxes = np.zeros((self.grid, self.grid, 4), dtype=np.int64)
        return KernelField(kernels=kernels, centres_y=cy, centres_x=cx, boxes=boxes, confidence=ones, trust=ones,
                           global_kernel=kernels[self.grid // 2, self.grid // 2], image_shape=(h, w), scale=SCALE,
                           global_confidence=1.0, method="ground truth")

    def lr(self, hr: np.ndarray | None = None) -> np.ndarray:
        """The degraded ×2 image in the original's dtype (rounded and clipped)."""
        from .physics.varying import degrade_varying

        hr = self.hr() if hr is None else hr
        field = self.field((hr.shape[0] // SCALE, hr.shape[1] // SCALE))
        lr = degrade_varying(hr[:SCALE * field.image_shape[0], :SCALE * field.image_shape[1]].astype(np.float64),
                             field.kernels, field.centres_y, field.centres_x, SCALE)
        high = float(np.iinfo(hr.dtype).max)
        return np.clip(np.round(lr), 0, high).astype(hr.dtype)


TISSUE_VARYING = VaryingSampleCase(
    "tissue-varying", "tissue (varying blur) LR",
    "Tissue micrograph, blurred ×2 with field curvature and astigmatism (a known kernel field)",
    "skimage.data.immunohistochemistry", _skimage("immunohistochemistry"), rgb=True)
VARYING_SAMPLES = {TISSUE_VARYING.key: TISSUE_VARYING}
