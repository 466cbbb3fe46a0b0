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
from .samplers import Augmentation, GridPatches, RandomPatchBatches, grid_patches, make_loader
from .synthetic import SyntheticClouds
from .library_scenes import SpectralLibrary, library_scenes  # registers "library_scenes"
from .pretrain import pretrain_encoder
from .train import DEFAULT_CONFIG, load_config, train

# Importing the module registers the public-dataset loaders with load_dataset().
from .public_datasets import (
    DatasetLayoutError,
    iter_biome_scenes,
    iter_cloudsen12,
    iter_l7_irish,
    load_38cloud,
    load_biome_scenes,
    load_cloudperu2,
    load_cloudsen12,
    load_l7_irish,
    load_s2_cloud_mask_catalogue,
    load_sparcs,
)

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
    "GridPatches",
    "make_loader",
    "SyntheticClouds",
    "SpectralLibrary",
    "library_scenes",
    "pretrain_encoder",
    "DEFAULT_CONFIG",
    "train",
    "load_config",
    "DatasetLayoutError",
    "load_s2_cloud_mask_catalogue",
    "load_biome_scenes",
    "iter_biome_scenes",
    "load_sparcs",
    "load_l7_irish",
    "iter_l7_irish",
    "load_38cloud",
    "load_cloudperu2",
    "load_cloudsen12",
    "iter_cloudsen12",
]
