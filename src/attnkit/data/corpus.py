"""An English->French/German parallel corpus built from gettext catalogs, and its batches.

Free-software programs ship their user-interface messages with human translations in
``.mo`` catalogs (``<lang>/LC_MESSAGES/<domain>.mo``). Pairing each English msgid with its
translation gives a real, if UI-flavoured, parallel corpus. This module turns catalogs into
a clean, deterministic corpus:

1. normalize both sides (:func:`normalize`): NFC, every kind of space -> " ", invisible
   format characters dropped, menu accelerators and a trailing ellipsis stripped;
2. filter pairs (:func:`reject_reason`): 3-50 English words, mostly letters, no format
   placeholders, markup or code, not copied, sane length ratio, target looks like the
   target language;
3. deduplicate on the English side: the most frequent translation wins, ties go to the
   lexicographically smallest;
4. split by hashing a normalized English key (:func:`split_of`): 1% test, 1% valid, the
   rest train; strings that differ only by case, digits or punctuation share a split.

:func:`build_corpus` writes ``train.tsv``, ``valid.tsv``, ``test.tsv`` (``en<TAB>xx`` per
line) and ``manifest.json`` (sources with package and version, counts after each stage,
content hashes, no timestamps) to ``$ATTNKIT_DATA/gettext-en-<lang>/``; the same catalogs
give byte-identical files. :func:`load_corpus` reads them back and :class:`TranslationBatches`
turns a split into token-budget batches for :class:`attnkit.train.Trainer`.

Catalogs are looked up as ``<dir>/LC_MESSAGES/*.mo`` where ``<dir>`` is exactly the
language (``fr``) or its main country variant (``fr_FR``, ``de_DE``), plus ``*.mo`` files
named after those (``po/fr.mo``). Regional variants (``fr_CA``, ``de_CH``, ``de_AT``) are
left out: they differ in spelling and vocabulary.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from attnkit._io import atomic_write_json, atomic_write_text
from attnkit.data.gettext import CatalogError, parse_mo
from attnkit.data.tokenizer import BOS_ID, EOS_ID, PAD_ID

__all__ = [
    "LANGUAGES", "LANGUAGE_DIRS", "SPLITS", "REJECT_RULES", "DataError", "CorpusNotFoundError",
    "CatalogRoot", "FilterConfig", "is_catalog_path", "normalize", "reject_reason",
    "deduplicate", "split_key", "split_of", "find_catalogs", "default_data_dir", "corpus_dir",
    "build_corpus", "BuildResult", "ParallelCorpus", "load_corpus", "TranslationBatches",
]

LANGUAGES = ("fr", "de")
SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 1
#: locale folder names searched for each language (regional variants left out)
LANGUAGE_DIRS = {"fr": ("fr", "fr_FR"), "de": ("de", "de_DE")}
_SPLIT_BUCKETS = 10_000  # the hash picks one of these; test and valid take 100 each (1%)
_TEST_BUCKETS, _VALID_BUCKETS = 100, 100


class DataError(Exception):
    """A corpus cannot be built or loaded (the CLI prints it as one line and exits 2)."""


class CorpusNotFoundError(DataError, FileNotFoundError):
    """No built corpus in the data directory."""


# ----------------------------------------------------------------------------- normalize

_PAREN_ACCELERATOR = re.compile(r"\s*\([&_~][^\W_]\)")  # "Open (&O)", "Open (_O)"
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);")
_AMP_ACCELERATOR = re.compile(r"(?<!&)&(?=[^\W_])")
_TILDE_ACCELERATOR = re.compile(r"~(?=[^\W\d_]{2})")  # "~Save", "Pa~ges"; not "~a", "~/"
_TRAILING_ELLIPSIS = re.compile(r"(?:\.\.\.|…)$")


def _collapse_spaces(text: str) -> str:
    # str.split() splits on every Unicode space: tab, newline, U+00A0, U+202F, U+2009, ...
    return " ".join(text.split())


def _strip_underscore_accelerator(text: str) -> str:
    """Drop a GTK mnemonic underscore (``_Open``, ``Save _As``, ``E_xit``).

    Only a lone underscore before a letter or digit counts, and inside a word only when
    the word is Capitalized: ``file_name`` and ``LC_ALL`` are identifiers, left for the
    code filter to reject.
    """
    if text.count("_") != 1:
        return text
    at = text.index("_")
    if at + 1 == len(text) or not text[at + 1].isalnum():
        return text
    if at == 0 or not text[at - 1].isalnum():
        return text[:at] + text[at + 1:]
    start, end = at, at + 1
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    word = text[start:at] + text[at + 1:end]
    if word[:1].isupper() and word[1:].islower():
        return text[:at] + text[at + 1:]
    return text


def _strip_amp_accelerator(text: str) -> str:
    """Drop a Qt/Windows mnemonic ampersand (``&File``, ``Fi&le``), never an entity."""
    if _ENTITY.search(text):
        return text
    marks = list(_AMP_ACCELERATOR.finditer(text))
    if len(marks) != 1:
        return text
    at = marks[0].start()
    return text[:at] + text[at + 1:]


def _unescape_double_amp(text: str) -> str:
    """Qt writes a literal ``&`` as ``&&`` in a string with mnemonics."""
    return text.replace("&&", "&")


def _strip_tilde_accelerator(text: str) -> str:
    """Drop a LibreOffice mnemonic tilde (``~Save``, ``Pa~ges``), never a ``~a`` directive."""
    if text.count("~") != 1:
        return text
    return _TILDE_ACCELERATOR.sub("", text)


def normalize(text: str) -> str:
    """Canonical form of one side of a pair (the same function is applied to both sides).

    NFC; every whitespace character (tab, newline, no-break U+00A0, narrow no-break U+202F
    that French puts before ``?!:;``, thin spaces) becomes one plain space; invisible
    control and format characters (soft hyphen, zero-width space, BOM, bidi marks) are
    dropped; menu accelerators (``_File``, ``&File``, ``~File``, ``(&F)``, ``(_F)``) and one
    trailing ``...`` / ``…`` are removed; Qt's ``&&`` becomes ``&``; ends stripped.
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    text = _collapse_spaces(unicodedata.normalize("NFC", text))
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))
    text = _PAREN_ACCELERATOR.sub("", text)
    text = _strip_amp_accelerator(_strip_underscore_accelerator(text))
    text = _unescape_double_amp(_strip_tilde_accelerator(text))
    text = _TRAILING_ELLIPSIS.sub("", _collapse_spaces(text))
    return unicodedata.normalize("NFC", _collapse_spaces(text))


