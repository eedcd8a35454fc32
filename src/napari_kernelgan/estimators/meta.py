"""MetaKernelGAN (Lee et al., "Meta-Learned Kernel For Blind Super-Resolution Kernel Estimation", WACV 2024).

KernelGAN's generator G (a deep linear ×2 downscaler) and patch discriminator D start from a
meta-learned initialisation and adapt to the image in a few hundred plain SGD steps, as in the
reference code (royson/metakernelgan, MIT licence):

* each step one 64×64 crop of the input, its position drawn with probability following the
  density of strong gradients around it; G maps it (circularly padded by 5) to 32×32;
* G's loss: L1 LSGAN ``mean|D(G(x)) − 1|`` plus ``ζ·|1 − Σk|`` with ζ = 0.5 (the reference
  adapts with the sum-to-one term only; its other KernelGAN regularisers have weight 0);
* D's loss: ``½(mean|D(real) − 1| + mean|D(G(x))|)``, real = the crop's top-left 32×32,
  N(0, 1/255) noise added to both inputs;
* SGD (no momentum) at 0.01 for G, 0.2 for D; G's rate ÷10 at steps 50 and 200.

The collapsed 11×11 kernel is brought to the stored convention by :func:`to_project_convention`
and padded to 13×13. Initialisations (option ``weights``):

``""`` (default)
    the package's own init (``meta_init.pt``), written by ``scripts/train_meta.py`` (first-order
    MAML on public-domain / CC0 scikit-image pictures, dead-leaves and synthetic microscopy scenes,
    never DIV2KRK); needs no download. The file records the command that made it; the one shipped
    now is a short CPU fine-tuning of the authors' checkpoint (MIT licence, notice inside the file),
    to be replaced by a full GPU run of the same script.
``"official"``
    the authors' released checkpoint ``metakernelgan_latest.pt``, found by
    :func:`napari_kernelgan.weights.resolve_weights` (argument, ``$NAPARI_KERNELGAN_METAKERNELGAN_WEIGHTS``,
    the configuration file, the cache folder).
a path
    a file in either format.
"""
from __future__ import annotations

import os
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ..constraints import Interval
from ..errors import BadInputError, BadOptionError, Param
from ..physics.conventions import centre_kernel, pad_to
from ..registry import register, register_tiles
from ..types import KernelEstimate, Progress, TileResult, relay
from ..vocabulary import KERNEL_SIZE, Stage
from ..weights import WeightSpec, declare_weights, read_weight_file, resolve_weights
from ._gan.confidence import kernel_confidence, measure_references
from ._gan.dmap import iter_discriminator_map
from ._gan.progress import CHECK_UNITS, dmap_units, report_dmap
from ._meta_nets import RAW_KERNEL_SIZE, MetaD, MetaG, init_random, load_state

__all__ = ["WEIGHTS", "BUNDLED_INIT", "INIT_FORMAT", "MetaConfig", "MetaAdapter", "GradientCropSampler",
           "load_meta_networks", "save_meta_init", "to_project_convention", "generator_loss",
           "discriminator_loss", "meta"]

WEIGHTS = declare_weights(WeightSpec(
    key="metakernelgan",
    title="MetaKernelGAN",
    env_var="NAPARI_KERNELGAN_METAKERNELGAN_WEIGHTS",
    filenames=("metakernelgan_latest.pt",),
    source=("the official MetaKernelGAN repository by the authors (https://github.com/royson/metakernelgan, "
            "MIT licence: the checkpoint runs/metakernelgan/latest.pt, saved here as metakernelgan_latest.pt)"),
))

BUNDLED_INIT = Path(__file__).with_name("meta_init.pt")
INIT_FORMAT = "napari-kernelgan/meta-init"
CPU = torch.device("cpu")


