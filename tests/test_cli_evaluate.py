"""``sensei-xr evaluate``, ``train`` and ``bench``: real data, real model, exit codes.

``evaluate`` runs the shipped default model on the real Landsat 8 Biome validation patches;
``train`` trains a tiny PixelNet for a few steps on the real training patches; ``bench``
runs stand-in scripts in a temporary benchmarks/ folder (the real ones take minutes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sensei_xr import cli
from sensei_xr.cli import bench as bench_command
from sensei_xr.cli import evaluate as evaluate_command


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, command: str, *fragments: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"sensei-xr {command}: error: "), err
    for f in fragments:
        assert f in lines[0], (f, lines[0])


# ---------------------------------------------------------------------------- evaluate


def test_evaluate_default_model_on_real_biome_val(shared_data, tmp_path, capsys, one_torch_thread):
    from sensei_xr.models import load_model
    from sensei_xr.datasets import load_dataset
    from sensei_xr.evaluation import pooled_confusion, score_model

    out = tmp_path / "acc"
    code, stdout, err = run(capsys, "evaluate", "--dataset", "biome_patches", "--split", "val",
                            "--root", shared_data / "l8_biome_patches", "--bands", "ALL,RGB", "AeroRGBNIR",
                            "--peers", "s2cloudless", "--bootstrap", "100", "--device", "cpu",
                            "--out", out)
    assert code == 0, err
    report = json.loads((out / "evaluation.json").read_text())
    rows = {r["band_set"] if r["kind"] == "model" else r["method"]: r for r in report["rows"]}
    assert list(rows) == ["ALL", "RGB", "AeroRGBNIR", "s2cloudless"]
    assert report["n_images"] == 8 and report["bootstrap"]["resamples"] == 100
    # The same pixels and numbers as the training loop's own evaluation.
    val = load_dataset("biome_patches", shared_data / "l8_biome_patches", "val")
    expected = pooled_confusion(score_model(load_model("default"), val, ["B2", "B3", "B4"]))
    assert rows["RGB"]["confusion"] == expected.as_dict()
    assert rows["RGB"]["bands"] == ["B2", "B3", "B4"]
    for metric, (lo, hi) in rows["ALL"]["ci"].items():
        assert lo <= rows["ALL"]["pooled"][metric] <= hi
    assert len(rows["ALL"]["by_tag"]["surface"]) == 8
    assert "coastal band" in rows["AeroRGBNIR"]["skipped"]
    # s2cloudless cannot run on these patches (no Sentinel-2 bands), installed or not.
    skipped = rows["s2cloudless"]["skipped"]
    assert "needs Sentinel-2 band B01" in skipped or "cannot be imported" in skipped
    md = (out / "evaluation.md").read_text()
    assert "| method | band set | bands | OA |" in md and "| RGB | B2, B3, B4 |" in md
    assert f"wrote {out / 'evaluation.json'}" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.json", "evaluation.md"]

    # Existing outputs are refused (before any work), and left as they were.
    before = (out / "evaluation.json").read_text()
    code, _, err = run(capsys, "evaluate", "--dataset", "biome_patches", "--out", out)
    assert_one_line_error(code, err, "evaluate", "evaluation.json exists", "--overwrite")
    assert (out / "evaluation.json").read_text() == before


def test_evaluate_scores_the_patch_grid_given(shared_data, tmp_path, capsys, one_torch_thread):
    """``--overlap`` and ``--edges`` reach the engine: the report's pixels are those of
    :func:`score_model` with the same grid, not the defaults', and the report says which."""
    from sensei_xr.datasets import load_dataset
    from sensei_xr.evaluation import pooled_confusion, score_model
    from sensei_xr.models import load_model

    out = tmp_path / "acc"
    code, stdout, err = run(capsys, "evaluate", "--dataset", "biome_patches", "--split", "val",
                            "--root", shared_data / "l8_biome_patches", "--bands", "RGB",
                            "--bootstrap", "0", "--device", "cpu", "--overlap", "16", "--edges", "flush",
                            "--out", out)
    assert code == 0, err
    report = json.loads((out / "evaluation.json").read_text())
    assert report["engine"] == {"overlap": 16, "edges": "flush"}
    (row,) = report["rows"]
    val = load_dataset("biome_patches", shared_data / "l8_biome_patches", "val")
    model = load_model("default")
    given = pooled_confusion(score_model(model, val, ["B2", "B3", "B4"], overlap=16, edges="flush"))
    defaults = pooled_confusion(score_model(model, val, ["B2", "B3", "B4"]))
    assert row["confusion"] == given.as_dict() != defaults.as_dict()
    assert "patch grid edges='flush', overlap=16" in (out / "evaluation.md").read_text()
    # A bad grid is refused before the model loads, naming its flag; nothing is written.
    for flag, value, says in (("--overlap", "129", "--overlap must be 0..128 pixels"),
                              ("--edges", "inner", "--edges must be one of ring, flush")):
        fresh = tmp_path / "refused"
        code, _, err = run(capsys, "evaluate", "--dataset", "biome_patches", flag, value, "--out", fresh,
                           "--model", tmp_path / "missing.safetensors")
        assert_one_line_error(code, err, "evaluate", says)
        assert "missing" not in err
        assert not fresh.exists()


