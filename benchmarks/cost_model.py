"""The cost of masking one year of global Sentinel-2 L1C, from the measured benchmarks.

    python -m benchmarks.cost_model --speed results/speed/speed.json --scale results/scale/scale.json \
        --gpu results/speed/gpu.json

Reads ``speed.json`` (CPU-time rates, FLOPs, GPU section), ``scale.json`` (worker
memory) and, where present, ``gpu.json`` (the GPU section of a run of ``bench_speed``'s
GPU part on a GPU machine; it replaces the CPU run's unmeasured one) and prints the cost model of ``docs/benchmarks.md`` as markdown. Every assumption
is a named constant below; the archive size is approximate and the results scale linearly
with it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from benchmarks.bench_inference import accessor_patches
from benchmarks.common import GPU_PEAK_TFLOPS, S2_TILE_MP, S2_TILE_PIXELS, md_table

#: Land and coastal MGRS tiles Sentinel-2 acquires (about 150 million km2 of land, islands
#: and coastal waters over 100 x 100 km of new ground per 110 x 110 km tile): approximate.
TILES = 18_000
#: Mean days between acquisitions of a tile: 5 at the equator with two satellites, less at
#: higher latitudes where orbits overlap. Approximate.
MEAN_REVISIT_DAYS = 4.0
TILES_PER_YEAR = TILES * 365 / MEAN_REVISIT_DAYS
#: Chunk side (px) assumed for production: halo overhead small, memory moderate.
PROD_CHUNK = 2048
#: GPU utilisations assumed between the FLOP bound and reality (not measured).
ASSUMED_UTILISATIONS = (0.10, 0.01)
HOURS_PER_YEAR = 365 * 24


def cost_model(speed: dict, scale: dict | None, gpu: dict | None = None) -> dict:
    """The numbers of the cost model (see the module docstring); ``gpu`` replaces
    ``speed["gpu"]`` (the CPU machine's run has none measured)."""
    s = speed["settings"]
    patch, overlap = s["patch"], s["overlap"]
    n13 = "13"
    patch_mp = patch * patch / 1e6
    tile_patches = accessor_patches((S2_TILE_PIXELS, S2_TILE_PIXELS), PROD_CHUNK, patch, overlap)
    gflop_tile = speed["flops"]["gflop_per_mp_network_input"][n13] * patch_mp * tile_patches
    mp_year = TILES_PER_YEAR * S2_TILE_MP
    # Measured CPU cost per patch the accessor runs (its chunking differs from production's).
    size = speed["scene"]["size_px"]
    scene_patches = accessor_patches((size, size), s["chunk"], patch, overlap)
    cpu = speed["ms_per_mp"]["cpu"]
    acc_ms_patch = cpu["accessor"][n13] * speed["scene"]["megapixels"] / scene_patches
    net_ms_patch = cpu["model"][n13] * patch_mp  # non-overlapping patches: ms per patch
    cpu_tile_s = acc_ms_patch * tile_patches / 1e3
    host_tile_s = max(acc_ms_patch - net_ms_patch, 0.0) * tile_patches / 1e3  # non-network work
    gpu = gpu if gpu is not None else speed["gpu"]
    peak = GPU_PEAK_TFLOPS[(gpu["flop_bound"] or {}).get("gpu", "H200")]
    at_peak_h = TILES_PER_YEAR * gflop_tile / (peak * 1e3) / 3600
    out = {
        "tiles_per_year": TILES_PER_YEAR, "megapixels_per_year": mp_year,
        "patches_per_tile": tile_patches, "tflop_per_tile": gflop_tile / 1e3,
        "pflop_per_year": TILES_PER_YEAR * gflop_tile / 1e6,
        "gpu": (gpu["flop_bound"] or {}).get("gpu", "H200"), "gpu_peak_tflops": peak,
        "gpu_hours_at_flop_bound": at_peak_h,
        "gpu_hours_at_assumed_utilisation": {str(u): at_peak_h / u for u in ASSUMED_UTILISATIONS},
        "gpu_hours_measured": (TILES_PER_YEAR * gpu["full_tile_seconds"] / 3600) if gpu.get("measured") else None,
        "gpu_measured_on": gpu.get("device") if gpu.get("measured") else None,
        "gpu_full_tile_seconds": gpu.get("full_tile_seconds") if gpu.get("measured") else None,
        "cpu_accessor_ms_per_patch": acc_ms_patch, "cpu_network_ms_per_patch": net_ms_patch,
        "cpu_core_seconds_per_tile": cpu_tile_s,
        "cpu_core_hours_per_year": TILES_PER_YEAR * cpu_tile_s / 3600,
        "cpu_cores_to_keep_up": TILES_PER_YEAR * cpu_tile_s / 3600 / HOURS_PER_YEAR,
        "host_core_seconds_per_tile_besides_network": host_tile_s,
        "host_core_hours_per_year_besides_network": TILES_PER_YEAR * host_tile_s / 3600,
    }
    if scale is not None:
        # The same cost per patch measured on a lazy scene through a 1-worker LocalCluster.
        scale_ms_patch = scale["median_cpu_seconds"]["accessor_1_workers"] * 1e3 / scale["patches_accessor"]
        out["cpu_accessor_ms_per_patch_dask_cluster"] = scale_ms_patch
        out["cpu_core_hours_per_year_dask_cluster"] = TILES_PER_YEAR * scale_ms_patch * tile_patches / 1e3 / 3600
        out["worker_peak_rss_mib_measured"] = scale["peak_rss_mib_per_worker"]
        out["scale_chunk_px"] = scale["scene"]["chunk_px"]
        halo = scale["settings"]["halo_px"]
        out["halo_area_factor_prod_over_measured"] = ((PROD_CHUNK + 2 * halo) / (out["scale_chunk_px"] + 2 * halo)) ** 2
    return out


def markdown(c: dict) -> str:
    """The cost model as markdown."""
    u = c["gpu_hours_at_assumed_utilisation"]
    rows = [
        ["tiles per year (assumed)", f"{c['tiles_per_year']:.3g} ({TILES} tiles / {MEAN_REVISIT_DAYS:g} days)"],
        ["megapixels per year", f"{c['megapixels_per_year']:.3g}"],
        [f"patches per tile ({PROD_CHUNK}-px chunks)", c["patches_per_tile"]],
        ["network FLOPs per tile (counted)", f"{c['tflop_per_tile']:.1f} TFLOP"],
        ["network FLOPs per year", f"{c['pflop_per_year'] / 1e3:.3g} EFLOP"],
        [f"GPU-hours at the FLOP bound ({c['gpu']}, {c['gpu_peak_tflops']:.0f} TFLOP/s) - estimate",
         f"{c['gpu_hours_at_flop_bound']:.0f}"],
        *[[f"GPU-hours at {float(k):.0%} of that peak - assumption", f"{v:.0f}"] for k, v in u.items()],
        ["GPU-hours at a measured GPU rate",
         f"{c['gpu_hours_measured']:.0f} ({c['gpu_measured_on']}: {c['gpu_full_tile_seconds']:.1f} s per tile "
         "through the accessor, warm)" if c["gpu_hours_measured"] else "not measured: no GPU"],
        ["CPU: accessor, ms per patch (measured, 1 thread)", f"{c['cpu_accessor_ms_per_patch']:.0f}"],
        ["CPU: network alone, ms per patch (measured)", f"{c['cpu_network_ms_per_patch']:.0f}"],
        ["CPU core-seconds per tile (projected)", f"{c['cpu_core_seconds_per_tile']:.0f}"],
        ["CPU core-hours per year (projected)", f"{c['cpu_core_hours_per_year']:.3g}"],
        ["CPU cores busy all year to keep up", f"{c['cpu_cores_to_keep_up']:.0f}"],
    ]
    if "cpu_accessor_ms_per_patch_dask_cluster" in c:
        rows += [
            ["CPU: accessor on a lazy scene, 1-worker LocalCluster, ms per patch (bench_scale)",
             f"{c['cpu_accessor_ms_per_patch_dask_cluster']:.0f}"],
            ["CPU core-hours per year at that cost (projected)", f"{c['cpu_core_hours_per_year_dask_cluster']:.3g}"],
        ]
    rows += [
        ["host core-seconds per tile besides the network (projected)",
         f"{c['host_core_seconds_per_tile_besides_network']:.0f}"],
    ]
    return md_table(["quantity", "value"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speed", type=Path, default=Path("results/speed/speed.json"))
    p.add_argument("--scale", type=Path, default=Path("results/scale/scale.json"))
    p.add_argument("--gpu", type=Path, default=Path("results/speed/gpu.json"),
                   help="GPU measurements (used where present)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = p.parse_args(argv)
    scale = json.loads(args.scale.read_text()) if args.scale.exists() else None
    gpu = json.loads(args.gpu.read_text())["gpu"] if args.gpu.exists() else None
    c = cost_model(json.loads(args.speed.read_text()), scale, gpu)
    print(markdown(c))
    if args.json is not None:
        args.json.write_text(json.dumps(c, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
