"""Synthetic clouds composited over real imagery, in wavelength space (torch-free, NumPy only).

Labelled cloud data is scarce; clear imagery is not. :class:`SyntheticClouds` lays a cloud
over a real patch of any sensor, because everything it needs comes from the bands'
wavelengths:

* **Structure** - a cloud optical-thickness field from multi-octave (fractional Brownian)
  noise: a power-law spectrum ``|k|^-beta`` with ``beta`` drawn per cloud, so low ``beta``
  gives broken cumulus fields and high ``beta`` smooth stratus or veils.
* **Opacity** - ``alpha = alpha_max * (1 - exp(-tau))``; a thin cloud has a low
  ``alpha_max`` (a veil the surface shows through), a thick one a high ``alpha_max``.
* **Spectrum** - the reflectance of a fully opaque cloud as a function of wavelength: bright
  and nearly flat from 400 nm through the NIR, lower at 1.6 um and lower again at 2.2 um
  (liquid water and, more strongly, ice absorb there); in the 1.38 um water-vapour band
  bright only for high (ice) cloud, which sits above the absorbing vapour, and dark for low
  cloud; cold in the thermal infrared (cloud-top temperature below the surface's).
* **Compositing** - reflective bands ``(1 - alpha) * surface + alpha * cloud``; thermal
  bands (brightness temperature, K) the same mix of surface and cloud-top temperature.
* **Label** - cloud where ``alpha >= label_threshold``; pixels with a faint synthetic veil
  (``ignore_below <= alpha < label_threshold``) are ignored by the loss because a human
  labeller could call them either way; elsewhere the real label stays.

The anchor values below are typical top-of-atmosphere magnitudes (e.g. Kokhanovsky, *Cloud
Optics*, 2006; the Sentinel-2 and Landsat 8 cirrus-band literature), randomised per cloud;
they are a generator's priors, not a radiative-transfer model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..bands import BandDescriptors
from ..datasets import IGNORE_INDEX

__all__ = ["SyntheticClouds", "cloud_opacity_field", "cumulus_field", "cloud_reflectance", "synthetic_clouds_for"]

# Opaque-cloud reflectance relative to its visible brightness, at band centres (nm).
# Liquid-water cloud and ice cloud differ mostly beyond 1.2 um.
_WATER_CLOUD = ((400, 1.00), (700, 0.98), (1000, 0.95), (1250, 0.88), (1600, 0.72),
                (2200, 0.48), (2500, 0.40), (3000, 0.20))
_ICE_CLOUD = ((400, 1.00), (700, 0.97), (1000, 0.92), (1250, 0.78), (1600, 0.42),
              (2200, 0.24), (2500, 0.18), (3000, 0.08))
# Strong water-vapour absorption windows (nm): low cloud is dark there, high cloud bright.
_VAPOUR_WINDOWS = ((1330.0, 1450.0), (1800.0, 1960.0))


def cloud_opacity_field(shape: tuple[int, int], rng: np.random.Generator, coverage: float,
                        beta: float, sharpness: float, alpha_max: float) -> np.ndarray:
    """A cloud opacity field (0..1) with a power-law spatial spectrum.

    Parameters
    ----------
    shape : (int, int)
        Height and width, pixels.
    rng : numpy.random.Generator
    coverage : float
        Fraction of the field with any cloud (0..1).
    beta : float
        Spectral slope of the noise (about 2 broken cumulus .. 4 smooth stratus).
    sharpness : float
        Optical-thickness gain above the coverage threshold (higher: harder edges).
    alpha_max : float
        Opacity of the thickest cloud (thin veil ~0.3, thick cloud ~1).

    Returns
    -------
    numpy.ndarray
        (H, W) float32 opacity.
    """
    h, w = shape
    # Synthesise on a larger periodic canvas and crop, so the wrap-around of the FFT does
    # not show at the patch edges.
    ph, pw = 2 * h, 2 * w
    ky = np.fft.fftfreq(ph)[:, None]
    kx = np.fft.rfftfreq(pw)[None, :]
    k = np.hypot(ky, kx)
    k[0, 0] = np.inf  # no DC term: zero mean
    spectrum = (rng.normal(size=k.shape) + 1j * rng.normal(size=k.shape)) * k ** (-beta / 2)
    noise = np.fft.irfft2(spectrum, s=(ph, pw))[:h, :w]
    noise = (noise - noise.mean()) / (noise.std() + 1e-12)
    threshold = np.quantile(noise, 1.0 - coverage) if coverage > 0 else np.inf
    tau = np.clip(noise - threshold, 0, None) * sharpness
    return (alpha_max * (1.0 - np.exp(-tau))).astype(np.float32)


def cumulus_field(shape: tuple[int, int], rng: np.random.Generator, coverage: float, cell_px: float,
                  alpha_max: float) -> np.ndarray:
    """Opacity of a field of small cumulus cells (0..1): blurred random seeds, thresholded.

    Parameters
    ----------
    shape : (int, int)
        Height and width, pixels.
    rng : numpy.random.Generator
    coverage : float
        Fraction of the field covered by cells (0..1).
    cell_px : float
        Typical cell radius, pixels (about 1-6: cells of a few hundred metres at 30 m).
    alpha_max : float
        Opacity of a cell's core.

    Returns
    -------
    numpy.ndarray
        (H, W) float32 opacity.
    """
    h, w = shape
    seeds = np.zeros((h, w))
    n = max(1, int(coverage * h * w / (np.pi * cell_px ** 2)))
    seeds[rng.integers(0, h, n), rng.integers(0, w, n)] = rng.lognormal(0.0, 0.5, n)
    # Gaussian blur by FFT (periodic; cells wrap at the edges, harmless for a texture).
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    field = np.fft.irfft2(np.fft.rfft2(seeds) * np.exp(-2 * (np.pi * cell_px) ** 2 * (ky ** 2 + kx ** 2)), s=(h, w))
    threshold = np.quantile(field, 1.0 - coverage)
    tau = np.clip(field - threshold, 0, None) / (field.max() - threshold + 1e-12) * rng.uniform(3.0, 8.0)
    return (alpha_max * (1.0 - np.exp(-tau))).astype(np.float32)


def cloud_reflectance(descriptors: BandDescriptors, rng: np.random.Generator, high: bool,
                      brightness: float, swir_scale: float = 1.0) -> np.ndarray:
    """Reflectance of an opaque cloud in each reflective band (thermal entries are NaN).

    Parameters
    ----------
    descriptors : BandDescriptors
        The bands (wavelengths in nm).
    rng : numpy.random.Generator
    high : bool
        Ice cloud above the water vapour (bright at 1.38 um, darker at 1.6 / 2.2 um).
    brightness : float
        Visible reflectance of the opaque cloud (about 0.4..0.9).
    swir_scale : float
        Factor on the cloud's reflectance beyond 1.2 um relative to the visible (1: the
        anchors above). Large ice crystals at the top of deep convection absorb more: a
        thick ice-topped cloud of the Biome data (Urban_01_0609) reads 0.15-0.18 of its
        visible brightness at 1.6 um, where the ice anchor gives 0.42 (scale about 0.4).

    Returns
    -------
    numpy.ndarray
        (N,) float32.
    """
    anchors = np.array(_ICE_CLOUD if high else _WATER_CLOUD)
    centre = descriptors.wavelengths_nm[:, 1]
    # Per-cloud spectral variability: each anchor jittered a little, shape kept.
    jitter = 1.0 + rng.uniform(-0.08, 0.08, len(anchors))
    values = anchors[:, 1] * jitter
    if swir_scale != 1.0:
        values = np.where(anchors[:, 0] > 1200.0, values * swir_scale, values)
    relative = np.interp(centre, anchors[:, 0], values)
    out = brightness * relative
    in_vapour = np.zeros(len(centre), bool)
    for lo, hi in _VAPOUR_WINDOWS:
        in_vapour |= (centre >= lo) & (centre <= hi)
    vapour_level = rng.uniform(0.35, 0.75) if high else rng.uniform(0.0, 0.04)
    out = np.where(in_vapour, brightness * vapour_level, out)
    out = np.where(descriptors.is_thermal, np.nan, out)
    return out.astype(np.float32)


@dataclass(frozen=True)
class SyntheticClouds:
    """Composite a random synthetic cloud over a real patch, for any sensor.

    Call it as ``image, labels = synth(image, labels, descriptors, rng)`` with ``image``
    (N, H, W) float32 reflectance (thermal bands: brightness temperature, K) and ``labels``
    (H, W) int64 class indices (``IGNORE_INDEX`` at no data).

    Attributes
    ----------
    probability : float
        Chance that a patch gets a cloud at all.
    coverage : (float, float)
        Range of the cloud's area fraction.
    thin_probability : float
        Chance that the cloud is a thin veil (``alpha_max`` 0.25..0.6) rather than thick
        (0.75..1).
    high_probability : float
        Chance that the cloud is high ice cloud (bright at 1.38 um, very cold).
    cumulus_probability : float
        Chance that the cloud is a field of small cumulus cells (:func:`cumulus_field`,
        low water cloud, radius 1-6 px) rather than a continuous deck or veil.
    overcast_probability : float
        Chance that the cloud is an overcast deck over the whole patch
        (:meth:`_overcast_opacity`: opacity 0.85-1 everywhere, so every pixel is labelled
        cloud, and a gently varying brightness) rather than a cloud over part of it. The
        partial clouds cover at most ``coverage[1]`` of a patch, so without this a network
        meets cloud with no ground in view only in the real patches that are overcast.
    overcast_brightness : (float, float)
        Range of an overcast deck's visible reflectance: a thick deck's top is 0.3-0.9
        bright with its optical thickness and the sun's elevation, darker than the partial
        clouds' 0.45-0.9.
    haze_probability : float
        Chance that a patch (with or without a cloud) is seen through haze: a smooth,
        faint (opacity 0.03-0.15) bright veil over all of it that changes no label, since
        haze is not cloud to a labeller; it keeps bright, hazy clear ground from looking
        like the only thing that is not cloud.
    ice_swir : (float, float)
        Range of ``swir_scale`` (:func:`cloud_reflectance`) drawn for a high ice cloud;
        (1, 1), the default, draws nothing (recipes before it train the same).
    beta : (float, float)
        Range of the noise's spectral slope.
    label_threshold : float
        Opacity from which a pixel is labelled cloud.
    ignore_below : float
        Opacity from which (up to ``label_threshold``) a pixel is ignored by the loss.
    cloud_class : int
        Index of the cloud class in the model's classes (of thick cloud when
        ``thin_class`` is set).
    thin_class : int, optional
        Index of a thin-cloud class (models with ``thin_cloud`` and ``thick_cloud``, as the
        Biome labels have them): synthetic pixels of opacity ``label_threshold`` up to
        ``thick_from`` get it, denser ones ``cloud_class``. None: one cloud class.
    thick_from : float
        Opacity from which a synthetic pixel is thick cloud when ``thin_class`` is set.
    """

    probability: float = 0.5
    coverage: tuple[float, float] = (0.05, 0.8)
    thin_probability: float = 0.3
    high_probability: float = 0.3
    cumulus_probability: float = 0.0
    overcast_probability: float = 0.0
    overcast_brightness: tuple[float, float] = (0.3, 0.9)
    haze_probability: float = 0.0
    ice_swir: tuple[float, float] = (1.0, 1.0)
    beta: tuple[float, float] = (2.0, 4.0)
    label_threshold: float = 0.25
    ignore_below: float = 0.1
    cloud_class: int = 1
    thin_class: int | None = None
    thick_from: float = 0.5

    def __post_init__(self) -> None:
        for name in ("probability", "thin_probability", "high_probability", "cumulus_probability",
                     "overcast_probability", "haze_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in 0..1, not {getattr(self, name)}")
        lo, hi = self.coverage
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"coverage must be a range within (0, 1], not {self.coverage}")
        if not 0 <= self.ignore_below <= self.label_threshold <= 1:
            raise ValueError("need 0 <= ignore_below <= label_threshold <= 1")
        if self.thin_class is not None and not (self.label_threshold <= self.thick_from <= 1
                                                and self.thin_class != self.cloud_class):
            raise ValueError("a thin_class needs label_threshold <= thick_from <= 1 and a class of its own, "
                             f"not thin_class={self.thin_class}, cloud_class={self.cloud_class}, "
                             f"thick_from={self.thick_from}")
        if not 0 < self.overcast_brightness[0] <= self.overcast_brightness[1] <= 1.5:
            raise ValueError(f"overcast_brightness must be a range of reflectance (low, high) within (0, 1.5], "
                             f"not {self.overcast_brightness}")
        if not 0 < self.ice_swir[0] <= self.ice_swir[1]:
            raise ValueError(f"ice_swir must be a range of positive factors (low, high), not {self.ice_swir}")

    def __call__(self, image: np.ndarray, labels: np.ndarray, descriptors: BandDescriptors,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if image.ndim != 3 or image.shape[0] != len(descriptors) or image.shape[1:] != labels.shape:
            raise ValueError(f"image {image.shape} / labels {labels.shape} / {len(descriptors)} "
                             "descriptors do not match: need (N, H, W), (H, W) and N descriptors")
        if self.haze_probability and rng.random() < self.haze_probability:
            image = self._haze(image, descriptors, rng)
        if rng.random() >= self.probability:
            return image, labels
        thin = rng.random() < self.thin_probability
        high = rng.random() < self.high_probability
        # Each option draws only when it is on, so recipes without it train as before.
        overcast = bool(self.overcast_probability) and rng.random() < self.overcast_probability
        shading = None
        if overcast:
            alpha, shading = self._overcast_opacity(labels.shape, rng)
        elif self.cumulus_probability and rng.random() < self.cumulus_probability:
            high = False  # fair-weather cumulus is low water cloud
            alpha = cumulus_field(labels.shape, rng, coverage=rng.uniform(0.03, 0.3),
                                  cell_px=rng.uniform(1.0, 6.0), alpha_max=rng.uniform(0.6, 1.0))
        else:
            alpha = cloud_opacity_field(
                labels.shape, rng,
                coverage=rng.uniform(*self.coverage),
                beta=rng.uniform(*self.beta),
                sharpness=rng.uniform(0.5, 4.0),
                alpha_max=rng.uniform(0.25, 0.6) if thin else rng.uniform(0.75, 1.0),
            )
        brightness = rng.uniform(*self.overcast_brightness) if overcast else rng.uniform(0.45, 0.9)
        swir_scale = rng.uniform(*self.ice_swir) if high and self.ice_swir != (1.0, 1.0) else 1.0
        cloud = cloud_reflectance(descriptors, rng, high, brightness=brightness, swir_scale=swir_scale)
        out = np.array(image, dtype=np.float32)
        reflective = ~descriptors.is_thermal
        top = cloud[reflective, None, None] if shading is None else cloud[reflective, None, None] * shading
        out[reflective] = (1 - alpha) * out[reflective] + alpha * top
        if (~reflective).any():
            surface_t = np.nanmedian(out[~reflective]) if np.isfinite(out[~reflective]).any() else 285.0
            top_t = rng.uniform(205.0, 240.0) if high else surface_t - rng.uniform(5.0, 30.0)
            out[~reflective] = (1 - alpha) * out[~reflective] + alpha * np.float32(top_t)
        new_labels = np.array(labels, copy=True)
        keep = new_labels != IGNORE_INDEX  # no data stays no data
        cloud_classes = [self.cloud_class] if self.thin_class is None else [self.thin_class, self.cloud_class]
        real_cloud = np.isin(new_labels, cloud_classes)
        if self.thin_class is None:
            new_labels[keep & (alpha >= self.label_threshold)] = self.cloud_class
        else:
            # A veil over real thick cloud leaves it thick; over anything else the veil's
            # opacity decides thin or thick.
            thin = keep & (alpha >= self.label_threshold) & (alpha < self.thick_from) & (new_labels != self.cloud_class)
            new_labels[thin] = self.thin_class
            new_labels[keep & (alpha >= self.thick_from)] = self.cloud_class
        faint = keep & (alpha >= self.ignore_below) & (alpha < self.label_threshold)
        # A faint veil over clear ground is ambiguous; over real cloud it is still cloud.
        new_labels[faint & ~real_cloud] = IGNORE_INDEX
        return out, new_labels

    @staticmethod
    def _overcast_opacity(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """An overcast deck: (opacity, shading), each (H, W) float32.

        Opacity ``floor + (1 - floor) * f`` with ``floor`` drawn in 0.85-1 and ``f`` a smooth
        noise field scaled to 0-1, so the ground shows through by at most 15 % and no
        pixel is less than cloud; shading ``1 + s (g - mean g)`` with ``s`` drawn in 0-0.2
        and ``g`` another smooth field in 0-1: the deck's own brightness varies slowly, as
        a real deck's top does with its thickness, by at most ``s`` (20 %) of it either way.
        """
        fields = []
        for _ in range(2):
            f = cloud_opacity_field(shape, rng, coverage=1.0, beta=rng.uniform(3.0, 4.5), sharpness=1.0,
                                    alpha_max=1.0)
            lo, hi = float(f.min()), float(f.max())
            fields.append((f - lo) / max(hi - lo, 1e-6))
        floor = rng.uniform(0.85, 1.0)
        alpha = floor + (1.0 - floor) * fields[0]
        shading = 1.0 + rng.uniform(0.0, 0.2) * (fields[1] - fields[1].mean())
        return alpha.astype(np.float32), shading.astype(np.float32)

    @staticmethod
    def _haze(image: np.ndarray, descriptors: BandDescriptors, rng: np.random.Generator) -> np.ndarray:
        """A faint, smooth, bright veil over the whole patch (reflective bands only)."""
        h, w = image.shape[1:]
        alpha = cloud_opacity_field((h, w), rng, coverage=1.0, beta=4.0, sharpness=1.0, alpha_max=1.0)
        alpha = rng.uniform(0.03, 0.15) * alpha / max(float(alpha.max()), 1e-6)
        # Haze scatters blue most; at 1.6-2.2 um it is nearly transparent.
        centre = descriptors.wavelengths_nm[:, 1]
        veil = rng.uniform(0.3, 0.6) * np.clip((centre / 500.0) ** -1.5, 0.0, 1.5)
        out = np.array(image, dtype=np.float32)
        reflective = ~descriptors.is_thermal
        out[reflective] = (1 - alpha) * out[reflective] + alpha * veil[reflective, None, None].astype(np.float32)
        return out


def synthetic_clouds_for(options: dict, classes: Sequence[str]) -> SyntheticClouds:
    """The generator a training config's ``synthetic_clouds`` table asks for, labelling in a
    model's ``classes``: its ``cloud`` class, or with ``thin_cloud`` and ``thick_cloud``
    (the Biome labels' two) veils thin up to ``thick_from`` and thick above; ``cloud_class``
    in ``options`` names another class."""
    classes = tuple(classes)
    if "cloud" in classes:
        implied = {"cloud_class": classes.index("cloud")}
    elif {"thin_cloud", "thick_cloud"} <= set(classes):
        implied = {"cloud_class": classes.index("thick_cloud"), "thin_class": classes.index("thin_cloud")}
    elif "cloud_class" in options:
        implied = {}
    else:
        raise ValueError(f"synthetic_clouds needs a 'cloud' class, 'thin_cloud' and 'thick_cloud', or an explicit "
                         f"cloud_class; classes are {classes}")
    return SyntheticClouds(**{**implied, **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}})
