"""Networks: SEnSeI (Table VI counts, permutation invariance, any N), heads, folding."""

from __future__ import annotations

import ast
import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensei_xr.models import (
    CloudModel,
    DeepLabV3Plus,
    DeepLabV3PlusPixel,
    DeepLabV3PlusWide,
    FoldedCloudModel,
    OrthonormalSEnSeI,
    PixelNet,
    SEnSeI,
    build_model,
    cloud_class_indices,
)



# Small tensors: one torch thread is fastest, and immune to other jobs on shared cores.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _descriptors(n: int, seed: int = 0) -> torch.Tensor:
    """Realistic normalised (min, centre, max): centres 400 nm..12 um, narrow bands."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0.05, 2.05, n)
    half = rng.uniform(0.005, 0.05, n)
    return torch.tensor(np.stack([centre - half, centre, centre + half], 1), dtype=torch.float32)


def _images(b: int, n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, n, h, w, generator=g) * 0.8


def _calibrated(config: dict, seed: int = 0) -> CloudModel:
    """A model whose BatchNorm statistics come from data (not the (0, 1) of a fresh model).

    Folding errors at image borders would hide behind near-constant activations.
    """
    torch.manual_seed(seed)
    model = build_model(config)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a plain average over the calibration batches
    model.train()
    n = config.get("in_bands") or 6
    with torch.no_grad():
        for i in range(3):
            model(_images(4, n, 48, 48, seed=100 + i), _descriptors(n, seed=i))
    return model.eval()


@pytest.fixture(scope="module")
def encoder() -> SEnSeI:
    torch.manual_seed(0)
    return SEnSeI().eval()


@pytest.fixture(scope="module")
def dlv3_model() -> CloudModel:
    return _calibrated({"encoder": "sensei", "head": "deeplabv3plus", "classes": ["clear", "cloud"]})


@pytest.fixture(scope="module")
def dlv3_pixel_model() -> CloudModel:
    model = _calibrated({"encoder": "sensei", "head": "deeplabv3plus_pixel", "classes": ["clear", "cloud"]})
    with torch.no_grad():  # a trained branch is not zero: make it count
        torch.nn.init.normal_(model.head.pixel_branch[-1].weight, std=0.5)
    return model


@pytest.fixture(scope="module")
def orthonormal_model() -> CloudModel:
    return _calibrated({"encoder": "sensei_orthonormal", "head": "deeplabv3plus", "classes": ["clear", "cloud"]})


@pytest.fixture(scope="module")
def pixel_model() -> CloudModel:
    return _calibrated({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud", "shadow"]})


# --------------------------------------------------------------------------------------
# SEnSeI
# --------------------------------------------------------------------------------------


def test_parameter_counts_match_table_vi(encoder):
    assert _count(encoder.descriptor_block) == 24_208
    assert _count(encoder.permutation_block) == 62_848
    assert _count(encoder.combined_block) == 123_488
    assert _count(encoder) == 210_544  # band multiplication has no parameters


def test_block_layer_widths(encoder):
    def widths(mlp):
        return [layer.linear.out_features for layer in mlp.hidden] + [mlp.out.out_features]

    assert widths(encoder.descriptor_block) == [16, 16, 32, 16, 16, 64, 128, 64, 64]
    assert widths(encoder.permutation_block.mlp) == [128, 128, 128, 64, 64]
    assert widths(encoder.combined_block) == [128, 256, 128, 96, 64, 128, 64, 64]
    assert encoder.permutation_block.mlp.hidden[0].linear.in_features == 128
    assert encoder.combined_block.hidden[0].linear.in_features == 128


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(1, 20), seed=st.integers(0, 2**16), shared=st.booleans())
def test_permutation_invariance(encoder, n, seed, shared):
    rng = np.random.default_rng(seed)
    perm = torch.as_tensor(rng.permutation(n))
    images = _images(2, n, 8, 8, seed)
    desc = _descriptors(n, seed)
    if not shared:
        desc = torch.stack([desc, _descriptors(n, seed + 1)])  # (B, N, 3): per-item bands
    with torch.no_grad():
        out = encoder(images, desc)
        out_perm = encoder(images[:, perm], desc[..., perm, :])
    assert out.shape == (2, 64, 8, 8)
    scale = out.abs().max().item()
    assert scale > 0
    assert (out - out_perm).abs().max().item() <= 1e-5 * scale


def test_descriptors_matter(encoder):
    """Guard against a degenerate encoder that would pass invariance trivially."""
    images = _images(1, 4, 8, 8)
    desc = _descriptors(4)
    with torch.no_grad():
        out = encoder(images, desc)
        swapped = encoder(images, desc[[1, 0, 2, 3]])  # bands 0 and 1 exchange wavelengths
    assert (out - swapped).abs().max().item() > 1e-3 * out.abs().max().item()


def test_permutation_block_is_mean_over_all_ordered_pairs(encoder):
    """The decomposed implementation equals the literal definition on (N, N, 128) pairs."""
    block = encoder.permutation_block
    x = torch.randn(1, 5, 64)
    with torch.no_grad():
        pairs = torch.cat([x[:, :, None].expand(-1, -1, 5, -1), x[:, None].expand(-1, 5, -1, -1)], -1)
        literal = block.mlp(pairs).mean(dim=2)
        expected = torch.cat([literal, x], -1)
        got = block(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_band_multiplication_formula(encoder):
    images = _images(1, 3, 4, 5)
    desc = _descriptors(3)
    with torch.no_grad():
        v = encoder.encode_descriptors(desc)[0]  # (3, 64)
        out = encoder(images, desc)
    expected = ((images[0][:, None] + 0.5) * v[:, :, None, None]).mean(0)
    torch.testing.assert_close(out[0], expected, rtol=1e-5, atol=1e-6)


def test_groupnorm_does_not_mix_batch_items(encoder):
    desc = torch.stack([_descriptors(6, 1), _descriptors(6, 2), _descriptors(6, 3)])
    with torch.no_grad():
        together = encoder.encode_descriptors(desc)
        alone = encoder.encode_descriptors(desc[1])
    # Batched matrix products may round differently: compare at float precision.
    assert (together[1:2] - alone).abs().max().item() <= 1e-5 * alone.abs().max().item()
    assert (together[0] - together[1]).abs().max().item() > 1e-2 * alone.abs().max().item()


@pytest.mark.parametrize("n", [1, 2, 13, 14])
def test_any_number_of_bands(dlv3_model, n):
    with torch.no_grad():
        out = dlv3_model(_images(1, n, 32, 32), _descriptors(n))
    assert out.shape == (1, 2, 32, 32)
    assert torch.isfinite(out).all()


def test_hyperspectral_200_bands(dlv3_model):
    n = 200
    centres = torch.linspace(0.1, 1.3, n)  # 425..2300 nm, contiguous like a spectrometer
    desc = torch.stack([centres - 0.002, centres, centres + 0.002], 1)
    with torch.no_grad():
        out = dlv3_model(_images(1, n, 32, 32), desc)
    assert out.shape == (1, 2, 32, 32) and torch.isfinite(out).all()


def test_descriptor_errors(encoder):
    with pytest.raises(ValueError, match="descriptors"):
        encoder(_images(1, 3, 4, 4), _descriptors(4))
    with pytest.raises(ValueError, match="shape"):
        encoder(_images(1, 3, 4, 4), torch.rand(3, 2))


# --------------------------------------------------------------------------------------
# Heads
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("head", [DeepLabV3Plus, DeepLabV3PlusWide, DeepLabV3PlusPixel])
@pytest.mark.parametrize("size", [(37, 53), (31, 17), (64, 64), (9, 11)])
def test_deeplab_output_size_equals_input(size, head):
    torch.manual_seed(0)
    net = head(5, 3).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 5, *size)).shape == (1, 3, *size)


def test_paper_deeplab_parameter_counts_match_table_vii():
    """Table VII: DLv3 (13 bands) 2.11e6, SEnSeI+DLv3 2.34e6 parameters (3 significant figures)."""
    dlv3 = build_model({"encoder": None, "head": "deeplabv3plus", "classes": ["clear", "cloud"], "in_bands": 13})
    sensei_dlv3 = build_model({"encoder": "sensei", "head": "deeplabv3plus", "classes": ["clear", "cloud"]})
    assert float(f"{_count(dlv3):.3g}") == 2.11e6
    assert float(f"{_count(sensei_dlv3):.3g}") == 2.34e6
    # The paper's MobileNetV2 variant: two ASPP branches (1x1 and image pooling), no decoder.
    assert len(sensei_dlv3.head.aspp.branches) == 2 and not hasattr(sensei_dlv3.head, "decoder")
    wide = build_model({"encoder": "sensei", "head": "deeplabv3plus_wide", "classes": ["clear", "cloud"]})
    assert float(f"{_count(wide.head):.3g}") == 2.73e6
    # The per-pixel branch: 64 x 32 centre taps, BN, 32 x 32 conv + BN, 32 x 2 + 2.
    pixel = build_model({"encoder": "sensei", "head": "deeplabv3plus_pixel", "classes": ["clear", "cloud"]})
    assert _count(pixel) - _count(sensei_dlv3) == 64 * 32 * 9 + 2 * 32 + 32 * 32 + 2 * 32 + 32 * 2 + 2


def test_pixel_branch_head():
    """The stem at stride 1 read every second pixel is the stride-2 stem; the per-pixel
    branch's off-centre taps stay zero through training; at initialisation the head is
    the paper's network (the branch's last layer is zero)."""
    torch.manual_seed(0)
    net = DeepLabV3PlusPixel(5, 2)
    x = torch.rand(2, 5, 19, 24)
    conv = net.first_conv
    stem = torch.nn.functional.conv2d(x, conv.weight[:32], None, 2, 1)
    assert torch.allclose(conv(x)[:, :32, ::2, ::2], stem, atol=1e-6)
    opt = torch.optim.AdamW(net.parameters(), 1e-2, weight_decay=1e-2)
    for _ in range(3):
        loss = net(x).square().mean() + net.pixel_branch(conv(x)[:, 32:]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    off_centre = conv.weight[32:].clone()
    off_centre[:, :, 1, 1] = 0
    assert off_centre.abs().max() == 0 and conv.weight[32:, :, 1, 1].abs().min() > 0
    net.eval()
    with torch.no_grad():
        torch.nn.init.zeros_(net.pixel_branch[-1].weight)
        torch.nn.init.zeros_(net.pixel_branch[-1].bias)
        y = net.first_conv(x)
        _, deep = net.backbone(y[:, :32, ::2, ::2])
        paper = torch.nn.functional.interpolate(net.classifier(net.aspp(deep)), size=[19, 24], mode="bilinear",
                                                align_corners=False)
        assert torch.allclose(net(x), paper)


@pytest.mark.parametrize("head", [DeepLabV3Plus, DeepLabV3PlusWide, DeepLabV3PlusPixel])
def test_deeplab_output_stride_8(head):
    torch.manual_seed(0)
    net = head(4, 2).eval()
    with torch.no_grad():
        low, deep = net.features(torch.rand(1, 4, 64, 96))
        assert deep.shape[-2:] == (8, 12) and deep.shape[1] == 320
        assert low.shape[-2:] == (16, 24) and low.shape[1] == 24
        _, deep_odd = net.features(torch.rand(1, 4, 37, 53))
        assert deep_odd.shape[-2:] == (math.ceil(37 / 8), math.ceil(53 / 8))
    rates = [m.dilation[0] for m in net.backbone.modules() if isinstance(m, torch.nn.Conv2d)
             and m.kernel_size == (3, 3)]
    assert max(rates) == 4 and 2 in rates
    if head is DeepLabV3PlusWide:
        assert [b[0][0].dilation[0] for b in net.aspp.branches[1:4]] == [12, 24, 36]


def test_pixelnet_is_small_and_per_pixel():
    net = PixelNet(64, 2).eval()
    assert _count(net) == 1106
    x = torch.rand(1, 64, 6, 7)
    y = x.clone()
    y[..., 3, 4] += 1.0
    with torch.no_grad():
        diff = (net(x) - net(y)).abs().sum(1)[0]
    assert diff[3, 4] > 0
    diff[3, 4] = 0
    assert diff.max() == 0  # no spatial context


# --------------------------------------------------------------------------------------
# CloudModel
# --------------------------------------------------------------------------------------


def test_batch_independence(dlv3_model):
    """An item's output does not depend on the others in its batch. In float64: matrix
    kernels may sum in another order for another batch size (on AVX-512 Intel CPUs they do,
    about 1e-6 in float32), and this untrained network amplifies that to 4e-3 at its
    output, where coupling between items would show at the items' own scale."""
    model = copy.deepcopy(dlv3_model).double()  # the fixture is shared
    images = _images(3, 5, 40, 40, seed=7).double()
    images[0] *= 0.1  # a dark, a mid and a bright item
    images[2] = images[2] * 0.3 + 0.7
    desc = torch.stack([_descriptors(5, 1), _descriptors(5, 2), _descriptors(5, 3)]).double()
    with torch.no_grad():
        batch = model(images, desc)
        alone = model(images[1:2], desc[1])
    torch.testing.assert_close(batch[1:2], alone, rtol=1e-9, atol=1e-9)
    assert (batch[0] - batch[1]).abs().max() > 1e-3  # items do differ


