"""The warm-surface test: a pixel warmer than 27 C at 11 um is not cloud (NumPy or torch).

Fmask's first test (Zhu and Woodcock 2012, Remote Sensing of Environment 118, 83-94,
eq. 1) keeps a pixel as a possible cloud only where its brightness temperature is below
27 C (300.15 K): cloud tops are colder than the ground under them, and a surface this warm
is land in the sun. The networks read a hot, dry surface with a bright 1.6 and 2.2 um
signal (shrubland, senescent crops, bare soil) as cloud when no visible band shows that it
is not white; the test caps their cloud probability there. Its threshold is the
literature's, not chosen on labels: an absolute temperature learnt from a few training
scenes does not carry over to others (the model issue), a physical one does.

Thin cirrus over a hot surface can read warmer than 27 C; where the scene has a 1.38 um
band, a pixel brighter there than Fmask's cirrus reflectance scale (0.04, Zhu, Wang and
Woodcock 2015, Remote Sensing of Environment 159, 269-277) is left to the network. A model
carries its test (``CloudModel.warm_test``); the engine applies it after the snow tests
(:mod:`sensei_xr.inference.guards`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bands import BandDescriptors
from .bandsets import region_band

__all__ = ["WarmSurfaceTest", "warm_bands"]


@dataclass(frozen=True)
class WarmSurfaceTest:
    """A pixel is a warm surface where its brightness temperature exceeds ``bt_min_k`` and,
    where the scene has a 1.38 um band, its reflectance there is at most ``cirrus_max``; its
    cloud probability is then at most ``cloud_cap``.

    Attributes
    ----------
    bt_min_k : float
        Brightness temperature (K) above which a pixel is not cloud: Fmask's 27 C.
    cirrus_max : float
        1.38 um reflectance above which the pixel may be cirrus over warm ground and is
        left to the network (Fmask's cirrus scale).
    cloud_cap : float
        Largest cloud probability left to a pixel that passes (as for the snow tests).
    """

    bt_min_k: float = 300.15
    cirrus_max: float = 0.04
    cloud_cap: float = 0.1

    def __post_init__(self) -> None:
        for name in ("bt_min_k", "cirrus_max", "cloud_cap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
                    or not np.isfinite(value):
                raise ValueError(f"WarmSurfaceTest.{name} must be a finite number, not {value!r}")
        if not 0.0 <= self.cloud_cap <= 1.0:
            raise ValueError(f"WarmSurfaceTest.cloud_cap is a probability (0-1), not {self.cloud_cap}")
        if not 150.0 <= self.bt_min_k <= 400.0:
            raise ValueError(f"WarmSurfaceTest.bt_min_k is a brightness temperature in kelvin "
                             f"(e.g. 300.15 for 27 C), not {self.bt_min_k}")

    def holds(self, bt_k, cirrus=None):
        """Boolean array (numpy or torch, as given): where the pixels pass, from the
        brightness temperature (K) and, if the scene has one, the 1.38 um reflectance
        (NaN fails)."""
        warm = bt_k > self.bt_min_k
        return warm if cirrus is None else warm & (cirrus <= self.cirrus_max)

    def as_dict(self) -> dict[str, float]:
        return {"bt_min_k": float(self.bt_min_k), "cirrus_max": float(self.cirrus_max),
                "cloud_cap": float(self.cloud_cap)}

    def describe(self, thermal: str, cirrus: str | None) -> str:
        """What the test does, in words, with the scene's band names."""
        where = f"{thermal} > {self.bt_min_k:g} K"
        if cirrus is not None:
            where += f" and {cirrus} <= {self.cirrus_max:g}"
        return f"cloud probability at most {self.cloud_cap:g} where {where}"


def warm_bands(desc: BandDescriptors) -> tuple[int, int | None] | None:
    """Indices of the thermal band the test reads (the ``"tir"`` region of
    :data:`~sensei_xr.spectral.bandsets.REGIONS`: centre in 10-12.5 um, the closest to 11
    um, where Fmask's band lies) and of the 1.38 um band (or None), or None when the scene has no
    thermal band in the window (the test is then not applied).

    A 3.7 um band is thermal too, but in daylight it carries reflected sunlight (clouds read
    warm there), so it never stands for the surface temperature.
    """
    thermal = region_band(desc, "tir")
    if thermal is None:
        return None
    cirrus = region_band(desc, "cirrus")
    return desc.names.index(thermal), (None if cirrus is None else desc.names.index(cirrus))
