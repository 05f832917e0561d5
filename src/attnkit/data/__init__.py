"""Real corpora and tokenizers: EN->FR/DE pairs from gettext catalogs, BPE, batches.

:func:`build_corpus` reads ``.mo`` catalogs (:mod:`attnkit.data.gettext`), normalizes and
filters the pairs, deduplicates them and splits them by a hash; :func:`load_corpus` reads
the cached result; :class:`TranslationBatches` serves token-budget batches as a
``batch_fn(step, rank, world_size)`` for :class:`attnkit.train.Trainer`.
"""

from attnkit.data.corpus import (
    LANGUAGES,
    CorpusNotFoundError,
    DataError,
    ParallelCorpus,
    TranslationBatches,
    build_corpus,
    load_corpus,
)
from attnkit.data.gettext import Catalog, CatalogEntry, CatalogError, read_mo, write_mo
from attnkit.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer, load_tokenizer

__all__ = [
    "build_corpus", "load_corpus", "ParallelCorpus", "TranslationBatches", "LANGUAGES",
    "DataError", "CorpusNotFoundError",
    "read_mo", "write_mo", "Catalog", "CatalogEntry", "CatalogError",
    "Tokenizer", "load_tokenizer", "PAD_ID", "BOS_ID", "EOS_ID", "UNK_ID",
]
