"""Squeeze-and-Excitation: a learned per-channel gate from globally pooled features.

Hu, Shen, Albanie, Sun & Wu, "Squeeze-and-Excitation Networks", 2018,
arXiv:1709.01507. For a feature map ``x (B, C, H, W)``::

    s = sigmoid(W2 relu(W1 avgpool(x)))      # (B, C): "squeeze" then "excitation"
    out = s * x                              # every channel rescaled by its gate

``W1`` maps ``C -> C / reduction`` and ``W2`` back to ``C`` (the bottleneck of the
paper's Fig. 2). It is attention over channels: the weights are a sigmoid, not a
softmax, so channels do not compete.

Deviation: the hidden width is ``max(1, C // reduction)`` (the paper assumes ``C``
divisible by ``reduction``) unless ``hidden_channels`` is given.
"""

from __future__ import annotations

import torch
from torch import nn

from attnkit._validate import check_bool, check_int
from attnkit.nn._inputs import check_dtype

__all__ = ["SqueezeExcitation"]


def check_feature_map(x: object, channels: int | None, owner: str,
                      dtype: torch.dtype) -> None:
    """Raise unless ``x`` is a ``(B, C, H, W)`` tensor of the parameters' ``dtype`` with
    ``C == channels`` (any ``C`` when ``channels`` is None)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner}: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4 or x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{owner}: x must be 4-D (B, C, H, W) with H, W >= 1, got shape "
                         f"{tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{owner}: x must be a floating-point tensor, got {x.dtype}")
    check_dtype(x, "x", dtype, who=owner)
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{owner}: x has {x.shape[1]} channels (dim 1 of shape "
                         f"{tuple(x.shape)}) but the module was built for channels={channels}")


def hidden_width(channels: int, reduction: int, hidden_channels: int | None) -> int:
    """Validate the bottleneck arguments and return its width."""
    check_int(channels, "channels", minimum=1)
    check_int(reduction, "reduction", minimum=1)
    if hidden_channels is None:
        return max(1, channels // reduction)
    return check_int(hidden_channels, "hidden_channels (an int or None)", minimum=1)


class SqueezeExcitation(nn.Module):
    """Channel gate ``sigmoid(W2 relu(W1 mean_hw(x)))`` applied to ``x (B, C, H, W)``.

    Args:
        channels: ``C``.
        reduction: bottleneck ratio; the hidden width is ``max(1, C // reduction)``.
        hidden_channels: the hidden width, overriding ``reduction``.
        bias: biases in the two linear maps.
        device, dtype: of the parameters.

    Example:
        >>> se = SqueezeExcitation(32, reduction=8)
        >>> se(torch.randn(2, 32, 5, 5)).shape
        torch.Size([2, 32, 5, 5])
    """

    def __init__(self, channels: int, reduction: int = 16, *,
                 hidden_channels: int | None = None, bias: bool = True,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        hidden = hidden_width(channels, reduction, hidden_channels)
        check_bool(bias, "bias")
        self.channels = channels
        self.fc1 = nn.Linear(channels, hidden, bias=bias, device=device, dtype=dtype)
        self.fc2 = nn.Linear(hidden, channels, bias=bias, device=device, dtype=dtype)

    def excite(self, pooled: torch.Tensor) -> torch.Tensor:
        """The bottleneck MLP ``W2 relu(W1 pooled)``: ``(B, C) -> (B, C)`` logits."""
        return self.fc2(torch.relu(self.fc1(pooled)))

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W) -> (B, C, 1, 1)`` gates in ``(0, 1)``."""
        check_feature_map(x, self.channels, type(self).__name__, self.fc1.weight.dtype)
        excited = self.excite(x.mean(dim=(2, 3)))  # (B, C)
        return torch.sigmoid(excited)[:, :, None, None]  # (B, C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W) -> (B, C, H, W)``, each channel scaled by its gate."""
        return x * self.gate(x)
