"""KernelGAN blind SR-kernel estimation (Bell-Kligler, Shocher, Irani, NeurIPS 2019).

A deep linear generator G learns to downscale the image ×2 so that a patch
discriminator D cannot tell its output patches from the image's own patches;
the kernel G applies is the image's SR kernel.

Presets:

``paper``
    As published: one 64×64 crop per step, 3000 steps, Adam (0.5, 0.999) at
    2e-4 decayed ×0.1 every 750 steps, the initial phase that holds G near
    bicubic downscaling and is then relaxed, L1 GAN loss and the kernel
    regularisers ``0.5·sum2one + 0.5·boundaries + 5·sparse + 1·centre``.
``default``
    The same networks and losses with an informative anchor: G is held near the
    kernel measured from the image's sharpest edges (:mod:`.edges`) instead of
    bicubic, batches of 4 crops per step, early stop once the kernel settles, and
    the result pulled halfway to its best-fitting anisotropic Gaussian, then mixed
    3 : 1 with the edge estimate (the two fail on different images). Measured
    on DIV2KRK, releasing the anchor (as the paper releases bicubic) made the
    kernels worse, so the default keeps it. See ``docs/engine.md``.
``fast``
    ``default`` with 100 steps, for previews.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..errors import BadInputError, BadOptionError
from ..physics.conventions import centre_kernel, pad_to, shift_kernel
from ..physics.kernels import gaussian_from_covariance
from ..physics.metrics import second_moments
from ..physics.operators import Degradation
from ..physics.resize import cubic
from ..registry import register, register_tiles
from ..types import KernelEstimate, Progress, TileResult
from ..vocabulary import KERNEL_SIZE, Stage
from .edges import estimate_covariance
from .networks import DeepLinearG, PatchD


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of one KernelGAN fit (see the presets)."""

    iterations: int = 3000
    crop: int = 64                  # G's input crop; D's real crop matches G's output size
    batch: int = 1                  # crops per step
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    lr_step: int = 750              # decay both learning rates ×lr_gamma every lr_step steps
    lr_gamma: float = 0.1
    # Regulariser weights
    w_sum2one: float = 0.5
    w_boundaries: float = 0.5
    w_sparse: float = 5.0
    w_centre: float = 1.0
    anchor: str = "bicubic"         # kernel G is first pulled to: "bicubic" (paper) or "edges" (sharp-edge estimate)
    edge_quantile: float = 0.25     # see estimators.edges
    w_anchor: float = 5.0          # initial weight of the anchor (images in [-1, 1])
    anchor_threshold: float = 0.4   # anchor MSE below which G counts as close to the anchor
    anchor_patience: int = 3       # consecutive close steps that end the initial phase
    anchor_decay_every: int = 200  # after the phase: anchor weight ÷ anchor_decay every this many steps
    anchor_decay: float = 100.0
    anchor_floor: float = 5e-6       # the anchor weight never drops below this
    prefit_steps: int = 0           # fit G's collapsed kernel to the anchor directly before the GAN starts
    constraints_below: float = 5e-3  # sparsity and centre terms switch on once the anchor weight drops below
    d_noise: float = 1 / 255        # noise added to G's output before D's step
    restarts: int = 1               # independent fits combined into one kernel
    gaussian_prior: float = 0.0     # 0 = raw kernel, 1 = its best-fitting anisotropic Gaussian
    verdict_crops: int = 64         # held-out crops used to weigh restarts
    negligible_n: int = 40          # small-value suppression keeps about this many taps (169 = off for 13×13:
    #                                 the reference's 40 amputates the tails of wide, smooth kernels)
    early_stop: bool = False        # stop a run once its kernel stops changing (after the last lr decay)
    early_stop_tol: float = 0.01    # L1 change of the kernel over one check interval
    early_stop_every: int = 100
    anchor_blend: float = 0.0       # fraction of the anchor kernel mixed into the final kernel (edges anchor only)


PRESETS: dict[str, Config] = {
    "paper": Config(),
    # On DIV2KRK every degree of adversarial freedom away from the sharp-edge anchor cost accuracy
    # (docs/engine.md has the figures), so the default holds G on the anchor (anchor_floor = w_anchor)
    # and lets the GAN refine within it; a short run suffices.
    "default": Config(iterations=300, batch=4, lr_step=100, anchor="edges", anchor_floor=5.0, prefit_steps=300,
                      negligible_n=169, gaussian_prior=0.5, early_stop=True, anchor_blend=0.25),
    "fast": Config(iterations=100, batch=4, lr_step=35, anchor="edges", anchor_floor=5.0, prefit_steps=300,
                   negligible_n=169, gaussian_prior=0.5, early_stop=True, early_stop_every=25,
                   anchor_blend=0.25),
}


