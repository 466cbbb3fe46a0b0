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


class BandError(ValueError):
    """A band cannot be described or its values are not what the model expects."""


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


#: Pixels per band above which :func:`check_band_values` looks at a regular subsample.
_CHECK_PIXELS = 1 << 18


def check_band_values(values: np.ndarray, descriptors: BandDescriptors, where: str = "") -> None:
    """Refuse values that are clearly not reflectance / brightness temperature.

    Bands of more than 2**18 pixels (2-D) are checked on a regular subsample of about that
    many pixels.

    Parameters
    ----------
    values : numpy.ndarray
        (N, ...) array, bands first: reflectance (0 to about 1) for reflective bands,
        brightness temperature in kelvin for thermal bands. NaN marks no data.
    descriptors : BandDescriptors
        The bands of ``values``.
    where : str
        Context for the error message (e.g. a chunk's position).

    Raises
    ------
    BandError
        For integer DN (reflective values far above 1) or thermal bands in degrees Celsius
        or already scaled.
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
        if band.ndim == 2 and band.size > _CHECK_PIXELS:
            # A regular subsample is plenty to tell DN or Celsius from reflectance or K,
            # and a full-block percentile costs more than the rest of the preprocessing.
            step = int(np.ceil(np.sqrt(band.size / _CHECK_PIXELS)))
            band = band[::step, ::step]
        finite = band[np.isfinite(band)]
        if finite.size == 0:
            continue
        if kind == "reflective":
            # Clouds and snow reach about 1.5 in TOA reflectance; DN are in the thousands.
            high = np.percentile(finite, 99)
            if high > 5.0:
                raise BandError(
                    f"band {name!r}{at} has values up to {high:.4g}, far above reflectance 1: "
                    "it looks like integer DN (e.g. reflectance x 10000); scale it to "
                    "reflectance first (e.g. da / 10000, with the -1000 offset of Sentinel-2 "
                    "baseline 04.00+: see sensei_xr.radiometry)"
                )
        else:
            med = float(np.median(finite))
            if med < 100.0:
                hint = (
                    "degrees Celsius? add 273.15; spectral radiance (W/(m2 sr um))? "
                    "convert with sensei_xr.radiometry.brightness_temperature(L, K1, K2)"
                    if -90.0 < med < 70.0
                    else "give brightness temperature in kelvin"
                )
                raise BandError(
                    f"thermal band {name!r}{at} has median {med:.4g}: expected brightness "
                    f"temperature in kelvin (about 180-340 K); {hint}"
                )
            if med > 400.0:
                raise BandError(
                    f"thermal band {name!r}{at} has median {med:.4g}: expected brightness "
                    "temperature in kelvin; it looks like DN or radiance: use "
                    "sensei_xr.radiometry.brightness_temperature"
                )


def to_model_input(values: np.ndarray, descriptors: BandDescriptors) -> np.ndarray:
    """Turn scene values into model input: float32, thermal BT scaled, NaN kept.

    Parameters
    ----------
    values : numpy.ndarray
        (N, ...) reflectance / brightness temperature (K), bands first.
    descriptors : BandDescriptors

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    out = np.asarray(values, dtype=np.float32).copy()
    thermal = descriptors.is_thermal
    if thermal.any():
        out[thermal] = normalise_brightness_temperature(out[thermal]).astype(np.float32)
    return out
