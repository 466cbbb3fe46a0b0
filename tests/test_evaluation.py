"""The paper's metrics, bootstrap intervals, tags, Table III band sets and the peers.

Metrics are checked against counts worked out by hand on constructed arrays; band sets
against the catalogs' real band limits; models and peers run on the real Biome patches
and Sentinel-2 scenes of the sample data.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from sensei_xr import catalogs
from sensei_xr.evaluation import peers
from sensei_xr.bands import BandDescriptors
from sensei_xr.evaluation import (
    BAND_SETS,
    Confusion,
    ImageScore,
    MissingBandError,
    band_set,
    binary_metrics,
    bootstrap_ci,
    evaluate_model,
    report_markdown,
    summarise,
    write_report,
)


def sensor_bands(sensor_id: str, drop: tuple[str, ...] = ()) -> BandDescriptors:
    """All of a catalog sensor's bands (less ``drop``) as descriptors."""
    bands = [b for b in catalogs.get_sensor(sensor_id).bands if b.name not in drop]
    return BandDescriptors(tuple(b.name for b in bands), np.array([b.wavelengths_nm for b in bands]),
                           tuple(b.kind for b in bands))


@pytest.fixture(scope="module")
def biome_val(shared_data):
    from sensei_xr.datasets import load_dataset

    return load_dataset("biome_patches", shared_data / "l8_biome_patches", "val")


# ------------------------------------------------------------------------------ metrics


def test_metrics_of_constructed_masks_match_hand_counts():
    # 4 x 5 image: row by row, predicted / true / valid worked out by hand.
    predicted = np.array([[1, 1, 1, 0, 0],
                          [1, 0, 0, 0, 1],
                          [0, 0, 0, 0, 0],
                          [1, 1, 0, 0, 0]], bool)
    true = np.array([[1, 1, 0, 0, 1],
                     [1, 1, 0, 0, 0],
                     [0, 0, 0, 1, 0],
                     [1, 1, 1, 1, 1]], bool)
    valid = np.ones_like(true)
    valid[3] = [True, True, True, False, False]  # two no-data pixels (they would be FN)
    c = Confusion().add(predicted, true, valid)
    # TP: (0,0) (0,1) (1,0) (3,0) (3,1) = 5; FP: (0,2) (1,4) = 2;
    # FN: (0,4) (1,1) (2,3) (3,2) = 4; TN: 18 valid - 11 = 7.
    assert c.as_dict() == {"tp": 5, "fp": 2, "tn": 7, "fn": 4}
    m = c.metrics()
    assert m["pixels"] == 18
    assert m["overall_accuracy"] == pytest.approx(12 / 18)
    assert m["precision"] == pytest.approx(5 / 7)
    assert m["recall"] == pytest.approx(5 / 9)
    assert m["balanced_accuracy"] == pytest.approx((5 / 9 + 7 / 9) / 2)
    assert m["f1"] == pytest.approx(2 * (5 / 7) * (5 / 9) / (5 / 7 + 5 / 9))


