"""Soft spatial attention classifier: a learned query attends over a feature map's positions.

Deterministic ("soft") attention over image locations, as in Xu et al., "Show, Attend and
Tell", 2015, arXiv:1502.03044, applied to classification: the convolutional trunk of
:class:`~attnkit.models.vision.cnn.CNN` gives features ``f (B, C, h, w)``; ``heads`` learned
queries score every position through a key projection (plus a learned position embedding, so
the scores can prefer places), a softmax over the ``h * w`` positions (computed by
:func:`attnkit.functional.attention`) weights the features, and the pooled vectors feed a
linear classifier. It replaces the CNN's uniform global average with weights that can pick
the item out of clutter; :meth:`SoftSpatialClassifier.attend` returns the weights for plots.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from attnkit.functional import attention
from attnkit.models.vision.cnn import ConvTrunk

__all__ = ["SoftSpatialClassifier"]


class SoftSpatialClassifier(nn.Module):
    """Trunk, attention pooling over positions, linear head.

    Args:
        num_classes: outputs.
        widths: trunk channels per block (each halves H and W).
        image_size: input side ``S`` (fixes the position table: ``h = S // 2**len(widths)``).
        heads: learned queries (their pooled vectors are concatenated).
        key_dim: width of the keys and queries.
        in_channels: image channels.
    """

    def __init__(self, num_classes: int = 10, widths: Sequence[int] = (16, 32, 64), *,
                 image_size: int = 60, heads: int = 2, key_dim: int = 32,
                 in_channels: int = 1) -> None:
        super().__init__()
        self.trunk = ConvTrunk(widths, in_channels)
        side = image_size
        for _ in widths:
            side //= 2
        if side < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(widths)} blocks")
        channels = self.trunk.out_channels
        self.heads, self.key_dim = heads, key_dim
        self.key = nn.Conv2d(channels, heads * key_dim, 1)
        self.position = nn.Parameter(torch.zeros(1, heads * key_dim, side, side))
        self.query = nn.Parameter(torch.randn(heads, key_dim) / key_dim ** 0.5)
        self.head = nn.Linear(heads * channels, num_classes)

    def attend(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images (B, Cin, S, S) -> (pooled (B, heads * C), weights (B, heads, h, w))``."""
        features = self.trunk(images)  # (B, C, h, w)
        batch, channels, h, w = features.shape
        keys = (self.key(features) + self.position).view(batch, self.heads, self.key_dim,
                                                         h * w).transpose(2, 3)  # (B, H, hw, d)
        values = features.view(batch, 1, channels, h * w).transpose(2, 3)  # (B, 1, hw, C)
        query = self.query[None, :, None, :].expand(batch, -1, 1, -1)  # (B, H, 1, d)
        pooled, weights = attention(query, keys, values.expand(-1, self.heads, -1, -1),
                                    return_weights=True, backend="reference")
        return pooled.reshape(batch, self.heads * channels), weights.view(batch, self.heads,
                                                                         h, w)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images (B, Cin, S, S) -> logits (B, num_classes)``."""
        return self.head(self.attend(images)[0])
