"""CloudPeru2 (Morales et al.), PeruSat-1.

Registered for :func:`sensei_xr.datasets.load_dataset`; see ``docs/datasets.md`` for where to
get it and its layout.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from ..errors import DatasetLayoutError
from ._common import (
    CLEAR,
    THICK,
    _descriptors,
    _rasterio,
    _require_dir,
    _sample,
)
from .base import LabelledSample, register_dataset

__all__ = ["load_cloudperu2"]

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


@register_dataset("cloudperu2")
def _reg_cloudperu2(root: Path | None, split: str | None, classes, *,
                    scale: float | None = None) -> list[LabelledSample]:
    """CloudPeru2 for :func:`load_dataset`; options as :func:`load_cloudperu2`.

    Parameters
    ----------
    split : str, optional
        A sub-folder of ``root`` you made; None: every ``images/`` folder.
    scale
        Keyword option: reflectance per DN (default ``1 / 255`` for 8-bit files, an
        approximation; other dtypes need it).
    """
    return load_cloudperu2(root, classes, split, scale)
