"""Modules: they own parameters and call :mod:`attnkit.functional`."""

from attnkit.nn.seq2seq_base import Seq2SeqAttention

__all__ = ["Seq2SeqAttention"]
