"""Patch samplers over labelled samples, with band subsets and the paper's augmentations.

Importable with torch and NumPy alone. Samplers decide *where* to read (plain
descriptions: sample index, window, bands); the datasets read and augment.

* :class:`RandomPatchBatches`: a map-style dataset whose items are whole batches. Every
  patch in a batch comes from one *source* (a dataset of one sensor) and shares one random
  band subset of at least ``min_bands`` bands (a batch tensor needs one band count; the
  paper's key to sensor independence). Sources are mixed with weights; within a source,
  images are drawn in proportion to their area. Item ``i`` is a pure function of
  ``(seed, i)`` (:meth:`RandomPatchBatches.describe` gives its plan without reading), so a
  DataLoader with workers is deterministic.
* :class:`GridPatches`: every patch of a regular grid that reaches the image edges, for
  evaluation and inference-time checks; items carry their window.
* Augmentations (:mod:`sensei_xr.training.augmentation`): per patch, and a per-batch jitter
  of the band limits SEnSeI is told.
* :func:`make_loader`: a DataLoader for these datasets, deterministic under the seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..bands import BandDescriptors, to_model_input
from ..datasets import IGNORE_INDEX, LabelledSample
from ..errors import MissingBandError
from ..spectral.bandsets import resolve_bands
from .augmentation import Augmentation, BandLimitJitter

__all__ = ["BatchPlan", "RandomPatchBatches", "GridPatches", "grid_patches", "make_loader", "model_input",
           "SyntheticFn"]

#: ``(image (N, H, W) float32, labels (H, W) int64, descriptors, rng) -> (image, labels)``:
#: e.g. :class:`sensei_xr.training.synthetic.SyntheticClouds`; sees all bands of a patch.
SyntheticFn = Callable[[np.ndarray, np.ndarray, BandDescriptors, np.random.Generator],
                       tuple[np.ndarray, np.ndarray]]


def model_input(values: np.ndarray, descriptors: BandDescriptors) -> np.ndarray:
    """A training patch as the network sees it: no data set to 0 (reflectance, and 0 K in
    thermal bands), then every band scaled (:func:`~sensei_xr.bands.to_model_input`).

    Training and the engine fill no data differently on purpose. The engine fills a scene's
    no-data pixels from their valid neighbours (:func:`sensei_xr.inference.tiling.fill_nodata`)
    so no fill value leaks into the view of nearby valid pixels. In training, no data appears
    only where the augmentations leave it (translated borders, mosaic seams), with labels
    ignored there; between 2026-12-03 and 2026-12-04 training used the engine's fill, and
    this recipe trained 5 to 10 points weaker in scene-disjoint cross-validation, e.g. the
    clear ice sheet SnowIce_00 called cloud by every seed (``docs/model_findings.md``,
    "the fill"). The shipped network was trained with this zero fill.

    Parameters
    ----------
    values : numpy.ndarray
        (N, H, W) reflectance / brightness temperature (K), NaN at no data.
    descriptors : BandDescriptors

    Returns
    -------
    numpy.ndarray
        (N, H, W) float32, finite.
    """
    return to_model_input(np.nan_to_num(values, nan=0.0), descriptors)


# ------------------------------------------------------------------------ random batches


@dataclass(frozen=True)
class BatchPlan:
    """Where one batch of :class:`RandomPatchBatches` is read from (no pixels).

    Attributes
    ----------
    index : int
        The batch's index.
    source : int
        Index of the source all its patches come from.
    bands : tuple of str
        The band subset (names, in the source's band order).
    windows : tuple of (int, int, int)
        ``(sample index within the source, y0, x0)`` of each patch's top-left pixel.
    mosaics : tuple
        Empty when the sampler makes no mosaics; else one entry per patch: None, or
        ``(cy, cx, (top_right, bottom_left, bottom_right))``, the split point inside the
        patch (pixels; ``cy == patch_size`` or ``cx == patch_size`` for a two-piece split)
        and the windows ``(sample, y0, x0)`` the other quarters are read from, each at
        the same place inside its own patch-sized window.
    """

    index: int
    source: int
    bands: tuple[str, ...]
    windows: tuple[tuple[int, int, int], ...]
    mosaics: tuple = ()


def _as_sources(samples) -> list[list[LabelledSample]]:
    samples = list(samples)
    if not samples:
        raise ValueError("no samples to draw patches from")
    if all(isinstance(s, LabelledSample) for s in samples):
        return [samples]
    if any(isinstance(s, LabelledSample) for s in samples):
        raise TypeError("samples must be a list of LabelledSample (one source) or a list of such lists "
                        "(several sources), not a mixture of both")
    return [list(src) for src in samples]


def _named_subsets(descriptors: BandDescriptors, names: Sequence[str]) -> list[tuple[int, ...]]:
    """Index tuples (in the source's band order) of the named band sets ``descriptors`` has."""
    subsets = []
    for name in names:
        try:
            bands = resolve_bands(descriptors, name)
        except MissingBandError:
            continue
        idx = tuple(sorted(descriptors.names.index(b) for b in bands))
        if idx not in subsets:
            subsets.append(idx)
    return subsets


class RandomPatchBatches:
    """Random patches from labelled samples, each batch with its own random band subset.

    A map-style dataset of ``batches`` items; item ``i`` is a whole batch, a pure function
    of ``(seed, i)``. Use it with :func:`make_loader` (``batch_size=None``).

    Parameters
    ----------
    samples : list of LabelledSample, or list of lists of LabelledSample
        One source (a list of samples), or several sources to mix (a list of lists). The
        samples of one source must share one band set (one sensor); sources may differ in
        band count.
    patch_size : int
        Patch side, pixels. Windows start anywhere in ``0..size - patch_size``, so patches
        reach the image edges.
    batch_size : int
        Patches per batch.
    batches : int
        Number of batches (the dataset's length).
    min_bands : int or None
        Fewest bands in a subset (the paper: 3); each batch takes a uniform count in
        ``min_bands..N`` of its source's N bands, then a uniform subset of that size.
        ``None`` disables subsets (all bands); a source with at most ``min_bands`` bands
        always gives all of them.
    seed : int
    augmentation : Augmentation or None
        Applied per patch after the band subset is taken.
    weights : sequence of float, optional
        One weight per source (need not sum to 1): the chance that a batch comes from it.
        Default: equal. Within a source, a sample is chosen in proportion to its area.
    synthetic : callable, optional
        :data:`SyntheticFn` (e.g. ``SyntheticClouds``): composites over each patch with all
        of its bands, before the band subset and the augmentation, so the added cloud has
        one spectrum across bands.
    named_band_sets : sequence of str, optional
        Band sets users have (names of :data:`sensei_xr.spectral.bandsets.BAND_SETS`, e.g.
        ``"RGBNIR"``, resolved by wavelength in each source; a set a source lacks is skipped
        there). With ``named_probability`` a batch takes one of them, uniformly, instead of
        a random subset: a random subset of 8 bands is exactly RGB + NIR once in 420
        batches, so without this the band sets users mask with are barely trained.
    named_probability : float
        The chance, in ``0..1``, that a batch takes a named band set (default 0: every batch
        a random subset, the paper's recipe). Ignored when ``min_bands`` is None.
    mosaic_probability : float
        The chance, in ``0..1``, that a patch is a mosaic: split at a random point (a
        quarter to three quarters of the side) into two or four rectangles, each read from
        its own random window of the source (default 0: none). With 16 labelled scenes a
        network learns which whole scenes are cloudy; pieces of different scenes side by
        side make that context unreliable, so the pixels' own spectra must decide.
    band_limit_jitter : BandLimitJitter, optional
        New wavelength limits for the batch's reflective bands, drawn per batch, in the
        ``descriptors`` the model is given (the pixels and their band names stay): so that
        SEnSeI trained on one sensor sees more than one definition of each band.

    Items
    -----
    dict with ``images`` (B, n, P, P) float32 model input (reflectance; thermal BT scaled;
    no data as 0), ``descriptors`` (n, 3) float32 normalised wavelengths, ``labels``
    (B, P, P) int64 (``IGNORE_INDEX`` at no data), ``band_names`` (list of str),
    ``source`` (int) and ``windows`` (list of dicts ``{"sample", "name", "y0", "x0"}``).
    """

    def __init__(self, samples: Sequence[LabelledSample] | Sequence[Sequence[LabelledSample]],
                 patch_size: int = 128, batch_size: int = 8, batches: int = 1000,
                 min_bands: int | None = 3, seed: int = 0,
                 augmentation: Augmentation | None = Augmentation(), *,
                 weights: Sequence[float] | None = None, synthetic: SyntheticFn | None = None,
                 named_band_sets: Sequence[str] = (), named_probability: float = 0.0,
                 mosaic_probability: float = 0.0, band_limit_jitter: BandLimitJitter | None = None):
        self.sources = _as_sources(samples)
        if not 0.0 <= named_probability <= 1.0:
            raise ValueError(f"named_probability must be in 0..1, got {named_probability}")
        if not 0.0 <= mosaic_probability <= 1.0:
            raise ValueError(f"mosaic_probability must be in 0..1, got {mosaic_probability}")
        if named_probability > 0 and not named_band_sets:
            raise ValueError("named_probability > 0 needs named_band_sets, e.g. ['RGBNIR', 'RGB']")
        if patch_size < 1 or batch_size < 1 or batches < 0:
            raise ValueError(f"patch_size and batch_size must be >= 1 and batches >= 0; got "
                             f"{patch_size}, {batch_size}, {batches}")
        if min_bands is not None and min_bands < 1:
            raise ValueError(f"min_bands must be >= 1 (the paper: 3) or None for all bands, got {min_bands}")
        for k, src in enumerate(self.sources):
            if not src:
                raise ValueError(f"source {k} has no samples")
            first = src[0].descriptors
            for s in src:
                if s.descriptors.names != first.names or s.descriptors.key != first.key:
                    raise ValueError(
                        f"source {k} mixes band sets ({list(first.names)} in {src[0].name!r}, "
                        f"{list(s.descriptors.names)} in {s.name!r}): a batch needs one band set; "
                        "give each sensor's samples as their own source: samples=[samples_a, samples_b]")
                if min(s.image.shape[-2:]) < patch_size:
                    raise ValueError(f"sample {s.name!r} ({s.image.shape[-2]} x {s.image.shape[-1]} px) is "
                                     f"smaller than the patch size {patch_size}; use a smaller patch_size")
        if weights is None:
            weights = [1.0] * len(self.sources)
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(self.sources),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights must be {len(self.sources)} finite numbers >= 0 (one per source) "
                             f"with a positive sum, got {list(weights)}")
        self.weights = w / w.sum()
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.batches = batches
        self.min_bands = min_bands
        self.seed = seed
        self.augmentation = augmentation
        self.synthetic = synthetic
        self.named_probability = float(named_probability)
        self.mosaic_probability = float(mosaic_probability)
        self.band_limit_jitter = band_limit_jitter
        # Per source: the index tuples of the named band sets it has, in its band order.
        self.named_subsets = [_named_subsets(src[0].descriptors, named_band_sets) for src in self.sources]
        if named_band_sets and not any(self.named_subsets):
            raise MissingBandError(f"none of the named band sets {list(named_band_sets)} can be formed from the "
                                   f"sources' bands ({[list(src[0].descriptors.names) for src in self.sources]})")
        # Area-weighted within a source: bigger images give more patches.
        self.sample_weights = []
        for src in self.sources:
            areas = np.array([s.image.shape[-1] * s.image.shape[-2] for s in src], float)
            self.sample_weights.append(areas / areas.sum())

    def __len__(self) -> int:
        return self.batches

    def describe(self, index: int) -> BatchPlan:
        """The plan of batch ``index``: its source, band subset and windows (reads nothing)."""
        if not 0 <= index < self.batches:
            raise IndexError(f"batch {index} out of range: this sampler has {self.batches} batches")
        rng = np.random.default_rng([self.seed, index, 0])
        k = int(rng.choice(len(self.sources), p=self.weights))
        src = self.sources[k]
        names = src[0].descriptors.names
        n_all = len(names)
        if self.min_bands is None or n_all <= self.min_bands:
            subset = np.arange(n_all)
        # Drawn only when asked for, so recipes without named sets keep their batches.
        elif self.named_probability > 0 and self.named_subsets[k] and rng.random() < self.named_probability:
            subset = np.asarray(self.named_subsets[k][int(rng.integers(len(self.named_subsets[k])))])
        else:
            n = int(rng.integers(self.min_bands, n_all + 1))
            subset = np.sort(rng.choice(n_all, size=n, replace=False))
        p = self.patch_size
        windows = tuple(self._window(rng, k) for _ in range(self.batch_size))
        mosaics = ()
        if self.mosaic_probability > 0:
            # Own stream, so the windows and subsets above stay those of a recipe without mosaics.
            mrng = np.random.default_rng([self.seed, index, 2])
            mosaics = tuple(self._mosaic(mrng, k) if mrng.random() < self.mosaic_probability else None
                            for _ in range(self.batch_size))
        return BatchPlan(index, k, tuple(names[j] for j in subset), windows, mosaics)

    def _window(self, rng: np.random.Generator, source: int) -> tuple[int, int, int]:
        src = self.sources[source]
        i = int(rng.choice(len(src), p=self.sample_weights[source]))
        h, w = src[i].image.shape[-2:]
        p = self.patch_size
        return i, int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))

    def _mosaic(self, rng: np.random.Generator, source: int) -> tuple[int, int, tuple]:
        p = self.patch_size
        kind = int(rng.integers(3))  # 0: left | right, 1: top / bottom, 2: four quarters
        lo, hi = max(1, p // 4), max(1, (3 * p) // 4)
        cy = p if kind == 0 else int(rng.integers(lo, hi + 1))
        cx = p if kind == 1 else int(rng.integers(lo, hi + 1))
        return cy, cx, tuple(self._window(rng, source) for _ in range(3))

    def __getitem__(self, index: int) -> dict:
        import torch

        plan = self.describe(index)
        src = self.sources[plan.source]
        full = src[0].descriptors
        desc = full.select(plan.bands)
        idx = [full.names.index(n) for n in plan.bands]
        p = self.patch_size
        images, labels, windows = [], [], []
        for j, (i, y0, x0) in enumerate(plan.windows):
            s = src[i]
            # Own stream per patch: its randomness does not depend on the other patches.
            rng = np.random.default_rng([self.seed, index, 1, j])
            img = s.image[:, y0:y0 + p, x0:x0 + p]
            lab = s.labels[y0:y0 + p, x0:x0 + p]
            mosaic = plan.mosaics[j] if plan.mosaics else None
            if mosaic is not None:
                img, lab = self._compose(src, img, lab, mosaic)
            if self.synthetic is not None:
                img, lab = self.synthetic(np.array(img, np.float32), np.array(lab, np.int64), full, rng)
                if img.shape != (len(full), p, p) or lab.shape != (p, p):
                    raise ValueError(f"synthetic returned image {img.shape} and labels {lab.shape}; "
                                     f"expected {(len(full), p, p)} and {(p, p)}")
            img = img[idx]
            if self.augmentation is not None:
                img, lab = self.augmentation(img, lab, desc, rng)
            images.append(model_input(img, desc))
            labels.append(np.asarray(lab, np.int64))
            window = {"sample": i, "name": s.name, "y0": y0, "x0": x0}
            if mosaic is not None:
                window["mosaic"] = {"cy": mosaic[0], "cx": mosaic[1],
                                    "pieces": [{"sample": a, "name": src[a].name, "y0": b, "x0": c}
                                               for a, b, c in mosaic[2]]}
            windows.append(window)
        told = desc
        if self.band_limit_jitter is not None:
            # Own stream, so the patches stay those of a recipe without the jitter.
            told = self.band_limit_jitter(desc, np.random.default_rng([self.seed, index, 3]))
        return {
            "images": torch.from_numpy(np.stack(images)),
            "descriptors": torch.from_numpy(told.normalised()),
            "labels": torch.from_numpy(np.stack(labels)),
            "band_names": list(desc.names),
            "source": plan.source,
            "windows": windows,
        }

    def _compose(self, src: list[LabelledSample], img: np.ndarray, lab: np.ndarray,
                 mosaic: tuple) -> tuple[np.ndarray, np.ndarray]:
        """The patch with its other quarters replaced by those of the mosaic's windows."""
        p = self.patch_size
        cy, cx, others = mosaic
        img, lab = np.array(img), np.array(lab)
        for (i, y0, x0), (ys, xs) in zip(others, ((slice(0, cy), slice(cx, p)), (slice(cy, p), slice(0, cx)),
                                                   (slice(cy, p), slice(cx, p)))):
            img[:, ys, xs] = src[i].image[:, y0 + ys.start:y0 + ys.stop, x0 + xs.start:x0 + xs.stop]
            lab[ys, xs] = src[i].labels[y0 + ys.start:y0 + ys.stop, x0 + xs.start:x0 + xs.stop]
        return img, lab


# -------------------------------------------------------------------------- grid patches


def grid_patches(sample: LabelledSample, patch_size: int, stride: int | None = None) -> list[tuple[int, int]]:
    """Top-left corners ``(y0, x0)`` of patches on a regular grid that reaches every image edge.

    Starts are ``0, stride, 2 stride, ...``; where that leaves a strip at the bottom or
    right edge, one more patch is placed flush with the edge (it overlaps its neighbour).

    Parameters
    ----------
    sample : LabelledSample
    patch_size : int
        Patch side, pixels; at most the image's height and width.
    stride : int, optional
        Step between patches, pixels (default ``patch_size``: no overlap).
    """
    stride = stride or patch_size
    h, w = sample.image.shape[-2:]
    if stride < 1 or patch_size < 1:
        raise ValueError(f"patch_size and stride must be >= 1, got {patch_size} and {stride}")
    if patch_size > min(h, w):
        raise ValueError(f"sample {sample.name!r} ({h} x {w} px) is smaller than the patch size "
                         f"{patch_size}; use a smaller patch_size")

    def starts(n):
        s = list(range(0, n - patch_size + 1, stride))
        if s[-1] + patch_size < n:
            s.append(n - patch_size)
        return s

    return [(y, x) for y in starts(h) for x in starts(w)]


class GridPatches:
    """Every patch of a regular grid over labelled samples, reaching the image edges.

    A map-style dataset of single patches, in sample order then row-major order, for
    evaluation and inference-time checks. Use with :func:`make_loader` and a
    ``batch_size``.

    Parameters
    ----------
    samples : list of LabelledSample
        Samples of one band set (after ``bands``): make one GridPatches per sensor.
    patch_size : int
        Patch side, pixels.
    stride : int, optional
        Step between patches, pixels (default ``patch_size``). See :func:`grid_patches`.
    bands : sequence of str, optional
        Band names to read, in this order (default all).

    Items
    -----
    dict with ``image`` (n, P, P) float32 model input (no data as 0), ``descriptors``
    (n, 3), ``labels`` (P, P) int64, ``nodata`` (P, P) bool, ``window`` (dict ``{"sample",
    "y0", "x0"}``, ints) and ``name`` (the sample's name).
    """

    def __init__(self, samples: Sequence[LabelledSample], patch_size: int = 256,
                 stride: int | None = None, bands: Sequence[str] | None = None):
        self.samples = list(samples)
        if not self.samples:
            raise ValueError("no samples to cut patches from")
        names = tuple(bands) if bands is not None else self.samples[0].descriptors.names
        self.descriptors = self.samples[0].descriptors.select(names)
        for s in self.samples:
            d = s.descriptors.select(names)
            if d.key != self.descriptors.key:
                raise ValueError(f"sample {s.name!r} has other bands than {self.samples[0].name!r} "
                                 f"({d.key} vs {self.descriptors.key}): make one GridPatches per sensor")
        self.band_names = list(names)
        self.patch_size = patch_size
        self.stride = stride or patch_size
        self.windows = [(i, y, x) for i, s in enumerate(self.samples)
                        for y, x in grid_patches(s, patch_size, self.stride)]

    def __len__(self) -> int:
        return len(self.windows)

    def window(self, index: int) -> dict:
        """The window of patch ``index``: ``{"sample": i, "y0": y, "x0": x}`` (pixels)."""
        i, y, x = self.windows[index]
        return {"sample": i, "y0": y, "x0": x}

    def __getitem__(self, index: int) -> dict:
        import torch

        if not 0 <= index < len(self.windows):
            raise IndexError(f"patch {index} out of range: this grid has {len(self.windows)} patches")
        i, y0, x0 = self.windows[index]
        s, p = self.samples[i], self.patch_size
        idx = [s.descriptors.names.index(n) for n in self.band_names]
        img = s.image[idx, y0:y0 + p, x0:x0 + p]
        return {
            "image": torch.from_numpy(model_input(img, self.descriptors)),
            "descriptors": torch.from_numpy(self.descriptors.normalised()),
            "labels": torch.from_numpy(np.ascontiguousarray(s.labels[y0:y0 + p, x0:x0 + p], np.int64)),
            "nodata": torch.from_numpy(np.ascontiguousarray(s.nodata[y0:y0 + p, x0:x0 + p])),
            "window": self.window(index),
            "name": s.name,
        }


# -------------------------------------------------------------------------------- loader


def _worker_init(worker_id: int) -> None:
    import torch

    # Workers x torch threads would oversubscribe the cores; the work here is NumPy.
    torch.set_num_threads(1)
    # torch seeds each worker from the loader's generator: seed the global NumPy and
    # random generators from it too, for any user callable that uses them.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset, num_workers: int = 0, *, batch_size: int | None = None,
                shuffle: bool = False, seed: int | None = None, pin_memory: bool | None = None,
                prefetch_factor: int | None = None):
    """A DataLoader over a sampler dataset, deterministic under its seed.

    Parameters
    ----------
    dataset : RandomPatchBatches, GridPatches or StacPatches
        A map-style dataset.
    num_workers : int
        Worker processes (0: load in this process). Items do not depend on which worker
        reads them, so any number gives the same batches.
    batch_size : int, optional
        None (default) for datasets whose items are batches (:class:`RandomPatchBatches`);
        a number to batch single patches (:class:`GridPatches`).
    shuffle : bool
        Visit items in a random order drawn from ``seed`` (the items of
        :class:`RandomPatchBatches` are random already).
    seed : int, optional
        Seeds the order and the workers' generators; default ``dataset.seed`` (else 0).
    pin_memory : bool, optional
        Default: True when CUDA is available.
    prefetch_factor : int, optional
        Items loaded ahead per worker (torch's default 2).

    Returns
    -------
    torch.utils.data.DataLoader
        With persistent workers (started once, kept across epochs).
    """
    import torch

    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    seed = getattr(dataset, "seed", 0) if seed is None else seed
    generator = torch.Generator().manual_seed(int(seed))
    kw = {}
    if num_workers > 0:
        kw = dict(persistent_workers=True, worker_init_fn=_worker_init)
        if prefetch_factor is not None:
            kw["prefetch_factor"] = prefetch_factor
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
        generator=generator, pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        **kw)
