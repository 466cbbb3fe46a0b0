"""DeepLabv3+ with a MobileNetV2 (width 1.0) backbone at output stride 8, plain torch.

Backbone: MobileNetV2 inverted residuals (ReLU6, BatchNorm) without the final 1x1
1280-channel layer. For output stride 8 the strides of the 64- and 160-channel stages
are removed and later layers dilated instead (rates 2 then 4), as in DeepLab.

Two heads on that backbone:

* :class:`DeepLabV3Plus` (config name ``"deeplabv3plus"``) is the network of the SEnSeI
  paper: the MobileNetV2 variant of the Keras DeepLabv3+ that its reference code
  (aliFrancis/SEnSeI, ``deeplabv3p.py``) builds. Its ASPP has two branches only, image
  pooling and a 1x1 convolution (256 channels each), projected to 256 with dropout; a 1x1
  classifier at stride 8 is upsampled bilinearly to the input size. There is no
  low-level decoder. 2.11e6 trainable parameters with 13 input bands and 2.34e6 with
  SEnSeI in front (2,111,554 and 2,336,786 for two classes), as in the paper's Table VII.
* :class:`DeepLabV3PlusWide` (``"deeplabv3plus_wide"``) adds the three depthwise-separable
  atrous ASPP branches (rates 12, 24, 36) and the DeepLabv3+ decoder (stride-4 features
  projected to 48, two separable 3x3 convolutions of 256) of the Xception variant: 2.73e6
  parameters in the head; kept as a named option.
* :class:`DeepLabV3PlusPixel` (``"deeplabv3plus_pixel"``) is the paper's network plus a
  per-pixel branch at full resolution whose logits are added to the upsampled ones: the
  stride-8 classifier alone blurs cloud edges and cannot follow a pixel's own spectrum
  (a per-pixel MLP on the six reflective bands beats it on most Biome patches), while the
  per-pixel branch alone cannot tell snow from cloud. Not the paper's; a named option.

Both take any H, W (not only multiples of 8) and expose ``first_conv`` and
``forward_from_first(y, size)`` so that
:class:`~sensei_xr.models.cloud_model.FoldedCloudModel` can fold the SEnSeI encoder into
the first convolution.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DeepLabV3Plus", "DeepLabV3PlusWide", "DeepLabV3PlusPixel", "PIXEL_BRANCH_CHANNELS", "MobileNetV2Backbone", "ASPP", "ATROUS_RATES"]

#: ASPP rates at output stride 8 (twice the rates used at output stride 16).
ATROUS_RATES: tuple[int, int, int] = (12, 24, 36)
_BN_EPS = 1e-3  # as the reference MobileNetV2
_BN_MOMENTUM = 0.1

# MobileNetV2 stages: (expansion t, output channels c, repeats n, stride s).
_MOBILENET_V2 = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
_STEM_CHANNELS = 32
_LOW_LEVEL_CHANNELS = 24  # output of the 24-channel stage, stride 4
#: Width of :class:`DeepLabV3PlusPixel`'s per-pixel branch.
PIXEL_BRANCH_CHANNELS = 32


class _DilatedDepthwiseBackward(torch.autograd.Function):
    """A 3x3 depthwise convolution (stride 1, padding = dilation) with a fast CPU backward.

    PyTorch's CPU backward of a *dilated* depthwise convolution is 10-20x its forward (it
    was 0.75 of the 1.45 s of a training step here). Its gradients, computed directly:

    * input: the same convolution of the output gradient with the kernel flipped;
    * weight: for each of the 9 taps, the output gradient times the input shifted by
      that tap, summed over items and pixels (elementwise, in the tensors' own layout).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.dilation = dilation
        return F.conv2d(x, weight, None, 1, dilation, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        d = ctx.dilation
        channels = weight.shape[0]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, weight.flip(-1, -2), None, 1, d, d, channels)
        if ctx.needs_input_grad[1]:
            h, w = x.shape[-2:]
            padded = F.pad(x, (d, d, d, d))
            taps = [(grad * padded[:, :, d * i:d * i + h, d * j:d * j + w]).sum((0, 2, 3))
                    for i in range(3) for j in range(3)]
            grad_w = torch.stack(taps, 1).reshape(weight.shape).to(weight.dtype)
        return grad_x, grad_w, None


class _DepthwiseConv(nn.Conv2d):
    """3x3 depthwise convolution; dilated ones train through :class:`_DilatedDepthwiseBackward`.

    A plain ``Conv2d`` in its parameters (so folding, export and state dicts see no
    difference); only a CPU training pass of a dilated one takes the fast backward.
    """

    def __init__(self, channels: int, stride: int, dilation: int) -> None:
        super().__init__(channels, channels, 3, stride, dilation, dilation=dilation, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting() or torch.jit.is_tracing():
            return self._conv_forward(x, self.weight, self.bias)
        return self._eager_forward(x)

    @torch.jit.unused
    def _eager_forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dilation[0]
        if d > 1 and self.stride[0] == 1 and x.device.type == "cpu" and torch.is_grad_enabled():
            return _DilatedDepthwiseBackward.apply(x, self.weight, d)
        return self._conv_forward(x, self.weight, self.bias)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class _ConvBNAct(nn.Sequential):
    """Conv (no bias) -> BN -> ReLU6 / ReLU / nothing."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, dilation: int = 1,
                 groups: int = 1, act: str = "relu6") -> None:
        pad = dilation * (kernel - 1) // 2
        if kernel == 3 and groups == cin == cout:
            conv: nn.Module = _DepthwiseConv(cin, stride, dilation)
        else:
            conv = nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False)
        layers: list[nn.Module] = [conv, _bn(cout)]
        if act == "relu6":
            layers.append(nn.ReLU6(inplace=True))
        elif act == "relu":
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise (dilated) -> 1x1 linear project."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int, dilation: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_ConvBNAct(cin, hidden, 1))
        layers += [
            _ConvBNAct(hidden, hidden, 3, stride, dilation, groups=hidden),
            _ConvBNAct(hidden, cout, 1, act="none"),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.block(x)
        return self.block(x)


class MobileNetV2Backbone(nn.Module):
    """MobileNetV2 after its stem convolution, at output stride 8.

    ``forward`` takes the stem convolution's (pre-BN) output and returns the stride-4
    low-level features (24 ch) and the stride-8 deep features (320 ch).
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem_bn = _bn(_STEM_CHANNELS)
        low: list[nn.Module] = []
        high: list[nn.Module] = []
        cin, current_stride, dilation = _STEM_CHANNELS, 2, 1
        for t, c, n, s in _MOBILENET_V2:
            prev_dilation = dilation
            if s > 1 and current_stride >= 8:
                # Keep output stride 8: drop the stride, dilate the rest of the network.
                dilation *= s
                s = 1
            current_stride *= s
            for i in range(n):
                block = _InvertedResidual(cin, c, s if i == 0 else 1, t,
                                          prev_dilation if i == 0 else dilation)
                (low if current_stride <= 4 else high).append(block)
                cin = c
        self.low = nn.Sequential(*low)
        self.high = nn.Sequential(*high)
        self.out_channels = cin

    def forward(self, stem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu6(self.stem_bn(stem))
        low = self.low(x)
        return low, self.high(low)


class _SeparableConv(nn.Sequential):
    """Depthwise 3x3 (dilated) -> BN -> ReLU -> pointwise -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__(
            _ConvBNAct(cin, cin, 3, 1, dilation, groups=cin, act="relu"),
            _ConvBNAct(cin, cout, 1, act="relu"),
        )


class _ImagePooling(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _ConvBNAct(cin, cout, 1, act="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        pooled = self.conv(F.adaptive_avg_pool2d(x, 1))
        # Upsampling a 1x1 map is a broadcast.
        return pooled.expand(-1, -1, h, w)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling -> 256: a 1x1 branch, one separable atrous 3x3
    branch per rate (none in the paper's MobileNetV2 variant), image pooling."""

    def __init__(self, cin: int, cout: int = 256, rates: tuple[int, ...] = ATROUS_RATES,
                 dropout: float = 0.1) -> None:
        super().__init__()
        branches: list[nn.Module] = [_ConvBNAct(cin, cout, 1, act="relu")]
        branches += [_SeparableConv(cin, cout, r) for r in rates]
        branches.append(_ImagePooling(cin, cout))
        self.branches = nn.ModuleList(branches)
        self.project = nn.Sequential(_ConvBNAct(cout * len(branches), cout, 1, act="relu"),
                                     nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        return self.project(torch.cat(outs, dim=1))


def _reset_parameters(net: nn.Module) -> None:
    """He-normal convolutions, unit BN, zero biases."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _MobileNetV2Net(nn.Module):
    """What both DeepLabv3+ heads share: a foldable first convolution and the backbone.

    Subclasses define ``forward_from_first(y, size)``, the network after the first
    convolution (SEnSeI folding replaces that convolution and calls it directly).
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        # The first convolution is a separate attribute so that it can be folded.
        self.first_conv = nn.Conv2d(in_channels, _STEM_CHANNELS, 3, 2, 1, bias=False)
        self.backbone = MobileNetV2Backbone()

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stride-4 low-level and stride-8 deep backbone features of an input."""
        return self.backbone(self.first_conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, num_classes, H, W) logits."""
        return self.forward_from_first(self.first_conv(x), [x.shape[-2], x.shape[-1]])


class DeepLabV3Plus(_MobileNetV2Net):
    """The SEnSeI paper's DeepLabv3+ / MobileNetV2 (width 1.0), output stride 8.

    Backbone -> ASPP of image pooling and a 1x1 branch (256 each) -> 1x1 projection to
    256 -> dropout -> 1x1 classifier at stride 8 -> bilinear upsampling to the input size.

    Parameters
    ----------
    in_channels : int
        64 after SEnSeI, or the number of raw bands for a fixed-band baseline.
    num_classes : int
        Output channels (logits).
    dropout : float
        Dropout after the ASPP projection.

    Examples
    --------
    >>> net = DeepLabV3Plus(64, 2).eval()
    >>> net(torch.rand(1, 64, 37, 53)).shape
    torch.Size([1, 2, 37, 53])
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__(in_channels, num_classes)
        self.aspp = ASPP(self.backbone.out_channels, 256, (), dropout)
        self.classifier = nn.Conv2d(256, num_classes, 1)
        _reset_parameters(self)

    def forward_from_first(self, y: torch.Tensor, size: List[int]) -> torch.Tensor:
        """The network after its first convolution.

        Parameters
        ----------
        y : torch.Tensor
            Output of the first convolution (B, 32, ceil(H/2), ceil(W/2)).
        size : list of int
            (H, W) of the input, the size of the output.
        """
        _, deep = self.backbone(y)
        x = self.classifier(self.aspp(deep))
        return F.interpolate(x, size=[size[0], size[1]], mode="bilinear", align_corners=False)


class DeepLabV3PlusWide(_MobileNetV2Net):
    """DeepLabv3+ / MobileNetV2 with three atrous ASPP branches and the v3+ decoder.

    Parameters
    ----------
    in_channels : int
        64 after SEnSeI, or the number of raw bands for a fixed-band baseline.
    num_classes : int
        Output channels (logits).
    dropout : float
        Dropout after the ASPP projection.

    Examples
    --------
    >>> net = DeepLabV3PlusWide(64, 2).eval()
    >>> net(torch.rand(1, 64, 37, 53)).shape
    torch.Size([1, 2, 37, 53])
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__(in_channels, num_classes)
        self.aspp = ASPP(self.backbone.out_channels, 256, ATROUS_RATES, dropout)
        self.low_project = _ConvBNAct(_LOW_LEVEL_CHANNELS, 48, 1, act="relu")
        self.decoder = nn.Sequential(_SeparableConv(256 + 48, 256), _SeparableConv(256, 256))
        self.classifier = nn.Conv2d(256, num_classes, 1)
        _reset_parameters(self)

    def forward_from_first(self, y: torch.Tensor, size: List[int]) -> torch.Tensor:
        """The network after its first convolution.

        Parameters
        ----------
        y : torch.Tensor
            Output of the first convolution (B, 32, ceil(H/2), ceil(W/2)).
        size : list of int
            (H, W) of the input, the size of the output.
        """
        low, deep = self.backbone(y)
        x = self.aspp(deep)
        x = F.interpolate(x, size=[low.shape[-2], low.shape[-1]], mode="bilinear", align_corners=False)
        x = self.decoder(torch.cat([x, self.low_project(low)], dim=1))
        x = self.classifier(x)
        return F.interpolate(x, size=[size[0], size[1]], mode="bilinear", align_corners=False)


class _StemAndPixelConv(nn.Conv2d):
    """The stem convolution and a per-pixel branch's first layer as one 3x3 convolution.

    Output channels ``[:stem]`` are the stem's 3x3 kernels, the rest 1x1 kernels kept at
    the centre of a 3x3 window (the other taps are masked to zero). Run at stride 1 and
    read every second row and column, the first channels equal the stem at stride 2. One
    plain ``Conv2d`` is what lets :meth:`CloudModel.for_bands` fold SEnSeI into both.
    """

    def __init__(self, in_channels: int, stem: int, pixel: int) -> None:
        super().__init__(in_channels, stem + pixel, 3, 1, 1, bias=False)
        self.stem_channels = stem
        mask = torch.zeros(stem + pixel, 1, 3, 3)
        mask[:stem] = 1.0
        mask[stem:, :, 1, 1] = 1.0
        self.register_buffer("kernel_mask", mask, persistent=False)

    def effective_weight(self) -> torch.Tensor:
        """The kernel as applied: the per-pixel channels' off-centre taps are zero."""
        return self.weight * self.kernel_mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)


class DeepLabV3PlusPixel(DeepLabV3Plus):
    """The paper's DeepLabv3+ plus a full-resolution per-pixel branch.

    ``logits = upsample(DeepLabv3+ logits) + pixel branch``, the branch being
    ``1x1 (in -> 32) -> BN -> ReLU -> 1x1 (32 -> 32) -> BN -> ReLU -> 1x1 (32 -> classes)``
    on the same input features. Its last layer starts at zero, so training starts from
    the paper's network. 2,356,436 parameters with SEnSeI and two classes: the paper's
    2,336,786, the branch's 3,266 and 16,384 off-centre taps that are always zero.

    Parameters
    ----------
    in_channels, num_classes, dropout
        As :class:`DeepLabV3Plus`.

    Examples
    --------
    >>> net = DeepLabV3PlusPixel(64, 2).eval()
    >>> net(torch.rand(1, 64, 37, 53)).shape
    torch.Size([1, 2, 37, 53])
    """

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__(in_channels, num_classes, dropout)
        c = PIXEL_BRANCH_CHANNELS
        self.first_conv = _StemAndPixelConv(in_channels, _STEM_CHANNELS, c)
        self.pixel_branch = nn.Sequential(_bn(c), nn.ReLU(inplace=True), _ConvBNAct(c, c, 1, act="relu"),
                                          nn.Conv2d(c, num_classes, 1))
        _reset_parameters(self)
        with torch.no_grad():
            self.first_conv.weight.mul_(self.first_conv.kernel_mask)
        nn.init.zeros_(self.pixel_branch[-1].weight)

    def _stem_and_pixel(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Unfolded (training) path: the stem at stride 2 and the centre taps as a 1x1
        # convolution, a quarter of the stride-1 convolution's work on 64 channels.
        w = self.first_conv.weight
        return F.conv2d(x, w[:_STEM_CHANNELS], None, 2, 1), F.conv2d(x, w[_STEM_CHANNELS:, :, 1:2, 1:2])

    def _logits(self, stem: torch.Tensor, pixel: torch.Tensor, size: List[int]) -> torch.Tensor:
        _, deep = self.backbone(stem)
        x = self.classifier(self.aspp(deep))
        x = F.interpolate(x, size=[size[0], size[1]], mode="bilinear", align_corners=False)
        return x + self.pixel_branch(pixel)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stride-4 low-level and stride-8 deep backbone features of an input."""
        return self.backbone(self._stem_and_pixel(x)[0])

    def forward_from_first(self, y: torch.Tensor, size: List[int]) -> torch.Tensor:
        """The network after its first convolution (the folded path).

        Parameters
        ----------
        y : torch.Tensor
            Output of the first convolution at stride 1: (B, 32 + 32, H, W).
        size : list of int
            (H, W) of the input, the size of the output.
        """
        return self._logits(y[:, :_STEM_CHANNELS, ::2, ::2], y[:, _STEM_CHANNELS:], size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, num_classes, H, W) logits."""
        stem, pixel = self._stem_and_pixel(x)
        return self._logits(stem, pixel, [x.shape[-2], x.shape[-1]])
