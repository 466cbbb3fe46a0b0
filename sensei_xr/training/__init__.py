"""Training utilities: patch samplers with band subsets, augmentation, synthetic clouds and
library scenes, SEnSeI pre-training, the loop and scene-disjoint cross-validation.

Labelled datasets are in :mod:`sensei_xr.datasets`. Importable with torch and NumPy alone
(no xarray, Dask or rasterio), so it runs on a bare GPU machine; validation during
training predicts through the inference engine, which needs the core dependencies.
"""

from .library_scenes import SpectralLibrary, library_scenes  # registers the "library_scenes" dataset
from .pretrain import pretrain_encoder
from .augmentation import Augmentation, BandLimitJitter
from .samplers import GridPatches, RandomPatchBatches, grid_patches, make_loader
from .synthetic import SyntheticClouds
from .recipe import DEFAULT_CONFIG, load_config
from .train import train

__all__ = [
    "Augmentation",
    "BandLimitJitter",
    "RandomPatchBatches",
    "grid_patches",
    "GridPatches",
    "make_loader",
    "SyntheticClouds",
    "SpectralLibrary",
    "library_scenes",
    "pretrain_encoder",
    "DEFAULT_CONFIG",
    "train",
    "load_config",
    "cross_validate",
]


def __getattr__(name: str):
    # Imported on use: `python -m sensei_xr.training.crossval` then runs a module that the
    # package has not imported already (runpy warns otherwise).
    if name == "cross_validate":
        from .crossval import cross_validate

        return cross_validate
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
