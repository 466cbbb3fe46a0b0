"""``sensei-xr``: a thin command line over the library.

Commands
--------
``sensors [SENSOR]``
    The sensor catalogs (and one sensor's bands).
``models``
    The shipped models.
``mask FILE_OR_FOLDER ... --out DIR``
    Cloud-mask raster files or band folders (:func:`sensei_xr.open_scene`) to COGs.
``mask --stac URL --collection C [--bbox W S E N] [--datetime D] ... --out DIR``
    Search a STAC API (:mod:`sensei_xr.io.stac`), stack each item lazily as one scene,
    mask it and write one COG per scene, or with ``--zarr`` one Zarr store for the time
    stack (resumable).
``demo [--out DIR]``
    The main job on the embedded default data: builds a STAC catalog from the real
    sample scenes, serves it with a local rustac STAC API on 127.0.0.1, searches it,
    masks what it finds and writes COGs and quicklooks; the server is always stopped.
``evaluate --dataset D [--split S] [--bands ALL,RGB,...] [--peers ...] [--out DIR]``
    The paper's metrics of a model on a labelled dataset
    (:func:`sensei_xr.datasets.load_dataset`) for the band sets of Table III and
    peer methods on the same pixels (:func:`sensei_xr.evaluation.evaluate_model`);
    writes ``evaluation.json`` and ``evaluation.md``.
``train --config FILE [--data-dir DIR] [--out STEM]``
    Train a model (:func:`sensei_xr.training.train.train`), resuming from checkpoints.
``bench [--quick] [--out DIR]``
    Run the source checkout's ``benchmarks/`` scripts as subprocesses.

Outputs are never left looking complete when a scene fails: COGs are written under a
temporary name and renamed (:func:`sensei_xr.outputs.write_mask_cog`), a scene whose
writing fails has its COG and quicklook removed, and Zarr regions count as done only once
written; ``evaluate`` writes its report files under temporary names and renames them once
both are complete. ``mask`` outputs record the job that made them (model weights, bands,
threshold, grid): a rerun of the same job finishes what is missing (after a kill or a
failure) and skips the rest; outputs of another job, or of none, are refused unless
``--overwrite``. ``evaluate``, ``train`` and ``pretrain`` refuse existing outputs unless
``--overwrite`` (``demo`` and ``bench`` replace their own previous outputs). Errors print
one line, ``sensei-xr <command>: error: ...``, to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import CliError

__all__ = ["main", "build_parser", "DEMO_SEARCHES", "DEFAULT_DEMO_OUT", "DEFAULT_EVALUATION_OUT",
           "DEFAULT_BENCH_OUT"]

#: Default output folder of ``sensei-xr demo``.
DEFAULT_DEMO_OUT = "sensei-xr-demo"
#: Default output folders of ``sensei-xr evaluate`` and ``sensei-xr bench``.
DEFAULT_EVALUATION_OUT = "sensei-xr-evaluation"
DEFAULT_BENCH_OUT = "sensei-xr-bench"

#: The demo's searches: (collection, bbox, datetime). Each finds real sample scenes in the
#: demo catalog (sensei_xr.demo.build_demo_catalog): a bbox search over the five
#: eo-learn Sentinel-2 dates (Slovenia), a datetime search for the Sentinel-2 tile 18SVG,
#: and a year of Landsat 8 (the 30 m L1 scene and the 120 m TOA scene).
DEMO_SEARCHES: tuple[tuple[str, tuple[float, float, float, float] | None, str | None], ...] = (
    ("sensei-demo-landsat-8", None, "2015-01-01/2015-12-31"),
    ("sentinel-2-l1c", None, "2016-01-01/2016-01-31"),
    ("sentinel-2-l1c", (14.50, 45.80, 14.60, 45.90), None),
)

# Longest side of a quicklook, pixels: larger scenes are decimated for the PNG only, so a
# full Sentinel-2 tile does not need its RGB bands in memory at full resolution.
_QUICKLOOK_MAX_PX = 2048
# Coordinates kept on STAC scenes: stackstac adds per-item metadata (sets, dicts) as
# coordinates, which Zarr cannot encode and which a mask does not need.
_KEEP_COORDS = {"time", "band", "x", "y", "id", "spatial_ref"}


# ------------------------------------------------------------------------------ helpers


def _one_line(e: BaseException) -> str:
    """The exception's message on one line (KeyError's quotes removed)."""
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        text = e.args[0]
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def _safe_name(text: str) -> str:
    """A file-name stem from a scene id (item ids may hold '/', ':' or spaces)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    return name or "scene"


def _quiet_warnings() -> None:
    # Zarr v3 warns about fixed-length string coordinates and consolidated metadata on every
    # store; neither is actionable for a CLI user. (Called inside warnings.catch_warnings.)
    warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part.*")


def _show_progress(enabled: bool | None) -> bool:
    """--no-progress gives False; by default a bar is shown on a terminal only."""
    return sys.stderr.isatty() if enabled is None else bool(enabled)


def _progress(iterable: Iterable, total: int, desc: str, enabled: bool | None):
    """tqdm over scenes on stderr; ``enabled=None`` shows it on a terminal only."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="scene", file=sys.stderr,
                disable=not _show_progress(enabled), leave=False)


def _say(text: str) -> None:
    """Print a line to stdout without breaking a progress bar on stderr."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


