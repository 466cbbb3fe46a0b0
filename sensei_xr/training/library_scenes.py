"""Clear scenes for any sensor, built from measured spectral libraries (NumPy only).

Labelled clouds are scarce and come from few sensors; clear surfaces are well measured in
the laboratory and the field. :class:`SpectralLibrary` holds the sample data's two
libraries (EarthLib: soils, vegetation, urban materials, dry vegetation, burn scars; bright
surfaces: snow, melting snow, glacier ice, water, salts, playas, bright sands, carbonates,
roofs) and integrates any spectrum over any band's limits. :func:`library_scenes` lays
them out as small clear scenes of any catalogued sensor (a mosaic of materials with a
little texture, seen through a simple atmosphere, thermal bands from a surface
temperature), labelled clear. Bright materials that look like cloud in the visible are
drawn often: they are the hard negatives a cloud mask most needs. Synthetic clouds
(:class:`~sensei_xr.training.synthetic.SyntheticClouds`) are composited over them in
training, so the same scenes also teach cloud over every sensor's bands.

The atmosphere is a first-order approximation, not a radiative-transfer model: top-of-
atmosphere reflectance ``rho_toa = rho_path + T * rho_surface`` with Rayleigh path
reflectance and transmittance scaling as ``lambda^-4`` and strong water-vapour absorption
(1.38 um and 1.88 um windows dark, 940 nm partly), which is what makes a bright surface
dark in a cirrus band, as real ones are.
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from ..bands import BandDescriptors
from ..datasets import LabelledSample, register_dataset

__all__ = ["SpectralLibrary", "library_scenes", "BRIGHT_CLASSES", "LIBRARY_SENSORS"]

#: Bright-surface classes (``material_class``) that look most like cloud in the visible.
BRIGHT_CLASSES = ("snow", "snow_wet_slush", "snow_veg_mix", "frost", "glacier_ice_surface", "salt_mineral",
                  "salt_playa", "carbonate_bright", "sand", "white_artificial", "roof", "soil_bright_arid",
                  "seafoam")
_SNOW_ICE = {"snow", "snow_wet_slush", "snow_veg_mix", "frost", "glacier_ice_surface", "ice"}
_WATER = {"water", "water_turbid", "water_turbid_paste", "water_algae", "seafoam"}
# Water-vapour absorption windows (nm) and the transmittance range inside them.
_VAPOUR = ((1330.0, 1460.0, 0.0, 0.05), (1790.0, 1970.0, 0.0, 0.08), (925.0, 965.0, 0.35, 0.75))


@dataclass
class SpectralLibrary:
    """Reflectance spectra on one wavelength grid, with a kind per spectrum.

    Attributes
    ----------
    wavelength_nm : numpy.ndarray
        (G,) grid, nm.
    reflectance : numpy.ndarray
        (S, G) surface reflectance (fraction), gaps filled along wavelength.
    kind : numpy.ndarray
        (S,) str: ``"snow_ice"``, ``"water"``, ``"bright"`` or ``"surface"``.
    name : numpy.ndarray
        (S,) str.
    """

    wavelength_nm: np.ndarray
    reflectance: np.ndarray
    kind: np.ndarray
    name: np.ndarray

    @classmethod
    def from_sample_data(cls, data_dir: str | PathLike | None = None) -> "SpectralLibrary":
        """Both libraries of the sample data (``spectral_library_earthlib`` and
        ``spectral_library_bright_surfaces``), cleaned: spectra with unphysical values
        (percent units, spikes above 1.5) or failing their quality check are left out."""
        from ..sample_data import data_dir as default_dir

        root = Path(data_dir) if data_dir is not None else default_dir()
        earth = np.load(root / "spectral_library_earthlib" / "earthlib_surfaces_10nm.npz")
        bright = np.load(root / "spectral_library_bright_surfaces" / "bright_surfaces_spectra.npz")
        wl = earth["wavelength_nm"].astype(np.float64)
        if not np.array_equal(wl, bright["wavelength_nm"]):
            raise ValueError("the two spectral libraries are on different wavelength grids")
        spectra, kinds, names = [], [], []
        e = earth["reflectance"].astype(np.float64)
        ok = np.isfinite(e[:, wl >= 400]).all(axis=1) & (np.nanmax(e, axis=1) <= 1.5)
        spectra.append(e[ok])
        kinds += ["surface"] * int(ok.sum())
        names += [str(n) for n in earth["name"][ok]]
        b = bright["reflectance"].astype(np.float64)
        classes = [str(c) for c in bright["material_class"]]
        finite = np.isfinite(b).sum(axis=1) >= 20
        peak = np.where(finite, np.nanmax(np.where(np.isfinite(b), b, -1.0), axis=1), np.inf)
        ok = bright["qc_ok"].astype(bool) & finite & (peak <= 1.5)
        # ECOSTRESS "Ice" is a specular slab (about 0.02 flat): not a snow/ice surface as seen from orbit.
        ok &= np.array([c != "ice" for c in classes])
        spectra.append(b[ok])
        for c, keep in zip(classes, ok):
            if keep:
                kinds.append("snow_ice" if c in _SNOW_ICE else "water" if c in _WATER else
                             "bright" if c in BRIGHT_CLASSES else "surface")
        names += [str(n) for n, keep in zip(bright["name"], ok) if keep]
        refl = np.concatenate(spectra)
        refl = np.stack([_fill_gaps(wl, r) for r in refl])
        return cls(wl, np.clip(refl, 0.0, 1.5).astype(np.float32), np.array(kinds), np.array(names))

    def integrate(self, spectra: np.ndarray, wavelengths_nm: np.ndarray) -> np.ndarray:
        """Band values of spectra: the mean over each band's limits.

        Parameters
        ----------
        spectra : numpy.ndarray
            (..., G) on :attr:`wavelength_nm`.
        wavelengths_nm : numpy.ndarray
            (N, 3) (min, centre, max) of reflective bands, nm. Bands narrower than the
            grid take the value interpolated at their centre; beyond the grid, the last
            grid value.

        Returns
        -------
        numpy.ndarray
            (..., N) float32.
        """
        wl = self.wavelength_nm
        out = np.empty(spectra.shape[:-1] + (len(wavelengths_nm),), np.float32)
        for j, (lo, centre, hi) in enumerate(np.asarray(wavelengths_nm, float)):
            inside = (wl >= lo) & (wl <= hi)
            if inside.sum() >= 2:
                out[..., j] = spectra[..., inside].mean(axis=-1)
            else:
                c = float(np.clip(centre, wl[0], wl[-1]))
                i = int(np.clip(np.searchsorted(wl, c), 1, len(wl) - 1))
                f = (c - wl[i - 1]) / (wl[i] - wl[i - 1])
                out[..., j] = (1 - f) * spectra[..., i - 1] + f * spectra[..., i]
        return out


def _fill_gaps(wl: np.ndarray, r: np.ndarray) -> np.ndarray:
    ok = np.isfinite(r)
    return np.interp(wl, wl[ok], r[ok]) if not ok.all() else r


def _atmosphere(wl: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Path reflectance and two-way transmittance on the grid ``wl`` (nm), one random state."""
    tau_r = rng.uniform(0.10, 0.25) * (wl / 500.0) ** -4.0  # Rayleigh optical depth
    tau_a = rng.uniform(0.02, 0.25) * (wl / 550.0) ** -1.3  # aerosol
    transmittance = np.exp(-(tau_r + tau_a) * rng.uniform(2.0, 3.0))  # two-way, with air mass
    path = rng.uniform(0.25, 0.45) * (1 - np.exp(-(tau_r + 0.5 * tau_a)))
    for lo, hi, tmin, tmax in _VAPOUR:
        inside = (wl >= lo) & (wl <= hi)
        transmittance[inside] *= rng.uniform(tmin, tmax)
        path[inside] *= 0.1
    return path, transmittance


