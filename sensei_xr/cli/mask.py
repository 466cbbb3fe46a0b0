"""``sensei-xr mask``: raster files, band folders or STAC search results to cloud-mask COGs
(or one Zarr store), resumable, through :mod:`sensei_xr.inference.batch`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import CliError
from .common import (
    add_engine_options,
    add_model_options,
    engine_options,
    load_model,
    positive_float,
    positive_int,
    say,
    seconds,
    show_progress,
    split_list,
    stac_datetime,
)
from .scenes import (
    item_scenes,
    mask_to_cogs,
    option_names,
    plain_coords,
    search_all,
    summary_line,
)

# Options that only mean something for a STAC search, and their attribute names.
_STAC_ONLY = (("--collection", "collection"), ("--bbox", "bbox"), ("--datetime", "datetime"),
              ("--filter", "filter"), ("--query", "query"), ("--max-items", "max_items"),
              ("--timeout", "timeout"), ("--zarr", "zarr"), ("--epsg", "epsg"), ("--resolution", "resolution"))


def add_parser(sub) -> None:
    """The ``mask`` subcommand and its options."""
    k = sub.add_parser(
        "mask", help="cloud-mask files, folders or STAC search results to COGs (or Zarr)",
        description="Cloud-mask raster files / band folders, or the items of a STAC search, "
                    "into one COG per scene (uint8: 0 clear, 1 cloud, 255 no data). Running it "
                    "again finishes what an interrupted run left (same model, bands, threshold); "
                    "outputs of another job are refused unless --overwrite.")
    k.add_argument("inputs", nargs="*", metavar="FILE_OR_FOLDER",
                   help="a multi-band raster file or a folder of band files")
    k.add_argument("--out", required=True, help="output folder")
    _add_search_options(k.add_argument_group("STAC search"))
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
    add_model_options(k)
    add_engine_options(k.add_argument_group("patch grid"))
    k.set_defaults(func=run)


def _add_search_options(src) -> None:
    src.add_argument("--stac", metavar="URL", help="root URL of a STAC API")
    src.add_argument("--collection", action="append", metavar="C", help="collection id (repeat for several)")
    src.add_argument("--bbox", nargs=4, type=float, metavar=("W", "S", "E", "N"),
                     help="search box in degrees; scenes are clipped to it unless --full-scenes")
    src.add_argument("--datetime", metavar="D", type=stac_datetime,
                     help="RFC 3339 instant or interval, e.g. 2023-07-01/2023-07-31 (open ends: ..)")
    src.add_argument("--filter", metavar="JSON", help="CQL2 filter: JSON (cql2-json) or CQL2 text")
    src.add_argument("--query", metavar="JSON", help="STAC query extension, a JSON object")
    src.add_argument("--max-items", type=positive_int, metavar="N", help="at most this many items")
    src.add_argument("--timeout", type=seconds, default=None, metavar="SECONDS",
                     help="seconds each request to the STAC API, and each read of an asset, may wait "
                          "for the connection and between bytes of the answer (default 60)")
    src.add_argument("--full-scenes", action="store_true", help="mask each item's full extent, not only the --bbox")
    src.add_argument("--epsg", type=positive_int, metavar="CODE",
                     help="output CRS as an EPSG code, e.g. 32633: for items that give no CRS (HLS from "
                          "NASA CMR) or, with --zarr, items in several UTM zones (reprojected to this one)")
    src.add_argument("--resolution", type=positive_float, metavar="M",
                     help="output pixel size in CRS units (m; default: the assets' most common one)")
    src.add_argument("--zarr", action="store_true",
                     help="one Zarr store for the time stack (<collection>_cloudmask.zarr) instead "
                          "of COGs; an interrupted run is resumed by running it again")


def run(args: argparse.Namespace) -> int:
    """Check the options, load the model, mask; options first, then the model, then the
    search, so that cheap checks fail before slow ones."""
    _check_sources(args)
    args.bands = split_list(args.bands)
    if args.bbox is not None:
        from ..errors import StacSearchError
        from ..io.stac import check_bbox

        try:
            args.bbox = check_bbox(args.bbox, name="--bbox")
        except StacSearchError as e:
            raise CliError(str(e)) from None
    args.filter = _json_option(args.filter, "--filter")
    args.query = _json_option(args.query, "--query")
    if args.query is not None and not isinstance(args.query, dict):
        raise CliError("--query must be a JSON object, e.g. '{\"eo:cloud_cover\": {\"lt\": 20}}'")
    args.engine = engine_options(args)
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"--out {out_dir} exists and is not a folder; choose a folder")
    model = load_model(args.model)
    if args.stac:
        _mask_stac(args, model, out_dir)
    else:
        _mask_files(args, model, out_dir)
    return 0


def _check_sources(args: argparse.Namespace) -> None:
    """Files or a STAC search, not both, and no search option without a search."""
    if args.stac and args.inputs:
        hint = (f" ({' '.join(args.inputs)}: meant for --bands? it takes one comma-separated list, "
                "e.g. --bands B2,B3,B4)" if args.bands else "")
        raise CliError(f"give input files/folders or --stac URL, not both{hint}")
    if not args.stac and not args.inputs:
        raise CliError("nothing to mask: give input files/folders, or --stac URL --collection C")
    if args.stac and not args.collection:
        raise CliError("--stac needs --collection (repeat it for several collections)")
    if not args.stac:
        given = [option for option, attr in _STAC_ONLY if getattr(args, attr)]
        if given:
            raise CliError(f"{', '.join(given)} only apply with --stac URL")


def _json_option(text: str | None, option: str):
    """A JSON option's value; text that is not a JSON object or list (CQL2 text) as is."""
    if text is None:
        return None
    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return stripped
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as e:
        raise CliError(f"{option} is not valid JSON ({e.msg} at character {e.pos})") from None


