"""What the public-dataset loaders share: the Biome label codes, file reading, Landsat DN
conversion, memory checks. NumPy at import; rasterio only inside the readers."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import numpy as np

from .. import catalogs, radiometry
from ..bands import BandDescriptors
from ..errors import DatasetLayoutError
from .base import IGNORE_INDEX, LabelledSample, biome_to_classes

#: Biome codes: the common intermediate label encoding (see base.BIOME_LABELS).
FILL, SHADOW, CLEAR, THIN, THICK = 0, 64, 128, 192, 255

#: Landsat 8 Level-1 reflectance rescaling (the same for every OLI band and scene, as in
#: every L8 MTL file); used only where a dataset ships no MTL (38-Cloud).
L8_REFLECTANCE_MULT = 2.0e-5
L8_REFLECTANCE_ADD = -0.1

#: ETM+ mean exoatmospheric solar irradiance, W / (m2 sr um) (Landsat 7 Data Users
#: Handbook, Table 11.3), for pre-2012 MTL files that carry only LMAX / LMIN.
ETM_ESUN = {"1": 1970.0, "2": 1842.0, "3": 1547.0, "4": 1044.0, "5": 225.7, "7": 82.06,
            "8": 1369.0}

#: Biome folder names (as downloaded from USGS) -> the tag used by the Biome patches.
_BIOMES = {"barren": "Barren", "forest": "Forest", "grasscrops": "GrassCrops",
           "shrubland": "Shrubland", "snowice": "SnowIce", "urban": "Urban", "water": "Water",
           "wetlands": "Wetlands"}

#: Default memory budget of the whole-scene loaders, bytes (what they may hold at once).
DEFAULT_MAX_BYTES = 8 * 2**30


# --------------------------------------------------------------------------- helpers


def _rasterio():
    try:
        import rasterio
    except ImportError as e:  # pragma: no cover - rasterio is a dependency
        raise ImportError("this loader reads GeoTIFF / ENVI / PNG files and needs rasterio: "
                          "pip install rasterio") from e
    return rasterio


def _descriptors(sensor_id: str, names: Sequence[str]) -> tuple[str, BandDescriptors]:
    return catalogs.get_sensor(sensor_id).id, BandDescriptors.from_sensor(sensor_id, names)


def _has(classes: Sequence[str], *names: str) -> bool:
    return any(n in classes for n in names)


def _codes_to_labels(codes: np.ndarray, classes: tuple[str, ...], *, shadow_labelled: bool = True,
                     thin_thick: bool = True, dataset: str = "") -> np.ndarray:
    """Biome codes -> class indices, with the rules for datasets lacking some classes."""
    if not thin_thick and _has(classes, "thin_cloud", "thick_cloud") and "cloud" not in classes:
        raise ValueError(f"{dataset} does not separate thin from thick cloud: use classes with "
                         f"'cloud' instead of {classes}")
    labels = biome_to_classes(codes, classes)
    if not shadow_labelled and _has(classes, "shadow", "cloud_shadow"):
        # "Clear" here may be unlabelled shadow: no supervision beats wrong supervision.
        labels[codes == CLEAR] = IGNORE_INDEX
    return labels


def _map_codes(raw: np.ndarray, table: Mapping[int, int]) -> np.ndarray:
    """Dataset codes -> Biome codes; codes not in ``table`` become fill."""
    lut = np.zeros(256, np.uint8)
    for k, v in table.items():
        lut[k] = v
    raw = np.asarray(raw)
    out = lut[np.clip(raw, 0, 255).astype(np.intp)]
    out[(raw < 0) | (raw > 255)] = FILL
    return out


def _sample(image: np.ndarray, desc: BandDescriptors, codes: np.ndarray, nodata: np.ndarray,
            classes: tuple[str, ...], sensor: str, resolution_m: float, name: str, tags: dict,
            **label_kw) -> LabelledSample:
    nodata = np.asarray(nodata, bool) | (codes == FILL) | ~np.isfinite(image).all(axis=0)
    labels = _codes_to_labels(codes, classes, **label_kw)
    labels[nodata] = IGNORE_INDEX
    image = np.where(nodata[None], np.float32(np.nan), image).astype(np.float32)
    tags = dict(tags)
    tags.setdefault("shadow_labelled", label_kw.get("shadow_labelled", True))
    return LabelledSample(image, desc, labels, nodata, sensor, float(resolution_m), name, tags)


def _require_dir(root: Path | None, dataset: str, expected: str) -> Path:
    if root is None:
        raise DatasetLayoutError(f"{dataset}: pass root= (the folder you downloaded, holding "
                                 f"{expected}); see docs/datasets.md for where to get it")
    root = Path(root)
    if not root.is_dir():
        raise DatasetLayoutError(f"{dataset}: {root} is not a folder; expected a folder holding "
                                 f"{expected}")
    return root


def _check_memory(n_pixels: int, n_bands: int, max_bytes: float | None, what: str, hint: str) -> None:
    # float32 bands + int64 labels + bool no-data per pixel.
    need = n_pixels * (4 * n_bands + 9)
    if max_bytes is not None and need > max_bytes:
        raise MemoryError(f"loading {what} needs about {need / 2**30:.1f} GiB, over max_bytes="
                          f"{max_bytes / 2**30:.1f} GiB: {hint}, or raise max_bytes")


def _windows(height: int, width: int, tile: int | None, window) -> list[tuple[int, int, int, int]]:
    """(row_off, col_off, height, width) windows covering the requested area.

    With ``tile``, tiles start every ``tile`` pixels and the last row / column of tiles is
    placed flush with the area's edge, overlapping its neighbour (as ``grid_patches`` does):
    a sliver tile (down to 1 px) would become a sample smaller than any training patch.
    Every tile is ``tile`` x ``tile`` where the area is at least that big; along a side
    shorter than ``tile`` the tile is the whole side.
    """
    r0, c0, h, w = (0, 0, height, width) if window is None else tuple(int(v) for v in window)
    if r0 < 0 or c0 < 0 or h <= 0 or w <= 0 or r0 + h > height or c0 + w > width:
        raise ValueError(f"window {window} (row_off, col_off, height, width) is outside the "
                         f"{height}x{width} scene")
    if tile is None:
        return [(r0, c0, h, w)]
    if tile <= 0:
        raise ValueError(f"tile_size must be a positive number of pixels, got {tile}")
    return [(r, c, min(tile, h), min(tile, w))
            for r in _tile_starts(r0, h, tile) for c in _tile_starts(c0, w, tile)]


def _tile_starts(start: int, length: int, tile: int) -> list[int]:
    """Tile origins along one axis of ``[start, start + length)``; the last flush with its end."""
    if length <= tile:
        return [start]
    starts = list(range(start, start + length - tile + 1, tile))
    if starts[-1] + tile < start + length:
        starts.append(start + length - tile)
    return starts


def _tiled_pixels(height: int, width: int, tile: int | None, window) -> int:
    """Pixels the samples of one scene hold (overlapping tiles count twice), for memory checks."""
    return sum(h * w for _, _, h, w in _windows(height, width, tile, window))


def _names(value, option: str) -> list[str] | None:
    """A list of names from ``value`` (None stays None); a bare string is refused.

    ``scenes="LC80..."`` would otherwise be read as its characters and select nothing.
    """
    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{option} must be a list of names, got the string {value!r}: "
                        f"write {option}=[{value!r}]")
    return [str(v) for v in value]


def _named_dirs(root: Path, dirs: list[Path], scenes, what: str) -> list[Path]:
    """The folders of ``dirs`` named in ``scenes`` (None: all of them).

    A name that is not there is an error: a misspelt scene would otherwise just load fewer
    scenes than asked for.
    """
    scenes = _names(scenes, "scenes")
    if scenes is None:
        return dirs
    missing = sorted(set(scenes) - {d.name for d in dirs})
    if missing:
        raise DatasetLayoutError(f"{root}: no {what} scene folder(s) {missing}; scenes are folder names such as "
                                 f"{[d.name for d in dirs[:3]]} ({len(dirs)} in all)")
    return [d for d in dirs if d.name in set(scenes)]


def _option_dir(path, root: Path, option: str) -> Path:
    """The folder ``path`` names; a relative path that is no folder as given is tried under ``root``.

    A training config's options are not resolved against its ``--data-dir``, so ``mtl_dir =
    "mtl"`` there means ``<root>/mtl`` when there is no ``./mtl``.
    """
    p = Path(path)
    if p.is_dir():
        return p
    if not p.is_absolute() and (root / p).is_dir():
        return root / p
    raise DatasetLayoutError(f"{option}={str(path)!r} is not a folder (nor {root / p}): pass an "
                             "existing folder")


def _read_window(path: Path, win: tuple[int, int, int, int], ref_shape: tuple[int, int],
                 categorical: bool = False) -> np.ndarray:
    """Band 1 of ``path`` over ``win`` (in the grid of ``ref_shape``), on that grid.

    Bands at another resolution (Landsat pan 15 m, ETM+ thermal 60 m) are resampled onto
    the reference grid: average when shrinking, nearest when enlarging.
    """
    rasterio = _rasterio()
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    r, c, h, w = win
    with rasterio.open(path) as src:
        sy, sx = src.height / ref_shape[0], src.width / ref_shape[1]
        if categorical or (sy == 1 and sx == 1):
            resampling = Resampling.nearest
        else:
            resampling = Resampling.average if sy > 1 else Resampling.nearest
        return src.read(1, window=Window(c * sx, r * sy, w * sx, h * sy), out_shape=(h, w),
                        resampling=resampling)


def _find_one(folder: Path, patterns: Sequence[str], what: str) -> Path:
    for p in patterns:
        found = sorted(folder.glob(p))
        if found:
            return found[0]
    raise DatasetLayoutError(f"{folder}: no {what} (looked for {', '.join(patterns)})")


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _tag_value(v: str):
    v = v.strip()
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


# ----------------------------------------------------------------- Landsat common


def _landsat_dn_to_physical(dn: np.ndarray, mtl: dict, band_number: str) -> np.ndarray:
    """DN -> reflectance / BT (K) with the MTL (Collection-style or pre-2012 LMAX/LMIN)."""
    key = band_number.replace("_VCID_", "")  # "6_VCID_1" -> "61" for old-style keys
    if (f"REFLECTANCE_MULT_BAND_{band_number}" in mtl or f"RADIANCE_MULT_BAND_{band_number}" in mtl):
        return np.asarray(radiometry.landsat_calibration(mtl, band_number).apply(dn), np.float32)
    try:
        lmax, lmin = float(mtl[f"LMAX_BAND{key}"]), float(mtl[f"LMIN_BAND{key}"])
        qmax, qmin = float(mtl[f"QCALMAX_BAND{key}"]), float(mtl[f"QCALMIN_BAND{key}"])
    except KeyError as e:
        raise radiometry.RadiometryError(
            f"MTL has neither RADIANCE/REFLECTANCE_MULT_BAND_{band_number} nor {e.args[0]}") from None
    q = np.where(dn == 0, np.nan, dn.astype(np.float64))  # DN 0 is fill
    radiance = (lmax - lmin) / (qmax - qmin) * (q - qmin) + lmin  # W / (m2 sr um)
    if key.startswith("6"):
        band = catalogs.get_sensor("landsat7_etm").band("B6")
        return np.asarray(radiometry.brightness_temperature(radiance, band.k1, band.k2), np.float32)
    acquired = str(mtl.get("ACQUISITION_DATE", mtl.get("DATE_ACQUIRED", "")))
    try:
        doy = date.fromisoformat(acquired[:10]).timetuple().tm_yday
    except ValueError:
        raise radiometry.RadiometryError(f"MTL has no usable ACQUISITION_DATE ({acquired!r}) for "
                                         "the Earth-Sun distance") from None
    d = 1.0 - 0.01672 * math.cos(math.radians(0.9856 * (doy - 4)))  # AU
    sun = math.radians(float(mtl["SUN_ELEVATION"]))
    rho = math.pi * radiance * d**2 / (ETM_ESUN[key] * math.sin(sun))
    return np.asarray(rho, np.float32)


def _biome_tag(path: Path) -> str | None:
    for part in reversed(path.parts):
        key = re.sub(r"[^a-z]", "", part.lower())
        if key in _BIOMES:
            return _BIOMES[key]
    return None


