"""Lazy, chunked, seam-free inference on DataArrays with Dask.

The graph has two steps over the underlying Dask array ``(time, band, y, x)``. First each
block gets a halo of ``patch - 1`` pixels plus the no-data fill's reach
(:func:`~sensei_xr.inference.blocks.halo_graph`: strips copied from its neighbours,
mirrored at the scene's edges) and runs the patches of the scene's patch grid whose
origin lies in the block, in forward passes of a fixed batch size: each patch once per
scene, whatever the chunking. A light second step adds to each block the parts of its
neighbours' patches that reach into it and blends them with a smooth window
(:mod:`sensei_xr.inference.tiling`).

The result does not depend on the chunking, bit for bit, with or without no-data: every
patch sees the same pixels (no-data filled from the scene and the patch, never the block)
in a forward pass of the same size. What it does depend on is the device and, on a CPU, torch's thread count
(float rounding, about 1e-6): the synchronous scheduler runs with the caller's setting, the
threaded one and ``dask.distributed`` with ``cores / concurrent tasks`` threads.

The task graph carries a :class:`~sensei_xr.inference.runtime.ModelRef`, and each worker
process loads the model once and folds SEnSeI into the first convolution once per band
set (both caches bounded); ``device="auto"`` and the default batch size are decided there.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np

from .. import bands as _bands
from ..bands import BandDescriptors, BandError
from .blocks import BlockPredictor, blend_graph, halo_graph
from .guards import Guard, guards_for
from .member import member_bands
from .runtime import ModelRef, check_backend, check_device, host_cores
from .tiling import EDGES, FILL_REACH, TilingPlan, halo_for
from ..errors import InferenceError

__all__ = [
    "InferenceError",
    "class_probabilities",
    "NODATA_CLASS",
    "DEFAULT_CHUNK",
]

#: Value of no-data pixels in the uint8 outputs (``cloudmask``, ``classify``).
NODATA_CLASS = 255
#: Chunk size (pixels) used when a NumPy-backed DataArray is given.
DEFAULT_CHUNK = 1024
#: Smallest patch (pixels); smaller scenes are padded to it by edge replication.
MIN_PATCH = 32
#: Largest factors between ``resolution=`` and the scene's pixel size: a coarser working
#: grid loses the clouds' shapes, a finer one multiplies the memory by the factor squared
#: (the paper used 2 both ways).
MAX_COARSEN, MAX_REFINE = 16, 4


# --------------------------------------------------------------------------------------
# Preparing the input
# --------------------------------------------------------------------------------------


# Models loaded to build graphs (their classes, card and band sets; never handed out), by
# name and the weights file's path, mtime and size: a notebook calling the accessor again
# does not rebuild the network each time (0.1 s a call).
_GRAPH_MODELS: "OrderedDict[tuple, object]" = OrderedDict()
_GRAPH_MODELS_SIZE = 4
_GRAPH_MODELS_LOCK = threading.Lock()


def _load_for_graph(name):
    from ..models import load_model
    from ..models.weights import weights_file

    path = weights_file(name)
    try:
        stat = path.stat()
    except OSError:
        return load_model(name)  # it names what is missing
    key = (os.fspath(name), str(path), stat.st_mtime_ns, stat.st_size)
    with _GRAPH_MODELS_LOCK:
        model = _GRAPH_MODELS.get(key)
        if model is not None:
            _GRAPH_MODELS.move_to_end(key)
            return model
    model = load_model(name)
    with _GRAPH_MODELS_LOCK:
        _GRAPH_MODELS[key] = model
        while len(_GRAPH_MODELS) > _GRAPH_MODELS_SIZE:
            _GRAPH_MODELS.popitem(last=False)
    return model


def _resolve_model(model):
    """A loaded model and its picklable reference."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        obj = _load_for_graph(model)
        return obj, ModelRef.for_loaded(obj)
    if not hasattr(model, "classes") or not hasattr(model, "state_dict"):
        raise TypeError(
            f"model must be a registry name, a weights path or a sensei_xr CloudModel, got {type(model).__name__}"
        )
    # By its weights: a loaded model edited in place is not its file's model any more.
    return model, ModelRef.from_model(model)


