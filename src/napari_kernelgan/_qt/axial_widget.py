"""*Axial PSF and isotropic voxels*: a z-stack layer's 3-D PSF estimated from the stack itself, and its voxels
made isotropic by axial SR. Thin: the form's values go to :mod:`napari_kernelgan.axial` in the task runner's
worker, the results come back as layers (:mod:`napari_kernelgan.layers.axial`); the user's layer is only read.
"""
from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Label, LineEdit, PushButton

from ..batch.axial import OPTICS_FOR_PSF, cast_like
from ..batch.config import AXIAL_METHODS, DEFAULT_AXIAL_METHOD
from ..errors import BadOptionError
from ..layers import image_data
from ..layers.axial import add_axial_psf_layers, add_isotropic_layer
from ..optics_hints import optics_hints
from ..stacks import length_um
from ..types import Progress, relay
from ..vocabulary import Stage
from .models import RunRecord, RunState, format_seconds, parse_threads, slice_in_view
from .task_widget import TaskWidget

__all__ = ["AxialWidget", "psf_readout", "layer_sampling"]

_METHOD_TIPS = {"auto": "the full 3-D PSF of a widefield optics model where the PSF has one, else smore",
                "smore": "a network trained on the stack's own lateral detail, degraded with the estimated axial blur",
                "deconvolve": "closed-form / Richardson-Lucy deconvolution with the 3-D PSF",
                "cubic": "cubic interpolation in z (the baseline)"}


def psf_readout(psf: Any) -> str:
    """The widget's readout of a 3-D PSF: FWHM x / y / z in µm, confidence and method, then its notes."""
    fy, fx = psf.lateral_fwhm_um
    text = (f"FWHM x {fx:.3g} µm, y {fy:.3g} µm, z {psf.axial_fwhm_um:.3g} µm; confidence {psf.confidence:.2f} "
            f"({psf.method})")
    return "\n".join([text, *psf.notes])


def _layer_um(layer: Any, axis: int) -> float | None:
    """The layer's step along ``axis`` in µm where its unit is a length, else ``None``."""
    units = getattr(layer, "units", None)
    if not units:
        return None
    unit = str(units[axis])
    return None if unit in ("pixel", "") else length_um(float(np.asarray(layer.scale, dtype=float)[axis]), unit)


def layer_sampling(layer: Any) -> tuple[float | None, float | None]:
    """The pixel size and z step of a layer in µm: its metadata's optics, else its scale in a length unit."""
    hints = optics_hints(getattr(layer, "metadata", None) or {})
    return hints.get("pixel_um") or _layer_um(layer, -1), _layer_um(layer, -3)


@dataclass
class _Run:
    """What the running job needs to put its results in place."""

    layer: Any
    lead: tuple[int, ...]
    key: tuple[Any, ...]
    isotropic: bool


