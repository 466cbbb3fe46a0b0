"""Search STAC APIs and stack their items as lazy, wavelength-aware scenes.

One module per step, each importable on its own:

=================  ==========================================================================
``search``         :func:`search` a STAC API (pystac-client; every request has a timeout,
                   arguments checked before any request, errors that name the URL and status)
``profiles``       collection profiles (``catalogs/stac_profiles/*.toml``): which asset of a
                   collection is which sensor band, with default scale / offset
``items``          :func:`read_item`: one item -> :class:`ItemInfo` (pure): its bands
                   (catalog band, wavelengths in nm, reflective / thermal), scale and offset
                   (reflectance or kelvin), projection; refuses items whose bands no
                   catalog describes
``sentinel2``      the Sentinel-2 offset: decided by processing baseline, never by date,
                   never twice
``select``         which assets become the stack's bands (one per band)
``reader``         stackstac's reader with errors that name the href; GDAL HTTP timeouts
``stack``          :func:`stack_items` (stackstac over the read items) and :func:`open_stac`
=================  ==========================================================================

What :func:`stack_items` adds to a plain ``stackstac.stack``:

* **Only spectral bands**, one asset per band (no QA, SCL, visual, thumbnails, angles,
  JPEG 2000 twins or resampled copies), named by the collection profile, the sensor catalog
  or the items' ``eo:bands`` / STAC 1.1 ``bands``.
* **Wavelengths on the band coordinate**, in the canonical nm coordinates of
  :mod:`sensei_xr.bands` (``wavelength_min_nm``, ``wavelength_center_nm``,
  ``wavelength_max_nm``, ``band_kind``) plus stackstac's micrometre ones. With
  ``wavelengths="auto"`` (default) a band the catalog identifies gets the catalog's band
  limits, exactly as :func:`sensei_xr.open_scene` gives them for the same band read from
  files; public APIs round their ``eo:bands`` (Earth Search: blue 0.49 um +- 0.049 um, where
  the measured band is 459-525 nm), so the catalog is preferred.
* **Calibrated values**: float32 reflectance and brightness (or surface) temperature in
  kelvin, NaN at no data; an unknown scale is an error, not DN passed off as reflectance.
* **Native grid**: the assets' own pixel grid, at the most common native resolution of the
  stacked bands (like ``open_scene``).
* **Clear errors** (:class:`StacError` and subclasses, from :mod:`sensei_xr.errors`).

Examples
--------
>>> from sensei_xr.io.stac import open_stac
>>> da = open_stac("https://earth-search.aws.element84.com/v1", "sentinel-2-l2a",
...                bbox=(13.9, 45.9, 14.0, 46.0), datetime="2023-07-01/2023-07-31",
...                query={"eo:cloud_cover": {"lt": 30}})          # doctest: +SKIP
>>> da.dims                                                       # doctest: +SKIP
('time', 'band', 'y', 'x')
"""

from __future__ import annotations

from ...errors import (
    NoItemsError,
    NoUsableBandsError,
    ProfileError,
    StacAssetError,
    StacConnectionError,
    StacError,
    StacSearchError,
)
from .items import BandAsset, Calibration, Grid, ItemInfo, read_item
from .items import _item_dict as _item_dict  # noqa: F401  (training.stac_sampler uses it)
from .profiles import (
    PROFILE_ENV_VAR,
    AssetSpec,
    StacProfile,
    find_profile,
    list_profiles,
    load_profile,
    load_profile_file,
    profile_dirs,
)
from .reader import gdal_env as _gdal_env  # noqa: F401  (tests use it)
from .search import DEFAULT_TIMEOUT_S, check_bbox, check_datetime, search
from .sentinel2 import Sentinel2Processing, sentinel2_item_offset, sentinel2_processing
from .stack import open_stac, stack_items

__all__ = [
    "StacError",
    "StacConnectionError",
    "StacSearchError",
    "NoItemsError",
    "NoUsableBandsError",
    "StacAssetError",
    "ProfileError",
    "AssetSpec",
    "StacProfile",
    "ItemInfo",
    "BandAsset",
    "Calibration",
    "Grid",
    "Sentinel2Processing",
    "search",
    "stack_items",
    "open_stac",
    "read_item",
    "load_profile",
    "load_profile_file",
    "list_profiles",
    "find_profile",
    "profile_dirs",
    "sentinel2_item_offset",
    "sentinel2_processing",
    "check_datetime",
    "check_bbox",
    "DEFAULT_TIMEOUT_S",
    "PROFILE_ENV_VAR",
]