def _mask_files(args: argparse.Namespace, model, out_dir: Path) -> None:
    from ..io import open_scene
    from ..outputs import safe_stem

    scenes = {}
    for src in (Path(p) for p in args.inputs):
        if not src.exists():
            hint = (" (--bands takes one comma-separated list, e.g. --bands B2,B3,B4: was this "
                    "meant as a band?)" if args.bands else "")
            raise CliError(f"input {src} does not exist{hint}")
        name = safe_stem(src.stem if src.is_file() else src.name)
        if name in scenes:
            raise CliError(f"two inputs give the same output name {name!r}; mask them into "
                           "different --out folders")
        scenes[name] = open_scene(src, sensor=args.sensor, processing_baseline=args.processing_baseline)
    # The engine chooses the bands here: file scenes name them by catalog band.
    mask_to_cogs(scenes, out_dir, model, threshold=args.threshold, device=args.device,
                 overwrite=args.overwrite, progress=args.progress, quicklooks=args.quicklook,
                 bands=args.bands, **args.engine)


def _mask_stac(args: argparse.Namespace, model, out_dir: Path) -> None:
    from ..evaluation import model_label
    from ..io.stac import DEFAULT_TIMEOUT_S

    search = {"collections": args.collection if len(args.collection) > 1 else args.collection[0],
              "bbox": args.bbox, "datetime": args.datetime, "filter": args.filter, "query": args.query,
              "max_items": args.max_items}
    items = search_all(args.stac, [search], timeout=args.timeout)
    # stack_items selects the bands here (asset keys or band names), and reads assets with
    # the same timeout as the search.
    stack_options = {"bands": args.bands, "sensor": args.sensor, "api_url": args.stac,
                     "bounds_latlon": args.bbox if (args.bbox and not args.full_scenes) else None,
                     "timeout": args.timeout or DEFAULT_TIMEOUT_S, "epsg": args.epsg,
                     "resolution": args.resolution}
    if args.zarr:
        _mask_stac_to_zarr(items, out_dir, args, model, stack_options)
        return
    scenes = item_scenes(items, **stack_options)
    mask_to_cogs(scenes, out_dir, model, threshold=args.threshold, device=args.device,
                 overwrite=args.overwrite, progress=args.progress, quicklooks=args.quicklook,
                 announce=f"masking {len(scenes)} scene(s) from {args.stac} with model {model_label(model)!r}",
                 **args.engine)


def _mask_stac_to_zarr(items: list[dict], out_dir: Path, args: argparse.Namespace, model,
                       stack_options: dict) -> None:
    """All items as one time stack, masked into one resumable Zarr store."""
    from ..evaluation import model_label
    from ..inference.batch import finish_stack, plan_stack
    from ..io.stac import stack_items
    from ..outputs import cloud_fraction, safe_stem

    stack = plain_coords(stack_items(items, **stack_options))
    store = out_dir / f"{safe_stem('+'.join(args.collection))}_cloudmask.zarr"
    plan = plan_stack(stack, store, model=model, threshold=args.threshold, device=args.device,
                      overwrite=args.overwrite, option_names=option_names(), **args.engine)
    if plan.state == "complete":
        say(f"{store} is complete, from this same job: nothing to do (pass --overwrite to recompute it)")
    elif plan.state == "resume":
        say(f"resuming the unfinished store {store}")
    say(f"masking {stack.sizes['time']} scene(s) from {args.stac} into {store} with model "
        f"{model_label(model)!r}")
    ds = finish_stack(plan, progress=show_progress(args.progress))
    ids = [str(v) for v in ds["id"].values] if "id" in ds.coords else [str(t) for t in ds["time"].values]
    for t, name in enumerate(ids):
        values = ds["cloudmask"].isel(time=t).values
        say(summary_line(name, plan.n_bands, values.shape, cloud_fraction(values), [store]))
