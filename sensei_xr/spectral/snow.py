"""The snow tests: snow and ice by their reflectance at green and 1.6 um, or, for scenes
without a 1.6 um band, at green, red and NIR (NumPy or torch).

Snow and ice are as bright as cloud in the visible and near infrared; at 1.6 um ice
absorbs and snow and lake ice turn dark, while water cloud stays bright and ice cloud
stays brighter than the snow below it. The normalised difference snow index
``NDSI = (green - swir) / (green + swir)`` of SNOMAP (Hall, Riggs and Salomonson 1995; the
MODIS snow products keep NDSI >= 0.4, a green reflectance over 0.10 and a NIR reflectance
over 0.11, which water, dark in the NIR, fails) finds snow, and ice clouds too; a ceiling on the 1.6 um reflectance, chosen on a model's training labels
(:func:`sensei_xr.training.snow.choose_swir_max`), keeps the clouds out.

Without a 1.6 um band (RGB+NIR sensors such as PeruSat-1, Sentinel-2 RGB+NIR products) ice
and snow still absorb a little in the NIR: bright lake ice reads about 0.34 at 865 nm
under 0.44 in the visible (NDVI about -0.1), while cloud is white from the visible to the
NIR (NDVI about 0, above it over vegetation). :class:`NirSnowTest` caps bright pixels whose
NIR is well below their red; its floor and ceiling are chosen on training labels
(:func:`sensei_xr.training.snow.choose_nir_test`), since thin cloud over snow keeps the
snow's shape. A model carries its tests (``CloudModel.snow_test``,
``CloudModel.nir_snow_test``); the engine applies the first whose bands the scene has
(:mod:`sensei_xr.inference.guards`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bands import BandDescriptors
from .bandsets import region_band

__all__ = ["NirSnowTest", "SnowTest", "nir_snow_bands", "snow_bands"]


@dataclass(frozen=True)
class SnowTest:
    """A pixel is snow or ice where ``NDSI >= ndsi_min``, ``green > green_min``, ``nir >
    nir_min`` and ``swir < swir_max``; its cloud probability is then at most ``cloud_cap``.

    Attributes
    ----------
    swir_max : float
        Ceiling of the 1.6 um reflectance; chosen on training labels.
    ndsi_min : float
        SNOMAP's NDSI threshold.
    green_min : float
        SNOMAP's green reflectance floor (dark water has a high NDSI too).
    nir_min : float
        SNOMAP's NIR reflectance floor: water, and thin cloud over water (whose NDSI is high
        too), fail it.
    cloud_cap : float
        Largest cloud probability left to a pixel that passes (under any mask threshold
        a user would pick, and not 0: the test is evidence, not certainty).
    """

    swir_max: float
    ndsi_min: float = 0.4
    green_min: float = 0.10
    nir_min: float = 0.11
    cloud_cap: float = 0.1

    def __post_init__(self) -> None:
        for name in ("swir_max", "ndsi_min", "green_min", "nir_min", "cloud_cap"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating)) or not np.isfinite(value):
                raise ValueError(f"SnowTest.{name} must be a finite number, not {value!r}")
        if not 0.0 <= self.cloud_cap <= 1.0:
            raise ValueError(f"SnowTest.cloud_cap is a probability (0-1), not {self.cloud_cap}")

    def holds(self, green, swir, nir):
        """Boolean array (numpy or torch, as given): where the pixels pass, from green, 1.6
        um and NIR reflectance (NaN fails)."""
        return ((green > self.green_min) & (nir > self.nir_min) & (swir < self.swir_max)
                & (green - swir >= self.ndsi_min * (green + swir)))

    def as_dict(self) -> dict[str, float]:
        return {"swir_max": float(self.swir_max), "ndsi_min": float(self.ndsi_min),
                "green_min": float(self.green_min), "nir_min": float(self.nir_min), "cloud_cap": float(self.cloud_cap)}

    def describe(self, green: str, swir: str, nir: str) -> str:
        """What the test does, in words, with the scene's band names."""
        return (f"cloud probability at most {self.cloud_cap:g} where NDSI({green}, {swir}) >= {self.ndsi_min:g}, "
                f"{green} > {self.green_min:g}, {nir} > {self.nir_min:g} and {swir} < {self.swir_max:g}")