def test_undefined_and_degenerate_metrics():
    # No cloud anywhere, none predicted: recall, precision, F1 undefined; BA = specificity.
    m = binary_metrics(tp=0, fp=0, tn=10, fn=0)
    assert math.isnan(m["recall"]) and math.isnan(m["precision"]) and math.isnan(m["f1"])
    assert m["balanced_accuracy"] == 1.0 and m["overall_accuracy"] == 1.0
    # Every cloud missed: F1 is 0 (not undefined), precision undefined.
    m = binary_metrics(tp=0, fp=0, tn=5, fn=5)
    assert m["f1"] == 0.0 and m["recall"] == 0.0 and math.isnan(m["precision"])
    assert m["balanced_accuracy"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same shape"):
        Confusion().add(np.zeros((2, 2)), np.zeros((2, 3)))


def _scores(rng, n, tags=None):
    """n images of 1000 pixels with image-to-image variation in accuracy."""
    out = []
    for i in range(n):
        cloud = int(rng.integers(100, 900))
        hit = rng.uniform(0.6, 0.95)
        tp = int(cloud * hit)
        fp = int((1000 - cloud) * rng.uniform(0.02, 0.3))
        out.append(ImageScore(f"img{i}", Confusion(tp, fp, 1000 - cloud - fp, cloud - tp),
                              tags(i) if tags else {}))
    return out


def test_bootstrap_ci_contains_pooled_and_narrows_with_more_images():
    rng = np.random.default_rng(1)
    few, many = _scores(rng, 8), _scores(rng, 200)
    widths = {}
    for name, scores in (("few", few), ("many", many)):
        pooled = sum((s.confusion for s in scores), Confusion()).metrics()
        ci = bootstrap_ci(scores, n_resamples=500, seed=0)
        for metric in ("overall_accuracy", "balanced_accuracy", "precision", "recall", "f1"):
            lo, hi = ci[metric]
            assert lo <= pooled[metric] <= hi, (name, metric, lo, pooled[metric], hi)
        widths[name] = ci["f1"][1] - ci["f1"][0]
    assert widths["many"] < widths["few"] / 2
    # Seeded: the same seed gives the same intervals, another seed others.
    assert bootstrap_ci(few, 300, seed=5) == bootstrap_ci(few, 300, seed=5)
    assert bootstrap_ci(few, 300, seed=5) != bootstrap_ci(few, 300, seed=6)


def test_summarise_splits_by_tags_and_keeps_per_image_metrics():
    rng = np.random.default_rng(2)
    surfaces = ["Forest", "Water", "Forest", "Urban", "Forest", "Water"]
    scores = _scores(rng, 6, tags=lambda i: {"surface": surfaces[i], **({"cloud": "thin"} if i < 2 else {})})
    out = summarise(scores, n_bootstrap=100, seed=0)
    assert out["n_images"] == 6 and len(out["per_image"]) == 6
    assert out["per_image"][3]["name"] == "img3" and out["per_image"][3]["tags"]["surface"] == "Urban"
    assert out["per_image"][3]["f1"] == pytest.approx(scores[3].confusion.metrics()["f1"])
    assert out["per_image_mean"]["overall_accuracy"] == pytest.approx(
        np.mean([s.confusion.metrics()["overall_accuracy"] for s in scores]))
    by_surface = out["by_tag"]["surface"]
    assert {k: v["n_images"] for k, v in by_surface.items()} == {"Forest": 3, "Water": 2, "Urban": 1}
    forest = sum((scores[i].confusion for i in (0, 2, 4)), Confusion())
    assert by_surface["Forest"]["confusion"] == forest.as_dict()
    assert by_surface["Forest"]["pooled"]["f1"] == pytest.approx(forest.metrics()["f1"])
    assert by_surface["Urban"]["ci"] is None  # one image: no interval
    assert by_surface["Forest"]["ci"] is not None
    # Only images carrying a tag count for it.
    assert out["by_tag"]["cloud"]["thin"]["n_images"] == 2
    assert summarise(scores, n_bootstrap=0)["ci"] is None


# ------------------------------------------------------------------------- band sets


@pytest.mark.parametrize("sensor, expected", [
    ("sentinel2_msi", {
        "RGB": ["B02", "B03", "B04"],
        "RGBNIR": ["B02", "B03", "B04", "B08"],
        "AeroRGBNIR": ["B01", "B02", "B03", "B04", "B08"],
        "COMMON": ["B01", "B02", "B03", "B04", "B8A", "B10", "B11", "B12"],
        "NoRGB": ["B01", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"],
        "RGBNIRSWIR": ["B02", "B03", "B04", "B08", "B11", "B12"],
        "NIRSWIR": ["B8A", "B11", "B12"],  # the narrow NIR band, as Landsat 8's B5
        "RGBNIRSWIRTIR": r"tir band \(centre 10000-12500 nm\)",  # no thermal band
    }),
    ("landsat8_oli_tirs", {
        "RGB": ["B2", "B3", "B4"],  # not the panchromatic B8 though it is centred in green
        "RGBNIR": ["B2", "B3", "B4", "B5"],
        "AeroRGBNIR": ["B1", "B2", "B3", "B4", "B5"],
        "COMMON": ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9"],
        "NoRGB": ["B1", "B5", "B6", "B7", "B8", "B9", "B10", "B11"],
        "RGBNIRSWIR": ["B2", "B3", "B4", "B5", "B6", "B7"],
        "NIRSWIR": ["B5", "B6", "B7"],
        "RGBNIRSWIRTIR": ["B2", "B3", "B4", "B5", "B6", "B7", "B10"],  # B10 nearer 11 um than B11
    }),
    ("landsat7_etm", {
        "RGB": ["B1", "B2", "B3"],
        "RGBNIR": ["B1", "B2", "B3", "B4"],
        "AeroRGBNIR": MissingBandError,
        "COMMON": ["B1", "B2", "B3", "B4", "B5", "B7"],  # no coastal, no cirrus band
        "NoRGB": ["B4", "B5", "B6", "B7", "B8"],
        "RGBNIRSWIR": ["B1", "B2", "B3", "B4", "B5", "B7"],
        "NIRSWIR": ["B4", "B5", "B7"],
        "RGBNIRSWIRTIR": ["B1", "B2", "B3", "B4", "B5", "B6", "B7"],  # B6 is the thermal band
    }),
    ("planetscope_4band", {
        "RGB": ["blue", "green", "red"],
        "RGBNIR": ["blue", "green", "red", "nir"],
        "AeroRGBNIR": MissingBandError,
        "COMMON": ["blue", "green", "red", "nir"],
        "NoRGB": ["nir"],
        "RGBNIRSWIR": "swir16",
        "NIRSWIR": "swir16",
        "RGBNIRSWIRTIR": "swir16",
    }),
])
def test_band_sets_resolved_by_wavelength(sensor, expected):
    desc = sensor_bands(sensor)
    assert band_set(desc, "ALL") == list(desc.names)
    for name, bands in expected.items():
        if bands is MissingBandError or isinstance(bands, str):
            with pytest.raises(MissingBandError, match="coastal band" if bands is MissingBandError else bands):
                band_set(desc, name)
        else:
            assert band_set(desc, name) == bands, name
    assert set(expected) | {"ALL"} == set(BAND_SETS)


def test_band_set_names_a_missing_band_and_unknown_sets():
    no_blue = sensor_bands("sentinel2_msi", drop=("B02",))
    with pytest.raises(MissingBandError, match=r"RGB needs a blue band \(centre 450-520 nm\).*B01"):
        band_set(no_blue, "RGB")
    no_red_no_nir = sensor_bands("planetscope_4band", drop=("red", "nir"))
    with pytest.raises(MissingBandError, match="red band .* and a nir band"):
        band_set(no_red_no_nir, "RGBNIR")
    assert band_set(sensor_bands("sentinel2_msi"), "rgbnir") == ["B02", "B03", "B04", "B08"]
    with pytest.raises(ValueError, match="unknown band set 'RGBN'; known: ALL, COMMON"):
        band_set(no_blue, "RGBN")


# ------------------------------------------------------------------- model evaluation


def test_evaluate_model_matches_the_training_loops_metrics(biome_val, one_torch_thread):
    from sensei_xr.evaluation import pooled_confusion, pooled_metrics, score_model
    from sensei_xr.models import load_model

    model = load_model("default")
    samples = biome_val[:3]
    report = evaluate_model(model, samples, ["ALL", "rgbnir", "AeroRGBNIR"], n_bootstrap=50,
                            dataset="biome_patches (val)")
    rows = {r["band_set"]: r for r in report["rows"]}
    assert rows["ALL"]["pooled"] == pytest.approx(pooled_metrics(model, samples, None), nan_ok=True)
    rgbnir = pooled_confusion(score_model(model, samples, ["B2", "B3", "B4", "B5"]))
    assert rows["RGBNIR"]["bands"] == ["B2", "B3", "B4", "B5"]
    assert rows["RGBNIR"]["confusion"] == rgbnir.as_dict()
    assert "coastal band" in rows["AeroRGBNIR"]["skipped"]
    assert rows["ALL"]["by_tag"]["surface"]["Barren"]["n_images"] == 1
    assert report["labelled_pixels"] == rows["ALL"]["pooled"]["pixels"]
    md = report_markdown(report)
    assert "| sensei-dlv3-biome-v1 | RGBNIR | B2, B3, B4, B5 |" in md.replace(model.card["name"], "sensei-dlv3-biome-v1")
    assert "## By surface" in md and "coastal band" in md


def test_write_report_is_strict_json_and_refuses_existing(tmp_path):
    scores = [ImageScore("a", Confusion(0, 0, 10, 0), {"surface": "Water"}),
              ImageScore("b", Confusion(5, 1, 3, 1), {"surface": "Forest"})]
    report = {"model": "m", "dataset": "d", "n_images": 2, "labelled_pixels": 20, "images": ["a", "b"],
              "sensors": ["s"], "threshold": 0.5,
              "bootstrap": {"resamples": 20, "level": 0.95, "seed": 0, "unit": "image"},
              "rows": [{"method": "m", "kind": "model", "band_set": "ALL", "bands": ["x"],
                        **summarise(scores, 20)}]}
    json_path, md_path = write_report(report, tmp_path / "out")
    data = json.loads(json_path.read_text())  # strict: NaN (image a's F1) written as null
    assert data["rows"][0]["per_image"][0]["f1"] is None
    assert "| m | ALL | x |" in md_path.read_text()
    with pytest.raises(FileExistsError, match="overwrite"):
        write_report(report, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["evaluation.json", "evaluation.md"]


def test_evaluation_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import sensei_xr.evaluation, sensei_xr.evaluation.peers\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# ------------------------------------------------------------------------------- peers


def test_peer_band_selection_by_wavelength():
    s2 = sensor_bands("sentinel2_msi")
    assert peers.get_peer("s2cloudless").bands(s2) == [
        "B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12"]
    assert peers.get_peer("ukis-csmask").bands(s2) == ["B02", "B03", "B04", "B08", "B11", "B12"]
    assert peers.get_peer("ukis-csmask").bands(sensor_bands("landsat7_etm")) == ["B1", "B2", "B3", "B4", "B5", "B7"]
    assert peers.get_peer("ukis-csmask").bands(sensor_bands("planetscope_4band")) == ["blue", "green", "red", "nir"]
    assert peers.get_peer("ukis-csmask-4b").bands(s2) == ["B02", "B03", "B04", "B08"]
    with pytest.raises(MissingBandError, match="s2cloudless needs Sentinel-2 band B05"):
        peers.get_peer("s2cloudless").bands(sensor_bands("landsat8_oli_tirs"))
    with pytest.raises(MissingBandError, match="nir band"):
        peers.get_peer("ukis-csmask").bands(sensor_bands("planetscope_4band", drop=("nir",)))
    with pytest.raises(ValueError, match="unknown peer method 'fmask'; known: s2cloudless"):
        peers.get_peer("fmask")


def _require(peer: str):
    reason = peers.get_peer(peer).unavailable()
    if reason:
        pytest.skip(f"peer {peer} not usable here: {reason}")


def test_s2cloudless_on_real_sentinel2(shared_data):
    _require("s2cloudless")
    scenes = np.load(shared_data / "s2_l1c_eolearn" / "REFERENCE_SCENES.npy")  # (5, H, W, 13) TOA
    desc = sensor_bands("sentinel2_msi")
    peer = peers.get_peer("s2cloudless")
    hazy, clear = (np.moveaxis(scenes[t], -1, 0) for t in (0, 2))  # blue 0.31 vs 0.11 on average
    p_hazy, p_clear = peer.cloud_probability(hazy, desc), peer.cloud_probability(clear, desc)
    assert p_hazy.shape == p_clear.shape == scenes.shape[1:3]
    assert 0.0 <= p_clear.min() and p_hazy.max() <= 1.0
    assert p_hazy.mean() > 0.5 > p_clear.mean()
    mask = peer.cloud_mask(clear, desc)
    assert mask.dtype == bool and mask.shape == scenes.shape[1:3] and mask.mean() < 0.5
    with pytest.raises(MissingBandError, match="B01"):  # the Biome patches have no coastal band
        peer.cloud_mask(np.zeros((3, 4, 4), np.float32), sensor_bands("landsat8_oli_tirs").select(["B2", "B3", "B4"]))


def test_ukis_csmask_on_real_biome_patches(biome_val):
    _require("ukis-csmask")
    peer = peers.get_peer("ukis-csmask")
    by_surface = {s.tags["surface"]: s for s in biome_val}
    for surface, (lo, hi) in {"SnowIce": (0.9, 1.0), "Shrubland": (0.0, 0.1)}.items():  # 100 % / 0 % cloud
        s = by_surface[surface]
        mask = peer.cloud_mask(s.image, s.descriptors)
        assert mask.shape == s.labels.shape and mask.dtype == bool
        assert lo <= mask[~s.nodata].mean() <= hi, surface
    dn = np.round(by_surface["SnowIce"].image * 10000)  # DN, not reflectance: refused
    with pytest.raises(ValueError, match="reflectance"):
        peer.cloud_mask(dn.astype(np.float32), by_surface["SnowIce"].descriptors)
