"""A cloud model = optional SEnSeI encoder + segmentation head, and its folded form.

For a fixed band set the SEnSeI descriptor path does not depend on the pixels, and
band multiplication followed by the mean over bands is affine in the reflectances:
``F(p) = W r(p) + b`` with ``W = V^T / N`` (64 x N) and ``b = 0.5 * mean_i v_i``. The
head's first convolution ``K`` (linear, zero padded) therefore sees

    K * pad(W r + b) = (K W) * pad(r) + K * pad(b 1_inside)

The first term is an ordinary convolution with ``N`` input channels (the folded kernel
``K W``); the second is a bias that is constant inside the image but smaller near its
borders, where part of the kernel falls on the zero padding of the 64-channel map. It
is computed exactly as ``conv2d(ones(H, W), K b)`` on a single 1-channel image (cost:
one output channel's worth per batch, not per item). For 1x1 convolutions without
padding (PixelNet) it is a plain per-channel bias. :meth:`CloudModel.for_bands` builds
this :class:`FoldedCloudModel`; SEnSeI then costs nothing at inference: the folded
network is the plain head with ``N`` input channels.
"""

from __future__ import annotations

import copy
import re
from typing import Any, List, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .deeplab import DeepLabV3Plus, DeepLabV3PlusPixel, DeepLabV3PlusWide
from .pixel_member import PixelMember, member_from_config
from .pixelnet import PixelNet
from .sensei import OrthonormalSEnSeI, SEnSeI
from ..spectral.snow import NirSnowTest, SnowTest
from ..spectral.warm import WarmSurfaceTest

__all__ = [
    "CloudModel",
    "FoldedCloudModel",
    "build_model",
    "cloud_class_indices",
    "HEADS",
    "ENCODERS",
    "CALIBRATION_TOLERANCE",
    "DEFAULT_CLASSES",
]

#: Segmentation heads by config name.
HEADS: dict[str, type[nn.Module]] = {"deeplabv3plus": DeepLabV3Plus, "deeplabv3plus_wide": DeepLabV3PlusWide,
                                     "deeplabv3plus_pixel": DeepLabV3PlusPixel, "pixelnet": PixelNet}
#: Encoders by config name (``None``: fixed bands, no encoder).
ENCODERS: dict[str, type[nn.Module]] = {"sensei": SEnSeI, "sensei_orthonormal": OrthonormalSEnSeI}
DEFAULT_CLASSES: tuple[str, ...] = ("clear", "cloud")
#: Largest difference of band centres, in normalised wavelength (``log10(nm - 300) - 2``;
#: 0.05 is about 25 nm in the blue, 80 nm at 1.6 um), for a band set to use a batch-norm
#: calibration measured on another sensor's bands (e.g. Sentinel-2 B02-B04 for Landsat 8 B2-B4).
CALIBRATION_TOLERANCE = 0.05
_CONFIG_KEYS = ("encoder", "head", "classes", "in_bands", "band_set", "pixel_member")

# "cloud_shadow", "cloud_free", "non_cloud", "no cloud" name classes that are not cloud.
_NOT_CLOUD = re.compile(r"shadow|free|(^|[^a-z])(non|no|not)[\s_-]*cloud")


def cloud_class_indices(classes: Sequence[str]) -> tuple[int, ...]:
    """Indices of the classes that are cloud: their name contains "cloud".

    Names that say the opposite or something else (``"cloud_shadow"``,
    ``"cloud_free"``, ``"non_cloud"``) are not counted. ``P(cloud)`` is the sum of
    the softmax probabilities of these classes (e.g. thin + thick cloud).

    Examples
    --------
    >>> cloud_class_indices(("clear", "thin_cloud", "thick_cloud", "cloud_shadow"))
    (1, 2)
    """
    out = []
    for i, name in enumerate(classes):
        n = str(name).lower()
        if "cloud" in n and not _NOT_CLOUD.search(n):
            out.append(i)
    return tuple(out)


