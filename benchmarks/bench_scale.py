"""Dask scaling: a large lazy scene masked on a LocalCluster of 1 and of 2 worker processes,
with wall time, peak memory per worker, scaling efficiency and the accessor's overhead
over the raw model on the same pixels.

    python -m benchmarks.bench_scale --out results/scale            # ~20 min on 2 busy cores
    python -m benchmarks.bench_scale --quick --out /tmp/scale       # < 1 min (CI)

The scene is real Sentinel-2 L1C pixels (the 13-band eo-learn reference scene, tiled with
its mirror image: see ``benchmarks.bench_inference.lazy_s2_scene``) as a lazy Dask array
of ``--size`` x ``--size`` x 13 float32 in ``--chunk``-square chunks; each chunk is cut
where it is computed, so nothing large is held or shipped by the client. Every
measurement starts a fresh ``LocalCluster`` (worker processes, 1 thread each, torch 1
thread each, so one worker uses one core), loads the model in every worker before the
clock starts, and computes the cloud fraction of ``da.sensei.cloudmask()`` (the mask is
reduced on the workers). Worker memory: the resident set of each worker process sampled
every 0.2 s, and the kernel's peak (``ru_maxrss``) at the end.

The raw model: the folded network on non-overlapping patches of the same chunks, in this
process on one torch thread, timing only the network. Configurations are interleaved
round by round; medians. On a 2-core machine shared with other jobs, 2 workers compete
with those jobs for the 2 cores, so the scaling efficiency measured here is a lower bound
of what 2 dedicated cores give. Numbers only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

from benchmarks.bench_inference import (accessor_patches, cpu_runner, grid_starts, lazy_s2_scene, model_input,
                                        patch_grid_seconds)
from benchmarks.bench_speed import QUICK_TILING, Tiling
from benchmarks.common import environment, md_table, median_ratio, write_results

WORKER_COUNTS = (1, 2)
SAMPLE_S = 0.2  # worker memory sampling interval, seconds


def _warm_worker(patch: int, overlap: int) -> int:
    """Load and fold the model in this worker (its per-process cache); return the pid."""
    from benchmarks.bench_inference import s2_scene

    s2_scene(patch).sensei.cloudmask(model="default", patch_size=patch, overlap=overlap).compute(
        scheduler="synchronous")
    return os.getpid()


def _peak_rss_bytes() -> int:
    """This process's peak resident set (bytes; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _RssSampler(threading.Thread):
    """Samples the resident set of some processes every ``SAMPLE_S`` seconds (psutil)."""

    def __init__(self, pids: Sequence[int]):
        import psutil

        super().__init__(daemon=True)
        self.procs = [psutil.Process(p) for p in pids]
        self.t0 = time.perf_counter()
        self.samples: list[tuple[float, list[float]]] = []  # (s, MiB per process)
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                rss = [p.memory_info().rss / 2**20 for p in self.procs]
            except Exception:  # a process went away: stop sampling
                break
            self.samples.append((time.perf_counter() - self.t0, rss))
            self._halt.wait(SAMPLE_S)

    def cpu_seconds(self) -> list[float]:
        """User + system CPU time of each process so far, seconds."""
        return [sum(p.cpu_times()[:2]) for p in self.procs]

    def stop(self) -> list[tuple[float, list[float]]]:
        self._halt.set()
        self.join()
        return self.samples


