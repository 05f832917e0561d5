"""The corpus manifest: what a built corpus was made from and what each stage removed.

``manifest.json`` records the sources (path, package, version, SHA-256, entries read and
accepted, or the reason a catalog was skipped), the archive members a fetch refused, the
filter thresholds, the split rule, the count after each stage, and each split file's pair
count and SHA-256. It holds no timestamps: the same catalogs give the same bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from attnkit.data.errors import CorpusNotFoundError, DataError
from attnkit.data.translation.filters import REJECT_RULES, FilterConfig
from attnkit.data.translation.languages import LANGUAGE_DIRS
from attnkit.data.translation.split import SPLIT_BUCKETS, SPLITS, TEST_BUCKETS, VALID_BUCKETS

__all__ = ["FORMAT_VERSION", "stage_counts", "make_manifest", "read_manifest"]

FORMAT_VERSION = 1
_REQUIRED = ("name", "format", "attnkit_version", "catalogs", "catalogs_skipped", "stages",
             "splits", "sources")


def stage_counts(entries: int, removed: Counter, kept: int, unique: int) -> list[dict]:
    """The manifest's ``stages``: entries read, then what "untranslated", each rule of
    ``REJECT_RULES`` and deduplication removed, with what remained after each."""
    remaining = entries
    stages = [{"stage": "entries", "removed": 0, "remaining": remaining}]
    for stage in ("untranslated", *REJECT_RULES):
        remaining -= removed[stage]
        stages.append({"stage": stage, "removed": removed[stage], "remaining": remaining})
    stages.append({"stage": "duplicates", "removed": kept - unique, "remaining": unique})
    return stages


def _attnkit_version() -> str:
    # The installed distribution's version: the package facade (attnkit.__version__) sits
    # above this layer.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attnkit")
    except PackageNotFoundError:
        return "unknown"


def make_manifest(name: str, lang: str, config: FilterConfig, *, sources: list[dict],
                  refused: list[dict], stages: list[dict], splits: dict[str, dict]) -> dict:
    """The manifest of a corpus named ``name`` (its folder name), as a JSON-ready dict."""
    return {
        "name": name,
        "format": FORMAT_VERSION,
        "attnkit_version": _attnkit_version(),
        "source_language": "en",
        "target_language": lang,
        "language_dirs": list(LANGUAGE_DIRS[lang]),
        "filters": config.as_dict(),
        "split": {"hash": "sha256(split_key(en))[:8] % 10000", "test_buckets": TEST_BUCKETS,
                  "valid_buckets": VALID_BUCKETS, "buckets": SPLIT_BUCKETS},
        "catalogs": len(sources),
        "catalogs_skipped": sum("error" in s for s in sources),
        "stages": stages,
        "splits": splits,
        "sources": sources,
        "refused_members": refused,
    }


def _check(manifest: object, where: Path) -> dict:
    """``manifest`` if it has the fields loading relies on; :class:`DataError` otherwise."""
    rebuild = f"{where} is not a corpus manifest of format {FORMAT_VERSION}"
    if not isinstance(manifest, dict) or any(key not in manifest for key in _REQUIRED):
        raise DataError(f"{rebuild} (fields missing); rebuild with --force")
    if manifest["format"] != FORMAT_VERSION:
        raise DataError(f"{rebuild} (format {manifest['format']!r}); rebuild with --force")
    splits = manifest["splits"]
    if not isinstance(splits, dict) or any(
            not isinstance(splits.get(name), dict) or not {"pairs", "sha256"} <= set(
                splits[name]) for name in SPLITS):
        raise DataError(f"{rebuild} (bad splits); rebuild with --force")
    if not isinstance(manifest["sources"], list) or not isinstance(manifest["stages"], list):
        raise DataError(f"{rebuild} (bad sources or stages); rebuild with --force")
    return manifest


def read_manifest(path: Path) -> dict:
    """The manifest of the corpus folder ``path``.

    Raises :class:`CorpusNotFoundError` when there is none and :class:`DataError` when it
    is not a readable manifest of this format.
    """
    file = path / "manifest.json"
    try:
        text = file.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        lang = path.name.rsplit("-", 1)[-1]
        raise CorpusNotFoundError(f"no corpus in {path} (build it with `attnkit data fetch "
                                  f"--lang {lang}` or `attnkit data build`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise DataError(f"cannot read {file} ({reason}); rebuild with --force") from exc
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise DataError(f"{file} is not valid JSON ({exc}); rebuild with --force") from exc
    return _check(manifest, file)
