"""Token-budget batches of a parallel split (a character tokenizer, no training needed)."""

from __future__ import annotations

import random

import pytest
import torch

from attnkit.data import BOS_ID, EOS_ID, PAD_ID, TranslationBatches


class CharTokenizer:
    """One token per character (ids >= 4), enough to test batching without training."""

    def encode_batch(self, texts):
        return [[4 + ord(ch) % 60 for ch in text] for text in texts]


def pairs_for_batches(n=300, seed=0):
    rng = random.Random(seed)
    return [("s" * rng.randint(1, 40), "t" * rng.randint(1, 40)) for _ in range(n)]


def rows(batch):
    """Each row's (source ids, target ids) without padding."""
    out = []
    for src, length, tgt in zip(batch["src"], batch["src_lengths"], batch["tgt_out"],
                                strict=True):
        target = tgt[tgt != PAD_ID].tolist()
        out.append((tuple(src[:length].tolist()), tuple(target[:-1])))
    return out


def test_batches_layout_and_budget():
    batches = TranslationBatches(pairs_for_batches(), CharTokenizer(), max_tokens=200,
                                 max_len=64)
    seen = 0
    for step in range(len(batches)):
        batch = batches(step)
        src, lengths, tgt_in, tgt_out = (batch[k] for k in ("src", "src_lengths", "tgt_in",
                                                             "tgt_out"))
        assert src.dtype == tgt_in.dtype == tgt_out.dtype == lengths.dtype == torch.long
        assert tgt_in.shape == tgt_out.shape and src.shape[0] == tgt_in.shape[0]
        assert src.shape[0] * max(src.shape[1], tgt_in.shape[1]) <= 200
        assert src.shape[1] == int(lengths.max())
        for row in range(src.shape[0]):
            n = int(lengths[row])
            assert (src[row, :n] != PAD_ID).all() and (src[row, n:] == PAD_ID).all()
            target_len = int((tgt_out[row] != PAD_ID).sum())
            assert tgt_in[row, 0] == BOS_ID and tgt_out[row, target_len - 1] == EOS_ID
            assert torch.equal(tgt_in[row, 1:target_len], tgt_out[row, :target_len - 1])
            assert (tgt_in[row, target_len:] == PAD_ID).all()
        seen += src.shape[0]
    assert seen == batches.num_pairs == 300 and batches.num_dropped == 0


def test_batches_are_deterministic_and_reshuffled_per_epoch():
    pairs = pairs_for_batches()
    a = TranslationBatches(pairs, CharTokenizer(), max_tokens=200, seed=3)
    b = TranslationBatches(pairs, CharTokenizer(), max_tokens=200, seed=3)
    n = len(a)
    for step in [0, 5, n - 1, n, 3 * n + 2]:
        assert all(torch.equal(a(step)[k], b(step)[k]) for k in a(step))
    first = [tuple(a.batch_rows(s)) for s in range(n)]
    second = [tuple(a.batch_rows(s)) for s in range(n, 2 * n)]
    assert sorted(first) == sorted(second) and first != second
    other = TranslationBatches(pairs, CharTokenizer(), max_tokens=200, seed=4)
    assert [tuple(other.batch_rows(s)) for s in range(n)] != first


def test_rank_slices_are_disjoint_and_cover_the_global_batch():
    batches = TranslationBatches(pairs_for_batches(), CharTokenizer(), max_tokens=400)
    for step in range(6):
        whole = rows(batches(step))
        for world_size in (2, 3):
            parts = [rows(batches(step, rank, world_size)) for rank in range(world_size)]
            assert [r for part in parts for r in part] == whole
            assert all(parts)


def test_long_pairs_are_dropped_and_counted():
    pairs = [("s" * 10, "t" * 10), ("s" * 30, "t" * 5), ("s" * 5, "t" * 20)]
    batches = TranslationBatches(pairs, CharTokenizer(), max_tokens=100, max_len=20)
    assert batches.num_dropped == 2 and batches.num_pairs == 1
    assert TranslationBatches(pairs, CharTokenizer(), max_tokens=100,
                              max_len=None).num_dropped == 0


def test_batches_bad_arguments():
    pairs = pairs_for_batches(20)
    with pytest.raises(ValueError, match="max_tokens"):
        TranslationBatches(pairs, CharTokenizer(), max_tokens=0)
    with pytest.raises(ValueError, match="max_len"):
        TranslationBatches(pairs, CharTokenizer(), max_tokens=64, max_len=65)
    with pytest.raises(ValueError, match="pairs"):
        TranslationBatches([], CharTokenizer())
    batches = TranslationBatches(pairs, CharTokenizer(), max_tokens=64, max_len=64)
    with pytest.raises(ValueError, match="rank"):
        batches(0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="step"):
        batches(-1)
    with pytest.raises(ValueError, match="world_size"):
        batches(0, rank=0, world_size=100)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"pairs": ["ab", "cd"]}, TypeError, r"pairs\[0\]: expected a \(source, target\) pair"),
    ({"pairs": [("a", 1)]}, TypeError, r"pairs\[0\]"),
    ({"max_tokens": True}, TypeError, "max_tokens must be an int"),
    ({"max_tokens": 64.0}, TypeError, "max_tokens must be an int"),
    ({"max_len": 0}, ValueError, "max_len must be >= 1"),
    ({"seed": -1}, ValueError, "seed must be >= 0"),
])
def test_batches_refuse_malformed_pairs_and_numbers(kwargs, error, match):
    """A list of strings used to be read as pairs of their first two characters."""
    arguments = {"pairs": pairs_for_batches(5), "max_tokens": 256, **kwargs}
    with pytest.raises(error, match=match):
        TranslationBatches(arguments.pop("pairs"), CharTokenizer(), **arguments)
