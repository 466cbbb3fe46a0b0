"""Weights I/O: safetensors + card round trip, integrity checks, registry, no pickle."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch

from sensei_xr.models import WeightsError, build_model, list_models, load_model, save_model
from sensei_xr.models import weights as W



# Small tensors: one torch thread is fastest, and immune to other jobs on shared cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

CARD = {
    "name": "test-model",
    "training": {"data": "synthetic", "recipe": {"steps": 0, "lr": 1e-3}},
    "validation_metrics": {"all": {"f1": 0.5, "overall_accuracy": 0.6}},
    "notes": "kept as given",
    "sha256": "user value must not win",
}


def _model(head: str = "pixelnet", classes=("clear", "cloud"), encoder="sensei", in_bands=None):
    torch.manual_seed(0)
    cfg = {"encoder": encoder, "head": head, "classes": list(classes)}
    if in_bands is not None:
        cfg["in_bands"] = in_bands
    model = build_model(cfg)
    model.train()
    n = in_bands or 4
    with torch.no_grad():  # non-trivial BatchNorm buffers, so they are checked too
        model(torch.rand(4, n, 16, 16), torch.rand(n, 3))
    return model.eval()


@pytest.fixture()
def saved(tmp_path):
    model = _model()
    stem = tmp_path / "m"
    save_model(model, stem, card=CARD)
    return model, stem


def test_round_trip(saved):
    model, stem = saved
    loaded = load_model(str(stem) + ".safetensors")
    assert not loaded.training
    ref, got = model.state_dict(), loaded.state_dict()
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    x, d = torch.rand(2, 5, 12, 12), torch.rand(5, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, d), model(x, d), rtol=0, atol=0)
    card = loaded.card
    assert card["sha256"] == loaded.sha256 == W.file_sha256(str(stem) + ".safetensors")
    assert card["format"] == W.FORMAT and card["format_version"] == W.FORMAT_VERSION
    assert card["architecture"] == model.config == loaded.config
    assert card["classes"] == ["clear", "cloud"]
    assert card["training"] == CARD["training"]
    assert card["validation_metrics"] == CARD["validation_metrics"]
    assert card["notes"] == "kept as given" and card["name"] == "test-model"
    assert card["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert loaded.source == str((stem.parent / "m.safetensors").resolve())


def test_load_by_card_path_or_stem(saved):
    _, stem = saved
    a = load_model(str(stem) + ".json")
    b = load_model(stem)
    assert a.sha256 == b.sha256


def test_baseline_and_multiclass_round_trip(tmp_path):
    model = _model("deeplabv3plus", ("clear", "thin_cloud", "thick_cloud"), encoder=None, in_bands=3)
    save_model(model, tmp_path / "base.safetensors")
    loaded = load_model(tmp_path / "base.safetensors")
    assert loaded.encoder is None and loaded.in_bands == 3
    assert loaded.cloud_class_indices == (1, 2)
    x = torch.rand(1, 3, 19, 23)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, torch.rand(3, 3)), model(x, torch.rand(3, 3)))


def test_file_is_safetensors_not_pickle(saved):
    _, stem = saved
    raw = (stem.parent / "m.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"]["format"] == W.FORMAT
    assert json.loads(header["__metadata__"]["config"])["head"] == "pixelnet"
    assert not raw.startswith(b"\x80")  # a pickle would start with its protocol opcode
    assert not raw.startswith(b"PK")  # torch.save's zip container


def test_loading_never_unpickles(saved, monkeypatch):
    _, stem = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling is not allowed")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert load_model(stem).sha256


def test_tampered_byte(saved):
    _, stem = saved
    path = stem.parent / "m.safetensors"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit of one weight
    path.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match=r"m\.safetensors.*sha256.*(copy|download)"):
        load_model(stem)


def test_truncated_file(saved):
    _, stem = saved
    path = stem.parent / "m.safetensors"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(WeightsError, match=r"m\.safetensors.*truncated"):
        load_model(stem)


def test_truncated_file_with_matching_card(saved):
    """Even when the card's sha256 was updated to match, a broken file is a WeightsError."""
    _, stem = saved
    path, card_path = stem.parent / "m.safetensors", stem.parent / "m.json"
    path.write_bytes(path.read_bytes()[:20])
    card = json.loads(card_path.read_text())
    card["sha256"] = W.file_sha256(path)
    card_path.write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=r"not a readable safetensors file"):
        load_model(stem)


def test_missing_card(saved):
    _, stem = saved
    (stem.parent / "m.json").unlink()
    with pytest.raises(WeightsError, match=r"m\.json is missing"):
        load_model(stem)


