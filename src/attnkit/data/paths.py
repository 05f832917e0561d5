"""Where data lives (the data directory, ``$ATTNKIT_DATA``) and how paths are shown."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_data_dir", "display_path"]


def default_data_dir() -> Path:
    """``$ATTNKIT_DATA``, else ``~/.cache/attnkit``."""
    return Path(os.environ.get("ATTNKIT_DATA") or "~/.cache/attnkit").expanduser()


def display_path(path: str | os.PathLike) -> str:
    """``path`` as printable text: bytes that are not UTF-8 (a name on disk or in an archive
    may hold any) become ``\\xNN`` escapes, so a manifest or a terminal can show it."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")
