"""Batch-norm statistics measured after training: over the training mixture, and per band set.

A SEnSeI model trained on random band subsets keeps one set of running statistics that fits
none of them; measuring them again as equal-weight averages, and once per band set users
mask with (kept in the model, chosen at inference by the scene's bands), moved fold-0 RGB OA
from 0.29 to 0.85 with the same weights (``docs/model_findings.md``).
"""

from __future__ import annotations

from dataclasses import replace

from ..datasets import LabelledSample
from .augmentation import Augmentation
from .samplers import RandomPatchBatches

__all__ = ["calibrate_band_sets", "recalibrate_batchnorm"]


def recalibrate_batchnorm(model, samples: list[LabelledSample] | list[list[LabelledSample]], batches: int = 40,
                          patch_size: int = 256, batch_size: int = 8, min_bands: int | None = 3, seed: int = 123,
                          device: str = "cpu", weights: list[float] | None = None) -> None:
    """Re-estimate batch-norm statistics as an equal-weight average over training batches.

    During training the running statistics are exponential averages dominated by the last few
    batches, each with its own random band subset; the features behind the encoder differ
    between band sets, so those statistics fit whichever subsets came last. Averaging over
    many batches with random subsets (no gradient, no parameter change) fits them all. On the
    Biome validation patches this moved RGB+NIR OA of the v1 model from 0.780 to 0.899 with
    all bands unchanged (0.870 -> 0.866); only training patches are used.

    Parameters
    ----------
    model : CloudModel
        Changed in place (batch-norm buffers only); left in eval mode.
    samples : list of LabelledSample, or list of lists of them
        Training samples: one source, or several (one band set each) mixed by ``weights``.
    batches, patch_size, batch_size, min_bands, seed
        The batches averaged over; patches no larger than the smallest sample.
    device : str
    weights : list of float, optional
        One per source (see :class:`~sensei_xr.training.samplers.RandomPatchBatches`).
    """
    import torch

    # The network's layers only: a per-pixel member (trained on its own, after) is not run here.
    member = set(getattr(model, "pixel_member", None).modules()) if getattr(model, "pixel_member", None) else set()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m not in member]
    if not norms or batches <= 0:
        return
    nested = bool(samples) and not isinstance(samples[0], LabelledSample)
    patch = min([patch_size] + [min(s.image.shape[-2:]) for src in (samples if nested else [samples]) for s in src])
    source = RandomPatchBatches(samples, patch, batch_size, batches, min_bands, seed,
                                Augmentation(max_translation=0, resolution_probability=0), weights=weights)
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative (equal-weight) average
    model.train()
    try:
        with torch.no_grad():
            for i in range(batches):
                b = source[i]
                model(b["images"].to(device), b["descriptors"].to(device))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()


def calibrate_band_sets(model, sources: list[list[LabelledSample]], band_sets, batches: int = 40,
                        patch_size: int = 256, batch_size: int = 8, device: str = "cpu") -> list[str]:
    """Measure batch-norm statistics per band set and keep them in the model.

    For each band set, the statistics are averaged over ``batches`` batches of training
    patches restricted to exactly that band set (from the largest source that has it) and
    stored with :meth:`CloudModel.set_bn_calibration`; the model's own statistics are left
    as they were.

    Returns
    -------
    list of str
        The band sets calibrated (a set no source can give is skipped).
    """
    import torch

    from ..errors import BandError
    from ..spectral.bandsets import resolve_bands

    norms = {n: m for n, m in model.head.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    if not norms:
        return []
    saved = {k: v.clone() for k, v in model.head.state_dict().items()
             if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    stats_keys = [k for k in saved if not k.endswith("num_batches_tracked")]
    done = []
    for name in band_sets:
        for src in sorted(sources, key=len, reverse=True):
            try:
                names = resolve_bands(src[0].descriptors, name)
            except BandError:
                continue
            restricted = [replace(s, image=s.image[[s.descriptors.names.index(n) for n in names]],
                                  descriptors=s.descriptors.select(names)) for s in src]
            recalibrate_batchnorm(model, restricted, batches, patch_size, batch_size, None, device=device)
            stats = {k: v for k, v in model.head.state_dict().items() if k in stats_keys}
            model.set_bn_calibration(name, restricted[0].descriptors.normalised(), stats)
            done.append(name)
            break
    model.head.load_state_dict({**model.head.state_dict(), **saved})
    return done
