"""What axial SR's ``auto`` runs where the PSF carries a physical model: the model's 3-D PSF (or an NA
neighbour), chosen on the stack's central block, or the network where no 3-D PSF passes its limits or, with a
confocal model, where the network predicts held-out planes of the block better by a fitted margin."""
from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import numpy as np

from ..types import Progress, pulse
from ..vocabulary import Stage
from . import _netcheck, _zsafety, zdeconv
from ._zops import NoiseModel
from .psf import AxialPSF

__all__ = ["iter_choose_model_psf3d", "candidate_faults", "CHOSE_PSF3D"]

# How the note saying the 3-D PSF was preferred to the network begins (dropped where the 3-D path then fails).
CHOSE_PSF3D = "The PSF model's 3-D PSF super-resolved the stack rather than the network"


def candidate_faults(c: Any, held_min_db: float, below_max: float) -> str:
    """Why a 3-D PSF candidate was refused, in the user's terms (``"passed"`` where it was not)."""
    faults = []
    if not c.held_db >= held_min_db:
        faults.append(f"held-out planes predicted {-c.held_db:.2f} dB worse than by cubic interpolation")
    if not c.below <= below_max:
        faults.append(f"its result dips below the background by {c.below:.2f}× the stack's contrast")
    return " and ".join(faults) or "passed"


def _drive(gen: Generator[Any, None, Any], t0: float, message: str) -> Generator[Progress, None, Any]:
    """Run a generator of bare yields, reporting one progress line per yield; returns its value."""
    return pulse(gen, lambda: Progress(20, 1000, time.perf_counter() - t0, stage=Stage.PREPARE, message=message))


def iter_choose_model_psf3d(stack: Any, psf: AxialPSF, probe: list[np.ndarray], noise: NoiseModel, factor: int,
                            threads: int | None, result: Any, t0: float, *, scales: tuple[float, ...],
                            held_min_db: float, below_max: float, prefer_db: float,
                            network_margin_db: float | None, seed: int = 0, device: Any = None,
                            ) -> Generator[Progress, None, tuple[np.ndarray, float, float] | None]:
    """``auto`` with a physical model: the model's 3-D PSF or an NA neighbour, whichever predicts held-out planes
    of the central block best within the limits (``scales``, ``held_min_db``, ``below_max``, ``prefer_db``);
    ``None`` (the network runs) where none passes. With a confocal model and ``network_margin_db`` set, the
    network's held-out z check (:mod:`~napari_kernelgan.axial._netcheck`) runs too and the network is taken
    where it predicts the held-out planes better than the chosen 3-D PSF by more than that margin. What was
    chosen and why goes to ``result.notes`` and ``result.validation``."""
    fine = psf.z_step_um / factor
    val = result.validation
    if int(stack.shape[0]) < 5:
        result.notes.append(f"The PSF model's 3-D PSF was not used: {stack.shape[0]} planes are too few to check it "
                            f"(odd planes predicted from the even ones need 5 or more); the network (smore) "
                            f"super-resolved the stack instead.")
        return None
    wiener = zdeconv.noise_lambda(probe[len(probe) // 2], noise, psf.pixel_um, fine)
    best, tried = yield from _drive(
        _zsafety.iter_choose_psf3d(stack, psf, factor, wiener, scales=scales, held_min_db=held_min_db,
                                   below_max=below_max, prefer_db=prefer_db, workers=threads),
        t0, "choosing the 3-D PSF")
    val["auto_candidates"] = [c.summary() for c in tried]
    model = psf.model
    na = model.na  # type: ignore[union-attr]
    if best is None:
        why = "; ".join(f"NA {_zsafety.scaled_na(model, c.scale).na:.3g}: " + candidate_faults(c, held_min_db,
                                                                                                  below_max)
                        for c in tried) or "no 3-D PSF could be made from the model"
        result.notes.append(f"The PSF model's 3-D PSF was not used ({why}); the network (smore) super-resolved "
                            f"the stack instead.")
        return None
    if model.modality == "confocal" and network_margin_db is not None:  # type: ignore[union-attr]
        check = yield from _drive(_netcheck.iter_net_held_out(stack, psf, factor, noise, seed=seed, device=device),
                                  t0, "checking the network on held-out planes")
        val["auto_held_db"] = {"psf3d": best.held_db, "network": check.held_db}
        if check.held_db > best.held_db + network_margin_db:
            result.notes.append(f"The network (smore) super-resolved the stack rather than the PSF model's 3-D PSF: "
                                f"it predicts held-out planes of the stack better ({check.held_db:+.2f} dB over "
                                f"cubic interpolation against {best.held_db:+.2f} dB).")
            return None
        result.notes.append(f"{CHOSE_PSF3D}: the network does not predict held-out planes of the stack clearly "
                            f"better ({check.held_db:+.2f} dB over cubic interpolation against the 3-D PSF's "
                            f"{best.held_db:+.2f} dB).")
    val["psf3d_na_scale"] = best.scale
    if best.scale != 1.0:
        chosen = _zsafety.scaled_na(model, best.scale).na
        result.notes.append(f"The 3-D PSF was computed for NA {chosen:.3g} rather than the PSF model's {na:.3g}: "
                            f"it predicts held-out planes of the stack best ({best.held_db:+.2f} dB over cubic "
                            f"interpolation).")
    return best.kernel, psf.pixel_um, fine
