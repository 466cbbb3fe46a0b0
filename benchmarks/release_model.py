"""Train a system's shipped model on all labelled patches, check it on the real scenes, and
write it into the registry with a card that says what it was trained and selected on.

    python -m benchmarks.release_model configs/systems/sensei_dlv3.toml \\
        --cv results/crossval/sensei_dlv3.json --name sensei-dlv3-biome-v4 [--default] [--work DIR]

The recipe (the config) was chosen by scene-disjoint cross-validation (``--cv``: the JSON
written by ``python -m sensei_xr.training.crossval``); the model shipped is that recipe
trained once more on all 24 Biome patches, so the cross-validation numbers are the estimate
of how it does on unseen scenes, and no Biome patch is held out from it. The real-scene
check (``benchmarks.scene_report``) runs on scenes no model saw; its quicklooks go to
``docs/models/<name>/``. Dev tooling: not part of the package.
"""

from __future__ import annotations

import argparse
import inspect
import json
import tempfile
import time
from pathlib import Path

from sensei_xr.datasets import load_dataset
from sensei_xr.inference import class_probabilities
from sensei_xr.models import CloudEnsemble, load_model, save_model
from sensei_xr.models.weights import ALIASES_FILE, REGISTRY_DIR
from sensei_xr.sample_data import data_dir
from sensei_xr.training.crossval import (_SYSTEM_KEYS, engine_options, give_missing_calibrations, member_seeds,
                                        read_system, select_bands)
from sensei_xr.training.member import give_missing_member
from sensei_xr.training.snow import give_missing_tests
from sensei_xr.training.recipe import finished_model
from sensei_xr.training.train import train

from .scene_report import BAND_SETS as BAND_SETS_CHECKED
from .scene_report import check

#: The engine options every real-scene check here runs with: the engine's defaults.
ENGINE_DEFAULTS = {"refine": inspect.signature(class_probabilities).parameters["refine"].default}


def _system(config_path: Path) -> dict:
    return read_system(config_path)


def _release_band_set(system: dict, band_set: str | None) -> str | None:
    """The one fixed band set a fixed-band system's release is trained on (None: not fixed-band)."""
    fixed = system.get("fixed_bands")
    if not fixed:
        if band_set is not None:
            raise SystemExit(f"--band-set {band_set}: the system takes any bands; give --band-set only to a "
                             "fixed-band system")
        return None
    if band_set is None:
        if len(fixed) != 1:
            raise SystemExit(f"a fixed-band system ships one model: choose one of {fixed} with --band-set")
        return fixed[0]
    if band_set not in fixed:
        raise SystemExit(f"--band-set {band_set} is not one of the system's fixed band sets {fixed}")
    return band_set


def train_release(config_path: Path, work: Path, seed: int, log=print,
                  band_set: str | None = None) -> tuple[object, float]:
    """Train the config's recipe on all 24 Biome patches into ``work`` (resumable; reused once done).

    ``band_set``: for a system with several fixed band sets (one model each), the one to
    train. Returns the model and the training seconds (of the run that finished it).
    """
    system = _system(config_path)
    if system.get("kind") == "ensemble":
        # Each member is its own recipe's release run (in work/member<i>); the ensemble is their mean.
        members, seconds, recipes = [], 0.0, []
        for i, (member, member_seed) in enumerate(zip(system["members"], member_seeds(system["members"], seed))):
            model, sec = train_release(config_path.parent / member, work / f"member{i}", member_seed, log=log)
            members.append(model)
            seconds += sec
            recipes.append({"config": str(config_path.parent / member), "seed": member_seed, "seconds": sec,
                            **{k: model.card["training"].get(k) for k in
                               ("recipe", "steps_done", "augmentation", "encoder_initialisation", "device")}})
        ensemble = CloudEnsemble(members).eval()
        ensemble.card = {"training": {"data": members[0].card["training"]["data"], "members": recipes}}
        return ensemble, seconds
    cfg = {k: v for k, v in system.items() if k not in _SYSTEM_KEYS}
    patches = load_dataset("biome_patches", split="val") + load_dataset("biome_patches", split="train")
    fixed = _release_band_set(system, band_set)
    if fixed:
        patches = [select_bands(s, fixed) for s in patches]
        model_cfg = {**cfg["model"], "encoder": None, "in_bands": len(patches[0].descriptors)}
        if fixed in ("RGB", "RGBNIR", "AeroRGBNIR", "RGBNIRSWIR"):
            model_cfg["band_set"] = fixed
        cfg = {**cfg, "model": model_cfg, "band_subsets": False, "val_band_sets": {fixed: None}}
    cfg["seed"] = seed
    work.mkdir(parents=True, exist_ok=True)
    stem = work / "model"
    timing = work / "seconds.txt"
    # A finished model there is reused (it must be this recipe's and seed's: checked); the card is written last.
    if not (finished_model(stem, cfg) and timing.is_file()):
        t0 = time.time()
        train(cfg, data_dir(), stem, resume=True, log=log, train_samples=patches, val_samples=patches)
        timing.write_text(f"{time.time() - t0:.0f}\n")
    model = load_model(stem.with_suffix(".safetensors"))
    # A finished run of the recipe without its tests, its pixel member or some of its
    # band-set calibrations (all made after training): made now on the same patches, as
    # training would have.
    for key, test in give_missing_tests(model, cfg, [patches]).items():
        log(f"chose the {key.replace('_', ' ')} on the {len(patches)} patches: {test}")
    calibrated = give_missing_calibrations(model, cfg, [patches])
    if calibrated:
        log(f"measured the batch-norm calibrations of {calibrated} on the {len(patches)} patches")
        model.card = {**model.card, "calibrated_after_training": calibrated}
    member = give_missing_member(model, cfg, [patches])
    if member is not None:
        log(f"trained the pixel member on the {len(patches)} patches (seed {seed}): {member.config}")
    return model, float(timing.read_text())


