"""Search STAC APIs and stack their items as lazy, wavelength-aware scenes.

:func:`search` asks a STAC API (pystac-client) for items and returns them as plain dicts
(which keeps ``proj:epsg``: pystac >= 1.12 rewrites it to ``proj:code``, which stackstac 0.5
does not read). :func:`stack_items` turns item dicts into a lazy ``(time, band, y, x)``
DataArray with stackstac, and :func:`open_stac` does both.

What :func:`stack_items` adds to a plain ``stackstac.stack``:

* **Only spectral bands.** By default it stacks the assets that are reflectance or thermal
  bands and skips QA, SCL, visual/TCI, thumbnails, angle and metadata assets. The
  *collection profile* (``catalogs/stac_profiles/*.toml``: asset key -> sensor band, per
  collection of Earth Search and the Planetary Computer) says which assets those are;
  without a profile, an asset counts as a band when the sensor catalog knows its name or
  its metadata (``eo:bands`` / STAC 1.1 ``bands``) gives its wavelengths.
* **Wavelengths on the band coordinate**, in the canonical nm coordinates of
  :mod:`sensei_xr.bands` (``wavelength_min_nm``, ``wavelength_center_nm``,
  ``wavelength_max_nm``, ``band_kind``) plus stackstac's micrometre ones. With
  ``wavelengths="auto"`` (default) a band the sensor catalog identifies gets the catalog's
  band limits, exactly as :func:`sensei_xr.open_scene` gives them for the same band read
  from files; other bands get the item's ``eo:bands`` centre and FWHM. Public APIs round
  their ``eo:bands`` (Earth Search: blue 0.49 um +- 0.049 um, where the measured band is
  459-525 nm), so the catalog is preferred; ``wavelengths="items"`` reverses the order.
* **Calibrated values**: float32 reflectance and brightness (or surface) temperature in
  kelvin, NaN at no data. Scale and offset come from ``raster:bands`` (STAC 1.0) or
  ``raster:scale`` / ``raster:offset`` (STAC 1.1), else from the profile. For Sentinel-2 the
  -1000 DN offset is decided from the item's ``s2:processing_baseline`` (04.00 and later)
  and ``earthsearch:boa_offset_applied``, never from the acquisition date.
* **Native grid**: the output grid is the assets' own pixel grid (no half-pixel snapping),
  at the most common native resolution of the stacked bands (like ``open_scene``).
* **Clear errors** (:class:`StacError` and subclasses) for an unreachable server, an empty
  search, items with no usable bands and, at compute time, unreadable assets (the message
  names the href).

Examples
--------
>>> from sensei_xr.io.stac import open_stac
>>> da = open_stac("https://earth-search.aws.element84.com/v1", "sentinel-2-l2a",
...                bbox=(13.9, 45.9, 14.0, 46.0), datetime="2023-07-01/2023-07-31",
...                query={"eo:cloud_cover": {"lt": 30}})          # doctest: +SKIP
>>> da.dims                                                       # doctest: +SKIP
('time', 'band', 'y', 'x')
"""

from __future__ import annotations

import collections
import functools
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urlparse

import numpy as np
from stackstac.rio_reader import AutoParallelRioReader as _AutoParallelRioReader

from .. import catalogs, radiometry
from ..bands import (
    BAND_KIND,
    THERMAL_FROM_NM,
    WAVELENGTH_CENTER,
    WAVELENGTH_MAX,
    WAVELENGTH_MIN,
)
from ..errors import (
    NoItemsError,
    NoUsableBandsError,
    ProfileError,
    StacAssetError,
    StacConnectionError,
    StacError,
    StacSearchError,
)

__all__ = [
    "StacError",
    "StacConnectionError",
    "StacSearchError",
    "NoItemsError",
    "NoUsableBandsError",
    "StacAssetError",
    "ProfileError",
    "AssetSpec",
    "StacProfile",
    "search",
    "stack_items",
    "open_stac",
    "load_profile",
    "list_profiles",
    "find_profile",
    "profile_dirs",
    "sentinel2_item_offset",
    "check_datetime",
    "check_bbox",
    "DEFAULT_TIMEOUT_S",
]


# ---------------------------------------------------------------------------- profiles

#: Environment variable with extra profile directories (``os.pathsep``-separated).
PROFILE_ENV_VAR = "SENSEI_XR_STAC_PROFILE_PATH"

_PROFILE_KEYS = {
    "id", "title", "api", "api_url", "collection", "aliases", "sensor", "sensor_by_platform",
    "level", "radiometry", "offset_rule", "references", "notes",
}
_PROFILE_REQUIRED = ("id", "api", "collection", "sensor")
_RADIOMETRY = ("toa", "surface")
_OFFSET_RULES = ("raster_bands", "sentinel2_baseline")
_ASSET_KEYS = {"band", "scale", "offset", "nodata"}


def _key(name: str) -> str:
    return str(name).strip().casefold()


@dataclass(frozen=True)
class AssetSpec:
    """One spectral asset of a collection profile.

    Attributes
    ----------
    key : str
        Asset key in the items (e.g. ``"red"`` or ``"B04"``).
    bands : tuple of (str, str)
        ``(sensor id, band name)`` pairs: the catalog band the asset holds for each sensor
        of the profile; sensor ``"*"`` stands for every sensor.
    scale, offset : float or None
        Default ``value = DN * scale + offset`` when the item's ``raster:bands`` give none
        (reflectance, or kelvin for thermal bands).
    nodata : float or None
        No-data DN, for information (stackstac masks with the files' own no-data value).
    """

    key: str
    bands: tuple[tuple[str, str], ...]
    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None

    def band_name(self, sensor_id: str) -> str | None:
        """The catalog band name this asset holds for ``sensor_id`` (None if none)."""
        for sid, name in self.bands:
            if sid == sensor_id or sid == "*":
                return name
        return None


@dataclass(frozen=True)
class StacProfile:
    """How one collection of one STAC API maps asset keys to sensor bands.

    Attributes
    ----------
    id : str
        File stem, e.g. ``"earth_search_sentinel_2_l2a"``.
    title, api, api_url : str
        Human-readable names and the API's root URL.
    collection : str
        The collection id in that API (e.g. ``"sentinel-2-l2a"``).
    aliases : tuple of str
        Other names (e.g. ``"earth-search/sentinel-2-l2a"``).
    sensor : str
        Catalog sensor id of items whose platform is not in ``sensor_by_platform``.
    sensor_by_platform : tuple of (str, str)
        STAC ``platform`` -> catalog sensor id (Landsat collections mix sensors).
    level : str
        Processing level (``"L1C"``, ``"L2A"``, ``"L2"``).
    radiometry : str
        ``"toa"`` or ``"surface"``: what the calibrated values are.
    offset_rule : str
        ``"raster_bands"`` (scale/offset from the items, else the defaults) or
        ``"sentinel2_baseline"`` (the offset is decided from the item's processing
        baseline and ``earthsearch:boa_offset_applied``; see :func:`sentinel2_item_offset`).
    default_scale, default_offset, default_nodata : float or None
        Used for an asset when neither the item nor the asset entry gives them.
    assets : tuple of AssetSpec
        The spectral assets; every other asset of the items is skipped.
    references : tuple of str
        Where the mapping comes from.
    notes : str
    path : str or None
        File the profile was read from.
    """

    id: str
    title: str
    api: str
    api_url: str
    collection: str
    aliases: tuple[str, ...]
    sensor: str
    sensor_by_platform: tuple[tuple[str, str], ...]
    level: str
    radiometry: str
    offset_rule: str
    default_scale: float | None
    default_offset: float | None
    default_nodata: float | None
    assets: tuple[AssetSpec, ...]
    references: tuple[str, ...] = ()
    notes: str = ""
    path: str | None = None

    @property
    def asset_keys(self) -> list[str]:
        """Keys of the spectral assets, in file order."""
        return [a.key for a in self.assets]

    @property
    def names(self) -> tuple[str, ...]:
        """The id and every alias."""
        return (self.id, *self.aliases)

    def asset(self, key: str) -> AssetSpec | None:
        """The spectral asset called ``key`` (exact match), or None."""
        for a in self.assets:
            if a.key == key:
                return a
        return None

    def sensor_for(self, platform: str | None) -> str:
        """Catalog sensor id for an item of ``platform`` (e.g. ``"landsat-9"``)."""
        if platform:
            for p, sid in self.sensor_by_platform:
                if _key(p) == _key(platform):
                    return sid
        return self.sensor

    def band(self, asset_key: str, sensor_id: str) -> "catalogs.Band | None":
        """The catalog band held by ``asset_key`` for ``sensor_id``, or None."""
        spec = self.asset(asset_key)
        if spec is None:
            return None
        name = spec.band_name(sensor_id)
        if name is None:
            return None
        return catalogs.get_sensor(sensor_id).band(name)


