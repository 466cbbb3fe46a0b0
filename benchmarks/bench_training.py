"""Training speed of a recipe on this machine: seconds per step, one validation pass, and
the projected time of a full run (the model issue asks for <= 45 minutes per candidate on
the 2-core CPU).

    python -m benchmarks.bench_training configs/systems/sensei_dlv3.toml --threads 2 --out results/training

Times a few steps of the recipe exactly as :func:`sensei_xr.training.train.train` runs them
(its batches, model, optimizer and loss, on the Biome train patches) after warm-up steps,
and one validation pass through the inference engine on the 8 val patches. Prints medians;
asserts nothing. Dev tooling: not part of the package.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sensei_xr.datasets import load_dataset
from sensei_xr.evaluation import pooled_metrics
from sensei_xr.training.crossval import _SYSTEM_KEYS, read_system
from sensei_xr.datasets import IGNORE_INDEX
from sensei_xr.training.recipe import DEFAULT_CONFIG
from sensei_xr.training.train import _batch_source, _initial_model, _optimizer, _train_step, _training_sources

#: The model issue's budget for training one candidate on the 2-core CPU, minutes.
TARGET_MINUTES = 45.0


def measure(config_path: Path, steps: int, warm_up: int, threads: int, quick: bool = False, log=print) -> dict:
    """Median step time, batch-building share, one validation pass, and the projected run."""
    import torch

    torch.set_num_threads(threads)
    system = read_system(config_path)
    cfg = {**DEFAULT_CONFIG, **{k: v for k, v in system.items() if k not in _SYSTEM_KEYS}}
    train_patches = load_dataset("biome_patches", split="train")
    val_patches = load_dataset("biome_patches", split="val")
    if quick:  # tiny sizes: only shows the code runs
        cfg = {**cfg, "patch_size": 32, "batch_size": 2}
        train_patches, val_patches = train_patches[:2], val_patches[:1]
    classes = tuple(cfg["model"]["classes"])
    torch.manual_seed(cfg["seed"])
    sources, weights, _ = _training_sources(cfg, Path("."), classes, train_patches)
    model = _initial_model(cfg, classes, Path("."), "cpu")
    opt = _optimizer(cfg, model)
    next_batch = _batch_source(cfg, sources, weights, classes, 0)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    model.train()
    step_s, batch_s = [], []
    for step in range(warm_up + steps):
        t0 = time.perf_counter()
        batch = next_batch(step)
        t1 = time.perf_counter()
        _train_step(model, opt, loss_fn, batch, "cpu")
        t2 = time.perf_counter()
        if step >= warm_up:
            step_s.append(t2 - t0)
            batch_s.append(t1 - t0)
    t0 = time.perf_counter()
    pooled_metrics(model, val_patches, None, device="cpu")
    val_s = time.perf_counter() - t0
    median = float(np.median(step_s))
    passes = -(-cfg["steps"] // cfg["steps_per_epoch"])
    projected = (cfg["steps"] * median + passes * val_s) / 60
    res = {
        "config": str(config_path), "threads": threads, "quick": quick,
        "patch_size": cfg["patch_size"], "batch_size": cfg["batch_size"], "steps_timed": steps,
        "median_step_s": median, "step_s": step_s, "median_batch_s": float(np.median(batch_s)),
        "validation_pass_s": val_s, "run_steps": cfg["steps"], "validation_passes": passes,
        "projected_run_minutes": projected, "target_minutes": TARGET_MINUTES,
        "projected_over_target": projected / TARGET_MINUTES,
    }
    log(f"{config_path}: {median:.3f} s/step (median of {steps}; batches {res['median_batch_s']:.3f} s), "
        f"validation pass {val_s:.1f} s; projected run: {cfg['steps']} steps + {passes} passes = "
        f"{projected:.1f} min ({res['projected_over_target']:.2f}x the {TARGET_MINUTES:.0f} min target), "
        f"{threads} thread(s)" + (" [quick: tiny patches and batches, not the recipe's time]" if quick else ""))
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path, nargs="?", default=Path("configs/systems/sensei_dlv3.toml"))
    p.add_argument("--steps", type=int, default=None, help="steps timed (default 20; quick 2)")
    p.add_argument("--warm-up", type=int, default=None, help="steps not timed first (default 3; quick 1)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--quick", action="store_true", help="tiny patches and batches (for CI)")
    p.add_argument("--out", type=Path, default=None, help="write training.json here")
    args = p.parse_args(argv)
    steps = args.steps if args.steps is not None else (2 if args.quick else 20)
    warm_up = args.warm_up if args.warm_up is not None else (1 if args.quick else 3)
    res = measure(args.config, steps, warm_up, args.threads, args.quick)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "training.json").write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