def resolve_config(preset: str, iterations: int | None = None, **overrides: Any) -> Config:
    """The preset's :class:`Config` with ``iterations`` and any field overridden."""
    if preset not in PRESETS:
        raise BadOptionError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    cfg = PRESETS[preset]
    known = {f.name for f in fields(Config)}
    unknown = set(overrides) - known
    if unknown:
        raise BadOptionError(f"unknown KernelGAN option(s): {', '.join(sorted(unknown))}")
    if iterations is not None:
        if int(iterations) < 1:
            raise BadOptionError(f"iterations must be at least 1, got {iterations}")
        # Keep the schedule's shape when the user shortens or lengthens a run.
        ratio = int(iterations) / cfg.iterations
        overrides.setdefault("lr_step", max(1, round(cfg.lr_step * ratio)))
        overrides.setdefault("anchor_decay_every", max(1, round(cfg.anchor_decay_every * ratio)))
        overrides["iterations"] = int(iterations)
    return replace(cfg, **overrides)


# ---------------------------------------------------------------------------------------------
# Fixed pieces: the bicubic anchor, the boundary mask, crop sampling
# ---------------------------------------------------------------------------------------------

def bicubic_kernel(size: int = 13, scale: int = 2) -> np.ndarray:
    """Antialiased bicubic ×``scale`` downscaling kernel in the subsampling-ready form.

    Its centre of mass sits at ``size // 2 + 0.5`` for ×2 (between two HR
    pixels), the phase :mod:`~napari_kernelgan.physics.conventions` prescribes.
    """
    centre = size // 2 + 0.5 * (scale - size % 2)
    taps = cubic((np.arange(size) - centre) / scale)
    k1 = taps / taps.sum()
    return np.outer(k1, k1)


def boundary_mask(size: int) -> np.ndarray:
    """Penalty growing towards the kernel's border; zero on the inner region."""
    r = np.arange(size) - size // 2
    dist = np.maximum(np.abs(r)[:, None], np.abs(r)[None, :])
    inner = size // 2 - 2
    return np.clip(dist - inner, 0, None).astype(np.float64) / 2.0


def gradient_probability(frames: np.ndarray, crop: int) -> np.ndarray:
    """Probability of each top-left crop position ∝ mean gradient magnitude inside the crop.

    ``frames`` is (N, C, H, W); returns (N, H − crop + 1, W − crop + 1), summing to 1.
    """
    gray = frames.mean(axis=1)
    out = []
    for g in gray:
        mag = np.hypot(ndimage.sobel(g, 0), ndimage.sobel(g, 1))
        mean = ndimage.uniform_filter(mag, crop, mode="constant")
        # uniform_filter centres the window; shift to top-left indexing
        lo = crop // 2
        valid = mean[lo:lo + g.shape[0] - crop + 1, lo:lo + g.shape[1] - crop + 1]
        out.append(valid)
    prob = np.stack(out)
    # A floor keeps flat regions reachable, as the reference does.
    prob = prob + 0.05 * prob.mean() + 1e-12
    return prob / prob.sum()


class CropSampler:
    """Draws crop batches by gradient-weighted position from (N, C, H, W) frames."""

    def __init__(self, frames: np.ndarray, crop: int, rng: np.random.Generator) -> None:
        self.frames = frames
        self.crop = crop
        self.rng = rng
        prob = gradient_probability(frames, crop)
        self.shape = prob.shape
        self.cdf = np.cumsum(prob.ravel())

    def sample(self, n: int) -> np.ndarray:
        idx = np.searchsorted(self.cdf, self.rng.random(n) * self.cdf[-1])
        idx = np.minimum(idx, self.cdf.size - 1)
        f, r, c = np.unravel_index(idx, self.shape)
        cs = self.crop
        return np.stack([self.frames[fi, :, ri:ri + cs, ci:ci + cs] for fi, ri, ci in zip(f, r, c)])


# ---------------------------------------------------------------------------------------------
# Kernel post-processing
# ---------------------------------------------------------------------------------------------

