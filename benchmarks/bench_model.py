"""Inference speed of the networks, in milliseconds per megapixel (the shape of Table VII).

For 3, 8 and 13 bands: NN (PixelNet) and DLv3 (DeepLabv3+) on the raw bands, and
SEnSeI+NN, SEnSeI+DLv3 both folded (:meth:`CloudModel.for_bands`, how inference runs)
and unfolded (encoder run on every call, for comparison). One image of
``size x size`` per call, on CPU with torch using all cores; medians over ``repeats``
timed samples after one warm-up call (fast calls are looped within a sample).
Everything is measured in the same run. Models have random weights with BatchNorm
statistics from a few data passes (see :func:`_calibrated`).

On a machine shared with other jobs, several torch threads can be much slower than one
(threads wait for each other at every operator): compare with ``--threads 1``.

Usage::

    python -m benchmarks.bench_model --size 512 --repeats 5 --json results/bench.json
    python -m benchmarks.bench_model --size 64 --repeats 1     # quick check (CI)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

BANDS = (3, 8, 13)
HEADS = {"NN": "pixelnet", "DLv3": "deeplabv3plus"}


def _descriptors(n: int) -> torch.Tensor:
    # Normalised wavelengths spread over 440 nm .. 2.2 um (log10(nm - 300) - 2).
    centre = np.linspace(0.15, 1.28, n)
    return torch.tensor(np.stack([centre - 0.02, centre, centre + 0.02], 1), dtype=torch.float32)


def _calibrated(model, n_bands: int):
    """Give BatchNorm data-driven statistics, as a trained model has.

    A freshly initialised model in eval mode shrinks activations layer after layer into
    subnormal floats, which the CPU handles tens of times slower: timings of such a
    model say nothing about a trained one.
    """
    model.train()
    with torch.no_grad():
        for i in range(2):
            model(torch.rand(4, n_bands, 64, 64), _descriptors(n_bands))
    return model.eval()


def _time(fn: Callable[[], object], repeats: int, min_sample_s: float = 0.05) -> float:
    """Median seconds per call over ``repeats`` samples, after a warm-up call.

    Fast calls (the per-pixel networks) are looped within a sample so that each sample
    lasts at least ``min_sample_s``: single millisecond calls are mostly timer noise.
    """
    with torch.inference_mode():
        t0 = time.perf_counter()
        fn()
        warm = time.perf_counter() - t0
        inner = max(1, min(1000, int(min_sample_s / max(warm, 1e-6))))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def run(size: int = 512, repeats: int = 5, bands: Sequence[int] = BANDS, log=print) -> dict:
    """Measure every variant; return ``{"ms_per_mpix": {variant: {bands: ms}}, ...}``."""
    from sensei_xr.models import build_model

    torch.manual_seed(0)
    mpix = size * size / 1e6
    results: dict[str, dict[str, float]] = {}

    def record(name: str, n: int, seconds: float) -> None:
        results.setdefault(name, {})[str(n)] = seconds * 1e3 / mpix
        log(f"  {name:22s} {n:3d} bands  {seconds * 1e3:9.1f} ms  {seconds * 1e3 / mpix:9.1f} ms/Mpix")

    for label, head in HEADS.items():
        sensei = _calibrated(build_model({"encoder": "sensei", "head": head, "classes": ["clear", "cloud"]}), 8)
        for n in bands:
            x = torch.rand(1, n, size, size)
            desc = _descriptors(n)
            plain = _calibrated(build_model({"encoder": None, "head": head, "classes": ["clear", "cloud"],
                                             "in_bands": n}), n)
            record(label, n, _time(lambda: plain.head(x), repeats))
            folded = sensei.for_bands(desc)
            record(f"SEnSeI+{label} (folded)", n, _time(lambda: folded(x), repeats))
            record(f"SEnSeI+{label} (unfolded)", n, _time(lambda: sensei(x, desc), repeats))
        # Building the folded network is done once per band set: report its cost too.
        t0 = time.perf_counter()
        sensei.for_bands(_descriptors(bands[-1]))
        results.setdefault("fold_once_ms", {})[label] = (time.perf_counter() - t0) * 1e3

    last = str(bands[-1])
    ratios = {label: results[f"SEnSeI+{label} (folded)"][last] / results[label][last] for label in HEADS}
    return {
        "size": size,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "ms_per_mpix": {k: v for k, v in results.items() if k != "fold_once_ms"},
        "fold_once_ms": results["fold_once_ms"],
        f"folded_over_plain_at_{last}_bands": ratios,
    }


def _table(res: dict, bands: Sequence[int]) -> str:
    rows = res["ms_per_mpix"]
    width = max(len(k) for k in rows) + 2
    lines = [f"{'model':{width}s}" + "".join(f"{f'{n} bands':>12s}" for n in bands) + "   (ms / megapixel)"]
    for name, vals in rows.items():
        lines.append(f"{name:{width}s}" + "".join(f"{vals[str(n)]:12.1f}" for n in bands))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--repeats", type=int, default=5, help="timed samples per variant (default 5)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch threads (default: all cores)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.size < 8 or args.repeats < 1:
        parser.error("--size must be >= 8 and --repeats >= 1")
    torch.set_num_threads(max(1, args.threads))
    print(f"sensei_xr model benchmark: {args.size}x{args.size} image, {args.repeats} repeats, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    res = run(args.size, args.repeats, BANDS)
    print()
    print(_table(res, BANDS))
    last = BANDS[-1]
    for label, ratio in res[f"folded_over_plain_at_{last}_bands"].items():
        print(f"SEnSeI+{label} (folded) / {label} at {last} bands: {ratio:.2f}x")
    print("folding once per band set: " + ", ".join(f"{k} {v:.1f} ms" for k, v in res["fold_once_ms"].items()))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