def measure_cluster(n_workers: int, size: int, chunk: int, tiling: Tiling) -> dict:
    """Mask the lazy scene on a fresh LocalCluster of ``n_workers`` processes.

    Returns
    -------
    dict
        ``seconds`` (wall time of the compute, s), ``worker_cpu_seconds`` (per worker, user +
        system, s), ``peak_rss_mib`` (per worker, kernel
        peak), ``sampled_peak_rss_mib`` (per worker, from the samples), ``rss_timeline``,
        ``cloud_fraction``.
    """
    from distributed import Client, LocalCluster

    # SENSEI_XR_WORKERS_PER_HOST = cores makes the runtime (torch_threads) give each task
    # cores // cores = 1 torch thread: one worker = one core, whatever the worker count.
    env = {"SENSEI_XR_WORKERS_PER_HOST": str(os.cpu_count() or 1), "OMP_NUM_THREADS": "1"}
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      env=env, memory_limit=0) as cluster, Client(cluster) as client:
        pids = list(client.run(_warm_worker, tiling.patch, tiling.overlap).values())
        mask = lazy_s2_scene(size, chunk).sensei.cloudmask(model="default", patch_size=tiling.patch,
                                                           overlap=tiling.overlap, batch_size=tiling.batch)
        sampler = _RssSampler(pids)
        cpu0 = sampler.cpu_seconds()
        sampler.start()
        t = time.perf_counter()
        cloud = float((mask == 1).mean().compute())
        seconds = time.perf_counter() - t
        timeline = sampler.stop()
        cpu = [b - a for a, b in zip(cpu0, sampler.cpu_seconds())]
        peaks = [v / 2**20 for v in client.run(_peak_rss_bytes).values()]
    return {
        "seconds": seconds,
        "worker_cpu_seconds": cpu,
        "peak_rss_mib": peaks,
        "sampled_peak_rss_mib": [max(s[1][i] for s in timeline) for i in range(len(pids))] if timeline else [],
        "rss_timeline": [[round(t, 2)] + [round(m, 1) for m in mib] for t, mib in timeline],
        "cloud_fraction": cloud,
    }


def raw_model_seconds(size: int, chunk: int, tiling: Tiling) -> tuple[float, float]:
    """The folded network as the accessor runs it on a CPU (ONNX Runtime) over
    non-overlapping patches of every chunk, one thread in this process: network time only,
    as (wall, CPU) seconds."""
    import torch

    from sensei_xr.models import load_model

    torch.set_num_threads(1)
    scene = lazy_s2_scene(size, chunk)
    net = cpu_runner(load_model("default"), scene.isel(y=slice(0, tiling.patch), x=slice(0, tiling.patch)),
                     threads=1)[0]
    wall = cpu = 0.0
    for r in range(0, size, chunk):
        for c in range(0, size, chunk):
            x = model_input(scene.isel(y=slice(r, r + chunk), x=slice(c, c + chunk)).compute())
            t = time.process_time()
            wall += patch_grid_seconds(net, x, tiling.patch, tiling.patch, tiling.batch)
            cpu += time.process_time() - t
    return wall, cpu