# ------------------------------------------------------------------------------- filters

_PLACEHOLDER = re.compile(r"""
      %(?:[0-9]+\$)?[-+#0'*]*[0-9]*(?:\.[0-9*]+)?[A-Za-z@<>'%]       # printf, %1$s, %q#T, %%
    | %\([A-Za-z_][\w.-]*\)                                           # python %(name)s
    | %[0-9]                                                          # Qt %1
    | %[A-Z][A-Z_]{2,}                                                # %PRODUCTNAME
    | \{[^{}\s]*\}                                                    # {0} {name} {}
    | \$[{(]?[A-Za-z_0-9]                                             # $x ${x} $(ARG) $1
    | @[A-Za-z_]+@                                                    # @PACKAGE@
    | ~[A-Za-z%](?![A-Za-z])                                          # Lisp/Scheme ~a ~s
""", re.VERBOSE)
_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>|&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);")
_CODE = re.compile(r"""
      _                                          # identifiers (a lone mnemonic is gone)
    | \b[a-z]+[A-Z][A-Za-z]*\b                   # camelCase
    | [A-Za-z0-9]\(\)                            # call()
    | @\w                                        # @echo, user@host
    | \*\.\w                                      # *.txt
    | (?:^|[\s"'(«])(?:~|\.{1,2})?/[\w.]         # /usr/bin, ~/x, ./x
    | \w/\w+/                                    # a/b/c
    | \\[\w\\]                                   # C:\x, escapes
    | \b(?:[a-z][a-z0-9+.-]*)://                 # URLs
    | \bwww\.
    | \b\w+\.(?:com|org|net|txt|conf|cfg|ini|xml|json|html?|py|sh|so|dll|exe|png|jpe?g
              |svg|mo|po|deb|rpm|gz|bz2|xz|zip|tar|log|desktop|service)\b
    | (?:^|[\s(\[])--?[A-Za-z]                   # --option, -x
    | [=`|{}\[\]<>~^\\]                          # operators and brackets
""", re.VERBOSE)

