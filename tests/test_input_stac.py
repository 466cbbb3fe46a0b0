"""STAC searches against servers that misbehave: every request has a timeout, every error
says what happened. The servers are real sockets on 127.0.0.1 run by threads of the test:
one accepts connections and never answers, one answers the landing page and then hangs on
the search, one answers 404; plus the real rustac server of the demo catalog.
"""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from sensei_xr import cli
from sensei_xr.io import stac
from sensei_xr.demo import DEMO_S2_COLLECTION
from stac_fixtures import SilentServer, demo_catalog, rustac_url  # noqa: F401  (fixtures)


class _Api(http.server.BaseHTTPRequestHandler):
    """A STAC API landing page; ``/search`` hangs until the server is closed."""

    release: threading.Event
    status = 200

    def _send(self, code: int, body: bytes = b"", kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.status != 200:
            return self._send(self.status)
        root = f"http://{self.headers['Host']}"
        if self.path.startswith("/search"):
            self.release.wait(30)
            return self._send(503)
        landing = {
            "type": "Catalog", "id": "hangs", "stac_version": "1.0.0", "description": "test",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [{"rel": "self", "href": root}, {"rel": "root", "href": root},
                      {"rel": "search", "href": f"{root}/search", "type": "application/geo+json",
                       "method": "GET"},
                      {"rel": "search", "href": f"{root}/search", "type": "application/geo+json",
                       "method": "POST"}],
        }
        self._send(200, json.dumps(landing).encode())

    def do_POST(self):  # noqa: N802
        self.release.wait(30)
        self._send(503)

    def log_message(self, *args) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # the client hung up on a request that timed out: expected here


class ApiServer:
    """An HTTP server on 127.0.0.1 in a thread: a landing page whose search never answers,
    or (``status=404``) nothing but a bare 404."""

    def __init__(self, status: int = 200) -> None:
        release = threading.Event()
        self.release = release
        handler = type("Handler", (_Api,), {"release": release, "status": status})
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "ApiServer":
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------- timeouts


def test_server_that_never_answers_times_out(tmp_path):
    with SilentServer() as srv:
        url = srv.url
        t0 = time.monotonic()
        with pytest.raises(stac.StacConnectionError) as info:
            stac.search(url, "c", timeout=0.5)
        elapsed = time.monotonic() - t0
        assert len(srv.accepted) == 1, "one connection, no retries of a request that timed out"
    msg = str(info.value)
    assert msg.startswith(f"cannot reach the STAC API at {url}: no answer within 0.5 s")
    assert "timeout=" in msg and "--timeout" in msg
    assert 0.5 <= elapsed < 5


def test_search_that_never_answers_times_out():
    """The landing page answers; the search request itself hangs: also bounded."""
    with ApiServer() as srv:
        t0 = time.monotonic()
        with pytest.raises(stac.StacConnectionError, match=r"no answer within 0.5 s"):
            stac.search(srv.url, "c", timeout=0.5)
        assert time.monotonic() - t0 < 10
        with pytest.raises(stac.StacConnectionError, match=r"no answer within 0.5 s"):
            stac.open_stac(srv.url, "c", timeout=0.5)


def test_cli_mask_stac_hanging_server(tmp_path, capsys):
    with SilentServer() as srv:
        url = srv.url
        t0 = time.monotonic()
        rc = cli.main(["mask", "--stac", url, "--collection", "c", "--out", str(tmp_path / "out"),
                       "--timeout", "0.5"])
        done = time.monotonic()
        # From the first connection: the imports before it take tens of seconds on a busy machine.
        waited = done - (srv.first_contact or t0)
    _, err = capsys.readouterr()
    assert rc == 2 and waited < 15 and done - t0 < 300
    assert err.startswith(f"sensei-xr mask: error: cannot reach the STAC API at {url}: no answer within 0.5 s")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), None, "30", True, (1, 0)])
def test_bad_timeouts(timeout):
    with pytest.raises(ValueError, match=r"timeout=.*positive number of seconds"):
        stac.search("http://127.0.0.1:1", "c", timeout=timeout)


def test_cli_timeout_option_checked(tmp_path, capsys):
    rc = cli.main(["mask", "--stac", "http://127.0.0.1:1", "--collection", "c", "--out", str(tmp_path),
                   "--timeout", "0"])
    _, err = capsys.readouterr()
    assert rc == 2 and "--timeout" in err and "positive" in err


