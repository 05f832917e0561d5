"""The pairs task as tensors: examples tokenized with the corpus's BPE, batches of similar
lengths, and the padding masks (True = a real token)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnkit.data import PAD_ID
from attnkit.data.translation.pairs import PairExample

__all__ = ["EncodedSplit", "encode_split", "collate", "batches"]

_SORT_CHUNK = 50  # batches per sorted chunk: lengths are alike in a batch, order stays random


@dataclass
class EncodedSplit:
    """One split's examples as token ids: ``english[k]``, ``french[k]`` (lists of ids, at
    most ``max_len`` each), ``labels (N,)`` float 0/1, ``pairs (N,)`` the English pair index
    (the unit of the bootstrap), and the examples themselves."""

    english: list[list[int]]
    french: list[list[int]]
    labels: torch.Tensor
    pairs: torch.Tensor
    examples: list[PairExample]

    def __len__(self) -> int:
        return len(self.examples)


def encode_split(examples: Sequence[PairExample], tokenizer, max_len: int) -> EncodedSplit:
    """Tokenize ``examples`` (each text once), cutting each sentence at ``max_len`` tokens."""
    texts = sorted({e.english for e in examples} | {e.french for e in examples})
    ids = dict(zip(texts, tokenizer.encode_batch(texts), strict=True))
    return EncodedSplit(
        english=[ids[e.english][:max_len] or [PAD_ID] for e in examples],
        french=[ids[e.french][:max_len] or [PAD_ID] for e in examples],
        labels=torch.tensor([float(e.label) for e in examples]),
        pairs=torch.tensor([e.pair for e in examples], dtype=torch.long),
        examples=list(examples))


def _pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    for k, row in enumerate(rows):
        ids[k, :len(row)] = torch.tensor(row, dtype=torch.long)
    return ids, ids != PAD_ID


def collate(split: EncodedSplit, index: Sequence[int]):
    """Batch ``index`` of ``split``: ``(a (B, La), a_mask, b (B, Lb), b_mask, labels (B,))``,
    right-padded with PAD_ID, masks True at real tokens."""
    index = list(index)
    a, a_mask = _pad([split.english[k] for k in index])
    b, b_mask = _pad([split.french[k] for k in index])
    return a, a_mask, b, b_mask, split.labels[index]


def batches(split: EncodedSplit, batch_size: int, rng: np.random.Generator | None = None
            ) -> Iterator[list[int]]:
    """Example indices in batches of ``batch_size``. With ``rng``: shuffled, then sorted by
    length inside chunks of 50 batches (less padding), batch order shuffled again. Without:
    in order (evaluation)."""
    n = len(split)
    if rng is None:
        for start in range(0, n, batch_size):
            yield list(range(start, min(n, start + batch_size)))
        return
    order = rng.permutation(n)
    size = [len(split.english[k]) + len(split.french[k]) for k in range(n)]
    chunk = batch_size * _SORT_CHUNK
    groups = []
    for start in range(0, n, chunk):
        part = sorted(order[start:start + chunk].tolist(), key=lambda k: size[k])
        groups += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    for g in rng.permutation(len(groups)).tolist():
        yield groups[g]
