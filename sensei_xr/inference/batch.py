"""Masking many scenes, resumable: COGs per scene, or one Zarr store written by region.

A rerun finishes the same job without recomputing finished parts, and refuses to finish a
different one. What makes a job is stored with its outputs (:func:`mask_job`: the model's
weights, the bands used, the threshold, every argument that changes the result and the
grid): in each COG's ``sensei_xr_job`` tag, in the Zarr store's attributes and its
done-file. A rerun with another threshold, model or bands is refused with the
difference named, instead of returning the old files or mixing time steps of two jobs.

Nothing incomplete looks complete: a COG is written under a temporary name and renamed
once complete; a Zarr store is created under a temporary name (``<store>.partial``) and
renamed once its metadata and done-file exist; a region (time step) is recorded as done
(in ``sensei_done.json``, rewritten atomically) only after its data is written.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from os import PathLike
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .engine import class_probabilities, cloudmask

__all__ = ["mask_scenes_to_cogs", "mask_stack_to_zarr", "zarr_store_state", "mask_job", "cog_job",
           "job_differences", "JOB_TAG"]

_DONE = "sensei_done.json"
#: The COG tag / Zarr attribute holding a mask's job (JSON).
JOB_TAG = "sensei_xr_job"
_JOB_VERSION = 1
# Arguments of the engine that change the mask (device and batch_size change only the
# arithmetic's rounding, on CUDA in half precision; band_dim only names a dimension).
_RESULT_ARGS = ("patch_size", "overlap", "nodata", "resolution", "sensor")
# Keys compared between jobs ("model" is the model's name, for messages only).
_INFO_ONLY = ("model",)


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="scene")


# ------------------------------------------------------------------------------- jobs


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


def mask_job(mask, **kwargs) -> dict:
    """The identity of a (lazy) cloud mask: what a rerun must match to reuse its output.

    Parameters
    ----------
    mask : xarray.DataArray
        A mask from :func:`sensei_xr.inference.cloudmask` (lazy is fine: only its
        attributes and grid are read).
    **kwargs
        The keyword arguments ``cloudmask`` was called with; those that change the result
        (``patch_size``, ``overlap``, ``nodata``, ``resolution``, ``sensor``) are recorded,
        defaults filled in, so an argument given at its default equals one left out.

    Returns
    -------
    dict
        JSON-able: ``model_sha256`` (the weights), ``model`` (name, for messages),
        ``bands_used``, ``classes``, ``threshold``, the result-changing arguments and
        ``grid`` (shape, CRS, transform).
    """
    a = mask.attrs
    job = {"version": _JOB_VERSION, "model": a.get("model"), "model_sha256": a.get("model_sha256"),
           "bands_used": a.get("bands_used"), "classes": a.get("classes"),
           "threshold": _plain(a.get("threshold"))}
    args = {**_engine_defaults(), **{k: v for k, v in kwargs.items() if k in _RESULT_ARGS}}
    job.update({k: _plain(v) for k, v in sorted(args.items())})
    job["grid"] = _grid(mask)
    return job


def job_differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """``["threshold 0.5 (stored) vs 0.4 (now)", ...]``; empty when the jobs are the same."""
    out = []
    for key in sorted(set(stored) | set(wanted)):
        if key in _INFO_ONLY or key == "version":
            continue
        a, b = stored.get(key), wanted.get(key)
        if json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True):
            continue
        if key == "model_sha256":
            out.append(f"model {stored.get('model')!r} (weights {str(a)[:12]}) vs "
                       f"{wanted.get('model')!r} (weights {str(b)[:12]})")
        else:
            out.append(f"{key} {a!r} (stored) vs {b!r} (now)")
    return out


def cog_job(path: str | PathLike) -> dict | None:
    """The job stored in a mask COG's ``sensei_xr_job`` tag (None if it has none)."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            text = src.tags().get(JOB_TAG)
    except Exception:  # noqa: BLE001 - an unreadable file has no job
        return None
    try:
        job = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return job if isinstance(job, dict) else None


def _with_job(mask, job: dict):
    return mask.assign_attrs({JOB_TAG: json.dumps(job, sort_keys=True)})


# ------------------------------------------------------------------------------- COGs


