"""The speed and scale benchmarks keep working: each runs with ``--quick --out DIR`` in a
subprocess (as ``sensei-xr bench`` runs them) and writes JSON with the expected keys and
positive numbers. Times are never asserted: the machines are shared and noisy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_quick(module: str, out: Path, data: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "SENSEI_XR_DATA": str(data), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", module, "--quick", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stem = module.rsplit("_", 1)[-1]
    for ext in ("json", "md", "png"):
        assert (out / f"{stem}.{ext}").stat().st_size > 0
    return json.loads((out / f"{stem}.json").read_text())


def _positive(values) -> bool:
    return all(isinstance(v, (int, float)) and v > 0 for v in values)


@pytest.mark.slow
def test_bench_speed_quick(tmp_path, shared_data):
    res = _run_quick("benchmarks.bench_speed", tmp_path, shared_data)
    assert res["settings"]["quick"] is True
    assert set(res["scene"]["band_sets"]) == {"3", "8", "13"}
    for variant in ("model", "model_patch_grid", "accessor"):
        assert _positive(res["ms_per_mp"]["cpu"][variant][n] for n in ("3", "8", "13"))
        assert _positive(res["ratios"]["cpu"]["over_13_bands"][variant].values())
    assert _positive(res["ratios"]["cpu"]["accessor_over_model"].values())
    assert _positive(res["ratios"]["cpu"]["accessor_over_accessor_unrefined"].values())
    assert _positive(res["flops"]["gflop_per_mp_network_input"].values())
    assert _positive(res["full_tile_cpu_seconds"][v] for v in ("model", "accessor"))
    assert _positive([res["fresh_memory"]["ms_as_set"]])
    # Peers: measured when installed, else a stated reason.
    assert res["peers"] or res["peers_reason"]
    for peer in res["peers"]:
        assert _positive([res["ms_per_mp"]["cpu"][peer]["13"], res["ratios"]["cpu"]["peer_over_accessor_at_13_bands"][peer]])
    gpu = res["gpu"]
    assert gpu["flop_bound"]["full_tile_seconds_at_peak"] > 0
    if gpu["measured"]:
        assert gpu["full_tile_seconds"] > 0 and gpu["accessor_mp_per_s"] > 0
    else:
        assert gpu["reason"].startswith("not measured: no GPU")


def test_the_fresh_memory_probe_leaves_numpy_s_huge_page_advice_as_it_was():
    import numpy as np

    from benchmarks.common import fresh_memory_probe

    switch = np._core.multiarray._set_madvise_hugepage
    original = switch(True)
    try:
        for setting in (False, True):
            switch(setting)
            probe = fresh_memory_probe(megabytes=8, repeats=1)
            assert probe["huge_page_advice"] is setting
            assert switch(setting) is setting  # the switch returns the setting it found
            assert _positive([probe["ms_as_set"], probe["ms_without_advice"]])
    finally:
        switch(original)


@pytest.mark.slow
def test_bench_scale_quick(tmp_path, shared_data):
    res = _run_quick("benchmarks.bench_scale", tmp_path, shared_data)
    assert res["settings"]["quick"] is True
    assert _positive(res["median_seconds"][k] for k in ("raw_model_1_core", "accessor_1_workers", "accessor_2_workers"))
    assert _positive([res["speedup_2_over_1_workers"], res["scaling_efficiency_2_workers"],
                      res["accessor_over_raw_model"], res["accessor_patches_over_raw"]])
    assert set(res["peak_rss_mib_per_worker"]) == {"1", "2"}
    assert _positive(res["peak_rss_mib_per_worker"].values())
    assert [len(m["peak_rss_mib"]) for m in (res["clusters"]["1"][0], res["clusters"]["2"][0])] == [1, 2]
    assert 0 <= res["cloud_fraction"] <= 1


def test_held_bytes_follow_the_scheduler_cache(shared_data, monkeypatch):
    """bench_inference --held: the callback's peak is what the scheduler's cache held at
    once (its parts add up to it), and it sees the engine's layers."""
    import dask
    import numpy as np

    monkeypatch.setenv("SENSEI_XR_DATA", str(shared_data))
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.bench_inference import HeldBytes, lazy_s2_scene

    held = HeldBytes()
    mask = lazy_s2_scene(384, 128).sensei.cloudmask(patch_size=64, overlap=16)
    with held.callback(), dask.config.set(scheduler="threads"):
        out = mask.compute()
    assert out.shape == (384, 384)
    assert held.peak == sum(held.at_peak.values())
    # At least one 13-band source chunk (13 x 128 x 128 float32) was held at some point,
    # and never more than every array of the computation at once.
    assert held.peak >= 13 * 128 * 128 * 4
    assert held.peak < 20 * 13 * 384 * 384 * 4
    assert {"sensei-predict", "sensei-halo", "block"} & set(held.at_peak)
    assert HeldBytes._nbytes((np.zeros(3), [np.zeros(2, np.int64)], "x")) == 40


