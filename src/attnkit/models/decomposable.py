"""Decomposable attention for sentence pairs: attend, compare, aggregate.

Parikh, Täckström, Das and Uszkoreit, "A Decomposable Attention Model for Natural Language
Inference", 2016, arXiv:1606.01933. For sentences ``a`` (length La) and ``b`` (length Lb):

1. **attend**: ``e_ij = F(a_i) . F(b_j)``; ``beta_i = sum_j softmax_j(e_ij) b_j`` (the part of
   ``b`` aligned to ``a_i``) and ``alpha_j = sum_i softmax_i(e_ij) a_i``;
2. **compare**: ``v1_i = G([a_i; beta_i])``, ``v2_j = G([b_j; alpha_j])``;
3. **aggregate**: ``y = H([sum_i v1_i; sum_j v2_j])``.

``F``, ``G`` and ``H`` are two-layer ReLU networks with dropout, shared by both sentences. The
optional **intra-sentence attention** (the paper's section 3.4) replaces each token by
``[a_i; a'_i]`` with ``a'_i = sum_j softmax_j(f(a_i) . f(a_j) + d_{j-i}) a_j`` before step 1,
``d`` a learned bias per signed distance, distances beyond ``max_distance`` sharing the end
entries (the paper lets distances over 10 share one bias).

Both attention steps run on :func:`attnkit.attention` with ``scale=1`` (the paper's scores are
unscaled dot products) and a boolean mask, True = may attend, built from the padding masks;
padded positions get zero weight and zero output, and are left out of the sums, so the logit
does not depend on how much padding a batch holds.

Deviations: tokens are embedded from scratch (the paper projects fixed GloVe vectors); the
classifier ends in one logit (a binary task) instead of the paper's three classes. Two
options go beyond the paper, both off by default: ``exact_match`` appends to every token
vector a 0/1 feature, "this token id occurs in the other sentence" (the token-match feature of
later attend-compare-aggregate models: DrQA, Chen et al. 2017, arXiv:1704.00051; DIIN, Gong
et al. 2017, arXiv:1709.04348), and ``aggregate="sum+max"`` pools the compared vectors by sum
and max (as ESIM does, Chen et al. 2016, arXiv:1609.06038) instead of the sum alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from attnkit._validate import check_bool, check_choice, check_float, check_int
from attnkit.functional.attention import attention
from attnkit.functional.score_mods import relative_bias

__all__ = ["AGGREGATES", "DecomposableConfig", "DecomposableAttention", "DecomposableOutput",
           "exact_match", "mlp"]

#: how the compared token vectors of a sentence are pooled
AGGREGATES = ("sum", "sum+max")


@dataclass
class DecomposableConfig:
    """Sizes of a :class:`DecomposableAttention`."""

    vocab_size: int  # token ids 0..vocab_size-1 shared by both sentences (one embedding table)
    embed_dim: int = 64  # token embedding size
    hidden: int = 64  # width of F, G and H (and of the intra-attention network f)
    dropout: float = 0.2  # before every linear layer of F, G, H
    intra: bool = False  # intra-sentence attention with a distance bias (section 3.4)
    max_distance: int = 10  # intra: signed distances beyond this share one bias
    #: append to each token vector a 0/1 "exact match" feature: its id occurs among the real
    #: tokens of the other sentence (the token-match feature of later attend-compare-aggregate
    #: models: DrQA, ESIM variants, DIIN); not in the paper
    exact_match: bool = False
    #: "sum" (the paper) or "sum+max": the compared vectors summed and max-pooled
    aggregate: str = "sum"
    pad_id: int = 0  # the embedding row kept at zero

    def __post_init__(self) -> None:
        check_int(self.vocab_size, "vocab_size", minimum=1)
        check_int(self.embed_dim, "embed_dim", minimum=1)
        check_int(self.hidden, "hidden", minimum=1)
        self.dropout = check_float(self.dropout, "dropout", low=0.0, high=1.0, high_open=True)
        check_bool(self.intra, "intra")
        check_int(self.max_distance, "max_distance", minimum=1)
        check_bool(self.exact_match, "exact_match")
        check_choice(self.aggregate, "aggregate", list(AGGREGATES))
        check_int(self.pad_id, "pad_id", minimum=0, maximum=self.vocab_size - 1)


@dataclass
class DecomposableOutput:
    """What :meth:`DecomposableAttention.forward` returns."""

    logits: torch.Tensor  # (B,) the pair's logit (positive: a translation)
    weights_a: torch.Tensor | None  # (B, La, Lb) softmax over b for each a_i, or None
    weights_b: torch.Tensor | None  # (B, Lb, La) softmax over a for each b_j, or None


def mlp(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """The paper's two-layer ReLU network with dropout: ``(..., in_dim) -> (..., hidden)``."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU())


