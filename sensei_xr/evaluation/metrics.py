"""The paper's accuracy metrics (eq. 6-10) for binary cloud masks, per image and pooled.

* :class:`Confusion`, :func:`binary_metrics`: overall accuracy, balanced accuracy,
  precision, recall and F1 of the cloud class from pixel counts. No-data pixels (label
  ``IGNORE_INDEX`` or a mask) are left out.
* :func:`score_images`, :func:`summarise`, :func:`bootstrap_ci`: metrics pooled over a
  dataset and per image, percentile bootstrap confidence intervals over images, and the
  breakdown by tags (e.g. surface type, like the paper's Table VIII).

NumPy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # only for annotations
    from ..datasets import LabelledSample

__all__ = ["Confusion", "binary_metrics", "METRICS", "ImageScore", "score_images", "pooled_confusion",
           "bootstrap_ci", "summarise"]

#: The metrics of eq. 6-10, in the order reports show them.
METRICS = ("overall_accuracy", "balanced_accuracy", "precision", "recall", "f1")


@dataclass
class Confusion:
    """Pixel counts of a binary (cloud / not cloud) comparison."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def add(self, predicted_cloud: np.ndarray, true_cloud: np.ndarray, valid: np.ndarray | None = None) -> "Confusion":
        p = np.asarray(predicted_cloud, bool)
        t = np.asarray(true_cloud, bool)
        v = np.ones_like(p) if valid is None else np.asarray(valid, bool)
        if not p.shape == t.shape == v.shape:
            raise ValueError(f"prediction {p.shape}, truth {t.shape} and valid mask {v.shape} "
                             "must have the same shape")
        self.tp += int((p & t & v).sum())
        self.fp += int((p & ~t & v).sum())
        self.tn += int((~p & ~t & v).sum())
        self.fn += int((~p & t & v).sum())
        return self

    def __add__(self, other: "Confusion") -> "Confusion":
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

    def metrics(self) -> dict[str, float]:
        return binary_metrics(self.tp, self.fp, self.tn, self.fn)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _metric_arrays(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """Eq. 6-10 on arrays of counts (one value per resample); undefined ratios are NaN."""
    tp, fp, tn, fn = (np.asarray(a, np.float64) for a in (tp, fp, tn, fn))

    def ratio(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)

    recall = ratio(tp, tp + fn)
    specificity = ratio(tn, tn + fp)
    precision = ratio(tp, tp + fp)
    # F1 = 2PR / (P + R) written as 2TP / (2TP + FP + FN): 0, not undefined, when a method
    # misses every cloud pixel or predicts cloud only where there is none.
    f1 = ratio(2 * tp, 2 * tp + fp + fn)
    # Balanced accuracy: the mean of the defined ones of recall and specificity (an image
    # without cloud has no recall, and its balanced accuracy is its specificity).
    both = np.stack([recall, specificity])
    n_defined = np.isfinite(both).sum(0)
    with np.errstate(invalid="ignore"):
        balanced = np.where(n_defined > 0, np.nansum(both, 0) / np.maximum(n_defined, 1), np.nan)
    return {"overall_accuracy": ratio(tp + tn, tp + fp + tn + fn), "balanced_accuracy": balanced,
            "precision": precision, "recall": recall, "f1": f1}


def binary_metrics(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """OA, balanced accuracy, precision, recall and F1 of the cloud class (eq. 6-10).

    Undefined ratios are NaN: precision with no pixel predicted cloud, recall with no
    cloud pixel, F1 with neither. Balanced accuracy is the mean of recall and
    specificity, or the one of them that is defined.
    """
    out = {k: float(v) for k, v in _metric_arrays(tp, fp, tn, fn).items()}
    out["pixels"] = int(tp + fp + tn + fn)
    return out


@dataclass(frozen=True)
class ImageScore:
    """One image's pixel counts, with what identifies it."""

    name: str
    confusion: Confusion
    tags: Mapping[str, Any] = field(default_factory=dict)


def score_images(samples: Iterable["LabelledSample"],
                 predict_cloud: Callable[["LabelledSample"], np.ndarray],
                 cloud_classes: Sequence[int]) -> list[ImageScore]:
    """Compare each sample's predicted cloud mask with its labels.

    Parameters
    ----------
    samples : iterable of LabelledSample
    predict_cloud : callable
        ``sample -> (H, W) bool``: True where the method says cloud.
    cloud_classes : sequence of int
        The label indices that are cloud (e.g. ``model.cloud_class_indices``).

    Returns
    -------
    list of ImageScore
        Pixels labelled ``IGNORE_INDEX`` (no data) are not counted.
    """
    from ..datasets import IGNORE_INDEX

    scores = []
    for s in samples:
        predicted = np.asarray(predict_cloud(s))
        if predicted.shape != s.labels.shape:
            raise ValueError(f"prediction for {s.name!r} has shape {predicted.shape}, its labels "
                             f"{s.labels.shape}")
        valid = s.labels != IGNORE_INDEX
        truth = np.isin(s.labels, list(cloud_classes))
        scores.append(ImageScore(s.name, Confusion().add(predicted, truth, valid), dict(s.tags)))
    return scores


def pooled_confusion(scores: Iterable[ImageScore]) -> Confusion:
    """The pixel counts of all images together."""
    total = Confusion()
    for s in scores:
        total = total + s.confusion
    return total


def bootstrap_ci(scores: Sequence[ImageScore], n_resamples: int = 1000, level: float = 0.95,
                 seed: int = 0) -> dict[str, list[float]]:
    """Percentile bootstrap confidence intervals of the pooled metrics, resampling images.

    Images, not pixels, are drawn with replacement: pixels of one image are strongly
    correlated, so resampling pixels would give intervals far too narrow.

    Parameters
    ----------
    scores : sequence of ImageScore
        At least one image.
    n_resamples : int
        Bootstrap resamples.
    level : float
        Coverage, e.g. 0.95 for the 2.5th-97.5th percentiles.
    seed : int
        Seed of the resampling (same seed, same intervals).

    Returns
    -------
    dict
        ``metric -> [low, high]`` for each of :data:`METRICS`; NaN where a metric is
        undefined in every resample (e.g. precision when nothing is predicted cloud).
    """
    if not scores:
        raise ValueError("bootstrap_ci needs at least one image")
    if n_resamples < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"need n_resamples >= 1 and 0 < level < 1, got {n_resamples}, {level}")
    counts = np.array([[s.confusion.tp, s.confusion.fp, s.confusion.tn, s.confusion.fn] for s in scores],
                      dtype=np.int64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(scores), size=(n_resamples, len(scores)))
    summed = counts[draws].sum(axis=1)  # (n_resamples, 4)
    metrics = _metric_arrays(*summed.T)
    tail = 100.0 * (1.0 - level) / 2.0
    out = {}
    for name in METRICS:
        values = metrics[name][np.isfinite(metrics[name])]
        out[name] = ([float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))]
                     if values.size else [math.nan, math.nan])
    return out