def release(config_path: Path, cv_path: Path, name: str, summary: str, make_default: bool,
            work: Path, selected_on: str, limitations: list[str], docs: Path = Path("docs/models"),
            log=print, band_set: str | None = None, seed: int | None = None) -> dict:
    """Train, check and register one release of a recipe; ``seed``: its training seed (default
    the cross-validation's first seed)."""
    system = _system(config_path)
    cv = json.loads(cv_path.read_text())
    if cv.get("config") != system:
        raise SystemExit(f"{cv_path} was made with another config than {config_path}: rerun the cross-validation")
    fixed = _release_band_set(system, band_set)
    model, seconds = train_release(config_path, work, cv["seeds"][0] if seed is None else seed, log=log,
                                   band_set=fixed)
    shots = docs / name
    shots.mkdir(parents=True, exist_ok=True)
    scenes = check(model, shots, log=log)
    card = dict(model.card)
    card.update({
        "name": name,
        "summary": summary,
        "system": system.get("system"),
        "training": {**card["training"],
                     "data": ("all 24 human-labelled Landsat 8 Biome patches of the sample data (the 16 of the "
                              "published train split and the 8 of its val split; 256 x 256 px at 30 m, bands "
                              "B2-B7, B9, B10)" + (f", {fixed} bands only" if fixed else "")
                              + "".join(f"; {d}" for d in [card["training"]["data"]] if "library" in d)),
                     "validation_data": "none held out: the recipe was chosen by cross-validation (below)",
                     "config": str(config_path),
                     "seconds": seconds},
        "selected_on": selected_on,
        "validation_metrics": None,
        "cross_validation": cross_validation_section(cv, cv_path, fixed),
        "real_scenes": scenes,
        "real_scenes_engine": dict(ENGINE_DEFAULTS),
        "limitations": list(limitations),
    })
    for key in ("format", "format_version", "architecture", "classes", "num_parameters", "weights_file",
                "sha256", "created", "sensei_xr_version"):
        card.pop(key, None)
    written = save_model(model, REGISTRY_DIR / name, card=card)
    saved = load_model(REGISTRY_DIR / f"{name}.safetensors")
    (shots / "README.md").write_text(card_markdown(saved.card, cv_path.parent))
    if make_default:
        (REGISTRY_DIR / ALIASES_FILE).write_text(json.dumps({"default": name}) + "\n")
    log(f"wrote {REGISTRY_DIR / name}.safetensors (sha256 {written['sha256'][:12]}), trained in {seconds:.0f} s")
    return written


