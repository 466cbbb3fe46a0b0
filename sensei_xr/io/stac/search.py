"""Ask a STAC API for items: pystac-client with timeouts, checked arguments, clear errors.

:func:`search` returns the items as plain dicts, as the API sent them: pystac >= 1.12
rewrites ``proj:epsg`` to ``proj:code`` on the way through its ``Item`` objects, and
stackstac 0.5 reads only ``proj:epsg``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ...errors import NoItemsError, StacConnectionError, StacError, StacSearchError

__all__ = ["DEFAULT_TIMEOUT_S", "search", "check_datetime", "check_bbox", "check_timeout"]

#: Seconds a STAC API may take to accept a connection and, after that, between two bytes
#: of its answer (requests' timeout semantics). Public APIs answer a search page within a
#: few seconds; a server that accepts and never answers would otherwise hang for ever.
DEFAULT_TIMEOUT_S = 60.0

_HTTP_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
                 405: "Method Not Allowed", 429: "Too Many Requests", 500: "Internal Server Error",
                 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}

# Arguments of pystac_client.Client.open; every other keyword goes to Client.search.
_OPEN_KEYWORDS = ("headers", "modifier", "parameters", "request_modifier", "stac_io")


def check_timeout(timeout: Any) -> float | tuple[float, float]:
    """A positive number of seconds, or a ``(connect, read)`` pair of them.

    Raises
    ------
    ValueError
        Naming the value and giving an example.
    """
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


def _period(part: str) -> tuple[dt.datetime, dt.datetime] | None:
    """First and last instant (UTC) of an RFC 3339 instant, date, month or year; None if neither."""
    if _DATETIME.fullmatch(part):
        moment = dt.datetime.fromisoformat(part.replace("z", "Z").replace("Z", "+00:00"))
        if moment.tzinfo is None:  # pystac-client reads a time without offset as UTC
            moment = moment.replace(tzinfo=dt.timezone.utc)
        return moment, moment
    if not _DATE.fullmatch(part):
        return None
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
    return start, end - dt.timedelta(microseconds=1)


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
    example = "e.g. 2023-07-01/2023-07-31, 2023-07-01T10:00:00Z or 2023-07"

    def fail(why: str) -> StacSearchError:
        return StacSearchError(f"{name} {value!r} is not an RFC 3339 date, time or interval ({why}); {example}")

    if not isinstance(value, str):
        return  # datetime objects and pairs: pystac-client checks those
    parts = value.strip().split("/")
    if len(parts) > 2 or not value.strip():
        raise fail("give one instant or two separated by one '/'")
    bounds = []
    for part in (p.strip() for p in parts):
        if part in ("..", "") and len(parts) == 2:
            bounds.append(None)
            continue
        try:
            period = _period(part)
        except ValueError as e:
            raise fail(f"{part!r}: {e}") from None
        if period is None:
            raise fail(f"{part!r} is neither YYYY[-MM[-DD]] nor YYYY-MM-DDThh:mm:ssZ")
        bounds.append(period)
    if len(bounds) == 2 and None not in bounds and bounds[0][0] > bounds[1][1]:
        raise fail("the interval ends before it starts")
    if bounds == [None, None]:
        raise fail("both ends are open: leave datetime out instead")


def check_bbox(bbox: Sequence[float], name: str = "bbox") -> list[float]:
    """Refuse a bbox that is not ``(west, south, east, north)`` in degrees.

    ``west > east`` is allowed: the box crosses the antimeridian. Such a box over 180 deg
    wide is refused as the likely swap of west and east it is (``(10, 45, 9, 46)`` would
    search 359 deg of longitude); split a search that wide in two.

    Returns
    -------
    list of float
        West, south, east, north in degrees.

    Raises
    ------
    StacSearchError
        Naming ``name`` and what is wrong (count, range or order).
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
    if w > e and e + 360 - w > 180:
        raise StacSearchError(
            f"{name} {bbox!r}: west {w:g} is east of east {e:g}, which would be a box across the "
            f"antimeridian {e + 360 - w:g} deg wide; swapped west and east? The order is (west, south, "
            "east, north); a box across the antimeridian reads e.g. (179.5, -17, -179.5, -16)")
    return values


def _open_client(url: str, timeout, open_kw: dict):
    """``pystac_client.Client`` of ``url``; the URL checked first, connection errors named."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    scheme = urlparse(str(url)).scheme.lower()
    if scheme not in ("http", "https") and not Path(str(url)).exists():
        guess = f"; did you mean 'https://{url}'?" if not scheme else ""
        raise StacSearchError(f"{url!r} is not the http(s) URL of a STAC API{guess}")
    open_kw.setdefault("stac_io", _stac_io())
    try:
        return Client.open(url, timeout=timeout, **open_kw)
    except (APIError, OSError) as e:  # requests' ConnectionError is an OSError
        raise _api_error(url, e, timeout) from e


def _check_extensions(client, url: str, filter_, query) -> None:
    """Refuse ``filter`` / ``query`` that the API would ignore silently."""
    from pystac_client.conformance import ConformanceClasses

    for name, value, cls in (("filter", filter_, ConformanceClasses.FILTER),
                             ("query", query, ConformanceClasses.QUERY)):
        if value is not None and not client.conforms_to(cls):
            raise StacSearchError(
                f"the STAC API at {url} does not implement the {name} extension, so "
                f"{name}={value!r} cannot be applied (it would be ignored, silently). Filter "
                "the returned items' properties in Python, or use a server that supports it "
                "(e.g. stac-fastapi-pgstac)."
            )


def _no_items(client, url: str, cols: list[str], asked: Mapping[str, Any]) -> NoItemsError:
    """An empty search, repeated in the message with the API's collections when one is missing."""
    known = ""
    try:
        ids = sorted(c.id for c in client.get_collections())
        missing = [c for c in cols if c not in ids]
        if missing:
            known = f" The API has no collection {missing}; it has {ids}."
    except Exception:  # noqa: BLE001 - the hint is optional
        pass
    parts = [f"collection={cols if len(cols) > 1 else cols[0]!r}"]
    parts += [f"{name}={value!r}" for name, value in asked.items() if value is not None]
    return NoItemsError(
        f"no items matched {', '.join(parts)} at {url}; widen the bbox or the date range, "
        f"or relax the query/filter.{known}"
    )


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
        (e.g. ``planetary_computer.sign_inplace``) go to ``pystac_client.Client.open``; the
        rest (``limit``, ``ids``, ``sortby``, ``filter_lang``, ...) to ``Client.search``.

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
    from pystac_client.exceptions import APIError

    open_kw = {k: kw.pop(k) for k in _OPEN_KEYWORDS if k in kw}
    cols = [collections] if isinstance(collections, str) else list(collections)
    timeout = check_timeout(timeout)
    if datetime is not None:
        check_datetime(datetime)
    if bbox is not None:
        check_bbox(bbox)
    client = _open_client(url, timeout, open_kw)
    _check_extensions(client, url, filter, query)
    if filter is not None and isinstance(filter, Mapping):
        kw.setdefault("filter_lang", "cql2-json")
    try:
        result = client.search(collections=cols, bbox=bbox, intersects=intersects, datetime=datetime,
                               query=query, filter=filter, max_items=max_items, **kw)
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
        asked = {"bbox": bbox, "intersects": intersects, "datetime": datetime, "query": query,
                 "filter": filter}
        raise _no_items(client, url, cols, asked)
    return items
