"""A per-pixel companion of a context network: an MLP on six fixed spectral regions.

The segmentation network reads context and scores the Biome labellers' thin veils at
0.3-0.5, under the threshold, where a per-pixel classifier of the raw reflectances finds
them (thin cloud of Wetlands_00: 0.93-0.96 of the patch right against 0.83-0.91); a
per-pixel classifier in turn calls clear snow and ice cloud, which the 1.6 um snow test
catches. So a :class:`~sensei_xr.models.CloudModel` may carry a :class:`PixelMember`: the
engine averages its cloud probability with the network's (after the edge refinement,
before the model's pixel tests) where the scene has all of its regions, its fallback (a
member on fewer regions, if it carries one) where the scene has that one's, and the
network alone elsewhere (``docs/model_findings.md``, "A per-pixel member").

The regions are the six reflective ones Landsat 4-9 and Sentinel-2 share (blue, green,
red, NIR, 1.6 um, 2.2 um; :data:`sensei_xr.spectral.BAND_SETS` ``"RGBNIRSWIR"``), picked
by wavelength from any sensor as a fixed-band model's are. Thermal bands are left out on
purpose: absolute brightness temperature is easy to memorise from 24 patches and does not
carry over to other scenes (the model issue's per-pixel baseline lost about 10 points
with it).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

__all__ = ["PixelMember", "FoldedPixelMember", "MEMBER_BAND_SET", "member_from_config"]

#: The band set (by wavelength regions) a member reads.
MEMBER_BAND_SET = "RGBNIRSWIR"
_HIDDEN = (64, 64)


class PixelMember(nn.Module):
    """An MLP from each pixel's reflectance in fixed regions to cloud probability.

    ``standardise -> [1x1 conv -> BatchNorm -> ReLU] x len(hidden) -> 1x1 conv (-> 2)``;
    with six regions and ``hidden = (64, 64)``: 4,994 parameters (4,738 weights and biases, 256 batch-norm).

    Parameters
    ----------
    regions : sequence of str
        Spectral regions of :data:`sensei_xr.spectral.bandsets.REGIONS`, in the order the
        member takes its bands (e.g. ``("blue", "green", "red", "nir", "swir16", "swir22")``).
    hidden : sequence of int
        Widths of the hidden layers.
    weight : float
        The member's share of the mean cloud probability, 0 < weight < 1 (0.5: the plain
        mean, chosen before any scoring).
    fallback : PixelMember, optional
        The member the engine runs instead on a scene lacking one of these regions (e.g.
        one on blue, green, red and NIR for a scene without SWIR bands); it may have its
        own fallback. It must lack one of these regions, or it could never run.

    Attributes
    ----------
    mean, std : torch.Tensor
        (N,) per-band reflectance statistics of the training pixels (buffers), set by
        :meth:`set_standardisation`.
    training_options : dict or None
        How it was trained (pixels, steps, seed, ...; set by
        :func:`sensei_xr.training.member.train_pixel_member`), kept in :attr:`config`.
    """

    def __init__(self, regions: Sequence[str], hidden: Sequence[int] = _HIDDEN, weight: float = 0.5,
                 fallback: "PixelMember | None" = None) -> None:
        super().__init__()
        from ..spectral.bandsets import REGIONS

        regions = tuple(str(r) for r in regions)
        unknown = [r for r in regions if r not in REGIONS]
        if not regions or unknown:
            raise ValueError(f"a pixel member needs regions among {sorted(REGIONS)}; got {list(regions)}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be one or more positive widths, got {list(hidden)}")
        if not 0.0 < float(weight) < 1.0:
            raise ValueError(f"weight is the member's share of the mean probability, 0 < weight < 1; got {weight}")
        self.regions, self.hidden, self.weight = regions, hidden, float(weight)
        self.training_options: dict[str, Any] | None = None
        self.register_buffer("mean", torch.zeros(len(regions)))
        self.register_buffer("std", torch.ones(len(regions)))
        layers: list[nn.Module] = []
        width = len(regions)
        for h in hidden:
            layers += [nn.Conv2d(width, h, 1), nn.BatchNorm2d(h), nn.ReLU()]
            width = h
        layers.append(nn.Conv2d(width, 2, 1))
        self.layers = nn.Sequential(*layers)
        if fallback is not None:
            if not isinstance(fallback, PixelMember):
                raise TypeError(f"a member's fallback is a PixelMember, got {type(fallback).__name__}")
            if set(fallback.regions) >= set(regions):
                raise ValueError(f"a fallback member must lack one of its member's regions {list(regions)} (it runs "
                                 f"where the scene lacks one); got {list(fallback.regions)}")
        self.fallback = fallback

    def chain(self) -> list["PixelMember"]:
        """This member and its fallbacks, in the order the engine tries them."""
        out, m = [], self
        while m is not None:
            out.append(m)
            m = m.fallback
        return out

    @property
    def config(self) -> dict[str, Any]:
        """Plain, JSON-able description (what :func:`member_from_config` takes)."""
        out: dict[str, Any] = {"regions": list(self.regions), "hidden": list(self.hidden), "weight": self.weight}
        if self.training_options is not None:
            out["training"] = dict(self.training_options)
        if self.fallback is not None:
            out["fallback"] = self.fallback.config
        return out

    @torch.no_grad()
    def set_standardisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Per-band mean and standard deviation (reflectance) the inputs are scaled by."""
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != self.mean.shape or std.shape != self.std.shape or not bool((std > 0).all()):
            raise ValueError(f"mean and std must be {tuple(self.mean.shape)} with std > 0")
        self.mean.copy_(mean)
        self.std.copy_(std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, H, W) reflectance in the member's regions -> (B, 2, H, W) logits (clear, cloud)."""
        if images.dim() != 4 or images.shape[1] != len(self.regions):
            raise ValueError(f"a pixel member takes (B, {len(self.regions)}, H, W) images of the regions "
                             f"{list(self.regions)}; got shape {tuple(images.shape)}")
        x = (images.float() - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        return self.layers(x)

    @torch.no_grad()
    def cloud_probability(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, H, W) reflectance -> (B, 1, H, W) float32 cloud probability (NaN read as 0; the
        engine fills no-data from neighbours before, and masks it after)."""
        logits = self.forward(torch.nan_to_num(images.float(), nan=0.0))
        return torch.softmax(logits.float(), dim=1)[:, 1:2]


class FoldedPixelMember(nn.Module):
    """A :class:`PixelMember` in eval mode as a chain of matrix products on (pixels,
    channels): the standardisation and each batch norm folded into the layer before
    (``W' = diag(s) W``, ``b' = s (b - mean) + beta``), each bias as one more weight row
    read against a column of ones (so a layer is one matrix product, with no pass to
    broadcast the bias), the two-class softmax as a sigmoid of the logits' difference, and
    the pixels taken :data:`PIXELS_PER_STEP` at a time so the 64-wide activations stay in
    cache. The same probabilities to about 1e-5; what the engine runs. On one core of this
    CPU, 3.5x faster than the 1x1 convolutions, and the bias row another 1.1x
    (``docs/benchmarks.md``)."""

    #: Pixels per matrix product on a CPU (4096 x 65 float32 activations: 1 MiB, in cache),
    #: and on a GPU (a block's pixels in a few launches, not thousands).
    PIXELS_PER_STEP = 4096
    PIXELS_PER_STEP_GPU = 1 << 18

    def __init__(self, member: PixelMember) -> None:
        super().__init__()
        convs = [m for m in member.layers if isinstance(m, nn.Conv2d)]
        norms = [m for m in member.layers if isinstance(m, nn.BatchNorm2d)]
        self.n_bands = len(member.regions)
        layers = []
        with torch.no_grad():
            for k, conv in enumerate(convs):
                w, b = conv.weight[:, :, 0, 0].double(), conv.bias.double()
                if k == 0:  # (x - mean) / std folded into the first layer
                    w = w / member.std.double()[None, :]
                    b = b - (w * member.mean.double()[None, :]).sum(1)
                if k < len(norms):
                    bn = norms[k]
                    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                    w, b = w * scale[:, None], (b - bn.running_mean.double()) * scale + bn.bias.double()
                # (in + 1, out): a row per input channel, then the bias (read against
                # the input's column of ones).
                layers.append(torch.cat([w.t(), b[None]]).float())
        # softmax([l0, l1])[1] = sigmoid(l1 - l0): the last layer as one vector.
        last = layers.pop()
        layers.append(last[:, 1] - last[:, 0])
        self.layers = nn.ParameterList([nn.Parameter(w.contiguous(), requires_grad=False) for w in layers])
        # Each layer's input width (its channels; the ones column comes next).
        self.widths = [self.n_bands] + [w.shape[1] for w in layers[:-1]]

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, H, W) reflectance -> (B, 1, H, W) float32 cloud probability (NaN read as 0)."""
        b, n, h, w = images.shape
        if n != self.n_bands:
            raise ValueError(f"a pixel member takes {self.n_bands} bands, got {n}")
        step = self.PIXELS_PER_STEP if images.device.type == "cpu" else self.PIXELS_PER_STEP_GPU
        count = b * h * w
        # Every product gets exactly `step` rows (the last step padded with zeros): matrix
        # kernels pick their blocking by shape, and a pixel's probability must not depend
        # on how many pixels came with it (the engine runs it once per pixel of a block).
        # Each layer reads a (step, channels + 1) buffer whose last column stays 1; the
        # pixels are copied in a step at a time, so the whole input is never copied (the
        # engine passes a block's pixels at once).
        flat = images.float().permute(1, 0, 2, 3).reshape(n, count)  # a view when b == 1
        buffers = []
        for width in self.widths:
            buffer = torch.empty(step, width + 1, dtype=torch.float32, device=images.device)
            buffer[:, width] = 1.0
            buffers.append(buffer)
        out = torch.empty(count, dtype=torch.float32, device=images.device)
        for start in range(0, count, step):
            k = min(step, count - start)
            if k < step:
                buffers[0][k:, :n] = 0.0
            buffers[0][:k, :n] = flat[:, start:start + k].t()
            torch.nan_to_num_(buffers[0], nan=0.0)
            for layer, src, dst, width in zip(self.layers, buffers, buffers[1:], self.widths[1:]):
                torch.mm(src, layer, out=dst[:, :width]).relu_()
            # The sigmoid over the whole step too: its vectorised and scalar tails differ.
            out[start:start + k] = torch.mv(buffers[-1], self.layers[-1]).sigmoid_()[:k]
        return out.reshape(b, h, w)[:, None]


def member_from_config(config: Mapping[str, Any]) -> PixelMember:
    """A fresh member from :attr:`PixelMember.config` (weights and statistics to be loaded)."""
    if not isinstance(config, Mapping) or "regions" not in config:
        raise ValueError(f"a pixel member config is {{'regions': [...], 'hidden': [...], 'weight': w}}, got {config!r}")
    unknown = set(config) - {"regions", "hidden", "weight", "training", "fallback"}
    if unknown:
        raise ValueError(f"unknown pixel member config keys {sorted(unknown)}; allowed: regions, hidden, weight, "
                         "training, fallback")
    fallback = member_from_config(config["fallback"]) if config.get("fallback") is not None else None
    member = PixelMember(config["regions"], config.get("hidden", _HIDDEN), config.get("weight", 0.5), fallback)
    if config.get("training") is not None:
        member.training_options = dict(config["training"])
    return member