@pytest.mark.parametrize("classes, expected", [
    (("clear", "cloud"), (1,)),
    (("clear", "cloud", "shadow"), (1,)),
    (("clear", "thin_cloud", "thick_cloud"), (1, 2)),
    (("clear", "thick_cloud", "thin_cloud", "cloud_shadow"), (1, 2)),
    (("cloud_free", "Cloud"), (1,)),
])
def test_configurable_classes(classes, expected):
    model = build_model({"encoder": "sensei", "head": "pixelnet", "classes": list(classes)}).eval()
    assert model.cloud_class_indices == expected == cloud_class_indices(classes)
    with torch.no_grad():
        assert model(_images(1, 3, 8, 8), _descriptors(3)).shape == (1, len(classes), 8, 8)


def test_config_round_trip():
    import json

    cfg = {"encoder": "sensei", "head": "deeplabv3plus", "classes": ["clear", "thin_cloud", "thick_cloud"]}
    model = build_model(cfg)
    assert model.config == {**cfg, "in_bands": None}
    again = build_model(json.loads(json.dumps(model.config)))
    assert again.config == model.config
    base = build_model({"encoder": None, "head": "pixelnet", "classes": ["clear", "cloud"], "in_bands": 4})
    assert base.config["in_bands"] == 4 and base.encoder is None and base.in_bands == 4


