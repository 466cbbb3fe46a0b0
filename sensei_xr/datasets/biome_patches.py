"""The sample data's 24 Landsat 8 Biome patches (``l8_biome_patches/{train,val}.npz``).

256 x 256 px at 30 m cut from USGS L8 Biome (CCA) scenes, 8 bands (B2-B7, B9 TOA
reflectance, B10 brightness temperature in K), human labels; train 16, val 8 (one patch
of each biome). Registered as ``"biome_patches"``.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np

from .. import catalogs
from ..bands import BandDescriptors
from .base import IGNORE_INDEX, LabelledSample, biome_to_classes, register_dataset

__all__ = ["load_biome_patches"]


def load_biome_patches(path: str | PathLike, classes: tuple[str, ...] = ("clear", "cloud")) -> list[LabelledSample]:
    """Read ``l8_biome_patches/{train,val}.npz`` (8 bands: B2-B7, B9 reflectance, B10 BT K).

    Parameters
    ----------
    path : path-like
        The ``.npz`` file.
    classes : tuple of str
        The model's classes.

    Returns
    -------
    list of LabelledSample
    """
    data = np.load(Path(path))
    sensor = catalogs.get_sensor("landsat8_oli_tirs")
    names = [str(n).split("_")[0] for n in data["band_names"]]  # "B2_blue" -> "B2"
    desc = BandDescriptors.from_sensor(sensor.id, names)
    out = []
    for image, mask, name in zip(data["images"], data["masks"], data["names"]):
        nodata = (mask == 0) | ~np.isfinite(image).all(axis=0)
        labels = biome_to_classes(mask, classes)
        labels[nodata] = IGNORE_INDEX
        biome = str(name).split("_")[0]
        out.append(LabelledSample(image.astype(np.float32), desc, labels, nodata,
                                  sensor.id, 30.0, str(name), {"surface": biome}))
    return out


@register_dataset("biome_patches")
def _load_biome_patches_split(root: Path | None, split: str | None, classes) -> list[LabelledSample]:
    from ..sample_data import data_dir

    root = root or data_dir() / "l8_biome_patches"
    splits = ["train", "val"] if split is None else [split]
    out = []
    for sp in splits:
        f = root / f"{sp}.npz"
        if not f.exists():
            raise FileNotFoundError(f"{f} not found: the Biome patches have splits 'train' and 'val'")
        out += load_biome_patches(f, classes)
    return out
