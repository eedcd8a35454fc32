"""Self-supervised axial SR (the SMORE / ESPRESO idea): a network learns, on the stack's own lateral planes
degraded as its z lines are, to undo that degradation, and is then applied to the XZ and YZ planes.

1. **Pairs.** Lines along x (and, from transposed planes, along y) of the lateral planes, resampled to the
   fine z step, correlated with the relative axial blur, sampled every F, given back the noise the blur
   took off, and interpolated back with the baseline's cubic interpolation
   (:func:`~napari_kernelgan.axial._zops.lateral_pairs`). Intensities are normalised by the stack's
   0.1st–99.9th percentiles, so uint16 ADU and 8-bit data train alike.
2. **Network.** A residual CNN (:class:`AxialNet`: :data:`DEPTH` 3×3 convolutions of :data:`WIDTH` channels,
   the cubic input added to its output) on :data:`PATCH`² patches whose last axis is the degraded one.
3. **Training.** Adam on the mean squared error, for a step count that the budget ``train_seconds`` sets
   through a fixed rate (:func:`steps_for`), never through the clock: the same seed gives the same network
   (bit for bit, on one machine and thread count) however busy the machine is. A contiguous block of
   planes (and the planes next to it) is never trained on and gives the held-out PSNR of the network and
   of cubic interpolation (:func:`validate`).
4. **Application.** XZ and YZ planes of the cubic-interpolated stack, z as the last axis
   (:func:`apply_planes`); the caller averages both orientations.
"""
from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..types import Progress
from ..vocabulary import Stage
from ._zops import NoiseModel, Normaliser, lateral_pairs, psnr

__all__ = ["DEPTH", "WIDTH", "PATCH", "BATCH", "MAX_ITERATIONS", "STEPS_PER_SECOND", "SAFETY_CAP", "steps_for",
           "guard_seconds", "training_cut", "AxialNet", "Pairs", "make_pairs", "held_out", "iter_train", "validate",
           "apply_planes"]

# Convolutions and channels: 8×32 gained 0.3–0.9 dB more on generated confocal stacks, but applying it to a
# 64×512×512 stack takes about 4× as long, past the 5 minutes 2 CPU cores may spend (docs/axial.md).
DEPTH = 6
WIDTH = 16
PATCH = 48           # side of a training patch
BATCH = 16           # patches per step
MAX_ITERATIONS = 4000
MIN_ITERATIONS = 20
# What a second of training budget buys: steps per second on 2 busy CPU cores (measured 16-20). A fixed rate,
# not the machine's: the budget sets the step count, and the step count alone ends training, so the output
# does not depend on the load.
STEPS_PER_SECOND = 18.0
# The clock ends training only past this multiple of the time the planned steps take at STEPS_PER_SECOND: a
# safety against a runaway, said in the result's warnings when it acts (:func:`training_cut`). Far above what
# load does: with 2 threads on 2 cores at a load average of 4 a step took 6× its planned time (3 steps per
# second; one thread ran 12-21 there).
SAFETY_CAP = 20.0
LEARNING_RATE = 1e-3
MAX_TRAIN_PLANES = 12  # lateral planes turned into pairs (evenly spaced over the trained ones)
REPORT_S = 0.2         # at most this long between progress reports while training


class AxialNet(nn.Module):
    """Residual CNN: the cubic-interpolated input plus ``DEPTH`` 3×3 convolutions of it (ReLU between)."""

    def __init__(self, depth: int = DEPTH, width: int = WIDTH, generator: torch.Generator | None = None) -> None:
        super().__init__()
        chans = [1] + [width] * (depth - 1) + [1]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1, padding_mode="reflect")
                                   for a, b in zip(chans[:-1], chans[1:]))
        with torch.no_grad():
            for i, conv in enumerate(self.convs):
                gain = 2.0 if i < len(self.convs) - 1 else 0.1  # He init; the last layer starts near 0
                conv.weight.normal_(0.0, (gain / (conv.in_channels * 9)) ** 0.5, generator=generator)
                conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i, conv in enumerate(self.convs):
            y = conv(y)
            if i < len(self.convs) - 1:
                y = torch.relu(y)
        return x + y


@dataclass
class Pairs:
    """Degraded (cubic-interpolated) and original planes, normalised, degraded along the last axis."""

    inputs: list[np.ndarray]
    targets: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.inputs)


