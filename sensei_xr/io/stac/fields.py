"""Fields of a STAC item's assets, read leniently: the projection, eo, raster extensions.

Public APIs write these fields in STAC 1.0 (``eo:bands``, ``raster:bands``, ``proj:epsg``),
STAC 1.1 (``bands`` with ``eo:center_wavelength``, asset-level ``raster:scale``,
``proj:code``) and older (``eo:bands`` as indices into the item's ``eo:bands``) forms;
anything malformed reads as absent. Pure functions of dicts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Grid", "EoMeta", "RasterMeta", "num", "epsg_of", "grid_of", "eo_meta", "raster_meta",
           "media_type", "is_raster_asset", "is_zarr"]

_RASTER_MEDIA = ("image/tiff", "image/x.geotiff", "image/vnd.stac.geotiff", "image/jp2")
_ZARR_MEDIA = ("application/vnd.zarr", "application/vnd+zarr")
# Roles that mark an asset as something other than a measured band.
_NON_SPECTRAL_ROLES = {
    "thumbnail", "overview", "visual", "metadata", "qa", "cloud", "cloud-shadow", "snow-ice",
    "water-mask", "land-water", "saturation", "data-mask", "graphic", "tiles", "iso-19139",
    "iso-19115", "angle", "angles", "sun-angle", "view-angle",
}


def num(v: Any) -> float | None:
    """A finite float, or None (booleans, text, NaN and infinities too)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def epsg_of(mapping: Mapping[str, Any]) -> int | None:
    """EPSG code of an item's properties or an asset: ``proj:epsg``, else ``proj:code``."""
    epsg = mapping.get("proj:epsg")
    if isinstance(epsg, int) and not isinstance(epsg, bool):
        return int(epsg)
    if hasattr(epsg, "__index__") and not isinstance(epsg, bool):  # NumPy integers
        return int(epsg)
    code = mapping.get("proj:code")
    if isinstance(code, str):
        m = re.fullmatch(r"\s*EPSG:(\d+)\s*", code, re.IGNORECASE)
        if m:
            return int(m.group(1))
    return None


@dataclass(frozen=True)
class Grid:
    """Where an asset's pixels are, from the projection extension.

    Attributes
    ----------
    epsg : int or None
        EPSG code of the CRS.
    shape : (int, int) or None
        Rows and columns (``proj:shape``).
    transform : tuple of 6 float or None
        Affine ``a, b, c, d, e, f`` (``proj:transform``): pixel size and origin in CRS units
        (m for UTM).
    bbox : tuple of 4 float or None
        ``proj:bbox`` (min x, min y, max x, max y) in CRS units.
    """

    epsg: int | None = None
    shape: tuple[int, int] | None = None
    transform: tuple[float, float, float, float, float, float] | None = None
    bbox: tuple[float, float, float, float] | None = None

    @property
    def affine(self) -> tuple[float, float, float, float, float, float] | None:
        """The transform, else the north-up one that ``proj:bbox`` and ``proj:shape`` imply."""
        if self.transform is not None:
            return self.transform
        if self.bbox is not None and self.shape is not None and all(self.shape):
            minx, miny, maxx, maxy = self.bbox
            rows, cols = self.shape
            return ((maxx - minx) / cols, 0.0, minx, 0.0, -(maxy - miny) / rows, maxy)
        return None

    @property
    def resolution(self) -> tuple[float, float] | None:
        """Pixel size ``(x, y)`` in CRS units of a north-up :attr:`affine`, else None."""
        t = self.affine
        if t is not None and t[1] == 0 and t[3] == 0 and t[0] != 0 and t[4] != 0:
            return (abs(t[0]), abs(t[4]))
        return None


def grid_of(asset: Mapping[str, Any], props: Mapping[str, Any]) -> Grid:
    """The projection of an asset: its ``proj:*`` fields over the item's (``props``)."""
    def pick(name):
        return asset.get(name, props.get(name))

    shape = pick("proj:shape")
    transform = pick("proj:transform")
    bbox = pick("proj:bbox")
    epsg = epsg_of(asset) if ("proj:epsg" in asset or "proj:code" in asset) else epsg_of(props)
    return Grid(
        epsg=epsg,
        shape=tuple(int(v) for v in shape[:2]) if _numbers(shape, 2) else None,
        transform=tuple(float(v) for v in transform[:6]) if _numbers(transform, 6) else None,
        bbox=tuple(float(v) for v in bbox[:4]) if _numbers(bbox, 4) and len(bbox) == 4 else None,
    )


