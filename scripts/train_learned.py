"""Train the ``learned`` kernel estimator on synthetic degradations, and write its weight file.

    PYTHONPATH=src python3 scripts/train_learned.py --device cuda --minutes 8 \
        --out src/napari_kernelgan/estimators/learned_weights.pt --val 500

Needs only torch, numpy, scipy and scikit-image (no napari, no Qt): it imports the Qt-free parts of
the package (physics, synthetic, estimators._learned_net).

Training data, generated on the fly on the training device. DIV2KRK is never used, not even for
validation (the benchmark in ``benchmarks/kernel_benchmark.py`` is the only place it is read):

* HR images
  - procedural dead leaves (``napari_kernelgan.synthetic.dead_leaves``, seeds 0…; validation uses
    seeds from 1 000 000), with and without texture inside the leaves;
  - synthetic fluorescence scenes (``napari_kernelgan.synthetic.microscopy_scene``, same seed rule);
  - scikit-image's bundled photographs whose licences allow any use (from their docstrings):
    camera (CC0, Lav Varshney), coffee (CC0, Rachel Michetti), chelsea (CC0, Stefan van der Walt),
    rocket (public domain, SpaceX), coins (no known copyright restrictions),
    hubble_deep_field (public domain, NASA), brick, grass, gravel (CC0, cc0textures.com),
    retina (CC0), cell (CC0). ``astronaut`` and ``immunohistochemistry`` are left out (they are the
    project's own sample and test images), ``clock`` (it is motion-blurred), ``moon`` and ``page``
    (licence not stated), ``text``, ``horse`` and ``microaneurysms`` (too small or binary).
* Augmentation: random crops, flips and 90° rotations, anti-aliased HR downscaling by 1–3× (so the
  content's scale varies and the HR is sharp), gamma 0.6–1.6 and contrast, then the blur, then white
  Gaussian noise σ ∈ [0, 15/255] on part of the batch (Poisson–Gaussian on the microscopy scenes)
  and 8-bit quantisation on most samples.
* Kernels: the DIV2KRK protocol (anisotropic Gaussian, λ1, λ2 ~ U(0.6, 5) px², any angle, 25 %
  multiplicative per-tap noise; ``physics.kernels.random_div2krk_kernel``) on a slightly wider
  variance range, U(0.45, 5.5) px², for robustness at its ends. Each HR crop is degraded either ×2
  with ``k2`` or ×4 with ``analytic_x4(k2)``, the kernels in the project's subsampling phase
  (``physics.conventions.kernel_for_subsampling``; checked against ``physics.degrade`` at start-up).
  The target is the matrix logarithm of ``physics.metrics.second_moments(k2)`` in both cases.

Network (``--arch``): ``spectral`` (default; ``SpectralNet``: the crop's log power spectrum in 10
radial × 8 angular bands, then an MLP) or ``cnn`` (``CovarianceNet``). On a 2-core CPU the CNN was
still predicting the mean after 600 steps (10 minutes), the spectral network reached a validation L1
of 0.19 (×2) in the same time, so it is the default.

Loss: β-NLL (β = 0.5) of a diagonal Gaussian on the three log-covariance numbers, so each crop's
prediction comes with its own variance. AdamW with a cosine learning rate over the step or time
budget. The output (``--out``) holds the float16 state dict and a metadata dict, written to a
temporary file and renamed into place.

``--family optics`` trains the microscope network (``OpticsNet``, ``learned_optics.pt``) on CPU:

    PYTHONPATH=src python3 scripts/train_learned.py --family optics --threads 1 --minutes 22 \
        --samples 80000 --seed 0

* Kernels: a bank of 2 500 ``psf_2d`` kernels on 41×41 (:func:`draw_optics_kernel`: widefield
  Born-Wolf with defocus, spherical aberration and index mismatch at depth, confocal 0.5-2 AU, plain
  Gaussians, a mild stretch), made once and cached under /tmp; 300 more (another seed) are held out.
* LR crops from the HR images above, ×2 (×4 on a quarter, ``analytic_x4``), blurred through FFTs in the
  project's subsampling phase, Poisson-Gaussian noise at 50-2000 photons, integer counts, min-max scaled.
* The spectral front end has no weights: the crops' features are made once (``--samples``) and the
  head is trained over them with the kernel L1 (the profile rendered with the covariance's anisotropy)
  against the true PSF, the covariance's β-NLL (target: the best-L1 Gaussian's covariance) and small
  losses on the defocus (depths of field) and widefield readings.

``--family optics --evaluate WEIGHTS`` prints the held-out check on the DEVELOPMENT real_dev images
(cell_microtubules, golgi_confocal) blurred with new physical kernels (:func:`evaluate_optics`):

    PYTHONPATH=src python3 scripts/train_learned.py --family optics --threads 1 \
        --evaluate src/napari_kernelgan/estimators/learned_optics.pt

The bundled ``learned_optics.pt`` came from the first command (21.5 minutes on one thread of a
shared 2-core CPU, 9 526 steps; held-out per-crop L1 0.375). On the 12 held-out DEVELOPMENT cases
the second command gave a mean kernel L1 (41×41) of 0.291 for ``learned family=optics``, 0.530 for
today's ``learned``, 0.800 for the fixed Gaussian and 0.307 for the best isotropic Gaussian (oracle);
below the fixed Gaussian on every case, below today's ``learned`` on 11 of 12 (not on a 1 AU confocal
PSF, nearly Gaussian). The table is in ``docs/estimators.md``.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from napari_kernelgan.estimators._learned_net import (  # noqa: E402
    CROP,
    FORMAT,
    LOGVAR_RANGE,
    CovarianceNet,
    OpticsNet,
    SpectralNet,
    cov_to_log,
    luminance,
    normalise_crops,
    pick_crops,
    predict_log_covariance,
    render_profile,
)
from napari_kernelgan.physics.conventions import analytic_x4, centre_kernel, kernel_for_subsampling  # noqa: E402
from napari_kernelgan.physics.kernels import gaussian_from_covariance, gaussian_kernel  # noqa: E402
from napari_kernelgan.physics.metrics import kernel_l1, second_moments  # noqa: E402

SKIMAGE_IMAGES = ("camera", "coffee", "chelsea", "rocket", "coins", "hubble_deep_field", "brick", "grass",
                  "gravel", "retina", "cell")
SOURCE_WEIGHTS = {"photo": 0.45, "leaves": 0.35, "microscopy": 0.20}
LAMBDA_RANGE = (0.45, 5.5)   # axis variances of the training kernels, px² (DIV2KRK: 0.6–5)
KERNEL_NOISE = 0.25
K2_SIZE = 11
APPLIED = {2: 17, 4: 39}     # side of the applied (phase-shifted) ×2 / ×4 kernels
LEVELS = ((1.0, 0.3), (1.25, 0.14), (1.6, 0.14), (2.0, 0.14), (2.5, 0.14), (3.0, 0.14))
"""HR downscale factors (content scale augmentation) and how often each is drawn."""
NOISE_MAX = 15 / 255
VAL_SEED = 1_000_000


# ------------------------------------------------------------------------------------------ kernels


def draw_kernel(rng: np.random.Generator) -> np.ndarray:
    """One ×2 kernel of the DIV2KRK protocol on the wider variance range (11×11, centred, sum 1)."""
    lam1, lam2 = rng.uniform(*LAMBDA_RANGE, size=2)
    theta = rng.uniform(-np.pi, np.pi)
    k = gaussian_kernel(K2_SIZE, math.sqrt(lam1), math.sqrt(lam2), theta)
    k = k * (1 + rng.uniform(0, KERNEL_NOISE, size=k.shape))
    k = centre_kernel(k / k.sum())
    return k / k.sum()


def applied_kernels(k2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ×2 kernel and its analytic ×4 kernel as applied before ``[::s, ::s]`` (17×17, 39×39)."""
    return kernel_for_subsampling(k2, 2), kernel_for_subsampling(analytic_x4(k2, 3 * K2_SIZE - 2), 4)


