"""The optics of a microscope, as the PSF models take them: one frozen, validated :class:`Optics`.

Lengths are in micrometres (wavelengths in vacuum), refractive indices are plain numbers. A value
that cannot describe a real objective is refused with the reason, in the user's terms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import BadInputError, Param

MODALITIES = ("widefield", "confocal")

__all__ = ["Optics", "MODALITIES"]


def _finite(name: str, value: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise BadInputError(Param(name, value), " is not a number") from None
    if not math.isfinite(out):
        raise BadInputError(Param(name, value), " must be a finite number")
    return out


@dataclass(frozen=True, kw_only=True)
class Optics:
    """A microscope's imaging optics (all lengths in µm, wavelengths in vacuum).

    ``modality``: ``"widefield"`` or ``"confocal"`` (point-scanning with a pinhole).
    ``na``: the objective's numerical aperture. ``wavelength_um``: the emission wavelength (0.52 for
    520 nm). ``excitation_um``: the excitation wavelength (confocal); ``None`` takes the emission one.
    ``n_immersion``: the immersion medium's index (oil 1.515, water 1.333, air 1.0). ``n_sample``: the
    sample's index, ``None`` for matched to the immersion. ``depth_um``: depth of the imaged plane below
    the coverslip. ``pinhole_au``: the confocal pinhole's diameter in Airy units
    (1 AU = 1.22 ``wavelength_um`` / ``na`` in the sample plane). ``defocus_um``: focal plane shift from
    the nominal focus (positive: deeper into the sample). ``spherical``: an extra primary spherical
    aberration, in waves RMS (the Noll-normalised Zernike ``√5 (6ρ⁴ - 6ρ² + 1)``).

    The Gibson-Lanni model compares the actual layers with the objective's design: ``n_coverslip``,
    ``coverslip_um`` (actual) against ``design_n_coverslip``, ``design_coverslip_um``, and
    ``n_immersion`` against ``design_n_immersion`` (``None``: the same) over ``working_distance_um``.
    With everything at design and the sample matched, the models are the aberration-free Born-Wolf PSF.
    """

    modality: str = "widefield"
    na: float
    wavelength_um: float
    excitation_um: float | None = None
    n_immersion: float = 1.515
    n_sample: float | None = None
    depth_um: float = 0.0
    pinhole_au: float = 1.0
    defocus_um: float = 0.0
    spherical: float = 0.0
    n_coverslip: float = 1.515
    coverslip_um: float = 170.0
    design_n_immersion: float | None = None
    design_n_coverslip: float = 1.515
    design_coverslip_um: float = 170.0
    working_distance_um: float = 150.0

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise BadInputError(Param("modality", self.modality), " is not a modality of these models: use ",
                                Param("modality", "widefield", ("confocal",)))
        for name in ("na", "wavelength_um", "n_immersion", "depth_um", "pinhole_au", "defocus_um", "spherical",
                     "n_coverslip", "coverslip_um", "design_n_coverslip", "design_coverslip_um",
                     "working_distance_um"):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))
        for name in ("excitation_um", "n_sample", "design_n_immersion"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _finite(name, getattr(self, name)))
        for name in ("wavelength_um", "excitation_um"):
            value = getattr(self, name)
            if value is None:
                continue
            if value <= 0:
                raise BadInputError(Param(name, value), " must be positive (a wavelength in µm, 0.52 for 520 nm)")
            if value > 5:
                raise BadInputError(Param(name, value), f" is in micrometres: {value:g} nm is {value / 1000:g} µm")
        if self.na <= 0:
            raise BadInputError(Param("na", self.na), " must be positive (the objective's numerical aperture, "
                                "e.g. 1.4 for an oil objective)")
        for name in ("n_immersion", "n_sample", "n_coverslip", "design_n_coverslip", "design_n_immersion"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise BadInputError(Param(name, value), " is below 1: a refractive index is at least 1 (vacuum)")
        if self.na > self.n_immersion:
            raise BadInputError(Param("na", self.na), " exceeds the immersion's refractive index ",
                                Param("n_immersion", self.n_immersion), ": NA = n sin θ cannot exceed n (an NA "
                                f"{self.na:g} objective needs an immersion of index {self.na:g} or more)")
        if self.design_n_immersion is not None and self.na > self.design_n_immersion:
            raise BadInputError(Param("na", self.na), " exceeds ", Param("design_n_immersion",
                                self.design_n_immersion), ": no objective is designed so")
        for name in ("depth_um", "coverslip_um", "design_coverslip_um", "working_distance_um"):
            if getattr(self, name) < 0:
                raise BadInputError(Param(name, getattr(self, name)), " is a thickness or depth and cannot be negative")
        if self.pinhole_au < 0:
            raise BadInputError(Param("pinhole_au", self.pinhole_au), " is a pinhole diameter and cannot be negative")

    @property
    def sample_index(self) -> float:
        """The sample's refractive index (the immersion's when matched)."""
        return self.n_immersion if self.n_sample is None else self.n_sample

    @property
    def excitation_wavelength_um(self) -> float:
        """The excitation wavelength in µm (the emission one when not given)."""
        return self.wavelength_um if self.excitation_um is None else self.excitation_um

    @property
    def airy_unit_um(self) -> float:
        """One Airy unit in the sample plane: the Airy disk's diameter, 1.22 λ_em / NA."""
        return 1.22 * self.wavelength_um / self.na
