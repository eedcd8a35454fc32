"""Meta-train the initialisation of the ``meta`` estimator (MetaKernelGAN) with first-order MAML.

Each task is one training image degraded ×2 by a random kernel of the DIV2KRK distribution
(:func:`napari_kernelgan.physics.kernels.random_div2krk_kernel`) through
:class:`napari_kernelgan.physics.Degradation`, then quantised to 8 bits. The inner loop adapts a
copy of G and D for ``--inner-steps`` SGD steps with the estimator's own GAN objective (L1 LSGAN +
0.5·sum-to-one; G at 0.01, D at 0.2), on the whole 96×96 LR task image, D judging 32×32 crops. Every 5
inner steps the outer loss is evaluated on the adapted copies, as in the reference:

* G: L1 between the collapsed kernel and the true kernel moved to the collapsed kernel's centre of
  mass (the estimator re-centres, so only the shape is scored) + G's GAN and sum-to-one terms;
* D: its LSGAN loss with the true ×2-downscaled task image as "real";

weighted across the five evaluations by the MZSR schedule (uniform at first, shifting onto the last
step). First-order MAML: the gradients of that loss with respect to the *adapted* parameters are
accumulated on the initial parameters, and Adam applies them.

Training images — never DIV2KRK (the benchmark is only ever used to report):

* scikit-image's bundled images released into the public domain or under CC0 (licences as stated in
  ``skimage.data``'s docstrings): see :data:`SKIMAGE_IMAGES`;
* procedural dead-leaves images (natural-image statistics) from :func:`napari_kernelgan.synthetic.dead_leaves`;
* synthetic fluorescence scenes from :func:`napari_kernelgan.synthetic.microscopy_scene`.

Validation: a fixed set of held-out synthetic tasks (other seeds); every ``--val-every`` meta-steps
the kernel L1 (:func:`napari_kernelgan.physics.metrics.kernel_l1`, stored convention) after the inner
loop is printed beside the fixed Gaussian's.

Examples::

    # a few minutes on a CPU (what the bundled init was made with; see its metadata)
    python scripts/train_meta.py --device cpu --meta-steps 400 --time-limit 300
    # the full run on a GPU
    python scripts/train_meta.py --device cuda --meta-steps 50000 --tasks-per-step 4 --meta-lr 1e-4
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_kernelgan.estimators._meta_nets import RAW_KERNEL_SIZE, MetaD, MetaG  # noqa: E402
from napari_kernelgan.estimators.meta import (  # noqa: E402
    BUNDLED_INIT,
    discriminator_loss,
    generator_loss,
    load_meta_networks,
    random_networks,
    save_meta_init,
    to_project_convention,
)
from napari_kernelgan.physics.conventions import centre_of_mass, pad_to, shift_kernel  # noqa: E402
from napari_kernelgan.physics.kernels import constant_gaussian, random_div2krk_kernel  # noqa: E402
from napari_kernelgan.physics.metrics import kernel_l1  # noqa: E402
from napari_kernelgan.physics.operators import Degradation  # noqa: E402

SKIMAGE_IMAGES = {
    # name: licence, as stated in skimage.data's docstrings (scikit-image 0.26)
    "camera": "CC0 (Lav Varshney)",
    "astronaut": "public domain (NASA)",
    "brick": "CC0 (CC0Textures)",
    "grass": "CC0 (CC0Textures)",
    "gravel": "CC0 (CC0Textures)",
    "cell": "CC0",
    "microaneurysms": "CC0 (Andreas Maier)",
    "clock": "public domain (Stefan van der Walt)",
    "chelsea": "CC0 (Stefan van der Walt)",
    "coffee": "CC0 (Rachel Michetti)",
    "hubble_deep_field": "public domain (NASA)",
    "retina": "CC0 1.0",
    "rocket": "public domain (SpaceX)",
}
OFFICIAL_NOTICE = ("fine-tuned from the MetaKernelGAN checkpoint of https://github.com/royson/metakernelgan. "
                   "MIT License. Copyright (c) 2024 Royson Lee. Permission is hereby granted, free of charge, to "
                   "any person obtaining a copy of this software and associated documentation files (the "
                   "\"Software\"), to deal in the Software without restriction, including without limitation the "
                   "rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies of the "
                   "Software, and to permit persons to whom the Software is furnished to do so, subject to the "
                   "following conditions: The above copyright notice and this permission notice shall be included "
                   "in all copies or substantial portions of the Software. THE SOFTWARE IS PROVIDED \"AS IS\", "
                   "WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF "
                   "MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE "
                   "AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN "
                   "ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE "
                   "OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.")
HR_CROP = 192          # the reference's training patch; LR task image 96×96, its ×2 son 48×48
D_CROP = 32
VALIDATE_AT = (5, 10, 15, 20, 25)


# ----------------------------------------------------------------------------------------- data

def load_skimage_images(min_side: int) -> dict[str, np.ndarray]:
    """The listed scikit-image images as float (H, W, 3) in [0, 1], those at least ``min_side`` on each side."""
    from skimage import data

    out = {}
    for name in SKIMAGE_IMAGES:
        try:
            img = np.asarray(getattr(data, name)(), dtype=np.float64)
        except Exception as exc:  # an image the installed version does not bundle is skipped, said so
            print(f"skipping skimage image {name}: {exc}", flush=True)
            continue
        if img.max() > 1:
            img = img / 255.0
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = img[..., :3]
        if min(img.shape[:2]) >= min_side:
            out[name] = img
    return out


class TaskSampler:
    """Draws HR training crops (3, 192, 192): half scikit-image, a quarter dead leaves, a quarter microscopy."""

    def __init__(self, rng: np.random.Generator, images: dict[str, np.ndarray], seed_offset: int = 0) -> None:
        from napari_kernelgan import synthetic

        self.synthetic = synthetic
        self.rng = rng
        self.images = list(images.items())
        self.seed_offset = seed_offset
        self.counter = 0

    def hr(self) -> tuple[np.ndarray, str]:
        self.counter += 1
        u = self.rng.random()
        s = HR_CROP
        if self.images and u < 0.5:
            name, img = self.images[self.rng.integers(len(self.images))]
            r = self.rng.integers(img.shape[0] - s + 1)
            c = self.rng.integers(img.shape[1] - s + 1)
            crop = img[r:r + s, c:c + s]
            src = f"skimage:{name}"
        elif u < 0.75:
            gray = self.synthetic.dead_leaves((s, s), seed=int(self.rng.integers(2 ** 31)) + self.seed_offset)
            crop = np.repeat(gray[..., None], 3, axis=2)
            src = "dead_leaves"
        else:
            gray = self.synthetic.microscopy_scene((s, s), seed=int(self.rng.integers(2 ** 31)) + self.seed_offset)
            # Fluorescence is dim and sparse; a gamma keeps its faint structure visible to D.
            crop = np.repeat(np.sqrt(gray)[..., None], 3, axis=2)
            src = "microscopy"
        crop = np.rot90(crop, int(self.rng.integers(4)))
        if self.rng.random() < 0.5:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(crop.transpose(2, 0, 1)), src


def make_task(sampler: TaskSampler, device: torch.device) -> dict:
    """One task: LR image ``dad`` (1, 3, 96, 96), its true son (1, 3, 48, 48), the stored kernel."""
    hr, src = sampler.hr()
    k = random_div2krk_kernel(sampler.rng)
    op = Degradation(k, 2, "reflect")
    hr_t = torch.from_numpy(hr).float()[None]
    dad = torch.round(op.A(hr_t).clamp(0, 1) * 255) / 255
    son = torch.round(op.A(dad).clamp(0, 1) * 255) / 255
    return {"dad": dad.to(device), "son": son.to(device), "kernel": k, "source": src}


# ----------------------------------------------------------------------------------------- MAML

def clone(g: MetaG, d: MetaD, device: torch.device) -> tuple[MetaG, MetaD]:
    # Spectral norm's hooks keep non-leaf tensors that deepcopy refuses; a fresh module and a state copy work.
    g2, d2 = MetaG().to(device), MetaD().to(device)
    g2.load_state_dict(g.state_dict())
    d2.load_state_dict(d.state_dict())
    return g2.train(), d2.train()


def random_crop_coords(rng: np.random.Generator, size: int, crop: int) -> tuple[int, int]:
    return int(rng.integers(size - crop + 1)), int(rng.integers(size - crop + 1))


def mzsr_weights(step: int, n: int, anneal_steps: float) -> torch.Tensor:
    """MZSR's loss weights over ``n`` evaluations: uniform at first, moving onto the last one."""
    w = np.full(n, 1.0 / n)
    rate = 1.0 / n / anneal_steps
    floor = 0.03 / n
    w[:-1] = np.maximum(w[:-1] - step * rate, floor)
    w[-1] = min(w[-1] + step * (n - 1) * rate, 1.0 - (n - 1) * floor)
    return torch.as_tensor(w, dtype=torch.float32)