def _load_model(model: str):
    """Load the model once, before any work: a bad name or path fails fast."""
    from .models import WeightsError, load_model

    try:
        return load_model(model)
    except WeightsError as e:
        if "no model named" in str(e):
            raise CliError(f"{_one_line(e)} (--model PATH.safetensors)") from e
        raise


def _model_label(model) -> str:
    card = getattr(model, "card", None) or {}
    return str(card.get("name") or getattr(model, "source", "model"))


def _cloud_fraction(values) -> float | None:
    """Cloudy share of the valid pixels of a mask (None when nothing is valid)."""
    import numpy as np

    v = np.asarray(values)
    if np.issubdtype(v.dtype, np.floating):  # Zarr read back with NaN for no data
        valid = np.isfinite(v)
    else:
        valid = v != 255
    n = int(valid.sum())
    return float((v[valid] == 1).sum()) / n if n else None


def _summary(name: str, n_bands: int, shape: tuple[int, int], frac: float | None,
             outputs: Sequence[Path]) -> str:
    cloud = f"cloud fraction {frac:.1%}" if frac is not None else "no valid pixels"
    return (f"{name}: {n_bands} bands, {shape[0]}x{shape[1]} px, {cloud} -> "
            + ", ".join(str(p) for p in outputs))


def _decimated(da, step: int):
    if step <= 1:
        return da
    return da.isel(y=slice(None, None, step), x=slice(None, None, step))


# --------------------------------------------------------------------- scenes to COGs


@dataclass
class _Scene:
    """One scene to mask: a lazy (band, y, x) DataArray and where its outputs go.

    ``mask`` (lazy), ``job`` (:func:`sensei_xr.inference.batch.mask_job`) and ``todo``
    (``"mask"``, ``"quicklook"`` or ``"done"``) are set by :func:`_plan_scenes`.
    """

    name: str
    data: Any
    cog: Path
    png: Path | None
    mask: Any = None
    job: dict | None = None
    todo: str = "mask"

    @property
    def targets(self) -> list[Path]:
        return [p for p in (self.cog, self.png) if p is not None]


