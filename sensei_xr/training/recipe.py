"""Training recipes: the config a run of :func:`sensei_xr.training.train` reads, its
defaults, its checks, and the part of it a model's card records.

A config is a plain dict (from TOML or JSON); :data:`DEFAULT_CONFIG` fills what it leaves
out. A checkpoint or a finished model records its recipe, and is reused or resumed only by
a run of the same recipe (:func:`check_same_recipe`).
"""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path

from .augmentation import BandLimitJitter
from .member import check_member_option
from .snow import check_test_options

__all__ = [
    "DEFAULT_CONFIG",
    "check_same_recipe",
    "finished_model",
    "load_config",
    "read_config",
    "training_recipe",
    "validate_config",
]

#: The paper's recipe (SGD, momentum 0.99, lr 1e-3 / 4 on plateau down to 2e-5, patch 257 (256 here),
#: batch 8); ``optimizer="adamw"`` is the short-budget alternative used on CPU.
DEFAULT_CONFIG = {
    "model": {"encoder": "sensei", "head": "deeplabv3plus", "classes": ["clear", "cloud"]},
    "train_data": "l8_biome_patches/train.npz",
    "val_data": "l8_biome_patches/val.npz",
    # More sources mixed into training beside train_data (or the samples given to train()),
    # as dataset tables with weights: e.g. [{dataset = "library_scenes", weight = 0.5}].
    "extra_train_data": [],
    "patch_size": 256,  # the paper's 257 needs larger images than the 256 px Biome patches
    "batch_size": 8,
    "steps": 20000,
    "steps_per_epoch": 500,
    "optimizer": "sgd",
    "lr": 1e-3,
    "momentum": 0.99,
    "weight_decay": 0.0,
    "lr_min": 2e-5,
    "plateau_patience": 2,
    # "plateau": divide lr by 4 when the epoch's training loss stalls (the paper);
    # "cosine": cosine decay from lr to lr_min over `steps` (a fixed budget, for short runs).
    "schedule": "plateau",
    # Synthetic clouds composited over the training patches (None: off); keyword
    # arguments of sensei_xr.training.synthetic.SyntheticClouds.
    "synthetic_clouds": None,
    # Keyword arguments of sensei_xr.training.augmentation.Augmentation ({}: its defaults).
    "augmentation": {},
    "min_bands": 3,
    # False: every batch has all of its source's bands (the paper's fixed-band baseline).
    "band_subsets": True,
    # Band sets users mask with, trained on purpose: {sets = ["RGBNIR", ...], probability = p}
    # gives that share of the batches one of those sets instead of a random subset (None: off).
    "named_band_sets": None,
    # Share of the training patches made as mosaics of two or four pieces of different
    # windows (RandomPatchBatches' mosaic_probability; 0: none, the paper's recipe).
    "mosaic_probability": 0.0,
    # New wavelength limits for each batch's reflective bands in the descriptors SEnSeI is
    # told (keyword arguments of sensei_xr.training.augmentation.BandLimitJitter, e.g.
    # {centre_fraction = 0.03, width_factor = 2.0}; None: off, every batch told its sensor's).
    "band_limit_jitter": None,
    # The final weights: None, the last step's; a share f in [0, 1), the mean of the weights
    # after every step past f x steps (stochastic weight averaging; batch-norm statistics are
    # then measured again, so bn_recalibration_batches must be > 0).
    "weight_average_from": None,
    "seed": 0,
    "device": "auto",
    "num_workers": 0,
    # After training, re-estimate batch-norm statistics as an average over this many batches
    # of training patches with random band subsets (0: keep the running averages).
    "bn_recalibration_batches": 40,
    # SEnSeI models: band sets (Table III names) whose own batch-norm statistics are measured
    # on the training patches of that band set after training and kept in the model
    # (CloudModel.set_bn_calibration); inference on a matching band set uses them.
    "bn_calibration_sets": [],
    # After training, give the model a snow test (sensei_xr.spectral.snow) whose 1.6 um
    # ceiling is chosen on the labelled training images with a green and a 1.6 um band
    # (sensei_xr.training.snow); the engine caps the cloud probability of snow and ice.
    "snow_test": False,
    # The same for scenes without a 1.6 um band: a test on green, red and NIR whose two
    # thresholds are chosen on the labelled training images with those bands.
    "nir_snow_test": False,
    # After training, give the model the warm-surface test (sensei_xr.spectral.warm: no
    # cloud warmer than 27 C at 11 um, Fmask's threshold; nothing chosen on labels).
    "warm_test": False,
    # After training, a per-pixel member (true, or options: sensei_xr.training.member).
    "pixel_member": False,
    # name -> bands: None (all), "no_thermal", a Table III set ("RGB", "RGBNIR", ...) or names.
    "val_band_sets": {"all": None, "rgb_nir": "RGBNIR", "rgb": "RGB", "no_thermal": "no_thermal"},
    # False: thermal bands are taken out of every training and validation image, so the
    # model never sees one (batch-norm calibrations are then measured without them too, and
    # the engine picks a calibrated set of reflective bands from a scene that has them).
    "thermal_bands": True,
    # SEnSeI models: weight of a penalty on how far the bands' vectors are from orthogonal
    # and of one length (SEnSeI.band_vector_spread; 0: none): trained without, the encoder's
    # map of six bands is close to rank 2 (docs/model_findings.md).
    "band_vector_decorrelation": 0.0,
}


