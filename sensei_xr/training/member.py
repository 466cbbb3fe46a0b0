"""Training a model's per-pixel member (:class:`~sensei_xr.models.pixel_member.PixelMember`).

After the network, on the same labelled training images: pixels drawn evenly from each
image (at most ``pixels`` in all), the member's regions picked by wavelength, reflectance
standardised by the drawn pixels' statistics, AdamW on batches of pixels with
cross-entropy. Real labels only: no synthetic clouds, no patches. About a minute on one
CPU thread. The settings are the thirty-third session's per-pixel probe's
(``docs/model_findings.md``), fixed before the member was first scored with a network.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..datasets.base import IGNORE_INDEX
from ..models.pixel_member import MEMBER_BAND_SET, PixelMember
from ..spectral.bandsets import BAND_SETS, REGIONS, region_band

__all__ = ["MEMBER_DEFAULTS", "check_member_option", "wants_member", "member_pixels", "train_pixel_member", "training_member", "give_missing_member"]

#: Training settings of a member (a config's ``pixel_member`` table overrides them).
#: ``fallbacks``: members for scenes lacking one of the six regions, in the order the engine
#: tries them, each ``{band_set = "RGBNIR", weight = 0.25}`` (trained alike, same seed).
MEMBER_DEFAULTS: dict[str, Any] = {"pixels": 300_000, "steps": 3000, "batch_size": 4096, "lr": 3e-3,
                                   "weight_decay": 1e-4, "hidden": [64, 64], "weight": 0.5, "fallbacks": []}


def wants_member(cfg: Mapping[str, Any]) -> bool:
    """Whether a config asks for a member: ``pixel_member`` true or a table of options
    (an empty table: every default)."""
    spec = cfg.get("pixel_member")
    return spec is True or isinstance(spec, Mapping)

# The training options a member records (with its seed), and a kept one must match.
_RECORDED = ("pixels", "steps", "batch_size", "lr", "weight_decay")


def check_member_option(cfg: Mapping[str, Any]) -> None:
    """Refuse, before training (not after it), a config's ``pixel_member`` that is not true,
    false or a table of valid options, a member inside the ``model`` table (it is trained
    after the network, not with it), and a member on a fixed-band model whose bands lack
    one of its regions."""
    spec = cfg.get("pixel_member", False)
    if isinstance(spec, bool) or spec is None:
        pass
    elif not isinstance(spec, Mapping):
        raise ValueError(f"pixel_member must be true, false or a table of options {sorted(MEMBER_DEFAULTS)}; "
                         f"got {spec!r}")
    else:
        unknown = set(spec) - set(MEMBER_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown pixel_member option(s) {sorted(unknown)}; known: {sorted(MEMBER_DEFAULTS)}")
        opt = {**MEMBER_DEFAULTS, **spec}
        for key in ("pixels", "steps", "batch_size"):
            if isinstance(opt[key], bool) or not isinstance(opt[key], int) or opt[key] < 1:
                raise ValueError(f"pixel_member {key} must be a positive integer, got {opt[key]!r}")
        for key, low in (("lr", 0.0), ("weight_decay", -1e-300)):
            if isinstance(opt[key], bool) or not isinstance(opt[key], (int, float)) or not opt[key] > low:
                raise ValueError(f"pixel_member {key} must be a number > {max(low, 0):g}, got {opt[key]!r}")
        if isinstance(opt["hidden"], (str, bytes)) or not isinstance(opt["hidden"], (list, tuple)):
            raise ValueError(f"pixel_member hidden must be a list of layer widths, got {opt['hidden']!r}")
        with torch.random.fork_rng(devices=[]):  # a check must not move the caller's random state
            # Refuses bad widths, weights, and fallbacks that could never run.
            PixelMember(BAND_SETS[MEMBER_BAND_SET], opt["hidden"], opt["weight"], _fallback_chain(opt))
    model = cfg.get("model") or {}
    if isinstance(model, Mapping) and model.get("pixel_member") is not None:
        raise ValueError("pixel_member goes at the top of a training config (trained after the network), "
                         "not in its model table")
    band_set = model.get("band_set") if isinstance(model, Mapping) else None
    if wants_member(cfg) and band_set is not None:
        missing = [r for r in BAND_SETS[MEMBER_BAND_SET] if r not in (BAND_SETS.get(band_set) or ())]
        if missing:
            raise ValueError(f"a pixel member reads the regions {list(BAND_SETS[MEMBER_BAND_SET])}; this fixed-band "
                             f"model's band set {band_set} lacks {missing}: set pixel_member = false")


def _fallback_specs(opt: Mapping[str, Any]) -> list[tuple[tuple[str, ...], float]]:
    """(regions, weight) of each fallback an options table asks for, checked."""
    specs = opt.get("fallbacks") or []
    if isinstance(specs, (str, bytes, Mapping)) or not isinstance(specs, (list, tuple)):
        raise ValueError(f"pixel_member fallbacks must be a list of tables like {{band_set = \"RGBNIR\", weight = "
                         f"0.25}}, got {specs!r}")
    out = []
    for spec in specs:
        if not isinstance(spec, Mapping) or set(spec) != {"band_set", "weight"}:
            raise ValueError(f"a pixel_member fallback is a table {{band_set = ..., weight = ...}}, got {spec!r}")
        usable = sorted(k for k, v in BAND_SETS.items()
                        if v and k != "NoRGB" and not any(REGIONS[r].thermal for r in v))
        if spec["band_set"] not in usable:
            raise ValueError(f"a pixel_member fallback's band_set names reflective regions, one of {usable}; "
                             f"got {spec['band_set']!r}")
        if isinstance(spec["weight"], bool) or not isinstance(spec["weight"], (int, float)):
            raise ValueError(f"a pixel_member fallback's weight is a number, 0 < weight < 1; got {spec['weight']!r}")
        out.append((tuple(BAND_SETS[spec["band_set"]]), float(spec["weight"])))
    return out


def _fallback_chain(opt: Mapping[str, Any]) -> PixelMember | None:
    """Untrained fallbacks as an options table asks for them (for checking)."""
    chain = None
    for regions, weight in reversed(_fallback_specs(opt)):
        chain = PixelMember(regions, opt["hidden"], weight, chain)
    return chain


def _region_indices(sample, regions: Sequence[str]) -> list[int] | None:
    names = [region_band(sample.descriptors, r) for r in regions]
    if any(n is None for n in names):
        return None
    return [sample.descriptors.names.index(n) for n in names]


def member_pixels(samples: Sequence, regions: Sequence[str], cloud_classes: Sequence[int], pixels: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labelled pixels of the images that have every region, drawn evenly per image.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        (M, len(regions)) float32 reflectance and (M,) int64 labels (1 cloud, 0 not).
    """
    usable = [(s, idx) for s in samples if (idx := _region_indices(s, regions)) is not None]
    if not usable:
        raise ValueError(f"a pixel member needs labelled training images with the regions {list(regions)}; "
                         "none of the training data has them all")
    per_image = max(1, int(pixels) // len(usable))
    cloud = np.asarray(sorted(set(int(c) for c in cloud_classes)))
    xs, ys = [], []
    for s, idx in usable:
        x = s.image[idx].reshape(len(idx), -1).T
        y = s.labels.ravel()
        ok = (y != IGNORE_INDEX) & ~np.asarray(s.nodata, bool).ravel() & np.isfinite(x).all(axis=1)
        x, y = x[ok], y[ok]
        if len(y) > per_image:
            keep = rng.choice(len(y), per_image, replace=False)
            x, y = x[keep], y[keep]
        xs.append(x)
        ys.append(np.isin(y, cloud).astype(np.int64))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys)


