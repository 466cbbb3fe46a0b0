"""Landsat 7 Irish (USGS L7 CCA).

Registered for :func:`sensei_xr.datasets.load_dataset`; see ``docs/datasets.md`` for where to
get it and its layout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from .. import radiometry
from ..errors import DatasetLayoutError
from ._common import (
    CLEAR,
    DEFAULT_MAX_BYTES,
    FILL,
    SHADOW,
    THICK,
    THIN,
    _check_memory,
    _descriptors,
    _find_one,
    _landsat_dn_to_physical,
    _map_codes,
    _named_dirs,
    _rasterio,
    _read_window,
    _require_dir,
    _sample,
    _tiled_pixels,
    _windows,
)
from .base import LabelledSample, register_dataset

__all__ = ["L7_IRISH_BANDS", "L7_IRISH_TO_BIOME", "load_l7_irish", "iter_l7_irish"]

#: Default Landsat 7 Irish bands (file suffixes B10..B70; B61 = thermal low gain).
L7_IRISH_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")

#: L7 Irish ``*_newmask2015.TIF`` -> Biome codes. USGS documents 192 for thin cloud; the
#: files hold 191 (torchgeo PR #1355), so both are accepted.
L7_IRISH_TO_BIOME = {0: FILL, 64: SHADOW, 128: CLEAR, 191: THIN, 192: THIN, 255: THICK}


# ------------------------------------------------------------- Landsat 7 Irish

_IRISH_FILE = {"B1": "B10", "B2": "B20", "B3": "B30", "B4": "B40", "B5": "B50", "B6": "B61",
               "B61": "B61", "B62": "B62", "B7": "B70", "B8": "B80"}
_IRISH_MTL_BAND = {"B1": "1", "B2": "2", "B3": "3", "B4": "4", "B5": "5", "B6": "6_VCID_1",
                   "B61": "6_VCID_1", "B62": "6_VCID_2", "B7": "7", "B8": "8"}


def _irish_scene_dirs(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob("*newmask2015.TIF")}, key=lambda p: str(p))


def _select_irish_dirs(root: Path, scenes: Sequence[str] | None) -> list[Path]:
    """The scene folders under ``root`` (``scenes``: folder names, all found or an error)."""
    dirs = _irish_scene_dirs(root)
    if not dirs:
        legacy = sorted(root.rglob("*_mask*.TIF"))
        hint = (f" (found {legacy[0].name}: the older *_mask.TIF release uses two different "
                "encodings and is not supported; use the 2016 USGS release)") if legacy else ""
        raise DatasetLayoutError(f"{root}: no L7_p*_r*_newmask2015.TIF masks found{hint}")
    return _named_dirs(root, dirs, scenes, "Landsat 7 Irish")


def iter_l7_irish(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                  bands: Sequence[str] = L7_IRISH_BANDS, scenes: Sequence[str] | None = None,
                  window=None, tile_size: int | None = None, skip_empty: bool = True
                  ) -> Iterator[LabelledSample]:
    """Yield Landsat 7 Irish samples one at a time (see :func:`load_l7_irish`)."""
    root = _require_dir(None if root is None else Path(root), "Landsat 7 Irish",
                        "<zone>/p<path>_r<row>/ folders with L7*_B10.TIF.., *_MTL.txt and "
                        "L7_p*_r*_newmask2015.TIF")
    dirs = _select_irish_dirs(root, scenes)
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
    scenes : sequence of str, optional
        Scene folder names (``p226_r98``) to read; one not found is an error.
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
        dirs = _select_irish_dirs(root, scenes)
        n = 0
        for d in dirs:
            with rasterio.open(sorted(d.glob("*newmask2015.TIF"))[0]) as m:
                n += _tiled_pixels(m.height, m.width, tile_size, window)
        _check_memory(n, len(bands), max_bytes, f"{len(dirs)} Landsat 7 Irish scenes",
                      "select scenes=, read a window=, or stream with iter_l7_irish()")
    return list(iter_l7_irish(root, classes, bands, scenes, window, tile_size, skip_empty))


@register_dataset("l7_irish")
def _reg_irish(root: Path | None, split: str | None, classes, *, bands: Sequence[str] = L7_IRISH_BANDS,
               scenes: Sequence[str] | None = None, window=None, tile_size: int | None = None,
               skip_empty: bool = True, max_bytes: float | None = DEFAULT_MAX_BYTES) -> list[LabelledSample]:
    """Landsat 7 Irish scenes for :func:`load_dataset`; options as :func:`load_l7_irish`.

    Parameters
    ----------
    split : None
        The dataset has no splits: select scenes with the ``scenes`` option.
    bands, scenes, window, tile_size, skip_empty, max_bytes
        Keyword options, as :func:`load_l7_irish` (``max_bytes`` in bytes, default 8 GiB;
        the 206 scenes need about 430 GB).
    """
    if split is not None:
        raise ValueError(f"Landsat 7 Irish has no splits (got split={split!r}): pass split=None and "
                         "select scenes with the scenes option (scenes=[\"p226_r98\", ...])")
    return load_l7_irish(root, classes, bands, scenes, window, tile_size, skip_empty, max_bytes)