def cross_validation_section(cv: dict, cv_path: Path, fixed: str | None) -> dict:
    """A card's ``cross_validation``: the summary of the cross-validation JSON ``cv`` (read
    from ``cv_path``) for every band set, or for ``fixed`` only (a fixed-band model's card
    carries its own band set's)."""
    cv_sets = [fixed] if fixed else list(cv["summary"])
    return {"source": str(cv_path), "seeds": cv["seeds"], "folds": cv["folds"], "engine": engine_options(cv),
            "summary": {b: {k: v for k, v in cv["summary"][b].items() if k != "per_image_oa"} for b in cv_sets},
            "per_image_oa": {b: cv["summary"][b]["per_image_oa"] for b in cv_sets}}


def with_cross_validation(card: dict, cv_path: Path) -> dict:
    """The card with its cross-validation taken from ``cv_path`` (e.g. the same recipe with
    more seeds), which must have been made with the recipe the card's model was trained with."""
    cv = json.loads(Path(cv_path).read_text())
    config = card["training"]["config"]
    system = _system(Path(config))
    if cv.get("config") != system:
        raise SystemExit(f"{cv_path} was made with another config than this model's recipe {config}: give the "
                         "cross-validation of that recipe")
    fixed = None
    if system.get("fixed_bands"):
        (fixed,) = card["cross_validation"]["summary"]
    return {**card, "cross_validation": cross_validation_section(cv, Path(cv_path), fixed)}


def recheck(name: str, limitations: list[str] | None = None, docs: Path = Path("docs/models"), log=print,
            cv_path: Path | None = None, summary: str | None = None, selected_on: str | None = None) -> dict:
    """Run a registry model's real-scene check again with the engine as it is now, and write
    the results into its card and page; the weights are not touched. When given, new
    limitations, summary and "selected on" replace the card's, and the cross-validation is
    taken from ``cv_path`` (:func:`with_cross_validation`)."""
    card_path = REGISTRY_DIR / f"{name}.json"
    card = json.loads(card_path.read_text())
    if cv_path is not None:
        card = with_cross_validation(card, cv_path)
    card.update({k: v for k, v in (("summary", summary), ("selected_on", selected_on)) if v is not None})
    shots = docs / name
    shots.mkdir(parents=True, exist_ok=True)
    card["real_scenes"] = check(load_model(name), shots, log=log)
    card["real_scenes_engine"] = dict(ENGINE_DEFAULTS)
    if limitations:
        card["limitations"] = list(limitations)
    tmp = card_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2, default=str) + "\n")  # as save_model writes it
    tmp.replace(card_path)
    saved = load_model(name)
    (shots / "README.md").write_text(card_markdown(saved.card, Path(card["cross_validation"]["source"]).parent))
    return saved.card


def _fallback_words(fallback) -> str:
    """The member's fallbacks, as a page states them."""
    words = ""
    while fallback:
        words += (f"; on a scene lacking one of those regions, a member on {', '.join(fallback['regions'])} trained "
                  f"alike takes the place, at {fallback['weight']:g}")
        fallback = fallback.get("fallback")
    return words


def _engine_words(card: dict, options: dict | None) -> str:
    """How the engine treated the network's probabilities (a pixel network is never refined)."""
    if card["architecture"].get("head") == "pixelnet":
        return ""
    if not options:
        return " without the engine's edge refinement (measured before it existed)"
    return " with the engine's edge refinement" if options.get("refine") else " without the engine's edge refinement"


