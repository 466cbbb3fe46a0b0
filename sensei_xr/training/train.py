"""Supervised training and evaluation on labelled samples (torch and NumPy only).

``train(config)`` runs the loop described by a plain dict (JSON-able), with checkpoints,
resume, a seed and per-epoch validation. Validation predicts through the inference engine
behind ``da.sensei.*`` (:func:`sensei_xr.evaluation.pooled_metrics`).
"""

from __future__ import annotations

import json
import math
import time
from os import PathLike
from pathlib import Path

import numpy as np

from ..bands import check_band_values
from ..datasets import IGNORE_INDEX, LabelledSample, load_biome_patches, load_dataset
from ..evaluation import pooled_metrics
from ..inference.runtime import resolve_device
from .batchnorm import calibrate_band_sets, recalibrate_batchnorm
from .checkpoints import WeightAverage, load_checkpoint, save_checkpoint
from .augmentation import Augmentation, BandLimitJitter
from .member import training_member
from .recipe import DEFAULT_CONFIG, check_same_recipe, training_recipe, validate_config
from .samplers import RandomPatchBatches
from .snow import training_tests

__all__ = ["finish_from_checkpoint", "train"]


def _load_data(spec, data_dir: Path, classes: tuple[str, ...]) -> tuple[list[list[LabelledSample]], list[float], list[str]]:
    """Samples of a config's ``train_data`` / ``val_data``.

    ``spec`` is a path to a Biome-patches ``.npz`` (relative to ``data_dir``), or one or a
    list of ``{dataset = NAME, root = PATH, split = S, weight = W, options = {...}}``
    tables naming datasets of :func:`sensei_xr.datasets.load_dataset` (root
    relative to ``data_dir``; options are the loader's keyword options).

    Returns
    -------
    sources, weights, descriptions
        One list of samples per source (a source has one band set), its sampling weight,
        and a line describing it for the model card.
    """
    specs = spec if isinstance(spec, list) else [spec]
    sources, weights, described = [], [], []
    for item in specs:
        if isinstance(item, str):
            samples = load_biome_patches(data_dir / item, classes)
            label, weight = item, 1.0
        elif isinstance(item, dict) and "dataset" in item:
            unknown = set(item) - {"dataset", "root", "split", "weight", "options"}
            if unknown:
                raise ValueError(f"data source {item}: unknown key(s) {sorted(unknown)}; "
                                 "use dataset, root, split, weight, options")
            root = item.get("root")
            samples = load_dataset(item["dataset"], None if root is None else data_dir / root,
                                   item.get("split"), classes, **item.get("options", {}))
            label = f"{item['dataset']}" + (f" ({item['split']})" if item.get("split") else "")
            weight = float(item.get("weight", 1.0))
        else:
            raise ValueError(f"a data source must be a .npz path or a table with 'dataset'; got {item!r}")
        if not samples:
            raise ValueError(f"data source {label} has no samples")
        for part, out in zip((sources, weights, described), _group_by_bands(samples, label, weight)):
            part += out
    return sources, weights, described


def _training_sources(cfg: dict, data_dir: Path, classes: tuple[str, ...],
                      samples: list[LabelledSample] | None = None):
    """Sources, weights and descriptions of ``train_data`` (or ``samples``) plus ``extra_train_data``."""
    if samples is None:
        sources, weights, described = _load_data(cfg["train_data"], data_dir, classes)
    else:
        sources, weights, described = _group_by_bands(samples, "given samples", 1.0)
    if cfg["extra_train_data"]:
        for part, more in zip((sources, weights, described), _load_data(cfg["extra_train_data"], data_dir, classes)):
            part += more
    # The engine refuses reflectance x 10000 or kelvin as Celsius; a model trained on them
    # would learn values it can never be given. (Here, once a run: about 0.1 s a patch.)
    for smp in (smp for src in sources for smp in src):
        check_band_values(smp.image, smp.descriptors, where=f"in training sample {smp.name!r}")
    if not cfg["thermal_bands"]:
        sources = [[smp.without_thermal() for smp in src] for src in sources]
    return sources, weights, described


