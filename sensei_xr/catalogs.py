"""Sensor catalogs: every band of a sensor described by its wavelengths.

SEnSeI knows a band only by its wavelength interval, so each supported sensor is one
human-readable TOML file (``catalogs/<id>.toml`` in a source checkout, package data
``sensei_xr/_catalogs/`` in a wheel) listing its bands with

* ``min_nm`` / ``center_nm`` / ``max_nm`` -- band edges and centre in nanometres (nm),
  from the agency specification cited in the file;
* ``gsd_m`` -- native ground sampling distance in metres (m);
* ``kind`` -- ``"reflective"`` or ``"thermal"``; thermal bands also carry the constants
  ``k1`` (W / (m2 sr um)) and ``k2`` (K) of ``BT = k2 / ln(k1 / L + 1)``;
* the names the band goes by: the product's canonical name, the STAC ``common_name`` and
  asset keys used by common public STAC APIs.

Users add their own sensors with :func:`register_sensor` (a TOML file or a dict of the
same structure) or by putting TOML files in a directory listed in the environment
variable ``SENSEI_XR_CATALOG_PATH`` (``os.pathsep``-separated).

Examples
--------
>>> from sensei_xr.catalogs import get_sensor
>>> s2 = get_sensor("Sentinel-2")
>>> s2.band("swir16").name
'B11'
>>> s2.band("B8A").wavelengths_nm   # (min, centre, max) in nm
(854.2, 864.7, 875.2)
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CatalogError, UnknownBandError, UnknownSensorError
from .toml_registry import read_toml, registry_dirs

__all__ = [
    "Band",
    "Sensor",
    "CatalogError",
    "UnknownSensorError",
    "UnknownBandError",
    "ENV_VAR",
    "WAVELENGTH_RANGE_NM",
    "list_sensors",
    "get_sensor",
    "load_sensor_file",
    "register_sensor",
    "catalog_dirs",
    "clear_cache",
]

#: Environment variable with extra catalog directories (``os.pathsep``-separated).
ENV_VAR = "SENSEI_XR_CATALOG_PATH"

#: Wavelengths a catalog may hold, nm: the range SEnSeI's wavelength encoding covers
#: (near-UV to far thermal infrared).
WAVELENGTH_RANGE_NM = (300.0, 20000.0)

KINDS = ("reflective", "thermal")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")

_SENSOR_REQUIRED = ("id", "title")
_SENSOR_OPTIONAL = ("aliases", "platforms", "references", "notes")
_BAND_REQUIRED = ("name", "min_nm", "center_nm", "max_nm", "kind")
_BAND_OPTIONAL = ("aliases", "common_name", "gsd_m", "k1", "k2", "center_nm_by_platform")


# ------------------------------------------------------------------------ dataclasses


def _key(name: str) -> str:
    # Names and aliases match case-insensitively and ignoring surrounding blanks.
    return str(name).strip().casefold()


@dataclass(frozen=True)
class Band:
    """One spectral band of a sensor.

    Parameters
    ----------
    name : str
        Canonical band name as in the sensor's products (e.g. ``"B8A"``).
    aliases : tuple of str
        Other names of the band (STAC common name, STAC asset keys, ``"B1"``-style names);
        matched case-insensitively.
    common_name : str or None
        STAC ``eo:common_name`` (e.g. ``"nir08"``), or None where none applies.
    min_nm, center_nm, max_nm : float
        Lower band edge, centre and upper band edge, nm.
    gsd_m : float or None
        Native ground sampling distance, m.
    kind : str
        ``"reflective"`` or ``"thermal"``.
    k1 : float or None
        Thermal constant K1, W / (m2 sr um) (thermal bands only).
    k2 : float or None
        Thermal constant K2, K (thermal bands only).
    center_nm_by_platform : tuple of (str, float)
        Platform-specific centres, nm, where the specification gives them (e.g. Sentinel-2B);
        ``center_nm`` is the documented default.
    """

    name: str
    aliases: tuple[str, ...]
    common_name: str | None
    min_nm: float
    center_nm: float
    max_nm: float
    gsd_m: float | None
    kind: str
    k1: float | None = None
    k2: float | None = None
    center_nm_by_platform: tuple[tuple[str, float], ...] = ()

    @property
    def is_thermal(self) -> bool:
        """True for emissive (thermal infrared) bands."""
        return self.kind == "thermal"

    @property
    def wavelengths_nm(self) -> tuple[float, float, float]:
        """``(min, centre, max)`` in nm."""
        return (self.min_nm, self.center_nm, self.max_nm)

    def center_for(self, platform: str | None = None) -> float:
        """Band centre in nm for ``platform`` (e.g. ``"sentinel-2b"``), else the default."""
        if platform is not None:
            for p, c in self.center_nm_by_platform:
                if _key(p) == _key(platform):
                    return c
        return self.center_nm


@dataclass(frozen=True)
class Sensor:
    """A sensor: its bands and the names it goes by.

    Parameters
    ----------
    id : str
        Lowercase identifier, also the catalog file stem (e.g. ``"sentinel2_msi"``).
    title : str
        Human-readable name.
    aliases : tuple of str
        Other names of the sensor, matched case-insensitively by :func:`get_sensor`.
    platforms : tuple of str
        Satellites carrying the sensor (lowercase, e.g. ``"sentinel-2a"``).
    bands : tuple of Band
        The bands, in the catalog's order.
    references : tuple of str
        Documents the numbers come from.
    notes : str
        Free text (choices made, caveats).
    path : str or None
        File the sensor was loaded from (None for a dict).
    """

    id: str
    title: str
    aliases: tuple[str, ...]
    platforms: tuple[str, ...]
    bands: tuple[Band, ...]
    references: tuple[str, ...]
    notes: str = ""
    path: str | None = None

    def __post_init__(self) -> None:
        # Lookup table of case-folded names and aliases; kept out of the dataclass fields so
        # that repr / eq / asdict see only the catalog content.
        index: dict[str, Band] = {}
        for b in self.bands:
            for n in (b.name, *b.aliases):
                other = index.get(_key(n))
                if other is not None and other is not b:
                    raise ValueError(
                        f"sensor {self.id!r}: name {n!r} is used by bands {other.name!r} and {b.name!r}"
                    )
                index[_key(n)] = b
        object.__setattr__(self, "_index", index)

    def band(self, name: str) -> Band:
        """The band called ``name`` (canonical name or alias, case-insensitive).

        Raises
        ------
        UnknownBandError
            If no band has that name; the message lists the valid names.
        """
        b = self._index.get(_key(name))
        if b is not None:
            return b
        spelling = {_key(n): n for b in self.bands for n in (b.name, *b.aliases)}
        hints: dict[str, str] = {}  # band name -> how to say it, one entry per band
        for c in difflib.get_close_matches(_key(name), list(spelling), n=5, cutoff=0.6):
            bname = self._index[c].name
            if bname not in hints:
                hints[bname] = repr(bname) if c == _key(bname) else f"{bname!r} (alias {spelling[c]!r})"
        hint = f" Did you mean {', '.join(hints.values())}?" if hints else ""
        aliases = sorted({a for b in self.bands for a in b.aliases}, key=str.casefold)
        raise UnknownBandError(
            f"band {name!r} is not a band of sensor {self.id!r} ({self.title}).{hint} "
            f"Valid band names: {self.band_names}; aliases: {aliases}"
        )

    def has_band(self, name: str) -> bool:
        """True if ``name`` is a band name or alias of this sensor."""
        return _key(name) in self._index

    @property
    def band_names(self) -> list[str]:
        """Canonical band names in catalog order."""
        return [b.name for b in self.bands]

    @property
    def names(self) -> tuple[str, ...]:
        """The id and every alias of the sensor."""
        return (self.id, *self.aliases)


# ------------------------------------------------------------------------- validation


def _fail(origin: str, msg: str, band: str | None = None, field_: str | None = None) -> CatalogError:
    where = origin
    if band is not None:
        where += f": band {band}"
    if field_ is not None:
        where += f": field {field_!r}"
    return CatalogError(f"{where}: {msg}")


def _str_list(value: Any, origin: str, band: str | None, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _fail(origin, f"must be a list of strings, got {value!r}", band, name)
    out = []
    for v in value:
        if not isinstance(v, str) or not v.strip():
            raise _fail(origin, f"must hold non-empty strings, got {v!r}", band, name)
        out.append(v.strip())
    return tuple(out)


def _number(value: Any, origin: str, band: str, name: str) -> float:
    # bool is an int subclass; "true" for a wavelength is a typo, not a number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(origin, f"must be a number, got {value!r}", band, name)
    x = float(value)
    if not math.isfinite(x):
        raise _fail(origin, f"must be finite, got {value!r}", band, name)
    return x


def _wavelength(value: Any, origin: str, band: str, name: str) -> float:
    x = _number(value, origin, band, name)
    lo, hi = WAVELENGTH_RANGE_NM
    if not lo <= x <= hi:
        raise _fail(
            origin,
            f"{x:g} nm is outside {lo:g}..{hi:g} nm (wavelengths are in nm: 0.665 um is 665)",
            band,
            name,
        )
    return x


def _parse_band(raw: Any, i: int, origin: str, platforms: tuple[str, ...]) -> Band:
    if not isinstance(raw, Mapping):
        raise _fail(origin, f"each [[bands]] entry must be a table, entry #{i + 1} is {raw!r}")
    label = repr(raw["name"]) if isinstance(raw.get("name"), str) else f"#{i + 1}"
    for f in _BAND_REQUIRED:
        if f not in raw:
            raise _fail(origin, "missing required field", label, f)
    unknown = sorted(set(raw) - set(_BAND_REQUIRED) - set(_BAND_OPTIONAL))
    if unknown:
        raise _fail(
            origin,
            f"unknown field(s) {unknown}; allowed: {list(_BAND_REQUIRED + _BAND_OPTIONAL)}",
            label,
            unknown[0],
        )
    name = raw["name"]
    if not isinstance(name, str) or not name.strip():
        raise _fail(origin, f"must be a non-empty string, got {name!r}", label, "name")
    name = name.strip()

    lo = _wavelength(raw["min_nm"], origin, label, "min_nm")
    c = _wavelength(raw["center_nm"], origin, label, "center_nm")
    hi = _wavelength(raw["max_nm"], origin, label, "max_nm")
    if not lo < c < hi:
        bad = "min_nm" if lo >= c else "max_nm"
        raise _fail(origin, f"need min_nm < center_nm < max_nm, got {lo:g} / {c:g} / {hi:g} nm",
                    label, bad)

    kind = raw["kind"]
    if kind not in KINDS:
        raise _fail(origin, f"must be one of {list(KINDS)}, got {kind!r}", label, "kind")

    k1 = raw.get("k1")
    k2 = raw.get("k2")
    if kind == "thermal":
        for f, v in (("k1", k1), ("k2", k2)):
            if v is None:
                raise _fail(origin, "thermal bands need k1 (W/(m2 sr um)) and k2 (K) for "
                            "BT = k2 / ln(k1 / L + 1)", label, f)
        k1 = _number(k1, origin, label, "k1")
        k2 = _number(k2, origin, label, "k2")
        for f, v in (("k1", k1), ("k2", k2)):
            if v <= 0:
                raise _fail(origin, f"must be > 0, got {v:g}", label, f)
    else:
        for f, v in (("k1", k1), ("k2", k2)):
            if v is not None:
                raise _fail(origin, "only thermal bands carry k1/k2; set kind = \"thermal\" "
                            "or remove it", label, f)

    gsd = raw.get("gsd_m")
    if gsd is not None:
        gsd = _number(gsd, origin, label, "gsd_m")
        if gsd <= 0:
            raise _fail(origin, f"must be > 0 m, got {gsd:g}", label, "gsd_m")

    common = raw.get("common_name")
    if common is not None and (not isinstance(common, str) or not common.strip()):
        raise _fail(origin, f"must be a non-empty string, got {common!r}", label, "common_name")

    aliases = _str_list(raw.get("aliases"), origin, label, "aliases")
    seen: set[str] = set()
    for a in aliases:
        if _key(a) in seen:
            raise _fail(origin, f"alias {a!r} is listed twice", label, "aliases")
        seen.add(_key(a))
    # An alias equal to the band's own name (e.g. "b01" for "B01") is redundant but harmless.
    aliases = tuple(a for a in aliases if _key(a) != _key(name))

    by_platform_raw = raw.get("center_nm_by_platform") or {}
    if not isinstance(by_platform_raw, Mapping):
        raise _fail(origin, f"must be a table of platform = nm, got {by_platform_raw!r}", label,
                    "center_nm_by_platform")
    by_platform = []
    known = {_key(p) for p in platforms}
    for p, v in by_platform_raw.items():
        fname = f"center_nm_by_platform.{p}"
        if known and _key(p) not in known:
            raise _fail(origin, f"platform {p!r} is not one of the sensor's platforms "
                        f"{list(platforms)}", label, fname)
        x = _wavelength(v, origin, label, fname)
        if not lo < x < hi:
            raise _fail(origin, f"{x:g} nm is outside the band edges {lo:g}..{hi:g} nm", label, fname)
        by_platform.append((str(p), x))

    return Band(
        name=name,
        aliases=aliases,
        common_name=common.strip() if common else None,
        min_nm=lo,
        center_nm=c,
        max_nm=hi,
        gsd_m=gsd,
        kind=kind,
        k1=k1 if kind == "thermal" else None,
        k2=k2 if kind == "thermal" else None,
        center_nm_by_platform=tuple(by_platform),
    )


def _sensor_from_mapping(data: Mapping[str, Any], origin: str, path: str | None = None,
                         stem: str | None = None) -> Sensor:
    """Validate the TOML structure ``{"sensor": {...}, "bands": [{...}, ...]}``."""
    if not isinstance(data, Mapping):
        raise _fail(origin, f"expected a table with [sensor] and [[bands]], got {type(data).__name__}")
    unknown = sorted(set(data) - {"sensor", "bands"})
    if unknown:
        raise _fail(origin, f"unknown top-level key(s) {unknown}; expected [sensor] and [[bands]]",
                    field_=unknown[0])
    meta = data.get("sensor")
    if not isinstance(meta, Mapping):
        raise _fail(origin, "missing [sensor] table", field_="sensor")
    for f in _SENSOR_REQUIRED:
        if f not in meta:
            raise _fail(origin, "missing required field in [sensor]", field_=f)
    unknown = sorted(set(meta) - set(_SENSOR_REQUIRED) - set(_SENSOR_OPTIONAL))
    if unknown:
        raise _fail(origin, f"unknown field(s) {unknown} in [sensor]; allowed: "
                    f"{list(_SENSOR_REQUIRED + _SENSOR_OPTIONAL)}", field_=unknown[0])

    sid = meta["id"]
    if not isinstance(sid, str) or not _ID_RE.match(sid):
        raise _fail(origin, f"must be lowercase letters, digits and '_', got {sid!r}", field_="id")
    if stem is not None and stem != sid:
        raise _fail(origin, f"id {sid!r} must equal the file name stem {stem!r}", field_="id")
    title = meta["title"]
    if not isinstance(title, str) or not title.strip():
        raise _fail(origin, f"must be a non-empty string, got {title!r}", field_="title")
    notes = meta.get("notes", "")
    if not isinstance(notes, str):
        raise _fail(origin, f"must be a string, got {notes!r}", field_="notes")
    aliases = _str_list(meta.get("aliases"), origin, None, "aliases")
    platforms = _str_list(meta.get("platforms"), origin, None, "platforms")
    references = _str_list(meta.get("references"), origin, None, "references")
    seen = {_key(sid)}
    for a in aliases:
        if _key(a) in seen:
            raise _fail(origin, f"sensor alias {a!r} repeats the id or another alias", field_="aliases")
        seen.add(_key(a))

    raw_bands = data.get("bands")
    if not isinstance(raw_bands, (list, tuple)) or not raw_bands:
        raise _fail(origin, "needs at least one [[bands]] entry", field_="bands")
    bands = [_parse_band(rb, i, origin, platforms) for i, rb in enumerate(raw_bands)]

    # Every name and alias must pick out exactly one band of the sensor.
    owner: dict[str, str] = {}
    for b in bands:
        for n in (b.name, *b.aliases):
            prev = owner.get(_key(n))
            if prev is not None and prev != b.name:
                what = "name" if _key(n) == _key(b.name) else "alias"
                raise _fail(origin, f"duplicate {what} {n!r}: already used by band {prev!r} "
                            "(names and aliases must be unique within a sensor, case-insensitively)",
                            repr(b.name), "name" if what == "name" else "aliases")
            owner[_key(n)] = b.name

    return Sensor(
        id=sid,
        title=title.strip(),
        aliases=aliases,
        platforms=platforms,
        bands=tuple(bands),
        references=references,
        notes=notes.strip(),
        path=path,
    )


# ---------------------------------------------------------------------------- loading


def load_sensor_file(path: str | os.PathLike) -> Sensor:
    """Parse and validate one sensor TOML file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``<id>.toml`` file in the catalog format (see ``catalogs/*.toml``).

    Returns
    -------
    Sensor

    Raises
    ------
    CatalogError
        If the file is missing, not TOML, or breaks a rule (band edges in nm within
        300..20000 and min < centre < max, kind reflective/thermal, thermal bands with
        k1/k2 > 0, unique names and aliases, gsd_m > 0, id equal to the file stem).
    """
    p = Path(path)
    origin = str(p)
    data = read_toml(p, CatalogError, "catalog")
    return _sensor_from_mapping(data, origin, path=origin, stem=p.stem)


def catalog_dirs() -> list[Path]:
    """Directories searched for ``*.toml`` sensor files, in priority order (last wins).

    The shipped catalogs (package data ``sensei_xr/_catalogs`` in a wheel, else
    ``<repo>/catalogs``), then each existing directory in ``$SENSEI_XR_CATALOG_PATH``.

    Returns
    -------
    list of pathlib.Path
    """
    return registry_dirs("", ENV_VAR)


def _check_sensor_names(sensors: Mapping[str, Sensor]) -> dict[str, str]:
    """Map every case-folded id/alias to its sensor id; a name used twice is an error."""
    owner: dict[str, str] = {}
    for s in sensors.values():
        for n in s.names:
            prev = owner.get(_key(n))
            if prev is not None and prev != s.id:
                raise CatalogError(
                    f"sensor name {n!r} is used by both {prev!r} ({sensors[prev].path or 'registered'}) "
                    f"and {s.id!r} ({s.path or 'registered'}): sensor ids and aliases must be unique "
                    "across all catalogs"
                )
            owner[_key(n)] = s.id
    return owner


@functools.lru_cache(maxsize=8)
def _load_dirs(dirs: tuple[str, ...]) -> tuple[dict[str, Sensor], dict[str, str]]:
    sensors: dict[str, Sensor] = {}
    for d in dirs:
        here: dict[str, str] = {}
        for f in sorted(Path(d).glob("*.toml")):
            s = load_sensor_file(f)
            if s.id in here:
                raise CatalogError(f"{f}: sensor id {s.id!r} already defined in {here[s.id]}")
            here[s.id] = str(f)
            # A later directory (the user's) may replace a shipped sensor of the same id.
            sensors[s.id] = s
    return sensors, _check_sensor_names(sensors)


_lock = threading.RLock()
_registered: dict[str, Sensor] = {}


def clear_cache() -> None:
    """Forget parsed catalog files (re-read on next use); registered sensors are kept."""
    _load_dirs.cache_clear()


def _current() -> tuple[dict[str, Sensor], dict[str, str]]:
    sensors, owner = _load_dirs(tuple(str(d) for d in catalog_dirs()))
    with _lock:
        if not _registered:
            return sensors, owner
        merged = {**sensors, **_registered}
        # Registered sensors override files; rebuild the name map without the replaced ones.
        owner = {k: v for k, v in owner.items() if v not in _registered}
        for s in _registered.values():
            for n in s.names:
                owner[_key(n)] = s.id
        return merged, owner


def list_sensors() -> list[str]:
    """Sorted ids of all known sensors (shipped, ``$SENSEI_XR_CATALOG_PATH``, registered)."""
    return sorted(_current()[0])


def get_sensor(name: str | Sensor) -> Sensor:
    """The sensor with id or alias ``name`` (case-insensitive).

    Parameters
    ----------
    name : str or Sensor
        Sensor id (``"sentinel2_msi"``) or alias (``"Sentinel-2"``, ``"s2"``, ``"L8"``);
        a :class:`Sensor` is returned as is.

    Returns
    -------
    Sensor

    Raises
    ------
    UnknownSensorError
        If no sensor has that name; the message lists the ids and suggests close matches.
    """
    if isinstance(name, Sensor):
        return name
    sensors, owner = _current()
    sid = owner.get(_key(name)) if isinstance(name, str) else None
    if sid is not None:
        return sensors[sid]
    close = difflib.get_close_matches(_key(name), list(owner), n=5, cutoff=0.6)
    ids = []
    for c in close:
        if owner[c] not in ids:
            ids.append(owner[c])
    # A prefix such as "planetscope" is ambiguous, not a typo: suggest every id it starts.
    for sid in sorted(sensors):
        if isinstance(name, str) and name.strip() and sid.startswith(_key(name)) and sid not in ids:
            ids.append(sid)
    hint = f" Did you mean {', '.join(repr(i) for i in ids)}?" if ids else ""
    raise UnknownSensorError(
        f"unknown sensor {name!r}.{hint} Available sensors: {sorted(sensors)}. "
        f"Add your own with sensei_xr.catalogs.register_sensor(...) or a TOML file in a "
        f"directory listed in ${ENV_VAR}."
    )


def register_sensor(source: str | os.PathLike | Mapping[str, Any] | Sensor) -> Sensor:
    """Make a user's sensor available to :func:`get_sensor`.

    Parameters
    ----------
    source : str, os.PathLike, dict or Sensor
        A TOML file in the catalog format, or a dict of the same structure::

            {"sensor": {"id": "my_smallsat", "title": "...", "aliases": [...]},
             "bands": [{"name": "blue", "min_nm": 450.0, "center_nm": 485.0,
                        "max_nm": 520.0, "kind": "reflective", "gsd_m": 3.0}, ...]}

        Wavelengths in nm, ``gsd_m`` in m. Registering the same id again replaces it
        (including a shipped sensor of that id).

    Returns
    -------
    Sensor

    Raises
    ------
    CatalogError
        If the description is malformed or one of its names belongs to another sensor.
    """
    if isinstance(source, Sensor):
        sensor = source
    elif isinstance(source, Mapping):
        sid = source.get("sensor", {}).get("id") if isinstance(source.get("sensor"), Mapping) else None
        sensor = _sensor_from_mapping(source, f"<registered sensor {sid!r}>")
    elif isinstance(source, (str, os.PathLike)):
        sensor = load_sensor_file(source)
    else:
        raise TypeError(f"register_sensor takes a TOML path, a dict or a Sensor, got {type(source).__name__}")
    with _lock:
        sensors, owner = _current()
        for n in sensor.names:
            other = owner.get(_key(n))
            if other is not None and other != sensor.id:
                raise CatalogError(
                    f"{sensor.path or '<registered sensor ' + repr(sensor.id) + '>'}: field 'aliases': "
                    f"sensor name {n!r} already belongs to sensor {other!r}; choose another alias"
                )
        _registered[sensor.id] = sensor
    return sensor
