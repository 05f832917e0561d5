"""A small convolutional classifier, optionally with a channel/spatial gate in every block.

The baseline of the vision experiments and its attention variants:

* ``gate=None`` -- plain blocks ``conv3x3 -> BatchNorm -> ReLU -> maxpool2``.
* ``gate=se_gate(r)`` -- a Squeeze-and-Excitation gate after each ReLU (Hu et al., 2018,
  arXiv:1709.01507).
* ``gate=cbam_gate(r)`` -- a CBAM gate (channel then spatial) after each ReLU (Woo et al.,
  2018, arXiv:1807.06521).

Then global average pooling and a linear classifier. Deviation from both papers: the gates
sit in a plain (non-residual) block, after the activation, as a small network on 28x28 or
60x60 grayscale images needs no residual connections.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from attnkit.nn.vision import CBAM, SqueezeExcitation

__all__ = ["ConvBlock", "ConvTrunk", "CNN", "se_gate", "cbam_gate", "GateFactory"]

#: ``channels -> module`` mapping ``(B, C, H, W) -> (B, C, H, W)``
GateFactory = Callable[[int], nn.Module]


def se_gate(reduction: int = 4) -> GateFactory:
    """A gate factory building :class:`~attnkit.nn.vision.SqueezeExcitation` blocks."""
    return lambda channels: SqueezeExcitation(channels, reduction)


def cbam_gate(reduction: int = 4, kernel_size: int = 7) -> GateFactory:
    """A gate factory building :class:`~attnkit.nn.vision.CBAM` blocks."""
    return lambda channels: CBAM(channels, reduction, kernel_size)


class ConvBlock(nn.Module):
    """``conv3x3 -> BatchNorm -> ReLU -> gate -> maxpool2``: ``(B, Cin, H, W) -> (B, Cout,
    H // 2, W // 2)``."""

    def __init__(self, in_channels: int, out_channels: int,
                 gate: GateFactory | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)
        self.gate = gate(out_channels) if gate is not None else nn.Identity()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.gate(torch.relu(self.norm(self.conv(x)))))


class ConvTrunk(nn.Sequential):
    """Blocks of widths ``widths``: ``(B, in_channels, H, W) -> (B, widths[-1], H / 2^n,
    W / 2^n)`` (each pool floors)."""

    def __init__(self, widths: Sequence[int], in_channels: int = 1,
                 gate: GateFactory | None = None) -> None:
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                             for w in widths):
            raise ValueError(f"widths must be a non-empty sequence of positive ints, got "
                             f"{widths!r}")
        channels = [in_channels, *widths]
        super().__init__(*(ConvBlock(a, b, gate)
                           for a, b in zip(channels[:-1], channels[1:], strict=True)))
        self.out_channels = int(widths[-1])


class CNN(nn.Module):
    """Convolutional classifier: trunk, global average pooling, linear head.

    Args:
        num_classes: outputs.
        widths: channels of each block (each block halves H and W).
        in_channels: image channels.
        gate: a factory (e.g. :func:`se_gate`, :func:`cbam_gate`) put in every block, or None.

    Example:
        >>> CNN(10, (8, 16), gate=cbam_gate(4))(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (16, 32, 64), *,
                 in_channels: int = 1, gate: GateFactory | None = None) -> None:
        super().__init__()
        self.trunk = ConvTrunk(widths, in_channels, gate)
        self.head = nn.Linear(self.trunk.out_channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images (B, in_channels, H, W) -> logits (B, num_classes)``."""
        features = self.trunk(images)  # (B, C, h, w)
        return self.head(features.mean(dim=(2, 3)))  # (B, num_classes)
