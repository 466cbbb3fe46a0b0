"""Stack STAC items as one lazy, wavelength-aware ``(time, band, y, x)`` DataArray.

:func:`stack_items` reads each item once (:func:`.items.read_item`), chooses the bands
(:func:`.select.stack_bands`), hands stackstac item dicts it reads right (``proj:epsg``
set, one ``raster:bands`` entry with the decided scale and offset) and labels the result
with wavelengths; the assets are read by :class:`.reader.SenseiReader` when computed.
"""

from __future__ import annotations

import collections
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ...bands import BAND_KIND, WAVELENGTH_CENTER, WAVELENGTH_MAX, WAVELENGTH_MIN
from ...errors import NoItemsError, StacError
from .items import BandAsset, ItemInfo, _item_dict, api_root, read_item
from .profiles import StacProfile, find_profile, load_profile
from .reader import SenseiReader, asset_timeout, gdal_env
from .search import DEFAULT_TIMEOUT_S, search
from .select import WAVELENGTH_MODES, stack_bands, wavelengths_of

__all__ = ["stack_items", "open_stac"]

# Asset fields stackstac needs; band and raster metadata would become misleading band
# coordinates (the values are scaled, the wavelengths are attached afterwards).
_KEEP_ASSET_FIELDS = {"href", "type", "title", "roles", "gsd"}


def _read_items(dicts: list[dict], sensor: str | None, collection_profile, api_url: str | None) -> list[ItemInfo]:
    """Each item read once; the profile chosen once per collection, from all its items' keys."""
    fixed = None if collection_profile in (None, True, False) else load_profile(collection_profile)
    per_collection: dict[Any, StacProfile | bool] = {}
    infos = []
    for d in dicts:
        if collection_profile is False or fixed is not None:
            prof = False if fixed is None else fixed
        else:
            cid = d.get("collection")
            if cid not in per_collection:
                keys = {k for x in dicts if x.get("collection") == cid for k in (x.get("assets") or {})}
                per_collection[cid] = find_profile(cid, keys, api_url or api_root(d)) or False
            prof = per_collection[cid]
        infos.append(read_item(d, prof, sensor=sensor))
    return infos


def _for_stackstac(item: dict, info: ItemInfo, keys: Sequence[str], calibrate: bool) -> dict:
    """A copy of ``item`` that stackstac 0.5 reads right: ``proj:epsg`` set, only the stacked
    assets, each with one ``raster:bands`` entry carrying the decided scale and offset."""
    props = dict(item.get("properties") or {})
    if info.grid.epsg is not None:
        props["proj:epsg"] = info.grid.epsg
    assets = {}
    for band in info.bands:
        if band.key not in keys:
            continue
        src = item["assets"][band.key]
        a = {k: v for k, v in src.items() if k in _KEEP_ASSET_FIELDS or k.startswith("proj:")}
        if band.grid.epsg is not None:
            a["proj:epsg"] = band.grid.epsg
        if band.grid.transform is None and band.grid.affine is not None:
            # stackstac reads an asset's proj:bbox only with the item's shape and transform;
            # the transform it implies places the asset exactly.
            a["proj:transform"] = list(band.grid.affine)
            a["proj:shape"] = list(band.grid.shape)
        if calibrate:
            cal = band.calibration
            # NumPy float32 scalars: stackstac checks np.can_cast(type(scale), dtype).
            a["raster:bands"] = [{"scale": np.float32(cal.scale), "offset": np.float32(cal.offset)}]
        assets[band.key] = a
    return {**item, "properties": props, "assets": assets}


def _stacked(infos: Sequence[ItemInfo], keys: Sequence[str]) -> list[tuple[ItemInfo, BandAsset]]:
    return [(i, b) for i in infos for b in i.bands if b.key in keys]


