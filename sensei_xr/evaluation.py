"""Accuracy metrics of the paper (eq. 6-10) for binary cloud masks, and how to report them.

* :class:`Confusion`, :func:`binary_metrics`: overall accuracy, balanced accuracy,
  precision, recall and F1 of the cloud class from pixel counts. No-data pixels (label
  ``IGNORE_INDEX`` or a mask) are left out.
* :func:`band_set`: the band combinations of the paper's Table III (``ALL``, ``COMMON``,
  ``RGB``, ``RGBNIR``, ``AeroRGBNIR``, ``NoRGB``) resolved by wavelength for any sensor.
* :func:`score_images`, :func:`summarise`, :func:`bootstrap_ci`: metrics pooled over a
  dataset and per image, percentile bootstrap confidence intervals over images, and the
  breakdown by tags (e.g. surface type, like the paper's Table VIII).
* :func:`evaluate_model`: a model's band sets and the peer methods
  (:mod:`sensei_xr.peers`) on the same labelled pixels; :func:`report_markdown` renders it.

Importable with NumPy alone: torch is imported only inside the functions that run a model.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .bands import BandDescriptors, BandError

if TYPE_CHECKING:  # only for annotations: importing the training package needs torch
    from .training.datasets import LabelledSample

__all__ = [
    "Confusion",
    "binary_metrics",
    "METRICS",
    "SpectralRegion",
    "REGIONS",
    "BAND_SETS",
    "MissingBandError",
    "region_band",
    "band_set",
    "ImageScore",
    "score_images",
    "pooled_confusion",
    "bootstrap_ci",
    "summarise",
    "evaluate_model",
    "report_markdown",
    "report_json",
    "write_report",
]

#: The metrics of eq. 6-10, in the order reports show them.
METRICS = ("overall_accuracy", "balanced_accuracy", "precision", "recall", "f1")


# ------------------------------------------------------------------------------ metrics


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


# --------------------------------------------------------------------------- band sets


@dataclass(frozen=True)
class SpectralRegion:
    """A part of the spectrum a band set asks for, e.g. "red".

    Attributes
    ----------
    name : str
    lo_nm, hi_nm : float
        A band stands for this region when its centre lies in ``[lo_nm, hi_nm)``, nm.
    prefer_nm : float
        Where several bands qualify, the one whose centre is closest to this, nm.
    """

    name: str
    lo_nm: float
    hi_nm: float
    prefer_nm: float

    def describe(self) -> str:
        return f"{self.name} band (centre {self.lo_nm:g}-{self.hi_nm:g} nm)"


#: Spectral regions of the band sets. Windows follow the Landsat 8 / Sentinel-2 bands they
#: are named after, wide enough for Landsat 4-7, PlanetScope, MODIS and Sentinel-3. "nir"
#: prefers the broad NIR band (Sentinel-2 B08); "nir_common" the narrow NIR band that
#: Sentinel-2 (B8A) and Landsat 8 (B5) share.
REGIONS: dict[str, SpectralRegion] = {r.name: r for r in (
    SpectralRegion("coastal", 430.0, 450.0, 443.0),
    SpectralRegion("blue", 450.0, 520.0, 485.0),
    SpectralRegion("green", 520.0, 600.0, 560.0),
    SpectralRegion("red", 620.0, 690.0, 655.0),
    SpectralRegion("nir", 760.0, 900.0, 833.0),
    SpectralRegion("nir_common", 760.0, 900.0, 865.0),
    SpectralRegion("cirrus", 1360.0, 1390.0, 1375.0),
    SpectralRegion("swir16", 1550.0, 1750.0, 1610.0),
    SpectralRegion("swir22", 2050.0, 2350.0, 2200.0),
)}

#: A band wider than this many times its region's window does not stand for the region:
#: panchromatic bands (Landsat 8 B8, 503-676 nm, centred in "green") are not a colour.
_MAX_WIDTH_PER_WINDOW = 2.0

#: Table III's band sets: the regions each needs (``None``: every band). COMMON's regions
#: are optional (a sensor contributes the ones it has); the others' are required.
BAND_SETS: dict[str, tuple[str, ...] | None] = {
    "ALL": None,
    "COMMON": ("coastal", "blue", "green", "red", "nir_common", "cirrus", "swir16", "swir22"),
    "RGB": ("blue", "green", "red"),
    "RGBNIR": ("blue", "green", "red", "nir"),
    "AeroRGBNIR": ("coastal", "blue", "green", "red", "nir"),
    "NoRGB": ("blue", "green", "red"),  # removed from ALL
}


class MissingBandError(BandError):
    """A band set (or a peer method) needs a band the sensor does not have."""


def _band_list(descriptors: BandDescriptors) -> str:
    return ", ".join(f"{n} ({c:g} nm)" for n, c in zip(descriptors.names, descriptors.wavelengths_nm[:, 1]))


def region_band(descriptors: BandDescriptors, region: str | SpectralRegion) -> str | None:
    """The band that stands for a spectral region, or None if the sensor has none.

    Parameters
    ----------
    descriptors : BandDescriptors
    region : str or SpectralRegion
        A key of :data:`REGIONS` or a region.

    Returns
    -------
    str or None
        The name of the reflective band whose centre lies in the region and is closest
        to its preferred wavelength; bands wider than twice the region's window
        (panchromatic bands) do not count.
    """
    r = REGIONS[region] if isinstance(region, str) else region
    lo, mid, hi = descriptors.wavelengths_nm.T
    ok = ((mid >= r.lo_nm) & (mid < r.hi_nm) & (hi - lo <= _MAX_WIDTH_PER_WINDOW * (r.hi_nm - r.lo_nm))
          & ~descriptors.is_thermal)
    if not ok.any():
        return None
    idx = np.flatnonzero(ok)
    return descriptors.names[int(idx[np.argmin(np.abs(mid[idx] - r.prefer_nm))])]


def _canonical_set_name(name: str) -> str:
    for known in BAND_SETS:
        if known.casefold() == str(name).strip().casefold():
            return known
    raise ValueError(f"unknown band set {name!r}; known: {', '.join(BAND_SETS)}")


def band_set(descriptors: BandDescriptors, name: str) -> list[str]:
    """The bands of one of the paper's band combinations (Table III) for any sensor.

    Parameters
    ----------
    descriptors : BandDescriptors
        The sensor's (or scene's) bands.
    name : str
        ``ALL`` every band; ``RGB`` blue (450-520 nm), green (520-600 nm) and red
        (620-690 nm); ``RGBNIR`` those and NIR (760-900 nm, the broad band where there are
        two, e.g. Sentinel-2 B08); ``AeroRGBNIR`` those and coastal/aerosol (430-450 nm);
        ``NoRGB`` every band but RGB; ``COMMON`` the bands in the regions Sentinel-2 and
        Landsat 8 share (coastal, blue, green, red, narrow NIR ~865 nm, cirrus 1360-1390
        nm, SWIR 1.6 and 2.2 um), as many of them as the sensor has. Case-insensitive.

    Returns
    -------
    list of str
        Band names in the order of ``descriptors``.

    Raises
    ------
    MissingBandError
        If the sensor lacks a band the set needs (named in the message), or has none of
        the COMMON regions.
    ValueError
        For an unknown set name.
    """
    key = _canonical_set_name(name)
    regions = BAND_SETS[key]
    if regions is None:
        return list(descriptors.names)
    found = {r: region_band(descriptors, r) for r in regions}
    if key == "COMMON":
        chosen = {b for b in found.values() if b is not None}
        if not chosen:
            raise MissingBandError(f"band set COMMON: none of the bands Sentinel-2 and Landsat 8 share "
                                   f"is here (bands: {_band_list(descriptors)})")
    else:
        missing = [REGIONS[r].describe() for r, b in found.items() if b is None]
        if missing:
            raise MissingBandError(
                f"band set {key} needs a {' and a '.join(missing)}; these bands have none: "
                f"{_band_list(descriptors)}. Choose another band set (e.g. ALL)")
        chosen = set(found.values())
        if key == "NoRGB":
            chosen = set(descriptors.names) - chosen
            if not chosen:
                raise MissingBandError("band set NoRGB is empty: there are only the RGB bands")
    return [n for n in descriptors.names if n in chosen]


# ---------------------------------------------------------------------- per-image scores


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
    from .training.datasets import IGNORE_INDEX

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


# ------------------------------------------------------------------------- evaluation


def _resolve_bands(samples: Sequence["LabelledSample"], set_name: str) -> dict[str, list[str]]:
    """Band names of ``set_name`` per sample (raises MissingBandError naming the sample)."""
    out = {}
    for s in samples:
        try:
            out[s.name] = band_set(s.descriptors, set_name)
        except MissingBandError as e:
            raise MissingBandError(f"{s.name} ({s.sensor}): {e}") from None
    return out


def _bands_field(per_sample: Mapping[str, list[str]]) -> list[str] | dict[str, list[str]]:
    """One band list when every sample uses the same bands, else the list per sample."""
    distinct = {tuple(b) for b in per_sample.values()}
    return list(next(iter(distinct))) if len(distinct) == 1 else {k: list(v) for k, v in per_sample.items()}


def _model_label(model) -> str:
    card = getattr(model, "card", None) or {}
    return str(card.get("name") or getattr(model, "source", None) or type(model).__name__)


def evaluate_model(model, samples: Sequence["LabelledSample"], band_sets: Sequence[str] = ("ALL",),
                   peers: Sequence[str] = (), threshold: float = 0.5, device: str = "cpu",
                   n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0,
                   dataset: str | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """A model on each band set, and peer methods, scored on the same labelled pixels.

    Parameters
    ----------
    model : CloudModel
        With SEnSeI (any band set). Pixels where its cloud probability is at least
        ``threshold`` are cloud.
    samples : sequence of LabelledSample
        Reflectance (0-1) and brightness temperature (K), labels in ``model.classes``.
    band_sets : sequence of str
        Names of :data:`BAND_SETS`, resolved per sample with :func:`band_set`. A set the
        sensor cannot give is reported as skipped with the reason.
    peers : sequence of str
        Names of :data:`sensei_xr.peers.PEERS`. Each runs on the same images with the
        bands it needs, and is scored on the same pixels; one that is not installed or
        whose bands are missing is reported as skipped with the reason.
    threshold : float
        Cloud-probability threshold of the model.
    device : str
        torch device to run the model on (the model is moved there).
    n_bootstrap, level, seed
        Bootstrap intervals (see :func:`summarise`).
    dataset : str, optional
        Recorded in the report.
    progress : callable, optional
        Called with a line of text as each row starts.

    Returns
    -------
    dict
        JSON-able: ``model``, ``dataset``, ``n_images``, ``threshold``, ``bootstrap`` and
        ``rows``, one per band set then per peer: ``method``, ``kind`` (``"model"`` or
        ``"peer"``), ``band_set`` (``"own"`` for peers: the bands they need), ``bands``
        and the :func:`summarise` fields, or ``skipped`` with the reason.
    """
    from . import peers as peer_methods

    samples = list(samples)
    if not samples:
        raise ValueError("no samples to evaluate")
    sets = [_canonical_set_name(b) for b in band_sets]
    peer_objs = [peer_methods.get_peer(p) for p in peers]
    cloud = list(model.cloud_class_indices)
    label = _model_label(model)
    rows = []
    for set_name in sets:
        row = {"method": label, "kind": "model", "band_set": set_name}
        try:
            bands = _resolve_bands(samples, set_name)
        except MissingBandError as e:
            rows.append({**row, "skipped": str(e)})
            continue
        if progress:
            progress(f"{label} with {set_name}")
        scores = score_images(samples, _model_predictor(model, bands, threshold, device), cloud)
        rows.append({**row, "bands": _bands_field(bands), **summarise(scores, n_bootstrap, level, seed)})
    for peer in peer_objs:
        row = {"method": peer.name, "kind": "peer", "band_set": "own"}
        reason = peer.unavailable()
        if reason is None:
            try:
                bands = {s.name: peer.bands(s.descriptors) for s in samples}
            except MissingBandError as e:
                reason = str(e)
        if reason is not None:
            rows.append({**row, "skipped": reason})
            continue
        if progress:
            progress(peer.name)
        scores = score_images(samples, lambda s: peer.cloud_mask(s.image, s.descriptors), cloud)
        rows.append({**row, "bands": _bands_field(bands), **summarise(scores, n_bootstrap, level, seed)})
    labelled = sum(int(np.count_nonzero(~s.nodata)) for s in samples)
    return {
        "model": label,
        "model_sha256": getattr(model, "sha256", None),
        "dataset": dataset,
        "n_images": len(samples),
        "labelled_pixels": labelled,
        "images": [s.name for s in samples],
        "sensors": sorted({s.sensor for s in samples}),
        "threshold": threshold,
        "bootstrap": {"resamples": n_bootstrap, "level": level, "seed": seed, "unit": "image"},
        "rows": rows,
    }


def _model_predictor(model, bands: Mapping[str, list[str]], threshold: float, device: str):
    from .training.train import predict_sample

    model.to(device).eval()  # predict_sample moves the inputs, not the model
    return lambda s: predict_sample(model, s, bands[s.name], device) >= threshold


# ---------------------------------------------------------------------------- markdown


def _fmt(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _fmt_ci(row: Mapping, metric: str) -> str:
    value = _fmt(row["pooled"][metric])
    ci = row.get("ci")
    if not ci or not all(np.isfinite(ci[metric])):
        return value
    return f"{value} ({ci[metric][0]:.2f}-{ci[metric][1]:.2f})"


def _bands_text(bands) -> str:
    if isinstance(bands, dict):
        return "per image (see JSON)"
    return ", ".join(bands)


def _row_label(row: Mapping) -> str:
    return f"{row['method']} {row['band_set']}" if row.get("kind") == "model" else row["method"]


def report_markdown(report: Mapping) -> str:
    """The report of :func:`evaluate_model` as markdown: the pooled table and by tag."""
    boot = report["bootstrap"]
    title = report.get("dataset") or "labelled samples"
    lines = [
        f"# Accuracy on {title}",
        "",
        f"{report['n_images']} images ({', '.join(report['sensors'])}), {report['labelled_pixels']:,} "
        f"labelled pixels; model `{report['model']}`, cloud where its probability >= "
        f"{report['threshold']:g}; peers decide by their own default rules. Metrics of all pixels "
        f"pooled (paper eq. 6-10); in brackets {boot['level']:.0%} percentile bootstrap intervals "
        f"over {boot['resamples']} resamples of the images (seed {boot['seed']}). Every row is "
        "scored on the same pixels.",
        "",
        "| method | band set | bands | OA | balanced acc. | precision | recall | F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for row in report["rows"]:
        if "skipped" in row:
            notes.append(f"{row['method']} {row['band_set']}: {row['skipped']}")
            lines.append(f"| {row['method']} | {row['band_set']} | not run ({len(notes)}) | | | | | |")
            continue
        cells = [_fmt_ci(row, m) for m in METRICS]
        lines.append(f"| {row['method']} | {row['band_set']} | {_bands_text(row['bands'])} | "
                     + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Not run:", ""] + [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    done = [r for r in report["rows"] if "skipped" not in r]
    tags = sorted({k for r in done for k in r["by_tag"]})
    for key in tags:
        values = sorted({v for r in done for v in r["by_tag"].get(key, {})})
        lines += ["", f"## By {key}: OA / F1 (pooled over the images with that {key})", ""]
        lines.append(f"| {key} | images | " + " | ".join(_row_label(r) for r in done) + " |")
        lines.append("|---|---|" + "---|" * len(done))
        for v in values:
            n = max(r["by_tag"].get(key, {}).get(v, {}).get("n_images", 0) for r in done)
            cells = []
            for r in done:
                g = r["by_tag"].get(key, {}).get(v)
                cells.append("" if g is None else f"{_fmt(g['pooled']['overall_accuracy'])} / "
                                                 f"{_fmt(g['pooled']['f1'])}")
            lines.append(f"| {v} | {n} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)

def _json_ready(obj):
    """NaN and infinities as null (JSON has no NaN); tuples as lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    return obj


