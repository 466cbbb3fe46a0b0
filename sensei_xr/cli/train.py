"""``sensei-xr train``: train a model from a config file, resuming from checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CliError
from .common import refuse_existing, say, show_progress


def add_parser(sub) -> None:
    """The ``train`` subcommand and its options."""
    t = sub.add_parser(
        "train", help="train a model from a config file",
        description="Train a model as a TOML or JSON config says (keys of "
                    "sensei_xr.training.recipe.DEFAULT_CONFIG; data paths relative to --data-dir). "
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
    t.set_defaults(func=run)


def model_stem(path: str) -> Path:
    """The output stem of a model: ``m``, ``m.safetensors`` and ``m.json`` all mean ``m``."""
    p = Path(path)
    for suffix in (".safetensors", ".json"):
        if p.name.endswith(suffix):
            return p.with_name(p.name[: -len(suffix)])
    return p


def run(args: argparse.Namespace) -> int:
    """Check config, data and outputs, then :func:`sensei_xr.training.train.train`."""
    from ..outputs import safe_stem
    from ..sample_data import data_dir
    from ..training.recipe import load_config
    from ..training.train import train

    config = load_config(args.config)
    if args.device:
        config = {**config, "device": args.device}
    data = Path(args.data_dir) if args.data_dir else data_dir()
    if not data.is_dir():
        raise CliError(f"--data-dir {data} is not a folder")
    out = model_stem(args.out) if args.out else Path(safe_stem(str(config.get("name") or Path(args.config).stem)))
    weights, card = out.with_name(out.name + ".safetensors"), out.with_name(out.name + ".json")
    refuse_existing([weights, card], args.overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    say(f"training from {args.config} on {data} -> {weights} (checkpoints in {out.with_suffix('.ckpt')})")
    result = train(config, data, out, resume=args.resume, log=say, progress=show_progress(None))
    val = result.get("validation_metrics", {})
    summary = ", ".join(f"{k} OA {v['overall_accuracy']:.3f} F1 {v['f1']:.3f}" for k, v in val.items())
    say(f"wrote {weights} and {card}" + (f"; held-out {summary}" if summary else ""))
    return 0
