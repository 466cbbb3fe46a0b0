"""Masking many scenes, resumable: COGs per scene, or one Zarr store written by region.

A rerun after a crash finishes the job without recomputing finished parts: a COG exists
only once complete (written under a temporary name, then renamed), and a Zarr region is
recorded as done (in ``sensei_done.json`` beside the arrays, rewritten atomically) only
after its data is written.
"""

from __future__ import annotations

import json
import os
from os import PathLike
from pathlib import Path
from typing import Mapping

import numpy as np

from .engine import cloudmask

__all__ = ["mask_scenes_to_cogs", "mask_stack_to_zarr", "zarr_store_state"]

_DONE = "sensei_done.json"


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="scene")


def mask_scenes_to_cogs(
    scenes: Mapping[str, "xarray.DataArray"],  # noqa: F821
    out_dir: str | PathLike,
    *,
    model="default",
    threshold: float = 0.5,
    progress: bool = True,
    **kwargs,
) -> dict[str, Path]:
    """Mask each scene and write ``<out_dir>/<name>_cloudmask.tif``, skipping finished ones.

    Parameters
    ----------
    scenes : mapping of str to DataArray
        Scene name -> (band, y, x) scene.
    out_dir : path-like
    model, threshold, **kwargs
        As :func:`sensei_xr.inference.cloudmask`.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        Scene name -> COG path (existing and new).
    """
    from ..outputs import write_mask_cog

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, da in _progress(scenes.items(), len(scenes), "masking", progress):
        target = out_dir / f"{name}_cloudmask.tif"
        if not target.exists():
            mask = cloudmask(da, model, threshold=threshold, **kwargs)
            write_mask_cog(mask, target)
        written[name] = target
    return written


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
        The store, opened lazily.
    """
    import xarray as xr

    if "time" not in stack.dims:
        raise ValueError(f"mask_stack_to_zarr needs a 'time' dim; got {stack.dims}")
    store = Path(store)
    mask = cloudmask(stack, model, threshold=threshold, **kwargs)
    mask = mask.chunk({"time": 1})
    ds = mask.to_dataset(name="cloudmask")
    # stackstac carries per-item metadata (sets, dicts) as coordinates: Zarr cannot store
    # arbitrary Python objects, so keep only coordinates of plain array types.
    ds = ds.drop_vars([c for c in ds.coords if c not in ds.dims and ds[c].dtype == object])
    # Zarr encodes attrs as JSON: keep them plain.
    ds["cloudmask"].attrs = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in mask.attrs.items()}
    ds["cloudmask"].encoding = {"_FillValue": np.uint8(255)}
    ds["cloudmask"].attrs.pop("_FillValue", None)
    done_file = store / _DONE
    if zarr_store_state(store, stack) == "new":
        ds.to_zarr(store, mode="w", compute=False)
        _write_done(done_file, [])
    done = set(json.loads(done_file.read_text())["time_indices"])
    todo = [t for t in range(stack.sizes["time"]) if t not in done]
    for t in _progress(todo, len(todo), "masking", progress):
        region = ds.isel(time=slice(t, t + 1))
        region = region.drop_vars([v for v in region.coords if "time" not in region[v].dims])
        region.to_zarr(store, region={"time": slice(t, t + 1)})
        done.add(t)
        _write_done(done_file, sorted(done))
    # Undecoded, so the mask reads back as the uint8 it was (255 = no data), not as floats.
    return xr.open_zarr(store, mask_and_scale=False)


def zarr_store_state(store: str | PathLike, stack: "xarray.DataArray") -> str:  # noqa: F821
    """Whether ``store`` is ``"new"``, an unfinished store of this very stack (``"resume"``)
    or a finished one (``"complete"``).

    Raises
    ------
    ValueError
        If ``store`` exists but is not a sensei_xr store of this stack (other scenes, times
        or grid): resuming into it would mix two stacks.
    """
    import xarray as xr

    store = Path(store)
    if not store.exists():
        return "new"
    done_file = store / _DONE
    if not store.is_dir() or not done_file.is_file():
        raise ValueError(f"{store} exists and is not a sensei_xr Zarr store; remove it or choose another store")
    try:
        done = set(json.loads(done_file.read_text())["time_indices"])
        with xr.open_zarr(store) as old:
            same = (old.sizes.get("time") == stack.sizes["time"]
                    and old.sizes.get("y") == stack.sizes["y"] and old.sizes.get("x") == stack.sizes["x"]
                    and np.array_equal(old["time"].values, stack["time"].values)
                    and np.allclose(old["x"].values, stack["x"].values)
                    and np.allclose(old["y"].values, stack["y"].values))
    except Exception as e:  # noqa: BLE001 - any unreadable store is "not ours"
        raise ValueError(f"{store} exists but cannot be read as a sensei_xr Zarr store "
                         f"({type(e).__name__}: {e}); remove it or choose another store") from e
    if not same:
        raise ValueError(f"{store} exists and holds a different stack (other scenes, times or grid); "
                         "remove it or choose another store")
    return "complete" if len(done) >= stack.sizes["time"] else "resume"


def _write_done(path: Path, indices: list[int]) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps({"time_indices": indices}))
    os.replace(tmp, path)
