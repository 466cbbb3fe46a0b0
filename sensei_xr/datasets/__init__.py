"""Labelled cloud datasets, one module each, loaded by name (NumPy at import).

Every loader returns :class:`LabelledSample` objects in the library's conventions:
reflective bands as top-of-atmosphere reflectance (0 to about 1), thermal bands as
brightness temperature in kelvin, band descriptors from the sensor catalogs, labels mapped
to the model's ``classes`` with ``IGNORE_INDEX`` at no data, and a no-data mask.

=============================  ==========================================================
name                           dataset (``docs/datasets.md``: sources, layouts, mappings)
=============================  ==========================================================
``biome_patches``              the sample data's 24 Landsat 8 Biome patches
``s2_cloud_mask_catalogue``    Sentinel-2 Cloud Mask Catalogue (Francis et al., Zenodo 4172871)
``biome_scenes``               Landsat 8 Biome (USGS L8 CCA), full scenes
``sparcs``                     Landsat 8 SPARCS (Hughes & Hayes / Hughes & Kennedy)
``l7_irish``                   Landsat 7 Irish (USGS L7 CCA)
``38cloud``                    38-Cloud (Mohajerani & Saeedi)
``cloudperu2``                 CloudPeru2 (Morales et al.), PeruSat-1
``cloudsen12``                 CloudSEN12 high-quality, Hugging Face memmap layout
=============================  ==========================================================

Labels go through the Biome encoding (0 fill, 64 cloud shadow, 128 clear, 192 thin cloud,
255 thick cloud) and :func:`biome_to_classes`: cloud = thin + thick, shadow is its own class
where ``classes`` has one (else clear), fill is ignored. Where a dataset (or a scene) has no
shadow annotation and ``classes`` has a shadow class, its non-cloud pixels are ignored
rather than called clear; ``tags["shadow_labelled"]`` says which. Other packages may
register more (``sensei_xr.training`` registers the synthetic ``library_scenes``).

Each registered loader's keyword-only parameters are its options for :func:`load_dataset`
and a training config's ``options = {...}`` (scene selection, windows, tiles, memory
budget, calibration inputs); ``help(DATASET_LOADERS[name])`` lists them.
"""

from ..errors import DatasetLayoutError
from .base import (
    BIOME_LABELS,
    DATASET_LOADERS,
    IGNORE_INDEX,
    LabelledSample,
    biome_to_classes,
    list_datasets,
    load_dataset,
    register_dataset,
)
from .biome_patches import load_biome_patches
from .biome_scenes import iter_biome_scenes, load_biome_scenes
from .cloud38 import load_38cloud
from .cloudperu2 import load_cloudperu2
from .cloudsen12 import iter_cloudsen12, load_cloudsen12
from .l7_irish import iter_l7_irish, load_l7_irish
from .s2_cloud_mask_catalogue import load_s2_cloud_mask_catalogue
from .sparcs import load_sparcs

__all__ = [
    "LabelledSample", "IGNORE_INDEX", "BIOME_LABELS", "biome_to_classes", "DATASET_LOADERS", "register_dataset",
    "load_dataset", "list_datasets", "DatasetLayoutError", "load_biome_patches", "load_s2_cloud_mask_catalogue",
    "load_biome_scenes", "iter_biome_scenes", "load_sparcs", "load_l7_irish", "iter_l7_irish", "load_38cloud",
    "load_cloudperu2", "load_cloudsen12", "iter_cloudsen12",
]
