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
    _names,
    _option_dir,
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


def _scene_of(patch: str) -> str:
    m = _L8_SCENE_RE.search(patch)
    return m.group(1) if m else patch


def _sun_elevations(scenes: Sequence[str], root: Path, given: Mapping[str, float] | None,
                    mtl_dir: str | PathLike | None) -> dict[str, float]:
    """Scene id -> sun elevation (degrees) from ``given``, else from the scenes' MTL files."""
    suns = {str(k): float(v) for k, v in (given or {}).items()}
    bad = {k: v for k, v in suns.items() if not 0 < v <= 90}
    if bad:
        raise ValueError(f"sun_elevation_deg {bad}: a sun elevation is in degrees, above 0 and at most 90")
    if all(s in suns for s in scenes):
        return suns
    # 38-Cloud ships no MTL: read the ones the user put in mtl_dir, else anywhere under root.
    folder = root if mtl_dir is None else _option_dir(mtl_dir, root, "mtl_dir")
    found = folder.rglob("*_MTL.txt") if mtl_dir is None else folder.glob("*_MTL.txt")
    files = {f.name[: -len("_MTL.txt")]: f for f in found}
    for scene in scenes:
        if scene not in suns and scene in files:
            suns[scene] = float(radiometry.parse_mtl(files[scene])["SUN_ELEVATION"])
    return suns


def load_38cloud(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                 split: str = "train", patches: Sequence[str] | None = None,
                 sun_elevation_deg: Mapping[str, float] | None = None,
                 mtl_dir: str | PathLike | None = None, allow_uncorrected: bool = False) -> list[LabelledSample]:
    """Read 38-Cloud (Mohajerani & Saeedi) training patches (384 x 384, Landsat 8, 30 m).

    Layout: ``root/38-Cloud_training/`` (or ``root`` itself) with ``train_red/``,
    ``train_green/``, ``train_blue/``, ``train_nir/``, ``train_gt/`` holding
    ``<band>_<patch>.TIF`` (uint16 Level-1 DN; 0 = outside the scene) and
    ``gt_<patch>.TIF`` (255 cloud, thin included; 0 clear), and
    ``training_patches_38-Cloud.csv`` (column ``name``: the patch names, e.g.
    ``patch_192_10_by_12_LC08_L1TP_002053_20160520_20170324_01_T1``). The 95-Cloud
    extension uses the same layout.

    The dataset ships no MTL, so the sun elevation of each scene must come from
    ``sun_elevation_deg``, ``mtl_dir`` or ``<scene_id>_MTL.txt`` files put under ``root``;
    a scene with none is an error (before any patch is read) unless
    ``allow_uncorrected=True``: its reflectance would be too low by a factor
    sin(elevation), e.g. half at 30 degrees, and a model trained on it silently biased.

    Parameters
    ----------
    split : {"train"}
        Only the training patches have per-patch labels (the test set has whole-scene
        ground truths in ``Entire_scene_gts/`` only).
    patches : sequence of str, optional
        Patch names to read (default: the CSV list, else every red patch file).
    sun_elevation_deg : mapping, optional
        Scene id (``LC08_L1TP_002053_20160520_20170324_01_T1``) -> sun elevation,
        degrees (0, 90]; wins over any MTL.
    mtl_dir : path-like, optional
        Folder with the scenes' ``<scene_id>_MTL.txt`` (from USGS), read for the sun
        elevation; a relative path that is no folder as given is taken under ``root``.
        Default: any ``<scene_id>_MTL.txt`` found under ``root``.
    allow_uncorrected : bool
        Load scenes of unknown sun elevation without the correction
        (``tags["sun_corrected"] = False``) instead of raising.

    Returns
    -------
    list of LabelledSample
        Bands B2, B3, B4, B5 as TOA reflectance ``(2e-5 DN - 0.1) / sin(sun elevation)``
        (the Landsat 8 Level-1 rescaling); tags ``scene`` and ``sun_corrected``. 38-Cloud
        has no shadow class (see the module notes on ``shadow_labelled``).

    Raises
    ------
    DatasetLayoutError
        A scene's sun elevation is unknown and ``allow_uncorrected`` is False; the message
        names the scenes and the ways to give it.
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
    patches = _names(patches, "patches")
    scenes = sorted({_scene_of(name) for name in patches})
    suns = _sun_elevations(scenes, root, sun_elevation_deg, mtl_dir)
    unknown = [s for s in scenes if s not in suns]
    if unknown and not allow_uncorrected:
        raise DatasetLayoutError(
            f"38-Cloud: the sun elevation of {len(unknown)} of {len(scenes)} scenes is unknown (e.g. "
            f"{unknown[:3]}), and without it reflectance is too low by a factor sin(elevation). 38-Cloud "
            "ships no MTL: put the scenes' <scene_id>_MTL.txt (USGS) under root or pass mtl_dir=, or "
            "pass sun_elevation_deg={scene_id: degrees}; allow_uncorrected=True loads them uncorrected")
    sensor, desc = _descriptors("landsat8_oli_tirs", [b for _, b in _38CLOUD_BANDS])
    rasterio = _rasterio()
    out = []
    for name in patches:
        scene = _scene_of(name)
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
def _reg_38cloud(root: Path | None, split: str | None, classes, *, patches: Sequence[str] | None = None,
                 sun_elevation_deg: Mapping[str, float] | None = None, mtl_dir: str | PathLike | None = None,
                 allow_uncorrected: bool = False) -> list[LabelledSample]:
    """38-Cloud training patches for :func:`load_dataset`; options as :func:`load_38cloud`.

    Parameters
    ----------
    split : {"train"}, optional
        Default ``"train"``, the only split with per-patch labels.
    patches, sun_elevation_deg, mtl_dir, allow_uncorrected
        Keyword options, as :func:`load_38cloud`: every scene needs its sun elevation
        (``mtl_dir``, MTL files under ``root``, or ``sun_elevation_deg``, a table of scene
        id -> degrees in a TOML config) unless ``allow_uncorrected = true``.
    """
    return load_38cloud(root, classes, split or "train", patches, sun_elevation_deg, mtl_dir, allow_uncorrected)
