"""Attention mechanisms of RNN encoder-decoders, one file each, behind one interface.

:class:`Seq2SeqAttention` (in :mod:`~attnkit.nn.seq2seq.base`) fixes the call
``forward(query, keys, values, *, mask, state) -> (context, weights, state)``; the
mechanisms are Bahdanau's additive attention, Luong's global and local attention,
location-sensitive (Chorowski et al.), monotonic (Raffel et al.), hard (Xu et al.) and
positional attention. :data:`ATTENTION_KINDS` (in :mod:`~attnkit.nn.seq2seq.registry`)
names them for the models and the command line.
"""

from attnkit.nn.seq2seq.additive import AdditiveAttention
from attnkit.nn.seq2seq.base import Seq2SeqAttention, State, source_padding_mask
from attnkit.nn.seq2seq.hard import HardAttention
from attnkit.nn.seq2seq.local import LocalAttention
from attnkit.nn.seq2seq.location_sensitive import LocationSensitiveAttention
from attnkit.nn.seq2seq.luong import LuongAttention
from attnkit.nn.seq2seq.monotonic import MonotonicAttention
from attnkit.nn.seq2seq.positional_attention import PositionalAttention
from attnkit.nn.seq2seq.registry import ATTENTION_KINDS, build_attention

__all__ = [
    "Seq2SeqAttention", "State", "source_padding_mask",
    "AdditiveAttention", "LuongAttention", "LocalAttention", "LocationSensitiveAttention",
    "MonotonicAttention", "HardAttention", "PositionalAttention",
    "ATTENTION_KINDS", "build_attention",
]
