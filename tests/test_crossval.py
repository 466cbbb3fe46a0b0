"""Honest selection: scene-disjoint stratified folds, the per-pixel yardstick, CV summaries,
library scenes (hard negatives for any sensor) and cumulus fields, on the real sample data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensei_xr.bands import BandDescriptors
from sensei_xr.evaluation import pooled_confusion
from sensei_xr.evaluation.folds import scene_of, split_folds, stratified_scene_folds
from sensei_xr.training.crossval import (biome_cv_samples, cv_table_markdown, per_patch_markdown, select_bands,
                                        summarise_cv)
from sensei_xr.training.crossval import main as crossval_main
from sensei_xr.datasets import IGNORE_INDEX, LabelledSample


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def biome(shared_data):
    return biome_cv_samples(shared_data / "l8_biome_patches")


def test_biome_folds_are_scene_disjoint_and_one_patch_per_biome(biome):
    folds = stratified_scene_folds(biome, 3)
    assert sorted(i for f in folds for i in f) == list(range(24))
    # Fold 0 is the published validation split (the val patches come first).
    assert [biome[i].name for i in folds[0]] == [s.name for s in biome[:8]]
    for f in folds:
        assert sorted(biome[i].tags["surface"] for i in f) == sorted({s.tags["surface"] for s in biome})
    scenes = [{scene_of(biome[i]) for i in f} for f in folds]
    assert not (scenes[0] & scenes[1] or scenes[0] & scenes[2] or scenes[1] & scenes[2])
    train, held = split_folds(biome, folds, 2)
    assert len(train) == 16 and len(held) == 8 and not {s.name for s in train} & {s.name for s in held}


def _toy(name: str, surface: str) -> LabelledSample:
    desc = BandDescriptors.from_sensor("landsat8_oli_tirs", ["B2", "B3", "B4"])
    return LabelledSample(np.zeros((3, 2, 2), np.float32), desc, np.zeros((2, 2), np.int64),
                          np.zeros((2, 2), bool), "landsat8_oli_tirs", 30.0, name, {"surface": surface})


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 3)), min_size=3, max_size=40),
       st.integers(2, 4))
def test_folds_never_split_a_scene(rows, k):
    """Any samples: each in exactly one fold, a scene's samples together, strata spread."""
    samples = [_toy(f"s{st_}x{sc}_{tile}", f"s{st_}") for st_, sc, tile in rows]
    scenes = {scene_of(s) for s in samples}
    if len(scenes) < k:
        with pytest.raises(ValueError, match="scene-disjoint"):
            stratified_scene_folds(samples, k)
        return
    folds = stratified_scene_folds(samples, k)
    assert sorted(i for f in folds for i in f) == list(range(len(samples)))
    where = {}
    for j, f in enumerate(folds):
        for i in f:
            assert where.setdefault(scene_of(samples[i]), j) == j
    for stratum in {s.tags["surface"] for s in samples}:
        counts = [len({scene_of(samples[i]) for i in f if samples[i].tags["surface"] == stratum}) for f in folds]
        assert max(counts) - min(counts) <= 1  # dealt in turn


def test_pixel_gbm_yardstick_on_the_published_split(biome):
    """LightGBM on single pixels: a strong yardstick on the easy split (the issue: 0.960)."""
    pytest.importorskip("lightgbm", reason="the yardstick needs lightgbm (the baseline extra)")
    from sensei_xr.evaluation import score_images
    from sensei_xr.evaluation.baseline import PixelGBM

    val, train = biome[:8], biome[8:]
    gbm = PixelGBM("RGBNIRSWIR", n_estimators=100, pixels=100_000, seed=0).fit(train)
    p = gbm.predict_probability(val[0])
    assert p.shape == val[0].labels.shape and np.nanmin(p) >= 0 and np.nanmax(p) <= 1
    oa = pooled_confusion(score_images(val, lambda s: gbm.predict_probability(s) >= 0.5, [1])).metrics()
    assert oa["overall_accuracy"] > 0.9
    with pytest.raises(ValueError, match="needs a nir band"):
        gbm.predict_probability(select_bands(val[0], "RGB"))


