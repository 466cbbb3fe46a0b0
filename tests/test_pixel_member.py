"""The per-pixel member (sensei_xr.models.pixel_member, sensei_xr.training.member): an MLP on
six fixed reflective regions, trained after the network on the same labelled pixels and
averaged with the network's refined cloud probability by the engine where a scene has
every region; on built pixels and real Biome patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sensei_xr.bands import BandDescriptors
from sensei_xr.datasets import IGNORE_INDEX, LabelledSample
from sensei_xr.inference.member import member_bands, member_probability, mixed
from sensei_xr.models import PixelMember, WeightsError, build_model, load_model, save_model
from sensei_xr.models.pixel_member import FoldedPixelMember, member_from_config
from sensei_xr.training.crossval import biome_cv_samples
from sensei_xr.training.member import (check_member_option, give_missing_member, member_pixels, train_pixel_member,
                                       wants_member)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIX = ("blue", "green", "red", "nir", "swir16", "swir22")
FAST = {"steps": 200, "pixels": 20_000, "batch_size": 1024}


@pytest.fixture(scope="module")
def biome(shared_data):
    return biome_cv_samples(shared_data / "l8_biome_patches")


def _built_sample(rng, h: int, w: int, names=("B2", "B3", "B4", "B5", "B6", "B7", "B10")) -> LabelledSample:
    """Landsat 8 pixels: cloud is bright in the visible and at 1.6 um, clear is vegetation
    or bare soil; a few pixels of no data."""
    desc = BandDescriptors.from_sensor("landsat8_oli_tirs", list(names))
    cloud = rng.random((h, w)) < 0.4
    veg = np.array([0.05, 0.07, 0.05, 0.35, 0.18, 0.09])
    cld = np.array([0.45, 0.43, 0.44, 0.50, 0.35, 0.22])
    refl = np.where(cloud[..., None], cld, veg) + rng.normal(0, 0.02, (h, w, 6))
    bt = np.where(cloud, 255.0, 295.0)[..., None]
    full = {"B2": 0, "B3": 1, "B4": 2, "B5": 3, "B6": 4, "B7": 5}
    image = np.stack([refl[..., full[n]] if n in full else bt[..., 0] for n in names]).astype(np.float32)
    labels = cloud.astype(np.int64)
    labels[0, : max(1, w // 4)] = IGNORE_INDEX
    return LabelledSample(image, desc, labels, labels == IGNORE_INDEX, "landsat8_oli_tirs", 30.0, "built")


def test_member_config_round_trips_and_bad_input_is_explained():
    m = PixelMember(SIX, (8, 4), 0.3)
    assert member_from_config(m.config).config == m.config == {"regions": list(SIX), "hidden": [8, 4], "weight": 0.3}
    assert sum(p.numel() for p in PixelMember(SIX).parameters()) == 4994
    with pytest.raises(ValueError, match="regions among"):
        PixelMember(("blue", "ultraviolet"))
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="0 < weight < 1"):
            PixelMember(SIX, weight=bad)
    with pytest.raises(ValueError, match=r"takes \(B, 6, H, W\)"):
        m(torch.zeros(1, 4, 3, 3))
    with pytest.raises(ValueError, match="unknown pixel member config keys"):
        member_from_config({"regions": list(SIX), "layers": 3})
    with pytest.raises(ValueError, match="std > 0"):
        m.set_standardisation(torch.zeros(6), torch.zeros(6))
    for good in (True, False, {"steps": 10}, {}):
        check_member_option({"pixel_member": good})
    assert wants_member({"pixel_member": {}}) and not wants_member({"pixel_member": False}) and not wants_member({})
    for bad, message in (("yes", "true, false or a table"), (1, "true, false or a table"),
                         ({"epochs": 3}, "unknown pixel_member option"), ({"steps": 0}, "positive integer"),
                         ({"lr": "fast"}, "number > 0"), ({"weight": 1.5}, "0 < weight < 1"),
                         ({"hidden": []}, "positive widths"), ({"hidden": "64"}, "list of layer widths")):
        with pytest.raises(ValueError, match=message):
            check_member_option({"pixel_member": bad})
    with pytest.raises(ValueError, match="not in its model table"):
        check_member_option({"model": {"pixel_member": {"regions": list(SIX)}}})
    with pytest.raises(ValueError, match="band set RGBNIR lacks"):
        check_member_option({"pixel_member": True, "model": {"encoder": None, "band_set": "RGBNIR"}})
    check_member_option({"pixel_member": True, "model": {"encoder": None, "band_set": "RGBNIRSWIR"}})
    # Fallbacks: a chain in the config, and only ones that could run (lacking a region of the member).
    chained = PixelMember(SIX, (8,), 0.5, PixelMember(SIX[:4], (8,), 0.25))
    assert member_from_config(chained.config).config == chained.config
    assert chained.config["fallback"] == {"regions": list(SIX[:4]), "hidden": [8], "weight": 0.25}
    assert [m.regions for m in chained.chain()] == [SIX, SIX[:4]]
    with pytest.raises(ValueError, match="must lack one of its member's regions"):
        PixelMember(SIX[:4], (8,), 0.5, PixelMember(SIX, (8,), 0.25))
    check_member_option({"pixel_member": {"fallbacks": [{"band_set": "RGBNIR", "weight": 0.25}]}})
    for bad, message in (({"fallbacks": {"band_set": "RGBNIR"}}, "must be a list of tables"),
                         ({"fallbacks": [{"band_set": "RGBNIR"}]}, "a table {band_set"),
                         ({"fallbacks": [{"band_set": "NoRGB", "weight": 0.25}]}, "names reflective regions"),
                         ({"fallbacks": [{"band_set": "RGBNIRSWIRTIR", "weight": 0.25}]}, "names reflective regions"),
                         ({"fallbacks": [{"band_set": "RGBNIRSWIR", "weight": 0.25}]}, "must lack one"),
                         ({"fallbacks": [{"band_set": "RGBNIR", "weight": True}]}, "weight is a number"),
                         ({"fallbacks": [{"band_set": "RGBNIR", "weight": 1.2}]}, "0 < weight < 1")):
        with pytest.raises(ValueError, match=message):
            check_member_option({"pixel_member": bad})


@settings(max_examples=30, deadline=None)
@given(n_classes=st.integers(2, 4), weight=st.floats(0.05, 0.95), seed=st.integers(0, 10_000),
       size=st.integers(1, 9))
def test_the_mix_moves_only_the_cloud_probability_and_keeps_each_sides_shares(n_classes, weight, seed, size):
    """Built class probabilities (any class list with cloud classes 1.., some classes given
    nothing): the summed cloud probability becomes (1 - w) p + w m, each side keeps its
    classes' proportions, and the classes still sum to one."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(2, n_classes, size, size, generator=g)
    probs[:, -1] *= torch.rand(1, generator=g) < 0.5  # a class given nothing, sometimes
    probs = probs / probs.sum(1, keepdim=True).clamp_min(1e-12)
    probs = torch.where(torch.isfinite(probs), probs, 1.0 / n_classes)
    m = torch.rand(2, 1, size, size, generator=g)
    cloud = list(range(1, n_classes))
    batch = torch.cat([torch.rand(2, 7, size, size, generator=g), m], 1)  # the member's channel last
    seen = {}

    def run(x):
        seen["x"] = x
        return probs

    out = mixed(run, cloud, weight)(batch)
    assert torch.equal(seen["x"], batch[:, :7])  # the network sees the bands, not the member
    p = probs[:, cloud].sum(1, keepdim=True)
    q = out[:, cloud].sum(1, keepdim=True)
    torch.testing.assert_close(q, (1 - weight) * p + weight * m, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.sum(1), torch.ones(2, size, size), atol=1e-5, rtol=0)
    if n_classes > 2:  # the cloud side keeps its shares where it had some
        has = p[:, 0] > 1e-3
        share_in = probs[:, 1] / p[:, 0]
        share_out = out[:, 1] / q[:, 0]
        torch.testing.assert_close(share_out[has], share_in[has], atol=1e-4, rtol=0)


