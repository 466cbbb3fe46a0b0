"""The cross-validation table of every system: results/crossval/*.json -> README.md.

    python -m benchmarks.crossval_report [--dir results/crossval]

Rows are systems x band sets, shaped like the paper's Tables II and III: the CV mean OA
(the mean over the three scene-disjoint folds of each fold's pooled OA, averaged over
seeds; what models are chosen on), each fold's OA, the seeds' spread, and the pooled OA /
balanced accuracy / precision / recall / F1 of every held-out pixel with 95 % bootstrap
intervals over images. The last section compares each system with the per-pixel LightGBM
yardstick on the same folds: the bar a shipped model must clear is the yardstick's CV mean
OA + 2 points for every band set it ships for.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sensei_xr.training.crossval import CV_BAND_SETS, cv_table_markdown, engine_options

YARDSTICK = "pixel_gbm"
#: Points above the yardstick's CV mean OA a shipped model must reach on each band set.
MARGIN = 0.02


def _seeds_text(seeds) -> str:
    seeds = sorted(int(s) for s in seeds)
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(map(str, seeds))


def _tell_apart(results: dict) -> None:
    """Rows of one system from different result files (e.g. seeds run with different code)
    get their seeds in the name, so no two rows of the table read the same."""
    by_name: dict[str, list[str]] = {}
    for key, v in results.items():
        by_name.setdefault(v["system"], []).append(key)
    for keys in by_name.values():
        if len(keys) > 1:
            for key in keys:
                v = results[key]
                v["system"] = f"{v['system']} ({_seeds_text(v.get('seeds') or [r['seed'] for r in v['runs']])})"


def report(folder: Path) -> str:
    results = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
    results = {k: v for k, v in results.items() if "summary" in v}
    for v in results.values():
        if v.get("kind") in ("network", "ensemble") and engine_options(v).get("refine"):
            v["system"] = f"{v['system']} + edge refinement"
    if not results:
        raise SystemExit(f"no cross-validation results in {folder}")
    _tell_apart(results)
    order = sorted(results, key=lambda k: (k != YARDSTICK, k))
    lines = ["# Scene-disjoint 3-fold cross-validation on the 24 Landsat 8 Biome patches", "",
             "Folds: biome-stratified, scene-disjoint (a scene is never in two folds; each fold holds one "
             "patch of each of the 8 biomes). Fold 0 is the published validation split. Every score is "
             "predicted through the inference engine behind `da.sensei.*`; networks marked \"+ edge refinement\" "
             "were scored with the engine's default refinement of their cloud probability by the bands "
             "(`refine=True`), the others as predicted (results written before it existed, or with "
             "`--no-refine`). Made by "
             "`python -m benchmarks.crossval_report` from the JSON files here (each written by "
             "`python -m sensei_xr.training.crossval <config>`; configs in `configs/systems/`).", "",
             "Folds (held-out patches):", ""]
    first = results[order[0]]
    for i, f in enumerate(first["folds"]):
        lines.append(f"- fold {i}: {', '.join(n.removesuffix('.tif') for n in f)}")
    # Band sets beyond the table's that some system was calibrated and scored on (NIRSWIR).
    extra = sorted({b for r in results.values() for b in r["summary"]} - set(CV_BAND_SETS))
    lines += ["", "## All systems", "", cv_table_markdown([results[k] for k in order], CV_BAND_SETS + tuple(extra))]
    if YARDSTICK in results:
        base = results[YARDSTICK]["summary"]
        # The table's band sets, then any other the yardstick was scored on (RGBNIRSWIRTIR).
        columns = CV_BAND_SETS + tuple(b for b in extra if b in base)
        lines += ["## Against the per-pixel yardstick (CV mean OA; bar = yardstick + 2 points)", "",
                  "| system | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        lines.append("| bar | " + " | ".join(f"{base[b]['cv_mean_oa'] + MARGIN:.3f}" if b in base else ""
                                            for b in columns) + " |")
        for k in order:
            if k == YARDSTICK:
                continue
            s = results[k]["summary"]
            cells = []
            for b in columns:
                if b not in s or b not in base:
                    cells.append("")
                    continue
                v = s[b]["cv_mean_oa"]
                cells.append(f"{v:.3f} {'meets' if v >= base[b]['cv_mean_oa'] + MARGIN else 'below'}")
            lines.append(f"| {results[k]['system']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Runs", "",
              "Seconds are the wall time of the process that finished a run, on whatever machine ran it "
              "(here 2 CPU cores, often two runs side by side): a run resumed from a checkpoint, or a kept "
              "model scored again, counts only its last part.", "",
              "| system | runs (fold, seed) | seconds per run (median) |", "|---|---|---|"]
    for k in order:
        runs = results[k]["runs"]
        secs = sorted(r["seconds"] for r in runs)
        lines.append(f"| {results[k]['system']} | {len(runs)} | {secs[len(secs) // 2]:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="results/crossval")
    args = p.parse_args(argv)
    folder = Path(args.dir)
    text = report(folder)
    (folder / "README.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
