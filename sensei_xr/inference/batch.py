"""Masking many scenes, resumable: a COG (and quicklook) per scene, or one Zarr store.

The only place where scenes become mask files; the command line goes through it too.
Each path has two steps so that a caller can report between them: ``plan_*`` builds the
lazy masks and refuses conflicts before any pixel is computed, ``finish_*`` does what is
still missing.

A rerun finishes the same job and refuses another. The job (:func:`.jobs.mask_job`: model
weights, bands used, threshold, the pixel tests and member the engine applied,
result-changing arguments, grid, input) is stored with the outputs: a COG tag, a quicklook's PNG text, the Zarr store's attributes and done-file.

Nothing incomplete looks complete: files are written under temporary names and renamed;
a failed scene's outputs are removed; a Zarr store is created as ``<store>.partial`` and
renamed once its metadata and done-file exist; a time step is recorded as done (in
``sensei_done.json``, rewritten atomically) only after its data is written.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..outputs import cloud_fraction, output_path, write_mask_cog
from .reductions import cloudmask
from .jobs import JOB_TAG, cog_job, job_differences, mask_job, quicklook_job, with_job
from .stepwise import compute_by_blocks, store_by_blocks

__all__ = ["mask_scenes_to_cogs", "plan_scenes", "finish_scene", "finish_scenes", "ScenePlan", "SceneResult",
           "mask_stack_to_zarr", "plan_stack", "finish_stack", "StackPlan", "zarr_store_state", "mask_job",
           "cog_job", "quicklook_job", "job_differences", "OptionNames", "JOB_TAG"]

_DONE = "sensei_done.json"
#: Attribute of a Zarr store: ``"complete"``, or ``"incomplete: ..."`` while time steps are missing.
STATUS_TAG = "sensei_xr_status"
_COG_SUFFIX = "_cloudmask.tif"
_QUICKLOOK_SUFFIX = "_quicklook.png"


@dataclass(frozen=True)
class OptionNames:
    """How error messages name the options that resolve an output conflict.

    The library's keywords by default; the command line passes its flags
    (``OptionNames("--overwrite", "--out")``) so that its errors name what to type.
    """

    overwrite: str = "overwrite=True"
    out: str = "out_dir"

    def fix(self) -> str:
        return f"pass {self.overwrite} to replace it, or choose another {self.out}"


_STORE_NAMES = OptionNames(out="store")


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="scene")


# ------------------------------------------------------------------------------- COGs


def _n_bands(mask, data) -> int:
    """Bands the model used (fewer than the scene's when ``bands=`` chose some)."""
    used = mask.attrs.get("bands_used")
    return len(used.split(",")) if used else int(data.sizes["band"])


@dataclass
class ScenePlan:
    """One scene: its lazy mask and job, its outputs, and what they still need.

    Made by :func:`plan_scenes`; ``todo`` is ``"mask"`` (compute and write everything),
    ``"quicklook"`` (the COG is complete and of this job; only its quicklook is missing)
    or ``"done"``.
    """

    name: str
    scene: Any
    mask: Any
    job: dict
    cog: Path
    quicklook: Path | None
    overwrite: bool = False
    todo: str = "mask"

    @property
    def outputs(self) -> list[Path]:
        return [p for p in (self.cog, self.quicklook) if p is not None]

    @property
    def n_bands(self) -> int:
        return _n_bands(self.mask, self.scene)


_NOT_READ = object()


@dataclass
class SceneResult:
    """What :func:`finish_scene` did: ``status`` is ``"masked"``, ``"quicklook added"`` or
    ``"done earlier"``; ``shape`` is (y, x)."""

    name: str
    status: str
    outputs: list[Path]
    n_bands: int
    shape: tuple[int, int]
    _fraction: Any = field(default=_NOT_READ, repr=False)

    @property
    def cloud_fraction(self) -> float | None:
        """Cloudy share of the valid pixels (None: none valid); for a scene done earlier,
        read from its COG on first use."""
        if self._fraction is _NOT_READ:
            import rasterio

            with rasterio.open(self.outputs[0]) as src:
                self._fraction = cloud_fraction(src.read(1))
        return self._fraction


def plan_scenes(
    scenes: Mapping[str, "xarray.DataArray"],  # noqa: F821
    out_dir: str | PathLike,
    *,
    model="default",
    threshold: float = 0.5,
    quicklooks: bool = False,
    overwrite: bool = False,
    option_names: OptionNames = OptionNames(),
    **kwargs,
) -> list[ScenePlan]:
    """Build each scene's lazy mask and decide what its outputs still need; no pixel is
    computed and nothing is written.

    Outputs of the same job (:func:`mask_job`) are kept; a COG of this job whose quicklook
    is missing needs only the quicklook. Outputs of another job, or of none, are refused.

    Parameters
    ----------
    scenes : mapping of str to DataArray
        Scene name -> (band, y, x) scene. Names become file names
        (``<out_dir>/<name>_cloudmask.tif``, ``<name>_quicklook.png``): they may not
        contain ``/`` or ``\\`` (nothing is written outside ``out_dir``).
    out_dir : path-like
    model, threshold, **kwargs
        As :func:`sensei_xr.inference.cloudmask`.
    quicklooks : bool
        Also plan a quicklook PNG per scene (:func:`sensei_xr.quicklook.write_quicklook`).
    overwrite : bool
        Recompute and replace existing outputs whatever job made them.
    option_names : OptionNames
        How the errors name the options that resolve a conflict.

    Returns
    -------
    list of ScenePlan
        In the order of ``scenes``, for :func:`finish_scenes`.

    Raises
    ------
    ValueError
        For a name that is not a plain file name, an output path that is not a file, or
        (without ``overwrite``) an output of another job or of none, naming the file and
        the differences.
    """
    out_dir = Path(out_dir)
    # Every path first: a bad name stops the run before any graph is built.
    paths = {name: (output_path(out_dir, name, _COG_SUFFIX),
                    output_path(out_dir, name, _QUICKLOOK_SUFFIX) if quicklooks else None) for name in scenes}
    plans = []
    for name, scene in scenes.items():
        cog, png = paths[name]
        for p in (cog, png):
            if p is not None and (p.exists() or p.is_symlink()) and not p.is_file():
                raise ValueError(f"{p} exists and is not a file; move it away or choose another "
                                 f"{option_names.out}")
        # Lazy: builds the graph and its attributes (bands used, model weights), reads no pixel.
        mask = cloudmask(scene, model, threshold=threshold, **kwargs)
        plan = ScenePlan(name, scene, mask, mask_job(mask, scene, **kwargs), cog, png, overwrite)
        if not overwrite:
            _refuse_other_jobs(plan, option_names)
            if cog.is_file():
                plan.todo = "quicklook" if png is not None and not png.is_file() else "done"
        plans.append(plan)
    return plans


def _refuse_other_jobs(plan: ScenePlan, option_names: OptionNames) -> None:
    for path, stored_job in ((plan.cog, cog_job), (plan.quicklook, quicklook_job)):
        if path is None or not path.is_file():
            continue
        stored = stored_job(path)
        if stored is None:
            raise ValueError(f"{path} exists but records no sensei_xr job (another program's file, or an "
                             f"older version's); {option_names.fix()}")
        diff = job_differences(stored, plan.job)
        if diff:
            raise ValueError(f"{path} exists and was made by another job: {'; '.join(diff)}; "
                             f"{option_names.fix()}")


def _remove(paths: Sequence[Path]) -> None:
    """Remove a failed scene's outputs (the writers remove their own temporary files)."""
    for p in paths:
        p.unlink(missing_ok=True)


def _write_quicklook(plan: ScenePlan, mask) -> None:
    from ..quicklook import write_quicklook

    write_quicklook(plan.scene, mask, plan.quicklook, title=plan.name,
                    metadata={JOB_TAG: json.dumps(plan.job, sort_keys=True)})


def _read_cog(plan: ScenePlan):
    """The plan's complete COG as a mask on the scene's coordinates, with this job's attributes."""
    import rioxarray

    with rioxarray.open_rasterio(plan.cog, masked=False) as cog:
        mask = cog.isel(band=0, drop=True).load()
    # The job's grid matched, so the scene's own coordinates fit pixel for pixel.
    mask = mask.assign_coords(y=plan.scene["y"].values, x=plan.scene["x"].values)
    mask.attrs = dict(plan.mask.attrs)
    return mask


def finish_scene(plan: ScenePlan) -> SceneResult:
    """Do what a planned scene still needs: mask it and write its COG (and quicklook), write
    only its quicklook, or nothing.

    If writing fails the scene's outputs are removed (a COG without its quicklook must not
    look finished), except a COG that appeared after planning: another run's, not ours.
    """
    shape = tuple(int(plan.mask.sizes[d]) for d in plan.mask.dims[-2:])
    if plan.todo == "done":
        return SceneResult(plan.name, "done earlier", plan.outputs, plan.n_bands, shape)
    if plan.todo == "quicklook":
        mask = _read_cog(plan)
        try:
            _write_quicklook(plan, mask)
        except BaseException:
            _remove([plan.quicklook])
            raise
        return SceneResult(plan.name, "quicklook added", plan.outputs, plan.n_bands, shape,
                           cloud_fraction(mask.values))
    # Computed once: the COG, the quicklook and the cloud fraction share it. A few blocks
    # at a time, so what Dask holds follows the chunk size, not the scene's width.
    mask = with_job(compute_by_blocks(plan.mask), plan.job)
    try:
        write_mask_cog(mask, plan.cog, overwrite=plan.overwrite)
        if plan.quicklook is not None:
            _write_quicklook(plan, mask)
    except FileExistsError:
        raise
    except BaseException:
        _remove(plan.outputs)
        raise
    return SceneResult(plan.name, "masked", plan.outputs, plan.n_bands, shape, cloud_fraction(mask.values))


def finish_scenes(plans: Sequence[ScenePlan], *, progress: bool = True,
                  on_result: Callable[[SceneResult], None] | None = None) -> list[SceneResult]:
    """:func:`finish_scene` for each plan (from :func:`plan_scenes`) in turn, creating the
    output folders; ``on_result`` is called with each :class:`SceneResult` as it comes,
    ``progress`` shows a tqdm bar. Stops at the first failure (that scene's outputs
    removed); a rerun of the same job finishes the rest."""
    for folder in sorted({p.cog.parent for p in plans}):
        folder.mkdir(parents=True, exist_ok=True)
    results = []
    for plan in _progress(plans, len(plans), "masking", progress):
        results.append(finish_scene(plan))
        if on_result is not None:
            on_result(results[-1])
    return results


def mask_scenes_to_cogs(
    scenes: Mapping[str, "xarray.DataArray"],  # noqa: F821
    out_dir: str | PathLike,
    *,
    model="default",
    threshold: float = 0.5,
    progress: bool = True,
    overwrite: bool = False,
    quicklooks: bool = False,
    **kwargs,
) -> dict[str, Path]:
    """Mask each scene and write ``<out_dir>/<name>_cloudmask.tif``, skipping finished ones.

    A COG that exists is reused only when it was written by the same job (same model
    weights, bands, threshold, arguments and grid; :func:`mask_job`); otherwise the run is
    refused before anything is computed. :func:`plan_scenes` then :func:`finish_scenes`.

    Parameters
    ----------
    scenes, out_dir, model, threshold, quicklooks, overwrite, **kwargs
        As :func:`plan_scenes` (``quicklooks``: also ``<name>_quicklook.png``).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    dict
        Scene name -> COG path (existing and new).

    Raises
    ------
    ValueError
        As :func:`plan_scenes`: a name that is not a plain file name, or an output written
        by another job (the message names the differences).
    """
    plans = plan_scenes(scenes, out_dir, model=model, threshold=threshold, quicklooks=quicklooks,
                        overwrite=overwrite, **kwargs)
    finish_scenes(plans, progress=progress)
    return {p.name: p.cog for p in plans}


# ------------------------------------------------------------------------------- Zarr


@dataclass
class StackPlan:
    """One time stack and its store: the lazy mask, its job and the store's ``state``
    (``"new"``, ``"resume"`` or ``"complete"``); made by :func:`plan_stack`."""

    stack: Any
    store: Path
    mask: Any
    job: dict
    state: str
    overwrite: bool = False

    @property
    def n_bands(self) -> int:
        return _n_bands(self.mask, self.stack)


def plan_stack(
    stack: "xarray.DataArray",  # noqa: F821
    store: str | PathLike,
    *,
    model="default",
    threshold: float = 0.5,
    overwrite: bool = False,
    option_names: OptionNames = _STORE_NAMES,
    **kwargs,
) -> StackPlan:
    """Build the stack's lazy mask and decide what its store still needs; nothing is
    computed or written (with ``overwrite`` the store is replaced by :func:`finish_stack`).
    Parameters and errors as :func:`mask_stack_to_zarr`; ``option_names`` as
    :func:`plan_scenes`."""
    if "time" not in stack.dims:
        raise ValueError(f"a stack to mask into Zarr needs a 'time' dim; got {stack.dims}")
    store = Path(store)
    mask = cloudmask(stack, model, threshold=threshold, **kwargs)
    job = mask_job(mask, stack, **kwargs)
    state = "new" if overwrite else zarr_store_state(store, stack, job=job, option_names=option_names)
    return StackPlan(stack, store, mask, job, state, overwrite)


def _zarr_dataset(mask, job: dict):
    """The mask as the Dataset to store: one chunk per time step, plain attributes."""
    ds = mask.chunk({"time": 1}).to_dataset(name="cloudmask")
    # stackstac carries per-item metadata (sets, dicts) as coordinates: Zarr cannot store
    # arbitrary Python objects, so keep only coordinates of plain array types.
    ds = ds.drop_vars([c for c in ds.coords if c not in ds.dims and ds[c].dtype == object])
    # Zarr encodes attrs as JSON: keep them plain.
    ds["cloudmask"].attrs = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in mask.attrs.items()}
    ds["cloudmask"].attrs[JOB_TAG] = json.dumps(job, sort_keys=True)
    ds["cloudmask"].encoding = {"_FillValue": np.uint8(255)}
    ds["cloudmask"].attrs.pop("_FillValue", None)
    ds.attrs[STATUS_TAG] = _status_text(0, ds.sizes["time"])
    return ds


