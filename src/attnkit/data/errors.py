"""Errors of the data layer: a corpus that cannot be built, fetched or loaded.

:class:`DataError` is a :class:`attnkit.errors.UserError`: what it reports (a missing
corpus, no catalogs under a folder, apt not available) is for the user to fix, so the
command line prints it as one line and exits with code 2.
"""

from __future__ import annotations

from attnkit.errors import UserError

__all__ = ["DataError", "CorpusNotFoundError"]


class DataError(UserError):
    """A corpus cannot be built, fetched or loaded; the message says why and what to do."""


class CorpusNotFoundError(DataError, FileNotFoundError):
    """No built corpus in the data directory."""
