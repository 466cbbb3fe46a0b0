"""Radiometry: digital numbers to TOA reflectance and brightness temperature.

The functions work element-wise on NumPy arrays, Dask arrays and DataArrays alike (they
use only arithmetic and ufuncs), so lazy scenes stay lazy.

- Landsat Collection 2 Level-2: surface reflectance ``M * Q + A`` and surface temperature
  in K ``M_T * Q + A_T``, from the MTL file's ``LEVEL2_*`` groups (whose key names repeat
  the Level-1 ones with other values).
- Landsat Level-1: TOA reflectance ``rho = (M_rho * Q + A_rho) / sin(sun_elevation)`` and
  brightness temperature ``BT = K2 / ln(K1 / L + 1)`` with ``L = M_L * Q + A_L`` (paper
  eq. 3), all constants from the product's MTL file (Collection 1 and 2 layouts).
- Sentinel-2 L1C / L2A: ``rho = (DN + offset) / quantification``, where the offset is
  -1000 from processing baseline 04.00 on (and 0 before), read from the product metadata
  (``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET``, else decided by the baseline number) — never
  from the acquisition date, since reprocessed archives carry the new baseline too.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from .errors import RadiometryError

__all__ = [
    "RadiometryError",
    "parse_mtl",
    "LandsatCalibration",
    "landsat_calibration",
    "landsat_level2_calibration",
    "landsat_processing_level",
    "landsat_toa_reflectance",
    "landsat_brightness_temperature",
    "brightness_temperature",
    "Sentinel2Metadata",
    "read_sentinel2_metadata",
    "sentinel2_offset",
    "sentinel2_reflectance",
]

#: Sentinel-2 band ids in the product metadata (``bandId`` attribute) -> band names.
S2_BAND_IDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


# --------------------------------------------------------------------------------------
# Landsat
# --------------------------------------------------------------------------------------

_MTL_LINE = re.compile(r"^\s*([A-Z0-9_]+)\s*=\s*(.+?)\s*$")


def parse_mtl(path: str | PathLike) -> dict[str, object]:
    """Read a Landsat MTL text file into a flat dict.

    Groups are flattened: keys are unique across the Level-1 groups of both the
    Collection 1 ``L1_METADATA_FILE`` and the Collection 2 ``LANDSAT_METADATA_FILE``
    layouts. A Collection 2 Level-2 file repeats ``REFLECTANCE_MULT_BAND_n`` and others in
    its ``LEVEL2_SURFACE_*_PARAMETERS`` groups with the Level-2 scaling (2.75e-5, -0.2):
    keys of groups named ``LEVEL2_*`` are kept as ``"GROUP.KEY"``, so the plain keys
    always hold the Level-1 values. Numbers become floats, quoted strings lose their
    quotes.

    Parameters
    ----------
    path : path-like
        The ``*_MTL.txt`` file.

    Returns
    -------
    dict
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise RadiometryError(f"cannot read MTL file {path}: {e}") from e
    out: dict[str, object] = {}
    groups: list[str] = []
    for line in text.splitlines():
        m = _MTL_LINE.match(line)
        if not m:
            continue
        key, raw = m.groups()
        if key == "GROUP":
            groups.append(raw.strip('"'))
            continue
        if key == "END_GROUP":
            if groups:
                groups.pop()
            continue
        level2 = next((g for g in reversed(groups) if g.startswith("LEVEL2_")), None)
        if level2 is not None:
            key = f"{level2}.{key}"
        if raw.startswith('"') and raw.endswith('"'):
            out[key] = raw[1:-1]
            continue
        try:
            out[key] = float(raw)
        except ValueError:
            out[key] = raw
    if "SUN_ELEVATION" not in out and not any(k.startswith("RADIANCE_MULT_BAND") for k in out):
        raise RadiometryError(
            f"{path} does not look like a Landsat MTL file (no SUN_ELEVATION or "
            "RADIANCE_MULT_BAND_n entries)"
        )
    return out


