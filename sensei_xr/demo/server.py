"""A real STAC API on 127.0.0.1 for the demo and the tests: ``rustac serve`` (demo extra).

:class:`RustacServer` serves STAC collections and items (in memory; search by bbox,
intersects and datetime, no filter or query) on a free loopback port and always stops it.
Needs the ``rustac`` executable: ``pip install "sensei_xr[demo]"``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import weakref
from pathlib import Path
from typing import Any, Sequence

__all__ = ["RustacServer", "find_rustac"]


# ------------------------------------------------------------------------------ rustac


def find_rustac() -> str:
    """Path of the ``rustac`` executable (next to this Python, else on PATH).

    Raises
    ------
    FileNotFoundError
        If rustac is not installed (``pip install rustac``).
    """
    here = Path(sys.executable).parent / ("rustac.exe" if os.name == "nt" else "rustac")
    if here.exists():
        return str(here)
    found = shutil.which("rustac")
    if found:
        return found
    raise FileNotFoundError(
        "the rustac executable was not found next to this Python or on PATH: "
        "pip install 'sensei_xr[demo]' (or pip install rustac)"
    )


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _stop_process(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _shutdown(proc: subprocess.Popen | None, workdir: Path | None) -> None:
    # Also run by weakref.finalize (garbage collection, interpreter exit): no self here.
    _stop_process(proc)
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


class RustacServer:
    """A STAC API (``rustac serve``, in memory) on 127.0.0.1, for as long as it is needed.

    Parameters
    ----------
    collections : dict or sequence of dict
        STAC collection(s).
    items : sequence of dict
        STAC items (their ``collection`` fields name the collections).
    host : str
        Address to bind; loopback by default (do not expose test data).
    port : int, optional
        Port; default a free one.
    timeout : float
        Seconds to wait for the server to answer.
    executable : str, optional
        The rustac binary (default :func:`find_rustac`).

    Examples
    --------
    >>> with RustacServer(collection, items) as url:           # doctest: +SKIP
    ...     items = sensei_xr.io.stac.search(url, "sentinel-2-l1c", bbox=...)

    The server is stopped on leaving the ``with`` block, by :meth:`stop`, and at the latest
    when the object is garbage-collected or the interpreter exits.
    """

    def __init__(self, collections: dict | Sequence[dict], items: Sequence[dict], *,
                 host: str = "127.0.0.1", port: int | None = None, timeout: float = 15.0,
                 executable: str | None = None) -> None:
        self.collections = [collections] if isinstance(collections, dict) else list(collections)
        self.items = list(items)
        self.host = host
        self.port = port
        self.timeout = timeout
        self.executable = executable
        self.url: str | None = None
        self._proc: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._finalizer = None

    def start(self) -> str:
        """Start the server and wait until it answers; returns its URL."""
        if self._proc is not None:
            return self.url
        exe = self.executable or find_rustac()
        self._workdir = Path(tempfile.mkdtemp(prefix="sensei-rustac-"))
        self._finalizer = weakref.finalize(self, _shutdown, None, self._workdir)
        hrefs = []
        for i, c in enumerate(self.collections):
            p = self._workdir / f"collection-{i}.json"
            p.write_text(json.dumps(c))
            hrefs.append(str(p))
        if self.items:
            p = self._workdir / "items.json"
            p.write_text(json.dumps({"type": "FeatureCollection", "features": self.items}))
            hrefs.append(str(p))
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between choosing and binding
            port = self.port or _free_port(self.host)
            log = (self._workdir / "rustac.log").open("w")
            proc = subprocess.Popen([exe, "serve", "--addr", f"{self.host}:{port}", *hrefs],
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            self._proc = proc
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _shutdown, proc, self._workdir)
            url = f"http://{self.host}:{port}"
            if self._wait(url, proc):
                self.url = url
                return url
            last_error = (self._workdir / "rustac.log").read_text()[-2000:]
            _stop_process(proc)
            self._proc = None
            if self.port:
                break
        self.stop()
        raise RuntimeError(f"rustac serve did not start on {self.host}: {last_error or 'no output'}")

    def _wait(self, url: str, proc: subprocess.Popen) -> bool:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as r:
                    if r.status == 200:
                        return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        """Stop the server (idempotent) and delete its working folder."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        _shutdown(self._proc, self._workdir)
        self._proc = None
        self._workdir = None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