def card_markdown(card: dict, results: Path) -> str:
    """The model's page in docs/: every number from its card (and the committed CV results)."""
    cv = card["cross_validation"]
    s = cv["summary"]
    sets = list(s)
    others = {p.stem: json.loads(p.read_text()) for p in sorted(results.glob("*.json"))}
    gbm = others.get("pixel_gbm", {}).get("summary", {})
    peer = others.get("ukis_csmask", {}).get("summary", {})
    arch = card["architecture"]
    training = card["training"]
    if "ensemble" in arch:
        network = (f"- **Network**: the mean class probability of {len(arch['ensemble'])} SEnSeI networks ("
                   + ", ".join(a["head"] for a in arch["ensemble"])
                   + f"; {card['num_parameters']:,} parameters in all), classes {', '.join(card['classes'])}; any "
                   "band set described by wavelengths; every member runs at inference")
        recipe = (f"- **Recipe**: `{training['config']}`, its members "
                  + "; ".join(f"`{m['config']}` (seed {m['seed']}, {m['steps_done']} steps, {m['device']}, "
                              f"{m['seconds'] / 60:.0f} min)"
                              for m in training["members"])
                  + f"; augmentation: {training['members'][0]['augmentation']}")
    else:
        # The card counts every parameter the weights file holds, the per-pixel members' included.
        counted = " with its per-pixel members" if arch.get("pixel_member") else ""
        network = (f"- **Network**: {'SEnSeI + ' if arch.get('encoder') else ''}{arch['head']} "
                   f"({card['num_parameters']:,} parameters{counted}), classes {', '.join(card['classes'])}; "
                   + ("any band set described by wavelengths" if arch.get("encoder")
                      else f"the {arch.get('band_set') or str(arch.get('in_bands')) + ' fixed'} bands, picked by "
                           "wavelength from any sensor"))
        recipe = (f"- **Recipe**: `{training['config']}` ({training['steps_done']} steps, "
                  f"{training['device']}, {training['seconds'] / 60:.0f} min); augmentation: "
                  f"{training['augmentation']}")
    lines = [f"# {card['name']}", "", card["summary"], "",
             network + (f"; batch-norm statistics measured for {', '.join(card['bn_calibrations'])}"
                        if card.get("bn_calibrations") else ""),
             f"- **Trained on**: {training['data']}",
             *([f"- **Snow test** (applied by the engine after its edge refinement): cloud probability at most "
                f"{t['cloud_cap']:g} where NDSI(green, 1.6 um) >= {t['ndsi_min']:g}, green > {t['green_min']:g}"
                + (f", NIR > {t['nir_min']:g}" if "nir_min" in t else "") + f" and "
                f"1.6 um < {t['swir_max']:g} (reflectance; the ceiling chosen on the training labels: at most 0.1 % "
                "of their cloud pixels pass; `sensei_xr.spectral.snow`)"] if (t := card.get("snow_test")) else []),
             *([f"- **Snow test without a 1.6 um band** (green, red and NIR; applied where a scene has no 1.6 um "
                f"band): cloud probability at most {t['cloud_cap']:g} where NDVI < {t['ndvi_max']:g}, green > "
                f"{t['green_min']:g} and NIR > {t['nir_min']:g} (the NDVI ceiling and the green floor chosen on the "
                "training labels: at most 0.1 % of their cloud pixels pass, and of such pairs the one passing the "
                "most clear pixels)"] if (t := card.get("nir_snow_test")) else []),
             *([f"- **Warm-surface test** (applied where a scene has a thermal band at 10-12.5 um): cloud "
                f"probability at most {t['cloud_cap']:g} where the brightness temperature exceeds {t['bt_min_k']:g} K "
                f"(27 C, Fmask's cloud test; fixed, not chosen on any labels) and the 1.38 um reflectance, where "
                f"the scene has it, is at most {t['cirrus_max']:g} (`sensei_xr.spectral.warm`)"]
               if (t := card.get("warm_test")) else []),
             *([f"- **Per-pixel member** (`sensei_xr.models.PixelMember`, applied where a scene has the regions "
                f"{', '.join(m['regions'])}): an MLP ({' -> '.join(str(h) for h in [len(m['regions']), *m['hidden'], 2])}"
                ", batch norm) trained on the same patches' labelled pixels after the network; the engine takes "
                f"{1 - m['weight']:g} x the network's refined cloud probability + {m['weight']:g} x the member's, "
                "then the tests above" + _fallback_words(m.get("fallback"))] if (m := arch.get("pixel_member")) else []),
             recipe,
             f"- **Selected on**: {card['selected_on']}",
             f"- **Weights**: `sensei_xr/models/registry/{card['weights_file']}`, sha256 `{card['sha256'][:16]}...`",
             "", "## Cross-validation (scene-disjoint, biome-stratified, 3 folds of the 24 Biome patches)", "",
             ("The recipe trained on two folds and scored on the third, through the inference engine"
              f"{_engine_words(card, cv.get('engine'))} "
              f"(seeds {cv['seeds']}; `{cv['source']}`; all systems in `results/crossval/README.md`). The bar is the "
             "per-pixel LightGBM yardstick's CV mean OA + 2 points on the same folds; ukis-csmask is the peer, "
             "scored on the same held-out patches."), "",
             "| bands | CV mean OA | folds 0 / 1 / 2 | pooled F1 | bar (LightGBM + 0.02) | meets | ukis-csmask |",
             "|---|---|---|---|---|---|---|"]
    for b in sets:
        bar = gbm[b]["cv_mean_oa"] + 0.02 if b in gbm else None
        v = s[b]["cv_mean_oa"]
        lines.append(f"| {b} | **{v:.3f}** | " + " / ".join(f"{x:.3f}" for x in s[b]["fold_oa"])
                     + f" | {s[b]['pooled']['f1']:.3f} | " + (f"{bar:.3f}" if bar is not None else "")
                     + " | " + ("" if bar is None else "yes" if v >= bar else "**no**") + " | "
                     + (f"{peer[b]['cv_mean_oa']:.3f}" if b in peer else "") + " |")
    lines += ["", f"Per held-out patch (OA, {sets[0]} bands): "
              + ", ".join(f"{n.removesuffix('.tif')} {x:.2f}" for n, x in sorted(cv["per_image_oa"][sets[0]].items(),
                                                                           key=lambda kv: kv[1])), "",
              "## Real scenes no model saw (`benchmarks/scene_report.py`, through `da.sensei.cloudmask()`)", "",
              "Column ALL is the call as a user makes it, `cloudmask()` with no `bands`: all the scene's bands "
              "are offered and the model takes what it uses (its calibrated or fixed band set)"
              f"{_engine_words(card, card.get('real_scenes_engine'))}.", "",
              "| scene | what is there | expected cloud | " + " | ".join(BAND_SETS_CHECKED) + " | quicklook |",
              "|---|---|---|" + "---|" * len(BAND_SETS_CHECKED) + "---|"]
    for scene, row in card["real_scenes"].items():
        exp = "" if row["expected"] is None else f"{row['expected'][0]:.0%}-{row['expected'][1]:.0%}"
        cells = []
        for b in BAND_SETS_CHECKED:
            f = row["cloud_fraction"].get(b)
            ok = row["passed"].get(b)
            cells.append(("refused: lacks its bands" if b == "ALL" and row.get("refused") else "") if f is None
                         else f"{f:.1%}" + ("" if ok is None else " ok" if ok else " **FAIL**"))
        lines.append(f"| {scene} | {row['what']} | {exp} | " + " | ".join(cells) + " | "
                     + ("" if row.get("refused") else f"[png]({scene}.png)") + " |")
    if card.get("limitations"):
        lines += ["", "## Limitations", ""] + [f"- {x}" for x in card["limitations"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path, nargs="?")
    p.add_argument("--cv", type=Path, help="the cross-validation JSON of this config")
    p.add_argument("--name", help="registry name, e.g. sensei-dlv3-biome-v4")
    p.add_argument("--summary", help="one line for sensei-xr models")
    p.add_argument("--selected-on", help="what data chose the recipe and its settings (written on the card)")
    p.add_argument("--recheck", metavar="NAME", default=None,
                   help="instead of training: run the real-scene check of the registry model NAME again with the "
                        "engine as it is now and write it into its card and page (with --limitation, --summary, "
                        "--selected-on: replace them; with --cv: the card's cross-validation, of the same recipe)")
    p.add_argument("--limitation", action="append", default=[], help="a known weakness (repeatable)")
    p.add_argument("--default", action="store_true", help="make it the default model (aliases.json)")
    p.add_argument("--band-set", default=None,
                   help="for a system with several fixed band sets (one model each, e.g. nn_fixed.toml): the "
                        "one to train and ship")
    p.add_argument("--seed", type=int, default=None,
                   help="training seed of the release (default: the cross-validation's first seed)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--work", type=Path, default=None,
                   help="folder to train in (resumable; a finished model there is reused), default a temporary one")
    args = p.parse_args(argv)
    if args.recheck:
        recheck(args.recheck, args.limitation, cv_path=args.cv, summary=args.summary, selected_on=args.selected_on)
        return 0
    missing = [flag for flag, v in (("config", args.config), ("--cv", args.cv), ("--name", args.name),
                                    ("--summary", args.summary), ("--selected-on", args.selected_on)) if v is None]
    if missing:
        p.error(f"a release needs {', '.join(missing)} (or --recheck NAME)")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.work is not None:
        release(args.config, args.cv, args.name, args.summary, args.default, args.work, args.selected_on,
                args.limitation, band_set=args.band_set, seed=args.seed)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            release(args.config, args.cv, args.name, args.summary, args.default, Path(tmp), args.selected_on,
                    args.limitation, band_set=args.band_set, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
