"""Sentence-pair classifier with no cross attention: a shared BiGRU encodes each sentence on its
own into one vector, and an MLP compares the two vectors.

The "sentence encoding" baselines of SNLI (Bowman, Angeli, Potts and Manning 2015,
arXiv:1508.05326), with the encoder of Conneau et al. 2017 (InferSent, arXiv:1705.02364): a
bidirectional GRU (Cho et al. 2014, arXiv:1406.1078) whose states are max-pooled over the real
tokens, and the features ``[u; v; |u - v|; u * v]`` of the two sentence vectors. The baseline of
:mod:`attnkit.models.decomposable`: the sentences never look at each other before pooling.

Padding is handled with packed sequences and a masked max, so the logit does not depend on how
much padding a batch holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnkit._validate import check_bool, check_float, check_int
from attnkit.models.decomposable import exact_match

__all__ = ["BiGRUPairConfig", "BiGRUPairClassifier"]


@dataclass
class BiGRUPairConfig:
    """Sizes of a :class:`BiGRUPairClassifier`."""

    vocab_size: int  # token ids shared by both sentences (one embedding table)
    embed_dim: int = 64  # token embedding size
    hidden: int = 160  # GRU state size per direction; the MLP's width too
    dropout: float = 0.2  # on the embeddings and before each classifier layer
    #: append to each token's embedding the 0/1 "exact match" feature of
    #: :func:`attnkit.models.decomposable.exact_match` (its id occurs in the other sentence):
    #: the one piece of cross-sentence information the encoders then see
    exact_match: bool = False
    pad_id: int = 0  # the embedding row kept at zero

    def __post_init__(self) -> None:
        check_int(self.vocab_size, "vocab_size", minimum=1)
        check_int(self.embed_dim, "embed_dim", minimum=1)
        check_int(self.hidden, "hidden", minimum=1)
        self.dropout = check_float(self.dropout, "dropout", low=0.0, high=1.0, high_open=True)
        check_bool(self.exact_match, "exact_match")
        check_int(self.pad_id, "pad_id", minimum=0, maximum=self.vocab_size - 1)


class BiGRUPairClassifier(nn.Module):
    """Two sentences encoded separately by one BiGRU, compared by an MLP."""

    def __init__(self, config: BiGRUPairConfig) -> None:
        super().__init__()
        if not isinstance(config, BiGRUPairConfig):
            raise TypeError(f"config: expected a BiGRUPairConfig, got {type(config).__name__}")
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=c.pad_id)
        self.dropout = nn.Dropout(c.dropout)
        self.gru = nn.GRU(c.embed_dim + int(c.exact_match), c.hidden, batch_first=True,
                          bidirectional=True)
        self.classify = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(8 * c.hidden, c.hidden),
                                      nn.ReLU(), nn.Dropout(c.dropout), nn.Linear(c.hidden, 1))

    def encode(self, ids: torch.Tensor, mask: torch.Tensor,
               match: torch.Tensor | None = None) -> torch.Tensor:
        """``ids (B, L)``, ``mask (B, L)`` bool (True at real tokens, a prefix of each row),
        ``match (B, L, 1)`` the exact-match features (with ``exact_match`` only) -> the
        max-pooled sentence vectors ``(B, 2 * hidden)`` (zeros for an empty row)."""
        lengths = mask.sum(dim=1)  # (B,)
        x = self.dropout(self.embed(ids))  # (B, L, E)
        if match is not None:
            x = torch.cat([x, match], dim=-1)  # (B, L, E + 1)
        packed = pack_padded_sequence(x, lengths.clamp_min(1).cpu(), batch_first=True,
                                      enforce_sorted=False)
        states, _ = self.gru(packed)
        states, _ = pad_packed_sequence(states, batch_first=True,
                                        total_length=ids.shape[1])  # (B, L, 2H)
        states = states.masked_fill(~mask[..., None], float("-inf"))
        pooled = states.max(dim=1).values  # (B, 2H)
        return torch.where(lengths[:, None] > 0, pooled, torch.zeros_like(pooled))

    def forward(self, a: torch.Tensor, a_mask: torch.Tensor, b: torch.Tensor,
                b_mask: torch.Tensor) -> torch.Tensor:
        """Logits ``(B,)`` of the pairs ``(a[k], b[k])``.

        Args:
            a: ``(B, La)`` token ids of the first sentences, right-padded.
            a_mask: ``(B, La)`` bool, True at real tokens.
            b: ``(B, Lb)`` token ids of the second sentences.
            b_mask: ``(B, Lb)`` bool, True at real tokens.
        """
        for name, ids, mask in (("a", a, a_mask), ("b", b, b_mask)):
            if ids.dim() != 2 or mask.shape != ids.shape or mask.dtype != torch.bool:
                raise ValueError(f"{name}, {name}_mask: expected (B, L) ids and a (B, L) bool "
                                 f"mask, got {tuple(ids.shape)} and {tuple(mask.shape)} "
                                 f"{mask.dtype}")
        ma, mb = exact_match(a, a_mask, b, b_mask) if self.config.exact_match else (None, None)
        u, v = self.encode(a, a_mask, ma), self.encode(b, b_mask, mb)  # (B, 2H) each
        return self.classify(torch.cat([u, v, (u - v).abs(), u * v], dim=-1)).squeeze(-1)
