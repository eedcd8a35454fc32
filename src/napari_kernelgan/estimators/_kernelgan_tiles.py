"""KernelGAN on every tile of a kernel map at once: T generators and T discriminators as one network
with grouped convolutions (:mod:`._tile_nets`), trained together.

Each tile is fitted as :class:`~.kernelgan.KernelGANFit` fits it alone with the same seed: the same
initial G and D, crops drawn from its own box by its own sampler, its own anchor and anchor schedule,
the same noise, Adam over its own parameters (the summed losses give each tile exactly its own
gradient), the same learning-rate steps and early stop. A tile that settles is dropped from the
network with its optimiser state, so its kernel and D stay as they were when it stopped and it costs
nothing more. A one-tile fit reproduces the whole-image fit of the same pixels.
"""
from __future__ import annotations

import time
from collections.abc import Generator, Iterator

import numpy as np
import torch

from ..types import Progress
from ..vocabulary import Stage
from ._tile_nets import TileAdam, TileD, collapse_kernels, downscale, per_tile, stack, take
from .kernelgan import (
    AnchorPhase,
    Config,
    CropSampler,
    EarlyStop,
    applied_anchor,
    boundary_mask,
    crop_sizes,
    init_networks,
)

__all__ = ["TileKernelGAN", "fit_tiles"]


