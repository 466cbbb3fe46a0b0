"""Open raster files as lazy, wavelength-aware scenes.

:func:`open_scene` reads one multi-band GeoTIFF/COG, a list of single-band files, or a
folder of band files (Landsat ``*_B4.TIF``, Sentinel-2 ``*_B04.jp2``, ...) with rioxarray,
chunked with Dask, and returns a DataArray with dims ``(band, y, x)``, the CRS and
transform kept, and wavelengths attached to the band coordinate. Bands at other
resolutions are brought onto one grid lazily (block mean to coarsen by an integer factor,
nearest neighbour to refine). With ``calibrate=True`` digital numbers become TOA
reflectance and brightness temperature (kelvin) from the product's metadata.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from os import PathLike
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import catalogs, radiometry
from ..bands import attach_wavelengths
from ..errors import SceneError

__all__ = ["SceneError", "open_scene", "RASTER_SUFFIXES"]

RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")
# Largest growth in pixel count allowed by resolution= (x4 finer along each axis): beyond
# it the pixel size is almost certainly in the wrong units.
_MAX_REFINE = 16

_LANDSAT_SENSORS = {
    "LANDSAT_4": "landsat45_tm",
    "LANDSAT_5": "landsat45_tm",
    "LANDSAT_7": "landsat7_etm",
    "LANDSAT_8": "landsat8_oli_tirs",
    "LANDSAT_9": "landsat9_oli2_tirs2",
}


def open_scene(
    source: str | PathLike | Sequence[str | PathLike],
    *,
    sensor: str | None = None,
    bands: Sequence[str] | None = None,
    chunks: int | dict | None = 1024,
    resolution: float | None = None,
    calibrate: bool = True,
    mtl: str | PathLike | None = None,
    processing_baseline: str | None = None,
) -> "xarray.DataArray":  # noqa: F821
    """Open a scene lazily as a wavelength-aware DataArray.

    Parameters
    ----------
    source : path-like or sequence of path-likes
        A multi-band raster file, a list of single-band files, or a folder of band files.
        Band names are read from the file names (the last ``_``-separated token that names
        a band of the sensor, e.g. ``LC08_..._B4.TIF`` -> ``B4``); files that name no band
        (QA, previews) are skipped.
    sensor : str, optional
        Catalog sensor id or alias. Detected from a Landsat MTL file or Sentinel-2
        ``MTD_MSIL*.xml`` beside the files when not given.
    bands : sequence of str, optional
        For band files: the bands to load (names or aliases), in that order; default all
        bands found, in catalog order. For a multi-band file: the names of its bands in
        file order, needed when the file has no band descriptions.
    chunks : int or dict, optional
        Dask chunk size in pixels for y and x (the band dimension is one chunk).
    resolution : float, optional
        Target pixel size in CRS units (m). Default: the most common resolution among the
        band files (the finest on a tie).
    calibrate : bool
        Convert DN to TOA reflectance / brightness temperature (K) when the product's
        metadata is found (Landsat MTL; Sentinel-2 ``MTD_MSIL*.xml`` or
        ``processing_baseline``); a Landsat Collection 2 Level-2 product (``*_SR_Bn``,
        ``*_ST_Bn`` with its MTL) to surface reflectance / surface temperature (K), with
        the Level-2 scaling of its MTL. Floating-point files are left as they are.
    mtl : path-like, optional
        Landsat MTL file, if not beside the band files.
    processing_baseline : str, optional
        Sentinel-2 processing baseline (e.g. ``"04.00"``) when no ``MTD_MSIL*.xml`` is
        found; decides the -1000 DN offset.

    Returns
    -------
    xarray.DataArray
        Dask-backed, dims ``(band, y, x)``, float32 (or the files' integer type when not
        calibrated), ``rio`` CRS and transform set, canonical wavelength coordinates on the
        band dimension, ``attrs["sensor"]`` and ``attrs["radiometry"]`` (``"toa"``,
        ``"surface"``, ``"as_stored"`` or ``"DN"``).
    """
    import rioxarray  # noqa: F401  (registers .rio)

    _check_chunks(chunks)
    if resolution is not None:
        _check_resolution(resolution)
    files, folder = _collect_files(source)
    mtl_path = Path(mtl) if mtl is not None else _find_sidecar(folder, "*MTL*.txt")
    s2_meta_path = _find_sidecar(folder, "MTD_MSIL*.xml")
    mtl_meta = radiometry.parse_mtl(mtl_path) if mtl_path is not None else None
    if sensor is None:
        sensor = _detect_sensor(mtl_meta, s2_meta_path)
    sensor_obj = catalogs.get_sensor(sensor) if sensor is not None else None

    if len(files) == 1 and _band_count(files[0]) > 1:
        da = _open_multiband(files[0], bands, chunks)
    else:
        if sensor_obj is None:
            raise SceneError(
                "cannot tell which band each file holds without a sensor (no Landsat MTL or "
                "Sentinel-2 MTD_MSIL*.xml file beside them): pass sensor=... (CLI: --sensor), one "
                f"of {catalogs.list_sensors()}"
            )
        named = _name_files(files, sensor_obj)
        if bands is not None:
            wanted = [sensor_obj.band(b).name for b in bands]
            missing = [b for b in wanted if b not in named]
            if missing:
                raise SceneError(
                    f"bands {missing} were asked for but no file holds them; found "
                    f"{sorted(named)} in {folder or 'the given files'}"
                )
        else:
            wanted = [b for b in sensor_obj.band_names if b in named]
        da = _stack_band_files([named[b] for b in wanted], wanted, chunks, resolution)

    if sensor_obj is not None:
        da = attach_wavelengths(da, sensor_obj.id)
    else:
        # A multi-band file with its own wavelength metadata is not supported without a
        # sensor: the band names must resolve somewhere.
        raise SceneError(
            "pass sensor=... so the bands' wavelengths can be looked up (or use "
            "sensei_xr.attach_wavelengths / explicit wavelength coordinates afterwards)"
        )

    da.attrs["radiometry"] = "DN" if np.issubdtype(da.dtype, np.integer) else "as_stored"
    if calibrate and np.issubdtype(da.dtype, np.integer):
        da = _calibrate(da, sensor_obj, mtl_meta, s2_meta_path, processing_baseline)
    da.name = da.name or "reflectance"
    return da


# --------------------------------------------------------------------------------------


def _collect_files(source) -> tuple[list[Path], Path | None]:
    if isinstance(source, (str, PathLike)):
        path = Path(source)
        if not path.exists():
            raise SceneError(f"{path} does not exist")
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in RASTER_SUFFIXES)
            if not files:
                raise SceneError(
                    f"no raster files ({', '.join(RASTER_SUFFIXES)}) in folder {path}"
                )
            return files, path
        return [path], path.parent
    files = [Path(p) for p in source]
    if not files:
        raise SceneError("an empty list of files was given")
    for p in files:
        if not p.exists():
            raise SceneError(f"{p} does not exist")
    return files, files[0].parent


def _find_sidecar(folder: Path | None, pattern: str) -> Path | None:
    if folder is None:
        return None
    found = sorted(folder.glob(pattern))
    return found[0] if found else None


def _detect_sensor(mtl_meta, s2_meta_path) -> str | None:
    if mtl_meta is not None:
        sid = str(mtl_meta.get("SPACECRAFT_ID", "")).upper()
        if sid in _LANDSAT_SENSORS:
            return _LANDSAT_SENSORS[sid]
    if s2_meta_path is not None:
        return "sentinel2_msi"
    return None


def _check_chunks(chunks) -> None:
    """Refuse a chunk size that is not a positive number of pixels (before any file is read)."""
    def ok(v, allow_whole: bool = True) -> bool:
        return (isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                and (v >= 1 or (allow_whole and v == -1)))

    example = "e.g. chunks=1024 or chunks={'y': 1024, 'x': 1024} (-1: the whole axis), or None"
    if chunks is None:
        return
    if isinstance(chunks, dict):
        unknown = sorted(set(map(str, chunks)) - {"band", "y", "x"})
        if unknown:
            raise SceneError(f"chunks has unknown dimension(s) {unknown}: the scene's dimensions are "
                             f"band, y and x; {example}")
        bad = {k: v for k, v in chunks.items() if not ok(v)}
        if bad:
            raise SceneError(f"chunks={chunks!r}: sizes must be whole numbers of pixels >= 1 (or -1), "
                             f"got {bad}; {example}")
        return
    if not ok(chunks, allow_whole=False):
        raise SceneError(f"chunks={chunks!r} is not a chunk size: give a whole number of pixels >= 1; "
                         f"{example}")


def _check_resolution(resolution) -> None:
    try:
        value = float(resolution)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(resolution, bool) or not (math.isfinite(value) and value > 0):
        raise SceneError(f"resolution={resolution!r} is not a pixel size: give a positive number in the "
                         "units of the files' CRS (metres for UTM), e.g. resolution=30")


def _open_raster(path: Path, chunks):
    """A lazy (band, y, x) DataArray of one file whose chunk reads name the file on failure."""
    import dask.array as dsa
    import rasterio
    import rioxarray
    from dask.base import tokenize

    try:
        src = rasterio.open(path)
    except Exception as e:  # rasterio raises several types for unreadable files
        raise SceneError(
            f"{path} is not a raster that GDAL can read ({type(e).__name__}: {e}); "
            "give GeoTIFF/COG/JP2 files"
        ) from e
    with src:
        _check_complete(path, src)
    try:
        # Metadata and coordinates only; pixels are read by _RasterReader, chunk by chunk.
        meta = rioxarray.open_rasterio(path, masked=False, cache=False)
    except Exception as e:  # rasterio raises several types for unreadable files
        raise SceneError(
            f"{path} is not a raster that GDAL can read ({type(e).__name__}: {e}); "
            "give GeoTIFF/COG/JP2 files"
        ) from e
    stat = path.stat()
    spec = _chunk_dict(chunks) or {}
    shape = tuple(meta.shape)
    chunk_tuple = tuple(n if spec.get(d, -1) == -1 else min(int(spec[d]), n)
                        for d, n in zip(meta.dims, shape))
    reader = _RasterReader(path, shape, meta.dtype)
    data = dsa.from_array(
        reader, chunks=chunk_tuple, lock=False, asarray=True,
        meta=np.empty((0,) * len(shape), dtype=meta.dtype),
        # Same file, same bytes, same chunks -> same graph keys (Dask can share reads).
        name=f"open_scene-{tokenize(str(path.resolve()), stat.st_size, stat.st_mtime_ns, chunk_tuple)}",
    )
    return meta.copy(data=data)


class _RasterReader:
    """Reads windows of one raster file for Dask; a failed read names the file and window.

    GDAL's own message for a truncated file is "Read failed. See previous exception for
    details", which names nothing: this reader says which file, where, and what to do.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype) -> None:
        self.path = str(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        import rasterio
        from rasterio.windows import Window

        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        ranges, squeeze = [], []
        for axis, (k, n) in enumerate(zip(key, self.shape)):
            if isinstance(k, (int, np.integer)):
                k = int(k) + n if k < 0 else int(k)
                k, _ = slice(k, k + 1), squeeze.append(axis)
            if not isinstance(k, slice):
                raise TypeError(f"reading {self.path}: only integer and slice indices, got {k!r}")
            ranges.append(k.indices(n))
        (b0, b1, bs), (y0, y1, ys), (x0, x1, xs) = ranges
        if b1 <= b0 or y1 <= y0 or x1 <= x0:
            return np.empty((max(0, b1 - b0), max(0, y1 - y0), max(0, x1 - x0)), self.dtype)
        try:
            with rasterio.open(self.path) as src:
                out = src.read(list(range(b0 + 1, b1 + 1)), window=Window(x0, y0, x1 - x0, y1 - y0))
        except Exception as e:  # noqa: BLE001 - GDAL raises several types; all mean "unreadable"
            cause = " ".join(str(e.__cause__ or e).split()) or type(e).__name__
            raise SceneError(
                f"cannot read {self.path} (rows {y0}:{y1}, cols {x0}:{x1}): {cause}. The file is "
                "probably truncated or corrupt (an interrupted download or copy?): fetch or write "
                "it again"
            ) from e
        out = out[::bs, ::ys, ::xs]
        return out.squeeze(tuple(squeeze)) if squeeze else out


def _check_complete(path: Path, src) -> None:
    """Refuse a GeoTIFF whose blocks lie beyond its end (truncated) or cannot be located.

    GDAL opens such files and fails only when the missing blocks are read, deep inside a
    computation; the block table (offset and size of every block) tells at once.
    """
    if src.driver != "GTiff":
        return
    size = path.stat().st_size
    # Pixel-interleaved bands share their blocks: one band's table covers them all.
    bands = [1] if str(getattr(src.interleaving, "value", src.interleaving)).lower() == "pixel" else \
        range(1, src.count + 1)
    for bidx in bands:
        bh, bw = src.block_shapes[bidx - 1]
        for y in range(-(-src.height // bh)):
            for x in range(-(-src.width // bw)):
                off = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=bidx)
                n = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=bidx)
                if off is None or n is None:
                    raise SceneError(
                        f"{path} is truncated or corrupt: GDAL cannot locate its pixel blocks "
                        f"(the file has {size:,} bytes); fetch or write it again"
                    )
                if int(off) + int(n) > size:
                    raise SceneError(
                        f"{path} is truncated: its pixel blocks run to byte {int(off) + int(n):,} but "
                        f"the file has {size:,} bytes (an interrupted download or copy?); fetch or "
                        "write it again"
                    )


def _chunk_dict(chunks):
    if chunks is None:
        return None
    if isinstance(chunks, dict):
        return {"band": -1, **chunks}
    return {"band": -1, "y": int(chunks), "x": int(chunks)}


def _band_count(path: Path) -> int:
    import rasterio

    try:
        with rasterio.open(path) as src:
            return src.count
    except Exception as e:
        raise SceneError(
            f"{path} is not a raster that GDAL can read ({type(e).__name__}: {e}); "
            "give GeoTIFF/COG/JP2 files"
        ) from e


def _open_multiband(path: Path, bands, chunks):
    da = _open_raster(path, chunks)
    descriptions = da.attrs.get("long_name")
    if bands is not None:
        if len(bands) != da.sizes["band"]:
            raise SceneError(
                f"{path} has {da.sizes['band']} bands but {len(bands)} names were given"
            )
        names = list(bands)
    elif isinstance(descriptions, (tuple, list)) and all(descriptions):
        names = list(descriptions)
    else:
        raise SceneError(
            f"{path} has {da.sizes['band']} bands with no descriptions: pass "
            "bands=[...] with their names in file order (e.g. ['B02', 'B03', 'B04', 'B08'])"
        )
    return da.assign_coords(band=names)


def _name_files(files: list[Path], sensor_obj) -> dict[str, Path]:
    named: dict[str, Path] = {}
    for f in files:
        tokens = re.split(r"[_.\-]", f.stem)
        for tok in reversed(tokens):
            try:
                band = sensor_obj.band(tok)
            except catalogs.UnknownBandError:
                continue
            if band.name in named:
                # Landsat 7 ships B6 twice (low and high gain): keep VCID_1 (low gain),
                # whose wider range does not saturate over hot or cold surfaces.
                pair = {named[band.name].name.upper(), f.name.upper()}
                if any("VCID_1" in n for n in pair) and any("VCID_2" in n for n in pair):
                    if "VCID_1" in f.name.upper():
                        named[band.name] = f
                    break
                raise SceneError(
                    f"two files hold band {band.name}: {named[band.name].name} and {f.name}; "
                    "pass the files you want as a list"
                )
            named[band.name] = f
            break
    if not named:
        raise SceneError(
            f"no file name names a band of {sensor_obj.id} (e.g. *_B04.tif); files: "
            f"{[f.name for f in files][:10]}"
        )
    return named


def _stack_band_files(paths: list[Path], names: list[str], chunks, resolution):
    import xarray as xr

    arrays = []
    for p in paths:
        da = _open_raster(p, chunks)
        if da.sizes["band"] != 1:
            raise SceneError(f"{p} has {da.sizes['band']} bands; expected one band per file")
        arrays.append(da.isel(band=0, drop=True))
    res = [abs(float(a.rio.resolution()[0])) for a in arrays]
    unreferenced = [p.name for p, a in zip(paths, arrays) if a.rio.crs is None]
    if unreferenced and len(unreferenced) < len(arrays):
        raise SceneError(
            f"band file(s) {unreferenced} in {paths[0].parent} have no CRS (not georeferenced) "
            "while the others have one: are they the right files? Georeference them (e.g. "
            "gdal_edit.py -a_srs) or leave them out with bands=[...]"
        )
    crs = {str(a.rio.crs) for a in arrays}
    if len(crs) > 1:
        by_crs = {c: [p.name for p, a in zip(paths, arrays) if str(a.rio.crs) == c] for c in sorted(crs)}
        raise SceneError(f"band files are in different CRSs {by_crs}: reproject them to one first")
    if resolution is None:
        counts = Counter(res)
        top = max(counts.values())
        resolution = min(r for r, c in counts.items() if c == top)
    resolution = float(resolution)
    ref = _reference_grid(arrays, res, resolution)
    aligned = [_to_grid(a, r, resolution, ref) for a, r in zip(arrays, res)]
    dtypes = {str(a.dtype) for a in aligned}
    out = xr.concat(aligned, dim="band", join="override", combine_attrs="drop_conflicts")
    if len(dtypes) > 1:
        out = out.astype(np.result_type(*[a.dtype for a in aligned]))
    out = out.assign_coords(band=names)
    out = out.rio.write_crs(arrays[0].rio.crs)
    out = out.rio.write_transform(out.rio.transform(recalc=True))
    out = out.chunk(_chunk_dict(chunks) or {})
    return out.transpose("band", "y", "x")


def _reference_grid(arrays, res, resolution):
    at_target = [a for a, r in zip(arrays, res) if np.isclose(r, resolution)]
    if at_target:
        best = max(at_target, key=lambda a: a.sizes["x"] * a.sizes["y"])
        return best.x.values, best.y.values
    left = min(float(a.x.min()) - r / 2 for a, r in zip(arrays, res))
    right = max(float(a.x.max()) + r / 2 for a, r in zip(arrays, res))
    top = max(float(a.y.max()) + r / 2 for a, r in zip(arrays, res))
    bottom = min(float(a.y.min()) - r / 2 for a, r in zip(arrays, res))
    nx = int(round((right - left) / resolution))
    ny = int(round((top - bottom) / resolution))
    largest = max(a.sizes["x"] * a.sizes["y"] for a in arrays)
    if nx * ny > _MAX_REFINE * largest or min(nx, ny) < 1:
        # E.g. a pixel size in metres for a grid in degrees, or a typo: refuse before
        # allocating the grid's coordinates.
        crs = arrays[0].rio.crs
        units = "degrees" if crs is not None and crs.is_geographic else \
            ((crs.linear_units if crs is not None else "") or "the CRS's units")
        raise SceneError(
            f"resolution={resolution:g} would make a {ny:,} x {nx:,} px grid from band files with "
            f"pixels of {min(res):g} to {max(res):g} ({units}, {crs}): give the pixel size in those "
            f"units, at most {int(_MAX_REFINE ** 0.5)}x finer than the finest band"
        )
    return left + resolution * (np.arange(nx) + 0.5), top - resolution * (np.arange(ny) + 0.5)


def _to_grid(a, r, resolution, ref):
    x_ref, y_ref = ref
    if np.isclose(r, resolution) and a.sizes["x"] == len(x_ref) and np.allclose(a.x.values, x_ref) \
            and a.sizes["y"] == len(y_ref) and np.allclose(a.y.values, y_ref):
        return a
    if r < resolution and np.isclose(resolution / r, round(resolution / r)):
        # Finer band (e.g. Landsat pan, 15 m -> 30 m): block mean, like the sensor's
        # larger footprint would have measured.
        f = int(round(resolution / r))
        dtype = a.dtype
        a = a.astype("float32")
        if np.issubdtype(dtype, np.integer):
            a = a.where(a != 0)  # DN 0 is fill: keep it out of the block mean
        a = a.coarsen(x=f, y=f, boundary="trim").mean()
        if np.issubdtype(dtype, np.integer):
            a = a.fillna(0).round().astype(dtype)
    # Nearest neighbour onto the reference grid; pixels outside the band's extent are no
    # data (0 for DN, NaN for floats).
    fill = 0 if np.issubdtype(a.dtype, np.integer) else np.nan
    return a.reindex(x=x_ref, y=y_ref, method="nearest", tolerance=max(r, resolution) / 2 + 1e-6,
                     fill_value=fill)


def _calibrate(da, sensor_obj, mtl_meta, s2_meta_path, processing_baseline):
    import xarray as xr

    if sensor_obj.id.startswith("landsat") and mtl_meta is not None:
        # A Level-2 MTL also lists the Level-1 factors: its level decides which apply.
        level2 = radiometry.landsat_processing_level(mtl_meta) == "L2"
        out = []
        for name in da.band.values.tolist():
            band = sensor_obj.band(name)
            number = re.sub(r"^[Bb]0*", "", band.name)
            if level2:
                cal = radiometry.landsat_level2_calibration(mtl_meta, number)
            else:
                if f"K1_CONSTANT_BAND_{number}_VCID_1" in mtl_meta:
                    number = f"{number}_VCID_1"  # Landsat 7 ETM+ B6, low gain (see _name_files)
                cal = radiometry.landsat_calibration(mtl_meta, number)
            out.append(cal.apply(da.sel(band=name)).astype("float32"))
        result = xr.concat(out, dim="band", coords="different", compat="equals", join="outer")
        result.attrs = {**da.attrs, "radiometry": "surface" if level2 else "toa",
                        "units": ("surface reflectance (reflective bands); surface temperature K (thermal bands)"
                                  if level2 else
                                  "TOA reflectance (reflective bands); brightness temperature K (thermal bands)")}
        return _restore(result, da)
    if sensor_obj.id in ("sentinel2_msi",) and (s2_meta_path is not None or processing_baseline):
        meta = radiometry.read_sentinel2_metadata(s2_meta_path) if s2_meta_path is not None else None
        baseline = processing_baseline or meta.processing_baseline
        out = [
            radiometry.sentinel2_reflectance(da.sel(band=name), baseline,
                                             band=sensor_obj.band(name).name, metadata=meta)
            .astype("float32")
            for name in da.band.values.tolist()
        ]
        result = xr.concat(out, dim="band", coords="different", compat="equals", join="outer")
        result.attrs = {**da.attrs, "radiometry": "toa", "processing_baseline": baseline,
                        "units": "reflectance"}
        return _restore(result, da)
    # No metadata: leave DN and say so; the model refuses integer input with a message.
    da.attrs["radiometry"] = "DN"
    return da


def _restore(result, template):
    """Keep the template's coordinates (wavelengths, spatial_ref) and CRS after concat."""
    result = result.assign_coords({k: v for k, v in template.coords.items() if k not in result.coords})
    result = result.rio.write_crs(template.rio.crs)
    result = result.rio.write_nodata(np.nan, encoded=False)
    return result.transpose("band", "y", "x")
