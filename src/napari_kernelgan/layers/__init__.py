"""Results as napari layers: one code path for the widgets, the reader and console scripting.

Nothing here imports Qt or napari; the functions take a viewer and layers and
use only their public attributes, so they work from the napari console::

    from napari_kernelgan import estimate_kernel
    from napari_kernelgan.layers import add_estimate_layers
    est = estimate_kernel(viewer.layers['tissue LR'].data)
    add_estimate_layers(viewer, viewer.layers['tissue LR'], est)

World placement (napari maps data index ``i`` to ``translate + scale * i``,
the centre of pixel ``i``):

* the D-map has the input's pixel grid, so it takes the input's scale and
  translate and covers exactly the same world extent; it is placed *below*
  the input in the layer list so it never tints it;
* a ×s super-resolved image has pixel size ``scale / s``; an input pixel ``i``
  covers data coordinates ``[i - 0.5, i + 0.5]`` and output pixel ``j`` is
  centred at ``(j + 0.5) / s - 0.5`` in those coordinates, so
  ``translate_sr = translate + scale * (0.5 / s - 0.5)`` and both images cover
  the same world extent;
* kernels have no place in the image, so they are drawn magnified in panels
  to the right of it (their data is the kernel itself, unscaled), and the view
  is widened when a panel would be out of sight.

Every result layer carries the input's ``units`` so napari never finds the
layers' units inconsistent.

The package is split by job: :mod:`.names` (layer names, colormaps, the
kernel-map quantities), :mod:`.kinds` (what a layer is), :mod:`.placement`
(world transforms), :mod:`.data` (layer data tuples), :mod:`.viewer`
(adding them to a viewer) and :mod:`.axial` (a z-stack's 3-D PSF and its
isotropic stack). Everything public is importable from here.
"""
from __future__ import annotations

from .axial import (
    add_axial_psf_layers,
    add_isotropic_layer,
    axial_psf_layer_data,
    isotropic_layer_data,
    isotropic_layer_name,
    psf_layer_names,
)
from .data import confidence_metadata, estimate_layer_data, field_from_layer, kernel_map_layer_data, sr_layer_data
from .kinds import (
    KernelProblem,
    is_input_layer,
    is_kernel,
    is_kernel_layer,
    kernel_problem,
    kernel_shape,
    layer_role,
    named_as_kernel,
    skipped_kernel,
)
from .names import (
    DMAP_COLORMAP,
    DMAP_DESCRIPTION,
    FILE_KERNEL_SLOT,
    FWHM_PER_SIGMA,
    KERNEL_COLORMAP,
    KERNEL_MAP_QUANTITIES,
    KERNEL_SLOTS,
    MAX_KERNEL_SIDE,
    LayerDataTuple,
    dmap_layer_name,
    kernel_layer_name,
    kernel_map_layer_name,
    map_layer_name,
    preview_layer_name,
    sr_layer_name,
    true_kernel_layer_name,
)
from .placement import (
    image_data,
    kernel_panel_transform,
    largest_image_layer,
    leading_shape,
    sr_transform,
    units_of,
)
from .viewer import (
    add_estimate_layers,
    add_kernel_map_layers,
    add_sr_layer,
    ensure_visible,
    layer_confidence,
    layer_kernels,
    remove_layer,
    show_confidence,
    update_preview,
)

__all__ = [
    "add_kernel_map_layers", "kernel_map_layer_data", "kernel_map_layer_name", "map_layer_name",
    "field_from_layer", "KERNEL_MAP_QUANTITIES", "add_estimate_layers", "add_sr_layer", "estimate_layer_data",
    "sr_layer_data", "sr_transform",
    "kernel_layer_name", "dmap_layer_name", "sr_layer_name", "preview_layer_name", "true_kernel_layer_name",
    "kernel_panel_transform", "update_preview", "remove_layer", "image_data", "leading_shape", "layer_kernels",
    "is_kernel", "is_kernel_layer", "is_input_layer", "layer_role", "largest_image_layer", "ensure_visible",
    "units_of", "kernel_shape", "MAX_KERNEL_SIDE", "layer_confidence", "LayerDataTuple", "KERNEL_COLORMAP",
    "DMAP_COLORMAP", "DMAP_DESCRIPTION", "KERNEL_SLOTS", "FILE_KERNEL_SLOT", "FWHM_PER_SIGMA",
    "KernelProblem", "kernel_problem", "named_as_kernel", "skipped_kernel",
    "confidence_metadata", "show_confidence",
    "add_axial_psf_layers", "add_isotropic_layer", "axial_psf_layer_data", "isotropic_layer_data",
    "isotropic_layer_name", "psf_layer_names",
]
