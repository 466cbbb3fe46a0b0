"""Self-supervised SEnSeI pre-training: random sensors, real library spectra, the loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sensei_xr.bands import THERMAL_FROM_NM, BandDescriptors
from sensei_xr.models import SEnSeI, load_model
from sensei_xr.training.pretrain import SpectrumSampler, pretrain_encoder, random_band_set


@pytest.fixture(scope="module")
def library(shared_data):
    return shared_data / "spectral_library_earthlib" / "earthlib_surfaces_10nm.npz"


def test_random_band_sets_look_like_sensor_bands():
    wl = np.concatenate([random_band_set(np.random.default_rng(s), 14) for s in range(50)])
    assert (wl[:, 0] < wl[:, 1]).all() and (wl[:, 1] < wl[:, 2]).all()
    assert wl.min() > 300 and wl.max() < 20000
    thermal = wl[:, 1] >= THERMAL_FROM_NM
    assert 0.1 < thermal.mean() < 0.3
    rel_width = (wl[~thermal, 2] - wl[~thermal, 0]) / wl[~thermal, 1]
    assert rel_width.max() <= 0.12 + 1e-9
    # Accepted by the model's descriptor checks.
    BandDescriptors(tuple(f"b{i}" for i in range(len(wl))), wl,
                    tuple("thermal" if t else "reflective" for t in thermal))


def test_spectra_are_physical_in_any_band_set(library):
    sampler = SpectrumSampler(library)
    rng = np.random.default_rng(0)
    # Landsat 8-like bands: blue, red, NIR, SWIR1, TIR.
    bands = np.array([[452, 482, 512], [636, 655, 673], [851, 865, 879], [1566, 1609, 1651],
                      [10600, 10895, 11190]], float)
    v = sampler.sample(rng, 4000, bands)
    assert v.shape == (4000, 5) and np.isfinite(v).all()
    assert v[:, :4].min() >= 0 and v[:, :4].max() <= 1.5
    # Thermal values are scaled brightness temperatures of 200-320 K (with band noise).
    assert -0.05 < v[:, 4].min() and v[:, 4].max() < 1.25
    # Real surfaces: vegetation makes NIR > red for a good share of pixels; snow and cloud
    # make bright visible pixels.
    assert (v[:, 2] > 2 * v[:, 1]).mean() > 0.1
    assert (v[:, 0] > 0.5).mean() > 0.05
    # A band narrower than the 10 nm grid is interpolated, not empty.
    narrow = sampler.sample(np.random.default_rng(1), 10, np.array([[864, 865, 866]], float))
    assert np.isfinite(narrow).all()


def test_pretraining_learns_and_saves_a_loadable_encoder(library, tmp_path, one_torch_thread):
    out = tmp_path / "encoder.safetensors"
    encoder, history = pretrain_encoder(
        library, out, {"steps": 60, "band_sets": 8, "pixels": 16, "log_every": 20, "device": "cpu"},
        log=lambda m: None)
    assert [h["step"] for h in history] == [20, 40, 60]
    # The estimator recovers band values better than at the start.
    assert history[-1]["estimator_mse"] < history[0]["estimator_mse"]
    from safetensors.torch import load_file

    fresh = SEnSeI()
    fresh.load_state_dict(load_file(out))
    for k, v in encoder.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k


def test_training_starts_from_the_pretrained_encoder(library, shared_data, tmp_path, one_torch_thread):
    from sensei_xr.training.train import _encoder_state, train

    out = tmp_path / "encoder.safetensors"
    pretrain_encoder(library, out, {"steps": 2, "band_sets": 2, "pixels": 4, "device": "cpu"},
                     log=lambda m: None)
    state = _encoder_state(str(out), shared_data)
    # lr 0: the trained model's encoder must be exactly the pre-trained one.
    card = train({"name": "from-pretrained", "init_encoder": str(out),
                  "model": {"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]},
                  "patch_size": 32, "batch_size": 2, "steps": 1, "steps_per_epoch": 1,
                  "optimizer": "adamw", "lr": 0.0, "lr_min": 0.0, "device": "cpu",
                  "val_band_sets": {"all": None}},
                 shared_data, tmp_path / "m", log=lambda m: None)
    assert card["training"]["encoder_initialisation"] == str(out)
    trained = load_model(tmp_path / "m.safetensors").encoder.state_dict()
    assert trained.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(trained[k], v), k


def test_training_core_needs_only_torch_and_numpy():
    """A bare GPU machine has torch and NumPy, not Dask, rasterio or pystac."""
    import subprocess
    import sys

    code = ("import sys\n"
            "for m in ['dask', 'rasterio', 'rioxarray', 'xarray', 'pystac', 'pystac_client', 'stackstac', 'zarr']:\n"
            "    sys.modules[m] = None\n"
            "from sensei_xr.training import train, pretrain_encoder, SyntheticClouds, cross_validate\n"
            "from sensei_xr.datasets import load_dataset\n"
            "from sensei_xr.models import build_model, save_model, load_model\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
