"""CloudSEN12 high-quality labels, Hugging Face memmap layout.

Registered for :func:`sensei_xr.datasets.load_dataset`; see ``docs/datasets.md`` for where to
get it and its layout.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from ..errors import DatasetLayoutError
from ._common import (
    CLEAR,
    DEFAULT_MAX_BYTES,
    SHADOW,
    THICK,
    THIN,
    _check_memory,
    _descriptors,
    _map_codes,
    _read_csv_rows,
    _require_dir,
    _sample,
    _tag_value,
)
from .base import LabelledSample, register_dataset
from .s2_cloud_mask_catalogue import S2_CATALOGUE_BANDS

__all__ = ["CLOUDSEN12_BANDS", "CLOUDSEN12_TO_BIOME", "load_cloudsen12", "iter_cloudsen12"]

#: CloudSEN12 L1C band files ``L1C_<name>.dat`` -> catalog names.
CLOUDSEN12_BANDS = {"B1": "B01", "B2": "B02", "B3": "B03", "B4": "B04", "B5": "B05",
                    "B6": "B06", "B7": "B07", "B8": "B08", "B8A": "B8A", "B9": "B09",
                    "B10": "B10", "B11": "B11", "B12": "B12"}

#: CloudSEN12 ``LABEL_manual_hq``: 0 clear, 1 thick cloud, 2 thin cloud, 3 cloud shadow.
CLOUDSEN12_TO_BIOME = {0: CLEAR, 1: THICK, 2: THIN, 3: SHADOW}


# ------------------------------------------------------------------ CloudSEN12

_CS12_SIZE = 512


def _cloudsen12_split_dir(root: Path, split: str) -> Path:
    names = {"val": ("val", "validation"), "validation": ("validation", "val")}.get(split, (split,))
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise DatasetLayoutError(f"CloudSEN12: no {split!r} folder in {root}; the high-quality set "
                             "has train/, val/ and test/ with L1C_<band>.dat and LABEL_manual_hq.dat")


def _cloudsen12_count(d: Path) -> int:
    label = d / "LABEL_manual_hq.dat"
    if not label.is_file():
        raise DatasetLayoutError(f"{d}: no LABEL_manual_hq.dat")
    n, rem = divmod(label.stat().st_size, _CS12_SIZE * _CS12_SIZE)
    if rem:
        raise DatasetLayoutError(f"{label}: size is not a multiple of 512 x 512 bytes")
    return n


def iter_cloudsen12(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                    split: str = "train", indices: Sequence[int] | None = None
                    ) -> Iterator[LabelledSample]:
    """Yield CloudSEN12 high-quality patches one at a time (see :func:`load_cloudsen12`)."""
    root = _require_dir(None if root is None else Path(root), "CloudSEN12",
                        "train/, val/, test/ with L1C_<band>.dat and LABEL_manual_hq.dat")
    d = _cloudsen12_split_dir(root, split)
    n = _cloudsen12_count(d)
    bands = {}
    for f, cat in CLOUDSEN12_BANDS.items():
        path = d / f"L1C_{f}.dat"
        if not path.is_file():
            raise DatasetLayoutError(f"{d}: missing {path.name}")
        if path.stat().st_size != n * _CS12_SIZE * _CS12_SIZE * 2:
            raise DatasetLayoutError(f"{path}: expected {n} x 512 x 512 int16 values (as "
                                     f"LABEL_manual_hq.dat has {n} patches)")
        bands[cat] = np.memmap(path, dtype="<i2", mode="r", shape=(n, _CS12_SIZE, _CS12_SIZE))
    labels = np.memmap(d / "LABEL_manual_hq.dat", dtype=np.uint8, mode="r", shape=(n, _CS12_SIZE, _CS12_SIZE))
    meta_file = d / "metadata.csv"
    meta = _read_csv_rows(meta_file) if meta_file.is_file() else []
    if meta and len(meta) != n:
        raise DatasetLayoutError(f"{meta_file} has {len(meta)} rows for {n} patches")
    if indices is not None:
        indices = [int(i) for i in indices]
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise ValueError(f"CloudSEN12 {d.name}: indices {bad[:5]} are outside 0..{n - 1} ({n} patches)")
    sensor, desc = _descriptors("sentinel2_msi", S2_CATALOGUE_BANDS)
    for i in (range(n) if indices is None else indices):
        dn = np.stack([np.asarray(bands[b][i]) for b in S2_CATALOGUE_BANDS])
        image = dn.astype(np.float32) / np.float32(10000.0)  # README: scale 0.0001
        raw = np.asarray(labels[i])
        codes = _map_codes(raw, CLOUDSEN12_TO_BIOME)  # codes above 3 -> fill
        tags = {k: _tag_value(v) for k, v in meta[i].items() if k and v is not None} if meta else {}
        tags["index"] = int(i)
        yield _sample(image, desc, codes, (dn == 0).all(axis=0), classes, sensor, 10.0,
                      f"{d.name}_{i}", tags)


def load_cloudsen12(root: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud"),
                    split: str = "train", indices: Sequence[int] | None = None,
                    max_bytes: float | None = DEFAULT_MAX_BYTES) -> list[LabelledSample]:
    """Read CloudSEN12 high-quality labels (Aybar et al. 2022), Hugging Face layout.

    Layout (``csaybar/CloudSEN12-high`` on Hugging Face): ``root/<split>/`` with one raw
    little-endian memory-map per band, ``L1C_B1.dat`` .. ``L1C_B12.dat`` and
    ``L1C_B8A.dat`` (int16, shape (N, 512, 512), reflectance x 10000),
    ``LABEL_manual_hq.dat`` (uint8, (N, 512, 512): 0 clear, 1 thick cloud, 2 thin cloud,
    3 cloud shadow) and ``metadata.csv`` (one row per patch). N is taken from the label
    file's size. Other layouts (the 2022 per-patch GeoTIFF release, CloudSEN12+ TACO
    files) are not supported.

    Parameters
    ----------
    split : {"train", "val", "test"}
    indices : sequence of int, optional
        Patches to read (default all: the train split is about 8,500 patches, about 115 GB
        as float32; see ``max_bytes``).
    max_bytes : float, optional
        Refuse (MemoryError) above this many bytes; stream with :func:`iter_cloudsen12`.

    Returns
    -------
    list of LabelledSample
        13 Level-1C bands as TOA reflectance, 10 m; DN 0 in every band (the padding
        beyond the 509 x 509 patch) is no data; tags: the ``metadata.csv`` columns and
        ``index``.
    """
    root = _require_dir(None if root is None else Path(root), "CloudSEN12",
                        "train/, val/, test/ folders")
    n = len(indices) if indices is not None else _cloudsen12_count(_cloudsen12_split_dir(root, split))
    _check_memory(n * _CS12_SIZE * _CS12_SIZE, 13, max_bytes, f"{n} CloudSEN12 patches",
                  "pass indices=, or stream with iter_cloudsen12()")
    return list(iter_cloudsen12(root, classes, split, indices))


@register_dataset("cloudsen12")
def _reg_cloudsen12(root: Path | None, split: str | None, classes, *, indices: Sequence[int] | None = None,
                    max_bytes: float | None = DEFAULT_MAX_BYTES) -> list[LabelledSample]:
    """CloudSEN12 high-quality patches for :func:`load_dataset`; options as :func:`load_cloudsen12`.

    Parameters
    ----------
    split : {"train", "val", "test"}, optional
        Default ``"train"`` (about 8,500 patches, 115 GB: refused under the default
        ``max_bytes`` of 8 GiB unless ``indices`` selects at most about 530).
    indices, max_bytes
        Keyword options, as :func:`load_cloudsen12` (``max_bytes`` in bytes; ``inf`` in a
        TOML config switches the check off).
    """
    return load_cloudsen12(root, classes, split or "train", indices, max_bytes)
