"""Accuracy metrics of the paper (eq. 6-10) for binary cloud masks.

Overall accuracy, balanced accuracy, precision, recall and F1 of the cloud class, from a
confusion matrix accumulated over pixels (pooled) or per image. No-data pixels (label
``IGNORE_INDEX`` or a mask) are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Confusion", "binary_metrics"]


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
        self.tp += int((p & t & v).sum())
        self.fp += int((p & ~t & v).sum())
        self.tn += int((~p & ~t & v).sum())
        self.fn += int((~p & t & v).sum())
        return self

    def metrics(self) -> dict[str, float]:
        return binary_metrics(self.tp, self.fp, self.tn, self.fn)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def binary_metrics(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """OA, balanced accuracy, precision, recall and F1 of the cloud class (eq. 6-10).

    Undefined ratios (e.g. precision with no predicted cloud) are NaN.
    """

    def ratio(a, b):
        return float(a / b) if b else float("nan")

    total = tp + fp + tn + fn
    recall = ratio(tp, tp + fn)
    specificity = ratio(tn, tn + fp)
    precision = ratio(tp, tp + fp)
    f1 = ratio(2 * precision * recall, precision + recall) if np.isfinite(precision) and np.isfinite(recall) else float("nan")
    balanced = float(np.nanmean([recall, specificity])) if np.isfinite([recall, specificity]).any() else float("nan")
    return {
        "overall_accuracy": ratio(tp + tn, total),
        "balanced_accuracy": balanced,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "pixels": int(total),
    }
