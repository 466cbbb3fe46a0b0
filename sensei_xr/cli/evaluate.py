"""``sensei-xr evaluate``: the paper's metrics of a model (and peers) on a labelled dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CliError
from .common import (
    add_engine_options,
    add_model_options,
    engine_options,
    load_model,
    non_negative_int,
    refuse_existing,
    say,
    show_progress,
    split_list,
)

#: Default output folder of ``sensei-xr evaluate``.
DEFAULT_EVALUATION_OUT = "sensei-xr-evaluation"


def add_parser(sub) -> None:
    """The ``evaluate`` subcommand and its options."""
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
    e.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", dest="options",
                   help="an option of the dataset's loader, the VALUE a TOML value (repeatable), e.g. "
                        "--option 'window=[2880, 2816, 2048, 2048]' --option max_bytes=2.1e10 for "
                        "biome_scenes, --option sun_elevation_deg=35.2 for 38cloud; a VALUE that "
                        "is not TOML is a string (--option mtl_dir=/data/mtl). The loaders' options: "
                        "help(sensei_xr.datasets.DATASET_LOADERS[NAME])")
    e.add_argument("--bands", nargs="+", metavar="SET",
                   help="band sets, comma- or space-separated: ALL, COMMON, RGB, RGBNIR, AeroRGBNIR, "
                        "NoRGB (default ALL)")
    e.add_argument("--peers", nargs="+", metavar="PEER",
                   help="peer methods on the same pixels: s2cloudless, ukis-csmask, ukis-csmask-4b "
                        "(pip install 'sensei_xr[peers]')")
    e.add_argument("--bootstrap", type=non_negative_int, default=1000, metavar="N",
                   help="bootstrap resamples of the images for 95%% intervals (0: none; default 1000)")
    e.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    e.add_argument("--out", default=DEFAULT_EVALUATION_OUT,
                   help=f"output folder (default ./{DEFAULT_EVALUATION_OUT})")
    e.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_model_options(e)
    add_engine_options(e.add_argument_group("patch grid"))
    e.set_defaults(func=run)


def _band_sets(values: list[str] | None) -> list[str]:
    """``--bands`` as the canonical names of Table III's band sets (any case)."""
    from ..evaluation import BAND_SETS

    known = {b.casefold(): b for b in BAND_SETS}
    out = []
    for name in split_list(values) or ["ALL"]:
        if name.casefold() not in known:
            raise CliError(f"unknown band set {name!r} in --bands; known: {', '.join(BAND_SETS)}")
        out.append(known[name.casefold()])
    return out


def dataset_options(values: list[str]) -> dict:
    """``--option KEY=VALUE`` as loader keyword options: each VALUE read as a TOML value
    (numbers, booleans, lists, quoted strings), else kept as the string given."""
    import tomllib

    options: dict = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise CliError(f"--option {item!r} is not KEY=VALUE; e.g. --option max_bytes=2.1e10")
        if key in options:
            raise CliError(f"--option {key} is given twice; give each option once")
        try:
            options[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            options[key] = value
    return options


def run(args: argparse.Namespace) -> int:
    """Options first, then the outputs, the model and the data: cheap checks fail first."""
    from ..datasets import load_dataset
    from ..evaluation import evaluate_model, model_label, write_report
    from ..evaluation.peers import get_peer
    from ..inference.runtime import resolve_device

    band_sets = _band_sets(args.bands)
    options = dataset_options(args.options)
    peers = [get_peer(p).name for p in (split_list(args.peers) or [])]
    engine = engine_options(args)
    out_dir = Path(args.out)
    refuse_existing([out_dir / "evaluation.json", out_dir / "evaluation.md"], args.overwrite)
    model = load_model(args.model)
    device = resolve_device(args.device)
    try:
        samples = load_dataset(args.dataset, args.root, args.split, tuple(model.classes), **options)
    except TypeError as e:  # an option of the wrong kind (the loaders say which and how)
        if not options:
            raise
        raise CliError(f"--option: {e}") from e
    if not samples:
        raise CliError(f"dataset {args.dataset!r} (split {args.split}) has no samples")
    what = f"{args.dataset}" + (f" ({args.split})" if args.split else "")
    say(f"evaluating {model_label(model)!r} on {what}: {len(samples)} images, band sets "
        f"{', '.join(band_sets)}" + (f", peers {', '.join(peers)}" if peers else ""))
    progress = (lambda line: say(f"  {line}")) if show_progress(args.progress) else None
    report = evaluate_model(model, samples, band_sets, peers, threshold=args.threshold, device=device,
                            n_bootstrap=args.bootstrap, seed=args.seed, dataset=what, progress=progress,
                            engine_options=engine)
    for row in report["rows"]:
        say(_row_line(row))
    json_path, md_path = write_report(report, out_dir, overwrite=args.overwrite)
    say(f"wrote {json_path} and {md_path}")
    return 0


def _row_line(row: dict) -> str:
    """One report row: method, band set, OA and F1 (or why it was not run)."""
    if "skipped" in row:
        return f"{row['method']} {row['band_set']}: not run: {row['skipped']}"
    m = row["pooled"]
    n_bands = len(row["bands"]) if isinstance(row["bands"], list) else "?"
    return f"{row['method']} {row['band_set']}: OA {m['overall_accuracy']:.3f} F1 {m['f1']:.3f} ({n_bands} bands)"