@pytest.mark.parametrize("bad, match", [
    ({"encoder": "sensei", "head": "unet"}, "head"),
    ({"encoder": "foo"}, "encoder"),
    ({"encoder": None, "head": "pixelnet"}, "in_bands"),
    ({"encoder": "sensei", "in_bands": 4}, "in_bands"),
    ({"classes": ["cloud"]}, "classes"),
    ({"classes": ["a", "a"]}, "classes"),
    ({"heads": "pixelnet"}, "unknown"),
])
def test_config_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        build_model(bad)


def test_baseline_checks_band_count():
    torch.manual_seed(0)
    model = build_model({"encoder": None, "head": "pixelnet", "classes": ["clear", "cloud"], "in_bands": 4}).eval()
    x = _images(2, 4, 8, 8)
    with torch.no_grad():
        out = model(x, _descriptors(4))
        torch.testing.assert_close(out, model.head(x))
        torch.testing.assert_close(model.for_bands(_descriptors(4))(x), out)
    with pytest.raises(ValueError, match="exactly 4 bands"):
        model(_images(1, 3, 8, 8), _descriptors(3))
    with pytest.raises(ValueError, match="exactly 4 bands"):
        model(x, _descriptors(5))
    with pytest.raises(ValueError, match="exactly 4 bands"):
        model.for_bands(_descriptors(3))


