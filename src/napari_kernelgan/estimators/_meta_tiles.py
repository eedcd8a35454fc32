"""MetaKernelGAN on every tile of a kernel map at once: T generators and T discriminators as one
network with grouped convolutions (one group per tile, :mod:`._tile_nets`), adapted together.

Each tile's G and D start from the same initialisation and see only their own tile's crops; a tile's
losses depend on its own parameters only, so summing the T losses and taking one SGD step is T
independent adaptations, exactly as :class:`~.meta.MetaAdapter` runs one (same step order, learning
rates and schedule, spectral normalisation with one power iteration per forward pass, BatchNorm
statistics per tile). A one-tile run reproduces the whole-image adaptation of the same crops.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._meta_nets import RAW_KERNEL_SIZE, MetaD, MetaG
from ._tile_nets import TileD, collapse_kernels, downscale, per_tile, stack

__all__ = ["TileMeta"]


class TileMeta:
    """T copies of MetaKernelGAN's G and D (from ``g`` and ``d``), as grouped convolutions."""

    def __init__(self, g: MetaG, d: MetaD, t: int) -> None:
        self.t = t
        self.g_weights = [stack(layer.weight, t, grad=True) for layer in g.downscale]    # (T, o, i, k, k)
        self.d = TileD(d, t)

    def kernels(self) -> torch.Tensor:
        """(T, 11, 11): each tile's G collapsed into its correlation kernel (:meth:`MetaG.kernel`, batched)."""
        return collapse_kernels(self.g_weights)

    def generate(self, x: torch.Tensor, kernels: torch.Tensor | None = None) -> torch.Tensor:
        """(1, T·3, h, w) → (1, T·3, h/2, w/2): each tile's crop through its own G (circular padding)."""
        p = RAW_KERNEL_SIZE // 2
        return downscale(F.pad(x, (p, p, p, p), mode="circular"), self.kernels() if kernels is None else kernels)

    def step(self, x: torch.Tensor, lr_g: float, lr_d: float, w_sum2one: float, d_noise: float,
             gen: torch.Generator | None) -> dict[str, np.ndarray]:
        """One adaptation step of every tile (G, then D, as the reference), on crops ``x`` (1, T·3, c, c)."""
        k = self.kernels()
        g_out = self.generate(x, k)
        gan = per_tile((self.d(g_out) - 1).abs())
        sum2one = (1 - k.sum(dim=(-2, -1))).abs()
        g_params = self.g_weights
        grads = torch.autograd.grad((gan + w_sum2one * sum2one).sum(), g_params)
        with torch.no_grad():
            for p, gr in zip(g_params, grads):
                p.sub_(lr_g * gr)
            fake = self.generate(x)
        half = fake.shape[-1]
        real = x[..., :half, :half]
        if d_noise > 0:
            real = real + torch.randn(real.shape, generator=gen, device=real.device, dtype=real.dtype) * d_noise
            fake = fake + torch.randn(fake.shape, generator=gen, device=fake.device, dtype=fake.dtype) * d_noise
        loss_d = 0.5 * (per_tile((self.d(real) - 1).abs()) + per_tile(self.d(fake)))
        d_params = self.d.params()
        grads = torch.autograd.grad(loss_d.sum(), d_params)
        with torch.no_grad():
            for p, gr in zip(d_params, grads):
                p.sub_(lr_d * gr)
        return {"g_gan": gan.detach().cpu().numpy(), "sum2one": sum2one.detach().cpu().numpy(),
                "d": loss_d.detach().cpu().numpy()}