def test_select_bands_keeps_labels_and_order(biome):
    s = select_bands(biome[0], ["B5", "B2"])
    assert s.descriptors.names == ("B5", "B2") and s.image.shape[0] == 2
    np.testing.assert_array_equal(s.image[1], biome[0].image[0])
    assert s.labels is biome[0].labels


def test_cv_summary_means_folds_then_seeds():
    def run(fold, seed, tp, tn, n=10):
        rows = [{"name": f"img{fold}", "tags": {}, "tp": tp, "fp": n - tp, "tn": tn, "fn": n - tn}]
        return {"fold": fold, "seed": seed, "seconds": 1.0, "band_sets": {"ALL": rows}}

    result = {"system": "toy", "runs": [run(0, 0, 10, 10), run(1, 0, 5, 5), run(0, 1, 10, 10), run(1, 1, 10, 10)]}
    s = summarise_cv(result, n_bootstrap=20)["ALL"]
    assert s["fold_oa"] == [1.0, 0.75]  # fold 1: 0.5 with seed 0, 1.0 with seed 1
    assert s["cv_mean_oa"] == pytest.approx(0.875)
    assert s["seed_spread"] == [0.75, 1.0]
    # Pooled over every image and seed: img0 40/40, img1 30/40.
    assert s["pooled"]["overall_accuracy"] == pytest.approx(70 / 80)
    md = cv_table_markdown([{**result, "summary": {"ALL": s}}], ["ALL"])
    assert "| toy | ALL | **0.875** | 1.000 / 0.750 | 2 (0.750-1.000) |" in md


def test_library_scenes_look_like_their_materials(shared_data):
    from sensei_xr.training.library_scenes import SpectralLibrary, library_scenes

    lib = SpectralLibrary.from_sample_data(shared_data)
    assert np.isfinite(lib.reflectance).all() and lib.reflectance.max() <= 1.5
    assert {"snow_ice", "bright", "water", "surface"} <= set(lib.kind)
    desc = BandDescriptors.from_sensor("sentinel2_msi")
    snow = lib.reflectance[lib.kind == "snow_ice"]
    bands = lib.integrate(snow, desc.wavelengths_nm)
    b03, b11 = desc.names.index("B03"), desc.names.index("B11")
    # Snow: bright in green, dark at 1.6 um (NDSI > 0.4 for most spectra): why it is no cloud.
    ndsi = (bands[:, b03] - bands[:, b11]) / (bands[:, b03] + bands[:, b11])
    assert np.median(ndsi) > 0.4
    scenes = library_scenes(lib, desc, 3, 64, seed=1, sensor="sentinel2_msi")
    again = library_scenes(lib, desc, 3, 64, seed=1, sensor="sentinel2_msi")
    for a, b in zip(scenes, again):
        np.testing.assert_array_equal(a.image, b.image)  # deterministic under the seed
        assert a.image.shape == (13, 64, 64) and (a.labels == 0).all() and not a.nodata.any()
        # Through the atmosphere's water vapour the cirrus band is dark, whatever the surface.
        assert a.image[desc.names.index("B10")].max() < 0.05
    l8 = BandDescriptors.from_sensor("landsat8_oli_tirs")
    thermal = library_scenes(lib, l8, 2, 32, seed=0)[0].image[l8.is_thermal]
    assert 200 < thermal.min() and thermal.max() < 340  # brightness temperature, K


def test_cumulus_fields_are_small_cells():
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy (installed with the peers extra) counts the cells")
    from sensei_xr.training.synthetic import SyntheticClouds, cumulus_field

    a = cumulus_field((256, 256), np.random.default_rng(3), coverage=0.1, cell_px=2.0, alpha_max=0.9)
    cloud = a >= 0.25
    assert 0.02 < cloud.mean() < 0.15
    labels, n = ndimage.label(cloud)
    sizes = np.bincount(labels.ravel())[1:]
    assert n > 20 and np.median(sizes) < 100  # many cells of a few pixels across
    desc = BandDescriptors.from_sensor("landsat8_oli_tirs", ["B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10"])
    img = np.full((8, 64, 64), 0.05, np.float32)
    img[7] = 290.0
    synth = SyntheticClouds(probability=1.0, cumulus_probability=1.0)
    out, lab = synth(img, np.zeros((64, 64), np.int64), desc, np.random.default_rng(0))
    assert (lab == 1).any() and (out[0][lab == 1] > 0.2).all()
    assert out[6][lab == 1].max() < 0.06  # low water cloud: dark in the cirrus band
    assert not (lab == IGNORE_INDEX).all()


