"""Reading assets: stackstac's reader with errors that name the href, and GDAL's HTTP limits.

The only I/O of the package besides :mod:`.search`: everything here runs when a stack is
computed, in dask tasks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from stackstac.rio_reader import AutoParallelRioReader as _AutoParallelRioReader

from ...errors import StacAssetError
from .search import check_timeout

__all__ = ["SenseiReader", "gdal_env", "asset_timeout", "asset_error"]

# GDAL gives up connecting after this many seconds at most (the read timeout may be longer).
_CONNECT_TIMEOUT_S = 10
_HTTP_RETRIES = 3


def asset_timeout(timeout: float | tuple[float, float]) -> float:
    """Seconds an asset read may wait for an answer: the read part of a (connect, read) pair."""
    t = check_timeout(timeout)
    return float(t[1] if isinstance(t, tuple) else t)


def gdal_env(timeout_s: float = 60.0):
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

    Parameters
    ----------
    timeout_s : float
        Seconds a request may wait for an answer.

    Returns
    -------
    stackstac.rio_env.LayeredEnv
    """
    from stackstac.rio_reader import DEFAULT_GDAL_ENV

    seconds = max(1, round(timeout_s))
    timeouts = {"GDAL_HTTP_TIMEOUT": str(seconds),
                "GDAL_HTTP_CONNECTTIMEOUT": str(min(_CONNECT_TIMEOUT_S, seconds)),
                "GDAL_HTTP_MAX_RETRY": str(_HTTP_RETRIES), "GDAL_HTTP_RETRY_DELAY": "1"}
    return DEFAULT_GDAL_ENV.updated(always=timeouts,
                                    open_vrt={"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "VSI_CACHE": True})


def asset_error(url: str, e: Exception) -> StacAssetError:
    """A read failure of ``url`` in one line: GDAL's reason and what to check."""
    cause = str(e.__cause__ or e).rstrip(". ")
    if "does not exist in the file system" in cause and "://" in url:
        cause += " (this is how GDAL reports a URL it cannot fetch)"
    return StacAssetError(
        f"cannot read the STAC asset at {url}: {cause}. Check that the href is reachable from "
        "here (network, credentials, requester-pays buckets need AWS_REQUEST_PAYER=requester, "
        "Planetary Computer hrefs need signing with planetary_computer.sign) and that it is a "
        "raster GDAL can read."
    )


class SenseiReader(_AutoParallelRioReader):
    """stackstac's reader, with errors that name the asset href and say what to check, and the
    no-data value the STAC metadata declare.

    stackstac masks only the no-data value tagged in the file itself; many assets carry
    none (Sentinel-2 JPEG 2000, some COGs) while their item or collection declares one
    (``raster:bands`` ``nodata: 0``). Those stored values would otherwise be calibrated
    into valid-looking reflectance (``0 * 1e-4 - 0.1``). Stack with
    ``functools.partial(SenseiReader, nodata_by_href={href: value})``: values equal to
    the declared one become the fill value, before scale and offset are applied. (With a
    resampling other than nearest, pixels next to such no-data are blended with it by the
    warp before this mask sees them.)

    Parameters
    ----------
    nodata_by_href : mapping of str to float, optional
        Declared no-data value per asset href (stored units, before scaling).
    **kwargs
        stackstac's reader arguments.
    """

    def __init__(self, *, nodata_by_href: Mapping[str, float] | None = None, **kwargs):
        self.declared_nodata = (nodata_by_href or {}).get(kwargs.get("url"))
        self._rescale = tuple(kwargs.get("scale_offset", (1, 0)))
        if self.declared_nodata is not None:
            kwargs["scale_offset"] = (1, 0)  # applied in read(), after the mask
        super().__init__(**kwargs)

    def _open(self):
        try:
            return super()._open()
        except RuntimeError as e:
            raise asset_error(self.url, e) from e

    def read(self, window, **kwargs):
        try:
            result = super().read(window, **kwargs)
        except RuntimeError as e:
            raise asset_error(self.url, e) from e
        if self.declared_nodata is None:
            return result
        if math.isnan(self.declared_nodata):
            result[np.isnan(result)] = self.fill_value
        else:
            result[result == self.declared_nodata] = self.fill_value
        scale, offset = self._rescale
        if scale != 1 or offset != 0:
            valid = ~np.isnan(result) if np.isnan(self.fill_value) else result != self.fill_value
            result[valid] = result[valid] * scale + offset
        return result