def inner_step(g: MetaG, d: MetaD, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, dad: torch.Tensor,
               rng: np.random.Generator, noise_gen: torch.Generator, w_sum2one: float = 0.5) -> None:
    """One adaptation step on a task: G, then D (real = the LR image's crop at the matching place)."""
    son_size = dad.shape[-1] // 2
    h, w = random_crop_coords(rng, son_size, D_CROP)
    opt_g.zero_grad(set_to_none=True)
    k = g.kernel()
    son = g(dad, k)
    generator_loss(d, son[..., h:h + D_CROP, w:w + D_CROP], k, w_sum2one).backward()
    opt_g.step()
    with torch.no_grad():
        fake = g(dad)[..., h:h + D_CROP, w:w + D_CROP]
    real = dad[..., 2 * h:2 * h + D_CROP, 2 * w:2 * w + D_CROP]
    opt_d.zero_grad(set_to_none=True)
    discriminator_loss(d, real, fake, 1 / 255, noise_gen).backward()
    opt_d.step()


def outer_losses(g: MetaG, d: MetaD, task: dict, rng: np.random.Generator, noise_gen: torch.Generator,
                 kernel_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(G's outer loss, D's outer loss, kernel L1) on the adapted copies."""
    k = g.kernel()
    son = g(task["dad"], k)
    h, w = random_crop_coords(rng, son.shape[-1], D_CROP)
    fake = son[..., h:h + D_CROP, w:w + D_CROP]
    k_l1 = (k - target_at(k, task["kernel"])).abs().sum()
    g_loss = generator_loss(d, fake, k, 0.5) + kernel_weight * k_l1
    real = task["son"][..., h:h + D_CROP, w:w + D_CROP]
    d_loss = discriminator_loss(d, real, fake.detach(), 1 / 255, noise_gen)
    return g_loss, d_loss, float(k_l1.detach())


def target_at(k: torch.Tensor, truth: np.ndarray) -> torch.Tensor:
    """The true kernel moved to the centre of mass of G's kernel ``k`` (11×11).

    The GAN cannot see where G's kernel sits and the estimator re-centres it
    (:func:`~napari_kernelgan.estimators.meta.to_project_convention`), so the meta-objective scores its shape
    only: the same L1 for any phase, and an init in either FKP's or this project's phase trains alike.
    """
    raw = np.clip(k.detach().double().cpu().numpy(), 0, None)
    com = centre_of_mass(raw) if raw.sum() > 0 else np.array([5.5, 5.5])
    big = pad_to(truth, RAW_KERNEL_SIZE + 6)
    moved = pad_to(np.clip(shift_kernel(big, com + 3 - centre_of_mass(big)), 0, None), RAW_KERNEL_SIZE)
    return torch.as_tensor(moved / moved.sum(), dtype=k.dtype, device=k.device)


def adapt_task(g0: MetaG, d0: MetaD, task: dict, steps: int, rng: np.random.Generator, noise_gen: torch.Generator,
               device: torch.device, weights: torch.Tensor | None = None) -> tuple[MetaG, MetaD, list[float]]:
    """Adapt copies of G and D on ``task``; with ``weights``, accumulate first-order meta-gradients on g0 / d0."""
    g, d = clone(g0, d0, device)
    opt_g = torch.optim.SGD(g.parameters(), lr=0.01)
    opt_d = torch.optim.SGD(d.parameters(), lr=0.2)
    k_l1s = []
    for step in range(1, steps + 1):
        inner_step(g, d, opt_g, opt_d, task["dad"], rng, noise_gen)
        if weights is not None and step in VALIDATE_AT:
            wi = weights[VALIDATE_AT.index(step)]
            g_loss, d_loss, k_l1 = outer_losses(g, d, task, rng, noise_gen)
            g_grads = torch.autograd.grad(wi * g_loss, list(g.parameters()))
            d_grads = torch.autograd.grad(wi * d_loss, list(d.parameters()))
            for p0, gr in zip(list(g0.parameters()) + list(d0.parameters()), g_grads + d_grads):
                p0.grad = gr.detach().clone() if p0.grad is None else p0.grad + gr.detach()
            k_l1s.append(k_l1)
    return g, d, k_l1s


def prefit_g(g: MetaG, target: np.ndarray, steps: int, device: torch.device) -> None:
    """Move a freshly initialised G onto ``target`` (its applied phase) in kernel space, so meta-training
    starts from a plausible kernel instead of KernelGAN's near-zero random one."""
    t = torch.as_tensor(target, dtype=torch.float32, device=device)
    opt = torch.optim.Adam(g.parameters(), lr=1e-3)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        ((g.kernel() - t) ** 2).sum().backward()
        opt.step()


def validate(g0: MetaG, d0: MetaD, tasks: list[dict], steps: int, device: torch.device,
             seed: int) -> tuple[float, float]:
    """Mean kernel L1 (stored convention) of the adapted G over ``tasks``, and the fixed Gaussian's."""
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    errs, base = [], []
    for task in tasks:
        g, _, _ = adapt_task(g0, d0, task, steps, rng, gen, device)
        with torch.no_grad():
            errs.append(kernel_l1(to_project_convention(g.kernel()), task["kernel"]))
        base.append(kernel_l1(constant_gaussian(2), task["kernel"]))
    return float(np.mean(errs)), float(np.mean(base))


# ----------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    p.add_argument("--meta-steps", type=int, default=2000)
    p.add_argument("--tasks-per-step", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=BUNDLED_INIT)
    p.add_argument("--init", choices=("official", "random"), default="random",
                   help="official: start from the authors' checkpoint (found like the estimator's weights); "
                        "random: KernelGAN's initialisation, G prefitted to the mean training kernel")
    p.add_argument("--official-weights", default=None, help="path of metakernelgan_latest.pt (with --init official)")
    p.add_argument("--meta-lr", type=float, default=1e-4, help="Adam's learning rate on the initialisation")
    p.add_argument("--inner-steps", type=int, default=25)
    p.add_argument("--prefit-steps", type=int, default=500, help="with --init random (0: none)")
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--val-tasks", type=int, default=6)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--time-limit", type=float, default=0.0, help="stop (and save) after this many seconds; 0: none")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for PyTorch (the tensors are small: 1 is fastest)")
    args = p.parse_args(argv)
    if args.meta_steps < 1 or args.tasks_per_step < 1 or args.inner_steps < max(VALIDATE_AT):
        p.error(f"--meta-steps and --tasks-per-step must be positive and --inner-steps at least {max(VALIDATE_AT)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    command = "python scripts/train_meta.py " + " ".join(sys.argv[1:] if argv is None else argv)

    images = load_skimage_images(HR_CROP)
    print(f"training images: {len(images)} from scikit-image ({', '.join(images)}), dead leaves, microscopy",
          flush=True)
    rng = np.random.default_rng(args.seed)
    noise_gen = torch.Generator(device=device).manual_seed(args.seed + 1)
    sampler = TaskSampler(rng, images)
    # Held-out validation tasks: synthetic only (other seeds), so no training crop can reappear.
    val_sampler = TaskSampler(np.random.default_rng(args.seed + 10 ** 6), {}, seed_offset=10 ** 6)
    val_tasks = [make_task(val_sampler, device) for _ in range(args.val_tasks)]

    if args.init == "official":
        g0, d0, info = load_meta_networks(args.official_weights or "official", device)
        print(f"init: {info['weights_file']}", flush=True)
    else:
        g0, d0 = random_networks(args.seed, device)
        if args.prefit_steps:
            mean_k = np.mean([pad_to(np.asarray(Degradation(random_div2krk_kernel(
                np.random.default_rng(args.seed + 7 + i)), 2).kernel), RAW_KERNEL_SIZE) for i in range(200)], axis=0)
            prefit_g(g0, mean_k / mean_k.sum(), args.prefit_steps, device)
    g0.train()
    d0.train()
    params = list(g0.parameters()) + list(d0.parameters())
    opt = torch.optim.Adam(params, lr=args.meta_lr)
    anneal = min(10000 / 3, args.meta_steps / 3)

    def save(done: int, val: tuple[float, float] | None) -> None:
        meta = {"command": command, "meta_steps": done, "seed": args.seed, "init": args.init,
                "tasks_per_step": args.tasks_per_step, "meta_lr": args.meta_lr, "inner_steps": args.inner_steps,
                "data": {"skimage": {n: SKIMAGE_IMAGES[n] for n in images}, "synthetic": ["dead_leaves", "microscopy"]},
                "validation_kernel_l1": None if val is None else val[0],
                "validation_constant_gaussian_l1": None if val is None else val[1],
                "torch": str(torch.__version__), "device": args.device}
        if args.init == "official":
            meta["derived_from"] = OFFICIAL_NOTICE
        save_meta_init(args.out, g0, d0, meta)
        print(f"saved {args.out} after {done} meta-steps", flush=True)

    start = time.perf_counter()
    val = validate(g0, d0, val_tasks, args.inner_steps, device, args.seed + 99)
    print(f"step 0: held-out kernel L1 {val[0]:.4f} (fixed Gaussian {val[1]:.4f})", flush=True)
    recent: list[float] = []
    done = 0
    for step in range(args.meta_steps):
        opt.zero_grad(set_to_none=True)
        weights = mzsr_weights(step, len(VALIDATE_AT), anneal)
        last_g = last_d = None
        for _ in range(args.tasks_per_step):
            task = make_task(sampler, device)
            last_g, last_d, k_l1s = adapt_task(g0, d0, task, args.inner_steps, rng, noise_gen, device, weights)
            recent.append(k_l1s[-1])
        for p_ in params:
            if p_.grad is not None:
                p_.grad /= args.tasks_per_step
        opt.step()
        # Carry the adapted copies' spectral-norm vectors and BatchNorm statistics back to the init.
        with torch.no_grad():
            for mod0, mod in ((g0, last_g), (d0, last_d)):
                for b0, b in zip(mod0.buffers(), mod.buffers()):
                    b0.copy_(b)
        done = step + 1
        elapsed = time.perf_counter() - start
        if done % args.log_every == 0:
            print(f"step {done}: train kernel L1 (shape) {np.mean(recent):.4f}, "
                  f"{elapsed / done:.2f} s/step", flush=True)
            recent = []
        out_of_time = args.time_limit > 0 and elapsed > args.time_limit
        if done % args.val_every == 0 or done == args.meta_steps or out_of_time:
            val = validate(g0, d0, val_tasks, args.inner_steps, device, args.seed + 99)
            print(f"step {done}: held-out kernel L1 {val[0]:.4f} (fixed Gaussian {val[1]:.4f})", flush=True)
        if done % args.save_every == 0:
            save(done, val)
        if out_of_time:
            print(f"time limit reached after {done} meta-steps", flush=True)
            break
    save(done, val)
    return 0 if all(math.isfinite(p_.detach().float().sum().item()) for p_ in params) else 1


if __name__ == "__main__":
    raise SystemExit(main())
