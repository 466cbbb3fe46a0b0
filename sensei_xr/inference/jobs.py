"""The identity of a mask job: what a rerun must match to reuse an output.

A job is the model's weights, the bands it used, the threshold, the engine arguments that
change the result, the output grid and how the input's values were made. The batch
writers (:mod:`.batch`) store it with every output (a COG tag, a quicklook's PNG text, a
Zarr store's attributes and done-file) and compare it before reusing one.
"""

from __future__ import annotations

import inspect
import json
from os import PathLike
from typing import Any, Callable, Mapping

import numpy as np

from .engine import class_probabilities

__all__ = ["JOB_TAG", "mask_job", "job_differences", "cog_job", "quicklook_job", "with_job"]

#: The COG tag / PNG text key / Zarr attribute holding a mask's job (JSON).
JOB_TAG = "sensei_xr_job"
_JOB_VERSION = 1
# Arguments of the engine that change the mask (device and batch_size change only the
# arithmetic's rounding, on CUDA in half precision; band_dim only names a dimension).
_RESULT_ARGS = ("patch_size", "overlap", "edges", "nodata", "resolution", "sensor", "refine")
# Result-changing arguments added after jobs were first stored: a stored job without one was
# made at this value (so masks written before it are not redone).
_ABSENT_MEANS = {"edges": "ring"}
# The mask's attributes saying what the engine applied after the network.
_APPLIED_ATTRS = ("snow_test", "warm_test", "pixel_member")
# Keys compared between jobs ("model" is the model's name, for messages only).
_INFO_ONLY = ("model",)


def _engine_defaults() -> dict[str, Any]:
    params = inspect.signature(class_probabilities).parameters
    return {k: params[k].default for k in _RESULT_ARGS if k in params}


def _plain(v):
    """JSON-able, comparable form of an argument value."""
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and np.isnan(v):
        return "nan"
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v if isinstance(v, (str, int, float, bool, type(None))) else str(v)


def _grid(mask) -> dict:
    """Shape, CRS and transform of a mask's (y, x) grid."""
    shape = [int(mask.sizes[d]) for d in mask.dims[-2:]]
    crs = transform = None
    try:
        crs = mask.rio.crs
        if crs is not None:
            transform = [round(float(v), 9) for v in tuple(mask.rio.transform())[:6]]
    except Exception:  # noqa: BLE001 - a grid without georeferencing is just its shape
        crs = None
    return {"shape": shape, "crs": crs.to_string() if crs is not None else None, "transform": transform}


# Attributes of the input scene that say how its values were made (open_scene, stack_items).
_INPUT_ATTRS = ("sensor", "radiometry", "processing_baseline", "units", "stac_profile", "stac_collections")


def mask_job(mask, scene=None, **kwargs) -> dict:
    """The identity of a (lazy) cloud mask: what a rerun must match to reuse its output.

    Parameters
    ----------
    mask : xarray.DataArray
        A mask from :func:`sensei_xr.inference.cloudmask` (lazy is fine: only its
        attributes and grid are read).
    scene : xarray.DataArray, optional
        The scene it masks: how its values were made (``attrs`` ``sensor``,
        ``radiometry``, ``processing_baseline``, ``units``, STAC profile and collections)
        is recorded, so a rerun on the same pixels calibrated otherwise (another
        processing baseline, Level-1 vs Level-2, DN) is another job.
    **kwargs
        The keyword arguments ``cloudmask`` was called with; those that change the result
        (``patch_size``, ``overlap``, ``edges``, ``nodata``, ``resolution``, ``sensor``, ``refine``) are recorded,
        defaults filled in, so an argument given at its default equals one left out.

    Returns
    -------
    dict
        JSON-able: ``model_sha256`` (the weights), ``model`` (name, for messages),
        ``bands_used``, ``classes``, ``threshold``, ``snow_test``, ``warm_test`` and
        ``pixel_member`` (as the mask's attributes state them), the result-changing arguments,
        ``grid`` (shape, CRS, transform) and, with ``scene``, ``input``.
    """
    a = mask.attrs
    job = {"version": _JOB_VERSION, "model": a.get("model"), "model_sha256": a.get("model_sha256"),
           "bands_used": a.get("bands_used"), "classes": a.get("classes"),
           "threshold": _plain(a.get("threshold"))}
    # What the engine applied after the network (the tests' thresholds, the member and its
    # weight): plain model attributes outside the weights' sha256, so stated here.
    job.update({k: a[k] for k in _APPLIED_ATTRS if a.get(k) is not None})
    args = {**_engine_defaults(), **{k: v for k, v in kwargs.items() if k in _RESULT_ARGS}}
    job.update({k: _plain(v) for k, v in sorted(args.items())})
    job["grid"] = _grid(mask)
    if scene is not None:
        job["input"] = {k: _plain(scene.attrs[k]) for k in _INPUT_ATTRS if scene.attrs.get(k) is not None}
    return job


def job_differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``["threshold 0.5 (stored) vs 0.4 (now)", ...]``; empty when the jobs are the same."""
    out = []
    for key in sorted(set(stored) | set(wanted)):
        if key in _INFO_ONLY or key == "version":
            continue
        a, b = stored.get(key, _ABSENT_MEANS.get(key)), wanted.get(key, _ABSENT_MEANS.get(key))
        if json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True):
            continue
        if key == "model_sha256":
            out.append(f"model {stored.get('model')!r} (weights {str(a)[:12]}) vs "
                       f"{wanted.get('model')!r} (weights {str(b)[:12]})")
        else:
            out.append(f"{key} {a!r} (stored) vs {b!r} (now)")
    return out


def _read_job(read_text: Callable[[], str | None]) -> dict | None:
    try:
        job = json.loads(read_text() or "null")
    except Exception:  # noqa: BLE001 - an unreadable or foreign file records no job
        return None
    return job if isinstance(job, dict) else None


def cog_job(path: str | PathLike) -> dict | None:
    """The job stored in a mask COG's ``sensei_xr_job`` tag (None if it has none)."""
    import rasterio

    def read():
        with rasterio.open(path) as src:
            return src.tags().get(JOB_TAG)

    return _read_job(read)


def quicklook_job(path: str | PathLike) -> dict | None:
    """The job stored in a quicklook PNG's ``sensei_xr_job`` text chunk (None if none)."""
    from PIL import Image

    def read():
        with Image.open(path) as img:
            return img.info.get(JOB_TAG)

    return _read_job(read)


def with_job(mask, job: dict):
    """``mask`` with its job in ``attrs[JOB_TAG]`` (JSON), as the writers store it."""
    return mask.assign_attrs({JOB_TAG: json.dumps(job, sort_keys=True)})