_ENGLISH_WORDS = frozenset("""
the a an and or of to in on at is are was were be been this that these those with for from
by it its you your we our not no can cannot will would should could has have had do does
did which what when where who how if then than there here into out about all any each
""".split())
_TARGET_WORDS = {  # function words; those also in _ENGLISH_WORDS count for neither side
    "fr": frozenset("""
le la les l un une des du de d et ou est sont être ont pas ne n se s ce cet cette ces dans
pour par sur sous avec sans au aux à que qu qui quoi dont où il elle ils elles nous vous
votre vos son sa ses leur leurs mon ma mes plus tout tous toute toutes si lors entre vers
chez depuis pendant comme mais donc car je lui eux été fait peut doit aucun aucune chaque
a on
""".split()),
    "de": frozenset("""
der die das den dem des ein eine einen einem einer eines und oder ist sind war wird werden
wurde wurden kann können nicht kein keine keinen mit von vom für auf im ins zum zur aus bei
beim nach über unter zu es sie er wir ihr ihre ihren ihrem ihres sein seine bitte wenn
diese dieser dieses alle alles auch noch nur schon sich durch gegen ohne bis seit dass ob
als wie wo wer mehr muss soll darf hat haben jeder jede jedes
in an was will
""".split()),
}
_TARGET_LETTERS = {"fr": frozenset("àâæçéèêëîïôœùûüÿ"), "de": frozenset("äöüß")}
_WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of :func:`reject_reason` (recorded in the manifest)."""

    min_words: int = 3  # fewest English words (whitespace tokens holding a letter)
    max_words: int = 50  # most English words
    min_letter_fraction: float = 0.7  # letters / non-space characters, on each side
    min_ratio: float = 0.5  # len(target) / len(english), in characters
    max_ratio: float = 2.5
    max_copied_fraction: float = 0.75  # share of copied English words that rejects a target

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


#: rule names in the order :func:`reject_reason` checks them (the manifest's stage order)
REJECT_RULES = ("word_count", "not_text", "placeholder", "markup", "code", "identical",
                "length_ratio", "not_target_language")


def _letter_fraction(text: str) -> float:
    visible = [ch for ch in text if not ch.isspace()]
    return sum(ch.isalpha() for ch in visible) / max(len(visible), 1)


def _looks_like_target(target: str, english: str, lang: str, config: FilterConfig) -> bool:
    """False for a target that reads as English or mostly repeats the English words."""
    words = [w.lower() for w in _WORD.findall(target)]
    own = sum(w in _TARGET_WORDS[lang] and w not in _ENGLISH_WORDS for w in words)
    english_only = sum(w in _ENGLISH_WORDS and w not in _TARGET_WORDS[lang] for w in words)
    if english_only > own:
        return False
    if own > 0 or any(ch in _TARGET_LETTERS[lang] for ch in target.lower()):
        return True
    # No function word or letter of its own (e.g. "Fichier Windows Media Player"): keep it
    # only if less than max_copied_fraction of its words of 3+ letters are in the English.
    source_words = {w.lower() for w in _WORD.findall(english)}
    long_words = [w for w in words if len(w) >= 3]
    copied = sum(w in source_words for w in long_words)
    return copied / max(len(long_words), 1) < config.max_copied_fraction


def reject_reason(english: str, target: str, lang: str,
                  config: FilterConfig = FilterConfig()) -> str | None:
    """The first rule of :data:`REJECT_RULES` the normalized pair breaks, or None to keep it.

    Args:
        english: normalized English text (a str).
        target: normalized translation (a str).
        lang: target language, one of :data:`LANGUAGES`.
        config: thresholds.
    """
    if lang not in _TARGET_WORDS:
        raise ValueError(f"lang: expected one of {LANGUAGES}, got {lang!r}")
    words = sum(1 for w in english.split() if any(ch.isalpha() for ch in w))
    if not config.min_words <= words <= config.max_words:
        return "word_count"
    letters = [ch for ch in english if ch.isalpha()]
    if (min(_letter_fraction(english), _letter_fraction(target)) < config.min_letter_fraction
            or sum(ch.isascii() for ch in letters) < 0.9 * len(letters)):
        return "not_text"
    if _PLACEHOLDER.search(english) or _PLACEHOLDER.search(target):
        return "placeholder"
    if _MARKUP.search(english) or _MARKUP.search(target):
        return "markup"
    if _CODE.search(english) or _CODE.search(target):
        return "code"
    if english.casefold() == target.casefold():
        return "identical"
    if not config.min_ratio <= len(target) / len(english) <= config.max_ratio:
        return "length_ratio"
    if not _looks_like_target(target, english, lang, config):
        return "not_target_language"
    return None


def deduplicate(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """One pair per English text: its most frequent translation, ties to the smallest string.

    The result is sorted by English text and does not depend on the input order.
    """
    translations: dict[str, Counter] = defaultdict(Counter)
    for english, target in pairs:
        translations[english][target] += 1
    return [(english, min(counts.items(), key=lambda item: (-item[1], item[0]))[0])
            for english, counts in sorted(translations.items())]


# --------------------------------------------------------------------------------- split

def split_key(english: str) -> str:
    """The text a pair's split is hashed from: lower case, digit runs -> "0", no punctuation."""
    text = re.sub(r"\d+", "0", english.lower())
    text = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in text)
    return _collapse_spaces(text)


