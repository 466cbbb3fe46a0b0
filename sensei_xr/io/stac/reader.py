"""Reading assets: stackstac's reader with errors that name the href, and GDAL's HTTP limits.

The only I/O of the package besides :mod:`.search`: everything here runs when a stack is
computed, in dask tasks.
"""

from __future__ import annotations

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
    """stackstac's reader, with errors that name the asset href and say what to check."""

    def _open(self):
        try:
            return super()._open()
        except RuntimeError as e:
            raise asset_error(self.url, e) from e

    def read(self, window, **kwargs):
        try:
            return super().read(window, **kwargs)
        except RuntimeError as e:
            raise asset_error(self.url, e) from e
