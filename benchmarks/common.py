"""What the benchmark scripts share: the machine's description, medians of paired ratios,
FLOP counting, and writing a results folder (JSON + markdown; the scripts add a PNG).

Timings on shared machines are noisy: the scripts interleave their variants round by round
and report medians; a ratio is the median of the per-round ratios of two variants timed
back to back, which cancels most of the drift in the machine's load.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Mapping, Sequence

#: One Sentinel-2 MGRS tile at 10 m: 10980 x 10980 pixels.
S2_TILE_PIXELS = 10980
S2_TILE_MP = S2_TILE_PIXELS ** 2 / 1e6

#: Dense (no sparsity) FP16/BF16 tensor-core peaks, TFLOP/s, from NVIDIA's data sheets
#: (the sheets quote twice these "with sparsity"). Matched against the device name.
GPU_PEAK_TFLOPS: dict[str, float] = {
    "H200 NVL": 835.0,
    "H200": 989.0,   # SXM
    "H100 PCIe": 756.0,
    "H100": 989.0,   # SXM
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "V100": 125.0,
    "T4": 65.0,
}
#: The GPU assumed for estimates when none is present.
ASSUMED_GPU = "H200"


def gpu_peak_tflops(device_name: str) -> tuple[str, float] | None:
    """The data-sheet entry matching a CUDA device name, as (entry, TFLOP/s), or None."""
    for key, peak in GPU_PEAK_TFLOPS.items():  # longest names first where they share a prefix
        if key.lower() in device_name.lower():
            return key, peak
    return None


def environment() -> dict:
    """Machine, library versions, threads and load: what the numbers were measured on."""
    import torch

    try:
        load = list(os.getloadavg())
    except OSError:  # not on every platform
        load = None
    return {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1_5_15min": load,
    }


def fresh_memory_probe(megabytes: int = 100, repeats: int = 3) -> dict:
    """Milliseconds to allocate and first touch ``megabytes`` of new memory (a NumPy array
    filled once), the median of ``repeats``: with NumPy's huge-page advice as the process
    has it, and with the advice off.

    Why: on the virtual machines these benchmarks run on, memory that NumPy advises for
    huge pages was at times about 18x slower to touch the first time than without the advice
    (1.1 s against 0.06 s per 100 MB), and a block's fresh arrays (band selection, halo)
    then cost the accessor seconds the network does not pay. A benchmark records this so
    its ratios can be read; ``NUMPY_MADVISE_HUGEPAGE=0`` turns the advice off for a run.

    Returns
    -------
    dict
        ``huge_page_advice`` (bool, or None where NumPy has no switch), ``ms_as_set`` and
        ``ms_without_advice`` (None where NumPy has no switch), ``megabytes``.
    """
    import time

    import numpy as np

    # NumPy 2 keeps the switch in np._core; np.core (NumPy 1) only where _core is absent, as
    # touching np.core warns on NumPy 2.
    core = getattr(np, "_core", None) or getattr(np, "core")
    switch = getattr(core.multiarray, "_set_madvise_hugepage", None)
    n = megabytes * 2 ** 20 // 4

    def touch_ms() -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            a = np.empty(n, np.float32)
            a.fill(1.0)
            times.append((time.perf_counter() - t) * 1e3)
            del a
        return statistics.median(times)

    as_set = touch_ms()
    if switch is None:
        return {"megabytes": megabytes, "huge_page_advice": None, "ms_as_set": as_set, "ms_without_advice": None}
    advice = bool(switch(False))  # returns the previous setting
    try:
        without = touch_ms()
    finally:
        switch(advice)
    return {"megabytes": megabytes, "huge_page_advice": advice, "ms_as_set": as_set, "ms_without_advice": without}


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of ``numerator[i] / denominator[i]`` (paired, same round)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def gflop_per_mp(net, n_bands: int, patch: int = 256) -> float:
    """FLOPs of one forward pass per megapixel of network input, GFLOP / MP.

    Counted with :class:`torch.utils.flop_counter.FlopCounterMode` on one ``patch``-square
    image: 2 FLOPs per multiply-add of convolutions and matrix products; element-wise
    work (BatchNorm, activations, upsampling) is not counted and is a few percent.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, n_bands, patch, patch)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x)
    return counter.get_total_flops() / 1e9 / (patch * patch / 1e6)


def write_results(out: Path, stem: str, result: Mapping, markdown: str) -> list[Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` into ``out`` (created); return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(result, indent=1) + "\n")
    paths[1].write_text(markdown.rstrip() + "\n")
    return paths


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; floats are printed with 3 significant digits or more."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
