"""The per-block work of the engine's graph (:mod:`sensei_xr.inference.engine`): give each
block its halo, run its patches (or pixels), then blend each block with what its
neighbours' patches reached into it. NumPy and torch per block; the Dask here is the
graph layers of the first and last steps.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import bands as _bands
from ..bands import BandDescriptors, BandError
from ..errors import InferenceError
from .refine import refined
from .guards import guarded
from .member import member_probability, mixed
from .runtime import get_member_runner, get_runner, resolve_device, torch_threads
from .tiling import blend_sums, fill_nodata, patch_origins, predict_patches, predict_pixels

__all__ = ["BlockPredictor", "halo_graph", "blend_graph", "NO_DATA_SUM"]

#: Window sum given to no-data pixels: negative whatever the at most 4 patches of the
#: neighbouring blocks add (each under 2^56, :data:`~sensei_xr.inference.tiling.FIXED_POINT`).
NO_DATA_SUM = -(2 ** 62)

#: Layer-name prefix of the halo strips a block's neighbours cut from its source chunk.
HALO_CUT = "sensei-halo-cut-"
#: Layers whose tasks make the small strips a block hands its neighbours (halo strips cut
#: from its chunk, the probability sums its patches spill below and to the right):
#: computing a few blocks at a time keeps them for later blocks
#: (:mod:`sensei_xr.inference.stepwise`).
CARRIED_LAYERS = (HALO_CUT, "sensei-spill-below-", "sensei-spill-right-")


class BlockPredictor:
    """The per-block function; small and picklable (no model inside).

    For a network with patches it returns the block's fixed-point sums (of the patches
    whose origin lies in the block, over the block and as far as they reach beyond it;
    see :func:`~sensei_xr.inference.tiling.predict_patches`), for a pointwise one the
    block's probabilities. ``device`` may be ``"auto"`` and
    ``batch_size`` None: both are decided where the block runs, so a graph built on a
    machine without a GPU uses the workers' GPUs.
    """

    def __init__(self, ref, desc, plan, fill, device, batch_size, chunks, halo, n_classes, backend="auto",
                 refine_classes=None, guards=(), member=None):
        self.ref = ref
        self.backend = backend
        # Cloud classes whose probability each patch's bands refine (None: as predicted).
        self.refine_classes = None if refine_classes is None else tuple(refine_classes)
        # The model's pixel tests (guards.Guard) capping the refined cloud probability of
        # snow, ice and warm ground (empty: none).
        self.guards = tuple(guards)
        # The model's per-pixel member mixed in before the tests: (band indices, weight, place
        # in the member's chain of fallbacks) or None.
        self.member = member
        self.n_classes = n_classes
        self.names = desc.names
        self.kinds = desc.kinds
        self.wavelengths = desc.wavelengths_nm
        self.plan = plan
        self.fill = fill
        self.device = device
        self.batch_size = batch_size
        self.halo = tuple(halo)
        self.row_starts = np.concatenate([[0], np.cumsum(chunks[2])]).astype(int).tolist()
        self.col_starts = np.concatenate([[0], np.cumsum(chunks[3])]).astype(int).tolist()
        self.ny, self.nx = self.row_starts[-1], self.col_starts[-1]
        # Blocks computed at once, at most: when fewer than the scheduler's threads, each
        # gets more torch threads (a scene too small to give every core a block of its own,
        # engine._split_for_cores, still uses every core).
        self.tasks = len(chunks[0]) * (len(self.row_starts) - 1) * (len(self.col_starts) - 1)
        if not plan.pointwise:
            self.row_origins = patch_origins(self.ny, plan.patch, plan.stride, plan.edges)
            self.col_origins = patch_origins(self.nx, plan.patch, plan.stride, plan.edges)
            self.extent_rows = self._extents(self.row_starts, self.row_origins, self.ny)
            self.extent_cols = self._extents(self.col_starts, self.col_origins, self.nx)

    def _extents(self, starts, origins, n: int) -> tuple[int, ...]:
        """Per block along an axis: its pixels plus how far its own patches reach beyond
        (never beyond the scene)."""
        out = []
        for a, b in zip(starts[:-1], starts[1:]):
            own = self._owned(origins, a, b)
            reach = min(n, own[-1] + self.plan.patch) if own else b
            out.append(max(b, reach) - a)
        return tuple(out)

    @staticmethod
    def _owned(origins, a: int, b: int) -> list[int]:
        """Origins of the patches a block ``[a, b)`` runs: those whose origin lies in it,
        and for the first block those starting before the scene."""
        return [int(o) for o in origins if a <= o < b or (a == 0 and o < 0)]

    def __call__(self, block: np.ndarray, block_info=None) -> np.ndarray:
        loc = block_info[0]["chunk-location"] if block_info else (0, 0, 0, 0)
        iy, ix = loc[2], loc[3]
        r0, r1 = self.row_starts[iy], self.row_starts[iy + 1]
        c0, c1 = self.col_starts[ix], self.col_starts[ix + 1]
        where = f"in block (time {loc[0]}, rows {r0}:{r1}, cols {c0}:{c1})"
        try:
            return self._predict(block, (iy, ix), (r0, r1, c0, c1), where)
        except BandError as e:
            raise BandError(str(e)) from None
        except Exception as e:  # name the failing block
            raise InferenceError(f"inference failed {where}: {type(e).__name__}: {e}") from e

    def _predict(self, block, loc, bounds, where):
        r0, r1, c0, c1 = bounds
        hy, hx = self.halo
        h, w, C = r1 - r0, c1 - c0, self.n_classes
        core = (slice(hy, hy + h), slice(hx, hx + w))
        if self.plan.pointwise:
            shape, dtype = (C, h, w), np.float32
            reach = core
        else:
            shape, dtype = (C + 1, self.extent_rows[loc[0]], self.extent_cols[loc[1]]), np.int64
            reach = (slice(hy, hy + shape[1]), slice(hx, hx + shape[2]))
        desc = BandDescriptors(self.names, self.wavelengths, self.kinds)
        device = resolve_device(self.device)
        # One patch per pass is fastest on a CPU (it stays in cache: 256 px patches of the
        # DeepLab head take about 2.5x longer each in batches of 8, measured on 2 cores).
        batch = self.batch_size or (32 if device.startswith("cuda") else 1)
        plan = dataclasses.replace(self.plan, batch_size=batch)
        out = []
        for x in block:  # time steps (one per block)
            invalid = ~np.isfinite(x).all(axis=0)
            if self.fill is not None:
                invalid |= (x == self.fill).any(axis=0)
            if invalid[reach].all():  # nothing here or where this block's patches reach
                result = np.zeros(shape, dtype)
            else:
                result = self._run(x, invalid, desc, device, plan, (r0, c0), core, shape, where)
            # No data in the block's own pixels: NaN, or for sums a window sum that stays
            # negative whatever the neighbours add (blend_sums gives NaN there).
            if self.plan.pointwise:
                result[:, invalid[core]] = np.nan
            else:
                result[-1, :h, :w][invalid[core]] = NO_DATA_SUM
            out.append(result)
        return out[0][None] if len(out) == 1 else np.stack(out)  # one time step per block: no copy

    def _run(self, x, invalid, desc, device, plan, start, core, shape, where):
        if invalid.any():
            x = np.where(invalid[None], np.float32(np.nan), x)
        if not invalid[core].all():
            _bands.check_band_values(x[:, core[0], core[1]], desc, where=where)
        x = _bands.to_model_input(x, desc, copy=False)
        # Near no-data from its neighbours here, far no-data per patch in predict_patches.
        x, far = fill_nodata(x, ~invalid, return_far=True)
        (r0, c0), (hy, hx) = start, self.halo
        rows = cols = ()
        extra = None
        if not self.plan.pointwise:
            rows = self._owned(self.row_origins, r0, r0 + core[0].stop - core[0].start)
            cols = self._owned(self.col_origins, c0, c0 + core[1].stop - core[1].start)
        # Threads for this scheduler while the block runs; the thread's own after.
        with torch_threads(tasks=self.tasks) as threads:
            run = get_runner(self.ref, desc.normalised(), desc.key, device, self.backend, threads)
            if self.refine_classes is not None:
                run = refined(run, self.refine_classes)
                if self.member is not None and rows and cols:
                    # Once per pixel of the block's sums (the patches' predictions are cut
                    # to them), not once per patch over it: the grid covers pixels 2-3x.
                    window = (slice(hy, hy + shape[1]), slice(hx, hx + shape[2]))
                    bands, weight, depth = self.member
                    extra = member_probability(x, get_member_runner(self.ref, device, depth), bands, device, window)
                    run = mixed(run, self.refine_classes, weight)
                if self.guards:
                    run = guarded(run, self.refine_classes, self.guards)
            if self.plan.pointwise:
                return predict_pixels(x[:, core[0], core[1]], run, device).astype(np.float32, copy=False)
            return predict_patches(
                x, run, plan, (r0 - hy, c0 - hx), rows, cols,
                (r0, r0 + shape[1], c0, c0 + shape[2]), self.n_classes, device,
                valid=~invalid, far=far, extra=extra,
            )


def halo_graph(data, hy: int, hx: int):
    """The blocks of a (time, band, y, x) Dask array, each with ``hy`` rows and ``hx``
    columns of its neighbours around it, mirrored at the scene's edges.

    The same blocks as ``dask.array.overlap.overlap(data, depth, boundary="reflect")``
    (numpy's ``"symmetric"`` padding of the whole scene), but what a block gives its
    neighbours is cut out and copied in small tasks of its own: a view would keep the
    whole chunk alive until the next row of blocks is built, so the scene's input would
    be held a row of chunks at a time; with copies a chunk is freed once its own block
    and its strips are made, and memory grows with the chunk size, not the scene's width.

    Parameters
    ----------
    data : dask.array.Array
        (T, B, Y, X) with one chunk along B and every spatial chunk at least the halo.
    hy, hx : int
        Halo rows and columns (>= 0).

    Returns
    -------
    dask.array.Array
        Chunks ``(T chunks, B, rows + 2 hy, cols + 2 hx)``.
    """
    import dask.array as dsa
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    rows, cols = data.chunks[2], data.chunks[3]
    if len(data.chunks[1]) != 1 or min(rows) < hy or min(cols) < hx:
        raise ValueError(f"halo_graph needs one band chunk and spatial chunks of at least the halo ({hy}, {hx}); "
                         f"got chunks {data.chunks[1:]}")
    token = tokenize(data, hy, hx)
    cut, name = HALO_CUT + token, "sensei-halo-" + token
    near = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0) and (hy or not a) and (hx or not b)]
    dsk = {}
    for t in range(len(data.chunks[0])):
        for i in range(len(rows)):
            for j in range(len(cols)):
                src = (data.name, t, 0, i, j)
                for a, b in near:  # the strip the neighbour at (a, b) takes from this chunk
                    if 0 <= i + a < len(rows) and 0 <= j + b < len(cols):
                        dsk[(cut, t, i, j, a, b)] = (_cut_strip, src, a, b, hy, hx)
                pieces = {(a, b): (cut, t, i + a, j + b, -a, -b) for a, b in near
                          if 0 <= i + a < len(rows) and 0 <= j + b < len(cols)}
                dsk[(name, t, 0, i, j)] = (_with_halo, src, list(pieces), list(pieces.values()), hy, hx)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[data])
    chunks = (data.chunks[0], data.chunks[1], tuple(r + 2 * hy for r in rows), tuple(c + 2 * hx for c in cols))
    return dsa.Array(graph, name, chunks=chunks, meta=data._meta)


def _cut_strip(chunk: np.ndarray, a: int, b: int, hy: int, hx: int) -> np.ndarray:
    """What the neighbour at offset (a, b) takes from a chunk: its last (a = 1), first
    (a = -1) or all (a = 0) rows, and the same for columns; a copy."""
    h, w = chunk.shape[-2:]
    rs = slice(h - hy, h) if a == 1 else slice(0, hy) if a == -1 else slice(0, h)
    cs = slice(w - hx, w) if b == 1 else slice(0, hx) if b == -1 else slice(0, w)
    return chunk[..., rs, cs].copy()


def _band(n: int, halo: int, offset: int, side: int) -> slice:
    """Where in the source one band of a block with halo comes from (side -1: before the
    block, 0: the block, 1: after it). A neighbour's strip is read in order; with no
    neighbour (offset 0) the block's own edge is mirrored (numpy's "symmetric"). Slices,
    not index arrays: basic indexing assembled a 1024 px 6-band block 5x faster (73 -> 15 ms)."""
    if side == 0:
        return slice(0, n)
    if offset:
        return slice(0, halo)
    if side == -1:
        return slice(halo - 1, None, -1)
    return slice(n - 1, n - halo - 1 if n > halo else None, -1)


def _with_halo(own: np.ndarray, offsets, pieces, hy: int, hx: int) -> np.ndarray:
    got = dict(zip(map(tuple, offsets), pieces))
    h, w = own.shape[-2:]
    out = np.empty(own.shape[:-2] + (h + 2 * hy, w + 2 * hx), own.dtype)
    dst = {-1: (0, hy), 0: (hy, hy + h), 1: (hy + h, h + 2 * hy)}
    dst_c = {-1: (0, hx), 0: (hx, hx + w), 1: (hx + w, w + 2 * hx)}
    for sr in (-1, 0, 1):
        if sr and not hy:
            continue
        for sc in (-1, 0, 1):
            if sc and not hx:
                continue
            # The chunk the band comes from: the neighbour on that side, or the block itself.
            a = sr if (sr, 0) in got or (sr and (sr, sc) in got) else 0
            b = sc if (0, sc) in got or (sc and (sr, sc) in got) else 0
            source = own if (a, b) == (0, 0) else got[(a, b)]
            r = _band(h, hy, a, sr)
            c = _band(w, hx, b, sc)
            (r0, r1), (c0, c1) = dst[sr], dst_c[sc]
            out[..., r0:r1, c0:c1] = source[..., r, c]
    return out


def blend_graph(sums, chunks, n_classes: int):
    """Probabilities from the blocks' fixed-point sums: each block's own, plus what the
    blocks above, to the left and above-left reached into it (a patch reaches at most one
    block further: blocks are at least ``patch - 1`` pixels), blended.

    A block's spill is cut out (copied) in small tasks of its own: the strip below it
    (used by the blocks below and below-right, a row of blocks later) and the strip to its
    right. So a block's full sums are freed once it is blended, and what waits for the next
    row of blocks is a strip as tall as a patch's reach, not the row of blocks' sums: peak
    memory grows with the chunk size, not with the scene's width.
    """
    import dask.array as dsa
    from dask.highlevelgraph import HighLevelGraph

    token = sums.name.split("-")[-1]
    name, below, right = "sensei-blend-" + token, "sensei-spill-below-" + token, "sensei-spill-right-" + token
    rows, cols = chunks[2], chunks[3]
    dsk = {}
    for t in range(len(chunks[0])):
        for i in range(len(rows)):
            for j in range(len(cols)):
                own = (sums.name, t, 0, i, j)
                if i + 1 < len(rows):
                    dsk[(below, t, i, j)] = (_spill_below, own, rows[i])
                if j + 1 < len(cols):
                    dsk[(right, t, i, j)] = (_spill_right, own, rows[i], cols[j])
                up = (below, t, i - 1, j) if i else None
                left = (right, t, i, j - 1) if j else None
                up_left = (below, t, i - 1, j - 1) if i and j else None
                dsk[(name, t, 0, i, j)] = (_add_spills, own, up, left, up_left, rows[i], cols[j],
                                           cols[j - 1] if j else 0)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[sums])
    return dsa.Array(graph, name, chunks=(chunks[0], (n_classes,), rows, cols), meta=np.array((), np.float32))


def _spill_below(own, h: int) -> np.ndarray:
    # A copy: a view would keep the block's full sums alive until the next row.
    return own[0, :, h:].copy()


def _spill_right(own, h: int, w: int) -> np.ndarray:
    return own[0, :, :h, w:].copy()


def _add_spills(own, up, left, up_left, h: int, w: int, left_w: int) -> np.ndarray:
    """A block's probabilities: its own sums, plus the spill strips of its upper, left and
    upper-left neighbours (the strips below them and to their right), blended (integer
    sums: exact in any order)."""
    sums = own[0, :, :h, :w]
    if up is not None or left is not None or up_left is not None:
        sums = sums.copy()  # the neighbours' spill is added to it; the input stays
    if up is not None:
        spill = up[:, :, :w]
        sums[:, :spill.shape[1]] += spill
    if left is not None:
        spill = left[:, :h]
        sums[:, :, :spill.shape[2]] += spill
    if up_left is not None:
        spill = up_left[:, :, left_w:]
        sums[:, :spill.shape[1], :spill.shape[2]] += spill
    return blend_sums(sums)[None]
