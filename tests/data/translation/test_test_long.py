"""test-long: the length-stratified test set carved out of the train split by a salted hash."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from attnkit.data import CorpusNotFoundError, load_corpus
from attnkit.data.translation.corpus import ParallelCorpus
from attnkit.data.translation.split import (
    SPLIT_BUCKETS,
    TEST_LONG_BUCKETS,
    TEST_LONG_MIN_SENTENCES,
    TEST_LONG_RATES,
    in_test_long,
    length_bucket,
    split_key,
    split_of,
    split_pairs,
    split_test_long,
)

WORDS = ("open close file folder window message picture document save print rename the "
         "selected current new old list menu from to in on of with and or not now later "
         "again first last next previous user system network device settings").split()


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize()


def synthetic_pairs(count: int, low: int, high: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` distinct (english, "fr") pairs of ``low``-``high`` English words."""
    rng = random.Random(seed)
    seen: dict[str, tuple[str, str]] = {}
    while len(seen) < count:
        english = sentence(rng, rng.randint(low, high))
        seen.setdefault(split_key(english), (english, f"fr {english.lower()}"))
    return list(seen.values())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> ParallelCorpus:
    """A corpus of short and long pairs, split by the real hash split."""
    pairs = (synthetic_pairs(400, 3, 12, seed=1) + synthetic_pairs(900, 13, 20, seed=2)
             + synthetic_pairs(700, 21, 30, seed=3) + synthetic_pairs(600, 31, 50, seed=4))
    splits = split_pairs(pairs)
    return ParallelCorpus(path=tmp_path_factory.mktemp("corpus"), lang="fr", manifest={},
                          **splits)


def test_test_long_is_carved_out_of_train_only(corpus):
    kept = corpus.split("train", hold_out_long=True)
    held = corpus.split("test-long")
    assert held and kept
    assert Counter(kept) + Counter(held) == Counter(corpus.train)  # each pair exactly once
    assert all(in_test_long(english) for english, _ in held)
    assert not any(in_test_long(english) for english, _ in kept)
    for name in ("valid", "test"):  # the other splits are untouched and never selected
        assert corpus.split(name, hold_out_long=True) is getattr(corpus, name)
        assert not any(in_test_long(english) for english, _ in getattr(corpus, name))
    keys = {split_key(english) for english, _ in held}
    others = kept + corpus.valid + corpus.test
    assert not keys & {split_key(english) for english, _ in others}
    assert corpus.split("train") is corpus.train  # the default stream is the whole split
    assert [p for p in corpus.train if not in_test_long(p[0])] == kept  # train's order kept


def test_near_copies_go_together():
    rng = random.Random(7)
    base = [sentence(rng, n) for n in range(13, 51) for _ in range(20)]
    variants = {english: [english, english.upper() + "!", english.replace(" ", ", ", 1) + "...",
                          english + " 12", english + " 345"] for english in base}
    for english, family in variants.items():
        assert len({split_key(v) for v in family[:3]}) == 1
        assert split_key(family[3]) == split_key(family[4]) != split_key(english)
        assert len({in_test_long(v) for v in family[:3]}) == 1
        assert in_test_long(family[3]) == in_test_long(family[4])


def test_selection_is_deterministic_and_order_free(corpus):
    shuffled = list(corpus.train)
    random.Random(3).shuffle(shuffled)
    kept_a, held_a = split_test_long(corpus.train)
    kept_b, held_b = split_test_long(shuffled)
    assert held_a == held_b  # hash order whatever the input order
    assert sorted(kept_a) == sorted(kept_b) and kept_b == [p for p in shuffled
                                                           if not in_test_long(p[0])]
    assert split_test_long([]) == ([], [])


def test_short_keys_valid_and_test_pairs_are_never_selected():
    short = synthetic_pairs(3000, 3, 12, seed=11)
    assert not any(in_test_long(english) for english, _ in short)
    long = synthetic_pairs(3000, 31, 50, seed=12)
    assert not any(in_test_long(english) for english, _ in long if split_of(english) != "train")


def test_each_stratum_is_selected_at_its_rate():
    """The share selected per stratum is the rate within five binomial deviations."""
    for (low, high), rate in TEST_LONG_RATES.items():
        pairs = [p for p in synthetic_pairs(4000, low, high, seed=low)
                 if split_of(p[0]) == "train" and len(split_key(p[0]).split()) == len(p[0].split())]
        chosen = sum(in_test_long(english) for english, _ in pairs)
        share = rate / SPLIT_BUCKETS
        spread = 5 * math.sqrt(len(pairs) * share * (1 - share))
        assert abs(chosen - len(pairs) * share) <= spread, (low, high, chosen, len(pairs))


def test_counts_are_what_the_split_holds(corpus):
    counts = corpus.test_long_counts()
    held = corpus.split("test-long")
    assert counts["pairs"] == len(held)
    assert counts["train_kept"] == len(corpus.train) - len(held)
    assert sum(counts["by_length"].values()) + counts["outside"] == counts["pairs"]
    for (low, high) in TEST_LONG_BUCKETS:
        name = f"{low}-{high}"
        expected = sum(low <= len(english.split()) <= high for english, _ in held)
        assert counts["by_length"][name] == expected
        assert (name in counts["short"]) == (expected < TEST_LONG_MIN_SENTENCES)
    assert counts["rates"] == {f"{lo}-{hi}": r / SPLIT_BUCKETS
                               for (lo, hi), r in TEST_LONG_RATES.items()}
    assert length_bucket(12) is None and length_bucket(13) == (13, 20)
    assert length_bucket(50) == (31, 50) and length_bucket(51) is None


def test_split_arguments_are_checked(corpus):
    with pytest.raises(ValueError, match="name"):
        corpus.split("test_long")
    with pytest.raises(TypeError, match="hold_out_long"):
        corpus.split("train", hold_out_long="yes")


def test_hold_out_tokenizer_is_trained_without_test_long(corpus, monkeypatch):
    import attnkit.data.tokenizer as tokenizer_module

    seen = {}
    real = tokenizer_module.train_tokenizer

    def spy(texts, **kwargs):
        seen["texts"] = list(texts)
        return real(seen["texts"], **kwargs)

    monkeypatch.setattr(tokenizer_module, "train_tokenizer", spy)
    corpus.tokenizer(vocab_size=300, hold_out_long=True)
    path = corpus.tokenizer_path(300, hold_out_long=True)
    assert path.name == "tokenizer-300-hold-out-long.json" and path.is_file()
    assert not corpus.tokenizer_path(300).exists()  # the main job's tokenizer is another file
    held_text = {text for pair in corpus.split("test-long") for text in pair}
    assert seen["texts"] and not held_text & set(seen["texts"])
    assert path not in corpus.tokenizer_paths()  # the by-size listing holds plain ones only


def test_real_corpus_has_250_per_stratum():
    """On the cached EN->FR corpus (when `attnkit data fetch --lang fr` has run)."""
    try:
        real = load_corpus("fr", verify=False)
    except CorpusNotFoundError:
        pytest.skip("no cached EN->FR corpus")
    counts = real.test_long_counts()
    available = Counter(length_bucket(len(english.split())) for english, _ in real.train)
    for (low, high) in TEST_LONG_BUCKETS:
        if available[(low, high)] >= 2 * TEST_LONG_MIN_SENTENCES:
            assert counts["by_length"][f"{low}-{high}"] >= TEST_LONG_MIN_SENTENCES
    held_keys = {split_key(english) for english, _ in real.split("test-long")}
    kept = real.split("train", hold_out_long=True)
    assert not held_keys & {split_key(english) for english, _ in kept + real.valid + real.test}
