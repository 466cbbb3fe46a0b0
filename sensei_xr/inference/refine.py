"""Edge-aware refinement of a patch's cloud probability by its own bands (torch; no Dask).

A context network (DeepLabv3+ at output stride 8) decides *whether* a region is cloud well
and *where its edges run* poorly: its logits are upsampled 8x, so clouds come out as
blurred blobs with false alarms around them. The bands themselves say where the edges
are. The guided filter (He, Sun and Tang, "Guided image filtering", IEEE TPAMI 2013) fits,
in every window of ``2 * radius + 1`` pixels, a ridge regression of the network's cloud
probability on the pixels' bands, and gives each pixel the averaged fit at its own
spectrum. Within a window the decision stays the network's (the fit reproduces its mean
probability there), the boundary follows the bands.

The guide is the patch's bands, each standardised over the patch (so reflectance,
brightness temperature and any scaling weigh alike); the regularisation ``eps`` is in
units of that per-patch variance. Everything is a function of the patch alone, so the
engine's results stay independent of chunking.
"""

from __future__ import annotations

from typing import Callable, Sequence

__all__ = ["GUIDED_RADIUS", "GUIDED_EPS", "GUIDED_SUBSAMPLE", "box_mean", "effective_subsample", "guided_filter",
           "refine_cloud_probability", "refined", "with_cloud_probability"]

#: Window radius of the guided filter, pixels (129 x 129 px windows). Chosen on one kept
#: cross-validation fold model (``docs/model_findings.md``; the mosaic recipe's fold 2, six
#: reflective bands, held-out OA 0.784): 8 / 16 / 32 / 64 / 128 px gave +0.6 / +1.2 / +2.0 /
#: +2.8 / +2.3 points.
GUIDED_RADIUS = 64

#: Ridge regularisation of the guided filter, in units of a band's variance over the patch
#: (of its 8 x 8 pixel means, on which the filter is fitted).
GUIDED_EPS = 0.1

#: The filter's regressions are fitted on 8 x 8 pixel means (the network's output stride).
GUIDED_SUBSAMPLE = 8

# A band whose spread over the patch is below this is treated as constant (its
# standardised values are 0), so a flat filled band cannot blow up into noise.
_MIN_STD = 1e-6

# Longest side box_mean averages with a matrix of window weights (O(side) per pixel, but
# vectorised); longer sides use running sums.
_WINDOW_MATRIX_MAX = 512


def box_mean(x, radius: int):
    """Mean over a ``(2 * radius + 1)`` square window, clipped at the edges.

    Parameters
    ----------
    x : torch.Tensor
        (..., H, W).
    radius : int
        Pixels.

    Returns
    -------
    torch.Tensor
        Same shape; each value is the mean of the window's pixels that lie inside the
        array. Separable: along a side of up to ``_WINDOW_MATRIX_MAX`` pixels, a product
        with the matrix of window weights (fast at the filter's low resolution); along a
        longer one, running sums (a cost that does not grow with the radius).
    """
    import torch

    for dim in (-1, -2):
        n = x.shape[dim]
        idx = torch.arange(n, device=x.device)
        if n <= _WINDOW_MATRIX_MAX:
            weights = ((idx[:, None] - idx[None, :]).abs() <= radius).to(x.dtype)
            weights = weights / weights.sum(1, keepdim=True)
            x = x @ weights.T if dim == -1 else weights @ x
            continue
        c = torch.cumsum(x, dim)
        r = min(int(radius), n)
        # Running sums padded so that window ends outside the array read 0 before it and
        # the total after it: plain slices then, no gathers.
        size = list(c.shape)
        size[dim] = r + 1
        before = c.new_zeros(size)
        size[dim] = r
        after = c.narrow(dim, n - 1, 1).expand(size)
        c = torch.cat([before, c, after], dim)
        count = (idx + r + 1).clamp(max=n) - (idx - r).clamp(min=0)
        shape = [1] * x.dim()
        shape[dim] = n
        x = (c.narrow(dim, 2 * r + 1, n) - c.narrow(dim, 0, n)) / count.to(x.dtype).view(shape)
    return x


