"""Scene-disjoint k-fold cross-validation of a training recipe, or of the per-pixel yardstick.

Models are chosen on this, never on one small split: every labelled sample is held out
once, by a model that never saw its scene, and a recipe is run with several seeds.

    python -m sensei_xr.training.crossval configs/systems/sensei_dlv3.toml --seeds 0,1,2 \\
        --out results/crossval/sensei_dlv3.json

A *system* is a training config (see :data:`~sensei_xr.training.recipe.DEFAULT_CONFIG`) plus:

* ``system``: its name in reports;
* ``kind``: ``"network"`` (default), ``"pixel_gbm"`` (the LightGBM yardstick of
  :mod:`sensei_xr.evaluation.baseline`) or ``"peer"`` (a published method of
  :mod:`sensei_xr.evaluation.peers`, trained elsewhere: scored on each fold's held-out
  patches, so it sits in the same table on the same pixels);
* ``peers``: for ``kind = "peer"``, band set -> peer name (e.g. ``RGBNIR = "ukis-csmask-4b"``);
* ``fixed_bands``: for networks without SEnSeI and for the yardstick, the band sets (names
  of :data:`~sensei_xr.evaluation.BAND_SETS`) to train one model each for; a SEnSeI network
  is trained once per fold and seed and scored on every set of ``band_sets``;
* ``members``: for ``kind = "ensemble"``, the system configs (paths relative to the
  ensemble's config) of SEnSeI networks whose mean probability is scored: each member's
  fold model is trained (or kept, in ``<models_dir>/fold<k>_seed<s>/member<i>/``) exactly
  as for the member's own cross-validation, and the
  :class:`~sensei_xr.models.CloudEnsemble` of them is scored. A run with seed ``s`` trains
  each member with seed ``s``, and a config named again with ``s + 1``, ``s + 2``, ... (so
  ``members = ["a.toml", "a.toml"]`` is an ensemble of two seeds of one recipe, whose
  fold models are those of that recipe's own runs with seeds ``s`` and ``s + 1``). Read
  ensembles with :func:`read_system`, which adds the members' configs as ``member_systems``.

Every score is predicted through the inference engine behind ``da.sensei.*``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..evaluation import (
    Confusion,
    ImageScore,
    bootstrap_ci,
    json_ready,
    pooled_confusion,
    resolve_bands,
    score_images,
    score_model,
)
from ..evaluation.folds import split_folds, stratified_scene_folds
from ..datasets import LabelledSample, load_dataset

__all__ = ["CV_BAND_SETS", "biome_cv_samples", "system_classes", "select_bands", "give_missing_calibrations", "read_system", "member_seeds", "cross_validate", "summarise_cv",
           "cv_table_markdown", "main"]

#: The band sets a cross-validation reports by default: Table III's ALL, RGB+NIR, RGB and
#: NoRGB, and the six reflective bands Landsat and Sentinel-2 share.
CV_BAND_SETS = ("ALL", "RGBNIRSWIR", "RGBNIR", "RGB", "NoRGB")
_SYSTEM_KEYS = {"system", "kind", "fixed_bands", "gbm", "peers", "members", "member_systems"}
# Band sets that name a fixed list of spectral regions (a fixed-band model can keep them).
_BY_WAVELENGTH = ("RGB", "RGBNIR", "AeroRGBNIR", "RGBNIRSWIR")


def biome_cv_samples(root: str | os.PathLike | None = None,
                     classes: Sequence[str] = ("clear", "cloud")) -> list[LabelledSample]:
    """The 24 Biome patches, published validation split first (so fold 0 is that split),
    labelled in ``classes`` (e.g. ``("clear", "thin_cloud", "thick_cloud")`` keeps the
    labellers' thin and thick cloud apart)."""
    classes = tuple(classes)
    return load_dataset("biome_patches", root, "val", classes) + load_dataset("biome_patches", root, "train", classes)


def system_classes(system: dict) -> tuple[str, ...]:
    """The classes a system's patches are labelled in: its model's (default clear / cloud)."""
    return tuple((system.get("model") or {}).get("classes", ("clear", "cloud")))


def select_bands(sample: LabelledSample, bands) -> LabelledSample:
    """The sample with only the bands of a band choice (see ``resolve_bands``), in that
    order; a band set of fixed regions (e.g. ``RGBNIRSWIR``) in the order of its regions,
    as the engine gives them to a fixed-band model."""
    names = resolve_bands(sample.descriptors, bands)
    if isinstance(bands, str) and bands in _BY_WAVELENGTH:
        from ..spectral.bandsets import BAND_SETS, region_band

        names = [region_band(sample.descriptors, r) for r in BAND_SETS[bands]]
    idx = [sample.descriptors.names.index(n) for n in names]
    return replace(sample, image=sample.image[idx], descriptors=sample.descriptors.select(names))


def read_system(path: str | os.PathLike) -> dict:
    """A system config (TOML or JSON); an ensemble's member configs are read too, into
    ``member_systems`` (each a network system with no fixed band sets)."""
    from .recipe import DEFAULT_CONFIG, read_config

    known = set(DEFAULT_CONFIG) | (_SYSTEM_KEYS - {"member_systems"}) | {"name", "init_encoder", "init_model"}
    system = read_config(path, known, "system")
    if system.get("kind") == "ensemble":
        members = system.get("members")
        if not isinstance(members, list) or len(members) < 2:
            raise ValueError(f"{path}: an ensemble names at least two member configs in members = [...]")
        subs = []
        for member in members:
            sub = read_system(Path(path).parent / member)
            if sub.get("kind", "network") != "network" or sub.get("fixed_bands") \
                    or (sub.get("model") or {}).get("encoder", "sensei") is None:
                raise ValueError(f"{path}: member {member} is not a SEnSeI network system; an ensemble "
                                 "averages SEnSeI networks")
            subs.append(sub)
        system["member_systems"] = subs
    elif "members" in system:
        raise ValueError(f"{path}: members is for kind = \"ensemble\"")
    return system


def _fold_model(config: dict, train_s, held, seed: int, data_dir, log, folder: str | os.PathLike):
    """A SEnSeI network trained on a fold (or kept from an earlier run) with the
    calibrations its config asks for."""
    from .recipe import finished_model
    from .train import train

    cfg = {**config, "seed": seed}
    stem = Path(folder) / "model"
    if not finished_model(stem, cfg):
        train(cfg, data_dir, stem, resume=True, log=lambda m: log(f"  {m}"), train_samples=train_s, val_samples=held)
    model = _load_trained(stem)
    _calibrate_kept(model, cfg, train_s, stem, log)
    _tests_kept(model, cfg, train_s, stem, log)
    return model


def member_seeds(members: Sequence[str], seed: int) -> list[int]:
    """Each ensemble member's training seed in a run with ``seed``: the run's seed, plus
    one for every earlier member with the same config (two seeds of one recipe differ)."""
    return [seed + list(members[:i]).count(m) for i, m in enumerate(members)]


def _ensemble_scores(system: dict, train_s, held, band_sets, seed: int, data_dir, log,
                     keep: Path | None = None, engine: dict | None = None) -> tuple[dict, float]:
    from ..models import CloudEnsemble
    from .recipe import finished_model

    members = system.get("member_systems")
    if not members:
        raise ValueError("an ensemble system needs member_systems: read it with read_system()")
    seeds = member_seeds(system["members"], seed)

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) if keep is None else keep
        models, kept_seconds = [], 0.0
        for i, member in enumerate(members):
            log(f"  member {i}: {member.get('system', '')}, seed {seeds[i]}")
            config = {key: v for key, v in member.items() if key not in _SYSTEM_KEYS}
            kept = finished_model(folder / f"member{i}" / "model", {**config, "seed": seeds[i]})
            models.append(_fold_model(config, train_s, held, seeds[i], data_dir, log, folder / f"member{i}"))
            if kept:  # a run's seconds include its members' training, wherever it ran
                kept_seconds += float((models[-1].card.get("training") or {}).get("seconds") or 0.0)
        ensemble = CloudEnsemble(models).eval()
        # The tests are the ensemble's (applied to the mean probability); members chosen on
        # the same training patches by the same rule agree, and mixed ones have no one answer.
        for attr, key in (("snow_test", "snow_test"), ("nir_snow_test", "nir_snow_test")):
            tests = {getattr(m, attr) for m in models}
            if len(tests) > 1:
                raise ValueError(f"the ensemble's members disagree on {key} ({sorted(map(str, tests))}): give "
                                 f"every member config the same {key} setting")
            setattr(ensemble, attr, tests.pop())
        scores = {}
        for name in list(band_sets) + [b for b in ensemble.bn_calibration_names if b not in band_sets]:
            scores[name] = score_model(ensemble, held, name, **(engine or {}))
            log(f"  {name}: OA {pooled_confusion(scores[name]).metrics()['overall_accuracy']:.4f}")
    return scores, time.time() - t0 + kept_seconds