def _group_by_bands(samples: list[LabelledSample], label: str, weight: float):
    """One source per band set (a batch needs one band count), weights by image count."""
    sources, weights, described = [], [], []
    by_bands: dict[tuple, list[LabelledSample]] = {}
    for smp in samples:
        by_bands.setdefault(smp.descriptors.key, []).append(smp)
    for group in by_bands.values():
        sources.append(group)
        weights.append(weight * len(group) / len(samples))
        sensors = sorted({g.sensor for g in group})
        size = "x".join(str(v) for v in group[0].image.shape[-2:])
        described.append(f"{label}: {len(group)} images of {', '.join(sensors)} "
                         f"(first {size} px at {group[0].resolution_m:g} m, {len(group[0].descriptors)} bands)")
    return sources, weights, described


def train(config: dict, data_dir: str | PathLike, out: str | PathLike, resume: bool = True,
          log=print, progress: bool = False, *, train_samples: list[LabelledSample] | None = None,
          val_samples: list[LabelledSample] | None = None) -> dict:
    """Train a model as ``config`` says; write checkpoints and the final weights + card.

    Parameters
    ----------
    config : dict
        See :data:`DEFAULT_CONFIG` (missing keys take its values).
    data_dir : path-like
        Folder the config's data paths are relative to.
    out : path-like
        Output stem: ``<out>.safetensors`` / ``<out>.json`` for the model, ``<out>.ckpt/``
        for checkpoints (safetensors too).
    resume : bool
        Continue from the latest checkpoint if there is one.
    log : callable
        Receives one line per epoch (loss, validation metrics, learning rate).
    progress : bool
        Show a tqdm progress bar over the steps.
    train_samples, val_samples : list of LabelledSample, optional
        Samples to train / validate on instead of the config's ``train_data`` /
        ``val_data`` (e.g. the folds of a cross-validation).

    Returns
    -------
    dict
        The model card written.
    """
    import torch

    cfg = {**DEFAULT_CONFIG, **config}
    validate_config(cfg)
    torch.manual_seed(cfg["seed"])
    device = resolve_device(cfg["device"])
    classes = tuple(cfg["model"]["classes"])
    data_dir = Path(data_dir)
    train_sources, train_weights, train_described = _training_sources(cfg, data_dir, classes, train_samples)
    if val_samples is None:
        val_sources, _, val_described = _load_data(cfg["val_data"], data_dir, classes)
        val_samples = [smp for src in val_sources for smp in src]
    else:
        val_described = [f"given samples: {', '.join(s.name for s in val_samples)}"]
    if not cfg["thermal_bands"]:
        val_samples = [smp.without_thermal() for smp in val_samples]
    model = _initial_model(cfg, classes, data_dir, device)
    _check_band_sets(cfg, train_sources, val_samples, model.encoder is not None)
    opt = _optimizer(cfg, model)
    out = Path(out)
    ckpt_dir = out.with_suffix(".ckpt")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    run = {"recipe": training_recipe(cfg), "data": train_described}
    average = _weight_average(cfg, model)
    start_step, history, schedule = _resume(ckpt_dir, model, opt, resume, log, run, average)
    next_batch = _batch_source(cfg, train_sources, train_weights, classes, start_step)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    t0 = time.time()
    model.train()
    running = []
    steps = range(start_step, cfg["steps"])
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, initial=start_step, total=cfg["steps"], desc="training", unit="step")
    for step in steps:
        if cfg["schedule"] == "cosine":
            for g in opt.param_groups:
                g["lr"] = cfg["lr_min"] + 0.5 * (cfg["lr"] - cfg["lr_min"]) * (1 + math.cos(math.pi * step / cfg["steps"]))
        loss = _train_step(model, opt, loss_fn, next_batch(step), device, cfg["band_vector_decorrelation"])
        if loss is not None:
            running.append(float(loss))
        if average is not None:
            average.update(model, step + 1)
        if (step + 1) % cfg["steps_per_epoch"] == 0 or step + 1 == cfg["steps"]:
            train_loss = float(np.mean(running)) if running else math.nan  # nan: no labelled pixel
            running = []
            val = pooled_metrics(model, val_samples, None, device=device)
            model.train()
            history.append({"step": step + 1, "train_loss": train_loss, "val": val,
                            "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0})
            log(f"step {step + 1}: loss {train_loss:.4f} val OA {val['overall_accuracy']:.4f} "
                f"F1 {val['f1']:.4f} lr {opt.param_groups[0]['lr']:.2e}")
            _plateau_step(cfg, opt, schedule, train_loss)
            save_checkpoint(ckpt_dir, model, opt, {
                "step": step + 1, "history": history, "lr": opt.param_groups[0]["lr"],
                "best": schedule["best"] if math.isfinite(schedule["best"]) else None,
                "bad_epochs": schedule["bad_epochs"], "run": run}, average)
    if average is not None:
        average.apply(model)
    return _finish(model, cfg, config, out, (train_sources, train_weights, train_described),
                   (val_samples, val_described),
                   history, device, time.time() - t0)


def _check_band_sets(cfg: dict, train_sources, val_samples, sensei: bool) -> None:
    """Raise now, not after training, if a calibration set no training source can form
    (its statistics would silently not exist) or a validation band set a validation
    sample lacks."""
    from ..errors import BandError
    from ..spectral.bandsets import resolve_bands

    def forms(descriptors, bands) -> bool:
        try:
            resolve_bands(descriptors, bands)
        except BandError:
            return False
        return True

    if sensei:
        for name in cfg["bn_calibration_sets"]:
            if not any(forms(src[0].descriptors, name) for src in train_sources):
                raise ValueError(f"bn_calibration_sets: no training source has the bands of {name!r} (sources: "
                                 f"{'; '.join(', '.join(src[0].descriptors.names) for src in train_sources)}): "
                                 "remove it, or add data that has them")
    for label, bands in cfg["val_band_sets"].items():
        lacking = sorted({s.name for s in val_samples if not forms(s.descriptors, bands)})
        if lacking:
            raise ValueError(f"val_band_sets {label!r} ({bands!r}): validation sample(s) {lacking[:3]} lack those "
                             "bands: remove the entry or change its bands")


def _weight_average(cfg: dict, model) -> WeightAverage | None:
    """The running mean of the weights ``weight_average_from`` asks for (None: off)."""
    share = cfg["weight_average_from"]
    if share is None:
        return None
    if not 0.0 <= float(share) < 1.0:
        raise ValueError(f"weight_average_from must be a share of the steps in [0, 1), not {share!r}")
    if not cfg["bn_recalibration_batches"]:
        raise ValueError("weight_average_from needs bn_recalibration_batches > 0: the averaged weights need "
                         "batch-norm statistics of their own")
    return WeightAverage(model, round(float(share) * cfg["steps"]))


def _train_step(model, opt, loss_fn, batch: dict, device: str, decorrelation: float = 0.0):
    """One optimiser step on a batch; returns the (detached) loss, or None for a batch with
    no labelled pixel (all fill or ignored), whose mean loss is 0 / 0: no step, and nothing
    for the epoch's mean loss, which the plateau schedule reads. ``decorrelation``: weight of
    the SEnSeI band-vector penalty added to the loss (see ``band_vector_decorrelation``)."""
    import torch

    if not bool((batch["labels"] != IGNORE_INDEX).any()):
        return None
    images = batch["images"].to(device).contiguous(memory_format=torch.channels_last)
    loss = loss_fn(model(images, batch["descriptors"].to(device)), batch["labels"].to(device))
    if decorrelation and model.encoder is not None:
        loss = loss + decorrelation * model.encoder.band_vector_spread(batch["descriptors"].to(device))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def _initial_model(cfg: dict, classes: tuple[str, ...], data_dir: Path, device: str):
    """A fresh model, or one started from ``init_model`` / ``init_encoder``, channels-last."""
    import torch

    from ..models import build_model

    model = build_model(cfg["model"]).to(device)
    if cfg.get("init_model"):
        # Fine-tuning: start from a whole trained model (same architecture and classes).
        from ..models import load_model

        start = load_model(cfg["init_model"])
        if tuple(start.classes) != classes:
            raise ValueError(f"init_model {cfg['init_model']!r} has classes {tuple(start.classes)}, "
                             f"the config asks for {classes}: use the same classes to fine-tune")
        model.load_state_dict({k: v for k, v in start.state_dict().items() if not k.startswith("pixel_member.")})
    elif cfg.get("init_encoder"):
        model.encoder.load_state_dict(_encoder_state(cfg["init_encoder"], data_dir))
    # Channels-last: oneDNN's convolutions (above all their backward pass) run about 1.4x
    # faster on a CPU in this layout (measured on the paper's DeepLabv3+, patch 128).
    return model.to(memory_format=torch.channels_last)


def _optimizer(cfg: dict, model):
    import torch

    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                               weight_decay=cfg["weight_decay"])
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    raise ValueError(f"optimizer must be one of {', '.join(map(repr, _OPTIMIZERS))}, not {cfg['optimizer']!r}")


def _resume(ckpt_dir: Path, model, opt, resume: bool, log, run: dict,
            average: WeightAverage | None) -> tuple[int, list, dict]:
    """(first step, history, plateau state) from the latest checkpoint, or a fresh start.

    ``run``: this run's recipe and training data; a checkpoint of another run is an error.
    """
    state_file = ckpt_dir / "state.json"
    if not (resume and state_file.exists()):
        return 0, [], {"best": math.inf, "bad_epochs": 0}
    _check_checkpoint_run(json.loads(state_file.read_text()), run, ckpt_dir, log)
    state = load_checkpoint(ckpt_dir, model, opt, average)
    log(f"resumed at step {state['step']}")
    # A cosine run never sets a best loss (saved as null).
    return state["step"], state["history"], {"best": math.inf if state.get("best") is None else state["best"],
                                             "bad_epochs": state.get("bad_epochs", 0)}


def _check_checkpoint_run(state: dict, run: dict, ckpt_dir: Path, log) -> None:
    """Raise if the checkpoint's run (recipe, training data) is not ``run``; a plateau run
    may have been given fewer steps (it can be extended; a cosine run's rate depends on its
    steps at every step, so it cannot)."""
    recorded = state.get("run")
    if recorded is None:
        log(f"using a checkpoint that records no recipe (written before checkpoints did): {ckpt_dir}")
        return
    extendable = ("steps",) if run["recipe"]["schedule"] == "plateau" else ()
    check_same_recipe(recorded["recipe"], run["recipe"], f"the checkpoint in {ckpt_dir}", ignore=extendable)
    if recorded["data"] != run["data"]:
        raise ValueError(f"the checkpoint in {ckpt_dir} was trained on other data ({recorded['data']}) than "
                         f"this run ({run['data']}): delete it, or train into another folder")


def _named_band_sets(options: dict) -> dict:
    """The sampler's keywords from the config's ``named_band_sets`` table."""
    unknown = set(options) - {"sets", "probability"}
    if unknown or "sets" not in options:
        raise ValueError(f"named_band_sets takes sets (a list of band set names) and probability (0..1); "
                         f"got keys {sorted(options)}")
    return {"named_band_sets": tuple(options["sets"]), "named_probability": float(options.get("probability", 0.5))}


def _band_limit_jitter(cfg: dict) -> BandLimitJitter | None:
    """The recipe's jitter of the band limits SEnSeI is told (its defaults where a key is left out)."""
    return None if cfg["band_limit_jitter"] is None else BandLimitJitter(**cfg["band_limit_jitter"])


def _batch_source(cfg: dict, sources, weights, classes: tuple[str, ...], start_step: int):
    """``step -> batch``: the sampler's batches, through DataLoader workers if asked."""
    extra = {}
    if cfg["synthetic_clouds"] is not None:
        from .synthetic import synthetic_clouds_for

        extra["synthetic"] = synthetic_clouds_for(cfg["synthetic_clouds"], classes)
    if cfg["named_band_sets"] is not None:
        extra.update(_named_band_sets(cfg["named_band_sets"]))
    if cfg["mosaic_probability"]:
        extra["mosaic_probability"] = float(cfg["mosaic_probability"])
    if (jitter := _band_limit_jitter(cfg)) is not None:
        extra["band_limit_jitter"] = jitter
    batches = RandomPatchBatches(sources if len(sources) > 1 else sources[0], cfg["patch_size"], cfg["batch_size"],
                                 cfg["steps"], cfg["min_bands"] if cfg["band_subsets"] else None, cfg["seed"],
                                 _augmentation(cfg["augmentation"]), weights=weights if len(sources) > 1 else None,
                                 **extra)
    if cfg["num_workers"] <= 0:
        return batches.__getitem__
    # Items are pure functions of (seed, step): workers give the same batches, in order.
    from torch.utils.data import Subset

    from .samplers import make_loader

    loader = iter(make_loader(Subset(batches, range(start_step, cfg["steps"])), cfg["num_workers"],
                              seed=cfg["seed"]))
    return lambda step: next(loader)


def _plateau_step(cfg: dict, opt, schedule: dict, train_loss: float) -> None:
    """The paper's schedule: lr / 4 when the epoch's training loss stalls (the validation
    set is kept for reporting, never for steering); nothing for a cosine run."""
    if cfg["schedule"] == "cosine" or not math.isfinite(train_loss):
        return
    if train_loss < schedule["best"] - 1e-4:
        schedule["best"], schedule["bad_epochs"] = train_loss, 0
        return
    schedule["bad_epochs"] += 1
    if schedule["bad_epochs"] >= cfg["plateau_patience"]:
        for g in opt.param_groups:
            g["lr"] = max(g["lr"] / 4, cfg["lr_min"])
        schedule["bad_epochs"] = 0


def _augmentation(options: dict) -> Augmentation:
    import dataclasses

    known = {f.name for f in dataclasses.fields(Augmentation)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"augmentation option(s) {unknown} unknown; known: {sorted(known)}")
    return Augmentation(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})


