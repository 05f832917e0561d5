"""Reading files out of a tar stream without letting the archive choose where they go.

A tar member's name is data written by whoever made the archive: it may be absolute
(``/etc/cron.d/job``), climb out with ``..``, or be a link that points anywhere, and its
size may be anything. :func:`extract_members` writes only regular files whose cleaned
relative path stays inside the target folder, never creates a link, caps the size of each
member and of the whole extraction, and returns the members it refused with the reason
(Python's own ``tarfile`` "data" filter makes the same choices for whole-archive
extraction; here only the members a caller wants are written, streamed).
"""

from __future__ import annotations

import errno
import os
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

from attnkit.data.errors import DataError
from attnkit.data.paths import display_path

__all__ = ["ArchiveError", "MAX_MEMBER_BYTES", "MAX_TOTAL_BYTES", "MAX_REFUSED_RECORDED",
           "member_path", "extract_members"]

MAX_MEMBER_BYTES = 64 << 20  # one member; the largest real catalogs are a few MiB
MAX_TOTAL_BYTES = 2 << 30  # one extraction; the Debian catalog set is about 20 MB
MAX_REFUSED_RECORDED = 100  # refused members named one by one; the rest are counted
_CHUNK = 1 << 20
# a path taken by a file, a folder or a link already there (ELOOP: O_NOFOLLOW met a link)
_CLASHES = (errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ELOOP)


class ArchiveError(DataError):
    """An archive that cannot be extracted within the limits (or is not a tar stream)."""


def member_path(name: str) -> PurePosixPath:
    """The relative path a member named ``name`` may be written at.

    ``.`` components and empty ones are dropped. Raises ``ValueError`` with the reason for
    an absolute name, a ``..`` component, a NUL byte or a name with nothing left.
    """
    if "\x00" in name:
        raise ValueError("NUL byte in the name")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise ValueError("absolute path")
    parts = [part for part in path.parts if part not in ("", ".")]
    if ".." in parts:
        raise ValueError("'..' in the path")
    if not parts:
        raise ValueError("empty name")
    return PurePosixPath(*parts)


def _copy(source: IO[bytes], out: Path, size: int) -> None:
    # O_NOFOLLOW: never write through a link, even one this process did not make.
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        left = size
        while left > 0:
            chunk = source.read(min(_CHUNK, left))
            if not chunk:
                raise ArchiveError(f"{display_path(out)}: the archive ends inside this member")
            handle.write(chunk)
            left -= len(chunk)


def _refusal(member: tarfile.TarInfo, wanted: Callable[[PurePosixPath], bool]) -> str | None:
    """Why ``member`` is refused; None to extract it; "" to pass over it in silence."""
    if member.isdir():  # folders are made as the files in them need them
        return ""
    try:
        relative = member_path(member.name)
    except ValueError as exc:
        return str(exc)
    if not wanted(relative):
        return ""
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        return f"{kind} link to {display_path(member.linkname)!r} (links are not extracted)"
    if not member.isfile():
        return "not a regular file"
    return None


def extract_members(stream: IO[bytes], target: str | os.PathLike,
                    wanted: Callable[[PurePosixPath], bool], *, source: str,
                    max_member_bytes: int = MAX_MEMBER_BYTES,
                    max_total_bytes: int = MAX_TOTAL_BYTES,
                    already_written: int = 0) -> tuple[int, int, list]:
    """Write the wanted regular-file members of the tar ``stream`` under ``target``.

    Args:
        stream: a readable binary stream holding a tar archive (read once, to its end).
        target: folder to write into (must exist); nothing is written outside it.
        wanted: called with each safe relative member path; True to extract it.
        source: a name for error messages (the archive's file).
        max_member_bytes: largest member extracted; a larger wanted one is an
            :class:`ArchiveError`.
        max_total_bytes: most bytes written in all (``already_written`` by earlier
            archives of the same extraction included); going past it is an
            :class:`ArchiveError`.
        already_written: bytes earlier archives of the same extraction wrote.

    Returns:
        ``(files, bytes, refused)``: files and bytes written, and ``(member name, reason)``
        for each member refused (unsafe path, link, special file), the first
        :data:`MAX_REFUSED_RECORDED` by name and the rest counted in one last entry.
    """
    target = Path(target)
    root = os.path.realpath(target)
    refused: list[tuple[str, str]] = []
    unrecorded = files = total = 0

    def refuse(name: str, reason: str) -> None:
        nonlocal unrecorded
        if len(refused) < MAX_REFUSED_RECORDED:
            refused.append((name, reason))
        else:
            unrecorded += 1

    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                name = display_path(member.name)
                reason = _refusal(member, wanted)
                if reason:
                    refuse(name, reason)
                if reason is not None:
                    continue
                if member.size > max_member_bytes:
                    raise ArchiveError(f"{source}: member {name} is {member.size} bytes, over "
                                       f"the {max_member_bytes}-byte limit for one member")
                if already_written + total + member.size > max_total_bytes:
                    raise ArchiveError(f"{source}: extracting member {name} would pass the "
                                       f"{max_total_bytes}-byte limit for the extraction")
                out = target.joinpath(*member_path(member.name).parts)
                if os.path.commonpath([root, os.path.realpath(out.parent)]) != root:
                    refuse(name, "its folder resolves outside the target")
                    continue
                try:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    _copy(archive.extractfile(member), out, member.size)
                except OSError as exc:
                    if exc.errno not in _CLASHES:
                        raise
                    refuse(name, f"clashes with another member or a link ({exc.strerror})")
                    continue
                files, total = files + 1, total + member.size
    except tarfile.TarError as exc:
        raise ArchiveError(f"{source}: unreadable archive contents ({exc})") from exc
    while stream.read(_CHUNK):  # drain end-of-archive padding so a writer process exits
        pass
    if unrecorded:
        refused.append(("...", f"{unrecorded} more members refused"))
    return files, total, refused