def _network_scores(config: dict, fixed, train_s, held, band_sets, seed: int, data_dir,
                    log, keep: Path | None = None, engine: dict | None = None) -> tuple[dict, float]:
    from .recipe import finished_model
    from .train import train

    cfg = {**config, "seed": seed}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        if keep is not None:  # the fold's models are kept there (e.g. to look at them later)
            keep.mkdir(parents=True, exist_ok=True)
            tmp = str(keep)
        model_scores = {}
        if fixed:
            # One model per band set, trained on exactly those bands.
            for name in fixed:
                tr = [select_bands(s, name) for s in train_s]
                ho = [select_bands(s, name) for s in held]
                n = len(tr[0].descriptors)
                model_cfg = {**cfg["model"], "encoder": None, "in_bands": n}
                if name in _BY_WAVELENGTH:  # the engine then picks these bands from any sensor
                    model_cfg["band_set"] = name
                run_cfg = {**cfg, "band_subsets": False, "val_band_sets": {name: None}, "model": model_cfg}
                if not finished_model(Path(tmp) / name, run_cfg):
                    train(run_cfg, data_dir, Path(tmp) / name, resume=True, log=lambda m: None,
                          train_samples=tr, val_samples=ho)
                model = _load_trained(Path(tmp) / name)
                model_scores[name] = score_model(model, ho, None, **(engine or {}))
                log(f"  {name}: OA {pooled_confusion(model_scores[name]).metrics()['overall_accuracy']:.4f}")
        else:
            model = _fold_model(config, train_s, held, seed, data_dir, log, tmp)
            # Every calibrated band set is scored, not only the table's.
            extra = [b for b in cfg.get("bn_calibration_sets", []) if b not in band_sets]
            for name in list(band_sets) + extra:
                model_scores[name] = score_model(model, held, name, **(engine or {}))
                log(f"  {name}: OA {pooled_confusion(model_scores[name]).metrics()['overall_accuracy']:.4f}")
    return model_scores, time.time() - t0