def largest_calibrated_subset(calibrations: Mapping[str, torch.Tensor],
                              descriptors: torch.Tensor) -> tuple[str, list[int]] | None:
    """The largest of these calibrated band sets found among the bands, or None.

    Parameters
    ----------
    calibrations : mapping
        Calibration name -> its (M, 3) normalised descriptors.
    descriptors : torch.Tensor
        (N, 3) normalised wavelengths of the available bands (CPU).

    Returns
    -------
    (str, list of int) or None
        The name and the indices (ascending) of the bands that make it up: each calibrated
        band is matched to the nearest free band within :data:`CALIBRATION_TOLERANCE`.
    """
    best: tuple[str, list[int]] | None = None
    for name, cal in sorted(calibrations.items()):
        if len(cal) > len(descriptors) or (best is not None and len(cal) <= len(best[1])):
            continue
        taken: list[int] = []
        for centre in cal[:, 1]:  # each calibrated band: the nearest free band, if close enough
            gaps = (descriptors[:, 1] - centre).abs()
            gaps[taken] = float("inf")
            i = int(torch.argmin(gaps))
            if gaps[i] > CALIBRATION_TOLERANCE:
                break
            taken.append(i)
        else:
            best = (name, sorted(taken))
    return best


def _as_descriptors(descriptors: Any, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(descriptors) if not torch.is_tensor(descriptors) else descriptors,
                           dtype=like.dtype, device=like.device)


def _canonical(t: torch.Tensor) -> torch.Tensor:
    # einsum can return a kernel whose size-1 dims carry channels-last-looking strides;
    # conv2d would then convert every input to channels-last (a full copy per call).
    return torch.empty(t.shape, dtype=t.dtype, device=t.device).copy_(t)


