"""Per-process model runtime: device choice, a model cache, torch threads.

Task graphs carry a :class:`ModelRef` (a name or path plus the weights' sha256), never
the model itself: each worker process loads the model once, keeps it in
``_MODELS``, and keeps one folded network per band set in ``_FOLDED``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["ModelRef", "resolve_device", "get_runner", "configure_torch_threads"]

_LOCK = threading.Lock()
# One lock per cache key: the first task of a process loads (and folds) a model while the
# others wait for it, instead of every Dask thread loading its own copy at once.
_KEY_LOCKS: dict[tuple, threading.Lock] = {}
_MODELS: dict[tuple, object] = {}
_FOLDED: dict[tuple, object] = {}
# Models handed over as Python objects (not loadable by name in another process).
_IN_MEMORY: dict[str, object] = {}


@dataclass(frozen=True)
class ModelRef:
    """A small, picklable handle on a model.

    Attributes
    ----------
    source : str
        Registry name or weights path; ``"memory:<sha>"`` for a model object registered in
        this process (threaded schedulers only).
    sha256 : str
        The weights' sha256, part of cache keys.
    """

    source: str
    sha256: str

    @classmethod
    def from_model(cls, model) -> "ModelRef":
        """Reference a loaded model; in-memory models are registered in this process."""
        import copy

        source = getattr(model, "source", None)
        sha = getattr(model, "sha256", None) or _state_sha(model)
        if source is None:
            source = f"memory:{sha}"
            with _LOCK:
                if source not in _IN_MEMORY:
                    # A private copy in eval mode: moving it to a device or running it
                    # never touches the caller's module.
                    _IN_MEMORY[source] = copy.deepcopy(model).cpu().eval()
        return cls(str(source), sha)


def _state_sha(model) -> str:
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a CUDA device is visible, else ``"cpu"``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for but torch sees no CUDA device; use device='cpu'")
    return device


def configure_torch_threads() -> int:
    """Give torch ``cores / concurrent tasks`` threads so workers x threads fit the cores.

    Under ``dask.distributed`` the concurrent tasks on a host are the worker's thread
    count times the workers on the host: ``$SENSEI_XR_WORKERS_PER_HOST`` if set, else
    ``cores // threads_per_worker`` (the most that fit without oversubscription, which is
    what ``LocalCluster`` starts by default). Under the threaded scheduler: dask's pool size.
    """
    import torch

    cores = os.cpu_count() or 1
    try:
        from distributed import get_worker

        nthreads = max(1, int(get_worker().state.nthreads))
        per_host = int(os.environ.get("SENSEI_XR_WORKERS_PER_HOST", max(1, cores // nthreads)))
        concurrent = nthreads * per_host
    except (ImportError, ValueError, AttributeError):
        import dask

        concurrent = int(dask.config.get("num_workers", None) or cores)
    threads = max(1, cores // max(1, concurrent))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def _cached(cache: dict, key: tuple, make):
    """``cache[key]``, made by ``make()`` once per process however many threads ask at once."""
    with _LOCK:
        lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with lock:
        with _LOCK:
            value = cache.get(key)
        if value is None:
            value = make()
            with _LOCK:
                cache[key] = value
    return value


def _load(ref: ModelRef, device: str):
    return _cached(_MODELS, (ref.source, ref.sha256, device), lambda: _load_uncached(ref, device))


def _load_uncached(ref: ModelRef, device: str):
    if ref.source.startswith("memory:"):
        import copy

        model = _IN_MEMORY.get(ref.source)
        if model is not None and device != "cpu":
            model = copy.deepcopy(model)
        if model is None:
            raise RuntimeError(
                "this model was passed as a Python object and is not known in this worker "
                "process; on a distributed cluster save it (sensei_xr.models.save_model) and "
                "pass its path as model=..."
            )
    else:
        from ..models import load_model

        model = load_model(ref.source)
        if getattr(model, "sha256", ref.sha256) != ref.sha256:
            raise RuntimeError(
                f"the weights of {ref.source!r} changed since the graph was built "
                f"(sha256 {getattr(model, 'sha256', '?')[:12]} != {ref.sha256[:12]})"
            )
    return model.to(device).eval()


def get_runner(ref: ModelRef, descriptors_norm: np.ndarray, band_key: tuple, device: str):
    """A function from a (B, N, P, P) float32 torch batch on ``device`` to (B, C, P, P)
    float32 probabilities on ``device`` (float16 autocast on CUDA).

    The folded network for this band set is built once per process and reused.
    """
    import torch

    def fold():
        model = _load(ref, device)
        desc = torch.as_tensor(descriptors_norm, dtype=torch.float32, device=device)
        with torch.no_grad():
            if getattr(model, "encoder", None) is not None:
                return model.for_bands(desc).to(device).eval()
            return _Baseline(model, desc)

    net = _cached(_FOLDED, (ref.source, ref.sha256, device, band_key), fold)
    use_half = device.startswith("cuda")

    def run(batch):
        with torch.inference_mode():
            if use_half:
                with torch.autocast("cuda", dtype=torch.float16):
                    logits = net(batch)
            else:
                logits = net(batch)
            return torch.softmax(logits.float(), dim=1)

    return run


class _Baseline:
    """A no-SEnSeI model takes fixed bands: descriptors are checked, then ignored."""

    def __init__(self, model, desc):
        self.model, self.desc = model, desc

    def __call__(self, x):
        return self.model(x, self.desc)