# --------------------------------------------------------------------------------------
# Folding
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(37, 53), (33, 16)])
@pytest.mark.parametrize("which", ["dlv3", "pixel", "dlv3_pixel", "orthonormal"])
def test_folded_equals_unfolded(which, size, dlv3_model, pixel_model, dlv3_pixel_model, orthonormal_model):
    model = {"dlv3": dlv3_model, "pixel": pixel_model, "dlv3_pixel": dlv3_pixel_model,
             "orthonormal": orthonormal_model}[which]
    desc = _descriptors(7, seed=3)
    images = _images(2, 7, *size, seed=5)
    with torch.no_grad():
        ref = model(images, desc)
        folded = model.for_bands(desc)
        out = folded(images)
    assert isinstance(folded, FoldedCloudModel) and not folded.training
    assert out.shape == ref.shape == (2, model.num_classes, *size)
    assert ref.std() > 1e-2  # outputs vary, so agreement is meaningful
    # Float32 rounding grows with the logits' size (calibrated logits reach ~100).
    tol = 1e-4 * max(1.0, ref.abs().max().item())
    assert (out - ref).abs().max().item() < tol
    # Borders on their own (where the zero padding of the 64-channel map matters).
    edge = torch.zeros(size, dtype=torch.bool)
    edge[:2], edge[-2:], edge[:, :2], edge[:, -2:] = True, True, True, True
    assert (out - ref)[..., edge].abs().max().item() < tol


