"""The .mo reader against catalogs written here by a small writer of the GNU MO layout."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attnkit.data.gettext import (
    MO_MAGIC,
    CatalogEntry,
    CatalogError,
    compile_mo,
    parse_mo,
    read_mo,
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
    codec = "utf-8" if charset in ("CHARSET", "X-KLINGON") else charset
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


def test_unknown_charset_is_a_clear_error():
    with pytest.raises(CatalogError, match="unknown charset 'X-KLINGON'"):
        parse_mo(mo_bytes([(None, "a", None, ("b",))], charset="X-KLINGON"))


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
