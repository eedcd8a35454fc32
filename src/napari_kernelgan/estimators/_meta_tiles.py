"""MetaKernelGAN on every tile of a kernel map at once: T generators and T discriminators as one
network with grouped convolutions (one group per tile), adapted together.

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

__all__ = ["TileMeta"]


def _normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


class _SpectralConv:
    """T spectrally normalised convolutions (the hook form of ``nn.utils.spectral_norm``, batched)."""

    def __init__(self, conv: torch.nn.Conv2d, t: int) -> None:
        self.weight = conv.weight_orig.detach().repeat(t, 1, 1, 1, 1).clone().requires_grad_()   # (T, o, i, k, k)
        self.bias = conv.bias.detach().repeat(t, 1).clone().requires_grad_()                    # (T, o)
        self.u = conv.weight_u.detach().repeat(t, 1).clone()                                    # (T, o)
        self.v = conv.weight_v.detach().repeat(t, 1).clone()                                    # (T, i·k·k)

    def params(self) -> list[torch.Tensor]:
        return [self.weight, self.bias]

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        t, o = self.weight.shape[:2]
        mat = self.weight.reshape(t, o, -1)
        if train:
            with torch.no_grad():  # one power iteration per forward pass, as the hook does in training
                self.v = _normalize(torch.bmm(mat.transpose(1, 2), self.u[..., None])[..., 0])
                self.u = _normalize(torch.bmm(mat, self.v[..., None])[..., 0])
        sigma = (self.u * torch.bmm(mat, self.v[..., None])[..., 0]).sum(-1)                   # (T,)
        w = self.weight / sigma[:, None, None, None, None]
        return F.conv2d(x, w.reshape(t * o, *w.shape[2:]), self.bias.reshape(-1), groups=t)


class TileMeta:
    """T copies of MetaKernelGAN's G and D (from ``g`` and ``d``), as grouped convolutions."""

    def __init__(self, g: MetaG, d: MetaD, t: int) -> None:
        self.t = t
        self.g_weights = [layer.weight.detach().repeat(t, 1, 1, 1, 1).clone().requires_grad_()
                          for layer in g.downscale]                                            # (T, o, i, k, k)
        self.first = _SpectralConv(d.first_layer, t)
        blocks = list(d.feature_block)
        self.convs, self.norms = [], []
        for i in range(0, len(blocks), 3):
            conv, norm = blocks[i], blocks[i + 1]
            self.convs.append(_SpectralConv(conv, t))
            self.norms.append({"weight": norm.weight.detach().repeat(t).clone().requires_grad_(),
                               "bias": norm.bias.detach().repeat(t).clone().requires_grad_(),
                               "mean": norm.running_mean.detach().repeat(t).clone(),
                               "var": norm.running_var.detach().repeat(t).clone(),
                               "momentum": norm.momentum, "eps": norm.eps})
        self.final = _SpectralConv(d.final_layer[0], t)

    def g_params(self) -> list[torch.Tensor]:
        return list(self.g_weights)

    def d_params(self) -> list[torch.Tensor]:
        out = self.first.params() + self.final.params()
        for conv, norm in zip(self.convs, self.norms):
            out += conv.params() + [norm["weight"], norm["bias"]]
        return out

    def kernels(self) -> torch.Tensor:
        """(T, 11, 11): each tile's G collapsed into its correlation kernel (:meth:`MetaG.kernel`, batched)."""
        t = self.t
        last = self.g_weights[-1]                                   # (T, 1, C, 1, 1)
        acc = last.reshape(1, t * last.shape[2], 1, 1)
        for w in reversed(self.g_weights[:-1]):                     # (T, out, in, k, k)
            k = w.shape[-1]
            wt = w.transpose(1, 2).flip(-1, -2)                     # (T, in, out, k, k)
            acc = F.conv2d(acc, wt.reshape(t * wt.shape[1], wt.shape[2], k, k), padding=k - 1, groups=t)
        return acc.reshape(t, RAW_KERNEL_SIZE, RAW_KERNEL_SIZE)

    def generate(self, x: torch.Tensor, kernels: torch.Tensor | None = None) -> torch.Tensor:
        """(1, T·3, h, w) → (1, T·3, h/2, w/2): each tile's crop through its own G (circular padding)."""
        k = self.kernels() if kernels is None else kernels
        p = RAW_KERNEL_SIZE // 2
        xp = F.pad(x, (p, p, p, p), mode="circular")
        c = x.shape[1] // self.t
        weight = k.repeat_interleave(c, dim=0)[:, None]             # (T·3, 1, 11, 11)
        return F.conv2d(xp, weight, stride=2, groups=self.t * c)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T·3, h, w) → (B, T, h', w'): each tile's D on its own channels (training mode)."""
        y = self.first(x)
        for conv, norm in zip(self.convs, self.norms):
            y = F.batch_norm(conv(y), norm["mean"], norm["var"], norm["weight"], norm["bias"], training=True,
                             momentum=norm["momentum"], eps=norm["eps"])
            y = F.relu(y)
        return torch.sigmoid(self.final(y))

    @staticmethod
    def per_tile(x: torch.Tensor) -> torch.Tensor:
        """Mean over everything but the tile axis of (B, T, h, w)."""
        return x.mean(dim=(0, 2, 3))

    def step(self, x: torch.Tensor, lr_g: float, lr_d: float, w_sum2one: float, d_noise: float,
             gen: torch.Generator | None) -> dict[str, np.ndarray]:
        """One adaptation step of every tile (G, then D, as the reference), on crops ``x`` (1, T·3, c, c)."""
        k = self.kernels()
        g_out = self.generate(x, k)
        gan = self.per_tile((self.discriminate(g_out) - 1).abs())
        sum2one = (1 - k.sum(dim=(-2, -1))).abs()
        g_params = self.g_params()
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
        loss_d = 0.5 * (self.per_tile((self.discriminate(real) - 1).abs()) + self.per_tile(self.discriminate(fake)))
        d_params = self.d_params()
        grads = torch.autograd.grad(loss_d.sum(), d_params)
        with torch.no_grad():
            for p, gr in zip(d_params, grads):
                p.sub_(lr_d * gr)
        return {"g_gan": gan.detach().cpu().numpy(), "sum2one": sum2one.detach().cpu().numpy(),
                "d": loss_d.detach().cpu().numpy()}
