"""KernelGAN's schedule: the anchor phase and the early stop, for T fits at once (T = 1 for one image)."""
from __future__ import annotations

import numpy as np

from ...physics.conventions import centre_kernel
from .config import Config
from .kernels import suppress_negligible

__all__ = ["AnchorPhase", "EarlyStop"]


class AnchorPhase:
    """The reference's anchor schedule, for T fits at once (T = 1 for one image).

    G is held near its anchor until the anchor MSE stays below ``anchor_threshold`` for
    ``anchor_patience`` steps; then the anchor weight is divided by ``anchor_decay`` every
    ``anchor_decay_every`` steps down to ``anchor_floor``, and the sparsity and centring terms switch
    on once it drops below ``constraints_below``.
    """

    def __init__(self, cfg: Config, t: int = 1) -> None:
        self.cfg = cfg
        self.weight = np.full(t, float(cfg.w_anchor))
        self.close = np.zeros(t, dtype=bool)
        self.satisfied = np.zeros(t, dtype=np.int64)
        self.constraints_on = np.zeros(t, dtype=bool)

    def update(self, it: int, bic: np.ndarray) -> None:
        """After step ``it``, with each fit's anchor MSE ``bic`` (T,) of that step."""
        cfg = self.cfg
        far = ~self.close
        decay = self.close & ((it + 1) % cfg.anchor_decay_every == 0) & (self.weight > cfg.anchor_floor)
        self.satisfied = np.where(far, np.where(np.asarray(bic) < cfg.anchor_threshold, self.satisfied + 1, 0),
                                  self.satisfied)
        self.close = self.close | (far & (self.satisfied >= cfg.anchor_patience))
        self.weight = np.where(decay, np.maximum(self.weight / cfg.anchor_decay, cfg.anchor_floor), self.weight)
        self.constraints_on = self.constraints_on | (decay & (self.weight < cfg.constraints_below))

    def select(self, idx: np.ndarray) -> None:
        """Keep the fits ``idx`` only."""
        self.weight, self.close = self.weight[idx], self.close[idx]
        self.satisfied, self.constraints_on = self.satisfied[idx], self.constraints_on[idx]


class EarlyStop:
    """Whether each of T fits has settled: its kernel changed by less than ``early_stop_tol`` (L1)
    since the previous check, checks every ``early_stop_every`` steps of the last learning-rate phase."""

    def __init__(self, cfg: Config, t: int = 1) -> None:
        self.cfg = cfg
        self.final_phase = (cfg.iterations - 1) // cfg.lr_step * cfg.lr_step
        self.last: list[np.ndarray | None] = [None] * t

    def due(self, it: int) -> bool:
        """Whether step ``it`` ends with a check."""
        cfg = self.cfg
        return cfg.early_stop and it >= self.final_phase and (it + 1) % cfg.early_stop_every == 0

    def settled(self, raw: np.ndarray) -> np.ndarray:
        """(T,) bool, from each fit's raw kernel (T, k, k) now."""
        cur = [centre_kernel(suppress_negligible(k, self.cfg.negligible_n)) for k in raw]
        out = np.array([last is not None and np.abs(c - last).sum() < self.cfg.early_stop_tol
                        for c, last in zip(cur, self.last)], dtype=bool)
        self.last = cur
        return out

    def select(self, idx: np.ndarray) -> None:
        """Keep the fits ``idx`` only."""
        self.last = [self.last[i] for i in idx]
