"""The target languages of the gettext corpora and the locale folders that hold them.

Catalogs are looked up under a folder named exactly after the language (``fr``) or its main
country variant (``fr_FR``, ``de_DE``). Regional variants (``fr_CA``, ``de_CH``, ``de_AT``)
are left out: they differ in spelling and vocabulary.
"""

from __future__ import annotations

__all__ = ["LANGUAGES", "LANGUAGE_DIRS"]

LANGUAGES = ("fr", "de")
#: locale folder names searched for each language (regional variants left out)
LANGUAGE_DIRS = {"fr": ("fr", "fr_FR"), "de": ("de", "de_DE")}
