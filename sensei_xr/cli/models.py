"""``sensei-xr models``: the shipped models and their cards' summaries."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    """The ``models`` subcommand."""
    m = sub.add_parser("models", help="list shipped models")
    m.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """One line per model (:func:`sensei_xr.models.list_models`)."""
    from ..models import list_models

    for name, summary in list_models().items():
        print(f"{name:16s} {summary}")
    return 0