def _spatial_dims(da) -> tuple[str, str]:
    try:
        return da.rio.y_dim, da.rio.x_dim
    except Exception:
        for y, x in (("y", "x"), ("latitude", "longitude"), ("lat", "lon")):
            if y in da.dims and x in da.dims:
                return y, x
    raise BandError(
        f"cannot find the spatial dims among {tuple(da.dims)}: name them 'y' and 'x' "
        "(da.rename(...)) or set them with da.rio.set_spatial_dims(...)"
    )


def _select_bands(da, bands: Sequence[str] | None, sensor: str | None, band_dim: str):
    if bands is None:
        return da
    names = [str(b) for b in da[band_dim].values.tolist()] if band_dim in da.coords else []
    chosen = []
    sensor_obj = None
    sensor_name = sensor or da.attrs.get("sensor")
    if sensor_name:
        from .. import catalogs

        sensor_obj = catalogs.get_sensor(sensor_name)
    for b in bands:
        if b in names:
            chosen.append(b)
            continue
        if sensor_obj is not None:
            from ..catalogs import UnknownBandError

            try:
                canonical = sensor_obj.band(b)
            except UnknownBandError:
                canonical = None
            if canonical is not None:
                match = [n for n in names if n == canonical.name or n in canonical.aliases]
                if match:
                    chosen.append(match[0])
                    continue
        raise BandError(f"band {b!r} asked for in bands= is not in the scene (bands: {names})")
    return da.sel({band_dim: chosen})


def _canonical(da, band_dim: str):
    """Transpose to (time?, band, y, x); refuse other extra dims."""
    ydim, xdim = _spatial_dims(da)
    extra = [d for d in da.dims if d not in (band_dim, ydim, xdim)]
    if len(extra) > 1:
        raise BandError(
            f"dims {extra} besides ({band_dim}, {ydim}, {xdim}): at most one (e.g. time) is "
            "supported; stack or select the others first"
        )
    order = [*extra, band_dim, ydim, xdim]
    return da.transpose(*order), (extra[0] if extra else None), ydim, xdim


def _declared_nodata(da, nodata):
    if nodata is not None:
        return float(nodata)
    for getter in (lambda: da.rio.nodata, lambda: da.rio.encoded_nodata,
                   lambda: da.attrs.get("_FillValue"), lambda: da.attrs.get("nodata")):
        try:
            v = getter()
        except Exception:
            v = None
        if v is not None and not (isinstance(v, float) and np.isnan(v)):
            return float(v)
    return None


def _merge_small_chunks(chunks: tuple[int, ...], minimum: int) -> tuple[int, ...]:
    """Merge neighbouring chunks until each holds at least ``minimum`` pixels."""
    out: list[int] = []
    for c in chunks:
        if out and out[-1] < minimum:
            out[-1] += c
        else:
            out.append(c)
    if len(out) > 1 and out[-1] < minimum:
        # Pop first: ``out[-2] += out.pop()`` would pick its index before the pop.
        tail = out.pop()
        out[-1] += tail
    return tuple(out)


def _cuda_here() -> bool:
    import torch

    return torch.cuda.is_available()


