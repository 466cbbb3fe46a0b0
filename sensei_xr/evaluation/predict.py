"""Predictions for labelled samples through the inference engine behind ``da.sensei.*``.

Evaluation, validation during training, model cards and the benchmarks all predict here,
so every number they report is measured on what users run: the same patch grid, overlap,
blending and no-data handling as :func:`sensei_xr.inference.cloud_probability`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..bands import BAND_KIND, WAVELENGTH_CENTER, WAVELENGTH_MAX, WAVELENGTH_MIN
from ..spectral.bandsets import resolve_bands

if TYPE_CHECKING:
    import xarray as xr

    from ..datasets import LabelledSample

__all__ = ["sample_to_dataarray", "predict_probability"]


def sample_to_dataarray(sample: "LabelledSample", bands: str | Sequence[str] | None = None) -> "xr.DataArray":
    """A labelled sample as the DataArray a user would pass to ``da.sensei``.

    Parameters
    ----------
    sample : LabelledSample
    bands : None, str or sequence of str
        Band choice (see :func:`~sensei_xr.spectral.bandsets.resolve_bands`).

    Returns
    -------
    xarray.DataArray
        (band, y, x) float32, NaN where the sample has no data, the bands' wavelengths
        (nm) and kinds on the band coordinate; pixel-index coordinates (samples need not
        be georeferenced).
    """
    import xarray as xr

    names = resolve_bands(sample.descriptors, bands)
    desc = sample.descriptors.select(names)
    idx = [sample.descriptors.names.index(n) for n in names]
    image = np.array(sample.image[idx], dtype=np.float32)
    image[:, sample.nodata] = np.nan
    h, w = image.shape[1:]
    wl = desc.wavelengths_nm
    return xr.DataArray(
        image, dims=("band", "y", "x"),
        coords={"band": list(names), WAVELENGTH_MIN: ("band", wl[:, 0]), WAVELENGTH_CENTER: ("band", wl[:, 1]),
                WAVELENGTH_MAX: ("band", wl[:, 2]), BAND_KIND: ("band", list(desc.kinds)),
                "y": np.arange(h, dtype=np.float64), "x": np.arange(w, dtype=np.float64)},
        name=sample.name)


def predict_probability(model, sample: "LabelledSample", bands: str | Sequence[str] | None = None,
                        device: str = "cpu", **engine_options) -> np.ndarray:
    """Cloud probability of one labelled sample, computed as ``da.sensei.cloud_probability()``.

    Parameters
    ----------
    model : CloudModel or str
        A loaded model (as trained, or from :func:`~sensei_xr.models.load_model`) or a
        registry name / weights path.
    sample : LabelledSample
    bands : None, str or sequence of str
        Band choice (see :func:`~sensei_xr.spectral.bandsets.resolve_bands`).
    device : str
        Torch device.
    **engine_options
        Passed to :func:`sensei_xr.inference.cloud_probability` (e.g. ``patch_size``,
        ``overlap``); its defaults otherwise, as the accessor's.

    Returns
    -------
    numpy.ndarray
        (H, W) float32 probability of cloud, NaN at the sample's no data.
    """
    import dask

    from ..inference import cloud_probability

    da = sample_to_dataarray(sample, bands)
    with dask.config.set(scheduler="sync"):
        return np.asarray(cloud_probability(da, model, device=device, **engine_options).values, np.float32)
