"""``zssr``: Zero-Shot Super-Resolution (Shocher, Cohen and Irani, CVPR 2018).

A small CNN is trained on the input image alone. Each step draws an "HR
father" (a random crop of the image or of a downscaled copy of it, in one of
the 8 dihedral orientations), makes its "LR son" with the given kernel exactly
as :func:`napari_kernelgan.physics.degrade` does (one
:class:`~napari_kernelgan.physics.Degradation`), and learns to map the
bicubic-upscaled son back to the father (L1 loss, residual over the bicubic
input). The trained network then upscales the image itself.

Network: ``depth`` (8) 3×3 conv layers of ``width`` channels with ReLU, no
biases, initialised with variance 0.1/fan-in, output added to the bicubic
input. All channels go through one network (C in, C out), so RGB and
multichannel images keep their inter-channel structure; a stack of frames
sharing one kernel trains one network on fathers from all frames.

Learning-rate policy (the paper's): Adam at ``lr`` (1e-3); every
``test_every`` steps the reconstruction error of a fixed region of the input
from its own son is recorded; every ``check_every`` steps (once ``min_iters``
steps have passed since the last change) a line is fitted to the last
``slope_range`` steps of that error, and the learning rate is divided by 10
when ``-1.5 · slope < std(slope)``, i.e. when the error no longer falls
significantly. Training stops below ``min_lr`` or at ``iterations``.

Output: geometric self-ensemble (median over dihedral transforms) with
iterative back-projection on each member and on the median. A dihedral
transform ``T`` of the LR image is the degradation of ``T(HR)`` by ``T(k)``,
so a network trained for ``k`` is only right on ``T(LR)`` if ``T(k) ≈ k``:
``ensemble="auto"`` uses the transforms that leave the kernel invariant
within ``ensemble_tol`` (relative L1), always including the identity;
``"full"`` uses all 8 (the paper's setting for the bicubic kernel);
``"none"`` only the identity.

Presets: ``"fast"`` (default; interactive use on a CPU): 32 channels, 64-pixel
fathers, at most 400 steps with a quicker policy, no ensemble (on DIV2KRK
crops it cost 0.03–0.3 dB at this training length), 5 back-projection steps;
``"full"`` (the paper's configuration): 64 channels, 128-pixel fathers, at
most 3000 steps, ``ensemble="auto"``, 10 back-projection steps. Any preset
value can be overridden by an option of the same name.

Scale ×4: by default one ×4 jump with the given ×4 kernel. With
``gradual=True`` and ``kernel_x2=`` (the ×2 kernel ``k2`` whose analytic ×4
kernel is the given one, as from :class:`~napari_kernelgan.types.KernelEstimate`),
ZSSR runs ×2 twice: first on the input, then on that result (the network
continues training; its fathers come from the ×2 result, its downscaled
copies and the input), both with ``k2``, since degrading ×2 by ``k2`` twice is
degrading ×4 by ``k2 ⊛ dilate2(k2)``. The final result is back-projected onto
the input with the ×4 kernel.

Large images are run through the network in overlapping tiles.
"""
from __future__ import annotations

import math
import time
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ..constraints import Interval, Options, check_values
from ..errors import BadInputError, BadOptionError
from ..physics.conventions import validate_kernel
from ..physics.geometry import dihedral, undo_dihedral
from ..physics.operators import Degradation
from ..physics.resize import imresize, resize_tensor
from ..registry import register
from ..types import Progress
from ..vocabulary import Stage
from .common import iter_tiled

__all__ = ["PRESETS", "DEFAULTS", "ZSSRConfig", "ZSSRNet", "dihedral", "undo_dihedral", "invariant_transforms",
           "resize_tensor", "back_project", "ZSSRTrainer", "zssr"]


