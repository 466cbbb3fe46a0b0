"""Labelled Biome patches, samplers and metrics on the real labelled data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sensei_xr.evaluation import Confusion, binary_metrics
from sensei_xr.datasets import IGNORE_INDEX, biome_to_classes, load_biome_patches
from sensei_xr.training.augmentation import Augmentation
from sensei_xr.training.samplers import RandomPatchBatches, grid_patches


@pytest.fixture(scope="module")
def biome(shared_data):
    return load_biome_patches(shared_data / "l8_biome_patches" / "train.npz")


def test_biome_loader(biome, shared_data):
    raw = np.load(shared_data / "l8_biome_patches" / "train.npz")
    assert len(biome) == 16
    s = biome[0]
    assert s.image.shape == (8, 256, 256) and s.image.dtype == np.float32
    assert s.descriptors.names == ("B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10")
    assert s.descriptors.kinds[-1] == "thermal"
    # Labels follow the encoding: cloud = thin + thick, fill ignored.
    for sample, mask in zip(biome, raw["masks"]):
        np.testing.assert_array_equal(sample.labels == 1, np.isin(mask, [192, 255]))
        np.testing.assert_array_equal(sample.labels == IGNORE_INDEX, mask == 0)
    assert {s.tags["surface"] for s in biome} >= {"Forest", "Water", "SnowIce", "Urban"}


def test_class_mappings():
    mask = np.array([[0, 64, 128, 192, 255]], np.uint8)
    np.testing.assert_array_equal(biome_to_classes(mask), [[IGNORE_INDEX, 0, 0, 1, 1]])
    np.testing.assert_array_equal(biome_to_classes(mask, ("clear", "cloud", "shadow")), [[IGNORE_INDEX, 2, 0, 1, 1]])
    np.testing.assert_array_equal(
        biome_to_classes(mask, ("clear", "thin_cloud", "thick_cloud")), [[IGNORE_INDEX, 0, 0, 1, 2]])


def test_sampler_deterministic_band_subsets(biome):
    ds = RandomPatchBatches(biome, patch_size=64, batch_size=4, batches=20, min_bands=3, seed=7)
    a, b = ds[5], ds[5]
    torch.testing.assert_close(a["images"], b["images"])
    assert a["band_names"] == b["band_names"]
    counts = {len(ds[i]["band_names"]) for i in range(20)}
    assert min(counts) >= 3 and max(counts) <= 8 and len(counts) > 2
    item = ds[0]
    n = len(item["band_names"])
    assert item["images"].shape == (4, n, 64, 64)
    assert item["descriptors"].shape == (n, 3)
    assert item["labels"].dtype == torch.int64
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    first = next(iter(loader))
    torch.testing.assert_close(first["images"], ds[0]["images"])


def test_augmentation_keeps_labels_aligned(biome):
    rng = np.random.default_rng(0)
    img = np.zeros((2, 16, 16), np.float32)
    img[:, :4, :8] = 1.0
    lab = (img[0] > 0).astype(np.int64)
    aug = Augmentation(white_noise_std=0, salt_pepper_fraction=0, band_shift=0, saturation_probability=0,
                       resolution_probability=0)
    for _ in range(8):
        out, out_lab = aug(img, lab, biome[0].descriptors.select(["B2", "B3"]), rng)
        np.testing.assert_array_equal(out[0] > 0.5, out_lab == 1)


def test_grid_reaches_edges(biome):
    wins = grid_patches(biome[0], 100, 100)
    assert (156, 156) in wins and (0, 0) in wins


def test_metrics_against_hand_counts():
    m = binary_metrics(tp=40, fp=10, tn=45, fn=5)
    assert m["overall_accuracy"] == pytest.approx(0.85)
    assert m["precision"] == pytest.approx(0.8)
    assert m["recall"] == pytest.approx(40 / 45)
    assert m["f1"] == pytest.approx(2 * 0.8 * (40 / 45) / (0.8 + 40 / 45))
    assert m["balanced_accuracy"] == pytest.approx((40 / 45 + 45 / 55) / 2)
    c = Confusion().add(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 1]), np.array([1, 1, 1, 0]))
    assert c.as_dict() == {"tp": 1, "fp": 1, "tn": 1, "fn": 0}
