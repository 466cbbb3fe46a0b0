"""Where the real sample data lives (never copied into the package).

The folder is ``$SENSEI_XR_DATA`` if set, else ``../shared/data`` from the repository root
(or from the current directory).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV", "data_dir"]

DATA_ENV = "SENSEI_XR_DATA"


def data_dir(required: bool = True) -> Path | None:
    """The sample-data folder.

    Parameters
    ----------
    required : bool
        Raise if it cannot be found (else return None).

    Returns
    -------
    pathlib.Path or None
    """
    env = os.environ.get(DATA_ENV)
    candidates = [Path(env)] if env else []
    candidates += [
        Path(__file__).resolve().parents[1].parent / "shared" / "data",
        Path.cwd().parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
    ]
    for c in candidates:
        if c.is_dir():
            return c
    if required:
        raise FileNotFoundError(
            f"sample data not found; set {DATA_ENV} to the folder holding l8_biome_patches/, "
            f"s2_l1c_eolearn/, ... (looked in: {', '.join(str(c) for c in candidates)})"
        )
    return None
