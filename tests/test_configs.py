"""The shipped training configs parse, name registered datasets and known options."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import pytest

from sensei_xr.cli import main
from sensei_xr.datasets import DATASET_LOADERS, list_datasets
from sensei_xr.training.pretrain import PRETRAIN_DEFAULTS
from sensei_xr.training.recipe import DEFAULT_CONFIG, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TRAIN_CONFIGS = sorted(p for p in CONFIGS.glob("*.toml") if p.name != "pretrain_encoder.toml")


def test_configs_ship():
    names = {p.name for p in TRAIN_CONFIGS}
    assert {"paper_s2.toml", "paper_s2_l8.toml", "paper_fixed_bands.toml"} <= names
    systems = {p.name for p in (CONFIGS / "systems").glob("*.toml")}
    assert {"sensei_dlv3.toml", "dlv3_fixed.toml", "sensei_nn.toml", "nn_fixed.toml", "pixel_gbm.toml"} <= systems


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_training_config_is_valid(path):
    config = load_config(path)  # unknown keys raise
    assert set(config) <= set(DEFAULT_CONFIG) | {"name", "init_encoder", "init_model"}
    for key in ("train_data", "val_data"):
        sources = config[key] if isinstance(config[key], list) else [config[key]]
        for src in sources:
            if isinstance(src, dict):
                assert src["dataset"] in list_datasets(), src
                assert set(src) <= {"dataset", "root", "split", "weight", "options"}
                # Options are the loader's keyword-only parameters (a typo would fail at load time).
                loader = DATASET_LOADERS[src["dataset"]]
                known = {n for n, p in inspect.signature(loader).parameters.items() if p.kind == p.KEYWORD_ONLY}
                assert set(src.get("options", {})) <= known, (src, sorted(known))
    assert config["model"]["head"] in ("deeplabv3plus", "pixelnet")


def test_paper_configs_follow_the_paper_recipe():
    for name in ("paper_s2.toml", "paper_s2_l8.toml", "paper_fixed_bands.toml"):
        c = load_config(CONFIGS / name)
        assert (c["optimizer"], c["momentum"], c["lr"], c["lr_min"], c["batch_size"], c["patch_size"]) == \
            ("sgd", 0.99, 1e-3, 2e-5, 8, 257)
        assert c["schedule"] == "plateau"
    assert load_config(CONFIGS / "paper_fixed_bands.toml")["band_subsets"] is False


def test_pretrain_config_and_cli(tmp_path, capsys):
    config = tomllib.loads((CONFIGS / "pretrain_encoder.toml").read_text())
    assert set(config) <= set(PRETRAIN_DEFAULTS)
    out = tmp_path / "enc.safetensors"
    assert main(["pretrain", "--out", str(out), "--steps", "2", "--device", "cpu"]) == 0
    assert out.is_file()
    # Existing output without --overwrite, a wrong suffix: exit 2 with one line.
    assert main(["pretrain", "--out", str(out), "--steps", "2"]) == 2
    assert main(["pretrain", "--out", str(tmp_path / "enc.pt"), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err or "exists" in err
    assert "must end in .safetensors" in err


@pytest.mark.parametrize("path", sorted((CONFIGS / "systems").glob("*.toml")), ids=lambda p: p.name)
def test_system_config_is_valid(path):
    """Every system of the cross-validation table reads, and names what its kind needs."""
    from sensei_xr.evaluation import BAND_SETS
    from sensei_xr.evaluation.peers import list_peers
    from sensei_xr.training.crossval import read_system

    system = read_system(path)
    assert system.get("system"), "a system needs a name for the table"
    kind = system.get("kind", "network")
    assert kind in ("network", "ensemble", "pixel_gbm", "peer")
    if kind == "ensemble":  # its members are network systems of this folder
        assert len(system["member_systems"]) == len(system["members"]) >= 2
        assert all((path.parent / m).is_file() for m in system["members"])
    for name in system.get("fixed_bands", []):
        assert name in BAND_SETS
    if system.get("init_encoder"):  # a pre-trained encoder the recipe starts from ships with it
        assert (CONFIGS.parent / system["init_encoder"]).is_file(), system["init_encoder"]
    if kind == "peer":
        assert system["peers"] and set(system["peers"]) <= set(BAND_SETS)
        assert set(system["peers"].values()) <= set(list_peers())
    if kind == "network":
        assert system["model"]["head"] in ("deeplabv3plus", "deeplabv3plus_wide", "deeplabv3plus_pixel", "pixelnet")
        if system.get("synthetic_clouds") is not None:  # its options build the generator (a typo fails here)
            from sensei_xr.training.synthetic import synthetic_clouds_for

            synthetic_clouds_for(system["synthetic_clouds"], tuple(system["model"]["classes"]))
        if system.get("named_band_sets") is not None:  # known keys, known band set names
            from sensei_xr.evaluation import BAND_SETS
            from sensei_xr.training.train import _named_band_sets

            named = _named_band_sets(system["named_band_sets"])
            assert set(named["named_band_sets"]) <= set(BAND_SETS) and 0 < named["named_probability"] <= 1
    # `sensei-xr train --config` takes a network system with no fixed band sets as it is.
    if kind == "network" and "fixed_bands" not in system:
        config = load_config(path)
        assert config["steps"] == system["steps"] and "system" not in config
    else:
        with pytest.raises(ValueError, match="sensei_xr.training.crossval"):
            load_config(path)