@dataclass(frozen=True)
class ZSSRConfig:
    """Training and inference settings (see the module docstring)."""

    iterations: int = 3000        # most training steps per ×s jump
    min_iters: int = 256          # steps after a learning-rate change before the next check
    crop: int = 128               # father size in pixels (rounded down to a multiple of the scale)
    width: int = 64
    depth: int = 8
    lr: float = 1e-3
    min_lr: float = 9e-6
    check_every: int = 60
    test_every: int = 50
    slope_range: int = 256
    slope_ratio: float = 1.5
    test_size: int = 512          # side of the fixed region used for the reconstruction error
    back_projection: int = 10
    ensemble: str = "auto"
    ensemble_tol: float = 0.1
    noise_std: float = 0.0        # noise added to sons, in [0, 1] units (the paper uses 0.0125 for real images)
    min_scale: float = 0.5        # smallest downscaling of the image used as a father source
    scale_levels: int = 6         # downscaled copies between min_scale and 1
    leave_as_is: float = 0.05     # probability of a plain crop of the input
    no_interp: float = 0.45       # probability of a dihedral crop of the input (else: of a downscaled copy)
    tile: int = 256               # LR tile core size for inference; 0 = whole image
    overlap: int = 8              # LR pixels of context around each tile
    report_every: int = 10

    def validate(self) -> ZSSRConfig:
        """Return ``self`` after checking every value against :data:`RANGES` (the ranges the registry
        checks for the ``zssr`` options) and how they combine; :class:`BadOptionError` names the bad one."""
        check_values("SR method 'zssr'", asdict(self), RANGES)
        if self.leave_as_is + self.no_interp > 1:
            raise BadOptionError("leave_as_is and no_interp are probabilities that sum to at most 1")
        return self


_POSITIVE, _NON_NEGATIVE = Interval(int, 1, None), Interval(int, 0, None)
RANGES = {**dict.fromkeys(("iterations", "crop", "width", "check_every", "test_every", "slope_range", "test_size",
                           "scale_levels", "report_every"), _POSITIVE),
          **dict.fromkeys(("min_iters", "back_projection", "tile", "overlap"), _NON_NEGATIVE),
          "depth": Interval(int, 2, None), "lr": Interval(float, 0, None, closed="neither"),
          "min_lr": Interval(float, 0, None, closed="neither"),
          "slope_ratio": Interval(float, 0, None, closed="neither"),
          "ensemble": Options("auto", "full", "none"), "ensemble_tol": Interval(float, 0, None),
          "noise_std": Interval(float, 0, None), "min_scale": Interval(float, 0, 1, closed="right"),
          "leave_as_is": Interval(float, 0, 1), "no_interp": Interval(float, 0, 1)}
"""The values each :class:`ZSSRConfig` field (and the ``zssr`` option of that name) accepts."""


PRESETS: dict[str, ZSSRConfig] = {
    "full": ZSSRConfig(),
    "fast": ZSSRConfig(iterations=400, min_iters=80, crop=64, width=32, check_every=20, test_every=10,
                       slope_range=80, test_size=128, back_projection=5, ensemble="none"),
}

DEFAULTS: dict[str, Any] = {"preset": "fast", "gradual": False, "kernel_x2": None,
                            **dict.fromkeys(ZSSRConfig.__dataclass_fields__)}


# --------------------------------------------------------------------------- network and geometry