def _tests_kept(model, cfg: dict, train_s, stem: Path, log) -> None:
    """Give a kept model the pixel tests and the per-pixel member its config asks for and
    it lacks, chosen or trained on the fold's training patches as training does (saved
    back with the model); one the config does not ask for is taken away for scoring, so a
    recipe and the same recipe with a test or a member are scored on the same kept models."""
    from ..models import save_model
    from .member import give_missing_member, wants_member
    from .snow import TEST_KEYS, give_missing_tests

    for key in TEST_KEYS:
        if not cfg.get(key):
            setattr(model, key, None)
    # Chosen again (label-only, seconds): a kept network is scored with the tests its
    # config's rule chooses, whichever recipe it was kept by.
    given = give_missing_tests(model, cfg, [list(train_s)], again=True)
    for key, test in given.items():
        log(f"  gave the kept model its {key.replace('_', ' ')} (thresholds to choose: on its training patches): {test}")
    member = give_missing_member(model, cfg, [list(train_s)])
    if member is not None:
        log(f"  gave the kept model its pixel member, trained on its training patches: {member.config}")
    if given or member is not None:
        save_model(model, stem, card=model.card)
    if not wants_member(cfg):  # for scoring only: the kept file keeps a member it has
        model.pixel_member = None


def give_missing_calibrations(model, cfg: dict, sources: list[list[LabelledSample]]) -> list[str]:
    """Measure the band-set calibrations ``cfg`` asks for (``bn_calibration_sets``) and
    ``model`` lacks, with the function and settings training uses (a finished or kept run
    of a recipe that gained a band set later: calibrations are measured after training, so
    the weights need no new training). Each set's batches are seeded on their own, so a set
    measured later equals one measured with the others. Returns the band sets measured.
    """
    from .batchnorm import calibrate_band_sets
    from .recipe import DEFAULT_CONFIG

    missing = [b for b in cfg.get("bn_calibration_sets") or [] if b not in model.bn_calibrations]
    if not missing or model.encoder is None:
        return []
    get = lambda key: cfg.get(key, DEFAULT_CONFIG[key])  # noqa: E731
    return calibrate_band_sets(model, sources, missing, get("bn_recalibration_batches") or 40,
                               get("patch_size"), get("batch_size"))


