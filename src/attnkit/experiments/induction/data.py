"""The corpus every machine has: the Python standard library's own source files.

File list (:func:`stdlib_files`): every ``*.py`` file under ``sysconfig.get_paths()["stdlib"]``,
as POSIX paths relative to that folder, sorted, leaving out folders whose contents depend on
the machine or are not ordinary library code: ``site-packages`` and ``dist-packages``
(whatever pip installed), the test suites (``test``, ``tests``, ``idle_test``) and
``encodings`` (generated character-map tables). The list depends only on the Python version
(and the distribution's packaging); its length and the version go into the report.

Split (:func:`split_of`): a file is in ``valid`` when the first 8 bytes of the SHA-256 of its
relative path, read as an integer, fall in the lowest ``valid_fraction`` of the range; else
``train``. It depends on the path only, so the split is the same on every machine and each
file is in exactly one split.

Tokens: byte-level BPE (:func:`attnkit.data.train_tokenizer`, Hugging Face ``tokenizers``)
trained on the train files only, cached as one JSON file per (Python version, file list,
vocabulary size) under the data directory, written atomically. Every file is encoded as
``<s>`` + its tokens, and the train files are concatenated into one stream.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from attnkit._validate import check_float, check_int

__all__ = ["EXCLUDED_DIRS", "stdlib_root", "stdlib_files", "split_of", "split_files",
           "Corpus", "load_corpus", "train_windows", "valid_contexts"]

EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test",
                           "encodings", "__pycache__"})


def stdlib_root() -> Path:
    """The standard library's folder of the running Python."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_files(root: str | os.PathLike | None = None) -> list[str]:
    """Sorted POSIX paths, relative to ``root`` (default :func:`stdlib_root`), of the ``*.py``
    files outside :data:`EXCLUDED_DIRS`. Symbolic links that leave ``root`` are skipped."""
    root = Path(stdlib_root() if root is None else root)
    if not root.is_dir():
        raise ValueError(f"root: {root} is not a folder")
    resolved_root = root.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS]
        for name in filenames:
            if not name.endswith(".py"):
                continue
            path = Path(dirpath) / name
            if not path.resolve().is_relative_to(resolved_root) or not path.is_file():
                continue
            found.append(PurePosixPath(path.relative_to(root)).as_posix())
    return sorted(found)


def split_of(relative_path: str, valid_fraction: float) -> str:
    """``"valid"`` or ``"train"`` for a file, from the SHA-256 of its relative path."""
    if not isinstance(relative_path, str):
        raise TypeError(f"relative_path: expected str, got {type(relative_path).__name__}")
    valid_fraction = check_float(valid_fraction, "valid_fraction", low=0.0, high=1.0)
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return "valid" if int.from_bytes(digest[:8], "big") < valid_fraction * 2**64 else "train"


def split_files(files: list[str], valid_fraction: float) -> dict[str, list[str]]:
    """``{"train": [...], "valid": [...]}``, each in the order of ``files``."""
    out: dict[str, list[str]] = {"train": [], "valid": []}
    for name in files:
        out[split_of(name, valid_fraction)].append(name)
    return out


@dataclass
class Corpus:
    """The tokenized standard library.

    Attributes:
        tokenizer: the :class:`attnkit.data.Tokenizer`.
        train: ``(N,)`` int64 numpy array, every train file as ``<s>`` + tokens, concatenated.
        valid: one int64 array per valid file (``<s>`` + tokens).
        info: JSON-able facts for the report (Python version, file counts, token counts).
    """

    tokenizer: object
    train: np.ndarray
    valid: list[np.ndarray]
    info: dict


def _read(root: Path, name: str) -> str:
    return (root / name).read_text(encoding="utf-8", errors="replace")