@settings(max_examples=25, deadline=None)
@given(hidden=st.lists(st.integers(1, 40), min_size=1, max_size=3), seed=st.integers(0, 10_000),
       h=st.integers(1, 20), w=st.integers(1, 20), batch=st.integers(1, 3))
def test_the_folded_member_gives_the_members_probabilities(hidden, seed, h, w, batch):
    """The engine's folded member (standardisation and batch norms folded into matrix
    products) equals the member in eval mode, with random statistics, weights and inputs
    (NaN included)."""
    g = torch.Generator().manual_seed(seed)
    member = PixelMember(SIX, hidden, 0.5)
    with torch.no_grad():
        for p in member.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for m in member.layers:
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.1)
    member.set_standardisation(torch.rand(6, generator=g) * 0.3, torch.rand(6, generator=g) * 0.2 + 0.05)
    member.eval()
    x = torch.rand(batch, 6, h, w, generator=g)
    x[0, 2, 0, 0] = float("nan")
    folded = FoldedPixelMember(member)
    # float32 rounding in two orders of operations: well under the threshold's resolution.
    torch.testing.assert_close(folded(x), member.cloud_probability(x), atol=5e-5, rtol=0)
    with pytest.raises(ValueError, match="takes 6 bands"):
        folded(x[:, :4])


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(1, 90), w=st.integers(1, 90),
       r0=st.integers(0, 89), c0=st.integers(0, 89), dh=st.integers(1, 90), dw=st.integers(1, 90))
