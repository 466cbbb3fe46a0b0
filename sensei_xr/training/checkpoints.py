"""Training checkpoints (safetensors, no pickle) and the running mean of the weights.

A checkpoint folder holds ``model.safetensors``, ``optimizer.safetensors``, optionally
``average.safetensors`` (the weight average so far) and ``state.json`` (step, history,
schedule, the run's recipe and data), each written atomically and ``state.json`` last, so a
crash leaves the previous checkpoint whole.
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
    """Weights, optimizer state, the weight average if any, and ``state.json`` last."""
    from safetensors.torch import save_file

    tensors = {}
    for idx, per_param in opt.state_dict()["state"].items():
        for key, value in per_param.items():
            tensors[f"{idx}/{key}"] = _to_cpu_tensor(value)
    payloads = [("model.safetensors", {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}),
                ("optimizer.safetensors", tensors)]
    if average is not None:
        payloads.append(("average.safetensors", average.tensors()))
        state = {**state, "average": average.state()}
    for name, payload in payloads:
        tmp = ckpt_dir / f".{name}.partial"
        save_file(payload, tmp)
        os.replace(tmp, ckpt_dir / name)
    tmp = ckpt_dir / ".state.json.partial"
    tmp.write_text(json.dumps(state))
    os.replace(tmp, ckpt_dir / "state.json")


def load_checkpoint(ckpt_dir: Path, model, opt, average: WeightAverage | None = None) -> dict:
    """Load the checkpoint's weights, optimizer state and weight average (if ``average`` is
    given and the checkpoint has one) in place; returns its ``state.json``."""
    from safetensors.torch import load_file

    state = json.loads((ckpt_dir / "state.json").read_text())
    model.load_state_dict(load_file(ckpt_dir / "model.safetensors"))
    if opt is not None:
        _load_optimizer(opt, load_file(ckpt_dir / "optimizer.safetensors"), state["lr"])
    if average is not None and "average" in state:
        average.load(state["average"], load_file(ckpt_dir / "average.safetensors"), ckpt_dir)
    return state


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