def _calibrate_kept(model, cfg: dict, train_s, stem: Path, log) -> None:
    """The calibrations a kept fold model lacks, measured on the fold's training patches and
    saved back with the model."""
    from ..models import save_model

    done = give_missing_calibrations(model, cfg, [list(train_s)])
    if done:
        log(f"  measured the batch-norm calibrations of {done} for the kept model")
        save_model(model, stem, card={**model.card, "calibrated_after_training": done})


def _load_trained(stem: Path):
    from ..models import load_model

    return load_model(stem.with_suffix(".safetensors"))


def _peer_scores(peers: dict, held, cloud: list[int], log) -> tuple[dict, float]:
    from ..evaluation.peers import get_peer

    if not peers:
        raise ValueError("a peer system needs peers: a table of band set -> peer name, e.g. "
                         "peers = { RGBNIR = \"ukis-csmask-4b\" }")
    t0 = time.time()
    out = {}
    for name, peer_name in peers.items():
        peer = get_peer(peer_name)
        why = peer.unavailable()
        if why:
            raise RuntimeError(f"peer {peer_name} cannot run: {why}")
        ho = [select_bands(s, name) for s in held]
        out[name] = score_images(ho, lambda s: peer.cloud_mask(s.image, s.descriptors), cloud)
        log(f"  {name} ({peer_name}): OA {pooled_confusion(out[name]).metrics()['overall_accuracy']:.4f}")
    return out, time.time() - t0


def _gbm_scores(options: dict, fixed, train_s, held, seed: int, cloud: list[int], log) -> tuple[dict, float]:
    from ..evaluation.baseline import PixelGBM

    t0 = time.time()
    out = {}
    for name in fixed or CV_BAND_SETS:
        gbm = PixelGBM(name, seed=seed, **options).fit(train_s, cloud)
        out[name] = score_images(held, lambda s: gbm.predict_probability(s) >= 0.5, cloud)
        log(f"  {name}: OA {pooled_confusion(out[name]).metrics()['overall_accuracy']:.4f}")
    return out, time.time() - t0


