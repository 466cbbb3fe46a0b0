"""38-Cloud (Mohajerani & Saeedi), Landsat 8 patches.

Registered for :func:`sensei_xr.datasets.load_dataset`; see ``docs/datasets.md`` for where to
get it and its layout.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from .. import radiometry
from ..errors import DatasetLayoutError
from ._common import (
    CLEAR,
    L8_REFLECTANCE_ADD,
    L8_REFLECTANCE_MULT,
    THICK,
    _descriptors,
    _rasterio,
    _read_csv_rows,
    _require_dir,
    _sample,
)
from .base import LabelledSample, register_dataset

__all__ = ["load_38cloud"]

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


@register_dataset("38cloud")
def _reg_38cloud(root: Path | None, split: str | None, classes) -> list[LabelledSample]:
    return load_38cloud(root, classes, split or "train")
