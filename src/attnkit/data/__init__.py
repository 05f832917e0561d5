"""Real data for the experiments: a family of concept folders over shared plumbing.

- :mod:`attnkit.data.translation`: EN->FR/DE pairs from gettext catalogs (read, filter,
  hash split, manifest), their token-budget batches, and the Debian catalog fetch;
- :mod:`attnkit.data.tokenizer`: the joint byte-level BPE tokenizer;
- :mod:`attnkit.data.archive`: safe, size-capped extraction from tar streams;
- :mod:`attnkit.data.paths`: the data directory (``$ATTNKIT_DATA``).

:func:`build_corpus` reads ``.mo`` catalogs, normalizes, filters, deduplicates and splits
the pairs by a hash; :func:`load_corpus` reads the cached result; :class:`TranslationBatches`
serves token-budget batches as a ``batch_fn(step, rank, world_size)`` for
:class:`attnkit.train.Trainer`. Nothing is downloaded at run time except by
``attnkit data fetch``.
"""

from attnkit.data.errors import CorpusNotFoundError, DataError
from attnkit.data.paths import default_data_dir
from attnkit.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, load_tokenizer
from attnkit.data.translation import (
    DEFAULT_ROOTS,
    LANGUAGES,
    SPLITS,
    ParallelCorpus,
    TranslationBatches,
    build_corpus,
    corpus_dir,
    default_roots,
    load_corpus,
)
from attnkit.data.translation.gettext import (
    Catalog,
    CatalogEntry,
    CatalogError,
    read_mo,
    write_mo,
)

__all__ = [
    "build_corpus", "load_corpus", "ParallelCorpus", "TranslationBatches", "LANGUAGES",
    "SPLITS", "DataError", "CorpusNotFoundError", "default_roots", "DEFAULT_ROOTS",
    "corpus_dir", "default_data_dir",
    "read_mo", "write_mo", "Catalog", "CatalogEntry", "CatalogError",
    "Tokenizer", "load_tokenizer", "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID",
]
