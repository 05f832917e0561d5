"""Alignment matrices of a translation: which source tokens each output token attended to.

An :class:`Alignment` holds the source tokens (S), the output tokens (T) and a (T, S)
weight matrix whose row ``t`` is the attention distribution the decoder used when it
produced output token ``t`` (Bahdanau et al. 2014, arXiv:1409.0473, Figure 3 draws the
same matrix transposed). :func:`format_alignment` prints it as a table in the terminal;
:func:`alignment_figure` draws several side by side (matplotlib, the ``viz`` extra) and
:func:`plot_alignments` writes that figure as a PNG.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from attnkit._validate import check_int
from attnkit.interp.figures import pyplot, save_png

__all__ = ["Alignment", "format_alignment", "alignment_figure", "plot_alignments"]


@dataclass
class Alignment:
    """One sentence's alignment matrix.

    Attributes:
        source_tokens: S readable source tokens.
        target_tokens: T readable output tokens (the last is usually ``</s>``).
        weights: (T, S) float tensor, row t = attention over the source for output t;
            None for a model without attention.
        title: caption for plots (e.g. the model name).
    """

    source_tokens: list[str]
    target_tokens: list[str]
    weights: torch.Tensor | None
    title: str = ""

    def __post_init__(self) -> None:
        for name in ("source_tokens", "target_tokens"):
            tokens = getattr(self, name)
            if not isinstance(tokens, (list, tuple)) or not all(isinstance(t, str)
                                                                for t in tokens):
                raise TypeError(f"{name}: expected a list of str, got {tokens!r:.80}")
            setattr(self, name, list(tokens))
        if not isinstance(self.title, str):
            raise TypeError(f"title: expected a str, got {type(self.title).__name__}")
        if self.weights is None:
            return
        if not isinstance(self.weights, torch.Tensor) or self.weights.dim() != 2:
            raise TypeError(f"weights: expected a (T, S) tensor or None, got "
                            f"{getattr(self.weights, 'shape', type(self.weights).__name__)}")
        expected = (len(self.target_tokens), len(self.source_tokens))
        if tuple(self.weights.shape) != expected:
            raise ValueError(f"weights: expected shape (T, S) = {expected} from the token "
                             f"lists, got {tuple(self.weights.shape)}")
        if not self.weights.is_floating_point():
            raise TypeError(f"weights: expected a floating-point tensor, got {self.weights.dtype}")
        if not bool(self.weights.isfinite().all()):
            raise ValueError("weights: expected finite values, got NaN or inf")


def _label(token: str) -> str:
    """A token for display: outer spaces dropped, control characters as escapes."""
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in token.strip())
    return text or repr(token)


def _cell(text: str, width: int) -> str:
    return text[:width].rjust(width)


def format_alignment(alignment: Alignment, *, width: int = 6) -> str:
    """The alignment as a text table: one row per output token, one column per source
    token, weights in percent (blank below 5%), the largest weight of each row marked
    with ``*``.

    Args:
        alignment: the matrix and its tokens.
        width: characters per column; longer tokens are cut.
    """
    if not isinstance(alignment, Alignment):
        raise TypeError(f"alignment: expected an Alignment, got {type(alignment).__name__}")
    check_int(width, "width", minimum=3)
    if alignment.weights is None:
        return "(this model has no attention: the decoder sees one fixed vector)"
    targets = [_label(t) for t in alignment.target_tokens]
    label = max([len(t) for t in targets] + [6])
    header = " " * label + " " + " ".join(
        _cell(_label(t), width) for t in alignment.source_tokens)
    lines = [header]
    weights = alignment.weights.float()
    for t, token in enumerate(targets):
        row = weights[t]
        best = int(row.argmax()) if row.numel() else -1
        cells = []
        for s, value in enumerate(row.tolist()):
            percent = round(100 * value)
            text = "" if percent < 5 else f"{percent}" + ("*" if s == best else "")
            cells.append(text.rjust(width))
        lines.append(token.rjust(label) + " " + " ".join(cells))
    return "\n".join(lines)


def alignment_figure(rows: Sequence[Sequence[Alignment]]):
    """A grid of alignment heatmaps as a matplotlib Figure.

    Args:
        rows: a grid, ``rows[i][j]`` the alignment of sentence i under model j (one row per
            sentence, one column per model); a ``weights=None`` entry is drawn as a note.

    Returns:
        the figure (render it with :func:`attnkit.interp.figures.figure_png`, which closes it).
    """
    if (isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence) or not rows
            or not all(isinstance(r, Sequence) and r for r in rows)):
        raise ValueError("rows: expected a non-empty grid (a list of non-empty lists) of "
                         "alignments")
    for row in rows:
        for item in row:
            if not isinstance(item, Alignment):
                raise TypeError(f"rows: expected Alignment entries, got {type(item).__name__}")
    plt = pyplot()
    num_rows, num_cols = len(rows), max(len(r) for r in rows)
    cell_w = max(max(len(a.source_tokens) for r in rows for a in r) * 0.38, 3.0)
    cell_h = max(max(len(a.target_tokens) for r in rows for a in r) * 0.32, 2.5)
    fig, axes = plt.subplots(num_rows, num_cols, figsize=(cell_w * num_cols + 1,
                                                          cell_h * num_rows + 1),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(num_cols):
            ax = axes[i][j]
            if j >= len(row):
                ax.axis("off")
                continue
            item = row[j]
            if item.weights is None:
                ax.axis("off")
                ax.text(0.5, 0.5, f"{item.title}\nno attention:\none fixed context vector",
                        ha="center", va="center", fontsize=9)
                continue
            ax.imshow(item.weights.float().numpy(), cmap="Greys", vmin=0.0, vmax=1.0,
                      aspect="auto")
            ax.set_xticks(range(len(item.source_tokens)))
            ax.set_xticklabels([_label(t) for t in item.source_tokens], rotation=90,
                               fontsize=7)
            ax.set_yticks(range(len(item.target_tokens)))
            ax.set_yticklabels([_label(t) for t in item.target_tokens], fontsize=7)
            ax.set_title(item.title, fontsize=8)
    fig.tight_layout()
    return fig


def plot_alignments(rows: Sequence[Sequence[Alignment]], path: str | os.PathLike, *,
                    dpi: int = 110) -> Path:
    """Draw :func:`alignment_figure` of ``rows`` and write it to ``path`` as a PNG (atomically).

    Returns:
        the written path.
    """
    return save_png(alignment_figure(rows), path, dpi=dpi)
