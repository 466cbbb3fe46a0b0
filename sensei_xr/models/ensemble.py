"""An ensemble of SEnSeI cloud models: the mean of their class probabilities.

Networks trained on 24 labelled patches differ a lot from run to run (one patch moves a
fold by 10 points), and two of them are wrong in different places: on the kept
cross-validation fold models, the mean probability of the shipped recipe and of its
per-pixel-branch variant scored 1 to 2 points above the better of the two on every band
set (``docs/model_findings.md``). A :class:`CloudEnsemble` is that mean as one model: it
saves, loads, folds per band set and runs through the engine like a :class:`CloudModel`,
at the cost of running every member.

Its logits are ``log(mean_i softmax(logits_i))``, so a softmax of them is the mean
probability and everything downstream (argmax, ``P(cloud)``, blending) is unchanged.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .cloud_model import (
    CloudModel,
    FoldedCloudModel,
    _as_descriptors,
    _normalise_config,
    build_model,
    cloud_class_indices,
    largest_calibrated_subset,
)

__all__ = ["CloudEnsemble", "FoldedEnsemble", "build_ensemble", "is_ensemble_config"]

# Probabilities are clamped before the log: a member sure of a class must not make -inf.
_TINY = 1e-12


def is_ensemble_config(config: Any) -> bool:
    """Whether a plain architecture config describes an ensemble (``{"ensemble": [...]}``)."""
    return isinstance(config, Mapping) and "ensemble" in config


def _mean_probability_logits(logits: List[torch.Tensor]) -> torch.Tensor:
    probs = [torch.softmax(y.float(), dim=1) for y in logits]
    return torch.log((torch.stack(probs).sum(0) / len(probs)).clamp_min(_TINY))


class FoldedEnsemble(nn.Module):
    """A :class:`CloudEnsemble` folded for one band set: images in, mean-probability logits out.

    Attributes
    ----------
    n_bands : int
    classes : list of str
    cloud_class_indices : list of int
    """

    def __init__(self, members: Sequence[FoldedCloudModel]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.n_bands: int = int(members[0].n_bands)
        self.classes: List[str] = list(members[0].classes)
        self.cloud_class_indices: List[int] = list(members[0].cloud_class_indices)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, H, W) images -> (B, C, H, W) float32 logits whose softmax is the members' mean."""
        logits: List[torch.Tensor] = []
        for net in self.members:
            logits.append(net(images))
        return _mean_probability_logits(logits)


class CloudEnsemble(nn.Module):
    """Cloud segmentation by the mean class probability of several SEnSeI models.

    Parameters
    ----------
    members : sequence of CloudModel
        At least two SEnSeI models with the same classes (any heads; each keeps its own
        batch-norm calibrations).

    Attributes
    ----------
    members : torch.nn.ModuleList
    classes : tuple of str
    card, sha256, source, snow_test, nir_snow_test, warm_test
        As for :class:`CloudModel` (set by :func:`~sensei_xr.models.load_model`); the
        tests are the ensemble's, applied to the mean probability.
    """

    def __init__(self, members: Sequence[CloudModel]) -> None:
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two models, got {len(members)}")
        for i, m in enumerate(members):
            if not isinstance(m, CloudModel):
                raise TypeError(f"ensemble member {i} is a {type(m).__name__}, not a CloudModel")
            if m.encoder is None:
                raise ValueError(f"ensemble member {i} has no SEnSeI encoder; an ensemble is made of SEnSeI "
                                 "models (each takes any band set)")
            if getattr(m, "pixel_member", None) is not None:
                raise ValueError(f"ensemble member {i} carries a pixel member, which an ensemble would not run "
                                 "(it mixes its members' networks only): take it off (model.pixel_member = None), "
                                 "or give the member configs no pixel_member")
            if m.classes != members[0].classes:
                raise ValueError(f"ensemble members must predict the same classes: member {i} has "
                                 f"{list(m.classes)}, member 0 {list(members[0].classes)}")
        self.members = nn.ModuleList(members)
        self.classes: tuple[str, ...] = members[0].classes
        self.snow_test = None
        self.nir_snow_test = None
        self.warm_test = None
        self.card: dict | None = None
        self.sha256: str | None = None
        self.source: str | None = None

    @property
    def config(self) -> dict:
        """``{"ensemble": [member configs]}`` (a copy)."""
        return {"ensemble": [m.config for m in self.members]}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def cloud_class_indices(self) -> tuple[int, ...]:
        return cloud_class_indices(self.classes)

    @property
    def in_bands(self) -> None:
        """``None``: every member takes any band set."""
        return None

    @property
    def bn_calibration_names(self) -> list[str]:
        """Band sets every member has batch-norm statistics for."""
        names = set(self.members[0].bn_calibrations)
        for m in self.members[1:]:
            names &= set(m.bn_calibrations)
        return sorted(names)

    def forward(self, images: torch.Tensor, descriptors: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Logits whose softmax is the members' mean probability; see :meth:`CloudModel.forward`."""
        return _mean_probability_logits([m(images, descriptors) for m in self.members])

    def calibrated_subset(self, descriptors: torch.Tensor | np.ndarray) -> tuple[str, list[int]] | None:
        """The largest band set every member is calibrated for among these bands, when the
        members are not all calibrated for all of them (see :meth:`CloudModel.calibrated_subset`)."""
        if all(m.bn_calibration_for(descriptors) is not None for m in self.members):
            return None
        first = self.members[0]
        d = _as_descriptors(descriptors, next(first.head.parameters()).float()).reshape(-1, 3).detach().cpu()
        common = {name: first.bn_calibrations[name][0] for name in self.bn_calibration_names}
        return largest_calibrated_subset(common, d) if common else None

    @torch.no_grad()
    def for_bands(self, descriptors: torch.Tensor | np.ndarray) -> FoldedEnsemble:
        """Every member folded for one band set (see :meth:`CloudModel.for_bands`)."""
        return FoldedEnsemble([m.for_bands(descriptors) for m in self.members]).eval()


def build_ensemble(config: Mapping[str, Any]) -> CloudEnsemble:
    """A fresh ensemble from ``{"ensemble": [member configs]}`` (see :func:`build_model`)."""
    members = config.get("ensemble") if isinstance(config, Mapping) else None
    if isinstance(members, (str, bytes)) or not isinstance(members, Sequence):
        raise ValueError(f"an ensemble config is {{\"ensemble\": [member configs]}}, got {config!r}")
    if set(config) != {"ensemble"}:
        raise ValueError(f"an ensemble config has only the key 'ensemble'; got {sorted(config)}")
    return CloudEnsemble([build_model(_normalise_config(c)) for c in members])
