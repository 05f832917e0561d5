"""``attnkit data build | fetch | info``: the gettext parallel corpora from the command line.

``build`` reads catalogs already on disk, ``fetch`` adds the catalogs of the Debian packages
in :data:`attnkit.data.fetch.DEBIAN_PACKAGES` (downloaded, unpacked, never installed), and
``info`` summarizes a built corpus. Both builders then train the joint BPE tokenizer.
Errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from attnkit.data.corpus import (
    LANGUAGES,
    SPLITS,
    DataError,
    build_corpus,
    corpus_dir,
    default_data_dir,
    load_corpus,
)

__all__ = ["DEFAULT_ROOTS", "default_roots", "add_data_parser", "run_build", "run_fetch",
           "run_info"]

#: where installed systems keep catalogs (the ones that exist are searched)
DEFAULT_ROOTS = ("/usr/share/locale", "/usr/share/locale-langpack", "/usr/local/share/locale")
_MIN_VOCAB = 260  # 4 special tokens + 256 bytes


def default_roots() -> list[Path]:
    """The folders of :data:`DEFAULT_ROOTS` that exist here."""
    return [Path(root) for root in DEFAULT_ROOTS if Path(root).is_dir()]


def _vocab_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < _MIN_VOCAB:
        raise argparse.ArgumentTypeError(f"expected at least {_MIN_VOCAB} (4 specials + 256 "
                                         f"bytes), got {value}")
    return value


def add_data_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``data build``, ``data fetch`` and ``data info`` on ``subparsers`` (the object
    ``ArgumentParser.add_subparsers`` returned); each sets ``func`` to its ``run_*``."""
    data = subparsers.add_parser(
        "data", help="build and inspect the EN->FR/DE corpora from gettext catalogs",
        description="English->French/German parallel corpora from the translation catalogs "
                    "(.mo) that free software ships, and their BPE tokenizer. Corpora live "
                    "in $ATTNKIT_DATA (default ~/.cache/attnkit).")
    actions = data.add_subparsers(dest="data_command", required=True, parser_class=type(data))

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--lang", required=True, choices=LANGUAGES, help="target language")
        parser.add_argument("--data-dir", metavar="DIR", default=None,
                            help="data directory (default $ATTNKIT_DATA or ~/.cache/attnkit)")

    build = actions.add_parser(
        "build", help="build a corpus from catalogs on this machine",
        description="Build the corpus from the .mo catalogs under --roots (default: the "
                    "system locale folders), then train its tokenizer.")
    common(build)
    build.add_argument("--roots", nargs="+", metavar="DIR", default=None,
                       help=f"folders to search (default: those of {', '.join(DEFAULT_ROOTS)} "
                            f"that exist)")
    build.add_argument("--force", action="store_true", help="rebuild an existing corpus")
    build.add_argument("--vocab-size", type=_vocab_size, default=8000,
                       help="tokenizer vocabulary size (default 8000)")
    build.set_defaults(func=run_build)

    fetch = actions.add_parser(
        "fetch", help="download catalog packages with apt, then build",
        description="Download the catalog packages with `apt-get download` (nothing is "
                    "installed), unpack their catalogs, and rebuild the corpus from them plus "
                    "the system catalogs; then train the tokenizer. Needs apt-get and dpkg-deb.")
    common(fetch)
    fetch.add_argument("--keep-debs", action="store_true",
                       help="keep the downloaded .deb files in DATA_DIR/debs")
    fetch.add_argument("--debs", metavar="DIR", default=None,
                       help="use the .deb files already in DIR instead of downloading")
    fetch.add_argument("--vocab-size", type=_vocab_size, default=8000,
                       help="tokenizer vocabulary size (default 8000)")
    fetch.set_defaults(func=run_fetch)

    info = actions.add_parser("info", help="summarize a built corpus",
                              description="Print the manifest summary of a built corpus.")
    common(info)
    info.set_defaults(func=run_info)
    return data


