"""Reader for GNU gettext ``.mo`` catalogs (compiled message catalogs).

Follows the binary layout documented in the GNU gettext manual, section "The Format of
GNU MO Files": a header of 32-bit words (magic ``0x950412de`` written in the producer's
byte order, file format revision, number of strings N, offset of the table of original
strings, offset of the table of translations, hash table size and offset), then two
tables of N ``(length, offset)`` descriptors pointing at NUL-terminated strings.

- An original string ``context + "\\x04" + msgid`` carries a ``msgctxt``.
- Plural entries store ``msgid + "\\0" + msgid_plural`` and their translation forms
  joined by ``"\\0"``.
- The entry with an empty msgid (and no context) is the header; its ``Content-Type``
  gives the charset every other string is decoded with.

The hash table is not used: all entries are read in table order. :func:`compile_mo` /
:func:`write_mo` go the other way (no hash table; readers such as this one and GNU
gettext's own fall back to a search), for tests and small hand-made catalogs. Bad files raise
:class:`CatalogError` (a :class:`ValueError`) naming the file and the problem, so a corpus
builder can skip one bad catalog and carry on.
"""

from __future__ import annotations

import codecs
import os
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CatalogEntry", "Catalog", "CatalogError", "parse_mo", "read_mo", "compile_mo",
           "write_mo", "text_codec", "MO_MAGIC"]

MO_MAGIC = 0x950412DE
_HEADER_WORDS = 7  # magic, revision, N, O, T, S, H
_SUPPORTED_MAJOR_REVISIONS = (0, 1)


class CatalogError(ValueError):
    """A ``.mo`` file that cannot be read: truncated, not a catalog, or an unknown charset."""


@dataclass(frozen=True)
class CatalogEntry:
    """One message of a catalog.

    ``translations`` holds every plural form (one item for a non-plural message); the
    singular msgid pairs with ``translations[0]``.
    """

    context: str | None  # msgctxt, or None when the message has none
    msgid: str  # the original (singular) string
    msgid_plural: str | None  # the original plural string, or None
    translations: tuple[str, ...]  # msgstr, or msgstr[0], msgstr[1], ... for plurals


@dataclass(frozen=True)
class Catalog:
    """The decoded content of one ``.mo`` file (the header entry is not in ``entries``)."""

    entries: tuple[CatalogEntry, ...]  # every non-header message, in file order
    headers: dict[str, str]  # "Key: value" lines of the header entry
    charset: str  # the codec name the strings were decoded with
    revision: int  # file format revision word


def read_mo(path: str | os.PathLike) -> Catalog:
    """Read and decode the ``.mo`` file at ``path``; raises :class:`CatalogError` if unreadable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror or exc}") from exc
    return parse_mo(data, source=str(path))


def parse_mo(data: bytes, *, source: str = "<bytes>") -> Catalog:
    """Decode the bytes of a ``.mo`` file.

    Args:
        data: the whole file content.
        source: a name for error messages (usually the file path).

    Returns:
        the :class:`Catalog`; raises :class:`CatalogError` on truncated or garbage input or
        an unknown charset.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    raw = _raw_pairs(data, source)
    header_bytes = next((t for o, t in raw if o == b""), None)
    charset = _charset(header_bytes, source)
    entries = []
    headers: dict[str, str] = {}
    for original, translation in raw:
        try:
            orig_text = original.decode(charset)
            trans_text = translation.decode(charset)
        except ValueError as exc:  # UnicodeDecodeError, or UnicodeError from e.g. idna
            where = (f" (byte offset {exc.start} of the string)"
                     if isinstance(exc, UnicodeDecodeError) else "")
            raise CatalogError(f"{source}: a string is not valid {charset}{where}") from exc
        if orig_text == "":
            headers = _parse_header(trans_text)
            continue
        context, sep, ident = orig_text.rpartition("\x04")
        msgid, _, plural = ident.partition("\x00")
        entries.append(CatalogEntry(
            context=context if sep else None,
            msgid=msgid,
            msgid_plural=plural if "\x00" in ident else None,
            translations=tuple(trans_text.split("\x00")),
        ))
    revision = struct.unpack_from(_byte_order(data, source) + "I", data, 4)[0]
    return Catalog(entries=tuple(entries), headers=headers, charset=charset, revision=revision)


def _byte_order(data: bytes, source: str) -> str:
    if len(data) < 4 * _HEADER_WORDS:
        raise CatalogError(f"{source}: not a .mo catalog (only {len(data)} bytes, the header "
                           f"alone takes {4 * _HEADER_WORDS})")
    if struct.unpack_from("<I", data, 0)[0] == MO_MAGIC:
        return "<"
    if struct.unpack_from(">I", data, 0)[0] == MO_MAGIC:
        return ">"
    raise CatalogError(f"{source}: not a .mo catalog (magic {data[:4].hex()}, expected "
                       f"950412de in either byte order)")


