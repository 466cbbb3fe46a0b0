"""PixelNet: the paper's small per-pixel network ("NN"), two 1x1 layers.

``1x1 conv (in -> 16) -> BatchNorm -> LeakyReLU -> 1x1 conv (16 -> classes)``: with 64
inputs (after SEnSeI) and 2 classes that is 1,106 trainable parameters (the paper
quotes about 1.15 thousand). Every pixel is classified from its own spectrum only.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

__all__ = ["PixelNet", "HIDDEN"]

#: Width of the hidden layer.
HIDDEN = 16
_SLOPE = 0.01


class PixelNet(nn.Module):
    """Two-layer per-pixel classifier made of 1x1 convolutions.

    Parameters
    ----------
    in_channels : int
        64 after SEnSeI, or the number of raw bands for a fixed-band baseline.
    num_classes : int
        Output channels (logits).
    hidden : int
        Width of the hidden layer.

    Examples
    --------
    >>> PixelNet(64, 2)(torch.rand(1, 64, 5, 7)).shape
    torch.Size([1, 2, 5, 7])
    """

    def __init__(self, in_channels: int, num_classes: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.first_conv = nn.Conv2d(in_channels, hidden, 1)
        self.bn = nn.BatchNorm2d(hidden)
        self.act = nn.LeakyReLU(_SLOPE)
        self.classifier = nn.Conv2d(hidden, num_classes, 1)

    def forward_from_first(self, y: torch.Tensor, size: List[int]) -> torch.Tensor:
        """The network after its first 1x1 convolution (``size`` unused: no resampling)."""
        return self.classifier(self.act(self.bn(y)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, num_classes, H, W) logits."""
        return self.forward_from_first(self.first_conv(x), [x.shape[-2], x.shape[-1]])
