"""The STAC item model on real items, as public STAC APIs served them.

Every Item in ../shared/stac_items (Earth Search v0/v1, Planetary Computer, USGS
LandsatLook, NASA CMR, CDSE, EOPF, Astraea, SAGE, CloudFerro; PROVENANCE.md there says
where each comes from) is either read by :func:`sensei_xr.io.stac.read_item` or refused
with a clear error; a new file there fails :func:`test_every_item_is_triaged` until it is
added to ``OUTCOMES``. The expected values were read by hand from each item's JSON (and from
the catalog or profile TOML it names), never computed by the code under test.
Stacking is lazy: no asset is read (their hrefs are remote).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensei_xr import catalogs
from sensei_xr.io import stac
from sensei_xr.io.stac import NoUsableBandsError, StacError, read_item, stack_items

ROOT = Path(__file__).resolve().parents[1]


def _items_dir() -> Path | None:
    candidates = [os.environ.get("SENSEI_XR_STAC_ITEMS"), os.environ.get("SENSEI_XR_DATA") and
                  str(Path(os.environ["SENSEI_XR_DATA"]).parent / "stac_items"),
                  str(ROOT.parent / "shared" / "stac_items")]
    return next((Path(c) for c in candidates if c and Path(c).is_dir()), None)


ITEMS = _items_dir()
pytestmark = pytest.mark.skipif(ITEMS is None, reason="real STAC items not found: set SENSEI_XR_STAC_ITEMS")


def item(prefix: str) -> dict:
    """The one item file whose name starts with ``prefix``."""
    files = sorted(ITEMS.glob(f"{prefix}*.json"))
    assert len(files) == 1, f"{prefix!r} matches {[f.name for f in files]}"
    return json.loads(files[0].read_text())


def collection(name: str) -> dict:
    return json.loads((ITEMS / "collections" / f"{name}.json").read_text())


# file-name prefix -> ("read", sensor, profile id, spectral assets, stack_items arguments)
#                  or ("refused", regex of the message)
OUTCOMES = {
    "astraea-eod__sentinel2_l1c__S2A_OPER": ("read", "sentinel2_msi", None, 13, {"epsg": 32659}),
    "cdse-stac__sentinel-2-global-mosaics__": ("read", "sentinel2_msi", "cdse_sentinel_2_global_mosaics", 4, {}),
    "cdse-stac__sentinel-2-l2a__S2C_MSIL2A": ("read", "sentinel2_msi", "cdse_sentinel_2_l2a", 25, {}),
    "cloudferro-pgstac-demo__landsat-c2-l1-oli__": ("read", "landsat9_oli2_tirs2", None, 9, {"calibrate": False}),
    "earth-search-v0__sentinel-s2-l2a-cogs__S2A_24XWF": ("read", "sentinel2_msi", "earth_search_v0_sentinel_s2_l2a_cogs", 12, {}),
    "earth-search-v0__sentinel-s2-l2a-cogs__S2B_20EPT": ("read", "sentinel2_msi", "earth_search_v0_sentinel_s2_l2a_cogs", 12, {}),
    "earth-search-v0__sentinel-s2-l2a-cogs__S2B_55GDP": ("read", "sentinel2_msi", "earth_search_v0_sentinel_s2_l2a_cogs", 12, {}),
    "earth-search-v0__sentinel-s2-l2a__S2B_15MWT": ("read", "sentinel2_msi", "earth_search_v0_sentinel_s2_l2a", 12, {}),
    "earth-search-v0__sentinel-s2-l2a__S2B_15PZP": ("read", "sentinel2_msi", "earth_search_v0_sentinel_s2_l2a", 12, {}),
    "earth-search-v1__landsat-c2-l2__": ("read", "landsat8_oli_tirs", "earth_search_landsat_c2_l2", 8, {}),
    **{f"earth-search-v1__sentinel-2-c1-l2a__{t}": ("read", "sentinel2_msi", "earth_search_sentinel_2_c1_l2a", 12, {})
       for t in ("S2A_T13TDE_20240402", "S2A_T13TDE_20240405", "S2A_T38WMA", "S2B_T13TDE", "S2B_T20EPT",
                 "S2B_T33RYP")},
    **{f"earth-search-v1__sentinel-2-l1c__{t}": ("read", "sentinel2_msi", "earth_search_sentinel_2_l1c", 13, {})
       for t in ("S2A_37WDS", "S2B_20EPT", "S2B_21MZV", "S2B_21NXJ", "S2B_25LBG", "S2B_33RYP")},
    **{f"earth-search-v1__sentinel-2-l2a__{t}": ("read", "sentinel2_msi", "earth_search_sentinel_2_l2a", 12, {})
       for t in ("S2A_37WDS", "S2A_38WMA", "S2B_20EPT", "S2B_21NXJ", "S2B_25LBG", "S2B_33RYP")},
    "eopf-sample-service__": ("refused", r"its bands are Zarr stores \(B01_20m, B02_10m"),
    # HLS tiles T01GEL and T60MTD (in the hrefs): UTM zones 1 and 60 south.
    "nasa-cmr-stac__HLSL30.v1.5__G1994512890": ("read", "hls_l30", "nasa_cmr_hls_l30_v1_5", 10,
                                                {"epsg": 32701, "resolution": 30}),
    "nasa-cmr-stac__HLSL30.v1.5__G1994873598": ("read", "hls_l30", "nasa_cmr_hls_l30_v1_5", 10,
                                                {"epsg": 32760, "resolution": 30}),
    **{f"planetary-computer__aster-l1t__AST_L1T_0031223200609{t}": (
        "refused", r"no sensor catalog knows platform 'terra' / instruments \['aster'\].*"
                   r"assets \['SWIR', 'TIR', 'VNIR'\] hold several bands each") for t in ("0547", "0556")},
    "planetary-computer__goes-cmi__": ("refused", r"no sensor catalog knows platform 'GOES-18' / instruments \['ABI'\]"),
    **{f"planetary-computer__landsat-8-c2-l2__LC08_L2SP_044034_{d}": (
        "read", "landsat8_oli_tirs", "planetary_computer_landsat_8_c2_l2", 8, {}) for d in ("20160830", "20170105")},
    **{f"planetary-computer__landsat-c2-l1__{t}": ("refused", r"instrument 'mss' scene: Landsat MSS")
       for t in ("LM04", "LM05")},
    "planetary-computer__landsat-c2-l2__LC08": ("read", "landsat8_oli_tirs", "planetary_computer_landsat_c2_l2", 8, {}),
    **{f"planetary-computer__landsat-c2-l2__LC09_L2SP_{t}": (
        "read", "landsat9_oli2_tirs2", "planetary_computer_landsat_c2_l2", 8, {}) for t in ("079022", "089078", "090091")},
    **{f"planetary-computer__modis-{c}": ("refused", r"no usable spectral band; .*the item names no platform or "
                                                     r"instruments") for c in ("11A1", "21A2")},
    **{f"planetary-computer__sentinel-2-l2a__{t}": ("read", "sentinel2_msi", "planetary_computer_sentinel_2_l2a", 12, {})
       for t in ("S2A_MSIL2A_20190101T000001_N0212", "S2A_MSIL2A_20190101T000001_R116", "S2A_MSIL2A_20200601",
                 "S2A_MSIL2A_20220728", "S2A_MSIL2A_20230210", "S2A_MSIL2A_20230623", "S2A_MSIL2A_20240601",
                 "S2A_MSIL2A_20240823", "S2B_MSIL2A_20190629", "S2B_MSIL2A_20200606", "S2B_MSIL2A_20220612",
                 "S2B_MSIL2A_20240228")},
    "sage-uvt__sentinel-2-l1c__": ("read", "sentinel2_msi", None, 13, {}),
    "usgs-landsatlook__landsat-c2l2-sr__LC08_L2SP": ("read", "landsat8_oli_tirs", "usgs_landsatlook_landsat_c2l2_sr", 7, {}),
    "usgs-landsatlook__landsat-c2l2-sr__LC08_L2SR": ("read", "landsat8_oli_tirs", "usgs_landsatlook_landsat_c2l2_sr", 7, {}),
    "usgs-landsatlook__landsat-c2l2-sr__LC09": ("read", "landsat9_oli2_tirs2", "usgs_landsatlook_landsat_c2l2_sr", 7, {}),
}


def test_every_item_is_triaged():
    names = sorted(p.name for p in ITEMS.glob("*.json"))
    assert len(names) == 60
    for name in names:
        assert sum(name.startswith(p) for p in OUTCOMES) == 1, f"{name}: add it to OUTCOMES (once)"
    assert sum(o[0] == "read" for o in OUTCOMES.values()) == 52


@pytest.mark.parametrize("prefix", sorted(OUTCOMES))
def test_item_read_and_stacked_or_refused(prefix):
    outcome = OUTCOMES[prefix]
    it = item(prefix)
    if outcome[0] == "refused":
        with pytest.raises(NoUsableBandsError, match=outcome[1]) as info:
            read_item(it)
        assert it["id"] in str(info.value) and "\n" not in str(info.value)
        with pytest.raises(NoUsableBandsError, match=outcome[1]):
            stack_items([it])
        return
    _, sensor, profile, n_assets, stack_kw = outcome
    info = read_item(it)
    assert info.id == it["id"] and info.sensor == sensor
    assert (info.profile.id if info.profile else None) == profile
    assert len(info.bands) == n_assets
    for band in info.bands:
        assert band.kind in ("reflective", "thermal") and len(band.wavelengths_nm) == 3
        assert band.calibration.units == ("kelvin" if band.kind == "thermal" else "reflectance")
    da = stack_items([it], **stack_kw)  # lazy: builds the graph, reads nothing
    assert da.dims == ("time", "band", "y", "x") and da.sizes["time"] == 1
    assert set(map(str, da.band.values)) <= {b.key for b in info.bands}
    assert list(da.sensor_band.values) == [info.band(str(k)).sensor_band for k in da.band.values]


# ------------------------------------------------------------------ Sentinel-2, per API


def test_astraea_baseline_only_in_the_tile_id_and_no_projection():
    """STAC 1.0.0-beta.2, no platform, no proj fields; ``..._N02.07`` ends the id."""
    info = read_item(item("astraea-eod__"))
    assert info.sentinel2.baseline == "02.07" and info.sentinel2.source == "id"
    b01, b10 = info.band("B01"), info.band("B10")
    assert b01.calibration.scale == 1e-4 and b01.calibration.offset == 0.0  # before 04.00
    assert b10.sensor_band == "B10" and b10.kind == "reflective"  # cirrus in Sentinel-2
    assert b10.catalog_nm == (1358.0, 1373.5, 1389.0) and b10.item_nm is None  # names only
    assert b01.gsd == 60.0 and info.grid.epsg is None and b01.grid.transform is None
    with pytest.raises(StacError, match=r"give no CRS .*pass epsg="):
        stack_items([item("astraea-eod__")])
    da = stack_items([item("astraea-eod__")], epsg=32659)
    assert da.rio.crs.to_epsg() == 32659 and da.rio.resolution() == (20.0, -20.0)  # most bands are 20 m


def test_cdse_stac_1_1_processing_version_and_proj_code():
    info = read_item(item("cdse-stac__sentinel-2-l2a__"))
    assert info.sentinel2.baseline == "05.12" and info.sentinel2.source == "processing:version"
    red = info.band("B04_10m")
    assert (red.calibration.scale, red.calibration.offset) == (1e-4, pytest.approx(-0.1))
    assert red.grid.epsg == 32655 and red.grid.shape == (10980, 10980)
    assert red.grid.transform == (10, 0, 600000, 0, -10, 7600020)
    # CDSE's eo:full_width_half_max are several times the measured widths: the catalog wins.
    b01 = info.band("B01_60m")
    assert b01.item_nm == pytest.approx((329.0, 443.0, 557.0)) and b01.catalog_nm == (432.2, 442.7, 453.2)
    da = stack_items([item("cdse-stac__sentinel-2-l2a__")])
    # One asset per band: the product's own resolution (role sampling:original).
    assert list(map(str, da.band.values)) == ["B01_60m", "B02_10m", "B03_10m", "B04_10m", "B05_20m", "B06_20m",
                                              "B07_20m", "B08_10m", "B8A_20m", "B09_60m", "B11_20m", "B12_20m"]
    assert da.rio.crs.to_epsg() == 32655 and da.rio.resolution() == (20.0, -20.0)
    assert tuple(da.rio.transform())[:6] == (20.0, 0.0, 600000.0, 0.0, -20.0, 7600020.0)
    assert da.shape[-2:] == (5490, 5490) and da.attrs["radiometry"] == "surface"


def test_cdse_mosaic_bbox_and_shape_without_transform():
    info = read_item(item("cdse-stac__sentinel-2-global-mosaics__"))
    assert [b.key for b in info.bands] == ["B02", "B03", "B04", "B08"] and info.sentinel2 is None
    nir = info.band("B08")
    assert (nir.calibration.scale, nir.calibration.offset) == (1e-4, 0.0)  # reflectance x 10000
    assert nir.grid.epsg == 32631 and nir.grid.shape == (10008, 10008) and nir.grid.transform is None
    da = stack_items([item("cdse-stac__sentinel-2-global-mosaics__")])
    assert da.shape[-2:] == (10008, 10008) and da.rio.crs.to_epsg() == 32631
    assert da.rio.transform().c == pytest.approx(299999.9999662149)
    assert da.rio.transform().f == pytest.approx(4000019.9999134666)


def test_earth_search_v0_cogs_offset_applied_flag():
    info = read_item(item("earth-search-v0__sentinel-s2-l2a-cogs__S2A_24XWF"))
    s2 = info.sentinel2
    assert (s2.baseline, s2.source, s2.offset_applied_by) == ("05.09", "sentinel:processing_baseline",
                                                             "sentinel:boa_offset_applied")
    b01 = info.band("B01")
    assert (b01.calibration.scale, b01.calibration.offset) == (1e-4, 0.0)
    assert b01.grid.epsg == 32624 and b01.grid.transform == (60, 0, 499980, 0, -60, 8100000)
    assert b01.item_nm == pytest.approx((430.4, 443.9, 457.4))


def test_earth_search_v0_jp2_without_shape_or_transform():
    it = item("earth-search-v0__sentinel-s2-l2a__S2B_15MWT")
    info = read_item(it)
    b02 = info.band("B02")
    assert info.sentinel2.offset_applied_by is None  # ESA's JPEG 2000 files: the baseline's offset
    assert (b02.calibration.scale, b02.calibration.offset) == (1e-4, pytest.approx(-0.1))
    assert b02.grid.epsg == 32715 and b02.grid.shape is None and b02.gsd == 10
    da = stack_items([it])
    t = da.rio.transform()
    assert da.rio.crs.to_epsg() == 32715 and (t.a, t.e) == (20.0, -20.0)
    assert t.c % 20 == 0 and t.f % 20 == 0  # whole 20 m pixels from the CRS origin, as S2 tiles


def test_earth_search_v1_l2a_never_corrects_twice():
    """The item says offset -0.1 in raster:bands and that the COG values were shifted back."""
    it = item("earth-search-v1__sentinel-2-l2a__S2B_33RYP")
    assert it["properties"]["earthsearch:boa_offset_applied"] is True
    assert it["assets"]["red"]["raster:bands"][0]["offset"] == -0.1
    red = read_item(it).band("red")
    assert (red.sensor_band, red.calibration.scale, red.calibration.offset) == ("B04", 1e-4, 0.0)
    # The JPEG 2000 twin is ESA's file, not shifted: the baseline's offset applies to it.
    bare = read_item(it, profile=False)
    assert bare.band("red").calibration.offset == 0.0
    assert bare.band("red-jp2").calibration.offset == pytest.approx(-0.1)
    assert "red-jp2" not in stack_items([it], collection_profile=False).band.values  # COG preferred


def test_earth_search_v1_c1_l2a_and_l1c():
    c1 = read_item(item("earth-search-v1__sentinel-2-c1-l2a__S2B_T33RYP"))
    assert c1.sentinel2.baseline == "05.10" and c1.sentinel2.offset_applied_by is None
    assert c1.band("nir08").sensor_band == "B8A" and c1.band("nir08").calibration.offset == pytest.approx(-0.1)
    l1c = read_item(item("earth-search-v1__sentinel-2-l1c__S2B_33RYP"))
    cirrus = l1c.band("cirrus")
    assert cirrus.sensor_band == "B10" and cirrus.kind == "reflective"
    assert (cirrus.calibration.scale, cirrus.calibration.offset) == (1e-4, pytest.approx(-0.1))


def test_sage_sentinel_2c_l1c_b10_is_cirrus():
    info = read_item(item("sage-uvt__"))
    b10 = info.band("B10")
    assert info.sensor == "sentinel2_msi" and info.profile is None  # platform "Sentinel-2C"
    assert b10.kind == "reflective" and b10.common_name == "cirrus"
    assert b10.catalog_nm == (1358.0, 1373.5, 1389.0) and b10.item_nm == pytest.approx((1337.5, 1375.0, 1412.5))
    assert (b10.calibration.scale, b10.calibration.offset) == (1e-4, pytest.approx(-0.1))  # 05.11
    assert b10.grid.transform == (60.0, 0.0, 699960.0, 0.0, -60.0, 5300040.0)  # 3x3 in the item
    da = stack_items([item("sage-uvt__")])
    assert tuple(da.rio.transform())[:6] == (20.0, 0.0, 699960.0, 0.0, -20.0, 5300040.0)


def test_sentinel2_offset_by_baseline_never_by_date():
    acquired_2020 = item("planetary-computer__sentinel-2-l2a__S2A_MSIL2A_20200601")
    assert acquired_2020["properties"]["s2:processing_baseline"] == "02.12"
    assert read_item(acquired_2020).band("B04").calibration.offset == 0.0
    acquired_2022 = item("planetary-computer__sentinel-2-l2a__S2A_MSIL2A_20220728")
    assert read_item(acquired_2022).band("B04").calibration.offset == pytest.approx(-0.1)
    # The same 2020 acquisition as CDSE serves the reprocessed archive: baseline 05.00.
    reprocessed = copy.deepcopy(acquired_2020)
    reprocessed["properties"]["s2:processing_baseline"] = "05.00"
    assert read_item(reprocessed).band("B04").calibration.offset == pytest.approx(-0.1)
    # Neither a baseline nor an offset: an error at stack time, not a guess from the date.
    unknown = copy.deepcopy(acquired_2020)
    for name in ("s2:processing_baseline", "s2:product_uri", "s2:datatake_id"):  # N0212 in the last two
        del unknown["properties"][name]
    unknown["id"] = "S2A_no_baseline"
    assert read_item(unknown).band("B04").calibration.problem
    with pytest.raises(StacError, match="cannot tell the Sentinel-2 offset of asset 'B01'"):
        stack_items([unknown])
    assert stack_items([unknown], calibrate=False).attrs["radiometry"] == "DN"


def test_planetary_computer_beta2_item_takes_the_profile_keys():
    info = read_item(item("planetary-computer__sentinel-2-l2a__S2A_MSIL2A_20190101T000001_N0212"))
    assert "B02" in info.keys and "B02_20m" not in info.keys  # resampled copies are not profile assets
    assert info.grid.epsg == 32658 and info.sentinel2.baseline == "02.12"


# ----------------------------------------------------------------------- Landsat, HLS


def test_landsat_c2_l2_raster_bands_and_thermal_kelvin():
    es = read_item(item("earth-search-v1__landsat-c2-l2__"))
    lwir = es.band("lwir11")
    assert lwir.sensor_band == "B10" and lwir.kind == "thermal" and lwir.calibration.units == "kelvin"
    assert (lwir.calibration.scale, lwir.calibration.offset) == (0.00341802, 149.0)
    assert lwir.catalog_nm == (10600.0, 10895.0, 11190.0)
    assert lwir.item_nm == pytest.approx((10605.0, 10900.0, 11195.0))
    coastal = es.band("coastal")
    assert (coastal.calibration.scale, coastal.calibration.offset) == (2.75e-05, -0.2)
    assert es.grid.epsg == 32613 and coastal.grid.transform == (30, 0, 449085, 0, -30, 4581915)
    pc = read_item(item("planetary-computer__landsat-c2-l2__LC09_L2SP_079022"))
    assert pc.sensor == "landsat9_oli2_tirs2" and pc.grid.epsg == 32602
    assert pc.band("nir08").catalog_nm == (850.26, 864.64, 879.03)
    assert pc.band("lwir11").calibration.offset == 149.0


def test_planetary_computer_landsat_8_without_raster_bands():
    info = read_item(item("planetary-computer__landsat-8-c2-l2__LC08_L2SP_044034_20160830"))
    sr_b1, st_b10 = info.band("SR_B1"), info.band("ST_B10")
    assert sr_b1.sensor_band == "B1" and sr_b1.item_nm == pytest.approx((430.0, 440.0, 450.0))
    assert (sr_b1.calibration.scale, sr_b1.calibration.offset) == (2.75e-05, -0.2)  # USGS, via the profile
    assert st_b10.kind == "thermal" and (st_b10.calibration.scale, st_b10.calibration.offset) == (0.00341802, 149.0)
    assert st_b10.gsd == 100.0 and st_b10.resolution == (30.0, 30.0)  # resampled to 30 m by USGS
    # Without the profile the scale is unknown: refused, not DN passed off as reflectance.
    with pytest.raises(StacError, match=r"asset 'SR_B1': no scale to reflectance is known"):
        stack_items([item("planetary-computer__landsat-8-c2-l2__LC08_L2SP_044034_20160830")],
                    collection_profile=False)


def test_usgs_landsatlook_items_both_schemas():
    new = read_item(item("usgs-landsatlook__landsat-c2l2-sr__LC09"))
    assert new.sensor == "landsat9_oli2_tirs2"  # platform "LANDSAT_9"
    coastal = new.band("coastal")
    assert coastal.sensor_band == "B1" and coastal.item_nm is None  # centre 0.44 um, no width
    assert (coastal.calibration.scale, coastal.calibration.offset) == (2.75e-05, -0.2)
    assert new.grid.epsg == 32656 and coastal.grid.transform == (30, 0, 310785, 0, -30, -1163385)
    # STAC 1.0.0-beta.2: eo:platform, and assets' eo:bands as indices into the item's eo:bands.
    old = read_item(item("usgs-landsatlook__landsat-c2l2-sr__LC08_L2SR"))
    assert old.sensor == "landsat8_oli_tirs" and old.grid.epsg == 3031
    assert [b.sensor_band for b in old.bands] == ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]
    assert old.band("SR_B1.TIF").common_name == "coastal"


def test_landsat_level1_dn_without_gains_refused_for_calibration():
    it = item("cloudferro-pgstac-demo__landsat-c2-l1-oli__")
    info = read_item(it)
    assert info.sensor == "landsat9_oli2_tirs2" and info.grid.epsg is None
    cirrus, pan = info.band("cirrus"), info.band("pan")
    assert cirrus.sensor_band == "B9" and pan.sensor_band == "B8" and pan.gsd == 15
    assert cirrus.grid.epsg == 32618 and cirrus.grid.shape == (7971, 7881)  # proj:code on the asset
    assert cirrus.calibration.scale is None and "'MTL.txt'" in cirrus.calibration.problem
    with pytest.raises(StacError, match=r"holds uint16 values and no scale to reflectance.*MTL.*calibrate=False"):
        stack_items([it])
    assert stack_items([it], calibrate=False).attrs["radiometry"] == "DN"


def test_landsat_mss_is_not_thematic_mapper(monkeypatch):
    for prefix in ("planetary-computer__landsat-c2-l1__LM04", "planetary-computer__landsat-c2-l1__LM05"):
        it = item(prefix)
        assert it["properties"]["instruments"] == ["mss"] and it["properties"]["platform"] in ("landsat-4", "landsat-5")
        with pytest.raises(NoUsableBandsError, match="Thematic Mapper"):
            read_item(it)
    # With the user's own MSS catalog (USGS: bands 1-4 at 0.5-0.6, 0.6-0.7, 0.7-0.8, 0.8-1.1 um)
    # the bands are read; the items' raster:bands scale gives radiance, not reflectance.
    monkeypatch.setattr(catalogs, "_registered", {})
    catalogs.register_sensor({
        "sensor": {"id": "landsat45_mss_test", "title": "Landsat 4-5 MSS (test)"},
        "bands": [{"name": f"B{i + 1}", "min_nm": lo, "center_nm": (lo + hi) / 2, "max_nm": hi, "kind": "reflective"}
                  for i, (lo, hi) in enumerate([(500.0, 600.0), (600.0, 700.0), (700.0, 800.0), (800.0, 1100.0)])],
    })
    it = item("planetary-computer__landsat-c2-l1__LM04")
    info = read_item(it, sensor="landsat45_mss_test")
    assert [(b.key, b.sensor_band) for b in info.bands] == [("green", "B1"), ("red", "B2"), ("nir08", "B3"),
                                                           ("nir09", "B4")]
    green = info.band("green")
    assert it["assets"]["green"]["raster:bands"][0]["scale"] == 0.8752
    assert green.calibration.scale is None
    assert "gives radiance (watt/steradian/square_meter/micrometer), not reflectance" in green.calibration.problem
    with pytest.raises(StacError, match="gives radiance"):
        stack_items([it], sensor="landsat45_mss_test")
    assert stack_items([it], sensor="landsat45_mss_test", calibrate=False).sizes["band"] == 4


def test_hls_l30_v1_5_known_by_collection_b10_thermal():
    it = item("nasa-cmr-stac__HLSL30.v1.5__G1994512890")
    info = read_item(it)
    b10, b09 = info.band("B10"), info.band("B09")
    assert b10.kind == "thermal" and b10.catalog_nm == (10600.0, 10895.0, 11190.0)
    assert (b10.calibration.scale, b10.calibration.offset) == (0.01, 273.15)  # deg C x 100 -> K
    assert b09.kind == "reflective" and b09.catalog_nm == (1363.21, 1373.43, 1383.60)
    assert (b09.calibration.scale, b09.calibration.offset) == (1e-4, 0.0)
    assert info.grid.epsg is None and b10.gsd is None
    with pytest.raises(StacError, match="give no CRS"):
        stack_items([it])
    with pytest.raises(StacError, match="pass resolution="):
        stack_items([it], epsg=32701)
    da = stack_items([it], epsg=32701, resolution=30)
    assert list(da.band_kind.values) == ["reflective"] * 8 + ["thermal"] * 2


def test_collection_item_assets_fill_bare_items_and_are_checked():
    """The Planetary Computer's hls2-l30 collection gives B01 0.48 um and B02 0.44 um (swapped)."""
    bare = item("nasa-cmr-stac__HLSL30.v1.5__G1994512890")
    pc = collection("planetary-computer__hls2-l30")
    assert pc["item_assets"]["B01"]["eo:bands"][0]["center_wavelength"] == 0.48
    with pytest.raises(NoUsableBandsError, match=r"asset 'B01': its eo:bands centre 480 nm is outside band B01"):
        read_item(bare, collection=pc)
    fixed = copy.deepcopy(pc)
    for key, centre in (("B01", 0.44), ("B02", 0.48)):
        fixed["item_assets"][key]["eo:bands"][0]["center_wavelength"] = centre
    info = read_item(bare, collection=fixed)
    assert info.band("B02").item_nm == pytest.approx((450.0, 480.0, 510.0))
    assert info.band("B11").item_nm == pytest.approx((11500.0, 12000.0, 12500.0))


