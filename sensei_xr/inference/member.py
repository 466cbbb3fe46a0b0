"""The model's per-pixel member mixed into each patch's refined cloud probability (torch; no Dask).

A :class:`~sensei_xr.models.pixel_member.PixelMember` reads a pixel's reflectance in fixed
regions; where the scene has every one of them, the engine replaces the network's refined
cloud probability ``p`` by ``(1 - w) p + w m`` (``m`` the member's, ``w`` its weight) and
then applies the model's pixel tests to that. Pointwise, so the engine's results stay
independent of chunking.
"""

from __future__ import annotations

from typing import Callable, Sequence

from ..bands import BandDescriptors
from ..spectral.bandsets import region_band
from .refine import with_cloud_probability

__all__ = ["member_bands", "mixed"]


def member_bands(model, desc: BandDescriptors) -> tuple[int, ...] | None:
    """Indices of the bands standing for the model's member's regions, in its order, or
    None (no member, or the scene lacks one of its regions: the network runs alone)."""
    member = getattr(model, "pixel_member", None)
    if member is None:
        return None
    names = [region_band(desc, r) for r in member.regions]
    if any(n is None for n in names):
        return None
    return tuple(desc.names.index(n) for n in names)


def mixed(run: Callable, member_run: Callable, cloud_classes: Sequence[int], bands: Sequence[int],
          weight: float) -> Callable:
    """Wrap a patch runner (``(B, N, P, P)`` batch -> probabilities) to mix in the member's
    cloud probability (``member_run``: ``(B, M, P, P)`` reflectance -> ``(B, 1, P, P)``)."""
    cloud, bands, weight = sorted(set(int(i) for i in cloud_classes)), list(bands), float(weight)

    def run_mixed(batch):
        probs = run(batch).float()
        p = probs[:, cloud].sum(1, keepdim=True)
        q = (1.0 - weight) * p + weight * member_run(batch[:, bands]).to(p.device, p.dtype)
        return with_cloud_probability(probs, cloud, p, q)

    return run_mixed
