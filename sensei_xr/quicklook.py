"""Quicklook PNGs: true-colour RGB with the cloud mask overlaid (matplotlib, no display)."""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

import numpy as np

__all__ = ["rgb_composite", "write_quicklook"]

# Centre wavelengths (nm) of the channels a true-colour image needs.
_RGB_NM = (660.0, 560.0, 485.0)


def rgb_composite(scene, gain: float = 2.5) -> np.ndarray:
    """(H, W, 3) float RGB in 0..1 from the bands nearest to red, green and blue.

    Parameters
    ----------
    scene : xarray.DataArray
        (band, y, x) reflectance with wavelengths on the band coordinate.
    gain : float
        Brightness gain (TOA reflectance is dark).
    """
    from .bands import band_descriptors

    desc = band_descriptors(scene)
    centres = desc.wavelengths_nm[:, 1]
    idx = [int(np.argmin(np.abs(centres - c))) for c in _RGB_NM]
    rgb = np.stack([np.asarray(scene.isel(band=i).values, dtype=np.float32) for i in idx], axis=-1)
    return np.clip(np.nan_to_num(rgb * gain, nan=0.0), 0, 1)


def write_quicklook(scene, mask, path: str | PathLike, title: str = "",
                    metadata: dict[str, str] | None = None) -> Path:
    """RGB beside RGB with the cloud mask overlaid (cyan), written atomically as PNG.

    Parameters
    ----------
    scene : xarray.DataArray
        (band, y, x) reflectance with wavelengths on the band coordinate.
    mask : xarray.DataArray
        (y, x) uint8 mask: 0 clear, 1 cloud, 255 no data.
    path : path-like
        Target ``.png``.
    title : str
    metadata : dict of str, optional
        PNG text chunks to store (e.g. the job that made the mask).

    Returns
    -------
    pathlib.Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = rgb_composite(scene)
    m = np.asarray(mask.values)
    overlay = rgb.copy()
    cloud = m == 1
    overlay[cloud] = 0.45 * overlay[cloud] + 0.55 * np.array([0.0, 1.0, 1.0])
    overlay[m == 255] = [1.0, 0.0, 1.0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.2), constrained_layout=True)
    for ax, img, t in zip(axes, (rgb, overlay), ("true colour", "cloud (cyan), no data (magenta)")):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(t)
        ax.set_axis_off()
    valid = m != 255
    frac = cloud.sum() / max(1, valid.sum())
    fig.suptitle(f"{title}  cloud fraction {frac:.1%}".strip())
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial.png")
    try:
        fig.savefig(tmp, dpi=80, metadata=dict(metadata or {}))
    finally:
        plt.close(fig)
    os.replace(tmp, path)
    return path
