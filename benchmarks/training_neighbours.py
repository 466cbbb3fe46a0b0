"""What the training pixels alone say about each held-out Biome patch.

    python -m benchmarks.training_neighbours [--k 10] [--out results/crossval/neighbours.md]

For every fold of the cross-validation (the same scene-disjoint folds as
``sensei_xr.training.crossval``) and band set, each held-out pixel gets the majority label
of its ``k`` nearest training pixels in band space (every band scaled by its standard
deviation over the training pixels: reflectance and K alike). The table gives, per patch,
the share of its pixels that vote gets right. A patch near 0 is one whose spectra the
training folds label the other way: a per-pixel learner cannot get it right, and a network
that does owes it to context or luck, not to the labels it was shown. It is a diagnosis of
the folds, not a model: nothing here is shipped or selected on.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from sensei_xr.evaluation.folds import split_folds, stratified_scene_folds
from sensei_xr.training.crossval import CV_BAND_SETS, biome_cv_samples, select_bands

__all__ = ["CLOUD_CLASSES", "neighbour_accuracy", "neighbour_table"]

#: Label values that are cloud in the Biome patches (classes clear, cloud).
CLOUD_CLASSES = (1,)


def _pixels(samples, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(pixels x bands, labels) of every ``stride``-th labelled, valid pixel."""
    xs, ys = [], []
    for s in samples:
        x = s.image.reshape(s.image.shape[0], -1).T[::stride]
        y = s.labels.reshape(-1)[::stride]
        ok = (y >= 0) & ~s.nodata.reshape(-1)[::stride]
        xs.append(x[ok])
        ys.append(y[ok])
    return np.concatenate(xs).astype(np.float64), np.concatenate(ys)


def neighbour_accuracy(train: Sequence, held: Sequence, cloud_classes: Sequence[int] = CLOUD_CLASSES, k: int = 10,
                       train_stride: int = 4, held_stride: int = 16) -> dict[str, float]:
    """Per held-out sample, the share of its pixels the majority of their ``k`` nearest
    training pixels labels right (cloud or clear).

    Parameters
    ----------
    train, held : sequence of LabelledSample
        The same bands in the same order (reflectance, brightness temperature in K).
    cloud_classes : sequence of int
        Label values that are cloud; every other valid label is clear.
    k : int
        Neighbours voting (odd or even; a tie counts as cloud).
    train_stride, held_stride : int
        Every n-th pixel of the training and held-out images is used (the patches are
        256 x 256; 4 and 16 keep 16,384 and 4,096 per patch).

    Returns
    -------
    dict
        Sample name -> share (0-1) of its used pixels labelled right.
    """
    from scipy.spatial import cKDTree

    x, y = _pixels(train, train_stride)
    cloud = np.isin(y, list(cloud_classes))
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    tree = cKDTree(x / scale)
    out = {}
    for s in held:
        q, truth = _pixels([s], held_stride)
        if len(truth) == 0:
            continue
        _, idx = tree.query(q / scale, k=k)
        votes = cloud[idx.reshape(len(truth), -1)].mean(axis=1)
        out[s.name] = float(((votes >= 0.5) == np.isin(truth, list(cloud_classes))).mean())
    return out


def neighbour_table(samples: Sequence, band_sets: Sequence[str] = CV_BAND_SETS, k: int = 10, folds: int = 3) -> str:
    """Markdown: fold, patch, its cloud share, and the k-NN share right per band set."""
    split = stratified_scene_folds(samples, folds)
    rows = []
    for f in range(len(split)):
        train, held = split_folds(samples, split, f)
        scores = {b: neighbour_accuracy([select_bands(s, b) for s in train], [select_bands(s, b) for s in held], k=k)
                  for b in band_sets}
        for s in held:
            valid = (s.labels >= 0) & ~s.nodata
            share = float(np.isin(s.labels[valid], CLOUD_CLASSES).mean()) if valid.any() else float("nan")
            cells = " | ".join(f"{scores[b].get(s.name, float('nan')):.2f}" for b in band_sets)
            rows.append(f"| {f} | {Path(s.name).stem} | {share:.2f} | {cells} |")
    head = ["| fold | patch | cloud share | " + " | ".join(band_sets) + " |",
            "|---|---|---|" + "---|" * len(band_sets)]
    return "\n".join(head + rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=10, help="neighbours voting (default 10)")
    p.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = p.parse_args(argv)
    text = (f"Share of each held-out patch's pixels labelled right by the majority of their {args.k} nearest "
            "training pixels (bands scaled by their training standard deviation)\n\n"
            + neighbour_table(biome_cv_samples(), k=args.k))
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