def _split_for_cores(chunks_y: tuple[int, ...], chunks_x: tuple[int, ...], time_blocks: int, cores: int,
                     minimum: tuple[int, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Spatial chunks with at least ``cores`` blocks where pieces of ``minimum`` pixels allow.

    The largest chunk is halved, rows first, until there are as many blocks as cores or no
    chunk holds twice the minimum. Each patch runs once in any chunking and the result does
    not depend on it; what changes is that each core runs a block of its own with one ONNX
    Runtime thread, instead of one block sharing the cores (its depthwise convolutions
    scale poorly: a 1024 px scene in one chunk took 1.36x the wall time of two on 2 cores).
    """
    ys, xs = list(chunks_y), list(chunks_x)
    while time_blocks * len(ys) * len(xs) < cores:
        for axis, low in ((ys, minimum[0]), (xs, minimum[1])):
            i = max(range(len(axis)), key=axis.__getitem__)
            if axis[i] >= 2 * low:
                axis[i:i + 1] = [axis[i] - axis[i] // 2, axis[i] // 2]
                break
        else:
            break
    return tuple(ys), tuple(xs)


def _check_tiling_args(patch_size, overlap, batch_size, edges: str = "ring") -> None:
    """Refuse tiling arguments that cannot work, naming the argument and the fix."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not is_int(patch_size) or patch_size < MIN_PATCH:
        raise ValueError(f"patch_size must be an integer of at least {MIN_PATCH} pixels (the network "
                         f"works at 1/8 resolution), got {patch_size!r}; the default is 256")
    if not is_int(overlap) or not 0 <= overlap <= patch_size // 2:
        raise ValueError(f"overlap must be an integer in 0..patch_size/2 = 0..{patch_size // 2} "
                         f"pixels, got {overlap!r}")
    if batch_size is not None and (not is_int(batch_size) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if edges not in EDGES:
        raise ValueError(f"edges must be one of {EDGES} (a ring of patches past the scene's edges, or "
                         f"a last patch flush with them), got {edges!r}")


def _is_pointwise(model) -> bool:
    from ..models import PixelNet

    return isinstance(getattr(model, "head", None), PixelNet)  # 1-pixel receptive field


def _trained_without_thermal(model) -> bool:
    """Whether the model's card says it was trained with ``thermal_bands = false`` (for an
    ensemble, any member); a model without a card (never saved) is taken as trained with them."""
    card = getattr(model, "card", None)
    # Cards are free-form beyond their own keys: read only what has the recipe's shape.
    training = card.get("training") if isinstance(card, dict) else None
    if not isinstance(training, dict):
        return False
    members = training.get("members") if isinstance(training.get("members"), list) else []
    recipes = [training.get("recipe")] + [m.get("recipe") for m in members if isinstance(m, dict)]
    return any(isinstance(r, dict) and r.get("thermal_bands") is False for r in recipes)


def _without_unseen_thermal(da, model, desc: BandDescriptors, bands, band_dim: str):
    """A model trained without thermal bands never sees one: with no ``bands=`` they are left
    out (``bands_used`` says so); named in ``bands=`` they are refused."""
    thermal = [n for n, t in zip(desc.names, desc.is_thermal) if t]
    if not thermal or len(thermal) == len(desc) or not _trained_without_thermal(model):
        return da, desc
    if bands is not None:
        raise BandError(
            f"this model was trained without thermal bands (thermal_bands = false in its recipe) "
            f"and has never seen {thermal}; leave them out of bands=[...]"
        )
    keep = [n for n, t in zip(desc.names, desc.is_thermal) if not t]
    return da.sel({band_dim: keep}), desc.select(keep)


def _check_reflective(desc: BandDescriptors) -> None:
    """Refuse a band set without a reflective band: over thermal bands alone the model
    marks clear land as cloud (nothing in its training looks like that)."""
    if "reflective" not in desc.kinds:
        raise BandError(
            f"the bands {list(desc.names)} are all thermal: the model needs reflective bands "
            "(visible to shortwave infrared), at least one and best several, e.g. blue, red and "
            "NIR (B2, B4, B5 on Landsat 8; B02, B04, B08 on Sentinel-2); add them (bands=[...]) "
            "alongside the thermal ones"
        )


def _plan_for(model, shape_yx, patch_size: int, overlap: int, batch_size: int = 1, edges: str = "ring") -> TilingPlan:
    if _is_pointwise(model):
        return TilingPlan(patch=0, stride=1, batch_size=batch_size)
    smallest = min(shape_yx)
    patch = min(patch_size, smallest - smallest % 8)
    if patch < MIN_PATCH:  # class_probabilities pads smaller scenes first
        raise BandError(
            f"the scene is {shape_yx[0]}x{shape_yx[1]} pixels, too small for a patch of at "
            f"least {MIN_PATCH} pixels; pad it or use a pointwise model"
        )
    ov = min(overlap, patch // 2)
    return TilingPlan(patch=patch, stride=patch - ov, batch_size=batch_size, edges=edges)


# --------------------------------------------------------------------------------------
# The graph
# --------------------------------------------------------------------------------------


def class_probabilities(
    da,
    model="default",
    *,
    bands: Sequence[str] | None = None,
    sensor: str | None = None,
    device: str = "auto",
    patch_size: int = 256,
    overlap: int = 64,
    edges: str = "ring",
    batch_size: int | None = None,
    nodata: float | None = None,
    band_dim: str = "band",
    resolution: float | None = None,
    backend: str = "auto",
    refine: bool = True,
):
    """Per-class probabilities, lazily: a float32 DataArray ``(time?, class, y, x)``.

    Parameters
    ----------
    da : xarray.DataArray
        Scene with dims (band, y, x) or (time, band, y, x) in any order; reflectance (0-1)
        for reflective bands and brightness temperature (K) for thermal bands; wavelengths
        on the band coordinate (see :func:`sensei_xr.band_descriptors`). NumPy- or
        Dask-backed.
    model : str, path or CloudModel
        Registry name (``"default"``), weights path, or a loaded model.
    bands : sequence of str, optional
        Subset of bands to use (names or catalog aliases), used as given. By default all
        bands are offered; a model with batch-norm statistics per band set then runs on
        the largest calibrated set found among them when none matches them all (e.g. the
        six reflective bands of a 13-band Sentinel-2 scene), since statistics that fit the
        bands mask better than more bands without them. A model trained without thermal
        bands (``thermal_bands = false``) is never given one: left out by default, refused
        in ``bands``. ``attrs["bands_used"]`` names the bands the model saw.
    sensor : str, optional
        Catalog sensor for band names without wavelengths.
    device : str
        ``"auto"`` (CUDA with half precision when the worker has it, else CPU; decided
        where each block runs, not where the graph is built), ``"cpu"``, ``"cuda"``.
    patch_size, overlap : int
        Patch size and overlap between neighbouring patches, pixels.
    edges : str
        ``"ring"``: patches reach past the scene's edges, so edge pixels are predicted like
        inner ones; ``"flush"``: the last patch ends at the edge, fewer patches (0.51x on a
        1024 px scene, 0.93x on a full Sentinel-2 tile) for edge pixels seen from one
        patch's border (:func:`~sensei_xr.inference.tiling.patch_origins`).
    batch_size : int, optional
        Patches per forward pass; default 1 on CPU (fastest there), 32 on CUDA (decided on
        the worker, with the device). The last pass of a block is padded to this size so
        that results never depend on chunking.
    nodata : float, optional
        Fill value marking no data (besides NaN); default the DataArray's declared nodata.
    band_dim : str
    resolution : float, optional
        Working pixel size in CRS units (m; a scene in a geographic CRS is refused): the
        scene is resampled to it for inference (block mean to coarsen, nearest neighbour to
        refine, by integer factors up to :data:`MAX_COARSEN` and :data:`MAX_REFINE`) and
        the probabilities are brought back to the input grid. The paper found PerúSat-1
        (2.8 m) better at 5.6 m, and SLSTR (500 m) better upsampled to 250 m.
    backend : str
        What runs the network: ``"auto"`` (ONNX Runtime on a CPU when ``onnx`` and
        ``onnxruntime`` are installed, several times faster there; torch on CUDA),
        ``"torch"`` or ``"onnxruntime"``. Probabilities of the two differ by about 1e-5.
    refine : bool
        Refine each patch's cloud probability by its own bands (a guided filter over 129 px
        windows, :mod:`sensei_xr.inference.refine`; +0.9-2.1 points of CV mean OA for
        1.06-1.12x the CPU time, ``docs/model_findings.md``), mix in the model's per-pixel
        member (``attrs["pixel_member"]``), then cap the cloud probability where its snow
        test (:mod:`sensei_xr.spectral.snow`: green, NIR and 1.6 um, or green, red and NIR;
        ``attrs["snow_test"]``) says snow or ice and its warm-surface test
        (:mod:`sensei_xr.spectral.warm`; ``attrs["warm_test"]``) says ground warmer than
        27 C without cirrus. ``False``: the network's probabilities as they are. Pointwise
        models are never refined.

    Returns
    -------
    xarray.DataArray
        Lazy probabilities, NaN at no data, with the input's spatial coordinates and CRS;
        ``attrs["model_weights"]`` says whether the weights are a file's (``"file"``,
        ``model_sha256`` its sha256) or a model object's own (``"in memory"``, the
        sha256 of its state dict).

    Raises
    ------
    BandError
        Bands the model cannot use (no wavelengths, integer DN, thermal bands alone, ...).
    ValueError
        Tiling arguments, ``device`` or ``resolution`` that cannot work.
    """
    import dask.array as dsa
    import xarray as xr

    if resolution is not None:
        return _at_resolution(da, resolution, model=model, bands=bands, sensor=sensor, device=device,
                              patch_size=patch_size, overlap=overlap, edges=edges, batch_size=batch_size,
                              nodata=nodata, band_dim=band_dim, backend=backend, refine=refine)

    _check_tiling_args(patch_size, overlap, batch_size, edges)
    device = check_device(device)
    check_backend(backend, device)
    model_obj, ref = _resolve_model(model)
    da, desc = _prepare_bands(da, model_obj, bands, sensor, band_dim)
    da, time_dim, ydim, xdim = _canonical(da, band_dim)
    data = da.data if isinstance(da.data, dsa.Array) else dsa.from_array(da.data, chunks=DEFAULT_CHUNK)
    if time_dim is None:
        data = data[None]
    probs = _probability_graph(data, model_obj, ref, desc, _declared_nodata(da, nodata), device, patch_size,
                               overlap, batch_size, backend, refine, edges)
    coords = {k: v for k, v in da.coords.items() if set(v.dims) <= {time_dim, ydim, xdim} - {None}}
    dims = ("class", ydim, xdim)
    if time_dim is None:
        probs = probs[0]
    else:
        dims = (time_dim, *dims)
    result = xr.DataArray(probs, dims=dims, coords={**coords, "class": list(model_obj.classes)},
                          name="class_probability")
    result.attrs = _provenance(model_obj, ref, desc, _guards(model_obj, desc, refine), _member(model_obj, desc, refine))
    return _georef(result, da)


def _prepare_bands(da, model, bands, sensor, band_dim: str):
    """The scene's bands the model will see, and their descriptors; refuse what cannot work."""
    if band_dim not in da.dims:
        raise BandError(
            f"the DataArray has no {band_dim!r} dimension (dims: {tuple(da.dims)}); "
            f"rename the spectral dimension to {band_dim!r}"
        )
    da = _select_bands(da, bands, sensor, band_dim)
    desc = _bands.band_descriptors(da, sensor=sensor, band_dim=band_dim)
    da, desc = _without_unseen_thermal(da, model, desc, bands, band_dim)
    if bands is None:
        da, desc = _fixed_bands(da, model, desc, band_dim)
        da, desc = _calibrated_bands(da, model, desc, band_dim)
    _check_band_count(model, desc)
    _check_reflective(desc)
    if np.issubdtype(da.dtype, np.integer) or da.dtype == bool:
        raise BandError(
            f"the scene holds integers ({da.dtype}): the model needs reflectance (0-1) and "
            "brightness temperature (K); convert DN first (sensei_xr.open_scene(..., "
            "calibrate=True), sensei_xr.radiometry, or da * scale + offset)"
        )
    return da, desc


def _probability_graph(data, model, ref, desc: BandDescriptors, fill, device: str, patch_size: int, overlap: int,
                       batch_size: int | None, backend: str = "auto", refine: bool = True, edges: str = "ring"):
    """The lazy (time, class, y, x) probabilities of a (time, band, y, x) Dask array.

    A network with patches takes two steps: each block (with its halo) runs the patches
    whose origin lies in it, once per scene, and returns their weighted probabilities in
    fixed-point sums over its own pixels and the part of the next blocks they reach
    (:func:`~sensei_xr.inference.tiling.predict_patches`); a light second step adds to each
    block what its neighbours above and to the left reached into it, and blends.
    """
    import dask.array as dsa

    ny, nx = data.shape[-2:]
    if not _is_pointwise(model) and min(ny, nx) < MIN_PATCH:
        # A scene smaller than the smallest patch is padded (edge values) and cropped back.
        pad = ((0, 0), (0, 0), (0, max(0, MIN_PATCH - ny)), (0, max(0, MIN_PATCH - nx)))
        data = dsa.pad(data, pad, mode="edge")
    # The batch size only matters on the worker (with the device it picks).
    plan = _plan_for(model, data.shape[-2:], patch_size, overlap, edges=edges)
    halo = _halo(plan, data.shape[-2:])
    data = data.astype(np.float32).rechunk({0: 1, 1: -1})
    if halo[0] or halo[1]:
        data = data.rechunk({2: _merge_small_chunks(data.chunks[2], halo[0]),
                             3: _merge_small_chunks(data.chunks[3], halo[1])})
    if not device.startswith("cuda") and not (device == "auto" and _cuda_here()):  # a GPU takes blocks one by one
        ys, xs = _split_for_cores(data.chunks[2], data.chunks[3], len(data.chunks[0]), host_cores(),
                                  (max(halo[0], 64), max(halo[1], 64)))
        data = data.rechunk({2: ys, 3: xs})
    n_classes = len(model.classes)
    cloud_classes = tuple(model.cloud_class_indices) if refine and not plan.pointwise else None
    fn = BlockPredictor(ref, desc, plan, fill, device, batch_size, data.chunks, halo, n_classes, backend,
                        cloud_classes, _guards(model, desc, refine), _member(model, desc, refine))
    meta = np.array((), np.float32)
    if plan.pointwise:
        out_chunks = (data.chunks[0], (n_classes,), data.chunks[2], data.chunks[3])
        probs = data.map_blocks(fn, chunks=out_chunks, dtype=np.float32, meta=meta)
    else:
        sums = halo_graph(data, halo[0], halo[1]).map_blocks(
            fn, chunks=(data.chunks[0], (n_classes + 1,), fn.extent_rows, fn.extent_cols),
            dtype=np.int64, meta=np.array((), np.int64), token="sensei-predict",
        )
        probs = blend_graph(sums, data.chunks, n_classes)
    return probs[..., :ny, :nx]


def _guards(model, desc: BandDescriptors, refine: bool) -> tuple[Guard, ...]:
    """The model's pixel tests the engine applies after the refinement (``guards_for``);
    none without refinement (pointwise models have none)."""
    if not refine or _is_pointwise(model):
        return ()
    return guards_for(model, desc)


def _member(model, desc: BandDescriptors, refine: bool) -> tuple[tuple[int, ...], float, int] | None:
    """The model's per-pixel member (or fallback) the engine mixes in after the refinement,
    as (band indices, weight, place in the member's chain), or None: none, no refinement,
    a pointwise network, or a scene lacking its regions (``member_bands``)."""
    chosen = member_bands(model, desc) if refine and not _is_pointwise(model) else None
    if chosen is None:
        return None
    depth, bands = chosen
    return bands, model.pixel_member.chain()[depth].weight, depth


def _halo(plan: TilingPlan, shape_yx) -> tuple[int, int]:
    """Halo per spatial axis: the patches' reach, plus the no-data fill's where it fits.

    With the fill's reach too, every pixel a patch sees is filled as on the whole scene.
    An axis shorter than that is one chunk in any chunking (chunks are merged to at least
    the halo), so the patches' reach alone keeps it chunking-invariant.
    """
    reach = halo_for(plan)
    if not reach:
        return (0, 0)
    return tuple(reach + FILL_REACH if n >= reach + FILL_REACH else reach for n in shape_yx)


def _check_resolution(da, resolution, xdim: str) -> tuple[float, float, int]:
    """(native pixel size, resolution / native, integer factor k) of a sane ``resolution=``."""
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float, np.integer, np.floating)) \
            or not np.isfinite(resolution) or resolution <= 0:
        raise ValueError(f"resolution must be a positive pixel size in the scene's CRS units (m), "
                         f"e.g. 60, or None; got {resolution!r}")
    try:
        crs = da.rio.crs
    except Exception:
        crs = None
    if crs is not None and crs.is_geographic:
        raise BandError(
            f"resolution={resolution} is a pixel size in the scene's CRS units, and its CRS "
            f"({crs.to_string()}) is geographic (degrees): reproject the scene to a projected CRS "
            "first (e.g. its UTM zone: da.rio.reproject(da.rio.estimate_utm_crs())), or leave "
            "resolution unset"
        )
    native = abs(float(da[xdim][1] - da[xdim][0])) if da.sizes[xdim] > 1 else None
    if not native:
        raise BandError("resolution= needs a scene with regular x coordinates of at least 2 pixels")
    ratio = float(resolution) / native
    factor = ratio if ratio >= 1 else 1 / ratio
    k = int(round(factor))
    if k < 1 or not np.isclose(factor, k, rtol=1e-3):
        raise BandError(
            f"resolution={resolution} is not an integer multiple or fraction of the scene's "
            f"{native:g} pixel size; choose e.g. {native * 2:g} or {native / 2:g}"
        )
    if (ratio > 1 and k > MAX_COARSEN) or (ratio < 1 and k > MAX_REFINE):
        raise BandError(
            f"resolution={resolution} is {k}x {'coarser' if ratio > 1 else 'finer'} than the "
            f"scene's {native:g} pixel size; the working grid may be at most {MAX_COARSEN}x coarser "
            f"or {MAX_REFINE}x finer (e.g. resolution={native * 2:g} or {native / 2:g}); "
            "resample the scene first for more"
        )
    return native, ratio, k


def _at_resolution(da, resolution: float, **kwargs):
    """Run at a working resolution and return probabilities on the input grid."""
    ydim, xdim = _spatial_dims(da)
    native, ratio, k = _check_resolution(da, resolution, xdim)
    if k == 1:
        return class_probabilities(da, **kwargs)
    fill = _declared_nodata(da, kwargs.get("nodata"))
    if fill is not None:
        da = da.where(da != fill)
    if ratio > 1:
        # Block mean over k x k pixels ("pad" keeps the scene's far edges).
        work = da.coarsen({ydim: k, xdim: k}, boundary="pad").mean()
        work = work.rio.write_crs(da.rio.crs) if da.rio.crs is not None else work
        probs = class_probabilities(work, **kwargs)
        back = probs.reindex({ydim: da[ydim], xdim: da[xdim]}, method="nearest")
        # The block mean skips NaN: put the input's own no-data back.
        band_dim = kwargs.get("band_dim", "band")
        valid = da.notnull().all(band_dim)
        back = back.where(valid).drop_vars("spatial_ref", errors="ignore")
        return _georef(back.assign_attrs(probs.attrs, working_resolution=float(resolution)), da)
    # Finer working grid: nearest neighbour, k x k sub-pixels per pixel.
    offsets = (np.arange(k) - (k - 1) / 2) / k
    step_y = float(da[ydim][1] - da[ydim][0]) if da.sizes[ydim] > 1 else native
    fine_y = (da[ydim].values[:, None] + offsets[None, :] * step_y).ravel()
    fine_x = (da[xdim].values[:, None] + offsets[None, :] * native).ravel()
    work = da.reindex({ydim: fine_y, xdim: fine_x}, method="nearest")
    work = work.rio.write_crs(da.rio.crs) if da.rio.crs is not None else work
    probs = class_probabilities(work, **kwargs)
    back = probs.coarsen({ydim: k, xdim: k}).mean()
    back = back.assign_coords({ydim: da[ydim], xdim: da[xdim]}).drop_vars("spatial_ref", errors="ignore")
    return _georef(back.assign_attrs(probs.attrs, working_resolution=float(resolution)), da)


def _fixed_bands(da, model, desc: BandDescriptors, band_dim: str):
    """A fixed-band model with a ``band_set``: its bands picked from the scene by wavelength."""
    wanted = (getattr(model, "config", {}) or {}).get("band_set")
    if getattr(model, "encoder", None) is not None or wanted is None:
        return da, desc
    from ..spectral.bandsets import BAND_SETS, band_set, region_band

    try:
        band_set(desc, wanted)  # every region there, or an error naming the missing one
    except BandError as e:
        raise BandError(f"this model has no spectral encoder and takes the {wanted} bands: {e}") from None
    names = [region_band(desc, r) for r in BAND_SETS[wanted]]  # in the model's order
    return da.sel({band_dim: names}), desc.select(names)


def _calibrated_bands(da, model, desc: BandDescriptors, band_dim: str):
    """All bands, or the largest band set the model has batch-norm statistics for among them.

    Only when the caller chose no bands: an explicit ``bands=`` is always used as given. The
    result's ``bands_used`` attribute names the bands the model saw.
    """
    subset = getattr(model, "calibrated_subset", lambda d: None)(desc.normalised())
    if subset is None:
        return da, desc
    names = [desc.names[i] for i in subset[1]]
    return da.sel({band_dim: names}), desc.select(names)


def _check_band_count(model, desc: BandDescriptors) -> None:
    if getattr(model, "encoder", None) is None:
        need = (getattr(model, "config", {}) or {}).get("in_bands")
        if need is not None and need != len(desc):
            raise BandError(
                f"this model has no spectral encoder and takes exactly {need} bands "
                f"(got {len(desc)}: {list(desc.names)}); select them with bands=[...] or use "
                "a SEnSeI model"
            )


def _provenance(model, ref: ModelRef, desc: BandDescriptors, guards: tuple[Guard, ...] = (),
                member: tuple[tuple[int, ...], float, int] | None = None) -> dict:
    card = getattr(model, "card", None) or {}
    applied = {g.key: g.describe(desc.names) for g in guards}
    snow_note = applied.get("snow_test", applied.get("nir_snow_test", "none"))
    return {
        "model": str(card.get("name", ref.source)),
        # A file's sha256, or for weights that are no file's (never saved, or edited since
        # loading) the sha256 of the state dict.
        "model_sha256": ref.sha256,
        "model_weights": "in memory" if ref.in_memory else "file",
        "bands_used": ",".join(desc.names),
        "classes": ",".join(model.classes),
        "snow_test": snow_note,
        "warm_test": applied.get("warm_test", "none"),
        "pixel_member": "none" if member is None else
        f"per-pixel MLP on {','.join(desc.names[i] for i in member[0])}, weight {member[1]:g}"
        + (f" (fallback {member[2]}: the scene lacks a region of the member)" if member[2] else ""),
    }


def _georef(result, template):
    try:
        crs = template.rio.crs
    except Exception:
        crs = None
    if crs is not None:
        result = result.rio.write_crs(crs)
        try:
            result = result.rio.write_transform(template.rio.transform())
        except Exception:
            pass
    return result
