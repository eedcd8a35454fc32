"""KernelGAN's networks (Bell-Kligler, Shocher, Irani, NeurIPS 2019).

G is a deep *linear* network (no bias, no activation), so it equals one
correlation with a single kernel followed by ×2 subsampling. :meth:`DeepLinearG.kernel`
collapses the layers into that kernel differentiably, and :meth:`DeepLinearG.forward`
applies it as a :class:`~napari_kernelgan.physics.Degradation` (``padding="valid"``):
the same function as the layer-by-layer :meth:`DeepLinearG.forward_deep`, at a
small fraction of the cost.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..physics.operators import Degradation

G_STRUCTURE = (7, 5, 3, 1, 1, 1)
"""Kernel sizes of G's layers; the receptive field (= SR kernel size) is Σ(k − 1) + 1 = 13."""


class DeepLinearG(nn.Module):
    """conv 1→64 7×7, 64→64 5×5, 64→64 3×3, 64→64 1×1 ×2, 64→1 1×1 stride 2; no bias."""

    def __init__(self, channels: int = 64, structure: tuple[int, ...] = G_STRUCTURE, scale: int = 2) -> None:
        super().__init__()
        sizes = list(structure)
        chans = [1] + [channels] * (len(sizes) - 1) + [1]
        self.layers = nn.ModuleList(
            nn.Conv2d(chans[i], chans[i + 1], sizes[i], bias=False) for i in range(len(sizes)))
        self.scale = scale
        self.kernel_size = sum(s - 1 for s in sizes) + 1

    def kernel(self) -> torch.Tensor:
        """The collapsed correlation kernel (k×k), differentiable w.r.t. every layer.

        Composing correlations gives a correlation with the full convolution of
        the kernels. Accumulating from the single output channel backwards keeps
        every intermediate at one row of channels, so the cost is tiny.
        """
        acc = self.layers[-1].weight  # (1, C, 1, 1): output channel × input channels
        for layer in reversed(self.layers[:-1]):
            w = layer.weight  # (C_out, C_in, k, k)
            k = w.shape[-1]
            # Σ_cout full_conv(acc[cout], w[cout, cin]) == conv2d(acc, flip(w)ᵀ, padding=k-1)
            acc = F.conv2d(acc, w.transpose(0, 1).flip(-1, -2), padding=k - 1)
        return acc[0, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) → (B, 1, (H − k)//s + 1, …) via the collapsed kernel (a 'valid' degradation)."""
        return Degradation.from_applied(self.kernel(), self.scale, "valid").A(x)

    def forward_deep(self, x: torch.Tensor) -> torch.Tensor:
        """The same map computed layer by layer, as the paper's code does."""
        for layer in self.layers[:-1]:
            x = layer(x)
        return F.conv2d(x, self.layers[-1].weight, stride=self.scale)


class PatchD(nn.Module):
    """Fully convolutional patch discriminator with a 7×7 receptive field.

    spectral-norm 7×7 conv → 64, five [spectral-norm 1×1 conv, BatchNorm, ReLU],
    spectral-norm 1×1 conv, sigmoid. Its output map is the D-map.
    """

    def __init__(self, in_channels: int, channels: int = 64, blocks: int = 5) -> None:
        super().__init__()
        layers: list[nn.Module] = [spectral_norm(nn.Conv2d(in_channels, channels, 7, bias=True))]
        for _ in range(blocks):
            layers += [spectral_norm(nn.Conv2d(channels, channels, 1, bias=True)), nn.BatchNorm2d(channels),
                       nn.ReLU(inplace=True)]
        layers += [spectral_norm(nn.Conv2d(channels, 1, 1, bias=True)), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)
        self.receptive_field = 7

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
