"""``sensei-xr sensors [SENSOR]``: the sensor catalogs, and one sensor's bands."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    """The ``sensors`` subcommand."""
    s = sub.add_parser("sensors", help="list sensor catalogs (and one sensor's bands)")
    s.add_argument("sensor", nargs="?", help="show this sensor's bands (id or alias)")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """One line per sensor; with SENSOR, a table of its bands."""
    from .. import catalogs

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
