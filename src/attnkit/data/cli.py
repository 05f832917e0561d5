"""``attnkit data build | fetch | info``: the gettext parallel corpora from the command line.

``build`` reads catalogs already on disk, ``fetch`` adds the catalogs of the Debian packages
in :data:`attnkit.data.translation.fetch.DEBIAN_PACKAGES` (downloaded, unpacked, never
installed), and ``info`` summarizes a built corpus. ``fetch --images`` and ``fetch --glyphs``
unpack the Fashion-MNIST and unifont datasets of :mod:`attnkit.data.packaged` instead.
Both corpus builders then train the joint BPE tokenizer. Every path is checked before any
work starts; problems the user can fix are raised as :class:`attnkit.errors.UserError`
(one line, exit code 2, printed by :mod:`attnkit.cli`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from attnkit._validate import arg_int, existing_dir, output_dir, unique
from attnkit.errors import UserError

__all__ = ["HELP", "add_parser", "run"]

HELP = "build and inspect the EN->FR/DE corpora from gettext catalogs"
_LANGUAGES = ("fr", "de")  # attnkit.data.LANGUAGES, spelled here to keep --help light
_MIN_VOCAB = 260  # 4 special tokens + 256 bytes
_DEFAULT_VOCAB = 4000  # what translate uses
_MAX_VOCAB = 1_000_000  # as translate's --vocab-size: the BPE trainer's counts are 32-bit


def _path(text: str) -> str:
    """An argparse ``type=`` for paths: an empty one would silently mean "here"."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``data build``, ``data fetch`` and ``data info`` on ``subparsers``."""
    data = subparsers.add_parser(
        "data", help=HELP,
        description="English->French/German parallel corpora from the translation catalogs "
                    "(.mo) that free software ships, and their BPE tokenizer. Corpora live "
                    "in $ATTNKIT_DATA (default ~/.cache/attnkit).")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--lang", required=True, choices=_LANGUAGES, help="target language")
        parser.add_argument("--data-dir", metavar="DIR", type=_path, default=None,
                            help="data directory (default $ATTNKIT_DATA or ~/.cache/attnkit)")

    def vocab(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--vocab-size", type=arg_int(_MIN_VOCAB, _MAX_VOCAB),
                            default=_DEFAULT_VOCAB,
                            help=f"tokenizer vocabulary size, at least {_MIN_VOCAB} (4 "
                                 f"specials + 256 bytes; default {_DEFAULT_VOCAB}, what "
                                 f"translate uses)")

    build = actions.add_parser(
        "build", help="build a corpus from catalogs on this machine",
        description="Build the corpus from the .mo catalogs under --roots (default: the "
                    "system locale folders), then train its tokenizer.")
    common(build)
    build.add_argument("--roots", nargs="+", metavar="DIR", type=_path, default=None,
                       help="folders to search (default: those of /usr/share/locale, "
                            "/usr/share/locale-langpack, /usr/local/share/locale that exist)")
    build.add_argument("--force", action="store_true", help="rebuild an existing corpus")
    vocab(build)

    fetch = actions.add_parser(
        "fetch", help="download catalog packages with apt, then build",
        description="Download the catalog packages with `apt-get download` (nothing is "
                    "installed), unpack their catalogs, and rebuild the corpus from them plus "
                    "the system catalogs; then train the tokenizer. Needs apt-get and dpkg-deb.")
    target = fetch.add_mutually_exclusive_group(required=True)
    target.add_argument("--lang", choices=_LANGUAGES, help="target language of the corpus")
    target.add_argument("--images", action="store_true",
                        help="instead of a corpus: Fashion-MNIST from the Debian package "
                             "dataset-fashion-mnist (DATA_DIR/fashion-mnist, 30 MB)")
    target.add_argument("--glyphs", action="store_true",
                        help="instead of a corpus: unifont.hex from the Debian package unifont "
                             "(DATA_DIR/unifont, 4 MB)")
    fetch.add_argument("--data-dir", metavar="DIR", type=_path, default=None,
                       help="data directory (default $ATTNKIT_DATA or ~/.cache/attnkit)")
    fetch.add_argument("--deb", metavar="FILE", type=_path, default=None,
                       help="with --images or --glyphs: unpack this .deb of the package "
                            "instead of downloading it")
    fetch.add_argument("--keep-debs", action="store_true",
                       help="keep the downloaded .deb files in DATA_DIR/debs")
    fetch.add_argument("--debs", metavar="DIR", type=_path, default=None,
                       help="use the .deb files already in DIR instead of downloading")
    vocab(fetch)
    fetch.set_defaults(vocab_size=None)

    info = actions.add_parser("info", help="summarize a built corpus",
                              description="Print the manifest summary of a built corpus.")
    common(info)
    return data