def kernel_pool(n: int, seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    """``n`` kernels: applied ×2 (n, 17, 17) and ×4 (n, 39, 39) weights and the log-covariance targets."""
    rng = np.random.default_rng(seed)
    w2 = np.zeros((n, APPLIED[2], APPLIED[2]), np.float32)
    w4 = np.zeros((n, APPLIED[4], APPLIED[4]), np.float32)
    target = np.zeros((n, 3), np.float32)
    for i in range(n):
        k2 = draw_kernel(rng)
        w2[i], w4[i] = applied_kernels(k2)
        target[i] = cov_to_log(second_moments(k2))
    return {"w2": torch.from_numpy(w2).to(device), "w4": torch.from_numpy(w4).to(device),
            "target": torch.from_numpy(target).to(device)}


def check_phase(seed: int) -> float:
    """Largest difference between the batched degradation used here and ``physics.degrade`` (round-off)."""
    from napari_kernelgan.physics.degrade import degrade

    rng = np.random.default_rng(seed)
    k2 = draw_kernel(rng)
    worst = 0.0
    for s, w in zip((2, 4), applied_kernels(k2)):
        k = k2 if s == 2 else analytic_x4(k2, 3 * K2_SIZE - 2)
        hr = rng.random((200, 200))
        ref = degrade(hr, k, s, mode="reflect")
        half = w.shape[0] // 2
        # LR pixel i of ``degrade`` reads HR rows from s*i - half; start the valid correlation at the first
        # LR pixel that reads no reflected border, c = ceil(half / s).
        c = -(-half // s)
        x = torch.from_numpy(hr[None, None, s * c - half:, s * c - half:].copy())
        ours = F.conv2d(x, torch.from_numpy(w)[None, None], stride=s)[0, 0].numpy()
        n = min(ours.shape[0], ref.shape[0] - c)
        worst = max(worst, float(np.abs(ours[:n, :n] - ref[c:c + n, c:c + n]).max()))
    return worst


# ------------------------------------------------------------------------------------------ HR images


def _gray(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float32)
    if img.max() > 1.5:
        img = img / 255.0
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.ascontiguousarray(img)


def hr_bank(n_leaves: int, n_micro: int, device: torch.device, log: bool = True) -> tuple[list, list[str]]:
    """The HR images (tensors on ``device``) with their source, and a description of each."""
    import skimage.data

    from napari_kernelgan.synthetic import dead_leaves, microscopy_scene

    images, names = [], []
    for name in SKIMAGE_IMAGES:
        images.append((torch.from_numpy(_gray(getattr(skimage.data, name)())).to(device), "photo"))
        names.append(f"skimage.data.{name}")
    rng = np.random.default_rng(12345)
    for i in range(n_leaves):
        tex = float(rng.choice([0.0, 0.0, 0.3, 0.6]))
        r_min = float(rng.uniform(1.0, 4.0))
        img = dead_leaves((512, 512), seed=i, r_min=r_min, texture=tex)
        images.append((torch.from_numpy(img.astype(np.float32)).to(device), "leaves"))
        names.append(f"dead_leaves(512, seed={i}, r_min={r_min:.2f}, texture={tex})")
    for i in range(n_micro):
        img = microscopy_scene((512, 512), seed=i)
        img = img / max(float(img.max()), 1e-6)
        images.append((torch.from_numpy(img.astype(np.float32)).to(device), "microscopy"))
        names.append(f"microscopy_scene(512, seed={i})")
    if log:
        print(f"HR bank: {len(SKIMAGE_IMAGES)} photographs, {n_leaves} dead-leaves, {n_micro} microscopy", flush=True)
    return images, names


# ------------------------------------------------------------------------------------------ batches


class Synth:
    """Makes training batches: (LR crops (B, 1, 64, 64) in [0, 1], scale per sample, target (B, 3)).

    Each HR image is kept at a few anti-aliased downscales (:data:`LEVELS`, made once), so a crop is
    cut at its final size and no large crop is resized per batch.
    """

    def __init__(self, images: list, pool: dict[str, torch.Tensor], device: torch.device, seed: int) -> None:
        self.pool = pool
        self.device = device
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator(device=device).manual_seed(seed)
        counts = {k: sum(1 for _, s in images if s == k) for k in SOURCE_WEIGHTS}
        self.images, weights, micro = [], [], []
        for img, source in images:
            for f, level_weight in LEVELS:
                scaled = img if f == 1 else F.interpolate(
                    img[None, None], scale_factor=1 / f, mode="bicubic", antialias=True, align_corners=False,
                    recompute_scale_factor=False)[0, 0].clamp(0, 1)
                self.images.append(scaled.contiguous())
                weights.append(SOURCE_WEIGHTS[source] / counts[source] * level_weight)
                micro.append(source == "microscopy")
        self.sizes = np.array([min(t.shape) for t in self.images])
        self.weights, self.micro = np.array(weights), np.array(micro)

    def _crops(self, m: int, need: int) -> tuple[list[torch.Tensor], np.ndarray]:
        """``m`` random ``need``-pixel square crops, each from an image drawn by its weight among those large
        enough, and the images' indices."""
        rng = self.rng
        p = self.weights * (self.sizes >= need)
        idx = rng.choice(len(self.images), m, p=p / p.sum())
        crops = []
        for i in idx:
            img = self.images[i]
            top = int(rng.integers(0, img.shape[0] - need + 1))
            left = int(rng.integers(0, img.shape[1] - need + 1))
            crops.append(img[top:top + need, left:left + need])
        return crops, idx

    def _group(self, m: int, scale: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng, dev = self.rng, self.device
        ks = APPLIED[scale]
        need = (CROP - 1) * scale + ks
        crops, idx = self._crops(m, need)
        x = torch.stack(crops)[:, None]
        x = torch.rot90(x, int(rng.integers(4)), dims=(-2, -1))
        if rng.random() < 0.5:
            x = x.flip(-1)
        gamma = torch.exp(torch.empty(m, 1, 1, 1, device=dev).uniform_(math.log(0.6), math.log(1.6),
                                                                      generator=self.gen))
        a = torch.empty(m, 1, 1, 1, device=dev).uniform_(0.25, 1.0, generator=self.gen)
        b = torch.rand(m, 1, 1, 1, device=dev, generator=self.gen) * (1 - a)
        x = a * x.clamp_min(0) ** gamma + b
        kidx = torch.from_numpy(rng.integers(0, len(self.pool["target"]), m)).to(dev)
        w = self.pool[f"w{scale}"][kidx][:, None]
        lr = F.conv2d(x.reshape(1, m, need, need), w, stride=scale, groups=m).reshape(m, 1, CROP, CROP)
        return lr, self.pool["target"][kidx], torch.from_numpy(self.micro[idx]).to(dev)

    def batch(self, size: int, group: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch of ``size`` samples, in groups that share the scale, the downscale factor and the flip."""
        lrs, scales, targets, micro = [], [], [], []
        done = 0
        while done < size:
            m = min(group, size - done)
            s = 2 if self.rng.random() < 0.5 else 4
            lr, t, mic = self._group(m, s)
            lrs.append(lr)
            targets.append(t)
            micro.append(mic)
            scales.append(torch.full((m,), s, device=self.device))
            done += m
        lr, target, micro_t, scale = torch.cat(lrs), torch.cat(targets), torch.cat(micro), torch.cat(scales)
        return self._noise(lr, micro_t), scale, target

    def _noise(self, lr: torch.Tensor, micro: torch.Tensor) -> torch.Tensor:
        dev, g, n = self.device, self.gen, lr.shape[0]
        sigma = torch.rand(n, 1, 1, 1, device=dev, generator=g) * NOISE_MAX
        sigma = sigma * (torch.rand(n, 1, 1, 1, device=dev, generator=g) < 0.6)
        noisy = lr + sigma * torch.randn(lr.shape, device=dev, generator=g)
        # Poisson-Gaussian on the fluorescence scenes: photons at the crop's brightest pixel, log-uniform
        photons = torch.exp(torch.empty(n, 1, 1, 1, device=dev).uniform_(math.log(20), math.log(1500), generator=g))
        peak = lr.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-3)
        gain = photons / peak
        read = torch.empty(n, 1, 1, 1, device=dev).uniform_(0.8, 3.0, generator=g)
        shot = torch.poisson((lr.clamp_min(0) * gain), generator=g) / gain
        pg = shot + read / gain * torch.randn(lr.shape, device=dev, generator=g)
        use_pg = micro[:, None, None, None] & (torch.rand(n, 1, 1, 1, device=dev, generator=g) < 0.7)
        out = torch.where(use_pg, pg, noisy).clamp(0, 1)
        quant = torch.rand(n, 1, 1, 1, device=dev, generator=g) < 0.7
        return torch.where(quant, torch.round(out * 255) / 255, out)


# ------------------------------------------------------------------------------------------ validation


def validation_set(n_leaves: int = 6, n_micro: int = 2, seed: int = VAL_SEED) -> list[dict]:
    """Fixed synthetic cases (unseen seeds): LR via ``physics.degrade``, each at ×2 and ×4, half with noise."""
    from napari_kernelgan.physics.degrade import degrade
    from napari_kernelgan.physics.kernels import random_div2krk_kernel
    from napari_kernelgan.synthetic import dead_leaves, microscopy_scene

    rng = np.random.default_rng(seed)
    hrs = [dead_leaves((384, 384), seed=seed + i, texture=0.3 * (i % 3)) for i in range(n_leaves)]
    hrs += [microscopy_scene((384, 384), seed=seed + i) for i in range(n_micro)]
    cases = []
    for j, hr in enumerate(hrs):
        hr = hr / max(float(hr.max()), 1e-6)
        k2 = random_div2krk_kernel(rng, 2, 11)
        for s in (2, 4):
            k = k2 if s == 2 else analytic_x4(k2, 31)
            lr = degrade(hr, k, s)
            sigma = 10 / 255 if j % 2 else 0.0
            lr = np.clip(lr + rng.normal(0, sigma, lr.shape), 0, 1) if sigma else lr
            cases.append({"lr": np.round(lr * 255) / 255, "scale": s, "k2": k2, "truth": k, "noise": sigma})
    return cases


def evaluate(net: torch.nn.Module, cases: list[dict], device: torch.device, crops: int = 32) -> dict[str, float]:
    """Mean kernel L1 per scale on the validation cases (estimate: Gaussian of the predicted covariance)."""
    net.eval()
    errs: dict[int, list[float]] = {2: [], 4: []}
    for c in cases:
        gray = luminance(c["lr"][None, None].astype(np.float32))
        pred = predict_log_covariance(net, pick_crops(gray, crops, seed=0), c["scale"], device=device)
        k2 = gaussian_from_covariance(pred.covariance, 13)
        est = k2 if c["scale"] == 2 else analytic_x4(k2)
        errs[c["scale"]].append(kernel_l1(est, c["truth"]))
    net.train()
    return {f"x{s}": float(np.mean(v)) for s, v in errs.items()}


# ------------------------------------------------------------------------------------------ training


def save(path: Path, net: torch.nn.Module, meta: dict) -> None:
    """Write the float16 state dict and ``meta`` atomically (temporary file, then rename)."""
    state = {k: v.detach().cpu().half() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save({"format": FORMAT, "state_dict": state, "meta": meta}, tmp)
    os.replace(tmp, path)


def beta_nll(mu: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """β-NLL (Seitzer et al. 2022): the Gaussian NLL weighted by stop-grad(variance^β)."""
    nll = 0.5 * ((target - mu) ** 2 * torch.exp(-logvar) + logvar)
    return (nll * torch.exp(beta * logvar).detach()).mean()


# ------------------------------------------------------------------------------------------ optics family
# Microscope PSFs for ``--family optics``: physical kernels from ``physics.optics.psf_2d`` (a bank made once,
# cached under /tmp), the network predicts the best Gaussian's covariance, a radial profile and two readings.

OPTICS_SIDE = 41
OPTICS_X4_SIDE = 81          # ×4 kernels (analytic_x4 of the ×2 one) are cut to this before the phase shift
OPTICS_APPLIED = {2: OPTICS_SIDE + 6, 4: OPTICS_X4_SIDE + 8}
OPTICS_SHARES = {"widefield": 0.6, "confocal": 0.25, "gaussian": 0.15}
FWHM_RANGE = (1.6, 3.4)      # in-focus FWHM in HR px (the pixel size is chosen to give it)
PHOTON_RANGE = (50, 2000)    # expected photons at the brightest pixel, log-uniform
OPTICS_X4_SHARE = 0.25
OPTICS_VAL_SEED = 2_000_000  # bank seed of the held-out kernels (training uses --seed)
DEVELOPMENT = ("cell_microtubules", "golgi_confocal")
REAL_DEV = ROOT.parent / "shared" / "data" / "real_dev"


def fwhm_px(k: np.ndarray) -> float:
    """Full width at half maximum along the middle row (HR px), linear between pixels."""
    c = k.shape[0] // 2
    row, peak = k[c], k[c, c]
    for i in range(c, len(row) - 1):
        if row[i + 1] < peak / 2:
            return 2 * ((i - c) + (row[i] - peak / 2) / (row[i] - row[i + 1]))
    return float(len(row))


def stretch_kernel(k: np.ndarray, factor: float, theta: float) -> np.ndarray:
    """``k`` stretched by ``factor`` along the axis at ``theta`` (about its centre), clipped, centred, sum 1."""
    from scipy import ndimage

    c = k.shape[0] // 2
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    inv = np.linalg.inv(rot @ np.diag([factor, 1.0]) @ rot.T)
    out = np.clip(ndimage.affine_transform(k, inv, offset=c - inv @ np.array([c, c]), order=1), 0, None)
    return centre_kernel(out / out.sum())


def draw_optics_kernel(rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One ×2 microscope kernel (41×41, centred, sum 1) of the optics family and how it was made.

    Widefield Born-Wolf (NA 0.7-1.45, emission 0.45-0.65 µm, immersion air/water/oil as the NA allows)
    with defocus up to 1.1 depths of field (λ n / NA²) on 70 %, primary spherical aberration
    (|spherical| = 0.3 u² waves, u uniform) on 40 %, index mismatch at depth (oil into n 1.33-1.45,
    0-10 µm, refocused to the brightest plane) on a quarter of the oil cases; confocal with a 0.5-2 AU
    pinhole (defocus up to 0.66 depth of field on 40 %); plain Gaussians. The HR pixel gives an in-focus
    FWHM in :data:`FWHM_RANGE` (measured on the aberration-free confocal kernel). 60 % are stretched by
    1-1.3 along a random axis.
    """
    from napari_kernelgan.physics.optics import Optics, best_focus_um, psf_2d

    kind = str(rng.choice(list(OPTICS_SHARES), p=list(OPTICS_SHARES.values())))
    fwhm = float(rng.uniform(*FWHM_RANGE))
    info = {"kind": kind, "fwhm": fwhm, "defocus_dof": 0.0}
    if kind == "gaussian":
        k = gaussian_kernel(OPTICS_SIDE, fwhm / 2.3548)
    else:
        na, lam = float(rng.uniform(0.7, 1.45)), float(rng.uniform(0.45, 0.65))
        n_imm = 1.515 if na > 1.27 else float(rng.choice([1.333, 1.515])) if na > 0.95 else float(
            rng.choice([1.0, 1.333, 1.515]))
        kw: dict = {"na": na, "wavelength_um": lam, "n_immersion": n_imm}
        if rng.random() < 0.4:  # |spherical| = 0.3 u²: mostly mild (0.3 waves RMS already spreads the PSF wide)
            kw["spherical"] = float(rng.choice([-1.0, 1.0]) * 0.3 * rng.uniform(0, 1) ** 2)
        if n_imm > 1.4 and rng.random() < 0.25:
            kw.update(n_sample=float(rng.uniform(1.33, 1.45)), depth_um=float(rng.uniform(0, 10)))
        if kind == "confocal":
            kw.update(modality="confocal", pinhole_au=float(rng.uniform(0.5, 2.0)),
                      excitation_um=lam * float(rng.uniform(0.85, 0.97)))
        optics = Optics(**kw)
        dof = lam * n_imm / na ** 2
        d = float(rng.uniform(0, 1.1)) if rng.random() < (0.7 if kind == "widefield" else 0.4) else 0.0
        d *= 0.6 if kind == "confocal" else 1.0
        focus = best_focus_um(optics) if ("spherical" in kw or "n_sample" in kw) else 0.0
        z = focus + float(rng.choice([-1.0, 1.0])) * d * dof
        pixel = 0.51 * lam / (na * fwhm)
        if kind == "confocal":
            plain = {**kw, "spherical": 0.0, "n_sample": None, "depth_um": 0.0}
            pixel *= fwhm_px(psf_2d(Optics(**plain), pixel, OPTICS_SIDE)) / fwhm
        k = psf_2d(optics, pixel, OPTICS_SIDE, z_um=z)
        info.update(na=na, wavelength_um=lam, n_immersion=n_imm, pixel_um=pixel, z_um=z, defocus_dof=d,
                    **{key: kw[key] for key in ("spherical", "n_sample", "depth_um", "pinhole_au") if key in kw})
    if rng.random() < 0.6:
        info.update(stretch=float(rng.uniform(1.0, 1.3)), stretch_angle=float(rng.uniform(0, math.pi)))
        k = stretch_kernel(k, info["stretch"], info["stretch_angle"])
    k = np.clip(k, 0, None)
    return k / k.sum(), info


def best_gaussian_covariance(k: np.ndarray) -> np.ndarray:
    """Covariance of the Gaussian closest to ``k`` (centred) in L1: the shape (unit determinant) of ``k``'s
    second moments, scaled by the best σ² over σ = 0.5-4.5 px in 0.05 px steps."""
    cov = second_moments(k)
    shape = cov / math.sqrt(max(np.linalg.det(cov), 1e-12))
    c = k.shape[0] // 2
    yy, xx = np.mgrid[-c:c + 1, -c:c + 1]
    inv = np.linalg.inv(shape)
    rho2 = inv[0, 0] * yy ** 2 + 2 * inv[0, 1] * yy * xx + inv[1, 1] * xx ** 2
    sigmas = np.arange(0.5, 4.5, 0.05)
    g = np.exp(-rho2[None] / (2 * sigmas[:, None, None] ** 2))
    g /= g.sum(axis=(1, 2), keepdims=True)
    best = sigmas[int(np.argmin(np.abs(g - k[None]).sum(axis=(1, 2))))]
    return best ** 2 * shape


def x4_kernel(k: np.ndarray) -> np.ndarray:
    """``analytic_x4(k, OPTICS_X4_SIDE)`` through an FFT (the same up to round-off, faster on 41×41 kernels)."""
    from scipy.signal import fftconvolve

    from napari_kernelgan.physics.conventions import dilate, pad_to

    full = np.clip(fftconvolve(np.pad(dilate(k, 2), k.shape[0] // 2), k, mode="same"), 0, None)
    out = pad_to(centre_kernel(full), OPTICS_X4_SIDE)
    return out / out.sum()


def optics_bank(n: int, seed: int, cache: Path = Path("/tmp")) -> dict[str, np.ndarray]:
    """``n`` kernels of :func:`draw_optics_kernel` (seeded) with their applied ×2 / ×4 forms and targets:
    the log of the best Gaussian's covariance, (defocus in depths of field, widefield 0/1). Made once and
    cached in ``cache`` (a few minutes on one core for a few thousand)."""
    path = cache / f"napari_kernelgan_optics_bank_v3_n{n}_s{seed}.npz"
    if path.is_file():
        with np.load(path) as data:
            return dict(data)
    rng = np.random.default_rng(seed)
    k2 = np.zeros((n, OPTICS_SIDE, OPTICS_SIDE), np.float32)
    w2 = np.zeros((n, OPTICS_APPLIED[2], OPTICS_APPLIED[2]), np.float32)
    w4 = np.zeros((n, OPTICS_APPLIED[4], OPTICS_APPLIED[4]), np.float32)
    target, aux = np.zeros((n, 3), np.float32), np.zeros((n, 2), np.float32)
    for i in range(n):
        k, info = draw_optics_kernel(rng)
        k2[i] = k
        w2[i] = kernel_for_subsampling(k, 2)
        w4[i] = kernel_for_subsampling(x4_kernel(k), 4)
        target[i] = cov_to_log(best_gaussian_covariance(k))
        aux[i] = (info["defocus_dof"], float(info["kind"] == "widefield"))
    out = {"k2": k2, "w2": w2, "w4": w4, "target": target, "aux": aux}
    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out


def _fft_blur(x: torch.Tensor, w: torch.Tensor, scale: int) -> torch.Tensor:
    """Valid correlation of HR crops (m, n, n) with kernels (m, s, s), then every ``scale``-th pixel: what
    ``F.conv2d(..., stride=scale)`` gives, through FFTs (the 41×41-and-wider kernels make that cheaper)."""
    n, s = x.shape[-1], w.shape[-1]
    spec = torch.fft.rfft2(x) * torch.fft.rfft2(w.flip(-2, -1), s=(n, n))
    return torch.fft.irfft2(spec, s=(n, n))[:, s - 1::scale, s - 1::scale]


class OpticsSynth(Synth):
    """:class:`Synth` with the optics bank: blurs through FFTs, Poisson-Gaussian noise at 50-2000 photons
    on every sample, integer (camera count) quantisation and min-max scaling like a uint16 image."""

    def _group(self, m: int, scale: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng, dev = self.rng, self.device
        ks = OPTICS_APPLIED[scale]
        need = (CROP - 1) * scale + ks
        crops, idx = self._crops(m, need)
        x = torch.rot90(torch.stack(crops), int(rng.integers(4)), dims=(-2, -1))
        if rng.random() < 0.5:
            x = x.flip(-1)
        gamma = torch.exp(torch.empty(m, 1, 1, device=dev).uniform_(math.log(0.6), math.log(1.6), generator=self.gen))
        a = torch.empty(m, 1, 1, device=dev).uniform_(0.25, 1.0, generator=self.gen)
        b = torch.rand(m, 1, 1, device=dev, generator=self.gen) * (1 - a)
        x = a * x.clamp_min(0) ** gamma + b
        kidx = torch.from_numpy(rng.integers(0, len(self.pool["target"]), m)).to(dev)
        lr = _fft_blur(x, self.pool[f"w{scale}"][kidx], scale)[:, None, :CROP, :CROP]
        return lr, kidx, torch.from_numpy(self.micro[idx]).to(dev)

    def _noise(self, lr: torch.Tensor, micro: torch.Tensor) -> torch.Tensor:
        dev, g, n = self.device, self.gen, lr.shape[0]
        photons = torch.exp(torch.empty(n, 1, 1, 1, device=dev).uniform_(*map(math.log, PHOTON_RANGE), generator=g))
        gain = photons / lr.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-3)
        read = torch.empty(n, 1, 1, 1, device=dev).uniform_(0.5, 3.0, generator=g)
        counts = torch.poisson(lr.clamp_min(0) * gain, generator=g) + read * torch.randn(lr.shape, generator=g)
        counts = torch.round(counts.clamp_min(0))
        lo, hi = counts.amin(dim=(-2, -1), keepdim=True), counts.amax(dim=(-2, -1), keepdim=True)
        # the crop is part of a larger image whose range is wider: its values span a random part of [0, 1]
        span = torch.empty(n, 1, 1, 1, device=dev).uniform_(0.3, 1.0, generator=g)
        return (counts - lo) / (hi - lo).clamp_min(1) * span

    def batch(self, size: int, group: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(noisy LR crops (B, 1, 64, 64), scale (B,), bank index (B,))."""
        lrs, scales, kidx = [], [], []
        done = 0
        while done < size:
            m = min(group, size - done)
            s = 4 if self.rng.random() < OPTICS_X4_SHARE else 2
            lr, k, _ = self._group(m, s)
            lrs.append(lr)
            kidx.append(k)
            scales.append(torch.full((m,), s, device=self.device))
            done += m
        return self._noise(torch.cat(lrs), None), torch.cat(scales), torch.cat(kidx)


def optics_features(synth: OpticsSynth, net: OpticsNet, n: int, log: bool = True) -> dict[str, torch.Tensor]:
    """``n`` training samples as the network's fixed spectral features (its front end has no weights):
    made once, then many epochs of the head are cheap."""
    feats, extras, kidx = [], [], []
    t0 = time.perf_counter()
    with torch.no_grad():
        while sum(len(k) for k in kidx) < n:
            x, scale, k = synth.batch(64)
            x, e = normalise_crops(x, scale)
            feats.append(net.features(x))
            extras.append(e)
            kidx.append(k)
            done = sum(len(k) for k in kidx)
            if log and done % 6400 == 0:
                print(f"  features {done} / {n}  {time.perf_counter() - t0:.0f} s", flush=True)
    return {"feats": torch.cat(feats)[:n], "extras": torch.cat(extras)[:n], "kidx": torch.cat(kidx)[:n]}


def optics_loss(net: OpticsNet, feats: torch.Tensor, extras: torch.Tensor, kidx: torch.Tensor,
                bank: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(training loss, mean kernel L1 on 41×41) of a batch of precomputed features."""
    out = net.head(torch.cat([feats, extras], dim=1))
    knots = net.knots
    mu, logvar = out[:, :3], out[:, 3:6].clamp(*LOGVAR_RANGE)
    profile, aux = out[:, 6:6 + knots], out[:, 6 + knots:]
    kernel = render_profile(torch.exp(profile - profile.amax(1, keepdim=True)), mu)
    l1 = (kernel - bank["k2"][kidx]).abs().sum(dim=(-2, -1))
    defocus, wide = bank["aux"][kidx].unbind(-1)
    loss = (beta_nll(mu, logvar, bank["target"][kidx]) + l1.mean() + 0.05 * ((aux[:, 0] - defocus) ** 2).mean()
            + 0.05 * F.binary_cross_entropy_with_logits(aux[:, 1], wide))
    return loss, l1.detach().mean()


def train_optics(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``--family optics``: bank, feature set, then epochs of the head within ``--minutes`` (all of it), or
    ``--steps`` steps of it."""
    if args.samples is not None and args.samples < 640:
        raise SystemExit("--samples: at least 640 (the first 640 also time the feature extraction)")
    device = torch.device("cpu")
    t0 = time.perf_counter()
    budget = (args.minutes or 25) * 60
    n_kernels = args.kernels or 2500
    bank_np = optics_bank(n_kernels, args.seed)
    val_np = optics_bank(300, OPTICS_VAL_SEED)
    print(f"kernel banks ({n_kernels} + 300 held out) ready in {time.perf_counter() - t0:.0f} s", flush=True)
    bank = {k: torch.from_numpy(v) for k, v in bank_np.items()}
    val_bank = {k: torch.from_numpy(v) for k, v in val_np.items()}
    images, names = hr_bank(24, 12, device)
    net = OpticsNet(CROP, hidden=args.hidden)
    synth = OpticsSynth(images, bank, device, args.seed)
    val_synth = OpticsSynth(images, val_bank, device, args.seed + 1)
    # Half of what is left goes to the features, the rest to epochs of the head over them.
    t_feat = time.perf_counter()
    probe = optics_features(synth, net, 640, log=False)
    per_sample = (time.perf_counter() - t_feat) / 640
    left = budget - (time.perf_counter() - t0)
    n_train = args.samples or int(min(120_000, max(6400, 0.5 * left / per_sample)))
    print(f"{per_sample * 1000:.1f} ms per sample: {n_train} training samples", flush=True)
    cached = Path(f"/tmp/napari_kernelgan_optics_features_v1_s{args.seed}_k{n_kernels}_n{n_train}.pt")
    if args.samples and cached.is_file():  # a rerun with the same --samples reuses them
        train = torch.load(cached, weights_only=True)
    else:
        train = optics_features(synth, net, n_train - 640)
        train = {k: torch.cat([probe[k], train[k]]) for k in train}
        if args.samples:
            torch.save(train, cached)
    val = optics_features(val_synth, net, 1024, log=False)
    print(f"features ready at {time.perf_counter() - t0:.0f} s", flush=True)
    opt = torch.optim.AdamW(net.head.parameters(), lr=args.lr, weight_decay=1e-4)
    start, step, history, batch = time.perf_counter(), 0, [], args.batch or 256
    train_budget = budget - (start - t0) - 30
    rng = torch.Generator().manual_seed(args.seed)
    while True:
        frac = step / args.steps if args.steps else (time.perf_counter() - start) / train_budget
        if frac >= 1:
            break
        lr = args.lr * (min(1.0, frac / 0.03) if frac < 0.03 else 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = max(lr, 1e-6)
        pick = torch.randint(0, n_train, (batch,), generator=rng)
        loss, _ = optics_loss(net, train["feats"][pick], train["extras"][pick], train["kidx"][pick], bank)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        if step % 500 == 0:
            with torch.no_grad():
                _, v = optics_loss(net, val["feats"], val["extras"], val["kidx"], val_bank)
            history.append({"step": step, "crop_l1": round(float(v), 4)})
            print(f"step {step}  {time.perf_counter() - start:.0f} s  lr {lr:.2e}  loss {float(loss.detach()):.4f}  "
                  f"held-out crop L1 {float(v):.4f}", flush=True)
    with torch.no_grad():
        _, v = optics_loss(net, val["feats"], val["extras"], val["kidx"], val_bank)
    history.append({"step": step, "crop_l1": round(float(v), 4)})
    elapsed = time.perf_counter() - t0
    print(f"done: {step} steps, {elapsed:.0f} s in all; held-out crop L1 {float(v):.4f}", flush=True)
    meta = {
        "arch": {"name": "OpticsNet", "radial": net.radial, "angular": net.angular, "hidden": args.hidden,
                 "crop": CROP, "knots": net.knots},
        "family": "optics",
        "target": "logm of the best (L1) Gaussian's covariance of k2, HR px², (L00, L01, L11); radial profile "
                  "(log values at profile_radii); aux (defocus in depths of field, widefield logit)",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "steps": step, "batch": batch, "samples": n_train, "seconds": round(elapsed, 1), "device": "cpu",
        "threads": torch.get_num_threads(), "torch": str(torch.__version__), "seed": args.seed,
        "kernels": f"{n_kernels} of draw_optics_kernel (seed {args.seed}), shares {OPTICS_SHARES}, "
                   f"FWHM {FWHM_RANGE} px, x4 share {OPTICS_X4_SHARE}, photons {PHOTON_RANGE}",
        "data": names, "validation": history, "init": None,
    }
    save(args.out, net, meta)
    print(f"wrote {args.out}", flush=True)
    return 0


# ------------------------------------------------------------------------------------------ optics evaluation

EVAL_SEED = 3_000_000
EVAL_KINDS = ("widefield", "widefield defocus", "widefield spherical", "widefield stretched", "confocal 1 AU",
              "confocal 0.6 AU defocus")


def _real_dev(name: str) -> np.ndarray:
    """A DEVELOPMENT image as a sharp HR object in [0, 1], prepared as the real-optics benchmarks prepare it."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _optics_cases import load_object

    return load_object(name, REAL_DEV)


def eval_kernel(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A held-out physical kernel (41×41) of ``kind`` with an in-focus FWHM of 2.0-2.6 HR px, and its description."""
    from napari_kernelgan.physics.optics import Optics, best_focus_um, psf_2d

    na, lam, fwhm = float(rng.choice([0.8, 1.0, 1.2, 1.4])), float(rng.uniform(0.5, 0.6)), float(rng.uniform(2, 2.6))
    kw: dict = {"na": na, "wavelength_um": lam}
    z, extra = 0.0, ""
    if kind.startswith("confocal"):
        kw.update(modality="confocal", pinhole_au=1.0 if "1 AU" in kind else 0.6, excitation_um=0.92 * lam)
    pixel = 0.51 * lam / (na * fwhm)
    if kind.startswith("confocal"):
        pixel *= fwhm_px(psf_2d(Optics(**kw), pixel, OPTICS_SIDE)) / fwhm
    if "defocus" in kind:
        z = float(rng.uniform(0.3, 0.6) if kind.startswith("widefield") else rng.uniform(0.1, 0.3))
        extra = f", defocus {z:.2f} µm"
    if "spherical" in kind:
        kw["spherical"] = float(rng.choice([-1, 1]) * rng.uniform(0.15, 0.3))
        z = best_focus_um(Optics(**kw))
        extra = f", spherical {kw['spherical']:+.2f}"
    k = psf_2d(Optics(**kw), pixel, OPTICS_SIDE, z_um=z)
    if "stretched" in kind:
        f = float(rng.uniform(1.15, 1.3))
        k = stretch_kernel(k, f, float(rng.uniform(0, math.pi)))
        extra = f", stretched ×{f:.2f}"
    return k / k.sum(), f"NA {na:.1f}, λ {lam:.3f} µm, FWHM {fwhm:.2f} px{extra}"


def evaluate_optics(weights: Path, out: Path | None = None) -> list[dict]:
    """Kernel L1 (41×41) on DEVELOPMENT images blurred ×2 with held-out physical kernels and Poisson noise:
    ``learned family=optics`` (``weights``), today's ``learned``, the fixed Gaussian and the best isotropic
    Gaussian (oracle). Prints a markdown table (and writes it to ``out``)."""
    from napari_kernelgan import estimate_kernel
    from napari_kernelgan.physics import constant_gaussian, degrade, pad_to

    rng = np.random.default_rng(EVAL_SEED)
    rows = []
    for name in DEVELOPMENT:
        hr = _real_dev(name)
        for kind in EVAL_KINDS:
            truth, desc = eval_kernel(kind, rng)
            photons = float(np.exp(rng.uniform(math.log(50), math.log(2000))))
            lr = degrade(hr, truth, 2)
            lr = np.clip(rng.poisson(np.clip(lr, 0, None) * photons) / photons, 0, 1).astype(np.float32)
            opt = estimate_kernel(lr, estimator="learned", family="optics", weights=str(weights), threads=1)
            gau = estimate_kernel(lr, estimator="learned", threads=1)
            row = {"image": name, "kind": kind, "desc": desc, "photons": photons,
                   "optics": kernel_l1(pad_to(opt.kernel, OPTICS_SIDE), truth),
                   "gaussian": kernel_l1(pad_to(gau.kernel, OPTICS_SIDE), truth),
                   "fixed": kernel_l1(pad_to(constant_gaussian(2), OPTICS_SIDE), truth),
                   "oracle": min(kernel_l1(gaussian_kernel(OPTICS_SIDE, s), truth) for s in np.arange(0.5, 4.01, 0.05)),
                   "side": opt.kernel.shape[0], "confidence": opt.confidence,
                   "fwhm_fit": opt.options["learned_fit"]["fwhm_px"]}
            rows.append(row)
            print(f"{name:18s} {kind:24s} optics {row['optics']:.3f}  learned {row['gaussian']:.3f}  "
                  f"fixed {row['fixed']:.3f}  oracle {row['oracle']:.3f}", flush=True)
    cols = ("optics", "gaussian", "fixed", "oracle")
    lines = ["| image | kernel | photons | learned optics | learned (gaussian) | fixed Gaussian | best isotropic "
             "Gaussian | side | confidence |", "|" + "---|" * 9]
    for r in rows:
        lines.append(f"| {r['image']} | {r['kind']}: {r['desc']} | {r['photons']:.0f} | "
                     + " | ".join(f"{r[c]:.3f}" for c in cols) + f" | {r['side']} | {r['confidence']:.2f} |")
    lines.append("| **mean** | | | " + " | ".join(f"**{np.mean([r[c] for r in rows]):.3f}**" for c in cols) + " | | |")
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    if out is not None:
        out.write_text(text)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", default="gaussian", choices=("gaussian", "optics"),
                   help="gaussian: DIV2KRK-protocol kernels (learned_weights.pt); optics: microscope PSFs "
                        "(learned_optics.pt, CPU, a precomputed feature set)")
    p.add_argument("--evaluate", type=Path, default=None, metavar="WEIGHTS",
                   help="optics family: only print the held-out real_dev table for this weight file")
    p.add_argument("--table", type=Path, default=None, help="with --evaluate: also write the table here")
    p.add_argument("--samples", type=int, default=None, help="optics family: training samples (default: by time)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget for the training loop")
    p.add_argument("--steps", type=int, default=None, help="number of steps (default: as many as --minutes allows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None,
                   help="default: src/napari_kernelgan/estimators/learned_weights.pt (learned_optics.pt for optics)")
    p.add_argument("--val", type=int, default=0, help="print the validation L1 every N steps (0: only at the end)")
    p.add_argument("--batch", type=int, default=None, help="default: 48 on the CPU, 512 on a GPU")
    p.add_argument("--arch", default="spectral", choices=("spectral", "cnn"),
                   help="spectral: fixed log-power-spectrum bands + MLP (learns fast); cnn: CovarianceNet")
    p.add_argument("--width", type=int, default=32, help="CNN width")
    p.add_argument("--hidden", type=int, default=None, help="MLP width (default 128; 192 for optics)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (CPU training)")
    p.add_argument("--kernels", type=int, default=None, help="kernel pool size (default 4000 CPU / 30000 GPU)")
    p.add_argument("--init", type=Path, default=None, help="start from this weight file")
    args = p.parse_args(argv)
    if args.family == "optics":
        torch.set_num_threads(max(1, args.threads))
        if args.evaluate is not None:
            evaluate_optics(args.evaluate, args.table)
            return 0
        args.hidden = args.hidden or 192
        args.out = args.out or ROOT / "src/napari_kernelgan/estimators/learned_optics.pt"
        return train_optics(args, argv)
    args.hidden = args.hidden or 128
    args.out = args.out or ROOT / "src/napari_kernelgan/estimators/learned_weights.pt"
    if args.minutes is None and args.steps is None:
        p.error("give --minutes or --steps")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: PyTorch sees no CUDA GPU here")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    if device.type == "cpu":
        torch.set_num_threads(max(1, args.threads))
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    gpu = device.type == "cuda"
    batch = args.batch or (512 if gpu else 48)
    t0 = time.perf_counter()
    pool = kernel_pool(args.kernels or (30000 if gpu else 4000), args.seed, device)
    images, names = hr_bank(48 if gpu else 24, 16 if gpu else 8, device)
    cases = validation_set()
    print(f"set-up {time.perf_counter() - t0:.0f} s; phase check vs physics.degrade: "
          f"{check_phase(args.seed):.2e}", flush=True)
    synth = Synth(images, pool, device, args.seed)
    net = (SpectralNet(CROP, hidden=args.hidden) if args.arch == "spectral"
           else CovarianceNet(args.width, args.hidden)).to(device)
    init_meta = None
    if args.init is not None:
        obj = torch.load(args.init, map_location="cpu", weights_only=True)
        net.load_state_dict({k: v.float() for k, v in obj["state_dict"].items()})
        prior = obj.get("meta", {})
        init_meta = {"file": args.init.name, "steps": prior.get("steps"), "command": prior.get("command"),
                     "seconds": prior.get("seconds"), "init": prior.get("init")}
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    budget = None if args.minutes is None else args.minutes * 60
    start = time.perf_counter()
    step, history, smooth = 0, [], None

    def progress() -> float:
        parts = []
        if args.steps:
            parts.append(step / args.steps)
        if budget:
            parts.append((time.perf_counter() - start) / budget)
        return max(parts)

    while progress() < 1:
        frac = progress()
        lr = args.lr * (min(1.0, frac / 0.03) if frac < 0.03 else 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = max(lr, 1e-6)
        with torch.no_grad():
            x, scale, target = synth.batch(batch)
            x, extras = normalise_crops(x, scale)
        mu, logvar = net(x, extras)
        loss = beta_nll(mu, logvar, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        mse = float(((mu.detach() - target) ** 2).mean())
        smooth = mse if smooth is None else 0.98 * smooth + 0.02 * mse
        if step % 50 == 0:
            print(f"step {step}  {time.perf_counter() - start:.0f} s  lr {lr:.2e}  loss {float(loss.detach()):.4f}  "
                  f"mse(log Σ) {smooth:.4f}", flush=True)
        if args.val and step % args.val == 0:
            val = evaluate(net, cases, device)
            history.append({"step": step, **val})
            print(f"  validation L1  ×2 {val['x2']:.3f}  ×4 {val['x4']:.3f}", flush=True)
    val = evaluate(net, cases, device)
    history.append({"step": step, **val})
    elapsed = time.perf_counter() - start
    print(f"done: {step} steps in {elapsed:.0f} s; validation L1 ×2 {val['x2']:.3f}  ×4 {val['x4']:.3f}", flush=True)
    meta = {
        "arch": ({"name": "SpectralNet", "radial": net.radial, "angular": net.angular, "hidden": args.hidden,
                  "crop": CROP} if args.arch == "spectral"
                 else {"name": "CovarianceNet", "width": args.width, "hidden": args.hidden, "crop": CROP}),
        "target": "logm of second_moments(k2), HR px², (L00, L01, L11); row/col order",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "steps": step, "batch": batch, "seconds": round(elapsed, 1), "device": str(device),
        "torch": str(torch.__version__), "seed": args.seed,
        "kernels": f"DIV2KRK protocol, lambda in {LAMBDA_RANGE} px^2, tap noise {KERNEL_NOISE}",
        "data": names, "validation": history, "init": init_meta,
    }
    save(args.out, net, meta)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