def effective_subsample(subsample: int, h: int, w: int) -> int:
    """The subsampling :func:`guided_filter` uses on an ``h`` x ``w`` image: at most
    ``subsample``, and coarse enough to leave 8 pixel means per side."""
    return max(1, min(int(subsample), min(h, w) // 8))


def guided_filter(guide, src, radius: int, eps: float, subsample: int = 1):
    """The guided filter of ``src`` with a multi-band ``guide`` (He et al. 2013, eq. 19-21).

    Parameters
    ----------
    guide : torch.Tensor
        (B, N, H, W), any units: each band is standardised over its image (a band with no
        spread there is left out), so ``eps`` means the same for reflectance and brightness
        temperature.
    src : torch.Tensor
        (B, 1, H, W), the image to filter.
    radius : int
        Window radius, pixels.
    eps : float
        Ridge regularisation, in units of each band's variance over the image.
    subsample : int
        Fit the windows' regressions on the images averaged over ``subsample`` x
        ``subsample`` pixels, with the radius divided by it, and bring the fitted
        coefficients back to full resolution bilinearly (the fast guided filter, He and Sun
        2015, arXiv:1505.00996): the coefficients are smooth at this radius, and one
        N x N solve per pixel at full resolution cost 3x the network. At most as coarse as
        leaves 8 means per side (:func:`effective_subsample`).

    Returns
    -------
    torch.Tensor
        (B, 1, H, W) float32.
    """
    import torch
    import torch.nn.functional as F

    full, src = guide.float(), src.float()
    b, n, h, w = full.shape
    subsample = effective_subsample(subsample, h, w)
    guide = full
    if subsample > 1:
        low = [-(-h // subsample), -(-w // subsample)]
        guide = F.interpolate(full, size=low, mode="area")
        src = F.interpolate(src, size=low, mode="area")
        radius = max(1, round(radius / subsample))
    lh, lw = guide.shape[-2:]
    mean = guide.mean((2, 3), keepdim=True)
    std = guide.std((2, 3), keepdim=True, correction=0)
    scale = torch.where(std > _MIN_STD, 1.0 / std.clamp(min=_MIN_STD), torch.zeros_like(std))
    guide = (guide - mean) * scale
    mean_i, mean_p = box_mean(guide, radius), box_mean(src, radius)
    cov_ip = box_mean(guide * src, radius) - mean_i * mean_p
    # Every band pair (N^2 maps, not the N(N+1)/2 distinct ones): at the low resolution the
    # extra window means cost less than gathering and scattering the distinct pairs.
    products = (guide.unsqueeze(2) * guide.unsqueeze(1)).reshape(b, n * n, lh, lw)
    outer = (mean_i.unsqueeze(2) * mean_i.unsqueeze(1)).reshape(b, n * n, lh, lw)
    sigma = (box_mean(products, radius) - outer).permute(0, 2, 3, 1).reshape(b, lh, lw, n, n)
    sigma = sigma + eps * torch.eye(n, device=guide.device, dtype=guide.dtype)
    a = _solve_spd(sigma, cov_ip.permute(0, 2, 3, 1).unsqueeze(-1)).squeeze(-1).permute(0, 3, 1, 2)
    offset = mean_p - (a * mean_i).sum(1, keepdim=True)
    a, offset = box_mean(a, radius), box_mean(offset, radius)
    # Back from standardised to raw bands, so the full-resolution guide is used as it is.
    a = a * scale
    coef = torch.cat([a, offset - (a * mean).sum(1, keepdim=True)], 1)
    if subsample == 1:
        return (coef[:, :n] * full).sum(1, keepdim=True) + coef[:, n:]
    # sum_k up(a_k) * band_k + up(offset), with up() F.interpolate's bilinear upsampling
    # written as its two interpolation matrices: the coefficients are brought to full
    # width at low height (small), then to full height one band at a time and consumed at
    # once, so no (N + 1)-band full-resolution array is made (this step alone: 1.4x faster
    # than F.interpolate and a product at 13 bands, measured on a loaded 2-core machine).
    rows, cols = _bilinear_matrix(h, lh, full), _bilinear_matrix(w, lw, full)
    wide = coef @ cols.T
    out = torch.matmul(rows, wide[:, n:])
    for k in range(n):
        out.addcmul_(torch.matmul(rows, wide[:, k:k + 1]), full[:, k:k + 1])
    return out


def _bilinear_matrix(size: int, low: int, like):
    """(size, low) matrix of F.interpolate's linear weights (align_corners=False) from
    ``low`` samples to ``size``: taken from F.interpolate itself, so both agree exactly."""
    import torch
    import torch.nn.functional as F

    eye = torch.eye(low, dtype=like.dtype, device=like.device).unsqueeze(1)
    return F.interpolate(eye, size=size, mode="linear", align_corners=False)[:, 0].T.contiguous()


def _solve_spd(sigma, rhs):
    """Solve ``sigma @ x = rhs`` for symmetric positive definite ``sigma`` (a covariance
    plus ``eps`` times the identity): Cholesky, and LU for any matrix rounding left
    indefinite."""
    import torch

    chol, info = torch.linalg.cholesky_ex(sigma)
    if bool((info == 0).all()):
        return torch.cholesky_solve(rhs, chol)
    return torch.linalg.solve(sigma, rhs)


def refine_cloud_probability(images, probs, cloud_classes: Sequence[int], radius: int = GUIDED_RADIUS,
                             eps: float = GUIDED_EPS, subsample: int = GUIDED_SUBSAMPLE):
    """Class probabilities with the cloud probability refined by each patch's bands.

    Parameters
    ----------
    images : torch.Tensor
        (B, N, P, P) model input the probabilities were predicted from.
    probs : torch.Tensor
        (B, C, P, P) class probabilities.
    cloud_classes : sequence of int
        Indices of the cloud classes among the C.
    radius, eps, subsample
        See :func:`guided_filter`.

    Returns
    -------
    torch.Tensor
        (B, C, P, P) float32: the summed cloud probability replaced by its guided-filter
        refinement (clipped to 0-1), shared among the cloud classes, and the rest among the
        others, in the proportions the network gave.
    """
    probs = probs.float()
    cloud = sorted(set(int(i) for i in cloud_classes))
    p = probs[:, cloud].sum(1, keepdim=True)
    q = guided_filter(images, p, radius, eps, subsample).clamp(0.0, 1.0)
    return with_cloud_probability(probs, cloud, p, q)


def with_cloud_probability(probs, cloud: Sequence[int], p, q):
    """Class probabilities whose summed cloud probability ``p`` becomes ``q``.

    Parameters
    ----------
    probs : torch.Tensor
        (B, C, P, P) float32 class probabilities.
    cloud : sequence of int
        Sorted indices of the cloud classes.
    p, q : torch.Tensor
        (B, 1, P, P): the cloud classes' summed probability in ``probs``, and the new one.

    Returns
    -------
    torch.Tensor
        (B, C, P, P): ``q`` shared among the cloud classes and ``1 - q`` among the others,
        each side in the proportions ``probs`` gave (evenly where it gave that side nothing).
    """
    import torch

    n_classes = probs.shape[1]
    if n_classes == 2 and len(cloud) == 1:
        return torch.cat([q, 1 - q] if cloud[0] == 0 else [1 - q, q], 1)
    is_cloud = torch.zeros(n_classes, dtype=torch.bool, device=probs.device)
    is_cloud[cloud] = True
    # Each side's classes keep their shares; a side the network gave nothing is split evenly.
    # The clear side's total is summed, not 1 - p: near p = 1 that difference loses digits.
    clear_total = probs.sum(1, keepdim=True) - p if n_classes == len(cloud) else \
        probs[:, [i for i in range(n_classes) if i not in set(cloud)]].sum(1, keepdim=True)
    cloud_share = torch.where(p > 0, probs / p.clamp(min=1e-12), 1.0 / len(cloud))
    clear_share = torch.where(clear_total > 0, probs / clear_total.clamp(min=1e-12),
                              1.0 / max(n_classes - len(cloud), 1))
    return torch.where(is_cloud.view(1, -1, 1, 1), cloud_share * q, clear_share * (1 - q))


def refined(run: Callable, cloud_classes: Sequence[int], radius: int = GUIDED_RADIUS,
            eps: float = GUIDED_EPS, subsample: int = GUIDED_SUBSAMPLE) -> Callable:
    """Wrap a patch runner (``(B, N, P, P)`` batch -> probabilities) to refine its output."""

    def run_refined(batch):
        return refine_cloud_probability(batch, run(batch), cloud_classes, radius, eps, subsample)

    return run_refined
