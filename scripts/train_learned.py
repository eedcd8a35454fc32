"""Train the ``learned`` kernel estimator on synthetic degradations, and write its weight file.

    PYTHONPATH=src python3 scripts/train_learned.py --device cuda --minutes 8 \
        --out src/napari_kernelgan/estimators/learned_weights.pt --val 500

Needs only torch, numpy, scipy and scikit-image (no napari, no Qt): it imports the Qt-free parts of
the package (physics, synthetic, estimators._learned_net).

Training data, generated on the fly on the training device. DIV2KRK is never used, not even for
validation (the benchmark in ``benchmarks/kernel_benchmark.py`` is the only place it is read):

* HR images
  - procedural dead leaves (``napari_kernelgan.synthetic.dead_leaves``, seeds 0…; validation uses
    seeds from 1 000 000), with and without texture inside the leaves;
  - synthetic fluorescence scenes (``napari_kernelgan.synthetic.microscopy_scene``, same seed rule);
  - scikit-image's bundled photographs whose licences allow any use (from their docstrings):
    camera (CC0, Lav Varshney), coffee (CC0, Rachel Michetti), chelsea (CC0, Stefan van der Walt),
    rocket (public domain, SpaceX), coins (no known copyright restrictions),
    hubble_deep_field (public domain, NASA), brick, grass, gravel (CC0, cc0textures.com),
    retina (CC0), cell (CC0). ``astronaut`` and ``immunohistochemistry`` are left out (they are the
    project's own sample and test images), ``clock`` (it is motion-blurred), ``moon`` and ``page``
    (licence not stated), ``text``, ``horse`` and ``microaneurysms`` (too small or binary).
* Augmentation: random crops, flips and 90° rotations, anti-aliased HR downscaling by 1–3× (so the
  content's scale varies and the HR is sharp), gamma 0.6–1.6 and contrast, then the blur, then white
  Gaussian noise σ ∈ [0, 15/255] on part of the batch (Poisson–Gaussian on the microscopy scenes)
  and 8-bit quantisation on most samples.
* Kernels: the DIV2KRK protocol (anisotropic Gaussian, λ1, λ2 ~ U(0.6, 5) px², any angle, 25 %
  multiplicative per-tap noise; ``physics.kernels.random_div2krk_kernel``) on a slightly wider
  variance range, U(0.45, 5.5) px², for robustness at its ends. Each HR crop is degraded either ×2
  with ``k2`` or ×4 with ``analytic_x4(k2)``, the kernels in the project's subsampling phase
  (``physics.conventions.kernel_for_subsampling``; checked against ``physics.degrade`` at start-up).
  The target is the matrix logarithm of ``physics.metrics.second_moments(k2)`` in both cases.

Network (``--arch``): ``spectral`` (default; ``SpectralNet``: the crop's log power spectrum in 10
radial × 8 angular bands, then an MLP) or ``cnn`` (``CovarianceNet``). On a 2-core CPU the CNN was
still predicting the mean after 600 steps (10 minutes), the spectral network reached a validation L1
of 0.19 (×2) in the same time, so it is the default.

Loss: β-NLL (β = 0.5) of a diagonal Gaussian on the three log-covariance numbers, so each crop's
prediction comes with its own variance. AdamW with a cosine learning rate over the step or time
budget. The output (``--out``) holds the float16 state dict and a metadata dict, written to a
temporary file and renamed into place.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from napari_kernelgan.estimators._learned_net import (  # noqa: E402
    CROP,
    FORMAT,
    CovarianceNet,
    SpectralNet,
    cov_to_log,
    luminance,
    normalise_crops,
    pick_crops,
    predict_log_covariance,
)
from napari_kernelgan.physics.conventions import analytic_x4, centre_kernel, kernel_for_subsampling  # noqa: E402
from napari_kernelgan.physics.kernels import gaussian_from_covariance, gaussian_kernel  # noqa: E402
from napari_kernelgan.physics.metrics import kernel_l1, second_moments  # noqa: E402

SKIMAGE_IMAGES = ("camera", "coffee", "chelsea", "rocket", "coins", "hubble_deep_field", "brick", "grass",
                  "gravel", "retina", "cell")
SOURCE_WEIGHTS = {"photo": 0.45, "leaves": 0.35, "microscopy": 0.20}
LAMBDA_RANGE = (0.45, 5.5)   # axis variances of the training kernels, px² (DIV2KRK: 0.6–5)
KERNEL_NOISE = 0.25
K2_SIZE = 11
APPLIED = {2: 17, 4: 39}     # side of the applied (phase-shifted) ×2 / ×4 kernels
LEVELS = ((1.0, 0.3), (1.25, 0.14), (1.6, 0.14), (2.0, 0.14), (2.5, 0.14), (3.0, 0.14))
"""HR downscale factors (content scale augmentation) and how often each is drawn."""
NOISE_MAX = 15 / 255
VAL_SEED = 1_000_000


# ------------------------------------------------------------------------------------------ kernels


def draw_kernel(rng: np.random.Generator) -> np.ndarray:
    """One ×2 kernel of the DIV2KRK protocol on the wider variance range (11×11, centred, sum 1)."""
    lam1, lam2 = rng.uniform(*LAMBDA_RANGE, size=2)
    theta = rng.uniform(-np.pi, np.pi)
    k = gaussian_kernel(K2_SIZE, math.sqrt(lam1), math.sqrt(lam2), theta)
    k = k * (1 + rng.uniform(0, KERNEL_NOISE, size=k.shape))
    k = centre_kernel(k / k.sum())
    return k / k.sum()


def applied_kernels(k2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ×2 kernel and its analytic ×4 kernel as applied before ``[::s, ::s]`` (17×17, 39×39)."""
    return kernel_for_subsampling(k2, 2), kernel_for_subsampling(analytic_x4(k2, 3 * K2_SIZE - 2), 4)


