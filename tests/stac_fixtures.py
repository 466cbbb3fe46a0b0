"""Real STAC API servers over the demo catalog, for tests/test_stac.py.

Imported by the test module (``from stac_fixtures import ...``), so tests/conftest.py stays
as it is. Two servers, both real and bound to 127.0.0.1:

* ``rustac_url``: ``rustac serve`` (in memory; search by bbox / datetime, no filter), over
  the demo catalog plus a collection whose only item has no spectral band.
* ``pgstac_url``: stac-fastapi-pgstac on PostgreSQL + PostGIS, started by
  ``.ci/pgstac.sh`` (which installs the Debian packages and the server's own virtual
  environment on first use). Skipped, with the reason, only when the Debian packages cannot
  be installed on this machine; with ``CI=true`` that is a failure instead.
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from sensei_xr.demo import DemoCatalog, RustacServer, build_demo_catalog

ROOT = Path(__file__).resolve().parents[1]
PGSTAC_SH = ROOT / ".ci" / "pgstac.sh"
NO_BANDS_COLLECTION = "sensei-demo-no-bands"
# apt-get + pip into the server environment on a fresh machine; a second run is instant.
PGSTAC_INSTALL_TIMEOUT_S = 900


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def no_bands_collection(cat: DemoCatalog) -> tuple[dict, list[dict]]:
    """A collection whose one item has only a QA band and a thumbnail (no spectral band)."""
    src = cat.item("LC80200392015216LGN00")
    s2 = cat.item("S2_EOLEARN_20170405_L1C")
    item = copy.deepcopy(src)
    item["id"] = "LC80200392015216LGN00_QA_ONLY"
    item["collection"] = NO_BANDS_COLLECTION
    item["assets"] = {"bqa": src["assets"]["bqa"], "thumbnail": s2["assets"]["thumbnail"]}
    coll = copy.deepcopy(cat.collection("sensei-demo-landsat-8"))
    coll["id"] = NO_BANDS_COLLECTION
    coll["title"] = "sensei_xr demo: an item without spectral bands"
    coll["item_assets"] = {}
    return coll, [item]


@pytest.fixture(scope="session")
def demo_catalog(shared_data, tmp_path_factory) -> DemoCatalog:
    """COGs and STAC records built from the real sample scenes (a few seconds)."""
    return build_demo_catalog(tmp_path_factory.mktemp("demo-stac"), shared_data)


@pytest.fixture(scope="session")
def rustac_url(demo_catalog):
    """URL of a rustac STAC API serving the demo catalog (stopped after the session)."""
    coll, items = no_bands_collection(demo_catalog)
    with RustacServer([*demo_catalog.collections, coll], [*demo_catalog.items, *items]) as url:
        yield url


@pytest.fixture(scope="session")
def pgstac_url(demo_catalog, tmp_path_factory):
    """URL of a stac-fastapi-pgstac API (PostgreSQL + PostGIS) loaded with the demo catalog."""
    env = {**os.environ, "PYTHON": sys.executable}
    try:
        inst = subprocess.run([str(PGSTAC_SH), "install"], env=env, capture_output=True, text=True,
                              timeout=PGSTAC_INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f".ci/pgstac.sh install took more than {PGSTAC_INSTALL_TIMEOUT_S} s")
    if inst.returncode == 3:
        reason = ("stac-fastapi-pgstac test server unavailable: PostgreSQL/PostGIS Debian packages "
                  f"cannot be installed here: {inst.stderr.strip().splitlines()[-1]}")
        if _in_ci():
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    if inst.returncode != 0:
        pytest.fail(f".ci/pgstac.sh install failed (exit {inst.returncode}):\n{inst.stderr[-3000:]}")

    ndjson = tmp_path_factory.mktemp("pgstac-ndjson")
    collections, items = demo_catalog.write_ndjson(ndjson)
    # Not under pytest's 0700 tmp folders: the database runs as the postgres user.
    state = Path(tempfile.mkdtemp(prefix="sensei-pgstac-"))
    shutil.rmtree(state)
    try:
        run = subprocess.run([str(PGSTAC_SH), "start", str(state), str(collections), str(items)],
                             env=env, capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            pytest.fail(f".ci/pgstac.sh start failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
        yield run.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run([str(PGSTAC_SH), "stop", str(state)], env=env, capture_output=True, timeout=120)


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.accepted: list[socket.socket] = []
        self.first_contact: float | None = None  # time.monotonic() of the first connection
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
            if self.first_contact is None:
                self.first_contact = time.monotonic()
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
