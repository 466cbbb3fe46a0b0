"""The model's snow test applied to each patch's refined cloud probability (torch; no Dask).

A context network scores snow that looks like the cloud it was trained on about as high
as that cloud (``docs/model_findings.md``). Where a model carries a
:class:`~sensei_xr.spectral.snow.SnowTest` and the scene has green, NIR and 1.6 um bands,
or else a :class:`~sensei_xr.spectral.snow.NirSnowTest` and the scene has green, red and
NIR bands, the engine caps the cloud probability of the pixels that pass it. Pointwise,
so the engine's results stay independent of chunking.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..spectral.snow import NirSnowTest, SnowTest
from .refine import with_cloud_probability

__all__ = ["guard_snow", "guarded"]


def guard_snow(images, probs, cloud_classes: Sequence[int], bands: tuple[int, ...], test: SnowTest | NirSnowTest):
    """Class probabilities with the cloud probability capped where the snow test passes.

    Parameters
    ----------
    images : torch.Tensor
        (B, N, P, P) model input (reflective bands are reflectance, 0-1).
    probs : torch.Tensor
        (B, C, P, P) class probabilities.
    cloud_classes : sequence of int
        Indices of the cloud classes among the C.
    bands : tuple of int
        The bands ``test.holds`` takes, in its order (green, 1.6 um and NIR for a
        :class:`SnowTest`, :func:`snow_bands`; green, red and NIR for a
        :class:`NirSnowTest`, :func:`nir_snow_bands`).
    test : SnowTest or NirSnowTest

    Returns
    -------
    torch.Tensor
        (B, C, P, P) float32: where the test passes and the summed cloud probability
        exceeds ``test.cloud_cap``, it is ``cloud_cap``, and the clear classes share the
        rest in the proportions the network gave; elsewhere as given.
    """
    import torch

    probs = probs.float()
    cloud = sorted(set(int(i) for i in cloud_classes))
    p = probs[:, cloud].sum(1, keepdim=True)
    snow = test.holds(*(images[:, b].float() for b in bands)).unsqueeze(1)
    q = torch.where(snow, p.clamp(max=test.cloud_cap), p)
    return with_cloud_probability(probs, cloud, p, q)


def guarded(run: Callable, cloud_classes: Sequence[int], bands: tuple[int, ...],
            test: SnowTest | NirSnowTest) -> Callable:
    """Wrap a patch runner (``(B, N, P, P)`` batch -> probabilities) to apply the test."""

    def run_guarded(batch):
        return guard_snow(batch, run(batch), cloud_classes, bands, test)

    return run_guarded
