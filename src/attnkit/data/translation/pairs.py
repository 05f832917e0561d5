"""Translation-pair identification from the gettext corpus: is this French a translation of
this English? Real pairs are the positives; each English sentence also gets one hard negative.

The task is the pair-classification setting of decomposable attention (Parikh, Täckström,
Das and Uszkoreit 2016, arXiv:1606.01933), moved from entailment (SNLI, which has no offline
copy here) to bilingual pairs built from :func:`attnkit.data.load_corpus` ("fr").

Hard negative of pair ``i`` (``english_i``, ``french_i``): the French side ``french_j`` of
another pair ``j`` **of the same split** with the highest word overlap with ``french_i``, the
right answer:

- words (:func:`overlap_words`): the set of lower-cased ``\\w+`` runs and printf/brace
  placeholders (``%s``, ``%1$d``, ``{name}``) of a text;
- overlap: Jaccard ``|W(french_i) & W(french_j)| / |W(french_i) | W(french_j)|``; ties go to
  the lowest ``j`` in the split's hash order (so the choice is deterministic and unbiased);
- never a translation of the same message: ``j`` is skipped when its English or its French
  folds (:func:`fold`: lower case, letters and digits only) to the same text as pair ``i``'s;
- valid and test are searched whole; train in blocks of :data:`TRAIN_BLOCK` consecutive pairs
  of its hash order (each block a fair sample), about as many as valid and test hold, so the
  negatives are equally hard in every split: the best of 4,096 candidates overlaps the true
  French more (mean Jaccard 0.34 on the FR corpus) than the best of valid's 614 (0.24).

Why overlap with ``french_i`` and not with ``english_i``: English and French share only
names, numbers, placeholders and loan words (``%s``, ``GIMP``, ``URL``), so an EN-FR overlap is
zero for most pairs and picks an arbitrary negative. Since ``french_i`` carries those same
shared tokens, the FR-FR overlap picks negatives that keep them *and* read like the right
answer ("Ouvrir le dossier" against "Ouvrir le fichier"), so neither a placeholder check nor
a bag of words separates the classes; what is left is to align the words.

Each English sentence gives one positive and one negative, so the classes are balanced.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from attnkit._validate import check_int

__all__ = ["TRAIN_BLOCK", "PairExample", "overlap_words", "fold", "hard_negatives",
           "make_examples"]

TRAIN_BLOCK = 640  # candidate pool of a train pair: its block of the train split's hash order

_WORD = re.compile(r"%(?:\d+\$)?[-+ #0]*\d*(?:\.\d+)?[a-zA-Z]|\{[^{}\s]*\}|\w+")


@dataclass(frozen=True)
class PairExample:
    """One classification example: ``english`` with ``french``; ``label`` 1 for the real pair.
    ``pair`` is the index of the English side's pair in its split, ``partner`` the index of the
    pair the French side comes from (equal to ``pair`` for a positive)."""

    english: str
    french: str
    label: int
    pair: int
    partner: int


def overlap_words(text: str) -> frozenset[str]:
    """The words a text is compared by: lower-cased ``\\w+`` runs and placeholders
    (``%s``, ``%1$d``, ``%.2f``, ``{name}``) as whole tokens."""
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    return frozenset(_WORD.findall(text.lower()))


def fold(text: str) -> str:
    """``text`` lower-cased with letters and digits only: messages that differ only by case,
    punctuation, spacing or an accelerator mark (``_Fichier``) fold alike."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _block_negatives(french: Sequence[str], english: Sequence[str]) -> list[int]:
    """Best partner (index into the block) of each pair of one block, -1 if none is allowed."""
    n = len(french)
    vocab: dict[str, int] = {}
    rows: list[int] = []
    cols: list[int] = []
    for i, text in enumerate(french):
        for word in overlap_words(text):
            rows.append(i)
            cols.append(vocab.setdefault(word, len(vocab)))
    if n < 2:
        return [-1] * n
    index = torch.tensor([rows, cols], dtype=torch.long).reshape(2, -1)
    with warnings.catch_warnings():  # torch's notes that sparse support is in beta
        warnings.simplefilter("ignore", UserWarning)
        words = torch.sparse_coo_tensor(index, torch.ones(len(rows)),
                                        (n, max(len(vocab), 1)), check_invariants=True)
        inter = torch.sparse.mm(words, words.t().coalesce()).to_dense()  # (n, n) shared
    size = torch.bincount(torch.tensor(rows, dtype=torch.long), minlength=n).float()  # (n,)
    union = (size[:, None] + size[None, :] - inter).clamp_min(1.0)
    jaccard = inter / union  # (n, n), in [0, 1]
    # forbidden: itself, and any pair that is a translation of the same message
    same = torch.eye(n, dtype=torch.bool)
    for keys in ([fold(t) for t in french], [fold(t) for t in english]):
        groups: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            groups.setdefault(key, []).append(i)
        for members in groups.values():
            if len(members) > 1:
                idx = torch.tensor(members)
                same[idx[:, None], idx[None, :]] = True
    jaccard = jaccard.masked_fill(same, -1.0)
    best = jaccard.argmax(dim=1)  # the first maximum: the lowest index among ties
    allowed = jaccard.gather(1, best[:, None]).squeeze(1) >= 0
    return [int(j) if ok else -1 for j, ok in zip(best.tolist(), allowed.tolist(), strict=True)]


def hard_negatives(pairs: Sequence[tuple[str, str]], *, block: int | None = None) -> list[int]:
    """For each pair ``i``, the index ``j != i`` of the pair whose French side is its hard
    negative (see the module docstring), or -1 when its pool holds no allowed pair.

    Args:
        pairs: N ``(english, french)`` pairs of one split, in the split's order.
        block: search pools of this many consecutive pairs (None: the whole list).

    Returns:
        N indices into ``pairs``.
    """
    if block is not None:
        check_int(block, "block", minimum=2)
    size = len(pairs) if block is None else block
    out: list[int] = []
    for start in range(0, len(pairs), max(size, 1)):
        chunk = pairs[start:start + size]
        best = _block_negatives([p[1] for p in chunk], [p[0] for p in chunk])
        out += [start + j if j >= 0 else -1 for j in best]
    return out


def make_examples(pairs: Sequence[tuple[str, str]], *, block: int | None = None
                  ) -> list[PairExample]:
    """The balanced examples of one split: for each pair with an allowed negative, its
    positive then its negative (pairs without one are left out, with their positive).

    Args:
        pairs: N ``(english, french)`` pairs of one split.
        block: as in :func:`hard_negatives` (:data:`TRAIN_BLOCK` for train).
    """
    examples: list[PairExample] = []
    for i, j in enumerate(hard_negatives(pairs, block=block)):
        if j < 0:
            continue
        english, french = pairs[i]
        examples.append(PairExample(english, french, 1, i, i))
        examples.append(PairExample(english, pairs[j][1], 0, i, j))
    return examples
