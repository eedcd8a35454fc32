"""Physical PSF models of real microscope optics (numpy/scipy only, no Qt, no torch).

- :mod:`.params`: :class:`Optics`, the objective, wavelengths, indices, depth and pinhole, validated.
- :mod:`.pupil`: the pupil function (Gibson-Lanni optical path difference, defocus, spherical
  aberration) and the radial Debye integral over it.
- :mod:`.models`: kernels on a pixel grid, integrated over each pixel: :func:`psf_2d`, :func:`psf_3d`
  (:func:`focused_psf_3d`: centred where one focuses),
  widefield or confocal, :func:`support_for` (the side holding 99 % of the mass) and
  :func:`best_focus_um` (where the stage finds the brightest plane).

See ``docs/optics.md`` for the models, units and the facts they are tested against.
"""
from __future__ import annotations

from .models import axial_fwhm_um, best_focus_um, focused_psf_3d, on_axis_reach_um, psf_2d, psf_3d, support_for
from .params import MODALITIES, Optics
from .pupil import optical_path_difference, pupil_energy, pupil_function, radial_intensity

__all__ = ["Optics", "MODALITIES", "psf_2d", "psf_3d", "focused_psf_3d", "support_for", "axial_fwhm_um",
           "best_focus_um", "on_axis_reach_um",
           "radial_intensity", "optical_path_difference", "pupil_function", "pupil_energy"]