@dataclass(frozen=True)
class NirSnowTest:
    """For scenes without a 1.6 um band: a pixel is snow or ice where ``green >
    green_min``, ``nir > nir_min`` and ``NDVI = (nir - red) / (nir + red) < ndvi_max``;
    its cloud probability is then at most ``cloud_cap``.

    Attributes
    ----------
    ndvi_max : float
        Ceiling of the NDVI (negative: NIR below red); chosen on training labels.
    green_min : float
        Floor of the green reflectance; chosen on training labels.
    nir_min : float
        SNOMAP's NIR floor, as for :class:`SnowTest`: thin cloud over water has a low NDVI
        too, and a low NIR.
    cloud_cap : float
        As for :class:`SnowTest`.
    """

    ndvi_max: float
    green_min: float
    nir_min: float = 0.11
    cloud_cap: float = 0.1

    def __post_init__(self) -> None:
        for name in ("ndvi_max", "green_min", "nir_min", "cloud_cap"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating)) or not np.isfinite(value):
                raise ValueError(f"NirSnowTest.{name} must be a finite number, not {value!r}")
        if not 0.0 <= self.cloud_cap <= 1.0:
            raise ValueError(f"NirSnowTest.cloud_cap is a probability (0-1), not {self.cloud_cap}")
        if not -1.0 <= self.ndvi_max <= 1.0:
            raise ValueError(f"NirSnowTest.ndvi_max is an NDVI (-1 to 1), not {self.ndvi_max}")
        if self.green_min <= 0.0:
            raise ValueError(f"NirSnowTest.green_min must be a reflectance above 0, not {self.green_min}")

    def holds(self, green, red, nir):
        """Boolean array (numpy or torch, as given): where the pixels pass, from green, red
        and NIR reflectance (NaN fails)."""
        return (green > self.green_min) & (nir > self.nir_min) & (nir - red < self.ndvi_max * (nir + red))

    def as_dict(self) -> dict[str, float]:
        return {"ndvi_max": float(self.ndvi_max), "green_min": float(self.green_min),
                "nir_min": float(self.nir_min), "cloud_cap": float(self.cloud_cap)}

    def describe(self, green: str, red: str, nir: str) -> str:
        """What the test does, in words, with the scene's band names."""
        return (f"cloud probability at most {self.cloud_cap:g} where NDVI({nir}, {red}) < {self.ndvi_max:g}, "
                f"{green} > {self.green_min:g} and {nir} > {self.nir_min:g}")


def snow_bands(desc: BandDescriptors) -> tuple[int, int, int] | None:
    """Indices of the green, the 1.6 um and the NIR band among a scene's bands (the bands
    that stand for the regions ``"green"``, ``"swir16"`` and ``"nir"``, see
    :func:`~sensei_xr.spectral.bandsets.region_band`), in the order
    :meth:`SnowTest.holds` takes them, or None when any is missing (the test is then not
    applied)."""
    names = [region_band(desc, r) for r in ("green", "swir16", "nir")]
    if any(n is None for n in names):
        return None
    return tuple(desc.names.index(n) for n in names)


def nir_snow_bands(desc: BandDescriptors) -> tuple[int, int, int] | None:
    """Indices of the green, red and NIR bands among a scene's bands (regions ``"green"``,
    ``"red"``, ``"nir"``), or None when any is missing."""
    names = [region_band(desc, r) for r in ("green", "red", "nir")]
    if any(n is None for n in names):
        return None
    return tuple(desc.names.index(n) for n in names)
