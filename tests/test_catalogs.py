"""Sensor catalogs: shipped files, facts cross-checked against agency numbers, lookups,
validation of malformed files, user-registered sensors and $SENSEI_XR_CATALOG_PATH."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest

from sensei_xr import catalogs
from sensei_xr.catalogs import (
    Band,
    CatalogError,
    Sensor,
    UnknownBandError,
    UnknownSensorError,
    catalog_dirs,
    get_sensor,
    list_sensors,
    load_sensor_file,
    register_sensor,
)

REQUIRED = {
    "sentinel2_msi": 13,
    "landsat45_tm": 7,
    "landsat7_etm": 8,
    "landsat8_oli_tirs": 11,
    "landsat9_oli2_tirs2": 11,
    "perusat1": 5,
    "sentinel3_slstr": 11,
    "sentinel3_olci": 21,
    "modis": 19,
    "planetscope_4band": 4,
    "planetscope_8band": 8,
    "hls_l30": 10,
    "hls_s30": 13,
}

REPO_CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"

# Planck radiation constants for K1 = c1 / lambda^5, K2 = c2 / lambda (lambda in um).
C1 = 1.191042e8
C2 = 1.4387769e4


@pytest.fixture(autouse=True)
def _isolated_registry(monkeypatch):
    """Each test starts with no user-registered sensors and leaves none behind."""
    monkeypatch.setattr(catalogs, "_registered", {})
    monkeypatch.delenv(catalogs.ENV_VAR, raising=False)
    catalogs.clear_cache()
    yield
    catalogs.clear_cache()


def _shipped() -> list[Sensor]:
    return [get_sensor(s) for s in list_sensors()]


# ----------------------------------------------------------------- shipped catalogs


def test_every_required_sensor_is_shipped_with_its_bands():
    assert set(REQUIRED) <= set(list_sensors())
    for sid, n in REQUIRED.items():
        s = get_sensor(sid)
        assert s.id == sid
        assert len(s.bands) == n, (sid, s.band_names)
        assert s.references, f"{sid} cites no document"
        assert Path(s.path).stem == sid


def test_catalog_files_are_the_shipped_set():
    stems = {p.stem for p in REPO_CATALOGS.glob("*.toml")}
    assert stems == set(REQUIRED)
    assert catalog_dirs()[0].resolve() == REPO_CATALOGS.resolve()


def test_every_band_is_ordered_in_range_and_typed():
    for s in _shipped():
        for b in s.bands:
            assert 300 <= b.min_nm < b.center_nm < b.max_nm <= 20000, (s.id, b.name)
            assert b.wavelengths_nm == (b.min_nm, b.center_nm, b.max_nm)
            assert b.kind in ("reflective", "thermal")
            assert b.gsd_m is None or b.gsd_m > 0
            if b.is_thermal:
                assert b.k1 > 0 and b.k2 > 0, (s.id, b.name)
                # Thermal bands lie beyond 3 um; reflective ones below 2.5 um.
                assert b.center_nm > 3000, (s.id, b.name)
            else:
                assert b.k1 is None and b.k2 is None
                assert b.center_nm < 2500, (s.id, b.name)
            for platform, c in b.center_nm_by_platform:
                assert platform in s.platforms
                assert b.min_nm < c < b.max_nm


def test_band_names_and_aliases_unique_within_each_sensor():
    for s in _shipped():
        keys = [n.casefold() for b in s.bands for n in (b.name, *b.aliases)]
        assert len(keys) == len(set(keys)), s.id
        # Every listed name resolves to its own band.
        for b in s.bands:
            for n in (b.name, *b.aliases):
                assert s.band(n) is b


def test_sensor_ids_and_aliases_unique_across_sensors():
    seen: dict[str, str] = {}
    for s in _shipped():
        for n in (s.id, *s.aliases):
            key = n.casefold()
            assert key not in seen or seen[key] == s.id, f"{n!r}: {seen.get(key)} and {s.id}"
            seen[key] = s.id
            assert get_sensor(n) is s


def test_thermal_constants_from_planck_are_consistent_where_not_published():
    # SLSTR and MODIS constants are computed from the band centre; check the arithmetic.
    for sid in ("sentinel3_slstr", "modis"):
        for b in get_sensor(sid).bands:
            if b.is_thermal:
                lam = b.center_nm / 1000.0
                assert b.k1 == pytest.approx(C1 / lam**5, rel=1e-6), (sid, b.name)
                assert b.k2 == pytest.approx(C2 / lam, rel=1e-6), (sid, b.name)
    # Published Landsat constants are close to the Planck values at the band centre
    # (a sanity check that the units are W/(m2 sr um) and K).
    b10 = get_sensor("landsat8_oli_tirs").band("B10")
    assert b10.k1 == pytest.approx(C1 / (b10.center_nm / 1000) ** 5, rel=0.01)
    assert b10.k2 == pytest.approx(C2 / (b10.center_nm / 1000), rel=0.01)


# ------------------------------------------------ facts against independent numbers

L8_README_NM = {  # USGS Landsat 8 band limits (measured FWHM), nm
    "B2": (452, 512),
    "B3": (533, 590),
    "B4": (636, 673),
    "B5": (851, 879),
    "B6": (1566, 1651),
    "B7": (2107, 2294),
    "B9": (1363, 1384),
    "B10": (10600, 11190),
    "B11": (11500, 12510),
}

MODIS_SPEC_NM = {  # NASA MODIS specification bandwidths, nm
    "B01": (620, 670),
    "B02": (841, 876),
    "B03": (459, 479),
    "B04": (545, 565),
    "B05": (1230, 1250),
    "B06": (1628, 1652),
    "B07": (2105, 2155),
    "B26": (1360, 1390),
    "B31": (10780, 11280),
    "B32": (11770, 12270),
}


@pytest.mark.parametrize("band,limits", sorted(L8_README_NM.items()))
def test_landsat8_band_limits_match_usgs(band, limits):
    b = get_sensor("landsat8_oli_tirs").band(band)
    assert b.min_nm == pytest.approx(limits[0], abs=3)
    assert b.max_nm == pytest.approx(limits[1], abs=3)


@pytest.mark.parametrize("band,limits", sorted(MODIS_SPEC_NM.items()))
def test_modis_band_limits_match_nasa_spec(band, limits):
    b = get_sensor("modis").band(band)
    assert (b.min_nm, b.max_nm) == pytest.approx(limits, abs=1)


def test_sentinel2_centres_and_landsat_constants():
    s2 = get_sensor("sentinel2_msi")
    assert s2.band("B08").center_nm == pytest.approx(833, abs=2)
    assert s2.band("B10").center_nm == pytest.approx(1374, abs=2)
    assert s2.band("B8A").center_nm == pytest.approx(865, abs=2)
    assert s2.band("B02").center_for("sentinel-2b") == pytest.approx(492.1)
    assert s2.band("B02").center_for(None) == s2.band("B02").center_nm
    assert s2.band("B02").center_for("sentinel-2c") == s2.band("B02").center_nm

    l8 = get_sensor("landsat8_oli_tirs")
    assert (l8.band("B10").k1, l8.band("B10").k2) == (774.8853, 1321.0789)
    assert (l8.band("B11").k1, l8.band("B11").k2) == (480.8883, 1201.1442)
    l9 = get_sensor("landsat9_oli2_tirs2")
    assert (l9.band("B10").k1, l9.band("B10").k2) == (799.0284, 1329.2405)
    assert (l9.band("B11").k1, l9.band("B11").k2) == (475.6581, 1198.3494)
    assert (get_sensor("landsat7_etm").band("B6").k1, get_sensor("landsat7_etm").band("B6").k2) == (
        666.09,
        1282.71,
    )
    assert (get_sensor("landsat45_tm").band("B6").k1, get_sensor("landsat45_tm").band("B6").k2) == (
        607.76,
        1260.56,
    )


def test_hls_matches_its_source_sensors():
    l30, l8 = get_sensor("hls_l30"), get_sensor("landsat8_oli_tirs")
    for name in ("B01", "B02", "B05", "B07", "B09", "B10", "B11"):
        assert l30.band(name).wavelengths_nm == l8.band(name).wavelengths_nm
    s30, s2 = get_sensor("hls_s30"), get_sensor("sentinel2_msi")
    assert s30.band_names == s2.band_names
    for name in s2.band_names:
        assert s30.band(name).wavelengths_nm == s2.band(name).wavelengths_nm


# ------------------------------------------------------------------------- lookups


def test_lookup_by_alias_and_case():
    assert get_sensor("Sentinel-2").band("swir16").name == "B11"
    assert get_sensor("sentinel2_msi").band("nir08").name == "B8A"
    assert get_sensor("sentinel2_msi").band("nir09").name == "B09"
    assert get_sensor("sentinel2_msi").band("nir").name == "B08"
    assert get_sensor("landsat8_oli_tirs").band("nir08").name == "B5"
    assert get_sensor("L8").band("ST_B10").name == "B10"
    assert get_sensor("landsat-9").band("sr_b2").name == "B2"
    assert get_sensor("LANDSAT-5").band("lwir").name == "B6"
    assert get_sensor("l7").band("B6_VCID_2").name == "B6"
    assert get_sensor(" S2 ").band(" b8a ").name == "B8A"
    assert get_sensor("SENTINEL2_MSI") is get_sensor("s2")
    assert get_sensor("hls-s30").band("B8A").gsd_m == 30.0
    assert get_sensor("superdove").band("B5").name == "yellow"
    s2 = get_sensor("s2")
    assert get_sensor(s2) is s2
    assert s2.has_band("cirrus") and not s2.has_band("lwir")


def test_unknown_sensor_names_it_lists_and_suggests():
    with pytest.raises(UnknownSensorError) as err:
        get_sensor("sentinal-2")
    msg = str(err.value)
    assert "'sentinal-2'" in msg
    assert "Did you mean 'sentinel2_msi'" in msg
    for sid in REQUIRED:
        assert sid in msg
    # KeyError-compatible and ValueError-compatible.
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)

    with pytest.raises(KeyError, match="planetscope_4band.*planetscope_8band|planetscope_8band.*planetscope_4band"):
        get_sensor("planetscope")  # ambiguous prefix: both suggested


def test_unknown_band_names_band_sensor_and_valid_names():
    with pytest.raises(UnknownBandError) as err:
        get_sensor("landsat8_oli_tirs").band("swir13")
    msg = str(err.value)
    assert "'swir13'" in msg and "landsat8_oli_tirs" in msg
    assert "'B1'" in msg and "'B11'" in msg  # the valid names are listed
    assert "swir16" in msg  # close match suggested
    assert isinstance(err.value, ValueError)


# ---------------------------------------------------------------- malformed files

GOOD = """
[sensor]
id = "{id}"
title = "Test sensor"
aliases = ["test-alias-{id}"]
platforms = ["testsat-1"]
references = ["made up for a test"]

