"""The band combinations of the paper's Table III, resolved by wavelength for any sensor.

:func:`band_set` gives the bands of ``ALL``, ``COMMON``, ``RGB``, ``RGBNIR``,
``AeroRGBNIR``, ``NoRGB`` (and ``RGBNIRSWIR``, the six reflective bands Landsat and
Sentinel-2 share, and ``NIRSWIR``, their narrow NIR and two SWIR bands) for any band
descriptors; :func:`resolve_bands` also takes ``None``,
``"no_thermal"`` or a list of names.
NumPy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..bands import BandDescriptors
from ..errors import MissingBandError

__all__ = ["SpectralRegion", "REGIONS", "BAND_SETS", "region_band", "band_set",
           "resolve_bands", "canonical_set_name"]


@dataclass(frozen=True)
class SpectralRegion:
    """A part of the spectrum a band set asks for, e.g. "red".

    Attributes
    ----------
    name : str
    lo_nm, hi_nm : float
        A band stands for this region when its centre lies in ``[lo_nm, hi_nm)``, nm.
    prefer_nm : float
        Where several bands qualify, the one whose centre is closest to this, nm.
    thermal : bool
        Whether the region is thermal infrared (only thermal bands stand for it) or
        reflective (only reflective bands do).
    """

    name: str
    lo_nm: float
    hi_nm: float
    prefer_nm: float
    thermal: bool = False

    def describe(self) -> str:
        return f"{self.name} band (centre {self.lo_nm:g}-{self.hi_nm:g} nm)"


#: Spectral regions of the band sets. Windows follow the Landsat 8 / Sentinel-2 bands they
#: are named after, wide enough for Landsat 4-7, PlanetScope, MODIS and Sentinel-3. "nir"
#: prefers the broad NIR band (Sentinel-2 B08); "nir_common" the narrow NIR band that
#: Sentinel-2 (B8A) and Landsat 8 (B5) share.
REGIONS: dict[str, SpectralRegion] = {r.name: r for r in (
    SpectralRegion("coastal", 430.0, 450.0, 443.0),
    SpectralRegion("blue", 450.0, 520.0, 485.0),
    SpectralRegion("green", 520.0, 600.0, 560.0),
    SpectralRegion("red", 620.0, 690.0, 655.0),
    SpectralRegion("nir", 760.0, 900.0, 833.0),
    SpectralRegion("nir_common", 760.0, 900.0, 865.0),
    SpectralRegion("cirrus", 1360.0, 1390.0, 1375.0),
    SpectralRegion("swir16", 1550.0, 1750.0, 1610.0),
    SpectralRegion("swir22", 2050.0, 2350.0, 2200.0),
    # The split-window thermal band nearest 11 um (Landsat 8-9 B10, Landsat 4-7 B6, MODIS
    # band 31, SLSTR S8); never a 3.7 um band, which carries reflected sunlight by day.
    SpectralRegion("tir", 10000.0, 12500.0, 11000.0, thermal=True),
)}

#: A band wider than this many times its region's window does not stand for the region:
#: panchromatic bands (Landsat 8 B8, 503-676 nm, centred in "green") are not a colour.
_MAX_WIDTH_PER_WINDOW = 2.0

#: Table III's band sets: the regions each needs (``None``: every band). COMMON's regions
#: are optional (a sensor contributes the ones it has); the others' are required.
BAND_SETS: dict[str, tuple[str, ...] | None] = {
    "ALL": None,
    "COMMON": ("coastal", "blue", "green", "red", "nir_common", "cirrus", "swir16", "swir22"),
    "RGB": ("blue", "green", "red"),
    "RGBNIR": ("blue", "green", "red", "nir"),
    "AeroRGBNIR": ("coastal", "blue", "green", "red", "nir"),
    "NoRGB": ("blue", "green", "red"),  # removed from ALL
    # Not in Table III: the six reflective bands that Landsat 4-9 and Sentinel-2 share
    # (the bands of ukis-csmask's 6-band model and of the per-pixel baseline's best set).
    "RGBNIRSWIR": ("blue", "green", "red", "nir", "swir16", "swir22"),
    # Not in Table III: narrow NIR and both SWIR bands, what a Sentinel-2 20 m product
    # (no visible band) shares with Landsat 8 (B8A / B11 / B12 and B5 / B6 / B7).
    "NIRSWIR": ("nir_common", "swir16", "swir22"),
    # Not in Table III: the six reflective bands and the thermal band near 11 um, what
    # Landsat 4-7 TM / ETM+ have (Landsat 8-9 without the 1.38 um band).
    "RGBNIRSWIRTIR": ("blue", "green", "red", "nir", "swir16", "swir22", "tir"),
}


def _band_list(descriptors: BandDescriptors) -> str:
    return ", ".join(f"{n} ({c:g} nm)" for n, c in zip(descriptors.names, descriptors.wavelengths_nm[:, 1]))


def region_band(descriptors: BandDescriptors, region: str | SpectralRegion) -> str | None:
    """The band that stands for a spectral region, or None if the sensor has none.

    Parameters
    ----------
    descriptors : BandDescriptors
    region : str or SpectralRegion
        A key of :data:`REGIONS` or a region.

    Returns
    -------
    str or None
        The name of the band whose centre lies in the region and is closest to its
        preferred wavelength, among the reflective bands (the thermal bands for a thermal
        region); bands wider than twice the region's window (panchromatic bands) do not
        count.
    """
    r = REGIONS[region] if isinstance(region, str) else region
    lo, mid, hi = descriptors.wavelengths_nm.T
    ok = ((mid >= r.lo_nm) & (mid < r.hi_nm) & (hi - lo <= _MAX_WIDTH_PER_WINDOW * (r.hi_nm - r.lo_nm))
          & (descriptors.is_thermal == r.thermal))
    if not ok.any():
        return None
    idx = np.flatnonzero(ok)
    return descriptors.names[int(idx[np.argmin(np.abs(mid[idx] - r.prefer_nm))])]


def canonical_set_name(name: str) -> str:
    for known in BAND_SETS:
        if known.casefold() == str(name).strip().casefold():
            return known
    raise ValueError(f"unknown band set {name!r}; known: {', '.join(BAND_SETS)}")


def band_set(descriptors: BandDescriptors, name: str) -> list[str]:
    """The bands of one of the paper's band combinations (Table III) for any sensor.

    Parameters
    ----------
    descriptors : BandDescriptors
        The sensor's (or scene's) bands.
    name : str
        ``ALL`` every band; ``RGB`` blue (450-520 nm), green (520-600 nm) and red
        (620-690 nm); ``RGBNIR`` those and NIR (760-900 nm, the broad band where there are
        two, e.g. Sentinel-2 B08); ``AeroRGBNIR`` those and coastal/aerosol (430-450 nm);
        ``NoRGB`` every band but RGB; ``RGBNIRSWIR`` RGB, NIR and the SWIR bands at 1.6
        and 2.2 um (not in Table III: the six reflective bands Landsat 4-9 and Sentinel-2
        share); ``RGBNIRSWIRTIR`` those and the thermal band nearest 11 um (10-12.5 um;
        Landsat 4-7's TM / ETM+ bands); ``COMMON`` the bands in the regions Sentinel-2 and
        Landsat 8 share (coastal, blue, green, red, narrow NIR ~865 nm, cirrus 1360-1390
        nm, SWIR 1.6 and 2.2 um), as many of them as the sensor has. Case-insensitive.

    Returns
    -------
    list of str
        Band names in the order of ``descriptors``.

    Raises
    ------
    MissingBandError
        If the sensor lacks a band the set needs (named in the message), or has none of
        the COMMON regions.
    ValueError
        For an unknown set name.
    """
    key = canonical_set_name(name)
    regions = BAND_SETS[key]
    if regions is None:
        return list(descriptors.names)
    found = {r: region_band(descriptors, r) for r in regions}
    if key == "COMMON":
        chosen = {b for b in found.values() if b is not None}
        if not chosen:
            raise MissingBandError(f"band set COMMON: none of the bands Sentinel-2 and Landsat 8 share "
                                   f"is here (bands: {_band_list(descriptors)})")
    else:
        missing = [REGIONS[r].describe() for r, b in found.items() if b is None]
        if missing:
            raise MissingBandError(
                f"band set {key} needs a {' and a '.join(missing)}; these bands have none: "
                f"{_band_list(descriptors)}. Choose another band set (e.g. ALL)")
        chosen = set(found.values())
        if key == "NoRGB":
            chosen = set(descriptors.names) - chosen
            if not chosen:
                raise MissingBandError("band set NoRGB is empty: there are only the RGB bands")
    return [n for n in descriptors.names if n in chosen]


def resolve_bands(descriptors: BandDescriptors, bands: str | Sequence[str] | None = None) -> list[str]:
    """Band names of a band choice for one set of descriptors.

    Parameters
    ----------
    descriptors : BandDescriptors
    bands : None, str or sequence of str
        ``None``: every band; ``"no_thermal"``: the reflective bands; another string: a
        band set of :data:`BAND_SETS` resolved by wavelength (see :func:`band_set`); a
        sequence: band names, kept in that order.

    Returns
    -------
    list of str
    """
    if bands is None:
        return list(descriptors.names)
    if isinstance(bands, str):
        if bands.lower() == "no_thermal":
            return [n for n, t in zip(descriptors.names, descriptors.is_thermal) if not t]
        return band_set(descriptors, bands)
    unknown = [b for b in bands if b not in descriptors.names]
    if unknown:
        raise MissingBandError(f"bands {unknown} are not among {list(descriptors.names)}")
    return list(bands)
