"""Landsat 8 Biome (USGS L8 CCA), full scenes.

Registered for :func:`sensei_xr.datasets.load_dataset`; see ``docs/datasets.md`` for where to
get it and its layout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from .. import radiometry
from ..errors import DatasetLayoutError
from ._common import (
    _BIOMES,
    DEFAULT_MAX_BYTES,
    FILL,
    _biome_tag,
    _check_memory,
    _descriptors,
    _find_one,
    _landsat_dn_to_physical,
    _named_dirs,
    _names,
    _rasterio,
    _read_window,
    _require_dir,
    _sample,
    _tiled_pixels,
    _windows,
)
from .base import LabelledSample, register_dataset

__all__ = ["BIOME_SCENE_BANDS", "load_biome_scenes", "iter_biome_scenes"]

#: Default Biome bands: all 30 m bands (B8, pan, is 15 m; ask for it explicitly).
BIOME_SCENE_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11")


# ------------------------------------------------------------ Landsat 8 Biome


def _biome_scene_dirs(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob("*_fixedmask.img")}, key=lambda p: p.name)


def _select_biome_dirs(root: Path, scenes: Sequence[str] | None, biomes: Sequence[str] | None) -> list[Path]:
    """The scene folders under ``root`` selected by ``scenes`` and ``biomes``."""
    every = _biome_scene_dirs(root)
    if not every:
        raise DatasetLayoutError(f"{root}: no <scene_id>_fixedmask.img found; the USGS L8 Biome "
                                 "archives extract to BC/<scene_id>/ with band TIFs, MTL and "
                                 "the ENVI mask")
    dirs = _named_dirs(root, every, scenes, "Biome")
    biomes = _names(biomes, "biomes")
    # A misspelt biome would otherwise just load less than asked for.
    if biomes is not None:
        keep = {_BIOMES.get(re.sub(r"[^a-z]", "", b.lower()), b): b for b in biomes}
        found = {d: _biome_tag(d.relative_to(root)) for d in every}
        missing = sorted(b for tag, b in keep.items() if tag not in found.values())
        if missing:
            raise DatasetLayoutError(f"{root}: no scenes of biome(s) {missing}; biomes come from the folder "
                                     f"names above BC/ ({', '.join(sorted(_BIOMES.values()))}); found "
                                     f"{sorted({t for t in found.values() if t}) or 'none'}")
        dirs = [d for d in dirs if found[d] in keep]
    return dirs


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
    dirs = _select_biome_dirs(root, scenes, biomes)
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
        Scene ids to read; an id not found under ``root`` is an error.
    biomes : sequence of str, optional
        e.g. ``["Forest", "Snow/Ice"]`` (folder names; needs the biome folders); a biome
        with no scene under ``root`` is an error.
    window : (row_off, col_off, height, width), optional
        Read only this window of each scene, pixels of the 30 m grid.
    tile_size : int, optional
        Split each scene (or window) into tiles of this many pixels, one sample per tile;
        the last row / column of tiles is flush with the edge and overlaps its neighbour,
        so every tile is full-size (a side shorter than ``tile_size`` is one tile).
    skip_empty : bool
        Drop windows / tiles that are all fill.
    max_bytes : float, optional
        Refuse (MemoryError) when the samples would need more memory than this, bytes
        (default 8 GiB; tiles count with their overlap); None: no check. A scene is
        about 60 Mpx (3 GB with 10 bands),
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
        dirs = _select_biome_dirs(root, scenes, biomes)
        n = 0
        for d in dirs:
            with rasterio.open(d / f"{d.name}_fixedmask.img") as m:
                n += _tiled_pixels(m.height, m.width, tile_size, window)
        _check_memory(n, len(bands), max_bytes, f"{len(dirs)} Biome scenes",
                      "select scenes= / biomes=, read a window=, or stream with iter_biome_scenes()")
    return list(iter_biome_scenes(root, classes, bands, scenes, biomes, window, tile_size, skip_empty))


@register_dataset("biome_scenes")
def _reg_biome(root: Path | None, split: str | None, classes, *, bands: Sequence[str] = BIOME_SCENE_BANDS,
               scenes: Sequence[str] | None = None, biomes: Sequence[str] | None = None, window=None,
               tile_size: int | None = None, skip_empty: bool = True,
               max_bytes: float | None = DEFAULT_MAX_BYTES) -> list[LabelledSample]:
    """Landsat 8 Biome scenes for :func:`load_dataset`; options as :func:`load_biome_scenes`.

    Parameters
    ----------
    split : str, optional
        The Biome has no official split: a split name selects one biome (``"Forest"``);
        give it or ``biomes``, not both.
    bands, scenes, biomes, window, tile_size, skip_empty, max_bytes
        Keyword options, as :func:`load_biome_scenes` (``window`` as a list
        ``[row_off, col_off, height, width]`` in a TOML config; ``max_bytes`` in bytes,
        ``inf`` there to switch the check off). All 96 scenes need about 280 GB and are
        refused under the default 8 GiB.
    """
    if split is not None:
        if biomes is not None:
            raise ValueError(f"biome_scenes: split={split!r} selects a biome and so does biomes={biomes!r}; "
                             "give one of them")
        biomes = [split]
    return load_biome_scenes(root, classes, bands, scenes, biomes, window, tile_size, skip_empty, max_bytes)