def _status_text(done: int, total: int) -> str:
    if done >= total:
        return "complete"
    return (f"incomplete: {done} of {total} time steps written (the others read as 255, no data); "
            "run the same sensei_xr job again to finish it")


def _write_status(store: Path, done: int, total: int) -> None:
    """The store's own attribute saying whether it is finished, for any Zarr reader (the
    done-file is this module's); consolidated again, since readers trust that copy."""
    import zarr

    group = zarr.open_group(store, mode="r+")
    text = _status_text(done, total)
    if group.attrs.get(STATUS_TAG) != text:  # a finished store is not touched again
        group.attrs[STATUS_TAG] = text
        with warnings.catch_warnings():
            # Zarr 3 notes that consolidated metadata is outside its spec (xarray writes and
            # reads it anyway), and that our done-file is not a Zarr node: both known.
            warnings.filterwarnings("ignore", message=".*(Consolidated metadata|not recognized as a component).*")
            zarr.consolidate_metadata(store)


def _remove_store(store: Path) -> None:
    if store.is_dir() and not store.is_symlink():
        shutil.rmtree(store)
    elif store.exists() or store.is_symlink():
        store.unlink()


def finish_stack(plan: StackPlan, *, progress: bool = True) -> "xarray.Dataset":  # noqa: F821
    """Write the time steps its store still lacks, one region each, and return the store
    opened lazily (uint8, 255 = no data). A step is recorded as done only once written, so
    a run that stops (a failure, a kill) is finished by running it again."""
    import xarray as xr
    import zarr

    store, job = plan.store, plan.job
    done_file = store / _DONE
    if plan.overwrite:
        _remove_store(store)
    ds = _zarr_dataset(plan.mask, job)
    if plan.state == "new":
        _create_store(ds, store, job)
    elif not done_file.is_file():
        # Killed between the store's creation and its done-file (sensei_xr 0.1 created
        # them in that order): the metadata is there, no region is recorded as done.
        _write_done(done_file, [], job)
    record = json.loads(done_file.read_text())
    if "job" not in record:
        _write_done(done_file, record["time_indices"], job)  # an older done-file: add the job
    done = set(record["time_indices"])
    todo = [t for t in range(plan.stack.sizes["time"]) if t not in done]
    stored = zarr.open_group(store, mode="r+")["cloudmask"]
    for t in _progress(todo, len(todo), "masking", progress):
        region = ds.isel(time=slice(t, t + 1))
        region = region.drop_vars([v for v in region.coords if "time" not in region[v].dims])
        # The mask's blocks go straight into the store, a few at a time: memory follows the
        # chunk size, not the scene's. Then the step's own coordinates (ids, dates).
        store_by_blocks(region["cloudmask"], stored, region=(slice(t, t + 1),) + (slice(None),) * (stored.ndim - 1))
        region.drop_vars("cloudmask").to_zarr(store, region={"time": slice(t, t + 1)})
        done.add(t)
        _write_done(done_file, sorted(done), job)
        _write_status(store, len(done), plan.stack.sizes["time"])
    if not todo:  # e.g. a store written before the status existed
        _write_status(store, len(done), plan.stack.sizes["time"])
    # Undecoded, so the mask reads back as the uint8 it was (255 = no data), not as floats.
    return xr.open_zarr(store, mask_and_scale=False)


