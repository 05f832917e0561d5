"""End-to-end memory network (MemN2N) for question answering over a story.

Sukhbaatar, Szlam, Weston and Fergus (2015), "End-To-End Memory Networks", arXiv 1503.08895,
section 2 and section 4: ``K`` hops of soft attention over memory slots (one per story
sentence), bag-of-words or position encoding (PE) of sentences, temporal encoding, adjacent
weight tying (``A^{k+1} = C^k``, ``B = A^1``, ``W^T = C^K``, and the same for the temporal
tables), ``u^{k+1} = u^k + o^k``, and linear start (LS: the memory softmax removed, weights
``p_i = u . m_i`` used as they are). Random noise (RN, empty memories) lives in the training
loop (:func:`insert_empty_memories`).

Shapes: ``B`` batch, ``M`` memory slots, ``J`` words per sentence, ``d`` embedding size,
``V`` vocabulary size. Memory masks are bool, True = may attend; padded slots get exactly
zero weight (softmax) or are zeroed (linear start).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from attnkit._validate import check_choice, check_int
from attnkit.data.babi.encoding import position_encoding
from attnkit.functional.normalizers import masked_softmax

__all__ = ["MemN2NConfig", "MemN2N", "memory_hop", "insert_empty_memories", "time_indices"]


@dataclass
class MemN2NConfig:
    """A MemN2N model."""

    vocab_size: int  # V: words and answer labels share one id space, 0 = padding
    embed_dim: int = 50  # d (the paper's joint bAbI models use 50)
    hops: int = 3  # K
    memory_size: int = 50  # the most memory slots (temporal tables have this many rows)
    encoding: str = "pe"  # "pe" (position encoding) or "bow" (bag of words)
    temporal: bool = True  # add the temporal encodings T_A, T_C
    init_std: float = 0.1  # N(0, init_std) initialization, as in the paper

    def __post_init__(self) -> None:
        check_int(self.vocab_size, "vocab_size", minimum=2)
        check_int(self.embed_dim, "embed_dim", minimum=1)
        check_int(self.hops, "hops", minimum=1)
        check_int(self.memory_size, "memory_size", minimum=1)
        check_choice(self.encoding, "encoding", ["bow", "pe"])


def memory_hop(u: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
               *, linear: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One hop: ``p = softmax(u . m_i)`` over the allowed slots, ``o = sum_i p_i c_i``.

    Args:
        u: ``(B, d)`` the controller state (question embedding at the first hop).
        keys: ``(B, M, d)`` input memories ``m_i``.
        values: ``(B, M, d)`` output memories ``c_i``.
        mask: ``(B, M)`` bool, True = a real sentence. A row with no True gets all-zero
            weights and ``o = 0``.
        linear: linear start: ``p_i = u . m_i`` on the allowed slots (0 elsewhere), no
            softmax.

    Returns:
        ``o``: ``(B, d)`` and the weights ``p``: ``(B, M)``.
    """
    scores = torch.einsum("bd,bmd->bm", u, keys)  # (B, M)
    weights = scores * mask if linear else masked_softmax(scores, mask)
    return torch.einsum("bm,bmd->bd", weights, values), weights  # (B, d), (B, M)


def time_indices(mask: torch.Tensor) -> torch.Tensor:
    """``(B, M)`` temporal index of each slot: 0 for the most recent sentence of the story,
    counting up towards the oldest; padded slots get 0 (they are masked anyway)."""
    count = mask.sum(-1, keepdim=True)  # (B, 1)
    slots = torch.arange(mask.shape[-1], device=mask.device)  # (M,)
    return (count - 1 - slots).clamp(min=0) * mask


