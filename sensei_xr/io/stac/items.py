"""One STAC item, read once into a small typed model (pure: no network, no files).

:func:`read_item` turns an item dict (STAC 1.0 or 1.1, as any API serves it) and,
optionally, its collection profile (:mod:`.profiles`) or Collection into an
:class:`ItemInfo`: the item's sensor, Sentinel-2 processing baseline and projection, and one
:class:`BandAsset` per spectral asset with

* the **band**: asset key, the catalog band it holds (by collection profile, else by the
  sensor catalog from the key or the ``eo:bands`` / STAC 1.1 ``bands`` name), wavelengths
  in nm (the catalog's band limits, and the item's own centre +- FWHM / 2) and kind
  (``"reflective"`` or ``"thermal"``: ``B10`` is thermal for HLS L30 and cirrus for
  Sentinel-2, so the sensor decides, never the key alone);
* its **calibration** ``value = stored * scale + offset`` in reflectance (kelvin for thermal
  bands), from ``raster:bands`` (STAC 1.0) or ``raster:scale`` / ``raster:offset`` (1.1),
  else the profile; for Sentinel-2 the offset is decided once, from the processing
  baseline (``s2:processing_baseline``, STAC 1.1 ``processing:version``, or the ``N0400`` /
  ``N04.00`` of the product id; never the date) and Earth Search's
  ``earthsearch:boa_offset_applied`` (values already shifted back: offset 0), so an item
  that carries both the flag and a -0.1 ``raster:bands`` offset is not corrected twice;
  a scale that is unknown or gives radiance is reported in :attr:`Calibration.problem`;
* its **grid**: EPSG code from ``proj:epsg`` or ``proj:code``, ``proj:shape``,
  ``proj:transform`` and ``proj:bbox`` (asset fields over item fields), and ``gsd``.

Items whose bands no catalog describes are refused with a :class:`NoUsableBandsError` that
says why (GOES ABI, Terra ASTER, MODIS land surface temperature, Landsat MSS, EOPF Zarr
assets).

Examples
--------
>>> import json
>>> from sensei_xr.io.stac.items import read_item
>>> info = read_item(json.load(open("S2B_33RYP_20240517_0_L2A.json")))   # doctest: +SKIP
>>> info.band("red").sensor_band, info.band("red").calibration.offset    # doctest: +SKIP
('B04', 0.0)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ... import catalogs
from ...bands import THERMAL_FROM_NM
from ...errors import NoUsableBandsError
from .fields import (
    EoMeta,
    Grid,
    RasterMeta,
    epsg_of,
    eo_meta,
    grid_of,
    is_raster_asset,
    is_zarr,
    media_type,
    num,
    raster_meta,
)
from .profiles import StacProfile, find_profile, list_profiles, load_profile
from .sentinel2 import QUANTIFICATION_SCALE, Sentinel2Processing, sentinel2_processing

__all__ = [
    "Grid",
    "Calibration",
    "BandAsset",
    "ItemInfo",
    "read_item",
    "epsg_of",
    "api_root",
]

_EO_TOLERANCE_NM = 10.0  # public eo:bands round centres to 0.01 um
_SENTINEL2 = "sentinel2_msi"
# Instruments that share a platform with a catalogued sensor but not its bands: refused by
# name, so that "landsat-4" does not make a Landsat MSS scene a TM scene.
_UNCATALOGUED_INSTRUMENTS = {
    "mss": "Landsat MSS (Landsats 1-5) has four bands, green 500-600, red 600-700, NIR "
           "700-800 and 800-1100 nm, not those of the Thematic Mapper its platform also "
           "carried, and no sensor catalog describes them",
}


def _item_dict(item: Any) -> dict:
    """A plain dict of a STAC item dict or pystac Item (hrefs left as they are)."""
    if isinstance(item, Mapping):
        return dict(item)
    to_dict = getattr(item, "to_dict", None)
    if to_dict is not None:
        return to_dict(transform_hrefs=False)
    raise TypeError(f"items must be STAC item dicts (or pystac Items), got {type(item).__name__}")


# ---------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Calibration:
    """``value = stored * scale + offset`` for one asset, or why it is unknown.

    Attributes
    ----------
    scale, offset : float or None
        Reflectance (kelvin for thermal bands) per stored unit, and the additive term;
        None when unknown (see ``problem``).
    units : str
        ``"reflectance"`` or ``"kelvin"``.
    source : str
        Where scale and offset come from (item fields, profile, Sentinel-2 baseline rule).
    problem : str
        Empty when known; else the error message (what is missing and how to fix it).
    """

    scale: float | None
    offset: float | None
    units: str
    source: str
    problem: str = ""


@dataclass(frozen=True)
class BandAsset:
    """One spectral asset of an item: which band it is and how to calibrate it.

    Attributes
    ----------
    key, href, media_type : str
        Asset key, href and media type as in the item.
    roles : tuple of str
    sensor_band : str
        Catalog band name (``"B04"``), ``""`` when only the item's metadata describe it.
    common_name : str
        STAC common name (catalog's first), ``""`` if none.
    kind : str
        ``"reflective"`` or ``"thermal"``.
    catalog_nm, item_nm : (float, float, float) or None
        ``(min, centre, max)`` wavelengths in nm: the catalog band's limits, and the item's
        ``eo:bands`` centre +- FWHM / 2.
    calibration : Calibration
    data_type : str or None
        ``raster:bands`` data type (``"uint16"``).
    nodata : float or None
        The stored value that means no data, as declared: the item's ``raster:bands``
        ``nodata``, else the profile's (its asset entry, then its defaults). NaN for a
        declared ``"nan"``; None when none is declared (the file's own tag still counts).
    gsd : float or None
        Ground sample distance of the asset, m (``gsd``, ``eo:gsd`` or
        ``raster:bands`` ``spatial_resolution``).
    grid : Grid
        The asset's projection (asset fields over the item's).
    """

    key: str
    href: str
    media_type: str
    roles: tuple[str, ...]
    sensor_band: str
    common_name: str
    kind: str
    catalog_nm: tuple[float, float, float] | None
    item_nm: tuple[float, float, float] | None
    calibration: Calibration
    data_type: str | None = None
    nodata: float | None = None
    gsd: float | None = None
    grid: Grid = field(default_factory=Grid)

    @property
    def wavelengths_nm(self) -> tuple[float, float, float]:
        """``(min, centre, max)`` in nm: the catalog's, else the item's."""
        return self.catalog_nm or self.item_nm  # type: ignore[return-value]

    @property
    def is_thermal(self) -> bool:
        """True for emissive (thermal infrared) bands, calibrated to kelvin."""
        return self.kind == "thermal"

    @property
    def resolution(self) -> tuple[float, float] | None:
        """Native pixel size ``(x, y)`` in CRS units: from the grid, else the gsd."""
        return self.grid.resolution or ((self.gsd, self.gsd) if self.gsd else None)


@dataclass(frozen=True)
class ItemInfo:
    """What one STAC item holds, as :func:`read_item` read it.

    Attributes
    ----------
    id : str
    collection : str or None
    datetime : str or None
        ``datetime`` (or ``start_datetime``) as in the item.
    platform : str or None
    instruments : tuple of str
    sensor : str or None
        Catalog sensor id (``"sentinel2_msi"``), None when no catalog knows it.
    profile : StacProfile or None
        The collection profile used.
    sentinel2 : Sentinel2Processing or None
        Set for Sentinel-2 items.
    grid : Grid
        The item-level projection.
    bands : tuple of BandAsset
        Spectral assets in the item's order (JPEG 2000 twins and other resolutions of one
        band included; :mod:`.select` keeps one per band).
    asset_keys : tuple of str
        Every asset key of the item.
    """

    id: str
    collection: str | None
    datetime: str | None
    platform: str | None
    instruments: tuple[str, ...]
    sensor: str | None
    profile: StacProfile | None
    sentinel2: Sentinel2Processing | None
    grid: Grid
    bands: tuple[BandAsset, ...]
    asset_keys: tuple[str, ...] = ()

    @property
    def keys(self) -> list[str]:
        """Keys of the spectral assets."""
        return [b.key for b in self.bands]

    @property
    def radiometry(self) -> str | None:
        """``"toa"`` or ``"surface"`` as the profile says; None without a profile."""
        return self.profile.radiometry if self.profile is not None else None

    def band(self, key: str) -> BandAsset:
        """The spectral asset ``key``.

        Raises
        ------
        KeyError
            If ``key`` is not a spectral asset of the item (the message lists them).
        """
        for b in self.bands:
            if b.key == key:
                return b
        raise KeyError(f"{key!r} is not a spectral asset of item {self.id!r}; they are {self.keys}")


# --------------------------------------------------------------------- band, calibration


def _catalog_band(key: str, eo: EoMeta, sensor: str | None, profile: StacProfile | None):
    """The catalog band an asset holds, or None."""
    if sensor is None:
        return None
    if profile is not None:
        return profile.band(key, sensor)
    cat = catalogs.get_sensor(sensor)
    for candidate in (key, eo.name, eo.common_name):
        if isinstance(candidate, str) and cat.has_band(candidate):
            return cat.band(candidate)
    return None


def _is_float(data_type: Any) -> bool:
    return isinstance(data_type, str) and data_type.lower().startswith(("float", "cfloat"))


def _is_radiance(unit: Any) -> bool:
    text = str(unit or "").lower()
    return "steradian" in text or re.search(r"\bsr\b", text) is not None


def _is_level1(item: Mapping[str, Any]) -> bool:
    """A Landsat (or other) Level-1 product, by its processing level, correction or id."""
    props = item.get("properties") or {}
    levels = (props.get(k) for k in ("processing:level", "landsat:correction", "landsat:processing_level",
                                     "product:type"))
    return (any(isinstance(v, str) and v.upper().startswith("L1") for v in levels)
            or re.search(r"_L1(TP|GT|GS)_", str(item.get("id", ""))) is not None)


def _no_scale_problem(item: Mapping[str, Any], key: str, rm: RasterMeta, profile: StacProfile | None,
                      units: str) -> str:
    where = f"item {item.get('id')!r}, asset {key!r}"
    if _is_radiance(rm.unit):
        why = f"its raster:bands scale gives radiance ({rm.unit}), not {units}"
    else:
        dtype = f"holds {rm.data_type} values and " if rm.data_type else ""
        why = (f"{dtype}no scale to {units} is known (no raster:bands scale, "
               f"{'profile ' + profile.id + ' gives none' if profile else 'no collection profile'})")
    mtl = [k for k in item.get("assets") or {} if "mtl" in k.lower()]
    hint = ""
    if mtl and _is_level1(item):
        hint = (f"; Level-1 DN become reflectance with the gains in the item's {mtl[0]!r} asset "
                "(REFLECTANCE_MULT_BAND_n, REFLECTANCE_ADD_BAND_n and the sun elevation): download "
                "the scene and open it with sensei_xr.open_scene, which reads them")
    return (f"{where}: {why}{hint}. Pass calibrate=False to get the stored values, or "
            "collection_profile=... with the scale.")


def _nodata(declared: Any, key: str, profile: StacProfile | None) -> float | None:
    """The declared no-data value of an asset: the item's, else the profile's entry, else its
    defaults. STAC writes NaN and infinities as the strings ``"nan"``, ``"inf"``, ``"-inf"``."""
    values = [declared]
    if profile is not None:
        spec = profile.asset(key)
        values += [spec.nodata if spec is not None else None, profile.default_nodata]
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        try:
            return float(v)
        except (TypeError, ValueError):
            continue  # an unreadable declaration says nothing
    return None


def _calibration(item: Mapping[str, Any], key: str, asset: Mapping[str, Any], kind: str, sensor: str | None,
                 profile: StacProfile | None, s2: Sentinel2Processing | None) -> Calibration:
    """``value = stored * scale + offset`` of one asset (reflectance, or kelvin if thermal)."""
    units = "kelvin" if kind == "thermal" else "reflectance"
    rm = raster_meta(asset)
    if _is_radiance(rm.unit):
        return Calibration(None, None, units, "raster:bands", _no_scale_problem(item, key, rm, profile, units))
    spec = profile.asset(key) if profile is not None else None
    # First source that gives a value: the item, the profile's asset entry, its defaults.
    sources = [(rm.scale, rm.offset, "raster:bands")]
    if profile is not None:
        if spec is not None:
            sources.append((spec.scale, spec.offset, f"profile {profile.id} [assets.{key}]"))
        sources.append((profile.default_scale, profile.default_offset, f"profile {profile.id} [defaults]"))
    scale, s_src = next(((s, src) for s, _, src in sources if s is not None), (None, ""))
    offset, o_src = next(((o, src) for _, o, src in sources if o is not None), (None, ""))
    s2_rule = (profile.offset_rule == "sentinel2_baseline") if profile is not None else (
        sensor == _SENTINEL2 and not _is_float(rm.data_type))
    if s2_rule and kind == "reflective" and s2 is not None:
        if scale is None:
            scale, s_src = QUANTIFICATION_SCALE, "Sentinel-2 quantification value 10000"
        decided, why = s2.offset_for(key, asset, scale)
        # Without a baseline only the item's own offset may stand, never a profile default.
        offset, o_src = (decided, why) if decided is not None else (rm.offset, "raster:bands")
        if offset is None:
            return Calibration(scale, None, units, f"scale: {s_src}", (
                f"item {item.get('id')!r}: cannot tell the Sentinel-2 offset of asset {key!r}: the item "
                "has no processing baseline (s2:processing_baseline, processing:version or N0400 in "
                "its product id), no earthsearch:boa_offset_applied and no raster:bands offset. Pass "
                "calibrate=False to get the stored values."))
    if scale is None and _is_float(rm.data_type):
        scale, s_src = 1.0, f"stored as {rm.data_type}"  # already in physical units
    if scale is None:
        return Calibration(None, offset, units, "", _no_scale_problem(item, key, rm, profile, units))
    return Calibration(float(scale), float(offset or 0.0), units,
                       f"scale: {s_src}; offset: {o_src or 'none given (0)'}")


def _band_asset(item: Mapping[str, Any], key: str, sensor: str | None, profile: StacProfile | None,
                s2: Sentinel2Processing | None) -> BandAsset | None:
    """One asset as a :class:`BandAsset`, or None when it is not one spectral band."""
    asset = item["assets"][key]
    props = item.get("properties") or {}
    item_eo = props.get("eo:bands") if isinstance(props.get("eo:bands"), list) else []
    eo = eo_meta(asset, item_eo)
    if eo.n_bands > 1:
        return None  # a multi-band asset (RGB visual, ASTER VNIR): stackstac reads one band per asset
    cat = _catalog_band(key, eo, sensor, profile)
    item_nm = eo.wavelengths_nm
    if cat is not None and eo.center_um is not None:
        c = 1000.0 * eo.center_um
        if not (cat.min_nm - _EO_TOLERANCE_NM <= c <= cat.max_nm + _EO_TOLERANCE_NM):
            raise NoUsableBandsError(
                f"item {item.get('id')!r}, asset {key!r}: its eo:bands centre {c:g} nm is outside band "
                f"{cat.name} of {sensor} ({cat.min_nm:g}-{cat.max_nm:g} nm) that the "
                f"{'profile ' + profile.id if profile else 'sensor catalog'} maps it to: the item is "
                "another sensor's, or the mapping is wrong; pass sensor=... or collection_profile=False, "
                "or fix the profile"
            )
    if cat is None and item_nm is None:
        return None
    kind = cat.kind if cat is not None else ("thermal" if item_nm[1] >= THERMAL_FROM_NM else "reflective")
    rm = raster_meta(asset)
    return BandAsset(
        key=key, href=str(asset.get("href", "")), media_type=media_type(asset),
        roles=tuple(str(r) for r in asset.get("roles") or []),
        sensor_band=cat.name if cat is not None else "",
        common_name=str((cat.common_name if cat is not None else None) or eo.common_name or ""),
        kind=kind,
        catalog_nm=tuple(float(v) for v in cat.wavelengths_nm) if cat is not None else None,
        item_nm=item_nm,
        calibration=_calibration(item, key, asset, kind, sensor, profile, s2),
        data_type=rm.data_type, nodata=_nodata(rm.nodata, key, profile),
        gsd=num(asset.get("gsd")) or num(asset.get("eo:gsd")) or eo.gsd or rm.spatial_resolution,
        grid=grid_of(asset, props),
    )


# ------------------------------------------------------------------------- the item


def _item_sensor(props: Mapping[str, Any], profile: StacProfile | None) -> str | None:
    platform = props.get("platform") or props.get("eo:platform")
    platform = platform if isinstance(platform, str) and platform.strip() else None
    if profile is not None:
        return profile.sensor_for(platform)
    for candidate in (platform, props.get("constellation")):
        if isinstance(candidate, str) and candidate.strip():
            try:
                return catalogs.get_sensor(candidate).id
            except catalogs.UnknownSensorError:
                continue
    return None


def _refuse_instrument(item: Mapping[str, Any], instruments: tuple[str, ...]) -> None:
    for name in instruments:
        why = _UNCATALOGUED_INSTRUMENTS.get(name.strip().casefold())
        if why:
            raise NoUsableBandsError(
                f"item {item.get('id')!r} is an instrument {name!r} scene: {why}. It has no usable "
                "spectral band here; register its bands (sensei_xr.catalogs.register_sensor) and pass "
                "sensor=... to read it anyway."
            )


def _no_bands_error(item: Mapping[str, Any], info: dict) -> NoUsableBandsError:
    """Why an item has no usable spectral band, in one line."""
    assets = item.get("assets") or {}
    keys = sorted(assets)
    zarr = sorted(k for k, a in assets.items() if is_zarr(a) and eo_meta(a, []).name)
    if zarr:
        return NoUsableBandsError(
            f"item {item.get('id')!r} has no usable spectral band: its bands are Zarr stores "
            f"({', '.join(zarr[:4])}{', ...' if len(zarr) > 4 else ''}; EOPF format), which GDAL and "
            "stackstac do not read as raster assets. Use the same product's GeoTIFF / JPEG 2000 "
            "assets (e.g. from the CDSE STAC API) or open the Zarr store with xarray.")
    profile, sensor = info["profile"], info["sensor"]
    parts = [f"collection profile {profile.id} maps none of them" if profile else
             f"no collection profile matches collection {item.get('collection')!r} (profiles: {list_profiles()})"]
    if sensor:
        parts.append(f"none is a band of sensor {sensor!r}")
    elif not info["platform"] and not info["instruments"]:
        parts.append(f"the item names no platform or instruments (sensors: {catalogs.list_sensors()})")
    else:
        parts.append(f"no sensor catalog knows platform {info['platform']!r} / instruments "
                     f"{list(info['instruments'])} (sensors: {catalogs.list_sensors()})")
    multi = sorted(k for k, a in assets.items() if eo_meta(a, []).n_bands > 1 and is_raster_asset(a))
    if multi:
        parts.append(f"assets {multi} hold several bands each")
    parts.append("no asset has eo:bands wavelengths (center_wavelength and full_width_half_max)")
    return NoUsableBandsError(
        f"item {item.get('id')!r} has no usable spectral band; its assets are {keys}: {'; '.join(parts)}. "
        "Pass sensor=... if it is a catalogued sensor, or describe its bands "
        "(sensei_xr.catalogs.register_sensor, or a collection profile in $SENSEI_XR_STAC_PROFILE_PATH)."
    )


def _with_item_assets(item: dict, collection: Mapping[str, Any] | None) -> dict:
    """The item with fields its assets lack taken from the collection's ``item_assets``."""
    templates = (collection or {}).get("item_assets") or {}
    if not templates:
        return item
    assets = {}
    for key, asset in (item.get("assets") or {}).items():
        template = templates.get(key)
        assets[key] = {**template, **asset} if isinstance(template, Mapping) else asset
    return {**item, "assets": assets}


