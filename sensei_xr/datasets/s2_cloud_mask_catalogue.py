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
    _check_memory,
    _descriptors,
    _has,
    _names,
    _option_dir,
    _read_csv_rows,
    _require_dir,
    _sample,
    _tag_value,
)
from .base import LabelledSample, register_dataset

__all__ = ["S2_CATALOGUE_BANDS", "S2_CATALOGUE_MAX_BYTES", "load_s2_cloud_mask_catalogue"]

#: Band order of the Sentinel-2 Cloud Mask Catalogue subscenes (last axis of the .npy).
S2_CATALOGUE_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                      "B10", "B11", "B12")

#: Default memory budget of the catalogue loader, bytes: the paper's train split (206
#: subscenes, about 12.2 GiB as float32 with labels) fits, the whole catalogue does not.
S2_CATALOGUE_MAX_BYTES = 16 * 2**30


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


def _shadows_marked(row: dict[str, str] | None) -> bool | None:
    """The ``shadows_marked`` flag of a ``classification_tags.csv`` row; None when unknown."""
    value = (row or {}).get("shadows_marked")
    value = _tag_value(value) if value is not None else None
    return bool(value) if value in (0, 1) else None


def _check_shadow_flags(ids: Sequence[str], tag_rows: dict[str, dict[str, str]], tags_file: Path) -> None:
    """Refuse scenes whose ``shadows_marked`` is unknown when the classes have a shadow class.

    Treating them as marked would supervise their unmarked shadows as clear; as unmarked,
    every clear pixel of theirs would be ignored, so with no tags file a shadow model would
    never see clear. Neither is what anyone wants silently.
    """
    unknown = [i for i in ids if _shadows_marked(tag_rows.get(i)) is None]
    if not unknown:
        return
    if not tags_file.is_file():
        why = f"{tags_file} is missing"
    elif tag_rows and "shadows_marked" not in next(iter(tag_rows.values())):
        why = f"{tags_file} has no shadows_marked column"
    else:
        why = f"{tags_file} has no shadows_marked 0 / 1 for {len(unknown)} scene(s), e.g. {unknown[:3]}"
    raise DatasetLayoutError(
        f"{why}: with a shadow class the loader must know which subscenes have their shadows marked "
        "(89 of the 513 do not). Put the catalogue's own classification_tags.csv (Zenodo record "
        "4172871) in the dataset folder, or use classes without a shadow class")


def load_s2_cloud_mask_catalogue(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                                 split: str | None = None, splits_dir: str | PathLike | None = None,
                                 scenes: Sequence[str] | None = None,
                                 max_bytes: float | None = S2_CATALOGUE_MAX_BYTES) -> list[LabelledSample]:
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
        The model's classes (``"clear"``, ``"cloud"``, optionally ``"shadow"``). With a
        shadow class, every subscene read needs its ``shadows_marked`` flag in
        ``classification_tags.csv``; a missing file, column or row is an error.
    split : {"train", "valid", "test"}, optional
        The scene split of the SEnSeI paper (scene-id lists ``S2_catalogue_split_*.csv``,
        from ``splits_dir``, else ``root``, else the sample data); None: every subscene.
    splits_dir : path-like, optional
        Folder of the split lists; a relative path that is no folder as given is taken
        under ``root``.
    scenes : sequence of str, optional
        Only these product ids; one not in ``subscenes/`` is an error.
    max_bytes : float, optional
        Refuse (MemoryError) when the samples would need more than this, bytes (default
        16 GiB: the paper's train split, 206 subscenes, needs about 12.2 GiB; all 513
        about 30 GiB); None: no check.

    Returns
    -------
    list of LabelledSample
        13 bands, reflectance (unitless), 20 m; ``tags`` holds every column of
        ``classification_tags.csv`` for the scene (numbers as int / float). Scenes with
        ``shadows_marked == 0`` (or, without a shadow class, with no flag) get
        ``shadow_labelled=False`` (see the module notes).
        Pixels with no class in the one-hot mask, or without finite data, are no data.

    Raises
    ------
    DatasetLayoutError
        A missing folder, subscene, mask or requested scene; with a shadow class, a
        subscene of unknown ``shadows_marked``.
    MemoryError
        Over ``max_bytes``.
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
    scenes = _names(scenes, "scenes")
    if scenes is not None:
        missing = sorted(set(scenes) - set(ids))
        if missing:
            raise DatasetLayoutError(f"{sub_dir}: no subscene(s) {missing}; scenes are product ids such as {ids[0]}")
    if split is not None:
        split_dir = None if splits_dir is None else _option_dir(splits_dir, root, "splits_dir")
        wanted = _s2_split_ids(split, split_dir, root)
        ids = [i for i in ids if i in wanted]
    if scenes is not None:
        ids = [i for i in ids if i in set(scenes)]
    if max_bytes is not None:  # the .npy headers give the sizes without reading the data
        pixels = sum(int(np.prod(np.load(sub_dir / f"{i}.npy", mmap_mode="r").shape[:2])) for i in ids)
        _check_memory(pixels, len(S2_CATALOGUE_BANDS), max_bytes, f"{len(ids)} catalogue subscenes",
                      "pick a split= or scenes=")
    if _has(classes, "shadow", "cloud_shadow"):
        _check_shadow_flags(ids, tag_rows, tags_file)
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
        nodata = (image == 0).all(axis=0)
        # Unknown flags were refused above where they matter; elsewhere they are not known-marked.
        out.append(_sample(image, desc, codes, nodata, classes, sensor, 20.0, pid, tags,
                           shadow_labelled=bool(_shadows_marked(row)), thin_thick=False,
                           dataset="The Sentinel-2 Cloud Mask Catalogue"))
    return out


@register_dataset("s2_cloud_mask_catalogue")
def _reg_s2(root: Path | None, split: str | None, classes, *, splits_dir: str | PathLike | None = None,
            scenes: Sequence[str] | None = None,
            max_bytes: float | None = S2_CATALOGUE_MAX_BYTES) -> list[LabelledSample]:
    """The catalogue for :func:`load_dataset`; options as :func:`load_s2_cloud_mask_catalogue`.

    Parameters
    ----------
    split : {"train", "valid", "test"}, optional
        The SEnSeI paper's scene split; None: all 513 subscenes (about 30 GiB, over the
        default ``max_bytes``).
    splits_dir, scenes, max_bytes
        Keyword options, as :func:`load_s2_cloud_mask_catalogue` (``max_bytes`` in bytes;
        ``inf`` in a TOML config switches the check off).
    """
    return load_s2_cloud_mask_catalogue(root, classes, split, splits_dir, scenes, max_bytes)