def insert_empty_memories(stories: torch.Tensor, lengths: torch.Tensor, fraction: float,
                          memory_size: int, generator: torch.Generator
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random noise (RN): put about ``fraction`` x n empty sentences at random places among
    each story's n sentences, keeping the last ``memory_size`` slots.

    Args:
        stories: ``(B, M, J)`` word ids; lengths: ``(B,)`` sentences in use.

    Returns:
        ``(B, M', J)`` stories and ``(B,)`` lengths, ``M' <= memory_size``.
    """
    rows, width = stories.shape[0], stories.shape[2]
    extra = torch.binomial(lengths.float(), torch.full((rows,), float(fraction)),
                           generator=generator).long()
    total = (lengths + extra).clamp(max=memory_size)  # (B,) slots after insertion
    keep = torch.minimum(lengths, total)  # (B,) real sentences kept (the most recent)
    slots = max(1, int(total.max()))
    # a random interleaving: the `keep` slots with the smallest random keys hold sentences
    keys = torch.rand(rows, slots, generator=generator)
    keys = keys.masked_fill(torch.arange(slots)[None, :] >= total[:, None], 2.0)
    rank = keys.argsort(-1).argsort(-1)  # (B, slots)
    real = rank < keep[:, None]  # (B, slots)
    source = (lengths - keep)[:, None] + real.long().cumsum(-1) - 1  # sentence per slot
    source = source.clamp(min=0, max=stories.shape[1] - 1)
    out = stories.gather(1, source[..., None].expand(rows, slots, width))
    return out * real[..., None], total


class MemN2N(nn.Module):
    """The K-hop memory network with adjacent weight tying.

    Parameters: ``K + 1`` word embedding tables ``E_0..E_K`` (``A^k = E_{k-1}``,
    ``C^k = E_k``, ``B = E_0``, ``W = E_K^T``) and, with ``temporal``, ``K + 1`` temporal
    tables ``T_0..T_K`` tied the same way.
    """

    def __init__(self, config: MemN2NConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.embeddings = nn.ModuleList(nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=0)
                                        for _ in range(c.hops + 1))
        self.temporal = (nn.ParameterList(nn.Parameter(torch.empty(c.memory_size, c.embed_dim))
                                          for _ in range(c.hops + 1)) if c.temporal else None)
        for table in self.embeddings:
            nn.init.normal_(table.weight, std=c.init_std)
            with torch.no_grad():
                table.weight[0].zero_()
        if self.temporal is not None:
            for table in self.temporal:
                nn.init.normal_(table, std=c.init_std)

    def encode_reference(self, words: torch.Tensor, k: int) -> torch.Tensor:
        """``(..., J)`` word ids -> ``(..., d)`` sentence vectors with table ``E_k``, written
        out with :func:`position_encoding` (PE) or as a plain sum (bag of words): the
        readable twin of :meth:`encode_tables` and its test oracle."""
        vectors = self.embeddings[k](words)  # (..., J, d)
        if self.config.encoding == "pe":
            vectors = vectors * position_encoding(words, self.config.embed_dim)
        return vectors.sum(-2)

    def encode_tables(self, words: torch.Tensor, tables: int) -> torch.Tensor:
        """``(..., J)`` word ids -> ``(..., tables, d)``: the sentence vectors with tables
        ``E_0 .. E_{tables-1}``, all in one pass without the ``(..., J, d)`` word vectors.

        The position encoding ``l_kj = a_j + (k / d) b_j`` with ``a_j = 1 - j / J`` and
        ``b_j = 2 j / J - 1`` splits a PE sentence vector into two weighted bag-of-words
        sums, ``sum_j a_j E[w_j] + (k / d) sum_j b_j E[w_j]``, each one ``embedding_bag``
        (the training step's most expensive part before: about 1.5x faster overall).
        """
        d, width = self.config.embed_dim, words.shape[-1]
        flat = words.reshape(-1, width)  # (N, J)
        weight = torch.cat([e.weight for e in self.embeddings[:tables]], dim=1)  # (V, T d)
        if self.config.encoding != "pe":
            out = F.embedding_bag(flat, weight, mode="sum", padding_idx=0)  # (N, T d)
        else:
            real = flat != 0
            count = real.sum(-1, keepdim=True).clamp(min=1).float()  # (N, 1) = J
            frac = torch.arange(1, width + 1, dtype=torch.float32) / count  # (N, J) = j / J
            a, b = (1 - frac) * real, (2 * frac - 1) * real  # (N, J) each
            k = (torch.arange(1, d + 1, dtype=torch.float32) / d).repeat(tables)  # (T d,)
            out = (F.embedding_bag(flat, weight, per_sample_weights=a, mode="sum")
                   + k * F.embedding_bag(flat, weight, per_sample_weights=b, mode="sum"))
        return out.reshape(*words.shape[:-1], tables, d)

    def forward(self, stories: torch.Tensor, queries: torch.Tensor, mask: torch.Tensor, *,
                linear: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Answer logits and each hop's attention.

        Args:
            stories: ``(B, M, J)`` word ids (0 = padding), ``M <= memory_size``.
            queries: ``(B, Jq)`` question word ids.
            mask: ``(B, M)`` bool, True = a real sentence (may attend).
            linear: linear start (no softmax in the hops).

        Returns:
            logits ``(B, V)`` and a list of K weight tensors ``(B, M)``.
        """
        if stories.dim() != 3 or queries.dim() != 2 or queries.shape[0] != stories.shape[0]:
            raise ValueError(f"stories, queries: expected (B, M, J) and (B, Jq), got "
                             f"{tuple(stories.shape)} and {tuple(queries.shape)}")
        if mask.dtype != torch.bool or mask.shape != stories.shape[:2]:
            raise ValueError(f"mask: expected a bool tensor of shape {tuple(stories.shape[:2])}"
                             f", got {mask.dtype} {tuple(mask.shape)}")
        if stories.shape[1] > self.config.memory_size:
            raise ValueError(f"stories: {stories.shape[1]} memory slots exceed memory_size "
                             f"{self.config.memory_size}")
        tables = self.config.hops + 1
        memories = self.encode_tables(stories, tables).unbind(-2)  # each (B, M, d)
        if self.temporal is not None:
            when = time_indices(mask)  # (B, M)
            memories = [m + t[when] for m, t in zip(memories, self.temporal, strict=True)]
        u = self.encode_tables(queries, 1)[:, 0]  # (B, d)
        weights = []
        for k in range(self.config.hops):
            o, p = memory_hop(u, memories[k], memories[k + 1], mask, linear=linear)
            u = u + o
            weights.append(p)
        return u @ self.embeddings[-1].weight.T, weights  # (B, V)
