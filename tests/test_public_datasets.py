"""Public-dataset loaders on tiny fixtures written in each dataset's published layout."""

from __future__ import annotations

import ast
import csv
import math
from pathlib import Path

import numpy as np
import pytest

rasterio = pytest.importorskip("rasterio")

from sensei_xr import catalogs  # noqa: E402
import sensei_xr.datasets as pdl  # noqa: E402
from sensei_xr.datasets import IGNORE_INDEX, list_datasets, load_dataset  # noqa: E402
from sensei_xr.datasets.cloudsen12 import CLOUDSEN12_BANDS  # noqa: E402
from sensei_xr.datasets.biome_scenes import BIOME_SCENE_BANDS  # noqa: E402
from sensei_xr.datasets.s2_cloud_mask_catalogue import S2_CATALOGUE_BANDS  # noqa: E402
from sensei_xr.datasets.sparcs import SPARCS_COLOURS  # noqa: E402

CLOUD2 = ("clear", "cloud")
CLOUD3 = ("clear", "cloud", "shadow")
THIN_THICK = ("clear", "thin_cloud", "thick_cloud")
N = 32


def _tif(path: Path, arrays, dtype, driver="GTiff", colormap=None):
    arrays = np.asarray(arrays, dtype=dtype)
    if arrays.ndim == 2:
        arrays = arrays[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver=driver, height=arrays.shape[1], width=arrays.shape[2],
                       count=arrays.shape[0], dtype=dtype,
                       crs="EPSG:32633", transform=rasterio.transform.from_origin(0, 0, 30, 30)) as dst:
        dst.write(arrays)
        if colormap:
            dst.write_colormap(1, colormap)


def _expected_desc(sensor: str, names):
    s = catalogs.get_sensor(sensor)
    return np.array([s.band(n).wavelengths_nm for n in names])


def test_all_loaders_registered_and_module_imports_no_raster_io_at_top():
    assert {"s2_cloud_mask_catalogue", "biome_scenes", "sparcs", "l7_irish", "38cloud",
            "cloudperu2", "cloudsen12", "biome_patches"} <= set(list_datasets())
    for module in Path(pdl.__file__).parent.glob("*.py"):  # one module per dataset
        tree = ast.parse(module.read_text())
        top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        top |= {(n.module or "").split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom)}
        assert not top & {"rasterio", "PIL", "xarray", "rioxarray"}, module.name


# ------------------------------------------------------------ Sentinel-2 catalogue

S2_IDS = {"train": "S2A_MSIL1C_20180102T084341_N0206_R064_T36TVP_20180102T110333",
          "test": "S2A_MSIL1C_20180101T010721_N0206_R045_T53HLD_20180101T041600"}