def _cog_path(out_dir: Path, name) -> Path:
    """``<out_dir>/<name>_cloudmask.tif``, refusing names that would leave ``out_dir``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"scene name {name!r} is not a usable file name: give a non-empty string")
    bad = [c for c in ("/", "\\", "\0") if c in name]
    if bad:
        raise ValueError(
            f"scene name {name!r} contains {' and '.join(map(repr, bad))}: names become file names "
            f"<out_dir>/<name>_cloudmask.tif and may not name folders (or leave out_dir); rename "
            f"the scene, e.g. {name.replace('/', '_').replace(chr(92), '_').replace(chr(0), '')!r}"
        )
    target = out_dir / f"{name}_cloudmask.tif"
    # Defence in depth: whatever the name, the file sits directly in out_dir.
    if target.resolve().parent != out_dir.resolve():
        raise ValueError(f"scene name {name!r} would write outside {out_dir}; rename the scene")
    return target


def mask_scenes_to_cogs(
    scenes: Mapping[str, "xarray.DataArray"],  # noqa: F821
    out_dir: str | PathLike,
    *,
    model="default",
    threshold: float = 0.5,
    progress: bool = True,
    overwrite: bool = False,
    **kwargs,
) -> dict[str, Path]:
    """Mask each scene and write ``<out_dir>/<name>_cloudmask.tif``, skipping finished ones.

    A COG that exists is reused only when it was written by the same job (same model
    weights, bands, threshold, arguments and grid; :func:`mask_job`); otherwise the run is
    refused before anything is computed.

    Parameters
    ----------
    scenes : mapping of str to DataArray
        Scene name -> (band, y, x) scene. Names become file names: they may not contain
        ``/`` or ``\\`` (nothing is written outside ``out_dir``).
    out_dir : path-like
    model, threshold, **kwargs
        As :func:`sensei_xr.inference.cloudmask`.
    progress : bool
        Show a tqdm progress bar.
    overwrite : bool
        Replace existing COGs whatever job wrote them.

    Returns
    -------
    dict
        Scene name -> COG path (existing and new).

    Raises
    ------
    ValueError
        For a name that is not a plain file name, or a COG written by another job (the
        message names the differences).
    """
    from ..outputs import write_mask_cog

    out_dir = Path(out_dir)
    targets = {name: _cog_path(out_dir, name) for name in scenes}
    # Graphs and jobs first (cheap: no pixel is read), so a conflict stops the run before
    # any work is done.
    plans = {}
    for name, da in scenes.items():
        mask = cloudmask(da, model, threshold=threshold, **kwargs)
        job = mask_job(mask, **kwargs)
        target = targets[name]
        done = False
        if (target.exists() or target.is_symlink()) and not overwrite:
            if not target.is_file():
                raise ValueError(f"{target} exists and is not a file; move it away or choose another out_dir")
            stored = cog_job(target)
            if stored is None:
                raise ValueError(f"{target} exists but records no sensei_xr job (another program's file, "
                                 "or an older version's); pass overwrite=True to replace it, or choose "
                                 "another out_dir")
            diff = job_differences(stored, job)
            if diff:
                raise ValueError(f"{target} exists and was made by another job: {'; '.join(diff)}. Pass "
                                 "overwrite=True to replace it, or choose another out_dir")
            done = True
        plans[name] = (mask, job, done)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, (mask, job, done) in _progress(plans.items(), len(plans), "masking", progress):
        if not done:
            write_mask_cog(_with_job(mask, job), targets[name], overwrite=True)
        written[name] = targets[name]
    return written


# ------------------------------------------------------------------------------- Zarr


def mask_stack_to_zarr(
    stack: "xarray.DataArray",  # noqa: F821
    store: str | PathLike,
    *,
    model="default",
    threshold: float = 0.5,
    progress: bool = True,
    **kwargs,
) -> "xarray.Dataset":  # noqa: F821
    """Mask a (time, band, y, x) stack into a Zarr store, one time step per region.

    A rerun finishes an unfinished store of the same job (stack and :func:`mask_job`),
    also one killed before its done-file was written; another job's store is refused.

    Parameters
    ----------
    stack : xarray.DataArray
        Time stack of scenes.
    store : path-like
        Zarr directory; created on the first run, completed on later runs.
    model, threshold, **kwargs
        As :func:`sensei_xr.inference.cloudmask`.
    progress : bool

    Returns
    -------
    xarray.Dataset
        The store, opened lazily (uint8 masks, 255 = no data).

    Raises
    ------
    ValueError
        If ``store`` exists and is not a sensei_xr store of this stack and job (the
        message names the differences).
    """
    import xarray as xr

    if "time" not in stack.dims:
        raise ValueError(f"mask_stack_to_zarr needs a 'time' dim; got {stack.dims}")
    store = Path(store)
    mask = cloudmask(stack, model, threshold=threshold, **kwargs)
    job = mask_job(mask, **kwargs)
    mask = mask.chunk({"time": 1})
    ds = mask.to_dataset(name="cloudmask")
    # stackstac carries per-item metadata (sets, dicts) as coordinates: Zarr cannot store
    # arbitrary Python objects, so keep only coordinates of plain array types.
    ds = ds.drop_vars([c for c in ds.coords if c not in ds.dims and ds[c].dtype == object])
    # Zarr encodes attrs as JSON: keep them plain.
    ds["cloudmask"].attrs = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in mask.attrs.items()}
    ds["cloudmask"].attrs[JOB_TAG] = json.dumps(job, sort_keys=True)
    ds["cloudmask"].encoding = {"_FillValue": np.uint8(255)}
    ds["cloudmask"].attrs.pop("_FillValue", None)
    done_file = store / _DONE
    state = zarr_store_state(store, stack, job=job)
    if state == "new":
        _create_store(ds, store, job)
    elif not done_file.is_file():
        # Killed between the store's creation and its done-file (sensei_xr 0.1 created
        # them in that order): the metadata is there, no region is recorded as done.
        _write_done(done_file, [], job)
    record = json.loads(done_file.read_text())
    if "job" not in record:
        _write_done(done_file, record["time_indices"], job)  # an older done-file: add the job
    done = set(record["time_indices"])
    todo = [t for t in range(stack.sizes["time"]) if t not in done]
    for t in _progress(todo, len(todo), "masking", progress):
        region = ds.isel(time=slice(t, t + 1))
        region = region.drop_vars([v for v in region.coords if "time" not in region[v].dims])
        region.to_zarr(store, region={"time": slice(t, t + 1)})
        done.add(t)
        _write_done(done_file, sorted(done), job)
    # Undecoded, so the mask reads back as the uint8 it was (255 = no data), not as floats.
    return xr.open_zarr(store, mask_and_scale=False)


def _create_store(ds, store: Path, job: dict) -> None:
    """Create the store's metadata and done-file under a temporary name, then rename it:
    a store that exists is always one this module can resume."""
    tmp = store.with_name(store.name + ".partial")
    if tmp.exists():  # left by a run killed while creating the store; ours by its name
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    store.parent.mkdir(parents=True, exist_ok=True)
    ds.to_zarr(tmp, mode="w", compute=False)
    _write_done(tmp / _DONE, [], job)
    os.replace(tmp, store)


def _stored_job(store: Path, done_file: Path, old) -> dict | None:
    """The job a store records: its done-file's, else its attributes' (older stores)."""
    if done_file.is_file():
        record = json.loads(done_file.read_text())
        if isinstance(record.get("job"), dict):
            return record["job"]
    attrs = old["cloudmask"].attrs if "cloudmask" in old else {}
    if JOB_TAG in attrs:
        return json.loads(attrs[JOB_TAG])
    # sensei_xr 0.1 stores: the parameters the mask's attributes name.
    legacy = {k: attrs[k] for k in ("model_sha256", "bands_used", "classes", "threshold") if k in attrs}
    return legacy or None


def zarr_store_state(store: str | PathLike, stack: "xarray.DataArray",  # noqa: F821
                     job: Mapping[str, Any] | None = None) -> str:
    """Whether ``store`` is ``"new"``, an unfinished store of this very stack and job
    (``"resume"``) or a finished one (``"complete"``).

    Parameters
    ----------
    store : path-like
    stack : xarray.DataArray
        The (time, band, y, x) stack to mask.
    job : dict, optional
        The job (:func:`mask_job`) of this run; when given, a store made by another job
        is refused.

    Raises
    ------
    ValueError
        If ``store`` exists but is not a sensei_xr store of this stack (other scenes, times
        or grid) or was made by another job: resuming into it would mix two stacks, or two
        thresholds, models or band sets under one set of attributes.
    """
    import xarray as xr

    store = Path(store)
    if not store.exists():
        return "new"
    done_file = store / _DONE
    if not store.is_dir():
        raise ValueError(f"{store} exists and is not a sensei_xr Zarr store; remove it or choose another store")
    try:
        with xr.open_zarr(store) as old:
            ours = "cloudmask" in old and ("model_sha256" in old["cloudmask"].attrs or done_file.is_file())
            if not ours:
                raise ValueError("it has no sensei_xr cloudmask")
            same = (old.sizes.get("time") == stack.sizes["time"]
                    and old.sizes.get("y") == stack.sizes["y"] and old.sizes.get("x") == stack.sizes["x"]
                    and np.array_equal(old["time"].values, stack["time"].values)
                    and np.allclose(old["x"].values, stack["x"].values)
                    and np.allclose(old["y"].values, stack["y"].values))
            stored = _stored_job(store, done_file, old)
        done = set(json.loads(done_file.read_text())["time_indices"]) if done_file.is_file() else set()
    except Exception as e:  # noqa: BLE001 - any unreadable store is "not ours"
        raise ValueError(f"{store} exists and is not a sensei_xr Zarr store "
                         f"({type(e).__name__}: {e}); remove it or choose another store") from e
    if not same:
        raise ValueError(f"{store} exists and holds a different stack (other scenes, times or grid); "
                         "remove it or choose another store")
    if job is not None:
        if stored is None:
            raise ValueError(f"{store} records no job (threshold, model, bands), so finishing it could "
                             "mix two jobs; remove it or choose another store")
        wanted = {k: v for k, v in job.items() if k in stored} if "version" not in stored else job
        diff = job_differences(stored, wanted)
        if diff:
            raise ValueError(f"{store} was made by another job: {'; '.join(diff)}; finishing it would "
                             "mix the two in one store: remove it or choose another store")
    return "complete" if len(done) >= stack.sizes["time"] else "resume"


def _write_done(path: Path, indices: list[int], job: Mapping[str, Any] | None = None) -> None:
    tmp = path.with_name(path.name + ".partial")
    record = {"time_indices": indices}
    if job is not None:
        record["job"] = dict(job)
    tmp.write_text(json.dumps(record, sort_keys=True))
    os.replace(tmp, path)
