"""Fetch more gettext catalogs as Debian packages, without installing anything.

A base system carries catalogs of only a few programs. The Debian packages in
:data:`DEBIAN_PACKAGES` (measured to hold about 63k clean EN-FR and 58k EN-DE pairs
together) are downloaded with ``apt-get download`` and read with ``dpkg-deb
--fsys-tarfile``. Only the ``.mo`` files of the requested language are written out (about
20 MB, where ``dpkg-deb -x`` of every package would write about 900 MB), one folder per
package, so every catalog keeps its package name and version for the corpus manifest.

Needs ``apt-get`` and ``dpkg-deb`` (a Debian-like system) and apt's package lists
(``apt-get update``) for the network download; :func:`extract_debs` alone works on
``.deb`` files obtained any other way. A ``.deb`` is untrusted input: its members go
through :func:`attnkit.data.archive.extract_members` (nothing written outside the target,
no links, size caps), the members it refuses are recorded on the returned roots (and so in
the corpus manifest), and a package name that is not a Debian package name is refused
before it names a folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from attnkit._validate import check_choice
from attnkit.data.archive import MAX_MEMBER_BYTES, MAX_TOTAL_BYTES, extract_members
from attnkit.data.errors import DataError
from attnkit.data.paths import display_path
from attnkit.data.translation.catalogs import CatalogRoot, is_catalog_path
from attnkit.data.translation.languages import LANGUAGES

__all__ = ["DEBIAN_PACKAGES", "FetchError", "FetchResult", "packages_for", "fetch_debian",
           "extract_debs"]

#: Debian packages whose catalogs form the corpus (Debian 12 names). A ``-l10n-<lang>``
#: package is only fetched for its own language.
DEBIAN_PACKAGES: tuple[str, ...] = (
    "libreoffice-l10n-fr", "libreoffice-l10n-de", "gcc-12-locales", "util-linux-locales",
    "krita-l10n", "gnumeric-common", "audacity-data", "libgtk-3-common", "vlc-l10n",
    "gnucash-common", "gramps", "pidgin-data", "filezilla-common", "grub-common",
    "evolution-common", "digikam-data", "inkscape", "gimp-data", "git", "postgresql-15",
    "postgresql-client-15", "binutils-common", "vim-runtime", "gnupg-l10n", "libc-l10n",
    "coreutils", "libglib2.0-data", "libgtk2.0-common", "dpkg", "apt", "systemd",
    "shared-mime-info", "gsettings-desktop-schemas", "appstream", "procps", "tar", "wget",
    "make", "diffutils", "findutils", "sed", "grep", "bash", "libgstreamer1.0-0", "libgnutls30",
)

_L10N_SUFFIX = re.compile(r"-l10n-([a-z]{2,3})$")
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]{1,127}$")  # Debian Policy 5.6.1


class FetchError(DataError, RuntimeError):
    """Catalog packages cannot be fetched or unpacked here."""


@dataclass
class FetchResult:
    """Catalog folders unpacked by :func:`fetch_debian`."""

    roots: list[CatalogRoot]  # one folder per package, with its name and version
    debs: list[Path]  # the downloaded .deb files
    missing: list[str] = field(default_factory=list)  # packages apt had no candidate for


def packages_for(lang: str, packages: Iterable[str] | None = None) -> list[str]:
    """``packages`` (default :data:`DEBIAN_PACKAGES`) minus other languages' l10n packages."""
    check_choice(lang, "lang", LANGUAGES)
    names = DEBIAN_PACKAGES if packages is None else tuple(packages)
    chosen = []
    for name in names:
        match = _L10N_SUFFIX.search(name)
        if match is None or match.group(1) == lang:
            chosen.append(name)
    return chosen


