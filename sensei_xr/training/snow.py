"""The pixel tests a model carries: the snow tests' thresholds, chosen on a model's
training labels, and the warm-surface test (fixed: Fmask's 27 C).

:class:`~sensei_xr.spectral.snow.SnowTest` takes SNOMAP's NDSI and green thresholds
from the literature; the 1.6 um ceiling that keeps ice clouds out of it is chosen here,
on the labelled pixels a model is trained on (in cross-validation, the training folds
only): the largest ceiling under which at most ``tolerance`` of those cloud pixels pass.
:class:`~sensei_xr.spectral.snow.NirSnowTest` (scenes without a 1.6 um band) has two
thresholds, both chosen here by the same rule: for each green floor, the largest NDVI
ceiling passing at most ``tolerance`` of the cloud pixels; of those pairs, the one
passing the most clear training pixels. A recipe may hold that ceiling under a limit
(``nir_snow_test = { ndvi_limit = -0.05 }``): the test is for ice, whose NIR is well below
its red, and training labels with no thin cloud over snow let the rule choose a ceiling
near 0, where fresh snow and the cloud over it sit.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..spectral.snow import NirSnowTest, SnowTest, nir_snow_bands, snow_bands
from ..spectral.warm import WarmSurfaceTest

__all__ = ["NIR_GREEN_FLOORS", "NIR_NDVI_LIMITS", "SWIR_MAX_TOLERANCE", "SWIR_MAX_LIMIT", "choose_nir_test",
           "TEST_KEYS", "check_test_options", "choose_swir_max", "give_missing_tests", "snow_test_for", "test_options",
           "training_snow_tests", "training_tests"]

#: Share of the training cloud pixels the test may pass (fixed before any fold was scored).
SWIR_MAX_TOLERANCE = 0.001
#: Highest ceiling chosen (reflectance): the MODIS snow products reverse a snow detection
#: whose 1.6 um reflectance exceeds 0.45.
SWIR_MAX_LIMIT = 0.45
#: Green floors (reflectance) the NIR test's choice tries.
NIR_GREEN_FLOORS = (0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40)
#: Range of the NIR test's NDVI ceiling: at most 0 (NIR below red), at least -0.3 (below
#: that, no bright snow or ice is left to find). A recipe's ``ndvi_limit`` lowers the top.
NIR_NDVI_LIMITS = (-0.30, 0.0)
# What a recipe may set in the table form of each test's config key (``key = { ... }``).
_TEST_OPTIONS = {"snow_test": (), "nir_snow_test": ("ndvi_limit",), "warm_test": ()}
# Ceilings are rounded down to this step (reflectance, NDVI), so a card reads plainly.
_STEP = 0.005


def choose_swir_max(samples: Sequence, cloud_classes: Sequence[int], tolerance: float = SWIR_MAX_TOLERANCE,
                    ndsi_min: float = 0.4, green_min: float = 0.10, nir_min: float = 0.11) -> float:
    """The largest 1.6 um ceiling under which at most ``tolerance`` of the samples'
    cloud pixels pass the snow test.

    Parameters
    ----------
    samples : sequence of LabelledSample
        Labelled images with green, 1.6 um and NIR bands (reflectance, 0-1).
    cloud_classes : sequence of int
        Label values that are cloud.
    tolerance : float
        Largest share of the cloud pixels that may pass (0-1).
    ndsi_min, green_min, nir_min : float
        The test's other thresholds (see :class:`~sensei_xr.spectral.snow.SnowTest`).

    Returns
    -------
    float
        Reflectance, a multiple of 0.005, at most :data:`SWIR_MAX_LIMIT`.
    """
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance is a share of the cloud pixels (0-1), not {tolerance}")
    probe = SnowTest(swir_max=SWIR_MAX_LIMIT + 1.0, ndsi_min=ndsi_min, green_min=green_min, nir_min=nir_min)
    swir_of_snowlike_cloud, n_cloud = [], 0
    for s in samples:
        bands = snow_bands(s.descriptors)
        if bands is None:
            raise ValueError(f"sample {s.name!r} lacks a green, 1.6 um or NIR band ({list(s.descriptors.names)}); "
                             "the snow test's ceiling is chosen on samples with all three")
        cloud = np.isin(s.labels, list(cloud_classes)) & ~s.nodata
        green, swir, nir = (s.image[b][cloud] for b in bands)
        n_cloud += int(cloud.sum())
        swir_of_snowlike_cloud.append(swir[probe.holds(green, swir, nir)])
    if n_cloud == 0:
        raise ValueError("no cloud pixels in the samples: the snow test's ceiling cannot be chosen")
    return _ceiling(np.concatenate(swir_of_snowlike_cloud), n_cloud, tolerance, SWIR_MAX_LIMIT)


def snow_test_for(samples: Sequence, cloud_classes: Sequence[int], tolerance: float = SWIR_MAX_TOLERANCE) -> SnowTest:
    """The :class:`SnowTest` with its ceiling chosen on ``samples`` (see :func:`choose_swir_max`)."""
    return SnowTest(swir_max=choose_swir_max(samples, cloud_classes, tolerance))


def _ceiling(values: np.ndarray, n_cloud: int, tolerance: float, limit: float) -> float:
    """The largest multiple of the step, at most ``limit``, under which ("x < ceiling") at
    most ``tolerance`` of ``n_cloud`` cloud pixels pass, ``values`` being the cloud pixels'
    values that pass the test's other conditions."""
    values = np.sort(values)
    allowed = int(np.floor(tolerance * n_cloud))
    # A ceiling equal to the (allowed + 1)-th smallest value passes exactly `allowed` of them.
    if allowed >= len(values):
        return float(limit)
    top = float(values[allowed])
    ceiling = round(float(np.floor(top / _STEP)) * _STEP, 3)  # rounded so a card reads 0.11, not 0.11000000000000001
    if ceiling > top:  # the rounding must never let the value itself pass
        ceiling = round(ceiling - _STEP, 3)
    return float(min(ceiling, limit))