def cross_validate(system: dict, samples: Sequence[LabelledSample], k: int = 3, seeds: Sequence[int] = (0,),
                   band_sets: Sequence[str] = CV_BAND_SETS, data_dir: str | os.PathLike | None = None,
                   log: Callable[[str], None] = print, checkpoint: str | os.PathLike | None = None,
                   models_dir: str | os.PathLike | None = None, only_fold: int | None = None,
                   refine: bool = True, edges: str = "ring") -> dict:
    """Train and score a system on every fold of a scene-disjoint, stratified k-fold split.

    Parameters
    ----------
    system : dict
        A training config with ``system``, ``kind`` and ``fixed_bands`` (see the module
        docstring).
    samples : sequence of LabelledSample
        Folds are made by :func:`~sensei_xr.evaluation.folds.stratified_scene_folds`.
        Labelled in the system's ``model.classes`` (:func:`biome_cv_samples` takes them).
    k : int
        Folds.
    seeds : sequence of int
        One run per fold and seed.
    band_sets : sequence of str
        Band sets a SEnSeI network is scored on.
    data_dir : path-like, optional
        Folder the config's extra data paths are relative to (default: the sample data).
    log : callable
    checkpoint : path-like, optional
        A JSON file written after every run and read at the start: an interrupted
        cross-validation continues where it stopped.
    models_dir : path-like, optional
        Keep each run's model there (``fold<k>_seed<s>/``); by default they are deleted.
        A model already kept there is scored again, not retrained (batch-norm
        calibrations the config asks for and it lacks are measured first and saved with it).
    only_fold : int, optional
        Run this fold only (folds can run in parallel processes and be joined later).
    refine : bool
        The engine's ``refine`` (edge refinement of the networks' cloud probability by the
        bands); recorded in the result's ``engine``.
    edges : str
        The engine's patch grid at the scene edges (``"ring"`` or ``"flush"``); recorded in
        ``engine`` when not the default ring.

    Returns
    -------
    dict
        JSON-able: ``system``, ``config``, ``engine`` (the engine options the networks
        were scored with), ``folds`` (held-out sample names per fold),
        ``runs`` (fold, seed, seconds, and per band set the per-image confusion counts),
        and ``summary`` (see :func:`summarise_cv`).
    """
    from ..models.cloud_model import cloud_class_indices
    from ..sample_data import data_dir as default_data_dir

    samples = list(samples)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    folds = stratified_scene_folds(samples, k)
    kind = system.get("kind", "network")
    fixed = system.get("fixed_bands")
    config = {key: v for key, v in system.items() if key not in _SYSTEM_KEYS | {"gbm"}}
    # Results written before edges= existed were scored with the ring: it is only recorded
    # when it is not the ring, so both compare equal.
    engine = {"refine": bool(refine), **({"edges": edges} if edges != "ring" else {})}
    # Pixels of any cloud class are cloud for the peers and the per-pixel baseline too.
    cloud = list(cloud_class_indices(system_classes(system)))
    runs = []
    if checkpoint is not None and Path(checkpoint).exists():
        saved = json.loads(Path(checkpoint).read_text())
        if saved.get("runs") and engine_options(saved) != engine:
            raise ValueError(f"{checkpoint} holds runs scored with engine options {engine_options(saved)}, "
                             f"not {engine}: write to another --out, or score with the same options")
        runs = saved.get("runs", [])
    done = {(r["fold"], r["seed"]) for r in runs}
    for seed in seeds:
        for fold in range(k):
            if (fold, seed) in done or (only_fold is not None and fold != only_fold):
                continue
            train_s, held = split_folds(samples, folds, fold)
            log(f"{system.get('system', 'system')}: fold {fold}, seed {seed}")
            if kind == "pixel_gbm":
                scores, seconds = _gbm_scores(system.get("gbm", {}), fixed, train_s, held, seed, cloud, log)
            elif kind == "peer":
                scores, seconds = _peer_scores(system.get("peers") or {}, held, cloud, log)
            elif kind in ("network", "ensemble"):
                keep = Path(models_dir) / f"fold{fold}_seed{seed}" if models_dir is not None else None
                if kind == "network":
                    scores, seconds = _network_scores(config, fixed, train_s, held, band_sets, seed, data_dir,
                                                      log, keep, engine)
                else:
                    scores, seconds = _ensemble_scores(system, train_s, held, band_sets, seed, data_dir, log, keep,
                                                       engine)
            else:
                raise ValueError(f"system kind must be 'network', 'ensemble', 'pixel_gbm' or 'peer', not {kind!r}")
            runs.append({"fold": fold, "seed": seed, "seconds": seconds,
                         "band_sets": {name: [{"name": s.name, "tags": dict(s.tags), **s.confusion.as_dict()}
                                              for s in sc] for name, sc in scores.items()}})
            if checkpoint is not None:
                _write_json(Path(checkpoint), {"system": system.get("system"), "engine": engine, "runs": runs})
    result = {"system": system.get("system"), "kind": kind, "config": system, "engine": engine, "k": k,
              "seeds": list(seeds), "folds": [[samples[i].name for i in f] for f in folds], "runs": runs}
    result["summary"] = summarise_cv(result)
    return result


