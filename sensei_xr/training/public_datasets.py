"""Loaders for the public cloud-mask datasets, in their published layouts.

Every loader returns :class:`~sensei_xr.training.datasets.LabelledSample` objects in the
library's conventions: reflective bands as top-of-atmosphere reflectance (unitless,
0 to about 1), thermal bands as brightness temperature in kelvin, band descriptors from
the sensor catalogs, labels mapped to the model's ``classes`` with ``IGNORE_INDEX`` at
fill / no data, and a boolean no-data mask. They are registered by name for
:func:`~sensei_xr.training.datasets.load_dataset`:

=============================  ==========================================================
name                           dataset (see ``docs/datasets.md`` for sources and layouts)
=============================  ==========================================================
``s2_cloud_mask_catalogue``    Sentinel-2 Cloud Mask Catalogue (Francis et al., Zenodo 4172871)
``biome_scenes``               Landsat 8 Biome (USGS L8 CCA), full scenes
``sparcs``                     Landsat 8 SPARCS (Hughes & Hayes / Hughes & Kennedy)
``l7_irish``                   Landsat 7 Irish (USGS L7 CCA)
``38cloud``                    38-Cloud (Mohajerani & Saeedi)
``cloudperu2``                 CloudPeru2 (Morales et al.), PeruSat-1
``cloudsen12``                 CloudSEN12 high-quality, Hugging Face memmap layout
=============================  ==========================================================

Labels go through the Biome encoding (0 fill, 64 cloud shadow, 128 clear, 192 thin
cloud, 255 thick cloud) and :func:`~sensei_xr.training.datasets.biome_to_classes`, so
every dataset follows the same class rules: cloud = thin + thick, shadow is its own class
where ``classes`` has one (else clear), fill is ignored. Where a dataset (or a scene) has
no shadow annotation and ``classes`` has a shadow class, its non-cloud pixels are
ignored rather than called clear (they may be unlabelled shadow); the sample's
``tags["shadow_labelled"]`` says which.

Only NumPy is needed at import time; rasterio is imported by the loaders that read
GeoTIFF / ENVI / PNG files.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from os import PathLike
from pathlib import Path

import numpy as np

from .. import catalogs, radiometry
from ..bands import BandDescriptors
from .datasets import IGNORE_INDEX, LabelledSample, biome_to_classes, register_dataset
from ..errors import DatasetLayoutError

__all__ = [
    "DatasetLayoutError",
    "S2_CATALOGUE_BANDS",
    "BIOME_SCENE_BANDS",
    "SPARCS_BANDS",
    "L7_IRISH_BANDS",
    "CLOUDSEN12_BANDS",
    "SPARCS_TO_BIOME",
    "L7_IRISH_TO_BIOME",
    "CLOUDSEN12_TO_BIOME",
    "load_s2_cloud_mask_catalogue",
    "load_biome_scenes",
    "iter_biome_scenes",
    "load_sparcs",
    "load_l7_irish",
    "iter_l7_irish",
    "load_38cloud",
    "load_cloudperu2",
    "load_cloudsen12",
    "iter_cloudsen12",
]


# Biome codes used as the common intermediate encoding (see datasets.BIOME_LABELS).
FILL, SHADOW, CLEAR, THIN, THICK = 0, 64, 128, 192, 255

#: Band order of the Sentinel-2 Cloud Mask Catalogue subscenes (last axis of the .npy).
S2_CATALOGUE_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                      "B10", "B11", "B12")
#: Default Biome bands: all 30 m bands (B8, pan, is 15 m; ask for it explicitly).
BIOME_SCENE_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11")
#: Band order of SPARCS ``*_data.tif`` (the 11 Landsat 8 bands without pan).
SPARCS_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11")
#: Default Landsat 7 Irish bands (file suffixes B10..B70; B61 = thermal low gain).
L7_IRISH_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")
#: CloudSEN12 L1C band files ``L1C_<name>.dat`` -> catalog names.
CLOUDSEN12_BANDS = {"B1": "B01", "B2": "B02", "B3": "B03", "B4": "B04", "B5": "B05",
                    "B6": "B06", "B7": "B07", "B8": "B08", "B8A": "B8A", "B9": "B09",
                    "B10": "B10", "B11": "B11", "B12": "B12"}

#: SPARCS mask codes (readme of the OSU / USGS release) -> Biome codes.
SPARCS_TO_BIOME = {0: SHADOW, 1: SHADOW, 2: CLEAR, 3: CLEAR, 4: CLEAR, 5: THICK, 6: CLEAR}
#: SPARCS class colours, as the mask PNG shows them when read as RGB (eo4ai L8SPARCS80.yaml).
SPARCS_COLOURS = {(0, 0, 0): 0, (0, 0, 128): 1, (0, 0, 255): 2, (0, 255, 255): 3,
                  (128, 128, 128): 4, (255, 255, 255): 5, (128, 128, 0): 6}
#: L7 Irish ``*_newmask2015.TIF`` -> Biome codes. USGS documents 192 for thin cloud; the
#: files hold 191 (torchgeo PR #1355), so both are accepted.
L7_IRISH_TO_BIOME = {0: FILL, 64: SHADOW, 128: CLEAR, 191: THIN, 192: THIN, 255: THICK}
#: CloudSEN12 ``LABEL_manual_hq``: 0 clear, 1 thick cloud, 2 thin cloud, 3 cloud shadow.
CLOUDSEN12_TO_BIOME = {0: CLEAR, 1: THICK, 2: THIN, 3: SHADOW}

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
    """(row_off, col_off, height, width) windows covering the requested area."""
    r0, c0, h, w = (0, 0, height, width) if window is None else tuple(int(v) for v in window)
    if r0 < 0 or c0 < 0 or h <= 0 or w <= 0 or r0 + h > height or c0 + w > width:
        raise ValueError(f"window {window} (row_off, col_off, height, width) is outside the "
                         f"{height}x{width} scene")
    if tile is None:
        return [(r0, c0, h, w)]
    if tile <= 0:
        raise ValueError(f"tile_size must be a positive number of pixels, got {tile}")
    return [(r, c, min(tile, r0 + h - r), min(tile, c0 + w - c))
            for r in range(r0, r0 + h, tile) for c in range(c0, c0 + w, tile)]


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


# ----------------------------------------------------------- Sentinel-2 catalogue


def _s2_split_ids(split: str, splits_dir: Path | None, root: Path) -> set[str]:
    name = {"val": "valid", "validation": "valid"}.get(split, split)
    if name not in ("train", "valid", "test"):
        raise ValueError(f"split {split!r}: the Sentinel-2 Cloud Mask Catalogue splits of the "
                         "SEnSeI paper are 'train', 'valid' and 'test'")
    dirs = [d for d in (splits_dir, root, root / "splits") if d is not None]
    if splits_dir is None:
        from ..sample_data import data_dir

        shared = data_dir(required=False)
        if shared is not None:
            dirs.append(shared / "s2_cloud_mask_catalogue_splits")
    for d in dirs:
        for f in (d / f"S2_catalogue_split_{name}.csv", d / f"{name}.csv"):
            if f.is_file():
                ids = {line.strip().split(",")[0] for line in f.read_text().splitlines()}
                return {i for i in ids if i and not i.lower().startswith(("scene", "product"))}
    raise DatasetLayoutError(
        f"no split file S2_catalogue_split_{name}.csv in {', '.join(map(str, dirs))}: the split "
        "lists ship in the sample data (s2_cloud_mask_catalogue_splits/); pass splits_dir=")


def load_s2_cloud_mask_catalogue(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                                 split: str | None = None, splits_dir: str | PathLike | None = None,
                                 scenes: Sequence[str] | None = None) -> list[LabelledSample]:
    """Read the Sentinel-2 Cloud Mask Catalogue (Francis et al., Zenodo record 4172871).

    Layout: ``root/subscenes/<product_id>.npy`` (1022 x 1022 x 13 float TOA reflectance,
    bands B01..B12 with B8A after B08, 20 m), ``root/masks/<product_id>.npy`` (1022 x 1022
    x 3 boolean one-hot CLEAR, CLOUD, CLOUD_SHADOW) and ``root/classification_tags.csv``
    (one row per subscene: ``scene`` plus its surface / cloud tags and
    ``shadows_marked``).

    Parameters
    ----------
    root : path-like
        The extracted dataset folder.
    classes : tuple of str
        The model's classes (``"clear"``, ``"cloud"``, optionally ``"shadow"``).
    split : {"train", "valid", "test"}, optional
        The scene split of the SEnSeI paper (scene-id lists ``S2_catalogue_split_*.csv``,
        from ``splits_dir``, else ``root``, else the sample data); None: every subscene.
    splits_dir : path-like, optional
    scenes : sequence of str, optional
        Only these product ids.

    Returns
    -------
    list of LabelledSample
        13 bands, reflectance (unitless), 20 m; ``tags`` holds every column of
        ``classification_tags.csv`` for the scene (numbers as int / float). Scenes with
        ``shadows_marked == 0`` get ``shadow_labelled=False`` (see the module notes).
        Pixels with no class in the one-hot mask, or without finite data, are no data.
    """
    root = _require_dir(None if root is None else Path(root), "Sentinel-2 Cloud Mask Catalogue",
                        "subscenes/, masks/ and classification_tags.csv")
    sub_dir, mask_dir = root / "subscenes", root / "masks"
    for d in (sub_dir, mask_dir):
        if not d.is_dir():
            raise DatasetLayoutError(f"{root}: no {d.name}/ folder; the catalogue's layout is "
                                     "subscenes/<id>.npy, masks/<id>.npy, classification_tags.csv")
    tags_file = root / "classification_tags.csv"
    tag_rows = {r.get("scene", "").strip(): r for r in _read_csv_rows(tags_file)} if tags_file.is_file() else {}
    ids = sorted(p.stem for p in sub_dir.glob("*.npy"))
    if not ids:
        raise DatasetLayoutError(f"{sub_dir} holds no <product_id>.npy subscenes")
    if split is not None:
        wanted = _s2_split_ids(split, None if splits_dir is None else Path(splits_dir), root)
        ids = [i for i in ids if i in wanted]
    if scenes is not None:
        ids = [i for i in ids if i in set(scenes)]
    sensor, desc = _descriptors("sentinel2_msi", S2_CATALOGUE_BANDS)
    out = []
    for pid in ids:
        mask_file = mask_dir / f"{pid}.npy"
        if not mask_file.is_file():
            raise DatasetLayoutError(f"subscene {pid} has no mask {mask_file}")
        cube = np.load(sub_dir / f"{pid}.npy", mmap_mode="r")
        onehot = np.load(mask_file, mmap_mode="r")
        if cube.ndim != 3 or cube.shape[-1] != 13 or onehot.shape != cube.shape[:2] + (3,):
            raise DatasetLayoutError(f"{pid}: expected subscene (H, W, 13) and mask (H, W, 3), got "
                                     f"{cube.shape} and {onehot.shape}")
        image = np.moveaxis(np.asarray(cube, np.float32), -1, 0)
        onehot = np.asarray(onehot).astype(bool)
        codes = np.full(onehot.shape[:2], FILL, np.uint8)
        codes[onehot[..., 0]] = CLEAR
        codes[onehot[..., 2]] = SHADOW
        codes[onehot[..., 1]] = THICK  # cloud wins where annotations overlap
        row = tag_rows.get(pid, {})
        tags = {k: _tag_value(v) for k, v in row.items() if k and k != "scene" and v is not None}
        marked = tags.get("shadows_marked", 1)
        nodata = (image == 0).all(axis=0)
        out.append(_sample(image, desc, codes, nodata, classes, sensor, 20.0, pid, tags,
                           shadow_labelled=bool(marked), thin_thick=False,
                           dataset="The Sentinel-2 Cloud Mask Catalogue"))
    return out


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


# ------------------------------------------------------------ Landsat 8 Biome


def _biome_scene_dirs(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob("*_fixedmask.img")}, key=lambda p: p.name)


def iter_biome_scenes(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                      bands: Sequence[str] = BIOME_SCENE_BANDS, scenes: Sequence[str] | None = None,
                      biomes: Sequence[str] | None = None, window=None, tile_size: int | None = None,
                      skip_empty: bool = True) -> Iterator[LabelledSample]:
    """Yield Landsat 8 Biome samples scene by scene, reading each window from disk.

    Memory: one sample at a time (a whole 7,800 x 7,700 scene of 10 bands is about
    3 GB as float32 with its labels; pass ``window`` or ``tile_size`` for less). See
    :func:`load_biome_scenes` for the layout and parameters.
    """
    root = _require_dir(None if root is None else Path(root), "Landsat 8 Biome",
                        "<Biome>/BC/<scene_id>/ folders with <scene_id>_B<n>.TIF, _MTL.txt "
                        "and _fixedmask.img")
    dirs = _biome_scene_dirs(root)
    if not dirs:
        raise DatasetLayoutError(f"{root}: no <scene_id>_fixedmask.img found; the USGS L8 Biome "
                                 "archives extract to BC/<scene_id>/ with band TIFs, MTL and "
                                 "the ENVI mask")
    if scenes is not None:
        dirs = [d for d in dirs if d.name in set(scenes)]
    if biomes is not None:
        keep = {_BIOMES.get(re.sub(r"[^a-z]", "", b.lower()), b) for b in biomes}
        dirs = [d for d in dirs if _biome_tag(d.relative_to(root)) in keep]
    sensor, desc = _descriptors("landsat8_oli_tirs", bands)
    rasterio = _rasterio()
    for d in dirs:
        sid = d.name
        mask_file = d / f"{sid}_fixedmask.img"
        mtl = radiometry.parse_mtl(_find_one(d, [f"{sid}_MTL.txt", "*_MTL.txt"], "MTL file"))
        band_files = [d / f"{sid}_{b}.TIF" for b in desc.names]
        missing = [f.name for f in band_files if not f.is_file()]
        if missing:
            raise DatasetLayoutError(f"{d}: missing band files {missing}")
        with rasterio.open(mask_file) as m:
            shape = (m.height, m.width)
        biome = _biome_tag(d.relative_to(root))
        for win in _windows(*shape, tile_size, window):
            codes = _read_window(mask_file, win, shape, categorical=True)
            if skip_empty and (codes == FILL).all():
                continue
            image = np.stack([_landsat_dn_to_physical(_read_window(f, win, shape), mtl, b[1:])
                              for f, b in zip(band_files, desc.names)])
            name = sid if win == (0, 0) + shape else f"{sid}_r{win[0]}_c{win[1]}"
            tags = {"scene": sid, "window": win}
            if biome:
                tags["surface"] = biome
            yield _sample(image, desc, codes, np.zeros(codes.shape, bool), classes, sensor, 30.0,
                          name, tags)


def load_biome_scenes(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                      bands: Sequence[str] = BIOME_SCENE_BANDS, scenes: Sequence[str] | None = None,
                      biomes: Sequence[str] | None = None, window=None, tile_size: int | None = None,
                      skip_empty: bool = True, max_bytes: float | None = DEFAULT_MAX_BYTES
                      ) -> list[LabelledSample]:
    """Read Landsat 8 Biome full scenes (USGS L8 Cloud Cover Assessment validation data).

    Layout (each USGS archive extracts to ``BC/<scene_id>/``; keep it under a folder named
    after its biome, e.g. ``root/Forest/BC/LC81800662014230LGN00/``, to get the biome
    tag): ``<scene_id>_B1.TIF`` .. ``_B11.TIF`` (uint16 DN), ``<scene_id>_MTL.txt`` and
    ``<scene_id>_fixedmask.img`` (+ ``.hdr``; ENVI, 0 fill, 64 cloud shadow, 128 clear,
    192 thin cloud, 255 thick cloud). Scenes are found recursively under ``root``.

    Parameters
    ----------
    root : path-like
    classes : tuple of str
    bands : sequence of str
        Landsat 8 band names; default the ten 30 m bands (B8, pan, is averaged onto the
        30 m grid if asked for).
    scenes : sequence of str, optional
        Scene ids to read.
    biomes : sequence of str, optional
        e.g. ``["Forest", "Snow/Ice"]`` (folder names; needs the biome folders).
    window : (row_off, col_off, height, width), optional
        Read only this window of each scene, pixels of the 30 m grid.
    tile_size : int, optional
        Split each scene (or window) into tiles of this many pixels (edge tiles smaller),
        one sample per tile.
    skip_empty : bool
        Drop windows / tiles that are all fill.
    max_bytes : float, optional
        Refuse (MemoryError) when the samples would need more memory than this, bytes
        (default 8 GiB); None: no check. A scene is about 60 Mpx (3 GB with 10 bands),
        all 96 about 280 GB: use ``scenes`` / ``biomes`` / ``window``, or
        :func:`iter_biome_scenes` to stream.

    Returns
    -------
    list of LabelledSample
        Reflective bands as TOA reflectance (sun-elevation corrected), B10 / B11 as
        brightness temperature (K), both from the scene's MTL; 30 m; tags ``scene``,
        ``window`` and ``surface`` (the biome, spelt as in the Biome patches).
    """
    root = _require_dir(None if root is None else Path(root), "Landsat 8 Biome",
                        "<Biome>/BC/<scene_id>/ folders")
    if max_bytes is not None:
        rasterio = _rasterio()
        dirs = _biome_scene_dirs(root)
        if scenes is not None:
            dirs = [d for d in dirs if d.name in set(scenes)]
        if biomes is not None:
            keep = {_BIOMES.get(re.sub(r"[^a-z]", "", b.lower()), b) for b in biomes}
            dirs = [d for d in dirs if _biome_tag(d.relative_to(root)) in keep]
        n = 0
        for d in dirs:
            if window is not None:
                n += int(window[2]) * int(window[3])
            else:
                with rasterio.open(d / f"{d.name}_fixedmask.img") as m:
                    n += m.height * m.width
        _check_memory(n, len(bands), max_bytes, f"{len(dirs)} Biome scenes",
                      "select scenes= / biomes=, read a window=, or stream with iter_biome_scenes()")
    return list(iter_biome_scenes(root, classes, bands, scenes, biomes, window, tile_size, skip_empty))


# ---------------------------------------------------------------------- SPARCS


def _read_sparcs_labels(path: Path) -> np.ndarray:
    """SPARCS class codes 0..6 from ``*_mask.png`` (palette or RGB) or ``*_labels.tif``."""
    rasterio = _rasterio()
    from rasterio.enums import ColorInterp

    with rasterio.open(path) as src:
        if src.count == 1:
            # Palette PNG / coded GeoTIFF: the pixel values are the class codes.
            return src.read(1).astype(np.int32)
        if src.count >= 3 and src.colorinterp[:3] == (ColorInterp.red, ColorInterp.green, ColorInterp.blue):
            rgb = src.read([1, 2, 3]).astype(np.int32)
        else:
            raise DatasetLayoutError(f"{path}: expected a one-band coded mask or an RGB colour "
                                     f"mask, got {src.count} bands {src.colorinterp}")
    codes = np.full(rgb.shape[1:], 255, np.int32)  # unknown colours become fill
    key = (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]
    for (r, g, b), code in SPARCS_COLOURS.items():
        codes[key == ((r << 16) | (g << 8) | b)] = code
    return codes


def load_sparcs(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                scenes: Sequence[str] | None = None) -> list[LabelledSample]:
    """Read the Landsat 8 SPARCS validation masks (80 subscenes of 1000 x 1000 at 30 m).

    Layout: for each subscene ``<id>_data.tif`` (10 bands, uint16 DN: B1-B7, B9, B10, B11),
    ``<id>_mtl.txt`` (the scene's MTL) and the labels, either ``<id>_mask.png`` (USGS
    ``l8cloudmasks.zip``, in ``sending/``) or ``<id>_labels.tif`` (OSU
    ``sparcs_data_L8.zip``), coded 0 cloud shadow, 1 shadow over water, 2 water,
    3 snow/ice, 4 land, 5 cloud, 6 flooded (an RGB-coloured PNG is decoded with the
    published colours). Files are found recursively under ``root``.

    Returns
    -------
    list of LabelledSample
        TOA reflectance / BT (K) from the MTL, 30 m. Cloud = code 5; shadow = codes 0, 1;
        water, snow/ice, land and flooded are clear; DN 0 in every band is no data. Tags
        ``scene`` and the fractions of ``water`` and ``snow`` pixels.
    """
    root = _require_dir(None if root is None else Path(root), "SPARCS",
                        "<id>_data.tif, <id>_mtl.txt and <id>_mask.png (or _labels.tif)")
    data_files = sorted(root.rglob("*_data.tif"))
    if not data_files:
        raise DatasetLayoutError(f"{root}: no *_data.tif; SPARCS ships <id>_data.tif, "
                                 "<id>_mtl.txt and <id>_mask.png per subscene")
    sensor, desc = _descriptors("landsat8_oli_tirs", SPARCS_BANDS)
    rasterio = _rasterio()
    out = []
    for f in data_files:
        sid = f.name[: -len("_data.tif")]
        if scenes is not None and sid not in set(scenes):
            continue
        label_file = _find_one(f.parent, [f"{sid}_mask.png", f"{sid}_labels.tif"], f"labels of {sid}")
        mtl_file = _find_one(f.parent, [f"{sid}_mtl.txt", f"{sid}_MTL.txt",
                                        f"{re.sub(r'_[0-9]+$', '', sid)}_mtl.txt"], f"MTL of {sid}")
        mtl = radiometry.parse_mtl(mtl_file)
        with rasterio.open(f) as src:
            if src.count != 10:
                raise DatasetLayoutError(f"{f}: expected 10 bands (B1-B7, B9, B10, B11), got {src.count}")
            dn = src.read()
        image = np.stack([_landsat_dn_to_physical(dn[i], mtl, b[1:]) for i, b in enumerate(desc.names)])
        raw = _read_sparcs_labels(label_file)
        codes = _map_codes(raw, SPARCS_TO_BIOME)  # unknown codes / colours -> fill
        tags = {"scene": sid, "water": float(np.isin(raw, (1, 2)).mean()), "snow": float((raw == 3).mean())}
        out.append(_sample(image, desc, codes, (dn == 0).all(axis=0), classes, sensor, 30.0, sid,
                           tags, thin_thick=False, dataset="SPARCS"))
    if not out and scenes is not None:
        raise DatasetLayoutError(f"{root}: none of the scenes {list(scenes)} found")
    return out


# ------------------------------------------------------------- Landsat 7 Irish

_IRISH_FILE = {"B1": "B10", "B2": "B20", "B3": "B30", "B4": "B40", "B5": "B50", "B6": "B61",
               "B61": "B61", "B62": "B62", "B7": "B70", "B8": "B80"}
_IRISH_MTL_BAND = {"B1": "1", "B2": "2", "B3": "3", "B4": "4", "B5": "5", "B6": "6_VCID_1",
                   "B61": "6_VCID_1", "B62": "6_VCID_2", "B7": "7", "B8": "8"}


def _irish_scene_dirs(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob("*newmask2015.TIF")}, key=lambda p: str(p))


def iter_l7_irish(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                  bands: Sequence[str] = L7_IRISH_BANDS, scenes: Sequence[str] | None = None,
                  window=None, tile_size: int | None = None, skip_empty: bool = True
                  ) -> Iterator[LabelledSample]:
    """Yield Landsat 7 Irish samples one at a time (see :func:`load_l7_irish`)."""
    root = _require_dir(None if root is None else Path(root), "Landsat 7 Irish",
                        "<zone>/p<path>_r<row>/ folders with L7*_B10.TIF.., *_MTL.txt and "
                        "L7_p*_r*_newmask2015.TIF")
    dirs = _irish_scene_dirs(root)
    if not dirs:
        legacy = sorted(root.rglob("*_mask*.TIF"))
        hint = (f" (found {legacy[0].name}: the older *_mask.TIF release uses two different "
                "encodings and is not supported; use the 2016 USGS release)") if legacy else ""
        raise DatasetLayoutError(f"{root}: no L7_p*_r*_newmask2015.TIF masks found{hint}")
    if scenes is not None:
        dirs = [d for d in dirs if d.name in set(scenes)]
    unknown = [b for b in bands if b not in _IRISH_FILE]
    if unknown:
        raise ValueError(f"unknown Landsat 7 Irish band(s) {unknown}; the scenes have "
                         f"{sorted(_IRISH_FILE)}")
    sensor, desc = _descriptors("landsat7_etm", [("B6" if b in ("B61", "B62") else b) for b in bands])
    rasterio = _rasterio()
    for d in dirs:
        mask_file = sorted(d.glob("*newmask2015.TIF"))[0]
        mtl = radiometry.parse_mtl(_find_one(d, ["*_MTL.txt", "*_MTL.TXT", "*MTL*.txt"], "MTL file"))
        band_files = []
        for b in bands:
            suffix = _IRISH_FILE[b]
            band_files.append(_find_one(d, [f"L7*_{suffix}.TIF"], f"band file *_{suffix}.TIF"))
        with rasterio.open(mask_file) as m:
            shape = (m.height, m.width)
        zone = next((p for p in d.relative_to(root).parts[:-1]), None)
        for win in _windows(*shape, tile_size, window):
            raw = _read_window(mask_file, win, shape, categorical=True)
            codes = _map_codes(raw, L7_IRISH_TO_BIOME)
            if skip_empty and (codes == FILL).all():
                continue
            dns = [_read_window(f, win, shape) for f in band_files]
            image = np.stack([_landsat_dn_to_physical(dn, mtl, _IRISH_MTL_BAND[b])
                              for dn, b in zip(dns, bands)])
            name = d.name if win == (0, 0) + shape else f"{d.name}_r{win[0]}_c{win[1]}"
            tags = {"scene": d.name, "window": win}
            if zone:
                tags["surface"] = zone  # the latitude zone the dataset is stratified by
            yield _sample(image, desc, codes, np.zeros(codes.shape, bool), classes, sensor, 30.0,
                          name, tags)


def load_l7_irish(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                  bands: Sequence[str] = L7_IRISH_BANDS, scenes: Sequence[str] | None = None,
                  window=None, tile_size: int | None = None, skip_empty: bool = True,
                  max_bytes: float | None = DEFAULT_MAX_BYTES) -> list[LabelledSample]:
    """Read the Landsat 7 Irish cloud validation masks (USGS L7 CCA, 206 ETM+ L1G scenes).

    Layout: ``root/<latitude zone>/p<path>_r<row>[_n]/`` holding the band files
    ``L71<ppp><rrr>_<rrr><yyyymmdd>_B10.TIF`` .. ``_B61.TIF`` and ``L72..._B62.TIF``,
    ``_B70.TIF``, ``_B80.TIF`` (uint8 DN), the MTL (``*_MTL.txt``; pre-2012 LMAX / LMIN
    or Collection-style keys) and ``L7_p<path>_r<row>_newmask2015.TIF`` (0 fill,
    64 cloud shadow, 128 clear, 192 (191 in the files) thin cloud, 255 thick cloud).

    Parameters
    ----------
    bands : sequence of str
        ``B1``..``B5``, ``B6`` (= ``B61``, low gain), ``B62``, ``B7``, ``B8`` (pan,
        averaged onto 30 m); thermal bands at 60 m are resampled to the mask grid.
    window, tile_size, skip_empty, max_bytes
        As :func:`load_biome_scenes` (a scene is about 8,000 x 7,000 pixels).

    Returns
    -------
    list of LabelledSample
        TOA reflectance (pre-2012 MTL: ``pi L d^2 / (ESUN sin(elevation))`` with the
        Landsat 7 Handbook ESUN and ``d`` from the acquisition day), B6 as BT (K), 30 m.
        Tags ``scene``, ``window`` and ``surface`` (the latitude-zone folder).
    """
    root = _require_dir(None if root is None else Path(root), "Landsat 7 Irish",
                        "<zone>/p<path>_r<row>/ folders")
    if max_bytes is not None:
        rasterio = _rasterio()
        dirs = _irish_scene_dirs(root)
        if scenes is not None:
            dirs = [d for d in dirs if d.name in set(scenes)]
        n = 0
        for d in dirs:
            if window is not None:
                n += int(window[2]) * int(window[3])
            else:
                with rasterio.open(sorted(d.glob("*newmask2015.TIF"))[0]) as m:
                    n += m.height * m.width
        _check_memory(n, len(bands), max_bytes, f"{len(dirs)} Landsat 7 Irish scenes",
                      "select scenes=, read a window=, or stream with iter_l7_irish()")
    return list(iter_l7_irish(root, classes, bands, scenes, window, tile_size, skip_empty))


# --------------------------------------------------------------------- 38-Cloud

_38CLOUD_BANDS = (("blue", "B2"), ("green", "B3"), ("red", "B4"), ("nir", "B5"))
_L8_SCENE_RE = re.compile(r"(L[COTE]0?8_?\w+)$")


def load_38cloud(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                 split: str = "train", patches: Sequence[str] | None = None,
                 sun_elevation_deg: Mapping[str, float] | None = None,
                 mtl_dir: str | PathLike | None = None) -> list[LabelledSample]:
    """Read 38-Cloud (Mohajerani & Saeedi) training patches (384 x 384, Landsat 8, 30 m).

    Layout: ``root/38-Cloud_training/`` (or ``root`` itself) with ``train_red/``,
    ``train_green/``, ``train_blue/``, ``train_nir/``, ``train_gt/`` holding
    ``<band>_<patch>.TIF`` (uint16 Level-1 DN; 0 = outside the scene) and
    ``gt_<patch>.TIF`` (255 cloud, thin included; 0 clear), and
    ``training_patches_38-Cloud.csv`` (column ``name``: the patch names, e.g.
    ``patch_192_10_by_12_LC08_L1TP_002053_20160520_20170324_01_T1``). The 95-Cloud
    extension uses the same layout.

    Parameters
    ----------
    split : {"train"}
        Only the training patches have per-patch labels (the test set has whole-scene
        ground truths in ``Entire_scene_gts/`` only).
    patches : sequence of str, optional
        Patch names to read (default: the CSV list, else every red patch file).
    sun_elevation_deg : mapping, optional
        Scene id -> sun elevation (degrees) for the sun-angle correction.
    mtl_dir : path-like, optional
        Folder with the scenes' ``<scene_id>_MTL.txt`` (from USGS), read for the sun
        elevation.

    Returns
    -------
    list of LabelledSample
        Bands B2, B3, B4, B5 as TOA reflectance ``2e-5 DN - 0.1`` (the Landsat 8 Level-1
        rescaling), divided by sin(sun elevation) when it is known; else left
        uncorrected (``tags["sun_corrected"] = False``: reflectance too low by a factor
        sin(elevation)). Tags ``scene`` and ``sun_corrected``. 38-Cloud has no shadow
        class (see the module notes on ``shadow_labelled``).
    """
    root = _require_dir(None if root is None else Path(root), "38-Cloud",
                        "38-Cloud_training/ with train_red/, train_green/, train_blue/, "
                        "train_nir/ and train_gt/")
    if split not in ("train", "training"):
        raise ValueError(f"split {split!r}: 38-Cloud has per-patch labels for 'train' only (the "
                         "test set ships whole-scene ground truths in Entire_scene_gts/)")
    base = root / "38-Cloud_training" if (root / "38-Cloud_training").is_dir() else root
    dirs = {b: base / f"train_{b}" for b in ("red", "green", "blue", "nir", "gt")}
    missing = [p.name for p in dirs.values() if not p.is_dir()]
    if missing:
        raise DatasetLayoutError(f"{base}: missing folders {missing}; 38-Cloud's training set has "
                                 "train_red/, train_green/, train_blue/, train_nir/, train_gt/")
    if patches is None:
        csv_file = base / "training_patches_38-Cloud.csv"
        if csv_file.is_file():
            rows = _read_csv_rows(csv_file)
            col = "name" if rows and "name" in rows[0] else next(iter(rows[0])) if rows else "name"
            patches = [r[col].strip() for r in rows if r.get(col, "").strip()]
        else:
            patches = sorted(p.name[len("red_"):-len(".TIF")] for p in dirs["red"].glob("red_*.TIF"))
    suns = dict(sun_elevation_deg or {})
    sensor, desc = _descriptors("landsat8_oli_tirs", [b for _, b in _38CLOUD_BANDS])
    rasterio = _rasterio()
    out = []
    for name in patches:
        m = _L8_SCENE_RE.search(name)
        scene = m.group(1) if m else name
        if scene not in suns and mtl_dir is not None:
            f = Path(mtl_dir) / f"{scene}_MTL.txt"
            if f.is_file():
                suns[scene] = float(radiometry.parse_mtl(f)["SUN_ELEVATION"])
        dn = []
        for colour, _ in _38CLOUD_BANDS:
            f = dirs[colour] / f"{colour}_{name}.TIF"
            if not f.is_file():
                raise DatasetLayoutError(f"patch {name}: missing {f}")
            with rasterio.open(f) as src:
                dn.append(src.read(1))
        dn = np.stack(dn)
        gt_file = dirs["gt"] / f"gt_{name}.TIF"
        if not gt_file.is_file():
            raise DatasetLayoutError(f"patch {name}: missing ground truth {gt_file}")
        with rasterio.open(gt_file) as src:
            gt = src.read(1)
        image = (L8_REFLECTANCE_MULT * dn.astype(np.float32) + L8_REFLECTANCE_ADD).astype(np.float32)
        if scene in suns:
            image /= np.float32(math.sin(math.radians(suns[scene])))
        codes = np.where(gt > 0, THICK, CLEAR).astype(np.uint8)
        out.append(_sample(image, desc, codes, (dn == 0).all(axis=0), classes, sensor, 30.0, name,
                           {"scene": scene, "sun_corrected": scene in suns},
                           shadow_labelled=False, thin_thick=False, dataset="38-Cloud"))
    return out


# ------------------------------------------------------------------ CloudPeru2


def load_cloudperu2(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                    split: str | None = None, scale: float | None = None) -> list[LabelledSample]:
    """Read CloudPeru2 (Morales et al.): PeruSat-1 patches, 512 x 512, four bands, 2.8 m.

    Layout: ``images/<name>.tif`` (4 bands in PeruSat-1 bundle order blue, green, red,
    NIR) and ``masks/<name>_Mask.tif`` (255 cloud, 0 clear), either directly under
    ``root`` or under ``root/<split>/`` (the published archive has no fixed split; a
    ``split`` is whatever sub-folder you made, e.g. ``train`` / ``val``).

    Parameters
    ----------
    split : str, optional
        Sub-folder of ``root`` to read; None: every ``images/`` folder under ``root``.
    scale : float, optional
        Reflectance per DN. The images are 8-bit with no radiometric metadata, so by
        default ``1 / 255`` is used for uint8 files: a stand-in for reflectance, not a
        calibration (``tags["reflectance"] = "approximate"``). Other dtypes need
        ``scale``.

    Returns
    -------
    list of LabelledSample
        Bands B1..B4 of ``perusat1``; DN 0 in every band is no data; no shadow class.
    """
    root = _require_dir(None if root is None else Path(root), "CloudPeru2",
                        "images/<name>.tif and masks/<name>_Mask.tif")
    base = root if split is None else root / split
    if not base.is_dir():
        raise DatasetLayoutError(f"CloudPeru2: no split folder {base}")
    image_dirs = sorted(p for p in base.rglob("images") if p.is_dir())
    if not image_dirs:
        raise DatasetLayoutError(f"{base}: no images/ folder; CloudPeru2 is images/<name>.tif with "
                                 "masks/<name>_Mask.tif beside it")
    sensor, desc = _descriptors("perusat1", ("B1", "B2", "B3", "B4"))
    rasterio = _rasterio()
    out = []
    for idir in image_dirs:
        for f in sorted(idir.glob("*.tif")):
            mask_file = idir.parent / "masks" / f"{f.stem}_Mask.tif"
            if not mask_file.is_file():
                raise DatasetLayoutError(f"image {f} has no mask {mask_file}")
            with rasterio.open(f) as src:
                if src.count != 4:
                    raise DatasetLayoutError(f"{f}: expected 4 bands (blue, green, red, NIR), got {src.count}")
                dn = src.read()
            if scale is None and dn.dtype != np.uint8:
                raise ValueError(f"{f} is {dn.dtype}, not 8-bit: pass scale= (reflectance per DN)")
            s = np.float32(1 / 255 if scale is None else scale)
            with rasterio.open(mask_file) as src:
                gt = src.read(1)
            codes = np.where(gt > 0, THICK, CLEAR).astype(np.uint8)
            tags = {"reflectance": "approximate" if scale is None else "scaled",
                    "split": idir.parent.relative_to(root).as_posix() or "."}
            out.append(_sample(dn.astype(np.float32) * s, desc, codes, (dn == 0).all(axis=0), classes,
                               sensor, 2.8, f.stem, tags, shadow_labelled=False, thin_thick=False,
                               dataset="CloudPeru2"))
    return out


# ------------------------------------------------------------------ CloudSEN12

_CS12_SIZE = 512


def _cloudsen12_split_dir(root: Path, split: str) -> Path:
    names = {"val": ("val", "validation"), "validation": ("validation", "val")}.get(split, (split,))
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise DatasetLayoutError(f"CloudSEN12: no {split!r} folder in {root}; the high-quality set "
                             "has train/, val/ and test/ with L1C_<band>.dat and LABEL_manual_hq.dat")


def _cloudsen12_count(d: Path) -> int:
    label = d / "LABEL_manual_hq.dat"
    if not label.is_file():
        raise DatasetLayoutError(f"{d}: no LABEL_manual_hq.dat")
    n, rem = divmod(label.stat().st_size, _CS12_SIZE * _CS12_SIZE)
    if rem:
        raise DatasetLayoutError(f"{label}: size is not a multiple of 512 x 512 bytes")
    return n


def iter_cloudsen12(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                    split: str = "train", indices: Sequence[int] | None = None
                    ) -> Iterator[LabelledSample]:
    """Yield CloudSEN12 high-quality patches one at a time (see :func:`load_cloudsen12`)."""
    root = _require_dir(None if root is None else Path(root), "CloudSEN12",
                        "train/, val/, test/ with L1C_<band>.dat and LABEL_manual_hq.dat")
    d = _cloudsen12_split_dir(root, split)
    n = _cloudsen12_count(d)
    bands = {}
    for f, cat in CLOUDSEN12_BANDS.items():
        path = d / f"L1C_{f}.dat"
        if not path.is_file():
            raise DatasetLayoutError(f"{d}: missing {path.name}")
        if path.stat().st_size != n * _CS12_SIZE * _CS12_SIZE * 2:
            raise DatasetLayoutError(f"{path}: expected {n} x 512 x 512 int16 values (as "
                                     f"LABEL_manual_hq.dat has {n} patches)")
        bands[cat] = np.memmap(path, dtype="<i2", mode="r", shape=(n, _CS12_SIZE, _CS12_SIZE))
    labels = np.memmap(d / "LABEL_manual_hq.dat", dtype=np.uint8, mode="r", shape=(n, _CS12_SIZE, _CS12_SIZE))
    meta_file = d / "metadata.csv"
    meta = _read_csv_rows(meta_file) if meta_file.is_file() else []
    if meta and len(meta) != n:
        raise DatasetLayoutError(f"{meta_file} has {len(meta)} rows for {n} patches")
    sensor, desc = _descriptors("sentinel2_msi", S2_CATALOGUE_BANDS)
    for i in (range(n) if indices is None else indices):
        dn = np.stack([np.asarray(bands[b][i]) for b in S2_CATALOGUE_BANDS])
        image = dn.astype(np.float32) / np.float32(10000.0)  # README: scale 0.0001
        raw = np.asarray(labels[i])
        codes = _map_codes(raw, CLOUDSEN12_TO_BIOME)  # codes above 3 -> fill
        tags = {k: _tag_value(v) for k, v in meta[i].items() if k and v is not None} if meta else {}
        tags["index"] = int(i)
        yield _sample(image, desc, codes, (dn == 0).all(axis=0), classes, sensor, 10.0,
                      f"{d.name}_{i}", tags)


def load_cloudsen12(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                    split: str = "train", indices: Sequence[int] | None = None,
                    max_bytes: float | None = DEFAULT_MAX_BYTES) -> list[LabelledSample]:
    """Read CloudSEN12 high-quality labels (Aybar et al. 2022), Hugging Face layout.

    Layout (``csaybar/CloudSEN12-high`` on Hugging Face): ``root/<split>/`` with one raw
    little-endian memory-map per band, ``L1C_B1.dat`` .. ``L1C_B12.dat`` and
    ``L1C_B8A.dat`` (int16, shape (N, 512, 512), reflectance x 10000),
    ``LABEL_manual_hq.dat`` (uint8, (N, 512, 512): 0 clear, 1 thick cloud, 2 thin cloud,
    3 cloud shadow) and ``metadata.csv`` (one row per patch). N is taken from the label
    file's size. Other layouts (the 2022 per-patch GeoTIFF release, CloudSEN12+ TACO
    files) are not supported.

    Parameters
    ----------
    split : {"train", "val", "test"}
    indices : sequence of int, optional
        Patches to read (default all: the train split is about 8,500 patches, about 115 GB
        as float32; see ``max_bytes``).
    max_bytes : float, optional
        Refuse (MemoryError) above this many bytes; stream with :func:`iter_cloudsen12`.

    Returns
    -------
    list of LabelledSample
        13 Level-1C bands as TOA reflectance, 10 m; DN 0 in every band (the padding
        beyond the 509 x 509 patch) is no data; tags: the ``metadata.csv`` columns and
        ``index``.
    """
    root = _require_dir(None if root is None else Path(root), "CloudSEN12",
                        "train/, val/, test/ folders")
    n = len(indices) if indices is not None else _cloudsen12_count(_cloudsen12_split_dir(root, split))
    _check_memory(n * _CS12_SIZE * _CS12_SIZE, 13, max_bytes, f"{n} CloudSEN12 patches",
                  "pass indices=, or stream with iter_cloudsen12()")
    return list(iter_cloudsen12(root, classes, split, indices))


# ------------------------------------------------------------------- registry


@register_dataset("s2_cloud_mask_catalogue")
def _reg_s2(root: Path | None, split: str | None, classes) -> list[LabelledSample]:
    return load_s2_cloud_mask_catalogue(root, classes, split)


@register_dataset("biome_scenes")
def _reg_biome(root: Path | None, split: str | None, classes) -> list[LabelledSample]:
    # The Biome has no official split; a split name selects a biome ("Forest", ...).
    return load_biome_scenes(root, classes, biomes=None if split is None else [split])


@register_dataset("sparcs")
def _reg_sparcs(root: Path | None, split: str | None, classes) -> list[LabelledSample]:
    if split is not None:
        raise ValueError("SPARCS has no splits: pass split=None")
    return load_sparcs(root, classes)


@register_dataset("l7_irish")
def _reg_irish(root: Path | None, split: str | None, classes) -> list[LabelledSample]:
    if split is not None:
        raise ValueError("Landsat 7 Irish has no splits: pass split=None (select scenes with "
                         "load_l7_irish(scenes=...))")
    return load_l7_irish(root, classes)


@register_dataset("38cloud")
def _reg_38cloud(root: Path | None, split: str | None, classes) -> list[LabelledSample]:
    return load_38cloud(root, classes, split or "train")


@register_dataset("cloudperu2")
def _reg_cloudperu2(root: Path | None, split: str | None, classes) -> list[LabelledSample]:
    return load_cloudperu2(root, classes, split)


@register_dataset("cloudsen12")
def _reg_cloudsen12(root: Path | None, split: str | None, classes) -> list[LabelledSample]:
    return load_cloudsen12(root, classes, split or "train")
