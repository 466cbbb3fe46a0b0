"""Dask inference overhead and memory: the accessor against the raw model.

    python -m benchmarks.bench_inference --size 1024 --repeats 3
    python -m benchmarks.bench_inference --large 10980 --chunk 1024   # peak memory

Prints, for a real 13-band Sentinel-2 scene (the eo-learn reference scene tiled up to
``--size`` pixels), the median ms per megapixel of ``cloud_probability().compute()`` and of
the raw folded model on the same pixels (same patch grid, no Dask), and their ratio (the
cost of the halo, blending and Dask). With ``--large N`` it masks a lazy N x N x 13 Zarr-
backed scene chunk by chunk into a Zarr store and prints the process's peak RSS next to
the scene's and one chunk's size. Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

import sensei_xr
from sensei_xr.sample_data import data_dir

S2_NAMES = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def s2_scene(size: int) -> xr.DataArray:
    """The real 13-band scene, mirrored up to size x size (reflectance)."""
    ref = np.load(data_dir() / "s2_l1c_eolearn" / "REFERENCE_SCENES.npy")[0]  # (101, 100, 13)
    img = np.moveaxis(ref, -1, 0)
    reps = (1, -(-size // img.shape[1]), -(-size // img.shape[2]))
    tiles = np.tile(np.concatenate([img, img[:, ::-1]], axis=1), (1, reps[1], reps[2]))
    img = np.ascontiguousarray(tiles[:, :size, :size]).astype(np.float32)
    da = xr.DataArray(img, dims=("band", "y", "x"), coords={"band": S2_NAMES,
                      "y": 5e6 - 10.0 * np.arange(size), "x": 5e5 + 10.0 * np.arange(size)})
    return sensei_xr.attach_wavelengths(da, "sentinel2_msi").rio.write_crs("EPSG:32633")


def raw_model_ms_per_mp(model, scene: xr.DataArray, patch: int, overlap: int) -> float:
    """The folded model over the scene's patch grid, no Dask, no blending (ms / MP)."""
    import torch

    from sensei_xr.bands import band_descriptors, to_model_input

    desc = band_descriptors(scene)
    net = model.for_bands(torch.from_numpy(desc.normalised())).eval()
    x = torch.from_numpy(to_model_input(scene.values, desc))
    stride = patch - overlap
    n = x.shape[-1]
    starts = list(range(0, max(n - patch, 0) + 1, stride))
    t = time.perf_counter()
    with torch.inference_mode():
        batch = []
        for a in starts:
            for b in starts:
                batch.append(x[:, a:a + patch, b:b + patch])
                if len(batch) == 8:
                    net(torch.stack(batch))
                    batch = []
        if batch:
            net(torch.stack(batch))
    return (time.perf_counter() - t) * 1000 / (n * n / 1e6)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--overlap", type=int, default=64)
    p.add_argument("--chunk", type=int, default=1024)
    p.add_argument("--large", type=int, default=0, help="also mask a lazy N x N x 13 Zarr scene")
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
        import dask.array as dsa

        with tempfile.TemporaryDirectory() as tmp:
            n = args.large
            src = Path(tmp) / "scene.zarr"
            tile = s2_scene(args.chunk).values
            arr = dsa.tile(dsa.from_array(tile, chunks=(13, args.chunk, args.chunk)), (1, -(-n // args.chunk), -(-n // args.chunk)))[:, :n, :n]
            arr.rechunk((13, args.chunk, args.chunk)).to_zarr(str(src))
            big = xr.DataArray(dsa.from_zarr(str(src)), dims=("band", "y", "x"),
                               coords={"band": S2_NAMES, "y": 5e6 - 10.0 * np.arange(n), "x": 5e5 + 10.0 * np.arange(n)})
            big = sensei_xr.attach_wavelengths(big, "sentinel2_msi").rio.write_crs("EPSG:32633")
            mask = big.sensei.cloudmask(**kw)
            t = time.perf_counter()
            mask.to_dataset(name="mask").to_zarr(Path(tmp) / "mask.zarr")
            secs = time.perf_counter() - t
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result.update({"large_scene": f"{n}x{n}x13 float32 ({13 * n * n * 4 / 2**30:.1f} GiB)",
                       "large_seconds": secs, "peak_rss_mib": peak_mb,
                       "chunk_mib": 13 * args.chunk ** 2 * 4 / 2**20})
        print(f"large lazy scene {result['large_scene']}: {secs:.0f} s, peak RSS {peak_mb:.0f} MiB "
              f"(one chunk: {result['chunk_mib']:.0f} MiB)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
