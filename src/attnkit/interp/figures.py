"""PNG figures: matplotlib loaded on demand, figures rendered in memory, written atomically.

The one PNG writer of attnkit: :func:`figure_png` renders a figure to bytes and closes it,
:func:`save_png` writes those bytes with :func:`attnkit._io.atomic_write_bytes` (a reader
sees the old file or the new one, never half). Report writers embed the same bytes in
their HTML page. matplotlib is the optional ``viz`` extra.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from attnkit._io import atomic_write_bytes
from attnkit._validate import check_int

__all__ = ["pyplot", "figure_png", "save_png", "PNG_SIGNATURE"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("figures need matplotlib: pip install 'attnkit[viz]'") from exc
    return plt


def figure_png(fig: Any, *, dpi: int = 110) -> bytes:
    """Render a matplotlib figure to PNG bytes and close it (its memory is freed)."""
    check_int(dpi, "dpi", minimum=10, maximum=1200)
    if not callable(getattr(fig, "savefig", None)):
        raise TypeError(f"fig: expected a matplotlib Figure, got {type(fig).__name__}")
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, dpi=dpi, format="png")
    finally:
        pyplot().close(fig)
    return buffer.getvalue()


def save_png(fig: Any, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Render a matplotlib figure to PNG, write it atomically to ``path``, close the figure."""
    return atomic_write_bytes(path, figure_png(fig, dpi=dpi))
