"""Scene-disjoint, stratified cross-validation folds over labelled samples.

Labelled data is scarce and one hard image moves a small split by many points, so
models are compared by k-fold cross-validation in which a scene never sits in two folds
and each fold holds about the same mix of strata (e.g. one Biome patch of each surface
type). NumPy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..datasets import LabelledSample

__all__ = ["scene_of", "surface_of", "stratified_scene_folds", "split_folds"]


def scene_of(sample: "LabelledSample") -> str:
    """The scene a sample was cut from: its name without the last ``_`` part.

    Biome patch names are ``<biome>_<scene index>_<tile>``, e.g. ``Forest_03_0209.tif``
    from scene ``Forest_03``; a name without ``_`` is its own scene.
    """
    name = sample.name.rsplit(".", 1)[0]
    return name.rsplit("_", 1)[0] if "_" in name else name


def surface_of(sample: "LabelledSample") -> str:
    """A sample's ``surface`` tag (the Biome biome), or ``""`` without one."""
    return str(sample.tags.get("surface", ""))


def stratified_scene_folds(samples: Sequence["LabelledSample"], k: int = 3, *,
                           scene: Callable[["LabelledSample"], str] = scene_of,
                           stratum: Callable[["LabelledSample"], str] = surface_of) -> list[list[int]]:
    """Deal the scenes of each stratum to ``k`` folds in turn.

    Within a stratum, scenes are taken in the order they first appear in ``samples`` and
    dealt to folds 0, 1, ..., k-1, 0, ... . With the Biome patches given as
    ``val + train`` (3 scenes per biome), fold 0 is the published validation split and
    folds 1 and 2 hold the first and second training scene of each biome.

    Parameters
    ----------
    samples : sequence of LabelledSample
    k : int
        Number of folds (>= 2).
    scene, stratum : callable
        A sample's scene id and stratum.

    Returns
    -------
    list of list of int
        For each fold, the indices into ``samples`` of its held-out samples; every sample
        is in exactly one fold, and the samples of a scene in the same one.

    Raises
    ------
    ValueError
        For ``k < 2``, or fewer scenes than folds.
    """
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    scene_fold: dict[str, int] = {}
    dealt: dict[str, int] = {}
    for s in samples:
        sc = scene(s)
        if sc in scene_fold:
            continue
        st = stratum(s)
        scene_fold[sc] = dealt.get(st, 0) % k
        dealt[st] = dealt.get(st, 0) + 1
    if len(scene_fold) < k:
        raise ValueError(f"{len(scene_fold)} scenes cannot fill {k} scene-disjoint folds")
    folds: list[list[int]] = [[] for _ in range(k)]
    for i, s in enumerate(samples):
        folds[scene_fold[scene(s)]].append(i)
    return folds


def split_folds(samples: Sequence["LabelledSample"], folds: Sequence[Sequence[int]],
                fold: int) -> tuple[list["LabelledSample"], list["LabelledSample"]]:
    """(training samples, held-out samples) of one fold."""
    held = set(folds[fold])
    return ([s for i, s in enumerate(samples) if i not in held],
            [s for i, s in enumerate(samples) if i in held])