def kernel_pool(n: int, seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    """``n`` kernels: applied ×2 (n, 17, 17) and ×4 (n, 39, 39) weights and the log-covariance targets."""
    rng = np.random.default_rng(seed)
    w2 = np.zeros((n, APPLIED[2], APPLIED[2]), np.float32)
    w4 = np.zeros((n, APPLIED[4], APPLIED[4]), np.float32)
    target = np.zeros((n, 3), np.float32)
    for i in range(n):
        k2 = draw_kernel(rng)
        w2[i], w4[i] = applied_kernels(k2)
        target[i] = cov_to_log(second_moments(k2))
    return {"w2": torch.from_numpy(w2).to(device), "w4": torch.from_numpy(w4).to(device),
            "target": torch.from_numpy(target).to(device)}


def check_phase(seed: int) -> float:
    """Largest difference between the batched degradation used here and ``physics.degrade`` (round-off)."""
    from napari_kernelgan.physics.degrade import degrade

    rng = np.random.default_rng(seed)
    k2 = draw_kernel(rng)
    worst = 0.0
    for s, w in zip((2, 4), applied_kernels(k2)):
        k = k2 if s == 2 else analytic_x4(k2, 3 * K2_SIZE - 2)
        hr = rng.random((200, 200))
        ref = degrade(hr, k, s, mode="reflect")
        half = w.shape[0] // 2
        # LR pixel i of ``degrade`` reads HR rows from s*i - half; start the valid correlation at the first
        # LR pixel that reads no reflected border, c = ceil(half / s).
        c = -(-half // s)
        x = torch.from_numpy(hr[None, None, s * c - half:, s * c - half:].copy())
        ours = F.conv2d(x, torch.from_numpy(w)[None, None], stride=s)[0, 0].numpy()
        n = min(ours.shape[0], ref.shape[0] - c)
        worst = max(worst, float(np.abs(ours[:n, :n] - ref[c:c + n, c:c + n]).max()))
    return worst


# ------------------------------------------------------------------------------------------ HR images


def _gray(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float32)
    if img.max() > 1.5:
        img = img / 255.0
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.ascontiguousarray(img)


def hr_bank(n_leaves: int, n_micro: int, device: torch.device, log: bool = True) -> tuple[list, list[str]]:
    """The HR images (tensors on ``device``) with their source, and a description of each."""
    import skimage.data

    from napari_kernelgan.synthetic import dead_leaves, microscopy_scene

    images, names = [], []
    for name in SKIMAGE_IMAGES:
        images.append((torch.from_numpy(_gray(getattr(skimage.data, name)())).to(device), "photo"))
        names.append(f"skimage.data.{name}")
    rng = np.random.default_rng(12345)
    for i in range(n_leaves):
        tex = float(rng.choice([0.0, 0.0, 0.3, 0.6]))
        r_min = float(rng.uniform(1.0, 4.0))
        img = dead_leaves((512, 512), seed=i, r_min=r_min, texture=tex)
        images.append((torch.from_numpy(img.astype(np.float32)).to(device), "leaves"))
        names.append(f"dead_leaves(512, seed={i}, r_min={r_min:.2f}, texture={tex})")
    for i in range(n_micro):
        img = microscopy_scene((512, 512), seed=i)
        img = img / max(float(img.max()), 1e-6)
        images.append((torch.from_numpy(img.astype(np.float32)).to(device), "microscopy"))
        names.append(f"microscopy_scene(512, seed={i})")
    if log:
        print(f"HR bank: {len(SKIMAGE_IMAGES)} photographs, {n_leaves} dead-leaves, {n_micro} microscopy", flush=True)
    return images, names


# ------------------------------------------------------------------------------------------ batches


class Synth:
    """Makes training batches: (LR crops (B, 1, 64, 64) in [0, 1], scale per sample, target (B, 3)).

    Each HR image is kept at a few anti-aliased downscales (:data:`LEVELS`, made once), so a crop is
    cut at its final size and no large crop is resized per batch.
    """

    def __init__(self, images: list, pool: dict[str, torch.Tensor], device: torch.device, seed: int) -> None:
        self.pool = pool
        self.device = device
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator(device=device).manual_seed(seed)
        counts = {k: sum(1 for _, s in images if s == k) for k in SOURCE_WEIGHTS}
        self.images, weights, micro = [], [], []
        for img, source in images:
            for f, level_weight in LEVELS:
                scaled = img if f == 1 else F.interpolate(
                    img[None, None], scale_factor=1 / f, mode="bicubic", antialias=True, align_corners=False,
                    recompute_scale_factor=False)[0, 0].clamp(0, 1)
                self.images.append(scaled.contiguous())
                weights.append(SOURCE_WEIGHTS[source] / counts[source] * level_weight)
                micro.append(source == "microscopy")
        self.sizes = np.array([min(t.shape) for t in self.images])
        self.weights, self.micro = np.array(weights), np.array(micro)

    def _group(self, m: int, scale: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng, dev = self.rng, self.device
        ks = APPLIED[scale]
        need = (CROP - 1) * scale + ks
        p = self.weights * (self.sizes >= need)
        idx = rng.choice(len(self.images), m, p=p / p.sum())
        crops = []
        for i in idx:
            img = self.images[i]
            top = int(rng.integers(0, img.shape[0] - need + 1))
            left = int(rng.integers(0, img.shape[1] - need + 1))
            crops.append(img[top:top + need, left:left + need])
        x = torch.stack(crops)[:, None]
        x = torch.rot90(x, int(rng.integers(4)), dims=(-2, -1))
        if rng.random() < 0.5:
            x = x.flip(-1)
        gamma = torch.exp(torch.empty(m, 1, 1, 1, device=dev).uniform_(math.log(0.6), math.log(1.6),
                                                                      generator=self.gen))
        a = torch.empty(m, 1, 1, 1, device=dev).uniform_(0.25, 1.0, generator=self.gen)
        b = torch.rand(m, 1, 1, 1, device=dev, generator=self.gen) * (1 - a)
        x = a * x.clamp_min(0) ** gamma + b
        kidx = torch.from_numpy(rng.integers(0, len(self.pool["target"]), m)).to(dev)
        w = self.pool[f"w{scale}"][kidx][:, None]
        lr = F.conv2d(x.reshape(1, m, need, need), w, stride=scale, groups=m).reshape(m, 1, CROP, CROP)
        return lr, self.pool["target"][kidx], torch.from_numpy(self.micro[idx]).to(dev)

    def batch(self, size: int, group: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batch of ``size`` samples, in groups that share the scale, the downscale factor and the flip."""
        lrs, scales, targets, micro = [], [], [], []
        done = 0
        while done < size:
            m = min(group, size - done)
            s = 2 if self.rng.random() < 0.5 else 4
            lr, t, mic = self._group(m, s)
            lrs.append(lr)
            targets.append(t)
            micro.append(mic)
            scales.append(torch.full((m,), s, device=self.device))
            done += m
        lr, target, micro_t, scale = torch.cat(lrs), torch.cat(targets), torch.cat(micro), torch.cat(scales)
        return self._noise(lr, micro_t), scale, target

    def _noise(self, lr: torch.Tensor, micro: torch.Tensor) -> torch.Tensor:
        dev, g, n = self.device, self.gen, lr.shape[0]
        sigma = torch.rand(n, 1, 1, 1, device=dev, generator=g) * NOISE_MAX
        sigma = sigma * (torch.rand(n, 1, 1, 1, device=dev, generator=g) < 0.6)
        noisy = lr + sigma * torch.randn(lr.shape, device=dev, generator=g)
        # Poisson-Gaussian on the fluorescence scenes: photons at the crop's brightest pixel, log-uniform
        photons = torch.exp(torch.empty(n, 1, 1, 1, device=dev).uniform_(math.log(20), math.log(1500), generator=g))
        peak = lr.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-3)
        gain = photons / peak
        read = torch.empty(n, 1, 1, 1, device=dev).uniform_(0.8, 3.0, generator=g)
        shot = torch.poisson((lr.clamp_min(0) * gain), generator=g) / gain
        pg = shot + read / gain * torch.randn(lr.shape, device=dev, generator=g)
        use_pg = micro[:, None, None, None] & (torch.rand(n, 1, 1, 1, device=dev, generator=g) < 0.7)
        out = torch.where(use_pg, pg, noisy).clamp(0, 1)
        quant = torch.rand(n, 1, 1, 1, device=dev, generator=g) < 0.7
        return torch.where(quant, torch.round(out * 255) / 255, out)


# ------------------------------------------------------------------------------------------ validation


def validation_set(n_leaves: int = 6, n_micro: int = 2, seed: int = VAL_SEED) -> list[dict]:
    """Fixed synthetic cases (unseen seeds): LR via ``physics.degrade``, each at ×2 and ×4, half with noise."""
    from napari_kernelgan.physics.degrade import degrade
    from napari_kernelgan.physics.kernels import random_div2krk_kernel
    from napari_kernelgan.synthetic import dead_leaves, microscopy_scene

    rng = np.random.default_rng(seed)
    hrs = [dead_leaves((384, 384), seed=seed + i, texture=0.3 * (i % 3)) for i in range(n_leaves)]
    hrs += [microscopy_scene((384, 384), seed=seed + i) for i in range(n_micro)]
    cases = []
    for j, hr in enumerate(hrs):
        hr = hr / max(float(hr.max()), 1e-6)
        k2 = random_div2krk_kernel(rng, 2, 11)
        for s in (2, 4):
            k = k2 if s == 2 else analytic_x4(k2, 31)
            lr = degrade(hr, k, s)
            sigma = 10 / 255 if j % 2 else 0.0
            lr = np.clip(lr + rng.normal(0, sigma, lr.shape), 0, 1) if sigma else lr
            cases.append({"lr": np.round(lr * 255) / 255, "scale": s, "k2": k2, "truth": k, "noise": sigma})
    return cases


def evaluate(net: torch.nn.Module, cases: list[dict], device: torch.device, crops: int = 32) -> dict[str, float]:
    """Mean kernel L1 per scale on the validation cases (estimate: Gaussian of the predicted covariance)."""
    net.eval()
    errs: dict[int, list[float]] = {2: [], 4: []}
    for c in cases:
        gray = luminance(c["lr"][None, None].astype(np.float32))
        pred = predict_log_covariance(net, pick_crops(gray, crops, seed=0), c["scale"], device=device)
        k2 = gaussian_from_covariance(pred.covariance, 13)
        est = k2 if c["scale"] == 2 else analytic_x4(k2)
        errs[c["scale"]].append(kernel_l1(est, c["truth"]))
    net.train()
    return {f"x{s}": float(np.mean(v)) for s, v in errs.items()}


# ------------------------------------------------------------------------------------------ training


def save(path: Path, net: torch.nn.Module, meta: dict) -> None:
    """Write the float16 state dict and ``meta`` atomically (temporary file, then rename)."""
    state = {k: v.detach().cpu().half() for k, v in net.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save({"format": FORMAT, "state_dict": state, "meta": meta}, tmp)
    os.replace(tmp, path)


def beta_nll(mu: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """β-NLL (Seitzer et al. 2022): the Gaussian NLL weighted by stop-grad(variance^β)."""
    nll = 0.5 * ((target - mu) ** 2 * torch.exp(-logvar) + logvar)
    return (nll * torch.exp(beta * logvar).detach()).mean()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget for the training loop")
    p.add_argument("--steps", type=int, default=None, help="number of steps (default: as many as --minutes allows)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "src/napari_kernelgan/estimators/learned_weights.pt")
    p.add_argument("--val", type=int, default=0, help="print the validation L1 every N steps (0: only at the end)")
    p.add_argument("--batch", type=int, default=None, help="default: 48 on the CPU, 512 on a GPU")
    p.add_argument("--arch", default="spectral", choices=("spectral", "cnn"),
                   help="spectral: fixed log-power-spectrum bands + MLP (learns fast); cnn: CovarianceNet")
    p.add_argument("--width", type=int, default=32, help="CNN width")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=2, help="CPU threads (CPU training)")
    p.add_argument("--kernels", type=int, default=None, help="kernel pool size (default 4000 CPU / 30000 GPU)")
    p.add_argument("--init", type=Path, default=None, help="start from this weight file")
    args = p.parse_args(argv)
    if args.minutes is None and args.steps is None:
        p.error("give --minutes or --steps")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: PyTorch sees no CUDA GPU here")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    if device.type == "cpu":
        torch.set_num_threads(max(1, args.threads))
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    gpu = device.type == "cuda"
    batch = args.batch or (512 if gpu else 48)
    t0 = time.perf_counter()
    pool = kernel_pool(args.kernels or (30000 if gpu else 4000), args.seed, device)
    images, names = hr_bank(48 if gpu else 24, 16 if gpu else 8, device)
    cases = validation_set()
    print(f"set-up {time.perf_counter() - t0:.0f} s; phase check vs physics.degrade: "
          f"{check_phase(args.seed):.2e}", flush=True)
    synth = Synth(images, pool, device, args.seed)
    net = (SpectralNet(CROP, hidden=args.hidden) if args.arch == "spectral"
           else CovarianceNet(args.width, args.hidden)).to(device)
    init_meta = None
    if args.init is not None:
        obj = torch.load(args.init, map_location="cpu", weights_only=True)
        net.load_state_dict({k: v.float() for k, v in obj["state_dict"].items()})
        prior = obj.get("meta", {})
        init_meta = {"file": args.init.name, "steps": prior.get("steps"), "command": prior.get("command"),
                     "seconds": prior.get("seconds"), "init": prior.get("init")}
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    budget = None if args.minutes is None else args.minutes * 60
    start = time.perf_counter()
    step, history, smooth = 0, [], None

    def progress() -> float:
        parts = []
        if args.steps:
            parts.append(step / args.steps)
        if budget:
            parts.append((time.perf_counter() - start) / budget)
        return max(parts)

    while progress() < 1:
        frac = progress()
        lr = args.lr * (min(1.0, frac / 0.03) if frac < 0.03 else 0.5 * (1 + math.cos(math.pi * frac)))
        for group in opt.param_groups:
            group["lr"] = max(lr, 1e-6)
        with torch.no_grad():
            x, scale, target = synth.batch(batch)
            x, extras = normalise_crops(x, scale)
        mu, logvar = net(x, extras)
        loss = beta_nll(mu, logvar, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        step += 1
        mse = float(((mu.detach() - target) ** 2).mean())
        smooth = mse if smooth is None else 0.98 * smooth + 0.02 * mse
        if step % 50 == 0:
            print(f"step {step}  {time.perf_counter() - start:.0f} s  lr {lr:.2e}  loss {float(loss.detach()):.4f}  "
                  f"mse(log Σ) {smooth:.4f}", flush=True)
        if args.val and step % args.val == 0:
            val = evaluate(net, cases, device)
            history.append({"step": step, **val})
            print(f"  validation L1  ×2 {val['x2']:.3f}  ×4 {val['x4']:.3f}", flush=True)
    val = evaluate(net, cases, device)
    history.append({"step": step, **val})
    elapsed = time.perf_counter() - start
    print(f"done: {step} steps in {elapsed:.0f} s; validation L1 ×2 {val['x2']:.3f}  ×4 {val['x4']:.3f}", flush=True)
    meta = {
        "arch": ({"name": "SpectralNet", "radial": net.radial, "angular": net.angular, "hidden": args.hidden,
                  "crop": CROP} if args.arch == "spectral"
                 else {"name": "CovarianceNet", "width": args.width, "hidden": args.hidden, "crop": CROP}),
        "target": "logm of second_moments(k2), HR px², (L00, L01, L11); row/col order",
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "steps": step, "batch": batch, "seconds": round(elapsed, 1), "device": str(device),
        "torch": str(torch.__version__), "seed": args.seed,
        "kernels": f"DIV2KRK protocol, lambda in {LAMBDA_RANGE} px^2, tap noise {KERNEL_NOISE}",
        "data": names, "validation": history, "init": init_meta,
    }
    save(args.out, net, meta)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
