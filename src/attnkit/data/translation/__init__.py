"""English->French/German parallel corpora from gettext catalogs.

Free-software programs ship their user-interface messages with human translations in
``.mo`` catalogs (``<lang>/LC_MESSAGES/<domain>.mo``). Pairing each English msgid with its
translation gives a real, if UI-flavoured, parallel corpus. One concept per module, in the
order a build runs them:

- :mod:`.gettext`: the ``.mo`` format (reader and writer);
- :mod:`.catalogs`, :mod:`.fetch`: where catalogs are (locale folders, Debian packages);
- :mod:`.read`: catalogs -> entries, with a manifest record per catalog;
- :mod:`.normalize`, :mod:`.filters`: clean pairs, one translation per English text;
- :mod:`.split`: the hash split into train/valid/test;
- :mod:`.manifest`, :mod:`.build`: the manifest and the atomic build;
- :mod:`.corpus`, :mod:`.batches`: the built corpus read back, and its token-budget batches.
"""

from attnkit.data.translation.batches import TranslationBatches
from attnkit.data.translation.build import BuildResult, build_corpus
from attnkit.data.translation.catalogs import (
    DEFAULT_ROOTS,
    CatalogRoot,
    default_roots,
    find_catalogs,
)
from attnkit.data.translation.corpus import ParallelCorpus, corpus_dir, load_corpus
from attnkit.data.translation.filters import REJECT_RULES, FilterConfig, reject_reason
from attnkit.data.translation.languages import LANGUAGE_DIRS, LANGUAGES
from attnkit.data.translation.normalize import normalize
from attnkit.data.translation.split import SPLITS, split_of

__all__ = [
    "build_corpus", "BuildResult", "corpus_dir", "load_corpus", "ParallelCorpus",
    "TranslationBatches",
    "LANGUAGES", "LANGUAGE_DIRS", "SPLITS", "DEFAULT_ROOTS", "default_roots", "CatalogRoot",
    "find_catalogs", "FilterConfig", "REJECT_RULES", "reject_reason", "normalize", "split_of",
]
