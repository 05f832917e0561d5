"""Joint byte-level BPE tokenizer: specials, round trips, determinism, save/load."""

from __future__ import annotations

import sys
import unicodedata

import pytest

pytest.importorskip("tokenizers")

from attnkit.data.tokenizer import (  # noqa: E402
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    Tokenizer,
    load_tokenizer,
    train_tokenizer,
)
from attnkit.data.translation.normalize import normalize  # noqa: E402

SENTENCES = [
    "Open the selected file", "Ouvrir le fichier sélectionné",
    "Are you sure you want to quit?", "Voulez-vous vraiment quitter ?",
    "The password is incorrect", "Le mot de passe est incorrect",
    "Delete all selected messages", "Supprimer tous les messages sélectionnés",
    "Show hidden files and folders", "Afficher les fichiers et dossiers cachés",
    "Could not connect to the server", "Impossible de se connecter au serveur",
    "L'élève a créé une fenêtre", "Die ausgewählte Datei öffnen",
] * 20 + [f"Page {i} of the document « {i * 7} »" for i in range(60)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(SENTENCES, vocab_size=400)


def test_special_ids(tokenizer):
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert SPECIAL_TOKENS == ("<pad>", "<s>", "</s>", "<unk>")
    for token_id, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.backend.token_to_id(token) == token_id
    assert tokenizer.vocab_size == 400


@pytest.mark.parametrize("text", [
    "Ouvrir le fichier sélectionné", "L'élève a créé une fenêtre « là-bas » !",
    "Voulez-vous vraiment quitter ?", "Il n’y a pas d’œuvre à Noël", "ÇA MARCHE — où ? ÿ",
    "Die ausgewählte Datei öffnen, Straße", "  two  spaces ", "emoji 🙂 and 漢字",
])
def test_round_trip(tokenizer, text):
    ids = tokenizer.encode(text)
    assert all(i > UNK_ID for i in ids)  # byte-level: nothing is unknown
    assert tokenizer.decode(ids) == text


def test_round_trip_after_corpus_normalization(tokenizer):
    text = normalize("Voulez-vous quitter\u202f? Oui\u00a0!")
    assert text == "Voulez-vous quitter ? Oui !"
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_nfc_normalizer(tokenizer):
    decomposed = "cre\u0301e\u0301"
    assert tokenizer.encode(decomposed) == tokenizer.encode(unicodedata.normalize("NFC",
                                                                                  decomposed))
    assert tokenizer.decode(tokenizer.encode(decomposed)) == "créé"


def test_specials_in_text_are_text_and_decode_skips_specials(tokenizer):
    ids = tokenizer.encode("<s> and </s>")
    assert not set(ids) & {PAD_ID, BOS_ID, EOS_ID, UNK_ID}
    assert tokenizer.decode(ids) == "<s> and </s>"
    word = tokenizer.encode("fichier")
    assert tokenizer.decode([BOS_ID, *word, EOS_ID, PAD_ID, PAD_ID]) == "fichier"
    assert tokenizer.tokens([BOS_ID, EOS_ID]) == ["<s>", "</s>"]


def test_learned_merges_make_common_words_short(tokenizer):
    assert len(tokenizer.encode(" fichier")) <= 2
    assert tokenizer.encode_batch(["Ouvrir", "le fichier"]) == [tokenizer.encode("Ouvrir"),
                                                                tokenizer.encode("le fichier")]


def test_tokens_are_readable(tokenizer):
    text = "Ouvrir le fichier sélectionné « 7 »"
    pieces = tokenizer.tokens(tokenizer.encode(text))
    # one piece per id, spaces and accents as text (the first word's space is the prefix)
    assert "".join(pieces) == " " + text
    assert any(piece.startswith(" ") for piece in pieces)
    assert not any("Ã" in piece or "Ġ" in piece for piece in pieces)
    # A character never seen in training is split into bytes; the pieces show them escaped.
    assert "".join(tokenizer.tokens(tokenizer.encode("漢"))) == " \\xe6\\xbc\\xa2"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.tokens([10**6])


def test_training_is_deterministic(tokenizer):
    again = train_tokenizer(SENTENCES, vocab_size=400)
    assert again.backend.to_str() == tokenizer.backend.to_str()


def test_save_load(tokenizer, tmp_path):
    path = tokenizer.save(tmp_path / "tok" / "tokenizer.json")
    loaded = load_tokenizer(path)
    text = "Afficher les fichiers cachés"
    assert loaded.encode(text) == tokenizer.encode(text)
    assert loaded.encode("<s>") == tokenizer.encode("<s>")  # still text after loading
    assert [p.name for p in path.parent.iterdir()] == ["tokenizer.json"]  # no temp files
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        load_tokenizer(tmp_path / "missing.json")


def test_wrong_specials_are_rejected():
    import tokenizers

    backend = tokenizers.Tokenizer(tokenizers.models.BPE())
    backend.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>"])
    with pytest.raises(ValueError, match="'<pad>' at id 0"):
        Tokenizer(backend)


def test_bad_arguments(tokenizer):
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(SENTENCES, vocab_size=100)
    with pytest.raises(TypeError, match="text"):
        tokenizer.encode(["list"])
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        tokenizer.encode_batch(["ok", 3])


def test_missing_tokenizers_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(ImportError, match=r"pip install 'attnkit\[data\]'"):
        train_tokenizer(SENTENCES)


@pytest.mark.parametrize("word", ["Open", "Delete", "Show"])
def test_first_word_is_the_same_token_as_elsewhere(tokenizer, word):
    # A UI string nearly always starts with its most important word: it must be split
    # exactly as the same word in the middle of a sentence.
    first = tokenizer.encode(f"{word} the file")
    middle = tokenizer.encode(f"Please {word} the file")
    alone = tokenizer.encode(word)
    assert first == middle[len(tokenizer.encode("Please")):]
    assert first[:len(alone)] == alone
    assert tokenizer.prefix_space


@pytest.mark.parametrize("text", ["", " ", " leading", "x", "\ttab"])
def test_prefix_space_is_stripped_exactly_once(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_files_without_prefix_space_keep_their_behaviour(tmp_path):
    # A tokenizer.json written before the prefix-space rule: no Prepend normalizer.
    tk = pytest.importorskip("tokenizers")
    backend = tk.Tokenizer(tk.models.BPE())
    backend.normalizer = tk.normalizers.NFC()
    backend.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=300, special_tokens=list(SPECIAL_TOKENS),
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
                                     show_progress=False)
    backend.train_from_iterator(SENTENCES, trainer=trainer)
    old = Tokenizer(backend)
    loaded = load_tokenizer(old.save(tmp_path / "old.json"))
    assert not loaded.prefix_space
    assert loaded.decode(loaded.encode("Open the file")) == "Open the file"
    assert loaded.encode("Open") == old.encode("Open")
