"""Z: the axial PSF of a stack from the stack itself, and isotropic voxels."""
from __future__ import annotations

from .psf import AxialPSF, centre_profile, line_profile, output_planes, relative_profile, resample_profile, z_positions

__all__ = ["AxialPSF", "z_positions", "output_planes", "line_profile", "resample_profile", "centre_profile",
           "relative_profile"]