def _require(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise FetchError(f"fetching catalogs needs {' and '.join(tools)} (a Debian-like "
                         f"system); {', '.join(missing)} not found on PATH. Build from "
                         f"catalogs you have instead: attnkit data build --roots DIR")


def _run(command: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(list(command), capture_output=True, text=True, errors="replace",
                          check=False, **kwargs)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.startswith("E:")]
        reason = (lines or done.stderr.strip().splitlines() or ["no message"])[-1]
        raise FetchError(f"`{command[0]} {command[1]}` failed (exit {done.returncode}): "
                         f"{reason}")
    return done


def _with_candidates(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``names`` into packages apt can download and those it has no candidate for."""
    policy = _run(["apt-cache", "policy", *names]).stdout
    available, current = set(), None
    for line in policy.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1]
        elif current and line.strip().startswith("Candidate:"):
            if line.split(":", 1)[1].strip() != "(none)":
                available.add(current)
    return ([n for n in names if n in available], [n for n in names if n not in available])


def fetch_debian(lang: str, packages: Iterable[str] | None = None,
                 dest: str | os.PathLike | None = None, *,
                 log: Callable[[str], None] | None = None) -> FetchResult:
    """Download the catalog packages for ``lang`` and unpack their ``lang`` catalogs.

    Args:
        lang: target language, one of ("fr", "de").
        packages: Debian package names (default :func:`packages_for` ``(lang)``).
        dest: work folder; gets ``debs/`` (the downloads) and ``extract/<package>/``.
        log: called with one progress line per stage.

    Returns:
        a :class:`FetchResult`. Nothing is installed. Raises :class:`FetchError` without
        apt-get/dpkg-deb, when apt knows none of the packages, or when a download fails.
    """
    _require("apt-get", "apt-cache", "dpkg-deb")
    if dest is None:
        raise ValueError("dest: expected a work folder for the downloads, got None")
    say = log or (lambda line: None)
    names = packages_for(lang, packages)
    available, missing = _with_candidates(names)
    if not available:
        raise FetchError(f"apt knows none of the {len(names)} catalog packages; run "
                         f"`apt-get update` first")
    debs_dir = Path(dest) / "debs"
    debs_dir.mkdir(parents=True, exist_ok=True)
    # apt downloads as the unprivileged _apt user when it can write the folder.
    os.chmod(debs_dir, 0o777)
    say(f"downloading {len(available)} packages with apt-get download"
        + (f" ({len(missing)} unavailable: {', '.join(missing)})" if missing else ""))
    _run(["apt-get", "download", "-q", *available], cwd=debs_dir)
    debs = sorted(debs_dir.glob("*.deb"))
    roots = extract_debs(debs, Path(dest) / "extract", lang, log=say)
    return FetchResult(roots=roots, debs=debs, missing=missing)


def _package_info(deb: Path) -> tuple[str, str | None]:
    """``(Package, Version)`` of ``deb``; the name is checked before it names a folder."""
    fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"]).stdout
    info = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
    if "Package" not in info:
        raise FetchError(f"{display_path(deb)} has no Package field; is it a .deb?")
    if not _PACKAGE_NAME.match(info["Package"]):
        raise FetchError(f"{display_path(deb)}: Package field {info['Package']!r:.80} is not "
                         f"a Debian package name")
    return info["Package"], info.get("Version")


def _unpack(deb: Path, target: Path, lang: str | None,
            **limits: int) -> tuple[int, int, list[tuple[str, str]]]:
    """Stream ``deb``'s file tree through :func:`extract_members` into ``target``."""
    def wanted(path: PurePosixPath) -> bool:
        return path.name.endswith(".mo") and (lang is None or is_catalog_path(path.parts, lang))

    with tempfile.TemporaryFile() as errors:
        with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                              stdout=subprocess.PIPE, stderr=errors) as unpack:
            try:
                result = extract_members(unpack.stdout, target, wanted,
                                         source=display_path(deb), **limits)
            except BaseException:
                unpack.kill()
                raise
        errors.seek(0)
        error = errors.read().decode(errors="replace").strip()
    if unpack.returncode != 0:
        raise FetchError(f"`dpkg-deb --fsys-tarfile {display_path(deb)}` failed: "
                         f"{error or 'no message'}")
    return result


def extract_debs(debs: Iterable[str | os.PathLike], dest: str | os.PathLike,
                 lang: str | None = None, *, log: Callable[[str], None] | None = None,
                 max_member_bytes: int = MAX_MEMBER_BYTES,
                 max_total_bytes: int = MAX_TOTAL_BYTES) -> list[CatalogRoot]:
    """Unpack the ``.mo`` catalogs of each ``.deb`` into ``dest/<package>/``.

    Args:
        debs: ``.deb`` files.
        dest: folder to unpack into (created).
        lang: keep only this language's catalogs (None: every ``.mo``).
        log: called with one progress line (and one per package with refused members).
        max_member_bytes: largest catalog extracted; a larger one is an error.
        max_total_bytes: most bytes extracted from all the packages together.

    Returns:
        one :class:`CatalogRoot` per package, in package order, naming package and version
        (read with ``dpkg-deb -f``) and the members refused (unsafe paths, links). Raises
        :class:`FetchError` (or :class:`attnkit.data.archive.ArchiveError`) for a file that
        is not a package or goes past a size limit.
    """
    _require("dpkg-deb")
    if lang is not None:
        check_choice(lang, "lang", LANGUAGES)
    debs = sorted(Path(d).absolute() for d in debs)  # absolute: a name never reads as a flag
    if not debs:
        raise FetchError("no .deb files to unpack")
    say = log or (lambda line: None)
    roots, catalogs, written = [], 0, 0
    for deb in debs:
        package, version = _package_info(deb)
        target = Path(dest) / package
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        files, size, refused = _unpack(deb, target, lang, max_member_bytes=max_member_bytes,
                                       max_total_bytes=max_total_bytes,
                                       already_written=written)
        catalogs, written = catalogs + files, written + size
        if refused:
            say(f"{package}: refused {len(refused)} members, e.g. {refused[0][0]} "
                f"({refused[0][1]})")
        roots.append(CatalogRoot(target, package, version, tuple(refused)))
    say(f"unpacked {catalogs} catalogs from {len(debs)} packages")
    return sorted(roots, key=lambda r: (r.package, r.version or ""))
