"""Spectral knowledge that every step below the models shares: band sets by wavelength.

* :mod:`.bandsets` - the paper's Table III band combinations (and ``RGBNIRSWIR``)
  resolved by wavelength for any sensor.

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

__all__ = ["BAND_SETS", "REGIONS", "SpectralRegion", "band_set", "canonical_set_name", "region_band",
           "resolve_bands"]
