"""CBAM: channel attention, then spatial attention, on a convolutional feature map.

Woo, Park, Lee & Kweon, "CBAM: Convolutional Block Attention Module", 2018,
arXiv:1807.06521. For ``x (B, C, H, W)``::

    Mc(x) = sigmoid(MLP(avgpool_hw(x)) + MLP(maxpool_hw(x)))            # (B, C, 1, 1)
    Ms(x) = sigmoid(conv_kxk([mean_c(x); max_c(x)]))                    # (B, 1, H, W)
    x' = Mc(x) * x;   out = Ms(x') * x'

The MLP is shared between the two pooled descriptors (the paper's eq. 2) and is the
Squeeze-and-Excitation bottleneck (``fc1``, ``fc2``); the spatial convolution maps the
2 pooled channels to 1 with "same" zero padding.

Deviation: the paper's official code puts a BatchNorm after the spatial
convolution; here the convolution has a bias instead (what BatchNorm folds into
at inference), following the paper's equation 3. The hidden width is
``max(1, C // reduction)``.
"""

from __future__ import annotations

import torch
from torch import nn

from attnkit._validate import check_bool, check_int
from attnkit.nn.vision.squeeze_excitation import SqueezeExcitation, check_feature_map

__all__ = ["ChannelAttention", "SpatialAttention", "CBAM"]


class ChannelAttention(SqueezeExcitation):
    """CBAM's channel gate ``Mc``: the Squeeze-and-Excitation bottleneck MLP, shared by the
    average- and the max-pooled features (the paper's eq. 2).

    Args: as :class:`~attnkit.nn.vision.squeeze_excitation.SqueezeExcitation`
    (``channels``, ``reduction``, ``hidden_channels``, ``bias``, ``device``, ``dtype``).
    """

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W) -> (B, C, 1, 1)`` gates in ``(0, 1)``."""
        check_feature_map(x, self.channels, type(self).__name__, self.fc1.weight.dtype)
        avg = self.excite(x.mean(dim=(2, 3)))  # (B, C)
        peak = self.excite(x.amax(dim=(2, 3)))  # (B, C)
        return torch.sigmoid(avg + peak)[:, :, None, None]  # (B, C, 1, 1)


class SpatialAttention(nn.Module):
    """CBAM's spatial gate ``Ms``: a ``k x k`` convolution of the channel mean and max.

    Args:
        kernel_size: odd ``k`` (7 in the paper), so the padding keeps ``H x W``.
        bias: bias of the convolution.
        device, dtype: of the parameters.
    """

    def __init__(self, kernel_size: int = 7, *, bias: bool = True,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        check_int(kernel_size, "kernel_size", minimum=1)
        check_bool(bias, "bias")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (so the output keeps H x W), got "
                             f"{kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=bias,
                              device=device, dtype=dtype)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W) -> (B, 1, H, W)`` gates in ``(0, 1)``."""
        check_feature_map(x, None, type(self).__name__, self.conv.weight.dtype)
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)],
                           dim=1)  # (B, 2, H, W)
        return torch.sigmoid(self.conv(pooled))  # (B, 1, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W) -> (B, C, H, W)``."""
        return x * self.gate(x)


class CBAM(nn.Module):
    """Channel attention followed by spatial attention: ``Ms(x') * x'``, ``x' = Mc(x) * x``.

    Args:
        channels: ``C``.
        reduction: bottleneck ratio of the channel MLP.
        kernel_size: odd size of the spatial convolution.
        device, dtype: of the parameters.

    Example:
        >>> cbam = CBAM(32, reduction=8)
        >>> cbam(torch.randn(2, 32, 9, 9)).shape
        torch.Size([2, 32, 9, 9])
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7, *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction, device=device, dtype=dtype)
        self.spatial = SpatialAttention(kernel_size, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, C, H, W) -> (B, C, H, W)``."""
        return self.spatial(self.channel(x))
