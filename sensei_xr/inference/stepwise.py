"""Computing a lazy mask a few blocks at a time, so its memory follows the chunk size.

Computed in one go, a large scene's graph lets Dask read ahead and hold about a row of
blocks (their input chunks, halo strips and fixed-point sums), so the peak grows with the
scene's width (``docs/benchmarks.md``). Here the output blocks are computed a few at a
time, in row-major order. The strips of probability sums a step's patches spill into the
blocks below and to the right are kept until their last use (making them again would run
the patches again). The halo strips cut from the source chunks are kept only when the
next step uses them; the ones a later row needs are cut again from their chunk, read
again then: kept, they were a row of strips (about 40 MiB per 1024 px, 13-band chunk,
440 MiB across a Sentinel-2 tile). A chunk is read about three times at two blocks a
step, four at one (as a neighbour above, as itself, as one below, as a side neighbour),
instead of once: cheap for an in-memory or local source, and the price of a bounded peak
for a remote one.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from .blocks import CARRIED_LAYERS, HALO_CUT

__all__ = ["compute_by_blocks", "store_by_blocks"]


def compute_by_blocks(obj, blocks_per_step: int | None = None):
    """Compute a lazy DataArray ``blocks_per_step`` spatial blocks at a time.

    The result equals ``obj.compute()`` bit for bit (the engine's sums are exact in any
    order); each block's patches run once. The peak memory is that of one step's blocks
    and their neighbours' chunks, plus the small strips kept for later blocks, plus the
    result. To write a result larger than memory, use :func:`store_by_blocks`.

    Parameters
    ----------
    obj : xarray.DataArray
        Spatial dims last (``(..., y, x)``), e.g. from ``da.sensei.cloudmask()``. A
        NumPy-backed array is returned as it is.
    blocks_per_step : int, optional
        Spatial blocks (chunks of the last two dimensions, with everything before them)
        computed together, in row-major order. Default: Dask's number of worker threads,
        so that every core has a block.

    Returns
    -------
    xarray.DataArray
        NumPy-backed, with ``obj``'s coordinates and attributes.

    Notes
    -----
    Under a ``dask.distributed`` client this is ``obj.compute()``: small steps would leave
    a cluster idle, and its workers bound their memory themselves (spilling to disk).
    """
    import dask.array as dsa

    if not isinstance(obj.data, dsa.Array):
        return obj
    out = np.empty(obj.shape, obj.dtype)
    store_by_blocks(obj, out, blocks_per_step)
    return obj.copy(data=out)


def store_by_blocks(obj, target, blocks_per_step: int | None = None, region: tuple | None = None) -> None:
    """Write a lazy DataArray into ``target`` ``blocks_per_step`` spatial blocks at a time.

    Each step's blocks are written as soon as they are computed, so the whole result is
    never in memory: the peak is that of :func:`compute_by_blocks` without the result.

    Parameters
    ----------
    obj : xarray.DataArray
        Spatial dims last (``(..., y, x)``), e.g. from ``da.sensei.cloudmask()``.
    target : array-like
        Anything that takes NumPy-style assignment to a tuple of slices and has ``obj``'s
        shape (or holds ``region`` of that shape): a NumPy array or memmap, a Zarr array.
        Written in the main thread, one block at a time, so it needs no lock.
    blocks_per_step : int, optional
        As :func:`compute_by_blocks`.
    region : tuple of slice, optional
        Where in ``target`` ``obj`` goes, one slice with a step of 1 per dim (as
        xarray's ``to_zarr(region=...)``), e.g. one time step of a (time, y, x) store.

    Raises
    ------
    ValueError
        If ``target`` (or its ``region``) has not ``obj``'s shape, or ``obj`` has no
        spatial dims.

    Notes
    -----
    Under a ``dask.distributed`` client the mask is computed in one go and then written
    (a NumPy target lives in this process, out of the workers' reach).
    """
    import dask.array as dsa
    from dask.base import get_scheduler

    where = "target" if region is None else "target region"
    region = tuple(slice(None) for _ in np.shape(target)) if region is None else tuple(region)
    spans = [s.indices(n) for s, n in zip(region, np.shape(target))]
    shape = tuple(len(range(*span)) for span in spans)
    if len(region) != len(np.shape(target)) or shape != tuple(obj.shape) or any(st != 1 for _, _, st in spans):
        raise ValueError(f"{where} has shape {shape}, the array to store "
                         f"{tuple(obj.shape)}: make the target (or region) with the array's shape, dims in its order")
    offset = [lo for lo, _, _ in spans]
    if not isinstance(obj.data, dsa.Array) or _is_distributed(get_scheduler(collections=[obj.data])):
        target[region] = obj.values
        return
    if obj.ndim < 2:
        raise ValueError(f"store_by_blocks needs spatial dims last, (..., y, x); got dims {obj.dims}")
    if blocks_per_step is None:  # the threaded scheduler's pool size
        import dask
        from dask.system import CPU_COUNT

        blocks_per_step = int(dask.config.get("num_workers", None) or CPU_COUNT)
    if blocks_per_step < 1:
        raise ValueError(f"blocks_per_step must be >= 1, got {blocks_per_step}")
    _compute_in_steps(obj.data, blocks_per_step, target, offset)


def _compute_in_steps(array, blocks_per_step: int, target, offset) -> dict[str, int]:
    """Compute and write ``array`` a step of blocks at a time; returns the most bytes each
    carried layer (:data:`~sensei_xr.inference.blocks.CARRIED_LAYERS`) held between steps."""
    import dask
    from dask.base import get_scheduler
    from dask.core import flatten, get_dependencies
    from dask.optimization import cull

    graph = dict(array.__dask_graph__())
    keys = list(flatten(array.__dask_keys__()))
    spatial = sorted({k[-2:] for k in keys})  # row-major
    steps = [set(spatial[i:i + blocks_per_step]) for i in range(0, len(spatial), blocks_per_step)]
    wanted_by_step = [[k for k in keys if k[-2:] in step] for step in steps]
    # The steps that need each small strip, from the whole graph (an upper bound: a strip
    # kept earlier cuts its own inputs away, never adds a use).
    uses: dict[Hashable, list[int]] = {}
    for s, wanted in enumerate(wanted_by_step):
        for k in cull(graph, wanted)[0]:
            if _carried(k):
                uses.setdefault(k, []).append(s)
    starts = [first + np.cumsum((0,) + c[:-1]) for first, c in zip(offset, array.chunks)]
    get = get_scheduler(collections=[array]) or dask.threaded.get
    kept: dict[Hashable, object] = {}
    most = dict.fromkeys(CARRIED_LAYERS, 0)
    for s, wanted in enumerate(wanted_by_step):
        current = {**graph, **kept}  # kept strips replace the tasks that made them
        needed, _ = cull(current, wanted)
        # Strips later steps need that this step can cut from what it computes anyway.
        extra = [k for k in uses if _kept_after(k, s, uses) and k not in kept and k not in needed
                 and all(d in needed for d in get_dependencies(current, k))]
        extra += [k for k in needed if _carried(k) and _kept_after(k, s, uses) and k not in kept]
        if extra:
            needed, _ = cull(current, wanted + extra)
        values = get(needed, wanted + extra)
        for key, value in zip(wanted, values):
            target[tuple(slice(o[i], o[i] + n) for o, i, n in zip(starts, key[1:], np.shape(value)))] = value
        kept.update(zip(extra, values[len(wanted):]))
        kept = {k: v for k, v in kept.items() if _kept_after(k, s, uses)}
        for layer in most:
            most[layer] = max(most[layer], sum(np.asarray(v).nbytes for k, v in kept.items() if _layer(k) == layer))
    return most


def _is_distributed(get) -> bool:
    owner = getattr(get, "__self__", None)
    return owner is not None and type(owner).__module__.split(".")[0] == "distributed"


def _layer(key) -> str | None:
    """The carried layer a key belongs to, or None."""
    name = key[0] if isinstance(key, tuple) else key
    if isinstance(name, str):
        for layer in CARRIED_LAYERS:
            if name.startswith(layer):
                return layer
    return None


def _carried(key) -> bool:
    return _layer(key) is not None


def _kept_after(key, s: int, uses: dict) -> bool:
    """Whether a carried strip is kept after step ``s``: a spill of sums until its last use,
    a halo strip (cut from a source chunk, cheap to cut again) only for the next step."""
    later = [u for u in uses[key] if u > s]
    if not later:
        return False
    return _layer(key) != HALO_CUT or later[0] == s + 1