def _check_targets(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse existing outputs (without --overwrite) before any work is done."""
    for p in paths:
        if p.exists() or p.is_symlink():
            if not p.is_file():
                raise CliError(f"{p} exists and is not a file; move it away or choose another --out")
            if not overwrite:
                raise CliError(f"{p} exists; pass --overwrite to replace it")


def _png_job(path: Path) -> dict | None:
    """The job recorded in a quicklook PNG's text chunk (None if none)."""
    from PIL import Image

    from .inference.batch import JOB_TAG

    try:
        with Image.open(path) as img:
            text = img.info.get(JOB_TAG)
        job = json.loads(text) if text else None
    except Exception:  # noqa: BLE001 - an unreadable or foreign PNG records no job
        return None
    return job if isinstance(job, dict) else None


def _plan_scenes(scenes: Sequence[_Scene], model, *, threshold: float, device: str, overwrite: bool,
                 bands: Sequence[str] | None = None) -> None:
    """Decide what each scene still needs, before any work; refuse another job's outputs.

    A scene whose COG (and quicklook) exist from the same job (model weights, bands,
    threshold, grid) is done; one whose COG exists but not its quicklook needs only the
    quicklook; outputs of another job, or of no recorded job, are refused unless
    ``overwrite``. So a rerun after a kill finishes what is missing.
    """
    from .inference.batch import cog_job, job_differences, mask_job

    for s in scenes:
        for p in s.targets:
            if (p.exists() or p.is_symlink()) and not p.is_file():
                raise CliError(f"{p} exists and is not a file; move it away or choose another --out")
        # Lazy: builds the graph and its attributes (bands used, model weights), reads no pixel.
        s.mask = s.data.sensei.cloudmask(model=model, threshold=threshold, device=device,
                                         bands=list(bands) if bands else None)
        s.job = mask_job(s.mask)
        s.todo = "mask"
        if overwrite:
            continue
        for p, stored in ((s.cog, cog_job), (s.png, _png_job)):
            if p is None or not p.is_file():
                continue
            old = stored(p)
            if old is None:
                raise CliError(f"{p} exists and records no sensei-xr job (another program's file, or an "
                               "older version's); pass --overwrite to replace it, or choose another --out")
            diff = job_differences(old, s.job)
            if diff:
                raise CliError(f"{p} exists and was made by another job: {'; '.join(diff)}; pass "
                               "--overwrite to replace it, or choose another --out")
        if s.cog.is_file():
            s.todo = "quicklook" if s.png is not None and not s.png.is_file() else "done"


def _remove_outputs(scene: _Scene, which: Sequence[Path] | None = None) -> None:
    """Remove a failed scene's outputs and temporary files (nothing may look complete)."""
    for p in (scene.targets if which is None else which):
        for q in (p, p.with_name(f".{p.name}.partial"), p.with_name(f".{p.name}.partial.png")):
            try:
                q.unlink()
            except FileNotFoundError:
                pass


def _n_bands(mask, da) -> int:
    used = mask.attrs.get("bands_used")
    return len(used.split(",")) if used else da.sizes["band"]


def _write_quicklook(scene: _Scene, mask) -> None:
    from .inference.batch import JOB_TAG
    from .quicklook import write_quicklook

    step = max(1, math.ceil(max(mask.shape) / _QUICKLOOK_MAX_PX))
    write_quicklook(_decimated(scene.data, step), _decimated(mask, step), scene.png, title=scene.name,
                    metadata={JOB_TAG: json.dumps(scene.job, sort_keys=True)})


def _mask_scene(scene: _Scene, *, overwrite: bool) -> str:
    """Do what a planned scene still needs (mask and COG, quicklook, or nothing); returns
    its summary line."""
    import rioxarray

    from .inference.batch import JOB_TAG
    from .outputs import write_mask_cog

    da = scene.data
    if scene.todo != "mask":
        # The COG is complete and of this job: read it back instead of recomputing it.
        with rioxarray.open_rasterio(scene.cog, masked=False) as cog:
            mask = cog.isel(band=0, drop=True).load()
        mask = mask.assign_coords(y=da["y"].values, x=da["x"].values)
        mask.attrs = dict(scene.mask.attrs)
        if scene.todo == "quicklook":
            try:
                _write_quicklook(scene, mask)
            except BaseException:
                _remove_outputs(scene, [scene.png])
                raise
        line = _summary(scene.name, _n_bands(mask, da), mask.shape, _cloud_fraction(mask.values),
                        scene.targets)
        return line + (" (quicklook added)" if scene.todo == "quicklook" else " (done earlier)")
    # Compute once (the COG, the quicklook and the summary share it): a 2-D uint8 array.
    mask = scene.mask.compute().assign_attrs({JOB_TAG: json.dumps(scene.job, sort_keys=True)})
    try:
        write_mask_cog(mask, scene.cog, overwrite=overwrite or scene.cog.is_file())
        if scene.png is not None:
            _write_quicklook(scene, mask)
    except FileExistsError:
        raise  # appeared after the check: not ours to remove
    except BaseException:
        # A COG without its quicklook (or a half-written PNG) must not look finished.
        _remove_outputs(scene)
        raise
    return _summary(scene.name, _n_bands(mask, da), mask.shape, _cloud_fraction(mask.values), scene.targets)


def _run_scenes(scenes: Sequence[_Scene], out_dir: Path, model, *, threshold: float, device: str,
                overwrite: bool, progress: bool | None, bands: Sequence[str] | None = None,
                announce: str | None = None) -> None:
    """Plan every scene (refusing conflicts before any work or folder is made), then do
    each in turn; stops at the first failure (its outputs removed; a rerun finishes the
    rest)."""
    _plan_scenes(scenes, model, threshold=threshold, device=device, overwrite=overwrite, bands=bands)
    out_dir.mkdir(parents=True, exist_ok=True)
    if announce:
        _say(announce)
    done = [s for s in scenes if s.todo == "done"]
    if done and len(done) == len(scenes):
        _say(f"nothing to do: all {len(scenes)} scene(s) were masked earlier by this same job "
             "(pass --overwrite to recompute them)")
    elif done:
        _say(f"resuming: {len(done)} of {len(scenes)} scene(s) were masked earlier by this same job")
    for scene in _progress(scenes, len(scenes), "masking", progress):
        _say(_mask_scene(scene, overwrite=overwrite))


# --------------------------------------------------------------------- STAC to outputs


def _clean_stac_coords(da):
    """Drop stackstac's per-item metadata coordinates (keep time/id, band, grid, CRS)."""
    drop = [c for c in da.coords if c not in _KEEP_COORDS and "band" not in da[c].dims]
    return da.drop_vars(drop)


def _scene_names(items: Sequence[dict]) -> list[str]:
    """Output stems: item ids, prefixed by the collection where two items share an id."""
    ids = [str(it.get("id")) for it in items]
    dup = {i for i in ids if ids.count(i) > 1}
    names = [_safe_name(f"{it.get('collection')}_{i}" if i in dup else i) for it, i in zip(items, ids)]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:  # e.g. ids "a/b" and "a_b": one output would overwrite the other
        raise CliError(f"several items map to the output name(s) {clash}; narrow the search")
    return names


def _stac_scenes(items: Sequence[dict], out_dir: Path, *, url: str, bands, sensor,
                 bbox, clip: bool, quicklook: bool) -> list[_Scene]:
    """One lazy scene per item (stacked now, so an item without usable bands fails before
    any pixel is computed)."""
    from .io.stac import stack_items

    scenes = []
    for item, name in zip(items, _scene_names(items)):
        da = stack_items([item], bands=bands, sensor=sensor, api_url=url,
                         bounds_latlon=bbox if (clip and bbox is not None) else None)
        da = _clean_stac_coords(da).isel(time=0)
        scenes.append(_Scene(name, da, out_dir / f"{name}_cloudmask.tif",
                             out_dir / f"{name}_quicklook.png" if quicklook else None))
    return scenes


def _search_all(url: str, searches: Sequence[dict], announce: bool,
                timeout: float | None = None) -> list[dict]:
    """Run each search; items found twice are kept once (first search wins)."""
    from .io.stac import DEFAULT_TIMEOUT_S, search

    items, seen = [], set()
    for s in searches:
        found = search(url, **s, timeout=DEFAULT_TIMEOUT_S if timeout is None else timeout)
        if announce:
            what = ", ".join(f"{k}={v}" for k, v in s.items() if v is not None and k != "collections")
            _say(f"search {s['collections']}{' ' + what if what else ''}: {len(found)} item(s) "
                 f"{', '.join(str(i.get('id')) for i in found)}")
        for it in found:
            key = (it.get("collection"), it.get("id"))
            if key not in seen:
                seen.add(key)
                items.append(it)
    return items


def _zarr_state(store: Path, stack, job: dict | None = None) -> str:
    """``"new"``, ``"resume"`` or ``"complete"``; a foreign store, or one of another job,
    is a CliError."""
    from .inference.batch import zarr_store_state

    try:
        return zarr_store_state(store, stack, job=job)
    except ValueError as e:
        raise CliError(str(e).replace("remove it or choose another store",
                                      "pass --overwrite to replace it or choose another --out")) from e


def _stac_to_zarr(items: Sequence[dict], out_dir: Path, args, model, url: str) -> None:
    """Stack all items as one time stack and mask it into one resumable Zarr store."""
    from .inference import cloudmask
    from .inference.batch import mask_job, mask_stack_to_zarr
    from .io.stac import stack_items

    stack = stack_items(items, bands=args.bands, sensor=args.sensor, api_url=url,
                        bounds_latlon=args.bbox if (not args.full_scenes and args.bbox) else None)
    stack = _clean_stac_coords(stack)
    stem = _safe_name("+".join(args.collection))
    store = out_dir / f"{stem}_cloudmask.zarr"
    # The job (model weights, bands, threshold, grid) from the lazy mask: no pixel is read.
    job = mask_job(cloudmask(stack, model, threshold=args.threshold, device=args.device))
    if args.overwrite and (store.exists() or store.is_symlink()):
        shutil.rmtree(store) if store.is_dir() and not store.is_symlink() else store.unlink()
    state = _zarr_state(store, stack, job)
    if state == "complete":
        _say(f"{store} is complete, from this same job: nothing to do (pass --overwrite to recompute it)")
    elif state == "resume":
        _say(f"resuming the unfinished store {store}")
    out_dir.mkdir(parents=True, exist_ok=True)
    _say(f"masking {stack.sizes['time']} scene(s) from {url} into {store} with model "
         f"{_model_label(model)!r}")
    ds = mask_stack_to_zarr(stack, store, model=model, threshold=args.threshold, device=args.device,
                            progress=_show_progress(args.progress))
    ids = [str(v) for v in ds["id"].values] if "id" in ds.coords else [str(t) for t in ds["time"].values]
    n_bands = stack.sizes["band"]
    for t, name in enumerate(ids):
        values = ds["cloudmask"].isel(time=t).values
        _say(_summary(name, n_bands, values.shape, _cloud_fraction(values), [store]))


def _parse_json_option(text: str | None, option: str):
    if text is None:
        return None
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return stripped  # e.g. CQL2 text for --filter
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as e:
        raise CliError(f"{option} is not valid JSON ({e.msg} at character {e.pos})") from None


def _split_bands(values: Sequence[str] | None) -> list[str] | None:
    if not values:
        return None
    out = [b.strip() for v in values for b in v.split(",") if b.strip()]
    return out or None


# ---------------------------------------------------------------------------- commands


def _cmd_sensors(args) -> int:
    from . import catalogs

    ids = [catalogs.get_sensor(args.sensor).id] if args.sensor else catalogs.list_sensors()
    for sid in ids:
        s = catalogs.get_sensor(sid)
        print(f"{s.id:22s} {s.title} ({len(s.bands)} bands)")
        if args.sensor:
            print(f"    {'band':8s} {'min':>8s} {'centre':>8s} {'max':>8s} nm {'gsd':>6s} m "
                  f"{'kind':10s} aliases")
            for b in s.bands:
                extra = f" K1={b.k1:g} K2={b.k2:g}" if b.is_thermal else ""
                print(f"    {b.name:8s} {b.min_nm:8.1f} {b.center_nm:8.1f} {b.max_nm:8.1f} nm "
                      f"{(b.gsd_m or 0):6.0f} m {b.kind:10s} {', '.join(b.aliases)}{extra}")
    return 0


def _cmd_models(args) -> int:
    from .models import list_models

    for name, summary in list_models().items():
        print(f"{name:16s} {summary}")
    return 0


def _cmd_mask(args) -> int:
    if args.stac and args.inputs:
        hint = (f" ({' '.join(args.inputs)}: meant for --bands? it takes one comma-separated list, "
                "e.g. --bands B2,B3,B4)" if args.bands else "")
        raise CliError(f"give input files/folders or --stac URL, not both{hint}")
    if not args.stac and not args.inputs:
        raise CliError("nothing to mask: give input files/folders, or --stac URL --collection C")
    if args.stac and not args.collection:
        raise CliError("--stac needs --collection (repeat it for several collections)")
    if not args.stac:
        stac_only = [o for o, v in (("--collection", args.collection), ("--bbox", args.bbox),
                                    ("--datetime", args.datetime), ("--filter", args.filter),
                                    ("--query", args.query), ("--max-items", args.max_items),
                                    ("--timeout", args.timeout), ("--zarr", args.zarr)) if v]
        if stac_only:
            raise CliError(f"{', '.join(stac_only)} only apply with --stac URL")
    if args.bbox is not None:
        from .io.stac import StacSearchError, check_bbox

        try:
            args.bbox = check_bbox(args.bbox, name="--bbox")
        except StacSearchError as e:
            raise CliError(str(e)) from None
    args.bands = _split_bands(args.bands)
    # Options first, then the model, then the search: cheap checks fail before slow ones.
    args.filter = _parse_json_option(args.filter, "--filter")
    args.query = _parse_json_option(args.query, "--query")
    if args.query is not None and not isinstance(args.query, dict):
        raise CliError("--query must be a JSON object, e.g. '{\"eo:cloud_cover\": {\"lt\": 20}}'")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"--out {out_dir} exists and is not a folder; choose a folder")
    model = _load_model(args.model)
    if args.stac:
        return _mask_stac(args, model, out_dir)
    return _mask_files(args, model, out_dir)