def _write_s2_catalogue(root: Path):
    (root / "subscenes").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = []
    for k, (split, pid) in enumerate(S2_IDS.items()):
        cube = np.zeros((N, N, 13), np.float32)
        cube[...] = (np.arange(13, dtype=np.float32) + 1) / 100 + k  # band b holds (b+1)/100 + k
        cube[0, 0] = 0  # no data
        mask = np.zeros((N, N, 3), bool)
        mask[:, :10, 0] = True      # clear
        mask[:, 10:20, 1] = True    # cloud
        mask[:, 20:30, 2] = True    # shadow; columns 30-31: no class
        np.save(root / "subscenes" / f"{pid}.npy", cube)
        np.save(root / "masks" / f"{pid}.npy", mask)
        rows.append({"index": k, "scene": pid, "shadows_marked": 1 - k, "forest/jungle": 1 - k,
                     "snow/ice": k, "thin": 0, "thick": 1})
    with open(root / "classification_tags.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_s2_catalogue_bands_values_labels_tags(tmp_path):
    _write_s2_catalogue(tmp_path)
    samples = pdl.load_s2_cloud_mask_catalogue(tmp_path, CLOUD2)
    assert [s.name for s in samples] == sorted(S2_IDS.values())
    s = {x.name: x for x in samples}[S2_IDS["train"]]
    assert s.descriptors.names == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                                   "B09", "B10", "B11", "B12")
    np.testing.assert_allclose(s.descriptors.wavelengths_nm, _expected_desc("sentinel2_msi", s.descriptors.names))
    assert s.image.shape == (13, N, N) and s.image.dtype == np.float32
    np.testing.assert_allclose(s.image[8, 5, 5], 9 / 100)  # B8A is the 9th band of the file
    assert s.sensor == "sentinel2_msi" and s.resolution_m == 20.0
    assert s.labels[5, 5] == 0 and s.labels[5, 15] == 1 and s.labels[5, 25] == 0
    assert (s.labels[:, 30:] == IGNORE_INDEX).all() and s.nodata[:, 30:].all()
    assert s.nodata[0, 0] and s.labels[0, 0] == IGNORE_INDEX and np.isnan(s.image[:, 0, 0]).all()
    assert s.tags["forest/jungle"] == 1 and s.tags["shadows_marked"] == 1 and s.tags["shadow_labelled"]

    three = {x.name: x for x in pdl.load_s2_cloud_mask_catalogue(tmp_path, CLOUD3)}
    marked, unmarked = three[S2_IDS["train"]], three[S2_IDS["test"]]
    assert marked.labels[5, 5] == 0 and marked.labels[5, 15] == 1 and marked.labels[5, 25] == 2
    # Scene without shadow annotation: its clear pixels may be shadow, so they are ignored.
    assert unmarked.tags["shadow_labelled"] is False
    assert unmarked.labels[5, 5] == IGNORE_INDEX and unmarked.labels[5, 15] == 1
    with pytest.raises(ValueError, match="thin from thick"):
        pdl.load_s2_cloud_mask_catalogue(tmp_path, THIN_THICK)


def test_s2_catalogue_paper_splits(tmp_path, shared_data):
    """The split lists in the sample data select the paper's train / test scenes."""
    _write_s2_catalogue(tmp_path)
    train = load_dataset("s2_cloud_mask_catalogue", tmp_path, "train", CLOUD2)
    test = load_dataset("s2_cloud_mask_catalogue", tmp_path, "test", CLOUD2)
    assert [s.name for s in train] == [S2_IDS["train"]]
    assert [s.name for s in test] == [S2_IDS["test"]]
    assert load_dataset("s2_cloud_mask_catalogue", tmp_path, "valid", CLOUD2) == []
    with pytest.raises(ValueError, match="'train', 'valid' and 'test'"):
        load_dataset("s2_cloud_mask_catalogue", tmp_path, "dev", CLOUD2)


def test_s2_catalogue_own_split_dir_and_layout_errors(tmp_path):
    _write_s2_catalogue(tmp_path / "cat")
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "S2_catalogue_split_valid.csv").write_text(S2_IDS["test"] + "\n")
    got = pdl.load_s2_cloud_mask_catalogue(tmp_path / "cat", CLOUD2, split="val", splits_dir=splits)
    assert [s.name for s in got] == [S2_IDS["test"]]
    with pytest.raises(pdl.DatasetLayoutError, match="subscenes/"):
        pdl.load_s2_cloud_mask_catalogue(tmp_path / "splits", CLOUD2)
    (tmp_path / "cat" / "masks" / f"{S2_IDS['train']}.npy").unlink()
    with pytest.raises(pdl.DatasetLayoutError, match="has no mask"):
        pdl.load_s2_cloud_mask_catalogue(tmp_path / "cat", CLOUD2)
    with pytest.raises(pdl.DatasetLayoutError, match="pass root="):
        load_dataset("s2_cloud_mask_catalogue", None, None, CLOUD2)


# ----------------------------------------------------------------- Landsat 8 Biome

L8_SUN = 40.0
L8_MTL = "\n".join(
    ["GROUP = L1_METADATA_FILE", f"    SUN_ELEVATION = {L8_SUN}"]
    + [f"    REFLECTANCE_MULT_BAND_{b} = 2.0000E-05\n    REFLECTANCE_ADD_BAND_{b} = -0.100000"
       for b in range(1, 10)]
    + [f"    RADIANCE_MULT_BAND_{b} = 3.3420E-04\n    RADIANCE_ADD_BAND_{b} = 0.10000" for b in (10, 11)]
    + ["    K1_CONSTANT_BAND_10 = 774.8853", "    K2_CONSTANT_BAND_10 = 1321.0789",
       "    K1_CONSTANT_BAND_11 = 480.8883", "    K2_CONSTANT_BAND_11 = 1201.1442",
       "END_GROUP = L1_METADATA_FILE", "END"]) + "\n"


