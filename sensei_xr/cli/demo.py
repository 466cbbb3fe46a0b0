"""``sensei-xr demo``: the main job on the real sample scenes, through a local STAC API.

The demo tooling (catalog builder, rustac server) is :mod:`sensei_xr.demo`, imported only
when the command runs; the masking is the ``mask`` command's (:mod:`.scenes`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_engine_options, add_model_options, engine_options, load_model, say
from .scenes import item_scenes, mask_to_cogs, search_all

#: Default output folder of ``sensei-xr demo``.
DEFAULT_DEMO_OUT = "sensei-xr-demo"

#: The demo's searches: (collection, bbox, datetime). Each finds real sample scenes in the
#: demo catalog (sensei_xr.demo.build_demo_catalog): a bbox search over the five
#: eo-learn Sentinel-2 dates (Slovenia), a datetime search for the Sentinel-2 tile 18SVG,
#: and a year of Landsat 8 (the 30 m L1 scene and the 120 m TOA scene).
DEMO_SEARCHES: tuple[tuple[str, tuple[float, float, float, float] | None, str | None], ...] = (
    ("sensei-demo-landsat-8", None, "2015-01-01/2015-12-31"),
    ("sentinel-2-l1c", None, "2016-01-01/2016-01-31"),
    ("sentinel-2-l1c", (14.50, 45.80, 14.60, 45.90), None),
)


def add_parser(sub) -> None:
    """The ``demo`` subcommand and its options."""
    d = sub.add_parser(
        "demo", help="the main job on the real sample scenes, through a local STAC API",
        description="Build a STAC catalog from the real sample scenes (../shared/data or "
                    "$SENSEI_XR_DATA), serve it with rustac on 127.0.0.1, search it, mask what "
                    "it finds and write a COG and a quicklook per scene into --out. The demo "
                    "replaces its own previous outputs in --out; the server is always stopped. "
                    "Needs rustac: pip install 'sensei_xr[demo]'.")
    d.add_argument("--out", default=DEFAULT_DEMO_OUT, help=f"output folder (default ./{DEFAULT_DEMO_OUT})")
    d.add_argument("--cache", help="folder for the demo catalog's COGs (default OUT/.demo-stac; reused)")
    add_model_options(d)
    add_engine_options(d.add_argument_group("patch grid"))
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build, serve, search, mask; the server is stopped whatever happens (error, Ctrl-C)."""
    from ..demo import RustacServer, build_demo_catalog
    from ..evaluation import model_label
    from ..inference.runtime import resolve_device
    from ..sample_data import data_dir

    engine = engine_options(args)
    model = load_model(args.model)
    device = resolve_device(args.device)
    data = data_dir()
    out_dir = Path(args.out)
    cache = Path(args.cache) if args.cache else out_dir / ".demo-stac"
    say(f"building the demo STAC catalog from the real scenes in {data} (cache {cache})")
    cat = build_demo_catalog(cache, data)
    server = RustacServer(cat.collections, cat.items)
    try:
        url = server.start()
        say(f"STAC API (rustac) at {url}: collections {', '.join(c['id'] for c in cat.collections)}")
        searches = [{"collections": c, "bbox": list(b) if b else None, "datetime": d}
                    for c, b, d in DEMO_SEARCHES]
        items = search_all(url, searches, announce=True)
        # Whole scenes (no clipping to the search box): the demo masks what it finds.
        scenes = item_scenes(items, api_url=url)
        # The demo replaces its own previous outputs (same names) but nothing else.
        mask_to_cogs(scenes, out_dir, model, threshold=args.threshold, device=device, overwrite=True,
                     progress=args.progress, quicklooks=True,
                     announce=f"masking {len(scenes)} scenes with model {model_label(model)!r} on {device}",
                     **engine)
    finally:
        server.stop()
    say(f"stopped the STAC API; outputs (COGs and quicklooks) in {out_dir.resolve()}")
    return 0