def _bucket(english: str) -> int:
    digest = hashlib.sha256(split_key(english).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % _SPLIT_BUCKETS


def split_of(english: str) -> str:
    """"test" (1%), "valid" (1%) or "train", from a SHA-256 of :func:`split_key`."""
    bucket = _bucket(english)
    if bucket < _TEST_BUCKETS:
        return "test"
    if bucket < _TEST_BUCKETS + _VALID_BUCKETS:
        return "valid"
    return "train"


# ----------------------------------------------------------------------------- discovery

@dataclass(frozen=True)
class CatalogRoot:
    """A folder to search for catalogs.

    ``package=None`` means installed files: their paths are recorded as they are and their
    package is looked up with ``dpkg -S``. A folder a ``.deb`` was extracted into names its
    package; its catalogs are recorded by their install path (``/`` + path in the folder).
    """

    path: Path  # folder to walk
    package: str | None = None  # Debian package the folder was extracted from
    version: str | None = None  # that package's version


def is_catalog_path(parts: Sequence[str], lang: str) -> bool:
    """Whether a path (its components, ``Path(...).parts``) is a ``lang`` catalog:
    ``.../<dir>/LC_MESSAGES/*.mo`` or ``.../<dir>.mo`` with ``<dir>`` in ``LANGUAGE_DIRS``."""
    names = LANGUAGE_DIRS[lang]
    if not parts or not parts[-1].endswith(".mo"):
        return False
    in_messages = len(parts) >= 3 and parts[-2] == "LC_MESSAGES" and parts[-3] in names
    return in_messages or parts[-1][:-3] in names


def find_catalogs(root: str | os.PathLike, lang: str) -> list[Path]:
    """Sorted ``.mo`` files for ``lang`` under ``root`` (see :func:`is_catalog_path`)."""
    if lang not in LANGUAGE_DIRS:
        raise ValueError(f"lang: expected one of {LANGUAGES}, got {lang!r}")
    found = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        here = Path(folder)
        found.extend(here / name for name in files
                     if is_catalog_path((*here.parts, name), lang))
    return sorted(found)


def _installed_packages(paths: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """Owning package and version of installed files, from one ``dpkg -S`` and one
    ``dpkg-query`` call; paths dpkg does not know are left out (also when dpkg is absent)."""
    if not paths or shutil.which("dpkg") is None:
        return {}
    found = subprocess.run(["dpkg", "-S", *paths], capture_output=True, text=True, check=False)
    owners = {}
    for line in found.stdout.splitlines():
        packages, sep, path = line.partition(": ")
        if sep and not packages.startswith("diversion "):
            owners[path.strip()] = packages.split(",")[0].strip().split(":")[0]
    versions: dict[str, str] = {}
    if owners and shutil.which("dpkg-query") is not None:
        query = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Version}\n",
                                *sorted(set(owners.values()))],
                               capture_output=True, text=True, check=False)
        for line in query.stdout.splitlines():
            name, _, version = line.partition("\t")
            versions[name] = version or None
    return {path: (package, versions.get(package)) for path, package in owners.items()}


