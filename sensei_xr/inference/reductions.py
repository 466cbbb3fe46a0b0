"""The user-facing reductions of the class probabilities: cloud probability, mask, class ids.

Each is lazy where :func:`~sensei_xr.inference.engine.class_probabilities` is, keeps its
georeferencing and declares its no-data value.
"""

from __future__ import annotations

import numpy as np

from ..bands import BandError
from .engine import NODATA_CLASS, _georef, class_probabilities

__all__ = ["cloud_probability", "cloudmask", "classify", "class_ids"]


def cloud_probability(da, model="default", **kwargs):
    """Lazy probability of cloud, float32 0..1 with NaN at no data, dims (time?, y, x).

    The sum of the probabilities of the model's cloud classes (e.g. thin + thick cloud).
    Keyword arguments as :func:`class_probabilities`.
    """
    from ..models import cloud_class_indices  # here: importing sensei_xr must not import torch

    probs = class_probabilities(da, model, **kwargs)
    classes = probs.attrs["classes"].split(",")
    idx = list(cloud_class_indices(classes))
    if not idx:
        raise BandError(f"model classes {classes} include no cloud class")
    p = probs.isel({"class": idx}).sum("class", skipna=False)
    p = p.astype(np.float32).rename("cloud_probability")
    p.attrs = {**probs.attrs, "units": "1", "long_name": "probability of cloud"}
    p = p.rio.write_nodata(np.nan, encoded=False)
    return _georef(p, probs)


def _check_threshold(threshold) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) \
            or not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a number within (0, 1), e.g. 0.5; got {threshold!r}")


def cloudmask(da, model="default", threshold: float = 0.5, **kwargs):
    """Lazy cloud mask, uint8: 0 clear, 1 cloud, 255 no data (declared as nodata).

    Parameters
    ----------
    threshold : float
        Cloud where the cloud probability is at least this.
    **kwargs
        As :func:`class_probabilities`.
    """
    _check_threshold(threshold)
    p = cloud_probability(da, model, **kwargs)
    mask = (p >= threshold).astype(np.uint8).where(p.notnull(), NODATA_CLASS).astype(np.uint8)
    mask = mask.rename("cloudmask")
    mask.attrs = {**p.attrs, "threshold": float(threshold),
                  "flag_values": "0 1 255", "flag_meanings": "clear cloud no_data",
                  "long_name": "cloud mask"}
    mask.attrs.pop("units", None)
    mask = mask.rio.write_nodata(NODATA_CLASS, encoded=False)
    return _georef(mask, p)


def classify(da, model="default", threshold: float = 0.5, **kwargs):
    """Lazy class ids (uint8, 255 at no data); ``attrs["class_table"]`` maps id -> class.

    Consistent with :func:`cloudmask` at the same threshold: a pixel gets a cloud class
    exactly where the cloud classes' summed probability is at least ``threshold`` (then the
    most probable cloud class, e.g. thick rather than thin), and elsewhere the most probable
    other class. A plain arg-max would call clear a pixel of clear 0.4 / thin 0.35 / thick
    0.25 that the mask calls cloud.

    Parameters
    ----------
    threshold : float
        As :func:`cloudmask`.
    **kwargs
        As :func:`class_probabilities`.
    """
    _check_threshold(threshold)
    probs = class_probabilities(da, model, **kwargs)
    classes = probs.attrs["classes"].split(",")
    ids = class_ids(probs, threshold)
    ids.attrs = {**probs.attrs, "threshold": float(threshold),
                 "class_table": ", ".join(f"{i}: {c}" for i, c in enumerate(classes)),
                 "flag_values": " ".join(str(i) for i in range(len(classes))) + f" {NODATA_CLASS}",
                 "flag_meanings": " ".join(classes) + " no_data"}
    ids = ids.rio.write_nodata(NODATA_CLASS, encoded=False)
    return _georef(ids, probs)


def class_ids(probs, threshold: float = 0.5):
    """Class ids from class probabilities (dimension ``class``, ``attrs["classes"]``).

    Cloud classes (:func:`~sensei_xr.models.cloud_class_indices`) where their summed
    probability is at least ``threshold``, the most probable of them; elsewhere the most
    probable other class; 255 where the probabilities are NaN (no data). Lazy if ``probs``
    is.
    """
    import xarray as xr  # here: the training core imports this package without xarray (GPU image)

    from ..models import cloud_class_indices

    _check_threshold(threshold)  # also here: class_ids is public
    classes = probs.attrs["classes"].split(",")
    cloud = list(cloud_class_indices(classes))
    other = [i for i in range(len(classes)) if i not in cloud]
    p = probs.fillna(-1.0)
    if not cloud or not other:
        ids = p.argmax("class")
    else:
        def best(group):
            pos = p.isel({"class": group}).argmax("class")
            lookup = np.asarray(group, dtype=np.uint8)
            return xr.apply_ufunc(lambda k: lookup[k], pos, dask="parallelized", output_dtypes=[np.uint8])

        cloudy = probs.isel({"class": cloud}).sum("class", skipna=False) >= threshold
        ids = xr.where(cloudy, best(cloud), best(other))
    valid = probs.isel({"class": 0}).notnull()
    return ids.astype(np.uint8).where(valid, NODATA_CLASS).astype(np.uint8).rename("class_id")