def test_border_bias_is_needed(dlv3_model):
    """The SEnSeI offset meets the zero padding at borders: a uniform bias would be wrong there."""
    import torch.nn.functional as F

    desc = _descriptors(5, seed=1)
    images = _images(1, 5, 37, 53)
    folded = dlv3_model.for_bands(desc)
    assert folded.border_bias
    with torch.no_grad():
        ref = dlv3_model.head.first_conv(dlv3_model.encoder(images, desc))
        args = (folded.stride, folded.padding, folded.dilation)
        exact = F.conv2d(images, folded.weight, folded.bias, *args) + F.conv2d(
            torch.ones(1, 1, 37, 53), folded.bias_kernel, None, *args)
        naive = F.conv2d(images, folded.weight, folded.bias + folded.bias_kernel.sum(dim=(1, 2, 3)), *args)
    scale = ref.abs().max().item()
    assert (exact - ref).abs().max().item() < 1e-5 * scale
    inner = (naive - ref)[..., 1:-1, 1:-1]
    assert inner.abs().max().item() < 1e-5 * scale  # a uniform bias is right inside...
    assert (naive - ref).abs().max().item() > 1e-2 * scale  # ...and wrong on the border


def test_folded_is_independent_copy(pixel_model):
    desc = _descriptors(4)
    images = _images(1, 4, 8, 8)
    folded = pixel_model.for_bands(desc)
    weight = pixel_model.head.classifier.weight
    saved = weight.detach().clone()
    with torch.no_grad():
        before = folded(images)
        try:
            weight.add_(1.0)  # later changes to the model (e.g. training) do not leak in
            torch.testing.assert_close(folded(images), before)
            assert (pixel_model(images, desc) - before).abs().max() > 1e-3
        finally:
            weight.copy_(saved)
    assert folded.classes == ["clear", "cloud", "shadow"] and folded.cloud_class_indices == [1]
    with pytest.raises(ValueError, match="bands"):
        folded(_images(1, 5, 8, 8))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_folded_scriptable(dlv3_model):
    desc = _descriptors(3)
    folded = dlv3_model.for_bands(desc)
    scripted = torch.jit.script(folded)
    images = _images(1, 3, 29, 35)
    with torch.no_grad():
        torch.testing.assert_close(scripted(images), folded(images))


def test_folded_low_precision_cast_cpu(pixel_model):
    """A folded model is cast like any module (bfloat16 on CPU here; cheap with PixelNet)."""
    desc = _descriptors(4)
    folded = pixel_model.for_bands(desc)
    images = _images(1, 4, 16, 16)
    with torch.no_grad():
        ref = torch.softmax(folded(images), 1)
        low = torch.softmax(folded.to(torch.bfloat16)(images.to(torch.bfloat16)).float(), 1)
    assert (low - ref).abs().max().item() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="float16/bfloat16 inference is meant for CUDA; no GPU here")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_folded_low_precision_cuda(dlv3_model, dtype):
    desc = _descriptors(6)
    images = _images(2, 6, 64, 48)
    folded = dlv3_model.for_bands(desc)
    with torch.no_grad():
        ref = torch.softmax(folded(images), 1)
        net = dlv3_model.for_bands(desc).to("cuda", dtype)
        low = torch.softmax(net(images.to("cuda", dtype)).float(), 1).cpu()
    assert (low - ref).abs().max().item() < 0.05


# --------------------------------------------------------------------------------------
# Dependencies
# --------------------------------------------------------------------------------------


