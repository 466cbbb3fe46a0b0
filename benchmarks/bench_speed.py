"""Inference speed in ms per megapixel: the default model at 3, 8 and 13 bands, raw and
through the accessor, the peer cloud masks on the same scene, FLOPs, and a GPU section.

    python -m benchmarks.bench_speed --out results/speed             # ~10 min on 2 busy cores
    python -m benchmarks.bench_speed --quick --out /tmp/speed        # < 1 min (CI)

The scene is real Sentinel-2 L1C (the 13-band eo-learn reference scene, 101 x 100 pixels
at 10 m) tiled with its mirror image up to ``--size`` pixels square: real pixel values, but
repeated. Band sets: 3 = B02 B03 B04 (RGB), 8 = B01 B02 B03 B04 B08 B10 B11 B12 (the bands
Landsat 8 OLI has), 13 = all.

Variants, timed round by round in turn (interleaved) so that the machine's drifting load
falls on all of them alike; medians over the rounds, ratios as medians of per-round ratios:

- ``model``: the folded network (SEnSeI folded into the first convolution, as inference
  runs it) on non-overlapping 256-pixel patches, batches of 8: the network's own cost;
- ``model_patch_grid``: the same on the accessor's patch grid (256-pixel patches, 64
  overlap), still without Dask or blending;
- ``accessor``: ``da.sensei.cloudmask(...).compute()`` on the in-memory scene in
  ``--chunk``-square chunks, Dask's synchronous scheduler: graph, halo, no-data checks,
  blending and thresholding included (a scene in fewer chunks than the host's cores runs
  as a block per core, here one after another);
- the peers (:mod:`sensei_xr.evaluation.peers`) at 13 bands when they are installed.

All CPU variants run with ``--threads`` torch threads (default 1: on a machine shared with
other jobs, more threads are often slower). FLOPs per megapixel are counted with
``torch.utils.flop_counter.FlopCounterMode``. The GPU section runs only where CUDA is
available; elsewhere it says "not measured: no GPU" and gives the FLOP-based bound for an
assumed GPU, labelled as an estimate. Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from benchmarks.bench_inference import (accessor_grid_seconds, accessor_patches, cpu_runner, folded_input,
                                        grid_starts, lazy_s2_scene, patch_grid_seconds, s2_scene)
from benchmarks.common import (ASSUMED_GPU, S2_TILE_MP, S2_TILE_PIXELS, environment, fresh_memory_probe,
                               gflop_per_mp, gpu_peak_tflops, md_table, median_ratio, write_results)

BAND_SETS: dict[int, list[str]] = {
    3: ["B02", "B03", "B04"],
    8: ["B01", "B02", "B03", "B04", "B08", "B10", "B11", "B12"],
    13: ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"],
}
VARIANTS = ("model", "model_torch", "model_patch_grid", "accessor", "accessor_half_chunk", "accessor_unrefined")


@dataclass(frozen=True)
class Tiling:
    """Patch side and overlap (px) and patches per forward pass; defaults: the accessor's."""

    patch: int = 256
    overlap: int = 64
    batch: int = 1

    @property
    def stride(self) -> int:
        return self.patch - self.overlap


#: ``--quick``: small patches so that CI runs every code path in seconds.
QUICK_TILING = Tiling(patch=64, overlap=16)


def _peer_runners(scene, threads: int) -> tuple[dict[str, Callable[[], object]], str | None]:
    """Callables masking ``scene`` (13 bands, in memory) with each installed peer
    (:mod:`sensei_xr.evaluation.peers`), each choosing its own bands from the 13.

    Returns the runners by peer name and why the others are left out (None if none is).
    """
    try:
        from sensei_xr.evaluation import peers
    except ImportError as e:
        return {}, f"not measured: sensei_xr.evaluation.peers cannot be imported ({e})"
    from sensei_xr.bands import band_descriptors

    image, desc = np.asarray(scene.values), band_descriptors(scene)
    runners: dict[str, Callable[[], object]] = {}
    reasons = []
    for name in peers.list_peers():
        peer = peers.get_peer(name)
        why = peer.unavailable()
        if why:
            reasons.append(f"{name}: {why}")
        else:
            runners[name] = lambda peer=peer: peer.cloud_mask(image, desc, threads=threads)
    return runners, ("; ".join(reasons) or None)


