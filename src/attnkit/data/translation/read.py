"""Reading catalogs: from the folders to search, to the entries of each catalog.

:func:`locate_catalogs` lists every catalog of a language under the given roots, in a
fixed order, with the path the manifest records and the package it came from;
:func:`read_catalog` reads one (size-capped, regular files only) and returns its manifest
record and its entries, or the record with the reason it was skipped. One bad catalog
never stops a build.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from attnkit.data.errors import DataError
from attnkit.data.paths import display_path
from attnkit.data.translation.catalogs import CatalogRoot, find_catalogs, installed_packages
from attnkit.data.translation.gettext import Catalog, CatalogError, parse_mo

__all__ = ["MAX_CATALOG_BYTES", "CatalogFile", "locate_catalogs", "read_catalog"]

#: largest catalog read; the biggest real ones (LibreOffice) are a few MiB
MAX_CATALOG_BYTES = 64 << 20


@dataclass(frozen=True)
class CatalogFile:
    """One catalog to read."""

    recorded: str  # the path the manifest records: as installed, or its install path
    file: Path  # where it is on disk now
    package: str | None  # owning Debian package, if known
    version: str | None  # that package's version


def locate_catalogs(lang: str, roots: Sequence[str | os.PathLike | CatalogRoot], *,
                    lookup_packages: bool = True) -> list[CatalogFile]:
    """Every ``lang`` catalog under ``roots``, sorted by recorded path then package.

    Args:
        lang: target language, one of ``LANGUAGES``.
        roots: folders (paths or :class:`CatalogRoot`); one that is not a folder is a
            :class:`DataError`, and so is finding no catalog at all.
        lookup_packages: ask dpkg which package installed each plain-root catalog.
    """
    catalogs = []
    for root in roots:
        root = root if isinstance(root, CatalogRoot) else CatalogRoot(Path(root))
        if not Path(root.path).is_dir():
            raise DataError(f"catalog root {display_path(root.path)} is not a folder")
        for file in find_catalogs(root.path, lang):
            if root.package is None:
                catalogs.append(CatalogFile(os.path.abspath(file), file, None, None))
            else:
                installed = "/" + file.relative_to(root.path).as_posix()
                catalogs.append(CatalogFile(installed, file, root.package, root.version))
    if not catalogs:
        where = ", ".join(display_path(getattr(r, "path", r)) for r in roots)
        raise DataError(f"no {lang} catalogs (*/{lang}/LC_MESSAGES/*.mo) under {where}")
    catalogs.sort(key=lambda c: (c.recorded, c.package or "", c.version or "", str(c.file)))
    if not lookup_packages:
        return catalogs
    owners = installed_packages(sorted({c.recorded for c in catalogs if c.package is None}))
    return [CatalogFile(c.recorded, c.file, *owners.get(c.recorded, (None, None)))
            if c.package is None else c for c in catalogs]


def _read_capped(file: Path, limit: int, name: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (a link to a device, a FIFO
    or an endless file is refused before anything is read)."""
    info = file.stat()
    if not stat.S_ISREG(info.st_mode):
        raise CatalogError(f"{name}: not a regular file")
    if info.st_size > limit:
        raise CatalogError(f"{name}: {info.st_size} bytes, more than the "
                           f"{limit}-byte limit for a catalog")
    with open(file, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise CatalogError(f"{name}: grew past the {limit}-byte limit while "
                           f"being read")
    return data


def read_catalog(catalog: CatalogFile, *,
                 max_bytes: int = MAX_CATALOG_BYTES) -> tuple[dict, Catalog | None]:
    """``(source, catalog)``: the manifest record of ``catalog`` (path, package, version,
    sha256) and its decoded content; ``(source with "error", None)`` when it cannot be read
    or decoded."""
    recorded = display_path(catalog.recorded)
    source: dict = {"path": recorded, "package": catalog.package, "version": catalog.version}
    try:
        data = _read_capped(catalog.file, max_bytes, recorded)
        source["sha256"] = hashlib.sha256(data).hexdigest()
        return source, parse_mo(data, source=recorded)
    except CatalogError as exc:
        source["error"] = str(exc)
    except OSError as exc:
        source["error"] = f"{recorded}: cannot read ({exc.strerror or exc})"
    return source, None
