"""The .mo reader against catalogs written here by a small writer of the GNU MO layout."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.data.translation.gettext import (
    MO_MAGIC,
    CatalogEntry,
    CatalogError,
    compile_mo,
    parse_mo,
    read_mo,
    text_codec,
    write_mo,
)


def mo_bytes(entries, *, charset="UTF-8", byteorder="<", header=True, revision=0) -> bytes:
    """Compile ``entries`` into .mo bytes, independently of :func:`compile_mo` (so that
    the reader is checked against a second writer, and headers may name bogus charsets).

    entries: iterable of ``(context, msgid, msgid_plural, translations)`` (context and plural
    may be None; translations a tuple of str). A header entry naming ``charset`` is added
    unless ``header`` is False.
    """
    pairs = []
    # Bogus, non-text and never-working ("undefined") charsets: the strings are UTF-8.
    codec = "utf-8" if charset == "undefined" else text_codec(charset) or "utf-8"
    if header:
        head = f"Project-Id-Version: test 1.0\nContent-Type: text/plain; charset={charset}\n"
        pairs.append((b"", head.encode("ascii")))
    for context, msgid, plural, translations in entries:
        original = msgid if plural is None else f"{msgid}\0{plural}"
        if context is not None:
            original = f"{context}\x04{original}"
        pairs.append((original.encode(codec), "\0".join(translations).encode(codec)))
    pairs.sort()  # GNU msgfmt sorts by original string; the reader must not care
    count = len(pairs)
    orig_table, trans_table = 28, 28 + 8 * count
    offset = 28 + 16 * count
    blob, descriptors = b"", ([], [])
    for side in (0, 1):
        for pair in pairs:
            descriptors[side].append((len(pair[side]), offset + len(blob)))
            blob += pair[side] + b"\0"
    words = [MO_MAGIC, revision, count, orig_table, trans_table, 0, 0]
    for side in (0, 1):
        for length, where in descriptors[side]:
            words += [length, where]
    return struct.pack(f"{byteorder}{len(words)}I", *words) + blob


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("charset", ["UTF-8", "ISO-8859-1"])
def test_library_writer_round_trips(tmp_path, byteorder, charset):
    entries = ENTRIES[:2] + [(None, "Café menu", None, ("Menu du café",))]
    path = write_mo(tmp_path / "fr" / "x.mo", entries, charset=charset, byteorder=byteorder)
    catalog = read_mo(path)
    assert [(e.context, e.msgid, e.msgid_plural, e.translations) for e in catalog.entries] \
        == sorted(entries, key=lambda e: ((e[0] + "\x04" if e[0] else "") + e[1]).encode(charset))
    # Byte for byte what the independent writer above produces, header text aside.
    assert compile_mo(entries, charset=charset, byteorder=byteorder, header=False) \
        == mo_bytes(entries, charset=charset, byteorder=byteorder, header=False)
    with pytest.raises(ValueError, match="charset"):
        compile_mo(entries, charset="X-KLINGON")


ENTRIES = [
    (None, "Open the file", None, ("Ouvrir le fichier",)),
    ("menu", "Open the file", None, ("Ouvrir un fichier",)),
    (None, "%d file deleted", "%d files deleted", ("%d fichier supprimé", "%d fichiers supprimés")),
    (None, "Déjà vu in the title", None, ("Impression de déjà-vu dans le titre",)),
]


@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_round_trip_both_byte_orders(byteorder):
    catalog = parse_mo(mo_bytes(ENTRIES, byteorder=byteorder))
    assert catalog.charset == "utf-8"
    assert catalog.headers["Project-Id-Version"] == "test 1.0"
    got = {(e.context, e.msgid): e for e in catalog.entries}
    assert len(catalog.entries) == len(ENTRIES)  # the header is not an entry
    for context, msgid, plural, translations in ENTRIES:
        assert got[(context, msgid)] == CatalogEntry(context, msgid, plural, translations)


def test_plural_keeps_all_forms_and_singular_first():
    entry = next(e for e in parse_mo(mo_bytes(ENTRIES)).entries if e.msgid_plural)
    assert entry.msgid == "%d file deleted"
    assert entry.msgid_plural == "%d files deleted"
    assert entry.translations[0] == "%d fichier supprimé"
    assert len(entry.translations) == 2


def test_iso_8859_1_charset_is_decoded():
    entries = [(None, "Café menu", None, ("Menu du café à emporter",))]
    data = mo_bytes(entries, charset="ISO-8859-1")
    assert "é".encode("latin-1") in data and "é".encode() not in data
    catalog = parse_mo(data)
    assert catalog.charset == "iso8859-1"
    assert catalog.entries[0].translations == ("Menu du café à emporter",)


def test_no_header_and_placeholder_charset_mean_utf8():
    entries = [(None, "Save", None, ("Enregistrer",))]
    assert parse_mo(mo_bytes(entries, header=False)).charset == "utf-8"
    assert parse_mo(mo_bytes(entries, charset="CHARSET")).charset == "utf-8"


@pytest.mark.parametrize("charset", ["X-KLINGON", "zlib", "base64", "rot13", "hex", "uu",
                                     "bz2", "quopri"])
def test_unknown_or_non_text_charset_is_a_catalog_error(charset):
    """A codec that is not a text encoding used to escape as LookupError and abort a build."""
    with pytest.raises(CatalogError, match=f"charset '{charset}' .* not a text encoding"):
        parse_mo(mo_bytes([(None, "a", None, ("b",))], charset=charset))


def test_a_codec_that_fails_on_any_input_is_a_catalog_error():
    with pytest.raises(CatalogError, match="not valid undefined"):
        parse_mo(mo_bytes([(None, "a", None, ("b",))], charset="undefined"))


def test_writer_refuses_non_text_charsets():
    with pytest.raises(ValueError, match="charset: expected the name of a text encoding"):
        compile_mo([(None, "a", None, ("b",))], charset="zlib")


def test_bytes_invalid_in_the_charset_are_a_clear_error():
    data = mo_bytes([(None, "abc", None, ("xyz",))]).replace(b"xyz", b"x\xffz")
    with pytest.raises(CatalogError, match="not valid utf-8"):
        parse_mo(data, source="broken.mo")


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:10], "not a .mo catalog"),
    (lambda d: b"\x00\x11\x22\x33" + d[4:], "magic 00112233"),
    (lambda d: d[:40], "truncated"),
    (lambda d: d[:-12], "truncated"),
    (lambda d: d[:4] + struct.pack("<I", 7 << 16) + d[8:], "major revision 7"),
])
def test_damaged_files_raise_catalog_error(damage, message):
    with pytest.raises(CatalogError, match=message):
        parse_mo(damage(mo_bytes(ENTRIES)), source="x.mo")


def test_catalog_error_is_a_value_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.mo"
    path.write_bytes(b"garbage, not a catalog at all!!")
    with pytest.raises(ValueError, match="bad.mo"):
        read_mo(path)
    with pytest.raises(CatalogError, match="cannot read"):
        read_mo(tmp_path / "missing.mo")


def test_revision_1_is_accepted():
    assert parse_mo(mo_bytes(ENTRIES, revision=1)).revision == 1


text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0\x04"),
               min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.none() | text, text, st.none() | text, st.lists(
    text, min_size=1, max_size=3).map(tuple)), max_size=6,
    unique_by=lambda e: (e[0], e[1])), st.sampled_from(["<", ">"]))
def test_any_catalog_round_trips(entries, byteorder):
    entries = [(c, m, p, t if p is not None else t[:1]) for c, m, p, t in entries]
    catalog = parse_mo(mo_bytes(entries, byteorder=byteorder))
    assert sorted(catalog.entries, key=lambda e: (e.context or "", e.msgid)) == sorted(
        (CatalogEntry(*e) for e in entries), key=lambda e: (e.context or "", e.msgid))


def test_overlapping_descriptors_are_refused_not_decoded_quadratically():
    """N descriptors all pointing at one string of the file's whole length used to decode
    to N x size bytes (a 64 KiB file peaked at 256 MiB)."""
    size = 64 << 10
    count = (size - 28) // 16 - 1
    blob_at = 28 + 16 * count
    length = size - blob_at
    header = struct.pack("<7I", MO_MAGIC, 0, count, 28, 28 + 8 * count, 0, 0)
    table = struct.pack("<2I", length, blob_at) * count
    data = header + table + table + b"a" * length
    with pytest.raises(CatalogError, match="overlapping strings"):
        parse_mo(data, source="bomb.mo")


@pytest.mark.parametrize("words, message", [
    ((MO_MAGIC, 0, 0xFFFFFFFF, 28, 28, 0, 0), "truncated: the original table"),
    ((MO_MAGIC, 0, 1, 0xFFFFFFF0, 28, 0, 0), "truncated: the original table"),
    ((MO_MAGIC, 0, 1, 28, 36, 0, 0, 0xFFFFFFFF, 44, 1, 44), "truncated: original string 0"),
    ((MO_MAGIC, 0, 1, 28, 36, 0, 0, 1, 44, 1, 0xFFFFFFFF), "translation string 0"),
])
def test_absurd_tables_are_catalog_errors(words, message):
    data = struct.pack(f"<{len(words)}I", *words) + b"a\0b\0"
    with pytest.raises(CatalogError, match=message):
        parse_mo(data)


def test_empty_and_header_only_files():
    with pytest.raises(CatalogError, match="only 0 bytes"):
        parse_mo(b"")
    empty = parse_mo(struct.pack("<7I", MO_MAGIC, 0, 0, 28, 28, 0, 0))
    assert empty.entries == () and empty.charset == "utf-8"


def test_parse_mo_refuses_non_bytes():
    with pytest.raises(TypeError, match="data: expected bytes, got str"):
        parse_mo("not bytes")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_damaged_catalogs_raise_only_catalog_error(data):
    """Random byte edits of a valid catalog either still parse or raise CatalogError."""
    raw = bytearray(mo_bytes(ENTRIES, charset=data.draw(st.sampled_from(["UTF-8", "zlib"]))))
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        parse_mo(bytes(raw[:cut]))
    except CatalogError:
        pass
