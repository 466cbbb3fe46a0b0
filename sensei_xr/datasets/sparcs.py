"""Landsat 8 SPARCS (Hughes & Hayes; Hughes & Kennedy).

Registered for :func:`sensei_xr.datasets.load_dataset`; see ``docs/datasets.md`` for where to
get it and its layout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from .. import radiometry
from ..errors import DatasetLayoutError
from ._common import (
    CLEAR,
    SHADOW,
    THICK,
    _descriptors,
    _find_one,
    _landsat_dn_to_physical,
    _map_codes,
    _names,
    _rasterio,
    _require_dir,
    _sample,
)
from .base import LabelledSample, register_dataset

__all__ = ["SPARCS_BANDS", "SPARCS_TO_BIOME", "SPARCS_COLOURS", "load_sparcs"]

#: Band order of SPARCS ``*_data.tif`` (the 11 Landsat 8 bands without pan).
SPARCS_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11")

#: SPARCS mask codes (readme of the OSU / USGS release) -> Biome codes.
SPARCS_TO_BIOME = {0: SHADOW, 1: SHADOW, 2: CLEAR, 3: CLEAR, 4: CLEAR, 5: THICK, 6: CLEAR}

#: SPARCS class colours, as the mask PNG shows them when read as RGB (eo4ai L8SPARCS80.yaml).
SPARCS_COLOURS = {(0, 0, 0): 0, (0, 0, 128): 1, (0, 0, 255): 2, (0, 255, 255): 3,
                  (128, 128, 128): 4, (255, 255, 255): 5, (128, 128, 0): 6}


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

    Parameters
    ----------
    root : path-like
    classes : tuple of str
    scenes : sequence of str, optional
        Subscene ids (the file prefix, e.g. ``LC80010812013365LGN00_18``) to read; one not
        found is an error.

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
    scenes = _names(scenes, "scenes")
    if scenes is not None:
        # A misspelt id would otherwise just load fewer subscenes than asked for.
        have = [f.name[: -len("_data.tif")] for f in data_files]
        missing = sorted(set(scenes) - set(have))
        if missing:
            raise DatasetLayoutError(f"{root}: no SPARCS subscene(s) {missing}; ids are e.g. {have[:3]}")
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
    return out


@register_dataset("sparcs")
def _reg_sparcs(root: Path | None, split: str | None, classes, *,
                scenes: Sequence[str] | None = None) -> list[LabelledSample]:
    """SPARCS for :func:`load_dataset`; options as :func:`load_sparcs`.

    Parameters
    ----------
    split : None
        SPARCS has no splits: select subscenes with the ``scenes`` option.
    scenes
        Keyword option: subscene ids (``LC80010812013365LGN00_18``) to read; one not
        found is an error. All 80 need about 3.7 GiB.
    """
    if split is not None:
        raise ValueError(f"SPARCS has no splits (got split={split!r}): pass split=None and select "
                         "subscenes with the scenes option")
    return load_sparcs(root, classes, scenes)
