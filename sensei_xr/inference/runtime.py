"""Per-process model runtime: device choice, execution backend, bounded model caches,
torch threads.

Task graphs carry a :class:`ModelRef` (a name or path plus the weights' sha256, or the
hash of an in-memory model's weights), never the model itself: each worker process loads
a model once and keeps the :data:`MODEL_CACHE_SIZE` most recently used in ``_MODELS``,
and keeps one folded network per model, band set and device, the
:data:`FOLDED_CACHE_SIZE` most recently used, in ``_FOLDED``.

On a CPU the folded network runs in ONNX Runtime (``backend="auto"``, when installed):
exported once per process, band set and thread count (about 0.5 s), it ran the default
model 2.5-4x faster than torch on this project's CPUs (`docs/benchmarks.md`). On CUDA,
and with ``backend="torch"``, torch runs it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

__all__ = [
    "ModelRef",
    "resolve_device",
    "check_device",
    "get_runner",
    "get_member_runner",
    "check_backend",
    "BACKENDS",
    "torch_threads",
    "host_cores",
    "MODEL_CACHE_SIZE",
    "FOLDED_CACHE_SIZE",
]


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"${name} must be a positive integer (entries kept per process), got {text!r}")
    return value


#: Loaded models kept per process, least recently used dropped first
#: (``$SENSEI_XR_MODEL_CACHE``). The default model takes about 11 MiB.
MODEL_CACHE_SIZE = _env_int("SENSEI_XR_MODEL_CACHE", 2)
#: Folded networks (one per model, band set and device) kept per process, least recently
#: used dropped first (``$SENSEI_XR_FOLDED_CACHE``). One of the default model takes
#: about 11.5 MiB and 35 ms to fold on a CPU core.
FOLDED_CACHE_SIZE = _env_int("SENSEI_XR_FOLDED_CACHE", 8)

_LOCK = threading.Lock()
# Per-key loading: the first task of a process loads (and folds) a model while the
# others asking for the same key wait for it, instead of every Dask thread loading its
# own copy at once. Entries live only while someone is making or waiting for the key.
_KEY_LOCKS: dict[tuple, "_Pending"] = {}
_MODELS: "OrderedDict[tuple, object]" = OrderedDict()
_FOLDED: "OrderedDict[tuple, object]" = OrderedDict()
# ONNX Runtime sessions of folded networks, by the folded key and the thread count.
_SESSIONS: "OrderedDict[tuple, object]" = OrderedDict()
# Private copies of models handed over as Python objects, by ModelRef.source. Weak: a
# copy lives as long as a graph (its ModelRef) or the model cache holds it.
_IN_MEMORY: "weakref.WeakValueDictionary[str, object]" = weakref.WeakValueDictionary()
# State hash of the weights in a file, by (source, file sha256): tells whether a loaded
# model object still holds its file's weights. Small values; bounded all the same.
_FILE_STATE: "OrderedDict[tuple[str, str], str | None]" = OrderedDict()
_FILE_STATE_SIZE = 64


@dataclass(frozen=True)
class ModelRef:
    """A small, picklable handle on a model.

    Attributes
    ----------
    source : str
        Registry name or weights path; ``"memory:<sha>"`` for a model object whose weights
        are not those of a file (never saved, or edited since it was loaded or saved).
    sha256 : str
        The weights file's sha256, or for ``memory:`` models the hash of the weights
        (state dict); part of cache keys.
    """

    source: str
    sha256: str
    # The private copy of an in-memory model: kept alive by the graph that holds this
    # reference, never pickled (a distributed worker gets a clear error instead).
    _model: object = field(default=None, compare=False, repr=False)

    def __reduce__(self):
        return (ModelRef, (self.source, self.sha256))

    @property
    def in_memory(self) -> bool:
        return self.source.startswith("memory:")

    @classmethod
    def from_model(cls, model) -> "ModelRef":
        """Reference a model object by its weights.

        A model loaded from a file (``source`` and ``sha256`` set by
        :func:`~sensei_xr.models.load_model`) whose weights are still the file's is
        referenced by the file, so any process can load it. Any other model, including a
        loaded one edited in place (fine-tuned, batch-norm recalibrated), is referenced by
        the hash of its current weights and copied: later edits to the caller's module do
        not change a graph already built.
        """
        import copy

        state = _state_sha(model)
        source = getattr(model, "source", None)
        file_sha = getattr(model, "sha256", None)
        if source is not None and file_sha is not None and _file_state_sha(str(source), str(file_sha)) == state:
            return cls(str(source), str(file_sha))
        key = f"memory:{state}"
        with _LOCK:
            private = _IN_MEMORY.get(key)
        if private is None:
            # A private copy in eval mode: moving it to a device or running it never
            # touches the caller's module. Copied outside the lock (large models).
            copied = copy.deepcopy(model).cpu().eval()
            with _LOCK:
                private = _IN_MEMORY.setdefault(key, copied)
        return cls(key, state, private)

    @classmethod
    def for_loaded(cls, model) -> "ModelRef":
        """Reference a model just loaded from its file (weights known to be the file's)."""
        source, file_sha = str(model.source), str(model.sha256)
        with _LOCK:
            known = (source, file_sha) in _FILE_STATE
        if not known:
            _remember_file_state(source, file_sha, _state_sha(model))
        return cls(source, file_sha)


def _state_sha(model) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes and bytes): its weights.

    About 10 ms for the default model (11 MiB): computed on every call, so an edit made
    in any way (in place, through ``.data``, by ``load_state_dict``) is always seen.
    """
    import hashlib

    import torch

    h = hashlib.sha256()
    tensors = dict(model.state_dict())
    # Per-band-set batch-norm statistics change what the model answers too (an
    # ensemble's are its members').
    members = getattr(model, "members", None)
    for i, member in enumerate(members if members is not None else [model]):
        prefix = f"members.{i}." if members is not None else ""
        for name, (desc, buffers) in sorted(getattr(member, "bn_calibrations", {}).items()):
            tensors.update({f"{prefix}bn_calibration/{name}/descriptors": desc,
                            **{f"{prefix}bn_calibration/{name}/{k}": v for k, v in buffers.items()}})
    for k, v in tensors.items():
        t = v.detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))  # any dtype, bf16 too
    return h.hexdigest()


def _remember_file_state(source: str, file_sha: str, state: str | None) -> None:
    with _LOCK:
        _FILE_STATE[(source, file_sha)] = state
        _FILE_STATE.move_to_end((source, file_sha))
        while len(_FILE_STATE) > _FILE_STATE_SIZE:
            _FILE_STATE.popitem(last=False)


def _file_state_sha(source: str, file_sha: str) -> str | None:
    """State hash of the weights file ``source`` if its sha256 is ``file_sha``, else None.

    Loads the file once per process and (source, sha); the loaded model goes to the model
    cache, so the CPU runtime does not load it a second time.
    """
    with _LOCK:
        if (source, file_sha) in _FILE_STATE:
            _FILE_STATE.move_to_end((source, file_sha))
            return _FILE_STATE[(source, file_sha)]
    from ..models import load_model

    try:
        loaded = load_model(source)
    except Exception:  # moved, deleted or replaced: the object is not the file's model
        return None
    state = _state_sha(loaded) if getattr(loaded, "sha256", None) == file_sha else None
    if state is not None:
        _put(_MODELS, (source, file_sha, "cpu"), loaded.eval(), MODEL_CACHE_SIZE)
    _remember_file_state(source, file_sha, state)
    return state


def check_device(device) -> str:
    """The device as a string, refused if torch cannot parse it (``"auto"`` is kept).

    Availability is checked where the work runs (:func:`resolve_device`), so a graph
    built on a machine without a GPU can run on workers with one.
    """
    import torch

    if isinstance(device, torch.device):
        return str(device)
    if not isinstance(device, str):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (or a torch.device), got {device!r}")
    if device == "auto":
        return device
    try:
        torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"device={device!r} is not a torch device: use 'auto' (CUDA when the worker "
                         "has one, else CPU), 'cpu', 'cuda' or 'cuda:N'") from e
    return device


def resolve_device(device: str = "auto") -> str:
    """``"auto"`` -> ``"cuda"`` when a CUDA device is visible, else ``"cpu"``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was asked for but torch sees no CUDA device; use device='cpu'")
    return device


