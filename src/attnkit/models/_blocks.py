"""Building blocks shared by the Transformer encoder-decoder and GPT.

The layers follow Vaswani et al. 2017, "Attention Is All You Need" (arXiv:1706.03762):
each sub-layer (self-attention, cross-attention, feed-forward) is wrapped in a
residual connection with dropout on its output and a LayerNorm. ``norm_first``
picks where the LayerNorm sits:

* post-norm (``norm_first=False``, the paper): ``x = norm(x + dropout(sublayer(x)))``;
* pre-norm (``norm_first=True``, GPT-2; Xiong et al. 2020, arXiv:2002.04745):
  ``x = x + dropout(sublayer(norm(x)))``, which needs one more LayerNorm after the
  last layer (the models own it) and trains stably without a long warm-up.

Every attention is :class:`attnkit.nn.MultiHeadAttention`; positions come from
:mod:`attnkit.nn.positional` (sinusoidal or learned tables added to the token
embeddings, or rotary embeddings applied inside self-attention).

Shape legend: ``B`` batch, ``L`` target/sequence length, ``S`` source length,
``E`` d_model, ``V`` vocabulary, ``Hq`` query heads.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from attnkit._validate import check_choice, check_float, check_int
from attnkit.nn.kv_cache import KVCache, StaticKVCache
from attnkit.nn.multihead import MultiHeadAttention
from attnkit.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)

__all__ = ["FeedForward", "EncoderLayer", "DecoderLayer", "TokenEmbedding", "make_rotary",
           "check_common", "optional_dropout", "POSITIONAL_KINDS", "ACTIVATIONS"]

POSITIONAL_KINDS = ("sinusoidal", "learned", "rotary")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def check_common(who: str, config) -> None:
    """Checks shared by the model configs: heads, dropout, positional kind, rotary dims
    and base."""
    for field in ("d_model", "num_heads", "ffn_dim"):
        check_int(getattr(config, field), field, minimum=1, owner=who)
    if config.d_model % config.num_heads:
        raise ValueError(f"{who}: num_heads ({config.num_heads}) must divide d_model "
                         f"({config.d_model})")
    if config.num_kv_heads is not None:
        check_int(config.num_kv_heads, "num_kv_heads", minimum=1, owner=who)
        if config.num_heads % config.num_kv_heads:
            raise ValueError(f"{who}: num_kv_heads ({config.num_kv_heads}) must divide "
                             f"num_heads ({config.num_heads})")
    config.dropout = check_float(config.dropout, "dropout", low=0.0, high=1.0, high_open=True,
                                 owner=who)
    check_choice(config.positional, "positional", POSITIONAL_KINDS, owner=who)
    config.rotary_base = check_float(config.rotary_base, "rotary_base", low=1.0,
                                     low_open=True, owner=who)
    head_dim = config.d_model // config.num_heads
    if config.positional == "rotary" and head_dim % 2:
        raise ValueError(f"{who}: positional='rotary' needs an even head dim, got d_model // "
                         f"num_heads = {head_dim}; change d_model or num_heads")


def optional_dropout(p: float) -> nn.Dropout | None:
    """``nn.Dropout(p)`` (which checks ``p``), or None for ``p == 0``: dropout with zero
    probability is the identity, and the layers skip it instead of calling a module that
    returns its input (and walking it in every ``parameters()``). A layer built with
    ``dropout=0`` therefore has no ``dropout`` submodule; build it with ``p > 0`` to
    train with dropout."""
    module = nn.Dropout(p)
    return module if module.p > 0 else None


def make_rotary(positional: str, head_dim: int, base: float = 10000.0
                ) -> RotaryEmbedding | None:
    """One :class:`RotaryEmbedding` of frequency ``base`` for ``positional == "rotary"``
    (shared by all layers, it has no parameters), else None."""
    return RotaryEmbedding(head_dim, base=base) if positional == "rotary" else None


class FeedForward(nn.Module):
    """Position-wise MLP ``dropout(W2 act(W1 x + b1) + b2)`` (the paper's FFN).

    Args:
        d_model: ``E``, input and output features.
        ffn_dim: hidden features (``4 E`` in the paper and GPT-2).
        dropout: dropout on the output (0: no ``dropout`` submodule, see
            :func:`optional_dropout`).
        activation: ``"relu"`` (the paper) or ``"gelu"`` (GPT, BERT).
        bias: biases in both linear layers.
    """

    def __init__(self, d_model: int, ffn_dim: int, dropout: float = 0.0,
                 activation: str = "relu", bias: bool = True) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got "
                             f"{activation!r}")
        self.fc = nn.Linear(d_model, ffn_dim, bias=bias)
        self.act = ACTIVATIONS[activation]()
        self.proj = nn.Linear(ffn_dim, d_model, bias=bias)
        self.dropout = optional_dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (B, L, E) -> (B, L, E)``."""
        # submodules read from _modules: nn.Module.__getattr__ is a Python call per access
        modules = self._modules
        x = modules["proj"](modules["act"](modules["fc"](x)))
        return x if self.dropout is None else self.dropout(x)


class _Layer(nn.Module):
    """The parts both layer kinds own, registered in this order (it fixes the order in
    which the models' initializers draw random numbers): ``self_attn``, ``cross_attn``
    (with ``cross``), ``ffn``, ``norm1``, ``norm2`` (, ``norm3``), ``dropout`` (only for
    ``dropout > 0``, see :func:`optional_dropout`).

    Args:
        d_model, num_heads, num_kv_heads: as :class:`MultiHeadAttention`
            (``embed_dim``, ``num_heads``, ``num_kv_heads``).
        ffn_dim, activation: as :class:`FeedForward`.
        cross: add a cross-attention sub-layer (decoder layers).
        dropout: on attention weights and on each sub-layer's output.
        norm_first: pre-norm (True) or post-norm (False), see the module docstring.
        bias: biases in the projections and LayerNorms.
        rotary: optional :class:`RotaryEmbedding` for the self-attention.
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, *, cross: bool,
                 num_kv_heads: int | None = None, dropout: float = 0.0,
                 norm_first: bool = True, activation: str = "relu", bias: bool = True,
                 rotary: RotaryEmbedding | None = None) -> None:
        super().__init__()
        self.norm_first = norm_first
        heads = dict(num_kv_heads=num_kv_heads, bias=bias, dropout=dropout)
        self.self_attn = MultiHeadAttention(d_model, num_heads, rotary=rotary, **heads)
        if cross:
            self.cross_attn = MultiHeadAttention(d_model, num_heads, **heads)
        self.ffn = FeedForward(d_model, ffn_dim, dropout, activation, bias)
        for index in range(1, 4 if cross else 3):
            self.add_module(f"norm{index}", nn.LayerNorm(d_model, bias=bias))
        self.dropout = optional_dropout(dropout)

    def _drop(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.dropout is None else self.dropout(x)


class EncoderLayer(_Layer):
    """Self-attention + feed-forward: a Transformer encoder layer, and with
    ``causal=True`` (and optionally a :class:`KVCache`) a GPT block.

    Args: ``d_model, num_heads, ffn_dim`` and the keyword options ``num_kv_heads``,
    ``dropout``, ``norm_first``, ``activation``, ``bias``, ``rotary`` of
    :class:`_Layer`.
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, **options) -> None:
        super().__init__(d_model, num_heads, ffn_dim, cross=False, **options)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | Callable | None = None,
                causal: bool | None = None, kv_cache: KVCache | None = None) -> torch.Tensor:
        """Args:
            x: ``(B, L, E)``.
            mask: True = may attend: a ``mask_mod`` such as
                ``attnkit.masks.key_padding(lengths)`` (what the models pass, so the
                kernels can skip padded tiles) or a bool tensor broadcastable to
                ``(B, Hq, L, Lk)``. ``Lk = L`` (plus the cached length).
            causal: True for decoder-only models (lower-right with a cache).
            kv_cache: a :class:`KVCache` for incremental decoding, or None.

        Returns:
            ``(B, L, E)``.
        """
        modules = self._modules  # not self.<name>: nn.Module.__getattr__ is a Python call
        attend, ffn, norm1, norm2 = (modules["self_attn"], modules["ffn"], modules["norm1"],
                                     modules["norm2"])
        if self.norm_first:
            h = attend(norm1(x), mask=mask, causal=causal, kv_cache=kv_cache)[0]
            x = x + (h if self.dropout is None else self.dropout(h))
            return x + ffn(norm2(x))
        h = attend(x, mask=mask, causal=causal, kv_cache=kv_cache)[0]
        x = norm1(x + (h if self.dropout is None else self.dropout(h)))
        return norm2(x + ffn(x))


