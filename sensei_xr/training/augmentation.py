"""Training augmentations: per patch (:class:`Augmentation`) and per batch (:class:`BandLimitJitter`).

Importable with NumPy alone. Every random choice comes from the generator passed in, so a
seeded sampler (:class:`sensei_xr.training.samplers.RandomPatchBatches`) gives the same
batches every time.

* :class:`Augmentation`: the paper's augmentations (flips, 90-degree rotations,
  translation, white noise, salt-and-pepper noise, per-band reflectance shifts) plus
  resolution changes and artificial saturation, applied to each patch's pixels.
* :class:`BandLimitJitter`: random changes to the bands' wavelength limits that SEnSeI is
  told, one draw per batch (a batch shares one set of band descriptors); the pixels stay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bands import MIN_WAVELENGTH_NM, THERMAL_FROM_NM, BandDescriptors
from ..datasets import IGNORE_INDEX

__all__ = ["Augmentation", "BandLimitJitter", "VISIBLE_MAX_NM"]

#: Bands centred below this wavelength (nm) are "visible": the ones Landsat 7 ETM+
#: saturates over bright cloud and snow (the paper's Landsat 7 failure case).
VISIBLE_MAX_NM = 700.0


# ------------------------------------------------------------------------ augmentation


def _shift(a: np.ndarray, dy: int, dx: int, fill) -> np.ndarray:
    """``a`` (..., H, W) moved down by ``dy`` and right by ``dx`` pixels; ``fill`` where uncovered."""
    h, w = a.shape[-2:]
    out = np.full_like(a, fill)
    dst = (slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0)))
    src = (slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0)))
    out[(..., *dst)] = a[(..., *src)]
    return out


def _coarsen(image: np.ndarray, labels: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Average ``f`` x ``f`` blocks, then repeat them back to the patch size (nearest).

    Labels take each block's centre pixel (nearest neighbour: classes cannot be averaged);
    a block with no data in any band is no data (NaN, ``IGNORE_INDEX``).
    """
    n, h, w = image.shape
    ph, pw = -h % f, -w % f
    img = np.pad(image, ((0, 0), (0, ph), (0, pw)), mode="edge")
    coarse = img.reshape(n, (h + ph) // f, f, (w + pw) // f, f).mean(axis=(2, 4))
    lab = np.pad(labels, ((0, ph), (0, pw)), mode="edge")[f // 2::f, f // 2::f]
    lab = np.where(np.isnan(coarse).any(axis=0), IGNORE_INDEX, lab)
    up = coarse.repeat(f, axis=1).repeat(f, axis=2)[:, :h, :w]
    return np.ascontiguousarray(up, dtype=np.float32), np.ascontiguousarray(lab.repeat(f, 0).repeat(f, 1)[:h, :w])


@dataclass(frozen=True)
class Augmentation:
    """The paper's augmentations, plus artificial saturation and resolution changes.

    Applied per patch, in this order: flips / rotations, translation, resolution change,
    then the radiometric ones on reflective bands only (reflectance units; thermal bands,
    brightness temperature in K, are moved but not perturbed). Every random choice comes
    from the ``rng`` passed in, so a seeded sampler gives the same patches every time.

    Attributes
    ----------
    flips_rotations : bool
        Random 90-degree rotations and horizontal flips (all 8 orientations).
    max_translation : float
        Largest shift, as a fraction of the patch side (0.05: 12 px at 256 px). Shifts are
        whole pixels (a sub-pixel shift would have to resample the class labels), drawn
        uniformly in ``[-m, m]`` per axis; the uncovered border is no data: NaN in the
        image and ``IGNORE_INDEX`` in the labels, so labels stay aligned with pixels.
    resolution_probability : float
        Chance that a patch is coarsened: averaged over ``f`` x ``f`` blocks and repeated
        back to the patch size (labels by nearest neighbour), as a sensor of ``f`` times
        the ground sampling distance would see it at this patch's grid.
    resolution_factors : tuple of int
        The factors ``f`` (each >= 2) to choose from, uniformly.
    white_noise_std : float
        Std of additive Gaussian noise (reflectance).
    salt_pepper_fraction : float
        Fraction of pixels set to reflectance 0 or 1 (in one random band each).
    band_shift : float
        Largest absolute per-band additive reflectance shift (uniform).
    saturation_probability : float
        Chance that a patch gets artificial saturation: its visible bands (centre below
        :data:`VISIBLE_MAX_NM`) clipped at a random reflectance in 0.3..0.8, as Landsat 7
        ETM+ saturates over bright cloud.
    thermal_shift : float
        Largest absolute shift (K) added to all thermal bands of a patch together
        (uniform; 0: off). Absolute brightness temperature depends on season and latitude,
        so a cold clear scene must not look like cloud; one shift for all thermal bands keeps
        their differences (split window) intact.
    """

    flips_rotations: bool = True
    max_translation: float = 0.05
    resolution_probability: float = 0.1
    resolution_factors: tuple[int, ...] = (2, 3, 4)
    white_noise_std: float = 0.01
    salt_pepper_fraction: float = 0.001
    band_shift: float = 0.02
    saturation_probability: float = 0.05
    thermal_shift: float = 0.0

    def __post_init__(self) -> None:
        for name in ("resolution_probability", "saturation_probability", "salt_pepper_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"Augmentation.{name} must be in 0..1, got {v!r}")
        for name in ("max_translation", "white_noise_std", "band_shift", "thermal_shift"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"Augmentation.{name} must be a finite number >= 0, got {v!r}")
        if self.max_translation >= 1:
            raise ValueError(f"Augmentation.max_translation is a fraction of the patch side "
                             f"(< 1), got {self.max_translation!r}")
        factors = tuple(self.resolution_factors)
        if not factors or any(int(f) != f or f < 2 for f in factors):
            raise ValueError(f"Augmentation.resolution_factors must be integers >= 2, got {factors!r} "
                             "(set resolution_probability=0 to switch resolution changes off)")
        object.__setattr__(self, "resolution_factors", tuple(int(f) for f in factors))

    def __call__(self, image: np.ndarray, labels: np.ndarray, descriptors: BandDescriptors,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Augment one patch.

        Parameters
        ----------
        image : numpy.ndarray
            (N, H, W): reflectance for reflective bands, brightness temperature (K) for
            thermal bands; NaN at no data. Not modified.
        labels : numpy.ndarray
            (H, W) int64 class indices, ``IGNORE_INDEX`` at no data. Not modified.
        descriptors : BandDescriptors
            The N bands of ``image``.
        rng : numpy.random.Generator

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            The float32 image and int64 labels, same shapes (square patches; a rotation of
            a non-square patch swaps H and W).
        """
        if image.ndim != 3 or labels.shape != image.shape[1:] or len(descriptors) != image.shape[0]:
            raise ValueError(f"Augmentation needs image (N, H, W), labels (H, W) and N descriptors; got "
                             f"image {image.shape}, labels {labels.shape}, {len(descriptors)} descriptors")
        if self.flips_rotations:
            k = int(rng.integers(4))
            image, labels = np.rot90(image, k, axes=(1, 2)), np.rot90(labels, k)
            if rng.random() < 0.5:
                image, labels = image[:, :, ::-1], labels[:, ::-1]
        image = np.array(image, dtype=np.float32)
        labels = np.array(labels, dtype=np.int64)
        m = int(self.max_translation * min(image.shape[1:]))
        if m:
            dy, dx = (int(v) for v in rng.integers(-m, m + 1, size=2))
            image, labels = _shift(image, dy, dx, np.nan), _shift(labels, dy, dx, IGNORE_INDEX)
        if self.resolution_probability and rng.random() < self.resolution_probability:
            f = self.resolution_factors[int(rng.integers(len(self.resolution_factors)))]
            image, labels = _coarsen(image, labels, f)
        reflective = ~descriptors.is_thermal
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
            level = np.float32(rng.uniform(0.3, 0.8))
            visible = descriptors.wavelengths_nm[reflective, 1] < VISIBLE_MAX_NM
            refl[visible] = np.minimum(refl[visible], level)
        image[reflective] = refl
        if self.thermal_shift and not reflective.all():
            image[~reflective] += np.float32(rng.uniform(-self.thermal_shift, self.thermal_shift))
        return image, labels


@dataclass(frozen=True)
class BandLimitJitter:
    """Random wavelength limits for each reflective band, one draw per batch.

    The labelled patches here come from one sensor (Landsat 8), so without this SEnSeI only
    ever sees one definition of each band, while the same band of other sensors differs by
    1-3 % in centre and up to 4x in width: NIR is 851-879 nm on Landsat 8 (B5), 785-900 nm
    on Sentinel-2 (B08), 841-876 nm on MODIS (b2); red is centred at 655, 665 and 645 nm.
    Described as Landsat 8 bands, the same Sentinel-2 RGB+NIR pixels were masked better by
    the fold models of the default's recipe (``docs/model_findings.md``, "Is it the band
    descriptors?"). The pixel values are kept: over a few tens of nm, reflectance spectra
    are smooth enough that another sensor's band would read nearly the same value.
    Thermal bands (brightness temperature) are left as they are.

    Attributes
    ----------
    centre_fraction : float
        Largest relative shift of a band's centre, in ``0..0.2``: the centre is multiplied by
        ``1 + u``, ``u`` uniform in ``[-f, f]`` (0.03: +-14 nm at 482 nm, +-26 nm at 865 nm,
        +-66 nm at 2.2 um). 0 keeps the centres.
    width_factor : float
        Largest factor, ``>= 1``, on each half-width (centre to lower limit, centre to upper
        limit, drawn separately): log-uniform in ``[1 / w, w]``. 1 keeps the widths.
    """

    centre_fraction: float = 0.03
    width_factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.centre_fraction <= 0.2:
            raise ValueError(f"centre_fraction must be in 0..0.2 (0.03: +-3 % of each band's centre), "
                             f"got {self.centre_fraction!r}")
        if not 1.0 <= self.width_factor <= 10.0:
            raise ValueError(f"width_factor must be in 1..10 (2: half-widths between half and double), "
                             f"got {self.width_factor!r}")

    def __call__(self, descriptors: BandDescriptors, rng: np.random.Generator) -> BandDescriptors:
        """``descriptors`` with new (min, centre, max) limits (nm) for its reflective bands."""
        wl = descriptors.wavelengths_nm.copy()
        refl = ~descriptors.is_thermal
        n = int(refl.sum())
        lo, centre, hi = wl[refl, 0], wl[refl, 1], wl[refl, 2]
        log_w = np.log(self.width_factor)
        new_centre = centre * (1.0 + rng.uniform(-self.centre_fraction, self.centre_fraction, n))
        # Kept reflective (below the thermal boundary) and above the descriptors' 300 nm floor.
        new_centre = np.clip(new_centre, MIN_WAVELENGTH_NM + 2.0, THERMAL_FROM_NM - 2.0)
        below = (centre - lo) * np.exp(rng.uniform(-log_w, log_w, n))
        above = (hi - centre) * np.exp(rng.uniform(-log_w, log_w, n))
        wl[refl, 0] = np.maximum(new_centre - below, MIN_WAVELENGTH_NM + 1.0)
        wl[refl, 1] = new_centre
        wl[refl, 2] = np.minimum(new_centre + above, THERMAL_FROM_NM - 1.0)
        return BandDescriptors(descriptors.names, wl, descriptors.kinds)
