"""Modules: they own parameters and call :mod:`attnkit.functional`.

Scaled-dot attention for Transformers (:class:`MultiHeadAttention` with GQA/MQA,
KV caches, positional encodings), the attention family of RNN encoder-decoders
(one :class:`Seq2SeqAttention` interface), linear attention, and channel/spatial
attention for images.
"""

from attnkit.nn.additive import AdditiveAttention
from attnkit.nn.cbam import CBAM, ChannelAttention, SpatialAttention
from attnkit.nn.hard import HardAttention
from attnkit.nn.kv_cache import KVCache, StaticKVCache
from attnkit.nn.linear_attention import LinearAttention
from attnkit.nn.local import LocalAttention
from attnkit.nn.location_sensitive import LocationSensitiveAttention
from attnkit.nn.luong import LuongAttention
from attnkit.nn.monotonic import MonotonicAttention
from attnkit.nn.multihead import MultiHeadAttention
from attnkit.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_slopes,
    sinusoidal_encoding,
)
from attnkit.nn.positional_attention import PositionalAttention
from attnkit.nn.seq2seq_base import Seq2SeqAttention
from attnkit.nn.squeeze_excitation import SqueezeExcitation

__all__ = [
    "MultiHeadAttention", "KVCache", "StaticKVCache",
    "RotaryEmbedding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding",
    "sinusoidal_encoding", "alibi_slopes",
    "Seq2SeqAttention", "AdditiveAttention", "LuongAttention", "LocalAttention",
    "LocationSensitiveAttention", "MonotonicAttention", "HardAttention",
    "PositionalAttention",
    "LinearAttention",
    "SqueezeExcitation", "ChannelAttention", "SpatialAttention", "CBAM",
]