class DecoderLayer(_Layer):
    """Causal self-attention, cross-attention to the encoder memory, feed-forward.

    Arguments as :class:`EncoderLayer`; ``rotary`` applies to the self-attention only
    (source and target positions do not lie on one axis).
    """

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, **options) -> None:
        super().__init__(d_model, num_heads, ffn_dim, cross=True, **options)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None, *,
                memory_mask: torch.Tensor | Callable | None = None,
                self_cache: KVCache | None = None, cross_cache: StaticKVCache | None = None,
                return_weights: bool = False,
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Args:
            x: ``(B, L, E)`` target states.
            memory: ``(B, S, E)`` encoder output; may be None once ``cross_cache`` is set.
            memory_mask: True = real source token: ``attnkit.masks.key_padding(lengths)``
                (what the models pass) or a bool tensor broadcastable to ``(B, Hq, L, S)``.
            self_cache: :class:`KVCache` of the causal self-attention, or None.
            cross_cache: :class:`StaticKVCache` of the projected memory, or None.
            return_weights: also return the cross-attention weights.

        Returns:
            ``(x (B, L, E), cross-attention weights (B, Hq, L, S) or None)``.
        """
        def self_attend(h):
            return self._drop(self.self_attn(h, causal=True, kv_cache=self_cache)[0])

        def cross_attend(h):
            out, weights = self.cross_attn(h, memory, mask=memory_mask, kv_cache=cross_cache,
                                           return_weights=return_weights)
            return self._drop(out), weights

        if self.norm_first:
            x = x + self_attend(self.norm1(x))
            out, weights = cross_attend(self.norm2(x))
            x = x + out
            return x + self.ffn(self.norm3(x)), weights
        x = self.norm1(x + self_attend(x))
        out, weights = cross_attend(x)
        x = self.norm2(x + out)
        return self.norm3(x + self.ffn(x)), weights


class TokenEmbedding(nn.Module):
    """Token embedding, optionally times ``sqrt(E)`` (the paper), plus absolute positions
    (sinusoidal or learned; none for rotary, which acts inside attention), then dropout.

    Args:
        vocab_size: ``V``.
        d_model: ``E``.
        positional: ``"sinusoidal"``, ``"learned"`` or ``"rotary"``.
        max_len: positions with a table entry (sinusoidal/learned).
        dropout: dropout on the sum (0: no ``dropout`` submodule, see
            :func:`optional_dropout`).
        scale: multiply the token embeddings by ``sqrt(E)``.
        padding_idx: passed to ``nn.Embedding`` (its row gets no gradient).
    """

    def __init__(self, vocab_size: int, d_model: int, *, positional: str, max_len: int,
                 dropout: float = 0.0, scale: bool = False,
                 padding_idx: int | None = None) -> None:
        super().__init__()
        self.token = nn.Embedding(vocab_size, d_model, padding_idx=padding_idx)
        self.scale = math.sqrt(d_model) if scale else 1.0
        self.position: nn.Module | None = None
        if positional == "sinusoidal":
            self.position = SinusoidalPositionalEncoding(d_model, max_len)
        elif positional == "learned":
            self.position = LearnedPositionalEmbedding(max_len, d_model)
        self.dropout = optional_dropout(dropout)

    def forward(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``ids (B, L)`` long, first position ``offset`` -> ``(B, L, E)``."""
        modules = self._modules  # not self.<name>: nn.Module.__getattr__ is a Python call
        x = modules["token"](ids)  # (B, L, E)
        if self.scale != 1.0:
            x = x * self.scale
        position = modules["position"] if "position" in modules else None
        if position is not None:
            x = position(x, offset)
        return x if self.dropout is None else self.dropout(x)