def _mask_files(args, model, out_dir: Path) -> int:
    from .io import open_scene

    scenes, names = [], set()
    for src in (Path(p) for p in args.inputs):
        if not src.exists():
            hint = (" (--bands takes one comma-separated list, e.g. --bands B2,B3,B4: was this "
                    "meant as a band?)" if args.bands else "")
            raise CliError(f"input {src} does not exist{hint}")
        name = _safe_name(src.stem if src.is_file() else src.name)
        if name in names:
            raise CliError(f"two inputs give the same output name {name!r}; mask them into "
                           "different --out folders")
        names.add(name)
        da = open_scene(src, sensor=args.sensor, processing_baseline=args.processing_baseline)
        scenes.append(_Scene(name, da, out_dir / f"{name}_cloudmask.tif",
                             out_dir / f"{name}_quicklook.png" if args.quicklook else None))
    # Bands are chosen by the engine here: file scenes name them by catalog band.
    _run_scenes(scenes, out_dir, model, threshold=args.threshold, device=args.device,
                overwrite=args.overwrite, progress=args.progress, bands=args.bands)
    return 0


def _mask_stac(args, model, out_dir: Path) -> int:
    search = {"collections": args.collection if len(args.collection) > 1 else args.collection[0],
              "bbox": args.bbox, "datetime": args.datetime, "filter": args.filter, "query": args.query,
              "max_items": args.max_items}
    items = _search_all(args.stac, [search], announce=False, timeout=args.timeout)
    if args.zarr:
        _stac_to_zarr(items, out_dir, args, model, args.stac)
        return 0
    scenes = _stac_scenes(items, out_dir, url=args.stac, bands=args.bands, sensor=args.sensor,
                          bbox=args.bbox, clip=not args.full_scenes, quicklook=args.quicklook)
    _run_scenes(scenes, out_dir, model, threshold=args.threshold, device=args.device,
                overwrite=args.overwrite, progress=args.progress,
                announce=f"masking {len(scenes)} scene(s) from {args.stac} with model {_model_label(model)!r}")
    return 0


