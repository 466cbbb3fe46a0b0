"""The snow test: snow and ice by their reflectance at green and 1.6 um (NumPy or torch).

Snow and ice are as bright as cloud in the visible and near infrared; at 1.6 um ice
absorbs and snow and lake ice turn dark, while water cloud stays bright and ice cloud
stays brighter than the snow below it. The normalised difference snow index
``NDSI = (green - swir) / (green + swir)`` of SNOMAP (Hall, Riggs and Salomonson 1995; the
MODIS snow products keep NDSI >= 0.4 and a green reflectance over 0.10) finds snow, and
ice clouds too; a ceiling on the 1.6 um reflectance, chosen on a model's training labels
(:func:`sensei_xr.training.snow.choose_swir_max`), keeps the clouds out. A model carries
its test (``CloudModel.snow_test``); the engine applies it
(:mod:`sensei_xr.inference.snow`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bands import BandDescriptors
from .bandsets import region_band

__all__ = ["SnowTest", "snow_bands"]


@dataclass(frozen=True)
class SnowTest:
    """A pixel is snow or ice where ``NDSI >= ndsi_min``, ``green > green_min`` and
    ``swir < swir_max``; its cloud probability is then at most ``cloud_cap``.

    Attributes
    ----------
    swir_max : float
        Ceiling of the 1.6 um reflectance; chosen on training labels.
    ndsi_min : float
        SNOMAP's NDSI threshold.
    green_min : float
        SNOMAP's green reflectance floor (dark water has a high NDSI too).
    cloud_cap : float
        Largest cloud probability left to a pixel that passes (under any mask threshold
        a user would pick, and not 0: the test is evidence, not certainty).
    """

    swir_max: float
    ndsi_min: float = 0.4
    green_min: float = 0.10
    cloud_cap: float = 0.1

    def __post_init__(self) -> None:
        for name in ("swir_max", "ndsi_min", "green_min", "cloud_cap"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.floating)) or not np.isfinite(value):
                raise ValueError(f"SnowTest.{name} must be a finite number, not {value!r}")
        if not 0.0 <= self.cloud_cap <= 1.0:
            raise ValueError(f"SnowTest.cloud_cap is a probability (0-1), not {self.cloud_cap}")

    def holds(self, green, swir):
        """Boolean array (numpy or torch, as given): where the pixels pass, from green and
        1.6 um reflectance (NaN fails)."""
        return (green > self.green_min) & (swir < self.swir_max) & (green - swir >= self.ndsi_min * (green + swir))

    def as_dict(self) -> dict[str, float]:
        return {"swir_max": float(self.swir_max), "ndsi_min": float(self.ndsi_min),
                "green_min": float(self.green_min), "cloud_cap": float(self.cloud_cap)}


def snow_bands(desc: BandDescriptors) -> tuple[int, int] | None:
    """Indices of the green and the 1.6 um band among a scene's bands (the bands that
    stand for the regions ``"green"`` and ``"swir16"``, see
    :func:`~sensei_xr.spectral.bandsets.region_band`), or None when either is missing
    (the test is then not applied)."""
    green, swir = region_band(desc, "green"), region_band(desc, "swir16")
    if green is None or swir is None:
        return None
    return desc.names.index(green), desc.names.index(swir)
