"""Inspection tools: alignment matrices as terminal tables and plots; PNG figures."""

from attnkit.interp.alignment import (
    Alignment,
    alignment_figure,
    format_alignment,
    plot_alignments,
)
from attnkit.interp.figures import figure_png, pyplot, save_png

__all__ = ["Alignment", "format_alignment", "alignment_figure", "plot_alignments",
           "figure_png", "save_png", "pyplot"]
