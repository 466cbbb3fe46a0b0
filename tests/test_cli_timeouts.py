"""``sensei-xr mask --timeout`` bounds every request: the search and each asset read.

The STAC API is the real rustac server of the demo catalog on 127.0.0.1; one item's band
asset points at a socket that accepts the connection and never answers (a hung asset
server). Without the option reaching the asset reads, GDAL waits 60 s per attempt.
"""

from __future__ import annotations

import copy
import time

from sensei_xr import cli
from sensei_xr.demo import DEMO_L8_COLLECTION, RustacServer
from stac_fixtures import SilentServer, demo_catalog  # noqa: F401  (fixture)

L8_ID = "LC80200392015216LGN00"


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
