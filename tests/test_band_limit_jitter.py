"""BandLimitJitter: new wavelength limits for the bands SEnSeI is told, per batch, pixels kept."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensei_xr import catalogs
from sensei_xr.bands import MIN_WAVELENGTH_NM, THERMAL_FROM_NM, BandDescriptors, normalise_wavelengths
from sensei_xr.datasets import load_dataset
from sensei_xr.training.augmentation import BandLimitJitter
from sensei_xr.training.recipe import check_same_recipe, load_config, training_recipe, validate_config
from sensei_xr.training.samplers import RandomPatchBatches

SENSORS = catalogs.list_sensors()


@st.composite
def sensor_bands(draw):
    """A real sensor's descriptors, all bands or a random subset of them."""
    sensor = catalogs.get_sensor(draw(st.sampled_from(SENSORS)))
    # One band per definition (Sentinel-3 SLSTR's S7 and F1 share theirs).
    names = list({tuple(sensor.band(n).wavelengths_nm): n for n in sensor.band_names}.values())
    keep = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
    return BandDescriptors.from_sensor(sensor.id, keep)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(desc=sensor_bands(), f=st.floats(0.0, 0.2), w=st.floats(1.0, 10.0), seed=st.integers(0, 2 ** 32 - 1))
def test_jittered_limits_stay_within_the_asked_range_on_every_sensor(desc, f, w, seed):
    out = BandLimitJitter(f, w)(desc, np.random.default_rng(seed))
    assert out.names == desc.names and out.kinds == desc.kinds  # valid descriptors (checked on construction)
    thermal = desc.is_thermal
    np.testing.assert_array_equal(out.wavelengths_nm[thermal], desc.wavelengths_nm[thermal])
    old, new = desc.wavelengths_nm[~thermal], out.wavelengths_nm[~thermal]
    ratio = new[:, 1] / old[:, 1]
    clipped = (new[:, 1] <= MIN_WAVELENGTH_NM + 2) | (new[:, 1] >= THERMAL_FROM_NM - 2)
    assert np.all(clipped | ((ratio >= 1 - f - 1e-9) & (ratio <= 1 + f + 1e-9)))
    assert np.all(new[:, 1] < THERMAL_FROM_NM) and np.all(new[:, 0] > MIN_WAVELENGTH_NM)
    for side, (a, b) in ((0, (1, 0)), (2, (2, 1))):  # lower half-width, upper half-width
        was, now = old[:, a] - old[:, b], new[:, a] - new[:, b]
        at_floor = (new[:, 0] <= MIN_WAVELENGTH_NM + 1) if side == 0 else (new[:, 2] >= THERMAL_FROM_NM - 1)
        inside = (now >= was / w * (1 - 1e-9)) & (now <= was * w * (1 + 1e-9))
        assert np.all(at_floor | clipped | inside)


def test_no_jitter_is_the_identity_and_the_draws_fill_the_range():
    desc = BandDescriptors.from_sensor("landsat8_oli_tirs")
    rng = np.random.default_rng(0)
    same = BandLimitJitter(0.0, 1.0)(desc, rng)
    np.testing.assert_allclose(same.wavelengths_nm, desc.wavelengths_nm)
    nir = desc.names.index("B5")
    draws = np.array([BandLimitJitter(0.03, 2.0)(desc, rng).wavelengths_nm[nir] for _ in range(2000)])
    centre = desc.wavelengths_nm[nir, 1]
    # Uniform in +-3 % of 865 nm: the extremes of 2000 draws reach past +-2.9 %.
    assert draws[:, 1].min() < centre * 0.971 and draws[:, 1].max() > centre * 1.029
    below = draws[:, 1] - draws[:, 0]  # centre to lower limit
    was = centre - desc.wavelengths_nm[nir, 0]
    assert below.min() < 0.51 * was and below.max() > 1.96 * was
    # A log-uniform factor: as many narrower half-widths as wider (binomial, 4 sigma).
    assert abs((below < was).mean() - 0.5) < 4 * 0.5 / np.sqrt(2000)


@pytest.mark.parametrize("f, w, message", [(-0.01, 2.0, "centre_fraction must be in 0..0.2"),
                                           (0.3, 2.0, "centre_fraction must be in 0..0.2"),
                                           (0.03, 0.5, "width_factor must be in 1..10")])
def test_out_of_range_options_are_refused(f, w, message):
    with pytest.raises(ValueError, match=message):
        BandLimitJitter(f, w)


@pytest.fixture(scope="module")
def biome(shared_data, one_torch_thread):
    return load_dataset("biome_patches", split="train")


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2 ** 16), index=st.integers(0, 5))
def test_sampler_changes_only_the_descriptors_told(biome, seed, index):
    plain = RandomPatchBatches(biome, 32, 2, 6, min_bands=3, seed=seed)
    jittered = RandomPatchBatches(biome, 32, 2, 6, min_bands=3, seed=seed, band_limit_jitter=BandLimitJitter())
    a, b = plain[index], jittered[index]
    for key in ("images", "labels"):
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    assert a["band_names"] == b["band_names"] and a["windows"] == b["windows"]
    np.testing.assert_array_equal(b["descriptors"].numpy(), jittered[index]["descriptors"].numpy())  # a pure function
    desc = biome[0].descriptors.select(b["band_names"])
    told = b["descriptors"].numpy()
    thermal = desc.is_thermal
    np.testing.assert_array_equal(told[thermal], a["descriptors"].numpy()[thermal])
    assert not np.allclose(told[~thermal], a["descriptors"].numpy()[~thermal])
    # What is told is a valid band definition: min <= centre <= max, in nm.
    nm = 10 ** (told.astype(np.float64) + 2) + 300
    assert np.all(np.diff(nm, axis=1) >= -1e-3)
    np.testing.assert_allclose(normalise_wavelengths(nm), told, atol=1e-5)
    # Batches are told different limits.
    other = jittered[(index + 1) % 6]["descriptors"].numpy()
    assert told.shape != other.shape or not np.allclose(told, other)


def _write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text('model = { encoder = "sensei", head = "pixelnet", classes = ["clear", "cloud"] }\n' + text)
    return path


def test_config_records_the_jitter_and_refuses_what_it_cannot_do(tmp_path):
    config = load_config(_write(tmp_path, "band_limit_jitter = { centre_fraction = 0.05, width_factor = 3.0 }\n"))
    recipe = training_recipe(config)
    assert recipe["band_limit_jitter"] == {"centre_fraction": 0.05, "width_factor": 3.0}
    assert training_recipe({})["band_limit_jitter"] is None
    # A checkpoint written before the key existed was trained without it: another recipe.
    old = {k: v for k, v in training_recipe({**config, "band_limit_jitter": None}).items() if k != "band_limit_jitter"}
    with pytest.raises(ValueError, match="band_limit_jitter: None there"):
        check_same_recipe(old, config, "the checkpoint")
    with pytest.raises(ValueError, match=r"band_limit_jitter takes \['centre_fraction', 'width_factor'\]"):
        load_config(_write(tmp_path, "band_limit_jitter = { centre = 0.05 }\n"))
    with pytest.raises(ValueError, match="width_factor must be in 1..10"):
        load_config(_write(tmp_path, "band_limit_jitter = { width_factor = 0.5 }\n"))
    # A network without SEnSeI (the cross-validation's fixed band sets) is told no descriptors.
    fixed = {"model": {"encoder": None, "head": "pixelnet", "classes": ["clear", "cloud"], "in_bands": 4},
             "band_limit_jitter": {"centre_fraction": 0.03}}
    with pytest.raises(ValueError, match="no SEnSeI encoder"):
        validate_config(fixed)
