"""The warm-surface test (sensei_xr.spectral.warm): no cloud warmer than 27 C at 11 um
(Fmask), unless the 1.38 um band shows cirrus; applied by the engine after the refinement;
on a real, hot, clear Biome patch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sensei_xr.bands import BandDescriptors, normalise_brightness_temperature
from sensei_xr.inference.guards import Guard, guard, guards_for
from sensei_xr.models import WeightsError, build_model, load_model, save_model
from sensei_xr.spectral.snow import SnowTest
from sensei_xr.spectral.warm import WarmSurfaceTest, warm_bands
from sensei_xr.training.crossval import biome_cv_samples

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shrubland(shared_data):
    """Shrubland_01: clear, hot (B10 median about 301 K), bright at 1.6 and 2.2 um."""
    return next(s for s in biome_cv_samples(shared_data / "l8_biome_patches") if s.name.startswith("Shrubland_01"))


@pytest.mark.parametrize("sensor, names, want", [
    ("landsat8_oli_tirs", None, ("B10", "B9")),
    ("landsat8_oli_tirs", ["B11", "B10", "B5"], ("B10", None)),  # nearest 11 um; no cirrus band
    ("landsat8_oli_tirs", ["B5", "B11"], ("B11", None)),  # 12 um is in the window
    ("landsat8_oli_tirs", ["B2", "B3", "B4", "B9"], None),  # no thermal band
    ("landsat7_etm", None, ("B6", None)),
    ("sentinel2_msi", None, None),
    ("sentinel3_slstr", ["S4", "S7", "S8", "S9"], ("S8", "S4")),  # never the 3.7 um S7 (sunlight by day)
    ("sentinel3_slstr", ["S7", "S5", "S3"], None),
])
def test_the_test_finds_its_bands_by_wavelength(sensor, names, want):
    desc = BandDescriptors.from_sensor(sensor, names)
    got = warm_bands(desc)
    assert (None if got is None else tuple(None if i is None else desc.names[i] for i in got)) == want


def test_numpy_and_torch_agree_missing_values_fail_and_cirrus_is_left_to_the_network():
    rng = np.random.default_rng(0)
    bt, cirrus = rng.uniform(260, 320, 600), rng.uniform(0, 0.1, 600)
    bt[:7] = np.nan
    test = WarmSurfaceTest()
    a = test.holds(bt, cirrus)
    np.testing.assert_array_equal(a, test.holds(torch.from_numpy(bt), torch.from_numpy(cirrus)).numpy())
    assert not a[:7].any()
    np.testing.assert_array_equal(a[7:], ((bt > 300.15) & (cirrus <= 0.04))[7:])
    np.testing.assert_array_equal(test.holds(bt), bt > 300.15)  # no 1.38 um band: temperature alone
    assert a.any() and (test.holds(bt) & ~a).any()


@pytest.mark.parametrize("kwargs, message", [
    ({"bt_min_k": 27.0}, r"brightness temperature in kelvin \(e.g. 300.15 for 27 C\)"),
    ({"cloud_cap": 1.5}, "cloud_cap is a probability"),
    ({"cirrus_max": float("nan")}, "cirrus_max must be a finite number"),
    ({"bt_min_k": True}, "bt_min_k must be a finite number"),
])
def test_bad_thresholds_are_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WarmSurfaceTest(**kwargs)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), cap=st.sampled_from([0.0, 0.1, 0.45]))
def test_the_tests_cap_cloud_where_any_holds_and_read_thermal_bands_in_kelvin(seed, cap):
    """With a snow and a warm-surface guard, the cloud probability is capped where either
    holds and unchanged elsewhere; the warm test sees the model's scaled thermal input as
    kelvin."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (2, 5, 9, 7)).astype(np.float32)
    images[:, 2] *= 0.3  # 1.6 um: often under the snow ceiling
    bt_k = rng.uniform(270, 320, (2, 9, 7))
    images[:, 3] = normalise_brightness_temperature(bt_k)
    images[:, 4] *= 0.08  # 1.38 um: sometimes above the cirrus limit
    images = torch.from_numpy(images)
    probs = torch.softmax(torch.from_numpy(rng.normal(0, 3, (2, 2, 9, 7)).astype(np.float32)), 1)
    snow, warm = SnowTest(swir_max=0.15, cloud_cap=cap), WarmSurfaceTest(cloud_cap=cap)
    guards = [Guard("snow_test", snow, (0, 2, 1), (False,) * 3), Guard("warm_test", warm, (3, 4), (True, False))]
    out = guard(images, probs, [1], guards)
    snowy = snow.holds(images[:, 0], images[:, 2], images[:, 1]).numpy()
    warm_here = (bt_k > 300.15) & (images[:, 4].numpy() <= 0.04)
    near = np.abs(bt_k - 300.15) < 1e-3  # float32 scaling: a pixel at the threshold may go either way
    capped = (snowy | warm_here) & ~near
    assert capped.any() and (~capped).any()
    np.testing.assert_allclose(out[:, 1].numpy()[capped], np.minimum(probs[:, 1].numpy()[capped], cap), atol=1e-6)
    free = ~(snowy | warm_here) & ~near
    np.testing.assert_allclose(out.numpy().transpose(0, 2, 3, 1)[free], probs.numpy().transpose(0, 2, 3, 1)[free],
                               atol=1e-6)