def _cmd_demo(args) -> int:
    from .inference.runtime import resolve_device
    from .sample_data import data_dir
    from .demo import RustacServer, build_demo_catalog

    model = _load_model(args.model)
    device = resolve_device(args.device)
    data = data_dir()
    out_dir = Path(args.out)
    cache = Path(args.cache) if args.cache else out_dir / ".demo-stac"
    _say(f"building the demo STAC catalog from the real scenes in {data} (cache {cache})")
    cat = build_demo_catalog(cache, data)
    server = RustacServer(cat.collections, cat.items)
    try:  # the server is stopped whatever happens below (error, Ctrl-C)
        url = server.start()
        _say(f"STAC API (rustac) at {url}: collections "
             f"{', '.join(c['id'] for c in cat.collections)}")
        searches = [{"collections": c, "bbox": list(b) if b else None, "datetime": d}
                    for c, b, d in DEMO_SEARCHES]
        items = _search_all(url, searches, announce=True)
        # Whole scenes (no clipping to the search box): the demo masks what it finds.
        scenes = _stac_scenes(items, out_dir, url=url, bands=None, sensor=None, bbox=None,
                              clip=False, quicklook=True)
        # The demo replaces its own previous outputs (same names) but nothing else.
        _run_scenes(scenes, out_dir, model, threshold=args.threshold, device=device, overwrite=True,
                    progress=args.progress,
                    announce=f"masking {len(scenes)} scenes with model {_model_label(model)!r} on {device}")
    finally:
        server.stop()
    _say(f"stopped the STAC API; outputs (COGs and quicklooks) in {out_dir.resolve()}")
    return 0


def _cmd_evaluate(args) -> int:
    from .evaluation import BAND_SETS, evaluate_model, write_report
    from .inference.runtime import resolve_device
    from .evaluation.peers import get_peer
    from .datasets import load_dataset

    # Options first, then the outputs, the model and the data: cheap checks fail first.
    known_sets = {b.casefold(): b for b in BAND_SETS}
    band_sets = []
    for name in _split_bands(args.bands) or ["ALL"]:
        if name.casefold() not in known_sets:
            raise CliError(f"unknown band set {name!r} in --bands; known: {', '.join(BAND_SETS)}")
        band_sets.append(known_sets[name.casefold()])
    peers = [get_peer(p).name for p in (_split_bands(args.peers) or [])]
    out_dir = Path(args.out)
    _check_targets([out_dir / "evaluation.json", out_dir / "evaluation.md"], args.overwrite)
    model = _load_model(args.model)
    device = resolve_device(args.device)
    samples = load_dataset(args.dataset, args.root, args.split, tuple(model.classes))
    if not samples:
        raise CliError(f"dataset {args.dataset!r} (split {args.split}) has no samples")
    what = f"{args.dataset}" + (f" ({args.split})" if args.split else "")
    _say(f"evaluating {_model_label(model)!r} on {what}: {len(samples)} images, band sets "
         f"{', '.join(band_sets)}" + (f", peers {', '.join(peers)}" if peers else ""))
    report = evaluate_model(model, samples, band_sets, peers, threshold=args.threshold, device=device,
                            n_bootstrap=args.bootstrap, seed=args.seed, dataset=what,
                            progress=(lambda line: _say(f"  {line}")) if _show_progress(args.progress) else None)
    for row in report["rows"]:
        if "skipped" in row:
            _say(f"{row['method']} {row['band_set']}: not run: {row['skipped']}")
        else:
            m = row["pooled"]
            _say(f"{row['method']} {row['band_set']}: OA {m['overall_accuracy']:.3f} "
                 f"F1 {m['f1']:.3f} ({len(row['bands']) if isinstance(row['bands'], list) else '?'} bands)")
    json_path, md_path = write_report(report, out_dir, overwrite=args.overwrite)
    _say(f"wrote {json_path} and {md_path}")
    return 0