def test_missing_weights(saved):
    _, stem = saved
    (stem.parent / "m.safetensors").unlink()
    with pytest.raises(WeightsError, match=r"m\.safetensors not found"):
        load_model(stem)


def test_unreadable_card(saved):
    _, stem = saved
    (stem.parent / "m.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not readable JSON"):
        load_model(stem)


@pytest.mark.parametrize("change", [
    {"classes": ["clear", "cloud", "shadow"]},  # classifier has 2 outputs, not 3
    {"head": "deeplabv3plus"},  # a different network altogether
    {"encoder": None, "in_bands": 4},  # no encoder tensors expected
])
def test_architecture_mismatch(saved, change):
    _, stem = saved
    card_path = stem.parent / "m.json"
    card = json.loads(card_path.read_text())
    card["architecture"].update(change)
    card_path.write_text(json.dumps(card))
    with pytest.raises(WeightsError, match=r"m\.safetensors do not fit the architecture.*m\.json"):
        load_model(stem)


def test_invalid_architecture_in_card(saved):
    _, stem = saved
    card_path = stem.parent / "m.json"
    card = json.loads(card_path.read_text())
    card["architecture"]["head"] = "unet"
    card_path.write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="invalid architecture"):
        load_model(stem)


def test_newer_format_version(saved):
    _, stem = saved
    card_path = stem.parent / "m.json"
    card = json.loads(card_path.read_text())
    card["format_version"] = W.FORMAT_VERSION + 1
    card_path.write_text(json.dumps(card))
    with pytest.raises(WeightsError, match="upgrade sensei_xr"):
        load_model(stem)


def test_shipped_model_registry(monkeypatch, tmp_path):
    registry = tmp_path / "registry"
    save_model(_model(), registry / "tiny", card={"name": "tiny", "summary": "a tiny test model",
                                                   "validation_metrics": {"all": {"f1": 0.875}}})
    monkeypatch.setattr(W, "REGISTRY_DIR", registry)
    monkeypatch.chdir(tmp_path)  # no file called "tiny" here: resolved through the registry
    models = list_models()
    assert list(models) == ["tiny"]
    assert "a tiny test model" in models["tiny"] and "0.875" in models["tiny"]
    model = load_model("tiny")
    assert model.source == "tiny" and model.card["name"] == "tiny"
    with pytest.raises(WeightsError, match="available models: tiny"):
        load_model("huge")
    # An alias names a shipped model; one naming nothing is refused with the fix.
    (registry / W.ALIASES_FILE).write_text(json.dumps({"default": "tiny"}))
    assert list(list_models()) == ["default", "tiny"] and list_models()["default"] == "alias of tiny"
    assert load_model("default").sha256 == model.sha256
    (registry / W.ALIASES_FILE).write_text(json.dumps({"default": "gone"}))
    with pytest.raises(WeightsError, match="'gone', which is not a shipped model"):
        load_model("default")


def test_every_shipped_model_verifies():
    """Whatever ships in the registry (nothing, or a default) has a card and matching sha256."""
    aliases = W.registry_aliases()
    assert "default" in aliases
    for name, summary in list_models().items():
        assert not summary.startswith("(unusable"), summary
        model = load_model(name)
        assert model.sha256 == model.card["sha256"] and model.source == aliases.get(name, name)


def test_batchnorm_calibrations_round_trip(tmp_path):
    from sensei_xr.bands import BandDescriptors

    model = _model()
    desc = BandDescriptors.from_sensor("landsat8_oli_tirs", ["B2", "B3", "B4"])
    stats = {k: torch.rand_like(v) for k, v in model.head.state_dict().items() if k.endswith("running_mean")}
    model.set_bn_calibration("RGB", desc.normalised(), stats)
    card = save_model(model, tmp_path / "m")
    assert card["bn_calibrations"] == ["RGB"]
    loaded = load_model(tmp_path / "m")
    assert list(loaded.bn_calibrations) == ["RGB"]
    for k, v in stats.items():
        assert torch.equal(loaded.bn_calibrations["RGB"][1][k], v)
    assert loaded.bn_calibration_for(desc.normalised()) == "RGB"


def test_saved_files_get_the_mode_of_any_new_file(tmp_path):
    """Written through a private temporary file, the weights and card still end up readable
    as any file the user creates there (not 0600)."""
    import os

    written = save_model(build_model({}), tmp_path / "m")
    (tmp_path / "plain").write_text("x")
    plain = os.stat(tmp_path / "plain").st_mode & 0o777
    for path in (tmp_path / "m.safetensors", tmp_path / "m.json"):
        assert os.stat(path).st_mode & 0o777 == plain, path
    assert written["sha256"]