def choose_nir_test(samples: Sequence, cloud_classes: Sequence[int], tolerance: float = SWIR_MAX_TOLERANCE,
                    ndvi_limit: float = NIR_NDVI_LIMITS[1]) -> NirSnowTest | None:
    """The :class:`NirSnowTest` passing at most ``tolerance`` of the samples' cloud pixels
    and, within that, the most of their clear pixels (None when no green floor of
    :data:`NIR_GREEN_FLOORS` leaves a ceiling within :data:`NIR_NDVI_LIMITS`).

    Parameters
    ----------
    samples : sequence of LabelledSample
        Labelled images with green, red and NIR bands (reflectance, 0-1).
    cloud_classes : sequence of int
        Label values that are cloud; every other valid label is clear.
    tolerance : float
        Largest share of the cloud pixels that may pass (0-1).
    ndvi_limit : float
        Highest NDVI ceiling chosen, from :data:`NIR_NDVI_LIMITS`' range (default its top, 0).
    """
    if not 0.0 <= tolerance < 1.0:
        raise ValueError(f"tolerance is a share of the cloud pixels (0-1), not {tolerance}")
    _check_ndvi_limit(ndvi_limit)
    cols = {"green": [], "nir": [], "ndvi": [], "cloud": []}
    for s in samples:
        bands = nir_snow_bands(s.descriptors)
        if bands is None:
            raise ValueError(f"sample {s.name!r} lacks a green, red or NIR band ({list(s.descriptors.names)}); "
                             "the NIR snow test is chosen on samples with all three")
        valid = ~s.nodata & (s.labels >= 0)
        green, red, nir = (s.image[b][valid] for b in bands)
        cols["green"].append(green)
        cols["nir"].append(nir)
        cols["ndvi"].append((nir - red) / np.where(nir + red > 0, nir + red, np.inf))
        cols["cloud"].append(np.isin(s.labels[valid], list(cloud_classes)))
    green, nir, ndvi, cloud = (np.concatenate(cols[k]) for k in ("green", "nir", "ndvi", "cloud"))
    n_cloud = int(cloud.sum())
    if n_cloud == 0:
        raise ValueError("no cloud pixels in the samples: the NIR snow test cannot be chosen")
    best = None
    for floor in NIR_GREEN_FLOORS:
        bright = (green > floor) & (nir > NirSnowTest.nir_min)
        ceiling = _ceiling(ndvi[bright & cloud], n_cloud, tolerance, float(ndvi_limit))
        if ceiling < NIR_NDVI_LIMITS[0]:
            continue
        clear_passing = int((bright & ~cloud & (ndvi < ceiling)).sum())
        if best is None or clear_passing > best[0]:
            best = (clear_passing, floor, ceiling)
    return None if best is None else NirSnowTest(ndvi_max=best[2], green_min=best[1])


