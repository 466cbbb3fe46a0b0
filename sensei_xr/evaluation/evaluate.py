"""A model on each band set, and peer methods, scored on the same labelled pixels.

Every prediction goes through :mod:`sensei_xr.evaluation.predict`, i.e. the inference
engine behind ``da.sensei.*``: what is scored is what users get.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import MissingBandError
from ..spectral.bandsets import band_set, canonical_set_name
from .metrics import ImageScore, pooled_confusion, score_images, summarise

if TYPE_CHECKING:
    from ..datasets import LabelledSample

__all__ = ["evaluate_model", "score_model", "pooled_metrics", "model_label"]


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


def score_model(model, samples: Sequence["LabelledSample"], bands: str | Sequence[str] | None = None,
                threshold: float = 0.5, device: str = "cpu", **engine_options) -> list[ImageScore]:
    """Each sample's pixel counts for a model's mask, predicted through the engine.

    Parameters
    ----------
    model : CloudModel
    samples : sequence of LabelledSample
    bands : None, str or sequence of str
        Band choice per sample (see :func:`~sensei_xr.spectral.bandsets.resolve_bands`).
    threshold : float
        Cloud where the cloud probability is at least this.
    device : str
    **engine_options
        Passed to :func:`sensei_xr.inference.cloud_probability`.

    Returns
    -------
    list of ImageScore
    """
    from .predict import predict_probability

    return score_images(samples, lambda s: predict_probability(model, s, bands, device, **engine_options) >= threshold,
                        list(model.cloud_class_indices))


def pooled_metrics(model, samples: Sequence["LabelledSample"], bands: str | Sequence[str] | None = None,
                   threshold: float = 0.5, device: str = "cpu") -> dict[str, float]:
    """The paper's metrics of all samples' pixels together (see :func:`score_model`)."""
    return pooled_confusion(score_model(model, samples, bands, threshold, device)).metrics()


def model_label(model) -> str:
    """A model's name for reports and messages: its card's name, else where it came from."""
    card = getattr(model, "card", None) or {}
    return str(card.get("name") or getattr(model, "source", None) or type(model).__name__)


def evaluate_model(model, samples: Sequence["LabelledSample"], band_sets: Sequence[str] = ("ALL",),
                   peers: Sequence[str] = (), threshold: float = 0.5, device: str = "cpu",
                   n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0,
                   dataset: str | None = None, progress: Callable[[str], None] | None = None,
                   engine_options: Mapping[str, object] | None = None) -> dict:
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
        Names of :data:`sensei_xr.evaluation.peers.PEERS`. Each runs on the same images with the
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
    engine_options : mapping, optional
        Keyword arguments of :func:`sensei_xr.inference.cloud_probability` (e.g.
        ``overlap``, ``edges``), so a choice of the patch grid is scored as the accessor
        would run it; left out, the engine's defaults. Recorded in the report as ``engine``.

    Returns
    -------
    dict
        JSON-able: ``model``, ``dataset``, ``n_images``, ``threshold``, ``bootstrap`` and
        ``rows``, one per band set then per peer: ``method``, ``kind`` (``"model"`` or
        ``"peer"``), ``band_set`` (``"own"`` for peers: the bands they need), ``bands``
        and the :func:`summarise` fields, or ``skipped`` with the reason; ``engine``, the
        engine arguments given.
    """
    from . import peers as peer_methods

    samples = list(samples)
    engine = dict(engine_options or {})
    if not samples:
        raise ValueError("no samples to evaluate")
    sets = [canonical_set_name(b) for b in band_sets]
    peer_objs = [peer_methods.get_peer(p) for p in peers]
    cloud = list(model.cloud_class_indices)
    label = model_label(model)
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
        scores = [score_model(model, [s], bands[s.name], threshold, device, **engine)[0] for s in samples]
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
        "engine": engine,
        "bootstrap": {"resamples": n_bootstrap, "level": level, "seed": seed, "unit": "image"},
        "rows": rows,
    }
