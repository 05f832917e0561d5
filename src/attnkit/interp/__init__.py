"""Inspection tools: capture (exact weights from fused paths, stable names, head edits),
head detectors, attention rollout, alignment matrices as terminal tables and plots; PNG figures."""

from attnkit.interp.alignment import (
    Alignment,
    alignment_figure,
    format_alignment,
    plot_alignments,
)
from attnkit.interp.capture import Capture, Record, attention_modules, capture
from attnkit.interp.figures import figure_png, pyplot, save_png
from attnkit.interp.heads import (
    HeadTable,
    copying_scores,
    detect_heads,
    pattern_score,
    pattern_table,
    repeated_random_tokens,
)
from attnkit.interp.rollout import attention_rollout
from attnkit.interp.viewer import AttentionLayer, inspect_html, viewer_html, write_viewer

__all__ = ["Alignment", "format_alignment", "alignment_figure", "plot_alignments",
           "figure_png", "save_png", "pyplot", "capture", "Capture", "Record",
           "attention_modules", "HeadTable", "detect_heads", "copying_scores",
           "pattern_score", "pattern_table", "repeated_random_tokens", "attention_rollout",
           "AttentionLayer", "inspect_html", "viewer_html", "write_viewer"]