def summarise(scores: Sequence[ImageScore], n_bootstrap: int = 1000, level: float = 0.95,
              seed: int = 0) -> dict:
    """Pooled and per-image metrics, bootstrap intervals and the breakdown by tags.

    Parameters
    ----------
    scores : sequence of ImageScore
    n_bootstrap : int
        Bootstrap resamples of the images; 0 for no intervals.
    level : float
        Coverage of the intervals.
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        JSON-able: ``n_images``, ``pooled`` (metrics of all pixels together),
        ``confusion`` (counts), ``ci`` (``metric -> [low, high]``, or None with fewer
        than 2 images or ``n_bootstrap=0``), ``per_image`` (a list of ``name``, ``tags``,
        metrics and counts), ``per_image_mean`` (each metric averaged over the images
        where it is defined) and ``by_tag`` (``tag -> value -> {n_images, pooled,
        confusion, ci}``).
    """
    scores = list(scores)
    out = _pooled_block(scores, n_bootstrap, level, seed)
    out["per_image"] = [{"name": s.name, "tags": dict(s.tags), **s.confusion.metrics(),
                         "confusion": s.confusion.as_dict()} for s in scores]
    per_image = {m: np.array([row[m] for row in out["per_image"]], float) for m in METRICS}
    out["per_image_mean"] = {m: float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
                             for m, v in per_image.items()}
    by_tag: dict[str, dict[str, dict]] = {}
    for key in sorted({k for s in scores for k in s.tags}):
        groups: dict[str, list[ImageScore]] = {}
        for s in scores:
            if key in s.tags:
                groups.setdefault(str(s.tags[key]), []).append(s)
        by_tag[key] = {value: _pooled_block(group, n_bootstrap, level, seed)
                       for value, group in sorted(groups.items())}
    out["by_tag"] = by_tag
    return out


def _pooled_block(scores: Sequence[ImageScore], n_bootstrap: int, level: float, seed: int) -> dict:
    total = pooled_confusion(scores)
    # One image gives a degenerate interval (every resample is that image): report none.
    ci = bootstrap_ci(scores, n_bootstrap, level, seed) if n_bootstrap > 0 and len(scores) > 1 else None
    return {"n_images": len(scores), "pooled": total.metrics(), "confusion": total.as_dict(), "ci": ci}
