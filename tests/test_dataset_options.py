"""Dataset loaders through ``load_dataset`` with options, full-size tiles, and the S2 catalogue's
unknown shadow flags; on tiny fixtures in each dataset's published layout."""

from __future__ import annotations

import csv
import inspect
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("rasterio")

import sensei_xr.datasets as pdl  # noqa: E402
from sensei_xr.datasets import DATASET_LOADERS, IGNORE_INDEX, load_dataset  # noqa: E402
from sensei_xr.datasets._common import _check_memory, _windows  # noqa: E402
from test_public_datasets import (  # noqa: E402
    CLOUD2,
    CLOUD3,
    L8_MTL,
    N,
    PATCHES,
    S2_IDS,
    _l8_refl,
    _write_38cloud,
    _write_biome_scene,
    _write_cloudperu2,
    _write_cloudsen12,
    _write_irish,
    _write_s2_catalogue,
    _write_sparcs,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FOREST, SNOW = "LC81800662014230LGN00", "LC80420082013220LGN00"
SCENE_38 = "LC08_L1TP_002053_20160520_20170324_01_T1"


# ------------------------------------------------------------------ tiles (bug 2)


@st.composite
def _areas(draw):
    """A scene, an optional window inside it and a tile size, up to ~12 tiles a side."""
    tile = draw(st.integers(1, 64))
    height, width = draw(st.integers(1, 12 * tile)), draw(st.integers(1, 12 * tile))
    if draw(st.booleans()):
        r0, c0 = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
        window = (r0, c0, draw(st.integers(1, height - r0)), draw(st.integers(1, width - c0)))
    else:
        window = None
    return height, width, tile, window


@settings(max_examples=300, deadline=None)
@given(_areas())
def test_tiles_are_full_size_in_bounds_and_cover_the_area(area):
    height, width, tile, window = area
    r0, c0, h, w = window or (0, 0, height, width)
    tiles = _windows(height, width, tile, window)
    covered = np.zeros((height, width), np.int32)
    for r, c, th, tw in tiles:
        # Full-size wherever the area allows it: no sliver tile to become a tiny sample.
        assert (th, tw) == (min(tile, h), min(tile, w))
        assert r0 <= r and r + th <= r0 + h and c0 <= c and c + tw <= c0 + w  # inside the area
        covered[r:r + th, c:c + tw] += 1
    assert (covered[r0:r0 + h, c0:c0 + w] > 0).all()
    assert covered.sum() == covered[r0:r0 + h, c0:c0 + w].sum()  # nothing outside the window
    assert len(tiles) == math.ceil(h / tile) * math.ceil(w / tile)  # no tile more than needed
    assert len(set(tiles)) == len(tiles)


def test_tiles_of_a_biome_sized_scene_the_review_found():
    tiles = _windows(7811, 7681, 512, None)
    assert {(th, tw) for _, _, th, tw in tiles} == {(512, 512)}  # was down to (131, 1)
    assert max(r for r, _, _, _ in tiles) == 7811 - 512 and max(c for _, c, _, _ in tiles) == 7681 - 512
    assert len(tiles) == 16 * 16


def test_biome_tiles_through_load_dataset_are_full_size_and_memory_counts_overlap(tmp_path):
    _write_biome_scene(tmp_path, "Forest", FOREST)
    tiles = load_dataset("biome_scenes", tmp_path, None, CLOUD2, tile_size=12)
    wins = [t.tags["window"] for t in tiles]
    # Columns 0-7 are fill but no 12 x 12 tile is all fill, so all nine stay.
    assert wins == [(r, c, 12, 12) for r in (0, 12, 20) for c in (0, 12, 20)]
    assert {t.image.shape for t in tiles} == {(10, 12, 12)}
    last = tiles[-1]
    assert last.tags["window"] == (20, 20, 12, 12) and last.labels[-1, -1] == 0  # row 31: clear
    need = 9 * 144 * (4 * 10 + 9)  # the overlapping tiles hold more than the 32 x 32 scene
    with pytest.raises(MemoryError):
        load_dataset("biome_scenes", tmp_path, None, CLOUD2, tile_size=12, max_bytes=need - 1)
    assert len(load_dataset("biome_scenes", tmp_path, None, CLOUD2, tile_size=12, max_bytes=need)) == 9


# ------------------------------------------------------------ options (bug 1)

EXPECTED_OPTIONS = {
    "biome_scenes": {"bands", "scenes", "biomes", "window", "tile_size", "skip_empty", "max_bytes"},
    "l7_irish": {"bands", "scenes", "window", "tile_size", "skip_empty", "max_bytes"},
    "38cloud": {"patches", "sun_elevation_deg", "mtl_dir", "allow_uncorrected"},
    "cloudsen12": {"indices", "max_bytes"},
    "s2_cloud_mask_catalogue": {"splits_dir", "scenes", "max_bytes"},
    "cloudperu2": {"scale"},
    "sparcs": {"scenes"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_OPTIONS))
def test_registered_loaders_take_their_loaders_options_keyword_only(name):
    params = inspect.signature(DATASET_LOADERS[name]).parameters
    options = {n for n, p in params.items() if p.kind == p.KEYWORD_ONLY}
    assert options == EXPECTED_OPTIONS[name]


def test_unknown_option_error_lists_the_datasets_options(tmp_path):
    _write_biome_scene(tmp_path, "Forest", FOREST)
    with pytest.raises(ValueError, match=r"no option\(s\) \['scene'\]") as err:
        load_dataset("biome_scenes", tmp_path, None, CLOUD2, scene=[FOREST])
    for option in EXPECTED_OPTIONS["biome_scenes"]:
        assert option in str(err.value)


def test_biome_scenes_options_select_scenes_window_and_memory(tmp_path):
    _write_biome_scene(tmp_path, "Forest", FOREST)
    _write_biome_scene(tmp_path, "Snow_Ice", SNOW)
    (one,) = load_dataset("biome_scenes", tmp_path, None, CLOUD2, scenes=[SNOW])
    assert one.tags["scene"] == SNOW and one.image.shape == (10, N, N)
    # As a TOML config gives them: window a list, max_bytes a float.
    wins = load_dataset("biome_scenes", tmp_path, None, CLOUD2, window=[8, 8, 8, 24], max_bytes=1e6)
    assert [w.image.shape for w in wins] == [(10, 8, 24)] * 2 and all((w.labels == 1).all() for w in wins)
    (b3,) = load_dataset("biome_scenes", tmp_path, "Forest", CLOUD2, bands=["B2", "B3", "B4"])
    assert b3.descriptors.names == ("B2", "B3", "B4") and b3.tags["surface"] == "Forest"
    with pytest.raises(MemoryError, match="select scenes= / biomes=, read a window="):
        load_dataset("biome_scenes", tmp_path, None, CLOUD2, max_bytes=1000)
    with pytest.raises(pdl.DatasetLayoutError, match="LC8_TYPO"):  # a typo loads nothing silently
        load_dataset("biome_scenes", tmp_path, None, CLOUD2, scenes=["LC8_TYPO"])
    with pytest.raises(pdl.DatasetLayoutError, match="Forrest"):
        load_dataset("biome_scenes", tmp_path, None, CLOUD2, biomes=["Forrest"])
    with pytest.raises(TypeError, match=r"scenes=\['LC8"):
        load_dataset("biome_scenes", tmp_path, None, CLOUD2, scenes=SNOW)
    with pytest.raises(ValueError, match="give one of them"):
        load_dataset("biome_scenes", tmp_path, "Forest", CLOUD2, biomes=["Urban"])


def test_l7_irish_options(tmp_path):
    _write_irish(tmp_path)
    (s,) = load_dataset("l7_irish", tmp_path, None, CLOUD3, scenes=["p226_r98"], window=[0, 4, 16, 8],
                        bands=["B1", "B62"])
    assert s.image.shape == (2, 16, 8) and s.tags["window"] == (0, 4, 16, 8)
    assert (s.labels[:8] == 2).all() and (s.labels[8:] == 1).all()  # shadow rows, then thin cloud
    with pytest.raises(MemoryError, match="iter_l7_irish"):
        load_dataset("l7_irish", tmp_path, None, CLOUD2, max_bytes=1000)
    with pytest.raises(pdl.DatasetLayoutError, match="p999_r1"):
        load_dataset("l7_irish", tmp_path, None, CLOUD2, scenes=["p999_r1"])


def test_cloudsen12_train_split_with_indices(tmp_path):
    _write_cloudsen12(tmp_path, n=3)
    (tmp_path / "val").rename(tmp_path / "train")
    patch = 512 * 512 * (4 * 13 + 9)  # bytes one patch needs
    with pytest.raises(MemoryError, match="pass indices="):
        load_dataset("cloudsen12", tmp_path, "train", CLOUD2, max_bytes=2.5 * patch)
    got = load_dataset("cloudsen12", tmp_path, "train", CLOUD2, indices=[2, 0], max_bytes=2.5 * patch)
    assert [s.tags["index"] for s in got] == [2, 0] and [s.tags["roi_id"] for s in got] == ["ROI_2", "ROI_0"]
    np.testing.assert_allclose(got[1].image[0, 0, 0], 0.1, rtol=1e-6)  # B1 DN 1000 x 1e-4
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        load_dataset("cloudsen12", tmp_path, "train", CLOUD2, indices=[3])


def test_38cloud_sun_correction_from_options(tmp_path):
    _write_38cloud(tmp_path)
    (tmp_path / "mtl").mkdir()
    (tmp_path / "mtl" / f"{SCENE_38}_MTL.txt").write_text(L8_MTL)
    # A config's mtl_dir is not resolved against --data-dir: a relative one is tried under root.
    s = load_dataset("38cloud", tmp_path, None, CLOUD2, mtl_dir="mtl")[0]
    assert s.tags["sun_corrected"] is True
    np.testing.assert_allclose(s.image[0, 5, 5], _l8_refl(10000), rtol=1e-5)
    s = load_dataset("38cloud", tmp_path, None, CLOUD2, sun_elevation_deg={SCENE_38: 30.0})[0]
    np.testing.assert_allclose(s.image[0, 5, 5], (2e-5 * 10000 - 0.1) / 0.5, rtol=1e-5)
    with pytest.raises(ValueError, match="above 0"):
        load_dataset("38cloud", tmp_path, None, CLOUD2, sun_elevation_deg={SCENE_38: -3.0})
    with pytest.raises(pdl.DatasetLayoutError, match="not a folder"):
        load_dataset("38cloud", tmp_path, None, CLOUD2, mtl_dir="no_such_dir")


def test_38cloud_without_sun_elevation_is_refused_unless_allowed(tmp_path):
    _write_38cloud(tmp_path)
    with pytest.raises(pdl.DatasetLayoutError, match=r"sun elevation of 1 of 1 scenes.*mtl_dir") as err:
        load_dataset("38cloud", tmp_path, None, CLOUD2)
    assert SCENE_38 in str(err.value) and "allow_uncorrected=True" in str(err.value)
    raw = load_dataset("38cloud", tmp_path, None, CLOUD2, allow_uncorrected=True)
    assert [s.tags["sun_corrected"] for s in raw] == [False, False]
    np.testing.assert_allclose(raw[0].image[0, 5, 5], 2e-5 * 10000 - 0.1, rtol=1e-5)
    # An MTL put anywhere under root is found without any option.
    (tmp_path / f"{SCENE_38}_MTL.txt").write_text(L8_MTL)
    found = load_dataset("38cloud", tmp_path, None, CLOUD2, patches=[PATCHES[1]])
    assert len(found) == 1 and found[0].tags["sun_corrected"] is True


def test_s2_catalogue_options_and_memory_check(tmp_path, shared_data):
    _write_s2_catalogue(tmp_path)
    (s,) = load_dataset("s2_cloud_mask_catalogue", tmp_path, None, CLOUD2, scenes=[S2_IDS["test"]])
    assert s.name == S2_IDS["test"]
    one = N * N * (4 * 13 + 9)  # bytes one subscene needs
    with pytest.raises(MemoryError, match="pick a split= or scenes="):
        load_dataset("s2_cloud_mask_catalogue", tmp_path, None, CLOUD2, max_bytes=2 * one - 1)
    assert len(load_dataset("s2_cloud_mask_catalogue", tmp_path, None, CLOUD2, max_bytes=2 * one)) == 2
    # A split selects before the memory check: the paper's train split holds one of the two here.
    assert len(load_dataset("s2_cloud_mask_catalogue", tmp_path, "train", CLOUD2, max_bytes=one)) == 1
    with pytest.raises(MemoryError):
        pdl.load_s2_cloud_mask_catalogue(tmp_path, CLOUD2, max_bytes=one)
    splits = tmp_path / "my_splits"
    splits.mkdir()
    (splits / "S2_catalogue_split_test.csv").write_text(S2_IDS["train"] + "\n")
    got = load_dataset("s2_cloud_mask_catalogue", tmp_path, "test", CLOUD2, splits_dir="my_splits")
    assert [x.name for x in got] == [S2_IDS["train"]]
    with pytest.raises(pdl.DatasetLayoutError, match="S2B_NOT_THERE"):
        load_dataset("s2_cloud_mask_catalogue", tmp_path, None, CLOUD2, scenes=["S2B_NOT_THERE"])


def test_cloudperu2_and_sparcs_options(tmp_path):
    _write_cloudperu2(tmp_path / "peru", "uint16")
    p = load_dataset("cloudperu2", tmp_path / "peru", "val", CLOUD2, scale=1e-3)[0]
    np.testing.assert_allclose(p.image[:, 5, 5], [0.04, 0.08, 0.12, 0.16], rtol=1e-6)
    _write_sparcs(tmp_path / "sparcs", "LC80010812013365LGN00_18")
    _write_sparcs(tmp_path / "sparcs", "LC80010812013365LGN00_19")
    (sp,) = load_dataset("sparcs", tmp_path / "sparcs", None, CLOUD2, scenes=["LC80010812013365LGN00_19"])
    assert sp.name == "LC80010812013365LGN00_19"
    with pytest.raises(pdl.DatasetLayoutError, match="LC80010812013365LGN00_20"):
        load_dataset("sparcs", tmp_path / "sparcs", None, CLOUD2, scenes=["LC80010812013365LGN00_20"])


def test_paper_s2_l8_config_biome_options_reach_the_loader_and_fit(tmp_path):
    """The config's Biome source runs as shipped: its options are real options that reach
    the loader, and the 96 windows fit its max_bytes."""
    config = tomllib.loads((CONFIGS / "paper_s2_l8.toml").read_text())
    (options,) = [src["options"] for src in config["train_data"] if src["dataset"] == "biome_scenes"]
    _write_biome_scene(tmp_path, "Forest", FOREST)
    # The 32 px fixture is smaller than the window: the window reached the loader.
    with pytest.raises(ValueError, match="outside the 32x32 scene"):
        load_dataset("biome_scenes", tmp_path, None, CLOUD2, **options)
    _, _, h, w = options["window"]
    _check_memory(96 * h * w, 10, options["max_bytes"], "the 96 Biome scenes", "")  # fits: no raise


# ------------------------------------------------- S2 catalogue shadow flags (bug 3)


def _rewrite_tags(root: Path, drop_column: str | None = None, drop_scene: str | None = None):
    path = root / "classification_tags.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows = [{k: v for k, v in r.items() if k != drop_column} for r in rows if r["scene"] != drop_scene]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_s2_catalogue_without_tags_file_refuses_a_shadow_class(tmp_path):
    _write_s2_catalogue(tmp_path)
    (tmp_path / "classification_tags.csv").unlink()
    with pytest.raises(pdl.DatasetLayoutError, match="classification_tags.csv is missing.*classes without"):
        pdl.load_s2_cloud_mask_catalogue(tmp_path, CLOUD3)
    # Without a shadow class the flag does not change a label: load, not claiming shadows marked.
    two = pdl.load_s2_cloud_mask_catalogue(tmp_path, CLOUD2)
    assert [s.tags["shadow_labelled"] for s in two] == [False, False]
    assert all(s.labels[5, 5] == 0 and s.labels[5, 25] == 0 for s in two)  # clear; shadow -> clear


def test_s2_catalogue_tags_without_column_or_row_refuse_a_shadow_class(tmp_path):
    _write_s2_catalogue(tmp_path)
    _rewrite_tags(tmp_path, drop_scene=S2_IDS["test"])
    with pytest.raises(pdl.DatasetLayoutError, match=S2_IDS["test"]):
        pdl.load_s2_cloud_mask_catalogue(tmp_path, CLOUD3)
    # The scene that has its row still loads, with its own flag (1: shadows marked).
    (s,) = pdl.load_s2_cloud_mask_catalogue(tmp_path, CLOUD3, scenes=[S2_IDS["train"]])
    assert s.tags["shadow_labelled"] is True and s.labels[5, 5] == 0 and s.labels[5, 25] == 2
    _rewrite_tags(tmp_path, drop_column="shadows_marked")
    with pytest.raises(pdl.DatasetLayoutError, match="no shadows_marked column"):
        pdl.load_s2_cloud_mask_catalogue(tmp_path, CLOUD3, scenes=[S2_IDS["train"]])
    (s,) = pdl.load_s2_cloud_mask_catalogue(tmp_path, CLOUD2, scenes=[S2_IDS["train"]])
    assert s.labels[5, 5] == 0 and s.labels[5, 15] == 1 and s.labels[0, 1] == 0
    assert (s.labels[:, 30:] == IGNORE_INDEX).all()