def test_model_core_imports_only_torch_numpy_safetensors():
    """The networks and their files need torch, numpy and safetensors only.

    The core may reach down the data path to the pure spectral layers (errors, catalogs,
    bands, spectral: a fixed-band model names its bands by wavelength), and those may not
    import the raster stack either, so the core can be lifted out with them.
    """
    forbidden = {"xarray", "dask", "rasterio", "rioxarray", "stackstac", "distributed", "pandas"}
    package = Path(__file__).resolve().parents[1] / "sensei_xr"
    allowed_below = {"errors", "toml_registry", "catalogs", "bands", "spectral"}
    files = sorted((package / "models").rglob("*.py"))
    files += [package / f"{name}.py" for name in ("errors", "toml_registry", "catalogs", "bands")]
    files += sorted((package / "spectral").rglob("*.py"))
    assert len(files) > 6
    for path in files:
        in_models = path.parent.name == "models"
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0:
                    names = [node.module or ""]
                else:
                    # ".x" is the file's own package; "..x" (from models/ or spectral/) or
                    # ".x" (from a top-level module) is a sibling layer of sensei_xr.
                    top_level = path.parent == package
                    reaches_package = node.level >= 2 or top_level
                    if reaches_package:
                        target = (node.module or "").split(".")[0] or node.names[0].name
                        assert target in allowed_below, f"{path.name} imports sensei_xr.{target}"
                        assert in_models or target != "models", path.name
            for name in names:
                top = name.split(".")[0]
                assert top not in forbidden, f"{path.name} imports {name}"


def test_fixed_band_model_names_its_bands_by_wavelength():
    cfg = {"encoder": None, "head": "pixelnet", "classes": ["clear", "cloud"], "in_bands": 6, "band_set": "rgbnirswir"}
    assert build_model(cfg).config["band_set"] == "RGBNIRSWIR"
    for bad, message in ((dict(cfg, in_bands=4), "exactly 4 bands"), (dict(cfg, band_set="ALL"), "exactly 6"),
                         (dict(cfg, encoder="sensei", in_bands=None), "without encoder")):
        with pytest.raises(ValueError, match=message):
            build_model(bad)