def test_bench_training_quick(tmp_path, shared_data):
    """The training benchmark times real steps of a recipe and one validation pass."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "SENSEI_XR_DATA": str(shared_data)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_training", "configs/systems/sensei_dlv3.toml",
                           "--quick", "--threads", "1", "--out", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "training.json").read_text())
    assert res["quick"] is True and res["threads"] == 1
    assert len(res["step_s"]) == res["steps_timed"] == 2
    assert _positive([res["median_step_s"], res["validation_pass_s"], res["projected_run_minutes"]])
    assert res["validation_passes"] == -(-res["run_steps"] // 200)  # the recipe validates every 200 steps


def test_a_release_trains_one_band_set_of_a_fixed_band_system():
    """A fixed-band system ships one model per band set: the release names which, or fails
    with the choices (the committed configs are the cases)."""
    from benchmarks.release_model import _release_band_set
    from sensei_xr.training.crossval import read_system

    several = read_system(ROOT / "configs/systems/nn_fixed.toml")
    one = read_system(ROOT / "configs/systems/dlv3_fixed.toml")
    any_bands = read_system(ROOT / "configs/systems/sensei_dlv3.toml")
    assert _release_band_set(several, "RGBNIRSWIR") == "RGBNIRSWIR"
    assert _release_band_set(one, None) == "RGBNIRSWIR"
    assert _release_band_set(any_bands, None) is None
    with pytest.raises(SystemExit, match="choose one of .*--band-set"):
        _release_band_set(several, None)
    with pytest.raises(SystemExit, match="not one of the system's fixed band sets"):
        _release_band_set(several, "NIRSWIR")
    with pytest.raises(SystemExit, match="takes any bands"):
        _release_band_set(any_bands, "RGB")


def test_a_card_takes_a_newer_cross_validation_of_its_own_recipe_only(monkeypatch):
    """``release_model --recheck NAME --cv JSON`` rewrites a card's cross-validation (e.g.
    after more seeds of its recipe ran). Every registry card's own source gives back the
    section the release wrote (a fixed-band model keeps its one band set); another recipe's
    cross-validation is refused."""
    from benchmarks.release_model import with_cross_validation
    from sensei_xr.models.weights import REGISTRY_DIR

    monkeypatch.chdir(ROOT)  # cards name their config and CV source from the repository root
    cards = [json.loads(p.read_text()) for p in sorted(REGISTRY_DIR.glob("*.json")) if p.name != "aliases.json"]
    assert len(cards) >= 4
    for card in cards:
        section = card["cross_validation"]
        again = with_cross_validation(card, Path(section["source"]))["cross_validation"]
        # (cards released before the engine options were recorded lack "engine")
        assert {k: again[k] for k in section} == section and set(again) - set(section) <= {"engine"}, card["name"]
        other = next(c for c in cards if c["training"]["config"] != card["training"]["config"])
        with pytest.raises(SystemExit, match="another config than this model's recipe"):
            with_cross_validation(card, Path(other["cross_validation"]["source"]))


def test_the_cross_validation_report_never_prints_two_rows_alike(tmp_path):
    """Two result files of one system (seeds run with different code) get their seeds in
    the name; the committed results give a table whose (system, bands) rows are unique."""
    from benchmarks.crossval_report import report

    folder = ROOT / "results" / "crossval"
    rows = [line.split(" | ")[:2] for line in report(folder).split("## Against")[0].splitlines()
            if line.startswith("| ") and not line.startswith("| system")]
    assert rows and len({tuple(r) for r in rows}) == len(rows)
    # Built so the names collide: the same system in two files, seeds 0-2 and seed 3.
    runs = json.loads((folder / "sensei_dlv3_mosaic_refined.json").read_text())
    (tmp_path / "a.json").write_text(json.dumps(runs))
    (tmp_path / "b.json").write_text(json.dumps({**runs, "seeds": [3]}))
    names = {line.split(" | ")[0] for line in report(tmp_path).splitlines() if "mosaic" in line}
    assert {"| SEnSeI+DLv3, mosaic patches + edge refinement (seeds 0-2)",
            "| SEnSeI+DLv3, mosaic patches + edge refinement (seed 3)"} <= names
