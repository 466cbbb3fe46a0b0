"""Patch tiling and smooth blending inside one block (torch, on the model's device; no Dask).

Patches sit on a grid anchored at the scene's origin, not at the block's: patch ``k``
along an axis covers global pixels ``[k * stride, k * stride + patch)``. A pixel's
prediction is the window-weighted mean of the patches that cover it, so it depends on the
scene only, never on how the scene was chunked, provided each block carries a halo of
``patch - 1`` pixels (see :func:`halo_for`), plus :data:`FILL_REACH` pixels where the
scene has no data (:func:`fill_nodata` looks that far).

No data is filled in two steps, both functions of the scene alone: pixels near data from
their neighbours (:func:`fill_nodata`), pixels farther from any data with the mean of the
valid pixels of each patch (:func:`predict_block`), as a patch's pixels are the scene's
wherever the block boundaries fall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["TilingPlan", "FILL_REACH", "blend_window", "halo_for", "fill_nodata", "predict_block"]

#: Rounds of 3x3 neighbour averaging in :func:`fill_nodata`, which is also how far (pixels)
#: a filled value can depend on the input: a block needs this much halo beyond what its
#: patches see for the fill there to be the same in every chunking.
FILL_REACH = 8


@dataclass(frozen=True)
class TilingPlan:
    """How a network sees the scene.

    Attributes
    ----------
    patch : int
        Patch size in pixels (square). 0 means pointwise: the whole block in one pass,
        no halo (networks with a 1-pixel receptive field).
    stride : int
        Step between patch origins, pixels; ``patch - stride`` is the overlap.
    batch_size : int
        Patches per forward pass.
    """

    patch: int = 256
    stride: int = 192
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.patch < 0 or (self.patch and not 0 < self.stride <= self.patch):
            raise ValueError(
                f"need 0 < stride <= patch, got patch={self.patch}, stride={self.stride}"
            )
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")

    @property
    def pointwise(self) -> bool:
        return self.patch == 0


def halo_for(plan: TilingPlan) -> int:
    """Halo (pixels per side) a block needs so every patch covering it is inside it."""
    return 0 if plan.pointwise else plan.patch - 1


def blend_window(patch: int, floor: float = 1e-3) -> np.ndarray:
    """2-D separable Hann window (float32, patch x patch) with a small floor.

    Predictions near a patch's edge see little context, so they get little weight; the
    floor keeps every pixel covered with a nonzero total weight.
    """
    i = (np.arange(patch) + 0.5) / patch
    w1 = np.maximum(np.sin(np.pi * i) ** 2, floor)
    return np.outer(w1, w1).astype(np.float32)


def fill_nodata(x: np.ndarray, valid: np.ndarray, far: float | np.ndarray = 0.0,
                iterations: int = FILL_REACH, return_far: bool = False):
    """Fill no-data pixels from their valid neighbours, so no fill value leaks into the
    network's view of nearby pixels.

    A filled value depends only on the input within ``iterations`` pixels (Chebyshev
    distance) and on ``far``, never on the extent of ``x``, except within ``iterations``
    pixels of its edge (treated as no data beyond): on a block with that much extra
    halo the fill is the same as on the whole scene.

    Parameters
    ----------
    x : numpy.ndarray
        (N, H, W) float32 values.
    valid : numpy.ndarray
        (H, W) bool, True where all bands hold data.
    far : float or numpy.ndarray
        Value per band (scalar or (N,)) of the pixels more than ``iterations`` pixels from
        any valid one. A constant, not a statistic of ``x``: a statistic of the block
        would make the result depend on the chunking (:func:`predict_block` replaces
        them per patch).
    iterations : int
        Rounds of 3x3 neighbour averaging: a pixel ``d <= iterations`` pixels from the
        nearest valid one takes, in round ``d``, the mean of its neighbours filled before.
    return_far : bool
        Also return where ``far`` was used.

    Returns
    -------
    numpy.ndarray
        Filled copy of ``x``; ``x`` itself (as float32) where every pixel is valid.
    far_mask : numpy.ndarray
        (H, W) bool, the pixels given ``far``; only with ``return_far``.
    """
    if valid.all():
        x = np.asarray(x, dtype=np.float32)
        return (x, np.zeros(valid.shape, bool)) if return_far else x
    out = np.where(valid[None], x, np.float32(0.0)).astype(np.float32, copy=False)
    known = valid.astype(np.float32)
    for _ in range(iterations):
        if known.all():
            break
        s = _box3(out * known[None])
        c = _box3(known[None])[0]
        grow = (known == 0) & (c > 0)
        if not grow.any():
            break
        out[:, grow] = s[:, grow] / c[grow]
        known = np.where(grow, 1.0, known).astype(np.float32)
    rest = known == 0
    if rest.any():
        far_values = np.broadcast_to(np.asarray(far, dtype=np.float32), (out.shape[0],))
        out[:, rest] = far_values[:, None]
    return (out, rest) if return_far else out


def _box3(a: np.ndarray) -> np.ndarray:
    """3x3 box sum with zero padding, (C, H, W) -> (C, H, W)."""
    p = np.pad(a, ((0, 0), (1, 1), (1, 1)))
    h, w = a.shape[-2:]
    return sum(p[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))


def predict_block(
    x: np.ndarray,
    run: Callable,
    plan: TilingPlan,
    origin: tuple[int, int],
    core: tuple[slice, slice],
    device: str = "cpu",
    valid: np.ndarray | None = None,
    far: np.ndarray | None = None,
) -> np.ndarray:
    """Predict class probabilities for the core of a block with halo.

    The block goes to ``device`` once; patches are cut, predicted and blended there, and
    only the core's probabilities come back (on a GPU, per-patch copies to and from the
    host and NumPy blending would leave the GPU idle most of the time).

    Parameters
    ----------
    x : numpy.ndarray
        (N, H, W) float32 model input of the block including its halo, no NaN.
    run : callable
        Maps a (B, N, P, P) float32 torch tensor on ``device`` to (B, C, P, P) float32
        probabilities on ``device``.
    plan : TilingPlan
    origin : tuple of int
        Global (row, col) of ``x[:, 0, 0]`` in the scene (may be negative in the halo).
    core : tuple of slice
        The block's own pixels within ``x``.
    device : str
        Torch device the block is predicted on (``run``'s device).
    valid, far : numpy.ndarray, optional
        (H, W) bool: the pixels with data, and those too far from data for
        :func:`fill_nodata`. In each patch the far pixels take the mean of the patch's
        valid pixels, band by band: like the valid pixels around them, not a constant
        the network never saw in such amounts (a 300 px hole filled with zeros turned 15 %
        of a clear scene's pixels to cloud with the default model).

    Returns
    -------
    numpy.ndarray
        (C, core_h, core_w) float32 probabilities.
    """
    import torch

    with torch.inference_mode():
        if plan.pointwise:
            xt = torch.from_numpy(np.ascontiguousarray(x[None, :, core[0], core[1]])).to(device)
            return run(xt)[0].float().cpu().numpy()
        p, s = plan.patch, plan.stride
        h, w = x.shape[-2:]
        if h < p or w < p:
            raise ValueError(f"block of {h}x{w} pixels is smaller than the patch {p}: enlarge the halo")
        r0, r1 = core[0].start, core[0].stop
        c0, c1 = core[1].start, core[1].stop
        # Global patch origins (multiples of stride) whose patch overlaps the core.
        g_rows = _origins(origin[0] + r0, origin[0] + r1, p, s)
        g_cols = _origins(origin[1] + c0, origin[1] + c1, p, s)
        jobs = [(gr - origin[0], gc - origin[1]) for gr in g_rows for gc in g_cols]
        for (lr, lc) in jobs:
            if lr < 0 or lc < 0 or lr + p > h or lc + p > w:
                raise AssertionError("patch outside the block: halo too small")
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
        fill_far = far is not None and valid is not None and bool(far.any())
        if fill_far:
            far_t = torch.from_numpy(np.ascontiguousarray(far)).to(device)
            valid_t = torch.from_numpy(np.ascontiguousarray(valid, dtype=np.float32)).to(device)
        window = torch.from_numpy(blend_window(p)).to(device)
        acc = None
        weight = torch.zeros((r1 - r0, c1 - c0), dtype=torch.float32, device=device)
        for start in range(0, len(jobs), plan.batch_size):
            batch_jobs = jobs[start:start + plan.batch_size]
            patches = [xt[:, lr:lr + p, lc:lc + p] for lr, lc in batch_jobs]
            # Every forward pass gets exactly batch_size patches (the last padded with
            # zeros): convolution kernels pick their algorithm by batch size, so a patch's
            # prediction, and with it the result, would otherwise depend on the chunking.
            patches += [torch.zeros_like(patches[0])] * (plan.batch_size - len(patches))
            batch = torch.stack(patches)
            if fill_far:
                batch = _fill_far(batch, far_t, valid_t, batch_jobs, p)
            probs = run(batch)
            if acc is None:
                acc = torch.zeros((probs.shape[1], r1 - r0, c1 - c0), dtype=torch.float32, device=device)
            for (lr, lc), pr in zip(batch_jobs, probs):
                # Intersection of the patch with the core, in core coordinates.
                ar0, ar1 = max(lr, r0), min(lr + p, r1)
                ac0, ac1 = max(lc, c0), min(lc + p, c1)
                if ar0 >= ar1 or ac0 >= ac1:
                    continue
                wsub = window[ar0 - lr:ar1 - lr, ac0 - lc:ac1 - lc]
                acc[:, ar0 - r0:ar1 - r0, ac0 - c0:ac1 - c0] += pr[:, ar0 - lr:ar1 - lr, ac0 - lc:ac1 - lc] * wsub
                weight[ar0 - r0:ar1 - r0, ac0 - c0:ac1 - c0] += wsub
        return (acc / weight[None]).cpu().numpy()


def _fill_far(batch, far, valid, jobs, p: int):
    """Far no-data pixels of each patch <- the mean of the patch's valid pixels, per band.

    Computed on the stacked batch, whose layout is the same in every block, so the float
    sums, and the result, do not depend on where the block boundaries fall. A patch without
    valid pixels keeps its values: all its predictions fall on no data.
    """
    import torch

    pad = batch.shape[0] - len(jobs)
    far_b = torch.stack([far[lr:lr + p, lc:lc + p] for lr, lc in jobs]
                        + [torch.zeros_like(far[:p, :p])] * pad)
    if not bool(far_b.any()):
        return batch
    w = torch.stack([valid[lr:lr + p, lc:lc + p] for lr, lc in jobs]
                    + [torch.zeros_like(valid[:p, :p])] * pad)[:, None]  # (B, 1, p, p)
    count = w.sum(dim=(2, 3))  # (B, 1)
    mean = (batch * w).sum(dim=(2, 3)) / count.clamp(min=1.0)  # (B, N)
    use = far_b[:, None] & (count > 0)[:, :, None, None]
    return torch.where(use, mean[:, :, None, None], batch)


def _origins(a: int, b: int, p: int, s: int) -> list[int]:
    """Multiples of s, k*s, with [k*s, k*s + p) overlapping [a, b)."""
    first = -((-(a - p + 1)) // s) * s  # ceil((a - p + 1) / s) * s
    return list(range(first, b, s))