def _model_stem(path: str) -> Path:
    """The output stem of a model: ``m``, ``m.safetensors`` and ``m.json`` all mean ``m``."""
    p = Path(path)
    for suffix in (".safetensors", ".json"):
        if p.name.endswith(suffix):
            return p.with_name(p.name[: -len(suffix)])
    return p


def _cmd_train(args) -> int:
    from .sample_data import data_dir
    from .training.train import load_config, train

    config = load_config(args.config)
    if args.device:
        config = {**config, "device": args.device}
    data = Path(args.data_dir) if args.data_dir else data_dir()
    if not data.is_dir():
        raise CliError(f"--data-dir {data} is not a folder")
    out = _model_stem(args.out) if args.out else Path(_safe_name(str(config.get("name") or Path(args.config).stem)))
    weights, card = out.with_name(out.name + ".safetensors"), out.with_name(out.name + ".json")
    _check_targets([weights, card], args.overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    _say(f"training from {args.config} on {data} -> {weights} (checkpoints in {out.with_suffix('.ckpt')})")
    result = train(config, data, out, resume=args.resume, log=_say, progress=_show_progress(None))
    val = result.get("validation_metrics", {})
    summary = ", ".join(f"{k} OA {v['overall_accuracy']:.3f} F1 {v['f1']:.3f}" for k, v in val.items())
    _say(f"wrote {weights} and {card}" + (f"; held-out {summary}" if summary else ""))
    return 0


def _cmd_pretrain(args) -> int:
    from .sample_data import data_dir
    from .training.pretrain import PRETRAIN_DEFAULTS, pretrain_encoder
    from .training.train import read_config

    config = read_config(args.config, set(PRETRAIN_DEFAULTS), "pre-training") if args.config else {}
    for key in ("steps", "device", "seed"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    library = Path(args.library) if args.library else \
        data_dir() / "spectral_library_earthlib" / "earthlib_surfaces_10nm.npz"
    if not library.is_file():
        raise CliError(f"spectral library {library} not found: pass --library earthlib_surfaces_10nm.npz")
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CliError(f"--out {out} must end in .safetensors")
    _check_targets([out], args.overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    _say(f"pre-training SEnSeI on random band sets ({library.name}) -> {out}")
    _, history = pretrain_encoder(library, out, config, log=_say)
    _say(f"wrote {out}; use it as init_encoder = \"{out}\" in a training config")
    return 0


#: The benchmark scripts ``sensei-xr bench`` runs (those present in benchmarks/), with
#: their arguments: ``(module, quick, full, outputs)``; ``quick=None`` skips it with --quick.
_BENCHMARKS: tuple[tuple[str, list[str] | None, list[str], Any], ...] = (
    ("bench_model", ["--size", "64", "--repeats", "1", "--threads", "1"], ["--size", "256", "--repeats", "3"],
     lambda out: ["--json", str(out / "bench_model.json")]),
    ("bench_inference", ["--size", "256", "--repeats", "1"], [],
     lambda out: ["--json", str(out / "bench_inference.json")]),
    ("bench_speed", ["--quick"], [], lambda out: ["--out", str(out / "bench_speed")]),
    ("bench_scale", ["--quick"], [], lambda out: ["--out", str(out / "bench_scale")]),
    ("scene_report", None, [], lambda out: ["--out", str(out / "scenes")]),
)


def _benchmarks_dir() -> Path | None:
    """The source checkout's benchmarks/ folder (not part of the installed wheel)."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    return folder if (folder / "__init__.py").is_file() else None


def _cmd_bench(args) -> int:
    import subprocess

    folder = _benchmarks_dir()
    if folder is None:
        raise CliError("bench needs a source checkout: the benchmarks/ folder is not installed with "
                       "the package; clone the repository and run it there")
    root = folder.parent
    out_dir = Path(args.out).resolve()
    runs = [(name, (quick if args.quick else full) + outputs(out_dir))
            for name, quick, full, outputs in _BENCHMARKS
            if (folder / f"{name}.py").is_file() and not (args.quick and quick is None)]
    if not runs:
        raise CliError(f"no benchmark scripts found in {folder} (looked for "
                       f"{', '.join(n + '.py' for n, *_ in _BENCHMARKS)})")
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)}
    failed = []
    for name, extra in runs:
        cmd = [sys.executable, "-m", f"benchmarks.{name}", *extra]
        _say(f"== {name}: {' '.join(cmd[1:])}")
        code = subprocess.run(cmd, cwd=root, env=env).returncode
        if code:
            failed.append(f"{name} (exit {code})")
    if failed:
        raise CliError(f"benchmark(s) failed: {', '.join(failed)}; their output is above")
    _say(f"benchmarks done: {', '.join(n for n, _ in runs)}; outputs in {out_dir}")
    return 0


# ------------------------------------------------------------------------------ parser


def _threshold(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"must be within (0, 1), got {v:g}")
    return v


def _int_at_least(minimum: int, wording: str):
    """An argparse type: an integer >= ``minimum`` ("must be {wording}, got ...")."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be {wording}, got {v}")
        return v

    return parse


def _datetime_option(text: str) -> str:
    """An argparse type: a STAC datetime (RFC 3339 instant or interval), checked here so the
    error names the option instead of surfacing from the HTTP client."""
    from .io.stac import StacSearchError, check_datetime

    try:
        check_datetime(text, name="")
    except StacSearchError as e:
        raise argparse.ArgumentTypeError(str(e).strip()) from None
    return text


def _seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return v


_positive_int = _int_at_least(1, "at least 1")
_non_negative_int = _int_at_least(0, "0 or more")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default",
                   help="registry name (see 'sensei-xr models') or .safetensors path (default: default)")
    p.add_argument("--threshold", type=_threshold, default=0.5,
                   help="cloud where the cloud probability is at least this (default 0.5)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None,
                   help="no progress bar (default: shown on a terminal)")


def build_parser() -> argparse.ArgumentParser:
    """The ``sensei-xr`` argument parser."""
    p = argparse.ArgumentParser(
        prog="sensei-xr", description="Sensor-independent cloud masks (SEnSeI) for xarray scenes.",
        epilog="Errors print 'sensei-xr COMMAND: error: ...' and exit with status 2.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("sensors", help="list sensor catalogs (and one sensor's bands)")
    s.add_argument("sensor", nargs="?", help="show this sensor's bands (id or alias)")
    s.set_defaults(func=_cmd_sensors)

    m = sub.add_parser("models", help="list shipped models")
    m.set_defaults(func=_cmd_models)

    k = sub.add_parser(
        "mask", help="cloud-mask files, folders or STAC search results to COGs (or Zarr)",
        description="Cloud-mask raster files / band folders, or the items of a STAC search, "
                    "into one COG per scene (uint8: 0 clear, 1 cloud, 255 no data). Running it "
                    "again finishes what an interrupted run left (same model, bands, threshold); "
                    "outputs of another job are refused unless --overwrite.")
    k.add_argument("inputs", nargs="*", metavar="FILE_OR_FOLDER",
                   help="a multi-band raster file or a folder of band files")
    k.add_argument("--out", required=True, help="output folder")
    src = k.add_argument_group("STAC search")
    src.add_argument("--stac", metavar="URL", help="root URL of a STAC API")
    src.add_argument("--collection", action="append", metavar="C",
                     help="collection id (repeat for several)")
    src.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"),
                     help="search box in degrees; scenes are clipped to it unless --full-scenes")
    src.add_argument("--datetime", metavar="D", type=_datetime_option,
                     help="RFC 3339 instant or interval, e.g. 2023-07-01/2023-07-31 (open ends: ..)")
    src.add_argument("--filter", metavar="JSON", help="CQL2 filter: JSON (cql2-json) or CQL2 text")
    src.add_argument("--query", metavar="JSON", help="STAC query extension, a JSON object")
    src.add_argument("--max-items", type=_positive_int, metavar="N", help="at most this many items")
    src.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                     help="seconds each request to the STAC API may wait for the connection and "
                          "between bytes of the answer (default 60)")
    src.add_argument("--full-scenes", action="store_true",
                     help="mask each item's full extent, not only the --bbox")
    src.add_argument("--zarr", action="store_true",
                     help="one Zarr store for the time stack (<collection>_cloudmask.zarr) instead "
                          "of COGs; an interrupted run is resumed by running it again")
    # One comma-separated value (repeatable), not nargs="+": a list of words would swallow
    # the input folders that follow it.
    k.add_argument("--bands", action="append", metavar="B1,B2,...",
                   help="subset of bands, comma-separated (names, aliases or asset keys), e.g. "
                        "--bands B2,B3,B4,B5; repeat the option to add more")
    k.add_argument("--sensor", help="catalog sensor id (files: detected from MTL / MTD files)")
    k.add_argument("--processing-baseline", help="files: Sentinel-2 baseline if no MTD file")
    k.add_argument("--quicklook", action="store_true", help="also write <scene>_quicklook.png")
    k.add_argument("--overwrite", action="store_true",
                   help="recompute and replace existing outputs, whatever job made them")
    _add_model_options(k)
    k.set_defaults(func=_cmd_mask)

    d = sub.add_parser(
        "demo", help="the main job on the real sample scenes, through a local STAC API",
        description="Build a STAC catalog from the real sample scenes (../shared/data or "
                    "$SENSEI_XR_DATA), serve it with rustac on 127.0.0.1, search it, mask what "
                    "it finds and write a COG and a quicklook per scene into --out. The demo "
                    "replaces its own previous outputs in --out; the server is always stopped.")
    d.add_argument("--out", default=DEFAULT_DEMO_OUT, help=f"output folder (default ./{DEFAULT_DEMO_OUT})")
    d.add_argument("--cache", help="folder for the demo catalog's COGs (default OUT/.demo-stac; reused)")
    _add_model_options(d)
    d.set_defaults(func=_cmd_demo)

    e = sub.add_parser(
        "evaluate", help="accuracy of a model (and peer methods) on a labelled dataset",
        description="Score a model on a labelled dataset with the paper's metrics (OA, balanced "
                    "accuracy, precision, recall, F1 of cloud), pooled and per image, with bootstrap "
                    "intervals over images and a breakdown by tags; for each band set of Table III "
                    "(resolved by wavelength) and for peer methods on the same pixels. Writes "
                    "evaluation.json and evaluation.md into --out.")
    e.add_argument("--dataset", required=True, help="labelled dataset name, e.g. biome_patches")
    e.add_argument("--split", help="split, e.g. val (default: the dataset's default, often all)")
    e.add_argument("--root", help="the dataset's folder (default: its place in the sample data)")
    e.add_argument("--bands", nargs="+", metavar="SET",
                   help="band sets, comma- or space-separated: ALL, COMMON, RGB, RGBNIR, AeroRGBNIR, "
                        "NoRGB (default ALL)")
    e.add_argument("--peers", nargs="+", metavar="PEER",
                   help="peer methods on the same pixels: s2cloudless, ukis-csmask, ukis-csmask-4b "
                        "(pip install 'sensei_xr[peers]')")
    e.add_argument("--bootstrap", type=_non_negative_int, default=1000, metavar="N",
                   help="bootstrap resamples of the images for 95%% intervals (0: none; default 1000)")
    e.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    e.add_argument("--out", default=DEFAULT_EVALUATION_OUT,
                   help=f"output folder (default ./{DEFAULT_EVALUATION_OUT})")
    e.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    _add_model_options(e)
    e.set_defaults(func=_cmd_evaluate)

    t = sub.add_parser(
        "train", help="train a model from a config file",
        description="Train a model as a TOML or JSON config says (keys of "
                    "sensei_xr.training.train.DEFAULT_CONFIG; data paths relative to --data-dir). "
                    "Writes STEM.safetensors and STEM.json, checkpoints in STEM.ckpt/; an "
                    "interrupted run resumes from its last checkpoint unless --no-resume.")
    t.add_argument("--config", required=True, help="training config, .toml or .json")
    t.add_argument("--data-dir", help="folder the config's data paths are relative to "
                                      "(default: the sample data, $SENSEI_XR_DATA or ../shared/data)")
    t.add_argument("--out", metavar="STEM", help="output stem (default: the config's name, else its file stem)")
    t.add_argument("--device", help="auto, cpu or cuda (default: the config's, else auto)")
    t.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start from scratch even if checkpoints exist")
    t.add_argument("--overwrite", action="store_true", help="replace an existing STEM.safetensors / .json")
    t.set_defaults(func=_cmd_train)

    pt = sub.add_parser(
        "pretrain", help="pre-train the SEnSeI encoder as a spectral autoencoder",
        description="Self-supervised pre-training of SEnSeI on random band sets (paper section III-B): "
                    "random sensors (3-14 bands, 400 nm - 20 um) observing spectra of the EarthLib "
                    "library and generated snow, water and cloud; writes the encoder's weights for "
                    "init_encoder in a training config.")
    pt.add_argument("--out", required=True, help="encoder weights to write (.safetensors)")
    pt.add_argument("--config", help="TOML/JSON with keys of sensei_xr.training.pretrain.PRETRAIN_DEFAULTS")
    pt.add_argument("--library", help="earthlib_surfaces_10nm.npz (default: in the sample data)")
    pt.add_argument("--steps", type=_positive_int, help="optimizer steps (overrides the config)")
    pt.add_argument("--device", help="auto, cpu or cuda")
    pt.add_argument("--seed", type=int, help="random seed")
    pt.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    pt.set_defaults(func=_cmd_pretrain)

    b = sub.add_parser(
        "bench", help="run the benchmark scripts (source checkout only)",
        description="Run the scripts in the repository's benchmarks/ folder as subprocesses; they "
                    "print numbers and write results into --out (replacing their own earlier ones). "
                    "Needs a source checkout: benchmarks/ is not installed with the package.")
    b.add_argument("--quick", action="store_true", help="small sizes, one repeat (a smoke run)")
    b.add_argument("--out", default=DEFAULT_BENCH_OUT, help=f"output folder (default ./{DEFAULT_BENCH_OUT})")
    b.set_defaults(func=_cmd_bench)
    return p


# Errors the library raises for bad input, data or environment: reported in one line.
# Anything else is a bug and keeps its traceback.
def _expected_errors() -> tuple[type[BaseException], ...]:
    from .errors import SenseiError

    return (SenseiError, ValueError, LookupError, OSError, RuntimeError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sensei-xr`` with ``argv`` (default ``sys.argv[1:]``).

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments without the program name.

    Returns
    -------
    int
        Exit status: 0 on success, 2 on an error (one line on stderr) or a usage error,
        130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as e:  # usage errors and --help: argparse has printed its message
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    try:
        with warnings.catch_warnings():
            _quiet_warnings()
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"sensei-xr {args.command}: interrupted", file=sys.stderr)
        return 130
    except _expected_errors() as e:
        if os.environ.get("SENSEI_XR_DEBUG"):  # developers: keep the traceback
            raise
        print(f"sensei-xr {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
