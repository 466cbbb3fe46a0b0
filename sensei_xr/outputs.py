"""Writing masks: Cloud Optimized GeoTIFFs written atomically, their file names, cloud fraction.

A file is written under a temporary name in the target folder and renamed only once
complete, so an interrupted run never leaves a file that looks finished.
"""

from __future__ import annotations

import os
import re
from os import PathLike
from pathlib import Path

import numpy as np

__all__ = ["cloud_fraction", "output_path", "safe_stem", "write_mask_cog"]


def safe_stem(text: str) -> str:
    """A file-name stem from any text: runs of characters other than letters, digits,
    ``.``, ``_`` and ``-`` become ``_`` (STAC item ids may hold ``/``, ``:`` or spaces).

    Parameters
    ----------
    text : str
        A scene id, collection id or model name.

    Returns
    -------
    str
        Never empty (``"scene"`` when nothing usable is left) and never starting or
        ending with ``.`` or ``_``, so it names no folder and no hidden file.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    return stem or "scene"


def cloud_fraction(values) -> float | None:
    """Cloudy share of the valid pixels of a mask (None when no pixel is valid).

    Parameters
    ----------
    values : array-like
        A uint8 mask (0 clear, 1 cloud, 255 no data), or floats with NaN for no data (a
        Zarr store read back decoded).
    """
    v = np.asarray(values)
    valid = np.isfinite(v) if np.issubdtype(v.dtype, np.floating) else v != 255
    n = int(valid.sum())
    return float((v[valid] == 1).sum()) / n if n else None


def output_path(out_dir: str | PathLike, name: str, suffix: str) -> Path:
    """``<out_dir>/<name><suffix>``, refusing a scene name that would name a folder or
    leave ``out_dir`` (a ValueError saying how to rename it)."""
    out_dir = Path(out_dir)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"scene name {name!r} is not a usable file name: give a non-empty string")
    bad = [c for c in ("/", "\\", "\0") if c in name]
    if bad:
        raise ValueError(
            f"scene name {name!r} contains {' and '.join(map(repr, bad))}: names become file names "
            f"<out_dir>/<name>{suffix} and may not name folders (or leave out_dir); rename "
            f"the scene, e.g. {name.replace('/', '_').replace(chr(92), '_').replace(chr(0), '')!r}"
        )
    target = out_dir / f"{name}{suffix}"
    # Defence in depth: whatever the name, the file sits directly in out_dir.
    if target.resolve().parent != out_dir.resolve():
        raise ValueError(f"scene name {name!r} would write outside {out_dir}; rename the scene")
    return target


def write_mask_cog(mask, path: str | PathLike, overwrite: bool = False, overviews: bool = True) -> Path:
    """Write a (lazy) mask DataArray as a Cloud Optimized GeoTIFF.

    Parameters
    ----------
    mask : xarray.DataArray
        2-D (y, x) mask or probability with CRS (rioxarray) and declared nodata.
    path : path-like
        Target ``.tif``.
    overwrite : bool
        Replace an existing file; otherwise an existing file is an error.
    overviews : bool
        Add internal overviews (nearest for integer masks, average for probabilities).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if mask.ndim != 2:
        raise ValueError(f"write_mask_cog takes a 2-D (y, x) mask, got dims {mask.dims}")
    tmp = path.with_name(f".{path.name}.partial")
    resampling = "NEAREST" if np.issubdtype(mask.dtype, np.integer) else "AVERAGE"
    try:
        values = mask.compute()
        values.rio.to_raster(
            tmp,
            driver="COG",
            compress="DEFLATE",
            overview_resampling=resampling,
            overviews="AUTO" if overviews else "NONE",
            tags={k: str(v) for k, v in mask.attrs.items()},
        )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
