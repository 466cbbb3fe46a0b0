"""Training checkpoints (safetensors, no pickle) and the running mean of the weights.

A checkpoint folder holds ``model.safetensors``, ``optimizer.safetensors``,
``rng.safetensors`` (torch's random state, for dropout), optionally ``average.safetensors``
(the weight average so far) and ``state.json`` (step, history, schedule, the run's recipe
and data). Every file is written in full before any replaces its predecessor, and each
tensor file records the step it belongs to: a save interrupted between two replaces leaves
files of two steps, which loading refuses instead of resuming new weights at an old step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["WeightAverage", "load_checkpoint", "save_checkpoint"]


class WeightAverage:
    """The mean of a model's parameters after each training step from ``start_step`` on.

    Stochastic weight averaging (Izmailov et al., 2018): the mean of the weights visited late
    in training lies in a flatter region than any one of them, and does not depend on where
    the last step happened to land. Batch-norm buffers are not averaged: their statistics
    must be measured again for the averaged weights (the training config's
    ``bn_recalibration_batches``).

    Parameters
    ----------
    model : torch.nn.Module
        The model being trained (its parameters are read, never written, until :meth:`apply`).
    start_step : int
        Steps done before the first one averaged (0: every step).
    """

    def __init__(self, model, start_step: int):
        self.start_step = int(start_step)
        self.count = 0
        self.mean = {name: p.detach().clone() for name, p in model.named_parameters()}

    def update(self, model, steps_done: int) -> None:
        """Add the weights after step ``steps_done`` (1-based) if it is past the start."""
        import torch

        if steps_done <= self.start_step:
            return
        self.count += 1
        with torch.no_grad():
            for name, p in model.named_parameters():
                self.mean[name].add_(p.detach() - self.mean[name], alpha=1.0 / self.count)

    def apply(self, model) -> None:
        """Write the mean into ``model``'s parameters (nothing if no step was averaged)."""
        import torch

        if not self.count:
            return
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(self.mean[name])

    def state(self) -> dict:
        return {"start_step": self.start_step, "count": self.count}

    def tensors(self) -> dict:
        return {name: v.detach().cpu().contiguous() for name, v in self.mean.items()}

    def load(self, state: dict, tensors: dict, where: Path) -> None:
        """Continue an average from a checkpoint; one begun at another step is refused."""
        if state["start_step"] != self.start_step:
            raise ValueError(f"the checkpoint in {where} averages the weights from step {state['start_step']}, this "
                             f"run from step {self.start_step} (weight_average_from x steps changed): keep both, "
                             "or train into another folder")
        self.count = int(state["count"])
        for name, value in tensors.items():
            self.mean[name].copy_(value)


def save_checkpoint(ckpt_dir: Path, model, opt, state: dict, average: WeightAverage | None = None) -> None:
    """Weights, optimizer state, random state, the weight average if any, and ``state.json``
    last; every file is written before the first replace."""
    import torch
    from safetensors.torch import save_file

    tensors = {}
    for idx, per_param in opt.state_dict()["state"].items():
        for key, value in per_param.items():
            tensors[f"{idx}/{key}"] = _to_cpu_tensor(value)
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        rng.update({f"cuda{i}": t for i, t in enumerate(torch.cuda.get_rng_state_all())})
    payloads = [("model.safetensors", {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}),
                ("optimizer.safetensors", tensors), ("rng.safetensors", rng)]
    if average is not None:
        payloads.append(("average.safetensors", average.tensors()))
        state = {**state, "average": average.state()}
    step = {_STEP_KEY: str(int(state["step"]))}
    written = []
    for name, payload in payloads:
        tmp = ckpt_dir / f".{name}.partial"
        save_file(payload, tmp, metadata=step)
        written.append((tmp, ckpt_dir / name))
    tmp = ckpt_dir / ".state.json.partial"
    tmp.write_text(json.dumps(state))
    for tmp_file, final in written + [(tmp, ckpt_dir / "state.json")]:
        os.replace(tmp_file, final)


def load_checkpoint(ckpt_dir: Path, model, opt, average: WeightAverage | None = None) -> dict:
    """Load the checkpoint's weights, optimizer state, random state and weight average (if
    ``average`` is given and the checkpoint has one) in place; returns its ``state.json``.

    Raises
    ------
    ValueError
        If its files belong to different steps (a save was interrupted).
    """
    import torch
    from safetensors.torch import load_file

    state = json.loads((ckpt_dir / "state.json").read_text())
    names = ["model.safetensors", "optimizer.safetensors", "rng.safetensors", "average.safetensors"]
    _check_same_step(ckpt_dir, [n for n in names if (ckpt_dir / n).exists()], int(state["step"]))
    model.load_state_dict(load_file(ckpt_dir / "model.safetensors"))
    if opt is not None:
        _load_optimizer(opt, load_file(ckpt_dir / "optimizer.safetensors"), state["lr"])
    if (ckpt_dir / "rng.safetensors").exists():  # checkpoints before it restart dropout's stream
        rng = load_file(ckpt_dir / "rng.safetensors")
        torch.set_rng_state(rng.pop("cpu"))
        for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            if f"cuda{i}" in rng:
                torch.cuda.set_rng_state(rng[f"cuda{i}"], i)
    if average is not None and "average" in state:
        average.load(state["average"], load_file(ckpt_dir / "average.safetensors"), ckpt_dir)
    return state


_STEP_KEY = "sensei_xr_step"


def _check_same_step(ckpt_dir: Path, names: list[str], step: int) -> None:
    """Raise unless every tensor file records ``step`` (files from before the record: any)."""
    from safetensors import safe_open

    steps = {}
    for name in names:
        with safe_open(ckpt_dir / name, framework="pt") as f:
            recorded = (f.metadata() or {}).get(_STEP_KEY)
        if recorded is not None:
            steps[name] = int(recorded)
    wrong = {n: s for n, s in steps.items() if s != step}
    if wrong:
        raise ValueError(f"the checkpoint in {ckpt_dir} is inconsistent: state.json is at step {step} but "
                         + ", ".join(f"{n} at step {s}" for n, s in wrong.items())
                         + " (a save was interrupted, e.g. by a full disk). Its weights cannot be trusted: "
                         "delete the folder to train from the start, or train into another folder")


def _to_cpu_tensor(value):
    import torch

    t = value if torch.is_tensor(value) else torch.tensor(value)
    return t.detach().cpu().contiguous()


def _load_optimizer(opt, tensors: dict, lr: float) -> None:
    state: dict = {}
    for name, value in tensors.items():
        idx, key = name.split("/", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = opt.state_dict()["param_groups"]
    for g in groups:
        g["lr"] = lr
    opt.load_state_dict({"state": state, "param_groups": groups})
