"""A built EN->FR/DE corpus read back from disk: :func:`load_corpus` and its splits.

The corpus folder (``$ATTNKIT_DATA/gettext-en-<lang>/``, written by
:func:`attnkit.data.build_corpus`) holds ``train.tsv``, ``valid.tsv`` and ``test.tsv``
(``en<TAB>xx`` per line), ``manifest.json`` and, once trained, one
``tokenizer-<vocab>.json`` per vocabulary size.

``test-long`` (:func:`attnkit.data.translation.split.split_test_long`) is not a file: it is
carved out of ``train.tsv`` on demand, and only runs that ask for it (``hold_out_long``)
train without it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attnkit._validate import check_bool, check_choice, check_int
from attnkit.data.errors import DataError
from attnkit.data.paths import default_data_dir
from attnkit.data.translation.languages import LANGUAGES
from attnkit.data.translation.manifest import read_manifest
from attnkit.data.translation.split import (
    SPLIT_BUCKETS,
    SPLITS,
    TEST_LONG,
    TEST_LONG_BUCKETS,
    TEST_LONG_MIN_SENTENCES,
    TEST_LONG_RATES,
    length_bucket,
    split_test_long,
)

__all__ = ["corpus_dir", "ParallelCorpus", "load_corpus", "ALL_SPLITS"]

#: what :meth:`ParallelCorpus.split` accepts: the three files and the carved-out test-long
ALL_SPLITS = (*SPLITS, TEST_LONG)


def corpus_dir(lang: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Folder of the EN->``lang`` gettext corpus: ``<data_dir>/gettext-en-<lang>``.

    Args:
        lang: target language, one of :data:`LANGUAGES`.
        data_dir: data directory (default :func:`default_data_dir`).
    """
    check_choice(lang, "lang", LANGUAGES)
    base = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    return base / f"gettext-en-{lang}"


@dataclass
class ParallelCorpus:
    """A built corpus: each split as a list of ``(english, target)`` pairs."""

    path: Path  # the corpus folder
    lang: str  # target language
    manifest: dict  # content of manifest.json
    train: list[tuple[str, str]] = field(repr=False)
    valid: list[tuple[str, str]] = field(repr=False)
    test: list[tuple[str, str]] = field(repr=False)
    # (train without test-long, test-long), computed on first use
    _long: tuple[list, list] | None = field(default=None, init=False, repr=False,
                                            compare=False)

    def split(self, name: str, *, hold_out_long: bool = False) -> list[tuple[str, str]]:
        """The ``(english, target)`` pairs of split ``name``.

        Args:
            name: "train", "valid", "test" or "test-long". "test-long" is the
                length-stratified long test set carved out of the train split
                (:func:`~attnkit.data.translation.split.split_test_long`), in hash order.
            hold_out_long: with "train", leave the test-long pairs out (in train's order
                otherwise); the train stream of a run evaluated on test-long. Ignored for
                the other splits, which never hold test-long pairs.
        """
        check_choice(name, "name", ALL_SPLITS)
        check_bool(hold_out_long, "hold_out_long")
        if name == TEST_LONG:
            return self._long_split()[1]
        if name == "train" and hold_out_long:
            return self._long_split()[0]
        return getattr(self, name)

    def _long_split(self) -> tuple[list, list]:
        if self._long is None:
            self._long = split_test_long(self.train)
        return self._long

    def test_long_counts(self) -> dict[str, Any]:
        """What test-long holds: ``pairs`` in all, ``by_length`` (English-word stratum "13-20"
        etc. -> pairs), ``outside`` (pairs whose English word count is outside the strata),
        ``train_kept`` (train pairs left for a held-out run), ``short`` (strata under
        :data:`TEST_LONG_MIN_SENTENCES`) and ``rates`` (stratum -> share selected)."""
        kept, held = self._long_split()
        by_length = {f"{low}-{high}": 0 for low, high in TEST_LONG_BUCKETS}
        outside = 0
        for english, _ in held:
            bucket = length_bucket(len(english.split()))
            if bucket is None:
                outside += 1
            else:
                by_length[f"{bucket[0]}-{bucket[1]}"] += 1
        return {"pairs": len(held), "by_length": by_length, "outside": outside,
                "train_kept": len(kept),
                "short": [name for name, n in by_length.items()
                          if n < TEST_LONG_MIN_SENTENCES],
                "rates": {f"{low}-{high}": rate / SPLIT_BUCKETS
                          for (low, high), rate in TEST_LONG_RATES.items()}}

    def tokenizer_path(self, vocab_size: int, *, hold_out_long: bool = False) -> Path:
        """Where the tokenizer of ``vocab_size`` tokens is cached (``hold_out_long``: the one
        trained without the test-long pairs, ``tokenizer-<vocab>-hold-out-long.json``)."""
        size = check_int(vocab_size, "vocab_size", minimum=1)
        suffix = "-hold-out-long" if check_bool(hold_out_long, "hold_out_long") else ""
        return self.path / f"tokenizer-{size}{suffix}.json"

    def tokenizer_paths(self) -> list[Path]:
        """The cached tokenizers, by vocabulary size."""
        found = [(p, p.stem.removeprefix("tokenizer-")) for p in self.path.glob("tokenizer-*.json")]
        return [p for p, size in sorted(found, key=lambda item: (len(item[1]), item[1]))
                if size.isdigit()]

    def tokenizer(self, *, vocab_size: int = 4000, train: bool = True,
                  hold_out_long: bool = False):
        """The corpus tokenizer, trained on both sides of the train split on first use.

        Args:
            vocab_size: vocabulary size; at least 260 (4 specials + 256 bytes). Each size is
                cached in its own file (:meth:`tokenizer_path`).
            train: if False, a missing tokenizer raises FileNotFoundError instead.
            hold_out_long: the tokenizer of a run that holds test-long out, trained on the
                train split without the test-long pairs (its own cached file), so not even
                the vocabulary has seen them.

        A cached file from before the prefix-space rule (see :mod:`attnkit.data.tokenizer`)
        is retrained when ``train`` is True. A corpus whose BPE meets fewer distinct merges
        than ``vocab_size`` asks for gets a smaller vocabulary.
        """
        from attnkit.data.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_tokenizer

        check_int(vocab_size, "vocab_size", minimum=len(SPECIAL_TOKENS) + 256)
        check_bool(train, "train")
        path = self.tokenizer_path(vocab_size, hold_out_long=hold_out_long)
        if path.is_file():
            tokenizer = load_tokenizer(path)
            if tokenizer.prefix_space or not train:
                return tokenizer
        elif not train:
            raise FileNotFoundError(f"no tokenizer at {path}")
        texts = [text for pair in self.split("train", hold_out_long=hold_out_long)
                 for text in pair]
        tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
        tokenizer.save(path)
        return tokenizer


