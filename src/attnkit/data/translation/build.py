"""Building a corpus: read the catalogs, filter, deduplicate, split, write it atomically.

:func:`build_corpus` chains the stages of this package: :mod:`.read` (catalogs ->
entries), :mod:`.filters` (normalize, reject, deduplicate), :mod:`.split` (hash split) and
:mod:`.manifest`. The split files and the manifest are written into a temporary folder
next to the corpus, which then replaces the corpus folder: an interrupted build leaves the
previous corpus (or none), never a half-written one that loads as valid.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from attnkit._io import atomic_write_json, atomic_write_text
from attnkit._validate import check_bool, check_choice
from attnkit.data.errors import CorpusNotFoundError, DataError
from attnkit.data.translation.catalogs import CatalogRoot
from attnkit.data.translation.corpus import corpus_dir
from attnkit.data.translation.filters import FilterConfig, deduplicate, filter_entries
from attnkit.data.translation.languages import LANGUAGES
from attnkit.data.translation.manifest import make_manifest, read_manifest, stage_counts
from attnkit.data.translation.read import locate_catalogs, read_catalog
from attnkit.data.translation.split import SPLITS, split_pairs

__all__ = ["BuildResult", "build_corpus"]


@dataclass
class BuildResult:
    """What :func:`build_corpus` did."""

    path: Path  # the corpus folder
    manifest: dict  # the manifest now in that folder
    built: bool  # False when an existing corpus was kept (no ``force``)


def _tsv(pairs: Sequence[tuple[str, str]]) -> str:
    return "".join(f"{english}\t{target}\n" for english, target in pairs)


def _previous_manifest(out: Path) -> dict | None:
    try:
        return read_manifest(out)
    except DataError:  # none, or broken: nothing to keep from it
        return None


def _publish(out: Path, texts: dict[str, str], manifest: dict, keep_tokenizer: bool) -> None:
    """Write ``texts`` (file name -> content) and the manifest into a fresh folder, then
    swap it in for ``out``; the tokenizer moves over when ``keep_tokenizer``."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.build-"))
    except OSError as exc:
        raise DataError(f"data_dir: cannot write a corpus in {out.parent} "
                        f"({exc.strerror or exc})") from exc
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    try:
        os.chmod(work, 0o755)  # mkdtemp makes 0700; a corpus is meant to be shared
        for name, text in texts.items():
            atomic_write_text(work / name, text)
        if keep_tokenizer and out.is_dir():
            for cached in out.glob("tokenizer-*.json"):
                shutil.copy2(cached, work / cached.name)
        atomic_write_json(work / "manifest.json", manifest)  # last: it marks a complete build
        if out.exists():
            os.replace(out, old)
        os.replace(work, out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def build_corpus(lang: str, roots: Sequence[str | os.PathLike | CatalogRoot], *,
                 data_dir: str | os.PathLike | None = None, force: bool = False,
                 config: FilterConfig | None = None, lookup_packages: bool = True,
                 log: Callable[[str], None] | None = None) -> BuildResult:
    """Build the EN->``lang`` corpus from every catalog under ``roots``.

    Args:
        lang: target language, one of :data:`LANGUAGES`.
        roots: folders to search (paths or :class:`CatalogRoot`); missing ones are an error.
        data_dir: data directory (default :func:`attnkit.data.default_data_dir`).
        force: rebuild even if a corpus is already there.
        config: filter thresholds (default :class:`FilterConfig` ()).
        lookup_packages: ask dpkg which package installed each plain-root catalog.
        log: called with one progress line per stage (e.g. ``print``).

    Returns:
        a :class:`BuildResult`. A catalog that cannot be read or decoded is skipped and
        listed in the manifest with its error; no readable catalog at all raises
        :class:`DataError`.
    """
    check_choice(lang, "lang", LANGUAGES)
    check_bool(force, "force")
    check_bool(lookup_packages, "lookup_packages")
    config = FilterConfig() if config is None else config
    if not isinstance(config, FilterConfig):
        raise TypeError(f"config: expected a FilterConfig, got {type(config).__name__}")
    if isinstance(roots, (str, bytes, os.PathLike)):
        raise TypeError(f"roots: expected a sequence of folders, got one "
                        f"{type(roots).__name__} ({roots!r}); wrap it in a list")
    roots = list(roots)
    out = corpus_dir(lang, data_dir)
    if not force:
        try:
            return BuildResult(out, read_manifest(out), built=False)
        except CorpusNotFoundError:
            pass
    say = log or (lambda line: None)
    catalogs = locate_catalogs(lang, roots, lookup_packages=lookup_packages)
    say(f"reading {len(catalogs)} catalogs")

    removed, kept, sources, entries = Counter(), [], [], 0
    for catalog in catalogs:
        source, content = read_catalog(catalog)
        sources.append(source)
        if content is None:
            continue
        accepted = filter_entries(content.entries, lang, config, removed)
        source["entries"], source["accepted"] = len(content.entries), len(accepted)
        entries += len(content.entries)
        kept += accepted
    if all("error" in source for source in sources):
        raise DataError(f"none of the {len(sources)} {lang} catalogs could be read "
                        f"(first error: {sources[0]['error']})")
    pairs = deduplicate(kept)
    say(f"{entries} entries, {len(kept)} pass the filters, {len(pairs)} unique")

    rows = split_pairs(pairs)
    texts = {f"{name}.tsv": _tsv(rows[name]) for name in SPLITS}
    splits = {name: {"file": f"{name}.tsv", "pairs": len(rows[name]),
                     "sha256": hashlib.sha256(texts[f"{name}.tsv"].encode()).hexdigest()}
              for name in SPLITS}
    refused = [{"package": root.package, "member": member, "reason": reason}
               for root in roots if isinstance(root, CatalogRoot)
               for member, reason in root.refused]
    manifest = make_manifest(out.name, lang, config, sources=sources, refused=refused,
                             stages=stage_counts(entries, removed, len(kept), len(pairs)),
                             splits=splits)
    previous = _previous_manifest(out)
    same_train = previous is not None and previous["splits"]["train"] == splits["train"]
    _publish(out, texts, manifest, keep_tokenizer=same_train)
    say(" ".join(f"{name} {splits[name]['pairs']}" for name in SPLITS) + f" pairs -> {out}")
    return BuildResult(out, manifest, built=True)