def mask_stack_to_zarr(
    stack: "xarray.DataArray",  # noqa: F821
    store: str | PathLike,
    *,
    model="default",
    threshold: float = 0.5,
    progress: bool = True,
    overwrite: bool = False,
    **kwargs,
) -> "xarray.Dataset":  # noqa: F821
    """Mask a (time, band, y, x) stack into a Zarr store, one time step per region.

    A rerun finishes an unfinished store of the same job (stack and :func:`mask_job`),
    also one killed before its done-file was written; another job's store is refused.
    :func:`plan_stack` then :func:`finish_stack`.

    Parameters
    ----------
    stack : xarray.DataArray
        (time, band, y, x) stack of scenes.
    store : path-like
        Zarr directory; created on the first run, completed on later runs.
    model, threshold, **kwargs
        As :func:`sensei_xr.inference.cloudmask`.
    progress : bool
    overwrite : bool
        Replace whatever is at ``store`` (recompute every time step).

    Returns
    -------
    xarray.Dataset
        The store, opened lazily (uint8 masks, 255 = no data).

    Raises
    ------
    ValueError
        Without ``overwrite``, as :func:`zarr_store_state`.
    """
    plan = plan_stack(stack, store, model=model, threshold=threshold, overwrite=overwrite, **kwargs)
    return finish_stack(plan, progress=progress)


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
                     job: Mapping[str, Any] | None = None, *,
                     option_names: OptionNames = _STORE_NAMES) -> str:
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
    option_names : OptionNames
        How the errors name the options that resolve a conflict.

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
    fix = option_names.fix()
    if not store.is_dir():
        raise ValueError(f"{store} exists and is not a sensei_xr Zarr store; {fix}")
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
                         f"({type(e).__name__}: {e}); {fix}") from e
    if not same:
        raise ValueError(f"{store} exists and holds a different stack (other scenes, times or grid); {fix}")
    if job is not None:
        if stored is None:
            raise ValueError(f"{store} records no job (threshold, model, bands), so finishing it could "
                             f"mix two jobs; {fix}")
        wanted = {k: v for k, v in job.items() if k in stored} if "version" not in stored else job
        diff = job_differences(stored, wanted)
        if diff:
            raise ValueError(f"{store} was made by another job: {'; '.join(diff)}; finishing it would "
                             f"mix the two in one store: {fix}")
    return "complete" if len(done) >= stack.sizes["time"] else "resume"


def _write_done(path: Path, indices: list[int], job: Mapping[str, Any] | None = None) -> None:
    tmp = path.with_name(path.name + ".partial")
    record = {"time_indices": indices}
    if job is not None:
        record["job"] = dict(job)
    tmp.write_text(json.dumps(record, sort_keys=True))
    os.replace(tmp, path)