def host_cores() -> int:
    """CPU cores this process may use (affinity and cgroup quota counted, as Dask counts them)."""
    from dask.system import CPU_COUNT

    return max(1, int(CPU_COUNT))


def _dask_pool_size() -> int | None:
    """Threads of the dask thread pool running the current task; None outside one.

    The threaded scheduler runs tasks on a pool's threads; the synchronous scheduler runs
    them on the thread that called ``compute``, which belongs to no dask pool.
    """
    import dask
    import dask.threaded as threaded

    me = threading.current_thread()
    pools = [threaded.default_pool, dask.config.get("pool", None)]
    with threaded.pools_lock:
        pools += [p for per_thread in threaded.pools.values() for p in per_thread.values()]
    for pool in pools:
        if me in getattr(pool, "_threads", ()):
            return max(1, int(getattr(pool, "_max_workers", 1)))
    return None


def _threads_for_this_task(tasks: int | None = None) -> int | None:
    """Torch threads for a task, from the scheduler running it; None: leave as they are.

    The cores are shared among the tasks that can run at once on the host:

    * ``dask.distributed``: the worker's threads times the workers on the host
      (``$SENSEI_XR_WORKERS_PER_HOST`` if set, else ``cores // threads_per_worker``, what
      ``LocalCluster`` starts by default);
    * threaded scheduler: the pool's threads;
    * synchronous scheduler: the caller's own setting (torch's default: every physical
      core): the task runs on the caller's thread, alone.

    ``tasks``, the tasks of the graph, caps that count: a scene in one chunk gets every
    core, not ``1 / pool threads`` of them.
    """
    cores = host_cores()
    try:
        from distributed import get_worker

        nthreads = max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        nthreads = None
    if nthreads is not None:
        per_host = int(os.environ.get("SENSEI_XR_WORKERS_PER_HOST", max(1, cores // nthreads)))
        concurrent = nthreads * per_host
    else:
        concurrent = _dask_pool_size()
        if concurrent is None:
            return None
    if tasks is not None:
        concurrent = min(concurrent, max(1, int(tasks)))
    return max(1, cores // max(1, concurrent))


@contextmanager
def torch_threads(threads: int | None = None, tasks: int | None = None) -> Iterator[int]:
    """Run a block with ``threads`` torch threads (default: from the scheduler running
    this task and the graph's ``tasks``, see :func:`_threads_for_this_task`), then restore
    the thread's setting.

    torch's CPU thread count is per thread (OpenMP), and new threads start from the last
    value set anywhere; restoring it keeps both the caller's and later threads' settings.
    """
    import torch

    before = torch.get_num_threads()
    wanted = _threads_for_this_task(tasks) if threads is None else threads
    wanted = before if wanted is None else int(wanted)
    if wanted != before:
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


class _Pending:
    """A key being made: its lock, how many threads want it, and the value once made."""

    __slots__ = ("lock", "users", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.users = 0
        self.value = None


def _put(cache: OrderedDict, key: tuple, value, limit: int) -> None:
    with _LOCK:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > max(1, int(limit)):
            cache.popitem(last=False)


def _cached(cache: OrderedDict, key: tuple, make: Callable[[], object], limit: int):
    """``cache[key]``, made by ``make()`` once however many threads ask at once; the cache
    keeps the ``limit`` most recently used keys."""
    with _LOCK:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        pending = _KEY_LOCKS.get(key)
        if pending is None:
            pending = _KEY_LOCKS[key] = _Pending()
        pending.users += 1
    try:
        with pending.lock:
            if pending.value is not None:  # made by another thread while this one waited
                return pending.value
            with _LOCK:
                value = cache.get(key)
            if value is None:
                value = make()
                _put(cache, key, value, limit)
            pending.value = value
            return value
    finally:
        with _LOCK:
            pending.users -= 1
            if pending.users == 0 and _KEY_LOCKS.get(key) is pending:
                del _KEY_LOCKS[key]


def _load(ref: ModelRef, device: str):
    return _cached(_MODELS, (ref.source, ref.sha256, device), lambda: _load_uncached(ref, device),
                   MODEL_CACHE_SIZE)


def _load_uncached(ref: ModelRef, device: str):
    if ref.in_memory:
        import copy

        model = ref._model if ref._model is not None else _IN_MEMORY.get(ref.source)
        if model is None:
            raise RuntimeError(
                "this model was passed as a Python object (never saved, or edited since it was "
                "loaded or saved) and is not known in this worker process; on a distributed "
                "cluster save it (sensei_xr.models.save_model) and pass the saved path as model=..."
            )
        if device != "cpu":
            model = copy.deepcopy(model)
    else:
        from ..models import load_model

        model = load_model(ref.source)
        if getattr(model, "sha256", ref.sha256) != ref.sha256:
            raise RuntimeError(
                f"the weights file of {ref.source!r} changed since the graph was built "
                f"(sha256 {getattr(model, 'sha256', '?')[:12]} != {ref.sha256[:12]}); build the "
                "graph again"
            )
    return model.to(device).eval()


#: Execution backends: ``"auto"`` (ONNX Runtime on a CPU when installed, else torch),
#: ``"torch"``, ``"onnxruntime"`` (CPU only).
BACKENDS = ("auto", "torch", "onnxruntime")


def _onnxruntime_missing() -> str | None:
    """Why ONNX Runtime cannot run here, or None when it can."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime  # noqa: F401
    except ImportError as e:
        return f"{e.name or 'onnxruntime'} is not installed (pip install onnx onnxruntime)"
    return None


def check_backend(backend, device: str) -> str:
    """``backend`` if it names a backend that can run on ``device``; else a clear error."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend == "onnxruntime":
        if device.startswith("cuda"):
            raise ValueError("backend='onnxruntime' runs on the CPU only: use device='cpu', or "
                             "backend='torch' (or 'auto') on CUDA")
        missing = _onnxruntime_missing()
        if missing:
            raise RuntimeError(f"backend='onnxruntime' was asked for but {missing}; or use backend='torch'")
    return backend


def _ort_session(net, n_bands: int, threads: int):
    """An ONNX Runtime session of a folded network, ``threads`` intra-op threads."""
    import io
    import warnings

    import onnxruntime as ort
    import torch

    from ..models.export import default_opset

    module = net
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notices
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (torch.zeros(1, n_bands, 64, 64),), buf, dynamo=False,
                          opset_version=default_opset(), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                                        "logits": {0: "batch", 2: "height", 3: "width"}},
                          do_constant_folding=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle pool threads sleep instead of spinning: other Dask tasks share the cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])


def get_runner(ref: ModelRef, descriptors_norm: np.ndarray, band_key: tuple, device: str,
               backend: str = "auto", threads: int | None = None):
    """A function from a (B, N, P, P) float32 torch batch on ``device`` to (B, C, P, P)
    float32 probabilities on ``device`` (float16 autocast on CUDA).

    The folded network for this model, band set and device is built once per process and
    reused while it is among the :data:`FOLDED_CACHE_SIZE` most recently used; so is its
    ONNX Runtime session (per thread count) when ONNX Runtime runs it.

    Parameters
    ----------
    backend : str
        One of :data:`BACKENDS`.
    threads : int, optional
        CPU threads for ONNX Runtime (torch's current setting when None).
    """
    import torch

    def fold():
        model = _load(ref, device)
        desc = torch.as_tensor(descriptors_norm, dtype=torch.float32, device=device)
        with torch.no_grad():
            # SEnSeI models and ensembles of them take any band set: fold them for this one.
            if hasattr(model, "for_bands") and getattr(model, "in_bands", None) is None:
                net = model.for_bands(desc).to(device).eval()
            else:
                net = _baseline_module(model, desc)
            return net

    key = (ref.source, ref.sha256, device, band_key)
    net = _cached(_FOLDED, key, fold, FOLDED_CACHE_SIZE)
    use_ort = device == "cpu" and backend != "torch" and (backend == "onnxruntime" or not _onnxruntime_missing())
    if use_ort:
        threads = torch.get_num_threads() if threads is None else int(threads)
        n_bands = len(descriptors_norm)
        try:
            session = _cached(_SESSIONS, (*key, threads), lambda: _ort_session(net, n_bands, threads),
                              FOLDED_CACHE_SIZE)
        except Exception as e:
            if backend == "onnxruntime":
                raise RuntimeError(f"ONNX Runtime cannot run this model ({type(e).__name__}: {e}); "
                                   "use backend='torch'") from e
            import warnings

            warnings.warn(f"this model does not export to ONNX ({type(e).__name__}: {e}); torch runs it "
                          "instead (slower on a CPU)", RuntimeWarning, stacklevel=2)
            session = None
    if use_ort and session is not None:

        def run_ort(batch):
            logits = session.run(None, {"images": batch.numpy()})[0]
            return torch.softmax(torch.from_numpy(logits).float(), dim=1)

        return run_ort
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


def get_member_runner(ref: ModelRef, device: str, depth: int = 0):
    """A function from a (B, M, P, P) float32 torch batch of the member's regions on
    ``device`` to its (B, 1, P, P) float32 cloud probability (the model's
    :class:`~sensei_xr.models.pixel_member.PixelMember`, or the fallback at ``depth`` in its
    chain; kept per process like the folded networks; float32 on every device: it is small)."""
    import torch

    from ..models.pixel_member import FoldedPixelMember

    def make():
        member = _load(ref, device).pixel_member
        chain = member.chain() if member is not None else []
        if depth >= len(chain):
            raise RuntimeError(f"the model {ref.source!r} has no pixel member {depth} in this worker; rebuild the graph")
        return FoldedPixelMember(chain[depth].eval()).to(device)

    member = _cached(_FOLDED, (ref.source, ref.sha256, device, "pixel_member", depth), make, FOLDED_CACHE_SIZE)

    def run(batch):
        with torch.inference_mode():
            return member(batch)

    return run


def _baseline_module(model, desc):
    import torch

    class Baseline(torch.nn.Module):
        """A no-SEnSeI model takes fixed bands: descriptors are checked, then ignored."""

        def __init__(self):
            super().__init__()
            self.model = model
            self.register_buffer("desc", desc)

        def forward(self, x):
            return self.model(x, self.desc)

    return Baseline().eval()

