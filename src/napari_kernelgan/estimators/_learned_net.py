"""The network and the per-image pipeline of the ``learned`` estimator, shared with its training script.

Kept free of the registry, napari and Qt so ``scripts/train_learned.py`` can import it on a machine
that has only torch, numpy, scipy and scikit-image.

* :class:`SpectralNet` (the default) and :class:`CovarianceNet` (a plain CNN) map one locally
  normalised LR luminance crop, plus the scale and the crop's contrast, to the matrix logarithm of
  the ×2 kernel's covariance (3 numbers, log-Euclidean) and a log-variance per number
  (heteroscedastic Gaussian likelihood).
* :func:`pick_crops` chooses crops weighted toward textured regions, :func:`predict_log_covariance`
  runs the network on them and combines the crops by their predicted precisions.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..physics.kernels import exp_sym, log_spd

__all__ = ["CovarianceNet", "SpectralNet", "build_net", "log_to_cov", "cov_to_log", "log_to_cov_torch",
           "cov_to_log_torch", "normalise_crops", "luminance", "pick_crops", "predict_crops", "predict_log_covariance",
           "combine",
           "Prediction", "CROP", "FORMAT", "LOGVAR_RANGE", "OpticsNet", "PROFILE_KNOTS", "PROFILE_SIDE",
           "profile_radii", "render_profile", "predict_optics_crops"]

CROP = 64                   # LR crop side the network is trained on
FORMAT = "napari-kernelgan learned covariance v1"
LOGVAR_RANGE = (-7.0, 5.0)  # predicted log-variances are clamped here (keeps the likelihood finite)
STD_FLOOR = 1e-3            # a crop flatter than this (in [0, 1] units) is normalised as if it had this contrast
LUMA = (0.299, 0.587, 0.114)


class CovarianceNet(nn.Module):
    """Small CNN: valid 3×3 convolutions (no zero padding for the border to leak into the blur
    measurement), two stride-2 stages, mean and standard-deviation pooling, an MLP head.

    ``forward(x, extras)``: ``x`` (B, 1, h, w) normalised crops, ``extras`` (B, 2) = (is ×4, log10 crop
    std). Returns ``(mu, logvar)``, each (B, 3): ``mu`` = (L00, L01, L11) of ``L = logm(Σ)``, Σ in HR px².
    """

    def __init__(self, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        c1, c2, c3 = width, 2 * width, 3 * width
        act = nn.SiLU
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3), act(), nn.Conv2d(c1, c1, 3), act(),
            nn.Conv2d(c1, c2, 3, stride=2), act(), nn.Conv2d(c2, c2, 3), act(),
            nn.Conv2d(c2, c3, 3, stride=2), act(), nn.Conv2d(c3, c3, 3), act(),
        )
        self.head = nn.Sequential(nn.Linear(2 * c3 + 2, hidden), act(), nn.Linear(hidden, hidden), act(),
                                  nn.Linear(hidden, 6))
        self.width, self.hidden = width, hidden

    def forward(self, x: torch.Tensor, extras: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        mean = f.mean(dim=(-2, -1))
        std = (f.var(dim=(-2, -1), unbiased=False) + 1e-6).sqrt()
        out = self.head(torch.cat([mean, std, extras], dim=1))
        return out[:, :3], out[:, 3:].clamp(*LOGVAR_RANGE)


class SpectralNet(nn.Module):
    """A fixed spectral front end and a small MLP: the crop's log power spectrum (Hann window), averaged
    in ``radial`` × ``angular`` bins (angles over [0, π): the spectrum of a real crop is symmetric), then
    an MLP to (mu, logvar) as :class:`CovarianceNet`.

    The blur shows directly in how fast the spectrum falls along each orientation, so this learns in
    minutes on a CPU where the CNN needs far longer to leave the predict-the-mean plateau.
    """

    def __init__(self, crop: int = CROP, radial: int = 10, angular: int = 8, hidden: int = 128) -> None:
        super().__init__()
        fy = torch.fft.fftfreq(crop)[:, None].expand(crop, crop)
        fx = torch.fft.fftfreq(crop)[None, :].expand(crop, crop)
        r = torch.sqrt(fx ** 2 + fy ** 2)
        theta = torch.remainder(torch.atan2(fy, fx), math.pi)
        edges = torch.linspace(1.5 / crop, 0.5 * math.sqrt(2), radial + 1)
        rb = torch.bucketize(r, edges) - 1
        ab = torch.clamp((theta / math.pi * angular).long(), max=angular - 1)
        ok = (rb >= 0) & (rb < radial)
        idx = torch.where(ok, rb * angular + ab, torch.full_like(rb, radial * angular))
        onehot = torch.nn.functional.one_hot(idx.flatten(), radial * angular + 1)[:, :-1].float()
        count = onehot.sum(0).clamp_min(1)
        self.register_buffer("bins", onehot / count, persistent=False)
        win = torch.hann_window(crop, periodic=False)
        self.register_buffer("window", (win[:, None] * win[None, :]), persistent=False)
        n = radial * angular
        act = nn.SiLU
        self.head = nn.Sequential(nn.Linear(n + 2, hidden), act(), nn.Linear(hidden, hidden), act(),
                                  nn.Linear(hidden, hidden), act(), nn.Linear(hidden, 6))
        self.crop, self.radial, self.angular, self.hidden = crop, radial, angular, hidden

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, crop, crop) normalised crops → (B, radial·angular) log band powers."""
        if x.shape[-2:] != (self.crop, self.crop):  # a smaller image: resample the crop's spectrum grid
            x = torch.nn.functional.pad(x, (0, self.crop - x.shape[-1], 0, self.crop - x.shape[-2]))
        spec = torch.fft.fft2(x[:, 0] * self.window).abs() ** 2
        return torch.log(spec.flatten(1) @ self.bins + 1e-6)

    def forward(self, x: torch.Tensor, extras: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(torch.cat([self.features(x), extras], dim=1))
        return out[:, :3], out[:, 3:].clamp(*LOGVAR_RANGE)


PROFILE_KNOTS = 32          # knots of the optics family's radial profile
PROFILE_SIDE = 41           # side of the grid the optics family's kernel is rendered on (HR px)
PROFILE_REACH = 29.0        # radius of the last knot (HR px): past the 41×41 grid's corners
PROFILE_POWER = 1.5         # knot radii ∝ (j / (K - 1))^1.5: dense in the core, 1.4 px apart in the tails


def profile_radii(knots: int = PROFILE_KNOTS) -> np.ndarray:
    """Radii (HR px) of the radial profile's knots."""
    return PROFILE_REACH * (np.arange(knots) / (knots - 1)) ** PROFILE_POWER


class OpticsNet(SpectralNet):
    """:class:`SpectralNet` with a microscope-PSF head: besides the log-covariance and its log-variances,
    the kernel's radial profile (``knots`` log values at :func:`profile_radii`, an isotropic shape the
    covariance's anisotropy then stretches), the defocus in depths of field and a widefield logit
    (widefield vs confocal or Gaussian), the last two as readings for the user.

    ``forward`` returns ``(mu, logvar)`` as :class:`SpectralNet`; :meth:`forward_all` adds
    ``(profile logits (B, knots), aux (B, 2))``.
    """

    def __init__(self, crop: int = CROP, radial: int = 16, angular: int = 8, hidden: int = 192,
                 knots: int = PROFILE_KNOTS) -> None:
        super().__init__(crop=crop, radial=radial, angular=angular, hidden=hidden)
        act = nn.SiLU
        self.head = nn.Sequential(nn.Linear(radial * angular + 2, hidden), act(), nn.Linear(hidden, hidden), act(),
                                  nn.Linear(hidden, hidden), act(), nn.Linear(hidden, 6 + knots + 2))
        self.knots = knots

    def forward_all(self, x: torch.Tensor, extras: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.head(torch.cat([self.features(x), extras], dim=1))
        return out[:, :3], out[:, 3:6].clamp(*LOGVAR_RANGE), out[:, 6:6 + self.knots], out[:, 6 + self.knots:]

    def forward(self, x: torch.Tensor, extras: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar, _, _ = self.forward_all(x, extras)
        return mu, logvar


def render_profile(profile: torch.Tensor, log_cov: torch.Tensor, side: int = PROFILE_SIDE) -> torch.Tensor:
    """Kernels (B, side, side), each summing to 1, from radial profiles (B, K) (values ≥ 0 at
    :func:`profile_radii`) stretched by the anisotropy of ``log_cov`` (B, 3) = (L00, L01, L11).

    A pixel at offset x from the centre reads the profile at ρ = √(xᵀ A⁻¹ x), A = Σ / √det Σ (the
    covariance's shape at unit determinant), linearly between knots; the last knot's value beyond it.
    """
    knots = profile.shape[-1]
    half = side // 2
    axis = torch.arange(-half, half + 1, dtype=profile.dtype, device=profile.device)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    trace = 0.5 * (log_cov[:, 0] + log_cov[:, 2])
    inv = log_to_cov_torch(torch.stack([trace - log_cov[:, 0], -log_cov[:, 1], trace - log_cov[:, 2]], -1))
    rho2 = inv[:, 0, None, None] * yy ** 2 + 2 * inv[:, 1, None, None] * yy * xx + inv[:, 2, None, None] * xx ** 2
    # the floor keeps the gradient finite at the centre pixel (ρ = 0)
    t = (rho2.clamp_min(1e-12) / PROFILE_REACH ** 2).clamp(max=1.0) ** (0.5 / PROFILE_POWER) * (knots - 1)
    j0 = t.floor().clamp(max=knots - 2).long()
    w = t - j0
    flat = j0.flatten(1)
    lo = torch.gather(profile, 1, flat).view_as(t)
    hi = torch.gather(profile, 1, flat + 1).view_as(t)
    k = (1 - w) * lo + w * hi
    return k / k.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-30)


def build_net(meta: dict[str, Any]) -> nn.Module:
    """The network described by a weight file's metadata (``arch`` entry)."""
    arch = meta.get("arch", {})
    if arch.get("name") == "OpticsNet":
        return OpticsNet(crop=int(arch.get("crop", CROP)), radial=int(arch.get("radial", 16)),
                         angular=int(arch.get("angular", 8)), hidden=int(arch.get("hidden", 192)),
                         knots=int(arch.get("knots", PROFILE_KNOTS)))
    if arch.get("name", "CovarianceNet") == "SpectralNet":
        return SpectralNet(crop=int(arch.get("crop", CROP)), radial=int(arch.get("radial", 10)),
                           angular=int(arch.get("angular", 8)), hidden=int(arch.get("hidden", 128)))
    return CovarianceNet(width=int(arch.get("width", 32)), hidden=int(arch.get("hidden", 128)))


# ------------------------------------------------------------------------------------- log-Euclidean maps


def cov_to_log(cov: np.ndarray) -> np.ndarray:
    """(L00, L01, L11) of the matrix logarithm of a 2×2 SPD covariance."""
    log = log_spd(cov, floor=1e-6)
    return np.array([log[0, 0], log[0, 1], log[1, 1]])


def log_to_cov(v: np.ndarray) -> np.ndarray:
    """The 2×2 covariance ``expm([[v0, v1], [v1, v2]])``."""
    v = np.asarray(v, dtype=np.float64)
    return exp_sym(np.array([[v[0], v[1]], [v[1], v[2]]]))


def _sym_eig(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Closed-form eigen-decomposition of batched 2×2 symmetric [[a, b], [b, c]]: (l1, l2, cos, sin)."""
    mean = 0.5 * (a + c)
    rad = torch.sqrt((0.5 * (a - c)) ** 2 + b ** 2 + 1e-20)
    theta = 0.5 * torch.atan2(2 * b, a - c)
    return mean + rad, mean - rad, torch.cos(theta), torch.sin(theta)


def _rebuild(l1: torch.Tensor, l2: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return torch.stack([l1 * cos ** 2 + l2 * sin ** 2, (l1 - l2) * cos * sin, l1 * sin ** 2 + l2 * cos ** 2], -1)


def log_to_cov_torch(v: torch.Tensor) -> torch.Tensor:
    """Batched :func:`log_to_cov` on (..., 3) → (Σ00, Σ01, Σ11)."""
    l1, l2, cos, sin = _sym_eig(v[..., 0], v[..., 1], v[..., 2])
    return _rebuild(l1.exp(), l2.exp(), cos, sin)


def cov_to_log_torch(s: torch.Tensor) -> torch.Tensor:
    """Batched :func:`cov_to_log` on (..., 3) = (Σ00, Σ01, Σ11)."""
    l1, l2, cos, sin = _sym_eig(s[..., 0], s[..., 1], s[..., 2])
    return _rebuild(l1.clamp_min(1e-6).log(), l2.clamp_min(1e-6).log(), cos, sin)


# ------------------------------------------------------------------------------------- crops


def luminance(frames: np.ndarray) -> np.ndarray:
    """(N, C, H, W) in [0, 1] → (N, H, W) luminance (BT.601 weights for 3 channels, else the mean)."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.shape[1] == 3:
        return np.tensordot(np.asarray(LUMA, dtype=np.float32), frames, axes=([0], [1]))
    return frames.mean(axis=1)


def normalise_crops(crops: torch.Tensor, scale: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 1, h, w) crops in [0, 1] → (zero-mean unit-std crops, extras (B, 2) = (is ×4, log10 std))."""
    mean = crops.mean(dim=(-2, -1), keepdim=True)
    std = crops.std(dim=(-2, -1), keepdim=True, unbiased=False)
    x = (crops - mean) / std.clamp_min(STD_FLOOR)
    is_x4 = (torch.as_tensor(scale, device=crops.device, dtype=crops.dtype) == 4).to(crops.dtype)
    is_x4 = is_x4.expand(crops.shape[0]) if is_x4.dim() == 0 else is_x4
    extras = torch.stack([is_x4, std.flatten().clamp_min(STD_FLOOR).log10()], dim=1)
    return x, extras


def _window_energy(gray: np.ndarray, crop: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean squared gradient in every ``crop``-sized window on a ``stride`` grid: (scores, tops, lefts)."""
    g = gray.astype(np.float64)
    e = np.zeros_like(g)
    e[:, :-1] += np.diff(g, axis=1) ** 2
    e[:-1, :] += np.diff(g, axis=0) ** 2
    ii = np.pad(e.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = g.shape
    tops = np.unique(np.r_[np.arange(0, h - crop + 1, stride), h - crop])
    lefts = np.unique(np.r_[np.arange(0, w - crop + 1, stride), w - crop])
    t, l = np.meshgrid(tops, lefts, indexing="ij")
    s = ii[t + crop, l + crop] - ii[t, l + crop] - ii[t + crop, l] + ii[t, l]
    return s.ravel() / crop ** 2, t.ravel(), l.ravel()


def pick_crops(gray: np.ndarray, n: int, seed: int, crop: int = CROP, power: float = 0.5) -> np.ndarray:
    """``n`` crops (n', crop, crop) of the (F, H, W) luminance, drawn without replacement with
    probability ∝ (gradient energy)^``power`` among windows on a ``crop // 4`` grid (seeded)."""
    rng = np.random.default_rng(seed)
    scores, where = [], []
    for f, plane in enumerate(gray):
        s, t, l = _window_energy(plane, crop, max(1, crop // 4))
        scores.append(s)
        where.append(np.stack([np.full_like(t, f), t, l], 1))
    s = np.concatenate(scores)
    pos = np.concatenate(where)
    p = np.clip(s, 0, None) ** power + 1e-12
    take = min(n, s.size)
    idx = rng.choice(s.size, take, replace=False, p=p / p.sum())
    return np.stack([gray[f, t:t + crop, l:l + crop] for f, t, l in pos[idx]])


@dataclass
class Prediction:
    """Per-image result: the combined log-covariance and the per-crop predictions behind it."""

    log_cov: np.ndarray      # (3,) precision-weighted mean of the crops
    crop_mu: np.ndarray      # (K, 3)
    crop_logvar: np.ndarray  # (K, 3)
    uncertainty: float       # r.m.s. of predicted std and between-crop spread (log units)

    @property
    def covariance(self) -> np.ndarray:
        return log_to_cov(self.log_cov)


def _dihedral(x: torch.Tensor, t: int) -> torch.Tensor:
    """Transform ``t`` in 0..7 of (..., h, w) crops: bit 0 flips columns, bit 1 flips rows, bit 2 transposes."""
    if t & 1:
        x = x.flip(-1)
    if t & 2:
        x = x.flip(-2)
    return x.transpose(-2, -1) if t & 4 else x


def _undo_dihedral(mu: torch.Tensor, t: int) -> torch.Tensor:
    """Log-covariance (L00, L01, L11) predicted on a transformed crop, back in the crop's own frame."""
    l00, l01, l11 = mu.unbind(-1)
    if t & 4:
        l00, l11 = l11, l00
    if bin(t & 3).count("1") == 1:  # one flip mirrors the axes' correlation
        l01 = -l01
    return torch.stack([l00, l01, l11], -1)


@torch.no_grad()
def predict_crops(net: nn.Module, crops: np.ndarray, scale: int, batch: int = 64,
                  device: torch.device | str = "cpu", tta: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per-crop predictions ``(mu, logvar)``, each (K, tta, 3), of ``net`` on LR crops (K, h, w) in [0, 1].

    ``tta`` (1, 2, 4 or 8): each crop is also seen flipped and transposed, and the predictions
    mapped back, which averages out the network's orientation bias.
    """
    if tta not in (1, 2, 4, 8):
        raise ValueError(f"tta must be 1, 2, 4 or 8, got {tta}")
    transforms = (0, 5, 3, 6, 1, 2, 4, 7)[:tta]  # the first pairs mix a transpose and a flip
    mus, logvars = [], []
    for i in range(0, len(crops), batch):
        x = torch.as_tensor(np.ascontiguousarray(crops[i:i + batch]), dtype=torch.float32, device=device)[:, None]
        x, extras = normalise_crops(x, scale)
        views_mu, views_lv = [], []
        for t in transforms:
            mu, logvar = net(_dihedral(x, t), extras)
            views_mu.append(_undo_dihedral(mu, t).double().cpu().numpy())
            views_lv.append((logvar[:, [2, 1, 0]] if t & 4 else logvar).double().cpu().numpy())
        mus.append(np.stack(views_mu, 1))
        logvars.append(np.stack(views_lv, 1))
    return np.concatenate(mus), np.concatenate(logvars)


def predict_log_covariance(net: nn.Module, crops: np.ndarray, scale: int, batch: int = 64,
                           device: torch.device | str = "cpu", tta: int = 1) -> Prediction:
    """Run ``net`` on LR crops (K, h, w) in [0, 1] of one image at ``scale`` and combine them
    (:func:`predict_crops`, then :func:`combine`)."""
    mu, logvar = predict_crops(net, crops, scale, batch=batch, device=device, tta=tta)
    return combine(mu.reshape(-1, 3), logvar.reshape(-1, 3))


def combine(mu: np.ndarray, logvar: np.ndarray) -> Prediction:
    """Precision-weighted mean of per-crop predictions (K, 3) in log-Euclidean space, with the uncertainty."""
    w = np.exp(-logvar)
    mean = (w * mu).sum(0) / w.sum(0)
    predicted = 1.0 / w.mean(0)                         # typical per-crop variance (harmonic mean)
    spread = (w * (mu - mean) ** 2).sum(0) / w.sum(0)   # weighted between-crop variance
    return Prediction(mean, mu, logvar, math.sqrt(float(np.mean(predicted + spread))))


@torch.no_grad()
def predict_optics_crops(net: OpticsNet, crops: np.ndarray, scale: int, batch: int = 64,
                         device: torch.device | str = "cpu", tta: int = 1) -> dict[str, np.ndarray]:
    """Per-crop outputs of an :class:`OpticsNet` on LR crops (K, h, w) in [0, 1]: ``mu``, ``logvar``
    (K, tta, 3) as :func:`predict_crops`, ``profile`` (K, knots) (log values, the views' mean) and
    ``aux`` (K, 2) (defocus in depths of field, widefield logit; the views' mean)."""
    if tta not in (1, 2, 4, 8):
        raise ValueError(f"tta must be 1, 2, 4 or 8, got {tta}")
    transforms = (0, 5, 3, 6, 1, 2, 4, 7)[:tta]
    out: dict[str, list[np.ndarray]] = {"mu": [], "logvar": [], "profile": [], "aux": []}
    for i in range(0, len(crops), batch):
        x = torch.as_tensor(np.ascontiguousarray(crops[i:i + batch]), dtype=torch.float32, device=device)[:, None]
        x, extras = normalise_crops(x, scale)
        views: dict[str, list[np.ndarray]] = {"mu": [], "logvar": [], "profile": [], "aux": []}
        for t in transforms:
            mu, logvar, profile, aux = net.forward_all(_dihedral(x, t), extras)
            views["mu"].append(_undo_dihedral(mu, t).double().cpu().numpy())
            views["logvar"].append((logvar[:, [2, 1, 0]] if t & 4 else logvar).double().cpu().numpy())
            views["profile"].append(profile.double().cpu().numpy())
            views["aux"].append(aux.double().cpu().numpy())
        out["mu"].append(np.stack(views["mu"], 1))
        out["logvar"].append(np.stack(views["logvar"], 1))
        out["profile"].append(np.mean(views["profile"], 0))
        out["aux"].append(np.mean(views["aux"], 0))
    return {k: np.concatenate(v) for k, v in out.items()}