def report_json(report: Mapping) -> str:
    """The report of :func:`evaluate_model` as strict JSON (undefined metrics are null)."""
    return json.dumps(_json_ready(report), indent=1, allow_nan=False) + "\n"


def write_report(report: Mapping, out_dir: str | PathLike, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``evaluation.json`` and ``evaluation.md`` into ``out_dir``.

    Both are written under temporary names and renamed only once both are complete, so an
    interrupted run leaves no report that looks finished.

    Returns
    -------
    tuple of pathlib.Path
        The JSON and markdown paths.

    Raises
    ------
    FileExistsError
        If either exists and ``overwrite`` is False.
    """
    out_dir = Path(out_dir)
    targets = {out_dir / "evaluation.json": report_json(report), out_dir / "evaluation.md": report_markdown(report)}
    if not overwrite:
        for path in targets:
            if path.exists():
                raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    out_dir.mkdir(parents=True, exist_ok=True)
    partials = {path: path.with_name(f".{path.name}.partial") for path in targets}
    try:
        for path, text in targets.items():
            partials[path].write_text(text)
        for path, tmp in partials.items():
            os.replace(tmp, path)
    finally:
        for tmp in partials.values():
            if tmp.exists():
                tmp.unlink()
    json_path, md_path = targets
    return json_path, md_path