def train_pixel_member(samples: Sequence, cloud_classes: Sequence[int], seed: int = 0,
                       regions: Sequence[str] | None = None, **options) -> PixelMember:
    """A :class:`PixelMember` trained on labelled images.

    Parameters
    ----------
    samples : sequence of LabelledSample
        Reflectance (0-1) with labels; images lacking a region are skipped.
    cloud_classes : sequence of int
        Label values that are cloud (the others, except ``IGNORE_INDEX``, are not).
    seed : int
        Seeds the pixel draw, the initialisation and the batches (same seed, same member).
    regions : sequence of str, optional
        Default: the six reflective regions of ``"RGBNIRSWIR"``.
    **options
        Any of :data:`MEMBER_DEFAULTS`; each of ``fallbacks`` is trained alike on its
        regions (same seed), and chained after the member.

    Returns
    -------
    PixelMember
        In eval mode, on the CPU.
    """
    opt = {**MEMBER_DEFAULTS, **options}
    check_member_option({"pixel_member": dict(options)})
    links = [(tuple(regions or BAND_SETS[MEMBER_BAND_SET]), float(opt["weight"]))] + [
        (tuple(r), float(w)) for r, w in _fallback_specs(opt)]
    return _chain(samples, cloud_classes, seed, links, opt)


def _chain(samples, cloud_classes, seed: int, links: Sequence[tuple[tuple[str, ...], float]],
           opt: Mapping[str, Any], kept: Sequence[PixelMember] = ()) -> PixelMember:
    """The member chain ``links`` ((regions, weight): the member, then its fallbacks), built
    from its last link up: a link of ``kept`` at the same place that is already the one asked
    for is reused as it is, any other is trained (each on its own, so both give the same)."""
    built = None
    for i in reversed(range(len(links))):
        regions, weight = links[i]
        have = kept[i] if i < len(kept) else None
        if _same_link(have, regions, weight, opt, seed):
            have.fallback = built
            built = have
        else:
            built = _train_one(samples, cloud_classes, seed, regions, {**opt, "weight": weight}, built)
    return built


