"""Quicklook PNGs: true-colour RGB with the cloud mask overlaid (matplotlib, no display)."""

from __future__ import annotations

import math
import os
from os import PathLike
from pathlib import Path

import numpy as np

from .outputs import cloud_fraction

__all__ = ["rgb_composite", "write_quicklook"]

# Centre wavelengths (nm) of the channels a true-colour image needs.
_RGB_NM = (660.0, 560.0, 485.0)
#: Default longest side (pixels) of the data a quicklook is drawn from.
MAX_PX = 2048


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
                    metadata: dict[str, str] | None = None, max_px: int | None = MAX_PX) -> Path:
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
    max_px : int or None
        Scene and mask are decimated (every n-th pixel) until their longest side is at
        most this, so a full Sentinel-2 tile does not need its RGB bands in memory at full
        resolution; the figure is about 800 px wide anyway. None: no decimation.

    Returns
    -------
    pathlib.Path
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = max(1, math.ceil(max(mask.shape) / max_px)) if max_px else 1
    if step > 1:
        scene = scene.isel(y=slice(None, None, step), x=slice(None, None, step))
        mask = mask.isel(y=slice(None, None, step), x=slice(None, None, step))
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
    frac = cloud_fraction(m)
    cloud_text = f"cloud fraction {frac:.1%}" if frac is not None else "no valid pixels"
    fig.suptitle(f"{title}  {cloud_text}".strip())
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial.png")
    try:
        fig.savefig(tmp, dpi=80, metadata=dict(metadata or {}))
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)  # a failed write leaves no half-written PNG behind
    return path