# --------------------------------------------------------------------------------- build

def default_data_dir() -> Path:
    """``$ATTNKIT_DATA``, else ``~/.cache/attnkit``."""
    return Path(os.environ.get("ATTNKIT_DATA") or "~/.cache/attnkit").expanduser()


def corpus_dir(lang: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Folder of the ``lang`` corpus: ``<data_dir>/gettext-en-<lang>``."""
    if lang not in LANGUAGES:
        raise ValueError(f"lang: expected one of {LANGUAGES}, got {lang!r}")
    base = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    return base / f"gettext-en-{lang}"


@dataclass
class BuildResult:
    """What :func:`build_corpus` did."""

    path: Path  # the corpus folder
    manifest: dict  # the manifest now in that folder
    built: bool  # False when an existing corpus was kept (no ``force``)


def _tsv(pairs: Sequence[tuple[str, str]]) -> str:
    return "".join(f"{english}\t{target}\n" for english, target in pairs)


def _attnkit_version() -> str:
    from attnkit import __version__

    return __version__


def build_corpus(lang: str, roots: Sequence[str | os.PathLike | CatalogRoot], *,
                 data_dir: str | os.PathLike | None = None, force: bool = False,
                 config: FilterConfig = FilterConfig(), lookup_packages: bool = True,
                 log: Callable[[str], None] | None = None) -> BuildResult:
    """Build the EN->``lang`` corpus from every catalog under ``roots``.

    Args:
        lang: target language, one of :data:`LANGUAGES`.
        roots: folders to search (paths or :class:`CatalogRoot`); missing ones are an error.
        data_dir: data directory (default :func:`default_data_dir`).
        force: rebuild even if a corpus is already there.
        config: filter thresholds.
        lookup_packages: ask dpkg which package installed each plain-root catalog.
        log: called with one progress line per stage (e.g. ``print``).

    Returns:
        a :class:`BuildResult`. A catalog that cannot be read is skipped and listed in the
        manifest with its error; no readable catalog at all raises :class:`DataError`.
    """
    out = corpus_dir(lang, data_dir)
    if not force and (out / "manifest.json").is_file():
        return BuildResult(out, _read_manifest(out), built=False)
    say = log or (lambda line: None)
    catalogs = []  # (recorded path, file, package, version)
    for root in roots:
        root = root if isinstance(root, CatalogRoot) else CatalogRoot(Path(root))
        if not Path(root.path).is_dir():
            raise DataError(f"catalog root {root.path} is not a folder")
        for file in find_catalogs(root.path, lang):
            if root.package is None:
                catalogs.append((os.path.abspath(file), file, None, None))
            else:
                installed = "/" + file.relative_to(root.path).as_posix()
                catalogs.append((installed, file, root.package, root.version))
    if not catalogs:
        raise DataError(f"no {lang} catalogs (*/{lang}/LC_MESSAGES/*.mo) under "
                        f"{', '.join(str(getattr(r, 'path', r)) for r in roots)}")
    catalogs.sort(key=lambda c: (c[0], c[2] or "", c[3] or "", str(c[1])))
    owners = (_installed_packages(sorted({c[0] for c in catalogs if c[2] is None}))
              if lookup_packages else {})
    say(f"reading {len(catalogs)} catalogs")

    stage_removed = Counter()
    entries = 0
    kept: list[tuple[str, str]] = []
    sources = []
    for recorded, file, package, version in catalogs:
        if package is None:
            package, version = owners.get(recorded, (None, None))
        source = {"path": recorded, "package": package, "version": version}
        try:
            data = file.read_bytes()
            source["sha256"] = hashlib.sha256(data).hexdigest()
            catalog = parse_mo(data, source=recorded)
        except (OSError, CatalogError) as exc:
            source["error"] = (str(exc) if isinstance(exc, CatalogError)
                               else f"{recorded}: cannot read ({exc.strerror or exc})")
            sources.append(source)
            continue
        source["entries"] = len(catalog.entries)
        entries += len(catalog.entries)
        accepted = 0
        for entry in catalog.entries:
            english, target = normalize(entry.msgid), normalize(entry.translations[0])
            if not english or not target:
                stage_removed["untranslated"] += 1
                continue
            reason = reject_reason(english, target, lang, config)
            if reason is not None:
                stage_removed[reason] += 1
                continue
            kept.append((english, target))
            accepted += 1
        source["accepted"] = accepted
        sources.append(source)
    readable = [s for s in sources if "error" not in s]
    if not readable:
        raise DataError(f"none of the {len(sources)} {lang} catalogs could be read "
                        f"(first error: {sources[0]['error']})")
    pairs = deduplicate(kept)
    say(f"{entries} entries, {len(kept)} pass the filters, {len(pairs)} unique")

    remaining = entries
    stages = [{"stage": "entries", "removed": 0, "remaining": remaining}]
    for stage in ("untranslated", *REJECT_RULES):
        remaining -= stage_removed[stage]
        stages.append({"stage": stage, "removed": stage_removed[stage], "remaining": remaining})
    stages.append({"stage": "duplicates", "removed": len(kept) - len(pairs),
                   "remaining": len(pairs)})

    by_split: dict[str, list[tuple[str, str]]] = {name: [] for name in SPLITS}
    for pair in pairs:
        by_split[split_of(pair[0])].append(pair)
    previous = _read_manifest(out) if (out / "manifest.json").is_file() else None
    splits = {}
    for name in SPLITS:
        # Hash order: any prefix of a split is a fair sample of it.
        rows = sorted(by_split[name], key=lambda p: (hashlib.sha256(
            p[0].encode("utf-8")).digest(), p))
        text = _tsv(rows)
        atomic_write_text(out / f"{name}.tsv", text)
        splits[name] = {"file": f"{name}.tsv", "pairs": len(rows),
                        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    manifest = {
        "name": out.name,
        "format": FORMAT_VERSION,
        "attnkit_version": _attnkit_version(),
        "source_language": "en",
        "target_language": lang,
        "language_dirs": list(LANGUAGE_DIRS[lang]),
        "filters": config.as_dict(),
        "split": {"hash": "sha256(split_key(en))[:8] % 10000", "test_buckets": _TEST_BUCKETS,
                  "valid_buckets": _VALID_BUCKETS, "buckets": _SPLIT_BUCKETS},
        "catalogs": len(sources),
        "catalogs_skipped": len(sources) - len(readable),
        "stages": stages,
        "splits": splits,
        "sources": sources,
    }
    if previous is None or previous.get("splits", {}).get("train") != splits["train"]:
        (out / "tokenizer.json").unlink(missing_ok=True)  # trained on another train split
    atomic_write_json(out / "manifest.json", manifest)
    say(" ".join(f"{name} {splits[name]['pairs']}" for name in SPLITS) + f" pairs -> {out}")
    return BuildResult(out, manifest, built=True)


# ---------------------------------------------------------------------------------- load

def _read_manifest(path: Path) -> dict:
    import json

    try:
        return json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorpusNotFoundError(f"no corpus in {path} (build it with `attnkit data fetch "
                                  f"--lang {path.name.rsplit('-', 1)[-1]}` or `attnkit data "
                                  f"build`)") from None
    except ValueError as exc:
        raise DataError(f"{path / 'manifest.json'} is not valid JSON ({exc}); rebuild with "
                        f"--force") from exc


@dataclass
class ParallelCorpus:
    """A built corpus: each split as a list of ``(english, target)`` pairs."""

    path: Path  # the corpus folder
    lang: str  # target language
    manifest: dict  # content of manifest.json
    train: list[tuple[str, str]] = field(repr=False)
    valid: list[tuple[str, str]] = field(repr=False)
    test: list[tuple[str, str]] = field(repr=False)

    def split(self, name: str) -> list[tuple[str, str]]:
        """The pairs of split ``name`` ("train", "valid" or "test")."""
        if name not in SPLITS:
            raise ValueError(f"name: expected one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    @property
    def tokenizer_path(self) -> Path:
        return self.path / "tokenizer.json"

    def tokenizer(self, *, vocab_size: int = 8000, train: bool = True):
        """The corpus tokenizer, trained on both sides of the train split on first use.

        Args:
            vocab_size: vocabulary size when training (an existing file of another size is
                retrained).
            train: if False, a missing tokenizer raises FileNotFoundError instead.
        """
        from attnkit.data.tokenizer import load_tokenizer, train_tokenizer

        if self.tokenizer_path.is_file():
            tokenizer = load_tokenizer(self.tokenizer_path)
            if tokenizer.vocab_size == vocab_size or not train:
                return tokenizer
        elif not train:
            raise FileNotFoundError(f"no tokenizer at {self.tokenizer_path}")
        texts = [text for pair in self.train for text in pair]
        tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
        tokenizer.save(self.tokenizer_path)
        return tokenizer


def load_corpus(lang: str, data_dir: str | os.PathLike | None = None, *,
                verify: bool = True) -> ParallelCorpus:
    """Read the corpus built by :func:`build_corpus`.

    Args:
        lang: target language, one of :data:`LANGUAGES`.
        data_dir: data directory (default :func:`default_data_dir`).
        verify: check each split file against the manifest's SHA-256.
    """
    path = corpus_dir(lang, data_dir)
    manifest = _read_manifest(path)
    splits = {}
    for name in SPLITS:
        try:
            raw = (path / f"{name}.tsv").read_bytes()
        except FileNotFoundError:
            raise DataError(f"{path / (name + '.tsv')} is missing; rebuild with "
                            f"--force") from None
        if verify and hashlib.sha256(raw).hexdigest() != manifest["splits"][name]["sha256"]:
            raise DataError(f"{path / (name + '.tsv')} does not match its manifest hash; "
                            f"rebuild with --force")
        rows = raw.decode("utf-8").split("\n")[:-1]
        splits[name] = [tuple(row.split("\t", 1)) for row in rows]
    return ParallelCorpus(path=path, lang=lang, manifest=manifest, **splits)


# ------------------------------------------------------------------------------- batches

class TranslationBatches:
    """Token-budget batches of a parallel split, as ``batch_fn(step, rank, world_size)``.

    Pairs are encoded once. Pairs longer than ``max_len`` tokens (source, or target + 1)
    are dropped and counted in :attr:`num_dropped`. The rest are sorted by padded length
    (ties in a seeded random order) and cut greedily into batches whose
    ``rows * max(source length, target length + 1)`` stays within ``max_tokens``. Batch
    contents are fixed; their order is reshuffled every epoch from ``(seed, epoch)``.

    A step's batch is the global batch; rank ``r`` of ``world_size`` takes the contiguous
    rows ``[r * n // world_size, (r + 1) * n // world_size)``, so the ranks' slices are
    disjoint and together cover the batch.

    Example::

        batches = TranslationBatches(corpus.train, tokenizer, max_tokens=4096)
        batch = batches(step=0)          # {"src", "src_lengths", "tgt_in", "tgt_out"}
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], tokenizer, *, max_tokens: int = 4096,
                 max_len: int | None = 128, seed: int = 0):
        """
        Args:
            pairs: N ``(source, target)`` string pairs.
            tokenizer: anything with ``encode_batch(list[str]) -> list[list[int]]``.
            max_tokens: padded-token budget of one global batch.
            max_len: longest source (and target + 1) kept, in tokens; None keeps all.
            seed: seed of the tie order and the per-epoch batch order.
        """
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"max_tokens: expected a positive int, got {max_tokens!r}")
        if max_len is not None and (not isinstance(max_len, int) or not 1 <= max_len
                                    <= max_tokens):
            raise ValueError(f"max_len: expected None or an int in [1, max_tokens="
                             f"{max_tokens}], got {max_len!r}")
        if not pairs:
            raise ValueError("pairs: expected at least one (source, target) pair, got none")
        sources = tokenizer.encode_batch([p[0] for p in pairs])
        targets = tokenizer.encode_batch([p[1] for p in pairs])
        keep = [i for i in range(len(pairs)) if max_len is None
                or (len(sources[i]) <= max_len and len(targets[i]) + 1 <= max_len)]
        if not keep:
            raise ValueError(f"max_len: all {len(pairs)} pairs are longer than {max_len} "
                             f"tokens")
        self.num_dropped = len(pairs) - len(keep)  # pairs over max_len
        self.max_tokens, self.max_len, self.seed = max_tokens, max_len, seed
        self._sources = [sources[i] for i in keep]
        self._targets = [targets[i] for i in keep]
        src_len = np.array([len(s) for s in self._sources])
        width = np.maximum(src_len, np.array([len(t) + 1 for t in self._targets]))
        ties = np.random.default_rng(seed).permutation(len(keep))
        order = np.lexsort((ties, src_len, width))  # by width, then source length, then ties
        self._batches: list[np.ndarray] = []
        start = 0
        for end in range(1, len(order) + 1):
            if end == len(order) or (end + 1 - start) * width[order[end]] > max_tokens:
                self._batches.append(order[start:end])
                start = end
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self._batches)

    @property
    def num_pairs(self) -> int:
        """Pairs kept (after dropping those over ``max_len``)."""
        return len(self._sources)

    def batch_rows(self, step: int) -> np.ndarray:
        """Indices (into the kept pairs) of step ``step``'s global batch, shape (n,)."""
        if not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step: expected an int >= 0, got {step!r}")
        epoch, index = divmod(int(step), len(self._batches))
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch_order = (epoch, rng.permutation(len(self._batches)))
        return self._batches[self._epoch_order[1][index]]

    def __call__(self, step: int, rank: int = 0, world_size: int = 1) -> dict:
        """Rank ``rank``'s share of step ``step``'s batch.

        Returns:
            ``src`` (b, S) long, PAD-padded source ids; ``src_lengths`` (b,) long;
            ``tgt_in`` (b, T) long = BOS + target; ``tgt_out`` (b, T) long = target + EOS,
            PAD elsewhere. b is about n / world_size for the global batch's n rows.
        """
        import torch

        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size: expected an int >= 1, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank: expected an int in [0, {world_size}), got {rank!r}")
        rows = self.batch_rows(step)
        if len(rows) < world_size:
            raise ValueError(f"world_size: step {step}'s batch has {len(rows)} rows, fewer "
                             f"than world_size={world_size}; raise max_tokens")
        mine = rows[rank * len(rows) // world_size:(rank + 1) * len(rows) // world_size]
        sources = [self._sources[i] for i in mine]
        targets = [self._targets[i] for i in mine]
        src = torch.full((len(mine), max(map(len, sources))), PAD_ID, dtype=torch.long)
        tgt_in = torch.full((len(mine), max(map(len, targets)) + 1), PAD_ID, dtype=torch.long)
        tgt_out = tgt_in.clone()
        for row, (source, target) in enumerate(zip(sources, targets, strict=True)):
            src[row, :len(source)] = torch.tensor(source, dtype=torch.long)
            tgt_in[row, :len(target) + 1] = torch.tensor([BOS_ID, *target], dtype=torch.long)
            tgt_out[row, :len(target) + 1] = torch.tensor([*target, EOS_ID], dtype=torch.long)
        src_lengths = torch.tensor([len(s) for s in sources], dtype=torch.long)
        return {"src": src, "src_lengths": src_lengths, "tgt_in": tgt_in, "tgt_out": tgt_out}
