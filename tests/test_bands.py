"""Band descriptors from DataArrays: canonical nm coords, stackstac um coords, catalog names."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import sensei_xr
from sensei_xr import bands as B
from sensei_xr.bands import BandError, attach_wavelengths, band_descriptors


def _scene(names, **coords):
    data = np.random.default_rng(0).random((len(names), 4, 5)).astype("float32")
    da = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": names})
    return da.assign_coords({k: ("band", v) for k, v in coords.items()})


L8_NAMES = ["B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10"]


def test_normalisation_matches_paper_formula():
    wl = np.array([400.0, 1300.0, 10300.0, 665.0])
    np.testing.assert_allclose(B.normalise_wavelengths(wl), [0.0, 1.0, 2.0, np.log10(365) - 2])
    with pytest.raises(BandError, match="300"):
        B.normalise_wavelengths([250.0])


def test_brightness_temperature_scaling_documented_constants():
    assert B.normalise_brightness_temperature(B.BT_MIN_K) == 0.0
    assert B.normalise_brightness_temperature(B.BT_95_K) == pytest.approx(1.0)
    # A cold cloud top is well below a warm surface after scaling.
    assert B.normalise_brightness_temperature(220.0) < 0.3 < 0.9 < B.normalise_brightness_temperature(297.0)


def test_catalog_named_equals_stackstac_equals_canonical():
    sensor = sensei_xr.get_sensor("landsat8_oli_tirs")
    named = attach_wavelengths(_scene(L8_NAMES), "landsat8_oli_tirs")
    d_named = band_descriptors(named)

    cat = [sensor.band(n) for n in L8_NAMES]
    centre_um = [b.center_nm / 1000 for b in cat]
    fwhm_um = [(b.max_nm - b.min_nm) / 1000 for b in cat]
    stackstac_like = _scene(
        [b.common_name or b.name for b in cat],  # stackstac names bands by asset key
        center_wavelength=np.array(centre_um, dtype=object),
        full_width_half_max=np.array(fwhm_um, dtype=object),
    )
    d_ss = band_descriptors(stackstac_like)
    canonical = _scene(
        L8_NAMES,
        wavelength_min_nm=[b.min_nm for b in cat],
        wavelength_center_nm=[b.center_nm for b in cat],
        wavelength_max_nm=[b.max_nm for b in cat],
    )
    d_can = band_descriptors(canonical)
    by_name = band_descriptors(_scene(L8_NAMES), sensor="landsat8_oli_tirs")

    # min/max from stackstac are centre -+ FWHM/2, so compare the centre exactly and the
    # width; min and max match when the catalog band is symmetric about its centre.
    np.testing.assert_allclose(d_ss.wavelengths_nm[:, 1], d_named.wavelengths_nm[:, 1], atol=1e-6)
    np.testing.assert_allclose(np.diff(d_ss.wavelengths_nm[:, [0, 2]]), np.diff(d_named.wavelengths_nm[:, [0, 2]]), atol=1e-6)
    np.testing.assert_allclose(d_can.wavelengths_nm, d_named.wavelengths_nm)
    np.testing.assert_allclose(by_name.wavelengths_nm, d_named.wavelengths_nm)
    assert d_named.kinds == d_can.kinds == by_name.kinds
    assert d_named.kinds[-1] == "thermal" and d_ss.kinds[-1] == "thermal"
    assert set(d_named.kinds[:-1]) == {"reflective"}
    # The normalised descriptors are what the model sees: identical for the same bands.
    np.testing.assert_allclose(d_named.normalised(), by_name.normalised())
    assert d_named.key == by_name.key


def test_attach_wavelengths_keeps_data_lazy():
    dask = pytest.importorskip("dask.array")
    da = _scene(["B02", "B03", "B04", "B08"]).chunk({"x": 2})
    out = attach_wavelengths(da, "sentinel2_msi")
    assert isinstance(out.data, dask.Array)
    assert out.attrs["sensor"] == "sentinel2_msi"
    assert out[B.WAVELENGTH_CENTER].values[3] == pytest.approx(sensei_xr.get_sensor("s2").band("B08").center_nm)


def test_aliases_resolve_through_catalog():
    d = band_descriptors(_scene(["red", "nir08", "swir16"]), sensor="sentinel2_msi")
    s2 = sensei_xr.get_sensor("sentinel2_msi")
    np.testing.assert_allclose(d.wavelengths_nm[1], s2.band("B8A").wavelengths_nm)


@pytest.mark.parametrize(
    "da, kwargs, match",
    [
        (_scene(["mystery"]), {}, r"band 'mystery' has no wavelength.*sensor="),
        (_scene(["B04", "XX"]), {"sensor": "sentinel2_msi"}, r"'XX' is not a band of sensor 'sentinel2_msi'"),
        (
            _scene(["a"], wavelength_min_nm=[0.45], wavelength_center_nm=[0.48], wavelength_max_nm=[0.51]),
            {},
            r"band 'a'.*0.45 nm.*micrometres",
        ),
        (
            _scene(["a"], wavelength_min_nm=[100.0], wavelength_center_nm=[200.0], wavelength_max_nm=[250.0]),
            {},
            r"band 'a'.*outside 300",
        ),
        (
            _scene(["a"], wavelength_min_nm=[25000.0], wavelength_center_nm=[26000.0], wavelength_max_nm=[27000.0]),
            {},
            r"outside 300-20000",
        ),
        (
            _scene(["a"], wavelength_min_nm=[700.0], wavelength_center_nm=[650.0], wavelength_max_nm=[600.0]),
            {},
            r"min <= centre <= max",
        ),
        (_scene(["B04", "B04"]), {"sensor": "sentinel2_msi"}, r"'B04' appears twice"),
        (_scene(["B04", "red"]), {"sensor": "sentinel2_msi"}, r"'B04' and 'red' have identical wavelengths"),
    ],
)
def test_bad_bands_raise_naming_the_band(da, kwargs, match):
    with pytest.raises(BandError, match=match):
        band_descriptors(da, **kwargs)


def test_unknown_sensor_lists_choices():
    with pytest.raises(Exception, match=r"sentinel2_msi"):
        band_descriptors(_scene(["B04"]), sensor="sentinel-99")


def test_no_band_dimension():
    da = xr.DataArray(np.zeros((4, 5)), dims=("y", "x"))
    with pytest.raises(BandError, match=r"no 'band' dimension.*rename"):
        band_descriptors(da)
    empty = xr.DataArray(np.zeros((0, 4, 5)), dims=("band", "y", "x"), coords={"band": []})
    with pytest.raises(BandError, match="size 0"):
        band_descriptors(empty)


def test_values_checks():
    d = band_descriptors(_scene(["B02", "B10"]), sensor="landsat8_oli_tirs")
    good = np.stack([np.full((3, 3), 0.12), np.full((3, 3), 290.0)]).astype("float32")
    B.check_band_values(good, d)  # passes

    with pytest.raises(BandError, match="integers"):
        B.check_band_values(good.astype("uint16"), d)
    dn = good.copy()
    dn[0] = 8500.0
    with pytest.raises(BandError, match=r"band 'B02' chunk \(0, 1\).*DN"):
        B.check_band_values(dn, d, where="chunk (0, 1)")
    celsius = good.copy()
    celsius[1] = 17.0
    with pytest.raises(BandError, match=r"thermal band 'B10'.*Celsius.*273.15"):
        B.check_band_values(celsius, d)
    nan = np.full_like(good, np.nan)
    B.check_band_values(nan, d)  # all no data: nothing to judge

    # Large blocks are judged on a regular subsample: DN and Celsius are still caught.
    big = np.stack([np.full((700, 700), 0.12), np.full((700, 700), 290.0)]).astype("float32")
    B.check_band_values(big, d)
    big_dn = big.copy()
    big_dn[0, 100:, :] = 8500.0  # DN over most of the block
    with pytest.raises(BandError, match=r"band 'B02'.*DN"):
        B.check_band_values(big_dn, d)
    big_c = big.copy()
    big_c[1] -= 273.15
    with pytest.raises(BandError, match="Celsius"):
        B.check_band_values(big_c, d)

    x = B.to_model_input(good, d)
    assert x.dtype == np.float32
    assert x[0, 0, 0] == pytest.approx(0.12)
    assert x[1, 0, 0] == pytest.approx((290.0 - B.BT_MIN_K) / (B.BT_95_K - B.BT_MIN_K))


def test_select_and_key():
    d = band_descriptors(_scene(["B02", "B03", "B04"]), sensor="sentinel2_msi")
    sub = d.select(["B04", "B02"])
    assert sub.names == ("B04", "B02")
    np.testing.assert_array_equal(sub.wavelengths_nm[0], d.wavelengths_nm[2])
    assert sub.key != d.key and hash(sub.key)
    with pytest.raises(BandError, match="B08"):
        d.select(["B08"])