def _train_one(samples, cloud_classes, seed: int, regions: tuple[str, ...], opt: Mapping[str, Any],
               fallback: PixelMember | None) -> PixelMember:
    x, y = member_pixels(samples, regions, cloud_classes, opt["pixels"], np.random.default_rng(seed))
    if len(np.unique(y)) < 2:
        raise ValueError("a pixel member needs both cloud and clear training pixels; the training labels hold one")
    # Its own seeded generators, whatever the caller's torch state and grad mode (a run
    # finished from its checkpoint calls this under no_grad).
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(seed)
        member = PixelMember(regions, opt["hidden"], opt["weight"])
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
        member.set_standardisation(torch.from_numpy(mean), torch.from_numpy(std))
        xt = torch.from_numpy(x)[:, :, None, None]
        yt = torch.from_numpy(y)[:, None, None]
        optimiser = torch.optim.AdamW(member.parameters(), lr=opt["lr"], weight_decay=opt["weight_decay"])
        generator = torch.Generator().manual_seed(seed)
        member.train()
        for _ in range(int(opt["steps"])):
            i = torch.randint(0, len(yt), (int(opt["batch_size"]),), generator=generator)
            loss = torch.nn.functional.cross_entropy(member(xt[i]), yt[i])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    member.training_options = _training_options(opt, seed, len(y))
    member.fallback = fallback
    return member.eval()


def _training_options(opt: Mapping[str, Any], seed: int, n_pixels: int) -> dict[str, Any]:
    """What trained a member (kept in its config, so a card says it and a kept member
    trained otherwise is trained again)."""
    keep = {k: opt[k] for k in _RECORDED}
    return {**keep, "seed": int(seed), "pixels_drawn": int(n_pixels)}


def training_member(cfg: Mapping[str, Any], sources, cloud_classes: Sequence[int]) -> PixelMember | None:
    """The member a training config asks for (``pixel_member``: true or a table of
    :data:`MEMBER_DEFAULTS` overrides), trained on ``sources`` with the config's seed; None
    when it asks for none."""
    if not wants_member(cfg):
        return None
    options = {} if cfg["pixel_member"] is True else dict(cfg["pixel_member"])
    samples = [smp for src in sources for smp in src]
    return train_pixel_member(samples, cloud_classes, seed=int(cfg.get("seed", 0)), **options)


def _wanted_chain(cfg: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[tuple[str, ...], float]]]:
    """The options a config's member is trained with, and (regions, weight) of each link of
    its chain: the member, then its fallbacks in order."""
    opt = {**MEMBER_DEFAULTS, **({} if cfg["pixel_member"] is True else dict(cfg["pixel_member"]))}
    links = [(tuple(BAND_SETS[MEMBER_BAND_SET]), float(opt["weight"]))] + [(tuple(r), float(w))
                                                                          for r, w in _fallback_specs(opt)]
    return opt, links


def _same_link(member: PixelMember | None, regions: tuple[str, ...], weight: float, opt: Mapping[str, Any],
               seed: int) -> bool:
    """Whether one member of a chain is the one asked for (regions, weight, architecture and
    how it was trained, seed included), whatever follows it."""
    if member is None:
        return False
    done = member.training_options or {}
    wanted = {**{k: opt[k] for k in _RECORDED}, "seed": seed}
    return (tuple(member.regions) == regions and member.weight == weight
            and list(member.hidden) == list(opt["hidden"]) and all(done.get(k) == v for k, v in wanted.items()))


def _same_member(member: PixelMember, cfg: Mapping[str, Any]) -> bool:
    """Whether a model's member, fallbacks included, is the one ``cfg`` asks for."""
    opt, links = _wanted_chain(cfg)
    chain = member.chain()
    seed = int(cfg.get("seed", 0))
    return len(chain) == len(links) and all(_same_link(m, r, w, opt, seed) for m, (r, w) in zip(chain, links))


def give_missing_member(model, cfg: Mapping[str, Any], sources) -> PixelMember | None:
    """Give ``model`` the member ``cfg`` asks for (a finished or kept run: the member is
    trained after the network), unless it has that very member already. Each link of the
    chain (the member, then its fallbacks) that is already the one asked for is kept as it
    is, so adding a fallback leaves a released member's weights untouched; a link trained
    with other options or seed is trained again (each link is trained on its own, so a kept
    link and a new one are what one training of the whole chain gives). Returns the member
    given (None: nothing given; a model whose config asks for no member keeps what it has)."""
    if not wants_member(cfg):
        return None
    have = getattr(model, "pixel_member", None)
    check_member_option({"pixel_member": cfg["pixel_member"]})
    if have is not None and _same_member(have, cfg):
        return None
    opt, links = _wanted_chain(cfg)
    samples = [smp for src in sources for smp in src]
    model.pixel_member = _chain(samples, model.cloud_class_indices, int(cfg.get("seed", 0)), links, opt,
                                have.chain() if have is not None else ())
    return model.pixel_member
