"""Which normalized pairs enter the corpus, and one translation per English text.

:func:`reject_reason` applies the rules of :data:`REJECT_RULES` in order: 3-50 English
words, mostly letters, no format placeholders, markup or code, not copied, a sane length
ratio, and a target that looks like the target language. :func:`filter_entries` runs them
over the entries of a catalog and counts what each rule removed (the manifest's stages);
:func:`deduplicate` then keeps the most frequent translation of each English text.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from attnkit._validate import check_choice
from attnkit.data.translation.gettext import CatalogEntry
from attnkit.data.translation.languages import LANGUAGES
from attnkit.data.translation.normalize import normalize

__all__ = ["FilterConfig", "REJECT_RULES", "reject_reason", "filter_entries", "deduplicate"]

_PLACEHOLDER = re.compile(r"""
      %(?:[0-9]+\$)?[-+#0'*]*[0-9]*(?:\.[0-9*]+)?[A-Za-z@<>'%]       # printf, %1$s, %q#T, %%
    | %\([A-Za-z_][\w.-]*\)                                           # python %(name)s
    | %[0-9]                                                          # Qt %1
    | %[A-Z][A-Z_]{2,}                                                # %PRODUCTNAME
    | \{[^{}\s]*\}                                                    # {0} {name} {}
    | \$[{(]?[A-Za-z_0-9]                                             # $x ${x} $(ARG) $1
    | @[A-Za-z_]+@                                                    # @PACKAGE@
    | ~[A-Za-z%](?![A-Za-z])                                          # Lisp/Scheme ~a ~s
""", re.VERBOSE)
_MARKUP = re.compile(r"</?[A-Za-z][^<>]*>|&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);")
_CODE = re.compile(r"""
      _                                          # identifiers (a lone mnemonic is gone)
    | \b[a-z]+[A-Z][A-Za-z]*\b                   # camelCase
    | [A-Za-z0-9]\(\)                            # call()
    | @\w                                        # @echo, user@host
    | \*\.\w                                      # *.txt
    | (?:^|[\s"'(«])(?:~|\.{1,2})?/[\w.]         # /usr/bin, ~/x, ./x
    | \w/\w+/                                    # a/b/c
    | \\[\w\\]                                   # C:\x, escapes
    | \b(?:[a-z][a-z0-9+.-]*)://                 # URLs
    | \bwww\.
    | \b\w+\.(?:com|org|net|txt|conf|cfg|ini|xml|json|html?|py|sh|so|dll|exe|png|jpe?g
              |svg|mo|po|deb|rpm|gz|bz2|xz|zip|tar|log|desktop|service)\b
    | (?:^|[\s(\[])--?[A-Za-z]                   # --option, -x
    | [=`|{}\[\]<>~^\\]                          # operators and brackets
""", re.VERBOSE)

_ENGLISH_WORDS = frozenset("""
the a an and or of to in on at is are was were be been this that these those with for from
by it its you your we our not no can cannot will would should could has have had do does
did which what when where who how if then than there here into out about all any each
""".split())
_TARGET_WORDS = {  # function words; those also in _ENGLISH_WORDS count for neither side
    "fr": frozenset("""
le la les l un une des du de d et ou est sont être ont pas ne n se s ce cet cette ces dans
pour par sur sous avec sans au aux à que qu qui quoi dont où il elle ils elles nous vous
votre vos son sa ses leur leurs mon ma mes plus tout tous toute toutes si lors entre vers
chez depuis pendant comme mais donc car je lui eux été fait peut doit aucun aucune chaque
a on
""".split()),
    "de": frozenset("""
der die das den dem des ein eine einen einem einer eines und oder ist sind war wird werden
wurde wurden kann können nicht kein keine keinen mit von vom für auf im ins zum zur aus bei
beim nach über unter zu es sie er wir ihr ihre ihren ihrem ihres sein seine bitte wenn
diese dieser dieses alle alles auch noch nur schon sich durch gegen ohne bis seit dass ob
als wie wo wer mehr muss soll darf hat haben jeder jede jedes
in an was will
""".split()),
}
_TARGET_LETTERS = {"fr": frozenset("àâæçéèêëîïôœùûüÿ"), "de": frozenset("äöüß")}
_WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class FilterConfig:
    """Thresholds of :func:`reject_reason` (recorded in the manifest)."""

    min_words: int = 3  # fewest English words (whitespace tokens holding a letter)
    max_words: int = 50  # most English words
    min_letter_fraction: float = 0.7  # letters / non-space characters, on each side
    min_ratio: float = 0.5  # len(target) / len(english), in characters
    max_ratio: float = 2.5
    max_copied_fraction: float = 0.75  # share of copied English words that rejects a target

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


#: rule names in the order :func:`reject_reason` checks them (the manifest's stage order)
REJECT_RULES = ("word_count", "not_text", "placeholder", "markup", "code", "identical",
                "length_ratio", "not_target_language")


def _letter_fraction(text: str) -> float:
    visible = [ch for ch in text if not ch.isspace()]
    return sum(ch.isalpha() for ch in visible) / max(len(visible), 1)


def _looks_like_target(target: str, english: str, lang: str, config: FilterConfig) -> bool:
    """False for a target that reads as English or mostly repeats the English words."""
    words = [w.lower() for w in _WORD.findall(target)]
    own = sum(w in _TARGET_WORDS[lang] and w not in _ENGLISH_WORDS for w in words)
    english_only = sum(w in _ENGLISH_WORDS and w not in _TARGET_WORDS[lang] for w in words)
    if english_only > own:
        return False
    if own > 0 or any(ch in _TARGET_LETTERS[lang] for ch in target.lower()):
        return True
    # No function word or letter of its own (e.g. "Fichier Windows Media Player"): keep it
    # only if less than max_copied_fraction of its words of 3+ letters are in the English.
    source_words = {w.lower() for w in _WORD.findall(english)}
    long_words = [w for w in words if len(w) >= 3]
    copied = sum(w in source_words for w in long_words)
    return copied / max(len(long_words), 1) < config.max_copied_fraction


def reject_reason(english: str, target: str, lang: str,
                  config: FilterConfig = FilterConfig()) -> str | None:
    """The first rule of :data:`REJECT_RULES` the normalized pair breaks, or None to keep it.

    Args:
        english: normalized English text (a str).
        target: normalized translation (a str).
        lang: target language, one of :data:`LANGUAGES`.
        config: thresholds.
    """
    check_choice(lang, "lang", LANGUAGES)
    words = sum(1 for w in english.split() if any(ch.isalpha() for ch in w))
    if not config.min_words <= words <= config.max_words:
        return "word_count"
    letters = [ch for ch in english if ch.isalpha()]
    if (min(_letter_fraction(english), _letter_fraction(target)) < config.min_letter_fraction
            or sum(ch.isascii() for ch in letters) < 0.9 * len(letters)):
        return "not_text"
    if _PLACEHOLDER.search(english) or _PLACEHOLDER.search(target):
        return "placeholder"
    if _MARKUP.search(english) or _MARKUP.search(target):
        return "markup"
    if _CODE.search(english) or _CODE.search(target):
        return "code"
    if english.casefold() == target.casefold():
        return "identical"
    if not config.min_ratio <= len(target) / len(english) <= config.max_ratio:
        return "length_ratio"
    if not _looks_like_target(target, english, lang, config):
        return "not_target_language"
    return None




def filter_entries(entries: Iterable[CatalogEntry], lang: str, config: FilterConfig,
                   removed: Counter) -> list[tuple[str, str]]:
    """The normalized ``(english, target)`` pairs of ``entries`` that pass every rule.

    Args:
        entries: catalog messages; each pairs its msgid with its first translation.
        lang: target language, one of :data:`LANGUAGES`.
        config: thresholds.
        removed: updated in place: stage name ("untranslated" or a rule of
            :data:`REJECT_RULES`) -> number of entries it removed.
    """
    kept = []
    for entry in entries:
        english, target = normalize(entry.msgid), normalize(entry.translations[0])
        if not english or not target:
            removed["untranslated"] += 1
            continue
        reason = reject_reason(english, target, lang, config)
        if reason is not None:
            removed[reason] += 1
            continue
        kept.append((english, target))
    return kept


def deduplicate(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """One pair per English text: its most frequent translation, ties to the smallest string.

    The result is sorted by English text and does not depend on the input order.
    """
    translations: dict[str, Counter] = defaultdict(Counter)
    for english, target in pairs:
        translations[english][target] += 1
    return [(english, min(counts.items(), key=lambda item: (-item[1], item[0]))[0])
            for english, counts in sorted(translations.items())]

