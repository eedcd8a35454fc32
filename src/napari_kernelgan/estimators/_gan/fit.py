"""KernelGAN fits of T pictures at once, one image being T = 1: T generators and T discriminators as one
network with grouped convolutions (:mod:`.._tile_nets`), trained together.

Each picture (a tile of a kernel map, or the whole image) is fitted with the same seed's initial G
and D, crops drawn from its own pixels by its own sampler, its own anchor and anchor schedule, the
same noise, Adam over its own parameters (the summed losses give each picture exactly its own
gradient), the same learning-rate steps and early stop. A picture that settles is dropped from the
network with its optimiser state, so its kernel and D stay as they were when it stopped and it costs
nothing more. A fit of one picture computes with D's own module and the single-image degradation, the
arithmetic the whole-image estimate has always had, so one image gives the same kernel to the bit.
"""
from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...physics.operators import Degradation
from .._tile_nets import TileAdam, TileD, collapse_kernels, downscale, per_tile, stack, take
from ..networks import DeepLinearG, PatchD
from .config import Config
from .crops import CropSampler, crop_sizes, draw_crops
from .dmap import iter_discriminator_map
from .kernels import applied_anchor, boundary_mask
from .schedule import AnchorPhase, EarlyStop

__all__ = ["init_networks", "KernelGANFit", "Step"]


def init_networks(seed: int, channels: int, device: torch.device,
                  g_factory: Callable[[], nn.Module] | None = None,
                  d_factory: Callable[[int], nn.Module] | None = None) -> tuple[nn.Module, nn.Module]:
    """G and D of a fit with ``seed``, initialised from their own seed without touching the global one."""
    torch_gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2 ** 31 - 1, (1,), generator=torch_gen)))
        # Factories let a loaded or meta-learned G / D run through the same loop.
        return (g_factory or DeepLinearG)().to(device), (d_factory or PatchD)(channels).to(device)


class _ModuleD:
    """One picture's D as its own module, with :class:`.._tile_nets.TileD`'s interface.

    The module's spectral norm computes with ``mv``/``vdot`` where the grouped form uses batched products;
    a GAN magnifies that last-bit difference within a few hundred steps, so a one-picture fit keeps the module.
    """

    def __init__(self, d: nn.Module) -> None:
        self.module = d

    def params(self) -> list[torch.Tensor]:
        return list(self.module.parameters())

    def select(self, idx: np.ndarray) -> None:
        if len(idx) != 1:
            raise ValueError("a one-picture discriminator keeps its one picture or ends")

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        self.module.train(train)
        return self.module(x)


@dataclass
class Step:
    """What a fit reports after each GAN step."""

    it: int                          # the step just done (0-based)
    losses: dict[str, np.ndarray]    # each fitting picture's losses of the step
    settled_before: int              # pictures that had settled before this step
    finished: bool                   # every picture has its kernel: the fit ends here


