"""The training loop under the things that go wrong in real runs: interrupted saves and
resumes, batches with nothing labelled, wrong units, misspelt configs, no-data borders.
Tiny runs on the real Biome patches."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sensei_xr.datasets import IGNORE_INDEX, load_dataset
from sensei_xr.errors import BandError
from sensei_xr.models import load_model
from sensei_xr.training import checkpoints
from sensei_xr.training.recipe import load_config
from sensei_xr.training.train import _plateau_step, _train_step, train

TINY = {
    "model": {"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]},
    "patch_size": 32, "batch_size": 2, "steps": 4, "steps_per_epoch": 2,
    "optimizer": "adamw", "lr": 1e-3, "device": "cpu", "val_band_sets": {"all": None},
}
# The paper's DeepLabv3+ has dropout (p 0.1 before its classifier): torch's random stream.
DEEPLAB = {**TINY, "model": {**TINY["model"], "head": "deeplabv3plus"}, "schedule": "cosine", "steps": 4,
           "lr_min": 1e-5, "bn_recalibration_batches": 2}


class Interrupted(Exception):
    pass


def _crops(split: str, n: int, size: int = 64) -> list:
    """The first ``n`` Biome patches of ``split``, cut to ``size`` px (fast runs)."""
    return [replace(s, image=s.image[:, :size, :size], labels=s.labels[:size, :size], nodata=s.nodata[:size, :size])
            for s in load_dataset("biome_patches", split=split)[:n]]


def _run(config, shared_data, out, log=lambda m: None, train_n: int = 6, train_samples=None):
    """``train`` on a few cropped patches, validated on one."""
    return train(config, shared_data, out, log=log, train_samples=train_samples or _crops("train", train_n),
                 val_samples=_crops("val", 1))


def _stop_at(step: int):
    """A log callback that interrupts the run at the end of epoch ``step``, before its
    checkpoint is written (the log line comes first)."""
    def log(line):
        if line.startswith(f"step {step}:"):
            raise Interrupted

    return log


def test_a_resumed_run_equals_the_uninterrupted_one_dropout_included(shared_data, tmp_path):
    """Interrupted and resumed, a cosine DeepLabv3+ run ends with the weights of the same
    run uninterrupted: optimizer state and torch's random state (dropout) come back."""
    straight = _run(DEEPLAB, shared_data, tmp_path / "s")
    with pytest.raises(Interrupted):
        _run(DEEPLAB, shared_data, tmp_path / "r", log=_stop_at(4))
    assert json.loads((tmp_path / "r.ckpt" / "state.json").read_text())["step"] == 2
    logs = []
    resumed = _run(DEEPLAB, shared_data, tmp_path / "r", log=logs.append)
    assert any("resumed at step 2" in line for line in logs)
    a = load_model(tmp_path / "s.safetensors").state_dict()
    for k, v in load_model(tmp_path / "r.safetensors").state_dict().items():
        assert torch.equal(v, a[k]), k
    assert resumed["training"]["history"][-1]["train_loss"] == straight["training"]["history"][-1]["train_loss"]
    # A cosine run's rate at every step depends on its length: more steps are another run.
    with pytest.raises(ValueError, match=r"steps: 4 there, 6 here"):
        _run({**DEEPLAB, "steps": 6}, shared_data, tmp_path / "r")


def test_a_checkpoint_of_another_model_is_refused(shared_data, tmp_path):
    """The model (here the order of its classes) is part of the recipe a checkpoint records."""
    with pytest.raises(Interrupted):
        _run(TINY, shared_data, tmp_path / "m", log=_stop_at(4))
    swapped = {**TINY, "model": {**TINY["model"], "classes": ["cloud", "clear"]}}
    with pytest.raises(ValueError, match=r"model: .*'clear', 'cloud'.* there, .*'cloud', 'clear'.* here"):
        _run(swapped, shared_data, tmp_path / "m")


def test_an_interrupted_save_never_resumes_mixed_steps(shared_data, tmp_path, monkeypatch):
    """A save that fails while writing (e.g. a full disk) leaves the previous checkpoint
    whole; one that fails between two replaces leaves files of two steps, which resuming
    refuses instead of continuing new weights at the old step."""
    from safetensors.torch import save_file

    with pytest.raises(Interrupted):
        _run(TINY, shared_data, tmp_path / "m", log=_stop_at(4))
    before = {p.name: p.read_bytes() for p in (tmp_path / "m.ckpt").iterdir()}
    writes = []

    def full_disk(payload, path, metadata=None):
        writes.append(path)
        if len(writes) == 2:
            raise OSError(28, "No space left on device")
        save_file(payload, path, metadata=metadata)

    monkeypatch.setattr("safetensors.torch.save_file", full_disk)
    with pytest.raises(OSError, match="No space"):
        _run(TINY, shared_data, tmp_path / "m")
    monkeypatch.undo()
    after = {p.name: p.read_bytes() for p in (tmp_path / "m.ckpt").iterdir() if not p.name.startswith(".")}
    assert after == before  # nothing replaced
    # Now the replaces: the model file is replaced, then the save stops.
    real_replace, replaced = checkpoints.os.replace, []

    def stop_after_first(src, dst):
        if replaced:
            raise OSError(5, "Input/output error")
        replaced.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(checkpoints.os, "replace", stop_after_first)
    with pytest.raises(OSError, match="Input/output"):
        _run(TINY, shared_data, tmp_path / "m")
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"inconsistent: state.json is at step 2 but model.safetensors at step 4"):
        _run(TINY, shared_data, tmp_path / "m")


