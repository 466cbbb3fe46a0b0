"""Which assets become the bands of a stack, from the items read by :mod:`.items`.

A stack has one band per asset key (stackstac's band coordinate). By default it takes
every spectral asset of the items, one asset per band: a band's JPEG 2000 twin
(``red-jp2``) or its copies at other resolutions (CDSE ``B02_20m``, ``B02_60m``) are
dropped for the COG / the original resolution. ``assets=`` or ``bands=`` choose instead.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import numpy as np

from ... import catalogs
from ...errors import NoUsableBandsError, StacError
from .items import BandAsset, ItemInfo

__all__ = ["WAVELENGTH_MODES", "wavelengths_of", "stack_bands"]

#: Where a band's wavelengths come from: ``"auto"`` catalog first, ``"items"`` item
#: metadata first, ``"catalog"`` catalog bands only.
WAVELENGTH_MODES = ("auto", "items", "catalog")


def _key(name: str) -> str:
    return str(name).strip().casefold()


def wavelengths_of(band: BandAsset, mode: str) -> tuple[float, float, float]:
    """``(min, centre, max)`` nm of ``band`` as ``mode`` (see :data:`WAVELENGTH_MODES`) says."""
    if mode == "items" and band.item_nm is not None:
        return band.item_nm
    return band.wavelengths_nm


def _order(band: BandAsset, sensor: str | None, mode: str) -> tuple:
    """Catalog order for catalogued bands, then the others by centre wavelength."""
    centre = wavelengths_of(band, mode)[1]
    names = catalogs.get_sensor(sensor).band_names if sensor else []
    if band.sensor_band in names:
        return (0, names.index(band.sensor_band), centre)
    return (1, 0, centre)


def _preference(band: BandAsset) -> tuple:
    # One asset per band: the COG over its JPEG 2000 twin ("red" over "red-jp2"), the
    # product's own resolution over resampled copies, then the short key.
    jp2 = "jp2" in band.media_type or band.key.lower().endswith("jp2")
    resampled = "sampling:original" not in band.roles and any(r.startswith("sampling:") for r in band.roles)
    return (jp2, resampled, len(band.key), band.key)


def _candidates(info: ItemInfo, explicit: list[str] | None, mode: str) -> list[BandAsset]:
    """The item's bands to consider; an explicitly asked asset that is no band is an error."""
    if explicit is None:
        return [b for b in info.bands if mode != "catalog" or b.sensor_band]
    by_key = {b.key: b for b in info.bands}
    out = []
    for key in explicit:
        if key not in info.asset_keys:
            continue
        band = by_key.get(key)
        if band is None or (mode == "catalog" and not band.sensor_band):
            raise NoUsableBandsError(
                f"asset {key!r} of item {info.id!r} is not a spectral band with known wavelengths "
                f"(no eo:bands wavelengths and {'no band of sensor ' + info.sensor if info.sensor else 'no known sensor'} "
                "of that name); leave it out of assets=..."
            )
        out.append(band)
    return out


def _same_band(prev: BandAsset, band: BandAsset, info: ItemInfo, mode: str) -> None:
    if (prev.kind != band.kind
            or not np.allclose(wavelengths_of(prev, mode), wavelengths_of(band, mode), atol=1e-6)):
        raise StacError(
            f"asset {band.key!r} holds different bands in different items "
            f"({prev.sensor_band or wavelengths_of(prev, mode)} vs {band.sensor_band or wavelengths_of(band, mode)} "
            f"in item {info.id!r}): the items come from different sensors. Stack one sensor at a time, "
            "e.g. search with query={'platform': {'eq': 'landsat-8'}}, or pass sensor=..."
        )


def _drop_twins(chosen: dict[str, BandAsset], mode: str) -> dict[str, BandAsset]:
    """One asset key per band (see :func:`_preference`)."""
    by_band: dict[tuple, list[BandAsset]] = collections.defaultdict(list)
    for band in chosen.values():
        by_band[(band.sensor_band or None, tuple(round(v, 3) for v in wavelengths_of(band, mode)))].append(band)
    keep = {min(bands, key=_preference).key for bands in by_band.values()}
    return {k: b for k, b in chosen.items() if k in keep}


def _by_name(chosen: dict[str, BandAsset], wanted: Sequence[str], infos: Sequence[ItemInfo]) -> list[str]:
    """Asset keys for ``bands=``: asset keys, catalog band names, common names or aliases."""
    keys = []
    for want in wanted:
        match = [k for k, b in chosen.items() if _key(k) == _key(want)
                 or (b.sensor_band and _key(b.sensor_band) == _key(want))
                 or (b.common_name and _key(b.common_name) == _key(want))]
        for sid in sorted({i.sensor for i in infos if i.sensor}):
            sensor = catalogs.get_sensor(sid)
            if not match and sensor.has_band(want):
                name = sensor.band(want).name
                match = [k for k, b in chosen.items() if b.sensor_band == name]
        if not match:
            raise NoUsableBandsError(
                f"band {want!r} is not among the items' spectral bands "
                f"{[(k, b.sensor_band) for k, b in chosen.items()]}"
            )
        keys.append(match[0])
    return list(dict.fromkeys(keys))


def stack_bands(infos: Sequence[ItemInfo], *, assets: Sequence[str] | None = None,
                bands: Sequence[str] | None = None, mode: str = "auto") -> dict[str, BandAsset]:
    """The stack's bands: asset key -> the band it holds, in stack order.

    Parameters
    ----------
    infos : sequence of ItemInfo
        The items, read.
    assets : sequence of str, optional
        Asset keys, in that order.
    bands : sequence of str, optional
        Band names, aliases, common names or asset keys, in that order.
    mode : {"auto", "items", "catalog"}
        See :data:`WAVELENGTH_MODES`.

    Returns
    -------
    dict of str to BandAsset

    Raises
    ------
    NoUsableBandsError
        If an asked asset or band is not a spectral band, or an item has none of them.
    StacError
        If one asset key holds different bands in different items, or catalogued bands come
        from several sensors.
    """
    explicit = list(assets) if assets is not None else None
    chosen: dict[str, BandAsset] = {}
    found: list[set[str]] = []
    for info in infos:
        here = _candidates(info, explicit, mode)
        for band in here:
            if band.key in chosen:
                _same_band(chosen[band.key], band, info, mode)
            chosen.setdefault(band.key, band)
        found.append({b.key for b in here})
    if explicit is None:
        chosen = _drop_twins(chosen, mode)
    if bands is not None:
        keys = _by_name(chosen, bands, infos)
    elif explicit is not None:
        keys = [k for k in explicit if k in chosen]
    else:
        sensor = next((i.sensor for i in infos if i.sensor), None)
        keys = sorted(chosen, key=lambda k: _order(chosen[k], sensor, mode))
    for info, here in zip(infos, found):
        if not here & set(keys):
            raise NoUsableBandsError(
                f"item {info.id!r} has none of the bands {keys}: its assets are {sorted(info.asset_keys)}. "
                "Drop it from the items, or stack the assets it has with assets=[...]."
            )
    sensors = sorted({i.sensor for i in infos if i.sensor})
    if len(sensors) > 1 and any(chosen[k].sensor_band for k in keys):
        raise StacError(
            f"the items come from several sensors {sensors}; their bands differ: stack one sensor at "
            "a time (e.g. query={'platform': {'eq': 'landsat-8'}}) or pass sensor=..."
        )
    return {k: chosen[k] for k in keys}
