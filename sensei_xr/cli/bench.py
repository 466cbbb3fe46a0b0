"""``sensei-xr bench``: run the source checkout's ``benchmarks/`` scripts as subprocesses.

The benchmarks are development tooling, not part of the installed package: the core never
imports them, and this command runs them only from a source checkout (it says so
otherwise).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from ..errors import CliError
from .common import say

#: Default output folder of ``sensei-xr bench``.
DEFAULT_BENCH_OUT = "sensei-xr-bench"

#: The benchmark scripts ``sensei-xr bench`` runs (those present in benchmarks/), with
#: their arguments: ``(module, quick, full, outputs)``; ``quick=None`` skips it with --quick.
_BENCHMARKS: tuple[tuple[str, list[str] | None, list[str], Callable[[Path], list[str]]], ...] = (
    ("bench_model", ["--size", "64", "--repeats", "1", "--threads", "1"], ["--size", "256", "--repeats", "3"],
     lambda out: ["--json", str(out / "bench_model.json")]),
    ("bench_inference", ["--size", "256", "--repeats", "1"], [],
     lambda out: ["--json", str(out / "bench_inference.json")]),
    ("bench_speed", ["--quick"], [], lambda out: ["--out", str(out / "bench_speed")]),
    ("bench_scale", ["--quick"], [], lambda out: ["--out", str(out / "bench_scale")]),
    # The shipped recipe's step time and projected run against the 45-minute budget.
    ("bench_training", ["--quick"], [], lambda out: ["--out", str(out / "bench_training")]),
    ("scene_report", None, [], lambda out: ["--out", str(out / "scenes")]),
)


def add_parser(sub) -> None:
    """The ``bench`` subcommand and its options."""
    b = sub.add_parser(
        "bench", help="run the benchmark scripts (source checkout only)",
        description="Run the scripts in the repository's benchmarks/ folder as subprocesses; they "
                    "print numbers and write results into --out (replacing their own earlier ones). "
                    "Needs a source checkout: benchmarks/ is not installed with the package.")
    b.add_argument("--quick", action="store_true", help="small sizes, one repeat (a smoke run)")
    b.add_argument("--out", default=DEFAULT_BENCH_OUT, help=f"output folder (default ./{DEFAULT_BENCH_OUT})")
    b.set_defaults(func=run)


def _benchmarks_dir() -> Path | None:
    """The source checkout's benchmarks/ folder: beside this package and this project's
    pyproject.toml (an installed package has neither; another project's folder of that
    name is not ours to run)."""
    root = Path(__file__).resolve().parents[2]
    folder = root / "benchmarks"
    pyproject = root / "pyproject.toml"
    if not (folder / "__init__.py").is_file() or not pyproject.is_file():
        return None
    return folder if 'name = "sensei_xr"' in pyproject.read_text(encoding="utf-8") else None


def run(args: argparse.Namespace) -> int:
    """Each script present in turn (the others still run when one fails); exit 2 naming
    the failed ones."""
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
        say(f"== {name}: {' '.join(cmd[1:])}")
        code = subprocess.run(cmd, cwd=root, env=env).returncode
        if code:
            failed.append(f"{name} (exit {code})")
    if failed:
        raise CliError(f"benchmark(s) failed: {', '.join(failed)}; their output is above")
    say(f"benchmarks done: {', '.join(n for n, _ in runs)}; outputs in {out_dir}")
    return 0