def _check_stackable(infos, keys, calibrate: bool, epsg: int | None) -> None:
    """Refuse before stackstac what it could not do right: calibration, a missing CRS."""
    pairs = _stacked(infos, keys)
    if calibrate:
        for _, band in pairs:
            if band.calibration.problem:
                raise StacError(band.calibration.problem)
    no_crs = sorted({i.id for i, b in pairs if b.grid.epsg is None})
    if epsg is None and no_crs:
        raise StacError(
            f"item(s) {no_crs[:3]} give no CRS (no proj:epsg or proj:code on the item or its assets): "
            "pass epsg=... (CLI: --epsg; the output CRS, e.g. the UTM zone of the area; the assets are "
            "reprojected)"
        )


def _resolution(infos, keys, resolution, epsg) -> tuple[float, float] | None:
    """The output pixel size: as given, else the most common native one (finest on a tie)."""
    if isinstance(resolution, (int, float)):
        return (float(resolution), float(resolution))
    if resolution is not None:
        return tuple(float(v) for v in resolution)
    bands = [b for _, b in _stacked(infos, keys)]
    if epsg is not None and any(b.grid.epsg not in (None, epsg) for b in bands):
        if all(b.grid.affine for b in bands):
            return None  # reprojected: stackstac takes the finest, measured in the new CRS
        native = []
    else:
        native = [b.resolution for b in bands if b.resolution is not None]
    if not native:
        ids = sorted({i.id for i in infos})[:3]
        raise StacError(f"item(s) {ids} give no pixel size in the output CRS (no proj:transform, "
                        "proj:shape with proj:bbox, or gsd): pass resolution=... (CLI: --resolution) in CRS "
                        "units (m)")
    counts = collections.Counter((round(r[0], 6), round(r[1], 6)) for r in native)
    top = max(counts.values())
    return min((r for r, c in counts.items() if c == top), key=lambda r: r[0] * r[1])


def _aligned_bounds(bounds, origin: tuple[float, float], res: tuple[float, float]):
    """Grow ``bounds`` outwards to whole pixels of the grid through ``origin``."""
    x0, y0 = origin
    rx, ry = res
    return (x0 + math.floor((bounds[0] - x0) / rx + 1e-9) * rx,
            y0 + math.floor((bounds[1] - y0) / ry + 1e-9) * ry,
            x0 + math.ceil((bounds[2] - x0) / rx - 1e-9) * rx,
            y0 + math.ceil((bounds[3] - y0) / ry - 1e-9) * ry)