def _l8_refl(dn):
    return (2e-5 * dn - 0.1) / math.sin(math.radians(L8_SUN))


def _l8_bt(dn, k1=774.8853, k2=1321.0789):
    return k2 / math.log(k1 / (3.342e-4 * dn + 0.1) + 1)


def _biome_mask():
    m = np.full((N, N), 128, np.uint8)
    m[:, :8] = 0        # fill
    m[:8, 8:] = 64      # shadow
    m[8:16, 8:] = 192   # thin
    m[16:24, 8:] = 255  # thick
    return m


def _write_biome_scene(root: Path, biome: str, sid: str):
    d = root / biome / "BC" / sid
    d.mkdir(parents=True)
    mask = _biome_mask()
    for b in range(1, 12):
        dn = np.full((N, N), 10000 + 1000 * b, np.uint16)
        dn[:, :8] = 0
        if b == 8:  # pan: 15 m, twice the size
            dn = np.kron(dn, np.ones((2, 2), np.uint16))
        _tif(d / f"{sid}_B{b}.TIF", dn, "uint16")
    _tif(d / f"{sid}_fixedmask.img", mask, "uint8", driver="ENVI")
    (d / f"{sid}_MTL.txt").write_text(L8_MTL)
    return d


def test_biome_scenes_radiometry_labels_tags(tmp_path):
    _write_biome_scene(tmp_path, "Forest", "LC81800662014230LGN00")
    _write_biome_scene(tmp_path, "Snow_Ice", "LC80420082013220LGN00")
    samples = pdl.load_biome_scenes(tmp_path, CLOUD3)
    assert {s.tags["surface"] for s in samples} == {"Forest", "SnowIce"}
    s = samples[0]
    assert s.descriptors.names == BIOME_SCENE_BANDS and s.descriptors.kinds[-2:] == ("thermal", "thermal")
    np.testing.assert_allclose(s.descriptors.wavelengths_nm, _expected_desc("landsat8_oli_tirs", BIOME_SCENE_BANDS))
    np.testing.assert_allclose(s.image[1, 20, 20], _l8_refl(12000), rtol=1e-5)   # B2
    np.testing.assert_allclose(s.image[7, 20, 20], _l8_refl(19000), rtol=1e-5)   # B9
    np.testing.assert_allclose(s.image[8, 20, 20], _l8_bt(20000), rtol=1e-5)     # B10, K
    np.testing.assert_allclose(s.image[9, 20, 20], _l8_bt(21000, 480.8883, 1201.1442), rtol=1e-5)
    assert 200 < s.image[8, 20, 20] < 330
    assert (s.labels[:, :8] == IGNORE_INDEX).all() and s.nodata[:, :8].all() and not s.nodata[:, 8:].any()
    assert s.labels[2, 10] == 2 and s.labels[10, 10] == 1 and s.labels[20, 10] == 1 and s.labels[28, 10] == 0
    two = pdl.load_biome_scenes(tmp_path, CLOUD2, scenes=["LC81800662014230LGN00"])
    assert len(two) == 1 and two[0].labels[2, 10] == 0  # shadow is clear without a shadow class
    tt = pdl.load_biome_scenes(tmp_path, THIN_THICK, scenes=["LC81800662014230LGN00"])[0]
    assert tt.labels[10, 10] == 1 and tt.labels[20, 10] == 2
    # A split name selects a biome; the pan band is averaged onto the 30 m grid.
    forest = load_dataset("biome_scenes", tmp_path, "Forest", CLOUD2)
    assert [x.tags["surface"] for x in forest] == ["Forest"]
    pan = pdl.load_biome_scenes(tmp_path, CLOUD2, bands=["B8"], scenes=["LC81800662014230LGN00"])[0]
    assert pan.image.shape == (1, N, N)
    np.testing.assert_allclose(pan.image[0, 20, 20], _l8_refl(18000), rtol=1e-5)