def _raw_pairs(data: bytes, source: str) -> list[tuple[bytes, bytes]]:
    order = _byte_order(data, source)
    _, revision, count, orig_offset, trans_offset = struct.unpack_from(order + "5I", data, 0)
    if revision >> 16 not in _SUPPORTED_MAJOR_REVISIONS:
        raise CatalogError(f"{source}: unsupported .mo major revision {revision >> 16} "
                           f"(expected 0 or 1)")
    size = len(data)
    tables = {}
    for name, offset in (("original", orig_offset), ("translation", trans_offset)):
        if offset + 8 * count > size:
            raise CatalogError(f"{source}: truncated: the {name} table ({count} entries at "
                               f"offset {offset}) runs past the end of the {size}-byte file")
        tables[name] = struct.unpack_from(f"{order}{2 * count}I", data, offset)
        for index in range(count):
            length, at = tables[name][2 * index], tables[name][2 * index + 1]
            if at + length > size:
                raise CatalogError(f"{source}: truncated: {name} string {index} (length "
                                   f"{length} at offset {at}) runs past the end of the "
                                   f"{size}-byte file")
    # Every string is stored once, so all of them fit in the file. Descriptors that point
    # at the same bytes again and again would make the decoded catalog grow with the
    # square of the file size (a 64 KiB file decoding to 256 MiB): refuse them.
    claimed = sum(tables["original"][0::2]) + sum(tables["translation"][0::2])
    if claimed > size:
        raise CatalogError(f"{source}: corrupt: its string descriptors claim {claimed} bytes "
                           f"of text in a {size}-byte file (overlapping strings)")
    originals, translations = tables["original"], tables["translation"]
    return [(data[originals[2 * i + 1]:originals[2 * i + 1] + originals[2 * i]],
             data[translations[2 * i + 1]:translations[2 * i + 1] + translations[2 * i]])
            for i in range(count)]


def _charset(header: bytes | None, source: str) -> str:
    """The codec named by the header's Content-Type; UTF-8 when there is none."""
    if header is None:
        return "utf-8"
    for line in header.decode("ascii", errors="replace").split("\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() != "content-type":
            continue
        for param in value.split(";"):
            name, _, charset = param.partition("=")
            if name.strip().lower() == "charset":
                charset = charset.strip().strip('"')
                # "CHARSET" is the placeholder xgettext writes before anyone picks one.
                if charset.upper() == "CHARSET" or not charset:
                    return "utf-8"
                codec = text_codec(charset)
                if codec is None:
                    raise CatalogError(f"{source}: charset {charset!r:.60} in the header's "
                                       f"Content-Type is not a text encoding Python knows "
                                       f"(expected e.g. UTF-8 or ISO-8859-1)")
                return codec
    return "utf-8"


def text_codec(name: str) -> str | None:
    """The canonical name of text encoding ``name`` (bytes -> str); None when Python has
    no such codec or it is not a text encoding (zlib, base64, rot13 and the like)."""
    try:
        codec = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return None
    # The flag bytes.decode itself consults to refuse "zlib" and friends with LookupError.
    return codec.name if getattr(codec, "_is_text_encoding", True) else None


def _parse_header(text: str) -> dict[str, str]:
    headers = {}
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip():
            headers[key.strip()] = value.strip()
    return headers


def compile_mo(entries, *, charset: str = "UTF-8", byteorder: str = "<", header: bool = True,
               revision: int = 0) -> bytes:
    """Compile catalog entries into ``.mo`` bytes.

    Args:
        entries: iterable of ``(context, msgid, msgid_plural, translations)`` tuples
            (context and msgid_plural may be None; translations a tuple of str, one per
            plural form), or :class:`CatalogEntry` objects.
        charset: the encoding named in the header and used for every string.
        byteorder: ``"<"`` (little-endian) or ``">"`` (big-endian).
        header: add the header entry (empty msgid) that names ``charset``.
        revision: the file format revision word.
    """
    if byteorder not in ("<", ">"):
        raise ValueError(f"byteorder: expected '<' or '>', got {byteorder!r}")
    codec = text_codec(charset) if isinstance(charset, str) else None
    if codec is None:
        raise ValueError(f"charset: expected the name of a text encoding, got {charset!r}")
    pairs = []
    if header:
        head = f"Project-Id-Version: attnkit\nContent-Type: text/plain; charset={charset}\n"
        pairs.append((b"", head.encode("ascii")))
    for entry in entries:
        context, msgid, plural, translations = (
            (entry.context, entry.msgid, entry.msgid_plural, entry.translations)
            if isinstance(entry, CatalogEntry) else entry)
        original = msgid if plural is None else f"{msgid}\0{plural}"
        if context is not None:
            original = f"{context}\x04{original}"
        try:
            pairs.append((original.encode(codec), "\0".join(translations).encode(codec)))
        except UnicodeError as exc:
            raise ValueError(f"entries: message {msgid!r:.60} cannot be written in charset "
                             f"{charset!r} ({exc})") from None
    pairs.sort()  # msgfmt sorts by original string
    count = len(pairs)
    originals_at, translations_at = 28, 28 + 8 * count
    blob_at = 28 + 16 * count
    blob, descriptors = b"", ([], [])
    for side in (0, 1):
        for pair in pairs:
            descriptors[side].append((len(pair[side]), blob_at + len(blob)))
            blob += pair[side] + b"\0"
    words = [MO_MAGIC, revision, count, originals_at, translations_at, 0, 0]
    for side in (0, 1):
        for length, offset in descriptors[side]:
            words += [length, offset]
    return struct.pack(f"{byteorder}{len(words)}I", *words) + blob


def write_mo(path: str | os.PathLike, entries, **kwargs) -> Path:
    """Write :func:`compile_mo` ``(entries, **kwargs)`` to ``path`` atomically (parent
    folders created); returns the path."""
    from attnkit._io import atomic_write_bytes

    return atomic_write_bytes(path, compile_mo(entries, **kwargs))
