"""The train/valid/test split: a hash of the English text, so it never depends on order.

:func:`split_of` hashes a folded form of the English side (:func:`split_key`: lower case,
digit runs as ``0``, no punctuation) into one of 10,000 buckets: 1% test, 1% valid, the
rest train. Messages that differ only by case, numbers or punctuation (``"1 file
selected"``, ``"2 files selected."``) share a split, so the test set holds no near-copies
of training pairs, and adding catalogs never moves an existing pair to another split.

``test-long`` (opt-in, see :meth:`attnkit.data.ParallelCorpus.split`) is a length-stratified
test set carved out of the *train* split for the BLEU-by-length statistics: the test split
holds only a few dozen sentences over 20 words, too few for an interval. A second, salted
SHA-256 of the same :func:`split_key` picks a fixed fraction of the train pairs in each
length stratum (:data:`TEST_LONG_RATES`), so membership is a function of the key alone:
near-copies go together, input order never matters, and a run that holds the set out of
training never sees a near-copy of a test-long sentence. The train/valid/test assignment is
unchanged by it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from attnkit.data.translation.normalize import collapse_spaces

__all__ = ["SPLITS", "SPLIT_BUCKETS", "TEST_BUCKETS", "VALID_BUCKETS", "split_key", "split_of",
           "split_pairs", "TEST_LONG", "TEST_LONG_BUCKETS", "TEST_LONG_MIN_SENTENCES",
           "TEST_LONG_RATES", "TEST_LONG_SALT", "in_test_long", "split_test_long",
           "length_bucket"]

SPLITS = ("train", "valid", "test")
SPLIT_BUCKETS = 10_000  # the hash picks one of these; test and valid take 100 each (1%)
TEST_BUCKETS, VALID_BUCKETS = 100, 100


def split_key(english: str) -> str:
    """The text a pair's split is hashed from: lower case, digit runs -> "0", no punctuation."""
    text = re.sub(r"\d+", "0", english.lower())
    text = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text)
    return collapse_spaces(text)


def _bucket(english: str) -> int:
    digest = hashlib.sha256(split_key(english).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % SPLIT_BUCKETS


def split_of(english: str) -> str:
    """"test" (1%), "valid" (1%) or "train", from a SHA-256 of :func:`split_key`."""
    bucket = _bucket(english)
    if bucket < TEST_BUCKETS:
        return "test"
    if bucket < TEST_BUCKETS + VALID_BUCKETS:
        return "valid"
    return "train"


def split_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Split name -> its pairs, each split in hash order (so any prefix of a split is a fair
    sample of it); the same pairs give the same lists whatever their input order."""
    by_split: dict[str, list[tuple[str, str]]] = {name: [] for name in SPLITS}
    for pair in pairs:
        by_split[split_of(pair[0])].append(pair)
    return {name: sorted(rows, key=lambda p: (hashlib.sha256(p[0].encode("utf-8")).digest(), p))
            for name, rows in by_split.items()}


# ---------------------------------------------------------------------------- test-long

TEST_LONG = "test-long"  # the split's name
TEST_LONG_SALT = "attnkit/test-long/v1\x00"  # prefixed to split_key: independent of split_of
#: English-word strata of test-long; the corpus keeps 3-50 words
TEST_LONG_BUCKETS: tuple[tuple[int, int], ...] = ((13, 20), (21, 30), (31, 50))
TEST_LONG_MIN_SENTENCES = 250  # what each stratum should hold where the corpus has enough
#: share of each stratum's train keys held out, in 1/SPLIT_BUCKETS. Chosen from the EN->FR
#: corpus of `attnkit data fetch --lang fr` (train split: 4738, 1623 and 781 pairs of 13-20,
#: 21-30 and 31-50 English words) so that each stratum's expected count minus three
#: binomial standard deviations is still >= 250: 6.5%, 19% and 40% select 326, 278 and 322
#: pairs there, plus 16 whose English word count falls outside 13-50 (942 in all); the 31-50
#: stratum gives up 40% of its training pairs to reach 250.
TEST_LONG_RATES: dict[tuple[int, int], int] = {(13, 20): 650, (21, 30): 1900, (31, 50): 4000}


def length_bucket(words: int, buckets=TEST_LONG_BUCKETS) -> tuple[int, int] | None:
    """The ``(low, high)`` of ``buckets`` holding ``words`` (inclusive bounds), else None."""
    for low, high in buckets:
        if low <= words <= high:
            return low, high
    return None


def _test_long_rate(key: str) -> int:
    """Selection rate of a split key, from the key's own word count (not the English text's,
    which can differ by punctuation), so every pair sharing the key gets the same rate. Keys
    longer than the last stratum use its rate."""
    words = len(key.split())
    last = TEST_LONG_BUCKETS[-1]
    bucket = last if words > last[1] else length_bucket(words)
    return 0 if bucket is None else TEST_LONG_RATES[bucket]


def in_test_long(english: str) -> bool:
    """Whether the pair with this English side belongs to test-long: a train pair (see
    :func:`split_of`) whose salted key hash falls under its stratum's rate. A function of
    :func:`split_key` alone, so valid and test pairs are never in it and near-copies agree.

    The stratum is the key's word count, so a few test-long pairs (about 5% on the FR corpus)
    have an English word count just outside 13-50; they count in test-long's total only.
    """
    key = split_key(english)
    rate = _test_long_rate(key)
    if rate == 0 or split_of(english) != "train":
        return False
    digest = hashlib.sha256((TEST_LONG_SALT + key).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % SPLIT_BUCKETS < rate


def split_test_long(train: Iterable[tuple[str, str]]
                    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Carve test-long out of the train split's pairs.

    Args:
        train: N ``(english, target)`` pairs of the train split.

    Returns:
        ``(kept, test_long)``: the pairs not in test-long, in their input order (the train
        stream of a held-out run), and the test-long pairs in hash order like every split (so
        any prefix is a fair sample). Together they are ``train``, each pair exactly once.
    """
    kept: list[tuple[str, str]] = []
    held: list[tuple[str, str]] = []
    for pair in train:
        (held if in_test_long(pair[0]) else kept).append(pair)
    held.sort(key=lambda p: (hashlib.sha256(p[0].encode("utf-8")).digest(), p))
    return kept, held
