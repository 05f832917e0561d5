"""Joint byte-level BPE tokenizer for a parallel corpus (one vocabulary for both sides).

Byte-pair encoding for subwords: Sennrich, Haddow and Birch, "Neural Machine Translation
of Rare Words with Subword Units", 2016, arXiv:1508.07909. The byte-level variant (merges
over UTF-8 bytes, so no character is ever unknown) follows GPT-2 (Radford et al., 2019).
Training and encoding are done by Hugging Face ``tokenizers`` (the ``data`` extra).

Deviations and choices:

- One vocabulary is trained on the source and target sides of the train split together,
  so a model may tie its embeddings.
- The text is NFC-normalized and one space is prepended before the byte-level split (and
  stripped again by the decoder), so a sentence's first word is the same token as the word
  elsewhere: without it ``Open`` at the start of a UI string and `` Open`` inside one would
  be unrelated subwords, and almost every UI string starts with such a word. Because the
  space is always added and always removed, ``decode(encode(s)) == s`` for any NFC string
  ``s`` (leading spaces included). Files written before this rule (no prepended space) load
  and behave as they were trained; :attr:`Tokenizer.prefix_space` tells them apart.
- Special tokens have fixed ids shared with the models and decoders: ``<pad>`` 0, ``<s>``
  1, ``</s>`` 2, ``<unk>`` 3. They are never produced by :meth:`Tokenizer.encode`, even if
  the text spells them out; batching adds BOS/EOS itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from attnkit._validate import check_int
from attnkit.data.errors import DataError

__all__ = [
    "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID", "PAD", "BOS", "EOS", "UNK", "SPECIAL_TOKENS",
    "Tokenizer", "train_tokenizer", "load_tokenizer",
]

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # in id order


def _tokenizers():
    try:
        import tokenizers
    except ImportError as exc:
        raise ImportError("attnkit's tokenizer needs the `tokenizers` package: "
                          "pip install 'attnkit[data]'") from exc
    return tokenizers


def _byte_alphabet() -> dict[str, int]:
    """Printable stand-in character -> byte, as byte-level BPE spells bytes in its vocabulary.

    Bytes that are printable Latin-1 characters stand for themselves; the other 68 bytes
    (controls, space, soft hyphen, ...) are shifted to code points 256, 257, ... in byte order.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in chars:
            chars[byte] = chr(256 + shifted)
            shifted += 1
    return {char: byte for byte, char in chars.items()}


class Tokenizer:
    """Thin wrapper around a ``tokenizers.Tokenizer`` with attnkit's special-token ids.

    Example::

        tok = load_tokenizer("~/.cache/attnkit/gettext-en-fr/tokenizer.json")
        ids = tok.encode("Fichier introuvable")      # list[int], no BOS/EOS
        tok.decode(ids)                              # "Fichier introuvable"
    """

    def __init__(self, backend):
        for token_id, token in enumerate(SPECIAL_TOKENS):
            if backend.token_to_id(token) != token_id:
                raise ValueError(f"tokenizer: expected special token {token!r} at id "
                                 f"{token_id}, got id {backend.token_to_id(token)}")
        backend.encode_special_tokens = True  # "<s>" in user text is text, not BOS
        self._backend = backend
        self._bytes = _byte_alphabet()

    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included."""
        return self._backend.get_vocab_size()

    @property
    def prefix_space(self) -> bool:
        """Whether the normalizer prepends a space (every tokenizer trained by
        :func:`train_tokenizer` does; older files do not)."""
        import json

        normalizer = json.loads(self._backend.to_str()).get("normalizer") or {}
        parts = normalizer.get("normalizers", [normalizer])
        return any(part.get("type") == "Prepend" and part.get("prepend") == " "
                   for part in parts if isinstance(part, dict))

    @property
    def backend(self):
        """The underlying ``tokenizers.Tokenizer``."""
        return self._backend

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (a str), without BOS/EOS."""
        if not isinstance(text, str):
            raise TypeError(f"text: expected str, got {type(text).__name__}")
        return self._backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each of ``texts`` (a sequence of N str); N lists, no BOS/EOS."""
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}]: expected str, got {type(text).__name__}")
        return [e.ids for e in self._backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ``ids`` (iterable of int, e.g. a (T,) tensor); specials are skipped."""
        return self._backend.decode([int(i) for i in ids], skip_special_tokens=True)

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """Readable text of each token in ``ids`` (for plots and debugging).

        A leading space marks a word start. A token that holds only part of a multi-byte
        character shows the partial bytes as ``\\xNN`` escapes.
        """
        pieces = []
        for token_id in ids:
            token = self._backend.id_to_token(int(token_id))
            if token is None:
                raise ValueError(f"ids: token id {int(token_id)} is outside the vocabulary "
                                 f"of {self.vocab_size}")
            if token in SPECIAL_TOKENS:
                pieces.append(token)
                continue
            raw = bytes(self._bytes[char] for char in token)
            pieces.append(raw.decode("utf-8", errors="backslashreplace"))
        return pieces

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``tokenizer.json`` at ``path`` atomically; returns the path."""
        from attnkit._io import atomic_write_text

        return atomic_write_text(path, self._backend.to_str() + "\n")


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 8000,
                    min_frequency: int = 2) -> Tokenizer:
    """Train a byte-level BPE tokenizer on ``texts``.

    Args:
        texts: training strings (e.g. both sides of the train split), read once.
        vocab_size: total vocabulary size, the 4 special tokens and 256 bytes included.
        min_frequency: a merge must occur at least this often.

    Returns:
        the trained :class:`Tokenizer`; the same texts in the same order give the same merges.
    """
    check_int(vocab_size, "vocab_size", minimum=len(SPECIAL_TOKENS) + 256)
    check_int(min_frequency, "min_frequency", minimum=1)
    tk = _tokenizers()
    backend = tk.Tokenizer(tk.models.BPE())
    # The space is prepended by the normalizer (always, unlike ByteLevel's add_prefix_space,
    # which skips text that already starts with one) and stripped once by the decoder.
    backend.normalizer = tk.normalizers.Sequence([tk.normalizers.NFC(),
                                                  tk.normalizers.Prepend(" ")])
    backend.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = tk.decoders.Sequence([tk.decoders.ByteLevel(),
                                            tk.decoders.Strip(" ", 1, 0)])
    trainer = tk.trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(backend)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a ``tokenizer.json`` written by :meth:`Tokenizer.save`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"path: no tokenizer at {path} (build one with "
                                f"`attnkit data build --lang fr`)")
    tk = _tokenizers()
    try:
        backend = tk.Tokenizer.from_str(path.read_text(encoding="utf-8"))
        return Tokenizer(backend)
    except Exception as exc:  # tokenizers raises a bare Exception for a bad file
        raise DataError(f"{path} is not a tokenizer file ({str(exc)[:200]}); delete it and "
                        f"run `attnkit data build` again") from exc