def test_haze_brightens_blue_more_than_swir_and_keeps_labels(biome):
    from sensei_xr.training.synthetic import SyntheticClouds

    s = biome[1]  # real Landsat 8 patch
    synth = SyntheticClouds(probability=0.0, haze_probability=1.0)
    out, lab = synth(s.image.copy(), s.labels.copy(), s.descriptors, np.random.default_rng(2))
    np.testing.assert_array_equal(lab, s.labels)  # haze is not cloud
    names = s.descriptors.names
    gain = {b: float(np.nanmean(out[names.index(b)] - s.image[names.index(b)])) for b in ("B2", "B7")}
    assert gain["B2"] > 0.005 and gain["B2"] > 3 * abs(gain["B7"])
    np.testing.assert_array_equal(out[names.index("B10")], s.image[names.index("B10")])  # thermal untouched


def test_peer_system_scores_the_same_held_out_patches(biome):
    """A peer (trained elsewhere) is scored on each fold's held-out patches, so it sits in the
    cross-validation table on the same pixels as the systems trained here."""
    from sensei_xr.evaluation.peers import get_peer
    from sensei_xr.training.crossval import cross_validate

    peer = get_peer("ukis-csmask-4b")
    if peer.unavailable():
        pytest.skip(f"the peer cannot run here (install the peers extra): {peer.unavailable()}")
    samples = [s for s in biome if s.tags["surface"] in ("Barren", "Water")]  # 6 patches, 2 per fold
    system = {"system": "peer", "kind": "peer", "peers": {"RGBNIR": "ukis-csmask-4b"}}
    result = cross_validate(system, samples, k=3, seeds=[0], log=lambda m: None)
    folds = stratified_scene_folds(samples, 3)
    for run in result["runs"]:
        held = [samples[i] for i in folds[run["fold"]]]
        rows = run["band_sets"]["RGBNIR"]
        assert [r["name"] for r in rows] == [s.name for s in held]
        one = select_bands(held[0], "RGBNIR")
        cloud = peer.cloud_mask(one.image, one.descriptors)
        counted = one.labels != IGNORE_INDEX
        assert rows[0]["tp"] == int((cloud & (one.labels == 1) & counted).sum())
    assert set(result["summary"]) == {"RGBNIR"}
    with pytest.raises(ValueError, match="needs peers"):
        cross_validate({"system": "p", "kind": "peer"}, samples, k=3, seeds=[0], log=lambda m: None)


def test_thin_and_thick_labels_score_as_one_cloud_class(biome, shared_data):
    """Labelled with the Biome's thin and thick cloud apart (what a three-class recipe trains
    on), the patches hold the same cloud pixels, and a peer scored on them gets the same
    counts as on the two-class labels: every cloud class counts as cloud."""
    from sensei_xr.evaluation.peers import get_peer
    from sensei_xr.training.crossval import cross_validate

    three = biome_cv_samples(shared_data / "l8_biome_patches", ("clear", "thin_cloud", "thick_cloud"))
    assert [s.name for s in three] == [s.name for s in biome]
    for two_s, three_s in zip(biome, three):
        assert np.array_equal(two_s.labels == 1, np.isin(three_s.labels, [1, 2]))
        assert np.array_equal(two_s.labels == IGNORE_INDEX, three_s.labels == IGNORE_INDEX)
    assert sum(int((s.labels == 1).sum()) for s in three) > 0  # the labellers' thin cloud is there
    peer = get_peer("ukis-csmask-4b")
    if peer.unavailable():
        pytest.skip(f"the peer cannot run here (install the peers extra): {peer.unavailable()}")
    pick = [i for i, s in enumerate(biome) if s.tags["surface"] in ("Barren", "Water")]
    runs = {}
    for classes, samples in ((("clear", "cloud"), biome), (("clear", "thin_cloud", "thick_cloud"), three)):
        system = {"system": "peer", "kind": "peer", "peers": {"RGBNIR": "ukis-csmask-4b"},
                  "model": {"classes": list(classes)}}
        runs[len(classes)] = cross_validate(system, [samples[i] for i in pick], k=3, seeds=[0],
                                            log=lambda m: None)["runs"]
    assert [r["band_sets"] for r in runs[2]] == [r["band_sets"] for r in runs[3]]