# What a model's card records of the recipe that trained it.
_RECIPE_KEYS = ("patch_size", "batch_size", "steps", "optimizer", "lr", "momentum", "weight_decay", "lr_min",
                "schedule", "min_bands", "band_subsets", "named_band_sets", "mosaic_probability", "band_limit_jitter", "seed",
                "weight_average_from", "bn_recalibration_batches", "bn_calibration_sets", "extra_train_data",
                "synthetic_clouds", "augmentation", "model", "snow_test", "nir_snow_test", "warm_test", "thermal_bands",
                "band_vector_decorrelation", "pixel_member")
# Measured after training, and again for a kept model (crossval): not part of what must match.
_AFTER_TRAINING = ("bn_recalibration_batches", "bn_calibration_sets", "snow_test", "nir_snow_test", "warm_test",
                   "pixel_member")
# Recorded since 2026-12-03: a card or checkpoint written before says nothing about them.
_RECORDED_LATER = ("model",)


def training_recipe(config: dict) -> dict:
    """The recipe a run of ``config`` records on its card (defaults filled in, as JSON has it)."""
    cfg = {**DEFAULT_CONFIG, **config}
    return json.loads(json.dumps({k: cfg[k] for k in _RECIPE_KEYS}))


def check_same_recipe(recorded: dict | None, config: dict, what: str | PathLike, ignore: tuple[str, ...] = ()) -> None:
    """Raise if a checkpoint or finished model (``what``) was trained by another recipe than
    ``config``'s: resuming or reusing it would silently mix two runs.

    ``recorded`` is the recipe it records (a card's ``training.recipe``); a key it lacks
    (written before the key existed) counts as that key's default. ``ignore``: keys that may
    differ (a resumed run may be given more steps).
    """
    if recorded is None:
        raise ValueError(f"{what} records no training recipe, so it cannot be checked against this run's: "
                         "delete it, or train into another folder")
    expected = training_recipe(config)
    default = training_recipe({})
    differ = {k: (recorded.get(k, default[k]), v) for k, v in expected.items()
              if k not in _AFTER_TRAINING + ignore and not (k in _RECORDED_LATER and k not in recorded)
              and recorded.get(k, default[k]) != v}
    if differ:
        raise ValueError(f"{what} was trained by another recipe than this run's ("
                         + "; ".join(f"{k}: {a!r} there, {b!r} here" for k, (a, b) in differ.items())
                         + "): delete it, or train into another folder")


def finished_model(stem: str | PathLike, config: dict) -> bool:
    """Whether ``<stem>.safetensors`` is a finished run of ``config`` (its card, written last,
    is there), to be reused instead of training again; raises if another recipe made it."""
    card_file = Path(stem).with_suffix(".json")
    if not (card_file.is_file() and card_file.with_suffix(".safetensors").is_file()):
        return False
    card = json.loads(card_file.read_text())
    check_same_recipe((card.get("training") or {}).get("recipe"), config, card_file.with_suffix(".safetensors"))
    return True


