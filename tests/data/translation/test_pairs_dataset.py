"""The pair-identification dataset: overlap words, hard negatives (the best overlap, never the
true pair nor a translation of the same message, deterministic, inside the split and the
block) and balanced examples."""

from __future__ import annotations

import pytest

from attnkit.data.translation.pairs import (
    PairExample,
    fold,
    hard_negatives,
    make_examples,
    overlap_words,
)
from attnkit.data.translation.split import split_pairs

PAIRS = [
    ("Open the file", "Ouvrir le fichier"),  # 0
    ("Open the folder", "Ouvrir le dossier"),  # 1: shares 2 of 4 words with 0
    ("Close the window now", "Fermer la fenêtre maintenant"),  # 2: shares nothing with 0, 1
    ("Close the window", "Fermer la fenêtre"),  # 3: 3 of 4 words with 2
    ("_Open the file", "_Ouvrir le fichier"),  # 4: the same message as 0 (folds alike)
]


def test_overlap_words_lower_cases_and_keeps_placeholders_whole():
    assert overlap_words("Copier %s vers {dest} : 3 Fichiers") == \
        frozenset({"copier", "%s", "vers", "{dest}", "3", "fichiers"})
    assert overlap_words("%1$d élément(s)") == frozenset({"%1$d", "élément", "s"})
    with pytest.raises(TypeError, match="text"):
        overlap_words(3)


def test_fold_ignores_case_punctuation_and_accelerators():
    assert fold("_Fichier…") == fold("fichier") == "fichier"
    assert fold("1 fichier") != fold("2 fichiers")


def test_negative_has_the_highest_overlap_and_is_never_the_same_message():
    negatives = hard_negatives(PAIRS)
    assert negatives[0] == 1  # 4 would overlap fully, but it is the same message
    assert negatives[4] == 1
    assert negatives[1] == 0  # ties between 0 and 4 (both 2/4) go to the lowest index
    assert negatives[2] == 3 and negatives[3] == 2
    for i, j in enumerate(negatives):
        assert j != i and fold(PAIRS[j][1]) != fold(PAIRS[i][1])
        assert fold(PAIRS[j][0]) != fold(PAIRS[i][0])


def test_negatives_are_deterministic_and_stay_in_their_block():
    assert hard_negatives(PAIRS) == hard_negatives(list(PAIRS))
    by_block = hard_negatives(PAIRS, block=2)
    assert by_block[:2] == [1, 0] and by_block[2:4] == [3, 2]
    assert by_block[4] == -1  # a block of one pair has no candidate
    with pytest.raises(ValueError, match="block"):
        hard_negatives(PAIRS, block=1)


def test_a_pool_of_one_message_gives_no_examples():
    assert hard_negatives([PAIRS[0], PAIRS[4]]) == [-1, -1]
    assert make_examples([PAIRS[0], PAIRS[4]]) == []


def test_examples_are_balanced_and_the_negative_is_never_the_true_pair():
    examples = make_examples(PAIRS)
    assert len(examples) == 2 * len(PAIRS)
    assert sum(e.label for e in examples) == len(PAIRS)
    for pos, neg in zip(examples[0::2], examples[1::2], strict=True):
        assert isinstance(pos, PairExample)
        assert pos.label == 1 and (pos.english, pos.french) == PAIRS[pos.pair]
        assert pos.partner == pos.pair
        assert neg.label == 0 and neg.english == pos.english and neg.pair == pos.pair
        assert neg.partner != neg.pair and neg.french == PAIRS[neg.partner][1]
        assert neg.french != pos.french


def test_negatives_come_from_the_same_split():
    nouns = ["file", "folder", "window", "picture", "message", "page", "tab", "link"]
    verbs = ["Open", "Close", "Delete", "Save", "Print", "Rename", "Copy", "Move"]
    french = {"file": "fichier", "folder": "dossier", "window": "fenêtre", "picture": "image",
              "message": "message", "page": "page", "tab": "onglet", "link": "lien",
              "Open": "Ouvrir", "Close": "Fermer", "Delete": "Supprimer",
              "Save": "Enregistrer", "Print": "Imprimer", "Rename": "Renommer",
              "Copy": "Copier", "Move": "Déplacer"}
    tags = [a + b for a in "abcdefgh" for b in "pqrst"]  # split keys fold digits, not letters
    pairs = [(f"{v} the {n} named {t}", f"{french[v]} le {french[n]} nommé {t}")
             for v in verbs for n in nouns for t in tags]
    splits = split_pairs(pairs)
    assert all(len(rows) >= 2 for rows in splits.values())
    for rows in splits.values():
        own = {fr for _, fr in rows}
        for example in make_examples(rows, block=512):
            assert example.french in own
            assert (example.french == rows[example.pair][1]) == (example.label == 1)