def _pfail(origin: str, msg: str, field_: str | None = None) -> ProfileError:
    where = f"{origin}: field {field_!r}" if field_ else origin
    return ProfileError(f"{where}: {msg}")


def _opt_number(value, origin, field_) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _pfail(origin, f"must be a finite number, got {value!r}", field_)
    return float(value)


def _str_tuple(value, origin, field_) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _pfail(origin, f"must be a list of non-empty strings, got {value!r}", field_)
    return tuple(v.strip() for v in value)


def _profile_from_mapping(data: Mapping[str, Any], origin: str, path: str | None = None,
                          stem: str | None = None) -> StacProfile:
    unknown = sorted(set(data) - {"profile", "defaults", "assets"})
    if unknown:
        raise _pfail(origin, f"unknown top-level key(s) {unknown}; expected [profile], [defaults], [assets]",
                     unknown[0])
    meta = data.get("profile")
    if not isinstance(meta, Mapping):
        raise _pfail(origin, "missing [profile] table", "profile")
    for f in _PROFILE_REQUIRED:
        if not isinstance(meta.get(f), str) or not meta[f].strip():
            raise _pfail(origin, "required, a non-empty string", f)
    extra = sorted(set(meta) - _PROFILE_KEYS)
    if extra:
        raise _pfail(origin, f"unknown field(s) {extra} in [profile]; allowed: {sorted(_PROFILE_KEYS)}", extra[0])
    pid = meta["id"]
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", pid):
        raise _pfail(origin, f"must be lowercase letters, digits and '_', got {pid!r}", "id")
    if stem is not None and stem != pid:
        raise _pfail(origin, f"id {pid!r} must equal the file name stem {stem!r}", "id")

    def sensor_id(name: str, field_: str) -> str:
        try:
            return catalogs.get_sensor(name).id
        except catalogs.UnknownSensorError as e:
            raise _pfail(origin, str(e), field_) from None

    default_sensor = sensor_id(meta["sensor"], "sensor")
    by_platform_raw = meta.get("sensor_by_platform") or {}
    if not isinstance(by_platform_raw, Mapping):
        raise _pfail(origin, "must be a table of platform = sensor id", "sensor_by_platform")
    by_platform = tuple((str(p), sensor_id(s, f"sensor_by_platform.{p}")) for p, s in by_platform_raw.items())
    sensors = list(dict.fromkeys([default_sensor, *(s for _, s in by_platform)]))

    radiometry_ = meta.get("radiometry", "toa")
    if radiometry_ not in _RADIOMETRY:
        raise _pfail(origin, f"must be one of {list(_RADIOMETRY)}, got {radiometry_!r}", "radiometry")
    offset_rule = meta.get("offset_rule", "raster_bands")
    if offset_rule not in _OFFSET_RULES:
        raise _pfail(origin, f"must be one of {list(_OFFSET_RULES)}, got {offset_rule!r}", "offset_rule")

    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping) or set(defaults) - {"scale", "offset", "nodata"}:
        raise _pfail(origin, "must be a table with scale, offset, nodata", "defaults")
    d_scale = _opt_number(defaults.get("scale"), origin, "defaults.scale")
    if d_scale is not None and d_scale <= 0:
        raise _pfail(origin, f"must be > 0, got {d_scale:g}", "defaults.scale")

    raw_assets = data.get("assets")
    if not isinstance(raw_assets, Mapping) or not raw_assets:
        raise _pfail(origin, "needs an [assets] table of asset key = band name", "assets")
    assets: list[AssetSpec] = []
    held: dict[tuple[str, str], str] = {}
    for key, entry in raw_assets.items():
        fname = f"assets.{key}"
        if isinstance(entry, str):
            entry = {"band": entry}
        if not isinstance(entry, Mapping):
            raise _pfail(origin, f"must be a band name or a table {{band = ..., scale = ...}}, got {entry!r}", fname)
        bad = sorted(set(entry) - _ASSET_KEYS)
        if bad:
            raise _pfail(origin, f"unknown field(s) {bad}; allowed: {sorted(_ASSET_KEYS)}", fname)
        band = entry.get("band")
        if isinstance(band, str):
            pairs = [(s, band) for s in sensors]
            stored = (("*", band),)
        elif isinstance(band, Mapping) and band:
            pairs = [(sensor_id(s, f"{fname}.band"), b) for s, b in band.items()]
            stored = tuple(pairs)
            unknown_sensors = sorted({s for s, _ in pairs} - set(sensors))
            if unknown_sensors:
                raise _pfail(origin, f"sensor(s) {unknown_sensors} are not sensors of this profile "
                             f"{sensors}", f"{fname}.band")
        else:
            raise _pfail(origin, f"needs band = \"<band name>\" or a table sensor = band, got {band!r}", fname)
        for s, b in pairs:
            try:
                cat_band = catalogs.get_sensor(s).band(b)
            except catalogs.UnknownBandError as e:
                raise _pfail(origin, str(e), f"{fname}.band") from None
            if (s, cat_band.name) in held:
                raise _pfail(origin, f"band {cat_band.name} of {s} is already held by asset "
                             f"{held[(s, cat_band.name)]!r}", fname)
            held[(s, cat_band.name)] = key
        scale = _opt_number(entry.get("scale"), origin, f"{fname}.scale")
        if scale is not None and scale <= 0:
            raise _pfail(origin, f"must be > 0, got {scale:g}", f"{fname}.scale")
        assets.append(AssetSpec(
            key=str(key), bands=stored, scale=scale,
            offset=_opt_number(entry.get("offset"), origin, f"{fname}.offset"),
            nodata=_opt_number(entry.get("nodata"), origin, f"{fname}.nodata"),
        ))
    return StacProfile(
        id=pid,
        title=str(meta.get("title", pid)).strip(),
        api=meta["api"].strip(),
        api_url=str(meta.get("api_url", "")).strip(),
        collection=meta["collection"].strip(),
        aliases=_str_tuple(meta.get("aliases"), origin, "aliases"),
        sensor=default_sensor,
        sensor_by_platform=by_platform,
        level=str(meta.get("level", "")).strip(),
        radiometry=radiometry_,
        offset_rule=offset_rule,
        default_scale=d_scale,
        default_offset=_opt_number(defaults.get("offset"), origin, "defaults.offset"),
        default_nodata=_opt_number(defaults.get("nodata"), origin, "defaults.nodata"),
        assets=tuple(assets),
        references=_str_tuple(meta.get("references"), origin, "references"),
        notes=str(meta.get("notes", "")).strip(),
        path=path,
    )