def test_batches_with_nothing_labelled_neither_step_nor_count(shared_data, tmp_path):
    """A batch whose pixels are all ignored has the mean loss 0 / 0: it makes no step and
    leaves the epoch's loss (which steers the plateau schedule) finite."""
    samples = _crops("train", 8)
    blank = [replace(s, labels=np.full_like(s.labels, IGNORE_INDEX)) for s in samples[:6]]
    card = _run({**TINY, "steps": 8, "steps_per_epoch": 4}, shared_data, tmp_path / "b",
                train_samples=blank + samples[6:])
    assert all(math.isfinite(h["train_loss"]) for h in card["training"]["history"])

    model = load_model(tmp_path / "b.safetensors").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = {"images": torch.rand(2, 8, 16, 16), "descriptors": torch.from_numpy(samples[0].descriptors.normalised()),
             "labels": torch.full((2, 16, 16), IGNORE_INDEX)}
    assert _train_step(model, opt, torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX), batch, "cpu") is None
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # An epoch that had no labelled pixel at all (loss nan) is no evidence of a plateau.
    schedule, cfg = {"best": 0.3, "bad_epochs": 1}, {"schedule": "plateau", "plateau_patience": 2, "lr_min": 2e-5}
    _plateau_step(cfg, opt, schedule, math.nan)
    assert schedule == {"best": 0.3, "bad_epochs": 1} and opt.param_groups[0]["lr"] == 1e-2


@pytest.mark.parametrize("bad, message", [
    ({"optimizer": "SGD"}, r"optimizer must be one of 'sgd', 'adamw' \(lower case\), not 'SGD'"),
    ({"optimizer": "adam"}, "optimizer must be one of"),
    ({"lr": 1e-5}, r"need 0 <= lr_min <= lr, got lr 1e-05 and lr_min 2e-05"),
    ({"steps_per_epoch": 0}, "steps_per_epoch must be a whole number >= 1"),
    ({"batch_size": 2.5}, "batch_size must be a whole number >= 1"),
    ({"bn_calibration_sets": ["RGBN"]}, "bn_calibration_sets: unknown band set 'RGBN'"),
    ({"val_band_sets": {"four": "RGBN"}}, "val_band_sets 'four': unknown band set 'RGBN'"),
    # Known names the data cannot form: found before training, not after it.
    ({"bn_calibration_sets": ["AeroRGBNIR"]}, "no training source has the bands of 'AeroRGBNIR'"),
    ({"val_band_sets": {"aero": "AeroRGBNIR"}}, r"val_band_sets 'aero' \('AeroRGBNIR'\): validation sample"),
])
def test_config_mistakes_are_refused_before_training(shared_data, tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        _run({**TINY, **bad}, shared_data, tmp_path / "bad")
    assert not (tmp_path / "bad.ckpt").exists()  # nothing ran


def test_a_config_file_with_a_bad_value_names_the_file(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text('optimizer = "Adamw"\n')
    with pytest.raises(ValueError, match=r"recipe\.toml: optimizer must be one of"):
        load_config(path)


def test_training_refuses_samples_in_the_wrong_units(shared_data, tmp_path):
    """Reflectance x 10000 trains nothing: the engine would refuse such scenes, so a model
    trained on them could never be used."""
    samples = _crops("train", 4, 256)
    scaled = [replace(samples[1], image=samples[1].image * np.float32(10000))] + samples[2:]
    with pytest.raises(BandError, match=f"in training sample '{samples[1].name}'"):
        _run(TINY, shared_data, tmp_path / "u", train_samples=scaled)


@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.6))
@settings(max_examples=30, deadline=None)
def test_training_input_sets_no_data_to_zero_before_scaling(shared_data, seed, share):
    """Whatever lacks data in a patch, the network's input is finite, the valid pixels are
    the scaled values, and a no-data pixel of a band takes one value, that of 0 reflectance
    (0 K in a thermal band) scaled, whatever its neighbours hold: the zero fill this
    recipe is measured with, not the engine's neighbour fill (``model_input``'s docstring).
    """
    from sensei_xr.bands import to_model_input
    from sensei_xr.training.samplers import model_input

    s = load_dataset("biome_patches", split="val")[0]
    rng = np.random.default_rng(seed)
    values = s.image[:, :48, :48].copy()
    holes = rng.random(values.shape[1:]) < share
    band = rng.integers(0, values.shape[0], size=holes.shape)
    ys, xs = np.nonzero(holes)
    values[band[holes], ys, xs] = np.nan  # one band missing per hole
    x = model_input(values, s.descriptors)
    scaled = to_model_input(s.image[:, :48, :48], s.descriptors)
    zero = to_model_input(np.zeros((values.shape[0], 1, 1), np.float32), s.descriptors)[:, 0, 0]
    assert x.dtype == np.float32 and np.isfinite(x).all()
    missing = np.isnan(values)
    np.testing.assert_array_equal(x[~missing], scaled[~missing])
    for b in range(values.shape[0]):
        np.testing.assert_array_equal(x[b][missing[b]], np.full(missing[b].sum(), zero[b]))
