"""Training utilities: labelled datasets, patch samplers with band subsets, the loop.

Importable with torch and NumPy alone (no xarray, Dask or rasterio), so it runs on a
bare GPU machine.
"""

from .datasets import (
    IGNORE_INDEX,
    LabelledSample,
    biome_to_classes,
    list_datasets,
    load_biome_patches,
    load_dataset,
    register_dataset,
)
from .samplers import Augmentation, RandomPatchBatches, grid_patches

__all__ = [
    "IGNORE_INDEX",
    "LabelledSample",
    "biome_to_classes",
    "load_biome_patches",
    "load_dataset",
    "list_datasets",
    "register_dataset",
    "Augmentation",
    "RandomPatchBatches",
    "grid_patches",
]