def load_corpus(*, vocab_size: int, valid_fraction: float, cache_dir: str | os.PathLike,
                root: str | os.PathLike | None = None, max_files: int | None = None,
                log: Callable[[str], None] = print) -> Corpus:
    """Read, split and tokenize the standard library; train (or load) the cached tokenizer.

    Args:
        vocab_size: BPE vocabulary size (special tokens and 256 bytes included).
        valid_fraction: share of files in ``valid`` (by path hash).
        cache_dir: where the tokenizer file is cached.
        root: the library folder (default :func:`stdlib_root`; tests pass a small one).
        max_files: keep ``max_files`` files evenly spaced over the sorted list (None: all).
        log: progress lines.
    """
    from attnkit.data.tokenizer import BOS_ID, load_tokenizer, train_tokenizer

    check_int(vocab_size, "vocab_size", minimum=260)
    root = Path(stdlib_root() if root is None else root)
    files = stdlib_files(root)
    library_files = len(files)
    if max_files is not None and max_files < len(files):
        check_int(max_files, "max_files", minimum=1)
        picks = np.linspace(0, len(files) - 1, max_files).round().astype(int)
        files = [files[k] for k in sorted(set(picks.tolist()))]
    splits = split_files(files, valid_fraction)
    if not splits["train"] or not splits["valid"]:
        raise ValueError(f"the split of {len(files)} files under {root} left "
                         f"{len(splits['train'])} train and {len(splits['valid'])} valid "
                         f"files; both need at least one (change valid_fraction)")
    listing = hashlib.sha256("\n".join(files).encode("utf-8")).hexdigest()[:12]
    version = platform.python_version()
    path = Path(cache_dir) / f"stdlib-py{version}-{listing}-bpe{vocab_size}.json"
    train_texts = [_read(root, name) for name in splits["train"]]
    if path.is_file():
        tokenizer = load_tokenizer(path)
    else:
        log(f"training a {vocab_size}-token byte-level BPE on {len(train_texts)} files")
        tokenizer = train_tokenizer(train_texts, vocab_size=vocab_size)
        tokenizer.save(path)
    valid_texts = [_read(root, name) for name in splits["valid"]]

    def encode(texts: list[str]) -> list[np.ndarray]:
        return [np.asarray([BOS_ID, *ids], dtype=np.int64)
                for ids in tokenizer.encode_batch(texts)]

    train = np.concatenate(encode(train_texts))
    valid = encode(valid_texts)
    info = {"python": version, "root": str(root), "library_files": library_files,
            "files": len(files),
            "train_files": len(splits["train"]), "valid_files": len(splits["valid"]),
            "excluded_dirs": sorted(EXCLUDED_DIRS), "file_list_sha256": listing,
            "valid_fraction": valid_fraction, "vocab_size": tokenizer.vocab_size,
            "tokenizer": str(path), "train_tokens": int(train.size),
            "valid_tokens": int(sum(a.size for a in valid)),
            "train_bytes": sum(len(t.encode("utf-8")) for t in train_texts)}
    info["bytes_per_token"] = info["train_bytes"] / max(info["train_tokens"], 1)
    return Corpus(tokenizer, train, valid, info)


def train_windows(stream: np.ndarray, *, length: int, rows: int, seed: int,
                  index: int) -> torch.Tensor:
    """Batch ``index``: ``rows`` windows of ``length + 1`` tokens at random offsets of the train
    stream (files run into each other), drawn from ``(seed, index)`` alone.

    Returns:
        ``(rows, length + 1)`` long: inputs ``[:, :-1]``, targets ``[:, 1:]``.
    """
    if stream.size < length + 1:
        raise ValueError(f"the train stream has {stream.size} tokens, fewer than one window "
                         f"of {length + 1}")
    rng = np.random.default_rng([seed, index])
    starts = rng.integers(0, stream.size - length, size=rows)
    return torch.from_numpy(np.stack([stream[s:s + length + 1] for s in starts]))


def valid_contexts(files: list[np.ndarray], *, length: int, count: int,
                   seed: int) -> torch.Tensor:
    """``count`` validation contexts of ``length + 1`` tokens, each inside one file (a
    file's later tokens can then refer back to its earlier ones), the file drawn with
    probability proportional to the windows it holds, the offset uniform.

    Returns:
        ``(count, length + 1)`` long.
    """
    sizes = np.array([max(f.size - length, 0) for f in files], dtype=np.float64)
    if sizes.sum() == 0:
        raise ValueError(f"no validation file holds {length + 1} tokens; use a shorter "
                         f"context")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(files), size=count, p=sizes / sizes.sum())
    rows = []
    for k in chosen:
        start = int(rng.integers(0, files[k].size - length))
        rows.append(files[k][start:start + length + 1])
    return torch.from_numpy(np.stack(rows))