def test_a_pixels_member_probability_does_not_depend_on_the_pixels_beside_it(seed, h, w, r0, c0, dh, dw):
    """The engine runs the member once per pixel over each block's window: the same pixel in
    any window (any size, over or under one 4096-pixel step, anywhere in it) gets the very same
    bits, or masks would depend on the chunking. Outside the window the channel is 0."""
    g = torch.Generator().manual_seed(seed)
    member = PixelMember(SIX, (64, 64), 0.5)
    with torch.no_grad():
        for p in member.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    member.set_standardisation(torch.rand(6, generator=g) * 0.3, torch.rand(6, generator=g) * 0.2 + 0.05)
    folded = FoldedPixelMember(member.eval())
    x = torch.rand(8, h, w, generator=g).numpy()
    bands = (7, 0, 3, 2, 5, 1)
    whole = member_probability(x, folded, bands, "cpu")
    rows, cols = slice(min(r0, h - 1), min(r0, h - 1) + dh), slice(min(c0, w - 1), min(c0, w - 1) + dw)
    part = member_probability(x, folded, bands, "cpu", (rows, cols))
    assert whole.shape == part.shape == (1, h, w)
    np.testing.assert_array_equal(part[0, rows, cols], whole[0, rows, cols])
    outside = np.ones((h, w), bool)
    outside[rows, cols] = False
    assert (part[0][outside] == 0).all()
    np.testing.assert_allclose(whole[0], member.cloud_probability(torch.from_numpy(x[list(bands)])[None])[0, 0],
                               atol=5e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_member_learns_what_the_pixels_say_and_the_same_seed_gives_the_same_member(seed):
    rng = np.random.default_rng(seed)
    train = [_built_sample(rng, h, w) for h, w in ((40, 50), (33, 61), (64, 20))]
    # An image without the 1.6 and 2.2 um bands cannot feed the member: it is left out.
    rgbn = _built_sample(rng, 30, 30, names=("B2", "B3", "B4", "B5"))
    x, y = member_pixels(train + [rgbn], SIX, [1], 10_000, np.random.default_rng(0))
    assert x.shape[1] == 6 and set(np.unique(y)) == {0, 1}
    assert len(y) <= sum(int((s.labels != IGNORE_INDEX).sum()) for s in train)
    a = train_pixel_member(train + [rgbn], [1], seed=seed, **FAST)
    torch.manual_seed(1234)
    with torch.no_grad():  # as a run finished from its checkpoint calls it
        b = train_pixel_member(train + [rgbn], [1], seed=seed, **FAST)
    after = torch.rand(1)
    torch.manual_seed(1234)
    assert torch.equal(after, torch.rand(1))  # the caller's random state is left as it was
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert a.config["training"]["seed"] == seed and a.config["training"]["steps"] == FAST["steps"]
    test = _built_sample(np.random.default_rng(seed + 100), 50, 50)
    idx = [list(test.descriptors.names).index(n) for n in ("B2", "B3", "B4", "B5", "B6", "B7")]
    p = a.cloud_probability(torch.from_numpy(test.image[idx][None]))[0, 0].detach().numpy()
    ok = test.labels != IGNORE_INDEX
    assert ((p[ok] >= 0.5) == (test.labels[ok] == 1)).mean() > 0.98
    with pytest.raises(ValueError, match="none of the training data has them"):
        train_pixel_member([rgbn], [1], **FAST)
    one_class = _built_sample(rng, 20, 20)
    one_class.labels[one_class.labels == 1] = 0
    with pytest.raises(ValueError, match="both cloud and clear"):
        train_pixel_member([one_class], [1], **FAST)


@pytest.fixture(scope="module")
def v9_and_member(biome):
    """The default model without its tests, and a member trained on 16 patches."""
    model = load_model("default")
    model.snow_test = model.nir_snow_test = model.warm_test = model.pixel_member = None
    member = train_pixel_member(biome[8:], [1], seed=0, **FAST)
    return model, member


def test_the_engine_mixes_the_member_where_the_scene_has_its_regions(biome, v9_and_member, tmp_path):
    """Through the engine on a real held-out patch (the thin veils of Wetlands_00): the
    cloud probability is the mean of the network's and the member's, whatever the chunking;
    a band set without a 1.6 um band runs the network alone; saved and loaded, the same."""
    import xarray as xr

    from sensei_xr.inference import cloud_probability

    model, member = v9_and_member
    s = next(x for x in biome if x.name.startswith("Wetlands_00"))
    image = s.image[:, :300, :260]
    names = list(s.descriptors.names)
    da = xr.DataArray(image, dims=("band", "y", "x"), coords={"band": names})
    six = ["B2", "B3", "B4", "B5", "B6", "B7"]
    plain = cloud_probability(da.sel(band=six), model, sensor="landsat8_oli_tirs").compute()
    plain_rgbn = cloud_probability(da.sel(band=six[:4]), model, sensor="landsat8_oli_tirs").compute()
    model.pixel_member = member
    try:
        mixed_ = cloud_probability(da.sel(band=six), model, sensor="landsat8_oli_tirs").compute()
        chunked = cloud_probability(da.sel(band=six).chunk({"y": 97, "x": 130}), model,
                                    sensor="landsat8_oli_tirs").compute()
        rgbn = cloud_probability(da.sel(band=six[:4]), model, sensor="landsat8_oli_tirs").compute()
        m = member.cloud_probability(torch.from_numpy(image[[names.index(b) for b in six]][None]))[0, 0].numpy()
        # The engine runs the folded member (matrix products): the same to about 1e-5.
        np.testing.assert_allclose(mixed_.values, 0.5 * plain.values + 0.5 * m, atol=2e-5)
        np.testing.assert_array_equal(chunked.values, mixed_.values)
        np.testing.assert_array_equal(rgbn.values, plain_rgbn.values)
        assert "B2,B3,B4,B5,B6,B7, weight 0.5" in mixed_.attrs["pixel_member"]
        assert rgbn.attrs["pixel_member"] == "none" and plain.attrs["pixel_member"] == "none"
        # The member finds more of the veils than the network alone (cloud pixels called cloud).
        cloud = s.labels[:300, :260] == 1
        assert cloud.sum() > 1000
        assert (mixed_.values[cloud] >= 0.5).mean() > (plain.values[cloud] >= 0.5).mean()
        card = save_model(model, tmp_path / "with_member", card={"name": "with-member"})
        assert card["architecture"]["pixel_member"] == member.config
        again = load_model(tmp_path / "with_member.safetensors")
        assert again.pixel_member is not None and again.pixel_member.config == member.config
        reread = cloud_probability(da.sel(band=six), again, sensor="landsat8_oli_tirs").compute()
        np.testing.assert_array_equal(reread.values, mixed_.values)
    finally:
        model.pixel_member = None
    # A file whose card asks for a member its weights lack is refused, naming the tensors
    # (the card's sha256 made to match, so the check reached is the tensors').
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from sensei_xr.models.weights import file_sha256

    weights = tmp_path / "with_member.safetensors"
    with safe_open(weights, "pt") as f:
        metadata = f.metadata()
    state = {k: v for k, v in load_file(weights).items() if not k.startswith("pixel_member.")}
    save_file(state, weights, metadata=metadata)
    card_file = tmp_path / "with_member.json"
    card = json.loads(card_file.read_text())
    card["sha256"] = file_sha256(weights)
    card_file.write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="pixel_member"):
        load_model(weights)


