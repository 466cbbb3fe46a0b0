"""``sensei-xr pretrain``: pre-train the SEnSeI encoder as a spectral autoencoder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import CliError
from .common import positive_int, refuse_existing, say


def add_parser(sub) -> None:
    """The ``pretrain`` subcommand and its options."""
    pt = sub.add_parser(
        "pretrain", help="pre-train the SEnSeI encoder as a spectral autoencoder",
        description="Self-supervised pre-training of SEnSeI on random band sets (paper section III-B): "
                    "random sensors (3-14 bands, 400 nm - 20 um) observing spectra of the EarthLib "
                    "library and generated snow, water and cloud; writes the encoder's weights for "
                    "init_encoder in a training config.")
    pt.add_argument("--out", required=True, help="encoder weights to write (.safetensors)")
    pt.add_argument("--config", help="TOML/JSON with keys of sensei_xr.training.pretrain.PRETRAIN_DEFAULTS")
    pt.add_argument("--library", help="earthlib_surfaces_10nm.npz (default: in the sample data)")
    pt.add_argument("--steps", type=positive_int, help="optimizer steps (overrides the config)")
    pt.add_argument("--device", help="auto, cpu or cuda")
    pt.add_argument("--seed", type=int, help="random seed")
    pt.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    pt.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check config, library and output, then
    :func:`sensei_xr.training.pretrain.pretrain_encoder`."""
    from ..sample_data import data_dir
    from ..training.pretrain import PRETRAIN_DEFAULTS, pretrain_encoder
    from ..training.recipe import read_config

    config = read_config(args.config, set(PRETRAIN_DEFAULTS), "pre-training") if args.config else {}
    for key in ("steps", "device", "seed"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    library = Path(args.library) if args.library else \
        data_dir() / "spectral_library_earthlib" / "earthlib_surfaces_10nm.npz"
    if not library.is_file():
        raise CliError(f"spectral library {library} not found: pass --library earthlib_surfaces_10nm.npz")
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CliError(f"--out {out} must end in .safetensors")
    refuse_existing([out], args.overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    say(f"pre-training SEnSeI on random band sets ({library.name}) -> {out}")
    pretrain_encoder(library, out, config, log=say)
    say(f"wrote {out}; use it as init_encoder = \"{out}\" in a training config")
    return 0