def load_profile_file(path: str | os.PathLike) -> StacProfile:
    """Parse and validate one collection profile TOML file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``<id>.toml`` file in the format of ``catalogs/stac_profiles/*.toml``.

    Returns
    -------
    StacProfile

    Raises
    ------
    ProfileError
        If the file is unreadable, not TOML, or names a sensor or band the catalogs do not
        know.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_bytes().decode("utf-8"))
    except OSError as e:
        raise ProfileError(f"{p}: cannot read profile file: {e}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ProfileError(f"{p}: not a valid UTF-8 TOML file: {e}") from None
    return _profile_from_mapping(data, str(p), path=str(p), stem=p.stem)


@functools.lru_cache(maxsize=1)
def _builtin_profile_dir() -> Path | None:
    # Same places as sensei_xr.catalogs: package data in a wheel, else <repo>/catalogs.
    try:
        from importlib.resources import files

        res = files("sensei_xr") / "_catalogs" / "stac_profiles"
        if isinstance(res, Path) and res.is_dir():
            return res
    except (ModuleNotFoundError, TypeError, OSError):
        pass
    src = Path(__file__).resolve().parents[2] / "catalogs" / "stac_profiles"
    return src if src.is_dir() else None


def profile_dirs() -> list[Path]:
    """Directories searched for profile ``*.toml`` files (later ones override earlier ones).

    The shipped profiles (package data ``sensei_xr/_catalogs/stac_profiles`` in a wheel,
    else ``<repo>/catalogs/stac_profiles``), then each directory in
    ``$SENSEI_XR_STAC_PROFILE_PATH``.
    """
    dirs = [d for d in [_builtin_profile_dir()] if d is not None]
    for entry in os.environ.get(PROFILE_ENV_VAR, "").split(os.pathsep):
        if entry.strip() and Path(entry.strip()).is_dir():
            dirs.append(Path(entry.strip()))
    return dirs


@functools.lru_cache(maxsize=8)
def _load_profiles(dirs: tuple[str, ...]) -> dict[str, StacProfile]:
    out: dict[str, StacProfile] = {}
    for d in dirs:
        for f in sorted(Path(d).glob("*.toml")):
            prof = load_profile_file(f)
            out[prof.id] = prof
    return out


def _profiles() -> dict[str, StacProfile]:
    return _load_profiles(tuple(str(d) for d in profile_dirs()))


def list_profiles() -> list[str]:
    """Sorted ids of the known collection profiles."""
    return sorted(_profiles())


def load_profile(name: "str | os.PathLike | StacProfile") -> StacProfile:
    """A collection profile by id, alias, collection id or file path.

    Parameters
    ----------
    name : str, os.PathLike or StacProfile
        A profile id (``"earth_search_sentinel_2_l2a"``), an alias
        (``"earth-search/sentinel-2-l2a"``), a collection id served by exactly one profiled
        API (``"sentinel-2-l1c"``), or the path of a profile TOML file.

    Returns
    -------
    StacProfile

    Raises
    ------
    ProfileError
        If nothing matches, or a collection id is served by several APIs (the message lists
        the profile ids to choose from).
    """
    if isinstance(name, StacProfile):
        return name
    text = os.fspath(name)
    if text.endswith(".toml") and Path(text).is_file():
        return load_profile_file(text)
    profiles = _profiles()
    for p in profiles.values():
        if any(_key(n) == _key(text) for n in p.names):
            return p
    by_collection = [p for p in profiles.values() if _key(p.collection) == _key(text)]
    if len(by_collection) == 1:
        return by_collection[0]
    if len(by_collection) > 1:
        raise ProfileError(
            f"collection {text!r} is served by several APIs: pass one of "
            f"{sorted(p.id for p in by_collection)}"
        )
    raise ProfileError(
        f"no collection profile called {text!r}; known profiles: {sorted(profiles)} "
        f"(aliases such as 'earth-search/sentinel-2-l2a' work too). Add your own as a TOML file "
        f"in a directory listed in ${PROFILE_ENV_VAR}."
    )


def find_profile(collection: str | None, asset_keys: Iterable[str] = (),
                 api_url: str | None = None) -> StacProfile | None:
    """The profile of a collection, chosen by id, the API's host and the asset keys.

    Parameters
    ----------
    collection : str or None
        The items' collection id.
    asset_keys : iterable of str
        Asset keys of the items: several APIs serve a collection of the same id with
        different keys (Earth Search ``red`` vs Planetary Computer ``B04``).
    api_url : str, optional
        The API the items came from; a profile of the same host wins.

    Returns
    -------
    StacProfile or None
        None when no profile has that collection id or none shares an asset key with
        the items.
    """
    if not collection:
        return None
    keys = set(asset_keys)
    candidates = [p for p in _profiles().values() if p.collection == collection]
    if api_url:
        host = urlparse(api_url).hostname
        same_host = [p for p in candidates if p.api_url and urlparse(p.api_url).hostname == host]
        if same_host:
            candidates = same_host
    scored = sorted(((len(keys & set(p.asset_keys)), p.id, p) for p in candidates), reverse=True)
    if not scored or (keys and scored[0][0] == 0):
        return None
    return scored[0][2]


# ------------------------------------------------------------------------------ search


#: Seconds a STAC API may take to accept a connection and, after that, between two bytes
#: of its answer (requests' timeout semantics). Public APIs answer a search page within a
#: few seconds; a server that accepts and never answers would otherwise hang for ever.
DEFAULT_TIMEOUT_S = 60.0

_HTTP_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                 405: "Method Not Allowed", 429: "Too Many Requests", 500: "Internal Server Error",
                 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def _check_timeout(timeout) -> float | tuple[float, float]:
    """A positive number of seconds, or a (connect, read) pair of them."""
    values = timeout if isinstance(timeout, (tuple, list)) and len(timeout) == 2 else (timeout,)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ValueError(
                f"timeout={timeout!r}: give a positive number of seconds (or a (connect, read) "
                f"pair), e.g. timeout={DEFAULT_TIMEOUT_S:g}; every request to the API needs one"
            )
    return (float(values[0]), float(values[1])) if len(values) == 2 else float(values[0])


def _stac_io():
    """pystac-client's HTTP layer, retrying only failed connections.

    Its default retries every failed request five times, read timeouts included, so a
    server that accepts and never answers held a search for six timeouts; an answer that
    does not come within the timeout is reported at once.
    """
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    return StacApiIO(max_retries=Retry(total=2, connect=2, read=0, status=0, other=0, backoff_factor=0.5))


def _api_error(url: str, e: Exception, timeout=None) -> StacError:
    """What went wrong talking to ``url``, in one line: the network, or the API's answer."""
    status = getattr(e, "status_code", None)
    text = " ".join(str(e).split())
    if status is not None:
        reason = _HTTP_REASONS.get(int(status), "")
        body = f": {text[:300]}" if text else ""
        hint = (" Is it the API's root URL (e.g. https://earth-search.aws.element84.com/v1)?"
                if int(status) == 404 else "")
        return StacConnectionError(
            f"the STAC API at {url} answered HTTP {status}{' ' + reason if reason else ''}{body}.{hint}")
    if "Connection refused" in text or "Failed to establish" in text:
        why = "connection refused (is the server running, and on this port?)"
    elif "Name or service not known" in text or "getaddrinfo" in text or "NameResolution" in text:
        why = "the host name does not resolve"
    elif "timed out" in text.lower() or "timeout" in text.lower():
        limit = f" within {timeout:g} s" if isinstance(timeout, (int, float)) else ""
        why = (f"no answer{limit} (the request timed out: the server is slow, overloaded or not a "
               "STAC API; raise timeout=..., CLI --timeout, if it is only slow)")
    else:
        why = text or type(e).__name__
    return StacConnectionError(f"cannot reach the STAC API at {url}: {why}")


_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?")