def _pair_mask(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``(B, 1, Lr, Lc)`` True where row token and column token are both real."""
    return rows[:, None, :, None] & cols[:, None, None, :]


def _masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x (B, L, D)`` summed over the positions where ``mask (B, L)`` is True: ``(B, D)``."""
    return (x * mask[..., None].to(x.dtype)).sum(dim=1)


def _masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x (B, L, D)`` max over the real positions of ``mask (B, L)``: ``(B, D)`` (zeros for
    a row with none; ``x`` is a ReLU output, so zero is its floor)."""
    return x.masked_fill(~mask[..., None], 0.0).amax(dim=1)


def exact_match(a: torch.Tensor, a_mask: torch.Tensor, b: torch.Tensor,
                b_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per token, 1.0 where its id occurs among the real tokens of the other sentence.

    Args:
        a: ``(B, La)`` ids, ``a_mask (B, La)`` bool; ``b``, ``b_mask`` likewise ``(B, Lb)``.

    Returns:
        ``(B, La, 1)`` and ``(B, Lb, 1)`` float features, 0 at padding.
    """
    same = (a[:, :, None] == b[:, None, :]) & a_mask[:, :, None] & b_mask[:, None, :]
    return same.any(dim=2)[..., None].float(), same.any(dim=1)[..., None].float()


class DecomposableAttention(nn.Module):
    """Decomposable attention classifier of a sentence pair (see the module docstring)."""

    def __init__(self, config: DecomposableConfig) -> None:
        super().__init__()
        if not isinstance(config, DecomposableConfig):
            raise TypeError(f"config: expected a DecomposableConfig, got "
                            f"{type(config).__name__}")
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=c.pad_id)
        token_dim = c.embed_dim
        if c.intra:
            self.intra_f = mlp(c.embed_dim, c.hidden, c.dropout)
            self.distance_bias = nn.Parameter(torch.zeros(1, 2 * c.max_distance + 1))
            token_dim = 2 * c.embed_dim
        token_dim += int(c.exact_match)
        self.attend_f = mlp(token_dim, c.hidden, c.dropout)  # F
        self.compare_g = mlp(2 * token_dim, c.hidden, c.dropout)  # G
        pooled = 2 * c.hidden * (2 if c.aggregate == "sum+max" else 1)
        self.aggregate_h = mlp(pooled, c.hidden, c.dropout)  # H
        self.out = nn.Linear(c.hidden, 1)

    def _intra(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x (B, L, E)``, ``mask (B, L)`` -> ``[x; x'] (B, L, 2E)``."""
        f = self.intra_f(x)[:, None]  # (B, 1, L, hidden)
        self_aligned, _ = attention(f, f, x[:, None], mask=_pair_mask(mask, mask), scale=1.0,
                                    score_mod=relative_bias(self.distance_bias))
        return torch.cat([x, self_aligned[:, 0]], dim=-1)  # (B, L, 2E)

    def forward(self, a: torch.Tensor, a_mask: torch.Tensor, b: torch.Tensor,
                b_mask: torch.Tensor, *, return_weights: bool = False) -> DecomposableOutput:
        """Score each pair ``(a[k], b[k])``.

        Args:
            a: ``(B, La)`` token ids of the first sentences (English), right-padded.
            a_mask: ``(B, La)`` bool, True at real tokens (False at padding).
            b: ``(B, Lb)`` token ids of the second sentences (French).
            b_mask: ``(B, Lb)`` bool, True at real tokens.
            return_weights: also return both attention maps (for alignment plots).
        """
        for name, ids, mask in (("a", a, a_mask), ("b", b, b_mask)):
            if ids.dim() != 2 or mask.shape != ids.shape or mask.dtype != torch.bool:
                raise ValueError(f"{name}, {name}_mask: expected (B, L) ids and a (B, L) bool "
                                 f"mask, got {tuple(ids.shape)} and {tuple(mask.shape)} "
                                 f"{mask.dtype}")
        if a.shape[0] != b.shape[0]:
            raise ValueError(f"b: batch size {b.shape[0]} differs from a's {a.shape[0]}")
        xa, xb = self.embed(a), self.embed(b)  # (B, La, E), (B, Lb, E)
        if self.config.intra:
            xa, xb = self._intra(xa, a_mask), self._intra(xb, b_mask)  # (B, L, 2E)
        if self.config.exact_match:
            ma, mb = exact_match(a, a_mask, b, b_mask)  # (B, La, 1), (B, Lb, 1)
            xa, xb = torch.cat([xa, ma], dim=-1), torch.cat([xb, mb], dim=-1)  # (B, L, D)
        fa, fb = self.attend_f(xa)[:, None], self.attend_f(xb)[:, None]  # (B, 1, L, hidden)
        beta, w_a = attention(fa, fb, xb[:, None], mask=_pair_mask(a_mask, b_mask), scale=1.0,
                              return_weights=return_weights)  # (B, 1, La, D)
        alpha, w_b = attention(fb, fa, xa[:, None], mask=_pair_mask(b_mask, a_mask), scale=1.0,
                               return_weights=return_weights)  # (B, 1, Lb, D)
        v1 = self.compare_g(torch.cat([xa, beta[:, 0]], dim=-1))  # (B, La, hidden)
        v2 = self.compare_g(torch.cat([xb, alpha[:, 0]], dim=-1))  # (B, Lb, hidden)
        pooled = [_masked_sum(v1, a_mask), _masked_sum(v2, b_mask)]  # (B, hidden) each
        if self.config.aggregate == "sum+max":
            pooled += [_masked_max(v1, a_mask), _masked_max(v2, b_mask)]
        pooled = torch.cat(pooled, dim=-1)  # (B, 2 or 4 hidden)
        logits = self.out(self.aggregate_h(pooled)).squeeze(-1)  # (B,)
        return DecomposableOutput(logits, None if w_a is None else w_a[:, 0],
                                  None if w_b is None else w_b[:, 0])
