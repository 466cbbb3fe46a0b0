"""The Sentinel-2 Cloud Mask Catalogue (Francis et al., Zenodo 4172871), 513 subscenes.

Registered for :func:`sensei_xr.datasets.load_dataset`; see ``docs/datasets.md`` for where to
get it and its layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from ..errors import DatasetLayoutError
from ._common import (
    CLEAR,
    FILL,
    SHADOW,
    THICK,
    _descriptors,
    _read_csv_rows,
    _require_dir,
    _sample,
    _tag_value,
)
from .base import LabelledSample, register_dataset

__all__ = ["S2_CATALOGUE_BANDS", "load_s2_cloud_mask_catalogue"]

#: Band order of the Sentinel-2 Cloud Mask Catalogue subscenes (last axis of the .npy).
S2_CATALOGUE_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                      "B10", "B11", "B12")


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


@register_dataset("s2_cloud_mask_catalogue")
def _reg_s2(root: Path | None, split: str | None, classes) -> list[LabelledSample]:
    return load_s2_cloud_mask_catalogue(root, classes, split)