def test_kept_fold_model_gains_missing_calibrations_without_retraining(biome, tmp_path):
    """A fold model kept from an earlier run is scored again, not retrained; band sets the
    config now asks to calibrate are measured on that fold's training patches, saved with
    it, and scored beside the table's band sets."""
    import torch

    from sensei_xr.models import load_model
    from sensei_xr.training.crossval import cross_validate

    samples = [s for s in biome if s.tags["surface"] in ("Barren", "Water", "Forest")]  # 3 per fold
    system = {"system": "tiny", "model": {"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]},
              "patch_size": 32, "batch_size": 2, "steps": 4, "steps_per_epoch": 2, "optimizer": "adamw",
              "bn_recalibration_batches": 2, "bn_calibration_sets": ["RGB"], "val_band_sets": {"all": "ALL"},
              "device": "cpu"}
    first = cross_validate(system, samples, k=3, only_fold=1, band_sets=("RGB",), models_dir=tmp_path,
                           log=lambda m: None)
    stem = tmp_path / "fold1_seed0" / "model"
    before = load_model(stem.with_suffix(".safetensors"))
    assert sorted(before.bn_calibrations) == ["RGB"] and set(first["runs"][0]["band_sets"]) == {"RGB"}
    logs: list[str] = []
    again = cross_validate({**system, "bn_calibration_sets": ["RGB", "NIRSWIR"]}, samples, k=3, only_fold=1,
                           band_sets=("RGB",), models_dir=tmp_path, log=logs.append)
    assert not any("step" in m for m in logs), "the kept model was trained again"
    after = load_model(stem.with_suffix(".safetensors"))
    assert sorted(after.bn_calibrations) == ["NIRSWIR", "RGB"]
    assert after.card["calibrated_after_training"] == ["NIRSWIR"]
    for (name, p), q in zip(before.named_parameters(), after.parameters()):
        assert torch.equal(p, q), name
    # The RGB scores are the kept model's, unchanged; NIRSWIR is scored on the same patches.
    assert again["runs"][0]["band_sets"]["RGB"] == first["runs"][0]["band_sets"]["RGB"]
    held = [r["name"] for r in again["runs"][0]["band_sets"]["NIRSWIR"]]
    assert held == [r["name"] for r in first["runs"][0]["band_sets"]["RGB"]] and len(held) == 3


def test_a_band_set_calibrated_later_equals_one_calibrated_with_the_others(biome):
    """A finished or kept run that gains a band set (``give_missing_calibrations``, used by
    cross-validation and the release) measures exactly what training would have measured with
    that set in its list: each set's batches are drawn on their own."""
    import copy

    import torch

    from sensei_xr.models import build_model
    from sensei_xr.training.batchnorm import calibrate_band_sets
    from sensei_xr.training.crossval import give_missing_calibrations

    torch.manual_seed(0)
    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    sources = [list(biome[:4])]
    cfg = {"bn_calibration_sets": ["RGB", "RGBNIRSWIRTIR"], "bn_recalibration_batches": 2, "patch_size": 32,
           "batch_size": 2}
    together = copy.deepcopy(model)
    calibrate_band_sets(together, sources, ["RGB", "RGBNIRSWIRTIR"], 2, 32, 2)
    later = copy.deepcopy(model)
    calibrate_band_sets(later, sources, ["RGB"], 2, 32, 2)
    assert give_missing_calibrations(later, cfg, sources) == ["RGBNIRSWIRTIR"]
    assert give_missing_calibrations(later, cfg, sources) == []  # nothing left to measure
    for name in ("RGB", "RGBNIRSWIRTIR"):
        (d1, stats1), (d2, stats2) = together.bn_calibrations[name], later.bn_calibrations[name]
        assert torch.equal(d1, d2) and stats1.keys() == stats2.keys()
        for key in stats1:
            assert torch.equal(stats1[key], stats2[key]), (name, key)
    assert len(later.bn_calibrations["RGBNIRSWIRTIR"][0]) == 7  # B2-B7 and B10
    for (key, a), b in zip(model.state_dict().items(), later.state_dict().values()):
        assert torch.equal(a, b), key  # the model's own statistics are left as they were


def test_kept_fold_model_gains_the_snow_test_its_config_asks_for(biome, tmp_path, monkeypatch):
    """A recipe with ``snow_test = true`` scores the kept fold models of the same recipe
    without it: the test is chosen on the fold's training patches (as training chooses it)
    and saved with the model, nothing is trained again; the recipe without the test then
    scores the model without it."""
    from sensei_xr.models import load_model
    from sensei_xr.training import crossval as cv
    from sensei_xr.training.snow import snow_test_for

    samples = [s for s in biome if s.tags["surface"] in ("Barren", "Water", "SnowIce")]  # 3 per fold
    system = {"system": "tiny", "model": {"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]},
              "patch_size": 32, "batch_size": 2, "steps": 4, "steps_per_epoch": 2, "optimizer": "adamw",
              "bn_recalibration_batches": 2, "val_band_sets": {"all": "ALL"}, "device": "cpu"}
    cv.cross_validate(system, samples, k=3, only_fold=2, band_sets=("RGB",), models_dir=tmp_path, log=lambda m: None)
    stem = tmp_path / "fold2_seed0" / "model"
    assert load_model(stem.with_suffix(".safetensors")).snow_test is None
    logs: list[str] = []
    cv.cross_validate({**system, "snow_test": True}, samples, k=3, only_fold=2, band_sets=("RGB",),
                      models_dir=tmp_path, log=logs.append)
    assert not any("step" in m for m in logs), "the kept model was trained again"
    train, _ = split_folds(samples, stratified_scene_folds(samples, 3), 2)
    assert load_model(stem.with_suffix(".safetensors")).snow_test == snow_test_for(train, [1])
    assert any("snow test" in m for m in logs)
    seen = []
    real_score = cv.score_model
    monkeypatch.setattr(cv, "score_model", lambda model, *a, **k: seen.append(model.snow_test) or real_score(model, *a, **k))
    cv.cross_validate(system, samples, k=3, only_fold=2, band_sets=("RGB",), models_dir=tmp_path, log=lambda m: None)
    assert seen == [None]
    # The test for scenes without a 1.6 um band is gained the same way, beside the other.
    from sensei_xr.training.snow import choose_nir_test

    seen.clear()
    cv.cross_validate({**system, "snow_test": True, "nir_snow_test": True}, samples, k=3, only_fold=2,
                      band_sets=("RGB",), models_dir=tmp_path, log=lambda m: None)
    kept = load_model(stem.with_suffix(".safetensors"))
    assert kept.nir_snow_test is not None and kept.nir_snow_test == choose_nir_test(train, [1])
    assert kept.snow_test == snow_test_for(train, [1]) and seen == [kept.snow_test]
    # A recipe that chooses the NIR test otherwise (its ceiling held under a limit below the
    # kept one) scores the same kept network with the test chosen again, and keeps it.
    limit = round(kept.nir_snow_test.ndvi_max - 0.02, 3)
    scored = []
    monkeypatch.setattr(cv, "score_model", lambda model, *a, **k: scored.append(model.nir_snow_test) or real_score(model, *a, **k))
    logs.clear()
    cv.cross_validate({**system, "snow_test": True, "nir_snow_test": {"ndvi_limit": limit}}, samples, k=3,
                      only_fold=2, band_sets=("RGB",), models_dir=tmp_path, log=logs.append)
    again = load_model(stem.with_suffix(".safetensors")).nir_snow_test
    assert again == choose_nir_test(train, [1], ndvi_limit=limit) == scored[0] and again.ndvi_max <= limit
    assert any("nir snow test" in m for m in logs) and not any("step" in m for m in logs)


def test_ensemble_system_scores_the_mean_of_its_members_fold_models(biome, tmp_path):
    """An ensemble system trains (or reuses) each member's fold model as the member's own
    cross-validation would, and scores their mean probability through the engine."""
    from sensei_xr.evaluation import score_model
    from sensei_xr.models import CloudEnsemble, load_model
    from sensei_xr.training.crossval import cross_validate, read_system

    samples = [s for s in biome if s.tags["surface"] in ("Barren", "Water", "Forest")]  # 3 per fold
    tiny = {"model": {"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]}, "patch_size": 32,
            "batch_size": 2, "steps": 4, "steps_per_epoch": 2, "optimizer": "adamw", "bn_recalibration_batches": 2,
            "val_band_sets": {"all": "ALL"}, "device": "cpu"}
    members = [{"system": "a", **tiny, "bn_calibration_sets": ["RGB"]},
               {"system": "b", **tiny, "lr": 3e-3, "bn_calibration_sets": ["RGB", "RGBNIR"]}]
    system = {"system": "ens", "kind": "ensemble", "members": ["a.toml", "b.toml"], "member_systems": members}
    result = cross_validate(system, samples, k=3, only_fold=2, band_sets=("RGB", "ALL"), models_dir=tmp_path,
                            log=lambda m: None)
    kept = [load_model(tmp_path / "fold2_seed0" / f"member{i}" / "model.safetensors") for i in range(2)]
    assert sorted(kept[1].bn_calibrations) == ["RGB", "RGBNIR"]
    held = [samples[i] for i in stratified_scene_folds(samples, 3)[2]]
    expected = score_model(CloudEnsemble(kept), held, "RGB")
    rows = result["runs"][0]["band_sets"]["RGB"]
    assert [r["name"] for r in rows] == [s.name for s in held]
    assert [{k: r[k] for k in ("tp", "fp", "tn", "fn")} for r in rows] == [s.confusion.as_dict() for s in expected]
    assert set(result["runs"][0]["band_sets"]) == {"RGB", "ALL"}  # RGB is the only set both calibrated
    logs: list[str] = []
    cross_validate(system, samples, k=3, only_fold=2, band_sets=("RGB",), models_dir=tmp_path, log=logs.append)
    assert not any("step" in m for m in logs), "a kept member was trained again"
    # A config file names its members by path; read_system reads them, and refuses a fixed-band one.
    (tmp_path / "m.toml").write_text('system = "m"\nsteps = 4\n')
    (tmp_path / "fixed.toml").write_text('system = "f"\nfixed_bands = ["RGB"]\n')
    (tmp_path / "ens.toml").write_text('system = "e"\nkind = "ensemble"\nmembers = ["m.toml", "m.toml"]\n')
    assert [m["steps"] for m in read_system(tmp_path / "ens.toml")["member_systems"]] == [4, 4]
    (tmp_path / "bad.toml").write_text('system = "e"\nkind = "ensemble"\nmembers = ["m.toml", "fixed.toml"]\n')
    with pytest.raises(ValueError, match="not a SEnSeI network"):
        read_system(tmp_path / "bad.toml")


def test_a_recipe_named_twice_in_an_ensemble_trains_with_the_next_seed():
    from sensei_xr.training.crossval import member_seeds

    assert member_seeds(["a.toml", "b.toml"], 0) == [0, 0]  # two recipes: the run's seed each
    assert member_seeds(["a.toml", "a.toml", "b.toml", "a.toml"], 5) == [5, 6, 5, 7]


def test_results_say_how_the_engine_scored_and_checkpoints_never_mix_them(biome, tmp_path):
    """A result records the engine options its networks were scored with (results from
    before the engine had options were not refined); an interrupted run's checkpoint
    scored one way is never continued the other way."""
    from sensei_xr.training.crossval import cross_validate, engine_options

    assert engine_options({"runs": []}) == {"refine": False}
    assert engine_options({"engine": {"refine": True}}) == {"refine": True}
    checkpoint = tmp_path / "cv.json"
    checkpoint.write_text(json.dumps({"system": "x", "runs": [{"fold": 0, "seed": 0, "seconds": 1.0,
                                                                "band_sets": {}}]}))
    system = {"system": "x", "kind": "network", "model": {"encoder": "sensei", "head": "pixelnet"}}
    with pytest.raises(ValueError, match="engine options"):
        cross_validate(system, biome, checkpoint=checkpoint)


def test_the_patch_grid_at_the_edges_reaches_the_engine_and_is_recorded(biome, tmp_path, monkeypatch):
    """``edges="flush"`` scores every network through the engine with that grid, says so in
    the result, and never continues a checkpoint scored with the ring; the ring is recorded
    as results from before the option were (no ``edges`` key), so they stay comparable."""
    import sensei_xr.training.crossval as cv

    samples = [s for s in biome if s.tags["surface"] in ("Barren", "Water", "Forest")]
    system = {"system": "tiny", "model": {"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]},
              "patch_size": 32, "batch_size": 2, "steps": 2, "steps_per_epoch": 2, "optimizer": "adamw",
              "bn_recalibration_batches": 1, "val_band_sets": {"all": "ALL"}, "device": "cpu"}
    seen = []
    real = cv.score_model
    monkeypatch.setattr(cv, "score_model", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    ring = cv.cross_validate(system, samples, k=3, only_fold=0, band_sets=("RGB",), models_dir=tmp_path,
                             checkpoint=tmp_path / "ring.json", log=lambda m: None)
    assert ring["engine"] == {"refine": True} and seen == [{"refine": True}]
    flush = cv.cross_validate(system, samples, k=3, only_fold=0, band_sets=("RGB",), models_dir=tmp_path,
                              edges="flush", log=lambda m: None)
    assert flush["engine"] == {"refine": True, "edges": "flush"} and seen[-1] == {"refine": True, "edges": "flush"}
    with pytest.raises(ValueError, match="engine options"):
        cv.cross_validate(system, samples, k=3, only_fold=1, band_sets=("RGB",), models_dir=tmp_path,
                          checkpoint=tmp_path / "ring.json", edges="flush", log=lambda m: None)


def test_merge_joins_runs_of_one_recipe_once(tmp_path):
    """The committed three-seed row split by seed and merged again is the same row; a run
    in two files (e.g. a seed trained again elsewhere) is refused, not counted twice."""
    committed = ROOT / "results" / "crossval" / "sensei_dlv3_mosaic_refined.json"
    result = json.loads(committed.read_text())
    parts = []
    for seed in result["seeds"]:
        part = {**result, "runs": [r for r in result["runs"] if r["seed"] == seed]}
        parts.append(tmp_path / f"seed{seed}.json")
        parts[-1].write_text(json.dumps(part))
    config = str(ROOT / "configs" / "systems" / "sensei_dlv3_mosaic.toml")
    assert crossval_main([config, "--merge", *map(str, parts), "--out", str(tmp_path / "all.json")]) == 0
    merged = json.loads((tmp_path / "all.json").read_text())
    key = lambda r: (r["seed"], r["fold"])  # noqa: E731
    assert sorted(merged["runs"], key=key) == sorted(result["runs"], key=key)
    assert merged["summary"]["RGBNIRSWIR"]["cv_mean_oa"] == pytest.approx(result["summary"]["RGBNIRSWIR"]["cv_mean_oa"])
    with pytest.raises(SystemExit, match=r"more than one file"):
        crossval_main([config, "--merge", str(parts[0]), str(tmp_path / "all.json"), "--out", str(tmp_path / "x.json")])


def test_per_patch_table_puts_each_runs_patch_oa_side_by_side(tmp_path, capsys):
    """The per-patch table reads each run's own counts: a patch lost by one seed shows in
    that seed's column only; a result without a fold leaves its cells blank."""
    def run(fold, seed, scores):
        rows = [{"name": f"{name}.tif", "tags": {}, "tp": tp, "fp": 10 - tp, "tn": 0, "fn": 0}
                for name, tp in scores]
        return {"fold": fold, "seed": seed, "seconds": 1.0, "band_sets": {"RGBNIRSWIR": rows}}

    a = {"system": "a", "runs": [run(0, 0, [("Snow_00", 10), ("Urban_01", 0)]), run(1, 0, [("Water_01", 3)]),
                                 run(0, 1, [("Snow_00", 2), ("Urban_01", 0)]), run(1, 1, [("Water_01", 9)])]}
    b = {"system": "b", "runs": [run(0, 4, [("Snow_00", 7), ("Urban_01", 5)])]}
    md = per_patch_markdown([a, b], "RGBNIRSWIR", ["A", "B"])
    lines = md.splitlines()
    assert lines[0] == "| fold | patch (RGBNIRSWIR) | A s0 | A s1 | B s4 |"
    assert lines[2:] == ["| 0 | Snow_00 | 1.00 | 0.20 | 0.70 |", "| 0 | Urban_01 | 0.00 | 0.00 | 0.50 |",
                         "| 1 | Water_01 | 0.30 | 0.90 |  |"]
    with pytest.raises(ValueError, match=r"no run scored the band set 'RGB'.*RGBNIRSWIR"):
        per_patch_markdown([a], "RGB")
    with pytest.raises(ValueError, match="one label per result"):
        per_patch_markdown([a, b], "RGBNIRSWIR", ["A"])
    # The command line prints the same table from result files, labelled by file name.
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    assert crossval_main(["--per-patch", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| 0 | Snow_00 | 1.00 | 0.20 | 0.70 |"
    with pytest.raises(SystemExit):
        crossval_main(["--seeds", "0"])  # neither a config nor --per-patch


def test_training_neighbours_vote_follows_the_labels_they_were_given(biome):
    """The k-NN diagnosis of the folds: a held-out patch that is a training patch gets its
    own labels back; the same patch with every label swapped gets none of them right."""
    from dataclasses import replace

    from benchmarks.training_neighbours import neighbour_accuracy

    train = biome[:8]
    mixed = next(s for s in train if 0.2 < (s.labels == 1).mean() < 0.8)
    swapped = replace(mixed, name="swapped", labels=np.where(mixed.labels >= 0, 1 - mixed.labels, mixed.labels))
    scores = neighbour_accuracy(train, [mixed, swapped], k=1, train_stride=1, held_stride=7)
    assert scores[mixed.name] >= 0.99
    assert scores["swapped"] <= 0.01


def test_an_ensemble_of_members_with_snow_tests_is_scored_with_them(biome, tmp_path, monkeypatch):
    """Members asking for the snow tests get them on their fold's training patches; the
    ensemble applies them to its mean probability (as a released ensemble does), and
    members that disagree on a test are refused, not scored without it."""
    from sensei_xr.evaluation import score_model
    from sensei_xr.models import CloudEnsemble, load_model
    import sensei_xr.training.crossval as crossval
    from sensei_xr.training.crossval import cross_validate

    scored_with = []  # the tests of each model crossval scores (a 4-step model may call nothing cloud)

    def recording(model, *args, **kwargs):
        scored_with.append((model.snow_test, model.nir_snow_test))
        return score_model(model, *args, **kwargs)

    monkeypatch.setattr(crossval, "score_model", recording)
    samples = [s for s in biome if s.tags["surface"] in ("Barren", "SnowIce", "Forest")]  # 3 per fold
    tiny = {"model": {"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]}, "patch_size": 32,
            "batch_size": 2, "steps": 4, "steps_per_epoch": 2, "optimizer": "adamw", "bn_recalibration_batches": 2,
            "val_band_sets": {"all": "ALL"}, "device": "cpu", "snow_test": True}
    members = [{"system": "a", **tiny}, {"system": "b", **tiny, "lr": 3e-3}]
    system = {"system": "ens", "kind": "ensemble", "members": ["a.toml", "b.toml"], "member_systems": members}
    result = cross_validate(system, samples, k=3, only_fold=1, band_sets=("RGBNIRSWIR",), models_dir=tmp_path,
                            log=lambda m: None)
    kept = [load_model(tmp_path / "fold1_seed0" / f"member{i}" / "model.safetensors") for i in range(2)]
    assert kept[0].snow_test is not None and kept[0].snow_test == kept[1].snow_test
    held = [samples[i] for i in stratified_scene_folds(samples, 3)[1]]
    assert scored_with == [(kept[0].snow_test, None)]
    ensemble = CloudEnsemble(kept)
    ensemble.snow_test = kept[0].snow_test
    expected = score_model(ensemble, held, "RGBNIRSWIR")
    rows = result["runs"][0]["band_sets"]["RGBNIRSWIR"]
    assert [{k: r[k] for k in ("tp", "fp", "tn", "fn")} for r in rows] == [s.confusion.as_dict() for s in expected]
    mixed = {**system, "member_systems": [members[0], {**members[1], "snow_test": False}]}
    with pytest.raises(ValueError, match="disagree on snow_test"):
        cross_validate(mixed, samples, k=3, only_fold=1, band_sets=("RGBNIRSWIR",), models_dir=tmp_path / "mixed",
                       log=lambda m: None)