def _numbers(value: Any, n: int) -> bool:
    return isinstance(value, (list, tuple)) and len(value) >= n and all(num(v) is not None for v in value[:n])


@dataclass(frozen=True)
class EoMeta:
    """An asset's first band as ``eo:bands`` / ``bands`` describe it (wavelengths in um)."""

    name: str | None = None
    common_name: str | None = None
    center_um: float | None = None
    fwhm_um: float | None = None
    n_bands: int = 1
    gsd: float | None = None

    @property
    def wavelengths_nm(self) -> tuple[float, float, float] | None:
        """``(centre - FWHM / 2, centre, centre + FWHM / 2)`` in nm; None without both."""
        if self.center_um is None or self.fwhm_um is None or self.fwhm_um <= 0:
            return None
        c, w = 1000.0 * self.center_um, 1000.0 * self.fwhm_um
        return (c - w / 2.0, c, c + w / 2.0)


def eo_meta(asset: Mapping[str, Any], item_eo: list) -> EoMeta:
    """Band metadata of an asset: STAC 1.0 ``eo:bands`` (dicts, or indices into the item's
    ``eo:bands`` as STAC 0.9 wrote them), STAC 1.1 ``bands`` or asset-level ``eo:`` fields."""
    eo = asset.get("eo:bands")
    if isinstance(eo, list) and eo:
        first = eo[0]
        if isinstance(first, int) and not isinstance(first, bool) and 0 <= first < len(item_eo):
            first = item_eo[first]
        b = first if isinstance(first, Mapping) else {}
        return EoMeta(b.get("name"), b.get("common_name") or asset.get("eo:common_name"),
                       num(b.get("center_wavelength")), num(b.get("full_width_half_max")), len(eo),
                       num(b.get("gsd")))
    bands = asset.get("bands")
    if isinstance(bands, list) and bands:
        b = bands[0] if isinstance(bands[0], Mapping) else {}
        return EoMeta(b.get("name"), b.get("eo:common_name") or asset.get("eo:common_name"),
                       num(b.get("eo:center_wavelength", asset.get("eo:center_wavelength"))),
                       num(b.get("eo:full_width_half_max", asset.get("eo:full_width_half_max"))),
                       len(bands))
    return EoMeta(None, asset.get("eo:common_name"), num(asset.get("eo:center_wavelength")),
                   num(asset.get("eo:full_width_half_max")), 1)


@dataclass(frozen=True)
class RasterMeta:
    """An asset's first band as the raster extension describes it."""

    scale: float | None = None
    offset: float | None = None
    nodata: Any = None
    data_type: str | None = None
    unit: str | None = None
    spatial_resolution: float | None = None


def raster_meta(asset: Mapping[str, Any]) -> RasterMeta:
    """Scale, offset, no-data, data type and unit: ``raster:bands`` (1.0) or STAC 1.1 fields."""
    rb = asset.get("raster:bands")
    if isinstance(rb, list) and rb and isinstance(rb[0], Mapping):
        b = rb[0]
        return RasterMeta(num(b.get("scale")), num(b.get("offset")), b.get("nodata"), b.get("data_type"),
                           b.get("unit"), num(b.get("spatial_resolution")))
    bands = asset.get("bands")
    b = bands[0] if isinstance(bands, list) and bands and isinstance(bands[0], Mapping) else {}

    def pick(name):
        return b.get(name, asset.get(name))

    return RasterMeta(num(pick("raster:scale")), num(pick("raster:offset")), pick("nodata"),
                       pick("data_type"), pick("unit"), num(pick("raster:spatial_resolution")))


def media_type(asset: Mapping[str, Any]) -> str:
    """The asset's media type, lower case (``""`` if none)."""
    return str(asset.get("type") or "").lower()


def is_raster_asset(asset: Mapping[str, Any]) -> bool:
    """A GeoTIFF / JPEG 2000 (or untyped) asset whose roles do not say it is no band."""
    media = media_type(asset)
    if media and not any(media.startswith(m) for m in _RASTER_MEDIA):
        return False
    roles = {str(r).lower() for r in asset.get("roles") or []}
    return not (roles & _NON_SPECTRAL_ROLES)


def is_zarr(asset: Mapping[str, Any]) -> bool:
    """A Zarr store (EOPF), which GDAL and stackstac do not read as one raster."""
    return any(media_type(asset).startswith(m) for m in _ZARR_MEDIA)
