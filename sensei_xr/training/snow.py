"""The snow test's 1.6 um ceiling, chosen on a model's training labels.

:class:`~sensei_xr.inference.snow.SnowTest` takes SNOMAP's NDSI and green thresholds
from the literature; the 1.6 um ceiling that keeps ice clouds out of it is chosen here,
on the labelled pixels a model is trained on (in cross-validation, the training folds
only): the largest ceiling under which at most ``tolerance`` of those cloud pixels pass.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..spectral.snow import SnowTest, snow_bands

__all__ = ["SWIR_MAX_TOLERANCE", "SWIR_MAX_LIMIT", "choose_swir_max", "snow_test_for"]

#: Share of the training cloud pixels the test may pass (fixed before any fold was scored).
SWIR_MAX_TOLERANCE = 0.001
#: Highest ceiling chosen (reflectance): the MODIS snow products reverse a snow detection
#: whose 1.6 um reflectance exceeds 0.45.
SWIR_MAX_LIMIT = 0.45
# Ceilings are rounded down to this step (reflectance), so a card reads plainly.
_STEP = 0.005


def choose_swir_max(samples: Sequence, cloud_classes: Sequence[int], tolerance: float = SWIR_MAX_TOLERANCE,
                    ndsi_min: float = 0.4, green_min: float = 0.10) -> float:
    """The largest 1.6 um ceiling under which at most ``tolerance`` of the samples'
    cloud pixels pass the snow test.

    Parameters
    ----------
    samples : sequence of LabelledSample
        Labelled images with a green and a 1.6 um band (reflectance, 0-1).
    cloud_classes : sequence of int
        Label values that are cloud.
    tolerance : float
        Largest share of the cloud pixels that may pass (0-1).
    ndsi_min, green_min : float
        The test's other thresholds (see :class:`~sensei_xr.inference.snow.SnowTest`).

    Returns
    -------
    float
        Reflectance, a multiple of 0.005, at most :data:`SWIR_MAX_LIMIT`.
    """
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance is a share of the cloud pixels (0-1), not {tolerance}")
    probe = SnowTest(swir_max=SWIR_MAX_LIMIT + 1.0, ndsi_min=ndsi_min, green_min=green_min)
    swir_of_snowlike_cloud, n_cloud = [], 0
    for s in samples:
        bands = snow_bands(s.descriptors)
        if bands is None:
            raise ValueError(f"sample {s.name!r} has no green or no 1.6 um band ({list(s.descriptors.names)}); "
                             "the snow test's ceiling is chosen on samples with both")
        cloud = np.isin(s.labels, list(cloud_classes)) & ~s.nodata
        green, swir = s.image[bands[0]][cloud], s.image[bands[1]][cloud]
        n_cloud += int(cloud.sum())
        swir_of_snowlike_cloud.append(swir[probe.holds(green, swir)])
    if n_cloud == 0:
        raise ValueError("no cloud pixels in the samples: the snow test's ceiling cannot be chosen")
    values = np.sort(np.concatenate(swir_of_snowlike_cloud))
    allowed = int(np.floor(tolerance * n_cloud))
    # With "swir < ceiling", a ceiling equal to the (allowed + 1)-th smallest value passes
    # exactly `allowed` of them.
    ceiling = float(values[allowed]) if allowed < len(values) else SWIR_MAX_LIMIT
    return float(min(np.floor(ceiling / _STEP) * _STEP, SWIR_MAX_LIMIT))


def snow_test_for(samples: Sequence, cloud_classes: Sequence[int], tolerance: float = SWIR_MAX_TOLERANCE) -> SnowTest:
    """The :class:`SnowTest` with its ceiling chosen on ``samples`` (see :func:`choose_swir_max`)."""
    return SnowTest(swir_max=choose_swir_max(samples, cloud_classes, tolerance))
