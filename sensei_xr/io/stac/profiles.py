"""Collection profiles: which assets of a STAC collection are which sensor bands.

A profile is one TOML file (``catalogs/stac_profiles/<id>.toml`` in a source checkout,
package data ``sensei_xr/_catalogs/stac_profiles`` in a wheel, or a directory listed in
``$SENSEI_XR_STAC_PROFILE_PATH``) for one collection of one API: the sensor (or sensor per
platform), the processing level and radiometry, the offset rule, default scale / offset /
no-data, and ``[assets]``: asset key = catalog band name (or a table with its own scale and
offset). Several keys may hold one band: collections renamed their keys between versions
(USGS ``SR_B1.TIF`` -> ``coastal``), and an item uses the keys it has.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ... import catalogs
from ...errors import ProfileError
from ...toml_registry import read_toml, registry_dirs

__all__ = [
    "PROFILE_ENV_VAR",
    "AssetSpec",
    "StacProfile",
    "load_profile_file",
    "load_profile",
    "list_profiles",
    "find_profile",
    "profile_dirs",
]

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
        baseline and ``earthsearch:boa_offset_applied``; see :mod:`.items`).
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


# ------------------------------------------------------------------------------ parsing


def _pfail(origin: str, msg: str, field_: str | None = None) -> ProfileError:
    where = f"{origin}: field {field_!r}" if field_ else origin
    return ProfileError(f"{where}: {msg}")


def _opt_number(value, origin, field_, positive: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _pfail(origin, f"must be a finite number, got {value!r}", field_)
    if positive and value <= 0:
        raise _pfail(origin, f"must be > 0, got {value:g}", field_)
    return float(value)


def _str_tuple(value, origin, field_) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _pfail(origin, f"must be a list of non-empty strings, got {value!r}", field_)
    return tuple(v.strip() for v in value)


def _sensor_id(name: str, origin: str, field_: str) -> str:
    try:
        return catalogs.get_sensor(name).id
    except catalogs.UnknownSensorError as e:
        raise _pfail(origin, str(e), field_) from None


def _check_meta(data: Mapping[str, Any], origin: str, stem: str | None) -> Mapping[str, Any]:
    """The ``[profile]`` table, its required fields and id checked."""
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
    for name, allowed, default in (("radiometry", _RADIOMETRY, "toa"), ("offset_rule", _OFFSET_RULES, "raster_bands")):
        if meta.get(name, default) not in allowed:
            raise _pfail(origin, f"must be one of {list(allowed)}, got {meta[name]!r}", name)
    return meta


def _parse_asset(key: str, entry: Any, sensors: list[str], origin: str) -> AssetSpec:
    """One ``[assets]`` entry: ``key = "band"`` or ``[assets.key] band = ..., scale = ...``."""
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
        pairs, stored = [(s, band) for s in sensors], (("*", band),)
    elif isinstance(band, Mapping) and band:
        pairs = [(_sensor_id(s, origin, f"{fname}.band"), b) for s, b in band.items()]
        stored = tuple(pairs)
        strangers = sorted({s for s, _ in pairs} - set(sensors))
        if strangers:
            raise _pfail(origin, f"sensor(s) {strangers} are not sensors of this profile {sensors}", f"{fname}.band")
    else:
        raise _pfail(origin, f"needs band = \"<band name>\" or a table sensor = band, got {band!r}", fname)
    for s, b in pairs:
        try:
            catalogs.get_sensor(s).band(b)
        except catalogs.UnknownBandError as e:
            raise _pfail(origin, str(e), f"{fname}.band") from None
    return AssetSpec(
        key=str(key), bands=stored,
        scale=_opt_number(entry.get("scale"), origin, f"{fname}.scale", positive=True),
        offset=_opt_number(entry.get("offset"), origin, f"{fname}.offset"),
        nodata=_opt_number(entry.get("nodata"), origin, f"{fname}.nodata"),
    )


def _profile_from_mapping(data: Mapping[str, Any], origin: str, path: str | None = None,
                          stem: str | None = None) -> StacProfile:
    meta = _check_meta(data, origin, stem)
    default_sensor = _sensor_id(meta["sensor"], origin, "sensor")
    by_platform_raw = meta.get("sensor_by_platform") or {}
    if not isinstance(by_platform_raw, Mapping):
        raise _pfail(origin, "must be a table of platform = sensor id", "sensor_by_platform")
    by_platform = tuple((str(p), _sensor_id(s, origin, f"sensor_by_platform.{p}"))
                        for p, s in by_platform_raw.items())
    sensors = list(dict.fromkeys([default_sensor, *(s for _, s in by_platform)]))
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping) or set(defaults) - {"scale", "offset", "nodata"}:
        raise _pfail(origin, "must be a table with scale, offset, nodata", "defaults")
    raw_assets = data.get("assets")
    if not isinstance(raw_assets, Mapping) or not raw_assets:
        raise _pfail(origin, "needs an [assets] table of asset key = band name", "assets")
    return StacProfile(
        id=meta["id"],
        title=str(meta.get("title", meta["id"])).strip(),
        api=meta["api"].strip(),
        api_url=str(meta.get("api_url", "")).strip(),
        collection=meta["collection"].strip(),
        aliases=_str_tuple(meta.get("aliases"), origin, "aliases"),
        sensor=default_sensor,
        sensor_by_platform=by_platform,
        level=str(meta.get("level", "")).strip(),
        radiometry=meta.get("radiometry", "toa"),
        offset_rule=meta.get("offset_rule", "raster_bands"),
        default_scale=_opt_number(defaults.get("scale"), origin, "defaults.scale", positive=True),
        default_offset=_opt_number(defaults.get("offset"), origin, "defaults.offset"),
        default_nodata=_opt_number(defaults.get("nodata"), origin, "defaults.nodata"),
        assets=tuple(_parse_asset(k, v, sensors, origin) for k, v in raw_assets.items()),
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
    data = read_toml(p, ProfileError, "profile")
    return _profile_from_mapping(data, str(p), path=str(p), stem=p.stem)


# ----------------------------------------------------------------------------- registry


def profile_dirs() -> list[Path]:
    """Directories searched for profile ``*.toml`` files (later ones override earlier ones).

    The shipped profiles (package data ``sensei_xr/_catalogs/stac_profiles`` in a wheel,
    else ``<repo>/catalogs/stac_profiles``), then each directory in
    ``$SENSEI_XR_STAC_PROFILE_PATH``; an entry that is not a directory is ignored with a
    warning. The same loader as the sensor catalogs (:func:`sensei_xr.toml_registry.registry_dirs`).

    Returns
    -------
    list of pathlib.Path
    """
    return registry_dirs("stac_profiles", PROFILE_ENV_VAR)


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