# ------------------------------------------------------------------------- HTTP errors


def test_404_names_the_status():
    with ApiServer(status=404) as srv:
        url = srv.url + "/v1"
        with pytest.raises(stac.StacConnectionError) as info:
            stac.search(url, "c", timeout=5)
    msg = str(info.value)
    assert msg.startswith(f"the STAC API at {url} answered HTTP 404 Not Found")
    assert "root URL" in msg and not msg.rstrip().endswith(":")


def test_404_from_a_real_stac_server(rustac_url):
    with pytest.raises(stac.StacConnectionError, match=r"answered HTTP 404 Not Found.*root URL"):
        stac.search(rustac_url + "/no/such/api", DEMO_S2_COLLECTION, timeout=5)


# ---------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("value, why", [
    ("2017-13-45", "month must be in 1..12"),
    ("2017-02-30", "day is out of range"),
    ("2017-01-01T25:00:00Z", "hour must be in 0..23"),
    ("yesterday", "neither YYYY"),
    ("2017-02-01/2017-01-01", "ends before it starts"),
    ("2017/2018/2019", "one '/'"),
    ("../..", "both ends are open"),
])
def test_bad_datetime_named_before_any_request(value, why):
    with SilentServer() as srv:
        with pytest.raises(stac.StacSearchError) as info:
            stac.search(srv.url, "c", datetime=value, timeout=5)
        assert srv.accepted == []  # refused before connecting
    assert str(info.value).startswith(f"datetime {value!r} is not an RFC 3339") and why in str(info.value)


@pytest.mark.parametrize("value", ["2017", "2017-06", "2017-06-01", "2017-06-01T10:00:00Z",
                                   "2017-06-01T10:00:00.5+02:00", "2017-06-01/..", "../2017-06-01",
                                   "2017-06-01T12:00:00Z/2017-06-01", "2017-06/2017-06-30"])
def test_good_datetimes_pass(value):
    stac.check_datetime(value)


def test_cli_datetime_names_the_option(tmp_path, capsys):
    rc = cli.main(["mask", "--stac", "http://127.0.0.1:1", "--collection", "c", "--datetime", "2017-13-45",
                   "--out", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert rc == 2 and "--datetime" in err and "2017-13-45" in err and "month must be in 1..12" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bbox, match", [
    ((500000, 5000000, 510000, 5010000), "projected coordinates"),
    ((14.6, 45.9, 14.5, 45.8), "south 45.9 is north of north 45.8"),
    ((1, 2, 3), "four numbers"),
    ((0, float("nan"), 1, 1), "four numbers"),
    ((10, 45, 9, 46), r"west 10 is east of east 9, .* 359 deg wide; swapped west and east\?"),
])
def test_bad_bbox(bbox, match):
    with pytest.raises(stac.StacSearchError, match=match):
        stac.search("http://127.0.0.1:1", "c", bbox=bbox)


def test_a_bbox_across_the_antimeridian_is_a_bbox():
    assert stac.check_bbox((179.5, -17, -179.5, -16)) == [179.5, -17.0, -179.5, -16.0]


def test_cli_bbox_names_the_option(tmp_path, capsys):
    rc = cli.main(["mask", "--stac", "http://127.0.0.1:1", "--collection", "c", "--bbox", "14.6", "45.9",
                   "14.5", "45.8", "--out", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert rc == 2 and "--bbox" in err and "north of north" in err


@pytest.mark.parametrize("url, match", [
    ("earth-search.aws.element84.com/v1", r"not the http\(s\) URL .*did you mean 'https://earth-search"),
    ("ftp://127.0.0.1/stac", r"not the http\(s\) URL"),
])
def test_url_that_is_not_http(url, match):
    with pytest.raises(stac.StacSearchError, match=match):
        stac.search(url, "c", timeout=1)


def test_asset_reads_have_http_timeouts():
    """Asset reads go through GDAL: its HTTP timeouts come from the stack's timeout=."""
    from sensei_xr.io.stac import _gdal_env

    options = _gdal_env(7.0).always.options  # applied to every open and read
    assert options["GDAL_HTTP_TIMEOUT"] == "7"
    assert options["GDAL_HTTP_CONNECTTIMEOUT"] == "7"
    assert int(options["GDAL_HTTP_MAX_RETRY"]) >= 1
    assert _gdal_env(120).always.options["GDAL_HTTP_CONNECTTIMEOUT"] == "10"