def test_a_scene_without_swir_gets_the_members_fallback_at_its_weight(biome, v9_and_member, tmp_path):
    """A member trained with an RGB+NIR fallback: the fallback is the member that region set
    trains alike (same seed, the very same weights); through the engine on a real held-out
    patch, a scene with the six regions gets the member, one with blue, green, red and NIR
    only the fallback at its weight, one with RGB only neither; saved and loaded, the same."""
    import xarray as xr

    from sensei_xr.inference import cloud_probability

    model, _ = v9_and_member
    member = train_pixel_member(biome[8:], [1], seed=0, fallbacks=[{"band_set": "RGBNIR", "weight": 0.25}], **FAST)
    alone = train_pixel_member(biome[8:], [1], seed=0, regions=SIX[:4], **{**FAST, "weight": 0.25})
    assert member.fallback.config == alone.config and member.fallback.fallback is None
    for k, v in alone.state_dict().items():
        assert torch.equal(v, member.fallback.state_dict()[k]), k
    s = next(x for x in biome if x.name.startswith("Wetlands_00"))
    image = s.image[:, :280, :300]
    names = list(s.descriptors.names)
    da = xr.DataArray(image, dims=("band", "y", "x"), coords={"band": names})
    six, rgbn = ["B2", "B3", "B4", "B5", "B6", "B7"], ["B2", "B3", "B4", "B5"]
    plain = {k: cloud_probability(da.sel(band=b), model, sensor="landsat8_oli_tirs").compute()
             for k, b in (("rgbn", rgbn), ("rgb", rgbn[:3]))}
    model.pixel_member = member
    try:
        out = cloud_probability(da.sel(band=rgbn), model, sensor="landsat8_oli_tirs").compute()
        rgb = cloud_probability(da.sel(band=rgbn[:3]), model, sensor="landsat8_oli_tirs").compute()
        with_six = cloud_probability(da.sel(band=six), model, sensor="landsat8_oli_tirs").compute()
        m = alone.cloud_probability(torch.from_numpy(image[[names.index(b) for b in rgbn]][None]))[0, 0].numpy()
        np.testing.assert_allclose(out.values, 0.75 * plain["rgbn"].values + 0.25 * m, atol=2e-5)
        chunked = cloud_probability(da.sel(band=rgbn).chunk({"y": 101, "x": 77}), model,
                                    sensor="landsat8_oli_tirs").compute()
        np.testing.assert_array_equal(chunked.values, out.values)
        np.testing.assert_array_equal(rgb.values, plain["rgb"].values)
        assert "B2,B3,B4,B5, weight 0.25 (fallback 1" in out.attrs["pixel_member"]
        assert "B2,B3,B4,B5,B6,B7, weight 0.5" in with_six.attrs["pixel_member"]
        assert rgb.attrs["pixel_member"] == "none"
        save_model(model, tmp_path / "fallback", card={"name": "with-fallback"})
        again = load_model(tmp_path / "fallback.safetensors")
        assert again.pixel_member.config == member.config
        reread = cloud_probability(da.sel(band=rgbn), again, sensor="landsat8_oli_tirs").compute()
        np.testing.assert_array_equal(reread.values, out.values)
    finally:
        model.pixel_member = None


