"""``sensei-xr``: a thin command line over the library.

Each command is a module here that parses and checks its options, calls library
functions and prints; the shared parts are in :mod:`.common` (and :mod:`.scenes` for the
two masking commands).

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
``evaluate --dataset D [--split S] [--option KEY=VALUE ...] [--bands ALL,RGB,...] [--peers ...] [--out DIR]``
    The paper's metrics of a model on a labelled dataset
    (:func:`sensei_xr.datasets.load_dataset`) for the band sets of Table III and
    peer methods on the same pixels (:func:`sensei_xr.evaluation.evaluate_model`);
    writes ``evaluation.json`` and ``evaluation.md``.
``train --config FILE [--data-dir DIR] [--out STEM]``
    Train a model (:func:`sensei_xr.training.train.train`), resuming from checkpoints.
``pretrain --out FILE.safetensors``
    Pre-train the SEnSeI encoder (:func:`sensei_xr.training.pretrain.pretrain_encoder`).
``bench [--quick] [--out DIR]``
    Run the source checkout's ``benchmarks/`` scripts as subprocesses.

``mask`` and ``demo`` write through :mod:`sensei_xr.inference.batch`, the library's one
scene orchestration. Outputs never look complete when a scene fails: COGs and quicklooks
are written under temporary names and renamed, a scene whose writing fails has its outputs
removed, and Zarr regions count as done only once written; ``evaluate`` writes its report
files under temporary names and renames them once both are complete. ``mask`` outputs
record the job that made them (model weights, bands, threshold, grid): a rerun of the same
job finishes what is missing (after a kill or a failure) and skips the rest; outputs of
another job, or of none, are refused unless ``--overwrite``. ``evaluate``, ``train`` and
``pretrain`` refuse existing outputs unless ``--overwrite`` (``demo`` and ``bench``
replace their own previous outputs). Errors print one line,
``sensei-xr <command>: error: ...``, to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Sequence

from . import bench, demo, evaluate, mask, models, pretrain, sensors, train
from .bench import DEFAULT_BENCH_OUT
from .common import one_line
from .demo import DEFAULT_DEMO_OUT, DEMO_SEARCHES
from .evaluate import DEFAULT_EVALUATION_OUT

__all__ = ["main", "build_parser", "DEMO_SEARCHES", "DEFAULT_DEMO_OUT", "DEFAULT_EVALUATION_OUT",
           "DEFAULT_BENCH_OUT"]

# The commands in the order of ``sensei-xr --help``; each module adds its own parser.
_COMMANDS = (sensors, models, mask, demo, evaluate, train, pretrain, bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``sensei-xr`` argument parser: one subparser per command module."""
    parser = argparse.ArgumentParser(
        prog="sensei-xr", description="Sensor-independent cloud masks (SEnSeI) for xarray scenes.",
        epilog="Errors print 'sensei-xr COMMAND: error: ...' and exit with status 2.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(sub)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Errors the library raises for bad input, data or environment: reported in one line.
    Anything else is a bug and keeps its traceback."""
    from ..errors import SenseiError

    return (SenseiError, ValueError, LookupError, OSError, RuntimeError)


def _quiet_warnings() -> None:
    # Zarr v3 warns about fixed-length string coordinates and consolidated metadata on every
    # store; neither is actionable for a CLI user. (Called inside warnings.catch_warnings.)
    warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part.*")


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
        print(f"sensei-xr {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
