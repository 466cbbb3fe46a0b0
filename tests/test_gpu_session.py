"""The prepared GPU session (benchmarks/gpu_session.py), run here on the CPU with recipes cut
to two steps: what a lent GPU's minutes depend on must work before the minutes start."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import gpu_session
from benchmarks.gpu_session import ABSENT_ON_GPU_IMAGE, Job, jobs_of, merge_done, run_jobs

ROOT = Path(__file__).resolve().parents[1]
TWO_STEPS = {"steps": 2, "steps_per_epoch": 1, "bn_recalibration_batches": 1}

# Installed through PYTHONPATH into every process of the session: the packages the GPU
# image lacks and the first call does not install cannot be imported, as there.
HIDE = '''
import sys
ABSENT = {absent!r}
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ImportError(f"{{name}} is not on the GPU image (hidden by the test)")
        return None
sys.meta_path.insert(0, _Absent())
'''


def test_a_session_runs_smoke_then_its_jobs_with_only_the_image_and_its_wheels(shared_data, tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE.format(absent=tuple(ABSENT_ON_GPU_IMAGE)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide), str(ROOT)])}
    probe = subprocess.run([sys.executable, "-c", "import pystac"], env=env, capture_output=True, text=True)
    assert "not on the GPU image" in probe.stderr  # the hiding works, so the run below means something
    carried = tmp_path / "carried"
    carried.mkdir()
    (carried / "data").symlink_to(shared_data)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_session", "crossval", "--out", str(out), "--budget-s", "900",
         "--plan", "configs/systems/sensei_nn_snow_nir.toml:1:configs/systems/sensei_nn.toml", "--workers", "2",
         "--threads", "1",
         "--override", json.dumps(TWO_STEPS), "--no-device-check", "--carried", str(carried)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_session.json").read_text())
    assert report["smoke"]["status"] == "done"
    assert [(j["seed"], j["fold"], j["status"]) for j in report["jobs"]] == [(1, f, "done") for f in range(3)]
    assert all(j["seconds"] > 0 for j in report["jobs"])
    for name, system in (("sensei_nn_snow_nir", "SEnSeI+NN, snow tests with and without 1.6 um"),
                         ("sensei_nn", "SEnSeI+NN")):  # the recipe, then its sibling on the same networks
        merged = json.loads((out / f"{name}.json").read_text())
        assert sorted((r["fold"], r["seed"]) for r in merged["runs"]) == [(0, 1), (1, 1), (2, 1)]
        assert merged["config"]["steps"] == 2  # the overridden recipe is what the result says it is
        assert merged["config"]["system"] == system and set(merged["summary"]) >= {"ALL", "RGB"}
    assert sorted(p.name for p in out.iterdir()) == ["gpu_session.json", "sensei_nn.json", "sensei_nn_snow_nir.json"]


def test_jobs_at_the_deadline_are_stopped_and_the_rest_never_start(tmp_path):
    jobs = [Job("configs/systems/nn_fixed.toml", 0, f) for f in range(2)]
    configs = {"configs/systems/nn_fixed.toml": "configs/systems/nn_fixed.toml"}
    t0 = time.monotonic()
    run_jobs(jobs, configs, tmp_path, budget_s=2.0, workers=1, threads=1, log=lambda m: None)
    assert time.monotonic() - t0 < 60
    assert [j.status for j in jobs] == ["stopped at the deadline", "not started: no time left"]
    assert merge_done(jobs, configs, tmp_path / "out") == []  # a stopped job leaves no result


def test_a_cut_budget_leaves_whole_first_seeds_of_every_recipe():
    jobs = jobs_of([("a.toml", (3, 4), ("a2.toml",)), ("b.toml", (0,), ())], folds=3)
    assert [(j.config, j.seed, j.fold, j.siblings) for j in jobs] == [
        ("a.toml", 3, 0, ("a2.toml",)), ("a.toml", 3, 1, ("a2.toml",)), ("a.toml", 3, 2, ("a2.toml",)),
        ("b.toml", 0, 0, ()), ("b.toml", 0, 1, ()), ("b.toml", 0, 2, ()),
        ("a.toml", 4, 0, ("a2.toml",)), ("a.toml", 4, 1, ("a2.toml",)), ("a.toml", 4, 2, ("a2.toml",))]


def test_a_plan_names_seeds_and_siblings_and_fits_the_files_the_tool_returns():
    assert gpu_session.parse_plan(["x.toml:0,2"]) == [("x.toml", (0, 2), ())]
    assert gpu_session.parse_plan(["x.toml:1:y.toml,z.toml"]) == [("x.toml", (1,), ("y.toml", "z.toml"))]
    with pytest.raises(SystemExit, match="CONFIG:SEEDS"):
        gpu_session.parse_plan(["x.toml"])
    with pytest.raises(SystemExit, match="at most 3"):
        gpu_session.parse_plan([f"{i}.toml:0" for i in range(4)])
    with pytest.raises(SystemExit, match="4 recipes, siblings included"):
        gpu_session.parse_plan(["x.toml:0:y.toml", "z.toml:0:w.toml"])
    recipes = gpu_session.recipes_of(gpu_session.PLAN)
    assert len(recipes) <= 3 and all((ROOT / c).is_file() for c in recipes)


def test_the_smoke_run_trains_a_short_member_only_for_a_recipe_that_has_one(tmp_path):
    from sensei_xr.training.crossval import read_system
    from sensei_xr.training.member import check_member_option

    systems = ROOT / "configs" / "systems"
    fallback = gpu_session.smoke_overrides(str(systems / "sensei_dlv3_mosaic_snow_nir_warm_member_fallback.toml"))
    assert fallback["pixel_member"] == {"fallbacks": [{"band_set": "RGBNIR", "weight": 0.25}],
                                        "steps": gpu_session.SMOKE_MEMBER_STEPS}
    member = gpu_session.smoke_overrides(str(systems / "sensei_dlv3_mosaic_snow_nir_warm_member.toml"))
    assert member == {**gpu_session.SMOKE, "pixel_member": {"steps": gpu_session.SMOKE_MEMBER_STEPS}}
    assert gpu_session.smoke_overrides(str(systems / "sensei_dlv3_mosaic_snow_nir_warm.toml")) == gpu_session.SMOKE
    # The smoke config is one the recipe reader and the member's option check accept.
    path = gpu_session.with_overrides(str(systems / "sensei_dlv3_mosaic_snow_nir_warm_member_fallback.toml"),
                                      fallback, tmp_path)
    system = read_system(path)
    assert system["steps"] == gpu_session.SMOKE["steps"]
    check_member_option(system)
    with pytest.raises(ValueError, match="steps"):  # the check reads what the smoke run would train
        check_member_option({**system, "pixel_member": {**system["pixel_member"], "steps": 0}})


def test_siblings_are_scored_on_the_networks_their_job_trained(shared_data, tmp_path, monkeypatch, capsys):
    """SEnSeI+NN with and without its snow tests: the same training, so one network per fold
    serves both; the sibling's results come from it, not from a second training."""
    train_module = importlib.import_module("sensei_xr.training.train")  # the package's `train` is the function
    trained = []
    real_train = train_module.train
    monkeypatch.setattr(train_module, "train", lambda *a, **k: trained.append(a[2]) or real_train(*a, **k))
    configs = {}
    for name in ("sensei_nn_snow_nir", "sensei_nn"):
        configs[name] = gpu_session.with_overrides(f"configs/systems/{name}.toml", TWO_STEPS, tmp_path)
    outs = {name: str(tmp_path / f"{name}_out.json") for name in configs}
    assert gpu_session.run_job(configs["sensei_nn_snow_nir"], 1, 2, 1, tmp_path / "models", outs["sensei_nn_snow_nir"],
                               [(configs["sensei_nn"], outs["sensei_nn"])]) == 0
    assert len(trained) == 1  # the fold's one network, by the first recipe
    main, sibling = (json.loads(Path(outs[n]).read_text()) for n in ("sensei_nn_snow_nir", "sensei_nn"))
    assert [(r["fold"], r["seed"]) for r in main["runs"]] == [(2, 1)] == [(r["fold"], r["seed"]) for r in sibling["runs"]]
    assert sibling["config"]["system"] == "SEnSeI+NN" and "snow_test" not in sibling["config"]
    # RGB has neither snow test's bands: the same network scores it to the pixel in both.
    assert main["runs"][0]["band_sets"]["RGB"] == sibling["runs"][0]["band_sets"]["RGB"]
    # A recipe trained otherwise is refused on those networks, not trained again beside them;
    # the job's own result stands and says so by its status.
    (tmp_path / "other").mkdir()
    other = gpu_session.with_overrides("configs/systems/sensei_nn.toml", {**TWO_STEPS, "lr": 5e-4}, tmp_path / "other")
    again = str(tmp_path / "again.json")
    assert gpu_session.run_job(configs["sensei_nn_snow_nir"], 1, 2, 1, tmp_path / "models", again,
                               [(other, str(tmp_path / "other.json"))]) == gpu_session.SIBLING_FAILED
    assert "another recipe" in capsys.readouterr().err
    assert len(trained) == 1 and not (tmp_path / "other.json").exists()
    assert json.loads(Path(again).read_text())["runs"][0]["band_sets"] == main["runs"][0]["band_sets"]
    job = Job("a.toml", 1, 2, ("b.toml",), status="done, a sibling failed", out=again,
              sibling_outs={"b.toml": str(tmp_path / "other.json")})
    (tmp_path / "merged").mkdir()
    written = merge_done([job], {"a.toml": configs["sensei_nn_snow_nir"], "b.toml": other}, tmp_path / "merged",
                         folds=1)
    assert [Path(p).name for p in written] == ["a.json"]  # the recipe merged, the missing sibling not


