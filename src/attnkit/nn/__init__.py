"""Modules: they own parameters and call :mod:`attnkit.functional`.

Scaled-dot attention for Transformers (:class:`MultiHeadAttention` with GQA/MQA,
KV caches, positional encodings), linear attention, the attention family of RNN
encoder-decoders (:mod:`attnkit.nn.seq2seq`: one :class:`Seq2SeqAttention` interface
and a registry of mechanisms), and channel/spatial attention for images
(:mod:`attnkit.nn.vision`).
"""

from attnkit.nn.dropout import FastDropout, fast_dropout
from attnkit.nn.kv_cache import KVCache, StaticKVCache
from attnkit.nn.linear_attention import LinearAttention
from attnkit.nn.multihead import MultiHeadAttention
from attnkit.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_slopes,
    sinusoidal_encoding,
)
from attnkit.nn.seq2seq import (
    ATTENTION_KINDS,
    AdditiveAttention,
    HardAttention,
    LocalAttention,
    LocationSensitiveAttention,
    LuongAttention,
    MonotonicAttention,
    PositionalAttention,
    Seq2SeqAttention,
    build_attention,
)
from attnkit.nn.vision import CBAM, ChannelAttention, SpatialAttention, SqueezeExcitation

__all__ = [
    "MultiHeadAttention", "KVCache", "StaticKVCache", "FastDropout", "fast_dropout",
    "RotaryEmbedding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding",
    "sinusoidal_encoding", "alibi_slopes",
    "Seq2SeqAttention", "AdditiveAttention", "LuongAttention", "LocalAttention",
    "LocationSensitiveAttention", "MonotonicAttention", "HardAttention",
    "PositionalAttention", "ATTENTION_KINDS", "build_attention",
    "LinearAttention",
    "SqueezeExcitation", "ChannelAttention", "SpatialAttention", "CBAM",
]