def _native_grid(pairs, out_epsg, resolution) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Origin and pixel size of the first stacked asset whose own grid is the output grid
    (same CRS; same pixel size as ``resolution``, if given), or None if none is."""
    ref = next((b for _, b in pairs if b.grid.resolution and b.grid.affine and b.grid.epsg == out_epsg
                and (resolution is None or np.allclose(b.grid.resolution, resolution))), None)
    if ref is None:
        return None
    t = ref.grid.affine
    return (t[2], t[5]), tuple(resolution or ref.grid.resolution)


def _clip_bounds(infos, keys, bounds, bounds_latlon, epsg, resolution) -> tuple[tuple | None, bool]:
    """Bounds in the output CRS for ``bounds`` (output CRS) or a lon/lat box, grown to whole
    pixels, and whether they are whole pixels of an asset's own grid. On that grid, with its
    pixel size, the assets are read without resampling; else a reprojected box must be
    snapped by stackstac to the output resolution (or its pixels would be the box divided
    by a whole count), and a hand-given one grows from its own upper-left corner."""
    from pyproj import Transformer

    pairs = _stacked(infos, keys)
    out_epsg = epsg or next((b.grid.epsg for _, b in pairs if b.grid.epsg), None)
    if bounds_latlon is not None:
        if out_epsg is None:
            return None, False  # _check_stackable has said what is missing
        # Along the whole outline, not the corners only: in UTM a parallel bulges between
        # them (a 6 deg box at 60 N reaches 3.8 km further south at the central meridian).
        box = Transformer.from_crs(4326, out_epsg, always_xy=True).transform_bounds(*bounds_latlon, densify_pts=21)
    else:
        box = tuple(float(v) for v in bounds)
    grid = _native_grid(pairs, out_epsg, resolution) if out_epsg is not None else None
    if grid is not None:
        return _aligned_bounds(box, *grid), True
    if bounds_latlon is None and resolution is not None:
        return _aligned_bounds(box, (box[0], box[3]), resolution), True
    return box, False


def _stackstac(prepared: list[dict], keys: list[str], calibrate: bool, timeout: float,
               nodata_by_href: Mapping[str, float], *, resampling: str, chunksize: int, **grid: Any):
    """``stackstac.stack`` of the prepared items: float32, NaN fill, our reader (which masks the
    declared no-data values) and GDAL options."""
    import stackstac
    from rasterio.enums import Resampling

    try:
        return stackstac.stack(
            prepared, assets=keys, resampling=getattr(Resampling, resampling),
            chunksize=(1, -1, chunksize, chunksize), dtype=np.dtype("float32"), fill_value=np.float32(np.nan),
            rescale=calibrate, xy_coords="center", errors_as_nodata=(),
            reader=functools.partial(SenseiReader, nodata_by_href=nodata_by_href),
            gdal_env=gdal_env(asset_timeout(timeout)), **grid,
        )
    except ValueError as e:
        if "common CRS" in str(e):
            raise StacError(f"the items are in different CRSs and cannot share a grid: {e}. Pass epsg=... (CLI: --epsg) "
                            "(reprojects) or narrow the search to one UTM zone.") from e
        raise


def _labelled(da, chosen: Mapping[str, BandAsset], infos: Sequence[ItemInfo], calibrate: bool, mode: str):
    """Band coordinates (wavelengths in nm and um, kind, names) and attributes on the stack."""
    bands = [chosen[str(k)] for k in da.band.values.tolist()]
    wl = np.array([wavelengths_of(b, mode) for b in bands], dtype=np.float64).reshape(-1, 3)
    da = da.assign_coords({
        WAVELENGTH_MIN: ("band", wl[:, 0]),
        WAVELENGTH_CENTER: ("band", wl[:, 1]),
        WAVELENGTH_MAX: ("band", wl[:, 2]),
        BAND_KIND: ("band", np.array([b.kind for b in bands], dtype=object)),
        "common_name": ("band", np.array([b.common_name for b in bands], dtype=object)),
        "sensor_band": ("band", np.array([b.sensor_band for b in bands], dtype=object)),
        "center_wavelength": ("band", wl[:, 1] / 1000.0),
        "full_width_half_max": ("band", (wl[:, 2] - wl[:, 0]) / 1000.0),
    })
    # Our per-item scale/offset would show up as a misleading band coordinate.
    da = da.drop_vars([c for c in ("raster:bands",) if c in da.coords])
    spec = da.attrs.get("spec")
    attrs = {k: v for k, v in da.attrs.items() if k not in ("spec", "transform")}
    if calibrate:
        kinds = {i.radiometry for i in infos if i.profile is not None}
        attrs["radiometry"] = kinds.pop() if len(kinds) == 1 else "as_stored"
        attrs["units"] = "reflectance (reflective bands); kelvin (thermal bands)"
    else:
        attrs["radiometry"] = "DN"
    sensors = {i.sensor for i in infos if set(i.keys) & set(chosen)}
    if len(sensors) == 1 and None not in sensors:
        attrs["sensor"] = sensors.pop()
    attrs["stac_profile"] = ",".join(sorted({i.profile.id for i in infos if i.profile is not None}))
    attrs["stac_collections"] = ",".join(sorted({str(i.collection) for i in infos}))
    da.attrs = attrs
    da.name = "reflectance"
    if spec is not None:
        da = da.rio.write_crs(f"EPSG:{spec.epsg}")
        da = da.rio.write_transform(spec.transform)
    return da


def stack_items(
    items: Sequence[Mapping[str, Any]],
    *,
    assets: Sequence[str] | None = None,
    bands: Sequence[str] | None = None,
    sensor: str | None = None,
    collection_profile: "str | StacProfile | bool | None" = None,
    resolution: float | tuple[float, float] | None = None,
    epsg: int | None = None,
    bounds: Sequence[float] | None = None,
    bounds_latlon: Sequence[float] | None = None,
    chunksize: int = 1024,
    calibrate: bool = True,
    wavelengths: str = "auto",
    resampling: str = "nearest",
    api_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> "xarray.DataArray":  # noqa: F821
    """Stack STAC items as a lazy, wavelength-aware ``(time, band, y, x)`` DataArray.

    Parameters
    ----------
    items : sequence of dict
        STAC items, as dicts (e.g. from :func:`search`); pystac Items are converted.
    assets : sequence of str, optional
        Asset keys to stack, in that order. Default: every spectral asset, one per band.
    bands : sequence of str, optional
        Alternative to ``assets``: band names or aliases of the sensor (``"B04"``, ``"red"``,
        ``"nir08"``) or asset keys, in that order.
    sensor : str, optional
        Catalog sensor id or alias for all items. Default: from the collection profile, else
        from each item's ``platform`` / ``constellation``.
    collection_profile : str, StacProfile or bool, optional
        Profile id/alias (see :func:`list_profiles`). Default (None): found from the items'
        collection id and asset keys (:func:`find_profile`); False: use none.
    resolution : float or (float, float), optional
        Output pixel size in CRS units (m). Default: the most common native resolution of
        the stacked assets (the finest on a tie), as ``open_scene`` does; assets without
        ``proj:transform`` count with their ``gsd``.
    epsg : int, optional
        Output CRS. Default: the items' CRS (all must share one).
    bounds : sequence of 4 float, optional
        Output bounds ``(minx, miny, maxx, maxy)`` in the output CRS, grown outwards to
        whole pixels of an asset's own grid where one is in that CRS at that resolution
        (so those assets are read without resampling), else to whole pixels of the
        resolution from the ``(minx, maxy)`` corner.
    bounds_latlon : sequence of 4 float, optional
        Output bounds in degrees ``(west, south, east, north)``; grown to whole pixels in
        the same way (reprojected: snapped to the resolution).
    chunksize : int
        Dask chunk size in pixels for y and x; time is chunked by 1, band is one chunk.
    calibrate : bool
        Apply scale and offset (reflectance; kelvin for thermal bands). False: the stored
        values as float32.
    wavelengths : {"auto", "items", "catalog"}
        Where band wavelengths come from: ``"auto"`` the sensor catalog for bands it
        identifies, item metadata (``eo:bands``, STAC 1.1 ``bands``) for the others;
        ``"items"`` item metadata first; ``"catalog"`` catalog bands only.
    resampling : str
        Rasterio resampling name for assets not on the output grid (default nearest).
    api_url : str, optional
        The API the items came from, to choose among profiles of the same collection id.
    timeout : float
        Seconds an asset read over HTTP may wait for an answer (GDAL's
        ``GDAL_HTTP_TIMEOUT``; 3 retries), so an unresponsive server fails the read
        instead of hanging it.

    Returns
    -------
    xarray.DataArray
        Dask-backed float32 ``(time, band, y, x)``, NaN at no data (outside the assets,
        the files' own no-data tag, and the no-data value the items or the collection
        profile declare). The band coordinate holds
        the asset keys, with coordinates ``wavelength_min_nm``, ``wavelength_center_nm``,
        ``wavelength_max_nm`` (nm), ``band_kind``, ``common_name``, ``sensor_band`` (catalog
        band name) and stackstac's ``center_wavelength`` / ``full_width_half_max`` (um).
        ``rio`` CRS and transform are set; ``attrs`` holds ``sensor`` (when all items share
        one), ``radiometry`` (``"toa"``, ``"surface"``, ``"as_stored"`` or ``"DN"``),
        ``stac_profile`` and ``stac_collections``.

    Raises
    ------
    NoItemsError
        If ``items`` is empty.
    NoUsableBandsError
        If an item has none of the bands or no spectral band at all (the message says why),
        or a requested band or asset is unknown.
    StacError
        If items cannot share one grid (several CRSs without ``epsg=``, no CRS or pixel
        size) or one band set (several sensors), or, with ``calibrate=True``, a scale or
        offset is unknown (the message says what is missing).
    """
    import rioxarray  # noqa: F401  (registers .rio)

    if assets is not None and bands is not None:
        raise ValueError("give assets=... or bands=..., not both")
    if wavelengths not in WAVELENGTH_MODES:
        raise ValueError(f"wavelengths must be 'auto', 'items' or 'catalog', got {wavelengths!r}")
    dicts = [_item_dict(it) for it in items]
    if not dicts:
        raise NoItemsError("no items to stack: the list is empty (widen the search)")
    infos = _read_items(dicts, sensor, collection_profile, api_url)
    chosen = stack_bands(infos, assets=assets, bands=bands, mode=wavelengths)
    keys = list(chosen)
    _check_stackable(infos, keys, calibrate, epsg)
    resolution = _resolution(infos, keys, resolution, epsg)
    # Without a transform the grid comes from the item's lon/lat bbox: snap it to whole
    # pixels from the CRS origin, where Sentinel-2 tiles' 10 and 20 m pixels lie.
    snap = bounds is None and not any(b.grid.affine for _, b in _stacked(infos, keys))
    if bounds is not None or bounds_latlon is not None:
        bounds, whole_pixels = _clip_bounds(infos, keys, bounds, bounds_latlon, epsg, resolution)
        snap = not whole_pixels
    prepared = [_for_stackstac(d, i, keys, calibrate) for d, i in zip(dicts, infos)]
    nodata_by_href = {b.href: b.nodata for _, b in _stacked(infos, keys) if b.nodata is not None}
    da = _stackstac(prepared, keys, calibrate, timeout, nodata_by_href, epsg=epsg, resolution=resolution, bounds=bounds,
                    snap_bounds=snap, resampling=resampling, chunksize=chunksize)
    return _labelled(da, chosen, infos, calibrate, wavelengths)


def open_stac(
    url: str,
    collections: str | Sequence[str],
    *,
    bbox: Sequence[float] | None = None,
    intersects: Mapping[str, Any] | None = None,
    datetime: str | None = None,
    query: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | str | None = None,  # noqa: A002
    max_items: int | None = None,
    bands: Sequence[str] | None = None,
    assets: Sequence[str] | None = None,
    sensor: str | None = None,
    collection_profile: "str | StacProfile | bool | None" = None,
    resolution: float | None = None,
    epsg: int | None = None,
    clip: bool = True,
    chunksize: int = 1024,
    calibrate: bool = True,
    wavelengths: str = "auto",
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
    **search_kw: Any,
) -> "xarray.DataArray":  # noqa: F821
    """Search a STAC API and stack the matching items (see :func:`search`, :func:`stack_items`).

    Parameters
    ----------
    url, collections, bbox, intersects, datetime, query, filter, max_items, timeout
        The search (see :func:`search`).
    bands, assets, sensor, collection_profile, resolution, epsg, chunksize, calibrate, wavelengths
        The stacking (see :func:`stack_items`).
    clip : bool
        With ``bbox``: stack only the bbox, grown to whole pixels of the assets' grid
        (default); False stacks the items' full extent.
    **search_kw
        More search arguments (``limit``, ``headers``, ``modifier``, ...).

    Returns
    -------
    xarray.DataArray
        Lazy ``(time, band, y, x)`` float32 scene with wavelength coordinates.
    """
    items = search(url, collections, bbox=bbox, intersects=intersects, datetime=datetime,
                   query=query, filter=filter, max_items=max_items, timeout=timeout, **search_kw)
    return stack_items(
        items, assets=assets, bands=bands, sensor=sensor, collection_profile=collection_profile,
        resolution=resolution, epsg=epsg, bounds_latlon=bbox if (clip and bbox is not None) else None,
        chunksize=chunksize, calibrate=calibrate, wavelengths=wavelengths, api_url=url,
        timeout=asset_timeout(timeout),
    )
