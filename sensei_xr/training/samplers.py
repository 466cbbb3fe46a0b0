"""Patch samplers over labelled samples, with band subsets and the paper's augmentations.

:class:`RandomPatchBatches` is a map-style dataset whose items are whole batches: every
patch in a batch shares one random band subset (a batch tensor needs one band count), and
item ``i`` is a pure function of ``(seed, i)``, so a DataLoader with workers is
deterministic. Use it with ``DataLoader(dataset, batch_size=None, num_workers=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bands import to_model_input
from .datasets import LabelledSample

__all__ = ["Augmentation", "RandomPatchBatches", "grid_patches"]


@dataclass(frozen=True)
class Augmentation:
    """The paper's augmentations (all applied per patch, in reflectance units).

    Attributes
    ----------
    flips_rotations : bool
        Random horizontal / vertical flips and 90-degree rotations.
    white_noise_std : float
        Std of additive Gaussian noise.
    salt_pepper_fraction : float
        Fraction of pixels set to 0 or 1 (in one band each).
    band_shift : float
        Maximum absolute per-band additive reflectance shift.
    saturation_probability : float
        Chance that a patch gets artificial saturation (values clipped at a random level
        in 0.3..0.8 in the visible bands), as seen in Landsat 7.
    """

    flips_rotations: bool = True
    white_noise_std: float = 0.01
    salt_pepper_fraction: float = 0.001
    band_shift: float = 0.02
    saturation_probability: float = 0.05

    def __call__(self, image: np.ndarray, labels: np.ndarray, reflective: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.flips_rotations:
            k = int(rng.integers(4))
            image, labels = np.rot90(image, k, axes=(1, 2)), np.rot90(labels, k)
            if rng.random() < 0.5:
                image, labels = image[:, :, ::-1], labels[:, ::-1]
        image = np.array(image, dtype=np.float32)
        labels = np.ascontiguousarray(labels)
        refl = image[reflective]
        if self.white_noise_std:
            refl += rng.normal(0, self.white_noise_std, refl.shape).astype(np.float32)
        if self.band_shift:
            refl += rng.uniform(-self.band_shift, self.band_shift, (refl.shape[0], 1, 1)).astype(np.float32)
        if self.salt_pepper_fraction and refl.size:
            n = int(self.salt_pepper_fraction * refl[0].size)
            b = rng.integers(refl.shape[0], size=n)
            y = rng.integers(refl.shape[1], size=n)
            x = rng.integers(refl.shape[2], size=n)
            refl[b, y, x] = rng.integers(0, 2, size=n).astype(np.float32)
        if self.saturation_probability and rng.random() < self.saturation_probability:
            level = rng.uniform(0.3, 0.8)
            refl = np.minimum(refl, level)
        image[reflective] = refl
        return image, labels


class RandomPatchBatches:
    """Random patches from labelled samples, each batch with its own random band subset.

    Parameters
    ----------
    samples : list of LabelledSample
    patch_size : int
        Patch size, pixels (patches reach the image edges).
    batch_size : int
    batches : int
        Number of batches (the dataset's length).
    min_bands : int
        Fewest bands in a subset (the paper: 3); ``None`` disables subsets (all bands).
    seed : int
    augmentation : Augmentation, optional
    """

    def __init__(self, samples: list[LabelledSample], patch_size: int = 128, batch_size: int = 8,
                 batches: int = 1000, min_bands: int | None = 3, seed: int = 0,
                 augmentation: Augmentation | None = Augmentation()):
        if not samples:
            raise ValueError("no samples to draw patches from")
        for s in samples:
            if min(s.image.shape[-2:]) < patch_size:
                raise ValueError(f"sample {s.name} is smaller than the patch size {patch_size}")
        self.samples = samples
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.batches = batches
        self.min_bands = min_bands
        self.seed = seed
        self.augmentation = augmentation
        # Area-weighted: bigger images give more patches.
        areas = np.array([s.image.shape[-1] * s.image.shape[-2] for s in samples], float)
        self.weights = areas / areas.sum()

    def __len__(self) -> int:
        return self.batches

    def __getitem__(self, index: int):
        import torch

        if not 0 <= index < self.batches:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, index])
        n_all = len(self.samples[0].descriptors)
        if self.min_bands is None or n_all <= self.min_bands:
            subset = np.arange(n_all)
        else:
            n = int(rng.integers(self.min_bands, n_all + 1))
            subset = np.sort(rng.choice(n_all, size=n, replace=False))
        images, labels = [], []
        desc = None
        for _ in range(self.batch_size):
            s = self.samples[int(rng.choice(len(self.samples), p=self.weights))]
            h, w = s.image.shape[-2:]
            p = self.patch_size
            y0 = int(rng.integers(0, h - p + 1))
            x0 = int(rng.integers(0, w - p + 1))
            d = s.descriptors.select([s.descriptors.names[i] for i in subset])
            desc = d if desc is None else desc
            img = s.image[subset, y0:y0 + p, x0:x0 + p]
            lab = s.labels[y0:y0 + p, x0:x0 + p]
            if self.augmentation is not None:
                img, lab = self.augmentation(img, lab, ~d.is_thermal, rng)
            img = to_model_input(np.nan_to_num(img, nan=0.0), d)
            images.append(img)
            labels.append(lab)
        return {
            "images": torch.from_numpy(np.stack(images)),
            "descriptors": torch.from_numpy(desc.normalised()),
            "labels": torch.from_numpy(np.stack(labels).astype(np.int64)),
            "band_names": list(desc.names),
        }


def grid_patches(sample: LabelledSample, patch_size: int, stride: int | None = None):
    """Patch windows ``(y0, x0)`` on a regular grid that reaches every image edge."""
    stride = stride or patch_size
    h, w = sample.image.shape[-2:]

    def starts(n):
        s = list(range(0, max(n - patch_size, 0) + 1, stride))
        if s[-1] + patch_size < n:
            s.append(n - patch_size)
        return s

    return [(y, x) for y in starts(h) for x in starts(w)]