def test_a_kept_model_gains_the_member_its_config_asks_for_and_keeps_one_it_has(biome):
    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    cfg = {"pixel_member": FAST, "seed": 3}
    given = give_missing_member(model, cfg, [biome[8:]])
    assert given is model.pixel_member and given is not None
    expected = train_pixel_member(biome[8:], [1], seed=3, **FAST)
    for k, v in expected.state_dict().items():
        assert torch.equal(v, given.state_dict()[k]), k
    assert give_missing_member(model, cfg, [biome[8:]]) is None and model.pixel_member is given
    # Another seed or other options: trained again; no member asked for: the model keeps its own.
    again = give_missing_member(model, {**cfg, "seed": 4}, [biome[8:]])
    assert again is not None and again is not given and again.training_options["seed"] == 4
    assert give_missing_member(model, {"pixel_member": {**FAST, "steps": 150}, "seed": 4}, [biome[8:]]) is not None
    assert give_missing_member(model, {"seed": 3}, [biome[8:]]) is None and model.pixel_member is not None
    # A config asking for a fallback the kept member lacks: the member is kept as it is (a
    # released member's weights stay untouched) and only the fallback is trained, as one
    # training of the whole chain would give it; then the chain is kept.
    before = model.pixel_member
    weights_before = {k: v.clone() for k, v in before.state_dict().items()}
    kept_options = {**FAST, "steps": 150}  # the member the model holds now
    with_fallback = {"pixel_member": {**kept_options, "fallbacks": [{"band_set": "RGBNIR", "weight": 0.25}]}, "seed": 4}
    chained = give_missing_member(model, with_fallback, [biome[8:]])
    assert chained is before and chained.fallback is not None and chained.fallback.weight == 0.25
    for k, v in weights_before.items():
        assert torch.equal(v, chained.state_dict()[k]), k
    whole = train_pixel_member(biome[8:], [1], seed=4, **with_fallback["pixel_member"])
    assert chained.config == whole.config
    for k, v in whole.state_dict().items():
        assert torch.equal(v, chained.state_dict()[k]), k
    assert give_missing_member(model, with_fallback, [biome[8:]]) is None
    # Another weight for the fallback: the member kept, the fallback trained again.
    heavier = {"pixel_member": {**kept_options, "fallbacks": [{"band_set": "RGBNIR", "weight": 0.5}]}, "seed": 4}
    old_fallback = chained.fallback
    again = give_missing_member(model, heavier, [biome[8:]])
    assert again is before and again.fallback is not old_fallback and again.fallback.weight == 0.5
    # The member itself asked otherwise (its weight): the whole chain trained again.
    other = {"pixel_member": {**kept_options, "weight": 0.4, "fallbacks": [{"band_set": "RGBNIR", "weight": 0.5}]}, "seed": 4}
    fresh = give_missing_member(model, other, [biome[8:]])
    assert fresh is not before and fresh.weight == 0.4 and fresh.fallback.weight == 0.5
    with pytest.raises(ValueError, match="unknown pixel_member option"):
        give_missing_member(model, {"pixel_member": {"stepz": 3}, "seed": 4}, [biome[8:]])
    assert member_bands(model, BandDescriptors.from_sensor("sentinel2_msi")) is not None
    model.pixel_member = None
    assert member_bands(model, BandDescriptors.from_sensor("sentinel2_msi")) is None


def test_batch_norm_calibration_leaves_the_member_alone_and_ensembles_refuse_one(biome):
    """Recalibrating the network's batch-norm statistics (after training, or for a kept
    model gaining a band set) must not reset the member's, which no forward pass refills."""
    from sensei_xr.models import CloudEnsemble
    from sensei_xr.training.batchnorm import calibrate_band_sets, recalibrate_batchnorm

    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    model.pixel_member = train_pixel_member(biome[8:], [1], seed=0, **FAST)
    before = {k: v.clone() for k, v in model.pixel_member.state_dict().items()}
    head_before = model.head.bn.running_mean.clone()
    recalibrate_batchnorm(model, biome[8:10], 2, patch_size=32, batch_size=2)
    calibrate_band_sets(model, [biome[8:10]], ["RGBNIR"], 2, 32, 2)
    assert not torch.equal(model.head.bn.running_mean, head_before)  # the network's were measured
    for k, v in model.pixel_member.state_dict().items():
        assert torch.equal(v, before[k]), k
    other = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    with pytest.raises(ValueError, match="carries a pixel member"):
        CloudEnsemble([other, model])
