"""The longrange data: real English text from the gettext corpus, as characters, and the
copy and reverse transductions over windows of it.

Text. The English side of each split of :func:`attnkit.data.load_corpus` ("fr": the English
message ids of gettext catalogs) is read in the split's order and joined into one stream,
each sentence followed by one space. A *window* of length ``L`` starts at the first
character of a sentence and takes the next ``L`` characters, running on into the following
sentences (and around to the start of the split at its end): most sentences are shorter than
the long windows (44 characters on average), so long sources are consecutive real sentences,
cut at the window's end (possibly inside a word). Training windows come from the train
split, validation windows from valid, the reported figures from test.

Tokens are characters: the ``max_vocab`` most frequent characters of the train split (ids
from 4; 0-3 are PAD, BOS, EOS, UNK as in :mod:`attnkit.data`), every other character is UNK.
A character vocabulary keeps the output layer small and makes lengths of 5 to 100 tokens
ordinary sentences rather than paragraphs of BPE tokens.

Tasks, for a source ``x_0 .. x_{L-1}``: ``copy`` outputs ``x_0 .. x_{L-1}``, ``reverse``
outputs ``x_{L-1} .. x_0``; the decoder input is BOS + output and the target output + EOS.

Distance. Output token ``i`` (0-based) copies source token ``j`` (``j = i`` for copy,
``L - 1 - i`` for reverse). Laid out as one sequence (source, then output, as a recurrent
model reads and writes them), the two are ``d = (L - j) + i`` steps apart: what a model has to
carry the token across. Copy has ``d = L`` for every token; reverse has ``d = 2 i + 1``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnkit._validate import check_choice, check_int
from attnkit.data import BOS_ID, EOS_ID, PAD_ID, UNK_ID

__all__ = ["CharVocabulary", "TextStream", "TaskBatches", "Example", "target_of",
           "source_index", "copy_distance", "buckets", "bucket_label", "bucket_index",
           "make_examples", "collate", "task_batch", "pad_mask", "FIRST_ID"]

FIRST_ID = 4  # ids 0-3 are PAD, BOS, EOS, UNK
TASK_NAMES = ("copy", "reverse")

# Bucket edges shared by source lengths and distances: [edge_k, edge_{k+1} - 1].
_EDGES = (1, 5, 10, 20, 30, 40, 60, 80, 100, 120, 150, 200, 300, 500, 1000, 2000, 4000)


class CharVocabulary:
    """Characters -> ids: ``chars[k]`` has id ``FIRST_ID + k``; any other character is UNK.

    Args:
        chars: distinct single characters, most frequent first.
    """

    def __init__(self, chars: Sequence[str]) -> None:
        if isinstance(chars, str) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise TypeError("chars: expected a list of single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("chars: characters must be distinct")
        self.chars = list(chars)
        self._ids = {c: FIRST_ID + k for k, c in enumerate(self.chars)}

    @classmethod
    def from_texts(cls, texts: Iterable[str], max_size: int) -> CharVocabulary:
        """The ``max_size`` most frequent characters of ``texts``, each followed by a space as
        in :class:`TextStream` (ties: by code point)."""
        check_int(max_size, "max_size", minimum=1)
        counts = Counter()
        for text in texts:
            counts.update(text + " ")  # as in the stream: each sentence and its separator
        ranked = sorted(counts, key=lambda c: (-counts[c], c))
        return cls(ranked[:max_size])

    @property
    def vocab_size(self) -> int:
        return FIRST_ID + len(self.chars)

    def encode(self, text: str) -> list[int]:
        return [self._ids.get(c, UNK_ID) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; UNK shows as U+FFFD, PAD/BOS/EOS are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i >= FIRST_ID:
                out.append(self.chars[i - FIRST_ID])
            elif i == UNK_ID:
                out.append("\ufffd")
        return "".join(out)


class TextStream:
    """One split's sentences as a cyclic stream of ids and the offsets where sentences start.

    Args:
        sentences: the split's English sentences, in order (at least one non-empty).
        vocab: the character vocabulary.
    """

    def __init__(self, sentences: Sequence[str], vocab: CharVocabulary) -> None:
        if not isinstance(vocab, CharVocabulary):
            raise TypeError(f"vocab: expected a CharVocabulary, got {type(vocab).__name__}")
        ids, starts = [], []
        for sentence in sentences:
            if not sentence:
                continue
            starts.append(len(ids))
            ids += vocab.encode(sentence + " ")
        if not starts:
            raise ValueError("sentences: expected at least one non-empty sentence")
        self.ids = np.asarray(ids, dtype=np.int64)  # (N,)
        self.starts = np.asarray(starts, dtype=np.int64)  # (sentences,)

    def __len__(self) -> int:
        return len(self.ids)

    def windows(self, starts: np.ndarray, length: int) -> np.ndarray:
        """``(R, length)`` ids: row ``r`` is the stream from offset ``starts[r]`` on (cyclic)."""
        check_int(length, "length", minimum=1)
        offsets = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(length)  # (R, L)
        return self.ids[offsets % len(self.ids)]

    def random_windows(self, rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
        """``(rows, length)`` windows starting at sentence starts drawn by ``rng``."""
        return self.windows(rng.choice(self.starts, size=rows), length)


def target_of(source: Sequence[int] | np.ndarray, task: str) -> list[int]:
    """The output a task asks for: ``source`` (copy) or ``source`` reversed (reverse)."""
    check_choice(task, "task", TASK_NAMES)
    source = [int(t) for t in source]
    return source if task == "copy" else source[::-1]


def source_index(task: str, position: int, length: int) -> int:
    """The source position output token ``position`` copies (module docstring)."""
    check_choice(task, "task", TASK_NAMES)
    check_int(length, "length", minimum=1)
    check_int(position, "position", minimum=0, maximum=length - 1)
    return position if task == "copy" else length - 1 - position


def copy_distance(task: str, position: int, length: int) -> int:
    """``d = (L - j) + i``: steps between source token ``j`` and output token ``i`` copying
    it, with source and output laid out as one sequence (module docstring)."""
    return length - source_index(task, position, length) + position


def buckets(low: int, high: int) -> list[tuple[int, int]]:
    """Contiguous inclusive buckets covering ``[low, high]`` on fixed edges (1, 5, 10, 20, 30,
    40, 60, 80, 100, 120, 150, 200, ...); a last bucket under half its neighbour's width is
    merged into it (so 5..100 gives ..., 80-100, not 80-99 and 100-100)."""
    check_int(low, "low", minimum=1)
    check_int(high, "high", minimum=low)
    out = []
    for a, b in zip(_EDGES, _EDGES[1:], strict=False):
        lo, hi = max(a, low), min(b - 1, high)
        if lo <= hi:
            out.append((lo, hi))
    if high >= _EDGES[-1]:
        out.append((max(_EDGES[-1], low), high))
    if len(out) > 1 and (out[-1][1] - out[-1][0] + 1) * 2 < out[-2][1] - out[-2][0] + 1:
        out[-2:] = [(out[-2][0], out[-1][1])]
    return out


def bucket_label(bucket: tuple[int, int]) -> str:
    lo, hi = bucket
    return str(lo) if lo == hi else f"{lo}-{hi}"


def bucket_index(value: int, bucket_list: Sequence[tuple[int, int]]) -> int:
    """The index of the bucket holding ``value`` (ValueError if none does)."""
    for k, (lo, hi) in enumerate(bucket_list):
        if lo <= value <= hi:
            return k
    raise ValueError(f"value: {value} lies in no bucket of {list(bucket_list)}")


@dataclass
class Example:
    """One test or validation example: ``source`` and ``target`` id lists (no specials)."""

    source: list[int]
    target: list[int]


def make_examples(stream: TextStream, lengths: Iterable[int], per_length: int, task: str, *,
                  seed: int) -> list[Example]:
    """``per_length`` windows of every length in ``lengths`` with their ``task`` targets;
    the same examples for the same arguments."""
    check_int(per_length, "per_length", minimum=1)
    check_int(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    out = []
    for length in lengths:
        for row in stream.random_windows(rng, per_length, int(length)):
            out.append(Example(source=row.tolist(), target=target_of(row, task)))
    return out


def collate(examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """A padded batch: ``src (B, S)``, ``src_lengths (B,)``, ``tgt_in (B, T + 1)`` (BOS +
    target), ``tgt_out (B, T + 1)`` (target + EOS), PAD elsewhere."""
    if not examples:
        raise ValueError("examples: expected at least one")
    width = max(len(e.source) for e in examples)
    tgt_width = max(len(e.target) for e in examples) + 1
    src = torch.full((len(examples), width), PAD_ID, dtype=torch.long)
    tgt_in = torch.full((len(examples), tgt_width), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((len(examples), tgt_width), PAD_ID, dtype=torch.long)
    for r, e in enumerate(examples):
        src[r, :len(e.source)] = torch.tensor(e.source)
        tgt_in[r, :len(e.target) + 1] = torch.tensor([BOS_ID, *e.target])
        tgt_out[r, :len(e.target) + 1] = torch.tensor([*e.target, EOS_ID])
    lengths = torch.tensor([len(e.source) for e in examples], dtype=torch.long)
    return {"src": src, "src_lengths": lengths, "tgt_in": tgt_in, "tgt_out": tgt_out}


def task_batch(windows: np.ndarray, task: str) -> dict[str, torch.Tensor]:
    """The batch of equal-length ``windows (R, L)``: ``src (R, L)``, ``src_lengths (R,)``,
    ``tgt_in``/``tgt_out (R, L + 1)``."""
    check_choice(task, "task", TASK_NAMES)
    src = torch.from_numpy(np.ascontiguousarray(windows))  # (R, L)
    target = src if task == "copy" else src.flip(1)  # (R, L)
    rows = src.shape[0]
    bos = torch.full((rows, 1), BOS_ID, dtype=torch.long)
    eos = torch.full((rows, 1), EOS_ID, dtype=torch.long)
    return {"src": src, "src_lengths": torch.full((rows,), src.shape[1], dtype=torch.long),
            "tgt_in": torch.cat([bos, target], 1), "tgt_out": torch.cat([target, eos], 1)}


class TaskBatches:
    """Training batches as a ``batch_fn(index, rank, world_size)`` for
    :class:`attnkit.train.Trainer`: batch ``index`` draws one source length uniformly from
    ``[min_len, max_len]`` and ``max_tokens // length`` windows of it (so every batch holds
    about ``max_tokens`` source tokens and no padding), deterministically in
    ``(seed, index)``. Process ``rank`` of ``world_size`` gets rows ``rank::world_size``.
    """

    def __init__(self, stream: TextStream, task: str, *, min_len: int, max_len: int,
                 max_tokens: int, seed: int) -> None:
        check_choice(task, "task", TASK_NAMES)
        check_int(min_len, "min_len", minimum=1)
        check_int(max_len, "max_len", minimum=min_len)
        check_int(max_tokens, "max_tokens", minimum=max_len)
        check_int(seed, "seed", minimum=0)
        self.stream, self.task = stream, task
        self.min_len, self.max_len, self.max_tokens, self.seed = min_len, max_len, max_tokens, seed

    def __call__(self, index: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        check_int(index, "index", minimum=0)
        rng = np.random.default_rng([self.seed, index])
        length = int(rng.integers(self.min_len, self.max_len + 1))
        rows = self.max_tokens // length
        windows = self.stream.random_windows(rng, rows, length)[rank::world_size]
        return task_batch(windows, self.task)


def pad_mask(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(B, T + 1)`` bool: True where ``tgt_out`` is a real target token (not EOS, not PAD)."""
    out = batch["tgt_out"]
    return (out != PAD_ID) & (out != EOS_ID)