def test_prepare_copies_the_data_each_call_reads_and_checks_the_carry_limit(shared_data, tmp_path, capsys):
    assert gpu_session.main(["prepare", "--dest", str(tmp_path / "gpu"), "--no-wheels"]) == 0
    for part, names in (("setup", gpu_session.SETUP_DATA), ("cv", gpu_session.CV_DATA)):
        for name in names:
            src = sorted(p.relative_to(shared_data / name) for p in (shared_data / name).rglob("*"))
            assert sorted(p.relative_to(tmp_path / "gpu" / part / "data" / name)
                          for p in (tmp_path / "gpu" / part / "data" / name).rglob("*")) == src
    printed = capsys.readouterr().out
    assert printed.count("MiB: fits") == 2, printed


def test_the_speed_call_says_plainly_when_there_is_no_gpu(tmp_path):
    (tmp_path / "speed" / "data").mkdir(parents=True)
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA: the speed call would run the benchmark")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_session", "speed", "--out", str(tmp_path / "o"),
                           "--carried", str(tmp_path / "speed"), "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0 and "needs a CUDA device" in proc.stderr + proc.stdout


def test_only_seeds_with_every_fold_done_make_a_cv_row(tmp_path):
    """Runs of the committed three-seed row, one file per run as the jobs write them: seed 0
    whole, seed 1 with two folds of three."""
    config = "configs/systems/sensei_dlv3_mosaic.toml"
    result = json.loads((ROOT / "results" / "crossval" / "sensei_dlv3_mosaic_refined.json").read_text())
    jobs = []
    for run in result["runs"]:
        if (run["seed"], run["fold"]) in {(0, 0), (0, 1), (0, 2), (1, 0), (1, 2)}:
            job = Job(config, run["seed"], run["fold"], status="done", out=str(tmp_path / f"{len(jobs)}.json"))
            Path(job.out).write_text(json.dumps({**result, "runs": [run]}))
            jobs.append(job)
    written = merge_done(jobs, {config: str(ROOT / config)}, tmp_path)
    assert [Path(p).name for p in written] == ["sensei_dlv3_mosaic.json", "sensei_dlv3_mosaic_partial.json"]
    whole, partial = (json.loads(Path(p).read_text()) for p in written)
    assert sorted((r["seed"], r["fold"]) for r in whole["runs"]) == [(0, 0), (0, 1), (0, 2)]
    assert sorted((r["seed"], r["fold"]) for r in partial["runs"]) == [(1, 0), (1, 2)]
    assert whole["seeds"] == [0] and partial["seeds"] == [1]