def _accessor_runner(model, scene, chunk: int, tiling: Tiling, refine: bool = True) -> Callable[[], object]:
    import dask

    # Under the synchronous scheduler each task runs with the caller's torch threads
    # (sensei_xr.inference.runtime.torch_threads), which the benchmark set to ``threads``:
    # the accessor uses the same threads as the raw variants. Batch size: the default.

    # The scene arrives chunked, as a lazily opened one does (rioxarray or stackstac with
    # chunks): chunking an in-memory array copies it (dask's from_array), input preparation
    # that cost up to 0.4 s a megapixel at 13 bands on this VM (fresh pages), not the accessor's.
    chunked = scene.chunk({"y": chunk, "x": chunk})

    def run():
        with dask.config.set(scheduler="synchronous"):
            return chunked.sensei.cloudmask(
                model=model, patch_size=tiling.patch, overlap=tiling.overlap, refine=refine).compute()

    return run


def measure_cpu(model, size: int, chunk: int, repeats: int, threads: int, bands: Sequence[int],
                tiling: Tiling, warm_up: bool = True, log=print) -> dict:
    """Interleaved timings of every variant and band set, and of the peers.

    Returns
    -------
    dict
        ``samples``: ms / MP per round by clock (``"cpu"``: this process's CPU time,
        ``"wall"``), variant and band count; ``peers`` measured; ``peers_reason``: why
        the others are not.
    """
    import torch

    scene = s2_scene(size)
    mp = size * size / 1e6
    runs: dict[tuple[str, int], Callable[[], object]] = {}
    for n in bands:
        sub = scene.sel(band=BAND_SETS[n])
        net, x = folded_input(model, sub)
        run, _ = cpu_runner(model, sub, "auto", threads)
        runs[("model", n)] = lambda run=run, x=x: patch_grid_seconds(run, x, tiling.patch, tiling.patch, tiling.batch)
        runs[("model_torch", n)] = lambda net=net, x=x: patch_grid_seconds(
            net, x, tiling.patch, tiling.patch, tiling.batch)
        runs[("model_patch_grid", n)] = lambda run=run, x=x: accessor_grid_seconds(
            run, x, tiling.patch, tiling.stride, tiling.batch)
        runs[("accessor", n)] = _accessor_runner(model, sub, chunk, tiling)
        runs[("accessor_half_chunk", n)] = _accessor_runner(model, sub, chunk // 2, tiling)
        runs[("accessor_unrefined", n)] = _accessor_runner(model, sub, chunk, tiling, refine=False)
    peers, peers_reason = _peer_runners(scene, threads)
    for name, fn in peers.items():
        runs[(name, 13)] = fn
    if warm_up:  # model loads, folds, ONNX exports: once per process, not in the rounds
        torch.set_num_threads(threads)
        for fn in runs.values():
            fn()
    samples: dict[str, dict[str, dict[str, list[float]]]] = {"cpu": {}, "wall": {}}
    for r in range(repeats):
        for (variant, n), fn in runs.items():
            torch.set_num_threads(threads)
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            for clock, secs in (("wall", time.perf_counter() - wall), ("cpu", time.process_time() - cpu)):
                samples[clock].setdefault(variant, {}).setdefault(str(n), []).append(secs * 1e3 / mp)
        log(f"  round {r + 1}/{repeats}, CPU ms/MP: " + ", ".join(
            f"{v}@{n} {samples['cpu'][v][str(n)][-1]:.0f}" for v, n in runs))
    return {"samples": samples, "peers": sorted(peers), "peers_reason": peers_reason}


def measure_defaults(size: int, repeats: int, log=print) -> dict:
    """What a user sees: wall time of ``da.sensei.cloudmask().compute()`` with every default
    (in-memory 13-band scene, default chunks, Dask's threaded scheduler, torch's threads)
    next to each peer with all the cores, interleaved rounds on the same pixels; and the
    same with the patch grid flush with the scene's edges (``edges="flush"``, the one
    speed option that changes the result).

    Returns
    -------
    dict
        ``wall_ms_per_mp`` per round and variant, medians, ``accessor_over_<peer>`` and
        ``accessor_flush_over_<peer>``: medians of per-round ratios.
    """
    import torch

    from benchmarks.common import median_ratio

    cores = torch.get_num_threads()
    scene = s2_scene(size)
    mp = size * size / 1e6
    runs: dict[str, Callable[[], object]] = {"accessor": lambda: scene.sensei.cloudmask().compute(),
                                             "accessor_flush": lambda: scene.sensei.cloudmask(edges="flush").compute()}
    peers, _ = _peer_runners(scene, cores)
    runs.update(peers)
    for fn in runs.values():  # warm-up: model load, fold, export
        fn()
    samples: dict[str, list[float]] = {}
    for r in range(repeats):
        for name, fn in runs.items():
            torch.set_num_threads(cores)
            t = time.perf_counter()
            fn()
            samples.setdefault(name, []).append((time.perf_counter() - t) * 1e3 / mp)
        log(f"  defaults round {r + 1}/{repeats}, wall ms/MP: "
            + ", ".join(f"{k} {v[-1]:.0f}" for k, v in samples.items()))
    return {
        "what": f"{size}x{size}x13 in memory, every default: cloudmask() (default chunks, threaded scheduler, "
                f"{cores} torch threads; it runs on the bands it chooses) and each peer with {cores} threads "
                "on its own bands; wall time",
        "threads": cores,
        "wall_ms_per_mp": samples,
        "median_wall_ms_per_mp": {k: statistics.median(v) for k, v in samples.items()},
        **{f"{a}_over_{p}": median_ratio(samples[a], samples[p]) for a in ("accessor", "accessor_flush")
           for p in peers},
    }


def summarise(samples: dict[str, dict[str, list[float]]], peers: Sequence[str], last: str) -> tuple[dict, dict]:
    """Medians (ms / MP) and ratios (medians of per-round ratios) of one clock's samples."""
    medians = {v: {n: statistics.median(s) for n, s in by_n.items()} for v, by_n in samples.items()}
    per_band = list(medians["model"])

    def paired(a: str, b: str) -> dict[str, float]:
        return {n: median_ratio(samples[a][n], samples[b][n]) for n in per_band}

    ratios = {
        "accessor_over_model": paired("accessor", "model"),
        "accessor_over_model_patch_grid": paired("accessor", "model_patch_grid"),
        "model_patch_grid_over_model": paired("model_patch_grid", "model"),
        "model_torch_over_model": paired("model_torch", "model"),
        "accessor_half_chunk_over_accessor": paired("accessor_half_chunk", "accessor"),
        "accessor_over_accessor_unrefined": paired("accessor", "accessor_unrefined"),
        f"over_{last}_bands": {v: {n: median_ratio(samples[v][n], samples[v][last]) for n in per_band}
                               for v in VARIANTS},
        f"peer_over_accessor_at_{last}_bands": {p: median_ratio(samples[p][last], samples["accessor"][last])
                                                for p in peers},
        f"peer_over_model_at_{last}_bands": {p: median_ratio(samples[p][last], samples["model"][last])
                                             for p in peers},
    }
    return medians, ratios


def patches_per_scene_mp(side: int, variant: str, chunk: int, tiling: Tiling) -> float:
    """Patches a variant runs per megapixel of a ``side``-square scene."""
    if variant in ("model", "model_torch"):
        count = len(grid_starts(side, tiling.patch, tiling.patch)) ** 2
    else:  # the accessor's grid, each patch once in any chunking
        count = accessor_patches((side, side), chunk, tiling.patch, tiling.overlap)
    return count / (side * side / 1e6)


def flop_counts(model, bands: Sequence[int], size: int, chunk: int, tiling: Tiling) -> dict:
    """GFLOP per megapixel of network input, and per megapixel of scene for each variant."""
    import torch

    from sensei_xr.bands import band_descriptors

    p = tiling.patch
    scene = s2_scene(p)
    per_input = {}
    for n in bands:
        net, _ = folded_input(model, scene.sel(band=BAND_SETS[n]))
        per_input[str(n)] = gflop_per_mp(net, n, p)
    desc = torch.from_numpy(band_descriptors(scene).normalised())
    patch_mp = p * p / 1e6
    patches = {v: patches_per_scene_mp(size, v, chunk, tiling) for v in VARIANTS}
    return {
        "counter": "torch.utils.flop_counter.FlopCounterMode: 2 FLOPs per multiply-add of "
                   "convolutions and matrix products; element-wise work not counted",
        "gflop_per_mp_network_input": per_input,
        "gflop_per_mp_network_input_unfolded_13_bands": gflop_per_mp(lambda x: model(x, desc), 13, p),
        "patches_per_scene_mp": patches,
        "gflop_per_scene_mp": {v: {n: g * patches[v] * patch_mp for n, g in per_input.items()} for v in VARIANTS},
    }


def tiling_work(tiling: Tiling, sides: Sequence[int] = (256, 1024, S2_TILE_PIXELS)) -> dict:
    """Patches the accessor runs (each once, in any chunking), over a grid that stops at
    the scene's edges, by scene side."""
    return {str(n): accessor_patches((n, n), n, tiling.patch, tiling.overlap)
            / len(grid_starts(n, tiling.patch, tiling.stride)) ** 2 for n in sides}


def tile_gflop(flops: dict, tiling: Tiling, bands: str, chunk: int = 2048) -> float:
    """GFLOP the accessor spends on a full Sentinel-2 tile at ``chunk``-px chunks."""
    return (flops["gflop_per_mp_network_input"][bands] * tiling.patch ** 2 / 1e6
            * accessor_patches((S2_TILE_PIXELS, S2_TILE_PIXELS), chunk, tiling.patch, tiling.overlap))


def gpu_section(model, gflop_tile: float, gflop_per_mp_13: float, size: int, full_tile: bool,
                chunk: int, repeats: int, tiling: Tiling, log=print) -> dict:
    """Megapixels per second on CUDA, the full-tile time, and the FLOP-based bound.

    Parameters
    ----------
    gflop_tile : float
        GFLOP the accessor spends on one full 10980 x 10980 tile at ``chunk`` (13 bands).
    gflop_per_mp_13 : float
        GFLOP per megapixel of network input at 13 bands.
    size : int
        Side (pixels) of the in-memory scene for the network's throughput.
    full_tile : bool
        Also mask a lazy full tile through the accessor (else project from ``size``).
    """
    import torch

    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ASSUMED_GPU
    entry = gpu_peak_tflops(name)
    bound = None
    if entry is not None:
        key, peak = entry
        bound = {
            "gpu": key, "peak_tflops_fp16_dense": peak,
            "network_mp_per_s_at_peak": peak * 1e3 / gflop_per_mp_13,
            "full_tile_seconds_at_peak": gflop_tile / (peak * 1e3),
        }
    result: dict = {"flop_bound": bound, "flop_bound_label":
                    "estimate from counted FLOPs at the data-sheet peak (dense FP16/BF16 tensor "
                    "cores), not measured; a lower bound on time: depthwise convolutions are "
                    "memory-bound and never run at tensor-core peak"}
    if not torch.cuda.is_available():
        result.update(measured=False, reason="not measured: no GPU (torch.cuda.is_available() is False)")
        return result

    net, x = folded_input(model, s2_scene(size))
    net, x = net.cuda(), x.cuda()
    throughput = {}
    for batch in (8, 32):
        patch_grid_seconds(net, x, tiling.patch, tiling.patch, batch)  # warm-up (cuDNN autotuning)
        secs = statistics.median(patch_grid_seconds(net, x, tiling.patch, tiling.patch, batch)
                                 for _ in range(repeats))
        throughput[str(batch)] = size * size / 1e6 / secs
        log(f"  GPU network, batch {batch}: {throughput[str(batch)]:.0f} MP/s")
    side = S2_TILE_PIXELS if full_tile else size
    # The first pass pays once-per-process costs (model load and fold, CUDA and cuDNN set-up
    # per Dask thread, the caching allocator's growth); a notebook or worker pays them once.
    # The edge refinement (the engine's default) runs on the device too: one pass without it.
    passes = {}
    for label, chunk_side, refine in (("first", chunk, True), ("warm", chunk, True),
                                      ("warm_chunk_2x", 2 * chunk, True), ("warm_unrefined", chunk, False)):
        scene = lazy_s2_scene(side, chunk_side)
        mask = scene.sensei.cloudmask(model=model, device="cuda", batch_size=32, patch_size=tiling.patch,
                                      overlap=tiling.overlap, refine=refine)
        t = time.perf_counter()
        fraction = float((mask == 1).mean().compute())
        passes[label] = {"chunk": chunk_side, "refine": refine, "seconds": time.perf_counter() - t,
                         "cloud_fraction": fraction}
        log(f"  GPU accessor, {label} pass, chunks {chunk_side}: {side * side / 1e6 / passes[label]['seconds']:.1f} MP/s")
    secs, cloud = passes["warm"]["seconds"], passes["warm"]["cloud_fraction"]
    accessor_mp_s = side * side / 1e6 / secs
    result.update(
        measured=True, device=name,
        network_mp_per_s_by_batch=throughput,
        accessor_scene=f"{side}x{side}x13 lazy, chunks {chunk}, batch 32, float16 autocast, second pass",
        accessor_mp_per_s=accessor_mp_s, accessor_cloud_fraction=cloud,
        accessor_passes={k: {**v, "mp_per_s": side * side / 1e6 / v["seconds"]} for k, v in passes.items()},
        full_tile_seconds=secs if full_tile else S2_TILE_MP / accessor_mp_s,
        full_tile_seconds_kind="measured" if full_tile else f"projected from {side}x{side}",
    )
    if bound is not None:
        result["fraction_of_flop_bound"] = bound["full_tile_seconds_at_peak"] / result["full_tile_seconds"]
    log(f"  GPU accessor: {accessor_mp_s:.1f} MP/s, full tile {result['full_tile_seconds']:.1f} s "
        f"({result['full_tile_seconds_kind']})")
    return result


def run_gpu(gpu_size: int, repeats: int, quick: bool = False, log=print) -> dict:
    """The GPU section alone (``--gpu-only``), plus the same mask on CUDA and on CPU.

    Written to ``gpu.json``, which :mod:`benchmarks.cost_model` reads beside ``speed.json``.
    """
    import torch

    from sensei_xr.models import load_model

    if not torch.cuda.is_available():
        raise SystemExit("--gpu-only needs a CUDA device; torch sees none")
    model = load_model("default")
    tiling = QUICK_TILING if quick else Tiling()
    side = 256 if quick else 1024
    # float16 autocast on CUDA against float32 on CPU, on real pixels.
    scene = s2_scene(side).chunk({"band": -1, "y": side // 2, "x": side // 2})
    masks, seconds = {}, {}
    for device in ("cpu", "cuda"):
        t = time.perf_counter()
        masks[device] = scene.sensei.cloudmask(model=model, device=device).compute()
        seconds[device] = time.perf_counter() - t
    agreement = {
        "scene": f"{side}x{side}x13 real Sentinel-2 (tiled), chunks {side // 2}",
        "pixel_agreement": float((masks["cpu"].values == masks["cuda"].values).mean()),
        "cloud_fraction_cpu": float((masks["cpu"] == 1).mean()),
        "cloud_fraction_cuda": float((masks["cuda"] == 1).mean()),
        "crs_kept": str(masks["cuda"].rio.crs) == str(scene.rio.crs),
        "dtype": str(masks["cuda"].dtype),
        "seconds_first_call": seconds,
    }
    log(f"CPU vs CUDA masks: {agreement['pixel_agreement']:.2%} of pixels agree")
    bands = tuple(BAND_SETS)
    last = str(bands[-1])
    flops = flop_counts(model, bands, side, side, tiling)
    gflop_tile = tile_gflop(flops, tiling, last)
    gpu = gpu_section(model, gflop_tile, flops["gflop_per_mp_network_input"][last], gpu_size,
                      not quick, 2048, max(1, repeats), tiling, log)
    return {"benchmark": "speed-gpu", "environment": environment(), "model": model.card.get("name"),
            "cpu_vs_cuda": agreement, "gflop_per_mp_network_input": flops["gflop_per_mp_network_input"],
            "gpu": gpu}


def markdown_gpu(res: dict) -> str:
    """``gpu.json`` as markdown."""
    g, a = res["gpu"], res["cpu_vs_cuda"]
    rows = [[f"network, batch {b}", f"{v:.0f} MP/s"] for b, v in g["network_mp_per_s_by_batch"].items()]
    rows += [[f"accessor, {k} pass, chunks {v['chunk']}", f"{v['mp_per_s']:.1f} MP/s ({v['seconds']:.1f} s)"]
             for k, v in g["accessor_passes"].items()]
    rows += [["full tile through the accessor", f"{g['full_tile_seconds']:.1f} s ({g['full_tile_seconds_kind']})"],
             ["full tile at the FLOP bound (estimate)", f"{g['flop_bound']['full_tile_seconds_at_peak']:.2f} s"],
             ["CUDA (float16) vs CPU (float32) masks", f"{a['pixel_agreement']:.2%} of pixels agree ({a['scene']})"]]
    return (f"# GPU speed ({g['device']}, model {res['model']})\n\n{g['accessor_scene']}.\n\n"
            + md_table(["measurement", "value"], rows))


def run(size: int, chunk: int, repeats: int, threads: int, gpu_size: int, quick: bool = False,
        bands: Sequence[int] = tuple(BAND_SETS), log=print) -> dict:
    """Every measurement of this benchmark, as the JSON written to ``speed.json``."""
    import torch

    from sensei_xr.models import load_model

    default_threads = torch.get_num_threads()  # torch's own choice: what a user runs with
    torch.set_num_threads(threads)
    env_before = environment()
    model = load_model("default")
    log(f"CPU: {size}x{size} scene, {repeats} interleaved rounds, {threads} torch thread(s)")
    tiling = QUICK_TILING if quick else Tiling()
    cpu = measure_cpu(model, size, chunk, repeats, threads, bands, tiling, warm_up=not quick, log=log)
    torch.set_num_threads(default_threads)
    log(f"Defaults: {size}x{size} scene, {repeats} interleaved rounds, {default_threads} threads")
    defaults = measure_defaults(size, repeats, log=log)
    torch.set_num_threads(threads)
    last = str(bands[-1])
    summaries = {clock: summarise(cpu["samples"][clock], cpu["peers"], last) for clock in ("cpu", "wall")}
    medians = summaries["cpu"][0]
    flops = flop_counts(model, bands, size, chunk, tiling)
    flops["achieved_gflop_per_s"] = {
        v: {n: flops["gflop_per_scene_mp"][v][n] / (medians[v][n] / 1e3) for n in medians[v]} for v in VARIANTS}
    work = tiling_work(tiling)
    gflop_tile = tile_gflop(flops, tiling, last)
    log("GPU:")
    gpu = gpu_section(model, gflop_tile, flops["gflop_per_mp_network_input"][last], gpu_size,
                      not quick, 2048, max(1, repeats), tiling, log)
    if not gpu["measured"]:
        log(f"  {gpu['reason']}")
    return {
        "benchmark": "speed",
        "environment": env_before,
        "load_average_after": environment()["load_average_1_5_15min"],
        # After the rounds: the process's memory as the accessor left it (see fresh_memory_probe).
        "fresh_memory": fresh_memory_probe(),
        "scene": {
            "source": "s2_l1c_eolearn/REFERENCE_SCENES.npy date 0: real Sentinel-2 L1C TOA reflectance, "
                      "13 bands, 101x100 at 10 m, tiled with its mirror image (real but repeated pixels)",
            "size_px": size, "megapixels": size * size / 1e6,
            "band_sets": {str(n): BAND_SETS[n] for n in bands},
        },
        "settings": {**asdict(tiling), "chunk": chunk, "backend": "auto (onnxruntime on the CPU)",
                     "rounds": repeats, "interleaved": True, "torch_threads": threads,
                     "accessor_scheduler": "dask synchronous", "model": "default", "quick": quick,
                     "warm_up_round": not quick},
        "clocks": "cpu: this process's CPU time (time.process_time), close to the time on a dedicated "
                  "core when other jobs share the machine; wall: elapsed time, inflated by those jobs",
        "ms_per_mp": {clock: summary[0] for clock, summary in summaries.items()},
        "ratios": {clock: summary[1] for clock, summary in summaries.items()},
        "samples_ms_per_mp": cpu["samples"],
        "peers": cpu["peers"],
        "peers_reason": cpu["peers_reason"],
        "flops": flops,
        "accessor_patches_over_edge_stopping_grid_by_scene_side": work,
        "defaults": defaults,
        "full_tile_cpu_seconds": {
            "what": f"{S2_TILE_PIXELS}x{S2_TILE_PIXELS} pixels at the measured {last}-band CPU-time rate "
                    f"with {threads} thread(s) (projected: ms/MP x {S2_TILE_MP:.1f} MP; the accessor at the "
                    f"{chunk}-px chunks of the measured scene)",
            **{v: medians[v][last] * S2_TILE_MP / 1e3 for v in VARIANTS}},
        "gpu": gpu,
    }


def _fresh_memory_line(probe: dict | None) -> str:
    """One sentence on how slow new memory was to touch in this run (see fresh_memory_probe)."""
    if not probe:
        return ""
    without = probe["ms_without_advice"]
    return (f"First touch of {probe['megabytes']} MB of new memory after the rounds: {probe['ms_as_set']:.0f} ms "
            f"(NumPy huge-page advice {'on' if probe['huge_page_advice'] else 'off'})"
            + ("." if without is None else f", {without:.0f} ms without the advice."))


def markdown(res: dict) -> str:
    """The results as a markdown report (``speed.md``)."""
    med, rat, fl = res["ms_per_mp"]["cpu"], res["ratios"]["cpu"], res["flops"]
    wall, wall_rat = res["ms_per_mp"]["wall"], res["ratios"]["wall"]
    bands = list(res["scene"]["band_sets"])
    last = bands[-1]
    env = res["environment"]
    s = res["settings"]
    nan = float("nan")
    ratio_rows = [[k] + [v[n] for n in bands] + [wall_rat[k][last]]
                  for k, v in rat.items() if k.endswith(("model", "grid", "unrefined"))]
    ratio_rows += [[f"{v} / {v} at {last} bands"] + [rat[f"over_{last}_bands"][v][n] for n in bands]
                   + [wall_rat[f"over_{last}_bands"][v][last]] for v in VARIANTS]
    lines = [
        "# Inference speed (benchmarks/bench_speed.py)", "",
        f"Scene: {res['scene']['size_px']}x{res['scene']['size_px']} px, {res['scene']['source']}. "
        f"{s['rounds']} interleaved rounds, {s['torch_threads']} torch thread(s), torch {env['torch']}, "
        f"{env['cpu_count']} cores shared with other jobs (load average before "
        f"{[round(x, 1) for x in env['load_average_1_5_15min'] or []]}, after "
        f"{[round(x, 1) for x in res['load_average_after'] or []]}). Medians; ratios are medians of "
        f"per-round ratios. Clocks: {res['clocks']}. {_fresh_memory_line(res.get('fresh_memory'))}", "",
        "## ms per megapixel (median)", "",
        md_table(["variant"] + [f"{n} bands, CPU time" for n in bands] + [f"{last} bands, wall"],
                 [[v] + [med[v].get(n, nan) for n in bands] + [wall[v].get(last, nan)] for v in med]), "",
        f"- `model`: the folded network as the accessor runs it on a CPU (ONNX Runtime) on non-overlapping "
        f"{s['patch']}-px patches, one per pass; `model_torch`: the same in torch; `model_patch_grid`: "
        f"the accessor's patch grid ({s['patch']} px, {s['overlap']} overlap, edges included, each patch "
        f"once) without Dask; `accessor`: `da.sensei.cloudmask().compute()`, {s['chunk']}-px chunks, "
        f"synchronous scheduler (a scene in fewer chunks than the host's cores runs as a block per core, "
        f"here one after another); `accessor_half_chunk`: the same in {s['chunk'] // 2}-px chunks; "
        "`accessor_unrefined`: the accessor with `refine=False` (the network's probabilities as predicted, "
        "no edge refinement); `model_patch_grid` runs no refinement either; peers: "
        f"`sensei_xr.evaluation.peers`, each on its own bands of the {last}, {s['torch_threads']} thread(s).", "",
        "## Ratios (median of per-round ratios)", "",
        md_table(["ratio"] + [f"{n} bands, CPU time" for n in bands] + [f"{last} bands, wall"], ratio_rows),
        "",
    ]
    d = res["defaults"]
    lines += ["## Every default, wall time (what a user sees)", "", f"{d['what']}.", "",
              md_table(["variant", "wall ms / MP (median)"], [[k, v] for k, v in d["median_wall_ms_per_mp"].items()]),
              ""]
    lines += [", ".join(f"{k.replace('_over_', ' / ')}: {v:.2f}" for k, v in d.items()
                        if k.startswith("accessor") and "_over_" in k) + " (medians of per-round ratios; "
              "`accessor_flush`: `cloudmask(edges=\"flush\")`, the patch grid flush with the scene's edges).", ""]
    if res["peers"]:
        lines += [f"Peers at {last} bands: " + ", ".join(
            f"{p} {med[p][last]:.0f} ms/MP CPU time ({rat[f'peer_over_accessor_at_{last}_bands'][p]:.2f}x the "
            f"accessor, {rat[f'peer_over_model_at_{last}_bands'][p]:.2f}x the model)" for p in res["peers"]) + ".", ""]
    else:
        lines += [f"Peers: {res['peers_reason']}", ""]
    lines += [
        "## FLOPs", "",
        f"{fl['counter']}.", "",
        md_table(["", *[f"{n} bands" for n in bands]],
                 [["GFLOP / MP of network input"] + [fl["gflop_per_mp_network_input"][n] for n in bands]]
                 + [[f"GFLOP / scene MP, {v}"] + [fl["gflop_per_scene_mp"][v][n] for n in bands] for v in VARIANTS]
                 + [[f"achieved GFLOP/s (CPU time), {v}"] + [fl["achieved_gflop_per_s"][v][n] for n in bands]
                    for v in VARIANTS]),
        "",
        f"Unfolded (SEnSeI run on every call) at 13 bands: {fl['gflop_per_mp_network_input_unfolded_13_bands']:.1f} "
        "GFLOP / MP of input.", "",
        "Patches the accessor runs (each once, in any chunking; its grid reaches past the scene's "
        "edges, which scored about 0.8 points of OA more in the Biome cross-validation), over a grid "
        "that stops at the edges, by scene side: "
        + ", ".join(f"{c} px {w:.2f}x" for c, w in res["accessor_patches_over_edge_stopping_grid_by_scene_side"].items())
        + ".", "",
        "## Full Sentinel-2 tile", "",
        f"CPU, {res['full_tile_cpu_seconds']['what']}: "
        + ", ".join(f"{v} {res['full_tile_cpu_seconds'][v] / 60:.0f} min" for v in VARIANTS) + ".", "",
    ]
    gpu = res["gpu"]
    if gpu["measured"]:
        lines += [f"GPU {gpu['device']}: network "
                  + ", ".join(f"{v:.0f} MP/s at batch {b}" for b, v in gpu["network_mp_per_s_by_batch"].items())
                  + f"; accessor {gpu['accessor_mp_per_s']:.1f} MP/s ({gpu['accessor_scene']}); full tile "
                  f"{gpu['full_tile_seconds']:.1f} s ({gpu['full_tile_seconds_kind']})."]
        if "fraction_of_flop_bound" in gpu:
            lines[-1] += f" {gpu['fraction_of_flop_bound']:.1%} of the FLOP bound."
    else:
        lines += [f"GPU: {gpu['reason']}."]
    if gpu["flop_bound"]:
        b = gpu["flop_bound"]
        lines += ["", f"FLOP bound ({gpu['flop_bound_label']}): {b['gpu']} at {b['peak_tflops_fp16_dense']:.0f} "
                  f"TFLOP/s: network {b['network_mp_per_s_at_peak']:.0f} MP/s, full tile through the accessor "
                  f"(2048-px chunks) {b['full_tile_seconds_at_peak']:.2f} s."]
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    """Bars of ms/MP by variant and band count, and the per-round ratios (``speed.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = res["samples_ms_per_mp"]["cpu"]
    bands = list(res["scene"]["band_sets"])
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    names = list(samples)
    width = 0.8 / len(names)
    for i, v in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j, n in enumerate(bands) if n in samples[v]]
        vals = [samples[v][n] for n in bands if n in samples[v]]
        med = [statistics.median(s) for s in vals]
        err = [[m - min(s) for m, s in zip(med, vals)], [max(s) - m for m, s in zip(med, vals)]]
        ax.bar(xs, med, width, yerr=err, capsize=3, label=v)
    ax.set_xticks(range(len(bands)), [f"{n} bands" for n in bands])
    ax.set_ylabel("CPU ms per megapixel (median; whiskers: min-max)")
    ax.set_title(f"CPU, {res['settings']['torch_threads']} thread(s), {res['scene']['size_px']} px scene")
    ax.legend(fontsize=8)
    last = bands[-1]
    for clock, style in (("cpu", "o-"), ("wall", "x--")):
        clock_samples = res["samples_ms_per_mp"][clock]
        for key, colour in (("accessor", "C2"), ("model_patch_grid", "C1")):
            per_round = [a / b for a, b in zip(clock_samples[key][last], clock_samples["model"][last])]
            ax2.plot(range(1, len(per_round) + 1), per_round, style, color=colour,
                     label=f"{key} / model, {clock} time")
    ax2.set_xticks(range(1, len(samples["model"][last]) + 1))
    ax2.set_xlabel("round")
    ax2.set_ylabel(f"ratio at {last} bands (same round)")
    ax2.set_ylim(bottom=0)
    ax2.set_title("paired ratios per round")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 round (< 1 min; for CI)")
    p.add_argument("--out", type=Path, default=None, help="write speed.json, speed.md, speed.png here")
    p.add_argument("--size", type=int, default=None, help="scene side, px (default 1024; quick 128)")
    p.add_argument("--chunk", type=int, default=None, help="accessor chunk side, px (default 1024; quick 128)")
    p.add_argument("--repeats", type=int, default=None, help="interleaved rounds (default 3; quick 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--gpu-size", type=int, default=None, help="GPU in-memory scene side (default 4096; quick 512)")
    p.add_argument("--gpu-only", action="store_true",
                   help="only the GPU section and a CPU/CUDA mask comparison; writes gpu.json / gpu.md")
    args = p.parse_args(argv)
    tiling = QUICK_TILING if args.quick else Tiling()
    size = args.size or (128 if args.quick else 1024)
    chunk = args.chunk or (128 if args.quick else 1024)
    repeats = args.repeats or (1 if args.quick else 3)
    gpu_size = args.gpu_size or (512 if args.quick else 4096)
    if size < tiling.patch or repeats < 1 or args.threads < 1:
        p.error(f"--size must be >= {tiling.patch}, --repeats and --threads >= 1")
    if args.gpu_only:
        res = run_gpu(gpu_size, repeats, quick=args.quick)
        report = markdown_gpu(res)
        print(report)
        if args.out is not None:
            print(f"wrote {', '.join(str(x) for x in write_results(args.out, 'gpu', res, report))}")
        return 0
    res = run(size, chunk, repeats, args.threads, gpu_size, quick=args.quick)
    report = markdown(res)
    print()
    print(report)
    if args.out is not None:
        paths = write_results(args.out, "speed", res, report)
        plot(res, args.out / "speed.png")
        print(f"\nwrote {', '.join(str(x) for x in paths)}, {args.out / 'speed.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