@pytest.mark.parametrize("args, fragments", [
    (["--dataset", "biome_patches", "--bands", "RGB,RGBN"], ["unknown band set 'RGBN'", "AeroRGBNIR"]),
    (["--dataset", "biome_patches", "--peers", "fmask"], ["unknown peer method 'fmask'", "ukis-csmask"]),
    (["--dataset", "no_such_set"], ["unknown dataset 'no_such_set'", "biome_patches"]),
    (["--dataset", "biome_patches", "--split", "test"], ["test.npz not found", "'train' and 'val'"]),
    (["--dataset", "biome_patches", "--model", "no-such-model"], ["no-such-model"]),
])
def test_evaluate_errors_exit_2_without_outputs(shared_data, tmp_path, capsys, args, fragments):
    out = tmp_path / "acc"
    code, _, err = run(capsys, "evaluate", *args, "--out", out)
    assert_one_line_error(code, err, "evaluate", *fragments)
    assert not out.exists()


def test_evaluate_passes_dataset_options_to_the_loader(tmp_path, capsys, one_torch_thread):
    """``--option`` reaches the loader as a config's ``options = {...}`` would: TOML values
    (a list, a float), plain strings otherwise; unknown or malformed options exit 2 first."""
    pytest.importorskip("rasterio")
    from test_public_datasets import _write_biome_scene

    FOREST_SCENE, SNOW_SCENE = "LC81800662014230LGN00", "LC80420082013220LGN00"
    _write_biome_scene(tmp_path, "Forest", FOREST_SCENE)
    _write_biome_scene(tmp_path, "Snow_Ice", SNOW_SCENE)
    out = tmp_path / "acc"
    code, stdout, err = run(capsys, "evaluate", "--dataset", "biome_scenes", "--root", tmp_path,
                            "--option", "window=[8, 8, 16, 24]", "--option", "max_bytes=1e6",
                            "--option", f"scenes=['{SNOW_SCENE}']", "--bootstrap", "0",
                            "--device", "cpu", "--out", out)
    assert code == 0, err
    assert "1 images" in stdout  # one scene, not both
    report = json.loads((out / "evaluation.json").read_text())
    (row,) = report["rows"]
    confusion = row["confusion"]
    assert sum(confusion.values()) == 16 * 24  # the window's pixels, every one labelled
    # Without the window the whole scene is read: more pixels, so the option was used.
    code, _, err = run(capsys, "evaluate", "--dataset", "biome_scenes", "--root", tmp_path,
                       "--option", f"scenes=['{SNOW_SCENE}']", "--bootstrap", "0",
                       "--device", "cpu", "--out", out, "--overwrite")
    assert code == 0, err
    (row,) = json.loads((out / "evaluation.json").read_text())["rows"]
    assert sum(row["confusion"].values()) > 16 * 24
    # A VALUE that is not TOML stays the string given (a path, say).
    assert evaluate_command.dataset_options(["mtl_dir=/data/38-Cloud mtl", "sun_elevation_deg=35.5"]) \
        == {"mtl_dir": "/data/38-Cloud mtl", "sun_elevation_deg": 35.5}

    for options, fragments in [
        (["windw=[0, 0, 8, 8]"], ["no option(s) ['windw']", "window"]),
        (["window"], ["'window' is not KEY=VALUE"]),
        (["max_bytes=1", "max_bytes=2"], ["max_bytes is given twice"]),
        ([f"scenes={SNOW_SCENE}"], ["scenes must be a list", f"write scenes=['{SNOW_SCENE}']"]),
    ]:
        fresh = tmp_path / "refused"
        argv = ["evaluate", "--dataset", "biome_scenes", "--root", tmp_path, "--out", fresh]
        for o in options:
            argv += ["--option", o]
        code, _, err = run(capsys, *argv)
        assert_one_line_error(code, err, "evaluate", *fragments)
        assert not fresh.exists()


def test_evaluate_usage_error(capsys):
    code, _, err = run(capsys, "evaluate", "--bootstrap", "-1", "--dataset", "biome_patches")
    assert code == 2 and "must be 0 or more" in err


# ------------------------------------------------------------------------------- train


