"""Patch tiling and smooth blending inside one block (torch, on the model's device; no Dask).

Patches sit on a grid that is a function of the scene alone (:func:`patch_origins`):
origins at the multiples of the stride, with a ring of patches past the scene's edges
(``edges="ring"``) or a last patch flush with them (``"flush"``). A pixel's prediction is
the window-weighted mean of the patches that cover it, so it depends on the scene only,
never on how the scene was chunked. Each patch is predicted once: the block holding its
origin runs it (:func:`predict_patches`), with a halo of ``patch - 1`` pixels (see
:func:`halo_for`) plus :data:`FILL_REACH` pixels where the scene has no data
(:func:`fill_nodata` looks that far); its neighbours add the part that reaches into them, in
fixed point so that the sums are exact (:func:`blend_sums`).

No data is filled in two steps, both functions of the scene alone: pixels near data from
their neighbours (:func:`fill_nodata`), pixels farther from any data with the mean of the
valid pixels of each patch (:func:`predict_patches`), as a patch's pixels are the scene's
wherever the block boundaries fall.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["TilingPlan", "EDGES", "FILL_REACH", "FIXED_POINT", "blend_window", "halo_for", "fill_nodata",
           "patch_origins", "predict_patches", "blend_sums", "predict_pixels"]

#: Rounds of 3x3 neighbour averaging in :func:`fill_nodata`, which is also how far (pixels)
#: a filled value can depend on the input: a block needs this much halo beyond what its
#: patches see for the fill there to be the same in every chunking.
FILL_REACH = 8

#: How the patch grid meets the scene's edges (:func:`patch_origins`).
EDGES = ("ring", "flush")


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
    edges : str
        One of :data:`EDGES`, see :func:`patch_origins`.
    """

    patch: int = 256
    stride: int = 192
    batch_size: int = 8
    edges: str = "ring"

    def __post_init__(self) -> None:
        if self.patch < 0 or (self.patch and not 0 < self.stride <= self.patch):
            raise ValueError(
                f"need 0 < stride <= patch, got patch={self.patch}, stride={self.stride}"
            )
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.edges not in EDGES:
            raise ValueError(f"edges must be one of {EDGES}, got {self.edges!r}")

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
        would make the result depend on the chunking (:func:`predict_patches` replaces
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


def patch_origins(n: int, patch: int, stride: int, edges: str = "ring") -> np.ndarray:
    """Origins (pixels) of the patches along an axis of ``n`` pixels.

    Inside the scene the patches sit at the multiples of ``stride`` either way; ``edges``
    says what happens at its edges, where a pixel seen only near a patch's border would
    see little context:

    * ``"ring"``: every multiple of ``stride`` whose patch overlaps ``[0, n)``; the first
      and last patches reach beyond the scene (into the reflected halo), so pixels near its
      edges are predicted by as many patches as those inside it. 1.96x the patches of
      ``"flush"`` on a 1024 px scene, 1.07x on a full Sentinel-2 tile.
    * ``"flush"``: the multiples of ``stride`` whose patch fits in the scene, and a last
      patch ending at its far edge (``n - patch``) where they leave pixels uncovered. No
      patch reaches past the scene when ``n >= patch``; the pixels within the overlap of an
      edge are predicted by one patch, from its border.

    Either grid is a function of the scene alone, so every chunking runs the same patches.
    """
    if edges == "flush":
        o = np.arange(0, max(n - patch, 0) + 1, stride, dtype=np.int64)
        return o if o[-1] + patch >= n else np.append(o, np.int64(n - patch))
    if edges != "ring":
        raise ValueError(f"edges must be one of {EDGES}, got {edges!r}")
    first = -((patch - 1) // stride) * stride  # the lowest multiple of stride above -patch
    return np.arange(first, n, stride, dtype=np.int64)


#: Fixed-point scale of the window-weighted sums (:func:`predict_patches`): integers add
#: exactly in any order, so a pixel's sum is the same whichever blocks its patches ran in.
#: A pixel has at most 9 patches (overlap <= patch / 2: 2 per axis, 3 where a flush last
#: patch overlaps two others), each adding at most 1: < 2^60.
FIXED_POINT = float(2 ** 56)


def predict_patches(
    x: np.ndarray,
    run: Callable,
    plan: TilingPlan,
    origin: tuple[int, int],
    rows: Sequence[int],
    cols: Sequence[int],
    extent: tuple[int, int, int, int],
    n_classes: int,
    device: str = "cpu",
    valid: np.ndarray | None = None,
    far: np.ndarray | None = None,
    extra: np.ndarray | None = None,
) -> np.ndarray:
    """Predict some of the scene's patches and sum their window-weighted probabilities,
    in fixed point, over an extent (see :func:`blend_sums`).

    Each patch is predicted once per scene: a block runs the patches whose origin lies in
    it, and the parts of them that reach into the next blocks are added there afterwards.
    The sums are 64-bit integers (:data:`FIXED_POINT`): they add exactly in any order, so
    the result does not depend on which block ran which patch, i.e. on the chunking.

    The block goes to ``device`` once; patches are cut, predicted and weighted there, and
    only the sums come back (on a GPU, per-patch copies would leave it idle).

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
    rows, cols : sequence of int
        Global origins of the patch rows and columns to run; every patch ``rows x cols``
        is run, except those without a valid pixel.
    extent : tuple of int
        Global ``(row0, row1, col0, col1)`` of the sums; every patch overlaps it, and is
        cut to it.
    n_classes : int
        Classes the network predicts (C).
    device : str
        Torch device the block is predicted on (``run``'s device).
    valid, far : numpy.ndarray, optional
        (H, W) bool: the pixels with data, and those too far from data for
        :func:`fill_nodata`. A patch without valid pixels is not run (its predictions
        would all fall on no data). In each patch the far pixels take the mean of the
        patch's valid pixels, band by band: like the valid pixels around them, not a
        constant the network never saw in such amounts (a 300 px hole filled with zeros
        turned 15 % of a clear scene's pixels to cloud with the default model).
    extra : numpy.ndarray, optional
        (K, H, W) float32 per-pixel channels appended to each patch after the N bands
        (``run`` then takes (B, N + K, P, P)): the per-pixel member's probability, computed
        once per pixel rather than copied into the block.

    Returns
    -------
    numpy.ndarray
        (C + 1, row1 - row0, col1 - col0) int64: the probabilities times the blending
        window, summed over the patches, and the window's sum in the last channel, in
        units of ``1 / FIXED_POINT``.
    """
    import torch

    p = plan.patch
    h, w = x.shape[-2:]
    e_r0, e_r1, e_c0, e_c1 = extent
    jobs = []
    for gr in rows:
        for gc in cols:
            lr, lc = gr - origin[0], gc - origin[1]
            if lr < 0 or lc < 0 or lr + p > h or lc + p > w:
                raise AssertionError("patch outside the block: halo too small")
            if not (gr < e_r1 and gr + p > e_r0 and gc < e_c1 and gc + p > e_c0):
                raise AssertionError("patch outside the extent")
            if valid is not None and not valid[lr:lr + p, lc:lc + p].any():
                continue
            jobs.append((lr, lc, gr - e_r0, gc - e_c0))
    with torch.inference_mode():
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
        if extra is not None:
            et = torch.from_numpy(np.ascontiguousarray(extra, dtype=np.float32)).to(device)
        fill_far = far is not None and valid is not None and bool(far.any())
        if fill_far:
            far_t = torch.from_numpy(np.ascontiguousarray(far)).to(device)
            valid_t = torch.from_numpy(np.ascontiguousarray(valid, dtype=np.float32)).to(device)
        window = torch.from_numpy(blend_window(p)).to(device)
        sums = torch.zeros((n_classes + 1, e_r1 - e_r0, e_c1 - e_c0), dtype=torch.int64, device=device)
        for start in range(0, len(jobs), plan.batch_size):
            batch_jobs = jobs[start:start + plan.batch_size]
            # Every forward pass gets exactly batch_size patches (the last padded with
            # zeros): convolution kernels pick their algorithm by batch size, so a patch's
            # prediction, and with it the result, would otherwise depend on the chunking.
            n = xt.shape[0]
            batch = torch.zeros((plan.batch_size, n + (0 if extra is None else et.shape[0]), p, p),
                                dtype=torch.float32, device=device)
            for i, (lr, lc, _, _) in enumerate(batch_jobs):
                batch[i, :n] = xt[:, lr:lr + p, lc:lc + p]
                if extra is not None:
                    batch[i, n:] = et[:, lr:lr + p, lc:lc + p]
            if fill_far:
                batch = _fill_far(batch, far_t, valid_t, [(lr, lc) for lr, lc, _, _ in batch_jobs], p)
            probs = run(batch)
            for (_, _, pr0, pc0), pr in zip(batch_jobs, probs):
                # The patch cut to the extent, in extent (a) and in patch (b) coordinates.
                a_r0, a_r1 = max(pr0, 0), min(pr0 + p, e_r1 - e_r0)
                a_c0, a_c1 = max(pc0, 0), min(pc0 + p, e_c1 - e_c0)
                b_r, b_c = slice(a_r0 - pr0, a_r1 - pr0), slice(a_c0 - pc0, a_c1 - pc0)
                win = window[b_r, b_c]
                weighted = torch.cat([pr[:, b_r, b_c] * win, win[None]])  # float32, as always
                sums[:, a_r0:a_r1, a_c0:a_c1] += torch.round(weighted.double() * FIXED_POINT).long()
        return sums.cpu().numpy()


def blend_sums(sums: np.ndarray) -> np.ndarray:
    """Class probabilities from fixed-point sums: the window-weighted mean of the patches.

    Parameters
    ----------
    sums : numpy.ndarray
        (C + 1, H, W) int64, as :func:`predict_patches` makes them (added up over the
        blocks that ran the patches covering each pixel). A negative window sum marks no
        data.

    Returns
    -------
    numpy.ndarray
        (C, H, W) float32 probabilities; NaN where the window sum is not positive.
    """
    weight = sums[-1:].astype(np.float64)
    weight[weight <= 0] = np.nan
    return (sums[:-1] / weight).astype(np.float32)


def predict_pixels(x: np.ndarray, run: Callable, device: str = "cpu") -> np.ndarray:
    """Class probabilities of a pointwise network (1-pixel receptive field) in one pass.

    Parameters
    ----------
    x : numpy.ndarray
        (N, H, W) float32 model input, no NaN.
    run : callable
        As in :func:`predict_patches`.

    Returns
    -------
    numpy.ndarray
        (C, H, W) float32 probabilities.
    """
    import torch

    with torch.inference_mode():
        xt = torch.from_numpy(np.ascontiguousarray(x[None], dtype=np.float32)).to(device)
        return run(xt)[0].float().cpu().numpy()


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