def test_batchnorm_calibration_per_band_set(dlv3_model):
    """A band set with its own batch-norm statistics folds with them; others keep the model's."""

    from sensei_xr.bands import BandDescriptors

    model = copy.deepcopy(dlv3_model)
    l8 = BandDescriptors.from_sensor("landsat8_oli_tirs", ["B2", "B3", "B4", "B5"])
    s2 = BandDescriptors.from_sensor("sentinel2_msi", ["B08", "B04", "B02", "B03"])  # other sensor, other order
    stats = {k: v * 0 + (2.0 if k.endswith("running_var") else 0.3)
             for k, v in model.head.state_dict().items() if k.endswith(("running_mean", "running_var"))}
    model.set_bn_calibration("RGBNIR", l8.normalised(), stats)
    assert model.bn_calibration_for(l8.normalised()) == "RGBNIR"
    assert model.bn_calibration_for(s2.normalised()) == "RGBNIR"  # centres within the tolerance
    assert model.bn_calibration_for(l8.select(["B2", "B3", "B4"]).normalised()) is None
    swir = BandDescriptors.from_sensor("landsat8_oli_tirs", ["B2", "B3", "B4", "B6"])
    assert model.bn_calibration_for(swir.normalised()) is None  # 1.6 um is no NIR band
    images = _images(1, 4, 40, 40, seed=3)
    with torch.no_grad():
        calibrated = model.for_bands(l8.normalised())(images)
        plain = dlv3_model.for_bands(l8.normalised())(images)
        reference = copy.deepcopy(dlv3_model)
        reference.head.load_state_dict({**reference.head.state_dict(), **stats})
        expected = reference(images, torch.from_numpy(l8.normalised()))
    assert (calibrated - plain).abs().max() > 1e-3
    torch.testing.assert_close(calibrated, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    # The model's own statistics are untouched.
    assert all(torch.equal(v, dlv3_model.head.state_dict()[k]) for k, v in model.head.state_dict().items())
    with pytest.raises(ValueError, match="running statistics"):
        model.set_bn_calibration("bad", l8.normalised(), {"first_conv.weight": torch.zeros(1)})


@settings(max_examples=25, deadline=None)
@given(channels=st.integers(1, 12), dilation=st.integers(1, 6), h=st.integers(1, 19), w=st.integers(1, 19),
       batch=st.integers(1, 3), channels_last=st.booleans(), seed=st.integers(0, 2**16))
def test_depthwise_training_backward_matches_conv2d(channels, dilation, h, w, batch, channels_last, seed):
    """The backbone's depthwise convolutions train through their own backward on the CPU
    (PyTorch's is slow when dilated): outputs and both gradients equal a plain Conv2d's."""
    from sensei_xr.models.deeplab import _DepthwiseConv

    torch.manual_seed(seed)
    conv = _DepthwiseConv(channels, 1, dilation)
    plain = torch.nn.Conv2d(channels, channels, 3, 1, dilation, dilation=dilation, groups=channels, bias=False)
    plain.weight.data.copy_(conv.weight.data)
    x = torch.randn(batch, channels, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = conv(x1), plain(x2)
    grad = torch.randn_like(y2)
    y1.backward(grad)
    y2.backward(grad)
    assert y1.shape == y2.shape
    torch.testing.assert_close(y1, y2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, plain.weight.grad, rtol=1e-4, atol=1e-4)


def test_band_vector_spread_measures_the_encoders_conditioning(encoder, monkeypatch):
    """0 for orthogonal band vectors of one length, 1 - 1/N when every band points the same
    way, and in between the square of the normalised Gram matrix's distance from I; the
    same for any order of the bands."""
    n = 6
    orthonormal = torch.linalg.qr(torch.randn(64, n, generator=torch.Generator().manual_seed(0)))[0].T[None]
    monkeypatch.setattr(encoder, "encode_descriptors", lambda d: 3.0 * orthonormal)
    assert float(encoder.band_vector_spread(torch.rand(n, 3))) == pytest.approx(0.0, abs=1e-6)
    same = torch.ones(1, n, 64)
    monkeypatch.setattr(encoder, "encode_descriptors", lambda d: same)
    assert float(encoder.band_vector_spread(torch.rand(n, 3))) == pytest.approx(1 - 1 / n, rel=1e-6)
    monkeypatch.undo()
    d = torch.rand(n, 3).sort(dim=1).values
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert float(encoder.band_vector_spread(d)) == pytest.approx(float(encoder.band_vector_spread(d[perm])), rel=1e-5)


def test_band_vector_penalty_spreads_the_bands_apart(dlv3_model):
    """Training steps on the penalty alone (a loss that ignores the labels) move the bands'
    vectors towards orthogonal: the encoder's map of the bands gets better conditioned."""

    from sensei_xr.training.train import _train_step

    model = copy.deepcopy(dlv3_model).train()  # the fixture is shared: train a copy
    desc = torch.tensor([[0.45, 0.48, 0.51], [0.53, 0.56, 0.59], [0.64, 0.65, 0.67], [0.85, 0.86, 0.88],
                         [1.57, 1.61, 1.65], [2.11, 2.2, 2.29]]) / 2.5
    batch = {"images": torch.rand(2, 6, 32, 32), "descriptors": desc, "labels": torch.zeros(2, 32, 32, dtype=torch.long)}
    opt = torch.optim.Adam(model.encoder.parameters(), lr=1e-3)
    with torch.no_grad():
        before = float(model.encoder.band_vector_spread(desc))
    for _ in range(30):
        _train_step(model, opt, lambda logits, labels: 0.0 * logits.sum(), batch, "cpu", decorrelation=1.0)
    with torch.no_grad():
        after = float(model.encoder.band_vector_spread(desc))
    assert after < 0.5 * before


# --------------------------------------------------------------------------------------
# Orthonormal band vectors
# --------------------------------------------------------------------------------------


def _trained_encoder(cls: type[SEnSeI]) -> SEnSeI:
    """The shipped model's trained encoder weights in ``cls``: a collapsed map to mend."""
    from sensei_xr.models import load_model

    enc = cls().eval()
    enc.load_state_dict(load_model("sensei-dlv3-biome-v11").encoder.state_dict())
    return enc


_SIX_BANDS = torch.tensor([[0.45, 0.48, 0.51], [0.53, 0.56, 0.59], [0.64, 0.65, 0.67], [0.85, 0.86, 0.88],
                           [1.57, 1.61, 1.65], [2.11, 2.2, 2.29]]) / 2.5  # Landsat 8 B2-B7, um / 2.5


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 20), seed=st.integers(0, 2**16), per_item=st.booleans())
def test_orthonormal_band_vectors_for_any_band_set(n, seed, per_item):
    """For any N and band set: the vectors are orthogonal with norm sqrt(N) (the map W has
    Frobenius norm 1) as far as the paper's vectors tell the bands apart, the set is the polar factor of the paper's vectors (V U^T symmetric
    positive semidefinite: the orthonormal matrix nearest V, not any orthonormal basis),
    and the encoder stays permutation invariant."""
    torch.manual_seed(seed % 7)
    enc = OrthonormalSEnSeI().eval()
    desc = _descriptors(n, seed)
    if per_item:
        desc = torch.stack([desc, _descriptors(n, seed + 1)])
    with torch.no_grad():
        u = enc.encode_descriptors(desc)
        v = SEnSeI.encode_descriptors(enc, desc)
    # Singular values: 1 where the paper's vectors have one above the iterations' reach
    # (3e-4 of their Frobenius norm); random descriptors can be near duplicates, below it.
    sv_v = torch.linalg.svdvals(v.double()) / torch.linalg.matrix_norm(v.double())[:, None]
    sv_u = torch.linalg.svdvals(u.double()) / n ** 0.5
    reach = sv_v >= 3e-4
    assert reach.any()
    torch.testing.assert_close(sv_u[reach], torch.ones_like(sv_u[reach]), atol=2e-3, rtol=0)
    assert (sv_u <= 1 + 2e-3).all()
    cross = (v @ u.transpose(1, 2)).double()
    torch.testing.assert_close(cross, cross.transpose(1, 2), atol=1e-3 * cross.abs().max().item(), rtol=0)
    assert torch.linalg.eigvalsh((cross + cross.transpose(1, 2)) / 2).min() > -1e-3 * cross.abs().max()
    perm = torch.as_tensor(np.random.default_rng(seed).permutation(n))
    images = _images(2, n, 6, 6, seed)
    with torch.no_grad():
        out, out_perm = enc(images, desc), enc(images[:, perm], desc[..., perm, :])
    # float32 rounding, lifted with the small directions the iterations amplify
    assert (out - out_perm).abs().max() <= 1e-3 * out.abs().max()