class TileKernelGAN:
    """T KernelGAN fits of one seed's G and D, one per anchor of ``anchors`` (T, k, k) (applied phase)."""

    def __init__(self, g: torch.nn.Module, d: torch.nn.Module, anchors: np.ndarray, cfg: Config,
                 device: torch.device) -> None:
        t = len(anchors)
        self.cfg = cfg
        self.g_weights = [stack(layer.weight, t, grad=True) for layer in g.layers]       # (T, o, i, k, k)
        self.d = TileD(d, t)
        self.opt_g = TileAdam(self.g_weights, cfg.lr_g, cfg.betas)
        self.opt_d = TileAdam(self.d.params(), cfg.lr_d, cfg.betas)
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
        self.anchor = as_t(anchors)
        size = self.anchor.shape[-1]
        self.mask = as_t(boundary_mask(size))
        self.idx = torch.arange(size, dtype=torch.float32, device=device)
        self.centre_target = as_t([size // 2 + 0.5] * 2)
        self.phase = AnchorPhase(cfg, t)

    def kernels(self) -> torch.Tensor:
        """(T, k, k): each tile's G collapsed into its kernel."""
        return collapse_kernels(self.g_weights)

    def prefit(self, steps: int, every: int = 25) -> Iterator[int]:
        """Every G moved onto its anchor in kernel space (:meth:`KernelGANFit.prefit`, batched)."""
        opt = TileAdam(self.g_weights, 1e-3, self.cfg.betas)
        for i in range(steps):
            grads = torch.autograd.grad(((self.kernels() - self.anchor) ** 2).sum(), self.g_weights)
            opt.step(self.g_weights, grads)
            if (i + 1) % every == 0 or i + 1 == steps:
                yield i + 1
        self.phase.close[:] = True

    def regulariser(self, k: torch.Tensor, g_out: torch.Tensor,
                    g_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T,) regularisers and (T,) anchor MSEs (:meth:`KernelGANFit.regulariser`, per tile)."""
        cfg, t = self.cfg, len(k)
        reg = cfg.w_sum2one * (1 - k.sum((-2, -1))).abs() + cfg.w_boundaries * (k * self.mask).abs().mean((-2, -1))
        with torch.no_grad():
            target = downscale(g_in, self.anchor)
        bic = ((g_out - target) ** 2).reshape(len(g_out), t, -1).mean(dim=(0, 2))
        reg = reg + torch.as_tensor(self.phase.weight, dtype=k.dtype, device=k.device) * bic
        on = self.phase.constraints_on
        if on.any():
            sparse = (k.abs() + 1e-12).pow(0.2).mean((-2, -1))
            mass = k.sum((-2, -1))
            com = torch.stack([(k.sum(2) * self.idx).sum(-1), (k.sum(1) * self.idx).sum(-1)], -1) / mass[:, None]
            centre = ((com - self.centre_target) ** 2).mean(-1)
            # A tile whose constraints are still off gets exactly zero gradient from them.
            reg = reg + torch.as_tensor(on, dtype=k.dtype, device=k.device) * (cfg.w_sparse * sparse
                                                                               + cfg.w_centre * centre)
        return reg, bic.detach()

    def step(self, it: int, g_in: torch.Tensor, real: torch.Tensor, noise: torch.Tensor) -> dict[str, np.ndarray]:
        """Step ``it`` of every tile (:meth:`KernelGANFit.step`): crops ``g_in`` and ``real``
        (B, T·C, …) in [-1, 1], ``noise`` (B, C, …) as one fit draws it; returns each tile's losses."""
        cfg = self.cfg
        k = self.kernels()
        g_out = downscale(g_in, k)
        gan = per_tile((self.d(g_out) - 1).abs())
        reg, bic = self.regulariser(k, g_out, g_in)
        self.opt_g.step(self.g_weights, torch.autograd.grad((gan + reg).sum(), self.g_weights))

        fake = g_out.detach() + noise.repeat(1, len(k), 1, 1)
        loss_d = 0.5 * (per_tile((self.d(real) - 1).abs()) + per_tile(self.d(fake)))
        d_params = self.d.params()
        self.opt_d.step(d_params, torch.autograd.grad(loss_d.sum(), d_params))
        if (it + 1) % cfg.lr_step == 0:  # StepLR's update, after the step
            self.opt_g.lr *= cfg.lr_gamma
            self.opt_d.lr *= cfg.lr_gamma
        bic_np = bic.cpu().numpy()
        self.phase.update(it, bic_np)
        return {"g_gan": gan.detach().cpu().numpy(), "d": loss_d.detach().cpu().numpy(),
                "regulariser": reg.detach().cpu().numpy(), "anchor": bic_np}

    def select(self, idx: np.ndarray) -> None:
        """Keep the tiles ``idx`` only (their parameters, optimiser moments and schedules)."""
        self.g_weights = [take(w, idx) for w in self.g_weights]
        self.d.select(idx)
        self.opt_g.select(idx)
        self.opt_d.select(idx)
        self.anchor = take(self.anchor, idx)
        self.phase.select(idx)

    @torch.no_grad()
    def verdict(self, x: torch.Tensor, chunk: int = 8) -> np.ndarray:
        """(T,) mean D score (evaluation mode) of each G's output on held-out crops ``x`` (B, T·C, …)."""
        k = self.kernels()
        # In chunks of crops: D's features for all crops of all tiles at once would take gigabytes.
        scores = torch.cat([self.d(downscale(part, k), train=False) for part in x.split(chunk)])
        return per_tile(scores).double().cpu().numpy()


def _crops(samplers: list[CropSampler], n: int, device: torch.device) -> torch.Tensor:
    """(n, T·C, c, c) in [-1, 1]: ``n`` crops of each tile, tiles side by side along the channels."""
    return torch.from_numpy(np.concatenate([s.sample(n) for s in samplers], axis=1)).to(device) * 2 - 1


def fit_tiles(parts: list[np.ndarray], anchors: list[np.ndarray | None], cfg: Config, device: torch.device,
              seed: int, verdict_seed: int, *, offset: int, total: int,
              ) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray]]:
    """One KernelGAN run on each of the frames ``parts`` (T × (N, C, h, w), one size) with its anchor
    (``None``: bicubic), as :func:`~.kernelgan.kernelgan` runs one with ``seed``.

    Yields a report every step, counted from ``offset`` of ``total``; returns each tile's raw
    kernel (T, k, k) and, with ``cfg.restarts`` > 1, its D verdict (T,) on crops drawn with
    ``verdict_seed`` (else ones).
    """
    start = time.perf_counter()
    t = len(parts)
    g, d = init_networks(seed, parts[0].shape[1], device)
    ksize = g.kernel_size
    g_crop, d_crop = crop_sizes(cfg, parts[0].shape, ksize)
    rngs = [np.random.default_rng(seed) for _ in parts]
    g_samplers = [CropSampler(p, g_crop, rng) for p, rng in zip(parts, rngs)]
    d_samplers = [CropSampler(p, d_crop, rng) for p, rng in zip(parts, rngs)]
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    nets = TileKernelGAN(g, d, np.stack([applied_anchor(a, ksize) for a in anchors]), cfg, device)
    for step in nets.prefit(cfg.prefit_steps):
        yield Progress(offset, total, time.perf_counter() - start, stage=Stage.ANCHOR,
                       message=f"kernelgan: fitting {t} tiles' G to their anchors, {step}/{cfg.prefit_steps}")

    def verdicts(tiles: np.ndarray) -> np.ndarray:
        if cfg.restarts == 1:
            return np.ones(len(tiles))
        held_out = [CropSampler(parts[i], g_crop, np.random.default_rng(verdict_seed)) for i in tiles]
        return nets.verdict(_crops(held_out, cfg.verdict_crops, device))

    kernels = np.zeros((t, ksize, ksize))
    scores = np.ones(t)
    active = np.arange(t)      # the tiles still fitting, in the order of the network's groups
    early = EarlyStop(cfg, t)
    channels = parts[0].shape[1]
    for it in range(cfg.iterations):
        g_in = _crops([g_samplers[i] for i in active], cfg.batch, device)
        real = _crops([d_samplers[i] for i in active], cfg.batch, device)
        noise = torch.randn((cfg.batch, channels, d_crop, d_crop), generator=noise_gen, device=device) * cfg.d_noise
        losses = nets.step(it, g_in, real, noise)
        settled_before = t - len(active)
        last = it + 1 == cfg.iterations
        settled = early.settled(nets.kernels().detach().double().cpu().numpy()) if early.due(it) else None
        if last or (settled is not None and settled.any()):
            done = np.ones(len(active), dtype=bool) if last else settled
            kernels[active[done]] = nets.kernels().detach().double().cpu().numpy()[done]
            scores[active[done]] = verdicts(active)[done]
            keep = np.flatnonzero(~done)
            active = active[keep]
            if len(keep):
                nets.select(keep)
                early.select(keep)
        yield Progress(offset + it + 1, total, time.perf_counter() - start, stage=Stage.MAP,
                       loss={k: float(v.mean()) for k, v in losses.items()},
                       message=f"kernelgan: step {it + 1}/{cfg.iterations} of {t} tiles at once "
                               f"({settled_before} settled)")
        if not len(active):
            break
    return kernels, scores