def test_options(cfg: dict, key: str) -> dict:
    """The options of the test ``cfg[key]`` asks for: ``{}`` for ``true``, the table's
    entries for ``key = { ... }`` (each named in :data:`_TEST_OPTIONS`)."""
    value = cfg.get(key)
    if not isinstance(value, dict):
        return {}
    unknown = sorted(set(value) - set(_TEST_OPTIONS[key]))
    if unknown:
        allowed = ", ".join(_TEST_OPTIONS[key]) or "none"
        raise ValueError(f"{key} = {{ ... }} has unknown options {unknown}; it takes: {allowed} (or {key} = true)")
    return dict(value)


def check_test_options(cfg: dict) -> None:
    """Refuse, before any training, a test setting that is neither true / false nor a table
    of that test's options with valid values."""
    for key in TEST_KEYS:
        value = cfg.get(key, False)
        if isinstance(value, bool):
            continue
        if not isinstance(value, dict) or not value:
            raise ValueError(f"{key} must be true, false or a table of its options, not {value!r}")
        _check_ndvi_limit(test_options(cfg, key).get("ndvi_limit", NIR_NDVI_LIMITS[1]))


def _check_ndvi_limit(limit) -> None:
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) \
            or not NIR_NDVI_LIMITS[0] <= limit <= NIR_NDVI_LIMITS[1]:
        raise ValueError(f"the NIR test's ndvi_limit is an NDVI from {NIR_NDVI_LIMITS[0]} to {NIR_NDVI_LIMITS[1]}, "
                         f"not {limit!r}")


def training_snow_tests(cfg: dict, sources, cloud_classes) -> tuple[SnowTest | None, NirSnowTest | None]:
    """The snow tests a training config asks for (``snow_test``, ``nir_snow_test``: ``true``
    or a table of options, see :func:`test_options`), chosen on the labelled training
    images that have their bands.

    Parameters
    ----------
    cfg : dict
        Training config.
    sources : sequence of sequences of LabelledSample
        The training data, as training draws it.
    cloud_classes : sequence of int
    """
    samples = [smp for src in sources for smp in src]
    tests = []
    for key, find, choose, needs in (("snow_test", snow_bands, snow_test_for, "green, 1.6 um and NIR bands"),
                                     ("nir_snow_test", nir_snow_bands, choose_nir_test, "green, red and NIR bands")):
        if not cfg.get(key):
            tests.append(None)
            continue
        labelled = [smp for smp in samples if find(smp.descriptors) is not None]
        if not labelled:
            raise ValueError(f"{key} = true needs labelled training images with {needs}; none of the training "
                             "data has them")
        tests.append(choose(labelled, list(cloud_classes), **test_options(cfg, key)))
    return tests[0], tests[1]


#: The model attributes (and config and card keys) of the pixel tests.
TEST_KEYS = ("snow_test", "nir_snow_test", "warm_test")


def training_tests(cfg: dict, sources, cloud_classes) -> dict:
    """``{key: test or None}`` for each of :data:`TEST_KEYS`: the snow tests the config asks
    for, chosen on ``sources`` (:func:`training_snow_tests`), and the warm-surface test
    with the literature's thresholds if ``cfg["warm_test"]`` (nothing to choose)."""
    snow, nir = training_snow_tests(cfg, sources, cloud_classes)
    test_options(cfg, "warm_test")  # nothing to choose: refuses options
    return {"snow_test": snow, "nir_snow_test": nir, "warm_test": WarmSurfaceTest() if cfg.get("warm_test") else None}


def give_missing_tests(model, cfg: dict, sources, again: bool = False) -> dict:
    """Give ``model`` the pixel tests ``cfg`` asks for and the model lacks, as training
    gives them (a finished or kept run of a recipe whose tests came later: they are set
    after training). With ``again``, every test ``cfg`` asks for is chosen again and
    replaces the model's where they differ (a kept network scored as a recipe that chooses
    its tests otherwise). Returns ``{key: test}`` of those given or replaced."""
    asked = {key: cfg[key] for key in TEST_KEYS if cfg.get(key)
             and (again or getattr(model, key, None) is None)}
    if not asked:
        return {}
    chosen = training_tests(asked, sources, model.cloud_class_indices)
    given = {key: chosen[key] for key in asked if chosen[key] != getattr(model, key, None)}
    for key, test in given.items():
        setattr(model, key, test)
    return given
