"""Where gettext catalogs are: the locale folders, the catalog path rule, and their owners.

Free-software programs install their translated messages as ``.mo`` catalogs
(``<lang>/LC_MESSAGES/<domain>.mo``). :func:`find_catalogs` walks a folder for the catalogs
of one language (:func:`is_catalog_path`); a :class:`CatalogRoot` says whether a folder holds
installed files (their package is asked of ``dpkg``, :func:`installed_packages`) or a
``.deb`` unpacked by :mod:`attnkit.data.translation.fetch` (it names its package).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from attnkit._validate import check_choice
from attnkit.data.errors import DataError
from attnkit.data.translation.languages import LANGUAGE_DIRS, LANGUAGES

__all__ = ["DEFAULT_ROOTS", "default_roots", "CatalogRoot", "is_catalog_path",
           "find_catalogs", "installed_packages"]

#: where installed systems keep catalogs (the ones that exist are searched)
DEFAULT_ROOTS = ("/usr/share/locale", "/usr/share/locale-langpack", "/usr/local/share/locale")


def default_roots() -> list[Path]:
    """The folders of :data:`DEFAULT_ROOTS` that exist here."""
    return [Path(root) for root in DEFAULT_ROOTS if Path(root).is_dir()]


@dataclass(frozen=True)
class CatalogRoot:
    """A folder to search for catalogs.

    ``package=None`` means installed files: their paths are recorded as they are and their
    package is looked up with ``dpkg -S``. A folder a ``.deb`` was extracted into names its
    package; its catalogs are recorded by their install path (``/`` + path in the folder),
    and ``refused`` lists the archive members that were not written (unsafe paths, links)
    with the reason, for the corpus manifest.
    """

    path: Path  # folder to walk
    package: str | None = None  # Debian package the folder was extracted from
    version: str | None = None  # that package's version
    refused: tuple[tuple[str, str], ...] = ()  # (archive member, reason) not extracted


def is_catalog_path(parts: Sequence[str], lang: str) -> bool:
    """Whether a path (its components, ``Path(...).parts``) is a ``lang`` catalog:
    ``.../<dir>/LC_MESSAGES/*.mo`` or ``.../<dir>.mo`` with ``<dir>`` in ``LANGUAGE_DIRS``."""
    names = LANGUAGE_DIRS[lang]
    if not parts or not parts[-1].endswith(".mo"):
        return False
    in_messages = len(parts) >= 3 and parts[-2] == "LC_MESSAGES" and parts[-3] in names
    return in_messages or parts[-1][:-3] in names




def find_catalogs(root: str | os.PathLike, lang: str) -> list[Path]:
    """Sorted ``.mo`` files for ``lang`` under ``root`` (see :func:`is_catalog_path`).

    Raises :class:`DataError` for a folder that cannot be listed, rather than leaving its
    catalogs out without a word.
    """
    check_choice(lang, "lang", LANGUAGES)

    def unreadable(exc: OSError) -> None:
        raise DataError(f"cannot list catalog folder {exc.filename}: "
                        f"{exc.strerror or exc}") from exc

    found = []
    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs.sort()
        here = Path(folder)
        found.extend(here / name for name in files
                     if is_catalog_path((*here.parts, name), lang))
    return sorted(found)


def installed_packages(paths: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """Owning package and version of installed files, from one ``dpkg -S`` and one
    ``dpkg-query`` call; paths dpkg does not know are left out (also when dpkg is absent)."""
    if not paths or shutil.which("dpkg") is None:
        return {}
    # surrogateescape: a path that is not UTF-8 comes back as the str os.walk gave for it.
    found = subprocess.run(["dpkg", "-S", *paths], capture_output=True, text=True,
                           errors="surrogateescape", check=False)
    owners = {}
    for line in found.stdout.splitlines():
        packages, sep, path = line.partition(": ")
        if sep and not packages.startswith("diversion "):
            owners[path.strip()] = packages.split(",")[0].strip().split(":")[0]
    versions: dict[str, str] = {}
    if owners and shutil.which("dpkg-query") is not None:
        query = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Version}\n",
                                *sorted(set(owners.values()))],
                               capture_output=True, text=True, errors="replace",
                               check=False)
        for line in query.stdout.splitlines():
            name, _, version = line.partition("\t")
            versions[name] = version or None
    return {path: (package, versions.get(package)) for path, package in owners.items()}


