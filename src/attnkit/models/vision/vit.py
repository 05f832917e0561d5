"""A small Vision Transformer (ViT) classifier.

Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words: Transformers for Image
Recognition at Scale", arXiv:2010.11929: the image is cut into non-overlapping
``P x P`` patches, each linearly embedded (a ``Conv2d`` with kernel = stride = ``P``), a
learned class token is prepended, learned position embeddings are added, and a stack of
pre-norm Transformer encoder layers (GELU MLPs) runs over the tokens; the class token's
final state, after a LayerNorm, goes through a linear head.

Every self-attention is :class:`attnkit.nn.MultiHeadAttention` (inside
:class:`attnkit.models._blocks.EncoderLayer`), so :func:`attnkit.interp.capture` records
the weights (``blocks.0.self_attn``, ...) and :func:`attnkit.interp.rollout.attention_rollout`
turns them into rollout maps (:func:`attnkit.interp.rollout.class_token_rollout`).

Deviations: sized for 28 x 28 grey images on a CPU (a few layers of width 64, not the
paper's ViT-B/16), the head is one linear layer (the paper pre-trains with an MLP head),
and there is no pre-training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnkit._validate import check_float, check_int
from attnkit.models._blocks import EncoderLayer

__all__ = ["ViTConfig", "VisionTransformer"]


@dataclass
class ViTConfig:
    """Sizes of a :class:`VisionTransformer`."""

    image_size: int = 28      # height = width of the input images
    patch_size: int = 4       # P; must divide image_size
    channels: int = 1         # input channels
    num_classes: int = 10     # outputs of the head
    d_model: int = 64         # token width E
    num_layers: int = 4       # encoder layers
    num_heads: int = 4        # heads per self-attention; must divide d_model
    ffn_dim: int = 128        # hidden width of each MLP
    dropout: float = 0.0      # on attention weights and sub-layer outputs

    def __post_init__(self) -> None:
        who = "ViTConfig"
        for field in ("image_size", "patch_size", "channels", "num_classes", "d_model",
                      "num_layers", "num_heads", "ffn_dim"):
            check_int(getattr(self, field), field, minimum=1, owner=who)
        if self.image_size % self.patch_size:
            raise ValueError(f"{who}: patch_size ({self.patch_size}) must divide image_size "
                             f"({self.image_size})")
        if self.d_model % self.num_heads:
            raise ValueError(f"{who}: num_heads ({self.num_heads}) must divide d_model "
                             f"({self.d_model})")
        self.dropout = check_float(self.dropout, "dropout", low=0.0, high=1.0, high_open=True,
                                   owner=who)

    @property
    def grid(self) -> int:
        """Patches per side, ``image_size // patch_size``."""
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """``1 + grid ** 2``: the class token and one token per patch."""
        return 1 + self.grid ** 2


class VisionTransformer(nn.Module):
    """ViT classifier: ``images (B, C, S, S) -> logits (B, num_classes)``.

    Token 0 is the class token; token ``1 + r * grid + c`` is the patch in row ``r``,
    column ``c``.

    Example:
        >>> model = VisionTransformer(ViTConfig(num_layers=2))
        >>> model(torch.randn(3, 1, 28, 28)).shape
        torch.Size([3, 10])
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if not isinstance(config, ViTConfig):
            raise TypeError(f"config must be a ViTConfig, got {type(config).__name__}")
        self.config = config
        e = config.d_model
        self.patch_embed = nn.Conv2d(config.channels, e, config.patch_size,
                                     stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, e))
        self.pos_embed = nn.Parameter(torch.randn(1, config.num_tokens, e) * 0.02)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            EncoderLayer(e, config.num_heads, config.ffn_dim, dropout=config.dropout,
                         norm_first=True, activation="gelu")
            for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(e)
        self.head = nn.Linear(e, config.num_classes)

    def _check_images(self, images: torch.Tensor) -> None:
        c, s = self.config.channels, self.config.image_size
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a tensor (B, {c}, {s}, {s}), got "
                            f"{type(images).__name__}")
        if images.dim() != 4 or tuple(images.shape[1:]) != (c, s, s):
            raise ValueError(f"images must be (B, {c}, {s}, {s}), got {tuple(images.shape)}")
        if images.dtype != self.head.weight.dtype:
            raise TypeError(f"images must have dtype {self.head.weight.dtype} (the model's), "
                            f"got {images.dtype}")

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder output before the head: ``(B, C, S, S) -> (B, 1 + grid**2, E)``."""
        self._check_images(images)
        patches = self.patch_embed(images)  # (B, E, grid, grid)
        patches = patches.flatten(2).transpose(1, 2)  # (B, grid**2, E)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)  # (B, 1, E)
        x = self.dropout(torch.cat([cls, patches], dim=1) + self.pos_embed)  # (B, T, E)
        for block in self.blocks:
            x = block(x)  # (B, T, E)
        return self.norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``images (B, C, S, S)`` -> logits ``(B, num_classes)``."""
        return self.head(self.tokens(images)[:, 0])
