"""KernelGAN-style networks for every tile of a kernel map at once, shared by the tile passes of
``meta`` and ``kernelgan``.

T copies of one architecture are held as one network with grouped convolutions (one group per tile,
every tensor stacked along a leading tile axis). A tile's outputs depend on its own parameters only,
so the gradient of the *sum* of the T losses with respect to tile ``i``'s parameters is exactly the
gradient its own fit would take (a mean would scale it by 1/T, which Adam's ``eps`` does not ignore).
Every piece can drop tiles (``select``), so a fit that has settled stops costing anything.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["stack", "take", "collapse_kernels", "downscale", "per_tile", "SpectralConvs", "TileD", "TileAdam"]

Index = torch.Tensor | np.ndarray


def stack(x: torch.Tensor, t: int, grad: bool = False) -> torch.Tensor:
    """``x`` repeated along a new leading tile axis of length ``t`` (a fresh leaf when ``grad``)."""
    out = x.detach().repeat(t, *([1] * x.dim())).clone()
    return out.requires_grad_() if grad else out


def take(x: torch.Tensor, idx: Index) -> torch.Tensor:
    """The tiles ``idx`` of a tile-stacked tensor, as a fresh tensor (a leaf needing a gradient if ``x`` is one)."""
    out = x.detach()[torch.as_tensor(idx, dtype=torch.long, device=x.device)].clone()
    return out.requires_grad_(x.requires_grad)


def collapse_kernels(weights: list[torch.Tensor]) -> torch.Tensor:
    """(T, K, K): each tile's deep linear G (layers (T, out, in, k, k), the last one output channel)
    collapsed into its correlation kernel, differentiably (the grouped form of ``DeepLinearG.kernel``)."""
    last = weights[-1]                                          # (T, 1, C, 1, 1)
    t = last.shape[0]
    acc = last.reshape(1, t * last.shape[2], 1, 1)
    for w in reversed(weights[:-1]):
        k = w.shape[-1]
        wt = w.transpose(1, 2).flip(-1, -2)                     # (T, in, out, k, k)
        acc = F.conv2d(acc, wt.reshape(t * wt.shape[1], wt.shape[2], k, k), padding=k - 1, groups=t)
    return acc.reshape(t, acc.shape[-2], acc.shape[-1])


def downscale(x: torch.Tensor, kernels: torch.Tensor, stride: int = 2) -> torch.Tensor:
    """(B, T·C, H, W) → (B, T·C, (H − k)//stride + 1, …): each tile's channels correlated ('valid')
    with its own kernel of ``kernels`` (T, k, k), every ``stride``-th pixel kept."""
    c = x.shape[1] // kernels.shape[0]
    weight = kernels.repeat_interleave(c, dim=0)[:, None]      # (T·C, 1, k, k)
    return F.conv2d(x, weight, stride=stride, groups=weight.shape[0])


def per_tile(x: torch.Tensor) -> torch.Tensor:
    """(T,): the mean of (B, T, h, w) over everything but the tile axis."""
    return x.mean(dim=(0, 2, 3))


def _normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


class SpectralConvs:
    """T spectrally normalised copies of ``conv``, in either of PyTorch's forms of spectral norm.

    The hook form (``nn.utils.spectral_norm``: ``weight_orig``, MetaKernelGAN's checkpoint layout)
    updates v then u in its power iteration, the parametrization (``nn.utils.parametrizations``,
    KernelGAN's D) u then v; each is reproduced as the module would run it, one iteration per
    forward pass in training.
    """

    def __init__(self, conv: nn.Conv2d, t: int) -> None:
        if hasattr(conv, "weight_orig"):
            weight, u, v, self.u_first = conv.weight_orig, conv.weight_u, conv.weight_v, False
        else:
            norm = conv.parametrizations.weight
            weight, u, v, self.u_first = norm.original, norm[0]._u, norm[0]._v, True
        self.weight = stack(weight, t, grad=True)                   # (T, o, i, k, k)
        self.bias = stack(conv.bias, t, grad=True)                  # (T, o)
        self.u, self.v = stack(u, t), stack(v, t)                   # (T, o), (T, i·k·k)

    def params(self) -> list[torch.Tensor]:
        return [self.weight, self.bias]

    def select(self, idx: Index) -> None:
        self.weight, self.bias, self.u, self.v = (take(x, idx) for x in (self.weight, self.bias, self.u, self.v))

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        t, o = self.weight.shape[:2]
        mat = self.weight.reshape(t, o, -1)
        if train:
            with torch.no_grad():
                if self.u_first:
                    self.u = _normalize(torch.bmm(mat, self.v[..., None])[..., 0])
                    self.v = _normalize(torch.bmm(mat.transpose(1, 2), self.u[..., None])[..., 0])
                else:
                    self.v = _normalize(torch.bmm(mat.transpose(1, 2), self.u[..., None])[..., 0])
                    self.u = _normalize(torch.bmm(mat, self.v[..., None])[..., 0])
        sigma = (self.u * torch.bmm(mat, self.v[..., None])[..., 0]).sum(-1)                 # (T,)
        w = self.weight / sigma[:, None, None, None, None]
        return F.conv2d(x, w.reshape(t * o, *w.shape[2:]), self.bias.reshape(-1), groups=t)


class _TileNorm:
    """T BatchNorm layers (statistics per tile and channel, as each tile's own layer keeps them)."""

    def __init__(self, norm: nn.BatchNorm2d, t: int) -> None:
        self.weight, self.bias = stack(norm.weight, t, grad=True), stack(norm.bias, t, grad=True)
        self.mean, self.var = stack(norm.running_mean, t), stack(norm.running_var, t)
        self.momentum, self.eps = norm.momentum, norm.eps

    def params(self) -> list[torch.Tensor]:
        return [self.weight, self.bias]

    def select(self, idx: Index) -> None:
        self.weight, self.bias, self.mean, self.var = (take(x, idx) for x in (self.weight, self.bias, self.mean,
                                                                                  self.var))

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        mean, var = self.mean.view(-1), self.var.view(-1)          # views: batch_norm updates them in place
        return F.batch_norm(x, mean, var, self.weight.reshape(-1), self.bias.reshape(-1), training=train,
                            momentum=self.momentum, eps=self.eps)


class TileD:
    """T copies of KernelGAN's patch discriminator ``d`` (``PatchD`` or ``MetaD``): a spectral-norm
    conv, [spectral-norm conv, BatchNorm, ReLU] blocks, a spectral-norm conv and a sigmoid."""

    def __init__(self, d: nn.Module, t: int) -> None:
        layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
        convs = [m for m in layers if isinstance(m, nn.Conv2d)]
        norms = [m for m in layers if isinstance(m, nn.BatchNorm2d)]
        self.first, self.final = SpectralConvs(convs[0], t), SpectralConvs(convs[-1], t)
        self.blocks = [(SpectralConvs(c, t), _TileNorm(n, t)) for c, n in zip(convs[1:-1], norms, strict=True)]

    def _parts(self) -> list[SpectralConvs | _TileNorm]:
        return [self.first, self.final] + [p for block in self.blocks for p in block]

    def params(self) -> list[torch.Tensor]:
        return [p for part in self._parts() for p in part.params()]

    def select(self, idx: Index) -> None:
        for part in self._parts():
            part.select(idx)

    def __call__(self, x: torch.Tensor, train: bool = True) -> torch.Tensor:
        """(B, T·C, h, w) → (B, T, h', w'): each tile's D on its own channels."""
        y = self.first(x, train)
        for conv, norm in self.blocks:
            y = F.relu(norm(conv(y, train), train))
        return torch.sigmoid(self.final(y, train))


class TileAdam:
    """Adam on tile-stacked tensors with ``torch.optim.Adam``'s arithmetic (its single-tensor form).

    Adam works element by element, so one optimiser over the stacked tensors is T independent ones;
    :meth:`select` drops tiles together with their moments.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, betas: tuple[float, float],
                 eps: float = 1e-8) -> None:
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.steps = 0

    def select(self, idx: Index) -> None:
        self.m, self.v = [take(x, idx) for x in self.m], [take(x, idx) for x in self.v]

    @torch.no_grad()
    def step(self, params: list[torch.Tensor], grads: tuple[torch.Tensor, ...]) -> None:
        self.steps += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1 ** self.steps)
        bias2_sqrt = (1 - beta2 ** self.steps) ** 0.5
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            p.addcdiv_(m, (v.sqrt() / bias2_sqrt).add_(self.eps), value=-step_size)
