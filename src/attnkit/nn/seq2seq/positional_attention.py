"""Positional attention: weights that depend only on the query and key positions.

There is no single canonical paper for this mechanism; the closest are:

- Tay, Bahri, Metzler, Juan, Zhao, Zheng, "Synthesizer: Rethinking Self-Attention
  in Transformer Models", ICML 2021, arXiv:2005.00743: the "Random" synthesizer
  learns a position-to-position score table ``R`` (our ``rank=None``) and the
  "Factorized Random" one a low-rank ``R1 R2^T`` (our ``rank=r``); they also mix
  these with content scores by adding logits.
- Ke, He, Liu, "Rethinking Positional Encoding in Language Pre-training" (TUPE),
  ICLR 2021, arXiv:2006.15595: an untied positional term ``(p_i U^Q)(p_j U^K)^T``
  added to the content scores, which is the factorized table plus content.
- Vaswani et al. 2017 (arXiv:1706.03762) add position information to the inputs
  instead; this module is the "attention by position alone" end of that spectrum.

What this module computes::

    scores[i, j] = table[start + i, j]                      rank=None
    scores[i, j] = P_q[start + i] . P_k[j] / sqrt(rank)     rank=r
    scores      += log(content weights)                     content=<Seq2SeqAttention>
    weights      = masked_softmax(scores)

``start`` is the decoding position carried in the state, so stepping a decoder
one row at a time sees the same rows of the table as one call over all rows.

Combining with content: ``content`` is any :class:`Seq2SeqAttention`; its weights
``w_c`` are combined as ``softmax(pos + log w_c)``, a product of experts. For a
softmax-based content mechanism ``log w_c`` differs from its scores only by a
per-row constant, so this is exactly ``softmax(pos + content_scores)``, the
Synthesizer/TUPE sum of logits, without the interface having to expose scores.
Keys the content mechanism gives zero weight stay at zero. Hard or monotonic
content weights are allowed but make the positional term mostly irrelevant.

Initialization: the full table starts at zero and the factorized ``P_k`` at zero
(``P_q`` random), so both variants start uniform and learn from there.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from attnkit._validate import check_int
from attnkit.functional.normalizers import compute_dtype, masked_softmax
from attnkit.nn.seq2seq.base import Seq2SeqAttention, State

__all__ = ["PositionalAttention"]

_CONTENT = "content."  # prefix of the content mechanism's entries in the state


class PositionalAttention(Seq2SeqAttention):
    """Learned position-to-position attention, optionally multiplied with content attention.

    Args:
        max_query_len: ``Lq_max``, number of query (decoder) positions the table covers.
        max_key_len: ``Lk_max``, number of key (encoder) positions the table covers.
        rank: None for the full ``(Lq_max, Lk_max)`` table; ``r`` for the factorized
            ``P_q (Lq_max, r) @ P_k (Lk_max, r)^T / sqrt(r)``.
        content: optional content mechanism whose weights are combined with the
            positional scores (see the module docstring).

    State (``init_state`` / returned by ``forward``):
        ``position``: 0-d int64, the query position of the next row (rows seen so far).
        ``content.<name>``: the content mechanism's own state entries.

    Example:
        >>> attn = PositionalAttention(10, 12, rank=4)
        >>> keys = torch.randn(2, 7, 5)
        >>> ctx, w, state = attn(torch.randn(2, 3, 8), keys)
        >>> ctx.shape, w.shape, int(state["position"])
        (torch.Size([2, 3, 5]), torch.Size([2, 3, 7]), 3)
    """

    def __init__(self, max_query_len: int, max_key_len: int, *, rank: int | None = None,
                 content: Seq2SeqAttention | None = None) -> None:
        super().__init__()
        for arg, value in (("max_query_len", max_query_len), ("max_key_len", max_key_len)):
            check_int(value, arg, minimum=1, owner="PositionalAttention")
        if rank is not None:
            check_int(rank, "rank (None or an int)", minimum=1, owner="PositionalAttention")
        if content is not None and not isinstance(content, Seq2SeqAttention):
            raise TypeError(f"PositionalAttention: content must be a Seq2SeqAttention, "
                            f"got {type(content).__name__}")
        self.max_query_len, self.max_key_len, self.rank = max_query_len, max_key_len, rank
        self.content = content
        if rank is None:
            self.table = nn.Parameter(torch.zeros(max_query_len, max_key_len))
        else:
            self.query_pos = nn.Parameter(torch.randn(max_query_len, rank))  # P_q
            self.key_pos = nn.Parameter(torch.zeros(max_key_len, rank))      # P_k

    def position_scores(self, start: int, query_len: int, key_len: int) -> torch.Tensor:
        """Scores of query positions ``start .. start + query_len - 1`` against keys
        ``0 .. key_len - 1``: ``(query_len, key_len)``."""
        if self.rank is None:
            return self.table[start:start + query_len, :key_len]
        rows = self.query_pos[start:start + query_len]  # (Lq, r)
        return rows @ self.key_pos[:key_len].T / math.sqrt(self.rank)

    def init_state(self, keys: torch.Tensor, values: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None) -> State:
        """Position 0, plus the content mechanism's initial state (prefixed ``content.``)."""
        self._check_keys(keys, None)
        state = {"position": torch.zeros((), dtype=torch.long, device=keys.device)}
        if self.content is not None:
            inner = self.content.init_state(keys, values, mask)
            state.update({_CONTENT + name: t for name, t in inner.items()})
        return state

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None = None,
                *, mask: torch.Tensor | None = None, state: State | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Attend by position (and content, if configured).

        Args:
            query: ``(B, Lq, Dq)``; only its length matters unless ``content`` is set.
            keys: ``(B, Lk, Dk)``, ``Lk <= max_key_len``.
            values: ``(B, Lk, Dv)``; defaults to ``keys``.
            mask: ``(B, Lk)`` or ``(B, Lq, Lk)`` bool, True = may attend.
            state: None (start at position 0), ``init_state(...)`` or a previous state.

        Returns:
            context ``(B, Lq, Dv)``, weights ``(B, Lq, Lk)``, state advanced by ``Lq``.
        """
        values, mask = self._check_inputs(query, keys, values, mask, state)
        B, Lq, _ = query.shape
        Lk = keys.shape[1]
        state = {} if state is None else state
        start = int(state["position"]) if "position" in state else 0
        if start + Lq > self.max_query_len:
            raise ValueError(f"PositionalAttention: query rows {start}..{start + Lq - 1} "
                             f"(state position {start} + query length {Lq}) exceed "
                             f"max_query_len={self.max_query_len}")
        if Lk > self.max_key_len:
            raise ValueError(f"PositionalAttention: keys have length {Lk} > "
                             f"max_key_len={self.max_key_len}")
        position = self.position_scores(start, Lq, Lk)  # (Lq, Lk)
        acc = compute_dtype(position.dtype)
        scores = position.to(acc).expand(B, Lq, Lk)
        new_state: State = {"position": torch.tensor(start + Lq, device=keys.device)}
        if self.content is not None:
            inner = {name[len(_CONTENT):]: t for name, t in state.items()
                     if name.startswith(_CONTENT)}
            _, content_weights, inner = self.content(query, keys, values, mask=mask,
                                                     state=inner or None)
            content_weights = content_weights.to(acc)
            # log 0 -> -inf marks keys the content rejects; clamp_min keeps the
            # backward of log away from 1/0 there (its gradient is cut by where).
            log_content = torch.where(content_weights > 0,
                                      content_weights.clamp_min(torch.finfo(acc).tiny).log(),
                                      float("-inf"))
            scores = scores + log_content
            new_state.update({_CONTENT + name: t for name, t in inner.items()})
        weights = masked_softmax(scores, mask).to(position.dtype)  # (B, Lq, Lk)
        context = torch.bmm(weights.to(values.dtype), values)  # (B, Lq, Dv)
        return context, weights, new_state
