"""Labelled samples and the Landsat 8 Biome patches (torch- and NumPy-only).

A :class:`LabelledSample` is what every dataset yields: bands with their descriptors, a
class mask in the model's classes, a no-data mask and a little metadata.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from .. import catalogs
from ..bands import BandDescriptors

__all__ = ["LabelledSample", "BIOME_LABELS", "biome_to_classes", "load_biome_patches",
           "DATASET_LOADERS", "register_dataset", "load_dataset", "list_datasets"]

#: Landsat 8 Biome (CCA) label encoding (as in ../shared/data/l8_biome_patches).
BIOME_LABELS = {0: "fill", 64: "cloud_shadow", 128: "clear", 192: "thin_cloud", 255: "thick_cloud"}
#: Index marking pixels a loss must ignore (no data).
IGNORE_INDEX = -100


@dataclass
class LabelledSample:
    """One labelled image.

    Attributes
    ----------
    image : numpy.ndarray
        (N, H, W) float32: reflectance for reflective bands, brightness temperature (K)
        for thermal bands.
    descriptors : BandDescriptors
    labels : numpy.ndarray
        (H, W) int64 class indices in the model's classes; ``IGNORE_INDEX`` at no data.
    nodata : numpy.ndarray
        (H, W) bool.
    sensor : str
    resolution_m : float
    name : str
    tags : dict
        Optional, e.g. ``{"surface": "Forest"}``, for per-tag metrics.
    """

    image: np.ndarray
    descriptors: BandDescriptors
    labels: np.ndarray
    nodata: np.ndarray
    sensor: str
    resolution_m: float
    name: str = ""
    tags: dict = field(default_factory=dict)


def biome_to_classes(mask: np.ndarray, classes: tuple[str, ...] = ("clear", "cloud")) -> np.ndarray:
    """Map Biome labels to class indices.

    Cloud = thin + thick; shadow is its own class when ``classes`` has ``"shadow"``, else
    clear; thin and thick stay apart when ``classes`` has ``"thin_cloud"`` and
    ``"thick_cloud"``; fill is ``IGNORE_INDEX``.
    """
    index = {c: i for i, c in enumerate(classes)}
    out = np.full(mask.shape, IGNORE_INDEX, np.int64)

    def cls(*names):
        for n in names:
            if n in index:
                return index[n]
        raise ValueError(f"classes {classes} have none of {names}")

    out[mask == 128] = cls("clear")
    out[mask == 64] = cls("shadow", "cloud_shadow", "clear")
    out[mask == 192] = cls("thin_cloud", "cloud")
    out[mask == 255] = cls("thick_cloud", "cloud")
    return out


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


#: Dataset name -> loader ``(root: Path | None, split: str | None, classes) -> list[LabelledSample]``.
DATASET_LOADERS: dict[str, Callable[..., list[LabelledSample]]] = {}


def register_dataset(name: str):
    """Decorator registering a loader under ``name`` for :func:`load_dataset`."""

    def wrap(loader):
        if name in DATASET_LOADERS:
            raise ValueError(f"dataset {name!r} is already registered")
        DATASET_LOADERS[name] = loader
        return loader

    return wrap


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(DATASET_LOADERS)


def load_dataset(name: str, root: str | PathLike | None = None, split: str | None = None,
                 classes: tuple[str, ...] = ("clear", "cloud"), **options) -> list[LabelledSample]:
    """Load a labelled dataset by name.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets`, e.g. ``"biome_patches"``.
    root : path-like, optional
        The dataset's folder in its published layout; each loader has a default where one
        makes sense (the sample data for ``"biome_patches"``).
    split : str, optional
        e.g. ``"train"`` / ``"val"`` where the dataset defines splits.
    classes : tuple of str
        The model's classes; labels are mapped to them.
    **options
        Loader-specific keyword options (e.g. ``per_sensor`` for ``"library_scenes"``).
    """
    try:
        loader = DATASET_LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}") from None
    if options:
        import inspect

        accepted = {n for n, p in inspect.signature(loader).parameters.items() if p.kind == p.KEYWORD_ONLY}
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise ValueError(f"dataset {name!r} has no option(s) {unknown}; its options: {sorted(accepted) or 'none'}")
    return loader(None if root is None else Path(root), split, tuple(classes), **options)


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
