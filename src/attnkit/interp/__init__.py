"""Inspection tools: alignment matrices as terminal tables and plots."""

from attnkit.interp.alignment import Alignment, format_alignment, plot_alignments

__all__ = ["Alignment", "format_alignment", "plot_alignments"]