def test_biome_scenes_window_tiles_memory_guard(tmp_path):
    _write_biome_scene(tmp_path, "Forest", "LC81800662014230LGN00")
    tiles = pdl.load_biome_scenes(tmp_path, CLOUD2, tile_size=16)
    # The four 16 x 16 tiles; none is all fill (columns 0-7 are fill in every tile row).
    assert [t.tags["window"] for t in tiles] == [(0, 0, 16, 16), (0, 16, 16, 16), (16, 0, 16, 16), (16, 16, 16, 16)]
    win = pdl.load_biome_scenes(tmp_path, CLOUD2, window=(8, 8, 8, 24))[0]
    assert win.image.shape == (10, 8, 24) and (win.labels == 1).all()  # rows 8-15: thin cloud
    assert pdl.load_biome_scenes(tmp_path, CLOUD2, window=(0, 0, 8, 8)) == []  # all fill: skipped
    assert len(pdl.load_biome_scenes(tmp_path, CLOUD2, window=(0, 0, 8, 8), skip_empty=False)) == 1
    with pytest.raises(ValueError, match="outside"):
        pdl.load_biome_scenes(tmp_path, CLOUD2, window=(0, 0, 64, 8))
    with pytest.raises(MemoryError, match="iter_biome_scenes"):
        pdl.load_biome_scenes(tmp_path, CLOUD2, max_bytes=1000)
    assert len(list(pdl.iter_biome_scenes(tmp_path, CLOUD2))) == 1


def test_biome_scenes_layout_errors(tmp_path):
    with pytest.raises(pdl.DatasetLayoutError, match="_fixedmask.img"):
        pdl.load_biome_scenes(tmp_path, CLOUD2)
    d = _write_biome_scene(tmp_path, "Urban", "LC80200462014005LGN00")
    (d / "LC80200462014005LGN00_B7.TIF").unlink()
    with pytest.raises(pdl.DatasetLayoutError, match="B7.TIF"):
        pdl.load_biome_scenes(tmp_path, CLOUD2)
    with pytest.raises(pdl.DatasetLayoutError, match="not a folder"):
        pdl.load_biome_scenes(tmp_path / "nope", CLOUD2)


# ------------------------------------------------------------------------- SPARCS

SPARCS_CODES = np.array([0, 1, 2, 3, 4, 5, 6, 7], np.uint8)  # 7: not a SPARCS code


