"""Spectral knowledge that every step below the models shares: band sets by wavelength.

* :mod:`.bandsets` - the paper's Table III band combinations (and ``RGBNIRSWIR``)
  resolved by wavelength for any sensor.
* :mod:`.snow` - the snow tests: SNOMAP's NDSI with a 1.6 um ceiling on the bands that
  stand for green and 1.6 um, and for scenes without a 1.6 um band a green floor and an
  NDVI ceiling on green, red and NIR.
* :mod:`.warm` - the warm-surface test: no cloud warmer than 27 C at 11 um (Fmask).

NumPy only.
"""

from .bandsets import (
    BAND_SETS,
    REGIONS,
    SpectralRegion,
    band_set,
    canonical_set_name,
    region_band,
    resolve_bands,
)
from .snow import NirSnowTest, SnowTest, nir_snow_bands, snow_bands
from .warm import WarmSurfaceTest, warm_bands

__all__ = ["BAND_SETS", "REGIONS", "SpectralRegion", "band_set", "canonical_set_name", "region_band",
           "resolve_bands", "NirSnowTest", "SnowTest", "nir_snow_bands", "snow_bands", "WarmSurfaceTest",
           "warm_bands"]
