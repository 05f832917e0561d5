"""The train/valid/test split: a hash of the English text, so it never depends on order.

:func:`split_of` hashes a folded form of the English side (:func:`split_key`: lower case,
digit runs as ``0``, no punctuation) into one of 10,000 buckets: 1% test, 1% valid, the
rest train. Messages that differ only by case, numbers or punctuation (``"1 file
selected"``, ``"2 files selected."``) share a split, so the test set holds no near-copies
of training pairs, and adding catalogs never moves an existing pair to another split.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from attnkit.data.translation.normalize import collapse_spaces

__all__ = ["SPLITS", "SPLIT_BUCKETS", "TEST_BUCKETS", "VALID_BUCKETS", "split_key", "split_of",
           "split_pairs"]

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
