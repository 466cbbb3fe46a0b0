"""Writing masks: Cloud Optimized GeoTIFFs written atomically.

A file is written under a temporary name in the target folder and renamed only once
complete, so an interrupted run never leaves a file that looks finished.
"""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

import numpy as np

__all__ = ["write_mask_cog"]


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
