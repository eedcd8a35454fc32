"""*Super-resolve*: kernel-aware super-resolution of an image layer with any registered SR method."""
from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Label

from .. import api
from ..errors import BadInputError, KernelGANError
from ..imaging import is_lazy, prepare_image
from ..layers import (
    add_sr_layer,
    field_from_layer,
    image_data,
    is_kernel_layer,
    layer_confidence,
    layer_kernels,
    layer_role,
    skipped_kernel,
)
from ..registry import SR_METHODS
from ..types import SRResult
from ..vocabulary import SR_SCALES, LayerRole
from .models import (
    LATEST,
    RunRecord,
    form_values,
    format_seconds,
    input_array,
    input_notes,
    kernel_is_estimate,
    kernels_for,
    latest_kernels,
    parse_threads,
    read_then,
    where_text,
)
from .task_widget import RunTarget, TaskWidget

__all__ = ["SuperResolveWidget", "KERNEL_X2", "SAFEGUARDS_TEXT"]

SAFEGUARDS_TEXT = "Safeguards (measure noise, check against bicubic)"

KERNEL_X2 = "kernel_x2"
"""Option of methods that run ×4 as two ×2 steps: the ×2 kernel behind the ×4 one (taken from the kernel source)."""


class SuperResolveWidget(TaskWidget):
    """Kernel-aware super-resolution of an image layer with a registered SR method."""

    run_text = "Super-resolve"
    whole_stack_text = "Whole stack (one kernel for all slices)"

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__(napari_viewer)
        self.kernel = ComboBox(label="Kernel", choices=self._kernel_choices, nullable=False)
        self.kernel.tooltip = ("The latest estimate for the image, or any kernel layer: estimates, true kernels, "
                               "kernel files, any small odd-sized non-negative 2-D image; or a kernel map of the "
                               "image (each region is then super-resolved with its own kernel).")
        self.skipped = Label(value="")
        self.skipped.native.setWordWrap(True)
        self.skipped.tooltip = ("Layers that look meant as kernels but cannot serve as one, and why. A kernel is a "
                                "2-D image with odd sides of 3 to 75 pixels, finite and non-negative.")
        self.method = self.method_chooser("Method", SR_METHODS, api.DEFAULT_SR_METHOD)
        self.scale = ComboBox(label="Scale", choices=[(f"×{s}", s) for s in SR_SCALES], value=2)
        self.safeguards = CheckBox(text=SAFEGUARDS_TEXT, value=True)
        self.safeguards.tooltip = ("On (the default) for every kernel, measured or estimated: the noise is measured "
                                   "from the image, photon-limited images get Richardson–Lucy steps and the result "
                                   "is checked against bicubic interpolation (bicubic is returned, with a warning, "
                                   "where SR would be worse). Off: the SR method alone, with the options as set.")
        self.form.extend([self.image, self.kernel, self.skipped, self.method, self.unavailable, self.scale,
                          self.options.main, self.safeguards, self.device, self.seed, self.whole_stack])
        self.advanced.append(self.threads)
        self._run: RunTarget | None = None
        self.method.changed.connect(self._method_changed)
        self.kernel.changed.connect(self._kernel_changed)
        self._follow_active(self.image)
        self._method_changed()
        self._image_changed()
        self._explain_skipped()

    def _layers_changed(self, event: Any = None) -> None:
        super()._layers_changed(event)
        self._explain_skipped()

    def skipped_kernels(self) -> list[str]:
        """Why each layer that looks meant as a kernel is not in the kernel list
        (``"layer 'psf' is not a kernel: even side 12"``)."""
        return [why for layer in reversed(self.viewer.layers) if (why := skipped_kernel(layer)) is not None]

    def _explain_skipped(self) -> None:
        skipped = self.skipped_kernels()
        self.skipped.value = "Not in the list: " + "; ".join(why.removeprefix("layer ") for why in skipped) \
            if skipped else ""
        self.skipped.visible = bool(skipped)

    def _kernel_choices(self, widget: Any = None) -> list[tuple[str, Any]]:
        kernels = [(layer.name, layer) for layer in reversed(self.viewer.layers)
                   if (is_kernel_layer(layer) and layer_role(layer) != LayerRole.KERNEL_PREVIEW)
                   or layer_role(layer) == LayerRole.KERNEL_MOSAIC]
        return [(LATEST, LATEST)] + kernels

    def _method_changed(self, *_: Any) -> None:
        spec = SR_METHODS.get(self.method.value) if self.method.value else None
        self.options.set_spec(spec)
        if spec is not None:
            scales = [s for s in SR_SCALES if s in spec.scales]
            current = self.scale.value
            self.scale.choices = [(f"×{s}", s) for s in scales]
            self.scale.value = current if current in scales else scales[0]

    def _kernel_changed(self, *_: Any) -> None:
        """Say how an estimated kernel will be used (the safeguards of ``super_resolve``)."""
        if layer_role(self.kernel.value) == LayerRole.KERNEL_MOSAIC:
            self.say("Kernel map: every region is super-resolved with its own kernel and the regions are "
                     "blended; the noise is measured once and each region is checked against bicubic.")
        elif kernel_is_estimate(self.kernel.value):
            self.say("Estimated kernel: the noise is measured from the image and the result is checked "
                     "against bicubic interpolation (options left at their defaults are chosen for you).")
        elif self.kernel.value is not None:
            self.say("Kernel layer (a measured PSF or a model): trusted fully, but with the safeguards on the noise "
                     "is still measured from the image and the result checked against bicubic interpolation.")

    def confidence_for(self, layer: Any) -> float | None:
        """The confidence of the estimated kernel chosen for ``layer`` (``None``: not recorded)."""
        source = self.kernel.value
        if source == LATEST or source is None:
            return layer_confidence(self.viewer, layer.name)
        value = source.metadata.get("confidence")
        return None if value is None else float(value)

    def kernels_for(self, layer: Any, scale: int) -> dict[int, np.ndarray]:
        """The kernel source's kernels for SR of ``layer`` at ``scale``: ``{scale: k}``, plus ``{2: k2}``
        when a ×4 kernel comes from a ×2 one."""
        source = self.kernel.value
        if source == LATEST or source is None:
            return latest_kernels(layer_kernels(self.viewer, layer.name), scale, layer.name)
        return kernels_for(source.data, source.metadata.get("scale"), scale, name=source.name)

    def image_problem(self, layer: Any, slice_index: tuple[int, ...] | None, whole: bool) -> BadInputError | None:
        """What the API would refuse in the input (NaN or infinite values, empty, too small, constant), for an
        image held in memory; ``None`` when it is fine or lazy (a lazy one is checked as it is read)."""
        if is_lazy(image_data(layer)):
            return None
        try:
            prepare_image(input_array(layer, slice_index, whole), rgb=bool(layer.rgb),
                          stack_axis=0 if whole else None, min_size=8)
        except BadInputError as exc:
            return exc
        return None

    def kernels_or_none(self, layer: Any, scale: int, slice_index: tuple[int, ...] | None, whole: bool,
                        uses_kernel: bool) -> dict[int, np.ndarray | None]:
        """:meth:`kernels_for`, except that a method that ignores the kernel (bicubic) runs without one
        (``None``), and that a missing or bad kernel is reported after what is wrong with the image."""
        try:
            return self.kernels_for(layer, scale)
        except KernelGANError:
            if not uses_kernel:
                return {scale: None, 2: None}
            problem = self.image_problem(layer, slice_index, whole)
            if problem is not None:
                raise problem from None
            raise

    def run(self) -> None:
        """Start super-resolution of the chosen layer with the form's options."""
        chosen = self.chosen_input()
        if chosen is None:
            return
        layer, slice_index, whole = chosen
        spec = self.options.spec
        if spec is None:
            self.say("No SR method is available.")
            return
        scale = int(self.scale.value)
        description = f"SR×{scale} of {layer.name}{where_text(slice_index, whole)} ({spec.name})"
        field = field_from_layer(self.kernel.value) if self.kernel.value not in (LATEST, None) else None
        try:
            threads = parse_threads(self.threads.value)
            options = self.options.values()
            kernels = {} if field is not None else self.kernels_or_none(layer, scale, slice_index, whole,
                                                                        spec.uses_kernel)
            if field is None and KERNEL_X2 in spec.defaults and options.get("gradual") and scale == 4:
                # ×4 as two ×2 steps needs the ×2 kernel behind the ×4 one.
                if 2 not in kernels:
                    raise KernelGANError("gradual ×4 needs a ×2 kernel: choose the latest estimate or a ×2 "
                                         "kernel layer")
                options[KERNEL_X2] = kernels[2]
        except KernelGANError as exc:
            self.fail(exc, description)
            return
        kernel = field if field is not None else kernels[scale]
        safe = bool(self.safeguards.value)
        if safe:
            # Options the user left at their defaults are the safeguards' to choose (the measured noise...).
            defaults = form_values(spec)
            options = {k: v for k, v in options.items() if k not in defaults or v != defaults[k]}
            if field is None and kernel_is_estimate(self.kernel.value):
                options.update(confidence=self.confidence_for(layer))
        if field is not None:
            description += " with its kernel map"
        if not safe:
            description += " without safeguards"
        kwargs = dict(options, sr_method=spec.name, safe=safe, device=self.device.value, seed=int(self.seed.value),
                      threads=threads, rgb=bool(layer.rgb), stack_axis=0 if whole else None)

        self._run = RunTarget(layer, slice_index)
        job = read_then(layer, slice_index, whole, lambda arr: api.iter_super_resolve(arr, kernel, scale, **kwargs))
        self.start(job, description, input_notes(layer))

    def on_finished(self, record: RunRecord) -> str:
        run = self.done_target(record)
        if not isinstance(run, RunTarget):
            return run
        result: SRResult = record.value
        add_sr_layer(self.viewer, run.layer, result, slice_index=run.slice_index)
        text = f"{record.description}: done in {format_seconds(record.elapsed())} ({result.device})"
        if result.options.get("fallback"):
            return (f"{text}; WARNING: {result.options.get('fallback_reason', 'the result was unsafe')} — "
                    f"the layer holds {result.options['fallback']} interpolation instead.")
        if "regions" in result.options:
            text += f"; {result.options['regions']} regions of the kernel map"
        if result.options.get("noise_sigma") is not None:
            text += f"; noise measured σ {float(result.options['noise_sigma']):.1f}/255"
        steps = result.options.get("poisson_refinement")
        if steps is not None:
            text += (f", photon-limited: {steps} Richardson–Lucy step{'' if steps == 1 else 's'}"
                     if steps else ", photon-limited: no Richardson–Lucy step helped")
        return text + "."