# ------------------------------------------------------------------------- refusals


def test_refusals_say_what_is_missing():
    with pytest.raises(NoUsableBandsError, match=r"Zarr stores .* open the Zarr store with xarray"):
        read_item(item("eopf-sample-service__"))
    with pytest.raises(NoUsableBandsError, match=r"'LST_Day_1km'.*register_sensor"):
        read_item(item("planetary-computer__modis-11A1"))
    # GOES: eo:bands with a centre and no width, of a sensor no catalog has.
    goes = item("planetary-computer__goes-cmi__")
    assert "full_width_half_max" not in goes["assets"]["C01_1km"]["eo:bands"][0]
    with pytest.raises(NoUsableBandsError, match="center_wavelength and full_width_half_max"):
        read_item(goes)


def test_profiles_chosen_by_collection_keys_and_the_items_api():
    # landsat-c2-l2 is served by Earth Search and the Planetary Computer with the same keys:
    # the item's root link decides.
    assert read_item(item("earth-search-v1__landsat-c2-l2__")).profile.id == "earth_search_landsat_c2_l2"
    assert read_item(item("planetary-computer__landsat-c2-l2__LC08")).profile.id == "planetary_computer_landsat_c2_l2"
    usgs = stac.load_profile("usgs_landsatlook_landsat_c2l2_sr")
    # Two keys of one band (renamed between item versions) are allowed.
    assert usgs.band("coastal", "landsat8_oli_tirs").name == usgs.band("SR_B1.TIF", "landsat8_oli_tirs").name == "B1"
    assert usgs.sensor_for("LANDSAT_7") == "landsat7_etm" and usgs.band("blue", "landsat7_etm").name == "B1"


