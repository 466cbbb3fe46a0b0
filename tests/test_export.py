"""ONNX export of folded models: onnxruntime agrees with PyTorch at any H, W."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from sensei_xr.models import build_model, export_onnx
from sensei_xr.models.export import default_opset


# Small tensors: one torch thread is fastest, and immune to other jobs on shared cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(head: str, classes=("clear", "cloud")):
    torch.manual_seed(1)
    model = build_model({"encoder": "sensei", "head": head, "classes": list(classes)})
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(4, 5, 48, 48), torch.rand(5, 3) * 2)
    return model.eval()


def _descriptors(n: int) -> np.ndarray:
    centre = np.linspace(0.15, 1.3, n)
    return np.stack([centre - 0.02, centre, centre + 0.02], 1).astype(np.float32)


@pytest.mark.parametrize("head", ["deeplabv3plus", "pixelnet"])
def test_onnx_matches_torch(tmp_path, head):
    model = _model(head, ("clear", "thin_cloud", "thick_cloud"))
    desc = _descriptors(6)
    path = export_onnx(model, desc, tmp_path / f"{head}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, (h, w) in [(1, (64, 64)), (2, (37, 53))]:
        x = torch.rand(batch, 6, h, w)
        with torch.no_grad():
            ref = model(x, torch.from_numpy(desc)).numpy()
        (out,) = session.run(None, {"images": x.numpy()})
        assert out.shape == ref.shape == (batch, 3, h, w)
        assert np.abs(out - ref).max() < 1e-4
    assert ref.std() > 1e-3


def test_onnx_graph_and_metadata(tmp_path):
    model = _model("pixelnet")
    desc = _descriptors(4)
    path = export_onnx(model, desc, tmp_path / "m.onnx", opset=17)
    proto = onnx.load(str(path))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 17
    (inp,) = proto.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 4, "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["sensei_xr.classes"]) == ["clear", "cloud"]
    assert meta["sensei_xr.graph"].startswith("the network's logits alone")
    assert json.loads(meta["sensei_xr.cloud_class_indices"]) == [1]
    assert meta["sensei_xr.n_bands"] == "4"
    np.testing.assert_allclose(json.loads(meta["sensei_xr.descriptors"]), desc, rtol=1e-6)


def test_default_opset_is_supported():
    opset = default_opset()
    assert 17 <= opset <= onnx.defs.onnx_opset_version()
