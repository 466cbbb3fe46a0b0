"""Inference: tiling and blending, devices and the per-process model cache, the Dask graph."""

from .engine import NODATA_CLASS, InferenceError, class_probabilities
from .reductions import class_ids, classify, cloud_probability, cloudmask
from .stepwise import compute_by_blocks, store_by_blocks
from .tiling import TilingPlan

__all__ = [
    "NODATA_CLASS",
    "InferenceError",
    "TilingPlan",
    "class_ids",
    "class_probabilities",
    "classify",
    "cloud_probability",
    "cloudmask",
    "compute_by_blocks",
    "store_by_blocks",
]