@dataclass(frozen=True)
class LandsatCalibration:
    """Rescaling constants of one Landsat band (from the MTL file).

    Attributes
    ----------
    band : str
        Band number as in the MTL keys, e.g. ``"4"`` or ``"6_VCID_1"``.
    kind : str
        ``"reflective"`` or ``"thermal"`` (Level-1), ``"surface_reflectance"`` or
        ``"surface_temperature"`` (Collection 2 Level-2).
    mult, add : float
        Reflectance rescaling (reflective bands, per DN), radiance rescaling (thermal
        bands, W / (m2 sr um) per DN), or Level-2 scaling (reflectance, or K, per DN).
    sun_elevation_deg : float
        Scene-centre sun elevation, degrees (reflective bands).
    k1 : float
        Thermal constant K1, W / (m2 sr um) (thermal bands).
    k2 : float
        Thermal constant K2, kelvin (thermal bands).
    """

    band: str
    kind: str
    mult: float
    add: float
    sun_elevation_deg: float = math.nan
    k1: float = math.nan
    k2: float = math.nan

    def apply(self, dn):
        """Convert DN to TOA reflectance (``"reflective"``), brightness temperature in K
        (``"thermal"``), surface reflectance (``"surface_reflectance"``) or surface
        temperature in K (``"surface_temperature"``): the last two are ``mult * DN + add``.

        DN 0 is Landsat's fill value and becomes NaN.
        """
        q = _as_float_with_fill(dn)
        if self.kind in ("surface_reflectance", "surface_temperature"):
            return self.mult * q + self.add
        if self.kind == "thermal":
            return brightness_temperature(self.mult * q + self.add, self.k1, self.k2)
        return (self.mult * q + self.add) / math.sin(math.radians(self.sun_elevation_deg))


def _as_float_with_fill(dn, fill: float = 0):
    # where() keeps NumPy, Dask and xarray inputs in their own type (lazy stays lazy).
    q = dn.astype("float32") if hasattr(dn, "astype") else np.float32(dn)
    if hasattr(q, "where"):  # DataArray
        return q.where(q != fill)
    try:
        import dask.array as dsa

        if isinstance(q, dsa.Array):
            return dsa.where(q == fill, np.float32(np.nan), q)
    except ImportError:  # pragma: no cover - dask is a dependency
        pass
    return np.where(q == fill, np.float32(np.nan), q)


def landsat_calibration(mtl: dict[str, object] | str | PathLike, band: str | int) -> LandsatCalibration:
    """Rescaling constants of one band from an MTL file.

    Parameters
    ----------
    mtl : dict or path-like
        Parsed MTL (see :func:`parse_mtl`) or its path.
    band : str or int
        Band number as in the MTL keys (``4``, ``"10"``, ``"6_VCID_1"``); a leading ``B``
        is accepted (``"B10"``).

    Returns
    -------
    LandsatCalibration
    """
    meta = parse_mtl(mtl) if isinstance(mtl, (str, PathLike)) else mtl
    b = str(band).upper()
    b = b[1:] if b.startswith("B") else b
    b = b.lstrip("0") or "0"
    k1 = meta.get(f"K1_CONSTANT_BAND_{b}")
    if k1 is not None:
        try:
            return LandsatCalibration(
                band=b,
                kind="thermal",
                mult=float(meta[f"RADIANCE_MULT_BAND_{b}"]),
                add=float(meta[f"RADIANCE_ADD_BAND_{b}"]),
                k1=float(k1),
                k2=float(meta[f"K2_CONSTANT_BAND_{b}"]),
            )
        except KeyError as e:
            raise RadiometryError(f"MTL has K1 for band {b} but no {e.args[0]}") from None
    try:
        cal = LandsatCalibration(
            band=b,
            kind="reflective",
            mult=float(meta[f"REFLECTANCE_MULT_BAND_{b}"]),
            add=float(meta[f"REFLECTANCE_ADD_BAND_{b}"]),
            sun_elevation_deg=float(meta["SUN_ELEVATION"]),
        )
    except KeyError as e:
        raise RadiometryError(
            f"the MTL file has no {e.args[0]} for band {b}: is this a Level-1 product "
            "of that band? (Level-2 products are already reflectance: scale with "
            "their own factors)"
        ) from None
    if not 0.0 < cal.sun_elevation_deg <= 90.0:
        # Reflectance divides by sin(elevation): at or below the horizon it is undefined
        # (infinite or negative), never a value to mask.
        raise RadiometryError(
            f"SUN_ELEVATION = {cal.sun_elevation_deg:g} deg: TOA reflectance needs the sun above the "
            "horizon (0-90 deg); is this the scene's MTL file, or a night acquisition?"
        )
    return cal


_L2_REFLECTANCE = "LEVEL2_SURFACE_REFLECTANCE_PARAMETERS"
_L2_TEMPERATURE = "LEVEL2_SURFACE_TEMPERATURE_PARAMETERS"


def landsat_processing_level(mtl: dict[str, object]) -> str:
    """``"L1"`` or ``"L2"``: from ``PROCESSING_LEVEL`` (``L1TP``, ``L2SP``, ``L2SR``, ...),
    else from the presence of Level-2 groups (Collection 1 files are Level-1)."""
    level = str(mtl.get("PROCESSING_LEVEL", "")).upper()
    if level.startswith("L2") or any(k.startswith("LEVEL2_") for k in mtl):
        return "L2"
    return "L1"