@dataclass(frozen=True)
class MetaConfig:
    """Adaptation hyper-parameters; the defaults are the reference's test-time settings."""

    iterations: int = 200
    lr_g: float = 0.01
    lr_d: float = 0.2
    lr_milestones: tuple[int, ...] = (50, 200)   # G's rate ÷ 1/lr_gamma at these steps
    lr_gamma: float = 0.1
    crop: int = 64              # G's input crop; D sees G's 32×32 output and the crop's top-left 32×32
    w_sum2one: float = 0.5      # ζ
    d_noise: float = 1 / 255    # σ of the noise added to D's inputs


# ---------------------------------------------------------------------------------------------
# Convention
# ---------------------------------------------------------------------------------------------

def to_project_convention(raw: np.ndarray | torch.Tensor, size: int = KERNEL_SIZE) -> np.ndarray:
    """G's collapsed kernel → a stored kernel: ``size``×``size``, non-negative, sum 1, centre of mass in the middle.

    The one place where MetaKernelGAN's kernels change convention. G's kernel is in correlation
    orientation already, but where its centre of mass sits depends on the initialisation, not on
    the image: the GAN loss cannot see a translation (D is fully convolutional and judges crops
    at random positions; a shifted kernel only shifts G's output), so adaptation keeps whatever
    phase the initialisation had. The released model was meta-trained with kernels placed for
    FKP's phase, centre of mass at ``(11 − 2) / 2 = 4.5`` (measured after adaptation on DIV2KRK
    dev images 1–5: 4.50–4.54, i.e. half a pixel before the middle), while a G that reproduces
    this project's degradation holds the applied kernel, centre of mass at 5.5 (half a pixel
    after), and ``scripts/train_meta.py`` scores shape only, so an init it writes keeps whichever
    phase it started from. A fixed half-pixel shift would be right for one phase and a whole
    pixel off for the other, and would keep any drift; full re-centring is right for both, and is
    the stored convention's own definition (centre of mass at ``size // 2``). ``tests/test_meta.py``
    checks it on synthetic kernels and on a synthetic blur.
    """
    k = raw.detach().double().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw, np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
        raise BadInputError(f"a raw MetaKernelGAN kernel is square and odd-sized, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise BadInputError("the kernel diverged (NaN or infinite taps); try a lower lr_g or another seed")
    # Pad first so the re-centring shift loses no mass at the border.
    k = pad_to(k, max(size, k.shape[0]) + 4)
    pos = np.clip(k, 0, None)
    # G's small negative lobes are clipped (a blur is non-negative); a kernel with hardly any
    # positive mass (a collapsed fit) keeps its magnitude instead of becoming empty.
    k = pos if pos.sum() > 1e-3 * np.abs(k).sum() else np.abs(k)
    k = centre_kernel(k / k.sum())
    k = np.clip(pad_to(k, size), 0, None)
    return k / k.sum()


# ---------------------------------------------------------------------------------------------
# Crop sampling (the reference's gradient-probability sampling, written from its description)
# ---------------------------------------------------------------------------------------------

def _gradient_map(gray: np.ndarray, window: int = 5, keep: float = 0.03) -> np.ndarray:
    """Where the strongest gradients are: the top ``keep`` fraction of |∂x|, |∂y| and |∇|, each
    weighted to equal total, box-blurred over ``window`` pixels; borders of ``window`` zeroed."""
    gy, gx = np.gradient(gray)
    out = np.zeros_like(gray)
    for m in (np.abs(gx), np.abs(gy), np.hypot(gx, gy)):
        m = m.copy()
        m[:window], m[-window:], m[:, :window], m[:, -window:] = 0, 0, 0, 0
        mask = (m > np.quantile(m, 1 - keep)).astype(np.float64)
        if mask.sum() > 0:
            out += mask / mask.sum()
    return ndimage.uniform_filter(out, window, mode="constant")


class GradientCropSampler:
    """Draws top-left corners (even, as the reference) of ``crop``×``crop`` windows of (N, C, H, W)
    frames with probability ∝ the gradient map averaged over the window's central half."""

    def __init__(self, frames: np.ndarray, crop: int, rng: np.random.Generator) -> None:
        self.frames = frames
        self.crop = crop
        self.rng = rng
        probs = []
        for frame in frames:
            gray = frame.mean(0) if frame.shape[0] != 3 else np.tensordot([0.299, 0.587, 0.114], frame, 1)
            g = ndimage.uniform_filter(_gradient_map(gray.astype(np.float64)), max(1, crop // 2), mode="constant")
            h, w = g.shape
            half = crop // 2
            # Only centres whose crop fits; a frame without a fitting centre is never drawn.
            valid = np.zeros_like(g)
            valid[half:h - half + 1, half:w - half + 1] = 1
            probs.append(np.clip(g, 0, None) * valid)
        prob = np.stack(probs)
        if prob.sum() <= 0:  # no strong gradients anywhere: uniform over the valid centres
            prob = np.stack([np.ones(f.shape[-2:]) for f in frames])
        self.shape = prob.shape
        self.cdf = np.cumsum(prob.ravel())

    def sample(self) -> np.ndarray:
        """One (C, crop, crop) crop."""
        idx = int(np.searchsorted(self.cdf, self.rng.random() * self.cdf[-1], side="right"))
        f, r, c = np.unravel_index(min(idx, self.cdf.size - 1), self.shape)
        h, w = self.frames.shape[-2:]
        top = min(max(0, r - self.crop // 2), h - self.crop)
        left = min(max(0, c - self.crop // 2), w - self.crop)
        top, left = top - top % 2, left - left % 2
        return self.frames[f, :, top:top + self.crop, left:left + self.crop]


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------

def _read_states(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], str]:
    """(G state, D state, format) of a weight file."""
    obj = read_weight_file(path, "MetaKernelGAN weights")
    if isinstance(obj, dict) and obj.get("format") == INIT_FORMAT and "G" in obj and "D" in obj:
        return obj["G"], obj["D"], "project"
    models = obj.get("models") if isinstance(obj, dict) else None
    if isinstance(models, dict) and "downsampling" in models and "discriminator" in models:
        return models["downsampling"], models["discriminator"], "official"
    raise BadInputError(f"{path} is not a MetaKernelGAN checkpoint: expected the official training checkpoint "
                        f"(['models']['downsampling'|'discriminator']) or a file written by scripts/train_meta.py")


def _weights_path(weights: str | os.PathLike | None) -> Path:
    text = "" if weights is None else str(weights).strip()
    if text == "":
        if not BUNDLED_INIT.is_file():
            raise BadInputError(f"the bundled MetaKernelGAN initialisation {BUNDLED_INIT} is missing from this "
                                "installation; reinstall the package, or use ",
                                Param("weights", "official", option=True), " or a file path")
        return BUNDLED_INIT
    if text.lower() == "official":
        return resolve_weights(WEIGHTS.key)
    return resolve_weights(WEIGHTS.key, text)


def load_meta_networks(weights: str | os.PathLike | None = "", device: torch.device | str = CPU,
                       ) -> tuple[MetaG, MetaD, dict[str, Any]]:
    """G and D initialised from ``weights`` (``""``: bundled init, ``"official"``, or a path), on ``device``.

    Raises :class:`~napari_kernelgan.errors.WeightsMissingError` when the official file cannot be
    found (the message says which file and where to put it) and
    :class:`~napari_kernelgan.errors.BadInputError` for a file that is not a MetaKernelGAN checkpoint.
    """
    path = _weights_path(weights)
    g_state, d_state, fmt = _read_states(path)
    g, d = MetaG(), MetaD()
    load_state(g, g_state, "G", str(path))
    load_state(d, d_state, "D", str(path))
    return g.to(device), d.to(device), {"weights_file": str(path), "weights_format": fmt}


def save_meta_init(path: str | os.PathLike, g: MetaG, d: MetaD, metadata: dict[str, Any]) -> None:
    """Write G and D (float16; integer buffers kept) with ``metadata``, atomically (temporary file + rename)."""
    def half(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()) for k, v in state.items()}

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": INIT_FORMAT, "version": 1, "G": half(g.state_dict()), "D": half(d.state_dict()),
                "meta": metadata}, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Losses and one adaptation
# ---------------------------------------------------------------------------------------------

def generator_loss(d: MetaD, g_out: torch.Tensor, kernel: torch.Tensor, w_sum2one: float) -> torch.Tensor:
    """L1 LSGAN loss of G (D should say "real") plus ζ·|1 − Σk|."""
    return (d(g_out) - 1).abs().mean() + w_sum2one * (1 - kernel.sum()).abs()


def discriminator_loss(d: MetaD, real: torch.Tensor, fake: torch.Tensor, noise: float,
                       gen: torch.Generator | None) -> torch.Tensor:
    """½(mean|D(real + n) − 1| + mean|D(fake + n)|), n ~ N(0, noise²)."""
    if noise > 0:
        real = real + torch.randn(real.shape, generator=gen, device=real.device, dtype=real.dtype) * noise
        fake = fake + torch.randn(fake.shape, generator=gen, device=fake.device, dtype=fake.dtype) * noise
    return 0.5 * ((d(real) - 1).abs().mean() + d(fake).abs().mean())


def _as_rgb(frames: np.ndarray) -> tuple[np.ndarray, int]:
    """(N, C, H, W) → (M, 3, H, W) for D's 3-channel input, and how many frames each input frame became.

    RGB stays; grayscale is repeated; any other channel count runs each channel as a grayscale frame.
    """
    n, c = frames.shape[:2]
    if c == 3:
        return frames, 1
    gray = frames.reshape(n * c, 1, *frames.shape[2:])
    return np.repeat(gray, 3, axis=1), c


class MetaAdapter:
    """One test-time adaptation of G and D on (M, 3, H, W) frames in [0, 1]."""

    def __init__(self, g: MetaG, d: MetaD, frames: np.ndarray, cfg: MetaConfig, device: torch.device,
                 seed: int) -> None:
        self.g, self.d, self.cfg, self.device = g, d, cfg, device
        self.g.train()
        self.d.train()
        h, w = frames.shape[-2:]
        crop = min(cfg.crop, h, w)
        crop -= crop % 2
        if crop < 16:
            raise BadInputError(f"the image is {h}×{w} pixels; MetaKernelGAN needs at least 16×16")
        self.crop = crop
        self.sampler = GradientCropSampler(frames, crop, np.random.default_rng(seed))
        self.noise_gen = torch.Generator(device=device).manual_seed(int(seed) + 1)
        self.opt_g = torch.optim.SGD(self.g.parameters(), lr=cfg.lr_g)
        self.opt_d = torch.optim.SGD(self.d.parameters(), lr=cfg.lr_d)
        self.history: dict[str, list[float]] = {"g_gan": [], "d": [], "sum2one": []}

    def step(self, it: int) -> None:
        """Adaptation step ``it`` (0-based): G then D, as the reference orders them."""
        cfg = self.cfg
        if it in cfg.lr_milestones:
            for group in self.opt_g.param_groups:
                group["lr"] *= cfg.lr_gamma
        x = torch.from_numpy(np.ascontiguousarray(self.sampler.sample()))[None].to(self.device)
        self.opt_g.zero_grad(set_to_none=True)
        k = self.g.kernel()
        g_out = self.g(x, k)
        gan = (self.d(g_out) - 1).abs().mean()
        sum2one = (1 - k.sum()).abs()
        (gan + cfg.w_sum2one * sum2one).backward()
        self.opt_g.step()

        with torch.no_grad():
            fake = self.g(x)  # the updated G, as the reference
        half = fake.shape[-1]
        real = x[..., :half, :half]
        self.opt_d.zero_grad(set_to_none=True)
        loss_d = discriminator_loss(self.d, real, fake, cfg.d_noise, self.noise_gen)
        loss_d.backward()
        self.opt_d.step()
        self.history["g_gan"].append(float(gan.detach()))
        self.history["sum2one"].append(float(sum2one.detach()))
        self.history["d"].append(float(loss_d.detach()))

    @torch.no_grad()
    def raw_kernel(self) -> np.ndarray:
        return self.g.kernel().double().cpu().numpy()

    def dmap(self, frames: np.ndarray) -> Generator[tuple[int, int], None, np.ndarray]:
        """D's verdict on the input's own patches at every pixel: (M, H, W), yielding (strips done, strips)."""
        return iter_discriminator_map(self.d, frames, self.device, signed=False)


# ---------------------------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------------------------

DEFAULTS: dict[str, Any] = {
    "weights": "",
    "iterations": MetaConfig.iterations,
    "lr_g": MetaConfig.lr_g,
    "lr_d": MetaConfig.lr_d,
    "lr_milestones": MetaConfig.lr_milestones,
    "lr_gamma": MetaConfig.lr_gamma,
    "crop": MetaConfig.crop,
    "w_sum2one": MetaConfig.w_sum2one,
    "d_noise": MetaConfig.d_noise,
    "dmap": True,
}

HELP = {
    "weights": "initialisation: empty = the bundled init (no download); 'official' = the authors' "
               "metakernelgan_latest.pt (found like other weights); or a file path",
    "iterations": "adaptation steps (the paper: 200)",
    "lr_g": "G's SGD learning rate", "lr_d": "D's SGD learning rate",
    "lr_milestones": "steps at which G's learning rate is multiplied by lr_gamma",
    "lr_gamma": "G's learning-rate decay factor",
    "crop": "side of G's input crop (D sees half of it)",
    "w_sum2one": "weight ζ of the sum-to-one term",
    "d_noise": "standard deviation of the noise added to D's inputs",
    "dmap": "compute the discriminator's map over the whole input (about a second per megapixel)",
}


def _config(iterations: int, lr_g: float, lr_d: float, lr_milestones: Any, lr_gamma: float, crop: int,
            w_sum2one: float, d_noise: float) -> MetaConfig:
    """The checked :class:`MetaConfig` of the estimator's options."""
    if isinstance(lr_milestones, (int, float)):
        lr_milestones = (lr_milestones,)
    cfg = MetaConfig(iterations=int(iterations), lr_g=float(lr_g), lr_d=float(lr_d),
                     lr_milestones=tuple(int(m) for m in lr_milestones), lr_gamma=float(lr_gamma), crop=int(crop),
                     w_sum2one=float(w_sum2one), d_noise=float(d_noise))
    _check_options(cfg)
    return cfg


def _checked_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim != 4:
        raise BadInputError(f"frames must be (N, C, H, W), got shape {frames.shape}")
    if not np.all(np.isfinite(frames)):
        raise BadInputError("the image contains NaN or infinite values")
    if float(frames.std()) < 1e-6:
        raise BadInputError("the image is constant: there is no structure to estimate a kernel from")
    return frames


RANGES = {"iterations": Interval(int, 1, None), "lr_g": Interval(float, 0, None, closed="neither"),
          "lr_d": Interval(float, 0, None, closed="neither"), "lr_gamma": Interval(float, 0, 1, closed="right"),
          "crop": Interval(int, 16, None), "w_sum2one": Interval(float, 0, None), "d_noise": Interval(float, 0, None)}


def _check_options(cfg: MetaConfig) -> None:
    """What :data:`RANGES` (checked by the registry) cannot say: the milestones are step numbers."""
    if any(int(m) != m for m in cfg.lr_milestones):
        raise BadOptionError(f"meta: lr_milestones must be step numbers, got {cfg.lr_milestones}")


@register("meta", kind="estimator", summary="MetaKernelGAN (Lee et al. 2024): KernelGAN from a meta-learned "
          "initialisation, 200 SGD steps; ×2 kernel, ×4 analytic, D-map",
          defaults=DEFAULTS, main=("weights", "iterations"), help=HELP, weights=("metakernelgan",), ranges=RANGES)
def meta(frames: np.ndarray, *, scale: int = 2, device: torch.device = CPU, seed: int = 0, report_every: int = 50,
         weights: str | None = "", iterations: int = 200, lr_g: float = 0.01, lr_d: float = 0.2,
         lr_milestones: tuple[int, ...] | list[int] = (50, 200), lr_gamma: float = 0.1, crop: int = 64,
         w_sum2one: float = 0.5, d_noise: float = 1 / 255,
         dmap: bool = True) -> Generator[Progress, None, KernelEstimate]:
    """Estimate the ×2 SR kernel of ``frames`` (N, C, H, W) float in [0, 1] with MetaKernelGAN.

    Yields a :class:`Progress` every step (with the current kernel every ``report_every`` steps);
    returns a :class:`KernelEstimate` whose kernel is 13×13 in the stored convention, with
    D's map over the input when ``dmap``.
    """
    cfg = _config(iterations, lr_g, lr_d, lr_milestones, lr_gamma, crop, w_sum2one, d_noise)
    frames = _checked_frames(frames)
    start = time.perf_counter()
    # One scale for every stage (unit: one adaptation step), so the bar moves from the first second.
    check = CHECK_UNITS
    maps = len(frames) * (1 if frames.shape[1] == 3 else frames.shape[1])   # D sees each channel of non-RGB input
    dmap_share = dmap_units(int(np.prod(frames.shape[-2:])) * maps) if dmap else 0
    total = cfg.iterations + check + dmap_share
    yield Progress(0, total, 0.0, stage=Stage.PREPARE, message="loading the MetaKernelGAN initialisation")
    g, d, info = load_meta_networks(weights, device)
    rgb, per_frame = _as_rgb(frames)
    # Seed everything the fit draws: crop positions (numpy), D's input noise (torch generator).
    adapter = MetaAdapter(g, d, rgb, cfg, device, seed)
    for it in range(cfg.iterations):
        _small_op_threads(adapter.step, it, device)
        if (it + 1) % report_every == 0 or it + 1 == cfg.iterations:
            loss = {k: v[-1] for k, v in adapter.history.items()}
            yield Progress(it + 1, total, time.perf_counter() - start, stage=Stage.ESTIMATE,
                           kernel=to_project_convention(adapter.raw_kernel()), loss=loss,
                           message=f"step {it + 1}/{cfg.iterations}")
        else:
            yield Progress(it + 1, total, time.perf_counter() - start, stage=Stage.ESTIMATE)
    raw = adapter.raw_kernel()
    kernel = to_project_convention(raw)
    yield Progress(cfg.iterations, total, time.perf_counter() - start, stage=Stage.DMAP,
                   message="checking the kernel against the learned estimate")
    refs = yield from relay(measure_references(frames, device, seed), offset=cfg.iterations, span=check,
                            total=total, start=start, stage=Stage.DMAP, prefix="checking the kernel: ")
    confidence, why = kernel_confidence(kernel, refs)
    dmap_out = None
    if dmap:
        maps = yield from report_dmap(adapter.dmap(rgb), cfg.iterations + check, dmap_share, total, start)
        dmap_out = maps.reshape(len(frames), per_frame, *maps.shape[1:]).mean(1)
    return KernelEstimate(kernel=kernel, dmap=dmap_out, loss_history=adapter.history, iterations=cfg.iterations,
                          elapsed=time.perf_counter() - start, device=str(device), seed=seed, confidence=confidence,
                          extras={**info, "raw_kernel": raw, "raw_kernel_size": RAW_KERNEL_SIZE,
                                  "raw_sum": float(raw.sum()), **why})


@register_tiles("meta")
def meta_tiles(frames: np.ndarray, boxes: np.ndarray, *, scale: int = 2, device: torch.device = CPU, seed: int = 0,
               report_every: int = 50, weights: str | None = "", iterations: int = 200, lr_g: float = 0.01,
               lr_d: float = 0.2, lr_milestones: tuple[int, ...] | list[int] = (50, 200), lr_gamma: float = 0.1,
               crop: int = 64, w_sum2one: float = 0.5, d_noise: float = 1 / 255,
               dmap: bool = True) -> Generator[Progress, None, list[TileResult]]:
    """Every tile of a kernel map adapted at once (:class:`._meta_tiles.TileMeta`: one G and D per tile
    as grouped convolutions), each from the same initialisation on its own tile's crops (tile ``i``
    draws them with seed ``seed + i``). The tiles get no confidence (the whole-image estimate has one)."""
    from ._meta_tiles import TileMeta

    cfg = _config(iterations, lr_g, lr_d, lr_milestones, lr_gamma, crop, w_sum2one, d_noise)
    frames = _checked_frames(frames)
    boxes = np.asarray(boxes).reshape(-1, 4)
    start = time.perf_counter()
    yield Progress(0, cfg.iterations, 0.0, stage=Stage.PREPARE, message="loading the MetaKernelGAN initialisation")
    g, d, _ = load_meta_networks(weights, device)
    rgb, _ = _as_rgb(frames)
    side = min(cfg.crop, int((boxes[:, 2] - boxes[:, 0]).min()), int((boxes[:, 3] - boxes[:, 1]).min()))
    side -= side % 2
    if side < 16:
        raise BadInputError(f"meta: tiles of {side} pixels are too small; MetaKernelGAN needs at least 16×16")
    samplers = [GradientCropSampler(np.ascontiguousarray(rgb[..., y0:y1, x0:x1]), side,
                                    np.random.default_rng(int(seed) + i)) for i, (y0, x0, y1, x1) in enumerate(boxes)]
    nets = TileMeta(g, d, len(boxes))
    gen = torch.Generator(device=device).manual_seed(int(seed) + 1)
    lr = cfg.lr_g
    for it in range(cfg.iterations):
        if it in cfg.lr_milestones:
            lr *= cfg.lr_gamma
        x = torch.from_numpy(np.concatenate([s.sample() for s in samplers]))[None].to(device)
        losses = nets.step(x, lr, cfg.lr_d, cfg.w_sum2one, cfg.d_noise, gen)
        yield Progress(it + 1, cfg.iterations, time.perf_counter() - start, stage=Stage.MAP,
                       loss={k: float(v.mean()) for k, v in losses.items()},
                       message=f"meta: step {it + 1}/{cfg.iterations} of {len(boxes)} tiles at once")
    raw = nets.kernels().detach()
    return [TileResult(kernel=to_project_convention(raw[i]), confidence=None) for i in range(len(boxes))]


def _small_op_threads(fn: Any, arg: Any, device: torch.device) -> None:
    """Run ``fn(arg)`` with one intra-op thread on the CPU: a step works on 64×64 crops, where splitting
    the tiny convolutions across threads costs more than it gains (6× slower with 2 threads on a busy
    2-core machine, measured)."""
    if device.type != "cpu":
        fn(arg)
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fn(arg)
    finally:
        torch.set_num_threads(old)


def random_networks(seed: int, device: torch.device | str = CPU) -> tuple[MetaG, MetaD]:
    """Freshly initialised G and D (KernelGAN's initialisation), for meta-training from scratch."""
    g, d = MetaG(), MetaD()
    init_random(g, d, seed)
    return g.to(device), d.to(device)


__all__ += ["random_networks", "DEFAULTS"]