class ZSSRNet(nn.Module):
    """``depth`` 3×3 convs (ReLU between), no biases, residual over the input."""

    def __init__(self, channels: int, width: int = 64, depth: int = 8, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = channels
        for i in range(depth):
            cout = channels if i == depth - 1 else width
            conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
            # The paper's initialisation: N(0, 0.1 / fan_in), small so the start is ≈ the bicubic input.
            with torch.no_grad():
                conv.weight.normal_(0.0, math.sqrt(0.1 / (cin * 9)), generator=generator)
            layers.append(conv)
            if i < depth - 1:
                layers.append(nn.ReLU(inplace=True))
            cin = cout
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def invariant_transforms(kernel: np.ndarray, mode: str = "auto", tol: float = 0.1) -> list[int]:
    """Dihedral transforms for the self-ensemble (see the module docstring)."""
    if mode == "none":
        return [0]
    if mode == "full":
        return list(range(8))
    k = np.asarray(kernel, dtype=np.float64)
    if k.shape[0] != k.shape[1]:
        return [0]
    norm = np.abs(k).sum()
    return [t for t in range(8) if np.abs(dihedral(k, t) - k).sum() <= tol * norm]


def back_project(sr: np.ndarray | torch.Tensor, lr: np.ndarray | torch.Tensor, kernel: np.ndarray | Degradation,
                 scale: int, iterations: int) -> np.ndarray:
    """Iterative back-projection: ``sr += bicubic_up(lr − degrade(sr, k))``, clipped to [0, 1].

    ``sr``: (C, sH, sW), ``lr``: (C, H, W), arrays or tensors (the work runs on
    the tensor's device); ``kernel``: a stored kernel or its (reflect-boundary)
    :class:`~napari_kernelgan.physics.Degradation`. float32 array result.
    """
    op = kernel if isinstance(kernel, Degradation) else Degradation(kernel, scale)
    out = sr if isinstance(sr, torch.Tensor) else torch.as_tensor(np.asarray(sr, dtype=np.float32))
    target = lr if isinstance(lr, torch.Tensor) else torch.as_tensor(np.asarray(lr, dtype=np.float32))
    out = out.float()
    target = target.float().to(out.device)
    for _ in range(int(iterations)):
        resid = target - op.A(out)
        out = (out + resize_tensor(resid, tuple(out.shape[-2:]))).clamp_(0.0, 1.0)
    return out.cpu().numpy()


def _son(father: np.ndarray, op: Degradation) -> np.ndarray:
    """Degrade a (C, h, w) father: (C, h/s, w/s), computed in float64 (as ``physics.degrade``), float32."""
    return op.A(torch.as_tensor(father, dtype=torch.float64)).numpy().astype(np.float32)


def _upscale(lr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.ascontiguousarray(imresize(lr, output_shape=shape, axes=(-2, -1)), dtype=np.float32)


# --------------------------------------------------------------------------- training

class ZSSRTrainer:
    """Trains one ZSSR network for one ×``scale`` jump and applies it.

    ``sources``: list of (C, H, W) float32 images to draw fathers from
    (the image, or all frames of a stack, plus earlier results when gradual);
    ``test_image``: the (C, H, W) image whose reconstruction error drives the
    learning-rate policy. ``net`` continues an earlier network when given.
    """

    def __init__(self, sources: list[np.ndarray], test_image: np.ndarray, kernel: np.ndarray, scale: int,
                 config: ZSSRConfig, *, device: torch.device, rng: np.random.Generator,
                 generator: torch.Generator, net: ZSSRNet | None = None) -> None:
        self.kernel = np.asarray(kernel, dtype=np.float64)
        self.scale = int(scale)
        self.op = Degradation(self.kernel, self.scale)
        self.config = config
        self.device = device
        self.rng = rng
        channels = sources[0].shape[0]
        self.net = net if net is not None else ZSSRNet(channels, config.width, config.depth, generator=generator)
        self.net.to(device)
        self.crop = max(self.scale, config.crop // self.scale * self.scale)
        self.originals = [np.ascontiguousarray(s, dtype=np.float32) for s in sources]
        self.scaled = self._pyramid(self.originals)
        self.test_region = self._centre(test_image, config.test_size)
        self.lr = config.lr
        self.rec_steps: list[int] = []
        self.rec_errors: list[float] = []
        self.last_change = 0

    def _pyramid(self, images: list[np.ndarray]) -> list[np.ndarray]:
        cfg = self.config
        out = []
        if cfg.min_scale >= 1:
            return out
        for img in images:
            for f in np.linspace(cfg.min_scale, 1.0, cfg.scale_levels, endpoint=False):
                shape = tuple(max(self.scale, int(round(n * f))) for n in img.shape[-2:])
                out.append(np.clip(imresize(img, output_shape=shape, axes=(-2, -1)), 0, 1).astype(np.float32))
        return out

    def _centre(self, img: np.ndarray, size: int) -> np.ndarray:
        h, w = img.shape[-2:]
        ch = min(h, size) // self.scale * self.scale
        cw = min(w, size) // self.scale * self.scale
        r0, c0 = (h - ch) // 2, (w - cw) // 2
        return np.ascontiguousarray(img[:, r0:r0 + ch, c0:c0 + cw], dtype=np.float32)

    def _random_crop(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[-2:]
        ch = min(h, self.crop) // self.scale * self.scale
        cw = min(w, self.crop) // self.scale * self.scale
        r0 = int(self.rng.integers(0, h - ch + 1))
        c0 = int(self.rng.integers(0, w - cw + 1))
        return img[:, r0:r0 + ch, c0:c0 + cw]

    def father(self) -> np.ndarray:
        """One augmented HR father (C, h, w)."""
        cfg = self.config
        u = self.rng.random()
        if u < cfg.leave_as_is or not self.scaled:
            pool, transform = self.originals, u >= cfg.leave_as_is
        elif u < cfg.leave_as_is + cfg.no_interp:
            pool, transform = self.originals, True
        else:
            pool, transform = self.scaled, True
        img = pool[int(self.rng.integers(len(pool)))]
        crop = self._random_crop(img)
        if transform:
            crop = dihedral(crop, int(self.rng.integers(8)))
        return np.ascontiguousarray(crop)

    def _input(self, father: np.ndarray) -> torch.Tensor:
        son = _son(father, self.op)
        if self.config.noise_std > 0:
            son = np.clip(son + self.rng.normal(0.0, self.config.noise_std, son.shape), 0, 1).astype(np.float32)
        return torch.from_numpy(_upscale(son, father.shape[-2:]))[None].to(self.device)

    @torch.no_grad()
    def reconstruction_error(self) -> float:
        """MSE of reconstructing the fixed test region from its own son."""
        self.net.eval()
        pred = self.net(self._input(self.test_region)).clamp_(0, 1)
        target = torch.from_numpy(self.test_region)[None].to(self.device)
        self.net.train()
        return float(((pred - target) ** 2).mean())

    def _policy(self, step: int) -> None:
        cfg = self.config
        if (step + 1) % cfg.check_every or step - self.last_change <= cfg.min_iters:
            return
        count = max(cfg.slope_range // cfg.test_every, 1)
        xs, ys = self.rec_steps[-count:], self.rec_errors[-count:]
        if len(xs) < 4:
            return
        (slope, _), cov = np.polyfit(xs, ys, 1, cov=True)
        std = math.sqrt(max(cov[0, 0], 0.0))
        if -cfg.slope_ratio * slope < std:
            self.lr /= 10.0
            self.last_change = step
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr

    def train(self, start: float, offset: int, total: int, label: str) -> Generator[Progress, None, int]:
        """Run the training loop; yields progress every ``report_every`` steps; returns steps done."""
        cfg = self.config
        self.net.train()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        loss_value = float("nan")
        step = 0
        for step in range(cfg.iterations):
            father = self.father()
            inp = self._input(father)
            target = torch.from_numpy(father)[None].to(self.device)
            loss = (self.net(inp) - target).abs().mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_value = float(loss.detach())
            if step % cfg.test_every == 0:
                self.rec_steps.append(step)
                self.rec_errors.append(self.reconstruction_error())
            self._policy(step)
            if (step + 1) % cfg.report_every == 0:
                yield Progress(offset + step + 1, total, time.perf_counter() - start, stage=Stage.SR,
                               loss={"l1": loss_value, "reconstruction_mse": self.rec_errors[-1]},
                               message=f"ZSSR {label}: step {step + 1}, learning rate {self.lr:.0e}")
            if self.lr < cfg.min_lr:
                break
        self.net.eval()
        return step + 1

    @torch.no_grad()
    def _net_tile(self, lr_tile: np.ndarray) -> np.ndarray:
        shape = (lr_tile.shape[-2] * self.scale, lr_tile.shape[-1] * self.scale)
        inp = torch.from_numpy(_upscale(lr_tile, shape))[None].to(self.device)
        return self.net(inp)[0].clamp_(0, 1).cpu().numpy()

    def upscale(self, lr: np.ndarray, transforms: list[int]) -> Iterator[Progress | np.ndarray]:
        """Self-ensemble + back-projection of one (C, H, W) image.

        Yields the tiles' progress records, then the (C, sH, sW) result as its last item.
        """
        cfg = self.config
        lr_t = torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32)).to(self.device)
        members = []
        for t in transforms:
            moved = np.ascontiguousarray(dihedral(lr, t))
            gen = iter_tiled(moved[None], self.scale, self._net_tile, tile=cfg.tile, overlap=cfg.overlap)
            out = (yield from gen)[0]
            out = torch.from_numpy(np.ascontiguousarray(undo_dihedral(out, t))).to(self.device)
            members.append(back_project(out, lr_t, self.op, self.scale, cfg.back_projection))
        fused = members[0] if len(members) == 1 else np.median(np.stack(members), axis=0).astype(np.float32)
        yield back_project(torch.from_numpy(fused).to(self.device), lr_t, self.op, self.scale, cfg.back_projection)


# --------------------------------------------------------------------------- registered method

def _config(opts: dict[str, Any]) -> ZSSRConfig:
    preset = opts.pop("preset")
    if preset not in PRESETS:
        raise BadOptionError(f"unknown ZSSR preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    overrides = {k: v for k, v in opts.items() if k in ZSSRConfig.__dataclass_fields__ and v is not None}
    base = PRESETS[preset]
    typed = {k: type(getattr(base, k))(v) for k, v in overrides.items()}
    return replace(base, **typed).validate()


def _run_jump(sources: list[np.ndarray], inputs: list[np.ndarray], kernel: np.ndarray, scale: int,
              cfg: ZSSRConfig, *, device: torch.device, rng: np.random.Generator, generator: torch.Generator,
              net: ZSSRNet | None, start: float, offset: int, total: int,
              label: str) -> Generator[Progress, None, tuple[list[np.ndarray], ZSSRNet]]:
    trainer = ZSSRTrainer(sources, inputs[0], kernel, scale, cfg, device=device, rng=rng, generator=generator,
                          net=net)
    yield from trainer.train(start, offset, total, label)
    transforms = invariant_transforms(kernel, cfg.ensemble, cfg.ensemble_tol)
    outputs = []
    for i, lr in enumerate(inputs):
        for item in trainer.upscale(lr, transforms):
            if isinstance(item, Progress):
                yield Progress(offset + cfg.iterations, total, time.perf_counter() - start, stage=Stage.SR,
                               message=f"ZSSR {label}: frame {i + 1}/{len(inputs)}, "
                                       f"{len(transforms)}-way ensemble, {item.message}")
            else:
                outputs.append(item)
    return outputs, trainer.net


@register("zssr", kind="sr_method", summary="ZSSR (Shocher et al. 2018): a small CNN trained on the image itself "
          "with the kernel", presets={name: asdict(cfg) for name, cfg in PRESETS.items()}, defaults=DEFAULTS,
          main=("preset", "iterations", "gradual"), hidden=("kernel_x2",),
          choices={"ensemble": ("auto", "full", "none", None)}, ranges=RANGES,
          help={"preset": "fast: interactive (400 steps at most); full: the paper's configuration",
                "gradual": "×4 as two ×2 jumps (needs the ×2 kernel, which the widget passes)",
                "iterations": "most training steps per jump; unset: the preset's"})
def zssr(frames: np.ndarray, kernel: np.ndarray, scale: int, *, device: torch.device, seed: int = 0,
         **options: Any) -> Generator[Progress, None, np.ndarray]:
    """Zero-Shot SR trained on the frames themselves with the given kernel; seeded.

    Options: ``preset`` (``"fast"`` or ``"full"``), ``gradual`` and
    ``kernel_x2`` (×4 as two ×2 jumps), and any :class:`ZSSRConfig` field
    (``iterations``, ``crop``, ``width``, ``back_projection``, ``ensemble``,
    ``noise_std``, ``tile``, ...) to override the preset.
    """
    opts = {**DEFAULTS, **options}
    gradual = bool(opts.pop("gradual"))
    kernel_x2 = opts.pop("kernel_x2")
    cfg = _config(opts)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    k = np.asarray(kernel, dtype=np.float64)
    images = [np.ascontiguousarray(f, dtype=np.float32) for f in frames]
    min_side = min(frames.shape[-2:])
    if gradual:
        if scale != 4 or kernel_x2 is None:
            raise BadOptionError("gradual=True runs ×4 as two ×2 jumps: use scale=4 and pass kernel_x2= "
                                 "(the ×2 kernel)")
        k2 = validate_kernel(kernel_x2, name="kernel_x2")
        total = 2 * cfg.iterations + 1
        mids, net = yield from _run_jump(images, images, k2, 2, cfg, device=device, rng=rng, generator=generator,
                                         net=None, start=start, offset=0, total=total, label="×2 (1/2)")
        outs, _ = yield from _run_jump(mids + images, mids, k2, 2, cfg, device=device, rng=rng,
                                       generator=generator, net=net, start=start, offset=cfg.iterations,
                                       total=total, label="×2 (2/2)")
        outs = [back_project(o, lr, k, 4, cfg.back_projection) for o, lr in zip(outs, images)]
    else:
        if kernel_x2 is not None:
            raise BadOptionError("kernel_x2 is only used with gradual=True")
        if min_side < 2 * scale:
            raise BadInputError(f"the image ({min_side} px on its short side) is too small for ZSSR ×{scale}")
        total = cfg.iterations + 1
        outs, _ = yield from _run_jump(images, images, k, scale, cfg, device=device, rng=rng, generator=generator,
                                       net=None, start=start, offset=0, total=total, label=f"×{scale}")
    yield Progress(total, total, time.perf_counter() - start, stage=Stage.SR, message="ZSSR done")
    return np.stack(outs).astype(np.float32)
