"""Band descriptors: what the model knows about each band is its wavelengths.

A scene is a DataArray with a ``band`` dimension. Each band is described by its minimum,
centre and maximum wavelength in nanometres and its kind (``"reflective"`` or
``"thermal"``). Descriptors are read from the DataArray itself, in this order of
precedence, band by band:

1. explicit coordinates on the band dimension, in nm (the canonical names of this
   library): ``wavelength_min_nm``, ``wavelength_center_nm``, ``wavelength_max_nm``,
   optionally ``band_kind``;
2. stackstac's coordinates ``center_wavelength`` and ``full_width_half_max``, in
   micrometres (STAC ``eo:bands`` units): min = centre - FWHM / 2, max = centre + FWHM / 2;
3. the band's name (or an alias such as a STAC ``common_name`` or asset key) looked up in
   the sensor catalog given by ``sensor=`` or the DataArray's ``attrs["sensor"]``.

Normalisation follows the SEnSeI paper: ``lambda_norm = log10(lambda_nm - 300) - 2`` for
each of min, centre and max. Thermal bands are given to the model as brightness
temperature (BT, kelvin) scaled by ``(BT - BT_MIN_K) / (BT_95_K - BT_MIN_K)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import catalogs
from .errors import BandError

__all__ = [
    "BandError",
    "BandDescriptors",
    "WAVELENGTH_MIN",
    "WAVELENGTH_CENTER",
    "WAVELENGTH_MAX",
    "BAND_KIND",
    "MIN_WAVELENGTH_NM",
    "MAX_WAVELENGTH_NM",
    "BT_MIN_K",
    "BT_95_K",
    "THERMAL_FROM_NM",
    "normalise_wavelengths",
    "normalise_brightness_temperature",
    "band_descriptors",
    "attach_wavelengths",
    "check_band_values",
    "REFLECTANCE_LIMITS",
    "REFLECTANCE_PLAUSIBLE",
    "BT_LIMITS_K",
    "to_model_input",
]

#: Canonical coordinate names on the band dimension (nanometres).
WAVELENGTH_MIN = "wavelength_min_nm"
WAVELENGTH_CENTER = "wavelength_center_nm"
WAVELENGTH_MAX = "wavelength_max_nm"
#: Canonical coordinate holding "reflective" or "thermal" per band.
BAND_KIND = "band_kind"

#: Valid wavelength range in nm. The paper's normalisation log10(nm - 300) is undefined at
#: and below 300 nm; 20 um covers every thermal band of the sensors we know.
MIN_WAVELENGTH_NM = 300.0
MAX_WAVELENGTH_NM = 20000.0

#: Brightness-temperature scaling for thermal bands (paper eq. 4), kelvin. BT_MIN_K is
#: below the coldest cloud tops met in practice (the Landsat 8 Biome training patches
#: bottom out at 218 K); BT_95_K is the 95th percentile of those patches' B10 BT
#: (295 K), rounded up. Warm surfaces therefore map slightly above 1, like bright
#: reflectances do.
BT_MIN_K = 190.0
BT_95_K = 300.0

#: Bands centred above this wavelength (nm) without an explicit kind are thermal:
#: beyond ~3.5 um the signal of Earth scenes is dominated by emission.
THERMAL_FROM_NM = 3500.0

# stackstac writes these coordinates from STAC eo:bands (micrometres).
_STACKSTAC_CENTER = "center_wavelength"
_STACKSTAC_FWHM = "full_width_half_max"


@dataclass(frozen=True)
class BandDescriptors:
    """Names, wavelengths and kinds of a scene's bands, in the scene's band order.

    Attributes
    ----------
    names : tuple of str
        Band names as on the DataArray's band coordinate.
    wavelengths_nm : numpy.ndarray
        (N, 3) float64 array of (min, centre, max) wavelength in nm.
    kinds : tuple of str
        ``"reflective"`` or ``"thermal"`` per band.
    """

    names: tuple[str, ...]
    wavelengths_nm: np.ndarray
    kinds: tuple[str, ...]

    def __post_init__(self) -> None:
        wl = np.asarray(self.wavelengths_nm, dtype=np.float64)
        if wl.ndim != 2 or wl.shape[1] != 3 or wl.shape[0] != len(self.names):
            raise BandError(
                f"wavelengths_nm must have shape (N, 3) with N = {len(self.names)} bands; "
                f"got {wl.shape}"
            )
        if len(self.kinds) != len(self.names):
            raise BandError("one kind per band is needed")
        object.__setattr__(self, "wavelengths_nm", wl)
        _validate(self.names, wl, self.kinds)

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_sensor(cls, sensor: str, names: Sequence[str] | None = None) -> "BandDescriptors":
        """Descriptors of a catalog sensor's bands (all, or ``names`` in that order).

        Parameters
        ----------
        sensor : str
            Catalog id, e.g. ``"landsat8_oli_tirs"`` (see :func:`sensei_xr.catalogs.list_sensors`).
        names : sequence of str, optional
            Band names or aliases; the catalog's band names are kept.
        """
        sensor_obj = catalogs.get_sensor(sensor)
        bands = [sensor_obj.band(n) for n in (sensor_obj.band_names if names is None else names)]
        return cls(tuple(b.name for b in bands), np.array([b.wavelengths_nm for b in bands]),
                   tuple(b.kind for b in bands))

    @property
    def is_thermal(self) -> np.ndarray:
        """Boolean (N,) array, True for thermal bands."""
        return np.array([k == "thermal" for k in self.kinds], dtype=bool)

    def normalised(self) -> np.ndarray:
        """(N, 3) float32 descriptors as the model takes them: log10(nm - 300) - 2."""
        return normalise_wavelengths(self.wavelengths_nm).astype(np.float32)

    @property
    def key(self) -> tuple:
        """Hashable identity of the band set (wavelengths to 0.01 nm, kinds), for caches."""
        return tuple(
            (round(float(a), 2), round(float(b), 2), round(float(c), 2), k)
            for (a, b, c), k in zip(self.wavelengths_nm, self.kinds)
        )

    def select(self, names: Sequence[str]) -> "BandDescriptors":
        """The descriptors of ``names``, in that order."""
        index = {n: i for i, n in enumerate(self.names)}
        missing = [n for n in names if n not in index]
        if missing:
            raise BandError(f"bands {missing} are not in this scene; it has {list(self.names)}")
        idx = [index[n] for n in names]
        return BandDescriptors(
            tuple(self.names[i] for i in idx),
            self.wavelengths_nm[idx],
            tuple(self.kinds[i] for i in idx),
        )


def normalise_wavelengths(wavelengths_nm: np.ndarray | Sequence[float]) -> np.ndarray:
    """Normalise wavelengths as the SEnSeI paper: ``log10(lambda_nm - 300) - 2``.

    Parameters
    ----------
    wavelengths_nm : array-like
        Wavelengths in nm, each within 300 nm (exclusive) to 20 um.

    Returns
    -------
    numpy.ndarray
        Normalised values, same shape (400 nm -> 0, 1300 nm -> 1, 10.3 um -> 2).
    """
    wl = np.asarray(wavelengths_nm, dtype=np.float64)
    bad = ~((wl > MIN_WAVELENGTH_NM) & (wl <= MAX_WAVELENGTH_NM))
    if bad.any():
        raise BandError(
            f"wavelength {wl[bad].ravel()[0]!r} nm is outside {MIN_WAVELENGTH_NM:g} nm - "
            f"{MAX_WAVELENGTH_NM:g} nm; give wavelengths in nm (micrometres x 1000)"
        )
    return np.log10(wl - 300.0) - 2.0


def normalise_brightness_temperature(bt_kelvin: np.ndarray) -> np.ndarray:
    """Scale brightness temperature (kelvin) for the model: (BT - BT_MIN_K) / (BT_95_K - BT_MIN_K)."""
    return (np.asarray(bt_kelvin) - BT_MIN_K) / (BT_95_K - BT_MIN_K)


def _validate(names: Sequence[str], wl: np.ndarray, kinds: Sequence[str]) -> None:
    for name, (lo, mid, hi), kind in zip(names, wl, kinds):
        if not np.all(np.isfinite([lo, mid, hi])):
            raise BandError(f"band {name!r} has a missing wavelength ({lo}, {mid}, {hi}) nm")
        for v in (lo, mid, hi):
            if not (MIN_WAVELENGTH_NM < v <= MAX_WAVELENGTH_NM):
                hint = (
                    " (it looks like micrometres: multiply by 1000)"
                    if 0.3 < v <= 20.0
                    else ""
                )
                raise BandError(
                    f"band {name!r}: wavelength {v:g} nm is outside "
                    f"{MIN_WAVELENGTH_NM:g}-{MAX_WAVELENGTH_NM:g} nm{hint}"
                )
        if not lo <= mid <= hi or lo == hi:
            raise BandError(
                f"band {name!r}: need min <= centre <= max and min < max, got "
                f"({lo:g}, {mid:g}, {hi:g}) nm"
            )
        if kind not in ("reflective", "thermal"):
            raise BandError(f"band {name!r}: kind must be 'reflective' or 'thermal', got {kind!r}")
    seen_names: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen_names:
            raise BandError(
                f"band {name!r} appears twice (positions {seen_names[name]} and {i}); "
                "drop the duplicate, e.g. da.drop_duplicates('band')"
            )
        seen_names[name] = i
    rounded = [tuple(np.round(r, 3)) for r in wl]
    for i in range(len(rounded)):
        for j in range(i):
            if rounded[i] == rounded[j]:
                raise BandError(
                    f"bands {names[j]!r} and {names[i]!r} have identical wavelengths "
                    f"{rounded[i]} nm: the same band twice; select one of them with bands=..."
                )


def _band_dim(da, band_dim: str) -> str:
    if band_dim not in da.dims:
        raise BandError(
            f"the DataArray has no {band_dim!r} dimension (dims: {tuple(da.dims)}); "
            f"rename the spectral dimension, e.g. da.rename({{'bands': 'band'}}), or for a "
            "single-band image da.expand_dims(band=['B04'])"
        )
    if da.sizes[band_dim] == 0:
        raise BandError(f"the {band_dim!r} dimension has size 0: there are no bands to describe")
    return band_dim


def _coord_values(da, name: str, band_dim: str) -> np.ndarray | None:
    if name not in da.coords:
        return None
    coord = da.coords[name]
    if coord.dims == ():  # scalar coordinate: same for all bands
        return np.full(da.sizes[band_dim], coord.values.item(), dtype=object)
    if coord.dims != (band_dim,):
        return None
    return np.asarray(coord.values, dtype=object)


def _as_float(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def band_descriptors(
    da,
    sensor: str | None = None,
    band_dim: str = "band",
) -> BandDescriptors:
    """Describe each band of a DataArray by its wavelengths and kind.

    Parameters
    ----------
    da : xarray.DataArray
        Scene with a band dimension. Wavelengths come from its band coordinates (canonical
        nm coordinates, or stackstac's micrometre coordinates) or from band names looked up
        in a sensor catalog.
    sensor : str, optional
        Catalog sensor id or alias (see :func:`sensei_xr.catalogs.list_sensors`) used for
        bands without wavelength coordinates. Defaults to ``da.attrs["sensor"]``.
    band_dim : str
        Name of the band dimension.

    Returns
    -------
    BandDescriptors

    Raises
    ------
    BandError
        If a band has no wavelength and no name the catalog knows, if wavelengths are out
        of range, or if a band appears twice.
    """
    band_dim = _band_dim(da, band_dim)
    n = da.sizes[band_dim]
    if band_dim in da.coords:
        names = [str(v) for v in np.asarray(da.coords[band_dim].values).tolist()]
    else:
        names = [f"band_{i}" for i in range(n)]

    sensor = sensor if sensor is not None else da.attrs.get("sensor")
    sensor_obj = catalogs.get_sensor(sensor) if sensor else None

    canon = [_coord_values(da, c, band_dim) for c in (WAVELENGTH_MIN, WAVELENGTH_CENTER, WAVELENGTH_MAX)]
    kind_coord = _coord_values(da, BAND_KIND, band_dim)
    ss_center = _coord_values(da, _STACKSTAC_CENTER, band_dim)
    ss_fwhm = _coord_values(da, _STACKSTAC_FWHM, band_dim)
    common = _coord_values(da, "common_name", band_dim)

    wavelengths = np.full((n, 3), np.nan)
    kinds: list[str] = []
    for i, name in enumerate(names):
        kind = None
        cat_band = None
        if all(c is not None for c in canon):
            wavelengths[i] = [_as_float(c[i]) for c in canon]
        if np.isnan(wavelengths[i]).any() and ss_center is not None:
            c_um = _as_float(ss_center[i])
            w_um = _as_float(ss_fwhm[i]) if ss_fwhm is not None else math.nan
            if np.isfinite(c_um) and np.isfinite(w_um) and w_um > 0:
                wavelengths[i] = [1000 * (c_um - w_um / 2), 1000 * c_um, 1000 * (c_um + w_um / 2)]
        if sensor_obj is not None:
            for candidate in (name, common[i] if common is not None else None):
                if candidate is None or not isinstance(candidate, str):
                    continue
                try:
                    cat_band = sensor_obj.band(candidate)
                    break
                except catalogs.UnknownBandError:
                    continue
        if np.isnan(wavelengths[i]).any():
            if cat_band is None:
                raise _no_wavelength_error(name, sensor_obj)
            wavelengths[i] = cat_band.wavelengths_nm
        if kind_coord is not None and isinstance(kind_coord[i], str) and kind_coord[i]:
            kind = kind_coord[i]
        elif cat_band is not None:
            kind = cat_band.kind
        else:
            kind = "thermal" if wavelengths[i, 1] >= THERMAL_FROM_NM else "reflective"
        kinds.append(kind)
    return BandDescriptors(tuple(names), wavelengths, tuple(kinds))


def _no_wavelength_error(name: str, sensor_obj) -> BandError:
    if sensor_obj is None:
        return BandError(
            f"band {name!r} has no wavelength: add coordinates {WAVELENGTH_MIN}, "
            f"{WAVELENGTH_CENTER}, {WAVELENGTH_MAX} (nm) on the band dimension, or pass "
            f"sensor=... (one of {catalogs.list_sensors()}) so band names are looked up, "
            "e.g. sensei_xr.attach_wavelengths(da, 'sentinel2_msi')"
        )
    return BandError(
        f"band {name!r} is not a band of sensor {sensor_obj.id!r} (known names: "
        f"{sensor_obj.band_names}); rename it or give its wavelengths as coordinates"
    )


def attach_wavelengths(da, sensor: str, band_dim: str = "band"):
    """Attach catalog wavelengths to a DataArray whose bands are named.

    Parameters
    ----------
    da : xarray.DataArray
        Scene whose band coordinate holds band names or aliases of ``sensor`` (e.g.
        ``"B04"``, ``"red"`` or ``"nir08"``).
    sensor : str
        Catalog sensor id or alias.
    band_dim : str
        Name of the band dimension.

    Returns
    -------
    xarray.DataArray
        The same data (still lazy) with coordinates ``wavelength_min_nm``,
        ``wavelength_center_nm``, ``wavelength_max_nm`` (nm), ``band_kind`` and
        ``common_name`` on the band dimension and ``attrs["sensor"]`` set.
    """
    band_dim = _band_dim(da, band_dim)
    sensor_obj = catalogs.get_sensor(sensor)
    if band_dim not in da.coords:
        raise BandError(
            f"the {band_dim!r} dimension has no coordinate of band names; assign one, e.g. "
            f"da.assign_coords({band_dim}={sensor_obj.band_names[: da.sizes[band_dim]]})"
        )
    found = []
    for name in np.asarray(da.coords[band_dim].values).tolist():
        try:
            found.append(sensor_obj.band(str(name)))
        except catalogs.UnknownBandError:
            raise _no_wavelength_error(str(name), sensor_obj) from None
    desc = BandDescriptors(
        tuple(str(v) for v in da.coords[band_dim].values.tolist()),
        np.array([b.wavelengths_nm for b in found]),
        tuple(b.kind for b in found),
    )
    out = da.assign_coords(
        {
            WAVELENGTH_MIN: (band_dim, desc.wavelengths_nm[:, 0]),
            WAVELENGTH_CENTER: (band_dim, desc.wavelengths_nm[:, 1]),
            WAVELENGTH_MAX: (band_dim, desc.wavelengths_nm[:, 2]),
            BAND_KIND: (band_dim, np.array(desc.kinds, dtype=object)),
            "common_name": (band_dim, np.array([b.common_name or "" for b in found], dtype=object)),
        }
    )
    out.attrs = {**da.attrs, "sensor": sensor_obj.id}
    return out


#: Pixels per band above which :func:`check_band_values` takes its statistics (medians,
#: percentiles) on a regular subsample; minima, maxima and counts always see every pixel.
_CHECK_PIXELS = 1 << 18

#: Reflectance that no pixel of a real scene reaches: a value outside is a fill value, a
#: corrupt pixel or another unit. The ceiling is generous because saturated pixels are
#: real: Sentinel-2 L1C stores them as DN 65535 (reflectance 6.55), and Landsat OLI's
#: saturation divided by the sine of a 5 degree sun elevation is about 14.
REFLECTANCE_LIMITS = (-0.5, 20.0)
#: Reflectance of natural surfaces. Products quantised with an offset go slightly negative
#: over dark water (Sentinel-2 from baseline 04.00 and Landsat L1 down to -0.1, Landsat
#: Collection 2 surface reflectance a little below 0); bright cloud and snow at low sun
#: reach 1.5-2. Only saturated, sun-glint or fire pixels fall outside, so a small share of
#: a block (:data:`PLAUSIBLE_SHARE`) is tolerated there.
REFLECTANCE_PLAUSIBLE = (-0.15, 2.0)
#: Largest share of a block's valid pixels allowed outside :data:`REFLECTANCE_PLAUSIBLE`.
PLAUSIBLE_SHARE = 1e-3
#: Brightness temperature that no pixel of an Earth scene reaches, kelvin: the coldest cloud
#: tops are near 180 K (Landsat 8 TIRS at DN 1 reads 148 K); fires saturate thermal
#: sensors well below 450 K.
BT_LIMITS_K = (100.0, 450.0)
#: Green vegetation (NDVI above :data:`VEGETATION_NDVI`) reflects at most about 0.7 in the
#: near infrared, at the top of the atmosphere as at the surface (the real Landsat 8 Biome
#: patches, Sentinel-2 and Landsat scenes of the sample data and the EarthLib spectra all
#: top out at 0.70). Where more than :data:`VEGETATION_SHARE` of a block's vegetated pixels
#: exceed :data:`VEGETATION_NIR_MAX`, the scene's reflectance is scaled wrong (a scene x4
#: stays within the plausible range elsewhere when it holds no bright cloud).
VEGETATION_NDVI = 0.5
VEGETATION_NIR_MAX = 1.0
VEGETATION_SHARE = 0.01
# Band centres (nm) that count as red and near infrared for the vegetation check.
_RED_NM = (620.0, 690.0)
_NIR_NM = (760.0, 900.0)
_VEGETATION_MIN_PIXELS = 50

def _nodata_hint(fill: float | None = None) -> str:
    """How to declare or mask a no-data value (``fill`` when known)."""
    v = "value" if fill is None else f"{fill:g}"
    return (f"declare the no-data value (nodata={v if fill is not None else '...'} in "
            f"cloudmask/cloud_probability, or da.rio.write_nodata({v})) or mask it first "
            f"(da.where(da != {v}))")


def _subsample(band: np.ndarray) -> np.ndarray:
    """A regular subsample of about ``_CHECK_PIXELS`` pixels (a view, not a copy)."""
    if band.size <= _CHECK_PIXELS:
        return band
    if band.ndim == 2:
        # Strided in both directions: a flat stride that is a multiple of the width would
        # sample a few columns only.
        step = int(np.ceil(np.sqrt(band.size / _CHECK_PIXELS)))
        return band[::step, ::step]
    step = int(np.ceil(band.size / _CHECK_PIXELS))
    return band.reshape(-1)[::step]


def _finite(band: np.ndarray) -> np.ndarray:
    flat = np.asarray(band).reshape(-1)
    return flat[np.isfinite(flat)]


def _describe_outliers(band: np.ndarray, bad: np.ndarray, n_valid: int) -> tuple[str, float | None]:
    """``("1,234 pixels (0.5 %) at -9999", -9999.0)`` or ``("... from -3.2e+04 to 1e+30", None)``:
    the second item is the value that dominates the outliers (a fill value), if one does."""
    values = band[bad]
    n = int(values.size)
    share = f"{n:,} pixel{'s' if n != 1 else ''} ({100.0 * n / max(n_valid, 1):.2g} %)"
    uniq, counts = np.unique(values[:100_000], return_counts=True)
    top = uniq[np.argmax(counts)]
    if counts.max() >= 0.5 * min(n, 100_000):
        # One value dominates: almost certainly a fill value; name it for nodata=.
        return f"{share} at {float(top):.6g}", float(top)
    return f"{share} from {float(values.min()):.4g} to {float(values.max()):.4g}", None


def check_band_values(values: np.ndarray, descriptors: BandDescriptors, where: str = "") -> None:
    """Refuse values that are not reflectance / brightness temperature, naming the fix.

    Reflective bands must hold reflectance (unitless, about 0 to 1) and thermal bands
    brightness temperature in kelvin. Every pixel is checked against the limits no real
    scene reaches (:data:`REFLECTANCE_LIMITS`, :data:`BT_LIMITS_K`): a value beyond them is
    an undeclared fill value (e.g. -9999), a corrupt pixel or another unit. Values outside
    the range of natural surfaces (:data:`REFLECTANCE_PLAUSIBLE`) are allowed only in a
    small share of the pixels (saturation, glint, fires). A scene whose green vegetation is
    brighter than vegetation can be (:data:`VEGETATION_NIR_MAX`) is scaled wrong. Medians
    and percentiles are taken on a regular subsample of bands above 2**18 pixels.

    Parameters
    ----------
    values : numpy.ndarray
        (N, ...) array, bands first: reflectance for reflective bands, brightness
        temperature (K) for thermal bands. NaN (and infinity) marks no data.
    descriptors : BandDescriptors
        The bands of ``values``.
    where : str
        Context for the error message (e.g. a chunk's position).

    Raises
    ------
    BandError
        For integer DN; reflectance far above 1 (DN), mostly negative, beyond the physical
        limits (undeclared no-data values, spikes) or scaled wrong; thermal bands in degrees
        Celsius (even in part of the scene), scaled, or as radiance; thermal values in a
        band marked reflective. The message says what to do.
    """
    at = f" {where}" if where else ""
    if np.issubdtype(values.dtype, np.integer):
        raise BandError(
            f"the bands are integers ({values.dtype}){at}: the model needs reflectance "
            "(0-1) and brightness temperature (K); convert DN first, e.g. "
            "sensei_xr.open_scene(..., calibrate=True) or da * scale + offset"
        )
    for i, (name, kind) in enumerate(zip(descriptors.names, descriptors.kinds)):
        band = values[i]
        if band.size == 0:
            continue
        # fmin/fmax skip NaN without warnings; one pass each over the full band, so a
        # single spike or a small block of fill cannot hide between subsample points.
        lo = float(np.fmin.reduce(band, axis=None))
        hi = float(np.fmax.reduce(band, axis=None))
        if np.isnan(lo):
            continue  # all no data: nothing to judge
        if kind == "reflective":
            if REFLECTANCE_PLAUSIBLE[0] <= lo and hi <= REFLECTANCE_PLAUSIBLE[1]:
                continue
            _check_reflective(band, name, at, lo, hi)
        else:
            if BT_LIMITS_K[0] <= lo and hi <= BT_LIMITS_K[1]:
                continue
            _check_thermal(band, name, at)
    _check_vegetation(values, descriptors, at)


def _check_reflective(band: np.ndarray, name: str, at: str, lo: float, hi: float) -> None:
    sub = _finite(_subsample(band))
    med = float(np.median(sub)) if sub.size else 0.0
    if med > 5.0:
        p1, p99 = np.percentile(sub, [1, 99])
        if BT_LIMITS_K[0] < p1 and p99 < BT_LIMITS_K[1]:
            raise BandError(
                f"band {name!r}{at} is marked reflective but holds values of {p1:.4g}-{p99:.4g} "
                "(1st-99th percentile), like brightness temperature in kelvin: if it is a "
                "thermal band, say so with its band_kind coordinate ('thermal') or its "
                "wavelengths (thermal bands are centred above 3.5 um), e.g. "
                "sensei_xr.attach_wavelengths(da, sensor)"
            )
        raise BandError(
            f"band {name!r}{at} has a median of {med:.4g}, far above reflectance 1: it looks "
            "like integer DN (e.g. reflectance x 10000); scale it to reflectance first (e.g. "
            "da / 10000, with the -1000 offset of Sentinel-2 baseline 04.00+: see "
            "sensei_xr.radiometry)"
        )
    flat = np.asarray(band).reshape(-1)
    n_valid = int(np.count_nonzero(np.isfinite(flat)))
    if med < -0.05:
        raise BandError(
            f"band {name!r}{at} is mostly negative (median {med:.4g}), which reflectance never "
            "is (L2A dark water dips to about -0.1 at most). Check the sign and the offset of the "
            f"conversion to reflectance; if these pixels are no data, {_nodata_hint()}"
        )
    if lo < REFLECTANCE_LIMITS[0] or hi > REFLECTANCE_LIMITS[1]:
        bad = (flat < REFLECTANCE_LIMITS[0]) | (flat > REFLECTANCE_LIMITS[1])
        what, fill = _describe_outliers(flat, bad, n_valid)
        raise BandError(
            f"band {name!r}{at} has {what}: no surface reflects that (reflectance stays within "
            f"{REFLECTANCE_LIMITS[0]:g} to {REFLECTANCE_LIMITS[1]:g} even when saturated). It "
            f"looks like an undeclared no-data value or corrupt pixels: {_nodata_hint(fill)}"
        )
    n_low = int(np.count_nonzero(flat < REFLECTANCE_PLAUSIBLE[0]))
    if n_low > PLAUSIBLE_SHARE * n_valid:
        what, fill = _describe_outliers(flat, flat < REFLECTANCE_PLAUSIBLE[0], n_valid)
        hint = _nodata_hint(fill)
        raise BandError(
            f"band {name!r}{at} has {what}, below reflectance {REFLECTANCE_PLAUSIBLE[0]:g}: "
            "natural surfaces go at most slightly negative (about -0.1 over dark water). An "
            "undeclared no-data value (Landsat Collection 2 surface reflectance stores fill "
            f"as DN 0, which scales to -0.2) or a wrong offset? {hint[0].upper()}{hint[1:]}"
        )
    n_high = int(np.count_nonzero(flat > REFLECTANCE_PLAUSIBLE[1]))
    if n_high > PLAUSIBLE_SHARE * n_valid:
        what, fill = _describe_outliers(flat, flat > REFLECTANCE_PLAUSIBLE[1], n_valid)
        raise BandError(
            f"band {name!r}{at} has {what}, above reflectance {REFLECTANCE_PLAUSIBLE[1]:g}: "
            "brighter than cloud or snow even at low sun. Is the reflectance scaled wrong "
            "(e.g. divided by 2500 instead of 10000, or a scale factor applied twice)? If "
            f"these pixels are no data, {_nodata_hint(fill)}"
        )


def _check_thermal(band: np.ndarray, name: str, at: str) -> None:
    sub = _finite(_subsample(band))
    med = float(np.median(sub))
    if med < BT_LIMITS_K[0]:
        if -90.0 < med < 70.0 and not (0.0 <= float(np.percentile(sub, 1)) and
                                       float(np.percentile(sub, 99)) <= 2.0):
            hint = ("degrees Celsius? add 273.15; spectral radiance (W/(m2 sr um))? convert "
                    "with sensei_xr.radiometry.brightness_temperature(L, K1, K2)")
        elif -90.0 < med < 70.0:
            hint = ("reflectance or already scaled values? then the band is not thermal: check "
                    "its band_kind coordinate and wavelengths; degrees Celsius? add 273.15")
        else:
            hint = "give brightness temperature in kelvin"
        raise BandError(
            f"thermal band {name!r}{at} has median {med:.4g}: expected brightness temperature "
            f"in kelvin (about 180-340 K); {hint}"
        )
    if med > BT_LIMITS_K[1]:
        raise BandError(
            f"thermal band {name!r}{at} has median {med:.4g}: expected brightness temperature "
            "in kelvin; it looks like DN or radiance: use "
            "sensei_xr.radiometry.brightness_temperature"
        )
    flat = np.asarray(band).reshape(-1)
    n_valid = int(np.count_nonzero(np.isfinite(flat)))
    bad = (flat < BT_LIMITS_K[0]) | (flat > BT_LIMITS_K[1])
    what, fill = _describe_outliers(flat, bad, n_valid)
    out = flat[bad]
    looks_celsius = bool(np.all((out > -100.0) & (out < 80.0)))
    if looks_celsius and fill is None:
        raise BandError(
            f"thermal band {name!r}{at} is in kelvin but has {what}: that part looks like "
            "degrees Celsius (a mosaic of two sources?); convert it (+273.15) or mask it"
        )
    celsius = " (or, if that part is in degrees Celsius, add 273.15 to it)" if looks_celsius else ""
    raise BandError(
        f"thermal band {name!r}{at} has {what}: no Earth scene has a brightness temperature "
        f"outside {BT_LIMITS_K[0]:g}-{BT_LIMITS_K[1]:g} K. It looks like an undeclared no-data "
        f"value or corrupt pixels: {_nodata_hint(fill)}{celsius}"
    )


def _nearest_band(descriptors: BandDescriptors, span: tuple[float, float]) -> int | None:
    centres = descriptors.wavelengths_nm[:, 1]
    ok = [i for i, (c, k) in enumerate(zip(centres, descriptors.kinds))
          if k == "reflective" and span[0] <= c <= span[1]]
    mid = sum(span) / 2
    return min(ok, key=lambda i: abs(centres[i] - mid)) if ok else None


def _check_vegetation(values: np.ndarray, descriptors: BandDescriptors, at: str) -> None:
    """Refuse a scene whose green vegetation is brighter in the NIR than vegetation is."""
    red, nir = _nearest_band(descriptors, _RED_NM), _nearest_band(descriptors, _NIR_NM)
    if red is None or nir is None:
        return
    r = np.asarray(_subsample(values[red]), dtype=np.float64)
    n = np.asarray(_subsample(values[nir]), dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = (n - r) / (n + r)
    veg = (ndvi > VEGETATION_NDVI) & (r > 0)
    n_veg = int(np.count_nonzero(veg))
    if n_veg < _VEGETATION_MIN_PIXELS:
        return
    share = np.count_nonzero(veg & (n > VEGETATION_NIR_MAX)) / n_veg
    if share > VEGETATION_SHARE:
        raise BandError(
            f"the scene{at} is too bright to be reflectance: {share:.0%} of its green "
            f"vegetation (NDVI > {VEGETATION_NDVI:g}) reflects more than {VEGETATION_NIR_MAX:g} "
            f"in NIR band {descriptors.names[nir]!r} (median {np.median(n[veg]):.3g}), where "
            "vegetation reflects at most about 0.7. The reflectance is scaled wrong (e.g. "
            "divided by 2500 instead of 10000, or a scale factor applied twice): check the "
            "conversion to reflectance"
        )


def to_model_input(values: np.ndarray, descriptors: BandDescriptors, copy: bool = True) -> np.ndarray:
    """Turn scene values into model input: float32, thermal BT scaled, NaN kept.

    Parameters
    ----------
    values : numpy.ndarray
        (N, ...) reflectance / brightness temperature (K), bands first.
    descriptors : BandDescriptors
    copy : bool
        Always a new array (default). With False, float32 ``values`` without thermal
        bands come back as they are (the engine's blocks, which it only reads: copying
        a 1024 px block with its halo took 0.13 s).

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    thermal = descriptors.is_thermal
    out = np.asarray(values, dtype=np.float32)
    if copy or thermal.any():
        out = out.copy()
    if thermal.any():
        out[thermal] = normalise_brightness_temperature(out[thermal]).astype(np.float32)
    return out
