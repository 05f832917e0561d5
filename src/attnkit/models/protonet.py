"""Prototypical networks (Snell, Swersky & Zemel 2017, arXiv:1703.05175).

Each class's prototype is the mean embedding of its support images; a query's logits are
the negative squared Euclidean distances to the N prototypes. The embedding is the same
CNN as SNAIL's (:class:`attnkit.models.snail.EmbeddingCNN`), so the comparison isolates
the meta-learner. Deviation: the paper trains with more ways than it tests (e.g. 60-way
for 5-way Omniglot); here training uses the test's N, like every other model of the
comparison.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from attnkit.models.snail import EmbeddingCNN

__all__ = ["ProtoNet"]


class ProtoNet(nn.Module):
    """``forward(support (E, N*K, 1, S, S), support_labels (E, N*K), query (E, Q, 1, S, S))``
    -> logits ``(E, Q, N)``.

    Args:
        ways: N.
        channels, conv_blocks: the embedding CNN's size.
    """

    def __init__(self, ways: int, channels: int = 64, conv_blocks: int = 4) -> None:
        super().__init__()
        if isinstance(ways, bool) or not isinstance(ways, int) or ways < 1:
            raise ValueError(f"ways must be an int >= 1, got {ways!r}")
        self.ways = ways
        self.encoder = EmbeddingCNN(channels, conv_blocks)

    def forward(self, support: torch.Tensor, support_labels: torch.Tensor,
                query: torch.Tensor) -> torch.Tensor:
        episodes, shots_total = support_labels.shape
        queries = query.shape[1]
        embedded = self.encoder(torch.cat([support.flatten(0, 1), query.flatten(0, 1)]))
        support_emb = embedded[:episodes * shots_total].view(episodes, shots_total, -1)
        query_emb = embedded[episodes * shots_total:].view(episodes, queries, -1)
        onehot = F.one_hot(support_labels, self.ways).to(support_emb.dtype)  # (E, NK, N)
        counts = onehot.sum(1).clamp_min(1.0)  # (E, N)
        prototypes = onehot.transpose(1, 2) @ support_emb / counts[..., None]  # (E, N, D)
        diff = query_emb[:, :, None] - prototypes[:, None]  # (E, Q, N, D)
        return -diff.pow(2).sum(-1)  # (E, Q, N)
