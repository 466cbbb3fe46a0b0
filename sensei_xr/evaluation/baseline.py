"""A per-pixel gradient-boosted classifier: the yardstick a cloud network must beat.

:class:`PixelGBM` (LightGBM on each pixel's band values, one band set per fit) is not a
product: it takes a fixed band set, ignores every neighbour and is trained here only on
what the networks are trained on, so that cross-validation can ask whether a network
uses its data better than the simplest strong learner. Needs ``lightgbm``
(``pip install "sensei_xr[baseline]"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..spectral.bandsets import resolve_bands

if TYPE_CHECKING:
    from ..datasets import LabelledSample

__all__ = ["PixelGBM"]


class PixelGBM:
    """LightGBM on single pixels of one band set (reflectance; brightness temperature in K).

    Parameters
    ----------
    bands : None, str or sequence of str
        Band choice, resolved per sample (see
        :func:`~sensei_xr.spectral.bandsets.resolve_bands`); every sample must give the
        same number of bands.
    n_estimators, num_leaves, learning_rate : int, int, float
        LightGBM's (200 trees of 31 leaves by default).
    pixels : int
        Labelled pixels drawn (uniformly, without replacement) from the training samples.
    seed : int
    threads : int
        LightGBM threads.
    """

    def __init__(self, bands: str | Sequence[str] | None = None, n_estimators: int = 200, num_leaves: int = 31,
                 learning_rate: float = 0.1, pixels: int = 300_000, seed: int = 0, threads: int = 0) -> None:
        self.bands = bands
        self.rounds = n_estimators
        self.params = dict(objective="binary", num_leaves=num_leaves, learning_rate=learning_rate, seed=seed,
                           num_threads=threads, verbose=-1, deterministic=True)
        self.pixels = pixels
        self.seed = seed
        self.model = None
        self.band_count: int | None = None

    def _features(self, sample: "LabelledSample") -> np.ndarray:
        names = resolve_bands(sample.descriptors, self.bands)
        idx = [sample.descriptors.names.index(n) for n in names]
        if self.band_count is not None and len(idx) != self.band_count:
            raise ValueError(f"{sample.name}: {len(idx)} bands, the classifier was fitted on {self.band_count}")
        return sample.image[idx].reshape(len(idx), -1).T

    def fit(self, samples: Sequence["LabelledSample"], cloud_classes: Sequence[int] = (1,)) -> "PixelGBM":
        """Fit on the labelled pixels of ``samples`` (cloud = any of ``cloud_classes``)."""
        try:
            import lightgbm
        except ImportError as e:
            raise ImportError(f'the per-pixel baseline needs lightgbm ({e}); pip install "sensei_xr[baseline]"') from None
        from ..datasets import IGNORE_INDEX

        feats, labels = [], []
        for s in samples:
            f = self._features(s)
            self.band_count = f.shape[1]
            y = s.labels.ravel()
            keep = (y != IGNORE_INDEX) & np.isfinite(f).all(axis=1)
            feats.append(f[keep])
            labels.append(np.isin(y[keep], list(cloud_classes)))
        x, y = np.concatenate(feats), np.concatenate(labels)
        if len(x) > self.pixels:
            pick = np.random.default_rng(self.seed).choice(len(x), self.pixels, replace=False)
            x, y = x[pick], y[pick]
        self.model = lightgbm.train(self.params, lightgbm.Dataset(x, y.astype(np.float32)), self.rounds)
        return self

    def predict_probability(self, sample: "LabelledSample") -> np.ndarray:
        """(H, W) float32 probability of cloud; NaN where a band has no data."""
        if self.model is None:
            raise RuntimeError("fit the baseline first")
        f = self._features(sample)
        ok = np.isfinite(f).all(axis=1)
        out = np.full(len(f), np.nan, np.float32)
        if ok.any():
            out[ok] = self.model.predict(f[ok])
        return out.reshape(sample.image.shape[1:])