def run(args: argparse.Namespace) -> int:
    """Run ``attnkit data <action>``; returns the exit code."""
    from attnkit.data.paths import default_data_dir

    base = default_data_dir() if args.data_dir is None else Path(args.data_dir).expanduser()
    if args.data_command == "info":
        return _info(args.lang, base)
    output_dir(base, "--data-dir")
    try:
        if args.data_command == "build":
            return _build(args, base)
        return _fetch(args, base)
    except OSError as exc:  # e.g. the disk filling up mid-build: the user's to fix
        where = f" ({exc.filename})" if exc.filename else ""
        raise UserError(f"{exc.strerror or exc}{where}") from exc
    except ImportError as exc:
        raise UserError(str(exc)) from exc


def _tokenizer_line(lang: str, data_dir: Path, vocab_size: int) -> str:
    from attnkit.data.translation.corpus import load_corpus

    corpus = load_corpus(lang, data_dir)
    tokenizer = corpus.tokenizer(vocab_size=vocab_size)
    return f"tokenizer: {corpus.tokenizer_path(vocab_size)} (vocab {tokenizer.vocab_size})"


def _build(args: argparse.Namespace, base: Path) -> int:
    from attnkit.data.translation.build import build_corpus
    from attnkit.data.translation.catalogs import DEFAULT_ROOTS, default_roots

    start = time.perf_counter()
    if args.roots:
        roots = [existing_dir(root, "--roots") for root in unique(args.roots, "--roots")]
    else:
        roots = default_roots()
        if not roots:
            raise UserError(f"none of the default catalog folders exist "
                            f"({', '.join(DEFAULT_ROOTS)}); pass --roots DIR")
    result = build_corpus(args.lang, roots, data_dir=base, force=args.force, log=print)
    if not result.built:
        print(f"corpus already built at {result.path}; --force rebuilds it")
    print(_tokenizer_line(args.lang, base, args.vocab_size))
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _fetch_packaged(args: argparse.Namespace, base: Path) -> int:
    from attnkit.data.packaged import fetch_packaged

    name = "images" if args.images else "glyphs"
    start = time.perf_counter()
    deb = None if args.deb is None else Path(args.deb)
    if deb is not None and not deb.is_file():
        raise UserError(f"--deb: {args.deb} is not a file")
    fetch_packaged(name, base, deb=deb, log=print)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _fetch(args: argparse.Namespace, base: Path) -> int:
    from attnkit.data.translation.build import build_corpus

    if args.lang is None:
        corpus_only = [flag for flag, given in (("--debs", args.debs is not None),
                                                ("--keep-debs", args.keep_debs),
                                                ("--vocab-size", args.vocab_size is not None))
                       if given]
        if corpus_only:
            raise UserError(f"{corpus_only[0]} applies to a corpus (--lang), not to "
                            f"{'--images' if args.images else '--glyphs'}")
        return _fetch_packaged(args, base)
    if args.deb is not None:
        raise UserError("--deb applies to --images or --glyphs; for a corpus use --debs DIR")
    if args.vocab_size is None:
        args.vocab_size = _DEFAULT_VOCAB
    from attnkit.data.translation.catalogs import default_roots
    from attnkit.data.translation.fetch import extract_debs, fetch_debian

    start = time.perf_counter()
    debs = None if args.debs is None else existing_dir(args.debs, "--debs")
    if args.keep_debs and debs is not None:
        raise UserError("--keep-debs keeps downloads; with --debs nothing is downloaded")
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-", dir=base))
    try:
        os.chmod(work, 0o755)  # let apt's _apt user reach the download folder
        if debs is not None:
            roots = extract_debs(sorted(debs.glob("*.deb")), work / "extract", args.lang,
                                 log=print)
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
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"done in {time.perf_counter() - start:.1f} s")
    return 0


def _info(lang: str, base: Path) -> int:
    from attnkit.data.paths import display_path
    from attnkit.data.translation.corpus import load_corpus
    from attnkit.data.translation.split import SPLITS

    if base.exists() and not base.is_dir():
        raise UserError(f"--data-dir: {base} exists and is not a folder")
    if not base.exists():
        raise UserError(f"--data-dir: {base} does not exist (`attnkit data build --lang "
                        f"{lang}` builds a corpus there)")
    corpus = load_corpus(lang, base, verify=False)
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
            print(f"skipped: {display_path(source['error'])}")
    for refused in manifest.get("refused_members", []):
        print(f"refused: {refused['package']}: {refused['member']} ({refused['reason']})")
    for path in corpus.tokenizer_paths():
        from attnkit.data.tokenizer import load_tokenizer

        try:
            vocab = f"vocab {load_tokenizer(path).vocab_size}"
        except (ImportError, UserError) as exc:
            vocab = str(exc)
        print(f"tokenizer: {path} ({vocab})")
    if not corpus.tokenizer_paths():
        print("tokenizer: not trained yet (attnkit data build trains it)")
    return 0
