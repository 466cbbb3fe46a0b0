"""Synthetic clouds: wavelength-aware spectra, structure, labels, any sensor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sensei_xr.bands import BandDescriptors
from sensei_xr.datasets import load_dataset
from sensei_xr.datasets import IGNORE_INDEX
from sensei_xr.training.synthetic import SyntheticClouds, cloud_opacity_field, cloud_reflectance


def _descriptors(sensor_id: str):
    return BandDescriptors.from_sensor(sensor_id)


def _index(desc, name):
    return desc.names.index(name)


@pytest.mark.parametrize("high", [False, True])
def test_cloud_spectrum_follows_wavelength(high):
    desc = _descriptors("sentinel2_msi")
    ratios = []
    for seed in range(20):
        r = cloud_reflectance(desc, np.random.default_rng(seed), high=high, brightness=0.7)
        vis = r[[_index(desc, b) for b in ("B02", "B03", "B04")]]
        assert np.all(np.abs(vis - 0.7) < 0.1)  # bright and flat in the visible
        b8a, b11, b12, b10 = (r[_index(desc, b)] for b in ("B8A", "B11", "B12", "B10"))
        assert b12 < b11 < b8a  # lower at 1.6 um, lower again at 2.2 um
        ratios.append(b10 / 0.7)
    if high:
        assert min(ratios) > 0.3  # high ice cloud is bright at 1.38 um
    else:
        assert max(ratios) < 0.06  # low cloud sits under the absorbing water vapour


def test_ice_cloud_darker_than_water_cloud_in_swir():
    desc = _descriptors("landsat8_oli_tirs")
    b6 = _index(desc, "B6")
    water = np.mean([cloud_reflectance(desc, np.random.default_rng(s), False, 0.7)[b6] for s in range(20)])
    ice = np.mean([cloud_reflectance(desc, np.random.default_rng(s), True, 0.7)[b6] for s in range(20)])
    assert ice < 0.75 * water
    # Thermal bands have no reflectance: the compositor handles them as temperatures.
    assert np.isnan(cloud_reflectance(desc, np.random.default_rng(0), False, 0.7)[_index(desc, "B10")])


def test_deep_convective_ice_cloud_is_dark_in_swir_only():
    desc = _descriptors("landsat8_oli_tirs")
    vis, nir, b6, b7, b9 = (_index(desc, b) for b in ("B3", "B5", "B6", "B7", "B9"))
    for seed in range(10):
        plain = cloud_reflectance(desc, np.random.default_rng(seed), True, 0.9)
        deep = cloud_reflectance(desc, np.random.default_rng(seed), True, 0.9, swir_scale=0.4)
        # Visible, NIR and the 1.38 um vapour band are untouched; 1.6 and 2.2 um scale.
        assert np.allclose(deep[[vis, nir, b9]], plain[[vis, nir, b9]])
        assert np.allclose(deep[[b6, b7]], 0.4 * plain[[b6, b7]])
        # As the ice-topped deck of Urban_01_0609 reads: 1.6 um at 0.15-0.18 of the visible.
        assert 0.1 < deep[b6] / deep[vis] < 0.22


def test_ice_swir_range_reaches_composites(clear_patch):
    s = clear_patch
    b3, b6 = _index(s.descriptors, "B3"), _index(s.descriptors, "B6")
    ratios = {}
    for scale in ((1.0, 1.0), (0.35, 0.35)):
        synth = SyntheticClouds(probability=1.0, coverage=(1.0, 1.0), thin_probability=0.0,
                                high_probability=1.0, ice_swir=scale)
        image, labels = synth(s.image, s.labels, s.descriptors, np.random.default_rng(5))
        core = labels == 1
        ratios[scale] = np.median(image[b6][core] / image[b3][core])
    assert ratios[(0.35, 0.35)] < 0.6 * ratios[(1.0, 1.0)]
    with pytest.raises(ValueError, match="ice_swir"):
        SyntheticClouds(ice_swir=(0.0, 1.0))


def test_opacity_field_coverage_and_structure():
    rng = np.random.default_rng(0)
    for coverage in (0.1, 0.5, 0.8):
        a = cloud_opacity_field((128, 128), rng, coverage, beta=3.0, sharpness=2.0, alpha_max=1.0)
        assert abs((a > 0).mean() - coverage) < 0.02
        assert a.min() >= 0 and a.max() <= 1.0
    # Higher beta: smoother fields (less energy at small scales).
    rough = [np.abs(np.diff(cloud_opacity_field((128, 128), np.random.default_rng(s), 0.5, 2.0, 2.0, 1.0))).mean()
             for s in range(5)]
    smooth = [np.abs(np.diff(cloud_opacity_field((128, 128), np.random.default_rng(s), 0.5, 4.0, 2.0, 1.0))).mean()
              for s in range(5)]
    assert np.mean(smooth) < 0.5 * np.mean(rough)
    thin = cloud_opacity_field((64, 64), np.random.default_rng(1), 0.5, 3.0, 4.0, alpha_max=0.4)
    assert thin.max() <= 0.4 + 1e-6


@pytest.fixture(scope="module")
def clear_patch(shared_data):
    samples = load_dataset("biome_patches", root=shared_data / "l8_biome_patches", split="train")
    # A real patch with no cloud in its human label.
    return next(s for s in samples if (s.labels == 0).all() and s.image[:3].mean() < 0.2)


def test_composite_over_real_landsat8_patch(clear_patch):
    s = clear_patch
    synth = SyntheticClouds(probability=1.0, coverage=(0.4, 0.4), thin_probability=0.0)
    image, labels = synth(s.image, s.labels, s.descriptors, np.random.default_rng(3))
    assert image.shape == s.image.shape and image.dtype == np.float32
    cloud = labels == 1
    assert 0.1 < cloud.mean() < 0.45
    blue, tir = _index(s.descriptors, "B2"), _index(s.descriptors, "B10")
    # Under the labelled cloud: brighter in the visible, colder in the thermal.
    assert (image[blue][cloud] - s.image[blue][cloud]).mean() > 0.2
    assert (image[tir][cloud] - s.image[tir][cloud]).mean() < -3.0
    # Where there is no synthetic cloud the pixels are untouched.
    untouched = (labels == 0) & np.isclose(image[blue], s.image[blue])
    assert untouched.mean() > 0.4
    # Faint veils over clear ground are ignored, not labelled either way.
    assert (labels == IGNORE_INDEX).any()


def test_label_rules_keep_no_data_and_real_cloud():
    desc = _descriptors("sentinel2_msi")
    rng = np.random.default_rng(0)
    image = np.full((len(desc), 64, 64), 0.05, np.float32)
    labels = np.zeros((64, 64), np.int64)
    labels[:8] = IGNORE_INDEX  # no data
    labels[8:16] = 1  # real cloud
    image[:, :8] = np.nan
    synth = SyntheticClouds(probability=1.0, coverage=(0.9, 0.9))
    out, new = synth(image, labels, desc, rng)
    assert (new[:8] == IGNORE_INDEX).all() and np.isnan(out[:, :8]).all()
    assert (new[8:16] == 1).all()  # real cloud stays cloud, even under a faint veil
    assert set(np.unique(new)) <= {IGNORE_INDEX, 0, 1}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), thick_from=st.floats(0.3, 0.7))
def test_thin_and_thick_classes_follow_the_veils_opacity(seed, thick_from):
    """With a thin-cloud class, a synthetic pixel is thin from label_threshold and thick from
    thick_from; the visible brightness (monotonic in the opacity over a uniform ground)
    orders clear < thin < thick. Real thick cloud stays thick under any veil, real thin
    cloud becomes thick under a dense one, no data stays no data."""
    desc = _descriptors("landsat8_oli_tirs")
    rng = np.random.default_rng(seed)
    image = np.full((len(desc), 64, 64), 0.05, np.float32)
    image[desc.is_thermal] = 290.0
    labels = np.zeros((64, 64), np.int64)
    labels[:4] = IGNORE_INDEX
    labels[4:8] = 2  # real thick cloud
    labels[8:12] = 1  # real thin cloud
    synth = SyntheticClouds(probability=1.0, coverage=(0.6, 0.9), thin_probability=0.0, cloud_class=2,
                            thin_class=1, thick_from=thick_from)
    out, new = synth(image, labels, desc, rng)
    assert (new[:4] == IGNORE_INDEX).all() and (new[4:8] == 2).all()
    assert set(np.unique(new[8:12])) <= {1, 2}
    blue = out[_index(desc, "B2"), 12:]  # ground that was clear before
    lab = new[12:]
    thin, thick, clear = blue[lab == 1], blue[lab == 2], blue[lab == 0]
    assert thick.size  # thick veils of opacity up to 0.75-1 reach thick_from
    if thin.size:
        assert thin.max() < thick.min()
        assert clear.size == 0 or clear.max() < thin.min()
    with pytest.raises(ValueError, match="thin_class"):
        SyntheticClouds(cloud_class=1, thin_class=1)


def test_training_gives_synthetic_clouds_the_biome_thin_and_thick_classes():
    from sensei_xr.training.synthetic import synthetic_clouds_for

    synth = synthetic_clouds_for({"probability": 0.5}, ("clear", "thin_cloud", "thick_cloud"))
    assert (synth.cloud_class, synth.thin_class) == (2, 1)
    assert synthetic_clouds_for({}, ("clear", "cloud")).thin_class is None
    with pytest.raises(ValueError, match="thin_cloud"):
        synthetic_clouds_for({}, ("clear", "shadow"))


def test_probability_zero_and_determinism(clear_patch):
    s = clear_patch
    img, lab = SyntheticClouds(probability=0.0)(s.image, s.labels, s.descriptors, np.random.default_rng(0))
    assert np.array_equal(img, s.image) and np.array_equal(lab, s.labels)
    synth = SyntheticClouds(probability=1.0)
    a = synth(s.image, s.labels, s.descriptors, np.random.default_rng(7))
    b = synth(s.image, s.labels, s.descriptors, np.random.default_rng(7))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_any_sensor_band_subset():
    # A 4-band RGB+NIR smallsat: no SWIR, no thermal; still composites.
    desc = _descriptors("planetscope_4band")
    image = np.full((len(desc), 32, 32), 0.08, np.float32)
    out, labels = SyntheticClouds(probability=1.0, coverage=(0.5, 0.5), thin_probability=0.0)(
        image, np.zeros((32, 32), np.int64), desc, np.random.default_rng(2))
    # Labelled cloud has opacity >= 0.25 of a cloud at least 0.45 bright: >= 0.08 + 0.25 * 0.37.
    assert (out[:, labels == 1] > 0.17).all()
    assert out[:, labels == 1].mean() > 0.3


def test_bad_input_is_explained():
    desc = _descriptors("sentinel2_msi")
    with pytest.raises(ValueError, match="do not match"):
        SyntheticClouds()(np.zeros((3, 8, 8), np.float32), np.zeros((8, 8), np.int64), desc,
                          np.random.default_rng(0))
    with pytest.raises(ValueError, match="coverage"):
        SyntheticClouds(coverage=(0.5, 0.2))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), low=st.floats(0.3, 0.8), width=st.floats(0.0, 0.3),
       hole=st.integers(0, 20))
def test_overcast_deck_covers_the_patch_at_its_brightness(clear_patch, seed, low, width, hole):
    """An overcast deck labels every pixel with data cloud, keeps no data as no data, and is
    as bright as drawn, gently shaded, with the ground showing through by 15 % at most."""
    s = clear_patch
    high = min(low + width, 0.9)
    image, labels = s.image.copy(), s.labels.copy()
    labels[:hole] = IGNORE_INDEX
    image[:, :hole] = np.nan
    synth = SyntheticClouds(probability=1.0, overcast_probability=1.0, high_probability=0.0,
                            overcast_brightness=(low, high))
    out, new = synth(image, labels, s.descriptors, np.random.default_rng(seed))
    assert (new[:hole] == IGNORE_INDEX).all() and np.isnan(out[:, :hole]).all()
    assert (new[hole:] == 1).all()
    green = out[_index(s.descriptors, "B3"), hole:]
    ground = s.image[_index(s.descriptors, "B3"), hole:]
    # out = (1 - a) ground + a cloud shading, a >= 0.85, shading 0.8-1.2, cloud within
    # 0.1 of its drawn brightness in the visible (test_cloud_spectrum_follows_wavelength).
    assert (green >= 0.85 * 0.8 * (low - 0.1)).all()
    assert (green <= 0.15 * ground + 1.2 * (high + 0.1) + 1e-6).all()
    # A deck, not a patchwork: from one pixel to the next it changes by under 1 % on average.
    assert np.abs(np.diff(green, axis=1)).mean() < 0.01 * green.mean()


def test_overcast_is_drawn_only_when_asked(clear_patch):
    s = clear_patch
    rng = np.random.default_rng(11)
    decks = 0
    for _ in range(200):
        _, labels = SyntheticClouds(probability=1.0, overcast_probability=0.25)(s.image, s.labels, s.descriptors, rng)
        decks += bool((labels == 1).all())
    assert 25 <= decks <= 75  # about a quarter of the clouds cover the whole patch
    rng = np.random.default_rng(11)
    for _ in range(200):
        _, labels = SyntheticClouds(probability=1.0)(s.image, s.labels, s.descriptors, rng)
        assert not (labels == 1).all()  # partial clouds (coverage at most 0.8) leave ground
    with pytest.raises(ValueError, match="overcast_brightness"):
        SyntheticClouds(overcast_brightness=(0.9, 0.3))
    with pytest.raises(ValueError, match="overcast_probability"):
        SyntheticClouds(overcast_probability=1.5)