def summarise_cv(result: dict, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Per band set: per-fold OA (mean over seeds), the CV mean OA and the pooled metrics.

    ``cv_mean_oa`` is the mean over folds of each fold's pooled OA, averaged over seeds
    (the selection criterion); ``seed_spread`` the range of that mean over seeds;
    ``pooled`` the metrics of every held-out pixel of every seed together, with 95 %
    bootstrap intervals over images (an image's counts summed over seeds).
    """
    out = {}
    names = sorted({n for r in result["runs"] for n in r["band_sets"]}, key=lambda n: (n not in CV_BAND_SETS,
                   CV_BAND_SETS.index(n) if n in CV_BAND_SETS else 0, n))
    for name in names:
        per_seed: dict[int, dict[int, float]] = {}
        per_image: dict[str, Confusion] = {}
        tags: dict[str, dict] = {}
        for r in result["runs"]:
            rows = r["band_sets"].get(name)
            if rows is None:
                continue
            conf = [Confusion(x["tp"], x["fp"], x["tn"], x["fn"]) for x in rows]
            per_seed.setdefault(r["seed"], {})[r["fold"]] = pooled_confusion(
                [ImageScore(x["name"], c) for x, c in zip(rows, conf)]).metrics()["overall_accuracy"]
            for x, c in zip(rows, conf):
                per_image[x["name"]] = per_image.get(x["name"], Confusion()) + c
                tags[x["name"]] = x.get("tags", {})
        folds = sorted({f for d in per_seed.values() for f in d})
        fold_oa = [float(np.mean([d[f] for d in per_seed.values() if f in d])) for f in folds]
        seed_means = [float(np.mean(list(d.values()))) for d in per_seed.values()]
        scores = [ImageScore(n, c, tags[n]) for n, c in per_image.items()]
        pooled = pooled_confusion(scores).metrics()
        ci = bootstrap_ci(scores, n_bootstrap, 0.95, seed) if len(scores) > 1 else None
        out[name] = {"cv_mean_oa": float(np.mean(seed_means)), "fold_oa": fold_oa,
                     "seed_spread": [min(seed_means), max(seed_means)], "seeds": len(seed_means),
                     "pooled": pooled, "ci": ci,
                     "per_image_oa": {n: c.metrics()["overall_accuracy"] for n, c in per_image.items()}}
    return out


def cv_table_markdown(results: Sequence[dict], band_sets: Sequence[str] = CV_BAND_SETS) -> str:
    """Rows = systems x band sets, like the paper's Tables II and III: CV mean OA (per fold,
    seed spread) and the pooled OA / balanced accuracy / precision / recall / F1 with 95 %
    bootstrap intervals over images."""
    lines = ["| system | bands | CV mean OA | folds | seeds (range) | OA (95 % CI) | BA | precision | recall | F1 (95 % CI) |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(v):
        return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"

    for res in results:
        for name in band_sets:
            row = res["summary"].get(name)
            if row is None:
                continue
            p, ci = row["pooled"], row["ci"] or {}

            def with_ci(m):
                c = ci.get(m)
                return fmt(p[m]) + (f" ({c[0]:.2f}-{c[1]:.2f})" if c and all(map(math.isfinite, c)) else "")

            spread = row["seed_spread"]
            lines.append(
                f"| {res['system']} | {name} | **{row['cv_mean_oa']:.3f}** | "
                f"{' / '.join(f'{v:.3f}' for v in row['fold_oa'])} | {row['seeds']} "
                f"({spread[0]:.3f}-{spread[1]:.3f}) | {with_ci('overall_accuracy')} | {fmt(p['balanced_accuracy'])} | "
                f"{fmt(p['precision'])} | {fmt(p['recall'])} | {with_ci('f1')} |")
    return "\n".join(lines) + "\n"


def per_patch_markdown(results: Sequence[dict], band_set: str, labels: Sequence[str] | None = None) -> str:
    """Each held-out patch's OA in every run (seed) of every result, side by side.

    The CV mean is decided by a few whole patches (a clear ice sheet called cloud, a deck
    called clear); this table shows which patches a recipe wins or loses against another
    on the same folds. Rows: fold, patch; columns: one per (result, seed); a run without
    the patch or the band set is blank.

    Parameters
    ----------
    results : sequence of dict
        ``cross_validate`` results (their JSON files read back).
    band_set : str
        One of the scored band sets, e.g. ``"RGBNIRSWIR"`` (the six reflective bands).
    labels : sequence of str, optional
        A short name per result (default: its ``system``).
    """
    labels = list(labels) if labels is not None else [str(r.get("system")) for r in results]
    if len(labels) != len(results):
        raise ValueError(f"{len(labels)} labels for {len(results)} results; give one label per result")
    columns, cells, fold_of = [], {}, {}
    for label, res in zip(labels, results):
        for seed in sorted({r["seed"] for r in res["runs"]}):
            col = len(columns)
            columns.append(f"{label} s{seed}")
            for run in (r for r in res["runs"] if r["seed"] == seed):
                for x in run["band_sets"].get(band_set, []):
                    c = Confusion(x["tp"], x["fp"], x["tn"], x["fn"])
                    cells[(x["name"], col)] = c.metrics()["overall_accuracy"]
                    fold_of[x["name"]] = run["fold"]
    if not cells:
        known = sorted({b for res in results for r in res["runs"] for b in r["band_sets"]})
        raise ValueError(f"no run scored the band set {band_set!r}; scored: {known}")
    lines = [f"| fold | patch ({band_set}) | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for name in sorted(fold_of, key=lambda n: (fold_of[n], n)):
        vals = [f"{cells[(name, c)]:.2f}" if (name, c) in cells else "" for c in range(len(columns))]
        lines.append(f"| {fold_of[name]} | {Path(name).stem} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(json_ready(obj), indent=1))
    os.replace(tmp, path)


def engine_options(result: dict) -> dict:
    """The engine options a result's networks were scored with; results written before the
    engine had options (2026-12-01) were scored without refinement."""
    return dict(result.get("engine") or {"refine": False})


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: cross-validate one system config on the Biome patches."""
    p = argparse.ArgumentParser(prog="python -m sensei_xr.training.crossval", description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", help="system config (TOML or JSON)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--out", help="result JSON (also the checkpoint of an interrupted run)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--keep-models", default=None,
                   help="folder to keep every run's model in; a model already there is scored, not retrained")
    p.add_argument("--only-fold", type=int, default=None,
                   help="run this fold only (to run folds in parallel processes; --merge joins them)")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="join the runs of these result files (same config) into --out instead of running")
    p.add_argument("--no-refine", action="store_true",
                   help="score the networks' probabilities as predicted, without the engine's edge refinement")
    p.add_argument("--edges", choices=("ring", "flush"), default="ring",
                   help="the engine's patch grid at the scene edges (default: ring)")
    p.add_argument("--per-patch", nargs="+", default=None, metavar="JSON",
                   help="print each held-out patch's OA in these result files side by side, and stop")
    p.add_argument("--bands", default="RGBNIRSWIR", help="band set of --per-patch (default: the six reflective)")
    args = p.parse_args(argv)
    if args.per_patch:
        results = [json.loads(Path(f).read_text()) for f in args.per_patch]
        print(per_patch_markdown(results, args.bands, [Path(f).stem for f in args.per_patch]))
        return 0
    if not args.config or not args.out:
        p.error("give a system config and --out (or --per-patch JSON... to compare results)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    system = read_system(args.config)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        result = {**parts[0], "runs": sorted((r for part in parts for r in part["runs"]),
                                              key=lambda r: (r["seed"], r["fold"]))}
        if any(part.get("config") != system for part in parts):
            raise SystemExit("--merge: the result files were made with other configs")
        if len({json.dumps(engine_options(part), sort_keys=True) for part in parts}) > 1:
            raise SystemExit("--merge: the result files were scored with other engine options")
        pairs = [(r["fold"], r["seed"]) for r in result["runs"]]
        twice = sorted({pair for pair in pairs if pairs.count(pair) > 1})
        if twice:
            raise SystemExit(f"--merge: the runs (fold, seed) {twice} are in more than one file; "
                             "merge each run once (a run trained again belongs under another seed)")
        result["seeds"] = sorted({r["seed"] for r in result["runs"]})
    else:
        samples = biome_cv_samples(classes=system_classes(system))
        result = cross_validate(system, samples, args.folds, seeds, checkpoint=out,
                                models_dir=args.keep_models, only_fold=args.only_fold, refine=not args.no_refine,
                                edges=args.edges)
    result["summary"] = summarise_cv(result)
    _write_json(out, result)
    print(cv_table_markdown([result]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
