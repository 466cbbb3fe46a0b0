"""The training loop at tiny size on the real Biome patches: card, checkpoints, resume."""

from __future__ import annotations

import json

import pytest
import torch

from sensei_xr.errors import BandError
from sensei_xr.models import load_model
from sensei_xr.datasets import load_dataset
from sensei_xr.training.recipe import finished_model
from sensei_xr.training.train import finish_from_checkpoint, train

TINY = {
    "name": "tiny-loop-test",
    "model": {"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]},
    "patch_size": 32, "batch_size": 2, "steps": 4, "steps_per_epoch": 2,
    "optimizer": "adamw", "lr": 1e-3, "device": "cpu",
    "val_band_sets": {"all": None, "rgb_nir": ["B2", "B3", "B4", "B5"]},
}


def test_train_writes_loadable_model_with_card(shared_data, tmp_path):
    logs = []
    card = train(TINY, shared_data, tmp_path / "m", log=logs.append)
    assert [h["step"] for h in card["training"]["history"]] == [2, 4]
    assert set(card["validation_metrics"]) == {"all", "rgb_nir"}
    for m in card["validation_metrics"].values():
        assert 0.0 <= m["overall_accuracy"] <= 1.0 and m["pixels"] > 0
    assert "8 images of landsat8_oli_tirs" in card["training"]["validation_data"]
    model = load_model(tmp_path / "m.safetensors")
    assert model.card["name"] == "tiny-loop-test"
    # Resume: asking for more steps continues from the checkpoint, not from scratch.
    more = train({**TINY, "steps": 6}, shared_data, tmp_path / "m", log=logs.append)
    assert any("resumed at step 4" in line for line in logs)
    assert [h["step"] for h in more["training"]["history"]] == [2, 4, 6]
    state = json.loads((tmp_path / "m.ckpt" / "state.json").read_text())
    assert state["step"] == 6
    # Resumed (4 + 2 steps) equals uninterrupted (6 steps): weights and optimizer state
    # (AdamW moments) come back exactly.
    straight = train({**TINY, "steps": 6}, shared_data, tmp_path / "s", log=lambda m: None)
    resumed = load_model(tmp_path / "m.safetensors").state_dict()
    for k, v in load_model(tmp_path / "s.safetensors").state_dict().items():
        assert torch.equal(v, resumed[k]), k
    assert straight["training"]["history"][-1]["train_loss"] == pytest.approx(
        more["training"]["history"][-1]["train_loss"], abs=1e-6)


def test_a_checkpoint_or_a_finished_model_of_another_run_is_refused(shared_data, tmp_path):
    """Resuming another recipe's checkpoint, or reusing another recipe's finished model (a
    release or a cross-validation fold), would mix two runs without a word: refused, naming
    the difference. More steps for the same run stay allowed (the resume test above)."""
    train(TINY, shared_data, tmp_path / "m", log=lambda m: None)
    state = json.loads((tmp_path / "m.ckpt" / "state.json").read_text())
    assert finished_model(tmp_path / "m", TINY)
    assert not finished_model(tmp_path / "absent", TINY)
    with pytest.raises(ValueError, match=r"another recipe than this run's \(seed: 0 there, 1 here\)"):
        finished_model(tmp_path / "m", {**TINY, "seed": 1})
    with pytest.raises(ValueError, match=r"steps: 4 there, 6 here"):
        finished_model(tmp_path / "m", {**TINY, "steps": 6})
    with pytest.raises(ValueError, match=r"checkpoint in .*m\.ckpt was trained by another recipe .*"
                                         r"mosaic_probability: 0\.0 there, 0\.5 here"):
        train({**TINY, "steps": 6, "mosaic_probability": 0.5}, shared_data, tmp_path / "m", log=lambda m: None)
    with pytest.raises(ValueError, match=r"trained on other data"):
        train({**TINY, "steps": 6}, shared_data, tmp_path / "m", log=lambda m: None,
              train_samples=load_dataset("biome_patches", split="val")[:2])
    # Nothing was trained or written by the refused runs.
    assert json.loads((tmp_path / "m.ckpt" / "state.json").read_text()) == state


def test_finish_from_checkpoint(shared_data, tmp_path):
    train(TINY, shared_data, tmp_path / "m", log=lambda m: None)
    (tmp_path / "m.safetensors").unlink()
    card = finish_from_checkpoint(TINY, shared_data, tmp_path / "m")
    assert card["training"]["steps_done"] == 4
    assert load_model(tmp_path / "m.safetensors").num_classes == 2


def test_dataset_tables_synthetic_clouds_and_table3_band_sets(shared_data, tmp_path):
    config = {**TINY, "name": "tables",
              "train_data": [{"dataset": "biome_patches", "split": "train", "weight": 1.0}],
              "val_data": [{"dataset": "biome_patches", "split": "val"}],
              "synthetic_clouds": {"probability": 1.0}, "schedule": "cosine", "steps": 2,
              "augmentation": {"thermal_shift": 10.0}, "band_limit_jitter": {"centre_fraction": 0.05},
              "val_band_sets": {"all": None, "rgbnir": "RGBNIR", "no_thermal": "no_thermal"}}
    card = train(config, shared_data, tmp_path / "t", log=lambda m: None)
    assert card["training"]["data"].startswith("biome_patches (train): 16 images")
    assert "synthetic clouds" in card["training"]["augmentation"]
    assert card["training"]["recipe"]["synthetic_clouds"] == {"probability": 1.0}
    assert card["training"]["recipe"]["augmentation"] == {"thermal_shift": 10.0}
    assert card["training"]["recipe"]["band_limit_jitter"] == {"centre_fraction": 0.05}
    assert "band limits SEnSeI is told jittered per batch (centres by up to +-5%, half-widths by up to x2)" \
        in card["training"]["augmentation"]
    assert set(card["validation_metrics"]) == {"all", "rgbnir", "no_thermal"}
    # Cosine schedule: the last step ran at (almost) lr_min.
    assert card["training"]["history"][-1]["lr"] < 1e-3


def test_a_model_trained_without_thermal_bands_never_sees_one(shared_data, tmp_path):
    """thermal_bands = false: the calibrations are of reflective bands only, the card records
    it, and the engine masks a scene with B10 on the calibrated reflective bands (its
    probabilities are those of the same scene without B10)."""
    import numpy as np

    from sensei_xr.evaluation.predict import predict_probability

    config = {**TINY, "name": "no-thermal", "thermal_bands": False, "bn_recalibration_batches": 2,
              "bn_calibration_sets": ["ALL", "NoRGB"], "val_band_sets": {"all": None}}
    card = train(config, shared_data, tmp_path / "nt", log=lambda m: None)
    assert card["training"]["recipe"]["thermal_bands"] is False
    model = load_model(tmp_path / "nt.safetensors")
    cal = {name: len(desc) for name, (desc, _) in model.bn_calibrations.items()}
    assert cal == {"ALL": 7, "NoRGB": 4}  # B2-B7 + B9; B5-B7 + B9 (Biome patches: 8 bands, B10 thermal)
    sample = load_dataset("biome_patches", split="val")[0]
    assert "B10" in sample.descriptors.names
    with_b10 = predict_probability(model, sample, "ALL")
    assert np.array_equal(with_b10, predict_probability(model, sample, "no_thermal"), equal_nan=True)
    # Named in bands=, a thermal band is refused; given a scene, left out (no calibration
    # matches B4-B6 + B10, so without the rule the model would see B10).
    from sensei_xr.evaluation.predict import sample_to_dataarray
    from sensei_xr.inference import cloud_probability

    da = sample_to_dataarray(sample, ["B4", "B5", "B6", "B10"])
    with pytest.raises(BandError, match=r"trained without thermal bands .*\['B10'\]; leave them out"):
        cloud_probability(da, model, bands=["B4", "B5", "B10"])
    odd = cloud_probability(da, model)
    assert odd.attrs["bands_used"] == "B4,B5,B6"
    # The same computation; float32 rounding may differ with the input's memory layout (the
    # engine's band selection is a view), so not bit for bit: a model seeing B10 differs by far more.
    np.testing.assert_allclose(odd.values, cloud_probability(da.sel(band=["B4", "B5", "B6"]), model).values,
                               rtol=0, atol=1e-6)
    # With the default, the same recipe keeps B10 (8 bands in ALL's calibration).
    train({**config, "thermal_bands": True}, shared_data, tmp_path / "t", log=lambda m: None)
    assert load_model(tmp_path / "t.safetensors").bn_calibrations["ALL"][0].shape[0] == 8
    # A sample of thermal bands alone has nothing left: said, not trained on empty images.
    from dataclasses import replace

    only_b10 = replace(sample, image=sample.image[[7]], descriptors=sample.descriptors.select(["B10"]))
    with pytest.raises(ValueError, match="has only thermal bands .*B10.*leave it out"):
        only_b10.without_thermal()
    assert sample.without_thermal().descriptors.names == ("B2", "B3", "B4", "B5", "B6", "B7", "B9")


@pytest.mark.parametrize("bad, message", [
    ({"train_data": [{"dataset": "biome_patches", "splt": "train"}]}, "unknown key"),
    ({"train_data": [{"dataset": "nope"}]}, "unknown dataset"),
    ({"schedule": "linear"}, "schedule must be"),
    ({"synthetic_clouds": {"probability": 2.0}}, "probability"),
    ({"augmentation": {"thermal_shfit": 15.0}}, r"augmentation option\(s\) \['thermal_shfit'\] unknown"),
    ({"augmentation": {"thermal_shift": -1.0}}, "thermal_shift must be"),
    ({"weight_average_from": 1.0}, r"weight_average_from must be a share of the steps in \[0, 1\)"),
    ({"weight_average_from": 0.5, "bn_recalibration_batches": 0}, "needs bn_recalibration_batches > 0"),
    ({"thermal_bands": "no"}, "thermal_bands must be true or false"),
    ({"warm_test": 1}, "warm_test must be true, false or a table"),
    ({"nir_snow_test": {}}, "nir_snow_test must be true, false or a table"),
    ({"nir_snow_test": {"ndvi_limit": 0.2}}, "ndvi_limit is an NDVI from -0.3 to 0.0"),
    ({"nir_snow_test": {"ndvi_max": -0.05}}, r"unknown options \['ndvi_max'\]; it takes: ndvi_limit"),
    ({"warm_test": {"bt_min_k": 290}}, "it takes: none"),
    ({"pixel_member": {"steps": 0}}, "pixel_member steps must be a positive integer"),
    ({"model": {**TINY["model"], "pixel_member": {"regions": ["blue"]}}}, "not in its model table"),
])
def test_bad_training_configs_are_explained(shared_data, tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        train({**TINY, **bad}, shared_data, tmp_path / "bad", log=lambda m: None)


def test_resolve_bands():
    from sensei_xr.bands import BandDescriptors
    from sensei_xr.evaluation import resolve_bands

    desc = BandDescriptors.from_sensor("landsat8_oli_tirs")
    assert resolve_bands(desc) == list(desc.names)
    assert resolve_bands(desc, "RGBNIR") == ["B2", "B3", "B4", "B5"]
    assert "B10" not in resolve_bands(desc, "no_thermal") and "B9" in resolve_bands(desc, "no_thermal")
    assert resolve_bands(desc, ["B4", "B3"]) == ["B4", "B3"]


def test_cosine_run_resumes_and_fine_tunes_from_a_model(shared_data, tmp_path):
    cosine = {**TINY, "schedule": "cosine", "steps": 4}

    def stop_at_step_4(line):
        if line.startswith("step 4:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cosine, shared_data, tmp_path / "c", log=stop_at_step_4)
    logs = []
    card = train(cosine, shared_data, tmp_path / "c", log=logs.append)
    assert any("resumed at step 2" in line for line in logs)
    assert [h["step"] for h in card["training"]["history"]] == [2, 4]
    # Its rate at every step depends on its length: given more steps it would be another run.
    with pytest.raises(ValueError, match=r"steps: 4 there, 6 here"):
        train({**cosine, "steps": 6}, shared_data, tmp_path / "c", log=lambda m: None)
    # Fine-tuning starts from the trained model's weights (lr 0: nothing moves).
    tuned = train({**TINY, "name": "tuned", "steps": 1, "steps_per_epoch": 1, "lr": 0.0, "lr_min": 0.0,
                   "init_model": str(tmp_path / "c.safetensors")}, shared_data, tmp_path / "t", log=lambda m: None)
    assert tuned["training"]["initial_model"] == str(tmp_path / "c.safetensors")
    # (Parameters only: batch-norm running statistics move in any training step.)
    start = dict(load_model(tmp_path / "c.safetensors").named_parameters())
    end = dict(load_model(tmp_path / "t.safetensors").named_parameters())
    for k, v in start.items():
        assert torch.equal(v, end[k]), k
    with pytest.raises(ValueError, match="same classes"):
        train({**TINY, "model": {**TINY["model"], "classes": ["clear", "cloud", "shadow"]},
               "init_model": str(tmp_path / "c.safetensors")}, shared_data, tmp_path / "x", log=lambda m: None)


def test_loader_workers_give_the_same_training(shared_data, tmp_path):
    base = {**TINY, "steps": 2, "steps_per_epoch": 2, "val_band_sets": {"all": None}}
    train(base, shared_data, tmp_path / "w0", log=lambda m: None)
    train({**base, "num_workers": 2}, shared_data, tmp_path / "w2", log=lambda m: None)
    a = load_model(tmp_path / "w0.safetensors").state_dict()
    b = load_model(tmp_path / "w2.safetensors").state_dict()
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


def test_batchnorm_recalibration_averages_training_batches(shared_data):
    from sensei_xr.models import build_model
    from sensei_xr.datasets import load_dataset
    from sensei_xr.training.batchnorm import recalibrate_batchnorm

    train_samples = load_dataset("biome_patches", root=shared_data / "l8_biome_patches", split="train")
    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    params = {k: v.clone() for k, v in model.named_parameters()}
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.all(bn.running_mean == 0)  # fresh: never updated
    recalibrate_batchnorm(model, train_samples, batches=3, patch_size=64, batch_size=2)
    assert not model.training and bn.momentum == 0.1  # momentum restored
    assert not torch.all(bn.running_mean == 0) and int(bn.num_batches_tracked) == 3
    for k, v in model.named_parameters():  # buffers only
        assert torch.equal(v, params[k]), k
    # Deterministic: the same seed gives the same statistics.
    again = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    again.load_state_dict({**model.state_dict()})
    recalibrate_batchnorm(again, train_samples, batches=3, patch_size=64, batch_size=2)
    bn2 = next(m for m in again.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.allclose(bn.running_mean, bn2.running_mean) and torch.allclose(bn.running_var, bn2.running_var)


def test_band_set_calibrations_measure_each_set_and_keep_the_models_own(shared_data):
    import torch

    from sensei_xr.datasets import load_dataset
    from sensei_xr.models import build_model
    from sensei_xr.training.batchnorm import calibrate_band_sets

    torch.manual_seed(0)
    samples = load_dataset("biome_patches", shared_data / "l8_biome_patches", "train")[:3]
    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    before = {k: v.clone() for k, v in model.head.state_dict().items()}
    done = calibrate_band_sets(model, [samples], ["RGB", "RGBNIR", "AeroRGBNIR"], batches=2, patch_size=32,
                               batch_size=2)
    assert done == ["RGB", "RGBNIR"]  # no coastal band in the Biome patches: skipped
    assert all(torch.equal(v, before[k]) for k, v in model.head.state_dict().items())
    rgb = model.bn_calibrations["RGB"][1]
    assert not torch.allclose(rgb["bn.running_mean"], before["bn.running_mean"])
    assert not torch.allclose(rgb["bn.running_mean"], model.bn_calibrations["RGBNIR"][1]["bn.running_mean"])


def test_weight_average_is_the_mean_of_the_late_steps_and_survives_a_resume(shared_data, tmp_path):
    """``weight_average_from``: the model's parameters are the mean of the weights after each
    step past the share, the same whether the run was interrupted and resumed or not."""
    from safetensors.torch import load_file

    quiet = {**TINY, "steps_per_epoch": 1, "val_band_sets": {"all": None}}
    late = []
    for steps in (3, 4):  # the weights after steps 3 and 4 of one run (same seed, same batches)
        train({**quiet, "steps": steps}, shared_data, tmp_path / f"p{steps}", log=lambda m: None)
        late.append(dict(load_model(tmp_path / f"p{steps}.safetensors").named_parameters()))
    card = train({**quiet, "steps": 4, "weight_average_from": 0.5}, shared_data, tmp_path / "a", log=lambda m: None)
    assert card["training"]["recipe"]["weight_average_from"] == 0.5
    averaged = dict(load_model(tmp_path / "a.safetensors").named_parameters())
    for k, v in averaged.items():
        assert torch.allclose(v, (late[0][k] + late[1][k]) / 2, atol=1e-6), k
    assert not all(torch.equal(v, late[1][k]) for k, v in averaged.items())

    # Interrupted just before the checkpoint of step 5 (the log line comes first), with one
    # step averaged; resumed below.
    swa = {**quiet, "steps": 6, "weight_average_from": 0.5}

    def stop_at_step_5(line):
        if line.startswith("step 5:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(swa, shared_data, tmp_path / "r", log=stop_at_step_5)
    state = json.loads((tmp_path / "r.ckpt" / "state.json").read_text())
    assert state["step"] == 4 and state["average"] == {"start_step": 3, "count": 1}
    # A checkpoint written after averaging began, then finished as it stands.
    train({**swa, "steps": 6}, shared_data, tmp_path / "f", log=lambda m: None)
    finished = finish_from_checkpoint(swa, shared_data, tmp_path / "f")
    assert finished["training"]["steps_done"] == 6
    mean = load_file(tmp_path / "f.ckpt" / "average.safetensors")
    for k, v in load_model(tmp_path / "f.safetensors").named_parameters():
        assert torch.allclose(v, mean[k]), k
    train(swa, shared_data, tmp_path / "r", log=lambda m: None)
    straight = dict(load_model(tmp_path / "f.safetensors").named_parameters())
    for k, v in load_model(tmp_path / "r.safetensors").named_parameters():
        assert torch.allclose(v, straight[k], atol=1e-6), k
    # Given more steps, the average would begin at another step: refused, naming why.
    with pytest.raises(ValueError, match="averages the weights from step 3, this run from step 4"):
        train({**swa, "steps": 8}, shared_data, tmp_path / "r", log=lambda m: None)