def _fail(args: argparse.Namespace, exc: BaseException) -> int:
    message = " ".join(str(exc).split())
    print(f"attnkit data {args.data_command}: error: {message}", file=sys.stderr)
    return 2


def _tokenizer_line(lang: str, data_dir, vocab_size: int) -> str:
    corpus = load_corpus(lang, data_dir)
    tokenizer = corpus.tokenizer(vocab_size=vocab_size)
    return f"tokenizer: {corpus.tokenizer_path} (vocab {tokenizer.vocab_size})"


def run_build(args: argparse.Namespace) -> int:
    """``attnkit data build``; returns the exit code."""
    start = time.perf_counter()
    try:
        roots = args.roots if args.roots else default_roots()
        if not roots:
            raise DataError(f"none of the default catalog folders exist "
                            f"({', '.join(DEFAULT_ROOTS)}); pass --roots DIR")
        result = build_corpus(args.lang, roots, data_dir=args.data_dir, force=args.force,
                              log=print)
        if not result.built:
            print(f"corpus already built at {result.path}; --force rebuilds it")
        print(_tokenizer_line(args.lang, args.data_dir, args.vocab_size))
    except (DataError, ImportError, OSError) as exc:
        return _fail(args, exc)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    """``attnkit data fetch``; returns the exit code."""
    from attnkit.data.fetch import extract_debs, fetch_debian

    start = time.perf_counter()
    base = default_data_dir() if args.data_dir is None else Path(args.data_dir).expanduser()
    work = None
    try:
        if args.debs is not None and not Path(args.debs).is_dir():
            raise DataError(f"--debs: {args.debs} is not a folder")
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=base))
        os.chmod(work, 0o755)  # let apt's _apt user reach the download folder
        if args.debs is not None:
            roots = extract_debs(sorted(Path(args.debs).glob("*.deb")), work / "extract",
                                 args.lang, log=print)
        else:
            fetched = fetch_debian(args.lang, dest=work, log=print)
            roots = fetched.roots
            if args.keep_debs:
                kept = base / "debs"
                kept.mkdir(exist_ok=True)
                for deb in fetched.debs:
                    os.replace(deb, kept / deb.name)
                print(f"kept {len(fetched.debs)} .deb files in {kept}")
        build_corpus(args.lang, [*default_roots(), *roots], data_dir=base, force=True,
                     log=print)
        print(_tokenizer_line(args.lang, base, args.vocab_size))
    except (DataError, ImportError, OSError) as exc:
        return _fail(args, exc)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """``attnkit data info``; returns the exit code."""
    try:
        corpus = load_corpus(args.lang, args.data_dir, verify=False)
    except (DataError, OSError) as exc:
        return _fail(args, exc)
    manifest = corpus.manifest
    packages = {s["package"] for s in manifest["sources"] if s.get("package")}
    print(f"{manifest['name']} at {corpus.path} (attnkit {manifest['attnkit_version']}, "
          f"format {manifest['format']})")
    print("pairs: " + ", ".join(f"{name} {manifest['splits'][name]['pairs']}"
                                for name in SPLITS))
    print(f"catalogs: {manifest['catalogs']} ({manifest['catalogs_skipped']} unreadable) "
          f"from {len(packages)} packages")
    print("stages: " + " -> ".join(
        f"{s['stage']} {s['remaining']}" if s["stage"] == "entries"
        else f"{s['stage']} -{s['removed']}" for s in manifest["stages"])
          + f" = {manifest['stages'][-1]['remaining']}")
    for source in manifest["sources"]:
        if "error" in source:
            print(f"skipped: {source['error']}")
    tokenizer = corpus_dir(args.lang, args.data_dir) / "tokenizer.json"
    if tokenizer.is_file():
        from attnkit.data.tokenizer import load_tokenizer

        try:
            print(f"tokenizer: {tokenizer} (vocab {load_tokenizer(tokenizer).vocab_size})")
        except ImportError as exc:
            print(f"tokenizer: {tokenizer} ({exc})")
    else:
        print("tokenizer: not trained yet (attnkit data build trains it)")
    return 0
