"""SNAIL: a simple neural attentive meta-learner (Mishra, Rohaninejad, Chen & Abbeel 2018,
arXiv:1707.03141), for N-way K-shot classification.

An episode is one sequence: the ``N*K`` support images, each embedded by a CNN and
concatenated with its one-hot label, then the query image with an all-zero label; the
output at the last position classifies the query. The sequence model interleaves

* **TC blocks**: ``ceil(log2 T)`` dense blocks of dilated causal convolutions (kernel 2,
  dilations 1, 2, 4, ...), each gated (``tanh(f) * sigmoid(g)``) and concatenated to its
  input, so the receptive field covers the whole length-``T`` sequence;
* **attention blocks**: single-head causal key-value attention
  (:func:`attnkit.functional.attention` with ``causal=True``), its read concatenated to the
  input.

The paper's Omniglot layout is ``A(64, 32) T(128) A(256, 128) T(128) A(512, 256)`` and a
1x1 convolution to N logits, on the embedding CNN of Vinyals et al. (2016): 4 blocks of
3x3 convolution (64 filters), batch norm, leaky ReLU and 2x2 max pooling.

Deviations: the sizes are config fields and the defaults of
:class:`SnailConfig` are smaller than the paper's (CPU budget); every query of an episode
is classified by its own sequence (support + that query) and the loss is on the query
position only, as in the paper. ``layout`` also builds the paper's ablations: TC blocks
only (``"tc"``) and attention blocks only (``"attention"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.functional import attention

__all__ = ["SnailConfig", "EmbeddingCNN", "CausalConv1d", "DenseBlock", "TCBlock",
           "AttentionBlock", "SNAIL", "LAYOUTS"]

#: layout name -> blocks in order: ("A", key_size, value_size) or ("T", filters);
#: sizes are multiplied by SnailConfig.width
LAYOUTS: dict[str, tuple[tuple, ...]] = {
    "snail": (("A", 64, 32), ("T", 128), ("A", 256, 128), ("T", 128), ("A", 512, 256)),
    "tc": (("T", 128), ("T", 128)),
    "attention": (("A", 64, 32), ("A", 256, 128), ("A", 512, 256)),
}


@dataclass
class SnailConfig:
    """A SNAIL (or ablation) for ``ways``-way ``shots``-shot episodes."""

    ways: int = 5  # N: classes per episode (output logits)
    shots: int = 1  # K: support images per class; the sequence length is N*K + 1
    layout: str = "snail"  # a LAYOUTS key: "snail", "tc" (TC only), "attention" (only)
    width: float = 0.5  # multiplies every block size of the layout (1.0: the paper's)
    channels: int = 64  # filters of each embedding CNN block
    conv_blocks: int = 4  # embedding CNN blocks (each halves the image side)
    block_sizes: tuple = field(default=())  # filled from layout and width

    def __post_init__(self) -> None:
        for name in ("ways", "shots", "channels", "conv_blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SnailConfig.{name} must be an int >= 1, got {value!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"SnailConfig.layout must be one of {sorted(LAYOUTS)}, got "
                             f"{self.layout!r}")
        if not (isinstance(self.width, (int, float)) and 0 < self.width <= 4):
            raise ValueError(f"SnailConfig.width must be in (0, 4], got {self.width!r}")
        self.block_sizes = tuple(
            (kind, *[max(1, round(size * self.width)) for size in sizes])
            for kind, *sizes in LAYOUTS[self.layout])

    @property
    def seq_len(self) -> int:
        return self.ways * self.shots + 1


class EmbeddingCNN(nn.Module):
    """Images ``(M, 1, S, S)`` -> features ``(M, channels)``: ``blocks`` x (3x3 conv, batch
    norm, leaky ReLU, 2x2 max pool), then a global mean over what is left of the grid."""

    def __init__(self, channels: int = 64, blocks: int = 4) -> None:
        super().__init__()
        layers, inputs = [], 1
        for _ in range(blocks):
            layers += [nn.Conv2d(inputs, channels, 3, padding=1), nn.BatchNorm2d(channels),
                       nn.LeakyReLU(0.1), nn.MaxPool2d(2)]
            inputs = channels
        self.net = nn.Sequential(*layers)
        self.out_dim = channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).mean(dim=(-2, -1))  # (M, channels)


class CausalConv1d(nn.Module):
    """``(B, C_in, T)`` -> ``(B, C_out, T)``; output ``t`` reads inputs ``t`` and
    ``t - dilation`` only (left zero padding)."""

    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__()
        self.dilation = dilation
        self.conv = nn.Conv1d(in_channels, out_channels, 2, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.dilation, 0)))


class DenseBlock(nn.Module):
    """``(B, C, T)`` -> ``(B, C + filters, T)``: input ++ tanh(f(x)) * sigmoid(g(x)), f and
    g causal convolutions with ``dilation``."""

    def __init__(self, in_channels: int, filters: int, dilation: int) -> None:
        super().__init__()
        self.f = CausalConv1d(in_channels, filters, dilation)
        self.g = CausalConv1d(in_channels, filters, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.tanh(self.f(x)) * torch.sigmoid(self.g(x))], dim=1)


class TCBlock(nn.Module):
    """``ceil(log2 seq_len)`` dense blocks, dilations 1, 2, 4, ...: ``(B, C, T)`` ->
    ``(B, C + n * filters, T)``."""

    def __init__(self, in_channels: int, seq_len: int, filters: int) -> None:
        super().__init__()
        count = max(1, math.ceil(math.log2(seq_len)))
        self.blocks = nn.Sequential(*[DenseBlock(in_channels + i * filters, filters, 2 ** i)
                                      for i in range(count)])
        self.out_channels = in_channels + count * filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class AttentionBlock(nn.Module):
    """``(B, C, T)`` -> ``(B, C + value_size, T)``: input ++ causal single-head attention
    with ``key_size`` queries/keys and ``value_size`` values (scale ``1/sqrt(key_size)``)."""

    def __init__(self, in_channels: int, key_size: int, value_size: int) -> None:
        super().__init__()
        self.query = nn.Linear(in_channels, key_size)
        self.key = nn.Linear(in_channels, key_size)
        self.value = nn.Linear(in_channels, value_size)
        self.out_channels = in_channels + value_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.transpose(1, 2)  # (B, T, C)
        q, k, v = (proj(seq)[:, None] for proj in (self.query, self.key, self.value))
        read, _ = attention(q, k, v, causal=True)  # (B, 1, T, value_size)
        return torch.cat([x, read[:, 0].transpose(1, 2)], dim=1)


class SNAIL(nn.Module):
    """Classifies queries from a labelled support set.

    ``forward(support, support_labels, query)``:

    * ``support``: ``(E, N*K, 1, S, S)`` images of E episodes;
    * ``support_labels``: ``(E, N*K)`` int64 in ``[0, N)``;
    * ``query``: ``(E, Q, 1, S, S)``;
    * returns logits ``(E, Q, N)``.
    """

    def __init__(self, config: SnailConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = EmbeddingCNN(config.channels, config.conv_blocks)
        channels = self.encoder.out_dim + config.ways
        blocks: list[nn.Module] = []
        for kind, *sizes in config.block_sizes:
            block = (AttentionBlock(channels, *sizes) if kind == "A"
                     else TCBlock(channels, config.seq_len, *sizes))
            blocks.append(block)
            channels = block.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Conv1d(channels, config.ways, 1)

    def sequence_logits(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, T)`` embedded sequence -> ``(B, N, T)`` logits at every position."""
        return self.classifier(self.blocks(features))

    def forward(self, support: torch.Tensor, support_labels: torch.Tensor,
                query: torch.Tensor) -> torch.Tensor:
        episodes, shots_total = support_labels.shape
        queries = query.shape[1]
        ways = self.config.ways
        if shots_total + 1 != self.config.seq_len:
            raise ValueError(f"support_labels: expected {self.config.seq_len - 1} support "
                             f"images per episode, got shape {tuple(support_labels.shape)}")
        images = torch.cat([support.flatten(0, 1), query.flatten(0, 1)])
        embedded = self.encoder(images)  # (E*NK + E*Q, D)
        support_emb = embedded[:episodes * shots_total].view(episodes, shots_total, -1)
        query_emb = embedded[episodes * shots_total:].view(episodes, queries, -1)
        labelled = torch.cat([support_emb, F.one_hot(support_labels, ways).to(
            support_emb.dtype)], dim=-1)  # (E, NK, D + N)
        blank = query_emb.new_zeros(episodes, queries, ways)
        last = torch.cat([query_emb, blank], dim=-1)  # (E, Q, D + N)
        sequence = torch.cat([labelled[:, None].expand(-1, queries, -1, -1),
                              last[:, :, None]], dim=2)  # (E, Q, T, D + N)
        logits = self.sequence_logits(sequence.flatten(0, 1).transpose(1, 2))  # (E*Q, N, T)
        return logits[:, :, -1].view(episodes, queries, ways)