def _read_split(path: Path, name: str, expected_sha256: str | None) -> list[tuple[str, str]]:
    file = path / f"{name}.tsv"
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{file} is missing; rebuild with --force") from None
    except OSError as exc:
        raise DataError(f"cannot read {file} ({exc.strerror or exc})") from exc
    if expected_sha256 is not None and hashlib.sha256(raw).hexdigest() != expected_sha256:
        raise DataError(f"{file} does not match its manifest hash; rebuild with --force")
    try:
        rows = raw.decode("utf-8").split("\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{file} is not UTF-8 (byte {exc.start}); rebuild with --force") from exc
    if rows[-1] != "":
        raise DataError(f"{file} is truncated (no newline at the end); rebuild with --force")
    pairs = [tuple(row.split("\t")) for row in rows[:-1]]
    for number, pair in enumerate(pairs, 1):
        if len(pair) != 2:
            raise DataError(f"{file}, line {number}: expected 'english<TAB>target', got "
                            f"{len(pair)} fields; rebuild with --force")
    return pairs


def load_corpus(lang: str, data_dir: str | os.PathLike | None = None, *,
                verify: bool = True) -> ParallelCorpus:
    """Read the corpus built by :func:`attnkit.data.build_corpus`.

    Args:
        lang: target language, one of ``LANGUAGES``.
        data_dir: data directory (default :func:`attnkit.data.default_data_dir`).
        verify: check each split file against the manifest's SHA-256.

    Raises :class:`attnkit.data.CorpusNotFoundError` when there is no corpus and
    :class:`attnkit.data.DataError` when it is damaged.
    """
    check_bool(verify, "verify")
    path = corpus_dir(lang, data_dir)
    manifest = read_manifest(path)
    splits = {name: _read_split(path, name, manifest["splits"][name]["sha256"] if verify
                                else None) for name in SPLITS}
    return ParallelCorpus(path=path, lang=lang, manifest=manifest, **splits)
