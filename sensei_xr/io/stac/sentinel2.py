"""The Sentinel-2 offset policy: decided by processing baseline, never by date, never twice.

From processing baseline 04.00 (25 January 2022) ESA shifts the stored DN by
``RADIO_ADD_OFFSET`` (L1C) / ``BOA_ADD_OFFSET`` (L2A) = -1000, so
``reflectance = (DN - 1000) / 10000``; before it, ``DN / 10000``. The archive has been
reprocessed at newer baselines (a 2019 acquisition may be baseline 05.00), so only the
baseline decides, read from the item (``s2:processing_baseline``, STAC 1.1
``processing:version``, or the ``N0400`` / ``N04.00`` part of the product id). Earth Search
shifted the values of the COGs it converted back (``earthsearch:boa_offset_applied: true``,
v0 ``sentinel:boa_offset_applied``) while its items still carry a -0.1 ``raster:bands``
offset: one offset is decided per asset, from the flag and the baseline, and replaces the
item's, so no value is corrected twice. The flag is about those COGs only: the JPEG 2000
twins (``red-jp2``) are ESA's files and keep the baseline's offset (Element84/earth-search
issues #56 and #66; cirrus-geo/cirrus-earth-search issue #21).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ... import radiometry

__all__ = ["QUANTIFICATION_SCALE", "Sentinel2Processing", "sentinel2_processing", "sentinel2_item_offset",
           "is_original_jp2"]

#: Reflectance per DN: 1 / QUANTIFICATION_VALUE (10000).
QUANTIFICATION_SCALE = 1e-4
_BASELINE_PROPS = ("s2:processing_baseline", "sentinel:processing_baseline", "processing:version")
_PRODUCT_ID_PROPS = ("s2:product_uri", "sentinel:product_id", "s2:datatake_id")
_OFFSET_APPLIED_PROPS = ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")
_BASELINE_TEXT = re.compile(r"N?(\d{2})\.?(\d{2})")
_BASELINE_IN_ID = re.compile(r"_N(\d{2})\.?(\d{2})(?=[_.]|$)")


@dataclass(frozen=True)
class Sentinel2Processing:
    """A Sentinel-2 item's processing baseline and what it means for the offset.

    Attributes
    ----------
    baseline : str or None
        ``"NN.NN"`` (e.g. ``"05.10"``), None when the item does not say.
    source : str
        The field it was read from (``"s2:processing_baseline"``, ``"processing:version"``,
        ``"s2:product_uri"``, ``"id"``, ...).
    offset_applied_by : str or None
        Name of the item property that says the values were already shifted back
        (``earthsearch:boa_offset_applied: true``), else None.
    """

    baseline: str | None
    source: str = ""
    offset_applied_by: str | None = None

    @property
    def offset_dn(self) -> float | None:
        """ESA's ``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` for the baseline, DN (None if unknown)."""
        if self.baseline is None:
            return None
        return radiometry.sentinel2_offset(self.baseline)

    def offset_for(self, key: str, asset: Mapping[str, Any], scale: float) -> tuple[float | None, str]:
        """The offset (reflectance) of one asset and why.

        Earth Search's flag is about the COGs it converted; its JPEG 2000 twins (``red-jp2``)
        are ESA's original files and keep the baseline's offset.
        """
        if self.offset_applied_by and not is_original_jp2(key, asset):
            return 0.0, f"{self.offset_applied_by} is true (the stored values were shifted back)"
        if self.baseline is not None:
            return self.offset_dn * scale, f"processing baseline {self.baseline} ({self.source})"
        return None, "no processing baseline"


def is_original_jp2(key: str, asset: Mapping[str, Any]) -> bool:
    """A JPEG 2000 asset (or Earth Search's ``*-jp2`` twin): ESA's file, as distributed."""
    return "jp2" in str(asset.get("type") or "").lower() or key.lower().endswith("-jp2")


def _baseline_text(value: Any) -> str | None:
    """``"NN.NN"`` from ``"05.10"``, ``"N0510"`` or ``"N05.10"``; None for anything else."""
    m = _BASELINE_TEXT.fullmatch(str(value).strip().upper()) if isinstance(value, str) else None
    return f"{m.group(1)}.{m.group(2)}" if m else None


def sentinel2_processing(item: Mapping[str, Any]) -> Sentinel2Processing:
    """The processing baseline of a Sentinel-2 item, and whether its offset was applied.

    The baseline is read from ``s2:processing_baseline`` (or Earth Search v0's
    ``sentinel:processing_baseline``), STAC 1.1's ``processing:version``, else the ``N0510``
    / ``N05.10`` part of the product id (``s2:product_uri``, ``sentinel:product_id``,
    ``s2:datatake_id``, the item id). The acquisition date is never used: the archive is
    reprocessed at new baselines.

    Parameters
    ----------
    item : dict
        A Sentinel-2 STAC item.

    Returns
    -------
    Sentinel2Processing
    """
    props = item.get("properties") or {}
    flag = next((f for f in _OFFSET_APPLIED_PROPS if props.get(f) is True), None)
    for name in _BASELINE_PROPS:
        text = _baseline_text(props.get(name))
        if text is not None:
            return Sentinel2Processing(text, name, flag)
    for name, value in [(n, props.get(n)) for n in _PRODUCT_ID_PROPS] + [("id", item.get("id"))]:
        m = _BASELINE_IN_ID.search(value) if isinstance(value, str) else None
        if m:
            return Sentinel2Processing(f"{m.group(1)}.{m.group(2)}", name, flag)
    return Sentinel2Processing(None, "", flag)


def sentinel2_item_offset(item: Mapping[str, Any], scale: float = QUANTIFICATION_SCALE) -> float | None:
    """The additive Sentinel-2 offset of an item's COG assets, in reflectance units.

    ``-1000 DN x scale`` for processing baseline 04.00 and later (ESA's
    ``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET``) and 0 before it, unless the item says the
    offset was already applied to the stored values (Earth Search
    ``earthsearch:boa_offset_applied: true``). See :func:`sentinel2_processing` for where
    the baseline is read; the acquisition date is never used.

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
    return sentinel2_processing(item).offset_for("", {}, scale)[0]
