"""What every labelled dataset yields, and the registry that loads them by name (NumPy only).

A :class:`LabelledSample` is one labelled image: bands with their descriptors, a class mask
in the model's classes, a no-data mask and a little metadata. Each dataset is a module of
this package that registers its loader with :func:`register_dataset`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path

import numpy as np

from ..bands import BandDescriptors

__all__ = ["LabelledSample", "IGNORE_INDEX", "BIOME_LABELS", "biome_to_classes", "DATASET_LOADERS",
           "register_dataset", "load_dataset", "list_datasets"]

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

    def without_thermal(self) -> "LabelledSample":
        """The same sample without its thermal bands (for a model that never sees one)."""
        keep = [n for n, thermal in zip(self.descriptors.names, self.descriptors.is_thermal) if not thermal]
        if not keep:
            raise ValueError(f"sample {self.name!r} has only thermal bands ({', '.join(self.descriptors.names)}): "
                             "nothing is left without them; leave it out of the data")
        idx = [self.descriptors.names.index(n) for n in keep]
        return replace(self, image=self.image[idx], descriptors=self.descriptors.select(keep))


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


#: Dataset name -> loader ``(root: Path | None, split: str | None, classes, *, **options)
#: -> list[LabelledSample]``; its keyword-only parameters are the options :func:`load_dataset`
#: (and a training config's ``options = {...}``) accept.
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
        Loader-specific keyword options, the keyword-only parameters of the registered
        loader (e.g. ``scenes``, ``window``, ``max_bytes`` for ``"biome_scenes"``;
        ``mtl_dir`` for ``"38cloud"``; ``per_sensor`` for ``"library_scenes"``); see
        ``help(DATASET_LOADERS[name])``. An unknown option is an error listing the known.
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
            raise ValueError(f"dataset {name!r} has no option(s) {unknown}; its options: "
                             f"{', '.join(sorted(accepted)) or 'none'} (see help(sensei_xr.datasets."
                             f"DATASET_LOADERS[{name!r}]))")
    return loader(None if root is None else Path(root), split, tuple(classes), **options)
