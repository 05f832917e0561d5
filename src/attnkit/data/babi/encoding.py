"""Words to ids and examples to padded tensors for a memory network.

Shapes: ``N`` examples, ``M`` memory slots (the last ``M`` story sentences, oldest first,
padded at the end), ``J`` words per sentence (padded at the end), ``d`` embedding size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnkit._validate import check_int
from attnkit.data.babi.example import Example

__all__ = ["PAD", "Vocabulary", "EncodedSet", "encode", "position_encoding"]

PAD = "<pad>"  # id 0: padding words (and empty memories) embed to zero


class Vocabulary:
    """Every word and answer label of some examples, sorted, after ``<pad>`` (id 0).

    Answers share the id space of words (the answer is a softmax over the vocabulary, as in
    Sukhbaatar et al. 2015); list answers such as ``"apple,milk"`` are one entry.
    """

    def __init__(self, words: Iterable[str]) -> None:
        self.words = [PAD, *sorted(set(words) - {PAD})]
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_examples(cls, examples: Iterable[Example]) -> Vocabulary:
        words: set[str] = set()
        for ex in examples:
            for sentence in ex.story:
                words.update(sentence)
            words.update(ex.question)
            words.add(ex.answer)
        return cls(words)

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, words: Sequence[str]) -> list[int]:
        """The ids of ``words``; an unknown word raises ValueError naming it."""
        try:
            return [self.index[w] for w in words]
        except KeyError as exc:
            raise ValueError(f"words: {exc.args[0]!r} is not in the vocabulary") from None


@dataclass
class EncodedSet:
    """Examples as tensors.

    Attributes:
        stories: ``(N, M, J)`` word ids, 0 = padding.
        lengths: ``(N,)`` sentences kept per story (memory slots in use), 0..M.
        queries: ``(N, J)`` question word ids.
        answers: ``(N,)`` answer ids.
        tasks: ``(N,)`` task numbers.
        supporting: ``(N, M)`` bool, True at the slots of supporting facts that were kept.
    """

    stories: torch.Tensor
    lengths: torch.Tensor
    queries: torch.Tensor
    answers: torch.Tensor
    tasks: torch.Tensor
    supporting: torch.Tensor

    def __len__(self) -> int:
        return int(self.answers.shape[0])

    @property
    def memory_mask(self) -> torch.Tensor:
        """``(N, M)`` bool, True = a real sentence (may attend), False = padding."""
        slots = torch.arange(self.stories.shape[1])
        return slots[None, :] < self.lengths[:, None]


def encode(examples: Sequence[Example], vocab: Vocabulary, memory_size: int = 50) -> EncodedSet:
    """Pad ``examples`` into tensors, keeping each story's last ``memory_size`` sentences
    (Sukhbaatar et al. 2015 keep the 50 most recent)."""
    check_int(memory_size, "memory_size", minimum=1)
    if not examples:
        raise ValueError("examples: expected at least one example")
    kept = [ex.story[-memory_size:] for ex in examples]
    slots = max(1, max(len(s) for s in kept))
    width = max(max((len(w) for s in kept for w in s), default=1),
                max(len(ex.question) for ex in examples))
    n = len(examples)
    stories = np.zeros((n, slots, width), dtype=np.int64)
    queries = np.zeros((n, width), dtype=np.int64)
    supporting = np.zeros((n, slots), dtype=bool)
    for row, (ex, story) in enumerate(zip(examples, kept, strict=True)):
        for slot, sentence in enumerate(story):
            stories[row, slot, :len(sentence)] = vocab.ids(sentence)
        queries[row, :len(ex.question)] = vocab.ids(ex.question)
        offset = len(ex.story) - len(story)
        for fact in ex.supporting:
            if fact >= offset:
                supporting[row, fact - offset] = True
    return EncodedSet(
        stories=torch.from_numpy(stories), lengths=torch.tensor([len(s) for s in kept]),
        queries=torch.from_numpy(queries),
        answers=torch.tensor([vocab.index[ex.answer] for ex in examples]),
        tasks=torch.tensor([ex.task for ex in examples]),
        supporting=torch.from_numpy(supporting))


def position_encoding(words: torch.Tensor, dim: int) -> torch.Tensor:
    """Position encoding of Sukhbaatar et al. (2015), section 4.1, per sentence.

    ``l[k, j] = (1 - j / J) - (k / d) (1 - 2 j / J)`` for word ``j = 1..J`` of a sentence of
    ``J`` words and embedding coordinate ``k = 1..d``; padding words get 0.

    Args:
        words: ``(..., Jmax)`` word ids, 0 = padding (words first, padding at the end).
        dim: the embedding size ``d``.

    Returns:
        ``(..., Jmax, d)`` float weights to multiply the word embeddings by.
    """
    check_int(dim, "dim", minimum=1)
    count = (words != 0).sum(-1, keepdim=True).clamp(min=1).float()  # (..., 1) = J
    j = torch.arange(1, words.shape[-1] + 1, dtype=torch.float32)  # (Jmax,)
    frac = (j / count)[..., None]  # (..., Jmax, 1) = j / J
    k = torch.arange(1, dim + 1, dtype=torch.float32) / dim  # (d,) = k / d
    weights = (1 - frac) - k * (1 - 2 * frac)  # (..., Jmax, d)
    return weights * (words != 0)[..., None]