[[bands]]
name = "B1"
aliases = ["blue"]
common_name = "blue"
min_nm = 450.0
center_nm = 485.0
max_nm = 520.0
gsd_m = 10.0
kind = "reflective"

[[bands]]
name = "T1"
aliases = ["lwir"]
min_nm = 10500.0
center_nm = 11000.0
max_nm = 11500.0
gsd_m = 100.0
kind = "thermal"
k1 = 770.0
k2 = 1320.0
"""


def _write(tmp_path: Path, sid: str, text: str) -> Path:
    p = tmp_path / f"{sid}.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_good_test_file_loads(tmp_path):
    s = load_sensor_file(_write(tmp_path, "okay", GOOD.format(id="okay")))
    assert s.band_names == ["B1", "T1"]
    assert s.band("lwir").is_thermal and s.band("T1").k1 == 770.0
    assert s.path.endswith("okay.toml")


@pytest.mark.parametrize(
    "old,new,expect",
    [
        # min > max
        ("min_nm = 450.0", "min_nm = 530.0", r"band 'B1'.*'min_nm'.*min_nm < center_nm < max_nm"),
        # thermal without k1
        ("k1 = 770.0\n", "", r"band 'T1'.*'k1'.*thermal"),
        # duplicate alias across two bands
        ('aliases = ["lwir"]', 'aliases = ["BLUE"]', r"band 'T1'.*'aliases'.*duplicate alias 'BLUE'.*'B1'"),
        # wavelength below 300 nm
        ("min_nm = 450.0", "min_nm = 250.0", r"band 'B1'.*'min_nm'.*250 nm is outside 300"),
        # unknown kind
        ('kind = "reflective"', 'kind = "emissive"', r"band 'B1'.*'kind'.*'emissive'"),
        # reflective band with thermal constants
        ('kind = "reflective"', 'kind = "reflective"\nk1 = 5.0', r"band 'B1'.*'k1'.*only thermal"),
        # missing field
        ("center_nm = 485.0\n", "", r"band 'B1'.*'center_nm'.*missing"),
        # non-positive gsd
        ("gsd_m = 10.0", "gsd_m = 0.0", r"band 'B1'.*'gsd_m'.*> 0"),
        # typo in a field name
        ("center_nm = 485.0", "centre_nm = 485.0", r"band 'B1'.*'center_nm'.*missing"),
        # micrometres instead of nanometres
        ("max_nm = 520.0", "max_nm = 0.52", r"'max_nm'.*0.52 nm is outside"),
        # wrong id for the file name
        ('id = "{id}"', 'id = "other"', r"'id'.*file name stem"),
        # string instead of number
        ("center_nm = 485.0", 'center_nm = "485"', r"'center_nm'.*must be a number"),
        # negative k2
        ("k2 = 1320.0", "k2 = -1.0", r"band 'T1'.*'k2'.*> 0"),
    ],
)
def test_malformed_file_raises_catalog_error_naming_the_problem(tmp_path, old, new, expect):
    text = GOOD.replace(old, new)
    assert text != GOOD
    p = _write(tmp_path, "broken", text.format(id="broken"))
    with pytest.raises(CatalogError, match=expect) as err:
        load_sensor_file(p)
    assert str(p) in str(err.value)  # the message names the file


def test_not_toml_and_missing_file(tmp_path):
    p = _write(tmp_path, "junk", "[sensor\nid = ")
    with pytest.raises(CatalogError, match="not valid TOML"):
        load_sensor_file(p)
    with pytest.raises(CatalogError, match="cannot read"):
        load_sensor_file(tmp_path / "absent.toml")


def test_shipped_files_roundtrip_through_the_validator(tmp_path):
    # The shipped files are valid; breaking one of them is caught.
    src = REPO_CATALOGS / "landsat8_oli_tirs.toml"
    data = tomllib.loads(src.read_text(encoding="utf-8"))
    assert load_sensor_file(src).band("B10").k2 == 1321.0789
    data["bands"][1]["center_nm"] = 600.0  # B2 centre outside its 452-512 nm edges
    with pytest.raises(CatalogError, match=r"band 'B2'.*max_nm"):
        catalogs._sensor_from_mapping(data, "edited")


# ------------------------------------------------- user sensors: register / env var

SMALLSAT = {
    "sensor": {
        "id": "my_smallsat",
        "title": "A 4-band smallsat",
        "aliases": ["smallsat-1", "SmallSat"],
        "platforms": ["smallsat-1"],
        "references": ["vendor spec sheet"],
    },
    "bands": [
        {"name": "b", "aliases": ["blue"], "min_nm": 450.0, "center_nm": 485.0, "max_nm": 520.0,
         "gsd_m": 3.0, "kind": "reflective"},
        {"name": "g", "aliases": ["green"], "min_nm": 520.0, "center_nm": 560.0, "max_nm": 600.0,
         "gsd_m": 3.0, "kind": "reflective"},
        {"name": "r", "aliases": ["red"], "min_nm": 630.0, "center_nm": 660.0, "max_nm": 690.0,
         "gsd_m": 3.0, "kind": "reflective"},
        {"name": "n", "aliases": ["nir"], "min_nm": 770.0, "center_nm": 830.0, "max_nm": 890.0,
         "gsd_m": 3.0, "kind": "reflective"},
    ],
}


def test_register_sensor_from_dict():
    with pytest.raises(UnknownSensorError):
        get_sensor("my_smallsat")
    s = register_sensor(copy.deepcopy(SMALLSAT))
    assert isinstance(s, Sensor) and isinstance(s.bands[0], Band)
    assert get_sensor("MY_SMALLSAT") is s
    assert get_sensor("smallsat") is s
    assert get_sensor("smallsat-1").band("NIR").wavelengths_nm == (770.0, 830.0, 890.0)
    assert "my_smallsat" in list_sensors()
    # Shipped sensors are still there.
    assert get_sensor("s2").id == "sentinel2_msi"

    # Re-registering the same id replaces it.
    changed = copy.deepcopy(SMALLSAT)
    changed["bands"][3]["max_nm"] = 900.0
    register_sensor(changed)
    assert get_sensor("my_smallsat").band("n").max_nm == 900.0
    assert list_sensors().count("my_smallsat") == 1


def test_register_sensor_rejects_bad_or_clashing_definitions(tmp_path):
    bad = copy.deepcopy(SMALLSAT)
    bad["bands"][0]["min_nm"] = 500.0
    with pytest.raises(CatalogError, match=r"band 'b'.*'min_nm'"):
        register_sensor(bad)
    clash = copy.deepcopy(SMALLSAT)
    clash["sensor"]["aliases"] = ["s2"]  # belongs to sentinel2_msi
    with pytest.raises(CatalogError, match=r"'s2'.*sentinel2_msi"):
        register_sensor(clash)
    with pytest.raises(UnknownSensorError):
        get_sensor("my_smallsat")
    with pytest.raises(TypeError):
        register_sensor(42)


def test_register_sensor_from_toml_path(tmp_path):
    p = _write(tmp_path, "tomlsat", GOOD.format(id="tomlsat"))
    s = register_sensor(p)
    assert get_sensor("test-alias-tomlsat") is s
    assert get_sensor("tomlsat").band("T1").k2 == 1320.0


def test_catalog_path_env_var_is_picked_up(tmp_path, monkeypatch):
    d1, d2 = tmp_path / "a", tmp_path / "b"
    d1.mkdir()
    d2.mkdir()
    _write(d1, "envsat", GOOD.format(id="envsat"))
    _write(d2, "envsat2", GOOD.format(id="envsat2"))
    assert "envsat" not in list_sensors()

    monkeypatch.setenv(catalogs.ENV_VAR, f"{d1}{catalogs.os.pathsep}{d2}")
    catalogs.clear_cache()
    assert catalog_dirs()[-2:] == [d1, d2]
    assert {"envsat", "envsat2"} <= set(list_sensors())
    assert get_sensor("test-alias-envsat").band("blue").name == "B1"
    assert get_sensor("sentinel2_msi").band("B12").name == "B12"  # shipped still there

    monkeypatch.delenv(catalogs.ENV_VAR)
    catalogs.clear_cache()
    assert "envsat" not in list_sensors()


def test_env_catalog_with_clashing_alias_is_refused(tmp_path, monkeypatch):
    _write(tmp_path, "copycat", GOOD.format(id="copycat").replace('"test-alias-copycat"', '"Landsat-8"'))
    monkeypatch.setenv(catalogs.ENV_VAR, str(tmp_path))
    catalogs.clear_cache()
    with pytest.raises(CatalogError, match=r"'Landsat-8'.*landsat8_oli_tirs.*copycat|copycat.*landsat8_oli_tirs"):
        list_sensors()


def test_missing_env_dir_warns_and_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv(catalogs.ENV_VAR, str(tmp_path / "nope"))
    with pytest.warns(UserWarning, match="not a directory"):
        dirs = catalog_dirs()
    assert tmp_path / "nope" not in dirs