def held_out(nz: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, held)`` plane indices: a contiguous block of about 15 % of the planes at 3/4 depth is held
    out, the plane on each side of it is used for neither (the axial blur correlates neighbours)."""
    idx = np.arange(nz)
    if nz < 4:
        return idx, idx[:0]
    size = max(1, round(0.15 * nz))
    start = min(nz - size, max(1, int(0.7 * nz)))
    held = idx[start:start + size]
    train = idx[(idx < start - 1) | (idx > start + size)]
    return (train if train.size else idx[:1]), held


def make_pairs(planes: list[np.ndarray], kernel: np.ndarray, factor: int, noise: NoiseModel, ratio: float,
               norm: Normaliser, rng: np.random.Generator) -> Pairs:
    """Pairs from raw lateral planes, each degraded along x and (transposed) along y."""
    inputs, targets = [], []
    for plane in planes:
        for oriented in (plane, plane.T):
            _, up, target = lateral_pairs(oriented, kernel, factor, noise, ratio, rng)
            inputs.append(norm.forward(up))
            targets.append(norm.forward(target))
    return Pairs(inputs, targets)


def _batch(pairs: Pairs, rng: np.random.Generator, patch: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for _ in range(BATCH):
        i = int(rng.integers(len(pairs)))
        x, y = pairs.inputs[i], pairs.targets[i]
        ph, pw = min(patch, x.shape[0]), min(patch, x.shape[1])
        r, c = int(rng.integers(x.shape[0] - ph + 1)), int(rng.integers(x.shape[1] - pw + 1))
        xs.append(x[r:r + ph, c:c + pw])
        ys.append(y[r:r + ph, c:c + pw])
    return np.stack(xs)[:, None], np.stack(ys)[:, None]


def steps_for(seconds: float) -> int:
    """Training steps for a time budget: :data:`STEPS_PER_SECOND` (2 busy CPU cores) times it, between
    :data:`MIN_ITERATIONS` and :data:`MAX_ITERATIONS`. A function of the budget only (the SR's default budget
    is one of the stack's size and factor), so the same seed gives the same network whatever the load."""
    return int(np.clip(round(float(seconds) * STEPS_PER_SECOND), MIN_ITERATIONS, MAX_ITERATIONS))


def guard_seconds(seconds: float) -> float:
    """Wall-clock seconds after which training stops whatever its step count: :data:`SAFETY_CAP` times what
    the :func:`steps_for` steps take at :data:`STEPS_PER_SECOND`."""
    return SAFETY_CAP * steps_for(seconds) / STEPS_PER_SECOND


def training_cut(steps: int, seconds: float) -> str | None:
    """A sentence for the result's warnings where the clock (:func:`guard_seconds`) stopped training before its
    :func:`steps_for` ``(seconds)`` steps, else ``None``."""
    planned = steps_for(seconds)
    if steps >= planned:
        return None
    return (f"The network trained {steps} of its {planned} steps: the machine ran them over "
            f"{SAFETY_CAP:g}× slower than planned, so training was stopped after {guard_seconds(seconds):.0f} s; "
            f"the result is weaker and differs from a run on a less busy machine.")


def iter_train(pairs: Pairs, *, seconds: float, device: torch.device, seed: int,
               ) -> Generator[Progress, None, tuple[AxialNet, int]]:
    """Train an :class:`AxialNet` for :func:`steps_for` ``(seconds)`` steps (stopped by the clock only past
    :func:`guard_seconds`, see :func:`training_cut`); returns it and its step count."""
    max_iterations = steps_for(seconds)
    cap = guard_seconds(seconds)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    rng = np.random.default_rng([int(seed), 0x5A0])
    net = AxialNet(generator=generator).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    side = min(PATCH, min(min(x.shape) for x in pairs.inputs))
    t0 = last = time.perf_counter()
    it, loss_value = 0, float("nan")
    while it < max_iterations:
        elapsed = time.perf_counter() - t0
        if elapsed >= cap:
            break
        if it == int(0.7 * max_iterations):
            for g in opt.param_groups:  # a lower rate for the last 30 %
                g["lr"] = LEARNING_RATE * 0.3
        x, y = _batch(pairs, rng, side)
        xt, yt = torch.as_tensor(x, device=device), torch.as_tensor(y, device=device)
        loss = torch.mean((net(xt) - yt) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it += 1
        now = time.perf_counter()
        if now - last >= REPORT_S or it == 1:
            last = now
            loss_value = float(loss.detach())
            frac = it / max_iterations
            yield Progress(int(1000 * frac), 1000, now - t0, stage=Stage.SR, loss={"mse": loss_value},
                           message=f"training on the lateral planes (step {it})")
    net.eval()
    return net, it


def apply_planes(net: AxialNet, planes: np.ndarray, device: torch.device) -> np.ndarray:
    """The network on normalised (B, H, W) planes whose last axis is z (float32)."""
    with torch.no_grad():
        x = torch.as_tensor(np.ascontiguousarray(planes, dtype=np.float32)[:, None], device=device)
        return net(x)[:, 0].cpu().numpy()


def validate(net: AxialNet, pairs: Pairs, device: torch.device) -> tuple[float, float]:
    """Held-out PSNR (dB, normalised range 1) of the network and of cubic interpolation."""
    if not len(pairs):
        return float("nan"), float("nan")
    outs = [apply_planes(net, x[None], device)[0] for x in pairs.inputs]
    net_psnr = psnr(np.concatenate([o.ravel() for o in outs]), np.concatenate([t.ravel() for t in pairs.targets]),
                    1.0)
    cubic = psnr(np.concatenate([x.ravel() for x in pairs.inputs]),
                 np.concatenate([t.ravel() for t in pairs.targets]), 1.0)
    return net_psnr, cubic
