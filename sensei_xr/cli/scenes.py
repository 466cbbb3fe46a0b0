"""Scenes to masks for ``mask`` and ``demo``: STAC searches to named scenes, and the
library's resumable batch (:mod:`sensei_xr.inference.batch`) with a line per scene.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from .common import say, show_progress

# Coordinates kept on STAC scenes: stackstac adds per-item metadata (sets, dicts) as
# coordinates, which Zarr cannot encode and which a mask does not need.
_KEEP_COORDS = {"time", "band", "x", "y", "id", "spatial_ref"}


def option_names():
    """How the library's errors name the options that resolve an output conflict: here
    the flags (:class:`~sensei_xr.inference.batch.OptionNames`)."""
    from ..inference.batch import OptionNames

    return OptionNames(overwrite="--overwrite", out="--out")


def search_all(url: str, searches: Sequence[dict], *, announce: bool = False,
               timeout: float | None = None) -> list[dict]:
    """Run each search (:func:`sensei_xr.io.stac.search`); items found twice are kept once
    (the first search wins)."""
    from ..io.stac import DEFAULT_TIMEOUT_S, search

    items, seen = [], set()
    for s in searches:
        found = search(url, **s, timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout)
        if announce:
            what = ", ".join(f"{k}={v}" for k, v in s.items() if v is not None and k != "collections")
            say(f"search {s['collections']}{' ' + what if what else ''}: {len(found)} item(s) "
                f"{', '.join(str(i.get('id')) for i in found)}")
        for it in found:
            key = (it.get("collection"), it.get("id"))
            if key not in seen:
                seen.add(key)
                items.append(it)
    return items


def plain_coords(da):
    """Drop stackstac's per-item metadata coordinates (keep time/id, band, grid, CRS)."""
    return da.drop_vars([c for c in da.coords if c not in _KEEP_COORDS and "band" not in da[c].dims])


def item_names(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Output stems: item ids, prefixed by the collection where two items share an id."""
    from ..errors import CliError
    from ..outputs import safe_stem

    ids = [str(it.get("id")) for it in items]
    shared = {i for i in ids if ids.count(i) > 1}
    names = [safe_stem(f"{it.get('collection')}_{i}" if i in shared else i) for it, i in zip(items, ids)]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:  # e.g. ids "a/b" and "a_b": one output would overwrite the other
        raise CliError(f"several items map to the output name(s) {clash}; narrow the search")
    return names


def item_scenes(items: Sequence[Mapping[str, Any]], **stack_options) -> dict[str, Any]:
    """One lazy (band, y, x) scene per item, by output name; stacked now
    (:func:`sensei_xr.io.stac.stack_items` with ``stack_options``), so an item without
    usable bands fails before any pixel is computed."""
    from ..io.stac import stack_items

    return {name: plain_coords(stack_items([item], **stack_options)).isel(time=0)
            for item, name in zip(items, item_names(items))}


def summary_line(name: str, n_bands: int, shape: Sequence[int], fraction: float | None,
                 outputs: Sequence[Path], note: str = "") -> str:
    """``NAME: 10 bands, 603x627 px, cloud fraction 12.3% -> OUTPUTS (NOTE)``."""
    cloud = f"cloud fraction {fraction:.1%}" if fraction is not None else "no valid pixels"
    return (f"{name}: {n_bands} bands, {shape[0]}x{shape[1]} px, {cloud} -> "
            + ", ".join(str(p) for p in outputs) + (f" ({note})" if note else ""))


def mask_to_cogs(scenes: Mapping[str, Any], out_dir: Path, model, *, threshold: float, device: str,
                 overwrite: bool, progress: bool | None, quicklooks: bool,
                 bands: Sequence[str] | None = None, announce: str | None = None, **engine) -> None:
    """Plan every scene (refusing other jobs' outputs before any work or folder is made),
    say what an earlier run left, then finish each in turn with a summary line; stops at
    the first failure, whose outputs are removed (a rerun finishes the rest). ``engine``:
    more arguments of the engine (``overlap``, ``edges``), recorded in each output's job."""
    from ..inference.batch import finish_scenes, plan_scenes

    plans = plan_scenes(scenes, out_dir, model=model, threshold=threshold, device=device,
                        bands=list(bands) if bands else None, quicklooks=quicklooks,
                        overwrite=overwrite, option_names=option_names(), **engine)
    if announce:
        say(announce)
    done = sum(p.todo == "done" for p in plans)
    if done and done == len(plans):
        say(f"nothing to do: all {done} scene(s) were masked earlier by this same job "
            "(pass --overwrite to recompute them)")
    elif done:
        say(f"resuming: {done} of {len(plans)} scene(s) were masked earlier by this same job")
    notes = {"masked": "", "quicklook added": "quicklook added", "done earlier": "done earlier"}

    def report(r) -> None:
        say(summary_line(r.name, r.n_bands, r.shape, r.cloud_fraction, r.outputs, notes[r.status]))

    finish_scenes(plans, progress=show_progress(progress), on_result=report)
