"""ONNX export of a model folded for one band set.

The exported graph is :class:`~sensei_xr.models.cloud_model.FoldedCloudModel`: input
``images`` (B, N, H, W) float32, output ``logits`` (B, C, H, W), with dynamic batch,
height and width. The band set is fixed at export time (SEnSeI is folded into the first
convolution), so the graph has no descriptor input; the card's classes, the band count
and the weights' sha256 are written to the ONNX metadata. The graph is the network alone:
what the engine does after it (the edge refinement, the pixel tests, the per-pixel member
the architecture may list) is not in it, and the metadata says so (``sensei_xr.graph``).

Export uses torch's TorchScript-based exporter (``dynamo=False``), which needs only
``onnx``; the default opset is the highest that both it and the installed ``onnx``
support (20 with torch 2.13).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cloud_model import CloudModel

__all__ = ["export_onnx", "default_opset", "FALLBACK_OPSET"]

#: Opset used when the exporter's limits cannot be read.
FALLBACK_OPSET = 17


def default_opset() -> int:
    """Highest opset both torch's TorchScript ONNX exporter and the installed onnx support."""
    try:
        from torch.onnx import _constants

        torch_max = int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET",
                                getattr(_constants, "ONNX_MAX_OPSET", FALLBACK_OPSET)))
    except Exception:
        torch_max = FALLBACK_OPSET
    try:
        import onnx

        onnx_max = int(onnx.defs.onnx_opset_version())
    except Exception:
        onnx_max = torch_max
    return min(torch_max, onnx_max)


def export_onnx(model: CloudModel, descriptors: Any, path: str | os.PathLike, opset: int | None = None,
                sample_size: tuple[int, int] = (64, 64)) -> Path:
    """Export ``model`` folded for the bands ``descriptors`` to ONNX.

    Parameters
    ----------
    model : CloudModel
        Model to export (it is not modified).
    descriptors : array-like
        (N, 3) normalised wavelengths of the bands, in the order the images will have.
    path : path-like
        Output ``.onnx`` file.
    opset : int, optional
        ONNX opset; default :func:`default_opset`.
    sample_size : tuple of int
        (H, W) of the example input used for tracing; the graph takes any size.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("ONNX export needs the onnx package: pip install onnx (a dependency of sensei_xr)") from e

    opset = default_opset() if opset is None else int(opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folded = model.for_bands(descriptors).to("cpu").float().eval()
    example = torch.rand(1, folded.n_bands, *sample_size)
    with warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation; it is the one that works
        # with onnx alone (the dynamo exporter also needs onnxscript).
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            folded, (example,), str(path), dynamo=False, opset_version=opset,
            input_names=["images"], output_names=["logits"],
            dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"},
                          "logits": {0: "batch", 2: "height", 3: "width"}},
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    meta = {
        "sensei_xr.classes": json.dumps(list(model.classes)),
        "sensei_xr.cloud_class_indices": json.dumps(list(model.cloud_class_indices)),
        "sensei_xr.n_bands": str(folded.n_bands),
        "sensei_xr.descriptors": json.dumps(np.asarray(
            descriptors.detach().cpu() if torch.is_tensor(descriptors) else descriptors,
            dtype=np.float64).reshape(-1, 3).tolist()),
        "sensei_xr.architecture": json.dumps(model.config),
        "sensei_xr.weights_sha256": str(getattr(model, "sha256", None) or ""),
        "sensei_xr.graph": "the network's logits alone; sensei_xr's engine then refines the cloud probability by "
                           "the bands, mixes in the architecture's pixel_member if any, and applies the pixel tests",
    }
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path
