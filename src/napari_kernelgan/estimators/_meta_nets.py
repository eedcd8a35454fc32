"""MetaKernelGAN's networks (Lee et al., WACV 2024), laid out so the released checkpoint loads unchanged.

G: six bias-free convolutions 1→64 (7×7), 64→64 (3×3, 3×3, 1×1, 1×1), 64→1 (1×1, stride 2); a
deep linear map, so it equals one 11×11 correlation followed by ×2 subsampling. The reference pads
its input circularly by 5 pixels first, so G's output covers its input's field of view.

D: KernelGAN's patch discriminator on RGB: spectral-norm 7×7 conv (``first_layer``), five
[spectral-norm 1×1 conv, BatchNorm, ReLU] (``feature_block``), spectral-norm 1×1 conv and sigmoid
(``final_layer``). Spectral norm is the classic hook form (``weight_orig`` / ``weight_u`` /
``weight_v``), the layout the checkpoint was saved in.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError
from ..physics.operators import Degradation

G_LAYERS = (7, 3, 3, 1, 1, 1)
RAW_KERNEL_SIZE = sum(k - 1 for k in G_LAYERS) + 1  # 11
CHANNELS = 64


class MetaG(nn.Module):
    """The deep linear downscaler; :meth:`kernel` collapses it into its 11×11 correlation kernel."""

    def __init__(self, channels: int = CHANNELS) -> None:
        super().__init__()
        chans = [1] + [channels] * (len(G_LAYERS) - 1) + [1]
        self.downscale = nn.Sequential(*[
            nn.Conv2d(chans[i], chans[i + 1], k, stride=2 if i == len(G_LAYERS) - 1 else 1, bias=False)
            for i, k in enumerate(G_LAYERS)])
        self.kernel_size = RAW_KERNEL_SIZE

    def kernel(self) -> torch.Tensor:
        """The collapsed correlation kernel (11×11), differentiable w.r.t. every layer.

        A chain of correlations is one correlation with the full convolution of the layers' kernels;
        accumulating from the single output channel backwards keeps every intermediate one channel row.
        """
        layers = list(self.downscale)
        acc = layers[-1].weight  # (1, C, 1, 1)
        for layer in reversed(layers[:-1]):
            w = layer.weight
            acc = F.conv2d(acc, w.transpose(0, 1).flip(-1, -2), padding=w.shape[-1] - 1)
        return acc[0, 0]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """The reference's circular padding by ``kernel_size // 2`` (output keeps the input's field of view)."""
        p = self.kernel_size // 2
        return F.pad(x, (p, p, p, p), mode="circular")

    def forward(self, x: torch.Tensor, kernel: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) → (B, C, H/2, W/2) through the collapsed kernel, channels batched."""
        k = self.kernel() if kernel is None else kernel
        return Degradation.from_applied(k, 2, "valid").A(self.pad(x))

    def forward_deep(self, x: torch.Tensor) -> torch.Tensor:
        """The same map layer by layer, as the reference computes it (for checking)."""
        b, c, h, w = x.shape
        y = self.downscale(self.pad(x.reshape(b * c, 1, h, w)))
        return y.reshape(b, c, y.shape[-2], y.shape[-1])


def _sn(conv: nn.Conv2d) -> nn.Conv2d:
    # The hook form of spectral norm: its parameter / buffer names are the checkpoint's.
    return nn.utils.spectral_norm(conv)


class MetaD(nn.Module):
    """KernelGAN's fully convolutional patch discriminator (7×7 receptive field) on 3 channels."""

    def __init__(self, in_channels: int = 3, channels: int = CHANNELS, blocks: int = 5) -> None:
        super().__init__()
        self.first_layer = _sn(nn.Conv2d(in_channels, channels, 7, bias=True))
        feature: list[nn.Module] = []
        for _ in range(blocks):
            feature += [_sn(nn.Conv2d(channels, channels, 1, bias=True)), nn.BatchNorm2d(channels), nn.ReLU(True)]
        self.feature_block = nn.Sequential(*feature)
        self.final_layer = nn.Sequential(_sn(nn.Conv2d(channels, 1, 1, bias=True)), nn.Sigmoid())
        self.receptive_field = 7

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.feature_block(self.first_layer(x)))


def init_random(g: MetaG, d: MetaD, seed: int) -> None:
    """KernelGAN's initialisation (Xavier-normal, gain 0.1; BatchNorm scale ~ N(1, 0.02)), seeded."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for module in list(g.modules()) + list(d.modules()):
            if isinstance(module, nn.Conv2d):
                w = module.weight_orig if hasattr(module, "weight_orig") else module.weight
                fan_in = w.shape[1] * w.shape[2] * w.shape[3]
                fan_out = w.shape[0] * w.shape[2] * w.shape[3]
                std = 0.1 * (2.0 / (fan_in + fan_out)) ** 0.5
                w.copy_(torch.randn(w.shape, generator=gen) * std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.copy_(1 + 0.02 * torch.randn(module.weight.shape, generator=gen))
                module.bias.zero_()


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Drop a ``DataParallel`` prefix from every key that has it."""
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def load_state(module: nn.Module, state: Mapping[str, torch.Tensor], what: str, source: str) -> None:
    """Load ``state`` strictly into ``module`` (cast to its dtype); a mismatch is a clear :class:`BadInputError`."""
    state = strip_prefix(state)
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise BadInputError(f"{source}: the {what} weights do not fit MetaKernelGAN's {what} "
                            f"(missing: {', '.join(missing[:4]) or 'none'}; unexpected: "
                            f"{', '.join(unexpected[:4]) or 'none'})")
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise BadInputError(f"{source}: {what} tensor {key} has shape {tuple(value.shape)}, "
                                f"expected {tuple(own[key].shape)}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