def landsat_level2_calibration(mtl: dict[str, object] | str | PathLike, band: str | int) -> LandsatCalibration:
    """Scaling of one band of a Collection 2 Level-2 product (``*_SR_Bn`` / ``*_ST_Bn`` files).

    Parameters
    ----------
    mtl : dict or path-like
        Parsed Level-2 MTL (see :func:`parse_mtl`) or its path.
    band : str or int
        Band number (``4``, ``"B10"``).

    Returns
    -------
    LandsatCalibration
        ``"surface_temperature"`` (K) if the MTL scales the band as ``ST_Bn``, else
        ``"surface_reflectance"``.
    """
    meta = parse_mtl(mtl) if isinstance(mtl, (str, PathLike)) else mtl
    b = str(band).upper()
    b = (b[1:] if b.startswith("B") else b).lstrip("0") or "0"
    b = b.split("_VCID")[0]
    t_mult = meta.get(f"{_L2_TEMPERATURE}.TEMPERATURE_MULT_BAND_ST_B{b}")
    if t_mult is not None:
        add = meta.get(f"{_L2_TEMPERATURE}.TEMPERATURE_ADD_BAND_ST_B{b}")
        if add is None:
            raise RadiometryError(f"the Level-2 MTL scales ST_B{b} but gives no TEMPERATURE_ADD_BAND_ST_B{b}")
        return LandsatCalibration(band=b, kind="surface_temperature", mult=float(t_mult), add=float(add))
    mult = meta.get(f"{_L2_REFLECTANCE}.REFLECTANCE_MULT_BAND_{b}")
    add = meta.get(f"{_L2_REFLECTANCE}.REFLECTANCE_ADD_BAND_{b}")
    if mult is None or add is None:
        raise RadiometryError(
            f"the Level-2 MTL file has no surface reflectance or temperature scaling for band {b} "
            f"(no {_L2_REFLECTANCE}.REFLECTANCE_MULT_BAND_{b} or {_L2_TEMPERATURE}.TEMPERATURE_MULT_BAND_ST_B{b}): "
            "Level-2 products hold no such band (e.g. the cirrus band); leave it out with bands=..."
        )
    return LandsatCalibration(band=b, kind="surface_reflectance", mult=float(mult), add=float(add))


def landsat_toa_reflectance(dn, mtl: dict[str, object] | str | PathLike, band: str | int):
    """Landsat DN to TOA reflectance, sun-elevation corrected (unitless, NaN at fill)."""
    cal = landsat_calibration(mtl, band)
    if cal.kind != "reflective":
        raise RadiometryError(f"band {band} is thermal: use landsat_brightness_temperature")
    return cal.apply(dn)


def landsat_brightness_temperature(dn, mtl: dict[str, object] | str | PathLike, band: str | int):
    """Landsat thermal DN to at-sensor brightness temperature in kelvin (NaN at fill)."""
    cal = landsat_calibration(mtl, band)
    if cal.kind != "thermal":
        raise RadiometryError(f"band {band} is not thermal (no K1/K2 in the MTL file)")
    return cal.apply(dn)


def brightness_temperature(radiance, k1: float, k2: float):
    """At-sensor brightness temperature from spectral radiance (paper eq. 3).

    Parameters
    ----------
    radiance : array-like
        Spectral radiance, W / (m2 sr um). Non-positive radiance gives NaN.
    k1 : float
        Band constant K1, W / (m2 sr um).
    k2 : float
        Band constant K2, kelvin.

    Returns
    -------
    array-like
        Brightness temperature, kelvin.
    """
    if not (k1 > 0 and k2 > 0):
        raise RadiometryError(f"K1 and K2 must be positive, got K1={k1}, K2={k2}")
    if hasattr(radiance, "where"):
        radiance = radiance.where(radiance > 0)
    else:
        radiance = _where_positive(radiance)
    return k2 / np.log(k1 / radiance + 1.0)


def _where_positive(x):
    try:
        import dask.array as dsa

        if isinstance(x, dsa.Array):
            return dsa.where(x > 0, x, np.nan)
    except ImportError:  # pragma: no cover
        pass
    x = np.asarray(x, dtype=np.float64 if np.asarray(x).dtype == np.float64 else np.float32)
    return np.where(x > 0, x, np.nan)


# --------------------------------------------------------------------------------------
# Sentinel-2
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sentinel2Metadata:
    """What DN-to-reflectance conversion needs from a Sentinel-2 product.

    Attributes
    ----------
    processing_baseline : str
        E.g. ``"04.00"``.
    quantification : float
        DN per unit reflectance (10000).
    offsets : dict
        Band name -> additive offset in DN (e.g. -1000), from ``RADIO_ADD_OFFSET``
        (L1C) or ``BOA_ADD_OFFSET`` (L2A); empty when the product has none.
    level : str
        ``"L1C"`` or ``"L2A"``.
    """

    processing_baseline: str
    quantification: float = 10000.0
    offsets: dict[str, float] = field(default_factory=dict)
    level: str = "L1C"