def suppress_negligible(k: np.ndarray, n: int) -> np.ndarray:
    """Subtract 0.75 × the (n+1)-th largest tap and clip at 0: removes the faint noise floor."""
    flat = np.sort(k.ravel())
    floor = 0.75 * flat[-min(n, flat.size - 1) - 1]
    out = np.clip(k - floor, 0, None)
    return out / out.sum() if out.sum() > 0 else np.clip(k, 0, None) / max(np.clip(k, 0, None).sum(), 1e-12)


def gaussian_fit(k: np.ndarray) -> np.ndarray:
    """The anisotropic Gaussian with the kernel's own second moments, same size, centred."""
    return gaussian_from_covariance(second_moments(k), k.shape[0])


def finalize_kernel(raw: np.ndarray, cfg: Config, anchor: np.ndarray | None = None) -> np.ndarray:
    """Raw collapsed G kernel → stored kernel: suppress noise, Gaussian prior, anchor blend, centre."""
    k = suppress_negligible(np.asarray(raw, dtype=np.float64), cfg.negligible_n)
    k = centre_kernel(k)
    if cfg.gaussian_prior > 0:
        k = (1 - cfg.gaussian_prior) * k + cfg.gaussian_prior * gaussian_fit(k)
    if cfg.anchor_blend > 0 and anchor is not None:
        k = (1 - cfg.anchor_blend) * k / k.sum() + cfg.anchor_blend * centre_kernel(pad_to(anchor, k.shape[0]))
    return k / k.sum()


def combine_kernels(kernels: list[np.ndarray], scores: list[float]) -> np.ndarray:
    """Weighted mean of centred kernels; weights are softmax of D verdicts (temperature 0.05)."""
    s = np.asarray(scores, dtype=np.float64)
    w = np.exp((s - s.max()) / 0.05)
    w /= w.sum()
    out = sum(wi * centre_kernel(k) for wi, k in zip(w, kernels))
    return out / out.sum()


def combine_runs(kernels: list[np.ndarray], scores: list[float], cfg: Config,
                 anchor: np.ndarray | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(stored kernel, each run's noise-suppressed kernel) from the raw kernels of a fit's restarts."""
    processed = [suppress_negligible(k, cfg.negligible_n) for k in kernels]
    return finalize_kernel(combine_kernels(processed, scores), replace(cfg, negligible_n=10 ** 6), anchor), processed


# ---------------------------------------------------------------------------------------------
# What one fit and the fits of many tiles share: anchor, networks, crops, schedule, early stop
# ---------------------------------------------------------------------------------------------

def measure_anchor(frames: np.ndarray, cfg: Config, seed: int) -> np.ndarray | None:
    """The kernel G is first held to: the sharp-edge estimate of ``frames``, or ``None`` for bicubic."""
    if cfg.anchor == "edges":
        cov, _ = estimate_covariance(frames, 2, seed, cfg.edge_quantile)
        return gaussian_from_covariance(cov, KERNEL_SIZE)
    if cfg.anchor != "bicubic":
        raise BadOptionError(f"anchor must be 'bicubic' or 'edges', got {cfg.anchor!r}")
    return None


def applied_anchor(anchor_kernel: np.ndarray | None, size: int) -> np.ndarray:
    """The anchor in the phase G applies it (centre of mass half a pixel off the middle, as bicubic's)."""
    return bicubic_kernel(size) if anchor_kernel is None else shift_kernel(pad_to(anchor_kernel, size), (0.5, 0.5))


def init_networks(seed: int, channels: int, device: torch.device,
                  g_factory: Callable[[], torch.nn.Module] | None = None,
                  d_factory: Callable[[int], torch.nn.Module] | None = None) -> tuple[torch.nn.Module, torch.nn.Module]:
    """G and D of a fit with ``seed``, initialised from their own seed without touching the global one."""
    torch_gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2 ** 31 - 1, (1,), generator=torch_gen)))
        # Factories let a loaded or meta-learned G / D run through the same loop.
        return (g_factory or DeepLinearG)().to(device), (d_factory or PatchD)(channels).to(device)


def crop_sizes(cfg: Config, shape: tuple[int, ...], ksize: int) -> tuple[int, int]:
    """(G's input crop, D's real crop = G's output size) for frames of ``shape`` (…, H, W)."""
    crop = min(cfg.crop, shape[-2], shape[-1])
    crop -= crop % 2
    return crop, (crop - ksize) // 2 + 1


