"""Weights I/O: safetensors + a JSON model card; a registry of shipped models.

A saved model is two files side by side:

* ``<stem>.safetensors`` - the state dict (tensors only: loading never unpickles), with
  the architecture config in its metadata;
* ``<stem>.json`` - the model card: format version, architecture config, classes,
  training data and recipe, validation metrics (from the ``card`` given to
  :func:`save_model`), parameter count and the sha256 of the safetensors file.

:func:`load_model` checks the sha256 before reading any tensor, then that every tensor
fits the architecture; any problem raises :class:`WeightsError` saying which file, what
is wrong and how to fix it. Shipped models live in ``sensei_xr/models/registry`` as
``<name>.safetensors`` + ``<name>.json`` and are loaded by name.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from .cloud_model import CloudModel, _normalise_config, build_model
from .ensemble import CloudEnsemble, build_ensemble, is_ensemble_config
from ..errors import WeightsError
from ..spectral.snow import NirSnowTest, SnowTest
from ..spectral.warm import WarmSurfaceTest

__all__ = [
    "WeightsError",
    "save_model",
    "load_model",
    "weights_file",
    "list_models",
    "REGISTRY_DIR",
    "FORMAT",
    "FORMAT_VERSION",
    "file_sha256",
    "registry_aliases",
]

#: Folder of the shipped models.
REGISTRY_DIR = Path(__file__).resolve().parent / "registry"
#: Identifies sensei_xr model cards and weights files.
FORMAT = "sensei_xr.model"
#: Version of the card / weights layout this code writes and reads.
FORMAT_VERSION = 1
# Tensor-name prefix of per-band-set batch-norm statistics (CloudModel.bn_calibrations).
_CALIBRATION = "bn_calibration"
#: Aliases of shipped models (JSON ``{alias: name}``) in the registry folder.
ALIASES_FILE = "aliases.json"
_WEIGHTS_SUFFIX = ".safetensors"
_CARD_SUFFIX = ".json"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.name.endswith(_WEIGHTS_SUFFIX):
        return p.with_name(p.name[: -len(_WEIGHTS_SUFFIX)])
    if p.name.endswith(_CARD_SUFFIX):
        return p.with_name(p.name[: -len(_CARD_SUFFIX)])
    return p


def _paths(stem: Path) -> tuple[Path, Path]:
    return stem.with_name(stem.name + _WEIGHTS_SUFFIX), stem.with_name(stem.name + _CARD_SUFFIX)


def _atomic_write(path: Path, write) -> None:
    # Write beside the target and rename, so readers never see half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file private (0600); give it the mode any new file gets here.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("sensei_xr")
    except Exception:
        return "unknown"


def _members(model: CloudModel | CloudEnsemble) -> list[tuple[str, CloudModel]]:
    """(tensor-name prefix, model) of each network whose calibrations are saved."""
    if isinstance(model, CloudEnsemble):
        return [(f"members.{i}.", m) for i, m in enumerate(model.members)]
    return [("", model)]


def _calibration_names(model: CloudModel | CloudEnsemble) -> list[str]:
    return model.bn_calibration_names if isinstance(model, CloudEnsemble) else sorted(model.bn_calibrations)


def save_model(model: CloudModel | CloudEnsemble, path: str | os.PathLike,
               card: Mapping[str, Any] | None = None) -> dict:
    """Write ``<path>.safetensors`` and its model card ``<path>.json``.

    Parameters
    ----------
    model : CloudModel or CloudEnsemble
        The model to save (any device; tensors are written from CPU copies).
    path : path-like
        Output stem; a ``.safetensors`` or ``.json`` suffix is stripped.
    card : dict, optional
        Free-form card content kept as given: e.g. ``name``, ``training`` (data,
        recipe), ``validation_metrics``. The keys ``format``, ``format_version``,
        ``architecture``, ``classes``, ``num_parameters``, ``snow_test``,
        ``nir_snow_test`` and ``warm_test`` (the model's, or null), ``weights_file`` and ``sha256`` are
        filled in here.

    Returns
    -------
    dict
        The card written.
    """
    from safetensors.torch import save_file

    if not isinstance(model, (CloudModel, CloudEnsemble)):
        raise TypeError(f"save_model takes a CloudModel or CloudEnsemble, got {type(model).__name__}")
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    weights_path, card_path = _paths(stem)
    config = model.config
    # clone(): safetensors refuses tensors that share storage.
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    for prefix, member in _members(model):
        for name, (desc, buffers) in member.bn_calibrations.items():
            state[f"{prefix}{_CALIBRATION}/{name}/descriptors"] = desc.detach().cpu().contiguous().clone()
            for key, value in buffers.items():
                state[f"{prefix}{_CALIBRATION}/{name}/{key}"] = value.detach().cpu().contiguous().clone()
    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "config": json.dumps(config)}
    _atomic_write(weights_path, lambda tmp: save_file(state, tmp, metadata=metadata))
    sha = file_sha256(weights_path)
    user = dict(card or {})
    out = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": str(user.pop("name", stem.name)),
        "summary": user.pop("summary", None),
        "architecture": config,
        "classes": list(model.classes),
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "bn_calibrations": _calibration_names(model),
        "snow_test": model.snow_test.as_dict() if getattr(model, "snow_test", None) is not None else None,
        "nir_snow_test": (model.nir_snow_test.as_dict() if getattr(model, "nir_snow_test", None) is not None
                          else None),
        "warm_test": model.warm_test.as_dict() if getattr(model, "warm_test", None) is not None else None,
        "training": user.pop("training", None),
        "validation_metrics": user.pop("validation_metrics", None),
    }
    reserved = set(out) - {"name", "summary", "training", "validation_metrics"}
    # Free-form keys are kept; the ones describing this file are always ours.
    out.update({k: v for k, v in user.items() if k not in reserved})
    out.update({
        "weights_file": weights_path.name,
        "sha256": sha,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sensei_xr_version": _package_version(),
    })

    def write_card(tmp: str) -> None:
        Path(tmp).write_text(json.dumps(out, indent=2, sort_keys=False, default=str) + "\n")

    _atomic_write(card_path, write_card)
    # The model now is that file: graphs reference it by path (any worker can load it).
    model.card, model.sha256, model.source = out, sha, str(weights_path.resolve())
    return out


def _registry_names() -> list[str]:
    if not REGISTRY_DIR.is_dir():
        return []
    return sorted(p.name[: -len(_WEIGHTS_SUFFIX)] for p in REGISTRY_DIR.glob("*" + _WEIGHTS_SUFFIX))


def registry_aliases() -> dict[str, str]:
    """Other names of shipped models (``registry/aliases.json``), e.g. ``{"default": NAME}``."""
    path = REGISTRY_DIR / ALIASES_FILE
    if not path.is_file():
        return {}
    aliases = json.loads(path.read_text())
    names = _registry_names()
    for alias, target in aliases.items():
        if target not in names:
            raise WeightsError(f"{path}: alias {alias!r} names {target!r}, which is not a shipped model "
                               f"({', '.join(names)}); reinstall sensei_xr")
    return dict(aliases)


def _read_card(card_path: Path, weights_path: Path) -> dict:
    if not card_path.is_file():
        raise WeightsError(
            f"model card {card_path} is missing (it must sit beside {weights_path.name}): it holds the "
            "architecture and the file's sha256; copy it along with the weights, or re-save the "
            "model with sensei_xr.models.save_model"
        )
    try:
        card = json.loads(card_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightsError(f"model card {card_path} is not readable JSON ({e}); restore it from the "
                           "original copy or re-save the model") from e
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise WeightsError(f"{card_path} is not a sensei_xr model card (no \"format\": \"{FORMAT}\")")
    version = card.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise WeightsError(
            f"model card {card_path} has format_version {version!r}; this sensei_xr reads versions "
            f"1..{FORMAT_VERSION}: upgrade sensei_xr to load it"
        )
    for key in ("architecture", "sha256"):
        if key not in card:
            raise WeightsError(f"model card {card_path} has no {key!r}; re-save the model with save_model")
    return card


def _check_state(model: CloudModel | CloudEnsemble, state: Mapping[str, torch.Tensor], weights_path: Path,
                 card_path: Path, saved_config: Any) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs architecture {tuple(v.shape)}"
             for k, v in expected.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if wrong:
        parts.append(f"{len(wrong)} tensors of the wrong shape (e.g. {'; '.join(wrong[:3])})")
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    hint = ""
    if saved_config is not None and saved_config != model.config:
        hint = f"; the weights were saved for the architecture {saved_config}"
    raise WeightsError(
        f"the tensors in {weights_path} do not fit the architecture {model.config} in {card_path}: "
        f"{', '.join(parts)}{hint}. Use the card that was written with these weights, or re-save the model"
    )


def _resolve(name_or_path: str | os.PathLike) -> tuple[Path, str]:
    """(stem, source) of a registry name or a path."""
    text = os.fspath(name_or_path)
    looks_like_path = (
        isinstance(name_or_path, os.PathLike) or os.sep in text or "/" in text
        or text.endswith((_WEIGHTS_SUFFIX, _CARD_SUFFIX))
    )
    stem = _stem(text)
    weights_path, card_path = _paths(stem)
    if looks_like_path:
        return stem, str(weights_path.resolve())
    names = _registry_names()
    text = registry_aliases().get(text, text)
    if text in names:  # a bare name means a shipped model, even if a file has that name here
        return REGISTRY_DIR / text, text
    if weights_path.exists():
        return stem, str(weights_path.resolve())
    known = names + [f"{a} (= {t})" for a, t in registry_aliases().items()]
    raise WeightsError(f"no model named {text!r}; available models: {', '.join(known)} "
                       "(or pass the path of a .safetensors file)")


def weights_file(name_or_path: str | os.PathLike) -> Path:
    """The ``.safetensors`` file :func:`load_model` would read for a name or path (it may
    not exist; :func:`load_model` says so)."""
    return _paths(_resolve(name_or_path)[0])[0]


def load_model(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> CloudModel | CloudEnsemble:
    """Load a saved model by registry name or path, verified against its card.

    Parameters
    ----------
    name_or_path : str or path-like
        A shipped model's name (see :func:`list_models`), or the path of a saved
        model's ``.safetensors`` file, its ``.json`` card, or their common stem.
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    CloudModel or CloudEnsemble
        In eval mode, with ``card`` (dict), ``sha256`` and ``source`` set; a
        :class:`~sensei_xr.models.ensemble.CloudEnsemble` when the card's architecture is
        ``{"ensemble": [...]}``.

    Raises
    ------
    WeightsError
        Unknown name; missing weights or card; sha256 mismatch (tampered or truncated
        file); unreadable file; tensors that do not fit the card's architecture.
    """
    from safetensors import safe_open

    stem, source = _resolve(name_or_path)
    weights_path, card_path = _paths(stem)
    if not weights_path.is_file():
        raise WeightsError(f"weights file {weights_path} not found" + (
            f" (its card {card_path.name} exists: copy the .safetensors file beside it)"
            if card_path.is_file() else ""))
    card = _read_card(card_path, weights_path)
    sha = file_sha256(weights_path)
    if sha != card["sha256"]:
        raise WeightsError(
            f"{weights_path} does not match its card {card_path.name}: sha256 {sha[:16]}... but the "
            f"card says {str(card['sha256'])[:16]}... The file was modified, truncated or replaced; "
            "download or copy it again (with its card), or re-save the model"
        )
    try:
        arch = card["architecture"]
        model = build_ensemble(arch) if is_ensemble_config(arch) else build_model(_normalise_config(arch))
    except (TypeError, ValueError) as e:
        raise WeightsError(f"model card {card_path} has an invalid architecture: {e}") from e
    try:
        state = {}
        with safe_open(str(weights_path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            for key in f.keys():
                state[key] = f.get_tensor(key)
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise WeightsError(f"{weights_path} is not a readable safetensors file ({e}); "
                           "download or copy it again, or re-save the model") from e
    saved_config = None
    if meta.get("config"):
        try:
            saved_config = json.loads(meta["config"])
        except json.JSONDecodeError:
            saved_config = None
    members = dict(_members(model))
    calibrations: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key in [k for k in state if f"{_CALIBRATION}/" in k]:
        head, name, rest = key.split("/", 2)
        prefix = head[: -len(_CALIBRATION)]
        if prefix not in members or not head.endswith(_CALIBRATION):
            raise WeightsError(f"{weights_path}: tensor {key!r} is a batch-norm calibration of no model in "
                               f"{card_path.name}'s architecture; use the card written with these weights")
        calibrations.setdefault((prefix, name), {})[rest] = state.pop(key)
    _check_state(model, state, weights_path, card_path, saved_config)
    model.load_state_dict(state, strict=True)
    for (prefix, name), tensors in calibrations.items():
        try:
            members[prefix].set_bn_calibration(name, tensors.pop("descriptors"), tensors)
        except (KeyError, ValueError) as e:
            raise WeightsError(f"{weights_path}: the batch-norm calibration {name!r} does not fit the model ({e}); "
                               "re-save the model") from e
    model = model.to(device).eval()
    model.snow_test = _pixel_test(card, card_path, "snow_test", SnowTest)
    model.nir_snow_test = _pixel_test(card, card_path, "nir_snow_test", NirSnowTest)
    model.warm_test = _pixel_test(card, card_path, "warm_test", WarmSurfaceTest)
    model.card, model.sha256, model.source = card, sha, source
    return model


def _pixel_test(card: dict, card_path: Path, key: str, kind: type):
    """The card's pixel test under ``key`` as a ``kind`` (None when it has none: cards
    written before a test existed have no key)."""
    spec = card.get(key)
    if spec is None:
        return None
    try:
        return kind(**spec)
    except (TypeError, ValueError) as e:
        raise WeightsError(f"model card {card_path} has an invalid {key} {spec!r} ({e}); set it to null "
                           "or to the test the model was saved with") from e


def list_models() -> dict[str, str]:
    """Shipped models and a one-line summary of each card; aliases name their model.

    Returns
    -------
    dict
        ``{name: summary}``, aliases first (``{"default": "alias of NAME"}``).
    """
    out = {alias: f"alias of {target}" for alias, target in registry_aliases().items()}
    for name in _registry_names():
        weights_path, card_path = _paths(REGISTRY_DIR / name)
        try:
            card = _read_card(card_path, weights_path)
        except WeightsError as e:
            out[name] = f"(unusable: {e})"
            continue
        arch = card.get("architecture", {})
        nets = [f"{a.get('encoder') or 'no encoder'} + {a.get('head')}"
                for a in (arch.get("ensemble") or [arch])]
        parts = [str(card.get("summary") or card.get("name", name)),
                 f"mean of {len(nets)}: {', '.join(nets)}" if is_ensemble_config(arch) else nets[0],
                 "classes " + "/".join(card.get("classes", []))]
        cv = (card.get("cross_validation") or {}).get("summary")
        metrics = card.get("validation_metrics")
        if isinstance(cv, dict) and cv:
            parts.append("CV mean OA " + ", ".join(f"{k} {v['cv_mean_oa']:.3f}" for k, v in cv.items()))
        elif isinstance(metrics, dict):
            pooled = metrics.get("all", metrics)
            if isinstance(pooled, dict) and "f1" in pooled:
                parts.append(f"val F1 {float(pooled['f1']):.3f}")
        parts.append(f"sha256 {str(card.get('sha256', ''))[:12]}")
        out[name] = "; ".join(parts)
    return out
