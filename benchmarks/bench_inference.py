"""Dask inference overhead and memory: the accessor against the raw model.

    python -m benchmarks.bench_inference --size 1024 --repeats 3
    python -m benchmarks.bench_inference --large 10980 --chunk 1024   # peak memory
    python -m benchmarks.bench_inference --large 6144 --held           # and what Dask holds

Prints, for a real 13-band Sentinel-2 scene (the eo-learn reference scene tiled up to
``--size`` pixels), the median ms per megapixel of ``cloud_probability().compute()`` and of
the raw folded model on the same pixels (same patch grid, no Dask), and their ratio (the
cost of the halo, blending and Dask). With ``--large N`` it masks a lazy N x N x 13
scene chunk by chunk into a Zarr store with Dask's default scheduler and prints the time
and the process's peak RSS next to the scene's and one chunk's size. Numbers only; nothing is asserted.

The scene builders (:func:`s2_scene`, :func:`lazy_s2_scene`) and the raw-model timing
(:func:`folded_input`, :func:`patch_grid_seconds`) are shared with ``bench_speed`` and
``bench_scale``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

import sensei_xr
from sensei_xr.inference import store_by_blocks
from sensei_xr.sample_data import data_dir

S2_NAMES = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
#: Pixel size (m) and CRS given to the synthetic-extent scenes (the source is 10 m UTM 33N).
_PIXEL_M = 10.0
_CRS = "EPSG:32633"


@functools.lru_cache(maxsize=1)
def _period() -> np.ndarray:
    """One period of the tiled scene, (13, 202, 100) float32 TOA reflectance.

    The real 101 x 100 eo-learn scene (date 0) over its vertical mirror image, so that
    tiling it repeats real pixels with a seam only every 100 columns.
    """
    ref = np.load(data_dir() / "s2_l1c_eolearn" / "REFERENCE_SCENES.npy")[0]  # (101, 100, 13)
    img = np.moveaxis(ref, -1, 0)
    return np.ascontiguousarray(np.concatenate([img, img[:, ::-1]], axis=1), dtype=np.float32)


def s2_pixels(rows: slice, cols: slice) -> np.ndarray:
    """Pixels ``[rows, cols]`` of the infinitely tiled real scene, (13, h, w) float32,
    band-sequential (C order) as rasterio, rioxarray and stackstac give a scene."""
    period = _period()
    r = np.arange(rows.start, rows.stop) % period.shape[1]
    c = np.arange(cols.start, cols.stop) % period.shape[2]
    # Fancy indexing leaves the bands interleaved per pixel (band stride 4 bytes): every
    # band selection then gathers across all 13, which cost the accessor 1.1-1.2x at 13 bands.
    return np.ascontiguousarray(period[:, r[:, None], c[None, :]])


def _as_scene(data, size: int) -> xr.DataArray:
    """Wrap (13, size, size) reflectance in a georeferenced DataArray with wavelengths."""
    da = xr.DataArray(data, dims=("band", "y", "x"), coords={
        "band": S2_NAMES, "y": 5e6 - _PIXEL_M * np.arange(size), "x": 5e5 + _PIXEL_M * np.arange(size)})
    return sensei_xr.attach_wavelengths(da, "sentinel2_msi").rio.write_crs(_CRS)


def s2_scene(size: int) -> xr.DataArray:
    """The real 13-band scene, tiled up to size x size (reflectance, in memory)."""
    return _as_scene(s2_pixels(slice(0, size), slice(0, size)), size)


def lazy_s2_scene(size: int, chunk: int) -> xr.DataArray:
    """The same pixels as :func:`s2_scene`, as a lazy Dask array of ``chunk``-square blocks.

    Each block is cut from the real scene where it is computed (in the worker), so the
    graph stays small however large the scene.
    """
    import dask.array as dsa

    def block(block_info=None) -> np.ndarray:
        (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
        return s2_pixels(slice(r0, r1), slice(c0, c1))

    data = dsa.map_blocks(block, chunks=((13,), *dsa.core.normalize_chunks(chunk, (size, size))),
                          dtype=np.float32, meta=np.array((), np.float32))
    return _as_scene(data, size)


def model_input(scene: xr.DataArray):
    """The scene as the network takes it: (N, H, W) float32 torch tensor."""
    import torch

    from sensei_xr.bands import band_descriptors, to_model_input

    return torch.from_numpy(to_model_input(np.asarray(scene.values), band_descriptors(scene)))


def folded_input(model, scene: xr.DataArray):
    """The model folded for the scene's bands and the scene as model input.

    Returns
    -------
    net : torch.nn.Module
        The folded network (eval mode), mapping (B, N, P, P) to (B, C, P, P) logits.
    x : torch.Tensor
        (N, H, W) float32 model input (:func:`model_input`).
    """
    import torch

    from sensei_xr.bands import band_descriptors

    net = model.for_bands(torch.from_numpy(band_descriptors(scene).normalised())).eval()
    return net, model_input(scene)


def grid_starts(n: int, patch: int, stride: int) -> list[int]:
    """Patch origins (pixels) along one axis of ``n`` pixels, the last one flush with the edge."""
    starts = list(range(0, max(n - patch, 0) + 1, stride))
    if starts[-1] + patch < n:
        starts.append(n - patch)
    return starts


def patch_grid_seconds(net, x, patch: int, stride: int, batch_size: int = 8) -> float:
    """Seconds for ``net`` over every patch of a grid covering ``x`` (no Dask, no blending).

    Parameters
    ----------
    net : torch.nn.Module
        Folded network.
    x : torch.Tensor
        (N, H, W) model input on the network's device (CPU or CUDA).
    patch, stride : int
        Patch side and step between patches, pixels (``stride == patch``: no overlap).
    batch_size : int
        Patches per forward pass.
    """
    import torch

    origins = [(a, b) for a in grid_starts(x.shape[-2], patch, stride)
               for b in grid_starts(x.shape[-1], patch, stride)]
    # On CUDA as the accessor runs it (sensei_xr.inference.runtime): float16 autocast,
    # and the clock stops only when the device has finished.
    t = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=x.is_cuda):
        for i in range(0, len(origins), batch_size):
            net(torch.stack([x[:, a:a + patch, b:b + patch] for a, b in origins[i:i + batch_size]]))
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t


def raw_model_ms_per_mp(model, scene: xr.DataArray, patch: int, overlap: int) -> float:
    """The network as the accessor runs it, over the accessor's patch grid, no Dask, no
    blending (ms / MP)."""
    import torch

    run, x = cpu_runner(model, scene, threads=torch.get_num_threads())
    return accessor_grid_seconds(run, x, patch, patch - overlap) * 1e3 / (x.shape[-2] * x.shape[-1] / 1e6)


def accessor_patches(shape: tuple[int, int], chunk: int, patch: int, overlap: int) -> int:
    """Patches the accessor runs on a ``shape`` scene, whatever the chunking (``chunk`` is
    kept for the callers): each patch of the scene's grid once, the grid reaching past
    the scene's edges (:func:`sensei_xr.inference.tiling.patch_origins`); compare with
    ``len(grid_starts(...)) ** 2``, the grid that stops at the edges."""
    from sensei_xr.inference.tiling import patch_origins

    stride = patch - min(overlap, patch // 2)
    return len(patch_origins(shape[0], patch, stride)) * len(patch_origins(shape[1], patch, stride))


def cpu_runner(model, scene: xr.DataArray, backend: str = "auto", threads: int = 1):
    """The network as the accessor runs it on a CPU (ONNX Runtime by default; see
    :func:`sensei_xr.inference.runtime.get_runner`), and the scene as model input.

    Returns
    -------
    run : callable
        (B, N, P, P) float32 torch batch -> (B, C, P, P) probabilities.
    x : torch.Tensor
        (N, H, W) float32 model input (:func:`model_input`).
    """
    from sensei_xr.bands import band_descriptors
    from sensei_xr.inference.runtime import ModelRef, get_runner

    desc = band_descriptors(scene)
    run = get_runner(ModelRef.for_loaded(model), desc.normalised(), desc.key, "cpu", backend, threads)
    return run, model_input(scene)


def accessor_grid_seconds(run, x, patch: int, stride: int, batch_size: int = 1) -> float:
    """Seconds for ``run`` over the accessor's patch grid of ``x`` (each patch once, the
    grid reaching past the edges into a mirrored border), without Dask or blending."""
    import torch

    from sensei_xr.inference.tiling import patch_origins

    pad = patch - 1
    xp = torch.nn.functional.pad(x[None], (pad, pad, pad, pad), mode="reflect")[0]
    origins = [(a + pad, b + pad) for a in patch_origins(x.shape[-2], patch, stride)
               for b in patch_origins(x.shape[-1], patch, stride)]
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(origins), batch_size):
            run(torch.stack([xp[:, a:a + patch, b:b + patch] for a, b in origins[i:i + batch_size]]))
    return time.perf_counter() - t


class HeldBytes:
    """A Dask local-scheduler callback: the most bytes of task results held at once, by kind.

    After each task it sums ``nbytes`` of the arrays in the scheduler's cache, grouped by
    the task name without its token (``"sensei-halo-cut"``, ``"getitem"``, ...); ``peak`` is
    the largest total and ``at_peak`` its parts. A view counts its base's bytes, so a
    slice and its base both count. What the process holds besides (the model, the
    runtime's arenas, each task's temporaries, memory the allocator keeps) is RSS minus this.
    """

    def __init__(self) -> None:
        self.peak = 0
        self.at_peak: dict[str, int] = {}

    @staticmethod
    def _kind(key) -> str:
        name = key[0] if isinstance(key, tuple) else str(key)
        return name.rsplit("-", 1)[0] if "-" in name else name

    @staticmethod
    def _nbytes(value) -> int:
        if isinstance(value, np.ndarray):
            return value.nbytes
        if isinstance(value, (list, tuple)):
            return sum(HeldBytes._nbytes(v) for v in value)
        return 0

    def callback(self):
        from dask.callbacks import Callback

        def posttask(key, result, dsk, state, worker_id):
            held: dict[str, int] = {}
            for k, v in list(state["cache"].items()):
                kind = self._kind(k)
                held[kind] = held.get(kind, 0) + self._nbytes(v)
            total = sum(held.values())
            if total > self.peak:
                self.peak, self.at_peak = total, held

        return Callback(posttask=posttask)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--large", type=int, default=0, help="also mask a lazy N x N x 13 scene into Zarr")
    p.add_argument("--held", action="store_true",
                   help="with --large: also the most bytes of task results Dask holds at once, by kind")
    p.add_argument("--by-blocks", action="store_true",
                   help="with --large: write the mask into Zarr a few blocks at a time, as sensei-xr mask "
                        "writes its Zarr stores (sensei_xr.inference.store_by_blocks)")
    p.add_argument("--json", help="write results here")
    args = p.parse_args(argv)
    from sensei_xr.models import load_model

    model = load_model(args.model)
    scene = s2_scene(args.size)
    mp = args.size * args.size / 1e6
    kw = dict(model=model, patch_size=args.patch, overlap=args.overlap)
    dask_ms, raw_ms = [], []
    for _ in range(args.repeats):
        lazy = scene.chunk({"y": args.chunk, "x": args.chunk}).sensei.cloud_probability(**kw)
        t = time.perf_counter()
        lazy.compute()
        dask_ms.append((time.perf_counter() - t) * 1000 / mp)
        raw_ms.append(raw_model_ms_per_mp(model, scene, args.patch, args.overlap))
    result = {
        "scene": f"{args.size}x{args.size}x13 (real Sentinel-2 L1C, mirrored)",
        "chunk": args.chunk,
        "patch": args.patch, "overlap": args.overlap,
        "accessor_ms_per_mp_median": statistics.median(dask_ms),
        "raw_model_ms_per_mp_median": statistics.median(raw_ms),
    }
    result["accessor_over_raw"] = result["accessor_ms_per_mp_median"] / result["raw_model_ms_per_mp_median"]
    print(f"accessor (cloud_probability().compute()): {result['accessor_ms_per_mp_median']:.0f} ms/MP "
          f"(median of {args.repeats})")
    print(f"raw folded model, same patch grid:        {result['raw_model_ms_per_mp_median']:.0f} ms/MP")
    print(f"accessor / raw: {result['accessor_over_raw']:.2f}")

    if args.large:
        with tempfile.TemporaryDirectory() as tmp:
            n = args.large
            # Lazy: each block is cut from the real scene where it is computed, so the
            # peak memory is the engine's, not the scene's.
            mask = lazy_s2_scene(n, args.chunk).sensei.cloudmask(**kw)
            held = HeldBytes()
            t = time.perf_counter()
            with held.callback() if args.held else contextlib.nullcontext():
                if args.by_blocks:  # as mask_stack_to_zarr: each step's blocks into the store
                    import zarr

                    mask.to_dataset(name="mask").to_zarr(Path(tmp) / "mask.zarr", compute=False)
                    store_by_blocks(mask, zarr.open_group(Path(tmp) / "mask.zarr", mode="r+")["mask"])
                else:
                    mask.to_dataset(name="mask").to_zarr(Path(tmp) / "mask.zarr")
            secs = time.perf_counter() - t
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result.update({"large_scene": f"{n}x{n}x13 float32 ({13 * n * n * 4 / 2**30:.1f} GiB), lazy",
                       "large_by_blocks": args.by_blocks,
                       "large_seconds": secs, "large_ms_per_mp": secs * 1e3 / (n * n / 1e6),
                       "peak_rss_mib": peak_mb, "chunk_mib": 13 * args.chunk ** 2 * 4 / 2**20})
        print(f"large lazy scene {result['large_scene']}, chunks {args.chunk}"
              f"{', by blocks' if args.by_blocks else ''}: {secs:.0f} s "
              f"({result['large_ms_per_mp']:.0f} ms/MP), peak RSS {peak_mb:.0f} MiB "
              f"(one chunk: {result['chunk_mib']:.0f} MiB)")
        if args.held:
            result["held_peak_mib"] = held.peak / 2**20
            result["held_at_peak_mib"] = {k: v / 2**20 for k, v in sorted(held.at_peak.items(), key=lambda kv: -kv[1])}
            print(f"task results held at once, at most: {result['held_peak_mib']:.0f} MiB ("
                  + ", ".join(f"{k} {v:.0f}" for k, v in result["held_at_peak_mib"].items() if v >= 1) + ")")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