def _sparcs_raw():
    return np.tile(np.repeat(SPARCS_CODES, N // 8), (N, 1))  # columns of 4 per code


def _write_sparcs(root: Path, sid: str, rgb: bool = False, osu: bool = False):
    sub = root / "sending"
    dn = np.stack([np.full((N, N), 10000 + 1000 * i, np.uint16) for i in range(10)])
    dn[:, 0, :] = 0
    _tif(sub / f"{sid}_data.tif", dn, "uint16")
    (sub / f"{sid}_mtl.txt").write_text(L8_MTL)
    raw = _sparcs_raw()
    if osu:
        _tif(sub / f"{sid}_labels.tif", raw, "uint8")
    elif rgb:
        colours = {v: k for k, v in SPARCS_COLOURS.items()}
        img = np.zeros((3, N, N), np.uint8)
        for code, c in colours.items():
            img[:, raw == code] = np.array(c, np.uint8)[:, None]
        img[:, raw == 7] = np.array([10, 20, 30], np.uint8)[:, None]
        _tif(sub / f"{sid}_mask.png", img, "uint8", driver="PNG")
    else:
        cmap = {v: k for k, v in SPARCS_COLOURS.items()} | {7: (10, 20, 30)}
        _tif(sub / f"{sid}_mask.png", raw, "uint8", driver="PNG", colormap=cmap)


@pytest.mark.parametrize("kind", ["palette", "rgb", "osu"])
def test_sparcs_bands_codes_nodata(tmp_path, kind):
    sid = "LC80010812013365LGN00_18"
    _write_sparcs(tmp_path, sid, rgb=kind == "rgb", osu=kind == "osu")
    (s,) = pdl.load_sparcs(tmp_path, CLOUD3)
    assert s.descriptors.names == ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11")
    np.testing.assert_allclose(s.image[7, 5, 5], _l8_refl(17000), rtol=1e-5)   # 8th band = B9
    np.testing.assert_allclose(s.image[8, 5, 5], _l8_bt(18000), rtol=1e-5)     # 9th band = B10
    row = s.labels[5, ::4]  # one pixel per code 0..7
    np.testing.assert_array_equal(row, [2, 2, 0, 0, 0, 1, 0, IGNORE_INDEX])
    assert s.nodata[0].all() and (s.labels[0] == IGNORE_INDEX).all() and s.nodata[5, -1]
    (s2,) = pdl.load_sparcs(tmp_path, CLOUD2)
    np.testing.assert_array_equal(s2.labels[5, ::4], [0, 0, 0, 0, 0, 1, 0, IGNORE_INDEX])
    assert s.tags["water"] == pytest.approx(2 / 8) and s.tags["snow"] == pytest.approx(1 / 8)


def test_sparcs_errors(tmp_path):
    with pytest.raises(pdl.DatasetLayoutError, match="_data.tif"):
        pdl.load_sparcs(tmp_path, CLOUD2)
    sid = "LC80010812013365LGN00_18"
    _write_sparcs(tmp_path, sid)
    (tmp_path / "sending" / f"{sid}_mtl.txt").unlink()
    with pytest.raises(pdl.DatasetLayoutError, match="MTL"):
        pdl.load_sparcs(tmp_path, CLOUD2)
    with pytest.raises(ValueError, match="no splits"):
        load_dataset("sparcs", tmp_path, "train", CLOUD2)


# ---------------------------------------------------------------- Landsat 7 Irish

IRISH_SUN = 35.0
IRISH_MTL = "\n".join(
    ["GROUP = L1_METADATA_FILE", "  ACQUISITION_DATE = 2001-11-12", f"  SUN_ELEVATION = {IRISH_SUN}"]
    + [f"  LMAX_BAND{b} = {lmax}\n  LMIN_BAND{b} = {lmin}\n  QCALMAX_BAND{b} = 255.0\n  QCALMIN_BAND{b} = 1.0"
       for b, lmax, lmin in [(1, 293.7, -6.2), (2, 300.9, -6.4), (3, 234.4, -5.0), (4, 241.1, -5.1),
                             (5, 47.57, -1.0), (61, 17.04, 0.0), (62, 12.65, 3.2), (7, 16.54, -0.35),
                             (8, 243.1, -4.7)]]
    + ["END_GROUP = L1_METADATA_FILE", "END"]) + "\n"


def _irish_radiance(dn, lmax, lmin):
    return (lmax - lmin) / 254.0 * (dn - 1) + lmin


def _write_irish(root: Path):
    d = root / "austral" / "p226_r98"
    d.mkdir(parents=True)
    prefix = "226098_09820011112"
    for i, suffix in enumerate(["B10", "B20", "B30", "B40", "B50", "B61", "B62", "B70", "B80"]):
        dn = np.full((N, N), 50 + 10 * i, np.uint8)
        dn[:, :4] = 0
        if suffix in ("B61", "B62"):
            dn = dn[::2, ::2]  # 60 m thermal
        if suffix == "B80":
            dn = np.kron(dn, np.ones((2, 2), np.uint8))
        lead = "L72" if suffix in ("B62", "B70", "B80") else "L71"
        _tif(d / f"{lead}{prefix}_{suffix}.TIF", dn, "uint8")
    mask = np.full((N, N), 128, np.uint8)
    mask[:, :4] = 0
    mask[:8, 4:] = 64
    mask[8:16, 4:] = 191
    mask[16:24, 4:] = 255
    _tif(d / "L7_p226_r98_newmask2015.TIF", mask, "uint8")
    (d / f"L71{prefix}_MTL.txt").write_text(IRISH_MTL)
    return d


def test_l7_irish_pre2012_radiometry_and_labels(tmp_path):
    _write_irish(tmp_path)
    (s,) = pdl.load_l7_irish(tmp_path, CLOUD3)
    assert s.descriptors.names == ("B1", "B2", "B3", "B4", "B5", "B6", "B7")
    assert s.descriptors.kinds[5] == "thermal" and s.sensor == "landsat7_etm"
    doy = 316  # 2001-11-12
    d = 1 - 0.01672 * math.cos(math.radians(0.9856 * (doy - 4)))
    rho_b1 = math.pi * _irish_radiance(50, 293.7, -6.2) * d**2 / (1970.0 * math.sin(math.radians(IRISH_SUN)))
    np.testing.assert_allclose(s.image[0, 20, 20], rho_b1, rtol=1e-5)
    rho_b7 = math.pi * _irish_radiance(120, 16.54, -0.35) * d**2 / (82.06 * math.sin(math.radians(IRISH_SUN)))
    np.testing.assert_allclose(s.image[6, 20, 20], rho_b7, rtol=1e-5)  # B7 is the B70 file
    bt = 1282.71 / math.log(666.09 / _irish_radiance(100, 17.04, 0.0) + 1)
    np.testing.assert_allclose(s.image[5, 20, 20], bt, rtol=1e-5)      # 60 m B61 on the 30 m grid
    assert s.labels[2, 10] == 2 and s.labels[10, 10] == 1 and s.labels[20, 10] == 1 and s.labels[28, 10] == 0
    assert s.nodata[:, :4].all() and (s.labels[:, :4] == IGNORE_INDEX).all()
    assert s.tags["surface"] == "austral" and s.tags["scene"] == "p226_r98"
    (hi,) = pdl.load_l7_irish(tmp_path, CLOUD2, bands=["B62", "B8"])
    bt62 = 1282.71 / math.log(666.09 / _irish_radiance(110, 12.65, 3.2) + 1)
    np.testing.assert_allclose(hi.image[0, 20, 20], bt62, rtol=1e-5)
    rho_pan = math.pi * _irish_radiance(130, 243.1, -4.7) * d**2 / (1369.0 * math.sin(math.radians(IRISH_SUN)))
    np.testing.assert_allclose(hi.image[1, 20, 20], rho_pan, rtol=1e-5)
    (tt,) = pdl.load_l7_irish(tmp_path, THIN_THICK)
    assert tt.labels[10, 10] == 1 and tt.labels[20, 10] == 2  # 191 is thin cloud


def test_l7_irish_errors(tmp_path):
    d = tmp_path / "boreal" / "p2_r27"
    _tif(d / "p2_r27_mask.TIF", np.zeros((4, 4)), "uint8")
    with pytest.raises(pdl.DatasetLayoutError, match="not supported"):
        pdl.load_l7_irish(tmp_path, CLOUD2)
    _write_irish(tmp_path / "other")
    with pytest.raises(ValueError, match="unknown Landsat 7 Irish band"):
        pdl.load_l7_irish(tmp_path / "other", CLOUD2, bands=["B9"])


# ------------------------------------------------------------------------ 38-Cloud

PATCHES = ["patch_1_1_by_1_LC08_L1TP_002053_20160520_20170324_01_T1",
           "patch_2_1_by_2_LC08_L1TP_002053_20160520_20170324_01_T1"]


def _write_38cloud(root: Path):
    base = root / "38-Cloud_training"
    for k, name in enumerate(PATCHES):
        for i, colour in enumerate(["blue", "green", "red", "nir"]):
            dn = np.full((N, N), 10000 + 1000 * i + 100 * k, np.uint16)
            dn[:2] = 0
            _tif(base / f"train_{colour}" / f"{colour}_{name}.TIF", dn, "uint16")
        gt = np.zeros((N, N), np.uint8)
        gt[:, 16:] = 255
        _tif(base / "train_gt" / f"gt_{name}.TIF", gt, "uint8")
    with open(base / "training_patches_38-Cloud.csv", "w") as f:
        f.write("name\n" + "\n".join(PATCHES) + "\n")


def test_38cloud_bands_scaling_labels(tmp_path):
    _write_38cloud(tmp_path)
    samples = pdl.load_38cloud(tmp_path, CLOUD2, allow_uncorrected=True)  # no MTL: explicitly uncorrected
    assert [s.name for s in samples] == PATCHES
    s = samples[1]
    assert s.descriptors.names == ("B2", "B3", "B4", "B5")  # blue, green, red, NIR
    np.testing.assert_allclose(s.image[:, 5, 5], [2e-5 * (10100 + 1000 * i) - 0.1 for i in range(4)], rtol=1e-5)
    assert s.tags == {"scene": "LC08_L1TP_002053_20160520_20170324_01_T1", "sun_corrected": False,
                      "shadow_labelled": False}
    assert (s.labels[5:, :16] == 0).all() and (s.labels[5:, 16:] == 1).all()
    assert s.nodata[:2].all() and (s.labels[:2] == IGNORE_INDEX).all()
    sun = pdl.load_38cloud(tmp_path, CLOUD2, sun_elevation_deg={s.tags["scene"]: 30.0})[0]
    np.testing.assert_allclose(sun.image[0, 5, 5], (2e-5 * 10000 - 0.1) / 0.5, rtol=1e-5)
    assert sun.tags["sun_corrected"] is True
    # No shadow annotation: with a shadow class, non-cloud pixels are ignored.
    three = pdl.load_38cloud(tmp_path / "38-Cloud_training", CLOUD3, allow_uncorrected=True)[0]
    assert (three.labels[5:, :16] == IGNORE_INDEX).all() and (three.labels[5:, 16:] == 1).all()
    assert three.tags["shadow_labelled"] is False
    with pytest.raises(ValueError, match="'train' only"):
        load_dataset("38cloud", tmp_path, "test", CLOUD2)


def test_38cloud_mtl_dir_and_errors(tmp_path):
    _write_38cloud(tmp_path)
    mtl = tmp_path / "mtl"
    mtl.mkdir()
    (mtl / "LC08_L1TP_002053_20160520_20170324_01_T1_MTL.txt").write_text(L8_MTL)
    s = pdl.load_38cloud(tmp_path, CLOUD2, mtl_dir=mtl)[0]
    np.testing.assert_allclose(s.image[0, 5, 5], _l8_refl(10000), rtol=1e-5)
    (tmp_path / "38-Cloud_training" / "train_nir" / f"nir_{PATCHES[0]}.TIF").unlink()
    with pytest.raises(pdl.DatasetLayoutError, match="nir_patch_1"):
        pdl.load_38cloud(tmp_path, CLOUD2)
    with pytest.raises(pdl.DatasetLayoutError, match="train_red"):
        pdl.load_38cloud(mtl, CLOUD2)


# ---------------------------------------------------------------------- CloudPeru2


def _write_cloudperu2(root: Path, dtype="uint8"):
    for split in ("train", "val"):
        for k in range(2):
            dn = np.stack([np.full((N, N), 40 * (i + 1) + k, dtype) for i in range(4)])
            dn[:, :, -1] = 0
            _tif(root / split / "images" / f"img_{split}_{k}.tif", dn, dtype)
            m = np.zeros((N, N), np.uint8)
            m[:10] = 255
            _tif(root / split / "masks" / f"img_{split}_{k}_Mask.tif", m, "uint8")


def test_cloudperu2(tmp_path):
    _write_cloudperu2(tmp_path)
    val = load_dataset("cloudperu2", tmp_path, "val", CLOUD2)
    assert [s.name for s in val] == ["img_val_0", "img_val_1"]
    s = val[1]
    assert s.sensor == "perusat1" and s.resolution_m == 2.8
    assert s.descriptors.names == ("B1", "B2", "B3", "B4")
    np.testing.assert_allclose(s.descriptors.wavelengths_nm[3], catalogs.get_sensor("perusat1").band("nir").wavelengths_nm)
    np.testing.assert_allclose(s.image[:, 5, 5], [(40 * (i + 1) + 1) / 255 for i in range(4)], rtol=1e-6)
    assert (s.labels[:10, :-1] == 1).all() and (s.labels[10:, :-1] == 0).all()
    assert s.nodata[:, -1].all() and s.tags["reflectance"] == "approximate"
    assert len(pdl.load_cloudperu2(tmp_path, CLOUD2)) == 4
    scaled = pdl.load_cloudperu2(tmp_path, CLOUD2, "train", scale=0.001)[0]
    np.testing.assert_allclose(scaled.image[0, 5, 5], 0.04, rtol=1e-6)


def test_cloudperu2_errors(tmp_path):
    _write_cloudperu2(tmp_path, "uint16")
    with pytest.raises(ValueError, match="pass scale="):
        pdl.load_cloudperu2(tmp_path, CLOUD2, "train")
    with pytest.raises(pdl.DatasetLayoutError, match="no split folder"):
        pdl.load_cloudperu2(tmp_path, CLOUD2, "test")
    (tmp_path / "val" / "masks" / "img_val_0_Mask.tif").unlink()
    with pytest.raises(pdl.DatasetLayoutError, match="_Mask.tif"):
        pdl.load_cloudperu2(tmp_path, CLOUD2, "val", scale=1e-4)


# ---------------------------------------------------------------------- CloudSEN12

S = 512


def _write_cloudsen12(root: Path, n=2):
    d = root / "val"
    d.mkdir(parents=True)
    for k, f in enumerate(CLOUDSEN12_BANDS):
        mm = np.memmap(d / f"L1C_{f}.dat", dtype="<i2", mode="w+", shape=(n, S, S))
        mm[:] = 1000 + 100 * k
        mm[:, 509:] = 0  # padding beyond the 509 x 509 patch
        if n > 1:
            mm[1] += 5
            mm[1, 509:] = 0
        mm.flush()
    lab = np.memmap(d / "LABEL_manual_hq.dat", dtype=np.uint8, mode="w+", shape=(n, S, S))
    lab[:] = 0
    lab[:, 100:200] = 1
    lab[:, 200:300] = 2
    lab[:, 300:400] = 3
    lab.flush()
    with open(d / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["roi_id", "land_cover", "cloud_coverage"])
        w.writerows([[f"ROI_{i}", "forest", "cloudy"] for i in range(n)])


def test_cloudsen12(tmp_path):
    _write_cloudsen12(tmp_path)
    samples = load_dataset("cloudsen12", tmp_path, "val", CLOUD3)
    assert len(samples) == 2
    s = samples[1]
    assert s.descriptors.names == S2_CATALOGUE_BANDS and s.resolution_m == 10.0
    # L1C_B8A.dat is the 9th band of the sample (band order B01..B08, B8A, B09..B12).
    order = list(CLOUDSEN12_BANDS)
    np.testing.assert_allclose(s.image[8, 0, 0], (1000 + 100 * order.index("B8A") + 5) / 10000, rtol=1e-6)
    np.testing.assert_allclose(s.image[0, 0, 0], (1000 + 5) / 10000, rtol=1e-6)
    assert [s.labels[r, 0] for r in (50, 150, 250, 350)] == [0, 1, 1, 2]
    assert s.nodata[509:].all() and (s.labels[509:] == IGNORE_INDEX).all() and not s.nodata[:509].any()
    assert s.tags["land_cover"] == "forest" and s.tags["index"] == 1
    tt = pdl.load_cloudsen12(tmp_path, THIN_THICK, "validation", indices=[0])[0]
    assert [tt.labels[r, 0] for r in (50, 150, 250, 350)] == [0, 2, 1, 0]
    with pytest.raises(MemoryError, match="iter_cloudsen12"):
        pdl.load_cloudsen12(tmp_path, CLOUD2, "val", max_bytes=1e6)
    assert len(list(pdl.iter_cloudsen12(tmp_path, CLOUD2, "val"))) == 2


def test_cloudsen12_errors(tmp_path):
    _write_cloudsen12(tmp_path, n=1)
    with pytest.raises(pdl.DatasetLayoutError, match="'train' folder"):
        pdl.load_cloudsen12(tmp_path, CLOUD2, "train")
    np.memmap(tmp_path / "val" / "L1C_B2.dat", dtype="<i2", mode="w+", shape=(2, S, S)).flush()
    with pytest.raises(pdl.DatasetLayoutError, match="L1C_B2.dat"):
        pdl.load_cloudsen12(tmp_path, CLOUD2, "val")
    (tmp_path / "val" / "L1C_B2.dat").unlink()
    with pytest.raises(pdl.DatasetLayoutError, match="missing L1C_B2.dat"):
        pdl.load_cloudsen12(tmp_path, CLOUD2, "val")