def _encoder_state(source: str, data_dir: Path) -> dict:
    """SEnSeI weights from a pre-trained encoder file (safetensors) or a registered model."""
    path = Path(source)
    if not path.is_absolute() and not path.exists():
        path = data_dir / path
    if path.suffix == ".safetensors" and path.exists():
        from safetensors.torch import load_file

        return load_file(path)
    from ..models import load_model

    return load_model(source).encoder.state_dict()


def _finish(model, cfg, config, out, train, val, history, device, seconds) -> dict:
    (train_sources, train_weights, train_described), (val_samples, val_described) = train, val
    if cfg["bn_recalibration_batches"]:
        # Over the training mixture, as the batches of training drew it.
        recalibrate_batchnorm(model, train_sources, cfg["bn_recalibration_batches"], patch_size=cfg["patch_size"],
                              batch_size=cfg["batch_size"],
                              min_bands=cfg["min_bands"] if cfg["band_subsets"] else None, device=device,
                              weights=train_weights)
    if cfg["bn_calibration_sets"] and model.encoder is not None:
        calibrate_band_sets(model, train_sources, cfg["bn_calibration_sets"], cfg["bn_recalibration_batches"] or 40,
                            cfg["patch_size"], cfg["batch_size"], device)
    for key, test in training_tests(cfg, train_sources, model.cloud_class_indices).items():
        setattr(model, key, test)
    model.pixel_member = training_member(cfg, train_sources, model.cloud_class_indices)
    from ..models import save_model

    model.eval()
    metrics = {name: pooled_metrics(model, val_samples, bands, device=device)
               for name, bands in cfg["val_band_sets"].items()}
    steps_done = history[-1]["step"] if history else 0
    card = {
        "name": config.get("name", Path(out).name),
        "training": {
            "data": "; ".join(train_described),
            "validation_data": "; ".join(val_described) + " (held out: never trained on)",
            "recipe": training_recipe(cfg),
            "steps_done": steps_done,
            "augmentation": "flips, 90-degree rotations, white noise, salt-and-pepper, per-band shifts, artificial saturation"
                            + (f"; random band subsets (>= {cfg['min_bands']} bands) per batch" if cfg["band_subsets"] else "")
                            + (f"; {cfg['named_band_sets'].get('probability', 0.5):.0%} of the batches one of the band sets "
                               f"{list(cfg['named_band_sets']['sets'])} instead" if cfg["named_band_sets"] is not None else "")
                            + (f"; {cfg['mosaic_probability']:.0%} of the patches mosaics of two or four pieces of "
                               "different windows" if cfg["mosaic_probability"] else "")
                            + ("; the band limits SEnSeI is told jittered per batch (centres by up to "
                               f"+-{jitter.centre_fraction:.0%}, half-widths by up to x{jitter.width_factor:g})"
                               if (jitter := _band_limit_jitter(cfg)) is not None else "")
                            + ("; synthetic clouds composited over the training patches (sensei_xr.training.synthetic)"
                               if cfg["synthetic_clouds"] is not None else "")
                            # A model on a named reflective band set never sees a thermal band to shift.
                            + (f"; a random thermal shift of up to +-{cfg['augmentation']['thermal_shift']} K per patch"
                               if cfg["augmentation"].get("thermal_shift") and not cfg["model"].get("band_set") else ""),
            "encoder_initialisation": cfg.get("init_encoder") or "random",
            "initial_model": cfg.get("init_model"),
            "device": device,
            "seconds": seconds,
            "history": history,
        },
        "validation_metrics": metrics,
    }
    save_model(model.cpu(), out, card=card)
    return card


