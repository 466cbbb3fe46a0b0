"""The model's per-pixel member mixed into each patch's refined cloud probability (torch; no Dask).

A :class:`~sensei_xr.models.pixel_member.PixelMember` reads a pixel's reflectance in fixed
regions; where the scene has every one of them, the engine replaces the network's refined
cloud probability ``p`` by ``(1 - w) p + w m`` (``m`` the member's, ``w`` its weight) and
then applies the model's pixel tests to that; where it lacks one, the member's fallback
(e.g. one on blue, green, red and NIR) if the scene has its regions. ``m`` is computed
once per pixel whose predictions a block keeps (:func:`member_probability`), not once per
patch covering it (the patch grid covers each pixel 2-3 times), and rides to the patches
as an extra input channel (``predict_patches``' ``extra``). Pointwise, so the engine's
results stay independent of chunking.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..bands import BandDescriptors
from ..spectral.bandsets import region_band
from .refine import with_cloud_probability

__all__ = ["member_bands", "member_probability", "mixed"]


def member_bands(model, desc: BandDescriptors) -> tuple[int, tuple[int, ...]] | None:
    """The member the engine runs on a scene: the model's member, or else the first of its
    fallbacks (:meth:`~sensei_xr.models.pixel_member.PixelMember.chain`) whose regions the
    scene has all of, as (its place in that chain, the indices of the bands standing for its
    regions, in its order); None: no member, or none fits (the network runs alone)."""
    member = getattr(model, "pixel_member", None)
    for depth, m in enumerate(member.chain() if member is not None else []):
        names = [region_band(desc, r) for r in m.regions]
        if all(n is not None for n in names):
            return depth, tuple(desc.names.index(n) for n in names)
    return None


def member_probability(x: np.ndarray, member_run: Callable, bands: Sequence[int], device: str,
                       window: tuple[slice, slice] | None = None) -> np.ndarray:
    """The member's cloud probability over a block, as the channel the patches carry.

    Parameters
    ----------
    x : numpy.ndarray
        (N, H, W) float32 model input (reflectance, 0-1, in the member's bands), no NaN.
    member_run : callable
        (1, M, h, w) torch reflectance on ``device`` -> (1, 1, h, w) cloud probability; a
        pixel's value must not depend on the others (the folded member's fixed-size steps).
    bands : sequence of int
        The M indices of the member's regions among the N.
    window : tuple of slice, optional
        (rows, cols) of ``x`` whose predictions are kept: the member runs there only (0
        elsewhere; the mix is pointwise, so those pixels' results are not used).

    Returns
    -------
    numpy.ndarray
        (1, H, W) float32 cloud probability (0-1).
    """
    import torch

    rows, cols = window if window is not None else (slice(None), slice(None))
    out = np.zeros((1, *x.shape[1:]), dtype=np.float32)
    inputs = np.ascontiguousarray(x[list(bands), rows, cols], dtype=np.float32)
    if inputs.size:
        with torch.inference_mode():
            m = member_run(torch.from_numpy(inputs)[None].to(device))
        out[0, rows, cols] = m[0, 0].float().cpu().numpy()
    return out


def mixed(run: Callable, cloud_classes: Sequence[int], weight: float) -> Callable:
    """Wrap a patch runner (``(B, N, P, P)`` batch -> probabilities) to take ``(B, N + 1, P,
    P)`` batches whose last channel is the member's cloud probability
    (:func:`member_probability`), run the network on the N bands, and mix that in."""
    cloud, weight = sorted(set(int(i) for i in cloud_classes)), float(weight)

    def run_mixed(batch):
        probs = run(batch[:, :-1].contiguous()).float()
        p = probs[:, cloud].sum(1, keepdim=True)
        q = (1.0 - weight) * p + weight * batch[:, -1:].to(p.device, p.dtype)
        return with_cloud_probability(probs, cloud, p, q)

    return run_mixed
