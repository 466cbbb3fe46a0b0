"""The model's pixel tests applied to each patch's refined cloud probability (torch; no Dask).

A context network scores snow that looks like the cloud it was trained on about as high
as that cloud, and a hot, dry surface with bright shortwave infrared about as high as thin
cloud (``docs/model_findings.md``). Where a model carries a
:class:`~sensei_xr.spectral.snow.SnowTest` and the scene has green, NIR and 1.6 um bands,
or else a :class:`~sensei_xr.spectral.snow.NirSnowTest` and the scene has green, red and
NIR bands, and where it carries a :class:`~sensei_xr.spectral.warm.WarmSurfaceTest` and
the scene has a thermal band at 10-12.5 um, the engine caps the cloud probability of the
pixels that pass. Pointwise, so the engine's results stay independent of chunking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ..bands import BT_95_K, BT_MIN_K, BandDescriptors
from ..spectral.snow import NirSnowTest, SnowTest, nir_snow_bands, snow_bands
from ..spectral.warm import WarmSurfaceTest, warm_bands
from .refine import with_cloud_probability

__all__ = ["Guard", "guards_for", "guard", "guarded"]


@dataclass(frozen=True)
class Guard:
    """A model's pixel test bound to a scene's bands.

    Attributes
    ----------
    key : str
        The model attribute (and card key) the test comes from, e.g. ``"snow_test"``.
    test : SnowTest, NirSnowTest or WarmSurfaceTest
    bands : tuple of int or None
        The scene's band indices in the order ``test.holds`` takes them (None: a band the
        test can do without, which the scene lacks).
    thermal : tuple of bool
        Per entry of ``bands``: a thermal band, given to the test in kelvin (the model's
        input scales it, :func:`~sensei_xr.bands.normalise_brightness_temperature`).
    """

    key: str
    test: SnowTest | NirSnowTest | WarmSurfaceTest
    bands: tuple[int | None, ...]
    thermal: tuple[bool, ...]

    def passes(self, images):
        """Boolean (B, P, P) tensor: where the test passes, from the (B, N, P, P) model input."""
        values = []
        for b, hot in zip(self.bands, self.thermal):
            if b is None:
                values.append(None)
                continue
            x = images[:, b].float()
            # Kelvin from the model's scaled input (the inverse of bands.normalise_brightness_temperature).
            values.append(x * (BT_95_K - BT_MIN_K) + BT_MIN_K if hot else x)
        return self.test.holds(*values)

    def describe(self, names: Sequence[str]) -> str:
        return self.test.describe(*(None if b is None else names[b] for b in self.bands))


def guards_for(model, desc: BandDescriptors) -> tuple[Guard, ...]:
    """The tests of ``model`` that a scene with bands ``desc`` can take, in the order the
    engine applies them: the 1.6 um snow test where the scene has its bands, else the NIR
    snow test where it has green, red and NIR; then the warm-surface test where it has a
    thermal band at 10-12.5 um."""
    out = []
    for key, find in (("snow_test", snow_bands), ("nir_snow_test", nir_snow_bands)):
        test, bands = getattr(model, key, None), find(desc)
        if bands is not None:
            # The 1.6 um test is the better one; where the scene has its bands, the NIR
            # test is not a fallback for a model that lacks it.
            if test is not None:
                out.append(Guard(key, test, tuple(bands), (False,) * len(bands)))
            break
    warm, bands = getattr(model, "warm_test", None), warm_bands(desc)
    if warm is not None and bands is not None:
        out.append(Guard("warm_test", warm, bands, (True, False)))
    return tuple(out)


def guard(images, probs, cloud_classes: Sequence[int], guards: Sequence[Guard]):
    """Class probabilities with the cloud probability capped where each test passes.

    Parameters
    ----------
    images : torch.Tensor
        (B, N, P, P) model input (reflective bands are reflectance, 0-1; thermal bands
        scaled as the model takes them).
    probs : torch.Tensor
        (B, C, P, P) class probabilities.
    cloud_classes : sequence of int
        Indices of the cloud classes among the C.
    guards : sequence of Guard

    Returns
    -------
    torch.Tensor
        (B, C, P, P) float32: where a test passes and the summed cloud probability exceeds
        its ``cloud_cap``, it is ``cloud_cap``, and the clear classes share the rest in the
        proportions the network gave; elsewhere as given.
    """
    import torch

    probs = probs.float()
    cloud = sorted(set(int(i) for i in cloud_classes))
    p = probs[:, cloud].sum(1, keepdim=True)
    q = p
    for g in guards:
        q = torch.where(g.passes(images).unsqueeze(1), q.clamp(max=g.test.cloud_cap), q)
    return with_cloud_probability(probs, cloud, p, q)


def guarded(run: Callable, cloud_classes: Sequence[int], guards: Sequence[Guard]) -> Callable:
    """Wrap a patch runner (``(B, N, P, P)`` batch -> probabilities) to apply the tests."""

    def run_guarded(batch):
        return guard(batch, run(batch), cloud_classes, guards)

    return run_guarded