def _smooth_noise(shape: tuple[int, int], rng: np.random.Generator, beta: float) -> np.ndarray:
    h, w = shape
    k = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :])
    k[0, 0] = np.inf
    spec = (rng.normal(size=k.shape) + 1j * rng.normal(size=k.shape)) * k ** (-beta / 2)
    n = np.fft.irfft2(spec, s=(h, w))
    return (n - n.mean()) / (n.std() + 1e-12)


def _mosaic(shape: tuple[int, int], rng: np.random.Generator, cells: int) -> np.ndarray:
    """(H, W) int region ids: Voronoi cells with wobbly (noise-displaced) borders."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    amp = rng.uniform(0.0, 0.08) * min(h, w)
    yy = yy + amp * _smooth_noise(shape, rng, 3.0)
    xx = xx + amp * _smooth_noise(shape, rng, 3.0)
    cy, cx = rng.uniform(0, h, cells), rng.uniform(0, w, cells)
    d = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
    return np.argmin(d, axis=0)


def library_scenes(library: SpectralLibrary, descriptors: BandDescriptors, n: int, size: int = 256,
                   seed: int = 0, bright_fraction: float = 0.4, sensor: str = "",
                   resolution_m: float = 30.0, classes: tuple[str, ...] = ("clear", "cloud")) -> list[LabelledSample]:
    """``n`` clear scenes of one sensor's bands, built from library spectra.

    Parameters
    ----------
    library : SpectralLibrary
    descriptors : BandDescriptors
        The sensor's bands (reflective bands integrated from the spectra; thermal bands
        from a surface temperature).
    n : int
        Scenes to make.
    size : int
        Scene side, pixels.
    seed : int
    bright_fraction : float
        Share of a scene's regions drawn from bright surfaces, snow, ice and water (the
        look-alikes of cloud) rather than from ordinary surfaces.
    sensor : str
        Recorded on the samples.
    resolution_m : float
        Recorded on the samples.
    classes : tuple of str
        The model's classes; every labelled pixel is ``clear``.

    Returns
    -------
    list of LabelledSample
        Named ``library_<sensor>_<i>``, tagged ``{"surface": "library"}``.
    """
    rng = np.random.default_rng([seed, 7])
    reflective = ~descriptors.is_thermal
    wl_refl = descriptors.wavelengths_nm[reflective]
    special = np.flatnonzero(library.kind != "surface")
    ordinary = np.flatnonzero(library.kind == "surface")
    clear = classes.index("clear")
    out = []
    for i in range(n):
        cells = int(rng.integers(3, 40))
        regions = _mosaic((size, size), rng, cells)
        picks = np.where(rng.random(cells) < bright_fraction, rng.choice(special, cells), rng.choice(ordinary, cells))
        # Each region: one spectrum, or a mixture with a second (mixed pixels, e.g. snow and forest).
        second = rng.choice(len(library.reflectance), cells)
        mix = np.where(rng.random(cells) < 0.3, rng.uniform(0.0, 0.5, cells), 0.0)
        spectra = ((1 - mix)[:, None] * library.reflectance[picks] + mix[:, None] * library.reflectance[second])
        spectra = spectra * rng.uniform(0.8, 1.15, (cells, 1))  # illumination, slope
        path, trans = _atmosphere(library.wavelength_nm, rng)
        toa = path[None] + trans[None] * spectra  # (cells, G)
        bands = library.integrate(toa, wl_refl)  # (cells, Nr)
        texture = 1.0 + rng.uniform(0.02, 0.15) * _smooth_noise((size, size), rng, rng.uniform(1.5, 3.0))
        image = np.empty((len(descriptors), size, size), np.float32)
        image[reflective] = np.clip(bands.T[:, regions] * texture[None], 0.0, 1.6)
        if (~reflective).any():
            kind = library.kind[picks]
            t = np.where(kind == "snow_ice", rng.uniform(235.0, 273.0, cells),
                         np.where(kind == "water", rng.uniform(273.0, 302.0, cells), rng.uniform(265.0, 325.0, cells)))
            field = t[regions] + rng.uniform(0.5, 3.0) * _smooth_noise((size, size), rng, 2.5)
            for j in np.flatnonzero(~reflective):
                image[j] = field + rng.normal(0.0, 0.7)  # emissivity differs a little by band
        labels = np.full((size, size), clear, np.int64)
        out.append(LabelledSample(image, descriptors, labels, np.zeros((size, size), bool), sensor,
                                  resolution_m, f"library_{sensor or 'sensor'}_{i}", {"surface": "library"}))
    return out


#: Catalogued sensors the ``library_scenes`` dataset makes scenes for by default.
LIBRARY_SENSORS = ("sentinel2_msi", "landsat8_oli_tirs", "landsat9_oli2_tirs2", "landsat7_etm", "landsat45_tm",
                   "hls_s30", "hls_l30", "planetscope_4band", "planetscope_8band", "perusat1", "modis",
                   "sentinel3_olci", "sentinel3_slstr")


@register_dataset("library_scenes")
def _load_library_scenes(root: Path | None, split: str | None, classes, *, sensors=LIBRARY_SENSORS,
                         per_sensor: int = 16, size: int = 128, seed: int = 0,
                         bright_fraction: float = 0.4) -> list[LabelledSample]:
    """Clear library scenes for each of ``sensors`` (all their bands), ``per_sensor`` each.

    ``root``: the sample data folder holding both libraries (default: the sample data);
    ``split`` is ignored (synthetic scenes have none).
    """
    from .. import catalogs

    library = SpectralLibrary.from_sample_data(root)
    out = []
    for k, name in enumerate(sensors):
        sensor = catalogs.get_sensor(name)
        seen, names = set(), []
        for b in sensor.bands:  # e.g. SLSTR's fire channels repeat S7 and S8's limits
            if tuple(b.wavelengths_nm) not in seen:
                seen.add(tuple(b.wavelengths_nm))
                names.append(b.name)
        desc = BandDescriptors.from_sensor(sensor.id, names)
        out += library_scenes(library, desc, per_sensor, size, seed=seed * 1000 + k,
                              bright_fraction=bright_fraction, sensor=sensor.id,
                              resolution_m=float(min(b.gsd_m for b in sensor.bands if b.gsd_m) if any(
                                  b.gsd_m for b in sensor.bands) else 30.0), classes=tuple(classes))
    return out