def finish_from_checkpoint(config: dict, data_dir: str | PathLike, out: str | PathLike) -> dict:
    """Write the model and card from the latest checkpoint of an interrupted :func:`train`.

    The card records the steps actually done (``training.steps_done``).
    """
    import torch

    from ..models import build_model

    cfg = {**DEFAULT_CONFIG, **config}
    classes = tuple(cfg["model"]["classes"])
    data_dir = Path(data_dir)
    ckpt_dir = Path(out).with_suffix(".ckpt")
    model = build_model(cfg["model"])
    average = _weight_average(cfg, model)
    state = load_checkpoint(ckpt_dir, model, None, average)
    if average is not None:
        average.apply(model)
    train_sources, train_weights, train_described = _training_sources(cfg, data_dir, classes)
    _check_checkpoint_run(state, {"recipe": training_recipe(cfg), "data": train_described}, ckpt_dir, print)
    val_sources, _, val_described = _load_data(cfg["val_data"], data_dir, classes)
    train = (train_sources, train_weights, train_described)
    val_samples = [smp for src in val_sources for smp in src]
    val = (val_samples if cfg["thermal_bands"] else [smp.without_thermal() for smp in val_samples], val_described)
    seconds = state["history"][-1]["seconds"] if state["history"] else 0.0
    with torch.no_grad():
        return _finish(model, cfg, config, out, train, val, state["history"], "cpu", seconds)