TINY = {
    "name": "tiny-cli-train",
    "model": {"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]},
    "patch_size": 32, "batch_size": 2, "steps": 2, "steps_per_epoch": 2,
    "optimizer": "adamw", "lr": 1e-3,
    "val_band_sets": {"all": None},
}


def test_train_writes_a_loadable_model(shared_data, tmp_path, capsys, one_torch_thread):
    from sensei_xr.models import load_model

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    stem = tmp_path / "models" / "tiny"
    code, stdout, err = run(capsys, "train", "--config", config, "--data-dir", shared_data,
                            "--out", f"{stem}.safetensors", "--device", "cpu")
    assert code == 0, err
    model = load_model(stem)
    assert model.card["name"] == "tiny-cli-train"
    assert model.card["training"]["steps_done"] == 2 and model.card["training"]["device"] == "cpu"
    assert "step 2: loss" in stdout and f"wrote {stem}.safetensors" in stdout
    # A finished model is not replaced without --overwrite.
    code, _, err = run(capsys, "train", "--config", config, "--data-dir", shared_data, "--out", stem)
    assert_one_line_error(code, err, "train", "tiny.safetensors exists", "--overwrite")


def test_train_errors_exit_2(shared_data, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**TINY, "stepz": 3}))
    code, _, err = run(capsys, "train", "--config", bad, "--out", tmp_path / "m")
    assert_one_line_error(code, err, "train", "unknown training option(s) ['stepz']")
    code, _, err = run(capsys, "train", "--config", tmp_path / "missing.toml", "--out", tmp_path / "m")
    assert_one_line_error(code, err, "train", "missing.toml not found")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(TINY))
    code, _, err = run(capsys, "train", "--config", good, "--data-dir", tmp_path / "nowhere",
                       "--out", tmp_path / "m")
    assert_one_line_error(code, err, "train", "nowhere is not a folder")
    assert not (tmp_path / "m.safetensors").exists()


# ------------------------------------------------------------------------------- bench


STAND_IN = """import json, sys
from pathlib import Path
args = sys.argv[1:]
print("ran {name}", " ".join(args))
target = Path(args[args.index("--json") + 1] if "--json" in args else args[args.index("--out") + 1])
target.parent.mkdir(parents=True, exist_ok=True)
target.with_suffix(".args").write_text(json.dumps(args))
sys.exit({code})
"""


def _stand_in_benchmarks(root: Path, codes: dict[str, int]) -> Path:
    folder = root / "benchmarks"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    for name, code in codes.items():
        (folder / f"{name}.py").write_text(STAND_IN.format(name=name, code=code))
    return folder


def test_bench_runs_the_scripts_present(tmp_path, capsys, monkeypatch):
    folder = _stand_in_benchmarks(tmp_path / "src", {"bench_model": 0, "bench_speed": 0, "scene_report": 0,
                                                     "bench_training": 0})
    monkeypatch.setattr(bench_command, "_benchmarks_dir", lambda: folder)
    out = tmp_path / "bench"
    code, stdout, err = run(capsys, "bench", "--quick", "--out", out)
    assert code == 0, err
    assert json.loads((out / "bench_training.args").read_text()) == [
        "--quick", "--out", str(out.resolve() / "bench_training")]
    assert json.loads((out / "bench_model.args").read_text()) == [
        "--size", "64", "--repeats", "1", "--threads", "1", "--json", str(out.resolve() / "bench_model.json")]
    assert json.loads((out / "bench_speed.args").read_text()) == ["--quick", "--out", str(out.resolve() / "bench_speed")]
    assert not (out / "scenes.args").exists()  # scene_report has no quick mode: skipped by --quick
    code, stdout, err = run(capsys, "bench", "--out", out)
    assert code == 0, err
    assert json.loads((out / "bench_speed.args").read_text()) == ["--out", str(out.resolve() / "bench_speed")]
    assert json.loads((out / "scenes.args").read_text()) == ["--out", str(out.resolve() / "scenes")]


def test_bench_errors_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench_command, "_benchmarks_dir", lambda: None)
    code, _, err = run(capsys, "bench", "--quick", "--out", tmp_path / "b")
    assert_one_line_error(code, err, "bench", "needs a source checkout")
    folder = _stand_in_benchmarks(tmp_path / "src", {"bench_model": 0, "bench_scale": 3})
    monkeypatch.setattr(bench_command, "_benchmarks_dir", lambda: folder)
    code, _, err = run(capsys, "bench", "--quick", "--out", tmp_path / "b")
    assert_one_line_error(code, err, "bench", "bench_scale (exit 3)")
    assert (tmp_path / "b" / "bench_model.args").exists()  # the others still ran


def test_benchmarks_dir_is_this_checkouts():
    folder = bench_command._benchmarks_dir()
    assert folder is not None and (folder / "bench_model.py").is_file()