class AxialWidget(TaskWidget):
    """The 3-D PSF and isotropic voxels of a z-stack layer (see the module docstring)."""

    run_text = "Make isotropic"

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.optics = self.add_optics("the layer's metadata and scale")
        self.optics.set_declared((*OPTICS_FOR_PSF, "pixel_um"), "the 3-D PSF")
        self.z_step = LineEdit(label="Z step (µm)", value="")
        self.z_step.native.setPlaceholderText("unknown")
        self.z_step.tooltip = "The distance between the stack's planes in µm (the layer's z scale where it is in µm)."
        factors = [("auto (isotropic)", 0), *((f"×{f}", f) for f in range(1, 9))]
        self.z_factor = ComboBox(label="Z factor", choices=factors, value=0)
        self.z_factor.tooltip = "Planes made per z step; auto: z step / pixel size, rounded."
        self.method = ComboBox(label="SR method", choices=list(AXIAL_METHODS), value=DEFAULT_AXIAL_METHOD)
        self.method.tooltip = "\n".join(f"{k}: {v}" for k, v in _METHOD_TIPS.items())
        self.estimate_button = PushButton(text="Estimate 3-D PSF")
        self.readout = Label(value="")
        self.readout.native.setWordWrap(True)
        self.form.extend([self.image, self.z_step, self.z_factor, self.method, self.device, self.seed,
                          self.estimate_button])
        self.advanced.append(self.threads)
        self.body.insertWidget(self.body.count() - 1, self.readout.native)
        self.psf: Any = None  # the last PSF estimated, and what it was estimated from
        self._psf_key: tuple[Any, ...] | None = None
        self._run: _Run | None = None
        self._sampled_layer: Any = None
        self.estimate_button.changed.connect(self.run_estimate)
        self.z_step.changed.connect(self._update_buttons)
        self._follow_active(self.image)
        self._image_changed()

    # ------------------------------------------------------------------ form

    def _image_changed(self, *_: Any) -> None:
        super()._image_changed()
        layer = self.image.value
        if layer is not None and layer != self._sampled_layer and getattr(self, "optics", None) is not None:
            self._sampled_layer = layer
            pixel, z_step = layer_sampling(layer) if self._stack_problem(layer) == "" else (None, None)
            hints = dict(optics_hints(getattr(layer, "metadata", None) or {}))
            hints["pixel_um"] = pixel
            self.optics.fill(hints)
            self.z_step.value = "" if z_step is None else f"{z_step:.6g}"

    @staticmethod
    def _stack_problem(layer: Any) -> str:
        """Why ``layer`` cannot be used (a 2-D or RGB image), or ``''``."""
        if layer is None:
            return ""
        data = image_data(layer)
        nd = data.ndim - (1 if getattr(layer, "rgb", False) else 0)
        if getattr(layer, "rgb", False) or nd < 3:
            kind = "an RGB image" if getattr(layer, "rgb", False) else "a 2-D image"
            return (f"{layer.name} is {kind}: the axial tools need a z-stack, a 3-D layer (z, y, x) of one "
                    "channel. Open a stack, or choose a 3-D layer.")
        if data.shape[-3] < 3:
            return f"{layer.name} has {data.shape[-3]} z planes; the axial tools need at least 3."
        return ""

    def blocked_reason(self) -> str:
        return self._stack_problem(self.image.value) or super().blocked_reason()

    def _update_buttons(self, *_: Any) -> None:
        super()._update_buttons()
        problem = self._stack_problem(self.image.value) if getattr(self, "z_step", None) is not None else ""
        if problem:
            self.blocked.value = problem
            self.run_button.tooltip = problem
        if getattr(self, "estimate_button", None) is not None:
            self.estimate_button.enabled = self.run_button.enabled
            self.estimate_button.tooltip = self.run_button.tooltip

    def sampling(self) -> tuple[float, float]:
        """The pixel size and z step of the form in µm; refused, with what to give, where one is missing or the
        z step is not above the pixel size."""
        optics = self.optics.values()
        pixel = optics.get("pixel_um")
        if pixel is None:
            raise BadOptionError("the pixel size is unknown: type it in Optics (µm)")
        text = str(self.z_step.value).strip()
        if not text:
            raise BadOptionError("the z step is unknown: type the distance between the planes in µm in Z step")
        try:
            z_step = float(text)
        except ValueError:
            raise BadOptionError(f"Z step must be a number of µm, not {text!r}") from None
        if not np.isfinite(z_step) or z_step <= 0:
            raise BadOptionError(f"Z step must be a distance in µm above 0, not {text}")
        if z_step <= pixel * (1 + 1e-6):
            raise BadOptionError(f"the z step ({z_step:g} µm) is not larger than the pixel size ({pixel:g} µm): the "
                                 "voxels are already isotropic or finer in z")
        return float(pixel), z_step

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """*Make isotropic*: axial SR of the chosen stack (its PSF estimated first unless already done)."""
        self._begin(isotropic=True)

    def run_estimate(self) -> None:
        """*Estimate 3-D PSF* of the chosen stack."""
        self._begin(isotropic=False)

    def _begin(self, isotropic: bool) -> None:
        chosen = self.chosen_input()
        if chosen is None or self.running:
            return
        layer = chosen[0]
        what = "Isotropic voxels" if isotropic else "3-D PSF"
        description = f"{what} of {layer.name}"
        problem = self._stack_problem(layer)
        if problem:
            self.say(problem)
            return
        try:
            pixel, z_step = self.sampling()
            optics = {k: v for k, v in self.optics.values().items() if k in OPTICS_FOR_PSF}
            threads = parse_threads(self.threads.value)
        except BadOptionError as exc:
            self.fail(exc, description)
            return
        lead = tuple(slice_in_view(self.viewer, layer))[: image_data(layer).ndim - 3]
        run = {"device": self.device.value, "seed": int(self.seed.value), "threads": threads}
        key = (layer.name, id(layer), lead, pixel, z_step, tuple(sorted(optics.items())), run["seed"])
        psf = self.psf if key == self._psf_key else None
        factor = int(self.z_factor.value) or None
        method = str(self.method.value)

        def job() -> Generator[Progress, None, Any]:
            from ..axial.estimate import iter_estimate_psf3d
            from ..axial.isotropic import iter_super_resolve_axial

            start = time.perf_counter()
            yield Progress(0, 100, 0.0, stage=Stage.PREPARE, message="reading the stack")
            data = image_data(layer)
            stack = np.asarray(data[lead] if lead else data)
            found = psf
            est_span = 0 if found is not None else (30 if isotropic else 100)
            if found is None:
                found = yield from relay(iter_estimate_psf3d(stack, pixel_um=pixel, z_step_um=z_step,
                                                             optics=optics or None, **run),
                                         offset=0, span=est_span, total=100, start=start)
            result = volume = None
            if isotropic:
                result = yield from relay(iter_super_resolve_axial(stack, found, z_factor=factor, sr_method=method,
                                                                   **run),
                                          offset=est_span, span=100 - est_span, total=100, start=start)
                # In the input's dtype, as the command line writes it (and the 2-D SR layer is).
                span = None if np.issubdtype(stack.dtype, np.integer) else (float(stack.min()), float(stack.max()))
                volume = cast_like(np.asarray(result.volume), stack.dtype, span)
            return found, result, volume

        self._run = _Run(layer, lead, key, isotropic)
        self.start(job, description)

    def on_finished(self, record: RunRecord) -> str:
        run, self._run = self._run, None
        if run is None or record.state != RunState.DONE:
            return ""
        if run.layer not in self.viewer.layers:
            return f"{record.description}: the input layer was removed; result discarded."
        psf, result, volume = record.value
        if run.key != self._psf_key or psf is not self.psf:
            self.psf, self._psf_key = psf, run.key
            add_axial_psf_layers(self.viewer, run.layer, psf)
        self.readout.value = f"3-D PSF of {run.layer.name}: {psf_readout(psf)}"
        text = f"{record.description}: done in {format_seconds(record.elapsed())}"
        if result is None:
            return text + "."
        add_isotropic_layer(self.viewer, run.layer, volume, result.factor, result.sr_method,
                            lead_index=run.lead, metadata={"z_step_um": float(result.z_step_um),
                                                           "warnings": list(result.warnings),
                                                           "fell_back": bool(result.fell_back)})
        text += f"; ×{result.factor} in z ({result.sr_method}), z step {result.z_step_um:.4g} µm"
        text += "".join(f"; {n.rstrip('.')}" for n in result.notes)
        if result.warnings:
            self.warn_status()
            text += "; WARNING: " + "; ".join(w.rstrip(".") for w in result.warnings)
        return text + "."