def test_engine_caps_a_hot_clear_patch_in_any_chunking_and_records_it(shrubland):
    """The default model through the engine on the hot, clear Shrubland_01: with the
    warm-surface test, the cloud probability is at most the cap where B10 > 300.15 K (and
    B9 shows no cirrus) and as before elsewhere, the same in odd chunks (the test is
    pointwise; the engine's chunking invariance is property-tested in test_engine); without
    a thermal band the test is not applied; the result says what was applied."""
    import xarray as xr

    from sensei_xr.inference import cloud_probability

    s = shrubland
    names = list(s.descriptors.names)
    da = xr.DataArray(s.image, dims=("band", "y", "x"), coords={"band": names})
    model = load_model("default")
    model.warm_test = None
    plain = cloud_probability(da, model, sensor="landsat8_oli_tirs").compute()
    model.warm_test = WarmSurfaceTest()
    whole = cloud_probability(da, model, sensor="landsat8_oli_tirs").compute()
    chunked = cloud_probability(da.chunk({"y": 97, "x": 61}), model, sensor="landsat8_oli_tirs").compute()
    np.testing.assert_array_equal(chunked.values, whole.values)
    bt = s.image[names.index("B10")]
    holds = model.warm_test.holds(bt, s.image[names.index("B9")])
    near = np.abs(bt - 300.15) < 1e-3
    assert holds.mean() > 0.3 and (plain.values[holds] > 0.5).any()  # the network calls some of it cloud
    assert (whole.values[holds & ~near] <= 0.1 + 1e-6).all()
    np.testing.assert_allclose(whole.values[~holds & ~near], plain.values[~holds & ~near], atol=1e-6)
    assert plain.attrs["warm_test"] == "none"
    assert whole.attrs["warm_test"] == "cloud probability at most 0.1 where B10 > 300.15 K and B9 <= 0.04"
    reflective = cloud_probability(da, model, sensor="landsat8_oli_tirs", bands=["B2", "B3", "B4", "B5", "B6", "B7"])
    assert reflective.attrs["warm_test"] == "none"


def test_the_model_offers_the_test_only_with_a_thermal_band():
    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    l8 = BandDescriptors.from_sensor("landsat8_oli_tirs")
    assert guards_for(model, l8) == ()
    model.warm_test = WarmSurfaceTest()
    (g,) = guards_for(model, l8)
    assert (g.key, [l8.names[b] for b in g.bands], g.thermal) == ("warm_test", ["B10", "B9"], (True, False))
    assert guards_for(model, BandDescriptors.from_sensor("sentinel2_msi")) == ()


def test_the_test_is_saved_on_the_card_and_read_back(tmp_path):
    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]}).eval()
    model.warm_test = WarmSurfaceTest()
    card = save_model(model, tmp_path / "m")
    assert card["warm_test"] == {"bt_min_k": 300.15, "cirrus_max": 0.04, "cloud_cap": 0.1}
    assert load_model(tmp_path / "m").warm_test == model.warm_test
    model.warm_test = None
    assert save_model(model, tmp_path / "n")["warm_test"] is None
    assert load_model(tmp_path / "n").warm_test is None
    path = tmp_path / "m.json"
    bad = json.loads(path.read_text())
    bad["warm_test"] = {"bt_min_k": 27}
    path.write_text(json.dumps(bad))
    with pytest.raises(WeightsError, match="invalid warm_test"):
        load_model(tmp_path / "m")
    old = json.loads(path.read_text())
    del old["warm_test"]  # a card written before the test existed
    path.write_text(json.dumps(old))
    assert load_model(tmp_path / "m").warm_test is None


def test_a_kept_model_gains_the_test_when_its_config_asks(shared_data):
    from sensei_xr.training.snow import give_missing_tests

    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    assert give_missing_tests(model, {"warm_test": False}, [[]]) == {} and model.warm_test is None
    assert give_missing_tests(model, {"warm_test": True}, [[]]) == {"warm_test": WarmSurfaceTest()}
    assert model.warm_test == WarmSurfaceTest()


def test_a_landsat7_scene_runs_its_thermal_band_and_the_warm_test(shrubland):
    """Landsat 4-7 have the six reflective bands and one thermal band (B6) and no 1.38 um
    band. With no ``bands=``, the default model runs its six + thermal calibration on them
    (before it had one, the six reflective bands only: no thermal band, so no warm-surface
    test). Real Biome pixels described as Landsat 7 ETM+ bands (the same regions)."""
    import sensei_xr
    import xarray as xr

    s = shrubland
    l8 = ["B2", "B3", "B4", "B5", "B6", "B7", "B10"]
    l7 = ["B1", "B2", "B3", "B4", "B5", "B7", "B6"]  # the same regions, Landsat 7's names
    image = s.image[[list(s.descriptors.names).index(n) for n in l8]]
    da = sensei_xr.attach_wavelengths(xr.DataArray(image, dims=("band", "y", "x"), coords={"band": l7}),
                                      "landsat7_etm")
    model = load_model("default")
    assert model.bn_calibration_for(BandDescriptors.from_sensor("landsat7_etm", l7).normalised()) == "RGBNIRSWIRTIR"
    chosen = da.sensei.cloud_probability()
    assert chosen.attrs["bands_used"] == ",".join(l7)
    assert chosen.attrs["warm_test"] == "cloud probability at most 0.1 where B6 > 300.15 K"
    bt = image[-1]
    hot = bt > 300.15 + 1e-3
    assert hot.mean() > 0.3 and (chosen.values[hot] <= 0.1 + 1e-6).all()
    np.testing.assert_array_equal(chosen.values, da.sensei.cloud_probability(bands=l7).values)
    six = da.sensei.cloud_probability(bands=l7[:6])
    assert six.attrs["warm_test"] == "none"
