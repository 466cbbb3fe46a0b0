"""The one loader of the TOML registries (sensor catalogs, STAC collection profiles).

A registry is a shipped folder under ``catalogs/`` (package data ``sensei_xr/_catalogs`` in
a wheel) followed by the user's folders from an environment variable; later folders
override earlier ones. Both registries find their folders and read their files here, so
they treat a bad folder or a broken file the same way.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import tomllib

__all__ = ["registry_dirs", "read_toml"]


@functools.lru_cache(maxsize=4)
def _builtin_dir(subfolder: str = "") -> Path | None:
    # Wheel: catalogs/ force-included as package data sensei_xr/_catalogs.
    try:
        from importlib.resources import files

        res = files("sensei_xr") / "_catalogs"
        res = res / subfolder if subfolder else res
        if isinstance(res, Path) and res.is_dir():
            return res
    except (ModuleNotFoundError, TypeError, OSError):
        pass
    # Source checkout (or editable install): <repo>/catalogs.
    src = Path(__file__).resolve().parents[1] / "catalogs"
    src = src / subfolder if subfolder else src
    return src if src.is_dir() else None


def registry_dirs(subfolder: str, env_var: str) -> list[Path]:
    """Folders of a TOML registry, in priority order (last wins): the shipped one, then the user's.

    Used by :mod:`sensei_xr.catalogs` and :mod:`sensei_xr.io.stac.profiles`.

    Parameters
    ----------
    subfolder : str
        Folder under the shipped ``catalogs/`` (package data ``sensei_xr/_catalogs`` in a
        wheel); ``""`` for ``catalogs/`` itself.
    env_var : str
        Environment variable listing the user's folders (``os.pathsep``-separated); an
        entry that is not a folder is ignored with a warning.

    Returns
    -------
    list of pathlib.Path
    """
    dirs: list[Path] = []
    builtin = _builtin_dir(subfolder)
    if builtin is not None:
        dirs.append(builtin)
    for entry in os.environ.get(env_var, "").split(os.pathsep):
        if not entry.strip():
            continue
        d = Path(entry.strip()).expanduser()
        if d.is_dir():
            if d not in dirs:
                dirs.append(d)
        else:
            warnings.warn(f"{env_var} lists {entry!r}, which is not a directory; ignored", stacklevel=4)
    return dirs


def read_toml(path: str | os.PathLike, error: type[Exception], what: str) -> dict:
    """One registry file as a dict; ``error`` (naming the file) when unreadable or not TOML."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise error(f"{p}: cannot read {what} file: {e}") from None
    except UnicodeDecodeError as e:
        raise error(f"{p}: not UTF-8 text: {e}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise error(f"{p}: not valid TOML: {e}") from None