class AnchorPhase:
    """The reference's anchor schedule, for T fits at once (T = 1 for one image).

    G is held near its anchor until the anchor MSE stays below ``anchor_threshold`` for
    ``anchor_patience`` steps; then the anchor weight is divided by ``anchor_decay`` every
    ``anchor_decay_every`` steps down to ``anchor_floor``, and the sparsity and centring terms switch
    on once it drops below ``constraints_below``.
    """

    def __init__(self, cfg: Config, t: int = 1) -> None:
        self.cfg = cfg
        self.weight = np.full(t, float(cfg.w_anchor))
        self.close = np.zeros(t, dtype=bool)
        self.satisfied = np.zeros(t, dtype=np.int64)
        self.constraints_on = np.zeros(t, dtype=bool)

    def update(self, it: int, bic: np.ndarray) -> None:
        """After step ``it``, with each fit's anchor MSE ``bic`` (T,) of that step."""
        cfg = self.cfg
        far = ~self.close
        decay = self.close & ((it + 1) % cfg.anchor_decay_every == 0) & (self.weight > cfg.anchor_floor)
        self.satisfied = np.where(far, np.where(np.asarray(bic) < cfg.anchor_threshold, self.satisfied + 1, 0),
                                  self.satisfied)
        self.close = self.close | (far & (self.satisfied >= cfg.anchor_patience))
        self.weight = np.where(decay, np.maximum(self.weight / cfg.anchor_decay, cfg.anchor_floor), self.weight)
        self.constraints_on = self.constraints_on | (decay & (self.weight < cfg.constraints_below))

    def select(self, idx: np.ndarray) -> None:
        """Keep the fits ``idx`` only."""
        self.weight, self.close = self.weight[idx], self.close[idx]
        self.satisfied, self.constraints_on = self.satisfied[idx], self.constraints_on[idx]


class EarlyStop:
    """Whether each of T fits has settled: its kernel changed by less than ``early_stop_tol`` (L1)
    since the previous check, checks every ``early_stop_every`` steps of the last learning-rate phase."""

    def __init__(self, cfg: Config, t: int = 1) -> None:
        self.cfg = cfg
        self.final_phase = (cfg.iterations - 1) // cfg.lr_step * cfg.lr_step
        self.last: list[np.ndarray | None] = [None] * t

    def due(self, it: int) -> bool:
        """Whether step ``it`` ends with a check."""
        cfg = self.cfg
        return cfg.early_stop and it >= self.final_phase and (it + 1) % cfg.early_stop_every == 0

    def settled(self, raw: np.ndarray) -> np.ndarray:
        """(T,) bool, from each fit's raw kernel (T, k, k) now."""
        cur = [centre_kernel(suppress_negligible(k, self.cfg.negligible_n)) for k in raw]
        out = np.array([last is not None and np.abs(c - last).sum() < self.cfg.early_stop_tol
                        for c, last in zip(cur, self.last)], dtype=bool)
        self.last = cur
        return out

    def select(self, idx: np.ndarray) -> None:
        self.last = [self.last[i] for i in idx]


# ---------------------------------------------------------------------------------------------
# One fit
# ---------------------------------------------------------------------------------------------