def read_config(path: str | PathLike, known: set[str], what: str = "training") -> dict:
    """Read a TOML or JSON config; keys outside ``known`` are an error (a typo would
    otherwise silently run with a default)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} config {path} not found")
    text = path.read_text()
    if path.suffix == ".json":
        config = json.loads(text)
    else:
        import tomllib

        try:
            config = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path} is not valid TOML: {e}") from None
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"{path}: unknown {what} option(s) {unknown}; known: {sorted(known)}")
    return config


def load_config(path: str | PathLike) -> dict:
    """Read a training config (TOML or JSON) into a dict for :func:`train`.

    Unknown keys are an error (a typo would otherwise silently train with a default). A
    network system of ``configs/systems/`` is a training config too (its ``system`` is a
    label); one with ``kind``, ``fixed_bands`` or ``members`` is for the cross-validation only.
    """
    config = read_config(path, set(DEFAULT_CONFIG) | {"name", "init_encoder", "init_model", "system", "kind",
                                                      "fixed_bands", "gbm", "peers", "members"})
    extra = sorted(k for k in ("fixed_bands", "gbm", "peers", "members") if k in config)
    if extra or config.get("kind", "network") != "network":
        raise ValueError(f"{path} is a cross-validation system ({', '.join(extra) or config['kind']}), not a "
                         "training config: run it with python -m sensei_xr.training.crossval, or train one "
                         "of its models from a config without those keys")
    config.pop("kind", None)
    config = {k: v for k, v in config.items() if k != "system"}
    try:
        validate_config(config)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return config


_OPTIMIZERS = ("sgd", "adamw")
_SCHEDULES = ("plateau", "cosine")


def validate_config(config: dict) -> None:
    """Raise on a value a run would misread, or only trip over after all its steps.

    Checks the optimizer and schedule names, that steps, steps per epoch, batch and patch
    size are positive whole numbers, that ``0 <= lr_min <= lr`` (above ``lr``, the schedule
    would raise the rate), and that every name in ``bn_calibration_sets`` and
    ``val_band_sets`` is a band set (resolved after training, so a typo there would cost
    the whole run).
    """
    from ..spectral.bandsets import canonical_set_name

    cfg = {**DEFAULT_CONFIG, **config}
    if cfg["optimizer"] not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(map(repr, _OPTIMIZERS))} (lower case), "
                         f"not {cfg['optimizer']!r}")
    if cfg["schedule"] not in _SCHEDULES:
        raise ValueError(f"schedule must be 'plateau' or 'cosine', not {cfg['schedule']!r}")
    for key in ("steps", "steps_per_epoch", "batch_size", "patch_size"):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a whole number >= 1, not {value!r}")
    lr, lr_min = cfg["lr"], cfg["lr_min"]
    if not 0 <= lr_min <= lr:
        raise ValueError(f"need 0 <= lr_min <= lr, got lr {lr!r} and lr_min {lr_min!r}: with lr_min above lr the "
                         "schedule would raise the rate; set lr_min below lr (e.g. lr / 50)")
    for name in cfg["bn_calibration_sets"]:
        try:
            canonical_set_name(name)
        except ValueError as e:
            raise ValueError(f"bn_calibration_sets: {e}") from None
    if not isinstance(cfg["thermal_bands"], bool):
        raise ValueError(f"thermal_bands must be true or false, not {cfg['thermal_bands']!r}")
    jitter = cfg["band_limit_jitter"]
    if jitter is not None:
        known = {"centre_fraction", "width_factor"}
        if not isinstance(jitter, dict) or set(jitter) - known:
            raise ValueError(f"band_limit_jitter takes {sorted(known)} (e.g. {{centre_fraction = 0.03, "
                             f"width_factor = 2.0}}), or is left out; got {jitter!r}")
        BandLimitJitter(**jitter)  # its own range checks
        if (cfg["model"] or {}).get("encoder", "sensei") is None:
            raise ValueError("band_limit_jitter changes the band descriptors SEnSeI is told, and this model "
                             "has no SEnSeI encoder (fixed bands): leave band_limit_jitter out")
    check_member_option(cfg)
    check_test_options(cfg)
    for label, bands in cfg["val_band_sets"].items():
        if isinstance(bands, str) and bands.lower() != "no_thermal":
            try:
                canonical_set_name(bands)
            except ValueError as e:
                raise ValueError(f"val_band_sets {label!r}: {e}, or 'no_thermal', or a list of band "
                                 "names") from None
