"""KernelGAN's hyper-parameters and presets (see :mod:`..kernelgan` for what each preset is)."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from ...errors import BadOptionError

__all__ = ["Config", "PRESETS", "resolve_config", "preset_values"]


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


def preset_values(cfg: Config) -> dict[str, Any]:
    """Every field of ``cfg`` by name (a preset as the registry lists it)."""
    return {f.name: getattr(cfg, f.name) for f in fields(cfg)}