def test_declared_nodata_is_masked_when_the_file_has_no_tag(tmp_path):
    """Earth Search v1 L1C declares ``raster:bands nodata: 0`` (and offset -0.1) for JPEG
    2000 assets that carry no no-data tag: stored 0 must come out NaN, not -0.1
    reflectance; the other values are calibrated as before, and a file's own tag still
    counts where the item declares nothing."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    it = copy.deepcopy(item("earth-search-v1__sentinel-2-l1c__S2B_33RYP"))
    rng = np.random.default_rng(0)
    transform = from_origin(699960, 3400020, 10, 10)
    stored = {}
    for key in ("red", "nir"):
        dn = rng.integers(1001, 9000, (40, 48)).astype("uint16")
        dn[:7, :9] = 0  # outside the swath
        if key == "nir":
            dn[30:, 40:] = 65535  # the item declares nothing else; only a tag would mask this
        path = tmp_path / f"{key}.tif"
        with rasterio.open(path, "w", driver="GTiff", width=48, height=40, count=1, dtype="uint16",
                           crs="EPSG:32633", transform=transform,
                           nodata=65535 if key == "nir" else None) as dst:
            dst.write(dn, 1)
        stored[key] = dn
        asset = it["assets"][key]
        asset["href"] = str(path)
        asset["type"] = "image/tiff; application=geotiff"
        asset["proj:shape"], asset["proj:transform"] = [40, 48], list(transform)[:6]
    with rasterio.open(tmp_path / "red.tif") as src:
        assert src.nodata is None  # as the JPEG 2000 files are
    da = stack_items([it], assets=["red", "nir"]).isel(time=0).values
    for b, key in enumerate(("red", "nir")):
        dn = stored[key]
        nodata = (dn == 0) | (dn == 65535)
        assert np.isnan(da[b][nodata]).all()
        np.testing.assert_allclose(da[b][~nodata], dn[~nodata] * 1e-4 - 0.1, rtol=0, atol=1e-6)
    raw = stack_items([it], assets=["red"], calibrate=False).isel(time=0, band=0).values
    assert np.isnan(raw[:7, :9]).all() and np.array_equal(raw[7:], stored["red"][7:].astype("float32"))
    # Declared nowhere: the stored 0 stays a value, as it must for data that has no no-data.
    del it["assets"]["red"]["raster:bands"][0]["nodata"]
    info = read_item(it, False)
    assert next(b for b in info.bands if b.key == "red").nodata is None


def test_bbox_clip_covers_the_whole_box_not_its_corners():
    """In UTM a parallel bulges south between a lon/lat box's corners: the stack clipped to
    a 3 deg box across zone 33's central meridian (15 E) at 29-30 N must reach 927 m
    further south than its corners do (the whole box, densified outline)."""
    import numpy as np
    from pyproj import Transformer

    it = item("earth-search-v1__sentinel-2-l1c__S2B_33RYP")
    box = (13.5, 29.0, 16.5, 30.0)
    da = stack_items([it], assets=["red"], bounds_latlon=box)  # lazy: nothing is read
    res = abs(float(da.x[1] - da.x[0]))
    south, north = float(da.y.min()) - res / 2, float(da.y.max()) + res / 2
    west, east = float(da.x.min()) - res / 2, float(da.x.max()) + res / 2
    t = Transformer.from_crs(4326, 32633, always_xy=True)
    lon = np.concatenate([np.linspace(13.5, 16.5, 301), np.full(101, 16.5), np.linspace(16.5, 13.5, 301),
                          np.full(101, 13.5)])
    lat = np.concatenate([np.full(301, 29.0), np.linspace(29, 30, 101), np.full(301, 30.0), np.linspace(30, 29, 101)])
    xs, ys = t.transform(lon, lat)
    assert south <= ys.min() and north >= ys.max() and west <= xs.min() and east >= xs.max()
    assert ys.min() < min(t.transform([13.5, 16.5], [29.0, 29.0])[1]) - 900  # the bulge is real
    assert south > ys.min() - res  # and grown by less than a pixel


@pytest.mark.parametrize("clip", [{"bounds_latlon": (13.5, 29.0, 16.5, 30.0), "epsg": 32632, "resolution": 90},
                                  {"bounds": (700001.0, 3300000.0, 700995.0, 3300995.0), "resolution": 60},
                                  {"bounds": (700001.0, 3300000.0, 700995.0, 3300995.0), "resolution": (20, 30)}])
def test_clipped_stacks_have_the_pixel_size_they_say(clip):
    """Coordinates and transform agree on the pixel size asked for, whatever the box: a box
    that is not whole pixels (reprojected, or given by hand) grows to whole pixels."""
    import numpy as np

    it = item("earth-search-v1__sentinel-2-l1c__S2B_33RYP")
    da = stack_items([it], assets=["red"], **clip)
    rx, ry = (clip["resolution"],) * 2 if np.isscalar(clip["resolution"]) else clip["resolution"]
    np.testing.assert_allclose(np.diff(da.x.values), rx, rtol=1e-9)
    np.testing.assert_allclose(np.diff(da.y.values), -ry, rtol=1e-9)
    t = da.rio.transform()
    assert (t.a, -t.e) == pytest.approx((rx, ry)) and float(da.x[0]) == pytest.approx(t.c + rx / 2)
    if "bounds" in clip:
        assert (t.c, t.f) == pytest.approx((clip["bounds"][0], clip["bounds"][3]))  # the corner kept


@given(st.floats(0, 5000), st.floats(0, 5000), st.floats(1, 3000), st.floats(1, 3000))
@settings(max_examples=25, deadline=None)
def test_hand_given_bounds_at_the_native_resolution_stay_on_the_native_grid(dx, dy, w, h):
    """A box in the assets' CRS at their own pixel size is read without resampling, whatever
    its corners: its pixels are the asset's pixels (transform on the asset's grid lines),
    and it covers the box asked for, by less than a pixel more on each side."""
    import numpy as np

    it = item("earth-search-v1__sentinel-2-l1c__S2B_33RYP")
    t0 = it["assets"]["red"]["proj:transform"]
    x0, y0 = t0[2] + 20_000.0 + dx, t0[5] - 20_000.0 - dy
    box = (x0, y0 - h, x0 + w, y0)
    da = stack_items([it], assets=["red"], bounds=box, resolution=10)
    t = da.rio.transform()
    assert (t.a, t.e) == pytest.approx((10.0, -10.0))
    for edge, origin in ((t.c, t0[2]), (t.f, t0[5])):
        assert (edge - origin) / 10.0 == pytest.approx(round((edge - origin) / 10.0), abs=1e-6)
    west, north = t.c, t.f
    east, south = west + 10.0 * da.sizes["x"], north - 10.0 * da.sizes["y"]
    assert west <= box[0] < west + 10 and north >= box[3] > north - 10
    assert east - 10 < box[2] <= east and south + 10 > box[1] >= south
    np.testing.assert_allclose(np.diff(da.x.values), 10.0, rtol=1e-9)
