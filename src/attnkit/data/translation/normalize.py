"""Canonical form of one side of a translation pair (both sides get the same function).

Gettext messages carry user-interface noise that is not language: menu accelerators
(``_File``, ``&File``, ``~File``, ``(&F)``), exotic spaces (French puts a narrow no-break
space before ``?!:;``), invisible format characters and trailing ellipses. :func:`normalize`
removes it, so that the filters and the deduplication compare text.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize", "collapse_spaces"]

_PAREN_ACCELERATOR = re.compile(r"\s*\([&_~][^\W_]\)")  # "Open (&O)", "Open (_O)"
_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);")
_AMP_ACCELERATOR = re.compile(r"(?<!&)&(?=[^\W_])")
_TILDE_ACCELERATOR = re.compile(r"~(?=[^\W\d_]{2})")  # "~Save", "Pa~ges"; not "~a", "~/"
_TRAILING_ELLIPSIS = re.compile(r"(?:\.\.\.|…)$")


def collapse_spaces(text: str) -> str:
    """Runs of any whitespace -> one plain space, ends stripped."""
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
    text = collapse_spaces(unicodedata.normalize("NFC", text))
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf"))
    text = _PAREN_ACCELERATOR.sub("", text)
    text = _strip_amp_accelerator(_strip_underscore_accelerator(text))
    text = _unescape_double_amp(_strip_tilde_accelerator(text))
    text = _TRAILING_ELLIPSIS.sub("", collapse_spaces(text))
    return unicodedata.normalize("NFC", collapse_spaces(text))

