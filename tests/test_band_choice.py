"""With no ``bands`` given, a model with per-band-set batch-norm statistics runs on the largest
calibrated band set found among the scene's bands (when none matches them all); an explicit
``bands=`` is used as given, and ``bands_used`` always says what the model saw."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import sensei_xr
from sensei_xr.bands import BandDescriptors
from sensei_xr.models import load_model

S2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
L8 = ["B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10"]  # the Biome patches' bands: the ALL calibration


@pytest.fixture(scope="module")
def model():
    m = load_model("default")
    assert {"ALL", "RGBNIRSWIR", "RGBNIR", "RGB"} <= set(m.bn_calibrations)
    return m


def _names(desc: BandDescriptors, subset):
    return None if subset is None else (subset[0], [desc.names[i] for i in subset[1]])


def test_a_calibrated_band_set_is_used_as_it_is(model):
    for names, calibration in ((L8, "ALL"), (["B2", "B3", "B4", "B5", "B6", "B7"], "RGBNIRSWIR")):
        desc = BandDescriptors.from_sensor("landsat8_oli_tirs", names)
        assert model.bn_calibration_for(desc.normalised()) == calibration
        assert model.calibrated_subset(desc.normalised()) is None


def test_sentinel2_all_bands_choose_the_six_reflective_bands(model):
    desc = BandDescriptors.from_sensor("sentinel2_msi", S2)
    # No thermal band on Sentinel-2, so the 8-band Landsat calibration cannot be found; the NIR
    # band is the one nearest to the calibrated centre (B8A at 865 nm, like Landsat 8's B5).
    assert _names(desc, model.calibrated_subset(desc.normalised())) == (
        "RGBNIRSWIR", ["B02", "B03", "B04", "B8A", "B11", "B12"])
    # Landsat 8 with all 11 bands: the 8 of the Biome patches.
    l8 = BandDescriptors.from_sensor("landsat8_oli_tirs", ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9",
                                                           "B10", "B11"])
    assert _names(l8, model.calibrated_subset(l8.normalised())) == ("ALL", L8)
    # No calibrated set among them (no visible bands, no thermal): all bands, as given.
    red_edge = BandDescriptors.from_sensor("sentinel2_msi", ["B05", "B06", "B07", "B8A", "B11", "B12"])
    assert model.calibrated_subset(red_edge.normalised()) is None


def test_landsat_4_to_9_without_a_cirrus_band_keep_their_thermal_band(model):
    """TM / ETM+ (and Landsat 8-9 without B9) have the six reflective bands and a thermal band
    near 11 um: the six + thermal calibration, so the network sees the thermal band and the
    warm-surface test can apply (the six reflective alone would leave both out)."""
    for sensor, names, want in (
            ("landsat45_tm", None, ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]),
            ("landsat7_etm", None, ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]),  # not the pan band B8
            ("landsat8_oli_tirs", ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B10", "B11"],
             ["B2", "B3", "B4", "B5", "B6", "B7", "B10"])):
        desc = BandDescriptors.from_sensor(sensor, names)
        # All of a scene's bands calibrated as they are (TM), or the calibrated ones among them.
        chosen = _names(desc, model.calibrated_subset(desc.normalised())) or \
            (model.bn_calibration_for(desc.normalised()), list(desc.names))
        assert chosen == ("RGBNIRSWIRTIR", want), sensor


@settings(max_examples=30, deadline=None)
@given(st.permutations(S2), st.integers(3, 13))
def test_the_choice_does_not_depend_on_band_order(model, order, n):
    """Any subset of Sentinel-2's bands in any order: the same bands are chosen, and every
    chosen band lies within the calibration tolerance of a calibrated band."""
    names = list(order[:n])
    desc = BandDescriptors.from_sensor("sentinel2_msi", names)
    ref = BandDescriptors.from_sensor("sentinel2_msi", sorted(names, key=S2.index))
    got = _names(desc, model.calibrated_subset(desc.normalised()))
    want = _names(ref, model.calibrated_subset(ref.normalised()))
    assert (got is None) == (want is None)
    if got is not None:
        assert got[0] == want[0] and sorted(got[1]) == sorted(want[1])
        cal = model.bn_calibrations[got[0]][0].numpy()
        chosen = desc.select(got[1]).normalised()
        assert len(chosen) == len(cal)
        assert np.abs(np.sort(chosen[:, 1]) - np.sort(cal[:, 1])).max() <= 0.05


def test_the_engine_uses_the_choice_only_when_no_bands_are_given(shared_data):
    ref = np.load(shared_data / "s2_l1c_eolearn" / "REFERENCE_SCENES.npy", mmap_mode="r")
    da = xr.DataArray(np.moveaxis(np.asarray(ref[2]), -1, 0), dims=("band", "y", "x"), coords={"band": S2})
    da = sensei_xr.attach_wavelengths(da, "sentinel2_msi")
    chosen = da.sensei.cloud_probability()
    assert chosen.attrs["bands_used"] == "B02,B03,B04,B8A,B11,B12"
    direct = da.sensei.cloud_probability(bands=["B02", "B03", "B04", "B8A", "B11", "B12"])
    np.testing.assert_array_equal(chosen.values, direct.values)
    given_all = da.sensei.cloud_probability(bands=S2)
    assert given_all.attrs["bands_used"] == ",".join(S2)