def run(size: int, chunk: int, rounds: int, quick: bool = False, log=print) -> dict:
    """Every measurement of this benchmark, as the JSON written to ``scale.json``."""
    tiling = QUICK_TILING if quick else Tiling()
    env_before = environment()
    mp = size * size / 1e6
    seconds: dict[str, list[float]] = {"raw_model_1_core": []}  # wall time
    cpu_seconds: dict[str, list[float]] = {"raw_model_1_core": []}  # summed over workers
    clusters: dict[str, list[dict]] = {}
    for r in range(rounds):
        wall, cpu = raw_model_seconds(size, chunk, tiling)
        seconds["raw_model_1_core"].append(wall)
        cpu_seconds["raw_model_1_core"].append(cpu)
        for n in WORKER_COUNTS:
            m = measure_cluster(n, size, chunk, tiling)
            clusters.setdefault(str(n), []).append(m)
            seconds.setdefault(f"accessor_{n}_workers", []).append(m["seconds"])
            cpu_seconds.setdefault(f"accessor_{n}_workers", []).append(sum(m["worker_cpu_seconds"]))
        log(f"  round {r + 1}/{rounds}: " + ", ".join(
            f"{k} {v[-1]:.1f} s wall, {cpu_seconds[k][-1]:.1f} s CPU" for k, v in seconds.items()))
    t1, t2 = seconds["accessor_1_workers"], seconds["accessor_2_workers"]
    patches_acc = accessor_patches((size, size), chunk, tiling.patch, tiling.overlap)
    patches_raw = (len(grid_starts(chunk, tiling.patch, tiling.patch)) * (size // chunk)) ** 2 if size % chunk == 0 \
        else None
    speedup = median_ratio(t1, t2)
    # On CPU time: the 1-worker accessor and the raw model each ran on one thread.
    over_raw = median_ratio(cpu_seconds["accessor_1_workers"], cpu_seconds["raw_model_1_core"])
    halo = tiling.patch - 1
    return {
        "benchmark": "scale",
        "environment": env_before,
        "load_average_after": environment()["load_average_1_5_15min"],
        "scene": {
            "source": "s2_l1c_eolearn/REFERENCE_SCENES.npy date 0: real Sentinel-2 L1C TOA reflectance, "
                      "13 bands, 101x100 at 10 m, tiled with its mirror image (real but repeated pixels), "
                      "lazy (cut per chunk on the workers)",
            "size_px": size, "megapixels": mp, "bands": 13,
            "gib_float32": 13 * size * size * 4 / 2**30,
            "chunk_px": chunk, "chunks": (-(-size // chunk)) ** 2,
            "chunk_mib": 13 * chunk * chunk * 4 / 2**20,
            "chunk_with_halo_mib": 13 * (chunk + 2 * halo) ** 2 * 4 / 2**20,
        },
        "settings": {"patch": tiling.patch, "overlap": tiling.overlap, "batch_size": tiling.batch,
                     "halo_px": halo, "rounds": rounds, "interleaved": True,
                     "worker_threads": 1, "torch_threads_per_worker": 1, "processes": True, "quick": quick},
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "median_seconds": {k: statistics.median(v) for k, v in seconds.items()},
        "median_cpu_seconds": {k: statistics.median(v) for k, v in cpu_seconds.items()},
        "ms_per_mp": {k: statistics.median(v) * 1e3 / mp for k, v in seconds.items()},
        "cpu_ms_per_mp": {k: statistics.median(v) * 1e3 / mp for k, v in cpu_seconds.items()},
        "speedup_2_over_1_workers": speedup,
        "scaling_efficiency_2_workers": speedup / 2,
        "cpu_work_ratio_2_over_1_workers": median_ratio(cpu_seconds["accessor_2_workers"],
                                                        cpu_seconds["accessor_1_workers"]),
        "efficiency_note": "2 workers on the 2 cores of a machine shared with other jobs: the wall-time "
                           "speed-up is bounded by 2 and by the core time the other jobs leave free (with "
                           "more runnable processes than cores the kernel shares time per process, so 2 "
                           "workers also get a larger share than 1); the CPU-time ratio does not depend "
                           "on the load",
        "accessor_over_raw_model": over_raw,
        "accessor_over_raw_model_clock": "CPU time (1 worker process vs this process, one thread each)",
        "patches_accessor": patches_acc,
        "patches_raw_model": patches_raw,
        "accessor_patches_over_raw": patches_acc / patches_raw if patches_raw else None,
        "accessor_overhead_per_patch": over_raw / (patches_acc / patches_raw) if patches_raw else None,
        "peak_rss_mib_per_worker": {n: statistics.median(max(m["peak_rss_mib"]) for m in ms)
                                    for n, ms in clusters.items()},
        "clusters": clusters,
        "cloud_fraction": clusters["1"][0]["cloud_fraction"],
    }


def markdown(res: dict) -> str:
    """The results as a markdown report (``scale.md``)."""
    sc, med = res["scene"], res["median_seconds"]
    env = res["environment"]
    rows = [[k, med[k], res["ms_per_mp"][k], res["median_cpu_seconds"][k], res["cpu_ms_per_mp"][k]] for k in med]
    mem = res["peak_rss_mib_per_worker"]
    lines = [
        "# Dask scaling (benchmarks/bench_scale.py)", "",
        f"Scene: {sc['size_px']}x{sc['size_px']}x13 float32 ({sc['gib_float32']:.2f} GiB, {sc['megapixels']:.1f} MP), "
        f"{sc['source']}; {sc['chunks']} chunks of {sc['chunk_px']} px ({sc['chunk_mib']:.0f} MiB, "
        f"{sc['chunk_with_halo_mib']:.0f} MiB with the {res['settings']['halo_px']}-px halo). "
        f"{res['settings']['rounds']} interleaved rounds, fresh LocalCluster per measurement, 1 thread and 1 torch "
        f"thread per worker process; torch {env['torch']}, {env['cpu_count']} cores shared with other jobs (load "
        f"average before {env['load_average_1_5_15min']}, after {res['load_average_after']}).", "",
        md_table(["configuration", "wall time (s, median)", "wall ms / MP", "CPU time (s, all workers)",
                  "CPU ms / MP"], rows), "",
        f"- speed-up 2 workers / 1 worker (wall time): {res['speedup_2_over_1_workers']:.2f}x; scaling efficiency "
        f"{res['scaling_efficiency_2_workers']:.0%} ({res['efficiency_note']}).",
        f"- CPU time of 2 workers / 1 worker for the same scene: {res['cpu_work_ratio_2_over_1_workers']:.2f} "
        "(1.00: splitting the work over processes adds no work; the wall-time efficiency on dedicated cores "
        "would be about its inverse).",
        "- peak memory per worker (kernel peak RSS, worst worker, median over rounds): "
        + ", ".join(f"{n} worker(s) {v:.0f} MiB" for n, v in mem.items()) + ".",
        f"- accessor (1 worker) / raw model (same pixels, {res['accessor_over_raw_model_clock']}): "
        f"{res['accessor_over_raw_model']:.2f}x.",
    ]
    if res["accessor_patches_over_raw"]:
        lines.append(
            f"  Of that, the accessor runs {res['accessor_patches_over_raw']:.2f}x the raw model's patches "
            f"({res['patches_accessor']} vs {res['patches_raw_model']}: the patch overlap and the ring of "
            f"patches past the scene's edges; each patch runs once in any chunking), so "
            f"{res['accessor_overhead_per_patch']:.2f}x per patch is Dask, halo copies, reading the lazy "
            "blocks, blending and no-data checks.")
    lines.append(f"- cloud fraction of the mask: {res['cloud_fraction']:.3f}.")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    """Wall times with the ideal 2-worker time, and worker memory over time (``scale.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    names = list(res["seconds"])
    for label, key, offset, hatch in (("wall time", "seconds", -0.2, None),
                                      ("CPU time, all workers", "cpu_seconds", 0.2, "//")):
        for i, k in enumerate(names):
            vals = res[key][k]
            ax.bar(i + offset, statistics.median(vals), 0.4, color=f"C{i}", hatch=hatch, edgecolor="k",
                   label=label if i == 0 else None)
            ax.plot([i + offset] * len(vals), vals, "k.", ms=5)
    ideal = res["median_seconds"]["accessor_1_workers"] / 2
    i2 = names.index("accessor_2_workers")
    ax.hlines(ideal, i2 - 0.4, i2, colors="k", linestyles="--", label="ideal wall: 1-worker wall / 2")
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
    ax.set_ylabel("seconds (bar: median; dots: rounds)")
    ax.set_title(f"{res['scene']['size_px']} px x 13 bands, {res['scene']['chunk_px']} px chunks; wall-time "
                 f"efficiency {res['scaling_efficiency_2_workers']:.0%}, CPU 2/1 workers "
                 f"{res['cpu_work_ratio_2_over_1_workers']:.2f}", fontsize=9)
    ax.legend(fontsize=8)
    for n, ms in res["clusters"].items():
        timeline = ms[0]["rss_timeline"]
        if not timeline:
            continue
        for w in range(1, len(timeline[0])):
            ax2.plot([s[0] for s in timeline], [s[w] for s in timeline], label=f"{n} worker(s): worker {w}")
    ax2.set_xlabel("s since the compute started (round 1)")
    ax2.set_ylabel("worker RSS, MiB")
    ax2.set_ylim(bottom=0)
    ax2.set_title("worker memory (sampled every 0.2 s)", fontsize=9)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny scene, 1 round (< 1 min; for CI)")
    p.add_argument("--out", type=Path, default=None, help="write scale.json, scale.md, scale.png here")
    p.add_argument("--size", type=int, default=None, help="scene side, px (default 3072; quick 256)")
    p.add_argument("--chunk", type=int, default=None, help="chunk side, px (default 768: 16 chunks; quick 128)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 2; quick 1)")
    args = p.parse_args(argv)
    tiling = QUICK_TILING if args.quick else Tiling()
    size = args.size or (256 if args.quick else 3072)
    chunk = args.chunk or (128 if args.quick else 768)
    rounds = args.rounds or (1 if args.quick else 2)
    if chunk < tiling.patch or size < chunk or rounds < 1:
        p.error(f"need --chunk >= {tiling.patch}, --size >= --chunk and --rounds >= 1")
    print(f"sensei_xr scale benchmark: {size}x{size}x13 lazy scene, {chunk} px chunks, {rounds} round(s)")
    res = run(size, chunk, rounds, quick=args.quick)
    report = markdown(res)
    print()
    print(report)
    if args.out is not None:
        paths = write_results(args.out, "scale", res, report)
        plot(res, args.out / "scale.png")
        print(f"\nwrote {', '.join(str(x) for x in paths)}, {args.out / 'scale.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
