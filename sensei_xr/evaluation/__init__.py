"""Accuracy of cloud masks: the paper's metrics, band sets, predictions through the engine.

* :mod:`.metrics` - :class:`Confusion`, :func:`binary_metrics` (eq. 6-10), per-image and
  pooled scores, bootstrap intervals over images, breakdown by tags (NumPy only).
* band sets (Table III) from :mod:`sensei_xr.spectral`, re-exported here.
* :mod:`.predict` - predictions for labelled samples through the inference engine behind
  ``da.sensei.*`` (so every reported number is measured on what users run).
* :mod:`.evaluate` - :func:`evaluate_model`: a model on each band set and the peers on the
  same pixels; :mod:`.report` renders it.
* :mod:`.peers` - published peer masks (s2cloudless, ukis-csmask), an optional extra.
* :mod:`.folds` - scene-disjoint, stratified cross-validation folds.
* :mod:`.baseline` - a per-pixel gradient-boosted yardstick (LightGBM, an optional extra;
  not a product).

Importable with NumPy alone: torch, xarray and the extras are imported only by the
functions that need them.
"""

from ..errors import MissingBandError
from ..spectral.bandsets import (
    BAND_SETS,
    REGIONS,
    SpectralRegion,
    band_set,
    canonical_set_name,
    region_band,
    resolve_bands,
)
from .evaluate import evaluate_model, model_label, pooled_metrics, score_model
from .metrics import (
    METRICS,
    Confusion,
    ImageScore,
    binary_metrics,
    bootstrap_ci,
    pooled_confusion,
    score_images,
    summarise,
)
from .predict import predict_probability, sample_to_dataarray
from .report import json_ready, report_json, report_markdown, write_report

__all__ = [
    "Confusion", "binary_metrics", "METRICS", "ImageScore", "score_images", "pooled_confusion",
    "bootstrap_ci", "summarise",
    "SpectralRegion", "REGIONS", "BAND_SETS", "MissingBandError", "region_band", "band_set",
    "canonical_set_name", "resolve_bands",
    "predict_probability", "sample_to_dataarray",
    "evaluate_model", "score_model", "pooled_metrics", "model_label",
    "report_markdown", "report_json", "write_report", "json_ready",
]