class KernelGANFit:
    """State of one KernelGAN run on prepared frames (N, C, H, W) in [0, 1]."""

    def __init__(self, frames: np.ndarray, cfg: Config, device: torch.device, seed: int,
                 anchor_kernel: np.ndarray | None = None, *, g_factory: Callable[[], torch.nn.Module] | None = None,
                 d_factory: Callable[[int], torch.nn.Module] | None = None) -> None:
        self.cfg = cfg
        self.device = device
        self.channels = frames.shape[1]
        self.noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
        self.G, self.D = init_networks(seed, self.channels, device, g_factory, d_factory)
        self.ksize = self.G.kernel_size
        self.g_crop, self.d_crop = crop_sizes(cfg, frames.shape, self.ksize)
        rng = np.random.default_rng(seed)
        self.g_sampler = CropSampler(frames, self.g_crop, rng)
        self.d_sampler = CropSampler(frames, self.d_crop, rng)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        self.sched_g = torch.optim.lr_scheduler.StepLR(self.opt_g, cfg.lr_step, cfg.lr_gamma)
        self.sched_d = torch.optim.lr_scheduler.StepLR(self.opt_d, cfg.lr_step, cfg.lr_gamma)
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
        self.anchor = as_t(applied_anchor(anchor_kernel, self.ksize))
        self.mask = as_t(boundary_mask(self.ksize))
        idx = torch.arange(self.ksize, dtype=torch.float32, device=device)
        self.idx = idx
        self.centre_target = as_t([self.ksize // 2 + 0.5] * 2)
        self.phase = AnchorPhase(cfg)
        self.history: dict[str, list[float]] = {"g_gan": [], "d": [], "regulariser": [], "anchor": []}

    def prefit(self, steps: int, every: int = 25) -> Iterator[int]:
        """Move G onto its anchor in kernel space: G collapses to one kernel in milliseconds,
        so this replaces hundreds of image-space steps of the anchoring phase.

        Yields the number of steps done every ``every`` steps, so a caller can report and cancel.
        """
        opt = torch.optim.Adam(self.G.parameters(), lr=1e-3, betas=self.cfg.betas)
        for i in range(steps):
            opt.zero_grad(set_to_none=True)
            ((self.G.kernel() - self.anchor) ** 2).sum().backward()
            opt.step()
            if (i + 1) % every == 0 or i + 1 == steps:
                yield i + 1
        self.phase.close[:] = True

    def _crops(self, sampler: CropSampler, n: int) -> torch.Tensor:
        # The reference works on images in [-1, 1]; the thresholds above assume it.
        return torch.from_numpy(sampler.sample(n)).to(self.device, non_blocking=True) * 2 - 1

    def generate(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        """G's map with its collapsed ``kernel``: (B, C, h, w) → (B, C, (h − k)//2 + 1, …), channels batched."""
        return Degradation.from_applied(kernel, 2, "valid").A(x)

    def regulariser(self, k: torch.Tensor, g_out: torch.Tensor,
                    g_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        reg = cfg.w_sum2one * (1 - k.sum()).abs() + cfg.w_boundaries * (k * self.mask).abs().mean()
        bic = F.mse_loss(g_out, self.generate(g_in, self.anchor))
        reg = reg + float(self.phase.weight[0]) * bic
        if self.phase.constraints_on[0]:
            sparse = (k.abs() + 1e-12).pow(0.2).mean()
            com = torch.stack([(k.sum(1) * self.idx).sum(), (k.sum(0) * self.idx).sum()]) / k.sum()
            reg = reg + cfg.w_sparse * sparse + cfg.w_centre * F.mse_loss(com, self.centre_target)
        return reg, bic.detach()

    def step(self, it: int) -> None:
        cfg = self.cfg
        g_in = self._crops(self.g_sampler, cfg.batch)
        real = self._crops(self.d_sampler, cfg.batch)

        # G step
        self.opt_g.zero_grad(set_to_none=True)
        k = self.G.kernel()
        g_out = self.generate(g_in, k)
        d_fake = self.D(g_out)
        loss_gan = (d_fake - 1).abs().mean()
        reg, bic = self.regulariser(k, g_out, g_in)
        bic = float(bic)
        (loss_gan + reg).backward()
        self.opt_g.step()

        # D step: real crops → 1, G outputs (with a little noise) → 0
        self.opt_d.zero_grad(set_to_none=True)
        noise = torch.randn(g_out.shape, generator=self.noise_gen, device=self.device) * cfg.d_noise
        d_real = self.D(real)
        d_fake = self.D(g_out.detach() + noise)
        loss_d = 0.5 * ((d_real - 1).abs().mean() + d_fake.abs().mean())
        loss_d.backward()
        self.opt_d.step()
        self.sched_g.step()
        self.sched_d.step()

        self.phase.update(it, np.array([bic]))
        self.history["g_gan"].append(float(loss_gan.detach()))
        self.history["d"].append(float(loss_d.detach()))
        self.history["regulariser"].append(float(reg.detach()))
        self.history["anchor"].append(bic)

    @torch.no_grad()
    def kernel(self) -> np.ndarray:
        return self.G.kernel().double().cpu().numpy()

    @torch.no_grad()
    def verdict(self, frames: np.ndarray, seed: int) -> float:
        """Mean D score of G's output on held-out crops (higher: G fools D more)."""
        sampler = CropSampler(frames, self.g_crop, np.random.default_rng(seed))
        self.D.eval()
        x = torch.from_numpy(sampler.sample(self.cfg.verdict_crops)).to(self.device) * 2 - 1
        score = float(self.D(self.generate(x, self.G.kernel())).mean())
        self.D.train()
        return score

    @torch.no_grad()
    def dmap(self, frames: np.ndarray, strip: int = 256) -> np.ndarray:
        """D's verdict on the input's own patches, for every pixel: (N, H, W), in strips."""
        self.D.eval()
        pad = self.D.receptive_field // 2
        out = []
        for frame in frames:
            t = torch.from_numpy(frame)[None] * 2 - 1
            h = t.shape[-2]
            rows = []
            for r0 in range(0, h, strip):
                r1 = min(h, r0 + strip)
                lo, hi = max(0, r0 - pad), min(h, r1 + pad)
                piece = t[..., lo:hi, :]
                piece = F.pad(piece, (pad, pad, pad - (r0 - lo), pad - (hi - r1)), mode="reflect")
                rows.append(self.D(piece.to(self.device))[0, 0].cpu())
            out.append(torch.cat(rows, 0).numpy())
        self.D.train()
        return np.stack(out)


def _preset_values(cfg: Config) -> dict[str, Any]:
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}


CPU = torch.device("cpu")

OPTION_HELP = {
    "preset": "paper: as published (3000 steps); default: anchored on the sharp-edge estimate; fast: a preview",
    "iterations": "GAN steps per run; unset: the preset's own number (the schedule is stretched to fit)",
}


@register("kernelgan", kind="estimator", summary="KernelGAN (Bell-Kligler et al. 2019): deep linear G against a "
          "patch D; ×2 kernel, ×4 analytic, D-map",
          presets={name: _preset_values(cfg) for name, cfg in PRESETS.items()},
          defaults={"preset": "default", **{f.name: None for f in fields(Config)}},
          main=("preset", "iterations"), help=OPTION_HELP, choices={"anchor": ("bicubic", "edges")})
def kernelgan(frames: np.ndarray, *, scale: int = 2, device: torch.device = CPU, seed: int = 0,
              report_every: int = 50, preset: str = "default", iterations: int | None = None,
              g_factory: Callable[[], torch.nn.Module] | None = None,
              d_factory: Callable[[int], torch.nn.Module] | None = None,
              **overrides: Any) -> Generator[Progress, None, KernelEstimate]:
    """Estimate the ×2 SR kernel of ``frames`` (N, C, H, W) float32 in [0, 1].

    Yields :class:`Progress` from the first second (anchor, then every GAN
    step, with the current kernel every ``report_every`` steps); returns a
    :class:`KernelEstimate` with the D-map of the best run. ``overrides``: any
    :class:`Config` field (``None`` keeps the preset's value). ``g_factory`` /
    ``d_factory`` build other networks for the same fit loop (see :class:`KernelGANFit`).
    """
    cfg = resolve_config(preset, iterations, **{k: v for k, v in overrides.items() if v is not None})
    start = time.perf_counter()
    total = cfg.iterations * cfg.restarts
    kernels: list[np.ndarray] = []
    scores: list[float] = []
    fits: list[KernelGANFit] = []
    history: dict[str, list[float]] = {}
    done = 0
    if cfg.anchor == "edges":
        yield Progress(0, total, time.perf_counter() - start, stage=Stage.ANCHOR,
                       message="measuring the sharpest edges")
    anchor = measure_anchor(frames, cfg, seed)
    if anchor is not None:
        yield Progress(0, total, time.perf_counter() - start, stage=Stage.ANCHOR, kernel=anchor,
                       message="edge anchor measured")
    for run in range(cfg.restarts):
        fit = KernelGANFit(frames, cfg, device, seed + 1000 * run, anchor, g_factory=g_factory, d_factory=d_factory)
        for step in fit.prefit(cfg.prefit_steps):
            yield Progress(done, total, time.perf_counter() - start, stage=Stage.ANCHOR,
                           message=f"run {run + 1}/{cfg.restarts}: fitting G to the anchor, {step}/{cfg.prefit_steps}")
        early = EarlyStop(cfg)
        for it in range(cfg.iterations):
            fit.step(it)
            done += 1
            stop = early.due(it) and bool(early.settled(fit.kernel()[None])[0])
            if (it + 1) % report_every == 0 or it + 1 == cfg.iterations or stop:
                current = finalize_kernel(fit.kernel(), cfg, anchor)
                loss = {k: v[-1] for k, v in fit.history.items() if v}
                yield Progress(done, total, time.perf_counter() - start, stage=Stage.ESTIMATE, kernel=current,
                               loss=loss, message=f"run {run + 1}/{cfg.restarts}, step {it + 1}")
            else:
                # A report every step (without the kernel) lets a caller cancel at once.
                yield Progress(done, total, time.perf_counter() - start, stage=Stage.ESTIMATE)
            if stop:
                total -= cfg.iterations - it - 1
                break
        kernels.append(fit.kernel())
        scores.append(fit.verdict(frames, seed + 7919) if cfg.restarts > 1 else 1.0)
        fits.append(fit)
        for key, vals in fit.history.items():
            history.setdefault(key, []).extend(vals)
    kernel, processed = combine_runs(kernels, scores, cfg, anchor)
    best = int(np.argmax(scores))
    yield Progress(total, total, time.perf_counter() - start, stage=Stage.DMAP, kernel=kernel,
                   message="computing the discriminator map")
    dmap = fits[best].dmap(frames)
    return KernelEstimate(kernel=kernel, dmap=dmap, loss_history=history, iterations=done,
                          elapsed=time.perf_counter() - start, device=str(device), seed=seed,
                          options={"preset": preset},
                          extras={"anchor_kernel": anchor, "run_kernels": [centre_kernel(k) for k in processed],
                                  "verdicts": scores, "config": _preset_values(cfg)})


@register_tiles("kernelgan")
def kernelgan_tiles(frames: np.ndarray, boxes: np.ndarray, *, scale: int = 2, device: torch.device = CPU,
                    seed: int = 0, report_every: int = 50, preset: str = "default", iterations: int | None = None,
                    **overrides: Any) -> Generator[Progress, None, list[TileResult]]:
    """Every tile of a kernel map fitted at once (:func:`._kernelgan_tiles.fit_tiles`: one G and D per
    tile as grouped convolutions), each exactly as :func:`kernelgan` fits that tile alone with ``seed``:
    its own edge anchor, crops, anchor schedule, early stop, restarts and post-processing. A tile
    without usable edges for its anchor gets no kernel. KernelGAN gives no confidence: the tiles get none."""
    from ._kernelgan_tiles import fit_tiles

    cfg = resolve_config(preset, iterations, **{k: v for k, v in overrides.items() if v is not None})
    boxes = np.asarray(boxes).reshape(-1, 4)
    start = time.perf_counter()
    parts = [np.ascontiguousarray(frames[..., y0:y1, x0:x1]) for y0, x0, y1, x1 in boxes]
    groups: dict[tuple[int, ...], list[int]] = {}   # tiles of one size share one network
    results: list[TileResult | None] = [None] * len(parts)
    anchors: list[np.ndarray | None] = []
    for i, part in enumerate(parts):
        yield Progress(0, 1, time.perf_counter() - start, stage=Stage.ANCHOR,
                       message=f"kernelgan: anchor of tile {i + 1} of {len(parts)}")
        try:
            anchors.append(measure_anchor(part, cfg, seed))
        except BadInputError as exc:
            anchors.append(None)
            results[i] = TileResult(kernel=None, confidence=0.0, message=str(exc).splitlines()[0])
            continue
        groups.setdefault(part.shape, []).append(i)
    total = cfg.iterations * cfg.restarts * len(groups)
    raw: dict[int, list[np.ndarray]] = {}
    scores: dict[int, list[float]] = {}
    for g, tiles in enumerate(groups.values()):
        for run in range(cfg.restarts):
            offset = (g * cfg.restarts + run) * cfg.iterations
            kernels, verdicts = yield from fit_tiles([parts[i] for i in tiles], [anchors[i] for i in tiles], cfg,
                                                     device, seed + 1000 * run, seed + 7919, offset=offset,
                                                     total=total)
            for i, k, v in zip(tiles, kernels, verdicts):
                raw.setdefault(i, []).append(k)
                scores.setdefault(i, []).append(float(v))
    for i in raw:
        kernel, _ = combine_runs(raw[i], scores[i], cfg, anchors[i])
        results[i] = TileResult(kernel=kernel, confidence=None, covariance=second_moments(kernel))
    return results


__all__ = ["PRESETS", "Config", "resolve_config", "kernelgan", "kernelgan_tiles", "KernelGANFit", "finalize_kernel",
           "bicubic_kernel", "AnchorPhase", "EarlyStop"]