class KernelGANFit:
    """KernelGAN fits of the frames ``parts`` (T × (N, C, h, w) in [0, 1], one size) with their anchors
    (``None``: bicubic) and ``seed``; :meth:`prefit`, then :meth:`run`; the raw kernels are in :attr:`raw`."""

    def __init__(self, parts: list[np.ndarray], anchors: list[np.ndarray | None], cfg: Config,
                 device: torch.device, seed: int, *, g_factory: Callable[[], nn.Module] | None = None,
                 d_factory: Callable[[int], nn.Module] | None = None) -> None:
        t = len(parts)
        self.parts, self.cfg, self.device, self.single = parts, cfg, device, t == 1
        self.channels = parts[0].shape[1]
        g, d = init_networks(seed, self.channels, device, g_factory, d_factory)
        self.receptive_field = d.receptive_field
        self.ksize = g.kernel_size
        self.g_crop, self.d_crop = crop_sizes(cfg, parts[0].shape, self.ksize)
        rngs = [np.random.default_rng(seed) for _ in parts]   # one per picture: G's and D's crops share it
        self.g_samplers = [CropSampler(p, self.g_crop, rng) for p, rng in zip(parts, rngs)]
        self.d_samplers = [CropSampler(p, self.d_crop, rng) for p, rng in zip(parts, rngs)]
        self.noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
        self.g_weights = [stack(layer.weight, t, grad=True) for layer in g.layers]       # (T, o, i, k, k)
        self.d = _ModuleD(d) if self.single else TileD(d, t)
        self.opt_g = TileAdam(self.g_weights, cfg.lr_g, cfg.betas)
        self.opt_d = TileAdam(self.d.params(), cfg.lr_d, cfg.betas)
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
        self.anchor = as_t(np.stack([applied_anchor(a, self.ksize) for a in anchors]))
        self.mask = as_t(boundary_mask(self.ksize))
        self.idx = torch.arange(self.ksize, dtype=torch.float32, device=device)
        self.centre_target = as_t([self.ksize // 2 + 0.5] * 2)
        self.phase = AnchorPhase(cfg, t)
        self.early = EarlyStop(cfg, t)
        self.active = np.arange(t)      # the pictures still fitting, in the order of the network's groups
        self.raw = np.zeros((t, self.ksize, self.ksize))
        self.scores = np.ones(t)
        self.history: dict[str, list[float]] = {"g_gan": [], "d": [], "regulariser": [], "anchor": []}

    # ----------------------------------------------------------------------------------- the networks
    def kernels(self) -> torch.Tensor:
        """(T, k, k): each fitting picture's G collapsed into its kernel."""
        return collapse_kernels(self.g_weights)

    def _downscale(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if self.single:
            return Degradation.from_applied(k[0], 2, "valid").A(x)
        return downscale(x, k)

    def current(self) -> np.ndarray:
        """(T, k, k) raw kernels now: those of settled pictures as they settled, the others' as they are."""
        out = self.raw.copy()
        if len(self.active):
            with torch.no_grad():
                out[self.active] = self.kernels().double().cpu().numpy()
        return out

    # ------------------------------------------------------------------------------------ the stages
    def prefit(self, steps: int, every: int = 25) -> Iterator[int]:
        """Move every G onto its anchor in kernel space: G collapses to one kernel in milliseconds, so this
        replaces hundreds of image-space steps of the anchoring phase. Yields the steps done every ``every``."""
        opt = TileAdam(self.g_weights, 1e-3, self.cfg.betas)
        for i in range(steps):
            grads = torch.autograd.grad(((self.kernels() - self.anchor) ** 2).sum(), self.g_weights)
            opt.step(self.g_weights, grads)
            if (i + 1) % every == 0 or i + 1 == steps:
                yield i + 1
        self.phase.close[:] = True

    def run(self, verdict_seed: int) -> Iterator[Step]:
        """The GAN steps, until every picture has settled or the iterations are done. With ``cfg.restarts``
        > 1 each picture's D verdict (crops drawn with ``verdict_seed``) is taken as it finishes."""
        cfg, t = self.cfg, len(self.parts)
        for it in range(cfg.iterations):
            g_in = draw_crops([self.g_samplers[i] for i in self.active], cfg.batch, self.device)
            real = draw_crops([self.d_samplers[i] for i in self.active], cfg.batch, self.device)
            noise = torch.randn((cfg.batch, self.channels, self.d_crop, self.d_crop), generator=self.noise_gen,
                                device=self.device) * cfg.d_noise
            losses = self.step(it, g_in, real, noise)
            settled_before = t - len(self.active)
            last = it + 1 == cfg.iterations
            settled = self.early.settled(self.kernels().detach().double().cpu().numpy()) if self.early.due(it) else None
            if last or (settled is not None and settled.any()):
                done = np.ones(len(self.active), dtype=bool) if last else settled
                self.raw[self.active[done]] = self.kernels().detach().double().cpu().numpy()[done]
                if cfg.restarts > 1:
                    self.scores[self.active[done]] = self.verdicts(verdict_seed)[done]
                keep = np.flatnonzero(~done)
                self.active = self.active[keep]
                if len(keep):
                    self.select(keep)
            yield Step(it, losses, settled_before, finished=not len(self.active))
            if not len(self.active):
                break

    def step(self, it: int, g_in: torch.Tensor, real: torch.Tensor, noise: torch.Tensor) -> dict[str, np.ndarray]:
        """Step ``it`` of every fitting picture: crops ``g_in`` and ``real`` (B, T·C, …) in [-1, 1], ``noise``
        (B, C, …) as one fit draws it; returns each picture's losses and adds their means to :attr:`history`."""
        cfg = self.cfg
        k = self.kernels()
        g_out = self._downscale(g_in, k)
        gan = per_tile((self.d(g_out) - 1).abs())
        reg, bic = self.regulariser(k, g_out, g_in)
        self.opt_g.step(self.g_weights, torch.autograd.grad((gan + reg).sum(), self.g_weights))

        # D: real crops → 1, G's outputs (with a little noise) → 0
        fake = g_out.detach() + noise.repeat(1, len(k), 1, 1)
        loss_d = 0.5 * (per_tile((self.d(real) - 1).abs()) + per_tile(self.d(fake)))
        d_params = self.d.params()
        self.opt_d.step(d_params, torch.autograd.grad(loss_d.sum(), d_params))
        if (it + 1) % cfg.lr_step == 0:  # StepLR's update, after the step
            self.opt_g.lr *= cfg.lr_gamma
            self.opt_d.lr *= cfg.lr_gamma
        bic_np = bic.cpu().numpy()
        self.phase.update(it, bic_np)
        losses = {"g_gan": gan.detach().cpu().numpy(), "d": loss_d.detach().cpu().numpy(),
                  "regulariser": reg.detach().cpu().numpy(), "anchor": bic_np}
        for key, value in losses.items():
            self.history[key].append(float(value.mean()))
        return losses

    def regulariser(self, k: torch.Tensor, g_out: torch.Tensor,
                    g_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(T,) regularisers and (T,) anchor MSEs: ``sum2one + boundaries + anchor weight · anchor MSE``,
        plus the sparsity and centring terms once a picture's anchor phase switched them on."""
        cfg, t = self.cfg, len(k)
        reg = cfg.w_sum2one * (1 - k.sum((-2, -1))).abs() + cfg.w_boundaries * (k * self.mask).abs().mean((-2, -1))
        with torch.no_grad():
            target = self._downscale(g_in, self.anchor)
        on = self.phase.constraints_on
        if self.single:
            # One picture: the terms in the whole-image fit's own form and order (mse_loss's backward
            # rounds differently from a mean of squares, and a GAN magnifies the last bit).
            bic = F.mse_loss(g_out, target)
            reg = reg + float(self.phase.weight[0]) * bic
            if on[0]:
                k0 = k[0]
                sparse = (k0.abs() + 1e-12).pow(0.2).mean()
                com = torch.stack([(k0.sum(1) * self.idx).sum(), (k0.sum(0) * self.idx).sum()]) / k0.sum()
                reg = reg + cfg.w_sparse * sparse + cfg.w_centre * F.mse_loss(com, self.centre_target)
            return reg, bic.detach()[None]
        bic = ((g_out - target) ** 2).reshape(len(g_out), t, -1).mean(dim=(0, 2))
        reg = reg + torch.as_tensor(self.phase.weight, dtype=k.dtype, device=k.device) * bic
        if on.any():
            sparse = (k.abs() + 1e-12).pow(0.2).mean((-2, -1))
            mass = k.sum((-2, -1))
            com = torch.stack([(k.sum(2) * self.idx).sum(-1), (k.sum(1) * self.idx).sum(-1)], -1) / mass[:, None]
            centre = ((com - self.centre_target) ** 2).mean(-1)
            # A picture whose constraints are still off gets exactly zero gradient from them.
            reg = reg + torch.as_tensor(on, dtype=k.dtype, device=k.device) * (cfg.w_sparse * sparse
                                                                               + cfg.w_centre * centre)
        return reg, bic.detach()

    def select(self, idx: np.ndarray) -> None:
        """Keep the fitting pictures ``idx`` only (their parameters, optimiser moments and schedules)."""
        self.g_weights = [take(w, idx) for w in self.g_weights]
        self.d.select(idx)
        self.opt_g.select(idx)
        self.opt_d.select(idx)
        self.anchor = take(self.anchor, idx)
        self.phase.select(idx)
        self.early.select(idx)

    # ------------------------------------------------------------------------------------ D's verdict
    @torch.no_grad()
    def verdicts(self, seed: int, chunk: int = 8) -> np.ndarray:
        """Each fitting picture's mean D score (evaluation mode) of its G's output on held-out crops drawn
        with ``seed`` (higher: G fools D more)."""
        held_out = [CropSampler(self.parts[i], self.g_crop, np.random.default_rng(seed)) for i in self.active]
        x = draw_crops(held_out, self.cfg.verdict_crops, self.device)
        k = self.kernels()
        if self.single:
            return np.array([float(self.d(self._downscale(x, k), train=False).mean())])
        # In chunks of crops: D's features for all crops of all pictures at once would take gigabytes.
        scores = torch.cat([self.d(downscale(part, k), train=False) for part in x.split(chunk)])
        return per_tile(scores).double().cpu().numpy()

    def dmap(self, frames: np.ndarray) -> Generator[tuple[int, int], None, np.ndarray]:
        """D's verdict on every pixel of ``frames`` (N, C, H, W): (N, H, W), yielding (strips done, strips);
        one-picture fits only (:func:`.dmap.iter_discriminator_map`)."""
        if not self.single:
            raise ValueError("the D-map is that of a one-picture fit")
        return iter_discriminator_map(self.d.module, frames, self.device, signed=True)