def check_datetime(value: str, name: str = "datetime") -> None:
    """Refuse a STAC ``datetime`` that is not an RFC 3339 instant or interval.

    Accepted: an instant (``2023-07-01T10:30:00Z``, with an offset or fraction), a date
    (``2023-07-01``), a month (``2023-07``) or a year (``2023``), or an interval of two of
    them with open ends written ``..`` (``2023-07-01/2023-07-31``, ``2023-07-01/..``).

    Parameters
    ----------
    value : str
        The datetime text.
    name : str
        How the caller calls it, for the message (e.g. ``"--datetime"``).

    Raises
    ------
    StacSearchError
        Naming ``name``, the part that is wrong and an example.
    """
    import datetime as dt

    example = "e.g. 2023-07-01/2023-07-31, 2023-07-01T10:00:00Z or 2023-07"

    def fail(why: str) -> StacSearchError:
        return StacSearchError(f"{name} {value!r} is not an RFC 3339 date, time or interval ({why}); {example}")

    if not isinstance(value, str):
        return  # datetime objects and pairs: pystac-client checks those
    parts = value.strip().split("/")
    if len(parts) > 2 or not value.strip():
        raise fail("give one instant or two separated by one '/'")
    bounds = []
    for part in parts:
        part = part.strip()
        if part in ("..", "") and len(parts) == 2:
            bounds.append(None)
            continue
        try:
            if _DATETIME.fullmatch(part):
                moment = dt.datetime.fromisoformat(part.replace("z", "Z").replace("Z", "+00:00"))
                if moment.tzinfo is None:  # pystac-client reads a time without offset as UTC
                    moment = moment.replace(tzinfo=dt.timezone.utc)
                bounds.append((moment, moment))
            elif _DATE.fullmatch(part):
                fields = [int(v) for v in part.split("-")]
                year, month, day = (fields + [1, 1])[:3]
                start = dt.datetime(year, month, day, tzinfo=dt.timezone.utc)
                # A date, month or year stands for the whole period (as pystac-client sends it).
                if len(fields) == 3:
                    end = start + dt.timedelta(days=1)
                elif len(fields) == 2:
                    end = start.replace(year=year + month // 12, month=month % 12 + 1)
                else:
                    end = start.replace(year=year + 1)
                bounds.append((start, end - dt.timedelta(microseconds=1)))
            else:
                raise fail(f"{part!r} is neither YYYY[-MM[-DD]] nor YYYY-MM-DDThh:mm:ssZ")
        except ValueError as e:
            if isinstance(e, StacSearchError):
                raise
            raise fail(f"{part!r}: {e}") from None
    if len(bounds) == 2 and None not in bounds and bounds[0][0] > bounds[1][1]:
        raise fail("the interval ends before it starts")
    if bounds == [None, None]:
        raise fail("both ends are open: leave datetime out instead")


def check_bbox(bbox: Sequence[float], name: str = "bbox") -> list[float]:
    """Refuse a bbox that is not ``(west, south, east, north)`` in degrees.

    ``west > east`` is allowed: the box crosses the antimeridian.

    Returns
    -------
    list of float
    """
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise StacSearchError(f"{name} {bbox!r} is not four numbers (west, south, east, north) in degrees")
    w, s, e, n = values
    if not (-180 <= w <= 180 and -180 <= e <= 180 and -90 <= s <= 90 and -90 <= n <= 90):
        raise StacSearchError(
            f"{name} {bbox!r} is not (west, south, east, north) in degrees of longitude (-180..180) "
            "and latitude (-90..90): projected coordinates (metres)? give WGS 84 degrees")
    if s > n:
        raise StacSearchError(
            f"{name} {bbox!r}: south {s:g} is north of north {n:g}; the order is (west, south, east, "
            "north), e.g. (14.50, 45.80, 14.60, 45.90)")
    return values


def search(
    url: str,
    collections: str | Sequence[str],
    bbox: Sequence[float] | None = None,
    intersects: Mapping[str, Any] | None = None,
    datetime: str | None = None,
    query: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | str | None = None,  # noqa: A002 (the STAC API's name)
    max_items: int | None = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
    **kw: Any,
) -> list[dict]:
    """Search a STAC API and return the matching items as dicts.

    Parameters
    ----------
    url : str
        Root URL of the STAC API (e.g. ``"https://earth-search.aws.element84.com/v1"``).
    collections : str or sequence of str
        Collection id(s).
    bbox : sequence of 4 float, optional
        ``(west, south, east, north)`` in degrees (WGS 84).
    intersects : dict, optional
        A GeoJSON geometry (WGS 84).
    datetime : str, optional
        An RFC 3339 instant or interval, e.g. ``"2023-07-01/2023-07-31"``.
    query : dict, optional
        STAC API *query* extension, e.g. ``{"eo:cloud_cover": {"lt": 20}}``.
    filter : dict or str, optional
        CQL2 filter (STAC API *filter* extension); a dict is sent as ``cql2-json``, e.g.
        ``{"op": "<", "args": [{"property": "eo:cloud_cover"}, 20]}``.
    max_items : int, optional
        Stop after this many items.
    timeout : float or (float, float)
        Seconds each request may wait for the connection and then between bytes of the
        answer (requests' semantics; a pair gives them separately). Default
        :data:`DEFAULT_TIMEOUT_S`.
    **kw
        ``headers``, ``parameters``, ``request_modifier``, ``stac_io`` and ``modifier``
        (e.g. ``planetary_computer.sign_inplace``) go to ``pystac_client.Client.open``; the rest (``limit``, ``ids``, ``sortby``,
        ``filter_lang``, ...) to ``Client.search``.

    Returns
    -------
    list of dict
        Item dicts as the API returned them (``proj:epsg`` kept).

    Raises
    ------
    StacConnectionError
        If the API cannot be reached, does not answer within ``timeout`` or answers with an
        HTTP error (the message names the URL and the status).
    StacSearchError
        If ``datetime`` or ``bbox`` is malformed (before any request), the API refuses the
        search, or ``filter`` or ``query`` is given but the API does not implement that
        extension (some servers silently ignore them and return everything, or nothing).
    NoItemsError
        If nothing matched; the message repeats the search and says how to widen it.
    """
    from pystac_client import Client
    from pystac_client.conformance import ConformanceClasses
    from pystac_client.exceptions import APIError

    open_kw = {k: kw.pop(k) for k in ("headers", "modifier", "parameters", "request_modifier", "stac_io")
               if k in kw}
    cols = [collections] if isinstance(collections, str) else list(collections)
    timeout = _check_timeout(timeout)
    scheme = urlparse(str(url)).scheme.lower()
    if scheme not in ("http", "https") and not Path(str(url)).exists():
        guess = f"; did you mean 'https://{url}'?" if not scheme else ""
        raise StacSearchError(f"{url!r} is not the http(s) URL of a STAC API{guess}")
    open_kw.setdefault("stac_io", _stac_io())
    if datetime is not None:
        check_datetime(datetime)
    if bbox is not None:
        check_bbox(bbox)
    try:
        client = Client.open(url, timeout=timeout, **open_kw)
    except APIError as e:
        raise _api_error(url, e, timeout) from e
    except OSError as e:  # requests' ConnectionError is an OSError
        raise _api_error(url, e, timeout) from e
    for name, value, cls in (("filter", filter, ConformanceClasses.FILTER),
                             ("query", query, ConformanceClasses.QUERY)):
        if value is not None and not client.conforms_to(cls):
            raise StacSearchError(
                f"the STAC API at {url} does not implement the {name} extension, so "
                f"{name}={value!r} cannot be applied (it would be ignored, silently). Filter "
                "the returned items' properties in Python, or use a server that supports it "
                "(e.g. stac-fastapi-pgstac)."
            )
    if filter is not None and isinstance(filter, Mapping):
        kw.setdefault("filter_lang", "cql2-json")
    try:
        result = client.search(
            collections=cols, bbox=bbox, intersects=intersects, datetime=datetime,
            query=query, filter=filter, max_items=max_items, **kw,
        )
        items = list(result.items_as_dicts())
    except APIError as e:
        status = getattr(e, "status_code", None)
        if status is None or int(status) >= 500:  # the network or the server, not the search
            raise _api_error(url, e, timeout) from e
        raise StacSearchError(f"the STAC API at {url} refused the search (HTTP {status}): "
                              f"{' '.join(str(e).split())[:500]}") from e
    except OSError as e:
        raise _api_error(url, e, timeout) from e
    if not items:
        known = ""
        try:
            ids = sorted(c.id for c in client.get_collections())
            missing = [c for c in cols if c not in ids]
            if missing:
                known = f" The API has no collection {missing}; it has {ids}."
        except Exception:  # noqa: BLE001 - the hint is optional
            pass
        parts = [f"collection={cols if len(cols) > 1 else cols[0]!r}"]
        for name, value in (("bbox", bbox), ("intersects", intersects), ("datetime", datetime),
                            ("query", query), ("filter", filter)):
            if value is not None:
                parts.append(f"{name}={value!r}")
        raise NoItemsError(
            f"no items matched {', '.join(parts)} at {url}; widen the bbox or the date range, "
            f"or relax the query/filter.{known}"
        )
    return items


# ----------------------------------------------------------------------- item metadata

_RASTER_MEDIA = ("image/tiff", "image/x.geotiff", "image/vnd.stac.geotiff", "image/jp2")
# Roles that mark an asset as something other than a measured band.
_NON_SPECTRAL_ROLES = {
    "thumbnail", "overview", "visual", "metadata", "qa", "cloud", "cloud-shadow", "snow-ice",
    "water-mask", "land-water", "saturation", "data-mask", "graphic", "tiles", "iso-19139",
    "iso-19115", "angle", "angles", "sun-angle", "view-angle",
}
_EO_TOLERANCE_NM = 10.0  # public eo:bands round centres to 0.01 um


def _item_dict(item: Any) -> dict:
    if isinstance(item, Mapping):
        return dict(item)
    to_dict = getattr(item, "to_dict", None)
    if to_dict is not None:
        return to_dict(transform_hrefs=False)
    raise TypeError(f"items must be STAC item dicts (or pystac Items), got {type(item).__name__}")


def _epsg(mapping: Mapping[str, Any]) -> int | None:
    epsg = mapping.get("proj:epsg")
    if isinstance(epsg, (int, np.integer)) and not isinstance(epsg, bool):
        return int(epsg)
    code = mapping.get("proj:code")
    if isinstance(code, str):
        m = re.fullmatch(r"\s*EPSG:(\d+)\s*", code, re.IGNORECASE)
        if m:
            return int(m.group(1))
    return None


@dataclass
class _EoBand:
    name: str | None = None
    common_name: str | None = None
    center_um: float | None = None
    fwhm_um: float | None = None
    n_bands: int = 1


def _eo_band(asset: Mapping[str, Any]) -> _EoBand:
    """Band metadata of an asset from STAC 1.0 ``eo:bands`` or STAC 1.1 ``bands`` / fields."""
    eo = asset.get("eo:bands")
    if isinstance(eo, list) and eo:
        b = eo[0] if isinstance(eo[0], Mapping) else {}
        return _EoBand(b.get("name"), b.get("common_name"), _num(b.get("center_wavelength")),
                       _num(b.get("full_width_half_max")), len(eo))
    bands = asset.get("bands")
    if isinstance(bands, list) and bands:
        b = bands[0] if isinstance(bands[0], Mapping) else {}
        return _EoBand(b.get("name"), b.get("eo:common_name") or asset.get("eo:common_name"),
                       _num(b.get("eo:center_wavelength", asset.get("eo:center_wavelength"))),
                       _num(b.get("eo:full_width_half_max", asset.get("eo:full_width_half_max"))),
                       len(bands))
    return _EoBand(None, asset.get("eo:common_name"), _num(asset.get("eo:center_wavelength")),
                   _num(asset.get("eo:full_width_half_max")), 1)


def _num(v) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass
class _RasterMeta:
    scale: float | None = None
    offset: float | None = None
    nodata: Any = None
    data_type: str | None = None


def _raster_meta(asset: Mapping[str, Any]) -> _RasterMeta:
    """Scale/offset/nodata/data type from ``raster:bands`` (1.0) or STAC 1.1 fields."""
    rb = asset.get("raster:bands")
    if isinstance(rb, list) and rb and isinstance(rb[0], Mapping):
        b = rb[0]
        return _RasterMeta(_num(b.get("scale")), _num(b.get("offset")), b.get("nodata"), b.get("data_type"))
    bands = asset.get("bands")
    b = bands[0] if isinstance(bands, list) and bands and isinstance(bands[0], Mapping) else {}
    return _RasterMeta(
        _num(b.get("raster:scale", asset.get("raster:scale"))),
        _num(b.get("raster:offset", asset.get("raster:offset"))),
        b.get("nodata", asset.get("nodata")),
        b.get("data_type", asset.get("data_type")),
    )


def _is_raster_asset(asset: Mapping[str, Any]) -> bool:
    media = str(asset.get("type") or "").lower()
    if media and not any(media.startswith(m) for m in _RASTER_MEDIA):
        return False
    roles = {str(r).lower() for r in asset.get("roles") or []}
    return not (roles & _NON_SPECTRAL_ROLES)


def _item_sensor(item: Mapping[str, Any], profile: StacProfile | None) -> str | None:
    props = item.get("properties") or {}
    platform = props.get("platform")
    if profile is not None:
        return profile.sensor_for(platform if isinstance(platform, str) else None)
    for candidate in (platform, props.get("constellation")):
        if isinstance(candidate, str) and candidate.strip():
            try:
                return catalogs.get_sensor(candidate).id
            except catalogs.UnknownSensorError:
                continue
    return None


# --------------------------------------------------------------------- Sentinel-2 offset

_BASELINE_PROPS = ("s2:processing_baseline", "sentinel:processing_baseline", "processing:version")
_OFFSET_APPLIED_PROPS = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")


def sentinel2_item_offset(item: Mapping[str, Any], scale: float = 1e-4) -> float | None:
    """The additive Sentinel-2 offset of an item, in reflectance units, from its properties.

    The offset is ``-1000 DN x scale`` for processing baseline 04.00 and later (ESA's
    ``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET``) and 0 before it, unless the item says that
    the offset was already applied to the stored values (Earth Search
    ``earthsearch:boa_offset_applied: true``). The acquisition date is never used:
    reprocessed archive products carry the new baseline.

    Parameters
    ----------
    item : dict
        A STAC item (dict) of Sentinel-2 L1C or L2A.
    scale : float
        Reflectance per DN (1 / quantification value, 0.0001).

    Returns
    -------
    float or None
        The offset (e.g. -0.1), or None when the item carries no processing baseline.
    """
    props = item.get("properties") or {}
    for flag in _OFFSET_APPLIED_PROPS:
        if props.get(flag) is True:
            return 0.0
    for name in _BASELINE_PROPS:
        baseline = props.get(name)
        if baseline is None or baseline == "":
            continue
        try:
            return radiometry.sentinel2_offset(str(baseline)) * scale
        except radiometry.RadiometryError:
            continue
    return None


# ---------------------------------------------------------------------------- stacking


@dataclass
class _BandChoice:
    """How one asset key becomes one band of the stack."""

    key: str
    wavelengths: tuple[float, float, float]
    kind: str
    common_name: str
    sensor_band: str  # catalog band name, "" when the band came from item metadata only
    order: tuple


def _eo_wavelengths(eo: _EoBand) -> tuple[float, float, float] | None:
    if eo.center_um is None or eo.fwhm_um is None or eo.fwhm_um <= 0:
        return None
    c, w = 1000.0 * eo.center_um, 1000.0 * eo.fwhm_um
    return (c - w / 2.0, c, c + w / 2.0)


def _identify(key: str, asset: Mapping[str, Any], eo: _EoBand, sensor_id: str | None,
              profile: StacProfile | None):
    """The catalog band an asset holds, or None."""
    if sensor_id is None:
        return None
    if profile is not None:
        return profile.band(key, sensor_id)
    sensor = catalogs.get_sensor(sensor_id)
    for candidate in (key, eo.name, eo.common_name):
        if isinstance(candidate, str) and sensor.has_band(candidate):
            return sensor.band(candidate)
    return None


def _choose_band(item_id: str, key: str, asset: Mapping[str, Any], sensor_id: str | None,
                 profile: StacProfile | None, mode: str) -> _BandChoice | None:
    eo = _eo_band(asset)
    if eo.n_bands > 1:
        return None  # multi-band asset (e.g. an RGB visual): not one spectral band
    cat = _identify(key, asset, eo, sensor_id, profile)
    eo_wl = _eo_wavelengths(eo)
    if cat is not None and eo.center_um is not None:
        c = 1000.0 * eo.center_um
        if not (cat.min_nm - _EO_TOLERANCE_NM <= c <= cat.max_nm + _EO_TOLERANCE_NM):
            raise NoUsableBandsError(
                f"item {item_id!r}, asset {key!r}: its eo:bands centre {c:g} nm is outside band "
                f"{cat.name} of {sensor_id} ({cat.min_nm:g}-{cat.max_nm:g} nm) that the "
                f"{'profile ' + profile.id if profile else 'sensor catalog'} maps it to; fix the "
                "mapping, or pass wavelengths='items' / collection_profile=False"
            )
    if eo_wl is not None and (mode == "items" or cat is None):
        wl = eo_wl
        kind = cat.kind if cat is not None else ("thermal" if wl[1] >= THERMAL_FROM_NM else "reflective")
    elif cat is not None:
        wl = cat.wavelengths_nm
        kind = cat.kind
    else:
        return None
    common = (cat.common_name if cat is not None else None) or eo.common_name or ""
    if cat is not None:
        order = (0, catalogs.get_sensor(sensor_id).band_names.index(cat.name), wl[1])
    else:
        order = (1, 0, wl[1])
    return _BandChoice(key, tuple(float(v) for v in wl), kind, str(common),
                       cat.name if cat is not None else "", order)


def _native_resolution(item: Mapping[str, Any], asset: Mapping[str, Any]) -> tuple[float, float] | None:
    props = item.get("properties") or {}
    tr = asset.get("proj:transform", props.get("proj:transform"))
    if isinstance(tr, (list, tuple)) and len(tr) >= 6:
        a, b, _, d, e, _ = (float(v) for v in tr[:6])
        if b == 0 and d == 0 and a != 0 and e != 0:
            return (abs(a), abs(e))
    return None


def _sort_key(asset: Mapping[str, Any], key: str) -> tuple:
    # Prefer COGs over JPEG 2000 twins ("red" over "red-jp2") when two assets hold one band.
    media = str(asset.get("type") or "").lower()
    return ("jp2" in media or key.lower().endswith("jp2"), len(key), key)


def _scale_offset(item: Mapping[str, Any], key: str, asset: Mapping[str, Any], choice: _BandChoice,
                  sensor_id: str | None, profile: StacProfile | None) -> tuple[float, float]:
    """``value = stored * scale + offset`` for one asset of one item."""
    rm = _raster_meta(asset)
    spec = profile.asset(key) if profile is not None else None
    scale = rm.scale
    if scale is None and spec is not None and spec.scale is not None:
        scale = spec.scale
    if scale is None and profile is not None and profile.default_scale is not None:
        scale = profile.default_scale
    offset = rm.offset
    if offset is None and spec is not None and spec.offset is not None:
        offset = spec.offset
    if offset is None and profile is not None and profile.default_offset is not None:
        offset = profile.default_offset
    integer = isinstance(rm.data_type, str) and re.fullmatch(r"u?int\d+", rm.data_type) is not None
    s2 = (profile.offset_rule == "sentinel2_baseline") if profile is not None else (
        sensor_id == "sentinel2_msi" and (integer or rm.data_type is None))
    if s2 and choice.kind == "reflective":
        if scale is None:
            scale = 1e-4  # Sentinel-2 quantification value 10000
        decided = sentinel2_item_offset(item, scale)
        if decided is not None:
            offset = decided
        elif offset is None:
            raise StacError(
                f"item {item.get('id')!r}: cannot tell the Sentinel-2 offset of asset {key!r}: "
                "the item has no s2:processing_baseline (or earthsearch:boa_offset_applied) "
                "and no raster:bands offset. Pass calibrate=False to get the stored values."
            )
    if scale is None and integer:
        raise StacError(
            f"item {item.get('id')!r}, asset {key!r} holds integer values ({rm.data_type}) and "
            "no scale is known (no raster:bands scale, no collection profile): pass "
            "collection_profile=... or calibrate=False to get the stored values."
        )
    return (1.0 if scale is None else float(scale), 0.0 if offset is None else float(offset))


_KEEP_ASSET_FIELDS = {"href", "type", "title", "roles", "gsd"}


def _normalised_item(item: dict, keys: Sequence[str],
                     scale_offset: Mapping[str, tuple[float, float]] | None) -> dict:
    """A copy of ``item`` that stackstac 0.5 reads right: ``proj:epsg`` set, one
    ``raster:bands`` entry carrying the decided scale/offset, band metadata removed (the
    wavelength coordinates are attached afterwards)."""
    out = dict(item)
    props = dict(item.get("properties") or {})
    epsg = _epsg(props)
    if epsg is not None:
        props["proj:epsg"] = epsg
    out["properties"] = props
    assets = {}
    for key in keys:
        if key not in (item.get("assets") or {}):
            continue
        src = item["assets"][key]
        # Keep what stackstac needs; band and raster metadata would become misleading band
        # coordinates (the values are scaled, the wavelengths are attached afterwards).
        a = {k: v for k, v in src.items() if k in _KEEP_ASSET_FIELDS or k.startswith("proj:")}
        a_epsg = _epsg(src)
        if a_epsg is not None:
            a["proj:epsg"] = a_epsg
        if scale_offset is not None:
            s, o = scale_offset[key]
            # NumPy-scalar float32: stackstac checks np.can_cast(type(scale), dtype).
            a["raster:bands"] = [{"scale": np.float32(s), "offset": np.float32(o)}]
        assets[key] = a
    out["assets"] = assets
    return out


def _asset_timeout(timeout) -> float:
    """Seconds an asset read may wait for an answer: the read part of a (connect, read) pair."""
    t = _check_timeout(timeout)
    return float(t[1] if isinstance(t, tuple) else t)


def _gdal_env(timeout_s: float = 60.0):
    """stackstac's GDAL options, with an ``open_vrt`` layer of its own and HTTP timeouts.

    Every asset request (COG header and range reads over HTTP) gives up after
    ``timeout_s`` seconds without an answer (10 s to connect), with three retries, so a
    server that accepts and never answers cannot hang a compute.

    stackstac's default has no ``open_vrt`` options, so its ``open_vrt`` environment is the
    very ``rasterio.Env`` object of ``open``, entered again inside itself when an asset is
    warped (another grid or resolution): the inner entry overwrites what the outer one
    saved, and the outer exit then leaves the open options (``EMPTY_DIR`` directory
    listing among them) installed on the reading thread for good; a later ENVI write on
    that thread fails with "Unknown GDAL Error". The same options in a distinct
    environment nest and unwind as they should.
    """
    from stackstac.rio_reader import DEFAULT_GDAL_ENV

    timeouts = dict(GDAL_HTTP_TIMEOUT=str(max(1, int(round(timeout_s)))),
                    GDAL_HTTP_CONNECTTIMEOUT=str(max(1, min(10, int(round(timeout_s))))),
                    GDAL_HTTP_MAX_RETRY="3", GDAL_HTTP_RETRY_DELAY="1")
    return DEFAULT_GDAL_ENV.updated(always=timeouts,
                                    open_vrt=dict(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", VSI_CACHE=True))


class _SenseiReader(_AutoParallelRioReader):
    """stackstac's reader, with errors that name the asset href and say what to check."""

    def _open(self):
        try:
            return super()._open()
        except RuntimeError as e:
            raise _asset_error(self.url, e) from e

    def read(self, window, **kwargs):
        try:
            return super().read(window, **kwargs)
        except RuntimeError as e:
            raise _asset_error(self.url, e) from e


def _asset_error(url: str, e: Exception) -> StacAssetError:
    cause = str(e.__cause__ or e).rstrip(". ")
    if "does not exist in the file system" in cause and "://" in url:
        cause += " (this is how GDAL reports a URL it cannot fetch)"
    return StacAssetError(
        f"cannot read the STAC asset at {url}: {cause}. Check that the href is reachable from "
        "here (network, credentials, requester-pays buckets need AWS_REQUEST_PAYER=requester, "
        "Planetary Computer hrefs need signing with planetary_computer.sign) and that it is a "
        "raster GDAL can read."
    )


def _aligned_bounds(bounds, origin: tuple[float, float], res: tuple[float, float]):
    """Grow ``bounds`` outwards to whole pixels of the grid through ``origin``."""
    x0, y0 = origin
    rx, ry = res
    minx = x0 + math.floor((bounds[0] - x0) / rx + 1e-9) * rx
    maxx = x0 + math.ceil((bounds[2] - x0) / rx - 1e-9) * rx
    miny = y0 + math.floor((bounds[1] - y0) / ry + 1e-9) * ry
    maxy = y0 + math.ceil((bounds[3] - y0) / ry - 1e-9) * ry
    return (minx, miny, maxx, maxy)


def stack_items(
    items: Sequence[Mapping[str, Any]],
    *,
    assets: Sequence[str] | None = None,
    bands: Sequence[str] | None = None,
    sensor: str | None = None,
    collection_profile: "str | StacProfile | bool | None" = None,
    resolution: float | tuple[float, float] | None = None,
    epsg: int | None = None,
    bounds: Sequence[float] | None = None,
    bounds_latlon: Sequence[float] | None = None,
    chunksize: int = 1024,
    calibrate: bool = True,
    wavelengths: str = "auto",
    resampling: str = "nearest",
    api_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> "xarray.DataArray":  # noqa: F821
    """Stack STAC items as a lazy, wavelength-aware ``(time, band, y, x)`` DataArray.

    Parameters
    ----------
    items : sequence of dict
        STAC items, as dicts (e.g. from :func:`search`); pystac Items are converted.
    assets : sequence of str, optional
        Asset keys to stack, in that order. Default: every spectral asset (see below).
    bands : sequence of str, optional
        Alternative to ``assets``: band names or aliases of the sensor (``"B04"``, ``"red"``,
        ``"nir08"``) or asset keys, in that order.
    sensor : str, optional
        Catalog sensor id or alias for all items. Default: from the collection profile, else
        from each item's ``platform`` / ``constellation``.
    collection_profile : str, StacProfile or bool, optional
        Profile id/alias (see :func:`list_profiles`). Default (None): found from the items'
        collection id and asset keys (:func:`find_profile`); False: use none.
    resolution : float or (float, float), optional
        Output pixel size in CRS units (m). Default: the most common native resolution of
        the stacked assets (the finest on a tie), as ``open_scene`` does.
    epsg : int, optional
        Output CRS. Default: the items' CRS (all must share one).
    bounds : sequence of 4 float, optional
        Output bounds ``(minx, miny, maxx, maxy)`` in the output CRS.
    bounds_latlon : sequence of 4 float, optional
        Output bounds in degrees ``(west, south, east, north)``; grown to whole pixels of
        the assets' own grid (no resampling).
    chunksize : int
        Dask chunk size in pixels for y and x; time is chunked by 1, band is one chunk.
    calibrate : bool
        Apply scale and offset (reflectance; kelvin for thermal bands). False: the stored
        values as float32.
    wavelengths : {"auto", "items", "catalog"}
        Where band wavelengths come from: ``"auto"`` the sensor catalog for bands it
        identifies, item metadata (``eo:bands``, STAC 1.1 ``bands``) for the others;
        ``"items"`` item metadata first; ``"catalog"`` catalog bands only.
    resampling : str
        Rasterio resampling name for assets not on the output grid (default nearest).
    api_url : str, optional
        The API the items came from, to choose among profiles of the same collection id.
    timeout : float
        Seconds an asset read over HTTP may wait for an answer (GDAL's
        ``GDAL_HTTP_TIMEOUT``; 3 retries), so an unresponsive server fails the read
        instead of hanging it.

    Returns
    -------
    xarray.DataArray
        Dask-backed float32 ``(time, band, y, x)``, NaN at no data. The band coordinate holds
        the asset keys, with coordinates ``wavelength_min_nm``, ``wavelength_center_nm``,
        ``wavelength_max_nm`` (nm), ``band_kind``, ``common_name``, ``sensor_band`` (catalog
        band name) and stackstac's ``center_wavelength`` / ``full_width_half_max`` (um).
        ``rio`` CRS and transform are set; ``attrs`` holds ``sensor`` (when all items share
        one), ``radiometry`` (``"toa"``, ``"surface"``, ``"as_stored"`` or ``"DN"``),
        ``stac_profile`` and ``stac_collections``.

    Raises
    ------
    NoItemsError
        If ``items`` is empty.
    NoUsableBandsError
        If an item has none of the bands, a requested band or asset is unknown, or no band
        has wavelengths (no profile, no known sensor and no ``eo:bands``).
    StacError
        If items cannot share one grid (several CRSs without ``epsg=``) or one band set
        (several sensors), or an offset cannot be decided.
    """
    import rioxarray  # noqa: F401  (registers .rio)
    import stackstac
    from rasterio.enums import Resampling

    if assets is not None and bands is not None:
        raise ValueError("give assets=... or bands=..., not both")
    if wavelengths not in ("auto", "items", "catalog"):
        raise ValueError(f"wavelengths must be 'auto', 'items' or 'catalog', got {wavelengths!r}")
    dicts = [_item_dict(it) for it in items]
    if not dicts:
        raise NoItemsError("no items to stack: the list is empty (widen the search)")
    sensor_id = catalogs.get_sensor(sensor).id if sensor else None

    # --- profile and sensor of each item
    fixed_profile = None
    if collection_profile not in (None, False, True):
        fixed_profile = load_profile(collection_profile)
    profiles: dict[str, StacProfile | None] = {}
    item_profile: list[StacProfile | None] = []
    item_sensor: list[str | None] = []
    for it in dicts:
        if collection_profile is False:
            prof = None
        elif fixed_profile is not None:
            prof = fixed_profile
        else:
            cid = it.get("collection")
            if cid not in profiles:
                keys = {k for d in dicts if d.get("collection") == cid for k in (d.get("assets") or {})}
                profiles[cid] = find_profile(cid, keys, api_url)
            prof = profiles[cid]
        item_profile.append(prof)
        item_sensor.append(sensor_id or _item_sensor(it, prof))

    # --- which assets are bands, and their wavelengths
    mode = "auto" if wavelengths == "catalog" else wavelengths
    choices: dict[str, _BandChoice] = {}
    item_keys: list[list[str]] = []
    explicit = list(assets) if assets is not None else None
    for it, prof, sid in zip(dicts, item_profile, item_sensor):
        found = []
        it_assets = it.get("assets") or {}
        if explicit is not None:
            candidates = [k for k in explicit if k in it_assets]
        elif prof is not None:
            candidates = [k for k in prof.asset_keys if k in it_assets]
        else:
            candidates = [k for k, a in it_assets.items() if _is_raster_asset(a)]
        for key in candidates:
            choice = _choose_band(it.get("id"), key, it_assets[key], sid, prof, mode)
            if choice is not None and wavelengths == "catalog" and not choice.sensor_band:
                choice = None
            if choice is None:
                if explicit is not None:
                    raise NoUsableBandsError(
                        f"asset {key!r} of item {it.get('id')!r} is not a spectral band with "
                        "known wavelengths (no eo:bands wavelengths and "
                        f"{'no band of sensor ' + sid if sid else 'no known sensor'} of that "
                        "name); leave it out of assets=..."
                    )
                continue
            prev = choices.get(key)
            if prev is not None and (not np.allclose(prev.wavelengths, choice.wavelengths, atol=1e-6)
                                     or prev.kind != choice.kind):
                raise StacError(
                    f"asset {key!r} holds different bands in different items ({prev.sensor_band or prev.wavelengths} "
                    f"vs {choice.sensor_band or choice.wavelengths} in item {it.get('id')!r}): the items "
                    "come from different sensors. Stack one sensor at a time, e.g. search with "
                    "query={'platform': {'eq': 'landsat-8'}}, or pass sensor=..."
                )
            choices.setdefault(key, choice)
            found.append(key)
        item_keys.append(found)

    if not choices:
        some = dicts[0]
        raise NoUsableBandsError(
            f"no usable spectral band in {len(dicts)} item(s) (e.g. {some.get('id')!r} with assets "
            f"{sorted(some.get('assets') or {})}): no collection profile matches collection "
            f"{some.get('collection')!r} (profiles: {list_profiles()}), "
            f"{'the sensor is ' + repr(item_sensor[0]) if item_sensor[0] else 'no sensor is known (pass sensor=...)'}"
            ", and no asset has eo:bands wavelengths (center_wavelength and full_width_half_max)."
        )

    # Drop JPEG 2000 twins and other duplicates of one band (keep the COG).
    if explicit is None:
        by_band: dict[tuple, list[str]] = collections.defaultdict(list)
        for key, ch in choices.items():
            by_band[(ch.sensor_band or None, tuple(round(v, 3) for v in ch.wavelengths))].append(key)
        asset_of = {}
        for it in dicts:
            for k, a in (it.get("assets") or {}).items():
                asset_of.setdefault(k, a)
        for keys in by_band.values():
            if len(keys) > 1:
                keep = min(keys, key=lambda k: _sort_key(asset_of[k], k))
                for k in keys:
                    if k != keep:
                        del choices[k]
        item_keys = [[k for k in ks if k in choices] for ks in item_keys]

    if bands is not None:
        selected = []
        for want in bands:
            match = [k for k, ch in choices.items() if _key(k) == _key(want)
                     or (ch.sensor_band and _key(ch.sensor_band) == _key(want))
                     or (ch.common_name and _key(ch.common_name) == _key(want))]
            if not match:
                sids = {s for s in item_sensor if s}
                for sid in sids:
                    sens = catalogs.get_sensor(sid)
                    if sens.has_band(want):
                        name = sens.band(want).name
                        match = [k for k, ch in choices.items() if ch.sensor_band == name]
                        break
            if not match:
                raise NoUsableBandsError(
                    f"band {want!r} is not among the items' spectral bands "
                    f"{[(k, choices[k].sensor_band) for k in choices]}"
                )
            selected.append(match[0])
        keys = list(dict.fromkeys(selected))
    elif explicit is not None:
        keys = [k for k in explicit if k in choices]
    else:
        keys = sorted(choices, key=lambda k: choices[k].order)

    for it, found in zip(dicts, item_keys):
        if not set(found) & set(keys):
            raise NoUsableBandsError(
                f"item {it.get('id')!r} has none of the bands {keys}: its assets are "
                f"{sorted(it.get('assets') or {})}. Drop it from the items, or stack the "
                "assets it has with assets=[...]."
            )

    known_sensors = {s for s in item_sensor}
    for key in keys:
        if choices[key].sensor_band and len(known_sensors - {None}) > 1:
            raise StacError(
                f"the items come from several sensors {sorted(s for s in known_sensors if s)}; "
                "their bands differ: stack one sensor at a time (e.g. "
                "query={'platform': {'eq': 'landsat-8'}}) or pass sensor=..."
            )

    # --- radiometry, per item and asset
    norm = []
    for it, prof, sid in zip(dicts, item_profile, item_sensor):
        so = None
        if calibrate:
            so = {k: _scale_offset(it, k, it["assets"][k], choices[k], sid, prof)
                  for k in keys if k in (it.get("assets") or {})}
        norm.append(_normalised_item(it, keys, so))

    # --- output grid
    if resolution is None and epsg is None:
        res = [r for it in norm for k in keys if k in it["assets"]
               for r in [_native_resolution(it, it["assets"][k])] if r is not None]
        if res:
            counts = collections.Counter((round(r[0], 6), round(r[1], 6)) for r in res)
            top = max(counts.values())
            resolution = min((r for r, c in counts.items() if c == top), key=lambda r: r[0] * r[1])
    if isinstance(resolution, (int, float)):
        resolution = (float(resolution), float(resolution))
    if bounds is None and bounds_latlon is not None:
        bounds = _latlon_to_grid(norm, keys, bounds_latlon, epsg, resolution)

    stack_kw = dict(
        assets=keys, epsg=epsg, resolution=resolution, bounds=bounds, snap_bounds=False,
        resampling=getattr(Resampling, resampling), chunksize=(1, -1, chunksize, chunksize),
        dtype=np.dtype("float32"), fill_value=np.float32(np.nan), rescale=calibrate,
        xy_coords="center", errors_as_nodata=(), reader=_SenseiReader, gdal_env=_gdal_env(_asset_timeout(timeout)),
    )
    try:
        da = stackstac.stack(norm, **stack_kw)
    except ValueError as e:
        if "common CRS" in str(e):
            raise StacError(
                f"the items are in different CRSs and cannot share a grid: {e}. Pass epsg=... "
                "(reprojects) or narrow the search to one UTM zone."
            ) from e
        raise

    # --- band coordinates and attributes
    present = [str(b) for b in da.band.values.tolist()]
    chosen = [choices[k] for k in present]
    wl = np.array([c.wavelengths for c in chosen], dtype=np.float64).reshape(-1, 3)
    da = da.assign_coords(
        {
            WAVELENGTH_MIN: ("band", wl[:, 0]),
            WAVELENGTH_CENTER: ("band", wl[:, 1]),
            WAVELENGTH_MAX: ("band", wl[:, 2]),
            BAND_KIND: ("band", np.array([c.kind for c in chosen], dtype=object)),
            "common_name": ("band", np.array([c.common_name for c in chosen], dtype=object)),
            "sensor_band": ("band", np.array([c.sensor_band for c in chosen], dtype=object)),
            "center_wavelength": ("band", wl[:, 1] / 1000.0),
            "full_width_half_max": ("band", (wl[:, 2] - wl[:, 0]) / 1000.0),
        }
    )
    # Our per-item scale/offset would show up as a misleading band coordinate.
    da = da.drop_vars([c for c in ("raster:bands",) if c in da.coords])
    spec = da.attrs.get("spec")
    used_profiles = sorted({p.id for p in item_profile if p is not None})
    sensors = {s for s, it_keys in zip(item_sensor, item_keys) if set(it_keys) & set(keys)}
    attrs = {k: v for k, v in da.attrs.items() if k not in ("spec", "transform")}
    if calibrate:
        kinds = {p.radiometry for p in item_profile if p is not None}
        attrs["radiometry"] = kinds.pop() if len(kinds) == 1 else "as_stored"
        attrs["units"] = "reflectance (reflective bands); kelvin (thermal bands)"
    else:
        attrs["radiometry"] = "DN"
    if len(sensors) == 1 and None not in sensors:
        attrs["sensor"] = sensors.pop()
    attrs["stac_profile"] = ",".join(used_profiles)
    attrs["stac_collections"] = ",".join(sorted({str(it.get("collection")) for it in dicts}))
    da.attrs = attrs
    da.name = "reflectance"
    if spec is not None:
        da = da.rio.write_crs(f"EPSG:{spec.epsg}")
        da = da.rio.write_transform(spec.transform)
    return da


def _latlon_to_grid(norm: list[dict], keys: Sequence[str], bounds_latlon, epsg, resolution):
    """Bounds in the output CRS for a lon/lat box, on the first asset's pixel grid."""
    from pyproj import Transformer

    ref_item, ref_asset = None, None
    for it in norm:
        for k in keys:
            a = it["assets"].get(k)
            if a is None:
                continue
            r = _native_resolution(it, a)
            if r is not None and (resolution is None or np.allclose(r, resolution)):
                ref_item, ref_asset = it, a
                break
        if ref_asset is not None:
            break
    out_epsg = epsg
    if out_epsg is None:
        for it in norm:
            out_epsg = _epsg(it["properties"]) or next(
                (_epsg(it["assets"][k]) for k in keys if k in it["assets"] and _epsg(it["assets"][k])), None)
            if out_epsg:
                break
    if out_epsg is None:
        return None  # let stackstac say what is missing
    tr = Transformer.from_crs(4326, out_epsg, always_xy=True)
    w, s, e, n = bounds_latlon
    xs, ys = tr.transform([w, w, e, e], [s, n, s, n])
    b = (min(xs), min(ys), max(xs), max(ys))
    if ref_asset is None or (epsg is not None and _epsg(ref_item["properties"]) not in (None, epsg)):
        return b
    t = ref_asset.get("proj:transform", ref_item["properties"].get("proj:transform"))
    res = resolution or (abs(t[0]), abs(t[4]))
    return _aligned_bounds(b, (float(t[2]), float(t[5])), res)


def open_stac(
    url: str,
    collections: str | Sequence[str],
    *,
    bbox: Sequence[float] | None = None,
    intersects: Mapping[str, Any] | None = None,
    datetime: str | None = None,
    query: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | str | None = None,  # noqa: A002
    max_items: int | None = None,
    bands: Sequence[str] | None = None,
    assets: Sequence[str] | None = None,
    sensor: str | None = None,
    collection_profile: "str | StacProfile | bool | None" = None,
    resolution: float | None = None,
    epsg: int | None = None,
    clip: bool = True,
    chunksize: int = 1024,
    calibrate: bool = True,
    wavelengths: str = "auto",
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT_S,
    **search_kw: Any,
) -> "xarray.DataArray":  # noqa: F821
    """Search a STAC API and stack the matching items (see :func:`search`, :func:`stack_items`).

    Parameters
    ----------
    url, collections, bbox, intersects, datetime, query, filter, max_items, timeout
        The search (see :func:`search`).
    bands, assets, sensor, collection_profile, resolution, epsg, chunksize, calibrate, wavelengths
        The stacking (see :func:`stack_items`).
    clip : bool
        With ``bbox``: stack only the bbox, grown to whole pixels of the assets' grid
        (default); False stacks the items' full extent.
    **search_kw
        More search arguments (``limit``, ``headers``, ``modifier``, ...).

    Returns
    -------
    xarray.DataArray
        Lazy ``(time, band, y, x)`` float32 scene with wavelength coordinates.
    """
    items = search(url, collections, bbox=bbox, intersects=intersects, datetime=datetime,
                   query=query, filter=filter, max_items=max_items, timeout=timeout, **search_kw)
    return stack_items(
        items, assets=assets, bands=bands, sensor=sensor, collection_profile=collection_profile,
        resolution=resolution, epsg=epsg, bounds_latlon=bbox if (clip and bbox is not None) else None,
        chunksize=chunksize, calibrate=calibrate, wavelengths=wavelengths, api_url=url,
        timeout=_asset_timeout(timeout),
    )