def api_root(item: Mapping[str, Any]) -> str | None:
    """The URL of the API an item came from, by its ``root`` (else ``self``) link, or None."""
    for rel in ("root", "self"):
        for link in item.get("links") or []:
            if not isinstance(link, Mapping):
                continue
            href = str(link.get("href", ""))
            if link.get("rel") == rel and href.startswith(("http://", "https://")):
                return href
    return None


def _resolve_profile(item: Mapping[str, Any], profile, api_url: str | None) -> StacProfile | None:
    if profile is False:
        return None
    if profile is None or profile is True:
        return find_profile(item.get("collection"), item.get("assets") or {}, api_url or api_root(item))
    return load_profile(profile)


def read_item(
    item: Any,
    profile: "StacProfile | str | bool | None" = None,
    *,
    sensor: str | None = None,
    collection: Mapping[str, Any] | None = None,
    api_url: str | None = None,
) -> ItemInfo:
    """Read one STAC item into an :class:`ItemInfo` (see the module docstring).

    Parameters
    ----------
    item : dict or pystac.Item
        The STAC item.
    profile : StacProfile, str, bool or None
        Collection profile (object, id, alias or TOML path); None (default) or True: the
        profile of the item's collection and asset keys if one exists (:func:`find_profile`);
        False: none.
    sensor : str, optional
        Catalog sensor id or alias: overrides the profile and the item's platform.
    collection : dict, optional
        The item's STAC Collection: its ``item_assets`` supply asset fields the item lacks.
    api_url : str, optional
        The API the item came from, to choose among profiles of one collection id.

    Returns
    -------
    ItemInfo

    Raises
    ------
    NoUsableBandsError
        If no asset is a spectral band this package can read (the message says why: no
        catalog for the sensor, Zarr assets, an instrument whose bands are not catalogued)
        or an ``eo:bands`` centre contradicts the catalog band the asset is mapped to.
    """
    d = _with_item_assets(_item_dict(item), collection)
    props = d.get("properties") or {}
    instruments = tuple(str(i) for i in props.get("instruments") or [] if isinstance(i, str))
    if sensor is None:
        _refuse_instrument(d, instruments)
    prof = _resolve_profile(d, profile, api_url)
    sensor_id = catalogs.get_sensor(sensor).id if sensor else _item_sensor(props, prof)
    s2_rule = (prof.offset_rule == "sentinel2_baseline") if prof is not None else sensor_id == _SENTINEL2
    s2 = sentinel2_processing(d) if s2_rule else None
    assets = d.get("assets") or {}
    keys = [k for k in (prof.asset_keys if prof is not None else assets)
            if isinstance(assets.get(k), Mapping) and (prof is not None or is_raster_asset(assets[k]))
            and not is_zarr(assets[k])]
    bands = tuple(b for b in (_band_asset(d, k, sensor_id, prof, s2) for k in keys) if b is not None)
    platform = props.get("platform") or props.get("eo:platform")
    if not bands:
        raise _no_bands_error(d, {"profile": prof, "sensor": sensor_id, "platform": platform,
                                  "instruments": instruments})
    return ItemInfo(
        id=str(d.get("id")), collection=d.get("collection"),
        datetime=props.get("datetime") or props.get("start_datetime"),
        platform=platform if isinstance(platform, str) else None, instruments=instruments,
        sensor=sensor_id, profile=prof, sentinel2=s2, grid=grid_of({}, props), bands=bands,
        asset_keys=tuple(assets),
    )

