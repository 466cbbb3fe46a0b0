"""``sensei-xr mask --timeout`` bounds every request: the search and each asset read.

The STAC API is the real rustac server of the demo catalog on 127.0.0.1; one item's band
asset points at a socket that accepts the connection and never answers (a hung asset
server). Without the option reaching the asset reads, GDAL waits 60 s per attempt.
"""

from __future__ import annotations

import copy
import socket
import threading
import time

from sensei_xr import cli
from sensei_xr.demo import DEMO_L8_COLLECTION, RustacServer
from stac_fixtures import demo_catalog  # noqa: F401  (fixture)

L8_ID = "LC80200392015216LGN00"


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> "SilentServer":
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        for c in self.accepted:
            c.close()
        self.sock.close()


def test_timeout_bounds_a_hung_asset_read(demo_catalog, tmp_path, capsys):
    item = copy.deepcopy(demo_catalog.item(L8_ID))
    item["id"] = "LC8_HUNG_ASSET"
    out = tmp_path / "out"
    with SilentServer() as hung:
        href = f"{hung.url}/landsat/{L8_ID}/B4.tif"
        item["assets"]["red"]["href"] = href
        with RustacServer(demo_catalog.collection(DEMO_L8_COLLECTION), [item]) as url:
            t0 = time.monotonic()
            rc = cli.main(["mask", "--stac", url, "--collection", DEMO_L8_COLLECTION, "--out", str(out),
                           "--timeout", "1", "--no-progress"])
            elapsed = time.monotonic() - t0
        assert hung.accepted, "the asset server was never asked"
    _, err = capsys.readouterr()
    assert rc == 2 and elapsed < 45, (rc, elapsed, err)
    assert err.startswith(f"sensei-xr mask: error: cannot read the STAC asset at {href}")
    assert len(err.strip().splitlines()) == 1
    assert not out.exists() or list(out.iterdir()) == []