def test_orthonormal_encoder_mends_the_trained_collapse():
    """The shipped encoder maps six bands close to rank 2; the same weights in the
    orthonormal encoder give a map of condition number < 2 (and the state loads as is)."""
    with torch.no_grad():
        collapsed = torch.linalg.svdvals(_trained_encoder(SEnSeI).affine_map(_SIX_BANDS)[0])
        mended = torch.linalg.svdvals(_trained_encoder(OrthonormalSEnSeI).affine_map(_SIX_BANDS)[0])
    collapsed, mended = collapsed / collapsed[0], mended / mended[0]
    assert collapsed[-1] < 1e-3 and collapsed[1] < 0.1
    # The five directions within the iterations' reach come out of one length; the last
    # (5e-5 of the largest here, below the reach) is lifted > 1000x, not all the way.
    torch.testing.assert_close(mended[:-1], torch.ones(5, dtype=mended.dtype), atol=1e-2, rtol=0)
    assert mended[-1] > 0.5


def test_orthonormal_encoder_trains_with_finite_gradients():
    """At vectors that already are orthonormal (where an eigendecomposition's gradient
    divides by the zero gap between equal eigenvalues) the polar factor is the vectors' own
    directions and its gradient finite and not larger than the upstream one; through the whole encoder,
    a step's gradient is finite and not zero."""
    u = torch.linalg.qr(torch.randn(64, 6, generator=torch.Generator().manual_seed(0)))[0].T[None]
    v = (3.0 * u).requires_grad_()
    out = OrthonormalSEnSeI.polar_factor(v, OrthonormalSEnSeI.iterations)
    torch.testing.assert_close(out.detach(), u, atol=1e-5, rtol=0)  # the polar factor of 3u is u
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * upstream).sum().backward()
    assert torch.isfinite(v.grad).all()
    assert 0 < float(v.grad.norm()) < float(upstream.norm())
    torch.manual_seed(0)
    enc = OrthonormalSEnSeI()
    (enc(_images(2, 6, 8, 8), _SIX_BANDS) ** 2).mean().backward()
    grads = [p.grad for p in enc.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_a_model_built_around_the_orthonormal_encoder_records_it():
    """A CloudModel made from the module (no config) names its encoder, so saving and
    loading it does not come back as a plain SEnSeI (the two share their parameters)."""
    model = CloudModel(OrthonormalSEnSeI(), PixelNet(64, 2), ["clear", "cloud"])
    assert model.config["encoder"] == "sensei_orthonormal"
    assert CloudModel(SEnSeI(), PixelNet(64, 2), ["clear", "cloud"]).config["encoder"] == "sensei"


def test_orthonormal_encoder_refuses_more_bands_than_dimensions():
    with pytest.raises(ValueError, match="at most 64 bands"):
        OrthonormalSEnSeI().encode_descriptors(_descriptors(65))
