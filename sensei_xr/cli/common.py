"""What the commands share: printing beside a progress bar, option types, the model, outputs.

Imports only the standard library at module level, so ``sensei-xr --help`` stays fast;
each command imports the library parts it calls when it runs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import CliError

#: The engine's patch size and overlap (px), for the options' help and checks without
#: importing the engine; tests/test_cli.py checks them against ``class_probabilities``'s defaults.
ENGINE_PATCH_PX = 256
ENGINE_OVERLAP_PX = 64


def one_line(e: BaseException) -> str:
    """The exception's message on one line (KeyError's quotes removed)."""
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        text = e.args[0]
    else:
        text = str(e) or type(e).__name__
    return " ".join(text.split())


def say(text: str) -> None:
    """Print a line to stdout without breaking a progress bar on stderr."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


def show_progress(enabled: bool | None) -> bool:
    """``--no-progress`` gives False; by default a bar is shown on a terminal only."""
    return sys.stderr.isatty() if enabled is None else bool(enabled)


def load_model(name: str):
    """Load the model once, before any work, so a bad name or path fails fast."""
    from ..errors import WeightsError
    from ..models import load_model as load

    try:
        return load(name)
    except WeightsError as e:
        if "no model named" in str(e):
            raise CliError(f"{one_line(e)} (--model PATH.safetensors)") from e
        raise


def split_list(values: Sequence[str] | None) -> list[str] | None:
    """``["B2,B3", "B4"]`` -> ``["B2", "B3", "B4"]``: comma-separated values of a repeated
    or multi-word option; None when nothing is left."""
    if not values:
        return None
    out = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return out or None


def refuse_existing(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse existing outputs (without ``--overwrite``) before any work is done."""
    for p in paths:
        if p.exists() or p.is_symlink():
            if not p.is_file():
                raise CliError(f"{p} exists and is not a file; move it away or choose another --out")
            if not overwrite:
                raise CliError(f"{p} exists; pass --overwrite to replace it")


# ------------------------------------------------------------------- argparse types


def threshold(text: str) -> float:
    """An argparse type: a probability strictly between 0 and 1."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"must be within (0, 1), got {v:g}")
    return v


def int_at_least(minimum: int, wording: str):
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


positive_int = int_at_least(1, "at least 1")
non_negative_int = int_at_least(0, "0 or more")


def _positive_number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a positive {what}, got {text}")
    return v


def positive_float(text: str) -> float:
    """An argparse type: a positive, finite number."""
    return _positive_number(text, "number")


def seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    return _positive_number(text, "number of seconds")


def stac_datetime(text: str) -> str:
    """An argparse type: a STAC datetime (RFC 3339 instant or interval), checked here so the
    error names the option instead of surfacing from the HTTP client."""
    from ..errors import StacSearchError
    from ..io.stac import check_datetime

    try:
        check_datetime(text, name="")
    except StacSearchError as e:
        raise argparse.ArgumentTypeError(str(e).strip()) from None
    return text


def add_model_options(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--threshold``, ``--device`` and ``--no-progress``."""
    p.add_argument("--model", default="default",
                   help="registry name (see 'sensei-xr models') or .safetensors path (default: default)")
    p.add_argument("--threshold", type=threshold, default=0.5,
                   help="cloud where the cloud probability is at least this (default 0.5)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False, default=None,
                   help="no progress bar (default: shown on a terminal)")


def add_engine_options(group) -> None:
    """``--overlap`` and ``--edges``: the patch grid of the engine (left out: its defaults)."""
    group.add_argument("--overlap", type=int, metavar="PX",
                       help=f"pixels neighbouring patches share, 0 to half the {ENGINE_PATCH_PX} px patch "
                            f"({ENGINE_PATCH_PX // 2}); default {ENGINE_OVERLAP_PX}, the most accurate in cross-validation "
                            "(docs/benchmarks.md); less runs fewer patches")
    group.add_argument("--edges", metavar="{ring,flush}",
                       help="ring (default): patches reach past the scene's edges, so edge pixels are "
                            "predicted like inner ones; flush: the last patch ends at the edge, fewer "
                            "patches (about half on a 1024 px scene, 0.93x on a full tile) for less "
                            "accurate edges")


def engine_options(args: argparse.Namespace) -> dict:
    """The engine arguments ``--overlap`` and ``--edges`` give (those left out keep the
    engine's defaults), checked here so that a bad value fails, naming its flag, before the
    model loads."""
    from ..inference.tiling import EDGES

    out = {}
    if args.overlap is not None:
        most = ENGINE_PATCH_PX // 2
        if not 0 <= args.overlap <= most:
            raise CliError(f"--overlap must be 0..{most} pixels (half the {ENGINE_PATCH_PX} px patch), "
                           f"got {args.overlap}")
        out["overlap"] = args.overlap
    if args.edges is not None:
        if args.edges not in EDGES:
            raise CliError(f"--edges must be one of {', '.join(EDGES)}, got {args.edges!r}")
        out["edges"] = args.edges
    return out