def read_sentinel2_metadata(path: str | PathLike) -> Sentinel2Metadata:
    """Read the processing baseline, quantification and offsets of a Sentinel-2 product.

    Parameters
    ----------
    path : path-like
        ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``, or a folder (e.g. the ``.SAFE``) holding one.

    Returns
    -------
    Sentinel2Metadata
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("MTD_MSIL*.xml")) or sorted(path.glob("*/MTD_MSIL*.xml"))
        if not found:
            raise RadiometryError(f"no MTD_MSIL1C.xml or MTD_MSIL2A.xml in {path}")
        path = found[0]
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise RadiometryError(f"cannot read Sentinel-2 metadata {path}: {e}") from e

    def find_text(tag: str) -> str | None:
        for el in root.iter():
            if el.tag.split("}")[-1] == tag and el.text:
                return el.text.strip()
        return None

    baseline = find_text("PROCESSING_BASELINE")
    if baseline is None:
        raise RadiometryError(f"{path} has no PROCESSING_BASELINE element")
    level = "L2A" if find_text("BOA_QUANTIFICATION_VALUE") else "L1C"
    quant = find_text("BOA_QUANTIFICATION_VALUE") or find_text("QUANTIFICATION_VALUE") or "10000"
    offsets: dict[str, float] = {}
    for el in root.iter():
        tag = el.tag.split("}")[-1]
        if tag in ("RADIO_ADD_OFFSET", "BOA_ADD_OFFSET") and el.text:
            band_id = int(el.attrib.get("band_id", el.attrib.get("bandId", -1)))
            if 0 <= band_id < len(S2_BAND_IDS):
                offsets[S2_BAND_IDS[band_id]] = float(el.text)
    return Sentinel2Metadata(baseline, float(quant), offsets, level)


def _baseline_number(baseline: str) -> float:
    text = str(baseline).strip().upper()
    # Product names carry the baseline as "N0400" (= 04.00).
    compact = re.fullmatch(r"N?(\d{2})(\d{2})", text)
    if compact:
        return int(compact.group(1)) + int(compact.group(2)) / 100
    try:
        return float(text)
    except ValueError:
        raise RadiometryError(
            f"processing baseline {baseline!r} is not a number like '04.00' or 'N0400'"
        ) from None


def sentinel2_offset(processing_baseline: str, band: str | None = None,
                     metadata: Sentinel2Metadata | None = None) -> float:
    """Additive DN offset of a Sentinel-2 band.

    The product's own ``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` wins; without it the
    baseline decides: -1000 from 04.00 on, 0 before.

    Parameters
    ----------
    processing_baseline : str
        E.g. ``"04.00"`` or ``"N0400"`` (the form in product names).
    band : str, optional
        Band name (``"B04"``), to look up the metadata's per-band offset.
    metadata : Sentinel2Metadata, optional

    Returns
    -------
    float
        Offset in DN.
    """
    if metadata is not None and band is not None and band in metadata.offsets:
        return metadata.offsets[band]
    number = _baseline_number(processing_baseline)
    # Some reprocessed products write baseline "05.xx": the offset applies from 04.00 on.
    return -1000.0 if number >= 4.0 else 0.0


def sentinel2_reflectance(dn, processing_baseline: str, band: str | None = None,
                          metadata: Sentinel2Metadata | None = None,
                          quantification: float | None = None):
    """Sentinel-2 L1C/L2A DN to reflectance (NaN at the fill value 0).

    Parameters
    ----------
    dn : array-like
        Integer DN.
    processing_baseline : str
        From the product metadata (``PROCESSING_BASELINE``, or ``s2:processing_baseline`` in
        STAC); decides the -1000 offset. Never guess it from the date.
    band, metadata : optional
        See :func:`sentinel2_offset`.
    quantification : float, optional
        DN per unit reflectance (positive); default from ``metadata`` or 10000.

    Returns
    -------
    array-like
        Reflectance (float32).
    """
    offset = sentinel2_offset(processing_baseline, band, metadata)
    quant = quantification if quantification is not None else (
        metadata.quantification if metadata else 10000.0)
    if isinstance(quant, bool) or not (math.isfinite(float(quant)) and float(quant) > 0):
        # 0 used to fall back to 10000 silently; a negative one flips the sign.
        raise RadiometryError(f"quantification {quant!r} must be a positive number of DN per unit "
                              "reflectance (10000 for Sentinel-2)")
    q = _as_float_with_fill(dn)
    return (q + np.float32(offset)) / np.float32(quant)