class FoldedCloudModel(nn.Module):
    """A :class:`CloudModel` frozen for one band set: images in, logits out.

    Built by :meth:`CloudModel.for_bands`; holds its own copy of the head (the module is
    the cache: keep one per band set). Scriptable and exportable to ONNX; cast with
    ``.half()`` / ``.to(torch.bfloat16)`` for reduced precision on GPU.

    Attributes
    ----------
    n_bands : int
        Bands the folded network takes, in the order of the descriptors it was built for.
    classes : tuple of str
    cloud_class_indices : tuple of int
    """

    def __init__(self, head: nn.Module, weight: torch.Tensor, bias: torch.Tensor,
                 bias_kernel: torch.Tensor | None, stride: Sequence[int], padding: Sequence[int],
                 dilation: Sequence[int], classes: Sequence[str]) -> None:
        super().__init__()
        self.head = head
        self.register_buffer("weight", _canonical(weight))
        self.register_buffer("bias", _canonical(bias))
        self.border_bias: bool = bias_kernel is not None
        if bias_kernel is None:
            bias_kernel = torch.zeros(weight.shape[0], 1, 1, 1, dtype=weight.dtype, device=weight.device)
        self.register_buffer("bias_kernel", _canonical(bias_kernel))
        self.stride: List[int] = [int(s) for s in stride]
        self.padding: List[int] = [int(p) for p in padding]
        self.dilation: List[int] = [int(d) for d in dilation]
        self.n_bands: int = int(weight.shape[1])
        self.classes: List[str] = [str(c) for c in classes]
        self.cloud_class_indices: List[int] = list(cloud_class_indices(classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N, H, W) images of the folded band set -> (B, C, H, W) logits."""
        if not torch.jit.is_tracing():
            if images.dim() != 4 or images.shape[1] != self.n_bands:
                raise ValueError("images must be (B, N, H, W) with N equal to the number of bands "
                                 "this folded model was built for")
        y = F.conv2d(images, self.weight, self.bias, self.stride, self.padding, self.dilation)
        if self.border_bias:
            # Exact bias of the constant SEnSeI offset under zero padding (see module doc).
            ones = torch.ones_like(images[:1, :1])
            y = y + F.conv2d(ones, self.bias_kernel, None, self.stride, self.padding, self.dilation)
        return self.head.forward_from_first(y, [images.shape[-2], images.shape[-1]])


class CloudModel(nn.Module):
    """Cloud segmentation from any band set (with SEnSeI) or a fixed one (without).

    Parameters
    ----------
    encoder : SEnSeI or None
        The spectral encoder; ``None`` for a fixed-band baseline whose head takes the
        raw bands.
    head : DeepLabV3Plus or PixelNet
        Segmenter whose ``first_conv`` takes 64 channels (with SEnSeI) or the bands.
    classes : sequence of str
        Class names, one per output channel, e.g. ``("clear", "cloud")``,
        ``("clear", "cloud", "shadow")``, ``("clear", "thin_cloud", "thick_cloud")``.
    config : dict, optional
        The plain config it was built from (see :func:`build_model`); derived from the
        modules when not given.

    Attributes
    ----------
    card : dict or None
        Model card, set by :func:`~sensei_xr.models.weights.load_model`.
    sha256 : str or None
        sha256 of the weights file it was loaded from.
    source : str or None
        Registry name or absolute path it was loaded from.
    snow_test : SnowTest or None
        The snow test the engine applies to its refined cloud probability (its 1.6 um
        ceiling chosen on the training labels; saved on the card), or None.
    nir_snow_test : NirSnowTest or None
        The snow test for scenes without a 1.6 um band (green, red and NIR; chosen on the
        training labels; saved on the card), or None.
    warm_test : WarmSurfaceTest or None
        The warm-surface test (Fmask's 27 C; fixed, not chosen on labels; saved on the
        card), or None.
    pixel_member : PixelMember or None
        A per-pixel classifier the engine averages with the network's cloud probability
        where the scene has its regions (trained after the network, on the same labelled
        patches; its weights are saved with the model's), or None. Not part of
        :meth:`forward` or :meth:`for_bands`: those are the network alone.
    """

    def __init__(self, encoder: SEnSeI | None, head: nn.Module,
                 classes: Sequence[str] = DEFAULT_CLASSES, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        classes = tuple(str(c) for c in classes)
        if len(classes) != head.num_classes:
            raise ValueError(f"{len(classes)} class names for a head with {head.num_classes} outputs")
        if encoder is not None and head.in_channels != encoder.out_channels:
            raise ValueError(f"head takes {head.in_channels} channels, the encoder gives {encoder.out_channels}")
        self.encoder = encoder
        self.head = head
        self.classes = classes
        if config is None:
            head_name = next((k for k, v in HEADS.items() if type(head) is v), type(head).__name__)
            encoder_name = None if encoder is None else next(
                (k for k, v in ENCODERS.items() if type(encoder) is v), type(encoder).__name__)
            config = {"encoder": encoder_name, "head": head_name,
                      "classes": list(classes), "in_bands": None if encoder is not None else head.in_channels}
        self._config = dict(config)
        self.snow_test: SnowTest | None = None
        self.nir_snow_test: NirSnowTest | None = None
        self.warm_test: WarmSurfaceTest | None = None
        self.pixel_member: PixelMember | None = None
        self.card: dict | None = None
        self.sha256: str | None = None
        self.source: str | None = None
        #: Batch-norm statistics measured for particular band sets (see
        #: :meth:`set_bn_calibration`): name -> (normalised descriptors (N, 3), head buffers).
        self.bn_calibrations: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}

    @property
    def config(self) -> dict:
        """The plain, JSON-able architecture config (a copy); with a pixel member, its
        config under ``"pixel_member"``."""
        config = copy.deepcopy(self._config)
        config.pop("pixel_member", None)
        if self.pixel_member is not None:
            config["pixel_member"] = self.pixel_member.config
        return config

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def cloud_class_indices(self) -> tuple[int, ...]:
        """Indices of the cloud classes (see :func:`cloud_class_indices`)."""
        return cloud_class_indices(self.classes)

    @property
    def in_bands(self) -> int | None:
        """Fixed band count of a baseline; ``None`` with SEnSeI (any band set)."""
        return None if self.encoder is not None else int(self.head.in_channels)

    def _check_baseline(self, n: int) -> None:
        if n != self.head.in_channels:
            raise ValueError(
                f"this model has no SEnSeI encoder and takes exactly {self.head.in_channels} bands "
                f"(in its training order); got {n}"
            )

    def forward(self, images: torch.Tensor, descriptors: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Logits for a batch.

        Parameters
        ----------
        images : torch.Tensor
            (B, N, H, W) float reflectance (thermal bands scaled to about 0..1).
        descriptors : torch.Tensor or numpy.ndarray
            (N, 3) or (B, N, 3) normalised wavelengths. Required with SEnSeI; without an
            encoder only their count is checked.

        Returns
        -------
        torch.Tensor
            (B, C, H, W) logits, C = ``len(classes)``.
        """
        if images.dim() != 4:
            raise ValueError(f"images must be (B, N, H, W); got shape {tuple(images.shape)}")
        if self.encoder is None:
            self._check_baseline(images.shape[1])
            if descriptors is not None:
                shape = descriptors.shape if torch.is_tensor(descriptors) else np.shape(descriptors)
                self._check_baseline(int(shape[-2]))
            return self.head(images)
        if descriptors is None:
            raise ValueError("a SEnSeI model needs the bands' descriptors (N, 3)")
        feats = self.encoder(images, _as_descriptors(descriptors, images))
        return self.head(feats)

    def set_bn_calibration(self, name: str, descriptors: torch.Tensor | np.ndarray,
                           buffers: Mapping[str, torch.Tensor]) -> None:
        """Keep batch-norm statistics measured on one band set, for :meth:`for_bands`.

        A SEnSeI model's features, and so its batch-norm inputs, are distributed differently
        for every band set; statistics averaged over the random band subsets of training
        fit none of them well (on Biome patches RGB OA moved from 0.29 to 0.85 with
        statistics of RGB batches). A folded network for a band set that matches a
        calibration (same number of bands, each centre within
        :data:`CALIBRATION_TOLERANCE` in normalised wavelength, in any order) uses its
        statistics; other band sets keep the model's own. Statistics you re-estimate in the
        head yourself (train-mode passes) are therefore used only for band sets without a
        calibration: remove one (``model.bn_calibrations.pop(name)``) to use yours there.

        Parameters
        ----------
        name : str
            e.g. ``"RGBNIR"``.
        descriptors : tensor or array
            (N, 3) normalised wavelengths of the band set.
        buffers : mapping
            The head's batch-norm ``running_mean`` / ``running_var`` buffers (names as in
            ``head.state_dict()``) measured on that band set.
        """
        if self.encoder is None:
            raise ValueError("batch-norm calibrations per band set are for SEnSeI models; a fixed-band model has one")
        head_buffers = {k for k in self.head.state_dict() if k.endswith(("running_mean", "running_var"))}
        unknown = sorted(set(buffers) - head_buffers)
        if unknown or not buffers:
            raise ValueError(f"calibration {name!r}: buffers must be the head's batch-norm running statistics; "
                             f"unknown: {unknown[:3]}")
        desc = _as_descriptors(descriptors, next(self.head.parameters()).float()).reshape(-1, 3).detach().cpu()
        self.bn_calibrations[str(name)] = (desc, {k: v.detach().cpu().clone() for k, v in buffers.items()})

    def bn_calibration_for(self, descriptors: torch.Tensor | np.ndarray) -> str | None:
        """The name of the calibration matching a band set (see :meth:`set_bn_calibration`), or None."""
        if not self.bn_calibrations:
            return None
        d = _as_descriptors(descriptors, next(self.head.parameters()).float()).reshape(-1, 3).detach().cpu()
        centres = torch.sort(d[:, 1]).values
        for name, (cal, _) in self.bn_calibrations.items():
            if cal.shape == d.shape and torch.all(
                    (torch.sort(cal[:, 1]).values - centres).abs() <= CALIBRATION_TOLERANCE):
                return name
        return None

    def calibrated_subset(self, descriptors: torch.Tensor | np.ndarray) -> tuple[str, list[int]] | None:
        """The largest calibrated band set found among these bands, when none matches them all.

        A band set without its own statistics runs on the statistics averaged over training's
        random subsets, which fit no band set well; the bands of a calibrated set, found among
        the given ones, usually mask better than all of them (see :meth:`set_bn_calibration`).

        Parameters
        ----------
        descriptors : tensor or array
            (N, 3) normalised wavelengths of the available bands.

        Returns
        -------
        (str, list of int) or None
            The calibration's name and the indices (ascending) of the bands that make it up;
            None when a calibration matches all the bands, or none is found among them.
        """
        if not self.bn_calibrations or self.bn_calibration_for(descriptors) is not None:
            return None
        d = _as_descriptors(descriptors, next(self.head.parameters()).float()).reshape(-1, 3).detach().cpu()
        return largest_calibrated_subset({name: cal for name, (cal, _) in self.bn_calibrations.items()}, d)

    @torch.no_grad()
    def for_bands(self, descriptors: torch.Tensor | np.ndarray) -> FoldedCloudModel:
        """The model for one band set, with SEnSeI folded into the head's first conv.

        Parameters
        ----------
        descriptors : torch.Tensor or numpy.ndarray
            (N, 3) (or (1, N, 3)) normalised wavelengths of the bands, in the order the
            images will have.

        Returns
        -------
        FoldedCloudModel
            In eval mode, on this model's device, float32; ``net(images)`` equals
            ``model(images, descriptors)`` in eval mode (to float rounding). Nothing is
            cached here: keep the returned module per band set.
        """
        param = next(self.head.parameters())
        head = copy.deepcopy(self.head)
        calibration = self.bn_calibration_for(descriptors) if self.encoder is not None else None
        if calibration is not None:  # this band set's own batch-norm statistics
            head.load_state_dict({**head.state_dict(), **self.bn_calibrations[calibration][1]})
        conv = head.first_conv
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.padding_mode != "zeros" \
                or isinstance(conv.padding, str):
            raise TypeError("folding needs a plain zero-padded, ungrouped first Conv2d")
        head.first_conv = nn.Identity()
        # A head may mask its kernel (DeepLabV3PlusPixel): fold what it applies.
        k = getattr(conv, "effective_weight", lambda: conv.weight)().detach().double()  # (O, C, kh, kw)
        bias = conv.bias.detach().double() if conv.bias is not None else k.new_zeros(k.shape[0])
        desc = _as_descriptors(descriptors, param.float())
        if desc.dim() == 3:
            if desc.shape[0] != 1:
                raise ValueError("one band set at a time: descriptors must be (N, 3) or (1, N, 3)")
            desc = desc[0]
        bias_kernel = None
        if self.encoder is None:
            self._check_baseline(desc.shape[0])
            weight = k
        else:
            w, b = self.encoder.affine_map(desc)  # (64, N), (64,)
            weight = torch.einsum("ocuv,cn->onuv", k, w)
            kb = torch.einsum("ocuv,c->ouv", k, b)
            if all(p == 0 for p in conv.padding):
                bias = bias + kb.sum(dim=(1, 2))  # no padding: the offset is uniform
            else:
                bias_kernel = kb.unsqueeze(1).float()
        folded = FoldedCloudModel(head, weight.float(), bias.float(), bias_kernel, conv.stride,
                                  conv.padding, conv.dilation, self.classes)
        return folded.eval()


def _normalise_config(config: Mapping[str, Any]) -> dict:
    if not isinstance(config, Mapping):
        raise TypeError(f"a model config is a dict, got {type(config).__name__}")
    unknown = set(config) - set(_CONFIG_KEYS)
    if unknown:
        raise ValueError(f"unknown model config keys {sorted(unknown)}; allowed: {list(_CONFIG_KEYS)}")
    encoder = config.get("encoder", "sensei")
    if encoder is not None:
        encoder = str(encoder).lower()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {sorted(ENCODERS)} or null, got {config['encoder']!r}")
    head = str(config.get("head", "deeplabv3plus")).lower()
    if head not in HEADS:
        raise ValueError(f"head must be one of {sorted(HEADS)}, got {config.get('head')!r}")
    classes = config.get("classes", list(DEFAULT_CLASSES))
    if isinstance(classes, str) or not all(isinstance(c, str) and c for c in classes):
        raise ValueError(f"classes must be a list of non-empty names, got {classes!r}")
    classes = [str(c) for c in classes]
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be at least two distinct names, got {classes}")
    in_bands = config.get("in_bands")
    if encoder is None:
        if isinstance(in_bands, bool) or not isinstance(in_bands, (int, np.integer)) or in_bands < 1:
            raise ValueError("a model without encoder needs in_bands: the fixed number of bands (int >= 1)")
        in_bands = int(in_bands)
    elif in_bands is not None:
        raise ValueError("in_bands is for models without encoder; a SEnSeI model takes any band set")
    out = {"encoder": encoder, "head": head, "classes": classes, "in_bands": in_bands}
    band_set = config.get("band_set")
    if band_set is not None:
        # A fixed-band model's bands by wavelength, so the engine picks them from any sensor.
        from ..spectral.bandsets import BAND_SETS, canonical_set_name

        if encoder is not None:
            raise ValueError("band_set is for models without encoder; a SEnSeI model takes any band set")
        band_set = canonical_set_name(str(band_set))
        regions = BAND_SETS[band_set]
        if band_set in ("ALL", "COMMON", "NoRGB") or regions is None or len(regions) != in_bands:
            raise ValueError(f"band_set {band_set!r} does not name exactly {in_bands} bands by wavelength; "
                             "use one of RGB, RGBNIR, AeroRGBNIR, RGBNIRSWIR with the matching in_bands")
        out["band_set"] = band_set
    if config.get("pixel_member") is not None:
        out["pixel_member"] = member_from_config(config["pixel_member"]).config
    return out


def build_model(config: Mapping[str, Any]) -> CloudModel:
    """A fresh (randomly initialised) model from a plain config.

    Parameters
    ----------
    config : dict
        ``{"encoder": "sensei" | "sensei_orthonormal" | None, "head": "deeplabv3plus" | "deeplabv3plus_wide" | "deeplabv3plus_pixel" | "pixelnet",
        "classes": [...], "in_bands": int, "band_set": str}``; ``in_bands`` only (and then
        required) without encoder; ``band_set`` optionally without encoder: the model's
        bands as a band set of :data:`sensei_xr.spectral.BAND_SETS` (e.g. ``"RGBNIRSWIR"``),
        so inference picks them by wavelength from any sensor. Missing keys default to
        SEnSeI + DeepLabv3+ and ``["clear", "cloud"]``.

    Returns
    -------
    CloudModel
        ``model.config`` is the normalised config (all four keys).

    Examples
    --------
    >>> m = build_model({"encoder": "sensei", "head": "pixelnet", "classes": ["clear", "cloud"]})
    >>> m.config["in_bands"] is None
    True
    """
    cfg = _normalise_config(config)
    encoder = ENCODERS[cfg["encoder"]]() if cfg["encoder"] is not None else None
    in_channels = encoder.out_channels if encoder is not None else cfg["in_bands"]
    head = HEADS[cfg["head"]](in_channels, len(cfg["classes"]))
    model = CloudModel(encoder, head, cfg["classes"], cfg)
    if cfg.get("pixel_member") is not None:
        model.pixel_member = member_from_config(cfg["pixel_member"])
    return model
